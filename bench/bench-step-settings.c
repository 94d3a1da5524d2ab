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
    int n_moe;           // MoE layers of the model
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
    if (s) row->n_moe = moe_bench_stepper_model(s)->n_moe;
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

// What the link between the nodes needs for a step's exchange, measured in the same run with raw
// MPI over the EP group: `rounds` message rounds (7 per MoE layer in the plain exchange: two
// routing-statistics all-reduces, the counts, dispatch and combine forward, two payloads
// backward) at the latency of one, plus the step's inter-node bytes of a rank sent in one raw
// all-to-all.
typedef struct {
    int remote;      // EP peers of this rank on other nodes (0: one node, nothing measured)
    int rounds;      // message rounds per step
    double per_peer; // bytes to each peer in the bulk all-to-all
    double round, bulk;
} moe_bench_link;

static moe_status moe_bench_link_measure(const moe_comm *c, double inter_per_rank, int rounds,
                                         moe_bench_link *lk) {
    const int P = moe_comm_size(c, MOE_COMM_EP), me = moe_comm_rank(c, MOE_COMM_WORLD);
    for (int r = 0; r < P; r++)
        lk->remote += moe_comm_node_of(c, moe_comm_world_rank_of(c, MOE_COMM_EP, r)) !=
                      moe_comm_node_of(c, me);
    lk->rounds = rounds;
    if (!lk->remote || inter_per_rank <= 0) return MOE_OK;
    lk->per_peer = inter_per_rank / lk->remote;
    // The payload in the step's own pieces: 4 all-to-alls per MoE layer (rounds / 7 * 4).
    const int msgs = rounds >= 7 ? rounds / 7 * 4 : 1;
    return moe_comm_link_probe(c, MOE_COMM_EP, (size_t)lk->per_peer, msgs, 5, &lk->round,
                               &lk->bulk);
}

// Seconds the link needs for a setting that sends inter_per_rank bytes per rank and step.
static double moe_bench_link_need(const moe_bench_link *lk, double inter_per_rank) {
    if (!lk->remote || lk->per_peer <= 0) return 0;
    return lk->rounds * lk->round + lk->bulk * inter_per_rank / (lk->per_peer * lk->remote);
}

static void moe_bench_link_print(const moe_comm *c, const moe_bench_link *lk,
                                 const moe_bench_setting *set, const moe_bench_srow *row, int n,
                                 int W, int rounds) {
    if (!lk->remote) {
        moe_comm_printf(c, "  link: every EP peer on this node (no link between nodes to judge)\n");
        return;
    }
    moe_comm_printf(c,
                    "  link (raw MPI over the EP group, this run): a message round %.3f ms; "
                    "%.0f bytes to each of %d peer(s) on other nodes (in %d all-to-alls, as the "
                    "step's payloads) in %.2f ms (%.1f MB/s per rank)\n  exchange per step vs what "
                    "the link needs (%d rounds x %.3f ms + the "
                    "setting's inter-node bytes at that rate):\n",
                    1e3 * lk->round, lk->per_peer, lk->remote,
                    lk->rounds >= 7 ? lk->rounds / 7 * 4 : 1, 1e3 * lk->bulk,
                    lk->per_peer * lk->remote / lk->bulk / 1e6, lk->rounds, 1e3 * lk->round);
    for (int i = 0; i < n; i++) {
        if (row[i].skip) continue;
        const double ex = row[i].exch / rounds, need = moe_bench_link_need(lk, row[i].inter / W);
        moe_comm_printf(c, "    %-16s exchange %8.2f ms, link needs %8.2f ms: %.2fx\n", set[i].name,
                        1e3 * ex, 1e3 * need, need > 0 ? ex / need : 0);
    }
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
    moe_bench_link lk = {0};
    if ((st = moe_bench_link_measure(c, row[0].inter / W, 7 * row[0].n_moe, &lk))) goto done;
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
                            "\"changes_results\":%s,\"exchange_seconds\":%.9g,"
                            "\"link_need_seconds\":%.9g}",
                            i ? "," : "", set[i].name, q->seconds, tok / q->seconds,
                            i ? ref / q->seconds : 1.0, q->exch / q->sum_s, q->inter / tok,
                            q->intra / tok, q->loss, set[i].s.bf16 ? "true" : "false",
                            q->exch / rounds, moe_bench_link_need(&lk, q->inter / W));
        }
        moe_comm_printf(c,
                        "],\"link\":{\"remote_peers\":%d,\"round_seconds\":%.9g,"
                        "\"bytes_per_peer\":%.0f,\"bulk_seconds\":%.9g,\"rounds_per_step\":%d}}\n",
                        lk.remote, lk.round, lk.per_peer, lk.bulk, lk.rounds);
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
    moe_bench_link_print(c, &lk, set, row, n, W, rounds);
done:
    for (int i = 0; i < n; i++) free(row[i].round_s);
    free(row);
    return st;
}
