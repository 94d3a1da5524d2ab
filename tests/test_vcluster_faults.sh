#!/usr/bin/env bash
# test_vcluster_faults.sh: every fault of a two-node job ends it, and the survivors resume. On the
# virtual cluster (cluster/vcluster.sh), 2 nodes x 1 rank training the tiny model with EP 2:
#   linkdown  node2's link is cut (a partition)
#   nodekill  every process of node2 is SIGKILLed (a crashed node)
#   sigstop   the rank on node2 is SIGSTOPped (hung, not dead)
#   straggler node2's link slowed mid-run: the run goes on and a line names the slow link
# For each: the job ends non-zero within 60 s, no process is left on either node, the message
# names the rank and node that did not arrive (sigstop), the last checkpoint verifies, and
# `--resume latest` on node1's side alone (1 rank: resharded) continues from it and gives the
# losses of an uninterrupted one-rank run (rel 1e-4). Brings its cluster up and down itself (a
# trap), bounds every wait, leaves nothing behind.
#   MOE_SRC=... MOE_BIN=build/moe bash tests/test_vcluster_faults.sh [SCENARIO...]
MOE_VC=moevc-fault MOE_VC_SUBNET=10.213.8 VC_TEST=vcluster-faults
. "$(dirname "$0")/test_vcluster_lib.sh"
# The logs are long: their step lines are left out of a failed run's tail.
show_log() { grep -v '^step ' "$1" | tail -n 25; }

# A long run (it is cut short by the fault) with a checkpoint every 20 steps; the constant
# schedule makes the learning rate independent of train.steps, so a run resumed with fewer
# steps follows the same curve as an uninterrupted one.
cat >"$WORK/cfg.json" <<'EOF'
{"name": "vcluster-faults",
 "model": {"vocab_size": 256, "d_model": 32, "n_layers": 3, "n_heads": 4, "n_kv_heads": 2,
           "d_ff": 64, "n_experts": 4, "top_k": 2, "expert_d_ff": 32, "first_dense_layers": 1},
 "router": {"aux_loss_coef": 0.01, "capacity_factor": 0},
 "train": {"global_batch": 8, "seq_len": 16, "steps": 1000000, "warmup_steps": 4, "lr": 0.003,
           "schedule": "constant", "log_interval": 50, "eval_interval": 0,
           "checkpoint_interval": 20, "keep_checkpoints": 2},
 "data": {"val_fraction": 0.1},
 "watchdog": {"silence_timeout": 10}}
EOF

node_pids() { ip netns pids "$MOE_VC-$1" 2>/dev/null; }
rank_pid() { # the moe process on a node
    local p
    for p in $(node_pids "$1"); do
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "^$MOE_BIN train" && { echo "$p"; return; }
    done
}

