// ep-layer.c: the expert-parallel MoE layer — local routing with global aux/z/stats, dispatch of
// (token, expert) pairs to the experts' owners through the comm/ engine, expert compute laid out
// chunk-major (chunk, expert, source) so chunk c computes while chunk c+1 moves, combine, and the
// mirrored backward. Trade-off: the expert side expands wire rows into expert blocks itself, per
// chunk (a whole-buffer expansion could not start before the last chunk arrived); the wire format
// (moe_comm_slot, fp32 or bf16 token rows: moe_comm_row_put / _get) is comm's. With bf16 each
// wire row is one (token, expert) pair, so the rounding points do not depend on the layout.
// Node dedup puts the relay of ep-node.c around the rank-dedup path: its landing rows are the
// tokens of this rank's exchange.
#include "ep-layer.h"
#include "ep-node.h"

#include <math.h>
#include <string.h>

struct moe_ep_layer {
    moe_layer_params p;
    moe_ep_options o;
    moe_comm *c;
    moe_comm_info info;
    moe_comm_plan *xp;          // exchange plan over the EP group
    moe_ep_node *node;          // dedup = 2: the node relay (hop A); xp is then hop B
    moe_experts_params ep1, sp; // one routed expert (El views), shared family
    moe_route_plan *plan;
    int El, Kx, P;
    size_t wb, tb, rb; // wire row bytes, fp32 token row bytes (D·4), token row bytes on the wire
    float *row;        // (D) one fp32 row: widened wire row or a row before it is packed
    int64_t Rt, N_max, R_recv_max;
    moe_ep_timing timing;
    double cb_time; // callback seconds of the exchange in flight
    moe_status cb_status;
    // last forward
    const float *x; // (T, D) not owned
    int64_t T;
    const moe_layer_weights *w; // weights of the call in flight (callbacks)
    moe_layer_weights *g;       // gradients of the backward in flight
    // token side
    int32_t *row_exp;     // (Rt) expert of each plan row
    int32_t *ids;         // (T_max, Kx) global expert of each pair or -1
    float *pw_tok;        // (T_max, Kx) combine weight of each pair
    int32_t *pair_row;    // (T_max, Kx) plan row of each pair
    float *drw_pair;      // (T_max, Kx) dL/dw of each pair
    float *drw_plan;      // (Rt) the same by plan row
    int32_t *send_counts; // (P, 1+El)
    int32_t *row_src;     // (Rt) pack's row source
    char *send;           // (Rt, wb) wire rows out; backward: dy rows
    char *ret;            // (Rt, wb) rows back (combine; dispatch-backward)
    // expert side
    int32_t *rexp;         // (R_recv_max) without dedup: local expert of each wire row
    int64_t *peer_off;     // (P+1) wire-row offset of each source
    int64_t *rp_start;     // (R_recv_max) first entry in rp of each wire row
    int32_t *rp_n;         // (R_recv_max) pairs of each wire row
    int64_t *rp;           // (N_max) expanded position of each pair, wire-row order
    int32_t *pexp;         // (N_max) local expert of each position
    float *pw;             // (N_max) weight of each position (1 without dedup)
    float *drw;            // (N_max) dedup: dL/dw of each position
    int64_t *coff;         // (n_chunks, El+1) block starts per (chunk, expert)
    int64_t *cfill;        // (El) fill cursors
    uint8_t *gfresh;       // (El) 1: the expert's gradients are stale, the next backward writes
                           // them (moe_ep_layer_grads_fresh); 0: it adds to them
    char *recv;            // (R_recv_max, wb) wire rows in; backward: dy rows
    char *back;            // (R_recv_max, wb) rows out
    float *xe, *oe, *dout; // (N_max, D) inputs, outputs (backward: dxin), dL/dout
    float *save, *scratch; // (N_max, save_per_row), (N_max, scratch_per_row)
    moe_shared_buffers sh; // shared experts, for T_max tokens (none when n_shared = 0)
    // node dedup (landing side): the rows that arrived through hop A are xp's tokens
    int64_t A;            // rows arrived in the last forward
    const int32_t *ids_a; // (A, Kx) their global experts (owned by node)
    const float *w_a;     // (A, Kx) their weights
    float *ya;            // (A_max, D) summed combine rows; backward: dx of each row
    float *drw_a;         // (A_max, Kx) dL/dw aligned with ids_a
    // global stats
    int64_t *gi; // (2E + 4)
    double *gd;  // (E + 2)
    moe_route_stats stats;
};

moe_layer_weights moe_ep_local_view(const moe_layer_params *p, const moe_layer_weights *full,
                                    int first) {
    moe_layer_weights v = *full;
    v.experts = moe_experts_slice(&full->experts, p->router.D, p->F,
                                  p->lora_experts ? p->lora_r : 0, first);
    return v;
}

