// hf-export.c: `moe export` — a moe checkpoint (any world, EP) as a Hugging Face model directory.
// Bounded memory: the parameters only (no gradients, no Adam moments), the dense tensors plus one
// MoE layer's experts at a time (the HF order holds each layer's experts together, so each layer
// is read once), read through one checkpoint reader that verifies every file's CRC32C once; the
// tensors are converted one at a time through one buffer of the largest tensor. Everything is
// written into OUT_DIR.tmp-PID and that directory renamed at the end: a reader never sees half a
// model directory.
#include "checkpoint.h"
#include "config.h"
#include "interop.h"
#include "nn.h"
#include "params.h"
#include "train.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static json_t *jint(int64_t v) { return json_integer((json_int_t)v); }

char *moe_hf_config_json(const Moe__Config *cfg, moe_hf_arch a, moe_st_dtype dtype) {
    Moe__Config *copy = moe_config_copy(cfg); // its model normalised
    Moe__ModelConfig *mc = copy->model;
    moe_params_normalize_model(mc);
    Moe__RouterConfig rdef;
    moe__router_config__init(&rdef);
    const Moe__RouterConfig *rc = cfg->router ? cfg->router : &rdef;
    json_t *o = json_object();
    json_t *arch = json_array();
    json_array_append_new(arch, json_string(moe_hf_arch_class(a)));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "model_type", json_string(moe_hf_arch_type(a)));
    json_object_set_new(o, "vocab_size", jint(mc->vocab_size));
    json_object_set_new(o, "hidden_size", jint(mc->d_model));
    json_object_set_new(o, "num_hidden_layers", jint(mc->n_layers));
    json_object_set_new(o, "num_attention_heads", jint(mc->n_heads));
    json_object_set_new(o, "num_key_value_heads", jint(mc->n_kv_heads));
    if (a != MOE_HF_OLMOE) // OlmoeConfig has no head_dim: hidden_size / num_attention_heads
        json_object_set_new(o, "head_dim", jint(mc->head_dim));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "max_position_embeddings", jint(mc->max_seq_len));
    json_object_set_new(o, "rms_norm_eps", json_real(mc->norm_eps));
    json_object_set_new(o, "rope_theta", json_real(mc->rope_theta));
    json_object_set_new(o, "rope_scaling", json_null());
    json_object_set_new(o, "tie_word_embeddings", json_boolean(mc->tie_embeddings));
    json_object_set_new(o, "num_experts_per_tok", jint(mc->top_k));
    json_object_set_new(o, "router_aux_loss_coef", json_real(rc->aux_loss_coef));
    json_object_set_new(o, "output_router_logits", json_false());
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    json_object_set_new(o, "initializer_range", json_real(0.02));
    json_object_set_new(o, "use_cache", json_true());
    if (a != MOE_HF_OLMOE) // not an OlmoeConfig field
        json_object_set_new(o, "sliding_window", json_null());
    json_object_set_new(o, "torch_dtype",
                        json_string(dtype == MOE_ST_BF16 ? "bfloat16" : "float32"));
    if (a == MOE_HF_MIXTRAL) {
        json_object_set_new(o, "num_local_experts", jint(mc->n_experts));
        json_object_set_new(o, "intermediate_size", jint(mc->expert_d_ff));
        json_object_set_new(o, "router_jitter_noise", json_real(0.0));
    } else if (a == MOE_HF_OLMOE) { // OlmoeConfig: no dense layers, no shared experts
        json_object_set_new(o, "num_experts", jint(mc->n_experts));
        json_object_set_new(o, "intermediate_size", jint(mc->expert_d_ff)); // the expert width
        json_object_set_new(o, "norm_topk_prob", json_boolean(rc->renormalize));
        json_object_set_new(o, "attention_bias", json_boolean(mc->attn_qkv_bias)); // with o_proj's
        json_object_set_new(o, "clip_qkv", json_null());
    } else {
        json_object_set_new(o, "num_experts", jint(mc->n_experts));
        json_object_set_new(o, "intermediate_size", // dense layers only (none: d_ff 0)
                            jint(mc->d_ff > 0 ? mc->d_ff : mc->expert_d_ff));
        json_object_set_new(o, "moe_intermediate_size", jint(mc->expert_d_ff));
        json_object_set_new(o, "norm_topk_prob", json_boolean(rc->renormalize));
        json_object_set_new(o, "decoder_sparse_step", jint(1));
        json_t *mlp_only = json_array();
        for (int l = 0; l < mc->first_dense_layers && l < mc->n_layers; l++)
            json_array_append_new(mlp_only, jint(l));
        for (size_t i = 0; i < mc->n_dense_layers; i++)
            json_array_append_new(mlp_only, jint(mc->dense_layers[i]));
        json_object_set_new(o, "mlp_only_layers", mlp_only);
        json_object_set_new(o, "use_sliding_window", json_false());
        json_object_set_new(o, "max_window_layers", jint(mc->n_layers));
    }
    if (a == MOE_HF_QWEN2_MOE) {
        json_object_set_new(o, "shared_expert_intermediate_size",
                            jint(mc->n_shared_experts * mc->shared_expert_d_ff));
        json_object_set_new(o, "qkv_bias", json_true()); // zeros when moe has none (interop.h)
    }
    if (a == MOE_HF_QWEN3_MOE) // q, k, v and o biases together (moe_hf_arch_of)
        json_object_set_new(o, "attention_bias", json_boolean(mc->attn_qkv_bias));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    json_decref(o);
    moe_config_free(copy);
    MOE_ASSERT(s);
    const size_t n = strlen(s);
    char *out = moe_xcalloc(n + 2, 1);
    memcpy(out, s, n);
    out[n] = '\n'; // transformers ends config.json with a newline
    free(s);
    return out;
}

