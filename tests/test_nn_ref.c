// test_nn_ref.c: double-precision loop references of the dense kernels and the finite-difference
// checker (see test_nn_ref.h). Written from the formulas in trainer/model/nn.h, not from the kernels.
#include "test_nn_ref.h"
#include "test-util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void nnref_fill(uint64_t *s, float *f, double *d, int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) {
        f[i] = (float)test_uniform(s, lo, hi);
        if (d) d[i] = f[i];
    }
}

double *nnref_dup(const float *f, int64_t n) {
    double *d = moe_xcalloc((size_t)(n > 0 ? n : 1), sizeof(double));
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    return d;
}

double nnref_dot(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void nnref_embed(double *out, const int32_t *tok, const double *wte, int64_t T, int64_t D) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t d = 0; d < D; d++) out[t * D + d] = wte[(int64_t)tok[t] * D + d];
}

void nnref_rmsnorm(double *out, const double *x, const double *w, int64_t N, int64_t C,
                   double eps) {
    for (int64_t n = 0; n < N; n++) {
        double ms = 0;
        for (int64_t c = 0; c < C; c++) ms += x[n * C + c] * x[n * C + c];
        ms /= (double)C;
        for (int64_t c = 0; c < C; c++) out[n * C + c] = x[n * C + c] / sqrt(ms + eps) * w[c];
    }
}

void nnref_layernorm(double *out, const double *x, const double *w, const double *b, int64_t N,
                     int64_t C, double eps) {
    for (int64_t n = 0; n < N; n++) {
        double mu = 0, var = 0;
        for (int64_t c = 0; c < C; c++) mu += x[n * C + c];
        mu /= (double)C;
        for (int64_t c = 0; c < C; c++) var += (x[n * C + c] - mu) * (x[n * C + c] - mu);
        var /= (double)C;
        for (int64_t c = 0; c < C; c++)
            out[n * C + c] = (x[n * C + c] - mu) / sqrt(var + eps) * w[c] + b[c];
    }
}

void nnref_linear(double *out, const double *x, const double *w, const double *b, int64_t T,
                  int64_t n_in, int64_t n_out) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < n_out; o++) {
            double s = b ? b[o] : 0;
            for (int64_t i = 0; i < n_in; i++) s += x[t * n_in + i] * w[i * n_out + o];
            out[t * n_out + o] = s;
        }
}

void nnref_rope(double *out, const double *x, int64_t B, int64_t S, int64_t nH, int64_t Dh,
                double theta) {
    const int64_t half = Dh / 2;
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++)
            for (int64_t h = 0; h < nH; h++) {
                const double *xi = x + ((b * S + s) * nH + h) * Dh;
                double *yo = out + ((b * S + s) * nH + h) * Dh;
                for (int64_t i = 0; i < half; i++) {
                    double a = (double)s / pow(theta, (double)(2 * i) / (double)Dh);
                    yo[i] = xi[i] * cos(a) - xi[i + half] * sin(a);
                    yo[i + half] = xi[i] * sin(a) + xi[i + half] * cos(a);
                }
            }
}

void nnref_attention(double *out, const double *q, const double *k, const double *v, int64_t B,
                     int64_t S, int64_t H, int64_t Hkv, int64_t Dh) {
    double *sc = moe_xcalloc((size_t)S, sizeof(double));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t g = h / (H / Hkv);
            for (int64_t i = 0; i < S; i++) {
                const double *qi = q + ((b * S + i) * H + h) * Dh;
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j <= i; j++) {
                    const double *kj = k + ((b * S + j) * Hkv + g) * Dh;
                    sc[j] = nnref_dot(qi, kj, Dh) / sqrt((double)Dh);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int64_t j = 0; j <= i; j++) sum += (sc[j] = exp(sc[j] - mx));
                double *oi = out + ((b * S + i) * H + h) * Dh;
                for (int64_t d = 0; d < Dh; d++) {
                    double s = 0;
                    for (int64_t j = 0; j <= i; j++)
                        s += sc[j] / sum * v[((b * S + j) * Hkv + g) * Dh + d];
                    oi[d] = s;
                }
            }
        }
    free(sc);
}

