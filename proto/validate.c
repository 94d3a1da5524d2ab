// validate.c: semantic checks of a moe.Config that the schema cannot express (sizes, divisibility,
// cross-field consistency, the parallel layout). All problems are reported at once, one per
// line, each naming the fields, their values and what to change; absent sub-messages count as
// their defaults.
#include "config-impl.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

// The problems, one a line; a list too long for one error message ends "... and N more".
typedef struct {
    char msg[MOE_ERROR_MAX];
    moe_list list;
} moe_vlog;

static void moe_vfail(moe_vlog *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void moe_vfail(moe_vlog *log, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    moe_list_vadd(&log->list, fmt, ap);
    va_end(ap);
}

#define MOE_POS(log, name, v)                                                                      \
    do {                                                                                           \
        if ((v) <= 0)                                                                              \
            moe_vfail(log, "%s = %lld: must be positive; set it to 1 or more", name,               \
                      (long long)(v));                                                             \
    } while (0)
#define MOE_NONNEG(log, name, v)                                                                   \
    do {                                                                                           \
        if ((v) < 0) moe_vfail(log, "%s = %lld: must be 0 or more", name, (long long)(v));         \
    } while (0)

static void moe_vcoef(moe_vlog *log, const char *name, double v, const char *meaning) {
    if (!isfinite(v) || v < 0)
        moe_vfail(log, "%s = %g: must be a finite number >= 0 (%s)", name, v, meaning);
}

// Far above any published model (DeepSeek-V3: 61), and low enough that per-layer work over a
// config (parameter counting, the layer table) stays instant: 2^30 layers took a minute to count.
#define MOE_MAX_LAYERS 65536

static void moe_check_model(moe_vlog *log, const Moe__ModelConfig *m, const Moe__TrainConfig *t) {
    MOE_POS(log, "model.vocab_size", m->vocab_size);
    MOE_POS(log, "model.d_model", m->d_model);
    MOE_POS(log, "model.n_layers", m->n_layers);
    if (m->n_layers > MOE_MAX_LAYERS)
        moe_vfail(log, "model.n_layers = %d: at most %d layers are supported; use fewer layers",
                  m->n_layers, MOE_MAX_LAYERS);
    MOE_POS(log, "model.n_heads", m->n_heads);
    MOE_POS(log, "model.max_seq_len", m->max_seq_len);
    if (!isfinite(m->rope_theta) || m->rope_theta <= 1)
        moe_vfail(log, "model.rope_theta = %g: the RoPE base must be a finite number > 1 "
                       "(10000 by default; Mixtral uses 1e6)",
                  m->rope_theta);
    if (!isfinite(m->norm_eps) || m->norm_eps <= 0 || m->norm_eps >= 1)
        moe_vfail(log, "model.norm_eps = %g: the RMSNorm epsilon must be in (0, 1) (1e-5 by "
                       "default; Qwen uses 1e-6)",
                  m->norm_eps);
    MOE_NONNEG(log, "model.n_kv_heads", m->n_kv_heads);
    MOE_NONNEG(log, "model.head_dim", m->head_dim);
    MOE_NONNEG(log, "model.d_ff", m->d_ff);
    MOE_NONNEG(log, "model.n_experts", m->n_experts);
    MOE_NONNEG(log, "model.expert_d_ff", m->expert_d_ff);
    MOE_NONNEG(log, "model.n_shared_experts", m->n_shared_experts);
    MOE_NONNEG(log, "model.shared_expert_d_ff", m->shared_expert_d_ff);
    MOE_NONNEG(log, "model.q_lora_rank", m->q_lora_rank);
    MOE_NONNEG(log, "model.kv_lora_rank", m->kv_lora_rank);
    MOE_NONNEG(log, "model.qk_nope_head_dim", m->qk_nope_head_dim);
    MOE_NONNEG(log, "model.qk_rope_head_dim", m->qk_rope_head_dim);
    MOE_NONNEG(log, "model.v_head_dim", m->v_head_dim);
    // Counts that size loops and per-layer / per-expert tables: bounded so that a typo (2^31
    // layers) is refused at once instead of running moe params or the allocator for minutes.
    // (Sizes such as d_model are int64, their products overflow-checked below and in params/.)
    const struct {
        const char *name;
        int64_t v, max;
    } lim[] = {{"model.n_layers", m->n_layers, MOE_MAX_LAYERS},
               {"model.n_heads", m->n_heads, MOE_MAX_HEADS},
               {"model.n_kv_heads", m->n_kv_heads, MOE_MAX_HEADS},
               {"model.n_experts", m->n_experts, MOE_MAX_EXPERTS},
               {"model.n_shared_experts", m->n_shared_experts, MOE_MAX_EXPERTS}};
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++)
        if (lim[i].v > lim[i].max)
            moe_vfail(log,
                      "%s = %" PRId64 " exceeds the limit %" PRId64
                      " (docs/config.md, Validation); use a smaller value",
                      lim[i].name, lim[i].v, lim[i].max);
    int64_t prod;
    if (m->vocab_size > 0 && m->d_model > 0 &&
        moe_mul_overflows_i64(m->vocab_size, m->d_model, &prod))
        moe_vfail(log,
                  "model.vocab_size × model.d_model = %" PRId64 " × %" PRId64
                  " overflows 64 bits; use smaller sizes",
                  m->vocab_size, m->d_model);

    // Attention shape.
    int mla = m->kv_lora_rank > 0;
    if (m->n_heads > 0 && m->n_kv_heads > 0 && m->n_heads % m->n_kv_heads != 0)
        moe_vfail(log,
                  "model.n_kv_heads = %d does not divide model.n_heads = %d; use a divisor "
                  "of n_heads (or 0 for n_heads)",
                  m->n_kv_heads, m->n_heads);
    if (!mla && m->head_dim == 0 && m->n_heads > 0 && m->d_model > 0 && m->d_model % m->n_heads)
        moe_vfail(log,
                  "model.n_heads = %d does not divide model.d_model = %" PRId64 "; change "
                  "n_heads or d_model, or set model.head_dim explicitly",
                  m->n_heads, m->d_model);
    int64_t hd = m->head_dim > 0 ? m->head_dim : (m->n_heads > 0 ? m->d_model / m->n_heads : 0);
    if (!mla && m->positions == MOE__MODEL_CONFIG__POSITIONS__rope && hd > 0 && hd % 2)
        moe_vfail(log,
                  "model.positions = rope needs an even head dim (rotation pairs), got %" PRId64
                  " (%s); change model.head_dim or model.n_heads",
                  hd, m->head_dim > 0 ? "model.head_dim" : "d_model / n_heads");
    if (mla) {
        if (m->qk_nope_head_dim <= 0 || m->qk_rope_head_dim <= 0 || m->v_head_dim <= 0)
            moe_vfail(log,
                      "model.kv_lora_rank = %" PRId64 " enables MLA, which needs "
                      "model.qk_nope_head_dim, model.qk_rope_head_dim and model.v_head_dim > 0 "
                      "(got %" PRId64 ", %" PRId64 ", %" PRId64 ")",
                      m->kv_lora_rank, m->qk_nope_head_dim, m->qk_rope_head_dim, m->v_head_dim);
        else if (m->qk_rope_head_dim % 2)
            moe_vfail(log, "model.qk_rope_head_dim = %" PRId64 " must be even (rotation pairs)",
                      m->qk_rope_head_dim);
    } else if (m->q_lora_rank > 0 || m->qk_nope_head_dim > 0 || m->qk_rope_head_dim > 0 ||
               m->v_head_dim > 0) {
        moe_vfail(log, "model.q_lora_rank, qk_nope_head_dim, qk_rope_head_dim and v_head_dim "
                       "only apply to MLA, which is off (model.kv_lora_rank = 0); set kv_lora_rank "
                       "> 0 or leave them at 0");
    }

    // Experts.
    if (m->n_experts > 0) {
        if (m->top_k < 1)
            moe_vfail(log,
                      "model.top_k = %d: each token needs at least one expert; set top_k "
                      ">= 1",
                      m->top_k);
        else if (m->top_k > m->n_experts)
            moe_vfail(log,
                      "model.top_k = %d exceeds model.n_experts = %d; set top_k <= %d or "
                      "raise n_experts",
                      m->top_k, m->n_experts, m->n_experts);
    } else if (m->n_experts == 0 && m->n_shared_experts > 0) {
        moe_vfail(log,
                  "model.n_shared_experts = %d needs MoE layers, but model.n_experts = 0; "
                  "set n_experts > 0 or n_shared_experts = 0",
                  m->n_shared_experts);
    }
    if (m->n_layers > 0 && (m->first_dense_layers < 0 || m->first_dense_layers > m->n_layers))
        moe_vfail(log, "model.first_dense_layers = %d must be in [0, model.n_layers = %d]",
                  m->first_dense_layers, m->n_layers);
    for (size_t i = 0; i < m->n_dense_layers; i++) {
        int32_t l = m->dense_layers[i];
        if (l < 0 || (m->n_layers > 0 && l >= m->n_layers))
            moe_vfail(log,
                      "model.dense_layers[%zu] = %d is not a layer index; indices are 0-based, "
                      "in [0, %d)",
                      i, l, m->n_layers);
        for (size_t j = 0; j < i; j++)
            if (m->dense_layers[j] == l) {
                moe_vfail(log,
                          "model.dense_layers[%zu] = %d repeats model.dense_layers[%zu]; list "
                          "each layer once",
                          i, l, j);
                break;
            }
    }
    if (m->positions == MOE__MODEL_CONFIG__POSITIONS__learned && t->seq_len > m->max_seq_len)
        moe_vfail(log,
                  "model.positions = learned has a table of model.max_seq_len = %" PRId64
                  " positions, shorter than train.seq_len = %d; raise max_seq_len or lower "
                  "seq_len",
                  m->max_seq_len, t->seq_len);
}

