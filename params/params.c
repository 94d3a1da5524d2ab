// params.c: exact parameter accounting for a moe.Config — per component totals and per-token active
// counts, forward FLOPs, per-rank fp32 bytes under (world, EP), LoRA adapters. Everything is closed
// form over the layer kinds (no model is built), in overflow-checked int64; rules in docs/params.md.
#include "params.h"
#include "config.h"

#include <string.h>

// Overflow-checked accumulation: every product and sum goes through these; one flag for the lot.
typedef struct {
    int overflow;
} moe_ck;

static int64_t ck_mul(moe_ck *c, int64_t a, int64_t b) {
    int64_t r;
    if (moe_mul_overflows_i64(a, b, &r)) {
        c->overflow = 1;
        return 0;
    }
    return r;
}
static int64_t ck_mul3(moe_ck *c, int64_t a, int64_t b, int64_t d) {
    return ck_mul(c, ck_mul(c, a, b), d);
}
static int64_t ck_add(moe_ck *c, int64_t a, int64_t b) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) {
        c->overflow = 1;
        return 0;
    }
    return r;
}

static const char *const moe_params_part_names[MOE_PARAMS_N_PARTS] = {
    "embeddings",     "attention",      "norms",     "router",
    "routed_experts", "shared_experts", "dense_ffn", "head",
};

const char *moe_params_part_name(moe_params_part_id id) {
    MOE_ASSERT(id >= 0 && id < MOE_PARAMS_N_PARTS);
    return moe_params_part_names[id];
}

// ---------------------------------------------------------------- shape, resolved once

typedef struct {
    int64_t V, D, L, H, Hkv, Dh;  // vocab, model dim, layers, heads, kv heads, head dim
    int64_t F, Fe, Fs;            // dense FFN, routed expert, shared expert hidden widths
    int64_t E, K, Ns;             // routed experts, top-k, shared experts
    int swiglu, ffn_bias, norm_w; // norm_w: entries per normalised feature (1 rmsnorm, 2 layernorm)
    int mla;
    int64_t Rq, Rkv, Dnope, Drope, Dv; // MLA ranks and head widths
    int64_t r;                         // LoRA rank (0: none)
    int lora_attn, lora_experts, lora_shared, lora_dense, lora_router;
    int lora_train_router, lora_train_norms; // base parts that stay trainable with LoRA
} moe_shape;

static int moe_layer_is_moe(const Moe__ModelConfig *m, int32_t layer) {
    if (m->n_experts <= 0 || layer < m->first_dense_layers) return 0;
    for (size_t i = 0; i < m->n_dense_layers; i++)
        if (m->dense_layers[i] == layer) return 0;
    return 1;
}

