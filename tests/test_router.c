// test_router.c: the router on its own — golden routing masks on hand-written logits (kept,
// dropped, expert choice, ties), load statistics on a hand case, the plan layout, jitter
// determinism, the bias update, and finite-difference checks of every piece (scoring, top-k
// weights with/without renormalisation, aux loss, z-loss, activations, group-limited selection)
// with selection held fixed.
#include "experts.h"
#include "router.h"

#include <math.h>
#include <string.h>

static int fails;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            fails++;                                                                               \
        }                                                                                          \
    } while (0)

static moe_router_params rp(int E, int K) {
    moe_router_params p;
    memset(&p, 0, sizeof p);
    p.D = E; // x holds the logits directly: Wg = identity
    p.E = E;
    p.K = K;
    p.renormalize = 1;
    p.routed_scaling = 1;
    return p;
}

// Routes hand-written logits z (T, E) with Wg = I; fills mask (T, E): 1 kept, 0 not.
static moe_route_plan *route(const moe_router_params *p, const float *z, int64_t T,
                             const float *bias, int *mask, moe_route_stats *st) {
    float *wg = moe_xcalloc((size_t)(p->E * p->E), sizeof(float));
    for (int e = 0; e < p->E; e++) wg[e * p->E + e] = 1;
    moe_route_plan *pl;
    MOE_ASSERT(moe_route_plan_create(p, T, &pl) == MOE_OK);
    moe_router_forward(p, pl, st, z, wg, NULL, bias, T, NULL);
    memset(mask, 0, (size_t)(T * p->E) * sizeof(int));
    for (int e = 0; e < p->E; e++)
        for (int64_t r = pl->offsets[e]; r < pl->offsets[e + 1]; r++)
            mask[pl->row_token[r] * p->E + e]++;
    free(wg);
    return pl;
}

static void check_mask(const char *name, const int *got, const int *want, int64_t T, int E) {
    for (int64_t t = 0; t < T; t++)
        for (int e = 0; e < E; e++)
            CHECK(got[t * E + e] == want[t * E + e], "%s: token %lld expert %d: expected %d got %d",
                  name, (long long)t, e, want[t * E + e], got[t * E + e]);
}

