// cmd-routes.c: `moe routes TRACE... [--json] [--out DIR]` — the routing statistics of traces
// (routes/routes.h) as tables or JSON, heatmaps with --out, and the routing stability of every
// further trace against the first. Every trace is read and checked, and the traces compared,
// before anything is printed or written.
#include "cli.h"
#include "moe-args.h"
#include "routes.h"

#include <string.h>

// The plot stem of a trace: its file name without ".trace" (made unique with -<i>).
static void routes_stem(char *b, size_t cap, const char *path, int i, const char *const *paths) {
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t n = strlen(base);
    if (n > 6 && !strcmp(base + n - 6, ".trace")) n -= 6;
    snprintf(b, cap, "%.*s", (int)n, base);
    for (int j = 0; j < i; j++) {
        const char *o = strrchr(paths[j], '/') ? strrchr(paths[j], '/') + 1 : paths[j];
        if (!strncmp(o, base, n) && (o[n] == 0 || !strcmp(o + n, ".trace"))) {
            snprintf(b, cap, "%.*s-%d", (int)n, base, i);
            return;
        }
    }
}

// Plots of every trace into out (notes and failures on stderr); 0 or an exit code.
static int routes_plots(const char *out, const moe_args_list *tr, moe_trace **t,
                        moe_routes_stats **s, int json) {
    for (int i = 0; i < tr->n; i++) {
        char stem[256], note[256];
        routes_stem(stem, sizeof stem, tr->v[i], i, tr->v);
        moe_status st = moe_routes_plot(out, stem, t[i], s[i], note, sizeof note);
        if (st) {
            fprintf(stderr, "moe routes: %s\n", moe_last_error());
            return moe_exit_code(st);
        }
        if (note[0]) {
            fprintf(stderr, "moe routes: %s\n", note);
            return 0;
        }
        if (!json)
            fprintf(stdout, "plots: %s/%s-load.png, %s/%s-coact-L*.png\n", out, stem, out, stem);
    }
    return 0;
}

int moe_cmd_routes(int argc, char **argv) {
    moe_args_list tr = {0}, sets = {0};
    int json = 0;
    const char *out = NULL, *text = NULL;
    const moe_arg_pos pos[] = {
        {"TRACE", MOE_ARG_LIST, &tr, 1, 0,
         "routing traces (moe eval --trace, OUT_DIR/traces/step-N.trace);\n"
         "with --text: one CHECKPOINT (a checkpoint or run directory)"},
    };
    const moe_arg_opt opts[] = {
        MOE_OPT_FLAG("--json", &json, "one JSON document instead of the tables"),
        MOE_OPT_STRING("--text", &text, "TEXT",
                       "route TEXT through the model of CHECKPOINT and print, per MoE\n"
                       "layer, each token's experts and combine weights (mpirun: the\n"
                       "same at any world size)"),
        MOE_OPT_LIST("--set", &sets, "a.b=v",
                     "with --text: override a field of the checkpoint's config\n"
                     "(e.g. parallel.ep_size=2: experts over 2 ranks)"),
        MOE_OPT_STRING("--out", &out, "DIR",
                       "also write PNG heatmaps (load, co-activation per layer)\n"
                       "through gnuplot into DIR"),
    };
    const moe_args_spec spec = {
        "moe routes",
        "Analyses routing traces: per layer the expert loads, routing entropy, mutual\n"
        "information between token id and expert, each expert's most frequent tokens,\n"
        "the co-activation matrix and how well a layer's top-1 expert predicts the next\n"
        "layer's; with two or more traces, the routing stability of each against the first\n"
        "(share of tokens whose expert set changed, mean Jaccard). Definitions:\n"
        "docs/routes.md.",
        pos,
        MOE_ARGS_N(pos),
        opts,
        MOE_ARGS_N(opts),
        "exit codes: 0 ok, 1 a plot could not be written, 2 bad usage, a trace file\n"
        "missing, or traces not comparable (another model shape or probe), 3 a corrupt\n"
        "trace."};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    if (text) { // the interactive view: one checkpoint, one text (cli/cmd-generate.c)
        int code = MOE_EXIT_USAGE;
        if (tr.n != 1 || out)
            fprintf(stderr,
                    "moe routes: --text takes one CHECKPOINT and no --out (got %d "
                    "path(s)%s)\n",
                    tr.n, out ? " and --out" : "");
        else
            code = moe_cmd_routes_text(tr.v[0], text, json, sets.v, sets.n);
        moe_args_free(&spec);
        return code;
    }
    if (sets.n) {
        fprintf(stderr, "moe routes: --set applies with --text only (traces carry their model)\n");
        moe_args_free(&spec);
        return MOE_EXIT_USAGE;
    }
    const int n = tr.n;
    moe_trace **t = moe_xcalloc((size_t)n, sizeof *t);
    moe_routes_stats **s = moe_xcalloc((size_t)n, sizeof *s);
    double **ch = moe_xcalloc((size_t)n, sizeof *ch), **jc = moe_xcalloc((size_t)n, sizeof *jc);
    moe_status st = MOE_OK;
    for (int i = 0; i < n && !st; i++) {
        st = moe_trace_read(tr.v[i], &t[i]);
        if (st == MOE_EIO) st = MOE_EUSAGE; // the argument names no readable file
    }
    for (int i = 1; i < n && !st; i++) {
        ch[i] = moe_xcalloc((size_t)t[0]->n_moe, sizeof **ch);
        jc[i] = moe_xcalloc((size_t)t[0]->n_moe, sizeof **jc);
        st = moe_routes_stability(t[0], tr.v[0], t[i], tr.v[i], ch[i], jc[i]);
    }
    int code = 0;
    if (st) {
        fprintf(stderr, "moe routes: %s\n", moe_last_error());
        code = moe_exit_code(st);
        goto out;
    }
    for (int i = 0; i < n; i++) s[i] = moe_routes_analyse(t[i]);
    if (json) {
        if (moe_routes_json(stdout, tr.v, t, s, n, (const double *const *)ch,
                            (const double *const *)jc) != 0) {
            fprintf(stderr, "moe routes: writing the JSON failed\n");
            code = MOE_EXIT_FAILURE;
        }
    } else {
        for (int i = 0; i < n; i++) moe_routes_print(stdout, tr.v[i], t[i], s[i]);
        for (int i = 1; i < n; i++)
            moe_routes_print_stability(stdout, tr.v[0], tr.v[i], t[0]->n_moe, t[0]->h->moe_layers,
                                       ch[i], jc[i]);
    }
    if (!code && out) code = routes_plots(out, &tr, t, s, json);
out:
    for (int i = 0; i < n; i++) {
        moe_routes_stats_free(s[i]);
        moe_trace_free(t[i]);
        free(ch[i]), free(jc[i]);
    }
    free(t), free(s), free(ch), free(jc);
    moe_args_free(&spec);
    return code;
}
