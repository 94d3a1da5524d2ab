// run-report.c: `moe report RUN` for one run (report.h) — reads RUN/metrics.jsonl (the last
// line of a step wins, as after a resume) and the newest checkpoint's config, writes the data
// files, has run-plot.c draw them, and writes report.md (to a temporary name, then renamed: a
// reader never sees half of it). Every record is kept in memory: a few hundred bytes a step.
#include "report-impl.h"
#include "routes.h"

#include "checkpoint.h"
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---------------------------------------------------------------- reading the run

static int moe_rr_cmp(const void *a, const void *b) {
    const Moe__MetricsRecord *x = *(Moe__MetricsRecord *const *)a;
    const Moe__MetricsRecord *y = *(Moe__MetricsRecord *const *)b;
    return (x->step > y->step) - (x->step < y->step);
}

// One record per line; lines that do not parse are skipped (counted in r->skipped).
static moe_status moe_rr_parse(moe_rr *r, const char *path, char *text, size_t len) {
    size_t cap = 256;
    r->rec = moe_xcalloc(cap, sizeof *r->rec);
    int64_t lineno = 0;
    for (char *p = text, *nl; p < text + len; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl) nl = text + len;
        *nl = 0;
        lineno++;
        if (!p[strspn(p, " \t\r")]) continue;
        char origin[MOE_PATH_MAX + 24];
        snprintf(origin, sizeof origin, "%s:%lld", path, (long long)lineno);
        ProtobufCMessage *m = NULL;
        if (moe_json_parse_message(origin, p, strlen(p), &moe__metrics_record__descriptor, &m) ||
            !((Moe__MetricsRecord *)m)->has_step) {
            if (m) protobuf_c_message_free_unpacked(m, NULL);
            r->skipped++;
            continue;
        }
        if ((size_t)r->n == cap) {
            cap *= 2;
            Moe__MetricsRecord **w = realloc(r->rec, cap * sizeof *w);
            MOE_ASSERT(w);
            r->rec = w;
        }
        r->rec[r->n++] = (Moe__MetricsRecord *)m;
    }
    moe_clear_error();
    return MOE_OK;
}

// Sorted by step, stable on file order, then only the last record of each step kept.
static void moe_rr_dedupe(moe_rr *r) {
    // stable: insertion order breaks ties (qsort is not stable), so sort (step, index) pairs
    int64_t *idx = moe_xcalloc((size_t)r->n, sizeof *idx);
    for (int64_t i = 0; i < r->n; i++) idx[i] = i;
    for (int64_t i = 1; i < r->n; i++) { // insertion sort by step: records are nearly sorted
        const int64_t k = idx[i];
        int64_t j = i - 1;
        while (j >= 0 && moe_rr_cmp(&r->rec[idx[j]], &r->rec[k]) > 0) idx[j + 1] = idx[j], j--;
        idx[j + 1] = k;
    }
    Moe__MetricsRecord **out = moe_xcalloc((size_t)r->n, sizeof *out);
    int64_t n = 0;
    for (int64_t i = 0; i < r->n; i++) {
        Moe__MetricsRecord *m = r->rec[idx[i]];
        if (n && out[n - 1]->step == m->step) {
            protobuf_c_message_free_unpacked(&out[n - 1]->base, NULL);
            out[n - 1] = m;
        } else {
            out[n++] = m;
        }
    }
    free(idx);
    free(r->rec);
    r->rec = out;
    r->n = n;
}

