// run-plot.c: the one-run report's data files and PNGs (report-impl.h). One gnuplot script,
// out/plots.gp, run once in out (so it can be rerun by hand); each PNG is checked afterwards
// (signature and size), so a gnuplot that exits 0 without drawing is not taken for success.
#include "report-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// ---------------------------------------------------------------- data files

static void moe_rp_val(FILE *f, double v, int positive) { // '?' = missing for gnuplot
    if (isnan(v) || isinf(v) || (positive && v <= 0))
        fputs(" ?", f);
    else
        fprintf(f, " %.7g", v);
}

static const Moe__GroupStats *moe_rp_group(const Moe__MetricsRecord *m, const char *name) {
    for (size_t g = 0; g < m->n_groups; g++)
        if (m->groups[g]->group && !strcmp(m->groups[g]->group, name)) return m->groups[g];
    return NULL;
}

static moe_status moe_rp_open(const char *out, const char *name, FILE **f) {
    char path[MOE_PATH_MAX];
    snprintf(path, sizeof path, "%s/data/%s", out, name);
    *f = fopen(path, "w");
    return *f ? MOE_OK : moe_set_error(MOE_EIO, "%s: cannot write (%s)", path, strerror(errno));
}

static moe_status moe_rp_close(const char *out, const char *name, FILE *f) {
    const int bad = ferror(f);
    if (fclose(f) == 0 && !bad) return MOE_OK;
    return moe_set_error(MOE_EIO, "%s/data/%s: cannot write (%s)", out, name, strerror(errno));
}

moe_status moe_rr_write_data(const moe_rr *r, const char *out) {
    FILE *f;
    moe_status st = moe_rp_open(out, "run.dat", &f);
    if (st) return st;
    fprintf(f, "# step loss cross_entropy val_loss lr grad_norm aux_loss z_loss tokens_per_s "
               "exchange_share\n");
    for (int64_t i = 0; i < r->n; i++) {
        const Moe__MetricsRecord *m = r->rec[i];
        fprintf(f, "%lld", (long long)m->step);
        moe_rp_val(f, m->loss, 0);
        moe_rp_val(f, m->loss - m->aux_loss - m->z_loss, 0);
        moe_rp_val(f, m->has_val_loss ? m->val_loss : NAN, 0);
        moe_rp_val(f, m->lr, 0);
        moe_rp_val(f, m->grad_norm, 1);
        moe_rp_val(f, m->aux_loss, 0);
        moe_rp_val(f, m->z_loss, 0);
        moe_rp_val(f, m->tokens_per_s, 0);
        moe_rp_val(f, m->step_seconds > 0
                          ? (m->exchange_seconds + m->allreduce_seconds) / m->step_seconds
                          : NAN, 0);
        fputc('\n', f);
    }
    if ((st = moe_rp_close(out, "run.dat", f))) return st;
    if ((st = moe_rp_open(out, "groups.dat", &f))) return st;
    const Moe__MetricsRecord *last = r->rec[r->n - 1];
    fprintf(f, "# step, then per group: weight_norm grad_norm update_norm (= update_ratio x "
               "weight_norm); groups:");
    for (size_t g = 0; g < last->n_groups; g++) fprintf(f, " %s", last->groups[g]->group);
    fputc('\n', f);
    for (int64_t i = 0; i < r->n; i++) {
        fprintf(f, "%lld", (long long)r->rec[i]->step);
        for (size_t g = 0; g < last->n_groups; g++) {
            const Moe__GroupStats *s = moe_rp_group(r->rec[i], last->groups[g]->group);
            moe_rp_val(f, s ? s->weight_norm : NAN, 1);
            moe_rp_val(f, s ? s->grad_norm : NAN, 1);
            moe_rp_val(f, s ? s->update_ratio * s->weight_norm : NAN, 1);
        }
        fputc('\n', f);
    }
    return moe_rp_close(out, "groups.dat", f);
}

// ---------------------------------------------------------------- the script

static void moe_rp_head(FILE *g, const char *png, const char *title, int w, int h) {
    fprintf(g,
            "reset\nif (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
            "  set terminal pngcairo size %d,%d noenhanced font ',10'\n} else {\n"
            "  set terminal png size %d,%d noenhanced\n}\n"
            "set datafile missing '?'\nset output '%s'\nset title '%s'\nset grid\n"
            "set xlabel 'step'\nset key outside right top\n",
            w, h, w, h, png, title);
}

static void moe_rp_norm_panel(FILE *g, const Moe__MetricsRecord *last, int which,
                              const char *what) {
    fprintf(g, "set title '%s'\nset logscale y\nplot", what);
    for (size_t k = 0; k < last->n_groups; k++) {
        char name[64]; // a group name is a-z, digits, '.', '_' (model.c): nothing to quote
        snprintf(name, sizeof name, "%s", last->groups[k]->group);
        for (char *c = name; *c; c++)
            if (*c == '\'') *c = ' ';
        fprintf(g, "%s 'data/groups.dat' u 1:%d w l lw 1.2 lc %zu dt %zu t '%s'", k ? ", \\\n   " : "",
                (int)(2 + 3 * k + which), k % 8 + 1, k / 8 + 1, name);
    }
    fputc('\n', g);
}

