// exchange.c: the exchange engine — plan setup, the counts all-to-all, and the payload moved flat
// (MPI_Alltoallv, byte counts; row datatypes when bytes overflow int), chunked (MPI_Ialltoallv,
// one slice of every peer block per chunk, callback per arrival) or hierarchical (node leaders).
// Every array an exchange touches is sized in moe_comm_plan_create; exchanges never allocate.
// Each payload transfer adds its bytes to the plan's counters (intra- / inter-node) from the very
// counts handed to MPI.
#include "comm-plan.h"

#include <limits.h>
#include <string.h>

size_t moe_comm_wire_bytes(size_t token_bytes, int top_k, int dedup) {
    return token_bytes + (dedup ? (size_t)top_k * sizeof(moe_comm_slot) : 0);
}

void moe_comm_plan_free(moe_comm_plan *pl) {
    if (!pl) return;
    for (int i = 0; i < 2; i++)
        if (pl->row_type[i] != MPI_DATATYPE_NULL) MPI_Type_free(&pl->row_type[i]);
    if (pl->node_comm != MPI_COMM_NULL) MPI_Comm_free(&pl->node_comm);
    if (pl->leader_comm != MPI_COMM_NULL) MPI_Comm_free(&pl->leader_comm);
    free(pl->send_rec);
    free(pl->recv_rec);
    free(pl->send_off);
    free(pl->recv_off);
    free(pl->expert_off);
    free(pl->chunk_arr);
    free(pl->reqs);
    free(pl->cursor);
    free(pl->peer_inter);
    free(pl->node_of);
    free(pl->members);
    free(pl->node_start);
    free(pl->cmat);
    free(pl->hpre);
    free(pl->hpos);
    free(pl->hcnt);
    free(pl->hdsp);
    free(pl->stage[0]);
    free(pl->stage[1]);
    free(pl);
}

// Hierarchical sub-communicators and index maps inside the group.
static moe_status moe_comm_plan_hier(moe_comm_plan *pl) {
    const int P = pl->P;
    pl->node_of = moe_xcalloc((size_t)P, sizeof(int));
    pl->members = moe_xcalloc((size_t)P, sizeof(int));
    int *global = moe_xcalloc((size_t)P, sizeof(int)), *ord = moe_xcalloc((size_t)P, sizeof(int));
    // Node ordinals in order of each node's lowest group rank (= leader order in leader_comm).
    int n = 0;
    for (int g = 0; g < P; g++) {
        global[g] = pl->c->node_of[moe_comm_world_rank_of(pl->c, pl->p.group, g)];
        int k = 0;
        while (k < n && ord[k] != global[g]) k++;
        if (k == n) ord[n++] = global[g];
        pl->node_of[g] = k;
    }
    free(global);
    free(ord);
    pl->n_nodes = n;
    pl->node_start = moe_xcalloc((size_t)n + 1, sizeof(int));
    for (int g = 0; g < P; g++) pl->node_start[pl->node_of[g] + 1]++;
    for (int k = 0; k < n; k++) pl->node_start[k + 1] += pl->node_start[k];
    for (int k = 0, i = 0; k < n; k++)
        for (int g = 0; g < P; g++)
            if (pl->node_of[g] == k) pl->members[i++] = g;
    pl->my_node = pl->node_of[pl->me];
    pl->q = pl->node_start[pl->my_node + 1] - pl->node_start[pl->my_node];
    pl->is_leader = pl->members[pl->node_start[pl->my_node]] == pl->me;

    MOE_MPI(MPI_Comm_split(pl->comm, pl->my_node, pl->me, &pl->node_comm));
    MOE_MPI(MPI_Comm_set_errhandler(pl->node_comm, MPI_ERRORS_RETURN));
    MOE_MPI(MPI_Comm_split(pl->comm, pl->is_leader ? 0 : MPI_UNDEFINED, pl->me, &pl->leader_comm));
    if (pl->leader_comm != MPI_COMM_NULL)
        MOE_MPI(MPI_Comm_set_errhandler(pl->leader_comm, MPI_ERRORS_RETURN));

    const int q = pl->q, m = q > n ? q : n;
    pl->cmat = moe_xcalloc((size_t)P * (size_t)P, sizeof(int32_t));
    pl->hpre = moe_xcalloc((size_t)q * ((size_t)P + 1), sizeof(int64_t));
    pl->hpos = moe_xcalloc((size_t)P * (size_t)q, sizeof(int64_t));
    pl->hcnt = moe_xcalloc(2 * (size_t)m, sizeof(int));
    pl->hdsp = moe_xcalloc(2 * (size_t)m, sizeof(int));
    if (pl->is_leader) {
        int64_t rows =
            pl->p.max_send_rows > pl->p.max_recv_rows ? pl->p.max_send_rows : pl->p.max_recv_rows;
        if (rows * q > INT_MAX)
            return moe_set_error(MOE_EINVAL,
                                 "hierarchical exchange: %d ranks x %lld rows exceed "
                                 "INT_MAX rows at the node leader: use the flat exchange",
                                 q, (long long)rows);
        size_t bytes = (size_t)rows * (size_t)q * pl->wire_bytes;
        pl->stage[0] = moe_xcalloc(bytes ? bytes : 1, 1);
        pl->stage[1] = moe_xcalloc(bytes ? bytes : 1, 1);
    }
    return MOE_OK;
}

