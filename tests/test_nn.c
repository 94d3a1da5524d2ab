// test_nn.c: every dense kernel of trainer/model/nn.h (embedding, RMSNorm, qk-norm, LayerNorm, linear
// in both weight layouts with/without bias and with NULL gradients, RoPE, attention,
// cross-entropy) against the double loop references of test_nn_ref.c — forward values, and
// backward against central differences of the reference loss L = Σ out·dout (double, h = 1e-6),
// with the gradient buffers pre-filled so that ADD is checked. Attention: GQA H=4 with Hkv=2, 4, 1, a larger shape that exercises BLAS blocking,
// and causality / sequence isolation (changing a later token leaves earlier outputs bit-equal).
// Tolerances are those of fp32 kernels against exact gradients: atol 2e-5, rtol 1e-4.
#include "nn.h"
#include "test_nn_ref.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ATOL 2e-5
#define RTOL 1e-4
#define FD_H 1e-6

static uint64_t g_rng = 12345;

static float *fl(int64_t n) { return moe_xcalloc((size_t)(n > 0 ? n : 1), sizeof(float)); }
static double *db(int64_t n) { return moe_xcalloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

// ---------------------------------------------------------------- embedding
typedef struct {
    int64_t T, D;
    const int32_t *tok;
    double *wte, *dout, *out;
} embed_ctx;

static double embed_loss(void *c) {
    embed_ctx *x = c;
    nnref_embed(x->out, x->tok, x->wte, x->T, x->D);
    return nnref_dot(x->out, x->dout, x->T * x->D);
}

static int test_embed(void) {
    const int64_t T = 7, V = 5, D = 4;
    const int32_t tok[7] = {3, 0, 3, 4, 1, 3, 0}; // repeats: the backward must accumulate
    float *wte = fl(V * D), *out = fl(T * D), *dout = fl(T * D), *dwte = fl(V * D), *g0 = fl(V * D);
    embed_ctx c = {T, D, tok, db(V * D), db(T * D), db(T * D)};
    nnref_fill(&g_rng, wte, c.wte, V * D, -1, 1);
    nnref_fill(&g_rng, dout, c.dout, T * D, -1, 1);
    nnref_fill(&g_rng, g0, NULL, V * D, -1, 1);
    memcpy(dwte, g0, sizeof(float) * V * D);
    moe_nn_embed_forward(out, tok, wte, T, V, D);
    embed_loss(&c);
    int f = nnref_check("embed forward", out, c.out, T * D, 0, 0);
    moe_nn_embed_backward(dwte, dout, tok, T, D);
    nnref_param ps[] = {{"dwte", c.wte, V * D, dwte, g0}};
    f += nnref_fd_check("embed", embed_loss, &c, ps, 1, FD_H, ATOL, RTOL, 0);
    free(wte), free(out), free(dout), free(dwte), free(g0);
    free(c.wte), free(c.dout), free(c.out);
    return f;
}

// ---------------------------------------------------------------- RMSNorm and qk-norm
typedef struct {
    int64_t N, C;
    double eps;
    double *x, *w, *dout, *out;
} norm_ctx;

static double norm_loss(void *c) {
    norm_ctx *x = c;
    nnref_rmsnorm(x->out, x->x, x->w, x->N, x->C, x->eps);
    return nnref_dot(x->out, x->dout, x->N * x->C);
}

// qk = 0: the block norm (N, C); qk = 1: per-head qk-norm over (T, nH·Dh) with N = T, C = Dh.
static int test_norm(int qk, int64_t N, int64_t nH, int64_t C) {
    const int64_t rows = qk ? N * nH : N, n = rows * C;
    float *x = fl(n), *w = fl(C), *out = fl(n), *dout = fl(n), *rstd = fl(rows);
    float *dx = fl(n), *dx0 = fl(n), *dw = fl(C), *dw0 = fl(C);
    norm_ctx c = {rows, C, MOE_NN_RMSNORM_EPS, db(n), db(C), db(n), db(n)};
    nnref_fill(&g_rng, x, c.x, n, -2, 2);
    for (int64_t i = 0; i < C; i++) x[i] *= 1e-3f, c.x[i] = x[i]; // a tiny row: eps matters
    nnref_fill(&g_rng, w, c.w, C, 0.5, 1.5);
    nnref_fill(&g_rng, dout, c.dout, n, -1, 1);
    nnref_fill(&g_rng, dx0, NULL, n, -1, 1);
    nnref_fill(&g_rng, dw0, NULL, C, -1, 1);
    memcpy(dx, dx0, sizeof(float) * n);
    memcpy(dw, dw0, sizeof(float) * C);
    const char *name = qk ? "qknorm" : "rmsnorm";
    char what[64];
    if (qk) {
        moe_nn_qknorm_forward(out, rstd, x, w, N, nH, C, MOE_NN_RMSNORM_EPS);
        moe_nn_qknorm_backward(dx, dw, dout, x, w, rstd, N, nH, C);
    } else {
        moe_nn_rmsnorm_forward(out, rstd, x, w, N, C, MOE_NN_RMSNORM_EPS);
        moe_nn_rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C);
    }
    norm_loss(&c);
    snprintf(what, sizeof what, "%s forward", name);
    int f = nnref_check(what, out, c.out, n, ATOL, RTOL);
    nnref_param ps[] = {{"dinp", c.x, n, dx, dx0}, {"dweight", c.w, C, dw, dw0}};
    f += nnref_fd_check(name, norm_loss, &c, ps, 2, FD_H, ATOL, RTOL, 0);
    // In place (out == inp) gives the same values.
    float *xi = fl(n);
    memcpy(xi, x, sizeof(float) * n);
    moe_nn_rmsnorm_forward(xi, rstd, xi, w, rows, C, MOE_NN_RMSNORM_EPS);
    snprintf(what, sizeof what, "%s in place", name);
    f += nnref_check(what, xi, c.out, n, ATOL, RTOL);
    free(xi);
    free(x), free(w), free(out), free(dout), free(rstd), free(dx), free(dx0), free(dw), free(dw0);
    free(c.x), free(c.w), free(c.dout), free(c.out);
    return f;
}

