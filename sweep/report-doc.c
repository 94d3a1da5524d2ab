// report-doc.c: the report's documents — results.md (tables), report.md (summary of findings,
// tables, images) and index.html (the same content as a static page, images by relative path).
// Tables are built once as cells and emitted as Markdown or HTML. The findings are computed from
// the numbers each time; nothing in them is fixed text about what a strategy "should" do.
#include "experts.h"
#include "routes.h"
#include "sweep-impl.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

enum { MOE_CELL = 64, MOE_TCOLS = 16 };
typedef struct {
    int rows, cols;
    char head[MOE_TCOLS][MOE_CELL];
    char (*cell)[MOE_TCOLS][MOE_CELL]; // (rows)
} moe_table;

static void moe_fmt_n(char *b, size_t cap, double v, const char *f) {
    if (isnan(v))
        snprintf(b, cap, "—");
    else
        snprintf(b, cap, f, v);
}
static void moe_fmt(char *b, double v, const char *f) { moe_fmt_n(b, MOE_CELL, v, f); }
static void moe_fmt_pm(char *b, double m, double s, const char *f) {
    char x[MOE_CELL / 2 - 4], y[MOE_CELL / 2 - 4];
    moe_fmt_n(x, sizeof x, m, f);
    moe_fmt_n(y, sizeof y, s, f);
    if (isnan(m))
        snprintf(b, MOE_CELL, "—");
    else
        snprintf(b, MOE_CELL, "%s ± %s", x, y);
}
static void moe_fmt_params(char *b, int64_t v) {
    if (v < 0)
        snprintf(b, MOE_CELL, "—");
    else if (v >= 1000000000)
        snprintf(b, MOE_CELL, "%.2fB", v / 1e9);
    else if (v >= 1000000)
        snprintf(b, MOE_CELL, "%.2fM", v / 1e6);
    else if (v >= 1000)
        snprintf(b, MOE_CELL, "%.1fk", v / 1e3);
    else
        snprintf(b, MOE_CELL, "%lld", (long long)v);
}

// Column formats in moe_report_col order.
static const char *const moe_col_fmt[MOE_REPORT_NCOLS] = {"%.4f", "%.4f",   "%.0f", "%.3f", "%.3f",
                                                          "%.3f", "%.2f%%", "%.0f", "%.3f", "%.0f"};
static double moe_col_scale(int c) { return c == 6 ? 100.0 : 1.0; } // drop fraction in percent

static void moe_table_runs(const moe_report *rep, moe_table *t) {
    static const char *h[] = {
        "run",      "point",        "seed",           "steps",          "train loss",
        "val loss", "tokens/s",     "layer-mean max/mean (end)", "layer-mean max/mean (avg)", "CV",
        "dropped",  "dead experts", "router entropy", "active params",  "total params"};
    t->cols = 15;
    for (int c = 0; c < t->cols; c++) snprintf(t->head[c], MOE_CELL, "%s", h[c]);
    t->rows = rep->n_runs;
    t->cell = moe_xcalloc((size_t)t->rows, sizeof *t->cell);
    for (int i = 0; i < rep->n_runs; i++) {
        const moe_report_run *r = &rep->runs[i];
        char(*row)[MOE_CELL] = t->cell[i];
        snprintf(row[0], MOE_CELL, "%s", r->name);
        snprintf(row[1], MOE_CELL, "%s", r->point);
        if (r->has_seed)
            snprintf(row[2], MOE_CELL, "%llu", (unsigned long long)r->seed);
        else
            snprintf(row[2], MOE_CELL, "—");
        snprintf(row[3], MOE_CELL, "%lld", (long long)r->steps);
        for (int c = 0; c < 9; c++)
            moe_fmt(row[4 + c], moe_report_col(r, c) * moe_col_scale(c), moe_col_fmt[c]);
        moe_fmt_params(row[13], r->active);
        moe_fmt_params(row[14], r->total);
    }
}

