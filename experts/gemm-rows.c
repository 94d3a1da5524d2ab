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
// columns c ≡ l mod 8 in increasing order) reduced as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)), then
// the N mod 8 tail columns in order. Neither depends on n or on which rows share a block.
#include "experts.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#define MOE_PF(p)         __builtin_prefetch((p), 0, 3)
#define MOE_ALWAYS_INLINE static inline __attribute__((always_inline))

static int rows_on = 1;

int moe_gemm_rows_enabled(void) { return rows_on; }

void moe_gemm_rows_enable(int on) { rows_on = on != 0; }

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

// Eight dot products at once: lane q of the result is ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)) over
// the lanes l of a[q] — the one reduction tree of the dX lanes.
MOE_ALWAYS_INLINE __m256 hsum8x8(const __m256 *a) {
    const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

// dX rows [0, R), columns [k, k + nk) (nk <= 8) = [dX +] dY · W rows k … k+nk-1: 8·R chains
// over the columns of W in 8 lanes, reduced together, then the N mod 8 tail in order.
MOE_ALWAYS_INLINE void nt_tile(int R, int64_t K, int64_t N, const float *dY, const float *W,
                               float *dX, int acc, int64_t k, int nk, const float *pf) {
    __m256 a[2][8];
    const float *w[8];
    const int64_t N8 = N / 8 * 8;
#pragma GCC unroll 8
    for (int q = 0; q < 8; q++) {
        w[q] = W + (k + (q < nk ? q : 0)) * N; // missing rows repeat row k; their lanes unused
        for (int i = 0; i < R; i++) a[i][q] = _mm256_setzero_ps();
    }
    for (int64_t c = 0; c < N8; c += 8) {
        if (pf && (c & 15) == 0)
            for (int q = 0; q < nk; q++) MOE_PF(pf + (k + q) * N + c);
        __m256 d[2];
#pragma GCC unroll 2
        for (int i = 0; i < R; i++) d[i] = _mm256_loadu_ps(dY + i * N + c);
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++) {
            const __m256 v = _mm256_loadu_ps(w[q] + c);
#pragma GCC unroll 2
            for (int i = 0; i < R; i++) a[i][q] = _mm256_fmadd_ps(d[i], v, a[i][q]);
        }
    }
    for (int i = 0; i < R; i++) {
        float s[8];
        _mm256_storeu_ps(s, hsum8x8(a[i]));
        for (int q = 0; q < nk; q++) {
            for (int64_t c = N8; c < N; c++) s[q] = fmaf(dY[i * N + c], w[q][c], s[q]);
            dX[i * K + k + q] = acc ? dX[i * K + k + q] + s[q] : s[q];
        }
    }
}

void moe_gemm_rows_nt(int64_t n, int64_t K, int64_t N, const float *dY, const float *W, float *dX,
                      int acc, const float *pf) {
    // k tiles outside, row pairs inside: the tile's 8 rows of W stay in L1 across the pairs
    for (int64_t k = 0; k < K; k += 8) {
        const int nk = K - k < 8 ? (int)(K - k) : 8;
        const float *p = pf;
        int64_t r = 0;
        for (; r + 2 <= n; r += 2, p = NULL)
            nt_tile(2, K, N, dY + r * N, W, dX + r * K, acc, k, nk, p);
        if (r < n) nt_tile(1, K, N, dY + r * N, W, dX + r * K, acc, k, nk, p);
    }
}

// dW row k, columns [c, c + 8·V) += Σ over rows [0, R) of X[r][k]·dY[r][·], in row order: V
// independent chains per row step, X's R values broadcast once for the whole row of dW.
MOE_ALWAYS_INLINE void tn_row(int R, int64_t K, int64_t N, const float *X, const float *dY,
                              float *dWk, int64_t k, int64_t N32, int acc, const float *pfk) {
    __m256 b[8];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) b[i] = _mm256_broadcast_ss(X + i * K + k);
    for (int64_t c = 0; c < N32; c += 32) {
        if (pfk) MOE_PF(pfk + c), MOE_PF(pfk + c + 16);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        if (acc) {
            a0 = _mm256_loadu_ps(dWk + c), a1 = _mm256_loadu_ps(dWk + c + 8);
            a2 = _mm256_loadu_ps(dWk + c + 16), a3 = _mm256_loadu_ps(dWk + c + 24);
        }
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            const float *d = dY + i * N + c;
            a0 = _mm256_fmadd_ps(b[i], _mm256_loadu_ps(d), a0);
            a1 = _mm256_fmadd_ps(b[i], _mm256_loadu_ps(d + 8), a1);
            a2 = _mm256_fmadd_ps(b[i], _mm256_loadu_ps(d + 16), a2);
            a3 = _mm256_fmadd_ps(b[i], _mm256_loadu_ps(d + 24), a3);
        }
        _mm256_storeu_ps(dWk + c, a0), _mm256_storeu_ps(dWk + c + 8, a1);
        _mm256_storeu_ps(dWk + c + 16, a2), _mm256_storeu_ps(dWk + c + 24, a3);
    }
}

void moe_gemm_rows_tn(int64_t n, int64_t K, int64_t N, const float *X, const float *dY, float *dW,
                      int acc, const float *pf) {
    const int64_t N32 = N / 32 * 32;
    for (int64_t k = 0; k < K; k++) {
        float *dWk = dW + k * N;
        const float *pfk = pf ? pf + k * N : NULL;
        int64_t r = 0; // rows in groups of 8, then one by one: the chain stays in row order
        int a = acc;   // the first group starts from dW (acc) or from 0, the next from its result
        for (; r + 8 <= n; r += 8, pfk = NULL, a = 1)
            tn_row(8, K, N, X + r * K, dY + r * N, dWk, k, N32, a, pfk);
        for (; r < n; r++, pfk = NULL, a = 1)
            tn_row(1, K, N, X + r * K, dY + r * N, dWk, k, N32, a, pfk);
        if (!a) memset(dWk, 0, (size_t)N32 * sizeof(float)); // no rows: 0 written
        for (int64_t c = N32; c < N; c++) { // the columns past the last multiple of 32
            float s = acc ? dWk[c] : 0.0f;
            for (int64_t q = 0; q < n; q++) s = fmaf(X[q * K + k], dY[q * N + c], s);
            dWk[c] = s;
        }
    }
}

#else // no AVX2/FMA at build time: the kernels are not built, every block goes to cblas

int moe_gemm_rows_enabled(void) { return 0; }

void moe_gemm_rows_enable(int on) { (void)on; }

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
                      int acc, const float *pf) {
    (void)pf;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)N, (int)n, 1.0f, X, (int)K,
                dY, (int)N, acc ? 1.0f : 0.0f, dW, (int)N);
}
#endif
