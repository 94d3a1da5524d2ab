// test_optim.c: the optimizer helpers of trainer/model/nn.h — AdamW against a double-precision
// reference written from the formula (several steps, with and without weight decay, with a
// gradient scale), the closed form of its first step, the LR schedule at its key points for
// cosine / linear / constant, the clip scale, the squared norm and the non-finite check.
#include "config.h"
#include "optim.h"
#include "test_nn_ref.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int fails;

static void expect_near(const char *what, double got, double want, double tol) {
    const int ok = fabs(got - want) <= tol;
    printf("%s %s: expected %.12g got %.12g\n", ok ? "ok  " : "FAIL", what, want, got);
    fails += !ok;
}

// Reference AdamW in double: state kept in double, the formula of nn.h.
static void ref_adamw(double *w, double *m, double *v, const double *g, int64_t n,
                      const moe_adamw_params *p, int64_t t, double lr, int decay, double gs) {
    for (int64_t i = 0; i < n; i++) {
        double gi = g[i] * gs;
        m[i] = p->beta1 * m[i] + (1 - p->beta1) * gi;
        v[i] = p->beta2 * v[i] + (1 - p->beta2) * gi * gi;
        double mh = m[i] / (1 - pow(p->beta1, (double)t));
        double vh = v[i] / (1 - pow(p->beta2, (double)t));
        w[i] -= lr * (mh / (sqrt(vh) + p->eps) + (decay ? p->weight_decay * w[i] : 0));
    }
}

static void test_adamw(int decay, double gscale) {
    enum { N = 37, STEPS = 6 };
    const moe_adamw_params p = {0.9, 0.95, 1e-8, 0.1};
    uint64_t st = 42 + (uint64_t)decay;
    float w[N], m[N] = {0}, v[N] = {0}, g[N];
    double wd[N], md[N] = {0}, vd[N] = {0}, gd[N];
    nnref_fill(&st, w, wd, N, -2, 2);
    const float w0 = w[0];
    double worst = 0;
    for (int t = 1; t <= STEPS; t++) {
        nnref_fill(&st, g, gd, N, -1, 1);
        if (t == 2) g[5] = 0, gd[5] = 0; // a zero gradient: only decay and momentum move it
        const double lr = 1e-2 * t;
        double wsq_ref = 0, sums[2] = {0, 0};
        for (int i = 0; i < N; i++) wsq_ref += (double)w[i] * w[i];
        float wb[N];
        memcpy(wb, w, sizeof wb);
        moe_optim_adamw_step(w, m, v, g, N, &p, t, lr, decay, gscale, sums);
        double upd_ref = 0;
        for (int i = 0; i < N; i++) upd_ref += ((double)w[i] - wb[i]) * ((double)w[i] - wb[i]);
        expect_near("adamw sums[0] = sum of w^2 before the update", sums[0], wsq_ref,
                    1e-12 * wsq_ref);
        expect_near("adamw sums[1] = sum of the update squared", sums[1], upd_ref,
                    1e-9 * upd_ref + 1e-15);
        ref_adamw(wd, md, vd, gd, N, &p, t, lr, decay, gscale);
        if (t == 1) {
            // Closed form of step 1: m̂ = g', v̂ = g'², so w1 = w0 − lr(g'/(|g'| + ε) + wd·w0).
            const double gg = gscale * g[0];
            char what[80];
            snprintf(what, sizeof what, "adamw step 1 closed form (decay %d, gscale %g)", decay,
                     gscale);
            expect_near(what, w[0], w0 - lr * (gg / (fabs(gg) + p.eps) + (decay ? 0.1 * w0 : 0)),
                        1e-6);
        }
        for (int i = 0; i < N; i++) {
            double e = fabs(w[i] - wd[i]) + fabs(m[i] - md[i]) + fabs(v[i] - vd[i]);
            if (e > worst) worst = e;
        }
    }
    char what[80];
    snprintf(what, sizeof what, "adamw %d steps vs double reference (decay %d, gscale %g)", STEPS,
             decay, gscale);
    expect_near(what, worst, 0, 2e-6);
}

