#!/usr/bin/env bash
# test_bench_watchdog.sh: `moe bench step --watchdog` at np 2 on the built-in tiny shape, 2 blocks
# of 2 steps per variant: the text report has the watchdog-off (reference) and watchdog-on lines
# (ms/step, tokens/s and the median step, finite and positive, tokens/s = tokens per step / step
# time) and the overhead line (mean-step and median-step percentages, each with a non-negative
# standard error); --json has the same
# figures; at np 1 the command exits 2 saying that it needs >= 2 ranks. Never checks speed.
#   MOE_BIN=build/moe MPIEXEC=mpirun bash tests/test_bench_watchdog.sh
set -u
. "$(dirname "$0")/test_bench_lib.sh" bench-watchdog

# Text report.
timeout -k 5 240 "$MPIEXEC" -np 2 "$MOE_BIN" bench step --watchdog --steps 2 --blocks 2 \
    >"$WORK/text" 2>&1
rc=$?
cat "$WORK/text"
[ $rc = 0 ] || fail "np 2 text: exit $rc, expected 0"
# tokens per step from the header ("16 x 64 tokens per step"), then each figure line.
tps_header=$(sed -n 's/^moe bench step --watchdog: .*, world 2, ep [0-9]*, \([0-9]*\) x \([0-9]*\) tokens per step$/\1 \2/p' "$WORK/text")
[ -n "$tps_header" ] || fail "no header line 'moe bench step --watchdog: ..., world 2, ...'"
num='[0-9]+(\.[0-9]+)?'
for v in "off (reference)" "on"; do
    line=$(grep -E "^  watchdog ${v//[()]/.}: +$num ms/step, +[0-9]+ tokens/s; median step +$num ms; blocks $num-$num ms/step$" "$WORK/text")
    [ -n "$line" ] || { fail "no 'watchdog $v: X ms/step, Y tokens/s; median step M ms; blocks A-B ms/step' line"; continue; }
    read -r ms tok med lo hi < <(echo "$line" | sed -E "s/.*: +($num) ms\/step, +([0-9]+) tokens\/s; median step +($num) ms; blocks ($num)-($num) .*/\1 \3 \4 \6 \8/")
    # Positive, blocks around the mean, and tokens/s = B * S / step (within rounding).
    echo "$ms $tok $med $lo $hi $tps_header" | awk '{ ms=$1; tok=$2; med=$3; lo=$4; hi=$5; want=$6*$7*1000/ms;
        if (!(ms > 0 && tok > 0 && med > 0 && lo > 0 && lo <= ms + 0.01 && ms <= hi + 0.01)) exit 1;
        if (tok < 0.99*want || tok > 1.01*want) exit 1 }' ||
        fail "watchdog $v: implausible figures ms=$ms tokens/s=$tok median=$med blocks=$lo-$hi header=$tps_header"
done
grep -qE "^  overhead \(on/off - 1\): [+-]$num % \+- $num % \(mean step\), [+-]$num % \+- $num % \(median step\); target <= 1 %$" "$WORK/text" ||
    fail "no 'overhead (on/off - 1): +X % +- Y % (mean step), +Z % +- U % (median step); target <= 1 %' line"

# JSON: the same figures, finite; positive where they must be.
timeout -k 5 240 "$MPIEXEC" -np 2 "$MOE_BIN" bench step --watchdog --steps 1 --blocks 2 --json \
    >"$WORK/json" 2>"$WORK/json.err"
rc=$?
cat "$WORK/json" "$WORK/json.err"
[ $rc = 0 ] || fail "np 2 --json: exit $rc, expected 0"
python3 - "$WORK/json" <<'PY' || fail "np 2 --json: see above"
import json, math, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
assert len(lines) == 1, f"expected one JSON line, got {len(lines)}"
j = json.loads(lines[0])
assert j["bench"] == "step_watchdog" and j["world"] == 2 and j["blocks"] == 2, j
for k in ("off_step_seconds", "on_step_seconds", "off_tokens_per_s", "on_tokens_per_s",
          "off_median_step_seconds", "on_median_step_seconds", "heartbeat", "tokens_per_step"):
    assert math.isfinite(j[k]) and j[k] > 0, (k, j[k])
for k in ("overhead_pct", "overhead_median_pct"):
    assert math.isfinite(j[k]), (k, j[k])
for k in ("overhead_stderr_pct", "overhead_median_stderr_pct"):
    assert math.isfinite(j[k]) and j[k] >= 0, (k, j[k])
for k in ("off_block_ms", "on_block_ms"):
    lo, hi = j[k]
    assert 0 < lo <= hi and math.isfinite(hi), (k, j[k])
for over, on, off in (("overhead_pct", "on_step_seconds", "off_step_seconds"),
                      ("overhead_median_pct", "on_median_step_seconds", "off_median_step_seconds")):
    want = 100 * (j[on] / j[off] - 1)
    assert abs(j[over] - want) < 1e-2 * max(1, abs(want)), (over, j[over], want)
PY

# One rank: no watchdog by design, so no figure: exit 2 and say why.
timeout -k 5 120 "$MPIEXEC" -np 1 "$MOE_BIN" bench step --watchdog --steps 1 >"$WORK/np1" 2>&1
rc=$?
[ $rc = 2 ] || fail "np 1: exit $rc, expected 2: $(head -c 600 "$WORK/np1")"
grep -qF -- "--watchdog needs >= 2 ranks" "$WORK/np1" || fail "np 1: no '--watchdog needs >= 2 ranks' in: $(head -c 600 "$WORK/np1")"

[ $failures = 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "ok: bench step --watchdog"
