// report-plot.c: the report's PNG plots — data files under OUT/data/ and one gnuplot script
// (OUT/plots.gp) run once with OUT as its working directory. Trade-off: gnuplot is a run-time
// program, not a library: without it (not on PATH, or MOE_GNUPLOT=none) the report is written
// without images and says why; pngcairo is used when this gnuplot has it, else the libgd png.
#include "sweep-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

// Moving mean over a centred window of w points of v (n), NAN entries skipped; out (n).
static void moe_smooth(const double *v, int64_t n, int64_t w, double *out) {
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        int64_t k = 0;
        for (int64_t j = i - w / 2; j <= i + w / 2; j++)
            if (j >= 0 && j < n && !isnan(v[j])) s += v[j], k++;
        out[i] = k ? s / (double)k : NAN;
    }
}

static void moe_dat(FILE *f, double v) {
    if (isnan(v))
        fputs(" ?", f);
    else
        fprintf(f, " %.7g", v);
}

// data/<stem>.dat: step, train CE, its moving mean, val loss, max/mean (layer mean), its moving
// mean, drop fraction, its moving mean. data/<stem>-share.dat: the (layers, experts) shares.
// Keeps the moving means in r->curve for the per-point plots.
static int moe_write_run_data(const moe_report *rep, moe_report_run *r) {
    const int64_t n = r->n, w = n / 50 > 1 ? n / 50 : 1;
    double *ce = moe_xcalloc((size_t)n * 3, sizeof(double));
    double *mm = ce + n, *dr = ce + 2 * n;
    free(r->curve);
    r->curve = moe_xcalloc((size_t)n * 3, sizeof(double));
    double *ce_s = r->curve, *mm_s = r->curve + n, *dr_s = r->curve + 2 * n;
    for (int64_t i = 0; i < n; i++) {
        const Moe__MetricsRecord *m = r->rec[i];
        ce[i] = m->loss - m->aux_loss - m->z_loss;
        mm[i] = dr[i] = NAN;
        if (m->n_layers) {
            double s = 0, d = 0, sel = 0;
            for (size_t l = 0; l < m->n_layers; l++) {
                s += m->layers[l]->max_over_mean;
                d += (double)m->layers[l]->dropped;
                sel += (double)m->layers[l]->dropped;
                for (size_t e = 0; e < m->layers[l]->n_tokens_per_expert; e++)
                    sel += (double)m->layers[l]->tokens_per_expert[e];
            }
            mm[i] = s / (double)m->n_layers;
            dr[i] = sel > 0 ? d / sel : 0;
        }
    }
    moe_smooth(ce, n, w, ce_s);
    moe_smooth(mm, n, w, mm_s);
    moe_smooth(dr, n, w, dr_s);
    char path[MOE_PATH_MAX];
    snprintf(path, sizeof path, "%s/data/%s.dat", rep->out_dir, r->file);
    FILE *f = fopen(path, "w");
    if (!f) {
        free(ce);
        return -1;
    }
    fprintf(f,
            "# step train_ce train_ce_smooth val_loss max_over_mean max_over_mean_smooth "
            "drop_fraction drop_fraction_smooth (moving mean over %lld steps)\n",
            (long long)w);
    for (int64_t i = 0; i < n; i++) {
        fprintf(f, "%lld", (long long)r->rec[i]->step);
        moe_dat(f, ce[i]);
        moe_dat(f, ce_s[i]);
        moe_dat(f, r->rec[i]->has_val_loss ? r->rec[i]->val_loss : NAN);
        moe_dat(f, mm[i]);
        moe_dat(f, mm_s[i]);
        moe_dat(f, dr[i]);
        moe_dat(f, dr_s[i]);
        fputc('\n', f);
    }
    free(ce);
    if (fclose(f) != 0) return -1;
    if (!r->share) return 0;
    snprintf(path, sizeof path, "%s/data/%s-share.dat", rep->out_dir, r->file);
    if (!(f = fopen(path, "w"))) return -1;
    fputs("# expert layer_index share (one cell per line: boxes draw any shape, 1 x E included)\n",
          f);
    for (int l = 0; l < r->n_layers; l++)
        for (int e = 0; e < r->n_experts; e++)
            fprintf(f, "%d %d %.6g\n", e, l, r->share[l * r->n_experts + e]);
    return fclose(f) != 0 ? -1 : 0;
}

