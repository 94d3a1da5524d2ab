// layer.c: the one-rank MoE layer — router → permute (gather rows into expert order) → grouped
// expert FFNs → unpermute (weighted combine) + shared experts, and its backward; plus weight
// storage and the config → params helper. Every buffer is sized at create time from T_max (the
// worst case R = T_max·K rows, or E·C for expert choice), so forward/backward never allocate.
#include "experts.h"
#include "moe.pb-c.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

struct moe_layer {
    moe_layer_timing timing;
    moe_layer_params p;
    moe_experts_params ep, sp; // routed and shared families
    moe_route_plan *plan;
    const float *x; // (T, D) input of the last forward (not owned)
    int64_t T;
    float *xin;            // (R_max, D) packed rows
    float *out;            // (R_max, D) expert outputs (unweighted); dxin in backward
    float *save;           // (R_max · save_per_row)
    float *dout;           // (R_max, D)
    float *scratch;        // (R_max · scratch_per_row)
    float *drw;            // (R_max) dL/d row_weight
    moe_shared_buffers sh; // shared experts, for T_max tokens (none when n_shared = 0)
};

moe_experts_params moe_layer_routed_params(const moe_layer_params *p) {
    moe_experts_params e = {p->router.D, p->F, p->router.E, p->act, p->ffn_bias,
                            p->lora_experts ? p->lora_r : 0, p->lora_scale};
    return e;
}

moe_experts_params moe_layer_shared_params(const moe_layer_params *p) {
    moe_experts_params e = {p->router.D, p->Fs, p->n_shared, p->act, p->ffn_bias,
                            p->lora_shared ? p->lora_r : 0, p->lora_scale};
    return e;
}

// proto → C enum mappings: switches over the proto enum without default, so a value added to
// moe.proto is listed here by -Wswitch. A number no name has (a message built in C or unpacked
// from bytes; the JSON reader already refuses them) is refused, never turned into the default.
// protobuf-c appends a marker _<ENUM>_IS_INT_SIZE = INT_MAX to fix the enum's size: not a value.
_Static_assert((int)MOE_SCORE_SIGMOID == (int)MOE__ROUTER_CONFIG__SCORING__sigmoid &&
                   (int)MOE_ROUTE_EXPERT_CHOICE ==
                       (int)MOE__ROUTER_CONFIG__STRATEGY__expert_choice &&
                   (int)MOE_ACT_GELU == (int)MOE__MODEL_CONFIG__ACTIVATION__gelu &&
                   (int)MOE_GROUP_SCORE_MAX == (int)MOE__ROUTER_CONFIG__GROUP_SCORE__max,
               "C enums keep the proto values (documented in router.h and experts.h)");

static moe_status moe_scoring_from_proto(Moe__RouterConfig__Scoring v, moe_scoring *out) {
    switch (v) {
    case MOE__ROUTER_CONFIG__SCORING__softmax: *out = MOE_SCORE_SOFTMAX; return MOE_OK;
    case MOE__ROUTER_CONFIG__SCORING__sigmoid: *out = MOE_SCORE_SIGMOID; return MOE_OK;
    case _MOE__ROUTER_CONFIG__SCORING_IS_INT_SIZE: break;
    }
    return moe_set_error(MOE_EINVAL,
                         "router.scoring = %d is not a known scoring function; use "
                         "softmax or sigmoid",
                         (int)v);
}

static moe_status moe_group_score_from_proto(Moe__RouterConfig__GroupScore v,
                                             moe_group_score *out) {
    switch (v) {
    case MOE__ROUTER_CONFIG__GROUP_SCORE__top2_sum: *out = MOE_GROUP_SCORE_TOP2_SUM; return MOE_OK;
    case MOE__ROUTER_CONFIG__GROUP_SCORE__max: *out = MOE_GROUP_SCORE_MAX; return MOE_OK;
    case _MOE__ROUTER_CONFIG__GROUP_SCORE_IS_INT_SIZE: break;
    }
    return moe_set_error(MOE_EINVAL,
                         "router.group_score = %d is not a known group score; use top2_sum or max",
                         (int)v);
}

