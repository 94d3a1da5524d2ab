// hf-import.c: `moe import` — a Hugging Face model directory (a class of interop.h) as
// a moe checkpoint at step 0. config.json is read by the same reader as `moe params`
// (params/hf-config.c), then held to what moe reproduces exactly (RoPE base, activation, the
// class's own constraints through moe_hf_arch_of); the tensors are read one at a time through
// the name map backwards, every moe parameter must be covered, every file tensor expected. The
// checkpoint is written by trainer/checkpoint/ (atomic, CRC32C, LATEST) at the --world/--ep
// layout, one rank's shard at a time (moe_ckpt_serial): memory is one HF tensor plus one shard's
// parameters, never the whole model; checkpoints reshard on load, so `moe eval` / `moe train
// --init-from` read it at any layout.
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

// Every map entry found with its shape, every file tensor expected — checked on the headers
// before any weight is read or anything written. Marks F->used.
static moe_status moe_hf_import_match(const moe_hf_entry *ent, int n, moe_hf_arch arch,
                                      moe_hf_files *F, const char *dir) {
    for (int i = 0; i < n; i++) {
        const moe_hf_entry *e = &ent[i];
        if (e->op == MOE_HF_ZERO) continue; // config says no such tensor: unexpected if present
        int fi = 0;
        const moe_st_tensor *t = moe_hf_files_find(F, e->name, &fi);
        if (!t)
            return moe_set_error(MOE_ECORRUPT,
                                 "%s: tensor %s is missing (config.json's %s needs it)", dir,
                                 e->name, moe_hf_arch_class(arch));
        int same = t->ndim == e->ndim;
        for (int d = 0; d < e->ndim && same; d++) same = t->shape[d] == e->shape[d];
        if (!same)
            return moe_set_error(MOE_ECORRUPT,
                                 "%s: tensor %s has shape [%lld%s%lld], config.json implies "
                                 "[%lld, %lld]",
                                 F->f[fi]->path, e->name, (long long)t->shape[0],
                                 t->ndim > 1 ? ", " : "",
                                 (long long)(t->ndim > 1 ? t->shape[1] : 0), (long long)e->shape[0],
                                 (long long)(e->ndim > 1 ? e->shape[1] : 0));
        F->used[F->base[fi] + (int)(t - F->f[fi]->t)] = 1;
    }
    for (int j = 0; j < F->nf; j++)
        for (int k = 0; k < F->f[j]->n; k++) {
            const char *nm = F->f[j]->t[k].name;
            const size_t ln = strlen(nm);
            if (F->used[F->base[j] + k]) continue;
            if (ln > 20 && !strcmp(nm + ln - 20, "rotary_emb.inv_freq")) continue; // a buffer
            return moe_set_error(MOE_ECORRUPT,
                                 "%s: tensor %s is not part of %s as config.json describes it (or "
                                 "not where the index puts it)",
                                 F->f[j]->path, nm, moe_hf_arch_class(arch));
        }
    return MOE_OK;
}

// The map is written against the world-1 table `all` (every expert); a shard holds the dense
// tensors and its ranks' experts, in the same order (model-build.c builds both). `view` is `all`
// with each tensor the shard holds moved to the shard's offset (others: -1 in `in`), so that
// moe_hf_move writes straight into the shard's parameters.
static void moe_hf_shard_view(const moe_model *all, const moe_model *shard, moe_model *view,
                              moe_model_tensor *vt, int *in) {
    *view = *all;
    view->tensors = vt;
    view->params = shard->params;
    int j = 0;
    for (int i = 0; i < all->n_tensors; i++) {
        vt[i] = all->tensors[i];
        in[i] = -1;
        const moe_model_tensor *a = &all->tensors[i], *b = &shard->tensors[j];
        if (j < shard->n_tensors && a->expert == b->expert && !strcmp(a->name, b->name)) {
            MOE_ASSERT(a->n == b->n);
            vt[i].offset = b->offset;
            in[i] = j++;
        }
    }
    MOE_ASSERT(j == shard->n_tensors); // the shard's table is a subsequence of the world-1 one
}

// A shard's parameters: one buffer for every shard (they are all the same size), grown once.
// Not a fresh allocation per shard: the allocator may keep a freed block resident and place the
// next one beside it, and memory would grow by a shard each time.
typedef struct {
    float *p;
    int64_t cap;
} moe_hf_shard_buf;