// ---------------------------------------------------------------- LayerNorm
typedef struct {
    int64_t N, C;
    double *x, *w, *b, *dout, *out;
} ln_ctx;

static double ln_loss(void *c) {
    ln_ctx *x = c;
    nnref_layernorm(x->out, x->x, x->w, x->b, x->N, x->C, MOE_NN_RMSNORM_EPS);
    return nnref_dot(x->out, x->dout, x->N * x->C);
}

static int test_layernorm(void) {
    const int64_t N = 5, C = 8, n = N * C;
    float *x = fl(n), *w = fl(C), *b = fl(C), *out = fl(n), *dout = fl(n), *mean = fl(N);
    float *rstd = fl(N), *dx = fl(n), *dx0 = fl(n), *dw = fl(C), *dw0 = fl(C), *dbb = fl(C);
    float *db0 = fl(C);
    ln_ctx c = {N, C, db(n), db(C), db(C), db(n), db(n)};
    nnref_fill(&g_rng, x, c.x, n, -2, 3); // nonzero row means
    nnref_fill(&g_rng, w, c.w, C, 0.5, 1.5);
    nnref_fill(&g_rng, b, c.b, C, -0.5, 0.5);
    nnref_fill(&g_rng, dout, c.dout, n, -1, 1);
    nnref_fill(&g_rng, dx0, NULL, n, -1, 1);
    nnref_fill(&g_rng, dw0, NULL, C, -1, 1);
    nnref_fill(&g_rng, db0, NULL, C, -1, 1);
    memcpy(dx, dx0, sizeof(float) * n);
    memcpy(dw, dw0, sizeof(float) * C);
    memcpy(dbb, db0, sizeof(float) * C);
    moe_nn_layernorm_forward(out, mean, rstd, x, w, b, N, C, MOE_NN_RMSNORM_EPS);
    ln_loss(&c);
    int f = nnref_check("layernorm forward", out, c.out, n, ATOL, RTOL);
    moe_nn_layernorm_backward(dx, dw, dbb, dout, x, w, mean, rstd, N, C);
    nnref_param ps[] = {
        {"dinp", c.x, n, dx, dx0}, {"dweight", c.w, C, dw, dw0}, {"dbias", c.b, C, dbb, db0}};
    f += nnref_fd_check("layernorm", ln_loss, &c, ps, 3, FD_H, ATOL, RTOL, 0);
    free(x), free(w), free(b), free(out), free(dout), free(mean), free(rstd), free(dx), free(dx0);
    free(dw), free(dw0), free(dbb), free(db0);
    free(c.x), free(c.w), free(c.b), free(c.dout), free(c.out);
    return f;
}

