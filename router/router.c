// router.c: the router forward (gate GEMM, scoring, token-choice / expert-choice selection,
// capacity, the routing plan by a stable counting sort, aux/z losses, load stats) and backward.
// Capacity and expert choice pick the C best of each expert's candidates with an in-place heap
// (O(n + C log n), no allocation), exact under the stated tie rules (a strict total order).
#include "router.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

typedef struct {
    float score;
    int32_t token;
    int32_t pair; // index into (T, K) for token choice, unused for expert choice
} moe_route_cand;

// x ranks before y: higher score, ties to the earlier token. A strict total order, so the
// selected set does not depend on the selection algorithm.
static int moe_cand_better(const moe_route_cand *x, const moe_route_cand *y) {
    return x->score > y->score || (x->score == y->score && x->token < y->token);
}

static void moe_cand_sift(moe_route_cand *a, int64_t i, int64_t n) {
    for (;;) {
        int64_t l = 2 * i + 1, b = i;
        if (l < n && moe_cand_better(&a[l], &a[b])) b = l;
        if (l + 1 < n && moe_cand_better(&a[l + 1], &a[b])) b = l + 1;
        if (b == i) return;
        moe_route_cand tmp = a[i];
        a[i] = a[b];
        a[b] = tmp;
        i = b;
    }
}

// Moves the C best of a[0..n) to a[n-C..n) (best last), the rest to a[0..n-C). In place with a
// heap (O(n + C log n)): qsort may call malloc, and forward must not allocate.
static void moe_cand_select(moe_route_cand *a, int64_t n, int64_t C) {
    if (C > n) C = n;
    for (int64_t i = n / 2 - 1; i >= 0; i--) moe_cand_sift(a, i, n);
    for (int64_t k = 0; k < C; k++) {
        moe_route_cand tmp = a[0];
        a[0] = a[n - 1 - k];
        a[n - 1 - k] = tmp;
        moe_cand_sift(a, 0, n - 1 - k);
    }
}

// Capped at T, the most an expert can take (a token goes to an expert once): a capacity factor
// beyond E/K drops nothing, and the cap keeps ceil(cf·T·K/E) from overflowing int64.
int64_t moe_router_capacity(const moe_router_params *p, int64_t T) {
    double cf = p->capacity_factor;
    switch (p->strategy) {
    case MOE_ROUTE_EXPERT_CHOICE:
        if (cf <= 0) cf = 1;
        break;
    case MOE_ROUTE_TOKEN_CHOICE:
        if (cf <= 0) return 0;
        break;
    }
    const double C = ceil(cf * (double)T * (double)p->K / (double)p->E);
    return C < (double)T ? (int64_t)C : T;
}

double moe_router_rows_bound(moe_route_strategy s, double T, int K, int E, double cf) {
    const double k = K > 0 ? K : 1;
    switch (s) {
    case MOE_ROUTE_TOKEN_CHOICE: return T * k;
    case MOE_ROUTE_EXPERT_CHOICE:
        return fmin((double)(E > 0 ? E : 1) * T, T * k * (cf > 0 ? cf : 1));
    }
    return T * k; // a strategy outside the enum is refused by moe_model_check before this
}

int64_t moe_router_group(const moe_router_params *p, int64_t T) {
    return p->group_tokens > 0 ? p->group_tokens : T;
}

int64_t moe_router_max_rows(const moe_router_params *p, int64_t T) {
    switch (p->strategy) {
    case MOE_ROUTE_TOKEN_CHOICE: return T * p->K;
    case MOE_ROUTE_EXPERT_CHOICE: {
        const int64_t G = moe_router_group(p, T);
        if (G <= 0) return 0;
        int64_t rows = (T + G - 1) / G * (int64_t)p->E * moe_router_capacity(p, G);
        return rows < (int64_t)p->E * T ? rows : (int64_t)p->E * T;
    }
    }
    MOE_ASSERT(!"moe_route_strategy value outside the enum");
    return 0;
}

// 1 if the value is one of the enum's (params filled by hand or cast from an int).
static int moe_strategy_known(moe_route_strategy s) {
    switch (s) {
    case MOE_ROUTE_TOKEN_CHOICE:
    case MOE_ROUTE_EXPERT_CHOICE: return 1;
    }
    return 0;
}

static int moe_scoring_known(moe_scoring s) {
    switch (s) {
    case MOE_SCORE_SOFTMAX:
    case MOE_SCORE_SIGMOID: return 1;
    }
    return 0;
}

