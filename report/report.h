// report.h: the manual of the one-run report — `moe report RUN` with a single run directory
// (report/run-report.c reads and writes, report/run-plot.c draws). Every curve a run already
// records in RUN/metrics.jsonl is plotted against steps with gnuplot: loss (with its cross-entropy
// part) and validation loss, learning rate, gradient norm, aux and z loss, tokens/s with the
// exchange share of the step, and per parameter group the weight, gradient and update norms;
// report.md shows them with the run's summary and config. Comparing runs (two or more
// directories, or a sweep) is sweep/sweep.h's report.
// Trade-off: gnuplot is a program run once per report, not a library; without it (not on PATH,
// or MOE_GNUPLOT=none) report.md is still written and says why there are no images.
#ifndef MOE_REPORT_H
#define MOE_REPORT_H

#include "moe-common.h"

#include <stdio.h>

// Writes out_dir/report.md, out_dir/*.png (loss, lr, grad-norm, aux-z, throughput, norms) and
// their data (out_dir/data/*.dat, out_dir/plots.gp) for the run directory `run`. title may be
// NULL. An out_dir that exists and is not empty is refused (MOE_EUSAGE, naming --force) unless
// force: then the files an earlier one-run report wrote are replaced. MOE_EINVAL: no metrics in
// run. Prints where it wrote to log (may be NULL).
moe_status moe_run_report_write(const char *run, const char *out_dir, const char *title, int force,
                                FILE *log);

#endif
