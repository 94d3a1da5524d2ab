// merge.h: the manual of `moe merge` (trainer/merge.c) — a LoRA run's checkpoint folded into a
// plain one: every adapted matrix becomes W + (alpha/r)·A·B (docs/lora.md, "Merging"), the other
// tensors and the aux-free balancing bias are copied, the config loses its lora section. The
// merged model computes the adapter model's function up to float rounding (test_train_lora:
// logits within 1e-5). Optimizer state and the step start at 0, as after moe upcycle / import.
#ifndef MOE_MERGE_H
#define MOE_MERGE_H

#include "model.h"
#include "moe-common.h"
#include "moe.pb-c.h"

// Folds src (a model with adapters, lora scale alpha/r = scale) into dst (the same model without
// lora, parameters only; both with every expert local, one process): dst's tensor "X" is src's
// "X", plus scale·A·B when src holds "X.lora_a" and "X.lora_b" (same layer and expert), summed in
// double. MOE_EINVAL when dst has a tensor src lacks (not the same model).
moe_status moe_merge_fold(const moe_model *src, moe_model *dst, double scale);

// The command: loads the LoRA checkpoint `where` (any layout; refused, MOE_EUSAGE, when it has
// no adapters), writes OUT/checkpoints/step_00000000 (world 1, EP 1: loads at any layout) and
// OUT/config.json (lora removed, out_dir = OUT). Refuses an OUT that already holds a checkpoint
// or config.json (MOE_EUSAGE). One process; nothing is left half written.
moe_status moe_merge_run(const char *where, const char *out_dir, char *written, size_t cap);

#endif
