// test_comm_exchange.c: the exchange engine on raw token rows. Every row carries (source rank,
// source index, destination expert); receivers rebuild every source's routing from the same seeded
// RNG and check each row's place; the expert side writes f(row) back and the combine must return
// it to its own place. Modes (chunked overlap, hierarchical, row datatypes) must give byte-equal
// buffers; the pack path (dedup on/off) must equal a naive per-token loop over experts.
#include "comm.h"
#include "test-util.h"

#include <math.h>
#include <string.h>

enum { E = 8, K = 2, TMAX = 20, DV = 4, ROUNDS = 4 };

// The routing of source `world` in round `round`: T tokens, ids (T, K), weights (T, K).
// Round 1: world rank 0 has no token. Round 2: expert 1 gets nothing. Round 3: some slots dropped.
static int64_t make_routing(int world, int round, int32_t *ids, float *w) {
    uint64_t s = 0x1234ull * 1000003ull + (uint64_t)world * 7919ull + (uint64_t)round * 104729ull;
    int64_t T = (int64_t)(test_rng(&s) % (TMAX + 1));
    if (round == 1 && world == 0) T = 0;
    for (int64_t t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            int32_t e;
            int again;
            do {
                e = (int32_t)(test_rng(&s) % E);
                again = (round == 2 && e == 1);
                for (int k2 = 0; k2 < k; k2++) again |= ids[t * K + k2] == e;
            } while (again);
            ids[t * K + k] = e;
            w[t * K + k] = (float)(1 + test_rng(&s) % 7) / 8.0f;
            if (round == 3 && test_rng(&s) % 5 == 0) ids[t * K + k] = -1;
        }
    return T;
}

// ---------------------------------------------------------------- raw engine rows
typedef struct {
    int32_t src, idx, expert, round;
    float v[DV];
} raw_row;

static float raw_val(int src, int idx, int d) {
    return (float)(src * 100 + idx) + 0.25f * (float)d;
}
static void raw_f(raw_row *r) { // what the expert side writes back
    for (int d = 0; d < DV; d++) r->v[d] = 2.0f * r->v[d] + (float)r->expert;
}

// Builds source `world`'s raw send buffer in wire order (peer, local expert, token, slot);
// returns rows, fills counts (P, 1+El). rows may be NULL (counts only).
static int64_t raw_build(int world, int round, int P, int El, raw_row *rows, int32_t *counts) {
    int32_t ids[TMAX * K];
    float w[TMAX * K];
    int64_t T = make_routing(world, round, ids, w), u = 0;
    memset(counts, 0, sizeof(int32_t) * (size_t)P * (size_t)(1 + El));
    for (int d = 0; d < P; d++)
        for (int j = 0; j < El; j++)
            for (int64_t t = 0; t < T; t++)
                for (int k = 0; k < K; k++)
                    if (ids[t * K + k] == d * El + j) {
                        if (rows) {
                            raw_row *r = &rows[u];
                            r->src = world;
                            r->idx = (int32_t)u;
                            r->expert = d * El + j;
                            r->round = round;
                            for (int x = 0; x < DV; x++) r->v[x] = raw_val(world, (int)u, x);
                        }
                        u++;
                        counts[d * (1 + El)]++;
                        counts[d * (1 + El) + 1 + j]++;
                    }
    return u;
}

typedef struct {
    raw_row *recv, *back;
    int64_t *done; // per expert-side row: times f was applied
    int check_arrival;
    const raw_row *expect; // reference expert-side rows
} raw_ctx;

// Chunk callback on the expert side: the rows of this chunk must have arrived; compute f on them.
static moe_status raw_on_chunk(void *vctx, const moe_comm_plan *pl, moe_comm_dir dir, int c,
                               int nc) {
    raw_ctx *x = vctx;
    (void)nc;
    if (dir != MOE_COMM_FORWARD) return MOE_OK;
    for (int p = 0; p < moe_comm_plan_peers(pl); p++) {
        int64_t first, n;
        moe_comm_chunk_range(pl, dir, c, p, &first, &n);
        for (int64_t u = first; u < first + n; u++) {
            CHECK(!memcmp(&x->recv[u], &x->expect[u], sizeof(raw_row)),
                  "chunk %d row %lld had not arrived intact when its callback ran (src %d idx %d)",
                  c, (long long)u, x->recv[u].src, x->recv[u].idx);
            x->back[u] = x->recv[u];
            raw_f(&x->back[u]);
            x->done[u]++;
        }
    }
    return MOE_OK;
}

