// gemm-rows.c: GEMMs for expert blocks of few rows (experts.h, "Small-row GEMMs").
//
// With many small experts each expert's block has a handful of rows (1024 tokens × top-2 over
// 256 experts: 8). A general GEMM is built for big blocks: OpenBLAS packs the weight matrix for
// every call, and its A^T·B with 8-row inner dimension (the weight gradient) reads and writes the
// gradient matrix at ~11-17 GFLOP/s here. These kernels stream each matrix once, straight from
// memory, with the rows of the block in registers, and prefetch the matrix the next call will
// read while they stream this one (in address order: the order the memory serves fastest).
//
// Summation order (the kernels' contract, relied on by the layout tests): every element of Y and
// dW is one chain of fused multiply-adds in increasing k (resp. row) order, starting from the
// value already there. An element of dX is a row of dY times a row of W: eight lane chains over
// the columns (c mod 8), reduced by a fixed tree, the columns past the last multiple of 8 after
// it, then added to the value there. None of them depends on n or on which rows share a block.
#include "experts.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#define MOE_PF(p)         __builtin_prefetch((p), 0, 3)
#define MOE_ALWAYS_INLINE static inline __attribute__((always_inline))
// The value is loaded into a register here, once: the compiler may not fold its load into every
// instruction that uses it (it would, and each fold is another load).
#define MOE_IN_REG(v)     __asm__("" : "+x"(v))

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
        if (pf) MOE_PF(pf + j * K + k * 16);
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

// Lane q of the result: the 8 lanes of v[q] summed as ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)).
MOE_ALWAYS_INLINE __m128 hsum4(__m256 v0, __m256 v1, __m256 v2, __m256 v3) {
    const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(v0, v1), _mm256_hadd_ps(v2, v3));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// dX rows [0, R) (R <= 4), columns [k, k + Kb) (Kb <= 3): element (i, k+q) is dY row i · W row
// k+q, summed over the columns c in 8 lanes (lane l: c ≡ l mod 8, a fused multiply-add chain in
// increasing c), the lanes reduced by hsum4's tree, the columns past the last multiple of 8
// added after it in increasing order, then added to dX (acc) or stored. Both operands are read
// along their rows: no transposition, and each loaded W vector serves R rows.
MOE_ALWAYS_INLINE void nt_tile(int R, int Kb, int64_t K, int64_t N, const float *dY,
                               const float *W, float *dX, int acc, int64_t k, const float *pf) {
    __m256 a[4][3];
    const int64_t N8 = N / 8 * 8;
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 3
        for (int q = 0; q < 3; q++) a[i][q] = _mm256_setzero_ps();
    const float *w = W + k * N;
    for (int64_t c = 0; c < N8; c += 8) {
        if (pf && (c & 15) == 0)
#pragma GCC unroll 3
            for (int q = 0; q < Kb; q++) MOE_PF(pf + (k + q) * N + c);
        __m256 wv[3];
#pragma GCC unroll 3
        for (int q = 0; q < Kb; q++) {
            wv[q] = _mm256_loadu_ps(w + q * N + c);
            MOE_IN_REG(wv[q]);
        }
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            __m256 d = _mm256_loadu_ps(dY + i * N + c);
            MOE_IN_REG(d);
#pragma GCC unroll 3
            for (int q = 0; q < Kb; q++) a[i][q] = _mm256_fmadd_ps(d, wv[q], a[i][q]);
        }
    }
#pragma GCC unroll 3
    for (int q = 0; q < Kb; q++) {
        float s[4];
        _mm_storeu_ps(s, hsum4(a[0][q], a[1][q], a[2][q], a[3][q]));
        for (int i = 0; i < R; i++) {
            float v = s[i];
            for (int64_t c = N8; c < N; c++) v = fmaf(dY[i * N + c], w[q * N + c], v);
            float *o = dX + i * K + k + q;
            *o = acc ? *o + v : v;
        }
    }
}

// Rows [0, R) × columns [k, k + Kb) of dX, R in 1..4, Kb in 1..3 (constants in each nt_tile).
static void nt_block(int R, int Kb, int64_t K, int64_t N, const float *dY, const float *W,
                     float *dX, int acc, int64_t k, const float *pf) {
#define MOE_NT(r, kb)                                                                              \
    case (r) * 4 + (kb): nt_tile(r, kb, K, N, dY, W, dX, acc, k, pf); break
    switch (R * 4 + Kb) {
        MOE_NT(4, 3); MOE_NT(4, 2); MOE_NT(4, 1);
        MOE_NT(3, 3); MOE_NT(3, 2); MOE_NT(3, 1);
        MOE_NT(2, 3); MOE_NT(2, 2); MOE_NT(2, 1);
        MOE_NT(1, 3); MOE_NT(1, 2);
        default: nt_tile(1, 1, K, N, dY, W, dX, acc, k, pf); break;
    }
#undef MOE_NT
}

void moe_gemm_rows_nt(int64_t n, int64_t K, int64_t N, const float *dY, const float *W, float *dX,
                      int acc, const float *pf) {
    for (int64_t k = 0; k < K; k += 3) { // 3 rows of W at a time, each vector used by 4 rows of dY
        const int Kb = K - k < 3 ? (int)(K - k) : 3;
        const float *p = pf;
        for (int64_t r = 0; r < n; r += 4, p = NULL) {
            const int R = n - r < 4 ? (int)(n - r) : 4;
            nt_block(R, Kb, K, N, dY + r * N, W, dX + r * K, acc, k, p);
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
