// router.h: the manual of the router module — gate projection, scoring (softmax / sigmoid),
// token-choice top-k (+ balancing bias, capacity, drops) and expert-choice selection, aux and z
// losses with their gradients, the routing plan (a stable counting sort of the kept (token,
// expert) pairs by expert) and the aux-loss-free bias update. Includes nothing but common/.
//
// Dimension letters: T tokens (this call), D model dim, E experts, K top-k, C capacity per expert,
// R packed rows (kept (token, expert) pairs). Row-major everywhere: x (T, D) is x[t*D + d].
//
// Math (docs/routing.md is the long form; tests and the PyTorch golden test use exactly these):
//   z = x·Wg (+ bg)                            Wg (D, E), bg (E) when gate_bias
//   training with jitter > 0: z += N(0, jitter²) from a counter-based RNG keyed by
//       (seed, token_base + t, e) — no hidden state; off when not training
//   p = softmax(z) over E   or   p = sigmoid(z)
//   token choice: top-K experts by p + b (b = balancing bias, selection only); ties: lower expert
//       index wins. w = p_sel; if renormalize, w = p_sel / Σ_k p_sel; w *= routed_scaling.
//       Capacity (cf > 0): C = ceil(cf·T·K/E); per expert keep the C pairs with highest p
//       (ties: earlier token), drop the rest; weights are NOT renormalised after dropping.
//   expert choice: p = softmax(z) (scoring ignored); C = min(T, ceil(cf'·T·K/E)), cf' = cf or 1
//       when cf = 0; each expert takes its top-C tokens by p[:, e] (ties: lower token index);
//       w = p[t, e] · routed_scaling (routed_scaling = 1 is the reference form).
//   group-limited (n_group = N > 1, token choice; DeepSeek-V2/V3): v = p + b is cut into N
//       equal contiguous groups of S = E/N experts; group score = sum of the two largest v of
//       the group (top2_sum, V3) or the largest (max, V2), in float; each token keeps its
//       topk_group best groups (ties: lower group index) and takes its top-K by v among their
//       experts only (others count as -inf; ties: lower expert index). A selection mask only:
//       w, L_aux (P from the unmasked p, f from the group-limited counts) and L_z as above.
//   routing groups (group_tokens = G > 0): capacity and expert choice above act on each
//       consecutive group of G tokens separately, with G in place of T (C per group).
//   aux (token choice only): f_i = count_i/(T·K), count_i = selections BEFORE dropping;
//       P_i = mean_t s_i(t), s = p (softmax) or p/Σ_j p_j per token (sigmoid);
//       L_aux = α·E·Σ_i f_i·P_i, gradient through P only.
//   z-loss: L_z = β·mean_t (logsumexp_j z_tj)²   (z after jitter, i.e. the logits used).
// The caller adds L_aux and L_z to its loss; moe_router_backward adds their gradient with
// coefficient 1 (i.e. as if the caller's loss were L_task + L_aux + L_z).
#ifndef MOE_ROUTER_H
#define MOE_ROUTER_H

#include "moe-common.h"

typedef enum { MOE_SCORE_SOFTMAX = 0, MOE_SCORE_SIGMOID = 1 } moe_scoring; // = proto enum values
typedef enum {
    MOE_ROUTE_TOKEN_CHOICE = 0,
    MOE_ROUTE_EXPERT_CHOICE = 1
} moe_route_strategy; // = proto
typedef enum {
    MOE_GROUP_SCORE_TOP2_SUM = 0, // DeepSeek-V3: the two best v of the group, summed
    MOE_GROUP_SCORE_MAX = 1       // DeepSeek-V2 group_limited_greedy: the best v of the group
} moe_group_score;                // = proto RouterConfig.GroupScore

// What code outside the selection itself asks of a strategy. Every such decision reads these
// traits instead of comparing strategies, and the router's own decisions are switches without
// default, so a new strategy is: a value above, a row in moe_router_strategy_traits, and the
// cases the compiler then lists in router/ (plus the proto enum and its mapping in experts/).
typedef struct {
    const char *name; // as in the proto enum: "token_choice", "expert_choice"
    int by_token;     // 1: each token picks its top-K experts (at most K pairs a token, the
                      //    balancing bias steers the pick); 0: each expert picks its tokens
                      //    (a token may get 0..E pairs)
    int softmax_only; // scoring is ignored: p = softmax(z)
    int aux_loss;     // L_aux (and aux_dscore) is defined; else it is 0
    int balanced;     // every expert keeps exactly C rows per group (loads equal by
                      // construction; nothing dropped); else capacity, if any, is an upper
                      // bound per expert and the excess is dropped
} moe_route_traits;

