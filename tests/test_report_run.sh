#!/bin/bash
# test_report_run.sh: `moe report` end to end on real runs (issue 17). One run: every curve's PNG
# exists and is a PNG, report.md shows each and the run's config, data/run.dat has a row per
# step; MOE_GNUPLOT=none still writes report.md saying why; a report directory in use is refused
# without --force; a directory without metrics is refused. Two runs (A B): report.md and
# index.html name the differing config fields with both values; the load plots start at 0 (the
# perfect-balance line is inside the plot), dropless runs are labelled "no drops (dropless)" and
# a run with capacity drops is not, the heatmaps say token-expert pairs.
set -u
: "${MOE_BIN:?set MOE_BIN to the moe binary}"
WORK=$(mktemp -d /tmp/test_report_run.XXXXXX)
say() { echo "[test_report_run] $*"; }
fail() {
    echo "[test_report_run] FAIL: $*" >&2
    echo "[test_report_run] files kept in $WORK" >&2
    exit 1
}
trap 'rc=$?; [ $rc = 0 ] && rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1
is_png() { [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; }
cat >tiny.json <<JSON
{"name": "rep", "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 96, "n_experts": 4,
  "top_k": 2, "expert_d_ff": 40, "first_dense_layers": 1},
 "train": {"global_batch": 4, "seq_len": 16, "steps": 8, "warmup_steps": 1, "log_interval": 4,
  "eval_interval": 4, "eval_batches": 1, "checkpoint_interval": 8}}
JSON
"$MOE_BIN" train tiny.json --set out_dir="$WORK/a" >a.out 2>&1 || fail "train a: $(cat a.out)"
"$MOE_BIN" train tiny.json --set out_dir="$WORK/b" --set router.aux_loss_coef=0.001 \
    --set router.capacity_factor=1.0 >b.out 2>&1 || fail "train b: $(cat b.out)"

# ---- one run
"$MOE_BIN" report a >r1.out 2>&1 || fail "report a: exit $?: $(cat r1.out)"
R=a/report
for p in loss lr grad-norm aux-z throughput norms; do
    is_png $R/$p.png || fail "one run: $p.png missing, empty or not a PNG"
    grep -qF "]($p.png)" $R/report.md || fail "report.md does not show $p.png"
done
[ "$(grep -vc '^#' $R/data/run.dat)" = 8 ] || fail "data/run.dat: expected 8 steps: $(cat $R/data/run.dat)"
grep -q '"aux_loss_coef"' $R/report.md || fail "report.md lacks the run's config"
grep -q "last validation loss" $R/report.md || fail "report.md lacks the summary"
"$MOE_BIN" report a >r2.out 2>&1
[ $? = 2 ] && grep -q -- "--force" r2.out || fail "report into a used directory: $(cat r2.out)"
"$MOE_BIN" report a --force >r3.out 2>&1 || fail "report --force: $(cat r3.out)"
MOE_GNUPLOT=none "$MOE_BIN" report a --out nogp >r4.out 2>&1 || fail "MOE_GNUPLOT=none: $(cat r4.out)"
grep -q "No plots: MOE_GNUPLOT=none" nogp/report.md || fail "no-gnuplot report.md: $(cat nogp/report.md)"
ls nogp/*.png >/dev/null 2>&1 && fail "PNGs written with MOE_GNUPLOT=none"
mkdir empty
"$MOE_BIN" report empty >r5.out 2>&1
[ $? = 2 ] && grep -q "metrics.jsonl" r5.out || fail "a directory without metrics: $(cat r5.out)"
[ -e empty/report/report.md ] && fail "report.md written for a directory without metrics"
say "one run: 6 PNGs, report.md, refusals"

# ---- two runs
"$MOE_BIN" report a b --out ab >r6.out 2>&1 || fail "report a b: $(cat r6.out)"
for f in ab/report.md ab/index.html; do
    arrow='->'
    [ "$f" = ab/index.html ] && arrow='-&gt;'
    grep -qF "router.aux_loss_coef: 0.01 $arrow 0.001" $f || fail "$f: no aux_loss_coef difference"
    grep -qF "router.capacity_factor: 0.0 $arrow 1.0" $f || fail "$f: no capacity_factor difference"
done
grep -qF "out_dir" ab/report.md && fail "report.md lists out_dir as a difference"
awk '/set output .load.png/,/^plot/' ab/plots.gp | grep -q "set yrange \[0:\*\]" ||
    fail "load.png does not start at 0: $(awk '/load.png/,/^plot/' ab/plots.gp)"
grep -q "t 'a: no drops (dropless)'" ab/plots.gp || fail "the dropless run is not labelled"
grep -q "t 'b: no drops" ab/plots.gp && fail "the capacity run (drops) is labelled dropless"
grep -q "share of token-expert pairs per expert" ab/plots.gp || fail "heatmap title"
for p in loss load drops heatmap-a heatmap-b; do is_png ab/$p.png || fail "ab/$p.png"; done
# two dropless runs: the plot itself says so
"$MOE_BIN" report a a/../a --out aa >r7.out 2>&1 || fail "report a a: $(cat r7.out)"
grep -q "set label 1 'no drops (dropless)'" aa/plots.gp || fail "dropless drops plot has no label"
grep -q "the same config" aa/report.md || fail "identical configs not said to be the same"
say "two runs: config difference, plot labels"
