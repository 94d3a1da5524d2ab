// upcycle.c: a dense checkpoint's FFNs copied into experts (upcycle.h is the manual). One
// process: both models are parameter-only tables with every expert local.
#include "upcycle.h"

#include "checkpoint.h"
#include "config.h"
#include "nn.h"
#include "train.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int64_t dense_ff(const Moe__ModelConfig *mc) {
    return mc->d_ff > 0 ? mc->d_ff : 4 * mc->d_model;
}

moe_status moe_upcycle_config(const Moe__Config *dense, const moe_upcycle_params *p,
                              const char *const *sets, int n_sets, Moe__Config **out) {
    *out = NULL;
    const Moe__ModelConfig *dm = dense->model;
    const int E = p->experts, g = p->granularity, k = p->top_k > 0 ? p->top_k : g;
    const int64_t F = dense_ff(dm);
    if (dm->n_experts > 0)
        return moe_set_error(MOE_EINVAL,
                             "the checkpoint is already a MoE model (model.n_experts = %d): "
                             "upcycling starts from a dense checkpoint",
                             dm->n_experts);
    if (g < 1 || E < 1 || E % g)
        return moe_set_error(MOE_EINVAL,
                             "--experts %d --granularity %d: the experts must be a multiple of "
                             "the granularity (each expert is one of g slices of the FFN)",
                             E, g);
    if (F % g)
        return moe_set_error(MOE_EINVAL,
                             "--granularity %d does not divide the dense FFN width d_ff = %lld; "
                             "use a divisor of %lld",
                             g, (long long)F, (long long)F);
    if (k < 1 || k > E || k % g)
        return moe_set_error(MOE_EINVAL,
                             "--top-k %d: must be in 1..%d (the experts) and a multiple of the "
                             "granularity %d, so that each token sums whole copies of the FFN",
                             k, E, g);
    if (!(p->noise >= 0) || !isfinite(p->noise))
        return moe_set_error(MOE_EINVAL, "--noise %g: must be a finite number >= 0", p->noise);
    Moe__Config *c = moe_config_copy(dense);
    char own[8][96];
    snprintf(own[0], sizeof own[0], "model.n_experts=%d", E);
    snprintf(own[1], sizeof own[1], "model.top_k=%d", k);
    snprintf(own[2], sizeof own[2], "model.expert_d_ff=%lld", (long long)(F / g));
    snprintf(own[3], sizeof own[3], "model.d_ff=%lld", (long long)F); // dense layers keep it
    snprintf(own[4], sizeof own[4], "router.routed_scaling=%d", g);
    snprintf(own[5], sizeof own[5], "router.renormalize=true");
    snprintf(own[6], sizeof own[6], "router.capacity_factor=0");
    snprintf(own[7], sizeof own[7], "parallel.ep_size=1");
    moe_status st = MOE_OK;
    for (int i = 0; i < 8 && !st; i++) st = moe_config_set(c, own[i]);
    // softmax token choice: the router the function-preservation argument is about
    if (!st) st = moe_config_set(c, "router.scoring=softmax");
    if (!st) st = moe_config_set(c, "router.strategy=token_choice");
    for (int i = 0; i < n_sets && !st; i++) st = moe_config_set(c, sets[i]);
    if (!st && c->model->n_shared_experts > 0)
        st = moe_set_error(MOE_EINVAL,
                           "model.n_shared_experts = %d: upcycling fills the routed experts "
                           "only; leave it at 0",
                           c->model->n_shared_experts);
    if (!st && (c->model->n_experts != E || c->model->expert_d_ff != F / g))
        st = moe_set_error(MOE_EINVAL,
                           "--set changed model.n_experts or model.expert_d_ff; use --experts "
                           "and --granularity");
    if (!st) st = moe_config_validate(c, 0);
    if (!st) st = moe_model_check(c);
    if (st) {
        moe_config_free(c);
        return st;
    }
    *out = c;
    return MOE_OK;
}