static moe_status moe_params_resolve(const Moe__Config *cfg, moe_shape *s) {
    Moe__ModelConfig mdef, *m = cfg->model;
    Moe__LoraConfig ldef, *lo = cfg->lora;
    if (!m) {
        moe__model_config__init(&mdef);
        m = &mdef;
    }
    if (!lo) {
        moe__lora_config__init(&ldef);
        lo = &ldef;
    }
    memset(s, 0, sizeof *s);
    // The enum fields read below name a value (never an unknown number counted as a default).
    moe_status est;
    if ((est = moe_config_check_enum(&moe__model_config__activation__descriptor, (int)m->activation,
                                     "model.activation")) ||
        (est = moe_config_check_enum(&moe__model_config__norm__descriptor, (int)m->norm,
                                     "model.norm")) ||
        (est = moe_config_check_enum(&moe__model_config__positions__descriptor, (int)m->positions,
                                     "model.positions")) ||
        (est = moe_config_check_enum(&moe__model_config__qk_norm__descriptor, (int)m->qk_norm,
                                     "model.qk_norm")))
        return est;
#define MOE_NEED(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) return moe_set_error(MOE_EINVAL, __VA_ARGS__);                                \
    } while (0)
    MOE_NEED(m->vocab_size >= 1, "model.vocab_size: %lld; must be at least 1",
             (long long)m->vocab_size);
    MOE_NEED(m->d_model >= 1, "model.d_model: %lld; must be at least 1", (long long)m->d_model);
    MOE_NEED(m->n_layers >= 1, "model.n_layers: %d; must be at least 1", m->n_layers);
    MOE_NEED(m->n_heads >= 1, "model.n_heads: %d; must be at least 1", m->n_heads);
    MOE_NEED(
        m->d_ff >= 0 && m->expert_d_ff >= 0 && m->shared_expert_d_ff >= 0,
        "model.d_ff %lld, expert_d_ff %lld, shared_expert_d_ff %lld: widths cannot be negative",
        (long long)m->d_ff, (long long)m->expert_d_ff, (long long)m->shared_expert_d_ff);
    s->V = m->vocab_size;
    s->D = m->d_model;
    s->L = m->n_layers;
    s->H = m->n_heads;
    s->mla = m->kv_lora_rank > 0;
    if (s->mla) {
        MOE_NEED(m->q_lora_rank >= 0 && m->qk_nope_head_dim >= 0 && m->qk_rope_head_dim >= 0 &&
                     m->qk_nope_head_dim + m->qk_rope_head_dim > 0 && m->v_head_dim > 0,
                 "model: multi-head latent attention (kv_lora_rank %lld) needs q_lora_rank >= 0, "
                 "qk_nope_head_dim + qk_rope_head_dim > 0 and v_head_dim > 0 (got %lld, %lld, "
                 "%lld, %lld)",
                 (long long)m->kv_lora_rank, (long long)m->q_lora_rank,
                 (long long)m->qk_nope_head_dim, (long long)m->qk_rope_head_dim,
                 (long long)m->v_head_dim);
        MOE_NEED(
            m->qk_norm == MOE__MODEL_CONFIG__QK_NORM__none,
            "model.qk_norm is not defined with multi-head latent attention (kv_lora_rank %lld); "
            "set qk_norm to none (MLA normalises its latents instead)",
            (long long)m->kv_lora_rank);
        s->Rq = m->q_lora_rank;
        s->Rkv = m->kv_lora_rank;
        s->Dnope = m->qk_nope_head_dim;
        s->Drope = m->qk_rope_head_dim;
        s->Dv = m->v_head_dim;
    } else {
        MOE_NEED(m->kv_lora_rank == 0, "model.kv_lora_rank: %lld; must be >= 0",
                 (long long)m->kv_lora_rank);
        MOE_NEED(m->n_kv_heads >= 0 && m->n_kv_heads <= m->n_heads &&
                     (m->n_kv_heads == 0 || m->n_heads % m->n_kv_heads == 0),
                 "model.n_kv_heads: %d must divide model.n_heads %d (0 means n_heads)",
                 m->n_kv_heads, m->n_heads);
        s->Hkv = m->n_kv_heads ? m->n_kv_heads : m->n_heads;
        MOE_NEED(m->head_dim >= 0, "model.head_dim: %d; must be >= 0 (0 means d_model/n_heads)",
                 m->head_dim);
        if (m->head_dim > 0) {
            s->Dh = m->head_dim;
        } else {
            MOE_NEED(
                m->d_model % m->n_heads == 0,
                "model.d_model %lld is not divisible by model.n_heads %d; set model.head_dim or "
                "change n_heads",
                (long long)m->d_model, m->n_heads);
            s->Dh = m->d_model / m->n_heads;
        }
    }
    moe_ck ck = {0};
    s->F = m->d_ff ? m->d_ff : ck_mul(&ck, 4, m->d_model);
    s->Fe = m->expert_d_ff ? m->expert_d_ff : s->F;
    s->Fs = m->shared_expert_d_ff ? m->shared_expert_d_ff : s->Fe;
    if (ck.overflow)
        return moe_set_error(MOE_EINVAL, "model.d_model %lld: 4*d_model overflows",
                             (long long)m->d_model);
    MOE_NEED(m->n_experts >= 0, "model.n_experts: %d; must be >= 0", m->n_experts);
    MOE_NEED(m->first_dense_layers >= 0, "model.first_dense_layers: %d; must be >= 0",
             m->first_dense_layers);
    for (size_t i = 0; i < m->n_dense_layers; i++)
        MOE_NEED(m->dense_layers[i] >= 0 && m->dense_layers[i] < m->n_layers,
                 "model.dense_layers[%zu]: %d is not a layer index (0..%d)", i, m->dense_layers[i],
                 m->n_layers - 1);
    s->E = m->n_experts;
    if (s->E > 0) {
        MOE_NEED(m->top_k >= 1 && m->top_k <= m->n_experts,
                 "model.top_k: %d; must be from 1 to model.n_experts %d", m->top_k, m->n_experts);
        MOE_NEED(m->n_shared_experts >= 0, "model.n_shared_experts: %d; must be >= 0",
                 m->n_shared_experts);
        MOE_NEED(!m->shared_expert_gate || m->n_shared_experts > 0,
                 "model.shared_expert_gate is set but model.n_shared_experts is 0; add shared "
                 "experts or unset the gate");
        s->K = m->top_k;
        s->Ns = m->n_shared_experts;
    }
    s->swiglu = m->activation == MOE__MODEL_CONFIG__ACTIVATION__swiglu;
    s->ffn_bias = m->ffn_bias;
    s->norm_w = m->norm == MOE__MODEL_CONFIG__NORM__layernorm ? 2 : 1;
    if (m->positions == MOE__MODEL_CONFIG__POSITIONS__learned)
        MOE_NEED(m->max_seq_len >= 1, "model.max_seq_len: %lld; learned positions need at least 1",
                 (long long)m->max_seq_len);

    MOE_NEED(lo->rank >= 0, "lora.rank: %d; must be >= 0 (0: no adapters)", lo->rank);
    s->r = lo->rank;
    if (s->r > 0) {
        if (lo->n_targets == 0) s->lora_attn = 1;
        for (size_t i = 0; i < lo->n_targets; i++) {
            // No default: -Wswitch lists a new target here; any other number is refused below.
            switch (lo->targets[i]) {
            case MOE__LORA_CONFIG__TARGET__attention: s->lora_attn = 1; continue;
            case MOE__LORA_CONFIG__TARGET__experts: s->lora_experts = 1; continue;
            case MOE__LORA_CONFIG__TARGET__shared_experts: s->lora_shared = 1; continue;
            case MOE__LORA_CONFIG__TARGET__dense_ffn: s->lora_dense = 1; continue;
            case MOE__LORA_CONFIG__TARGET__router: s->lora_router = 1; continue;
            case _MOE__LORA_CONFIG__TARGET_IS_INT_SIZE: break; // protobuf-c's size marker
            }
            return moe_set_error(MOE_EINVAL, "lora.targets[%zu]: unknown target %d", i,
                                 (int)lo->targets[i]);
        }
        s->lora_train_router = lo->train_router;
        s->lora_train_norms = lo->train_norms;
    }
