// train.h: the manual of the training loop (trainer/train.c) — one training step, the loop around
// it (loss scaling, grad-norm rule, checkpoints, preemption, metrics: docs/training.md),
// validation, data opening and checkpoint registration. The trainer's parts have their own
// manuals: the model (model/model.h, model/nn.h), the expert-parallel layer (ep/ep-layer.h),
// the optimizer (optim.h), token data (data/data.h) and checkpoints (checkpoint/checkpoint.h).
#ifndef MOE_TRAIN_H
#define MOE_TRAIN_H

#include "checkpoint.h"
#include "comm.h"
#include "data.h"
#include "model.h"
#include "moe-common.h"
#include "moe.pb-c.h"
#include "optim.h"
#include "watchdog.h"

// The loop, its contracts (loss scaling, grad-norm rule, checkpoints, preemption, metrics):
// docs/training.md. The model itself: model.h.

typedef struct {
    const char
        *resume; // NULL: fresh; "latest": OUT_DIR's newest checkpoint (fresh if none); or a dir
    const char *init_from; // a fresh run starting from this checkpoint's weights (NULL: none)
} moe_train_opts;
// The checkpoint a run starting at step 0 takes its weights from: o->init_from (--init-from)
// when set, else train.init_from when non-empty, else NULL; *label is "--init-from" or
// "train.init_from", for messages. A run that loads its own checkpoint (--resume) ignores it.
const char *moe_train_init_source(const Moe__Config *cfg, const moe_train_opts *o,
                                  const char **label);
// That checkpoint checked without loading it (local, no MPI): resolved into dir (cap bytes; a
// checkpoint, checkpoints or run directory, or RUN/latest), its manifest read, its model section
// equal to cfg's once defaults are resolved and, with verify, every file's size and CRC32C.
// *step and *n_files (may be NULL) get its step and file count. Messages start "label = from:"
// (or name the differing model fields): MOE_EUSAGE not found, MOE_EINVAL another model,
// MOE_ECORRUPT, MOE_EIO.
moe_status moe_train_check_init_from(const Moe__Config *cfg, const char *from, const char *label,
                                     int verify, char *dir, size_t cap, int64_t *step,
                                     size_t *n_files);
typedef struct {
    int64_t step;    // steps done
    double loss;     // global loss of the last step
    double val_loss; // last validation loss (0: none)
    int64_t skipped; // non-finite steps skipped
} moe_train_result;
// ---------------------------------------------------------------- one training step
// The one training step of `moe train` and `moe bench step` (docs/training.md, "One step"):
//   zero grads → forward (training, seed = train.seed, counter = step) → backward → gradient sync
//   (dense over the world, experts over their EDP group, both / W) → ONE agreed all-reduce of
//   (grad sumsq per group, weight sumsq per group, CE, non-finite flag, stop flag) → if every
//   rank's loss and gradient are finite: clip by the global norm (train.grad_clip), AdamW at
//   lr = schedule(step + 1), aux-free bias update (router.bias_update_rate > 0, global counts),
//   update sumsq per group (one more all-reduce); else the step is skipped (no parameter,
//   moment or bias changes) and r->nonfinite = 1.
// The step state owns the scratch the step needs (sized at create from the model: nothing is
// allocated per step); the model, comm and config are borrowed and must outlive it. The limit of
// consecutive non-finite steps (train.max_nonfinite_steps) is the caller's: the loop enforces it.
// Testing hook read at create: MOE_TRAIN_TEST_NAN_STEP="S[:R][+]" puts a NaN into rank R's
// (default 0) gradient at step S (every step >= S with '+'), before the gradient sync;
// MOE_TRAIN_TEST_SLOW_RANK="R:SECONDS[:S]" makes rank R sleep SECONDS per step from step S on.
typedef struct moe_train_step_state moe_train_step_state;
// Seconds of this rank's step by phase, disjoint (their sum is at most step_seconds; the rest —
// gradient zeroing, the reduction's bookkeeping — is in none): model = attention, router,
// dispatch, combine, experts and dense (moe_model_step_phases, model.h) over forward + backward;
// sync = the gradient sync plus the agreed reduction (its sums of squares included); optimizer =
// clipping, AdamW, the bias update and the update-norm all-reduce.
typedef struct {
    moe_model_phases model;
    double sync, optimizer;
} moe_step_phases;
typedef struct {
    double loss;      // global loss: mean CE over the world + aux + z
    double ce;        // global mean cross-entropy (the CE part of loss)
    double aux, z;    // the step's aux and z losses (global statistics; summed over layers)
    double lr;        // schedule(step + 1), the AdamW learning rate of this step
    double grad_norm; // global gradient norm before clipping (every parameter once)
    double clip;      // gradient scale given to AdamW (1: no clipping; 0: step skipped)
    int nonfinite;    // 1: a loss or gradient was NaN/Inf on some rank; the step was skipped
    int stop;         // 1: some rank has a stop request (SIGUSR1/SIGTERM/SIGINT); agreed
    // (n_groups) sums of squares over the world, valid until the next moe_train_step call:
    const double *grad_sumsq;   // gradients (before clipping)
    const double *weight_sumsq; // weights before the update
    const double *update_sumsq; // (weights after − weights before); zeros for a skipped step
    double step_seconds;        // this call, wall clock on this rank
    double exchange_seconds;    // MoE all-to-alls and routing-statistics all-reduces (model)
    double allreduce_seconds;   // gradient sync plus the agreed reduction
    // (world) every rank's seconds, agreed (valid until the next call): outside MPI up to the
    // agreed reduction (forward, backward: a slow rank shows here), and inside the expert
    // exchange and the gradient sync (waiting for the others plus the transfer).
    const double *rank_compute_seconds, *rank_wait_seconds;
    // (world) every rank's expert-exchange payload bytes sent / received across nodes; the world
    // sums of the bytes sent inside nodes and across them (counted by comm/, moe_comm_bytes).
    const double *rank_internode_sent, *rank_internode_recv;
    double bytes_intranode, bytes_internode;
    // (world) every rank's (token, expert) pairs computed by its experts in the step's forward,
    // summed over the MoE layers (moe_model_expert_pairs): the per-rank expert load.
    const double *rank_expert_pairs;
    moe_step_phases phases; // this rank's step by phase (not agreed)
} moe_train_step_result;
// Collective over c's world (c NULL: one process). m built for cfg at c's layout.
moe_status moe_train_step_create(const Moe__Config *cfg, const moe_comm *c, moe_model *m,
                                 moe_train_step_state **out);
