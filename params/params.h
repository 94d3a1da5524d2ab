// params.h: the manual of parameter accounting — exact total / active / per-rank counts and
// FLOPs per token of any moe config (params/params.c), and reading a Hugging Face config.json
// into a moe config (params/hf-config.c). `moe params` (cli/cmd-params.c) prints them.
#ifndef MOE_PARAMS_H
#define MOE_PARAMS_H

#include "moe-common.h"
#include "moe.pb-c.h"

// ---------------------------------------------------------------- params: parameter accounting
// Exact counts for a moe.Config (params/params.c; rules and conventions in docs/params.md).
// "active" = parameters one token uses: routed experts top_k of n_experts per MoE layer, every
// other part in full, the embedding table included (as Mixtral's 12.9B does). All bytes are fp32.

typedef enum {
    MOE_PARAMS_EMBEDDINGS = 0, // token table (V, D); learned position table (max_seq_len, D)
    MOE_PARAMS_ATTENTION, // q/k/v/o or the MLA projections, their biases, q/k norms, MLA latent norms
    MOE_PARAMS_NORMS,     // pre-attention and pre-FFN norm of every layer, final norm
    MOE_PARAMS_ROUTER,    // gate (D, E) per MoE layer, learned router bias, aux-free balancing bias
    MOE_PARAMS_ROUTED_EXPERTS, // E FFNs per MoE layer
    MOE_PARAMS_SHARED_EXPERTS, // shared-expert FFNs and the shared-expert gate (D, 1)
    MOE_PARAMS_DENSE_FFN,      // the FFN of every dense layer
    MOE_PARAMS_HEAD,           // output projection (D, V); 0 parameters when tied
    MOE_PARAMS_N_PARTS
} moe_params_part_id;

typedef struct {
    int64_t total;  // parameters in the model (adapters excluded)
    int64_t active; // of total, used by one token
    int64_t matmul; // weight entries one token multiplies (2 FLOPs each); head: V·D even when tied
    int64_t untrained;     // of total, state the optimizer never updates (aux-free balancing bias)
    int64_t per_rank;      // of total, held by one rank (routed experts: total / EP)
    int64_t lora_total;    // LoRA adapter parameters attached to this part
    int64_t lora_active;   // of those, used by one token
    int64_t lora_per_rank; // of those, held by one rank
} moe_params_part;

typedef struct {
    moe_params_part part[MOE_PARAMS_N_PARTS];
    int64_t total, active;       // sums over the parts (adapters excluded)
    int64_t active_nonembedding; // active minus the embeddings part (DeepSeek's convention)
    double active_ratio;         // active / total
    int32_t n_layers, n_moe_layers, n_dense_layers;
    int64_t lora_total, lora_active; // adapters (0 without LoRA)
    int64_t untrained;               // balancing-bias state: in total, neither trainable nor frozen
    int64_t trainable; // updated by the optimizer: total - untrained, or with LoRA the adapters
                       // (+ router gates with lora.train_router, norms with lora.train_norms)
    int64_t frozen;    // with LoRA: the rest of total - untrained (the base), else 0
    int64_t flops_per_token;      // forward: 2 × matmul entries (base + adapters), head included
    int64_t attn_flops_per_token; // forward QKᵀ + AV at seq_len, full context: L·2·S·H·(Dqk + Dv)
    int64_t attn_flops_per_token_causal; // averaged over causal positions: L·(S+1)·H·(Dqk + Dv)
    int32_t seq_len;                     // train.seq_len used above
    int32_t world, ep, edp;              // layout the per-rank figures are for (W = EP × EDP)
    int64_t rank_params;    // parameters (base, adapters, balancing bias) held by one rank
    int64_t rank_trainable; // of those, with a gradient and AdamW m, v
    int64_t rank_param_bytes, rank_grad_bytes, rank_adam_bytes,
        rank_bytes; // fp32: 4, 4, 8 per entry
    // Gradient + AdamW bytes one rank would hold to fine-tune the whole base model (no LoRA):
    // with LoRA, rank_full_state_bytes − rank_grad_bytes − rank_adam_bytes is what freezing saves.
    int64_t rank_full_state_bytes;
    // Routing restriction (no effect on the counts: a token still uses top_k experts).
    int32_t n_experts, top_k;    // routed experts per MoE layer and experts per token
    int32_t n_group, topk_group; // group-limited: top_k within topk_group of n_group groups; 0: off
    int32_t node_limited;        // 1: groups = the nodes an EP group spans (n_group set at setup,
                                 // 0 here); a token reaches topk_group nodes
    int32_t group_score;         // router.group_score (RouterConfig.GroupScore value)
    int64_t reachable_experts;   // experts a token chooses among: topk_group·E/n_group, or E
                                 // (node-limited: 0, known only at setup)
} moe_params_report;

// Counts cfg (absent sub-messages take the schema defaults) for `world` ranks with expert-parallel
// size `ep` (ep <= 0: cfg->parallel->ep_size; world <= 0: ep). MOE_EINVAL for a shape that cannot
// be counted, MOE_ELAYOUT for an impossible layout, both with the fields named in moe_last_error().
moe_status moe_params_count(const Moe__Config *cfg, int world, int ep, moe_params_report *out);
const char *moe_params_part_name(moe_params_part_id id); // "embeddings", "routed_experts", …
// Fills a model config's resolved defaults (d_ff, expert_d_ff, n_kv_heads, head_dim,
// shared_expert_d_ff; dense layers as first_dense_layers + the others listed; d_ff cleared when no
// layer is dense) so that two configs of the same shape compare equal field by field (moe import,
// moe train --init-from).
void moe_params_normalize_model(Moe__ModelConfig *mc);

// Hugging Face config.json (params/hf-config.c). Fields read into the config are listed in
// docs/params.md; every other field is reported in `ignored`, with why, never guessed at.
typedef struct {
    size_t n_ignored;
    char **ignored;        // (n_ignored) top-level field names, in file order
    char **ignored_reason; // (n_ignored) "known, …" (no effect on shapes) or "unknown field"
    size_t n_notes;
    char **notes; // (n_notes) mapping decisions a reader should know about
    char *family; // "mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "olmoe"
} moe_hf_info;

// Is the JSON file at `path` a Hugging Face config (top-level model_type, architectures or
// hidden_size)? MOE_EIO / MOE_EINVAL when it cannot be read or parsed.
moe_status moe_hf_config_detect(const char *path, int *is_hf);
// Reads an HF config.json into a new moe.Config (other sub-messages hold the schema defaults; free
// with moe_config_free or protobuf_c_message_free_unpacked). `info` may be NULL; else free it with
// moe_hf_info_free.
moe_status moe_hf_config_load(const char *path, Moe__Config **out, moe_hf_info *info);
void moe_hf_info_free(moe_hf_info *info);
// A model shape from either format: an HF config.json (detected as above) or a moe config ("-":
// stdin), then the `--set a.b=v` overrides in order, then moe_config_validate(cfg, 0) (world checks
// are left to the caller). `info` and `is_hf` may be NULL. Errors name the file.
moe_status moe_model_config_load(const char *path, const char *const *sets, int n_sets,
                                 Moe__Config **out, moe_hf_info *info, int *is_hf);

#endif
