// router-math.c: the elementwise pieces of routing — the strategy traits, scoring and its
// backward, top-k with ties to the lower index, the counter-based jitter noise, the z-loss, the
// aux-loss-free bias update and the load statistics.
// Plain loops: these are O(T·E) next to the O(T·D·E) gate GEMM, so clarity wins over SIMD.
#include "router.h"

#include <math.h>

moe_route_traits moe_router_strategy_traits(moe_route_strategy s) {
    switch (s) {
    case MOE_ROUTE_TOKEN_CHOICE:
        return (moe_route_traits){
            .name = "token_choice", .by_token = 1, .softmax_only = 0, .aux_loss = 1, .balanced = 0};
    case MOE_ROUTE_EXPERT_CHOICE:
        return (moe_route_traits){.name = "expert_choice",
                                  .by_token = 0,
                                  .softmax_only = 1,
                                  .aux_loss = 0,
                                  .balanced = 1};
    }
    MOE_ASSERT(!"moe_route_strategy value outside the enum");
    return (moe_route_traits){0};
}

void moe_router_score(moe_scoring s, const float *logits, float *probs, int64_t T, int E) {
    for (int64_t t = 0; t < T; t++) {
        const float *z = logits + t * E;
        float *p = probs + t * E;
        if (s == MOE_SCORE_SIGMOID) {
            for (int e = 0; e < E; e++) p[e] = 1.0f / (1.0f + expf(-z[e]));
            continue;
        }
        float m = z[0];
        for (int e = 1; e < E; e++) m = z[e] > m ? z[e] : m;
        double sum = 0;
        for (int e = 0; e < E; e++) {
            p[e] = expf(z[e] - m);
            sum += p[e];
        }
        float inv = (float)(1.0 / sum);
        for (int e = 0; e < E; e++) p[e] *= inv;
    }
}

void moe_router_score_backward(moe_scoring s, const float *probs, const float *dprobs,
                               float *dlogits, int64_t T, int E) {
    for (int64_t t = 0; t < T; t++) {
        const float *p = probs + t * E, *dp = dprobs + t * E;
        float *dz = dlogits + t * E;
        if (s == MOE_SCORE_SIGMOID) {
            for (int e = 0; e < E; e++) dz[e] += dp[e] * p[e] * (1.0f - p[e]);
            continue;
        }
        double dot = 0;
        for (int e = 0; e < E; e++) dot += (double)dp[e] * p[e];
        for (int e = 0; e < E; e++) dz[e] += p[e] * (dp[e] - (float)dot);
    }
}

void moe_router_topk(const float *v, int E, int K, int32_t *idx) {
    MOE_ASSERT(K >= 1 && K <= E);
    // Insertion into a sorted list of K; scanning experts in increasing order and replacing only
    // on strictly greater values keeps the lower index first among ties.
    int n = 0;
    for (int e = 0; e < E; e++) {
        float x = v[e];
        if (n == K && !(x > v[idx[K - 1]])) continue;
        int j = n < K ? n++ : K - 1;
        while (j > 0 && x > v[idx[j - 1]]) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = e;
    }
}

float moe_router_noise(uint64_t seed, int64_t token, int expert) {
    // One 64-bit hash of (seed, token, expert) gives two 32-bit uniforms; Box-Muller makes N(0,1).
    uint64_t h =
        moe_splitmix64(moe_splitmix64(seed ^ 0x6a09e667f3bcc909ull) ^
                       moe_splitmix64((uint64_t)token * 0x100000001b3ull + (uint64_t)expert));
    double u1 = ((double)(h >> 32) + 0.5) / 4294967296.0; // (0, 1)
    double u2 = ((double)(h & 0xffffffffu) + 0.5) / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

double moe_router_z_loss(const float *logits, int64_t T, int E, double beta, float *dlogits) {
    if (T == 0) return 0;
    double total = 0;
    for (int64_t t = 0; t < T; t++) {
        const float *z = logits + t * E;
        float m = z[0];
        for (int e = 1; e < E; e++) m = z[e] > m ? z[e] : m;
        double sum = 0;
        for (int e = 0; e < E; e++) sum += exp((double)z[e] - m);
        double lse = m + log(sum);
        total += lse * lse;
        if (dlogits) {
            // d/dz (β/T · lse²) = β/T · 2·lse · softmax(z)
            double c = beta * 2.0 * lse / (double)T;
            for (int e = 0; e < E; e++)
                dlogits[t * E + e] += (float)(c * exp((double)z[e] - m) / sum);
        }
    }
    return beta * total / (double)T;
}

void moe_router_update_bias(float *bias, const int64_t *load, int E, double gamma) {
    double mean = 0;
    for (int e = 0; e < E; e++) mean += (double)load[e];
    mean /= E;
    for (int e = 0; e < E; e++) {
        double d = mean - (double)load[e];
        bias[e] += (float)(d > 0 ? gamma : d < 0 ? -gamma : 0.0);
    }
}

moe_route_load moe_route_load_stats(const int64_t *load, int E, double entropy_sum, double tokens) {
    moe_route_load r = {0, 0, 0};
    int64_t total = 0;
    for (int e = 0; e < E; e++) total += load[e];
    const double mean = E > 0 ? (double)total / E : 0;
    double var = 0, mx = 0;
    for (int e = 0; e < E; e++) {
        const double l = (double)load[e];
        mx = l > mx ? l : mx;
        var += (l - mean) * (l - mean);
    }
    if (E > 0) var /= E;
    r.max_over_mean = mean > 0 ? mx / mean : 0;
    r.cv = mean > 0 ? sqrt(var) / mean : 0;
    r.entropy = tokens > 0 ? entropy_sum / tokens : 0;
    return r;
}
