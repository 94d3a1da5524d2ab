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
// value already there; so is an element of dX (a chain over the columns of W in increasing order). Neither depends on n or on which rows share a block.
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

// The 8 x 8 block r (rows of W, 8 columns each) transposed in place: r[j] lane q = old r[q] lane j.
MOE_ALWAYS_INLINE void transpose8(__m256 *r) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// dX rows [0, R) (R <= 8), columns [k, k + nk) (nk <= 8): lane q of a[i] is element (i, k+q), one
// fused multiply-add chain over the columns c of W in increasing order — the forward's kernel on
// W transposed 8 x 8 blocks at a time in registers.
MOE_ALWAYS_INLINE void nt_tile(int R, int64_t K, int64_t N, const float *dY, const float *W,
                               float *dX, int acc, int64_t k, int nk, const float *pf) {
    __m256 a[8];
    const float *w[8];
    const int64_t N8 = N / 8 * 8;
#pragma GCC unroll 8
    for (int q = 0; q < 8; q++) w[q] = W + (k + (q < nk ? q : 0)) * N; // repeats: lanes unused
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        if (acc && nk == 8)
            a[i] = _mm256_loadu_ps(dX + i * K + k);
        else if (acc) {
            float t[8] = {0};
            for (int q = 0; q < nk; q++) t[q] = dX[i * K + k + q];
            a[i] = _mm256_loadu_ps(t);
        } else
            a[i] = _mm256_setzero_ps();
    }
    for (int64_t c = 0; c < N8; c += 8) {
        if (pf && (c & 15) == 0)
            for (int q = 0; q < nk; q++) MOE_PF(pf + (k + q) * N + c);
        __m256 t[8];
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++) t[q] = _mm256_loadu_ps(w[q] + c);
        transpose8(t); // t[j] = column c + j of the 8 rows
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
#pragma GCC unroll 8
            for (int i = 0; i < R; i++)
                a[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(dY + i * N + c + j), t[j], a[i]);
    }
    for (int64_t c = N8; c < N; c++) { // the columns past the last multiple of 8
        float col[8];
        for (int q = 0; q < 8; q++) col[q] = w[q][c];
        const __m256 v = _mm256_loadu_ps(col);
        for (int i = 0; i < R; i++)
            a[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(dY + i * N + c), v, a[i]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        if (nk == 8) {
            _mm256_storeu_ps(dX + i * K + k, a[i]);
        } else {
            float t[8];
            _mm256_storeu_ps(t, a[i]);
            for (int q = 0; q < nk; q++) dX[i * K + k + q] = t[q];
        }
    }
}

// Rows [0, R) of the block, R in 1..8, as one pass (a switch: R is a constant in each nt_tile).
static void nt_rows(int R, int64_t K, int64_t N, const float *dY, const float *W, float *dX,
                    int acc, int64_t k, int nk, const float *pf) {
    switch (R) {
    case 8: nt_tile(8, K, N, dY, W, dX, acc, k, nk, pf); break;
    case 7: nt_tile(7, K, N, dY, W, dX, acc, k, nk, pf); break;
    case 6: nt_tile(6, K, N, dY, W, dX, acc, k, nk, pf); break;
    case 5: nt_tile(5, K, N, dY, W, dX, acc, k, nk, pf); break;
    case 4: nt_tile(4, K, N, dY, W, dX, acc, k, nk, pf); break;
    case 3: nt_tile(3, K, N, dY, W, dX, acc, k, nk, pf); break;
    case 2: nt_tile(2, K, N, dY, W, dX, acc, k, nk, pf); break;
    default: nt_tile(1, K, N, dY, W, dX, acc, k, nk, pf); break;
    }
}

