// lora.c: LoRA adapters of the model (lora.h, docs/lora.md) — configuration, the adapters' table
// entries and their initialisation, the trainable set and its gradient layout, the attention and
// router adapters. Trade-off: the router adapter is applied to a merged copy of the (D, E) gate
// (D·E·r flops a layer, nothing for E ≪ T) so the router module stays unaware of adapters; every
// other adapter is factored, so no gradient of a frozen matrix is ever formed.
#include "lora.h"
#include "nn.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

typedef struct {
    int64_t a, b; // parameter offsets of A and B; -1: no adapter
} moe_lora_pair;

typedef struct {
    moe_lora_pair attn[MOE_LORA_N_ATTN];
    moe_lora_pair gate;       // router.wg (D, E)
    moe_lora_pair f1, f3, f2; // dense FFN
    moe_lora_pair s1, s3, s2; // shared experts: (Ns, ...) families
    moe_lora_pair e1, e3, e2; // routed experts: (El, ...) families
} moe_lora_off;

struct moe_lora {
    int64_t r;
    float scale; // alpha / r
    int attn, experts, shared, dense, router, train_router, train_norms;
    moe_lora_off *off;   // (L)
    float *u;            // (L, 4, T, r) attention inputs times A, for backward
    float *v;            // (T, r) backward scratch
    float *weff, *dweff; // (n_moe, D, E) merged gates; (D, E) the merged gate's gradient
};

static const moe_lora_pair moe_lora_none = {-1, -1};

void moe_lora_setup(moe_model *m, moe_model_priv *pv, const Moe__Config *cfg) {
    const Moe__LoraConfig *lc = cfg->lora;
    m->lora_rank = 0;
    pv->lora = NULL;
    if (!lc || lc->rank <= 0) return;
    moe_lora *lo = moe_xcalloc(1, sizeof *lo);
    lo->r = lc->rank;
    lo->scale = (float)(lc->alpha / lc->rank);
    if (lc->n_targets == 0) lo->attn = 1; // the schema's default: attention
    for (size_t i = 0; i < lc->n_targets; i++) {
        // No default: -Wswitch lists a new target here (validated before: a known value).
        switch (lc->targets[i]) {
        case MOE__LORA_CONFIG__TARGET__attention: lo->attn = 1; break;
        case MOE__LORA_CONFIG__TARGET__experts: lo->experts = 1; break;
        case MOE__LORA_CONFIG__TARGET__shared_experts: lo->shared = 1; break;
        case MOE__LORA_CONFIG__TARGET__dense_ffn: lo->dense = 1; break;
        case MOE__LORA_CONFIG__TARGET__router: lo->router = 1; break;
        case _MOE__LORA_CONFIG__TARGET_IS_INT_SIZE: break;
        }
    }
    lo->train_router = lc->train_router;
    lo->train_norms = lc->train_norms;
    lo->off = moe_xcalloc((size_t)m->L, sizeof *lo->off);
    m->lora_rank = lc->rank;
    pv->lora = lo;
    pv->dense_fp.lora_r = lo->dense ? lo->r : 0;
    pv->dense_fp.lora_scale = lo->scale;
    pv->lp.lora_r = lo->r;
    pv->lp.lora_scale = lo->scale;
    pv->lp.lora_experts = lo->experts;
    pv->lp.lora_shared = lo->shared;
}

void moe_lora_free(moe_lora *lo) {
    if (!lo) return;
    free(lo->off);
    free(lo->u);
    free(lo->v);
    free(lo->weff);
    free(lo->dweff);
    free(lo);
}

// ---------------------------------------------------------------- the table

// A (n_in, r) and B (r, n_out) of a dense matrix named `name` ("attn.wq" → "attn.wq.lora_a").
static moe_lora_pair lora_add(moe_builder *b, const char *name, int l, int group, int64_t r,
                              int64_t n_in, int64_t n_out) {
    char nm[40];
    moe_lora_pair p;
    snprintf(nm, sizeof nm, "%s.lora_a", name);
    p.a = moe_table_add(b, nm, l, -1, group, 1, n_in, r);
    snprintf(nm, sizeof nm, "%s.lora_b", name);
    p.b = moe_table_add(b, nm, l, -1, group, 1, r, n_out);
    return p;
}

// The same for a family of `count` experts (name "w1": "experts.w1.lora_a" keyed by global
// expert id, or "shared.<s>.w1.lora_a").
static moe_lora_pair lora_add_family(moe_builder *b, const char *name, int l, int count,
                                     int shared, int group, int64_t r, int64_t n_in,
                                     int64_t n_out) {
    char nm[40];
    moe_lora_pair p;
    snprintf(nm, sizeof nm, "%s.lora_a", name);
    p.a = moe_table_add_family(b, nm, l, count, shared, group, 1, n_in, r);
    snprintf(nm, sizeof nm, "%s.lora_b", name);
    p.b = moe_table_add_family(b, nm, l, count, shared, group, 1, r, n_out);
    return p;
}

