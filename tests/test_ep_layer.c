// test_ep_layer.c: layout invariance of the expert-parallel layer — for every EP dividing the
// world, every routing strategy and every exchange option (dedup, chunks, hierarchical with fake
// nodes), the outputs, dx and the synced gradients (gathered to rank 0) equal the one-rank layer
// run on the global batch on rank 0, and the global stats equal its stats. Also a rank with no
// tokens, an expert with no tokens, and invalid layouts refused through moe_ep_layer_create.
#include "ep-layer.h"
#include "test-util.h"

#include <math.h>
#include <string.h>

static int g_W; // world size (g_rank: test-util.h)

typedef struct {
    const char *name;
    moe_layer_params p;
    double bias_e; // balancing bias added to expert `bias_which` (0: no bias)
    int bias_which;
    int training;   // jitter
    int zero_rank;  // the last rank holds no tokens (its groups go to rank 0)
    int tie_period; // > 0: token rows repeat with this period (tied scores)
} ep_case;

enum { D_ = 8, F_ = 12, E_ = 8, G_ = 4, GROUPS = 2 };

static moe_layer_params mk(moe_activation act) {
    moe_layer_params p;
    memset(&p, 0, sizeof p);
    p.router.D = D_;
    p.router.E = E_;
    p.router.K = 2;
    p.router.renormalize = 1;
    p.router.aux_loss_coef = 0.01;
    p.router.z_loss_coef = 0.001;
    p.router.routed_scaling = 1;
    p.router.group_tokens = G_;
    p.F = F_;
    p.act = act;
    p.Fs = F_;
    return p;
}

// Named tensors of a weight block (pointer, floats).
static int tensors(const moe_layer_params *p, const moe_layer_weights *w, const char **nm,
                   float **ptr, int64_t *n) {
    const int64_t D = p->router.D, E = p->router.E, F = p->F, S = p->n_shared, Fs = p->Fs;
    int k = 0;
#define T_(name, pt, cnt)                                                                          \
    if (pt) nm[k] = name, ptr[k] = pt, n[k] = cnt, k++
    T_("wg", w->wg, D * E);
    T_("bg", w->bg, E);
    T_("w1", w->experts.w1, E * D * F);
    T_("b1", w->experts.b1, E * F);
    T_("w3", w->experts.w3, E * D * F);
    T_("b3", w->experts.b3, E * F);
    T_("w2", w->experts.w2, E * F * D);
    T_("b2", w->experts.b2, E * D);
    T_("shared w1", w->shared.w1, S * D * Fs);
    T_("shared b1", w->shared.b1, S * Fs);
    T_("shared w3", w->shared.w3, S * D * Fs);
    T_("shared b3", w->shared.b3, S * Fs);
    T_("shared w2", w->shared.w2, S * Fs * D);
    T_("shared b2", w->shared.b2, S * D);
    T_("ws", w->ws, D);
#undef T_
    return k;
}

// Gradient sync as the trainer does it (trainer/train.c: moe_comm_sync_grads over the dense
// region, then over the expert region): dense tensors over the world, this rank's El experts over
// the EDP group, both divided by W.
static void sync_grads(moe_comm *c, const moe_layer_params *p, int64_t El, moe_layer_weights *g) {
    const int64_t D = p->router.D, E = p->router.E, F = p->F, S = p->n_shared, Fs = p->Fs;
    const moe_comm_grad_kind De = MOE_COMM_GRAD_DENSE, Ex = MOE_COMM_GRAD_EXPERT;
    const struct {
        moe_comm_grad_kind k;
        float *g;
        int64_t n;
    } t[] = {
        {De, g->wg, D * E},
        {De, g->bg, E},
        {De, g->ws, D},
        {De, g->shared.w1, S * D * Fs},
        {De, g->shared.b1, S * Fs},
        {De, g->shared.w3, S * D * Fs},
        {De, g->shared.b3, S * Fs},
        {De, g->shared.w2, S * Fs * D},
        {De, g->shared.b2, S * D},
        {Ex, g->experts.w1, El * D * F},
        {Ex, g->experts.b1, El * F},
        {Ex, g->experts.w3, El * D * F},
        {Ex, g->experts.b3, El * F},
        {Ex, g->experts.w2, El * F * D},
        {Ex, g->experts.b2, El * D},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].g && t[i].n > 0) OK(moe_comm_sync_grads(c, t[i].k, t[i].g, (size_t)t[i].n));
}

