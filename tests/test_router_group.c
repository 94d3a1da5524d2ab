// test_router_group.c: group-limited routing (DeepSeek-V2 max, DeepSeek-V3 top2_sum) — golden
// masks on hand-written logits (the group choice changing the pick, the two group scores
// disagreeing, ties between groups and between experts, the balancing bias steering the groups
// while the weights stay unbiased), then the router against a naive per-token reference written
// here (group scores, mask, top-k by sorting) on many tie-heavy cases for both scores, both
// scorings, with and without bias and capacity; weights and aux loss (P from the unmasked
// probabilities); the refusals of moe_router_check_groups and node-limited resolution.
#include "router.h"
#include "test-util.h"

#include <math.h>
#include <string.h>

enum { EMAX = 16, TMAX = 64 };

static moe_router_params gp(int E, int K, int N, int M, moe_group_score gs) {
    moe_router_params p;
    memset(&p, 0, sizeof p);
    p.D = E; // x holds the logits directly: Wg = identity
    p.E = E, p.K = K;
    p.renormalize = 1;
    p.routed_scaling = 1;
    p.n_group = N, p.topk_group = M, p.group_score = gs;
    return p;
}

// Routes logits z (T, E) with Wg = I; returns the plan (caller frees).
static moe_route_plan *route(const moe_router_params *p, const float *z, int64_t T,
                             const float *bias, moe_route_stats *st) {
    float wg[EMAX * EMAX] = {0};
    for (int e = 0; e < p->E; e++) wg[e * p->E + e] = 1;
    moe_route_plan *pl;
    moe_status s = moe_route_plan_create(p, T, &pl);
    if (s) {
        fprintf(stderr, "plan: %s\n", moe_last_error());
        MOE_ASSERT(s == MOE_OK);
    }
    moe_router_forward(p, pl, st, z, wg, NULL, bias, T, NULL);
    return pl;
}

// One token's chosen experts (best first) against `want`.
static void expect_sel(const char *name, const moe_route_plan *pl, int64_t t, const int *want) {
    for (int k = 0; k < pl->K; k++)
        CHECK(pl->sel_expert[t * pl->K + k] == want[k],
              "%s: token %lld slot %d: expected %d got %d", name, (long long)t, k, want[k],
              pl->sel_expert[t * pl->K + k]);
}

static void test_golden(void) {
    // E = 8 in 4 groups {0,1} {2,3} {4,5} {6,7}, K = 2, softmax (p monotone in z).
    const float z[5 * 8] = {
        4, 0, 3,   3,   0, 0, 0, 0, // t0: M=1: g0 (e^4+1) beats g1 (2e^3): e0, e1 (plain: e0, e2)
        4, 0, 3.5, 3.5, 0, 0, 0, 0, // t1: top2_sum keeps g1 (2e^3.5 > e^4+1): e2, e3; max keeps g0
        1, 1, 1,   1,   1, 1, 1, 1, // t2: all tied: g0 kept (lower group), e0, e1
        3, 0, 1,   1,   0, 0, 1, 1, // t3: M=2 (second pass): g0, then g1 over tied g3; e0, e2
        0, 0, 0,   2,   5, 0, 0, 0, // t4: M=1: top2_sum g2 (e^5+1) > g1 (1+e^2): e4, e5
    };
    moe_router_params p = gp(8, 2, 4, 1, MOE_GROUP_SCORE_TOP2_SUM);
    moe_route_plan *pl = route(&p, z, 5, NULL, NULL);
    expect_sel("top2_sum M=1 t0", pl, 0, (int[]){0, 1});
    expect_sel("top2_sum M=1 t1", pl, 1, (int[]){2, 3});
    expect_sel("top2_sum M=1 t2 (ties)", pl, 2, (int[]){0, 1});
    expect_sel("top2_sum M=1 t4", pl, 4, (int[]){4, 5});
    // Weights: the selected unmasked p, renormalised: t0 = e^4/(e^4+1), 1/(e^4+1).
    const double e4 = exp(4.0);
    CHECK(fabs(pl->sel_weight[0] - e4 / (e4 + 1)) < 1e-6 &&
              fabs(pl->sel_weight[1] - 1 / (e4 + 1)) < 1e-6,
          "t0 weights expected %.7f %.7f got %.7f %.7f", e4 / (e4 + 1), 1 / (e4 + 1),
          pl->sel_weight[0], pl->sel_weight[1]);
    moe_route_plan_free(pl);

    p.group_score = MOE_GROUP_SCORE_MAX;
    pl = route(&p, z, 5, NULL, NULL);
    expect_sel("max M=1 t1", pl, 1, (int[]){0, 1});
    expect_sel("max M=1 t4", pl, 4, (int[]){4, 5});
    moe_route_plan_free(pl);

    p = gp(8, 2, 4, 2, MOE_GROUP_SCORE_TOP2_SUM);
    pl = route(&p, z, 5, NULL, NULL);
    expect_sel("top2_sum M=2 t0 (g0, g1 kept)", pl, 0, (int[]){0, 2});
    expect_sel("top2_sum M=2 t3 (g1 over tied g3)", pl, 3, (int[]){0, 2});
    moe_route_plan_free(pl);

    // The balancing bias steers the groups (selection only); the weights stay the unbiased p.
    // Sigmoid, z = 0: p = 0.5 everywhere; b lifts group 2 ({4,5}); M = 1, K = 2 → e4, e5, w 0.5.
    p = gp(8, 2, 4, 1, MOE_GROUP_SCORE_TOP2_SUM);
    p.scoring = MOE_SCORE_SIGMOID;
    const float z0[8] = {0};
    const float b[8] = {0, 0, 0, 0, 0.25f, 0.125f, 0.3f, 0};
    pl = route(&p, z0, 1, b, NULL);
    // v = 0.5 + b: g2 = 0.75 + 0.625 = 1.375 beats g3 = 0.8 + 0.5 = 1.3; top2_sum → g2.
    expect_sel("bias steers groups (top2_sum)", pl, 0, (int[]){4, 5});
    CHECK(pl->sel_weight[0] == 0.5f && pl->sel_weight[1] == 0.5f, "weights %g %g, expected 0.5",
          pl->sel_weight[0], pl->sel_weight[1]);
    moe_route_plan_free(pl);
    p.group_score = MOE_GROUP_SCORE_MAX; // max: g3 (0.8) beats g2 (0.75) → e6, then e7 (0.5)
    pl = route(&p, z0, 1, b, NULL);
    expect_sel("bias steers groups (max)", pl, 0, (int[]){6, 7});
    moe_route_plan_free(pl);
}

