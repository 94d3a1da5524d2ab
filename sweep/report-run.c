// report-run.c: one training run as `moe report` sees it — its metrics.jsonl (one
// moe.MetricsRecord a line, the last line of a step wins), its config (sweep-run.json or the newest
// checkpoint's manifest) and the summary figures of docs/sweeps.md. Trade-off: every record is
// kept in memory (a few hundred bytes a step), which keeps "the last 10% of steps" simple.
#include "checkpoint.h"
#include "sweep-impl.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

// ---------------------------------------------------------------- loading a run

typedef struct {
    Moe__MetricsRecord *r;
    int64_t line;
} moe_rec_line;

static int moe_rec_cmp(const void *a, const void *b) {
    const moe_rec_line *x = a, *y = b;
    if (x->r->step != y->r->step) return x->r->step < y->r->step ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

// Reads dir/metrics.jsonl: one record a line; a line that does not parse (a run killed mid-write)
// is skipped with a warning. Steps repeated after a resume: the last line wins.
static moe_status moe_report_read_metrics(const char *dir, moe_report_run *r) {
    char path[MOE_PATH_MAX];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *text;
    size_t len;
    moe_status st = moe_read_file(path, 0, &text, &len);
    if (st) { // a missing metrics file is bad input (exit 2), not an I/O failure
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", moe_last_error());
        return moe_set_error(MOE_EINVAL, "%s; is %s a run directory (moe train's out_dir)?", msg,
                             dir);
    }
    size_t cap = 256, n = 0;
    moe_rec_line *v = moe_xcalloc(cap, sizeof *v);
    int64_t lineno = 0, bad = 0;
    for (char *p = text, *nl; p < text + len; p = nl + 1) {
        nl = strchr(p, '\n');
        if (!nl) nl = text + len;
        *nl = 0;
        lineno++;
        if (!p[strspn(p, " \t\r")]) continue;
        char origin[MOE_PATH_MAX + 24]; // path:line
        snprintf(origin, sizeof origin, "%s:%lld", path, (long long)lineno);
        ProtobufCMessage *m = NULL;
        if (moe_json_parse_message(origin, p, strlen(p), &moe__metrics_record__descriptor, &m) ||
            !((Moe__MetricsRecord *)m)->has_step) {
            if (bad++ == 0)
                fprintf(stderr, "moe report: warning: %s: line skipped (%s)\n", origin,
                        m ? "no step" : moe_last_error());
            if (m) protobuf_c_message_free_unpacked(m, NULL);
            continue;
        }
        if (n == cap) {
            cap *= 2;
            moe_rec_line *w = realloc(v, cap * sizeof *v);
            MOE_ASSERT(w);
            v = w;
        }
        v[n].r = (Moe__MetricsRecord *)m;
        v[n].line = lineno;
        n++;
    }
    free(text);
    if (bad > 1)
        fprintf(stderr, "moe report: warning: %s: %lld lines skipped\n", path, (long long)bad);
    if (n == 0) {
        free(v);
        return moe_set_error(MOE_EINVAL, "%s: no metrics records; did the run start?", path);
    }
    qsort(v, n, sizeof *v, moe_rec_cmp);
    r->rec = moe_xcalloc(n, sizeof *r->rec);
    r->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && v[i + 1].r->step == v[i].r->step) {
            protobuf_c_message_free_unpacked(&v[i].r->base, NULL);
            continue;
        }
        r->rec[r->n++] = v[i].r;
    }
    free(v);
    return MOE_OK;
}

