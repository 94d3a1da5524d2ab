// test_nn_block.c: a tiny composed decoder — tokens → embed → x += attn(rmsnorm(x)) (q/k/v/o
// linears, per-head qk-norm, RoPE, GQA H=4/Hkv=2) → x += ffn(rmsnorm(x)) with the dense FFN being
// moe_experts_forward/backward with one expert and offsets {0, T} (SwiGLU) → final rmsnorm → head
// (untied, and tied to the embedding) → cross-entropy. The fp32 kernels' loss and every gradient
// are compared with the same network written with the double loop references of test_nn_ref.c
// and differentiated by central differences (h = 1e-6). Tolerance: atol 1e-6, rtol 1e-3.
#include "experts.h"
#include "nn.h"
#include "test-util.h"
#include "test_nn_ref.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { B = 2, S = 5, T = B * S, V = 11, D = 8, H = 4, HKV = 2, DH = 4, F = 12 };
enum { NQ = H * DH, NK = HKV * DH };

// Every tensor: float value, float gradient, double mirror; order of the table below.
enum { WTE, N1, WQ, WK, WV, QN, KN, WO, N2, W1, W3, W2, NF, WH, NPARAM };
static const char *pname[NPARAM] = {"wte",    "norm1",  "wq",     "wk",    "wv",
                                    "q_norm", "k_norm", "wo",     "norm2", "ffn.w1",
                                    "ffn.w3", "ffn.w2", "norm_f", "head"};
static const int64_t psize[NPARAM] = {V * D, D, D *NQ, D *NK, D *NK, DH, DH,
                                      NQ *D, D, D *F,  D *F,  F *D,  D,  D *V};

typedef struct {
    float *w[NPARAM], *g[NPARAM];
    double *d[NPARAM];
    int tied;
    int32_t tok[T], tgt[T];
} model;

static float *fl(int64_t n) { return moe_xcalloc((size_t)n, sizeof(float)); }
static double *dbl(int64_t n) { return moe_xcalloc((size_t)n, sizeof(double)); }

