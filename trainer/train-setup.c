// train-setup.c: what `moe train` sets up, checks and prints before the first step — the
// checkpoint registration and loading (a LoRA checkpoint's base first), the resumed run's seed,
// lora.* and learning-rate schedule against the checkpoint's, the progress header, and `moe
// train --dry-run` (layout, memory per rank, out_dir, checkpoints, data; nothing written). The
// dry run is read-only by design: it must leave out_dir exactly as it found it, so out_dir is
// probed with access(2), not by writing (train.c's real setup writes a probe file).
#include "train-impl.h"
#include "train.h"

#include "config.h"
#include "params.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---------------------------------------------------------------- --init-from: weights only

const char *moe_train_init_source(const Moe__Config *cfg, const moe_train_opts *o,
                                  const char **label) {
    if (o && o->init_from) {
        *label = "--init-from";
        return o->init_from;
    }
    *label = "train.init_from";
    const char *f = cfg->train ? cfg->train->init_from : NULL;
    return f && f[0] ? f : NULL;
}

// The checkpoint `from` (named `label` in messages) resolved into dir, its manifest read (*man,
// free with protobuf_c_message_free_unpacked; may be set on failure) and its model compared with
// cfg's.
static moe_status moe_init_from_check(const Moe__Config *cfg, const char *from, const char *label,
                                      char *dir, size_t cap, Moe__CheckpointManifest **man) {
    char diff[1536];
    moe_status st = moe_ckpt_resolve(from, dir, cap);
    if (!st) st = moe_ckpt_read_manifest(dir, man);
    const char *eq = label[0] == '-' ? " " : " = "; // "--init-from X", "train.init_from = X"
    if (st) // which setting pointed there (a sweep point, a config, the command line)
        return moe_set_error(st, "%s%s%s: %s", label, eq, from, moe_last_error());
    if (!(*man)->config)
        return moe_set_error(MOE_ECORRUPT, "%s%s%s: %s: manifest has no config", label, eq, from,
                             dir);
    // The shapes, compared with every default resolved (an imported config is explicit).
    Moe__Config *a = moe_config_copy((*man)->config), *b = moe_config_copy(cfg);
    Moe__Config *def = moe_config_new_default();
    if (!a->model) a->model = def->model, def->model = NULL;
    moe_config_free(def);
    moe_params_normalize_model(a->model);
    moe_params_normalize_model(b->model);
    if (moe_ckpt_config_diff(a, b, diff, sizeof diff) > 0)
        st = moe_set_error(MOE_EINVAL,
                           "%s %s: the checkpoint is of another model: %s; %s needs the same "
                           "model section",
                           label, dir, diff, label);
    moe_config_free(a);
    moe_config_free(b);
    if (!st && (*man)->config->lora && (*man)->config->lora->rank > 0)
        st = moe_set_error(MOE_EINVAL,
                           "%s %s: a LoRA checkpoint (lora.rank = %d) holds adapters on a base, "
                           "not a model: fold them in first (moe merge %s OUT) and start from OUT",
                           label, dir, (*man)->config->lora->rank, dir);
    return st;
}

moe_status moe_train_check_init_from(const Moe__Config *cfg, const char *from, const char *label,
                                     int verify, char *dir, size_t cap, int64_t *step,
                                     size_t *n_files) {
    Moe__CheckpointManifest *man = NULL;
    moe_status st = moe_init_from_check(cfg, from, label, dir, cap, &man);
    for (size_t i = 0; !st && verify && i < man->n_files; i++)
        if ((st = moe_ckpt_verify_file(dir, man->files[i])))
            st = moe_set_error(st, "%s%s%s: %s", label, label[0] == '-' ? " " : " = ", from,
                               moe_last_error());
    if (!st && step) *step = (int64_t)man->step;
    if (!st && n_files) *n_files = man->n_files;
    if (man) protobuf_c_message_free_unpacked(&man->base, NULL);
    return st;
}

moe_ckpt *moe_train_ckpt_params(const moe_model *m, moe_train_tensor_keep keep, const void *arg) {
    moe_ckpt *ck = moe_ckpt_create();
    for (int i = 0; i < m->n_tensors; i++) {
        const moe_model_tensor *t = &m->tensors[i];
        if (keep && !keep(t, arg)) continue;
        moe_ckpt_tensor ct = {.name = t->name,
                              .kind = moe_ckpt_kind_name(MOE_CKPT_KIND_PARAM),
                              .layer = t->layer,
                              .expert = t->expert,
                              .ndim = t->ndim,
                              .data = m->params + t->offset};
        ct.shape[0] = t->shape[0], ct.shape[1] = t->shape[1];
        moe_ckpt_add(ck, &ct);
    }
    return ck;
}

