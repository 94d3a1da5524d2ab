#!/bin/bash
# test_cluster_sbatch.sh: a 2-rank job through cluster/train.sbatch on a local real Slurm, with the
# srun (--mpi=pmix) launcher and with the mpirun launcher; each must complete with exit 0 and write
# the same outputs as an uninterrupted run under plain mpirun (the oracle).
. "$(dirname "$0")/test_cluster_lib.sh"
require_slurm
oracle ref 12
start_slurm

for launcher in srun mpirun; do
    make_config "$WORK/$launcher.cfg" "$WORK/run-$launcher" 12 50 5
    submit "$launcher" "$WORK/$launcher.cfg" MOE_LAUNCHER=$launcher
    st=$(wait_job "$JOB" 60) || fail "job $JOB ($launcher) not finished within 60 s: $st"
    ec=$(job_field "$JOB" ExitCode)
    [ "$st" = COMPLETED ] && [ "$ec" = 0:0 ] ||
        fail "job $JOB ($launcher): expected COMPLETED 0:0, got $st $ec"
    grep -q "launcher exited with 0" "$WORK/$launcher.out" ||
        fail "job $JOB ($launcher): no 'launcher exited with 0' in its output"
    [ "$(steps_of "$WORK/run-$launcher")" = "$(seq -s ' ' 1 12)" ] ||
        fail "$launcher: expected steps 1..12 once each, got: $(steps_of "$WORK/run-$launcher")"
    compare_runs "$REF" "$WORK/run-$launcher"
    say "$launcher launcher: job $JOB COMPLETED 0:0, outputs equal the oracle"
done
say "PASS"
