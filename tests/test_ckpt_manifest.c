// test_ckpt_manifest.c: the manifest's own bytes (issue 12). Mode "flips": every single-bit flip
// of a small checkpoint's manifest.pb is refused (defect 4: flips of bytes the parse ignores used
// to pass), and a manifest written before file_crc32c still loads with a note, its flips refused
// too. Mode "stepname": a step_20 directory holding step 10's files is refused by load and by
// `moe inspect` (defect 9e). Mode "latest": LATEST messages (defect 10). argv[2] = path of the moe binary (stepname).
#include "checkpoint.h"
#include "config.h"
#include "test-util.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_run[256];

static float g_w[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

static moe_ckpt *reg(float *w) {
    moe_ckpt *ck = moe_ckpt_create();
    moe_ckpt_tensor t = {"embed", "param", -1, -1, 2, {3, 4}, w, 1};
    moe_ckpt_add(ck, &t);
    moe_ckpt_tensor e = {"experts.w1", "param", 0, 1, 1, {4}, w + 4, 1};
    moe_ckpt_add(ck, &e);
    return ck;
}

static void save(int64_t step) {
    moe_ckpt *ck = reg(g_w);
    Moe__Config *cfg = moe_config_new_default();
    moe_ckpt_state st = {step, 99, (uint64_t)step, 1, 1, "", "", 0};
    char out[4096];
    OK(moe_ckpt_save(ck, NULL, g_run, cfg, &st, 0, out, sizeof out));
    moe_config_free(cfg);
    moe_ckpt_free(ck);
}

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    MOE_ASSERT(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = moe_xcalloc(*len + 1, 1);
    MOE_ASSERT(fread(b, 1, *len, f) == *len);
    fclose(f);
    return b;
}

static void spill(const char *path, const uint8_t *b, size_t len) {
    FILE *f = fopen(path, "wb");
    MOE_ASSERT(f && fwrite(b, 1, len, f) == len);
    fclose(f);
}

// Flips every bit of dir/manifest.pb in turn; each must be refused. Returns the flips accepted.
static long flip_all(const char *dir, const char *what) {
    char path[600];
    snprintf(path, sizeof path, "%s/manifest.pb", dir);
    size_t len;
    uint8_t *good = slurp(path, &len), *b = moe_xcalloc(len + 1, 1);
    long passed = 0;
    for (size_t i = 0; i < len * 8; i++) {
        memcpy(b, good, len);
        b[i / 8] ^= (uint8_t)(1u << (i % 8));
        spill(path, b, len);
        Moe__CheckpointManifest *m = NULL;
        moe_status st = moe_ckpt_read_manifest(dir, &m);
        if (st == MOE_OK) {
            if (passed < 5)
                fprintf(stderr, "  %s: flip of byte %zu bit %zu accepted\n", what, i / 8, i % 8);
            passed++;
            moe__checkpoint_manifest__free_unpacked(m, NULL);
        } else {
            CHECK(st == MOE_ECORRUPT && strstr(moe_last_error(), "manifest.pb"),
                  "%s: flip %zu: %s (%s)", what, i, moe_status_str(st), moe_last_error());
        }
    }
    spill(path, good, len);
    CHECK(passed == 0, "%s: %ld of %zu single-bit flips of manifest.pb accepted", what, passed,
          len * 8);
    printf("%s: %zu flips of %zu bytes, %ld accepted\n", what, len * 8, len, passed);
    free(good);
    free(b);
    return passed;
}

static void test_flips(void) {
    save(10);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/checkpoints/step_00000010", g_run);
    Moe__CheckpointManifest *m = NULL;
    OK(moe_ckpt_read_manifest(dir, &m));
    CHECK(m && m->has_file_crc32c && !moe_ckpt_manifest_note(m), "a new manifest has file_crc32c");
    if (m) moe__checkpoint_manifest__free_unpacked(m, NULL);
    flip_all(dir, "manifest.pb");
    // A manifest as written before file_crc32c: manifest_crc32c (field 11) last, over the rest.
    OK(moe_ckpt_read_manifest(dir, &m));
    m->has_file_crc32c = m->has_manifest_crc32c = 0;
    size_t len = protobuf_c_message_get_packed_size(&m->base);
    uint8_t *b = moe_xcalloc(len + 5, 1);
    protobuf_c_message_pack(&m->base, b);
    uint32_t crc = moe_crc32c(0, b, len);
    b[len] = (11 << 3) | 5;
    for (int i = 0; i < 4; i++) b[len + 1 + (size_t)i] = (uint8_t)(crc >> (8 * i));
    moe__checkpoint_manifest__free_unpacked(m, NULL);
    char path[700];
    snprintf(path, sizeof path, "%s/manifest.pb", dir);
    spill(path, b, len + 5);
    free(b);
    m = NULL;
    OK(moe_ckpt_read_manifest(dir, &m));
    CHECK(m && !m->has_file_crc32c && moe_ckpt_manifest_note(m), "old manifest: a note expected");
    if (m) moe__checkpoint_manifest__free_unpacked(m, NULL);
    float w[12] = {0};
    moe_ckpt *ck = reg(w);
    OK(moe_ckpt_load(ck, NULL, dir, NULL, NULL));
    CHECK(!memcmp(w, g_w, sizeof w), "old manifest: tensors differ");
    moe_ckpt_free(ck);
    flip_all(dir, "old manifest.pb");
}

static int run_moe(const char *moe, const char *args, char *out, size_t cap) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", moe, args);
    FILE *f = popen(cmd, "r");
    MOE_ASSERT(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    int rc = pclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_stepname(const char *moe) {
    save(10);
    char a[600], b[600], out[65536], args[800];
    snprintf(a, sizeof a, "%s/checkpoints/step_00000010", g_run);
    snprintf(b, sizeof b, "%s/checkpoints/step_00000020", g_run);
    MOE_ASSERT(rename(a, b) == 0);
    float w[12] = {0};
    moe_ckpt *ck = reg(w);
    moe_status st = moe_ckpt_load(ck, NULL, b, NULL, NULL);
    CHECK(st == MOE_ECORRUPT && strstr(moe_last_error(), "step 20") &&
              strstr(moe_last_error(), "step 10"),
          "load of step_20 holding step 10: %s (%s)", moe_status_str(st), moe_last_error());
    moe_ckpt_free(ck);
    if (moe) {
        snprintf(args, sizeof args, "inspect '%s'", b);
        int rc = run_moe(moe, args, out, sizeof out);
        CHECK(rc == 3 && strstr(out, "step 20") && strstr(out, "step 10"),
              "moe inspect of step_20 holding step 10: exit %d (want 3):\n%s", rc, out);
    }
    MOE_ASSERT(rename(b, a) == 0);
    st = moe_ckpt_load(ck = reg(w), NULL, a, NULL, NULL);
    CHECK(st == MOE_OK, "renamed back: %s", moe_last_error());
    moe_ckpt_free(ck);
}

// Defect 10: LATEST naming a missing directory says "missing" and which; a LATEST symlink loop
// is a broken LATEST (not "no LATEST", which would let training start over).
static void test_latest(void) {
    char ck[600], latest[700], dir[1024];
    snprintf(ck, sizeof ck, "%s/checkpoints", g_run);
    save(10);
    snprintf(latest, sizeof latest, "%s/LATEST", ck);
    FILE *f = fopen(latest, "w");
    fputs("step_00000030\n", f);
    fclose(f);
    moe_status st = moe_ckpt_resolve(g_run, dir, sizeof dir);
    CHECK(st == MOE_ECORRUPT && strstr(moe_last_error(), "step_00000030, which is missing") &&
              !strstr(moe_last_error(), "corrupt") && strstr(moe_last_error(), "step_00000010"),
          "LATEST naming a missing directory: %s (%s)", moe_status_str(st), moe_last_error());
    MOE_ASSERT(unlink(latest) == 0 && symlink("LATEST", latest) == 0);
    st = moe_ckpt_resolve(g_run, dir, sizeof dir);
    CHECK(st == MOE_ECORRUPT && strstr(moe_last_error(), "LATEST: cannot read") &&
              !strstr(moe_last_error(), "no LATEST"),
          "LATEST symlink loop: %s (%s)", moe_status_str(st), moe_last_error());
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "flips";
    test_tmpdir(g_run, sizeof g_run, "ckpt-manifest");
    if (!strcmp(mode, "flips"))
        test_flips();
    else if (!strcmp(mode, "latest"))
        test_latest();
    else
        test_stepname(argc > 2 ? argv[2] : NULL);
    test_rmtree(g_run);
    return test_summary(!strcmp(mode, "flips")    ? "test_ckpt_manifest_flips"
                        : !strcmp(mode, "latest") ? "test_ckpt_latest_messages"
                                                  : "test_ckpt_stepname");
}