moe_status moe_comm_plan_create(moe_comm *c, const moe_comm_plan_params *p, moe_comm_plan **out) {
    MOE_ASSERT(c && p && out);
    *out = NULL;
    const int K = p->top_k;
    if (p->n_local_experts < 1 || K < 1 || p->token_bytes == 0 || p->n_chunks < 1 ||
        p->max_send_rows < 0 || p->max_recv_rows < 0)
        return moe_set_error(
            MOE_EINVAL,
            "exchange plan: n_local_experts %d, top_k %d, token_bytes %zu, "
            "n_chunks %d, max rows %lld/%lld: need El>=1, K>=1, bytes>0, chunks>=1, "
            "rows>=0",
            p->n_local_experts, K, p->token_bytes, p->n_chunks, (long long)p->max_send_rows,
            (long long)p->max_recv_rows);
    if (p->max_send_rows > INT_MAX || p->max_recv_rows > INT_MAX)
        return moe_set_error(MOE_EINVAL,
                             "exchange plan: %lld / %lld rows exceed INT_MAX rows per "
                             "rank: lower the tokens per rank",
                             (long long)p->max_send_rows, (long long)p->max_recv_rows);
    if (p->dedup && (p->token_bytes % sizeof(float)))
        return moe_set_error(MOE_EINVAL,
                             "exchange plan: dedup needs float rows, token_bytes %zu "
                             "is not a multiple of 4",
                             p->token_bytes);
    if (p->dtype != MOE_COMM_F32 && p->dtype != MOE_COMM_BF16)
        return moe_set_error(MOE_EINVAL, "exchange plan: payload dtype %d is neither f32 nor bf16",
                             (int)p->dtype);
    if (p->dtype == MOE_COMM_BF16 && (p->token_bytes % sizeof(float)))
        return moe_set_error(MOE_EINVAL,
                             "exchange plan: bf16 payloads need float rows, token_bytes %zu is "
                             "not a multiple of 4",
                             p->token_bytes);
    if (p->dtype == MOE_COMM_BF16 && p->dedup)
        return moe_set_error(MOE_EINVAL,
                             "exchange plan: bf16 payloads with dedup are not supported: a dedup "
                             "row returns the sum over the token's experts on one peer, and "
                             "rounding that sum would depend on which experts share a rank (the "
                             "EP size); use dedup or bf16, not both");
    moe_comm_plan *pl = moe_xcalloc(1, sizeof *pl);
    moe_status st = MOE_OK;
    pl->c = c;
    pl->p = *p;
    pl->comm = moe_comm_mpi(c, p->group);
    pl->P = moe_comm_size(c, p->group);
    pl->me = moe_comm_rank(c, p->group);
    pl->rec = 1 + p->n_local_experts;
    pl->row_bytes = p->dtype == MOE_COMM_BF16 ? p->token_bytes / 2 : p->token_bytes;
    pl->wire_bytes = moe_comm_wire_bytes(pl->row_bytes, K, p->dedup);
    pl->max_pairs = p->max_recv_rows * (p->dedup ? K : 1);
    pl->node_comm = pl->leader_comm = MPI_COMM_NULL;
    pl->row_type[0] = pl->row_type[1] = MPI_DATATYPE_NULL;
    const size_t P = (size_t)pl->P, El = (size_t)p->n_local_experts;
    pl->send_rec = moe_xcalloc(P * (size_t)pl->rec, sizeof(int32_t));
    pl->recv_rec = moe_xcalloc(P * (size_t)pl->rec, sizeof(int32_t));
    pl->send_off = moe_xcalloc(P + 1, sizeof(int64_t));
    pl->recv_off = moe_xcalloc(P + 1, sizeof(int64_t));
    pl->expert_off = moe_xcalloc(El + 1, sizeof(int64_t));
    // Chunk slots: [0, nc) for moe_comm_exchange, then nc per direction for the split-phase
    // moe_comm_chunk_post / moe_comm_chunk_wait (two exchanges in flight at once).
    pl->chunk_arr = moe_xcalloc((size_t)p->n_chunks * 3 * 4 * P, sizeof(int));
    pl->reqs = moe_xcalloc((size_t)p->n_chunks * 3, sizeof(MPI_Request));
    pl->cursor = moe_xcalloc(P * El + P, sizeof(int64_t));
    for (int i = 0; i < 3 * p->n_chunks; i++) pl->reqs[i] = MPI_REQUEST_NULL;
    pl->peer_inter = moe_xcalloc(P, sizeof(int));
    const int my_node = c->node_of[moe_comm_world_rank_of(c, p->group, pl->me)];
    for (int d = 0; d < pl->P; d++)
        pl->peer_inter[d] = c->node_of[moe_comm_world_rank_of(c, p->group, d)] != my_node;
    size_t sizes[2] = {pl->row_bytes, pl->wire_bytes};
    for (int i = 0; i < 2; i++) {
        if (sizes[i] > INT_MAX) {
            st = moe_set_error(MOE_EINVAL, "exchange plan: row of %zu bytes exceeds INT_MAX",
                               sizes[i]);
            goto fail;
        }
        MOE_MPI_GOTO(st, fail, MPI_Type_contiguous((int)sizes[i], MPI_BYTE, &pl->row_type[i]));
        MOE_MPI_GOTO(st, fail, MPI_Type_commit(&pl->row_type[i]));
    }
    if (p->hierarchical && (st = moe_comm_plan_hier(pl)) != MOE_OK) goto fail;
    *out = pl;
    return MOE_OK;
fail:
    moe_comm_plan_free(pl);
    return st;
}

