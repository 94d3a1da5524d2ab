// pack.c: the token-side pack/unpack steps around the exchange engine — dispatch pack (stable
// counting sort by (peer, expert), or by (peer, token) with dedup) and the combine unpack. The
// expert side's expansion is its caller's (per chunk, in ep-layer.c). Local only (no MPI); uses
// the plan's scratch, never allocates.
#include "comm-plan.h"

#include <string.h>

moe_status moe_comm_dispatch_pack(moe_comm_plan *pl, int64_t T, const void *x,
                                  const int32_t *expert_ids, const float *weights,
                                  int32_t *send_counts, void *send, int32_t *row_src) {
    const int P = pl->P, El = pl->p.n_local_experts, K = pl->p.top_k, rec = pl->rec;
    const size_t tb = pl->p.token_bytes, wb = pl->wire_bytes;
    const char *xb = x;
    char *out = send;
    int64_t *cur = pl->cursor; // (P*El) without dedup, (P) with dedup
    memset(send_counts, 0, (size_t)P * (size_t)rec * sizeof(int32_t));
    // Pass 1: counts.
    for (int64_t t = 0; t < T; t++) {
        for (int k = 0; k < K; k++) {
            int32_t e = expert_ids[t * K + k];
            if (e < 0) continue;
            if (e >= P * El)
                return moe_set_error(MOE_EINVAL,
                                     "dispatch pack: token %lld slot %d routes to expert "
                                     "%d, but the EP group holds %d experts",
                                     (long long)t, k, e, P * El);
            int d = e / El, j = e % El;
            send_counts[d * rec + 1 + j]++;
            int first = 1; // dedup: first slot of this token going to peer d
            for (int k2 = 0; k2 < k && pl->p.dedup; k2++)
                if (expert_ids[t * K + k2] >= 0 && expert_ids[t * K + k2] / El == d) first = 0;
            if (!pl->p.dedup || first) send_counts[d * rec]++;
        }
    }
    int64_t total = 0;
    for (int d = 0; d < P; d++) total += send_counts[d * rec];
    if (total > pl->p.max_send_rows)
        return moe_set_error(MOE_EINVAL,
                             "dispatch pack: %lld wire rows for %lld tokens exceed the "
                             "send buffer of %lld rows",
                             (long long)total, (long long)T, (long long)pl->p.max_send_rows);
    // Pass 2: cursors, then rows in (peer, expert, token) or (peer, token) order.
    int64_t off = 0;
    for (int d = 0; d < P; d++) {
        if (pl->p.dedup) {
            cur[d] = off;
            off += send_counts[d * rec];
        } else
            for (int j = 0; j < El; j++) {
                cur[d * El + j] = off;
                off += send_counts[d * rec + 1 + j];
            }
    }
    for (int64_t t = 0; t < T; t++) {
        for (int k = 0; k < K; k++) {
            int32_t e = expert_ids[t * K + k];
            if (e < 0) continue;
            int d = e / El;
            if (!pl->p.dedup) {
                int64_t u = cur[e]++; // e == d*El + j
                memcpy(out + (size_t)u * wb, xb + (size_t)t * tb, tb);
                row_src[u] = (int32_t)(t * K + k);
                continue;
            }
            int first = 1;
            for (int k2 = 0; k2 < k; k2++)
                if (expert_ids[t * K + k2] >= 0 && expert_ids[t * K + k2] / El == d) first = 0;
            if (!first) continue;
            int64_t u = cur[d]++;
            char *row = out + (size_t)u * wb;
            memcpy(row, xb + (size_t)t * tb, tb);
            row_src[u] = (int32_t)t;
            moe_comm_slot slots[K];
            int n = 0;
            for (int k2 = k; k2 < K; k2++) {
                int32_t e2 = expert_ids[t * K + k2];
                if (e2 >= 0 && e2 / El == d)
                    slots[n++] = (moe_comm_slot){e2 % El, weights ? weights[t * K + k2] : 1.0f};
            }
            for (; n < K; n++) slots[n] = (moe_comm_slot){-1, 0.0f};
            memcpy(row + tb, slots, (size_t)K * sizeof(moe_comm_slot));
        }
    }
    return MOE_OK;
}

void moe_comm_combine_unpack(const moe_comm_plan *pl, const float *back, const int32_t *row_src,
                             const float *weights, int64_t T, float *y) {
    MOE_ASSERT(pl->counted);
    const size_t D = pl->p.token_bytes / sizeof(float);
    const int K = pl->p.top_k;
    for (int64_t u = 0; u < pl->send_rows; u++) {
        int64_t src = row_src[u];
        int64_t t = pl->p.dedup ? src : src / K;
        MOE_ASSERT(t >= 0 && t < T);
        const float w = (!pl->p.dedup && weights) ? weights[src] : 1.0f;
        const float *b = back + (size_t)u * D;
        float *yt = y + (size_t)t * D;
        for (size_t d = 0; d < D; d++) yt[d] += w * b[d];
    }
}
