// test_layer_ref.c: the plain reference MoE layer in double precision — each token routed and
// pushed through its experts one at a time, capacity by counting better-ranked pairs (O(T²)),
// exact tanh GELU — forward and analytic backward. Slow on purpose: written to be read.
#include "test_layer_ref.h"

#include <math.h>
#include <string.h>

static int ref_check_any(const char *name, const float *gf, const double *gd, const double *ref,
                         int64_t n, double tol, double floor) {
    double mx = 0, worst = 0;
    int64_t wi = 0;
    for (int64_t i = 0; i < n; i++) mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
    double scale = mx > floor ? mx : floor;
    for (int64_t i = 0; i < n; i++) {
        double g = gf ? gf[i] : gd[i];
        double e = fabs(g - ref[i]) / scale;
        if (e > worst || e != e) {
            worst = e;
            wi = i;
            if (e != e) break; // NaN: report it
        }
    }
    if (worst <= tol) return 0;
    fprintf(stderr,
            "FAIL %s: index %lld expected %.9g got %.9g (max|ref| %.3g, normalised error "
            "%.3g > tol %.3g)\n",
            name, (long long)wi, ref[wi], gf ? (double)gf[wi] : gd[wi], mx, worst, tol);
    return 1;
}

int ref_check(const char *name, const float *got, const double *ref, int64_t n, double tol,
              double floor) {
    return ref_check_any(name, got, NULL, ref, n, tol, floor);
}

int ref_check_d(const char *name, const double *got, const double *ref, int64_t n, double tol,
                double floor) {
    return ref_check_any(name, NULL, got, ref, n, tol, floor);
}

static int64_t ref_off(const float *ptr, const float *base) { return ptr ? ptr - base : -1; }

ref_offsets ref_offsets_of(const moe_layer_weights *w, int64_t n) {
    const float *b = w->wg;
    ref_offsets o = {
        n,
        0,
        ref_off(w->bg, b),
        ref_off(w->ws, b),
        ref_off(w->experts.w1, b),
        ref_off(w->experts.b1, b),
        ref_off(w->experts.w3, b),
        ref_off(w->experts.b3, b),
        ref_off(w->experts.w2, b),
        ref_off(w->experts.b2, b),
        ref_off(w->shared.w1, b),
        ref_off(w->shared.b1, b),
        ref_off(w->shared.w3, b),
        ref_off(w->shared.b3, b),
        ref_off(w->shared.w2, b),
        ref_off(w->shared.b2, b),
    };
    return o;
}

void ref_selection_init(ref_selection *s, const moe_layer_params *p, int64_t T) {
    memset(s, 0, sizeof *s);
    s->T = T;
    s->sel = moe_xcalloc((size_t)(T * p->router.K), sizeof(int32_t));
    s->kept = moe_xcalloc((size_t)(T * p->router.K), sizeof(int));
    s->chosen = moe_xcalloc((size_t)(T * p->router.E), sizeof(int));
    s->counts = moe_xcalloc((size_t)p->router.E, sizeof(int64_t));
}

void ref_selection_free(ref_selection *s) {
    free(s->sel);
    free(s->kept);
    free(s->chosen);
    free(s->counts);
    memset(s, 0, sizeof *s);
}

// ------------------------------------------------------------------------------ one FFN

typedef struct {
    int64_t D, F;
    moe_activation act;
    const double *w1, *b1, *w3, *b3, *w2, *b2; // (D,F) (F) (D,F) (F) (F,D) (D); NULL absent
} ref_ffn;

static const double *ref_ptr(const double *W, int64_t off, int64_t stride, int e) {
    return off < 0 ? NULL : W + off + e * stride;
}

static ref_ffn ref_ffn_of(const double *W, int64_t D, int64_t F, moe_activation act, int64_t w1,
                          int64_t b1, int64_t w3, int64_t b3, int64_t w2, int64_t b2, int e) {
    ref_ffn f = {D,
                 F,
                 act,
                 ref_ptr(W, w1, D * F, e),
                 ref_ptr(W, b1, F, e),
                 ref_ptr(W, w3, D * F, e),
                 ref_ptr(W, b3, F, e),
                 ref_ptr(W, w2, F * D, e),
                 ref_ptr(W, b2, D, e)};
    return f;
}

