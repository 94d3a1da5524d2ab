// model-ffn.c: the MoE FFN behind model.c's internal interface (model-impl.h) — the
// expert-parallel layer whenever there is a communicator (every layout, EP = 1 included, and the
// only path with bf16 payloads), the one-rank layer of experts.h without one — with the routing
// statistics the metrics use and the exchange seconds and bytes of the last pass.
#include "model-impl.h"
#include "ep-layer.h"

#include <math.h>
#include <string.h>

struct moe_model_ffn {
    moe_layer_params p;
    moe_layer *one;      // one-rank layer (no communicator): all E experts on this rank
    moe_ep_layer *ep;    // the expert-parallel layer (with a communicator, any valid (W, EP))
    double *red;         // (3E + 4) one-rank path: the routing statistics as the metrics use them
    int64_t *sel, *kept; // (E) global counts (the stats arrays point here)
};

// parallel.dedup as moe_ep_options.dedup (0 none, 1 rank, 2 node; validated before).
static int ffn_dedup(const Moe__ParallelConfig *pc) {
    if (!pc) return 0;
    switch (pc->dedup) {
    case MOE__PARALLEL_CONFIG__DEDUP__none: return 0;
    case MOE__PARALLEL_CONFIG__DEDUP__rank: return 1;
    case MOE__PARALLEL_CONFIG__DEDUP__node: return 2;
    case _MOE__PARALLEL_CONFIG__DEDUP_IS_INT_SIZE: break; // protobuf-c's size marker
    }
    return 0;
}

// The EP layer's phases of one pass into the model's (the rest of the pass is dense there).
static void ffn_add_phases(moe_model_phases *ph, const moe_ep_phase *p) {
    ph->router += p->router, ph->dispatch += p->dispatch, ph->combine += p->combine;
    ph->experts += p->experts;
}

moe_status moe_ffn_create(const moe_layer_params *p, const moe_comm *comm,
                          const Moe__ParallelConfig *pc, moe_model_ffn **out) {
    moe_model_ffn *f = moe_xcalloc(1, sizeof *f);
    f->p = *p;
    moe_status st;
    const int bf16 = pc && pc->exchange_dtype == MOE__PARALLEL_CONFIG__EXCHANGE_DTYPE__bf16;
    if (comm) {
        moe_ep_options o = {
            // The one-rank path below has no exchange: dedup means nothing there.
            .dedup = ffn_dedup(pc),
            .n_chunks = pc && pc->overlap && pc->overlap_chunks > 1 ? pc->overlap_chunks : 1,
            .hierarchical = pc ? pc->hierarchical : 0,
            .dtype = bf16 ? MOE_COMM_BF16 : MOE_COMM_F32};
        st = moe_ep_layer_create(p, (moe_comm *)comm, &o, &f->ep);
    } else if (bf16) { // the one-rank layer has no exchange, hence no rounding points
        st = moe_set_error(MOE_EINVAL,
                           "parallel.exchange_dtype = bf16 needs the expert-parallel layer (a "
                           "communicator; moe train always has one): without it the payloads "
                           "would not be rounded; use f32 here");
    } else {
        st = moe_layer_create(p, &f->one);
    }
    if (st) {
        free(f);
        return st;
    }
    const int E = p->router.E;
    f->red = moe_xcalloc((size_t)(3 * E + 4), sizeof(double));
    f->sel = moe_xcalloc((size_t)E, sizeof(int64_t));
    f->kept = moe_xcalloc((size_t)E, sizeof(int64_t));
    *out = f;
    return MOE_OK;
}

void moe_ffn_free(moe_model_ffn *f) {
    if (!f) return;
    moe_layer_free(f->one);
    moe_ep_layer_free(f->ep);
    free(f->red);
    free(f->sel);
    free(f->kept);
    free(f);
}

