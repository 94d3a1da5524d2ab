// test_experts.c: the grouped expert FFN kernels on their own (the piece the distributed layer
// calls between dispatch and combine): forward and backward over packed rows with uneven and
// empty expert blocks, GELU and SwiGLU, biases on and off, against a per-row double loop (whose
// formulas are the reference's, finite-difference checked in test_layer); gradients accumulate.
#include "experts.h"
#include "test-util.h"
#include "test_layer_ref.h"

#include <math.h>
#include <string.h>

// Naive per-row reference in double: out (R, D) and, given dout, dxin (R, D) and grads.
static void naive(const moe_experts_params *p, const moe_expert_weights *w, const int64_t *off,
                  const float *xin, const float *dout, double *out, double *dxin, double *g1,
                  double *gb1, double *g3, double *gb3, double *g2, double *gb2) {
    const int64_t D = p->D, F = p->F;
    double *h1 = moe_xcalloc((size_t)F, sizeof(double)),
           *h3 = moe_xcalloc((size_t)F, sizeof(double));
    for (int e = 0; e < p->n_experts; e++)
        for (int64_t r = off[e]; r < off[e + 1]; r++) {
            const float *x = xin + r * D, *W1 = w->w1 + e * D * F, *W2 = w->w2 + e * F * D;
            const float *W3 = w->w3 ? w->w3 + e * D * F : NULL;
            for (int64_t j = 0; j < F; j++) {
                double a = p->bias ? w->b1[e * F + j] : 0, b = p->bias && W3 ? w->b3[e * F + j] : 0;
                for (int64_t d = 0; d < D; d++) {
                    a += (double)x[d] * W1[d * F + j];
                    if (W3) b += (double)x[d] * W3[d * F + j];
                }
                h1[j] = a, h3[j] = b;
            }
            for (int64_t d = 0; d < D; d++) out[r * D + d] = p->bias ? w->b2[e * D + d] : 0;
            for (int64_t j = 0; j < F; j++) {
                double u = h1[j], s = 1 / (1 + exp(-u));
                double th = tanh(0.7978845608028654 * (u + 0.044715 * u * u * u));
                double act = p->act == MOE_ACT_GELU ? 0.5 * u * (1 + th) : u * s * h3[j];
                double da = 0;
                for (int64_t d = 0; d < D; d++) {
                    out[r * D + d] += act * W2[j * D + d];
                    da += (double)dout[r * D + d] * W2[j * D + d];
                    g2[(e * F + j) * D + d] += act * dout[r * D + d];
                }
                double dh1, dh3 = 0;
                if (p->act == MOE_ACT_GELU)
                    dh1 = da * (0.5 * (1 + th) + 0.5 * u * (1 - th * th) * 0.7978845608028654 *
                                                     (1 + 3 * 0.044715 * u * u));
                else
                    dh3 = da * u * s, dh1 = da * h3[j] * s * (1 + u * (1 - s));
                if (p->bias) gb1[e * F + j] += dh1;
                if (p->bias && W3) gb3[e * F + j] += dh3;
                for (int64_t d = 0; d < D; d++) {
                    g1[(e * D + d) * F + j] += x[d] * dh1;
                    dxin[r * D + d] += W1[d * F + j] * dh1;
                    if (W3) {
                        g3[(e * D + d) * F + j] += x[d] * dh3;
                        dxin[r * D + d] += W3[d * F + j] * dh3;
                    }
                }
            }
            if (p->bias)
                for (int64_t d = 0; d < D; d++) gb2[e * D + d] += dout[r * D + d];
        }
    free(h1);
    free(h3);
}

