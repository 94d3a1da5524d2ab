// routes-print.c: the statistics of routes.h as text tables and as one JSON document (jansson).
// Token ids of a byte vocabulary (256) are shown with their character when it is printable.
#include "routes.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

// "101 'e'" (byte vocabulary, printable) or "101".
static void fmt_token(char *b, size_t cap, int32_t tok, int64_t vocab) {
    if (tok >= 33 && tok < 127 && vocab == 256)
        snprintf(b, cap, "%d '%c'", (int)tok, (char)tok);
    else if (tok == 32 && vocab == 256)
        snprintf(b, cap, "32 ' '");
    else
        snprintf(b, cap, "%d", (int)tok);
}

static int64_t trace_vocab(const moe_trace *t) {
    return t->h->model && t->h->model->has_vocab_size ? t->h->model->vocab_size : 256;
}

static void print_layers(FILE *f, const moe_trace *t, const moe_routes_stats *s) {
    fprintf(f,
            "  per layer (entropy of the load shares and MI(token id; expert) in bits; max "
            "entropy log2 E = %.3f):\n",
            log2((double)s->E));
    fprintf(f, "  %5s %5s %8s %8s %8s %8s %8s %11s %9s %8s\n", "layer", "block", "pairs", "dropped",
            "max/mean", "entropy", "MI", "top1->next", "H(n|this)", "H(next)");
    for (int l = 0; l < s->n_moe; l++) {
        const moe_routes_layer *L = &s->layers[l];
        fprintf(f, "  %5d %5d %8lld %8lld %8.3f %8.3f %8.3f", l, t->h->moe_layers[l],
                (long long)L->pairs, (long long)L->dropped, L->max_over_mean, L->entropy, L->mi);
        if (l + 1 < s->n_moe)
            fprintf(f, " %10.1f%% %9.3f %8.3f\n", 100 * L->pred_acc, L->pred_h_cond,
                    L->pred_h_next);
        else
            fprintf(f, " %11s %9s %8s\n", "-", "-", "-");
    }
}

static void print_load(FILE *f, const moe_routes_stats *s) {
    fprintf(f, "  load per expert (%% of the layer's pairs; kept after capacity in the JSON):\n");
    fprintf(f, "  %5s", "layer");
    for (int e = 0; e < s->E; e++) fprintf(f, " %6s%-2d", "e", e);
    fputc('\n', f);
    for (int l = 0; l < s->n_moe; l++) {
        const moe_routes_layer *L = &s->layers[l];
        fprintf(f, "  %5d", l);
        for (int e = 0; e < s->E; e++)
            fprintf(f, " %7.2f%%", L->pairs ? 100.0 * (double)L->load[e] / (double)L->pairs : 0);
        fputc('\n', f);
    }
}

static void print_special(FILE *f, const moe_trace *t, const moe_routes_stats *s) {
    const int64_t V = trace_vocab(t);
    fprintf(f, "  specialization (per expert: its most frequent token ids, share of its load):\n");
    for (int l = 0; l < s->n_moe; l++) {
        const moe_routes_layer *L = &s->layers[l];
        fprintf(f, "  layer %d (block %d), MI %.3f bits:\n", l, t->h->moe_layers[l], L->mi);
        for (int e = 0; e < s->E; e++) {
            fprintf(f, "    e%-3d load %7lld:", e, (long long)L->load[e]);
            for (int k = 0; k < MOE_ROUTES_TOP && L->top_token[e][k] >= 0; k++) {
                char tok[32];
                fmt_token(tok, sizeof tok, L->top_token[e][k], V);
                fprintf(f, "%s %s %.1f%%", k ? "," : "", tok, 100 * L->top_share[e][k]);
            }
            fputc('\n', f);
        }
    }
}

// The three most co-activated pairs of a layer and their lift over independence.
static void print_coact(FILE *f, const moe_routes_stats *s) {
    fprintf(f,
            "  co-activation (tokens choosing both; lift = observed / expected if independent):\n");
    const int E = s->E;
    for (int l = 0; l < s->n_moe; l++) {
        const moe_routes_layer *L = &s->layers[l];
        int bi[3] = {-1, -1, -1}, bj[3] = {-1, -1, -1};
        int64_t bn[3] = {0, 0, 0};
        for (int i = 0; i < E; i++)
            for (int j = i + 1; j < E; j++) {
                int64_t n = L->coact[(size_t)i * E + j];
                for (int k = 0; k < 3; k++) {
                    if (n <= bn[k]) continue;
                    for (int m = 2; m > k; m--)
                        bi[m] = bi[m - 1], bj[m] = bj[m - 1], bn[m] = bn[m - 1];
                    bi[k] = i, bj[k] = j, bn[k] = n;
                    break;
                }
            }
        fprintf(f, "    layer %d:", l);
        if (bi[0] < 0) fprintf(f, " no token has two experts");
        for (int k = 0; k < 3 && bi[k] >= 0; k++) {
            const double N = (double)s->tokens, pi = L->coact[(size_t)bi[k] * E + bi[k]] / N,
                         pj = L->coact[(size_t)bj[k] * E + bj[k]] / N;
            fprintf(f, "%s e%d+e%d %lld tokens (%.1f%%, lift %.2f)", k ? "," : "", bi[k], bj[k],
                    (long long)bn[k], 100 * bn[k] / N, pi * pj > 0 ? bn[k] / N / (pi * pj) : 0);
        }
        fputc('\n', f);
    }
}

