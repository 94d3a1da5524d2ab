// model-build.c: the model's parameter table and its initialisation (model-impl.h): one block of
// floats, the dense region first, then the routed experts' families (El experts each, keyed by
// global expert id so that a checkpoint reshards by (layer, expert)); every tensor initialised
// from (seed, name, layer, global expert), the same at any layout.
#include "lora.h"
#include "model-impl.h"
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int moe_ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

// docs/model.md's table: norms 1; biases and the shared gate 0; Wo and every W2 0.02/√(2L);
// other matrices and embeddings 0.02.
static void moe_model_init_tensor(moe_model *m, const moe_model_tensor *t, uint64_t seed) {
    float *w = m->params + t->offset;
    const char *n = t->name;
    if (moe_lora_init_tensor(m, t, seed)) return; // an adapter
    int is_norm = moe_ends_with(n, "norm") || moe_ends_with(n, "_norm");
    int is_zero = moe_ends_with(n, ".b1") || moe_ends_with(n, ".b2") || moe_ends_with(n, ".b3") ||
                  moe_ends_with(n, ".bq") || moe_ends_with(n, ".bk") || moe_ends_with(n, ".bv") ||
                  moe_ends_with(n, ".bo") || moe_ends_with(n, ".bg") || moe_ends_with(n, ".ws");
    if (is_norm || is_zero) {
        moe_nn_init_const(w, t->n, is_norm ? 1.0f : 0.0f);
        return;
    }
    double std = 0.02;
    if (moe_ends_with(n, ".wo") || moe_ends_with(n, ".w2")) std = 0.02 / sqrt(2.0 * (double)m->L);
    moe_nn_init_normal(w, t->n, std, seed, moe_nn_init_key(n, t->layer, t->expert), 0);
}

// The builder's two steps are model-table.c's (shared with the adapters' table, lora.c).
static int64_t moe_add(moe_builder *b, const char *name, int layer, int expert, int group,
                       int decay, int64_t d0, int64_t d1) {
    return moe_table_add(b, name, layer, expert, group, decay, d0, d1);
}

static int64_t moe_add_family(moe_builder *b, const char *name, int layer, int count, int shared,
                              int group, int decay, int64_t d0, int64_t d1) {
    return moe_table_add_family(b, name, layer, count, shared, group, decay, d0, d1);
}