moe_status moe_ep_layer_create(const moe_layer_params *p, moe_comm *c, const moe_ep_options *o,
                               moe_ep_layer **out) {
    *out = NULL;
    moe_comm_info in = moe_comm_get_info(c);
    moe_status st = moe_comm_check_layout(in.world_size, in.ep_size, p->router.E);
    if (st) return st;
    if (in.n_experts != 0 && in.n_experts != p->router.E)
        return moe_set_error(MOE_ELAYOUT,
                             "expert-parallel layer: the layer has %d experts but the "
                             "communicator groups were built for %d: pass the same n_experts",
                             p->router.E, in.n_experts);
    moe_ep_options opt = o ? *o : (moe_ep_options){0};
    if (opt.n_chunks < 1) opt.n_chunks = 1;
    if (opt.sub_rows <= 0) opt.sub_rows = 256;
    if (opt.dtype == MOE_COMM_BF16 && opt.dedup)
        return moe_set_error(MOE_EINVAL,
                             "expert-parallel layer: bf16 payloads with dedup are not supported "
                             "(a dedup row carries the sum over a token's experts on one rank; "
                             "rounding that sum would differ for every EP size and break layout "
                             "invariance): turn one of them off");
    if (p->F < 1 || p->T_max < 1 || p->n_shared < 0 || (p->n_shared > 0 && p->Fs < 1))
        return moe_set_error(MOE_EINVAL,
                             "expert-parallel layer: F=%lld T_max=%lld n_shared=%d "
                             "Fs=%lld: need F, T_max >= 1 and Fs >= 1 with shared experts",
                             (long long)p->F, (long long)p->T_max, p->n_shared, (long long)p->Fs);
    const int EP = in.ep_size, E = p->router.E, El = E / EP;
    const moe_route_traits tr = moe_router_strategy_traits(p->router.strategy);
    const int Kx = tr.by_token ? p->router.K : E; // most pairs one token can have
    const int64_t T = p->T_max, D = p->router.D;
    const int64_t Rt = moe_router_max_rows(&p->router, T);
    // Expert-side pairs, worst case: every rank of the group sends all its pairs here, bounded
    // per expert by the capacity per group when there is one.
    int64_t N = (int64_t)EP * (tr.balanced ? Rt / EP : Rt);
    const int64_t G = moe_router_group(&p->router, T);
    if (p->router.capacity_factor > 0 && !tr.balanced && G > 0) {
        int64_t capb = (int64_t)EP * ((T + G - 1) / G) * moe_router_capacity(&p->router, G) * El;
        N = capb < N ? capb : N;
    }
    if (opt.max_expert_rows > 0) N = opt.max_expert_rows;
    // Node dedup: the relay's arrived rows (≤ A_max) are hop B's tokens, ≤ Kx rows each.
    moe_ep_node *node = NULL;
    if (opt.dedup == 2 && (st = moe_ep_node_create(c, El, Kx, D, T, &node))) return st;
    const int64_t Rs =
        node && moe_ep_node_max_rows(node) * Kx > Rt ? moe_ep_node_max_rows(node) * Kx : Rt;
    moe_route_plan *plan = NULL;
    if ((st = moe_route_plan_create(&p->router, T, &plan))) {
        moe_ep_node_free(node);
        return st;
    }
    moe_comm_plan_params pp = {
        MOE_COMM_EP, El, Kx,           opt.dedup != 0,   (size_t)D * sizeof(float),
        Rs,          N,  opt.n_chunks, opt.hierarchical, 0,
        opt.dtype};
    moe_comm_plan *xp = NULL;
    if ((st = moe_comm_plan_create(c, &pp, &xp))) {
        moe_route_plan_free(plan);
        moe_ep_node_free(node);
        return st;
    }
    moe_ep_layer *L = moe_xcalloc(1, sizeof *L);
    L->p = *p, L->o = opt, L->c = c, L->info = in, L->xp = xp, L->plan = plan, L->node = node;
    L->El = El, L->Kx = Kx, L->P = EP;
    L->wb = moe_comm_plan_wire_bytes(xp), L->tb = (size_t)D * sizeof(float);
    L->rb = moe_comm_plan_row_bytes(xp);
    L->row = moe_xcalloc((size_t)D, sizeof(float));
    L->Rt = Rt, L->N_max = N, L->R_recv_max = N;
    L->ep1 = moe_layer_routed_params(p);
    L->ep1.n_experts = 1;
    L->sp = moe_layer_shared_params(p);
    const int64_t M = Rs > 1 ? Rs : 1, Nn = N > 1 ? N : 1, TK = T * Kx;
    if (node) {
        const int64_t Am = moe_ep_node_max_rows(node);
        L->ya = moe_xalloc_aligned((size_t)(Am * D) * sizeof(float));
        L->drw_a = moe_xcalloc((size_t)(Am * Kx), sizeof(float));
    }
    L->row_exp = moe_xcalloc((size_t)M, sizeof(int32_t));
    L->ids = moe_xcalloc((size_t)TK, sizeof(int32_t));
    L->pw_tok = moe_xcalloc((size_t)TK, sizeof(float));
    L->pair_row = moe_xcalloc((size_t)TK, sizeof(int32_t));
    L->drw_pair = moe_xcalloc((size_t)TK, sizeof(float));
    L->drw_plan = moe_xcalloc((size_t)M, sizeof(float));
    L->send_counts = moe_xcalloc((size_t)EP * (size_t)(El + 1), sizeof(int32_t));
    L->row_src = moe_xcalloc((size_t)M, sizeof(int32_t));
    L->send = moe_xalloc_aligned((size_t)M * L->wb);
    L->ret = moe_xalloc_aligned((size_t)M * L->wb);
    L->rexp = moe_xcalloc((size_t)Nn, sizeof(int32_t));
    L->peer_off = moe_xcalloc((size_t)EP + 1, sizeof(int64_t));
    L->rp_start = moe_xcalloc((size_t)Nn, sizeof(int64_t));
    L->rp_n = moe_xcalloc((size_t)Nn, sizeof(int32_t));
    L->rp = moe_xcalloc((size_t)Nn, sizeof(int64_t));
    L->pexp = moe_xcalloc((size_t)Nn, sizeof(int32_t));
    L->pw = moe_xcalloc((size_t)Nn, sizeof(float));
    L->drw = moe_xcalloc((size_t)Nn, sizeof(float));
    L->coff = moe_xcalloc((size_t)opt.n_chunks * (size_t)(El + 1), sizeof(int64_t));
    L->cfill = moe_xcalloc((size_t)El, sizeof(int64_t));
    L->gfresh = moe_xcalloc((size_t)El, 1);
    L->recv = moe_xalloc_aligned((size_t)Nn * L->wb);
    L->back = moe_xalloc_aligned((size_t)Nn * L->wb);
    L->xe = moe_xalloc_aligned((size_t)(Nn * D) * sizeof(float));
    L->oe = moe_xalloc_aligned((size_t)(Nn * D) * sizeof(float));
    L->dout = moe_xalloc_aligned((size_t)(Nn * D) * sizeof(float));
    L->save = moe_xalloc_aligned((size_t)(Nn * moe_experts_save_per_row(&L->ep1)) * sizeof(float));
    L->scratch =
        moe_xalloc_aligned((size_t)(Nn * moe_experts_scratch_per_row(&L->ep1)) * sizeof(float));
    if (p->n_shared > 0) moe_shared_buffers_alloc(&L->sh, &L->sp, T);
    L->gi = moe_xcalloc(2 * (size_t)E + 4, sizeof(int64_t));
    L->gd = moe_xcalloc((size_t)E + 4, sizeof(double));
    *out = L;
    return MOE_OK;
}