moe_status moe_layer_strategy_from_config(const Moe__RouterConfig *r, moe_route_strategy *out) {
    Moe__RouterConfig__Strategy v =
        r ? r->strategy : (Moe__RouterConfig__Strategy)MOE__ROUTER_CONFIG__STRATEGY__token_choice;
    switch (v) {
    case MOE__ROUTER_CONFIG__STRATEGY__token_choice: *out = MOE_ROUTE_TOKEN_CHOICE; return MOE_OK;
    case MOE__ROUTER_CONFIG__STRATEGY__expert_choice: *out = MOE_ROUTE_EXPERT_CHOICE; return MOE_OK;
    case _MOE__ROUTER_CONFIG__STRATEGY_IS_INT_SIZE: break;
    }
    return moe_set_error(MOE_EINVAL,
                         "router.strategy = %d is not a known routing strategy; use "
                         "token_choice or expert_choice",
                         (int)v);
}

static moe_status moe_activation_from_proto(Moe__ModelConfig__Activation v, moe_activation *out) {
    switch (v) {
    case MOE__MODEL_CONFIG__ACTIVATION__swiglu: *out = MOE_ACT_SWIGLU; return MOE_OK;
    case MOE__MODEL_CONFIG__ACTIVATION__gelu: *out = MOE_ACT_GELU; return MOE_OK;
    case _MOE__MODEL_CONFIG__ACTIVATION_IS_INT_SIZE: break;
    }
    return moe_set_error(MOE_EINVAL,
                         "model.activation = %d is not a known activation; use swiglu "
                         "or gelu",
                         (int)v);
}

moe_status moe_layer_params_from_config(moe_layer_params *out, const Moe__ModelConfig *m,
                                        const Moe__RouterConfig *r, int64_t T_max) {
    Moe__RouterConfig rdef;
    moe__router_config__init(&rdef);
    if (!r) r = &rdef;
    memset(out, 0, sizeof *out);
    if (!m) return moe_set_error(MOE_EINVAL, "model config missing: set model.n_experts etc.");
    if (m->n_experts < 1)
        return moe_set_error(MOE_EINVAL, "model.n_experts = %d: an MoE layer needs >= 1 expert",
                             m->n_experts);
    if (m->top_k < 1 || m->top_k > m->n_experts)
        return moe_set_error(MOE_EINVAL, "model.top_k = %d: must be in 1..model.n_experts (%d)",
                             m->top_k, m->n_experts);
    int64_t D = m->d_model;
    int64_t dff = m->d_ff > 0 ? m->d_ff : 4 * D;
    int64_t F = m->expert_d_ff > 0 ? m->expert_d_ff : dff;
    int64_t Fs = m->shared_expert_d_ff > 0 ? m->shared_expert_d_ff : F;
    if (D < 1 || F < 1 || T_max < 1 || m->n_shared_experts < 0)
        return moe_set_error(MOE_EINVAL,
                             "model.d_model = %lld, expert width %lld, n_shared_experts = %d, "
                             "tokens %lld: all must be positive (shared: >= 0)",
                             (long long)D, (long long)F, m->n_shared_experts, (long long)T_max);
    if (r->capacity_factor < 0 || r->jitter < 0)
        return moe_set_error(MOE_EINVAL,
                             "router.capacity_factor = %g, router.jitter = %g: must be >= 0",
                             r->capacity_factor, r->jitter);
    moe_status st;
    if ((st = moe_scoring_from_proto(r->scoring, &out->router.scoring)) ||
        (st = moe_layer_strategy_from_config(r, &out->router.strategy)) ||
        (st = moe_activation_from_proto(m->activation, &out->act)) ||
        (st = moe_group_score_from_proto(r->group_score, &out->router.group_score)))
        return st;
    out->router.D = D;
    out->router.E = m->n_experts;
    out->router.K = m->top_k;
    out->router.renormalize = r->renormalize;
    out->router.gate_bias = m->router_bias;
    out->router.capacity_factor = r->capacity_factor;
    out->router.aux_loss_coef = r->aux_loss_coef;
    out->router.z_loss_coef = r->z_loss_coef;
    out->router.jitter = r->jitter;
    out->router.routed_scaling = r->routed_scaling;
    // Groups: n_group 0 or 1 is off; node_limited's n_group is resolved by the caller at setup
    // (moe_router_node_groups), until then moe_route_plan_create refuses it.
    out->router.n_group = r->n_group > 1 ? r->n_group : 0;
    out->router.topk_group = out->router.n_group > 1 || r->node_limited ? r->topk_group : 0;
    out->router.node_limited = r->node_limited;
    out->router.balance_sequence = r->balance_scope == MOE__ROUTER_CONFIG__BALANCE_SCOPE__sequence;
    if (r->n_group < 0)
        return moe_set_error(MOE_EINVAL, "router.n_group = %d: must be 0 or more (0 or 1: off)",
                             r->n_group);
    out->F = F;
    out->ffn_bias = m->ffn_bias;
    out->n_shared = m->n_shared_experts;
    out->Fs = Fs;
    out->shared_gate = m->shared_expert_gate && m->n_shared_experts > 0;
    out->T_max = T_max;
    return MOE_OK;
}

