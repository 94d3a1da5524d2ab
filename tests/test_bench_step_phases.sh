#!/usr/bin/env bash
# test_bench_step_phases.sh: `moe bench step --json` at NP ranks (default 1) reports the step split
# into phases — every phase present, finite and >= 0, their sum <= the step time × 1.05 + 1 ms
# (they are disjoint parts of the slowest rank's step) — and at NP >= 2 dispatch + combine > 0;
# the text report prints the phase table. Never checks speed.
#   MOE_BIN=build/moe MPIEXEC=mpirun NP=2 bash tests/test_bench_step_phases.sh
set -u
. "$(dirname "$0")/test_bench_lib.sh" bench-step-phases
NP=${NP:-1}

run_json phases "$NP" bench step --steps 2 --json
python3 - "$WORK/phases.json" "$NP" <<'PY' || fail "--json phases: see above"
import json, math, sys
j = json.load(open(sys.argv[1]))
np_ = int(sys.argv[2])
assert j["world"] == np_, (j["world"], np_)
ph = j["phases"]
names = ("attention", "router", "dispatch", "experts", "combine", "dense", "sync", "optimizer")
for k in names + ("other",):
    assert k in ph, f"phase {k} missing: {ph}"
    assert isinstance(ph[k], (int, float)) and math.isfinite(ph[k]) and ph[k] >= 0, (k, ph[k])
total = sum(ph[k] for k in names)
step = j["step_seconds"]
assert total <= step * 1.05 + 1e-3, f"phases sum {total} > step {step} x 1.05 + 1 ms"
assert ph["attention"] > 0 and ph["experts"] > 0 and ph["dense"] > 0, ph
if np_ >= 2:
    assert ph["dispatch"] + ph["combine"] > 0, f"no exchange time at np {np_}: {ph}"
print(f"ok: phases sum {total:.6f} s of step {step:.6f} s")
PY

timeout -k 5 240 "$MPIEXEC" -np "$NP" "$MOE_BIN" bench step --steps 1 >"$WORK/text" 2>&1
rc=$?
cat "$WORK/text"
[ $rc = 0 ] || fail "text: exit $rc, expected 0"
grep -qE "^  phases \(rank [0-9]+, the slowest; ms/step, % of the step\):$" "$WORK/text" ||
    fail "no phase table header"
for k in attention router dispatch experts combine dense sync optimizer other; do
    grep -qE "^    $k +[0-9]+\.[0-9]+ ms +[0-9]+\.[0-9] %$" "$WORK/text" || fail "no '$k' row"
done

[ $failures = 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "ok: bench step phases at np $NP"
