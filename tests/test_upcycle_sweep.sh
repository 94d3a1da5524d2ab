#!/bin/bash
# test_upcycle_sweep.sh: train.init_from, the config form of --init-from, and the sweep that
# compares upcycled vs from-scratch vs dense-continued training (issue 15; docs/upcycling.md,
# docs/training.md, docs/sweeps.md). A tiny dense model trained 6 steps, then:
#   - train.init_from and --init-from give the same first-step loss (np 1 dense; np 2, EP 2 with
#     the upcycled MoE), not a fresh run's; --init-from overrides a different train.init_from;
#   - a run with train.init_from stopped after step 1 (MOE_STOP_FILE: checkpoint, exit 75) and
#     rerun with --resume latest resumes from its checkpoint and ignores train.init_from: steps
#     2..6 repeat the uninterrupted run's losses;
#   - a bad train.init_from (no checkpoint, another model) exits 2 naming the field, in moe train,
#     moe train --dry-run and moe sweep (which names the point too), writing nothing;
#   - a three-point sweep (dense-continued, upcycled, scratch) with the real moe train at np 2:
#     each run records the checkpoint it started from (sweep-run.json init_checkpoint), the
#     initialised runs say so in train.log; when the dense run's LATEST moves on, --dry-run marks
#     only dense-continued changed, naming train.init_from's checkpoint;
#   - examples/sweep-upcycle.json --dry-run after the documented chain (dense trained 2 steps,
#     moe upcycle) lists dense-continued-s2, upcycled-s2, scratch-s2 with their checkpoints, and
#     the dense and MoE points differ in FLOPs per token by the router only (2·D·E·L).
set -u
: "${MOE_BIN:?set MOE_BIN to the moe binary}"
: "${MOE_SRC:?set MOE_SRC to the source tree}"
: "${MPIRUN:=mpirun}"
command -v "$MPIRUN" >/dev/null || { echo "SKIP: $MPIRUN not installed"; exit 77; }
WORK=$(mktemp -d /tmp/test_upcycle_sweep.XXXXXX)
say() { echo "[test_upcycle_sweep] $*"; }
fail() {
    echo "[test_upcycle_sweep] FAIL: $*" >&2
    echo "[test_upcycle_sweep] files kept in $WORK" >&2
    exit 1
}
trap 'rc=$?; [ $rc = 0 ] && rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1
M=$MOE_BIN
cat >dense.json <<JSON
{"name": "dense", "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "n_experts": 0},
 "train": {"global_batch": 4, "seq_len": 16, "steps": 6, "warmup_steps": 1, "log_interval": 1,
  "eval_interval": 0, "eval_batches": 2, "checkpoint_interval": 6},
 "out_dir": "dense"}
JSON
"$M" train dense.json >train.out 2>&1 || fail "train: $(cat train.out)"
losses() { awk '/^step +[0-9]+\// {print $2, $5}' "$1"; } # "S/N LOSS" per step of a log
first() { awk '/^step +1\// {print $5; exit}' "$1"; }

# ---------------------------------------------------------------- the config form
"$M" train dense.json --set out_dir=flag --init-from dense >flag.out 2>&1 || fail "--init-from: $(cat flag.out)"
"$M" train dense.json --set out_dir=field --set train.init_from=dense >field.out 2>&1 ||
    fail "train.init_from: $(cat field.out)"
"$M" train dense.json --set out_dir=fresh --set train.steps=1 >fresh.out 2>&1 || fail "fresh: $(cat fresh.out)"
grep -q "initialised from dense/checkpoints/step_00000006 (its step 6; .*; by train.init_from)" field.out ||
    fail "train.init_from: no line naming the checkpoint: $(cat field.out)"
[ -n "$(first flag.out)" ] && [ "$(first flag.out)" = "$(first field.out)" ] ||
    fail "first-step loss: --init-from $(first flag.out), train.init_from $(first field.out)"
[ "$(first field.out)" != "$(first fresh.out)" ] || fail "train.init_from: the loss of a fresh start"
"$M" train dense.json --set out_dir=over --set train.init_from=nowhere --init-from dense \
    --set train.steps=1 >over.out 2>&1 || fail "--init-from over train.init_from: $(cat over.out)"
grep -q "init-from dense overrides train.init_from = nowhere" over.out && [ "$(first over.out)" = "$(first flag.out)" ] ||
    fail "--init-from does not override train.init_from: $(cat over.out)"
say "np 1: first-step loss $(first field.out) from train.init_from = --init-from (fresh: $(first fresh.out)); the flag overrides the field"

