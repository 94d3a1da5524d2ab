// test_lora.c: LoRA adapters of the model (trainer/model/lora.h, docs/lora.md), one process, no
// MPI launch (the layouts: test_lora_dist.c and test_train_lora).
//  0. The expert kernel with adapters against a double reference and its central differences
//     (below, "the expert kernel").
//  1. Counting: over the EP ranks of EP = 1, 2, 4 the trainable tensors the model holds (each
//     routed expert's adapters once) equal moe_params_count's trainable, the frozen ones its
//     frozen, and rank 0's trainable floats its rank_trainable; the gradient and Adam families
//     hold the trainable tensors only (n_train < n_params, padding aside), and the full
//     fine-tuning state moe params compares with is the plain config's. With and without
//     lora.train_router / train_norms.
//     Cases: SwiGLU with a dense layer and a shared expert; GELU with biases, per-head qk-norm,
//     learned positions, tied head, gated shared experts; full qk-norm (OLMoE) with train_norms.
//  2. Step 0 is the base model: with B = 0 the loss equals the loss of the same config without
//     adapters, bit for bit (same seed: the base tensors are initialised identically).
//  3. Gradient check: central differences of the fp32 loss (CE + aux + z, top-2 routing with the
//     selection held fixed) w.r.t. sampled entries of every trainable tensor — attention, routed
//     and shared experts', dense FFN and router adapters, and the router / norms when trained —
//     against backward; A and B random so every path carries signal. The forward is fp32 only,
//     so the difference quotient is taken at two steps h (1e-3, 5e-4) and entries whose quotient
//     changes with h (a top-k selection flipped) are skipped (at most 5 %); tolerance
//     |fd − g| <= 3e-3 + 3e-2·|g|, as test_train_model's whole-model check. Frozen tensors
//     have no gradient (moe_model_grad_ptr NULL).
//  4. Frozen base: after 6 training steps (moe_train_step, lr 1e-2) every frozen tensor is bit
//     for bit what it was, every B moved, and the loss fell; steps 3..6 allocate nothing
//     (test-noalloc.c; skipped under a sanitizer).
#include "config.h"
#include "params.h"
#include "experts.h"
#include "train.h"
#include "test-noalloc.h"
#include "test-util.h"

#include <string.h>

static Moe__Config *make(const char *const *sets, int n, const char *const *more, int n_more) {
    Moe__Config *cfg = moe_config_new_default();
    for (int i = 0; i < n + n_more; i++) {
        const char *s = i < n ? sets[i] : more[i - n];
        if (moe_config_set(cfg, s)) {
            fprintf(stderr, "--set %s: %s\n", s, moe_last_error());
            exit(1);
        }
    }
    return cfg;
}

// SwiGLU, one dense layer then MoE layers with a shared expert; every adapter target.
static const char *const base_a[] = {
    "model.n_experts=8",   "model.top_k=2",          "model.expert_d_ff=24",
    "model.d_model=32",    "model.n_layers=3",       "model.n_heads=4",
    "model.n_kv_heads=2",  "model.d_ff=40",          "model.first_dense_layers=1",
    "model.n_shared_experts=1", "model.shared_expert_d_ff=16", "model.vocab_size=64",
    "train.seq_len=6",     "router.aux_loss_coef=0.05", "router.z_loss_coef=0.01"};
// GELU with biases, qk-norm, learned positions, tied head, gated shared experts, router bias.
static const char *const base_b[] = {
    "model.n_experts=4",          "model.top_k=2",
    "model.expert_d_ff=16",       "model.d_model=24",
    "model.n_layers=2",           "model.n_heads=2",
    "model.d_ff=32",              "model.dense_layers=[1]",
    "model.n_shared_experts=2",   "model.shared_expert_d_ff=8",
    "model.shared_expert_gate=true", "model.router_bias=true",
    "model.attn_qkv_bias=true",   "model.attn_out_bias=true",
    "model.ffn_bias=true",        "model.qk_norm=per_head",
    "model.positions=learned",    "model.max_seq_len=16",
    "model.tie_embeddings=true",  "model.activation=gelu",
    "model.vocab_size=50",        "train.seq_len=6",
    "router.aux_loss_coef=0.05",  "router.z_loss_coef=0.01"};