#undef MOE_NEED
    return MOE_OK;
}

// ---------------------------------------------------------------- per-layer pieces

// One weight matrix (in, out) with an optional bias of width `out`, added to a part: total and
// active scaled by `copies` and `active_copies` (routed experts: E and K), matmul entries counted
// once per active copy, a LoRA adapter r·(in+out) per copy when `lora`.
typedef struct {
    moe_ck ck;
    int64_t r;
    int64_t qk_norm; // qk-norm weights (in the attention part; norms for lora.train_norms)
} moe_acc;

static void moe_add_matrix(moe_acc *a, moe_params_part *p, int64_t in, int64_t out, int bias,
                           int64_t copies, int64_t active_copies, int lora) {
    moe_ck *c = &a->ck;
    int64_t w = ck_mul(c, in, out);
    int64_t wb = ck_add(c, w, bias ? out : 0);
    p->total = ck_add(c, p->total, ck_mul(c, copies, wb));
    p->active = ck_add(c, p->active, ck_mul(c, active_copies, wb));
    p->matmul = ck_add(c, p->matmul, ck_mul(c, active_copies, w));
    if (lora && a->r > 0) {
        int64_t ad = ck_mul(c, a->r, ck_add(c, in, out));
        p->lora_total = ck_add(c, p->lora_total, ck_mul(c, copies, ad));
        p->lora_active = ck_add(c, p->lora_active, ck_mul(c, active_copies, ad));
    }
}

