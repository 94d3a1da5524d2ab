#!/bin/bash
# mpirun-train.sh: launch `moe train` with Open MPI's mpirun (one machine or a hostfile), ranks
# bound to cores, one BLAS thread per rank; optionally re-launch with --resume latest after a
# preemption (exit 75). Trade-off: a thin wrapper around mpirun's own flags, no scheduler logic.
#
#   cluster/mpirun-train.sh [options] [--] MOE_BIN train CONFIG [args...]
#
# Options:
#   -np N, -n N           number of ranks (default: all slots of the hostfile, else 2)
#   --hostfile FILE       Open MPI hostfile ("node1 slots=8" per line); ranks fill a node first,
#                         so EP groups (consecutive ranks) stay inside a node
#   --threads T           OPENBLAS_NUM_THREADS per rank (default: $OPENBLAS_NUM_THREADS or 1);
#                         T > 1 binds each rank to T cores (--map-by slot:PE=T)
#   --relaunch[=MAX]      when the run exits 75 (checkpointed after SIGUSR1), start it again with
#                         --resume latest, at most MAX times (default 10)
#   --mpirun-arg ARG      pass ARG to mpirun (repeatable), e.g. --mpirun-arg=--mca --mpirun-arg=btl ...
#   -h, --help            this text
#
# Signals to this wrapper: SIGUSR1 is forwarded to the ranks (they checkpoint and exit 75; with
# --relaunch the run starts again: a checkpoint-and-restart). SIGTERM/SIGINT are forwarded as
# SIGUSR1 too, but then the wrapper exits 75 without relaunching (stop now, resume later).
# Signals are trapped from the wrapper's first line and also create the file MOE_STOP_FILE names
# (exported to the ranks), which `moe train` checks every step: Open MPI's mpirun dies from a
# SIGUSR1 in its first ~20 ms and drops one that arrives before its ranks exist (~0.3 s), so a
# signal forwarded only as a signal could be lost. SIGUSR1 goes to mpirun once it is over 1 s old.
# A rank that dies makes mpirun kill the others and exit non-zero (Open MPI's default).
stop_requested=0
pid=
started=0
stop_file=
forward() {
    [ "$1" != USR1 ] && stop_requested=1
    [ -n "$stop_file" ] && : >"$stop_file"
    if [ -n "$pid" ] && [ $((SECONDS - started)) -ge 2 ]; then
        log "got SIG$1: SIGUSR1 to the ranks (checkpoint and exit 75)"
        kill -USR1 "$pid" 2>/dev/null
    else
        pending=1
    fi
}
pending=0
trap 'forward USR1' USR1
trap 'forward TERM' TERM
trap 'forward INT' INT
set -u

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }
log() { echo "[mpirun-train $(date -u +%H:%M:%S)] $*" >&2; }

np=
hostfile=
threads=${OPENBLAS_NUM_THREADS:-1}
relaunch=0
extra=()
while [ $# -gt 0 ]; do
    case $1 in
        -np | -n) np=${2:?"$1 needs a value"}; shift 2 ;;
        --hostfile) hostfile=${2:?"--hostfile needs a file"}; shift 2 ;;
        --hostfile=*) hostfile=${1#*=}; shift ;;
        --threads) threads=${2:?"--threads needs a value"}; shift 2 ;;
        --threads=*) threads=${1#*=}; shift ;;
        --relaunch) relaunch=10; shift ;;
        --relaunch=*) relaunch=${1#*=}; shift ;;
        --mpirun-arg) extra+=("${2:?"--mpirun-arg needs a value"}"); shift 2 ;;
        --mpirun-arg=*) extra+=("${1#*=}"); shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; break ;;
        -*) log "unknown option $1 (see --help)"; exit 2 ;;
        *) break ;;
    esac
done
if [ $# -lt 1 ]; then
    usage >&2
    exit 2
fi
case $threads in '' | *[!0-9]* | 0) log "--threads $threads: expected a positive integer"; exit 2 ;; esac
case $relaunch in *[!0-9]*) log "--relaunch=$relaunch: expected a count"; exit 2 ;; esac

launch=(mpirun)
if [ -n "$hostfile" ]; then
    [ -r "$hostfile" ] || { log "hostfile $hostfile not readable"; exit 2; }
    launch+=(--hostfile "$hostfile")
fi
if [ -n "$np" ]; then
    launch+=(-np "$np")
elif [ -z "$hostfile" ] && [ -z "${SLURM_JOB_ID:-}" ]; then
    launch+=(-np 2)
fi
if [ "$threads" -gt 1 ]; then
    launch+=(--map-by "slot:PE=$threads" --bind-to core)
else
    launch+=(--map-by core --bind-to core)
fi
export OPENBLAS_NUM_THREADS=$threads
# See cluster/README.md: CMA single-copy fails where ptrace is restricted (containers).
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
launch+=(-x OPENBLAS_NUM_THREADS -x OMPI_MCA_btl_vader_single_copy_mechanism)
[ "$(id -u)" = 0 ] && launch+=(--allow-run-as-root)
launch+=("${extra[@]}")

cmd=("$@")
stop_file=$(mktemp "${TMPDIR:-/tmp}/moe-stop.XXXXXX") && rm -f "$stop_file" || stop_file=
trap '[ -n "$stop_file" ] && rm -f "$stop_file"' EXIT
[ "$pending" = 1 ] && [ -n "$stop_file" ] && : >"$stop_file" # a signal during option parsing
export MOE_STOP_FILE=$stop_file
launch+=(-x MOE_STOP_FILE)

attempt=0
while :; do
    log "${launch[*]} ${cmd[*]}"
    started=$SECONDS
    "${launch[@]}" "${cmd[@]}" &
    pid=$!
    while :; do
        wait "$pid"
        rc=$?
        kill -0 "$pid" 2>/dev/null || break # else: wait was cut short by a trapped signal
    done
    pid=
    [ -n "$stop_file" ] && rm -f "$stop_file" # a relaunch starts without the old request
    [ "$rc" = 75 ] || exit "$rc"
    if [ "$stop_requested" = 1 ]; then
        log "stopped on request after a checkpoint (exit 75); resume with --resume latest"
        exit 75
    fi
    if [ "$attempt" -ge "$relaunch" ]; then
        [ "$relaunch" -gt 0 ] && log "exit 75 after $attempt relaunches (--relaunch=$relaunch): giving up"
        exit 75
    fi
    attempt=$((attempt + 1))
    # Resume from the newest checkpoint: replace an existing --resume value, else append one.
    new=()
    found=0
    i=0
    while [ $i -lt ${#cmd[@]} ]; do
        if [ "${cmd[$i]}" = --resume ]; then
            new+=(--resume latest)
            found=1
            i=$((i + 2))
        else
            new+=("${cmd[$i]}")
            i=$((i + 1))
        fi
    done
    [ $found = 1 ] || new+=(--resume latest)
    cmd=("${new[@]}")
    log "preempted (exit 75): relaunch $attempt/$relaunch with --resume latest"
done
