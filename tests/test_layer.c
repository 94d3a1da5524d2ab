// test_layer.c: the optimized one-rank MoE layer against the plain double reference
// (tests/test_layer_ref.c) — output, aux/z losses, kept counts, dx and every gradient — over a
// grid of shapes and strategies; the reference backward against central finite differences of
// the reference forward (double, selection held fixed); E=1 against a dense FFN; a direct float
// finite-difference spot check of the optimized layer; T=0; params from the protobuf config.
#include "test-util.h"
#include "test_layer_ref.h"
#include "moe.pb-c.h"

#include <math.h>
#include <string.h>

typedef struct {
    const char *name;
    moe_layer_params p;
    int64_t T;
    double bias0, bias_last; // balancing bias on expert 0 and expert E-1 (0: none)
    int tie_groups;          // > 0: x rows repeat with this period (tied scores)
    int training;            // jitter on
    int fd;                  // also finite-difference the reference
} layer_case;

static moe_layer_params mk(int64_t D, int64_t F, int E, int K, moe_activation act) {
    moe_layer_params p;
    memset(&p, 0, sizeof p);
    p.router.D = D;
    p.router.E = E;
    p.router.K = K;
    p.router.scoring = MOE_SCORE_SOFTMAX;
    p.router.strategy = MOE_ROUTE_TOKEN_CHOICE;
    p.router.renormalize = 1;
    p.router.aux_loss_coef = 0.01;
    p.router.z_loss_coef = 0.001;
    p.router.routed_scaling = 1;
    p.F = F;
    p.act = act;
    p.Fs = F;
    return p;
}

typedef struct {
    const char *name;
    int64_t off, n;
} tensor_span;

// Named spans of the weight block, for per-tensor messages.
static int spans_of(const moe_layer_params *p, const ref_offsets *o, tensor_span *s) {
    const int64_t D = p->router.D, E = p->router.E, F = p->F, Fs = p->Fs, S = p->n_shared;
    int n = 0;
#define SPAN(nm, of, len)                                                                          \
    if ((of) >= 0) s[n++] = (tensor_span){nm, of, len}
    SPAN("dwg", o->wg, D * E);
    SPAN("dbg", o->bg, E);
    SPAN("dws", o->ws, D);
    SPAN("dw1", o->w1, E * D * F);
    SPAN("db1", o->b1, E * F);
    SPAN("dw3", o->w3, E * D * F);
    SPAN("db3", o->b3, E * F);
    SPAN("dw2", o->w2, E * F * D);
    SPAN("db2", o->b2, E * D);
    SPAN("shared.dw1", o->sw1, S * D * Fs);
    SPAN("shared.db1", o->sb1, S * Fs);
    SPAN("shared.dw3", o->sw3, S * D * Fs);
    SPAN("shared.db3", o->sb3, S * Fs);
    SPAN("shared.dw2", o->sw2, S * Fs * D);
    SPAN("shared.db2", o->sb2, S * D);
#undef SPAN
    return n;
}

static double loss_of(const double *y, const double *dy, int64_t n, const ref_losses *l) {
    double s = l->aux + l->z;
    for (int64_t i = 0; i < n; i++) s += y[i] * dy[i];
    return s;
}

