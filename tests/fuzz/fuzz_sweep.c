// fuzz_sweep.c: the sweep file reader (sweep/sweep.c: moe_sweep_load). Input: the sweep file,
// written next to a copy of examples/sweep-base.json (so "base_file": "sweep-base.json" resolves).
// Every run of a sweep loads and validates its config, so a grid over 64 runs is skipped as too
// slow to fuzz (a user may well ask for it; it is not a parser bug).
#include "fuzz-util.h"
#include "sweep-impl.h"

#ifndef MOE_FUZZ_SOURCE_DIR
#error "MOE_FUZZ_SOURCE_DIR (the repository root) must be defined"
#endif

static char *sweep_path;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char *text = NULL;
    size_t len = 0;
    moe_status st = moe_read_file(MOE_FUZZ_SOURCE_DIR "/examples/sweep-base.json", 0, &text, &len);
    if (st != MOE_OK) fprintf(stderr, "fuzz: %s\n", moe_last_error());
    MOE_ASSERT(st == MOE_OK);
    char *base = moe_fuzz_path("sweep-base.json");
    moe_fuzz_write_file(base, text, len);
    free(text);
    free(base);
    sweep_path = moe_fuzz_path("sweep.json");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // The grid's size first, from the same reader moe_sweep_load uses.
    ProtobufCMessage *m = NULL;
    if (moe_json_parse_message("sweep", (const char *)data, size, &moe__sweep_config__descriptor,
                               &m) == MOE_OK) {
        const Moe__SweepConfig *sc = (const Moe__SweepConfig *)m;
        const size_t runs =
            (sc->n_points + 1 + sc->n_experts_axis) * (sc->n_seeds ? sc->n_seeds : 1);
        protobuf_c_message_free_unpacked(m, NULL);
        if (runs > 64) return 0;
    }
    moe_fuzz_write_file(sweep_path, data, size);
    moe_sweep *s = NULL;
    // No --out: the file's own out_dir is checked too (loading writes nothing there).
    if (moe_sweep_load(sweep_path, NULL, &s) == MOE_OK) moe_sweep_free(s);
    return 0;
}
