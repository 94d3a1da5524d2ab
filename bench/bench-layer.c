// bench-layer.c: `moe bench layer` — the one-rank MoE layer forward+backward on one thread, best
// of a fixed number of timed iterations, as GFLOP/s next to the sgemm peak of the same run.
// `--ep` hands over to the expert-parallel layer's benchmark (bench-layer-ep.c).
#include "bench-impl.h"
#include "experts.h"
#include "moe-args.h"

#include <string.h>
#include <sys/resource.h>

typedef struct {
    const char *name;
    int64_t T, D, F;
    int E, K;
} moe_layer_shape;

static const moe_layer_shape moe_layer_shapes[] = {
    {"coarse", 4096, 512, 2048, 8, 2},
    {"fine", 8192, 256, 1024, 64, 2},
};

static const char *const moe_layer_shape_names[] = {"coarse", "fine", NULL};

int moe_bench_layer(int argc, char **argv) {
    if (moe_args_has_flag(argc, argv, "--ep"))
        return moe_bench_layer_ep(argc, argv); // bench-layer-ep.c
    int json = 0, warmup = 1, iters = 4, ep = 0;
    const char *only = NULL;
    const moe_arg_opt opts[] = {
        MOE_OPT_FLAG("--json", &json, "one JSON object per shape"),
        MOE_OPT_CHOICE("--shape", &only, moe_layer_shape_names, "only this shape (default: both)"),
        MOE_OPT_INT("--warmup", &warmup, "N", 0, 1 << 24, "untimed iterations first"),
        MOE_OPT_INT("--iters", &iters, "N", 1, 1 << 24, "timed iterations (the best is reported)"),
        MOE_OPT_FLAG("--ep", &ep,
                     "the expert-parallel layer instead\n"
                     "(mpirun -np 2 moe bench layer --ep --help)"),
    };
    const moe_args_spec spec = {
        "moe bench layer",
        "Times forward+backward of one MoE layer on one rank (GELU, softmax top-k,\n"
        "dropless) and prints useful GFLOP/s (12·T·k·D·F per step), the cblas_sgemm\n"
        "1024³ peak measured in the same run, their ratio and the peak RSS.\n"
        "shapes: coarse T=4096 D=512 F=2048 E=8 k=2; fine T=8192 D=256 F=1024 E=64 k=2\n"
        "One BLAS thread unless OPENBLAS_NUM_THREADS is set.",
        NULL,
        0,
        opts,
        MOE_ARGS_N(opts),
        NULL};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    moe_bench_threads();
    // Other processes may share the cores: the peak is the best of several measurements spread
    // over the run (before each shape), so the ratio is not flattered by a slow peak sample.
    double peak = moe_sgemm_peak(8);
    for (size_t s = 0; s < sizeof moe_layer_shapes / sizeof moe_layer_shapes[0]; s++) {
        const moe_layer_shape *sh = &moe_layer_shapes[s];
        if (only && strcmp(only, sh->name)) continue;
        moe_layer_params p;
        memset(&p, 0, sizeof p);
        p.router.D = sh->D;
        p.router.E = sh->E;
        p.router.K = sh->K;
        p.router.renormalize = 1;
        p.router.aux_loss_coef = 0.01;
        p.router.routed_scaling = 1;
        p.F = sh->F;
        p.act = MOE_ACT_GELU;
        p.T_max = sh->T;
        moe_layer *L;
        moe_status st = moe_layer_create(&p, &L);
        if (st) {
            fprintf(stderr, "moe bench layer: %s\n", moe_last_error());
            return moe_exit_code(st);
        }
        moe_layer_weights w, g;
        moe_layer_weights_alloc(&p, &w);
        moe_layer_weights_alloc(&p, &g);
        moe_layer_weights_init(&p, &w, 1);
        float *x = moe_xalloc_aligned((size_t)(sh->T * sh->D) * sizeof(float));
        float *y = moe_xalloc_aligned((size_t)(sh->T * sh->D) * sizeof(float));
        float *dy = moe_xalloc_aligned((size_t)(sh->T * sh->D) * sizeof(float));
        float *dx = moe_xalloc_aligned((size_t)(sh->T * sh->D) * sizeof(float));
        // Hash-based uniform inputs: uncorrelated tokens, so routing is near-balanced as with
        // a freshly initialised router on real data.
        uint64_t h = 0x2545f4914f6cdd1dull;
        for (int64_t i = 0; i < sh->T * sh->D; i++) {
            h ^= h << 13, h ^= h >> 7, h ^= h << 17;
            x[i] = (float)((double)(h >> 11) / 9007199254740992.0 * 2.0 - 1.0);
            h ^= h << 13, h ^= h >> 7, h ^= h << 17;
            dy[i] = (float)((double)(h >> 11) / 9007199254740992.0 * 2e-3 - 1e-3);
        }
        moe_route_stats stats;
        moe_layer_timing tbest;
        memset(&tbest, 0, sizeof tbest);
        double best = 1e30, fwd_best = 1e30;
        for (int it = 0; it < warmup + iters; it++) {
            double t0 = moe_clock_seconds();
            moe_layer_forward(L, y, &stats, x, sh->T, &w, NULL, NULL);
            double t1 = moe_clock_seconds();
            moe_layer_backward(L, dx, &g, dy, &w);
            double t2 = moe_clock_seconds();
            if (it >= warmup && t2 - t0 < best) {
                best = t2 - t0;
                fwd_best = t1 - t0;
                tbest = *moe_layer_timings(L);
            }
        }
        double p2 = moe_sgemm_peak(8);
        peak = p2 > peak ? p2 : peak;
        double flops = 12.0 * (double)sh->T * sh->K * (double)sh->D * (double)sh->F;
        double gf = flops / best / 1e9;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        long long rss = (long long)ru.ru_maxrss * 1024;
        const moe_layer_phases *f = &tbest.fwd, *b = &tbest.bwd;
        if (json)
            printf("{\"shape\":\"%s\",\"T\":%lld,\"D\":%lld,\"F\":%lld,\"E\":%d,\"k\":%d,"
                   "\"seconds\":%.6f,\"forward_seconds\":%.6f,\"gflops\":%.2f,"
                   "\"sgemm_peak_gflops\":%.2f,\"fraction_of_peak\":%.4f,\"peak_rss_bytes\":%lld,"
                   "\"max_over_mean\":%.4f,\"phases_ms\":{\"fwd_router\":%.2f,"
                   "\"fwd_permute\":%.2f,\"fwd_experts\":%.2f,\"fwd_combine\":%.2f,"
                   "\"bwd_unpermute\":%.2f,\"bwd_experts\":%.2f,\"bwd_router\":%.2f}}\n",
                   sh->name, (long long)sh->T, (long long)sh->D, (long long)sh->F, sh->E, sh->K,
                   best, fwd_best, gf, peak, gf / peak, rss, stats.max_over_mean, f->router * 1e3,
                   f->permute * 1e3, f->experts * 1e3, f->combine * 1e3, b->permute * 1e3,
                   b->experts * 1e3, b->router * 1e3);
        else
            printf("%-7s T=%lld D=%lld F=%lld E=%d k=%d: fwd+bwd %.1f ms (fwd %.1f ms), "
                   "%.1f GFLOP/s = %.3f of peak, load max/mean %.2f, peak RSS %.0f MiB\n",
                   sh->name, (long long)sh->T, (long long)sh->D, (long long)sh->F, sh->E, sh->K,
                   best * 1e3, fwd_best * 1e3, gf, gf / peak, stats.max_over_mean,
                   (double)rss / 1048576.0);
        if (!json)
            printf(
                "        ms: fwd router %.1f permute %.1f experts %.1f combine %.1f | "
                "bwd unpermute+scatter %.1f experts %.1f router %.1f | sgemm peak %.1f GFLOP/s\n",
                f->router * 1e3, f->permute * 1e3, f->experts * 1e3, f->combine * 1e3,
                b->permute * 1e3, b->experts * 1e3, b->router * 1e3, peak);
        fflush(stdout);
        free(x);
        free(y);
        free(dy);
        free(dx);
        moe_layer_weights_free(&w);
        moe_layer_weights_free(&g);
        moe_layer_free(L);
    }
    return MOE_EXIT_OK;
}
