// optim.c: AdamW with decoupled weight decay, the learning-rate schedule, the global-norm clip
// scale and a non-finite check. Trade-off: the element update runs in float (one expression per
// element, vectorised; the per-call constants in double), since the optimizer is a memory-bound
// pass over every parameter: double arithmetic made it compute-bound at ~20 % of the machine's
// memory bandwidth. The norms the trainer logs are summed in double, lane by lane.
#include "optim.h"
#include "moe.pb-c.h"

#include <math.h>

// Elements in blocks of MOE_OPTIM_LANES with one accumulator per lane: the compiler turns each
// block into vector instructions (a single running sum is a chain it may not reorder).
#define MOE_OPTIM_LANES 8

void moe_optim_adamw_step(float *restrict w, float *restrict m, float *restrict v,
                          const float *restrict g, int64_t n, const moe_adamw_params *p, int64_t t,
                          double lr, int decay, double gscale, double sums[2]) {
    MOE_ASSERT(t >= 1);
    // Per-call constants in double, then one float expression per element:
    //   w' = keep·w − step·m' / (√v'·rs + ε),  keep = 1 − lr·wd, step = lr/(1−β1^t),
    //   rs = 1/√(1−β2^t)   (= w − lr·(m̂/(√v̂ + ε) + wd·w), regrouped).
    const double bc1 = 1.0 - pow(p->beta1, (double)t), bc2 = 1.0 - pow(p->beta2, (double)t);
    const float b1 = (float)p->beta1, c1 = (float)(1.0 - p->beta1);
    const float b2 = (float)p->beta2, c2 = (float)(1.0 - p->beta2);
    const float eps = (float)p->eps, gs = (float)gscale;
    const float step = (float)(lr / bc1), rs = (float)(1.0 / sqrt(bc2));
    const float keep = (float)(1.0 - lr * (decay ? p->weight_decay : 0.0));
    double aw[MOE_OPTIM_LANES] = {0}, ad[MOE_OPTIM_LANES] = {0};
    int64_t i = 0;
#define MOE_ADAMW_ELEMENT(k, accw, accd)                                                           \
    do {                                                                                           \
        const float gi = gs * g[k], wi = w[k];                                                     \
        const float mi = b1 * m[k] + c1 * gi, vi = b2 * v[k] + c2 * gi * gi;                       \
        const float wn = keep * wi - step * mi / (sqrtf(vi) * rs + eps);                           \
        m[k] = mi, v[k] = vi, w[k] = wn;                                                           \
        accw += (double)wi * wi;                                                                   \
        accd += ((double)wn - wi) * ((double)wn - wi);                                             \
    } while (0)
    for (; i + MOE_OPTIM_LANES <= n; i += MOE_OPTIM_LANES)
        for (int j = 0; j < MOE_OPTIM_LANES; j++) MOE_ADAMW_ELEMENT(i + j, aw[j], ad[j]);
    for (; i < n; i++) MOE_ADAMW_ELEMENT(i, aw[0], ad[0]);
#undef MOE_ADAMW_ELEMENT
    for (int j = 0; j < MOE_OPTIM_LANES; j++) sums[0] += aw[j], sums[1] += ad[j];
}

double moe_optim_lr(int64_t t, const moe_lr_schedule *s) {
    if (t <= 0) return 0.0;
    if (s->warmup_steps > 0 && t <= s->warmup_steps)
        return s->lr * (double)t / (double)s->warmup_steps;
    if (s->steps <= s->warmup_steps) return s->lr;
    double r = (double)(t - s->warmup_steps) / (double)(s->steps - s->warmup_steps);
    r = r < 0 ? 0 : r > 1 ? 1 : r;
    switch (s->kind) {
    case MOE_LR_CONSTANT: return s->lr;
    case MOE_LR_LINEAR: return s->lr - r * (s->lr - s->min_lr);
    case MOE_LR_COSINE:
        return s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(3.14159265358979323846 * r));
    }
    MOE_ASSERT(!"moe_lr_kind value outside the enum");
    return s->lr;
}

// Exhaustive over the proto enum (no default: -Wswitch lists a new schedule here).
static int moe_lr_kind_from_proto(Moe__TrainConfig__Schedule v, moe_lr_kind *out) {
    switch (v) {
    case MOE__TRAIN_CONFIG__SCHEDULE__cosine: *out = MOE_LR_COSINE; return 1;
    case MOE__TRAIN_CONFIG__SCHEDULE__constant: *out = MOE_LR_CONSTANT; return 1;
    case MOE__TRAIN_CONFIG__SCHEDULE__linear: *out = MOE_LR_LINEAR; return 1;
    case _MOE__TRAIN_CONFIG__SCHEDULE_IS_INT_SIZE: break; // protobuf-c's size marker, not a value
    }
    return 0;
}

moe_lr_schedule moe_optim_schedule_from_config(const struct Moe__TrainConfig *c) {
    moe_lr_schedule s;
    if (!moe_lr_kind_from_proto(c->schedule, &s.kind)) {
        fprintf(stderr, "train.schedule = %d is not a schedule (cosine, constant, linear)\n",
                (int)c->schedule);
        MOE_ASSERT(!"train.schedule refused by moe_config_validate and moe_model_check");
    }
    s.lr = c->lr;
    s.min_lr = c->min_lr;
    s.warmup_steps = c->warmup_steps;
    s.steps = c->steps;
    return s;
}

moe_adamw_params moe_optim_adamw_from_config(const struct Moe__TrainConfig *c) {
    moe_adamw_params p;
    p.beta1 = c->beta1;
    p.beta2 = c->beta2;
    p.eps = c->eps;
    p.weight_decay = c->weight_decay;
    return p;
}

double moe_optim_sumsq(const float *x, int64_t n) {
    double acc[MOE_OPTIM_LANES] = {0}, s = 0;
    int64_t i = 0;
    for (; i + MOE_OPTIM_LANES <= n; i += MOE_OPTIM_LANES)
        for (int j = 0; j < MOE_OPTIM_LANES; j++) acc[j] += (double)x[i + j] * x[i + j];
    for (; i < n; i++) s += (double)x[i] * x[i];
    for (int j = 0; j < MOE_OPTIM_LANES; j++) s += acc[j];
    return s;
}

double moe_optim_clip_scale(double sumsq, double clip) {
    if (!isfinite(sumsq)) return 0.0;
    if (clip <= 0) return 1.0;
    const double sc = clip / (sqrt(sumsq) + 1e-6);
    return sc < 1.0 ? sc : 1.0;
}