// OLMoE-like: full qk-norm (RMSNorm over all heads of q, of k), no shared experts.
static const char *const base_c[] = {
    "model.n_experts=4", "model.top_k=2", "model.expert_d_ff=16", "model.d_model=24",
    "model.n_layers=2", "model.n_heads=2", "model.qk_norm=full", "model.vocab_size=50",
    "model.first_dense_layers=0", "train.seq_len=6", "router.aux_loss_coef=0.05",
    "router.z_loss_coef=0.01"};
#define N_OF(a) ((int)(sizeof a / sizeof *a))

static const char *const lora_all[] = {
    "lora.rank=4", "lora.alpha=8",
    "lora.targets=[\"attention\",\"experts\",\"shared_experts\",\"dense_ffn\",\"router\"]"};
static const char *const lora_all_trained[] = {
    "lora.rank=3", "lora.alpha=6",
    "lora.targets=[\"attention\",\"experts\",\"shared_experts\",\"dense_ffn\",\"router\"]",
    "lora.train_router=true", "lora.train_norms=true"};
static const char *const lora_default[] = {"lora.rank=2", "lora.alpha=4"}; // attention
static const char *const lora_c[] = {"lora.rank=3", "lora.alpha=6",
                                     "lora.targets=[\"attention\",\"experts\"]",
                                     "lora.train_norms=true"};

// ---------------------------------------------------------------- 0. the expert kernel
// moe_experts_forward / _backward with adapters on W1, (W3,) W2 of 3 experts over uneven blocks
// (one empty), against a per-row reference in double with the merged weights W + s·A·B: the
// forward to 1e-5, and every gradient (A, B, the base W and b, dx) against central differences
// of the double reference's L = Σ out·dout (h = 1e-5), |g − fd| <= 1e-4·max(1, |fd|). Then the
// same backward with the base frozen (NULL gradients): dx and the adapters' gradients bitwise.

enum { KD = 8, KF = 12, KR = 3, KE = 3 };
static const int64_t koff[KE + 1] = {0, 4, 4, 9};

typedef struct {
    double *w[12]; // w1 b1 w3 b3 w2 b2 la1 lb1 la3 lb3 la2 lb2, (KE, ...) each
} kref;

static const int64_t kn[12] = {KD * KF, KF, KD * KF, KF, KF * KD, KD,
                               KD * KR, KR * KF, KD * KR, KR * KF, KF * KR, KR * KD};

static double kref_loss(const kref *k, int swiglu, float s, const float *x, const float *dout) {
    double L = 0, h1[KF], h3[KF], a[KF], W1[KD * KF], W3[KD * KF], W2[KF * KD];
    for (int e = 0; e < KE; e++) {
        double *const *w = k->w;
        for (int i = 0; i < KD; i++) // merged weights W + s·A·B of expert e
            for (int j = 0; j < KF; j++) {
                double m1 = 0, m3 = 0, m2 = 0;
                for (int q = 0; q < KR; q++) {
                    m1 += w[6][e * KD * KR + i * KR + q] * w[7][e * KR * KF + q * KF + j];
                    m3 += w[8][e * KD * KR + i * KR + q] * w[9][e * KR * KF + q * KF + j];
                    m2 += w[10][e * KF * KR + j * KR + q] * w[11][e * KR * KD + q * KD + i];
                }
                W1[i * KF + j] = w[0][e * KD * KF + i * KF + j] + s * m1;
                W3[i * KF + j] = w[2][e * KD * KF + i * KF + j] + s * m3;
                W2[j * KD + i] = w[4][e * KF * KD + j * KD + i] + s * m2;
            }
        for (int64_t r = koff[e]; r < koff[e + 1]; r++) {
            for (int j = 0; j < KF; j++) {
                h1[j] = w[1][e * KF + j], h3[j] = w[3][e * KF + j];
                for (int i = 0; i < KD; i++) {
                    h1[j] += x[r * KD + i] * W1[i * KF + j];
                    h3[j] += x[r * KD + i] * W3[i * KF + j];
                }
                const double u = h1[j];
                a[j] = swiglu ? u / (1 + exp(-u)) * h3[j]
                              : 0.5 * u * (1 + tanh(0.7978845608028654 * (u + 0.044715 * u * u * u)));
            }
            for (int i = 0; i < KD; i++) {
                double o = w[5][e * KD + i];
                for (int j = 0; j < KF; j++) o += a[j] * W2[j * KD + i];
                L += o * dout[r * KD + i];
            }
        }
    }
    return L;
}

