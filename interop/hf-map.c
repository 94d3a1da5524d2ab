// hf-map.c: which Hugging Face class a moe model is, and the name map between moe's parameter
// table and transformers' state dict — one list of (HF name, HF shape, moe tensors, op) that
// export reads forwards and import backwards through the same index arithmetic (moe_hf_move).
#include "interop.h"
#include "nn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *moe_hf_arch_class(moe_hf_arch a) {
    switch (a) {
    case MOE_HF_MIXTRAL: return "MixtralForCausalLM";
    case MOE_HF_QWEN2_MOE: return "Qwen2MoeForCausalLM";
    case MOE_HF_QWEN3_MOE: return "Qwen3MoeForCausalLM";
    case MOE_HF_OLMOE: return "OlmoeForCausalLM";
    case MOE_HF_N_ARCH: break;
    }
    return "?";
}

const char *moe_hf_arch_type(moe_hf_arch a) {
    switch (a) {
    case MOE_HF_MIXTRAL: return "mixtral";
    case MOE_HF_QWEN2_MOE: return "qwen2_moe";
    case MOE_HF_QWEN3_MOE: return "qwen3_moe";
    case MOE_HF_OLMOE: return "olmoe";
    case MOE_HF_N_ARCH: break;
    }
    return "?";
}

// As model.c decides it: MoE when n_experts > 0, l >= first_dense_layers, not in dense_layers.
static int moe_hf_is_moe_layer(const Moe__ModelConfig *mc, int l) {
    if (mc->n_experts <= 0 || l < mc->first_dense_layers) return 0;
    for (size_t i = 0; i < mc->n_dense_layers; i++)
        if (mc->dense_layers[i] == l) return 0;
    return 1;
}

#define REFUSE(...) return moe_set_error(MOE_EINVAL, __VA_ARGS__)

