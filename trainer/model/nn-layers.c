// nn-layers.c: the per-token dense kernels — token embedding, RMSNorm (also the qk-norm),
// LayerNorm and the linear layer. Plain loops where they are memory-bound, cblas_sgemm for the linear layer; row
// statistics (mean of squares, the RMSNorm backward dot) are summed in double.
#include "nn.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

// ---------------------------------------------------------------- embedding

void moe_nn_embed_forward(float *out, const int32_t *tokens, const float *wte, int64_t T, int64_t V,
                          int64_t D) {
    for (int64_t t = 0; t < T; t++) {
        MOE_ASSERT(tokens[t] >= 0 && tokens[t] < V);
        memcpy(out + t * D, wte + (int64_t)tokens[t] * D, (size_t)D * sizeof(float));
    }
}

void moe_nn_embed_backward(float *dwte, const float *dout, const int32_t *tokens, int64_t T,
                           int64_t D) {
    for (int64_t t = 0; t < T; t++) {
        float *dw = dwte + (int64_t)tokens[t] * D;
        const float *g = dout + t * D;
        for (int64_t d = 0; d < D; d++) dw[d] += g[d];
    }
}

// ---------------------------------------------------------------- RMSNorm

void moe_nn_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                            int64_t N, int64_t C, float eps) {
    for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * C;
        float *y = out + n * C;
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)x[c] * x[c];
        float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        for (int64_t c = 0; c < C; c++) y[c] = x[c] * r * weight[c];
        rstd[n] = r;
    }
}

// y_c = w_c x_c r with r = (Σx²/C + eps)^(-1/2), so ∂r/∂x_j = −r³ x_j / C and
// dx_j = r (w_j dy_j − x_j r² (Σ_c dy_c w_c x_c) / C);  dw_c += dy_c x_c r.
void moe_nn_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                             const float *weight, const float *rstd, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * C, *dy = dout + n * C;
        float *dx = dinp + n * C;
        const float r = rstd[n];
        double dot = 0;
        for (int64_t c = 0; c < C; c++) dot += (double)dy[c] * weight[c] * x[c];
        const float k = (float)(dot * (double)r * r / (double)C);
        for (int64_t c = 0; c < C; c++) dx[c] += r * (weight[c] * dy[c] - x[c] * k);
        if (dweight)
            for (int64_t c = 0; c < C; c++) dweight[c] += dy[c] * x[c] * r;
    }
}

// ---------------------------------------------------------------- LayerNorm

void moe_nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                              const float *weight, const float *bias, int64_t N, int64_t C,
                              float eps) {
    for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * C;
        float *y = out + n * C;
        double s = 0, ss = 0;
        for (int64_t c = 0; c < C; c++) s += x[c];
        const double mu = s / (double)C;
        for (int64_t c = 0; c < C; c++) ss += ((double)x[c] - mu) * ((double)x[c] - mu);
        const float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps)), m = (float)mu;
        for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) * r * weight[c] + bias[c];
        mean[n] = m;
        rstd[n] = r;
    }
}

// With n_c = (x_c − μ) r and g_c = dy_c w_c: dx_c = r (g_c − mean(g) − n_c · mean(g·n)).
void moe_nn_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const float *mean,
                               const float *rstd, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) {
        const float *x = inp + n * C, *dy = dout + n * C;
        float *dx = dinp + n * C;
        const float m = mean[n], r = rstd[n];
        double sg = 0, sgn = 0;
        for (int64_t c = 0; c < C; c++) {
            const double g = (double)dy[c] * weight[c];
            sg += g;
            sgn += g * (double)((x[c] - m) * r);
        }
        const float mg = (float)(sg / (double)C), mgn = (float)(sgn / (double)C);
        for (int64_t c = 0; c < C; c++) {
            const float nc = (x[c] - m) * r;
            dx[c] += r * (dy[c] * weight[c] - mg - nc * mgn);
            if (dweight) dweight[c] += dy[c] * nc;
            if (dbias) dbias[c] += dy[c];
        }
    }
}

void moe_nn_qknorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                           int64_t T, int64_t nH, int64_t Dh, float eps) {
    moe_nn_rmsnorm_forward(out, rstd, inp, weight, T * nH, Dh, eps);
}

void moe_nn_qknorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, const float *rstd, int64_t T, int64_t nH,
                            int64_t Dh) {
    moe_nn_rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, T * nH, Dh);
}

// ---------------------------------------------------------------- linear

// Bias rows first, then one GEMM with beta = 1 (or beta = 0 without bias).
static void linear_forward(float *out, const float *inp, const float *w, const float *b, int64_t T,
                           int64_t n_in, int64_t n_out, int transw) {
    if (T <= 0 || n_out <= 0) return;
    float beta = 0.0f;
    if (b) {
        for (int64_t t = 0; t < T; t++) memcpy(out + t * n_out, b, (size_t)n_out * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transw ? CblasTrans : CblasNoTrans, (int)T, (int)n_out,
                (int)n_in, 1.0f, inp, (int)n_in, w, transw ? (int)n_in : (int)n_out, beta, out,
                (int)n_out);
}

static void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, int64_t T, int64_t n_in, int64_t n_out, int transw) {
    if (T <= 0 || n_out <= 0 || n_in <= 0) return;
    if (dinp && !transw) // (T, n_out)·(n_in, n_out)ᵀ
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)n_in, (int)n_out, 1.0f,
                    dout, (int)n_out, w, (int)n_out, 1.0f, dinp, (int)n_in);
    if (dinp && transw) // (T, n_out)·(n_out, n_in)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)n_in, (int)n_out, 1.0f,
                    dout, (int)n_out, w, (int)n_in, 1.0f, dinp, (int)n_in);
    if (dw && !transw) // (T, n_in)ᵀ·(T, n_out)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n_in, (int)n_out, (int)T, 1.0f,
                    inp, (int)n_in, dout, (int)n_out, 1.0f, dw, (int)n_out);
    if (dw && transw) // (T, n_out)ᵀ·(T, n_in)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n_out, (int)n_in, (int)T, 1.0f,
                    dout, (int)n_out, inp, (int)n_in, 1.0f, dw, (int)n_in);
    if (db)
        for (int64_t t = 0; t < T; t++)
            for (int64_t o = 0; o < n_out; o++) db[o] += dout[t * n_out + o];
}

void moe_nn_linear_forward(float *out, const float *inp, const float *w, const float *b, int64_t T,
                           int64_t n_in, int64_t n_out) {
    linear_forward(out, inp, w, b, T, n_in, n_out, 0);
}

void moe_nn_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, int64_t T, int64_t n_in, int64_t n_out) {
    linear_backward(dinp, dw, db, dout, inp, w, T, n_in, n_out, 0);
}

void moe_nn_linear_wt_forward(float *out, const float *inp, const float *w, const float *b,
                              int64_t T, int64_t n_in, int64_t n_out) {
    linear_forward(out, inp, w, b, T, n_in, n_out, 1);
}

void moe_nn_linear_wt_backward(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, int64_t T, int64_t n_in,
                               int64_t n_out) {
    linear_backward(dinp, dw, db, dout, inp, w, T, n_in, n_out, 1);
}