// ---------------------------------------------------------------- linear
typedef struct {
    int64_t T, I, O;
    double *x, *w, *b, *dout, *out;
    int transw;   // w is (O, I): the tied-head form
    double *wtmp; // (I, O)
} lin_ctx;

static double lin_loss(void *c) {
    lin_ctx *x = c;
    const double *w = x->w;
    if (x->transw) {
        for (int64_t i = 0; i < x->I; i++)
            for (int64_t o = 0; o < x->O; o++) x->wtmp[i * x->O + o] = x->w[o * x->I + i];
        w = x->wtmp;
    }
    nnref_linear(x->out, x->x, w, x->b, x->T, x->I, x->O);
    return nnref_dot(x->out, x->dout, x->T * x->O);
}

static void lin_fwd(int transw, float *out, const float *x, const float *w, const float *b,
                    int64_t T, int64_t I, int64_t O) {
    if (transw)
        moe_nn_linear_wt_forward(out, x, w, b, T, I, O);
    else
        moe_nn_linear_forward(out, x, w, b, T, I, O);
}

static void lin_bwd(int transw, float *dx, float *dw, float *db, const float *dout, const float *x,
                    const float *w, int64_t T, int64_t I, int64_t O) {
    if (transw)
        moe_nn_linear_wt_backward(dx, dw, db, dout, x, w, T, I, O);
    else
        moe_nn_linear_backward(dx, dw, db, dout, x, w, T, I, O);
}

static int test_linear(int bias, int transw) {
    const int64_t T = 5, I = 6, O = 7;
    float *x = fl(T * I), *w = fl(I * O), *b = bias ? fl(O) : NULL, *out = fl(T * O);
    float *dout = fl(T * O), *dx = fl(T * I), *dx0 = fl(T * I), *dw = fl(I * O), *dw0 = fl(I * O);
    float *dbb = fl(O), *db0 = fl(O);
    lin_ctx c = {T,         I,         O,      db(T * I), db(I * O), bias ? db(O) : NULL,
                 db(T * O), db(T * O), transw, db(I * O)};
    nnref_fill(&g_rng, x, c.x, T * I, -1, 1);
    nnref_fill(&g_rng, w, c.w, I * O, -1, 1);
    if (bias) nnref_fill(&g_rng, b, c.b, O, -1, 1);
    nnref_fill(&g_rng, dout, c.dout, T * O, -1, 1);
    nnref_fill(&g_rng, dx0, NULL, T * I, -1, 1);
    nnref_fill(&g_rng, dw0, NULL, I * O, -1, 1);
    nnref_fill(&g_rng, db0, NULL, O, -1, 1);
    memcpy(dx, dx0, sizeof(float) * T * I);
    memcpy(dw, dw0, sizeof(float) * I * O);
    memcpy(dbb, db0, sizeof(float) * O);
    char name[32], what[64];
    snprintf(name, sizeof name, "linear%s%s", transw ? "_wt" : "", bias ? "+b" : "");
    lin_fwd(transw, out, x, w, b, T, I, O);
    lin_loss(&c);
    snprintf(what, sizeof what, "%s forward", name);
    int f = nnref_check(what, out, c.out, T * O, ATOL, RTOL);
    lin_bwd(transw, dx, dw, bias ? dbb : NULL, dout, x, w, T, I, O);
    nnref_param ps[] = {
        {"dinp", c.x, T * I, dx, dx0}, {"dw", c.w, I * O, dw, dw0}, {"db", c.b, O, dbb, db0}};
    f += nnref_fd_check(name, lin_loss, &c, ps, bias ? 3 : 2, FD_H, ATOL, RTOL, 0);
    // NULL gradients are skipped: dinp alone equals the dinp of the full call.
    float *dx2 = fl(T * I);
    memcpy(dx2, dx0, sizeof(float) * T * I);
    lin_bwd(transw, dx2, NULL, NULL, dout, x, w, T, I, O);
    double *dxd = nnref_dup(dx, T * I);
    snprintf(what, sizeof what, "%s dinp only", name);
    f += nnref_check(what, dx2, dxd, T * I, 0, 0);
    free(dxd), free(dx2);
    free(x), free(w), free(b), free(out), free(dout), free(dx), free(dx0), free(dw), free(dw0);
    free(dbb), free(db0);
    free(c.x), free(c.w), free(c.b), free(c.dout), free(c.out), free(c.wtmp);
    return f;
}

