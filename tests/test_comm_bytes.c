// test_comm_bytes.c: the exchange's payload byte counters on a hand-computable routing — every
// rank sends R rows to every rank of the group — for the flat, chunked, split-phase and
// hierarchical exchanges, with real nodes (one machine) and fake nodes of 1 and 2 ranks, in fp32
// and bf16 (exactly half the bytes), and with per-rank dedup (fewer rows). Also the bf16 payload itself: the rows that arrive decode to
// the rounded token rows, and the combine unpack widens and weights them.
#include "comm.h"
#include "test-util.h"
#include "test-mpi.h"

#include <string.h>

enum {
    D = 6,
    K = 2,
    M = 3,
    TMAX = 64 * 2 * M
}; // T = E·M tokens per rank (E = 2W), each to
    // experts t and t+1 (mod E)

static int check(const char *what, const char *field, int64_t got, int64_t want) {
    if (got == want) return 0;
    fprintf(stderr, "FAIL [rank %d] %s: %s expected %lld got %lld\n", g_rank, what, field,
            (long long)want, (long long)got);
    return 1;
}

static int check_bytes(const char *what, moe_comm_bytes b, moe_comm_bytes want) {
    return check(what, "sent_intra", b.sent_intra, want.sent_intra) +
           check(what, "sent_inter", b.sent_inter, want.sent_inter) +
           check(what, "recv_intra", b.recv_intra, want.recv_intra) +
           check(what, "recv_inter", b.recv_inter, want.recv_inter);
}

// Expected bytes of ONE exchange in which every rank sends R rows of b bytes to every rank of the
// group: flat = R·b to / from every other rank, split by node; hierarchical (mode 3, fake nodes
// of q ranks, leader = lowest rank of the node): a member sends its W·R rows to the leader and
// receives W·R back; the leader receives and scatters (q−1)·W·R, and moves q·(W−q)·R rows each
// way to / from the other leaders.
static moe_comm_bytes expect_bytes(const moe_comm *c, int mode, int64_t R, int64_t b) {
    const int W = moe_comm_size(c, MOE_COMM_EP), me = moe_comm_rank(c, MOE_COMM_EP);
    moe_comm_info in = moe_comm_get_info(c);
    moe_comm_bytes want = {0, 0, 0, 0};
    const int q = in.node_size, hier = mode == 3 && in.n_nodes > 1;
    for (int d = 0; d < W && !hier; d++) {
        if (d == me) continue;
        const int inter = moe_comm_node_of(c, d) != moe_comm_node_of(c, me);
        *(inter ? &want.sent_inter : &want.sent_intra) += R * b;
        *(inter ? &want.recv_inter : &want.recv_intra) += R * b;
    }
    if (hier && in.node_rank != 0) want.sent_intra = want.recv_intra = (int64_t)W * R * b;
    if (hier && in.node_rank == 0) {
        want.sent_intra = want.recv_intra = (int64_t)(q - 1) * W * R * b;
        want.sent_inter = want.recv_inter = (int64_t)q * (W - q) * R * b;
    }
    return want;
}

