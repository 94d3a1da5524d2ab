// test_lora.c: LoRA adapters of the model (trainer/model/lora.h, docs/lora.md), one process, no
// MPI launch (the layout checks are test_lora_dist.c).
//  1. Counting: over the EP ranks of EP = 1, 2, 4 the trainable tensors the model holds (each
//     routed expert's adapters once) equal moe_params_count's trainable, the frozen ones its
//     frozen, and rank 0's trainable floats its rank_trainable; the gradient and Adam families
//     hold the trainable tensors only (n_train < n_params, padding aside). With and without
//     lora.train_router / train_norms.
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
//     for bit what it was, every B moved, and the loss fell.
#include "config.h"
#include "params.h"
#include "train.h"
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
#define N_OF(a) ((int)(sizeof a / sizeof *a))

static const char *const lora_all[] = {
    "lora.rank=4", "lora.alpha=8",
    "lora.targets=[\"attention\",\"experts\",\"shared_experts\",\"dense_ffn\",\"router\"]"};
static const char *const lora_all_trained[] = {
    "lora.rank=3", "lora.alpha=6",
    "lora.targets=[\"attention\",\"experts\",\"shared_experts\",\"dense_ffn\",\"router\"]",
    "lora.train_router=true", "lora.train_norms=true"};
static const char *const lora_default[] = {"lora.rank=2", "lora.alpha=4"}; // attention

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
        OK(moe_train_step(ss, tok, it, &r));
        if (it == 0) first = r.loss;
        last = r.loss;
    }
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
    };
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
