// test_upcycle.c: upcycling (trainer/upcycle.h) in one process — the upcycled model's logits
// equal the dense model's at step 0 (noise 0: whole copies with a random router, g slices with
// the zero router, top-k = several copies; SwiGLU and GELU, FFN biases, a layer that stays
// dense), every expert tensor is the slice the manual names, noise changes the function, and the
// config refusals. The command end to end (checkpoints, eval at np 1 and 2, training on) is
// tests/test_upcycle_cli.sh.
#include "config.h"
#include "model.h"
#include "test-util.h"
#include "upcycle.h"

#include <string.h>

static Moe__Config *dense_config(const char *const *extra, int n_extra) {
    Moe__Config *c = moe_config_new_default();
    const char *sets[] = {"model.vocab_size=256", "model.d_model=32", "model.n_layers=3",
                          "model.n_heads=4",      "model.d_ff=64",    "model.n_experts=0",
                          "train.seq_len=16",     "train.global_batch=2", "train.seed=5"};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) OK(moe_config_set(c, sets[i]));
    for (int i = 0; i < n_extra; i++) OK(moe_config_set(c, extra[i]));
    return c;
}

// Dense params: the model's init, biases made nonzero (the b2/g rule must show).
static void perturb_biases(moe_model *m) {
    uint64_t s = 99;
    for (int i = 0; i < m->n_tensors; i++) {
        const moe_model_tensor *t = &m->tensors[i];
        const char *x = strrchr(t->name, '.');
        if (x && (!strcmp(x, ".b1") || !strcmp(x, ".b2") || !strcmp(x, ".b3")))
            for (int64_t j = 0; j < t->n; j++)
                m->params[t->offset + j] = (float)test_uniform(&s, -0.1, 0.1);
    }
}

// Max |a − b| / max |b| over the logits of one forward of both models on the same tokens.
static double logits_diff(moe_model *a, moe_model *b) {
    int32_t tok[2 * 17];
    uint64_t s = 7;
    for (int i = 0; i < 2 * 17; i++) tok[i] = (int32_t)(test_rng(&s) % 256);
    moe_model_loss la, lb;
    OK(moe_model_forward(a, tok, 0, 0, 0, 0, &la));
    OK(moe_model_forward(b, tok, 0, 0, 0, 0, &lb));
    const float *x = moe_model_logits(a), *y = moe_model_logits(b);
    double mx = 0, md = 0;
    for (int64_t i = 0; i < a->T * a->V; i++) {
        mx = fmax(mx, fabs(y[i]));
        md = fmax(md, fabs((double)x[i] - y[i]));
    }
    return md / mx;
}

static const moe_model_tensor *find(const moe_model *m, const char *name, int expert) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name) && m->tensors[i].expert == expert)
            return &m->tensors[i];
    return NULL;
}

static void check_case(const char *what, const char *const *extra, int n_extra,
                       moe_upcycle_params p, const char *const *sets, int n_sets, double tol) {
    Moe__Config *dc = dense_config(extra, n_extra), *mc = NULL;
    moe_model_layout one = moe_model_layout_of(NULL);
    moe_model *dm = NULL, *mm = NULL;
    OK(moe_model_create(dc, &one, NULL, 2, &dm));
    perturb_biases(dm);
    OK(moe_upcycle_config(dc, &p, sets, n_sets, &mc));
    OK(moe_model_create(mc, &one, NULL, 2, &mm));
    OK(moe_upcycle_fill(dm, mm, &p));
    const double d = logits_diff(dm, mm);
    if (p.noise == 0)
        CHECK(d <= tol, "%s: upcycled logits differ from the dense model's by %.3g (max rel)",
              what, d);
    else
        CHECK(d > 1e-3, "%s: noise %g left the logits within %.3g of the dense model's", what,
              p.noise, d);
    // Expert e of layer 1 holds slice e mod g: W1 columns, W2 rows, b2/g.
    const int g = p.granularity;
    const int64_t D = dm->D, F = dm->F, Fe = F / g;
    const moe_model_tensor *w1 = find(dm, "layers.1.ffn.w1", -1), *w2 = find(dm, "layers.1.ffn.w2", -1);
    for (int e = 0; e < mm->E && p.noise == 0; e++) {
        const int j = e % g;
        const moe_model_tensor *u1 = find(mm, "layers.1.experts.w1", e),
                               *u2 = find(mm, "layers.1.experts.w2", e);
        MOE_ASSERT(w1 && w2 && u1 && u2);
        int same = 1;
        for (int64_t r = 0; r < D; r++)
            for (int64_t c = 0; c < Fe; c++)
                same &= mm->params[u1->offset + r * Fe + c] == dm->params[w1->offset + r * F + j * Fe + c];
        same &= !memcmp(mm->params + u2->offset, dm->params + w2->offset + j * Fe * D,
                        (size_t)(Fe * D) * sizeof(float));
        const moe_model_tensor *b2 = find(dm, "layers.1.ffn.b2", -1),
                               *c2 = find(mm, "layers.1.experts.b2", e);
        for (int64_t i = 0; b2 && c2 && i < D; i++)
            same &= mm->params[c2->offset + i] == dm->params[b2->offset + i] / (float)g;
        CHECK(same, "%s: expert %d is not slice %d of the dense FFN", what, e, j);
    }
    printf("%-52s logits max rel diff %.2e\n", what, d);
    moe_model_free(dm);
    moe_model_free(mm);
    moe_config_free(dc);
    moe_config_free(mc);
}

