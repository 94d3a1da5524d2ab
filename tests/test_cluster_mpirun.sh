#!/bin/bash
# test_cluster_mpirun.sh: cluster/mpirun-train.sh without Slurm, with a hostfile. (1) SIGUSR1 to the
# wrapper mid-run: ranks checkpoint and exit 75, --relaunch restarts them with --resume latest, the
# run finishes with every step once and the oracle's final state. (2) SIGKILL to one rank: the
# wrapper exits non-zero within 60 s; running it again with --resume latest ends in the oracle state.
. "$(dirname "$0")/test_cluster_lib.sh"
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed"; exit $SKIP; }
STEPS=30
oracle ref $STEPS
echo "localhost slots=2" >"$WORK/hosts"
wrapper=$MOE_SRC/cluster/mpirun-train.sh

# (1) preemption and relaunch
make_config "$WORK/a.cfg" "$WORK/a" $STEPS 100 0
# shellcheck disable=SC2086
"$wrapper" --hostfile "$WORK/hosts" -np 2 --relaunch=2 -- "$MOE_BIN" train "$WORK/a.cfg" $MOE_ARGS \
    >"$WORK/a.log" 2>&1 &
wpid=$!
wait_step "$WORK/a" 8 30
kill -0 $wpid 2>/dev/null || fail "the wrapper exited early"
kill -USR1 $wpid
say "SIGUSR1 to the wrapper (pid $wpid)"
wait $wpid
rc=$?
[ $rc = 0 ] || fail "wrapper: expected exit 0 after the relaunch, got $rc"
grep -q "relaunch 1/2 with --resume latest" "$WORK/a.log" || fail "no relaunch in the wrapper log"
[ "$(steps_of "$WORK/a")" = "$(seq -s ' ' 1 $STEPS)" ] ||
    fail "expected steps 1..$STEPS once each, got: $(steps_of "$WORK/a")"
compare_runs "$REF" "$WORK/a"
say "preempted, relaunched with --resume latest, finished; state equals the oracle"

# (2) rank failure
make_config "$WORK/b.cfg" "$WORK/b" $STEPS 100 5
# shellcheck disable=SC2086
"$wrapper" --hostfile "$WORK/hosts" -np 2 -- "$MOE_BIN" train "$WORK/b.cfg" $MOE_ARGS \
    >"$WORK/b.log" 2>&1 &
wpid=$!
wait_step "$WORK/b" 12 30
latest_step "$WORK/b" >/dev/null || fail "no checkpoint after 12 steps (ckpt_every 5)"
pid=$(rank_pid "$WORK/b.cfg" 1) || fail "rank 1 not found"
kill -KILL "$pid"
t_kill=$(date +%s)
while kill -0 $wpid 2>/dev/null; do
    [ $(($(date +%s) - t_kill)) -ge 60 ] && fail "wrapper still running 60 s after a rank died"
    sleep 0.2
done
wait $wpid
rc=$?
[ $rc != 0 ] || fail "wrapper: expected a non-zero exit after a rank died, got 0"
pgrep -f -- "$WORK/b.cfg" >/dev/null && fail "ranks survive the failed run"
say "rank 1 killed: wrapper exited $rc after $(($(date +%s) - t_kill)) s"
# The last checkpoint complete when the job ended (the surviving rank may have written one more
# between the first checkpoint seen and the kill: reading it before the kill was a race).
ckpt=$(latest_step "$WORK/b") || fail "no checkpoint left after the failure"
# shellcheck disable=SC2086
"$wrapper" --hostfile "$WORK/hosts" -np 2 -- "$MOE_BIN" train "$WORK/b.cfg" $MOE_ARGS \
    --resume latest >"$WORK/b2.log" 2>&1 || fail "resumed run failed"
from=$(resume_step_of "$WORK/b2.log")
[ "$from" = "$ckpt" ] || fail "expected the resume from the last checkpoint (step $ckpt), got '${from:-none}'"
compare_runs "$REF" "$WORK/b"
say "resumed from step $ckpt; state equals the oracle"
say "PASS"
