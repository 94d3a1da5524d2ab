#!/bin/bash
# test_sweep_lib.sh: shared by the test_sweep_*.sh scripts: a work directory removed on success,
# fail/say helpers and the tiny base config. Needs MOE_BIN (the moe binary) and MOE_SRC.
set -u
: "${MOE_BIN:?set MOE_BIN to the moe binary}"
: "${MOE_SRC:?set MOE_SRC to the source tree}"
WORK=$(mktemp -d /tmp/test_sweep.XXXXXX)
NAME=$(basename "$0" .sh)
say() { echo "[$NAME] $*"; }
fail() {
    echo "[$NAME] FAIL: $*" >&2
    echo "[$NAME] files kept in $WORK" >&2
    exit 1
}
trap 'rc=$?; [ $rc = 0 ] && rm -rf "$WORK"' EXIT

# A tiny MoE base: 2 layers (the first dense), 4 experts top-2, one shared expert, EP 2.
tiny_base() {
    cat >"$1" <<JSON
{
  "name": "tiny",
  "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 96, "n_experts": 4, "top_k": 2,
            "expert_d_ff": 40, "n_shared_experts": 1, "shared_expert_d_ff": 24,
            "first_dense_layers": 1},
  "router": {"aux_loss_coef": 0.01},
  "train": {"global_batch": 4, "seq_len": 16, "steps": ${2:-6}, "warmup_steps": 1,
            "log_interval": 1, "eval_interval": 3, "eval_batches": 1, "checkpoint_interval": 3},
  "parallel": {"ep_size": 2}
}
JSON
}