// y (T, D) WRITTEN; x (T, D) kept alive until backward. Fills st with GLOBAL statistics and, for
// token choice, replaces the router's aux gradient by the one of the global aux loss.
moe_status moe_ffn_forward(moe_model *m, moe_model_ffn *f, float *y, const float *x, int64_t T,
                           const moe_layer_weights *w, const float *bias,
                           const moe_route_opts *opts, moe_model_layer_stats *st,
                           double *comm_seconds, moe_model_phases *ph) {
    const int E = f->p.router.E, K = f->p.router.K;
    moe_route_stats rs;
    if (f->ep) { // global statistics and the global aux gradient come from the layer itself
        moe_status s = moe_ep_layer_forward(f->ep, y, &rs, x, T, w, bias, opts);
        if (s) return s;
        for (int e = 0; e < E; e++) {
            f->sel[e] = rs.selected_per_expert[e];
            f->kept[e] = rs.tokens_per_expert[e];
        }
        st->selected = f->sel, st->kept = f->kept;
        st->tokens = T * m->lay.world;
        st->dropped = rs.dropped, st->unrouted = rs.unrouted;
        st->max_over_mean = rs.max_over_mean, st->cv = rs.cv, st->entropy = rs.entropy;
        st->aux = rs.aux_loss, st->z = rs.z_loss;
        const moe_ep_timing *tm = moe_ep_layer_timings(f->ep);
        *comm_seconds += tm->fwd.exchange;
        ffn_add_phases(ph, &tm->fwd);
        return MOE_OK;
    }
    const double t0 = moe_comm_wtime();
    moe_layer_forward(f->one, y, &rs, x, T, w, bias, opts);
    ph->experts += moe_comm_wtime() - t0;
    moe_route_plan *plan = (moe_route_plan *)moe_layer_plan(f->one); // documented override seam
    double *r = f->red;
    for (int e = 0; e < E; e++) {
        r[e] = (double)rs.selected_per_expert[e];
        r[E + e] = (double)rs.tokens_per_expert[e];
        r[2 * E + e] = plan->score_sum[e];
    }
    r[3 * E] = (double)rs.dropped;
    r[3 * E + 1] = (double)rs.unrouted;
    r[3 * E + 2] = rs.entropy * (double)T;
    r[3 * E + 3] = rs.z_loss * (double)T;
    // No communicator: one rank (moe_model_create), so the local statistics are the global ones.
    const int W = m->lay.world;
    MOE_ASSERT_EQ(W, 1);
    const double Tg = (double)T * W;
    double aux = 0;
    const moe_router_params *rp = &f->p.router;
    const int aux_on = moe_router_strategy_traits(rp->strategy).aux_loss;
    for (int e = 0; e < E; e++) {
        f->sel[e] = (int64_t)llround(r[e]);
        f->kept[e] = (int64_t)llround(r[E + e]);
        const double fi = r[e] / (Tg * K), Pi = r[2 * E + e] / Tg;
        if (aux_on) {
            aux += rp->aux_loss_coef * E * fi * Pi;
            // This rank's gradient is of W·L_aux (sync divides by W): α·E·f_i/T with T local.
            plan->aux_dscore[e] = (float)(rp->aux_loss_coef * E * fi / (double)T);
        }
    }
    const moe_route_load ld = moe_route_load_stats(f->sel, E, r[3 * E + 2], Tg);
    st->selected = f->sel;
    st->kept = f->kept;
    st->tokens = (int64_t)Tg;
    st->dropped = (int64_t)llround(r[3 * E]);
    st->unrouted = (int64_t)llround(r[3 * E + 1]);
    st->max_over_mean = ld.max_over_mean, st->cv = ld.cv, st->entropy = ld.entropy;
    st->aux = rp->balance_sequence && aux_on ? rs.aux_loss : aux; // sequence: the router's (W = 1)
    st->z = r[3 * E + 3] / Tg;
    return MOE_OK;
}

int moe_ffn_grads_fresh(moe_model_ffn *f) {
    if (!f->ep) return 0;
    moe_ep_layer_grads_fresh(f->ep);
    return 1;
}

moe_status moe_ffn_backward(moe_model_ffn *f, float *dx, moe_layer_weights *g, const float *dy,
                            const moe_layer_weights *w, double *comm_seconds,
                            moe_model_phases *ph) {
    if (!f->ep) {
        const double t0 = moe_comm_wtime();
        moe_layer_backward(f->one, dx, g, dy, w);
        ph->experts += moe_comm_wtime() - t0;
        return MOE_OK;
    }
    moe_status s = moe_ep_layer_backward(f->ep, dx, g, dy, w);
    *comm_seconds += moe_ep_layer_timings(f->ep)->bwd.exchange;
    ffn_add_phases(ph, &moe_ep_layer_timings(f->ep)->bwd);
    return s;
}

void moe_ffn_add_bytes(const moe_model_ffn *f, moe_comm_bytes *acc) {
    if (!f->ep) return;
    const moe_ep_timing *t = moe_ep_layer_timings(f->ep);
    const moe_comm_bytes *b[2] = {&t->fwd.bytes, &t->bwd.bytes};
    for (int k = 0; k < 2; k++) {
        acc->sent_intra += b[k]->sent_intra, acc->sent_inter += b[k]->sent_inter;
        acc->recv_intra += b[k]->recv_intra, acc->recv_inter += b[k]->recv_inter;
    }
}

int64_t moe_ffn_pairs(const moe_model_ffn *f) {
    if (f->ep) return moe_ep_layer_timings(f->ep)->pairs_in;
    int64_t n = 0; // one rank: every kept pair is computed here
    for (int e = 0; e < f->p.router.E; e++) n += f->kept[e];
    return n;
}

const moe_route_plan *moe_ffn_plan(const moe_model_ffn *f) {
    return f->ep ? moe_ep_layer_plan(f->ep) : moe_layer_plan(f->one);
}
