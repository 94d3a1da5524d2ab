// bench-experts.c: `moe bench experts` — the expert part of one MoE layer (the experts' forward
// and backward over packed rows, moe_experts_forward / _backward as the layer calls them) at
// several expert counts with the same tokens, so the same FLOPs: with more experts each expert
// gets fewer rows and the weights to stream grow. For each count it times the small-row kernels
// (experts.h) and cblas for every block (the reference) in one run, interleaved round by round,
// and prints medians, the kernels' speedup over cblas, and each count's growth over the first —
// next to the sgemm peak of the same run.
#include "bench-impl.h"
#include "config.h"
#include "experts.h"
#include "moe-args.h"

#include <stdlib.h>
#include <string.h>

#define MOE_BENCH_EXPERTS_MAX 16

// One expert count's buffers: weights and gradients of E experts, pairs spread evenly.
typedef struct {
    int E;
    int64_t rows; // pairs (tokens · top_k)
    moe_experts_params p;
    moe_layer_params lp;
    moe_layer_weights w, g;
    int64_t *off;                                // (E + 1) balanced blocks
    uint8_t *fresh;                              // (E) all 1
    float *x, *dout, *out, *save, *scratch, *dx; // packed rows
    double t[2][64];                             // [cblas, kernels][round] seconds
} moe_bench_ecase;

static moe_status ecase_init(moe_bench_ecase *b, Moe__Config *cfg, int E, int64_t tokens) {
    Moe__ModelConfig *mc = cfg->model;
    const int E0 = mc->n_experts;
    mc->n_experts = E;
    moe_status st = moe_layer_params_from_config(&b->lp, mc, cfg->router, 1);
    mc->n_experts = E0;
    if (st) return st;
    b->E = E;
    b->p = moe_layer_routed_params(&b->lp);
    const int64_t D = b->p.D, R = tokens * b->lp.router.K;
    b->rows = R;
    moe_layer_weights_alloc(&b->lp, &b->w);
    moe_layer_weights_alloc(&b->lp, &b->g);
    moe_layer_weights_init(&b->lp, &b->w, 7);
    b->off = moe_xcalloc((size_t)E + 1, sizeof *b->off);
    b->fresh = moe_xcalloc((size_t)E, 1);
    memset(b->fresh, 1, (size_t)E);
    for (int e = 0; e < E; e++) b->off[e + 1] = b->off[e] + R / E + (e < R % E);
    b->x = moe_xalloc_aligned((size_t)(R * D) * sizeof(float));
    b->dout = moe_xalloc_aligned((size_t)(R * D) * sizeof(float));
    b->out = moe_xalloc_aligned((size_t)(R * D) * sizeof(float));
    b->dx = moe_xalloc_aligned((size_t)(R * D) * sizeof(float));
    b->save = moe_xalloc_aligned((size_t)(R * moe_experts_save_per_row(&b->p)) * sizeof(float));
    b->scratch =
        moe_xalloc_aligned((size_t)(R * moe_experts_scratch_per_row(&b->p)) * sizeof(float));
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (int64_t i = 0; i < R * D; i++) {
        b->x[i] = (float)((double)(moe_splitmix64_next(&h) >> 11) / 9007199254740992.0 - 0.5);
        b->dout[i] =
            (float)((double)(moe_splitmix64_next(&h) >> 11) / 9007199254740992.0 - 0.5) * 1e-3f;
    }
    return MOE_OK;
}

static void ecase_free(moe_bench_ecase *b) {
    moe_layer_weights_free(&b->w);
    moe_layer_weights_free(&b->g);
    free(b->off), free(b->fresh), free(b->x), free(b->dout), free(b->out), free(b->dx),
        free(b->save);
    free(b->scratch);
}

