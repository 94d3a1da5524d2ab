// bench-settings.c: the exchange settings `moe bench step --settings` and `moe bench layer --ep
// --settings` put side by side — the list (given or the default), which of them are the same
// thing or refused at a layout (with the reason printed), the `--settings [LIST]` spelling, and
// the median the step figures use. Settings are exchange-auto.h's values; nothing is added there.
#include "bench-impl.h"

#include <stdlib.h>
#include <string.h>

static const char *const moe_bench_default_settings[] = {
    "flat",       "chunks2",    "chunks4", "chunks8",      "hier",
    "dedup-rank", "dedup-node", "bf16",    "chunks4+bf16", "hier+bf16"};

moe_status moe_bench_settings_list(const char *list, moe_bench_setting *out, int max, int *n) {
    *n = 0;
    MOE_ASSERT(max >= 1);
    out[(*n)++] = (moe_bench_setting){.s = {.n_chunks = 1}}; // flat: the reference, always
    const int n_def = (int)(sizeof moe_bench_default_settings / sizeof *moe_bench_default_settings);
    char *copy = list ? strdup(list) : NULL;
    char *save = NULL;
    char *tok = copy ? strtok_r(copy, ",", &save) : NULL;
    for (int i = 0;; i++) {
        const char *name = copy ? tok : (i < n_def ? moe_bench_default_settings[i] : NULL);
        if (!name) break;
        moe_xsetting s;
        moe_status st = moe_xsetting_parse(name, &s);
        if (st) {
            free(copy);
            return st;
        }
        int dup = 0;
        for (int k = 0; k < *n && !dup; k++) dup = moe_xsetting_equal(&s, &out[k].s);
        if (!dup) {
            if (*n == max) {
                free(copy);
                return moe_set_error(MOE_EINVAL, "--settings: more than %d settings", max - 1);
            }
            out[(*n)++] = (moe_bench_setting){.s = s};
        }
        if (copy) tok = strtok_r(NULL, ",", &save);
    }
    free(copy);
    for (int k = 0; k < *n; k++) moe_xsetting_name(&out[k].s, out[k].name);
    return MOE_OK;
}

const char *moe_bench_setting_skip(const moe_xsetting *s, const moe_comm *c) {
    const int ep = moe_comm_size(c, MOE_COMM_EP);
    int n_nodes = 1;
    const int per_node = moe_comm_node_shape(c, &n_nodes); // 0: unequal nodes
    const int spans = moe_xsetting_spans_nodes(c);
    if (s->bf16 && s->dedup)
        return "refused: bf16 payloads with dedup (config validation; rounding a deduplicated "
               "row's sum would depend on EP)";
    if (ep == 1 && (s->n_chunks > 1 || s->hierarchical || s->dedup))
        return "EP 1: the exchange is a local copy, nothing to overlap, group or deduplicate "
               "(the same as without it)";
    if (s->hierarchical && !spans) return "every EP group inside one node: hier is flat";
    if (s->hierarchical && per_node == 1) return "one rank per node: hier is flat";
    if (s->dedup == 2 && !spans) return "every EP group inside one node: dedup-node is dedup-rank";
    if (s->dedup == 2 && per_node == 1) return "one rank per node: dedup-node is dedup-rank";
    return NULL;
}

int moe_bench_settings_argv(int argc, char **argv, const char **list) {
    *list = NULL;
    int k = 1;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (strcmp(a, "--") == 0) { // the rest is positional: keep it as it is
            while (i < argc) argv[k++] = argv[i++];
            break;
        }
        if (strncmp(a, "--settings=", 11) == 0) {
            *list = a + 11;
            argv[k++] = "--settings";
            continue;
        }
        argv[k++] = a;
        if (strcmp(a, "--settings") != 0 || i + 1 >= argc || argv[i + 1][0] == '-') continue;
        // "--settings LIST" when every comma part is a setting's name; else the next word is
        // another argument (CONFIG) and --settings takes the default list.
        char *copy = strdup(argv[i + 1]), *save = NULL;
        int ok = 1;
        moe_xsetting s;
        for (char *t = strtok_r(copy, ",", &save); t && ok; t = strtok_r(NULL, ",", &save))
            ok = moe_xsetting_parse(t, &s) == MOE_OK;
        if (ok && strchr(argv[i + 1], '.') == NULL) *list = argv[++i];
        free(copy);
    }
    argv[k] = NULL;
    return k;
}

static int moe_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double moe_bench_settings_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, moe_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
