// gemm-rows.c: GEMMs for expert blocks of few rows (experts.h, "Small-row GEMMs").
//
// With many small experts each expert's block has a handful of rows (1024 tokens × top-2 over
// 256 experts: 8). A general GEMM is built for big blocks: OpenBLAS packs the weight matrix for
// every call, and its A^T·B with 8-row inner dimension (the weight gradient) reads and writes the
// gradient matrix at ~11-17 GFLOP/s here. These kernels stream each matrix once, straight from
// memory, with the rows of the block in registers, and prefetch the matrix the next call will
// read while they stream this one.
//
// Summation order (the kernels' contract, relied on by the layout tests): every element of Y and
// dW is one chain of fused multiply-adds in increasing k (resp. row) order, starting from the
// value already there; an element of dX is a dot product over N in 8 fixed lanes (lane l takes the
// columns c ≡ l mod 8 in increasing order) reduced in one fixed tree, then the N mod 8 tail columns
// in order. Neither depends on n or on which rows share a block.
#include "experts.h"

#include <cblas.h>
#include <math.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#define MOE_PF(p)         __builtin_prefetch((p), 0, 3)
#define MOE_ALWAYS_INLINE static inline __attribute__((always_inline))

static int64_t rows_max = MOE_GEMM_ROWS_MAX;

int64_t moe_gemm_rows_max(void) { return rows_max; }

void moe_gemm_rows_set_max(int64_t n) { rows_max = n < 0 ? 0 : n; }

// Y rows [r, r+R) += X rows · W, columns [j, j+16). One chain per element over k.
MOE_ALWAYS_INLINE void nn_tile16(int R, int64_t K, int64_t N, const float *X, const float *W,
                                 float *Y, int acc, int64_t j, const float *pf) {
    __m256 a[8][2];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        a[i][0] = acc ? _mm256_loadu_ps(Y + i * N + j) : _mm256_setzero_ps();
        a[i][1] = acc ? _mm256_loadu_ps(Y + i * N + j + 8) : _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < K; k++) {
        if (pf) MOE_PF(pf + k * N + j);
        const __m256 w0 = _mm256_loadu_ps(W + k * N + j), w1 = _mm256_loadu_ps(W + k * N + j + 8);
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            const __m256 b = _mm256_broadcast_ss(X + i * K + k);
            a[i][0] = _mm256_fmadd_ps(b, w0, a[i][0]);
            a[i][1] = _mm256_fmadd_ps(b, w1, a[i][1]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        _mm256_storeu_ps(Y + i * N + j, a[i][0]);
        _mm256_storeu_ps(Y + i * N + j + 8, a[i][1]);
    }
}

// The columns past the last multiple of 16, element by element (the same chain as the lanes).
static void nn_tail(int64_t n, int64_t K, int64_t N, const float *X, const float *W, float *Y,
                    int acc, int64_t j0) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = j0; j < N; j++) {
            float s = acc ? Y[i * N + j] : 0.0f;
            for (int64_t k = 0; k < K; k++) s = fmaf(X[i * K + k], W[k * N + j], s);
            Y[i * N + j] = s;
        }
}

void moe_gemm_rows_nn(int64_t n, int64_t K, int64_t N, const float *X, const float *W, float *Y,
                      int acc, const float *pf) {
    const int64_t N16 = N / 16 * 16;
    int64_t r = 0;
    for (; r + 8 <= n; r += 8, pf = NULL)
        for (int64_t j = 0; j < N16; j += 16)
            nn_tile16(8, K, N, X + r * K, W, Y + r * N, acc, j, pf);
    for (; r + 4 <= n; r += 4, pf = NULL)
        for (int64_t j = 0; j < N16; j += 16)
            nn_tile16(4, K, N, X + r * K, W, Y + r * N, acc, j, pf);
    for (; r < n; r++, pf = NULL)
        for (int64_t j = 0; j < N16; j += 16)
            nn_tile16(1, K, N, X + r * K, W, Y + r * N, acc, j, pf);
    if (N16 < N) nn_tail(n, K, N, X, W, Y, acc, N16);
}

// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)): the one reduction tree of the dX lanes.
MOE_ALWAYS_INLINE float hsum8(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

// dX rows [0, R), columns k and k+1 (both when two) = dY · W rows k, k+1.
MOE_ALWAYS_INLINE void nt_tile(int R, int two, int64_t K, int64_t N, const float *dY,
                               const float *W, float *dX, int acc, int64_t k, const float *pf) {
    __m256 a[8][2];
    const int64_t N8 = N / 8 * 8;
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) a[i][0] = a[i][1] = _mm256_setzero_ps();
    const float *w0 = W + k * N, *w1 = W + (k + two) * N;
    for (int64_t c = 0; c < N8; c += 8) {
        if (pf && (c & 15) == 0) {
            MOE_PF(pf + k * N + c);
            if (two) MOE_PF(pf + (k + 1) * N + c);
        }
        const __m256 v0 = _mm256_loadu_ps(w0 + c), v1 = _mm256_loadu_ps(w1 + c);
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            const __m256 d = _mm256_loadu_ps(dY + i * N + c);
            a[i][0] = _mm256_fmadd_ps(d, v0, a[i][0]);
            if (two) a[i][1] = _mm256_fmadd_ps(d, v1, a[i][1]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; i++)
        for (int q = 0; q <= two; q++) {
            float s = hsum8(a[i][q]);
            for (int64_t c = N8; c < N; c++) s = fmaf(dY[i * N + c], W[(k + q) * N + c], s);
            dX[i * K + k + q] = acc ? dX[i * K + k + q] + s : s;
        }
}

MOE_ALWAYS_INLINE void nt_rows(int R, int64_t K, int64_t N, const float *dY, const float *W,
                               float *dX, int acc, const float *pf) {
    int64_t k = 0;
    for (; k + 2 <= K; k += 2) nt_tile(R, 1, K, N, dY, W, dX, acc, k, pf);
    if (k < K) nt_tile(R, 0, K, N, dY, W, dX, acc, k, pf);
}

void moe_gemm_rows_nt(int64_t n, int64_t K, int64_t N, const float *dY, const float *W, float *dX,
                      int acc, const float *pf) {
    int64_t r = 0;
    for (; r + 8 <= n; r += 8, pf = NULL) nt_rows(8, K, N, dY + r * N, W, dX + r * K, acc, pf);
    for (; r + 4 <= n; r += 4, pf = NULL) nt_rows(4, K, N, dY + r * N, W, dX + r * K, acc, pf);
    for (; r < n; r++, pf = NULL) nt_rows(1, K, N, dY + r * N, W, dX + r * K, acc, pf);
}

// dW rows [k, k+4), columns [c, c+16) += X^T · dY over all n rows, in row order.
static void tn_tile(int64_t n, int64_t K, int64_t N, const float *X, const float *dY, float *dW,
                    int64_t k, int64_t c, const float *pf) {
    __m256 a[4][2];
    for (int i = 0; i < 4; i++) {
        a[i][0] = _mm256_loadu_ps(dW + (k + i) * N + c);
        a[i][1] = _mm256_loadu_ps(dW + (k + i) * N + c + 8);
        if (pf) MOE_PF(pf + (k + i) * N + c);
    }
    for (int64_t r = 0; r < n; r++) {
        const __m256 d0 = _mm256_loadu_ps(dY + r * N + c), d1 = _mm256_loadu_ps(dY + r * N + c + 8);
        const float *x = X + r * K + k;
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const __m256 b = _mm256_broadcast_ss(x + i);
            a[i][0] = _mm256_fmadd_ps(b, d0, a[i][0]);
            a[i][1] = _mm256_fmadd_ps(b, d1, a[i][1]);
        }
    }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(dW + (k + i) * N + c, a[i][0]);
        _mm256_storeu_ps(dW + (k + i) * N + c + 8, a[i][1]);
    }
}

void moe_gemm_rows_tn(int64_t n, int64_t K, int64_t N, const float *X, const float *dY, float *dW,
                      const float *pf) {
    const int64_t K4 = K / 4 * 4, N16 = N / 16 * 16;
    for (int64_t k = 0; k < K4; k += 4)
        for (int64_t c = 0; c < N16; c += 16) tn_tile(n, K, N, X, dY, dW, k, c, pf);
    // the rows past the last multiple of 4 and the columns past the last multiple of 16
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = k < K4 ? N16 : 0; c < N; c++) {
            float s = dW[k * N + c];
            for (int64_t r = 0; r < n; r++) s = fmaf(X[r * K + k], dY[r * N + c], s);
            dW[k * N + c] = s;
        }
}

#else // no AVX2/FMA at build time: the kernels are not built, every block goes to cblas

int64_t moe_gemm_rows_max(void) { return 0; }

void moe_gemm_rows_set_max(int64_t n) { (void)n; }

void moe_gemm_rows_nn(int64_t n, int64_t K, int64_t N, const float *X, const float *W, float *Y,
                      int acc, const float *pf) {
    (void)pf;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)N, (int)K, 1.0f, X, (int)K,
                W, (int)N, acc ? 1.0f : 0.0f, Y, (int)N);
}

void moe_gemm_rows_nt(int64_t n, int64_t K, int64_t N, const float *dY, const float *W, float *dX,
                      int acc, const float *pf) {
    (void)pf;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)K, (int)N, 1.0f, dY, (int)N,
                W, (int)N, acc ? 1.0f : 0.0f, dX, (int)K);
}

void moe_gemm_rows_tn(int64_t n, int64_t K, int64_t N, const float *X, const float *dY, float *dW,
                      const float *pf) {
    (void)pf;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)N, (int)n, 1.0f, X, (int)K,
                dY, (int)N, 1.0f, dW, (int)N);
}
#endif
