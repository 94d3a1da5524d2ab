// experts.h: the manual of the experts module — expert FFNs (GELU, SwiGLU) computed as one GEMM
// pair/triple per expert over contiguous blocks of packed rows, their backward, shared experts,
// and the one-rank MoE layer (router → permute → experts → unpermute/combine). The layer owns a
// workspace sized at create time for T_max tokens: nothing is allocated in forward or backward.
//
// Dimension letters: T tokens, D model dim, F expert hidden width, Fs shared-expert width,
// E experts (E_local: experts held by this call), K top-k, R packed rows (kept pairs).
// Row-major everywhere. Expert FFN (reference forms, docs/routing.md):
//   GELU:   y = gelu(x·W1 + b1)·W2 + b2, gelu(u) = 0.5u(1 + tanh(√(2/π)(u + 0.044715u³)))
//   SwiGLU: y = (silu(x·W1 + b1) ⊙ (x·W3 + b3))·W2 + b2, silu(u) = u·sigmoid(u)
//   biases only when ffn_bias.
// Layer: y_t = Σ_{kept (t,e)} w_te·FFN_e(x_t) + Σ_s g_t·FFN^shared_s(x_t), g_t = sigmoid(x_t·ws)
// if shared_expert_gate else 1. Backward ADDS into dx and every gradient; the router receives
// dL/dw_te = dy_t·FFN_e(x_t) plus the aux and z loss gradients with coefficient 1.
//
// The pieces the expert-parallel layer (trainer/ep/ep-layer.h) builds on: moe_router_forward
// (the plan), moe_experts_forward / _backward (per local expert block) and the shared experts;
// its permute and combine are comm/'s pack and unpack around the exchange. The one-rank layer
// below is the plain reference it is tested against.
#ifndef MOE_EXPERTS_H
#define MOE_EXPERTS_H

#include "moe-common.h"
#include "router.h"

typedef enum { MOE_ACT_SWIGLU = 0, MOE_ACT_GELU = 1 } moe_activation; // = proto enum values

// A family of experts of the same shape.
typedef struct {
    int64_t D;     // model dim
    int64_t F;     // hidden width
    int n_experts; // experts held (E_local, or n_shared)
    moe_activation act;
    int bias; // b1, (b3), b2 present
    // LoRA (docs/lora.md): every matrix W of the family gets W·x + lora_scale·B·(A·x) with
    // A (n_in, lora_r), B (lora_r, n_out); 0: no adapters (the weights' lora_* are then unread).
    int64_t lora_r;
    float lora_scale; // alpha / r
} moe_experts_params;

// Weights of a family (also used for their gradients, same shapes). NULL where absent.
typedef struct {
    float *w1; // (E_local, D, F)
    float *b1; // (E_local, F)      bias only
    float *w3; // (E_local, D, F)   SwiGLU only
    float *b3; // (E_local, F)      SwiGLU and bias only
    float *w2; // (E_local, F, D)
    float *b2; // (E_local, D)      bias only
    // Views only, optional: W1 and W2 of the expert the caller will run next (after the last
    // expert of this call), prefetched while this call's last matrix streams. NULL: none.
    const float *next_w1, *next_w2;
    // LoRA adapters (params lora_r > 0), r = lora_r; NULL without adapters.
    float *la1, *lb1; // (E_local, D, r), (E_local, r, F)
    float *la3, *lb3; // (E_local, D, r), (E_local, r, F)  SwiGLU only
    float *la2, *lb2; // (E_local, F, r), (E_local, r, D)
} moe_expert_weights;

// Floats per packed row the forward saves for backward (h1, [h3,] a: 2F GELU, 3F SwiGLU; with
// LoRA also x·A1, [x·A3,] a·A2: 2r or 3r) and the backward needs as scratch (dh1, [dh3]: F or
// 2F; with LoRA r more).
int64_t moe_experts_save_per_row(const moe_experts_params *p);
int64_t moe_experts_scratch_per_row(const moe_experts_params *p);