// A vector of n entries used by every token (norm weights, biases outside matrices, the router's
// learned bias): total and active, never matmul.
static void moe_add_vector(moe_acc *a, moe_params_part *p, int64_t n) {
    p->total = ck_add(&a->ck, p->total, n);
    p->active = ck_add(&a->ck, p->active, n);
}

// An FFN of hidden width X: SwiGLU W1,W3 (D,X) and W2 (X,D); GELU W1 (D,X) and W2 (X,D).
static void moe_add_ffn(moe_acc *a, moe_params_part *p, const moe_shape *s, int64_t X,
                        int64_t copies, int64_t active_copies, int lora) {
    moe_add_matrix(a, p, s->D, X, s->ffn_bias, copies, active_copies, lora);                // W1
    if (s->swiglu) moe_add_matrix(a, p, s->D, X, s->ffn_bias, copies, active_copies, lora); // W3
    moe_add_matrix(a, p, X, s->D, s->ffn_bias, copies, active_copies, lora);                // W2
}

static void moe_add_attention(moe_acc *a, moe_params_part *p, const moe_shape *s,
                              const Moe__ModelConfig *m) {
    int qkvb = m->attn_qkv_bias, ob = m->attn_out_bias, lo = s->lora_attn;
    moe_ck *c = &a->ck;
    if (!s->mla) {
        int64_t q = ck_mul(c, s->H, s->Dh), kv = ck_mul(c, s->Hkv, s->Dh);
        moe_add_matrix(a, p, s->D, q, qkvb, 1, 1, lo);  // Wq (D, H·Dh)
        moe_add_matrix(a, p, s->D, kv, qkvb, 1, 1, lo); // Wk (D, Hkv·Dh)
        moe_add_matrix(a, p, s->D, kv, qkvb, 1, 1, lo); // Wv (D, Hkv·Dh)
        moe_add_matrix(a, p, q, s->D, ob, 1, 1, lo);    // Wo (H·Dh, D)
        int64_t qn = 0;
        if (m->qk_norm == MOE__MODEL_CONFIG__QK_NORM__per_head)
            qn = ck_mul(c, 2 * s->norm_w, s->Dh);
        else if (m->qk_norm == MOE__MODEL_CONFIG__QK_NORM__full)
            qn = ck_mul(c, s->norm_w, ck_add(c, q, kv));
        if (qn) moe_add_vector(a, p, qn);
        a->qk_norm = ck_add(c, a->qk_norm, qn);
        return;
    }
    // MLA: biases (attn_qkv_bias) sit on the down projections q_a and kv_a_with_mqa, as in
    // DeepSeek-V2/V3's attention_bias; the up projections q_b / q and kv_b never have one.
    int64_t Dqk = ck_add(c, s->Dnope, s->Drope);
    if (s->Rq > 0) {
        moe_add_matrix(a, p, s->D, s->Rq, qkvb, 1, 1, lo);              // q_a (D, Rq)
        moe_add_vector(a, p, ck_mul(c, s->norm_w, s->Rq));              // q_a norm
        moe_add_matrix(a, p, s->Rq, ck_mul(c, s->H, Dqk), 0, 1, 1, lo); // q_b (Rq, H·Dqk)
    } else {
        moe_add_matrix(a, p, s->D, ck_mul(c, s->H, Dqk), 0, 1, 1, lo); // q (D, H·Dqk)
    }
    moe_add_matrix(a, p, s->D, ck_add(c, s->Rkv, s->Drope), qkvb, 1, 1, lo); // kv_a (D, Rkv+Drope)
    moe_add_vector(a, p, ck_mul(c, s->norm_w, s->Rkv));                      // kv_a norm
    moe_add_matrix(a, p, s->Rkv, ck_mul(c, s->H, ck_add(c, s->Dnope, s->Dv)), 0, 1, 1, lo); // kv_b
    moe_add_matrix(a, p, ck_mul(c, s->H, s->Dv), s->D, ob, 1, 1, lo); // o (H·Dv, D)
}

// ---------------------------------------------------------------- the report