void moe_ep_layer_free(moe_ep_layer *L) {
    if (!L) return;
    moe_comm_plan_free(L->xp);
    moe_ep_node_free(L->node);
    free(L->ya);
    free(L->drw_a);
    moe_route_plan_free(L->plan);
    free(L->row);
    free(L->row_exp);
    free(L->ids);
    free(L->pw_tok);
    free(L->pair_row);
    free(L->drw_pair);
    free(L->drw_plan);
    free(L->send_counts);
    free(L->row_src);
    free(L->send);
    free(L->ret);
    free(L->rexp);
    free(L->peer_off);
    free(L->rp_start);
    free(L->rp_n);
    free(L->rp);
    free(L->pexp);
    free(L->pw);
    free(L->drw);
    free(L->coff);
    free(L->cfill);
    free(L->gfresh);
    free(L->recv);
    free(L->back);
    free(L->xe);
    free(L->oe);
    free(L->dout);
    free(L->save);
    free(L->scratch);
    moe_shared_buffers_free(&L->sh);
    free(L->gi);
    free(L->gd);
    free(L);
}

const moe_ep_timing *moe_ep_layer_timings(const moe_ep_layer *L) { return &L->timing; }

// Payload bytes the plan moved since the snapshot b0.
static moe_comm_bytes ep_bytes_since(const moe_ep_layer *L, const moe_comm_bytes *b0) {
    moe_comm_bytes b = moe_comm_plan_bytes(L->xp);
    if (L->node) {
        const moe_comm_bytes a = moe_ep_node_bytes(L->node);
        b.sent_intra += a.sent_intra, b.sent_inter += a.sent_inter;
        b.recv_intra += a.recv_intra, b.recv_inter += a.recv_inter;
    }
    b.sent_intra -= b0->sent_intra, b.sent_inter -= b0->sent_inter;
    b.recv_intra -= b0->recv_intra, b.recv_inter -= b0->recv_inter;
    return b;
}
const moe_route_plan *moe_ep_layer_plan(const moe_ep_layer *L) { return L->plan; }

// ------------------------------------------------------------------ global losses and stats

