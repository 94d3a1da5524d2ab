// report-impl.h: what the one-run report's files share with each other only (run-report.c reads
// the run and writes report.md; run-plot.c writes the data files and draws them).
#ifndef MOE_REPORT_IMPL_H
#define MOE_REPORT_IMPL_H

#include "moe.pb-c.h"
#include "report.h"

typedef struct {
    const char *dir;
    Moe__MetricsRecord **rec; // (n) sorted by step, one per step
    int64_t n;
    int64_t skipped;  // lines of metrics.jsonl that did not parse
    Moe__Config *cfg; // the newest checkpoint's config; NULL without a checkpoint
} moe_rr;

typedef struct {
    int ok;         // every PNG drawn and checked
    char note[MOE_PATH_MAX + 512]; // why not, when !ok
} moe_rr_plots;

// out/data/run.dat (step, loss, cross-entropy, val loss, lr, grad norm, aux, z, tokens/s,
// exchange share) and out/data/groups.dat (step, then weight, gradient and update norm of every
// group of the last record). MOE_EIO naming the file.
moe_status moe_rr_write_data(const moe_rr *r, const char *out);
// out/plots.gp run by gnuplot (MOE_GNUPLOT: another program, or none) in out; every PNG checked.
// Never fails the report: pl->note says why there are no plots.
void moe_rr_draw(const moe_rr *r, const char *out, moe_rr_plots *pl);

#endif
