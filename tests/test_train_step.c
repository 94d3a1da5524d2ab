// test_train_step.c: `moe bench step` and `moe train` share the step. The benchmark's library
// path (moe_bench_step_run: what `moe bench step` times) and the trainer's step (moe_train_step,
// called as trainer/train.c's loop calls it) run the same config on the same synthetic batch for
// several steps, with LR warmup and decay, clipping that bites and aux-free bias balancing on;
// their losses and final parameters (+ balancing biases) must be bit-identical. A benchmark with
// its own step (no schedule, no clipping, no bias update) fails this from the second step on.
#include "bench.h"
#include "config.h"
#include "train.h"
#include "test-noalloc.h"
#include "test-util.h"
#include "test-mpi.h"

#include <string.h>

#define NSTEPS 6

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

int main(int argc, char **argv) {
    const int W = test_mpi_start(&argc, &argv);
    Moe__Config *cfg = moe_config_new_default();
    const char *sets[] = {"name=step-test",
                          "model.vocab_size=64",
                          "model.d_model=32",
                          "model.n_layers=2",
                          "model.n_heads=2",
                          "model.d_ff=64",
                          "model.n_experts=4",
                          "model.top_k=2",
                          "model.expert_d_ff=32",
                          "model.first_dense_layers=0",
                          "train.global_batch=4",
                          "train.seq_len=16",
                          "train.steps=6",
                          "train.lr=0.01",
                          "train.min_lr=0.001",
                          "train.warmup_steps=2",
                          "train.grad_clip=0.05",
                          "router.bias_update_rate=0.01",
                          "router.aux_loss_coef=0.01"};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) OK(moe_config_set(cfg, sets[i]));
    char ep[48];
    snprintf(ep, sizeof ep, "parallel.ep_size=%d", 4 % W == 0 ? W : 1);
    OK(moe_config_set(cfg, ep));
    moe_comm *c;
    moe_comm_params cp = {cfg->parallel->ep_size, cfg->model->n_experts, 0, 1};
    OK(moe_comm_create(&cp, &c));

    // The benchmark's path.
    double bench_loss[NSTEPS];
    moe_bench_step_times bt;
    OK(moe_bench_step_run(cfg, c, 2, NSTEPS - 2, bench_loss, &bt));

    // The trainer's step, on the same synthetic tokens.
    const moe_model_layout lay = moe_model_layout_of(c);
    const int64_t Bl = cfg->train->global_batch / W, S = cfg->train->seq_len;
    moe_model *m;
    OK(moe_model_create(cfg, &lay, c, Bl, &m));
    moe_train_step_state *ss;
    OK(moe_train_step_create(cfg, c, m, &ss));
    int32_t *tok = calloc((size_t)(Bl * (S + 1)), sizeof(int32_t));
    moe_bench_step_tokens(tok, Bl * (S + 1), m->V, lay.world_rank);
    double train_loss[NSTEPS];
    int clipped = 0, skipped = 0;
    for (int it = 0; it < NSTEPS; it++) {
        moe_train_step_result r;
        test_counting = it >= 2; // steps after the first two: nothing allocated (MPI's own
        OK(moe_train_step(ss, tok, it, &r)); // buffers may grow lazily, so checked at W = 1)
        test_counting = 0;
        train_loss[it] = r.loss;
        clipped += r.clip < 1.0;
        skipped += r.nonfinite;
        if (g_rank == 0)
            printf("step %d: bench loss %.9f  trainer loss %.9f  (lr %.3e, grad norm %.4f, clip "
                   "scale %.4f)%s\n",
                   it + 1, bench_loss[it], train_loss[it], r.lr, r.grad_norm, r.clip,
                   memcmp(&bench_loss[it], &train_loss[it], sizeof(double)) ? "  DIFFER" : "");
        CHECK(memcmp(&bench_loss[it], &train_loss[it], sizeof(double)) == 0,
              "step %d: bench loss %.17g != trainer loss %.17g", it + 1, bench_loss[it],
              train_loss[it]);
    }
    uint64_t h = 14695981039346656037ull;
    h = fnv1a(h, m->params, (size_t)m->n_params * sizeof(float));
    h = fnv1a(h, m->balance_bias, (size_t)m->n_moe * (size_t)m->E * sizeof(float));
    if (g_rank == 0)
        printf("parameter checksum (FNV-1a of params + balancing biases, rank 0): bench %016llx  "
               "trainer %016llx\n",
               (unsigned long long)bt.param_hash, (unsigned long long)h);
    CHECK(bt.param_hash == h, "parameter checksum: bench %016llx != trainer %016llx",
          (unsigned long long)bt.param_hash, (unsigned long long)h);
    // The features the shared step has and a private copy lacked must really be exercised.
    int bias_moved = 0;
    for (int64_t i = 0; i < (int64_t)m->n_moe * m->E; i++) bias_moved |= m->balance_bias[i] != 0;
    CHECK(clipped > 0, "clipping never bit (grad_clip %g): the test would not see it",
          cfg->train->grad_clip);
    CHECK(bias_moved, "the balancing bias never moved: the test would not see the bias update");
#ifndef MOE_NOALLOC_SKIP
    if (W == 1)
        CHECK(test_allocs == 0, "moe_train_step allocated %ld times in steps 3..%d", test_allocs,
              NSTEPS);
    if (g_rank == 0)
        printf("allocations in moe_train_step, steps 3..%d: %ld\n", NSTEPS, test_allocs);
#endif
    CHECK(skipped == 0, "%d steps skipped as non-finite", skipped);
    CHECK(train_loss[NSTEPS - 1] < train_loss[0], "loss did not fall: %g -> %g", train_loss[0],
          train_loss[NSTEPS - 1]);

    int64_t f = g_fail;
    OK(moe_comm_allreduce_i64(c, MOE_COMM_WORLD, &f, 1, MOE_COMM_SUM));
    free(tok);
    moe_train_step_free(ss);
    moe_model_free(m);
    moe_config_free(cfg);
    moe_comm_free(c);
    moe_comm_finalize();
    if (f && !g_fail) g_fail = 1;
    if (g_rank == 0) return test_summary("test_train_step");
    return g_fail ? 1 : 0;
}
