// model.c: assembly of the sparse transformer — creation (the parameter table and its
// initialisation are model-build.c's), forward and backward.
// The MoE FFN sits behind a small internal interface (moe_model_ffn: create, free, forward,
// backward; model-impl.h, model-ffn.c): the expert-parallel layer (ep-layer.h) whenever there is
// a communicator (every layout, EP = 1 included), the one-rank layer of experts.h only without
// one (W = 1, no MPI).
#include "model.h"
#include "config.h"
#include "ep-layer.h"
#include "lora.h"
#include "model-impl.h"
#include "nn.h"
#include "router.h"
#include "params.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#define P(off) ((off) < 0 ? NULL : m->params + (off))
#define G(off) moe_model_grad_ptr(m, off) // NULL: absent or frozen (LoRA)

moe_model_layout moe_model_layout_of(const moe_comm *c) {
    moe_model_layout l = {1, 0, 1, 0, 0};
    if (!c) return l;
    moe_comm_info i = moe_comm_get_info(c);
    l.world = i.world_size, l.world_rank = i.world_rank;
    l.ep = i.ep_size, l.ep_rank = i.ep_rank, l.edp_rank = i.edp_rank;
    return l;
}

moe_status moe_model_check(const Moe__Config *cfg) {
    const Moe__ModelConfig *mc = cfg->model;
    if (!mc) return moe_set_error(MOE_EINVAL, "config has no model section");
    // Enum fields name a value (an unknown number is refused, never read as a default). The
    // router's and model.activation are also mapped, with a check, by moe_layer_params_from_config.
    moe_status st;
    if ((st = moe_config_check_enum(&moe__model_config__norm__descriptor, (int)mc->norm,
                                    "model.norm")) ||
        (st = moe_config_check_enum(&moe__model_config__qk_norm__descriptor, (int)mc->qk_norm,
                                    "model.qk_norm")) ||
        (st = moe_config_check_enum(&moe__model_config__positions__descriptor, (int)mc->positions,
                                    "model.positions")) ||
        (st = moe_config_check_enum(&moe__model_config__activation__descriptor, (int)mc->activation,
                                    "model.activation")))
        return st;
    if (cfg->train && (st = moe_config_check_enum(&moe__train_config__schedule__descriptor,
                                                  (int)cfg->train->schedule, "train.schedule")))
        return st; // read by moe_optim_schedule_from_config, which asserts it is known
    if (mc->norm != MOE__MODEL_CONFIG__NORM__rmsnorm)
        return moe_set_error(MOE_EINVAL, "model.norm = layernorm: moe train implements rmsnorm "
                                         "only; set model.norm to \"rmsnorm\"");
    if (mc->kv_lora_rank > 0 || mc->q_lora_rank > 0)
        return moe_set_error(MOE_EINVAL,
                             "model.kv_lora_rank = %lld, q_lora_rank = %lld: multi-head "
                             "latent attention is counted by moe params but not trained; set both "
                             "to 0",
                             (long long)mc->kv_lora_rank, (long long)mc->q_lora_rank);
    const int64_t H = mc->n_heads,
                  Dh = mc->head_dim > 0 ? mc->head_dim : (H > 0 ? mc->d_model / H : 0);
    if (mc->positions == MOE__MODEL_CONFIG__POSITIONS__rope && Dh % 2 != 0)
        return moe_set_error(MOE_EINVAL,
                             "head dim %lld (model.head_dim or d_model/n_heads) is odd: "
                             "RoPE needs an even head dim",
                             (long long)Dh);
    if (mc->positions == MOE__MODEL_CONFIG__POSITIONS__learned && cfg->train &&
        cfg->train->seq_len > mc->max_seq_len)
        return moe_set_error(MOE_EINVAL,
                             "train.seq_len = %d exceeds model.max_seq_len = %lld "
                             "(learned positions); raise max_seq_len or shorten seq_len",
                             cfg->train->seq_len, (long long)mc->max_seq_len);
    if (cfg->train && cfg->train->seq_len < 1)
        return moe_set_error(MOE_EINVAL, "train.seq_len = %d: must be >= 1", cfg->train->seq_len);
    return MOE_OK;
}

// Weight views of MoE layer l: grads = 0 the parameters, 1 their gradients (NULL: frozen).
static moe_layer_weights moe_model_lw(const moe_model *m, int l, int grads) {
    const moe_model_priv *pv = m->priv;
    const moe_layer_off *o = &pv->off[l];
#define Q(x) (grads ? moe_model_grad_ptr(m, x) : (x) < 0 ? NULL : m->params + (x))
    moe_layer_weights w = {
        .wg = Q(o->wg),
        .bg = Q(o->bg),
        .experts = {Q(o->w1), Q(o->b1), Q(o->w3), Q(o->b3), Q(o->w2), Q(o->b2)},
        .shared = {Q(o->sw1), Q(o->sb1), Q(o->sw3), Q(o->sb3), Q(o->sw2), Q(o->sb2)},
        .ws = Q(o->ws),
    };
#undef Q
    moe_lora_layer_views(m, l, &w, grads);
    return w;
}

