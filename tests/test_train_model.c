// test_train_model.c: the assembled model (trainer/model/model.h), no MPI launch.
//  1. Accounting equals allocation: for several trainable configs and EP in {1, 2, 4}, the
//     parameters the model allocates — dense tensors once, each routed expert once (summed over
//     the EP ranks), the balancing bias — equal moe_params_count's total, and one rank's share
//     equals its rank_params; every (layer, expert, name) is held by exactly one EP rank.
//  2. Initialisation is layout-independent: expert e's tensors at EP=4 are bitwise those at EP=1.
//  3. Whole-model gradient check: central differences of the fp32 loss (CE + aux + z) w.r.t. a
//     fixed sample of parameters of every group, against backward. Tolerance per sampled entry
//     |fd − g| <= 3e-3 + 3e-2·|g| (fp32 forward, h = 1e-3 on weights scaled to O(0.3)); entries
//     whose difference quotient changes with h (a top-k selection flipped) are skipped and
//     counted, at most 5% of them.
#include "config.h"
#include "params.h"
#include "train.h"

#include <math.h>
#include <string.h>

static int fails = 0;

static Moe__Config *make(const char *const *sets, int n) {
    Moe__Config *cfg = moe_config_new_default();
    for (int i = 0; i < n; i++)
        if (moe_config_set(cfg, sets[i])) {
            printf("FAIL --set %s: %s\n", sets[i], moe_last_error());
            exit(1);
        }
    return cfg;
}

static const char *const cfg_a[] = {
    "model.n_experts=8", "model.top_k=2",   "model.expert_d_ff=32", "model.d_model=32",
    "model.n_layers=3",  "model.n_heads=4", "model.d_ff=64",        "model.first_dense_layers=1"};
static const char *const cfg_b[] = {"model.n_experts=8",
                                    "model.top_k=2",
                                    "model.expert_d_ff=24",
                                    "model.d_model=32",
                                    "model.n_layers=4",
                                    "model.n_heads=4",
                                    "model.n_kv_heads=2",
                                    "model.d_ff=48",
                                    "model.dense_layers=[2]",
                                    "model.n_shared_experts=2",
                                    "model.shared_expert_d_ff=16",
                                    "model.shared_expert_gate=true",
                                    "model.router_bias=true",
                                    "model.attn_qkv_bias=true",
                                    "model.attn_out_bias=true",
                                    "model.ffn_bias=true",
                                    "model.qk_norm=per_head",
                                    "model.positions=learned",
                                    "model.max_seq_len=64",
                                    "model.tie_embeddings=true",
                                    "router.bias_update_rate=0.001",
                                    "model.activation=gelu",
                                    "model.vocab_size=100"};
// OLMoE's shape: q/k RMSNorm over the whole projections (qk_norm full), GQA, head_dim != D/H.
static const char *const cfg_c[] = {
    "model.n_experts=4",  "model.top_k=2",           "model.expert_d_ff=24", "model.d_model=32",
    "model.n_layers=2",   "model.n_heads=4",         "model.n_kv_heads=2",   "model.head_dim=12",
    "model.qk_norm=full", "router.renormalize=false"};