// ------------------------------------------------------------------------------ weights

// Lays out (or just counts, when base is NULL) a family's tensors from *off, 16-float aligned.
static float *moe_take(float *base, int64_t *off, int64_t n) {
    float *ptr = base ? base + *off : NULL;
    *off += (n + 15) & ~(int64_t)15;
    return ptr;
}

static void moe_family_layout(const moe_experts_params *e, float *base, int64_t *off,
                              moe_expert_weights *w) {
    memset(w, 0, sizeof *w);
    if (e->n_experts == 0) return;
    int64_t n = e->n_experts;
    int sw = e->act == MOE_ACT_SWIGLU;
    w->w1 = moe_take(base, off, n * e->D * e->F);
    if (e->bias) w->b1 = moe_take(base, off, n * e->F);
    if (sw) w->w3 = moe_take(base, off, n * e->D * e->F);
    if (sw && e->bias) w->b3 = moe_take(base, off, n * e->F);
    w->w2 = moe_take(base, off, n * e->F * e->D);
    if (e->bias) w->b2 = moe_take(base, off, n * e->D);
}

static int64_t moe_layer_layout(const moe_layer_params *p, float *base, moe_layer_weights *w) {
    int64_t off = 0;
    memset(w, 0, sizeof *w);
    moe_experts_params ep = moe_layer_routed_params(p), sp = moe_layer_shared_params(p);
    w->wg = moe_take(base, &off, p->router.D * p->router.E);
    if (p->router.gate_bias) w->bg = moe_take(base, &off, p->router.E);
    moe_family_layout(&ep, base, &off, &w->experts);
    moe_family_layout(&sp, base, &off, &w->shared);
    if (p->n_shared > 0 && p->shared_gate) w->ws = moe_take(base, &off, p->router.D);
    return off;
}

int64_t moe_layer_weights_alloc(const moe_layer_params *p, moe_layer_weights *w) {
    int64_t n = moe_layer_layout(p, NULL, w);
    float *base = moe_xalloc_aligned((size_t)n * sizeof(float));
    moe_layer_layout(p, base, w); // wg is at offset 0: it is the block to free
    return n;
}

void moe_layer_weights_free(moe_layer_weights *w) {
    if (!w) return;
    free(w->wg);
    memset(w, 0, sizeof *w);
}

static void moe_fill_uniform(float *a, int64_t n, double bound, uint64_t *state) {
    if (!a) return;
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = moe_splitmix64_next(state);
        a[i] = (float)(bound * (2.0 * ((double)(z >> 11) / 9007199254740992.0) - 1.0));
    }
}