// ------------------------------------------------------------------ the naive reference

// Per token, from the definitions: v = p + b, group scores by sorting each group, kept groups
// by sorting the groups, then the top-K of the experts of the kept groups by sorting. Sorting
// with the stated tie rule (lower index first) makes it independent of the router's scans.
static void ref_select(const moe_router_params *p, const float *pt, const float *bias, int *sel) {
    const int E = p->E, N = p->n_group, S = E / N, M = p->topk_group, K = p->K;
    float v[EMAX], gs[EMAX];
    int order[EMAX], kept[EMAX] = {0};
    for (int e = 0; e < E; e++) v[e] = bias ? pt[e] + bias[e] : pt[e];
    for (int g = 0; g < N; g++) {
        float s[EMAX];
        for (int j = 0; j < S; j++) s[j] = v[g * S + j];
        for (int i = 0; i < S; i++) // descending selection sort
            for (int j = i + 1; j < S; j++)
                if (s[j] > s[i]) {
                    float t = s[i];
                    s[i] = s[j];
                    s[j] = t;
                }
        gs[g] = p->group_score == MOE_GROUP_SCORE_MAX ? s[0] : s[0] + s[1];
    }
    for (int g = 0; g < N; g++) order[g] = g;
    for (int i = 0; i < N; i++) // by score descending, then index ascending
        for (int j = i + 1; j < N; j++)
            if (gs[order[j]] > gs[order[i]] ||
                (gs[order[j]] == gs[order[i]] && order[j] < order[i])) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    for (int m = 0; m < M; m++) kept[order[m]] = 1;
    int n = 0;
    for (int e = 0; e < E; e++)
        if (kept[e / S]) order[n++] = e;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (v[order[j]] > v[order[i]] || (v[order[j]] == v[order[i]] && order[j] < order[i])) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    for (int k = 0; k < K; k++) sel[k] = order[k];
}

static uint64_t rng = 12345;
static int small_int(int n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rng >> 33) % (uint64_t)n);
}