moe_status moe_route_plan_create(const moe_router_params *p, int64_t T_max, moe_route_plan **out) {
    *out = NULL;
    if (!moe_strategy_known(p->strategy) || !moe_scoring_known(p->scoring))
        return moe_set_error(MOE_EINVAL,
                             "router: strategy = %d, scoring = %d: not a known value "
                             "(strategy: 0 token_choice, 1 expert_choice; scoring: 0 softmax, "
                             "1 sigmoid)",
                             (int)p->strategy, (int)p->scoring);
    if (p->E < 1 || p->K < 1 || p->K > p->E || p->D < 1 || T_max < 1)
        return moe_set_error(MOE_EINVAL,
                             "router: need n_experts >= 1, 1 <= top_k <= n_experts, d_model >= 1 "
                             "and T_max >= 1 (got E=%d, K=%d, D=%lld, T_max=%lld)",
                             p->E, p->K, (long long)p->D, (long long)T_max);
    moe_status st = moe_router_check_groups(p);
    if (st) return st;
    int64_t TE, TK;
    if (moe_mul_overflows_i64(T_max, p->E, &TE) || moe_mul_overflows_i64(T_max, p->K, &TK) ||
        T_max > INT32_MAX / p->E)
        return moe_set_error(MOE_EINVAL, "router: T_max=%lld × E=%d overflows 32-bit row indices",
                             (long long)T_max, p->E);
    int64_t R = moe_router_max_rows(p, T_max);
    moe_route_plan *pl = moe_xcalloc(1, sizeof *pl);
    pl->T_max = T_max;
    pl->E = p->E;
    pl->K = p->K;
    pl->logits = moe_xalloc_aligned((size_t)TE * sizeof(float));
    pl->probs = moe_xalloc_aligned((size_t)TE * sizeof(float));
    pl->sel_expert = moe_xalloc_aligned((size_t)TK * sizeof(int32_t));
    pl->sel_weight = moe_xalloc_aligned((size_t)TK * sizeof(float));
    pl->sel_row = moe_xalloc_aligned((size_t)TK * sizeof(int32_t));
    pl->sel_counts = moe_xcalloc((size_t)p->E, sizeof(int64_t));
    pl->counts = moe_xcalloc((size_t)p->E, sizeof(int64_t));
    pl->offsets = moe_xcalloc((size_t)p->E + 1, sizeof(int64_t));
    pl->row_token = moe_xalloc_aligned((size_t)R * sizeof(int32_t));
    pl->row_slot = moe_xalloc_aligned((size_t)R * sizeof(int32_t));
    pl->row_weight = moe_xalloc_aligned((size_t)R * sizeof(float));
    pl->tok_offsets = moe_xcalloc((size_t)T_max + 1, sizeof(int64_t));
    pl->tok_rows = moe_xalloc_aligned((size_t)R * sizeof(int32_t));
    pl->aux_dscore = moe_xcalloc((size_t)p->E, sizeof(float));
    if (p->balance_sequence) {
        const int64_t G = p->group_tokens > 0 ? p->group_tokens : (T_max > 0 ? T_max : 1);
        pl->aux_dscore_seq = moe_xcalloc((size_t)((T_max + G - 1) / G + 1) * (size_t)p->E,
                                         sizeof(float));
        pl->seq_scratch = moe_xcalloc(2 * (size_t)p->E, sizeof(double));
    }
    pl->score_sum = moe_xcalloc((size_t)p->E, sizeof(double));
    pl->scratch_i = moe_xalloc_aligned((size_t)((TE > TK ? TE : TK) + p->E + 1) * sizeof(int32_t));
    pl->scratch_sort =
        moe_xalloc_aligned((size_t)(TK > T_max ? TK : T_max) * sizeof(moe_route_cand));
    pl->dprobs = moe_xalloc_aligned((size_t)TE * sizeof(float));
    pl->dlogits = moe_xalloc_aligned((size_t)TE * sizeof(float));
    *out = pl;
    return MOE_OK;
}