# np 2, EP 2: the upcycled MoE (written at world 1) through both forms.
"$M" upcycle dense up --experts 4 --top-k 2 >up.out 2>&1 || fail "upcycle: $(cat up.out)"
for form in "--init-from up" "--set train.init_from=up"; do
    o=np2-$(echo "$form" | tr -dc a-z)
    # shellcheck disable=SC2086 # the form is two words
    "$MPIRUN" -np 2 "$M" train up/config.json --set out_dir=$o --set parallel.ep_size=2 \
        --set train.steps=2 --set train.log_interval=1 $form >$o.out 2>&1 || fail "np 2 $form: $(cat $o.out)"
done
[ -n "$(first np2-initfromup.out)" ] && [ "$(first np2-initfromup.out)" = "$(first np2-settraininitfromup.out)" ] ||
    fail "np 2 EP 2 first-step loss: --init-from $(first np2-initfromup.out), train.init_from $(first np2-settraininitfromup.out)"
say "np 2, EP 2 (the upcycled model): first-step loss $(first np2-initfromup.out) from either form"

# ---------------------------------------------------------------- resume wins
touch stop
MOE_STOP_FILE=$WORK/stop "$M" train dense.json --set out_dir=stopped --set train.init_from=dense >s1.out 2>&1
rc=$?
rm -f stop
[ $rc = 75 ] || fail "MOE_STOP_FILE: exit $rc, want 75: $(cat s1.out)"
[ -f stopped/checkpoints/step_00000001/manifest.pb ] || fail "no step 1 checkpoint after the stop"
"$M" train dense.json --set out_dir=stopped --set train.init_from=dense --resume latest >s2.out 2>&1 ||
    fail "resume: $(cat s2.out)"
grep -q "train.init_from = dense: ignored, the run resumed from its own checkpoint" s2.out ||
    fail "the resumed run does not say train.init_from is ignored: $(cat s2.out)"
grep -q "initialised from" s2.out && fail "the resumed run was initialised again: $(cat s2.out)"
[ "$(losses s1.out; losses s2.out)" = "$(losses field.out)" ] ||
    fail "stopped + resumed losses differ from the uninterrupted run's: $(losses s1.out; losses s2.out) vs $(losses field.out)"
"$M" train dense.json --set out_dir=stopped --set train.init_from=dense --resume latest --dry-run >s3.out 2>&1 ||
    fail "--dry-run --resume: $(cat s3.out)"
grep -q "train.init_from = dense: ignored, the run resumes from its own checkpoint" s3.out ||
    fail "--dry-run --resume does not say train.init_from is ignored: $(cat s3.out)"
say "stopped after step 1 and resumed: steps 2..6 repeat the uninterrupted run (train.init_from ignored)"

# ---------------------------------------------------------------- refusals
refuse() { # CODE WANT ARGS...: exit CODE with WANT in the message
    local code=$1 want=$2
    shift 2
    "$@" >r.out 2>&1
    local rc=$?
    [ $rc = "$code" ] || fail "$*: exit $rc, want $code: $(cat r.out)"
    grep -qF -- "$want" r.out || fail "$*: message lacks '$want': $(cat r.out)"
}
refuse 2 "train.init_from = nope: no checkpoint at nope" "$M" train dense.json --set out_dir=bad1 --set train.init_from=nope
[ -e bad1 ] && fail "a refused train.init_from created its out_dir"
refuse 2 "train.init_from = nope: no checkpoint at nope" "$M" train dense.json --set out_dir=bad1 --set train.init_from=nope --dry-run
refuse 2 "model.n_experts (4 in the checkpoint, 0 in the config); train.init_from needs the same model" \
    "$M" train dense.json --set out_dir=bad2 --set train.init_from=up
refuse 2 "--init-from and --resume exclude each other" "$M" train dense.json --set out_dir=bad3 --init-from dense --resume latest
say "refusals: no checkpoint, another model (exit 2, train.init_from named); the flag form still excludes --resume"

# ---------------------------------------------------------------- a sweep of the three
cat >sweep.json <<JSON
{"name": "up3", "base_file": "dense.json", "launch": {"np": 2, "mpirun": "$MPIRUN"},
 "out_dir": "$WORK/sw", "set": ["train.steps=3", "train.checkpoint_interval=3"],
 "points": [
   {"name": "dense-continued", "set": ["train.init_from=dense"]},
   {"name": "upcycled", "set": ["model.n_experts=4", "model.top_k=2", "parallel.ep_size=2",
     "train.init_from=up"]},
   {"name": "scratch", "set": ["model.n_experts=4", "model.top_k=2", "parallel.ep_size=2"]}],
 "seeds": [2]}
JSON
"$M" sweep sweep.json >sw.out 2>&1 || fail "sweep: exit $?: $(cat sw.out)"
R=sw/runs
for r in dense-continued-s2 upcycled-s2 scratch-s2; do
    [ -f $R/$r/DONE ] || fail "$r: no DONE"