// Group-limited and node-limited routing (docs/routing.md "Group-limited routing"). The
// node-limited group count depends on the nodes, known only at setup (moe_router_node_groups
// checks the rest there).
static void moe_check_groups(moe_vlog *log, const Moe__RouterConfig *r, const Moe__ModelConfig *m,
                             int ep) {
    const int N = r->n_group, on = N > 1 || r->node_limited;
    if (N < 0) {
        moe_vfail(log, "router.n_group = %d: must be 0 or more (0 or 1: no groups)", N);
        return;
    }
    if (!on) {
        if (r->topk_group > 1)
            moe_vfail(log,
                      "router.topk_group = %d has no effect without groups (router.n_group = "
                      "%d); set n_group > 1 or node_limited = true, or remove topk_group",
                      r->topk_group, N);
        return;
    }
    const char *what = r->node_limited ? "router.node_limited = true" : "router.n_group";
    if (m->n_experts <= 0) {
        moe_vfail(log, "%s (group-limited routing) needs experts, but model.n_experts = %d", what,
                  m->n_experts);
        return;
    }
    if (r->strategy == MOE__ROUTER_CONFIG__STRATEGY__expert_choice)
        moe_vfail(log,
                  "%s (group-limited routing) needs router.strategy = token_choice: with "
                  "expert_choice each expert picks its tokens, so there is no per-token choice "
                  "of groups to limit",
                  what);
    if (r->node_limited) {
        if (N > 0)
            moe_vfail(log,
                      "router.node_limited = true takes its groups from the EP layout (one per "
                      "node an EP group spans); leave router.n_group at 0 (got %d), or set "
                      "node_limited = false for a fixed grouping",
                      N);
        if (r->topk_group < 1)
            moe_vfail(log,
                      "router.topk_group = %d: node-limited routing needs the number of nodes a "
                      "token may reach, 1 or more",
                      r->topk_group);
        if (ep == 1)
            moe_vfail(log, "router.node_limited = true needs parallel.ep_size > 1 with EP groups "
                           "spanning nodes: with ep_size = 1 every rank holds every expert");
        return;
    }
    if (m->n_experts % N) {
        moe_vfail(log,
                  "router.n_group = %d does not divide model.n_experts = %d: the groups are "
                  "equal and contiguous; use a divisor of %d",
                  N, m->n_experts, m->n_experts);
        return;
    }
    const int S = m->n_experts / N;
    if (r->topk_group < 1 || r->topk_group > N) {
        moe_vfail(log,
                  "router.topk_group = %d: must be in 1..router.n_group = %d (the groups each "
                  "token keeps)",
                  r->topk_group, N);
        return;
    }
    if ((int64_t)m->top_k > (int64_t)r->topk_group * S)
        moe_vfail(log,
                  "model.top_k = %d exceeds router.topk_group × experts per group = %d × %d = %d: "
                  "a token can reach only that many experts; raise topk_group or lower top_k",
                  m->top_k, r->topk_group, S, r->topk_group * S);
    if (r->group_score == MOE__ROUTER_CONFIG__GROUP_SCORE__top2_sum && S < 2)
        moe_vfail(log,
                  "router.group_score = top2_sum sums the two best experts of a group, but "
                  "groups of model.n_experts / router.n_group = %d / %d = 1 expert have one; use "
                  "group_score = max or fewer groups",
                  m->n_experts, N);
}