void moe_lora_build(moe_model *m, moe_builder *b, moe_model_priv *pv, int experts) {
    moe_lora *lo = pv->lora;
    if (!lo) return;
    const int64_t r = lo->r, D = m->D, NQ = m->H * m->Dh, NK = m->Hkv * m->Dh;
    const int swi = pv->lp.act == MOE_ACT_SWIGLU;
    for (int l = 0; l < m->L; l++) {
        moe_lora_off *o = &lo->off[l];
        const int mi = m->moe_index[l];
        if (!experts) {
            for (int k = 0; k < MOE_LORA_N_ATTN; k++) o->attn[k] = moe_lora_none;
            o->gate = o->f1 = o->f3 = o->f2 = o->s1 = o->s3 = o->s2 = moe_lora_none;
            o->e1 = o->e3 = o->e2 = moe_lora_none;
            if (lo->attn) {
                const int g = MOE_GROUP_ATTENTION;
                o->attn[MOE_LORA_Q] = lora_add(b, "attn.wq", l, g, r, D, NQ);
                o->attn[MOE_LORA_K] = lora_add(b, "attn.wk", l, g, r, D, NK);
                o->attn[MOE_LORA_V] = lora_add(b, "attn.wv", l, g, r, D, NK);
                o->attn[MOE_LORA_O] = lora_add(b, "attn.wo", l, g, r, NQ, D);
            }
            if (mi < 0 && lo->dense) {
                const int g = MOE_GROUP_DENSE_FFN;
                o->f1 = lora_add(b, "ffn.w1", l, g, r, D, m->F);
                if (swi) o->f3 = lora_add(b, "ffn.w3", l, g, r, D, m->F);
                o->f2 = lora_add(b, "ffn.w2", l, g, r, m->F, D);
            }
            if (mi >= 0 && lo->router) o->gate = lora_add(b, "router.wg", l, MOE_GROUP_ROUTER, r, D, m->E);
            const int Ns = pv->lp.n_shared;
            if (mi >= 0 && lo->shared && Ns > 0) {
                const int g = MOE_GROUP_N_FIXED + 2 * mi + 1;
                const int64_t Fs = pv->lp.Fs;
                o->s1 = lora_add_family(b, "w1", l, Ns, 1, g, r, D, Fs);
                if (swi) o->s3 = lora_add_family(b, "w3", l, Ns, 1, g, r, D, Fs);
                o->s2 = lora_add_family(b, "w2", l, Ns, 1, g, r, Fs, D);
            }
        } else if (mi >= 0 && lo->experts) {
            const int g = MOE_GROUP_N_FIXED + 2 * mi;
            const int64_t Fe = pv->lp.F;
            o->e1 = lora_add_family(b, "w1", l, m->El, 0, g, r, D, Fe); // "experts.w1.lora_a"
            if (swi) o->e3 = lora_add_family(b, "w3", l, m->El, 0, g, r, D, Fe);
            o->e2 = lora_add_family(b, "w2", l, m->El, 0, g, r, Fe, D);
        }
    }
}

static int lora_ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

// The tensors the optimizer updates: all without LoRA; with it the adapters and, when asked,
// the router gates (and their adapters' group) and the norm weights.
static int lora_trainable(const moe_model *m, const moe_model_tensor *t) {
    const moe_lora *lo = ((const moe_model_priv *)m->priv)->lora;
    if (!lo) return 1;
    if (strstr(t->name, ".lora_")) return 1;
    if (lo->train_router && t->group == MOE_GROUP_ROUTER) return 1;
    return lo->train_norms && lora_ends_with(t->name, "norm");
}

void moe_model_assign_grads(moe_model *m) {
    if (m->lora_rank <= 0) {
        for (int i = 0; i < m->n_tensors; i++) m->tensors[i].goff = m->tensors[i].offset;
        m->n_train_dense = m->n_dense, m->n_train = m->n_params;
        return;
    }
    // Trainable tensors in table order (dense first, then experts); tensors that are contiguous
    // in params stay contiguous here, so a family block (El experts) is one block of gradients.
    int64_t g = 0, prev_end = -1, prev_gend = 0;
    m->n_train_dense = -1;
    for (int i = 0; i < m->n_tensors; i++) {
        moe_model_tensor *t = &m->tensors[i];
        MOE_ASSERT(i == 0 || t->offset >= m->tensors[i - 1].offset + m->tensors[i - 1].n);
        if (t->expert >= 0 && m->n_train_dense < 0) {
            m->n_train_dense = g = moe_round16(g);
            prev_end = -1;
        }
        if (!lora_trainable(m, t)) {
            t->goff = -1;
            continue;
        }
        t->goff = t->offset == prev_end ? prev_gend : moe_round16(g);
        prev_end = t->offset + t->n;
        g = prev_gend = t->goff + t->n;
    }
    if (m->n_train_dense < 0) m->n_train_dense = moe_round16(g);
    m->n_train = moe_round16(g);
}

