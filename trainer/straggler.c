// straggler.c: rank 0's straggler lines — every rank's compute and wait seconds per step (agreed
// by moe_train_step, no extra collective) summed over the window between two progress lines; at
// each progress line one line when a rank is slow or when the exchange has slowed for everyone.
// Trade-off: window means, not per-step figures, and only differences that cost at least 10 % of
// the step, so noise never names a rank; and a slow link is named as a link between nodes, not as
// a rank: in an all-to-all every rank waits for the slowest pair, so a link's slowness shows on
// both of its sides alike.
#include "train-impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct moe_straggler {
    int W;
    double ratio;
    double *compute, *wait; // (W) sums over the window
    int64_t n;              // steps in the window
    int64_t seen;           // steps seen in all (the run's first step is start-up: skipped)
    double base_wait;       // mean wait per step (over ranks) of the first window; < 0: not yet
    const moe_comm *c;
};

moe_straggler *moe_straggler_create(const moe_comm *c, int world, double ratio) {
    if (ratio <= 0 || world < 2) return NULL;
    moe_straggler *s = moe_xcalloc(1, sizeof *s);
    s->W = world, s->ratio = ratio, s->c = c, s->base_wait = -1;
    s->compute = moe_xcalloc((size_t)world, sizeof(double));
    s->wait = moe_xcalloc((size_t)world, sizeof(double));
    return s;
}

void moe_straggler_free(moe_straggler *s) {
    if (!s) return;
    free(s->compute);
    free(s->wait);
    free(s);
}

void moe_straggler_add(moe_straggler *s, const double *compute, const double *wait) {
    if (!s || s->seen++ == 0) return;
    for (int r = 0; r < s->W; r++) s->compute[r] += compute[r], s->wait[r] += wait[r];
    s->n++;
}

// "rank R on HOST", or "rank R" when the host is unknown.
static void moe_straggler_name(const moe_straggler *s, int r, char *buf, size_t cap) {
    const char *h = moe_comm_host_of(s->c, r);
    if (h && *h)
        snprintf(buf, cap, "rank %d on %s", r, h);
    else
        snprintf(buf, cap, "rank %d", r);
}

// The nodes of the job, "node1, node2" (hosts of the first rank of each node), into buf.
static void moe_straggler_nodes(const moe_straggler *s, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    int last = -1;
    for (int r = 0; r < s->W && len + 1 < cap; r++) {
        const int node = moe_comm_node_of(s->c, r);
        if (node <= last) continue;
        last = node;
        const char *h = moe_comm_host_of(s->c, r);
        int n = snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", h && *h ? h : "?");
        if (n < 0 || (size_t)n >= cap - len) break;
        len += (size_t)n;
    }
}

int moe_straggler_report(moe_straggler *s, char *buf, size_t cap) {
    buf[0] = 0;
    if (!s || s->n == 0) return 0;
    const double n = (double)s->n;
    int slow = 0, fast = 0, calm = 0; // longest compute, shortest compute, shortest wait
    double step = 0;                  // mean over ranks, per step
    for (int r = 0; r < s->W; r++) {
        if (s->compute[r] > s->compute[slow]) slow = r;
        if (s->compute[r] < s->compute[fast]) fast = r;
        if (s->wait[r] < s->wait[calm]) calm = r;
        step += (s->compute[r] + s->wait[r]) / n / s->W;
    }
    const double cs = s->compute[slow] / n, cf = s->compute[fast] / n;
    // The exchange's own time is the wait of the rank that waits least (a slow rank waits least:
    // the others wait for it; a slow link makes every rank wait, that one included).
    const double wait = s->wait[calm] / n;
    // A difference worth a line costs the step at least 10 % (a 1.6x of 1 ms in a 9 ms step is
    // noise, not a straggler).
    const double spread = cf > 0 && cs - cf >= 0.1 * step ? cs / cf : 1;
    size_t len = 0;
    if (spread >= s->ratio) {
        char a[MOE_COMM_HOST_LEN + 32], b[MOE_COMM_HOST_LEN + 32];
        moe_straggler_name(s, slow, a, sizeof a);
        moe_straggler_name(s, fast, b, sizeof b);
        snprintf(buf, cap,
                 "straggler: %s computes %.1f ms/step, %.1fx the fastest (%s, %.1f ms); the others "
                 "wait %.1f ms/step for it",
                 a, 1e3 * cs, spread, b, 1e3 * cf, 1e3 * s->wait[fast] / n);
        len = strlen(buf);
    }
    if (s->base_wait < 0) {
        s->base_wait = wait; // the first window is the exchange's reference
    } else if (s->base_wait > 0 && wait >= s->ratio * s->base_wait &&
               wait - s->base_wait >= 0.1 * step && len + 1 < cap) {
        char nodes[256];
        moe_straggler_nodes(s, nodes, sizeof nodes);
        const int multi = moe_comm_get_info(s->c).n_nodes > 1;
        snprintf(buf + len, cap - len,
                 "%sstraggler: the exchange is slow for every rank: even the rank waiting least "
                 "waits %.1f ms/step in the exchange and gradient sync, %.1fx the first steps' "
                 "%.1f ms: %s (%s: %s), not a slow rank",
                 len ? "\n" : "", 1e3 * wait, wait / s->base_wait, 1e3 * s->base_wait,
                 multi ? "a slow link between the nodes"
                       : "the node's CPUs or memory shared with other work",
                 multi ? "nodes" : "host", nodes[0] ? nodes : "?");
    }
    memset(s->compute, 0, (size_t)s->W * sizeof(double));
    memset(s->wait, 0, (size_t)s->W * sizeof(double));
    s->n = 0;
    return buf[0] != 0;
}