# scenario NAME: start the job, wait for checkpoint 40, inject the fault, check how it ends.
scenario() {
    local name=$1 out=$WORK/$1
    "$VC" up 2 >"$WORK/up-$name.log" 2>&1 || fail "vcluster up 2: $(cat "$WORK/up-$name.log")"
    ( timeout -k 5 240 "$VC" mpirun -np 2 --map-by node -x OPENBLAS_NUM_THREADS "$MOE_BIN" train \
        "$WORK/cfg.json" --set "out_dir=$out" --set parallel.ep_size=2 >"$WORK/$name.log" 2>&1
      echo "exit $?" >"$WORK/$name.rc" ) &
    local job=$!
    # A checkpoint at step 40 or later (LATEST names it; with fast steps and keep_checkpoints 2
    # step 40 itself may be gone before a poll sees it).
    local at=0
    for _ in $(seq 240); do
        at=$(sed -n 's/^step_0*\([0-9][0-9]*\)$/\1/p' "$out/checkpoints/LATEST" 2>/dev/null || true)
        [ "${at:-0}" -ge 40 ] && break
        sleep 0.5
    done
    [ "${at:-0}" -ge 40 ] || fail "$name: no checkpoint at step 40 or later after 120 s"
    local t1
    t1=$(date +%s)
    case $name in
    linkdown) "$VC" link node2 down >/dev/null ;;
    nodekill) kill -KILL $(node_pids node2) ;;
    sigstop)
        local p
        p=$(rank_pid node2)
        [ -n "$p" ] || fail "sigstop: no moe process found on node2"
        kill -STOP "$p"
        ;;
    esac
    for _ in $(seq 90); do [ -e "$WORK/$name.rc" ] && break; sleep 1; done
    local dt=$(($(date +%s) - t1))
    [ -e "$WORK/$name.rc" ] || fail "$name: the job still runs 90 s after the fault"
    wait "$job"
    local rc
    rc=$(cut -d' ' -f2 "$WORK/$name.rc")
    [ "$rc" != 0 ] || fail "$name: the job ended with exit 0 after the fault"
    [ "$dt" -le 60 ] || fail "$name: the job took $dt s to end (limit 60 s)"
    for _ in $(seq 60); do
        [ -z "$(node_pids node1)$(node_pids node2)" ] && break
        sleep 1
    done
    [ -z "$(node_pids node1)$(node_pids node2)" ] ||
        fail "$name: processes left on the nodes 60 s after the job ended"
    if [ "$name" = sigstop ]; then
        grep -q "rank 1 on node2, silent" "$WORK/$name.log" ||
            fail "sigstop: the message does not name rank 1 on node2 as silent"
    fi
    say "$name: the job ended $dt s after the fault (exit $rc); no process left"
    grep -h 'moe watchdog' "$WORK/$name.log" | head -n 1 | cut -c1-300
    "$VC" down >/dev/null

    # The last complete checkpoint verifies; the survivors (one rank) resume from it.
    "$MOE_BIN" inspect "$out/latest" >"$WORK/$name-inspect.log" 2>&1 ||
        fail "$name: the last checkpoint does not verify: $(tail -3 "$WORK/$name-inspect.log")"
    local k
    k=$(sed -n 's/^step: *\([0-9]*\).*/\1/p; s/.*"step": *\([0-9]*\).*/\1/p' "$WORK/$name-inspect.log" | head -1)
    [ -n "$k" ] || k=$(ls "$out/checkpoints" | sed -n 's/^step_0*\([0-9][0-9]*\)$/\1/p' | sort -n | tail -1)
    local to=$((k + 10))
    timeout -k 5 120 mpirun -np 1 "$MOE_BIN" train "$WORK/cfg.json" --set "out_dir=$out" \
        --set "train.steps=$to" --resume latest >"$WORK/$name-resume.log" 2>&1 ||
        fail "$name: --resume latest on one rank failed"
    grep -q "resumed from .* at step $k" "$WORK/$name-resume.log" ||
        fail "$name: the resume did not start from the last checkpoint (step $k)"
    timeout -k 5 120 mpirun -np 1 "$MOE_BIN" train "$WORK/cfg.json" --set "out_dir=$WORK/ref-$name" \
        --set "train.steps=$to" >"$WORK/ref-$name.log" 2>&1 || fail "$name: the reference run failed"
    python3 - "$WORK/ref-$name/metrics.jsonl" "$out/metrics.jsonl" "$k" "$to" "$name" <<'EOF' || exit 1
import json, sys
def load(p):
    return {r["step"]: r for r in map(json.loads, open(p))}
a, b, k, to, name = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
worst = 0.0
for s in range(1, to + 1):
    if s not in b:
        print("FAIL %s: step %d missing from the resumed run's metrics" % (name, s)); sys.exit(1)
    x, y = a[s]["loss"], b[s]["loss"]
    rel = abs(x - y) / max(abs(x), 1e-12)
    worst = max(worst, rel)
    # The reference runs at np 1, the faulted run at np 2 until the fault: the two agree to float
    # summation order, 1e-4 over the first 40 steps; at lr 3e-3 that difference grows over
    # hundreds of steps (docs/training.md: ~3e-3 after 200), and the fault lands at a step that
    # depends on the machine's speed (40 to ~300), so later steps get the documented bound.
    if not rel <= (1e-4 if s <= 40 else 5e-3):
        print("FAIL %s step %d loss: uninterrupted %.8g, faulted+resumed %.8g" % (name, s, x, y))
        sys.exit(1)