static void kernel_check(int swiglu) {
    const char *name = swiglu ? "swiglu" : "gelu";
    const int64_t R = koff[KE];
    const moe_experts_params p = {KD, KF, KE, swiglu ? MOE_ACT_SWIGLU : MOE_ACT_GELU, 1, KR, 1.7f};
    uint64_t seed = 99;
    float *wf[12], *gf[12], *gz[12];
    kref k;
    for (int t = 0; t < 12; t++) {
        wf[t] = malloc((size_t)(KE * kn[t]) * sizeof(float));
        gf[t] = calloc((size_t)(KE * kn[t]), sizeof(float));
        gz[t] = calloc((size_t)(KE * kn[t]), sizeof(float));
        k.w[t] = malloc((size_t)(KE * kn[t]) * sizeof(double));
        for (int64_t i = 0; i < KE * kn[t]; i++)
            k.w[t][i] = wf[t][i] = (float)test_uniform(&seed, -0.5, 0.5);
    }
    float x[9 * KD], dout[9 * KD], out[9 * KD], dx[9 * KD], dx2[9 * KD];
    for (int i = 0; i < R * KD; i++) x[i] = (float)test_uniform(&seed, -1, 1);
    for (int i = 0; i < R * KD; i++) dout[i] = (float)test_uniform(&seed, -1, 1);
    const moe_expert_weights w = {wf[0], wf[1], wf[2], wf[3], wf[4], wf[5], NULL, NULL,
                                  wf[6], wf[7], wf[8], wf[9], wf[10], wf[11]};
    moe_expert_weights g = {gf[0], gf[1], gf[2], gf[3], gf[4], gf[5], NULL, NULL,
                            gf[6], gf[7], gf[8], gf[9], gf[10], gf[11]};
    float *save = malloc((size_t)(R * moe_experts_save_per_row(&p)) * sizeof(float));
    float *scr = malloc((size_t)(R * moe_experts_scratch_per_row(&p)) * sizeof(float));
    moe_experts_forward(&p, out, save, &w, koff, x);
    moe_experts_backward(&p, dx, &g, scr, &w, koff, x, save, dout);
    // forward: L of the kernel's out against the reference's
    double Lk = 0;
    for (int i = 0; i < R * KD; i++) Lk += (double)out[i] * dout[i];
    const double Lr = kref_loss(&k, swiglu, p.lora_scale, x, dout);
    CHECK(fabs(Lk - Lr) <= 1e-5 * (1 + fabs(Lr)), "kernel %s forward: L %.9g, reference %.9g",
          name, Lk, Lr);
    static const char *tn[12] = {"w1", "b1", "w3", "b3", "w2", "b2",
                                 "la1", "lb1", "la3", "lb3", "la2", "lb2"};
    int64_t checked = 0, bad = 0;
    double worst = 0;
    for (int t = 0; t < 12; t++) {
        if (!swiglu && (t == 2 || t == 3 || t == 8 || t == 9)) continue; // no W3 with GELU
        for (int64_t i = 0; i < KE * kn[t]; i++) {
            const int e = (int)(i / kn[t]);
            if (e == 1) continue; // the empty block: no gradient either way
            const double v = k.w[t][i], h = 1e-5;
            k.w[t][i] = v + h;
            const double lp = kref_loss(&k, swiglu, p.lora_scale, x, dout);
            k.w[t][i] = v - h;
            const double lm = kref_loss(&k, swiglu, p.lora_scale, x, dout);
            k.w[t][i] = v;
            const double fd = (lp - lm) / (2 * h), err = fabs(fd - gf[t][i]);
            const double tol = 1e-4 * (fabs(fd) > 1 ? fabs(fd) : 1);
            checked++;
            if (err > tol && bad++ < 5)
                printf("FAIL kernel %s d%s[%lld]: double FD %.9g, backward %.9g\n", name, tn[t],
                       (long long)i, fd, gf[t][i]);
            if (err / tol > worst) worst = err / tol;
        }
    }
    // dx by the same differences (on x)
    for (int i = 0; i < R * KD; i++) {
        const float v = x[i];
        double fd;
        float xp[9 * KD];
        memcpy(xp, x, sizeof xp);
        double l2[2];
        for (int sg = 0; sg < 2; sg++) { // x in double would need a double x: step in float
            xp[i] = v + (sg ? -1e-3f : 1e-3f);
            l2[sg] = kref_loss(&k, swiglu, p.lora_scale, xp, dout);
        }
        fd = (l2[0] - l2[1]) / (2 * (double)1e-3f);
        const double tol = 1e-3 * (fabs(fd) > 1 ? fabs(fd) : 1);
        checked++;
        if (fabs(fd - dx[i]) > tol && bad++ < 5)
            printf("FAIL kernel %s dx[%d]: FD %.9g, backward %.9g\n", name, i, fd, dx[i]);
    }
    // frozen base: NULL base gradients, the same dx and adapter gradients bit for bit
    moe_expert_weights gzv = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                              gz[6], gz[7], gz[8], gz[9], gz[10], gz[11]};
    moe_experts_backward(&p, dx2, &gzv, scr, &w, koff, x, save, dout);
    int same = !memcmp(dx, dx2, (size_t)(R * KD) * sizeof(float));
    for (int t = 6; t < 12; t++)
        same &= !memcmp(gf[t], gz[t], (size_t)(KE * kn[t]) * sizeof(float));
    printf("%s kernel %s: forward L %.9g vs double %.9g; %lld gradient entries against double "
           "central differences, %lld outside (worst %.2f of the tolerance); frozen base: dx and "
           "adapter gradients %s\n",
           bad == 0 && same ? "ok  " : "FAIL", name, Lk, Lr, (long long)checked, (long long)bad,
           worst, same ? "bitwise the same" : "DIFFER");
    CHECK(bad == 0, "kernel %s: %lld gradient entries off", name, (long long)bad);
    CHECK(same, "kernel %s: frozen-base backward differs", name);
    for (int t = 0; t < 12; t++) free(wf[t]), free(gf[t]), free(gz[t]), free(k.w[t]);
    free(save);
    free(scr);
}