static void test_schedule(void) {
    const double pi = 3.14159265358979323846;
    moe_lr_schedule s = {MOE_LR_COSINE, 1.0, 0.1, 10, 110};
    expect_near("cosine t=0 (before any step)", moe_optim_lr(0, &s), 0.0, 1e-15);
    expect_near("cosine t=1 (first step) = lr/warmup", moe_optim_lr(1, &s), 0.1, 1e-15);
    expect_near("cosine t=5", moe_optim_lr(5, &s), 0.5, 1e-15);
    expect_near("cosine t=warmup = lr", moe_optim_lr(10, &s), 1.0, 1e-15);
    expect_near("cosine r=1/4", moe_optim_lr(35, &s), 0.1 + 0.45 * (1 + cos(pi / 4)), 1e-12);
    expect_near("cosine midpoint = (lr+min)/2", moe_optim_lr(60, &s), 0.55, 1e-12);
    expect_near("cosine t=steps = min_lr", moe_optim_lr(110, &s), 0.1, 1e-12);
    expect_near("cosine past the end = min_lr", moe_optim_lr(500, &s), 0.1, 1e-12);
    int mono = 1;
    for (int64_t t = 11; t <= 120; t++) mono &= moe_optim_lr(t, &s) <= moe_optim_lr(t - 1, &s);
    expect_near("cosine non-increasing after warmup", mono, 1, 0);
    s.kind = MOE_LR_LINEAR;
    expect_near("linear t=warmup", moe_optim_lr(10, &s), 1.0, 1e-15);
    expect_near("linear r=1/4", moe_optim_lr(35, &s), 1.0 - 0.25 * 0.9, 1e-12);
    expect_near("linear midpoint", moe_optim_lr(60, &s), 0.55, 1e-12);
    expect_near("linear t=steps", moe_optim_lr(110, &s), 0.1, 1e-12);
    s.kind = MOE_LR_CONSTANT;
    expect_near("constant t=5", moe_optim_lr(5, &s), 0.5, 1e-15);
    expect_near("constant midpoint", moe_optim_lr(60, &s), 1.0, 1e-15);
    expect_near("constant t=steps", moe_optim_lr(110, &s), 1.0, 1e-15);
    s = (moe_lr_schedule){MOE_LR_COSINE, 2.0, 0.0, 0, 100}; // no warmup
    expect_near("no warmup t=1", moe_optim_lr(1, &s), 1.0 + cos(pi / 100), 1e-12);
    expect_near("no warmup midpoint", moe_optim_lr(50, &s), 1.0, 1e-12);
    s = (moe_lr_schedule){MOE_LR_COSINE, 2.0, 0.5, 20, 10}; // steps <= warmup
    expect_near("steps < warmup: t=steps", moe_optim_lr(10, &s), 1.0, 1e-15);
    expect_near("steps < warmup: after warmup", moe_optim_lr(30, &s), 2.0, 1e-15);

    // From the schema defaults (proto/moe.proto TrainConfig).
    Moe__Config *cfg = moe_config_new_default();
    moe_lr_schedule d = moe_optim_schedule_from_config(cfg->train);
    moe_adamw_params a = moe_optim_adamw_from_config(cfg->train);
    expect_near("config lr", d.lr, cfg->train->lr, 0);
    expect_near("config min_lr", d.min_lr, cfg->train->min_lr, 0);
    expect_near("config warmup", (double)d.warmup_steps, (double)cfg->train->warmup_steps, 0);
    expect_near("config steps", (double)d.steps, (double)cfg->train->steps, 0);
    expect_near("config schedule", d.kind, (int)cfg->train->schedule, 0);
    expect_near("config beta1", a.beta1, cfg->train->beta1, 0);
    expect_near("config beta2", a.beta2, cfg->train->beta2, 0);
    expect_near("config eps", a.eps, cfg->train->eps, 0);
    expect_near("config weight_decay", a.weight_decay, cfg->train->weight_decay, 0);
    moe_config_free(cfg);
}

static void test_clip_and_checks(void) {
    expect_near("clip norm 4, clip 1", moe_optim_clip_scale(16.0, 1.0), 1.0 / (4.0 + 1e-6), 1e-15);
    expect_near("clip norm 0.5, clip 1 (no clip)", moe_optim_clip_scale(0.25, 1.0), 1.0, 0);
    expect_near("clip off (0)", moe_optim_clip_scale(1e6, 0.0), 1.0, 0);
    expect_near("clip of a NaN norm", moe_optim_clip_scale(NAN, 1.0), 0.0, 0);
    expect_near("clip of an Inf norm", moe_optim_clip_scale(INFINITY, 1.0), 0.0, 0);
    enum { N = 1001 };
    float x[N];
    double xd[N];
    uint64_t st = 5;
    nnref_fill(&st, x, xd, N, -3, 3);
    expect_near("sumsq vs double loop", moe_optim_sumsq(x, N), nnref_dot(xd, xd, N), 1e-9);
    // The trainer's non-finite check: the gradient's sum of squares (in double) is not finite
    // exactly when some element is NaN or ±Inf, and then the clip scale says "do not step".
    x[17] = 3e38f;
    expect_near("sumsq of a huge but finite buffer is finite", isfinite(moe_optim_sumsq(x, N)), 1, 0);
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        x[N - 1 - 300 * k] = bad[k];
        char what[64];
        snprintf(what, sizeof what, "no step for a %s at %d",
                 k == 0   ? "NaN"
                 : k == 1 ? "+Inf"
                          : "-Inf",
                 N - 1 - 300 * k);
        expect_near(what, moe_optim_clip_scale(moe_optim_sumsq(x, N), 1.0), 0.0, 0);
        x[N - 1 - 300 * k] = 0.5f;
    }
}

int main(void) {
    test_adamw(1, 1.0);
    test_adamw(0, 1.0);
    test_adamw(1, 0.25);
    test_schedule();
    test_clip_and_checks();
    if (fails) {
        printf("test_optim: %d check(s) FAILED\n", fails);
        return 1;
    }
    printf("test_optim: all checks passed\n");
    return 0;
}
