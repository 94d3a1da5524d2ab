// cmd-bench.c: `moe bench <what>` — benchmarks reported next to a reference measured in the same
// run. A small table dispatches the sub-benchmarks (one line per entry).
#include "bench-impl.h"

#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} moe_bench_entry;

// One line per sub-benchmark.
static const moe_bench_entry moe_benches[] = {
    {"layer", moe_bench_layer, "one-rank MoE layer forward+backward, GFLOP/s vs sgemm peak"},
    {"a2a", moe_bench_a2a, "dispatch+combine all-to-all vs raw MPI_Alltoallv (mpirun -np 2)"},
    {"step", moe_bench_step,
     "whole training steps of the tiny model: tokens/s, compute/exchange/all-reduce"},
    {"experts", moe_bench_experts,
     "the expert FFNs at several expert counts, fixed tokens: growth, kernels vs cblas"},
};

static void moe_bench_usage(FILE *f) {
    fprintf(f, "usage: moe bench <what> [options]   (moe bench <what> --help)\n\nbenchmarks:\n");
    for (size_t i = 0; i < sizeof moe_benches / sizeof moe_benches[0]; i++)
        fprintf(f, "  %-8s %s\n", moe_benches[i].name, moe_benches[i].summary);
}

int moe_cmd_bench(int argc, char **argv) {
    if (argc < 2) {
        moe_bench_usage(stderr);
        return MOE_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        moe_bench_usage(stdout);
        return MOE_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof moe_benches / sizeof moe_benches[0]; i++)
        if (!strcmp(argv[1], moe_benches[i].name)) return moe_benches[i].run(argc - 1, argv + 1);
    fprintf(stderr, "moe bench: unknown benchmark '%s'\n\n", argv[1]);
    moe_bench_usage(stderr);
    return MOE_EXIT_USAGE;
}