// ---------------------------------------------------------------- 1. counting

static void counting(const char *name, Moe__Config *cfg) {
    for (int ep = 1; ep <= 4; ep *= 2) {
        if (cfg->model->n_experts % ep) continue;
        moe_params_report rep;
        OK(moe_params_count(cfg, ep, ep, &rep));
        int64_t trainable = 0, frozen = 0, rank0_train = 0;
        for (int r = 0; r < ep; r++) {
            moe_model_layout lay = {ep, r, ep, r, 0};
            moe_model *m;
            OK(moe_model_create(cfg, &lay, NULL, 0, &m));
            int64_t mine = 0, padded = 0;
            for (int i = 0; i < m->n_tensors; i++) {
                const moe_model_tensor *t = &m->tensors[i];
                const int count = t->expert >= 0 || r == 0; // dense tensors once
                if (t->goff >= 0) {
                    if (count) trainable += t->n;
                    mine += t->n;
                    padded += (t->n + 15) / 16 * 16;
                    CHECK(moe_model_grad_ptr(m, t->offset) == m->grads + t->goff,
                          "%s: grad_ptr of %s", name, t->name);
                } else {
                    if (count) frozen += t->n;
                    CHECK(moe_model_grad_ptr(m, t->offset) == NULL, "%s: %s is frozen", name,
                          t->name);
                }
            }
            if (r == 0) rank0_train = mine;
            CHECK(m->n_train >= mine && m->n_train <= padded + 16,
                  "%s ep %d: gradient family %lld floats for %lld trainable (%lld padded)", name,
                  ep, (long long)m->n_train, (long long)mine, (long long)padded);
            CHECK(m->n_train < m->n_params, "%s: n_train %lld, n_params %lld", name,
                  (long long)m->n_train, (long long)m->n_params);
            moe_model_free(m);
        }
        const int ok = trainable == rep.trainable && frozen == rep.frozen &&
                       rank0_train == rep.rank_trainable;
        printf("%s counting %s ep %d: model trainable %lld frozen %lld (rank 0 trainable %lld); "
               "moe params trainable %lld frozen %lld (per rank %lld)\n",
               ok ? "ok  " : "FAIL", name, ep, (long long)trainable, (long long)frozen,
               (long long)rank0_train, (long long)rep.trainable, (long long)rep.frozen,
               (long long)rep.rank_trainable);
        CHECK(ok, "%s ep %d: the model's trainable/frozen counts differ from moe params", name,
              ep);
        // what freezing saves is stated against full fine-tuning of the same base
        Moe__Config *full = moe_config_copy(cfg);
        full->lora->rank = 0, full->lora->n_targets = 0;
        full->lora->train_router = full->lora->train_norms = 0;
        moe_params_report fr;
        OK(moe_params_count(full, ep, ep, &fr));
        CHECK(rep.rank_full_state_bytes == fr.rank_grad_bytes + fr.rank_adam_bytes &&
                  rep.rank_grad_bytes + rep.rank_adam_bytes == 12 * rep.rank_trainable,
              "%s ep %d: full fine-tuning state %lld bytes, moe params of the plain config %lld",
              name, ep, (long long)rep.rank_full_state_bytes,
              (long long)(fr.rank_grad_bytes + fr.rank_adam_bytes));
        moe_config_free(full);
    }
}