// ---------------------------------------------------------------- fp32: the kernels under test
static double kernels_step(model *m) {
    float **w = m->w, **g = m->g;
    const float eps = MOE_NN_RMSNORM_EPS;
    float cs[S * DH / 2], sn[S * DH / 2];
    moe_nn_rope_table(cs, sn, S, DH, MOE_NN_ROPE_THETA);
    // activations
    float *x0 = fl(T * D), *h1 = fl(T * D), *r1 = fl(T), *q0 = fl(T * NQ), *k0 = fl(T * NK);
    float *v = fl(T * NK), *q1 = fl(T * NQ), *k1 = fl(T * NK), *rq = fl(T * H), *rk = fl(T * HKV);
    float *q2 = fl(T * NQ), *k2 = fl(T * NK), *a = fl(T * NQ), *att = fl(B * H * S * S);
    float *x1 = fl(T * D), *h2 = fl(T * D), *r2 = fl(T), *x2 = fl(T * D), *h3 = fl(T * D);
    float *r3 = fl(T), *logits = fl(T * V);
    moe_experts_params fp = {.D = D, .F = F, .n_experts = 1, .act = MOE_ACT_SWIGLU, .bias = 0};
    float *save = fl(T * moe_experts_save_per_row(&fp));
    float *scr = fl(T * moe_experts_scratch_per_row(&fp));
    const int64_t off[2] = {0, T};
    moe_expert_weights ew = {.w1 = w[W1], .w3 = w[W3], .w2 = w[W2]};
    moe_expert_weights eg = {.w1 = g[W1], .w3 = g[W3], .w2 = g[W2]};

    moe_nn_embed_forward(x0, m->tok, w[WTE], T, V, D);
    moe_nn_rmsnorm_forward(h1, r1, x0, w[N1], T, D, eps);
    moe_nn_linear_forward(q0, h1, w[WQ], NULL, T, D, NQ);
    moe_nn_linear_forward(k0, h1, w[WK], NULL, T, D, NK);
    moe_nn_linear_forward(v, h1, w[WV], NULL, T, D, NK);
    moe_nn_qknorm_forward(q1, rq, q0, w[QN], T, H, DH, eps);
    moe_nn_qknorm_forward(k1, rk, k0, w[KN], T, HKV, DH, eps);
    moe_nn_rope_forward(q2, q1, cs, sn, B, S, H, DH);
    moe_nn_rope_forward(k2, k1, cs, sn, B, S, HKV, DH);
    moe_nn_attention_forward(a, att, q2, k2, v, B, S, H, HKV, DH);
    moe_nn_linear_forward(x1, a, w[WO], NULL, T, NQ, D);
    for (int i = 0; i < T * D; i++) x1[i] += x0[i];
    moe_nn_rmsnorm_forward(h2, r2, x1, w[N2], T, D, eps);
    moe_experts_forward(&fp, x2, save, &ew, off, h2);
    for (int i = 0; i < T * D; i++) x2[i] += x1[i];
    moe_nn_rmsnorm_forward(h3, r3, x2, w[NF], T, D, eps);
    if (m->tied)
        moe_nn_linear_wt_forward(logits, h3, w[WTE], NULL, T, D, V);
    else
        moe_nn_linear_forward(logits, h3, w[WH], NULL, T, D, V);
    const double loss = moe_nn_crossentropy(logits, logits, m->tgt, T, V, 1.0f); // in place

    // backward: gradient buffers of activations, zeroed (kernels ADD)
    float *dh3 = fl(T * D), *dx2 = fl(T * D), *dh2 = fl(T * D), *dx1, *da = fl(T * NQ);
    float *dq2 = fl(T * NQ), *dk2 = fl(T * NK), *dv = fl(T * NK), *dq1 = fl(T * NQ);
    float *dk1 = fl(T * NK), *dq0 = fl(T * NQ), *dk0 = fl(T * NK), *dh1 = fl(T * D);
    float *sc = fl(S * S);
    if (m->tied)
        moe_nn_linear_wt_backward(dh3, g[WTE], NULL, logits, h3, w[WTE], T, D, V);
    else
        moe_nn_linear_backward(dh3, g[WH], NULL, logits, h3, w[WH], T, D, V);
    moe_nn_rmsnorm_backward(dx2, g[NF], dh3, x2, w[NF], r3, T, D);
    dx1 = dx2; // residual: dx1 = dx2 + (through the FFN branch)
    moe_experts_backward(&fp, dh2, &eg, scr, &ew, off, h2, save, dx2); // dh2 WRITTEN
    moe_nn_rmsnorm_backward(dx1, g[N2], dh2, x1, w[N2], r2, T, D);
    float *dx0 = dx1; // residual again
    moe_nn_linear_backward(da, g[WO], NULL, dx1, a, w[WO], T, NQ, D);
    moe_nn_attention_backward(dq2, dk2, dv, sc, da, att, q2, k2, v, B, S, H, HKV, DH);
    moe_nn_rope_backward(dq1, dq2, cs, sn, B, S, H, DH);
    moe_nn_rope_backward(dk1, dk2, cs, sn, B, S, HKV, DH);
    moe_nn_qknorm_backward(dq0, g[QN], dq1, q0, w[QN], rq, T, H, DH);
    moe_nn_qknorm_backward(dk0, g[KN], dk1, k0, w[KN], rk, T, HKV, DH);
    moe_nn_linear_backward(dh1, g[WQ], NULL, dq0, h1, w[WQ], T, D, NQ);
    moe_nn_linear_backward(dh1, g[WK], NULL, dk0, h1, w[WK], T, D, NK);
    moe_nn_linear_backward(dh1, g[WV], NULL, dv, h1, w[WV], T, D, NK);
    moe_nn_rmsnorm_backward(dx0, g[N1], dh1, x0, w[N1], r1, T, D);
    moe_nn_embed_backward(g[WTE], dx0, m->tok, T, D);

    float *all[] = {x0,  h1,  r1, q0,  k0,  v,  q1,  k1,  rq,     rk,   q2,  k2,
                    a,   att, x1, h2,  r2,  x2, h3,  r3,  logits, save, scr, dh3,
                    dx2, dh2, da, dq2, dk2, dv, dq1, dk1, dq0,    dk0,  dh1, sc};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    return loss;
}