moe_comm_plan_params moe_comm_plan_get_params(const moe_comm_plan *pl) { return pl->p; }
int moe_comm_plan_peers(const moe_comm_plan *pl) { return pl->P; }
size_t moe_comm_plan_row_bytes(const moe_comm_plan *pl) { return pl->row_bytes; }
size_t moe_comm_plan_wire_bytes(const moe_comm_plan *pl) { return pl->wire_bytes; }
moe_comm_bytes moe_comm_plan_bytes(const moe_comm_plan *pl) { return pl->sent; }

// Adds bytes sent to and received from group rank `peer` (nothing for this rank itself).
static void moe_comm_count(moe_comm_plan *pl, int peer, int64_t sent, int64_t recv) {
    if (peer == pl->me) return;
    if (pl->peer_inter[peer]) {
        pl->sent.sent_inter += sent;
        pl->sent.recv_inter += recv;
    } else {
        pl->sent.sent_intra += sent;
        pl->sent.recv_intra += recv;
    }
}

// Counts a flat transfer from its count array (the layout moe_comm_fill_chunk writes), given
// the bytes per count unit (1 for MPI_BYTE counts, the row size for row datatypes).
static void moe_comm_count_arr(moe_comm_plan *pl, const int *a, int64_t unit_bytes) {
    for (int d = 0; d < pl->P; d++)
        moe_comm_count(pl, d, (int64_t)a[d] * unit_bytes, (int64_t)a[2 * pl->P + d] * unit_bytes);
}