// All-reduces the local selection counts, score sums, entropy and z partial sums over the world
// and rewrites the plan's aux/z hooks so that backward adds W × this rank's part of the global
// losses' gradient (see ep-layer.h).
static moe_status ep_global_stats(moe_ep_layer *L, const moe_route_stats *ls) {
    const moe_router_params *rp = &L->p.router;
    moe_route_plan *pl = L->plan;
    const int E = rp->E, K = rp->K, W = L->info.world_size;
    int64_t *gi = L->gi;
    double *gd = L->gd;
    for (int e = 0; e < E; e++) gi[e] = pl->sel_counts[e], gi[E + e] = pl->counts[e];
    gi[2 * E] = pl->T, gi[2 * E + 1] = ls->unrouted, gi[2 * E + 2] = ls->selected;
    gi[2 * E + 3] = ls->kept;
    for (int e = 0; e < E; e++) gd[e] = pl->score_sum[e];
    gd[E] = ls->entropy * (double)pl->T;
    gd[E + 1] = rp->z_loss_coef != 0 && pl->T > 0
                    ? moe_router_z_loss(pl->logits, pl->T, E, 1.0, NULL) * (double)pl->T
                    : 0;
    moe_status st =
        moe_comm_allreduce_i64(L->c, MOE_COMM_WORLD, gi, 2 * (size_t)E + 4, MOE_COMM_SUM);
    gd[E + 2] = pl->aux_seq_sum, gd[E + 3] = (double)pl->aux_seq_groups; // sequence scope
    if (!st) st = moe_comm_allreduce_f64(L->c, MOE_COMM_WORLD, gd, (size_t)E + 4, MOE_COMM_SUM);
    if (st) return st;
    const double Tg = (double)gi[2 * E];
    moe_route_stats *s = &L->stats;
    memset(s, 0, sizeof *s);
    s->selected_per_expert = gi;
    s->tokens_per_expert = gi + E;
    s->unrouted = gi[2 * E + 1], s->selected = gi[2 * E + 2], s->kept = gi[2 * E + 3];
    s->dropped = s->selected - s->kept;
    const moe_route_load ld = moe_route_load_stats(gi, E, gd[E], Tg);
    s->max_over_mean = ld.max_over_mean, s->cv = ld.cv, s->entropy = ld.entropy;
    if (Tg <= 0) return MOE_OK;
    s->z_loss = rp->z_loss_coef * gd[E + 1] / Tg;
    // z: backward uses β/loss_T per token; the global mean divides by Tg, times W.
    pl->loss_T = Tg / W;
    for (int e = 0; e < E; e++) pl->aux_dscore[e] = 0;
    if (moe_router_strategy_traits(rp->strategy).aux_loss && rp->balance_sequence) {
        // Sequence scope: L = α·E·Σ_b Σ_i f·P / B_g over the global batch's B_g sequences; the
        // router made this rank's coefficients with its own n_b: rescale to W·n_b/B_g.
        const double Bg = gd[E + 3];
        if (Bg > 0) {
            s->aux_loss = rp->aux_loss_coef * E * gd[E + 2] / Bg;
            const double sc = (double)W * (double)pl->aux_seq_groups / Bg;
            for (int64_t i = 0; i < pl->aux_seq_groups * E; i++)
                pl->aux_dscore_seq[i] = (float)(pl->aux_dscore_seq[i] * sc);
        }
    } else if (moe_router_strategy_traits(rp->strategy).aux_loss) {
        double aux = 0;
        for (int e = 0; e < E; e++) {
            double f = (double)gi[e] / (Tg * K);
            aux += f * gd[e] / Tg;
            pl->aux_dscore[e] = (float)((double)W * rp->aux_loss_coef * E * f / Tg);
        }
        s->aux_loss = rp->aux_loss_coef * E * aux;
    }
    return MOE_OK;
}

// ------------------------------------------------------------------ expert side, per chunk

// Expert compute of one chunk: rows [co[j], co[j+1]) of each local expert j (forward: oe from
// xe; backward: dxin into oe from dout), in sub-blocks with exchange progress between them when
// chunked. The same sub-blocks in forward and backward (save layout).
static moe_status ep_compute(moe_ep_layer *L, int fwd, const int64_t *co) {
    const int64_t D = L->p.router.D, F = L->p.F, r = L->ep1.lora_r;
    const int64_t spr = moe_experts_save_per_row(&L->ep1),
                  scr = moe_experts_scratch_per_row(&L->ep1);
    const int64_t sub = L->o.sub_rows;
    for (int j = 0; j < L->El; j++) {
        const int64_t r0 = co[j], n = co[j + 1] - co[j];
        moe_expert_weights w = moe_experts_slice(&L->w->experts, D, F, r, j);
        if (j + 1 < L->El) { // the kernels prefetch the next local expert's weights
            const moe_expert_weights nx = moe_experts_slice(&L->w->experts, D, F, r, j + 1);
            w.next_w1 = nx.w1;
            w.next_w2 = nx.w2;
        }
        for (int64_t a = r0; a < r0 + n; a += sub) {
            const int64_t m = r0 + n - a < sub ? r0 + n - a : sub, off[2] = {0, m};
            if (fwd) {
                moe_experts_forward(&L->ep1, L->oe + a * D, L->save + a * spr, &w, off,
                                    L->xe + a * D);
            } else {
                moe_expert_weights g = moe_experts_slice(&L->g->experts, D, F, r, j);
                moe_experts_backward_fresh(&L->ep1, &L->gfresh[j], L->oe + a * D, &g,
                                           L->scratch + a * scr, &w, off, L->xe + a * D,
                                           L->save + a * spr, L->dout + a * D);
                L->gfresh[j] = 0;
            }
            if (L->o.n_chunks > 1) {
                moe_status st = moe_comm_plan_progress(L->xp);
                if (st) return st;
            }
        }
    }
    return MOE_OK;
}

