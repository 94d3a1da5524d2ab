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
