// cmd-generate.c: `moe generate CHECKPOINT [--prompt TEXT] [--tokens N] [--temperature T]
// [--top-k K] [--seed S] [--context N] [--set a.b=v]...` under mpirun/srun (or alone): the
// arguments and the launch; the sampling itself is generate/generate.h.
#include "cli.h"
#include "config.h"
#include "generate.h"
#include "moe-args.h"

static void moe_generate_report(const moe_comm *c, moe_status st) {
    if (!c || moe_comm_rank(c, MOE_COMM_WORLD) == 0)
        fprintf(stderr, "moe generate: %s (%s)\n", moe_last_error(), moe_status_str(st));
}

// The world at the config's ep_size (a refused layout is reported from a plain world).
static moe_status moe_generate_comm(const Moe__Config *cfg, moe_comm **c) {
    moe_comm_params cp = {.ep_size = cfg ? cfg->parallel->ep_size : 1,
                          .n_experts = cfg ? cfg->model->n_experts : 0,
                          .quiet = 1};
    moe_status st = moe_comm_create(&cp, c);
    if (!st) return MOE_OK;
    char saved[MOE_ERROR_MAX];
    snprintf(saved, sizeof saved, "%s", moe_last_error());
    moe_comm_params one = {.ep_size = 1, .quiet = 1};
    if (moe_comm_create(&one, c) != MOE_OK) *c = NULL;
    return moe_set_error(st, "%s", saved);
}

int moe_cmd_generate(int argc, char **argv) {
    const char *where = NULL, *prompt = NULL;
    int tokens = 200, top_k = 0, seed = 1, context = 0;
    double temperature = 1.0;
    moe_args_list sets = {0};
    const moe_arg_pos pos[] = {
        {"CHECKPOINT", MOE_ARG_STRING, &where, 1, 1,
         "a checkpoint, checkpoints or run directory, or RUN/latest"},
    };
    const moe_arg_opt opts[] = {
        MOE_OPT_STRING("--prompt", &prompt, "TEXT",
                       "the start: text (byte vocabulary) or token ids separated by\n"
                       "spaces (token files); default a newline (bytes) or id 0"),
        MOE_OPT_INT("--tokens", &tokens, "N", 1, 100000, "tokens to generate"),
        MOE_OPT_DOUBLE("--temperature", &temperature, "T", 0, 1000,
                       "softmax temperature; 0: greedy (the most likely token)"),
        MOE_OPT_INT("--top-k", &top_k, "K", 0, INT32_MAX,
                    "sample among the K most likely tokens; 0: all"),
        MOE_OPT_INT("--seed", &seed, "S", 0, INT32_MAX,
                    "the draws' seed: the same seed gives the same text"),
        MOE_OPT_INT("--context", &context, "N", 1, INT32_MAX,
                    "positions the model sees (a longer context slides); default\n"
                    "the checkpoint's train.seq_len, at most model.max_seq_len"),
        MOE_OPT_LIST("--set", &sets, "a.b=v",
                     "override a field of the checkpoint's config; parallel.ep_size\n"
                     "is 1 unless set (--set parallel.ep_size=2: experts over 2 ranks)"),
    };
    const moe_args_spec spec = {
        "moe generate",
        "Samples tokens from the model of a checkpoint and prints the prompt followed by\n"
        "them: text for a byte vocabulary (data.format = text), token ids otherwise.\n"
        "Deterministic for a seed, and the same at any world size and ep_size\n"
        "(mpirun -np N moe generate ...). Each token recomputes the forward over the\n"
        "whole context (no key/value cache: fine at moe's sizes). docs/generate.md.",
        pos,
        MOE_ARGS_N(pos),
        opts,
        MOE_ARGS_N(opts),
        "exit codes: 0 done, 1 run failed, 2 bad usage (option, prompt, layout, no\n"
        "checkpoint at the path), 3 corrupt checkpoint."};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    if (moe_comm_init(NULL, NULL) != MOE_OK) {
        fprintf(stderr, "moe generate: %s\n", moe_last_error());
        moe_args_free(&spec);
        return MOE_EXIT_FAILURE;
    }
    char dir[MOE_PATH_MAX];
    Moe__Config *cfg = NULL;
    moe_comm *c = NULL;
    moe_status st = moe_generate_config(where, sets.v, sets.n, dir, sizeof dir, &cfg);
    moe_status cs = moe_generate_comm(cfg, &c);
    if (!st) st = cs;
    if (!st) {
        const moe_generate_params p = {
            prompt, tokens, context, {temperature, top_k}, (uint64_t)seed};
        st = moe_generate_run(cfg, dir, c, &p, stdout);
    }
    if (st) moe_generate_report(c, st);
    moe_args_free(&spec);
    moe_config_free(cfg);
    moe_comm_free(c);
    moe_comm_finalize();
    return moe_exit_code(st);
}

int moe_cmd_routes_text(const char *where, const char *text, int json, const char **sets,
                        int n_sets) {
    if (moe_comm_init(NULL, NULL) != MOE_OK) {
        fprintf(stderr, "moe routes: %s\n", moe_last_error());
        return MOE_EXIT_FAILURE;
    }
    char dir[MOE_PATH_MAX];
    Moe__Config *cfg = NULL;
    moe_comm *c = NULL;
    moe_status st = moe_generate_config(where, sets, n_sets, dir, sizeof dir, &cfg);
    moe_status cs = moe_generate_comm(cfg, &c);
    if (!st) st = cs;
    if (!st) st = moe_generate_routes(cfg, dir, c, text, json, stdout);
    if (st && (!c || moe_comm_rank(c, MOE_COMM_WORLD) == 0))
        fprintf(stderr, "moe routes: %s (%s)\n", moe_last_error(), moe_status_str(st));
    moe_config_free(cfg);
    moe_comm_free(c);
    moe_comm_finalize();
    return moe_exit_code(st);
}
