// optim.h: the optimizer of the trainer (trainer/optim.c) — AdamW, the LR schedule, clipping by
// the global norm and the non-finite check. Free functions over raw pointers; nothing allocates.
#ifndef MOE_OPTIM_H
#define MOE_OPTIM_H

#include "moe-common.h"

// AdamW (Loshchilov & Hutter, decoupled weight decay), step t = 1, 2, … (bias corrections):
//   g' = gscale·g;  m = β1 m + (1−β1) g';  v = β2 v + (1−β2) g'²
//   w −= lr · ( (m/(1−β1^t)) / (√(v/(1−β2^t)) + ε)  +  wd·w )     (wd term only if decay)
// Decay for matrices and embeddings; none for norm weights and biases (the trainer passes the
// flag per tensor); the aux-free balancing bias is never given to the optimizer. Each element is
// updated in float arithmetic (w, m, v are fp32 state; within a few float ulps of the double
// formula). In the same pass, sums[0] += Σ w² of the weights before the update and
// sums[1] += Σ (w_after − w_before)², in double (the trainer's per-group norms).
typedef struct {
    double beta1, beta2, eps, weight_decay;
} moe_adamw_params;

// w, m, v (n) updated in place; g (n) read (scaled by gscale: the clip scale, or 1). t >= 1.
// The four arrays must not overlap.
void moe_optim_adamw_step(float *restrict w, float *restrict m, float *restrict v,
                          const float *restrict g, int64_t n, const moe_adamw_params *p, int64_t t,
                          double lr, int decay, double gscale, double sums[2]);

// LR schedule (TrainConfig.schedule), a pure function of the 1-based step t (the t of AdamW):
//   warmup (t <= warmup_steps): lr·t/warmup_steps (0 at t = 0, lr at t = warmup_steps);
//   then r = (t − warmup)/(steps − warmup) clamped to [0, 1] and
//   cosine: min_lr + ½(lr − min_lr)(1 + cos πr); linear: lr − r(lr − min_lr); constant: lr.
// So the last step (t = steps) runs at min_lr; steps <= warmup: lr after warmup (no decay room).
// Values equal the proto enum TrainConfig.Schedule.
typedef enum { MOE_LR_COSINE = 0, MOE_LR_CONSTANT = 1, MOE_LR_LINEAR = 2 } moe_lr_kind;
typedef struct {
    moe_lr_kind kind;
    double lr, min_lr;
    int64_t warmup_steps, steps;
} moe_lr_schedule;
double moe_optim_lr(int64_t t, const moe_lr_schedule *s);

struct Moe__TrainConfig;
// From the schema (absent fields hold their defaults in a loaded config). A train.schedule that
// is not a value of the enum is a programmer error here (MOE_ASSERT): moe_config_validate and
// moe_model_check refuse it with MOE_EINVAL before a trainer reads it.
moe_lr_schedule moe_optim_schedule_from_config(const struct Moe__TrainConfig *c);
moe_adamw_params moe_optim_adamw_from_config(const struct Moe__TrainConfig *c);

// Σ x² of a buffer (in double): the local part of the squared global gradient norm; the trainer
// sums it over ranks, counting every parameter exactly once.
double moe_optim_sumsq(const float *x, int64_t n);
// Clip scale for the global squared norm: min(1, clip/(√sumsq + 1e-6)); clip <= 0: 1 (off).
// A non-finite sumsq gives 0, meaning "do not step": the caller skips AdamW for this step (NaN
// gradients would poison m and v; 0·NaN is still NaN).
double moe_optim_clip_scale(double sumsq, double clip);

#endif
