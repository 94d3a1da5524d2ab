# shellcheck shell=bash
# test_cluster_lib.sh: shared helpers for the cluster tests (sourced, not run): start/stop a local
# Slurm with cleanup on any exit, wait for jobs and steps, find a rank, and an oracle run.
# The program under test is a variable: MOE_BIN (the stand-in tests/cluster_standin.c, or moe),
# run as `$MOE_BIN train CONFIG $MOE_ARGS`; MOE_TEST_KIND=standin|moe selects the adapter below
# (how to write a config, how to compare two runs).
set -u

SKIP=77 # CTest SKIP_RETURN_CODE
: "${MOE_SRC:?MOE_SRC (the source tree) must be set}"
: "${MOE_BIN:?MOE_BIN (the program to run, e.g. the cluster_standin test program) must be set}"
MOE_ARGS=${MOE_ARGS:-}
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OPENBLAS_NUM_THREADS=1
# The tests may run inside a Slurm job of their own; they must only see the local cluster.
unset SLURM_JOB_ID SLURM_JOBID SLURM_NODELIST SLURM_NTASKS SLURM_CONF

T0=$(date +%s)
WORK=$(mktemp -d /tmp/moe-cluster-test.XXXXXX)
SLURM_DIR=

say() { echo "[$(basename "$0") +$(($(date +%s) - T0))s] $*"; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

cleanup() {
    local rc=$?
    if [ "$rc" != 0 ] && [ "$rc" != "$SKIP" ]; then
        echo "----- test failed (exit $rc); job outputs and logs follow" >&2
        for f in "$WORK"/*.out "$WORK"/*.log; do
            [ -f "$f" ] && { echo "----- $f" >&2; tail -n 30 "$f" >&2; }
        done
        if [ -n "$SLURM_DIR" ]; then
            SLURM_CONF=$SLURM_DIR/slurm.conf squeue >&2 2>&1
            for f in "$SLURM_DIR"/log/*.log; do
                [ -f "$f" ] && { echo "----- $f" >&2; tail -n 20 "$f" >&2; }
            done
        fi
    fi
    [ -n "$SLURM_DIR" ] && "$MOE_SRC/cluster/local-slurm.sh" stop "$SLURM_DIR" >/dev/null
    [ "$VCLUSTER" = 1 ] && "$MOE_SRC/cluster/vcluster.sh" down >/dev/null 2>&1
    # Stray ranks of an mpirun test (none expected): kill only those started from WORK.
    local p
    for p in $(pgrep -f -- "$WORK" 2>/dev/null); do
        [ "$p" != $$ ] && kill -KILL "$p" 2>/dev/null
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

require_slurm() {
    local p
    for p in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged /usr/bin/sbatch; do
        if [ ! -x "$p" ]; then
            echo "SKIP: $p not installed (apt-get install slurm-wlm munge; see install-deps.sh)"
            exit $SKIP
        fi
    done
    [ "$(id -u)" = 0 ] || { echo "SKIP: the local Slurm needs root"; exit $SKIP; }
}

# MOE_TEST_VCLUSTER=1: the same tests on a two-node Slurm (one slurmd per node of the virtual
# cluster, cluster/vcluster.sh); Slurm's client commands then run on node1, and jobs take 2 nodes
# x 1 rank instead of 1 node x 2 ranks.
VCLUSTER=${MOE_TEST_VCLUSTER:-0}
if [ "$VCLUSTER" = 1 ]; then
    export MOE_VC=moevc-slurm MOE_VC_SUBNET=10.213.9 MOE_SLURM_VCLUSTER=1
    for _c in sbatch scontrol squeue scancel sinfo sacct; do
        eval "$_c() { \"\$MOE_SRC/cluster/vcluster.sh\" exec node1 $_c \"\$@\"; }"
    done
fi

start_slurm() {
    SLURM_DIR=$WORK/slurm
    if [ "$VCLUSTER" = 1 ]; then
        "$MOE_SRC/cluster/vcluster.sh" up 2 >"$WORK/vcluster.log" 2>&1 ||
            { cat "$WORK/vcluster.log" >&2; fail "virtual cluster did not come up"; }
    fi
    "$MOE_SRC/cluster/local-slurm.sh" start "$SLURM_DIR" >"$WORK/local-slurm.log" 2>&1 ||
        { cat "$WORK/local-slurm.log" >&2; fail "local Slurm did not start"; }
    export SLURM_CONF=$SLURM_DIR/slurm.conf
    # If this script is killed without running its EXIT trap (SIGKILL, e.g. a CTest timeout), a
    # detached watchdog still stops the cluster once the script is gone.
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done
        [ -d "$3" ] && "$2" stop "$3" >/dev/null 2>&1
        [ "$5" = 1 ] && "$(dirname "$2")/vcluster.sh" down >/dev/null 2>&1; rm -rf "$4"' watchdog $$ \
        "$MOE_SRC/cluster/local-slurm.sh" "$SLURM_DIR" "$WORK" "$VCLUSTER" </dev/null >/dev/null 2>&1 &
    disown $!
    say "local Slurm up ($(sinfo -h -N -o '%N %c cpus %t'))"
}

# ---- adapter: the program under test ------------------------------------------------------------
# MOE_TEST_KIND=standin (tests/cluster_standin.c, the default) or moe (the real `moe train`: the
# config is MOE_TEST_BASE_CONFIG, default examples/tiny-moe.json, with out_dir, train.steps and
# train.checkpoint_interval replaced).
MOE_TEST_KIND=${MOE_TEST_KIND:-standin}
MOE_TEST_BASE_CONFIG=${MOE_TEST_BASE_CONFIG:-$MOE_SRC/examples/tiny-moe.json}
case $MOE_TEST_KIND in
    standin | moe) ;;
    *) echo "MOE_TEST_KIND=$MOE_TEST_KIND: expected standin or moe" >&2; exit 2 ;;
esac

# make_config FILE OUT_DIR STEPS SLEEP_MS CKPT_EVERY (SLEEP_MS: per-step sleep of the stand-in;
# CKPT_EVERY 0: no periodic checkpoints)
make_config() {
    if [ "$MOE_TEST_KIND" = moe ]; then
        $PY -c '
import json, sys
base, path, out, steps, every = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[6]
c = json.load(open(base))
c["out_dir"] = out
t = c.setdefault("train", {})
t["steps"], t["checkpoint_interval"], t["keep_checkpoints"] = int(steps), int(every), 1000
t["warmup_steps"] = min(t.get("warmup_steps", 20), int(steps) // 2)
json.dump(c, open(path, "w"), indent=1)
' "$MOE_TEST_BASE_CONFIG" "$@" || fail "cannot write config $1 from $MOE_TEST_BASE_CONFIG"
        return
    fi
    printf 'out_dir = %s\nsteps = %s\nsleep_ms = %s\nckpt_every = %s\n' "$2" "$3" "$4" "$5" >"$1"
}

# final_ok OUT_DIR: the run left its final state (stand-in: OUT_DIR/final; moe: a checkpoint).
final_ok() {
    if [ "$MOE_TEST_KIND" = moe ]; then
        [ -f "$1/checkpoints/LATEST" ]
    else
        [ -f "$1/final" ]
    fi
}

# compare_runs REF_DIR GOT_DIR: the same record for every step (state, or loss; the last record of
# a step wins, since a resumed run may redo the steps after its checkpoint) and the same final
# state (stand-in: OUT_DIR/final; moe: the tensor files of the final checkpoint, byte for byte).
compare_runs() {
    if [ "$MOE_TEST_KIND" = moe ]; then
        local ck got f n=0
        ck=$(cat "$1/checkpoints/LATEST") || fail "no final checkpoint in $1"
        got=$(cat "$2/checkpoints/LATEST" 2>/dev/null)
        [ "$got" = "$ck" ] || fail "final checkpoint: expected $ck, got '$got'"
        for f in "$1/checkpoints/$ck"/*.bin; do
            [ -f "$f" ] || continue
            cmp -s "$f" "$2/checkpoints/$ck/${f##*/}" ||
                fail "final checkpoint $ck: ${f##*/} differs from the uninterrupted run's"
            n=$((n + 1))
        done
        [ $n -gt 0 ] || fail "final checkpoint $ck of the reference run has no .bin tensor files"
    else
        cmp -s "$1/final" "$2/final" ||
            fail "final state differs: expected '$(cat "$1/final")', got '$(cat "$2/final" 2>/dev/null)'"
    fi
    $PY -c '
import json, sys
def load(p):
    d = {}
    for line in open(p):
        r = json.loads(line)
        d[r["step"]] = r.get("state", r.get("loss"))
    return d
ref, got = load(sys.argv[1]), load(sys.argv[2])
if ref != got:
    bad = sorted(set(ref) ^ set(got)) or [s for s in sorted(ref) if ref[s] != got.get(s)]
    s = bad[0]
    print(f"step {s}: expected {ref.get(s)}, got {got.get(s)} ({len(bad)} steps differ)")
    sys.exit(1)
' "$1/metrics.jsonl" "$2/metrics.jsonl" || fail "per-step records differ"
}