// Selections for moe_train_ckpt_params: every tensor but the LoRA adapters (--init-from), or
// only the frozen ones (a LoRA run's base).
static int keep_but_adapters(const moe_model_tensor *t, const void *arg) {
    (void)arg;
    return strstr(t->name, ".lora_") == NULL;
}

static int keep_frozen(const moe_model_tensor *t, const void *arg) {
    (void)arg;
    return t->goff < 0;
}

moe_status moe_train_init_from(const Moe__Config *cfg, const moe_comm *c, moe_model *m,
                               const char *from, const char *label, char *base,
                               uint64_t *base_hash) {
    char dir[MOE_PATH_MAX];
    Moe__CheckpointManifest *man = NULL;
    moe_status st = moe_init_from_check(cfg, from, label, dir, sizeof dir, &man);
    if (man) protobuf_c_message_free_unpacked(&man->base, NULL);
    base[0] = 0, *base_hash = 0;
    if (!st && m->lora_rank > 0) { // the base a LoRA run's checkpoints name (an absolute path)
        char cwd[MOE_PATH_MAX];
        if (dir[0] == '/')
            snprintf(base, MOE_PATH_MAX, "%s", dir);
        else if (!getcwd(cwd, sizeof cwd))
            st = moe_set_error(MOE_EIO, "%s %s: getcwd: %s", label, dir, strerror(errno));
        else
            st = moe_path_fmt(base, label, "%s/%s", cwd, dir);
        if (!st) st = moe_ckpt_manifest_hash(base, base_hash);
    }
    if ((st = moe_comm_agree(c, st))) return st;
    // The parameters only (Adam moments and balance bias fresh); LoRA adapters start fresh
    // (B = 0) on any base.
    moe_ckpt *ck = moe_train_ckpt_params(m, keep_but_adapters, NULL);
    moe_ckpt_state cs = {0};
    st = moe_ckpt_load(ck, c, dir, NULL, &cs);
    moe_ckpt_free(ck);
    if (!st)
        moe_comm_printf(c,
                        "initialised from %s (its step %lld; weights only: fresh optimizer "
                        "state, step 0; by %s)\n",
                        dir, (long long)cs.step, label);
    return st;
}

// ---------------------------------------------------------------- checkpoint registration

// Registers every tensor of the model (params, Adam moments, balancing biases) with a checkpoint.
// With LoRA only the trainable tensors (adapters, and what lora.train_router / train_norms add):
// the frozen base is the base checkpoint's, named in the manifest (moe_train_ckpt_load).
// zeros NULL: every family of m; else the Adam moments and balancing biases are all `zeros`.
static moe_ckpt *moe_train_ckpt_register_with(moe_model *m, float *zeros) {
    moe_ckpt *ck = moe_ckpt_create();
    static const moe_ckpt_kind kinds[3] = {MOE_CKPT_KIND_PARAM, MOE_CKPT_KIND_ADAM_M,
                                           MOE_CKPT_KIND_ADAM_V};
    float *fam[3] = {m->params, m->adam_m, m->adam_v};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < m->n_tensors; i++) {
            const moe_model_tensor *t = &m->tensors[i];
            if (t->goff < 0) continue; // frozen (LoRA): the base checkpoint's
            moe_ckpt_tensor ct = {.name = t->name,
                                  .kind = moe_ckpt_kind_name(kinds[k]),
                                  .layer = t->layer,
                                  .expert = t->expert,
                                  .ndim = t->ndim,
                                  .data = k ? (zeros ? zeros : fam[k] + t->goff)
                                            : fam[k] + t->offset};
            ct.shape[0] = t->shape[0], ct.shape[1] = t->shape[1];
            ct.writer = t->expert < 0 ? m->lay.world_rank == 0 : m->lay.edp_rank == 0;
            moe_ckpt_add(ck, &ct);
        }
    for (int l = 0; l < m->L; l++) {
        int mi = m->moe_index[l];
        if (mi < 0) continue;
        char name[48];
        snprintf(name, sizeof name, "layers.%d.router.balance_bias", l);
        moe_ckpt_tensor ct = {.name = name,
                              .kind = moe_ckpt_kind_name(MOE_CKPT_KIND_ROUTER_BIAS),
                              .layer = l,
                              .expert = -1,
                              .ndim = 1,
                              .data = zeros ? zeros : m->balance_bias + (int64_t)mi * m->E,
                              .writer = m->lay.world_rank == 0};
        ct.shape[0] = m->E;
        moe_ckpt_add(ck, &ct);
    }
    return ck;
}