void moe_route_plan_free(moe_route_plan *pl) {
    if (!pl) return;
    free(pl->logits);
    free(pl->probs);
    free(pl->sel_expert);
    free(pl->sel_weight);
    free(pl->sel_row);
    free(pl->sel_counts);
    free(pl->counts);
    free(pl->offsets);
    free(pl->row_token);
    free(pl->row_slot);
    free(pl->row_weight);
    free(pl->tok_offsets);
    free(pl->tok_rows);
    free(pl->aux_dscore);
    free(pl->aux_dscore_seq);
    free(pl->seq_scratch);
    free(pl->score_sum);
    free(pl->scratch_i);
    free(pl->scratch_sort);
    free(pl->dprobs);
    free(pl->dlogits);
    free(pl);
}

// Token choice: top-K by p + b (inside the kept groups when group-limited), weights, capacity
// drops, then the plan.
static void moe_route_token_choice(const moe_router_params *p, moe_route_plan *pl,
                                   const float *bias, const int32_t *forced, int64_t T) {
    const int E = p->E, K = p->K, grouped = p->n_group > 1;
    float *v = pl->dprobs;         // (E) selection values; dprobs is free during forward
    float *gscore = pl->dlogits;   // (n_group <= E) group scores; dlogits is free too
    int32_t *gidx = pl->scratch_i; // (topk_group <= E) kept groups; capacity reuses it later
    memset(pl->sel_counts, 0, (size_t)E * sizeof(int64_t));
    for (int64_t t = 0; t < T; t++) {
        const float *pt = pl->probs + t * E;
        const float *sv = pt;
        if (bias || grouped) {
            for (int e = 0; e < E; e++) v[e] = bias ? pt[e] + bias[e] : pt[e];
            sv = v;
        }
        int32_t *sel = pl->sel_expert + t * K;
        float *w = pl->sel_weight + t * K;
        if (forced)
            memcpy(sel, forced + t * K, (size_t)K * sizeof *sel);
        else if (grouped)
            moe_router_group_topk(p, v, gscore, gidx, sel);
        else
            moe_router_topk(sv, E, K, sel);
        double sum = 0;
        for (int k = 0; k < K; k++) {
            w[k] = pt[sel[k]];
            sum += w[k];
            pl->sel_counts[sel[k]]++;
        }
        double scale = p->routed_scaling;
        if (p->renormalize) scale /= sum;
        for (int k = 0; k < K; k++) w[k] = (float)(w[k] * scale);
        for (int k = 0; k < K; k++) pl->sel_row[t * K + k] = 0; // 0: kept, -1: dropped
    }
    int64_t C = pl->C;
    // Capacity acts on each routing group [g·G, (g+1)·G) of tokens independently.
    for (int64_t g0 = 0; C > 0 && g0 < T; g0 += pl->G) {
        // Group the candidate pairs by expert (stable, token order), then per overflowing
        // expert keep the C best by p (ties: earlier token).
        const int64_t i0 = g0 * K, i1 = (g0 + pl->G) * K;
        int32_t *start = pl->scratch_i;         // (E+1)
        int32_t *order = pl->scratch_i + E + 1; // (G·K) pair indices grouped by expert
        memset(start, 0, (size_t)(E + 1) * sizeof(int32_t));
        for (int64_t i = i0; i < i1; i++) start[pl->sel_expert[i] + 1]++;
        for (int e = 0; e < E; e++) start[e + 1] += start[e];
        int64_t *fill = pl->counts; // cursor; counts is recomputed below
        for (int e = 0; e < E; e++) fill[e] = start[e];
        for (int64_t i = i0; i < i1; i++) order[fill[pl->sel_expert[i]]++] = (int32_t)i;
        moe_route_cand *cand = pl->scratch_sort;
        for (int e = 0; e < E; e++) {
            int64_t n = start[e + 1] - start[e];
            if (n <= C) continue;
            for (int64_t j = 0; j < n; j++) {
                int32_t pair = order[start[e] + j];
                cand[j].token = pair / K;
                cand[j].pair = pair;
                cand[j].score = pl->probs[(int64_t)(pair / K) * E + e];
            }
            moe_cand_select(cand, n, C);
            for (int64_t j = 0; j < n - C; j++) pl->sel_row[cand[j].pair] = -1;
        }
    }
    // The plan: stable counting sort of kept pairs by expert (token order inside an expert).
    memset(pl->counts, 0, (size_t)E * sizeof(int64_t));
    for (int64_t i = 0; i < T * K; i++)
        if (pl->sel_row[i] >= 0) pl->counts[pl->sel_expert[i]]++;
    pl->offsets[0] = 0;
    for (int e = 0; e < E; e++) pl->offsets[e + 1] = pl->offsets[e] + pl->counts[e];
    pl->n_rows = pl->offsets[E];
    int32_t *cursor = pl->scratch_i; // (E)
    for (int e = 0; e < E; e++) cursor[e] = (int32_t)pl->offsets[e];
    int64_t j = 0;
    for (int64_t t = 0; t < T; t++) {
        pl->tok_offsets[t] = j;
        for (int k = 0; k < K; k++) {
            int64_t i = t * K + k;
            if (pl->sel_row[i] < 0) continue;
            int32_t r = cursor[pl->sel_expert[i]]++;
            pl->sel_row[i] = r;
            pl->row_token[r] = (int32_t)t;
            pl->row_slot[r] = k;
            pl->row_weight[r] = pl->sel_weight[i];
            pl->tok_rows[j++] = r;
        }
    }
    pl->tok_offsets[T] = j;
}

