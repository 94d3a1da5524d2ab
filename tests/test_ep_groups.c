// test_ep_groups.c: routing groups at one rank — the one-rank layer with router.group_tokens = G
// on T = n·G tokens equals calling the layer separately on each group of G tokens (ungrouped):
// outputs and dx equal, weight gradients equal the sum over the separate calls, kept counts
// equal their sum. aux and z are off (they are over the whole call by definition, not per group).
#include "experts.h"
#include "test-util.h"

#include <math.h>
#include <string.h>

static int run(const char *name, moe_layer_params p, int64_t G, int64_t n, int tie) {
    const int64_t T = G * n, D = p.router.D, E = p.router.E;
    p.router.aux_loss_coef = 0, p.router.z_loss_coef = 0;
    moe_layer_params pg = p, ps = p;
    pg.router.group_tokens = G, pg.T_max = T;
    ps.router.group_tokens = 0, ps.T_max = G;
    moe_layer *Lg, *Ls;
    if (moe_layer_create(&pg, &Lg) || moe_layer_create(&ps, &Ls)) {
        fprintf(stderr, "FAIL %s: create: %s\n", name, moe_last_error());
        return 1;
    }
    moe_layer_weights w, g1, g2;
    int64_t nw = moe_layer_weights_alloc(&p, &w);
    moe_layer_weights_alloc(&p, &g1);
    moe_layer_weights_alloc(&p, &g2);
    moe_layer_weights_init(&p, &w, 7);
    float *x = moe_xcalloc((size_t)(T * D), sizeof(float)),
          *dy = moe_xcalloc((size_t)(T * D), sizeof(float));
    float *y1 = moe_xcalloc((size_t)(T * D), sizeof(float)),
          *y2 = moe_xcalloc((size_t)(T * D), sizeof(float));
    float *dx1 = moe_xcalloc((size_t)(T * D), sizeof(float)),
          *dx2 = moe_xcalloc((size_t)(T * D), sizeof(float));
    uint64_t s = 99;
    for (int64_t i = 0; i < T * D; i++) {
        int64_t t = i / D, src = tie ? (t % tie) * D + i % D : i;
        x[i] = src == i ? (float)(3 * test_urand(&s) - 1.5) : x[src];
        dy[i] = (float)(2 * test_urand(&s) - 1);
    }
    moe_route_stats st;
    moe_layer_forward(Lg, y1, &st, x, T, &w, NULL, NULL);
    moe_layer_backward(Lg, dx1, &g1, dy, &w);
    int64_t *kept = moe_xcalloc((size_t)E, sizeof(int64_t));
    for (int64_t k = 0; k < n; k++) {
        moe_route_stats sk;
        moe_route_opts o = {0, 0, k * G, NULL};
        moe_layer_forward(Ls, y2 + k * G * D, &sk, x + k * G * D, G, &w, NULL, &o);
        moe_layer_backward(Ls, dx2 + k * G * D, &g2, dy + k * G * D, &w);
        for (int e = 0; e < E; e++) kept[e] += sk.tokens_per_expert[e];
    }
    int fails = test_close(name, "y", y1, y2, T * D, 1.0, 1e-5) +
                test_close(name, "dx", dx1, dx2, T * D, 1.0, 1e-5) +
                test_close(name, "weight gradients (whole block)", g1.wg, g2.wg, nw, 1.0, 1e-5);
    for (int e = 0; e < E; e++)
        if (kept[e] != st.tokens_per_expert[e]) {
            fprintf(stderr, "FAIL %s: expert %d kept %lld, Σ over groups %lld\n", name, e,
                    (long long)st.tokens_per_expert[e], (long long)kept[e]);
            fails++;
        }
    printf("%-40s %s (T=%lld G=%lld dropped=%lld)\n", name, fails ? "FAIL" : "ok", (long long)T,
           (long long)G, (long long)st.dropped);
    free(x);
    free(dy);
    free(y1);
    free(y2);
    free(dx1);
    free(dx2);
    free(kept);
    moe_layer_weights_free(&w);
    moe_layer_weights_free(&g1);
    moe_layer_weights_free(&g2);
    moe_layer_free(Lg);
    moe_layer_free(Ls);
    return fails;
}

static moe_layer_params mk(int E, int K, moe_activation act) {
    moe_layer_params p;
    memset(&p, 0, sizeof p);
    p.router.D = 8, p.router.E = E, p.router.K = K, p.router.renormalize = 1;
    p.router.routed_scaling = 1;
    p.F = 10, p.act = act, p.Fs = 6;
    return p;
}

int main(void) {
    int fails = 0;
    moe_layer_params p = mk(4, 2, MOE_ACT_GELU);
    p.router.capacity_factor = 0.75;
    fails += run("token choice, capacity 0.75, ties", p, 6, 4, 3);
    p = mk(8, 1, MOE_ACT_SWIGLU);
    p.router.capacity_factor = 1.0, p.router.scoring = MOE_SCORE_SIGMOID, p.ffn_bias = 1;
    fails += run("sigmoid top-1, capacity 1.0", p, 8, 3, 0);
    p = mk(4, 2, MOE_ACT_GELU);
    p.router.strategy = MOE_ROUTE_EXPERT_CHOICE;
    fails += run("expert choice cf=1", p, 5, 4, 0);
    p = mk(6, 2, MOE_ACT_SWIGLU);
    p.router.strategy = MOE_ROUTE_EXPERT_CHOICE, p.router.capacity_factor = 0.5;
    p.n_shared = 1, p.shared_gate = 1;
    fails += run("expert choice cf=0.5, shared, ties", p, 6, 3, 2);
    p = mk(4, 2, MOE_ACT_GELU);
    fails += run("dropless (groups change nothing)", p, 4, 3, 0);
    printf(fails ? "%d failures\n" : "all group checks passed\n", fails);
    return fails ? 1 : 0;
}
