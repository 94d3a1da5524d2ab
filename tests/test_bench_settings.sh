#!/usr/bin/env bash
# test_bench_settings.sh: the exchange settings side by side at np 2, `moe bench step --settings`
# (WHAT=step) or `moe bench layer --ep --settings` (WHAT=layer) with --json: flat is listed with
# speedup exactly 1; every other default setting is either measured (time > 0, speedup > 0) or
# skipped with a reason; bf16 moves at most 0.55 × flat's payload bytes (inter-node bytes when
# there are any, else the intra-node ones). Never checks speed.
#   MOE_BIN=build/moe MPIEXEC=mpirun WHAT=step bash tests/test_bench_settings.sh
set -u
. "$(dirname "$0")/test_bench_lib.sh" bench-settings
WHAT=${WHAT:-step}

case $WHAT in
step) args=(bench step --settings --steps 1 --rounds 1 --json) ;;
layer) args=(bench layer --ep --settings --tokens 256 --dim 64 --ffn 128 --iters 1 --rounds 1 --json) ;;
*) echo "WHAT must be step or layer" >&2; exit 2 ;;
esac
run_json settings 2 "${args[@]}"
python3 - "$WORK/settings.json" "$WHAT" <<'PY' || fail "--settings --json: see above"
import json, math, sys
j = json.load(open(sys.argv[1]))
time_key = "step_seconds" if sys.argv[2] == "step" else "seconds"
rows = {r["name"]: r for r in j["settings"]}
want = ["flat", "chunks2", "chunks4", "chunks8", "hier", "dedup-rank", "dedup-node", "bf16",
        "chunks4+bf16", "hier+bf16"]
assert [r["name"] for r in j["settings"]] == want, [r["name"] for r in j["settings"]]
flat = rows["flat"]
assert flat["measured"] and flat["speedup"] == 1, flat
for name in want:
    r = rows[name]
    if r["measured"]:
        assert math.isfinite(r[time_key]) and r[time_key] > 0, r
        assert math.isfinite(r["speedup"]) and r["speedup"] > 0, r
    else:
        assert isinstance(r.get("skipped"), str) and len(r["skipped"]) > 5, r
b = rows["bf16"]
assert b["measured"], b
kind = "internode" if flat["internode_bytes_per_token"] > 0 else "intranode"
fb, bb = flat[kind + "_bytes_per_token"], b[kind + "_bytes_per_token"]
assert fb > 0, f"flat moved no {kind} bytes: {flat}"
assert bb <= 0.55 * fb, f"bf16 {kind} bytes per token {bb} > 0.55 x flat's {fb}"
assert b["changes_results"] is True and flat["changes_results"] is False
print(f"ok: {len(want)} settings, bf16 {kind} bytes {bb} vs flat {fb}")
PY

# The link reference (step only): on one node there is no link to judge (remote_peers 0); with
# fake one-rank nodes the EP peer is remote, the raw probe measured a message round and the bulk
# of flat's bytes, 7 rounds per MoE layer (3 here), and each setting's need is positive, bf16's
# below flat's (half the bytes, same rounds).
if [ "$WHAT" = step ]; then
    python3 - "$WORK/settings.json" <<'PY' || fail "one node: the link section"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["link"]["remote_peers"] == 0, j["link"]
assert all(r.get("link_need_seconds", 0) == 0 for r in j["settings"] if r["measured"]), j
PY
    run_json link 2 bench step --settings flat,bf16 --steps 1 --rounds 1 --node-size 1 --json
    python3 - "$WORK/link.json" <<'PY' || fail "--node-size 1: the link section"
import json, sys
j = json.load(open(sys.argv[1]))
lk = j["link"]
assert lk["remote_peers"] == 1 and lk["rounds_per_step"] == 21, lk
assert lk["round_seconds"] > 0 and lk["bulk_seconds"] > 0 and lk["bytes_per_peer"] > 0, lk
need = {r["name"]: r["link_need_seconds"] for r in j["settings"]}
assert need["flat"] > 0 and 0 < need["bf16"] < need["flat"], need
print("ok: link", lk, need)
PY
fi

[ $failures = 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "ok: bench $WHAT --settings at np 2"
