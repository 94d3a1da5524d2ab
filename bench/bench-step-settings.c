// bench-step-settings.c: `moe bench step --settings [LIST]` — the whole training step
// (moe_train_step, through the bench stepper) at every exchange setting of LIST, judged by the
// step time next to plain flat measured in the same run. Rounds interleave the settings (order
// rotated each round) so drift of a shared machine spreads over all of them; the figure is the
// median over rounds of each round's mean step (slowest rank). One model at a time: each
// (round, setting) builds its stepper from a copy of the config and frees it after.
#include "bench-impl.h"
#include "config.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *skip;    // why not measured (NULL: measured)
    double *round_s;     // (rounds) mean step seconds of each round, slowest rank
    double seconds;      // median over rounds
    double exch, sum_s;  // Σ over rounds of exchange seconds per step (slowest rank), of round_s
    double intra, inter; // world's expert-exchange bytes per step, inside / across nodes
    double loss;         // global loss of the last timed step (round 0)
} moe_bench_srow;

// One round of setting sc: 1 untimed + steps timed steps of a fresh stepper. Collective.
static moe_status moe_bench_setting_round(const Moe__Config *base, const moe_comm *c,
                                          const moe_xsetting *sx, int steps, int round,
                                          moe_bench_srow *row) {
    Moe__Config *cfg = moe_config_copy(base);
    moe_xsetting_to_config(sx, cfg->parallel);
    moe_bench_stepper *s = NULL;
    moe_bench_step_times t = {0};
    double *loss = moe_xcalloc((size_t)steps, sizeof *loss);
    moe_status st = moe_bench_stepper_create(cfg, c, &s);
    if (!st) st = moe_bench_stepper_run(s, 1, NULL, NULL, NULL, NULL);
    if (!st) st = moe_bench_stepper_run(s, steps, NULL, loss, &t, NULL);
    moe_bench_stepper_free(s);
    double v[2] = {t.seconds / steps, t.exchange_seconds / steps};
    if (!st) st = moe_comm_allreduce_f64(c, MOE_COMM_WORLD, v, 2, MOE_COMM_MAX);
    if (!st) {
        row->round_s[round] = v[0];
        row->exch += v[1], row->sum_s += v[0];
        row->intra = t.bytes_intranode / steps, row->inter = t.bytes_internode / steps;
        if (round == 0) row->loss = loss[steps - 1];
    }
    free(loss);
    moe_config_free(cfg);
    return st;
}