static int moe_rp_script(const moe_rr *r, FILE *g) {
    moe_rp_head(g, "loss.png", "Loss, cross-entropy part and validation loss", 1000, 520);
    fprintf(g, "set ylabel 'nats/token'\nplot 'data/run.dat' u 1:2 w l lw 1.2 t 'loss', "
               "'' u 1:3 w l lw 1.2 t 'cross-entropy', '' u 1:4 w lp pt 7 ps 0.8 t 'val loss'\n");
    moe_rp_head(g, "lr.png", "Learning rate (warmup, then the schedule)", 1000, 420);
    fprintf(g, "set ylabel 'lr'\nplot 'data/run.dat' u 1:5 w l lw 1.5 t 'lr'\n");
    moe_rp_head(g, "grad-norm.png", "Global gradient norm before clipping", 1000, 420);
    fprintf(g, "set logscale y\nset ylabel 'grad norm'\n"
               "plot 'data/run.dat' u 1:6 w l lw 1.2 t 'grad norm'\n");
    moe_rp_head(g, "aux-z.png", "Router aux and z loss (summed over MoE layers)", 1000, 420);
    fprintf(g, "set ylabel 'loss'\nplot 'data/run.dat' u 1:7 w l lw 1.2 t 'aux loss', "
               "'' u 1:8 w l lw 1.2 t 'z loss'\n");
    moe_rp_head(g, "throughput.png", "Tokens/s and exchange share of the step", 1000, 420);
    fprintf(g, "set ylabel 'tokens/s'\nset y2label 'exchange share (%%)'\nset ytics nomirror\n"
               "set y2tics\nset yrange [0:*]\nset y2range [0:100]\n"
               "plot 'data/run.dat' u 1:9 w l lw 1.2 t 'tokens/s', "
               "'' u 1:($10*100) axes x1y2 w l lw 1.2 t 'exchange %%'\n");
    const Moe__MetricsRecord *last = r->rec[r->n - 1];
    if (last->n_groups == 0) return 5;
    moe_rp_head(g, "norms.png", "", 1000, 1200);
    fprintf(g, "set multiplot layout 3,1 title 'Per parameter group (log scale)'\n");
    moe_rp_norm_panel(g, last, 0, "weight norm");
    moe_rp_norm_panel(g, last, 1, "gradient norm (before clipping)");
    moe_rp_norm_panel(g, last, 2, "update norm |w_after - w_before|");
    fprintf(g, "unset multiplot\n");
    return 6;
}

// ---------------------------------------------------------------- running gnuplot

static int moe_rp_is_png(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char b[8] = {0};
    const size_t got = fread(b, 1, 8, f);
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fclose(f);
    return got == 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8) && size > 200;
}

// Runs prog plots.gp in out with its output in data/gnuplot.log; the exit status or -1.
static int moe_rp_run(const char *prog, const char *out) {
    fflush(NULL);
    const pid_t pid = fork();
    if (pid == 0) {
        if (chdir(out) != 0) _exit(126);
        const int fd = open("data/gnuplot.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int nul = open("/dev/null", O_RDONLY);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        if (nul >= 0) dup2(nul, 0);
        execlp(prog, prog, "plots.gp", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void moe_rr_draw(const moe_rr *r, const char *out, moe_rr_plots *pl) {
    static const char *pngs[] = {"loss.png",   "lr.png",         "grad-norm.png",
                                 "aux-z.png", "throughput.png", "norms.png"};
    const char *prog = getenv("MOE_GNUPLOT");
    pl->ok = 0;
    if (prog && !strcmp(prog, "none")) {
        snprintf(pl->note, sizeof pl->note, "MOE_GNUPLOT=none is set");
        return;
    }
    char path[MOE_PATH_MAX];
    snprintf(path, sizeof path, "%s/plots.gp", out);
    FILE *g = fopen(path, "w");
    if (!g) {
        snprintf(pl->note, sizeof pl->note, "cannot write %s (%s)", path, strerror(errno));
        return;
    }
    fprintf(g, "# plots.gp: written by moe report (one run); rerun with `cd %s && gnuplot "
               "plots.gp`\n", out);
    const int n = moe_rp_script(r, g);
    fclose(g);
    const int rc = moe_rp_run(prog && *prog ? prog : "gnuplot", out);
    if (rc == 127) {
        snprintf(pl->note, sizeof pl->note, "%s is not on PATH (install it: apt-get install "
                 "gnuplot-nox)", prog && *prog ? prog : "gnuplot");
        return;
    }
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", out, pngs[i]);
        if (rc != 0 || !moe_rp_is_png(path)) {
            snprintf(pl->note, sizeof pl->note, "gnuplot plots.gp failed (exit %d; %s missing or "
                     "not a PNG); see %s/data/gnuplot.log", rc, pngs[i], out);
            return;
        }
    }
    pl->ok = 1;
}