// ---------------------------------------------------------------- helpers

static double loss_of(moe_model *m, const int32_t *tok) {
    moe_model_loss l;
    OK(moe_model_forward(m, tok, 1, 7, 0, 0, &l));
    return l.ce + l.aux + l.z;
}

static void tokens(int32_t *tok, int64_t n, int64_t V) {
    for (int64_t i = 0; i < n; i++) tok[i] = (int32_t)((i * 37 + 11) % V);
}

static int is_adapter(const moe_model_tensor *t) { return strstr(t->name, ".lora_") != NULL; }

// ---------------------------------------------------------------- 2. step 0 = base

static void step0(const char *name, const char *const *base, int nb, const char *const *lo,
                  int nl) {
    Moe__Config *c0 = make(base, nb, NULL, 0), *c1 = make(base, nb, lo, nl);
    moe_model_layout one = {1, 0, 1, 0, 0};
    moe_model *m0, *m1;
    OK(moe_model_create(c0, &one, NULL, 3, &m0));
    OK(moe_model_create(c1, &one, NULL, 3, &m1));
    int32_t tok[3 * 7];
    tokens(tok, 3 * (m0->S + 1), m0->V);
    const double l0 = loss_of(m0, tok), l1 = loss_of(m1, tok);
    printf("%s step 0 %s: base loss %.9g, with adapters %.9g\n", l0 == l1 ? "ok  " : "FAIL", name,
           l0, l1);
    CHECK(l0 == l1, "%s: loss with B = 0 adapters %.17g differs from the base model's %.17g", name,
          l1, l0);
    moe_model_free(m0);
    moe_model_free(m1);
    moe_config_free(c0);
    moe_config_free(c1);
}

