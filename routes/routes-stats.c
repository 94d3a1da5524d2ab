// routes-stats.c: the statistics of routes.h over one trace, and the stability of two. Counting
// only: (token id, expert) pairs are sorted once per layer so vocabularies of any size cost
// O(pairs log pairs), never a V × E table.
#include "routes.h"

#include <math.h>
#include <string.h>

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double xlog2x(double p) { return p > 0 ? p * log2(p) : 0; }

// Entropy (bits) of counts (n) with total tot.
static double entropy_of(const int64_t *c, int n, int64_t tot) {
    double h = 0;
    for (int i = 0; i < n && tot > 0; i++) h -= xlog2x((double)c[i] / (double)tot);
    return h;
}

// The expert of slot j of record i, or -1.
static int32_t slot_expert(const moe_trace *t, int64_t i, int j) {
    return t->expert[i * t->slots + j];
}

// Keeps expert e's MOE_ROUTES_TOP most frequent token ids (ties: the lower id, met first).
static void top_insert(moe_routes_layer *L, int e, int32_t tok, int64_t n, int64_t *topn) {
    int64_t *cn = topn + (size_t)e * MOE_ROUTES_TOP;
    for (int k = 0; k < MOE_ROUTES_TOP; k++) {
        if (L->top_token[e][k] >= 0 && cn[k] >= n) continue;
        for (int m = MOE_ROUTES_TOP - 1; m > k; m--)
            L->top_token[e][m] = L->top_token[e][m - 1], cn[m] = cn[m - 1];
        L->top_token[e][k] = tok, cn[k] = n;
        return;
    }
}

// MI(token id; expert) and each expert's top tokens from the layer's np pair keys
// (token·E + expert; sorted here): H(expert | token) = Σ_tok p(tok) H(expert | tok), over runs of
// one token id.
static void layer_mi_top(moe_routes_layer *L, uint64_t *key, int64_t np, int E) {
    qsort(key, (size_t)np, sizeof *key, cmp_u64);
    int64_t *topn = moe_xcalloc((size_t)E * MOE_ROUTES_TOP, sizeof *topn);
    double h_cond = 0;
    for (int64_t a = 0; a < np;) {
        const uint64_t tok = key[a] / (uint64_t)E;
        int64_t b = a, n_tok = 0;
        while (b < np && key[b] / (uint64_t)E == tok) b++;
        n_tok = b - a;
        double h = 0;
        for (int64_t r = a; r < b;) {
            int64_t q = r;
            while (q < b && key[q] == key[r]) q++;
            h -= xlog2x((double)(q - r) / (double)n_tok);
            top_insert(L, (int)(key[r] % (uint64_t)E), (int32_t)tok, q - r, topn);
            r = q;
        }
        h_cond += (double)n_tok / (double)np * h;
        a = b;
    }
    L->mi = np > 0 ? fmax(0.0, L->entropy - h_cond) : 0;
    for (int e = 0; e < E; e++)
        for (int k = 0; k < MOE_ROUTES_TOP; k++)
            L->top_share[e][k] =
                L->top_token[e][k] >= 0 && L->load[e] > 0
                    ? (double)topn[(size_t)e * MOE_ROUTES_TOP + k] / (double)L->load[e]
                    : 0;
    free(topn);
}
// Load, entropy, MI and top tokens of MoE layer l.
static void layer_pairs(const moe_trace *t, int l, moe_routes_layer *L) {
    const int E = t->E, S = t->slots;
    const int64_t N = t->n / t->n_moe;
    uint64_t *key = moe_xcalloc((size_t)(N * S) + 1, sizeof *key);
    int64_t np = 0;
    for (int64_t tok = 0; tok < N; tok++) {
        const int64_t i = tok * t->n_moe + l;
        for (int j = 0; j < S; j++) {
            int32_t e = slot_expert(t, i, j);
            if (e < 0) continue;
            L->load[e]++;
            if (t->dropped[i] >> j & 1u)
                L->dropped++;
            else
                L->kept[e]++;
            key[np++] = (uint64_t)t->token[i] * (uint64_t)E + (uint64_t)e;
        }
    }
    L->pairs = np;
    L->entropy = entropy_of(L->load, E, np);
    double mean = (double)np / E, mx = 0;
    for (int e = 0; e < E; e++) mx = fmax(mx, (double)L->load[e]);
    L->max_over_mean = np > 0 ? mx / mean : 0;
    layer_mi_top(L, key, np, E);
    free(key);
}

// 1 if expert e is in record i's slots [0, upto).
static int set_has(const moe_trace *t, int64_t i, int32_t e, int upto) {
    for (int j = 0; j < upto; j++)
        if (slot_expert(t, i, j) == e) return 1;
    return 0;
}

// Co-activation counts of MoE layer l.
static void layer_coact(const moe_trace *t, int l, moe_routes_layer *L) {
    const int E = t->E, S = t->slots;
    const int64_t N = t->n / t->n_moe;
    for (int64_t tok = 0; tok < N; tok++) {
        const int64_t i = tok * t->n_moe + l;
        for (int a = 0; a < S; a++) {
            int32_t ea = slot_expert(t, i, a);
            if (ea < 0 || set_has(t, i, ea, a)) continue; // sets: a repeated expert counts once
            L->coact[(size_t)ea * E + ea]++;
            for (int b = a + 1; b < S; b++) {
                int32_t eb = slot_expert(t, i, b);
                if (eb < 0 || eb == ea || set_has(t, i, eb, b)) continue;
                L->coact[(size_t)ea * E + eb]++, L->coact[(size_t)eb * E + ea]++;
            }
        }
    }
}