// The activation block: carve(NULL) counts, carve(block) assigns.
static int64_t moe_model_carve(moe_model *m, moe_model_priv *pv, float *base) {
    int64_t cur = 0;
    const int64_t T = m->T, D = m->D, NQ = m->H * m->Dh, NK = m->Hkv * m->Dh, S = m->S;
#define CARVE(p, n) ((p) = base ? base + cur : NULL, cur += moe_round16(n))
    const int64_t spr = moe_experts_save_per_row(&pv->dense_fp);
    for (int l = 0; l < m->L; l++) {
        moe_layer_act *A = &pv->act[l];
        memset(A, 0, sizeof *A);
        CARVE(A->x, T * D);
        CARVE(A->h1, T * D);
        CARVE(A->r1, T);
        CARVE(A->q0, T * NQ);
        CARVE(A->k0, T * NK);
        CARVE(A->v, T * NK);
        if (m->qk_norm) {
            CARVE(A->q1, T * NQ);
            CARVE(A->k1, T * NK);
            CARVE(A->rq, T * m->H); // per_head: T·H rows; full: T
            CARVE(A->rk, T * m->Hkv);
        }
        if (m->rope) {
            CARVE(A->q2, T * NQ);
            CARVE(A->k2, T * NK);
        }
        CARVE(A->a, T * NQ);
        CARVE(A->att, m->Bl * m->H * S * S);
        CARVE(A->xm, T * D);
        CARVE(A->h2, T * D);
        CARVE(A->r2, T);
        if (m->moe_index[l] < 0) CARVE(A->save, T * spr);
    }
    CARVE(pv->xL, T * D);
    CARVE(pv->hf, T * D);
    CARVE(pv->rf, T);
    CARVE(pv->logits, T * m->V);
    CARVE(pv->y, T * D);
    CARVE(pv->dx, T * D);
    CARVE(pv->dh, T * D);
    CARVE(pv->da, T * NQ);
    CARVE(pv->dq2, T * NQ);
    CARVE(pv->dk2, T * NK);
    CARVE(pv->dv, T * NK);
    CARVE(pv->dq1, T * NQ);
    CARVE(pv->dk1, T * NK);
    CARVE(pv->dq0, T * NQ);
    CARVE(pv->dk0, T * NK);
    CARVE(pv->sc, S * S);
    CARVE(pv->ffn_scratch, T * moe_experts_scratch_per_row(&pv->dense_fp));
    CARVE(pv->cos_t, S * (m->Dh / 2 + 1));
    CARVE(pv->sin_t, S * (m->Dh / 2 + 1));
#undef CARVE
    return cur;
}

static int moe_is_moe_layer(const Moe__ModelConfig *mc, int l) {
    if (mc->n_experts <= 0 || l < mc->first_dense_layers) return 0;
    for (size_t i = 0; i < mc->n_dense_layers; i++)
        if (mc->dense_layers[i] == l) return 0;
    return 1;
}

moe_status moe_model_memory_of(const Moe__Config *cfg, const moe_model_layout *lay,
                               const moe_comm *comm, int64_t B_local, moe_model_memory *out) {
    memset(out, 0, sizeof *out);
    moe_params_report rep;
    moe_status st = moe_params_count(cfg, lay->world, lay->ep, &rep);
    if (st) return st;
    Moe__RouterConfig rdef;
    moe__router_config__init(&rdef);
    const Moe__RouterConfig *rc = cfg->router ? cfg->router : &rdef;
    const Moe__ModelConfig *mc = cfg->model;
    const double D = (double)mc->d_model, L = mc->n_layers, V = (double)mc->vocab_size;
    const double H = mc->n_heads, Hkv = mc->n_kv_heads > 0 ? mc->n_kv_heads : H;
    const double Dh = mc->head_dim > 0 ? (double)mc->head_dim : (H > 0 ? D / H : 0);
    const double F = mc->d_ff > 0 ? (double)mc->d_ff : 4 * D;
    const double Fe = mc->expert_d_ff > 0 ? (double)mc->expert_d_ff : F;
    const double S = cfg->train ? cfg->train->seq_len : 64, B = (double)B_local, T = B * S;
    const double rows = moe_router_rows_bound((moe_route_strategy)rc->strategy, T, mc->top_k,
                                              mc->n_experts, rc->capacity_factor); // one MoE layer
    // Per layer and token as moe_model_carve lays it out (x, h1, xm, h2; q, k, v and their norm /
    // rope copies; the dense FFN's saved rows; attention weights S per head), then the MoE rows.
    double act = L * (T * (4 * D + 4 * H * Dh + 4 * Hkv * Dh + 2 * H + 2 + 3 * F) + B * H * S * S) +
                 L * (rows * (4 * D + 5 * Fe) + mc->n_shared_experts * T * 5 * F) +
                 T * (V + 8 * D + 6 * H * Dh + 6 * Hkv * Dh) + S * S + 2 * S * (Dh + 2);
    const double r = cfg->lora && cfg->lora->rank > 0 ? cfg->lora->rank : 0;
    if (r > 0) // adapters' saved x·A (lora.c, experts.c), every target counted: an upper bound
        act += L * (4 * T * r + (rows + mc->n_shared_experts * T + T) * 3 * r + 2 * D * mc->n_experts) +
               T * r;
    out->rank_params = rep.rank_params;
    out->state_bytes = (double)rep.rank_bytes;
    out->prev_bytes = 4.0 * (double)rep.rank_params;
    out->activation_bytes = 4 * act;
    out->total_bytes = out->state_bytes + out->prev_bytes + out->activation_bytes;
    const long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    out->machine_bytes = pages > 0 && psize > 0 ? (double)pages * (double)psize : 0;
    out->node_ranks = comm ? moe_comm_get_info(comm).node_size : 1; // ranks sharing it
    if (out->node_ranks < 1) out->node_ranks = 1;
    return MOE_OK;
}

