// bench-step-watchdog.c: `moe bench step --watchdog` — what the job watchdog (comm/watchdog.h)
// costs the training step, against its reference: the same step without it, in the same process
// and run. Off and on blocks alternate ABBA (off on, on off, off on, …) so drift on a shared
// machine hits both alike; each on-block starts the watchdog (its thread, its UDP heartbeats) and
// stops it after, and brackets every step with enter/leave as moe_train_loop does. Two figures:
// the mean step (throughput; what a quiet machine gives) and the median step, which bursts of
// other load on a shared machine, hitting a minority of the steps, do not move.
#include "bench-impl.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int moe_bench_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The median of x (n >= 1), through scratch (n).
static double moe_bench_median(const double *x, int n, double *scratch) {
    memcpy(scratch, x, (size_t)n * sizeof *x);
    qsort(scratch, (size_t)n, sizeof *scratch, moe_bench_cmp_double);
    return n & 1 ? scratch[n / 2] : 0.5 * (scratch[n / 2 - 1] + scratch[n / 2]);
}

// The standard error of the mean of d (n >= 2).
static double moe_bench_stderr(const double *d, int n) {
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += d[i] / n;
    for (int i = 0; i < n; i++) v += (d[i] - m) * (d[i] - m) / (n - 1);
    return sqrt(v / n);
}