static void test_golden_token_choice(void) {
    // K=1, E=3, T=6, cf=1 → C = ceil(6·1/3) = 2. Expert 0 is chosen by t0 (z=2), t1 (z=3),
    // t2 (z=1), t5 (z=2, tied with t0): keep t1 then t0 (tie: earlier token); drop t2, t5.
    const float z[6 * 3] = {2, 0, 0, 3, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 2, 0, 0};
    const int want[6 * 3] = {1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0};
    moe_router_params p = rp(3, 1);
    p.capacity_factor = 1.0;
    p.aux_loss_coef = 0.1;
    p.z_loss_coef = 0.01;
    int mask[18];
    moe_route_stats st;
    moe_route_plan *pl = route(&p, z, 6, NULL, mask, &st);
    check_mask("token choice cf=1", mask, want, 6, 3);
    CHECK(pl->C == 2, "capacity expected 2 got %lld", (long long)pl->C);
    // Plan layout: rows grouped by expert, token order inside; CSR inverse map.
    const int32_t row_token[4] = {0, 1, 3, 4};
    const int64_t offsets[4] = {0, 2, 3, 4}, tok_off[7] = {0, 1, 2, 2, 3, 4, 4};
    for (int r = 0; r < 4; r++)
        CHECK(pl->row_token[r] == row_token[r], "row %d token expected %d got %d", r, row_token[r],
              pl->row_token[r]);
    for (int e = 0; e < 4; e++)
        CHECK(pl->offsets[e] == offsets[e], "offsets[%d] expected %lld got %lld", e,
              (long long)offsets[e], (long long)pl->offsets[e]);
    for (int t = 0; t < 7; t++)
        CHECK(pl->tok_offsets[t] == tok_off[t], "tok_offsets[%d] expected %lld got %lld", t,
              (long long)tok_off[t], (long long)pl->tok_offsets[t]);
    for (int t = 0; t < 6; t++)
        for (int64_t j = pl->tok_offsets[t]; j < pl->tok_offsets[t + 1]; j++)
            CHECK(pl->row_token[pl->tok_rows[j]] == t,
                  "inverse map of token %d points to row of "
                  "token %d",
                  t, pl->row_token[pl->tok_rows[j]]);
    CHECK(pl->sel_row[2] == -1 && pl->sel_row[5] == -1 && pl->sel_row[0] == 0 &&
              pl->sel_row[1] == 1,
          "sel_row expected [0 1 -1 2 3 -1] got [%d %d %d %d %d %d]", pl->sel_row[0],
          pl->sel_row[1], pl->sel_row[2], pl->sel_row[3], pl->sel_row[4], pl->sel_row[5]);
    // Load statistics by hand: selected per expert [4 1 1], mean 2, max/mean 2,
    // cv = sqrt(((4-2)² + (1-2)² + (1-2)²)/3)/2 = sqrt(2)/2; kept [2 1 1]; dropped 2; unrouted 2.
    const int64_t sel_want[3] = {4, 1, 1}, kept_want[3] = {2, 1, 1};
    for (int e = 0; e < 3; e++) {
        CHECK(st.selected_per_expert[e] == sel_want[e], "selected[%d] expected %lld got %lld", e,
              (long long)sel_want[e], (long long)st.selected_per_expert[e]);
        CHECK(st.tokens_per_expert[e] == kept_want[e], "kept[%d] expected %lld got %lld", e,
              (long long)kept_want[e], (long long)st.tokens_per_expert[e]);
    }
    CHECK(st.selected == 6 && st.kept == 4 && st.dropped == 2 && st.unrouted == 2,
          "selected/kept/dropped/unrouted expected 6/4/2/2 got %lld/%lld/%lld/%lld",
          (long long)st.selected, (long long)st.kept, (long long)st.dropped,
          (long long)st.unrouted);
    CHECK(fabs(st.max_over_mean - 2.0) < 1e-12, "max/mean expected 2 got %.9g", st.max_over_mean);
    CHECK(fabs(st.cv - sqrt(2.0) / 2) < 1e-12, "cv expected %.9g got %.9g", sqrt(2.0) / 2, st.cv);
    // Entropy, aux and z from the definitions, in double.
    double H = 0, P[3] = {0}, Z = 0;
    for (int t = 0; t < 6; t++) {
        double m = 0, s = 0;
        for (int e = 0; e < 3; e++) m = z[t * 3 + e] > m ? z[t * 3 + e] : m;
        for (int e = 0; e < 3; e++) s += exp(z[t * 3 + e] - m);
        for (int e = 0; e < 3; e++) {
            double q = exp(z[t * 3 + e] - m) / s;
            H -= q * log(q) / 6;
            P[e] += q / 6;
        }
        Z += (m + log(s)) * (m + log(s)) / 6;
    }
    double aux = 0.1 * 3 * (4.0 / 6 * P[0] + 1.0 / 6 * P[1] + 1.0 / 6 * P[2]);
    CHECK(fabs(st.entropy - H) < 1e-6, "entropy expected %.9g got %.9g", H, st.entropy);
    CHECK(fabs(st.aux_loss - aux) < 1e-6, "aux expected %.9g got %.9g", aux, st.aux_loss);
    CHECK(fabs(st.z_loss - 0.01 * Z) < 1e-6, "z expected %.9g got %.9g", 0.01 * Z, st.z_loss);
    moe_route_plan_free(pl);

    // Dropless: everything kept.
    p.capacity_factor = 0;
    const int want_all[18] = {1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0};
    pl = route(&p, z, 6, NULL, mask, &st);
    check_mask("token choice dropless", mask, want_all, 6, 3);
    CHECK(st.dropped == 0 && st.kept == 6, "dropless: dropped %lld kept %lld",
          (long long)st.dropped, (long long)st.kept);
    moe_route_plan_free(pl);
}