static void moe_check_router(moe_vlog *log, const Moe__RouterConfig *r, const Moe__ModelConfig *m,
                             int ep) {
    moe_check_groups(log, r, m, ep);
    if (!isfinite(r->capacity_factor) || r->capacity_factor < 0)
        moe_vfail(log, "router.capacity_factor = %g: must be >= 0 (0 means dropless)",
                  r->capacity_factor);
    moe_vcoef(log, "router.aux_loss_coef", r->aux_loss_coef, "0 turns the aux loss off");
    moe_vcoef(log, "router.z_loss_coef", r->z_loss_coef, "0 turns the z-loss off");
    moe_vcoef(log, "router.bias_update_rate", r->bias_update_rate, "0 turns bias balancing off");
    moe_vcoef(log, "router.jitter", r->jitter, "a noise std; 0 is off");
    if (!isfinite(r->routed_scaling) || r->routed_scaling <= 0)
        moe_vfail(log, "router.routed_scaling = %g: must be a finite number > 0 (1 is neutral)",
                  r->routed_scaling);
    // Any strategy but the default means routing was asked for (a dense model ignores the default).
    const ProtobufCEnumValue *sv = protobuf_c_enum_descriptor_get_value(
        &moe__router_config__strategy__descriptor, r->strategy);
    if (r->strategy != MOE__ROUTER_CONFIG__STRATEGY__token_choice && sv && m->n_experts <= 0)
        moe_vfail(log,
                  "router.strategy = %s needs experts, but model.n_experts = %d; "
                  "set n_experts > 0 or strategy = token_choice",
                  sv->name, m->n_experts);
    if (r->replay && r->replay[0]) { // docs/routes.md "Replay"; the recording is checked at setup
        if (m->n_experts <= 0)
            moe_vfail(log,
                      "router.replay = %s needs MoE layers, but model.n_experts = %d: a dense "
                      "model has no routing to replay",
                      r->replay, m->n_experts);
        if (r->strategy != MOE__ROUTER_CONFIG__STRATEGY__token_choice)
            moe_vfail(log,
                      "router.replay = %s needs router.strategy = token_choice: it replays each "
                      "token's recorded experts, and with expert_choice the experts pick tokens",
                      r->replay);
    }
}

