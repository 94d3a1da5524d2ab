// collectives.c: the small collectives the trainer needs (all-reduce, barrier, broadcast, gather)
// and gradient synchronisation with layout-independent scaling. Buffers longer than INT_MAX
// elements are reduced in pieces rather than refused; a gather that large is refused instead.
#include "comm-impl.h"

#include <limits.h>

static MPI_Op moe_comm_mpi_op(moe_comm_op op) {
    switch (op) {
    case MOE_COMM_SUM: return MPI_SUM;
    case MOE_COMM_MAX: return MPI_MAX;
    case MOE_COMM_MIN: return MPI_MIN;
    }
    MOE_ASSERT(!"bad op");
    return MPI_SUM;
}

// In-place all-reduce in pieces of at most INT_MAX/2 elements.
static moe_status moe_comm_allreduce(const moe_comm *c, moe_comm_group g, void *buf, size_t n,
                                     size_t elem, MPI_Datatype type, moe_comm_op op) {
    MPI_Comm comm = moe_comm_mpi(c, g);
    const size_t piece = (size_t)INT_MAX / 2;
    char *p = buf;
    for (size_t done = 0; done < n; done += piece) {
        size_t m = n - done < piece ? n - done : piece;
        MOE_MPI(
            MPI_Allreduce(MPI_IN_PLACE, p + done * elem, (int)m, type, moe_comm_mpi_op(op), comm));
    }
    return MOE_OK;
}

moe_status moe_comm_allreduce_f32(const moe_comm *c, moe_comm_group g, float *buf, size_t n,
                                  moe_comm_op op) {
    return moe_comm_allreduce(c, g, buf, n, sizeof *buf, MPI_FLOAT, op);
}

moe_status moe_comm_allreduce_f64(const moe_comm *c, moe_comm_group g, double *buf, size_t n,
                                  moe_comm_op op) {
    return moe_comm_allreduce(c, g, buf, n, sizeof *buf, MPI_DOUBLE, op);
}

moe_status moe_comm_allreduce_i64(const moe_comm *c, moe_comm_group g, int64_t *buf, size_t n,
                                  moe_comm_op op) {
    return moe_comm_allreduce(c, g, buf, n, sizeof *buf, MPI_INT64_T, op);
}

moe_status moe_comm_barrier(const moe_comm *c, moe_comm_group g) {
    MOE_MPI(MPI_Barrier(moe_comm_mpi(c, g)));
    return MOE_OK;
}

moe_status moe_comm_bcast(const moe_comm *c, moe_comm_group g, void *buf, size_t bytes) {
    MPI_Comm comm = moe_comm_mpi(c, g);
    const size_t piece = (size_t)INT_MAX / 2;
    for (size_t done = 0; done < bytes; done += piece) {
        size_t m = bytes - done < piece ? bytes - done : piece;
        MOE_MPI(MPI_Bcast((char *)buf + done, (int)m, MPI_BYTE, 0, comm));
    }
    return MOE_OK;
}

