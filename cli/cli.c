// cli.c: the subcommand table of the moe command, top-level --help and exit-code mapping.
#include "bench.h"
#include "cli.h"
#include "sweep.h"

#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} moe_subcommand;

// One line per subcommand; keep in the order users meet them.
static const moe_subcommand moe_subcommands[] = {
    {"config", moe_cmd_config, "read, override (--set), validate and print the effective config"},
    {"params", moe_cmd_params, "total and active parameters, FLOPs per token, bytes per rank"},
    {"train", moe_cmd_train,
     "train the model of a config under mpirun/srun (metrics, checkpoints)"},
    {"generate", moe_cmd_generate, "sample text from a checkpoint (any world size, deterministic per seed)"},
    {"eval", moe_cmd_eval, "validation loss of a checkpoint, at any world size"},
    {"upcycle", moe_cmd_upcycle,
     "a MoE checkpoint from a dense one (FFN copies or slices as experts)"},
    {"merge", moe_cmd_merge, "a LoRA run's adapters folded into its base: a plain checkpoint"},
    {"topo", moe_cmd_topo, "machine topology, rank bindings and the EP/EDP groups (under mpirun)"},
    {"export", moe_cmd_export,
     "a checkpoint as an HF model directory (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE)"},
    {"import", moe_cmd_import, "a Hugging Face model directory as a moe checkpoint (step 0)"},
    {"inspect", moe_cmd_inspect, "print a checkpoint's manifest and verify its files (CRC32C)"},
    {"sweep", moe_cmd_sweep,
     "run a load-balancing sweep: routing strategies side by side, then a report"},
    {"report", moe_cmd_report, "tables, plots, report.md and index.html over training runs"},
    {"routes", moe_cmd_routes,
     "routing traces: loads, entropy, specialization, co-activation, stability"},
    {"bench", moe_cmd_bench,
     "benchmarks next to their reference: layer [--ep] (vs sgemm peak), a2a (vs raw "
     "MPI_Alltoallv), step"},
};

static void moe_cli_usage(FILE *f) {
    fprintf(f,
            "usage: moe <command> [options]   (moe <command> --help for details)\n"
            "       moe --version                 (version, git revision, dependency versions)\n"
            "\ncommands:\n");
    for (size_t i = 0; i < sizeof moe_subcommands / sizeof moe_subcommands[0]; i++)
        fprintf(f, "  %-10s %s\n", moe_subcommands[i].name, moe_subcommands[i].summary);
    fprintf(f,
            "\nexit codes: 0 ok, 1 run failed, 2 bad usage or config, 3 bad data or checkpoint,\n"
            "            75 preempted (checkpoint written; run again to resume)\n");
}

int moe_cli_main(int argc, char **argv) {
    if (argc < 2) {
        moe_cli_usage(stderr);
        return MOE_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        moe_cli_usage(stdout);
        return MOE_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        moe_cli_version(stdout);
        return MOE_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof moe_subcommands / sizeof moe_subcommands[0]; i++)
        if (!strcmp(argv[1], moe_subcommands[i].name))
            return moe_subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "moe: unknown command '%s'\n\n", argv[1]);
    moe_cli_usage(stderr);
    return MOE_EXIT_USAGE;
}
