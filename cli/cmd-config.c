// cmd-config.c: `moe config CONFIG [--set a.b=v]... [--world N]` — reads a config (or stdin for
// "-"), applies the overrides, validates, and prints the effective config with every default as
// JSON. The quickest way to see what a run will use, and to check a config before queueing it.
#include "config.h"
#include "cli.h"
#include "moe-args.h"
#include "params.h"

#include <string.h>

int moe_cmd_config(int argc, char **argv) {
    const char *path = NULL;
    moe_args_list sets = {0};
    int world = 0, rc = MOE_EXIT_USAGE;
    const moe_arg_pos pos[] = {
        {"CONFIG", MOE_ARG_STRING, &path, 1, 1, "a JSON file, or - for stdin"},
    };
    const moe_arg_opt opts[] = {
        MOE_OPT_LIST("--set", &sets, "path.to.field=value",
                     "override one field: names as in the schema or lowerCamelCase,\n"
                     "value as JSON (4, 0.5, true, \"x\", [1,2], {\"top_k\":2}) or a bare\n"
                     "string / enum name (--set router.scoring=sigmoid); null clears"),
        MOE_OPT_INT("--world", &world, "N", 1, 1 << 24,
                    "also check the layout for N ranks (batch and ep_size divide N)"),
    };
    const moe_args_spec spec = {
        "moe config",
        "Reads CONFIG (JSON on the moe.Config schema; \"-\" reads standard input), applies\n"
        "each --set path=value in order, validates, and prints the effective config as JSON\n"
        "with every default filled in.",
        pos,
        MOE_ARGS_N(pos),
        opts,
        MOE_ARGS_N(opts),
        "exit codes: 0 valid, 2 bad usage or a bad/invalid config (message on stderr)\n"
        "see docs/config.md for the accepted forms and the validation rules"};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    Moe__Config *cfg;
    moe_status st = moe_config_load_with(path, sets.v, sets.n, world, &cfg);
    if (st != MOE_OK) {
        // One "moe config: " per line, so every problem reads on its own.
        const char *msg = moe_last_error();
        for (const char *line = msg; *line;) {
            const char *nl = strchr(line, '\n');
            int n = nl ? (int)(nl - line) : (int)strlen(line);
            fprintf(stderr, "moe config: %.*s\n", n, line);
            line += n + (nl != NULL);
        }
        rc = st == MOE_EIO ? MOE_EXIT_USAGE : moe_exit_code(st);
        goto done;
    }
    st = moe_json_write_message(stdout, &cfg->base, MOE_JSON_DEFAULTS);
    moe_config_free(cfg);
    if (st != MOE_OK) {
        fprintf(stderr, "moe config: %s\n", moe_last_error());
        rc = MOE_EXIT_FAILURE;
        goto done;
    }
    rc = MOE_EXIT_OK;
done:
    moe_args_free(&spec);
    return rc;
}
