// test_train_ckcmp.c: a helper of the train tests (not a test by itself) — compares two
// checkpoints tensor by tensor, whatever layouts wrote them: each is loaded (one process, all
// experts local) into a parameter-only model built from its own manifest, then every tensor of
// every kind (param, adam_m, adam_v, router_bias) is compared.
//   test_train_ckcmp A B --exact            bitwise equality
//   test_train_ckcmp A B --tol ATOL RTOL    |a − b| <= ATOL + RTOL·|b| for every element
// Prints the largest differences per kind; exit 0 if equal within the rule, 1 if not, 2 on error.
#include "config.h"
#include "params.h"
#include "train.h"

#include <math.h>
#include <string.h>

typedef struct {
    Moe__Config *cfg;
    moe_model *m;
    moe_ckpt *ck;
    int64_t step;
} loaded;

static int load(const char *where, loaded *L) {
    char dir[MOE_PATH_MAX];
    Moe__CheckpointManifest *man = NULL;
    if (moe_ckpt_resolve(where, dir, sizeof dir) || moe_ckpt_read_manifest(dir, &man)) {
        fprintf(stderr, "ckcmp: %s: %s\n", where, moe_last_error());
        return 2;
    }
    L->cfg = moe_config_copy(man->config);
    protobuf_c_message_free_unpacked(&man->base, NULL);
    moe_model_layout lay = {1, 0, 1, 0, 0};
    if (moe_model_create(L->cfg, &lay, NULL, 0, &L->m)) {
        fprintf(stderr, "ckcmp: %s: %s\n", where, moe_last_error());
        return 2;
    }
    L->ck = moe_train_ckpt_register(L->m);
    moe_ckpt_state st;
    if (moe_train_ckpt_load(L->m, L->ck, NULL, dir, NULL, &st)) {
        fprintf(stderr, "ckcmp: %s: %s\n", where, moe_last_error());
        return 2;
    }
    L->step = st.step;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: test_train_ckcmp A B --exact | --tol ATOL RTOL\n");
        return 2;
    }
    int exact = !strcmp(argv[3], "--exact");
    double atol = 0, rtol = 0;
    if (!exact) {
        if (argc < 6 || strcmp(argv[3], "--tol")) {
            fprintf(stderr, "ckcmp: expected --exact or --tol ATOL RTOL\n");
            return 2;
        }
        atol = atof(argv[4]), rtol = atof(argv[5]);
    }
    loaded a = {0}, b = {0};
    int rc = load(argv[1], &a);
    if (!rc) rc = load(argv[2], &b);
    if (rc) return rc;
    if (a.m->n_params != b.m->n_params || a.m->n_train != b.m->n_train ||
        a.m->n_tensors != b.m->n_tensors) {
        printf("FAIL shapes differ: %lld vs %lld floats\n", (long long)a.m->n_params,
               (long long)b.m->n_params);
        return 1;
    }
    const char *kinds[4] = {"param", "adam_m", "adam_v", "router_bias"};
    float *fa[4] = {a.m->params, a.m->adam_m, a.m->adam_v, a.m->balance_bias};
    float *fb[4] = {b.m->params, b.m->adam_m, b.m->adam_v, b.m->balance_bias};
    // Adam moments: the trainable tensors only (all of them without LoRA: n_train = n_params).
    int64_t nk[4] = {a.m->n_params, a.m->n_train, a.m->n_train, (int64_t)a.m->n_moe * a.m->E};
    int64_t bad = 0;
    for (int k = 0; k < 4; k++) {
        double maxd = 0, maxrel = 0;
        int64_t where = -1, nbad = 0;
        for (int64_t i = 0; i < nk[k]; i++) {
            double x = fa[k][i], y = fb[k][i], d = fabs(x - y);
            int differ = exact ? memcmp(&fa[k][i], &fb[k][i], sizeof(float)) != 0
                               : !(d <= atol + rtol * fabs(y));
            if (differ) nbad++;
            if (d > maxd) maxd = d, where = i;
            double rel = d / (fabs(y) > 1e-30 ? fabs(y) : 1e-30);
            if (d > 0 && rel > maxrel) maxrel = rel;
        }
        const char *tname = "-";
        if (where >= 0 && k < 3)
            for (int t = 0; t < a.m->n_tensors; t++) {
                const int64_t o = k ? a.m->tensors[t].goff : a.m->tensors[t].offset;
                if (o >= 0 && where >= o && where < o + a.m->tensors[t].n)
                    tname = a.m->tensors[t].name;
            }
        printf("%s %-11s %lld floats: max |a-b| %.3g (at %s), max rel %.3g, %lld outside %s\n",
               nbad ? "FAIL" : "ok  ", kinds[k], (long long)nk[k], maxd, tname, maxrel,
               (long long)nbad, exact ? "bitwise" : "tolerance");
        bad += nbad;
    }
    printf("ckcmp: steps %lld vs %lld: %s\n", (long long)a.step, (long long)b.step,
           bad ? "DIFFERENT" : "equal");
    moe_ckpt_free(a.ck);
    moe_ckpt_free(b.ck);
    moe_model_free(a.m);
    moe_model_free(b.m);
    protobuf_c_message_free_unpacked(&a.cfg->base, NULL);
    protobuf_c_message_free_unpacked(&b.cfg->base, NULL);
    return bad || a.step != b.step ? 1 : 0;
}