static void moe_model_build(moe_model *m, moe_builder *b, moe_model_priv *pv) {
    const Moe__ModelConfig *mc = m->mc;
    const int64_t D = m->D, NQ = m->H * m->Dh, NK = m->Hkv * m->Dh;
    const int qkvb = mc->attn_qkv_bias, ob = mc->attn_out_bias, fb = mc->ffn_bias;
    const int swi = mc->activation == MOE__MODEL_CONFIG__ACTIVATION__swiglu;
    const int64_t Fe = pv->lp.F, Fs = pv->lp.Fs, Ns = mc->n_shared_experts;
    // Dense region.
    pv->wte = moe_add(b, "wte", -1, -1, MOE_GROUP_EMBEDDINGS, 1, m->V, D);
    pv->wpe = m->learned_pos
                  ? moe_add(b, "wpe", -1, -1, MOE_GROUP_EMBEDDINGS, 1, mc->max_seq_len, D)
                  : -1;
    for (int l = 0; l < m->L; l++) {
        moe_layer_off *o = &pv->off[l];
        memset(o, 0xff, sizeof *o); // every offset -1
        o->n1 = moe_add(b, "attn_norm", l, -1, MOE_GROUP_NORMS, 0, D, 0);
        o->wq = moe_add(b, "attn.wq", l, -1, MOE_GROUP_ATTENTION, 1, D, NQ);
        if (qkvb) o->bq = moe_add(b, "attn.bq", l, -1, MOE_GROUP_ATTENTION, 0, NQ, 0);
        o->wk = moe_add(b, "attn.wk", l, -1, MOE_GROUP_ATTENTION, 1, D, NK);
        if (qkvb) o->bk = moe_add(b, "attn.bk", l, -1, MOE_GROUP_ATTENTION, 0, NK, 0);
        o->wv = moe_add(b, "attn.wv", l, -1, MOE_GROUP_ATTENTION, 1, D, NK);
        if (qkvb) o->bv = moe_add(b, "attn.bv", l, -1, MOE_GROUP_ATTENTION, 0, NK, 0);
        if (m->qk_norm) { // per_head: one weight of width Dh for every head; full: NQ and NK
            const int full = m->qk_norm == MOE__MODEL_CONFIG__QK_NORM__full;
            o->qn = moe_add(b, "attn.q_norm", l, -1, MOE_GROUP_ATTENTION, 0, full ? NQ : m->Dh, 0);
            o->kn = moe_add(b, "attn.k_norm", l, -1, MOE_GROUP_ATTENTION, 0, full ? NK : m->Dh, 0);
        }
        o->wo = moe_add(b, "attn.wo", l, -1, MOE_GROUP_ATTENTION, 1, NQ, D);
        if (ob) o->bo = moe_add(b, "attn.bo", l, -1, MOE_GROUP_ATTENTION, 0, D, 0);
        o->n2 = moe_add(b, "ffn_norm", l, -1, MOE_GROUP_NORMS, 0, D, 0);
        const int mi = m->moe_index[l];
        if (mi < 0) {
            const int g = MOE_GROUP_DENSE_FFN;
            o->w1 = moe_add(b, "ffn.w1", l, -1, g, 1, D, m->F);
            if (fb) o->b1 = moe_add(b, "ffn.b1", l, -1, g, 0, m->F, 0);
            if (swi) o->w3 = moe_add(b, "ffn.w3", l, -1, g, 1, D, m->F);
            if (swi && fb) o->b3 = moe_add(b, "ffn.b3", l, -1, g, 0, m->F, 0);
            o->w2 = moe_add(b, "ffn.w2", l, -1, g, 1, m->F, D);
            if (fb) o->b2 = moe_add(b, "ffn.b2", l, -1, g, 0, D, 0);
            continue;
        }
        o->wg = moe_add(b, "router.wg", l, -1, MOE_GROUP_ROUTER, 1, D, m->E);
        if (mc->router_bias) o->bg = moe_add(b, "router.bg", l, -1, MOE_GROUP_ROUTER, 0, m->E, 0);
        if (Ns > 0) {
            const int g = MOE_GROUP_N_FIXED + 2 * mi + 1;
            // Shared experts: (Ns, ...) blocks, one entry per shared expert ("shared.<s>.w1").
            o->sw1 = moe_add_family(b, "w1", l, (int)Ns, 1, g, 1, D, Fs);
            if (fb) o->sb1 = moe_add_family(b, "b1", l, (int)Ns, 1, g, 0, Fs, 0);
            if (swi) o->sw3 = moe_add_family(b, "w3", l, (int)Ns, 1, g, 1, D, Fs);
            if (swi && fb) o->sb3 = moe_add_family(b, "b3", l, (int)Ns, 1, g, 0, Fs, 0);
            o->sw2 = moe_add_family(b, "w2", l, (int)Ns, 1, g, 1, Fs, D);
            if (fb) o->sb2 = moe_add_family(b, "b2", l, (int)Ns, 1, g, 0, D, 0);
            if (mc->shared_expert_gate) o->ws = moe_add(b, "shared.ws", l, -1, g, 0, D, 0);
        }
    }
    pv->nf = moe_add(b, "final_norm", -1, -1, MOE_GROUP_NORMS, 0, D, 0);
    pv->head = m->tied ? -1 : moe_add(b, "head", -1, -1, MOE_GROUP_HEAD, 1, D, m->V);
    moe_lora_build(m, b, pv, 0); // dense adapters (none without LoRA)
    m->n_dense = b->cur;
    // Expert region: (El, ...) blocks per MoE layer.
    for (int l = 0; l < m->L; l++) {
        const int mi = m->moe_index[l];
        if (mi < 0) continue;
        moe_layer_off *o = &pv->off[l];
        const int g = MOE_GROUP_N_FIXED + 2 * mi;
        o->ex_begin = b->cur;
        o->w1 = moe_add_family(b, "w1", l, m->El, 0, g, 1, D, Fe);
        if (fb) o->b1 = moe_add_family(b, "b1", l, m->El, 0, g, 0, Fe, 0);
        if (swi) o->w3 = moe_add_family(b, "w3", l, m->El, 0, g, 1, D, Fe);
        if (swi && fb) o->b3 = moe_add_family(b, "b3", l, m->El, 0, g, 0, Fe, 0);
        o->w2 = moe_add_family(b, "w2", l, m->El, 0, g, 1, Fe, D);
        if (fb) o->b2 = moe_add_family(b, "b2", l, m->El, 0, g, 0, D, 0);
        o->ex_end = b->cur;
    }
    moe_lora_build(m, b, pv, 1); // routed experts' adapters, keyed by global expert id
    m->n_params = b->cur;
}

void moe_model_build_table(moe_model *m, moe_model_priv *pv) {
    const Moe__ModelConfig *mc = m->mc;
    moe_builder b = {m, 0, 8 + m->L * (40 + 6 * (m->El + 2 * mc->n_shared_experts))};
    b.cap *= m->lora_rank > 0 ? 3 : 1; // an A and a B per adapted matrix
    m->tensors = moe_xcalloc((size_t)b.cap, sizeof *m->tensors);
    moe_model_build(m, &b, pv);
    moe_model_assign_grads(m);
}

void moe_model_init_tensors(moe_model *m, uint64_t seed) {
    for (int i = 0; i < m->n_tensors; i++) moe_model_init_tensor(m, &m->tensors[i], seed);
}