// World rank r's shard of the layout (W, EP): the tensors it writes into the checkpoint (dense:
// rank 0; its experts: when it is its expert group's EDP rank 0), read from the files one at a
// time through `buf`, then its files written through `wr`. Nothing beyond the shard's parameters
// and `buf` is held.
static moe_status moe_hf_import_shard(const Moe__Config *cfg, const moe_model *all,
                                      const moe_hf_entry *ent, int n, moe_hf_files *F, int W,
                                      int EP, int r, float *buf, float *zeros,
                                      moe_hf_shard_buf *sb, moe_ckpt_serial *wr) {
    const moe_model_layout lay = {W, r, EP, r % EP, r / EP};
    if (lay.world_rank != 0 && lay.edp_rank != 0) return MOE_OK; // a replica: writes nothing
    moe_model *shard = NULL;
    moe_status st = moe_model_create_table(cfg, &lay, &shard);
    if (st) return st;
    if (shard->n_params > sb->cap) {
        free(sb->p);
        sb->cap = shard->n_params;
        sb->p = moe_xalloc_aligned((size_t)sb->cap * sizeof(float));
    }
    shard->params = sb->p; // borrowed: detached before moe_model_free
    memset(shard->params, 0, (size_t)shard->n_params * sizeof(float));
    moe_model view;
    moe_model_tensor *vt = moe_xcalloc((size_t)all->n_tensors, sizeof *vt);
    int *in = moe_xcalloc((size_t)all->n_tensors, sizeof *in);
    char *covered = moe_xcalloc((size_t)shard->n_tensors + 1, 1);
    moe_hf_shard_view(all, shard, &view, vt, in);
    for (int i = 0; i < n && !st; i++) {
        const moe_hf_entry *e = &ent[i];
        if (e->op == MOE_HF_ZERO || in[e->src] < 0) continue; // another rank's expert
        const int dense = all->tensors[e->src].expert < 0;
        if (dense && lay.world_rank != 0) continue; // rank 0 writes the dense tensors
        int fi = 0;
        const moe_st_tensor *t = moe_hf_files_find(F, e->name, &fi); // matched before
        if ((st = moe_st_read_f32(F->f[fi], t, buf))) break;
        moe_hf_move(&view, e, buf, 0);
        for (int s = 0; s < e->n_src; s++) covered[in[e->src + s]] = 1;
    }
    for (int i = 0; i < shard->n_tensors && !st; i++) // every tensor the shard writes was read
        MOE_ASSERT(covered[i] || (shard->tensors[i].expert < 0 && lay.world_rank != 0));
    if (!st) {
        moe_ckpt *ck = moe_train_ckpt_register_store(shard, zeros);
        st = moe_ckpt_serial_write(wr, ck, r);
        moe_ckpt_free(ck);
    }
    free(covered);
    free(in);
    free(vt);
    shard->params = NULL;
    moe_model_free(shard);
    return st;
}

moe_status moe_hf_import(const char *hf_dir, const char *out, const moe_hf_import_opts *o,
                         char *written, size_t cap, FILE *log) {
    Moe__Config *cfg = NULL;
    moe_model *all = NULL;
    moe_ckpt_serial *wr = NULL;
    moe_hf_entry *ent = NULL;
    float *buf = NULL, *zeros = NULL;
    moe_hf_shard_buf sb = {0};
    int n = 0;
    moe_hf_files F = {0};
    moe_hf_arch arch;
    moe_status st = moe_dir_check("OUT", out);
    if (!st) st = moe_hf_import_config(hf_dir, out, o, &cfg, &arch, log);
    if (!st) st = moe_ckpt_check_fresh(out);
    if (!st) st = moe_hf_files_open(hf_dir, &F);
    if (st) goto done;
    const int W = o->world > 0 ? o->world : 1, EP = cfg->parallel->ep_size;
    // The world-1 table names every tensor (no storage); the map is built on it.
    const moe_model_layout one = {1, 0, 1, 0, 0};
    if ((st = moe_model_create_table(cfg, &one, &all))) goto done;
    moe_hf_map(all, arch, &ent, &n);
    if ((st = moe_hf_import_match(ent, n, arch, &F, hf_dir))) goto done;
    int64_t most = all->E > 0 ? all->E : 1; // zeros also stand for the balance biases (E)
    for (int i = 0; i < all->n_tensors; i++)
        most = all->tensors[i].n > most ? all->tensors[i].n : most;
    for (int i = 0; i < n; i++) {
        const int64_t k = ent[i].shape[0] * (ent[i].ndim == 2 ? ent[i].shape[1] : 1);
        most = k > most ? k : most;
    }
    buf = moe_xcalloc((size_t)most, sizeof *buf);
    zeros = moe_xcalloc((size_t)most, sizeof *zeros);
    if (moe_mkdir_p(out) != 0) {
        st = moe_set_error(MOE_EIO, "%s: cannot create the directory", out);
        goto done;
    }
    if ((st = moe_ckpt_serial_begin(out, 0, W, &wr))) goto done;
    for (int r = 0; r < W && !st; r++)
        st = moe_hf_import_shard(cfg, all, ent, n, &F, W, EP, r, buf, zeros, &sb, wr);
    if (st) goto done;
    moe_ckpt_state cs = {.step = 0, .rng_state = cfg->train->seed, .world = W, .ep = EP};
    char path[MOE_PATH_MAX] = "";
    if ((st = moe_ckpt_serial_commit(wr, cfg, &cs, 0, path, sizeof path))) goto done;
    if (written) snprintf(written, cap, "%s", path);
    if (log)
        fprintf(log, "moe import: %s (%s, %d tensors) -> %s (world %d, ep %d)\n", hf_dir,
                moe_hf_arch_class(arch), all->n_tensors, path, W, EP);
done:
    moe_ckpt_serial_free(wr);
    moe_hf_files_close(&F);
    free(ent);
    free(buf);
    free(zeros);
    free(sb.p);
    moe_model_free(all);
    moe_config_free(cfg);
    return st;
}