// Forward chunk c arrived: expand its wire rows chunk-major (expert, source, row), compute the
// experts on its blocks, write its combine rows back[u] = Σ_pairs pw·out.
static moe_status ep_fwd_chunk(void *ctx, const moe_comm_plan *xp, moe_comm_dir dir, int c,
                               int nc) {
    (void)dir, (void)nc;
    moe_ep_layer *L = ctx;
    double t0 = moe_clock_seconds();
    const int El = L->El, Kx = L->Kx, P = L->P, dedup = L->o.dedup;
    const int64_t D = L->p.router.D;
    int64_t *co = L->coff + (size_t)c * (size_t)(El + 1);
    int64_t pos0 = c == 0 ? 0 : L->coff[(size_t)(c - 1) * (size_t)(El + 1) + El];
    // pass 1: pairs per expert in this chunk
    for (int j = 0; j < El; j++) L->cfill[j] = 0;
    for (int s = 0; s < P; s++) {
        int64_t first, n;
        moe_comm_chunk_range(xp, MOE_COMM_FORWARD, c, s, &first, &n);
        for (int64_t u = first; u < first + n; u++) {
            if (!dedup) {
                L->cfill[L->rexp[u]]++;
                continue;
            }
            const moe_comm_slot *sl = (const moe_comm_slot *)(L->recv + (size_t)u * L->wb + L->rb);
            for (int k = 0; k < Kx; k++)
                if (sl[k].expert >= 0) L->cfill[sl[k].expert]++;
        }
    }
    co[0] = pos0;
    for (int j = 0; j < El; j++) {
        co[j + 1] = co[j] + L->cfill[j];
        L->cfill[j] = co[j];
    }
    MOE_ASSERT(co[El] <= L->N_max); // guaranteed by the agreed count checks
    // pass 2: fill positions (pairs of a row take consecutive rp entries: pos0 + pairs so far)
    int64_t q = pos0;
    for (int s = 0; s < P; s++) {
        int64_t first, n;
        moe_comm_chunk_range(xp, MOE_COMM_FORWARD, c, s, &first, &n);
        for (int64_t u = first; u < first + n; u++) {
            const char *row = L->recv + (size_t)u * L->wb;
            L->rp_start[u] = q;
            L->rp_n[u] = 0;
            for (int k = 0; k < (dedup ? Kx : 1); k++) {
                const moe_comm_slot *sl = (const moe_comm_slot *)(row + L->rb) + k;
                int j = dedup ? sl->expert : L->rexp[u];
                if (j < 0) continue;
                int64_t pos = L->cfill[j]++;
                moe_comm_row_get(xp, L->xe + pos * D, row); // bf16: widened
                L->pw[pos] = dedup ? sl->weight : 1.0f;
                L->pexp[pos] = j;
                L->rp[q++] = pos;
                L->rp_n[u]++;
            }
        }
    }
    moe_status st = ep_compute(L, 1, co);
    if (st) return st;
    for (int s = 0; s < P; s++) {
        int64_t first, n;
        moe_comm_chunk_range(xp, MOE_COMM_FORWARD, c, s, &first, &n);
        for (int64_t u = first; u < first + n; u++) {
            float *b = L->row; // summed in fp32, then packed as a token row (stride rb)
            memset(b, 0, L->tb);
            for (int32_t i = 0; i < L->rp_n[u]; i++) {
                int64_t pos = L->rp[L->rp_start[u] + i];
                const float w = L->pw[pos], *o = L->oe + pos * D;
                for (int64_t d = 0; d < D; d++) b[d] += w * o[d];
            }
            moe_comm_row_put(xp, L->back + (size_t)u * L->rb, b);
        }
    }
    L->cb_time += moe_clock_seconds() - t0;
    return MOE_OK;
}

// Backward chunk c (dy rows) arrived: fan out dout = pw·dy (and, with dedup, dL/dw = dy·out),
// expert backward on the chunk's blocks, write dispatch-backward rows (dedup: wire rows whose
// slots carry (expert, dL/dw) back to the token side).
static moe_status ep_bwd_chunk(void *ctx, const moe_comm_plan *xp, moe_comm_dir dir, int c,
                               int nc) {
    (void)dir, (void)nc;
    moe_ep_layer *L = ctx;
    double t0 = moe_clock_seconds();
    const int El = L->El, Kx = L->Kx, P = L->P, dedup = L->o.dedup;
    const int64_t D = L->p.router.D;
    const int64_t *co = L->coff + (size_t)c * (size_t)(El + 1);
    for (int s = 0; s < P; s++) {
        int64_t first, n;
        moe_comm_chunk_range(xp, MOE_COMM_FORWARD, c, s, &first, &n);
        for (int64_t u = first; u < first + n; u++) {
            float *dy = L->row;
            moe_comm_row_get(xp, dy, L->recv + (size_t)u * L->rb);
            for (int32_t i = 0; i < L->rp_n[u]; i++) {
                int64_t pos = L->rp[L->rp_start[u] + i];
                const float w = L->pw[pos], *o = L->oe + pos * D;
                float *dst = L->dout + pos * D, acc = 0;
                for (int64_t d = 0; d < D; d++) {
                    dst[d] = w * dy[d];
                    acc += dy[d] * o[d];
                }
                L->drw[pos] = acc;
            }
        }
    }
    moe_status st = ep_compute(L, 0, co); // dxin into oe
    if (st) return st;
    const size_t stride = dedup ? L->wb : L->rb;
    for (int s = 0; s < P; s++) {
        int64_t first, n;
        moe_comm_chunk_range(xp, MOE_COMM_FORWARD, c, s, &first, &n);
        for (int64_t u = first; u < first + n; u++) {
            char *row = L->back + (size_t)u * stride;
            float *b = L->row; // summed in fp32, then packed
            memset(b, 0, L->tb);
            moe_comm_slot *sl = (moe_comm_slot *)(row + L->rb);
            for (int k = 0; dedup && k < Kx; k++) sl[k] = (moe_comm_slot){-1, 0.0f};
            for (int32_t i = 0; i < L->rp_n[u]; i++) {
                int64_t pos = L->rp[L->rp_start[u] + i];
                const float *dxp = L->oe + pos * D;
                for (int64_t d = 0; d < D; d++) b[d] += dxp[d];
                if (dedup) sl[i] = (moe_comm_slot){L->pexp[pos], L->drw[pos]};
            }
            moe_comm_row_put(xp, row, b);
        }
    }
    L->cb_time += moe_clock_seconds() - t0;
    return MOE_OK;
}

// Runs one exchange, accounting callback time apart from exposed exchange time.
// *part (ph->dispatch or ph->combine) gets the exposed time too.
static moe_status ep_exchange(moe_ep_layer *L, moe_ep_phase *ph, double *part, moe_comm_dir dir,
                              size_t rb, const void *send, void *recv, moe_comm_chunk_fn fn) {
    L->cb_time = 0;
    double t0 = moe_clock_seconds();
    moe_status st = moe_comm_exchange(L->xp, dir, rb, send, recv, fn, L);
    double dt = moe_clock_seconds() - t0;
    ph->exchange += dt - L->cb_time;
    *part += dt - L->cb_time;
    ph->experts += L->cb_time;
    return st;
}

