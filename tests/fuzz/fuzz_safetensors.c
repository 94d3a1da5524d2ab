// fuzz_safetensors.c: the safetensors reader (hf/: moe_st_open, moe_st_read_f32). The input is the
// file. Invariants when it is accepted: the tensors tile the data buffer in order (begin of each =
// end of the one before, the last ends at the buffer's end), each covers dtype size × numel bytes,
// names are unique, and every tensor reads back (the file is the input, so reads are bounded by it).
#include "fuzz-util.h"
#include "hf.h"

#include <string.h>

static char *path;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    path = moe_fuzz_path("in.safetensors");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    moe_fuzz_write_file(path, data, size);
    moe_st_file *f = NULL;
    if (moe_st_open(path, &f) != MOE_OK) {
        MOE_ASSERT(f == NULL && moe_last_error()[0]);
        return 0;
    }
    uint64_t at = 0;
    for (int i = 0; i < f->n; i++) {
        const moe_st_tensor *t = &f->t[i];
        MOE_ASSERT(t->begin == at && t->end >= t->begin);
        MOE_ASSERT(t->end - t->begin == (uint64_t)moe_st_bytes(t->dtype, t->ndim, t->shape));
        for (int j = 0; j < i; j++) MOE_ASSERT(strcmp(f->t[j].name, t->name) != 0);
        MOE_ASSERT(moe_st_find(f, t->name) == t);
        at = t->end;
        if (t->numel <= (int64_t)size) { // the bytes are in the input: bounded
            float *v = moe_xcalloc((size_t)t->numel + 1, sizeof(float));
            MOE_ASSERT(moe_st_read_f32(f, t, v) == MOE_OK);
            free(v);
        }
    }
    MOE_ASSERT(at == f->data_size && f->data_start + f->data_size == size);
    moe_st_close(f);
    return 0;
}
