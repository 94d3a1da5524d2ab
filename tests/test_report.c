// test_report.c: `moe report` on synthetic run directories whose metrics.jsonl is written here
// with the JSON writer from moe.MetricsRecord structs (pseudo-random values, a resumed run whose
// repeated steps must be replaced, a truncated line). Every figure of results.csv is recomputed
// here with plain loops over the generated arrays and compared; the PNGs must be real PNGs and
// report.md / index.html must reference them; without gnuplot the tables are still written and
// report.md says why the plots were skipped; a directory without metrics exits 2.
// usage: test_report MOE_BINARY
#include "config.h"
#include "params.h"
#include "sweep.h"
#include "train.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
static const char *moe_bin;
static char root[] = "/tmp/test_report_XXXXXX";

#define EXPECT(what, cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "test_report.c:%d: %s: false\n", __LINE__, what);                      \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void expect_near(int line, const char *run, const char *col, double got, double want) {
    const int both_nan = isnan(got) && isnan(want);
    if (!both_nan && !(fabs(got - want) <= 1e-6 * fmax(1.0, fabs(want)))) {
        fprintf(stderr, "test_report.c:%d: %s %s: expected %.9g, got %.9g\n", line, run, col, want,
                got);
        failures++;
    }
}
#define EXPECT_NEAR(run, col, got, want) expect_near(__LINE__, run, col, got, want)

// ---------------------------------------------------------------- synthetic runs

enum { NS = 37, L = 2, E = 4 };
typedef struct {
    const char *name;
    int layers;                                      // 0: dense
    double ce[NS], aux[NS], z[NS], tok[NS], val[NS]; // val NAN when absent
    int64_t tpe[NS][L][E], dropped[NS][L];
    double mm[NS][L], cv[NS][L], ent[NS][L];
} synth;

static uint64_t rng = 88172645463325252ull;
static double urand(void) { // xorshift64
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static void synth_fill(synth *s, const char *name, int layers, int dead_expert) {
    memset(s, 0, sizeof *s);
    s->name = name;
    s->layers = layers;
    for (int i = 0; i < NS; i++) {
        s->ce[i] = 5.0 - 2.0 * i / NS + 0.1 * urand();
        s->aux[i] = layers ? 0.01 + 0.01 * urand() : 0;
        s->z[i] = layers ? 0.001 * urand() : 0;
        s->tok[i] = 1000 + 500 * urand();
        s->val[i] = (i + 1) % 5 == 0 ? 4.5 - 1.5 * i / NS + 0.05 * urand() : NAN;
        for (int l = 0; l < layers; l++) {
            for (int e = 0; e < E; e++) {
                s->tpe[i][l][e] = (int64_t)(100 * urand());
                if (e == dead_expert && l == 1 && i >= NS - 6) s->tpe[i][l][e] = 0;
            }
            s->dropped[i][l] = (int64_t)(20 * urand());
            s->mm[i][l] = 1 + urand();
            s->cv[i][l] = urand();
            s->ent[i][l] = 1.386 * urand();
        }
    }
}

static void write_record(FILE *f, const synth *s, int i, double perturb) {
    Moe__MetricsRecord r = MOE__METRICS_RECORD__INIT;
    Moe__LayerLoad ll[L], *llp[L];
    r.has_step = 1, r.step = i + 1;
    r.has_loss = 1, r.loss = s->ce[i] + s->aux[i] + s->z[i] + perturb;
    r.has_aux_loss = 1, r.aux_loss = s->aux[i];
    r.has_z_loss = 1, r.z_loss = s->z[i];
    r.has_tokens_per_s = 1, r.tokens_per_s = s->tok[i] + perturb;
    if (!isnan(s->val[i])) r.has_val_loss = 1, r.val_loss = s->val[i] + perturb;
    r.has_active_params = 1, r.active_params = 12345;
    for (int l = 0; l < s->layers; l++) {
        moe__layer_load__init(&ll[l]);
        ll[l].has_layer = 1, ll[l].layer = l;
        ll[l].n_tokens_per_expert = E;
        ll[l].tokens_per_expert = (int64_t *)s->tpe[i][l];
        ll[l].has_dropped = 1, ll[l].dropped = s->dropped[i][l] + (perturb ? 7 : 0);
        ll[l].has_max_over_mean = 1, ll[l].max_over_mean = s->mm[i][l] + perturb;
        ll[l].has_cv = 1, ll[l].cv = s->cv[i][l];
        ll[l].has_entropy = 1, ll[l].entropy = s->ent[i][l];
        llp[l] = &ll[l];
    }
    r.n_layers = (size_t)s->layers, r.layers = llp;
    char *js = moe_json_format_message(&r.base, MOE_JSON_COMPACT);
    MOE_ASSERT(js);
    fprintf(f, "%s\n", js);
    free(js);
}

// The run as a resumed run writes it: steps 1..30 (from step 25 on with stale values), a line
// cut short by a kill, then steps 25..NS again after the resume. Only the final values count.
static void write_run(const synth *s, const char *cfg_json, const char *kind, const char *point,
                      int seed) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/runs/%s", root, s->name);
    MOE_ASSERT(mkdir(dir, 0755) == 0);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "w");
    MOE_ASSERT(f);
    for (int i = 0; i < 30; i++) write_record(f, s, i, i >= 24 ? 0.5 : 0);
    fputs("{\"step\":31,\"loss\":9.9,\"lay", f);
    fputc('\n', f);
    for (int i = 24; i < NS; i++) write_record(f, s, i, 0);
    fclose(f);
    if (cfg_json) {
        snprintf(path, sizeof path, "%s/sweep-run.json", dir);
        f = fopen(path, "w");
        MOE_ASSERT(f);
        fprintf(f,
                "{\"run\": \"%s\", \"point\": \"%s\", \"kind\": \"%s\", \"seed\": %d, "
                "\"config\": %s}\n",
                s->name, point, kind, seed, cfg_json);
        fclose(f);
    }
}

