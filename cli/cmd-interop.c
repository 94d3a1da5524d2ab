// cmd-interop.c: `moe export CHECKPOINT OUT_DIR` and `moe import HF_DIR OUT` — Hugging Face model
// directories (interop/interop.h, docs/interop.md). Local and serial: no MPI.
#include "cli.h"
#include "interop.h"
#include "moe-args.h"

#include <string.h>

int moe_cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *dtype = "f32";
    double max_shard = 0;
    static const char *const dtypes[] = {"f32", "bf16", NULL};
    const moe_arg_pos pos[] = {
        {"CHECKPOINT", MOE_ARG_STRING, &ckpt, 1, 1,
         "a checkpoint, checkpoints or run directory, or RUN/latest (any world, EP)"},
        {"OUT_DIR", MOE_ARG_STRING, &out, 1, 1,
         "the Hugging Face model directory to write (must not exist, or be empty)"},
    };
    const moe_arg_opt opts[] = {
        MOE_OPT_CHOICE("--dtype", &dtype, dtypes,
                       "tensor type in the safetensors files (bf16: round to nearest even)"),
        MOE_OPT_DOUBLE("--max-shard-size", &max_shard, "BYTES", 1, 1e15,
                       "split the weights into model-0000i-of-0000k.safetensors files of at\n"
                       "most BYTES each, with model.safetensors.index.json (default: one file)"),
    };
    const moe_args_spec spec = {
        "moe export",
        "Writes a moe checkpoint as a Hugging Face model directory: config.json and\n"
        "model.safetensors (or shards and their index), with transformers' tensor names and\n"
        "layouts for MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM or\n"
        "OlmoeForCausalLM, chosen from the model's config. A model those classes cannot\n"
        "express is refused with the field named and nothing written. See docs/interop.md.",
        pos,
        MOE_ARGS_N(pos),
        opts,
        MOE_ARGS_N(opts),
        "exit codes: 0 written, 1 I/O error, 2 bad usage or a model HF cannot express,\n"
        "3 corrupt checkpoint."};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    moe_hf_export_opts o = {.dtype = strcmp(dtype, "bf16") ? MOE_ST_F32 : MOE_ST_BF16,
                            .max_shard_bytes = (int64_t)max_shard};
    moe_status st = moe_hf_export(ckpt, out, &o, stdout);
    if (st) fprintf(stderr, "moe export: %s (%s)\n", moe_last_error(), moe_status_str(st));
    moe_args_free(&spec);
    return moe_exit_code(st);
}

int moe_cmd_import(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    int world = 0, ep = 0;
    moe_args_list sets = {0};
    const moe_arg_pos pos[] = {
        {"HF_DIR", MOE_ARG_STRING, &dir, 1, 1,
         "a Hugging Face model directory: config.json and model.safetensors, or\n"
         "shards with model.safetensors.index.json"},
        {"OUT", MOE_ARG_STRING, &out, 1, 1,
         "the run directory to write (its checkpoints/step_00000000 and LATEST)"},
    };
    const moe_arg_opt opts[] = {
        MOE_OPT_INT("--world", &world, "N", 1, 1 << 20,
                    "write the checkpoint as N ranks would (with --ep), one rank's\n"
                    "shard in memory at a time"),
        MOE_OPT_INT("--ep", &ep, "N", 1, 1 << 20,
                    "parallel.ep_size of the imported config (experts must divide)"),
        MOE_OPT_LIST("--set", &sets, "a.b=v",
                     "override a field of the imported config (train, data, ...;\n"
                     "model.* comes from config.json and is refused)"),
    };
    const moe_args_spec spec = {
        "moe import",
        "Writes a Hugging Face model (MixtralForCausalLM, Qwen2MoeForCausalLM,\n"
        "Qwen3MoeForCausalLM, OlmoeForCausalLM) as a moe checkpoint at step 0 (zero optimizer\n"
        "state) that moe eval, moe generate and moe train --init-from read at any world size\n"
        "and EP (it reshards on load). Memory: one tensor plus one rank's shard of the\n"
        "--world/--ep layout (default 1: the whole model's parameters once). See\n"
        "docs/interop.md.",
        pos,
        MOE_ARGS_N(pos),
        opts,
        MOE_ARGS_N(opts),
        "exit codes: 0 written, 1 I/O error, 2 bad usage or a model moe cannot reproduce,\n"
        "3 bad safetensors (the reader's refusals; missing, unexpected or misshapen tensors)."};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    moe_hf_import_opts o = {
        .sets = (const char *const *)sets.v, .n_sets = sets.n, .world = world, .ep = ep};
    moe_status st = moe_hf_import(dir, out, &o, NULL, 0, stdout);
    if (st) fprintf(stderr, "moe import: %s (%s)\n", moe_last_error(), moe_status_str(st));
    moe_args_free(&spec);
    return moe_exit_code(st);
}