moe_model_counts moe_model_count_params(const moe_model *m) {
    moe_model_counts c = {0, 0};
    for (int i = 0; i < m->n_tensors; i++) {
        const moe_model_tensor *t = &m->tensors[i];
        const int64_t n = t->expert >= 0 ? t->n * m->lay.ep : t->n;
        if (t->goff >= 0)
            c.trainable += n;
        else
            c.frozen += n;
    }
    return c;
}

float *moe_model_grad_ptr(const moe_model *m, int64_t off) {
    if (off < 0) return NULL;
    if (m->lora_rank <= 0) return m->grads + off;
    int lo = 0, hi = m->n_tensors - 1; // the last tensor starting at or before off
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (m->tensors[mid].offset <= off)
            lo = mid;
        else
            hi = mid - 1;
    }
    const moe_model_tensor *t = &m->tensors[lo];
    MOE_ASSERT(off >= t->offset && off < t->offset + t->n);
    return t->goff < 0 ? NULL : m->grads + t->goff + (off - t->offset);
}

// A: uniform(±1/√n_in), PEFT's kaiming_uniform_(a=√5) (gain √(1/3), bound gain·√(3/fan_in)),
// drawn per element from (seed, tensor key, index) as nn-init.c does: the same at every layout.
int moe_lora_init_tensor(moe_model *m, const moe_model_tensor *t, uint64_t seed) {
    float *w = m->params + t->offset;
    if (lora_ends_with(t->name, ".lora_b")) {
        moe_nn_init_const(w, t->n, 0.0f);
        return 1;
    }
    if (!lora_ends_with(t->name, ".lora_a")) return 0;
    const double bound = 1.0 / sqrt((double)t->shape[0]);
    const uint64_t base =
        moe_splitmix64(seed ^ moe_splitmix64(moe_nn_init_key(t->name, t->layer, t->expert)));
    for (int64_t i = 0; i < t->n; i++) {
        const double u = (double)(moe_splitmix64(base + (uint64_t)i) >> 11) *
                         (1.0 / 9007199254740992.0); // [0, 1)
        w[i] = (float)(bound * (2.0 * u - 1.0));
    }
    return 1;
}

void moe_lora_alloc(moe_model *m, moe_model_priv *pv) {
    moe_lora *lo = pv->lora;
    if (!lo || m->T <= 0) return;
    const int64_t T = m->T, r = lo->r;
    if (lo->attn) {
        lo->u = moe_xalloc_aligned((size_t)(m->L * MOE_LORA_N_ATTN * T * r) * sizeof(float));
        lo->v = moe_xalloc_aligned((size_t)(T * r) * sizeof(float));
    }
    if (lo->router && m->n_moe > 0) {
        lo->weff = moe_xalloc_aligned((size_t)(m->n_moe * m->D * m->E) * sizeof(float));
        lo->dweff = moe_xcalloc((size_t)(m->D * m->E), sizeof(float));
    }
}

// ---------------------------------------------------------------- attention

static void attn_dims(const moe_model *m, moe_lora_attn which, int64_t *n_in, int64_t *n_out) {
    const int64_t NQ = m->H * m->Dh, NK = m->Hkv * m->Dh;
    switch (which) {
    case MOE_LORA_Q: *n_in = m->D, *n_out = NQ; return;
    case MOE_LORA_K:
    case MOE_LORA_V: *n_in = m->D, *n_out = NK; return;
    case MOE_LORA_O: *n_in = NQ, *n_out = m->D; return;
    case MOE_LORA_N_ATTN: break;
    }
    MOE_ASSERT(0);
}

void moe_lora_attn_forward(moe_model *m, int l, moe_lora_attn which, float *out, const float *inp) {
    const moe_lora *lo = ((moe_model_priv *)m->priv)->lora;
    if (!lo || !lo->attn) return;
    const moe_lora_pair p = lo->off[l].attn[which];
    int64_t n_in, n_out;
    attn_dims(m, which, &n_in, &n_out);
    float *u = lo->u + ((int64_t)l * MOE_LORA_N_ATTN + which) * m->T * lo->r;
    moe_lora_forward(m->T, n_in, n_out, lo->r, lo->scale, inp, m->params + p.a, m->params + p.b,
                     u, out);
}

