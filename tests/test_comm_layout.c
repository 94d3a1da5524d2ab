// test_comm_layout.c: the layout rule. The pure check refuses bad (W, EP, E) with the numbers in the
// message; moe_comm_create refuses them at the running W; valid layouts give EP/EDP groups that
// partition the world, are consecutive inside (fake) nodes, and agree with the rank maps. Also the
// topology query and the BLAS-threads rule (OPENBLAS_NUM_THREADS wins).
#include "comm.h"
#include "test-util.h"

#include <string.h>

// The message must contain every number given (as decimal text).
static void expect_refused(moe_status st, const int *nums, int n, const char *what) {
    CHECK(st == MOE_ELAYOUT, "%s: expected MOE_ELAYOUT (%d), got %d (%s)", what, MOE_ELAYOUT, st,
          moe_last_error());
    for (int i = 0; i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%d", nums[i]);
        CHECK(strstr(moe_last_error(), buf) != NULL, "%s: message does not name %d: '%s'", what,
              nums[i], moe_last_error());
    }
}

static void test_pure(void) {
    CHECK(moe_comm_check_layout(4, 2, 8) == MOE_OK, "(4,2,8) valid: %s", moe_last_error());
    CHECK(moe_comm_check_layout(6, 3, 6) == MOE_OK, "(6,3,6) valid: %s", moe_last_error());
    CHECK(moe_comm_check_layout(1, 1, 0) == MOE_OK, "(1,1,0) valid: %s", moe_last_error());
    CHECK(moe_comm_check_layout(8, 8, 64) == MOE_OK, "(8,8,64) valid: %s", moe_last_error());
    expect_refused(moe_comm_check_layout(4, 3, 6), (int[]){3, 4}, 2, "EP 3 on 4 ranks");
    expect_refused(moe_comm_check_layout(4, 0, 8), (int[]){0}, 1, "EP 0");
    expect_refused(moe_comm_check_layout(4, -2, 8), (int[]){-2}, 1, "EP -2");
    expect_refused(moe_comm_check_layout(4, 4, 6), (int[]){4, 6}, 2, "EP 4 with 6 experts");
    expect_refused(moe_comm_check_layout(2, 4, 8), (int[]){4, 2}, 2, "EP 4 on 2 ranks");
    expect_refused(moe_comm_check_layout(0, 1, 8), (int[]){0}, 1, "world 0");
}

static void test_create_refused(int W) {
    moe_comm *c = (moe_comm *)&c; // must be reset to NULL on refusal
    moe_comm_params p = {W + 1, 8 * (W + 1), 0, 1};
    expect_refused(moe_comm_create(&p, &c), (int[]){W + 1, W}, 2, "create with EP = W+1");
    CHECK(c == NULL, "refused create left a handle");
    if (W % 3) {
        p = (moe_comm_params){3, 6, 0, 1};
        expect_refused(moe_comm_create(&p, &c), (int[]){3, W}, 2, "create with EP 3");
    }
    p = (moe_comm_params){W, 2 * W + 1, 0, 1};
    if (W > 1)
        expect_refused(moe_comm_create(&p, &c), (int[]){W, 2 * W + 1}, 2,
                       "create with E not divisible");
    p = (moe_comm_params){0, 8, 0, 1};
    expect_refused(moe_comm_create(&p, &c), (int[]){0}, 1, "create with EP 0");
}