// Refuses a shape whose memory per rank is beyond this machine before anything is sized from it
// (moe_model_memory_of: its double estimate bounds every int64 product moe_model_carve and the
// MoE layers form, so none of them can overflow).
static moe_status moe_model_check_size(const Moe__Config *cfg, const moe_model_layout *lay,
                                       const moe_comm *comm, int64_t B_local) {
    moe_model_memory mm;
    moe_status st = moe_model_memory_of(cfg, lay, comm, B_local, &mm);
    if (st) return st;
    const double GiB = 1024.0 * 1024 * 1024, have = mm.machine_bytes;
    const double S = cfg->train ? cfg->train->seq_len : 64;
    if (have > 0 && mm.total_bytes > have / mm.node_ranks)
        return moe_set_error(
            MOE_EINVAL,
            "this model needs about %.1f GiB per rank (%.1f GiB of "
            "parameters, gradients and Adam state for %lld parameters; %.1f GiB of "
            "activations for %lld sequences of train.seq_len = %.0f), more than "
            "this machine's %.1f GiB shared by %d rank(s): shrink model.d_model/"
            "d_ff/n_layers/vocab_size or train.global_batch/seq_len, or spread "
            "the ranks over more nodes (see moe params CONFIG --world N --ep N)",
            mm.total_bytes / GiB, (mm.state_bytes + mm.prev_bytes) / GiB,
            (long long)mm.rank_params, mm.activation_bytes / GiB, (long long)B_local, S,
            have / GiB, mm.node_ranks);
    return MOE_OK;
}

// What moe_model_new builds beside the table: everything (moe_model_create), or nothing.
typedef enum { MOE_MODEL_FULL = 0, MOE_MODEL_TABLE } moe_model_what;

