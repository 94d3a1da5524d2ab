// lora.h: LoRA adapters of the model (docs/lora.md), internal to trainer/model: which matrices
// carry W·x + (alpha/r)·B·(A·x), their tensors in the parameter table, the frozen base (the
// gradient and Adam families hold only trainable tensors: moe_model.goff), and the hooks model.c
// and model-build.c call. The expert FFNs' adapters (routed, shared, dense FFN) run inside
// experts/ (moe_experts_params.lora_r) where the expert runs: a routed expert's A and B live with
// it on its EP rank and never travel. The attention adapters run here, factored (x·A then ·B, no
// d×d product is ever formed); the router's gate (D, E) is small, so its adapter is merged into a
// copy of the gate each forward and its gradient taken from the merged gate's.
//
// Shapes: A (n_in, r), B (r, n_out) for W (n_in, n_out); A initialised as PEFT does
// (kaiming_uniform(a=√5): uniform(±1/√n_in)), B = 0, so the model at step 0 is the base model.
#ifndef MOE_LORA_H
#define MOE_LORA_H

#include "model-impl.h"

typedef struct moe_lora moe_lora;

typedef enum { MOE_LORA_Q = 0, MOE_LORA_K, MOE_LORA_V, MOE_LORA_O, MOE_LORA_N_ATTN } moe_lora_attn;

// From cfg->lora, before the table is built: m->lora_rank, pv->lora (NULL without adapters), the
// adapter rank and scale in pv->dense_fp and pv->lp (the experts' kernels). Needs m's shape and
// pv->lp, pv->dense_fp filled.
void moe_lora_setup(moe_model *m, moe_model_priv *pv, const Moe__Config *cfg);
void moe_lora_free(moe_lora *lo); // NULL-safe

// model-build.c: adds the adapters' tensors — experts = 0: every dense one (attention, router,
// dense FFN, shared experts) at the end of the dense region; 1: the routed experts' families at
// the end of the expert region. Nothing without LoRA.
void moe_lora_build(moe_model *m, moe_builder *b, moe_model_priv *pv, int experts);
// Sets every tensor's goff and m->n_train_dense, n_train (identity without LoRA). After the table.
void moe_model_assign_grads(moe_model *m);
// Initialises t if it is an adapter (returns 1), else returns 0.
int moe_lora_init_tensor(moe_model *m, const moe_model_tensor *t, uint64_t seed);
// The adapters' activations for m->T tokens (after the table; B_local > 0 only).
void moe_lora_alloc(moe_model *m, moe_model_priv *pv);

// Attention adapter `which` of layer l: out (T, n_out) += s·(inp·A)·B, x·A saved for backward;
// backward: dinp (T, n_in) and the adapter's gradients ADDED. No-ops without that adapter.
void moe_lora_attn_forward(moe_model *m, int l, moe_lora_attn which, float *out, const float *inp);
void moe_lora_attn_backward(moe_model *m, int l, moe_lora_attn which, float *dinp,
                            const float *dout, const float *inp);
// The router adapter of MoE layer l: forward merges wg + s·A·B into the layer's gate copy (the
// one moe_lora_layer_views hands out); backward (after the layer's backward) turns the merged
// gate's gradient into dA, dB (and dWg with lora.train_router). No-ops without it.
void moe_lora_gate_forward(moe_model *m, int l);
void moe_lora_gate_backward(moe_model *m, int l);
// Adds the adapters to weight views of layer l: grads = 0 the parameters, 1 their gradients.
// MoE layer: routed and shared experts' A, B and the merged gate; dense layer: the FFN's.
void moe_lora_layer_views(const moe_model *m, int l, moe_layer_weights *w, int grads);
void moe_lora_ffn_views(const moe_model *m, int l, moe_expert_weights *w, int grads);

#endif