static void moe_table_points(const moe_report *rep, moe_table *t) {
    static const char *h[] = {"point",    "runs",           "train loss",     "val loss",
                              "tokens/s", "layer-mean max/mean (end)", "layer-mean max/mean (avg)", "CV",
                              "dropped",  "dead experts",   "router entropy"};
    t->cols = 11;
    for (int c = 0; c < t->cols; c++) snprintf(t->head[c], MOE_CELL, "%s", h[c]);
    t->rows = rep->n_points;
    t->cell = moe_xcalloc((size_t)t->rows, sizeof *t->cell);
    for (int p = 0; p < rep->n_points; p++) {
        const moe_report_point *P = &rep->points[p];
        char(*row)[MOE_CELL] = t->cell[p];
        snprintf(row[0], MOE_CELL, "%s", P->point);
        snprintf(row[1], MOE_CELL, "%d", P->n);
        for (int c = 0; c < 9; c++) {
            const double k = moe_col_scale(c);
            const char *f = c == 7 ? "%.1f" : moe_col_fmt[c]; // dead experts: a mean
            if (P->n > 1)
                moe_fmt_pm(row[2 + c], P->mean[c] * k, P->std[c] * k, f);
            else
                moe_fmt(row[2 + c], P->mean[c] * k, f);
        }
    }
}

static void moe_html_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
    }
}

static void moe_table_emit(FILE *f, const moe_table *t, int html) {
    if (html) {
        fputs("<table>\n<tr>", f);
        for (int c = 0; c < t->cols; c++) {
            fputs("<th>", f);
            moe_html_text(f, t->head[c]);
            fputs("</th>", f);
        }
        fputs("</tr>\n", f);
        for (int r = 0; r < t->rows; r++) {
            fputs("<tr>", f);
            for (int c = 0; c < t->cols; c++) {
                fputs(c < 2 ? "<td>" : "<td class=n>", f);
                moe_html_text(f, t->cell[r][c]);
                fputs("</td>", f);
            }
            fputs("</tr>\n", f);
        }
        fputs("</table>\n", f);
        return;
    }
    fputc('|', f);
    for (int c = 0; c < t->cols; c++) fprintf(f, " %s |", t->head[c]);
    fputs("\n|", f);
    for (int c = 0; c < t->cols; c++) fputs(c < 2 ? "---|" : "---:|", f);
    fputc('\n', f);
    for (int r = 0; r < t->rows; r++) {
        fputc('|', f);
        for (int c = 0; c < t->cols; c++) fprintf(f, " %s |", t->cell[r][c]);
        fputc('\n', f);
    }
}

// ---------------------------------------------------------------- findings

typedef struct {
    char (*line)[1024];
    int n, cap;
} moe_lines;

