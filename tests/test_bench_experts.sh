#!/usr/bin/env bash
# test_bench_experts.sh: `moe bench experts` (bench/bench-experts.c) prints, for each expert count,
# the rows per expert, both paths' times, the speedup and the growth over the first count, in text
# and JSON, consistent with each other (growth of the first count is 1, speedup = cblas / kernels,
# rows per expert = rows / count); bad --experts lists and options are refused with exit 2.
# Format and consistency only, never speed.
#   MOE_BIN=build/moe bash tests/test_bench_experts.sh
set -u
. "$(dirname "$0")/test_bench_lib.sh" bench-experts

timeout -k 5 240 "$MOE_BIN" bench experts --experts 4,16,32 --tokens 48 --rounds 3 >"$WORK/text" 2>&1
rc=$?
cat "$WORK/text"
[ $rc = 0 ] || fail "text: exit $rc, expected 0"
for E in 4 16 32; do
    grep -qE "^ +$E +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+x +[0-9.]+ +[0-9.]+x +[0-9.]+x$" "$WORK/text" ||
        fail "no table row for $E experts"
done
grep -q "reference: cblas_sgemm 1024^3 peak" "$WORK/text" || fail "no sgemm peak reference line"

timeout -k 5 240 "$MOE_BIN" bench experts --experts 4,16,32 --tokens 48 --rounds 3 --json \
    --set model.activation=gelu --set model.ffn_bias=true >"$WORK/json" 2>&1
rc=$?
cat "$WORK/json"
[ $rc = 0 ] || fail "--json: exit $rc, expected 0"
python3 - "$WORK/json" <<'PY' || fail "--json: see above"
import json, math, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
assert len(lines) == 1, f"expected one JSON line, got {len(lines)}"
j = json.loads(lines[0])
assert j["rows"] == 48 * 2 and j["rounds"] == 3 and j["sgemm_peak_gflops"] > 0, j
c = j["counts"]
assert [x["experts"] for x in c] == [4, 16, 32], c
for x in c:
    for k in ("cblas_seconds", "kernels_seconds", "speedup", "kernels_gflops"):
        assert math.isfinite(x[k]) and x[k] > 0, (k, x)
    assert abs(x["rows_per_expert"] - j["rows"] / x["experts"]) < 1e-9, x
    assert abs(x["speedup"] - x["cblas_seconds"] / x["kernels_seconds"]) <= 1e-3 * x["speedup"], x
    assert abs(x["growth_kernels"] - x["kernels_seconds"] / c[0]["kernels_seconds"]) <= 1e-3 * x["growth_kernels"], x
    assert abs(x["growth_cblas"] - x["cblas_seconds"] / c[0]["cblas_seconds"]) <= 1e-3 * x["growth_cblas"], x
assert c[0]["growth_kernels"] == 1 and c[0]["growth_cblas"] == 1, c[0]
PY

# Refusals: exit 2 with the reason.
for bad in "--experts 0" "--experts 8,x" "--experts ,8" "--experts 8,,16" "--rounds 0" "--tokens -3"; do
    # shellcheck disable=SC2086
    timeout -k 5 60 "$MOE_BIN" bench experts $bad >"$WORK/bad" 2>&1
    rc=$?
    [ $rc = 2 ] || { cat "$WORK/bad"; fail "'$bad': exit $rc, expected 2"; }
    grep -q "moe bench experts" "$WORK/bad" || fail "'$bad': the message does not name the command"
done

[ $failures = 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "ok: bench experts"