// One forward + backward of the expert part with the kernels (path 1) or cblas everywhere (path
// 0), the gradients written as a step's first backward writes them (moe_experts_backward_fresh,
// as the expert-parallel layer after moe_model_zero_grads). Seconds.
static double ecase_time(moe_bench_ecase *b, int path) {
    moe_gemm_rows_enable(path);
    const double t0 = moe_clock_seconds();
    moe_experts_forward(&b->p, b->out, b->save, &b->w.experts, b->off, b->x);
    moe_experts_backward_fresh(&b->p, b->fresh, b->dx, &b->g.experts, b->scratch, &b->w.experts,
                               b->off, b->x, b->save, b->dout);
    const double t = moe_clock_seconds() - t0;
    moe_gemm_rows_enable(1);
    return t;
}

static int parse_counts(const char *list, int *E, int max) {
    int n = 0;
    const char *s = list;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 65536 || n == max || (*end && *end != ',')) return -1;
        E[n++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return n;
}

static void report(moe_bench_ecase *c, int n, int rounds, double peak, int json) {
    double med[MOE_BENCH_EXPERTS_MAX][2];
    for (int i = 0; i < n; i++)
        for (int q = 0; q < 2; q++) med[i][q] = moe_bench_settings_median(c[i].t[q], rounds);
    const int64_t m = c[0].p.act == MOE_ACT_SWIGLU ? 3 : 2;
    if (json)
        printf("{\"D\":%lld,\"F\":%lld,\"rows\":%lld,\"rounds\":%d,\"sgemm_peak_gflops\":%.2f,"
               "\"counts\":[",
               (long long)c[0].p.D, (long long)c[0].p.F, (long long)c[0].rows, rounds, peak);
    else
        printf("  experts  rows/expert   cblas ms  kernels ms  speedup  GFLOP/s  growth over "
               "E=%d: cblas  kernels\n",
               c[0].E);
    for (int i = 0; i < n; i++) {
        const double fl = 6.0 * (double)m * (double)c[i].rows * (double)c[i].p.D * (double)c[i].p.F;
        const double gc = med[i][0] / med[0][0], gk = med[i][1] / med[0][1];
        if (json)
            printf("%s{\"experts\":%d,\"rows_per_expert\":%.2f,\"cblas_seconds\":%.9g,"
                   "\"kernels_seconds\":%.9g,\"speedup\":%.4f,\"kernels_gflops\":%.2f,"
                   "\"growth_cblas\":%.4f,\"growth_kernels\":%.4f}",
                   i ? "," : "", c[i].E, (double)c[i].rows / c[i].E, med[i][0], med[i][1],
                   med[i][0] / med[i][1], fl / med[i][1] / 1e9, gc, gk);
        else
            printf("  %7d  %11.1f  %9.2f  %10.2f  %6.2fx  %7.1f  %23.2fx  %6.2fx\n", c[i].E,
                   (double)c[i].rows / c[i].E, 1e3 * med[i][0], 1e3 * med[i][1],
                   med[i][0] / med[i][1], fl / med[i][1] / 1e9, gc, gk);
    }
    if (json)
        printf("]}\n");
    else
        printf("  reference: cblas_sgemm 1024^3 peak %.1f GFLOP/s (same run); medians of %d "
               "rounds\n",
               peak, rounds);
}

