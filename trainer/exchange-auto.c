// exchange-auto.c: exchange settings as values and the `parallel.exchange = auto` trial
// (exchange-auto.h is the manual).
#include "exchange-auto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void moe_xsetting_name(const moe_xsetting *s, char buf[MOE_XSETTING_NAME_MAX]) {
    size_t k = 0;
    buf[0] = '\0';
#define MOE_XPART(...)                                                                             \
    do {                                                                                           \
        if (k) k += (size_t)snprintf(buf + k, MOE_XSETTING_NAME_MAX - k, "+");                     \
        k += (size_t)snprintf(buf + k, MOE_XSETTING_NAME_MAX - k, __VA_ARGS__);                    \
    } while (0)
    if (s->n_chunks > 1) MOE_XPART("chunks%d", s->n_chunks > 9999 ? 9999 : s->n_chunks);
    if (s->hierarchical) MOE_XPART("hier");
    if (s->dedup == 1) MOE_XPART("dedup-rank");
    if (s->dedup == 2) MOE_XPART("dedup-node");
    if (s->bf16) MOE_XPART("bf16");
#undef MOE_XPART
    if (!k) snprintf(buf, MOE_XSETTING_NAME_MAX, "flat");
}

moe_status moe_xsetting_parse(const char *name, moe_xsetting *out) {
    moe_xsetting s = {.n_chunks = 1};
    if (!name || !*name) return moe_set_error(MOE_EINVAL, "exchange setting: empty name");
    if (strcmp(name, "flat") == 0) {
        *out = s;
        return MOE_OK;
    }
    const char *p = name;
    while (*p) {
        const char *e = strchr(p, '+');
        const size_t n = e ? (size_t)(e - p) : strlen(p);
        char part[32];
        if (n == 0 || n >= sizeof part)
            return moe_set_error(MOE_EINVAL,
                                 "exchange setting \"%.60s\": empty or overlong part; expected "
                                 "flat or parts chunksN, hier, dedup-rank, dedup-node, bf16 "
                                 "joined by '+'",
                                 name);
        memcpy(part, p, n);
        part[n] = '\0';
        char *end = NULL;
        if (strncmp(part, "chunks", 6) == 0 && part[6] >= '0' && part[6] <= '9') {
            const long c = strtol(part + 6, &end, 10);
            if (*end || c < 2 || c > 9999)
                return moe_set_error(MOE_EINVAL,
                                     "exchange setting \"%.60s\": \"%s\" needs 2..9999 chunks",
                                     name, part);
            s.n_chunks = (int)c;
        } else if (strcmp(part, "hier") == 0) {
            s.hierarchical = 1;
        } else if (strcmp(part, "dedup-rank") == 0) {
            s.dedup = 1;
        } else if (strcmp(part, "dedup-node") == 0) {
            s.dedup = 2;
        } else if (strcmp(part, "bf16") == 0) {
            s.bf16 = 1;
        } else {
            return moe_set_error(MOE_EINVAL,
                                 "exchange setting \"%.60s\": unknown part \"%s\"; expected flat "
                                 "or parts chunksN, hier, dedup-rank, dedup-node, bf16 joined by "
                                 "'+'",
                                 name, part);
        }
        p += n;
        if (*p == '+' && !*++p)
            return moe_set_error(MOE_EINVAL,
                                 "exchange setting \"%.60s\": empty or overlong part after the "
                                 "last '+'",
                                 name);
    }
    *out = s;
    return MOE_OK;
}

moe_xsetting moe_xsetting_of(const Moe__ParallelConfig *pc) {
    moe_xsetting s = {.n_chunks = 1};
    if (!pc) return s;
    s.n_chunks = pc->overlap && pc->overlap_chunks > 1 ? pc->overlap_chunks : 1;
    s.hierarchical = pc->hierarchical ? 1 : 0;
    s.dedup = pc->dedup == MOE__PARALLEL_CONFIG__DEDUP__rank   ? 1
              : pc->dedup == MOE__PARALLEL_CONFIG__DEDUP__node ? 2
                                                               : 0;
    s.bf16 = pc->exchange_dtype == MOE__PARALLEL_CONFIG__EXCHANGE_DTYPE__bf16;
    return s;
}

void moe_xsetting_to_config(const moe_xsetting *s, Moe__ParallelConfig *pc) {
    pc->has_overlap = pc->has_overlap_chunks = pc->has_hierarchical = 1;
    pc->has_dedup = pc->has_exchange_dtype = 1;
    pc->overlap = s->n_chunks > 1;
    pc->overlap_chunks = s->n_chunks > 1 ? s->n_chunks : pc->overlap_chunks;
    pc->hierarchical = s->hierarchical;
    pc->dedup = s->dedup == 1   ? MOE__PARALLEL_CONFIG__DEDUP__rank
                : s->dedup == 2 ? MOE__PARALLEL_CONFIG__DEDUP__node
                                : MOE__PARALLEL_CONFIG__DEDUP__none;
    pc->exchange_dtype = s->bf16 ? MOE__PARALLEL_CONFIG__EXCHANGE_DTYPE__bf16
                                 : MOE__PARALLEL_CONFIG__EXCHANGE_DTYPE__f32;
}

