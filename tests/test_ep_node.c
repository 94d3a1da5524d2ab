// test_ep_node.c: the node relay of node-level dedup (trainer/ep/ep-node.h) on a
// hand-computable routing with fake nodes: token t → experts t and t+1 (mod E), El = 2 experts
// per rank. The rows that cross between nodes are counted exactly, and they are fewer than per-rank
// dedup's and than one row per pair; the relay's four hops carry the right values (rows arrive
// once per (token, node), sums come back, dL/dw slots find their pairs).
#include "ep-node.h"
#include "test-util.h"
#include "test-mpi.h"

#include <string.h>

enum { D = 8, K = 2, M = 3, El = 2 };

static int check(const char *what, int64_t got, int64_t want) {
    if (got == want) return 0;
    fprintf(stderr, "FAIL [rank %d] %s: expected %lld got %lld\n", g_rank, what, (long long)want,
            (long long)got);
    return 1;
}

// W = 2, one rank per node: of 4 experts, node 0 holds 0-1. t mod 4 = 0 stays home, 1 and 3 go
// to both nodes, 2 goes to the other: 3M rows leave each source (M per residue). W = 4, nodes of
// 2 ranks: node 0 holds experts 0-3; a source sends the other node t mod 8 = 3..7 (node 0) or
// 7, 0..3 (node 1): 5M rows — per-rank dedup would send 6M rows to other-node ranks, one row
// per pair 8M. Each crossing row is wire bytes out (4D + 8K) and a token row back (4D).
static int run(int node_size) {
    moe_comm *c;
    OK(moe_comm_create(&(moe_comm_params){1, 0, 0, 1}, &c));
    const int W = moe_comm_size(c, MOE_COMM_WORLD);
    moe_comm_free(c);
    const int E = W * El, T = E * M;
    OK(moe_comm_create(&(moe_comm_params){W, E, node_size, 1}, &c));
    moe_ep_node *N;
    OK(moe_ep_node_create(c, El, K, D, T, &N));
    static float x[64 * D], w[64 * K], y[64 * D], ya[256 * D], drwa[256 * K], dx[64 * D],
        drw[64 * K];
    static int32_t ids[64 * K];
    for (int t = 0; t < T; t++) {
        for (int d = 0; d < D; d++) x[t * D + d] = (float)(g_rank * 100 + t) + 0.125f * (float)d;
        for (int k = 0; k < K; k++) ids[t * K + k] = (t + k) % E, w[t * K + k] = 0.25f * (k + 1);
    }
    int64_t A;
    const float *xa, *wa, *dya;
    const int32_t *ida;
    int fails = 0;
    OK(moe_ep_node_dispatch(N, T, x, ids, w, &A, &xa, &ida, &wa));
    // Landing side: sum w over the node's pairs (the experts "return" w·x), dL/dw = id + 0.5.
    for (int64_t u = 0; u < A; u++) {
        float s = 0;
        for (int k = 0; k < K; k++) {
            if (ida[u * K + k] >= 0) s += wa[u * K + k];
            drwa[u * K + k] = (float)ida[u * K + k] + 0.5f;
        }
        for (int d = 0; d < D; d++) ya[u * D + d] = s * xa[u * D + d];
    }
    memset(y, 0, sizeof y);
    OK(moe_ep_node_combine(N, ya, T, y));
    for (int i = 0; i < T * D; i++)
        if (y[i] != 0.75f * x[i] && fails++ < 5)
            fprintf(stderr, "FAIL [rank %d] combine y[%d]: expected %g got %g\n", g_rank, i,
                    0.75f * x[i], y[i]);
    OK(moe_ep_node_combine_backward(N, x, &dya));
    fails += check("dy rows arrive as the dispatched rows",
                   memcmp(dya, xa, (size_t)A * D * sizeof(float)) != 0, 0);
    memset(dx, 0, sizeof dx);
    OK(moe_ep_node_dispatch_backward(N, dya, drwa, ids, T, dx, drw));
    for (int t = 0; t < T; t++) {
        const int n0 = ids[t * K] / (El * (node_size ? node_size : W)),
                  n1 = ids[t * K + 1] / (El * (node_size ? node_size : W));
        const float nodes = n0 == n1 ? 1.0f : 2.0f;
        for (int d = 0; d < D; d++)
            fails += check("dx = rows × nodes", dx[t * D + d] != nodes * x[t * D + d], 0);
        for (int k = 0; k < K; k++)
            fails += check("dL/dw to its pair", drw[t * K + k] != (float)ids[t * K + k] + 0.5f, 0);
    }
    // Bytes of the four hops: rows that cross ×(wire + token row) × 2 (forward + backward).
    const moe_comm_bytes b = moe_ep_node_bytes(N);
    const int64_t wb = 4 * D + 8 * K, rb = 4 * D;
    if (node_size > 0 || W == 1) {
        const int64_t rows = W == 1 ? 0 : W == 2 ? 3 * M : 5 * M;
        char what[96];
        snprintf(what, sizeof what, "W=%d node_size=%d sent_inter", W, node_size);
        fails += check(what, b.sent_inter, 2 * rows * (wb + rb));
        fails += check("recv_inter", b.recv_inter, 2 * rows * (wb + rb));
        fails += check("sent_intra (own node lands on itself)", b.sent_intra, 0);
        if (W == 4 && b.sent_inter >= 2 * 6 * M * (wb + rb))
            fails += check("fewer than rank", 1, 0);
    }
    moe_ep_node_free(N);
    return test_world_fails(c, fails);
}

int main(int argc, char **argv) {
    const int W = test_mpi_start(&argc, &argv);
    MOE_ASSERT(W <= 4);
    // W = 1: one node; W = 2: a node per rank; W = 4: nodes of 2 ranks.
    const int fails = run(W == 1 ? 0 : W / 2);
    if (g_rank == 0) printf("node relay at W=%d: %d failures\n", W, fails);
    OK(moe_comm_finalize());
    return fails ? 1 : 0;
}
