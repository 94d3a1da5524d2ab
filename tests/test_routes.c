// test_routes.c: the statistics of routes/routes.h against naive references on random traces
// (dense count tables, the best top-1 predictor found by trying every map of experts, sets as bit
// masks) and known answers: a deterministic token id → expert map gives MI = log2 E, routing
// independent of the token ≈ 0, a layer that is a permutation of the previous one is predicted
// exactly, identical traces are stable, a hand-made pair of sets has Jaccard 1/3; traces of
// another shape or probe are refused (MOE_EINVAL, exit 2).
#include "routes.h"
#include "test-util.h"

#include <string.h>

#define V 12 // token ids of the random traces

static Moe__TraceHeader *header(int64_t N, int E, int slots, int Lm) {
    Moe__TraceHeader *h = moe_xcalloc(1, sizeof *h);
    moe__trace_header__init(h);
    h->has_format_version = 1, h->format_version = MOE_TRACE_VERSION;
    h->has_n_experts = 1, h->n_experts = E;
    h->has_top_k = 1, h->top_k = slots;
    h->has_slots = 1, h->slots = slots;
    h->strategy = moe_xstrdup("token_choice");
    h->n_moe_layers = (size_t)Lm;
    h->moe_layers = moe_xcalloc((size_t)Lm, sizeof *h->moe_layers);
    for (int l = 0; l < Lm; l++) h->moe_layers[l] = l;
    h->has_n_tokens = 1, h->n_tokens = N;
    h->has_seq_len = 1, h->seq_len = (int32_t)N;
    h->has_n_records = 1, h->n_records = N * Lm;
    h->has_record_bytes = 1, h->record_bytes = 4 * moe_trace_record_words(slots);
    h->has_config_hash = 1, h->config_hash = moe_trace_shape_hash(h);
    h->has_probe_hash = 1, h->probe_hash = 99;
    return h;
}

// N tokens, ids < V; each record `slots` distinct experts (sometimes fewer), some dropped.
static moe_trace *random_trace(int64_t N, int E, int slots, int Lm, uint64_t seed) {
    moe_trace *t = moe_trace_alloc(header(N, E, slots, Lm));
    for (int64_t i = 0; i < t->n; i++) {
        t->pos[i] = (uint32_t)(i / Lm), t->layer[i] = (uint32_t)(i % Lm);
        t->token[i] = i % Lm ? t->token[i - 1] : (uint32_t)(test_rng(&seed) % V);
        int used = 0;
        for (int j = 0; j < slots; j++) {
            if (j > 0 && test_rng(&seed) % 8 == 0) break; // fewer experts (slot 0 always set)
            int e;
            do e = (int)(test_rng(&seed) % (uint64_t)E);
            while ((used >> e & 1) && test_rng(&seed) % 16); // now and then a repeat (sets)
            used |= 1 << e;
            t->expert[i * slots + j] = e;
            if (test_rng(&seed) % 6 == 0) t->dropped[i] |= 1u << j;
        }
    }
    return t;
}

static int64_t rec(const moe_trace *t, int64_t tok, int l) { return tok * t->n_moe + l; }

static double h2(double p) { return p > 0 ? -p * log2(p) : 0; }

// Naive per-layer figures: load, dropped, entropy, MI over a dense V × E table.
static void naive_layer(const moe_trace *t, int l, const moe_routes_layer *L) {
    const int E = t->E;
    const int64_t N = t->n / t->n_moe;
    double cnt[V][16] = {{0}}, tot = 0, load[16] = {0};
    int64_t dropped = 0;
    for (int64_t k = 0; k < N; k++)
        for (int j = 0; j < t->slots; j++) {
            int e = t->expert[rec(t, k, l) * t->slots + j];
            if (e < 0) continue;
            cnt[t->token[rec(t, k, l)]][e]++, load[e]++, tot++;
            dropped += t->dropped[rec(t, k, l)] >> j & 1;
        }
    double H = 0, mi = 0;
    for (int e = 0; e < E; e++) H += h2(load[e] / tot);
    for (int v = 0; v < V; v++) {
        double pv = 0;
        for (int e = 0; e < E; e++) pv += cnt[v][e] / tot;
        for (int e = 0; e < E; e++)
            if (cnt[v][e] > 0) mi += cnt[v][e] / tot * log2(cnt[v][e] / tot / (pv * load[e] / tot));
    }
    for (int e = 0; e < E; e++) {
        CHECK(L->load[e] == (int64_t)load[e], "layer %d load e%d: %lld vs %g", l, e,
              (long long)L->load[e], load[e]);
        // top tokens: count desc, then id asc
        int taken[V] = {0};
        for (int k = 0; k < MOE_ROUTES_TOP; k++) {
            int best = -1;
            for (int v = 0; v < V; v++)
                if (!taken[v] && cnt[v][e] > 0 && (best < 0 || cnt[v][e] > cnt[best][e])) best = v;
            if (best >= 0) taken[best] = 1;
            CHECK(L->top_token[e][k] == best, "layer %d e%d top %d: %d vs %d", l, e, k,
                  L->top_token[e][k], best);
            if (best >= 0)
                CHECK(fabs(L->top_share[e][k] - cnt[best][e] / load[e]) < 1e-12, "share");
        }
    }
    CHECK(L->dropped == dropped, "layer %d dropped %lld vs %lld", l, (long long)L->dropped,
          (long long)dropped);
    CHECK(fabs(L->entropy - H) < 1e-9, "layer %d entropy %.12f vs %.12f", l, L->entropy, H);
    CHECK(fabs(L->mi - mi) < 1e-9, "layer %d MI %.12f vs %.12f", l, L->mi, mi);
}