// Forward of all experts of the family over packed rows. Expert e's rows are
// [offsets[e], offsets[e+1]) (an empty block is skipped).
//   out (R, D) written (no combine weight applied); save (R, save_per_row) written;
//   xin (R, D); offsets (E_local+1), R = offsets[E_local].
void moe_experts_forward(const moe_experts_params *p, float *out, float *save,
                         const moe_expert_weights *w, const int64_t *offsets, const float *xin);

// Backward: dxin (R, D) WRITTEN (a packed scratch buffer, not an accumulator); grads ADDED;
// scratch (R, scratch_per_row). A NULL gradient (w1, b1, ..., lb2) is frozen: not computed. dout (R, D) is dL/d out (combine weight already applied).
void moe_experts_backward(const moe_experts_params *p, float *dxin, moe_expert_weights *grads,
                          float *scratch, const moe_expert_weights *w, const int64_t *offsets,
                          const float *xin, const float *save, const float *dout);

// moe_experts_backward, except that the gradients of expert e (its weights and biases) are
// WRITTEN, not added, where fresh[e] is 1 (fresh NULL: added everywhere; an expert without rows
// is skipped either way). The result equals adding into zeroed gradients, bit for bit: the
// expert-parallel layer uses it to leave the zeroing of its experts' gradients to the backward.
void moe_experts_backward_fresh(const moe_experts_params *p, const uint8_t *fresh, float *dxin,
                                moe_expert_weights *grads, float *scratch,
                                const moe_expert_weights *w, const int64_t *offsets,
                                const float *xin, const float *save, const float *dout);

// LoRA of one matrix W (n_in, n_out) over n rows: A (n_in, r), B (r, n_out), scale s (alpha/r).
// Forward: u = x·A (n, r) WRITTEN (save it), y (n, n_out) += s·u·B.
// Backward of y: v (n, r) scratch WRITTEN = dy·Bᵀ; dx (n, n_in) += s·v·Aᵀ (dx NULL: not wanted);
// dB += s·uᵀ·dy and dA += s·xᵀ·v, ADDED (acc 1) or WRITTEN (acc 0); NULL: frozen.
// The experts' adapters above and the model's attention adapters (trainer/model/lora.h) use them.
void moe_lora_forward(int64_t n, int64_t n_in, int64_t n_out, int64_t r, float s, const float *x,
                      const float *A, const float *B, float *u, float *y);
void moe_lora_backward(int64_t n, int64_t n_in, int64_t n_out, int64_t r, float s, const float *x,
                       const float *A, const float *B, const float *u, const float *dy, float *v,
                       float *dx, float *dA, float *dB, int acc);

// View of a family starting at expert `first` (the same pointers shifted; NULL stays NULL):
// expert `first` becomes expert 0 of the view. D and F are the family's dims, r its LoRA rank.
moe_expert_weights moe_experts_slice(const moe_expert_weights *w, int64_t D, int64_t F, int64_t r,
                                     int64_t first);

// -------------------------------------------------------------------------- small-row GEMMs
// With many small experts a block has a few rows (1024 tokens, top-2 over 256 experts: 8 rows).
// The experts' forward GEMMs of blocks of at most MOE_GEMM_ROWS_NN_MAX rows, their dX GEMMs of
// at most MOE_GEMM_ROWS_NT_MAX rows and their dW GEMMs of at most MOE_GEMM_ROWS_TN_MAX rows go
// through these kernels instead of cblas (above those sizes cblas was faster here, measured per
// block size over 128 experts' matrices streamed from memory): one pass over
// the weight matrix with the block's rows in registers, no packing, and a prefetch of the next
// call's matrix. Contract: an element of Y or dW is one chain of fused multiply-adds in
// increasing k (resp. row) order starting from the value there (or 0). An element (i, k) of dX is
// dY row i · W row k as 8 lane chains (column c in lane c mod 8, increasing c), the lanes summed
// ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)), the columns past the last multiple of 8 chained after
// that, the result added to dX (acc) or stored. So a row's result never depends on n or on the
// other rows of its block.
// A fresh dW (acc 0) is written with streaming stores (it is not read before the optimizer). pf: K·N floats to prefetch (the matrix the next
// call reads), or NULL. Shapes row-major. Built only with AVX2 and FMA (-march=native on such a
// machine); otherwise moe_gemm_rows_enabled() is 0 and the functions are cblas calls.
#define MOE_GEMM_ROWS_NN_MAX  64
#define MOE_GEMM_ROWS_NT_MAX  48
#define MOE_GEMM_ROWS_TN_MAX  16
int moe_gemm_rows_enabled(void);
// For benchmarks and tests (process-wide, not thread-safe): 0 sends every block to cblas, the
// reference; 1 restores the default. No effect in a build without the kernels.
void moe_gemm_rows_enable(int on);
// Y (n, N) = [Y +] X (n, K) · W (K, N)            acc: add to Y (1) or overwrite it (0)
void moe_gemm_rows_nn(int64_t n, int64_t K, int64_t N, const float *X, const float *W, float *Y,
                      int acc, const float *pf);