void moe_layer_weights_init(const moe_layer_params *p, moe_layer_weights *w, uint64_t seed) {
    uint64_t st = seed;
    int64_t D = p->router.D, E = p->router.E;
    double bD = 1.0 / sqrt((double)D);
    moe_fill_uniform(w->wg, D * E, bD, &st);
    moe_fill_uniform(w->bg, E, bD, &st);
    moe_expert_weights *fam[2] = {&w->experts, &w->shared};
    int64_t n[2] = {E, p->n_shared}, F[2] = {p->F, p->Fs};
    for (int i = 0; i < 2; i++) {
        double bF = 1.0 / sqrt((double)F[i]);
        moe_fill_uniform(fam[i]->w1, n[i] * D * F[i], bD, &st);
        moe_fill_uniform(fam[i]->b1, n[i] * F[i], bD, &st);
        moe_fill_uniform(fam[i]->w3, n[i] * D * F[i], bD, &st);
        moe_fill_uniform(fam[i]->b3, n[i] * F[i], bD, &st);
        moe_fill_uniform(fam[i]->w2, n[i] * F[i] * D, bF, &st);
        moe_fill_uniform(fam[i]->b2, n[i] * D, bF, &st);
    }
    moe_fill_uniform(w->ws, D, bD, &st);
}

// ------------------------------------------------------------------------------ the layer

moe_status moe_layer_create(const moe_layer_params *p, moe_layer **out) {
    *out = NULL;
    if (p->F < 1 || p->n_shared < 0 || (p->n_shared > 0 && p->Fs < 1) || p->T_max < 1)
        return moe_set_error(MOE_EINVAL,
                             "moe layer: expert width F=%lld, n_shared=%d, Fs=%lld, T_max=%lld: "
                             "need F >= 1, T_max >= 1 and Fs >= 1 when shared experts are on",
                             (long long)p->F, p->n_shared, (long long)p->Fs, (long long)p->T_max);
    moe_route_plan *plan;
    moe_status st = moe_route_plan_create(&p->router, p->T_max, &plan);
    if (st) return st;
    moe_layer *L = moe_xcalloc(1, sizeof *L);
    L->p = *p;
    L->ep = moe_layer_routed_params(p);
    L->sp = moe_layer_shared_params(p);
    L->plan = plan;
    const int64_t D = p->router.D, R = moe_router_max_rows(&p->router, p->T_max), T = p->T_max;
    L->xin = moe_xalloc_aligned((size_t)(R * D) * sizeof(float));
    L->out = moe_xalloc_aligned((size_t)(R * D) * sizeof(float));
    L->dout = moe_xalloc_aligned((size_t)(R * D) * sizeof(float));
    L->save = moe_xalloc_aligned((size_t)(R * moe_experts_save_per_row(&L->ep)) * sizeof(float));
    L->scratch =
        moe_xalloc_aligned((size_t)(R * moe_experts_scratch_per_row(&L->ep)) * sizeof(float));
    L->drw = moe_xalloc_aligned((size_t)R * sizeof(float));
    if (p->n_shared > 0) moe_shared_buffers_alloc(&L->sh, &L->sp, T);
    *out = L;
    return MOE_OK;
}

void moe_layer_free(moe_layer *L) {
    if (!L) return;
    moe_route_plan_free(L->plan);
    free(L->xin);
    free(L->out);
    free(L->dout);
    free(L->save);
    free(L->scratch);
    free(L->drw);
    moe_shared_buffers_free(&L->sh);
    free(L);
}

const moe_route_plan *moe_layer_plan(const moe_layer *L) { return L->plan; }

const moe_layer_timing *moe_layer_timings(const moe_layer *L) { return &L->timing; }

// packed (R, D) written, packed[r] = x[row_token[r]].
static void moe_layer_permute(const moe_route_plan *plan, float *packed, const float *x,
                              int64_t D) {
    for (int64_t r = 0; r < plan->n_rows; r++)
        memcpy(packed + r * D, x + (int64_t)plan->row_token[r] * D, (size_t)D * sizeof(float));
}

// y (T, D) ADDED, y[t] += Σ_rows row_weight[r]·out[r] over the token's kept rows.
static void moe_layer_unpermute(const moe_route_plan *plan, float *y, const float *out, int64_t D) {
    for (int64_t t = 0; t < plan->T; t++) {
        float *yt = y + t * D;
        for (int64_t j = plan->tok_offsets[t]; j < plan->tok_offsets[t + 1]; j++) {
            int64_t r = plan->tok_rows[j];
            const float w = plan->row_weight[r], *o = out + r * D;
            for (int64_t d = 0; d < D; d++) yt[d] += w * o[d];
        }
    }
}

