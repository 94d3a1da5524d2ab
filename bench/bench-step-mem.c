// bench-step-mem.c: the O(total parameters) part of `moe bench step` against a memory-bandwidth
// reference measured in the same run — a STREAM-style triad, then moe_optim_adamw_step and
// moe_model_zero_grads themselves (never copies) over the stepper's own model buffers, after its
// last timed step (the model is freed next, so no step sees the changed state; no extra memory).
#include "bench-impl.h"
#include "optim.h"
#include "train.h"

// Triad arrays: 3 x 64 MiB of float, far past any last-level cache of a node.
#define MOE_TRIAD_N ((size_t)16 << 20)

// One triad pass; out of line so the stores cannot be proven dead before the caller's checksum.
__attribute__((noinline)) static void moe_bench_triad_pass(float *restrict a,
                                                           const float *restrict b,
                                                           const float *restrict c, float s,
                                                           size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
}

double moe_bench_triad_gbs(int reps) {
    const size_t n = MOE_TRIAD_N;
    float *a = moe_xalloc_aligned(n * sizeof(float));
    float *b = moe_xalloc_aligned(n * sizeof(float));
    float *c = moe_xalloc_aligned(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = 0.0f, b[i] = 1.0f, c[i] = 2.0f; // fault the pages in
    double best = 1e30, sink = 0;
    for (int r = 0; r <= reps; r++) { // pass 0 warms up
        const double t0 = moe_clock_seconds();
        moe_bench_triad_pass(a, b, c, 0.5f, n);
        const double dt = moe_clock_seconds() - t0;
        sink += a[(size_t)r * 4099 % n];
        if (r > 0 && dt < best) best = dt;
    }
    MOE_ASSERT(sink > 0); // every a[i] = 2: keeps the passes observable
    free(a);
    free(b);
    free(c);
    return 12.0 * (double)n / best / 1e9; // reads b, c, writes a: 12 bytes per element
}

moe_status moe_bench_step_mem(moe_bench_stepper *s, const Moe__Config *cfg, const moe_comm *c,
                              int reps, moe_bench_mem *out) {
    moe_model *m = moe_bench_stepper_model(s);
    const moe_adamw_params ap = moe_optim_adamw_from_config(cfg->train);
    const moe_lr_schedule ls = moe_optim_schedule_from_config(cfg->train);
    const int64_t n = m->n_train; // the floats AdamW updates (n_params without LoRA)
    out->n_params = n;
    moe_status st;
    // AdamW over the whole buffer in one call (the step calls it per tensor, same bytes).
    if (c && (st = moe_comm_barrier(c, MOE_COMM_WORLD))) return st;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        const int64_t t = 1000 + r; // past warmup, as late in a run
        double sums[2] = {0, 0};
        const double t0 = moe_clock_seconds();
        moe_optim_adamw_step(m->params, m->adam_m, m->adam_v, m->grads, n, &ap, t,
                             moe_optim_lr(t, &ls), 1, 1.0, sums);
        const double dt = moe_clock_seconds() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    out->adamw_gbs = 28.0 * (double)n / best / 1e9; // reads w, m, v, g; writes w, m, v
    if (c && (st = moe_comm_barrier(c, MOE_COMM_WORLD))) return st;
    best = 1e30;
    int64_t zeroed = 0;
    for (int r = 0; r <= reps; r++) {
        const double t0 = moe_clock_seconds();
        zeroed = moe_model_zero_grads(m);
        const double dt = moe_clock_seconds() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    out->zeroed = zeroed;
    out->zero_gbs = 4.0 * (double)zeroed / best / 1e9; // writes the part of g it zeroes
    return MOE_OK;
}
