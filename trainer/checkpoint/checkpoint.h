// checkpoint.h: distributed checkpoints of named float tensors (trainer/checkpoint/checkpoint.c) — atomic
// directories with a protobuf manifest and CRC32C per file, verified before anything is loaded,
// expert tensors keyed by (layer, global expert id) so another EP size reads them by re-indexing.
// Layout, protocol and guarantees: docs/checkpoints.md.
//
// Collectives: save and load are collective over the world of `c` (every rank calls them with the
// same arguments apart from its tensors). c may be NULL: a single process (tools, tests).
// Every phase ends with an agreement on the status, so a failure on one rank returns the same
// status (and the failing rank's message) on every rank; nobody is left in a collective.
// Shared file system: every rank writes its own data file into the checkpoint directory.
#ifndef MOE_CHECKPOINT_H
#define MOE_CHECKPOINT_H

#include "comm.h"
#include "moe-common.h"
#include "moe.pb-c.h"

// CRC32C (Castagnoli, reflected, init and final xor 0xFFFFFFFF): crc32c("123456789") = 0xE3069283.
// `crc` continues a previous value (start with 0). Uses SSE4.2 when the CPU has it.
uint32_t moe_crc32c(uint32_t crc, const void *buf, size_t n);
uint32_t moe_crc32c_sw(uint32_t crc, const void *buf, size_t n); // table-driven reference

#define MOE_CKPT_MAX_DIMS 6

// The format this binary writes and the only one it reads (CheckpointManifest.format_version).
#define MOE_CKPT_FORMAT_VERSION 1u
// Bytes per tensor element in the data files: fp32 in the host's (little-endian) byte order, so
// a tensor of numel elements is numel·MOE_CKPT_ELEM_BYTES bytes (TensorEntry.bytes).
#define MOE_CKPT_ELEM_BYTES 4
_Static_assert(sizeof(float) == MOE_CKPT_ELEM_BYTES, "checkpoint tensors are fp32");

// Kinds of tensor the trainer registers, with the string stored in TensorEntry.kind (the strings
// are the file format: never rename one). One row each: X(name, string).
#define MOE_CKPT_KIND_MAP(X)                                                                       \
    X(PARAM, "param")             /* a model parameter */                                          \
    X(ADAM_M, "adam_m")           /* AdamW first moment of a parameter */                          \
    X(ADAM_V, "adam_v")           /* AdamW second moment of a parameter */                         \
    X(ROUTER_BIAS, "router_bias") /* aux-loss-free balancing bias of a MoE layer (E) */

typedef enum {
#define MOE_CKPT_KIND_ENUM_(name, str) MOE_CKPT_KIND_##name,
    MOE_CKPT_KIND_MAP(MOE_CKPT_KIND_ENUM_)
#undef MOE_CKPT_KIND_ENUM_
} moe_ckpt_kind;

// The on-disk string of a kind ("param", ...); NULL for a value outside the enum.
static inline const char *moe_ckpt_kind_name(moe_ckpt_kind k) {
    switch (k) {
#define MOE_CKPT_KIND_STR_(name, str)                                                              \
    case MOE_CKPT_KIND_##name: return str;
        MOE_CKPT_KIND_MAP(MOE_CKPT_KIND_STR_)
#undef MOE_CKPT_KIND_STR_
    }
    return NULL;
}

// One tensor as the caller holds it. A tensor is identified by (kind, name, layer, expert).
typedef struct {
    const char *name; // e.g. "layers.ffn.w1" (copied)
    const char *kind; // moe_ckpt_kind_name() of its kind, e.g. "param" (copied; any non-empty
                      // string is stored and matched as is)
    int layer;        // -1: not per layer
    int expert;       // global expert id; -1: not an expert tensor
    int ndim;         // 1..MOE_CKPT_MAX_DIMS
    int64_t shape[MOE_CKPT_MAX_DIMS];
    float *data; // (shape...) owned by the caller: read on save, written on load
    int writer;  // 1: this rank writes it (dense: world rank 0; expert: EDP rank 0 of its holders)
} moe_ckpt_tensor;

// Run state saved next to the tensors.
typedef struct {
    int64_t step; // steps done
    uint64_t rng_state;
    uint64_t data_cursor; // the trainer's data position (the step: batches depend on it only)
    int32_t world, ep;    // layout the checkpoint was written at
    char exchange[48]; // the exchange setting parallel.exchange = auto chose ("" = none; manifest
                       // exchange_choice; trainer/exchange-auto.h)
    // A LoRA run's base (manifest base_checkpoint, base_manifest_hash): "" = none / the init.
    char base[MOE_PATH_MAX];
    uint64_t base_hash;
} moe_ckpt_state;

typedef struct moe_ckpt moe_ckpt;

moe_ckpt *moe_ckpt_create(void);
void moe_ckpt_free(moe_ckpt *ck); // NULL-safe
// Registers a tensor (setup code; asserts on a duplicate key or bad shape).
void moe_ckpt_add(moe_ckpt *ck, const moe_ckpt_tensor *t);
int moe_ckpt_count(const moe_ckpt *ck);

// Writes OUT/checkpoints/step_%08lld (OUT = out_dir) atomically: temporary directory, files
// fsynced, manifest last, rename, LATEST swapped; then deletes all but the newest `keep` complete
// checkpoints (keep <= 0: keep all) and leftover temporary directories. Refuses (MOE_EIO) when
// that step's directory already exists. `written` (may be NULL, cap bytes) gets the final path.
moe_status moe_ckpt_save(moe_ckpt *ck, const moe_comm *c, const char *out_dir,
                         const Moe__Config *cfg, const moe_ckpt_state *st, int keep, char *written,
                         size_t cap);

