// cmd-merge.c: `moe merge CHECKPOINT OUT` — the arguments; the work is trainer/merge.h. One
// process.
#include "cli.h"
#include "merge.h"
#include "moe-args.h"

int moe_cmd_merge(int argc, char **argv) {
    const char *where = NULL, *out = NULL;
    const moe_arg_pos pos[] = {
        {"CHECKPOINT", MOE_ARG_STRING, &where, 1, 1,
         "a LoRA run's checkpoint, checkpoints or run directory, or RUN/latest"},
        {"OUT", MOE_ARG_STRING, &out, 1, 1,
         "the new run directory: OUT/checkpoints/step_00000000 and OUT/config.json"},
    };
    const moe_args_spec spec = {
        "moe merge",
        "Folds a LoRA run's adapters into its base: every adapted matrix W becomes\n"
        "W + (alpha/r)·A·B, the rest is copied; the result is a plain checkpoint (no lora\n"
        "section, optimizer state and step at 0) computing the same function up to float\n"
        "rounding. Evaluate, export or train it like any other:\n"
        "  moe eval --checkpoint OUT/latest\n"
        "docs/lora.md.",
        pos,
        MOE_ARGS_N(pos),
        NULL,
        0,
        "exit codes: 0 written, 1 failed (nothing left half written), 2 bad usage (no\n"
        "adapters in CHECKPOINT, OUT already used), 3 corrupt checkpoint."};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    char written[MOE_PATH_MAX] = "";
    moe_status st = moe_merge_run(where, out, written, sizeof written);
    if (st)
        fprintf(stderr, "moe merge: %s (%s)\n", moe_last_error(), moe_status_str(st));
    else
        printf("merged %s -> %s (config %s/config.json)\n", where, written, out);
    moe_args_free(&spec);
    return moe_exit_code(st);
}
