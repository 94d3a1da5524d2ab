// trace.h: the manual of routing traces (trainer/trace/) — which experts every token of a fixed
// probe set (the first validation batches) went to in every MoE layer, recorded from the model's
// own forward (moe_model_route_plan: nothing is computed twice, nothing runs when no trace is
// asked for), gathered to rank 0 and written atomically; and the reader that checks a file before
// anything uses it. The format and the commands: docs/routes.md.
//
// File: the 8 bytes "MOETRACE", a little-endian uint32 header length Hn, the packed protobuf
// moe.TraceHeader (Hn bytes), then n_records records of record_bytes = 4·(5 + 2·slots) bytes, each
// little-endian 32-bit words:
//   seq (probe sequence: batch·global_batch + sequence in the batch), pos (in the sequence),
//   token (its input token id), layer (MoE layer ordinal 0..n_moe-1),
//   expert[slots] (global ids; -1: empty slot), weight[slots] (float32 combine weights),
//   dropped (bit j: slot j's pair was dropped by capacity).
// Records are ordered by (seq, pos, layer) whatever the layout that wrote them: the records of one
// checkpoint are the same bytes at every world size and EP size (test_trace_layout).
// slots = top_k (token choice: best first, as selected), or n_experts for expert choice (the
// experts that took the token, increasing id, then -1). Letters: T tokens, K top-k, E experts.
#ifndef MOE_TRACE_H
#define MOE_TRACE_H

#include "comm.h"
#include "data.h"
#include "model.h"
#include "moe-common.h"
#include "moe.pb-c.h"

#define MOE_TRACE_MAGIC   "MOETRACE"
#define MOE_TRACE_VERSION 1u

// A trace in memory (struct of arrays). n records; slot arrays are (n, slots).
typedef struct {
    Moe__TraceHeader *h; // owned (protobuf-c unpacked, or built by moe_trace_header_new)
    int64_t n;
    int slots, E, n_moe;
    uint32_t *seq, *pos, *token, *layer; // (n)
    int32_t *expert;                     // (n, slots) global ids, -1 empty
    float *weight;                       // (n, slots)
    uint32_t *dropped;                   // (n) bit j: slot j dropped
} moe_trace;

// Words of one record and its bytes for `slots` slots.
static inline int moe_trace_record_words(int slots) { return 5 + 2 * slots; }

// An empty trace of n records for the header h (taken over; its slots, n_experts, moe_layers
// and n_records must be set). Arrays zeroed, experts -1.
moe_trace *moe_trace_alloc(Moe__TraceHeader *h);
void moe_trace_free(moe_trace *t); // NULL-safe

// Serialises record i into words (moe_trace_record_words(slots) uint32, host order) and back.
void moe_trace_pack_record(const moe_trace *t, int64_t i, uint32_t *words);
void moe_trace_unpack_record(moe_trace *t, int64_t i, const uint32_t *words);

// FNV-1a 64 of the model shape (vocab, d_model, layers, heads, kv heads, head_dim, d_ff,
// expert_d_ff, n_experts, top_k, shared experts, the MoE layer indices, strategy): two traces
// with equal hashes come from models of the same shape.
uint64_t moe_trace_shape_hash(const Moe__TraceHeader *h);

// Writes t to path atomically: path.tmp.<pid> written, fsynced, renamed over path, the directory
// fsynced; on any failure the temporary file is removed and path is untouched. MOE_EIO.
moe_status moe_trace_write(const moe_trace *t, const char *path);

// Reads and checks a trace file. Refusals name the file and what is wrong: MOE_EIO (cannot
// open), MOE_ECORRUPT (exit 3: wrong magic, header unreadable or inconsistent, truncated, record
// count not matching the header, an expert id outside [-1, n_experts), a layer ordinal out of
// range, a dropped bit on an empty slot).
moe_status moe_trace_read(const char *path, moe_trace **out);

// ---------------------------------------------------------------- recording (collective)
typedef struct {
    int batches;            // the first `batches` validation batches (>= 1)
    int64_t step;           // training steps the parameters have seen
    const char *checkpoint; // the checkpoint the parameters came from; NULL in training
} moe_trace_probe;

