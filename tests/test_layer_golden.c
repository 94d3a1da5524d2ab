// test_layer_golden.c: the one-rank MoE layer (experts/experts.h) against golden fixtures written
// by an independent PyTorch implementation (tests/torch_fixtures.py, committed in tests/fixtures).
// Trade-off: PyTorch is needed only to regenerate the fixtures, never to run this test.
//
// For every fixture: build the layer from the case's config and weights, run forward and backward
// with upstream gradient dy, compare y, L_aux, L_z, the scores, the routing (selected experts,
// kept pairs, counts, expert-choice token sets) and every gradient of L = Σ y·dy + L_aux + L_z;
// then run again with dy = 0 and compare the router-loss-only gradients (dx, dWg, dbg).
// Gradients are pre-filled with a constant so that "backward ADDS" is checked too.
//
// Tolerance: max|got − ref| <= 1e-4 · max|ref| per tensor. The float32 PyTorch reference itself
// differs from a float64 run by at most 4.4e-7 of max|ref| over all tensors of all cases
// (torch_fixtures.py --check64), and the C layer's float32 rounding (other summation order, BLAS,
// FMA) is of the same order (3.7e-7 measured): 1e-4 leaves a ~250× margin. Real mistakes stay
// above it: the aux-loss share of dWg is >= 4e-3 of max|dWg| (and the auxz_* tensors check it
// alone), a 1% error in α fails at 2e-4..4e-3, GELU erf instead of tanh at 1.5e-4..7e-4.
// Routing must match exactly (no near-ties: the script separates the last kept and first
// rejected scores by > 1e-4).
//
// Usage: test_layer_golden FIXTURE_DIR   (every *.bin in it; fails if there are none)
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experts.h"
#include "moe-common.h"

#define TOL         1e-4
#define MAX_TENSORS 64
#define MAX_DIMS    4

typedef struct {
    char name[64];
    int ndim;
    int64_t dims[MAX_DIMS];
    int64_t n;   // product of dims
    float *data; // (n) owned copy
} tensor;

typedef struct {
    char path[1024];
    char *buf;    // whole file
    char *header; // NUL-terminated copy of the "key value\n" lines
    int n_tensors;
    tensor t[MAX_TENSORS];
} fixture;

static int failures;

static void fixture_free(fixture *f) {
    for (int i = 0; i < f->n_tensors; i++) free(f->t[i].data);
    free(f->buf);
    free(f->header);
}

// Reads the format of torch_fixtures.py (little-endian host assumed: x86-64/aarch64).
static int fixture_load(const char *path, fixture *f) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "%s: cannot open\n", path);
        return -1;
    }
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->buf = malloc((size_t)size + 1);
    if (!f->buf || fread(f->buf, 1, (size_t)size, fp) != (size_t)size) {
        fclose(fp);
        fprintf(stderr, "%s: read failed\n", path);
        return -1;
    }
    fclose(fp);
    size_t pos = 0;
