// pack.c: the token-side pack/unpack steps around the exchange engine — dispatch pack (stable
// counting sort by (peer, expert), or by (peer, token) with dedup) and the combine unpack — and
// the wire format of a token row (fp32, or bf16 rounded to nearest even and widened back). The
// expert side's expansion is its caller's (per chunk, in ep-layer.c). Local only (no MPI); uses
// the plan's scratch, never allocates.
#include "comm-plan.h"

#include <string.h>

uint16_t moe_comm_bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    // NaN: keep the sign and the top payload bits, set the quiet bit so that a payload living
    // only in the low 16 bits cannot turn into the Inf pattern.
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    // Round to nearest, ties to even: add 0x7fff plus the lowest kept bit, then truncate. A carry
    // runs into the exponent (the next binade, or Inf past the largest finite bf16).
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float moe_comm_f32_from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float moe_comm_round_bf16(float f) { return moe_comm_f32_from_bf16(moe_comm_bf16_from_f32(f)); }

void moe_comm_row_put(const moe_comm_plan *pl, void *row, const float *src) {
    if (pl->p.dtype != MOE_COMM_BF16) {
        memcpy(row, src, pl->p.token_bytes);
        return;
    }
    const size_t D = pl->p.token_bytes / sizeof(float);
    uint16_t *h = row; // rows sit at multiples of the row size (2·D bytes): 2-byte aligned
    for (size_t d = 0; d < D; d++) h[d] = moe_comm_bf16_from_f32(src[d]);
}

void moe_comm_row_get(const moe_comm_plan *pl, float *dst, const void *row) {
    if (pl->p.dtype != MOE_COMM_BF16) {
        memcpy(dst, row, pl->p.token_bytes);
        return;
    }
    const size_t D = pl->p.token_bytes / sizeof(float);
    const uint16_t *h = row;
    for (size_t d = 0; d < D; d++) dst[d] = moe_comm_f32_from_bf16(h[d]);
}

moe_status moe_comm_dispatch_pack(moe_comm_plan *pl, int64_t T, const void *x,
                                  const int32_t *expert_ids, const float *weights,
                                  int32_t *send_counts, void *send, int32_t *row_src) {
    const int P = pl->P, El = pl->p.n_local_experts, K = pl->p.top_k, rec = pl->rec;
    const size_t tb = pl->p.token_bytes, rb = pl->row_bytes, wb = pl->wire_bytes;
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
                if (pl->p.dtype == MOE_COMM_BF16)
                    moe_comm_row_put(pl, out + (size_t)u * wb,
                                     (const float *)(xb + (size_t)t * tb));
                else
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
            memcpy(row + rb, slots, (size_t)K * sizeof(moe_comm_slot)); // dedup: rb == tb
        }
    }
    return MOE_OK;
}

void moe_comm_combine_unpack(const moe_comm_plan *pl, const void *back, const int32_t *row_src,
                             const float *weights, int64_t T, float *y) {
    MOE_ASSERT(pl->counted);
    const size_t D = pl->p.token_bytes / sizeof(float);
    const int K = pl->p.top_k, bf16 = pl->p.dtype == MOE_COMM_BF16;
    for (int64_t u = 0; u < pl->send_rows; u++) {
        int64_t src = row_src[u];
        int64_t t = pl->p.dedup ? src : src / K;
        MOE_ASSERT(t >= 0 && t < T);
        const float w = (!pl->p.dedup && weights) ? weights[src] : 1.0f;
        const char *row = (const char *)back + (size_t)u * pl->row_bytes;
        float *yt = y + (size_t)t * D;
        if (bf16) {
            const uint16_t *h = (const uint16_t *)row;
            for (size_t d = 0; d < D; d++) yt[d] += w * moe_comm_f32_from_bf16(h[d]);
        } else {
            const float *b = (const float *)row;
            for (size_t d = 0; d < D; d++) yt[d] += w * b[d];
        }
    }
}
