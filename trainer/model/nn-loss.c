// nn-loss.c: softmax cross-entropy over the vocabulary, loss and dlogits in one pass per row.
// Max-subtracted exponentials, row sums and the loss total in double; dlogits may overwrite the
// logits in place, so the (T, V) buffer — the largest activation of a small model — is needed once.
#include "nn.h"

#include <math.h>

double moe_nn_crossentropy(float *dlogits, const float *logits, const int32_t *targets, int64_t T,
                           int64_t V, float dscale) {
    double total = 0;
    const double gs = T > 0 ? (double)dscale / (double)T : 0.0;
    for (int64_t t = 0; t < T; t++) {
        const float *x = logits + t * V;
        const int32_t y = targets[t];
        MOE_ASSERT(y >= 0 && y < V);
        float mx = x[0];
        for (int64_t j = 1; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        double sum = 0;
        for (int64_t j = 0; j < V; j++) sum += exp((double)(x[j] - mx));
        const double lse = (double)mx + log(sum);
        total += lse - (double)x[y];
        if (dlogits) {
            float *d = dlogits + t * V;
            const double inv = 1.0 / sum;
            for (int64_t j = 0; j < V; j++) { // reads x[j] before writing d[j]: aliasing is fine
                double p = exp((double)(x[j] - mx)) * inv;
                d[j] = (float)(gs * (p - (j == y ? 1.0 : 0.0)));
            }
        }
    }
    return T > 0 ? total / (double)T : 0.0;
}
