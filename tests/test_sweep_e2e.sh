#!/bin/bash
# test_sweep_e2e.sh: a tiny two-point sweep with the real `moe train` under mpirun -np 2: every run
# finishes with its DONE marker, checkpoints and log; the report has both run rows with the
# configured steps and finite losses, the PNGs, report.md and index.html. Then a longer sweep is
# stopped with SIGTERM mid-run: the ranks checkpoint (SIGUSR1 through mpirun), the sweep exits 75,
# and running it again resumes that run from its checkpoint and completes it.
. "$(dirname "$0")/test_sweep_lib.sh"
command -v mpirun >/dev/null || { echo "SKIP: mpirun not installed"; exit 77; }
cd "$WORK" || exit 1
tiny_base base.json 6
cat >sweep.json <<JSON
{"name": "e2e", "base_file": "base.json", "launch": {"np": 2},
 "out_dir": "$WORK/out", "set": ["train.steps=6"],
 "points": [{"name": "aux", "set": ["router.aux_loss_coef=0.01"]},
            {"name": "auxfree", "set": ["router.aux_loss_coef=0", "router.bias_update_rate=0.001"]}]}
JSON
t0=$(date +%s)
"$MOE_BIN" sweep sweep.json >sweep.out 2>&1 || fail "sweep: exit $?: $(cat sweep.out)"
say "two-point sweep in $(($(date +%s) - t0)) s"
R=$WORK/out/runs
for r in aux-s1234 auxfree-s1234; do
    [ -f $R/$r/DONE ] || fail "$r: no DONE marker"
    [ -s $R/$r/train.log ] || fail "$r: no train.log"
    [ -f $R/$r/checkpoints/LATEST ] || fail "$r: no checkpoint"
    [ "$(grep -c '"step"' $R/$r/metrics.jsonl)" = 6 ] || fail "$r: expected 6 metrics records"
done
rep=$WORK/out/report
for f in results.csv results.md report.md index.html loss.png load.png drops.png \
    heatmap-aux-s1234.png heatmap-auxfree-s1234.png; do
    [ -s $rep/$f ] || fail "report: $f missing or empty"
done
for f in $rep/*.png; do
    [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$f is not a PNG"
    grep -qF "]($(basename "$f"))" $rep/report.md || fail "report.md does not show $(basename "$f")"
done
/usr/bin/python3 - "$rep/results.csv" <<'PY' || fail "results.csv: $(cat "$rep/results.csv")"
import csv, math, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["row"] == "run"]
names = sorted(r["run"] for r in rows)
assert names == ["aux-s1234", "auxfree-s1234"], names
for r in rows:
    assert r["steps"] == "6", r
    for k in ("train_loss", "val_loss", "max_over_mean_end", "tokens_per_s"):
        assert math.isfinite(float(r[k])), (k, r)
    assert 1.0 <= float(r["max_over_mean_end"]) <= 4.0, r   # 4 experts: max/mean in [1, E]
    assert r["n_experts"] == "4", r
    assert int(r["active_params"]) < int(r["total_params"]), r
PY
say "report: 2 rows, PNGs and documents present"

# interrupted and resumed with the real trainer
sed -e "s#$WORK/out#$WORK/out2#" -e 's/train.steps=6/train.steps=400/' sweep.json >sweep2.json
"$MOE_BIN" sweep sweep2.json --only aux >sweep2.out 2>&1 &
spid=$!
m=$WORK/out2/runs/aux-s1234/metrics.jsonl
for _ in $(seq 300); do
    [ -f "$m" ] && [ "$(grep -c '"step"' "$m")" -ge 5 ] && break
    sleep 0.1
done
[ -f "$m" ] || fail "the long run never started: $(cat sweep2.out)"
kill -TERM $spid
wait $spid
rc=$?
[ $rc = 75 ] || fail "SIGTERM: expected exit 75, got $rc: $(cat sweep2.out)"
[ -f $WORK/out2/runs/aux-s1234/checkpoints/LATEST ] || fail "no checkpoint after SIGTERM: $(tail -5 $WORK/out2/runs/aux-s1234/train.log)"
stopped=$(grep -c '"step"' "$m")
say "SIGTERM after $stopped steps: exit 75, checkpoint $(cat $WORK/out2/runs/aux-s1234/checkpoints/LATEST)"
"$MOE_BIN" sweep sweep2.json --only aux >sweep3.out 2>&1 || fail "resume: exit $?: $(cat sweep3.out)"
grep -q "aux-s1234: resuming from its checkpoint" sweep3.out || fail "resume: not resumed: $(cat sweep3.out)"
grep -q "resumed from" $WORK/out2/runs/aux-s1234/train.log || fail "the trainer did not resume"
[ -f $WORK/out2/runs/aux-s1234/DONE ] || fail "resumed run has no DONE marker"
last=$(grep -o '"step":[0-9]*' "$m" | tail -1 | cut -d: -f2)
[ "$last" = 400 ] || fail "resumed run: last step $last, expected 400"
[ -e $WORK/out2/runs/auxfree-s1234 ] && fail "--only aux launched auxfree"
say "resumed with --resume latest and finished"
say "PASS"