typedef struct {
    int n_chunks, hierarchical, force_row_type;
    const char *name;
} mode;

static const mode MODES[] = {
    {1, 0, 0, "flat"},
    {3, 0, 0, "chunks=3"},
    {4, 0, 1, "chunks=4,rowtype"},
    {1, 1, 0, "hierarchical"},
    {2, 1, 1, "hier,chunks=2,rowtype"},
};
enum { NMODES = sizeof MODES / sizeof MODES[0] };

// One layout: raw engine test in every mode, byte-equal across modes.
static void test_raw(moe_comm *c, const char *tag) {
    moe_comm_info in = moe_comm_get_info(c);
    const int P = in.ep_size, El = in.n_local_experts, rec = 1 + El;
    const int64_t max_send = TMAX * K, max_recv = (int64_t)P * TMAX * K;
    raw_row *send = calloc((size_t)max_send, sizeof *send),
            *tok = calloc((size_t)max_send, sizeof *tok);
    raw_row *expect = calloc((size_t)max_recv, sizeof *expect);
    raw_row *recv[NMODES], *ret[NMODES], *back = calloc((size_t)max_recv, sizeof *back);
    int64_t *done = calloc((size_t)max_recv, sizeof *done);
    int32_t *counts = calloc((size_t)P * rec, sizeof *counts),
            *scratch = calloc((size_t)P * rec, sizeof *scratch);
    moe_comm_plan *plans[NMODES];
    for (int m = 0; m < NMODES; m++) {
        moe_comm_plan_params pp = {MOE_COMM_EP,
                                   El,
                                   K,
                                   0,
                                   sizeof(raw_row),
                                   max_send,
                                   max_recv,
                                   MODES[m].n_chunks,
                                   MODES[m].hierarchical,
                                   MODES[m].force_row_type,
                                   MOE_COMM_F32};
        OK(moe_comm_plan_create(c, &pp, &plans[m]));
        recv[m] = calloc((size_t)max_recv, sizeof(raw_row));
        ret[m] = calloc((size_t)max_send, sizeof(raw_row));
    }
    for (int round = 0; round < ROUNDS; round++) {
        int64_t R = raw_build(in.world_rank, round, P, El, send, counts);
        // Reference of what arrives here: sources in group order, each one's block for me.
        int64_t n_exp = 0;
        raw_row *tmp = calloc((size_t)max_send, sizeof *tmp);
        for (int s = 0; s < P; s++) {
            int ws = moe_comm_world_rank_of(c, MOE_COMM_EP, s);
            raw_build(ws, round, P, El, tmp, scratch);
            int64_t off = 0;
            for (int d = 0; d < in.ep_rank; d++) off += scratch[d * rec];
            memcpy(expect + n_exp, tmp + off, sizeof(raw_row) * (size_t)scratch[in.ep_rank * rec]);
            n_exp += scratch[in.ep_rank * rec];
        }
        free(tmp);
        for (int m = 0; m < NMODES; m++) {
            moe_comm_plan *pl = plans[m];
            OK(moe_comm_exchange_counts(pl, counts));
            int64_t got = moe_comm_plan_rows(pl, MOE_COMM_REVERSE);
            CHECK(got == n_exp, "%s %s round %d: expected %lld rows here, got %lld", tag,
                  MODES[m].name, round, (long long)n_exp, (long long)got);
            if (got != n_exp) continue;
            memset(recv[m], 0xEE, sizeof(raw_row) * (size_t)max_recv);
            memset(back, 0, sizeof(raw_row) * (size_t)max_recv);
            memset(done, 0, sizeof(int64_t) * (size_t)max_recv);
            raw_ctx ctx = {recv[m], back, done, 1, expect};
            OK(moe_comm_exchange(pl, MOE_COMM_FORWARD, sizeof(raw_row), send, recv[m], raw_on_chunk,
                                 &ctx));
            for (int64_t u = 0; u < n_exp; u++) {
                const raw_row *r = &recv[m][u];
                CHECK(!memcmp(r, &expect[u], sizeof *r),
                      "%s %s round %d row %lld: expected (src %d idx %d expert %d) got (src %d idx "
                      "%d expert %d)",
                      tag, MODES[m].name, round, (long long)u, expect[u].src, expect[u].idx,
                      expect[u].expert, r->src, r->idx, r->expert);
                CHECK(r->expert / El == in.ep_rank, "row for expert %d landed on ep rank %d",
                      r->expert, in.ep_rank);
                CHECK(done[u] == 1, "%s row %lld computed %lld times by the chunk callbacks",
                      MODES[m].name, (long long)u, (long long)done[u]);
            }
            // Per-expert block sizes known from the counts match the rows' destination experts.
            const int32_t *rc = moe_comm_plan_counts(pl, MOE_COMM_REVERSE);
            for (int s = 0, u = 0; s < P; s++)
                for (int j = 0; j < El; j++)
                    for (int i = 0; i < rc[s * rec + 1 + j]; i++, u++)
                        CHECK(u < n_exp && recv[m][u].expert == in.first_expert + j,
                              "row %d expected in block of expert %d", u, in.first_expert + j);
            // Combine: the reverse exchange brings f(row) back to each row's own place.
            memset(ret[m], 0, sizeof(raw_row) * (size_t)max_send);
            OK(moe_comm_exchange(pl, MOE_COMM_REVERSE, sizeof(raw_row), back, ret[m], NULL, NULL));
            for (int64_t u = 0; u < R; u++) {
                raw_row want = send[u];
                raw_f(&want);
                CHECK(!memcmp(&ret[m][u], &want, sizeof want),
                      "%s %s round %d: combined row %lld: expected (src %d idx %d v0 %g) got (src "
                      "%d idx %d v0 %g)",
                      tag, MODES[m].name, round, (long long)u, want.src, want.idx, want.v[0],
                      ret[m][u].src, ret[m][u].idx, ret[m][u].v[0]);
            }
            if (m > 0) {
                CHECK(!memcmp(recv[m], recv[0], sizeof(raw_row) * (size_t)n_exp),
                      "%s round %d: received buffer of mode %s differs from flat", tag, round,
                      MODES[m].name);
                CHECK(!memcmp(ret[m], ret[0], sizeof(raw_row) * (size_t)R),
                      "%s round %d: combined buffer of mode %s differs from flat", tag, round,
                      MODES[m].name);
            }
        }
        // Conservation: rows sent in the group = rows received; per expert too.
        int64_t tot[2 + E] = {0};
        tot[0] = R;
        tot[1] = moe_comm_plan_rows(plans[0], MOE_COMM_REVERSE);
        for (int d = 0; d < P; d++)
            for (int j = 0; j < El; j++) tot[2 + d * El + j] += counts[d * rec + 1 + j];
        OK(moe_comm_allreduce_i64(c, MOE_COMM_EP, tot, 2 + E, MOE_COMM_SUM));
        CHECK(tot[0] == tot[1], "%s round %d: %lld rows sent in the EP group, %lld received", tag,
              round, (long long)tot[0], (long long)tot[1]);
        for (int j = 0; j < El; j++)
            CHECK(tot[2 + in.first_expert + j] == moe_comm_plan_expert_rows(plans[0], j),
                  "%s round %d expert %d: %lld pairs sent, %lld arrived", tag, round,
                  in.first_expert + j, (long long)tot[2 + in.first_expert + j],
                  (long long)moe_comm_plan_expert_rows(plans[0], j));
        if (round == 2)
            for (int j = 0; j < El; j++)
                if (in.first_expert + j == 1)
                    CHECK(moe_comm_plan_expert_rows(plans[0], j) == 0,
                          "expert 1 should have no rows");
    }
    for (int m = 0; m < NMODES; m++) {
        moe_comm_plan_free(plans[m]);
        free(recv[m]);
        free(ret[m]);
    }
    free(send);
    free(tok);
    free(expect);
    free(back);
    free(done);
    free(counts);
    free(scratch);
}