void moe_gemm_rows_nt(int64_t n, int64_t K, int64_t N, const float *dY, const float *W, float *dX,
                      int acc, const float *pf) {
    for (int64_t k = 0; k < K; k += 8) { // k tiles outside: the tile's 8 rows of W stay in L1
        const int nk = K - k < 8 ? (int)(K - k) : 8;
        const float *p = pf;
        for (int64_t r = 0; r < n; r += 8, p = NULL) {
            const int R = n - r < 8 ? (int)(n - r) : 8;
            nt_rows(R, K, N, dY + r * N, W, dX + r * K, acc, k, nk, p);
        }
    }
}

// nt: the row's final values, stored past the caches (streaming stores where 32-byte aligned):
// a freshly written gradient is not read again before the optimizer, and with many experts the
// gradients far exceed the caches, so this saves reading each line before writing it.
MOE_ALWAYS_INLINE void tn_store(float *p, __m256 v, int nt) {
    if (nt && ((uintptr_t)p & 31) == 0)
        _mm256_stream_ps(p, v);
    else
        _mm256_storeu_ps(p, v);
}

MOE_ALWAYS_INLINE void tn_row(int R, int64_t K, int64_t N, const float *X, const float *dY,
                              float *dWk, int64_t k, int64_t N32, int acc, int nt,
                              const float *pfk) {
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
        tn_store(dWk + c, a0, nt), tn_store(dWk + c + 8, a1, nt);
        tn_store(dWk + c + 16, a2, nt), tn_store(dWk + c + 24, a3, nt);
    }
}

// Rows [0, R) of the block, R in 1..8, as one pass (a switch: R is a constant in each tn_row).
static void tn_rows(int R, int64_t K, int64_t N, const float *X, const float *dY, float *dWk,
                    int64_t k, int64_t N32, int acc, int nt, const float *pfk) {
    switch (R) {
    case 8: tn_row(8, K, N, X, dY, dWk, k, N32, acc, nt, pfk); break;
    case 7: tn_row(7, K, N, X, dY, dWk, k, N32, acc, nt, pfk); break;
    case 6: tn_row(6, K, N, X, dY, dWk, k, N32, acc, nt, pfk); break;
    case 5: tn_row(5, K, N, X, dY, dWk, k, N32, acc, nt, pfk); break;
    case 4: tn_row(4, K, N, X, dY, dWk, k, N32, acc, nt, pfk); break;
    case 3: tn_row(3, K, N, X, dY, dWk, k, N32, acc, nt, pfk); break;
    case 2: tn_row(2, K, N, X, dY, dWk, k, N32, acc, nt, pfk); break;
    default: tn_row(1, K, N, X, dY, dWk, k, N32, acc, nt, pfk); break;
    }
}

void moe_gemm_rows_tn(int64_t n, int64_t K, int64_t N, const float *X, const float *dY, float *dW,
                      int acc, const float *pf) {
    const int64_t N32 = N / 32 * 32;
    for (int64_t k = 0; k < K; k++) {
        float *dWk = dW + k * N;
        const float *pfk = pf ? pf + k * N : NULL;
        int64_t r = 0; // rows in passes of up to 8: the chain stays in row order
        int a = acc;   // the first pass starts from dW (acc) or from 0, the next from its result
        for (; r < n; a = 1, pfk = NULL) {
            const int R = n - r < 8 ? (int)(n - r) : 8;
            // A fresh gradient's last pass streams past the caches (tn_store).
            tn_rows(R, K, N, X + r * K, dY + r * N, dWk, k, N32, a, !acc && r + R == n, pfk);
            r += R;
        }
        if (!a) memset(dWk, 0, (size_t)N32 * sizeof(float)); // no rows: 0 written
        for (int64_t c = N32; c < N; c++) { // the columns past the last multiple of 32
            float s = acc ? dWk[c] : 0.0f;
            for (int64_t q = 0; q < n; q++) s = fmaf(X[q * K + k], dY[q * N + c], s);
            dWk[c] = s;
        }
    }
    if (!acc) _mm_sfence(); // the streaming stores are ordered before what follows
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