done
grep -q '"init_checkpoint": "dense/checkpoints/step_00000006 (step 6, manifest CRC32C 0x' \
    $R/dense-continued-s2/sweep-run.json || fail "dense-continued: init_checkpoint not recorded: $(cat $R/dense-continued-s2/sweep-run.json)"
grep -q '"init_checkpoint": "up/checkpoints/step_00000000 (step 0' $R/upcycled-s2/sweep-run.json ||
    fail "upcycled: init_checkpoint not recorded"
grep -q init_checkpoint $R/scratch-s2/sweep-run.json && fail "scratch records an init checkpoint"
grep -q "initialised from up/checkpoints/step_00000000 (its step 0; .*; by train.init_from)" $R/upcycled-s2/train.log ||
    fail "upcycled: not initialised from the upcycled checkpoint: $(cat $R/upcycled-s2/train.log)"
grep -q "initialised from" $R/scratch-s2/train.log && fail "scratch was initialised from a checkpoint"
"$M" sweep sweep.json --dry-run >dry.out 2>&1 || fail "dry-run: $(cat dry.out)"
[ "$(grep -c '(point, done)' dry.out)" = 3 ] || fail "after the sweep, --dry-run: not 3 done runs: $(cat dry.out)"
# The dense run trains on: its LATEST names step 8, so dense-continued would start elsewhere.
"$M" train dense.json --resume latest --set train.steps=8 --set train.checkpoint_interval=8 >more.out 2>&1 ||
    fail "dense on to step 8: $(cat more.out)"
"$M" sweep sweep.json --dry-run >dry2.out 2>&1 || fail "dry-run after the dense run moved: $(cat dry2.out)"
grep -q "dense-continued-s2  (point, changed)" dry2.out && [ "$(grep -c '(point, done)' dry2.out)" = 2 ] ||
    fail "--dry-run: dense-continued not the one changed run: $(cat dry2.out)"
grep -q "train.init_from's checkpoint: dense/checkpoints/step_00000006 (step 6, .* -> dense/checkpoints/step_00000008 (step 8" dry2.out ||
    fail "--dry-run does not name the moved checkpoint: $(cat dry2.out)"
refuse 2 "" "$M" sweep sweep.json
grep -q "dense-continued-s2" r.out || fail "the changed run is not named: $(cat r.out)"
sed 's/"train.init_from=up"/"train.init_from=nowhere"/' sweep.json >bad.json
refuse 2 "point 'upcycled' (run upcycled-s2): train.init_from = nowhere: no checkpoint at nowhere" \
    "$M" sweep bad.json --dry-run
say "sweep: three points run, init checkpoints recorded, a moved dense LATEST makes dense-continued stale, a bad path exits 2"

# ---------------------------------------------------------------- the example
mkdir ex && cd ex || fail "mkdir ex"
"$M" train "$MOE_SRC/examples/upcycle-dense.json" --set train.steps=2 --set train.warmup_steps=1 \
    --set train.eval_interval=0 >t.out 2>&1 || fail "example dense: $(cat t.out)"
"$M" upcycle runs/upcycle-dense runs/upcycle-moe --experts 8 --granularity 2 --top-k 2 >u.out 2>&1 ||
    fail "example upcycle: $(cat u.out)"
"$M" sweep "$MOE_SRC/examples/sweep-upcycle.json" --dry-run >d.out 2>&1 || fail "example --dry-run: $(cat d.out)"
for r in dense-continued-s2 upcycled-s2 scratch-s2; do
    grep -q "] $r  (point, new)" d.out || fail "example --dry-run: no run $r: $(cat d.out)"
done
grep -q "train.init_from: runs/upcycle-dense/checkpoints/step_00000002 (step 2" d.out &&
    grep -q "train.init_from: runs/upcycle-moe/checkpoints/step_00000000 (step 0" d.out ||
    fail "example --dry-run: the init checkpoints: $(cat d.out)"
fl() { sed -n "s/.*] $1  (point, new) .*flops\/token \([0-9]*\)$/\1/p" d.out; }
[ $(($(fl upcycled-s2) - $(fl dense-continued-s2))) = $((2 * 128 * 8 * 4)) ] && [ "$(fl upcycled-s2)" = "$(fl scratch-s2)" ] ||
    fail "example: FLOPs per token dense $(fl dense-continued-s2), upcycled $(fl upcycled-s2), scratch $(fl scratch-s2)"
say "examples/sweep-upcycle.json --dry-run: the three points; FLOPs per token $(fl dense-continued-s2) dense, $(fl upcycled-s2) MoE (the router's 8192 apart)"
say "PASS"
