// shared.c: shared experts — every token through every expert of a small family, the sum scaled by
// an optional sigmoid gate — and their backward, for the one-rank and the expert-parallel layer.
// Trade-off: one expert at a time through the grouped-expert kernels (all T rows as one block),
// summed in place: two (T_max, D) buffers whatever n_shared is, for n_shared rounds of GEMMs.
#include "experts.h"

#include <math.h>
#include <string.h>

moe_expert_weights moe_experts_slice(const moe_expert_weights *w, int64_t D, int64_t F, int64_t r,
                                     int64_t first) {
#define SH(p, n) ((p) ? (p) + first * (n) : NULL) // frozen gradients are NULL
    moe_expert_weights v = {
        SH(w->w1, D * F), SH(w->b1, F), SH(w->w3, D * F), SH(w->b3, F), SH(w->w2, F * D),
        SH(w->b2, D),     NULL,         NULL,            SH(w->la1, D * r), SH(w->lb1, r * F),
        SH(w->la3, D * r), SH(w->lb3, r * F), SH(w->la2, F * r), SH(w->lb2, r * D),
    };
#undef SH
    return v;
}

void moe_shared_buffers_alloc(moe_shared_buffers *b, const moe_experts_params *sp, int64_t T_max) {
    MOE_ASSERT(sp->n_experts > 0 && T_max > 0);
    const int64_t T = T_max, D = sp->D;
    b->T_max = T;
    b->save = moe_xalloc_aligned((size_t)(sp->n_experts * T * moe_experts_save_per_row(sp)) *
                                 sizeof(float));
    b->out = moe_xalloc_aligned((size_t)(T * D) * sizeof(float));
    b->tmp = moe_xalloc_aligned((size_t)(T * D) * sizeof(float));
    b->gate = moe_xalloc_aligned((size_t)T * sizeof(float));
    b->scratch = moe_xalloc_aligned((size_t)(T * moe_experts_scratch_per_row(sp)) * sizeof(float));
}

void moe_shared_buffers_free(moe_shared_buffers *b) {
    if (!b) return;
    free(b->save);
    free(b->out);
    free(b->tmp);
    free(b->gate);
    free(b->scratch);
    memset(b, 0, sizeof *b);
}

void moe_shared_forward(const moe_experts_params *sp, moe_shared_buffers *b, float *y,
                        const moe_expert_weights *w, const float *ws, const float *x, int64_t T) {
    MOE_ASSERT(T >= 0 && T <= b->T_max);
    if (T == 0) return;
    const int64_t D = sp->D, off[2] = {0, T}, spr = moe_experts_save_per_row(sp);
    moe_experts_params one = *sp;
    one.n_experts = 1;
    for (int s = 0; s < sp->n_experts; s++) {
        moe_expert_weights v = moe_experts_slice(w, D, sp->F, sp->lora_r, s);
        float *dst = s == 0 ? b->out : b->tmp;
        moe_experts_forward(&one, dst, b->save + s * b->T_max * spr, &v, off, x);
        if (s > 0)
            for (int64_t i = 0; i < T * D; i++) b->out[i] += b->tmp[i];
    }
    for (int64_t t = 0; t < T; t++) {
        float g = 1.0f;
        if (ws) {
            double z = 0;
            for (int64_t d = 0; d < D; d++) z += (double)x[t * D + d] * ws[d];
            g = (float)(1.0 / (1.0 + exp(-z)));
        }
        b->gate[t] = g;
        for (int64_t d = 0; d < D; d++) y[t * D + d] += g * b->out[t * D + d];
    }
}

void moe_shared_backward(const moe_experts_params *sp, moe_shared_buffers *b, float *dx,
                         moe_expert_weights *grads, float *dws, const moe_expert_weights *w,
                         const float *ws, const float *x, const float *dy, int64_t T) {
    MOE_ASSERT(T >= 0 && T <= b->T_max);
    MOE_ASSERT(ws || !dws);
    if (T == 0) return;
    const int64_t D = sp->D, off[2] = {0, T}, spr = moe_experts_save_per_row(sp);
    for (int64_t t = 0; t < T; t++) {
        float g = b->gate[t];
        const float *dyt = dy + t * D;
        float *dst = b->tmp + t * D;
        for (int64_t d = 0; d < D; d++) dst[d] = g * dyt[d];
        if (ws) {
            double dg = 0;
            for (int64_t d = 0; d < D; d++) dg += (double)dyt[d] * b->out[t * D + d];
            float dz = (float)(dg * g * (1.0f - g));
            for (int64_t d = 0; d < D; d++) {
                if (dws) dws[d] += dz * x[t * D + d];
                dx[t * D + d] += dz * ws[d];
            }
        }
    }
    moe_experts_params one = *sp;
    one.n_experts = 1;
    float *dxs = b->out; // S is no longer needed: it holds each expert's dx in turn
    for (int s = 0; s < sp->n_experts; s++) {
        moe_expert_weights v = moe_experts_slice(w, D, sp->F, sp->lora_r, s);
        moe_expert_weights gs = moe_experts_slice(grads, D, sp->F, sp->lora_r, s);
        moe_experts_backward(&one, dxs, &gs, b->scratch, &v, off, x, b->save + s * b->T_max * spr,
                             b->tmp);
        for (int64_t i = 0; i < T * D; i++) dx[i] += dxs[i];
    }
}