// The traits of s (MOE_ASSERT on a value outside the enum: configs are mapped with a check).
moe_route_traits moe_router_strategy_traits(moe_route_strategy s);

// By-value router configuration (fill with moe_layer_params_from_config in experts.h, or by hand).
typedef struct {
    int64_t D; // model dim
    int E;     // routed experts (>= 1)
    int K;     // top-k (1 <= K <= E)
    moe_scoring scoring;
    moe_route_strategy strategy;
    int renormalize;        // token choice: selected weights rescaled to sum 1 per token
    int gate_bias;          // a learned bias bg (E) in the gate projection
    double capacity_factor; // cf; 0: dropless (token choice) / cf = 1 (expert choice)
    double aux_loss_coef;   // α
    double z_loss_coef;     // β
    double jitter;          // std of the logit noise, training only; 0: off
    double routed_scaling;  // combine weights multiplied by this (1: none)
    int64_t group_tokens;   // G: capacity and expert choice act independently on each
                            // consecutive group of G tokens (G must divide T); 0: one group
                            // = the whole call. Keeps them layout-invariant when a rank holds
                            // whole groups (docs/routing.md "Routing groups").
    // Group-limited routing (token choice only); all 0: off. Zero-initialised params are off.
    int n_group;                 // N: experts in N equal contiguous groups; 0 or 1: off
    int topk_group;              // groups a token keeps, 1..N
    moe_group_score group_score; // how a group is scored
    int balance_sequence;        // the aux loss per routing group (group_tokens > 0: the
                                 // trainer's groups are sequences), averaged over the groups:
                                 // DeepSeek-V3's sequence-wise loss; 0: over the whole call
    int node_limited;            // groups = nodes of the EP layout: N is filled in at setup by
                                 // moe_router_node_groups; a plan refuses it unresolved
} moe_router_params;

// Per-call options. NULL means evaluation (no jitter), seed 0, token_base 0.
typedef struct {
    int training;       // jitter only when nonzero
    uint64_t seed;      // jitter stream; the caller folds in step and layer
    int64_t token_base; // global index of token 0 of this call (same noise at any layout)
    // Routing replay (token choice; docs/routes.md "Replay"): (T, K) expert ids, best first,
    // taken as token t's selection instead of the top-K (group limits and the balancing bias
    // are not consulted). Weights, capacity, losses and gradients then follow from the live
    // probabilities exactly as for a selection made here, so the router keeps learning.
    // Ids must be distinct per token and in [0, E) (the caller checks). NULL: select.
    const int32_t *forced;
} moe_route_opts;

// Capacity per expert for ONE group of T tokens (0 for dropless token choice), min(T, C) for
// both strategies (an expert takes a token once; a larger factor drops nothing, and the cap
// keeps a factor up to 1e308 from overflowing). With group_tokens = G > 0 a call of T tokens
// applies capacity C(G) in each group.
int64_t moe_router_capacity(const moe_router_params *p, int64_t T);
// Tokens per routing group for a call of T tokens: group_tokens, or T when group_tokens = 0.
int64_t moe_router_group(const moe_router_params *p, int64_t T);
// Upper bound on the packed rows R for T tokens: T·K (token choice, any cf), E·C per group
// (expert choice, groups counted as ceil(T/G), at most E·T).
int64_t moe_router_max_rows(const moe_router_params *p, int64_t T);
// moe_router_max_rows in double, for memory estimates of shapes whose int64 products could
// overflow: T·K for token choice (the capacity factor only drops rows, never adds them); for
// expert choice min(E·T, cf·T·K) with cf <= 0 meaning 1.
double moe_router_rows_bound(moe_route_strategy s, double T, int K, int E, double cf);

// Group-limited routing ------------------------------------------------------------------------

// Checks the group fields of p against E, K and the strategy: N >= 0; when N > 1 token choice,
// N | E, 1 <= topk_group <= N, K <= topk_group·E/N, top2_sum needs E/N >= 2; node_limited needs N
// resolved (> 1). MOE_EINVAL naming the router.* / model.* fields and the numbers; pure.
moe_status moe_router_check_groups(const moe_router_params *p);