#define REF_C 0.7978845608028654
#define REF_A 0.044715

static double ref_gelu(double u) { return 0.5 * u * (1 + tanh(REF_C * (u + REF_A * u * u * u))); }
static double ref_gelu_d(double u) {
    double th = tanh(REF_C * (u + REF_A * u * u * u));
    return 0.5 * (1 + th) + 0.5 * u * (1 - th * th) * REF_C * (1 + 3 * REF_A * u * u);
}
static double ref_sig(double u) { return 1 / (1 + exp(-u)); }

// o (D) = FFN(x (D)); h1, h3 (F) pre-activations kept for backward.
static void ref_ffn_forward(const ref_ffn *f, const double *x, double *o, double *h1, double *h3) {
    for (int64_t j = 0; j < f->F; j++) {
        double s1 = f->b1 ? f->b1[j] : 0, s3 = f->b3 ? f->b3[j] : 0;
        for (int64_t d = 0; d < f->D; d++) {
            s1 += x[d] * f->w1[d * f->F + j];
            if (f->act == MOE_ACT_SWIGLU) s3 += x[d] * f->w3[d * f->F + j];
        }
        h1[j] = s1;
        h3[j] = s3;
    }
    for (int64_t d = 0; d < f->D; d++) o[d] = f->b2 ? f->b2[d] : 0;
    for (int64_t j = 0; j < f->F; j++) {
        double a = f->act == MOE_ACT_GELU ? ref_gelu(h1[j]) : h1[j] * ref_sig(h1[j]) * h3[j];
        for (int64_t d = 0; d < f->D; d++) o[d] += a * f->w2[j * f->D + d];
    }
}

// Given do (D): adds into the family gradient g (same layout as f, via offsets) and dx (D).
static void ref_ffn_backward(const ref_ffn *f, ref_ffn *g, const double *x, const double *h1,
                             const double *h3, const double *dout, double *dx) {
    double *gw1 = (double *)g->w1, *gb1 = (double *)g->b1, *gw3 = (double *)g->w3;
    double *gb3 = (double *)g->b3, *gw2 = (double *)g->w2, *gb2 = (double *)g->b2;
    for (int64_t d = 0; d < f->D; d++)
        if (gb2) gb2[d] += dout[d];
    for (int64_t j = 0; j < f->F; j++) {
        double u = h1[j];
        double a = f->act == MOE_ACT_GELU ? ref_gelu(u) : u * ref_sig(u) * h3[j];
        double da = 0;
        for (int64_t d = 0; d < f->D; d++) {
            gw2[j * f->D + d] += a * dout[d];
            da += f->w2[j * f->D + d] * dout[d];
        }
        double dh1, dh3 = 0;
        if (f->act == MOE_ACT_GELU) {
            dh1 = da * ref_gelu_d(u);
        } else {
            double s = ref_sig(u);
            dh3 = da * u * s;
            dh1 = da * h3[j] * s * (1 + u * (1 - s));
        }
        if (gb1) gb1[j] += dh1;
        if (gb3) gb3[j] += dh3;
        for (int64_t d = 0; d < f->D; d++) {
            gw1[d * f->F + j] += x[d] * dh1;
            dx[d] += f->w1[d * f->F + j] * dh1;
            if (f->act == MOE_ACT_SWIGLU) {
                gw3[d * f->F + j] += x[d] * dh3;
                dx[d] += f->w3[d * f->F + j] * dh3;
            }
        }
    }
}

// ------------------------------------------------------------------------------ routing