static void accounting(const char *name, const char *const *sets, int n, Moe__Config *given) {
    Moe__Config *cfg = given ? given : make(sets, n);
    for (int ep = 1; ep <= 4; ep *= 2) {
        moe_params_report rep;
        if (moe_params_count(cfg, ep, ep, &rep)) {
            printf("FAIL %s: moe_params_count: %s\n", name, moe_last_error());
            fails++;
            continue;
        }
        int64_t dense = 0, experts = 0, bias = 0, rank0 = 0;
        int E = cfg->model->n_experts;
        // seen[(tensor index within an expert family) * E + e] counts holders.
        int *seen = NULL;
        int n_fam = 0;
        for (int r = 0; r < ep; r++) {
            moe_model_layout lay = {ep, r, ep, r, 0};
            moe_model *m;
            if (moe_model_create(cfg, &lay, NULL, 0, &m)) {
                printf("FAIL %s: create: %s\n", name, moe_last_error());
                exit(1);
            }
            int64_t mine = 0;
            int fam = 0;
            if (!seen) {
                for (int i = 0; i < m->n_tensors; i++) n_fam += m->tensors[i].expert >= 0;
                n_fam = n_fam / m->El;
                seen = moe_xcalloc((size_t)(n_fam * E + 1), sizeof(int));
            }
            for (int i = 0; i < m->n_tensors; i++) {
                const moe_model_tensor *t = &m->tensors[i];
                mine += t->n;
                if (t->expert < 0) {
                    if (r == 0) dense += t->n;
                } else {
                    experts += t->n;
                    seen[(fam / m->El) * E + t->expert]++;
                    fam++;
                }
            }
            if (cfg->router->bias_update_rate > 0) {
                mine += (int64_t)m->n_moe * m->E;
                if (r == 0) bias += (int64_t)m->n_moe * m->E;
            }
            if (r == 0) rank0 = mine;
            moe_model_free(m);
        }
        int64_t got = dense + experts + bias;
        int once = 1;
        for (int i = 0; i < n_fam * E; i++) once &= seen[i] == 1;
        int ok = got == rep.total && rank0 == rep.rank_params && once;
        printf(
            "%s accounting %s ep %d: allocated %lld (dense %lld + experts %lld + bias %lld), "
            "moe_params_count total %lld; rank 0 holds %lld, report %lld; each expert once: %s\n",
            ok ? "ok  " : "FAIL", name, ep, (long long)got, (long long)dense, (long long)experts,
            (long long)bias, (long long)rep.total, (long long)rank0, (long long)rep.rank_params,
            once ? "yes" : "NO");
        fails += !ok;
        free(seen);
    }
    moe_config_free(cfg);
}

// Expert e's tensors at EP=4 (rank e / El) equal those at EP=1, bitwise; dense ones too.
static void init_layout(void) {
    Moe__Config *cfg = make(cfg_b, (int)(sizeof cfg_b / sizeof *cfg_b));
    moe_model_layout one = {1, 0, 1, 0, 0};
    moe_model *m1;
    MOE_ASSERT(moe_model_create(cfg, &one, NULL, 0, &m1) == MOE_OK);
    int64_t compared = 0, bad = 0;
    for (int r = 0; r < 4; r++) {
        moe_model_layout lay = {4, r, 4, r, 0};
        moe_model *m;
        MOE_ASSERT(moe_model_create(cfg, &lay, NULL, 0, &m) == MOE_OK);
        for (int i = 0; i < m->n_tensors; i++) {
            const moe_model_tensor *t = &m->tensors[i];
            for (int j = 0; j < m1->n_tensors; j++) {
                const moe_model_tensor *u = &m1->tensors[j];
                if (strcmp(t->name, u->name) || t->layer != u->layer || t->expert != u->expert)
                    continue;
                compared++;
                bad += memcmp(m->params + t->offset, m1->params + u->offset,
                              (size_t)t->n * sizeof(float)) != 0;
            }
        }
        moe_model_free(m);
    }
    // Every EP=1 tensor must have been compared: dense ones 4 times (once per rank), expert ones once.
    int64_t want = 0;
    for (int j = 0; j < m1->n_tensors; j++) want += m1->tensors[j].expert < 0 ? 4 : 1;
    int ok = bad == 0 && compared == want;
    printf("%s init: %lld tensor copies at EP=4 compared with EP=1 (expected %lld), %lld differ\n",
           ok ? "ok  " : "FAIL", (long long)compared, (long long)want, (long long)bad);
    fails += !ok;
    moe_model_free(m1);
    moe_config_free(cfg);
}

// ---------------------------------------------------------------- gradient check

static double total_loss(moe_model *m, const int32_t *tok) {
    moe_model_loss l;
    MOE_ASSERT(moe_model_forward(m, tok, 1, 7, 0, 0, &l) == MOE_OK);
    return l.ce + l.aux + l.z;
}