static int run(moe_activation act, int bias, const int64_t *counts, int E, uint64_t seed) {
    moe_layer_params lp;
    memset(&lp, 0, sizeof lp);
    lp.router.D = 12, lp.router.E = E, lp.router.K = 1;
    lp.F = 20, lp.act = act, lp.ffn_bias = bias, lp.T_max = 1;
    moe_experts_params p = moe_layer_routed_params(&lp);
    moe_layer_weights W, G;
    moe_layer_weights_alloc(&lp, &W);
    moe_layer_weights_alloc(&lp, &G);
    moe_layer_weights_init(&lp, &W, seed);
    const int64_t D = p.D, F = p.F;
    int64_t off[17] = {0};
    for (int e = 0; e < E; e++) off[e + 1] = off[e] + counts[e];
    const int64_t R = off[E];
    uint64_t st = seed;
    float *xin = moe_xcalloc((size_t)(R * D), sizeof(float)),
          *dout = moe_xcalloc((size_t)(R * D), sizeof(float));
    for (int64_t i = 0; i < R * D; i++) {
        xin[i] = (float)test_uniform(&st, -2, 2);
        dout[i] = (float)test_uniform(&st, -1, 1);
    }
    float *out = moe_xcalloc((size_t)(R * D), sizeof(float)),
          *dxin = moe_xcalloc((size_t)(R * D), sizeof(float));
    float *save = moe_xcalloc((size_t)(R * moe_experts_save_per_row(&p)) + 1, sizeof(float));
    float *scr = moe_xcalloc((size_t)(R * moe_experts_scratch_per_row(&p)) + 1, sizeof(float));
    for (int64_t i = 0; i < R * D; i++) dxin[i] = 1e9f; // must be overwritten
    moe_experts_forward(&p, out, save, &W.experts, off, xin);
    moe_experts_backward(&p, dxin, &G.experts, scr, &W.experts, off, xin, save, dout);

    double *ro = moe_xcalloc((size_t)(R * D) + 1, sizeof(double)),
           *rdx = moe_xcalloc((size_t)(R * D) + 1, sizeof(double));
    double *g1 = moe_xcalloc((size_t)(E * D * F), sizeof(double)),
           *g3 = moe_xcalloc((size_t)(E * D * F), sizeof(double));
    double *g2 = moe_xcalloc((size_t)(E * F * D), sizeof(double)),
           *gb1 = moe_xcalloc((size_t)(E * F), sizeof(double));
    double *gb3 = moe_xcalloc((size_t)(E * F), sizeof(double)),
           *gb2 = moe_xcalloc((size_t)(E * D), sizeof(double));
    naive(&p, &W.experts, off, xin, dout, ro, rdx, g1, gb1, g3, gb3, g2, gb2);
    char nm[96];
    int fails = 0;
    const char *an = act == MOE_ACT_GELU ? "gelu" : "swiglu";
#define CK(name, got, ref, n)                                                                      \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "experts %s bias=%d E=%d: %s", an, bias, E, name);                 \
        fails += ref_check(nm, got, ref, n, 2e-5, 1e-3);                                           \
    } while (0)
    CK("out", out, ro, R * D);
    CK("dxin", dxin, rdx, R * D);
    CK("dw1", G.experts.w1, g1, E * D * F);
    CK("dw2", G.experts.w2, g2, E * F * D);
    if (act == MOE_ACT_SWIGLU) CK("dw3", G.experts.w3, g3, E * D * F);
    if (bias) {
        CK("db1", G.experts.b1, gb1, E * F);
        CK("db2", G.experts.b2, gb2, E * D);
        if (act == MOE_ACT_SWIGLU) CK("db3", G.experts.b3, gb3, E * F);
    }