// One plan: mode 0 flat, 1 chunked (3 chunks through moe_comm_exchange), 2 split-phase chunks,
// 3 hierarchical. Dispatch (FORWARD) then combine (REVERSE); returns failures.
static int run(int node_size, int mode, moe_comm_dtype dtype) {
    const int El = 2;
    moe_comm_params cp = {0, 0, node_size, 1};
    moe_comm *c0;
    OK(moe_comm_create(&(moe_comm_params){1, 0, 0, 1}, &c0));
    const int W = moe_comm_size(c0, MOE_COMM_WORLD);
    moe_comm_free(c0);
    cp.ep_size = W, cp.n_experts = W * El;
    moe_comm *c;
    OK(moe_comm_create(&cp, &c));
    const int E = W * El, T = E * M, me = moe_comm_rank(c, MOE_COMM_EP);
    const int nc = mode == 1 || mode == 2 ? 3 : 1;
    moe_comm_plan_params pp = {
        MOE_COMM_EP, El,        K, 0,    D * sizeof(float), (int64_t)T * K, (int64_t)W * T * K,
        nc,          mode == 3, 0, dtype};
    moe_comm_plan *pl;
    OK(moe_comm_plan_create(c, &pp, &pl));
    const size_t rb = moe_comm_plan_row_bytes(pl);
    int fails = check("row bytes", dtype == MOE_COMM_BF16 ? "bf16" : "f32", (int64_t)rb,
                      dtype == MOE_COMM_BF16 ? D * 2 : D * 4);
    static float x[TMAX * D], w[TMAX * K], xs[TMAX * D], y[TMAX * D];
    static int32_t ids[TMAX * K], counts[64 * 3], row_src[TMAX * K];
    uint64_t s = 77 + (uint64_t)g_rank;
    for (int i = 0; i < T * D; i++) x[i] = (float)test_uniform(&s, -2, 2);
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            ids[t * K + k] = (t + k) % E;
            w[t * K + k] = 0.25f * (float)(k + 1);
        }
    char *send = moe_xcalloc((size_t)T * K, rb), *recv = moe_xcalloc((size_t)W * T * K, rb);
    char *ret = moe_xcalloc((size_t)T * K, rb);
    OK(moe_comm_dispatch_pack(pl, T, x, ids, w, counts, send, row_src));
    OK(moe_comm_exchange_counts(pl, counts));
    // Every rank sends R = K·M·El rows to every peer (each expert gets K·M pairs per source).
    const int64_t R = (int64_t)K * M * El;
    const moe_comm_bytes zero = {0, 0, 0, 0};
    fails += check_bytes("after counts only", moe_comm_plan_bytes(pl), zero);
    for (int dir = 0; dir < 2; dir++) {
        const void *from = dir == 0 ? send : recv;
        void *to = dir == 0 ? recv : ret;
        if (mode == 2) {
            for (int ch = 0; ch < nc; ch++)
                OK(moe_comm_chunk_post(pl, (moe_comm_dir)dir, rb, from, to, ch));
            for (int ch = 0; ch < nc; ch++) OK(moe_comm_chunk_wait(pl, (moe_comm_dir)dir, ch));
        } else {
            OK(moe_comm_exchange(pl, (moe_comm_dir)dir, rb, from, to, NULL, NULL));
        }
    }
    moe_comm_bytes want = expect_bytes(c, mode, R, (int64_t)rb);
    want.sent_intra *= 2, want.sent_inter *= 2, want.recv_intra *= 2, want.recv_inter *= 2;
    char what[128];
    snprintf(what, sizeof what, "W=%d node_size=%d mode=%d %s", W, node_size, mode,
             dtype == MOE_COMM_BF16 ? "bf16" : "f32");
    fails += check_bytes(what, moe_comm_plan_bytes(pl), want);
    // The payload: what arrived decodes to the (rounded) token rows of its source, in source
    // order, each source's rows by (local expert, token); the combine unpack gives Σ w·row.
    int64_t u = 0;
    for (int src = 0; src < W; src++) {
        uint64_t ss = 77 + (uint64_t)src;
        for (int i = 0; i < T * D; i++) xs[i] = (float)test_uniform(&ss, -2, 2);
        for (int j = 0; j < El; j++)
            for (int t = 0; t < T; t++)
                for (int k = 0; k < K; k++) {
                    if (ids[t * K + k] != me * El + j) continue;
                    float got[D];
                    moe_comm_row_get(pl, got, recv + (size_t)u * rb);
                    for (int d = 0; d < D; d++) {
                        float v = xs[t * D + d];
                        if (dtype == MOE_COMM_BF16) v = moe_comm_round_bf16(v);
                        if (memcmp(&got[d], &v, sizeof v)) {
                            if (fails < 10)
                                fprintf(stderr,
                                        "FAIL %s: row %lld from %d token %d dim %d: "
                                        "expected %.9g got %.9g\n",
                                        what, (long long)u, src, t, d, v, got[d]);
                            fails++;
                        }
                    }
                    u++;
                }
    }
    memset(y, 0, sizeof y);
    moe_comm_combine_unpack(pl, ret, row_src, w, T, y);
    for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d++) {
            float v = x[t * D + d];
            if (dtype == MOE_COMM_BF16) v = moe_comm_round_bf16(v);
            const float want_y = 0.25f * v + 0.5f * v; // slots in expert order: w 0.25, 0.5
            const float alt = 0.5f * v + 0.25f * v;
            if (y[t * D + d] != want_y && y[t * D + d] != alt) {
                if (fails < 10)
                    fprintf(stderr, "FAIL %s: combine y[%d][%d] expected %.9g got %.9g\n", what, t,
                            d, want_y, y[t * D + d]);
                fails++;
            }
        }
    free(send);
    free(recv);
    free(ret);
    moe_comm_plan_free(pl);
    return test_world_fails(c, fails);
}

