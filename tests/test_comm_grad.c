// test_comm_grad.c: gradient scaling is layout-invariant — a toy model (dense w, experts V) whose
// per-rank loss is the mean over its slice of a global batch; the expert gradient is accumulated on
// the owning rank through the real dispatch exchange, then synced over EDP; both must equal the
// single-rank gradient for every EP. Also the small collectives against hand-computed values.
#include "comm.h"
#include "test-util.h"

#include <math.h>
#include <string.h>

enum { B = 24, N = 5, E = 8 };

static float xval(int b, int i) { return (float)((b * 7 + i * 3) % 11) / 11.0f - 0.4f; }
static float yval(int b) { return (float)((b * 5) % 7) / 7.0f; }
static int route(int b) { return (b * 5 + 3) % E; }
static float wval(int i) { return 0.1f * (float)(i + 1); }
static float vval(int e, int i) { return 0.05f * (float)((e + 2 * i) % 5) - 0.1f; }

// Residual of sample b: prediction (w + v_e) . x - y; loss 0.5 r^2; d/dw = d/dv_e = r x.
static double resid(int b) {
    double p = 0;
    for (int i = 0; i < N; i++) p += (double)(wval(i) + vval(route(b), i)) * xval(b, i);
    return p - yval(b);
}

static void test_invariance(int W, int ep) {
    moe_comm *c;
    moe_comm_params p = {ep, E, 0, 1};
    OK(moe_comm_create(&p, &c));
    moe_comm_info in = moe_comm_get_info(c);
    const int El = in.n_local_experts, Tr = B / W, b0 = in.world_rank * Tr;
    // Rank loss = mean over its Tr samples: per-sample gradient rows scaled by 1/Tr.
    float dw[N] = {0}, rows[B * N];
    int32_t ids[B];
    for (int t = 0; t < Tr; t++) {
        int b = b0 + t;
        double r = resid(b);
        for (int i = 0; i < N; i++) {
            rows[t * N + i] = (float)(r * xval(b, i) / Tr);
            dw[i] += rows[t * N + i];
        }
        ids[t] = route(b);
    }
    // Expert gradient rows travel to the rank owning the expert (the dispatch path).
    moe_comm_plan_params pp = {MOE_COMM_EP,     El, 1, 0, N * sizeof(float), B,
                               (int64_t)B * ep, 1,  0, 0, MOE_COMM_F32};
    moe_comm_plan *pl;
    OK(moe_comm_plan_create(c, &pp, &pl));
    float *send = calloc((size_t)B * N, sizeof(float)),
          *recv = calloc((size_t)B * ep * N, sizeof(float));
    float dv[E * N] = {0};
    int32_t *counts = calloc((size_t)ep * (1 + El), sizeof(int32_t)), row_src[B];
    OK(moe_comm_dispatch_pack(pl, Tr, rows, ids, NULL, counts, send, row_src));
    OK(moe_comm_exchange_counts(pl, counts));
    OK(moe_comm_exchange(pl, MOE_COMM_FORWARD, N * sizeof(float), send, recv, NULL, NULL));
    // Without dedup the rows from each source arrive grouped by local expert ([1+j] rows for j).
    const int32_t *rr = moe_comm_plan_counts(pl, MOE_COMM_REVERSE);
    int64_t u = 0;
    for (int s = 0; s < ep; s++)
        for (int j = 0; j < El; j++)
            for (int32_t q = 0; q < rr[s * (1 + El) + 1 + j]; q++, u++)
                for (int i = 0; i < N; i++) dv[j * N + i] += recv[u * N + i];
    OK(moe_comm_sync_grads(c, MOE_COMM_GRAD_DENSE, dw, N));
    OK(moe_comm_sync_grads(c, MOE_COMM_GRAD_EXPERT, dv, (size_t)El * N));
    // Single-rank reference: mean over the whole batch.
    for (int i = 0; i < N; i++) {
        double ref = 0;
        for (int b = 0; b < B; b++) ref += resid(b) * xval(b, i) / B;
        CHECK(fabs(dw[i] - ref) <= 1e-5 * (1e-3 + fabs(ref)),
              "W=%d EP=%d dense grad[%d]: expected %.8g got %.8g", W, ep, i, ref, dw[i]);
    }
    for (int j = 0; j < El; j++)
        for (int i = 0; i < N; i++) {
            double ref = 0;
            for (int b = 0; b < B; b++)
                if (route(b) == in.first_expert + j) ref += resid(b) * xval(b, i) / B;
            CHECK(fabs(dv[j * N + i] - ref) <= 1e-5 * (1e-3 + fabs(ref)),
                  "W=%d EP=%d expert %d grad[%d]: expected %.8g got %.8g", W, ep,
                  in.first_expert + j, i, ref, dv[j * N + i]);
        }
    moe_comm_plan_free(pl);
    free(send);
    free(recv);
    free(counts);
    moe_comm_free(c);
}

