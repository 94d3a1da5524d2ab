// model.h: the sparse decoder-only transformer assembled from nn.h kernels and the MoE layer —
// a parameter table over one allocation per family (params, grads, Adam m, v), deterministic
// layout-independent initialisation, forward and backward over this rank's slice of the batch.
// Trade-off: every activation of every layer is kept for backward (no recomputation); at the
// sizes this project trains (S <= 256, a few sequences per rank) that is a few MiB per layer.
//
// Letters: Bl sequences of this rank, S seq_len, T = Bl·S tokens, D, V, H, Hkv, Dh, L layers,
// E experts, El = E/EP local experts. The math is docs/model.md; the loop around it trainer/train.c.
#ifndef MOE_MODEL_H
#define MOE_MODEL_H

#include "comm.h"
#include "experts.h"
#include "moe-common.h"
#include "moe.pb-c.h"

// Where this rank sits. Filled from a moe_comm by moe_model_layout_of, or by hand (tests,
// accounting) for a layout that is not actually running.
typedef struct {
    int world, world_rank;
    int ep, ep_rank, edp_rank;
} moe_model_layout;
moe_model_layout moe_model_layout_of(const moe_comm *c); // c NULL: a single process

// Parameter groups for metrics (weight norm, grad norm, update ratio per group).
typedef enum {
    MOE_GROUP_EMBEDDINGS = 0,
    MOE_GROUP_ATTENTION,
    MOE_GROUP_NORMS,
    MOE_GROUP_ROUTER,
    MOE_GROUP_DENSE_FFN,
    MOE_GROUP_HEAD,
    MOE_GROUP_N_FIXED
    // then "experts.<l>" and "shared.<l>" for every MoE layer l (see moe_model.group_names)
} moe_model_group;

// One tensor of the table. Expert tensors have one entry per local expert (global id `expert`),
// all in the expert region [n_dense, n_params) of the family buffers; dense tensors lie in
// [0, n_dense). Checkpoint key: (name, layer, expert).
typedef struct {
    char name[48]; // "layers.3.attn.wq", "layers.2.experts.w1", "wte", "head"
    int layer;     // -1: not per layer
    int expert;    // global expert id; -1: not an expert tensor
    int ndim;      // 1 or 2
    int64_t shape[2];
    int64_t offset, n; // floats into params
    int64_t goff;      // floats into grads/adam_m/adam_v; -1: frozen (LoRA base), none held
    int decay;         // AdamW weight decay (matrices, embeddings), 0 for norms and biases
    int group;         // index into group_names
} moe_model_tensor;

// Per MoE layer routing statistics of the last forward, over the GLOBAL batch.
typedef struct {
    int layer;
    int64_t *selected; // (E) pairs chosen per expert before capacity dropping
    int64_t *kept;     // (E) pairs computed per expert
    int64_t tokens, dropped, unrouted;
    double max_over_mean, cv, entropy, aux, z;
} moe_model_layer_stats;

typedef struct moe_model_ffn moe_model_ffn; // a MoE FFN behind one internal interface (model.c)

