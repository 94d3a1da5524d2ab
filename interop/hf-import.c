// hf-import.c: `moe import` — a Hugging Face model directory (a class of interop.h) as
// a moe checkpoint at step 0. config.json is read by the same reader as `moe params`
// (params/hf-config.c), then held to what moe reproduces exactly (RoPE base, activation, the
// class's own constraints through moe_hf_arch_of); the tensors are read one at a time through
// the name map backwards, every moe parameter must be covered, every file tensor expected. The
// checkpoint is written by trainer/checkpoint/ (atomic, CRC32C, LATEST) at world 1: checkpoints
// reshard on load, so `moe eval` / `moe train --init-from` read it at any layout.
#include "checkpoint.h"
#include "config.h"
#include "interop.h"
#include "nn.h"
#include "params.h"
#include "train.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#define REFUSE(...) moe_set_error(MOE_EINVAL, __VA_ARGS__)

// What config.json says beyond the shape, checked against what moe computes.
static moe_status moe_hf_import_checks(const char *path, Moe__ModelConfig *mc, FILE *log) {
    char *text = NULL;
    size_t len = 0;
    moe_status st = moe_read_file(path, 16u << 20, &text, &len);
    if (st) return st;
    json_error_t err;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return REFUSE("%s: not a JSON object", path);
    }
    const char *act = json_string_value(json_object_get(o, "hidden_act"));
    json_t *rp = json_object_get(o, "rope_parameters"), *v;
    if (json_is_object(rp)) { // newer transformers: {"rope_type": ..., "rope_theta": ...}
        const char *rt = json_string_value(json_object_get(rp, "rope_type"));
        if (rt && strcmp(rt, "default"))
            st = REFUSE("%s: rope_parameters.rope_type \"%s\": moe's RoPE is the default "
                        "(unscaled) one",
                        path, rt);
    } // rope_theta and rms_norm_eps are model.rope_theta and model.norm_eps (params/ maps them)
    v = json_object_get(o, "rope_scaling");
    if (!st && act && strcmp(act, "silu") && strcmp(act, "swish"))
        st = REFUSE("%s: hidden_act \"%s\": moe's experts are SwiGLU (silu)", path, act);
    else if (!st && v && !json_is_null(v))
        st = REFUSE("%s: rope_scaling is set: moe's RoPE is unscaled (rope_scaling null)", path);
    else if (!st && json_is_true(json_object_get(o, "use_sliding_window")))
        st = REFUSE("%s: use_sliding_window true: moe attends over the whole sequence", path);
    else if (!st && (v = json_object_get(o, "clip_qkv")) && !json_is_null(v)) // OLMoE's
        st = REFUSE("%s: clip_qkv is set: moe does not clamp q, k and v (clip_qkv null)", path);
    v = json_object_get(o, "sliding_window");
    if (!st && json_is_integer(v) && log)
        fprintf(log,
                "moe import: note: sliding_window %lld: moe attends over the whole sequence "
                "(the same for sequences up to that length)\n",
                (long long)json_integer_value(v));
    if (!st && (v = json_object_get(o, "max_position_embeddings")) && json_is_integer(v) &&
        json_integer_value(v) > 0)
        mc->has_max_seq_len = 1, mc->max_seq_len = json_integer_value(v);
    json_decref(o);
    return st;
}

