#!/bin/bash
# test_sweep_standin.sh: stands in for `mpirun -np N [args] MOE train BASE --set ... [--resume
# latest]` in the sweep tests: appends "<run> resume=<0|1>" to $STANDIN_LOG and writes a
# metrics.jsonl of train.steps records (2 MoE layers of 4 experts) into out_dir. Run named
# $STANDIN_FAIL: fails after its first step. Run named $STANDIN_INTERRUPT (not resuming):
# checkpoints at step 2, sends SIGTERM to the sweep (its parent) and waits for the forwarded
# SIGUSR1, on which it exits 75 like a preempted `moe train`; a --resume run continues from the
# checkpoint's step.
set -u
out= steps=5 resume=0
while [ $# -gt 0 ]; do
    case $1 in
        --set)
            case $2 in
                out_dir=*) out=${2#out_dir=} ;;
                train.steps=*) steps=${2#train.steps=} ;;
            esac
            shift 2 ;;
        --resume) resume=1; shift 2 ;;
        *) shift ;;
    esac
done
[ -n "$out" ] || { echo "stand-in: no --set out_dir=" >&2; exit 2; }
name=$(basename "$out")
echo "$name resume=$resume" >>"${STANDIN_LOG:?}"
mkdir -p "$out"
start=1
if [ $resume = 1 ] && [ -f "$out/checkpoints/LATEST" ]; then
    start=$(($(cat "$out/checkpoints/LATEST") + 1))
else
    : >"$out/metrics.jsonl"
fi
for ((s = start; s <= steps; s++)); do
    l=$((400 - 10 * s - ${#name}))
    loss="$((l / 100)).$(printf %02d $((l % 100)))"
    val=
    [ $((s % 2)) = 0 ] && val=",\"val_loss\":$loss"
    echo "{\"step\":$s,\"loss\":$loss,\"aux_loss\":0.01,\"z_loss\":0.0,\"tokens_per_s\":1000.0$val,\"layers\":[{\"layer\":0,\"tokens_per_expert\":[10,20,30,$s],\"dropped\":1,\"max_over_mean\":1.5,\"cv\":0.3,\"entropy\":1.1},{\"layer\":1,\"tokens_per_expert\":[20,20,20,20],\"dropped\":0,\"max_over_mean\":1.0,\"cv\":0.0,\"entropy\":1.3}]}" >>"$out/metrics.jsonl"
    if [ "$name" = "${STANDIN_FAIL:-}" ]; then
        echo "stand-in: $name fails on purpose" >&2
        exit 1
    fi
    if [ "$name" = "${STANDIN_INTERRUPT:-}" ] && [ $resume = 0 ] && [ $s = 2 ]; then
        mkdir -p "$out/checkpoints"
        echo 2 >"$out/checkpoints/LATEST"
        sleep 30 &
        sp=$!
        trap 'kill $sp 2>/dev/null; echo "stand-in: SIGUSR1: checkpointed at step 2"; exit 75' USR1
        kill -TERM $PPID
        wait $sp
        echo "stand-in: no SIGUSR1 came from the sweep" >&2
        exit 1
    fi
done
exit 0
