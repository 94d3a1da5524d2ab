#!/bin/bash
# test_ux_misc.sh: small rough edges of issue 17, each checked on the built moe: `moe inspect`
# prints the checkpoint format once; `moe eval --help` and `moe topo --help` list exit codes;
# `moe train --help` explains the progress line, naming the worst layer's load max/mean apart
# from the report's layer mean; topo --help explains its table's columns; Slurm's
# moe-train-<jobid>.out is ignored by git.
# Args: MOE_BIN SRC_DIR
set -u
bin=$1 src=$2
WORK=$(mktemp -d /tmp/test_ux_misc.XXXXXX)
trap 'rc=$?; [ $rc = 0 ] && rm -rf "$WORK"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
cat >"$WORK/tiny.json" <<JSON
{"model": {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32, "n_experts": 4, "top_k": 2,
  "expert_d_ff": 16, "first_dense_layers": 1},
 "train": {"global_batch": 2, "seq_len": 8, "steps": 2, "warmup_steps": 1, "eval_interval": 0},
 "out_dir": "$WORK/run"}
JSON
"$bin" train "$WORK/tiny.json" >"$WORK/train.out" 2>&1 || fail "train: $(cat "$WORK/train.out")"
"$bin" inspect "$WORK/run" --no-tensors >"$WORK/inspect.out" 2>&1 || fail "inspect: exit $?"
n=$(grep -o "format 1" "$WORK/inspect.out" | wc -l)
[ "$n" = 1 ] || fail "inspect prints 'format 1' $n times: $(grep -i format "$WORK/inspect.out")"
for cmd in eval topo generate train; do
    "$bin" $cmd --help | grep -q "^exit codes: 0 " || fail "moe $cmd --help lists no exit codes"
done
"$bin" topo --help >"$WORK/topo-help"
for w in "local (rank within the node)" "ep_rk (its rank inside that group" "edp (its EDP rank" \
    "blas (BLAS"; do
    grep -qF -- "$w" "$WORK/topo-help" || fail "moe topo --help does not explain column '$w'"
done
"$bin" train --help >"$WORK/help"
for w in "step S/N" "tok/s" "worst layer load max/mean" "moe report's max/mean columns average" \
    "exchange" "eta" "val "; do
    grep -qF -- "$w" "$WORK/help" || fail "moe train --help does not explain '$w'"
done
grep -qF "worst layer load max/mean" "$WORK/train.out" ||
    fail "the progress line does not say 'worst layer load max/mean': $(grep step "$WORK/train.out")"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$src" check-ignore -q moe-train-4242.out || fail "moe-train-4242.out is not ignored by git"
    git -C "$src" check-ignore -q src.c && fail "src.c is ignored by git (pattern too wide)"
else
    grep -qx 'moe-train-\*.out' "$src/.gitignore" || fail ".gitignore lacks moe-train-*.out"
fi
[ $fails = 0 ] && echo "test_ux_misc: all passed"
[ $fails = 0 ]