void moe_train_step_free(moe_train_step_state *s); // NULL-safe
// One step on this rank's tokens (Bl, S+1) at 0-based step index `step` (AdamW t = step + 1).
// Collective. Fails only on a forward/backward refusal or an MPI failure (returned as is; the
// caller agrees on it).
moe_status moe_train_step(moe_train_step_state *s, const int32_t *tokens /* (Bl, S+1) */,
                          int64_t step, moe_train_step_result *r);

// ---------------------------------------------------------------- the loop
// Collective over c's world (c NULL: one process). MOE_EINTR: preempted, checkpoint written.
moe_status moe_train_run(const Moe__Config *cfg, const moe_comm *c, const moe_train_opts *o,
                         moe_train_result *res);
// `moe train --dry-run`: every check of moe_train_run's setup without training or writing —
// the layout (one line per rank), the memory per rank (moe_model_memory_of) against the machine,
// out_dir writable (probed with access(2): nothing is created), the checkpoints (a fresh run: none
// there; --resume: the checkpoint found, its files verified, its seed, the schedule change) and
// the data (opened, split sizes; an absent default corpus is named, not generated). Prints on
// rank 0; the first failing check's status, agreed. Collective (c NULL: one process).
moe_status moe_train_dry_run(const Moe__Config *cfg, const moe_comm *c, const moe_train_opts *o);
// The job watchdog's parameters from cfg's `watchdog` section (its proto defaults without one).
moe_watchdog_params moe_train_watchdog_params(const Moe__Config *cfg);
// Mean validation loss over `batches` fixed batches of global_batch sequences (collective).
moe_status moe_train_eval(moe_model *m, const moe_data *d, const moe_comm *c, int64_t global_batch,
                          int batches, int32_t *tokens /* (Bl, S+1) */, double *val);
moe_status moe_train_open_data(const Moe__Config *cfg, const moe_comm *c, moe_data **out);
moe_ckpt *moe_train_ckpt_register(moe_model *m); // params, Adam m, v, balancing biases
// A checkpoint of m's parameters only (no Adam moments, no balancing biases), each tensor
// registered at m->params + its offset, for loading: the tensors for which keep(t, arg) is
// nonzero (keep NULL: every one). Used by --init-from, a LoRA run's base and moe export.
typedef int (*moe_train_tensor_keep)(const moe_model_tensor *t, const void *arg);
moe_ckpt *moe_train_ckpt_params(const moe_model *m, moe_train_tensor_keep keep, const void *arg);
// Loads the checkpoint at `where` into m through ck (moe_train_ckpt_register(m)); cfg and st as
// moe_ckpt_load (st->base, base_hash: a LoRA checkpoint's base). A LoRA checkpoint holds only
// the trainable tensors: the frozen ones are read first from the base checkpoint its manifest
// names, refused (MOE_EINVAL) when that base's manifest no longer hashes as recorded (another
// base, or it was deleted: the message names it); a LoRA checkpoint that names no base was
// trained from the initialisation of its train.seed, which m holds. Collective.
moe_status moe_train_ckpt_load(moe_model *m, moe_ckpt *ck, const moe_comm *c, const char *where,
                               const Moe__Config *cfg, moe_ckpt_state *st);
// The same tensors for a parameter-only store (moe_model_create_table with params set): the
// parameters from m->params, every Adam moment and balancing bias read from `zeros` — all 0, at
// least as many floats as the largest tensor and as model.n_experts — so a step-0 checkpoint
// (moe import) needs no moment buffers. Saving only reads `zeros`; do not load into it.
moe_ckpt *moe_train_ckpt_register_store(moe_model *m, float *zeros);
// SIGUSR1, SIGTERM, SIGINT → stop flag (checked every step: checkpoint, exit 75); a second SIGINT
// kills the process as SIGINT does. Reads MOE_STOP_FILE: a path whose existence also requests
// the stop (a launcher's channel that no early signal can miss). Call before anything else.
void moe_train_install_signals(void);
int moe_train_stop_requested(void); // the flag, or MOE_STOP_FILE exists

#endif