static void moe_check_train(moe_vlog *log, const Moe__TrainConfig *t, int world) {
    MOE_POS(log, "train.global_batch", t->global_batch);
    MOE_POS(log, "train.seq_len", t->seq_len);
    MOE_POS(log, "train.steps", t->steps);
    MOE_POS(log, "train.log_interval", t->log_interval);
    MOE_NONNEG(log, "train.warmup_steps", t->warmup_steps);
    MOE_NONNEG(log, "train.eval_interval", t->eval_interval);
    MOE_NONNEG(log, "train.checkpoint_interval", t->checkpoint_interval);
    MOE_NONNEG(log, "train.max_nonfinite_steps", t->max_nonfinite_steps);
    // train.keep_checkpoints <= 0 keeps every checkpoint (docs/checkpoints.md): any value is valid.
    if (t->eval_interval > 0) MOE_POS(log, "train.eval_batches", t->eval_batches);
    for (size_t i = 0; i < t->n_trace_steps; i++)
        if (t->trace_steps[i] <= 0)
            moe_vfail(log, "train.trace_steps[%zu] = %lld: trace steps are step numbers >= 1", i,
                      (long long)t->trace_steps[i]);
    if (t->n_trace_steps > 0) MOE_POS(log, "train.trace_batches", t->trace_batches);
    if (!isfinite(t->lr) || t->lr <= 0)
        moe_vfail(log, "train.lr = %g: the learning rate must be a finite number > 0", t->lr);
    if (!isfinite(t->min_lr) || t->min_lr < 0)
        moe_vfail(log, "train.min_lr = %g: must be a finite number >= 0", t->min_lr);
    else if (isfinite(t->lr) && t->min_lr > t->lr)
        moe_vfail(log,
                  "train.min_lr = %g exceeds train.lr = %g; the schedule decays from lr to "
                  "min_lr, so set min_lr <= lr",
                  t->min_lr, t->lr);
    if (!(t->beta1 >= 0 && t->beta1 < 1))
        moe_vfail(log, "train.beta1 = %g: must be in [0, 1) (0.9 is usual)", t->beta1);
    if (!(t->beta2 >= 0 && t->beta2 < 1))
        moe_vfail(log, "train.beta2 = %g: must be in [0, 1) (0.95 or 0.999 are usual)", t->beta2);
    if (!isfinite(t->eps) || t->eps <= 0)
        moe_vfail(log, "train.eps = %g: must be a finite number > 0 (1e-8 is usual)", t->eps);
    moe_vcoef(log, "train.weight_decay", t->weight_decay, "0 turns it off");
    moe_vcoef(log, "train.grad_clip", t->grad_clip, "0 turns clipping off");
    if (t->steps > 0 && t->warmup_steps > t->steps)
        moe_vfail(log,
                  "train.warmup_steps = %" PRId64 " exceeds train.steps = %" PRId64
                  "; set warmup_steps <= steps",
                  t->warmup_steps, t->steps);
    if (world > 0 && t->global_batch > 0 && t->global_batch % world)
        moe_vfail(log,
                  "train.global_batch = %d is not divisible by the world size %d; every "
                  "rank takes an equal slice, so use a multiple of %d",
                  t->global_batch, world, world);
}

