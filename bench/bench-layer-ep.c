// bench-layer-ep.c: `moe bench layer --ep` — forward+backward of the expert-parallel layer (EP =
// all ranks) without and with overlap: time per step (slowest rank), the share spent in exposed
// exchange, and hidden_fraction = 1 − exposed exchange with overlap / exchange without overlap.
// Best of N iterations; GFLOP/s reported next to the cblas_sgemm peak measured in the same run.
// Payload bytes per step are the exchange's own counters (intra-/inter-node, sent/received).
#include "ep-layer.h"
#include "bench-impl.h"
#include "moe-args.h"

#include <cblas.h>
#include <string.h>

typedef struct {
    double step, fwd;             // seconds, the slowest rank of the best iteration
    double exch, exch_max;        // exposed exchange: least / largest over ranks
    double experts;               // expert compute in the callbacks, largest over ranks
    int64_t pairs_max, pairs_min; // expert-side pairs per rank
    // payload bytes of one step (fwd+bwd): the largest per rank of sent intra, sent inter,
    // received intra, received inter; then the world sums of sent intra and sent inter
    int64_t bytes_max[4], bytes_sum[2];
} moe_bench_ep_result;

// Runs warmup + iters steps at exchange setting sx; fills r with the best step (by slowest rank).
static moe_status moe_bench_ep_run(moe_comm *c, const moe_layer_params *p, const moe_xsetting *sx,
                                   int sub, int iters, const float *x, const float *dy,
                                   moe_bench_ep_result *r) {
    moe_comm_info in = moe_comm_get_info(c);
    moe_ep_options o = {sx->dedup, sx->n_chunks, sx->hierarchical,
                        0,         sub,          sx->bf16 ? MOE_COMM_BF16 : MOE_COMM_F32};
    moe_ep_layer *L = NULL;
    moe_status st = moe_ep_layer_create(p, c, &o, &L);
    if (st) return st;
    moe_layer_weights w, g;
    moe_layer_weights_alloc(p, &w);
    moe_layer_weights_alloc(p, &g);
    moe_layer_weights_init(p, &w, 1);
    moe_layer_weights wv = moe_ep_local_view(p, &w, in.first_expert);
    moe_layer_weights gv = moe_ep_local_view(p, &g, in.first_expert);
    const int64_t T = p->T_max, D = p->router.D;
    float *y = moe_xalloc_aligned((size_t)(T * D) * sizeof(float));
    float *dx = moe_xalloc_aligned((size_t)(T * D) * sizeof(float));
    moe_route_opts opts = {.token_base = (int64_t)in.world_rank * T};
    r->step = 1e30;
    for (int it = 0; it < iters + 1 && !st; it++) {
        if ((st = moe_comm_barrier(c, MOE_COMM_WORLD))) break;
        double t0 = moe_comm_wtime();
        if ((st = moe_ep_layer_forward(L, y, NULL, x, T, &wv, NULL, &opts))) break;
        double t1 = moe_comm_wtime();
        if ((st = moe_ep_layer_backward(L, dx, &gv, dy, &wv))) break;
        double t2 = moe_comm_wtime();
        const moe_ep_timing *tm = moe_ep_layer_timings(L);
        double v[4] = {t2 - t0, t1 - t0, tm->fwd.exchange + tm->bwd.exchange,
                       tm->fwd.experts + tm->bwd.experts};
        int64_t pr[2] = {tm->pairs_in, -tm->pairs_in};
        // Exchange: the least over ranks. A rank with fewer expert pairs waits for the busier one
        // inside the exchange; that wait is load imbalance, not communication, so the busiest
        // rank's (the critical path's) exchange time is the one overlap can hide. The largest
        // is reported too (wait included).
        double ex[2] = {-v[2], v[2]};
        if ((st = moe_comm_allreduce_f64(c, MOE_COMM_WORLD, v, 4, MOE_COMM_MAX))) break;
        if ((st = moe_comm_allreduce_f64(c, MOE_COMM_WORLD, ex, 2, MOE_COMM_MAX))) break;
        v[2] = -ex[0];
        if ((st = moe_comm_allreduce_i64(c, MOE_COMM_WORLD, pr, 2, MOE_COMM_MAX))) break;
        // Bytes: the same every iteration (same routing), summed over fwd and bwd.
        const moe_comm_bytes *bf = &tm->fwd.bytes, *bb = &tm->bwd.bytes;
        int64_t bm[4] = {bf->sent_intra + bb->sent_intra, bf->sent_inter + bb->sent_inter,
                         bf->recv_intra + bb->recv_intra, bf->recv_inter + bb->recv_inter};
        int64_t bs[2] = {bm[0], bm[1]};
        if ((st = moe_comm_allreduce_i64(c, MOE_COMM_WORLD, bm, 4, MOE_COMM_MAX))) break;
        if ((st = moe_comm_allreduce_i64(c, MOE_COMM_WORLD, bs, 2, MOE_COMM_SUM))) break;
        if (it > 0 && v[0] < r->step) {
            *r = (moe_bench_ep_result){v[0], v[1], v[2], ex[1], v[3], pr[0], -pr[1], {0}, {0}};
            memcpy(r->bytes_max, bm, sizeof bm);
            memcpy(r->bytes_sum, bs, sizeof bs);
        }
    }
    free(y);
    free(dx);
    moe_layer_weights_free(&w);
    moe_layer_weights_free(&g);
    moe_ep_layer_free(L);
    return st;
}