// Writes text to dir/name (fsynced). MOE_EIO.
static moe_status moe_hf_write_text(const char *dir, const char *name, const char *text) {
    char path[MOE_PATH_MAX];
    moe_status st = moe_path_fmt(path, "OUT_DIR", "%s/%s", dir, name);
    if (st) return st;
    FILE *f = fopen(path, "wb");
    if (!f) return moe_set_error(MOE_EIO, "%s: cannot create: %s", path, strerror(errno));
    const size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    return ok ? MOE_OK : moe_set_error(MOE_EIO, "%s: write: %s", path, strerror(errno));
}

// Removes dir and the plain files in it (the temporary export directory).
static void moe_hf_rmdir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[MOE_PATH_MAX];
            if (!moe_path_fmt(p, "OUT_DIR", "%s/%s", dir, e->d_name)) unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

// MOE_OK when out_dir does not exist or is an empty directory.
static moe_status moe_hf_check_out(const char *out_dir) {
    struct stat sb;
    if (stat(out_dir, &sb) != 0) return MOE_OK;
    if (!S_ISDIR(sb.st_mode))
        return moe_set_error(MOE_EINVAL, "%s exists and is not a directory; choose another OUT_DIR",
                             out_dir);
    DIR *d = opendir(out_dir);
    if (!d) return moe_set_error(MOE_EIO, "%s: cannot read: %s", out_dir, strerror(errno));
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n ? moe_set_error(MOE_EINVAL,
                             "%s is not empty; moe export writes a new directory (remove it "
                             "or choose another OUT_DIR)",
                             out_dir)
             : MOE_OK;
}

// The checkpoint's config with absent sections filled with their defaults, checked as an
// exportable model.
static moe_status moe_hf_checkpoint_config(const char *dir, Moe__Config **out) {
    Moe__CheckpointManifest *man = NULL;
    moe_status st = moe_ckpt_read_manifest(dir, &man);
    if (st) return st;
    if (!man->config) {
        protobuf_c_message_free_unpacked(&man->base, NULL);
        return moe_set_error(MOE_ECORRUPT, "%s: manifest has no config", dir);
    }
    Moe__Config *cfg = moe_config_copy(man->config);
    protobuf_c_message_free_unpacked(&man->base, NULL);
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
    *out = cfg;
    return MOE_OK;
}

// The export's parameter store: the dense tensors at their offsets [0, n_dense) of the world-1
// table, and after them one slot that holds one MoE layer's experts at a time. `view` is that
// table with every expert tensor moved into its layer's slot (all layers share it), so that
// moe_hf_move reads the parameters from `p`.
typedef struct {
    moe_model view;       // the world-1 table with tensors = vt, params = p
    moe_model_tensor *vt; // (n_tensors)
    float *p;             // (n_dense + the largest layer's expert floats)
    int layer;            // the layer whose experts `p` holds; -1: none yet
} moe_hf_store;

