// test_ep_layer.c: layout invariance of the expert-parallel layer — for every EP dividing the
// world, every routing strategy and every exchange option (dedup, chunks, hierarchical with fake
// nodes), the outputs, dx and the synced gradients (gathered to rank 0) equal the one-rank layer
// run on the global batch on rank 0, and the global stats equal its stats. Also a rank with no
// tokens, an expert with no tokens, and invalid layouts refused through moe_ep_layer_create.
// With bf16 payloads the reference is the same one-rank computation with the payload rounded at
// the same four points (ref_bf16); see there for why it can match to 1e-5.
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

// The bf16 reference on the global batch: the one-rank layer's computation (router, experts,
// shared experts from their modules) with every (token, expert) pair's payload rounded where the
// expert-parallel layer rounds it — x_t on dispatch, FFN_e(x) on combine, w·dy_t on
// combine-backward, dFFN_e/dx on dispatch-backward — and fp32 arithmetic elsewhere. It can match
// to 1e-5 only if the values being rounded are bit-identical (else a value next to a rounding
// boundary lands one bf16 ulp apart): the expert GEMMs run one row at a time here and in the
// layer (sub_rows = 1), and run() makes the gate logits exact (dyadic x and Wg), so the router's
// weights do not depend on how many tokens a rank's GEMM had.
static void ref_bf16(const moe_layer_params *p, const moe_layer_weights *w, const float *x,
                     const float *dy, int64_t T, const float *bias, const moe_route_opts *o,
                     float *y, float *dx, moe_layer_weights *g) {
    const int64_t D = p->router.D, F = p->F;
    moe_route_plan *pl;
    OK(moe_route_plan_create(&p->router, T, &pl));
    moe_router_forward(&p->router, pl, NULL, x, w->wg, w->bg, bias, T, o); // stats: the layer's
    moe_experts_params e1 = moe_layer_routed_params(p);
    e1.n_experts = 1;
    const int64_t R = pl->n_rows > 0 ? pl->n_rows : 1, spr = moe_experts_save_per_row(&e1),
                  scr = moe_experts_scratch_per_row(&e1), one[2] = {0, 1};
    float *xin = moe_xcalloc((size_t)(R * D), sizeof(float));
    float *out = moe_xcalloc((size_t)(R * D), sizeof(float));
    float *dout = moe_xcalloc((size_t)(R * D), sizeof(float));
    float *dxin = moe_xcalloc((size_t)(R * D), sizeof(float));
    float *save = moe_xcalloc((size_t)(R * spr), sizeof(float));
    float *scratch = moe_xcalloc((size_t)(R * scr), sizeof(float));
    float *drw = moe_xcalloc((size_t)R, sizeof(float));
    memset(y, 0, (size_t)(T * D) * sizeof(float));
    for (int e = 0; e < p->router.E; e++) {
        moe_expert_weights we = moe_experts_slice(&w->experts, D, F, 0, e);
        for (int64_t r = pl->offsets[e]; r < pl->offsets[e + 1]; r++) {
            const int64_t t = pl->row_token[r];
            for (int64_t d = 0; d < D; d++) xin[r * D + d] = moe_comm_round_bf16(x[t * D + d]);
            moe_experts_forward(&e1, out + r * D, save + r * spr, &we, one, xin + r * D);
            for (int64_t d = 0; d < D; d++)
                y[t * D + d] += pl->row_weight[r] * moe_comm_round_bf16(out[r * D + d]);
        }
    }
    moe_experts_params sp = moe_layer_shared_params(p);
    moe_shared_buffers sh = {0};
    if (p->n_shared > 0) {
        moe_shared_buffers_alloc(&sh, &sp, T);
        moe_shared_forward(&sp, &sh, y, &w->shared, p->shared_gate ? w->ws : NULL, x, T);
    }
    memset(dx, 0, (size_t)(T * D) * sizeof(float));
    for (int e = 0; e < p->router.E; e++) {
        moe_expert_weights we = moe_experts_slice(&w->experts, D, F, 0, e);
        moe_expert_weights ge = moe_experts_slice(&g->experts, D, F, 0, e);
        for (int64_t r = pl->offsets[e]; r < pl->offsets[e + 1]; r++) {
            const int64_t t = pl->row_token[r];
            float acc = 0;
            for (int64_t d = 0; d < D; d++) {
                acc += dy[t * D + d] * moe_comm_round_bf16(out[r * D + d]);
                dout[r * D + d] = moe_comm_round_bf16(pl->row_weight[r] * dy[t * D + d]);
            }
            drw[r] = acc;
            moe_experts_backward(&e1, dxin + r * D, &ge, scratch + r * scr, &we, one, xin + r * D,
                                 save + r * spr, dout + r * D);
            for (int64_t d = 0; d < D; d++) dx[t * D + d] += moe_comm_round_bf16(dxin[r * D + d]);
        }
    }
    moe_router_backward(&p->router, pl, drw, x, w->wg, dx, g->wg, g->bg);
    if (p->n_shared > 0) {
        const int gate = p->shared_gate;
        moe_shared_backward(&sp, &sh, dx, &g->shared, gate ? g->ws : NULL, &w->shared,
                            gate ? w->ws : NULL, x, dy, T);
        moe_shared_buffers_free(&sh);
    }
    free(xin);
    free(out);
    free(dout);
    free(dxin);
    free(save);
    free(scratch);
    free(drw);
    moe_route_plan_free(pl);
}