moe_status moe_hf_arch_of(const Moe__Config *cfg, moe_hf_arch *out) {
    const Moe__ModelConfig *mc = cfg->model;
    Moe__RouterConfig rdef;
    moe__router_config__init(&rdef);
    const Moe__RouterConfig *rc = cfg->router ? cfg->router : &rdef;
    if (!mc) REFUSE("the config has no model section");
    if (mc->n_experts <= 0)
        REFUSE("model.n_experts = %d: a dense model; moe export writes the MoE classes "
               "(Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE)",
               mc->n_experts);
    if (mc->positions != MOE__MODEL_CONFIG__POSITIONS__rope)
        REFUSE("model.positions = learned: the HF MoE classes use rotary positions only");
    if (mc->norm != MOE__MODEL_CONFIG__NORM__rmsnorm)
        REFUSE("model.norm = layernorm: the HF MoE classes use RMSNorm");
    if (mc->activation != MOE__MODEL_CONFIG__ACTIVATION__swiglu)
        REFUSE("model.activation = gelu: the HF MoE classes use SwiGLU (silu) FFNs");
    if (mc->kv_lora_rank > 0 || mc->q_lora_rank > 0)
        REFUSE("model.kv_lora_rank / q_lora_rank: multi-head latent attention has no exported "
               "class");
    if (mc->attn_out_bias && mc->qk_norm == MOE__MODEL_CONFIG__QK_NORM__none)
        REFUSE("model.attn_out_bias = true: only Qwen3-MoE (qk_norm per_head) and OLMoE (qk_norm "
               "full) have an o_proj bias");
    if (mc->ffn_bias)
        REFUSE("model.ffn_bias = true: the HF MoE classes' FFNs and experts have no biases");
    if (mc->router_bias)
        REFUSE("model.router_bias = true: the HF gate (nn.Linear(D, E, bias=False)) has no "
               "bias");
    if (cfg->lora && cfg->lora->rank > 0)
        REFUSE("lora.rank = %d: LoRA adapters are not exported; merge them first", cfg->lora->rank);
    if (rc->scoring != MOE__ROUTER_CONFIG__SCORING__softmax)
        REFUSE("router.scoring = sigmoid: the HF classes score experts with a softmax");
    if (rc->strategy != MOE__ROUTER_CONFIG__STRATEGY__token_choice)
        REFUSE("router.strategy = expert_choice: the HF classes route by token choice (top-k)");
    if (rc->capacity_factor > 0)
        REFUSE("router.capacity_factor = %g: the HF classes are dropless; a model trained with "
               "dropped tokens computes another function there (set 0 and fine-tune)",
               rc->capacity_factor);
    if (rc->bias_update_rate > 0)
        REFUSE("router.bias_update_rate = %g: the aux-loss-free balance bias changes which "
               "experts are selected, and the HF classes have no such bias",
               rc->bias_update_rate);
    if (rc->n_group > 1 || rc->node_limited)
        REFUSE("router.n_group = %d%s: group-limited routing has no HF class among Mixtral, "
               "Qwen2-MoE, Qwen3-MoE, OLMoE",
               rc->n_group, rc->node_limited ? " (node_limited)" : "");
    if (rc->routed_scaling != 1.0)
        REFUSE("router.routed_scaling = %g: the HF classes do not scale the combine weights",
               rc->routed_scaling);
    int dense = 0;
    for (int l = 0; l < mc->n_layers; l++) dense += !moe_hf_is_moe_layer(mc, l);
    const int64_t H = mc->n_heads, Dh = mc->head_dim > 0 ? mc->head_dim : mc->d_model / H;
    if (mc->qk_norm == MOE__MODEL_CONFIG__QK_NORM__per_head) {
        if (mc->n_shared_experts > 0)
            REFUSE("model.n_shared_experts = %d with qk_norm per_head: Qwen3-MoE (the class with "
                   "q/k norms) has no shared experts",
                   mc->n_shared_experts);
        if (mc->attn_qkv_bias != mc->attn_out_bias)
            REFUSE("model.attn_qkv_bias = %s, attn_out_bias = %s with qk_norm per_head: "
                   "Qwen3-MoE's attention_bias puts biases on q, k, v and o_proj together",
                   mc->attn_qkv_bias ? "true" : "false", mc->attn_out_bias ? "true" : "false");
        *out = MOE_HF_QWEN3_MOE;
        return MOE_OK;
    }
    if (mc->qk_norm == MOE__MODEL_CONFIG__QK_NORM__full) { // OlmoeAttention, OlmoeSparseMoeBlock
        if (mc->n_shared_experts > 0)
            REFUSE("model.n_shared_experts = %d with qk_norm full: OLMoE (the class with q/k "
                   "norms over the whole projections) has no shared experts",
                   mc->n_shared_experts);
        if (mc->attn_qkv_bias != mc->attn_out_bias)
            REFUSE("model.attn_qkv_bias = %s, attn_out_bias = %s with qk_norm full: OLMoE's "
                   "attention_bias puts biases on q, k, v and o_proj together",
                   mc->attn_qkv_bias ? "true" : "false", mc->attn_out_bias ? "true" : "false");
        if (dense > 0)
            REFUSE("model.first_dense_layers / dense_layers: %d dense layers, and OLMoE has an "
                   "MoE FFN in every layer",
                   dense);
        if (H * Dh != mc->d_model) // q_norm has width hidden_size; head_dim is not a field
            REFUSE("model.head_dim = %lld: OLMoE's head dim is hidden_size / num_attention_heads "
                   "(%lld × %lld != %lld)",
                   (long long)Dh, (long long)H, (long long)Dh, (long long)mc->d_model);
        *out = MOE_HF_OLMOE; // router.renormalize either way: norm_topk_prob
        return MOE_OK;
    }
    if (mc->n_shared_experts > 0 || mc->attn_qkv_bias) {
        if (mc->n_shared_experts <= 0)
            REFUSE("model.attn_qkv_bias = true without shared experts: Qwen2-MoE (the class with "
                   "q/k/v biases) always has a gated shared expert, Mixtral has no biases");
        if (!mc->shared_expert_gate)
            REFUSE("model.shared_expert_gate = false: Qwen2-MoE always scales its shared expert "
                   "by sigmoid(x·w); set shared_expert_gate");
        if (H * Dh != mc->d_model)
            REFUSE("model.head_dim = %lld: Qwen2-MoE needs n_heads × head_dim = d_model "
                   "(%lld × %lld != %lld)",
                   (long long)Dh, (long long)H, (long long)Dh, (long long)mc->d_model);
        *out = MOE_HF_QWEN2_MOE;
        return MOE_OK;
    }
    if (!rc->renormalize)
        REFUSE("router.renormalize = false: Mixtral always renormalises the top-k weights (and "
               "the Qwen classes, which take norm_topk_prob, need qk_norm or shared experts)");
    if (dense > 0)
        REFUSE("model.first_dense_layers / dense_layers: %d dense layers, and Mixtral has an MoE "
               "FFN in every layer",
               dense);
    *out = MOE_HF_MIXTRAL;
    return MOE_OK;
}

