#!/usr/bin/env bash
# test_routes_text.sh: `moe routes CHECKPOINT --text TEXT` (issue 17's interactive view of
# routing). A tiny model trained 20 steps at np 2 / EP 2; the text's routing at np 1, np 2 and
# np 2 with EP 2 is the same bytes (text and JSON); the JSON names every MoE layer (1, 2, 3 of the
# quickstart shape), the text's bytes as tokens, and for each token top_k distinct experts in
# range with positive weights, heaviest first, summing to 1 (renormalised top-k); the table has a
# line per token and layer. Refusals exit 2: an empty or too long text, no checkpoint, --text with
# two paths or with --out, --set without --text.
#   MOE_BIN=build/moe MPIEXEC=mpirun bash tests/test_routes_text.sh
set -u
. "$(dirname "$0")/test_bench_lib.sh" routes-text
CFG="$(dirname "$0")/../examples/tiny-moe.json"
TEXT='Hello, world'

timeout -k 5 200 "$MPIEXEC" -np 2 "$MOE_BIN" train "$CFG" --set parallel.ep_size=2 \
    --set train.steps=20 --set train.warmup_steps=2 --set out_dir="$WORK/run" >"$WORK/train.log" 2>&1 ||
    { cat "$WORK/train.log"; fail "training the model: exit $?"; }

run() { # NAME NP ARGS...
    local name=$1 np=$2
    shift 2
    timeout -k 5 120 "$MPIEXEC" -np "$np" "$MOE_BIN" routes "$WORK/run" --text "$TEXT" "$@" \
        >"$WORK/$name" 2>"$WORK/$name.err" || { cat "$WORK/$name.err"; fail "$name: exit $?"; }
}
run t1 1
run t2 2
run t2ep 2 --set parallel.ep_size=2
run j1 1 --json
run j2ep 2 --json --set parallel.ep_size=2
cmp -s "$WORK/t1" "$WORK/t2" || fail "np 2 prints other routes than np 1"
cmp -s "$WORK/t1" "$WORK/t2ep" || fail "np 2 with EP 2 prints other routes than np 1"
cmp -s "$WORK/j1" "$WORK/j2ep" || fail "JSON at np 2 / EP 2 differs from np 1"
cat "$WORK/t1"
for l in 1 2 3; do grep -q "^layer $l:$" "$WORK/t1" || fail "no table for layer $l"; done
[ "$(grep -cE "^ +[0-9]+ +'.'" "$WORK/t1")" = $((3 * ${#TEXT})) ] || fail "not one line per token and layer"

python3 - "$WORK/j1" "$TEXT" <<'PY' || fail "JSON: see above"
import json, sys
j = json.load(open(sys.argv[1]))
text = sys.argv[2]
assert j["tokens"] == [ord(ch) for ch in text], j["tokens"]
assert [l["layer"] for l in j["layers"]] == [1, 2, 3], [l["layer"] for l in j["layers"]]
E, K = j["n_experts"], j["top_k"]
assert (E, K) == (8, 2), (E, K)
for l in j["layers"]:
    assert len(l["routes"]) == len(text)
    for r in l["routes"]:
        ex, w = r["experts"], r["weights"]
        assert len(ex) == K and len(set(ex)) == K and all(0 <= e < E for e in ex), r
        assert all(x > 0 for x in w) and w == sorted(w, reverse=True), r
        assert abs(sum(w) - 1) < 1e-5, r
PY

refused() { # WHAT ARGS...
    local what=$1
    shift
    timeout -k 5 60 "$MOE_BIN" routes "$@" >"$WORK/bad" 2>&1
    local rc=$?
    [ $rc = 2 ] || { cat "$WORK/bad"; fail "$what: exit $rc, expected 2"; }
}
refused "empty text" "$WORK/run" --text ""
refused "text past max_seq_len" "$WORK/run" --text "$(printf 'a%.0s' $(seq 300))"
refused "no checkpoint" "$WORK/none" --text "a"
refused "two paths" "$WORK/run" "$WORK/run" --text "a"
refused "--out" "$WORK/run" --text "a" --out "$WORK/plots"
refused "--set without --text" "$WORK/x.trace" --set parallel.ep_size=2

[ $failures = 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "ok: routes --text"
