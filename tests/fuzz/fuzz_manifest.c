// fuzz_manifest.c: the checkpoint manifest and the verification of a checkpoint directory
// (trainer/checkpoint/: moe_ckpt_read_manifest, moe_ckpt_verify_file, moe_ckpt_config_diff and
// moe_ckpt_load, which checks every registered tensor against the manifest before reading it).
// A tiny checkpoint is saved once; each input replaces its manifest.pb.
// Input: one mode byte, then the manifest bytes. Mode bit 0 set: the bytes are unpacked and packed
// again with a correct manifest CRC32C (moe_ckpt_pack_manifest, as the writer does), so mutations
// reach the checks behind the CRC; clear: they are written as they are (the unpacker and the CRC).
#include "checkpoint-impl.h"
#include "fuzz-util.h"

static moe_fuzz_ckpt tiny;
static char ck_dir[MOE_PATH_MAX], *manifest_path;

static void fuzz_manifest_exit(void) { moe_fuzz_ckpt_free(&tiny); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    moe_fuzz_ckpt_init(&tiny);
    atexit(fuzz_manifest_exit);
    moe_fuzz_ckpt_save(&tiny, moe_fuzz_dir(), 1, ck_dir, sizeof ck_dir);
    size_t n = strlen(ck_dir) + sizeof "/manifest.pb";
    manifest_path = moe_xcalloc(n, 1);
    snprintf(manifest_path, n, "%s/manifest.pb", ck_dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int fix_crc = data[0] & 1;
    data++, size--;
    uint8_t *fixed = NULL;
    if (fix_crc) {
        Moe__CheckpointManifest *m = moe__checkpoint_manifest__unpack(NULL, size, data);
        if (m) {
            size_t len;
            fixed = moe_ckpt_pack_manifest(m, &len);
            moe__checkpoint_manifest__free_unpacked(m, NULL);
            data = fixed, size = len;
        }
    }
    moe_fuzz_write_file(manifest_path, data, size);
    free(fixed);
    // What `moe inspect` does: the manifest, then every file it lists.
    Moe__CheckpointManifest *m = NULL;
    if (moe_ckpt_read_manifest(ck_dir, &m) == MOE_OK) {
        for (size_t f = 0; f < m->n_files; f++) (void)moe_ckpt_verify_file(ck_dir, m->files[f]);
        char diff[64];
        (void)moe_ckpt_config_diff(m->config, tiny.cfg, diff, sizeof diff);
        char *json = moe_json_format_message(&m->base, 0); // manifest.json is written this way
        MOE_ASSERT(json != NULL);
        free(json);
        moe__checkpoint_manifest__free_unpacked(m, NULL);
    }
    // What `moe train --resume` does: verify everything, then read the registered tensors. Every
    // file here is readable, so a failure is the manifest's: MOE_ECORRUPT or MOE_EINVAL (exit 3
    // or 2), never MOE_EIO (exit 1, "the machine failed"), which would send a user the wrong way.
    moe_ckpt_state st;
    for (int with_cfg = 0; with_cfg < 2; with_cfg++) {
        moe_status rc = moe_ckpt_load(tiny.ck, NULL, ck_dir, with_cfg ? tiny.cfg : NULL, &st);
        if (rc == MOE_EIO)
            fprintf(stderr, "fuzz: load failed with MOE_EIO: %s\n", moe_last_error());
        MOE_ASSERT(rc != MOE_EIO);
    }
    return 0;
}