// z (E), p (E) of token t; returns logsumexp(z).
static double ref_token_scores(const moe_layer_params *P, const ref_offsets *o, const double *W,
                               const double *xt, int64_t t, const moe_route_opts *opts, double *z,
                               double *p) {
    const moe_router_params *r = &P->router;
    const int E = r->E;
    for (int e = 0; e < E; e++) {
        double s = o->bg >= 0 && r->gate_bias ? W[o->bg + e] : 0;
        for (int64_t d = 0; d < r->D; d++) s += xt[d] * W[o->wg + d * E + e];
        if (opts && opts->training && r->jitter > 0)
            s += r->jitter * moe_router_noise(opts->seed, opts->token_base + t, e);
        z[e] = s;
    }
    double m = z[0], sum = 0;
    for (int e = 1; e < E; e++) m = z[e] > m ? z[e] : m;
    for (int e = 0; e < E; e++) sum += exp(z[e] - m);
    int sigm = r->scoring == MOE_SCORE_SIGMOID && r->strategy == MOE_ROUTE_TOKEN_CHOICE;
    for (int e = 0; e < E; e++) p[e] = sigm ? ref_sig(z[e]) : exp(z[e] - m) / sum;
    return m + log(sum);
}

static void ref_select(const moe_layer_params *P, const double *probs, const double *bias,
                       int64_t T, ref_selection *s) {
    const moe_router_params *r = &P->router;
    const int E = r->E, K = r->K;
    s->T = T;
    memset(s->counts, 0, (size_t)E * sizeof(int64_t));
    // Routing groups: capacity and expert choice rank only the tokens of the same group of G.
    const int64_t G = r->group_tokens > 0 ? r->group_tokens : T;
    if (r->strategy == MOE_ROUTE_EXPERT_CHOICE) {
        double cf = r->capacity_factor > 0 ? r->capacity_factor : 1;
        int64_t C = (int64_t)ceil(cf * (double)G * K / E);
        if (C > G) C = G;
        s->C = C;
        for (int64_t t = 0; t < T; t++)
            for (int e = 0; e < E; e++) {
                int64_t rank = 0; // tokens of t's group ranked above t for expert e
                for (int64_t u = t / G * G; u < t / G * G + G; u++) {
                    double pu = probs[u * E + e], pt = probs[t * E + e];
                    if (pu > pt || (pu == pt && u < t)) rank++;
                }
                s->chosen[t * E + e] = rank < C;
                s->counts[e] += rank < C;
            }
        return;
    }
    for (int64_t t = 0; t < T; t++) {
        int taken[256] = {0};
        MOE_ASSERT(E <= 256);
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                if (taken[e]) continue;
                double v = probs[t * E + e] + (bias ? bias[e] : 0);
                double bv = best < 0 ? 0 : probs[t * E + best] + (bias ? bias[best] : 0);
                if (best < 0 || v > bv) best = e;
            }
            taken[best] = 1;
            s->sel[t * K + k] = best;
            s->counts[best]++;
        }
    }
    s->C = r->capacity_factor > 0 ? (int64_t)ceil(r->capacity_factor * (double)G * K / E) : 0;
    for (int64_t t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            int e = s->sel[t * K + k];
            int64_t rank = 0; // pairs of t's group choosing e ranked above (t, e)
            for (int64_t u = t / G * G; u < t / G * G + G; u++)
                for (int j = 0; j < K; j++) {
                    if (s->sel[u * K + j] != e) continue;
                    double pu = probs[u * E + e], pt = probs[t * E + e];
                    if (pu > pt || (pu == pt && u < t)) rank++;
                }
            s->kept[t * K + k] = s->C == 0 || rank < s->C;
        }
}

// ------------------------------------------------------------------------------ the layer

#define REF_MAXE 256

static void ref_all_scores(const moe_layer_params *P, const ref_offsets *o, const double *W,
                           const double *x, int64_t T, const moe_route_opts *opts, double *Z,
                           double *Pr, double *lse) {
    const int E = P->router.E;
    for (int64_t t = 0; t < T; t++)
        lse[t] = ref_token_scores(P, o, W, x + t * P->router.D, t, opts, Z + t * E, Pr + t * E);
}