// --settings: each setting of list, `rounds` rounds (order rotated per round) of the best of
// iters steps; the median round. Prints the table or one JSON object (rank 0). Collective.
static moe_status moe_bench_ep_settings(moe_comm *c, const moe_layer_params *p, const char *list,
                                        int sub, int iters, int rounds, int node_size, int json,
                                        const float *x, const float *dy) {
    moe_bench_setting set[MOE_BENCH_SETTINGS_MAX];
    int n = 0;
    moe_status st = moe_bench_settings_list(list, set, MOE_BENCH_SETTINGS_MAX, &n);
    if (st) return st;
    const int W = moe_comm_size(c, MOE_COMM_WORLD);
    const char *skip[MOE_BENCH_SETTINGS_MAX];
    moe_bench_ep_result last[MOE_BENCH_SETTINGS_MAX];
    double *step = moe_xcalloc((size_t)n * (size_t)rounds, sizeof *step);
    double *exch = moe_xcalloc((size_t)n * (size_t)rounds, sizeof *exch);
    int n_run = 0, order[MOE_BENCH_SETTINGS_MAX];
    for (int i = 0; i < n; i++)
        if (!(skip[i] = i ? moe_bench_setting_skip(&set[i].s, c) : NULL)) order[n_run++] = i;
    for (int r = 0; r < rounds && !st; r++)
        for (int k = 0; k < n_run && !st; k++) {
            const int i = order[(k + r) % n_run];
            st = moe_bench_ep_run(c, p, &set[i].s, sub, iters, x, dy, &last[i]);
            step[i * rounds + r] = last[i].step, exch[i * rounds + r] = last[i].exch;
        }
    double med[MOE_BENCH_SETTINGS_MAX] = {0}, mex[MOE_BENCH_SETTINGS_MAX] = {0};
    for (int i = 0; i < n && !st; i++)
        if (!skip[i]) {
            med[i] = moe_bench_settings_median(step + i * rounds, rounds);
            mex[i] = moe_bench_settings_median(exch + i * rounds, rounds);
        }
    free(step);
    free(exch);
    if (st || moe_comm_rank(c, MOE_COMM_WORLD) != 0) return st;
    const double tok = (double)p->T_max * W; // tokens per step, world
    if (json) {
        printf("{\"bench\":\"layer_ep_settings\",\"world\":%d,\"ep\":%d,\"T_per_rank\":%lld,"
               "\"D\":%lld,\"F\":%lld,\"E\":%d,\"k\":%d,\"iters\":%d,\"rounds\":%d,"
               "\"node_size\":%d,\"reference\":\"flat\",\"settings\":[",
               W, W, (long long)p->T_max, (long long)p->router.D, (long long)p->F, p->router.E,
               p->router.K, iters, rounds, node_size);
        for (int i = 0; i < n; i++) {
            if (skip[i]) {
                printf("%s{\"name\":\"%s\",\"measured\":false,\"skipped\":\"%s\"}", i ? "," : "",
                       set[i].name, skip[i]); // static text without quotes
                continue;
            }
            const moe_bench_ep_result *q = &last[i];
            printf("%s{\"name\":\"%s\",\"measured\":true,\"seconds\":%.6f,\"speedup\":%.4f,"
                   "\"exchange_seconds\":%.6f,\"exchange_share\":%.4f,"
                   "\"hidden_fraction\":%.4f,\"internode_bytes_per_token\":%.2f,"
                   "\"intranode_bytes_per_token\":%.2f,\"changes_results\":%s}",
                   i ? "," : "", set[i].name, med[i], i ? med[0] / med[i] : 1.0, mex[i],
                   mex[i] / med[i], mex[0] > 0 ? 1.0 - mex[i] / mex[0] : 0,
                   (double)q->bytes_sum[1] / tok, (double)q->bytes_sum[0] / tok,
                   set[i].s.bf16 ? "true" : "false");
        }
        printf("]}\n");
        return MOE_OK;
    }
    printf("EP layer W=EP=%d T=%lld/rank D=%lld F=%lld E=%d k=%d GELU, exchange settings side by "
           "side%s: fwd+bwd of the slowest rank, best of %d per round, median of %d round%s "
           "(order rotated)\n",
           W, (long long)p->T_max, (long long)p->router.D, (long long)p->F, p->router.E,
           p->router.K, node_size > 0 ? " (fake nodes)" : "", iters, rounds, rounds > 1 ? "s" : "");
    printf("  %-16s %9s %8s %9s %8s %11s %11s  %s\n", "setting", "ms/step", "speedup", "exchange",
           "hidden", "inter B/tok", "intra B/tok", "note");
    for (int i = 0; i < n; i++) {
        if (skip[i]) continue;
        const moe_bench_ep_result *q = &last[i];
        const char *note = i == 0 ? "reference" : set[i].s.bf16 ? "changes results (bf16)" : "";
        printf("  %-16s %9.2f %7.3fx %8.1f%% %8.3f %11.1f %11.1f%s%s\n", set[i].name, 1e3 * med[i],
               i ? med[0] / med[i] : 1.0, 100 * mex[i] / med[i],
               mex[0] > 0 ? 1.0 - mex[i] / mex[0] : 0, (double)q->bytes_sum[1] / tok,
               (double)q->bytes_sum[0] / tok, *note ? "  " : "", note);
    }
    for (int i = 0; i < n; i++)
        if (skip[i]) printf("  skipped: %s (%s)\n", set[i].name, skip[i]);
    printf("  (hidden = 1 - exposed exchange / flat's: a diagnostic; the step time decides)\n");
    return MOE_OK;
}