moe_ckpt *moe_train_ckpt_register(moe_model *m) { return moe_train_ckpt_register_with(m, NULL); }

moe_ckpt *moe_train_ckpt_register_store(moe_model *m, float *zeros) {
    MOE_ASSERT(m->params && zeros);
    return moe_train_ckpt_register_with(m, zeros);
}

// ---------------------------------------------------------------- LoRA checkpoints: the base

// The base the LoRA checkpoint at dir (manifest man) names, checked: its path into base ("" when
// it names none), MOE_EINVAL when it is gone or holds another checkpoint.
static moe_status moe_lora_base_check(const Moe__CheckpointManifest *man, const char *dir,
                                      char *base) {
    base[0] = 0;
    if (!man->base_checkpoint || !man->base_checkpoint[0]) return MOE_OK;
    snprintf(base, MOE_PATH_MAX, "%s", man->base_checkpoint);
    uint64_t got = 0;
    moe_status s = moe_ckpt_manifest_hash(base, &got);
    if (s || got != man->base_manifest_hash)
        s = moe_set_error(MOE_EINVAL,
                          "%s: a LoRA checkpoint of the base %s (manifest hash %016llx), which "
                          "%s; its adapters are refused on another base (put that checkpoint "
                          "back, or fine-tune anew with --init-from)",
                          dir, base, (unsigned long long)man->base_manifest_hash,
                          s ? "can no longer be read" : "now holds another checkpoint");
    return s;
}

moe_status moe_train_ckpt_load(moe_model *m, moe_ckpt *ck, const moe_comm *c, const char *where,
                               const Moe__Config *cfg, moe_ckpt_state *st) {
    if (m->lora_rank <= 0) return moe_ckpt_load(ck, c, where, cfg, st);
    char dir[MOE_PATH_MAX], base[MOE_PATH_MAX] = "";
    Moe__CheckpointManifest *man = NULL;
    moe_status s = moe_ckpt_resolve(where, dir, sizeof dir);
    if (!s) s = moe_ckpt_read_manifest(dir, &man);
    if (!s) s = moe_lora_base_check(man, dir, base);
    if (man) protobuf_c_message_free_unpacked(&man->base, NULL);
    if ((s = moe_comm_agree(c, s))) return s;
    if (base[0]) { // the frozen tensors from the base: registered as the base wrote them
        moe_ckpt *bk = moe_train_ckpt_params(m, keep_frozen, NULL);
        s = moe_ckpt_load(bk, c, base, cfg, NULL);
        moe_ckpt_free(bk);
        if (s) return s;
    }
    return moe_ckpt_load(ck, c, dir, cfg, st);
}

// ---------------------------------------------------------------- the progress header

int64_t moe_train_print_header(const Moe__Config *cfg, const moe_comm *c, const moe_model *m,
                               const moe_model_counts *counts, int64_t start) {
    const Moe__TrainConfig *tc = cfg->train;
    const int W = m->lay.world, ep = m->lay.ep;
    moe_params_report pr;
    if (moe_params_count(cfg, W, ep, &pr) != MOE_OK) return 0;
    moe_comm_printf(c,
                    "moe train: %s | %lld params (%lld active per token) | world %d, ep %d | "
                    "%d sequences x %d tokens per step | %lld steps from %lld | out %s\n",
                    cfg->name ? cfg->name : "model", (long long)pr.total, (long long)pr.active, W,
                    ep, tc->global_batch, tc->seq_len, (long long)tc->steps, (long long)start,
                    cfg->out_dir);
    if (m->lora_rank > 0) // what trains and what its state costs (moe params' figures)
        moe_comm_printf(c,
                        "LoRA r %d, alpha %g: %lld trainable parameters (adapters %lld), %lld "
                        "frozen, %lld total with the adapters | gradients + AdamW: %.1f MiB per "
                        "rank (%.1f MiB for full fine-tuning)\n",
                        m->lora_rank, cfg->lora->alpha, (long long)counts->trainable,
                        (long long)pr.lora_total, (long long)counts->frozen,
                        (long long)(pr.total + pr.lora_total),
                        (double)(pr.rank_grad_bytes + pr.rank_adam_bytes) / 1048576.0,
                        (double)pr.rank_full_state_bytes / 1048576.0);
    return pr.total;
}