// Expert choice: each expert takes its top-C tokens by p[:, e] (ties: lower token index).
static void moe_route_expert_choice(const moe_router_params *p, moe_route_plan *pl, int64_t T) {
    const int E = p->E;
    const int64_t C = pl->C;
    const int64_t G = pl->G, ng = G > 0 ? T / G : 0;
    int32_t *mask = pl->scratch_i; // (T, E): row of (t, e) or -1
    for (int64_t i = 0; i < T * E; i++) mask[i] = -1;
    moe_route_cand *cand = pl->scratch_sort;
    for (int e = 0; e < E; e++) {
        for (int64_t g0 = 0; g0 < T; g0 += G) { // each routing group on its own
            for (int64_t t = 0; t < G; t++) {
                cand[t].score = pl->probs[(g0 + t) * E + e];
                cand[t].token = (int32_t)(g0 + t);
                cand[t].pair = 0;
            }
            moe_cand_select(cand, G, C);
            for (int64_t j = G - C; j < G; j++) mask[(int64_t)cand[j].token * E + e] = 0;
        }
        pl->counts[e] = C * ng;
        pl->sel_counts[e] = C * ng;
    }
    pl->offsets[0] = 0;
    for (int e = 0; e < E; e++) pl->offsets[e + 1] = pl->offsets[e] + pl->counts[e];
    pl->n_rows = pl->offsets[E];
    for (int e = 0; e < E; e++) {
        int64_t r = pl->offsets[e];
        for (int64_t t = 0; t < T; t++) {
            if (mask[t * E + e] < 0) continue;
            mask[t * E + e] = (int32_t)r;
            pl->row_token[r] = (int32_t)t;
            pl->row_slot[r] = -1;
            pl->row_weight[r] = (float)(pl->probs[t * E + e] * p->routed_scaling);
            r++;
        }
    }
    int64_t j = 0;
    for (int64_t t = 0; t < T; t++) {
        pl->tok_offsets[t] = j;
        for (int e = 0; e < E; e++)
            if (mask[t * E + e] >= 0) pl->tok_rows[j++] = mask[t * E + e];
    }
    pl->tok_offsets[T] = j;
}

