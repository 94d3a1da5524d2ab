// bench-step-run.c: `moe bench step` as a library (bench.h, bench-impl.h) — the synthetic tokens,
// the step session (model, moe_train_step state, tokens) that `moe bench step` and its --watchdog
// variant time, and moe_bench_step_run. It calls moe_train_step itself, never a copy; the only
// thing added around it is a barrier before each step and, when given, the watchdog's bracket.
#include "bench-impl.h"
#include "train.h"

#include <string.h>

void moe_bench_step_tokens(int32_t *tok, int64_t n, int V, int world_rank) {
    uint64_t r = 88172645463325252ull ^ (uint64_t)world_rank;
    for (int64_t i = 0; i < n; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        tok[i] = (int32_t)(r % (uint64_t)V);
    }
}

static uint64_t moe_bench_fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

struct moe_bench_stepper {
    const moe_comm *c;
    moe_model *m;
    moe_train_step_state *ss;
    int32_t *tok; // (Bl, S+1) this rank's synthetic tokens
    int64_t next; // the 0-based index of the next step
};

moe_status moe_bench_stepper_create(const Moe__Config *cfg, const moe_comm *c,
                                    moe_bench_stepper **out) {
    *out = NULL;
    const moe_model_layout lay = moe_model_layout_of(c);
    const int W = lay.world;
    if (cfg->train->global_batch % W)
        return moe_set_error(MOE_ELAYOUT, "train.global_batch %d not divisible by %d ranks",
                             cfg->train->global_batch, W);
    const int64_t Bl = cfg->train->global_batch / W, S = cfg->train->seq_len;
    moe_bench_stepper *s = moe_xcalloc(1, sizeof *s);
    s->c = c;
    moe_status st = moe_comm_agree(c, moe_model_create(cfg, &lay, c, Bl, &s->m));
    if (!st) st = moe_train_step_create(cfg, c, s->m, &s->ss);
    if (st) {
        moe_bench_stepper_free(s);
        return st;
    }
    s->tok = moe_xcalloc((size_t)(Bl * (S + 1)), sizeof(int32_t));
    moe_bench_step_tokens(s->tok, Bl * (S + 1), s->m->V, lay.world_rank);
    *out = s;
    return MOE_OK;
}

void moe_bench_stepper_free(moe_bench_stepper *s) {
    if (!s) return;
    free(s->tok);
    moe_train_step_free(s->ss);
    moe_model_free(s->m);
    free(s);
}

moe_model *moe_bench_stepper_model(moe_bench_stepper *s) { return s->m; }

moe_status moe_bench_stepper_run(moe_bench_stepper *s, int n, moe_watchdog *w, double *losses,
                                 moe_bench_step_times *acc, double *watched) {
    for (int i = 0; i < n; i++, s->next++) {
        moe_status st;
        if (s->c && (st = moe_comm_barrier(s->c, MOE_COMM_WORLD))) return st;
        moe_train_step_result r;
        const double t0 = moe_comm_wtime();
        moe_watchdog_enter(w, MOE_WATCH_STEP, s->next + 1); // as moe_train_loop: 1-based
        st = moe_train_step(s->ss, s->tok, s->next, &r);
        moe_watchdog_leave(w);
        const double t1 = moe_comm_wtime();
        if (st) return st;
        if (losses) losses[i] = r.loss;
        if (acc) {
            acc->seconds += r.step_seconds;
            acc->exchange_seconds += r.exchange_seconds;
            acc->allreduce_seconds += r.allreduce_seconds;
            const moe_model_phases *ph = &r.phases.model;
            moe_model_phases *a = &acc->phases.model;
            a->attention += ph->attention, a->router += ph->router;
            a->dispatch += ph->dispatch, a->experts += ph->experts, a->combine += ph->combine;
            a->dense += ph->dense;
            acc->phases.sync += r.phases.sync, acc->phases.optimizer += r.phases.optimizer;
            acc->bytes_intranode += r.bytes_intranode;
            acc->bytes_internode += r.bytes_internode;
        }
        if (watched) watched[i] = t1 - t0;
    }
    return MOE_OK;
}

moe_status moe_bench_step_run(const Moe__Config *cfg, const moe_comm *c, int warmup, int steps,
                              double *losses, moe_bench_step_times *out) {
    memset(out, 0, sizeof *out);
    moe_bench_stepper *s = NULL;
    moe_status st = moe_bench_stepper_create(cfg, c, &s);
    if (st) return st;
    if (!(st = moe_bench_stepper_run(s, warmup, NULL, losses, NULL, NULL)))
        st = moe_bench_stepper_run(s, steps, NULL, losses ? losses + warmup : NULL, out, NULL);
    const moe_model *m = s->m;
    uint64_t h = 14695981039346656037ull;
    h = moe_bench_fnv1a(h, m->params, (size_t)m->n_params * sizeof(float));
    h = moe_bench_fnv1a(h, m->balance_bias, (size_t)m->n_moe * (size_t)m->E * sizeof(float));
    out->param_hash = h;
    moe_bench_stepper_free(s);
    return st;
}
