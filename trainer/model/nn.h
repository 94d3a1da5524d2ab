// nn.h: the manual of the dense transformer kernels (token embedding, RMSNorm, LayerNorm, qk-norm,
// linear, RoPE, causal grouped-query attention, cross-entropy), the layout-independent
// initialisation (the optimizer is trainer/optim.h). llm.c style: free functions over raw
// pointers with explicit dimensions, outputs first; every _backward ADDS into its gradients (unless it says
// WRITTEN). Nothing here allocates: the caller sizes every buffer up front (shapes below).
// The dense FFN is moe_experts_forward/backward (experts.h) with one expert and offsets {0, T}.
//
// Dimension letters: B sequences, S sequence length, T = B·S tokens (token t = b·S + s), D model
// dim, V vocab, H query heads, Hkv kv heads (H % Hkv == 0), Dh head dim, n_in/n_out linear widths.
// Row-major everywhere; a head's slice of a row of q is q[t·H·Dh + h·Dh .. + Dh).
// Model, conventions and the recommended initialisation: docs/model.md.
#ifndef MOE_NN_H
#define MOE_NN_H

#include "moe-common.h"

#define MOE_NN_RMSNORM_EPS 1e-5f   // model.norm_eps's default (HF configs may ask for 1e-6)
#define MOE_NN_ROPE_THETA  10000.0 // RoPE base: model.rope_theta's default

// ---------------------------------------------------------------- token embedding
// out[t] = wte[tokens[t]]. tokens must be in [0, V) (MOE_ASSERT: data is validated on load).
// out (T, D) WRITTEN; tokens (T); wte (V, D).
void moe_nn_embed_forward(float *out, const int32_t *tokens, const float *wte, int64_t T, int64_t V,
                          int64_t D);
// dwte[tokens[t]] += dout[t]: dwte (V, D) ADDED (repeated tokens accumulate); dout (T, D).
void moe_nn_embed_backward(float *dwte, const float *dout, const int32_t *tokens, int64_t T,
                           int64_t D);

// ---------------------------------------------------------------- RMSNorm over the last dim
// out = inp · rstd · weight, rstd = 1/√(mean(inp²) + eps), per row.
// out (N, C) WRITTEN (may alias inp); rstd (N) WRITTEN, saved for backward; inp (N, C); weight (C).
// N rows of width C: (T, D) for the block norms; qk-norm below uses the same kernel.
void moe_nn_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                            int64_t N, int64_t C, float eps);
// dinp (N, C) ADDED; dweight (C) ADDED (NULL: frozen); dout (N, C); inp (N, C) the forward's input
// (so out must not have aliased it if backward is needed); weight (C); rstd (N) from forward.
void moe_nn_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                             const float *weight, const float *rstd, int64_t N, int64_t C);

// ---------------------------------------------------------------- LayerNorm (model.norm = layernorm)
// out = (inp − mean) · rstd · weight + bias, rstd = 1/√(var + eps) (biased variance), per row.
// out (N, C) WRITTEN (may alias inp); mean, rstd (N) WRITTEN, saved; weight, bias (C).
void moe_nn_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                              const float *weight, const float *bias, int64_t N, int64_t C,
                              float eps);
// dinp (N, C), dweight, dbias (C) ADDED (dweight/dbias NULL: frozen); dout, inp (N, C).
void moe_nn_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const float *mean,
                               const float *rstd, int64_t N, int64_t C);

// ---------------------------------------------------------------- qk-norm
// per_head (Qwen3): one RMSNorm of width Dh with weight (Dh) over every head of q (and, with its
// own weight, of k). q (T, nH·Dh) is (T·nH, Dh) in memory, so this is rmsnorm with N = T·nH,
// C = Dh: rstd is (T·nH). full (OLMoE): rmsnorm with N = T, C = nH·Dh, weight (nH·Dh), rstd (T).
// These wrappers name the per_head form; nH is H for q and Hkv for k.
void moe_nn_qknorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                           int64_t T, int64_t nH, int64_t Dh, float eps);
void moe_nn_qknorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, const float *rstd, int64_t T, int64_t nH,
                            int64_t Dh);

// ---------------------------------------------------------------- linear (cblas_sgemm)
// out = inp · w (+ b). out (T, n_out) WRITTEN; inp (T, n_in); w (n_in, n_out); b (n_out) or
// NULL. n_in/n_out: the letters I and O would clash with <complex.h>'s I, which cblas.h pulls in.
void moe_nn_linear_forward(float *out, const float *inp, const float *w, const float *b, int64_t T,
                           int64_t n_in, int64_t n_out);
// dinp (T, n_in) += dout · wᵀ; dw (n_in, n_out) += inpᵀ · dout; db (n_out) += Σ_t dout[t].
// Any of dinp, dw, db may be NULL (not wanted / frozen / no bias).
// dout (T, n_out); inp (T, n_in); w (n_in, n_out).
void moe_nn_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, int64_t T, int64_t n_in, int64_t n_out);