// The pipelined pair of exchanges (n_chunks > 1, flat): chunk c of the first exchange (FORWARD)
// arrives, fn computes on it, then chunk c of the second (REVERSE) leaves at once. While chunk c
// computes, FORWARD chunk c+1 and REVERSE chunk c−1 are in flight (progressed from inside fn).
// Every rank posts in the same order: F0, F1, then per chunk c: R(c), F(c+2).
// *in gets the time posting and waiting on FORWARD chunks, *out the rest of the exposed time.
static moe_status ep_pipeline(moe_ep_layer *L, moe_ep_phase *ph, double *in, double *out,
                              size_t rb_in, const void *send_in, void *recv_in,
                              moe_comm_chunk_fn fn, size_t rb_out, const void *send_out,
                              void *recv_out) {
    const int nc = L->o.n_chunks;
    L->cb_time = 0;
    double t0 = moe_clock_seconds();
    moe_status st = moe_comm_chunk_post(L->xp, MOE_COMM_FORWARD, rb_in, send_in, recv_in, 0);
    if (!st) st = moe_comm_chunk_post(L->xp, MOE_COMM_FORWARD, rb_in, send_in, recv_in, 1);
    double t_in = moe_clock_seconds() - t0;
    for (int c = 0; c < nc && !st; c++) {
        double ta = moe_clock_seconds();
        st = moe_comm_chunk_wait(L->xp, MOE_COMM_FORWARD, c);
        t_in += moe_clock_seconds() - ta;
        if (st) break;
        if ((st = fn(L, L->xp, MOE_COMM_FORWARD, c, nc))) break;
        if ((st = moe_comm_chunk_post(L->xp, MOE_COMM_REVERSE, rb_out, send_out, recv_out, c)))
            break;
        if (c + 2 < nc) {
            ta = moe_clock_seconds();
            st = moe_comm_chunk_post(L->xp, MOE_COMM_FORWARD, rb_in, send_in, recv_in, c + 2);
            t_in += moe_clock_seconds() - ta;
        }
    }
    for (int c = 0; c < nc && !st; c++) st = moe_comm_chunk_wait(L->xp, MOE_COMM_REVERSE, c);
    double dt = moe_clock_seconds() - t0;
    ph->exchange += dt - L->cb_time;
    *in += t_in;
    *out += dt - L->cb_time - t_in;
    ph->experts += L->cb_time;
    return st;
}

// Both exchanges of one pass: pipelined when chunked and flat, else one after the other through
// the engine (its callbacks run as chunks arrive; hierarchical mode runs them after the whole).
// The FORWARD direction's exposed time goes to *in, the REVERSE one's to *out.
static moe_status ep_exchanges(moe_ep_layer *L, moe_ep_phase *ph, double *in, double *out,
                               size_t rb_in, const void *send_in, void *recv_in,
                               moe_comm_chunk_fn fn, size_t rb_out, const void *send_out,
                               void *recv_out) {
    if (L->o.n_chunks > 1 && !L->o.hierarchical)
        return ep_pipeline(L, ph, in, out, rb_in, send_in, recv_in, fn, rb_out, send_out, recv_out);
    moe_status st = ep_exchange(L, ph, in, MOE_COMM_FORWARD, rb_in, send_in, recv_in, fn);
    if (!st) st = ep_exchange(L, ph, out, MOE_COMM_REVERSE, rb_out, send_out, recv_out, NULL);
    return st;
}

// ------------------------------------------------------------------ forward / backward