static void moe_hf_store_init(moe_hf_store *s, const moe_model *all) {
    const int L = (int)all->L;
    int64_t *lo = moe_xcalloc((size_t)L + 1, sizeof *lo),
            *hi = moe_xcalloc((size_t)L + 1, sizeof *hi);
    for (int l = 0; l < L; l++) lo[l] = INT64_MAX, hi[l] = 0;
    for (int i = 0; i < all->n_tensors; i++) {
        const moe_model_tensor *t = &all->tensors[i];
        if (t->expert < 0) {
            MOE_ASSERT(t->offset + t->n <= all->n_dense);
            continue;
        }
        MOE_ASSERT(t->layer >= 0 && t->layer < L);
        lo[t->layer] = t->offset < lo[t->layer] ? t->offset : lo[t->layer];
        hi[t->layer] = t->offset + t->n > hi[t->layer] ? t->offset + t->n : hi[t->layer];
    }
    int64_t slot = 0;
    for (int l = 0; l < L; l++)
        if (hi[l] > lo[l] && hi[l] - lo[l] > slot) slot = hi[l] - lo[l];
    s->view = *all;
    s->vt = moe_xcalloc((size_t)all->n_tensors, sizeof *s->vt);
    for (int i = 0; i < all->n_tensors; i++) {
        s->vt[i] = all->tensors[i];
        if (s->vt[i].expert >= 0)
            s->vt[i].offset = all->n_dense + (s->vt[i].offset - lo[s->vt[i].layer]);
    }
    s->p = moe_xalloc_aligned((size_t)(all->n_dense + slot + 1) * sizeof(float));
    s->view.tensors = s->vt;
    s->view.params = s->p;
    s->layer = -1;
    free(lo);
    free(hi);
}

static void moe_hf_store_free(moe_hf_store *s) {
    free(s->vt);
    free(s->p);
}

// What moe_hf_store_ckpt registers besides one layer's experts (layer >= 0).
enum {
    MOE_HF_STORE_DENSE = -2, // the dense tensors
    MOE_HF_STORE_EVERY = -3, // every tensor, the layers sharing one slot: for checking only
};

// Which tensors of the store a read or check covers: one layer's experts (*layer >= 0), or
// MOE_HF_STORE_DENSE / MOE_HF_STORE_EVERY.
static int moe_hf_store_keep(const moe_model_tensor *t, const void *arg) {
    const int layer = *(const int *)arg;
    return layer == MOE_HF_STORE_DENSE ? t->expert < 0
           : layer >= 0                ? t->expert >= 0 && t->layer == layer
                                       : 1;
}

// The parameters of the store as checkpoint tensors (moe_hf_store_keep's selection).
static moe_ckpt *moe_hf_store_ckpt(const moe_hf_store *s, int layer) {
    return moe_train_ckpt_params(&s->view, moe_hf_store_keep, &layer);
}

// Reads `layer`'s experts (or the dense tensors: MOE_HF_STORE_DENSE) into the store.
static moe_status moe_hf_store_read(moe_hf_store *s, const moe_ckpt_reader *rd, int layer) {
    moe_ckpt *ck = moe_hf_store_ckpt(s, layer);
    const moe_status st = moe_ckpt_reader_read(rd, ck);
    moe_ckpt_free(ck);
    if (!st && layer >= 0) s->layer = layer;
    return st;
}

