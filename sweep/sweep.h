// sweep.h: the manual of the balancing-experiment room — `moe sweep` runs routing strategies side
// by side (sweep/cmd-sweep.c, sweep/sweep.c) and `moe report` turns training runs into tables,
// plots, report.md and index.html (sweep/report*.c). The contract is docs/sweeps.md; internals
// are sweep/sweep-impl.h.
#ifndef MOE_SWEEP_H
#define MOE_SWEEP_H

#include <stdio.h>

#include "moe-common.h"

int moe_cmd_sweep(int argc, char **argv);  // `moe sweep` (sweep/cmd-sweep.c)
int moe_cmd_report(int argc, char **argv); // `moe report` (sweep/cmd-sweep.c)

// The whole report over `dirs` into out_dir (created): results.csv, results.md, plots, report.md,
// index.html. title may be NULL. Prints where it wrote to `log` (may be NULL). An out_dir that
// exists and is not empty is refused (MOE_EUSAGE, naming it and --force) unless force: then the
// files an earlier report wrote (results.csv, results.md, report.md, index.html, *.png, *.gp,
// data/*.dat, data/gnuplot.log) are removed first; other files are left.
moe_status moe_report_write(const char *const *dirs, int n, const char *out_dir, const char *title,
                            int force, FILE *log);

#endif