// ---------------------------------------------------------------- resume: seed and schedule

// The checkpoint at `where`'s manifest (resolved); free with protobuf_c_message_free_unpacked.
static moe_status moe_train_manifest(const char *where, Moe__CheckpointManifest **man) {
    char dir[MOE_PATH_MAX];
    moe_status st = moe_ckpt_resolve(where, dir, sizeof dir);
    return st ? st : moe_ckpt_read_manifest(dir, man);
}

moe_status moe_train_check_seed(const Moe__Config *cfg, const char *where) {
    Moe__CheckpointManifest *man = NULL;
    moe_status st = moe_train_manifest(where, &man);
    if (st) return st;
    const Moe__TrainConfig def = MOE__TRAIN_CONFIG__INIT; // an absent section: its defaults
    const uint64_t was = man->config && man->config->train ? man->config->train->seed : def.seed;
    const uint64_t now = cfg->train->seed;
    if (was != now)
        st = moe_set_error(MOE_EINVAL,
                           "--resume %s: the checkpoint was trained with train.seed = %llu, the "
                           "config says %llu; the batches and the router jitter follow the seed, "
                           "so this would not continue that run: --set train.seed=%llu (or "
                           "start a fresh run in another out_dir)",
                           where, (unsigned long long)was, (unsigned long long)now,
                           (unsigned long long)was);
    protobuf_c_message_free_unpacked(&man->base, NULL);
    return st;
}

// lora.* as text for comparing (targets as a set in enum order; empty with rank > 0: attention).
static void moe_lora_desc(const Moe__LoraConfig *l, char *buf, size_t cap) {
    const Moe__LoraConfig def = MOE__LORA_CONFIG__INIT;
    if (!l) l = &def;
    unsigned mask = 0;
    for (size_t i = 0; i < l->n_targets; i++) mask |= 1u << ((unsigned)l->targets[i] & 31u);
    if (l->rank > 0 && !mask) mask = 1u << MOE__LORA_CONFIG__TARGET__attention;
    if (l->rank <= 0) {
        snprintf(buf, cap, "rank 0 (no adapters)");
        return;
    }
    char names[96] = "";
    for (unsigned t = 0; t < 32; t++) {
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(&moe__lora_config__target__descriptor, (int)t);
        if ((mask >> t & 1u) && ev)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                     names[0] ? "," : "", ev->name);
    }
    snprintf(buf, cap, "rank %d, alpha %g, targets [%s], train_router %s, train_norms %s",
             l->rank, l->alpha, names, l->train_router ? "true" : "false",
             l->train_norms ? "true" : "false");
}

moe_status moe_train_check_lora(const Moe__Config *cfg, const char *where) {
    Moe__CheckpointManifest *man = NULL;
    moe_status st = moe_train_manifest(where, &man);
    if (st) return st;
    char was[256], now[256];
    moe_lora_desc(man->config ? man->config->lora : NULL, was, sizeof was);
    moe_lora_desc(cfg->lora, now, sizeof now);
    if (strcmp(was, now))
        st = moe_set_error(MOE_EINVAL,
                           "--resume %s: the checkpoint was trained with lora %s, the config says "
                           "lora %s; a resumed run must keep its adapters as they were (to start "
                           "a fine-tune from this checkpoint's weights use --init-from in a new "
                           "out_dir)",
                           where, was, now);
    protobuf_c_message_free_unpacked(&man->base, NULL);
    return st;
}

static void moe_train_fmt_schedule(char *buf, size_t cap, const moe_lr_schedule *s) {
    static const char *kind[] = {"cosine", "constant", "linear"};
    snprintf(buf, cap, "%s, lr %g -> min_lr %g over %lld steps, warmup %lld",
             kind[s->kind], s->lr, s->min_lr, (long long)s->steps, (long long)s->warmup_steps);
}