int moe_bench_layer_ep(int argc, char **argv) {
    int json = 0, T = 4096, D = 512, F = 2048, E = 8, K = 2, chunks = 8, iters = 3, dedup = 0;
    int sub = 0;       // 0: the layer's default (256)
    int bf16 = 0;      // payload dtype
    int node_size = 0; // 0: nodes as MPI sees them; n: every n consecutive ranks form a node
    int ep = 0;        // --ep itself (it brought us here)
    int settings = 0, rounds = 0; // rounds 0: not given (3)
    const char *settings_list = NULL;
    argc = moe_bench_settings_argv(argc, argv, &settings_list);
    const int big = 1 << 24;
    const moe_arg_opt opts[] = {
        MOE_OPT_FLAG("--ep", &ep, NULL), // in the command's name
        MOE_OPT_FLAG("--json", &json, "one JSON object"),
        MOE_OPT_INT("--tokens", &T, "T", 1, big, "tokens per rank"),
        MOE_OPT_INT("--dim", &D, "D", 1, big, "model dimension"),
        MOE_OPT_INT("--ffn", &F, "F", 1, big, "expert hidden dimension"),
        MOE_OPT_INT("--experts", &E, "E", 1, big, "experts (EP = all ranks)"),
        MOE_OPT_INT("--topk", &K, "K", 1, big, "experts per token (at most E)"),
        MOE_OPT_INT("--chunks", &chunks, "C", 2, big, "chunks of the overlapped run"),
        MOE_OPT_FLAG("--dedup", &dedup, "a token goes once per peer, fanned out on arrival"),
        MOE_OPT_INT("--iters", &iters, "N", 1, big, "timed iterations after 1 warmup"),
        MOE_OPT_INT("--sub-rows", &sub, "R", 1, big, "expert GEMM sub-block rows (default 256)"),
        MOE_OPT_FLAG("--bf16", &bf16, "payloads as bf16 (round to nearest even, fp32 math)"),
        MOE_OPT_INT("--node-size", &node_size, "N", 1, big,
                    "pretend every N consecutive ranks form a node (inter-node byte counts on "
                    "one machine)"),
        MOE_OPT_FLAG("--settings", &settings,
                     "[LIST] exchange settings side by side: each one's fwd+bwd time\n"
                     "and speedup over plain flat of the same run (LIST: comma list\n"
                     "of flat, chunksN, hier, dedup-rank, dedup-node, bf16 joined by\n"
                     "'+'; default flat, chunks2, chunks4, chunks8, hier, dedup-rank,\n"
                     "dedup-node, bf16, chunks4+bf16, hier+bf16)"),
        MOE_OPT_INT("--rounds", &rounds, "R", 1, big,
                    "with --settings: rounds over all settings, order rotated; default 3"),
    };
    const moe_args_spec spec = {
        "moe bench layer --ep",
        "Run under MPI: mpirun -np 2 moe bench layer --ep [options]\n"
        "Times forward+backward of the expert-parallel MoE layer (EP = all ranks, GELU,\n"
        "softmax top-k, dropless, aux on) with T tokens per rank, once without overlap\n"
        "(1 chunk) and once with C chunks (expert compute on chunk c while chunk c+1 moves).\n"
        "Prints ms per step (slowest rank), exposed exchange time (of the busiest rank: the\n"
        "others also wait there for it, shown apart as load-imbalance wait) and its share,\n"
        "hidden_fraction = 1 - exposed exchange with overlap / exchange without overlap,\n"
        "GFLOP/s per rank (12·T·K·D·F per step) vs the sgemm 1024^3 peak of the same run,\n"
        "and the payload bytes per step the exchange counted: per rank (the largest) sent and\n"
        "received inside the node and across nodes, inter-node bytes per token of the world.\n"
        "--settings [LIST] instead times every exchange setting of LIST (see --settings) in\n"
        "rounds and prints each one's ms per step, speedup over flat of the same run, exposed\n"
        "exchange share, hidden fraction (diagnostic) and bytes per token; settings that are\n"
        "the same thing or refused at this layout are listed as skipped with the reason.",
        NULL,
        0,
        opts,
        MOE_ARGS_N(opts),
        NULL};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    if (K > E) {
        fprintf(stderr, "moe bench layer --ep: --topk %d exceeds --experts %d\n", K, E);
        return MOE_EXIT_USAGE;
    }
    if (bf16 && dedup) {
        fprintf(stderr, "moe bench layer --ep: --bf16 with --dedup is not supported (the layer "
                        "refuses it: rounding a dedup row's sum would depend on EP)\n");
        return MOE_EXIT_USAGE;
    }
    if (settings && (dedup || bf16)) {
        fprintf(stderr, "moe bench layer --ep: --settings takes --dedup and --bf16 as settings "
                        "in its LIST (dedup-rank, bf16)\n");
        return MOE_EXIT_USAGE;
    }
    if ((rounds || settings_list) && !settings) {
        fprintf(stderr, "moe bench layer --ep: --rounds applies to --settings only\n");
        return MOE_EXIT_USAGE;
    }
    if (!rounds) rounds = 3;
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
    moe_status st = moe_comm_init(&argc, &argv);
    if (st) {
        fprintf(stderr, "moe bench layer --ep: %s\n", moe_last_error());
        return moe_exit_code(st);
    }
    moe_comm *c = NULL;
    float *x = NULL, *dy = NULL;
    int W = 1;
    moe_bench_ep_result r1 = {0}, rc = {0};
    double peak = 0;
    if ((st = moe_bench_comm_world_ep(E, &c, &W))) goto done; // EP = all ranks
    if (node_size > 0) {                                      // the same with fake nodes
        moe_comm_free(c);
        c = NULL;
        moe_comm_params cp = {W, E, node_size, 0};
        if ((st = moe_comm_create(&cp, &c))) goto done;
    }
    moe_layer_params p;
    memset(&p, 0, sizeof p);
    p.router.D = D, p.router.E = E, p.router.K = K, p.router.renormalize = 1;
    p.router.aux_loss_coef = 0.01, p.router.routed_scaling = 1;
    p.F = F, p.act = MOE_ACT_GELU, p.T_max = T;
    const int rank = moe_comm_rank(c, MOE_COMM_WORLD);
    x = moe_xalloc_aligned((size_t)T * (size_t)D * sizeof(float));
    dy = moe_xalloc_aligned((size_t)T * (size_t)D * sizeof(float));
    uint64_t h = 0x2545f4914f6cdd1dull ^ ((uint64_t)rank * 0x9e3779b97f4a7c15ull);
    for (int64_t i = 0; i < (int64_t)T * D; i++) { // uncorrelated tokens: near-balanced routing
        h ^= h << 13, h ^= h >> 7, h ^= h << 17;
        x[i] = (float)((double)(h >> 11) / 9007199254740992.0 * 2.0 - 1.0);
        h ^= h << 13, h ^= h >> 7, h ^= h << 17;
        dy[i] = (float)((double)(h >> 11) / 9007199254740992.0 * 2e-3 - 1e-3);
    }
    peak = moe_sgemm_peak(8);
    if (settings) {
        st =
            moe_bench_ep_settings(c, &p, settings_list, sub, iters, rounds, node_size, json, x, dy);
        goto done;
    }
    const moe_xsetting s1 = {.dedup = dedup, .n_chunks = 1, .bf16 = bf16};
    const moe_xsetting sc = {.dedup = dedup, .n_chunks = chunks, .bf16 = bf16};
    if ((st = moe_bench_ep_run(c, &p, &s1, sub, iters, x, dy, &r1))) goto done;
    if ((st = moe_bench_ep_run(c, &p, &sc, sub, iters, x, dy, &rc))) goto done;
    double p2 = moe_sgemm_peak(8);
    peak = p2 > peak ? p2 : peak;
    if ((st = moe_comm_allreduce_f64(c, MOE_COMM_WORLD, &peak, 1, MOE_COMM_MIN))) goto done;
    {
        // Useful FLOPs per rank: 12·(T·K)·D·F (fwd 2 GEMMs, bwd 4), the rank's own token pairs.
        const double flops = 12.0 * (double)T * K * (double)D * (double)F;
        const double g1 = flops / r1.step / 1e9, gc = flops / rc.step / 1e9;
        const double hidden = r1.exch > 0 ? 1.0 - rc.exch / r1.exch : 0;
        const int64_t *bm = r1.bytes_max, *bs = r1.bytes_sum; // the same with chunks
        const double per_tok = (double)bs[1] / ((double)T * W), mb = 1.0 / (1 << 20);
        if (rank == 0 && json)
            printf("{\"bench\":\"layer_ep\",\"world\":%d,\"ep\":%d,\"T_per_rank\":%d,\"D\":%d,"
                   "\"F\":%d,\"E\":%d,\"k\":%d,\"dedup\":%d,\"chunks\":%d,"
                   "\"seconds\":%.6f,\"exchange_seconds\":%.6f,\"exchange_share\":%.4f,"
                   "\"exchange_wait_max_seconds\":%.6f,\"gflops\":%.2f,"
                   "\"overlap_seconds\":%.6f,\"overlap_exposed_exchange_seconds\":%.6f,"
                   "\"overlap_exchange_share\":%.4f,\"overlap_exchange_wait_max_seconds\":%.6f,"
                   "\"overlap_gflops\":%.2f,\"hidden_fraction\":%.4f,\"sgemm_peak_gflops\":%.2f,"
                   "\"fraction_of_peak\":%.4f,\"overlap_fraction_of_peak\":%.4f,"
                   "\"expert_pairs_max\":%lld,\"expert_pairs_min\":%lld,\"dtype\":\"%s\","
                   "\"node_size\":%d,\"bytes_sent_intranode_max\":%lld,"
                   "\"bytes_sent_internode_max\":%lld,\"bytes_recv_intranode_max\":%lld,"
                   "\"bytes_recv_internode_max\":%lld,\"bytes_intranode_total\":%lld,"
                   "\"bytes_internode_total\":%lld,\"internode_bytes_per_token\":%.2f}\n",
                   W, W, T, D, F, E, K, dedup, chunks, r1.step, r1.exch, r1.exch / r1.step,
                   r1.exch_max, g1, rc.step, rc.exch, rc.exch / rc.step, rc.exch_max, gc, hidden,
                   peak, g1 / peak, gc / peak, (long long)r1.pairs_max, (long long)r1.pairs_min,
                   bf16 ? "bf16" : "f32", node_size, (long long)bm[0], (long long)bm[1],
                   (long long)bm[2], (long long)bm[3], (long long)bs[0], (long long)bs[1], per_tok);
        else if (rank == 0) {
            printf("EP layer W=EP=%d T=%d/rank D=%d F=%d E=%d k=%d GELU%s, %s payloads\n", W, T, D,
                   F, E, K, dedup ? " dedup" : "", bf16 ? "bf16" : "f32");
            printf("  no overlap : fwd+bwd %.1f ms (fwd %.1f), exchange %.1f ms = %.1f%% (%.1f ms "
                   "with load-imbalance wait), experts %.1f ms, %.1f GFLOP/s/rank = %.3f of sgemm "
                   "peak %.1f\n",
                   r1.step * 1e3, r1.fwd * 1e3, r1.exch * 1e3, 100 * r1.exch / r1.step,
                   r1.exch_max * 1e3, r1.experts * 1e3, g1, g1 / peak, peak);
            printf("  %d chunks   : fwd+bwd %.1f ms (fwd %.1f), exposed exchange %.1f ms = %.1f%% "
                   "(%.1f ms with wait), %.1f GFLOP/s/rank = %.3f of peak\n",
                   chunks, rc.step * 1e3, rc.fwd * 1e3, rc.exch * 1e3, 100 * rc.exch / rc.step,
                   rc.exch_max * 1e3, gc, gc / peak);
            printf("  hidden_fraction %.3f (target >= 0.5); expert pairs per rank %lld..%lld\n",
                   hidden, (long long)r1.pairs_min, (long long)r1.pairs_max);
            printf("  payload per step (counted): per rank at most %.2f MiB sent / %.2f MiB "
                   "received inside a node, %.2f / %.2f MiB across nodes%s; world %.2f MiB "
                   "intra, %.2f MiB inter = %.1f inter-node bytes per token\n",
                   bm[0] * mb, bm[2] * mb, bm[1] * mb, bm[3] * mb,
                   node_size > 0 ? " (fake nodes)" : "", bs[0] * mb, bs[1] * mb, per_tok);
        }
    }
done:
    if (st) fprintf(stderr, "moe bench layer --ep: %s\n", moe_last_error());
    free(x);
    free(dy);
    moe_comm_free(c);
    moe_status fst = moe_comm_finalize();
    if (!st) st = fst;
    return st ? moe_exit_code(st) : MOE_EXIT_OK;
}