void moe_lora_attn_backward(moe_model *m, int l, moe_lora_attn which, float *dinp,
                            const float *dout, const float *inp) {
    const moe_lora *lo = ((moe_model_priv *)m->priv)->lora;
    if (!lo || !lo->attn) return;
    const moe_lora_pair p = lo->off[l].attn[which];
    int64_t n_in, n_out;
    attn_dims(m, which, &n_in, &n_out);
    const float *u = lo->u + ((int64_t)l * MOE_LORA_N_ATTN + which) * m->T * lo->r;
    moe_lora_backward(m->T, n_in, n_out, lo->r, lo->scale, inp, m->params + p.a, m->params + p.b,
                      u, dout, lo->v, dinp, moe_model_grad_ptr(m, p.a), moe_model_grad_ptr(m, p.b),
                      1);
}

// ---------------------------------------------------------------- router

void moe_lora_gate_forward(moe_model *m, int l) {
    const moe_model_priv *pv = m->priv;
    const moe_lora *lo = pv->lora;
    if (!lo || !lo->router || m->moe_index[l] < 0) return;
    const int64_t D = m->D, E = m->E, r = lo->r;
    const moe_lora_pair p = lo->off[l].gate;
    float *we = lo->weff + (int64_t)m->moe_index[l] * D * E;
    memcpy(we, m->params + pv->off[l].wg, (size_t)(D * E) * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)D, (int)E, (int)r, lo->scale,
                m->params + p.a, (int)r, m->params + p.b, (int)E, 1.0f, we, (int)E);
}

void moe_lora_gate_backward(moe_model *m, int l) {
    const moe_model_priv *pv = m->priv;
    const moe_lora *lo = pv->lora;
    if (!lo || !lo->router || m->moe_index[l] < 0) return;
    const int64_t D = m->D, E = m->E, r = lo->r;
    const moe_lora_pair p = lo->off[l].gate;
    const float *A = m->params + p.a, *B = m->params + p.b;
    float *dw = lo->dweff, *dA = moe_model_grad_ptr(m, p.a), *dB = moe_model_grad_ptr(m, p.b);
    // W' = W + s·A·B: dA += s·dW'·Bᵀ, dB += s·Aᵀ·dW', dW += dW' (when the gate trains)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)D, (int)r, (int)E, lo->scale, dw,
                (int)E, B, (int)E, 1.0f, dA, (int)r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)E, (int)D, lo->scale, A,
                (int)r, dw, (int)E, 1.0f, dB, (int)E);
    float *dwg = moe_model_grad_ptr(m, pv->off[l].wg);
    if (dwg)
        for (int64_t i = 0; i < D * E; i++) dwg[i] += dw[i];
    memset(dw, 0, (size_t)(D * E) * sizeof(float));
}

// ---------------------------------------------------------------- views

static float *lora_view(const moe_model *m, int64_t off, int grads) {
    if (off < 0) return NULL;
    return grads ? moe_model_grad_ptr(m, off) : m->params + off;
}

void moe_lora_layer_views(const moe_model *m, int l, moe_layer_weights *w, int grads) {
    const moe_lora *lo = ((const moe_model_priv *)m->priv)->lora;
    if (!lo) return;
    const moe_lora_off *o = &lo->off[l];
    moe_expert_weights *e = &w->experts, *s = &w->shared;
    e->la1 = lora_view(m, o->e1.a, grads), e->lb1 = lora_view(m, o->e1.b, grads);
    e->la3 = lora_view(m, o->e3.a, grads), e->lb3 = lora_view(m, o->e3.b, grads);
    e->la2 = lora_view(m, o->e2.a, grads), e->lb2 = lora_view(m, o->e2.b, grads);
    s->la1 = lora_view(m, o->s1.a, grads), s->lb1 = lora_view(m, o->s1.b, grads);
    s->la3 = lora_view(m, o->s3.a, grads), s->lb3 = lora_view(m, o->s3.b, grads);
    s->la2 = lora_view(m, o->s2.a, grads), s->lb2 = lora_view(m, o->s2.b, grads);
    if (o->gate.a >= 0 && lo->weff)
        w->wg = grads ? lo->dweff : lo->weff + (int64_t)m->moe_index[l] * m->D * m->E;
}

void moe_lora_ffn_views(const moe_model *m, int l, moe_expert_weights *w, int grads) {
    const moe_lora *lo = ((const moe_model_priv *)m->priv)->lora;
    if (!lo) return;
    const moe_lora_off *o = &lo->off[l];
    w->la1 = lora_view(m, o->f1.a, grads), w->lb1 = lora_view(m, o->f1.b, grads);
    w->la3 = lora_view(m, o->f3.a, grads), w->lb3 = lora_view(m, o->f3.b, grads);
    w->la2 = lora_view(m, o->f2.a, grads), w->lb2 = lora_view(m, o->f2.b, grads);
}
