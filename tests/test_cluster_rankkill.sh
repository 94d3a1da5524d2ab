#!/bin/bash
# test_cluster_rankkill.sh: one rank dies (SIGKILL) mid-run on a local real Slurm. Expected: the job
# ends non-zero within 60 s (srun --kill-on-bad-exit=1 / mpirun tear the other ranks down), and a
# resubmitted job resumes from the last periodic checkpoint and ends in the state of an
# uninterrupted run. MOE_TEST_LAUNCHER=srun|mpirun (default: both, one after the other).
. "$(dirname "$0")/test_cluster_lib.sh"
require_slurm
STEPS=30
oracle ref $STEPS
start_slurm

for launcher in ${MOE_TEST_LAUNCHER:-srun mpirun}; do
    out=$WORK/run-$launcher
    make_config "$WORK/$launcher.cfg" "$out" $STEPS 100 5
    submit "kill-$launcher" "$WORK/$launcher.cfg" MOE_LAUNCHER=$launcher
    wait_step "$out" 12 30
    latest_step "$out" >/dev/null || fail "$launcher: no checkpoint after 12 steps (ckpt_every 5)"
    pid=$(rank_pid "$WORK/$launcher.cfg" 1) || fail "$launcher: rank 1 not found"
    kill -KILL "$pid" || fail "could not kill rank 1 (pid $pid)"
    t_kill=$(date +%s)
    say "$launcher: SIGKILL to rank 1 (pid $pid) of job $JOB"
    st=$(wait_job "$JOB" 60) || fail "$launcher: job $JOB still not ended 60 s after a rank died: $st"
    secs=$(($(date +%s) - t_kill))
    ec=$(job_field "$JOB" ExitCode)
    [ "$st" != COMPLETED ] && [ "$ec" != 0:0 ] ||
        fail "$launcher: job $JOB: expected a failed job, got $st $ec"
    for _ in $(seq 1 25); do pgrep -f -- "$WORK/$launcher.cfg" >/dev/null || break; sleep 0.2; done
    pgrep -f -- "$WORK/$launcher.cfg" >/dev/null && fail "$launcher: ranks survive the failed job"
    # The last checkpoint complete when the job ended (the other rank may write one more between
    # the first one seen and the kill: reading it before the kill was a race).
    ckpt=$(latest_step "$out") || fail "$launcher: no checkpoint left after the failure"
    say "$launcher: job $JOB ended $st $ec ${secs}s after the kill; last checkpoint at step $ckpt"

    # Resubmit: train.sbatch always passes --resume latest.
    submit "resume-$launcher" "$WORK/$launcher.cfg" MOE_LAUNCHER=$launcher
    st=$(wait_job "$JOB" 60) || fail "$launcher: resumed job $JOB not finished within 60 s: $st"
    ec=$(job_field "$JOB" ExitCode)
    [ "$st" = COMPLETED ] && [ "$ec" = 0:0 ] ||
        fail "$launcher: resumed job $JOB: expected COMPLETED 0:0, got $st $ec"
    from=$(resume_step_of "$WORK/resume-$launcher.out")
    [ "$from" = "$ckpt" ] ||
        fail "$launcher: expected the resume from the last checkpoint (step $ckpt), got step '${from:-none}'"
    compare_runs "$REF" "$out"
    say "$launcher: resumed from step $from, COMPLETED 0:0; state equals the oracle"
done
say "PASS"
