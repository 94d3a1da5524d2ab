#!/bin/bash
# test_config_from_hf.sh: `moe config --from-hf` round trip on every examples/hf/*.json: the moe
# config it writes (--out, atomically) is a valid moe config (moe config reads it back unchanged)
# and counts the same parameters as the HF file (moe params --json: total, active, FLOPs per
# token, the per-part counts); named after the model's family; a scaled-down copy (--set) trains;
# bad input (CONFIG and --from-hf together, a missing file, a moe config given as HF) is refused
# with exit 2 and no file left at --out.
set -u
: "${MOE_BIN:?set MOE_BIN to the moe binary}"
: "${MOE_SRC:?set MOE_SRC to the source tree}"
WORK=$(mktemp -d /tmp/test_config_from_hf.XXXXXX)
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
trap 'rc=$?; [ $rc = 0 ] && rm -rf "$WORK"' EXIT
counts() { # FILE: the counted figures of moe params --json, one line
    "$MOE_BIN" params "$1" --json | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d["total_params"], d["active_params"], d["flops_per_token"], d["n_moe_layers"],
      d["n_experts"], d["top_k"], json.dumps(d.get("parts"), sort_keys=True))'
}
n=0
for hf in "$MOE_SRC"/examples/hf/*.json; do
    b=$(basename "$hf" .json)
    "$MOE_BIN" config --from-hf "$hf" --out "$WORK/$b.json" 2>"$WORK/$b.err" ||
        { fail "$b: exit $?: $(cat "$WORK/$b.err")"; continue; }
    [ "$(counts "$hf")" = "$(counts "$WORK/$b.json")" ] ||
        fail "$b: counts differ: HF $(counts "$hf") vs moe $(counts "$WORK/$b.json")"
    "$MOE_BIN" config "$WORK/$b.json" >"$WORK/$b.again.json" 2>"$WORK/$b.err2" ||
        fail "$b: the written config does not read back: $(cat "$WORK/$b.err2")"
    cmp -s "$WORK/$b.json" "$WORK/$b.again.json" || fail "$b: reading it back changes it"
    family=$(grep -o '"name": "[^"]*"' "$WORK/$b.json")
    [ "$family" != '"name": ""' ] || fail "$b: the config has no name"
    n=$((n + 1))
done
[ $n -ge 5 ] || fail "only $n HF examples converted"
# A scaled-down Mixtral trains 2 steps.
"$MOE_BIN" config --from-hf "$MOE_SRC/examples/hf/mixtral-8x7b.json" --set model.n_layers=2 \
    --set model.d_model=64 --set model.n_heads=4 --set model.n_kv_heads=2 --set model.d_ff=128 \
    --set model.expert_d_ff=64 --set model.vocab_size=256 --set train.steps=2 \
    --set train.warmup_steps=1 --set train.global_batch=2 --set train.seq_len=16 \
    --set out_dir="$WORK/run" --out "$WORK/small.json" 2>"$WORK/small.err" ||
    fail "scaled-down: $(cat "$WORK/small.err")"
"$MOE_BIN" train "$WORK/small.json" >"$WORK/train.out" 2>&1 ||
    fail "the scaled-down copy does not train: $(tail -3 "$WORK/train.out")"
# Refusals: exit 2, message, nothing at --out.
refuse() { # MESSAGE ARGS...
    local msg=$1
    shift
    "$MOE_BIN" config "$@" --out "$WORK/bad.json" >"$WORK/r.out" 2>&1
    local rc=$?
    [ $rc = 2 ] || fail "config $*: exit $rc, expected 2: $(cat "$WORK/r.out")"
    grep -qF -- "$msg" "$WORK/r.out" || fail "config $*: no '$msg' in: $(cat "$WORK/r.out")"
    [ -e "$WORK/bad.json" ] && fail "config $*: left $WORK/bad.json"
    [ -e "$WORK/bad.json.tmp" ] && fail "config $*: left a temporary file"
    return 0
}
refuse "not both" "$MOE_SRC/examples/tiny-moe.json" --from-hf "$MOE_SRC/examples/hf/mixtral-8x7b.json"
refuse "missing CONFIG" --world 2
refuse "$WORK/nothing.json" --from-hf "$WORK/nothing.json"
refuse "model.d_model" --from-hf "$MOE_SRC/examples/hf/mixtral-8x7b.json" --set model.d_model=-1
[ $fails = 0 ] && echo "test_config_from_hf: all passed ($n HF configs)"
[ $fails = 0 ]
