// hf-config.c: reads a Hugging Face config.json (Mixtral, Qwen2-MoE/Qwen3-MoE, DeepSeek-V2/V3,
// OLMoE) into a moe.Config with jansson. Each family's fields are mapped as its transformers
// modeling code builds the layers; every field not read is listed as ignored, never guessed at.
#include "config.h"
#include "params.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

typedef enum {
    HF_MIXTRAL,
    HF_QWEN2_MOE,
    HF_QWEN3_MOE,
    HF_DEEPSEEK_V2,
    HF_DEEPSEEK_V3,
    HF_OLMOE
} hf_family;

static const struct {
    const char *model_type, *architecture;
} hf_families[] = {
    [HF_MIXTRAL] = {"mixtral", "MixtralForCausalLM"},
    [HF_QWEN2_MOE] = {"qwen2_moe", "Qwen2MoeForCausalLM"},
    [HF_QWEN3_MOE] = {"qwen3_moe", "Qwen3MoeForCausalLM"},
    [HF_DEEPSEEK_V2] = {"deepseek_v2", "DeepseekV2ForCausalLM"},
    [HF_DEEPSEEK_V3] = {"deepseek_v3", "DeepseekV3ForCausalLM"},
    [HF_OLMOE] = {"olmoe", "OlmoeForCausalLM"},
};
#define HF_N_FAMILIES ((int)(sizeof hf_families / sizeof hf_families[0]))

// Fields known not to change any parameter shape, with the reason shown to the user.
static const struct {
    const char *key, *reason;
} hf_known_ignored[] = {
    {"_name_or_path", "known, metadata"},
    {"auto_map", "known, metadata"},
    {"transformers_version", "known, metadata"},
    {"torch_dtype", "known, storage type; parameters are counted whatever their type"},
    {"dtype", "known, storage type; parameters are counted whatever their type"},
    {"quantization_config", "known, storage type; parameters are counted whatever their type"},
    {"bos_token_id", "known, tokenizer"},
    {"eos_token_id", "known, tokenizer"},
    {"pad_token_id", "known, tokenizer"},
    {"use_cache", "known, inference"},
    {"pretraining_tp", "known, inference"},
    {"ep_size", "known, inference layout; use --ep"},
    {"initializer_range", "known, initialisation"},
    {"attention_dropout", "known, no effect on shapes"},
    {"rope_scaling", "known, rotary positions have no parameters"},
    {"rope_parameters", "known, rotary positions have no parameters"},
    {"rope_interleave", "known, rotary positions have no parameters"},
    {"max_position_embeddings",
     "known, rotary positions have no table; does not set train.seq_len"},
    {"sliding_window", "known, attention mask only"},
    {"use_sliding_window", "known, attention mask only"},
    {"max_window_layers", "known, attention mask only"},
    {"layer_types", "known, attention mask only"},
    {"output_router_logits", "known, inference output"},
    {"router_jitter_noise", "known, Mixtral's input jitter differs from router.jitter; not mapped"},
    {"clip_qkv", "known, clamps activations; no parameters"},
    {"n_group", "known, DeepSeek's group-limited routing; read for deepseek_v2/v3 only"},
    {"topk_group", "known, DeepSeek's group-limited routing; read for deepseek_v2/v3 only"},
    {"num_nextn_predict_layers",
     "known, the multi-token-prediction module is not counted (main model only)"},
};

typedef struct {
    const char *path;
    json_t *root;
    json_t *seen;      // keys read, as an object used as a set
    moe_hf_info *info; // never NULL here
    int groups;        // DeepSeek topk_method: 0 greedy (no groups), else the group score + 1
} hf_ctx;