moe_status moe_bench_step_settings(const Moe__Config *cfg, const moe_comm *c, const char *list,
                                   int steps, int rounds, int json) {
    moe_bench_setting set[MOE_BENCH_SETTINGS_MAX];
    int n = 0;
    moe_status st = moe_bench_settings_list(list, set, MOE_BENCH_SETTINGS_MAX, &n);
    if (st) return st;
    const int W = moe_comm_size(c, MOE_COMM_WORLD), ep = moe_comm_size(c, MOE_COMM_EP);
    moe_bench_srow *row = moe_xcalloc((size_t)n, sizeof *row);
    // Refusals of the config's own validation (the flat copy must pass for it to be a judge).
    Moe__Config *probe = moe_config_copy(cfg);
    moe_xsetting_to_config(&set[0].s, probe->parallel);
    const int validate = moe_config_validate(probe, W) == MOE_OK;
    static char why[MOE_BENCH_SETTINGS_MAX][200];
    for (int i = 0; i < n; i++) {
        row[i].round_s = moe_xcalloc((size_t)rounds, sizeof(double));
        row[i].skip = i ? moe_bench_setting_skip(&set[i].s, c) : NULL;
        if (!row[i].skip && validate && i) {
            moe_xsetting_to_config(&set[i].s, probe->parallel);
            if (moe_config_validate(probe, W)) {
                snprintf(why[i], sizeof why[i], "refused: %s", moe_last_error());
                row[i].skip = why[i];
            }
        }
    }
    moe_config_free(probe);
    int n_run = 0, *order = moe_xcalloc((size_t)n, sizeof *order);
    for (int i = 0; i < n; i++)
        if (!row[i].skip) order[n_run++] = i;
    for (int r = 0; r < rounds && !st; r++)
        for (int k = 0; k < n_run && !st; k++) {
            const int i = order[(k + r) % n_run];
            st = moe_bench_setting_round(cfg, c, &set[i].s, steps, r, &row[i]);
            if (st)
                moe_comm_eprintf(c, "moe bench step --settings: setting %s: %s\n", set[i].name,
                                 moe_last_error());
        }
    free(order);
    if (st) goto done;
    for (int i = 0; i < n; i++)
        if (!row[i].skip) row[i].seconds = moe_bench_settings_median(row[i].round_s, rounds);
    const int64_t tok = (int64_t)cfg->train->global_batch * cfg->train->seq_len;
    const double ref = row[0].seconds;
    const char *model = cfg->name ? cfg->name : "model";
    if (json) {
        moe_comm_printf(c,
                        "{\"bench\":\"step_settings\",\"model\":\"%s\",\"world\":%d,\"ep\":%d,"
                        "\"tokens_per_step\":%lld,\"steps\":%d,\"rounds\":%d,"
                        "\"reference\":\"flat\",\"settings\":[",
                        model, W, ep, (long long)tok, steps, rounds);
        for (int i = 0; i < n; i++) {
            const moe_bench_srow *q = &row[i];
            if (q->skip) {
                moe_comm_printf(c, "%s{\"name\":\"%s\",\"measured\":false,\"skipped\":\"",
                                i ? "," : "", set[i].name);
                for (const char *p = q->skip; *p; p++) // JSON string: escape " and backslash
                    moe_comm_printf(c, "%s%c", *p == '"' || *p == '\\' ? "\\" : "", *p);
                moe_comm_printf(c, "\"}");
                continue;
            }
            moe_comm_printf(c,
                            "%s{\"name\":\"%s\",\"measured\":true,\"step_seconds\":%.6f,"
                            "\"tokens_per_s\":%.1f,\"speedup\":%.4f,\"exchange_share\":%.4f,"
                            "\"internode_bytes_per_token\":%.2f,"
                            "\"intranode_bytes_per_token\":%.2f,\"loss\":%.6f,"
                            "\"changes_results\":%s}",
                            i ? "," : "", set[i].name, q->seconds, tok / q->seconds,
                            i ? ref / q->seconds : 1.0, q->exch / q->sum_s, q->inter / tok,
                            q->intra / tok, q->loss, set[i].s.bf16 ? "true" : "false");
        }
        moe_comm_printf(c, "]}\n");
        goto done;
    }
    moe_comm_printf(c,
                    "moe bench step --settings: %s, world %d, ep %d, %lld tokens per step; %d "
                    "round%s of (1 untimed + %d timed) steps per setting, order rotated each "
                    "round; the median round's mean step of the slowest rank\n",
                    model, W, ep, (long long)tok, rounds, rounds > 1 ? "s" : "", steps);
    moe_comm_printf(c, "  %-16s %9s %10s %8s %9s %11s %11s %10s  %s\n", "setting", "ms/step",
                    "tokens/s", "speedup", "exchange", "inter B/tok", "intra B/tok", "loss",
                    "note");
    for (int i = 0; i < n; i++) {
        const moe_bench_srow *q = &row[i];
        if (q->skip) continue;
        const char *note = i == 0          ? "reference"
                           : set[i].s.bf16 ? "changes results (bf16 payloads)"
                                           : "";
        moe_comm_printf(c, "  %-16s %9.2f %10.0f %7.3fx %8.1f%% %11.1f %11.1f %10.6f%s%s\n",
                        set[i].name, 1e3 * q->seconds, tok / q->seconds, i ? ref / q->seconds : 1.0,
                        100 * q->exch / q->sum_s, q->inter / tok, q->intra / tok, q->loss,
                        *note ? "  " : "", note);
    }
    for (int i = 0; i < n; i++)
        if (row[i].skip) moe_comm_printf(c, "  skipped: %s (%s)\n", set[i].name, row[i].skip);
done:
    for (int i = 0; i < n; i++) free(row[i].round_s);
    free(row);
    return st;
}