// One case at one layout and option set; returns the failures (agreed on every rank).
static int run(const ep_case *cs, int ep, const moe_ep_options *o, uint64_t seed) {
    const int W = g_W;
    moe_layer_params p = cs->p;
    const int64_t D = p.router.D, E = p.router.E, G = p.router.group_tokens;
    moe_comm_params cp = {ep, (int)E, o->hierarchical && W > 1 ? (W > 2 ? W / 2 : 1) : 0, 1};
    moe_comm *c;
    OK(moe_comm_create(&cp, &c));
    moe_comm_info in = moe_comm_get_info(c);
    // Token slices: whole routing groups per rank, in world-rank order.
    int64_t Tr[64], off[65];
    off[0] = 0;
    for (int r = 0; r < W; r++) {
        int64_t g = GROUPS;
        if (cs->zero_rank && W > 1) g = r == W - 1 ? 0 : r == 0 ? 2 * GROUPS : GROUPS;
        Tr[r] = g * G;
        off[r + 1] = off[r] + Tr[r];
    }
    const int64_t Tg = off[W], T = Tr[g_rank], T0 = off[g_rank];
    // The same global batch and weights on every rank.
    uint64_t st = seed * 7919 + 11;
    float *x = moe_xcalloc((size_t)(Tg * D), sizeof(float));
    float *dy = moe_xcalloc((size_t)(Tg * D), sizeof(float));
    for (int64_t i = 0; i < Tg * D; i++) {
        int64_t t = i / D, src = cs->tie_period > 0 ? (t % cs->tie_period) * D + i % D : i;
        x[i] = src == i ? (float)(3 * test_urand(&st) - 1.5) : x[src];
        dy[i] = (float)(2 * test_urand(&st) - 1);
    }
    float bias[E_] = {0};
    bias[cs->bias_which] = (float)cs->bias_e;
    const float *bp = cs->bias_e != 0 ? bias : NULL;
    moe_layer_weights w, g;
    int64_t nw = moe_layer_weights_alloc(&p, &w);
    moe_layer_weights_alloc(&p, &g);
    moe_layer_weights_init(&p, &w, seed);
    moe_layer_weights wv = moe_ep_local_view(&p, &w, in.first_expert);
    moe_layer_weights gv = moe_ep_local_view(&p, &g, in.first_expert);

    moe_layer_params pe = p;
    pe.T_max = 2 * GROUPS * G;
    moe_ep_layer *L;
    OK(moe_ep_layer_create(&pe, c, o, &L));
    float *y = moe_xcalloc((size_t)(T * D) + 1, sizeof(float));
    float *dx = moe_xcalloc((size_t)(T * D) + 1, sizeof(float));
    float *dyr = moe_xcalloc((size_t)(T * D) + 1, sizeof(float));
    // Rank loss = W × its share of the global loss Σ y·dy: dy_r = W·dy on its tokens.
    for (int64_t i = 0; i < T * D; i++) dyr[i] = (float)W * dy[T0 * D + i];
    moe_route_opts opts = {cs->training, seed ^ 0x5eed, T0};
    moe_route_stats s;
    OK(moe_ep_layer_forward(L, y, &s, x + T0 * D, T, &wv, bp, &opts));
    OK(moe_ep_layer_backward(L, dx, &gv, dyr, &wv));
    sync_grads(c, &p, in.n_local_experts, &gv);
    // Assemble every expert's gradient: each is nonzero on exactly one rank of the EP group.
    const char *nm[16];
    float *gp[16], *wp[16];
    int64_t gn[16];
    int nt = tensors(&p, &g, nm, gp, gn);
    for (int i = 0; i < nt; i++)
        if (nm[i][0] == 'w' || nm[i][0] == 'b')
            if (strcmp(nm[i], "wg") && strcmp(nm[i], "bg") && strcmp(nm[i], "ws"))
                OK(moe_comm_allreduce_f32(c, MOE_COMM_EP, gp[i], (size_t)gn[i], MOE_COMM_SUM));
    float *yall = g_rank == 0 ? moe_xcalloc((size_t)(Tg * D) + 1, sizeof(float)) : NULL;
    float *dxall = g_rank == 0 ? moe_xcalloc((size_t)(Tg * D) + 1, sizeof(float)) : NULL;
    int64_t cnt[64];
    OK(moe_comm_gatherv_f32(c, MOE_COMM_WORLD, y, T * D, yall, Tg * D, cnt));
    OK(moe_comm_gatherv_f32(c, MOE_COMM_WORLD, dx, T * D, dxall, Tg * D, cnt));

    int fails = 0;
    char what[256];
    snprintf(what, sizeof what, "%s [W=%d EP=%d dedup=%d chunks=%d hier=%d]", cs->name, W, ep,
             o->dedup, o->n_chunks, o->hierarchical);
    if (g_rank == 0) {
        // The one-rank layer on the global batch.
        moe_layer_params p1 = p;
        p1.T_max = Tg;
        moe_layer *R;
        OK(moe_layer_create(&p1, &R));
        moe_layer_weights gr;
        moe_layer_weights_alloc(&p, &gr);
        float *yr = moe_xcalloc((size_t)(Tg * D), sizeof(float));
        float *dxr = moe_xcalloc((size_t)(Tg * D), sizeof(float));
        moe_route_opts o1 = {cs->training, seed ^ 0x5eed, 0};
        moe_route_stats rs;
        moe_layer_forward(R, yr, &rs, x, Tg, &w, bp, &o1);
        moe_layer_backward(R, dxr, &gr, dy, &w);
        fails += test_close(what, "y", yall, yr, Tg * D, 1.0, 1e-5);
        fails += test_close(what, "dx", dxall, dxr, Tg * D, 1.0 / W, 1e-5);
        int nr = tensors(&p, &gr, nm, wp, gn);
        MOE_ASSERT_EQ(nr, nt);
        for (int i = 0; i < nt; i++)
            fails += test_close(what, nm[i], gp[i], wp[i], gn[i], 1.0, 1e-5);
        // Global stats equal the one-rank stats.
        for (int e = 0; e < E; e++)
            if (s.tokens_per_expert[e] != rs.tokens_per_expert[e] ||
                s.selected_per_expert[e] != rs.selected_per_expert[e]) {
                fprintf(stderr,
                        "FAIL %s: expert %d kept/selected expected %lld/%lld got %lld/%lld\n", what,
                        e, (long long)rs.tokens_per_expert[e], (long long)rs.selected_per_expert[e],
                        (long long)s.tokens_per_expert[e], (long long)s.selected_per_expert[e]);
                fails++;
            }
        int64_t gi[4] = {s.selected, s.kept, s.dropped, s.unrouted};
        int64_t ri[4] = {rs.selected, rs.kept, rs.dropped, rs.unrouted};
        for (int i = 0; i < 4; i++)
            if (gi[i] != ri[i]) {
                fprintf(stderr,
                        "FAIL %s: stat %d (selected,kept,dropped,unrouted) expected %lld "
                        "got %lld\n",
                        what, i, (long long)ri[i], (long long)gi[i]);
                fails++;
            }
        const char *dn[5] = {"max_over_mean", "cv", "entropy", "aux_loss", "z_loss"};
        double gd[5] = {s.max_over_mean, s.cv, s.entropy, s.aux_loss, s.z_loss};
        double rd[5] = {rs.max_over_mean, rs.cv, rs.entropy, rs.aux_loss, rs.z_loss};
        for (int i = 0; i < 5; i++)
            if (fabs(gd[i] - rd[i]) > 1e-5 * fmax(fabs(rd[i]), 1e-3)) {
                fprintf(stderr, "FAIL %s: %s expected %.9g got %.9g\n", what, dn[i], rd[i], gd[i]);
                fails++;
            }
        // Tokens conserved: kept = selected − dropped = Σ tokens_per_expert.
        int64_t kept = 0;
        for (int e = 0; e < E; e++) kept += s.tokens_per_expert[e];
        if (kept != s.kept || s.kept != s.selected - s.dropped) {
            fprintf(stderr, "FAIL %s: Σ kept %lld, kept %lld, selected − dropped %lld\n", what,
                    (long long)kept, (long long)s.kept, (long long)(s.selected - s.dropped));
            fails++;
        }
        // Bias update from the global counts the layer returns (as the trainer does it) = the
        // one-rank update.
        float b1[E_] = {0}, b2[E_] = {0};
        moe_router_update_bias(b1, s.selected_per_expert, (int)E, 1e-3);
        moe_router_update_bias(b2, rs.selected_per_expert, (int)E, 1e-3);
        fails += test_close(what, "bias update", b1, b2, E, 1.0, 0);
        free(yr);
        free(dxr);
        moe_layer_weights_free(&gr);
        moe_layer_free(R);
    }
    (void)nw;
    int64_t f = fails;
    OK(moe_comm_allreduce_i64(c, MOE_COMM_WORLD, &f, 1, MOE_COMM_SUM));
    free(x);
    free(dy);
    free(y);
    free(dx);
    free(dyr);
    free(yall);
    free(dxall);
    moe_layer_weights_free(&w);
    moe_layer_weights_free(&g);
    moe_ep_layer_free(L);
    moe_comm_free(c);
    return (int)f;
}