// ---------------------------------------------------------------- RoPE
typedef struct {
    int64_t B, S, nH, Dh;
    double *x, *dout, *out;
} rope_ctx;

static double rope_loss(void *c) {
    rope_ctx *x = c;
    nnref_rope(x->out, x->x, x->B, x->S, x->nH, x->Dh, MOE_NN_ROPE_THETA);
    return nnref_dot(x->out, x->dout, x->B * x->S * x->nH * x->Dh);
}

static int test_rope(void) {
    const int64_t B = 2, S = 5, nH = 3, Dh = 8, n = B * S * nH * Dh;
    float *ct = fl(S * Dh / 2), *st = fl(S * Dh / 2), *x = fl(n), *out = fl(n), *dout = fl(n);
    float *dx = fl(n), *dx0 = fl(n);
    rope_ctx c = {B, S, nH, Dh, db(n), db(n), db(n)};
    moe_nn_rope_table(ct, st, S, Dh, MOE_NN_ROPE_THETA);
    nnref_fill(&g_rng, x, c.x, n, -1, 1);
    nnref_fill(&g_rng, dout, c.dout, n, -1, 1);
    nnref_fill(&g_rng, dx0, NULL, n, -1, 1);
    memcpy(dx, dx0, sizeof(float) * n);
    moe_nn_rope_forward(out, x, ct, st, B, S, nH, Dh);
    rope_loss(&c);
    int f = nnref_check("rope forward", out, c.out, n, ATOL, RTOL);
    // Position 0 is the identity; in place gives the same values.
    f += nnref_check("rope position 0 = identity", out, c.x, Dh * nH, 0, 0);
    memcpy(dx, x, sizeof(float) * n);
    moe_nn_rope_forward(dx, dx, ct, st, B, S, nH, Dh);
    f += nnref_check("rope in place", dx, c.out, n, ATOL, RTOL);
    memcpy(dx, dx0, sizeof(float) * n);
    moe_nn_rope_backward(dx, dout, ct, st, B, S, nH, Dh);
    nnref_param ps[] = {{"dinp", c.x, n, dx, dx0}};
    f += nnref_fd_check("rope", rope_loss, &c, ps, 1, FD_H, ATOL, RTOL, 0);
    free(ct), free(st), free(x), free(out), free(dout), free(dx), free(dx0);
    free(c.x), free(c.dout), free(c.out);
    return f;
}

// ---------------------------------------------------------------- attention
typedef struct {
    int64_t B, S, H, Hkv, Dh;
    double *q, *k, *v, *dout, *out;
} att_ctx;

static double att_loss(void *c) {
    att_ctx *x = c;
    nnref_attention(x->out, x->q, x->k, x->v, x->B, x->S, x->H, x->Hkv, x->Dh);
    return nnref_dot(x->out, x->dout, x->B * x->S * x->H * x->Dh);
}

