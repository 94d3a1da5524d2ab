// bench-impl.h: internals of the benchmark room — the sub-benchmarks the table of cmd-bench.c
// dispatches to, and the helpers they share (bench-util.c).
#ifndef MOE_BENCH_IMPL_H
#define MOE_BENCH_IMPL_H

#include "bench.h"
#include "comm.h"

int moe_bench_layer(int argc, char **argv); // bench/bench-layer.c: `moe bench layer`
int moe_bench_a2a(int argc, char **argv);   // bench/bench-a2a.c: engine vs raw MPI_Alltoallv
int moe_bench_step(int argc, char **argv);  // bench/bench-step.c: whole training steps
// `moe bench layer --ep` (bench/bench-layer-ep.c); argv as for `moe bench layer`.
int moe_bench_layer_ep(int argc, char **argv);
// Helpers of the benchmarks (bench/bench-util.c). cblas_sgemm 1024³ GFLOP/s, best of reps after
// a warmup.
double moe_sgemm_peak(int reps);
// Collective: a communicator whose one EP group is the whole world, for n_experts experts (the
// world size is asked of a layout-free handle first); *W = the world size.
moe_status moe_bench_comm_world_ep(int n_experts, moe_comm **out, int *W);
// One BLAS thread per rank unless OPENBLAS_NUM_THREADS says otherwise.
void moe_bench_threads(void);

#endif