// The same with the weight stored transposed, w (n_out, n_in): out = inp · wᵀ (+ b). For a head
// tied to the token embedding: logits (T, V) = h (T, D) · wteᵀ with w = wte (V, D), and
// dw += doutᵀ · inp lands in dwte next to the embedding's own gradient.
void moe_nn_linear_wt_forward(float *out, const float *inp, const float *w, const float *b,
                              int64_t T, int64_t n_in, int64_t n_out);
void moe_nn_linear_wt_backward(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, int64_t T, int64_t n_in,
                               int64_t n_out);

// ---------------------------------------------------------------- RoPE
// Rotate-halves convention (GPT-NeoX / Hugging Face Llama, Mixtral, Qwen, OLMoE): within each
// head, pair (i, i + Dh/2) for i < Dh/2 is rotated by angle pos·θ^(−2i/Dh):
//   y_i = x_i cos − x_{i+Dh/2} sin,   y_{i+Dh/2} = x_i sin + x_{i+Dh/2} cos.
// pos = s, the position of the token in its sequence (0..S−1). Dh must be even.
// The table: cos_t, sin_t (S, Dh/2) WRITTEN, computed in double once at setup.
void moe_nn_rope_table(float *cos_t, float *sin_t, int64_t S, int64_t Dh, double theta);
// out (T, nH·Dh) WRITTEN (may alias inp); inp (T, nH·Dh); T = B·S; nH = H for q, Hkv for k.
void moe_nn_rope_forward(float *out, const float *inp, const float *cos_t, const float *sin_t,
                         int64_t B, int64_t S, int64_t nH, int64_t Dh);
// The inverse rotation: dinp (T, nH·Dh) ADDED (must not alias dout); dout (T, nH·Dh).
void moe_nn_rope_backward(float *dinp, const float *dout, const float *cos_t, const float *sin_t,
                          int64_t B, int64_t S, int64_t nH, int64_t Dh);

// ---------------------------------------------------------------- causal GQA attention
// For each sequence b and query head h (kv head g = h / (H/Hkv)):
//   att[b,h,i,j] = softmax_j≤i (q_i·k_j / √Dh)   (0 for j > i),   out_i = Σ_j att[b,h,i,j] v_j.
// Memory choice: the probabilities (B, H, S, S) are SAVED by forward for backward (4·B·H·S² bytes
// per layer: 1 MiB at B=16, H=4, S=64); nothing is recomputed. Per (b, h): two cblas_sgemm over
// the full S×S (the masked half is computed then zeroed; simple, and BLAS-fast at our S).
// out (T, H·Dh) WRITTEN; att (B, H, S, S) WRITTEN; q (T, H·Dh); k, v (T, Hkv·Dh).
void moe_nn_attention_forward(float *out, float *att, const float *q, const float *k,
                              const float *v, int64_t B, int64_t S, int64_t H, int64_t Hkv,
                              int64_t Dh);
// dq (T, H·Dh), dk, dv (T, Hkv·Dh) ADDED; scratch (S, S) floats; dout (T, H·Dh); att from forward;
// q, k, v the forward's inputs (after RoPE).
void moe_nn_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                               const float *att, const float *q, const float *k, const float *v,
                               int64_t B, int64_t S, int64_t H, int64_t Hkv, int64_t Dh);

// ---------------------------------------------------------------- cross-entropy
// Returns the mean over the T tokens of −log softmax(logits[t])[targets[t]] (max-subtracted, sums
// in double). If dlogits is not NULL it is WRITTEN (not added — it starts the backward pass):
//   dlogits[t] = dscale · (softmax(logits[t]) − onehot(targets[t])) / T.
// dlogits may alias logits (in place). With T_local tokens on this rank and T_global over the
// global batch, dscale = T_local / T_global makes the gradient that of the global mean loss.
// logits (T, V); targets (T) in [0, V) (MOE_ASSERT).
double moe_nn_crossentropy(float *dlogits, const float *logits, const int32_t *targets, int64_t T,
                           int64_t V, float dscale);

// ---------------------------------------------------------------- initialisation (nn-init.c)
// Layout-independent init: element i of a tensor gets a value that depends only on (seed, key,
// first + i), so a shard [first, first + n) of a tensor is the same numbers at every world size.
// Recommended stds (docs/model.md): 0.02; residual outputs (Wo, W2) 0.02/√(2L); norms 1, biases 0.
// Key of a tensor: its name ("wq", "experts.w1", …), layer (−1: none), global expert id (−1: none).
uint64_t moe_nn_init_key(const char *name, int32_t layer, int32_t expert);
// w (n) WRITTEN with normal(0, std) draws number first .. first + n − 1 of stream (seed, key).
void moe_nn_init_normal(float *w, int64_t n, double std, uint64_t seed, uint64_t key,
                        int64_t first);
void moe_nn_init_const(float *w, int64_t n, float value); // w (n) WRITTEN

#endif