const int32_t *moe_comm_plan_counts(const moe_comm_plan *pl, moe_comm_dir side) {
    MOE_ASSERT(pl->counted);
    return side == MOE_COMM_FORWARD ? pl->send_rec : pl->recv_rec;
}

int64_t moe_comm_plan_rows(const moe_comm_plan *pl, moe_comm_dir side) {
    MOE_ASSERT(pl->counted);
    return side == MOE_COMM_FORWARD ? pl->send_rows : pl->recv_rows;
}

int64_t moe_comm_plan_expert_rows(const moe_comm_plan *pl, int j) {
    MOE_ASSERT(pl->counted && j >= 0 && j < pl->p.n_local_experts);
    return pl->expert_off[j + 1] - pl->expert_off[j];
}

int64_t moe_comm_plan_pairs(const moe_comm_plan *pl) {
    MOE_ASSERT(pl->counted);
    return pl->pairs;
}

// Validates this rank's records; fills offsets. Returns a local status (not yet agreed).
static moe_status moe_comm_check_records(moe_comm_plan *pl, const int32_t *rec, int64_t *off,
                                         int64_t cap, const char *side, int64_t *pairs_out) {
    const int El = pl->p.n_local_experts;
    int64_t pairs = 0;
    off[0] = 0;
    for (int d = 0; d < pl->P; d++) {
        const int32_t *r = rec + (size_t)d * (size_t)pl->rec;
        int64_t sum = 0;
        for (int j = 0; j <= El; j++)
            if (r[j] < 0)
                return moe_set_error(MOE_EINVAL, "exchange counts (%s): peer %d entry %d is %d < 0",
                                     side, d, j, r[j]);
        for (int j = 1; j <= El; j++) sum += r[j];
        if (!pl->p.dedup && sum != r[0])
            return moe_set_error(MOE_EINVAL,
                                 "exchange counts (%s): peer %d sends %d rows but its "
                                 "expert blocks add to %lld (without dedup they must match)",
                                 side, d, r[0], (long long)sum);
        if (pl->p.dedup && (sum < r[0] || sum > (int64_t)r[0] * pl->p.top_k))
            return moe_set_error(MOE_EINVAL,
                                 "exchange counts (%s): peer %d: %d unique rows cannot "
                                 "carry %lld (token, expert) pairs with K=%d",
                                 side, d, r[0], (long long)sum, pl->p.top_k);
        off[d + 1] = off[d] + r[0];
        pairs += sum;
    }
    if (off[pl->P] > cap)
        return moe_set_error(MOE_EINVAL,
                             "exchange counts (%s): %lld rows exceed the buffer of %lld "
                             "rows sized at plan creation: raise the capacity (capacity factor or "
                             "max tokens)",
                             side, (long long)off[pl->P], (long long)cap);
    *pairs_out = pairs;
    return MOE_OK;
}

