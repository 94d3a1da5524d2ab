// comm.h: the manual of the comm/ module — process groups (EP × EDP), the counts + payload
// exchange engine behind dispatch and combine, gradient all-reduce, small collectives and the
// machine topology. comm/ is the only module that includes <mpi.h> or <hwloc.h>; callers see an
// opaque handle and raw buffers, never an MPI type. See docs/parallel.md for the full story.
//
// Dimension letters (moe-common.h): T tokens, D model dim, E experts, K top-k, W world size,
// EP expert-parallel size. Here also: P = size of the group an exchange runs over (EP for
// dispatch/combine), El = E/EP local experts per rank, R = wire rows, N = expanded (token, expert)
// pairs on the expert side.
//
// Threads: MPI is initialised FUNNELED — call everything here from the thread that called
// moe_comm_init. A moe_comm / moe_comm_plan must not be used by two threads at once.
// Errors: every MPI call is checked; failures return MOE_EMPI with a message naming the call, the
// MPI error string and the world rank (moe_last_error()). Collective functions must be called by
// every rank of the group; a function that can refuse its input (capacity, layout) agrees on the
// refusal across the group first, so a refusal never leaves one rank hanging in a collective.
#ifndef MOE_COMM_H
#define MOE_COMM_H

#include "moe-common.h"

#include <stdio.h>

// ---------------------------------------------------------------- process-wide MPI lifetime
// MPI_Init_thread(MPI_THREAD_FUNNELED), failing if that level is not provided. Works without
// mpirun (singleton: world size 1). Idempotent: a second call is a no-op. argc/argv may be NULL.
moe_status moe_comm_init(int *argc, char ***argv);
// MPI_Finalize if moe_comm_init initialised MPI. Free every moe_comm and plan first.
moe_status moe_comm_finalize(void);
// Abort every rank (MPI_Abort) with exit `code`: for a rank that cannot continue alone.
void moe_comm_abort(int code);
// The versions of the MPI library and of hwloc this binary runs with, next to the ones its headers
// were compiled against ("4.1.4 (Open MPI v4.1.4, ...; header 4.1.4)"), for `moe --version`.
// Needs no MPI initialisation (MPI_Get_library_version may be called before MPI_Init).
void moe_comm_versions(char *mpi, size_t mpi_cap, char *hwloc, size_t hwloc_cap);

// ---------------------------------------------------------------- layout and groups
// Pure check of a layout, usable without MPI: refuses ep < 1, world < 1, EP not dividing W, EP
// not dividing E (n_experts <= 0 skips the expert check), with all numbers in the message.
// Returns MOE_OK or MOE_ELAYOUT.
moe_status moe_comm_check_layout(int world, int ep, int n_experts);

typedef enum {
    MOE_COMM_WORLD = 0, // all W ranks
    MOE_COMM_EP,        // the EP ranks that together hold all experts (dispatch/combine)
    MOE_COMM_EDP,       // the W/EP ranks holding replicas of the same experts (expert grad sync)
    MOE_COMM_NODE,      // the ranks sharing this node (memory domain)
    MOE_COMM_N_GROUPS
} moe_comm_group;

typedef struct {
    int ep_size;        // EP >= 1, must divide W (and n_experts when > 0)
    int n_experts;      // E; 0 = not known yet (no divisibility check, n_local_experts = 0)
    int fake_node_size; // 0 = learn nodes from MPI_COMM_TYPE_SHARED; n > 0 = pretend every n
                        // consecutive world ranks form a node (tests of packing/hierarchical)
    int quiet;          // 1 = no warning lines from create (errors are still returned)
} moe_comm_params;

typedef struct {
    int world_rank, world_size;
    int ep_rank, ep_size, ep_index;                // ep_index = which EP group (= edp_rank)
    int edp_rank, edp_size;                        // edp_size = W / EP
    int node_rank, node_size, node_index, n_nodes; // node_index: nodes ordered by lowest rank
    int ep_in_node;                                // 1 if every EP group lies inside one node
    int n_experts, n_local_experts;                // E and E/EP (0 if E unknown)
    int first_expert;                              // global id of local expert 0 = ep_rank * E/EP
} moe_comm_info;

typedef struct moe_comm moe_comm;