static moe_status moe_model_new(const Moe__Config *cfg, const moe_model_layout *lay,
                                const moe_comm *comm, int64_t B_local, moe_model_what what,
                                moe_model **out) {
    *out = NULL;
    moe_status st = moe_model_check(cfg);
    if (st) return st;
    const Moe__ModelConfig *mc = cfg->model;
    MOE_ASSERT(lay->world >= 1 && (comm || (lay->world == 1 && lay->ep == 1) || B_local == 0));
    MOE_ASSERT(what == MOE_MODEL_FULL || B_local == 0);
    if (mc->n_experts > 0 && mc->n_experts % lay->ep != 0)
        return moe_set_error(MOE_ELAYOUT,
                             "model.n_experts = %d is not divisible by "
                             "parallel.ep_size = %d",
                             mc->n_experts, lay->ep);
    Moe__RouterConfig rdef;
    moe__router_config__init(&rdef);
    const Moe__RouterConfig *rc = cfg->router ? cfg->router : &rdef;
    if (what == MOE_MODEL_FULL && (st = moe_model_check_size(cfg, lay, comm, B_local))) return st;
    moe_model_memory mm; // a table: the shape's and layout's counts checked (no overflow)
    if (what == MOE_MODEL_TABLE && (st = moe_model_memory_of(cfg, lay, NULL, 0, &mm))) return st;
    moe_model *m = moe_xcalloc(1, sizeof *m);
    moe_model_priv *pv = moe_xcalloc(1, sizeof *pv);
    m->priv = pv;
    m->mc = (Moe__ModelConfig *)moe_proto_copy(&mc->base);
    m->rc = (Moe__RouterConfig *)moe_proto_copy(&rc->base);
    m->lay = *lay;
    m->comm = comm;
    m->V = mc->vocab_size, m->D = mc->d_model, m->L = mc->n_layers, m->H = mc->n_heads;
    m->Hkv = mc->n_kv_heads > 0 ? mc->n_kv_heads : mc->n_heads;
    m->Dh = mc->head_dim > 0 ? mc->head_dim : mc->d_model / mc->n_heads;
    m->F = mc->d_ff > 0 ? mc->d_ff : 4 * mc->d_model;
    m->S = cfg->train ? cfg->train->seq_len : 64;
    m->Bl = B_local, m->T = B_local * m->S;
    m->rope = mc->positions == MOE__MODEL_CONFIG__POSITIONS__rope;
    m->learned_pos = !m->rope;
    m->qk_norm = (int)mc->qk_norm; // moe_model_check: a known value
    m->tied = mc->tie_embeddings;
    m->E = mc->n_experts, m->K = mc->top_k;
    m->El = m->E > 0 ? m->E / lay->ep : 0;
    m->first_expert = lay->ep_rank * m->El;
    m->moe_index = moe_xcalloc((size_t)m->L, sizeof(int));
    for (int l = 0; l < m->L; l++) m->moe_index[l] = moe_is_moe_layer(mc, l) ? m->n_moe++ : -1;
    if (m->n_moe > 0 &&
        (st = moe_layer_params_from_config(&pv->lp, mc, rc, m->T > 0 ? m->T : 1)) != MOE_OK)
        goto fail;
    pv->lp.router.group_tokens = m->S; // routing groups = sequences: capacity is layout-invariant
    int n_nodes, q = moe_comm_node_shape(comm, &n_nodes); // node-limited: groups = nodes
    if (B_local > 0 && (st = moe_router_node_groups(&pv->lp.router, lay->ep, q, n_nodes)))
        goto fail;
    pv->dense_fp = (moe_experts_params){
        m->D, m->F, 1,
        mc->activation == MOE__MODEL_CONFIG__ACTIVATION__gelu ? MOE_ACT_GELU : MOE_ACT_SWIGLU,
        mc->ffn_bias, 0, 0.0f};
    moe_lora_setup(m, pv, cfg); // adapters (lora.h): before the table and the layers
    // Groups.
    m->n_groups = MOE_GROUP_N_FIXED + 2 * m->n_moe;
    m->group_names = moe_xcalloc((size_t)m->n_groups, sizeof *m->group_names);
    static const char *fixed[] = {"embeddings", "attention", "norms",
                                  "router",     "dense_ffn", "head"};
    for (int g = 0; g < MOE_GROUP_N_FIXED; g++) snprintf(m->group_names[g], 24, "%s", fixed[g]);
    for (int l = 0; l < m->L; l++) {
        int mi = m->moe_index[l];
        if (mi < 0) continue;
        snprintf(m->group_names[MOE_GROUP_N_FIXED + 2 * mi], 24, "experts.%d", l);
        snprintf(m->group_names[MOE_GROUP_N_FIXED + 2 * mi + 1], 24, "shared.%d", l);
    }
    // Table and families.
    pv->off = moe_xcalloc((size_t)m->L, sizeof *pv->off);
    moe_model_build_table(m, pv);
    const size_t bytes = (size_t)m->n_train * sizeof(float); // trainable only (LoRA)
    m->balance_bias = moe_xcalloc((size_t)(m->n_moe > 0 ? m->n_moe * m->E : 1), sizeof(float));
    if (what == MOE_MODEL_FULL) {
        m->params = moe_xalloc_aligned((size_t)m->n_params * sizeof(float));
        m->grads = moe_xalloc_aligned(bytes);
        m->adam_m = moe_xalloc_aligned(bytes);
        m->adam_v = moe_xalloc_aligned(bytes);
        const uint64_t seed = cfg->train ? cfg->train->seed : 1234;
        moe_model_init_tensors(m, seed);
    }
    // Accounting helpers.
    if (m->n_moe > 0) {
        const int64_t Fe = pv->lp.F, fb = mc->ffn_bias;
        const int swi = pv->lp.act == MOE_ACT_SWIGLU;
        m->expert_params = (swi ? 3 : 2) * m->D * Fe + (fb ? (swi ? 2 : 1) * Fe + m->D : 0);
    }
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].expert < 0) m->dense_active += m->tensors[i].n;
    m->stats = moe_xcalloc((size_t)(m->n_moe > 0 ? m->n_moe : 1), sizeof *m->stats);
    for (int l = 0; l < m->L; l++)
        if (m->moe_index[l] >= 0) m->stats[m->moe_index[l]].layer = l;
    if (B_local == 0) {
        *out = m;
        return MOE_OK;
    }
    // Activations and the MoE layers.
    pv->act = moe_xcalloc((size_t)m->L, sizeof *pv->act);
    int64_t nact = moe_model_carve(m, pv, NULL);
    pv->block = moe_xalloc_aligned((size_t)nact * sizeof(float));
    moe_model_carve(m, pv, pv->block);
    moe_lora_alloc(m, pv);
    pv->tok = moe_xcalloc((size_t)m->T, sizeof(int32_t));
    pv->tgt = moe_xcalloc((size_t)m->T, sizeof(int32_t));
    if (m->rope) moe_nn_rope_table(pv->cos_t, pv->sin_t, m->S, m->Dh, m->mc->rope_theta);
    pv->ffn = moe_xcalloc((size_t)(m->n_moe > 0 ? m->n_moe : 1), sizeof *pv->ffn);
    for (int i = 0; i < m->n_moe; i++)
        if ((st = moe_ffn_create(&pv->lp, comm, cfg->parallel, &pv->ffn[i])) != MOE_OK) goto fail;
    *out = m;
    return MOE_OK;