static moe_status run(Moe__Config *cfg, const int *E, int n, int64_t tokens, int rounds, int json) {
    moe_bench_ecase *c = moe_xcalloc((size_t)n, sizeof *c);
    moe_status st = MOE_OK;
    int made = 0;
    for (; made < n && !st; made++) st = ecase_init(&c[made], cfg, E[made], tokens);
    if (!st) {
        const moe_experts_params *p = &c[0].p;
        if (!json)
            printf("moe bench experts: D=%lld F=%lld %s%s, %lld tokens x top-%d = %lld rows "
                   "per layer, forward+backward of the experts, one thread\n",
                   (long long)p->D, (long long)p->F, p->act == MOE_ACT_SWIGLU ? "swiglu" : "gelu",
                   p->bias ? " +bias" : "", (long long)tokens, c[0].lp.router.K,
                   (long long)c[0].rows);
        double peak = moe_sgemm_peak(4);
        for (int i = 0; i < n; i++) ecase_time(&c[i], 1), ecase_time(&c[i], 0); // warm
        // Round r visits the (count, path) pairs in an order rotated by r, so drift of a shared
        // machine falls on every pair alike.
        const int npair = 2 * n;
        for (int r = 0; r < rounds; r++)
            for (int k = 0; k < npair; k++) {
                const int q = (k + r) % npair, i = q / 2, path = (q % 2) ^ (r & 1);
                c[i].t[path][r] = ecase_time(&c[i], path);
            }
        double p2 = moe_sgemm_peak(4);
        report(c, n, rounds, p2 > peak ? p2 : peak, json);
    }
    for (int i = 0; i < made; i++) ecase_free(&c[i]);
    free(c);
    return st;
}

int moe_bench_experts(int argc, char **argv) {
    int json = 0, rounds = 9, tokens = 0;
    const char *path = NULL, *list = "8,256";
    moe_args_list set_args = {0};
    const moe_arg_pos pos[] = {
        {"CONFIG", MOE_ARG_STRING, &path, 0, 1,
         "the model's config (default: the examples/tiny-moe.json shape,\nbuilt in)"}};
    const moe_arg_opt opts[] = {
        MOE_OPT_FLAG("--json", &json, "one JSON object"),
        MOE_OPT_LIST("--set", &set_args, "a.b=v", "override a config field (as moe config --set)"),
        MOE_OPT_STRING("--experts", &list, "LIST",
                       "expert counts, comma-separated (default 8,256); the\n"
                       "first is the base of the growth column"),
        MOE_OPT_INT("--tokens", &tokens, "N", 1, 1 << 20,
                    "tokens per layer (default: train.global_batch x\ntrain.seq_len)"),
        MOE_OPT_INT("--rounds", &rounds, "R", 1, 64,
                    "timed rounds; medians are printed (default 9)"),
    };
    const moe_args_spec spec = {
        "moe bench experts",
        "Times the expert part of one MoE layer (forward+backward of the expert FFNs\n"
        "over packed rows, as the layer calls them) at each expert count of --experts,\n"
        "with the same tokens (so the same FLOPs, spread over more, smaller blocks),\n"
        "gradients written as a step's first backward writes them. Each count runs with\n"
        "the small-row kernels and with cblas for every block (the reference),\n"
        "interleaved in rotated order over the rounds. Prints medians, the speedup over\n"
        "cblas, GFLOP/s, and each count's growth over the first, next to the\n"
        "cblas_sgemm peak of the same run.\n"
        "One thread unless OPENBLAS_NUM_THREADS is set.",
        pos,
        1,
        opts,
        MOE_ARGS_N(opts),
        NULL};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    int E[MOE_BENCH_EXPERTS_MAX];
    const int n = parse_counts(list, E, MOE_BENCH_EXPERTS_MAX);
    if (n < 1) {
        fprintf(stderr,
                "moe bench experts: --experts '%s': give 1 to %d expert counts in [1, 65536], "
                "comma-separated (e.g. 8,256)\n",
                list, MOE_BENCH_EXPERTS_MAX);
        moe_args_free(&spec);
        return MOE_EXIT_USAGE;
    }
    Moe__Config *cfg = NULL;
    moe_status st = moe_bench_config(path, (const char **)set_args.v, set_args.n, 1, &cfg);
    moe_args_free(&spec);
    if (!st) {
        moe_bench_threads();
        const int64_t T = tokens ? tokens : (int64_t)cfg->train->global_batch * cfg->train->seq_len;
        st = run(cfg, E, n, T, rounds, json);
    }
    if (st) fprintf(stderr, "moe bench experts: %s\n", moe_last_error());
    moe_config_free(cfg);
    return moe_exit_code(st);
}