#undef CK
    // Backward ADDS into gradients: a second backward doubles them.
    float first = G.experts.w1[0];
    moe_experts_backward(&p, dxin, &G.experts, scr, &W.experts, off, xin, save, dout);
    if (fabsf(G.experts.w1[0] - 2 * first) > 1e-5f * (1 + fabsf(first))) {
        fprintf(stderr, "FAIL experts: gradients not accumulated: %g then %g\n", first,
                G.experts.w1[0]);
        fails++;
    }
    // moe_experts_backward_fresh writes what adding into zeroed gradients gives, bit for bit,
    // over gradients full of garbage; an expert without rows keeps its garbage.
    {
        moe_layer_weights Z, Q;
        const int64_t nz = moe_layer_weights_alloc(&lp, &Z), nq = moe_layer_weights_alloc(&lp, &Q);
        float *qb = Q.wg; // the block starts with the gate
        (void)nz;
        for (int64_t i = 0; i < nq; i++) qb[i] = 1e9f;
        uint8_t fresh[17];
        for (int e = 0; e < E; e++) fresh[e] = 1;
        moe_experts_backward(&p, dxin, &Z.experts, scr, &W.experts, off, xin, save, dout);
        moe_experts_backward_fresh(&p, fresh, dxin, &Q.experts, scr, &W.experts, off, xin, save,
                                   dout);
        for (int e = 0; e < E; e++) {
            const moe_expert_weights z = moe_experts_slice(&Z.experts, D, F, 0, e),
                                     q = moe_experts_slice(&Q.experts, D, F, 0, e);
            const float *zt[6] = {z.w1, z.w3, z.w2, z.b1, z.b3, z.b2};
            const float *qt[6] = {q.w1, q.w3, q.w2, q.b1, q.b3, q.b2};
            const int64_t nt[6] = {D * F, D * F, F * D, F, F, D};
            for (int t = 0; t < 6; t++) {
                if (!zt[t]) continue;
                int same = 1;
                for (int64_t i = 0; i < nt[t]; i++)
                    same &= counts[e] ? memcmp(&zt[t][i], &qt[t][i], sizeof(float)) == 0
                                      : qt[t][i] == 1e9f;
                if (!same) {
                    fprintf(stderr,
                            "FAIL experts %s bias=%d E=%d: fresh gradients of expert %d "
                            "(tensor %d) %s\n",
                            an, bias, E, e, t,
                            counts[e] ? "differ from zeroed + added" : "were touched (no rows)");
                    fails++;
                }
            }
        }
        moe_layer_weights_free(&Z);
        moe_layer_weights_free(&Q);
    }
    printf("experts %-6s bias=%d E=%d R=%lld: %s\n", an, bias, E, (long long)R,
           fails ? "FAIL" : "ok");
    free(xin);
    free(dout);
    free(out);
    free(dxin);
    free(save);
    free(scr);
    free(ro);
    free(rdx);
    free(g1);
    free(g3);
    free(g2);
    free(gb1);
    free(gb3);
    free(gb2);
    moe_layer_weights_free(&W);
    moe_layer_weights_free(&G);
    return fails;
}

int main(void) {
    const int64_t uneven[5] = {3, 0, 7, 1, 0}; // empty blocks in the middle and at the end
    const int64_t one[1] = {9};
    const int64_t none[3] = {0, 0, 0};
    const int64_t big[4] = {70, 65, 17, 2}; // around the small-row kernels' limits (64, 16)
    int fails = 0;
    // Twice: blocks through the small-row kernels where they are small (the default), then every
    // block through cblas (the reference path).
    for (int path = 0; path < 2; path++) {
        moe_gemm_rows_enable(!path);
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                moe_activation act = a ? MOE_ACT_SWIGLU : MOE_ACT_GELU;
                fails += run(act, b, uneven, 5, 11 + (uint64_t)(2 * a + b));
                fails += run(act, b, one, 1, 21 + (uint64_t)(2 * a + b));
                fails += run(act, b, big, 4, 31 + (uint64_t)(2 * a + b));
            }
        fails += run(MOE_ACT_GELU, 1, none, 3, 5); // no rows at all
    }
    if (fails) {
        fprintf(stderr, "%d check(s) failed\n", fails);
        return 1;
    }
    printf("experts: all checks passed\n");
    return 0;
}