moe_status moe_ep_layer_forward(moe_ep_layer *L, float *y, moe_route_stats *stats, const float *x,
                                int64_t T, const moe_layer_weights *w, const float *balance_bias,
                                const moe_route_opts *opts) {
    const moe_layer_params *p = &L->p;
    const int64_t D = p->router.D;
    const int E = p->router.E, El = L->El, Kx = L->Kx, P = L->P;
    MOE_ASSERT(T >= 0 && T <= p->T_max);
    moe_ep_phase *ph = &L->timing.fwd;
    memset(ph, 0, sizeof *ph);
    const moe_comm_bytes b0 = ep_bytes_since(L, &(moe_comm_bytes){0, 0, 0, 0});
    L->timing.bwd.bytes = (moe_comm_bytes){0, 0, 0, 0}; // belongs to this forward from now on
    double t0 = moe_clock_seconds();
    L->x = x, L->T = T, L->w = w;
    moe_route_plan *pl = L->plan;
    moe_route_stats ls;
    moe_router_forward(&p->router, pl, &ls, x, w->wg, w->bg, balance_bias, T, opts);
    double t1 = moe_clock_seconds();
    moe_status st = ep_global_stats(L, &ls);
    double t1b = moe_clock_seconds();
    ph->exchange += t1b - t1;
    if (st) return st;
    if (stats) *stats = L->stats;
    // Pairs of each token in plan order (token choice: top-k slots; expert choice: by expert).
    for (int e = 0; e < E; e++)
        for (int64_t r = pl->offsets[e]; r < pl->offsets[e + 1]; r++) L->row_exp[r] = e;
    for (int64_t t = 0; t < T; t++) {
        int j = 0;
        for (int64_t q = pl->tok_offsets[t]; q < pl->tok_offsets[t + 1]; q++, j++) {
            int32_t r = pl->tok_rows[q];
            L->ids[t * Kx + j] = L->row_exp[r];
            L->pw_tok[t * Kx + j] = pl->row_weight[r];
            L->pair_row[t * Kx + j] = r;
        }
        for (; j < Kx; j++)
            L->ids[t * Kx + j] = -1, L->pw_tok[t * Kx + j] = 0, L->pair_row[t * Kx + j] = -1;
    }
    ph->router = moe_clock_seconds() - t0; // gate, selection, stats all-reduce, pair table
    if (L->node) {                         // hop A; the arrived rows are hop B's tokens
        const float *xa;
        double ta = moe_clock_seconds();
        st = moe_ep_node_dispatch(L->node, T, x, L->ids, L->pw_tok, &L->A, &xa, &L->ids_a, &L->w_a);
        ta = moe_clock_seconds() - ta;
        ph->exchange += ta, ph->dispatch += ta;
        if (!st)
            st = moe_comm_dispatch_pack(L->xp, L->A, xa, L->ids_a, L->w_a, L->send_counts, L->send,
                                        L->row_src);
    } else {
        st = moe_comm_dispatch_pack(L->xp, T, x, L->ids, L->pw_tok, L->send_counts, L->send,
                                    L->row_src);
    }
    if (st) return st;
    double t2 = moe_clock_seconds();
    st = moe_comm_exchange_counts(L->xp, L->send_counts);
    if (!st && L->o.dedup && L->o.max_expert_rows > 0) {
        // The engine checks wire rows; with dedup and a user bound, pairs (≤ K per row) can
        // exceed the pair buffers: agree on it before any payload moves.
        int64_t pairs = moe_comm_plan_pairs(L->xp), worst = pairs;
        st = moe_comm_allreduce_i64(L->c, MOE_COMM_EP, &worst, 1, MOE_COMM_MAX);
        if (!st && worst > L->N_max)
            st = moe_set_error(MOE_EINVAL,
                               "expert-parallel layer: %lld (token, expert) pairs "
                               "arrive on a rank of the EP group (here %lld) but max_expert_rows "
                               "is %lld: raise it (0 = the worst case)",
                               (long long)worst, (long long)pairs, (long long)L->N_max);
    }
    t2 = moe_clock_seconds() - t2;
    ph->exchange += t2, ph->dispatch += t2;
    if (st) return st;
    // Expert side: source offsets and, without dedup, the expert of each received row.
    const int32_t *rr = moe_comm_plan_counts(L->xp, MOE_COMM_REVERSE);
    L->peer_off[0] = 0;
    int64_t u = 0;
    for (int s = 0; s < P; s++) {
        const int32_t *r = rr + (size_t)s * (size_t)(El + 1);
        L->peer_off[s + 1] = L->peer_off[s] + r[0];
        for (int j = 0; j < El && !L->o.dedup; j++)
            for (int32_t i = 0; i < r[1 + j]; i++) L->rexp[u++] = j;
    }
    if ((st = ep_exchanges(L, ph, &ph->dispatch, &ph->combine, L->wb, L->send, L->recv,
                           ep_fwd_chunk, L->rb, L->back, L->ret)))
        return st;
    L->timing.pairs_in = L->coff[(size_t)(L->o.n_chunks - 1) * (size_t)(El + 1) + El];
    memset(y, 0, (size_t)(T * D) * sizeof(float));
    if (L->node) { // sum per arrived row (fp32), then hop A back
        memset(L->ya, 0, (size_t)(L->A * D) * sizeof(float));
        moe_comm_combine_unpack(L->xp, L->ret, L->row_src, NULL, L->A, L->ya);
        double ta = moe_clock_seconds();
        st = moe_ep_node_combine(L->node, L->ya, T, y);
        ta = moe_clock_seconds() - ta;
        ph->exchange += ta, ph->combine += ta;
        if (st) return st;
    } else {
        moe_comm_combine_unpack(L->xp, L->ret, L->row_src, L->pw_tok, T, y);
    }
    ph->bytes = ep_bytes_since(L, &b0);

    if (p->n_shared > 0)
        moe_shared_forward(&L->sp, &L->sh, y, &w->shared, p->shared_gate ? w->ws : NULL, x, T);
    ph->total = moe_clock_seconds() - t0;
    return MOE_OK;
}

void moe_ep_layer_grads_fresh(moe_ep_layer *L) { memset(L->gfresh, 1, (size_t)L->El); }

// After the expert compute of a backward: the experts that got no rows still hold stale
// gradients where moe_ep_layer_grads_fresh said so: zero them now.
static void ep_zero_unwritten(moe_ep_layer *L, moe_layer_weights *grads) {
    const int64_t D = L->p.router.D, F = L->p.F, r = L->ep1.lora_r;
    for (int j = 0; j < L->El; j++) {
        if (!L->gfresh[j]) continue;
        const moe_expert_weights g = moe_experts_slice(&grads->experts, D, F, r, j);
        float *t[12] = {g.w1, g.w3, g.w2, g.b1, g.b3, g.b2, g.la1, g.lb1, g.la3, g.lb3, g.la2, g.lb2};
        const int64_t n[12] = {D * F, D * F, F * D, F, F, D, D * r, r * F, D * r, r * F, F * r, r * D};
        for (int k = 0; k < 12; k++)
            if (t[k]) memset(t[k], 0, (size_t)n[k] * sizeof(float));
        L->gfresh[j] = 0;
    }
}