// ---------------------------------------------------------------- pack path (dedup on / off)
enum { D = 6 }; // floats per token: x[0] = source rank, x[1] = token, x[2..] values

static void tok_row(int world, int t, int round, float *x) {
    x[0] = (float)world;
    x[1] = (float)t;
    for (int d = 2; d < D; d++) x[d] = (float)((world * 31 + t * 7 + d + round) % 13) - 6.0f;
}
static float f_expert(float v, int e) { return v * (float)(e + 1) + 0.5f * (float)e; }

// The expert side's expansion written plainly from the wire format of comm.h (the production one
// runs per chunk inside the expert-parallel layer, checked by test_ep_layer): expert-major blocks
// (expert j: sources in group order, rows in wire order), pw the weight of each pair (slot weight
// with dedup, else 1), eoff (El+1) block starts, and the pairs of each wire row u as
// map[start[u] .. start[u+1]). with_meta = 0: rows of D floats (dy) fanned out with that map.
typedef struct {
    int64_t *start, *map; // (max_recv + 1), (max_pairs)
} pair_map;

static void expand_ref(const moe_comm_plan *pl, const char *recv, int with_meta, float *ex,
                       float *pw, int64_t *eoff, pair_map *m) {
    const moe_comm_plan_params pp = moe_comm_plan_get_params(pl);
    const int P = moe_comm_plan_peers(pl), El = pp.n_local_experts, rec = 1 + El;
    const size_t tb = pp.token_bytes, stride = with_meta ? moe_comm_plan_wire_bytes(pl) : tb;
    const int64_t R = moe_comm_plan_rows(pl, MOE_COMM_REVERSE);
    if (!with_meta) {
        for (int64_t u = 0; u < R; u++)
            for (int64_t i = m->start[u]; i < m->start[u + 1]; i++)
                memcpy((char *)ex + (size_t)m->map[i] * tb, recv + (size_t)u * stride, tb);
        return;
    }
    const int32_t *rr = moe_comm_plan_counts(pl, MOE_COMM_REVERSE);
    int64_t fill[E];
    eoff[0] = 0;
    for (int j = 0; j < El; j++) {
        eoff[j + 1] = eoff[j] + moe_comm_plan_expert_rows(pl, j);
        fill[j] = eoff[j];
    }
    int64_t u = 0, np = 0;
    for (int s = 0; s < P; s++) {
        const int32_t *r = rr + s * rec;
        if (!pp.dedup) {
            for (int j = 0; j < El; j++)
                for (int32_t i = 0; i < r[1 + j]; i++, u++) {
                    const int64_t pos = fill[j]++;
                    memcpy((char *)ex + (size_t)pos * tb, recv + (size_t)u * stride, tb);
                    m->start[u] = np;
                    m->map[np++] = pos;
                    pw[pos] = 1.0f;
                }
            continue;
        }
        for (int32_t i = 0; i < r[0]; i++, u++) {
            const char *row = recv + (size_t)u * stride;
            moe_comm_slot sl[K];
            memcpy(sl, row + tb, sizeof sl);
            m->start[u] = np;
            for (int k = 0; k < K; k++) {
                if (sl[k].expert < 0) continue;
                const int64_t pos = fill[sl[k].expert]++;
                memcpy((char *)ex + (size_t)pos * tb, row, tb);
                m->map[np++] = pos;
                pw[pos] = sl[k].weight;
            }
        }
    }
    m->start[u] = np;
}

