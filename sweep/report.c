// report.c: `moe report` — loads run directories (report-run.c), groups runs of one point over
// seeds, writes results.csv and hands over to the plots (report-plot.c) and the documents
// (report-doc.c).
#include "sweep-impl.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

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

moe_status moe_report_write(const char *const *dirs, int n, const char *out_dir, const char *title,
                            FILE *log) {
    if (n < 1) return moe_set_error(MOE_EUSAGE, "moe report: no run directories given");
    moe_report rep = {.title = title ? title : "moe report", .out_dir = out_dir};
    rep.runs = moe_xcalloc((size_t)n, sizeof *rep.runs);
    moe_status st = moe_dir_check("the report directory", out_dir);
    for (int i = 0; i < n && !st; i++) {
        st = moe_report_load_run(dirs[i], &rep.runs[rep.n_runs]);
        rep.n_runs++;
    }
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