static void test_golden_topk_ties(void) {
    // K=2, E=4. Row 0 [1 3 1 1]: e1, then the tie e0/e2/e3 → e0. Row 1 all equal: e0, e1.
    // Row 2 [5 1 5 5]: e0, e2.
    const float z[3 * 4] = {1, 3, 1, 1, 0, 0, 0, 0, 5, 1, 5, 5};
    const int want[12] = {1, 1, 0, 0, 1, 1, 0, 0, 1, 0, 1, 0};
    moe_router_params p = rp(4, 2);
    int mask[12];
    moe_route_plan *pl = route(&p, z, 3, NULL, mask, NULL);
    check_mask("top-2 ties", mask, want, 3, 4);
    CHECK(pl->sel_expert[0] == 1 && pl->sel_expert[1] == 0,
          "row 0 order expected [1 0] got [%d %d]", pl->sel_expert[0], pl->sel_expert[1]);
    // Renormalised weights of row 0 are p1/(p1+p0), p0/(p1+p0).
    double e1 = exp(3.0), e0 = exp(1.0);
    CHECK(fabs(pl->sel_weight[0] - e1 / (e1 + e0)) < 1e-6 &&
              fabs(pl->sel_weight[1] - e0 / (e1 + e0)) < 1e-6,
          "renormalised weights expected %.7g %.7g got %.7g %.7g", e1 / (e1 + e0), e0 / (e1 + e0),
          pl->sel_weight[0], pl->sel_weight[1]);
    moe_route_plan_free(pl);
    // Balancing bias on e3 (+0.5 on p): row 0 becomes e1, e3; row 1 e3, e0; row 2 e3 (p+b), e0.
    const float b[4] = {0, 0, 0, 0.5f};
    const int want_b[12] = {0, 1, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1};
    pl = route(&p, z, 3, b, mask, NULL);
    check_mask("top-2 with balancing bias", mask, want_b, 3, 4);
    // The bias is selection only: weights still from p.
    double q1 = exp(3.0) / (3 * exp(1.0) + exp(3.0)), q3 = exp(1.0) / (3 * exp(1.0) + exp(3.0));
    CHECK(fabs(pl->sel_weight[0] - q1 / (q1 + q3)) < 1e-6,
          "bias leaked into weights: expected "
          "%.7g got %.7g",
          q1 / (q1 + q3), pl->sel_weight[0]);
    moe_route_plan_free(pl);
    // Without renormalisation, scaled: w = 2.5·p.
    p.renormalize = 0;
    p.routed_scaling = 2.5;
    pl = route(&p, z, 3, NULL, mask, NULL);
    CHECK(fabs(pl->sel_weight[0] - 2.5 * q1) < 1e-6, "unnormalised weight expected %.7g got %.7g",
          2.5 * q1, pl->sel_weight[0]);
    moe_route_plan_free(pl);
}

static void test_golden_expert_choice(void) {
    // T=5, E=2, K=1. p[:,0] = σ(z0 − z1): t0 .731 t1 .269 t2 .881 t3 .5 t4 .5.
    const float z[5 * 2] = {1, 0, 0, 1, 2, 0, 0, 0, 0, 0};
    moe_router_params p = rp(2, 1);
    p.strategy = MOE_ROUTE_EXPERT_CHOICE;
    int mask[10];
    moe_route_stats st;
    // cf=0 → 1: C = ceil(5/2) = 3. e0: t2 t0 t3 (t3/t4 tie → t3); e1: t1 t3 t4. t3 taken twice.
    const int want[10] = {1, 0, 0, 1, 1, 0, 1, 1, 0, 1};
    moe_route_plan *pl = route(&p, z, 5, NULL, mask, &st);
    check_mask("expert choice C=3", mask, want, 5, 2);
    CHECK(st.unrouted == 0 && st.kept == 6 && st.dropped == 0,
          "EC C=3 stats: unrouted %lld kept "
          "%lld dropped %lld",
          (long long)st.unrouted, (long long)st.kept, (long long)st.dropped);
    moe_route_plan_free(pl);
    // cf=0.6: C = ceil(1.5) = 2. e0: t2 t0; e1: t1 t3 (tie with t4 → t3). t4 unrouted.
    p.capacity_factor = 0.6;
    const int want2[10] = {1, 0, 0, 1, 1, 0, 0, 1, 0, 0};
    pl = route(&p, z, 5, NULL, mask, &st);
    check_mask("expert choice C=2", mask, want2, 5, 2);
    CHECK(st.unrouted == 1, "EC C=2: unrouted expected 1 got %lld", (long long)st.unrouted);
    double w = 1 / (1 + exp(-2.0)); // weight of (t2, e0) = p[2, 0], no renormalisation
    CHECK(fabs(pl->row_weight[1] - w) < 1e-6 && pl->row_token[1] == 2,
          "EC weight of (t2,e0) expected %.7g got %.7g (row token %d)", w, pl->row_weight[1],
          pl->row_token[1]);
    moe_route_plan_free(pl);
}