// Builds the groups (collective over MPI_COMM_WORLD; moe_comm_init first). The layout is checked
// before anything is allocated. Placement rule: ranks are ordered by (node, rank within node) and
// cut into consecutive EP groups; when every node's rank count is a multiple of EP, every EP group
// is inside one node (the heavy all-to-all stays on shared memory); otherwise some EP groups span
// nodes and rank 0 prints one warning. EDP groups join the ranks with the same ep_rank.
moe_status moe_comm_create(const moe_comm_params *params, moe_comm **out);
void moe_comm_free(moe_comm *c); // NULL-safe; collective (frees communicators)

moe_comm_info moe_comm_get_info(const moe_comm *c);
int moe_comm_rank(const moe_comm *c, moe_comm_group g);
int moe_comm_size(const moe_comm *c, moe_comm_group g);
// World rank of rank `r` of group g as this rank sees it (r in [0, size(g))).
int moe_comm_world_rank_of(const moe_comm *c, moe_comm_group g, int r);
// Node index (nodes ordered by their lowest rank) and host name of world rank r; c NULL: 0, "".
#define MOE_COMM_HOST_LEN 64 // host names are cut to 63 characters
int moe_comm_node_of(const moe_comm *c, int world_rank);
const char *moe_comm_host_of(const moe_comm *c, int world_rank);
// Ranks per node when every node holds the same number, else 0; *n_nodes gets the node count.
// c NULL: a single process (1 rank on 1 node). Local (no communication).
int moe_comm_node_shape(const moe_comm *c, int *n_nodes);
// Progress output: printed by world rank 0 only (to stdout). Errors: moe_comm_eprintf prints
// "[rank r] ..." to stderr on any rank.
void moe_comm_printf(const moe_comm *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void moe_comm_eprintf(const moe_comm *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
// Monotonic wall clock in seconds (MPI_Wtime).
double moe_comm_wtime(void);

// ---------------------------------------------------------------- small collectives
typedef enum { MOE_COMM_SUM = 0, MOE_COMM_MAX, MOE_COMM_MIN } moe_comm_op;

moe_status moe_comm_barrier(const moe_comm *c, moe_comm_group g);
// In place; n may exceed INT_MAX (done in pieces).
moe_status moe_comm_allreduce_f32(const moe_comm *c, moe_comm_group g, float *buf, size_t n,
                                  moe_comm_op op);
moe_status moe_comm_allreduce_f64(const moe_comm *c, moe_comm_group g, double *buf, size_t n,
                                  moe_comm_op op);
moe_status moe_comm_allreduce_i64(const moe_comm *c, moe_comm_group g, int64_t *buf, size_t n,
                                  moe_comm_op op);
// What group g's links give raw MPI, for benchmarks to print next to their own figures: *round =
// the best time of an all-to-all of 4 bytes per peer (one message round: latency), *bulk = the
// best time of bytes_per_peer (<= INT_MAX) to every peer sent as n_msgs back-to-back
// all-to-alls of bytes_per_peer / n_msgs each (the message sizes of the caller's own traffic: a
// shaped link can treat one large burst worse than the same bytes in pieces). Each of reps (>= 1)
// repetitions after one warmup starts at a barrier and counts the slowest rank. Collective.
moe_status moe_comm_link_probe(const moe_comm *c, moe_comm_group g, size_t bytes_per_peer,
                               int n_msgs, int reps, double *round, double *bulk);
// Broadcast `bytes` bytes from rank 0 of g to every rank of g.
moe_status moe_comm_bcast(const moe_comm *c, moe_comm_group g, void *buf, size_t bytes);
// Gather variable-size float arrays to rank 0 of g. Every rank passes its n; on rank 0, `recv`
// (capacity `recv_cap` floats) gets the arrays in rank order and counts[r] (size(g) entries) the
// length of each; other ranks may pass NULL for both. Refused (on all ranks) if rank 0's capacity
// is too small or a total exceeds INT_MAX floats.
moe_status moe_comm_gatherv_f32(const moe_comm *c, moe_comm_group g, const float *send, int64_t n,
                                float *recv, int64_t recv_cap, int64_t *counts);

// Agree on a status across the world (collective; every rank passes its own status). Returns
// the worst (most negative) status of any rank, on every rank, and makes every rank's
// moe_last_error() "rank R: <rank R's message>", R the lowest world rank that has that status
// (its whole message, MOE_COMM_AGREE_MSG = MOE_ERROR_MAX bytes; one not already starting
// "rank R: " gets the prefix, and a message that then no longer fits loses whole lines, as
// moe_set_error). All OK: returns MOE_OK and leaves messages alone. NULL c or a world of one
// rank: returns st unchanged (no MPI). MOE_EMPI if the agreement itself fails. Cost: one 2-int
// all-reduce, plus a broadcast of the message when some rank failed.
#define MOE_COMM_AGREE_MSG MOE_ERROR_MAX
moe_status moe_comm_agree(const moe_comm *c, moe_status st);

// ---------------------------------------------------------------- gradient synchronisation
// Every rank's loss is the mean over its own equal slice of the global batch, so the global loss
// is L = (1/W) Σ_r L_r. A dense parameter's gradient on rank r is ∂L_r/∂θ: sum over the world, /W.
// An expert's replica on rank r has already accumulated ∂L_s/∂θ for every rank s of its EP group
// (the tokens came to it through dispatch and their gradients through the combine backward);
// summing over the EDP group adds the other EP groups, giving Σ_s over all W ranks, so it is also
// divided by W (not by EDP). Result: gradients equal the single-rank gradient for any (W, EP).
typedef enum { MOE_COMM_GRAD_DENSE = 0, MOE_COMM_GRAD_EXPERT } moe_comm_grad_kind;
moe_status moe_comm_sync_grads(const moe_comm *c, moe_comm_grad_kind kind, float *grad, size_t n);

// ---------------------------------------------------------------- the exchange engine
// One engine for dispatch and combine (and their backward). An exchange runs inside one group of
// P ranks (normally MOE_COMM_EP). The token side packs a send buffer of wire rows, contiguous by
// destination peer (peer 0 first). Counts travel first: per peer, a record of 1 + El int32:
//   [0]      wire rows sent to that peer,
//   [1 + j]  (token, expert) pairs for the peer's local expert j (j < El).
// Without dedup the wire rows to a peer are grouped by local expert, so [0] = Σ_j [1+j]. With
// dedup a wire row is one unique (token, peer) and [1+j] tells the receiver its per-expert block
// sizes. After the counts, the payload moves with MPI_Alltoallv (MOE_COMM_FORWARD: token side →
// expert side); the expert side's buffer holds the rows source-major (peer 0's rows first).
// Combine is MOE_COMM_REVERSE over the same plan: the expert side sends back exactly the rows it
// received, in the same order, and they land in the token side's send layout — no second count
// exchange. Backward uses the same plan: combine-backward is FORWARD, dispatch-backward REVERSE.
typedef enum { MOE_COMM_FORWARD = 0, MOE_COMM_REVERSE = 1 } moe_comm_dir;

// Payload precision on the wire (= proto ParallelConfig.ExchangeDtype). With MOE_COMM_BF16 the
// caller's rows stay fp32 in memory (token_bytes = D·4); a token row crosses as D bf16 values
// (D·2 bytes), rounded to nearest even when packed (moe_comm_row_put, dispatch pack) and widened
// exactly when unpacked (moe_comm_row_get, combine unpack). Arithmetic stays fp32 on both sides.
typedef enum { MOE_COMM_F32 = 0, MOE_COMM_BF16 = 1 } moe_comm_dtype;

typedef struct {
    moe_comm_group group;  // MOE_COMM_EP for dispatch/combine
    int n_local_experts;   // El (>= 1): entries per count record = 1 + El
    int top_k;             // K: bounds expert ids carried per dedup row (pack helpers)
    int dedup;             // 1 = a token goes once per peer, fanned out on arrival
    size_t token_bytes;    // bytes of one token row (e.g. D*4); rows are float when dedup/combine
                           // sums are used
    int64_t max_send_rows; // capacity of the token-side wire buffer (rows, all peers)
    int64_t max_recv_rows; // capacity of the expert-side wire buffer (rows, all peers)
    int n_chunks;          // >= 1; > 1 = overlap: payload in chunks with MPI_Ialltoallv
    int hierarchical;      // 1 = node-leader gather, leader all-to-all, scatter
    int force_row_type;    // testing: count in row datatypes even when byte counts fit in int
    moe_comm_dtype dtype;  // payload on the wire; BF16 needs token_bytes % 4 == 0 and no dedup
                           // (a dedup row's sums over a peer's experts would round differently
                           // for every EP: refused at plan creation)
} moe_comm_plan_params;

typedef struct moe_comm_plan moe_comm_plan;

// The one declaration of the dedup wire slot: with dedup a wire row is the token row
// (token_bytes) followed by K slots, in top-k order those of the token's experts on that peer,
// then {-1, 0} padding. Forward dispatch: (local expert id, combine weight); dispatch-backward
// (REVERSE, rows written by the expert side): (local expert id, dL/dweight).
typedef struct {
    int32_t expert; // local expert id on the receiving peer, -1 = unused
    float weight;
} moe_comm_slot;

// Wire row size: token_bytes, plus K × moe_comm_slot with dedup (fp32 rows; a plan's own sizes,
// bf16 included, come from moe_comm_plan_row_bytes / moe_comm_plan_wire_bytes).
size_t moe_comm_wire_bytes(size_t token_bytes, int top_k, int dedup);

// bf16 conversion (the upper 16 bits of an IEEE fp32). Round to nearest, ties to even; NaN stays
// NaN (quiet, sign kept; never rounded into Inf); ±Inf stays ±Inf; a finite value at or above
// the bf16 overflow threshold (max bf16 3.3895314e38 plus half an ulp) becomes ±Inf, as IEEE
// rounding does; subnormals round like any other value (no flush to zero). Widening is exact.
uint16_t moe_comm_bf16_from_f32(float f);
float moe_comm_f32_from_bf16(uint16_t h);
// The value a bf16 payload carries for f: moe_comm_f32_from_bf16(moe_comm_bf16_from_f32(f)).
float moe_comm_round_bf16(float f);

// Setup (collective over the group: builds the hierarchical sub-communicators). Allocates every
// array an exchange needs; no exchange call allocates.
moe_status moe_comm_plan_create(moe_comm *c, const moe_comm_plan_params *p, moe_comm_plan **out);
void moe_comm_plan_free(moe_comm_plan *plan); // NULL-safe; collective when hierarchical
moe_comm_plan_params moe_comm_plan_get_params(const moe_comm_plan *plan);
int moe_comm_plan_peers(const moe_comm_plan *plan); // P
// Bytes of one token row on the wire: token_bytes (F32) or token_bytes / 2 (BF16).
size_t moe_comm_plan_row_bytes(const moe_comm_plan *plan);
// Bytes of one dispatch wire row: row bytes, plus K × moe_comm_slot with dedup.
size_t moe_comm_plan_wire_bytes(const moe_comm_plan *plan);
// One token row between the caller's fp32 memory and the wire format: put writes D =
// token_bytes/4 floats of src as a wire token row (bf16: rounded), get reads one back (widened).
// F32 plans copy token_bytes bytes (any row type). Local, no MPI.
void moe_comm_row_put(const moe_comm_plan *plan, void *row, const float *src);
void moe_comm_row_get(const moe_comm_plan *plan, float *dst, const void *row);

// Payload bytes this rank has moved through the plan since it was created (cumulative; a caller
// takes differences): rows × wire row size of every exchange, chunk, split-phase chunk and raw
// exchange, counted from the counts actually posted to MPI, split by whether the peer is on this
// rank's node (moe_comm_node_of: a shared-memory domain, or a fake node in tests). Rows a rank
// sends to itself cross no link and are not counted. The hierarchical exchange counts what this
// rank really moves: a member's rows go to and come from its node leader (intra-node); the leader
// also moves the other members' rows (gather, scatter: intra) and its node's rows to and from the
// other leaders (inter-node). Count records (moe_comm_exchange_counts) are not included.
typedef struct {
    int64_t sent_intra, sent_inter; // bytes this rank sent to a peer on its node / another node
    int64_t recv_intra, recv_inter; // bytes it received from one
} moe_comm_bytes;
moe_comm_bytes moe_comm_plan_bytes(const moe_comm_plan *plan);

// Exchanges the count records: send_counts (P, 1+El) of this rank. Collective over the group.
// Refused on every rank if any rank's totals exceed max_send_rows / max_recv_rows, or a count is
// negative, or (without dedup) [0] != Σ_j [1+j].
moe_status moe_comm_exchange_counts(moe_comm_plan *plan, const int32_t *send_counts);
// The records after exchange_counts: MOE_COMM_FORWARD = what this rank sends (token side),
// MOE_COMM_REVERSE = what it receives (expert side); (P, 1+El), owned by the plan.
const int32_t *moe_comm_plan_counts(const moe_comm_plan *plan, moe_comm_dir side);
// Total wire rows on one side (token side: FORWARD, expert side: REVERSE).
int64_t moe_comm_plan_rows(const moe_comm_plan *plan, moe_comm_dir side);
// Expanded (token, expert) pairs arriving for local expert j (all sources), and in all.
int64_t moe_comm_plan_expert_rows(const moe_comm_plan *plan, int j);
int64_t moe_comm_plan_pairs(const moe_comm_plan *plan);

// Called when chunk `chunk` (of n_chunks) of an exchange has arrived in `recv`; see
// moe_comm_chunk_range for the rows it covers. A non-OK status stops the exchange (after the
// requests in flight complete) and is returned by moe_comm_exchange.
typedef moe_status (*moe_comm_chunk_fn)(void *ctx, const moe_comm_plan *plan, moe_comm_dir dir,
                                        int chunk, int n_chunks);

// The payload exchange. FORWARD: send = token-side buffer (R_send, row_bytes), recv = expert-side
// buffer (R_recv, row_bytes); REVERSE: the opposite. row_bytes must be the plan's row bytes
// (moe_comm_plan_row_bytes: token rows) or wire bytes. on_chunk may be NULL. With n_chunks > 1 the rows for every peer are cut into
// n_chunks contiguous slices; slice c of every peer moves in one MPI_Ialltoallv posted before
// on_chunk(c - 1) runs, so compute on chunk c-1 overlaps the exchange of chunk c. The bytes that
// arrive are identical with or without chunks and with or without hierarchical mode.
// Hierarchical mode (when the group spans more than one node; on one node it is the flat
// exchange) does the whole exchange, then calls on_chunk for each chunk in order.
moe_status moe_comm_exchange(moe_comm_plan *plan, moe_comm_dir dir, size_t row_bytes,
                             const void *send, void *recv, moe_comm_chunk_fn on_chunk, void *ctx);
// The two forward-pass exchanges by name: dispatch = FORWARD of wire rows (wire_bytes),
// combine = REVERSE of token rows (row bytes).
moe_status moe_comm_dispatch(moe_comm_plan *plan, const void *send, void *recv,
                             moe_comm_chunk_fn on_chunk, void *ctx);
moe_status moe_comm_combine(moe_comm_plan *plan, const void *back, void *ret,
                            moe_comm_chunk_fn on_chunk, void *ctx);
// Benchmark baseline: one plain MPI_Alltoallv (MPI_BYTE counts) of the rows the plan's counts
// describe — no chunks, no hierarchy, no agreement step. `moe bench a2a` measures the engine
// against it.
moe_status moe_comm_exchange_raw(moe_comm_plan *plan, moe_comm_dir dir, size_t row_bytes,
                                 const void *send, void *recv);
// Progresses the chunks of the exchange in flight (MPI_Testall on their requests; a no-op when
// none is). Open MPI advances a nonblocking collective only inside MPI calls, so a chunk callback
// that computes for long calls this between pieces of work (e.g. per expert GEMM) to let chunk
// c+1 move meanwhile. Call it only from inside on_chunk (or with no exchange running).
moe_status moe_comm_plan_progress(moe_comm_plan *plan);
// Split-phase chunks, for a caller that pipelines two exchanges (dispatch chunk c+1 in flight
// while the combine of chunk c goes back, both behind compute): post slice `chunk` of every peer
// block in direction dir (MPI_Ialltoallv; the same slicing as moe_comm_exchange, so REVERSE chunk
// c carries exactly the rows FORWARD chunk c brought), then wait for it. Each (dir, chunk) may be
// in flight once; every rank must post in the same order. Flat exchange only: not with a
// hierarchical plan whose group spans nodes (MOE_ASSERT). moe_comm_plan_progress advances them.
moe_status moe_comm_chunk_post(moe_comm_plan *plan, moe_comm_dir dir, size_t row_bytes,
                               const void *send, void *recv, int chunk);
moe_status moe_comm_chunk_wait(moe_comm_plan *plan, moe_comm_dir dir, int chunk);
// Rows of chunk `chunk` received from peer p in direction dir: [*first, *first + *n) of recv.
void moe_comm_chunk_range(const moe_comm_plan *plan, moe_comm_dir dir, int chunk, int peer,
                          int64_t *first, int64_t *n);

// ---------------------------------------------------------------- pack / unpack (dispatch, combine)
// Token side. expert_ids (T, K) global expert ids in [0, P*El) or -1 (dropped); weights (T, K)
// combine weights (may be NULL = 1). Fills send_counts (P, 1+El), the wire rows `send`
// (R, wire_bytes), and row_src (R): for each wire row, t*K + k without dedup, t with dedup.
// x is (T, token_bytes) bytes; with BF16, (T, D) floats rounded into the rows.
// Order: stable counting sort by (peer, local expert) without dedup, by (peer, token) with dedup.
// Refused if the rows would exceed max_send_rows. Purely local (no MPI).
moe_status moe_comm_dispatch_pack(moe_comm_plan *plan, int64_t T,
                                  const void *x /* (T, token_bytes) */, const int32_t *expert_ids,
                                  const float *weights, int32_t *send_counts, void *send,
                                  int32_t *row_src);
// Expert side: the receiver expands the wire rows itself (the expert-parallel layer does it
// per chunk, trainer/ep/ep-layer.c): without dedup the rows of each source come grouped by
// local expert (the counts record's [1+j] rows for expert j); with dedup each wire row's slots
// (below) name the local experts it goes to. The reduction back to one row per wire row (combine:
// weighted by the slot weights under dedup; dispatch-backward: dx summed) is the receiver's too.
// Token side, after the REVERSE exchange: y[t] += w * back[u] for every wire row u (row_src from
// pack; back[u] widened to fp32 with BF16). Without dedup w = weights[t*K+k] (1 if NULL); with
// dedup the weights were applied on the expert side and w = 1. y (T, D) is ADDED into.
void moe_comm_combine_unpack(const moe_comm_plan *plan, const void *back /* (R_send, row bytes) */,
                             const int32_t *row_src, const float *weights, int64_t T,
                             float *y /* (T, D) */);

// ---------------------------------------------------------------- topology (hwloc)
typedef struct {
    int packages, cores, pus, numa_nodes; // whole machine
    int bound;       // 1 if this rank's CPU binding is narrower than the whole machine
    int bound_cores; // cores entirely inside the binding (all cores if unbound)
    int bound_pus;   // PUs in the binding
    int first_pu;    // lowest PU index of the binding (-1 if none)
    char cpuset[96]; // the binding as a list, e.g. "0-1" or "2"
} moe_comm_topo;

// Local query, no MPI needed.
moe_status moe_comm_topo_query(moe_comm_topo *out);
// BLAS threads to use per rank: OPENBLAS_NUM_THREADS if set (>= 1), else the cores this rank
// owns: cores in its binding shared among the node's ranks bound to overlapping sets (or all
// cores / node ranks when unbound), at least 1. Collective over the node group.
moe_status moe_comm_blas_threads(const moe_comm *c, int *threads);
// Collective: gathers every rank's topology and binding to rank 0, which prints the machine, a
// line per rank, the EP/EDP groups and warnings (unbound, oversubscribed, EP spanning nodes).
moe_status moe_comm_topo_report(const moe_comm *c, FILE *f);
// Ranks on different nodes (moe_comm_node_of) that are in fact one machine — the same running
// kernel (/proc/sys/kernel/random/boot_id: network namespaces or containers of one host) — and
// bound to overlapping CPUs: they take turns on those cores in scheduler slices and every message
// round between them waits for one (docs/cluster.md, "What the 64 % was"). Collective over the
// world (one all-gather). Returns how many such pairs there are (0 also where the kernel cannot be
// identified) and describes the first in msg (n bytes).
int moe_comm_cross_node_cpu_overlap(const moe_comm *c, char *msg, size_t n);

#endif