// The tensor of m called name, or NULL.
static const moe_model_tensor *find(const moe_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

// Expert tensor t ("layers.L.experts.X") from the dense FFN "layers.L.ffn.X", slice j of g.
static moe_status fill_expert(const moe_model *dm, moe_model *mm, const moe_model_tensor *t,
                              const moe_upcycle_params *p, uint64_t seed) {
    const char *x = strrchr(t->name, '.') + 1; // w1, w3, w2, b1, b3, b2
    char src_name[64];
    snprintf(src_name, sizeof src_name, "layers.%d.ffn.%s", t->layer, x);
    const moe_model_tensor *s = find(dm, src_name);
    if (!s)
        return moe_set_error(MOE_EINVAL,
                             "upcycle: the dense checkpoint has no %s for expert tensor %s (the "
                             "layer is dense there? ffn_bias and activation must match)",
                             src_name, t->name);
    const int g = p->granularity, j = t->expert % g;
    const int64_t D = mm->D, Fe = mm->mc->expert_d_ff, F = dm->F;
    const float *src = dm->params + s->offset;
    float *dst = mm->params + t->offset;
    if (!strcmp(x, "w1") || !strcmp(x, "w3")) { // (D, F): columns j·Fe ..
        for (int64_t d = 0; d < D; d++)
            memcpy(dst + d * Fe, src + d * F + j * Fe, (size_t)Fe * sizeof *dst);
    } else if (!strcmp(x, "w2")) { // (F, D): rows j·Fe ..
        memcpy(dst, src + j * Fe * D, (size_t)(Fe * D) * sizeof *dst);
    } else if (!strcmp(x, "b1") || !strcmp(x, "b3")) {
        memcpy(dst, src + j * Fe, (size_t)Fe * sizeof *dst);
    } else if (!strcmp(x, "b2")) { // added once per slice: each slice carries 1/g of it
        for (int64_t d = 0; d < D; d++) dst[d] = src[d] / (float)g;
    } else {
        return moe_set_error(MOE_EINVAL, "upcycle: no rule for expert tensor %s", t->name);
    }
    if (p->noise > 0 && x[0] == 'w') {
        double ss = 0;
        for (int64_t i = 0; i < t->n; i++) ss += (double)dst[i] * dst[i];
        const double rms = t->n > 0 ? sqrt(ss / (double)t->n) : 0;
        float *z = moe_xcalloc((size_t)t->n + 1, sizeof *z);
        char key[64];
        snprintf(key, sizeof key, "upcycle.noise.%s", x);
        moe_nn_init_normal(z, t->n, p->noise * rms, seed, moe_nn_init_key(key, t->layer, t->expert),
                           0);
        for (int64_t i = 0; i < t->n; i++) dst[i] += z[i];
        free(z);
    }
    return MOE_OK;
}

moe_status moe_upcycle_fill(const moe_model *dm, moe_model *mm, const moe_upcycle_params *p) {
    MOE_ASSERT(mm->El == mm->E); // one process: every expert local
    const uint64_t seed = p->seed;
    for (int i = 0; i < mm->n_tensors; i++) {
        const moe_model_tensor *t = &mm->tensors[i];
        moe_status st = MOE_OK;
        if (t->expert >= 0) {
            st = fill_expert(dm, mm, t, p, seed);
        } else if (strstr(t->name, ".router.")) {
            if (p->granularity > 1) // every probability 1/E: each token takes experts 0..k-1
                memset(mm->params + t->offset, 0, (size_t)t->n * sizeof(float));
        } else {
            const moe_model_tensor *s = find(dm, t->name);
            if (!s || s->n != t->n || s->shape[0] != t->shape[0] || s->shape[1] != t->shape[1])
                st = moe_set_error(MOE_EINVAL,
                                   "upcycle: the upcycled model's %s (%lld x %lld) has no "
                                   "tensor of that name and shape in the dense checkpoint",
                                   t->name, (long long)t->shape[0], (long long)t->shape[1]);
            else
                memcpy(mm->params + t->offset, dm->params + s->offset, (size_t)t->n * sizeof(float));
        }
        if (st) return st;
    }
    memset(mm->adam_m, 0, (size_t)mm->n_train * sizeof(float));
    memset(mm->adam_v, 0, (size_t)mm->n_train * sizeof(float));
    if (mm->balance_bias) memset(mm->balance_bias, 0, (size_t)(mm->n_moe * mm->E) * sizeof(float));
    return MOE_OK;
}

static moe_status load_dense(const char *where, moe_model **dm, Moe__Config **dcfg) {
    char dir[MOE_PATH_MAX];
    Moe__CheckpointManifest *man = NULL;
    moe_status st = moe_ckpt_resolve(where, dir, sizeof dir);
    if (!st) st = moe_ckpt_read_manifest(dir, &man);
    if (st) return st;
    *dcfg = moe_config_copy(man->config);
    protobuf_c_message_free_unpacked(&man->base, NULL);
    if ((*dcfg)->model->n_experts > 0)
        return moe_set_error(MOE_EINVAL,
                             "%s is already a MoE model (model.n_experts = %d): upcycling starts "
                             "from a dense checkpoint",
                             where, (*dcfg)->model->n_experts);
    const moe_model_layout one = moe_model_layout_of(NULL);
    if ((st = moe_model_create(*dcfg, &one, NULL, 0, dm))) return st;
    moe_ckpt *ck = moe_train_ckpt_register(*dm);
    st = moe_train_ckpt_load(*dm, ck, NULL, dir, NULL, NULL);
    moe_ckpt_free(ck);
    return st;
}

moe_status moe_upcycle_run(const char *where, const char *out_dir, const moe_upcycle_params *p,
                           const char *const *sets, int n_sets, char *written, size_t cap) {
    char cfg_path[MOE_PATH_MAX + 16];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", out_dir);
    moe_status st = moe_ckpt_check_fresh(out_dir);
    if (!st && access(cfg_path, F_OK) == 0)
        st = moe_set_error(MOE_EUSAGE, "%s exists: upcycle into a new directory", cfg_path);
    if (st) return st;
    moe_model *dm = NULL, *mm = NULL;
    Moe__Config *dcfg = NULL, *mcfg = NULL;
    moe_ckpt *ck = NULL;
    if ((st = load_dense(where, &dm, &dcfg))) goto out;
    if ((st = moe_upcycle_config(dcfg, p, sets, n_sets, &mcfg))) goto out;
    free(mcfg->out_dir);
    mcfg->out_dir = moe_xstrdup(out_dir);
    moe_upcycle_params q = *p;
    if (!q.seed) q.seed = mcfg->train->seed;
    const moe_model_layout one = moe_model_layout_of(NULL);
    if ((st = moe_model_create(mcfg, &one, NULL, 0, &mm))) goto out;
    if ((st = moe_upcycle_fill(dm, mm, &q))) goto out;
    if (moe_mkdir_p(out_dir) != 0) {
        st = moe_set_error(MOE_EIO, "cannot create %s: %s", out_dir, strerror(errno));
        goto out;
    }
    ck = moe_train_ckpt_register(mm);
    const moe_ckpt_state cs = {.step = 0, .rng_state = mcfg->train->seed, .world = 1, .ep = 1};
    if ((st = moe_ckpt_save(ck, NULL, out_dir, mcfg, &cs, 0, written, cap))) goto out;
    st = moe_config_write_file(mcfg, cfg_path);
out:
    moe_ckpt_free(ck);
    moe_model_free(mm);
    moe_model_free(dm);
    moe_config_free(mcfg);
    moe_config_free(dcfg);
    return st;
}