static void test_misc(void) {
    moe_router_params p = rp(4, 2);
    p.capacity_factor = 1.25;
    CHECK(moe_router_capacity(&p, 10) == 7, "C(1.25, T=10, K=2, E=4) expected 7 got %lld",
          (long long)moe_router_capacity(&p, 10));
    p.strategy = MOE_ROUTE_EXPERT_CHOICE;
    p.capacity_factor = 4;
    CHECK(moe_router_capacity(&p, 10) == 10, "EC capacity clipped to T: got %lld",
          (long long)moe_router_capacity(&p, 10));
    float bias[3] = {0, 0, 0};
    const int64_t load[3] = {10, 2, 6};
    moe_router_update_bias(bias, load, 3, 0.1);
    CHECK(fabs(bias[0] + 0.1f) < 1e-7 && fabs(bias[1] - 0.1f) < 1e-7 && bias[2] == 0,
          "bias update expected [-0.1 0.1 0] got [%g %g %g]", bias[0], bias[1], bias[2]);
    // Jitter noise: pure function, ~N(0,1).
    CHECK(moe_router_noise(7, 3, 1) == moe_router_noise(7, 3, 1), "noise not deterministic");
    CHECK(moe_router_noise(7, 3, 1) != moe_router_noise(8, 3, 1), "noise ignores the seed");
    double s = 0, s2 = 0;
    const int N = 200000;
    for (int i = 0; i < N; i++) {
        double v = moe_router_noise(42, i / 8, i % 8);
        s += v;
        s2 += v * v;
    }
    CHECK(fabs(s / N) < 0.01 && fabs(s2 / N - 1) < 0.02, "noise mean %.4f var %.4f", s / N, s2 / N);
    // Jitter only when training.
    moe_router_params q = rp(3, 1);
    q.jitter = 1.0;
    const float z[2 * 3] = {0.1f, 0.2f, 0.3f, 1, 2, 3};
    float wg[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    moe_route_plan *pl;
    MOE_ASSERT(moe_route_plan_create(&q, 2, &pl) == MOE_OK);
    moe_route_opts train = {1, 99, 5, NULL};
    moe_router_forward(&q, pl, NULL, z, wg, NULL, NULL, 2, NULL);
    CHECK(pl->logits[0] == z[0], "jitter applied in eval: %g vs %g", pl->logits[0], z[0]);
    moe_router_forward(&q, pl, NULL, z, wg, NULL, NULL, 2, &train);
    float want = z[4] + moe_router_noise(99, 6, 1);
    CHECK(fabs(pl->logits[4] - want) < 1e-6, "jitter of (token_base+1, e1) expected %g got %g",
          want, pl->logits[4]);
    moe_route_plan_free(pl);
}

// ------------------------------------------------------------------ finite differences (float)

static double fd_tol = 3e-3;

static void check_grad(const char *name, const float *an, const double *fd, int n) {
    double mx = 1e-3, worst = 0;
    int wi = 0;
    for (int i = 0; i < n; i++) mx = fabs(fd[i]) > mx ? fabs(fd[i]) : mx;
    for (int i = 0; i < n; i++)
        if (fabs(an[i] - fd[i]) / mx > worst) worst = fabs(an[i] - fd[i]) / mx, wi = i;
    CHECK(worst <= fd_tol,
          "%s: index %d finite difference %.7g analytic %.7g (normalised error "
          "%.3g > %.3g)",
          name, wi, fd[wi], an[wi], worst, fd_tol);
}

static void test_fd_pieces(void) {
    uint64_t s = 5;
    float z[15], dz[15], p[15], c[15];
    double fd[15];
    for (int i = 0; i < 15; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        z[i] = (float)((double)(s >> 40) / (1 << 24) * 4 - 2);
        c[i] = (float)sin(i * 1.7);
    }
    for (int sc = 0; sc < 2; sc++) {
        moe_scoring m = sc ? MOE_SCORE_SIGMOID : MOE_SCORE_SOFTMAX;
        moe_router_score(m, z, p, 3, 5);
        memset(dz, 0, sizeof dz);
        moe_router_score_backward(m, p, c, dz, 3, 5);
        for (int i = 0; i < 15; i++) {
            float keep = z[i], pp[15];
            double a = 0, b = 0, h = 1e-2;
            z[i] = keep + (float)h;
            moe_router_score(m, z, pp, 3, 5);
            for (int j = 0; j < 15; j++) a += (double)c[j] * pp[j];
            z[i] = keep - (float)h;
            moe_router_score(m, z, pp, 3, 5);
            for (int j = 0; j < 15; j++) b += (double)c[j] * pp[j];
            z[i] = keep;
            fd[i] = (a - b) / (2 * h);
        }
        check_grad(sc ? "sigmoid scoring" : "softmax scoring", dz, fd, 15);
    }
    memset(dz, 0, sizeof dz);
    moe_router_z_loss(z, 3, 5, 0.7, dz);
    for (int i = 0; i < 15; i++) {
        float keep = z[i];
        z[i] = keep + 1e-2f;
        double a = moe_router_z_loss(z, 3, 5, 0.7, NULL);
        z[i] = keep - 1e-2f;
        double b = moe_router_z_loss(z, 3, 5, 0.7, NULL);
        z[i] = keep;
        fd[i] = (a - b) / 2e-2;
    }
    check_grad("z-loss", dz, fd, 15);
    // Activations: value against the exact double forms, derivative against differences of it.
    double worst_v = 0, worst_d = 0;
    for (int i = -800; i <= 800; i++) {
        double u = i / 100.0, th = tanh(0.7978845608028654 * (u + 0.044715 * u * u * u));
        double g = 0.5 * u * (1 + th), si = u / (1 + exp(-u));
        double gd = 0.5 * (1 + th) +
                    0.5 * u * (1 - th * th) * 0.7978845608028654 * (1 + 3 * 0.044715 * u * u);
        double sd = 1 / (1 + exp(-u)) * (1 + u * (1 - 1 / (1 + exp(-u))));
        double ev =
            fmax(fabs(moe_gelu((float)u) - g), fabs(moe_silu((float)u) - si)) / fmax(1, fabs(u));
        double ed = fmax(fabs(moe_gelu_grad((float)u) - gd), fabs(moe_silu_grad((float)u) - sd));
        double fdg = ((double)moe_gelu((float)u + 1e-2f) - moe_gelu((float)u - 1e-2f)) / 2e-2;
        ed = fmax(ed, fabs(fdg - moe_gelu_grad((float)u)) / 30); // h² error ≤ 3e-5·|g'''|
        worst_v = fmax(worst_v, ev);
        worst_d = fmax(worst_d, ed);
    }
    CHECK(worst_v < 1e-6, "activation values: worst error %.3g vs exact forms (tol 1e-6)", worst_v);
    CHECK(worst_d < 1e-5, "activation derivatives: worst error %.3g (tol 1e-5)", worst_d);
}

// The router forward/backward as a whole: L = Σ_r c(t_r, e_r)·w_r + L_aux + L_z, gradient wrt
// x, Wg and bg by central differences with the selection (sel_expert, kept rows) held fixed.
// forced (T, K) or NULL: a replayed selection (router.h, moe_route_opts.forced).
static void fd_router_forced(const char *name, moe_router_params p, int64_t T, const float *bias,
                             const int32_t *forced) {
    const moe_route_opts fo = {.forced = forced};
    const int E = p.E;
    const int64_t D = p.D;
    uint64_t s = 77;
    float *x = moe_xcalloc((size_t)(T * D), sizeof(float)),
          *wg = moe_xcalloc((size_t)(D * E), sizeof(float));
    float bg[16], c[64 * 16];
    MOE_ASSERT(E <= 16 && T * E <= 64 * 16);
    for (int64_t i = 0; i < T * D; i++) x[i] = (float)sin(1.3 * i + 0.2);
    for (int64_t i = 0; i < D * E; i++) wg[i] = (float)cos(0.7 * i) * 0.8f;
    for (int e = 0; e < E; e++) bg[e] = 0.1f * e - 0.2f;
    for (int64_t i = 0; i < T * E; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        c[i] = (float)((double)(s >> 40) / (1 << 24) * 2 - 1);
    }
    moe_route_plan *pl;
    MOE_ASSERT(moe_route_plan_create(&p, T, &pl) == MOE_OK);
    int64_t R = moe_router_max_rows(&p, T);
    float *drw = moe_xcalloc((size_t)R, sizeof(float));
    int32_t *sel0 = moe_xcalloc((size_t)(T * E), sizeof(int32_t));
    int64_t n_rows0;
    moe_route_stats st;
    const float *bgp = p.gate_bias ? bg : NULL;
    // loss of the current plan
#define LOSS(out)                                                                                  \
    do {                                                                                           \
        moe_router_forward(&p, pl, &st, x, wg, bgp, bias, T, forced ? &fo : NULL);                 \
        double l_ = st.aux_loss + st.z_loss;                                                       \
        for (int e_ = 0; e_ < E; e_++)                                                             \
            for (int64_t r_ = pl->offsets[e_]; r_ < pl->offsets[e_ + 1]; r_++)                     \
                l_ += (double)c[pl->row_token[r_] * E + e_] * pl->row_weight[r_];                  \
        out = l_;                                                                                  \
    } while (0)
    double L0;
    LOSS(L0);
    (void)L0;
    n_rows0 = pl->n_rows;
    // selection fingerprint: (token, expert) of every row
    for (int e = 0; e < E; e++)
        for (int64_t r = pl->offsets[e]; r < pl->offsets[e + 1]; r++)
            sel0[r] = pl->row_token[r] * E + e;
    for (int e = 0; e < E; e++)
        for (int64_t r = pl->offsets[e]; r < pl->offsets[e + 1]; r++)
            drw[r] = c[pl->row_token[r] * E + e];
    float *dx = moe_xcalloc((size_t)(T * D), sizeof(float)),
          *dwg = moe_xcalloc((size_t)(D * E), sizeof(float));
    float dbg[16] = {0};
    moe_router_backward(&p, pl, drw, x, wg, dx, dwg, p.gate_bias ? dbg : NULL);
    int64_t nfd = T * D + D * E + (p.gate_bias ? E : 0), skipped = 0;
    double *fd = moe_xcalloc((size_t)nfd, sizeof(double));
    float *an = moe_xcalloc((size_t)nfd, sizeof(float));
    memcpy(an, dx, (size_t)(T * D) * sizeof(float));
    memcpy(an + T * D, dwg, (size_t)(D * E) * sizeof(float));
    if (p.gate_bias) memcpy(an + T * D + D * E, dbg, (size_t)E * sizeof(float));
    for (int64_t i = 0; i < nfd; i++) {
        float *v = i < T * D           ? x + i
                   : i < T * D + D * E ? wg + (i - T * D)
                                       : bg + (i - T * D - D * E);
        float keep = *v;
        const float h = 2e-3f;
        double a, b;
        int same = 1;
        *v = keep + h;
        LOSS(a);
        same &= pl->n_rows == n_rows0;
        for (int e = 0; e < E && same; e++)
            for (int64_t r = pl->offsets[e]; r < pl->offsets[e + 1]; r++)
                same &= sel0[r] == pl->row_token[r] * E + e;
        *v = keep - h;
        LOSS(b);
        same &= pl->n_rows == n_rows0;
        for (int e = 0; e < E && same; e++)
            for (int64_t r = pl->offsets[e]; r < pl->offsets[e + 1]; r++)
                same &= sel0[r] == pl->row_token[r] * E + e;
        *v = keep;
        if (!same) { // the perturbation changed the discrete selection: not differentiable here
            fd[i] = an[i];
            skipped++;
            continue;
        }
        fd[i] = (a - b) / (2.0 * h);
    }
#undef LOSS
    // Count aux-loss selections are part of the fixed selection too (counts unchanged if rows
    // unchanged, except dropped pairs: checked through sel_counts by the layer test).
    check_grad(name, an, fd, (int)nfd);
    CHECK(skipped * 4 <= nfd, "%s: %lld of %lld coordinates changed the selection", name,
          (long long)skipped, (long long)nfd);
    // A forced selection cannot change under a perturbation (only capacity drops could).
    CHECK(!forced || p.capacity_factor > 0 || skipped == 0,
          "%s: %lld coordinates changed a forced selection", name, (long long)skipped);
    moe_route_plan_free(pl);
    free(x);
    free(wg);
    free(drw);
    free(sel0);
    free(dx);
    free(dwg);
    free(fd);
    free(an);
}

static void fd_router(const char *name, moe_router_params p, int64_t T, const float *bias) {
    fd_router_forced(name, p, T, bias, NULL);
}

// Routing replay (moe_route_opts.forced): the natural selection replayed gives the same plan
// bit for bit (weights, rows, drops, losses) under every token-choice option; an arbitrary
// forced selection (not the top-k) takes the live probabilities as weights and its gradients
// agree with finite differences, so a replayed router keeps learning.
static void test_forced(void) {
    const float b[6] = {0.05f, -0.1f, 0, 0.2f, 0, -0.05f};
    for (int v = 0; v < 5; v++) {
        moe_router_params p = rp(6, 2);
        p.D = 6, p.aux_loss_coef = 0.3, p.z_loss_coef = 0.05;
        const float *bias = NULL;
        if (v == 1) p.scoring = MOE_SCORE_SIGMOID, bias = b;
        if (v == 2) p.capacity_factor = 0.7, p.renormalize = 0, p.routed_scaling = 2;
        if (v == 3) p.n_group = 3, p.topk_group = 1;
        if (v == 4) p.balance_sequence = 1, p.group_tokens = 4;
        const int64_t T = 12, D = p.D, E = p.E, K = p.K;
        float x[12 * 6], wg[36];
        for (int64_t i = 0; i < T * D; i++) x[i] = (float)sin(0.9 * i + 0.3);
        for (int64_t i = 0; i < D * E; i++) wg[i] = (float)cos(1.1 * i) * 0.9f;
        moe_route_plan *a, *f;
        MOE_ASSERT(moe_route_plan_create(&p, T, &a) == MOE_OK);
        MOE_ASSERT(moe_route_plan_create(&p, T, &f) == MOE_OK);
        moe_route_stats sa, sf;
        moe_router_forward(&p, a, &sa, x, wg, NULL, bias, T, NULL);
        int32_t sel[12 * 2];
        memcpy(sel, a->sel_expert, sizeof sel);
        const moe_route_opts fo = {.forced = sel};
        moe_router_forward(&p, f, &sf, x, wg, NULL, bias, T, &fo);
        int same = a->n_rows == f->n_rows && sa.aux_loss == sf.aux_loss &&
                   sa.z_loss == sf.z_loss && sa.dropped == sf.dropped &&
                   !memcmp(a->sel_weight, f->sel_weight, (size_t)(T * K) * sizeof(float)) &&
                   !memcmp(a->sel_row, f->sel_row, (size_t)(T * K) * sizeof(int32_t));
        for (int64_t r = 0; same && r < a->n_rows; r++)
            same = a->row_token[r] == f->row_token[r] && a->row_weight[r] == f->row_weight[r];
        CHECK(same, "forced = the natural selection (variant %d): the plan differs", v);
        // Another selection: each token's two worst experts, worst first.
        for (int64_t t = 0; t < T; t++) {
            int32_t lo = 0, lo2 = -1;
            for (int e = 1; e < E; e++)
                if (f->probs[t * E + e] < f->probs[t * E + lo]) lo = e;
            for (int e = 0; e < E; e++)
                if (e != lo && (lo2 < 0 || f->probs[t * E + e] < f->probs[t * E + lo2])) lo2 = e;
            sel[t * K] = lo, sel[t * K + 1] = lo2;
        }
        moe_router_forward(&p, f, &sf, x, wg, NULL, bias, T, &fo);
        double worst = 0;
        for (int64_t t = 0; t < T; t++) {
            const float *pt = f->probs + t * E;
            double sum = p.renormalize ? (double)pt[sel[t * K]] + pt[sel[t * K + 1]] : 1;
            for (int k = 0; k < K; k++) {
                CHECK(f->sel_expert[t * K + k] == sel[t * K + k],
                      "forced (variant %d): token %lld slot %d took expert %d, forced %d", v,
                      (long long)t, k, f->sel_expert[t * K + k], sel[t * K + k]);
                double want = pt[sel[t * K + k]] / sum * p.routed_scaling;
                worst = fmax(worst, fabs(f->sel_weight[t * K + k] - want));
            }
        }
        CHECK(worst < 1e-6, "forced (variant %d): weights differ from the live probabilities by "
                            "%.3g", v, worst);
        int64_t cnt = 0;
        for (int e = 0; e < E; e++) cnt += f->sel_counts[e];
        CHECK(cnt == T * K, "forced (variant %d): %lld selections counted, want %lld", v,
              (long long)cnt, (long long)(T * K));
        char name[64];
        snprintf(name, sizeof name, "forced worst-two selection (variant %d)", v);
        fd_router_forced(name, p, T, bias, sel);
        moe_route_plan_free(a);
        moe_route_plan_free(f);
    }
}

static void test_fd_router(void) {
    moe_router_params p = rp(5, 2);
    p.D = 6;
    p.aux_loss_coef = 0.3;
    p.z_loss_coef = 0.05;
    fd_router("router softmax renorm + aux + z", p, 9, NULL);
    p.renormalize = 0;
    p.routed_scaling = 1.7;
    fd_router("router softmax no renorm", p, 9, NULL);
    p.scoring = MOE_SCORE_SIGMOID;
    p.renormalize = 1;
    p.gate_bias = 1;
    const float b[5] = {0.05f, -0.1f, 0, 0.2f, 0};
    fd_router("router sigmoid renorm + bias + gate bias", p, 9, b);
    p.renormalize = 0;
    p.capacity_factor = 0.8;
    fd_router("router sigmoid no renorm, capacity", p, 12, NULL);
    moe_router_params q = p;
    q.aux_loss_coef = 0.5, q.z_loss_coef = 0, q.routed_scaling = 0; // aux alone
    q.scoring = MOE_SCORE_SOFTMAX;
    fd_router("aux loss alone (softmax)", q, 8, NULL);
    q.scoring = MOE_SCORE_SIGMOID;
    fd_router("aux loss alone (sigmoid)", q, 8, NULL);
    q.aux_loss_coef = 0, q.z_loss_coef = 0.5;
    fd_router("z-loss alone", q, 8, NULL);
    // Group-limited (E = 6 in 3 groups of 2, keep 2): the group mask is a selection like top-k,
    // held fixed; the kept experts' weights, aux (P over all experts) and z-loss differentiate.
    moe_router_params g = rp(6, 2);
    g.D = 6, g.n_group = 3, g.topk_group = 2, g.aux_loss_coef = 0.3, g.z_loss_coef = 0.05;
    fd_router("group-limited top2_sum softmax renorm + aux + z", g, 9, NULL);
    g.group_score = MOE_GROUP_SCORE_MAX, g.topk_group = 1, g.scoring = MOE_SCORE_SIGMOID;
    const float gb[6] = {0.05f, -0.1f, 0, 0.2f, 0, -0.05f};
    fd_router("group-limited max sigmoid renorm + bias", g, 9, gb);
    g.renormalize = 0, g.routed_scaling = 2.5, g.capacity_factor = 1.0;
    fd_router("group-limited max sigmoid, scaling, capacity", g, 12, gb);
    // Sequence-wise aux (balance_sequence): per routing group of 3 tokens, averaged over 3.
    moe_router_params sq = rp(5, 2);
    sq.D = 6, sq.aux_loss_coef = 0.5, sq.z_loss_coef = 0.05, sq.group_tokens = 3;
    sq.balance_sequence = 1;
    fd_router("sequence-wise aux softmax renorm + z", sq, 9, NULL);
    sq.scoring = MOE_SCORE_SIGMOID;
    fd_router("sequence-wise aux sigmoid renorm + bias", sq, 9, b);
    moe_router_params ec = rp(4, 2);
    ec.D = 6;
    ec.strategy = MOE_ROUTE_EXPERT_CHOICE;
    ec.z_loss_coef = 0.1;
    fd_router("router expert choice", ec, 10, NULL);
}

int main(void) {
    test_golden_token_choice();
    test_golden_topk_ties();
    test_golden_expert_choice();
    test_misc();
    test_fd_pieces();
    test_fd_router();
    test_forced();
    if (fails) {
        fprintf(stderr, "%d check(s) failed\n", fails);
        return 1;
    }
    printf("router: all checks passed\n");
    return 0;
}