// Naive co-activation: sets as bit masks.
static void naive_coact(const moe_trace *t, int l, const moe_routes_layer *L) {
    const int E = t->E;
    for (int i = 0; i < E; i++)
        for (int j = 0; j < E; j++) {
            int64_t n = 0;
            for (int64_t k = 0; k < t->n / t->n_moe; k++) {
                int m = 0;
                for (int s = 0; s < t->slots; s++) {
                    int e = t->expert[rec(t, k, l) * t->slots + s];
                    if (e >= 0) m |= 1 << e;
                }
                n += (m >> i & 1) && (m >> j & 1);
            }
            CHECK(L->coact[i * E + j] == n, "coact L%d [%d][%d] %lld vs %lld", l, i, j,
                  (long long)L->coact[i * E + j], (long long)n);
        }
}

// The best top-1 predictor by trying every map a → b of E^E; H(next | this) from its definition.
static void naive_predict(const moe_trace *t, int l, const moe_routes_layer *L) {
    const int E = t->E;
    const int64_t N = t->n / t->n_moe;
    int map[8] = {0};
    int64_t best = 0, total = 1;
    for (int i = 0; i < E; i++) total *= E;
    for (int64_t code = 0; code < total; code++) {
        int64_t c = code, hit = 0;
        for (int i = 0; i < E; i++) map[i] = (int)(c % E), c /= E;
        for (int64_t k = 0; k < N; k++)
            hit +=
                map[t->expert[rec(t, k, l) * t->slots]] == t->expert[rec(t, k, l + 1) * t->slots];
        if (hit > best) best = hit;
    }
    double pab[8][8] = {{0}}, pa[8] = {0}, hc = 0;
    for (int64_t k = 0; k < N; k++) {
        int a = t->expert[rec(t, k, l) * t->slots], b = t->expert[rec(t, k, l + 1) * t->slots];
        pab[a][b] += 1.0 / (double)N, pa[a] += 1.0 / (double)N;
    }
    for (int a = 0; a < E; a++)
        for (int b = 0; b < E; b++)
            if (pab[a][b] > 0) hc -= pab[a][b] * log2(pab[a][b] / pa[a]);
    CHECK(fabs(L->pred_acc - (double)best / (double)N) < 1e-12, "L%d accuracy %.6f vs %.6f", l,
          L->pred_acc, (double)best / (double)N);
    CHECK(fabs(L->pred_h_cond - hc) < 1e-9, "L%d H(next|this) %.9f vs %.9f", l, L->pred_h_cond, hc);
}

static void against_naive(void) {
    moe_trace *t = random_trace(300, 6, 2, 3, 11);
    moe_routes_stats *s = moe_routes_analyse(t);
    CHECK(s->tokens == 300 && s->n_moe == 3, "shape");
    for (int l = 0; l < 3; l++) {
        naive_layer(t, l, &s->layers[l]);
        naive_coact(t, l, &s->layers[l]);
        if (l < 2) naive_predict(t, l, &s->layers[l]);
    }
    // stability against a perturbed copy, naive: bit masks
    moe_trace *u = random_trace(300, 6, 2, 3, 11);
    uint64_t seed = 5;
    for (int64_t i = 0; i < u->n; i += 4) u->expert[i * 2 + 1] = -1 + (int)(test_rng(&seed) % 3);
    double ch[3], jc[3];
    OK(moe_routes_stability(t, "t", u, "u", ch, jc));
    for (int l = 0; l < 3; l++) {
        double diff = 0, js = 0;
        for (int64_t k = 0; k < 300; k++) {
            int a = 0, b = 0;
            for (int j = 0; j < 2; j++) {
                int ea = t->expert[rec(t, k, l) * 2 + j], eb = u->expert[rec(u, k, l) * 2 + j];
                if (ea >= 0) a |= 1 << ea;
                if (eb >= 0) b |= 1 << eb;
            }
            diff += a != b;
            js += (a | b) ? (double)__builtin_popcount(a & b) / __builtin_popcount(a | b) : 1;
        }
        CHECK(fabs(ch[l] - diff / 300) < 1e-12 && fabs(jc[l] - js / 300) < 1e-12,
              "stability L%d: %.6f %.6f vs %.6f %.6f", l, ch[l], jc[l], diff / 300, js / 300);
    }
    moe_routes_stats_free(s);
    moe_trace_free(t);
    moe_trace_free(u);
}