// data/point-<p>.dat for a point with several runs: step, mean over its runs of the smoothed
// train CE, of the validation loss ('?' unless every run has it at that step), of the smoothed
// max/mean. Runs whose steps differ from the point's first run are left out of the mean.
static int moe_write_point_data(const moe_report *rep, int p) {
    const moe_report_point *P = &rep->points[p];
    const moe_report_run *r0 = &rep->runs[P->first];
    char path[MOE_PATH_MAX];
    snprintf(path, sizeof path, "%s/data/point-%d.dat", rep->out_dir, p);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "# step mean_train_ce_smooth mean_val_loss mean_max_over_mean_smooth (point %s)\n",
            P->point);
    for (int64_t i = 0; i < r0->n; i++) {
        double ce = 0, val = 0, mm = 0;
        int k = 0, kv = 0;
        for (int j = 0; j < rep->n_runs; j++) {
            const moe_report_run *r = &rep->runs[j];
            if (strcmp(r->point, P->point) || r->n != r0->n || r->rec[i]->step != r0->rec[i]->step)
                continue;
            ce += r->curve[i], mm += r->curve[r->n + i], k++;
            if (r->rec[i]->has_val_loss) val += r->rec[i]->val_loss, kv++;
        }
        fprintf(f, "%lld", (long long)r0->rec[i]->step);
        moe_dat(f, ce / k);
        moe_dat(f, kv == k ? val / kv : NAN);
        moe_dat(f, mm / k);
        fputc('\n', f);
    }
    return fclose(f) != 0 ? -1 : 0;
}

// Upper end of the loss axis: the highest smoothed train loss 10% into a run, so the first steps'
// drop from ln(V) does not flatten the part of the curves that differs between strategies.
static double moe_loss_ymax(const moe_report *rep) {
    double y = NAN;
    for (int i = 0; i < rep->n_runs; i++) {
        const moe_report_run *r = &rep->runs[i];
        if (!r->curve || r->n < 20) continue;
        const double v = r->curve[r->n / 10];
        if (isnan(y) || v > y) y = v;
    }
    return y;
}

static void moe_note(moe_report *rep, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void moe_note(moe_report *rep, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->plots_note, sizeof rep->plots_note, fmt, ap);
    va_end(ap);
}

static int moe_find_on_path(const char *prog, char *out, size_t cap) {
    if (strchr(prog, '/')) {
        snprintf(out, cap, "%s", prog);
        return access(prog, X_OK) == 0;
    }
    const char *p = getenv("PATH");
    if (!p) return 0;
    while (*p) {
        size_t l = strcspn(p, ":");
        snprintf(out, cap, "%.*s/%s", (int)l, p, prog);
        if (l && access(out, X_OK) == 0) return 1;
        p += l + (p[l] == ':');
    }
    return 0;
}

// A name made safe inside a gnuplot single-quoted string ('' is a quote) in a static buffer
// per slot (two slots, so two names can appear in one call).
static const char *moe_gq(const char *s, int slot) {
    static char buf[2][512];
    char *o = buf[slot & 1];
    size_t k = 0;
    for (; *s && k + 3 < sizeof buf[0]; s++) {
        if (*s == '\'') o[k++] = '\'';
        o[k++] = (*s == '\n' || *s == '\r') ? ' ' : *s;
    }
    o[k] = 0;
    return o;
}

static void moe_gp_common(FILE *g, const char *png, const char *title, int w, int h) {
    fprintf(g,
            "reset\nif (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
            "  set terminal pngcairo size %d,%d noenhanced font ',10'\n} else {\n"
            "  set terminal png size %d,%d noenhanced\n}\n"
            "set datafile missing '?'\nset output '%s'\nset title '%s'\nset grid\n",
            w, h, w, h, png, title);
}

// One line style per run: 8 colours, then dash types.
static void moe_gp_style(FILE *g, int i) { fprintf(g, "lc %d dt %d", i % 8 + 1, i / 8 + 1); }