void moe_train_schedule_note(const Moe__Config *cfg, const char *where, int64_t start,
                             const moe_comm *c) {
    Moe__CheckpointManifest *man = NULL;
    if (moe_train_manifest(where, &man) != MOE_OK) return; // the load reported it already
    const Moe__TrainConfig def = MOE__TRAIN_CONFIG__INIT;
    const moe_lr_schedule was = moe_optim_schedule_from_config(
        man->config && man->config->train ? man->config->train : &def);
    const moe_lr_schedule now = moe_optim_schedule_from_config(cfg->train);
    if (was.kind != now.kind || was.lr != now.lr || was.min_lr != now.min_lr ||
        was.warmup_steps != now.warmup_steps || was.steps != now.steps) {
        char a[160], b[160];
        moe_train_fmt_schedule(a, sizeof a, &was);
        moe_train_fmt_schedule(b, sizeof b, &now);
        moe_comm_printf(c,
                        "note: the learning-rate schedule changed on resume:\n"
                        "  checkpoint: %s\n  now:        %s\n"
                        "  step %lld runs at lr %.3g (the checkpoint's schedule: %.3g)\n",
                        a, b, (long long)start + 1, moe_optim_lr(start + 1, &now),
                        moe_optim_lr(start + 1, &was));
    }
    protobuf_c_message_free_unpacked(&man->base, NULL);
}

// ---------------------------------------------------------------- --dry-run

// out_dir usable without writing to it: an existing writable directory, or a path whose nearest
// existing ancestor is one (moe train would create the rest).
static moe_status moe_dry_out_dir(const char *dir, char *what, size_t cap) {
    if (!dir || !dir[0]) return moe_set_error(MOE_EINVAL, "out_dir is empty; set out_dir");
    moe_status st = moe_dir_check("out_dir", dir);
    if (st) return st;
    char p[MOE_PATH_MAX];
    snprintf(p, sizeof p, "%s", dir);
    struct stat sb;
    int missing = 0;
    while (stat(p, &sb) != 0) {
        missing = 1;
        char *sl = strrchr(p, '/');
        if (!sl) {
            snprintf(p, sizeof p, ".");
            continue;
        }
        if (sl == p) sl[1] = 0; else *sl = 0;
    }
    if (!S_ISDIR(sb.st_mode))
        return moe_set_error(MOE_EIO, "out_dir %s: %s is not a directory; set out_dir to another "
                             "path", dir, p);
    if (access(p, W_OK | X_OK) != 0)
        return moe_set_error(MOE_EIO, "out_dir %s: cannot write in %s (%s); set out_dir to a "
                             "writable directory", dir, p, strerror(errno));
    snprintf(what, cap, missing ? "would be created (under %s, writable)" : "exists, writable", p);
    return MOE_OK;
}

// A run starting at step 0 from train.init_from / --init-from: found, the same model, intact.
static moe_status moe_dry_init_from(const Moe__Config *cfg, const moe_train_opts *o,
                                    const moe_comm *c) {
    const char *label, *from = moe_train_init_source(cfg, o, &label);
    if (!from) return MOE_OK;
    char dir[MOE_PATH_MAX];
    int64_t step = 0;
    size_t nf = 0;
    moe_status st = moe_train_check_init_from(cfg, from, label, 1, dir, sizeof dir, &step, &nf);
    if (!st)
        moe_comm_printf(c, "  %s: %s (its step %lld, %zu files verified; the same model): its "
                        "weights, fresh optimizer state\n",
                        label, dir, (long long)step, nf);
    return st;
}

