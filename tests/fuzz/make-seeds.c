// make-seeds.c: the binary seeds of the fuzz corpus (tests/fuzz/make-corpus.sh runs it) — manifests
// of the tiny checkpoint fuzz_manifest.c verifies against (fuzz-util.h), and llm.c token shards.
// Written by the production writers (moe_ckpt_save, moe_data_write_u16), so a seed is what a real
// run leaves on disk. Usage: fuzz_make_seeds CORPUS_DIR (its manifest/ and data/ must exist).
#include "checkpoint-impl.h"
#include "data.h"
#include "fuzz-util.h"

// A manifest seed: mode byte, then the manifest.pb bytes of dir.
static void seed_manifest(const char *out, int mode, const char *dir) {
    char p[MOE_PATH_MAX];
    snprintf(p, sizeof p, "%s/manifest.pb", dir);
    char *pb = NULL;
    size_t len = 0;
    MOE_ASSERT(moe_read_file(p, 0, &pb, &len) == MOE_OK);
    uint8_t *buf = moe_xcalloc(len + 1, 1);
    buf[0] = (uint8_t)mode;
    memcpy(buf + 1, pb, len);
    moe_fuzz_write_file(out, buf, len + 1);
    free(buf);
    free(pb);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) { return (void)argc, (void)argv, 0; }
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return (void)data, (void)size, 0; }

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_make_seeds CORPUS_DIR\n");
        return 2;
    }
    char out[MOE_PATH_MAX], dir[MOE_PATH_MAX];
    // Manifests: the tiny checkpoint as written, with and without a config, each in both modes.
    moe_fuzz_ckpt t;
    moe_fuzz_ckpt_init(&t);
    moe_fuzz_ckpt_save(&t, moe_fuzz_dir(), 1, dir, sizeof dir);
    for (int mode = 0; mode < 2; mode++) {
        snprintf(out, sizeof out, "%s/manifest/tiny-%s.bin", argv[1], mode ? "fixcrc" : "raw");
        seed_manifest(out, mode, dir);
    }
    Moe__Config *cfg = t.cfg;
    t.cfg = NULL; // a checkpoint without a config (tools and tests save these)
    moe_fuzz_ckpt_save(&t, moe_fuzz_dir(), 2, dir, sizeof dir);
    t.cfg = cfg;
    snprintf(out, sizeof out, "%s/manifest/noconfig-fixcrc.bin", argv[1]);
    seed_manifest(out, 1, dir);
    moe_fuzz_ckpt_free(&t);
    // Token shards: a short and a longer valid one (every token < 50257), and one empty shard.
    uint16_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (uint16_t)(i * 797 % 50257);
    const int64_t sizes[3] = {12, 64, 0};
    for (int k = 0; k < 3; k++) {
        snprintf(out, sizeof out, "%s/data/u16-%lld.bin", argv[1], (long long)sizes[k]);
        MOE_ASSERT(moe_data_write_u16(out, tok, sizes[k]) == MOE_OK);
    }
    return 0;
}