int moe_xsetting_equal(const moe_xsetting *a, const moe_xsetting *b) {
    return a->dedup == b->dedup && a->n_chunks == b->n_chunks &&
           a->hierarchical == b->hierarchical && a->bf16 == b->bf16;
}

int moe_xsetting_spans_nodes(const moe_comm *c) {
    if (!c) return 0;
    const moe_comm_info in = moe_comm_get_info(c);
    return in.ep_size > 1 && !in.ep_in_node;
}

int moe_xsetting_candidates(const moe_comm *c, moe_xsetting *out, int max) {
    moe_xsetting list[MOE_XAUTO_MAX];
    int n = 0;
    list[n++] = (moe_xsetting){.n_chunks = 1};
    const int ep = c ? moe_comm_size(c, MOE_COMM_EP) : 1;
    if (ep > 1) {
        list[n++] = (moe_xsetting){.n_chunks = 4};
        list[n++] = (moe_xsetting){.n_chunks = 1, .dedup = 1};
        int n_nodes = 1;
        const int q = moe_comm_node_shape(c, &n_nodes);
        if (moe_xsetting_spans_nodes(c) && q > 1) {
            list[n++] = (moe_xsetting){.n_chunks = 1, .hierarchical = 1};
            list[n++] = (moe_xsetting){.n_chunks = 1, .dedup = 2};
        }
    }
    if (n > max) n = max;
    memcpy(out, list, (size_t)n * sizeof *out);
    return n;
}

// ---------------------------------------------------------------- the tuner

void moe_xauto_init(moe_xauto *a, const Moe__Config *cfg, const moe_comm *c) {
    memset(a, 0, sizeof *a);
    const Moe__ParallelConfig *pc = cfg->parallel;
    a->current = a->chosen = moe_xsetting_of(pc);
    a->state = MOE_XAUTO_FIXED;
    if (pc && pc->exchange == MOE__PARALLEL_CONFIG__EXCHANGE__fixed) {
        a->why = "parallel.exchange = fixed";
    } else if (pc && (pc->has_overlap || pc->has_overlap_chunks || pc->has_hierarchical ||
                      pc->has_dedup)) {
        a->why = "set in the config (parallel.overlap / overlap_chunks / hierarchical / dedup)";
    } else if (!moe_xsetting_spans_nodes(c)) {
        a->why = "no EP group spans nodes: the exchange is a memory copy";
    } else {
        a->n = moe_xsetting_candidates(c, a->cand, MOE_XAUTO_MAX);
        const int bf16 = a->current.bf16; // the payload dtype is the user's, never tuned
        for (int i = 0; i < a->n; i++) a->cand[i].bf16 = bf16;
        if (bf16) { // dedup is refused with bf16 payloads
            int k = 0;
            for (int i = 0; i < a->n; i++)
                if (!a->cand[i].dedup) a->cand[k++] = a->cand[i];
            a->n = k;
        }
        if (a->n < 2) {
            a->why = "one candidate only at this layout";
            a->n = 0;
        } else {
            a->state = MOE_XAUTO_TRYING;
            a->why = NULL;
        }
    }
}

int moe_xauto_resume(moe_xauto *a, const char *choice) {
    if (a->state != MOE_XAUTO_TRYING || !choice || !*choice) return 0;
    moe_xsetting s;
    if (moe_xsetting_parse(choice, &s)) return 0;
    for (int i = 0; i < a->n; i++)
        if (moe_xsetting_equal(&s, &a->cand[i])) {
            a->chosen = s;
            a->state = MOE_XAUTO_RESUMED;
            return 1;
        }
    return 0;
}

int moe_xauto_trial_steps(int n) {
    return MOE_XAUTO_LEAD + MOE_XAUTO_ROUNDS * n * (MOE_XAUTO_WARM + MOE_XAUTO_TIMED);
}

int moe_xauto_slot(int n, int pos, int *timed) {
    const int per = MOE_XAUTO_WARM + MOE_XAUTO_TIMED;
    *timed = -1;
    if (pos < MOE_XAUTO_LEAD) return -1;
    pos -= MOE_XAUTO_LEAD;
    const int round = pos / (n * per), b = pos % (n * per) / per, j = pos % per;
    if (j >= MOE_XAUTO_WARM) *timed = round * MOE_XAUTO_TIMED + j - MOE_XAUTO_WARM;
    return round % 2 ? n - 1 - b : b;
}

int moe_xauto_before_step(moe_xauto *a, moe_xsetting *s) {
    moe_xsetting want = a->current;
    int timed;
    if (a->state == MOE_XAUTO_TRYING) {
        const int i = moe_xauto_slot(a->n, a->pos, &timed);
        if (i >= 0) want = a->cand[i];
    } else if (a->state != MOE_XAUTO_FIXED)
        want = a->chosen;
    if (moe_xsetting_equal(&want, &a->current)) return 0;
    a->current = *s = want;
    return 1;
}

