// optim.c: AdamW with decoupled weight decay, the learning-rate schedule, the global-norm clip
// scale and a non-finite check. Element updates run in double and store fp32 state: the cost is
// memory traffic either way, and double makes the update independent of the order of operations.
#include "optim.h"
#include "moe.pb-c.h"

#include <math.h>

void moe_optim_adamw_step(float *w, float *m, float *v, const float *g, int64_t n,
                          const moe_adamw_params *p, int64_t t, double lr, int decay,
                          double gscale) {
    MOE_ASSERT(t >= 1);
    const double b1 = p->beta1, b2 = p->beta2, eps = p->eps;
    const double wd = decay ? p->weight_decay : 0.0;
    const double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    for (int64_t i = 0; i < n; i++) {
        const double gi = gscale * (double)g[i];
        const double mi = b1 * (double)m[i] + (1.0 - b1) * gi;
        const double vi = b2 * (double)v[i] + (1.0 - b2) * gi * gi;
        const double wi = (double)w[i];
        const double upd = (mi / bc1) / (sqrt(vi / bc2) + eps) + wd * wi;
        m[i] = (float)mi;
        v[i] = (float)vi;
        w[i] = (float)(wi - lr * upd);
    }
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
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

double moe_optim_clip_scale(double sumsq, double clip) {
    if (!isfinite(sumsq)) return 0.0;
    if (clip <= 0) return 1.0;
    const double sc = clip / (sqrt(sumsq) + 1e-6);
    return sc < 1.0 ? sc : 1.0;
}

int moe_optim_nonfinite(const float *x, int64_t n) {
    // x − x is 0 for every finite x and NaN for NaN/±Inf: one branch-free pass, one test.
    float acc = 0.0f;
    for (int64_t i = 0; i < n; i++) acc += x[i] - x[i];
    return acc != 0.0f; // NaN != 0 holds too
}