static void moe_check_parallel(moe_vlog *log, const Moe__ParallelConfig *p,
                               const Moe__ModelConfig *m, int world) {
    if (p->ep_size < 1) {
        moe_vfail(log, "parallel.ep_size = %d: must be 1 or more (1: no expert parallelism)",
                  p->ep_size);
    } else {
        if (m->n_experts > 0 && m->n_experts % p->ep_size)
            moe_vfail(log,
                      "parallel.ep_size = %d does not divide model.n_experts = %d; every "
                      "rank of an EP group holds n_experts/ep_size experts, so use a divisor of %d",
                      p->ep_size, m->n_experts, m->n_experts);
        if (m->n_experts <= 0 && p->ep_size > 1)
            moe_vfail(log,
                      "parallel.ep_size = %d but model.n_experts = 0: a dense model has no "
                      "experts to shard; set ep_size = 1",
                      p->ep_size);
        if (world > 0 && world % p->ep_size)
            moe_vfail(log,
                      "parallel.ep_size = %d does not divide the world size %d (world = "
                      "ep_size × expert-data-parallel size); run on a multiple of %d ranks or "
                      "change ep_size",
                      p->ep_size, world, p->ep_size);
    }
    if (p->overlap && p->overlap_chunks < 1)
        moe_vfail(log, "parallel.overlap_chunks = %d: overlap needs 1 or more chunks",
                  p->overlap_chunks);
    if (p->dedup != MOE__PARALLEL_CONFIG__DEDUP__none &&
        p->exchange_dtype == MOE__PARALLEL_CONFIG__EXCHANGE_DTYPE__bf16)
        moe_vfail(log,
                  "parallel.dedup = %s with parallel.exchange_dtype = bf16 is not supported: a "
                  "dedup row returns the sum over a token's experts on one %s, so bf16 would "
                  "round that sum, a different value for every ep_size (layout invariance lost); "
                  "use dedup with f32, or bf16 with dedup = none",
                  p->dedup == MOE__PARALLEL_CONFIG__DEDUP__node ? "node" : "rank",
                  p->dedup == MOE__PARALLEL_CONFIG__DEDUP__node ? "node" : "rank");
}