// back (R_recv, D) row u = Σ over the pairs of wire row u of w·out[pair] (w = pw[pair], 1 if NULL).
static void reduce_ref(const moe_comm_plan *pl, const pair_map *m, const float *out,
                       const float *pw, float *back, int64_t Dn) {
    for (int64_t u = 0; u < moe_comm_plan_rows(pl, MOE_COMM_REVERSE); u++) {
        float *b = back + u * Dn;
        memset(b, 0, (size_t)Dn * sizeof(float));
        for (int64_t i = m->start[u]; i < m->start[u + 1]; i++) {
            const float w = pw ? pw[m->map[i]] : 1.0f, *o = out + m->map[i] * Dn;
            for (int64_t d = 0; d < Dn; d++) b[d] += w * o[d];
        }
    }
}

static void test_pack(moe_comm *c, int dedup, int n_chunks, int hierarchical, const char *tag) {
    moe_comm_info in = moe_comm_get_info(c);
    const int P = in.ep_size, El = in.n_local_experts, rec = 1 + El;
    const int64_t max_send = TMAX * K, max_recv = (int64_t)P * TMAX * K, max_pairs = max_recv * K;
    moe_comm_plan_params pp = {MOE_COMM_EP,       El,       K,           dedup,
                               D * sizeof(float), max_send, max_recv,    n_chunks,
                               hierarchical,      0,        MOE_COMM_F32};
    moe_comm_plan *pl;
    OK(moe_comm_plan_create(c, &pp, &pl));
    const size_t wb = moe_comm_plan_wire_bytes(pl);
    char *send = calloc((size_t)max_send, wb), *recv = calloc((size_t)max_recv, wb);
    float *x = calloc(TMAX * D, sizeof(float)), *y = calloc(TMAX * D, sizeof(float));
    float *ex = calloc((size_t)max_pairs * D, sizeof(float)),
          *out = calloc((size_t)max_pairs * D, sizeof(float));
    float *pw = calloc((size_t)max_pairs, sizeof(float)),
          *back = calloc((size_t)max_recv * D, sizeof(float));
    float *ret = calloc((size_t)max_send * D, sizeof(float));
    int32_t ids[TMAX * K], rids[TMAX * K], *row_src = calloc((size_t)max_send, sizeof(int32_t));
    float w[TMAX * K], rw[TMAX * K];
    int32_t *counts = calloc((size_t)P * rec, sizeof(int32_t));
    int64_t eoff[E + 1];
    pair_map map = {calloc((size_t)max_recv + 1, sizeof(int64_t)),
                    calloc((size_t)max_pairs, sizeof(int64_t))};
    for (int round = 0; round < ROUNDS; round++) {
        int64_t T = make_routing(in.world_rank, round, ids, w);
        for (int64_t t = 0; t < T; t++) tok_row(in.world_rank, (int)t, round, x + t * D);
        OK(moe_comm_dispatch_pack(pl, T, x, ids, w, counts, send, row_src));
        int64_t R = 0;
        for (int d = 0; d < P; d++) R += counts[d * rec];
        OK(moe_comm_exchange_counts(pl, counts));
        OK(moe_comm_dispatch(pl, send, recv, NULL, NULL));
        expand_ref(pl, recv, 1, ex, pw, eoff, &map);
        // Expected expanded blocks: expert j, sources in group order, tokens in order.
        int64_t pos = 0;
        for (int j = 0; j < El; j++) {
            CHECK(eoff[j] == pos, "%s round %d: expert %d block starts at %lld, expected %lld", tag,
                  round, j, (long long)eoff[j], (long long)pos);
            for (int s = 0; s < P; s++) {
                int ws = moe_comm_world_rank_of(c, MOE_COMM_EP, s);
                int64_t Ts = make_routing(ws, round, rids, rw);
                for (int64_t t = 0; t < Ts; t++)
                    for (int k = 0; k < K; k++)
                        if (rids[t * K + k] == in.first_expert + j) {
                            float want[D];
                            tok_row(ws, (int)t, round, want);
                            CHECK(pos < moe_comm_plan_pairs(pl) &&
                                      !memcmp(ex + pos * D, want, sizeof want),
                                  "%s round %d expert %d pair %lld: expected token (%d, %lld) got "
                                  "(%g, %g)",
                                  tag, round, j, (long long)pos, ws, (long long)t,
                                  pos < max_pairs ? ex[pos * D] : -1.f,
                                  pos < max_pairs ? ex[pos * D + 1] : -1.f);
                            float wexp = dedup ? rw[t * K + k] : 1.0f;
                            CHECK(pos >= max_pairs || pw[pos] == wexp,
                                  "%s pair %lld weight %g, expected %g", tag, (long long)pos,
                                  pos < max_pairs ? pw[pos] : -1.f, wexp);
                            pos++;
                        }
            }
        }
        CHECK(pos == moe_comm_plan_pairs(pl), "%s round %d: %lld pairs expected, %lld arrived", tag,
              round, (long long)pos, (long long)moe_comm_plan_pairs(pl));
        // Expert compute, then combine: dedup sums weighted pairs on the expert side.
        for (int j = 0; j < El; j++)
            for (int64_t p = eoff[j]; p < eoff[j + 1]; p++)
                for (int d = 0; d < D; d++)
                    out[p * D + d] = f_expert(ex[p * D + d], in.first_expert + j);
        reduce_ref(pl, &map, out, dedup ? pw : NULL, back, D);
        OK(moe_comm_combine(pl, back, ret, NULL, NULL));
        memset(y, 0, sizeof(float) * TMAX * D);
        moe_comm_combine_unpack(pl, ret, row_src, w, T, y);
        for (int64_t t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                double ref = 0;
                for (int k = 0; k < K; k++)
                    if (ids[t * K + k] >= 0)
                        ref += (double)w[t * K + k] * f_expert(x[t * D + d], ids[t * K + k]);
                CHECK(fabs(y[t * D + d] - ref) <= 1e-5 * (1 + fabs(ref)),
                      "%s round %d token %lld dim %d: expected %.7g got %.7g", tag, round,
                      (long long)t, d, ref, y[t * D + d]);
            }
        // Backward reuses the plan: combine-backward sends dy rows FORWARD (no metadata; dedup
        // fans them out with the forward map), dispatch-backward sends dx REVERSE, summed per row.
        // With f(v) = v*(e+1) + c the reference is dx[t] = sum_k w_k (e_k+1) dy[t].
        for (int64_t u = 0; u < R; u++) {
            int64_t t = dedup ? row_src[u] : row_src[u] / K;
            float scale = dedup ? 1.0f : w[row_src[u]];
            for (int d = 0; d < D; d++)
                ret[u * D + d] = scale * (float)((t + d) % 5 - 2); // dy[t] = (t+d)%5 - 2
        }
        OK(moe_comm_exchange(pl, MOE_COMM_FORWARD, D * sizeof(float), ret, back, NULL, NULL));
        expand_ref(pl, (const char *)back, 0, ex, pw, NULL, &map);
        for (int j = 0; j < El; j++)
            for (int64_t p = eoff[j]; p < eoff[j + 1]; p++)
                for (int d = 0; d < D; d++)
                    out[p * D + d] =
                        (dedup ? pw[p] : 1.0f) * ex[p * D + d] * (float)(in.first_expert + j + 1);
        reduce_ref(pl, &map, out, NULL, back, D);
        OK(moe_comm_exchange(pl, MOE_COMM_REVERSE, D * sizeof(float), back, ret, NULL, NULL));
        memset(y, 0, sizeof(float) * TMAX * D);
        moe_comm_combine_unpack(pl, ret, row_src, NULL, T, y);
        for (int64_t t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                double ref = 0;
                for (int k = 0; k < K; k++)
                    if (ids[t * K + k] >= 0)
                        ref += (double)w[t * K + k] * (ids[t * K + k] + 1) * ((t + d) % 5 - 2);
                CHECK(fabs(y[t * D + d] - ref) <= 1e-5 * (1 + fabs(ref)),
                      "%s round %d backward token %lld dim %d: expected dx %.7g got %.7g", tag,
                      round, (long long)t, d, ref, y[t * D + d]);
            }
    }
    moe_comm_plan_free(pl);
    free(send);
    free(recv);
    free(x);
    free(y);
    free(ex);
    free(out);
    free(pw);
    free(back);
    free(ret);
    free(row_src);
    free(counts);
    free(map.start);
    free(map.map);
}

