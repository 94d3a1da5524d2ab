// upcycle.h: the manual of upcycling (trainer/upcycle.c) — an MoE checkpoint made from a dense
// one whose FFNs become the experts (Komatsuzaki et al. 2022, "Sparse Upcycling"; fine-grained
// upcycling splits each FFN into g narrower experts). docs/upcycling.md is the long form.
//
// The MoE model is the dense config with model.n_experts = E, top_k = k, expert_d_ff = F/g
// (F = the dense d_ff) and a token-choice softmax router with renormalised weights scaled by
// routed_scaling = g, dropless; then the caller's --set overrides. Every tensor the two models
// share (embeddings, attention, norms, head, FFNs of layers that stay dense) is copied. Expert
// e of an MoE layer holds slice j = e mod g of that layer's dense FFN: hidden units
// [j·F/g, (j+1)·F/g) — the columns of W1 and W3 (and b1, b3), the rows of W2 — and b2/g, so the
// g slices of one copy sum to the dense FFN. With --noise s each expert matrix gets
// s·rms(slice)·N(0, 1) added, a draw per (layer, expert, tensor, element) from the seed.
//
// Function preservation (noise 0, dropless, k a multiple of g): g = 1 — every expert is the
// dense FFN and the renormalised weights sum to 1, so any router gives the dense output (the
// router keeps its fresh random init); g > 1 — the router starts at zero, every probability is
// 1/E, ties go to the lower index, so every token takes experts 0..k-1: k/g copies of each
// slice at weight g/k each, the dense output again. Tested to rounding (test_upcycle).
// Optimizer state, balancing biases and the step start at zero.
#ifndef MOE_UPCYCLE_H
#define MOE_UPCYCLE_H

#include "model.h"
#include "moe-common.h"
#include "moe.pb-c.h"

typedef struct {
    int experts;     // E >= 1, a multiple of granularity
    int top_k;       // k, 1..E, a multiple of granularity; 0: granularity
    int granularity; // g >= 1, divides the dense d_ff
    double noise;    // s >= 0
    uint64_t seed;   // noise and router init; 0: the dense config's train.seed
} moe_upcycle_params;

// The MoE config for the dense config `dense` (copied; refused, MOE_EINVAL naming the field, when
// it already has experts, when g does not divide d_ff or E, when k is not a multiple of g or
// exceeds E, when a --set asks for shared experts), sets applied last, validated at world 0.
moe_status moe_upcycle_config(const Moe__Config *dense, const moe_upcycle_params *p,
                              const char *const *sets, int n_sets, Moe__Config **out);

// Fills mm (parameter table of the upcycled config, every expert local: one process) from dm
// (the dense model). MOE_EINVAL when mm has a tensor neither copied nor a router's.
moe_status moe_upcycle_fill(const moe_model *dm, moe_model *mm, const moe_upcycle_params *p);

// The command: loads the dense checkpoint `where` (any layout), writes OUT/checkpoints/
// step_00000000 (world 1, EP 1: loads at any layout) and OUT/config.json (the MoE config with
// out_dir = OUT), so `moe train OUT/config.json --resume latest` trains it. Refuses an OUT that
// already holds a checkpoint or config.json (MOE_EUSAGE). One process; nothing is left half
// written (the checkpoint is atomic, config.json is written after it through a temporary).
moe_status moe_upcycle_run(const char *where, const char *out_dir, const moe_upcycle_params *p,
                           const char *const *sets, int n_sets, char *written, size_t cap);

#endif