// ---------------------------------------------------------------- 3. gradient check

static void gradcheck(const char *name, const char *const *base, int nb, const char *const *lo,
                      int nl) {
    Moe__Config *cfg = make(base, nb, lo, nl);
    moe_model_layout one = {1, 0, 1, 0, 0};
    moe_model *m;
    OK(moe_model_create(cfg, &one, NULL, 3, &m));
    uint64_t s = 12345;
    for (int i = 0; i < m->n_tensors; i++) { // O(1) signal everywhere, B != 0
        const moe_model_tensor *t = &m->tensors[i];
        for (int64_t k = 0; k < t->n; k++) {
            float *w = m->params + t->offset + k;
            const double u = test_uniform(&s, -0.5, 0.5);
            *w = is_adapter(t) ? (float)(0.6 * u) : *w * 5.0f + (float)(0.2 * u);
        }
    }
    int32_t tok[3 * 7];
    tokens(tok, 3 * (m->S + 1), m->V);
    moe_model_zero_grads(m);
    loss_of(m, tok);
    OK(moe_model_backward(m));
    float *g = malloc((size_t)m->n_train * sizeof(float));
    memcpy(g, m->grads, (size_t)m->n_train * sizeof(float));
    int64_t checked = 0, skipped = 0, bad = 0, adapters = 0;
    double worst = 0;
    const char *worst_name = "";
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const moe_model_tensor *t = &m->tensors[ti];
        if (t->goff < 0) continue;
        adapters += is_adapter(t);
        for (int k = 0; k < 8; k++) {
            const int64_t j = (int64_t)((k * 2654435761u + (unsigned)ti * 40503u) % (uint64_t)t->n);
            float *w = m->params + t->offset + j, w0 = *w;
            double fd[2];
            for (int hi = 0; hi < 2; hi++) {
                const float h = hi == 0 ? 1e-3f : 5e-4f;
                *w = w0 + h;
                const double lp = loss_of(m, tok);
                *w = w0 - h;
                const double lm = loss_of(m, tok);
                *w = w0;
                fd[hi] = (lp - lm) / (2.0 * h);
            }
            const double gi = g[t->goff + j], tol = 3e-3 + 3e-2 * fabs(gi);
            if (fabs(fd[0] - fd[1]) > tol) { // the quotient depends on h: a selection flipped
                skipped++;
                continue;
            }
            checked++;
            const double err = fabs(fd[1] - gi);
            if (err > tol) {
                bad++;
                printf("FAIL gradcheck %s %s (expert %d)[%lld]: finite difference %.6g, "
                       "backward %.6g\n",
                       name, t->name, t->expert, (long long)j, fd[1], gi);
            }
            if (err / tol > worst) worst = err / tol, worst_name = t->name;
        }
    }
    const int ok = bad == 0 && skipped * 20 <= checked + skipped && checked > 0;
    printf("%s gradcheck %s: %lld entries of %lld adapter tensors (+ router/norms when trained) "
           "checked, %lld skipped (selection flip), %lld outside |fd-g| <= 3e-3 + 3e-2|g| (worst "
           "%.2f of the tolerance, %s)\n",
           ok ? "ok  " : "FAIL", name, (long long)checked, (long long)adapters,
           (long long)skipped, (long long)bad, worst, worst_name);
    CHECK(ok, "%s: gradient check", name);
    free(g);
    moe_model_free(m);
    moe_config_free(cfg);
}

// ---------------------------------------------------------------- 4. frozen base