moe_status moe_comm_exchange_counts(moe_comm_plan *pl, const int32_t *send_counts) {
    const size_t n = (size_t)pl->P * (size_t)pl->rec;
    int64_t pairs = 0;
    pl->counted = 0;
    memcpy(pl->send_rec, send_counts, n * sizeof(int32_t));
    // The records are plain ints: exchange them even if ours are bad, then agree once on both
    // sides' checks (one small all-reduce per step instead of two).
    moe_status local = moe_comm_check_records(pl, pl->send_rec, pl->send_off, pl->p.max_send_rows,
                                              "token side", &pairs);
    MOE_MPI(MPI_Alltoall(pl->send_rec, pl->rec, MPI_INT32_T, pl->recv_rec, pl->rec, MPI_INT32_T,
                         pl->comm));
    if (local == MOE_OK)
        local = moe_comm_check_records(pl, pl->recv_rec, pl->recv_off, pl->p.max_recv_rows,
                                       "expert side", &pl->pairs);
    if (local == MOE_OK && pl->pairs > pl->max_pairs)
        local = moe_set_error(MOE_EINVAL, "exchange counts: %lld (token, expert) pairs exceed %lld",
                              (long long)pl->pairs, (long long)pl->max_pairs);
    moe_status st = moe_comm_agree_mpi(pl->comm, local);
    if (st != MOE_OK) return st;
    pl->send_rows = pl->send_off[pl->P];
    pl->recv_rows = pl->recv_off[pl->P];
    const int El = pl->p.n_local_experts;
    pl->expert_off[0] = 0;
    for (int j = 0; j < El; j++) {
        int64_t s = 0;
        for (int d = 0; d < pl->P; d++)
            s += pl->recv_rec[(size_t)d * (size_t)pl->rec + 1 + (size_t)j];
        pl->expert_off[j + 1] = pl->expert_off[j] + s;
    }
    if (pl->p.hierarchical) {
        int32_t *mine = pl->cmat + (size_t)pl->me * (size_t)pl->P;
        for (int d = 0; d < pl->P; d++) mine[d] = pl->send_rec[(size_t)d * (size_t)pl->rec];
        MOE_MPI(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, pl->cmat, pl->P, MPI_INT32_T,
                              pl->comm));
    }
    pl->counted = 1;
    return MOE_OK;
}

void moe_comm_chunk_range(const moe_comm_plan *pl, moe_comm_dir dir, int chunk, int peer,
                          int64_t *first, int64_t *n) {
    MOE_ASSERT(pl->counted && peer >= 0 && peer < pl->P && chunk >= 0 && chunk < pl->p.n_chunks);
    const int64_t *off = dir == MOE_COMM_FORWARD ? pl->recv_off : pl->send_off;
    const int64_t rows = off[peer + 1] - off[peer], nc = pl->p.n_chunks;
    const int64_t a = rows * chunk / nc, b = rows * (chunk + 1) / nc;
    *first = off[peer] + a;
    *n = b - a;
}

// Counts and displacements of chunk c in `unit` rows-per-element (1 = row type, else bytes).
static void moe_comm_fill_chunk(moe_comm_plan *pl, moe_comm_dir dir, int c, int64_t nc,
                                int64_t unit, int *arr) {
    const int P = pl->P;
    const int64_t *soff = dir == MOE_COMM_FORWARD ? pl->send_off : pl->recv_off;
    const int64_t *roff = dir == MOE_COMM_FORWARD ? pl->recv_off : pl->send_off;
    for (int d = 0; d < P; d++) {
        int64_t sn = soff[d + 1] - soff[d], rn = roff[d + 1] - roff[d];
        int64_t sa = sn * c / nc, sb = sn * (c + 1) / nc, ra = rn * c / nc, rb = rn * (c + 1) / nc;
        arr[d] = (int)((sb - sa) * unit);
        arr[P + d] = (int)((soff[d] + sa) * unit);
        arr[2 * P + d] = (int)((rb - ra) * unit);
        arr[3 * P + d] = (int)((roff[d] + ra) * unit);
    }
}

static moe_status moe_comm_exchange_hier(moe_comm_plan *pl, moe_comm_dir dir, size_t rb,
                                         MPI_Datatype rt, const char *send, char *recv);

