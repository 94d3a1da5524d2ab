// bench.h: the manual of the benchmarks — `moe bench <what>`, each figure printed next to its
// reference measured in the same run (the sgemm peak, raw MPI_Alltoallv). The sub-benchmarks and
// their shared helpers are bench/bench-impl.h.
#ifndef MOE_BENCH_H
#define MOE_BENCH_H

#include "moe-common.h"

// `moe bench <what> [options]` (bench/cmd-bench.c); argv[0] is "bench". Returns an exit code.
int moe_cmd_bench(int argc, char **argv);

#endif
