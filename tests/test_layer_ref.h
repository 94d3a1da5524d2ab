// test_layer_ref.h: the plain reference MoE layer (double precision, one token at a time, no
// sorting or grouping) that the optimized layer is tested against, and small test helpers.
// Weights live in a double mirror of the float block of moe_layer_weights (same offsets).
#ifndef MOE_TEST_LAYER_REF_H
#define MOE_TEST_LAYER_REF_H

#include "experts.h"

// Offsets (in floats) of each tensor inside the weight block; -1 when absent.
typedef struct {
    int64_t n; // floats in the block
    int64_t wg, bg, ws;
    int64_t w1, b1, w3, b3, w2, b2;       // routed family
    int64_t sw1, sb1, sw3, sb3, sw2, sb2; // shared family
} ref_offsets;

ref_offsets ref_offsets_of(const moe_layer_weights *w, int64_t n_floats);

// Selection held by the reference so a finite-difference perturbation cannot change it.
typedef struct {
    int valid; // 0: compute the selection in the next forward and keep it
    int64_t T;
    int64_t C;
    int32_t *sel;    // (T, K) token choice: experts, best first
    int *kept;       // (T, K) token choice: 1 kept, 0 dropped
    int *chosen;     // (T, E) expert choice: 1 if expert e took token t
    int64_t *counts; // (E) selections before dropping
} ref_selection;

void ref_selection_init(ref_selection *s, const moe_layer_params *p, int64_t T);
void ref_selection_free(ref_selection *s);

typedef struct {
    double aux, z;
} ref_losses;

// y (T, D) written. W: double mirror; x (T, D); bias (E) or NULL.
void ref_layer_forward(const moe_layer_params *p, const ref_offsets *o, const double *W,
                       const double *x, const double *bias, int64_t T, const moe_route_opts *opts,
                       ref_selection *sel, double *y, ref_losses *losses);

// Gradients of L = Σ y·dy + L_aux + L_z, ADDED into dW (mirror layout) and dx (T, D).
void ref_layer_backward(const moe_layer_params *p, const ref_offsets *o, const double *W,
                        const double *x, const double *bias, int64_t T, const moe_route_opts *opts,
                        ref_selection *sel, const double *dy, double *dW, double *dx);

// Dense FFN with routed expert 0's weights on every token: y (T, D) written (E=1 check).
void ref_dense_forward(const moe_layer_params *p, const ref_offsets *o, const double *W,
                       const double *x, int64_t T, double *y);

// Helpers ------------------------------------------------------------------------------------
// (random inputs: test_uniform of test-util.h)
// max |got − ref| / max(max |ref|, floor) <= tol, else prints name, index, expected vs got and
// returns 1.
int ref_check(const char *name, const float *got, const double *ref, int64_t n, double tol,
              double floor);
int ref_check_d(const char *name, const double *got, const double *ref, int64_t n, double tol,
                double floor);

#endif