print("%s: resumed at step %d on 1 rank; steps 1..%d within rel %.2e of an uninterrupted run"
      % (name, k, to, worst))
EOF
}

# straggler: node2's link slowed mid-run (20 Mbit/s: ~10x the exchange time of this machine's
# default link, whose real bottleneck is the CPUs, not its nominal 2 Gbit/s). The quickstart model
# (its exchange carries enough bytes to feel the rate). The run goes on to the end (exit 0: the
# watchdog's automatic step timeout follows the measured steps), the records carry both ranks'
# compute and wait seconds, and the straggler line names the link between node1 and node2.
straggler() {
    local out=$WORK/straggler
    "$VC" up 2 >"$WORK/up-straggler.log" 2>&1 || fail "vcluster up 2: $(cat "$WORK/up-straggler.log")"
    ( timeout -k 5 240 "$VC" mpirun -np 2 --map-by node -x OPENBLAS_NUM_THREADS "$MOE_BIN" train \
        "$MOE_SRC/examples/tiny-moe.json" --set "out_dir=$out" --set parallel.ep_size=2 \
        --set train.steps=24 --set train.warmup_steps=4 --set train.log_interval=4 \
        --set train.eval_interval=0 >"$WORK/straggler.log" 2>&1
      echo "exit $?" >"$WORK/straggler.rc" ) &
    local job=$!
    for _ in $(seq 240); do grep -q '"step":8,' "$out/metrics.jsonl" 2>/dev/null && break; sleep 0.5; done
    grep -q '"step":8,' "$out/metrics.jsonl" 2>/dev/null || fail "straggler: no step 8 after 120 s"
    "$VC" link node2 rate=20mbit >/dev/null || fail "straggler: cannot reshape node2's link"
    say "straggler: node2's link at 20 Mbit/s from step ~8"
    wait $job
    [ "$(cat "$WORK/straggler.rc")" = "exit 0" ] || fail "straggler: the slowed run did not finish: $(cat "$WORK/straggler.rc")"
    grep -q "^straggler: the exchange is slow for every rank.*a slow link between the nodes (nodes: node1, node2)" \
        "$WORK/straggler.log" || fail "straggler: no line names the slow link between node1 and node2"
    grep '^straggler:' "$WORK/straggler.log" | tail -1
    /usr/bin/python3 - "$out/metrics.jsonl" <<'PY' || fail "straggler: per-rank seconds missing or wrong"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in recs] == list(range(1, 25)), "steps"
for r in recs:
    c, w = r["rank_compute_seconds"], r["rank_wait_seconds"]
    assert len(c) == 2 and len(w) == 2 and min(c) > 0 and min(w) > 0, r["step"]
for r in recs:  # EP 2 over two nodes: every exchanged byte crosses the link, counted both ways
    sent, recv = r["rank_internode_bytes_sent"], r["rank_internode_bytes_recv"]
    assert len(sent) == 2 and min(sent) > 0 and sum(sent) == sum(recv), ("bytes", r["step"])
    assert r["exchange_bytes_internode"] == sum(sent) and r.get("exchange_bytes_intranode", 0) == 0
    assert abs(r["internode_bytes_per_token"] - sum(sent) / (16 * 64)) < 1e-6 * sum(sent)
print("inter-node bytes per token: %.0f" % recs[-1]["internode_bytes_per_token"])
early = sum(r["rank_wait_seconds"][0] for r in recs[1:7]) / 6
late = sum(r["rank_wait_seconds"][0] for r in recs[-6:]) / 6
print("wait per step on rank 0: steps 2-7 %.3f s, steps 19-24 %.3f s" % (early, late))
assert late > 2 * early, "the slowed link did not show in the wait seconds"
PY
    "$VC" down >/dev/null 2>&1
    say "straggler: the run finished; the line names the link; per-rank seconds recorded"
}

scenarios=${*:-linkdown nodekill sigstop straggler}
for s in $scenarios; do
    case $s in
        linkdown | nodekill | sigstop) scenario "$s" ;;
        straggler) straggler ;;
        *) fail "unknown scenario $s" ;;
    esac
done
say "PASS"