moe_status moe_hf_export(const char *checkpoint, const char *out_dir, const moe_hf_export_opts *o,
                         FILE *log) {
    char dir[MOE_PATH_MAX], tmp[MOE_PATH_MAX];
    Moe__Config *cfg = NULL;
    moe_model *all = NULL;
    moe_ckpt_reader *rd = NULL;
    moe_hf_store store = {0};
    moe_hf_entry *ent = NULL;
    int n = 0, made_tmp = 0, *shard = NULL;
    int64_t *bytes = NULL;
    float *buf = NULL;
    moe_hf_arch arch;
    char outb[MOE_PATH_MAX], parent[MOE_PATH_MAX];
    moe_status st = moe_path_fmt(outb, "OUT_DIR", "%s", out_dir);
    if (st) return st;
    for (size_t l = strlen(outb); l > 1 && outb[l - 1] == '/'; l--) outb[l - 1] = 0; // "a/" = "a"
    out_dir = outb;
    snprintf(parent, sizeof parent, "%s", out_dir);
    char *sl = strrchr(parent, '/');
    if (sl && sl != parent)
        *sl = 0;
    else
        snprintf(parent, sizeof parent, "%s", sl ? "/" : ".");
    st = moe_ckpt_resolve(checkpoint, dir, sizeof dir);
    if (!st) st = moe_hf_checkpoint_config(dir, &cfg);
    if (!st) st = moe_model_check(cfg);
    if (!st) st = moe_hf_arch_of(cfg, &arch);
    if (!st) st = moe_hf_check_out(out_dir);
    if (!st) st = moe_path_fmt(tmp, "OUT_DIR", "%s.tmp-%ld", out_dir, (long)getpid());
    if (st) goto out;
    // The world-1 table names every tensor (no storage); the map is built on it.
    const moe_model_layout lay = {1, 0, 1, 0, 0};
    if ((st = moe_model_create_table(cfg, &lay, &all))) goto out;
    moe_hf_store_init(&store, all);
    if ((st = moe_ckpt_reader_open(dir, &rd))) goto out; // every file's CRC32C, once
    moe_ckpt *every =
        moe_hf_store_ckpt(&store, MOE_HF_STORE_EVERY); // every tensor there before any write
    st = moe_ckpt_reader_check(rd, every);
    moe_ckpt_free(every);
    if (!st) st = moe_hf_store_read(&store, rd, MOE_HF_STORE_DENSE);
    if (st) goto out;
    moe_hf_map(all, arch, &ent, &n);
    bytes = moe_xcalloc((size_t)n, sizeof *bytes);
    shard = moe_xcalloc((size_t)n, sizeof *shard);
    int64_t total = 0, most = 0;
    for (int i = 0; i < n; i++) {
        bytes[i] = moe_st_bytes(o->dtype, ent[i].ndim, ent[i].shape);
        total += bytes[i];
        const int64_t numel = ent[i].shape[0] * (ent[i].ndim == 2 ? ent[i].shape[1] : 1);
        most = numel > most ? numel : most;
    }
    const int k = moe_st_shard_plan(bytes, n, o->max_shard_bytes, shard);
    buf = moe_xcalloc((size_t)(most > 0 ? most : 1), sizeof *buf);
    moe_hf_rmdir(tmp); // a leftover of an earlier export with this pid
    if (moe_mkdir_p(parent) != 0 || mkdir(tmp, 0755) != 0) {
        st = moe_set_error(MOE_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    made_tmp = 1;
    for (int s = 0, i = 0; s < k && !st; s++) {
        char name[64], path[MOE_PATH_MAX];
        moe_st_shard_name(name, sizeof name, s, k);
        if ((st = moe_path_fmt(path, "OUT_DIR", "%s/%s", tmp, name))) break;
        moe_st_writer *w = NULL;
        if ((st = moe_st_writer_create(path, o->dtype, &w))) break;
        st = moe_st_set_meta(w, "format", "pt"); // as transformers' save_pretrained writes it
        int end = i;
        while (end < n && shard[end] == s) end++;
        for (int j = i; j < end && !st; j++)
            st = moe_st_declare(w, ent[j].name, ent[j].ndim, ent[j].shape);
        for (int j = i; j < end && !st; j++) {
            const moe_model_tensor *t = ent[j].src >= 0 ? &store.vt[ent[j].src] : NULL;
            if (t && t->expert >= 0 && t->layer != store.layer)
                st = moe_hf_store_read(&store, rd, t->layer);
            if (st) break;
            moe_hf_move(&store.view, &ent[j], buf, 1);
            st = moe_st_write(w, ent[j].name, buf);
        }
        if (st)
            moe_st_writer_abort(w);
        else
            st = moe_st_writer_finish(w);
        i = end;
    }
    if (!st && k > 1) {
        const char **names = moe_xcalloc((size_t)n, sizeof *names);
        for (int i = 0; i < n; i++) names[i] = ent[i].name;
        st = moe_st_index_write(tmp, names, shard, n, k, total);
        free(names);
    }
    if (!st) { // config.json last: a directory with it is complete
        char *json = moe_hf_config_json(cfg, arch, o->dtype);
        st = moe_hf_write_text(tmp, "config.json", json);
        free(json);
    }
    if (!st) {
        rmdir(out_dir); // an empty directory is replaced (moe_hf_check_out)
        if (rename(tmp, out_dir) != 0)
            st =
                moe_set_error(MOE_EIO, "cannot rename %s to %s: %s", tmp, out_dir, strerror(errno));
        else {
            made_tmp = 0;
            const int fd = open(parent, O_RDONLY);
            if (fd >= 0) fsync(fd), close(fd);
        }
    }
    if (!st && log)
        fprintf(log, "moe export: %s -> %s: %s, %d tensors, %lld bytes of %s in %d file%s\n", dir,
                out_dir, moe_hf_arch_class(arch), n, (long long)total, moe_st_dtype_name(o->dtype),
                k, k > 1 ? "s" : "");
out:
    if (made_tmp) moe_hf_rmdir(tmp);
    free(buf);
    free(bytes);
    free(shard);
    free(ent);
    moe_ckpt_reader_free(rd);
    moe_hf_store_free(&store);
    moe_model_free(all);
    moe_config_free(cfg);
    return st;
}