static int run_case(const layer_case *c, uint64_t seed) {
    moe_layer_params p = c->p;
    const int64_t T = c->T, D = p.router.D, E = p.router.E;
    p.T_max = T;
    int fails = 0;
    char nm[160];
    moe_layer_weights w, g;
    int64_t nw = moe_layer_weights_alloc(&p, &w);
    moe_layer_weights_alloc(&p, &g);
    moe_layer_weights_init(&p, &w, seed);
    uint64_t st = seed * 7919 + 1;
    float *x = moe_xcalloc((size_t)(T * D), sizeof(float));
    float *dy = moe_xcalloc((size_t)(T * D), sizeof(float));
    float *y = moe_xcalloc((size_t)(T * D), sizeof(float));
    float *dx = moe_xcalloc((size_t)(T * D), sizeof(float));
    float *bias = moe_xcalloc((size_t)E, sizeof(float));
    for (int64_t i = 0; i < T * D; i++) {
        int64_t t = i / D, src = c->tie_groups > 0 ? (t % c->tie_groups) * D + i % D : i;
        x[i] = src == i ? (float)test_uniform(&st, -1.5, 1.5) : x[src];
        dy[i] = (float)test_uniform(&st, -1, 1);
    }
    bias[0] = (float)c->bias0;
    bias[E - 1] += (float)c->bias_last;
    const float *bp = (c->bias0 != 0 || c->bias_last != 0) ? bias : NULL;
    moe_route_opts opts = {c->training, seed ^ 0xabcdef, 100, NULL};

    moe_layer *L;
    if (moe_layer_create(&p, &L)) {
        fprintf(stderr, "FAIL %s: create: %s\n", c->name, moe_last_error());
        return 1;
    }
    moe_route_stats stats;
    moe_layer_forward(L, y, &stats, x, T, &w, bp, &opts);
    moe_layer_backward(L, dx, &g, dy, &w);
    const moe_route_plan *plan = moe_layer_plan(L);

    // Reference in double.
    double *W = moe_xcalloc((size_t)nw, sizeof(double)),
           *dW = moe_xcalloc((size_t)nw, sizeof(double));
    double *xd = moe_xcalloc((size_t)(T * D), sizeof(double)),
           *dyd = moe_xcalloc((size_t)(T * D), sizeof(double));
    double *yr = moe_xcalloc((size_t)(T * D), sizeof(double)),
           *dxr = moe_xcalloc((size_t)(T * D), sizeof(double));
    double bd[256] = {0};
    for (int64_t i = 0; i < nw; i++) W[i] = w.wg[i];
    for (int64_t i = 0; i < T * D; i++) xd[i] = x[i], dyd[i] = dy[i];
    for (int e = 0; e < E; e++) bd[e] = bias[e];
    ref_offsets o = ref_offsets_of(&w, nw);
    ref_selection sel;
    ref_selection_init(&sel, &p, T);
    ref_losses lr;
    ref_layer_forward(&p, &o, W, xd, bp ? bd : NULL, T, &opts, &sel, yr, &lr);
    ref_layer_backward(&p, &o, W, xd, bp ? bd : NULL, T, &opts, &sel, dyd, dW, dxr);

    snprintf(nm, sizeof nm, "%s: y", c->name);
    fails += ref_check(nm, y, yr, T * D, 2e-5, 1e-3);
    snprintf(nm, sizeof nm, "%s: dx", c->name);
    fails += ref_check(nm, dx, dxr, T * D, 5e-5, 1e-3);
    tensor_span sp[20];
    int ns = spans_of(&p, &o, sp);
    for (int i = 0; i < ns; i++) {
        snprintf(nm, sizeof nm, "%s: %s", c->name, sp[i].name);
        fails += ref_check(nm, g.wg + sp[i].off, dW + sp[i].off, sp[i].n, 5e-5, 1e-3);
    }
    double got_l[2] = {stats.aux_loss, stats.z_loss}, ref_l[2] = {lr.aux, lr.z};
    snprintf(nm, sizeof nm, "%s: aux,z losses", c->name);
    fails += ref_check_d(nm, got_l, ref_l, 2, 1e-5, 1e-6);
    // kept rows per expert and conservation
    int64_t kept = 0, ref_kept_total = 0;
    for (int e = 0; e < E; e++) {
        int64_t rk = 0;
        for (int64_t t = 0; t < T; t++) {
            if (p.router.strategy == MOE_ROUTE_EXPERT_CHOICE)
                rk += sel.chosen[t * E + e];
            else
                for (int k = 0; k < p.router.K; k++)
                    rk += sel.sel[t * p.router.K + k] == e && sel.kept[t * p.router.K + k];
        }
        if (rk != plan->counts[e]) {
            fprintf(stderr, "FAIL %s: expert %d kept rows expected %lld got %lld\n", c->name, e,
                    (long long)rk, (long long)plan->counts[e]);
            fails++;
        }
        kept += plan->counts[e];
        ref_kept_total += rk;
    }
    if (kept != stats.selected - stats.dropped || kept != plan->n_rows) {
        fprintf(stderr,
                "FAIL %s: tokens not conserved: Σ counts %lld, selected %lld − dropped "
                "%lld, n_rows %lld\n",
                c->name, (long long)kept, (long long)stats.selected, (long long)stats.dropped,
                (long long)plan->n_rows);
        fails++;
    }
    (void)ref_kept_total;

    if (E == 1 && p.n_shared == 0) { // E = 1: a dense FFN (softmax weight is exactly 1)
        double *yd = moe_xcalloc((size_t)(T * D), sizeof(double));
        ref_dense_forward(&p, &o, W, xd, T, yd);
        for (int64_t i = 0; i < T * D; i++) yd[i] *= p.router.routed_scaling;
        snprintf(nm, sizeof nm, "%s: E=1 vs dense FFN", c->name);
        fails += ref_check(nm, y, yd, T * D, 2e-5, 1e-3);
        free(yd);
    }

    if (c->fd) {
        // Central differences of the reference loss (selection fixed) vs its analytic gradient.
        const double h = 1e-5;
        double *yp = moe_xcalloc((size_t)(T * D), sizeof(double));
        double *fdW = moe_xcalloc((size_t)nw, sizeof(double)),
               *fdx = moe_xcalloc((size_t)(T * D), sizeof(double));
        ref_losses l1, l2;
        for (int pass = 0; pass < 2; pass++) {
            double *v = pass ? xd : W, *out = pass ? fdx : fdW;
            int64_t n = pass ? T * D : nw;
            for (int64_t i = 0; i < n; i++) {
                double keep = v[i];
                v[i] = keep + h;
                ref_layer_forward(&p, &o, W, xd, bp ? bd : NULL, T, &opts, &sel, yp, &l1);
                double a = loss_of(yp, dyd, T * D, &l1);
                v[i] = keep - h;
                ref_layer_forward(&p, &o, W, xd, bp ? bd : NULL, T, &opts, &sel, yp, &l2);
                double b = loss_of(yp, dyd, T * D, &l2);
                v[i] = keep;
                out[i] = (a - b) / (2 * h);
            }
        }
        // Padding between tensors has zero gradient in both.
        snprintf(nm, sizeof nm, "%s: reference dW vs finite differences", c->name);
        fails += ref_check_d(nm, dW, fdW, nw, 1e-6, 1e-3);
        snprintf(nm, sizeof nm, "%s: reference dx vs finite differences", c->name);
        fails += ref_check_d(nm, dxr, fdx, T * D, 1e-6, 1e-3);
        free(yp);
        free(fdW);
        free(fdx);
    }

    printf("%-40s %s  (T=%lld D=%lld F=%lld E=%lld K=%d rows=%lld dropped=%lld)\n", c->name,
           fails ? "FAIL" : "ok", (long long)T, (long long)D, (long long)p.F, (long long)E,
           p.router.K, (long long)plan->n_rows, (long long)stats.dropped);
    ref_selection_free(&sel);
    free(W);
    free(dW);
    free(xd);
    free(dyd);
    free(yr);
    free(dxr);
    free(x);
    free(dy);
    free(y);
    free(dx);
    free(bias);
    moe_layer_free(L);
    moe_layer_weights_free(&w);
    moe_layer_weights_free(&g);
    return fails;
}

