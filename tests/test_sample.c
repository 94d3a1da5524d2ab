// test_sample.c: the sampling kernel of `moe generate` (generate/generate.h) against its
// definition: greedy is the argmax with ties to the lower id; top-k 1 is greedy at any
// temperature; draws land only on the k largest logits; the frequencies of many draws match
// softmax(logits / T) over the candidates; the uniform draw is counter-based and in [0, 1).
#include "generate.h"
#include "test-util.h"

#include <math.h>

#define V 6

static void test_greedy(void) {
    const float lg[V] = {0.5f, 2.0f, -1.0f, 2.0f, 1.9f, 0.0f};
    int32_t idx[V];
    moe_sample_params g = {0, 0};
    CHECK(moe_sample(lg, V, &g, 0.99, idx) == 1, "greedy: expected id 1 (tie to the lower id)");
    moe_sample_params k1 = {5.0, 1};
    for (int i = 0; i < 50; i++)
        CHECK(moe_sample(lg, V, &k1, moe_sample_uniform(7, i), idx) == 1,
              "top-k 1 at T 5: expected the argmax 1");
}

// Frequencies of N draws (u on a fine stratified grid) against the softmax of the candidates.
static void test_frequencies(double temp, int k) {
    const float lg[V] = {1.0f, 0.2f, -0.5f, 1.5f, 0.0f, 0.7f};
    const int order[V] = {3, 0, 5, 1, 4, 2}; // descending
    const int kk = k > 0 && k < V ? k : V;
    double p[V] = {0}, total = 0;
    for (int j = 0; j < kk; j++) total += p[order[j]] = exp((lg[order[j]] - 1.5) / temp);
    int32_t idx[V];
    int count[V] = {0};
    const int N = 20000;
    moe_sample_params sp = {temp, k};
    for (int i = 0; i < N; i++) count[moe_sample(lg, V, &sp, (i + 0.5) / N, idx)]++;
    for (int j = 0; j < V; j++) {
        const double want = p[j] / total, got = (double)count[j] / N;
        CHECK(fabs(got - want) < 2.0 / N + 1e-9, "T %g k %d: id %d drawn %.5f, softmax %.5f", temp,
              k, j, got, want);
    }
}

static void test_draws(void) {
    double sum = 0;
    for (int i = 0; i < 10000; i++) {
        const double u = moe_sample_uniform(42, i);
        CHECK(u >= 0 && u < 1, "draw %d = %g outside [0, 1)", i, u);
        CHECK(u == moe_sample_uniform(42, i), "draw %d not reproducible", i);
        sum += u;
    }
    CHECK(fabs(sum / 10000 - 0.5) < 0.02, "mean of 10000 draws %g", sum / 10000);
    CHECK(moe_sample_uniform(42, 0) != moe_sample_uniform(43, 0), "seeds 42 and 43 draw alike");
}

int main(void) {
    test_greedy();
    test_frequencies(1.0, 0);
    test_frequencies(0.5, 0);
    test_frequencies(2.0, 3);
    test_frequencies(1.0, 2);
    test_draws();
    return test_summary("test_sample");
}