moe_status moe_ep_layer_backward(moe_ep_layer *L, float *dx, moe_layer_weights *grads,
                                 const float *dy, const moe_layer_weights *w) {
    const moe_layer_params *p = &L->p;
    const int64_t D = p->router.D, T = L->T;
    const int El = L->El, Kx = L->Kx, P = L->P, dedup = L->o.dedup;
    const float *x = L->x;
    moe_route_plan *pl = L->plan;
    moe_ep_phase *ph = &L->timing.bwd;
    memset(ph, 0, sizeof *ph);
    const moe_comm_bytes b0 = ep_bytes_since(L, &(moe_comm_bytes){0, 0, 0, 0});
    double t0 = moe_clock_seconds();
    L->w = w, L->g = grads;
    // Token side: combine-backward rows. Without dedup a wire row is one pair: send w·dy and take
    // dL/dw = dy·out here (out came back in ret); with dedup send dy once per (token, peer).
    // Node dedup: dy first crosses hop A; the arrived rows are the tokens here.
    const float *dyb = dy;
    if (L->node) {
        double ta = moe_clock_seconds();
        moe_status sa = moe_ep_node_combine_backward(L->node, dy, &dyb);
        ta = moe_clock_seconds() - ta;
        ph->exchange += ta, ph->combine += ta;
        if (sa) return sa;
    }
    const int64_t Rs = moe_comm_plan_rows(L->xp, MOE_COMM_FORWARD);
    for (int64_t u = 0; u < Rs; u++) {
        const int64_t src = L->row_src[u], t = dedup ? src : src / Kx;
        const float *dyt = dyb + t * D;
        char *s = L->send + (size_t)u * L->rb;
        if (dedup) {
            moe_comm_row_put(L->xp, s, dyt);
            continue;
        }
        // o = the expert output as it came back (bf16: the widened rounded value), then reused
        // for the row w·dy before it is packed.
        float *o = L->row;
        moe_comm_row_get(L->xp, o, L->ret + (size_t)u * L->rb);
        const float wgt = L->pw_tok[src];
        float acc = 0;
        for (int64_t d = 0; d < D; d++) acc += dyt[d] * o[d];
        for (int64_t d = 0; d < D; d++) o[d] = wgt * dyt[d];
        moe_comm_row_put(L->xp, s, o);
        L->drw_pair[src] = acc;
    }
    const size_t rb = dedup ? L->wb : L->rb;
    moe_status st = ep_exchanges(L, ph, &ph->combine, &ph->dispatch, L->rb, L->send, L->recv,
                                 ep_bwd_chunk, rb, L->back, L->ret);
    if (st) return st;
    ep_zero_unwritten(L, grads);
    // Token side: dx from the returned rows; with dedup the slots carry dL/dw per (peer, expert).
    // Node dedup: into the arrived rows' dx and dL/dw, which go back over hop A below.
    float *dxb = L->node ? L->ya : dx, *drwb = L->node ? L->drw_a : L->drw_pair;
    const int32_t *idsb = L->node ? L->ids_a : L->ids;
    if (L->node) memset(L->ya, 0, (size_t)(L->A * D) * sizeof(float));
    const int32_t *sr = moe_comm_plan_counts(L->xp, MOE_COMM_FORWARD);
    int64_t u = 0;
    for (int d = 0; d < P; d++)
        for (int32_t i = 0; i < sr[(size_t)d * (size_t)(El + 1)]; i++, u++) {
            const int64_t src = L->row_src[u], t = dedup ? src : src / Kx;
            const char *row = L->ret + (size_t)u * rb;
            float *b = L->row;
            moe_comm_row_get(L->xp, b, row);
            float *dxt = dxb + t * D;
            for (int64_t k = 0; k < D; k++) dxt[k] += b[k];
            if (!dedup) continue;
            const moe_comm_slot *sl = (const moe_comm_slot *)(row + L->rb);
            for (int k = 0; k < Kx && sl[k].expert >= 0; k++) {
                const int32_t ge = d * El + sl[k].expert;
                int q = 0;
                while (q < Kx && idsb[t * Kx + q] != ge) q++;
                MOE_ASSERT(q < Kx);
                drwb[t * Kx + q] = sl[k].weight;
            }
        }
    if (L->node) {
        double ta = moe_clock_seconds();
        st = moe_ep_node_dispatch_backward(L->node, L->ya, L->drw_a, L->ids, T, dx, L->drw_pair);
        ta = moe_clock_seconds() - ta;
        ph->exchange += ta, ph->dispatch += ta;
        if (st) return st;
    }
    for (int64_t t = 0; t < T; t++)
        for (int q = 0; q < Kx && L->ids[t * Kx + q] >= 0; q++)
            L->drw_plan[L->pair_row[t * Kx + q]] = L->drw_pair[t * Kx + q];
    double tr = moe_clock_seconds();
    moe_router_backward(&p->router, pl, L->drw_plan, x, w->wg, dx, grads->wg, grads->bg);
    ph->router = moe_clock_seconds() - tr;
    if (p->n_shared > 0) {
        const int gate = p->shared_gate;
        moe_shared_backward(&L->sp, &L->sh, dx, &grads->shared, gate ? grads->ws : NULL, &w->shared,
                            gate ? w->ws : NULL, x, dy, T);
    }
    ph->bytes = ep_bytes_since(L, &b0);
    ph->total = moe_clock_seconds() - t0;
    return MOE_OK;
}