static void test_groups(int W, int ep, int fake) {
    moe_comm *c;
    moe_comm_params p = {ep, 8, fake, 1};
    OK(moe_comm_create(&p, &c));
    moe_comm_info in = moe_comm_get_info(c);
    char tag[64];
    snprintf(tag, sizeof tag, "W=%d EP=%d fake_node=%d", W, ep, fake);
    CHECK(in.ep_size * in.edp_size == W, "%s: EP %d x EDP %d != W", tag, in.ep_size, in.edp_size);
    CHECK(in.n_local_experts == 8 / ep && in.first_expert == in.ep_rank * (8 / ep),
          "%s: local experts %d first %d", tag, in.n_local_experts, in.first_expert);
    // Every rank publishes (ep_index, ep_rank, node); all must form a consistent partition.
    int64_t tab[3 * 16] = {0};
    MOE_ASSERT(W <= 16);
    tab[3 * in.world_rank] = in.ep_index + 1;
    tab[3 * in.world_rank + 1] = in.ep_rank + 1;
    tab[3 * in.world_rank + 2] = in.node_index + 1;
    OK(moe_comm_allreduce_i64(c, MOE_COMM_WORLD, tab, 3 * (size_t)W, MOE_COMM_SUM));
    for (int r = 0; r < W; r++) {
        int gi = (int)tab[3 * r] - 1, gr = (int)tab[3 * r + 1] - 1;
        // One real node (or fake blocks of consecutive ranks): placement order is world order,
        // so EP group i is ranks [i*EP, (i+1)*EP).
        CHECK(gi == r / ep && gr == r % ep, "%s: rank %d in ep group %d rank %d, expected %d/%d",
              tag, r, gi, gr, r / ep, r % ep);
        if (fake)
            CHECK(tab[3 * r + 2] - 1 == r / fake, "%s: rank %d on node %lld, expected %d", tag, r,
                  (long long)tab[3 * r + 2] - 1, r / fake);
    }
    for (int i = 0; i < ep; i++)
        CHECK(moe_comm_world_rank_of(c, MOE_COMM_EP, i) == in.ep_index * ep + i,
              "%s: EP rank %d is world %d", tag, i, moe_comm_world_rank_of(c, MOE_COMM_EP, i));
    for (int i = 0; i < W / ep; i++)
        CHECK(moe_comm_world_rank_of(c, MOE_COMM_EDP, i) == i * ep + in.ep_rank,
              "%s: EDP rank %d is world %d", tag, i, moe_comm_world_rank_of(c, MOE_COMM_EDP, i));
    // EP groups inside nodes exactly when every node's size is a multiple of EP.
    int in_node = 1;
    if (fake) {
        for (int r = 0; r < W; r++)
            if (r % ep && (r / fake) != ((r - 1) / fake)) in_node = 0;
    }
    CHECK(in.ep_in_node == in_node, "%s: ep_in_node %d, expected %d", tag, in.ep_in_node, in_node);
    // The EP communicator really is that group: a sum over it counts EP ranks.
    int64_t one = 1, sum_rank = in.world_rank;
    OK(moe_comm_allreduce_i64(c, MOE_COMM_EP, &one, 1, MOE_COMM_SUM));
    OK(moe_comm_allreduce_i64(c, MOE_COMM_EP, &sum_rank, 1, MOE_COMM_SUM));
    int64_t want = 0;
    for (int i = 0; i < ep; i++) want += in.ep_index * ep + i;
    CHECK(one == ep && sum_rank == want, "%s: EP group sums %lld ranks / %lld, expected %d / %lld",
          tag, (long long)one, (long long)sum_rank, ep, (long long)want);
    moe_comm_free(c);
}

static void test_topo(moe_comm *c) {
    moe_comm_topo t;
    OK(moe_comm_topo_query(&t));
    CHECK(t.pus >= 1 && t.cores >= 1 && t.cores <= t.pus && t.bound_pus >= 1 &&
              t.bound_pus <= t.pus,
          "topology: %d cores, %d PUs, %d bound PUs", t.cores, t.pus, t.bound_pus);
    int n = 0;
    setenv("OPENBLAS_NUM_THREADS", "3", 1);
    OK(moe_comm_blas_threads(c, &n));
    CHECK(n == 3, "OPENBLAS_NUM_THREADS=3 must win, got %d", n);
    unsetenv("OPENBLAS_NUM_THREADS");
    OK(moe_comm_blas_threads(c, &n));
    int q = moe_comm_size(c, MOE_COMM_NODE);
    int hi =
        t.bound ? (t.bound_cores > 1 ? t.bound_cores : 1) : (t.cores / q > 1 ? t.cores / q : 1);
    CHECK(n >= 1 && n <= hi, "BLAS threads %d not in [1, %d] (cores %d, bound %d, node ranks %d)",
          n, hi, t.cores, t.bound, q);
}

int main(int argc, char **argv) {
    OK(moe_comm_init(&argc, &argv));
    OK(moe_comm_init(&argc, &argv)); // idempotent
    test_pure();
    moe_comm *c;
    moe_comm_params p = {1, 0, 0, 1};
    OK(moe_comm_create(&p, &c));
    const int W = moe_comm_size(c, MOE_COMM_WORLD);
    g_rank = moe_comm_rank(c, MOE_COMM_WORLD);
    test_create_refused(W);
    for (int ep = 1; ep <= W; ep++)
        if (W % ep == 0 && 8 % ep == 0) {
            test_groups(W, ep, 0);
            for (int fake = 1; fake < W; fake++) test_groups(W, ep, fake);
        }
    test_topo(c);
    moe_comm_free(NULL);
    int64_t fails = g_fail;
    OK(moe_comm_allreduce_i64(c, MOE_COMM_WORLD, &fails, 1, MOE_COMM_SUM));
    moe_comm_printf(c, "test_comm_layout (W=%d): %s (%lld failed checks)\n", W,
                    fails ? "FAIL" : "ok", (long long)fails);
    moe_comm_free(c);
    OK(moe_comm_finalize());
    return fails ? 1 : 0;
}