// One case at one layout and option set; returns the failures (agreed on every rank).
static int run(const ep_case *cs, int ep, const moe_ep_options *o, uint64_t seed) {
    const int W = g_W;
    moe_layer_params p = cs->p;
    const int64_t D = p.router.D, E = p.router.E, G = p.router.group_tokens;
    // Fake nodes (W/2 ranks, or 1 at W = 2) for the hierarchical exchange and node dedup.
    const int fake = (o->hierarchical || o->dedup == 2) && W > 1;
    moe_comm_params cp = {ep, (int)E, fake ? (W > 2 ? W / 2 : 1) : 0, 1};
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
    const int bf16 = o->dtype == MOE_COMM_BF16;
    for (int64_t i = 0; i < Tg * D; i++) {
        int64_t t = i / D, src = cs->tie_period > 0 ? (t % cs->tie_period) * D + i % D : i;
        x[i] = src == i ? (float)(3 * test_urand(&st) - 1.5) : x[src];
        dy[i] = (float)(2 * test_urand(&st) - 1);
        // bf16: x on a 2^-12 grid (13 significant bits: still rounded on dispatch) so that x·Wg
        // with Wg on a 2^-4 grid is exact in fp32 whatever the GEMM's order (see ref_bf16).
        if (bf16) x[i] = ldexpf(rintf(ldexpf(x[i], 12)), -12);
    }
    float bias[E_] = {0};
    bias[cs->bias_which] = (float)cs->bias_e;
    const float *bp = cs->bias_e != 0 ? bias : NULL;
    moe_layer_weights w, g;
    int64_t nw = moe_layer_weights_alloc(&p, &w);
    moe_layer_weights_alloc(&p, &g);
    moe_layer_weights_init(&p, &w, seed);
    for (int64_t i = 0; bf16 && i < D * E; i++) // Wg (and bg) on a 2^-4 grid in [-1/2, 1/2]
        w.wg[i] = (float)((int)(test_urand(&st) * 17) - 8) / 16.0f;
    for (int64_t i = 0; bf16 && w.bg && i < E; i++)
        w.bg[i] = (float)((int)(test_urand(&st) * 17) - 8) / 16.0f;
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
    moe_route_opts opts = {cs->training, seed ^ 0x5eed, T0, NULL};
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
    snprintf(what, sizeof what, "%s [W=%d EP=%d dedup=%d chunks=%d hier=%d%s]", cs->name, W, ep,
             o->dedup, o->n_chunks, o->hierarchical, bf16 ? " bf16" : "");
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
        moe_route_opts o1 = {cs->training, seed ^ 0x5eed, 0, NULL};
        moe_route_stats rs;
        moe_layer_forward(R, yr, &rs, x, Tg, &w, bp, &o1);
        moe_layer_backward(R, dxr, &gr, dy, &w);
        if (bf16) {
            // The rounding must show: the fp32 layer is further from the result than 1e-5 allows
            // (relative max error of about 2^-9); then the bf16 reference replaces it.
            double mx = 0, dmax = 0;
            for (int64_t i = 0; i < Tg * D; i++) {
                mx = fmax(mx, fabs(yr[i]));
                dmax = fmax(dmax, fabs(yall[i] - yr[i]));
            }
            if (Tg > 0 && dmax <= 1e-4 * fmax(mx, 1e-3)) {
                fprintf(stderr, "FAIL %s: y within %.3g of the fp32 layer: no rounding?\n", what,
                        dmax / fmax(mx, 1e-3));
                fails++;
            }
            moe_layer_weights_free(&gr);
            moe_layer_weights_alloc(&p, &gr);
            ref_bf16(&p, &w, x, dy, Tg, bp, &o1, yr, dxr, &gr);
        }
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
    // bf16 payloads with dedup: refused with the reason (layout invariance).
    p.router.E = 8;
    moe_ep_options ob = {1, 1, 0, 0, 0, MOE_COMM_BF16};
    st = moe_ep_layer_create(&p, c, &ob, &L);
    if (st != MOE_EINVAL || !strstr(moe_last_error(), "dedup") || L) {
        fprintf(stderr, "FAIL refused: bf16 with dedup: status %d, message '%s'\n", st,
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
        moe_ep_options o = {dedup, 1, 0, dedup ? 12 : 4, 0, MOE_COMM_F32};
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
                moe_ep_options o = {opt & 1, opt & 2 ? 3 : 1, (opt >> 2) & 1, 0, 3, MOE_COMM_F32};
                int f = run(&cs[i], ep, &o, 100 + (uint64_t)i);
                fails += f;
                runs++;
            }
            // Node dedup (fake nodes): chunks 1/3 × hierarchical.
            for (int opt = 0; opt < 4; opt++) {
                moe_ep_options o = {2, opt & 1 ? 3 : 1, opt >> 1, 0, 3, MOE_COMM_F32};
                fails += run(&cs[i], ep, &o, 100 + (uint64_t)i);
                runs++;
            }
            // bf16 payloads (no dedup: refused), chunks 1/3 × hierarchical, GEMMs row by row.
            for (int opt = 0; opt < 4; opt++) {
                moe_ep_options o = {0, opt & 1 ? 3 : 1, opt >> 1, 0, 1, MOE_COMM_BF16};
                fails += run(&cs[i], ep, &o, 100 + (uint64_t)i);
                runs++;
            }
            if (g_rank == 0)
                printf("%-45s EP=%d EDP=%d: %s\n", cs[i].name, ep, g_W / ep, fails ? "FAIL" : "ok");
        }
    if (g_rank == 0) printf("%d runs at W=%d, %d failures\n", runs, g_W, fails);
    OK(moe_comm_finalize());
    return fails ? 1 : 0;
}
