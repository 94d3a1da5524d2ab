# shellcheck shell=bash
# test_vcluster_lib.sh: shared setup of the virtual-cluster tests (sourced, not run): environment,
# a work directory, say/fail, cleanup on any exit (logs of a failed run, `vcluster.sh down`), and
# the probe that skips where network namespaces cannot be made. Set before sourcing:
#   MOE_VC, MOE_VC_SUBNET   the test's own cluster instance and subnet (tests may run in turn)
#   VC_TEST                 the test's tag: say's prefix, the work directory's name
# show_log FILE prints a failed run's log; a test may redefine it after sourcing.
set -u

SKIP=77 # CTest SKIP_RETURN_CODE
: "${MOE_SRC:?MOE_SRC (the source tree) must be set}"
: "${MOE_BIN:?MOE_BIN (the moe executable) must be set}"
: "${MOE_VC:?MOE_VC (the instance name) must be set before sourcing test_vcluster_lib.sh}"
: "${MOE_VC_SUBNET:?MOE_VC_SUBNET must be set before sourcing test_vcluster_lib.sh}"
: "${VC_TEST:?VC_TEST (the test tag) must be set before sourcing test_vcluster_lib.sh}"
VC="$MOE_SRC/cluster/vcluster.sh"
export MOE_VC MOE_VC_SUBNET
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
MOE_BIN=$(readlink -f "$MOE_BIN")
WORK=$(mktemp -d "/tmp/moe-$VC_TEST.XXXXXX")
T0=$(date +%s)
say() { echo "[$VC_TEST +$(($(date +%s) - T0))s] $*"; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
show_log() { tail -n 25 "$1"; }
cleanup() {
    local rc=$?
    [ "$rc" != 0 ] && [ "$rc" != $SKIP ] && for f in "$WORK"/*.log; do
        [ -f "$f" ] && { echo "----- $f" >&2; show_log "$f" >&2; }
    done
    "$VC" down >/dev/null 2>&1
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

[ "$(id -u)" = 0 ] || { echo "SKIP: needs root for network namespaces"; exit $SKIP; }
ip netns add "$MOE_VC-probe" 2>/dev/null || { echo "SKIP: cannot create network namespaces here"; exit $SKIP; }
ip netns del "$MOE_VC-probe"
