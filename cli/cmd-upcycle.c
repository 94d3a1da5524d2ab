// cmd-upcycle.c: `moe upcycle DENSE OUT --experts E [--top-k K] [--granularity G] [--noise S]
// [--seed N] [--set a.b=v]...` — the arguments; the work is trainer/upcycle.h. One process.
#include "cli.h"
#include "moe-args.h"
#include "upcycle.h"

int moe_cmd_upcycle(int argc, char **argv) {
    const char *where = NULL, *out = NULL;
    int experts = 0, top_k = 0, gran = 1, seed = 0;
    double noise = 0;
    moe_args_list sets = {0};
    const moe_arg_pos pos[] = {
        {"DENSE", MOE_ARG_STRING, &where, 1, 1,
         "the dense model's checkpoint, checkpoints or run directory, or RUN/latest"},
        {"OUT", MOE_ARG_STRING, &out, 1, 1,
         "the new run directory: OUT/checkpoints/step_00000000 and OUT/config.json"},
    };
    const moe_arg_opt opts[] = {
        MOE_OPT_INT("--experts", &experts, "E", 1, 65536,
                    "routed experts per MoE layer (required; a multiple of --granularity)"),
        MOE_OPT_INT("--top-k", &top_k, "K", 0, 65536,
                    "experts per token, a multiple of --granularity; default the\n"
                    "granularity (the dense model's active FFN width)"),
        MOE_OPT_INT("--granularity", &gran, "G", 1, 65536,
                    "each FFN is cut into G slices of d_ff/G hidden units; expert e\n"
                    "holds slice e mod G (default 1: every expert a whole copy)"),
        MOE_OPT_DOUBLE("--noise", &noise, "S", 0, 1e6,
                       "add S x rms(W) x N(0,1) to every expert matrix (default 0:\n"
                       "exact copies, the dense model's function at step 0)"),
        MOE_OPT_INT("--seed", &seed, "N", 0, INT32_MAX,
                    "the noise's seed; default the config's train.seed"),
        MOE_OPT_LIST("--set", &sets, "a.b=v",
                     "override a field of the upcycled config (after upcycling's own:\n"
                     "e.g. router.aux_loss_coef, train.steps, model.first_dense_layers)"),
    };
    const moe_args_spec spec = {
        "moe upcycle",
        "Makes a MoE checkpoint from a dense one: every FFN becomes the experts of its\n"
        "layer (copies, or with --granularity G, G narrower slices), the router is fresh\n"
        "(zero when G > 1), optimizer state and step start at 0. At --noise 0 the\n"
        "upcycled model computes the dense model's function. Then train it with\n"
        "  mpirun -np N moe train OUT/config.json --resume latest\n"
        "docs/upcycling.md.",
        pos,
        MOE_ARGS_N(pos),
        opts,
        MOE_ARGS_N(opts),
        "exit codes: 0 written, 1 failed (nothing left half written), 2 bad usage (an\n"
        "option, a dense model that is not, OUT already used), 3 corrupt checkpoint."};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    moe_status st = MOE_OK;
    if (experts < 1)
        st = moe_set_error(MOE_EUSAGE, "--experts E is required (the routed experts per layer)");
    char written[MOE_PATH_MAX] = "";
    if (!st) {
        const moe_upcycle_params p = {experts, top_k, gran, noise, (uint64_t)seed};
        st = moe_upcycle_run(where, out, &p, sets.v, sets.n, written, sizeof written);
    }
    if (st)
        fprintf(stderr, "moe upcycle: %s (%s)\n", moe_last_error(), moe_status_str(st));
    else
        printf("upcycled %s -> %s (config %s/config.json)\n", where, written, out);
    moe_args_free(&spec);
    return moe_exit_code(st);
}
