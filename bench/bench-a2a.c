// bench-a2a.c: `moe bench a2a` — dispatch + combine through the comm/ exchange engine (counts
// all-to-all, agreement, payload both ways) against a raw MPI_Alltoallv of the same byte counts on
// the same buffers in the same run; best of N, slowest rank per iteration.
#include "comm.h"
#include "bench-impl.h"
#include "moe-args.h"

#include <string.h>

int moe_bench_a2a(int argc, char **argv) {
    int json = 0, T = 4096, D = 512, K = 2, E = 8, iters = 20, chunks = 1, hier = 0, dedup = 0;
    const int big = 1 << 24;
    const moe_arg_opt opts[] = {
        MOE_OPT_FLAG("--json", &json, "one JSON object"),
        MOE_OPT_INT("--tokens", &T, "T", 1, big, "tokens per rank"),
        MOE_OPT_INT("--dim", &D, "D", 1, big, "floats per row"),
        MOE_OPT_INT("--topk", &K, "K", 1, big, "experts per token (at most E)"),
        MOE_OPT_INT("--experts", &E, "E", 1, big, "experts (EP = all ranks)"),
        MOE_OPT_INT("--iters", &iters, "N", 1, big, "timed iterations after 2 warmup (best)"),
        MOE_OPT_INT("--chunks", &chunks, "C", 1, big, "chunks of the exchange"),
        MOE_OPT_FLAG("--hierarchical", &hier, "node-leader gather, leader all-to-all, scatter"),
        MOE_OPT_FLAG("--dedup", &dedup, "a token goes once per peer, fanned out on arrival"),
    };
    const moe_args_spec spec = {
        "moe bench a2a",
        "Run under MPI: mpirun -np 2 moe bench a2a [options]\n"
        "Times dispatch + combine of T tokens per rank (D floats per row, top-K of E experts,\n"
        "uniform random routing, EP = all ranks) through the exchange engine and a raw\n"
        "MPI_Alltoallv of the same bytes; prints both, ratio_to_raw = raw / engine time,\n"
        "bytes moved and GB/s.",
        NULL,
        0,
        opts,
        MOE_ARGS_N(opts),
        NULL};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    if (K > E) {
        fprintf(stderr, "moe bench a2a: --topk %d exceeds --experts %d\n", K, E);
        return MOE_EXIT_USAGE;
    }
    moe_status st = moe_comm_init(&argc, &argv);
    if (st != MOE_OK) {
        fprintf(stderr, "moe bench a2a: %s\n", moe_last_error());
        return moe_exit_code(st);
    }
    moe_comm *c = NULL;
    moe_comm_plan *pl = NULL;
    char *x = NULL, *send = NULL, *recv = NULL, *ret = NULL;
    int32_t *ids = NULL, *counts = NULL, *row_src = NULL;
    int W = 1;
    if ((st = moe_bench_comm_world_ep(E, &c, &W)) != MOE_OK) // EP = all ranks
        goto done;
    moe_comm_info in = moe_comm_get_info(c);
    const size_t tb = (size_t)D * sizeof(float);
    moe_comm_plan_params pp = {MOE_COMM_EP,    in.n_local_experts, K,      dedup, tb,
                               (int64_t)T * K, (int64_t)T * K * W, chunks, hier,  0,
                               MOE_COMM_F32};
    if ((st = moe_comm_plan_create(c, &pp, &pl)) != MOE_OK) goto done;
    const size_t wb = moe_comm_plan_wire_bytes(pl);
    x = moe_xcalloc((size_t)T, tb);
    send = moe_xcalloc((size_t)T * K, wb);
    recv = moe_xcalloc((size_t)T * K * W, wb);
    ret = moe_xcalloc((size_t)T * K, wb);
    ids = moe_xcalloc((size_t)T * K, sizeof(int32_t));
    row_src = moe_xcalloc((size_t)T * K, sizeof(int32_t));
    counts = moe_xcalloc((size_t)W * (1 + in.n_local_experts), sizeof(int32_t));
    // Uniform random routing: K distinct experts per token, seeded per rank.
    uint64_t seed = 0x5eedull + 7919ull * (uint64_t)in.world_rank;
    for (int t = 0; t < T; t++) {
        float *xt = (float *)(x + (size_t)t * tb);
        for (int d = 0; d < D; d++) xt[d] = (float)((t + d) % 17);
        for (int k = 0; k < K; k++) {
            int32_t e, again;
            do {
                e = (int32_t)(moe_splitmix64_next(&seed) % (uint64_t)E);
                again = 0;
                for (int k2 = 0; k2 < k; k2++) again |= ids[t * K + k2] == e;
            } while (again);
            ids[t * K + k] = e;
        }
    }
    if ((st = moe_comm_dispatch_pack(pl, T, x, ids, NULL, counts, send, row_src)) != MOE_OK)
        goto done;
    // Bytes this rank sends in dispatch (all, and to other ranks) — combine moves the same back.
    int64_t rows = 0, rows_off = 0;
    for (int d = 0; d < W; d++) {
        rows += counts[d * (1 + in.n_local_experts)];
        if (d != in.ep_rank) rows_off += counts[d * (1 + in.n_local_experts)];
    }
    double best_engine = 1e30, best_raw = 1e30;
    for (int it = -2; it < iters; it++) { // two warm-up iterations
        // Alternate which of the two goes first, so drift on a shared machine hits both alike.
        double tm[2];
        for (int h = 0; h < 2; h++) {
            int which = (it & 1) ? 1 - h : h; // 0 = engine, 1 = raw
            if ((st = moe_comm_barrier(c, MOE_COMM_WORLD)) != MOE_OK) goto done;
            double t0 = moe_comm_wtime();
            if (which == 0) {
                if ((st = moe_comm_exchange_counts(pl, counts)) != MOE_OK ||
                    (st = moe_comm_exchange(pl, MOE_COMM_FORWARD, wb, send, recv, NULL, NULL)) !=
                        MOE_OK ||
                    (st = moe_comm_exchange(pl, MOE_COMM_REVERSE, tb, recv, ret, NULL, NULL)) !=
                        MOE_OK)
                    goto done;
            } else {
                if ((st = moe_comm_exchange_raw(pl, MOE_COMM_FORWARD, wb, send, recv)) != MOE_OK ||
                    (st = moe_comm_exchange_raw(pl, MOE_COMM_REVERSE, tb, recv, ret)) != MOE_OK)
                    goto done;
            }
            tm[which] = moe_comm_wtime() - t0;
        }
        if ((st = moe_comm_allreduce_f64(c, MOE_COMM_WORLD, tm, 2, MOE_COMM_MAX)) != MOE_OK)
            goto done;
        if (it >= 0) {
            best_engine = tm[0] < best_engine ? tm[0] : best_engine;
            best_raw = tm[1] < best_raw ? tm[1] : best_raw;
        }
    }
    // Moved per rank per dispatch+combine: wire rows out and token rows back.
    double bytes = (double)rows * (double)wb + (double)rows * (double)tb;
    double bytes_off = (double)rows_off * (double)wb + (double)rows_off * (double)tb;
    double ratio = best_raw / best_engine;
    if (json)
        moe_comm_printf(
            c,
            "{\"bench\":\"a2a\",\"world\":%d,\"ep\":%d,\"tokens\":%d,\"dim\":%d,\"top_k\":%d,"
            "\"experts\":%d,\"iters\":%d,\"chunks\":%d,\"hierarchical\":%d,\"dedup\":%d,"
            "\"bytes_per_rank\":%.0f,\"bytes_off_rank_per_rank\":%.0f,"
            "\"engine_ms\":%.4f,\"raw_ms\":%.4f,\"ratio_to_raw\":%.4f,"
            "\"engine_gbps\":%.3f,\"raw_gbps\":%.3f}\n",
            W, W, T, D, K, E, iters, chunks, hier, dedup, bytes, bytes_off, best_engine * 1e3,
            best_raw * 1e3, ratio, bytes / best_engine * 1e-9, bytes / best_raw * 1e-9);
    else
        moe_comm_printf(
            c,
            "a2a: W=EP=%d T=%d D=%d K=%d E=%d (chunks %d, hierarchical %d, dedup %d), best of %d\n"
            "  bytes per rank (dispatch + combine): %.1f MiB, %.1f MiB to other ranks\n"
            "  engine (counts + payload both ways): %8.3f ms  %6.2f GB/s\n"
            "  raw MPI_Alltoallv (payload only):    %8.3f ms  %6.2f GB/s\n"
            "  ratio_to_raw (raw / engine): %.3f (target >= 0.9)\n",
            W, T, D, K, E, chunks, hier, dedup, iters, bytes / 1048576.0, bytes_off / 1048576.0,
            best_engine * 1e3, bytes / best_engine * 1e-9, best_raw * 1e3, bytes / best_raw * 1e-9,
            ratio);
done:
    if (st != MOE_OK) moe_comm_eprintf(c, "moe bench a2a: %s\n", moe_last_error());
    free(x);
    free(send);
    free(recv);
    free(ret);
    free(ids);
    free(row_src);
    free(counts);
    moe_comm_plan_free(pl);
    moe_comm_free(c);
    moe_status fst = moe_comm_finalize();
    return moe_exit_code(st != MOE_OK ? st : fst);
}