// ---------------------------------------------------------------- the map

// The table entry called "layers.<layer>.<what>" (layer < 0: "<what>") of global expert `expert`
// (-1: not an expert tensor), or -1.
static int moe_hf_find(const moe_model *m, int layer, const char *what, int expert) {
    char name[64];
    if (layer >= 0)
        snprintf(name, sizeof name, "layers.%d.%s", layer, what);
    else
        snprintf(name, sizeof name, "%s", what);
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].expert == expert && !strcmp(m->tensors[i].name, name)) return i;
    return -1;
}

typedef struct {
    const moe_model *m;
    moe_hf_entry *e;
    int n, cap;
} moe_hf_list;

// Adds an entry for moe tensor `what` of `layer` (expert, n_src consecutive for CAT ops); the HF
// shape follows from the moe shape and the op. A missing moe tensor is a programmer error except
// for MOE_HF_ZERO, whose shape is given as (d0) (1-D only).
static void moe_hf_add(moe_hf_list *L, int layer, const char *what, int expert, int n_src,
                       moe_hf_op op, int64_t zero_n, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
static void moe_hf_add(moe_hf_list *L, int layer, const char *what, int expert, int n_src,
                       moe_hf_op op, int64_t zero_n, const char *fmt, ...) {
    if (L->n == L->cap) {
        L->cap = L->cap ? 2 * L->cap : 256;
        L->e = realloc(L->e, (size_t)L->cap * sizeof *L->e);
        MOE_ASSERT(L->e);
    }
    moe_hf_entry *e = &L->e[L->n++];
    memset(e, 0, sizeof *e);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    e->op = op;
    e->n_src = n_src;
    if (op == MOE_HF_ZERO) {
        e->src = -1, e->ndim = 1, e->shape[0] = zero_n;
        return;
    }
    e->src = moe_hf_find(L->m, layer, what, expert);
    MOE_ASSERT(e->src >= 0);
    const moe_model_tensor *t = &L->m->tensors[e->src];
    switch (op) {
    case MOE_HF_COPY:
        e->ndim = t->ndim, e->shape[0] = t->shape[0], e->shape[1] = t->shape[1];
        break;
    case MOE_HF_T: e->ndim = 2, e->shape[0] = t->shape[1], e->shape[1] = t->shape[0]; break;
    case MOE_HF_CAT_T0:
        e->ndim = 2, e->shape[0] = n_src * t->shape[1], e->shape[1] = t->shape[0];
        break;
    case MOE_HF_CAT_T1:
        e->ndim = 2, e->shape[0] = t->shape[1], e->shape[1] = n_src * t->shape[0];
        break;
    case MOE_HF_ZERO: break;
    }
}

moe_status moe_hf_map(const moe_model *m, moe_hf_arch a, moe_hf_entry **out, int *n) {
    MOE_ASSERT(m->El == m->E); // every expert local (built at world 1)
    moe_hf_list L = {.m = m};
    const Moe__ModelConfig *mc = m->mc;
    const int mix = a == MOE_HF_MIXTRAL, qwen2 = a == MOE_HF_QWEN2_MOE;
    const int qk = a == MOE_HF_QWEN3_MOE || a == MOE_HF_OLMOE; // q_norm, k_norm; attention_bias
    const int Ns = mc->n_shared_experts;
    moe_hf_add(&L, -1, "wte", -1, 1, MOE_HF_COPY, 0, "model.embed_tokens.weight");
    for (int l = 0; l < m->L; l++) {
        const char *p = "model.layers";
        moe_hf_add(&L, l, "attn_norm", -1, 1, MOE_HF_COPY, 0, "%s.%d.input_layernorm.weight", p, l);
        static const char *const qkv[3] = {"q", "k", "v"};
        for (int j = 0; j < 3; j++) {
            char w[16], b[16];
            snprintf(w, sizeof w, "attn.w%s", qkv[j]);
            snprintf(b, sizeof b, "attn.b%s", qkv[j]);
            moe_hf_add(&L, l, w, -1, 1, MOE_HF_T, 0, "%s.%d.self_attn.%s_proj.weight", p, l,
                       qkv[j]);
            if (qwen2 || (qk && mc->attn_qkv_bias)) {
                const int64_t width = (j == 0 ? m->H : m->Hkv) * m->Dh;
                const int has = mc->attn_qkv_bias;
                moe_hf_add(&L, l, b, -1, 1, has ? MOE_HF_COPY : MOE_HF_ZERO, width,
                           "%s.%d.self_attn.%s_proj.bias", p, l, qkv[j]);
            }
        }
        moe_hf_add(&L, l, "attn.wo", -1, 1, MOE_HF_T, 0, "%s.%d.self_attn.o_proj.weight", p, l);
        if (mc->attn_out_bias) // Qwen3-MoE, OLMoE with attention_bias (moe_hf_arch_of)
            moe_hf_add(&L, l, "attn.bo", -1, 1, MOE_HF_COPY, 0, "%s.%d.self_attn.o_proj.bias", p,
                       l);
        if (qk) { // Qwen3-MoE (Dh), OLMoE (H·Dh and Hkv·Dh): moe's widths are the same
            moe_hf_add(&L, l, "attn.q_norm", -1, 1, MOE_HF_COPY, 0, "%s.%d.self_attn.q_norm.weight",
                       p, l);
            moe_hf_add(&L, l, "attn.k_norm", -1, 1, MOE_HF_COPY, 0, "%s.%d.self_attn.k_norm.weight",
                       p, l);
        }
        moe_hf_add(&L, l, "ffn_norm", -1, 1, MOE_HF_COPY, 0,
                   "%s.%d.post_attention_layernorm.weight", p, l);
        if (m->moe_index[l] < 0) { // dense FFN (Qwen classes: mlp_only_layers)
            MOE_ASSERT(!mix);
            moe_hf_add(&L, l, "ffn.w1", -1, 1, MOE_HF_T, 0, "%s.%d.mlp.gate_proj.weight", p, l);
            moe_hf_add(&L, l, "ffn.w3", -1, 1, MOE_HF_T, 0, "%s.%d.mlp.up_proj.weight", p, l);
            moe_hf_add(&L, l, "ffn.w2", -1, 1, MOE_HF_T, 0, "%s.%d.mlp.down_proj.weight", p, l);
            continue;
        }
        const char *blk = mix ? "block_sparse_moe" : "mlp";
        moe_hf_add(&L, l, "router.wg", -1, 1, MOE_HF_T, 0, "%s.%d.%s.gate.weight", p, l, blk);
        for (int e = 0; e < m->E; e++) {
            static const char *const mixn[3] = {"w1", "w3", "w2"};
            static const char *const qwn[3] = {"gate_proj", "up_proj", "down_proj"};
            static const char *const src[3] = {"experts.w1", "experts.w3", "experts.w2"};
            for (int j = 0; j < 3; j++)
                moe_hf_add(&L, l, src[j], e, 1, MOE_HF_T, 0, "%s.%d.%s.experts.%d.%s.weight", p, l,
                           blk, e, mix ? mixn[j] : qwn[j]);
        }
        if (qwen2) {
            moe_hf_add(&L, l, "shared.0.w1", -1, Ns, MOE_HF_CAT_T0, 0,
                       "%s.%d.mlp.shared_expert.gate_proj.weight", p, l);
            moe_hf_add(&L, l, "shared.0.w3", -1, Ns, MOE_HF_CAT_T0, 0,
                       "%s.%d.mlp.shared_expert.up_proj.weight", p, l);
            moe_hf_add(&L, l, "shared.0.w2", -1, Ns, MOE_HF_CAT_T1, 0,
                       "%s.%d.mlp.shared_expert.down_proj.weight", p, l);
            moe_hf_add(&L, l, "shared.ws", -1, 1, MOE_HF_COPY, 0,
                       "%s.%d.mlp.shared_expert_gate.weight", p, l);
            moe_hf_entry *g = &L.e[L.n - 1]; // (D) in moe, (1, D) in nn.Linear(D, 1)
            g->ndim = 2, g->shape[0] = 1, g->shape[1] = m->D;
        }
    }
    moe_hf_add(&L, -1, "final_norm", -1, 1, MOE_HF_COPY, 0, "model.norm.weight");
    if (!m->tied) moe_hf_add(&L, -1, "head", -1, 1, MOE_HF_T, 0, "lm_head.weight");
    // Shared experts of a CAT entry must be consecutive table entries (model-build.c adds the
    // family "shared.<s>.w1" for s = 0..Ns-1 in order).
    for (int i = 0; i < L.n; i++)
        for (int s = 1; s < L.e[i].n_src; s++) {
            const moe_model_tensor *t0 = &m->tensors[L.e[i].src], *ts = t0 + s;
            MOE_ASSERT(ts->layer == t0->layer && ts->shape[0] == t0->shape[0] &&
                       ts->shape[1] == t0->shape[1]);
        }
    *out = L.e;
    *n = L.n;
    return MOE_OK;
}

void moe_hf_move(moe_model *m, const moe_hf_entry *e, float *hf, int to_hf) {
    const int64_t numel = e->shape[0] * (e->ndim == 2 ? e->shape[1] : 1);
    if (e->op == MOE_HF_ZERO) {
        if (to_hf) memset(hf, 0, (size_t)numel * sizeof *hf);
        return;
    }
    for (int s = 0; s < e->n_src; s++) {
        const moe_model_tensor *t = &m->tensors[e->src + s];
        float *w = m->params + t->offset;
        const int64_t a = t->shape[0], b = t->ndim == 2 ? t->shape[1] : 1;
        switch (e->op) {
        case MOE_HF_COPY:
            MOE_ASSERT(t->n == numel);
            if (to_hf)
                memcpy(hf, w, (size_t)numel * sizeof *hf);
            else
                memcpy(w, hf, (size_t)numel * sizeof *hf);
            break;
        case MOE_HF_T:      // moe (a, b) [i][j] <-> HF (b, a) [j][i]
        case MOE_HF_CAT_T0: // block s: HF rows [s·b, (s+1)·b) of (n·b, a)
            for (int64_t i = 0; i < a; i++)
                for (int64_t j = 0; j < b; j++) {
                    float *h = hf + (s * b + j) * a + i;
                    if (to_hf)
                        *h = w[i * b + j];
                    else
                        w[i * b + j] = *h;
                }
            break;
        case MOE_HF_CAT_T1: { // moe (F, D) [f][d] <-> HF (D, n·F) [d][s·F + f]
            const int64_t ld = e->n_src * a;
            for (int64_t i = 0; i < a; i++)
                for (int64_t j = 0; j < b; j++) {
                    float *h = hf + j * ld + s * a + i;
                    if (to_hf)
                        *h = w[i * b + j];
                    else
                        w[i * b + j] = *h;
                }
            break;
        }
        case MOE_HF_ZERO: break;
        }
    }
}