// ---------------------------------------------------------------- double reference network
static double reference_loss(void *ctx) {
    model *m = ctx;
    double **w = m->d;
    const double eps = MOE_NN_RMSNORM_EPS;
    static double x0[T * D], h1[T * D], q0[T * NQ], k0[T * NK], v[T * NK], q1[T * NQ], k1[T * NK];
    static double q2[T * NQ], k2[T * NK], a[T * NQ], o[T * D], x1[T * D], h2[T * D], f[T * D];
    static double x2[T * D], h3[T * D], logits[T * V], wht[D * V];
    nnref_embed(x0, m->tok, w[WTE], T, D);
    nnref_rmsnorm(h1, x0, w[N1], T, D, eps);
    nnref_linear(q0, h1, w[WQ], NULL, T, D, NQ);
    nnref_linear(k0, h1, w[WK], NULL, T, D, NK);
    nnref_linear(v, h1, w[WV], NULL, T, D, NK);
    nnref_rmsnorm(q1, q0, w[QN], T * H, DH, eps);
    nnref_rmsnorm(k1, k0, w[KN], T * HKV, DH, eps);
    nnref_rope(q2, q1, B, S, H, DH, MOE_NN_ROPE_THETA);
    nnref_rope(k2, k1, B, S, HKV, DH, MOE_NN_ROPE_THETA);
    nnref_attention(a, q2, k2, v, B, S, H, HKV, DH);
    nnref_linear(o, a, w[WO], NULL, T, NQ, D);
    for (int i = 0; i < T * D; i++) x1[i] = x0[i] + o[i];
    nnref_rmsnorm(h2, x1, w[N2], T, D, eps);
    nnref_swiglu(f, h2, w[W1], w[W3], w[W2], T, D, F);
    for (int i = 0; i < T * D; i++) x2[i] = x1[i] + f[i];
    nnref_rmsnorm(h3, x2, w[NF], T, D, eps);
    const double *wh = w[WH];
    if (m->tied) {
        for (int d = 0; d < D; d++)
            for (int j = 0; j < V; j++) wht[d * V + j] = w[WTE][j * D + d];
        wh = wht;
    }
    nnref_linear(logits, h3, wh, NULL, T, D, V);
    return nnref_crossentropy(logits, m->tgt, T, V);
}

static int run(int tied, uint64_t seed) {
    model m;
    memset(&m, 0, sizeof m);
    m.tied = tied;
    uint64_t st = seed;
    for (int p = 0; p < NPARAM; p++) {
        m.w[p] = fl(psize[p]);
        m.g[p] = fl(psize[p]);
        m.d[p] = dbl(psize[p]);
        // Norm weights near 1; matrices uniform(±1/√fan_in) so activations stay O(1).
        const int norm = p == N1 || p == N2 || p == NF || p == QN || p == KN;
        const int64_t fan_in = p == WO ? NQ : p == W2 ? F : D;
        const double r = norm ? 0.3 : p == WTE ? 1.0 : 1.0 / sqrt((double)fan_in);
        nnref_fill(&st, m.w[p], m.d[p], psize[p], norm ? 1 - r : -r, norm ? 1 + r : r);
    }
    for (int t = 0; t < T; t++) {
        m.tok[t] = (int32_t)(test_rng(&st) % V);
        m.tgt[t] = (int32_t)(test_rng(&st) % V);
    }
    m.tok[3] = m.tok[7]; // a repeated token: the embedding gradient accumulates
    const double loss = kernels_step(&m);
    const double want = reference_loss(&m);
    int f = 0;
    if (!(fabs(loss - want) <= 1e-5 * fabs(want))) {
        printf("FAIL block (%s head) loss: expected %.10g got %.10g\n", tied ? "tied" : "untied",
               want, loss);
        f++;
    } else {
        printf("ok   block (%s head) loss: expected %.10g got %.10g\n", tied ? "tied" : "untied",
               want, loss);
    }
    nnref_param ps[NPARAM];
    int np = 0;
    for (int p = 0; p < NPARAM; p++) {
        if (tied && p == WH) continue;
        ps[np++] = (nnref_param){pname[p], m.d[p], psize[p], m.g[p], NULL};
    }
    f += nnref_fd_check(tied ? "block/tied" : "block", reference_loss, &m, ps, np, 1e-6, 1e-6, 1e-3,
                        0);
    for (int p = 0; p < NPARAM; p++) free(m.w[p]), free(m.g[p]), free(m.d[p]);
    return f;
}

int main(void) {
    int f = run(0, 7) + run(1, 99);
    if (f) {
        printf("test_nn_block: %d check(s) FAILED\n", f);
        return 1;
    }
    printf("test_nn_block: all checks passed\n");
    return 0;
}