// Writes plots.gp; returns the number of PNGs it will make, their names in `pngs`.
static int moe_write_script(moe_report *rep, FILE *g, char (*pngs)[256], int cap) {
    int np = 0, moe_runs = 0;
    for (int i = 0; i < rep->n_runs; i++) moe_runs += rep->runs[i].n_layers > 0;
    // loss curves
    moe_gp_common(g, "loss.png",
                  "Training loss (LM cross-entropy, moving mean) and validation "
                  "loss (points)",
                  1000, 560);
    const double ymax = moe_loss_ymax(rep);
    char yr[64] = "";
    if (!isnan(ymax)) snprintf(yr, sizeof yr, "set yrange [*:%.4g]\n", ymax);
    fprintf(g,
            "set key outside right top\nset xlabel 'step'\nset ylabel 'loss (nats/token)'\n%s"
            "plot",
            yr);
    for (int i = 0; i < rep->n_runs; i++) {
        const moe_report_run *r = &rep->runs[i];
        fprintf(g, "%s 'data/%s.dat' u 1:3 w l lw 1.5 ", i ? ", \\\n    " : "", r->file);
        moe_gp_style(g, i);
        fprintf(g, " t '%s', 'data/%s.dat' u 1:4 w p pt 7 ps 0.8 ", moe_gq(r->name, 0), r->file);
        moe_gp_style(g, i);
        fputs(" notitle", g);
    }
    fputc('\n', g);
    snprintf(pngs[np++], 256, "loss.png");
    int multi = 0;
    for (int p = 0; p < rep->n_points; p++) multi |= rep->points[p].n > 1;
    if (multi) { // the same, one curve per point: mean over its seeds
        moe_gp_common(g, "loss-points.png",
                      "Training loss (moving mean) and validation loss "
                      "(points), mean over seeds per point",
                      1000, 560);
        fprintf(g,
                "set key outside right top\nset xlabel 'step'\nset ylabel 'loss (nats/token)'"
                "\n%splot",
                yr);
        for (int p = 0; p < rep->n_points; p++) {
            fprintf(g, "%s 'data/point-%d.dat' u 1:2 w l lw 2 ", p ? ", \\\n    " : "", p);
            moe_gp_style(g, p);
            fprintf(g, " t '%s (%d)', 'data/point-%d.dat' u 1:3 w lp pt 7 ps 0.8 lw 0.5 ",
                    moe_gq(rep->points[p].point, 0), rep->points[p].n, p);
            moe_gp_style(g, p);
            fputs(" notitle", g);
        }
        fputc('\n', g);
        snprintf(pngs[np++], 256, "loss-points.png");
    }
    if (moe_runs && multi) {
        moe_gp_common(g, "load-points.png",
                      "Expert load max/mean (moving mean), mean over seeds "
                      "per point; 1 = perfect balance",
                      1000, 560);
        fprintf(g, "set key outside right top\nset xlabel 'step'\nset ylabel 'max / mean load'\n"
                   // from 0, so the perfect-balance line at 1 is inside the plot, not its border
                   "set yrange [0:*]\n"
                   "plot 1 w l lc 'gray' dt 2 lw 2 t 'perfect balance'");
        for (int p = 0; p < rep->n_points; p++) {
            if (!rep->runs[rep->points[p].first].n_layers) continue;
            fprintf(g, ", \\\n    'data/point-%d.dat' u 1:4 w l lw 2 ", p);
            moe_gp_style(g, p);
            fprintf(g, " t '%s (%d)'", moe_gq(rep->points[p].point, 0), rep->points[p].n);
        }
        fputc('\n', g);
        snprintf(pngs[np++], 256, "load-points.png");
    }
    if (moe_runs) {
        moe_gp_common(g, "load.png",
                      "Expert load max/mean (mean over MoE layers, moving mean; "
                      "1 = perfect balance)",
                      1000, 560);
        fprintf(g, "set key outside right top\nset xlabel 'step'\nset ylabel 'max / mean load'\n"
                   // from 0, so the perfect-balance line at 1 is inside the plot, not its border
                   "set yrange [0:*]\n"
                   "plot 1 w l lc 'gray' dt 2 lw 2 t 'perfect balance'");
        for (int i = 0; i < rep->n_runs; i++) {
            if (!rep->runs[i].n_layers) continue;
            fprintf(g, ", \\\n    'data/%s.dat' u 1:6 w l lw 1.5 ", rep->runs[i].file);
            moe_gp_style(g, i);
            fprintf(g, " t '%s'", moe_gq(rep->runs[i].name, 0));
        }
        fputc('\n', g);
        snprintf(pngs[np++], 256, "load.png");
        moe_gp_common(g, "drops.png",
                      "Dropped fraction of routed token-expert pairs (all MoE "
                      "layers, moving mean)",
                      1000, 560);
        int dropped = 0; // every run dropless: say so on the plot instead of an empty one
        for (int i = 0; i < rep->n_runs; i++) dropped |= rep->runs[i].drop_frac > 0;
        fprintf(g, "set key outside right top\nset xlabel 'step'\nset ylabel 'drop fraction'\n"
                   "set yrange [0:%s]\n%splot", dropped ? "*" : "1",
                dropped ? "" : "set label 1 'no drops (dropless)' at graph 0.5,0.5 center "
                               "font ',16'\n");
        for (int i = 0, k = 0; i < rep->n_runs; i++) {
            if (!rep->runs[i].n_layers) continue;
            fprintf(g, "%s'data/%s.dat' u 1:8 w l lw 1.5 ", k++ ? ", \\\n    " : " ",
                    rep->runs[i].file);
            moe_gp_style(g, i);
            fprintf(g, " t '%s%s'", moe_gq(rep->runs[i].name, 0),
                    rep->runs[i].drop_frac > 0 ? "" : ": no drops (dropless)");
        }
        fputc('\n', g);
        snprintf(pngs[np++], 256, "drops.png");
    }
    for (int i = 0; i < rep->n_runs && np < cap; i++) {
        const moe_report_run *r = &rep->runs[i];
        if (!r->share) continue;
        char png[256], title[512];
        snprintf(png, sizeof png, "heatmap-%s.png", r->file);
        snprintf(title, sizeof title,
                 "%s: share of token-expert pairs per expert (last 10%% of steps)",
                 moe_gq(r->name, 0));
        moe_gp_common(g, png, title, 560, 120 + 40 * (r->n_layers < 8 ? r->n_layers : 8));
        // Colour scale 0 .. 1/top_k (one expert taking every token) so runs with the same top_k
        // compare at a glance; raised to the largest share if one exceeds it.
        double cbmax = 0;
        for (int k = 0; k < r->n_layers * r->n_experts; k++)
            if (r->share[k] > cbmax) cbmax = r->share[k];
        if (r->cfg && r->cfg->model && r->cfg->model->top_k > 0) {
            const int K = r->cfg->model->top_k < r->n_experts ? r->cfg->model->top_k : r->n_experts;
            if (1.0 / K > cbmax) cbmax = 1.0 / K;
        }
        fprintf(g, "set cbrange [0:%.4g]\n", cbmax > 0 ? cbmax : 1.0);
        fprintf(g,
                "unset grid\nset xlabel 'expert'\nset ylabel 'MoE layer'\n"
                "set palette defined (0 'white', 1 '#fdd49e', 2 '#ef6548', 3 '#7f0000')\n"
                "set xrange [-0.5:%g]\nset yrange [-0.5:%g]\nset ytics (",
                r->n_experts - 0.5, r->n_layers - 0.5);
        const Moe__MetricsRecord *last = r->rec[r->n - 1];
        for (int l = 0; l < r->n_layers; l++)
            fprintf(g, "%s'%d' %d", l ? ", " : "",
                    l < (int)last->n_layers ? last->layers[l]->layer : l, l);
        if (r->n_experts <= 16)
            fputs(")\nset xtics 1\n", g);
        else
            fputs(")\n", g);
        fprintf(g,
                "plot 'data/%s-share.dat' u 1:2:(0.5):(0.5):3 w boxxyerror fs solid 1.0 noborder "
                "fc palette notitle\n",
                r->file);
        snprintf(pngs[np++], 256, "%s", png);
    }
    // validation loss against the number of experts (the experts axis)
    int nx = 0;
    for (int p = 0; p < rep->n_points; p++) nx += !strcmp(rep->points[p].kind, "experts");
    rep->have_experts_plot = 0;
    if (nx >= 2 && np < cap) {
        int use_val = 1;
        for (int p = 0; p < rep->n_points; p++)
            if (!strcmp(rep->points[p].kind, "experts") && isnan(rep->points[p].mean[1]))
                use_val = 0;
        const int col = use_val ? 1 : 0;
        char path[MOE_PATH_MAX];
        snprintf(path, sizeof path, "%s/data/experts.dat", rep->out_dir);
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "# n_experts mean std (%s loss over seeds)\n",
                    use_val ? "validation" : "train");
            // sorted by E (insertion order is usually sorted already; sort to be sure)
            int done[256] = {0};
            for (int k = 0; k < nx && k < 256; k++) {
                int best = -1;
                for (int p = 0; p < rep->n_points && p < 256; p++)
                    if (!done[p] && !strcmp(rep->points[p].kind, "experts") &&
                        (best < 0 || rep->points[p].n_experts < rep->points[best].n_experts))
                        best = p;
                if (best < 0) break;
                done[best] = 1;
                fprintf(f, "%d %.7g %.7g\n", rep->points[best].n_experts,
                        rep->points[best].mean[col], rep->points[best].std[col]);
            }
            fclose(f);
            moe_gp_common(g, "experts.png",
                          use_val ? "Validation loss vs number of experts "
                                    "(fixed active parameters per token)"
                                  : "Training loss vs number of "
                                    "experts (fixed active parameters per token)",
                          760, 480);
            int emin = 0, emax = 0;
            for (int p = 0; p < rep->n_points; p++)
                if (!strcmp(rep->points[p].kind, "experts")) {
                    const int e = rep->points[p].n_experts;
                    if (!emin || e < emin) emin = e;
                    if (e > emax) emax = e;
                }
            fprintf(g, "set xrange [%g:%g]\n", emin / 1.5, emax * 1.5);
            fprintf(g,
                    "set logscale x 2\nset xlabel 'routed experts per MoE layer'\n"
                    "set ylabel '%s loss (nats/token)'\nset key top right\n"
                    "plot 'data/experts.dat' u 1:2:3 w yerrorlines lw 2 pt 7 t 'MoE (mean ± std "
                    "over seeds)'",
                    use_val ? "validation" : "train");
            for (int p = 0; p < rep->n_points; p++)
                if (!strcmp(rep->points[p].kind, "dense") && !isnan(rep->points[p].mean[col]))
                    fprintf(g, ", %.7g w l dt 2 lc 'black' t 'dense baseline, same active FLOPs'",
                            rep->points[p].mean[col]);
            fputc('\n', g);
            snprintf(pngs[np++], 256, "experts.png");
            rep->have_experts_plot = 1;
        }
    }
    return np;
}