void moe_layer_forward(moe_layer *L, float *y, moe_route_stats *stats, const float *x, int64_t T,
                       const moe_layer_weights *w, const float *balance_bias,
                       const moe_route_opts *opts) {
    const moe_layer_params *p = &L->p;
    const int64_t D = p->router.D;
    MOE_ASSERT(T >= 0 && T <= p->T_max);
    L->x = x;
    L->T = T;
    moe_route_plan *plan = L->plan;
    moe_layer_phases *ph = &L->timing.fwd;
    memset(ph, 0, sizeof *ph);
    double t0 = moe_clock_seconds();
    moe_router_forward(&p->router, plan, stats, x, w->wg, w->bg, balance_bias, T, opts);
    double t1 = moe_clock_seconds();
    moe_layer_permute(plan, L->xin, x, D);
    double t2 = moe_clock_seconds();
    moe_experts_forward(&L->ep, L->out, L->save, &w->experts, plan->offsets, L->xin);
    double t3 = moe_clock_seconds();
    memset(y, 0, (size_t)(T * D) * sizeof(float));
    moe_layer_unpermute(plan, y, L->out, D);
    double t4 = moe_clock_seconds();
    ph->router = t1 - t0, ph->permute = t2 - t1, ph->experts = t3 - t2, ph->combine = t4 - t3;
    if (p->n_shared == 0 || T == 0) return;
    moe_shared_forward(&L->sp, &L->sh, y, &w->shared, p->shared_gate ? w->ws : NULL, x, T);
    ph->shared = moe_clock_seconds() - t4;
}

void moe_layer_backward(moe_layer *L, float *dx, moe_layer_weights *grads, const float *dy,
                        const moe_layer_weights *w) {
    const moe_layer_params *p = &L->p;
    const int64_t D = p->router.D, T = L->T;
    const float *x = L->x;
    moe_route_plan *plan = L->plan;
    const int64_t R = plan->n_rows;
    moe_layer_phases *ph = &L->timing.bwd;
    memset(ph, 0, sizeof *ph);
    double t0 = moe_clock_seconds();
    // dL/dw_r = dy_t·out_r; dout_r = w_r·dy_t
    for (int64_t r = 0; r < R; r++) {
        const float *dyt = dy + (int64_t)plan->row_token[r] * D, *o = L->out + r * D;
        float *dor = L->dout + r * D, wr = plan->row_weight[r], acc = 0;
        for (int64_t d = 0; d < D; d++) {
            acc += dyt[d] * o[d];
            dor[d] = wr * dyt[d];
        }
        L->drw[r] = acc;
    }
    float *dxin = L->out; // expert outputs are no longer needed
    double t1 = moe_clock_seconds();
    moe_experts_backward(&L->ep, dxin, &grads->experts, L->scratch, &w->experts, plan->offsets,
                         L->xin, L->save, L->dout);
    double t2 = moe_clock_seconds();
    for (int64_t t = 0; t < T; t++) {
        float *dxt = dx + t * D;
        for (int64_t j = plan->tok_offsets[t]; j < plan->tok_offsets[t + 1]; j++) {
            const float *src = dxin + (int64_t)plan->tok_rows[j] * D;
            for (int64_t d = 0; d < D; d++) dxt[d] += src[d];
        }
    }
    double t3 = moe_clock_seconds();
    moe_router_backward(&p->router, plan, L->drw, x, w->wg, dx, grads->wg, grads->bg);
    double t4 = moe_clock_seconds();
    ph->permute = (t1 - t0) + (t3 - t2), ph->experts = t2 - t1, ph->router = t4 - t3;
    if (p->n_shared == 0 || T == 0) return;
    const int gate = p->shared_gate;
    moe_shared_backward(&L->sp, &L->sh, dx, &grads->shared, gate ? grads->ws : NULL, &w->shared,
                        gate ? w->ws : NULL, x, dy, T);
    ph->shared = moe_clock_seconds() - t4;
}