// ---------------------------------------------------------------- the oracle

typedef struct {
    double train, val, tok, mm_end, mm_avg, cv, drop, dead, ent;
} figures;

static figures oracle(const synth *s) {
    figures f = {0};
    const int tail = (int)ceil(NS / 10.0);
    f.val = NAN;
    for (int i = 0; i < NS; i++)
        if (!isnan(s->val[i])) f.val = s->val[i];
    for (int i = NS - tail; i < NS; i++) f.train += s->ce[i] / tail;
    for (int i = 1; i < NS; i++) f.tok += s->tok[i] / (NS - 1);
    if (!s->layers) {
        f.mm_end = f.mm_avg = f.cv = f.drop = f.dead = f.ent = NAN;
        return f;
    }
    double dropped = 0, sel = 0;
    for (int i = 0; i < NS; i++)
        for (int l = 0; l < L; l++) {
            f.mm_avg += s->mm[i][l] / L / NS;
            if (i >= NS - tail) {
                f.mm_end += s->mm[i][l] / L / tail;
                f.cv += s->cv[i][l] / L / tail;
                f.ent += s->ent[i][l] / L / tail;
            }
            dropped += (double)s->dropped[i][l];
            sel += (double)s->dropped[i][l];
            for (int e = 0; e < E; e++) sel += (double)s->tpe[i][l][e];
        }
    f.drop = dropped / sel;
    for (int l = 0; l < L; l++)
        for (int e = 0; e < E; e++) {
            int64_t t = 0;
            for (int i = NS - tail; i < NS; i++) t += s->tpe[i][l][e];
            f.dead += t == 0;
        }
    return f;
}

// ---------------------------------------------------------------- results.csv

typedef struct {
    char cell[20][64];
    int n;
} csv_row;

static int read_csv(const char *path, csv_row *rows, int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[4096];
    int n = 0;
    while (n < cap && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        csv_row *r = &rows[n++];
        r->n = 0;
        for (char *p = line;;) {
            char *c = strchr(p, ',');
            if (c) *c = 0;
            snprintf(r->cell[r->n++], 64, "%.63s", p);
            if (!c || r->n == 20) break;
            p = c + 1;
        }
    }
    fclose(f);
    return n;
}

static double num(const char *s) { return *s ? strtod(s, NULL) : NAN; }

static const csv_row *find_row(const csv_row *rows, int n, const char *kind, const char *run) {
    for (int i = 1; i < n; i++)
        if (!strcmp(rows[i].cell[0], kind) && !strcmp(rows[i].cell[1], run)) return &rows[i];
    return NULL;
}

