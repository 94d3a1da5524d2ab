// ep-node.c: the node relay of node-level dedup (ep-node.h). Hop A is a dedup exchange plan over
// the EP group whose "local experts" are a node's experts (q_max·El, q_max = most ranks of the
// group on one node): a token's row goes once to each node holding some of its experts, to the
// landing rank there with the source's position in its own node (modulo the node's rank count),
// so landing work spreads over the node. Rows to the source's own node land on itself (a
// self-send: no link). Sums of what comes back are fp32.
#include "ep-node.h"

#include <string.h>

struct moe_ep_node {
    moe_comm_plan *xa; // hop A
    int El, Kx, P, qmax, me;
    int64_t D, T_max, A_max;
    size_t wb, rb;
    int *node;                      // (P) node of each EP rank (dense 0..)
    int *pos;                       // (P) position of each EP rank inside its node
    int *cnt;                       // (P) ranks of node n in the group (first n_nodes entries used)
    int *member;                    // (P, qmax) EP rank of member m of node n
    int32_t *ida;                   // (T_max, Kx) hop-A ids
    int32_t *counts, *row_src;      // (P, 1+qmax·El), (T_max·Kx)
    char *send, *recv, *back, *ret; // (T_max·Kx, wb), (A_max, wb), (A_max, wb), (T_max·Kx, wb)
    float *xa_rows, *wa;            // (A_max, D), (A_max, Kx)
    int32_t *ids_a;                 // (A_max, Kx)
    int64_t A;                      // rows arrived in the last dispatch
};

moe_status moe_ep_node_create(moe_comm *c, int El, int Kx, int64_t D, int64_t T_max,
                              moe_ep_node **out) {
    *out = NULL;
    const int P = moe_comm_size(c, MOE_COMM_EP);
    moe_ep_node *N = moe_xcalloc(1, sizeof *N);
    N->El = El, N->Kx = Kx, N->P = P, N->D = D, N->T_max = T_max;
    N->me = moe_comm_rank(c, MOE_COMM_EP);
    N->node = moe_xcalloc((size_t)P, sizeof(int));
    N->pos = moe_xcalloc((size_t)P, sizeof(int));
    N->cnt = moe_xcalloc((size_t)P, sizeof(int));
    int *wnode = moe_xcalloc((size_t)P, sizeof(int)), n_nodes = 0;
    for (int r = 0; r < P; r++) { // dense node ids in order of first appearance
        const int wn = moe_comm_node_of(c, moe_comm_world_rank_of(c, MOE_COMM_EP, r));
        int n = 0;
        while (n < n_nodes && wnode[n] != wn) n++;
        if (n == n_nodes) wnode[n_nodes++] = wn;
        N->node[r] = n, N->pos[r] = N->cnt[n]++;
    }
    free(wnode);
    for (int n = 0; n < n_nodes; n++) N->qmax = N->cnt[n] > N->qmax ? N->cnt[n] : N->qmax;
    N->member = moe_xcalloc((size_t)P * (size_t)N->qmax, sizeof(int));
    for (int r = 0; r < P; r++) N->member[N->node[r] * N->qmax + N->pos[r]] = r;
    const int64_t Rs = T_max * Kx > 1 ? T_max * Kx : 1;
    N->A_max = (int64_t)P * T_max > 1 ? (int64_t)P * T_max : 1;
    moe_comm_plan_params pp = {MOE_COMM_EP, N->qmax * El, Kx, 1, (size_t)D * sizeof(float),
                               Rs,          N->A_max,     1,  0, 0,
                               MOE_COMM_F32};
    moe_status st = moe_comm_plan_create(c, &pp, &N->xa);
    if (st) {
        moe_ep_node_free(N);
        return st;
    }
    N->wb = moe_comm_plan_wire_bytes(N->xa), N->rb = moe_comm_plan_row_bytes(N->xa);
    N->ida = moe_xcalloc((size_t)Rs, sizeof(int32_t));
    N->counts = moe_xcalloc((size_t)P * (size_t)(1 + N->qmax * El), sizeof(int32_t));
    N->row_src = moe_xcalloc((size_t)Rs, sizeof(int32_t));
    N->send = moe_xalloc_aligned((size_t)Rs * N->wb);
    N->ret = moe_xalloc_aligned((size_t)Rs * N->wb);
    N->recv = moe_xalloc_aligned((size_t)N->A_max * N->wb);
    N->back = moe_xalloc_aligned((size_t)N->A_max * N->wb);
    N->xa_rows = moe_xalloc_aligned((size_t)(N->A_max * D) * sizeof(float));
    N->wa = moe_xcalloc((size_t)(N->A_max * Kx), sizeof(float));
    N->ids_a = moe_xcalloc((size_t)(N->A_max * Kx), sizeof(int32_t));
    *out = N;
    return MOE_OK;
}

void moe_ep_node_free(moe_ep_node *N) {
    if (!N) return;
    moe_comm_plan_free(N->xa);
    free(N->node);
    free(N->pos);
    free(N->cnt);
    free(N->member);
    free(N->ida);
    free(N->counts);
    free(N->row_src);
    free(N->send);
    free(N->ret);
    free(N->recv);
    free(N->back);
    free(N->xa_rows);
    free(N->wa);
    free(N->ids_a);
    free(N);
}

int64_t moe_ep_node_max_rows(const moe_ep_node *N) { return N->A_max; }
moe_comm_bytes moe_ep_node_bytes(const moe_ep_node *N) { return moe_comm_plan_bytes(N->xa); }

