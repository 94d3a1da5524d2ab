// comm-impl.h: what the files of comm/ share with each other only — the moe_comm struct and the
// one MPI error-check macro. Nothing outside comm/ includes this (it pulls in <mpi.h>).
#ifndef MOE_COMM_IMPL_H
#define MOE_COMM_IMPL_H

#include "comm.h"

#include <mpi.h>
#include <stdatomic.h>

struct moe_comm {
    moe_comm_info info;
    MPI_Comm comms[MOE_COMM_N_GROUPS]; // world (dup), EP, EDP, node
    int *group_world; // (MOE_COMM_N_GROUPS, W): world rank of each group rank (first size(g) used)
    int *node_of;     // (W): node index of every world rank
    char *hosts;      // (W, MOE_COMM_HOST_LEN): host name of every world rank
};

// Builds the MOE_EMPI message: call text, MPI error string, world rank, file:line.
moe_status moe_comm_mpi_error(const char *call, int rc, const char *file, int line);

// How many MPI calls of this process are in progress (0 or 1 with MPI FUNNELED): the watchdog
// (watchdog.c) reads it to tell a rank waiting in a collective from one computing (or hung)
// outside MPI. Relaxed atomics: two per MPI call.
extern _Atomic int moe_comm_in_mpi;
#define MOE_MPI_CALL(call)                                                                         \
    (atomic_fetch_add_explicit(&moe_comm_in_mpi, 1, memory_order_relaxed), moe_mpi_rc_ = (call),   \
     atomic_fetch_sub_explicit(&moe_comm_in_mpi, 1, memory_order_relaxed), moe_mpi_rc_)

// Check one MPI call; on failure return a moe_status with the call named. Use in functions
// returning moe_status.
#define MOE_MPI(call)                                                                              \
    do {                                                                                           \
        int moe_mpi_rc_;                                                                           \
        int moe_rc_ = MOE_MPI_CALL(call);                                                          \
        if (moe_rc_ != MPI_SUCCESS) return moe_comm_mpi_error(#call, moe_rc_, __FILE__, __LINE__); \
    } while (0)

// Same, but jumps to a label after recording the status in `st` (for unwinding paths).
#define MOE_MPI_GOTO(st, label, call)                                                              \
    do {                                                                                           \
        int moe_mpi_rc_;                                                                           \
        int moe_rc_ = MOE_MPI_CALL(call);                                                          \
        if (moe_rc_ != MPI_SUCCESS) {                                                              \
            (st) = moe_comm_mpi_error(#call, moe_rc_, __FILE__, __LINE__);                         \
            goto label;                                                                            \
        }                                                                                          \
    } while (0)

static inline MPI_Comm moe_comm_mpi(const moe_comm *c, moe_comm_group g) {
    MOE_ASSERT(c && g >= 0 && g < MOE_COMM_N_GROUPS);
    return c->comms[g];
}

// moe_comm_agree (comm.h) over any communicator of the world (a group, a plan's communicator):
// every rank gets the worst status and "rank R: <message of R>", R the world rank of the lowest
// rank of `comm` with that status. Returns MOE_EMPI if the agreement itself fails.
moe_status moe_comm_agree_mpi(MPI_Comm comm, moe_status local);

#endif