// Refusals are agreed: a count record one rank cannot take is refused on every rank (no hang).
static void test_refusals(moe_comm *c) {
    moe_comm_info in = moe_comm_get_info(c);
    const int P = in.ep_size, El = in.n_local_experts, rec = 1 + El;
    moe_comm_plan_params pp = {MOE_COMM_EP, El, K, 0, 16, 100, 3, 1, 0, 0, MOE_COMM_F32};
    moe_comm_plan *pl;
    OK(moe_comm_plan_create(c, &pp, &pl));
    int32_t *counts = calloc((size_t)P * rec, sizeof(int32_t));
    counts[0] = counts[1] = 4; // 4 rows to peer 0's expert 0: more than its 3-row buffer
    moe_status st = moe_comm_exchange_counts(pl, counts);
    CHECK(st == MOE_EINVAL, "over-capacity counts: expected MOE_EINVAL on every rank, got %d (%s)",
          st, moe_last_error());
    memset(counts, 0, sizeof(int32_t) * (size_t)P * rec);
    if (in.ep_rank == P - 1) counts[0] = -1;
    st = moe_comm_exchange_counts(pl, counts);
    CHECK(st == MOE_EINVAL, "negative count on one rank: expected MOE_EINVAL everywhere, got %d",
          st);
    if (in.ep_rank == P - 1)
        CHECK(strstr(moe_last_error(), "-1") != NULL, "message should name the count: %s",
              moe_last_error());
    memset(counts, 0, sizeof(int32_t) * (size_t)P * rec);
    st = moe_comm_exchange_counts(pl, counts); // and the plan still works afterwards
    CHECK(st == MOE_OK, "empty exchange after refusals: %s", moe_last_error());
    free(counts);
    moe_comm_plan_free(pl);
}

