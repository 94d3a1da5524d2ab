// test_router_seq.c: the sequence-wise aux loss (router.balance_scope = sequence,
// moe_router_params.balance_sequence) against a naive reference in double: per routing group b of
// G tokens, f_{b,i} = selections of expert i / (G·K), P_{b,i} = mean score (softmax p, or p/Σp
// for sigmoid), L = α·E·mean_b Σ_i f_{b,i}·P_{b,i}. One group equals the whole-call (micro-batch)
// loss and gradients; more groups differ from it. Finite differences: test_router.c.
#include "comm.h"
#include "router.h"
#include "test-util.h"

#include <string.h>

enum { E = 6, K = 2, D = 6 };

// Forward (and backward with a fixed upstream gradient on the kept rows) of T tokens; returns aux.
static double run(const moe_router_params *p, const float *x, const float *wg, int64_t T,
                  float *dx, float *dwg, moe_route_plan **keep) {
    moe_route_plan *pl;
    OK(moe_route_plan_create(p, T, &pl));
    moe_route_stats st;
    moe_router_forward(p, pl, &st, x, wg, NULL, NULL, T, NULL);
    float *drw = moe_xcalloc((size_t)moe_router_max_rows(p, T), sizeof(float));
    for (int64_t r = 0; r < pl->n_rows; r++) drw[r] = (float)(0.1 * ((r * 7) % 5) - 0.2);
    memset(dx, 0, (size_t)(T * D) * sizeof(float));
    memset(dwg, 0, (size_t)(D * E) * sizeof(float));
    moe_router_backward(p, pl, drw, x, wg, dx, dwg, NULL);
    free(drw);
    if (keep) *keep = pl;
    else moe_route_plan_free(pl);
    return st.aux_loss;
}

int main(void) {
    const int64_t G = 16, NB = 4, T = G * NB;
    float *x = moe_xcalloc((size_t)(T * D), sizeof(float)), *wg = moe_xcalloc(D * E, sizeof(float));
    uint64_t s = 11;
#define UNIT() ((double)(moe_splitmix64_next(&s) >> 11) / 9007199254740992.0)
    for (int64_t i = 0; i < T * D; i++) x[i] = (float)(2.0 * UNIT() - 1.0);
    for (int i = 0; i < D * E; i++) wg[i] = (float)(1.5 * UNIT() - 0.75);
#undef UNIT
    float *dx = moe_xcalloc((size_t)(T * D), sizeof(float)), *dwg = moe_xcalloc(D * E, sizeof(float));
    float *dx1 = moe_xcalloc((size_t)(T * D), sizeof(float)), *dw1 = moe_xcalloc(D * E, sizeof(float));
    for (int sc = 0; sc < 2; sc++) {
        moe_router_params p;
        memset(&p, 0, sizeof p);
        p.D = D, p.E = E, p.K = K, p.renormalize = 1, p.routed_scaling = 1, p.aux_loss_coef = 0.3;
        p.scoring = sc ? MOE_SCORE_SIGMOID : MOE_SCORE_SOFTMAX;
        p.group_tokens = G, p.balance_sequence = 1;
        moe_route_plan *pl;
        const double aux = run(&p, x, wg, T, dx, dwg, &pl);
        // Naive reference from the plan's own selection and scores, in double.
        double ref = 0;
        for (int64_t b = 0; b < NB; b++) {
            double f[E] = {0}, P[E] = {0};
            for (int64_t t = b * G; t < (b + 1) * G; t++) {
                for (int k = 0; k < K; k++) f[pl->sel_expert[t * K + k]] += 1.0 / (G * K);
                double norm = 0;
                for (int e = 0; e < E; e++) norm += pl->probs[t * E + e];
                for (int e = 0; e < E; e++)
                    P[e] += (sc ? pl->probs[t * E + e] / norm : pl->probs[t * E + e]) / G;
            }
            for (int e = 0; e < E; e++) ref += 0.3 * E * f[e] * P[e] / NB;
        }
        CHECK(fabs(aux - ref) <= 1e-9 * fabs(ref), "%s: sequence aux %.12g, reference %.12g",
              sc ? "sigmoid" : "softmax", aux, ref);
        moe_route_plan_free(pl);
        // One group of all T tokens: the whole-call (micro-batch) loss and gradients.
        moe_router_params one = p, mb = p;
        one.group_tokens = T;
        mb.group_tokens = T, mb.balance_sequence = 0;
        const double a1 = run(&one, x, wg, T, dx, dwg, NULL), a0 = run(&mb, x, wg, T, dx1, dw1, NULL);
        CHECK(fabs(a1 - a0) <= 1e-7 * fabs(a0), "%s: one sequence %.12g, micro-batch %.12g",
              sc ? "sigmoid" : "softmax", a1, a0);
        double md = 0;
        for (int64_t i = 0; i < T * D; i++) md = fmax(md, fabs(dx[i] - dx1[i]));
        for (int i = 0; i < D * E; i++) md = fmax(md, fabs(dwg[i] - dw1[i]));
        CHECK(md <= 1e-6, "%s: one sequence's gradients differ from micro-batch's by %.3g",
              sc ? "sigmoid" : "softmax", md);
        // Four sequences are not the micro-batch loss (per-sequence imbalance counts).
        CHECK(fabs(aux - a0) > 1e-6 * fabs(a0), "%s: four sequences equal the micro-batch loss",
              sc ? "sigmoid" : "softmax");
        printf("%s: sequence aux %.9f (reference %.9f), micro-batch %.9f, one sequence %.9f\n",
               sc ? "sigmoid" : "softmax", aux, ref, a0, a1);
    }
    free(x), free(wg), free(dx), free(dwg), free(dx1), free(dw1);
    return test_summary("test_router_seq");
}
