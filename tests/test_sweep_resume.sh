#!/bin/bash
# test_sweep_resume.sh: `moe sweep` run state with a stand-in launcher (test_sweep_standin.sh):
# (1) SIGTERM during the second run: the signal reaches the child as SIGUSR1, the sweep exits 75
# without launching the third; (2) run again: the finished first run is not relaunched (launch
# log, DONE marker mtime), the interrupted one resumes with --resume latest, the third runs, the
# report covers all three; (3) a third time launches nothing; a run whose metrics reached
# train.steps but has no DONE marker counts as finished; (4) a failing run is reported, the
# others still run, the exit code is 1.
. "$(dirname "$0")/test_sweep_lib.sh"
cd "$WORK" || exit 1
export MOE_GNUPLOT=none STANDIN_LOG=$WORK/launches.log
tiny_base base.json 5
cp "$MOE_SRC/tests/test_sweep_standin.sh" standin.sh && chmod +x standin.sh
standin=$WORK/standin.sh
cat >sweep.json <<JSON
{"name": "resume", "base_file": "base.json", "launch": {"np": 2, "mpirun": "$standin"},
 "out_dir": "$WORK/out", "set": ["train.steps=5"],
 "points": [{"name": "a"}, {"name": "b", "set": ["router.aux_loss_coef=0"]}, {"name": "c"}],
 "seeds": [1]}
JSON
R=$WORK/out/runs
launches() { grep -c "^$1 resume=$2\$" "$STANDIN_LOG"; }

# (1) interrupted during b-s1
STANDIN_INTERRUPT=b-s1 "$MOE_BIN" sweep sweep.json >run1.out 2>&1
rc=$?
[ $rc = 75 ] || fail "(1) expected exit 75 after SIGTERM, got $rc: $(cat run1.out)"
[ -f $R/a-s1/DONE ] || fail "(1) a-s1 finished but has no DONE marker"
[ -f $R/b-s1/DONE ] && fail "(1) the interrupted b-s1 has a DONE marker"
grep -q "stand-in: SIGUSR1" $R/b-s1/train.log || fail "(1) b-s1 never got the forwarded SIGUSR1: $(cat $R/b-s1/train.log)"
[ -e $R/c-s1 ] && fail "(1) c-s1 was launched after the interruption"
grep -q "interrupted" run1.out || fail "(1) the sweep did not say it was interrupted"
say "(1) SIGTERM: child got SIGUSR1, exit 75, c-s1 not launched"
done_mtime=$(stat -c "%y %i" $R/a-s1/DONE)
metrics_sum=$(md5sum <$R/a-s1/metrics.jsonl)
sleep 1

# (2) resumed
"$MOE_BIN" sweep sweep.json >run2.out 2>&1 || fail "(2) expected exit 0, got $?: $(cat run2.out)"
[ "$(launches a-s1 0)" = 1 ] && [ "$(launches a-s1 1)" = 0 ] || fail "(2) a-s1 relaunched: $(cat "$STANDIN_LOG")"
[ "$(stat -c "%y %i" $R/a-s1/DONE)" = "$done_mtime" ] || fail "(2) a-s1/DONE was rewritten"
[ "$(md5sum <$R/a-s1/metrics.jsonl)" = "$metrics_sum" ] || fail "(2) a-s1's metrics changed"
[ "$(launches b-s1 1)" = 1 ] || fail "(2) b-s1 not resumed with --resume latest: $(cat "$STANDIN_LOG")"
[ "$(launches c-s1 0)" = 1 ] || fail "(2) c-s1 not run once: $(cat "$STANDIN_LOG")"
grep -q "a-s1: finished earlier, skipped" run2.out || fail "(2) no 'skipped' line for a-s1"
steps=$(grep -o '"step":[0-9]*' $R/b-s1/metrics.jsonl | cut -d: -f2 | tr '\n' ' ')
[ "$steps" = "1 2 3 4 5 " ] || fail "(2) b-s1 metrics steps: expected 1..5 once, got $steps"
for f in results.csv results.md report.md index.html; do
    [ -s $WORK/out/report/$f ] || fail "(2) report/$f missing"
done
rows=$(grep -c '^run,' $WORK/out/report/results.csv)
[ "$rows" = 3 ] || fail "(2) results.csv: expected 3 run rows, got $rows"
grep -q "Plots skipped: MOE_GNUPLOT=none" $WORK/out/report/report.md || fail "(2) report.md should say plots were skipped"
grep -q '"point": "b"' $R/b-s1/sweep-run.json || fail "(2) b-s1/sweep-run.json lacks its point"
say "(2) rerun: a-s1 kept, b-s1 resumed, c-s1 ran, report of 3 runs"

# (3) nothing left to do; a run finished by its metrics alone
rm $R/c-s1/DONE
n_before=$(wc -l <"$STANDIN_LOG")
"$MOE_BIN" sweep sweep.json >run3.out 2>&1 || fail "(3) expected exit 0, got $?: $(cat run3.out)"
[ "$(wc -l <"$STANDIN_LOG")" = "$n_before" ] || fail "(3) something was relaunched: $(tail -2 "$STANDIN_LOG")"
[ -f $R/c-s1/DONE ] || fail "(3) c-s1 (metrics at train.steps) did not get its DONE marker back"
say "(3) third run launched nothing"

# (4) a failing run
sed "s#$WORK/out#$WORK/out4#" sweep.json >sweep4.json
STANDIN_FAIL=a-s1 "$MOE_BIN" sweep sweep4.json >run4.out 2>&1
rc=$?
[ $rc = 1 ] || fail "(4) expected exit 1 with a failed run, got $rc: $(cat run4.out)"
grep -q "a-s1: FAILED (exit 1)" run4.out || fail "(4) the failure is not reported: $(cat run4.out)"
grep -q "fails on purpose" run4.out || fail "(4) the failed run's log tail is not shown"
[ -f $WORK/out4/runs/b-s1/DONE ] && [ -f $WORK/out4/runs/c-s1/DONE ] || fail "(4) the sweep did not continue after the failure"
[ -f $WORK/out4/runs/a-s1/DONE ] && fail "(4) the failed run has a DONE marker"
[ -s $WORK/out4/report/results.csv ] || fail "(4) no report after a failed run"
say "(4) failure reported, sweep continued, exit 1"
say "PASS"
