// train-impl.h: internals of the training-loop room shared only with itself — the metrics log
// (trainer/metrics.c) that train.c writes OUT_DIR/metrics.jsonl through, and the straggler lines
// (trainer/straggler.c). The contract (what
// survives a failed write, what resume keeps) is docs/training.md, "Metrics".
#ifndef MOE_TRAIN_IMPL_H
#define MOE_TRAIN_IMPL_H

#include "comm.h"
#include "model.h"
#include "moe-common.h"
#include "moe.pb-c.h"

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

// ---------------------------------------------------------------- the metrics log (metrics.c)
// Rank 0's append-only metrics.jsonl. Lines go through a pending buffer of fixed size (allocated
// at open, never grown: nothing is allocated per step): each call queues the step's line and
// tries to write everything pending with write(2), so a failed or partial write (a full disk)
// loses nothing — the bytes not yet written stay queued and are retried at the next step, and
// the file's last line is completed once writing works again. The first failure and the recovery
// are reported once each on stderr; records that do not fit while writes keep failing are
// dropped (newest first: the file keeps its order) and counted, and the count is reported.
// Not thread-safe; one log per process.
// Testing hook read at open: MOE_TRAIN_TEST_METRICS_FAIL="A:B[:BYTES]" makes writes fail with
// ENOSPC while queuing the lines of steps A <= step < B (the first failing write puts half its
// bytes on disk first, as a disk filling up mid-line does); BYTES sets the buffer's size.
typedef struct moe_metrics_log moe_metrics_log;

// Opens (creates) path for appending; fresh = 1 truncates it first. The buffer holds at least
// 1024 lines of line_estimate bytes and never less than 1 MiB. MOE_EIO naming the file.
moe_status moe_metrics_open(const char *path, int fresh, size_t line_estimate,
                            moe_metrics_log **out);
// Queues line (n bytes, no newline; one is added) as the record of `step` (1-based) and writes
// what is pending. Never fails: problems are reported on stderr as described above.
void moe_metrics_append(moe_metrics_log *l, const char *line, size_t n, int64_t step);
// A last write attempt, then closes; reports records that were never written. NULL-safe.
void moe_metrics_close(moe_metrics_log *l);

// Resume: rewrites path (atomically: temp file, fsync, rename) keeping only the complete records
// (newline-terminated lines that parse as moe.MetricsRecord) of steps <= step, so a half line
// left by a crash and the records of steps after the checkpoint are gone. No file: MOE_OK.
// Prints what was dropped to `log` (may be NULL). MOE_EIO when it cannot rewrite the file.
moe_status moe_metrics_trim(const char *path, int64_t step, FILE *log);

// A fresh run (no --resume): MOE_EUSAGE when dir/metrics.jsonl exists and is not empty (a fresh
// run would overwrite an earlier run's records), naming the file and the ways out.
moe_status moe_metrics_check_fresh(const char *dir);

// ---------------------------------------------------------------- setup checks (train-setup.c)
// --resume: MOE_EINVAL when the checkpoint at `where` was trained with another train.seed (the
// batches and jitter follow it), naming both and the --set that continues the run.
moe_status moe_train_check_seed(const Moe__Config *cfg, const char *where);
// --resume: MOE_EINVAL when the checkpoint's lora.* (rank, alpha, targets, train_router,
// train_norms) differ from cfg's — an adapter dropped, a scale changed or a frozen tensor made
// trainable would otherwise load without complaint — naming both and --init-from.
moe_status moe_train_check_lora(const Moe__Config *cfg, const char *where);
// --resume: when cfg's learning-rate schedule (schedule, lr, min_lr, warmup_steps, steps) differs
// from the checkpoint's, prints both on rank 0 and the lr step `start + 1` runs at under each
// (raising train.steps makes the lr jump). Silent otherwise or when the manifest is unreadable.
void moe_train_schedule_note(const Moe__Config *cfg, const char *where, int64_t start,
                             const moe_comm *c);

// --init-from / train.init_from (`label` names which in messages): loads the parameters of the
// checkpoint at `from` into m (any layout it was written at); Adam moments, balance bias and the
// step stay fresh; LoRA adapters are not read (they start fresh). MOE_EINVAL naming the model
// fields that differ (defaults resolved), or for a LoRA checkpoint (merge it first), else as
// moe_ckpt_load. With LoRA (m->lora_rank > 0) base (MOE_PATH_MAX bytes) gets the checkpoint's
// absolute path and *base_hash its manifest's hash, for the run's checkpoints to name; else ""
// and 0. Collective; the outcome agreed.
moe_status moe_train_init_from(const Moe__Config *cfg, const moe_comm *c, moe_model *m,
                               const char *from, const char *label, char *base,
                               uint64_t *base_hash);

// The progress header on rank 0: the model's counts (moe params' figures), with LoRA the
// trainable / frozen split (counts: the model's, moe_model_count_params) and what the gradients
// and AdamW state cost against full fine-tuning. Returns moe params' total (0: not countable).
int64_t moe_train_print_header(const Moe__Config *cfg, const moe_comm *c, const moe_model *m,
                               const moe_model_counts *counts, int64_t start);

// ---------------------------------------------------------------- stragglers (straggler.c)
// Rank 0 sums every rank's compute and wait seconds per step (the agreed per-rank figures of
// moe_train_step) over the window between two progress lines, skipping the run's first step.
// At a progress line, moe_straggler_report writes a line for each of these (returns 1):
//   - the slowest rank's mean compute is >= ratio x the fastest's: that rank is named, with its
//     host, its time and the fastest's;
//   - the wait of the rank that waits least is >= ratio x its value in the first window (the
//     reference): the exchange is slow for everyone (on several nodes: a slow link, named by
//     its nodes) — a slow rank waits least, so it does not trigger this one;
// in both cases only when the difference costs >= 10 % of the mean step. Then a new window
// starts. ratio is watchdog.straggler_ratio; create returns NULL (every call a no-op) when it is 0
// or the world has one rank. c gives the host names; it must outlive s.
typedef struct moe_straggler moe_straggler;
moe_straggler *moe_straggler_create(const moe_comm *c, int world, double ratio);
void moe_straggler_add(moe_straggler *s, const double *compute, const double *wait); // (world)
int moe_straggler_report(moe_straggler *s, char *buf, size_t cap);
void moe_straggler_free(moe_straggler *s); // NULL-safe

#endif