static void moe_check_data(moe_vlog *log, const Moe__DataConfig *d, const Moe__ModelConfig *m) {
    if (d->format == MOE__DATA_CONFIG__FORMAT__u16_tokens && m->vocab_size > 65536)
        moe_vfail(log,
                  "data.format = u16_tokens stores token ids in 16 bits, but model.vocab_size "
                  "= %" PRId64 " > 65536; use a vocab of at most 65536",
                  m->vocab_size);
    if (d->format == MOE__DATA_CONFIG__FORMAT__text && m->vocab_size < 256)
        moe_vfail(log,
                  "data.format = text reads raw bytes (token ids 0..255), but "
                  "model.vocab_size = %" PRId64 "; set vocab_size >= 256",
                  m->vocab_size);
    if (!(d->val_fraction >= 0 && d->val_fraction < 1))
        moe_vfail(log, "data.val_fraction = %g: must be in [0, 1)", d->val_fraction);
}

// "<field> = v is not a value of <Enum>; use one of: a, b, c" into buf.
static void moe_enum_msg(char *buf, size_t cap, const ProtobufCEnumDescriptor *d, int v,
                         const char *field) {
    snprintf(buf, cap, "%s = %d is not a value of %s; use one of: ", field, v, d->short_name);
    moe_list l;
    moe_list_start(&l, buf, cap, ", ");
    for (unsigned k = 0; k < d->n_values; k++) moe_list_add(&l, "%s", d->values[k].name);
    moe_list_end(&l);
}

moe_status moe_config_check_enum(const ProtobufCEnumDescriptor *d, int v, const char *field) {
    if (protobuf_c_enum_descriptor_get_value(d, v)) return MOE_OK;
    char msg[512];
    moe_enum_msg(msg, sizeof msg, d, v, field);
    return moe_set_error(MOE_EINVAL, "%s", msg);
}

// Every enum field holds a value its enum names: a message built in C or unpacked from bytes can
// hold any number (the JSON reader refuses those already). Walks the descriptors, so nothing here
// changes when an enum, a value or a field is added.
static void moe_check_enums(moe_vlog *log, const ProtobufCMessage *msg, const char *prefix) {
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *field = (const char *)msg + f->offset;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && f->label != PROTOBUF_C_LABEL_REPEATED) {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)field;
            char sp[128];
            snprintf(sp, sizeof sp, "%s%s.", prefix, f->name);
            if (sub) moe_check_enums(log, sub, sp);
            continue;
        }
        if (f->type != PROTOBUF_C_TYPE_ENUM) continue;
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        const int rep = f->label == PROTOBUF_C_LABEL_REPEATED;
        const size_t n = rep ? *(const size_t *)((const char *)msg + f->quantifier_offset) : 1;
        const int *v = rep ? *(const int *const *)field : (const int *)field;
        for (size_t j = 0; j < n; j++) {
            if (protobuf_c_enum_descriptor_get_value(ed, v[j])) continue;
            char name[192], msg[512];
            if (rep)
                snprintf(name, sizeof name, "%s%s[%zu]", prefix, f->name, j);
            else
                snprintf(name, sizeof name, "%s%s", prefix, f->name);
            moe_enum_msg(msg, sizeof msg, ed, v[j], name);
            moe_vfail(log, "%s", msg);
        }
    }
}