static int moe_xauto_cmp(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int moe_xauto_after_step(moe_xauto *a, double seconds) {
    if (a->state != MOE_XAUTO_TRYING) return 0;
    int timed;
    const int i = moe_xauto_slot(a->n, a->pos, &timed);
    if (i >= 0 && timed >= 0) a->seconds[i][timed] = seconds;
    if (++a->pos < moe_xauto_trial_steps(a->n)) return 0;
    int best = 0;
    enum { NT = MOE_XAUTO_ROUNDS * MOE_XAUTO_TIMED };
    for (int k = 0; k < a->n; k++) {
        double v[NT];
        memcpy(v, a->seconds[k], sizeof v);
        qsort(v, NT, sizeof *v, moe_xauto_cmp);
        a->median[k] = NT % 2 ? v[NT / 2] : 0.5 * (v[NT / 2 - 1] + v[NT / 2]);
        if (a->median[k] < a->median[best]) best = k;
    }
    // Plain flat (candidate 0) unless the best beats it by more than the margin.
    if (best && a->median[best] > (1.0 - MOE_XAUTO_MARGIN) * a->median[0]) best = 0;
    a->chosen = a->cand[best];
    a->state = MOE_XAUTO_CHOSEN;
    return 1;
}

void moe_xauto_describe(const moe_xauto *a, char *buf, size_t n) {
    char nm[MOE_XSETTING_NAME_MAX];
    size_t k = 0;
    switch (a->state) {
    case MOE_XAUTO_FIXED:
        moe_xsetting_name(&a->chosen, nm);
        snprintf(buf, n, "exchange %s (%s)", nm, a->why ? a->why : "fixed");
        return;
    case MOE_XAUTO_RESUMED:
        moe_xsetting_name(&a->chosen, nm);
        snprintf(buf, n, "exchange %s (auto, the choice recorded in the checkpoint)", nm);
        return;
    case MOE_XAUTO_TRYING:
        k += (size_t)snprintf(buf, n, "exchange auto: timing");
        for (int i = 0; i < a->n && k < n; i++) {
            moe_xsetting_name(&a->cand[i], nm);
            k += (size_t)snprintf(buf + k, n - k, "%s %s", i ? "," : "", nm);
        }
        if (k < n)
            snprintf(buf + k, n - k,
                     " on the first %d steps (%d to warm up, then %d rounds of %d + %d steps each)",
                     moe_xauto_trial_steps(a->n), MOE_XAUTO_LEAD, MOE_XAUTO_ROUNDS,
                     MOE_XAUTO_WARM, MOE_XAUTO_TIMED);
        return;
    case MOE_XAUTO_CHOSEN:
        moe_xsetting_name(&a->chosen, nm);
        k += (size_t)snprintf(buf, n, "exchange auto chose %s: median ms/step", nm);
        for (int i = 0; i < a->n && k < n; i++) {
            moe_xsetting_name(&a->cand[i], nm);
            k += (size_t)snprintf(buf + k, n - k, "%s %s %.1f", i ? "," : "", nm,
                                  1e3 * a->median[i]);
        }
        return;
    }
}

moe_status moe_xauto_prepare(moe_xauto *a, moe_model *m, const Moe__Config *cfg) {
    moe_xsetting s;
    if (!moe_xauto_before_step(a, &s)) return MOE_OK;
    static const Moe__ParallelConfig def = MOE__PARALLEL_CONFIG__INIT;
    Moe__ParallelConfig pc = cfg->parallel ? *cfg->parallel : def; // shallow: scalars only
    moe_xsetting_to_config(&s, &pc);
    return moe_model_set_exchange(m, &pc);
}

int moe_xauto_step_done(moe_xauto *a, const double *compute, const double *wait, int world) {
    if (a->state != MOE_XAUTO_TRYING) return 0;
    double t = 0;
    for (int r = 0; r < world; r++)
        if (compute[r] + wait[r] > t) t = compute[r] + wait[r];
    return moe_xauto_after_step(a, t);
}

void moe_xauto_record(moe_xauto *a, int ended, Moe__MetricsRecord *rec) {
    static const char *const st[] = {"fixed", "trying", "chosen", "resumed"};
    // The setting the step ran with: during the trial's last step that is still the candidate.
    moe_xsetting_name(&a->current, a->current_name);
    rec->exchange_setting = a->current_name;
    rec->exchange_state = (char *)(ended ? "trying" : st[a->state]);
    if (!ended) return;
    for (int i = 0; i < a->n; i++) {
        moe__exchange_trial__init(&a->trial[i]);
        moe_xsetting_name(&a->cand[i], a->names[i]);
        a->trial[i].setting = a->names[i];
        a->trial[i].has_median_step_seconds = 1;
        a->trial[i].median_step_seconds = a->median[i];
        a->trial[i].has_chosen = 1;
        a->trial[i].chosen = moe_xsetting_equal(&a->cand[i], &a->chosen);
        a->trialp[i] = &a->trial[i];
    }
    rec->n_exchange_trial = (size_t)a->n;
    rec->exchange_trial = a->trialp;
}