// Node-limited routing: resolves p->n_group (when p->node_limited; else a no-op returning MOE_OK)
// to the number of nodes one EP group spans. EP groups are consecutive ranks in (node, rank in
// node) order and experts are placed contiguously by EP rank, so with every node holding the same
// q ranks and q | ep, an EP group is ep/q whole nodes and group g = the experts of node g of the
// group. q: ranks per node, 0 when the n_nodes nodes hold different numbers of ranks
// (moe_comm_node_shape). Refused (MOE_ELAYOUT, numbers named) when q = 0, when q is a multiple
// of ep (every EP group inside one node: nothing to limit), or when ep is not a multiple of q
// (nodes cut EP groups unevenly); then the groups are checked as moe_router_check_groups does
// (MOE_EINVAL). Pure: every rank gets the same answer.
moe_status moe_router_node_groups(moe_router_params *p, int ep, int q, int n_nodes);

// The group-limited top-K of one token (the selection moe_router_forward uses; exposed for
// tests). v (E): selection values, masked in place (experts outside the kept groups become
// -inf). gscore (n_group): the group scores on return; gidx (topk_group): the kept groups, best
// first; idx (K): the chosen experts, best first. Needs moe_router_check_groups(p) == MOE_OK.
void moe_router_group_topk(const moe_router_params *p, float *v, float *gscore, int32_t *gidx,
                           int32_t *idx);

// The routing plan and the router activations kept for backward. All arrays are owned by the
// plan (allocated once by moe_route_plan_create for up to T_max tokens; no allocation per call).
//
// Packed-row layout (the seam for dispatch/combine): rows are grouped by expert, expert e owns
// rows [offsets[e], offsets[e+1]); inside an expert rows are in increasing token order (a stable
// counting sort of the kept pairs by expert). row_token[r] is the token whose x row is copied
// into packed row r; row_weight[r] its combine weight. The inverse map is per token (CSR):
// token t's kept rows are tok_rows[tok_offsets[t] .. tok_offsets[t+1]) — token choice in the
// order of its top-k slots (best first), expert choice in increasing expert order. So
//   permute:   packed[r]  = x[row_token[r]]
//   unpermute: y[t]      += Σ_{j in tok} row_weight[tok_rows[j]] · out[tok_rows[j]]
typedef struct {
    int64_t T_max; // capacity of the arrays below
    int E, K;
    // --- filled by each forward
    int64_t T;            // tokens of the last forward
    int64_t C;            // capacity per group used (0: dropless)
    int64_t G;            // tokens per routing group of the last forward (T when ungrouped)
    int64_t n_rows;       // R = Σ counts = kept pairs
    float *logits;        // (T_max, E) z actually scored (after bias and jitter)
    float *probs;         // (T_max, E) p
    int32_t *sel_expert;  // (T_max, K) token choice: chosen experts, best (p+b) first
    float *sel_weight;    // (T_max, K) token choice: combine weight w (before dropping)
    int32_t *sel_row;     // (T_max, K) token choice: packed row of the pair, -1 if dropped
    int64_t *sel_counts;  // (E) pairs chosen per expert BEFORE capacity dropping
    int64_t *counts;      // (E) kept rows per expert
    int64_t *offsets;     // (E+1) exclusive prefix sum of counts
    int32_t *row_token;   // (R_max) token of each packed row
    int32_t *row_slot;    // (R_max) token choice: top-k slot of the row; expert choice: -1
    float *row_weight;    // (R_max) combine weight of each packed row
    int64_t *tok_offsets; // (T_max+1) CSR offsets of the inverse map
    int32_t *tok_rows;    // (R_max) packed rows of each token
    float *aux_dscore;    // (E) dL_aux/ds_i(t), the same for every token: α·E·f_i/T.
                          // A distributed caller may overwrite it with the global value.
    double *score_sum;    // (E) Σ_t s_i(t) (P_i·T), for a global aux loss
    // balance_sequence: per routing group b of G tokens, dL_aux/ds_i(t) for t in b is
    // aux_dscore_seq[b·E + i] = α·E·f_{b,i}/(G·n_b) (f over the group, n_b = groups of this call;
    // a distributed caller rescales it to the global group count); aux_seq_sum = Σ_b Σ_i
    // f_{b,i}·P_{b,i} (unscaled, this call's groups), aux_seq_groups = n_b.
    float *aux_dscore_seq; // (ceil(T_max/G), E), NULL without balance_sequence
    double aux_seq_sum;
    int64_t aux_seq_groups;
    double *seq_scratch; // (2E) balance_sequence: per-group counts and score sums
    double loss_T;        // tokens the z-loss mean divides by in backward: T after forward;
                          // a distributed caller may set the global count (with aux_dscore)
    // --- scratch (selection and sort); not part of the plan's meaning
    int32_t *scratch_i; // (max(T_max·K, T_max·E) + E + 1) selection / sort scratch
    void *scratch_sort; // (max(T_max·K, T_max)) {score, token, pair} records for capacity
    float *dprobs;      // (T_max, E) backward scratch
    float *dlogits;     // (T_max, E) backward scratch
} moe_route_plan;

