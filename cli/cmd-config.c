// cmd-config.c: `moe config CONFIG [--set a.b=v]... [--world N] [--out FILE]` — reads a config (or
// stdin for "-"), applies the overrides, validates, and prints the effective config with every
// default as JSON. The quickest way to see what a run will use, and to check a config before
// queueing it. `--from-hf FILE` starts from a Hugging Face config.json instead (params/ reads it).
#include "config.h"
#include "cli.h"
#include "moe-args.h"
#include "params.h"
#include "train.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

// Prints every line of the last error prefixed "moe config: ", so every problem reads on its own.
static void moe_config_report(void) {
    const char *msg = moe_last_error();
    for (const char *line = msg; *line;) {
        const char *nl = strchr(line, '\n');
        int n = nl ? (int)(nl - line) : (int)strlen(line);
        fprintf(stderr, "moe config: %.*s\n", n, line);
        line += n + (nl != NULL);
    }
}

// Writes cfg as JSON to `out` (NULL: stdout) — a file through a temporary name and a rename, so
// no half-written config is ever left. Fields the reader set and defaults alike are written.
static moe_status moe_config_emit(const Moe__Config *cfg, const char *out) {
    if (!out) return moe_json_write_message(stdout, &cfg->base, MOE_JSON_DEFAULTS);
    char tmp[MOE_PATH_MAX];
    moe_status st = moe_path_fmt(tmp, "--out", "%s.tmp", out);
    if (st) return st;
    FILE *f = fopen(tmp, "w");
    if (!f) return moe_set_error(MOE_EIO, "--out %s: cannot write %s (%s)", out, tmp, strerror(errno));
    st = moe_json_write_message(f, &cfg->base, MOE_JSON_DEFAULTS);
    const int bad = ferror(f);
    if (fclose(f) != 0 || bad || st || rename(tmp, out) != 0) {
        unlink(tmp);
        return st ? st : moe_set_error(MOE_EIO, "--out %s: write failed (%s)", out, strerror(errno));
    }
    return MOE_OK;
}

// Every section the HF reader left absent (watchdog, lora, ...) at its defaults, so the file
// written is the whole effective config, as `moe config CONFIG` prints it.
static void moe_config_fill_sections(Moe__Config *cfg) {
    Moe__Config *def = moe_config_new_default();
    const ProtobufCMessageDescriptor *d = cfg->base.descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED) continue;
        void **dst = (void **)((char *)cfg + f->offset), **src = (void **)((char *)def + f->offset);
        if (!*dst && *src) *dst = *src, *src = NULL;
    }
    moe_config_free(def);
}

// `--from-hf FILE`: the model of a Hugging Face config.json as a moe config (params/ imports it),
// the overrides applied, validated; what was left out and how fields were mapped go to stderr.
static moe_status moe_config_from_hf(const char *hf, const char **sets, int n_sets, int world,
                                     Moe__Config **out) {
    moe_hf_info info = {0};
    moe_status st = moe_hf_config_load(hf, out, &info);
    if (!st) moe_config_fill_sections(*out);
    for (int i = 0; !st && i < n_sets; i++) st = moe_config_set(*out, sets[i]);
    if (!st && !((*out)->name && (*out)->name[0]) && info.family) { // named after its family
        free((*out)->name);
        (*out)->name = moe_xstrdup(info.family);
    }
    if (!st) st = moe_config_validate(*out, world);
    if (!st) {
        for (size_t i = 0; i < info.n_notes; i++) fprintf(stderr, "moe config: note: %s\n", info.notes[i]);
        if (info.n_ignored) fprintf(stderr, "moe config: note: %zu fields of %s not mapped (moe params %s lists them)\n", info.n_ignored, hf, hf);
        if (moe_model_check(*out) != MOE_OK) // a shape moe counts but does not train
            fprintf(stderr, "moe config: note: moe train would refuse this model as it is: %s\n",
                    moe_last_error());
        moe_clear_error();
    }
    moe_hf_info_free(&info);
    if (st) {
        moe_config_free(*out);
        *out = NULL;
    }
    return st;
}

int moe_cmd_config(int argc, char **argv) {
    const char *path = NULL, *hf = NULL, *out = NULL;
    moe_args_list sets = {0};
    int world = 0, rc = MOE_EXIT_USAGE;
    const moe_arg_pos pos[] = {
        {"CONFIG", MOE_ARG_STRING, &path, 0, 1, "a JSON file, or - for stdin"},
    };
    const moe_arg_opt opts[] = {
        MOE_OPT_LIST("--set", &sets, "path.to.field=value",
                     "override one field: names as in the schema or lowerCamelCase,\n"
                     "value as JSON (4, 0.5, true, \"x\", [1,2], {\"top_k\":2}) or a bare\n"
                     "string / enum name (--set router.scoring=sigmoid); null clears"),
        MOE_OPT_INT("--world", &world, "N", 1, 1 << 24,
                    "also check the layout for N ranks (batch and ep_size divide N)"),
        MOE_OPT_STRING("--from-hf", &hf, "FILE",
                       "instead of CONFIG: a Hugging Face config.json, written as a moe\n"
                       "config of that model (scale it down with --set, e.g.\n"
                       "--set model.n_layers=2 --set model.d_model=256)"),
        MOE_OPT_STRING("--out", &out, "FILE",
                       "write the config to FILE (atomically) instead of stdout"),
    };
    const moe_args_spec spec = {
        "moe config",
        "Reads CONFIG (JSON on the moe.Config schema; \"-\" reads standard input), applies\n"
        "each --set path=value in order, validates, and prints the effective config as JSON\n"
        "with every default filled in. --from-hf FILE reads a Hugging Face config.json\n"
        "instead (docs/params.md has the field mapping) and prints it as a moe config.",
        pos,
        MOE_ARGS_N(pos),
        opts,
        MOE_ARGS_N(opts),
        "exit codes: 0 valid, 2 bad usage or a bad/invalid config (message on stderr)\n"
        "see docs/config.md for the accepted forms and the validation rules"};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    if (!path == !hf) {
        fprintf(stderr, "moe config: %s\n", hf ? "give CONFIG or --from-hf FILE, not both"
                                                : "missing CONFIG (or --from-hf FILE)");
        moe_args_usage(&spec, stderr);
        goto done;
    }
    Moe__Config *cfg;
    moe_status st = hf ? moe_config_from_hf(hf, sets.v, sets.n, world, &cfg)
                       : moe_config_load_with(path, sets.v, sets.n, world, &cfg);
    if (st != MOE_OK) {
        moe_config_report();
        rc = st == MOE_EIO ? MOE_EXIT_USAGE : moe_exit_code(st);
        goto done;
    }
    st = moe_config_emit(cfg, out);
    moe_config_free(cfg);
    if (st != MOE_OK) {
        fprintf(stderr, "moe config: %s\n", moe_last_error());
        rc = moe_exit_code(st);
        goto done;
    }
    rc = MOE_EXIT_OK;
done:
    moe_args_free(&spec);
    return rc;
}