static void frozen(const char *name, const char *const *base, int nb, const char *const *lo,
                   int nl) {
    const char *tr[] = {"train.lr=0.01", "train.warmup_steps=0", "train.steps=6",
                        "train.global_batch=3", "train.grad_clip=1"};
    Moe__Config *cfg = make(base, nb, lo, nl);
    for (int i = 0; i < N_OF(tr); i++) OK(moe_config_set(cfg, tr[i]));
    moe_model_layout one = {1, 0, 1, 0, 0};
    moe_model *m;
    OK(moe_model_create(cfg, &one, NULL, 3, &m));
    float *before = malloc((size_t)m->n_params * sizeof(float));
    memcpy(before, m->params, (size_t)m->n_params * sizeof(float));
    moe_train_step_state *ss;
    OK(moe_train_step_create(cfg, NULL, m, &ss));
    int32_t tok[3 * 7];
    tokens(tok, 3 * (m->S + 1), m->V);
    double first = 0, last = 0;
    for (int it = 0; it < 6; it++) {
        moe_train_step_result r;
        test_counting = it >= 2; // after the first steps a step allocates nothing (STYLE.md)
        OK(moe_train_step(ss, tok, it, &r));
        test_counting = 0;
        if (it == 0) first = r.loss;
        last = r.loss;
    }
#ifndef MOE_NOALLOC_SKIP
    CHECK(test_allocs == 0, "%s: moe_train_step allocated %ld times in steps 3..6", name,
          test_allocs);
    test_allocs = 0;
#endif
    int64_t changed_frozen = 0, frozen_n = 0, b_still = 0, n_b = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const moe_model_tensor *t = &m->tensors[i];
        const int same = !memcmp(before + t->offset, m->params + t->offset,
                                 (size_t)t->n * sizeof(float));
        if (t->goff < 0) {
            frozen_n++;
            changed_frozen += !same;
            if (!same) printf("FAIL %s: frozen %s changed\n", name, t->name);
        } else if (strstr(t->name, ".lora_b")) {
            n_b++;
            b_still += same;
        }
    }
    const int ok = changed_frozen == 0 && b_still == 0 && n_b > 0 && last < first;
    printf("%s frozen %s: %lld frozen tensors bit-identical after 6 steps (%lld changed); %lld "
           "of %lld B tensors moved; loss %.6f -> %.6f\n",
           ok ? "ok  " : "FAIL", name, (long long)(frozen_n - changed_frozen),
           (long long)changed_frozen, (long long)(n_b - b_still), (long long)n_b, first, last);
    CHECK(ok, "%s: frozen base after training", name);
    moe_train_step_free(ss);
    free(before);
    moe_model_free(m);
    moe_config_free(cfg);
}

int main(void) {
    const struct {
        const char *name;
        const char *const *base, *const *lo;
        int nb, nl;
    } cases[] = {
        {"a/all", base_a, lora_all, N_OF(base_a), N_OF(lora_all)},
        {"a/all+router+norms", base_a, lora_all_trained, N_OF(base_a), N_OF(lora_all_trained)},
        {"b/all", base_b, lora_all, N_OF(base_b), N_OF(lora_all)},
        {"b/all+router+norms", base_b, lora_all_trained, N_OF(base_b), N_OF(lora_all_trained)},
        {"a/default", base_a, lora_default, N_OF(base_a), N_OF(lora_default)},
        {"c/qk-full+norms", base_c, lora_c, N_OF(base_c), N_OF(lora_c)},
    };
    kernel_check(1);
    kernel_check(0);
    for (int i = 0; i < N_OF(cases); i++) {
        Moe__Config *cfg = make(cases[i].base, cases[i].nb, cases[i].lo, cases[i].nl);
        counting(cases[i].name, cfg);
        moe_config_free(cfg);
    }
    for (int i = 0; i < N_OF(cases); i++)
        step0(cases[i].name, cases[i].base, cases[i].nb, cases[i].lo, cases[i].nl);
    for (int i = 0; i < N_OF(cases); i++)
        gradcheck(cases[i].name, cases[i].base, cases[i].nb, cases[i].lo, cases[i].nl);
    for (int i = 0; i < N_OF(cases); i++)
        frozen(cases[i].name, cases[i].base, cases[i].nb, cases[i].lo, cases[i].nl);
    return test_summary("test_lora");
}