// Top-1 predictability from MoE layer l to l + 1.
static void layer_predict(const moe_trace *t, int l, moe_routes_layer *L) {
    const int E = t->E;
    const int64_t N = t->n / t->n_moe;
    int64_t *n = moe_xcalloc((size_t)E * E, sizeof *n), *col = moe_xcalloc((size_t)E, sizeof *col);
    int64_t tot = 0;
    for (int64_t tok = 0; tok < N; tok++) {
        int32_t a = slot_expert(t, tok * t->n_moe + l, 0);
        int32_t b = slot_expert(t, tok * t->n_moe + l + 1, 0);
        if (a < 0 || b < 0) continue;
        n[(size_t)a * E + b]++, col[b]++, tot++;
    }
    int64_t hit = 0;
    double hc = 0;
    for (int a = 0; a < E; a++) {
        const int64_t *na = n + (size_t)a * E; // next-layer top-1 counts after expert a
        int64_t row = 0, best = 0;
        for (int b = 0; b < E; b++) {
            row += na[b];
            if (na[b] > best) best = na[b];
        }
        hit += best; // the best predictor maps a to its commonest successor
        if (row > 0) hc += (double)row / (double)tot * entropy_of(na, E, row);
    }
    L->pred_tokens = tot;
    L->pred_acc = tot > 0 ? (double)hit / (double)tot : 0;
    L->pred_h_cond = hc;
    L->pred_h_next = entropy_of(col, E, tot);
    free(n);
    free(col);
}

moe_routes_stats *moe_routes_analyse(const moe_trace *t) {
    moe_routes_stats *s = moe_xcalloc(1, sizeof *s);
    s->E = t->E, s->n_moe = t->n_moe, s->tokens = t->n / t->n_moe;
    s->layers = moe_xcalloc((size_t)t->n_moe, sizeof *s->layers);
    for (int l = 0; l < t->n_moe; l++) {
        moe_routes_layer *L = &s->layers[l];
        L->load = moe_xcalloc((size_t)t->E, sizeof *L->load);
        L->kept = moe_xcalloc((size_t)t->E, sizeof *L->kept);
        L->coact = moe_xcalloc((size_t)t->E * t->E, sizeof *L->coact);
        L->top_token = moe_xcalloc((size_t)t->E, sizeof *L->top_token);
        L->top_share = moe_xcalloc((size_t)t->E, sizeof *L->top_share);
        for (int e = 0; e < t->E; e++)
            for (int k = 0; k < MOE_ROUTES_TOP; k++) L->top_token[e][k] = -1;
        layer_pairs(t, l, L);
        layer_coact(t, l, L);
        if (l + 1 < t->n_moe) layer_predict(t, l, L);
    }
    return s;
}

void moe_routes_stats_free(moe_routes_stats *s) {
    if (!s) return;
    for (int l = 0; l < s->n_moe; l++) {
        moe_routes_layer *L = &s->layers[l];
        free(L->load), free(L->kept), free(L->coact), free(L->top_token), free(L->top_share);
    }
    free(s->layers);
    free(s);
}

// ---------------------------------------------------------------- stability

moe_status moe_routes_stability(const moe_trace *a, const char *name_a, const moe_trace *b,
                                const char *name_b, double *changed, double *jaccard) {
    const Moe__TraceHeader *ha = a->h, *hb = b->h;
    if (ha->config_hash != hb->config_hash || a->slots != b->slots || a->E != b->E ||
        a->n_moe != b->n_moe)
        return moe_set_error(MOE_EINVAL,
                             "%s and %s come from models of different shapes (shape hash "
                             "%016llx vs %016llx; %d vs %d experts, %d vs %d MoE layers, %d vs %d "
                             "slots): routing stability compares traces of one model shape",
                             name_a, name_b, (unsigned long long)ha->config_hash,
                             (unsigned long long)hb->config_hash, a->E, b->E, a->n_moe, b->n_moe,
                             a->slots, b->slots);
    if (ha->probe_hash != hb->probe_hash || a->n != b->n)
        return moe_set_error(MOE_EINVAL,
                             "%s and %s were recorded on different probes (%lld vs %lld tokens; "
                             "probe \"%s\" vs \"%s\"): record both on the same validation batches "
                             "of the same data",
                             name_a, name_b, (long long)(a->n / a->n_moe),
                             (long long)(b->n / b->n_moe), ha->probe ? ha->probe : "",
                             hb->probe ? hb->probe : "");
    const int64_t N = a->n / a->n_moe;
    for (int l = 0; l < a->n_moe; l++) {
        int64_t diff = 0;
        double jsum = 0;
        for (int64_t tok = 0; tok < N; tok++) {
            const int64_t i = tok * a->n_moe + l;
            int na = 0, nb = 0, both = 0;
            for (int j = 0; j < a->slots; j++) { // sets: a repeated expert counts once
                int32_t ea = slot_expert(a, i, j), eb = slot_expert(b, i, j);
                if (ea >= 0 && !set_has(a, i, ea, j)) na++, both += set_has(b, i, ea, b->slots);
                if (eb >= 0 && !set_has(b, i, eb, j)) nb++;
            }
            const int uni = na + nb - both;
            diff += both != na || both != nb;
            jsum += uni > 0 ? (double)both / uni : 1.0;
        }
        changed[l] = N > 0 ? (double)diff / (double)N : 0;
        jaccard[l] = N > 0 ? jsum / (double)N : 1;
    }
    return MOE_OK;
}