// Per-rank dedup on the same routing (token t → experts t and t+1 mod E, El = 2): the two
// experts share a rank for even t (one wire row) and not for odd t (two rows, to two ranks), so a
// source sends each peer 3M wire rows instead of 4M pairs — M even tokens for its expert pair,
// M odd tokens whose first and M whose second expert it holds. Dispatch rows carry K slots
// (wire_bytes = 4·DD + 8K), combine rows do not (4·DD): per peer 3M·(4·DD + 8K + 4·DD) bytes
// against 4M·2·4·DD without dedup (DD = 32, K = 2, M = 3: 2448 against 3072). Flat, chunked
// and hierarchical exchanges, on the node sizes of run().
static int run_dedup(int node_size, int mode) {
    enum { DD = 32 };
    const int El = 2;
    moe_comm *c0;
    OK(moe_comm_create(&(moe_comm_params){1, 0, 0, 1}, &c0));
    const int W = moe_comm_size(c0, MOE_COMM_WORLD);
    moe_comm_free(c0);
    if (W < 2) return 0; // every expert on this rank: nothing crosses
    moe_comm *c;
    OK(moe_comm_create(&(moe_comm_params){W, W * El, node_size, 1}, &c));
    const int E = W * El, T = E * M;
    moe_comm_plan_params pp = {MOE_COMM_EP,
                               El,
                               K,
                               1,
                               DD * sizeof(float),
                               (int64_t)T * K,
                               (int64_t)W * T * K,
                               mode == 1 ? 3 : 1,
                               mode == 3,
                               0,
                               MOE_COMM_F32};
    moe_comm_plan *pl;
    OK(moe_comm_plan_create(c, &pp, &pl));
    const size_t rb = moe_comm_plan_row_bytes(pl), wb = moe_comm_plan_wire_bytes(pl);
    int fails = check("dedup wire bytes", "4·DD + 8K", (int64_t)wb, 4 * DD + 8 * K);
    static float x[TMAX * DD], w[TMAX * K];
    static int32_t ids[TMAX * K], counts[64 * 3], row_src[TMAX * K];
    for (int i = 0; i < T * DD; i++) x[i] = (float)(i % 7);
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) ids[t * K + k] = (t + k) % E, w[t * K + k] = 0.5f;
    char *send = moe_xcalloc((size_t)T * K, wb), *recv = moe_xcalloc((size_t)W * T * K, wb);
    char *ret = moe_xcalloc((size_t)T * K, rb);
    OK(moe_comm_dispatch_pack(pl, T, x, ids, w, counts, send, row_src));
    OK(moe_comm_exchange_counts(pl, counts));
    const int64_t R = 3 * M;
    for (int d = 0; d < W; d++) {
        fails += check("dedup rows to a peer", "[0]", counts[d * (1 + El)], R);
        for (int j = 0; j < El; j++)
            fails += check("dedup pairs for an expert", "[1+j]", counts[d * (1 + El) + 1 + j],
                           (int64_t)K * M);
    }
    OK(moe_comm_exchange(pl, MOE_COMM_FORWARD, wb, send, recv, NULL, NULL));
    OK(moe_comm_exchange(pl, MOE_COMM_REVERSE, rb, recv, ret, NULL, NULL));
    moe_comm_bytes want = expect_bytes(c, mode, R, (int64_t)wb),
                   back = expect_bytes(c, mode, R, (int64_t)rb);
    want.sent_intra += back.sent_intra, want.sent_inter += back.sent_inter;
    want.recv_intra += back.recv_intra, want.recv_inter += back.recv_inter;
    char what[128];
    snprintf(what, sizeof what, "dedup W=%d node_size=%d mode=%d", W, node_size, mode);
    const moe_comm_bytes got = moe_comm_plan_bytes(pl);
    fails += check_bytes(what, got, want);
    // Against the same routing without dedup (4M rows of rb each way): fewer bytes.
    const moe_comm_bytes none = expect_bytes(c, mode, 4 * M, 2 * (int64_t)rb);
    if (got.sent_intra + got.sent_inter >= none.sent_intra + none.sent_inter) {
        fprintf(stderr, "FAIL %s: %lld bytes sent, not fewer than %lld without dedup\n", what,
                (long long)(got.sent_intra + got.sent_inter),
                (long long)(none.sent_intra + none.sent_inter));
        fails++;
    }
    free(send);
    free(recv);
    free(ret);
    moe_comm_plan_free(pl);
    return test_world_fails(c, fails);
}

int main(int argc, char **argv) {
    const int W = test_mpi_start(&argc, &argv);
    MOE_ASSERT(W <= 64);
    int fails = 0, runs = 0;
    const int sizes[3] = {0, 1, 2}; // real nodes, every rank a node, pairs of ranks
    for (int i = 0; i < 3; i++) {
        if (sizes[i] > 0 && W % sizes[i]) continue;
        for (int mode = 0; mode < 4; mode++)
            for (int dt = 0; dt < 2; dt++, runs++)
                fails += run(sizes[i], mode, dt ? MOE_COMM_BF16 : MOE_COMM_F32);
        for (int mode = 0; mode < 4; mode += 1 + (mode == 1), runs++) // flat, chunked, hier
            fails += run_dedup(sizes[i], mode);
    }
    // bf16 with dedup is refused with the reason.
    moe_comm *c;
    OK(moe_comm_create(&(moe_comm_params){1, 2, 0, 1}, &c));
    moe_comm_plan_params pp = {MOE_COMM_EP, 2, 2, 1, 16, 8, 8, 1, 0, 0, MOE_COMM_BF16};
    moe_comm_plan *pl = NULL;
    moe_status st = moe_comm_plan_create(c, &pp, &pl);
    if (st != MOE_EINVAL || !strstr(moe_last_error(), "dedup") || pl) {
        fprintf(stderr, "FAIL bf16 + dedup: status %d, message '%s'\n", st, moe_last_error());
        fails++;
    }
    moe_comm_free(c);
    if (g_rank == 0) printf("%d runs at W=%d, %d failures\n", runs, W, fails);
    OK(moe_comm_finalize());
    return fails ? 1 : 0;
}