moe_status moe_comm_exchange(moe_comm_plan *pl, moe_comm_dir dir, size_t row_bytes,
                             const void *send, void *recv, moe_comm_chunk_fn on_chunk, void *ctx) {
    MOE_ASSERT(pl && pl->counted);
    MOE_ASSERT(row_bytes == pl->row_bytes || row_bytes == pl->wire_bytes);
    MPI_Datatype rt = row_bytes == pl->row_bytes ? pl->row_type[0] : pl->row_type[1];
    const int nc = pl->p.n_chunks;
    moe_status st = MOE_OK, cb = MOE_OK;
    // On one node the hierarchy has nothing to aggregate: the flat exchange is the same bytes.
    if (pl->p.hierarchical && pl->n_nodes > 1) {
        st = moe_comm_exchange_hier(pl, dir, row_bytes, rt, send, recv);
        for (int c = 0; st == MOE_OK && on_chunk && c < nc; c++) st = on_chunk(ctx, pl, dir, c, nc);
        return st;
    }
    // Byte counts when every byte offset fits an int (the common case); else row datatypes
    // (counts in rows: fits, since rows <= INT_MAX was checked at plan creation).
    const int64_t rows = pl->send_rows > pl->recv_rows ? pl->send_rows : pl->recv_rows;
    const int bytes_ok = !pl->p.force_row_type && rows * (int64_t)row_bytes <= INT_MAX;
    const int64_t unit = bytes_ok ? (int64_t)row_bytes : 1;
    MPI_Datatype type = bytes_ok ? MPI_BYTE : rt;
    const int64_t ub = bytes_ok ? 1 : (int64_t)row_bytes; // bytes per count
    const int P = pl->P;
    if (nc == 1) {
        int *a = pl->chunk_arr;
        moe_comm_fill_chunk(pl, dir, 0, 1, unit, a);
        moe_comm_count_arr(pl, a, ub);
        MOE_MPI(MPI_Alltoallv(send, a, a + P, type, recv, a + 2 * P, a + 3 * P, type, pl->comm));
        return on_chunk ? on_chunk(ctx, pl, dir, 0, 1) : MOE_OK;
    }
    // Post chunk c+1 before computing on chunk c. A failing callback stops further callbacks but
    // not the exchange: every rank still posts and completes every chunk (no rank left hanging).
    int posted = 0;
    for (int c = 0; c < nc; c++) {
        while (posted <= c + 1 && posted < nc) {
            int *a = pl->chunk_arr + (size_t)posted * 4 * (size_t)P;
            moe_comm_fill_chunk(pl, dir, posted, nc, unit, a);
            moe_comm_count_arr(pl, a, ub);
            int rc = MPI_Ialltoallv(send, a, a + P, type, recv, a + 2 * P, a + 3 * P, type,
                                    pl->comm, &pl->reqs[posted]);
            if (rc != MPI_SUCCESS) {
                st = moe_comm_mpi_error("MPI_Ialltoallv", rc, __FILE__, __LINE__);
                MPI_Waitall(posted, pl->reqs, MPI_STATUSES_IGNORE);
                return st;
            }
            posted++;
        }
        MOE_MPI(MPI_Wait(&pl->reqs[c], MPI_STATUS_IGNORE));
        if (cb == MOE_OK && on_chunk) cb = on_chunk(ctx, pl, dir, c, nc);
    }
    return cb;
}

moe_status moe_comm_plan_progress(moe_comm_plan *pl) {
    int flag = 0;
    // Completed requests become MPI_REQUEST_NULL, so the engine's later MPI_Wait returns at once.
    MOE_MPI(MPI_Testall(3 * pl->p.n_chunks, pl->reqs, &flag, MPI_STATUSES_IGNORE));
    return MOE_OK;
}

