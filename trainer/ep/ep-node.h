// ep-node.h: internal to the expert-parallel layer (ep-layer.c) — the node relay of node-level
// dedup. A token bound for experts on node n crosses once, to one landing rank of n, as a wire row
// whose slots name (node-local expert, weight); the landing rank hands the arrived rows to the
// layer as tokens (per-rank dedup inside the node does the rest) and sums what comes back per row.
// Knows nothing of experts: only ids, rows and weights. El, Kx, D as in ep-layer.h; A = rows that
// arrived at this rank as a landing rank (≤ A_max = EP·T_max).
#ifndef MOE_EP_NODE_H
#define MOE_EP_NODE_H

#include "comm.h"

typedef struct moe_ep_node moe_ep_node;

// Collective over the EP group (its exchange plan). Nodes are those of moe_comm_node_of.
moe_status moe_ep_node_create(moe_comm *c, int El, int Kx, int64_t D, int64_t T_max,
                              moe_ep_node **out);
void moe_ep_node_free(moe_ep_node *N);              // NULL-safe; collective
int64_t moe_ep_node_max_rows(const moe_ep_node *N); // A_max

// Forward hop: ids (T, Kx) global experts or -1, w (T, Kx). Returns the arrived rows: *xa (A, D),
// *ids_a (A, Kx) global experts of this node or -1, *w_a (A, Kx); owned by N until the next call.
moe_status moe_ep_node_dispatch(moe_ep_node *N, int64_t T, const float *x, const int32_t *ids,
                                const float *w, int64_t *A, const float **xa, const int32_t **ids_a,
                                const float **w_a);
// Combine hop: ya (A, D) the summed row of each arrived row; y (T, D) ADDED into.
moe_status moe_ep_node_combine(moe_ep_node *N, const float *ya, int64_t T, float *y);
// Combine-backward hop: dy (T, D) once per (token, node); *dya (A, D) what arrived.
moe_status moe_ep_node_combine_backward(moe_ep_node *N, const float *dy, const float **dya);
// Dispatch-backward hop: dxa (A, D), drw_a (A, Kx) dL/dw aligned with ids_a; back on the token
// side dx (T, D) ADDED, drw (T, Kx) set for every pair of ids (the same ids as dispatch).
moe_status moe_ep_node_dispatch_backward(moe_ep_node *N, const float *dxa, const float *drw_a,
                                         const int32_t *ids, int64_t T, float *dx, float *drw);
moe_comm_bytes moe_ep_node_bytes(const moe_ep_node *N); // cumulative, as moe_comm_plan_bytes

#endif