// Checkpoints: a fresh run must find none; --resume must find one that continues this run.
static moe_status moe_dry_checkpoints(const Moe__Config *cfg, const moe_train_opts *o,
                                      const moe_comm *c) {
    const char *out = cfg->out_dir;
    if (!(o && o->resume)) {
        moe_status st = moe_ckpt_check_fresh(out);
        if (!st) st = moe_metrics_check_fresh(out);
        if (!st) moe_comm_printf(c, "  checkpoints: none in %s: a fresh run from step 0\n", out);
        if (!st) st = moe_dry_init_from(cfg, o, c);
        return st;
    }
    char where[MOE_PATH_MAX], dir[MOE_PATH_MAX];
    moe_status st = strcmp(o->resume, "latest")
                        ? moe_path_fmt(where, "--resume", "%s", o->resume)
                        : moe_path_fmt(where, "out_dir", "%s/latest", out);
    if (st) return st;
    st = moe_ckpt_resolve(where, dir, sizeof dir);
    if (st && st != MOE_ECORRUPT && !strcmp(o->resume, "latest")) {
        if ((st = moe_ckpt_check_fresh(out))) return st;
        moe_comm_printf(c, "  checkpoints: none in %s yet: --resume latest starts at step 0\n",
                        out);
        return moe_dry_init_from(cfg, o, c); // a start from step 0 takes train.init_from
    }
    Moe__CheckpointManifest *man = NULL;
    if (!st) st = moe_ckpt_read_manifest(dir, &man);
    if (!st) st = moe_train_check_seed(cfg, where);
    if (!st) st = moe_train_check_lora(cfg, where);
    char base[MOE_PATH_MAX];
    if (!st) st = moe_lora_base_check(man, dir, base); // a LoRA checkpoint's base: still there
    if (!st) st = moe_ckpt_check_newer(out, (int64_t)man->step);
    for (size_t i = 0; !st && i < man->n_files; i++) st = moe_ckpt_verify_file(dir, man->files[i]);
    if (!st) {
        moe_comm_printf(c, "  checkpoints: would resume from %s at step %lld (%zu files "
                        "verified)\n", dir, (long long)man->step, man->n_files);
        moe_train_schedule_note(cfg, where, (int64_t)man->step, c);
        const char *label, *from = moe_train_init_source(cfg, o, &label);
        if (from)
            moe_comm_printf(c, "  %s = %s: ignored, the run resumes from its own checkpoint\n",
                            label, from);
    }
    if (man) protobuf_c_message_free_unpacked(&man->base, NULL);
    return st;
}

// Data: opened and its splits counted; the default corpus is only named when it does not exist.
static moe_status moe_dry_data(const Moe__Config *cfg, const moe_comm *c) {
    const char *path = cfg->data && cfg->data->path && cfg->data->path[0] ? cfg->data->path : NULL;
    char corpus[MOE_PATH_MAX];
    struct stat sb;
    if (!path) {
        moe_status st = moe_path_fmt(corpus, "out_dir", "%s/default-corpus.txt", cfg->out_dir);
        if (st) return st;
        if (stat(corpus, &sb) != 0) {
            moe_comm_printf(c, "  data: data.path unset: the default corpus would be generated "
                            "at %s\n", corpus);
            return MOE_OK;
        }
    }
    Moe__Config *dcfg = moe_config_copy(cfg);
    if (!path) {
        free(dcfg->data->path);
        dcfg->data->path = moe_xstrdup(corpus);
    }
    moe_data *d = NULL;
    moe_status st = moe_data_open_config(dcfg, &d);
    if (!st)
        moe_comm_printf(c, "  data: %s: %lld training tokens, %lld validation tokens\n",
                        dcfg->data->path, (long long)moe_data_train_tokens(d),
                        (long long)moe_data_val_tokens(d));
    moe_data_free(d);
    moe_config_free(dcfg);
    return st;
}

// One line per rank: node, EP group and rank in it, EDP rank, the experts it holds.
static moe_status moe_dry_layout(const moe_comm *c, int W, int E) {
    int64_t *t = moe_xcalloc((size_t)W * 5, sizeof *t);
    const moe_comm_info in = moe_comm_get_info(c);
    const int r = in.world_rank;
    t[5 * r] = in.node_index, t[5 * r + 1] = in.ep_index, t[5 * r + 2] = in.ep_rank;
    t[5 * r + 3] = in.edp_rank, t[5 * r + 4] = in.first_expert;
    moe_status st = moe_comm_allreduce_i64(c, MOE_COMM_WORLD, t, (size_t)W * 5, MOE_COMM_SUM);
    const int El = E > 0 ? E / in.ep_size : 0;
    for (int q = 0; !st && q < W; q++)
        moe_comm_printf(c, "    rank %d: node %lld, EP group %lld (ep_rank %lld), edp_rank %lld, "
                        "experts %lld..%lld\n", q, (long long)t[5 * q], (long long)t[5 * q + 1],
                        (long long)t[5 * q + 2], (long long)t[5 * q + 3], (long long)t[5 * q + 4],
                        (long long)t[5 * q + 4] + El - 1);
    free(t);
    return st;
}