// Direct central differences on the optimized float layer for a few coordinates of every
// tensor (h = 1e-2 on O(1) values; the selection must not change, else the coordinate is skipped).
static int fd_optimized(void) {
    moe_layer_params p = mk(6, 8, 4, 2, MOE_ACT_SWIGLU);
    p.ffn_bias = 1, p.router.gate_bias = 1, p.n_shared = 1, p.Fs = 4, p.shared_gate = 1;
    p.router.aux_loss_coef = 0.2, p.router.z_loss_coef = 0.05;
    const int64_t T = 6, D = 6;
    p.T_max = T;
    moe_layer_weights w, g;
    int64_t nw = moe_layer_weights_alloc(&p, &w);
    moe_layer_weights_alloc(&p, &g);
    moe_layer_weights_init(&p, &w, 3);
    float x[36], dy[36], y[36], dx[36] = {0};
    uint64_t st = 9;
    for (int i = 0; i < 36; i++)
        x[i] = (float)test_uniform(&st, -1, 1), dy[i] = (float)test_uniform(&st, -1, 1);
    moe_layer *L;
    MOE_ASSERT(moe_layer_create(&p, &L) == MOE_OK);
    moe_route_stats s0;
    moe_layer_forward(L, y, &s0, x, T, &w, NULL, NULL);
    moe_layer_backward(L, dx, &g, dy, &w);
    int32_t rows0[64];
    const moe_route_plan *pl = moe_layer_plan(L);
    int64_t n0 = pl->n_rows;
    for (int64_t r = 0; r < n0; r++)
        rows0[r] = pl->row_token[r] * 64 + pl->sel_expert[pl->row_token[r] * 2 + pl->row_slot[r]];
    int fails = 0, checked = 0;
    double worst = 0;
    for (int64_t i = 0; i < nw + T * D; i += 7) {
        float *v = i < nw ? w.wg + i : x + (i - nw);
        float an = i < nw ? g.wg[i] : dx[i - nw];
        float keep = *v;
        double l[2];
        int same = 1;
        for (int sgn = 0; sgn < 2; sgn++) {
            *v = keep + (sgn ? -1e-2f : 1e-2f);
            moe_route_stats s1;
            moe_layer_forward(L, y, &s1, x, T, &w, NULL, NULL);
            double acc = s1.aux_loss + s1.z_loss;
            for (int j = 0; j < 36; j++) acc += (double)y[j] * dy[j];
            l[sgn] = acc;
            same &= pl->n_rows == n0;
            for (int64_t r = 0; same && r < n0; r++)
                same &= rows0[r] == pl->row_token[r] * 64 +
                                        pl->sel_expert[pl->row_token[r] * 2 + pl->row_slot[r]];
        }
        *v = keep;
        if (!same) continue;
        double fd = (l[0] - l[1]) / 2e-2;
        double err = fabs(fd - an) / fmax(1e-2, fabs(fd));
        worst = fmax(worst, err);
        checked++;
        if (err > 5e-3) {
            fprintf(stderr,
                    "FAIL float FD of the optimized layer, coordinate %lld: finite "
                    "difference %.6g analytic %.6g\n",
                    (long long)i, fd, an);
            fails++;
        }
    }
    if (checked < 20) {
        fprintf(stderr, "FAIL float FD: only %d coordinates kept the selection\n", checked);
        fails++;
    }
    printf("%-40s %s  (%d coordinates, worst relative error %.2g)\n",
           "float FD of the optimized layer", fails ? "FAIL" : "ok", checked, worst);
    moe_layer_free(L);
    moe_layer_weights_free(&w);
    moe_layer_weights_free(&g);
    return fails;
}

