// data.h: token data for training (trainer/data/data.c) — raw bytes of a text file (vocab 256) or an
// llm.c uint16 token shard, memory-mapped once, split into train/validation, and deterministic
// batches that do not depend on the world size. Formats and rules: docs/data.md.
//
// Letters: B global batch (sequences per step), Bl = B / W sequences of one rank, S seq_len.
// A sequence is S + 1 consecutive tokens: inputs are [0, S), targets are [1, S + 1).
// Thread safety: a moe_data is read-only after moe_data_open; batch calls may run concurrently.
#ifndef MOE_DATA_H
#define MOE_DATA_H

#include "moe-common.h"
#include "moe.pb-c.h"

// llm.c token shard: 256 int32 header (magic, version, number of tokens, 0...), then uint16
// tokens, little-endian.
#define MOE_DATA_U16_MAGIC       20240520
#define MOE_DATA_U16_VERSION     1
#define MOE_DATA_U16_HEADER_INTS 256

typedef struct {
    const char *path;               // training file (required)
    const char *val_path;           // NULL or "": validation is the tail of `path`
    Moe__DataConfig__Format format; // MOE__DATA_CONFIG__FORMAT__text or __U16_TOKENS
    double val_fraction; // [0, 1): tail of `path` held out when val_path is unset; 0 = none
    int64_t vocab_size;  // every token must be < vocab_size (checked at open)
    int32_t seq_len;     // S >= 1
    uint64_t seed;       // train.seed
} moe_data_params;

typedef struct moe_data moe_data;

// Maps the file(s), checks the header (u16), scans every token once against vocab_size, and
// splits. Errors (MOE_EIO unreadable, MOE_ECORRUPT bad header or token, MOE_EINVAL too short or a
// bad parameter) name the file and the numbers. Allocates nothing per batch afterwards.
moe_status moe_data_open(const moe_data_params *p, moe_data **out);
// The same from a moe.Config: data.path (required), data.format, data.val_fraction, data.val_path,
// model.vocab_size, train.seq_len, train.seed.
moe_status moe_data_open_config(const Moe__Config *cfg, moe_data **out);
void moe_data_free(moe_data *d); // NULL-safe

int64_t moe_data_train_tokens(const moe_data *d); // tokens in the training split
int64_t moe_data_val_tokens(const moe_data *d);   // tokens in the validation split (0: none)
int32_t moe_data_seq_len(const moe_data *d);

// Start (token index inside the training split) of sequence i (0 <= i < B) of step `step`: a hash
// of (seed, step, i) mapped uniformly onto the valid starts [0, train_tokens - S - 1]. Depends on
// nothing else, so every rank computes the same global batch for any world size, and resuming
// at step s needs only s.
int64_t moe_data_train_start(const moe_data *d, int64_t step, int64_t i);

// Fills tokens (n_seq, S + 1) with sequences [first_seq, first_seq + n_seq) of step `step`'s
// global batch; a rank passes first_seq = rank * B / W, n_seq = B / W. No allocation.
void moe_data_train_batch(const moe_data *d, int64_t step, int64_t first_seq, int64_t n_seq,
                          int32_t *tokens /* (n_seq, S+1) */);

// The fixed validation set: sequence k (k >= 0) starts at (k mod n) * S where n is the number of
// windows that fit in the validation split; batch j sequence i is k = j * B + i. Requires
// val_tokens > 0 (asserted).
int64_t moe_data_val_windows(const moe_data *d);
void moe_data_val_batch(const moe_data *d, int64_t batch, int64_t global_batch, int64_t first_seq,
                        int64_t n_seq, int32_t *tokens /* (n_seq, S+1) */);

// Writes an llm.c uint16 shard (header + tokens) to `path`: for tests and converters.
moe_status moe_data_write_u16(const char *path, const uint16_t *tokens /* (n) */, int64_t n);

// The default corpus, built from text every Debian system installs (see docs/data.md): the
// regular files of /usr/share/common-licenses in name order, then the copyright files of a fixed
// list of Essential packages that are present, each after a "==> path <==" line. Deterministic
// for one system; refused (MOE_EIO) below 64 KiB. *bytes (may be NULL) gets the size written.
moe_status moe_data_make_corpus(const char *out_path, int64_t *bytes);

#endif
