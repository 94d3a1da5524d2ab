// routes-plot.c: the PNG heatmaps of `moe routes --out DIR` — the load shares (layer × expert)
// and each MoE layer's co-activation matrix — as data files under DIR/data and one gnuplot
// script (DIR/<stem>.gp) run once in DIR. Trade-off: gnuplot is a run-time dependency found on
// PATH (or MOE_GNUPLOT); without it the tables are still complete and the note says why.
#include "routes.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

// Full path of prog (a name searched on PATH, or a path) when executable.
static int find_prog(const char *prog, char *out, size_t cap) {
    if (strchr(prog, '/')) {
        snprintf(out, cap, "%s", prog);
        return access(out, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        const char *c = strchr(p, ':');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        snprintf(out, cap, "%.*s/%s", (int)n, p, prog);
        if (n > 0 && access(out, X_OK) == 0) return 1;
        p += n + (c ? 1 : 0);
    }
    return 0;
}

static void gp_head(FILE *g, const char *png, const char *title) {
    fprintf(g,
            "reset\nif (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
            "  set terminal pngcairo size 720,600 noenhanced font ',10'\n} else {\n"
            "  set terminal png size 720,600 noenhanced\n}\n"
            "set output '%s'\nset title '%s'\nset view map\nset palette rgb 33,13,10\n",
            png, title);
}

// data/<stem>-load.dat and data/<stem>-coact-L<block>.dat (matrices, one row per line).
static int write_data(const char *dir, const char *stem, const moe_trace *t,
                      const moe_routes_stats *s) {
    char path[MOE_PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/data/%s-load.dat", dir, stem);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    for (int l = 0; l < s->n_moe; l++) {
        const moe_routes_layer *L = &s->layers[l];
        for (int e = 0; e < s->E; e++)
            fprintf(f, "%s%.6f", e ? " " : "",
                    L->pairs ? (double)L->load[e] / (double)L->pairs : 0);
        fputc('\n', f);
    }
    int bad = fclose(f) != 0;
    for (int l = 0; l < s->n_moe && !bad; l++) {
        snprintf(path, sizeof path, "%s/data/%s-coact-L%d.dat", dir, stem, t->h->moe_layers[l]);
        if (!(f = fopen(path, "w"))) return -1;
        for (int i = 0; i < s->E; i++)
            for (int j = 0; j < s->E; j++)
                fprintf(f, "%lld%c", (long long)s->layers[l].coact[(size_t)i * s->E + j],
                        j + 1 < s->E ? ' ' : '\n');
        bad |= fclose(f) != 0;
    }
    return bad ? -1 : 0;
}

static int write_script(const char *dir, const char *stem, const moe_trace *t,
                        const moe_routes_stats *s) {
    char path[MOE_PATH_MAX + 128], png[256];
    snprintf(path, sizeof path, "%s/%s.gp", dir, stem);
    FILE *g = fopen(path, "w");
    if (!g) return -1;
    fprintf(g, "# %s.gp: written by moe routes; run as `cd %s && gnuplot %s.gp`\n", stem, dir,
            stem);
    snprintf(png, sizeof png, "%s-load.png", stem);
    gp_head(g, png, "load: share of the (token, expert) pairs of each MoE layer");
    fprintf(g,
            "set xlabel 'expert'\nset ylabel 'MoE layer'\nset xrange [-0.5:%d.5]\n"
            "set yrange [-0.5:%d.5]\nset xtics 1\nset ytics 1\nplot 'data/%s-load.dat' matrix with "
            "image notitle\n",
            s->E - 1, s->n_moe - 1, stem);
    for (int l = 0; l < s->n_moe; l++) {
        snprintf(png, sizeof png, "%s-coact-L%d.png", stem, t->h->moe_layers[l]);
        char title[128];
        snprintf(title, sizeof title, "co-activation, block %d: tokens choosing experts i and j",
                 t->h->moe_layers[l]);
        gp_head(g, png, title);
        fprintf(g,
                "set xlabel 'expert j'\nset ylabel 'expert i'\nset xrange [-0.5:%d.5]\n"
                "set yrange [%d.5:-0.5]\nset xtics 1\nset ytics 1\nplot 'data/%s-coact-L%d.dat' "
                "matrix with image "
                "notitle\n",
                s->E - 1, s->E - 1, stem, t->h->moe_layers[l]);
    }
    return fclose(g) != 0 ? -1 : 0;
}

moe_status moe_routes_plot(const char *out_dir, const char *stem, const moe_trace *t,
                           const moe_routes_stats *s, char *note, size_t note_cap) {
    note[0] = 0;
    const char *env = getenv("MOE_GNUPLOT");
    char prog[MOE_PATH_MAX], path[MOE_PATH_MAX + 64];
    if (env && !strcmp(env, "none")) {
        snprintf(note, note_cap, "plots skipped: MOE_GNUPLOT=none is set");
        return MOE_OK;
    }
    if (!find_prog(env && *env ? env : "gnuplot", prog, sizeof prog)) {
        snprintf(note, note_cap,
                 "plots skipped: %s is not an executable program (apt-get install gnuplot-nox)",
                 env && *env ? env : "gnuplot on PATH");
        return MOE_OK;
    }
    snprintf(path, sizeof path, "%s/data", out_dir);
    if (moe_mkdir_p(path) != 0)
        return moe_set_error(MOE_EIO, "cannot create %s (%s)", path, strerror(errno));
    if (write_data(out_dir, stem, t, s) != 0 || write_script(out_dir, stem, t, s) != 0)
        return moe_set_error(MOE_EIO, "cannot write the plot files in %s (%s)", out_dir,
                             strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char gp[MOE_PATH_MAX];
        snprintf(gp, sizeof gp, "%s.gp", stem);
        if (chdir(out_dir) != 0) _exit(126);
        int fd = open("data/gnuplot.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        execl(prog, prog, gp, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0)
        return moe_set_error(MOE_EIO, "cannot run %s (%s)", prog, strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return moe_set_error(MOE_EIO, "%s %s.gp failed (exit %d); see %s/data/gnuplot.log", prog,
                             stem, WIFEXITED(status) ? WEXITSTATUS(status) : -1, out_dir);
    return MOE_OK;
}