static void known_answers(void) {
    // Deterministic: k = 1, E = 4, ids 0..15 equally often, expert = id % 4; layer 1 = layer 0 + 1.
    moe_trace *t = moe_trace_alloc(header(1600, 4, 1, 2));
    for (int64_t k = 0; k < 1600; k++)
        for (int l = 0; l < 2; l++) {
            int64_t i = rec(t, k, l);
            t->pos[i] = (uint32_t)k, t->layer[i] = (uint32_t)l, t->token[i] = (uint32_t)(k % 16);
            t->expert[i] = (int32_t)((k % 16 % 4 + l) % 4);
        }
    moe_routes_stats *s = moe_routes_analyse(t);
    CHECK(fabs(s->layers[0].mi - 2.0) < 1e-12, "deterministic MI %.12f, want log2 4 = 2",
          s->layers[0].mi);
    CHECK(fabs(s->layers[0].entropy - 2.0) < 1e-12 && fabs(s->layers[0].max_over_mean - 1) < 1e-12,
          "balanced load: entropy %.6f, max/mean %.6f", s->layers[0].entropy,
          s->layers[0].max_over_mean);
    CHECK(s->layers[0].pred_acc == 1.0 && fabs(s->layers[0].pred_h_cond) < 1e-12 &&
              fabs(s->layers[0].pred_h_next - 2.0) < 1e-12,
          "a permutation is predicted exactly: %.6f %.6f", s->layers[0].pred_acc,
          s->layers[0].pred_h_cond);
    CHECK(s->layers[0].top_token[1][0] == 1 && fabs(s->layers[0].top_share[1][0] - 0.25) < 1e-12,
          "expert 1 takes ids 1, 5, 9, 13 (a quarter each)");
    double ch[2], jc[2];
    OK(moe_routes_stability(t, "t", t, "t", ch, jc));
    CHECK(ch[0] == 0 && jc[0] == 1 && ch[1] == 0 && jc[1] == 1, "a trace is stable against itself");
    moe_routes_stats_free(s);
    // Routing independent of the token: MI ≈ 0 (estimator bias ~ (V-1)(E-1)/(2 N ln 2) ≈ 3e-4).
    uint64_t seed = 3;
    for (int64_t i = 0; i < t->n; i++)
        t->token[i] = (uint32_t)(test_rng(&seed) % 4),
        t->expert[i] = (int32_t)(test_rng(&seed) % 4);
    s = moe_routes_analyse(t);
    CHECK(s->layers[0].mi < 0.01 && s->layers[1].mi < 0.01, "independent routing MI %.4f %.4f",
          s->layers[0].mi, s->layers[1].mi);
    moe_routes_stats_free(s);
    moe_trace_free(t);
    // Jaccard by hand: {0,1} vs {1,2} = 1/3; {0,1} vs {1,0} = 1 (order does not matter).
    moe_trace *a = moe_trace_alloc(header(2, 4, 2, 1)), *b = moe_trace_alloc(header(2, 4, 2, 1));
    int ea[4] = {0, 1, 0, 1}, eb[4] = {1, 2, 1, 0};
    memcpy(a->expert, ea, sizeof ea), memcpy(b->expert, eb, sizeof eb);
    a->pos[1] = b->pos[1] = 1;
    OK(moe_routes_stability(a, "a", b, "b", ch, jc));
    CHECK(fabs(ch[0] - 0.5) < 1e-12 && fabs(jc[0] - (1.0 / 3 + 1) / 2) < 1e-12,
          "changed %.4f (want 0.5), Jaccard %.4f (want 2/3)", ch[0], jc[0]);
    // Not comparable: another probe, another shape.
    b->h->probe_hash = 7;
    CHECK(moe_routes_stability(a, "a", b, "b", ch, jc) == MOE_EINVAL &&
              strstr(moe_last_error(), "different probes"),
          "another probe refused: %s", moe_last_error());
    moe_trace *c = moe_trace_alloc(header(2, 5, 2, 1));
    CHECK(moe_routes_stability(a, "a", c, "c", ch, jc) == MOE_EINVAL &&
              strstr(moe_last_error(), "different shapes") &&
              moe_exit_code(MOE_EINVAL) == MOE_EXIT_USAGE,
          "another shape refused: %s", moe_last_error());
    moe_trace_free(a), moe_trace_free(b), moe_trace_free(c);
}

int main(void) {
    against_naive();
    known_answers();
    return test_summary("test_routes");
}