static int moe_is_png(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char b[8] = {0};
    size_t got = fread(b, 1, 8, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    static const unsigned char magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return got == 8 && !memcmp(b, magic, 8) && size > 200;
}

void moe_report_plots(moe_report *rep) {
    rep->plots_ok = 0;
    const char *env = getenv("MOE_GNUPLOT");
    char prog[MOE_PATH_MAX];
    if (env && !strcmp(env, "none")) {
        moe_note(rep, "MOE_GNUPLOT=none is set");
        return;
    }
    if (!moe_find_on_path(env && *env ? env : "gnuplot", prog, sizeof prog)) {
        moe_note(rep,
                 env && *env ? "MOE_GNUPLOT=%s is not an executable program"
                             : "gnuplot is not on PATH (%s; install it with apt-get install "
                               "gnuplot-nox)",
                 env && *env ? env : "searched $PATH");
        return;
    }
    char path[MOE_PATH_MAX];
    snprintf(path, sizeof path, "%s/data", rep->out_dir);
    if (moe_mkdir_p(path) != 0) {
        moe_note(rep, "cannot create %s (%s)", path, strerror(errno));
        return;
    }
    for (int i = 0; i < rep->n_runs; i++)
        if (moe_write_run_data(rep, &rep->runs[i]) != 0) {
            moe_note(rep,
                     "cannot write the data files in %s "
                     "(%s)",
                     path, strerror(errno));
            return;
        }
    for (int p = 0; p < rep->n_points; p++)
        if (rep->points[p].n > 1 && moe_write_point_data(rep, p) != 0) {
            moe_note(rep, "cannot write the data files in %s/data (%s)", rep->out_dir,
                     strerror(errno));
            return;
        }
    snprintf(path, sizeof path, "%s/plots.gp", rep->out_dir);
    FILE *g = fopen(path, "w");
    if (!g) {
        moe_note(rep, "cannot write %s (%s)", path, strerror(errno));
        return;
    }
    const int cap = rep->n_runs + 8;
    char(*pngs)[256] = moe_xcalloc((size_t)cap, sizeof *pngs);
    fprintf(g, "# plots.gp: written by moe report; run as `cd %s && gnuplot plots.gp`\n",
            rep->out_dir);
    const int np = moe_write_script(rep, g, pngs, cap);
    fclose(g);
    for (int i = 0; i < np; i++) { // never show a stale image from an earlier report
        snprintf(path, sizeof path, "%s/%s", rep->out_dir, pngs[i]);
        unlink(path);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(rep->out_dir) != 0) _exit(126);
        int fd = open("data/gnuplot.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int nul = open("/dev/null", O_RDONLY);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        if (nul >= 0) dup2(nul, 0);
        execl(prog, prog, "plots.gp", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
        moe_note(rep, "cannot run %s (%s)", prog, strerror(errno));
        free(pngs);
        return;
    }
    int bad = -1;
    for (int i = 0; i < np && bad < 0; i++) {
        snprintf(path, sizeof path, "%s/%s", rep->out_dir, pngs[i]);
        if (!moe_is_png(path)) bad = i;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || bad >= 0) {
        moe_note(rep,
                 "%s plots.gp failed (exit %d%s%s); see "
                 "%s/data/gnuplot.log",
                 prog, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                 bad >= 0 ? ", missing or invalid " : "", bad >= 0 ? pngs[bad] : "", rep->out_dir);
    } else {
        rep->plots_ok = 1;
    }
    free(pngs);
}
