// nn-attention.c: rotary position embedding and causal grouped-query self-attention. Attention
// saves its probabilities (B, H, S, S) for backward instead of recomputing them, and runs two
// full S×S cblas_sgemm per (sequence, head) reading the heads in place through leading dimensions
// (no packing); the masked upper triangle is computed and then zeroed — at our S this is cheaper
// than the bookkeeping of a blocked causal GEMM.
#include "nn.h"

#include <cblas.h>
#include <math.h>

// ---------------------------------------------------------------- RoPE (rotate halves)

void moe_nn_rope_table(float *cos_t, float *sin_t, int64_t S, int64_t Dh, double theta) {
    MOE_ASSERT(Dh % 2 == 0);
    const int64_t half = Dh / 2;
    for (int64_t s = 0; s < S; s++)
        for (int64_t i = 0; i < half; i++) {
            double freq = pow(theta, -2.0 * (double)i / (double)Dh);
            double a = (double)s * freq;
            cos_t[s * half + i] = (float)cos(a);
            sin_t[s * half + i] = (float)sin(a);
        }
}

void moe_nn_rope_forward(float *out, const float *inp, const float *cos_t, const float *sin_t,
                         int64_t B, int64_t S, int64_t nH, int64_t Dh) {
    MOE_ASSERT(Dh % 2 == 0);
    const int64_t half = Dh / 2;
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            const float *c = cos_t + s * half, *sn = sin_t + s * half;
            for (int64_t h = 0; h < nH; h++) {
                const int64_t off = ((b * S + s) * nH + h) * Dh;
                const float *x = inp + off;
                float *y = out + off;
                for (int64_t i = 0; i < half; i++) {
                    float x0 = x[i], x1 = x[i + half];
                    y[i] = x0 * c[i] - x1 * sn[i];
                    y[i + half] = x0 * sn[i] + x1 * c[i];
                }
            }
        }
}

// The rotation is orthogonal: its backward is the rotation by −angle (the transpose).
void moe_nn_rope_backward(float *dinp, const float *dout, const float *cos_t, const float *sin_t,
                          int64_t B, int64_t S, int64_t nH, int64_t Dh) {
    MOE_ASSERT(Dh % 2 == 0);
    const int64_t half = Dh / 2;
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            const float *c = cos_t + s * half, *sn = sin_t + s * half;
            for (int64_t h = 0; h < nH; h++) {
                const int64_t off = ((b * S + s) * nH + h) * Dh;
                const float *dy = dout + off;
                float *dx = dinp + off;
                for (int64_t i = 0; i < half; i++) {
                    float d0 = dy[i], d1 = dy[i + half];
                    dx[i] += d0 * c[i] + d1 * sn[i];
                    dx[i + half] += -d0 * sn[i] + d1 * c[i];
                }
            }
        }
}

// ---------------------------------------------------------------- causal GQA attention

void moe_nn_attention_forward(float *out, float *att, const float *q, const float *k,
                              const float *v, int64_t B, int64_t S, int64_t H, int64_t Hkv,
                              int64_t Dh) {
    MOE_ASSERT(Hkv > 0 && H % Hkv == 0);
    const int64_t group = H / Hkv, ldq = H * Dh, ldk = Hkv * Dh;
    const float scale = (float)(1.0 / sqrt((double)Dh));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t g = h / group;
            const float *qb = q + b * S * ldq + h * Dh;
            const float *kb = k + b * S * ldk + g * Dh, *vb = v + b * S * ldk + g * Dh;
            float *A = att + (b * H + h) * S * S;
            float *ob = out + b * S * ldq + h * Dh;
            // A = scale · q_bh · k_bgᵀ   (S, S)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)S, (int)S, (int)Dh, scale, qb,
                        (int)ldq, kb, (int)ldk, 0.0f, A, (int)S);
            for (int64_t i = 0; i < S; i++) {
                float *row = A + i * S;
                float mx = row[0];
                for (int64_t j = 1; j <= i; j++) mx = row[j] > mx ? row[j] : mx;
                double sum = 0;
                for (int64_t j = 0; j <= i; j++) {
                    row[j] = expf(row[j] - mx);
                    sum += row[j];
                }
                const float inv = (float)(1.0 / sum);
                for (int64_t j = 0; j <= i; j++) row[j] *= inv;
                for (int64_t j = i + 1; j < S; j++) row[j] = 0.0f;
            }
            // out_bh = A · v_bg   (S, Dh)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)S, (int)Dh, (int)S, 1.0f, A,
                        (int)S, vb, (int)ldk, 0.0f, ob, (int)ldq);
        }
}

void moe_nn_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                               const float *att, const float *q, const float *k, const float *v,
                               int64_t B, int64_t S, int64_t H, int64_t Hkv, int64_t Dh) {
    MOE_ASSERT(Hkv > 0 && H % Hkv == 0);
    const int64_t group = H / Hkv, ldq = H * Dh, ldk = Hkv * Dh;
    const float scale = (float)(1.0 / sqrt((double)Dh));
    float *dA = scratch; // (S, S): dL/dA, then dL/d(pre-softmax scores)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t g = h / group;
            const float *qb = q + b * S * ldq + h * Dh;
            const float *kb = k + b * S * ldk + g * Dh, *vb = v + b * S * ldk + g * Dh;
            const float *A = att + (b * H + h) * S * S;
            const float *dob = dout + b * S * ldq + h * Dh;
            float *dqb = dq + b * S * ldq + h * Dh;
            float *dkb = dk + b * S * ldk + g * Dh, *dvb = dv + b * S * ldk + g * Dh;
            // dA = dout_bh · v_bgᵀ;  dv_bg += Aᵀ · dout_bh
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)S, (int)S, (int)Dh, 1.0f, dob,
                        (int)ldq, vb, (int)ldk, 0.0f, dA, (int)S);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)S, (int)Dh, (int)S, 1.0f, A,
                        (int)S, dob, (int)ldq, 1.0f, dvb, (int)ldk);
            // softmax backward per row: dz_ij = p_ij (dA_ij − Σ_l p_il dA_il), 0 above the diagonal
            for (int64_t i = 0; i < S; i++) {
                const float *p = A + i * S;
                float *d = dA + i * S;
                double dot = 0;
                for (int64_t j = 0; j <= i; j++) dot += (double)p[j] * d[j];
                const float fd = (float)dot;
                for (int64_t j = 0; j <= i; j++) d[j] = p[j] * (d[j] - fd);
                for (int64_t j = i + 1; j < S; j++) d[j] = 0.0f;
            }
            // scores = scale · q kᵀ:  dq_bh += scale · dz · k_bg;  dk_bg += scale · dzᵀ · q_bh
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)S, (int)Dh, (int)S, scale,
                        dA, (int)S, kb, (int)ldk, 1.0f, dqb, (int)ldq);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)S, (int)Dh, (int)S, scale, dA,
                        (int)S, qb, (int)ldq, 1.0f, dkb, (int)ldk);
        }
}