int main(int argc, char **argv) {
    OK(moe_comm_init(&argc, &argv));
    moe_comm *w0;
    moe_comm_params p0 = {1, E, 0, 1};
    OK(moe_comm_create(&p0, &w0));
    const int W = moe_comm_size(w0, MOE_COMM_WORLD);
    g_rank = moe_comm_rank(w0, MOE_COMM_WORLD);
    moe_comm_free(w0);
    int fakes[] = {0, 2, 3};
    for (int f = 0; f < 3; f++) {
        if (fakes[f] && fakes[f] >= W) continue;
        for (int ep = 1; ep <= W; ep++) {
            if (W % ep || E % ep) continue;
            moe_comm *c;
            moe_comm_params p = {ep, E, fakes[f], 1};
            OK(moe_comm_create(&p, &c));
            char tag[64];
            snprintf(tag, sizeof tag, "W=%d EP=%d fake_node=%d", W, ep, fakes[f]);
            test_raw(c, tag);
            test_refusals(c);
            for (int dedup = 0; dedup < 2; dedup++) {
                char t2[96];
                snprintf(t2, sizeof t2, "%s dedup=%d", tag, dedup);
                test_pack(c, dedup, 1, 0, t2);
                test_pack(c, dedup, 2, 1, t2);
            }
            moe_comm_free(c);
        }
    }
    moe_comm *c;
    OK(moe_comm_create(&p0, &c));
    int64_t fails = g_fail;
    OK(moe_comm_allreduce_i64(c, MOE_COMM_WORLD, &fails, 1, MOE_COMM_SUM));
    moe_comm_printf(c, "test_comm_exchange (W=%d): %s (%lld failed checks)\n", W,
                    fails ? "FAIL" : "ok", (long long)fails);
    moe_comm_free(c);
    OK(moe_comm_finalize());
    return fails ? 1 : 0;
}
