// test_nn_ref.h: plain double-precision references of the dense kernels (per-element loops, no
// BLAS, RoPE angles computed directly) and a central-difference gradient checker over them, shared
// by the nn tests. Loss convention for a kernel: L = Σ out·dout with a fixed random dout.
#ifndef MOE_TEST_NN_REF_H
#define MOE_TEST_NN_REF_H

#include "moe-common.h"

// Fills f (n) with uniform(lo, hi) (test_uniform of test-util.h: splitmix64) and d (n, may be
// NULL) with the same (float-rounded) values.
void nnref_fill(uint64_t *s, float *f, double *d, int64_t n, double lo, double hi);
double *nnref_dup(const float *f, int64_t n); // double copy (free())

// References (outputs first, written). Shapes as in trainer/model/nn.h.
void nnref_embed(double *out, const int32_t *tok, const double *wte, int64_t T, int64_t D);
void nnref_rmsnorm(double *out, const double *x, const double *w, int64_t N, int64_t C, double eps);
void nnref_layernorm(double *out, const double *x, const double *w, const double *b, int64_t N,
                     int64_t C, double eps);
void nnref_linear(double *out, const double *x, const double *w, const double *b, int64_t T,
                  int64_t n_in, int64_t n_out);
void nnref_rope(double *out, const double *x, int64_t B, int64_t S, int64_t nH, int64_t Dh,
                double theta);
// Per-query loop: for each (b, h, i) the softmax over j <= i, then the weighted sum of v.
void nnref_attention(double *out, const double *q, const double *k, const double *v, int64_t B,
                     int64_t S, int64_t H, int64_t Hkv, int64_t Dh);
double nnref_crossentropy(const double *logits, const int32_t *tgt, int64_t T, int64_t V);
// SwiGLU FFN y = (silu(x·w1) ⊙ (x·w3))·w2: w1, w3 (D, F), w2 (F, D).
void nnref_swiglu(double *y, const double *x, const double *w1, const double *w3, const double *w2,
                  int64_t T, int64_t D, int64_t F);
double nnref_dot(const double *a, const double *b, int64_t n);

// One tensor to check: the double copy the loss reads (perturbed in place), the gradient the
// kernel produced (float) and what was in the gradient buffer before the backward (float or NULL
// for zero), so ADD semantics is checked as well.
typedef struct {
    const char *name;
    double *p;
    int64_t n;
    const float *grad;
    const float *grad0;
} nnref_param;

// Central differences (step h) of loss(ctx) over every entry of every param (or `max_entries`
// evenly spread when n is larger, 0: all), compared with grad − grad0: fails when
// |got − fd| > atol + rtol·|fd| anywhere. Prints the worst entry per tensor; returns failures.
int nnref_fd_check(const char *what, double (*loss)(void *), void *ctx, nnref_param *ps, int np,
                   double h, double atol, double rtol, int64_t max_entries);

// Compares a float result with a double reference: max |got − want| <= atol + rtol·|want|.
int nnref_check(const char *what, const float *got, const double *want, int64_t n, double atol,
                double rtol);

#endif
