// bench-step.c: `moe bench step` — whole training steps of a model (default: the shape of
// examples/tiny-moe.json, built in) on the world it is launched at, on synthetic tokens so no data
// file is needed. The step timed is moe_train_step itself (trainer/train.h: the step of `moe
// train`, with its LR schedule, clipping, non-finite check and bias update), never a copy. Reports
// tokens/s and the shares of compute, exchange (MoE all-to-alls and routing-statistics
// all-reduces) and all-reduce (gradient sync and the step's agreed reduction), then the
// optimizer's and gradient zeroing's GB/s next to a triad (bench-step-mem.c) and the slowest
// rank's step by phase (moe_step_phases, measured inside the step); with --watchdog,
// the job watchdog's cost instead (bench-step-watchdog.c). The step session: bench-step-run.c.
#include "config.h"
#include "bench-impl.h"
#include "moe-args.h"
#include "train.h"

#include <cblas.h>
#include <string.h>

static const char *const moe_tiny_sets[] = {"name=tiny-moe",         "model.vocab_size=256",
                                            "model.d_model=128",     "model.n_layers=4",
                                            "model.n_heads=4",       "model.d_ff=512",
                                            "model.n_experts=8",     "model.top_k=2",
                                            "model.expert_d_ff=256", "model.first_dense_layers=1",
                                            "train.global_batch=16", "train.seq_len=64"};

// The phases of the step (train.h, moe_step_phases), in print order.
#define MOE_BENCH_NPHASE 8
static const char *const moe_phase_names[MOE_BENCH_NPHASE] = {
    "attention", "router", "dispatch", "experts", "combine", "dense", "sync", "optimizer"};

// The slowest rank's step split into phases, seconds per step: ph (MOE_BENCH_NPHASE), *slowest
// its world rank. The slowest rank (largest Σ step seconds) is the step's critical path; its
// phases are disjoint parts of its step, so they add up to at most the step time (a max per
// phase over ranks would count one rank's compute and another's wait for it twice). Collective.
static moe_status moe_bench_step_phases(const moe_comm *c, const moe_bench_step_times *t, int steps,
                                        double *ph, int *slowest) {
    const int W = moe_comm_size(c, MOE_COMM_WORLD), me = moe_comm_rank(c, MOE_COMM_WORLD);
    const int n = MOE_BENCH_NPHASE + 1;
    double *all = moe_xcalloc((size_t)n * (size_t)W, sizeof *all);
    const moe_step_phases *s = &t->phases;
    const moe_model_phases *p = &s->model;
    const double mine[MOE_BENCH_NPHASE + 1] = {t->seconds,  p->attention, p->router,
                                               p->dispatch, p->experts,   p->combine,
                                               p->dense,    s->sync,      s->optimizer};
    memcpy(all + (size_t)me * n, mine, sizeof mine);
    moe_status st = moe_comm_allreduce_f64(c, MOE_COMM_WORLD, all, (size_t)n * W, MOE_COMM_SUM);
    int r = 0;
    for (int q = 1; q < W; q++)
        if (all[(size_t)q * n] > all[(size_t)r * n]) r = q;
    for (int k = 0; k < MOE_BENCH_NPHASE; k++) ph[k] = all[(size_t)r * n + 1 + k] / steps;
    *slowest = r;
    free(all);
    return st;
}