void moe_router_forward(const moe_router_params *p, moe_route_plan *pl, moe_route_stats *stats,
                        const float *x, const float *wg, const float *bg, const float *balance_bias,
                        int64_t T, const moe_route_opts *opts) {
    const int E = p->E, K = p->K;
    const int64_t D = p->D;
    MOE_ASSERT(T >= 0 && T <= pl->T_max);
    MOE_ASSERT(pl->E == E && pl->K == K);
    pl->T = T;
    pl->loss_T = (double)T;
    pl->G = moe_router_group(p, T);
    MOE_ASSERT(pl->G > 0 ? T % pl->G == 0 : T == 0); // whole routing groups only
    pl->C = pl->G > 0 ? moe_router_capacity(p, pl->G) : 0;
    // Gate projection z = x·Wg (+ bg) (+ jitter).
    if (T > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, E, (int)D, 1.0f, x, (int)D,
                    wg, E, 0.0f, pl->logits, E);
    if (bg && p->gate_bias)
        for (int64_t t = 0; t < T; t++)
            for (int e = 0; e < E; e++) pl->logits[t * E + e] += bg[e];
    if (opts && opts->training && p->jitter > 0)
        for (int64_t t = 0; t < T; t++)
            for (int e = 0; e < E; e++)
                pl->logits[t * E + e] +=
                    (float)p->jitter * moe_router_noise(opts->seed, opts->token_base + t, e);
    const moe_route_traits tr = moe_router_strategy_traits(p->strategy);
    moe_scoring scoring = tr.softmax_only ? MOE_SCORE_SOFTMAX : p->scoring;
    moe_router_score(scoring, pl->logits, pl->probs, T, E);

    switch (p->strategy) {
    case MOE_ROUTE_TOKEN_CHOICE:
        moe_route_token_choice(p, pl, balance_bias, opts ? opts->forced : NULL, T);
        break;
    case MOE_ROUTE_EXPERT_CHOICE: moe_route_expert_choice(p, pl, T); break;
    }

    // Aux loss partials: score_sum_i = Σ_t s_i(t); its gradient per token is α·E·f_i / T.
    double aux = 0;
    memset(pl->score_sum, 0, (size_t)E * sizeof(double));
    for (int e = 0; e < E; e++) pl->aux_dscore[e] = 0;
    double entropy = 0;
    for (int64_t t = 0; t < T; t++) {
        const float *pt = pl->probs + t * E, *zt = pl->logits + t * E;
        if (scoring == MOE_SCORE_SOFTMAX) {
            // H = Σ p (lse − z) = lse − Σ p z, lse = z_j − ln p_j at the largest p_j: one log
            // per token instead of one per (token, expert).
            int j = 0;
            double pz = 0;
            for (int e = 0; e < E; e++) {
                pl->score_sum[e] += pt[e];
                pz += (double)pt[e] * zt[e];
                j = pt[e] > pt[j] ? e : j;
            }
            entropy += (double)zt[j] - log((double)pt[j]) - pz;
            continue;
        }
        double norm = 0;
        for (int e = 0; e < E; e++) norm += pt[e];
        for (int e = 0; e < E; e++) {
            double q = pt[e] / norm;
            pl->score_sum[e] += q;
            if (q > 0) entropy -= q * log(q);
        }
    }
    pl->aux_seq_sum = 0, pl->aux_seq_groups = 0;
    if (tr.aux_loss && T > 0 && p->balance_sequence && tr.by_token) {
        // Per routing group b (the trainer's sequences): f_{b,i} = selections of i / (G·K),
        // P_{b,i} = mean score; L = α·E·mean_b Σ_i f·P. Scores as score_sum's (p, or p/Σp).
        const int64_t G = pl->G, nb = T / G;
        double *cnt = pl->seq_scratch, *ps = pl->seq_scratch + E;
        for (int64_t b = 0; b < nb; b++) {
            memset(cnt, 0, (size_t)E * sizeof(double));
            memset(ps, 0, (size_t)E * sizeof(double));
            for (int64_t t = b * G; t < (b + 1) * G; t++) {
                const float *pt = pl->probs + t * E;
                for (int k = 0; k < K; k++)
                    if (pl->sel_expert[t * K + k] >= 0) cnt[pl->sel_expert[t * K + k]] += 1;
                double norm = 1;
                if (scoring != MOE_SCORE_SOFTMAX) {
                    norm = 0;
                    for (int e = 0; e < E; e++) norm += pt[e];
                }
                for (int e = 0; e < E; e++) ps[e] += pt[e] / norm;
            }
            for (int e = 0; e < E; e++) {
                const double f = cnt[e] / ((double)G * K);
                pl->aux_seq_sum += f * ps[e] / (double)G;
                pl->aux_dscore_seq[b * E + e] =
                    (float)(p->aux_loss_coef * E * f / ((double)G * (double)nb));
            }
        }
        pl->aux_seq_groups = nb;
        aux = p->aux_loss_coef * E * pl->aux_seq_sum / (double)nb;
    } else if (tr.aux_loss && T > 0) {
        for (int e = 0; e < E; e++) {
            double f = (double)pl->sel_counts[e] / ((double)T * K);
            aux += f * pl->score_sum[e] / (double)T;
            pl->aux_dscore[e] = (float)(p->aux_loss_coef * E * f / (double)T);
        }
        aux *= p->aux_loss_coef * E;
    }
    double zl = p->z_loss_coef != 0 ? moe_router_z_loss(pl->logits, T, E, p->z_loss_coef, NULL) : 0;

    if (!stats) return;
    memset(stats, 0, sizeof *stats);
    stats->tokens_per_expert = pl->counts;
    stats->selected_per_expert = pl->sel_counts;
    stats->selected = tr.by_token ? T * K : pl->n_rows;
    stats->kept = pl->n_rows;
    stats->dropped = stats->selected - stats->kept;
    for (int64_t t = 0; t < T; t++)
        if (pl->tok_offsets[t + 1] == pl->tok_offsets[t]) stats->unrouted++;
    const moe_route_load ld = moe_route_load_stats(pl->sel_counts, E, entropy, (double)T);
    stats->max_over_mean = ld.max_over_mean, stats->cv = ld.cv, stats->entropy = ld.entropy;
    stats->aux_loss = aux;
    stats->z_loss = zl;
}