// Routes the probe (moe_data_val_batch j = 0..batches-1, global_batch sequences each, this rank
// its slice of B/W sequences as moe_train_eval does) through m's forward (evaluation: no jitter),
// m->Bl sequences per forward call (m->Bl must divide B/W), gathers every rank's records to rank
// 0 in (seq, pos, layer) order and writes them to path there (parent directories created).
// Layout invariance: a model built for one sequence per forward (B_local = 1, as `moe eval
// --trace` does) computes every sequence alone, the same float operations at every world size,
// so the records are the same bytes; with B/W sequences per forward (training) the combine
// weights may differ in the last bits between layouts (GEMM shapes). Capacity and expert choice
// act per sequence in the model (routing groups = sequences), so neither depends on it.
// tokens: scratch of (m->Bl, S+1). Collective over the world; the status is
// agreed (every rank returns rank 0's write failure too). A model without MoE layers: MOE_EINVAL.
moe_status moe_trace_capture(moe_model *m, const moe_data *d, const moe_comm *c,
                             const Moe__Config *cfg, const moe_trace_probe *p, int32_t *tokens,
                             const char *path);

// The header of a probe of p->batches batches through m at `world` ranks: shape, counts, probe
// in words, config_hash (probe_hash is filled when the records are written). Owned by the caller
// (protobuf_c_message_free_unpacked(&h->base, NULL)), or by moe_trace_alloc.
Moe__TraceHeader *moe_trace_header_new(const moe_model *m, const Moe__Config *cfg,
                                       const moe_trace_probe *p, int world);

// In training: 1 if train.trace_steps lists `step` (1-based).
int moe_trace_due(const Moe__TrainConfig *tc, int64_t step);
// In training, after step `step` (1-based): when train.trace_steps lists it, records the first
// train.trace_batches validation batches to OUT_DIR/traces/step-<step>.trace (rank 0 prints
// where); otherwise, or without a validation split (a note on rank 0), does nothing. Collective.
moe_status moe_trace_train_step(moe_model *m, const moe_data *d, const moe_comm *c,
                                const Moe__Config *cfg, int64_t step, int32_t *tokens);
// OUT_DIR/traces/step-<step>.trace into buf.
void moe_trace_step_path(char *buf, size_t cap, const char *out_dir, int64_t step);

// ---------------------------------------------------------------- the routing log and replay
// train.record_routing: after every training step N (1-based, before validation) the routing of
// that step's training batch — every token of the global batch, every MoE layer, as the step's
// forward selected it — is gathered to rank 0 and written to OUT_DIR/routing/step-N.trace, the
// format above (probe "training batch of step N ...", one probe batch of global_batch sequences,
// header step = N - 1: the steps the parameters had seen). A resumed run rewrites the steps it
// trains again. Nothing happens without record_routing or without MoE layers. Collective.
moe_status moe_trace_record_step(const moe_model *m, const moe_comm *c, const Moe__Config *cfg,
                                 int64_t step, const int32_t *tokens);
// DIR/step-<step>.trace into buf.
void moe_trace_routing_path(char *buf, size_t cap, const char *dir, int64_t step);

// router.replay: training step N takes every token's experts from step N of a routing log; the
// weights, losses and gradients come from the live router (router.h, moe_route_opts.forced).
typedef struct moe_replay moe_replay;

// Opens the log for a run that trains steps first..last (1-based): cfg->router->replay names a
// run directory (its routing/ is used) or a routing directory. Checks that every step's file
// exists; refusals (MOE_EINVAL, every rank the same answer) say which file is missing and what
// to do. Collective.
moe_status moe_replay_open(const Moe__Config *cfg, const moe_model *m, const moe_comm *c,
                           int64_t first, int64_t last, moe_replay **out);
// Before training step `step` (1-based) on this rank's batch `tokens` (Bl, S+1): reads the step's
// file, checks that it was recorded from a model of this shape (config_hash, experts, top-k,
// strategy, global batch, sequence length) and that every recorded token id equals this batch's
// (else the recording is of other data or another batch order), and points m->replay at the
// selections. MOE_ECORRUPT (exit 3) for a damaged file, MOE_EINVAL for a mismatch, naming the
// file, the step and the first difference. Collective (the status is agreed).
moe_status moe_replay_step(moe_replay *r, moe_model *m, const moe_comm *c, int64_t step,
                           const int32_t *tokens);
void moe_replay_free(moe_replay *r); // NULL-safe

#endif
