// report.c: `moe report` — loads run directories (report-run.c), groups runs of one point over
// seeds, writes results.csv and hands over to the plots (report-plot.c) and the documents
// (report-doc.c).
#include "sweep-impl.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---------------------------------------------------------------- points and results.csv

static void moe_report_group(moe_report *rep) {
    rep->points = moe_xcalloc((size_t)rep->n_runs, sizeof *rep->points);
    for (int i = 0; i < rep->n_runs; i++) {
        const moe_report_run *r = &rep->runs[i];
        int p = 0;
        while (p < rep->n_points && strcmp(rep->points[p].point, r->point)) p++;
        moe_report_point *P = &rep->points[p];
        if (p == rep->n_points) {
            rep->n_points++;
            P->point = moe_xstrdup(r->point);
            P->kind = r->kind;
            P->first = i;
            P->n_experts = r->n_experts;
            P->active = r->active, P->total = r->total;
        }
        P->n++;
    }
    for (int p = 0; p < rep->n_points; p++) {
        moe_report_point *P = &rep->points[p];
        for (int c = 0; c < MOE_REPORT_NCOLS; c++) {
            double s = 0, ss = 0;
            int k = 0;
            for (int i = 0; i < rep->n_runs; i++) {
                if (strcmp(rep->runs[i].point, P->point)) continue;
                double v = moe_report_col(&rep->runs[i], c);
                if (isnan(v)) continue;
                s += v, k++;
            }
            P->mean[c] = k ? s / k : NAN;
            for (int i = 0; i < rep->n_runs; i++) {
                if (strcmp(rep->runs[i].point, P->point)) continue;
                double v = moe_report_col(&rep->runs[i], c);
                if (!isnan(v)) ss += (v - P->mean[c]) * (v - P->mean[c]);
            }
            P->std[c] = k > 1 ? sqrt(ss / (k - 1)) : (k ? 0 : NAN);
        }
    }
}

static void moe_csv_num(FILE *f, double v) {
    if (isnan(v))
        fputs(",", f);
    else
        fprintf(f, ",%.9g", v);
}
static void moe_csv_int(FILE *f, int64_t v) {
    if (v < 0)
        fputs(",", f);
    else
        fprintf(f, ",%lld", (long long)v);
}

