#!/bin/bash
# test_sweep_root.sh: `moe sweep` as root on a fresh machine: Open MPI's mpirun refuses root
# unless OMPI_ALLOW_RUN_AS_ROOT and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM are 1, so the sweep must set
# them for its launches. A recording launcher (launch.mpirun) writes the two variables it sees;
# the sweep runs with both removed from its own environment. As root they must be 1 (and
# --dry-run says so); as another user they are left unset (nothing to allow).
. "$(dirname "$0")/test_sweep_lib.sh"
cd "$WORK" || exit 1
tiny_base base.json 2
cat >rec.sh <<'SH'
#!/bin/bash
echo "${OMPI_ALLOW_RUN_AS_ROOT:-unset} ${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-unset}" >>"$REC_LOG"
exit 1
SH
chmod +x rec.sh
cat >sweep.json <<JSON
{"name": "root", "base_file": "base.json", "launch": {"np": 2, "mpirun": "$WORK/rec.sh"},
 "out_dir": "$WORK/out", "points": [{"name": "a", "set": []}]}
JSON
export REC_LOG=$WORK/rec.log
env -u OMPI_ALLOW_RUN_AS_ROOT -u OMPI_ALLOW_RUN_AS_ROOT_CONFIRM "$MOE_BIN" sweep sweep.json \
    >sweep.out 2>&1
[ $? = 1 ] || fail "the failing launcher should make the sweep exit 1: $(cat sweep.out)"
[ -s rec.log ] || fail "the launcher never ran: $(cat sweep.out)"
env -u OMPI_ALLOW_RUN_AS_ROOT -u OMPI_ALLOW_RUN_AS_ROOT_CONFIRM "$MOE_BIN" sweep sweep.json \
    --dry-run >dry.out 2>&1 || fail "--dry-run: $(cat dry.out)"
if [ "$(id -u)" = 0 ]; then
    [ "$(sort -u rec.log)" = "1 1" ] || fail "as root the launch saw: $(cat rec.log)"
    grep -q "as root: every launch gets OMPI_ALLOW_RUN_AS_ROOT=1" dry.out ||
        fail "--dry-run as root does not say so: $(head -5 dry.out)"
    say "as root: both variables set for mpirun"
else
    [ "$(sort -u rec.log)" = "unset unset" ] || fail "as uid $(id -u) the launch saw: $(cat rec.log)"
    say "not root: nothing set"
fi