// The timed part of `moe bench step`: 2 warmup steps, `steps` timed ones, then the step's
// O(total parameters) part (AdamW, gradient zeroing) on the same model next to the triad
// (bench-step-mem.c), the report (rank 0).
static moe_status moe_bench_step_report(const Moe__Config *cfg, const moe_comm *c, int steps,
                                        int json) {
    moe_bench_step_times t = {0};
    moe_bench_mem mem = {0};
    moe_bench_stepper *s = NULL;
    moe_status st = moe_bench_stepper_create(cfg, c, &s);
    if (!st) st = moe_bench_stepper_run(s, 2, NULL, NULL, NULL, NULL);
    if (!st) st = moe_bench_stepper_run(s, steps, NULL, NULL, &t, NULL);
    if (!st) st = moe_bench_step_mem(s, cfg, c, 5, &mem);
    moe_bench_stepper_free(s); // before the triad's 192 MiB: peak memory stays the step's own
    if (st) return st;
    double ph[MOE_BENCH_NPHASE];
    int slowest = 0;
    if ((st = moe_bench_step_phases(c, &t, steps, ph, &slowest))) return st;
    if ((st = moe_comm_barrier(c, MOE_COMM_WORLD))) return st; // every rank's triad at once
    const double triad = moe_bench_triad_gbs(5);
    const int W = moe_comm_size(c, MOE_COMM_WORLD), ep = moe_comm_size(c, MOE_COMM_EP);
    const int64_t S = cfg->train->seq_len;
    // Rank 0's view; the slowest rank decides the step, so take the max of the totals.
    double v[3] = {t.seconds, t.exchange_seconds, t.allreduce_seconds};
    if ((st = moe_comm_allreduce_f64(c, MOE_COMM_WORLD, v, 3, MOE_COMM_MAX))) return st;
    // Bandwidths per rank, all ranks at once: the slowest rank's.
    double bw[3] = {triad, mem.adamw_gbs, mem.zero_gbs};
    if ((st = moe_comm_allreduce_f64(c, MOE_COMM_WORLD, bw, 3, MOE_COMM_MIN))) return st;
    const double tps = (double)cfg->train->global_batch * S * steps / v[0];
    const double sh_ex = v[1] / v[0], sh_red = v[2] / v[0];
    const double sh_cmp = 1.0 - sh_ex - sh_red > 0 ? 1.0 - sh_ex - sh_red : 0;
    const double pct_adamw = 100 * bw[1] / bw[0], pct_zero = 100 * bw[2] / bw[0];
    const double step_s = v[0] / steps;
    double ph_sum = 0;
    for (int k = 0; k < MOE_BENCH_NPHASE; k++) ph_sum += ph[k];
    const double other = step_s - ph_sum > 0 ? step_s - ph_sum : 0;
    char pj[512];
    int o = snprintf(pj, sizeof pj, "\"phases\":{");
    for (int k = 0; k < MOE_BENCH_NPHASE; k++)
        o += snprintf(pj + o, sizeof pj - (size_t)o, "%s\"%s\":%.6f", k ? "," : "",
                      moe_phase_names[k], ph[k]);
    snprintf(pj + o, sizeof pj - (size_t)o, ",\"other\":%.6f},\"phases_rank\":%d,", other, slowest);
    if (json)
        moe_comm_printf(c,
                        "{\"bench\":\"step\",\"model\":\"%s\",\"world\":%d,\"ep\":%d,"
                        "\"tokens_per_step\":%lld,\"steps\":%d,\"step_seconds\":%.6f,"
                        "\"tokens_per_s\":%.1f,\"compute_share\":%.4f,\"exchange_share\":%.4f,"
                        "\"allreduce_share\":%.4f,%s\"local_params\":%lld,\"triad_gbs\":%.3f,"
                        "\"optimizer_gbs\":%.3f,\"optimizer_triad_pct\":%.2f,"
                        "\"zero_grads_gbs\":%.3f,\"zero_grads_triad_pct\":%.2f,"
                        "\"zero_grads_floats\":%lld}\n",
                        cfg->name ? cfg->name : "model", W, ep,
                        (long long)(cfg->train->global_batch * S), steps, v[0] / steps, tps, sh_cmp,
                        sh_ex, sh_red, pj, (long long)mem.n_params, bw[0], bw[1], pct_adamw, bw[2],
                        pct_zero, (long long)mem.zeroed);
    else {
        moe_comm_printf(c,
                        "moe bench step: %s, world %d, ep %d, %d x %lld tokens per step\n"
                        "  %.1f ms/step, %.0f tokens/s | compute %.0f%%, exchange %.0f%%, "
                        "grad all-reduce %.0f%% (max over ranks, %d steps after 2 warmup)\n"
                        "  memory (per rank, all ranks at once, slowest rank; %lld local params):\n"
                        "  triad: %.2f GB/s (3 x 64 MiB, 12 bytes/element, best of 5)\n"
                        "  optimizer: %.2f GB/s = %.0f %% of the triad (%.2f GB/s)\n"
                        "  zero grads: %.2f GB/s = %.0f %% of the triad (%.2f GB/s), over "
                        "%lld of them (the EP layers' experts' are written by backward)\n",
                        cfg->name ? cfg->name : "model", W, ep, cfg->train->global_batch,
                        (long long)S, 1e3 * v[0] / steps, tps, 100 * sh_cmp, 100 * sh_ex,
                        100 * sh_red, steps, (long long)mem.n_params, bw[0], bw[1], pct_adamw,
                        bw[0], bw[2], pct_zero, bw[0], (long long)mem.zeroed);
        moe_comm_printf(c, "  phases (rank %d, the slowest; ms/step, %% of the step):\n", slowest);
        for (int k = 0; k < MOE_BENCH_NPHASE; k++)
            moe_comm_printf(c, "    %-10s %8.2f ms %5.1f %%\n", moe_phase_names[k], 1e3 * ph[k],
                            100 * ph[k] / step_s);
        moe_comm_printf(c, "    %-10s %8.2f ms %5.1f %%\n", "other", 1e3 * other,
                        100 * other / step_s);
    }
    return MOE_OK;
}