static moe_status moe_rr_load(const char *dir, moe_rr *r) {
    memset(r, 0, sizeof *r);
    r->dir = dir;
    char path[MOE_PATH_MAX], *text = NULL;
    size_t len = 0;
    moe_status st = moe_path_fmt(path, "run directory", "%s/metrics.jsonl", dir);
    if (st) return st;
    if (moe_read_file(path, 0, &text, &len))
        return moe_set_error(MOE_EINVAL,
                             "%s: cannot read it (%s); is %s a run directory (moe "
                             "train's out_dir)?",
                             path, strerror(errno), dir);
    st = moe_rr_parse(r, path, text, len);
    free(text);
    if (st) return st;
    if (r->n == 0)
        return moe_set_error(MOE_EINVAL, "%s: no metrics records; did the run start?", path);
    moe_rr_dedupe(r);
    char ck[MOE_PATH_MAX];
    Moe__CheckpointManifest *man = NULL; // the config: the newest checkpoint's, when there is one
    if (moe_ckpt_resolve(dir, ck, sizeof ck) == MOE_OK &&
        moe_ckpt_read_manifest(ck, &man) == MOE_OK && man->config)
        r->cfg = moe_config_copy(man->config);
    if (man) protobuf_c_message_free_unpacked(&man->base, NULL);
    moe_clear_error();
    return MOE_OK;
}

static void moe_rr_free(moe_rr *r) {
    for (int64_t i = 0; i < r->n; i++) protobuf_c_message_free_unpacked(&r->rec[i]->base, NULL);
    free(r->rec);
    moe_config_free(r->cfg);
}

// ---------------------------------------------------------------- the output directory

// The files a one-run report writes (an earlier one's are replaced under --force).
static const char *const moe_rr_files[] = {"report.md",       "plots.gp",        "loss.png",
                                           "lr.png",          "grad-norm.png",   "aux-z.png",
                                           "throughput.png",  "norms.png",       "data/run.dat",
                                           "data/groups.dat", "data/gnuplot.log"};

