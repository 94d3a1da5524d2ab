// interop.h: the manual of the interop room — moe checkpoints to and from Hugging Face model
// directories (config.json + model.safetensors, or shards + model.safetensors.index.json) for
// the MoE architectures transformers has a class for (docs/interop.md):
//   Mixtral    MixtralForCausalLM    no biases, no shared experts, softmax top-k renormalised
//   Qwen2-MoE  Qwen2MoeForCausalLM   q/k/v biases, one shared expert with its sigmoid gate
//   Qwen3-MoE  Qwen3MoeForCausalLM   per-head q/k RMSNorm, q/k/v/o biases (attention_bias) or none
//   OLMoE      OlmoeForCausalLM      q/k RMSNorm over the whole projections, q/k/v/o biases or none
// The map (interop/hf-map.c) is one table per architecture of (HF tensor, moe tensor(s), layout
// op); export and import run the same ops in the two directions, so a round trip is exact.
// Layouts: moe stores linear weights (in, out), nn.Linear (out, in): every matrix is transposed.
// RoPE needs no permutation: moe rotates halves (x[i], x[i + Dh/2]) as HF's rotate_half does.
// Uses hf/ (safetensors), trainer/ (the model's parameter table, checkpoints), params/ (the
// config.json reader that import shares with `moe params`).
#ifndef MOE_INTEROP_H
#define MOE_INTEROP_H

#include "hf.h"
#include "model.h"
#include "moe-common.h"
#include "moe.pb-c.h"

typedef enum {
    MOE_HF_MIXTRAL = 0,
    MOE_HF_QWEN2_MOE,
    MOE_HF_QWEN3_MOE,
    MOE_HF_OLMOE,
    MOE_HF_N_ARCH // the number of classes (not one)
} moe_hf_arch;
const char *moe_hf_arch_class(moe_hf_arch a); // "MixtralForCausalLM", ...
const char *moe_hf_arch_type(moe_hf_arch a);  // model_type: "mixtral", "qwen2_moe", "qwen3_moe",
                                              // "olmoe"

// The architecture a moe config exports as, or MOE_EINVAL naming the field HF's class cannot
// express (sigmoid scoring, expert choice, capacity, aux-free bias, groups, routed scaling,
// learned positions, gelu, biases or shared experts the class lacks, dense layers in Mixtral,
// layernorm, ...). cfg must have passed moe_model_check.
moe_status moe_hf_arch_of(const Moe__Config *cfg, moe_hf_arch *out);

// ---------------------------------------------------------------- the name map
typedef enum {
    MOE_HF_COPY = 0, // same layout (embeddings, norms, the shared gate (D) as (1, D))
    MOE_HF_T,        // moe (a, b) <-> HF (b, a)
    MOE_HF_CAT_T0,   // n moe (D, F) blocks <-> HF (n·F, D): shared gate/up projections
    MOE_HF_CAT_T1,   // n moe (F, D) blocks <-> HF (D, n·F): shared down projection
    MOE_HF_ZERO,     // no moe tensor: HF's class needs it, exported as zeros (Qwen2-MoE q/k/v
                     // biases of a model without them, config.json saying qkv_bias: true);
                     // import skips it (config.json's qkv_bias false: such a tensor in the file
                     // is refused as unexpected)
} moe_hf_op;

typedef struct {
    char name[96];    // HF name, e.g. "model.layers.0.block_sparse_moe.experts.3.w1.weight"
    int ndim;         // 1 or 2
    int64_t shape[2]; // HF shape
    int src;          // first moe tensor (index into m->tensors); -1 for MOE_HF_ZERO
    int n_src;        // consecutive moe tensors (shared experts: n_shared; else 1)
    moe_hf_op op;
} moe_hf_entry;

// The HF tensors of model m (built at world 1, every expert local) for architecture a, in the
// order transformers' modules hold them. *out (free with free()), *n entries.
moe_status moe_hf_map(const moe_model *m, moe_hf_arch a, moe_hf_entry **out, int *n);
// Moves one tensor: to_hf = 1 fills hf (the entry's numel floats) from m->params, 0 writes
// m->params from hf. The two directions are exact inverses.
void moe_hf_move(moe_model *m, const moe_hf_entry *e, float *hf, int to_hf);

// ---------------------------------------------------------------- export
typedef struct {
    moe_st_dtype dtype;      // MOE_ST_F32 or MOE_ST_BF16
    int64_t max_shard_bytes; // <= 0: one file
} moe_hf_export_opts;
// `moe export CHECKPOINT OUT_DIR`: reads the checkpoint (any world, EP; every file's CRC32C
// verified once, every tensor found before anything is written) holding its parameters only —
// the dense tensors and one MoE layer's experts at a time, 4 bytes a parameter, no gradients or
// Adam moments — writes OUT_DIR.tmp-PID/ (config.json, the safetensors file(s), the index when
// sharded) and renames it to OUT_DIR (which must not exist, or be an empty directory).
// MOE_EINVAL for what HF cannot express (nothing written), MOE_ECORRUPT for a bad checkpoint,
// MOE_EIO. `log` (may be NULL) gets one progress line.
moe_status moe_hf_export(const char *checkpoint, const char *out_dir, const moe_hf_export_opts *o,
                         FILE *log);
// config.json of cfg as architecture a, the torch_dtype of dtype: compact keys sorted, indent 2
// (as transformers writes it). Caller frees.
char *moe_hf_config_json(const Moe__Config *cfg, moe_hf_arch a, moe_st_dtype dtype);

// ---------------------------------------------------------------- import
typedef struct {
    const char *const *sets; // --set a.b=v on the imported config (model.* refused)
    int n_sets;
    int world, ep; // the layout the checkpoint is written at (0: 1), checked against the
                   // experts; parallel.ep_size = ep. It reshards on load at any layout.
} moe_hf_import_opts;
// `moe import HF_DIR OUT`: a moe checkpoint OUT/checkpoints/step_00000000 (manifest, CRC32C,
// LATEST; trainer/checkpoint/) of the model in HF_DIR, step 0, zero Adam moments and balance
// bias, written one rank's shard at a time (memory: one HF tensor plus one shard's parameters,
// no gradients or moments). Refuses architectures and config.json fields moe cannot reproduce
// (MOE_EINVAL), bad or mismatched safetensors (MOE_ECORRUPT: missing, unexpected or misshapen
// tensors, the reader's refusals). `written` (cap bytes, may be NULL) gets the checkpoint's path.
moe_status moe_hf_import(const char *hf_dir, const char *out, const moe_hf_import_opts *o,
                         char *written, size_t cap, FILE *log);

#endif
