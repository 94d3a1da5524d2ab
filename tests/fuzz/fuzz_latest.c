// fuzz_latest.c: LATEST and the checkpoint path forms (trainer/checkpoint/: moe_ckpt_resolve, and
// the fresh-run and newer-checkpoint checks that list a checkpoints directory). The scratch run
// directory holds checkpoints/step_00000003 (complete) and step_00000007 (no manifest.pb).
// Input: one byte choosing where LATEST lives (bit 0: RUN/LATEST instead of
// RUN/checkpoints/LATEST) and which path is resolved (bits 1-2: RUN, RUN/checkpoints,
// RUN/checkpoints/latest, RUN/latest), then LATEST's bytes.
#include "checkpoint-impl.h"
#include "fuzz-util.h"

static char *run_dir, *ck_latest, *run_latest;
static char *where[4];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    run_dir = moe_fuzz_path("run");
    char *p = moe_fuzz_path("run/checkpoints/step_00000003");
    MOE_ASSERT(moe_mkdir_p(p) == 0);
    free(p);
    p = moe_fuzz_path("run/checkpoints/step_00000007");
    MOE_ASSERT(moe_mkdir_p(p) == 0);
    free(p);
    p = moe_fuzz_path("run/checkpoints/step_00000003/manifest.pb");
    moe_fuzz_write_file(p, "", 0);
    free(p);
    ck_latest = moe_fuzz_path("run/checkpoints/LATEST");
    run_latest = moe_fuzz_path("run/LATEST");
    where[0] = moe_fuzz_path("run");
    where[1] = moe_fuzz_path("run/checkpoints/");
    where[2] = moe_fuzz_path("run/checkpoints/latest");
    where[3] = moe_fuzz_path("run/latest");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int mode = data[0];
    data++, size--;
    unlink(ck_latest);
    unlink(run_latest);
    moe_fuzz_write_file(mode & 1 ? run_latest : ck_latest, data, size);
    char dir[MOE_PATH_MAX];
    if (moe_ckpt_resolve(where[(mode >> 1) & 3], dir, sizeof dir) == MOE_OK)
        MOE_ASSERT(strlen(dir) < sizeof dir);
    char small[24]; // a caller's buffer shorter than the path: cut, never overrun
    (void)moe_ckpt_resolve(where[(mode >> 1) & 3], small, sizeof small);
    (void)moe_ckpt_check_fresh(run_dir);
    (void)moe_ckpt_check_newer(run_dir, 3);
    return 0;
}