static void gradcheck(const char *name, const char *const *sets, int n) {
    Moe__Config *cfg = make(sets, n);
    const char *extra[] = {"train.seq_len=6", "router.aux_loss_coef=0.05",
                           "router.z_loss_coef=0.01"};
    for (int i = 0; i < 3; i++) MOE_ASSERT(moe_config_set(cfg, extra[i]) == MOE_OK);
    moe_model_layout one = {1, 0, 1, 0, 0};
    moe_model *m;
    if (moe_model_create(cfg, &one, NULL, 3, &m)) {
        printf("FAIL gradcheck %s: %s\n", name, moe_last_error());
        fails++;
        return;
    }
    // Larger weights than the 0.02 init so every path carries an O(1) signal.
    uint64_t s = 12345;
    for (int64_t i = 0; i < m->n_params; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(s >> 11) / 9007199254740992.0 - 0.5;
        m->params[i] = m->params[i] * 5.0f + (float)(0.2 * u);
    }
    for (int i = 0; i < m->n_moe * m->E; i++) m->balance_bias[i] = 0.01f * (float)(i % 3);
    const int64_t S = m->S;
    int32_t tok[3 * 7];
    for (int i = 0; i < 3 * (S + 1); i++) tok[i] = (int32_t)((i * 37 + 11) % m->V);
    moe_model_zero_grads(m);
    total_loss(m, tok);
    MOE_ASSERT(moe_model_backward(m) == MOE_OK);
    float *g = moe_xcalloc((size_t)m->n_params, sizeof(float));
    memcpy(g, m->grads, (size_t)m->n_params * sizeof(float));
    int64_t checked = 0, skipped = 0, bad = 0;
    double worst = 0;
    const char *worst_name = "";
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const moe_model_tensor *t = &m->tensors[ti];
        for (int k = 0; k < 3; k++) {
            int64_t i =
                t->offset + (int64_t)((k * 2654435761u + (unsigned)ti * 40503u) % (uint64_t)t->n);
            float w0 = m->params[i];
            double fd[2];
            for (int hi = 0; hi < 2; hi++) {
                float h = hi == 0 ? 1e-3f : 5e-4f;
                m->params[i] = w0 + h;
                double lp = total_loss(m, tok);
                m->params[i] = w0 - h;
                double lm = total_loss(m, tok);
                m->params[i] = w0;
                fd[hi] = (lp - lm) / (2.0 * h);
            }
            const double gi = g[i], tol = 3e-3 + 3e-2 * fabs(gi);
            if (fabs(fd[0] - fd[1]) > tol) { // the quotient depends on h: a selection flippedped
                skipped++;
                continue;
            }
            checked++;
            double err = fabs(fd[1] - gi);
            if (err > tol) {
                bad++;
                printf("FAIL gradcheck %s %s[%lld]: finite difference %.6g, backward %.6g\n", name,
                       t->name, (long long)(i - t->offset), fd[1], gi);
            }
            if (err / (tol) > worst) worst = err / tol, worst_name = t->name;
        }
    }
    int ok = bad == 0 && skipped * 20 <= checked + skipped;
    printf("%s gradcheck %s: %lld entries of %d tensors checked, %lld skipped (selection flip), "
           "%lld outside |fd-g| <= 3e-3 + 3e-2|g| (worst %.2f of the tolerance, %s)\n",
           ok ? "ok  " : "FAIL", name, (long long)checked, m->n_tensors, (long long)skipped,
           (long long)bad, worst, worst_name);
    fails += !ok;
    free(g);
    moe_model_free(m);
    moe_config_free(cfg);
}

int main(int argc, char **argv) {
    accounting("a", cfg_a, (int)(sizeof cfg_a / sizeof *cfg_a), NULL);
    accounting("b", cfg_b, (int)(sizeof cfg_b / sizeof *cfg_b), NULL);
    accounting("c", cfg_c, (int)(sizeof cfg_c / sizeof *cfg_c), NULL);
    for (int i = 1; i < argc; i++) { // example configs
        Moe__Config *cfg;
        if (moe_config_load_with(argv[i], NULL, 0, 0, &cfg)) {
            printf("FAIL %s: %s\n", argv[i], moe_last_error());
            fails++;
            continue;
        }
        accounting(argv[i], NULL, 0, cfg);
    }
    init_layout();
    gradcheck("a (swiglu, rope, untied)", cfg_a, (int)(sizeof cfg_a / sizeof *cfg_a));
    gradcheck("b (gelu, biases, shared+gate, qk-norm, learned pos, tied)", cfg_b,
              (int)(sizeof cfg_b / sizeof *cfg_b));
    gradcheck("c (qk-norm full, GQA, head_dim 12, no renormalisation)", cfg_c,
              (int)(sizeof cfg_c / sizeof *cfg_c));
    if (fails) {
        printf("test_train_model: %d check(s) FAILED\n", fails);
        return 1;
    }
    printf("test_train_model: all checks passed\n");
    return 0;
}