moe_status moe_comm_chunk_post(moe_comm_plan *pl, moe_comm_dir dir, size_t row_bytes,
                               const void *send, void *recv, int chunk) {
    MOE_ASSERT(pl && pl->counted && chunk >= 0 && chunk < pl->p.n_chunks);
    MOE_ASSERT(row_bytes == pl->row_bytes || row_bytes == pl->wire_bytes);
    MOE_ASSERT(!(pl->p.hierarchical && pl->n_nodes > 1)); // split phase is flat only
    const int nc = pl->p.n_chunks, P = pl->P;
    const size_t slot = (size_t)nc + (size_t)dir * (size_t)nc + (size_t)chunk;
    MOE_ASSERT(pl->reqs[slot] == MPI_REQUEST_NULL);
    MPI_Datatype rt = row_bytes == pl->row_bytes ? pl->row_type[0] : pl->row_type[1];
    const int64_t rows = pl->send_rows > pl->recv_rows ? pl->send_rows : pl->recv_rows;
    const int bytes_ok = !pl->p.force_row_type && rows * (int64_t)row_bytes <= INT_MAX;
    const int64_t unit = bytes_ok ? (int64_t)row_bytes : 1;
    MPI_Datatype type = bytes_ok ? MPI_BYTE : rt;
    int *a = pl->chunk_arr + slot * 4 * (size_t)P;
    moe_comm_fill_chunk(pl, dir, chunk, nc, unit, a);
    moe_comm_count_arr(pl, a, bytes_ok ? 1 : (int64_t)row_bytes);
    MOE_MPI(MPI_Ialltoallv(send, a, a + P, type, recv, a + 2 * P, a + 3 * P, type, pl->comm,
                           &pl->reqs[slot]));
    return MOE_OK;
}

moe_status moe_comm_chunk_wait(moe_comm_plan *pl, moe_comm_dir dir, int chunk) {
    MOE_ASSERT(pl && chunk >= 0 && chunk < pl->p.n_chunks);
    const size_t slot = (size_t)pl->p.n_chunks * (1 + (size_t)dir) + (size_t)chunk;
    MOE_MPI(MPI_Wait(&pl->reqs[slot], MPI_STATUS_IGNORE));
    return MOE_OK;
}

moe_status moe_comm_dispatch(moe_comm_plan *pl, const void *send, void *recv,
                             moe_comm_chunk_fn on_chunk, void *ctx) {
    return moe_comm_exchange(pl, MOE_COMM_FORWARD, pl->wire_bytes, send, recv, on_chunk, ctx);
}

moe_status moe_comm_combine(moe_comm_plan *pl, const void *back, void *ret,
                            moe_comm_chunk_fn on_chunk, void *ctx) {
    return moe_comm_exchange(pl, MOE_COMM_REVERSE, pl->row_bytes, back, ret, on_chunk, ctx);
}

moe_status moe_comm_exchange_raw(moe_comm_plan *pl, moe_comm_dir dir, size_t row_bytes,
                                 const void *send, void *recv) {
    MOE_ASSERT(pl && pl->counted);
    const int64_t rows = pl->send_rows > pl->recv_rows ? pl->send_rows : pl->recv_rows;
    if (rows * (int64_t)row_bytes > INT_MAX)
        return moe_set_error(MOE_EINVAL,
                             "raw all-to-all: %lld rows of %zu bytes overflow int byte "
                             "counts",
                             (long long)rows, row_bytes);
    int *a = pl->chunk_arr;
    moe_comm_fill_chunk(pl, dir, 0, 1, (int64_t)row_bytes, a);
    moe_comm_count_arr(pl, a, 1);
    const int P = pl->P;
    MOE_MPI(
        MPI_Alltoallv(send, a, a + P, MPI_BYTE, recv, a + 2 * P, a + 3 * P, MPI_BYTE, pl->comm));
    return MOE_OK;
}