#define NEED(nbytes)                                                                               \
    do {                                                                                           \
        if (pos + (size_t)(nbytes) > (size_t)size) {                                               \
            fprintf(stderr, "%s: truncated at byte %zu (need %zu more, file has %ld)\n", path,     \
                    pos, (size_t)(nbytes), size);                                                  \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)
    NEED(8);
    if (memcmp(f->buf, "MOEGLD01", 8) != 0) {
        fprintf(stderr, "%s: bad magic (expected MOEGLD01)\n", path);
        return -1;
    }
    pos = 8;
    uint32_t u32;
    NEED(4);
    memcpy(&u32, f->buf + pos, 4);
    pos += 4;
    NEED(u32);
    f->header = malloc((size_t)u32 + 1);
    memcpy(f->header, f->buf + pos, u32);
    f->header[u32] = '\0';
    pos += u32;
    NEED(4);
    memcpy(&u32, f->buf + pos, 4);
    pos += 4;
    if (u32 > MAX_TENSORS) {
        fprintf(stderr, "%s: %u tensors, at most %d supported\n", path, u32, MAX_TENSORS);
        return -1;
    }
    int n_tensors = (int)u32;
    for (int i = 0; i < n_tensors; i++) {
        tensor *t = &f->t[i];
        NEED(4);
        memcpy(&u32, f->buf + pos, 4);
        pos += 4;
        if (u32 >= sizeof t->name) {
            fprintf(stderr, "%s: tensor %d name length %u too long\n", path, i, u32);
            return -1;
        }
        NEED(u32);
        memcpy(t->name, f->buf + pos, u32);
        t->name[u32] = '\0';
        pos += u32;
        NEED(4);
        memcpy(&u32, f->buf + pos, 4);
        pos += 4;
        if (u32 > MAX_DIMS) {
            fprintf(stderr, "%s: tensor %s has %u dims\n", path, t->name, u32);
            return -1;
        }
        t->ndim = (int)u32;
        t->n = 1;
        f->n_tensors = i + 1; // from here on fixture_free frees t->data
        for (int d = 0; d < t->ndim; d++) {
            NEED(8);
            memcpy(&t->dims[d], f->buf + pos, 8);
            pos += 8;
            t->n *= t->dims[d];
        }
        NEED(t->n * 4);
        // Copied out: in the file a tensor starts at any byte offset, not float-aligned.
        t->data = malloc((size_t)(t->n > 0 ? t->n : 1) * sizeof(float));
        memcpy(t->data, f->buf + pos, (size_t)t->n * 4);
        pos += (size_t)t->n * 4;
    }
    if (pos != (size_t)size) {
        fprintf(stderr, "%s: %zu trailing bytes\n", path, (size_t)size - pos);
        return -1;
    }
#undef NEED
    return 0;
}

static const tensor *find(const fixture *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

static const tensor *need(const fixture *f, const char *name) {
    const tensor *t = find(f, name);
    if (!t) {
        fprintf(stderr, "%s: tensor '%s' missing\n", f->path, name);
        exit(1);
    }
    return t;
}

// Header value of `key` ("key value\n" lines); exits if absent.
static const char *cfg_str(const fixture *f, const char *key, char *out, size_t outsz) {
    size_t kl = strlen(key);
    for (const char *line = f->header; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len > kl && strncmp(line, key, kl) == 0 && line[kl] == ' ') {
            size_t vl = len - kl - 1;
            if (vl >= outsz) vl = outsz - 1;
            memcpy(out, line + kl + 1, vl);
            out[vl] = '\0';
            return out;
        }
        line += len + (nl ? 1 : 0);
    }
    fprintf(stderr, "%s: config key '%s' missing from the header\n", f->path, key);
    exit(1);
}

static double cfg_num(const fixture *f, const char *key) {
    char v[64];
    return atof(cfg_str(f, key, v, sizeof v));
}

static int cfg_is(const fixture *f, const char *key, const char *value) {
    char v[64];
    return strcmp(cfg_str(f, key, v, sizeof v), value) == 0;
}

// Copies fixture tensor `name` into dst (n floats); the fixture must hold it iff dst != NULL.
static void load_into(const fixture *f, const char *name, float *dst, int64_t n) {
    const tensor *t = find(f, name);
    if (!dst && !t) return;
    if (!dst || !t) {
        fprintf(stderr, "%s: tensor '%s' is %s the fixture but the C layer %s it\n", f->path, name,
                t ? "in" : "not in", dst ? "allocates" : "does not allocate");
        exit(1);
    }
    if (t->n != n) {
        fprintf(stderr, "%s: tensor '%s' has %lld floats, the C layer expects %lld\n", f->path,
                name, (long long)t->n, (long long)n);
        exit(1);
    }
    memcpy(dst, t->data, (size_t)n * sizeof(float));
}

