// bench.h: the manual of the benchmarks — `moe bench <what>`, each figure printed next to its
// reference measured in the same run (the sgemm peak, raw MPI_Alltoallv). The sub-benchmarks and
// their shared helpers are bench/bench-impl.h.
#ifndef MOE_BENCH_H
#define MOE_BENCH_H

#include "comm.h"
#include "moe-common.h"
#include "moe.pb-c.h"
#include "train.h"

// `moe bench <what> [options]` (bench/cmd-bench.c); argv[0] is "bench". Returns an exit code.
int moe_cmd_bench(int argc, char **argv);

// ---------------------------------------------------------------- `moe bench step` as a library
// The synthetic tokens of `moe bench step`: tok (n) in [0, V), a xorshift64 stream seeded by the
// world rank (each rank its own slice of the batch). Pure.
void moe_bench_step_tokens(int32_t *tok, int64_t n, int V, int world_rank);

typedef struct {
    double seconds;           // Σ over the timed steps of the step's wall clock (this rank)
    double exchange_seconds;  // Σ of the MoE exchanges' share (moe_train_step_result)
    double allreduce_seconds; // Σ of the gradient sync + agreed reduction
    moe_step_phases phases;   // Σ of this rank's phases (train.h)
    double bytes_intranode, bytes_internode; // Σ of the world's expert-exchange bytes (agreed)
    uint64_t param_hash; // FNV-1a of this rank's parameters and balancing biases at the end
} moe_bench_step_times;

// What `moe bench step` times: builds cfg's model at c's layout (train.global_batch / W sequences
// per rank) and calls moe_train_step — the step of `moe train`, with its LR schedule, clipping,
// non-finite check and aux-free bias update — warmup + steps times on the synthetic tokens, step
// index 0, 1, …; a barrier before each; the last `steps` are timed. losses (warmup + steps) or
// NULL: each step's global loss. Collective over c's world.
moe_status moe_bench_step_run(const Moe__Config *cfg, const moe_comm *c, int warmup, int steps,
                              double *losses, moe_bench_step_times *out);

#endif
