// test_gemm_rows.c: the small-row GEMM kernels (experts/gemm-rows.c) against scalar references
// written from their contract in experts.h, bit for bit: every element of Y and dW is one fmaf
// chain in k (resp. row) order; an element of dX is 8 lane chains over the columns, summed by a
// fixed tree. Shapes with every remainder (rows not a multiple of 8 or 4, K odd, N not a multiple of 8
// or 16), the expert shapes of the quickstart model, prefetch on and off. Also: a row's result
// is the same whether it is computed alone or inside a block (what the layout tests rely on), and
// each kernel is within float rounding of a double reference.
#include "experts.h"
#include "test-util.h"

#include <math.h>
#include <string.h>

static void ref_nn(int64_t n, int64_t K, int64_t N, const float *X, const float *W, float *Y,
                   int acc) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = acc ? Y[i * N + j] : 0.0f;
            for (int64_t k = 0; k < K; k++) s = fmaf(X[i * K + k], W[k * N + j], s);
            Y[i * N + j] = s;
        }
}

static void ref_tn(int64_t n, int64_t K, int64_t N, const float *X, const float *dY, float *dW,
                   int acc) {
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < N; j++) {
            float s = acc ? dW[k * N + j] : 0.0f;
            for (int64_t r = 0; r < n; r++) s = fmaf(X[r * K + k], dY[r * N + j], s);
            dW[k * N + j] = s;
        }
}

static void ref_nt(int64_t n, int64_t K, int64_t N, const float *dY, const float *W, float *dX,
                   int acc) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < K; k++) {
            const int64_t N8 = N / 8 * 8;
            float l[8];
            for (int q = 0; q < 8; q++) {
                l[q] = 0.0f;
                for (int64_t c = q; c < N8; c += 8) l[q] = fmaf(dY[i * N + c], W[k * N + c], l[q]);
            }
            float s = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
            for (int64_t c = N8; c < N; c++) s = fmaf(dY[i * N + c], W[k * N + c], s);
            dX[i * K + k] = acc ? dX[i * K + k] + s : s;
        }
}

static void fill(float *v, int64_t n, uint64_t *st) {
    for (int64_t i = 0; i < n; i++) v[i] = (float)test_uniform(st, -1, 1);
}