void ref_layer_forward(const moe_layer_params *P, const ref_offsets *o, const double *W,
                       const double *x, const double *bias, int64_t T, const moe_route_opts *opts,
                       ref_selection *sel, double *y, ref_losses *losses) {
    const moe_router_params *r = &P->router;
    const int E = r->E, K = r->K;
    const int64_t D = r->D;
    double *Z = moe_xcalloc((size_t)(T * E), sizeof(double));
    double *Pr = moe_xcalloc((size_t)(T * E), sizeof(double));
    double *lse = moe_xcalloc((size_t)T + 1, sizeof(double));
    int64_t Fm = P->F > P->Fs ? P->F : P->Fs;
    double *h1 = moe_xcalloc((size_t)Fm, sizeof(double)),
           *h3 = moe_xcalloc((size_t)Fm, sizeof(double));
    double *ob = moe_xcalloc((size_t)D, sizeof(double));
    ref_all_scores(P, o, W, x, T, opts, Z, Pr, lse);
    if (!sel->valid) {
        ref_select(P, Pr, bias, T, sel);
        sel->valid = 1;
    }
    memset(y, 0, (size_t)(T * D) * sizeof(double));
    for (int64_t t = 0; t < T; t++) {
        const double *xt = x + t * D, *pt = Pr + t * E;
        double S = 0;
        if (r->strategy == MOE_ROUTE_TOKEN_CHOICE)
            for (int k = 0; k < K; k++) S += pt[sel->sel[t * K + k]];
        for (int e = 0; e < E; e++) {
            double w = 0;
            int on = 0;
            if (r->strategy == MOE_ROUTE_EXPERT_CHOICE) {
                on = sel->chosen[t * E + e];
                w = r->routed_scaling * pt[e];
            } else {
                for (int k = 0; k < K; k++)
                    if (sel->sel[t * K + k] == e && sel->kept[t * K + k]) {
                        on = 1;
                        w = r->routed_scaling * pt[e] / (r->renormalize ? S : 1.0);
                    }
            }
            if (!on) continue;
            ref_ffn f = ref_ffn_of(W, D, P->F, P->act, o->w1, o->b1, o->w3, o->b3, o->w2, o->b2, e);
            ref_ffn_forward(&f, xt, ob, h1, h3);
            for (int64_t d = 0; d < D; d++) y[t * D + d] += w * ob[d];
        }
        if (P->n_shared > 0) {
            double g = 1;
            if (P->shared_gate) {
                double zz = 0;
                for (int64_t d = 0; d < D; d++) zz += xt[d] * W[o->ws + d];
                g = ref_sig(zz);
            }
            for (int s = 0; s < P->n_shared; s++) {
                ref_ffn f = ref_ffn_of(W, D, P->Fs, P->act, o->sw1, o->sb1, o->sw3, o->sb3, o->sw2,
                                       o->sb2, s);
                ref_ffn_forward(&f, xt, ob, h1, h3);
                for (int64_t d = 0; d < D; d++) y[t * D + d] += g * ob[d];
            }
        }
    }
    losses->aux = 0;
    losses->z = 0;
    if (r->strategy == MOE_ROUTE_TOKEN_CHOICE && T > 0) {
        for (int e = 0; e < E; e++) {
            double Pi = 0;
            for (int64_t t = 0; t < T; t++) {
                double norm = 0;
                for (int j = 0; j < E; j++) norm += Pr[t * E + j];
                Pi += r->scoring == MOE_SCORE_SIGMOID ? Pr[t * E + e] / norm : Pr[t * E + e];
            }
            Pi /= (double)T;
            losses->aux += (double)sel->counts[e] / ((double)T * K) * Pi;
        }
        losses->aux *= r->aux_loss_coef * E;
    }
    for (int64_t t = 0; t < T; t++) losses->z += lse[t] * lse[t];
    losses->z = T > 0 ? r->z_loss_coef * losses->z / (double)T : 0;
    free(Z);
    free(Pr);
    free(lse);
    free(h1);
    free(h3);
    free(ob);
}