typedef struct {
    Moe__ModelConfig *mc;  // the model shape (owned copy)
    Moe__RouterConfig *rc; // routing (owned copy)
    moe_model_layout lay;
    const moe_comm *comm;                     // NULL: single process
    int64_t V, D, H, Hkv, Dh, F, L, S, Bl, T; // T = Bl·S (0 when created for parameters only)
    int E, K, El, first_expert, n_moe, rope, learned_pos, tied;
    int qk_norm; // MOE__MODEL_CONFIG__QK_NORM__*: 0 none, per_head (width Dh), full (H·Dh, Hkv·Dh)
    int *moe_index; // (L) index among MoE layers, -1 for a dense layer

    // Parameter table and families.
    int n_tensors;
    moe_model_tensor *tensors; // (n_tensors) dense first, then expert slices
    int64_t n_dense, n_params; // floats: dense region [0, n_dense), experts [n_dense, n_params)
    // The trainable tensors' gradients and Adam moments (tensor goff): dense [0, n_train_dense),
    // experts [n_train_dense, n_train). Without LoRA every tensor: goff = offset, n_train =
    // n_params, n_train_dense = n_dense. With LoRA (lora_rank > 0, docs/lora.md) the adapters and
    // what lora.train_router / train_norms name; the frozen base holds neither.
    int lora_rank;
    int64_t n_train_dense, n_train;
    float *params;                  // (n_params)
    float *grads, *adam_m, *adam_v; // (n_train) each, one allocation per family
    float *balance_bias; // (n_moe, E) aux-loss-free bias (state, not a parameter)
    int n_groups;
    char (*group_names)[24]; // (n_groups)
    int64_t expert_params;   // parameters of one routed expert (matrices and biases)
    int64_t dense_active;    // parameters every token uses (all but routed experts)

    // Per-step results (filled by forward).
    moe_model_layer_stats *stats; // (n_moe)
    double exchange_seconds;      // in all-to-alls and routing-statistics all-reduces, last fwd+bwd

    // Routing replay (router.replay; trainer/trace/trace.h): when set, a training forward takes
    // token t's experts in MoE layer i from replay[(i·T + t)·K .. +K) (router.h, moe_route_opts
    // .forced) instead of selecting them. Not owned; NULL (the default): the router selects.
    const int32_t *replay;

    // Internals (model.c).
    void *priv;
} moe_model;

// Refuses what `moe params` can count but this trainer does not implement (layernorm, full
// qk-norm, multi-head latent attention, odd head_dim with RoPE, ...), naming the field and
// what to set. MOE_EINVAL.
moe_status moe_model_check(const Moe__Config *cfg);

// Memory one rank needs for cfg at `lay` with B_local sequences per forward, estimated before
// anything is allocated (moe_model_create refuses a model whose total exceeds the machine's
// memory divided among the ranks on the node): parameters, gradients and Adam state
// (moe_params_count's rank_bytes), the previous-step copy (4 bytes per parameter) and the
// activations as moe_model_create lays them out. machine_bytes: physical memory (0: unknown);
// node_ranks: ranks sharing it (1 without comm). MOE_EINVAL/MOE_ELAYOUT as moe_params_count.
typedef struct {
    int64_t rank_params;
    double state_bytes, prev_bytes, activation_bytes, total_bytes;
    double machine_bytes;
    int node_ranks;
} moe_model_memory;
moe_status moe_model_memory_of(const Moe__Config *cfg, const moe_model_layout *lay,
                               const moe_comm *comm, int64_t B_local, moe_model_memory *out);

// Builds the table and the families for `lay` and initialises parameters (docs/model.md, keyed by
// (tensor, global expert id) from train.seed: identical for every layout). B_local sequences of
// train.seq_len per forward; B_local = 0 builds parameters only (no activations, no forward).
// comm may be NULL only when lay.world == 1.
moe_status moe_model_create(const Moe__Config *cfg, const moe_model_layout *lay,
                            const moe_comm *comm, int64_t B_local, moe_model **out);
// The parameter table of cfg at `lay` (any layout; no communicator): m->tensors with their
// offsets and shapes, n_dense, n_params, a zero balance_bias — and no families (params, grads,
// adam_m, adam_v NULL), no activations, no forward. A parameter-only store: the caller may point
// m->params at its own n_params floats (4 bytes a parameter of this rank's shard) and must set it
// back to NULL before moe_model_free. For tools that move weights one shard at a time (moe
// import reuses one buffer for every shard). MOE_EINVAL / MOE_ELAYOUT as moe_model_create.
moe_status moe_model_create_table(const Moe__Config *cfg, const moe_model_layout *lay,
                                  moe_model **out);
void moe_model_free(moe_model *m); // NULL-safe
// Rebuilds every MoE layer's exchange with the options of pc (overlap chunks, hierarchical,
// dedup, payload dtype): parameters, optimizer state and balance bias are untouched; m->stats
// hold nothing until the next forward. Collective (the layers' exchange plans); the outcome is
// agreed. For parallel.exchange = auto (trainer/exchange-auto.h) between steps.
moe_status moe_model_set_exchange(moe_model *m, const Moe__ParallelConfig *pc);

// Loss parts of one forward: ce is this rank's mean over its T tokens; aux and z are the global
// router losses (summed over MoE layers). The global loss is mean_ranks(ce) + aux + z.
typedef struct {
    double ce, aux, z;
} moe_model_loss;

