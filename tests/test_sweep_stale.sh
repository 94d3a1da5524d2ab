#!/bin/bash
# test_sweep_stale.sh: stale results (issue 12) with the stand-in launcher. (1) a sweep finishes;
# (2) a point's `set` and the sweep's train.steps change: the rerun refuses the changed runs
# (exit 2, the fields old -> new), launches nothing and moves nothing; (3) --rerun-changed moves
# each old run to RUN.old-N and runs it again; `moe report OUT` ignores the .old-N directories;
# (4) a run that failed before any checkpoint is run again from the start, its metrics.jsonl kept
# as metrics.jsonl.old-1; (5) `moe report` refuses a report directory that is not empty, and
# --force removes the earlier report's files (a stale PNG) but leaves other files.
. "$(dirname "$0")/test_sweep_lib.sh"
cd "$WORK" || exit 1
export MOE_GNUPLOT=none STANDIN_LOG=$WORK/launches.log
tiny_base base.json 5
cp "$MOE_SRC/tests/test_sweep_standin.sh" standin.sh && chmod +x standin.sh
mk_sweep() { # $1: train.steps, $2: point b's aux_loss_coef
    cat >sweep.json <<JSON
{"name": "stale", "base_file": "base.json", "launch": {"np": 2, "mpirun": "$WORK/standin.sh"},
 "out_dir": "$WORK/out", "set": ["train.steps=$1"],
 "points": [{"name": "a"}, {"name": "b", "set": ["router.aux_loss_coef=$2"]}], "seeds": [1]}
JSON
}
R=$WORK/out/runs
nsteps() { grep -c '"step"' "$1/metrics.jsonl"; }

# (1)
mk_sweep 5 0
"$MOE_BIN" sweep sweep.json >run1.out 2>&1 || fail "(1) expected exit 0, got $?: $(cat run1.out)"
[ "$(nsteps $R/a-s1)" = 5 ] && [ "$(nsteps $R/b-s1)" = 5 ] || fail "(1) runs do not have 5 steps"
say "(1) sweep of 2 runs finished"

# (2) settings changed: refused, nothing launched or moved
mk_sweep 6 0.02
n_before=$(wc -l <"$STANDIN_LOG")
csv_before=$(md5sum <$WORK/out/report/results.csv)
"$MOE_BIN" sweep sweep.json >run2.out 2>&1
rc=$?
[ $rc = 2 ] || fail "(2) expected exit 2 for changed runs, got $rc: $(cat run2.out)"
grep -q "a-s1" run2.out && grep -q "train.steps: 5 -> 6" run2.out ||
    fail "(2) the change of train.steps is not shown: $(cat run2.out)"
grep -q "b-s1" run2.out && grep -q "router.aux_loss_coef: 0.0 -> 0.02" run2.out ||
    fail "(2) the change of b's aux_loss_coef is not shown: $(cat run2.out)"
grep -q -- "--rerun-changed" run2.out || fail "(2) the way out (--rerun-changed) is not named"
grep -q "skipped" run2.out && fail "(2) a changed run was reported as finished: $(cat run2.out)"
[ "$(wc -l <"$STANDIN_LOG")" = "$n_before" ] || fail "(2) something was launched: $(tail -2 "$STANDIN_LOG")"
[ -e $R/a-s1.old-1 ] && fail "(2) a-s1 was moved without --rerun-changed"
[ "$(md5sum <$WORK/out/report/results.csv)" = "$csv_before" ] || fail "(2) the report was rewritten"
"$MOE_BIN" sweep sweep.json --dry-run >dry.out 2>&1 || fail "(2) --dry-run exit $?"
grep -q "(point, changed)" dry.out || fail "(2) --dry-run does not show the state 'changed': $(cat dry.out)"
say "(2) changed runs refused with exit 2 and the fields shown; nothing launched"

