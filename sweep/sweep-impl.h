// sweep-impl.h: internals shared by the sweep and report files of the sweep room
// (sweep.c: reading a sweep file into runs; cmd-sweep.c: launching them; report*.c: tables,
// plots, report.md and index.html). The user-facing contract is docs/sweeps.md.
#ifndef MOE_SWEEP_IMPL_H
#define MOE_SWEEP_IMPL_H

#include "config.h"
#include "params.h"
#include "sweep.h"

// ---------------------------------------------------------------- sweeps (sweep/sweep.c)

typedef struct {
    char *name;       // "<point>-s<seed>": the run directory's name
    char *point;      // the point's name ("dense", "experts-8" for generated ones)
    const char *kind; // "point", "dense" or "experts"
    uint64_t seed;
    char **sets; // (n_sets) every override in order: sweep set, point set, generated, seed
    int n_sets;
    char *dir;        // OUT/runs/<name>
    Moe__Config *cfg; // the effective, validated config (out_dir set to dir)
    char note[256];   // what was generated and why (dense d_ff, experts-axis shape), or ""
    int64_t active, total, flops; // moe_params_count of cfg: active and total params, FLOPs/token
    char *init_ck; // train.init_from's checkpoint "DIR (step N, manifest CRC32C 0x…)"; NULL: none
} moe_sweep_run;

typedef struct {
    Moe__SweepConfig *sc;
    char *path;      // the sweep file
    char *base_path; // the base config to pass to moe train (OUT/base.json for an inline base)
    char *base_tmp;  // a temporary copy of an inline base used for validation (removed by free)
    char *out_dir;   // sweep output directory (sc->out_dir or --out)
    int np;
    moe_sweep_run *runs; // (n_runs) points first, then dense, then the experts axis; × seeds
    int n_runs;
} moe_sweep;

// Reads and checks a sweep file: unknown fields, an empty grid, bad or duplicate point names, a
// base that cannot be read, and every run's overrides (each run's config is loaded and validated
// for launch.np ranks). MOE_EINVAL with a message naming the file, the point and the field.
// out_override (may be NULL) replaces sc->out_dir. Free with moe_sweep_free.
moe_status moe_sweep_load(const char *path, const char *out_override, moe_sweep **out);
void moe_sweep_free(moe_sweep *s);
// A stale run: compares the effective config recorded in r->dir/sweep-run.json (what the run
// was launched with) with r->cfg (what the sweep would launch now), field by field, out_dir
// excepted; an absent field counts as its schema default. With train.init_from, the checkpoint it
// resolved to and its manifest's CRC32C (init_checkpoint) are compared too: the same path naming
// other weights (a run directory whose LATEST moved, a checkpoint rewritten) is a change.
// Returns how many fields differ and writes one "    path: old -> new" line each into diff
// (cap >= 2 bytes; lines that do not fit end "    ... and N more"). A missing or unreadable
// record counts as changed (returns 1, diff says so).
int moe_sweep_run_changed(const moe_sweep_run *r, char *diff, size_t cap);
// The same comparison of two configs a (old) and b (new): the number of differing fields, one
// "    path: a's value -> b's value" line each in diff (out_dir excepted; absent = default).
int moe_config_diff(const Moe__Config *a, const Moe__Config *b, char *diff, size_t cap);

// ---------------------------------------------------------------- reports (sweep/report*.c)

typedef struct {
    char *dir;   // the run directory as given
    char *name;  // its name (sweep run name or the directory's base name)
    char *file;  // a file-name-safe unique stem for data and plot files
    char *point; // the group a mean ± std row is made over
    char *kind;  // "point", "dense", "experts" or "run" (not from a sweep)
    uint64_t seed;
    int has_seed;
    Moe__Config *cfg; // from sweep-run.json or the newest checkpoint's manifest; may be NULL
    Moe__MetricsRecord **rec; // (n) one per step, sorted by step (the last line of a step wins)
    int64_t n;
    int n_layers, n_experts; // from the records (0: no MoE layer)
    // summary (docs/sweeps.md defines every figure); NAN when not available
    double train_loss, val_loss, tok_s, mm_end, mm_avg, cv_end, drop_frac, entropy;
    int64_t dead, active, total;
    int64_t steps; // last step recorded
    double *share; // (n_layers, n_experts) token share per layer over the last 10% of steps
    double *curve; // (3, n) moving means of train CE, max/mean, drop fraction (plots only)
} moe_report_run;

// Aggregate of the runs of one point (mean and sample std over seeds).
enum { MOE_REPORT_NCOLS = 10 };
typedef struct {
    char *point;
    const char *kind;
    int n;                         // runs
    int first;                     // index of its first run
    int n_experts;                 // of its first run
    double mean[MOE_REPORT_NCOLS]; // train, val, tok/s, mm_end, mm_avg, cv, drop, dead, entropy, E
    double std[MOE_REPORT_NCOLS];
    int64_t active, total;
} moe_report_point;

typedef struct {
    const char *title;
    const char *out_dir;
    moe_report_run *runs;
    int n_runs;
    moe_report_point *points;
    int n_points;
    int plots_ok;         // gnuplot ran and produced the images
    char plots_note[512]; // why plots were skipped or failed ("" when ok)
    int have_experts_plot;
} moe_report;

// Column accessor of a run's summary in the order of moe_report_point.mean.
double moe_report_col(const moe_report_run *r, int col);

// Reads run directories (report-run.c: metrics.jsonl required; sweep-run.json or a checkpoint for
// the config).
moe_status moe_report_load_run(const char *dir, moe_report_run *r);
void moe_report_run_free(moe_report_run *r);

// Writes the plots (report-plot.c): sets rep->plots_ok / plots_note. Never fails the report:
// without gnuplot, or when it fails, the note says why.
void moe_report_plots(moe_report *rep);

// report.md and index.html (report-doc.c).
moe_status moe_report_write_docs(const moe_report *rep);

#endif