fail:
    moe_model_free(m);
    return st;
}

moe_status moe_model_create(const Moe__Config *cfg, const moe_model_layout *lay,
                            const moe_comm *comm, int64_t B_local, moe_model **out) {
    return moe_model_new(cfg, lay, comm, B_local, MOE_MODEL_FULL, out);
}

moe_status moe_model_create_table(const Moe__Config *cfg, const moe_model_layout *lay,
                                  moe_model **out) {
    return moe_model_new(cfg, lay, NULL, 0, MOE_MODEL_TABLE, out);
}

moe_status moe_model_set_exchange(moe_model *m, const Moe__ParallelConfig *pc) {
    moe_model_priv *pv = m->priv;
    MOE_ASSERT(pv && pv->ffn);
    moe_status st = MOE_OK;
    for (int i = 0; i < m->n_moe; i++) {
        moe_ffn_free(pv->ffn[i]);
        pv->ffn[i] = NULL;
        m->stats[i].selected = m->stats[i].kept = NULL;
    }
    for (int i = 0; i < m->n_moe && !st; i++)
        st = moe_ffn_create(&pv->lp, m->comm, pc, &pv->ffn[i]);
    return moe_comm_agree(m->comm, st);
}

void moe_model_free(moe_model *m) {
    if (!m) return;
    moe_model_priv *pv = m->priv;
    if (pv) {
        if (pv->ffn)
            for (int i = 0; i < m->n_moe; i++) moe_ffn_free(pv->ffn[i]);
        free(pv->ffn);
        free(pv->off);
        free(pv->act);
        free(pv->block);
        free(pv->tok);
        free(pv->tgt);
        moe_lora_free(pv->lora);
        free(pv);
    }
    if (m->mc) protobuf_c_message_free_unpacked(&m->mc->base, NULL);
    if (m->rc) protobuf_c_message_free_unpacked(&m->rc->base, NULL);
    free(m->moe_index);
    free(m->tensors);
    free(m->params);
    free(m->grads);
    free(m->adam_m);
    free(m->adam_v);
    free(m->balance_bias);
    free(m->group_names);
    free(m->stats);
    free(m);
}

// The routed experts' gradients of expert-parallel layers are not zeroed: the layer's next
// backward writes them (moe_ffn_grads_fresh), so zeroing costs O(active), not O(total).
int64_t moe_model_zero_grads(moe_model *m) {
    moe_model_priv *pv = m->priv;
    if (m->lora_rank > 0) { // the trainable part is small: all of it, every backward adds
        memset(m->grads, 0, (size_t)m->n_train * sizeof(float));
        return m->n_train;
    }
    int64_t cur = 0, zeroed = 0;
    for (int l = 0; l < m->L; l++) {
        const int mi = m->moe_index[l];
        if (mi < 0 || !moe_ffn_grads_fresh(pv->ffn[mi])) continue;
        const moe_layer_off *o = &pv->off[l];
        memset(m->grads + cur, 0, (size_t)(o->ex_begin - cur) * sizeof(float));
        zeroed += o->ex_begin - cur;
        cur = o->ex_end;
    }
    memset(m->grads + cur, 0, (size_t)(m->n_params - cur) * sizeof(float));
    return zeroed + m->n_params - cur;
}

double moe_model_exchange_seconds(const moe_model *m) {
    return ((const moe_model_priv *)m->priv)->comm_seconds;
}

moe_model_phases moe_model_step_phases(const moe_model *m) {
    return ((const moe_model_priv *)m->priv)->ph;
}

// dense = the pass's wall time not in the measured phases (never negative from rounding).
static void moe_model_close_phases(moe_model_priv *pv) {
    moe_model_phases *ph = &pv->ph;
    const double d =
        pv->pass_seconds - ph->attention - ph->router - ph->dispatch - ph->combine - ph->experts;
    ph->dense = d > 0 ? d : 0;
}