static int test_attention(int64_t B, int64_t S, int64_t H, int64_t Hkv, int64_t Dh, int grads) {
    const int64_t T = B * S, nq = T * H * Dh, nk = T * Hkv * Dh;
    float *q = fl(nq), *k = fl(nk), *v = fl(nk), *out = fl(nq), *att = fl(B * H * S * S);
    float *dout = fl(nq), *dq = fl(nq), *dq0 = fl(nq), *dk = fl(nk), *dk0 = fl(nk), *dv = fl(nk);
    float *dv0 = fl(nk), *scratch = fl(S * S);
    att_ctx c = {B, S, H, Hkv, Dh, db(nq), db(nk), db(nk), db(nq), db(nq)};
    nnref_fill(&g_rng, q, c.q, nq, -1.5, 1.5);
    nnref_fill(&g_rng, k, c.k, nk, -1.5, 1.5);
    nnref_fill(&g_rng, v, c.v, nk, -1, 1);
    nnref_fill(&g_rng, dout, c.dout, nq, -1, 1);
    nnref_fill(&g_rng, dq0, NULL, nq, -1, 1);
    nnref_fill(&g_rng, dk0, NULL, nk, -1, 1);
    nnref_fill(&g_rng, dv0, NULL, nk, -1, 1);
    memcpy(dq, dq0, sizeof(float) * nq);
    memcpy(dk, dk0, sizeof(float) * nk);
    memcpy(dv, dv0, sizeof(float) * nk);
    char what[96];
    snprintf(what, sizeof what, "attention B=%lld S=%lld H=%lld Hkv=%lld Dh=%lld forward",
             (long long)B, (long long)S, (long long)H, (long long)Hkv, (long long)Dh);
    moe_nn_attention_forward(out, att, q, k, v, B, S, H, Hkv, Dh);
    att_loss(&c);
    int f = nnref_check(what, out, c.out, nq, ATOL, RTOL);
    // Probabilities: rows sum to 1, zero above the diagonal.
    int bad = 0;
    for (int64_t r = 0; r < B * H * S; r++) {
        const int64_t i = r % S;
        double s = 0;
        for (int64_t j = 0; j < S; j++) {
            s += att[r * S + j];
            if (j > i && att[r * S + j] != 0.0f) bad++;
        }
        if (fabs(s - 1) > 1e-5) bad++;
    }
    if (bad) printf("FAIL attention probabilities: %d rows not causal or not summing to 1\n", bad);
    f += bad > 0;
    if (grads) {
        moe_nn_attention_backward(dq, dk, dv, scratch, dout, att, q, k, v, B, S, H, Hkv, Dh);
        nnref_param ps[] = {
            {"dq", c.q, nq, dq, dq0}, {"dk", c.k, nk, dk, dk0}, {"dv", c.v, nk, dv, dv0}};
        snprintf(what, sizeof what, "attn%lld/%lld", (long long)H, (long long)Hkv);
        f += nnref_fd_check(what, att_loss, &c, ps, 3, FD_H, ATOL, RTOL, 0);
    }
    // Causality and sequence isolation: change q, k, v of token s' = S/2 of sequence 0; outputs
    // of tokens s < s' of sequence 0 and every output of the other sequences stay bit-equal.
    float *out2 = fl(nq);
    const int64_t sp = S / 2;
    for (int64_t d = 0; d < H * Dh; d++) q[sp * H * Dh + d] += 0.75f;
    for (int64_t d = 0; d < Hkv * Dh; d++)
        k[sp * Hkv * Dh + d] -= 1.25f, v[sp * Hkv * Dh + d] += 3.0f;
    moe_nn_attention_forward(out2, att, q, k, v, B, S, H, Hkv, Dh);
    int64_t changed_before = 0, changed_other = 0, changed_at = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t d = 0; d < H * Dh; d++) {
            int diff = out2[t * H * Dh + d] != out[t * H * Dh + d];
            if (t < sp)
                changed_before += diff;
            else if (t >= S)
                changed_other += diff;
            else if (t == sp)
                changed_at += diff;
        }
    if (changed_before || changed_other || !changed_at) {
        printf("FAIL attention causality: changing token %lld changed %lld earlier outputs and "
               "%lld outputs of other sequences (expected 0, 0) and %lld of its own "
               "(expected > 0)\n",
               (long long)sp, (long long)changed_before, (long long)changed_other,
               (long long)changed_at);
        f++;
    } else {
        printf("ok   attention causality (S=%lld): earlier tokens and other sequences unchanged\n",
               (long long)S);
    }
    free(out2);
    free(q), free(k), free(v), free(out), free(att), free(dout), free(dq), free(dq0), free(dk);
    free(dk0), free(dv), free(dv0), free(scratch);
    free(c.q), free(c.k), free(c.v), free(c.dout), free(c.out);
    return f;
}

