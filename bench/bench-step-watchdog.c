// bench-step-watchdog.c: `moe bench step --watchdog` — what the job watchdog (comm/watchdog.h)
// costs the training step, against its reference: the same step without it, in the same process
// and run. Off and on blocks alternate ABBA (off on, on off, off on, …) so drift on a shared
// machine hits both alike; each on-block starts the watchdog (its thread, its UDP heartbeats) and
// stops it after, and brackets every step with enter/leave as moe_train_loop does.
#include "bench-impl.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>

static int moe_bench_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
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
    moe_bench_stepper *s = NULL;
    moe_watchdog *w = NULL;
    double *t = moe_xcalloc((size_t)blocks * 2, sizeof *t);   // (blocks, 2): [p][0] off, [p][1] on
    double *pair = moe_xcalloc((size_t)blocks, sizeof *pair); // (blocks) on / off - 1 per pair
    moe_status st = moe_bench_stepper_create(cfg, c, &s);
    if (!st) st = moe_bench_stepper_run(s, 2, NULL, NULL, NULL, NULL); // warmup, watchdog off
    for (int p = 0; p < blocks && !st; p++)
        for (int h = 0; h < 2 && !st; h++) {
            const int on = (p & 1) ? h == 0 : h == 1; // ABBA: off on, on off, …
            if (on && !(st = moe_comm_agree(c, moe_watchdog_start(c, &wp, &w))) && !w)
                st = moe_set_error(MOE_EINVAL, "--watchdog: moe_watchdog_start gave no watchdog");
            if (!st) st = moe_bench_stepper_run(s, steps_per_block, w, NULL, NULL, &t[2 * p + on]);
            moe_watchdog_stop(w); // not timed; NULL-safe
            w = NULL;
        }
    moe_bench_stepper_free(s);
    // The slowest rank decides each block.
    if (!st) st = moe_comm_allreduce_f64(c, MOE_COMM_WORLD, t, (size_t)blocks * 2, MOE_COMM_MAX);
    if (st) {
        free(t);
        free(pair);
        return st;
    }
    // Per variant: mean and the range of the blocks' ms/step. Overhead: on / off − 1 of the
    // totals; its noise: the standard error of the per-pair ratios (each pair is adjacent in time);
    // their median too, which one burst of load on a shared machine does not move.
    const double n_steps = (double)blocks * steps_per_block;
    const double tokens = (double)cfg->train->global_batch * cfg->train->seq_len;
    double tot[2] = {0, 0}, lo[2] = {INFINITY, INFINITY}, hi[2] = {0, 0}, sum_d = 0, sum_d2 = 0;
    for (int p = 0; p < blocks; p++) {
        for (int v = 0; v < 2; v++) {
            const double ms = 1e3 * t[2 * p + v] / steps_per_block;
            tot[v] += t[2 * p + v];
            lo[v] = ms < lo[v] ? ms : lo[v];
            hi[v] = ms > hi[v] ? ms : hi[v];
        }
        const double d = t[2 * p + 1] / t[2 * p] - 1;
        sum_d += d;
        sum_d2 += d * d;
        pair[p] = d;
    }
    qsort(pair, (size_t)blocks, sizeof *pair, moe_bench_cmp_double);
    const double med =
        blocks & 1 ? pair[blocks / 2] : 0.5 * (pair[blocks / 2 - 1] + pair[blocks / 2]);
    free(t);
    free(pair);
    const double ms_off = 1e3 * tot[0] / n_steps, ms_on = 1e3 * tot[1] / n_steps;
    const double tps_off = tokens * n_steps / tot[0], tps_on = tokens * n_steps / tot[1];
    const double over = tot[1] / tot[0] - 1, mean_d = sum_d / blocks;
    const double var_d = (sum_d2 - blocks * mean_d * mean_d) / (blocks - 1);
    const double se = sqrt(var_d > 0 ? var_d : 0) / sqrt((double)blocks);
    const char *name = cfg->name ? cfg->name : "model";
    if (json)
        moe_comm_printf(c,
                        "{\"bench\":\"step_watchdog\",\"model\":\"%s\",\"world\":%d,\"ep\":%d,"
                        "\"tokens_per_step\":%.0f,\"blocks\":%d,\"steps_per_block\":%d,"
                        "\"heartbeat\":%g,\"off_step_seconds\":%.6f,\"on_step_seconds\":%.6f,"
                        "\"off_tokens_per_s\":%.1f,\"on_tokens_per_s\":%.1f,"
                        "\"off_block_ms\":[%.3f,%.3f],\"on_block_ms\":[%.3f,%.3f],"
                        "\"overhead_pct\":%.4f,\"overhead_stderr_pct\":%.4f,"
                        "\"overhead_median_pair_pct\":%.4f}\n",
                        name, W, ep, tokens, blocks, steps_per_block, wp.heartbeat, ms_off / 1e3,
                        ms_on / 1e3, tps_off, tps_on, lo[0], hi[0], lo[1], hi[1], 100 * over,
                        100 * se, 100 * med);
    else
        moe_comm_printf(
            c,
            "moe bench step --watchdog: %s, world %d, ep %d, %d x %lld tokens per step\n"
            "  watchdog off (reference): %7.2f ms/step, %8.0f tokens/s (blocks %.2f-%.2f ms/step)\n"
            "  watchdog on:              %7.2f ms/step, %8.0f tokens/s (blocks %.2f-%.2f ms/step)\n"
            "  overhead (on/off - 1): %+.2f %% +- %.2f %% (median pair %+.2f %%, target <= 1 %%)\n"
            "  (%d blocks of %d steps per variant, off and on alternating ABBA after 2 warmup "
            "steps; a step is watchdog enter, moe_train_step, leave; max over ranks per block; "
            "+- is the standard error over the %d adjacent off/on block pairs; heartbeat %g s)\n",
            name, W, ep, cfg->train->global_batch, (long long)cfg->train->seq_len, ms_off, tps_off,
            lo[0], hi[0], ms_on, tps_on, lo[1], hi[1], 100 * over, 100 * se, 100 * med, blocks,
            steps_per_block, blocks, wp.heartbeat);
    return MOE_OK;
}