moe_status moe_bench_step_watchdog(const Moe__Config *cfg, const moe_comm *c, int steps_per_block,
                                   int blocks, int json) {
    const int W = moe_comm_size(c, MOE_COMM_WORLD), ep = moe_comm_size(c, MOE_COMM_EP);
    const moe_watchdog_params wp = moe_train_watchdog_params(cfg);
    if (W < 2)
        return moe_set_error(MOE_ELAYOUT,
                             "--watchdog needs >= 2 ranks: a world of one rank runs no watchdog "
                             "(by design: there is no other rank to lose), so there is no cost to "
                             "measure; run it under mpirun -np 2 (or more)");
    if (!wp.enabled)
        return moe_set_error(MOE_EINVAL,
                             "--watchdog: watchdog.enabled is false in the config, so there is no "
                             "watchdog to measure; leave it on (the default)");
    if ((int64_t)blocks * steps_per_block > (1 << 24))
        return moe_set_error(MOE_EINVAL,
                             "--watchdog: --blocks %d x --steps %d is more than 16777216 timed "
                             "steps per variant; lower one of them",
                             blocks, steps_per_block);
    const int B = blocks, N = steps_per_block; // N steps per block, B blocks per variant
    moe_bench_stepper *s = NULL;
    moe_watchdog *w = NULL;
    double *t = moe_xcalloc((size_t)B * 2 * (size_t)N, sizeof *t); // (B, 2, N): [p][0] off, [1] on
    moe_status st = moe_bench_stepper_create(cfg, c, &s);
    if (!st) st = moe_bench_stepper_run(s, 2, NULL, NULL, NULL, NULL); // warmup, watchdog off
    for (int p = 0; p < B && !st; p++)
        for (int h = 0; h < 2 && !st; h++) {
            const int on = (p & 1) ? h == 0 : h == 1; // ABBA: off on, on off, …
            if (on && !(st = moe_comm_agree(c, moe_watchdog_start(c, &wp, &w))) && !w)
                st = moe_set_error(MOE_EINVAL, "--watchdog: moe_watchdog_start gave no watchdog");
            if (!st) st = moe_bench_stepper_run(s, N, w, NULL, NULL, &t[(size_t)(2 * p + on) * N]);
            moe_watchdog_stop(w); // not timed; NULL-safe
            w = NULL;
        }
    moe_bench_stepper_free(s);
    // Steps start together (a barrier before each): the slowest rank's time is the step's.
    if (!st) st = moe_comm_allreduce_f64(c, MOE_COMM_WORLD, t, (size_t)B * 2 * N, MOE_COMM_MAX);
    if (st) {
        free(t);
        return st;
    }
    // Per variant v: total, the range of the block means, the median over all its steps. Per pair
    // of adjacent blocks p: on / off − 1 of the block means and of the block medians, whose spread
    // over the pairs gives each overhead its standard error.
    double *all = moe_xcalloc((size_t)B * N, sizeof *all),
           *scr = moe_xcalloc((size_t)B * N, sizeof *scr);
    double *d_mean = moe_xcalloc((size_t)B, sizeof *d_mean);
    double *d_med = moe_xcalloc((size_t)B, sizeof *d_med);
    double tot[2] = {0, 0}, lo[2] = {INFINITY, INFINITY}, hi[2] = {0, 0}, med[2];
    for (int v = 0; v < 2; v++) {
        for (int p = 0; p < B; p++) {
            double sum = 0;
            for (int i = 0; i < N; i++) sum += all[p * N + i] = t[(size_t)(2 * p + v) * N + i];
            tot[v] += sum;
            lo[v] = 1e3 * sum / N < lo[v] ? 1e3 * sum / N : lo[v];
            hi[v] = 1e3 * sum / N > hi[v] ? 1e3 * sum / N : hi[v];
        }
        med[v] = moe_bench_median(all, B * N, scr);
    }
    for (int p = 0; p < B; p++) {
        const double *off = &t[(size_t)(2 * p) * N], *on = &t[(size_t)(2 * p + 1) * N];
        double so = 0, sn = 0;
        for (int i = 0; i < N; i++) so += off[i], sn += on[i];
        d_mean[p] = sn / so - 1;
        const double mo = moe_bench_median(off, N, scr);
        d_med[p] = moe_bench_median(on, N, scr) / mo - 1;
    }
    const double se_mean = moe_bench_stderr(d_mean, B), se_med = moe_bench_stderr(d_med, B);
    free(t);
    free(all);
    free(scr);
    free(d_mean);
    free(d_med);
    const double n_steps = (double)B * N;
    const double tokens = (double)cfg->train->global_batch * cfg->train->seq_len;
    const double ms_off = 1e3 * tot[0] / n_steps, ms_on = 1e3 * tot[1] / n_steps;
    const double tps_off = tokens * n_steps / tot[0], tps_on = tokens * n_steps / tot[1];
    const double over = tot[1] / tot[0] - 1, over_med = med[1] / med[0] - 1;
    const char *name = cfg->name ? cfg->name : "model";
    if (json)
        moe_comm_printf(c,
                        "{\"bench\":\"step_watchdog\",\"model\":\"%s\",\"world\":%d,\"ep\":%d,"
                        "\"tokens_per_step\":%.0f,\"blocks\":%d,\"steps_per_block\":%d,"
                        "\"heartbeat\":%g,\"off_step_seconds\":%.6f,\"on_step_seconds\":%.6f,"
                        "\"off_tokens_per_s\":%.1f,\"on_tokens_per_s\":%.1f,"
                        "\"off_median_step_seconds\":%.6f,\"on_median_step_seconds\":%.6f,"
                        "\"off_block_ms\":[%.3f,%.3f],\"on_block_ms\":[%.3f,%.3f],"
                        "\"overhead_pct\":%.4f,\"overhead_stderr_pct\":%.4f,"
                        "\"overhead_median_pct\":%.4f,\"overhead_median_stderr_pct\":%.4f}\n",
                        name, W, ep, tokens, B, N, wp.heartbeat, ms_off / 1e3, ms_on / 1e3, tps_off,
                        tps_on, med[0], med[1], lo[0], hi[0], lo[1], hi[1], 100 * over,
                        100 * se_mean, 100 * over_med, 100 * se_med);
    else
        moe_comm_printf(
            c,
            "moe bench step --watchdog: %s, world %d, ep %d, %d x %lld tokens per step\n"
            "  watchdog off (reference): %7.2f ms/step, %6.0f tokens/s; median step %7.2f ms; "
            "blocks %.2f-%.2f ms/step\n"
            "  watchdog on:              %7.2f ms/step, %6.0f tokens/s; median step %7.2f ms; "
            "blocks %.2f-%.2f ms/step\n"
            "  overhead (on/off - 1): %+.2f %% +- %.2f %% (mean step), %+.2f %% +- %.2f %% "
            "(median step); target <= 1 %%\n"
            "  (%d blocks of %d steps per variant, off and on alternating ABBA after 2 warmup "
            "steps; a step is watchdog enter, moe_train_step, leave, max over ranks;\n"
            "  +- is the standard error over the %d adjacent off/on block pairs; on a shared "
            "machine read the median step; heartbeat %g s)\n",
            name, W, ep, cfg->train->global_batch, (long long)cfg->train->seq_len, ms_off, tps_off,
            1e3 * med[0], lo[0], hi[0], ms_on, tps_on, 1e3 * med[1], lo[1], hi[1], 100 * over,
            100 * se_mean, 100 * over_med, 100 * se_med, B, N, B, wp.heartbeat);
    return MOE_OK;
}