moe_status moe_params_count(const Moe__Config *cfg, int world, int ep, moe_params_report *out) {
    MOE_ASSERT(cfg && out);
    memset(out, 0, sizeof *out);
    moe_shape s;
    moe_status st = moe_params_resolve(cfg, &s);
    if (st) return st;
    Moe__ModelConfig mdef;
    Moe__RouterConfig rdef;
    Moe__TrainConfig tdef;
    const Moe__ModelConfig *m = cfg->model;
    const Moe__RouterConfig *rc = cfg->router;
    const Moe__TrainConfig *tc = cfg->train;
    if (!m) {
        moe__model_config__init(&mdef);
        m = &mdef;
    }
    if (!rc) {
        moe__router_config__init(&rdef);
        rc = &rdef;
    }
    if (!tc) {
        moe__train_config__init(&tdef);
        tc = &tdef;
    }

    // Layout: EP ranks share one copy of every expert; W = EP × EDP.
    if (ep <= 0) ep = cfg->parallel && cfg->parallel->ep_size > 0 ? cfg->parallel->ep_size : 1;
    if (world <= 0) world = ep;
    if (world % ep != 0)
        return moe_set_error(MOE_ELAYOUT,
                             "layout: ep %d does not divide world %d; choose ep among "
                             "the divisors of the number of ranks",
                             ep, world);
    if (s.E > 0 && s.E % ep != 0)
        return moe_set_error(MOE_ELAYOUT,
                             "layout: model.n_experts %lld is not divisible by ep %d; "
                             "choose ep dividing the number of experts",
                             (long long)s.E, ep);
    if (s.E == 0 && ep > 1)
        return moe_set_error(MOE_ELAYOUT,
                             "layout: ep %d with a dense model (model.n_experts 0); "
                             "use ep 1",
                             ep);
    if (tc->seq_len < 1)
        return moe_set_error(MOE_EINVAL, "train.seq_len: %d; must be at least 1", tc->seq_len);

    moe_acc a = {.ck = {0}, .r = s.r};
    moe_ck *c = &a.ck;
    moe_params_part *P = out->part;

    // Embeddings: the token table, and the learned position table; both counted as active.
    moe_add_vector(&a, &P[MOE_PARAMS_EMBEDDINGS], ck_mul(c, s.V, s.D));
    if (m->positions == MOE__MODEL_CONFIG__POSITIONS__learned)
        moe_add_vector(&a, &P[MOE_PARAMS_EMBEDDINGS], ck_mul(c, m->max_seq_len, s.D));

    int64_t balance_bias = rc->bias_update_rate > 0; // aux-loss-free bias: state, not trained
    for (int32_t l = 0; l < m->n_layers; l++) {
        moe_add_attention(&a, &P[MOE_PARAMS_ATTENTION], &s, m);
        moe_add_vector(&a, &P[MOE_PARAMS_NORMS], ck_mul(c, 2 * s.norm_w, s.D)); // pre-attn, pre-FFN
        if (!moe_layer_is_moe(m, l)) {
            out->n_dense_layers++;
            moe_add_ffn(&a, &P[MOE_PARAMS_DENSE_FFN], &s, s.F, 1, 1, s.lora_dense);
            continue;
        }
        out->n_moe_layers++;
        moe_params_part *R = &P[MOE_PARAMS_ROUTER];
        moe_add_matrix(&a, R, s.D, s.E, m->router_bias, 1, 1, s.lora_router); // gate (D, E)
        if (balance_bias) {
            moe_add_vector(&a, R, s.E);
            R->untrained = ck_add(c, R->untrained, s.E);
        }
        moe_add_ffn(&a, &P[MOE_PARAMS_ROUTED_EXPERTS], &s, s.Fe, s.E, s.K, s.lora_experts);
        if (s.Ns > 0) {
            moe_add_ffn(&a, &P[MOE_PARAMS_SHARED_EXPERTS], &s, s.Fs, s.Ns, s.Ns, s.lora_shared);
            if (m->shared_expert_gate) // (D, 1), no adapter: LoRA of a vector is not smaller
                moe_add_matrix(&a, &P[MOE_PARAMS_SHARED_EXPERTS], s.D, 1, 0, 1, 1, 0);
        }
    }
    moe_add_vector(&a, &P[MOE_PARAMS_NORMS], ck_mul(c, s.norm_w, s.D)); // final norm
    // Head (D, V): no parameters of its own when tied, but the matmul is done either way.
    if (!m->tie_embeddings) {
        moe_add_vector(&a, &P[MOE_PARAMS_HEAD], ck_mul(c, s.D, s.V));
    }
    P[MOE_PARAMS_HEAD].matmul = ck_mul(c, s.D, s.V);

    // Per rank: routed experts (and their adapters) split E/EP per MoE layer, the rest replicated.
    int64_t matmul = 0, lora_matmul = 0, rank_untrained = 0;
    for (int i = 0; i < MOE_PARAMS_N_PARTS; i++) {
        moe_params_part *p = &P[i];
        int split = i == MOE_PARAMS_ROUTED_EXPERTS;
        p->per_rank = split ? p->total / ep : p->total;
        p->lora_per_rank = split ? p->lora_total / ep : p->lora_total;
        out->total = ck_add(c, out->total, p->total);
        out->active = ck_add(c, out->active, p->active);
        out->lora_total = ck_add(c, out->lora_total, p->lora_total);
        out->lora_active = ck_add(c, out->lora_active, p->lora_active);
        out->untrained = ck_add(c, out->untrained, p->untrained);
        out->rank_params = ck_add(c, out->rank_params, ck_add(c, p->per_rank, p->lora_per_rank));
        rank_untrained = ck_add(c, rank_untrained, p->untrained); // replicated (router part)
        matmul = ck_add(c, matmul, p->matmul);
        lora_matmul = ck_add(c, lora_matmul, p->lora_active); // adapters are all matrices
    }
    out->active_nonembedding = out->active - P[MOE_PARAMS_EMBEDDINGS].active;
    out->active_ratio = out->total ? (double)out->active / (double)out->total : 0.0;
    out->n_layers = m->n_layers;
    if (s.r > 0) {
        // The adapters train, and the base parts lora.train_router / train_norms name (both
        // replicated on every rank); the rest of the base is frozen.
        int64_t base_trained = 0;
        if (s.lora_train_router)
            base_trained = ck_add(c, base_trained,
                                  P[MOE_PARAMS_ROUTER].total - P[MOE_PARAMS_ROUTER].untrained);
        if (s.lora_train_norms)
            base_trained = ck_add(c, base_trained, ck_add(c, P[MOE_PARAMS_NORMS].total, a.qk_norm));
        out->trainable = ck_add(c, out->lora_total, base_trained);
        out->frozen = out->total - out->untrained - base_trained;
        // Of what a rank holds, only its adapters (and those base parts) train.
        int64_t rank_lora = base_trained;
        for (int i = 0; i < MOE_PARAMS_N_PARTS; i++)
            rank_lora = ck_add(c, rank_lora, P[i].lora_per_rank);
        out->rank_trainable = rank_lora;
    } else {
        out->trainable = out->total - out->untrained;
        out->frozen = 0;
        out->rank_trainable = out->rank_params - rank_untrained;
    }

    // FLOPs per token, forward: 2 per multiply-add of a weight entry (base + adapters).
    out->flops_per_token = ck_mul(c, 2, ck_add(c, matmul, lora_matmul));
    // Attention scores and mixing at seq_len S: per layer QKᵀ 2·S·H·Dqk and AV 2·S·H·Dv, each token
    // against all S positions (full context); the causal average attends (S+1)/2 positions.
    int64_t Dqk = s.mla ? s.Dnope + s.Drope : s.Dh, Dv = s.mla ? s.Dv : s.Dh;
    int64_t per_pos = ck_mul3(c, s.L, s.H, ck_add(c, Dqk, Dv)); // L·H·(Dqk+Dv)
    out->seq_len = tc->seq_len;
    out->attn_flops_per_token = ck_mul3(c, 2, tc->seq_len, per_pos);
    out->attn_flops_per_token_causal = ck_mul(c, (int64_t)tc->seq_len + 1, per_pos);

    // Routing restriction: printed next to the counts, which it does not change.
    out->n_experts = (int32_t)s.E;
    out->top_k = s.E > 0 ? (int32_t)s.K : 0;
    out->node_limited = s.E > 0 && rc->node_limited;
    out->n_group = s.E > 0 && rc->n_group > 1 && !rc->node_limited ? rc->n_group : 0;
    out->topk_group = out->n_group || out->node_limited ? rc->topk_group : 0;
    out->group_score = (int32_t)rc->group_score;
    out->reachable_experts = out->node_limited ? 0
                             : out->n_group    ? (int64_t)out->topk_group * (s.E / out->n_group)
                                               : s.E;
    out->world = world;
    out->ep = ep;
    out->edp = world / ep;
    out->rank_param_bytes = ck_mul(c, 4, out->rank_params);
    out->rank_grad_bytes = ck_mul(c, 4, out->rank_trainable);
    out->rank_adam_bytes = ck_mul(c, 8, out->rank_trainable);
    out->rank_bytes =
        ck_add(c, out->rank_param_bytes, ck_add(c, out->rank_grad_bytes, out->rank_adam_bytes));
    int64_t rank_base = 0; // what a rank holds of the base model
    for (int i = 0; i < MOE_PARAMS_N_PARTS; i++) rank_base = ck_add(c, rank_base, P[i].per_rank);
    out->rank_full_state_bytes = ck_mul(c, 12, rank_base - rank_untrained);
    if (c->overflow) {
        memset(out, 0, sizeof *out);
        return moe_set_error(MOE_EINVAL,
                             "parameter count overflows 64-bit integers (model.d_model "
                             "%lld, n_layers %d, n_experts %d, vocab_size %lld); check the shape",
                             (long long)s.D, m->n_layers, m->n_experts, (long long)s.V);
    }
    return MOE_OK;
}