static void moe_report_read_identity(const char *dir, moe_report_run *r) {
    char path[MOE_PATH_MAX];
    snprintf(path, sizeof path, "%s/sweep-run.json", dir);
    char *text;
    size_t len;
    if (moe_file_exists(path) && moe_read_file(path, 0, &text, &len) == MOE_OK) {
        ProtobufCMessage *m = NULL;
        if (moe_json_parse_message(path, text, len, &moe__sweep_run__descriptor, &m) == MOE_OK) {
            Moe__SweepRun *sr = (Moe__SweepRun *)m;
            if (sr->run && sr->run[0]) r->name = moe_xstrdup(sr->run);
            if (sr->point && sr->point[0]) r->point = moe_xstrdup(sr->point);
            if (sr->kind && sr->kind[0]) r->kind = moe_xstrdup(sr->kind);
            if (sr->has_seed) r->seed = sr->seed, r->has_seed = 1;
            r->cfg = sr->config;
            sr->config = NULL;
            protobuf_c_message_free_unpacked(m, NULL);
        } else {
            fprintf(stderr, "moe report: warning: %s\n", moe_last_error());
        }
        free(text);
    }
    if (!r->cfg) { // a run not made by a sweep: the newest checkpoint knows its config
        char ck[MOE_PATH_MAX];
        Moe__CheckpointManifest *man = NULL;
        if (moe_ckpt_resolve(dir, ck, sizeof ck) == MOE_OK &&
            moe_ckpt_read_manifest(ck, &man) == MOE_OK) {
            r->cfg = man->config;
            man->config = NULL;
            protobuf_c_message_free_unpacked(&man->base, NULL);
        }
        moe_clear_error();
    }
    if (!r->name) { // the directory's base name
        char tmp[MOE_PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s", dir);
        size_t l = strlen(tmp);
        while (l > 1 && tmp[l - 1] == '/') tmp[--l] = 0;
        const char *b = strrchr(tmp, '/');
        r->name = moe_xstrdup(b ? b + 1 : tmp);
    }
    if (!r->point) { // "<point>-s<seed>" as the sweep names runs; otherwise the run is its own point
        r->point = moe_xstrdup(r->name);
        char *s = strrchr(r->point, '-');
        if (s && s[1] == 's' && s[2] && strspn(s + 2, "0123456789") == strlen(s + 2) &&
            s != r->point) {
            if (!r->has_seed) r->seed = strtoull(s + 2, NULL, 10), r->has_seed = 1;
            *s = 0;
        }
    }
    if (!r->kind)
        r->kind =
            moe_xstrdup(r->cfg && r->cfg->model && r->cfg->model->n_experts == 0 ? "dense" : "run");
}

// The figures of docs/sweeps.md. "tail" = the last 10% of the recorded steps (at least one).
static void moe_report_summarize(moe_report_run *r) {
    const int64_t n = r->n, tail = n / 10 > 0 ? (n + 9) / 10 : 1, t0 = n - tail;
    r->steps = r->rec[n - 1]->step;
    int L = 0, E = 0;
    for (int64_t i = 0; i < n; i++) {
        if ((int)r->rec[i]->n_layers > L) L = (int)r->rec[i]->n_layers;
        for (size_t l = 0; l < r->rec[i]->n_layers; l++)
            if ((int)r->rec[i]->layers[l]->n_tokens_per_expert > E)
                E = (int)r->rec[i]->layers[l]->n_tokens_per_expert;
    }
    r->n_layers = L, r->n_experts = E;
    double tl = 0, tok = 0, mm_end = 0, mm_all = 0, cv = 0, ent = 0, dropped = 0, selected = 0;
    int64_t ntok = 0, nmm_end = 0, nmm_all = 0;
    r->val_loss = NAN;
    double *tailtok = L && E ? moe_xcalloc((size_t)L * E, sizeof(double)) : NULL;
    for (int64_t i = 0; i < n; i++) {
        const Moe__MetricsRecord *m = r->rec[i];
        if (m->has_val_loss) r->val_loss = m->val_loss;
        if (i >= t0) tl += m->loss - m->aux_loss - m->z_loss;
        if ((i > 0 || n == 1) && m->has_tokens_per_s) tok += m->tokens_per_s, ntok++;
        if (m->n_layers == 0) continue;
        double mm = 0, c = 0, h = 0;
        for (size_t l = 0; l < m->n_layers; l++) {
            const Moe__LayerLoad *ll = m->layers[l];
            mm += ll->max_over_mean, c += ll->cv, h += ll->entropy;
            double kept = 0;
            for (size_t e = 0; e < ll->n_tokens_per_expert; e++) {
                kept += (double)ll->tokens_per_expert[e];
                if (i >= t0) tailtok[l * E + e] += (double)ll->tokens_per_expert[e];
            }
            dropped += (double)ll->dropped;
            selected += kept + (double)ll->dropped;
        }
        const double nl = (double)m->n_layers;
        mm_all += mm / nl, nmm_all++;
        if (i >= t0) mm_end += mm / nl, cv += c / nl, ent += h / nl, nmm_end++;
    }
    r->train_loss = tl / (double)tail;
    r->tok_s = ntok ? tok / (double)ntok : NAN;
    r->mm_end = nmm_end ? mm_end / (double)nmm_end : NAN;
    r->cv_end = nmm_end ? cv / (double)nmm_end : NAN;
    r->entropy = nmm_end ? ent / (double)nmm_end : NAN;
    r->mm_avg = nmm_all ? mm_all / (double)nmm_all : NAN;
    r->drop_frac = selected > 0 ? dropped / selected : (L ? 0 : NAN);
    r->dead = L ? 0 : -1;
    if (tailtok) {
        r->share = moe_xcalloc((size_t)L * E, sizeof(double));
        for (int l = 0; l < L; l++) {
            double s = 0;
            for (int e = 0; e < E; e++) s += tailtok[l * E + e];
            for (int e = 0; e < E; e++) {
                if (tailtok[l * E + e] == 0) r->dead++;
                r->share[l * E + e] = s > 0 ? tailtok[l * E + e] / s : 0;
            }
        }
        free(tailtok);
    }
    r->active = r->total = -1;
    moe_params_report pr;
    if (r->cfg && moe_params_count(r->cfg, 0, 0, &pr) == MOE_OK) {
        r->active = pr.active, r->total = pr.total;
    } else if (r->rec[n - 1]->has_active_params) {
        r->active = r->rec[n - 1]->active_params; // measured by the trainer; total unknown
    }
    moe_clear_error();
}

moe_status moe_report_load_run(const char *dir, moe_report_run *r) {
    memset(r, 0, sizeof *r);
    r->dir = moe_xstrdup(dir);
    moe_status st = moe_dir_check("run directory", dir);
    if (!st) st = moe_report_read_metrics(dir, r);
    if (st) return st;
    moe_report_read_identity(dir, r);
    moe_report_summarize(r);
    return MOE_OK;
}

void moe_report_run_free(moe_report_run *r) {
    for (int64_t i = 0; i < r->n; i++) protobuf_c_message_free_unpacked(&r->rec[i]->base, NULL);
    free(r->rec);
    if (r->cfg) moe_config_free(r->cfg);
    free(r->dir);
    free(r->name);
    free(r->file);
    free(r->point);
    free(r->kind);
    free(r->share);
    free(r->curve);
    memset(r, 0, sizeof *r);
}

double moe_report_col(const moe_report_run *r, int col) {
    switch (col) {
    case 0: return r->train_loss;
    case 1: return r->val_loss;
    case 2: return r->tok_s;
    case 3: return r->mm_end;
    case 4: return r->mm_avg;
    case 5: return r->cv_end;
    case 6: return r->drop_frac;
    case 7: return r->dead < 0 ? NAN : (double)r->dead;
    case 8: return r->entropy;
    case 9: return (double)r->n_experts;
    default: MOE_ASSERT(0 && "column out of range");
    }
    return NAN;
}