// Hierarchical exchange: (1) gather every node member's send buffer at the node leader,
// (2) the leader regroups rows by destination node, (3) leaders exchange, (4) the leader
// regroups by destination member in source order, (5) scatter. Rows land exactly where the flat
// exchange puts them. Counts are in row datatypes throughout.
static moe_status moe_comm_exchange_hier(moe_comm_plan *pl, moe_comm_dir dir, size_t rb,
                                         MPI_Datatype rt, const char *send, char *recv) {
    const int P = pl->P, q = pl->q, nn = pl->n_nodes;
    const int *mem = pl->members + pl->node_start[pl->my_node];
#define M(s, d)                                                                                    \
    ((int64_t)(dir == MOE_COMM_FORWARD ? pl->cmat[(size_t)(s)*P + (d)]                             \
                                       : pl->cmat[(size_t)(d)*P + (s)]))
    int64_t my_send = 0, my_recv = 0;
    for (int d = 0; d < P; d++) {
        my_send += M(pl->me, d);
        my_recv += M(d, pl->me);
    }
    int *cnt = pl->hcnt, *dsp = pl->hdsp, m = q > nn ? q : nn;
    int *cnt2 = cnt + m, *dsp2 = dsp + m;
    char *A = pl->stage[0], *B = pl->stage[1];
    // (1) gather
    if (pl->is_leader)
        for (int i = 0, off = 0; i < q; i++) {
            int64_t n = 0;
            for (int d = 0; d < P; d++) n += M(mem[i], d);
            cnt[i] = (int)n;
            dsp[i] = off;
            off += (int)n;
        }
    // Bytes: a member sends its rows to the leader and gets its rows back from it; the leader
    // receives the members' rows, moves the node's rows to and from the other leaders, scatters.
    if (!pl->is_leader) moe_comm_count(pl, mem[0], my_send * (int64_t)rb, my_recv * (int64_t)rb);
    for (int i = 1; pl->is_leader && i < q; i++)
        moe_comm_count(pl, mem[i], 0, cnt[i] * (int64_t)rb);
    MOE_MPI(MPI_Gatherv(send, (int)my_send, rt, A, cnt, dsp, rt, 0, pl->node_comm));
    if (pl->is_leader) {
        // (2) B: for each destination node, each destination member, each of my sources.
        for (int i = 0; i < q; i++) {
            int64_t *pre = pl->hpre + (size_t)i * ((size_t)P + 1);
            pre[0] = dsp[i];
            for (int d = 0; d < P; d++) pre[d + 1] = pre[d] + M(mem[i], d);
        }
        int64_t boff = 0;
        for (int k = 0; k < nn; k++) {
            int64_t start = boff;
            for (int x = pl->node_start[k]; x < pl->node_start[k + 1]; x++) {
                int d = pl->members[x];
                for (int i = 0; i < q; i++) {
                    int64_t n = M(mem[i], d), from = pl->hpre[(size_t)i * ((size_t)P + 1) + d];
                    memcpy(B + boff * rb, A + from * rb, (size_t)n * rb);
                    boff += n;
                }
            }
            cnt[k] = (int)(boff - start);
            dsp[k] = (int)start;
        }
        // (3) leaders exchange: from node k, rows for my members from k's members.
        int64_t coff = 0;
        for (int k = 0; k < nn; k++) {
            int64_t start = coff;
            for (int i = 0; i < q; i++)
                for (int x = pl->node_start[k]; x < pl->node_start[k + 1]; x++) {
                    int s = pl->members[x];
                    pl->hpos[(size_t)s * q + i] = coff; // block (s -> mem[i]) in stage C
                    coff += M(s, mem[i]);
                }
            cnt2[k] = (int)(coff - start);
            dsp2[k] = (int)start;
        }
        for (int k = 0; k < nn; k++)
            if (k != pl->my_node) // the peer: node k's leader
                moe_comm_count(pl, pl->members[pl->node_start[k]], cnt[k] * (int64_t)rb,
                               cnt2[k] * (int64_t)rb);
        MOE_MPI(MPI_Alltoallv(B, cnt, dsp, rt, A, cnt2, dsp2, rt, pl->leader_comm));
        // (4) D: for each of my members, sources in group order.
        int64_t doff = 0;
        for (int i = 0; i < q; i++) {
            int64_t start = doff;
            for (int s = 0; s < P; s++) {
                int64_t n = M(s, mem[i]);
                memcpy(B + doff * rb, A + pl->hpos[(size_t)s * q + i] * rb, (size_t)n * rb);
                doff += n;
            }
            cnt[i] = (int)(doff - start);
            dsp[i] = (int)start;
        }
    }
    // (5) scatter
    for (int i = 1; pl->is_leader && i < q; i++)
        moe_comm_count(pl, mem[i], cnt[i] * (int64_t)rb, 0);
    MOE_MPI(MPI_Scatterv(B, cnt, dsp, rt, recv, (int)my_recv, rt, 0, pl->node_comm));
#undef M
    return MOE_OK;
}