double nnref_crossentropy(const double *logits, const int32_t *tgt, int64_t T, int64_t V) {
    double total = 0;
    for (int64_t t = 0; t < T; t++) {
        const double *x = logits + t * V;
        double mx = x[0], s = 0;
        for (int64_t j = 1; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        for (int64_t j = 0; j < V; j++) s += exp(x[j] - mx);
        total += mx + log(s) - x[tgt[t]];
    }
    return total / (double)T;
}

void nnref_swiglu(double *y, const double *x, const double *w1, const double *w3, const double *w2,
                  int64_t T, int64_t D, int64_t F) {
    for (int64_t t = 0; t < T; t++) {
        for (int64_t d = 0; d < D; d++) y[t * D + d] = 0;
        for (int64_t f = 0; f < F; f++) {
            double a = 0, c = 0;
            for (int64_t d = 0; d < D; d++) {
                a += x[t * D + d] * w1[d * F + f];
                c += x[t * D + d] * w3[d * F + f];
            }
            double hid = a / (1 + exp(-a)) * c;
            for (int64_t d = 0; d < D; d++) y[t * D + d] += hid * w2[f * D + d];
        }
    }
}

int nnref_fd_check(const char *what, double (*loss)(void *), void *ctx, nnref_param *ps, int np,
                   double h, double atol, double rtol, int64_t max_entries) {
    int fails = 0;
    for (int k = 0; k < np; k++) {
        nnref_param *p = &ps[k];
        int64_t stride = 1;
        if (max_entries > 0 && p->n > max_entries) stride = (p->n + max_entries - 1) / max_entries;
        double worst = -1, w_got = 0, w_fd = 0, maxfd = 0;
        int64_t w_i = -1, bad = 0, checked = 0;
        for (int64_t i = 0; i < p->n; i += stride) {
            const double save = p->p[i];
            p->p[i] = save + h;
            const double lp = loss(ctx);
            p->p[i] = save - h;
            const double lm = loss(ctx);
            p->p[i] = save;
            const double fd = (lp - lm) / (2 * h);
            const double got = (double)p->grad[i] - (p->grad0 ? (double)p->grad0[i] : 0.0);
            const double err = fabs(got - fd), lim = atol + rtol * fabs(fd);
            if (err > lim) bad++;
            if (err / lim > worst) worst = err / lim, w_i = i, w_got = got, w_fd = fd;
            if (fabs(fd) > maxfd) maxfd = fabs(fd);
            checked++;
        }
        printf("%s %-10s %s: %lld entries, max |fd| %.3g, worst [%lld] expected %.8g got %.8g "
               "(err/limit %.3g)\n",
               bad ? "FAIL" : "ok  ", what, p->name, (long long)checked, maxfd, (long long)w_i,
               w_fd, w_got, worst);
        // A gradient that is identically zero checks nothing: that is a broken test.
        if (maxfd == 0) {
            printf("FAIL %s %s: finite differences are all zero\n", what, p->name);
            bad++;
        }
        fails += bad > 0;
    }
    return fails;
}

int nnref_check(const char *what, const float *got, const double *want, int64_t n, double atol,
                double rtol) {
    double worst = -1;
    int64_t wi = 0, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]), lim = atol + rtol * fabs(want[i]);
        double ratio = lim > 0 ? err / lim : (err == 0 ? 0.0 : INFINITY); // limit 0: bit-equal
        if (!(err <= lim)) bad++;
        if (!(ratio <= worst)) worst = ratio, wi = i;
    }
    printf("%s %s: %lld values, worst [%lld] expected %.8g got %.8g (err/limit %.3g)\n",
           bad ? "FAIL" : "ok  ", what, (long long)n, (long long)wi, n ? want[wi] : 0.0,
           n ? (double)got[wi] : 0.0, worst);
    return bad > 0;
}