static int same(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

static void check_shape(int64_t n, int64_t K, int64_t N, uint64_t seed) {
    uint64_t st = seed;
    float *X = moe_xcalloc((size_t)(n * K), sizeof(float));
    float *W = moe_xcalloc((size_t)(K * N), sizeof(float));
    float *PF = moe_xcalloc((size_t)(K * N), sizeof(float));
    float *dY = moe_xcalloc((size_t)(n * N), sizeof(float));
    float *Y0 = moe_xcalloc((size_t)(n * N), sizeof(float)),
          *Y1 = moe_xcalloc((size_t)(n * N), sizeof(float));
    float *X0 = moe_xcalloc((size_t)(n * K), sizeof(float)),
          *X1 = moe_xcalloc((size_t)(n * K), sizeof(float));
    float *G0 = moe_xcalloc((size_t)(K * N), sizeof(float)),
          *G1 = moe_xcalloc((size_t)(K * N), sizeof(float));
    fill(X, n * K, &st), fill(W, K * N, &st), fill(PF, K * N, &st), fill(dY, n * N, &st);
    for (int acc = 0; acc < 2; acc++)
        for (int pf = 0; pf < 2; pf++) {
            fill(Y0, n * N, &st), memcpy(Y1, Y0, (size_t)(n * N) * sizeof(float));
            ref_nn(n, K, N, X, W, Y0, acc);
            moe_gemm_rows_nn(n, K, N, X, W, Y1, acc, pf ? PF : NULL);
            CHECK(same(Y0, Y1, n * N), "nn n=%lld K=%lld N=%lld acc=%d pf=%d: not the fmaf chain",
                  (long long)n, (long long)K, (long long)N, acc, pf);
            fill(X0, n * K, &st), memcpy(X1, X0, (size_t)(n * K) * sizeof(float));
            ref_nt(n, K, N, dY, W, X0, acc);
            moe_gemm_rows_nt(n, K, N, dY, W, X1, acc, pf ? PF : NULL);
            CHECK(same(X0, X1, n * K), "nt n=%lld K=%lld N=%lld acc=%d pf=%d: not the fmaf chain",
                  (long long)n, (long long)K, (long long)N, acc, pf);
        }
    for (int acc = 0; acc < 2; acc++)
        for (int pf = 0; pf < 2; pf++) {
            fill(G0, K * N, &st), memcpy(G1, G0, (size_t)(K * N) * sizeof(float));
            ref_tn(n, K, N, X, dY, G0, acc);
            moe_gemm_rows_tn(n, K, N, X, dY, G1, acc, pf ? PF : NULL);
            CHECK(same(G0, G1, K * N),
                  "tn n=%lld K=%lld N=%lld acc=%d pf=%d: not the fmaf chain in row order",
                  (long long)n, (long long)K, (long long)N, acc, pf);
        }
    // No rows: acc 0 writes zeros, acc 1 leaves dW as it is.
    fill(G1, K * N, &st), memcpy(G0, G1, (size_t)(K * N) * sizeof(float));
    moe_gemm_rows_tn(0, K, N, X, dY, G1, 1, NULL);
    CHECK(same(G0, G1, K * N), "tn n=0 acc=1 changed dW");
    moe_gemm_rows_tn(0, K, N, X, dY, G1, 0, NULL);
    memset(G0, 0, (size_t)(K * N) * sizeof(float));
    CHECK(same(G0, G1, K * N), "tn n=0 acc=0 did not write zeros");
    // A row alone gives the same bits as inside the block (n-independence), and dW over the
    // block equals dW accumulated row by row.
    int alone = 1;
    memset(G1, 0, (size_t)(K * N) * sizeof(float)), memset(G0, 0, (size_t)(K * N) * sizeof(float));
    moe_gemm_rows_nn(n, K, N, X, W, Y0, 0, NULL);
    moe_gemm_rows_nt(n, K, N, dY, W, X0, 0, NULL);
    moe_gemm_rows_tn(n, K, N, X, dY, G0, 1, NULL);
    for (int64_t r = 0; r < n; r++) {
        moe_gemm_rows_nn(1, K, N, X + r * K, W, Y1 + r * N, 0, NULL);
        moe_gemm_rows_nt(1, K, N, dY + r * N, W, X1 + r * K, 0, NULL);
        moe_gemm_rows_tn(1, K, N, X + r * K, dY + r * N, G1, 1, NULL);
    }
    alone = same(Y0, Y1, n * N) && same(X0, X1, n * K) && same(G0, G1, K * N);
    CHECK(alone, "n=%lld K=%lld N=%lld: a row's result depends on its block", (long long)n,
          (long long)K, (long long)N);
    // Within float rounding of double (the value, not only the order, is right).
    double worst = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0, m = 0;
            for (int64_t k = 0; k < K; k++) {
                s += (double)X[i * K + k] * W[k * N + j];
                m += fabs((double)X[i * K + k] * W[k * N + j]);
            }
            worst = fmax(worst, fabs(Y0[i * N + j] - s) / (m + 1e-30));
        }
    CHECK(worst < 1e-5 * (double)K, "nn n=%lld K=%lld N=%lld: relative error %.3g", (long long)n,
          (long long)K, (long long)N, worst);
    free(X), free(W), free(PF), free(dY), free(Y0), free(Y1), free(X0), free(X1), free(G0),
        free(G1);
}

int main(void) {
    if (!moe_gemm_rows_enabled()) {
        printf("gemm_rows: this build has no AVX2/FMA; the kernels are cblas calls, nothing to "
               "check\n");
        return 0;
    }
    const int64_t rows[] = {1, 3, 4, 7, 8, 9, 13, 16, 64};
    const int64_t shapes[][2] = {{128, 256}, {256, 128}, {12, 20}, {37, 50},
                                 {5, 16},    {16, 7},    {1, 1}};
    uint64_t seed = 1;
    for (size_t a = 0; a < sizeof rows / sizeof rows[0]; a++)
        for (size_t b = 0; b < sizeof shapes / sizeof shapes[0]; b++)
            check_shape(rows[a], shapes[b][0], shapes[b][1], seed++);
    return test_summary("gemm_rows");
}