static moe_status moe_dry_memory(const Moe__Config *cfg, const moe_model_layout *lay,
                                 const moe_comm *c, int64_t Bl) {
    moe_model_memory mm;
    moe_status st = moe_model_memory_of(cfg, lay, c, Bl, &mm);
    if (st) return st;
    const double MiB = 1024.0 * 1024;
    moe_comm_printf(c,
                    "  memory per rank: %.1f MiB = %.1f MiB parameters, gradients and AdamW "
                    "state (%lld parameters) + %.1f MiB previous-step copy + %.1f MiB "
                    "activations (%lld sequences of %d tokens); machine %.0f MiB for %d rank(s) "
                    "on this node\n",
                    mm.total_bytes / MiB, mm.state_bytes / MiB, (long long)mm.rank_params,
                    mm.prev_bytes / MiB, mm.activation_bytes / MiB, (long long)Bl,
                    cfg->train->seq_len, mm.machine_bytes / MiB, mm.node_ranks);
    moe_params_report pr;
    if (cfg->lora && cfg->lora->rank > 0 && moe_params_count(cfg, lay->world, lay->ep, &pr) == 0)
        moe_comm_printf(c,
                        "  LoRA: %lld trainable, %lld frozen; gradients + AdamW %.1f MiB per rank "
                        "instead of %.1f MiB for full fine-tuning\n",
                        (long long)pr.trainable, (long long)pr.frozen,
                        (double)(pr.rank_grad_bytes + pr.rank_adam_bytes) / MiB,
                        (double)pr.rank_full_state_bytes / MiB);
    if (mm.machine_bytes > 0 && mm.total_bytes > mm.machine_bytes / mm.node_ranks)
        return moe_set_error(MOE_EINVAL, "this model needs %.1f MiB per rank, more than the "
                             "machine's %.0f MiB shared by %d rank(s) (moe train would refuse it)",
                             mm.total_bytes / MiB, mm.machine_bytes / MiB, mm.node_ranks);
    return MOE_OK;
}

moe_status moe_train_dry_run(const Moe__Config *cfg, const moe_comm *c, const moe_train_opts *o) {
    const moe_model_layout lay = moe_model_layout_of(c);
    const Moe__TrainConfig *tc = cfg->train;
    const int W = lay.world;
    if (tc->global_batch < 1 || tc->global_batch % W != 0)
        return moe_set_error(MOE_ELAYOUT, "train.global_batch = %d is not divisible by the %d "
                             "ranks; choose a multiple of %d", tc->global_batch, W, W);
    moe_params_report pr;
    moe_status st = moe_params_count(cfg, W, lay.ep, &pr);
    if (st) return st;
    moe_comm_printf(c, "moe train --dry-run: %s | %lld params (%lld active per token) | %lld "
                    "steps of %d sequences x %d tokens | out %s\n",
                    cfg->name ? cfg->name : "model", (long long)pr.total, (long long)pr.active,
                    (long long)tc->steps, tc->global_batch, tc->seq_len, cfg->out_dir);
    moe_comm_printf(c, "  layout: world %d = ep %d x edp %d, %d sequences per rank\n", W, lay.ep,
                    W / lay.ep, tc->global_batch / W);
    if (c && (st = moe_dry_layout(c, W, cfg->model->n_experts))) return st;
    if ((st = moe_comm_agree(c, moe_dry_memory(cfg, &lay, c, tc->global_batch / W)))) return st;
    char what[MOE_PATH_MAX + 64] = "";
    const int rank0 = lay.world_rank == 0;
    st = rank0 ? moe_dry_out_dir(cfg->out_dir, what, sizeof what) : MOE_OK;
    if ((st = moe_comm_agree(c, st))) return st;
    moe_comm_printf(c, "  out_dir: %s %s\n", cfg->out_dir, what);
    if ((st = moe_comm_agree(c, rank0 ? moe_dry_checkpoints(cfg, o, c) : MOE_OK))) return st;
    if ((st = moe_comm_agree(c, rank0 ? moe_dry_data(cfg, c) : MOE_OK))) return st;
    moe_comm_printf(c, "moe train --dry-run: all checks passed (config, layout, memory, out_dir, "
                    "checkpoints, data); nothing trained, nothing written\n");
    return MOE_OK;
}
