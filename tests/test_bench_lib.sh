# test_bench_lib.sh: sourced by the bench tests (test_bench_*.sh) after `set -u`, with the test's
# name as $1: checks MOE_BIN, sets MPIEXEC (default mpirun) and the MPI environment of the suite
# (root allowed, oversubscription, one BLAS thread), makes the scratch directory WORK (removed on
# exit) and defines fail() (counts into `failures`, the caller's exit code at the end).
: "${MOE_BIN:?MOE_BIN (the moe executable) must be set}"
MPIEXEC=${MPIEXEC:-mpirun}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
WORK=$(mktemp -d "/tmp/moe-$1-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# run_json NAME NP ARGS...: `moe ARGS` under MPIEXEC -np NP (timeout 280 s), its output shown;
# fails on a non-zero exit or unless exactly one line starts with '{'; that line is left in
# $WORK/NAME.json for the caller's checks.
run_json() {
    local name=$1 np=$2
    shift 2
    timeout -k 5 280 "$MPIEXEC" -np "$np" "$MOE_BIN" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    local rc=$?
    cat "$WORK/$name.out" "$WORK/$name.err"
    [ $rc = 0 ] || fail "moe $*: exit $rc, expected 0"
    grep '^{' "$WORK/$name.out" >"$WORK/$name.json"
    [ "$(wc -l <"$WORK/$name.json")" = 1 ] || fail "moe $*: expected one JSON line"
}
