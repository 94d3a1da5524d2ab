// model-impl.h: what model.c shares with model-ffn.c only — the MoE FFN interface. A MoE FFN is
// the expert-parallel layer (with a communicator) or the one-rank layer (without one); model.c
// calls only these.
#ifndef MOE_MODEL_IMPL_H
#define MOE_MODEL_IMPL_H

#include "model.h"

// p: the layer; comm NULL = one rank; pc (may be NULL): the parallel options (overlap chunks,
// hierarchical, exchange_dtype; bf16 is refused without a communicator).
moe_status moe_ffn_create(const moe_layer_params *p, const moe_comm *comm,
                          const Moe__ParallelConfig *pc, moe_model_ffn **out);
void moe_ffn_free(moe_model_ffn *f); // NULL-safe
// y (T, D) WRITTEN; x (T, D) kept alive until backward. Fills st with GLOBAL statistics; adds the
// exposed exchange seconds to *comm_seconds and the router, dispatch, combine and experts
// seconds to *ph (model.h; the one-rank layer: all of it to experts).
moe_status moe_ffn_forward(moe_model *m, moe_model_ffn *f, float *y, const float *x, int64_t T,
                           const moe_layer_weights *w, const float *bias,
                           const moe_route_opts *opts, moe_model_layer_stats *st,
                           double *comm_seconds, moe_model_phases *ph);
// Backward of the last forward: dx and g ADDED; seconds added as by forward.
moe_status moe_ffn_backward(moe_model_ffn *f, float *dx, moe_layer_weights *g, const float *dy,
                            const moe_layer_weights *w, double *comm_seconds,
                            moe_model_phases *ph);
// Adds the payload bytes of the last forward + backward to *acc (nothing without a communicator).
void moe_ffn_add_bytes(const moe_model_ffn *f, moe_comm_bytes *acc);
// (token, expert) pairs this rank computed in the layer's last forward (the expert side).
int64_t moe_ffn_pairs(const moe_model_ffn *f);
// The routing plan of the layer's last forward (this rank's tokens).
const moe_route_plan *moe_ffn_plan(const moe_model_ffn *f);

#endif