# resume_step_of LOG: the step a run resumed from, from its output (empty if it did not resume).
resume_step_of() {
    sed -n 's/.*resumed from .* at step \([0-9][0-9]*\).*/\1/p' "$1" | tail -n 1
}

# latest_step OUT_DIR: the step of the checkpoint LATEST names (the digits of its name).
latest_step() {
    local name
    name=$(cat "$1/checkpoints/LATEST" 2>/dev/null) || return 1
    name=$(echo "$name" | tr -cd '0-9')
    [ -n "$name" ] || return 1
    echo $((10#$name))
}
# -------------------------------------------------------------------------------------------------

# steps_of OUT_DIR: the step numbers of metrics.jsonl, in file order, space-separated.
steps_of() {
    $PY -c 'import json,sys; print(" ".join(str(json.loads(l)["step"]) for l in open(sys.argv[1])))' \
        "$1/metrics.jsonl"
}

# oracle NAME STEPS: an uninterrupted 2-rank run under plain mpirun, no sleep; sets REF (its out dir).
oracle() {
    REF=$WORK/$1
    make_config "$WORK/$1.cfg" "$REF" "$2" 0 0
    # shellcheck disable=SC2086
    mpirun -np 2 --oversubscribe "$MOE_BIN" train "$WORK/$1.cfg" $MOE_ARGS >"$WORK/$1.log" 2>&1 ||
        fail "oracle run failed (see $1.log)"
    final_ok "$REF" || fail "oracle run left no final state in $REF"
}

# job_field JOBID FIELD: one field of `scontrol show job`.
job_field() {
    scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# wait_job JOBID TIMEOUT: wait until the job reached a final state; prints it.
wait_job() {
    local t0 st
    t0=$(date +%s)
    while :; do
        st=$(job_field "$1" JobState)
        case $st in
            COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
                echo "$st"
                return 0 ;;
        esac
        [ $(($(date +%s) - t0)) -ge "$2" ] && { echo "TIMEOUT_WAITING($st)"; return 1; }
        sleep 0.3
    done
}

# wait_step OUT_DIR N TIMEOUT: wait until metrics.jsonl holds N records (the run passed step N).
wait_step() {
    local t0 n
    t0=$(date +%s)
    while :; do
        n=$(grep -c '"step"' "$1/metrics.jsonl" 2>/dev/null)
        [ "${n:-0}" -ge "$2" ] && return 0
        [ $(($(date +%s) - t0)) -ge "$3" ] && fail "$1/metrics.jsonl: fewer than $2 steps after $3 s"
        sleep 0.05
    done
}

# rank_pid CONFIG RANK: the pid of rank RANK of the run of CONFIG (the launcher puts PMIX_RANK in
# every rank's environment, under srun --mpi=pmix and under mpirun alike).
rank_pid() {
    local p
    for p in $(pgrep -f -- "$1"); do
        if tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qx "PMIX_RANK=$2"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# submit NAME CONFIG [VAR=VALUE...]: sbatch cluster/train.sbatch with 2 ranks; sets JOB.
submit() {
    local name=$1 cfg=$2
    shift 2
    local on_node=()
    [ "$VCLUSTER" = 1 ] && on_node=("$MOE_SRC/cluster/vcluster.sh" exec node1)
    JOB=$(env "$@" MOE_BIN="$MOE_BIN" MOE_CONFIG="$cfg" MOE_ARGS="$MOE_ARGS" \
        "${on_node[@]}" sbatch --parsable --nodes=$((VCLUSTER + 1)) --ntasks-per-node=$((2 - VCLUSTER)) --cpus-per-task=1 \
        --job-name="$name" --output="$WORK/$name.out" "$MOE_SRC/cluster/train.sbatch") ||
        fail "sbatch failed"
    say "submitted $name as job $JOB"
}
