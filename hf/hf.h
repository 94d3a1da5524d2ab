// hf.h: the manual of the Hugging Face room — safetensors files, read and written in C
// (hf/safetensors.c), and the float conversions they need. The format
// (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length N, N bytes of
// JSON — {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [BEGIN, END]}, ...,
// "__metadata__": {"key": "value", ...}} — then the data buffer; offsets are relative to the
// buffer, END exclusive, tensors row-major little-endian. moe reads and writes F32, BF16 and F16.
// A model too big for one file is sharded: model-00001-of-0000K.safetensors ... plus
// model.safetensors.index.json {"metadata": {"total_size": BYTES}, "weight_map": {NAME: FILE}}.
//
// Every refusal is MOE_ECORRUPT (exit 3) with a message naming the file, the tensor and the fault:
// a header length past the file, a header that is not UTF-8 JSON or not an object, a duplicate
// name, an unknown dtype, a shape that is not a list of non-negative integers (at most 8), data
// offsets out of order or past the buffer, a byte count that does not match dtype × shape, tensors
// that overlap or leave a hole in the buffer (the format's rule), a __metadata__ that is not
// string → string, a file shorter than its buffer.
#ifndef MOE_HF_H
#define MOE_HF_H

#include "moe-common.h"

#include <stdint.h>
#include <stdio.h>

// ---------------------------------------------------------------- float conversions
// f32 → bf16 and f32 → f16 round to nearest, ties to even; NaN stays a (quiet) NaN; f16 overflow
// gives ±inf and tiny values become f16 subnormals or ±0. bf16/f16 → f32 are exact.
uint16_t moe_f32_to_bf16(float x);
float moe_bf16_to_f32(uint16_t h);
uint16_t moe_f32_to_f16(float x);
float moe_f16_to_f32(uint16_t h);

// ---------------------------------------------------------------- reading
typedef enum { MOE_ST_F32 = 0, MOE_ST_BF16 = 1, MOE_ST_F16 = 2 } moe_st_dtype;
#define MOE_ST_MAX_DIMS 8

typedef struct {
    char *name;
    moe_st_dtype dtype;
    int ndim;
    int64_t shape[MOE_ST_MAX_DIMS];
    int64_t numel;       // product of shape (1 for a scalar)
    uint64_t begin, end; // byte range in the data buffer
} moe_st_tensor;

typedef struct {
    char *path;
    FILE *f;
    uint64_t data_start; // file offset of the buffer (8 + header length)
    uint64_t data_size;  // bytes of the buffer (the file's size − data_start)
    int n;               // tensors, sorted by begin
    moe_st_tensor *t;
    int n_meta; // __metadata__ entries, sorted by key
    char **meta_key, **meta_value;
} moe_st_file;

// Opens and checks path (everything above, reading only the header). *out for moe_st_close.
moe_status moe_st_open(const char *path, moe_st_file **out);
void moe_st_close(moe_st_file *f); // NULL-safe
// The tensor called name, or NULL.
const moe_st_tensor *moe_st_find(const moe_st_file *f, const char *name);
// The metadata value of key, or NULL.
const char *moe_st_meta(const moe_st_file *f, const char *key);
// Tensor t's data converted to f32 into dst (t->numel floats). MOE_EIO when the read fails,
// MOE_ECORRUPT when the file ends early.
moe_status moe_st_read_f32(const moe_st_file *f, const moe_st_tensor *t, float *dst);

// ---------------------------------------------------------------- writing
// A file is declared first (every tensor's name and shape, and the metadata) so that the header
// can be written before any data; then the tensors' data is given in the declared order, one at
// a time (memory stays one tensor). Written to PATH.tmp and renamed at moe_st_writer_finish, so a
// failure never leaves a half-written PATH.
typedef struct moe_st_writer moe_st_writer;
moe_status moe_st_writer_create(const char *path, moe_st_dtype dtype, moe_st_writer **out);
// Declare a tensor (ndim <= MOE_ST_MAX_DIMS; a name not declared before) or a metadata entry.
moe_status moe_st_declare(moe_st_writer *w, const char *name, int ndim, const int64_t *shape);
moe_status moe_st_set_meta(moe_st_writer *w, const char *key, const char *value);
// The next declared tensor's data (numel floats), converted to the writer's dtype. The first
// call writes the header.
moe_status moe_st_write(moe_st_writer *w, const char *name, const float *data);
// Checks that every declared tensor was written, fsyncs and renames. Frees w.
moe_status moe_st_writer_finish(moe_st_writer *w);
// Drops the temporary file; frees w. NULL-safe.
void moe_st_writer_abort(moe_st_writer *w);
// Bytes the data of a declared (name, shape) takes in dtype.
int64_t moe_st_bytes(moe_st_dtype dtype, int ndim, const int64_t *shape);
const char *moe_st_dtype_name(moe_st_dtype d); // "F32", "BF16", "F16"

// ---------------------------------------------------------------- sharded models
// A model split over several files, as Hugging Face writes it: model-00001-of-0000K.safetensors
// ... and model.safetensors.index.json = {"metadata": {"total_size": BYTES}, "weight_map":
// {NAME: FILE, ...}} (total_size: the tensors' data bytes). One file: model.safetensors, no index.

// Assigns the n tensors, in order, with data sizes bytes[i], to shards of at most max_bytes each
// (a tensor larger than max_bytes gets a shard to itself; max_bytes <= 0: one shard): shard[i] is
// tensor i's shard, in 0..k-1, non-decreasing. Returns k (1 for n = 0).
int moe_st_shard_plan(const int64_t *bytes, int n, int64_t max_bytes, int *shard);
// The file name of shard i (0-based) of k: "model-00001-of-00003.safetensors"; k = 1:
// "model.safetensors".
void moe_st_shard_name(char *buf, size_t cap, int i, int k);

typedef struct {
    int n; // entries of the weight map, in the file's order
    char **name, **file;
    int64_t total_size; // -1 when the metadata has none
} moe_st_index;
// Writes dir/model.safetensors.index.json (to a temporary name, then renamed): total_size and
// the weight map name[i] -> moe_st_shard_name(shard[i], k), keys sorted, indented by 2 — as
// transformers writes it.
moe_status moe_st_index_write(const char *dir, const char *const *name, const int *shard, int n,
                              int k, int64_t total_size);
// Reads dir/model.safetensors.index.json. Refuses (MOE_ECORRUPT, exit 3, naming the fault) JSON
// that does not parse or repeats a key, no "weight_map" object, a value that is not a file name of
// the directory (a string without '/' and not "." or ".."), a total_size that is not a
// non-negative integer. MOE_EIO when the file cannot be read.
moe_status moe_st_index_read(const char *dir, moe_st_index *out);
void moe_st_index_free(moe_st_index *ix);

#endif
