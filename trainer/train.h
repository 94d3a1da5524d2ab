// train.h: the manual of the training loop (trainer/train.c) — one training step, the loop around
// it (loss scaling, grad-norm rule, checkpoints, preemption, metrics: docs/training.md),
// validation, data opening and checkpoint registration. The trainer's parts have their own
// manuals: the model (model/model.h, model/nn.h, model/ep-layer.h), the optimizer (optim.h),
// token data (data/data.h) and checkpoints (checkpoint/checkpoint.h).
#ifndef MOE_TRAIN_H
#define MOE_TRAIN_H

#include "checkpoint.h"
#include "comm.h"
#include "data.h"
#include "model.h"
#include "moe-common.h"
#include "moe.pb-c.h"
#include "optim.h"

// The loop, its contracts (loss scaling, grad-norm rule, checkpoints, preemption, metrics):
// docs/training.md. The model itself: model.h.

typedef struct {
    const char *resume;   // NULL: fresh; "latest": OUT_DIR's newest checkpoint (fresh if none); or a dir
} moe_train_opts;
typedef struct {
    int64_t step;         // steps done
    double loss;          // global loss of the last step
    double val_loss;      // last validation loss (0: none)
    int64_t skipped;      // non-finite steps skipped
} moe_train_result;
// Collective over c's world (c NULL: one process). MOE_EINTR: preempted, checkpoint written.
moe_status moe_train_run(const Moe__Config *cfg, const moe_comm *c, const moe_train_opts *o,
                         moe_train_result *res);
// Mean validation loss over `batches` fixed batches of global_batch sequences (collective).
moe_status moe_train_eval(moe_model *m, const moe_data *d, const moe_comm *c, int64_t global_batch,
                          int batches, int32_t *tokens /* (Bl, S+1) */, double *val);
moe_status moe_train_open_data(const Moe__Config *cfg, const moe_comm *c, moe_data **out);
moe_ckpt *moe_train_ckpt_register(moe_model *m); // params, Adam m, v, balancing biases
void moe_train_install_signals(void); // SIGUSR1, SIGTERM → stop flag (checked every step)
int moe_train_stop_requested(void);

#endif