# (3) --rerun-changed: old runs kept as RUN.old-1, rerun, report of the new runs only
"$MOE_BIN" sweep sweep.json --rerun-changed >run3.out 2>&1 || fail "(3) expected exit 0, got $?: $(cat run3.out)"
for r in a-s1 b-s1; do
    [ -d $R/$r.old-1 ] || fail "(3) $r was not kept as $r.old-1: $(ls $R)"
    [ "$(nsteps $R/$r.old-1)" = 5 ] || fail "(3) $r.old-1 lost its metrics"
    [ "$(nsteps $R/$r)" = 6 ] || fail "(3) $r was not rerun with 6 steps"
    [ "$(grep -c "^$r resume=0\$" "$STANDIN_LOG")" = 2 ] || fail "(3) $r not launched afresh"
done
grep -q '"aux_loss_coef": 0.02' $R/b-s1/sweep-run.json || fail "(3) b-s1's run record is not the new one"
grep -q '^run,a-s1,a,1,6,' $WORK/out/report/results.csv || fail "(3) the report does not show the 6-step run"
"$MOE_BIN" sweep sweep.json >run3b.out 2>&1 || fail "(3) a further rerun: exit $?"
grep -q "a-s1: finished earlier, skipped" run3b.out || fail "(3) the rerun run is not finished now"
"$MOE_BIN" report $WORK/out --out $WORK/rep-all >rep.out 2>&1 || fail "(3) moe report OUT: $(cat rep.out)"
rows=$(grep -c '^run,' $WORK/rep-all/results.csv)
[ "$rows" = 2 ] || fail "(3) moe report OUT: expected 2 runs (no .old-N), got $rows"
say "(3) --rerun-changed kept a-s1.old-1 and b-s1.old-1 and reran both; report of 2 runs"

# (4) a run that failed before its first checkpoint runs again; its metrics are kept aside
sed "s#$WORK/out#$WORK/out4#" sweep.json >sweep4.json
STANDIN_FAIL=a-s1 "$MOE_BIN" sweep sweep4.json >run4.out 2>&1
[ $? = 1 ] || fail "(4) expected exit 1 with a failed run: $(cat run4.out)"
"$MOE_BIN" sweep sweep4.json >run4b.out 2>&1 || fail "(4) rerun: exit $?: $(cat run4b.out)"
[ -f $WORK/out4/runs/a-s1/metrics.jsonl.old-1 ] || fail "(4) the failed run's metrics were not kept aside: $(cat run4b.out)"
[ "$(nsteps $WORK/out4/runs/a-s1)" = 6 ] || fail "(4) a-s1 did not run again to 6 steps"
say "(4) a failed run without checkpoint reran; its metrics kept as metrics.jsonl.old-1"

# (5) moe report over an earlier report
"$MOE_BIN" report $R/a-s1 --out $WORK/rep >rep1.out 2>&1 || fail "(5) first report: exit $?"
touch $WORK/rep/heatmap-gone.png $WORK/rep/notes.txt
mkdir -p $WORK/rep/data && touch $WORK/rep/data/gone.dat
before=$(md5sum <$WORK/rep/results.csv)
"$MOE_BIN" report $R/a-s1 $R/b-s1 --out $WORK/rep >rep2.out 2>&1
rc=$?
[ $rc = 2 ] || fail "(5) a report over an earlier one: expected exit 2, got $rc: $(cat rep2.out)"
grep -q -- "--force" rep2.out && grep -q "$WORK/rep" rep2.out || fail "(5) the refusal does not name the directory and --force: $(cat rep2.out)"
[ "$(md5sum <$WORK/rep/results.csv)" = "$before" ] || fail "(5) the refused report changed results.csv"
"$MOE_BIN" report $R/a-s1 $R/b-s1 --out $WORK/rep --force >rep3.out 2>&1 || fail "(5) --force: exit $?: $(cat rep3.out)"
[ -e $WORK/rep/heatmap-gone.png ] && fail "(5) --force left the stale heatmap-gone.png"
[ -e $WORK/rep/data/gone.dat ] && fail "(5) --force left the stale data/gone.dat"
[ -e $WORK/rep/notes.txt ] || fail "(5) --force removed notes.txt, a file no report writes"
[ "$(grep -c '^run,' $WORK/rep/results.csv)" = 2 ] || fail "(5) --force: results.csv is not the new report"
say "(5) a report over an earlier one refused (exit 2); --force replaced it, notes.txt kept"
say "PASS"