moe_status moe_bench_config(const char *path, const char **sets, int n_sets, int W,
                            Moe__Config **out) {
    moe_status st = MOE_OK;
    if (path) return moe_config_load_with(path, sets, n_sets, 0, out);
    Moe__Config *cfg = moe_config_new_default();
    for (size_t i = 0; i < sizeof moe_tiny_sets / sizeof *moe_tiny_sets && !st; i++)
        st = moe_config_set(cfg, moe_tiny_sets[i]);
    char ep[48];
    snprintf(ep, sizeof ep, "parallel.ep_size=%d", cfg->model->n_experts % W == 0 ? W : 1);
    if (!st) st = moe_config_set(cfg, ep);
    for (int i = 0; i < n_sets && !st; i++) st = moe_config_set(cfg, sets[i]);
    if (st) {
        moe_config_free(cfg);
        return st;
    }
    *out = cfg;
    return MOE_OK;
}

int moe_bench_step(int argc, char **argv) {
    int json = 0, steps = 10, watchdog = 0, blocks = 0; // blocks 0: not given (10)
    int settings = 0, rounds = 0, node_size = 0;        // rounds 0: not given (3)
    const char *settings_list = NULL;
    argc = moe_bench_settings_argv(argc, argv, &settings_list);
    const char *path = NULL, *config_opt = NULL;
    moe_args_list set_args = {0};
    const moe_arg_pos pos[] = {
        {"CONFIG", MOE_ARG_STRING, &path, 0, 1,
         "the model's config (default: the examples/tiny-moe.json shape,\n"
         "built in)"},
    };
    const moe_arg_opt opts[] = {
        MOE_OPT_FLAG("--json", &json, "one JSON object"),
        MOE_OPT_LIST("--set", &set_args, "a.b=v", "override a config field (as moe config --set)"),
        MOE_OPT_INT("--steps", &steps, "N", 1, 1 << 24,
                    "timed steps after 2 warmup (with --watchdog: per block)"),
        MOE_OPT_FLAG("--watchdog", &watchdog,
                     "the job watchdog's cost: the step without and with it, in\n"
                     "interleaved blocks; needs >= 2 ranks (exit 2 at one)"),
        MOE_OPT_INT("--blocks", &blocks, "B", 2, 1 << 16,
                    "with --watchdog: blocks of --steps steps per variant,\n"
                    "off and on alternating (off on, on off, ...); default 10"),
        MOE_OPT_FLAG("--settings", &settings,
                     "[LIST] the exchange settings side by side: step time and\n"
                     "speedup over plain flat measured in the same run, for each of\n"
                     "LIST (comma list: flat, chunksN, hier, dedup-rank, dedup-node,\n"
                     "bf16, joined by '+'); default flat, chunks2, chunks4, chunks8,\n"
                     "hier, dedup-rank, dedup-node, bf16, chunks4+bf16, hier+bf16"),
        MOE_OPT_INT("--rounds", &rounds, "R", 1, 1 << 16,
                    "with --settings: rounds of (1 untimed + --steps timed) steps\n"
                    "per setting, order rotated per round; default 3"),
        MOE_OPT_INT("--node-size", &node_size, "N", 1, 1 << 24,
                    "pretend every N consecutive ranks form a node (inter-node\n"
                    "bytes, hier and dedup-node on one machine)"),
        MOE_OPT_STRING("--config", &config_opt, "FILE", "an alias of CONFIG (the older spelling)"),
    };
    const moe_args_spec spec = {
        "moe bench step",
        "Times N training steps of the model of CONFIG at this launch's world size: run it\n"
        "alone and under mpirun -np 2 to compare. Synthetic tokens; parallel.ep_size from\n"
        "the config (default: all ranks in one EP group when n_experts allows).\n"
        "Then AdamW's and gradient zeroing's GB/s next to a STREAM-style triad, and the\n"
        "slowest rank's step by phase (attention, router, dispatch, experts, combine,\n"
        "dense, gradient sync, optimizer, other) in ms/step and % of the step.\n"
        "--watchdog times the same step with the job watchdog off (the reference) and on\n"
        "(its thread, heartbeats, enter/leave per step), prints both and the overhead in %.\n"
        "--settings [LIST] times the step at each exchange setting instead (see --settings):\n"
        "ms/step, tokens/s, speedup over flat of the same run, exchange share, bytes per\n"
        "token inside and across nodes; settings that are the same thing or refused at this\n"
        "layout are listed as skipped with the reason.",
        pos,
        MOE_ARGS_N(pos),
        opts,
        MOE_ARGS_N(opts),
        NULL};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    if (path && config_opt) {
        fprintf(stderr, "moe bench step: CONFIG given twice ('%s' and --config %s)\n", path,
                config_opt);
        moe_args_free(&spec);
        return MOE_EXIT_USAGE;
    }
    if (blocks && !watchdog) {
        fprintf(stderr, "moe bench step: --blocks %d applies to --watchdog only\n", blocks);
        moe_args_free(&spec);
        return MOE_EXIT_USAGE;
    }
    if ((rounds || settings_list) && !settings) {
        fprintf(stderr, "moe bench step: --rounds applies to --settings only\n");
        moe_args_free(&spec);
        return MOE_EXIT_USAGE;
    }
    if (settings && watchdog) {
        fprintf(stderr, "moe bench step: --settings and --watchdog are separate benchmarks: "
                        "give one\n");
        moe_args_free(&spec);
        return MOE_EXIT_USAGE;
    }
    if (!blocks) blocks = 10;
    if (!rounds) rounds = 3;
    if (!path) path = config_opt;
    const char **sets = moe_xcalloc((size_t)set_args.n + 1, sizeof *sets);
    int n_sets = 0;
    for (int i = 0; i < set_args.n; i++) sets[n_sets++] = set_args.v[i];
    moe_args_free(&spec);
    if (moe_comm_init(NULL, NULL)) {
        fprintf(stderr, "moe bench step: %s\n", moe_last_error());
        free(sets);
        return MOE_EXIT_FAILURE;
    }
    moe_status st = MOE_OK;
    Moe__Config *cfg = NULL;
    moe_comm *c = NULL;
    // World size first (a plain world), then the EP layout of the config.
    moe_comm_params p0 = {.ep_size = 1, .quiet = 1};
    if ((st = moe_comm_create(&p0, &c))) goto done;
    const int W = moe_comm_size(c, MOE_COMM_WORLD);
    moe_comm_free(c);
    c = NULL;
    if ((st = moe_bench_config(path, sets, n_sets, W, &cfg))) goto done;
    moe_comm_params cp = {.ep_size = cfg->parallel->ep_size,
                          .n_experts = cfg->model->n_experts,
                          .fake_node_size = node_size,
                          .quiet = 1};
    if ((st = moe_comm_create(&cp, &c))) goto done;
    if (cfg->train->global_batch % W) {
        st = moe_set_error(MOE_ELAYOUT, "train.global_batch %d not divisible by %d ranks",
                           cfg->train->global_batch, W);
        goto done;
    }
    if (!getenv("OPENBLAS_NUM_THREADS")) {
        int n = 1;
        if (moe_comm_blas_threads(c, &n) == MOE_OK) openblas_set_num_threads(n);
    }
    st = watchdog   ? moe_bench_step_watchdog(cfg, c, steps, blocks, json)
         : settings ? moe_bench_step_settings(cfg, c, settings_list, steps, rounds, json)
                    : moe_bench_step_report(cfg, c, steps, json);
done:
    if (st) fprintf(stderr, "moe bench step: %s\n", moe_last_error());
    free(sets);
    moe_config_free(cfg);
    moe_comm_free(c);
    moe_comm_finalize();
    return moe_exit_code(st);
}