// dX (n, K) = [dX +] dY (n, N) · W (K, N)ᵀ
void moe_gemm_rows_nt(int64_t n, int64_t K, int64_t N, const float *dY, const float *W, float *dX,
                      int acc, const float *pf);
// dW (K, N) = [dW +] X (n, K)ᵀ · dY (n, N)   (n = 0 with acc 0 writes zeros)
void moe_gemm_rows_tn(int64_t n, int64_t K, int64_t N, const float *X, const float *dY, float *dW,
                      int acc, const float *pf);

// Activation and its derivative (exposed for tests): a = act(h) elementwise over n values.
float moe_gelu(float u);
float moe_gelu_grad(float u);
float moe_silu(float u);
float moe_silu_grad(float u);

// ------------------------------------------------------------------------------ shared experts
// Every token through all n_experts experts of a family sp (width Fs):
//   S_t = Σ_s FFN_s(x_t), y_t += g_t·S_t, g_t = sigmoid(x_t·ws) when ws is given, else 1.
// Backward: d(S) = g_t·dy_t; gate dz_t = (dy_t·S_t)·g_t(1−g_t), dws += dz_t·x_t, dx_t += dz_t·ws.
// The caller owns the buffers (allocated once for T_max tokens, e.g. by moe_shared_buffers_alloc):
// forward and backward never allocate. One backward per forward: it consumes `out`.
typedef struct {
    int64_t T_max;  // tokens the buffers are sized for
    float *save;    // (n_shared, T_max, save_per_row) forward saves, read by backward
    float *out;     // (T_max, D) S, ungated: forward → backward; then backward's dx scratch
    float *gate;    // (T_max) g: forward → backward
    float *tmp;     // (T_max, D) scratch (forward: one expert's output; backward: g·dy)
    float *scratch; // (T_max, scratch_per_row) backward scratch
} moe_shared_buffers;

// Allocates every buffer (64-byte aligned) for a family with n_experts > 0; free with
// moe_shared_buffers_free (NULL-safe, leaves the struct zeroed).
void moe_shared_buffers_alloc(moe_shared_buffers *b, const moe_experts_params *sp, int64_t T_max);
void moe_shared_buffers_free(moe_shared_buffers *b);

// Forward over T <= T_max tokens: y (T, D) ADDED; x (T, D) must be passed unchanged to the
// backward; w the family (n_experts, ...); ws (D) gate or NULL (g = 1). T = 0 does nothing.
void moe_shared_forward(const moe_experts_params *sp, moe_shared_buffers *b, float *y,
                        const moe_expert_weights *w, const float *ws, const float *x, int64_t T);
// Backward of the last forward (same x, w, ws, T): dx (T, D), grads and dws (D) ADDED; dws is
// NULL when ws is, or when the gate is frozen. dy (T, D).
void moe_shared_backward(const moe_experts_params *sp, moe_shared_buffers *b, float *dx,
                         moe_expert_weights *grads, float *dws, const moe_expert_weights *w,
                         const float *ws, const float *x, const float *dy, int64_t T);

// ------------------------------------------------------------------------------ the layer

typedef struct {
    moe_router_params router; // D, E, K and the routing strategy
    int64_t F;                // routed expert width
    moe_activation act;       // of routed and shared experts
    int ffn_bias;             // biases in routed and shared experts
    int n_shared;             // shared experts (0: none)
    int64_t Fs;               // shared expert width
    int shared_gate;          // sigmoid(x·ws) scales the shared output
    int64_t T_max;            // workspace is sized for up to this many tokens per call
    // LoRA on the routed / shared experts (moe_experts_params.lora_r): rank (0: none), scale
    // alpha/r, and which families carry adapters.
    int64_t lora_r;
    float lora_scale;
    int lora_experts, lora_shared;
} moe_layer_params;