static ref_ffn ref_grad_view(double *dW, const ref_ffn *f, const double *W) {
    // The gradient view: same offsets as f's pointers into W, but into dW.
    ref_ffn g = *f;
    g.w1 = f->w1 ? dW + (f->w1 - W) : NULL;
    g.b1 = f->b1 ? dW + (f->b1 - W) : NULL;
    g.w3 = f->w3 ? dW + (f->w3 - W) : NULL;
    g.b3 = f->b3 ? dW + (f->b3 - W) : NULL;
    g.w2 = f->w2 ? dW + (f->w2 - W) : NULL;
    g.b2 = f->b2 ? dW + (f->b2 - W) : NULL;
    return g;
}

void ref_layer_backward(const moe_layer_params *P, const ref_offsets *o, const double *W,
                        const double *x, const double *bias, int64_t T, const moe_route_opts *opts,
                        ref_selection *sel, const double *dy, double *dW, double *dx) {
    const moe_router_params *r = &P->router;
    const int E = r->E, K = r->K;
    const int64_t D = r->D;
    MOE_ASSERT(E <= REF_MAXE);
    double *Z = moe_xcalloc((size_t)(T * E), sizeof(double));
    double *Pr = moe_xcalloc((size_t)(T * E), sizeof(double));
    double *lse = moe_xcalloc((size_t)T + 1, sizeof(double));
    int64_t Fm = P->F > P->Fs ? P->F : P->Fs;
    double *h1 = moe_xcalloc((size_t)Fm, sizeof(double)),
           *h3 = moe_xcalloc((size_t)Fm, sizeof(double));
    double *ob = moe_xcalloc((size_t)D, sizeof(double)),
           *dob = moe_xcalloc((size_t)D, sizeof(double));
    double *sh = moe_xcalloc((size_t)D, sizeof(double));
    ref_all_scores(P, o, W, x, T, opts, Z, Pr, lse);
    if (!sel->valid) {
        ref_select(P, Pr, bias, T, sel);
        sel->valid = 1;
    }
    for (int64_t t = 0; t < T; t++) {
        const double *xt = x + t * D, *pt = Pr + t * E, *dyt = dy + t * D;
        double *dxt = dx + t * D;
        double dp[REF_MAXE] = {0}, dz[REF_MAXE] = {0}, dw[REF_MAXE] = {0};
        int on[REF_MAXE] = {0};
        double wgt[REF_MAXE] = {0};
        double S = 0;
        if (r->strategy == MOE_ROUTE_TOKEN_CHOICE)
            for (int k = 0; k < K; k++) S += pt[sel->sel[t * K + k]];
        for (int e = 0; e < E; e++) {
            if (r->strategy == MOE_ROUTE_EXPERT_CHOICE) {
                on[e] = sel->chosen[t * E + e];
                wgt[e] = r->routed_scaling * pt[e];
            } else {
                for (int k = 0; k < K; k++)
                    if (sel->sel[t * K + k] == e && sel->kept[t * K + k]) {
                        on[e] = 1;
                        wgt[e] = r->routed_scaling * pt[e] / (r->renormalize ? S : 1.0);
                    }
            }
            if (!on[e]) continue;
            ref_ffn f = ref_ffn_of(W, D, P->F, P->act, o->w1, o->b1, o->w3, o->b3, o->w2, o->b2, e);
            ref_ffn g = ref_grad_view(dW, &f, W);
            ref_ffn_forward(&f, xt, ob, h1, h3);
            for (int64_t d = 0; d < D; d++) {
                dw[e] += dyt[d] * ob[d];
                dob[d] = wgt[e] * dyt[d];
            }
            ref_ffn_backward(&f, &g, xt, h1, h3, dob, dxt);
        }
        // combine weights → dp
        if (r->strategy == MOE_ROUTE_EXPERT_CHOICE) {
            for (int e = 0; e < E; e++)
                if (on[e]) dp[e] += r->routed_scaling * dw[e];
        } else if (r->renormalize) {
            double dot = 0; // Σ over kept selections of dw·p
            for (int e = 0; e < E; e++)
                if (on[e]) dot += dw[e] * pt[e];
            for (int k = 0; k < K; k++) {
                int e = sel->sel[t * K + k];
                dp[e] += r->routed_scaling * ((on[e] ? dw[e] : 0) - dot / S) / S;
            }
        } else {
            for (int e = 0; e < E; e++)
                if (on[e]) dp[e] += r->routed_scaling * dw[e];
        }
        // aux loss (through P only)
        if (r->strategy == MOE_ROUTE_TOKEN_CHOICE) {
            double ds[REF_MAXE];
            for (int e = 0; e < E; e++)
                ds[e] = r->aux_loss_coef * E * ((double)sel->counts[e] / ((double)T * K)) / T;
            if (r->scoring == MOE_SCORE_SOFTMAX) {
                for (int e = 0; e < E; e++) dp[e] += ds[e];
            } else {
                double norm = 0, dot = 0;
                for (int e = 0; e < E; e++) norm += pt[e];
                for (int e = 0; e < E; e++) dot += ds[e] * pt[e] / norm;
                for (int e = 0; e < E; e++) dp[e] += (ds[e] - dot) / norm;
            }
        }
        // scoring
        int sigm = r->scoring == MOE_SCORE_SIGMOID && r->strategy == MOE_ROUTE_TOKEN_CHOICE;
        double dot = 0;
        for (int e = 0; e < E; e++) dot += dp[e] * pt[e];
        for (int e = 0; e < E; e++)
            dz[e] = sigm ? dp[e] * pt[e] * (1 - pt[e]) : pt[e] * (dp[e] - dot);
        // z-loss
        for (int e = 0; e < E; e++)
            dz[e] += r->z_loss_coef * 2 * lse[t] / (double)T * exp(Z[t * E + e] - lse[t]);
        for (int e = 0; e < E; e++) {
            if (o->bg >= 0 && r->gate_bias) dW[o->bg + e] += dz[e];
            for (int64_t d = 0; d < D; d++) {
                dW[o->wg + d * E + e] += xt[d] * dz[e];
                dxt[d] += W[o->wg + d * E + e] * dz[e];
            }
        }
        // shared experts
        if (P->n_shared > 0) {
            double g = 1;
            if (P->shared_gate) {
                double zz = 0;
                for (int64_t d = 0; d < D; d++) zz += xt[d] * W[o->ws + d];
                g = ref_sig(zz);
            }
            memset(sh, 0, (size_t)D * sizeof(double));
            for (int s = 0; s < P->n_shared; s++) {
                ref_ffn f = ref_ffn_of(W, D, P->Fs, P->act, o->sw1, o->sb1, o->sw3, o->sb3, o->sw2,
                                       o->sb2, s);
                ref_ffn gv = ref_grad_view(dW, &f, W);
                ref_ffn_forward(&f, xt, ob, h1, h3);
                for (int64_t d = 0; d < D; d++) {
                    sh[d] += ob[d];
                    dob[d] = g * dyt[d];
                }
                ref_ffn_backward(&f, &gv, xt, h1, h3, dob, dxt);
            }
            if (P->shared_gate) {
                double dg = 0;
                for (int64_t d = 0; d < D; d++) dg += dyt[d] * sh[d];
                double dzg = dg * g * (1 - g);
                for (int64_t d = 0; d < D; d++) {
                    dW[o->ws + d] += dzg * xt[d];
                    dxt[d] += dzg * W[o->ws + d];
                }
            }
        }
    }
    free(Z);
    free(Pr);
    free(lse);
    free(h1);
    free(h3);
    free(ob);
    free(dob);
    free(sh);
}

void ref_dense_forward(const moe_layer_params *P, const ref_offsets *o, const double *W,
                       const double *x, int64_t T, double *y) {
    const int64_t D = P->router.D;
    double *h1 = moe_xcalloc((size_t)P->F, sizeof(double)),
           *h3 = moe_xcalloc((size_t)P->F, sizeof(double));
    ref_ffn f = ref_ffn_of(W, D, P->F, P->act, o->w1, o->b1, o->w3, o->b3, o->w2, o->b2, 0);
    for (int64_t t = 0; t < T; t++) ref_ffn_forward(&f, x + t * D, y + t * D, h1, h3);
    free(h1);
    free(h3);
}