static int edge_cases(void) {
    int fails = 0;
    // T = 0: nothing routed, nothing written, no crash.
    moe_layer_params p = mk(4, 6, 3, 2, MOE_ACT_GELU);
    p.n_shared = 1, p.Fs = 3, p.T_max = 4;
    moe_layer_weights w, g;
    moe_layer_weights_alloc(&p, &w);
    moe_layer_weights_alloc(&p, &g);
    moe_layer_weights_init(&p, &w, 1);
    moe_layer *L;
    MOE_ASSERT(moe_layer_create(&p, &L) == MOE_OK);
    float x[16] = {0}, y[16], dx[16] = {0};
    moe_route_stats st;
    moe_layer_forward(L, y, &st, x, 0, &w, NULL, NULL);
    moe_layer_backward(L, dx, &g, y, &w);
    if (st.kept != 0 || moe_layer_plan(L)->n_rows != 0) {
        fprintf(stderr, "FAIL T=0: kept %lld\n", (long long)st.kept);
        fails++;
    }
    moe_layer_free(L);
    moe_layer_weights_free(&w);
    moe_layer_weights_free(&g);

    // Params from the schema.
    Moe__ModelConfig m;
    Moe__RouterConfig r;
    moe__model_config__init(&m);
    moe__router_config__init(&r);
    m.d_model = 16, m.n_experts = 4, m.top_k = 2,
    m.activation = MOE__MODEL_CONFIG__ACTIVATION__gelu;
    m.n_shared_experts = 1, m.shared_expert_gate = 1, m.router_bias = 1, m.ffn_bias = 1;
    r.scoring = MOE__ROUTER_CONFIG__SCORING__sigmoid;
    r.strategy = MOE__ROUTER_CONFIG__STRATEGY__expert_choice;
    r.capacity_factor = 1.5, r.jitter = 0.1, r.routed_scaling = 2.5, r.renormalize = 0;
    moe_layer_params q;
    moe_status s = moe_layer_params_from_config(&q, &m, &r, 32);
    if (s || q.router.D != 16 || q.router.E != 4 || q.router.K != 2 || q.F != 64 || q.Fs != 64 ||
        q.act != MOE_ACT_GELU || !q.ffn_bias || q.n_shared != 1 || !q.shared_gate ||
        !q.router.gate_bias || q.router.scoring != MOE_SCORE_SIGMOID ||
        q.router.strategy != MOE_ROUTE_EXPERT_CHOICE || q.router.capacity_factor != 1.5 ||
        q.router.jitter != 0.1 || q.router.routed_scaling != 2.5 || q.router.renormalize ||
        q.router.aux_loss_coef != 0.01 || q.T_max != 32) {
        fprintf(stderr, "FAIL params from config: status %d, D=%lld E=%d K=%d F=%lld Fs=%lld\n", s,
                (long long)q.router.D, q.router.E, q.router.K, (long long)q.F, (long long)q.Fs);
        fails++;
    }
    m.expert_d_ff = 24, m.shared_expert_d_ff = 8;
    s = moe_layer_params_from_config(&q, &m, NULL, 32);
    if (s || q.F != 24 || q.Fs != 8 || q.router.scoring != MOE_SCORE_SOFTMAX ||
        !q.router.renormalize) {
        fprintf(stderr, "FAIL params from config (widths, default router): F=%lld Fs=%lld\n",
                (long long)q.F, (long long)q.Fs);
        fails++;
    }
    m.top_k = 5;
    s = moe_layer_params_from_config(&q, &m, &r, 32);
    if (s != MOE_EINVAL || !strstr(moe_last_error(), "model.top_k")) {
        fprintf(stderr, "FAIL params from config: top_k > n_experts gave status %d, message '%s'\n",
                s, moe_last_error());
        fails++;
    }
    printf("%-40s %s\n", "T=0, params from config", fails ? "FAIL" : "ok");
    return fails;
}

