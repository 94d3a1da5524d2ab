// fuzz_config.c: the JSON config reader and `--set` (proto/: moe_config_load_with, hence
// moe_json_parse_message over the protobuf-c descriptors, moe_config_set, moe_config_validate).
// Input: a config file's bytes, then optionally a NUL byte and up to 8 `--set` assignments, one a
// line. A config that loads must also count its parameters (params/) and survive a round trip
// through the JSON writer unchanged.
#include "fuzz-util.h"
#include "params.h"

static char *cfg_path;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    cfg_path = moe_fuzz_path("config.json");
    return 0;
}

enum { MAX_SETS = 8 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    const size_t json_len = nul ? (size_t)(nul - data) : size;
    moe_fuzz_write_file(cfg_path, data, json_len);
    // The assignments, each its own NUL-terminated copy (ASan sees a read past one).
    char *sets[MAX_SETS];
    int n_sets = 0;
    if (nul) {
        const char *p = (const char *)nul + 1, *end = (const char *)data + size;
        while (p < end && n_sets < MAX_SETS) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
            sets[n_sets] = moe_xcalloc(n + 1, 1);
            memcpy(sets[n_sets++], p, n);
            p += n + 1;
        }
    }
    Moe__Config *cfg = NULL;
    if (moe_config_load_with(cfg_path, (const char *const *)sets, n_sets, 2, &cfg) == MOE_OK) {
        moe_params_report pr;
        (void)moe_params_count(cfg, 2, 0, &pr);
        char *a = moe_json_format_message(&cfg->base, 0);
        MOE_ASSERT(a != NULL);
        ProtobufCMessage *back = NULL;
        moe_status st =
            moe_json_parse_message("<written>", a, strlen(a), &moe__config__descriptor, &back);
        if (st != MOE_OK)
            fprintf(stderr, "fuzz: written config does not read back: %s\n%s\n", moe_last_error(),
                    a);
        MOE_ASSERT(st == MOE_OK);
        char *b = moe_json_format_message(back, 0);
        MOE_ASSERT(b != NULL);
        if (strcmp(a, b)) fprintf(stderr, "fuzz: round trip changed the config:\n%s\n%s\n", a, b);
        MOE_ASSERT(strcmp(a, b) == 0);
        free(a);
        free(b);
        protobuf_c_message_free_unpacked(back, NULL);
        moe_config_free(cfg);
    }
    for (int i = 0; i < n_sets; i++) free(sets[i]);
    return 0;
}