int64_t moe_model_expert_pairs(const moe_model *m) {
    const moe_model_priv *pv = m->priv;
    int64_t n = 0;
    for (int i = 0; pv && pv->ffn && i < m->n_moe; i++) n += moe_ffn_pairs(pv->ffn[i]);
    return n;
}

const moe_route_plan *moe_model_route_plan(const moe_model *m, int i) {
    const moe_model_priv *pv = m->priv;
    MOE_ASSERT(pv && pv->ffn && i >= 0 && i < m->n_moe);
    return moe_ffn_plan(pv->ffn[i]);
}

moe_comm_bytes moe_model_exchange_bytes(const moe_model *m) {
    const moe_model_priv *pv = m->priv;
    moe_comm_bytes s = {0, 0, 0, 0};
    for (int i = 0; pv && pv->ffn && i < m->n_moe; i++) moe_ffn_add_bytes(pv->ffn[i], &s);
    return s;
}

// ---------------------------------------------------------------- forward / backward

moe_status moe_model_forward(moe_model *m, const int32_t *tokens, int training, uint64_t seed,
                             int64_t step, int64_t token_base, moe_model_loss *loss) {
    moe_model_priv *pv = m->priv;
    MOE_ASSERT(m->T > 0);
    const int64_t T = m->T, D = m->D, S = m->S, H = m->H, Hkv = m->Hkv, Dh = m->Dh;
    const int64_t NQ = H * Dh, NK = Hkv * Dh;
    const float eps = (float)m->mc->norm_eps;
    const double t_pass = moe_comm_wtime();
    pv->comm_seconds = 0;
    memset(&pv->ph, 0, sizeof pv->ph);
    memset(loss, 0, sizeof *loss);
    for (int64_t b = 0; b < m->Bl; b++)
        for (int64_t s = 0; s < S; s++) {
            pv->tok[b * S + s] = tokens[b * (S + 1) + s];
            pv->tgt[b * S + s] = tokens[b * (S + 1) + s + 1];
        }
    moe_nn_embed_forward(pv->act[0].x, pv->tok, P(pv->wte), T, m->V, D);
    if (m->learned_pos)
        for (int64_t t = 0; t < T; t++)
            for (int64_t d = 0; d < D; d++) pv->act[0].x[t * D + d] += P(pv->wpe)[(t % S) * D + d];
    for (int l = 0; l < m->L; l++) {
        moe_layer_act *A = &pv->act[l];
        const moe_layer_off *o = &pv->off[l];
        float *xn = l + 1 < m->L ? pv->act[l + 1].x : pv->xL;
        const double t_att = moe_comm_wtime();
        moe_nn_rmsnorm_forward(A->h1, A->r1, A->x, P(o->n1), T, D, eps);
        moe_nn_linear_forward(A->q0, A->h1, P(o->wq), P(o->bq), T, D, NQ);
        moe_nn_linear_forward(A->k0, A->h1, P(o->wk), P(o->bk), T, D, NK);
        moe_nn_linear_forward(A->v, A->h1, P(o->wv), P(o->bv), T, D, NK);
        moe_lora_attn_forward(m, l, MOE_LORA_Q, A->q0, A->h1);
        moe_lora_attn_forward(m, l, MOE_LORA_K, A->k0, A->h1);
        moe_lora_attn_forward(m, l, MOE_LORA_V, A->v, A->h1);
        const float *q = A->q0, *k = A->k0;
        if (m->qk_norm == MOE__MODEL_CONFIG__QK_NORM__per_head) {
            moe_nn_qknorm_forward(A->q1, A->rq, q, P(o->qn), T, H, Dh, eps);
            moe_nn_qknorm_forward(A->k1, A->rk, k, P(o->kn), T, Hkv, Dh, eps);
            q = A->q1, k = A->k1;
        } else if (m->qk_norm == MOE__MODEL_CONFIG__QK_NORM__full) { // rows of NQ and NK
            moe_nn_rmsnorm_forward(A->q1, A->rq, q, P(o->qn), T, NQ, eps);
            moe_nn_rmsnorm_forward(A->k1, A->rk, k, P(o->kn), T, NK, eps);
            q = A->q1, k = A->k1;
        }
        if (m->rope) {
            moe_nn_rope_forward(A->q2, q, pv->cos_t, pv->sin_t, m->Bl, S, H, Dh);
            moe_nn_rope_forward(A->k2, k, pv->cos_t, pv->sin_t, m->Bl, S, Hkv, Dh);
            q = A->q2, k = A->k2;
        }
        A->qa = q, A->ka = k;
        moe_nn_attention_forward(A->a, A->att, q, k, A->v, m->Bl, S, H, Hkv, Dh);
        moe_nn_linear_forward(A->xm, A->a, P(o->wo), P(o->bo), T, NQ, D);
        moe_lora_attn_forward(m, l, MOE_LORA_O, A->xm, A->a);
        for (int64_t i = 0; i < T * D; i++) A->xm[i] += A->x[i];
        pv->ph.attention += moe_comm_wtime() - t_att;
        moe_nn_rmsnorm_forward(A->h2, A->r2, A->xm, P(o->n2), T, D, eps);
        const int mi = m->moe_index[l];
        if (mi < 0) {
            const int64_t off[2] = {0, T};
            moe_expert_weights ew = {P(o->w1), P(o->b1), P(o->w3), P(o->b3),
                                     P(o->w2), P(o->b2), .next_w1 = NULL};
            moe_lora_ffn_views(m, l, &ew, 0);
            moe_experts_forward(&pv->dense_fp, pv->y, A->save, &ew, off, A->h2);
        } else {
            moe_lora_gate_forward(m, l);
            moe_layer_weights lw = moe_model_lw(m, l, 0);
            moe_route_opts opts = {
                training,
                moe_splitmix64(seed ^ moe_splitmix64((uint64_t)step * 1315423911u + (uint64_t)l)),
                token_base, training && m->replay ? m->replay + (int64_t)mi * T * m->K : NULL};
            const float *bias =
                m->rc->bias_update_rate > 0 ? m->balance_bias + (int64_t)mi * m->E : NULL;
            moe_status st = moe_ffn_forward(m, pv->ffn[mi], pv->y, A->h2, T, &lw, bias, &opts,
                                            &m->stats[mi], &pv->comm_seconds, &pv->ph);
            if (st) return st;
            loss->aux += m->stats[mi].aux;
            loss->z += m->stats[mi].z;
        }
        for (int64_t i = 0; i < T * D; i++) xn[i] = A->xm[i] + pv->y[i];
    }
    moe_nn_rmsnorm_forward(pv->hf, pv->rf, pv->xL, P(pv->nf), T, D, eps);
    if (m->tied)
        moe_nn_linear_wt_forward(pv->logits, pv->hf, P(pv->wte), NULL, T, D, m->V);
    else
        moe_nn_linear_forward(pv->logits, pv->hf, P(pv->head), NULL, T, D, m->V);
    loss->ce =
        moe_nn_crossentropy(training ? pv->logits : NULL, pv->logits, pv->tgt, T, m->V, 1.0f);
    pv->ready = training;
    pv->pass_seconds = moe_comm_wtime() - t_pass;
    moe_model_close_phases(pv);
    return MOE_OK;
}