static void test_collectives(moe_comm *c) {
    const int W = moe_comm_size(c, MOE_COMM_WORLD), me = moe_comm_rank(c, MOE_COMM_WORLD);
    double d[3] = {me + 0.5, me + 0.5, me + 0.5};
    OK(moe_comm_allreduce_f64(c, MOE_COMM_WORLD, d, 1, MOE_COMM_SUM));
    OK(moe_comm_allreduce_f64(c, MOE_COMM_WORLD, d + 1, 1, MOE_COMM_MAX));
    OK(moe_comm_allreduce_f64(c, MOE_COMM_WORLD, d + 2, 1, MOE_COMM_MIN));
    CHECK(d[0] == W * (W - 1) / 2.0 + 0.5 * W && d[1] == W - 0.5 && d[2] == 0.5,
          "f64 sum/max/min: got %g %g %g", d[0], d[1], d[2]);
    int64_t i64[2] = {(int64_t)me << 33, -me};
    OK(moe_comm_allreduce_i64(c, MOE_COMM_WORLD, i64, 1, MOE_COMM_MAX));
    OK(moe_comm_allreduce_i64(c, MOE_COMM_WORLD, i64 + 1, 1, MOE_COMM_SUM));
    CHECK(i64[0] == ((int64_t)(W - 1) << 33) && i64[1] == -(int64_t)W * (W - 1) / 2,
          "i64 max/sum: got %lld %lld", (long long)i64[0], (long long)i64[1]);
    float f = 1.5f;
    OK(moe_comm_allreduce_f32(c, MOE_COMM_WORLD, &f, 1, MOE_COMM_SUM));
    CHECK(f == 1.5f * W, "f32 sum: expected %g got %g", 1.5 * W, f);
    char msg[16] = "";
    if (me == 0) snprintf(msg, sizeof msg, "hello %d", 42);
    OK(moe_comm_bcast(c, MOE_COMM_WORLD, msg, sizeof msg));
    CHECK(!strcmp(msg, "hello 42"), "bcast: got '%s'", msg);
    OK(moe_comm_barrier(c, MOE_COMM_WORLD));
    // Gather of variable sizes: rank r sends r+1 floats r*10 + i (rank 0 may send one too).
    float mine[8], all[64];
    int64_t counts[16];
    for (int i = 0; i <= me; i++) mine[i] = (float)(me * 10 + i);
    OK(moe_comm_gatherv_f32(c, MOE_COMM_WORLD, mine, me + 1, me ? NULL : all, me ? 0 : 64,
                            me ? NULL : counts));
    if (me == 0)
        for (int r = 0, k = 0; r < W; r++) {
            CHECK(counts[r] == r + 1, "gather count of rank %d: expected %d got %lld", r, r + 1,
                  (long long)counts[r]);
            for (int i = 0; i <= r; i++, k++)
                CHECK(all[k] == (float)(r * 10 + i), "gather[%d]: expected %d got %g", k,
                      r * 10 + i, all[k]);
        }
    // A root buffer too small is refused on every rank (nobody hangs).
    moe_status st = moe_comm_gatherv_f32(c, MOE_COMM_WORLD, mine, me + 1, me ? NULL : all,
                                         me ? 0 : W - 1, NULL);
    CHECK(st == MOE_EINVAL,
          "gather into a too-small buffer: expected refusal on every rank, got %d", st);
}

int main(int argc, char **argv) {
    OK(moe_comm_init(&argc, &argv));
    moe_comm *c;
    moe_comm_params p = {1, 0, 0, 1};
    OK(moe_comm_create(&p, &c));
    const int W = moe_comm_size(c, MOE_COMM_WORLD);
    g_rank = moe_comm_rank(c, MOE_COMM_WORLD);
    test_collectives(c);
    for (int ep = 1; ep <= W; ep++)
        if (W % ep == 0 && E % ep == 0) test_invariance(W, ep);
    int64_t fails = g_fail;
    OK(moe_comm_allreduce_i64(c, MOE_COMM_WORLD, &fails, 1, MOE_COMM_SUM));
    moe_comm_printf(c, "test_comm_grad (W=%d): %s (%lld failed checks)\n", W, fails ? "FAIL" : "ok",
                    (long long)fails);
    moe_comm_free(c);
    OK(moe_comm_finalize());
    return fails ? 1 : 0;
}