// The same checkpoint written by ONE process for a layout of `world` ranks, one rank's tensors
// at a time (moe import: only one rank's shard is in memory at once). Each call of write takes a
// moe_ckpt registered as that rank would register it (its writer flags); the files, manifest,
// CRC32Cs, atomic rename and LATEST are moe_ckpt_save's (the same code). A rank never written
// holds no file, as a rank without writer tensors in a save. Until commit returns MOE_OK nothing
// but the temporary directory exists; free removes it when the commit did not happen.
typedef struct moe_ckpt_serial moe_ckpt_serial;
// Phase 1: OUT/checkpoints/step_N.tmp-XXXXXX; refuses (MOE_EIO) an existing step_N.
moe_status moe_ckpt_serial_begin(const char *out_dir, int64_t step, int world,
                                 moe_ckpt_serial **out);
// Writes world rank `rank`'s files (each rank once; ck may be freed afterwards).
moe_status moe_ckpt_serial_write(moe_ckpt_serial *s, const moe_ckpt *ck, int rank);
// The manifest (st->step must be begin's step), rename, LATEST, pruning to `keep`.
moe_status moe_ckpt_serial_commit(moe_ckpt_serial *s, const Moe__Config *cfg,
                                  const moe_ckpt_state *st, int keep, char *written, size_t cap);
void moe_ckpt_serial_free(moe_ckpt_serial *s); // NULL-safe

// Loads `where`: a checkpoint directory, a run directory (its checkpoints/LATEST), a checkpoints
// directory (its LATEST), or ".../latest". First verifies the manifest and every file (size,
// CRC32C), compares cfg->model with the manifest's (every differing field named; cfg may be
// NULL to skip), and finds every registered tensor with its shape; only then each rank reads its
// tensors. Failure: MOE_ECORRUPT (verification; the message names the file, what is wrong and the
// previous checkpoint to resume from), MOE_EINVAL (other config, missing tensor, shape),
// MOE_EIO; no registered tensor is modified. `st` (may be NULL) gets the saved state.
moe_status moe_ckpt_load(moe_ckpt *ck, const moe_comm *c, const char *where, const Moe__Config *cfg,
                         moe_ckpt_state *st);

// ---------------------------------------------------------------- local tools (no MPI)
// A checkpoint read in parts by one process (no MPI): open resolves `where` (as load does),
// reads the manifest and verifies every file (size, CRC32C) ONCE, with load's errors
// (MOE_ECORRUPT naming the previous checkpoint); then any number of reads each fill the tensors
// of a moe_ckpt registered with only some of the checkpoint's tensors (any subset: a key the
// manifest lacks is MOE_EINVAL as in load), without verifying the files again. For tools that
// hold one part of a model at a time (moe export: the dense tensors, then one layer's experts).
typedef struct moe_ckpt_reader moe_ckpt_reader;
moe_status moe_ckpt_reader_open(const char *where, moe_ckpt_reader **out);
// Checks that every tensor of ck is in the checkpoint with its shape (load's errors); reads none.
moe_status moe_ckpt_reader_check(const moe_ckpt_reader *r, const moe_ckpt *ck);
// Checks as reader_check, then fills every tensor of ck from the files. MOE_EINVAL, MOE_EIO.
moe_status moe_ckpt_reader_read(const moe_ckpt_reader *r, moe_ckpt *ck);
const char *moe_ckpt_reader_dir(const moe_ckpt_reader *r); // the resolved checkpoint directory
void moe_ckpt_reader_free(moe_ckpt_reader *r);             // NULL-safe

// Resolves `where` (as for load) to a checkpoint directory path in `dir` (cap bytes).
moe_status moe_ckpt_resolve(const char *where, char *dir, size_t cap);
// MOE_OK when a run may start from step 0 in out_dir: OUT/checkpoints holds neither a complete
// checkpoint nor LATEST (else MOE_EUSAGE naming the newest checkpoint and --resume).
moe_status moe_ckpt_check_fresh(const char *out_dir);
// MOE_OK when OUT/checkpoints holds no step_N directory (complete or not) with N > step, which a
// run resumed from `step` would have to overwrite; else MOE_EUSAGE naming the first one.
moe_status moe_ckpt_check_newer(const char *out_dir, int64_t step);
// FNV-1a 64 of the bytes of dir/manifest.pb (the identity of a checkpoint: it lists every file
// with its CRC32C): a LoRA checkpoint records its base's. MOE_EIO naming the file.
moe_status moe_ckpt_manifest_hash(const char *dir, uint64_t *out);
// Reads and checks dir/manifest.pb (its own CRC32C); free with
// protobuf_c_message_free_unpacked(&m->base, NULL).
moe_status moe_ckpt_read_manifest(const char *dir, Moe__CheckpointManifest **out);
// NULL for a manifest whose every byte is covered by its CRC32C (file_crc32c); for one written
// before that field (old checkpoints still load) a note to print once.
const char *moe_ckpt_manifest_note(const Moe__CheckpointManifest *m);
// Checks one file of the manifest: present, size, CRC32C. MOE_ECORRUPT with what is wrong.
moe_status moe_ckpt_verify_file(const char *dir, const Moe__FileEntry *f);
// The names of the ModelConfig fields that differ between a and b (absent = default), as
// "model.n_experts (8 in the checkpoint, 4 in the config), ..." in buf (cap > 0 bytes; a list
// that does not fit ends "... and N more", a long value list too); returns how many differ.
int moe_ckpt_config_diff(const Moe__Config *ckpt, const Moe__Config *cfg, char *buf, size_t cap);

#endif
