#!/bin/bash
# test_args_cli.sh: the built `moe` through the one argument parser. Bad numbers (x, -3, 1e99)
# exit 2 naming the option; --set and --set= reach params, eval and bench step; bench step takes
# CONFIG as a positional; every command and benchmark answers --help with exit 0 and lists its
# options, and refuses an unknown option with exit 2. Cheap: one 2-step training run of a tiny
# shape (for eval) and one bench step of 1 step.
MOE_BIN=${MOE_BIN:?MOE_BIN must name the moe binary}
MOE_SRC=${MOE_SRC:?MOE_SRC must name the source tree}
CFG=$MOE_SRC/examples/tiny-moe.json
WORK=$(mktemp -d /tmp/moe-args-cli-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export OPENBLAS_NUM_THREADS=1
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# expect CODE TEXT... -- ARGS...: `moe ARGS` exits CODE and its stdout+stderr holds every TEXT.
expect() {
    local code=$1 texts=()
    shift
    while [ "$1" != "--" ]; do texts+=("$1"); shift; done
    shift
    "$MOE_BIN" "$@" >"$WORK/out" 2>&1
    local rc=$?
    [ $rc = "$code" ] || { fail "moe $*: expected exit $code, got $rc: $(head -c 600 "$WORK/out")"; return; }
    for t in "${texts[@]}"; do
        grep -qF -- "$t" "$WORK/out" || fail "moe $*: expected '$t' in: $(head -c 600 "$WORK/out")"
    done
}

# Numbers: refused with the command, the option, the value and the range.
expect 2 "moe bench layer: --warmup" "got x" "[0, " -- bench layer --warmup x
expect 2 "moe bench layer: --iters" "got 0" -- bench layer --iters=0
expect 2 "moe bench step: --steps" "got x" "[1, " -- bench step --steps x
expect 2 "moe bench step: --steps" "got -3" -- bench step --steps -3
expect 2 "moe bench step: --steps" "got 1e99" -- bench step --steps 1e99
expect 2 "moe bench step: --steps needs a value" -- bench step --steps
expect 2 "moe bench a2a: --tokens" "got 12abc" -- bench a2a --tokens 12abc
expect 2 "moe bench layer --ep: --chunks" "got 1" "[2, " -- bench layer --ep --chunks 1
expect 2 "moe eval: --batches" "got -1" -- eval --checkpoint "$WORK" --batches -1
expect 2 "moe topo: --ep" "got 1.5" -- topo --ep 1.5
expect 2 "moe params: --world" "got 0" -- params "$CFG" --world 0
expect 2 "moe config: --world" "got 99999999999999999999" -- config "$CFG" --world 99999999999999999999
expect 2 "moe bench layer: --shape needs one of coarse, fine" -- bench layer --shape medium

# Positionals and usage.
expect 2 "moe bench step: one CONFIG only" -- bench step "$CFG" "$CFG"
expect 2 "moe train: missing CONFIG" "usage: moe train CONFIG" -- train
expect 2 "moe inspect: missing DIR" -- inspect
expect 2 "moe eval: missing --checkpoint DIR" -- eval --set=train.eval_batches=1
expect 2 "moe report: missing RUN_DIR" -- report
expect 2 "moe routes: missing TRACE" -- routes
expect 2 "moe eval: --trace-batches" "got 0" -- eval --checkpoint x --trace x --trace-batches 0
expect 2 "moe eval: --trace-batches needs --trace FILE" -- eval --checkpoint x --trace-batches 1
expect 2 "moe bench layer: unexpected argument 'x'" -- bench layer x

# --set and --set= everywhere a config is read; --opt=value for every valued option.
expect 0 "4 experts top-2" -- params "$CFG" --set=model.n_experts=4
expect 0 "4 experts top-2" -- params "$CFG" --set model.n_experts=4 --ep=2 --world=2
expect 0 '"n_experts": 4' -- config "$CFG" --set=model.n_experts=4 --world=2
expect 2 "--set model.nope" -- params "$CFG" --set=model.nope=1
"$MOE_BIN" train "$CFG" --set=out_dir="$WORK/run" --set train.steps=2 --set=train.global_batch=4 \
    --set train.seq_len=16 --set=train.warmup_steps=1 >"$WORK/train.log" 2>&1 ||
    fail "tiny train: exit $?: $(tail -5 "$WORK/train.log")"
expect 0 "val_loss" "1 batches of 4 x 16 tokens" -- eval --checkpoint="$WORK/run/latest" \
    --set=train.eval_batches=2 --batches=1
expect 0 "val_loss" "2 batches of 4 x 16 tokens" -- eval --checkpoint "$WORK/run/latest" \
    --set train.eval_batches=2
expect 2 "train.eval_batches" -- eval --checkpoint "$WORK/run/latest" --set=train.eval_batches=x
# bench step: CONFIG positional (and the --config alias), --set= applied (8 x 16 tokens).
expect 0 "moe bench step: tiny-moe" "8 x 16 tokens per step" -- bench step "$CFG" --steps 1 \
    --set=train.global_batch=8 --set train.seq_len=16
expect 0 '"steps":1' '"tokens_per_step":64' -- bench step --config="$CFG" --steps=1 --json \
    --set=train.global_batch=4 --set=train.seq_len=16

# --help for every command and benchmark: exit 0, usage and every option of its table.
help_lists() {
    local cmd=$1
    shift
    read -ra words <<<"$cmd"
    "$MOE_BIN" "${words[@]}" --help >"$WORK/help" 2>"$WORK/help.err"
    local rc=$?
    [ $rc = 0 ] || { fail "moe $cmd --help: exit $rc"; return; }
    [ -s "$WORK/help.err" ] && fail "moe $cmd --help: wrote to stderr: $(cat "$WORK/help.err")"
    grep -q "^usage: moe $cmd" "$WORK/help" || fail "moe $cmd --help: no usage line: $(head -3 "$WORK/help")"
    for o in "$@"; do
        grep -qE -- "^  $o( |\$)" "$WORK/help" || fail "moe $cmd --help: option $o not listed"
    done
    grep -q -- "^  -h, --help" "$WORK/help" || fail "moe $cmd --help: -h, --help not listed"
    # An unknown option is refused the same way.
    "$MOE_BIN" "${words[@]}" --frobnicate >"$WORK/unk" 2>&1
    rc=$?
    [ $rc = 2 ] && grep -qF "moe $cmd: unknown option '--frobnicate'" "$WORK/unk" ||
        fail "moe $cmd --frobnicate: expected exit 2 naming it, got $rc: $(head -3 "$WORK/unk")"
}
help_lists "config" --set --world
help_lists "params" --set --world --ep --json
help_lists "train" --set --resume
help_lists "eval" --checkpoint --data --batches --set --trace --trace-batches --logits
help_lists "topo" --ep --experts --fake-node-size
help_lists "inspect" --no-tensors
help_lists "merge"
help_lists "generate" --prompt --tokens --temperature --top-k --seed --context --set
help_lists "sweep" --dry-run --only --out
help_lists "report" --out --title
help_lists "routes" --json --out
help_lists "bench layer" --json --shape --warmup --iters --ep
help_lists "bench layer --ep" --json --tokens --dim --ffn --experts --topk --chunks --dedup --iters --sub-rows
help_lists "bench a2a" --json --tokens --dim --topk --experts --iters --chunks --hierarchical --dedup
help_lists "bench step" --json --set --steps --config
# The tables of commands and benchmarks.
expect 0 "bench" "eval" "exit codes" -- --help
expect 0 "layer" "a2a" "step" -- bench --help

[ $failures = 0 ] && echo "test_args_cli: all passed" || echo "test_args_cli: $failures failed"
[ $failures = 0 ]