static char *hf_vstrdup(const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    char *s = moe_xcalloc((size_t)n + 1, 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static void hf_push(size_t *n, char ***list, char *s) {
    char **grown = realloc(*list, (*n + 1) * sizeof **list);
    MOE_ASSERT(grown);
    *list = grown;
    grown[(*n)++] = s;
}

static void hf_note(hf_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hf_note(hf_ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    hf_push(&c->info->n_notes, &c->info->notes, hf_vstrdup(fmt, ap));
    va_end(ap);
}

void moe_hf_info_free(moe_hf_info *info) {
    if (!info) return;
    for (size_t i = 0; i < info->n_ignored; i++) {
        free(info->ignored[i]);
        free(info->ignored_reason[i]);
    }
    for (size_t i = 0; i < info->n_notes; i++) free(info->notes[i]);
    free(info->ignored);
    free(info->ignored_reason);
    free(info->notes);
    free(info->family);
    memset(info, 0, sizeof *info);
}

// The value of `key`, marked as read; NULL when absent or JSON null.
static json_t *hf_take(hf_ctx *c, const char *key) {
    json_t *v = json_object_get(c->root, key);
    if (!v) return NULL;
    json_object_set_new(c->seen, key, json_true());
    return json_is_null(v) ? NULL : v;
}

static const char *hf_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

// The error for a field present with the wrong JSON type: names the file, the field, what was
// expected and what was found.
static moe_status hf_wrong_type(const hf_ctx *c, const char *key, const json_t *v,
                                const char *expected) {
    return moe_set_error(MOE_EINVAL, "%s: field \"%s\": expected %s, got %s", c->path, key,
                         expected, hf_type_name(v));
}

// Integer field in [lo, hi]. Absent (or null): an error when `required`, else `dflt`, noted when
// `note_default` (a default taken from transformers' config class, which the reader should see).
static moe_status hf_int(hf_ctx *c, const char *key, int required, int64_t dflt, int note_default,
                         int64_t lo, int64_t hi, int64_t *out) {
    json_t *v = hf_take(c, key);
    if (!v) {
        if (required)
            return moe_set_error(MOE_EINVAL,
                                 "%s: field \"%s\" is missing (or null); it sets the "
                                 "model shape — add it",
                                 c->path, key);
        if (note_default) hf_note(c, "%s absent: transformers' default %lld", key, (long long)dflt);
        *out = dflt;
        return MOE_OK;
    }
    if (!json_is_integer(v)) return hf_wrong_type(c, key, v, "an integer");
    int64_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return moe_set_error(MOE_EINVAL, "%s: field \"%s\": %lld is out of range %lld..%lld",
                             c->path, key, (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return MOE_OK;
}

// Like hf_int (optional, default noted), but an explicit JSON null means `null_value` (DeepSeek's
// q_lora_rank null = full-rank q, n_routed_experts null = dense), distinct from an absent field.
static moe_status hf_int_or_null(hf_ctx *c, const char *key, int64_t dflt, int64_t null_value,
                                 int64_t lo, int64_t hi, int64_t *out) {
    json_t *raw = json_object_get(c->root, key);
    if (raw && json_is_null(raw)) {
        hf_take(c, key);
        *out = null_value;
        return MOE_OK;
    }
    return hf_int(c, key, 0, dflt, 1, lo, hi, out);
}

static moe_status hf_bool(hf_ctx *c, const char *key, int dflt, int note_default, int *out) {
    json_t *v = hf_take(c, key);
    if (!v) {
        if (note_default)
            hf_note(c, "%s absent: transformers' default %s", key, dflt ? "true" : "false");
        *out = dflt;
        return MOE_OK;
    }
    if (!json_is_boolean(v)) return hf_wrong_type(c, key, v, "true or false");
    *out = json_is_true(v);
    return MOE_OK;
}

static moe_status hf_real(hf_ctx *c, const char *key, double dflt, double *out) {
    json_t *v = hf_take(c, key);
    if (!v) {
        *out = dflt;
        return MOE_OK;
    }
    if (!json_is_number(v)) return hf_wrong_type(c, key, v, "a number");
    *out = json_number_value(v);
    return MOE_OK;
}

static moe_status hf_string(hf_ctx *c, const char *key, const char *dflt, const char **out) {
    json_t *v = hf_take(c, key);
    if (!v) {
        *out = dflt;
        return MOE_OK;
    }
    if (!json_is_string(v)) return hf_wrong_type(c, key, v, "a string");
    *out = json_string_value(v);
    return MOE_OK;
}

#define HF_TRY(expr)                                                                               \
    do {                                                                                           \
        moe_status hf_st_ = (expr);                                                                \
        if (hf_st_) return hf_st_;                                                                 \
    } while (0)

#define I32 INT32_MAX
#define I64 INT64_MAX

// A new Config with every sub-message present at the schema defaults, allocated the way
// protobuf_c_message_free_unpacked frees (malloc with the default allocator).
static Moe__Config *hf_new_config(void) {
    Moe__Config *cfg = moe_xcalloc(1, sizeof *cfg);
    moe__config__init(cfg);
    cfg->model = moe_xcalloc(1, sizeof *cfg->model);
    moe__model_config__init(cfg->model);
    cfg->router = moe_xcalloc(1, sizeof *cfg->router);
    moe__router_config__init(cfg->router);
    cfg->train = moe_xcalloc(1, sizeof *cfg->train);
    moe__train_config__init(cfg->train);
    cfg->parallel = moe_xcalloc(1, sizeof *cfg->parallel);
    moe__parallel_config__init(cfg->parallel);
    cfg->data = moe_xcalloc(1, sizeof *cfg->data);
    moe__data_config__init(cfg->data);
    cfg->lora = moe_xcalloc(1, sizeof *cfg->lora);
    moe__lora_config__init(cfg->lora);
    return cfg;
}

// Which family: model_type, else architectures[0], else telling fields.
static moe_status hf_family_of(hf_ctx *c, hf_family *fam) {
    const char *mt = NULL;
    HF_TRY(hf_string(c, "model_type", NULL, &mt));
    json_t *arch = hf_take(c, "architectures");
    if (arch && !json_is_array(arch))
        return moe_set_error(MOE_EINVAL,
                             "%s: field \"architectures\": expected an array of strings, "
                             "got %s",
                             c->path, hf_type_name(arch));
    const char *a0 =
        arch && json_array_size(arch) ? json_string_value(json_array_get(arch, 0)) : NULL;
    for (int i = 0; i < HF_N_FAMILIES; i++) {
        if ((mt && !strcmp(mt, hf_families[i].model_type)) ||
            (!mt && a0 && !strcmp(a0, hf_families[i].architecture))) {
            *fam = (hf_family)i;
            return MOE_OK;
        }
    }
    if (!mt && !a0) {
        json_t *r = c->root;
        if (json_object_get(r, "num_local_experts"))
            *fam = HF_MIXTRAL;
        else if (json_object_get(r, "kv_lora_rank"))
            *fam = HF_DEEPSEEK_V3;
        else if (json_object_get(r, "shared_expert_intermediate_size"))
            *fam = HF_QWEN2_MOE;
        else
            return moe_set_error(MOE_EINVAL,
                                 "%s: an HF config without model_type or architectures, "
                                 "and no field that tells the family; add \"model_type\" (one of "
                                 "mixtral, qwen2_moe, qwen3_moe, deepseek_v2, deepseek_v3, olmoe)",
                                 c->path);
        hf_note(c, "no model_type or architectures: read as %s from its fields",
                hf_families[*fam].model_type);
        return MOE_OK;
    }
    return moe_set_error(
        MOE_EINVAL,
        "%s: model_type \"%s\" (architecture \"%s\") is not supported; "
        "supported: mixtral, qwen2_moe, qwen3_moe, deepseek_v2, deepseek_v3, olmoe. "
        "Write the shape as a moe config instead (docs/params.md)",
        c->path, mt ? mt : "-", a0 ? a0 : "-");
}

// Layers l with is_dense(l) go to model.dense_layers.
static void hf_set_dense_layers(Moe__ModelConfig *m, const int *dense, int n_layers) {
    size_t n = 0;
    for (int l = 0; l < n_layers; l++) n += dense[l] != 0;
    free(m->dense_layers);
    m->dense_layers = n ? moe_xcalloc(n, sizeof *m->dense_layers) : NULL;
    m->n_dense_layers = 0;
    for (int l = 0; l < n_layers; l++)
        if (dense[l]) m->dense_layers[m->n_dense_layers++] = l;
}

#define SET(msg, field, value)                                                                     \
    do {                                                                                           \
        (msg)->has_##field = 1;                                                                    \
        (msg)->field = (value);                                                                    \
    } while (0)

// Every layer: block_sparse_moe with gate (E, D) no bias, E SwiGLU experts of
// intermediate_size; softmax, top-k, weights renormalised over the k.
static moe_status hf_map_mixtral(hf_ctx *c, hf_family fam, Moe__ModelConfig *m,
                                 Moe__RouterConfig *r, int *dense, int n_layers) {
    int64_t v;
    (void)fam;
    (void)dense;
    (void)n_layers;
    HF_TRY(hf_int(c, "num_local_experts", 1, 0, 0, 1, I32, &v));
    SET(m, n_experts, (int32_t)v);
    HF_TRY(hf_int(c, "intermediate_size", 1, 0, 0, 1, I64, &v));
    SET(m, d_ff, v);
    SET(m, expert_d_ff, v);
    SET(r, renormalize, 1);
    return MOE_OK;
}

// A layer is sparse unless listed in mlp_only_layers or (l+1) % decoder_sparse_step != 0;
// dense layers have an FFN of intermediate_size. Qwen2-MoE adds one shared expert
// (shared_expert_intermediate_size) scaled by sigmoid(x·w), w (D, 1); q/k/v biases.
// Qwen3-MoE: no shared expert, per-head q/k RMSNorm, attention_bias on q/k/v/o.
static moe_status hf_map_qwen(hf_ctx *c, hf_family fam, Moe__ModelConfig *m, Moe__RouterConfig *r,
                              int *dense, int n_layers) {
    int64_t v;
    int b;
    HF_TRY(hf_int(c, "num_experts", 1, 0, 0, 0, I32, &v));
    SET(m, n_experts, (int32_t)v);
    HF_TRY(hf_int(c, "intermediate_size", 1, 0, 0, 1, I64, &v));
    SET(m, d_ff, v);
    HF_TRY(hf_int(c, "moe_intermediate_size", m->n_experts > 0, 0, 0, 0, I64, &v));
    SET(m, expert_d_ff, v ? v : m->d_ff);
    int64_t step;
    HF_TRY(hf_int(c, "decoder_sparse_step", 0, 1, 1, 1, I32, &step));
    json_t *mlp_only = hf_take(c, "mlp_only_layers");
    if (mlp_only && !json_is_array(mlp_only)) {
        return moe_set_error(MOE_EINVAL,
                             "%s: field \"mlp_only_layers\": expected an array of "
                             "layer indices, got %s",
                             c->path, hf_type_name(mlp_only));
    }
    for (size_t i = 0; mlp_only && i < json_array_size(mlp_only); i++) {
        json_t *e = json_array_get(mlp_only, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= n_layers) {
            return moe_set_error(MOE_EINVAL,
                                 "%s: mlp_only_layers[%zu] is not a layer index "
                                 "0..%d",
                                 c->path, i, n_layers - 1);
        }
        dense[json_integer_value(e)] = 1;
    }
    for (int l = 0; l < n_layers; l++)
        if ((l + 1) % step != 0) dense[l] = 1;
    hf_set_dense_layers(m, dense, n_layers);
    HF_TRY(hf_bool(c, "norm_topk_prob", 0, 1, &b));
    SET(r, renormalize, b);
    if (fam == HF_QWEN2_MOE) {
        HF_TRY(hf_int(c, "shared_expert_intermediate_size", 0, 0, 1, 0, I64, &v));
        if (v > 0) {
            SET(m, n_shared_experts, 1);
            SET(m, shared_expert_d_ff, v);
            SET(m, shared_expert_gate, 1);
        }
        HF_TRY(hf_bool(c, "qkv_bias", 1, 0, &b)); // newer transformers; older: always true
        SET(m, attn_qkv_bias, b);
    } else {
        HF_TRY(hf_bool(c, "attention_bias", 0, 1, &b));
        SET(m, attn_qkv_bias, b);
        SET(m, attn_out_bias, b);
        SET(m, qk_norm, MOE__MODEL_CONFIG__QK_NORM__per_head);
    }
    return MOE_OK;
}

// Layer l is MoE iff n_routed_experts is set, l >= first_k_dense_replace and
// l % moe_layer_freq == 0. Shared experts are one FFN of n_shared_experts ×
// moe_intermediate_size, which has the parameters of n_shared_experts FFNs of
// moe_intermediate_size. MLA: q_a/q_b (or q when q_lora_rank is null), kv_a_proj_with_mqa,
// kv_b, o; attention_bias puts biases on q_a, kv_a and o.
// Absent fields take the defaults of transformers' DeepseekV2Config / DeepseekV3Config
// (noted); an explicit null keeps DeepSeek's meaning.
static moe_status hf_map_deepseek(hf_ctx *c, hf_family fam, Moe__ModelConfig *m,
                                  Moe__RouterConfig *r, int *dense, int n_layers) {
    int64_t v;
    int b;
    double d;
    const char *s;
    int v3 = fam == HF_DEEPSEEK_V3;
    HF_TRY(hf_int_or_null(c, "n_routed_experts", v3 ? 256 : 0, 0, 0, I32, &v));
    SET(m, n_experts, (int32_t)v);
    HF_TRY(hf_int(c, "intermediate_size", 1, 0, 0, 1, I64, &v));
    SET(m, d_ff, v);
    HF_TRY(hf_int(c, "moe_intermediate_size", m->n_experts > 0, 0, 0, 0, I64, &v));
    SET(m, expert_d_ff, v ? v : m->d_ff);
    HF_TRY(hf_int_or_null(c, "n_shared_experts", v3 ? 1 : 0, 0, 0, I32, &v));
    if (v > 0 && m->n_experts > 0) {
        SET(m, n_shared_experts, (int32_t)v);
        SET(m, shared_expert_d_ff, m->expert_d_ff);
        if (v > 1)
            hf_note(c,
                    "n_shared_experts %lld: DeepSeek's one shared FFN of width %lld×%lld is "
                    "counted as %lld shared experts of %lld (the same parameters)",
                    (long long)v, (long long)v, (long long)m->expert_d_ff, (long long)v,
                    (long long)m->expert_d_ff);
    }
    int64_t first, freq;
    HF_TRY(hf_int(c, "first_k_dense_replace", 0, v3 ? 3 : 0, 1, 0, I32, &first));
    HF_TRY(hf_int(c, "moe_layer_freq", 0, 1, 1, 1, I32, &freq));
    SET(m, first_dense_layers, (int32_t)(first < n_layers ? first : n_layers));
    for (int l = (int)m->first_dense_layers; l < n_layers; l++)
        if (l % freq != 0) dense[l] = 1;
    hf_set_dense_layers(m, dense, n_layers);
    HF_TRY(hf_int_or_null(c, "q_lora_rank", 1536, 0, 0, I64, &v));
    SET(m, q_lora_rank, v);
    HF_TRY(hf_int(c, "kv_lora_rank", 1, 0, 0, 1, I64, &v));
    SET(m, kv_lora_rank, v);
    HF_TRY(hf_int(c, "qk_nope_head_dim", 1, 0, 0, 0, I64, &v));
    SET(m, qk_nope_head_dim, v);
    HF_TRY(hf_int(c, "qk_rope_head_dim", 1, 0, 0, 0, I64, &v));
    SET(m, qk_rope_head_dim, v);
    HF_TRY(hf_int(c, "v_head_dim", 1, 0, 0, 1, I64, &v));
    SET(m, v_head_dim, v);
    HF_TRY(hf_bool(c, "attention_bias", 0, 1, &b));
    SET(m, attn_qkv_bias, b);
    SET(m, attn_out_bias, b);
    if (v3 && !json_object_get(c->root, "scoring_func"))
        hf_note(c, "scoring_func absent: transformers' DeepSeek-V3 default sigmoid");
    HF_TRY(hf_string(c, "scoring_func", v3 ? "sigmoid" : "softmax", &s));
    if (!strcmp(s, "sigmoid"))
        SET(r, scoring, MOE__ROUTER_CONFIG__SCORING__sigmoid);
    else if (strcmp(s, "softmax")) {
        return moe_set_error(MOE_EINVAL,
                             "%s: scoring_func \"%s\" is not supported (softmax, "
                             "sigmoid)",
                             c->path, s);
    }
    if (v3 && !json_object_get(c->root, "topk_method"))
        hf_note(c, "topk_method absent: transformers' DeepSeek-V3 router always holds "
                   "e_score_correction_bias (noaux_tc)");
    HF_TRY(hf_string(c, "topk_method", v3 ? "noaux_tc" : "greedy", &s));
    if (!strcmp(s, "noaux_tc")) {
        // The gate then holds e_score_correction_bias (E): aux-loss-free balancing state.
        SET(r, bias_update_rate, 1e-3);
        hf_note(c, "topk_method noaux_tc: router.bias_update_rate set to 0.001 (DeepSeek-V3 "
                   "paper's gamma; not in config.json) so the balancing bias (E per MoE layer) is "
                   "present");
        c->groups = 1 + MOE__ROUTER_CONFIG__GROUP_SCORE__top2_sum;
    } else if (!strcmp(s, "group_limited_greedy")) {
        c->groups = 1 + MOE__ROUTER_CONFIG__GROUP_SCORE__max;
    } else if (strcmp(s, "greedy") && strcmp(s, "gready")) {
        return moe_set_error(MOE_EINVAL,
                             "%s: topk_method \"%s\" is not supported (greedy, "
                             "group_limited_greedy, noaux_tc)",
                             c->path, s);
    }
    HF_TRY(hf_bool(c, "norm_topk_prob", v3, 1, &b));
    SET(r, renormalize, b);
    HF_TRY(hf_real(c, "routed_scaling_factor", v3 ? 2.5 : 1.0, &d));
    SET(r, routed_scaling, d);
    // DeepSeek's balance loss: α = aux_loss_alpha (α·Σ_i (E·f_i)·P_i, moe's α·E·Σ f_i·P_i),
    // per sequence with seq_aux (router.balance_scope = sequence), else over the batch.
    if (json_object_get(c->root, "aux_loss_alpha")) {
        HF_TRY(hf_real(c, "aux_loss_alpha", 0.001, &d));
        SET(r, aux_loss_coef, d);
    }
    HF_TRY(hf_bool(c, "seq_aux", 0, 0, &b));
    if (b) SET(r, balance_scope, MOE__ROUTER_CONFIG__BALANCE_SCOPE__sequence);
    return MOE_OK;
}

// DeepSeek's group-limited routing, after top_k is known: n_group / topk_group are used by
// topk_method noaux_tc (V3: group score = sum of the top-2) and group_limited_greedy (V2: max),
// ignored by greedy. Absent: transformers' defaults (V3 8 / 4, V2 none), noted; a default the
// shape cannot take (8 groups of 4 experts…) turns groups off, noted. Explicit values are kept
// as written and judged by validation, which names router.n_group / topk_group.
static moe_status hf_map_groups(hf_ctx *c, hf_family fam, Moe__ModelConfig *m,
                                Moe__RouterConfig *r) {
    const int v3 = fam == HF_DEEPSEEK_V3;
    const int absent =
        !json_object_get(c->root, "n_group") && !json_object_get(c->root, "topk_group");
    int64_t ng, tg;
    HF_TRY(hf_int_or_null(c, "n_group", v3 ? 8 : 1, 1, 0, I32, &ng));
    HF_TRY(hf_int_or_null(c, "topk_group", v3 ? 4 : 1, 1, 0, I32, &tg));
    if (ng <= 1 || m->n_experts <= 0) return MOE_OK;
    if (!c->groups) {
        hf_note(c, "n_group %lld, topk_group %lld: unused by topk_method greedy (plain top-k)",
                (long long)ng, (long long)tg);
        return MOE_OK;
    }
    const Moe__RouterConfig__GroupScore gs = (Moe__RouterConfig__GroupScore)(c->groups - 1);
    const int64_t S = m->n_experts % ng ? 0 : m->n_experts / ng;
    if (absent && (S == 0 || tg > ng || m->top_k > tg * S ||
                   (gs == MOE__ROUTER_CONFIG__GROUP_SCORE__top2_sum && S < 2))) {
        hf_note(c,
                "n_group / topk_group absent and transformers' defaults %lld / %lld do not fit "
                "%d experts top-%d: routed without groups",
                (long long)ng, (long long)tg, m->n_experts, m->top_k);
        return MOE_OK;
    }
    SET(r, n_group, (int32_t)ng);
    SET(r, topk_group, (int32_t)tg);
    SET(r, group_score, gs);
    hf_note(c, "group-limited routing: top-%d within %lld of %lld groups, group score %s (%s)",
            m->top_k, (long long)tg, (long long)ng,
            gs == MOE__ROUTER_CONFIG__GROUP_SCORE__max ? "max" : "top2_sum",
            gs == MOE__ROUTER_CONFIG__GROUP_SCORE__max ? "topk_method group_limited_greedy"
                                                       : "topk_method noaux_tc");
    return MOE_OK;
}

// Every layer sparse, experts of intermediate_size; RMSNorm over the whole q projection
// (hidden_size) and k projection (Hkv·Dh); attention_bias on q/k/v/o. OlmoeConfig has no
// head_dim: the head dim is hidden_size / num_attention_heads (q_norm's width is hidden_size), so
// a head_dim that says otherwise describes no OLMoE model.
static moe_status hf_map_olmoe(hf_ctx *c, hf_family fam, Moe__ModelConfig *m, Moe__RouterConfig *r,
                               int *dense, int n_layers) {
    int64_t v;
    int b;
    (void)fam;
    (void)dense;
    (void)n_layers;
    if (m->has_head_dim && (int64_t)m->head_dim * m->n_heads != m->d_model)
        return moe_set_error(MOE_EINVAL,
                             "%s: head_dim %d: OLMoE's head dim is hidden_size / "
                             "num_attention_heads (%lld / %d); remove head_dim",
                             c->path, m->head_dim, (long long)m->d_model, m->n_heads);
    HF_TRY(hf_int(c, "num_experts", 1, 0, 0, 1, I32, &v));
    SET(m, n_experts, (int32_t)v);
    HF_TRY(hf_int(c, "intermediate_size", 1, 0, 0, 1, I64, &v));
    SET(m, d_ff, v);
    SET(m, expert_d_ff, v);
    HF_TRY(hf_bool(c, "attention_bias", 0, 1, &b));
    SET(m, attn_qkv_bias, b);
    SET(m, attn_out_bias, b);
    SET(m, qk_norm, MOE__MODEL_CONFIG__QK_NORM__full);
    HF_TRY(hf_bool(c, "norm_topk_prob", 0, 1, &b));
    SET(r, renormalize, b);
    return MOE_OK;
}

// Maps the fields of an HF config.json of family `fam` onto cfg's model and router: what every
// family shares here, the family's own fields in its hf_map_<family>, then top-k.
static moe_status hf_map(hf_ctx *c, hf_family fam, Moe__Config *cfg) {
    Moe__ModelConfig *m = cfg->model;
    Moe__RouterConfig *r = cfg->router;
    int64_t v;
    int b;
    double d;
    const char *s;
    int mla = fam == HF_DEEPSEEK_V2 || fam == HF_DEEPSEEK_V3;

    // --- common: every family is a pre-norm RMSNorm decoder with rotary positions and gated FFNs.
    HF_TRY(hf_int(c, "vocab_size", 1, 0, 0, 1, I64, &v));
    SET(m, vocab_size, v);
    HF_TRY(hf_int(c, "hidden_size", 1, 0, 0, 1, I64, &v));
    SET(m, d_model, v);
    HF_TRY(hf_int(c, "num_hidden_layers", 1, 0, 0, 1, I32, &v));
    SET(m, n_layers, (int32_t)v);
    HF_TRY(hf_int(c, "num_attention_heads", 1, 0, 0, 1, I32, &v));
    SET(m, n_heads, (int32_t)v);
    int32_t n_layers = m->n_layers;
    if (mla) {
        // MLA has per-head k and v from kv_b; these two do not enter the shape.
        if (json_object_get(c->root, "num_key_value_heads")) hf_take(c, "num_key_value_heads");
        if (json_object_get(c->root, "head_dim")) hf_take(c, "head_dim");
    } else {
        HF_TRY(hf_int(c, "num_key_value_heads", 0, m->n_heads, 0, 1, m->n_heads, &v));
        SET(m, n_kv_heads, (int32_t)v);
        HF_TRY(hf_int(c, "head_dim", 0, 0, 0, 1, I32, &v));
        if (v)
            SET(m, head_dim, (int32_t)v);
        else if (m->d_model % m->n_heads)
            return moe_set_error(MOE_EINVAL,
                                 "%s: hidden_size %lld is not divisible by "
                                 "num_attention_heads %d and head_dim is absent",
                                 c->path, (long long)m->d_model, m->n_heads);
    }
    HF_TRY(hf_bool(c, "tie_word_embeddings", 0, 1, &b));
    SET(m, tie_embeddings, b);
    HF_TRY(hf_string(c, "hidden_act", "silu", &s));
    SET(m, activation, MOE__MODEL_CONFIG__ACTIVATION__swiglu);
    if (strcmp(s, "silu") && strcmp(s, "swish"))
        hf_note(c,
                "hidden_act \"%s\": the FFNs are gated (3 matrices) and counted as swiglu; "
                "moe trains only silu",
                s);
    SET(m, norm, MOE__MODEL_CONFIG__NORM__rmsnorm);
    SET(m, positions, MOE__MODEL_CONFIG__POSITIONS__rope);
    // The class defaults when absent: Mixtral's rope_theta is 1e6 and Qwen's and DeepSeek's
    // rms_norm_eps 1e-6; newer transformers keep the base in rope_parameters.rope_theta.
    const int qwen_ds = fam == HF_QWEN2_MOE || fam == HF_QWEN3_MOE || mla;
    double theta = fam == HF_MIXTRAL ? 1e6 : 1e4;
    json_t *rp = json_object_get(c->root, "rope_parameters"), *rt;
    if (json_is_object(rp) && (rt = json_object_get(rp, "rope_theta")) && json_is_number(rt))
        theta = json_number_value(rt);
    HF_TRY(hf_real(c, "rope_theta", theta, &d));
    SET(m, rope_theta, d);
    HF_TRY(hf_real(c, "rms_norm_eps", qwen_ds ? 1e-6 : 1e-5, &d));
    SET(m, norm_eps, d);
    HF_TRY(hf_real(c, "router_aux_loss_coef", r->aux_loss_coef, &d));
    SET(r, aux_loss_coef, d);
    HF_TRY(hf_real(c, "router_z_loss_coef", r->z_loss_coef, &d));
    SET(r, z_loss_coef, d);
    SET(r, scoring, MOE__ROUTER_CONFIG__SCORING__softmax);

    int *dense = moe_xcalloc((size_t)n_layers, sizeof *dense); // (n_layers) 1: a dense layer
    moe_status st = MOE_OK;
    switch (fam) {
    case HF_MIXTRAL: st = hf_map_mixtral(c, fam, m, r, dense, n_layers); break;
    case HF_QWEN2_MOE:
    case HF_QWEN3_MOE: st = hf_map_qwen(c, fam, m, r, dense, n_layers); break;
    case HF_DEEPSEEK_V2:
    case HF_DEEPSEEK_V3: st = hf_map_deepseek(c, fam, m, r, dense, n_layers); break;
    case HF_OLMOE: st = hf_map_olmoe(c, fam, m, r, dense, n_layers); break;
    }
    free(dense);
    if (st) return st;
    HF_TRY(hf_int(c, "num_experts_per_tok", m->n_experts > 0, 2, 0, 1, I32, &v));
    SET(m, top_k, (int32_t)v);
    if (m->n_experts > 0 && m->top_k > m->n_experts)
        return moe_set_error(MOE_EINVAL,
                             "%s: num_experts_per_tok %d exceeds the number of experts "
                             "%d",
                             c->path, m->top_k, m->n_experts);
    if (fam == HF_DEEPSEEK_V2 || fam == HF_DEEPSEEK_V3) HF_TRY(hf_map_groups(c, fam, m, r));
    return MOE_OK;
}

moe_status moe_hf_config_detect(const char *path, int *is_hf) {
    json_error_t err;
    *is_hf = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return moe_set_error(MOE_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return moe_set_error(MOE_EINVAL,
                             "%s: is a directory, not a config file; pass the path of "
                             "a JSON config (see examples/)",
                             path);
    }
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
    fclose(f);
    if (!root)
        return moe_set_error(MOE_EINVAL, "%s:%d:%d: %s", path, err.line, err.column, err.text);
    *is_hf = json_is_object(root) &&
             (json_object_get(root, "model_type") || json_object_get(root, "architectures") ||
              json_object_get(root, "hidden_size"));
    json_decref(root);
    return MOE_OK;
}

moe_status moe_hf_config_load(const char *path, Moe__Config **out, moe_hf_info *info) {
    moe_hf_info local = {0};
    moe_hf_info *inf = info ? info : &local;
    memset(inf, 0, sizeof *inf);
    *out = NULL;
    json_error_t err;
    FILE *f = fopen(path, "rb");
    if (!f) return moe_set_error(MOE_EIO, "%s: cannot open: %s", path, strerror(errno));
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
    fclose(f);
    if (!root)
        return moe_set_error(MOE_EINVAL, "%s:%d:%d: %s", path, err.line, err.column, err.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return moe_set_error(MOE_EINVAL, "%s: expected a JSON object at the top", path);
    }
    hf_ctx c = {.path = path, .root = root, .seen = json_object(), .info = inf};
    Moe__Config *cfg = hf_new_config();
    hf_family fam = HF_MIXTRAL;
    moe_status st = hf_family_of(&c, &fam);
    if (!st) st = hf_map(&c, fam, cfg);
    if (!st) {
        inf->family = moe_xstrdup(hf_families[fam].model_type);
        // Everything not read: known (with its reason) or unknown, in file order.
        const char *key;
        json_t *val;
        json_object_foreach(root, key, val) {
            (void)val;
            if (json_object_get(c.seen, key)) continue;
            const char *why = "unknown field";
            for (size_t i = 0; i < sizeof hf_known_ignored / sizeof hf_known_ignored[0]; i++)
                if (!strcmp(key, hf_known_ignored[i].key)) why = hf_known_ignored[i].reason;
            size_t n = inf->n_ignored;
            hf_push(&n, &inf->ignored_reason, moe_xstrdup(why));
            hf_push(&inf->n_ignored, &inf->ignored, moe_xstrdup(key));
        }
    }
    json_decref(c.seen);
    json_decref(root);
    if (st) {
        protobuf_c_message_free_unpacked(&cfg->base, NULL);
        moe_hf_info_free(inf);
        return st;
    }
    if (!info) moe_hf_info_free(&local);
    *out = cfg;
    return MOE_OK;
}

moe_status moe_model_config_load(const char *path, const char *const *sets, int n_sets,
                                 Moe__Config **out, moe_hf_info *info, int *is_hf) {
    int hf = 0;
    Moe__Config *cfg = NULL;
    moe_hf_info local = {0};
    moe_hf_info *inf = info ? info : &local;
    memset(inf, 0, sizeof *inf);
    *out = NULL;
    moe_status st = strcmp(path, "-") ? moe_hf_config_detect(path, &hf) : MOE_OK;
    if (!st) st = hf ? moe_hf_config_load(path, &cfg, inf) : moe_config_load(path, &cfg);
    for (int i = 0; !st && i < n_sets; i++) st = moe_config_set(cfg, sets[i]);
    if (!st && (st = moe_config_validate(cfg, 0))) {
        moe_set_error(st, "%s: %s", strcmp(path, "-") ? path : "<stdin>", moe_last_error());
    }
    if (st) {
        moe_config_free(cfg);
        moe_hf_info_free(inf);
        return st;
    }
    if (!info) moe_hf_info_free(&local);
    if (is_hf) *is_hf = hf;
    *out = cfg;
    return MOE_OK;
}
