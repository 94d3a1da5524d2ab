#!/usr/bin/env bash
# test_watchdog.sh: the job watchdog (comm/watchdog.h) on one node, 2 ranks:
#   sigstop  rank 1 is SIGSTOPped mid-run (hung, not dead; MPI never notices): the job ends
#            within 60 s with exit 1, and rank 0's message names rank 1 as silent;
#   hang     rank 1 stops making progress but stays alive (MOE_TRAIN_TEST_HANG_STEP; its
#            heartbeats go on): the step timeout (watchdog.step_timeout = 3) ends the job, and the
#            message names rank 1 as busy outside MPI while rank 0 waits in MPI;
#   healthy  a run with the watchdog on finishes normally (exit 0).
#   MOE_BIN=build/moe MPIEXEC=mpirun bash tests/test_watchdog.sh
set -u
: "${MOE_BIN:?MOE_BIN (the moe executable) must be set}"
MPIEXEC=${MPIEXEC:-mpirun}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
MOE_BIN=$(readlink -f "$MOE_BIN")
WORK=$(mktemp -d /tmp/moe-watchdog-test.XXXXXX)
fail() {
    echo "FAIL: $*" >&2
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "----- $f" >&2; grep -v '^step ' "$f" | tail -n 20 >&2; }; done
    exit 1
}
cleanup() {
    local p
    for p in $(pgrep -f -- "$WORK" 2>/dev/null); do [ "$p" != $$ ] && kill -KILL "$p" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
cat >"$WORK/cfg.json" <<'EOF'
{"name": "watchdog-test",
 "model": {"vocab_size": 256, "d_model": 32, "n_layers": 3, "n_heads": 4, "n_kv_heads": 2,
           "d_ff": 64, "n_experts": 4, "top_k": 2, "expert_d_ff": 32, "first_dense_layers": 1},
 "train": {"global_batch": 8, "seq_len": 16, "steps": 1000000, "warmup_steps": 4, "lr": 0.003,
           "log_interval": 100, "eval_interval": 0, "checkpoint_interval": 0},
 "data": {"val_fraction": 0.1},
 "watchdog": {"silence_timeout": 5}}
EOF

# start NAME [--set ...]: the job in the background; its exit code lands in NAME.rc.
start() {
    local name=$1
    shift
    ( timeout -k 5 120 $MPIEXEC -np 2 "$MOE_BIN" train "$WORK/cfg.json" --set "out_dir=$WORK/$name" \
        --set parallel.ep_size=2 "$@" >"$WORK/$name.log" 2>&1
      echo $? >"$WORK/$name.rc" ) &
}
# ends NAME LIMIT: waits (bounded) for the job; echoes its exit code.
ends() {
    for _ in $(seq $(($2 + 30))); do [ -e "$WORK/$1.rc" ] && break; sleep 1; done
    [ -e "$WORK/$1.rc" ] || fail "$1: the job still runs $(($2 + 30)) s later"
    cat "$WORK/$1.rc"
}
wait_step() { # NAME: until the run has done some steps (metrics exist), at most 60 s
    for _ in $(seq 120); do [ -s "$WORK/$1/metrics.jsonl" ] && [ "$(wc -l <"$WORK/$1/metrics.jsonl")" -ge 20 ] && return; sleep 0.5; done
    fail "$1: no training progress after 60 s"
}

# sigstop
start sigstop
wait_step sigstop
pid=$(pgrep -f -- "$MOE_BIN train $WORK/cfg.json --set out_dir=$WORK/sigstop" | sort -n | tail -1)
[ -n "$pid" ] || fail "sigstop: no rank process found"
t0=$(date +%s)
kill -STOP "$pid"
rc=$(ends sigstop 60)
dt=$(($(date +%s) - t0))
kill -KILL "$pid" 2>/dev/null
[ "$rc" != 0 ] || fail "sigstop: exit 0 after a rank was stopped"
[ "$dt" -le 60 ] || fail "sigstop: took $dt s to end (limit 60)"
grep -Eq "moe watchdog: .*Did not arrive: rank [01] on [^,]*, silent for" "$WORK/sigstop.log" ||
    fail "sigstop: no watchdog message naming the silent rank"
echo "sigstop: ended $dt s after SIGSTOP (exit $rc): $(grep -o 'Did not arrive: rank [01] on [^,]*, silent for [0-9]* s' "$WORK/sigstop.log" | head -1)"

# hang
MOE_TRAIN_TEST_HANG_STEP=30:1 start hang --set watchdog.step_timeout=3
rc=$(ends hang 60)
[ "$rc" != 0 ] || fail "hang: exit 0 with a hung rank"
grep -q "step 31 has run for [0-9]* s, past its timeout of 3 s" "$WORK/hang.log" ||
    fail "hang: no step-timeout message"
grep -q "Did not arrive: rank 1 on [^,]*, in step 31 for [0-9]* s, busy outside MPI" "$WORK/hang.log" ||
    fail "hang: rank 0's message does not name rank 1 as busy outside MPI"
echo "hang: ended by the step timeout; rank 1 named as busy outside MPI"

# healthy
start healthy --set train.steps=40
rc=$(ends healthy 90)
[ "$rc" = 0 ] || fail "healthy: exit $rc"
grep -q "moe watchdog:" "$WORK/healthy.log" && fail "healthy: a watchdog message in a healthy run"
echo "healthy: 40 steps with the watchdog on, exit 0"
echo PASS