// Compares got (n) − offset against ref; prints one line; counts a failure.
static void compare(const fixture *f, const char *name, const float *got, float offset,
                    const tensor *ref) {
    double maxerr = 0, maxref = 0;
    int64_t worst = 0;
    for (int64_t i = 0; i < ref->n; i++) {
        double g = (double)got[i] - offset;
        double e = fabs(g - ref->data[i]);
        if (!(e <= maxerr)) { // NaN lands here too
            maxerr = isnan(e) ? INFINITY : e;
            worst = i;
        }
        if (fabs(ref->data[i]) > maxref) maxref = fabs(ref->data[i]);
    }
    // A zero reference (e.g. L_aux under expert choice) must come out zero up to rounding.
    double bound = TOL * (maxref > 1e-3 ? maxref : 1e-3);
    int ok = maxerr <= bound;
    printf("  %-14s max err %.3e  max|ref| %.3e  rel %.2e  %s\n", name, maxerr, maxref,
           maxref > 0 ? maxerr / maxref : maxerr, ok ? "ok" : "FAIL");
    if (!ok) {
        char idx[96] = "";
        int64_t rem = worst;
        int64_t coord[MAX_DIMS] = {0};
        for (int d = ref->ndim - 1; d >= 0; d--) {
            coord[d] = rem % ref->dims[d];
            rem /= ref->dims[d];
        }
        size_t o = 0;
        for (int d = 0; d < ref->ndim; d++)
            o += (size_t)snprintf(idx + o, sizeof idx - o, "%s%lld", d ? "," : "",
                                  (long long)coord[d]);
        printf("    %s: %s[%s]: expected %.7g, got %.7g (bound %.3e)\n", f->path, name, idx,
               (double)ref->data[worst], (double)got[worst] - offset, bound);
        failures++;
    }
}

static void compare_scalar(const fixture *f, const char *name, double got) {
    float g = (float)got;
    compare(f, name, &g, 0.0f, need(f, name));
}

static void check_int(const fixture *f, const char *what, long long expected, long long got) {
    if (expected != got) {
        printf("    %s: %s: expected %lld, got %lld\n", f->path, what, expected, got);
        failures++;
    }
}

// Routing must match exactly: chosen experts (best first), kept pairs, counts / token sets.
static void check_routing(const fixture *f, const moe_layer_params *lp, const moe_route_plan *pl,
                          const moe_route_stats *st) {
    int fails_before = failures;
    int64_t T = pl->T;
    int E = lp->router.E, K = lp->router.K;
    char what[128];
    if (lp->router.strategy == MOE_ROUTE_TOKEN_CHOICE) {
        const tensor *sel = need(f, "sel"), *kept = need(f, "kept"), *cnt = need(f, "counts");
        int64_t dropped = 0;
        for (int64_t t = 0; t < T; t++)
            for (int j = 0; j < K; j++) {
                snprintf(what, sizeof what, "sel_expert[%lld,%d]", (long long)t, j);
                check_int(f, what, (long long)sel->data[t * K + j], pl->sel_expert[t * K + j]);
                snprintf(what, sizeof what, "kept(%lld,%d) (sel_row >= 0)", (long long)t, j);
                check_int(f, what, kept->data[t * K + j] != 0, pl->sel_row[t * K + j] >= 0);
                dropped += kept->data[t * K + j] == 0;
            }
        for (int e = 0; e < E; e++) {
            snprintf(what, sizeof what, "sel_counts[%d]", e);
            check_int(f, what, (long long)cnt->data[e], pl->sel_counts[e]);
        }
        check_int(f, "stats.dropped", dropped, st->dropped);
        check_int(f, "plan.n_rows", (long long)T * K - dropped, pl->n_rows);
    } else {
        const tensor *ec = need(f, "ec_tokens"); // (E, C) increasing token index
        int64_t C = ec->dims[1];
        check_int(f, "plan.C", C, pl->C);
        for (int e = 0; e < E && failures == fails_before; e++) {
            snprintf(what, sizeof what, "counts[%d]", e);
            check_int(f, what, C, pl->counts[e]);
            for (int64_t c = 0; c < C && c < pl->counts[e]; c++) {
                snprintf(what, sizeof what, "expert %d token #%lld", e, (long long)c);
                check_int(f, what, (long long)ec->data[e * C + c],
                          pl->row_token[pl->offsets[e] + c]);
            }
        }
    }
    printf("  %-14s %s\n", "routing", failures == fails_before ? "ok (exact)" : "FAIL");
}

static void fill(float *a, int64_t n, float c) {
    if (a)
        for (int64_t i = 0; i < n; i++) a[i] = c;
}

// Sets every gradient tensor of g to c (so that the test sees whether backward adds).
static void fill_grads(const moe_layer_params *lp, moe_layer_weights *g, float c) {
    const int64_t D = lp->router.D, E = lp->router.E, F = lp->F, S = lp->n_shared, Fs = lp->Fs;
    fill(g->wg, D * E, c);
    fill(g->bg, E, c);
    fill(g->experts.w1, E * D * F, c);
    fill(g->experts.w3, E * D * F, c);
    fill(g->experts.w2, E * F * D, c);
    fill(g->experts.b1, E * F, c);
    fill(g->experts.b3, E * F, c);
    fill(g->experts.b2, E * D, c);
    fill(g->shared.w1, S * D * Fs, c);
    fill(g->shared.w3, S * D * Fs, c);
    fill(g->shared.w2, S * Fs * D, c);
    fill(g->shared.b1, S * Fs, c);
    fill(g->shared.b3, S * Fs, c);
    fill(g->shared.b2, S * D, c);
    fill(g->ws, D, c);
}