static moe_status moe_rr_prepare(const char *out, int force) {
    moe_status st = moe_dir_check("the report directory", out);
    if (st) return st;
    DIR *d = opendir(out);
    int used = 0;
    for (struct dirent *e; d && (e = readdir(d));) used |= e->d_name[0] != '.';
    if (d) closedir(d);
    if (used && !force)
        return moe_set_error(MOE_EUSAGE,
                             "%s exists and is not empty: pass --force to replace an "
                             "earlier report there, or --out another directory",
                             out);
    for (size_t i = 0; used && i < sizeof moe_rr_files / sizeof *moe_rr_files; i++) {
        char p[MOE_PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", out, moe_rr_files[i]);
        unlink(p);
    }
    char data[MOE_PATH_MAX];
    snprintf(data, sizeof data, "%s/data", out);
    if (moe_mkdir_p(data) != 0)
        return moe_set_error(MOE_EIO, "%s: cannot create it (%s)", data, strerror(errno));
    return MOE_OK;
}

// ---------------------------------------------------------------- report.md

static double moe_rr_exchange_share(const Moe__MetricsRecord *m) {
    return m->step_seconds > 0 ? (m->exchange_seconds + m->allreduce_seconds) / m->step_seconds
                               : NAN;
}

static void moe_rr_summary(FILE *f, const moe_rr *r) {
    const Moe__MetricsRecord *last = r->rec[r->n - 1];
    double tok = 0, ex = 0, val = NAN;
    int64_t k = 0, val_step = 0;
    for (int64_t i = 1; i < r->n; i++) { // the first step pays the warmup: left out
        tok += r->rec[i]->tokens_per_s, ex += moe_rr_exchange_share(r->rec[i]), k++;
    }
    for (int64_t i = 0; i < r->n; i++)
        if (r->rec[i]->has_val_loss) val = r->rec[i]->val_loss, val_step = r->rec[i]->step;
    fprintf(f, "| figure | value |\n|---|---:|\n");
    fprintf(f, "| steps recorded | %lld (last step %lld) |\n", (long long)r->n,
            (long long)last->step);
    fprintf(f, "| loss at the last step | %.4f |\n", last->loss);
    fprintf(f, "| cross-entropy at the last step | %.4f |\n",
            last->loss - last->aux_loss - last->z_loss);
    if (!isnan(val))
        fprintf(f, "| last validation loss | %.4f (step %lld) |\n", val, (long long)val_step);
    if (k) {
        fprintf(f, "| tokens/s (mean after step 1) | %.0f |\n", tok / (double)k);
        fprintf(f, "| exchange share of the step (mean after step 1) | %.1f %% |\n",
                100 * ex / (double)k);
    }
    fprintf(f, "| skipped (non-finite) steps | %lld |\n", (long long)last->skipped_steps);
    if (r->skipped)
        fprintf(f, "| metrics lines that did not parse | %lld |\n", (long long)r->skipped);
}

static void moe_rr_config(FILE *f, const moe_rr *r) {
    fprintf(f, "\n## Config\n\n");
    if (!r->cfg) {
        fprintf(f, "No checkpoint in the run directory: its config is not recorded there.\n");
        return;
    }
    fprintf(f,
            "From the newest checkpoint's manifest (every field, defaults included):\n\n```json\n");
    moe_json_write_message(f, &r->cfg->base, MOE_JSON_DEFAULTS);
    fprintf(f, "\n```\n");
}

static const char *const moe_rr_figs[][2] = {
    {"loss.png", "Loss (cross-entropy + aux + z), its cross-entropy part, and the validation loss"},
    {"lr.png", "Learning rate"},
    {"grad-norm.png", "Global gradient norm before clipping"},
    {"aux-z.png", "Router aux loss and z loss (summed over MoE layers)"},
    {"throughput.png", "Tokens/s and the exchange share of the step"},
    {"norms.png", "Per parameter group: weight norm, gradient norm, update norm |Δw|"},
};

static moe_status moe_rr_write_md(const moe_rr *r, const char *out, const char *title,
                                  const moe_rr_plots *pl) {
    char path[MOE_PATH_MAX], tmp[MOE_PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/report.md", out);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return moe_set_error(MOE_EIO, "%s: cannot write (%s)", tmp, strerror(errno));
    fprintf(f, "# %s\n\nRun `%s` (`moe report`, one run; docs/sweeps.md \"One run\").\n\n",
            title ? title : "moe report", r->dir);
    moe_rr_summary(f, r);
    fprintf(f, "\n## Curves\n\n");
    if (!pl->ok)
        fprintf(f, "No plots: %s. The data are in `data/run.dat` and `data/groups.dat`.\n",
                pl->note);
    for (size_t i = 0; pl->ok && i < sizeof moe_rr_figs / sizeof *moe_rr_figs; i++)
        fprintf(f, "### %s\n\n![%s](%s)\n\n", moe_rr_figs[i][1], moe_rr_figs[i][1],
                moe_rr_figs[i][0]);
    // The run's routing traces, when it has any (routes/routes.h: the section moe report gives
    // each run of several).
    const char *name =
        strrchr(r->dir, '/') && strrchr(r->dir, '/')[1] ? strrchr(r->dir, '/') + 1 : r->dir;
    moe_routes_report_run(f, r->dir, name, 1);
    moe_rr_config(f, r);
    const int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return moe_set_error(MOE_EIO, "%s: cannot write (%s)", path, strerror(errno));
    }
    return MOE_OK;
}

// ---------------------------------------------------------------- the report

moe_status moe_run_report_write(const char *run, const char *out_dir, const char *title, int force,
                                FILE *log) {
    moe_rr r;
    moe_status st = moe_rr_load(run, &r);
    if (!st) st = moe_rr_prepare(out_dir, force);
    moe_rr_plots pl = {0};
    if (!st) st = moe_rr_write_data(&r, out_dir);
    if (!st) moe_rr_draw(&r, out_dir, &pl);
    if (!st) st = moe_rr_write_md(&r, out_dir, title, &pl);
    if (!st && log) {
        fprintf(log, "report: %s/report.md (run %s, %lld steps)\n", out_dir, run, (long long)r.n);
        if (!pl.ok) fprintf(log, "report: plots skipped: %s\n", pl.note);
    }
    moe_rr_free(&r);
    return st;
}