void moe_routes_print(FILE *f, const char *name, const moe_trace *t, const moe_routes_stats *s) {
    const Moe__TraceHeader *h = t->h;
    fprintf(f, "%s: step %lld%s%s, %lld tokens, %d experts, top-%d (%s), %d MoE layers\n", name,
            (long long)h->step, h->checkpoint && h->checkpoint[0] ? ", checkpoint " : "",
            h->checkpoint && h->checkpoint[0] ? h->checkpoint : "", (long long)s->tokens, s->E,
            h->top_k, h->strategy ? h->strategy : "?", s->n_moe);
    fprintf(f, "  probe: %s\n", h->probe ? h->probe : "?");
    print_layers(f, t, s);
    print_load(f, s);
    print_special(f, t, s);
    print_coact(f, s);
}

void moe_routes_print_stability(FILE *f, const char *a, const char *b, int n_moe,
                                const int32_t *moe_layers, const double *changed,
                                const double *jaccard) {
    fprintf(f, "routing stability %s -> %s:\n  %5s %5s %9s %13s\n", a, b, "layer", "block",
            "changed", "mean Jaccard");
    for (int l = 0; l < n_moe; l++)
        fprintf(f, "  %5d %5d %8.1f%% %13.4f\n", l, moe_layers[l], 100 * changed[l], jaccard[l]);
}

// ---------------------------------------------------------------- JSON

static json_t *json_i64s(const int64_t *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *json_layer(const moe_trace *t, const moe_routes_stats *s, int l) {
    const moe_routes_layer *L = &s->layers[l];
    json_t *o = json_object(), *sp = json_array(), *co = json_array();
    json_object_set_new(o, "layer", json_integer(l));
    json_object_set_new(o, "block", json_integer(t->h->moe_layers[l]));
    json_object_set_new(o, "pairs", json_integer(L->pairs));
    json_object_set_new(o, "dropped", json_integer(L->dropped));
    json_object_set_new(o, "load", json_i64s(L->load, s->E));
    json_object_set_new(o, "kept", json_i64s(L->kept, s->E));
    json_object_set_new(o, "max_over_mean", json_real(L->max_over_mean));
    json_object_set_new(o, "entropy_bits", json_real(L->entropy));
    json_object_set_new(o, "mi_bits", json_real(L->mi));
    for (int e = 0; e < s->E; e++) {
        json_t *x = json_object(), *tok = json_array(), *sh = json_array();
        for (int k = 0; k < MOE_ROUTES_TOP && L->top_token[e][k] >= 0; k++) {
            json_array_append_new(tok, json_integer(L->top_token[e][k]));
            json_array_append_new(sh, json_real(L->top_share[e][k]));
        }
        json_object_set_new(x, "tokens", tok);
        json_object_set_new(x, "shares", sh);
        json_array_append_new(sp, x);
        json_array_append_new(co, json_i64s(L->coact + (size_t)e * s->E, s->E));
    }
    json_object_set_new(o, "specialization", sp);
    json_object_set_new(o, "coactivation", co);
    if (l + 1 < s->n_moe) {
        json_t *p = json_object();
        json_object_set_new(p, "tokens", json_integer(L->pred_tokens));
        json_object_set_new(p, "accuracy", json_real(L->pred_acc));
        json_object_set_new(p, "h_next_given_this_bits", json_real(L->pred_h_cond));
        json_object_set_new(p, "h_next_bits", json_real(L->pred_h_next));
        json_object_set_new(o, "predict_next", p);
    }
    return o;
}

static json_t *json_trace(const char *name, const moe_trace *t, const moe_routes_stats *s) {
    json_t *o = json_object(), *ls = json_array();
    json_object_set_new(o, "trace", json_string(name));
    json_object_set_new(o, "step", json_integer(t->h->step));
    json_object_set_new(o, "checkpoint", json_string(t->h->checkpoint ? t->h->checkpoint : ""));
    json_object_set_new(o, "probe", json_string(t->h->probe ? t->h->probe : ""));
    json_object_set_new(o, "tokens", json_integer(s->tokens));
    json_object_set_new(o, "n_experts", json_integer(s->E));
    json_object_set_new(o, "top_k", json_integer(t->h->top_k));
    json_object_set_new(o, "strategy", json_string(t->h->strategy ? t->h->strategy : ""));
    for (int l = 0; l < s->n_moe; l++) json_array_append_new(ls, json_layer(t, s, l));
    json_object_set_new(o, "layers", ls);
    return o;
}

int moe_routes_json(FILE *f, const char *const *names, moe_trace *const *traces,
                    moe_routes_stats *const *stats, int n, const double *const *changed,
                    const double *const *jaccard) {
    json_t *root = json_object(), *ts = json_array(), *st = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(ts, json_trace(names[i], traces[i], stats[i]));
    for (int i = 1; i < n; i++) {
        json_t *o = json_object(), *c = json_array(), *j = json_array();
        for (int l = 0; l < traces[0]->n_moe; l++) {
            json_array_append_new(c, json_real(changed[i][l]));
            json_array_append_new(j, json_real(jaccard[i][l]));
        }
        json_object_set_new(o, "from", json_string(names[0]));
        json_object_set_new(o, "to", json_string(names[i]));
        json_object_set_new(o, "changed", c);
        json_object_set_new(o, "jaccard", j);
        json_array_append_new(st, o);
    }
    json_object_set_new(root, "traces", ts);
    json_object_set_new(root, "stability", st);
    int rc = json_dumpf(root, f, JSON_INDENT(1) | JSON_REAL_PRECISION(9));
    if (rc == 0) fputc('\n', f);
    json_decref(root);
    return rc == 0 && !ferror(f) ? 0 : -1;
}