// Invalid layouts are refused through the create path, with the numbers.
static int refused(void) {
    int fails = 0;
    moe_comm_params cp = {g_W, 0, 0, 1}; // E unknown to comm: the layer checks
    moe_comm *c;
    OK(moe_comm_create(&cp, &c));
    moe_layer_params p = mk(MOE_ACT_GELU);
    p.T_max = 8;
    moe_ep_layer *L = NULL;
    char want[128];
    if (g_W > 1) {
        p.router.E = 2 * g_W - 1; // not divisible by EP = W
        moe_status st = moe_ep_layer_create(&p, c, NULL, &L);
        snprintf(want, sizeof want, "%d", p.router.E);
        if (st != MOE_ELAYOUT || !strstr(moe_last_error(), want) || L) {
            fprintf(stderr, "FAIL refused: E=%d at EP=%d: status %d, message '%s'\n", p.router.E,
                    g_W, st, moe_last_error());
            fails++;
        }
    }
    moe_comm_free(c);
    moe_comm_params cq = {g_W, 8, 0, 1}; // groups built for 8 experts, layer has 16
    OK(moe_comm_create(&cq, &c));
    p.router.E = 16;
    moe_status st = moe_ep_layer_create(&p, c, NULL, &L);
    if (st != MOE_ELAYOUT || !strstr(moe_last_error(), "16") || !strstr(moe_last_error(), "8")) {
        fprintf(stderr, "FAIL refused: layer E=16 on groups for 8: status %d, message '%s'\n", st,
                moe_last_error());
        fails++;
    }
    moe_comm_free(c);
    return fails;
}