static void moe_add(moe_lines *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void moe_add(moe_lines *L, const char *fmt, ...) {
    if (L->n == L->cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->line[L->n++], 1024, fmt, ap);
    va_end(ap);
}

// 1 if the point's strategy keeps every expert's load equal by construction (expert choice).
static int moe_point_balanced(const moe_report *rep, const moe_report_point *P) {
    const Moe__Config *c = rep->runs[P->first].cfg;
    moe_route_strategy s;
    if (!c || !c->router || moe_layer_strategy_from_config(c->router, &s) != MOE_OK) return 0;
    return moe_router_strategy_traits(s).balanced;
}

static void moe_findings(const moe_report *rep, moe_lines *L) {
    const moe_report_point *P = rep->points;
    const int np = rep->n_points;
    int use_val = 1, any = 0;
    for (int p = 0; p < np; p++) {
        if (isnan(P[p].mean[1])) use_val = 0;
        any = 1;
    }
    if (!any) return;
    const int lc = use_val ? 1 : 0;
    const char *lname = use_val ? "validation loss"
                                : "final train loss (no validation loss in "
                                  "every run)";
    // balance, over points with at least two experts
    int best = -1, worst = -1;
    for (int p = 0; p < np; p++) {
        if (P[p].n_experts < 2 || isnan(P[p].mean[3])) continue;
        if (best < 0 || P[p].mean[3] < P[best].mean[3]) best = p;
        if (worst < 0 || P[p].mean[3] > P[worst].mean[3]) worst = p;
    }
    if (best >= 0 && best == worst)
        moe_add(L,
                "**Balance** (max/mean expert load over the last 10%% of steps, mean over MoE "
                "layers; 1 is perfect): **%s** %.3f.",
                P[best].point, P[best].mean[3]);
    else if (best >= 0)
        moe_add(L,
                "**Balance** (max/mean expert load over the last 10%% of steps, mean over MoE "
                "layers; 1 is perfect): best **%s** %.3f%s; least balanced **%s** %.3f.",
                P[best].point, P[best].mean[3],
                moe_point_balanced(rep, &P[best]) ? " (expert choice: balanced by construction)"
                                                  : "",
                P[worst].point, P[worst].mean[3]);
    // loss
    int lb = -1, l2 = -1;
    for (int p = 0; p < np; p++) {
        if (isnan(P[p].mean[lc])) continue;
        if (lb < 0 || P[p].mean[lc] < P[lb].mean[lc])
            l2 = lb, lb = p;
        else if (l2 < 0 || P[p].mean[lc] < P[l2].mean[lc])
            l2 = p;
    }
    if (lb >= 0) {
        char tail[400] = "";
        if (l2 >= 0) {
            double gap = P[l2].mean[lc] - P[lb].mean[lc];
            double noise = fmax(P[lb].n > 1 ? P[lb].std[lc] : 0, P[l2].n > 1 ? P[l2].std[lc] : 0);
            snprintf(tail, sizeof tail, "; runner-up **%s** %.4f (+%.4f%s)", P[l2].point,
                     P[l2].mean[lc], gap,
                     noise > 0
                         ? (gap < noise ? ", within one seed std" : ", more than one seed std")
                         : (P[lb].n > 1 ? "" : ", single seed: no noise estimate"));
        }
        moe_add(L, "**%s %s**: **%s** %.4f%s.", l2 >= 0 ? "Best" : "Final", lname, P[lb].point,
                P[lb].mean[lc], tail);
    }
    // MoE vs the dense baseline
    for (int d = 0; d < np; d++) {
        if (strcmp(P[d].kind, "dense") || isnan(P[d].mean[lc])) continue;
        int n_moe = 0, beat = 0, bm = -1;
        for (int p = 0; p < np; p++) {
            if (P[p].n_experts < 1 || isnan(P[p].mean[lc])) continue;
            n_moe++;
            if (P[p].mean[lc] < P[d].mean[lc]) beat++;
            if (bm < 0 || P[p].mean[lc] < P[bm].mean[lc]) bm = p;
        }
        // paired by seed: runs of the best point against the dense run of the same seed
        int pairs = 0, lower = 0;
        for (int i = 0; bm >= 0 && i < rep->n_runs; i++) {
            const moe_report_run *r = &rep->runs[i];
            if (strcmp(r->point, P[bm].point) || !r->has_seed) continue;
            for (int j = 0; j < rep->n_runs; j++) {
                const moe_report_run *q = &rep->runs[j];
                if (strcmp(q->point, P[d].point) || !q->has_seed || q->seed != r->seed) continue;
                const double a = moe_report_col(r, lc), b = moe_report_col(q, lc);
                if (isnan(a) || isnan(b)) continue;
                pairs++, lower += a < b;
            }
        }
        char paired[160] = "";
        if (pairs > 1)
            snprintf(paired, sizeof paired, " Paired by seed, %s was lower in %d of %d seeds.",
                     P[bm].point, lower, pairs);
        if (bm >= 0)
            moe_add(L,
                    "**MoE vs the FLOP-matched dense baseline** (%s %.4f): %d of %d MoE points "
                    "reached a lower %s; the best, **%s**, is %s by %.4f (%.1f%%).%s",
                    P[d].point, P[d].mean[lc], beat, n_moe,
                    use_val ? "validation loss" : "train loss", P[bm].point,
                    P[bm].mean[lc] < P[d].mean[lc] ? "lower" : "higher",
                    fabs(P[bm].mean[lc] - P[d].mean[lc]),
                    100.0 * fabs(P[bm].mean[lc] - P[d].mean[lc]) / P[d].mean[lc], paired);
        break;
    }
    // experts axis
    int xs[64], nx = 0;
    for (int p = 0; p < np && nx < 64; p++)
        if (!strcmp(P[p].kind, "experts") && !isnan(P[p].mean[lc])) xs[nx++] = p;
    for (int i = 1; i < nx; i++) // insertion sort by E
        for (int j = i; j > 0 && P[xs[j]].n_experts < P[xs[j - 1]].n_experts; j--) {
            int t = xs[j];
            xs[j] = xs[j - 1], xs[j - 1] = t;
        }
    if (nx >= 2) {
        char s[700] = "";
        moe_list ls;
        moe_list_start(&ls, s, sizeof s, ", ");
        int mono = 1;
        for (int i = 0; i < nx; i++) {
            moe_list_add(&ls, "E=%d: %.4f", P[xs[i]].n_experts, P[xs[i]].mean[lc]);
            if (i && P[xs[i]].mean[lc] >= P[xs[i - 1]].mean[lc]) mono = 0;
        }
        moe_list_end(&ls);
        const double d = P[xs[nx - 1]].mean[lc] - P[xs[0]].mean[lc];
        moe_add(L,
                "**Experts axis** (same active parameters per token): %s — %s; E=%d vs E=%d: "
                "%+.4f.",
                s,
                mono ? "the loss falls with every step up in experts"
                     : "the loss does not fall monotonically with more experts",
                P[xs[nx - 1]].n_experts, P[xs[0]].n_experts, d);
    }
    // drops and dead experts
    char drops[900] = "", dead[900] = "";
    moe_list ldrops, ldead;
    moe_list_start(&ldrops, drops, sizeof drops, ", ");
    moe_list_start(&ldead, dead, sizeof dead, ", ");
    for (int p = 0; p < np; p++) {
        if (P[p].n_experts < 1) continue;
        if (P[p].mean[6] > 0) moe_list_add(&ldrops, "%s %.2f%%", P[p].point, 100 * P[p].mean[6]);
        if (P[p].mean[7] > 0) moe_list_add(&ldead, "%s %.1f", P[p].point, P[p].mean[7]);
    }
    moe_list_end(&ldrops);
    moe_list_end(&ldead);
    int n_moe_points = 0;
    for (int p = 0; p < np; p++) n_moe_points += P[p].n_experts >= 1;
    if (n_moe_points) {
        if (drops[0])
            moe_add(L,
                    "**Dropped token-expert pairs** (share of routed pairs over the run): %s; "
                    "every other MoE point dropped none.",
                    drops);
        else
            moe_add(L, "**No MoE point dropped tokens**.");
        if (dead[0])
            moe_add(L,
                    "**Dead experts** (no token in the last 10%% of steps, summed over "
                    "layers): %s.",
                    dead);
        else
            moe_add(L, "**No dead experts** in any run.");
    }
    int fast = -1, slow = -1;
    for (int p = 0; p < np; p++) {
        if (isnan(P[p].mean[2])) continue;
        if (fast < 0 || P[p].mean[2] > P[fast].mean[2]) fast = p;
        if (slow < 0 || P[p].mean[2] < P[slow].mean[2]) slow = p;
    }
    if (fast >= 0 && fast != slow)
        moe_add(L,
                "**Throughput**: fastest **%s** %.0f tokens/s, slowest **%s** %.0f tokens/s "
                "(runs share the machine; compare with care).",
                P[fast].point, P[fast].mean[2], P[slow].point, P[slow].mean[2]);
}

// ---------------------------------------------------------------- the documents

static const char moe_defs[] =
    "Definitions (docs/sweeps.md): *train loss* is the LM cross-entropy (router losses excluded) "
    "averaged over the last 10% of steps; *val loss* is the last validation loss; *tokens/s* is "
    "the mean over steps after the first; *layer-mean max/mean* is the largest expert load over "
    "the mean load, averaged over MoE layers, over the last 10% of steps (*end*) and over the "
    "whole run (*avg*) (moe train's progress line shows the worst layer's instead); *CV* is the load's coefficient of variation at the end; *dropped* is the share of "
    "routed token-expert pairs dropped by capacity over the run; *dead experts* have no token in "
    "the last 10% of steps (summed over layers); *router entropy* is the mean per-token entropy "
    "of the routing distribution (nats) at the end; *active params* are the parameters one token "
    "uses.";

static void moe_images(const moe_report *rep, FILE *f, int html) {
    static const char *main_png[][2] = {
        {"loss-points.png", "Loss curves, mean over seeds per point"},
        {"loss.png", "Loss curves of every run"},
        {"load-points.png", "Expert load max/mean, mean over seeds per point"},
        {"load.png", "Expert load max/mean of every run"},
        {"drops.png", "Dropped fraction over steps"},
        {"experts.png", "Loss vs number of experts"}};
    int moe_runs = 0, multi = 0;
    for (int r = 0; r < rep->n_runs; r++) moe_runs += rep->runs[r].n_layers > 0;
    for (int p = 0; p < rep->n_points; p++) multi |= rep->points[p].n > 1;
    for (int i = 0; i < 6; i++) {
        if ((i == 0 || i == 2) && !multi) continue;
        if ((i == 2 || i == 3 || i == 4) && !moe_runs) continue;
        if (i == 5 && !rep->have_experts_plot) continue;
        if (html)
            fprintf(f, "<h3>%s</h3>\n<img src=\"%s\" alt=\"%s\">\n", main_png[i][1], main_png[i][0],
                    main_png[i][1]);
        else
            fprintf(f, "### %s\n\n![%s](%s)\n\n", main_png[i][1], main_png[i][1], main_png[i][0]);
    }
    if (html)
        fputs("<h3>Expert load heatmaps (layer × expert, share of token-expert pairs)</h3>\n<div class=grid>\n",
              f);
    else
        fputs("### Expert load heatmaps (layer × expert, share of token-expert pairs, last 10% of steps)\n\n",
              f);
    for (int r = 0; r < rep->n_runs; r++) {
        if (!rep->runs[r].share) continue;
        if (html) {
            fprintf(f, "<figure><img src=\"heatmap-%s.png\" alt=\"", rep->runs[r].file);
            moe_html_text(f, rep->runs[r].name);
            fputs("\"></figure>\n", f);
        } else {
            fprintf(f, "![%s](heatmap-%s.png)\n", rep->runs[r].name, rep->runs[r].file);
        }
    }
    fputs(html ? "</div>\n" : "\n", f);
}

// Each run's config against the first run's (moe_config_diff), beside the tables: what was
// changed between the runs compared.
static void moe_config_diffs(const moe_report *rep, FILE *f, int html) {
    if (rep->n_runs < 2) return;
    const moe_report_run *a = &rep->runs[0];
    fputs(html ? "<h2>Config differences</h2>\n" : "\n## Config differences\n\n", f);
    char *diff = moe_xcalloc(8192, 1);
    for (int i = 1; i < rep->n_runs; i++) {
        const moe_report_run *b = &rep->runs[i];
        int n = a->cfg && b->cfg ? moe_config_diff(a->cfg, b->cfg, diff, 8192) : -1;
        if (html) {
            fputs("<p><b>", f);
            moe_html_text(f, b->name);
            fputs("</b> against <b>", f);
            moe_html_text(f, a->name);
            fputs(n < 0 ? "</b>: a config is not recorded (no sweep-run.json or checkpoint)</p>\n"
                        : n ? "</b> (first value: ":"</b>: the same config</p>\n", f);
            if (n > 0) {
                moe_html_text(f, a->name);
                fputs(")</p>\n<pre>", f);
                moe_html_text(f, diff);
                fputs("</pre>\n", f);
            }
        } else if (n < 0) {
            fprintf(f, "- `%s` against `%s`: a config is not recorded (no sweep-run.json or "
                       "checkpoint)\n", b->name, a->name);
        } else if (n == 0) {
            fprintf(f, "- `%s` against `%s`: the same config\n", b->name, a->name);
        } else {
            fprintf(f, "- `%s` against `%s` (%d fields; `%s`'s value first):\n\n```\n%s```\n",
                    b->name, a->name, n, a->name, diff);
        }
    }
    free(diff);
}

static moe_status moe_open(const moe_report *rep, const char *name, FILE **f) {
    char path[MOE_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", rep->out_dir, name);
    *f = fopen(path, "w");
    if (!*f) return moe_set_error(MOE_EIO, "%s: cannot write (%s)", path, strerror(errno));
    return MOE_OK;
}
static moe_status moe_close(const moe_report *rep, const char *name, FILE *f) {
    if (fclose(f) != 0)
        return moe_set_error(MOE_EIO, "%s/%s: write failed (%s)", rep->out_dir, name,
                             strerror(errno));
    return MOE_OK;
}

moe_status moe_report_write_docs(const moe_report *rep) {
    moe_table runs = {0}, points = {0};
    moe_table_runs(rep, &runs);
    moe_table_points(rep, &points);
    int multi = 0;
    for (int p = 0; p < rep->n_points; p++) multi |= rep->points[p].n > 1;
    moe_lines L = {.cap = 16};
    L.line = moe_xcalloc((size_t)L.cap, sizeof *L.line);
    moe_findings(rep, &L);
    FILE *f;
    moe_status st;
    // results.md: the tables alone
    if ((st = moe_open(rep, "results.md", &f))) goto out;
    fprintf(f, "# %s: results\n\n", rep->title);
    moe_table_emit(f, &runs, 0);
    if (multi) {
        fputs("\nMean ± sample standard deviation over seeds, per point:\n\n", f);
        moe_table_emit(f, &points, 0);
    }
    fprintf(f, "\n%s\n", moe_defs);
    if ((st = moe_close(rep, "results.md", f))) goto out;
    // report.md
    if ((st = moe_open(rep, "report.md", &f))) goto out;
    fprintf(f, "# %s\n\n%d runs, %d points. Generated by `moe report`.\n\n## Findings\n\n",
            rep->title, rep->n_runs, rep->n_points);
    for (int i = 0; i < L.n; i++) fprintf(f, "- %s\n", L.line[i]);
    fputs("\n## Results\n\n", f);
    moe_table_emit(f, &runs, 0);
    if (multi) {
        fputs("\nMean ± sample standard deviation over seeds, per point:\n\n", f);
        moe_table_emit(f, &points, 0);
    }
    moe_config_diffs(rep, f, 0);
    fprintf(f, "\n%s Tables as CSV: [results.csv](results.csv).\n\n## Plots\n\n", moe_defs);
    if (rep->plots_ok)
        moe_images(rep, f, 0);
    else
        fprintf(f,
                "Plots skipped: %s. The tables above are complete; run `moe report` again "
                "with gnuplot on PATH to get the images.\n",
                rep->plots_note);
    for (int i = 0, any = 0; i < rep->n_runs; i++) // routing traces (routes/routes.h)
        any |= moe_routes_report_run(f, rep->runs[i].dir, rep->runs[i].name, !any);
    if ((st = moe_close(rep, "report.md", f))) goto out;
    // index.html
    if ((st = moe_open(rep, "index.html", &f))) goto out;
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>", f);
    moe_html_text(f, rep->title);
    fputs("</title>\n<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 "
          "1em}"
          "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
          "th,td{border:1px solid #ccc;padding:3px 7px}th{background:#f3f3f3}td.n{text-align:right}"
          "img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:8px}"
          ".grid figure{margin:0;width:32%}p.defs{font-size:12px;color:#555}</style>\n"
          "</head><body>\n<h1>",
          f);
    moe_html_text(f, rep->title);
    fprintf(f,
            "</h1>\n<p>%d runs, %d points. Generated by <code>moe report</code>.</p>\n"
            "<h2>Findings</h2>\n<ul>\n",
            rep->n_runs, rep->n_points);
    for (int i = 0; i < L.n; i++) { // **x** → <b>x</b>
        fputs("<li>", f);
        int bold = 0;
        for (const char *s = L.line[i]; *s; s++) {
            if (s[0] == '*' && s[1] == '*') {
                fputs(bold ? "</b>" : "<b>", f);
                bold = !bold;
                s++;
            } else {
                char c[2] = {*s, 0};
                moe_html_text(f, c);
            }
        }
        fputs("</li>\n", f);
    }
    fputs("</ul>\n<h2>Results</h2>\n", f);
    moe_table_emit(f, &runs, 1);
    if (multi) {
        fputs("<p>Mean ± sample standard deviation over seeds, per point:</p>\n", f);
        moe_table_emit(f, &points, 1);
    }
    moe_config_diffs(rep, f, 1);
    fputs("<p class=defs>", f);
    moe_html_text(f, moe_defs);
    fputs(" Tables as CSV: <a href=\"results.csv\">results.csv</a>.</p>\n<h2>Plots</h2>\n", f);
    if (rep->plots_ok)
        moe_images(rep, f, 1);
    else {
        fputs("<p>Plots skipped: ", f);
        moe_html_text(f, rep->plots_note);
        fputs(".</p>\n", f);
    }
    for (int i = 0, any = 0; i < rep->n_runs; i++) // routing traces (routes/routes.h)
        any |= moe_routes_report_run_html(f, rep->runs[i].dir, rep->runs[i].name, !any);
    fputs("</body></html>\n", f);
    st = moe_close(rep, "index.html", f);
out:
    free(runs.cell);
    free(points.cell);
    free(L.line);
    return st;
}