// ---------------------------------------------------------------- resolved defaults

// As model.c decides it: MoE when n_experts > 0, l >= first_dense_layers, not in dense_layers.
static int moe_params_is_moe_layer(const Moe__ModelConfig *mc, int l) {
    if (mc->n_experts <= 0 || l < mc->first_dense_layers) return 0;
    for (size_t i = 0; i < mc->n_dense_layers; i++)
        if (mc->dense_layers[i] == l) return 0;
    return 1;
}

void moe_params_normalize_model(Moe__ModelConfig *mc) {
#define SETF(f, v) (mc->has_##f = 1, mc->f = (v))
    SETF(d_ff, mc->d_ff > 0 ? mc->d_ff : 4 * mc->d_model);
    SETF(expert_d_ff, mc->expert_d_ff > 0 ? mc->expert_d_ff : mc->d_ff);
    SETF(n_kv_heads, mc->n_kv_heads > 0 ? mc->n_kv_heads : mc->n_heads);
    if (mc->n_heads > 0)
        SETF(head_dim, mc->head_dim > 0 ? mc->head_dim : (int32_t)(mc->d_model / mc->n_heads));
    if (mc->n_shared_experts > 0)
        SETF(shared_expert_d_ff,
             mc->shared_expert_d_ff > 0 ? mc->shared_expert_d_ff : mc->expert_d_ff);
    if (mc->n_experts > 0) { // dense layers as (leading count, the others listed)
        const int L = mc->n_layers;
        int *dense = moe_xcalloc((size_t)(L > 0 ? L : 1), sizeof *dense), first = 0;
        for (int l = 0; l < L; l++) dense[l] = !moe_params_is_moe_layer(mc, l);
        while (first < L && dense[first]) first++;
        SETF(first_dense_layers, first);
        free(mc->dense_layers);
        mc->dense_layers = NULL;
        mc->n_dense_layers = 0;
        for (int l = first; l < L; l++)
            if (dense[l]) {
                if (!mc->dense_layers) mc->dense_layers = moe_xcalloc((size_t)L, sizeof(int32_t));
                mc->dense_layers[mc->n_dense_layers++] = l;
            }
        if (first == 0 && mc->n_dense_layers == 0) // d_ff is read by dense layers only
            mc->d_ff = 0, mc->has_d_ff = 0;
        free(dense);
    }
#undef SETF
}