// A step exceeding max_expert_rows is refused on every rank (no rank left in a collective):
// without dedup by the engine's row check, with dedup by the layer's pair check (EP = 1: every
// token's 2 pairs ride one row, 8 rows fit 12, 16 pairs do not).
static int capacity_refused(void) {
    int fails = 0;
    for (int dedup = 0; dedup < 2; dedup++) {
        moe_comm_params cp = {1, E_, 0, 1};
        moe_comm *c;
        OK(moe_comm_create(&cp, &c));
        moe_layer_params p = mk(MOE_ACT_GELU);
        p.T_max = 8;
        moe_ep_options o = {dedup, 1, 0, dedup ? 12 : 4, 0};
        moe_ep_layer *L;
        OK(moe_ep_layer_create(&p, c, &o, &L));
        moe_comm_info in = moe_comm_get_info(c);
        moe_layer_weights w;
        moe_layer_weights_alloc(&p, &w);
        moe_layer_weights_init(&p, &w, 3);
        moe_layer_weights wv = moe_ep_local_view(&p, &w, in.first_expert);
        float x[8 * D_], y[8 * D_];
        for (int i = 0; i < 8 * D_; i++) x[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
        moe_status st = moe_ep_layer_forward(L, y, NULL, x, 8, &wv, NULL, NULL);
        if (st == MOE_OK || !strstr(moe_last_error(), dedup ? "max_expert_rows" : "rows")) {
            fprintf(stderr, "FAIL capacity refusal (dedup %d): status %d, message '%s'\n", dedup,
                    st, moe_last_error());
            fails++;
        }
        moe_layer_weights_free(&w);
        moe_ep_layer_free(L);
        moe_comm_free(c);
    }
    return fails;
}

int main(int argc, char **argv) {
    OK(moe_comm_init(&argc, &argv));
    {
        moe_comm_params p0 = {1, 0, 0, 1};
        moe_comm *c;
        OK(moe_comm_create(&p0, &c));
        g_rank = moe_comm_rank(c, MOE_COMM_WORLD);
        g_W = moe_comm_size(c, MOE_COMM_WORLD);
        moe_comm_free(c);
    }
    MOE_ASSERT(g_W <= 64);
    ep_case cs[16];
    int n = 0;
    ep_case c;
    memset(&c, 0, sizeof c);
    c = (ep_case){"softmax top-2 dropless gelu, aux+z", mk(MOE_ACT_GELU), 0, 0, 0, 0, 0};
    cs[n++] = c;
    c = (ep_case){"sigmoid + balancing bias, renorm, swiglu", mk(MOE_ACT_SWIGLU), 0.3, 2, 0, 0, 0};
    c.p.router.scoring = MOE_SCORE_SIGMOID;
    cs[n++] = c;
    c = (ep_case){"no renorm, scaling 2, gate+ffn bias", mk(MOE_ACT_GELU), 0, 0, 0, 0, 0};
    c.p.router.renormalize = 0, c.p.router.routed_scaling = 2;
    c.p.router.gate_bias = 1, c.p.ffn_bias = 1;
    cs[n++] = c;
    c = (ep_case){"capacity 0.75 with drops, tied scores", mk(MOE_ACT_SWIGLU), 0, 0, 0, 0, 2};
    c.p.router.capacity_factor = 0.75;
    cs[n++] = c;
    c = (ep_case){"expert choice cf=1", mk(MOE_ACT_GELU), 0, 0, 0, 0, 0};
    c.p.router.strategy = MOE_ROUTE_EXPERT_CHOICE;
    cs[n++] = c;
    c = (ep_case){"expert choice cf=0.5 swiglu bias", mk(MOE_ACT_SWIGLU), 0, 0, 0, 0, 0};
    c.p.router.strategy = MOE_ROUTE_EXPERT_CHOICE;
    c.p.router.capacity_factor = 0.5, c.p.ffn_bias = 1;
    cs[n++] = c;
    c = (ep_case){"shared x2 gated, jitter, aux+z", mk(MOE_ACT_GELU), 0, 0, 1, 0, 0};
    c.p.n_shared = 2, c.p.Fs = 6, c.p.shared_gate = 1, c.p.router.jitter = 0.5;
    c.p.router.aux_loss_coef = 0.1, c.p.router.z_loss_coef = 0.01;
    cs[n++] = c;
    c = (ep_case){"zero-token rank, expert 5 without tokens", mk(MOE_ACT_SWIGLU), -5.0, 5, 0, 1, 0};
    c.p.n_shared = 1, c.p.Fs = 5;
    cs[n++] = c;
    c = (ep_case){"zero-token rank, capacity 1.0, k=3", mk(MOE_ACT_GELU), 0, 0, 0, 1, 0};
    c.p.router.K = 3, c.p.router.capacity_factor = 1.0;
    cs[n++] = c;

    int fails = refused() + capacity_refused(), runs = 0;
    for (int i = 0; i < n; i++)
        for (int ep = 1; ep <= g_W; ep++) {
            if (g_W % ep || E_ % ep) continue;
            for (int opt = 0; opt < 8; opt++) {
                moe_ep_options o = {opt & 1, opt & 2 ? 3 : 1, (opt >> 2) & 1, 0, 3};
                int f = run(&cs[i], ep, &o, 100 + (uint64_t)i);
                fails += f;
                runs++;
            }
            if (g_rank == 0)
                printf("%-45s EP=%d EDP=%d: %s\n", cs[i].name, ep, g_W / ep, fails ? "FAIL" : "ok");
        }
    if (g_rank == 0) printf("%d runs at W=%d, %d failures\n", runs, g_W, fails);
    OK(moe_comm_finalize());
    return fails ? 1 : 0;
}
