#!/bin/bash
# test_upcycle_cli.sh: `moe upcycle` end to end (docs/upcycling.md). A tiny dense model trained a
# few steps; upcycled as whole copies (4 experts, top-2) and as 2 slices (8 experts, top-4): the
# validation loss of each upcycled checkpoint at step 0 equals the dense one's (1e-5 relative) at
# np 1 and at np 2 with the experts split (EP 2); the upcycled run trains on with
# `moe train OUT/config.json --resume latest`; refusals leave no OUT: a used OUT (2), a MoE
# source (2), --experts missing (2), a corrupt dense checkpoint (3).
set -u
: "${MOE_BIN:?set MOE_BIN to the moe binary}"
: "${MPIRUN:=mpirun}"
WORK=$(mktemp -d /tmp/test_upcycle.XXXXXX)
say() { echo "[test_upcycle] $*"; }
fail() {
    echo "[test_upcycle] FAIL: $*" >&2
    echo "[test_upcycle] files kept in $WORK" >&2
    exit 1
}
trap 'rc=$?; [ $rc = 0 ] && rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1
cat >dense.json <<JSON
{"name": "dense", "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "n_experts": 0},
 "train": {"global_batch": 4, "seq_len": 16, "steps": 6, "warmup_steps": 1, "log_interval": 6,
  "eval_interval": 0, "eval_batches": 2, "checkpoint_interval": 6},
 "out_dir": "$WORK/dense"}
JSON
"$MOE_BIN" train dense.json >train.out 2>&1 || fail "train: $(cat train.out)"
val() { # NP CHECKPOINT [ARGS...]: its validation loss
    local np=$1 ck=$2
    shift 2
    "$MPIRUN" -np "$np" "$MOE_BIN" eval --checkpoint "$ck" --batches 2 "$@" >ev.out 2>&1 ||
        fail "eval -np $np $ck: $(cat ev.out)"
    sed -n 's/^val_loss \([0-9.]*\) .*/\1/p' ev.out
}
same() { # A B WHAT: equal within 1e-5 relative
    python3 -c "import sys; a, b = float('$1'), float('$2'); sys.exit(abs(a - b) > 1e-5 * abs(a))" ||
        fail "$3: $1 vs $2"
}
d1=$(val 1 dense)
[ -n "$d1" ] || fail "no val_loss from the dense checkpoint"
"$MOE_BIN" upcycle dense up-copies --experts 4 --top-k 2 >up.out 2>&1 || fail "upcycle: $(cat up.out)"
"$MOE_BIN" upcycle dense up-slices --experts 8 --granularity 2 --top-k 4 >up.out 2>&1 ||
    fail "upcycle --granularity 2: $(cat up.out)"
for u in up-copies up-slices; do
    [ -f $u/config.json ] && [ -d $u/checkpoints/step_00000000 ] || fail "$u: no config.json or step 0"
    same "$d1" "$(val 1 $u)" "$u at np 1 vs dense"
    same "$d1" "$(val 2 $u --set parallel.ep_size=2)" "$u at np 2 EP 2 vs dense"
done
say "val loss at step 0: dense $d1 = upcycled (copies, slices) at np 1 and np 2 EP 2"
"$MPIRUN" -np 2 "$MOE_BIN" train up-copies/config.json --resume latest --set parallel.ep_size=2 \
    --set train.steps=4 >t2.out 2>&1 || fail "training the upcycled model: $(cat t2.out)"
grep -q "resumed from .* at step 0 " t2.out || fail "not resumed from step 0: $(cat t2.out)"
[ -d up-copies/checkpoints/step_00000004 ] || fail "no step 4 checkpoint after training on"
refuse() { # CODE WANT ARGS...: moe upcycle refused with exit CODE, message containing WANT
    local code=$1 want=$2
    shift 2
    "$MOE_BIN" upcycle "$@" >r.out 2>&1
    local rc=$?
    [ $rc = "$code" ] || fail "upcycle $*: exit $rc, want $code: $(cat r.out)"
    grep -q -- "$want" r.out || fail "upcycle $*: message lacks '$want': $(cat r.out)"
}
refuse 2 "already holds checkpoints" dense up-copies --experts 4
refuse 2 "already a MoE model" up-copies up-x --experts 4
refuse 2 "--experts E is required" dense up-x
cp -r dense bad
f=$(ls bad/checkpoints/step_00000006/dense.bin)
printf 'X' | dd of="$f" bs=1 seek=100 conv=notrunc status=none
refuse 3 "dense.bin" bad up-x --experts 4
[ -e up-x ] && fail "a refused upcycle left up-x"
say "ok"