moe_status moe_route_plan_create(const moe_router_params *p, int64_t T_max, moe_route_plan **out);
void moe_route_plan_free(moe_route_plan *plan);

// Load statistics of one forward. tokens_per_expert / selected_per_expert point into the plan.
typedef struct {
    const int64_t *tokens_per_expert;   // (E) kept rows per expert (the expert compute)
    const int64_t *selected_per_expert; // (E) token choice: pairs chosen before dropping
    int64_t selected;     // pairs chosen: T·K (token choice), E·C·(T/G) (expert choice)
    int64_t kept;         // Σ tokens_per_expert
    int64_t dropped;      // selected − kept (token choice), 0 for expert choice
    int64_t unrouted;     // tokens with no kept pair
    double max_over_mean; // max_i load_i / mean_i load_i, load = selected_per_expert
    double cv;            // population std / mean of the same loads (moe_route_load_stats)
    double entropy;       // mean_t −Σ_j q_tj ln q_tj, q = p (softmax) or p/Σp (sigmoid), nats
    double aux_loss;      // L_aux (0 for expert choice)
    double z_loss;        // L_z
} moe_route_stats;

// The load statistics every report of routing uses (the router, the expert-parallel layer and
// the model's per-layer metrics all call this; docs/routing.md "Statistics"):
//   load_i = selected_per_expert[i] (demand before capacity dropping), mean = Σ_i load_i / E,
//   max_over_mean = max_i load_i / mean,
//   cv = √( Σ_i (load_i − mean)² / E ) / mean   (population std, two passes: no cancellation),
//   entropy = entropy_sum / tokens, entropy_sum = Σ_t −Σ_j q_tj ln q_tj (nats);
// each 0 when its divisor is 0 (no load, no tokens). Pure.
typedef struct {
    double max_over_mean, cv, entropy;
} moe_route_load;
moe_route_load moe_route_load_stats(const int64_t *load /* (E) */, int E, double entropy_sum,
                                    double tokens);

// Router forward: gate GEMM, scoring, selection, capacity, plan, losses and stats.
//   x (T, D), wg (D, E), bg (E) or NULL, balance_bias (E) or NULL (b; token-choice selection
//   only, ignored by expert choice).
// T <= plan->T_max (MOE_ASSERT). stats may be NULL.
void moe_router_forward(const moe_router_params *p, moe_route_plan *plan, moe_route_stats *stats,
                        const float *x, const float *wg, const float *bg, const float *balance_bias,
                        int64_t T, const moe_route_opts *opts);

// Router backward. drow_weight (R): dLoss/d row_weight[r] for each packed row of the last forward
// (the layer computes it as dot(dy[t], expert_out[r])). Adds the gradients of the combine
// weights, of L_aux (through P) and of L_z, through the scoring, into
//   dx (T, D) (may be NULL), dwg (D, E) (NULL: frozen), dbg (E) (NULL when
//   no gate bias or frozen).
void moe_router_backward(const moe_router_params *p, moe_route_plan *plan, const float *drow_weight,
                         const float *x, const float *wg, float *dx, float *dwg, float *dbg);

// Pieces, exposed for tests and the reference implementation ------------------------------------

// Scoring: probs (T, E) written from logits (T, E) (may alias for in-place).
void moe_router_score(moe_scoring s, const float *logits, float *probs, int64_t T, int E);
// dlogits (T, E) += J_score^T · dprobs (T, E).
void moe_router_score_backward(moe_scoring s, const float *probs, const float *dprobs,
                               float *dlogits, int64_t T, int E);
// Top-K of v (E) with ties to the lower index: idx (K) best first.
void moe_router_topk(const float *v, int E, int K, int32_t *idx);
// The jitter noise N(0,1) for (seed, token, expert): counter-based, pure.
float moe_router_noise(uint64_t seed, int64_t token, int expert);
// L_z for logits (T, E); if dlogits != NULL adds its gradient (coef β).
double moe_router_z_loss(const float *logits, int64_t T, int E, double beta, float *dlogits);

// Aux-loss-free balancing (DeepSeek-V3): bias[i] += gamma·sign(mean_load − load[i]), load (E)
// are (global) selection counts of the step. Not touched by the optimizer.
void moe_router_update_bias(float *bias, const int64_t *load, int E, double gamma);

#endif