moe_status moe_comm_gatherv_f32(const moe_comm *c, moe_comm_group g, const float *send, int64_t n,
                                float *recv, int64_t recv_cap, int64_t *counts) {
    MPI_Comm comm = moe_comm_mpi(c, g);
    const int P = moe_comm_size(c, g), me = moe_comm_rank(c, g);
    MOE_ASSERT(n >= 0 && (n == 0 || send));
    int64_t *all = moe_xcalloc((size_t)P, sizeof(int64_t));
    int *cnt = moe_xcalloc((size_t)P, sizeof(int)), *dsp = moe_xcalloc((size_t)P, sizeof(int));
    moe_status st = MOE_OK, local = MOE_OK;
    MOE_MPI_GOTO(st, done, MPI_Gather(&n, 1, MPI_INT64_T, all, 1, MPI_INT64_T, 0, comm));
    if (me == 0) {
        int64_t total = 0;
        for (int r = 0; r < P; r++) {
            total += all[r];
            if (counts) counts[r] = all[r];
        }
        if (total > INT_MAX)
            local = moe_set_error(MOE_EINVAL,
                                  "gather of %lld floats to rank 0 exceeds INT_MAX: "
                                  "gather in pieces",
                                  (long long)total);
        else if (total > recv_cap || (total > 0 && !recv))
            local = moe_set_error(MOE_EINVAL,
                                  "gather of %lld floats to rank 0 does not fit its "
                                  "buffer of %lld floats",
                                  (long long)total, (long long)recv_cap);
        for (int r = 0, off = 0; r < P && local == MOE_OK; r++) {
            cnt[r] = (int)all[r];
            dsp[r] = off;
            off += cnt[r];
        }
    }
    st = moe_comm_agree_mpi(comm, local);
    if (st != MOE_OK) goto done;
    MOE_MPI_GOTO(st, done,
                 MPI_Gatherv(send, (int)n, MPI_FLOAT, recv, cnt, dsp, MPI_FLOAT, 0, comm));
done:
    free(all);
    free(cnt);
    free(dsp);
    return st;
}

moe_status moe_comm_sync_grads(const moe_comm *c, moe_comm_grad_kind kind, float *grad, size_t n) {
    // Both kinds divide by the data-parallel world size W (see comm.h and docs/parallel.md): the
    // sum over the group already covers the contributions of all W ranks' losses.
    moe_comm_group g = kind == MOE_COMM_GRAD_DENSE ? MOE_COMM_WORLD : MOE_COMM_EDP;
    moe_status st = moe_comm_allreduce_f32(c, g, grad, n, MOE_COMM_SUM);
    if (st != MOE_OK) return st;
    const float scale = 1.0f / (float)c->info.world_size;
    for (size_t i = 0; i < n; i++) grad[i] *= scale;
    return MOE_OK;
}

// Best (over reps, after a warmup) of the slowest rank's time for n_msgs MPI_Alltoall of n bytes
// per peer each; send/recv hold n·P bytes.
static moe_status moe_comm_a2a_best(MPI_Comm comm, char *send, char *recv, int n, int n_msgs,
                                    int reps, double *best) {
    *best = 1e30;
    for (int r = 0; r <= reps; r++) {
        MOE_MPI(MPI_Barrier(comm));
        const double t0 = MPI_Wtime();
        for (int k = 0; k < n_msgs; k++)
            MOE_MPI(MPI_Alltoall(send, n, MPI_BYTE, recv, n, MPI_BYTE, comm));
        double t = MPI_Wtime() - t0;
        MOE_MPI(MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm));
        if (r > 0 && t < *best) *best = t;
    }
    return MOE_OK;
}

moe_status moe_comm_link_probe(const moe_comm *c, moe_comm_group g, size_t bytes_per_peer,
                               int n_msgs, int reps, double *round, double *bulk) {
    MPI_Comm comm = moe_comm_mpi(c, g);
    const int P = moe_comm_size(c, g);
    if (reps < 1 || n_msgs < 1 || bytes_per_peer > (size_t)INT_MAX / (size_t)P)
        return moe_set_error(MOE_EINVAL, "link probe: %zu bytes per peer x %d peers in %d messages, %d reps",
                             bytes_per_peer, P, n_msgs, reps);
    const size_t piece = (bytes_per_peer + (size_t)n_msgs - 1) / (size_t)n_msgs;
    const size_t n = piece > 4 ? piece : 4;
    char *send = moe_xcalloc(n * (size_t)P, 1), *recv = moe_xcalloc(n * (size_t)P, 1);
    moe_status st = moe_comm_a2a_best(comm, send, recv, 4, 1, reps, round);
    if (!st) st = moe_comm_a2a_best(comm, send, recv, (int)piece, n_msgs, reps, bulk);
    free(send);
    free(recv);
    return st;
}
