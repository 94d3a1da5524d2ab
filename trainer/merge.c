// merge.c: `moe merge` (merge.h) — a LoRA checkpoint folded into a plain one. By tensor names:
// the adapters of matrix "X" are "X.lora_a" (n_in, r) and "X.lora_b" (r, n_out) of the same
// (layer, expert), so every target (attention, routed and shared experts, dense FFN, router) is
// folded by the same loop. Trade-off: both models are held in one process (the base twice), which
// is what moe upcycle and moe import do too.
#include "merge.h"
#include "checkpoint.h"
#include "config.h"
#include "train.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static const moe_model_tensor *find(const moe_model *m, const char *name, int layer, int expert) {
    for (int i = 0; i < m->n_tensors; i++) {
        const moe_model_tensor *t = &m->tensors[i];
        if (t->layer == layer && t->expert == expert && !strcmp(t->name, name)) return t;
    }
    return NULL;
}

moe_status moe_merge_fold(const moe_model *src, moe_model *dst, double scale) {
    for (int i = 0; i < dst->n_tensors; i++) {
        const moe_model_tensor *t = &dst->tensors[i];
        const moe_model_tensor *s = find(src, t->name, t->layer, t->expert);
        if (!s || s->n != t->n)
            return moe_set_error(MOE_EINVAL,
                                 "merge: the plain model's %s (layer %d, expert %d) is not in "
                                 "the LoRA checkpoint's model",
                                 t->name, t->layer, t->expert);
        float *w = dst->params + t->offset;
        memcpy(w, src->params + s->offset, (size_t)t->n * sizeof(float));
        char na[64], nb[64];
        snprintf(na, sizeof na, "%s.lora_a", t->name);
        snprintf(nb, sizeof nb, "%s.lora_b", t->name);
        const moe_model_tensor *a = find(src, na, t->layer, t->expert),
                               *b = find(src, nb, t->layer, t->expert);
        if (!a || !b) continue; // not adapted
        const int64_t n_in = a->shape[0], r = a->shape[1], n_out = b->shape[1];
        MOE_ASSERT(t->ndim == 2 && t->shape[0] == n_in && t->shape[1] == n_out && b->shape[0] == r);
        const float *A = src->params + a->offset, *B = src->params + b->offset;
        for (int64_t p = 0; p < n_in; p++)
            for (int64_t q = 0; q < n_out; q++) {
                double acc = 0;
                for (int64_t k = 0; k < r; k++) acc += (double)A[p * r + k] * B[k * n_out + q];
                w[p * n_out + q] = (float)((double)w[p * n_out + q] + scale * acc);
            }
    }
    if (src->n_moe > 0)
        memcpy(dst->balance_bias, src->balance_bias, (size_t)(src->n_moe * src->E) * sizeof(float));
    memset(dst->adam_m, 0, (size_t)dst->n_train * sizeof(float));
    memset(dst->adam_v, 0, (size_t)dst->n_train * sizeof(float));
    return MOE_OK;
}

moe_status moe_merge_run(const char *where, const char *out_dir, char *written, size_t cap) {
    char cfg_path[MOE_PATH_MAX + 16], dir[MOE_PATH_MAX];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", out_dir);
    moe_status st = moe_ckpt_check_fresh(out_dir);
    if (!st && access(cfg_path, F_OK) == 0)
        st = moe_set_error(MOE_EUSAGE, "%s exists: merge into a new directory", cfg_path);
    if (st) return st;
    Moe__CheckpointManifest *man = NULL;
    if ((st = moe_ckpt_resolve(where, dir, sizeof dir)) || (st = moe_ckpt_read_manifest(dir, &man)))
        return st;
    Moe__Config *lcfg = moe_config_copy(man->config), *pcfg = NULL;
    protobuf_c_message_free_unpacked(&man->base, NULL);
    moe_model *src = NULL, *dst = NULL;
    moe_ckpt *ck = NULL;
    if (!lcfg->lora || lcfg->lora->rank <= 0) {
        st = moe_set_error(MOE_EUSAGE,
                           "%s has no LoRA adapters (lora.rank = 0): nothing to merge; it is a "
                           "plain checkpoint already",
                           dir);
        goto out;
    }
    const moe_model_layout one = moe_model_layout_of(NULL);
    if ((st = moe_model_create(lcfg, &one, NULL, 0, &src))) goto out;
    ck = moe_train_ckpt_register(src);
    if ((st = moe_train_ckpt_load(src, ck, NULL, dir, NULL, NULL))) goto out;
    moe_ckpt_free(ck);
    ck = NULL;
    pcfg = moe_config_copy(lcfg);
    const double scale = lcfg->lora->alpha / lcfg->lora->rank;
    protobuf_c_message_free_unpacked(&pcfg->lora->base, NULL);
    pcfg->lora = moe_xcalloc(1, sizeof *pcfg->lora);
    moe__lora_config__init(pcfg->lora);
    free(pcfg->out_dir);
    pcfg->out_dir = moe_xstrdup(out_dir);
    if ((st = moe_model_create(pcfg, &one, NULL, 0, &dst))) goto out;
    if ((st = moe_merge_fold(src, dst, scale))) goto out;
    if (moe_mkdir_p(out_dir) != 0) {
        st = moe_set_error(MOE_EIO, "cannot create %s: %s", out_dir, strerror(errno));
        goto out;
    }
    ck = moe_train_ckpt_register(dst);
    const moe_ckpt_state cs = {.step = 0, .rng_state = pcfg->train->seed, .world = 1, .ep = 1};
    if ((st = moe_ckpt_save(ck, NULL, out_dir, pcfg, &cs, 0, written, cap))) goto out;
    st = moe_config_write_file(pcfg, cfg_path);
out:
    moe_ckpt_free(ck);
    moe_model_free(src);
    moe_model_free(dst);
    moe_config_free(lcfg);
    moe_config_free(pcfg);
    return st;
}
