// test-mpi.h: the two pieces of plumbing the MPI test programs share (include after comm.h and
// test-util.h): starting MPI (g_rank set, the world size returned) and summing a rank's failure
// count over the world.
#ifndef MOE_TEST_MPI_H
#define MOE_TEST_MPI_H

#include "comm.h"
#include "test-util.h"

// moe_comm_init, then g_rank and the world size from a plain world (freed again). Aborts on error.
static inline int test_mpi_start(int *argc, char ***argv) {
    OK(moe_comm_init(argc, argv));
    moe_comm *c0;
    moe_comm_params p0 = {1, 0, 0, 1};
    OK(moe_comm_create(&p0, &c0));
    const int W = moe_comm_size(c0, MOE_COMM_WORLD);
    g_rank = moe_comm_rank(c0, MOE_COMM_WORLD);
    moe_comm_free(c0);
    return W;
}

// Σ over c's world of each rank's `fails` (collective; every rank gets the sum), then frees c.
static inline int test_world_fails(moe_comm *c, int64_t fails) {
    OK(moe_comm_allreduce_i64(c, MOE_COMM_WORLD, &fails, 1, MOE_COMM_SUM));
    moe_comm_free(c);
    return (int)fails;
}

#endif
