#!/usr/bin/env bash
# test_vcluster_train.sh: `moe train` across virtual nodes (cluster/vcluster.sh: network
# namespaces joined by shaped links, Open MPI over TCP between them, shared memory inside) gives
# the losses of the one-node run: 2 nodes x 1 rank (EP 2), 2 nodes x 2 ranks with EP inside a node
# (EP 2, EDP 2) and across nodes (EP 4), flat and hierarchical exchange. Also checks `moe topo`
# names the nodes and the groups whose exchanges cross a link. Brings its cluster up and down
# itself (a trap), bounds every run, leaves nothing behind.
#   MOE_SRC=... MOE_BIN=build/moe bash tests/test_vcluster_train.sh
MOE_VC=moevc-train MOE_VC_SUBNET=10.213.7 VC_TEST=vcluster-train
. "$(dirname "$0")/test_vcluster_lib.sh"

# The tiny model of tests/test_train_runs.py: dropless, shared expert, qk-norm, z-loss, bias
# balancing and jitter on, so every part of the step crosses the links.
cat >"$WORK/cfg.json" <<'EOF'
{"name": "vcluster-test",
 "model": {"vocab_size": 256, "d_model": 32, "n_layers": 3, "n_heads": 4, "n_kv_heads": 2,
           "d_ff": 64, "n_experts": 4, "top_k": 2, "expert_d_ff": 32, "first_dense_layers": 1,
           "n_shared_experts": 1, "shared_expert_d_ff": 16, "qk_norm": "per_head"},
 "router": {"aux_loss_coef": 0.01, "z_loss_coef": 0.001, "capacity_factor": 0,
            "bias_update_rate": 0.001, "jitter": 0.01},
 "train": {"global_batch": 8, "seq_len": 16, "steps": 20, "warmup_steps": 4, "lr": 0.003,
           "log_interval": 10, "eval_interval": 10, "eval_batches": 2,
           "checkpoint_interval": 20, "keep_checkpoints": 1},
 "data": {"val_fraction": 0.1}}
EOF

# run NAME TIMEOUT LAUNCH... -- SETS...: one training run into $WORK/NAME.
run() {
    local name=$1 t=$2
    shift 2
    local launch=()
    while [ "$1" != -- ]; do launch+=("$1"); shift; done
    shift
    local sets=()
    for s in "$@"; do sets+=(--set "$s"); done
    local t1=$(date +%s)
    timeout -k 5 "$t" "${launch[@]}" "$MOE_BIN" train "$WORK/cfg.json" --set "out_dir=$WORK/$name" \
        "${sets[@]}" >"$WORK/$name.log" 2>&1
    local rc=$?
    [ $rc = 0 ] || fail "$name: exit $rc (log above)"
    say "$name: done in $(($(date +%s) - t1)) s ($(grep -o 'exchange *[0-9]*%' "$WORK/$name.log" | tail -1))"
}

# compare NAME: 20 losses and the two validation losses within rel 1e-4 of the one-node run.
compare() {
    python3 - "$WORK/ref/metrics.jsonl" "$WORK/$1/metrics.jsonl" "$1" <<'EOF' || exit 1
import json, sys
def load(p):
    return {r["step"]: r for r in map(json.loads, open(p))}
a, b, name = load(sys.argv[1]), load(sys.argv[2]), sys.argv[3]
worst = 0.0
for s in range(1, 21):
    for k in ("loss", "val_loss"):
        if k not in a[s]:
            continue
        x, y = a[s][k], b[s].get(k, float("nan"))
        rel = abs(x - y) / max(abs(x), 1e-12)
        worst = max(worst, rel)
        if not rel <= 1e-4:
            print("FAIL %s step %d %s: expected %.8g (one node) got %.8g" % (name, s, k, x, y))
            sys.exit(1)
print("%s: 20 losses and 2 validation losses within rel %.2e of the one-node run (limit 1e-4)"
      % (name, worst))
EOF
}

say "reference: one node, one rank"
run ref 120 mpirun -np 1 --

say "virtual cluster: 2 nodes"
"$VC" up 2 >"$WORK/up.log" 2>&1 || fail "vcluster up 2: $(cat "$WORK/up.log")"
[ "$("$VC" exec node2 hostname)" = node2 ] || fail "node2 does not carry its host name"
[ "$(ip netns list | grep -c "^$MOE_VC-")" = 3 ] || fail "expected 3 namespaces (switch + 2 nodes)"

run n2x1-ep2 180 "$VC" mpirun -np 2 --map-by node -x OPENBLAS_NUM_THREADS -- parallel.ep_size=2
compare n2x1-ep2
export MOE_VC_SLOTS=2
run n2x2-ep2 180 "$VC" mpirun -np 4 --map-by slot -x OPENBLAS_NUM_THREADS -- parallel.ep_size=2
compare n2x2-ep2
run n2x2-ep4 180 "$VC" mpirun -np 4 --map-by slot -x OPENBLAS_NUM_THREADS -- parallel.ep_size=4
compare n2x2-ep4
run n2x2-ep4-hier 180 "$VC" mpirun -np 4 --map-by slot -x OPENBLAS_NUM_THREADS -- \
    parallel.ep_size=4 parallel.hierarchical=true
compare n2x2-ep4-hier

# moe topo across the nodes: the host names, and EP 4 spanning both nodes is named.
timeout 60 "$VC" mpirun -np 4 --map-by slot "$MOE_BIN" topo --ep 4 --experts 4 >"$WORK/topo.log" 2>&1 ||
    fail "moe topo under the virtual cluster failed"
grep -q "on 2 node(s)" "$WORK/topo.log" || fail "moe topo does not count 2 nodes"
grep -Eq "^2 +node2 " "$WORK/topo.log" || fail "moe topo does not place rank 2 on node2"
grep -Eq "ep group 0: 0 1 2 3 .*node1, node2: dispatch/combine crosses a link between 2 nodes" \
    "$WORK/topo.log" || fail "moe topo does not say that EP 4's dispatch/combine crosses the link"
timeout 60 "$VC" mpirun -np 4 --map-by slot "$MOE_BIN" topo --ep 2 --experts 4 >"$WORK/topo2.log" 2>&1 ||
    fail "moe topo --ep 2 under the virtual cluster failed"
grep -Eq "ep group 1: 2 3 .*on node2: dispatch/combine stays in the node" "$WORK/topo2.log" ||
    fail "moe topo does not say that EP 2's dispatch/combine stays inside node2"
grep -Eq "edp group 0: 0 2 .*expert-gradient all-reduce crosses a link" "$WORK/topo2.log" ||
    fail "moe topo does not say that the EDP all-reduce crosses the link"
say "moe topo: nodes and link-crossing groups named"

"$VC" down
[ -z "$(ip netns list | grep "^$MOE_VC-")" ] || fail "namespaces left after down"
[ ! -e "/etc/netns/$MOE_VC-node1" ] || fail "/etc/netns/$MOE_VC-node1 left after down"
say "PASS"
