// model-impl.h: the model's internals, shared by model.c with model-build.c (the parameter table
// and initialisation) and model-ffn.c (the MoE FFN interface: the expert-parallel layer with a
// communicator, the one-rank layer without one; model.c calls only these).
#ifndef MOE_MODEL_IMPL_H
#define MOE_MODEL_IMPL_H

#include "experts.h"
#include "model.h"

// ---------------------------------------------------------------- private state of a model

typedef struct {
    int64_t n1, wq, bq, wk, bk, wv, bv, qn, kn, wo, bo, n2; // dense, -1: absent
    int64_t w1, b1, w3, b3, w2,
        b2; // dense FFN (dense region) or routed experts (El, expert region)
    int64_t wg, bg, sw1, sb1, sw3, sb3, sw2, sb2, ws; // router and shared experts
    int64_t ex_begin, ex_end; // the routed experts' families: [ex_begin, ex_end) of the block
} moe_layer_off;

typedef struct {
    float *x, *h1, *r1, *q0, *k0, *v, *q1, *k1, *rq, *rk, *q2, *k2, *a, *att, *xm, *h2, *r2;
    float *save;          // dense FFN (T, save_per_row)
    const float *qa, *ka; // q, k as attention saw them
} moe_layer_act;

typedef struct {
    moe_layer_off *off; // (L)
    int64_t wte, wpe, nf, head;
    moe_layer_act *act; // (L)
    float *xL, *hf, *rf, *logits, *y, *dx, *dh, *da, *dq2, *dk2, *dv, *dq1, *dk1, *dq0, *dk0;
    float *sc, *ffn_scratch, *cos_t, *sin_t, *block;
    int32_t *tok, *tgt;  // (T)
    moe_model_ffn **ffn; // (n_moe)
    moe_layer_params lp; // routed layer params (MoE layers)
    moe_experts_params dense_fp;
    int ready; // a training forward happened (backward allowed)
    double comm_seconds;
    moe_model_phases ph; // last forward (+ backward); dense is set from pass_seconds
    double pass_seconds; // wall time of the last forward (+ backward)
    struct moe_lora *lora; // adapters (lora.h); NULL without LoRA
} moe_model_priv;

// The builder's unit: every tensor starts at a multiple of 16 floats (64 bytes).
static inline int64_t moe_round16(int64_t n) { return (n + 15) / 16 * 16; }

// model-build.c: the parameter table — m->tensors, m->n_tensors, m->n_params and pv's offsets
// (dense region, then the routed experts' families keyed by global expert id) — for a model whose
// shape fields and pv->lp are set.
void moe_model_build_table(moe_model *m, moe_model_priv *pv);
// model-table.c: the table's builder, for the base (model-build.c) and the adapters (lora.c):
// a tensor "layers.<layer>.<name>" (layer -1: "<name>") of (d0, d1) floats (d1 = 0: a vector)
// with its table entry (expert: global id or -1), or a family of `count` members in one block
// (routed experts "experts.<name>" keyed by global expert id; shared = 1: "shared.<s>.<name>").
// Both return the offset; every tensor starts at a multiple of 16 floats.
typedef struct moe_builder {
    moe_model *m;
    int64_t cur; // floats reserved so far
    int cap;     // table entries allocated
} moe_builder;
int64_t moe_table_add(moe_builder *b, const char *name, int layer, int expert, int group,
                      int decay, int64_t d0, int64_t d1);
int64_t moe_table_add_family(moe_builder *b, const char *name, int layer, int count, int shared,
                             int group, int decay, int64_t d0, int64_t d1);
// Every tensor initialised from (seed, name, layer, global expert): the same values at any layout
// (docs/model.md's table).
void moe_model_init_tensors(moe_model *m, uint64_t seed);

// p: the layer; comm NULL = one rank; pc (may be NULL): the parallel options (overlap chunks,
// hierarchical, exchange_dtype; bf16 is refused without a communicator).
moe_status moe_ffn_create(const moe_layer_params *p, const moe_comm *comm,
                          const Moe__ParallelConfig *pc, moe_model_ffn **out);
void moe_ffn_free(moe_model_ffn *f); // NULL-safe
// The routed experts' gradients will be written by the next backward (the expert-parallel layer:
// moe_ep_layer_grads_fresh), returns 1; 0: the one-rank layer adds, the caller must zero them.
int moe_ffn_grads_fresh(moe_model_ffn *f);
// y (T, D) WRITTEN; x (T, D) kept alive until backward. Fills st with GLOBAL statistics; adds the
// exposed exchange seconds to *comm_seconds and the router, dispatch, combine and experts
// seconds to *ph (model.h; the one-rank layer: all of it to experts).
moe_status moe_ffn_forward(moe_model *m, moe_model_ffn *f, float *y, const float *x, int64_t T,
                           const moe_layer_weights *w, const float *bias,
                           const moe_route_opts *opts, moe_model_layer_stats *st,
                           double *comm_seconds, moe_model_phases *ph);
// Backward of the last forward: dx and g ADDED; seconds added as by forward.
moe_status moe_ffn_backward(moe_model_ffn *f, float *dx, moe_layer_weights *g, const float *dy,
                            const moe_layer_weights *w, double *comm_seconds, moe_model_phases *ph);
// Adds the payload bytes of the last forward + backward to *acc (nothing without a communicator).
void moe_ffn_add_bytes(const moe_model_ffn *f, moe_comm_bytes *acc);
// (token, expert) pairs this rank computed in the layer's last forward (the expert side).
int64_t moe_ffn_pairs(const moe_model_ffn *f);
// The routing plan of the layer's last forward (this rank's tokens).
const moe_route_plan *moe_ffn_plan(const moe_model_ffn *f);

#endif
