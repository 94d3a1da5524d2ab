// fuzz-util.h: what the fuzz targets of tests/fuzz/ share — a scratch directory per process
// (removed at exit), writing an input to a file there (most parsers take a path), and the tiny
// checkpoint the manifest target and the seed generator both build. Header-only: each target is
// one .c file, linked either with libFuzzer (fuzz_<target>) or with replay.c (replay_<target>).
#ifndef MOE_FUZZ_UTIL_H
#define MOE_FUZZ_UTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "config.h"
#include "moe-common.h"

// libFuzzer's entry points (replay.c calls them the same way).
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char moe_fuzz_dir_[256];

// Removes path and, for a directory, everything under it (symbolic links are not followed).
static inline void moe_fuzz_rm_(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[MOE_PATH_MAX];
            if (snprintf(p, sizeof p, "%s/%s", path, e->d_name) < (int)sizeof p) moe_fuzz_rm_(p);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static inline void moe_fuzz_cleanup_(void) {
    if (moe_fuzz_dir_[0]) moe_fuzz_rm_(moe_fuzz_dir_);
}

// The scratch directory of this process ($TMPDIR or /tmp), created on the first call.
static inline const char *moe_fuzz_dir(void) {
    if (!moe_fuzz_dir_[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(moe_fuzz_dir_, sizeof moe_fuzz_dir_, "%s/moe-fuzz-XXXXXX",
                 t && *t && strlen(t) < 200 ? t : "/tmp");
        MOE_ASSERT(mkdtemp(moe_fuzz_dir_) != NULL);
        atexit(moe_fuzz_cleanup_);
    }
    return moe_fuzz_dir_;
}

// A new malloc'd path: the scratch directory / name (name may hold '/').
static inline char *moe_fuzz_path(const char *name) {
    size_t n = strlen(moe_fuzz_dir()) + strlen(name) + 2;
    char *p = moe_xcalloc(n, 1);
    snprintf(p, n, "%s/%s", moe_fuzz_dir(), name);
    return p;
}

// Writes (or replaces) a file with exactly these bytes; aborts when it cannot (not the parser's
// fault, and a silent skip would fuzz nothing).
static inline void moe_fuzz_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    MOE_ASSERT(f != NULL);
    MOE_ASSERT(size == 0 || fwrite(data, 1, size, f) == size);
    MOE_ASSERT(fclose(f) == 0);
}

// ---------------------------------------------------------------- the tiny checkpoint
// Three tensors: a dense parameter, its AdamW moment and one expert's weight — enough for a
// dense.bin and an experts-00000.bin, and small enough to verify in microseconds.
enum { MOE_FUZZ_CK_N = 3 };
typedef struct {
    float w[2 * 3], m[2 * 3], e[4];
    moe_ckpt *ck;
    Moe__Config *cfg;
} moe_fuzz_ckpt;

static inline void moe_fuzz_ckpt_init(moe_fuzz_ckpt *t) {
    for (int i = 0; i < 6; i++) t->w[i] = 0.5f * (float)i - 1.0f, t->m[i] = 0.25f * (float)i;
    for (int i = 0; i < 4; i++) t->e[i] = (float)(i + 1);
    t->ck = moe_ckpt_create();
    const moe_ckpt_tensor ts[MOE_FUZZ_CK_N] = {
        {"layers.attn.wq", "param", 0, -1, 2, {2, 3}, t->w, 1},
        {"layers.attn.wq", "adam_m", 0, -1, 2, {2, 3}, t->m, 1},
        {"layers.ffn.w1", "param", 1, 0, 1, {4}, t->e, 1},
    };
    for (int i = 0; i < MOE_FUZZ_CK_N; i++) moe_ckpt_add(t->ck, &ts[i]);
    t->cfg = moe_config_new_default();
    t->cfg->model->n_layers = 2;
    t->cfg->model->has_n_layers = 1;
}

static inline void moe_fuzz_ckpt_free(moe_fuzz_ckpt *t) {
    moe_ckpt_free(t->ck);
    moe_config_free(t->cfg);
}

// Saves the tiny checkpoint as step `step` under out_dir; its directory goes to dir (cap bytes).
static inline void moe_fuzz_ckpt_save(moe_fuzz_ckpt *t, const char *out_dir, int64_t step,
                                      char *dir, size_t cap) {
    const moe_ckpt_state st = {step, 0x1234u, (uint64_t)step, 1, 1, "", "", 0};
    moe_status rc = moe_ckpt_save(t->ck, NULL, out_dir, t->cfg, &st, 0, dir, cap);
    if (rc != MOE_OK) fprintf(stderr, "fuzz: saving the tiny checkpoint: %s\n", moe_last_error());
    MOE_ASSERT(rc == MOE_OK);
}

#endif