// A text field, quoted (RFC 4180) when it holds a comma, quote or line break.
static void moe_csv_text(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static const char moe_csv_header[] =
    "row,run,point,seed,steps,train_loss,val_loss,tokens_per_s,max_over_mean_end,"
    "max_over_mean_avg,cv_end,drop_fraction,dead_experts,router_entropy,active_params,"
    "total_params,n_experts\n";

static moe_status moe_report_write_csv(const moe_report *rep) {
    char path[MOE_PATH_MAX];
    snprintf(path, sizeof path, "%s/results.csv", rep->out_dir);
    FILE *f = fopen(path, "w");
    if (!f) return moe_set_error(MOE_EIO, "%s: cannot write (%s)", path, strerror(errno));
    fputs(moe_csv_header, f);
    for (int i = 0; i < rep->n_runs; i++) {
        const moe_report_run *r = &rep->runs[i];
        fputs("run,", f);
        moe_csv_text(f, r->name);
        fputc(',', f);
        moe_csv_text(f, r->point);
        fputc(',', f);
        if (r->has_seed) fprintf(f, "%llu", (unsigned long long)r->seed);
        fprintf(f, ",%lld", (long long)r->steps);
        for (int c = 0; c < 7; c++) moe_csv_num(f, moe_report_col(r, c));
        moe_csv_int(f, r->dead);
        moe_csv_num(f, r->entropy);
        moe_csv_int(f, r->active);
        moe_csv_int(f, r->total);
        fprintf(f, ",%d\n", r->n_experts);
    }
    for (int p = 0; p < rep->n_points; p++) {
        const moe_report_point *P = &rep->points[p];
        if (P->n < 2) continue;
        for (int k = 0; k < 2; k++) {
            const double *v = k ? P->std : P->mean;
            fprintf(f, "%s,", k ? "std" : "mean");
            moe_csv_text(f, P->point);
            fputc(',', f);
            moe_csv_text(f, P->point);
            fprintf(f, ",,%lld", (long long)rep->runs[P->first].steps);
            for (int c = 0; c < 9; c++) moe_csv_num(f, v[c]);
            if (k)
                fputs(",0,0,0\n", f);
            else {
                moe_csv_int(f, P->active);
                moe_csv_int(f, P->total);
                fprintf(f, ",%d\n", P->n_experts);
            }
        }
    }
    if (fclose(f) != 0)
        return moe_set_error(MOE_EIO, "%s: write failed (%s)", path, strerror(errno));
    return MOE_OK;
}

// File-name-safe stems, unique within the report.
static void moe_report_stems(moe_report *rep) {
    for (int i = 0; i < rep->n_runs; i++) {
        moe_report_run *r = &rep->runs[i];
        char s[200];
        size_t k = 0;
        for (const char *p = r->name; *p && k < 120; p++)
            s[k++] = (strchr("._-", *p) || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                      (*p >= 'A' && *p <= 'Z'))
                         ? *p
                         : '_';
        s[k] = 0;
        if (!k || s[0] == '.') s[0] = '_', s[k ? k : 1] = 0;
        for (int j = 0, dup = 1; j < i; j++)
            if (!strcmp(rep->runs[j].file, s)) {
                snprintf(s + strlen(s), sizeof s - strlen(s), "-%d", ++dup);
                j = -1;
            }
        r->file = moe_xstrdup(s);
    }
}

// ---------------------------------------------------------------- an earlier report

static int moe_ends_with(const char *s, const char *tail) {
    const size_t a = strlen(s), b = strlen(tail);
    return a >= b && !strcmp(s + a - b, tail);
}

// A file an earlier report wrote: in out_dir (sub = 0) or in out_dir/data (sub = 1).
static int moe_report_owns(const char *name, int sub) {
    static const char *const top[] = {"results.csv", "results.md", "report.md", "index.html"};
    if (sub) return moe_ends_with(name, ".dat") || !strcmp(name, "gnuplot.log");
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (!strcmp(name, top[i])) return 1;
    return moe_ends_with(name, ".png") || moe_ends_with(name, ".gp");
}

// Not empty: refused unless force; with force, the earlier report's files are removed (and data/
// when that leaves it empty), so no stale image or table survives next to the new ones.
static moe_status moe_report_prepare_dir(const char *out_dir, int force) {
    DIR *d = opendir(out_dir);
    if (!d) return MOE_OK; // absent: created later (any other problem shows at the first write)
    int any = 0;
    char p[MOE_PATH_MAX];
    moe_status st = MOE_OK;
    for (struct dirent *e; !st && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        any = 1;
        if (!force) break;
        if (!strcmp(e->d_name, "data")) {
            if ((st = moe_path_fmt(p, "the report directory", "%s/data", out_dir))) break;
            DIR *dd = opendir(p);
            for (struct dirent *f; dd && (f = readdir(dd));) {
                char q[MOE_PATH_MAX];
                if (moe_report_owns(f->d_name, 1) &&
                    !moe_path_fmt(q, "the report directory", "%s/%s", p, f->d_name) &&
                    unlink(q) != 0)
                    st = moe_set_error(MOE_EIO, "%s: cannot remove (%s)", q, strerror(errno));
            }
            if (dd) closedir(dd);
            rmdir(p); // only when empty: files the report does not know stay
        } else if (moe_report_owns(e->d_name, 0)) {
            if (!(st = moe_path_fmt(p, "the report directory", "%s/%s", out_dir, e->d_name)) &&
                unlink(p) != 0)
                st = moe_set_error(MOE_EIO, "%s: cannot remove (%s)", p, strerror(errno));
        }
    }
    closedir(d);
    if (!st && any && !force)
        st = moe_set_error(MOE_EUSAGE,
                           "%s exists and is not empty (an earlier report?); choose another "
                           "--out, or pass --force to replace the earlier report (its "
                           "results.csv, results.md, report.md, index.html, PNGs, plots.gp and "
                           "data/ files are removed first; other files are left)",
                           out_dir);
    return st;
}

moe_status moe_report_write(const char *const *dirs, int n, const char *out_dir, const char *title,
                            int force, FILE *log) {
    if (n < 1) return moe_set_error(MOE_EUSAGE, "moe report: no run directories given");
    moe_report rep = {.title = title ? title : "moe report", .out_dir = out_dir};
    rep.runs = moe_xcalloc((size_t)n, sizeof *rep.runs);
    moe_status st = moe_dir_check("the report directory", out_dir);
    for (int i = 0; i < n && !st; i++) {
        st = moe_report_load_run(dirs[i], &rep.runs[rep.n_runs]);
        rep.n_runs++;
    }
    if (!st) st = moe_report_prepare_dir(out_dir, force); // after the runs load: refused early
    if (!st && moe_mkdir_p(out_dir) != 0)
        st = moe_set_error(MOE_EIO, "%s: cannot create the report directory (%s)", out_dir,
                           strerror(errno));
    if (!st) {
        moe_report_stems(&rep);
        moe_report_group(&rep);
        st = moe_report_write_csv(&rep);
    }
    if (!st) moe_report_plots(&rep);
    if (!st) st = moe_report_write_docs(&rep);
    if (!st && log) {
        fprintf(log, "report: %s/report.md, %s/index.html, %s/results.csv (%d runs, %d points)\n",
                out_dir, out_dir, out_dir, rep.n_runs, rep.n_points);
        if (!rep.plots_ok) fprintf(log, "report: plots skipped: %s\n", rep.plots_note);
    }
    for (int i = 0; i < rep.n_runs; i++) moe_report_run_free(&rep.runs[i]);
    for (int p = 0; p < rep.n_points; p++) free(rep.points[p].point);
    free(rep.runs);
    free(rep.points);
    return st;
}