// Many tokens with logits from a few levels (ties everywhere) against the reference: selection,
// weights, counts and the aux loss (f from group-limited counts, P from the unmasked p).
static void check_against_ref(const char *name, moe_router_params p, int with_bias) {
    const int E = p.E, K = p.K, T = TMAX;
    float z[TMAX * EMAX], b[EMAX];
    for (int i = 0; i < T * E; i++) z[i] = (float)small_int(4) * 0.5f;
    for (int e = 0; e < E; e++) b[e] = (float)(small_int(3) - 1) * 0.125f;
    const float *bias = with_bias ? b : NULL;
    moe_route_stats st;
    moe_route_plan *pl = route(&p, z, T, bias, &st);
    int64_t cnt[EMAX] = {0};
    double P[EMAX] = {0};
    int bad = 0;
    for (int t = 0; t < T; t++) {
        const float *pt = pl->probs + (int64_t)t * E;
        int want[EMAX];
        ref_select(&p, pt, bias, want);
        double sum = 0;
        for (int k = 0; k < K; k++) sum += pt[want[k]];
        for (int k = 0; k < K; k++) {
            const int got = pl->sel_expert[t * K + k];
            if (got != want[k] && bad++ < 5)
                CHECK(0, "%s: token %d slot %d: expected expert %d got %d", name, t, k, want[k],
                      got);
            cnt[want[k]]++;
            const double w = p.routed_scaling * pt[want[k]] / (p.renormalize ? sum : 1.0);
            if (fabs(pl->sel_weight[t * K + k] - w) > 1e-6 && bad++ < 5)
                CHECK(0, "%s: token %d slot %d: weight expected %.7f got %.7f", name, t, k, w,
                      pl->sel_weight[t * K + k]);
        }
        double norm = 0;
        for (int e = 0; e < E; e++) norm += pt[e];
        for (int e = 0; e < E; e++)
            P[e] += (p.scoring == MOE_SCORE_SOFTMAX ? pt[e] : pt[e] / norm) / T;
    }
    double aux = 0;
    for (int e = 0; e < E; e++) {
        CHECK(pl->sel_counts[e] == cnt[e], "%s: expert %d selected %lld times, reference %lld",
              name, e, (long long)pl->sel_counts[e], (long long)cnt[e]);
        aux += (double)cnt[e] / ((double)T * K) * P[e];
    }
    aux *= p.aux_loss_coef * E;
    CHECK(fabs(st.aux_loss - aux) <= 1e-6 * fabs(aux) + 1e-9, "%s: aux expected %.9g got %.9g",
          name, aux, st.aux_loss);
    CHECK(st.selected == (int64_t)T * K && st.kept + st.dropped == st.selected,
          "%s: selected %lld kept %lld dropped %lld", name, (long long)st.selected,
          (long long)st.kept, (long long)st.dropped);
    moe_route_plan_free(pl);
}

static void test_reference(void) {
    const struct {
        int E, K, N, M;
    } shapes[] = {{8, 2, 4, 2}, {8, 3, 4, 2}, {12, 4, 4, 2}, {16, 6, 8, 3},
                  {6, 3, 3, 2}, {8, 2, 2, 1}, {9, 3, 3, 1},  {16, 8, 4, 4}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int gs = 0; gs < 2; gs++)
            for (int sc = 0; sc < 2; sc++)
                for (int wb = 0; wb < 2; wb++) {
                    moe_router_params p = gp(shapes[i].E, shapes[i].K, shapes[i].N, shapes[i].M,
                                             gs ? MOE_GROUP_SCORE_MAX : MOE_GROUP_SCORE_TOP2_SUM);
                    p.scoring = sc ? MOE_SCORE_SIGMOID : MOE_SCORE_SOFTMAX;
                    p.aux_loss_coef = 0.01;
                    p.renormalize = (int)(i % 2);
                    p.routed_scaling = i % 3 ? 1.0 : 2.5;
                    if (i % 4 == 3) p.capacity_factor = 1.0; // drops after selection
                    char name[160];
                    snprintf(name, sizeof name, "E=%d K=%d N=%d M=%d %s %s%s", p.E, p.K, p.n_group,
                             p.topk_group, gs ? "max" : "top2_sum", sc ? "sigmoid" : "softmax",
                             wb ? " + bias" : "");
                    check_against_ref(name, p, wb);
                }
    // n_group = 1 is off: plain top-K (the same as n_group = 0).
    const float z[8] = {1, 5, 2, 4, 3, 0, 6, 1};
    moe_router_params p = gp(8, 3, 1, 1, MOE_GROUP_SCORE_TOP2_SUM);
    p.n_group = 0;
    moe_route_plan *pl = route(&p, z, 1, NULL, NULL);
    expect_sel("no groups", pl, 0, (int[]){6, 1, 3});
    moe_route_plan_free(pl);
}

// ------------------------------------------------------------------ refusals

static void expect_refused(const char *name, moe_status st, moe_status want, const char *frag) {
    CHECK(st == want, "%s: status %d, expected %d", name, (int)st, (int)want);
    CHECK(st == MOE_OK || strstr(moe_last_error(), frag), "%s: message \"%s\" lacks \"%s\"", name,
          moe_last_error(), frag);
}

