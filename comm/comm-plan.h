// comm-plan.h: the moe_comm_plan struct, shared by exchange.c (counts, payload, hierarchical) and
// pack.c (dispatch pack, combine unpack). Private to comm/.
#ifndef MOE_COMM_PLAN_H
#define MOE_COMM_PLAN_H

#include "comm-impl.h"

struct moe_comm_plan {
    moe_comm *c;
    moe_comm_plan_params p;
    MPI_Comm comm;     // the group's communicator (owned by c)
    int P, me, rec;    // peers, my rank in the group, entries per count record (1 + El)
    size_t row_bytes;  // a token row on the wire: token_bytes, or token_bytes/2 with bf16
    size_t wire_bytes; // row_bytes (+ K*8 with dedup)
    int64_t max_pairs; // expert-side (token, expert) pairs capacity: max_recv_rows * (K or 1)
    int counted;       // exchange_counts has run

    int32_t *send_rec; // (P, rec) token side records
    int32_t *recv_rec; // (P, rec) expert side records
    int64_t *send_off; // (P+1) wire-row offsets of each peer's block, token side
    int64_t *recv_off; // (P+1) expert side
    int64_t send_rows, recv_rows, pairs;
    int64_t *expert_off; // (El+1) prefix sums of the pairs arriving per local expert

    int *chunk_arr;    // (n_chunks, 4, P): send counts, send displs, recv counts, recv displs
    MPI_Request *reqs; // (n_chunks)
    MPI_Datatype row_type[2]; // contiguous rows of token_bytes, wire_bytes (counts in rows)

    int64_t *cursor; // (P*El + P) pack scratch

    int *peer_inter;     // (P) 1 if group rank d lives on another node than this rank
    moe_comm_bytes sent; // payload bytes moved so far (moe_comm_plan_bytes)

    // hierarchical mode (NULL / MPI_COMM_NULL otherwise)
    MPI_Comm node_comm, leader_comm;
    int q, n_nodes, my_node, is_leader;
    int *node_of;     // (P) node ordinal of each group rank
    int *members;     // (P) group ranks ordered by (node ordinal, group rank)
    int *node_start;  // (n_nodes+1) into members
    int32_t *cmat;    // (P, P) wire rows C[s][d] token side s -> expert side d
    int64_t *hpre;    // (q, P+1) per-member prefix sums over destinations
    int64_t *hpos;    // (P, q) positions of (source, my member) blocks in stage C
    int *hcnt, *hdsp; // (2, max(q, n_nodes)) counts and displs
    char *stage[2];   // leader staging buffers (q * max rows * wire_bytes each)
};

#endif