// Fills `out` from the schema (model.d_model, n_experts, top_k, expert_d_ff (0: d_ff, 0: 4·D),
// activation, ffn_bias, n_shared_experts, shared_expert_d_ff (0: F), shared_expert_gate,
// router_bias, and the router message; router.n_group <= 1 becomes 0, router.node_limited is
// copied unresolved: the caller fills n_group with moe_router_node_groups). Fails with a message
// naming the field if n_experts < 1, top_k not in 1..n_experts, a size is not positive,
// router.n_group < 0, or router.scoring, router.strategy, router.group_score or model.activation
// holds a number that is not a value of its enum.
struct Moe__ModelConfig;
struct Moe__RouterConfig;
moe_status moe_layer_params_from_config(moe_layer_params *out, const struct Moe__ModelConfig *m,
                                        const struct Moe__RouterConfig *r, int64_t T_max);
// router.strategy of r (NULL: the default, token choice) as the C enum; MOE_EINVAL naming the
// field and the value for a number that is not a strategy (never a silent token choice).
moe_status moe_layer_strategy_from_config(const struct Moe__RouterConfig *r,
                                          moe_route_strategy *out);

// Layer weights (and, with the same struct, their gradients).
typedef struct {
    float *wg;                  // (D, E) gate
    float *bg;                  // (E) gate bias or NULL
    moe_expert_weights experts; // E routed experts, width F
    moe_expert_weights shared;  // n_shared experts, width Fs (all NULL when none)
    float *ws;                  // (D) shared-expert gate or NULL
} moe_layer_weights;

// One zeroed 64-byte-aligned block holding every tensor the params call for; free with
// moe_layer_weights_free. Returns the number of floats.
int64_t moe_layer_weights_alloc(const moe_layer_params *p, moe_layer_weights *w);
void moe_layer_weights_free(moe_layer_weights *w);
// Deterministic init for tests and benchmarks: uniform(-1/√fan_in, 1/√fan_in), biases too.
void moe_layer_weights_init(const moe_layer_params *p, moe_layer_weights *w, uint64_t seed);
// Views of the family params.
moe_experts_params moe_layer_routed_params(const moe_layer_params *p);
moe_experts_params moe_layer_shared_params(const moe_layer_params *p);

typedef struct moe_layer moe_layer; // params + plan + workspace

moe_status moe_layer_create(const moe_layer_params *p, moe_layer **out);
void moe_layer_free(moe_layer *L);

// Forward: y (T, D) WRITTEN; stats may be NULL. x (T, D) must stay alive and unchanged until the
// matching backward (it is not copied). balance_bias (E) or NULL. T <= T_max (MOE_ASSERT).
void moe_layer_forward(moe_layer *L, float *y, moe_route_stats *stats, const float *x, int64_t T,
                       const moe_layer_weights *w, const float *balance_bias,
                       const moe_route_opts *opts);

// Backward of the last forward: dx (T, D) and every gradient in grads ADDED. dy (T, D).
void moe_layer_backward(moe_layer *L, float *dx, moe_layer_weights *grads, const float *dy,
                        const moe_layer_weights *w);

// The routing plan of the last forward (read-only view, owned by the layer).
const moe_route_plan *moe_layer_plan(const moe_layer *L);

// Wall-clock seconds of the phases of the last forward and backward (a few clock reads per call).
typedef struct {
    double router;  // gate GEMM, scoring, selection, plan (backward: router backward)
    double permute; // gather into expert order (backward: dL/dw, w·dy and the dx scatter-add)
    double experts; // grouped expert FFNs (GEMMs + activation)
    double combine; // weighted unpermute into y (backward: included in permute)
    double shared;  // shared experts and their gate
} moe_layer_phases;
typedef struct {
    moe_layer_phases fwd, bwd;
} moe_layer_timing;
const moe_layer_timing *moe_layer_timings(const moe_layer *L);

#endif
