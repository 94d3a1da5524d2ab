#!/bin/bash
# test_cluster_requeue.sh: preemption on a local real Slurm. Mid-run the batch shell gets SIGUSR1
# (scancel --signal=USR1 --batch: what --signal=B:USR1@120 does before the time limit); train.sbatch
# forwards it to the ranks, which agree on a step, checkpoint and exit 75; the script requeues the
# job, the job restarts with --resume latest and finishes. Expected: COMPLETED 0:0 with Restarts=1,
# every step run exactly once across both runs, and the final state of an uninterrupted run.
. "$(dirname "$0")/test_cluster_lib.sh"
require_slurm
STEPS=40
oracle ref $STEPS
start_slurm

# ckpt_every 0: the only checkpoint is the preemption one, so the resume point proves the handshake.
make_config "$WORK/run.cfg" "$WORK/run" $STEPS 100 0
submit preempt "$WORK/run.cfg" MOE_LAUNCHER=${MOE_TEST_LAUNCHER:-srun}
wait_step "$WORK/run" 8 30
scancel --signal=USR1 --batch "$JOB" || fail "scancel --signal=USR1 --batch $JOB failed"
say "sent SIGUSR1 to the batch shell of job $JOB"
st=$(wait_job "$JOB" 90) || fail "job $JOB not finished within 90 s: $st"
ec=$(job_field "$JOB" ExitCode)
restarts=$(job_field "$JOB" Restarts)
[ "$st" = COMPLETED ] && [ "$ec" = 0:0 ] && [ "$restarts" = 1 ] ||
    fail "job $JOB: expected COMPLETED 0:0 Restarts=1, got $st $ec Restarts=$restarts"
grep -q "launcher exited with 75" "$WORK/preempt.out" || fail "no exit 75 in the job output"
grep -q "scontrol requeue $JOB" "$WORK/preempt.out" || fail "the job did not requeue itself"
grep -q "start (restart 1)" "$WORK/preempt.out" || fail "no second start (restart 1) in the output"
resumed=$(resume_step_of "$WORK/preempt.out")
[ -n "$resumed" ] && [ "$resumed" -ge 8 ] && [ "$resumed" -lt $STEPS ] ||
    fail "expected a resume from a step in [8, $STEPS), got '${resumed:-none}'"
[ "$(steps_of "$WORK/run")" = "$(seq -s ' ' 1 $STEPS)" ] ||
    fail "expected steps 1..$STEPS once each, got: $(steps_of "$WORK/run")"
compare_runs "$REF" "$WORK/run"
say "job $JOB: checkpoint at step $resumed, requeued, resumed, COMPLETED 0:0; state equals the oracle"
say "PASS"
