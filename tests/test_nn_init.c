// test_nn_init.c: the layout-independent initialisation of trainer/model/nn.h — same draws for the
// same (seed, key, index), a shard drawn with an offset equals the slice of the whole tensor,
// different keys/seeds give uncorrelated streams, and the samples have mean 0 and the asked std
// (bounds of 5 standard errors over 2^18 draws) and a normal's tail fraction beyond 2σ.
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int fails;

static void expect(const char *what, int ok, double want, double got) {
    printf("%s %s: expected %.8g got %.8g\n", ok ? "ok  " : "FAIL", what, want, got);
    fails += !ok;
}

int main(void) {
    enum { N = 1 << 18 };
    const double sd = 0.02;
    float *a = moe_xcalloc(N, sizeof(float)), *b = moe_xcalloc(N, sizeof(float));
    const uint64_t k1 = moe_nn_init_key("experts.w1", 3, 5);
    moe_nn_init_normal(a, N, sd, 1234, k1, 0);
    moe_nn_init_normal(b, N, sd, 1234, k1, 0);
    expect("same (seed, key) draws identical", memcmp(a, b, sizeof(float) * N) == 0, 1,
           memcmp(a, b, sizeof(float) * N) == 0);
    // A shard [1000, 1000 + 4096) drawn on its own equals the slice.
    moe_nn_init_normal(b, 4096, sd, 1234, k1, 1000);
    int same = memcmp(a + 1000, b, sizeof(float) * 4096) == 0;
    expect("shard with offset = slice of the whole", same, 1, same);
    // Statistics.
    double s = 0, ss = 0;
    int64_t tail = 0;
    for (int i = 0; i < N; i++) {
        s += a[i], ss += (double)a[i] * a[i];
        tail += fabs(a[i]) > 2 * sd;
    }
    const double mean = s / N, std = sqrt(ss / N - mean * mean);
    expect("mean within 5 standard errors of 0", fabs(mean) < 5 * sd / sqrt((double)N), 0, mean);
    // std of the sample std ≈ σ/√(2N): 5 of those.
    expect("std within 5 standard errors of 0.02", fabs(std - sd) < 5 * sd / sqrt(2.0 * N), sd,
           std);
    const double p2 = 0.0455002638963584; // P(|z| > 2) of a standard normal: erfc(√2)
    const double frac = (double)tail / N, se = sqrt(p2 * (1 - p2) / N);
    expect("fraction beyond 2σ (erfc(√2))", fabs(frac - erfc(sqrt(2.0))) < 5 * se, p2, frac);
    // Other key / other seed / other layer / other expert: different, uncorrelated streams.
    const uint64_t keys[4] = {moe_nn_init_key("experts.w1", 3, 6),
                              moe_nn_init_key("experts.w3", 3, 5),
                              moe_nn_init_key("experts.w1", 2, 5), k1};
    const uint64_t seeds[4] = {1234, 1234, 1234, 1235};
    for (int v = 0; v < 4; v++) {
        moe_nn_init_normal(b, N, sd, seeds[v], keys[v], 0);
        double c = 0;
        for (int i = 0; i < N; i++) c += (double)a[i] * b[i];
        c /= N * sd * sd;
        char what[80];
        snprintf(what, sizeof what, "variant %d (key/layer/expert/seed) uncorrelated", v);
        expect(what, fabs(c) < 5 / sqrt((double)N), 0, c);
        if (v < 3 && keys[v] == k1) expect("distinct keys", 0, 1, 0);
    }
    moe_nn_init_const(b, 10, 1.0f);
    expect("const fill", b[0] == 1.0f && b[9] == 1.0f, 1, b[9]);
    free(a), free(b);
    if (fails) {
        printf("test_nn_init: %d check(s) FAILED\n", fails);
        return 1;
    }
    printf("test_nn_init: all checks passed\n");
    return 0;
}
