#!/usr/bin/env bash
# test_bench_step_mem.sh: `moe bench step --steps 1` at np 1 on the built-in tiny shape prints the
# triad line and the optimizer and zero-grads lines (GB/s and % of the triad, all finite and
# positive, the % consistent with the two GB/s), and --json has the same fields. Never checks speed.
#   MOE_BIN=build/moe MPIEXEC=mpirun bash tests/test_bench_step_mem.sh
set -u
. "$(dirname "$0")/test_bench_lib.sh" bench-step-mem
num='[0-9]+(\.[0-9]+)?'

# Text report.
timeout -k 5 240 "$MPIEXEC" -np 1 "$MOE_BIN" bench step --steps 1 >"$WORK/text" 2>&1
rc=$?
cat "$WORK/text"
[ $rc = 0 ] || fail "text: exit $rc, expected 0"
line=$(grep -E "^  triad: $num GB/s \(3 x 64 MiB, 12 bytes/element, best of 5\)$" "$WORK/text")
[ -n "$line" ] || fail "no '  triad: X GB/s (3 x 64 MiB, 12 bytes/element, best of 5)' line"
triad=$(echo "$line" | sed -E "s/^  triad: ($num) GB.*/\1/")
for what in optimizer "zero grads"; do
    line=$(grep -E "^  $what: $num GB/s = $num % of the triad \($num GB/s\)(, over [0-9]+ of them .*)?$" "$WORK/text")
    [ -n "$line" ] || { fail "no '  $what: X GB/s = Y % of the triad (Z GB/s)' line"; continue; }
    read -r gbs pct ref < <(echo "$line" | sed -E "s/^  $what: ($num) GB\/s = ($num) % of the triad \(($num) GB\/s\).*$/\1 \3 \5/")
    echo "$gbs $pct $ref ${triad:-0}" | awk '{ if (!($1 > 0 && $2 > 0 && $3 > 0 && $3 == $4)) exit 1;
        want = 100 * $1 / $3; tol = 1 + want * (0.006 / $1 + 0.006 / $3);  # printed to 0.01 GB/s
        if ($2 < want - tol || $2 > want + tol) exit 1 }' ||
        fail "$what: implausible figures gbs=$gbs pct=$pct triad=$ref (triad line: ${triad:-none})"
done

# JSON: the same fields, finite and positive.
timeout -k 5 240 "$MPIEXEC" -np 1 "$MOE_BIN" bench step --steps 1 --json >"$WORK/json" 2>"$WORK/json.err"
rc=$?
cat "$WORK/json" "$WORK/json.err"
[ $rc = 0 ] || fail "--json: exit $rc, expected 0"
python3 - "$WORK/json" <<'PY' || fail "--json: see above"
import json, math, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
assert len(lines) == 1, f"expected one JSON line, got {len(lines)}"
j = json.loads(lines[0])
assert j["bench"] == "step" and j["world"] == 1, j
for k in ("triad_gbs", "optimizer_gbs", "optimizer_triad_pct", "zero_grads_gbs",
          "zero_grads_triad_pct", "local_params", "step_seconds"):
    assert isinstance(j[k], (int, float)) and math.isfinite(j[k]) and j[k] > 0, (k, j[k])
# The routed experts' gradients are written by the backward, not zeroed: fewer floats than params.
assert 0 < j["zero_grads_floats"] < j["local_params"], (j["zero_grads_floats"], j["local_params"])
for what in ("optimizer", "zero_grads"):
    want = 100 * j[what + "_gbs"] / j["triad_gbs"]
    got = j[what + "_triad_pct"]
    assert abs(got - want) <= 0.01 * want + 0.01, (what, got, want)
PY

[ $failures = 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "ok: bench step memory bandwidth"