// The config of the import: config.json's model and router, the schema's other defaults, the
// --set overrides (model.* refused), the layout; checked, its class equal to config.json's.
static moe_status moe_hf_import_config(const char *hf_dir, const char *out,
                                       const moe_hf_import_opts *o, Moe__Config **cfgp,
                                       moe_hf_arch *arch, FILE *log) {
    char path[MOE_PATH_MAX];
    moe_status st = moe_path_fmt(path, "HF_DIR", "%s/config.json", hf_dir);
    if (st) return st;
    static const char *const fams[MOE_HF_N_ARCH] = {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe"};
    char *text = NULL;
    size_t len = 0;
    if ((st = moe_read_file(path, 16u << 20, &text, &len)))
        return moe_set_error(MOE_EUSAGE, "%s: cannot read (%s); HF_DIR needs config.json", path,
                             moe_last_error());
    json_t *root = json_loadb(text, len, 0, NULL);
    free(text);
    const char *mt = json_string_value(json_object_get(root, "model_type"));
    int known = 0;
    for (int i = 0; i < MOE_HF_N_ARCH && mt; i++) known |= !strcmp(mt, fams[i]);
    if (!known && root) // before the shape reader, which would ask for other fields first
        st = REFUSE("%s: model_type %s: moe import reads mixtral, qwen2_moe, qwen3_moe and olmoe "
                    "(MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, "
                    "OlmoeForCausalLM)",
                    path, mt ? mt : "absent");
    json_decref(root);
    if (st) return st;
    moe_hf_info info = {0};
    Moe__Config *cfg = NULL;
    if ((st = moe_hf_config_load(path, &cfg, &info))) {
        moe_hf_info_free(&info);
        return st == MOE_EIO ? moe_set_error(MOE_EUSAGE, "%s", moe_last_error()) : st;
    }
    int fam = -1;
    for (int i = 0; i < MOE_HF_N_ARCH; i++)
        if (info.family && !strcmp(info.family, fams[i])) fam = i;
    if (fam < 0)
        st = REFUSE("%s: model_type %s: moe import reads mixtral, qwen2_moe, qwen3_moe and olmoe "
                    "(MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, "
                    "OlmoeForCausalLM)",
                    path, info.family ? info.family : "(unknown)");
    moe_hf_info_free(&info);
    if (!st) st = moe_hf_import_checks(path, cfg->model, log);
    Moe__Config *own = moe_config_copy(cfg); // every string owned (defaults may be static)
    moe_config_free(cfg);
    cfg = own;
    Moe__Config *def = moe_config_new_default();
#define FILL(f)                                                                                    \
    if (!cfg->f) cfg->f = def->f, def->f = NULL;
    FILL(model)
    FILL(router)
    FILL(train)
    FILL(parallel)
    FILL(data)
    FILL(lora)
#undef FILL
        moe_config_free(def);
    moe_params_normalize_model(cfg->model);
    if (!st) {
        uint8_t *before = NULL;
        size_t nb = protobuf_c_message_get_packed_size(&cfg->model->base);
        before = moe_xcalloc(nb + 1, 1);
        protobuf_c_message_pack(&cfg->model->base, before);
        for (int i = 0; i < o->n_sets && !st; i++) st = moe_config_set(cfg, o->sets[i]);
        if (!st) {
            moe_params_normalize_model(cfg->model);
            size_t na = protobuf_c_message_get_packed_size(&cfg->model->base);
            uint8_t *after = moe_xcalloc(na + 1, 1);
            protobuf_c_message_pack(&cfg->model->base, after);
            if (na != nb || memcmp(before, after, na))
                st = REFUSE("--set model.*: the model's shape comes from %s; set only other "
                            "sections (train, data, router training fields, ...)",
                            path);
            free(after);
        }
        free(before);
    }
    if (!st) {
        char a[MOE_PATH_MAX + 16]; // through moe_config_set: absent strings are static defaults
        snprintf(a, sizeof a, "out_dir=%s", out);
        st = moe_config_set(cfg, a);
        snprintf(a, sizeof a, "name=%s", fams[fam]);
        if (!st) st = moe_config_set(cfg, a);
        cfg->parallel->has_ep_size = 1;
        cfg->parallel->ep_size = o->ep > 0 ? o->ep : 1;
        if (!st) st = moe_config_validate(cfg, o->world > 0 ? o->world : cfg->parallel->ep_size);
    }
    if (!st) st = moe_model_check(cfg);
    if (!st) st = moe_hf_arch_of(cfg, arch);
    if (!st && (int)*arch != fam)
        st = REFUSE("%s: a %s config whose moe model exports as %s: moe import reads "
                    "directories this map writes back the same way",
                    path, fams[fam], moe_hf_arch_class(*arch));
    if (st) {
        moe_config_free(cfg);
        return st;
    }
    *cfgp = cfg;
    return MOE_OK;
}

// The open safetensors files of a model directory and where each tensor lives.
typedef struct {
    int nf;
    moe_st_file **f;
    moe_st_index ix; // n = 0 without an index
    int *used;       // (total tensors over the files) matched by the map
    int *base;       // (nf) first index of file i in used
} moe_hf_files;

static void moe_hf_files_close(moe_hf_files *F) {
    for (int i = 0; i < F->nf; i++) moe_st_close(F->f[i]);
    free(F->f), free(F->used), free(F->base);
    if (F->ix.n) moe_st_index_free(&F->ix);
    memset(F, 0, sizeof *F);
}

static moe_status moe_hf_files_open(const char *dir, moe_hf_files *F) {
    memset(F, 0, sizeof *F);
    char path[MOE_PATH_MAX];
    moe_status st = moe_path_fmt(path, "HF_DIR", "%s/model.safetensors.index.json", dir);
    if (st) return st;
    const char **names = NULL;
    int nn = 0;
    if (moe_file_exists(path)) {
        if ((st = moe_st_index_read(dir, &F->ix))) return st;
        names = moe_xcalloc((size_t)F->ix.n + 1, sizeof *names);
        for (int i = 0; i < F->ix.n; i++) {
            int seen = 0;
            for (int j = 0; j < nn && !seen; j++) seen = !strcmp(names[j], F->ix.file[i]);
            if (!seen) names[nn++] = F->ix.file[i];
        }
    } else {
        names = moe_xcalloc(1, sizeof *names);
        names[nn++] = "model.safetensors";
    }
    F->f = moe_xcalloc((size_t)nn + 1, sizeof *F->f);
    F->base = moe_xcalloc((size_t)nn + 1, sizeof *F->base);
    int total = 0;
    for (int i = 0; i < nn && !st; i++) {
        if ((st = moe_path_fmt(path, "HF_DIR", "%s/%s", dir, names[i]))) break;
        if (!moe_file_exists(path)) {
            st = moe_set_error(F->ix.n ? MOE_ECORRUPT : MOE_EUSAGE, "%s: no such file%s", path,
                               F->ix.n ? " (named by model.safetensors.index.json)"
                                       : " (and no model.safetensors.index.json)");
            break;
        }
        if ((st = moe_st_open(path, &F->f[i]))) break;
        F->nf++;
        F->base[i] = total;
        total += F->f[i]->n;
    }
    free(names);
    F->used = moe_xcalloc((size_t)total + 1, sizeof *F->used);
    if (st) moe_hf_files_close(F);
    return st;
}

// The tensor called name: in the file the index names (or the one file). NULL when absent; *fi
// its file.
static const moe_st_tensor *moe_hf_files_find(const moe_hf_files *F, const char *name, int *fi) {
    if (!F->ix.n) {
        *fi = 0;
        return moe_st_find(F->f[0], name);
    }
    for (int i = 0; i < F->ix.n; i++)
        if (!strcmp(F->ix.name[i], name))
            for (int j = 0; j < F->nf; j++)
                if (!strcmp(strrchr(F->f[j]->path, '/') + 1, F->ix.file[i])) {
                    *fi = j;
                    return moe_st_find(F->f[j], name);
                }
    return NULL;
}

// Reads every map entry into m's parameters; refuses missing, misshapen and unexpected tensors.
static moe_status moe_hf_import_tensors(moe_model *m, moe_hf_arch arch, moe_hf_files *F,
                                        const char *dir) {
    moe_hf_entry *ent = NULL;
    int n = 0;
    moe_hf_map(m, arch, &ent, &n);
    int64_t most = 1;
    for (int i = 0; i < n; i++) {
        const int64_t k = ent[i].shape[0] * (ent[i].ndim == 2 ? ent[i].shape[1] : 1);
        most = k > most ? k : most;
    }
    float *buf = moe_xcalloc((size_t)most, sizeof *buf);
    char *covered = moe_xcalloc((size_t)m->n_tensors, 1);
    moe_status st = MOE_OK;
    for (int i = 0; i < n && !st; i++) {
        const moe_hf_entry *e = &ent[i];
        if (e->op == MOE_HF_ZERO) continue; // config says no such tensor: unexpected if present
        int fi = 0;
        const moe_st_tensor *t = moe_hf_files_find(F, e->name, &fi);
        if (!t) {
            st = moe_set_error(MOE_ECORRUPT, "%s: tensor %s is missing (config.json's %s needs it)",
                               dir, e->name, moe_hf_arch_class(arch));
            break;
        }
        int same = t->ndim == e->ndim;
        for (int d = 0; d < e->ndim && same; d++) same = t->shape[d] == e->shape[d];
        if (!same) {
            st = moe_set_error(MOE_ECORRUPT,
                               "%s: tensor %s has shape [%lld%s%lld], config.json implies "
                               "[%lld, %lld]",
                               F->f[fi]->path, e->name, (long long)t->shape[0],
                               t->ndim > 1 ? ", " : "", (long long)(t->ndim > 1 ? t->shape[1] : 0),
                               (long long)e->shape[0], (long long)(e->ndim > 1 ? e->shape[1] : 0));
            break;
        }
        F->used[F->base[fi] + (int)(t - F->f[fi]->t)] = 1;
        if ((st = moe_st_read_f32(F->f[fi], t, buf))) break;
        moe_hf_move(m, e, buf, 0);
        for (int s = 0; s < e->n_src; s++) covered[e->src + s] = 1;
    }
    for (int j = 0; j < F->nf && !st; j++)
        for (int k = 0; k < F->f[j]->n && !st; k++) {
            const char *nm = F->f[j]->t[k].name;
            const size_t ln = strlen(nm);
            if (F->used[F->base[j] + k]) continue;
            if (ln > 20 && !strcmp(nm + ln - 20, "rotary_emb.inv_freq")) continue; // a buffer
            st = moe_set_error(MOE_ECORRUPT,
                               "%s: tensor %s is not part of %s as config.json describes it (or "
                               "not where the index puts it)",
                               F->f[j]->path, nm, moe_hf_arch_class(arch));
        }
    for (int i = 0; i < m->n_tensors && !st; i++)
        MOE_ASSERT(covered[i]); // the map covers every moe parameter
    free(covered);
    free(buf);
    free(ent);
    return st;
}

moe_status moe_hf_import(const char *hf_dir, const char *out, const moe_hf_import_opts *o,
                         char *written, size_t cap, FILE *log) {
    Moe__Config *cfg = NULL;
    moe_model *m = NULL;
    moe_ckpt *ck = NULL;
    moe_hf_files F = {0};
    moe_hf_arch arch;
    moe_status st = moe_dir_check("OUT", out);
    if (!st) st = moe_hf_import_config(hf_dir, out, o, &cfg, &arch, log);
    if (!st) st = moe_ckpt_check_fresh(out);
    if (!st) st = moe_hf_files_open(hf_dir, &F);
    if (st) goto done;
    moe_model_layout lay = {1, 0, 1, 0, 0};
    if ((st = moe_model_create(cfg, &lay, NULL, 0, &m))) goto done;
    if ((st = moe_hf_import_tensors(m, arch, &F, hf_dir))) goto done;
    memset(m->adam_m, 0, (size_t)m->n_params * sizeof(float));
    memset(m->adam_v, 0, (size_t)m->n_params * sizeof(float));
    if (m->n_moe) memset(m->balance_bias, 0, (size_t)m->n_moe * (size_t)m->E * sizeof(float));
    if (moe_mkdir_p(out) != 0) {
        st = moe_set_error(MOE_EIO, "%s: cannot create the directory", out);
        goto done;
    }
    ck = moe_train_ckpt_register(m);
    moe_ckpt_state cs = {.step = 0, .rng_state = cfg->train->seed, .world = 1, .ep = 1};
    char path[MOE_PATH_MAX] = "";
    if ((st = moe_ckpt_save(ck, NULL, out, cfg, &cs, 0, path, sizeof path))) goto done;
    if (written) snprintf(written, cap, "%s", path);
    if (log)
        fprintf(log, "moe import: %s (%s, %d tensors) -> %s\n", hf_dir, moe_hf_arch_class(arch),
                m->n_tensors, path);
done:
    moe_hf_files_close(&F);
    moe_ckpt_free(ck);
    moe_model_free(m);
    moe_config_free(cfg);
    return st;
}
