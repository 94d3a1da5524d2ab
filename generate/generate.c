// generate.c: sampling from a trained checkpoint (generate.h). One full forward over the context
// window per token (no key/value cache), the window sliding once the context outgrows it; rank 0
// draws each token and broadcasts it, every rank holding the same one sequence.
#include "generate.h"

#include "config.h"
#include "train.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------- sampling

double moe_sample_uniform(uint64_t seed, int64_t i) {
    const uint64_t x = moe_splitmix64(seed ^ moe_splitmix64((uint64_t)i));
    return (double)(x >> 11) * (1.0 / 9007199254740992.0); // 2^-53
}

// Descending by logit, ties to the lower id (a total order: the pick is deterministic).
static const float *moe_sample_keys;
static int moe_sample_cmp(const void *a, const void *b) {
    const int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    const float x = moe_sample_keys[i], y = moe_sample_keys[j];
    if (x != y) return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

static int32_t moe_sample_argmax(const float *logits, int64_t V) {
    int64_t best = 0;
    for (int64_t j = 1; j < V; j++)
        if (logits[j] > logits[best]) best = j;
    return (int32_t)best;
}

int32_t moe_sample(const float *logits, int64_t V, const moe_sample_params *p, double u,
                   int32_t *idx) {
    MOE_ASSERT(V > 0 && p->temperature >= 0);
    if (p->temperature == 0) return moe_sample_argmax(logits, V);
    const int64_t k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    for (int64_t j = 0; j < V; j++) idx[j] = (int32_t)j;
    moe_sample_keys = logits; // not thread-safe; the caller is one thread per rank
    qsort(idx, (size_t)V, sizeof *idx, moe_sample_cmp);
    const double top = logits[idx[0]], invt = 1.0 / p->temperature;
    double total = 0;
    for (int64_t j = 0; j < k; j++) total += exp(((double)logits[idx[j]] - top) * invt);
    const double target = u * total;
    double acc = 0;
    for (int64_t j = 0; j < k; j++) {
        acc += exp(((double)logits[idx[j]] - top) * invt);
        if (acc > target) return idx[j];
    }
    return idx[k - 1]; // u·total rounded up to the total
}

// ---------------------------------------------------------------- the checkpoint's config

moe_status moe_generate_config(const char *where, const char **sets, int n_sets, char *dir,
                               size_t cap, Moe__Config **out) {
    *out = NULL;
    Moe__CheckpointManifest *man = NULL;
    moe_status st = moe_ckpt_resolve(where, dir, cap);
    if (!st) st = moe_ckpt_read_manifest(dir, &man);
    if (!st && !man->config) st = moe_set_error(MOE_ECORRUPT, "%s: manifest has no config", dir);
    if (st) goto out;
    Moe__Config *cfg = moe_config_copy(man->config), *def = moe_config_new_default();
#define MOE_GEN_FILL(f)                                                                            \
    if (!cfg->f) {                                                                                 \
        cfg->f = def->f;                                                                           \
        def->f = NULL;                                                                             \
    }
    MOE_GEN_FILL(model)
    MOE_GEN_FILL(router)
    MOE_GEN_FILL(train)
    MOE_GEN_FILL(parallel)
    MOE_GEN_FILL(data)
#undef MOE_GEN_FILL
    moe_config_free(def);
    cfg->parallel->ep_size = 1; // experts all local (any world size) unless --set says otherwise
    for (int i = 0; i < n_sets && !st; i++) st = moe_config_set(cfg, sets[i]);
    if (st)
        moe_config_free(cfg);
    else
        *out = cfg;
out:
    if (man) protobuf_c_message_free_unpacked(&man->base, NULL);
    return st;
}

// ---------------------------------------------------------------- prompt and output

static int moe_generate_bytes(const Moe__Config *cfg) {
    return cfg->data->format == MOE__DATA_CONFIG__FORMAT__text;
}

// The prompt as ids into ctx (cap entries); *n gets their count.
static moe_status moe_generate_prompt(const Moe__Config *cfg, const char *prompt, int32_t *ctx,
                                      int64_t cap, int64_t *n) {
    const int64_t V = cfg->model->vocab_size;
    *n = 0;
    if (!prompt || !prompt[0]) {
        ctx[(*n)++] = moe_generate_bytes(cfg) && V > '\n' ? '\n' : 0;
        return MOE_OK;
    }
    if (moe_generate_bytes(cfg)) {
        for (const char *s = prompt; *s && *n < cap; s++) ctx[(*n)++] = (unsigned char)*s;
        return MOE_OK;
    }
    for (const char *s = prompt; *s;) {
        while (isspace((unsigned char)*s)) s++;
        if (!*s) break;
        char *end;
        errno = 0;
        const long long id = strtoll(s, &end, 10);
        if (end == s || errno || id < 0 || id >= V || (*end && !isspace((unsigned char)*end)))
            return moe_set_error(MOE_EUSAGE,
                                 "--prompt: token files (data.format = u16_tokens) take "
                                 "whitespace-separated token ids in [0, %lld); got '%.40s'",
                                 (long long)V, s);
        if (*n == cap) break;
        ctx[(*n)++] = (int32_t)id;
        s = end;
    }
    if (*n == 0) ctx[(*n)++] = 0;
    return MOE_OK;
}

static void moe_generate_emit(const Moe__Config *cfg, FILE *out, int32_t id, int first) {
    if (!out) return;
    if (!moe_generate_bytes(cfg))
        fprintf(out, first ? "%d" : " %d", (int)id);
    else if (id < 256)
        fputc(id, out);
    else
        fprintf(out, "<%d>", (int)id); // a byte config with vocab_size > 256
    fflush(out);
}

// ---------------------------------------------------------------- the loop

// The config the generation model is built with: one sequence per rank of S positions, dropless
// token choice (every token reaches its top-k experts, as at inference in Megatron and Mixtral).
static moe_status moe_generate_model_config(const Moe__Config *cfg, const moe_generate_params *p,
                                            int W, Moe__Config **out) {
    const Moe__ModelConfig *mc = cfg->model;
    const int64_t maxS = mc->max_seq_len > 0 ? mc->max_seq_len : cfg->train->seq_len;
    const int64_t S = p->context > 0 ? p->context : cfg->train->seq_len;
    if (S > maxS)
        return moe_set_error(MOE_EUSAGE,
                             "--context %lld exceeds the model's positions (model.max_seq_len "
                             "= %lld); pass at most %lld",
                             (long long)S, (long long)maxS, (long long)maxS);
    if (p->sample.top_k > mc->vocab_size)
        return moe_set_error(MOE_EUSAGE, "--top-k %d exceeds the vocabulary (%lld tokens)",
                             p->sample.top_k, (long long)mc->vocab_size);
    Moe__Config *g = moe_config_copy(cfg);
    g->train->seq_len = (int32_t)S;
    g->train->global_batch = W;
    if (g->router->strategy == MOE__ROUTER_CONFIG__STRATEGY__token_choice)
        g->router->capacity_factor = 0;
    moe_status st = moe_config_validate(g, W);
    if (st) {
        moe_config_free(g);
        return st;
    }
    *out = g;
    return MOE_OK;
}

// Fills the (1, S+1) window with the last min(n, S) context ids, padded with the last id (the
// positions after the context do not reach its logits: causal attention, dropless routing).
static int64_t moe_generate_window(int32_t *win, const int32_t *ctx, int64_t n, int64_t S) {
    const int64_t w = n < S ? n : S;
    for (int64_t i = 0; i < w; i++) win[i] = ctx[n - w + i];
    for (int64_t i = w; i <= S; i++) win[i] = ctx[n - 1];
    return w;
}

static moe_status moe_generate_loop(moe_model *m, const moe_comm *c, const Moe__Config *cfg,
                                    const moe_generate_params *p, int32_t *ctx, int64_t n,
                                    FILE *out) {
    const int64_t S = m->S, V = m->V;
    int32_t *win = moe_xcalloc((size_t)S + 1, sizeof *win);
    int32_t *idx = moe_xcalloc((size_t)V, sizeof *idx);
    moe_status st = MOE_OK;
    for (int64_t i = 0; i < p->tokens && !st; i++) {
        const int64_t w = moe_generate_window(win, ctx, n, S);
        moe_model_loss loss;
        st = moe_model_forward(m, win, 0, 0, 0, 0, &loss);
        if (st) break;
        int32_t id = moe_sample(moe_model_logits(m) + (w - 1) * V, V, &p->sample,
                                moe_sample_uniform(p->seed, i), idx);
        if (c) st = moe_comm_bcast(c, MOE_COMM_WORLD, &id, sizeof id); // rank 0's draw
        ctx[n++] = id;
        moe_generate_emit(cfg, out, id, 0);
    }
    free(win);
    free(idx);
    return st;
}

// The model of config g at c's layout (created on every rank, agreed), with the checkpoint dir
// loaded into it. *m and *ck for the caller to free, also on failure.
static moe_status moe_generate_load(const Moe__Config *g, const moe_comm *c, const char *dir,
                                    moe_model **m, moe_ckpt **ck) {
    moe_model_layout lay = moe_model_layout_of(c);
    moe_status st = moe_model_create(g, &lay, c, 1, m);
    if (c) st = moe_comm_agree(c, st);
    if (st) return st;
    *ck = moe_train_ckpt_register(*m);
    return moe_train_ckpt_load(*m, *ck, c, dir, g, NULL);
}

moe_status moe_generate_run(const Moe__Config *cfg, const char *dir, const moe_comm *c,
                            const moe_generate_params *p, FILE *out) {
    const int W = c ? moe_comm_size(c, MOE_COMM_WORLD) : 1;
    if (c && moe_comm_rank(c, MOE_COMM_WORLD) != 0) out = NULL;
    Moe__Config *g = NULL;
    moe_model *m = NULL;
    moe_ckpt *ck = NULL;
    int32_t *ctx = NULL;
    moe_status st = moe_generate_model_config(cfg, p, W, &g);
    if (st) return st;
    const int64_t cap = (int64_t)strlen(p->prompt ? p->prompt : "") + 1 + p->tokens;
    ctx = moe_xcalloc((size_t)cap, sizeof *ctx);
    int64_t n = 0;
    if ((st = moe_generate_prompt(g, p->prompt, ctx, cap, &n))) goto out;
    if ((st = moe_generate_load(g, c, dir, &m, &ck))) goto out;
    for (int64_t i = 0; i < n; i++) moe_generate_emit(g, out, ctx[i], i == 0);
    st = moe_generate_loop(m, c, g, p, ctx, n, out);
    if (out) fputc('\n', out);
out:
    moe_ckpt_free(ck);
    moe_model_free(m);
    free(ctx);
    moe_config_free(g);
    return st;
}

// ---------------------------------------------------------------- the routing of one text

static void moe_json_print_string(FILE *out, const char *s) {
    fputc('"', out);
    for (; *s; s++) {
        const unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(out, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(out, "\\u%04x", ch);
        else
            fputc(ch, out);
    }
    fputc('"', out);
}

// Token t's pairs as (expert, weight), heaviest first: its packed rows (tok_offsets / tok_rows),
// each row's expert found in offsets — the same for token choice and expert choice.
static int moe_routes_of_token(const moe_route_plan *pl, int64_t t, int32_t *ex, float *wt,
                               int cap) {
    int n = 0;
    for (int64_t q = pl->tok_offsets[t]; q < pl->tok_offsets[t + 1] && n < cap; q++) {
        const int32_t r = pl->tok_rows[q];
        int lo = 0, hi = pl->E - 1; // the expert e with offsets[e] <= r < offsets[e+1]
        while (lo < hi) {
            const int mid = (lo + hi + 1) / 2;
            if (pl->offsets[mid] <= r)
                lo = mid;
            else
                hi = mid - 1;
        }
        int k = n++;
        for (; k > 0 && wt[k - 1] < pl->row_weight[r]; k--) ex[k] = ex[k - 1], wt[k] = wt[k - 1];
        ex[k] = lo, wt[k] = pl->row_weight[r];
    }
    return n;
}

static void moe_routes_token(FILE *out, const Moe__Config *cfg, int32_t id, int json) {
    if (!moe_generate_bytes(cfg) || json)
        fprintf(out, json ? "%d" : "%6d", id);
    else if (id >= 0x20 && id < 0x7f && id != '\\' && id != '\'')
        fprintf(out, "   '%c'", (char)id);
    else
        fprintf(out, "  \\x%02x", (unsigned)id);
}

static void moe_routes_print_text(FILE *out, const moe_model *m, const Moe__Config *cfg,
                                  const char *dir, const int32_t *ctx, int64_t n, int json) {
    int32_t ex[64];
    float wt[64];
    if (json) {
        fprintf(out, "{\"checkpoint\":");
        moe_json_print_string(out, dir);
        fprintf(out, ",\"n_experts\":%d,\"top_k\":%d,\"tokens\":[", m->E, m->K);
        for (int64_t t = 0; t < n; t++) fprintf(out, "%s%d", t ? "," : "", ctx[t]);
        fprintf(out, "],\"layers\":[");
    } else
        fprintf(out, "moe routes: %s, %lld tokens, top-%d of %d experts (expert: combine weight)\n",
                dir, (long long)n, m->K, m->E);
    for (int i = 0, l = 0; i < m->n_moe; i++, l++) {
        while (m->moe_index[l] != i) l++;
        const moe_route_plan *pl = moe_model_route_plan(m, i);
        if (json)
            fprintf(out, "%s{\"layer\":%d,\"routes\":[", i ? "," : "", l);
        else
            fprintf(out, "layer %d:\n   pos   token  experts\n", l);
        for (int64_t t = 0; t < n; t++) {
            const int k = moe_routes_of_token(pl, t, ex, wt, 64);
            if (json) {
                fprintf(out, "%s{\"experts\":[", t ? "," : "");
                for (int j = 0; j < k; j++) fprintf(out, "%s%d", j ? "," : "", ex[j]);
                fprintf(out, "],\"weights\":[");
                for (int j = 0; j < k; j++) fprintf(out, "%s%.6g", j ? "," : "", wt[j]);
                fprintf(out, "]}");
                continue;
            }
            fprintf(out, "  %4lld  ", (long long)t);
            moe_routes_token(out, cfg, ctx[t], 0);
            fprintf(out, " ");
            for (int j = 0; j < k; j++) fprintf(out, " %3d: %.3f", ex[j], wt[j]);
            fprintf(out, k ? "\n" : "  (no expert: dropped)\n");
        }
        if (json) fprintf(out, "]}");
    }
    fprintf(out, json ? "]}\n" : "");
}

moe_status moe_generate_routes(const Moe__Config *cfg, const char *dir, const moe_comm *c,
                               const char *text, int json, FILE *out) {
    const int W = c ? moe_comm_size(c, MOE_COMM_WORLD) : 1;
    if (c && moe_comm_rank(c, MOE_COMM_WORLD) != 0) out = NULL;
    const int64_t cap = (int64_t)strlen(text) + 1;
    int32_t *ctx = moe_xcalloc((size_t)cap, sizeof *ctx);
    Moe__Config *g = NULL;
    moe_model *m = NULL;
    moe_ckpt *ck = NULL;
    int64_t n = 0;
    moe_status st = moe_generate_prompt(cfg, text, ctx, cap, &n);
    if (!st && n < 1) st = moe_set_error(MOE_EUSAGE, "--text is empty: give at least one token");
    moe_generate_params p = {text, 1, (int)n, {0, 0}, 0};
    if (!st && (st = moe_generate_model_config(cfg, &p, W, &g)) == MOE_EUSAGE)
        st = moe_set_error(MOE_EUSAGE,
                           "--text has %lld tokens, more than the model's positions "
                           "(model.max_seq_len = %lld): shorten it",
                           (long long)n, (long long)cfg->model->max_seq_len);
    if (st) goto out;
    if ((st = moe_generate_load(g, c, dir, &m, &ck))) goto out;
    if (m->n_moe == 0) {
        st = moe_set_error(MOE_EUSAGE, "%s: the model has no MoE layer: nothing is routed", dir);
        goto out;
    }
    int32_t *win = moe_xcalloc((size_t)n + 1, sizeof *win);
    moe_generate_window(win, ctx, n, n);
    moe_model_loss loss;
    st = moe_model_forward(m, win, 0, 0, 0, 0, &loss);
    free(win);
    if (!st && out) moe_routes_print_text(out, m, g, dir, ctx, n, json);
out:
    moe_ckpt_free(ck);
    moe_model_free(m);
    free(ctx);
    moe_config_free(g);
    return st;
}
