// train-setup.c: what `moe train` checks before the first step without training — the resumed
// run's seed and learning-rate schedule against the checkpoint's, and `moe train --dry-run`
// (layout, memory per rank, out_dir, checkpoints, data; nothing written). Read-only by design: a
// dry run must leave out_dir exactly as it found it, so out_dir is probed with access(2), not by
// writing (train.c's real setup writes a probe file).
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

moe_status moe_train_init_from(const Moe__Config *cfg, const moe_comm *c, moe_model *m,
                               const char *from, const char *label) {
    char dir[MOE_PATH_MAX];
    Moe__CheckpointManifest *man = NULL;
    moe_status st = moe_init_from_check(cfg, from, label, dir, sizeof dir, &man);
    if (man) protobuf_c_message_free_unpacked(&man->base, NULL);
    if ((st = moe_comm_agree(c, st))) return st;
    moe_ckpt *ck = moe_ckpt_create(); // the parameters only: Adam moments and balance bias fresh
    for (int i = 0; i < m->n_tensors; i++) {
        const moe_model_tensor *t = &m->tensors[i];
        moe_ckpt_tensor ct = {.name = t->name,
                              .kind = moe_ckpt_kind_name(MOE_CKPT_KIND_PARAM),
                              .layer = t->layer,
                              .expert = t->expert,
                              .ndim = t->ndim,
                              .data = m->params + t->offset};
        ct.shape[0] = t->shape[0], ct.shape[1] = t->shape[1];
        moe_ckpt_add(ck, &ct);
    }
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
