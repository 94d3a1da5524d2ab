// cmd-config.c: `moe config CONFIG [--set a.b=v]... [--world N]` — reads a config (or stdin for
// "-"), applies the overrides, validates, and prints the effective config with every default as
// JSON. The quickest way to see what a run will use, and to check a config before queueing it.
#include "config.h"
#include "cli.h"
#include "params.h"

#include <errno.h>
#include <string.h>

static void moe_config_usage(FILE *f) {
    fprintf(f,
            "usage: moe config CONFIG [--set path.to.field=value]... [--world N]\n"
            "\n"
            "Reads CONFIG (JSON on the moe.Config schema; \"-\" reads standard input), applies\n"
            "each --set in order, validates, and prints the effective config as JSON with every\n"
            "default filled in.\n"
            "\n"
            "  --set path=value  override one field: names as in the schema or lowerCamelCase,\n"
            "                    value as JSON (4, 0.5, true, \"x\", [1,2], {\"top_k\":2}) or a bare\n"
            "                    string / enum name (--set router.scoring=sigmoid); null clears\n"
            "  --world N         also check the layout for N ranks (batch and ep_size divide N)\n"
            "  -h, --help        this help\n"
            "\n"
            "exit codes: 0 valid, 2 bad usage or a bad/invalid config (message on stderr)\n"
            "see docs/config.md for the accepted forms and the validation rules\n");
}

int moe_cmd_config(int argc, char **argv) {
    const char *path = NULL;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    int n_sets = 0, world = 0, rc = MOE_EXIT_USAGE;
    if (!sets) {
        fprintf(stderr, "moe config: out of memory\n");
        return MOE_EXIT_FAILURE;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            moe_config_usage(stdout);
            rc = MOE_EXIT_OK;
            goto done;
        } else if (!strcmp(a, "--set") || !strncmp(a, "--set=", 6)) {
            const char *v = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                fprintf(stderr, "moe config: --set needs path.to.field=value\n");
                goto done;
            }
            sets[n_sets++] = v;
        } else if (!strcmp(a, "--world") || !strncmp(a, "--world=", 8)) {
            const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
            char *end = NULL;
            errno = 0;
            long w = v ? strtol(v, &end, 10) : 0;
            if (!v || !*v || *end || errno || w < 1 || w > 1 << 24) {
                fprintf(stderr, "moe config: --world needs a number of ranks >= 1, got %s\n",
                        v ? v : "nothing");
                goto done;
            }
            world = (int)w;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "moe config: unknown option '%s' (see moe config --help)\n", a);
            goto done;
        } else if (path) {
            fprintf(stderr, "moe config: one CONFIG only, got '%s' and '%s'\n", path, a);
            goto done;
        } else {
            path = a;
        }
    }
    if (!path) {
        fprintf(stderr, "moe config: missing CONFIG (a JSON file, or - for stdin)\n");
        moe_config_usage(stderr);
        goto done;
    }
    Moe__Config *cfg;
    moe_status st = moe_config_load_with(path, sets, n_sets, world, &cfg);
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
    free(sets);
    return rc;
}