#define GRAD(member, refname)                                                                      \
    do {                                                                                           \
        if (g.member)                                                                              \
            compare(&f, refname, g.member, PREFILL, need(&f, refname));                            \
        else if (find(&f, refname)) {                                                              \
            printf("    %s: %s in the fixture but the C layer has no such gradient\n", path,       \
                   refname);                                                                       \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void run_case(const char *path) {
    fixture f;
    if (fixture_load(path, &f) != 0) {
        failures++;
        fixture_free(&f);
        return;
    }
    printf("%s\n", path);
    moe_layer_params lp;
    memset(&lp, 0, sizeof lp);
    int64_t T = (int64_t)cfg_num(&f, "T");
    lp.router.D = (int64_t)cfg_num(&f, "D");
    lp.router.E = (int)cfg_num(&f, "E");
    lp.router.K = (int)cfg_num(&f, "k");
    lp.router.scoring = cfg_is(&f, "scoring", "sigmoid") ? MOE_SCORE_SIGMOID : MOE_SCORE_SOFTMAX;
    lp.router.strategy =
        cfg_is(&f, "strategy", "expert_choice") ? MOE_ROUTE_EXPERT_CHOICE : MOE_ROUTE_TOKEN_CHOICE;
    lp.router.renormalize = (int)cfg_num(&f, "renormalize");
    lp.router.gate_bias = (int)cfg_num(&f, "router_bias");
    lp.router.capacity_factor = cfg_num(&f, "capacity_factor");
    lp.router.aux_loss_coef = cfg_num(&f, "aux_coef");
    lp.router.z_loss_coef = cfg_num(&f, "z_coef");
    lp.router.jitter = 0;
    lp.router.routed_scaling = cfg_num(&f, "routed_scaling");
    lp.F = (int64_t)cfg_num(&f, "F");
    lp.act = cfg_is(&f, "activation", "gelu") ? MOE_ACT_GELU : MOE_ACT_SWIGLU;
    lp.ffn_bias = (int)cfg_num(&f, "ffn_bias");
    lp.n_shared = (int)cfg_num(&f, "n_shared");
    lp.Fs = lp.n_shared > 0 ? (int64_t)cfg_num(&f, "shared_d_ff") : 0;
    lp.shared_gate = (int)cfg_num(&f, "shared_gate");
    lp.T_max = T;
    const int64_t D = lp.router.D, E = lp.router.E, F = lp.F, S = lp.n_shared, Fs = lp.Fs;
    check_int(&f, "capacity (moe_router_capacity)", (long long)cfg_num(&f, "capacity"),
              moe_router_capacity(&lp.router, T));

    moe_layer *L = NULL;
    moe_status st = moe_layer_create(&lp, &L);
    if (st != MOE_OK) {
        printf("    %s: moe_layer_create: %s: %s\n", path, moe_status_str(st), moe_last_error());
        failures++;
        fixture_free(&f);
        return;
    }
    moe_layer_weights w, g;
    moe_layer_weights_alloc(&lp, &w);
    moe_layer_weights_alloc(&lp, &g);
    load_into(&f, "wg", w.wg, D * E);
    load_into(&f, "bg", w.bg, E);
    load_into(&f, "w1", w.experts.w1, E * D * F);
    load_into(&f, "w2", w.experts.w2, E * F * D);
    load_into(&f, "w3", w.experts.w3, E * D * F);
    load_into(&f, "b1", w.experts.b1, E * F);
    load_into(&f, "b2", w.experts.b2, E * D);
    load_into(&f, "b3", w.experts.b3, E * F);
    load_into(&f, "shared_w1", w.shared.w1, S * D * Fs);
    load_into(&f, "shared_w2", w.shared.w2, S * Fs * D);
    load_into(&f, "shared_w3", w.shared.w3, S * D * Fs);
    load_into(&f, "shared_b1", w.shared.b1, S * Fs);
    load_into(&f, "shared_b2", w.shared.b2, S * D);
    load_into(&f, "shared_b3", w.shared.b3, S * Fs);
    load_into(&f, "shared_gate", w.ws, D);
    const tensor *x = need(&f, "x"), *dy = need(&f, "dy"), *bal = find(&f, "balance_bias");
    float *y = moe_xcalloc((size_t)(T * D), sizeof(float));
    float *dx = moe_xcalloc((size_t)(T * D), sizeof(float));
    float *zeros = moe_xcalloc((size_t)(T * D), sizeof(float));

    // 1. Full loss: forward, backward with dy into gradients pre-filled with PREFILL.
    const float PREFILL = 0.25f;
    moe_route_stats stats;
    memset(&stats, 0, sizeof stats);
    moe_layer_forward(L, y, &stats, x->data, T, &w, bal ? bal->data : NULL, NULL);
    compare(&f, "y", y, 0.0f, need(&f, "y"));
    compare_scalar(&f, "aux_loss", stats.aux_loss);
    compare_scalar(&f, "z_loss", stats.z_loss);
    const moe_route_plan *plan = moe_layer_plan(L);
    compare(&f, "scores", plan->probs, 0.0f, need(&f, "scores"));
    check_routing(&f, &lp, plan, &stats);

    fill_grads(&lp, &g, PREFILL);
    fill(dx, T * D, PREFILL);
    moe_layer_backward(L, dx, &g, dy->data, &w);
    compare(&f, "dx", dx, PREFILL, need(&f, "dx"));
    GRAD(wg, "dwg");
    GRAD(bg, "dbg");
    GRAD(experts.w1, "dw1");
    GRAD(experts.w2, "dw2");
    GRAD(experts.w3, "dw3");
    GRAD(experts.b1, "db1");
    GRAD(experts.b2, "db2");
    GRAD(experts.b3, "db3");
    GRAD(shared.w1, "dshared_w1");
    GRAD(shared.w2, "dshared_w2");
    GRAD(shared.w3, "dshared_w3");
    GRAD(shared.b1, "dshared_b1");
    GRAD(shared.b2, "dshared_b2");
    GRAD(shared.b3, "dshared_b3");
    GRAD(ws, "dshared_gate");

    // 2. Router losses alone (dy = 0): their gradient is checked directly, not as a small share.
    // Zero-filled: these gradients are ~1e-2, where the rounding of a 0.25 offset (1.5e-8) would
    // eat into the tolerance.
    if (find(&f, "auxz_dwg")) {
        const float PREFILL = 0.0f; // the GRAD macro reads this name
        fill_grads(&lp, &g, PREFILL);
        fill(dx, T * D, PREFILL);
        moe_layer_forward(L, y, &stats, x->data, T, &w, bal ? bal->data : NULL, NULL);
        moe_layer_backward(L, dx, &g, zeros, &w);
        compare(&f, "auxz_dx", dx, PREFILL, need(&f, "auxz_dx"));
        GRAD(wg, "auxz_dwg");
        GRAD(bg, "auxz_dbg");
    }

    free(y);
    free(dx);
    free(zeros);
    moe_layer_weights_free(&w);
    moe_layer_weights_free(&g);
    moe_layer_free(L);
    fixture_free(&f);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    DIR *dir = opendir(argv[1]);
    if (!dir) {
        fprintf(stderr, "%s: cannot open fixture directory\n", argv[1]);
        return 1;
    }
    char *names[64];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL && n < 64) {
        size_t len = strlen(de->d_name);
        if (len > 4 && strcmp(de->d_name + len - 4, ".bin") == 0) {
            names[n] = moe_xcalloc(strlen(argv[1]) + len + 2, 1);
            sprintf(names[n], "%s/%s", argv[1], de->d_name);
            n++;
        }
    }
    closedir(dir);
    if (n == 0) {
        fprintf(stderr,
                "%s: no *.bin fixtures (regenerate: /usr/bin/python3 "
                "tests/torch_fixtures.py)\n",
                argv[1]);
        return 1;
    }
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    for (int i = 0; i < n; i++) {
        run_case(names[i]);
        free(names[i]);
    }
    printf("%d fixture(s), %d failure(s)\n", n, failures);
    return failures ? 1 : 0;
}