static void check_figures(const csv_row *r, const char *run, figures want) {
    if (!r) {
        fprintf(stderr, "test_report.c: results.csv: no row for %s\n", run);
        failures++;
        return;
    }
    EXPECT_NEAR(run, "steps", num(r->cell[4]), NS);
    EXPECT_NEAR(run, "train_loss", num(r->cell[5]), want.train);
    EXPECT_NEAR(run, "val_loss", num(r->cell[6]), want.val);
    EXPECT_NEAR(run, "tokens_per_s", num(r->cell[7]), want.tok);
    EXPECT_NEAR(run, "max_over_mean_end", num(r->cell[8]), want.mm_end);
    EXPECT_NEAR(run, "max_over_mean_avg", num(r->cell[9]), want.mm_avg);
    EXPECT_NEAR(run, "cv_end", num(r->cell[10]), want.cv);
    EXPECT_NEAR(run, "drop_fraction", num(r->cell[11]), want.drop);
    EXPECT_NEAR(run, "dead_experts", num(r->cell[12]), want.dead);
    EXPECT_NEAR(run, "router_entropy", num(r->cell[13]), want.ent);
}

static int sh(const char *cmd) {
    fflush(NULL);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = calloc((size_t)n + 1, 1);
    MOE_ASSERT(b && fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    return b;
}

static void check_png(const char *dir, const char *name, char *md, char *html) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    unsigned char b[8] = {0};
    long size = 0;
    if (f) {
        if (fread(b, 1, 8, f) != 8) memset(b, 0, 8);
        fseek(f, 0, SEEK_END);
        size = ftell(f);
        fclose(f);
    }
    static const unsigned char magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (!f || memcmp(b, magic, 8) || size < 2000) {
        fprintf(stderr,
                "test_report.c: %s: expected a PNG of at least 2000 bytes, got %s (%ld "
                "bytes)\n",
                path, f ? "a file" : "nothing", size);
        failures++;
    }
    char ref[300];
    snprintf(ref, sizeof ref, "](%s)", name);
    if (!md || !strstr(md, ref)) {
        fprintf(stderr, "test_report.c: report.md does not reference %s\n", name);
        failures++;
    }
    snprintf(ref, sizeof ref, "src=\"%s\"", name);
    if (!html || !strstr(html, ref)) {
        fprintf(stderr, "test_report.c: index.html does not reference %s\n", name);
        failures++;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_report MOE_BINARY\n");
        return 2;
    }
    moe_bin = argv[1];
    MOE_ASSERT(mkdtemp(root));
    char path[700], cmd[2048];
    snprintf(path, sizeof path, "%s/runs", root);
    MOE_ASSERT(mkdir(path, 0755) == 0);

    static synth a1, a2, b1, d1;
    synth_fill(&a1, "alpha-s1", L, 2);
    synth_fill(&a2, "alpha-s2", L, -1);
    synth_fill(&b1, "beta-s7", L, -1);
    synth_fill(&d1, "dense-s1", 0, -1);
    const char *moe_cfg = "{\"model\": {\"d_model\": 64, \"n_layers\": 2, \"n_heads\": 4, "
                          "\"n_experts\": 4, \"top_k\": 2, \"expert_d_ff\": 32}}";
    const char *dense_cfg = "{\"model\": {\"d_model\": 64, \"n_layers\": 2, \"n_heads\": 4, "
                            "\"n_experts\": 0, \"d_ff\": 64}}";
    write_run(&a1, NULL, NULL, NULL, 0); // no sweep-run.json: point and seed from the name
    write_run(&a2, NULL, NULL, NULL, 0);
    write_run(&b1, moe_cfg, "point", "beta", 7);
    write_run(&d1, dense_cfg, "dense", "dense", 1);

    // ------------------------------------------------ with gnuplot
    snprintf(cmd, sizeof cmd,
             "unset MOE_GNUPLOT; %s report %s/runs/alpha-s1 %s/runs/alpha-s2 "
             "%s/runs/beta-s7 %s/runs/dense-s1 --out %s/rep --title 'synthetic runs' "
             ">%s/rep.log 2>&1",
             moe_bin, root, root, root, root, root, root);
    int rc = sh(cmd);
    if (rc != 0) {
        fprintf(stderr, "test_report.c: moe report: expected exit 0, got %d; see %s/rep.log\n", rc,
                root);
        return 1;
    }
    static csv_row rows[32];
    snprintf(path, sizeof path, "%s/rep/results.csv", root);
    int n = read_csv(path, rows, 32);
    EXPECT("results.csv readable", n > 0);
    if (n > 0)
        EXPECT("results.csv header", !strcmp(rows[0].cell[0], "row") &&
                                         !strcmp(rows[0].cell[5], "train_loss") &&
                                         !strcmp(rows[0].cell[12], "dead_experts"));
    // 4 run rows + mean and std of the one point with two seeds (alpha)
    if (n != 1 + 4 + 2) {
        fprintf(stderr,
                "test_report.c: results.csv: expected 7 lines (header, 4 runs, alpha mean "
                "and std), got %d\n",
                n);
        failures++;
    }
    const synth *all[4] = {&a1, &a2, &b1, &d1};
    figures fig[4];
    for (int i = 0; i < 4; i++) {
        fig[i] = oracle(all[i]);
        check_figures(find_row(rows, n, "run", all[i]->name), all[i]->name, fig[i]);
    }
    const csv_row *r = find_row(rows, n, "run", "alpha-s1");
    if (r) {
        EXPECT("alpha-s1: point from the name", !strcmp(r->cell[2], "alpha"));
        EXPECT("alpha-s1: seed from the name", !strcmp(r->cell[3], "1"));
        EXPECT("alpha-s1: a dead expert made", fig[0].dead >= 1);
    }
    // params of the runs with a config: the exact accounting of that config
    struct {
        const char *run, *json;
    } with_cfg[2] = {{"beta-s7", moe_cfg}, {"dense-s1", dense_cfg}};
    for (int k = 0; k < 2; k++) {
        ProtobufCMessage *m = NULL;
        MOE_ASSERT(moe_json_parse_message("cfg", with_cfg[k].json, strlen(with_cfg[k].json),
                                          &moe__config__descriptor, &m) == MOE_OK);
        moe_params_report pr;
        MOE_ASSERT(moe_params_count((Moe__Config *)m, 0, 0, &pr) == MOE_OK);
        protobuf_c_message_free_unpacked(m, NULL);
        const csv_row *q = find_row(rows, n, "run", with_cfg[k].run);
        if (q) {
            EXPECT_NEAR(with_cfg[k].run, "active_params", num(q->cell[14]), (double)pr.active);
            EXPECT_NEAR(with_cfg[k].run, "total_params", num(q->cell[15]), (double)pr.total);
        }
    }
    if ((r = find_row(rows, n, "run", "beta-s7"))) {
        EXPECT("beta-s7: point from sweep-run.json", !strcmp(r->cell[2], "beta"));
        EXPECT("beta-s7: seed from sweep-run.json", !strcmp(r->cell[3], "7"));
    }
    // mean ± sample std over the two alpha seeds
    const csv_row *mr = find_row(rows, n, "mean", "alpha"), *sr = find_row(rows, n, "std", "alpha");
    EXPECT("alpha mean row", mr != NULL);
    EXPECT("alpha std row", sr != NULL);
    if (mr && sr) {
        const double x[2] = {fig[0].train, fig[1].train}, v[2] = {fig[0].val, fig[1].val};
        const double mm[2] = {fig[0].mm_end, fig[1].mm_end};
        EXPECT_NEAR("alpha", "mean train_loss", num(mr->cell[5]), (x[0] + x[1]) / 2);
        EXPECT_NEAR("alpha", "std train_loss", num(sr->cell[5]), fabs(x[0] - x[1]) / sqrt(2.0));
        EXPECT_NEAR("alpha", "mean val_loss", num(mr->cell[6]), (v[0] + v[1]) / 2);
        EXPECT_NEAR("alpha", "std val_loss", num(sr->cell[6]), fabs(v[0] - v[1]) / sqrt(2.0));
        EXPECT_NEAR("alpha", "mean max_over_mean_end", num(mr->cell[8]), (mm[0] + mm[1]) / 2);
        EXPECT_NEAR("alpha", "std max_over_mean_end", num(sr->cell[8]),
                    fabs(mm[0] - mm[1]) / sqrt(2.0));
    }
    snprintf(path, sizeof path, "%s/rep/report.md", root);
    char *md = slurp(path);
    snprintf(path, sizeof path, "%s/rep/index.html", root);
    char *html = slurp(path);
    EXPECT("report.md written", md != NULL);
    EXPECT("index.html written", html != NULL);
    snprintf(path, sizeof path, "%s/rep", root);
    check_png(path, "loss.png", md, html);
    check_png(path, "load.png", md, html);
    check_png(path, "drops.png", md, html);
    check_png(path, "loss-points.png", md, html); // alpha has two seeds
    check_png(path, "load-points.png", md, html);
    for (int i = 0; i < 3; i++) {
        char png[100];
        snprintf(png, sizeof png, "heatmap-%s.png", all[i]->name);
        check_png(path, png, md, html);
    }
    snprintf(cmd, sizeof cmd, "%s/rep/heatmap-dense-s1.png", root);
    EXPECT("no heatmap for the dense run", access(cmd, F_OK) != 0);
    EXPECT("report.md has a findings section", md && strstr(md, "## Findings"));
    EXPECT("report.md states the dense comparison",
           md && strstr(md, "MoE vs the FLOP-matched dense baseline"));
    EXPECT("report.md has the runs table", md && strstr(md, "| alpha-s1 | alpha | 1 | 37 |"));
    free(md);
    free(html);

    // ------------------------------------------------ without gnuplot: MOE_GNUPLOT=none, empty PATH
    const char *modes[2][2] = {{"MOE_GNUPLOT=none", "MOE_GNUPLOT=none is set"},
                               {"env -u MOE_GNUPLOT PATH=/nonexistent", "gnuplot is not on PATH"}};
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd,
                 "%s %s report %s/runs/alpha-s1 %s/runs/dense-s1 --out %s/rep%d "
                 ">%s/rep%d.log 2>&1",
                 modes[k][0], moe_bin, root, root, root, k, root, k);
        rc = sh(cmd);
        if (rc != 0) {
            fprintf(stderr, "test_report.c: %s moe report: expected exit 0, got %d\n", modes[k][0],
                    rc);
            failures++;
            continue;
        }
        snprintf(path, sizeof path, "%s/rep%d/results.csv", root, k);
        n = read_csv(path, rows, 32);
        EXPECT("results.csv without gnuplot: header + 2 runs", n == 3);
        check_figures(find_row(rows, n, "run", "alpha-s1"), "alpha-s1 (no gnuplot)", fig[0]);
        snprintf(path, sizeof path, "%s/rep%d/report.md", root, k);
        md = slurp(path);
        if (!md || !strstr(md, "Plots skipped") || !strstr(md, modes[k][1]) ||
            strstr(md, "](loss.png)")) {
            fprintf(stderr,
                    "test_report.c: %s: report.md should say \"Plots skipped: %s\" and show "
                    "no image; got:\n%s\n",
                    modes[k][0], modes[k][1], md ? md : "(none)");
            failures++;
        }
        free(md);
        snprintf(path, sizeof path, "%s/rep%d/loss.png", root, k);
        EXPECT("no PNG without gnuplot", access(path, F_OK) != 0);
        snprintf(path, sizeof path, "%s/rep%d/results.md", root, k);
        EXPECT("results.md without gnuplot", access(path, F_OK) == 0);
    }

    // ------------------------------------------------ a directory without metrics
    snprintf(path, sizeof path, "%s/empty", root);
    MOE_ASSERT(mkdir(path, 0755) == 0);
    snprintf(cmd, sizeof cmd, "%s report %s --out %s/rep-bad >%s/bad.log 2>&1", moe_bin, path, root,
             root);
    rc = sh(cmd);
    snprintf(path, sizeof path, "%s/bad.log", root);
    char *log = slurp(path);
    if (rc != 2 || !log || !strstr(log, "metrics.jsonl")) {
        fprintf(stderr,
                "test_report.c: report on a directory without metrics: expected exit 2 "
                "naming metrics.jsonl, got %d: %s\n",
                rc, log ? log : "");
        failures++;
    }
    free(log);

    if (failures) {
        fprintf(stderr, "test_report: %d failure(s); files kept in %s\n", failures, root);
        return 1;
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    sh(cmd);
    printf("test_report: OK (4 runs recomputed, PNGs checked, no-gnuplot paths checked)\n");
    return 0;
}