// Forward over tokens (Bl, S+1) (inputs [0, S), targets [1, S+1)). training = 1 prepares backward
// (dlogits) and enables jitter, keyed by (seed, step, layer, global token index); token_base =
// global index of this rank's first token. Collective over the world (routing statistics) when
// the model has MoE layers and W > 1.
moe_status moe_model_forward(moe_model *m, const int32_t *tokens, int training, uint64_t seed,
                             int64_t step, int64_t token_base, moe_model_loss *loss);
// (T, V) logits of the last forward, row t = token t of this rank's batch (sequence-major).
// Valid after an evaluation forward (training = 0) until the next forward; a training forward
// overwrites them with dlogits. For sampling (generate/generate.h).
const float *moe_model_logits(const moe_model *m);
// Backward of the last training forward: grads ADDED (zero them first with moe_model_zero_grads;
// the expert-parallel layers then write their routed experts' gradients instead, the same values).
// The gradient is that of this rank's loss ce + W·(its share of aux, z), so that
// moe_comm_sync_grads (sum / W) yields the gradient of the global loss for every layout.
moe_status moe_model_backward(moe_model *m);
// The gradient of the parameters at params + off (off: a tensor's offset, or inside one), or
// NULL when that tensor is frozen (off < 0: NULL).
float *moe_model_grad_ptr(const moe_model *m, int64_t off);
// Zeroes the gradients before a backward — all of them but the routed experts' of
// expert-parallel layers, which that backward writes (moe_ep_layer_grads_fresh): until it runs
// they hold stale values. Returns the floats it zeroed.
int64_t moe_model_zero_grads(moe_model *m);

// Parameters of the whole model by the table (this rank's routed-expert tensors counted EP times,
// each EP rank holding as many): the ones the optimizer updates and the frozen ones (LoRA's base;
// 0 without LoRA). The aux-free balancing bias is neither. Equal to moe_params_count's trainable
// and frozen (test_lora).
typedef struct {
    int64_t trainable, frozen;
} moe_model_counts;
moe_model_counts moe_model_count_params(const moe_model *m);

// Seconds the MoE layers spent in exposed communication during the last forward+backward:
// all-to-all exchanges and routing-statistics all-reduces (the EP layer's `exchange` phases).
double moe_model_exchange_seconds(const moe_model *m);
// Seconds of this rank's last forward + backward by phase (the backward that followed the
// forward included once it ran; a forward alone after an evaluation forward). Disjoint; their
// sum is the wall time of forward + backward:
//   attention: the attention sublayers (their norm, QKV, attention, output projection, residual);
//   router, dispatch, combine, experts: the MoE layers' parts (ep-layer.h, moe_ep_phase; without
//              a communicator the whole one-rank MoE layer is experts);
//   dense: everything else (embedding, FFN norms, dense FFN layers, shared experts, the MoE
//          layers' own bookkeeping, final norm, head and loss).
// A few clock reads per layer.
typedef struct {
    double attention, router, dispatch, combine, experts, dense;
} moe_model_phases;
moe_model_phases moe_model_step_phases(const moe_model *m);
// Payload bytes this rank's MoE layers moved through the expert exchange in the last forward and
// the backward that followed it (none after an evaluation forward), split
// intra-/inter-node, sent and received (comm.h: moe_comm_bytes; counted, not estimated). Zero
// without a communicator. A training step reads it after moe_model_backward.
moe_comm_bytes moe_model_exchange_bytes(const moe_model *m);
// (token, expert) pairs this rank's experts computed in the last forward, summed over the MoE
// layers: the rank's expert load (the busiest rank sets the step time). Summed over the world it
// is every kept pair once (each is computed by its expert's owner in its EP group).
int64_t moe_model_expert_pairs(const moe_model *m);
// The routing plan of MoE layer i (0 <= i < n_moe) in the last forward: this rank's T tokens, global
// expert ids (router.h, moe_route_plan). Read-only, owned by the layer, valid until the next
// forward; nothing is copied or computed for it (routing traces read it: trainer/trace/trace.h).
const moe_route_plan *moe_model_route_plan(const moe_model *m, int i);

#endif