void moe_router_backward(const moe_router_params *p, moe_route_plan *pl, const float *drow_weight,
                         const float *x, const float *wg, float *dx, float *dwg, float *dbg) {
    const int E = p->E, K = p->K;
    const int64_t T = pl->T, D = p->D;
    if (T == 0) return;
    float *dp = pl->dprobs, *dz = pl->dlogits;
    memset(dp, 0, (size_t)(T * E) * sizeof(float));
    memset(dz, 0, (size_t)(T * E) * sizeof(float));
    moe_scoring scoring =
        moe_router_strategy_traits(p->strategy).softmax_only ? MOE_SCORE_SOFTMAX : p->scoring;

    switch (p->strategy) {
    case MOE_ROUTE_EXPERT_CHOICE:
        for (int e = 0; e < E; e++)
            for (int64_t r = pl->offsets[e]; r < pl->offsets[e + 1]; r++)
                dp[(int64_t)pl->row_token[r] * E + e] +=
                    (float)(p->routed_scaling * drow_weight[r]);
        break;
    case MOE_ROUTE_TOKEN_CHOICE:
        for (int64_t t = 0; t < T; t++) {
            const int32_t *sel = pl->sel_expert + t * K;
            const int32_t *row = pl->sel_row + t * K;
            const float *pt = pl->probs + t * E;
            float *dpt = dp + t * E;
            if (p->renormalize) {
                // w_k = s·p_k / S, S = Σ_j p_j: dp_j = s·(dw_j − Σ_k dw_k·p_k/S) / S
                double S = 0, dot = 0;
                for (int k = 0; k < K; k++) S += pt[sel[k]];
                for (int k = 0; k < K; k++)
                    if (row[k] >= 0) dot += (double)drow_weight[row[k]] * pt[sel[k]];
                for (int k = 0; k < K; k++) {
                    double dw = row[k] >= 0 ? drow_weight[row[k]] : 0.0;
                    dpt[sel[k]] += (float)(p->routed_scaling * (dw - dot / S) / S);
                }
            } else {
                for (int k = 0; k < K; k++)
                    if (row[k] >= 0)
                        dpt[sel[k]] += (float)(p->routed_scaling * drow_weight[row[k]]);
            }
            if (p->aux_loss_coef != 0) {
                const float *ad = p->balance_sequence && pl->aux_dscore_seq
                                      ? pl->aux_dscore_seq + (t / pl->G) * E
                                      : pl->aux_dscore;
                if (scoring == MOE_SCORE_SOFTMAX) {
                    for (int e = 0; e < E; e++) dpt[e] += ad[e];
                } else {
                    // s_i = p_i / Σp: dp_j = (ds_j − Σ_i ds_i·s_i) / Σp
                    double S = 0, dot = 0;
                    for (int e = 0; e < E; e++) S += pt[e];
                    for (int e = 0; e < E; e++) dot += (double)ad[e] * pt[e] / S;
                    for (int e = 0; e < E; e++) dpt[e] += (float)((ad[e] - dot) / S);
                }
            }
        }
        break;
    }
    moe_router_score_backward(scoring, pl->probs, dp, dz, T, E);
    if (p->z_loss_coef != 0) // gradient of β·Σ_t lse²/loss_T (loss_T = T unless overridden)
        moe_router_z_loss(pl->logits, T, E, p->z_loss_coef * (double)T / pl->loss_T, dz);

    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)D, E, 1.0f, dz, E, wg, E,
                    1.0f, dx, (int)D);
    if (dwg) // NULL: a frozen gate (LoRA)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)D, E, (int)T, 1.0f, x, (int)D,
                    dz, E, 1.0f, dwg, E);
    if (dbg && p->gate_bias)
        for (int64_t t = 0; t < T; t++)
            for (int e = 0; e < E; e++) dbg[e] += dz[t * E + e];
}