static void test_refusals(void) {
    moe_router_params p = gp(8, 2, 4, 2, MOE_GROUP_SCORE_TOP2_SUM);
    CHECK(moe_router_check_groups(&p) == MOE_OK, "good groups: %s", moe_last_error());
    moe_route_plan *pl = NULL;
    p.n_group = 3;
    expect_refused("3 ∤ 8", moe_route_plan_create(&p, 4, &pl), MOE_EINVAL,
                   "router.n_group = 3 does not divide model.n_experts = 8");
    CHECK(pl == NULL, "plan left behind");
    p.n_group = 4, p.topk_group = 0;
    expect_refused("topk_group 0", moe_router_check_groups(&p), MOE_EINVAL,
                   "router.topk_group = 0: must be in 1..router.n_group = 4");
    p.topk_group = 5;
    expect_refused("topk_group 5", moe_router_check_groups(&p), MOE_EINVAL,
                   "router.topk_group = 5");
    p.topk_group = 1, p.K = 3;
    expect_refused("K > M·S", moe_router_check_groups(&p), MOE_EINVAL,
                   "model.top_k = 3 exceeds router.topk_group × experts per group = 1 × 2 = 2");
    p.K = 2, p.n_group = 8, p.topk_group = 2;
    expect_refused("top2_sum, 1 per group", moe_router_check_groups(&p), MOE_EINVAL,
                   "group_score = max or fewer groups");
    p.group_score = MOE_GROUP_SCORE_MAX;
    CHECK(moe_router_check_groups(&p) == MOE_OK, "max with 1 per group: %s", moe_last_error());
    p.strategy = MOE_ROUTE_EXPERT_CHOICE;
    expect_refused("expert choice", moe_router_check_groups(&p), MOE_EINVAL,
                   "needs router.strategy = token_choice");
    p.strategy = MOE_ROUTE_TOKEN_CHOICE, p.n_group = -1;
    expect_refused("negative", moe_router_check_groups(&p), MOE_EINVAL, "router.n_group = -1");
    p.group_score = (moe_group_score)7, p.n_group = 4;
    expect_refused("score 7", moe_router_check_groups(&p), MOE_EINVAL, "router.group_score = 7");

    // Node-limited: unresolved is refused by the plan; resolution from the node shape.
    p = gp(8, 2, 0, 1, MOE_GROUP_SCORE_TOP2_SUM);
    p.node_limited = 1;
    expect_refused("unresolved", moe_route_plan_create(&p, 4, &pl), MOE_EINVAL,
                   "were not resolved");
    moe_router_params q = p;
    CHECK(moe_router_node_groups(&q, 4, 2, 2) == MOE_OK && q.n_group == 2,
          "ep 4 over 2 nodes of 2: %s (n_group %d)", moe_last_error(), q.n_group);
    CHECK(moe_router_check_groups(&q) == MOE_OK, "resolved: %s", moe_last_error());
    q = p;
    CHECK(moe_router_node_groups(&q, 4, 1, 4) == MOE_OK && q.n_group == 4,
          "ep 4 over 4 nodes of 1: %s (n_group %d)", moe_last_error(), q.n_group);
    q = p;
    CHECK(moe_router_node_groups(&q, 4, 2, 4) == MOE_OK && q.n_group == 2,
          "ep 4, 4 nodes of 2 (EDP 2): %s (n_group %d)", moe_last_error(), q.n_group);
    q = p;
    expect_refused("inside one node", moe_router_node_groups(&q, 2, 2, 2), MOE_ELAYOUT,
                   "lies inside one node");
    q = p;
    expect_refused("one process", moe_router_node_groups(&q, 1, 1, 1), MOE_ELAYOUT,
                   "nothing to limit");
    q = p;
    expect_refused("uneven", moe_router_node_groups(&q, 4, 3, 2), MOE_ELAYOUT,
                   "not a multiple of the 3 ranks per node");
    q = p;
    expect_refused("unequal nodes", moe_router_node_groups(&q, 4, 0, 2), MOE_ELAYOUT,
                   "same number of ranks on every node");
    q = p;
    q.topk_group = 3;
    expect_refused("topk_group > nodes", moe_router_node_groups(&q, 4, 2, 2), MOE_EINVAL,
                   "spans 2 nodes of 2, so router.n_group = 2");
    q = p;
    q.E = 4, q.K = 2, q.topk_group = 1; // 4 nodes × 1 expert: top2_sum impossible, K > 1
    expect_refused("one expert per node", moe_router_node_groups(&q, 4, 1, 4), MOE_EINVAL,
                   "model.top_k = 2 exceeds");
    q = p;
    q.node_limited = 0;
    CHECK(moe_router_node_groups(&q, 1, 1, 1) == MOE_OK && q.n_group == 0, "off: a no-op");
}

int main(void) {
    test_golden();
    test_reference();
    test_refusals();
    return test_summary("test_router_group");
}