static void check_refused(const char *what, moe_upcycle_params p, const char *const *extra,
                          int n_extra, const char *const *sets, int n_sets, const char *want) {
    Moe__Config *dc = dense_config(extra, n_extra), *mc = NULL;
    moe_status st = moe_upcycle_config(dc, &p, sets, n_sets, &mc);
    CHECK(st == MOE_EINVAL && strstr(moe_last_error(), want),
          "%s: want MOE_EINVAL with '%s', got %s: %s", what, want, moe_status_str(st),
          moe_last_error());
    moe_config_free(mc);
    moe_config_free(dc);
}

int main(void) {
    const moe_upcycle_params g1k2 = {4, 2, 1, 0, 11}, g1k1 = {8, 1, 1, 0, 11},
                             g2k2 = {4, 2, 2, 0, 11}, g2k4 = {8, 4, 2, 0, 11},
                             g4k4 = {8, 4, 4, 0, 11}, noisy = {4, 2, 1, 0.1, 11};
    const char *bias[] = {"model.ffn_bias=true"};
    const char *gelu[] = {"model.activation=gelu", "model.ffn_bias=true"};
    const char *keep0[] = {"model.first_dense_layers=1"};
    check_case("copies, top-2 of 4, random router", NULL, 0, g1k2, NULL, 0, 1e-5);
    check_case("copies, top-1 of 8", NULL, 0, g1k1, NULL, 0, 1e-5);
    check_case("2 slices, top-2 of 4, zero router", NULL, 0, g2k2, NULL, 0, 1e-5);
    check_case("2 slices, top-4 of 8 (two copies each)", NULL, 0, g2k4, NULL, 0, 1e-5);
    check_case("4 slices, top-4 of 8, FFN biases", bias, 1, g4k4, NULL, 0, 1e-5);
    check_case("2 slices, GELU with biases", gelu, 2, g2k2, NULL, 0, 1e-5);
    check_case("copies, layer 0 stays dense", NULL, 0, g1k2, keep0, 1, 1e-5);
    check_case("noise 0.1", NULL, 0, noisy, NULL, 0, 0);
    const char *moe[] = {"model.n_experts=4"};
    const char *shared[] = {"model.n_shared_experts=1"};
    check_refused("a MoE source", g1k2, moe, 1, NULL, 0, "already a MoE model");
    check_refused("granularity not dividing E", (moe_upcycle_params){6, 4, 4, 0, 1}, NULL, 0, NULL,
                  0, "multiple of the granularity");
    check_refused("granularity not dividing d_ff", (moe_upcycle_params){6, 3, 3, 0, 1}, NULL, 0,
                  NULL, 0, "does not divide the dense FFN width");
    check_refused("top-k not a multiple of g", (moe_upcycle_params){8, 3, 2, 0, 1}, NULL, 0, NULL, 0,
                  "multiple of the granularity 2");
    check_refused("top-k above E", (moe_upcycle_params){4, 5, 1, 0, 1}, NULL, 0, NULL, 0,
                  "must be in 1..4");
    check_refused("negative noise", (moe_upcycle_params){4, 2, 1, -1, 1}, NULL, 0, NULL, 0,
                  "--noise");
    check_refused("shared experts", g1k2, NULL, 0, shared, 1, "n_shared_experts");
    return test_summary("test_upcycle");
}