// ---------------------------------------------------------------- cross-entropy
typedef struct {
    int64_t T, V;
    const int32_t *tgt;
    double *x, scale;
} ce_ctx;

static double ce_loss(void *c) {
    ce_ctx *x = c;
    return x->scale * nnref_crossentropy(x->x, x->tgt, x->T, x->V);
}

static int test_crossentropy(void) {
    const int64_t T = 6, V = 9;
    const int32_t tgt[6] = {0, 8, 3, 3, 5, 1};
    const float dscale = 0.7f;
    float *x = fl(T * V), *dx = fl(T * V);
    ce_ctx c = {T, V, tgt, db(T * V), dscale};
    nnref_fill(&g_rng, x, c.x, T * V, -3, 3);
    const double loss = moe_nn_crossentropy(dx, x, tgt, T, V, dscale);
    const double want = nnref_crossentropy(c.x, tgt, T, V);
    int f = 0;
    if (fabs(loss - want) > 1e-6 * fabs(want)) {
        printf("FAIL crossentropy loss: expected %.10g got %.10g\n", want, loss);
        f++;
    } else {
        printf("ok   crossentropy loss %.8f\n", loss);
    }
    nnref_param ps[] = {{"dlogits", c.x, T * V, dx, NULL}};
    f += nnref_fd_check("xent", ce_loss, &c, ps, 1, FD_H, ATOL, RTOL, 0);
    // In place (dlogits == logits), no-gradient call, and shift invariance at large logits.
    float *y = fl(T * V);
    memcpy(y, x, sizeof(float) * T * V);
    double l2 = moe_nn_crossentropy(y, y, tgt, T, V, dscale);
    double *dxd = nnref_dup(dx, T * V);
    f += nnref_check("xent in place", y, dxd, T * V, 0, 0);
    double l3 = moe_nn_crossentropy(NULL, x, tgt, T, V, 1.0f);
    for (int64_t i = 0; i < T * V; i++) y[i] = x[i] + 1000.0f, c.x[i] = y[i];
    double l4 = moe_nn_crossentropy(NULL, y, tgt, T, V, 1.0f);
    double w4 = nnref_crossentropy(c.x, tgt, T, V); // same shift in exact arithmetic
    if (l2 != loss || l3 != loss || !isfinite(l4) || fabs(l4 - w4) > 1e-6 * fabs(w4)) {
        printf("FAIL crossentropy variants: loss %.10g, in place %.10g, no grad %.10g, "
               "+1000 shift %.10g (expected %.10g)\n",
               loss, l2, l3, l4, w4);
        f++;
    } else {
        printf("ok   crossentropy in place / no-grad / +1000 shift (%.8f)\n", l4);
    }
    free(dxd), free(y), free(x), free(dx), free(c.x);
    return f;
}

int main(void) {
    int f = 0;
    f += test_embed();
    f += test_norm(0, 5, 1, 8);
    f += test_norm(1, 4, 3, 8);
    f += test_layernorm();
    f += test_linear(1, 0);
    f += test_linear(0, 0);
    f += test_linear(1, 1);
    f += test_linear(0, 1);
    f += test_rope();
    f += test_attention(2, 6, 4, 2, 4, 1);
    f += test_attention(2, 6, 4, 4, 4, 1);
    f += test_attention(2, 6, 4, 1, 4, 1);
    f += test_attention(2, 5, 2, 1, 6, 1);   // odd S
    f += test_attention(2, 67, 4, 2, 32, 0); // forward only: sizes past BLAS block edges
    f += test_crossentropy();
    if (f) {
        printf("test_nn: %d check(s) FAILED\n", f);
        return 1;
    }
    printf("test_nn: all checks passed\n");
    return 0;
}