const float *moe_model_logits(const moe_model *m) {
    const moe_model_priv *pv = m->priv;
    MOE_ASSERT(!pv->ready); // after a training forward they hold dlogits
    return pv->logits;
}

moe_status moe_model_backward(moe_model *m) {
    moe_model_priv *pv = m->priv;
    MOE_ASSERT(pv->ready);
    pv->ready = 0;
    const double t_pass = moe_comm_wtime();
    const int64_t T = m->T, D = m->D, S = m->S, H = m->H, Hkv = m->Hkv, Dh = m->Dh;
    const int64_t NQ = H * Dh, NK = Hkv * Dh;
    const size_t fD = (size_t)(T * D) * sizeof(float);
    memset(pv->dh, 0, fD);
    if (m->tied)
        moe_nn_linear_wt_backward(pv->dh, G(pv->wte), NULL, pv->logits, pv->hf, P(pv->wte), T, D,
                                  m->V); // a NULL (frozen) dw is skipped
    else
        moe_nn_linear_backward(pv->dh, G(pv->head), NULL, pv->logits, pv->hf, P(pv->head), T, D,
                               m->V);
    memset(pv->dx, 0, fD);
    moe_nn_rmsnorm_backward(pv->dx, G(pv->nf), pv->dh, pv->xL, P(pv->nf), pv->rf, T, D);
    for (int l = m->L - 1; l >= 0; l--) {
        moe_layer_act *A = &pv->act[l];
        const moe_layer_off *o = &pv->off[l];
        const int mi = m->moe_index[l];
        if (mi < 0) {
            const int64_t off[2] = {0, T};
            moe_expert_weights ew = {P(o->w1), P(o->b1), P(o->w3), P(o->b3),
                                     P(o->w2), P(o->b2), .next_w1 = NULL};
            moe_expert_weights eg = {G(o->w1), G(o->b1), G(o->w3), G(o->b3),
                                     G(o->w2), G(o->b2), .next_w1 = NULL};
            moe_lora_ffn_views(m, l, &ew, 0);
            moe_lora_ffn_views(m, l, &eg, 1);
            moe_experts_backward(&pv->dense_fp, pv->dh, &eg, pv->ffn_scratch, &ew, off, A->h2,
                                 A->save, pv->dx); // dh WRITTEN
        } else {
            moe_layer_weights lw = moe_model_lw(m, l, 0);
            moe_layer_weights lg = moe_model_lw(m, l, 1);
            memset(pv->dh, 0, fD);
            moe_status st =
                moe_ffn_backward(pv->ffn[mi], pv->dh, &lg, pv->dx, &lw, &pv->comm_seconds, &pv->ph);
            if (st) return st;
            moe_lora_gate_backward(m, l);
        }
        moe_nn_rmsnorm_backward(pv->dx, G(o->n2), pv->dh, A->xm, P(o->n2), A->r2, T, D);
        const double t_att = moe_comm_wtime();
        memset(pv->da, 0, (size_t)(T * NQ) * sizeof(float));
        moe_nn_linear_backward(pv->da, G(o->wo), G(o->bo), pv->dx, A->a, P(o->wo), T, NQ, D);
        moe_lora_attn_backward(m, l, MOE_LORA_O, pv->da, pv->dx, A->a);
        memset(pv->dq2, 0, (size_t)(T * NQ) * sizeof(float));
        memset(pv->dk2, 0, (size_t)(T * NK) * sizeof(float));
        memset(pv->dv, 0, (size_t)(T * NK) * sizeof(float));
        moe_nn_attention_backward(pv->dq2, pv->dk2, pv->dv, pv->sc, pv->da, A->att, A->qa, A->ka,
                                  A->v, m->Bl, S, H, Hkv, Dh);
        float *dq = pv->dq2, *dk = pv->dk2;
        if (m->rope) {
            memset(pv->dq1, 0, (size_t)(T * NQ) * sizeof(float));
            memset(pv->dk1, 0, (size_t)(T * NK) * sizeof(float));
            moe_nn_rope_backward(pv->dq1, dq, pv->cos_t, pv->sin_t, m->Bl, S, H, Dh);
            moe_nn_rope_backward(pv->dk1, dk, pv->cos_t, pv->sin_t, m->Bl, S, Hkv, Dh);
            dq = pv->dq1, dk = pv->dk1;
        }
        if (m->qk_norm) {
            memset(pv->dq0, 0, (size_t)(T * NQ) * sizeof(float));
            memset(pv->dk0, 0, (size_t)(T * NK) * sizeof(float));
            if (m->qk_norm == MOE__MODEL_CONFIG__QK_NORM__per_head) {
                moe_nn_qknorm_backward(pv->dq0, G(o->qn), dq, A->q0, P(o->qn), A->rq, T, H, Dh);
                moe_nn_qknorm_backward(pv->dk0, G(o->kn), dk, A->k0, P(o->kn), A->rk, T, Hkv, Dh);
            } else {
                moe_nn_rmsnorm_backward(pv->dq0, G(o->qn), dq, A->q0, P(o->qn), A->rq, T, NQ);
                moe_nn_rmsnorm_backward(pv->dk0, G(o->kn), dk, A->k0, P(o->kn), A->rk, T, NK);
            }
            dq = pv->dq0, dk = pv->dk0;
        }
        memset(pv->dh, 0, fD);
        moe_nn_linear_backward(pv->dh, G(o->wq), G(o->bq), dq, A->h1, P(o->wq), T, D, NQ);
        moe_nn_linear_backward(pv->dh, G(o->wk), G(o->bk), dk, A->h1, P(o->wk), T, D, NK);
        moe_nn_linear_backward(pv->dh, G(o->wv), G(o->bv), pv->dv, A->h1, P(o->wv), T, D, NK);
        moe_lora_attn_backward(m, l, MOE_LORA_Q, pv->dh, dq, A->h1);
        moe_lora_attn_backward(m, l, MOE_LORA_K, pv->dh, dk, A->h1);
        moe_lora_attn_backward(m, l, MOE_LORA_V, pv->dh, pv->dv, A->h1);
        moe_nn_rmsnorm_backward(pv->dx, G(o->n1), pv->dh, A->x, P(o->n1), A->r1, T, D);
        pv->ph.attention += moe_comm_wtime() - t_att;
    }
    float *gpe = m->learned_pos ? G(pv->wpe) : NULL; // NULL also when frozen (LoRA)
    if (gpe)
        for (int64_t t = 0; t < T; t++)
            for (int64_t d = 0; d < D; d++) gpe[(t % S) * D + d] += pv->dx[t * D + d];
    if (G(pv->wte)) moe_nn_embed_backward(G(pv->wte), pv->dx, pv->tok, T, D);
    pv->pass_seconds += moe_comm_wtime() - t_pass;
    moe_model_close_phases(pv);
    return MOE_OK;
}