int main(void) {
    layer_case cs[40];
    int n = 0;
    layer_case c;

    memset(&c, 0, sizeof c);
    c = (layer_case){"softmax top-2 gelu", mk(6, 8, 4, 2, MOE_ACT_GELU), 7, 0, 0, 0, 0, 1};
    cs[n++] = c;
    c = (layer_case){
        "swiglu biases, gate bias, no renorm", mk(6, 8, 4, 2, MOE_ACT_SWIGLU), 7, 0, 0, 0, 0, 1};
    c.p.ffn_bias = 1, c.p.router.gate_bias = 1, c.p.router.renormalize = 0;
    c.p.router.routed_scaling = 2.5;
    cs[n++] = c;
    c = (layer_case){"E=1 (dense)", mk(6, 8, 1, 1, MOE_ACT_GELU), 9, 0, 0, 0, 0, 1};
    c.p.ffn_bias = 1;
    cs[n++] = c;
    c = (layer_case){"k=E", mk(5, 6, 3, 3, MOE_ACT_SWIGLU), 6, 0, 0, 0, 0, 1};
    cs[n++] = c;
    c = (layer_case){"T=1", mk(6, 8, 4, 2, MOE_ACT_GELU), 1, 0, 0, 0, 0, 1};
    c.p.router.capacity_factor = 1.0;
    cs[n++] = c;
    c = (layer_case){
        "all tokens -> expert 0, capacity", mk(6, 8, 4, 1, MOE_ACT_GELU), 8, 5.0, 0, 0, 0, 1};
    c.p.router.capacity_factor = 1.0;
    cs[n++] = c;
    c = (layer_case){
        "all tokens -> expert 0, dropless", mk(6, 8, 4, 1, MOE_ACT_SWIGLU), 8, 5.0, 0, 0, 0, 0};
    cs[n++] = c;
    c = (layer_case){"expert with no tokens", mk(6, 8, 4, 2, MOE_ACT_GELU), 9, 0, -5.0, 0, 0, 1};
    cs[n++] = c;
    c = (layer_case){
        "capacity overflow, tied scores", mk(6, 8, 4, 2, MOE_ACT_GELU), 10, 0, 0, 2, 0, 1};
    c.p.router.capacity_factor = 0.75;
    cs[n++] = c;
    c = (layer_case){
        "capacity 1.25 ties period 3", mk(6, 8, 4, 2, MOE_ACT_SWIGLU), 12, 0, 0, 3, 0, 0};
    c.p.router.capacity_factor = 1.25;
    cs[n++] = c;
    c = (layer_case){
        "sigmoid + balance bias, renorm", mk(6, 8, 5, 2, MOE_ACT_GELU), 8, 0.3, -0.2, 0, 0, 1};
    c.p.router.scoring = MOE_SCORE_SIGMOID;
    c.p.router.gate_bias = 1;
    cs[n++] = c;
    c = (layer_case){
        "sigmoid no renorm, scaling 2", mk(6, 8, 5, 3, MOE_ACT_SWIGLU), 8, 0, 0, 0, 0, 1};
    c.p.router.scoring = MOE_SCORE_SIGMOID;
    c.p.router.renormalize = 0;
    c.p.router.routed_scaling = 2;
    c.p.router.capacity_factor = 1.0;
    cs[n++] = c;
    c = (layer_case){"expert choice cf=0 (1)", mk(6, 8, 4, 2, MOE_ACT_GELU), 9, 0, 0, 0, 0, 1};
    c.p.router.strategy = MOE_ROUTE_EXPERT_CHOICE;
    cs[n++] = c;
    c = (layer_case){
        "expert choice cf=0.5 ties, bias", mk(6, 8, 4, 2, MOE_ACT_SWIGLU), 10, 0, 0, 3, 0, 1};
    c.p.router.strategy = MOE_ROUTE_EXPERT_CHOICE;
    c.p.router.capacity_factor = 0.5;
    c.p.ffn_bias = 1;
    cs[n++] = c;
    c = (layer_case){"expert choice cf=3 (C=T)", mk(6, 8, 4, 2, MOE_ACT_GELU), 5, 0, 0, 0, 0, 0};
    c.p.router.strategy = MOE_ROUTE_EXPERT_CHOICE;
    c.p.router.capacity_factor = 3;
    cs[n++] = c;
    c = (layer_case){"shared x2 gated gelu", mk(6, 8, 4, 2, MOE_ACT_GELU), 7, 0, 0, 0, 0, 1};
    c.p.n_shared = 2, c.p.Fs = 5, c.p.shared_gate = 1;
    cs[n++] = c;
    c = (layer_case){
        "shared x1 swiglu bias ungated", mk(6, 8, 4, 1, MOE_ACT_SWIGLU), 7, 0, 0, 0, 0, 1};
    c.p.n_shared = 1, c.p.Fs = 4, c.p.ffn_bias = 1;
    cs[n++] = c;
    c = (layer_case){"jitter (training)", mk(6, 8, 4, 2, MOE_ACT_GELU), 8, 0, 0, 0, 1, 1};
    c.p.router.jitter = 0.5;
    cs[n++] = c;
    c = (layer_case){"larger: T=96 E=8 cf=1", mk(16, 24, 8, 2, MOE_ACT_SWIGLU), 96, 0, 0, 0, 0, 0};
    c.p.router.capacity_factor = 1.0;
    c.p.ffn_bias = 1;
    c.p.n_shared = 1, c.p.Fs = 12, c.p.shared_gate = 1;
    cs[n++] = c;
    c = (layer_case){
        "larger: T=80 E=16 k=4 sigmoid", mk(16, 20, 16, 4, MOE_ACT_GELU), 80, 0, 0, 0, 0, 0};
    c.p.router.scoring = MOE_SCORE_SIGMOID;
    c.p.router.gate_bias = 1;
    cs[n++] = c;

    // Routing groups (group_tokens = G): capacity / expert choice inside each group of G tokens.
    c = (layer_case){
        "groups G=4: capacity 1.0 ties", mk(6, 8, 4, 2, MOE_ACT_GELU), 12, 0, 0, 2, 0, 1};
    c.p.router.capacity_factor = 1.0;
    c.p.router.group_tokens = 4;
    cs[n++] = c;
    c = (layer_case){
        "groups G=5: expert choice cf=0.5", mk(6, 8, 4, 2, MOE_ACT_SWIGLU), 10, 0, 0, 0, 0, 1};
    c.p.router.strategy = MOE_ROUTE_EXPERT_CHOICE;
    c.p.router.capacity_factor = 0.5;
    c.p.router.group_tokens = 5;
    cs[n++] = c;
    c = (layer_case){
        "groups G=3: capacity 0.5 sigmoid", mk(6, 8, 4, 2, MOE_ACT_GELU), 9, 0, 0, 0, 0, 0};
    c.p.router.scoring = MOE_SCORE_SIGMOID;
    c.p.router.capacity_factor = 0.5;
    c.p.router.group_tokens = 3;
    cs[n++] = c;

    int fails = 0;
    for (int i = 0; i < n; i++) fails += run_case(&cs[i], 1000 + (uint64_t)i);
    fails += fd_optimized();
    fails += edge_cases();
    if (fails) {
        fprintf(stderr, "%d check(s) failed\n", fails);
        return 1;
    }
    printf("all %d layer cases passed\n", n);
    return 0;
}