static void moe_check_lora(moe_vlog *log, const Moe__LoraConfig *l, const Moe__ModelConfig *m) {
    MOE_NONNEG(log, "lora.rank", l->rank);
    if (l->rank > 0 && (!isfinite(l->alpha) || l->alpha <= 0))
        moe_vfail(log,
                  "lora.alpha = %g: must be a finite number > 0 (the adapter scale is "
                  "alpha/rank)",
                  l->alpha);
    if (l->rank == 0 && l->n_targets > 0)
        moe_vfail(log, "lora.targets is set but lora.rank = 0 (no adapters); set rank > 0 or "
                       "remove targets");
    if (l->rank == 0 && (l->train_router || l->train_norms))
        moe_vfail(log, "lora.train_router / train_norms is set but lora.rank = 0: without "
                       "adapters everything trains already; set rank > 0 or remove them");
    if (l->train_router && m->n_experts <= 0)
        moe_vfail(log, "lora.train_router is set but model.n_experts = 0 (a dense model has no "
                       "router); remove it");
    for (size_t i = 0; i < l->n_targets; i++) {
        Moe__LoraConfig__Target t = l->targets[i];
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(&moe__lora_config__target__descriptor, (int)t);
        const char *name = ev ? ev->name : "?";
        for (size_t j = 0; j < i; j++)
            if (l->targets[j] == t) {
                moe_vfail(log,
                          "lora.targets[%zu] = %s repeats lora.targets[%zu]; list each "
                          "target once",
                          i, name, j);
                break;
            }
        if ((t == MOE__LORA_CONFIG__TARGET__experts || t == MOE__LORA_CONFIG__TARGET__router) &&
            m->n_experts <= 0)
            moe_vfail(log,
                      "lora.targets[%zu] = %s, but model.n_experts = 0 (a dense model has "
                      "no %s); remove it",
                      i, name, name);
        if (t == MOE__LORA_CONFIG__TARGET__shared_experts && m->n_shared_experts <= 0)
            moe_vfail(log,
                      "lora.targets[%zu] = shared_experts, but model.n_shared_experts = 0; "
                      "remove it",
                      i);
    }
}

moe_status moe_config_validate(const Moe__Config *cfg, int world) {
    static const Moe__ModelConfig def_model = MOE__MODEL_CONFIG__INIT;
    static const Moe__RouterConfig def_router = MOE__ROUTER_CONFIG__INIT;
    static const Moe__TrainConfig def_train = MOE__TRAIN_CONFIG__INIT;
    static const Moe__ParallelConfig def_parallel = MOE__PARALLEL_CONFIG__INIT;
    static const Moe__DataConfig def_data = MOE__DATA_CONFIG__INIT;
    static const Moe__LoraConfig def_lora = MOE__LORA_CONFIG__INIT;
    const Moe__ModelConfig *m = cfg->model ? cfg->model : &def_model;
    const Moe__TrainConfig *t = cfg->train ? cfg->train : &def_train;
    moe_vlog *log = calloc(1, sizeof *log);
    if (!log) return moe_set_error(MOE_ENOMEM, "out of memory");
    moe_list_start(&log->list, log->msg, sizeof log->msg, "\n");
    moe_check_enums(log, &cfg->base, "");
    moe_check_model(log, m, t);
    moe_check_router(log, cfg->router ? cfg->router : &def_router, m,
                     cfg->parallel ? cfg->parallel->ep_size : def_parallel.ep_size);
    moe_check_train(log, t, world);
    moe_check_parallel(log, cfg->parallel ? cfg->parallel : &def_parallel, m, world);
    moe_check_data(log, cfg->data ? cfg->data : &def_data, m);
    moe_check_lora(log, cfg->lora ? cfg->lora : &def_lora, m);
    static const Moe__WatchdogConfig def_wd = MOE__WATCHDOG_CONFIG__INIT;
    const double sr = (cfg->watchdog ? cfg->watchdog : &def_wd)->straggler_ratio;
    if (!isfinite(sr) || (sr != 0 && sr <= 1))
        moe_vfail(log,
                  "watchdog.straggler_ratio = %g: must be > 1 (e.g. 1.5: the slowest rank takes "
                  "50%% longer than the fastest) or 0 (no straggler lines)",
                  sr);
    moe_status st = MOE_OK;
    if (moe_list_end(&log->list) || log->list.n) st = moe_set_error(MOE_EINVAL, "%s", log->msg);
    free(log);
    return st;
}
