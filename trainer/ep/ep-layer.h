// ep-layer.h: the distributed (expert-parallel) MoE layer — experts sharded over the EP group,
// all-to-all dispatch and combine in forward and backward, global aux/z losses and load stats —
// whose outputs and synced gradients equal the one-rank moe_layer on the global batch for every
// valid (W, EP) (docs/expert-parallel.md). Built on router/, experts/ and the comm/ engine.
//
// Dimension letters as in experts.h; here also W world size, EP expert-parallel size,
// El = E/EP local experts (global ids first_expert .. first_expert+El-1), Kx = pairs a token can
// have (K token choice, E expert choice), N = (token, expert) pairs on the expert side.
//
// Gradient scaling (the contract with the trainer): rank r's loss is L_r = W × (its share of the
// global loss L), L = (1/W) Σ_r L_r; e.g. the mean over its own tokens when every rank holds an
// equal slice. So dy passed to backward is ∂L_r/∂y = W·∂L/∂y on its tokens, every gradient a rank
// holds after backward (dx included) is W× the global one, and moe_comm_sync_grads (sum, /W:
// dense tensors — gate, shared experts, shared gate — over the world with MOE_COMM_GRAD_DENSE,
// local experts over the EDP group with MOE_COMM_GRAD_EXPERT) leaves the gradients of L. The
// trainer does it once per step over its whole dense and expert regions, not per layer. The aux and z losses follow the same rule: backward adds the
// gradient of W·(rank r's part of the GLOBAL L_aux + L_z); the values reported in the stats are
// the global L_aux and L_z (identical on every rank): add them to every rank's loss for logging.
#ifndef MOE_EP_LAYER_H
#define MOE_EP_LAYER_H

#include "comm.h"
#include "experts.h"

typedef struct {
    int dedup;        // 0 none; 1 rank: a token goes once per peer rank, fan-out and weighted
                      // sum on the expert side; 2 node: a token crosses once per node, to a
                      // landing rank there (ep-node.h) which does the rank dedup inside its node
                      // and sums the rows that come back (fp32), forward and backward
    int n_chunks;     // >= 1; > 1: dispatch and combine-backward in chunks, expert compute
                      // on chunk c overlapping the exchange of chunk c+1
    int hierarchical; // node-leader exchange (comm/ hierarchical mode)
    int64_t max_expert_rows; // expert-side (token, expert) pair capacity; 0 = the worst case
        // (EP·T_max·K, or the capacity bound); a step exceeding it is refused
    int64_t sub_rows;     // expert GEMMs in sub-blocks of at most this many rows (the
                          // activations stay in cache; with n_chunks > 1 the exchange is
                          // progressed between them); 0 = 256
    moe_comm_dtype dtype; // payloads of all four exchanges: MOE_COMM_F32, or MOE_COMM_BF16 =
        // every pair's row rounded to bf16 (nearest even) at the same four points at every
        // layout, EP = 1 included: dispatch x_t, combine FFN_e(x), combine-backward w·dy_t,
        // dispatch-backward dFFN_e/dx; fp32 arithmetic everywhere else. Not with dedup (refused).
} moe_ep_options;

typedef struct moe_ep_layer moe_ep_layer;

// Collective over the world. p describes the GLOBAL layer (router.E = all experts, T_max = tokens
// per rank per call); c's layout must have EP dividing W and E (refused with the numbers, before
// any allocation). Every buffer is sized here: no allocation in forward/backward.
moe_status moe_ep_layer_create(const moe_layer_params *p, moe_comm *c, const moe_ep_options *o,
                               moe_ep_layer **out);
void moe_ep_layer_free(moe_ep_layer *L); // NULL-safe; collective (exchange plan)

// Weights/gradients as a rank holds them: router, shared experts and gate as in
// moe_layer_weights, `experts` holding only the El local experts. This returns such a view into
// a full (all E experts) block laid out by moe_layer_weights_alloc: experts shifted to
// first_expert (a test or a loader can keep the full block; a trainer may allocate El only).
moe_layer_weights moe_ep_local_view(const moe_layer_params *p, const moe_layer_weights *full,
                                    int first_expert);

// Forward on this rank's T tokens (T <= T_max; T a multiple of router.group_tokens when set;
// T = 0 allowed: the rank still takes part). y (T, D) WRITTEN; x (T, D) kept (not copied) until
// backward. stats (may be NULL): GLOBAL load statistics, aux and z losses, identical on every
// rank; its arrays point into the layer. opts->token_base must be the global index of token 0.
// Collective over the world (stats) and the EP group (exchanges).
moe_status moe_ep_layer_forward(moe_ep_layer *L, float *y, moe_route_stats *stats, const float *x,
                                int64_t T, const moe_layer_weights *w, const float *balance_bias,
                                const moe_route_opts *opts);
// Backward of the last forward: dy (T, D) = ∂L_r/∂y; dx (T, D) and grads (local view) ADDED —
// except the local experts' gradients after moe_ep_layer_grads_fresh, which it WRITES.
moe_status moe_ep_layer_backward(moe_ep_layer *L, float *dx, moe_layer_weights *grads,
                                 const float *dy, const moe_layer_weights *w);
// Instead of zeroing the local routed experts' gradients (El·3·D·F floats, O(total)): the next
// backward writes them (its first block of each expert) and zeroes those of experts that got no
// rows — the same values, bit for bit, as zeroing them and adding. Call it where the gradients
// would be zeroed (moe_model_zero_grads); until that backward they hold stale values.
void moe_ep_layer_grads_fresh(moe_ep_layer *L);
// Aux-loss-free balancing: moe_router_update_bias with the stats' GLOBAL selected_per_expert
// (the same on every rank), as the trainer does.

// Seconds of the last forward and backward. exchange = time inside the exchanges not spent in
// this layer's chunk callbacks (the exposed communication: counts, payloads, stat all-reduces);
// experts = expert compute inside the callbacks (pack/unpack included). The phases of a step
// (`moe bench step`) split it further, a few clock reads per pass:
//   router   = gate, selection, plan and the routing-statistics all-reduce (forward), the gate's
//              backward (backward);
//   dispatch = exposed time of the dispatch exchange (forward; counts, node hop A included) and
//              of its reverse in backward (dx rows coming back);
//   combine  = exposed time of the combine exchange (forward, node hop A back included) and of
//              combine-backward (dy rows going out);
// exchange = dispatch + combine + the routing-statistics all-reduce (which router also holds).
// The rest of total (token-side pack/unpack, shared experts) is the layer's own bookkeeping.
// With chunks (pipelined), time waiting on or posting the dispatch direction is dispatch and
// the remainder of the exposed exchange is combine.
typedef struct {
    double total, exchange, experts;
    double router, dispatch, combine;
    moe_comm_bytes bytes; // payload bytes this rank moved in the pass (comm.h: moe_comm_bytes)
} moe_ep_phase;
typedef struct {
    moe_ep_phase fwd, bwd;
    int64_t pairs_in; // (token, expert) pairs computed on this rank in the last forward
} moe_ep_timing;
const moe_ep_timing *moe_ep_layer_timings(const moe_ep_layer *L);
// The local routing plan of the last forward (this rank's tokens).
const moe_route_plan *moe_ep_layer_plan(const moe_ep_layer *L);

#endif