// Node-local index of global expert e: (position of its owner in the node)·El + e mod El.
static int node_local(const moe_ep_node *N, int e) { return N->pos[e / N->El] * N->El + e % N->El; }
// Global expert of node-local index j on node n.
static int global_of(const moe_ep_node *N, int n, int j) {
    return N->member[n * N->qmax + j / N->El] * N->El + j % N->El;
}

moe_status moe_ep_node_dispatch(moe_ep_node *N, int64_t T, const float *x, const int32_t *ids,
                                const float *w, int64_t *A, const float **xa, const int32_t **ids_a,
                                const float **w_a) {
    const int Kx = N->Kx, El_a = N->qmax * N->El, mypos = N->pos[N->me];
    for (int64_t i = 0; i < T * Kx; i++) {
        const int e = ids[i];
        if (e < 0) {
            N->ida[i] = -1;
            continue;
        }
        const int n = N->node[e / N->El];
        const int land = N->member[n * N->qmax + mypos % N->cnt[n]];
        N->ida[i] = land * El_a + node_local(N, e);
    }
    moe_status st = moe_comm_dispatch_pack(N->xa, T, x, N->ida, w, N->counts, N->send, N->row_src);
    if (!st) st = moe_comm_exchange_counts(N->xa, N->counts);
    if (!st) st = moe_comm_exchange(N->xa, MOE_COMM_FORWARD, N->wb, N->send, N->recv, NULL, NULL);
    if (st) return st;
    const int32_t *rr = moe_comm_plan_counts(N->xa, MOE_COMM_REVERSE);
    const int mynode = N->node[N->me];
    int64_t u = 0;
    for (int s = 0; s < N->P; s++)
        for (int32_t i = 0; i < rr[(size_t)s * (size_t)(1 + El_a)]; i++, u++) {
            const char *row = N->recv + (size_t)u * N->wb;
            memcpy(N->xa_rows + u * N->D, row, (size_t)N->D * sizeof(float));
            const moe_comm_slot *sl = (const moe_comm_slot *)(row + N->rb);
            for (int k = 0; k < Kx; k++) {
                const int ok = sl[k].expert >= 0;
                N->ids_a[u * Kx + k] = ok ? global_of(N, mynode, sl[k].expert) : -1;
                N->wa[u * Kx + k] = ok ? sl[k].weight : 0.0f;
            }
        }
    N->A = u;
    *A = u, *xa = N->xa_rows, *ids_a = N->ids_a, *w_a = N->wa;
    return MOE_OK;
}

moe_status moe_ep_node_combine(moe_ep_node *N, const float *ya, int64_t T, float *y) {
    // The landing side sends back one token row per arrived row, in arrival order.
    memcpy(N->back, ya, (size_t)(N->A * N->D) * sizeof(float));
    moe_status st = moe_comm_exchange(N->xa, MOE_COMM_REVERSE, N->rb, N->back, N->ret, NULL, NULL);
    if (st) return st;
    moe_comm_combine_unpack(N->xa, N->ret, N->row_src, NULL, T, y); // dedup: w = 1
    return MOE_OK;
}

moe_status moe_ep_node_combine_backward(moe_ep_node *N, const float *dy, const float **dya) {
    const int64_t R = moe_comm_plan_rows(N->xa, MOE_COMM_FORWARD);
    for (int64_t u = 0; u < R; u++)
        memcpy(N->send + (size_t)u * N->rb, dy + (int64_t)N->row_src[u] * N->D, N->rb);
    moe_status st = moe_comm_exchange(N->xa, MOE_COMM_FORWARD, N->rb, N->send, N->recv, NULL, NULL);
    *dya = (const float *)N->recv; // rows of rb = D floats, contiguous
    return st;
}

moe_status moe_ep_node_dispatch_backward(moe_ep_node *N, const float *dxa, const float *drw_a,
                                         const int32_t *ids, int64_t T, float *dx, float *drw) {
    const int Kx = N->Kx, El_a = N->qmax * N->El;
    const int64_t D = N->D;
    for (int64_t u = 0; u < N->A; u++) {
        char *row = N->back + (size_t)u * N->wb;
        memcpy(row, dxa + u * D, (size_t)D * sizeof(float));
        moe_comm_slot *sl = (moe_comm_slot *)(row + N->rb);
        int n = 0;
        for (int k = 0; k < Kx; k++) {
            sl[k] = (moe_comm_slot){-1, 0.0f};
            const int e = N->ids_a[u * Kx + k];
            if (e >= 0) sl[n++] = (moe_comm_slot){node_local(N, e), drw_a[u * Kx + k]};
        }
    }
    moe_status st = moe_comm_exchange(N->xa, MOE_COMM_REVERSE, N->wb, N->back, N->ret, NULL, NULL);
    if (st) return st;
    const int32_t *sr = moe_comm_plan_counts(N->xa, MOE_COMM_FORWARD);
    int64_t u = 0;
    for (int d = 0; d < N->P; d++)
        for (int32_t i = 0; i < sr[(size_t)d * (size_t)(1 + El_a)]; i++, u++) {
            const int64_t t = N->row_src[u];
            MOE_ASSERT(t >= 0 && t < T);
            const char *row = N->ret + (size_t)u * N->wb;
            const float *b = (const float *)row;
            for (int64_t k = 0; k < D; k++) dx[t * D + k] += b[k];
            const moe_comm_slot *sl = (const moe_comm_slot *)(row + N->rb);
            for (int k = 0; k < Kx && sl[k].expert >= 0; k++) {
                const int e = global_of(N, N->node[d], sl[k].expert);
                int q = 0;
                while (q < Kx && ids[t * Kx + q] != e) q++;
                MOE_ASSERT(q < Kx);
                drw[t * Kx + q] = sl[k].weight;
            }
        }
    return MOE_OK;
}
