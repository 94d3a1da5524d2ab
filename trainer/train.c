// train.c: the training loop — per-rank slice of the global batch, forward/backward, gradient
// sync, one agreed all-reduce per step (non-finite flag, preemption flag, grad norms by group),
// clipping, AdamW, LR schedule, aux-free bias update, metrics, validation, checkpoints, resume.
// Trade-off: per-group weight/gradient/update norms are computed every step (three extra passes
// over the parameters) because the metrics contract is one full record per step. Buffers are
// sized at setup, the metrics line's text and the queue of lines not yet written included
// (trainer/metrics.c); nothing is allocated per step once the line buffer has its steady size,
// except where parallel.exchange = auto switches the MoE layers' exchange between steps (their
// buffers are rebuilt: once per candidate of the trial, once for the choice; exchange-auto.h).
#include "config.h"
#include "exchange-auto.h"
#include "params.h"
#include "train-impl.h"
#include "trace.h"
#include "train.h"
#include "watchdog.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------- preemption

static volatile sig_atomic_t moe_stop_flag = 0, moe_sigint_count = 0;
static int moe_sig_alone;         // 1: not launched by mpirun/srun (Ctrl-C is the user's)
static const char *moe_stop_file; // MOE_STOP_FILE: its existence is a stop request

static void moe_train_on_signal(int sig) {
    moe_stop_flag = 1; // the loop agrees on the step to stop at
    if (sig != SIGINT) return;
    if (++moe_sigint_count >= 2) { // a second Ctrl-C: die as Ctrl-C does (shell status 130)
        signal(SIGINT, SIG_DFL);   // (both async-signal-safe; SIGINT stays blocked until return)
        raise(SIGINT);
        return;
    }
    static const char msg[] = "\nmoe train: SIGINT: stopping after this step with a checkpoint "
                              "(exit 75); press Ctrl-C again to abort without one\n";
    if (moe_sig_alone) {
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
    }
}

void moe_train_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = moe_train_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    moe_sig_alone = !getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE") &&
                    !getenv("PMIX_RANK") && !getenv("SLURM_STEP_ID");
    const char *f = getenv("MOE_STOP_FILE");
    moe_stop_file = f && *f ? f : NULL;
}

// The flag, or the stop file (for launchers that cannot deliver an early signal: Open MPI's
// mpirun drops a SIGUSR1 that arrives before its ranks exist; cluster/mpirun-train.sh).
int moe_train_stop_requested(void) {
    if (!moe_stop_flag && moe_stop_file && access(moe_stop_file, F_OK) == 0) moe_stop_flag = 1;
    return moe_stop_flag != 0;
}

// ---------------------------------------------------------------- helpers

moe_status moe_train_eval(moe_model *m, const moe_data *d, const moe_comm *c, int64_t global_batch,
                          int batches, int32_t *tokens, double *val) {
    const int rank = m->lay.world_rank, W = m->lay.world;
    double sum = 0;
    for (int j = 0; j < batches; j++) {
        moe_data_val_batch(d, j, global_batch, (int64_t)rank * m->Bl, m->Bl, tokens);
        moe_model_loss l;
        moe_status st = moe_model_forward(m, tokens, 0, 0, 0, (int64_t)rank * m->T, &l);
        if (st) return st;
        sum += l.ce;
    }
    if (W > 1) {
        moe_status st = moe_comm_allreduce_f64(c, MOE_COMM_WORLD, &sum, 1, MOE_COMM_SUM);
        if (st) return st;
    }
    *val = sum / ((double)W * (batches > 0 ? batches : 1));
    return MOE_OK;
}

// Creates out_dir and proves it is a writable directory (a probe file is created and removed:
// permission bits alone say nothing for root or a read-only mount), so a bad out_dir is refused
// before any file is written rather than at the first checkpoint.
static moe_status moe_train_out_dir(const char *dir) {
    if (!dir || !dir[0]) return moe_set_error(MOE_EINVAL, "out_dir is empty; set out_dir");
    moe_status st = moe_dir_check("out_dir", dir); // every path moe builds under it then fits
    if (st) return st;
    if (moe_mkdir_p(dir) != 0)
        return moe_set_error(MOE_EIO,
                             "out_dir %s: cannot create (%s); set out_dir to a writable "
                             "directory",
                             dir, strerror(errno));
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return moe_set_error(MOE_EIO,
                             "out_dir %s: exists and is not a directory; remove it or set "
                             "out_dir to another path",
                             dir);
    char probe[MOE_PATH_MAX];
    snprintf(probe, sizeof probe, "%s/.moe-write-probe.%ld", dir, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return moe_set_error(MOE_EIO,
                             "out_dir %s: cannot write there (%s); set out_dir to a "
                             "writable directory",
                             dir, strerror(errno));
    close(fd);
    unlink(probe);
    return MOE_OK;
}

// Opens cfg's data on every rank; data.path unset: the default corpus OUT_DIR/default-corpus.txt,
// generated by rank 0 if missing. Agreed over the world.
moe_status moe_train_open_data(const Moe__Config *cfg, const moe_comm *c, moe_data **out) {
    *out = NULL;
    const int rank = c ? moe_comm_rank(c, MOE_COMM_WORLD) : 0;
    moe_status st = MOE_OK;
    Moe__Config *dcfg = NULL;
    char corpus[MOE_PATH_MAX];
    const char *path = cfg->data && cfg->data->path && cfg->data->path[0] ? cfg->data->path : NULL;
    if (rank == 0) st = moe_train_out_dir(cfg->out_dir);
    if (!path && !st) {
        snprintf(corpus, sizeof corpus, "%s/default-corpus.txt", cfg->out_dir);
        struct stat sb;
        if (rank == 0 && stat(corpus, &sb) != 0) {
            int64_t bytes = 0;
            st = moe_data_make_corpus(corpus, &bytes);
            if (!st)
                moe_comm_printf(c,
                                "data.path unset: generated the default corpus %s (%lld bytes "
                                "of license texts; see docs/data.md)\n",
                                corpus, (long long)bytes);
        } else if (rank == 0) {
            moe_comm_printf(c, "data.path unset: using the default corpus %s\n", corpus);
        }
    }
    if ((st = moe_comm_agree(c, st))) return st;
    if (!path) {
        dcfg = moe_config_copy(cfg); // pointing data.path at the corpus
        if (!dcfg->data) {
            dcfg->data = moe_xcalloc(1, sizeof *dcfg->data);
            moe__data_config__init(dcfg->data);
        }
        free(dcfg->data->path);
        dcfg->data->path = moe_xstrdup(corpus);
    }
    st = moe_data_open_config(dcfg ? dcfg : cfg, out);
    moe_config_free(dcfg);
    return moe_comm_agree(c, st);
}

// ---------------------------------------------------------------- the loop

typedef struct {
    const Moe__Config *cfg;
    const moe_comm *c;
    moe_model *m;
    moe_data *d;
    moe_ckpt *ck;
    moe_train_step_state *step; // the step and its scratch
    int32_t *tokens;            // (Bl, S+1)
    moe_metrics_log *metrics;   // rank 0: metrics.jsonl (a failed write is retried every step)
    moe_watchdog *wd;           // NULL: one rank or watchdog.enabled = false
    moe_straggler *strag;       // rank 0's straggler lines; NULL: off or one rank
    char *js; // (js_cap) the metrics line, reused: grows only until its steady size
    size_t js_cap;
    int64_t B, steps;
    Moe__LayerLoad *lls, **llp;  // (n_moe + 1) metrics record parts, allocated at setup
    Moe__GroupStats *gss, **gsp; // (n_groups)
    int64_t *kept;               // (n_moe, E) loads of the step (validation overwrites the model's)
    moe_xauto xa;                // the exchange setting: fixed, or parallel.exchange = auto's trial
    moe_replay *replay;          // router.replay; NULL: the router selects
    moe_model_counts counts;     // trainable and frozen parameters (the header, every record)
    char base[MOE_PATH_MAX];     // LoRA: the base checkpoint the run's checkpoints name ("": init)
    uint64_t base_hash;          //   and its manifest's hash
    int64_t total_params;        // moe params' total (LoRA adapters not included)
} moe_trainer;

static void moe_fmt_eta(char *buf, size_t cap, double s) {
    if (s < 0) s = 0;
    if (s >= 3600)
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60)
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(buf, cap, "%.0fs", s);
}

static moe_status moe_train_save(moe_trainer *tr, int64_t step, const char *why) {
    const moe_model *m = tr->m;
    moe_ckpt_state st = {.step = step,
                         .rng_state = tr->cfg->train->seed,
                         .data_cursor = (uint64_t)step,
                         .world = m->lay.world,
                         .ep = m->lay.ep};
    if (tr->xa.state == MOE_XAUTO_CHOSEN || tr->xa.state == MOE_XAUTO_RESUMED)
        moe_xsetting_name(&tr->xa.chosen, st.exchange); // kept by a resumed run
    snprintf(st.base, sizeof st.base, "%s", tr->base), st.base_hash = tr->base_hash;
    char path[MOE_PATH_MAX] = "";
    moe_status s = moe_ckpt_save(tr->ck, tr->c, tr->cfg->out_dir, tr->cfg, &st,
                                 tr->cfg->train->keep_checkpoints, path, sizeof path);
    if (s == MOE_OK) moe_comm_printf(tr->c, "checkpoint %s (%s)\n", path, why);
    return s;
}

// Sum of squares per group into out (n_groups) of the parameters (grads 0: every tensor, or
// only the frozen ones with frozen_only) or of the gradients (grads 1: the trainable tensors),
// counting dense tensors only on world rank 0 and expert tensors only on EDP rank 0.
static void moe_group_sumsq(const moe_model *m, int grads, int frozen_only, double *out) {
    memset(out, 0, (size_t)m->n_groups * sizeof(double));
    for (int i = 0; i < m->n_tensors; i++) {
        const moe_model_tensor *t = &m->tensors[i];
        if ((grads || frozen_only) && (t->goff < 0) == grads) continue;
        if (t->expert < 0 ? m->lay.world_rank == 0 : m->lay.edp_rank == 0)
            out[t->group] += moe_optim_sumsq(grads ? m->grads + t->goff : m->params + t->offset, t->n);
    }
}

// ---------------------------------------------------------------- one step

struct moe_train_step_state {
    const Moe__Config *cfg;
    const moe_comm *c;
    moe_model *m;
    moe_lr_schedule sched;
    moe_adamw_params ap;
    double gamma;         // router.bias_update_rate
    const char *nan_hook; // MOE_TRAIN_TEST_NAN_STEP (testing)
    int slow_rank;        // MOE_TRAIN_TEST_SLOW_RANK (testing): this rank sleeps slow_s per step
    double slow_s;        //   from step slow_from on (-1: no rank)
    int64_t slow_from;
    double *red; // (n_groups + 5 + 4·world) the step's agreed all-reduce
    double *upd; // (2·n_groups) update, then weight (before the update) sumsq per group
    double *frozen_wsq; // (n_groups) the frozen tensors' weight sumsq (LoRA: constant)
};

moe_status moe_train_step_create(const Moe__Config *cfg, const moe_comm *c, moe_model *m,
                                 moe_train_step_state **out) {
    MOE_ASSERT(cfg && cfg->train && m && out);
    moe_train_step_state *s = moe_xcalloc(1, sizeof *s);
    s->cfg = cfg, s->c = c, s->m = m;
    s->sched = moe_optim_schedule_from_config(cfg->train);
    s->ap = moe_optim_adamw_from_config(cfg->train);
    s->gamma = m->rc->bias_update_rate;
    s->nan_hook = getenv("MOE_TRAIN_TEST_NAN_STEP"); // testing: "step" or "step:rank"
    s->slow_rank = -1;
    const char *slow = getenv("MOE_TRAIN_TEST_SLOW_RANK"); // testing: "rank:seconds[:from_step]"
    long long from = 0;
    if (slow && sscanf(slow, "%d:%lf:%lld", &s->slow_rank, &s->slow_s, &from) < 2)
        s->slow_rank = -1;
    s->slow_from = from;
    s->red = moe_xcalloc((size_t)(m->n_groups + 5 + 5 * m->lay.world), sizeof(double));
    s->upd = moe_xcalloc((size_t)(2 * m->n_groups), sizeof(double));
    s->frozen_wsq = moe_xcalloc((size_t)m->n_groups, sizeof(double));
    moe_group_sumsq(m, 0, 1, s->frozen_wsq); // frozen weights never change: once
    *out = s;
    return MOE_OK;
}

void moe_train_step_free(moe_train_step_state *s) {
    if (!s) return;
    free(s->red);
    free(s->upd);
    free(s->frozen_wsq);
    free(s);
}

moe_status moe_train_step(moe_train_step_state *s, const int32_t *tokens, int64_t step,
                          moe_train_step_result *r) {
    const Moe__TrainConfig *tc = s->cfg->train;
    const moe_comm *c = s->c;
    moe_model *m = s->m;
    const int W = m->lay.world, rank = m->lay.world_rank, NG = m->n_groups;
    const double t0 = moe_comm_wtime();
    memset(r, 0, sizeof *r);
    moe_model_zero_grads(m);
    moe_model_loss lo;
    moe_status st = moe_model_forward(m, tokens, 1, tc->seed, step, (int64_t)rank * m->T, &lo);
    if (!st) st = moe_model_backward(m);
    if (st) return st;
    if (s->nan_hook) { // "S[:R][+]": NaN into rank R's gradient at step S (and after, with +)
        long long hs = -1, hr = 0;
        int every = strchr(s->nan_hook, '+') != NULL;
        if (sscanf(s->nan_hook, "%lld:%lld", &hs, &hr) >= 1 && (every ? step >= hs : step == hs) &&
            hr == rank)
            m->grads[0] = NAN;
    }
    if (rank == s->slow_rank && step >= s->slow_from) // a straggler: slow outside MPI
        nanosleep(&(struct timespec){(time_t)s->slow_s,
                                     (long)((s->slow_s - (double)(time_t)s->slow_s) * 1e9)},
                  NULL);
    double t_sync = moe_comm_wtime();
    const double compute = t_sync - t0 - moe_model_exchange_seconds(m);
    r->phases = (moe_step_phases){.model = moe_model_step_phases(m)};
    const double t_sync0 = t_sync;
    if (W > 1) {
        if ((st = moe_comm_sync_grads(c, MOE_COMM_GRAD_DENSE, m->grads,
                                      (size_t)m->n_train_dense)))
            return st;
        if ((st = moe_comm_sync_grads(c, MOE_COMM_GRAD_EXPERT, m->grads + m->n_train_dense,
                                      (size_t)(m->n_train - m->n_train_dense))))
            return st;
    }
    t_sync = moe_comm_wtime() - t_sync;
    // One agreed reduction: grad sumsq per group (non-finite if any gradient is: no separate
    // pass), loss, non-finite loss and stop flags, every rank's compute and wait seconds and
    // inter-node exchange bytes (sent, received) and expert pairs, and the intra-node bytes
    // summed.
    double *red = s->red;
    moe_group_sumsq(m, 1, 0, red);
    red[NG] = lo.ce;
    red[NG + 1] = !isfinite(lo.ce) ? 1 : 0;
    red[NG + 2] = moe_train_stop_requested() ? 1 : 0;
    red[NG + 3] = 0;
    const moe_comm_bytes xb = moe_model_exchange_bytes(m);
    red[NG + 4] = (double)xb.sent_intra;
    // (5, W): compute s, wait s, inter-node bytes sent, received, expert pairs computed
    double *per_rank = red + NG + 5;
    memset(per_rank, 0, (size_t)(5 * W) * sizeof(double));
    per_rank[rank] = compute;
    per_rank[W + rank] = moe_model_exchange_seconds(m) + t_sync;
    per_rank[2 * W + rank] = (double)xb.sent_inter;
    per_rank[3 * W + rank] = (double)xb.recv_inter;
    per_rank[4 * W + rank] = (double)moe_model_expert_pairs(m);
    const double t_red = moe_comm_wtime();
    if (W > 1 && (st = moe_comm_allreduce_f64(c, MOE_COMM_WORLD, red, (size_t)(NG + 5 + 5 * W),
                                              MOE_COMM_SUM)))
        return st;
    const double t_opt = moe_comm_wtime();
    t_sync += t_opt - t_red;
    r->phases.sync = t_opt - t_sync0;
    double sumsq = 0;
    for (int g = 0; g < NG; g++) sumsq += red[g];
    r->ce = red[NG] / W;
    r->loss = r->ce + lo.aux + lo.z;
    r->aux = lo.aux, r->z = lo.z;
    r->nonfinite = red[NG + 1] > 0 || !isfinite(sumsq);
    r->stop = red[NG + 2] > 0;
    r->lr = moe_optim_lr(step + 1, &s->sched);
    r->grad_norm = sqrt(sumsq);
    r->grad_sumsq = red, r->update_sumsq = s->upd, r->weight_sumsq = s->upd + NG;
    r->rank_compute_seconds = per_rank, r->rank_wait_seconds = per_rank + W;
    r->rank_internode_sent = per_rank + 2 * W, r->rank_internode_recv = per_rank + 3 * W;
    r->rank_expert_pairs = per_rank + 4 * W;
    r->bytes_intranode = red[NG + 4];
    r->bytes_internode = 0;
    for (int q = 0; q < W; q++) r->bytes_internode += per_rank[2 * W + q];
    r->exchange_seconds = moe_model_exchange_seconds(m);
    r->allreduce_seconds = t_sync;
    double *upd = s->upd, *wsq = s->upd + NG;
    memset(upd, 0, (size_t)(2 * NG) * sizeof(double));
    if (r->nonfinite) { // no update; the weight norms still go into the record
        moe_group_sumsq(m, 0, 0, wsq);
    } else {
        // AdamW tensor by tensor, the record's weight and update norms in the same pass.
        r->clip = moe_optim_clip_scale(sumsq, tc->grad_clip);
        for (int g = 0; g < NG; g++) wsq[g] = s->frozen_wsq[g];
        for (int i = 0; i < m->n_tensors; i++) {
            const moe_model_tensor *t = &m->tensors[i];
            if (t->goff < 0) continue; // frozen (LoRA base)
            double sums[2] = {0, 0};
            moe_optim_adamw_step(m->params + t->offset, m->adam_m + t->goff, m->adam_v + t->goff,
                                 m->grads + t->goff, t->n, &s->ap, step + 1, r->lr, t->decay,
                                 r->clip, sums);
            // every parameter counted once over the world, as moe_group_sumsq does
            if (t->expert < 0 ? rank == 0 : m->lay.edp_rank == 0)
                wsq[t->group] += sums[0], upd[t->group] += sums[1];
        }
        if (s->gamma > 0)
            for (int i = 0; i < m->n_moe; i++)
                moe_router_update_bias(m->balance_bias + (int64_t)i * m->E, m->stats[i].selected,
                                       m->E, s->gamma);
    }
    if (W > 1 &&
        (st = moe_comm_allreduce_f64(c, MOE_COMM_WORLD, upd, (size_t)(2 * NG), MOE_COMM_SUM)))
        return st;
    r->step_seconds = moe_comm_wtime() - t0;
    r->phases.optimizer = t0 + r->step_seconds - t_opt;
    return MOE_OK;
}

// ---------------------------------------------------------------- the loop

// The metrics record of one step: the world-level figures on every rank; per-layer loads and
// per-group norms on rank 0 only (into the trainer's preallocated parts). *load_max: the largest
// max/mean load over the MoE layers, *aux: the summed aux loss (both for the progress line).
static void moe_train_record(moe_trainer *tr, const moe_train_step_result *sr, int64_t step,
                             double t_step, int64_t skipped, Moe__MetricsRecord *rec,
                             double *load_max, double *aux) {
    const moe_model *m = tr->m;
    const double *red = sr->grad_sumsq, *wsq = sr->weight_sumsq, *upd = sr->update_sumsq;
    Moe__LayerLoad *lls = tr->lls, **llp = tr->llp;
    Moe__GroupStats *gss = tr->gss, **gsp = tr->gsp;
    double active = (double)m->dense_active;
    *load_max = 0, *aux = 0;
    if (m->lay.world_rank == 0) {
        for (int i = 0; i < m->n_moe; i++) {
            const moe_model_layer_stats *s = &m->stats[i];
            Moe__LayerLoad *L = &lls[i];
            moe__layer_load__init(L);
            L->has_layer = 1, L->layer = s->layer;
            L->n_tokens_per_expert = (size_t)m->E;
            L->tokens_per_expert = tr->kept + (int64_t)i * m->E;
            memcpy(L->tokens_per_expert, s->kept, (size_t)m->E * sizeof(int64_t));
            L->has_dropped = 1, L->dropped = s->dropped;
            L->has_max_over_mean = 1, L->max_over_mean = s->max_over_mean;
            L->has_cv = 1, L->cv = s->cv;
            L->has_entropy = 1, L->entropy = s->entropy;
            L->has_aux_loss = 1, L->aux_loss = s->aux;
            L->has_z_loss = 1, L->z_loss = s->z;
            llp[i] = L;
            if (s->max_over_mean > *load_max) *load_max = s->max_over_mean;
            int64_t kept = 0;
            for (int e = 0; e < m->E; e++) kept += s->kept[e];
            active += (double)kept / (double)(s->tokens > 0 ? s->tokens : 1) * m->expert_params;
            *aux += s->aux;
        }
        size_t ng = 0;
        for (int g = 0; g < m->n_groups; g++) {
            if (wsq[g] == 0 && red[g] == 0) continue; // an empty group (e.g. tied head)
            Moe__GroupStats *G = &gss[ng];
            moe__group_stats__init(G);
            G->group = m->group_names[g];
            G->has_weight_norm = 1, G->weight_norm = sqrt(wsq[g]);
            G->has_grad_norm = 1, G->grad_norm = sqrt(red[g]);
            G->has_update_ratio = 1;
            G->update_ratio = wsq[g] > 0 ? sqrt(upd[g] / wsq[g]) : 0;
            gsp[ng++] = G;
        }
        rec->n_groups = ng, rec->groups = gsp;
        rec->n_layers = (size_t)m->n_moe, rec->layers = llp;
        if (m->lay.world <= 256) { // per-rank figures (a line of 4096 ranks would be ~80 KB)
            rec->n_rank_compute_seconds = rec->n_rank_wait_seconds = (size_t)m->lay.world;
            rec->rank_compute_seconds = (double *)sr->rank_compute_seconds;
            rec->rank_wait_seconds = (double *)sr->rank_wait_seconds;
            rec->n_rank_internode_bytes_sent = rec->n_rank_internode_bytes_recv =
                (size_t)m->lay.world;
            rec->rank_internode_bytes_sent = (double *)sr->rank_internode_sent;
            rec->rank_internode_bytes_recv = (double *)sr->rank_internode_recv;
            rec->n_rank_expert_pairs = (size_t)m->lay.world;
            rec->rank_expert_pairs = (double *)sr->rank_expert_pairs;
        }
        double pmax = 0, psum = 0;
        for (int q = 0; q < m->lay.world; q++) {
            psum += sr->rank_expert_pairs[q];
            if (sr->rank_expert_pairs[q] > pmax) pmax = sr->rank_expert_pairs[q];
        }
        if (m->n_moe > 0) {
            rec->has_rank_load_max_over_mean = 1;
            rec->rank_load_max_over_mean = psum > 0 ? pmax * m->lay.world / psum : 0;
        }
    }
    rec->has_step = 1, rec->step = step + 1;
    rec->has_loss = 1, rec->loss = sr->loss;
    rec->has_aux_loss = 1, rec->aux_loss = sr->aux;
    rec->has_z_loss = 1, rec->z_loss = sr->z;
    rec->has_lr = 1, rec->lr = sr->lr;
    rec->has_grad_norm = 1, rec->grad_norm = sr->grad_norm;
    rec->has_tokens_per_s = 1, rec->tokens_per_s = (double)tr->B * m->S / t_step;
    rec->has_exchange_seconds = 1, rec->exchange_seconds = sr->exchange_seconds;
    rec->has_allreduce_seconds = 1, rec->allreduce_seconds = sr->allreduce_seconds;
    rec->has_step_seconds = 1, rec->step_seconds = t_step;
    rec->has_skipped_steps = 1, rec->skipped_steps = skipped;
    rec->has_active_params = 1, rec->active_params = (int64_t)llround(active);
    rec->has_total_params = 1, rec->total_params = tr->total_params;
    rec->has_trainable_params = 1, rec->trainable_params = tr->counts.trainable;
    rec->has_frozen_params = 1, rec->frozen_params = tr->counts.frozen;
    rec->has_exchange_bytes_intranode = 1, rec->exchange_bytes_intranode = sr->bytes_intranode;
    rec->has_exchange_bytes_internode = 1, rec->exchange_bytes_internode = sr->bytes_internode;
    rec->has_internode_bytes_per_token = 1;
    rec->internode_bytes_per_token = sr->bytes_internode / ((double)tr->B * m->S);
}

static moe_status moe_train_loop(moe_trainer *tr, int64_t start, moe_train_result *res) {
    const Moe__Config *cfg = tr->cfg;
    const Moe__TrainConfig *tc = cfg->train;
    const moe_comm *c = tr->c;
    moe_model *m = tr->m;
    const int rank = m->lay.world_rank;
    const char *sig_hook = getenv("MOE_TRAIN_TEST_SIGNAL_STEP"); // testing: "step:rank"
    int64_t consecutive = 0, skipped = 0;
    double t_begin = moe_comm_wtime();
    int64_t steps_done_here = 0;
    const char *hang_hook = getenv("MOE_TRAIN_TEST_HANG_STEP"); // testing: "step:rank"
    for (int64_t step = start; step < tr->steps; step++) {
        moe_watchdog_enter(tr->wd, MOE_WATCH_STEP, step + 1);
        double t0 = moe_comm_wtime();
        if (hang_hook) { // a live rank that stops making progress (its heartbeats go on)
            long long hs = -1, hr = 0;
            if (sscanf(hang_hook, "%lld:%lld", &hs, &hr) >= 1 && hs == step && hr == rank)
                for (;;) sleep(1);
        }
        if (sig_hook) {
            long long hs = -1, hr = 0;
            if (sscanf(sig_hook, "%lld:%lld", &hs, &hr) >= 1 && hs == step && hr == rank)
                raise(SIGUSR1);
        }
        moe_data_train_batch(tr->d, step, (int64_t)rank * m->Bl, m->Bl, tr->tokens);
        moe_status st = moe_xauto_prepare(&tr->xa, m, cfg); // auto: a candidate, or the choice
        if (st) return st;
        if (tr->replay && (st = moe_replay_step(tr->replay, m, c, step + 1, tr->tokens))) return st;
        moe_train_step_result sr;
        if ((st = moe_train_step(tr->step, tr->tokens, step, &sr))) return st;
        if ((st = moe_trace_record_step(m, c, cfg, step + 1, tr->tokens))) return st;
        const int xa_ended = moe_xauto_step_done(&tr->xa, sr.rank_compute_seconds,
                                                 sr.rank_wait_seconds, m->lay.world);
        const double loss = sr.loss, lr = sr.lr, t_sync = sr.allreduce_seconds;
        const int stop = sr.stop;
        if (sr.nonfinite) {
            skipped++;
            consecutive++;
            moe_comm_printf(c,
                            "step %lld: non-finite loss or gradient; step skipped (%lld in a row, "
                            "limit train.max_nonfinite_steps = %d)\n",
                            (long long)step + 1, (long long)consecutive, tc->max_nonfinite_steps);
            if (consecutive > tc->max_nonfinite_steps)
                return moe_set_error(MOE_ENONFINITE,
                                     "%lld consecutive non-finite steps (limit "
                                     "train.max_nonfinite_steps = %d) at step %lld; stopping. The "
                                     "last good checkpoint is intact: lower train.lr or raise "
                                     "train.grad_clip's strictness, then --resume latest",
                                     (long long)consecutive, tc->max_nonfinite_steps,
                                     (long long)step + 1);
        } else {
            consecutive = 0;
        }
        const double t_step = moe_comm_wtime() - t0;
        steps_done_here++;
        // ------------------------------------------------ metrics (rank 0)
        Moe__MetricsRecord rec = MOE__METRICS_RECORD__INIT;
        double load_max, aux;
        moe_train_record(tr, &sr, step, t_step, skipped, &rec, &load_max, &aux);
        moe_xauto_record(&tr->xa, xa_ended, &rec);
        const int last = step + 1 == tr->steps;
        const int do_eval =
            moe_data_val_tokens(tr->d) > 0 && tc->eval_batches > 0 &&
            ((tc->eval_interval > 0 && (step + 1) % tc->eval_interval == 0) || last);
        if (do_eval) {
            double val;
            if ((st = moe_train_eval(m, tr->d, c, tr->B, tc->eval_batches, tr->tokens, &val)))
                return st;
            rec.has_val_loss = 1, rec.val_loss = val;
            res->val_loss = val;
        }
        if ((st = moe_trace_train_step(m, tr->d, c, cfg, step + 1, tr->tokens))) return st;
        if (rank == 0) {
            moe_straggler_add(tr->strag, sr.rank_compute_seconds, sr.rank_wait_seconds);
            if (tr->metrics) {
                int64_t n =
                    moe_json_format_message_buf(&rec.base, MOE_JSON_COMPACT, &tr->js, &tr->js_cap);
                if (n >= 0)
                    moe_metrics_append(tr->metrics, tr->js, (size_t)n, step + 1);
                else
                    fprintf(stderr,
                            "[rank 0] moe train: warning: step %lld: no memory for the "
                            "metrics record; not recorded\n",
                            (long long)step + 1);
            }
            if (tc->log_interval > 0 &&
                ((step + 1) % tc->log_interval == 0 || last || step == start)) {
                char eta[32];
                double per = (moe_comm_wtime() - t_begin) / (double)steps_done_here;
                moe_fmt_eta(eta, sizeof eta, per * (double)(tr->steps - step - 1));
                double exch = rec.exchange_seconds + t_sync;
                printf("step %6lld/%lld | loss %.4f | aux %.4f | lr %.2e | %8.0f tok/s | "
                       "worst layer load max/mean %.2f | exchange %2.0f%% | eta %s%s",
                       (long long)step + 1, (long long)tr->steps, loss, aux, lr, rec.tokens_per_s,
                       load_max, 100.0 * exch / t_step, eta, do_eval ? "" : "\n");
                if (do_eval) printf(" | val %.4f\n", rec.val_loss);
                char line[512];
                if (moe_straggler_report(tr->strag, line, sizeof line)) printf("%s\n", line);
                fflush(stdout);
            } else if (do_eval) {
                printf("step %6lld/%lld | val %.4f\n", (long long)step + 1, (long long)tr->steps,
                       rec.val_loss);
            }
            if (xa_ended) {
                char xl[512];
                moe_xauto_describe(&tr->xa, xl, sizeof xl);
                printf("step %6lld/%lld | %s\n", (long long)step + 1, (long long)tr->steps, xl);
                fflush(stdout);
            }
        }
        res->step = step + 1;
        res->loss = loss;
        res->skipped = skipped;
        moe_watchdog_leave(tr->wd);
        // ------------------------------------------------ checkpoints, preemption
        const int64_t ci = tc->checkpoint_interval;
        if ((ci > 0 && (step + 1) % ci == 0) || last || stop) {
            moe_watchdog_enter(tr->wd, MOE_WATCH_CHECKPOINT, step + 1);
            st = moe_train_save(tr, step + 1, stop ? "preempted" : last ? "final" : "interval");
            moe_watchdog_leave(tr->wd);
            if (st) return st;
        }
        if (stop && !last)
            return moe_set_error(MOE_EINTR,
                                 "preempted (SIGUSR1/SIGTERM/SIGINT): stopped after step %lld "
                                 "with a checkpoint; run again with --resume latest",
                                 (long long)step + 1);
    }
    return MOE_OK;
}

moe_watchdog_params moe_train_watchdog_params(const Moe__Config *cfg) {
    static const Moe__WatchdogConfig def_wd = MOE__WATCHDOG_CONFIG__INIT; // the proto defaults
    const Moe__WatchdogConfig *wc = cfg->watchdog ? cfg->watchdog : &def_wd;
    return (moe_watchdog_params){.enabled = wc->enabled,
                                 .startup_timeout = wc->startup_timeout,
                                 .step_timeout = wc->step_timeout,
                                 .checkpoint_timeout = wc->checkpoint_timeout,
                                 .silence_timeout = wc->silence_timeout,
                                 .heartbeat = wc->heartbeat};
}

moe_status moe_train_run(const Moe__Config *cfg, const moe_comm *c, const moe_train_opts *o,
                         moe_train_result *res) {
    memset(res, 0, sizeof *res);
    const moe_model_layout lay = moe_model_layout_of(c);
    const Moe__TrainConfig *tc = cfg->train;
    const int W = lay.world;
    moe_status st = MOE_OK;
    if (tc->global_batch < 1 || tc->global_batch % W != 0)
        return moe_set_error(MOE_ELAYOUT,
                             "train.global_batch = %d is not divisible by the %d ranks; "
                             "choose a multiple of %d",
                             tc->global_batch, W, W);
    moe_trainer tr = {.cfg = cfg, .c = c, .B = tc->global_batch, .steps = tc->steps};
    const moe_watchdog_params wp = moe_train_watchdog_params(cfg);
    if ((st = moe_comm_agree(c, moe_watchdog_start(c, &wp, &tr.wd)))) return st;
    const int64_t Bl = tc->global_batch / W;
    // A fresh run refuses an earlier run's files first, before the data's lines (setup errors
    // come before anything else is printed).
    if (!(o && o->resume) && (st = moe_comm_agree(c, moe_ckpt_check_fresh(cfg->out_dir)))) goto out;
    if (!(o && o->resume) && lay.world_rank == 0) st = moe_metrics_check_fresh(cfg->out_dir);
    if ((st = moe_comm_agree(c, st))) goto out;
    const char *init_label, *init = moe_train_init_source(cfg, o, &init_label);
    if (init && !(o && o->resume)) { // a fresh run's weights: refused before anything is set up
        char dir[MOE_PATH_MAX];
        st = lay.world_rank == 0 ? moe_train_check_init_from(cfg, init, init_label, 0, dir,
                                                             sizeof dir, NULL, NULL)
                                 : MOE_OK;
        if ((st = moe_comm_agree(c, st))) goto out;
    }
    if ((st = moe_train_open_data(cfg, c, &tr.d))) goto out;
    if (moe_data_val_tokens(tr.d) == 0 && tc->eval_interval > 0)
        moe_comm_printf(c, "note: no validation split (data.val_fraction = 0, no data.val_path): "
                           "no validation loss\n");
    st = moe_model_create(cfg, &lay, c, Bl, &tr.m);
    if ((st = moe_comm_agree(c, st))) goto out;
    tr.ck = moe_train_ckpt_register(tr.m);
    tr.tokens = moe_xcalloc((size_t)(Bl * (tc->seq_len + 1)), sizeof(int32_t));
    if ((st = moe_train_step_create(cfg, c, tr.m, &tr.step))) goto out;
    tr.lls = moe_xcalloc((size_t)(tr.m->n_moe + 1), sizeof *tr.lls);
    tr.llp = moe_xcalloc((size_t)(tr.m->n_moe + 1), sizeof *tr.llp);
    tr.gss = moe_xcalloc((size_t)tr.m->n_groups, sizeof *tr.gss);
    tr.gsp = moe_xcalloc((size_t)tr.m->n_groups, sizeof *tr.gsp);
    tr.kept = moe_xcalloc((size_t)(tr.m->n_moe + 1) * (size_t)(tr.m->E + 1), sizeof(int64_t));
    moe_xauto_init(&tr.xa, cfg, c);
    int64_t start = 0;
    int resumed = 0; // a checkpoint of this run was loaded
    if (o && o->resume) {
        char where[MOE_PATH_MAX], dir[MOE_PATH_MAX];
        if (!strcmp(o->resume, "latest"))
            snprintf(where, sizeof where, "%s/latest", cfg->out_dir);
        else if ((st = moe_comm_agree(c, moe_path_fmt(where, "--resume", "%s", o->resume))))
            goto out;
        moe_status rs =
            strcmp(o->resume, "latest") ? MOE_OK : moe_ckpt_resolve(where, dir, sizeof dir);
        if (rs == MOE_ECORRUPT) { // LATEST exists but is unreadable: never fall back to step 0
            st = moe_comm_agree(c, rs);
            goto out;
        } else if (rs) { // no LATEST: a fresh start, unless checkpoints are there anyway
            if ((st = moe_comm_agree(c, moe_ckpt_check_fresh(cfg->out_dir)))) goto out;
            moe_comm_printf(c, "--resume latest: no checkpoint in %s yet; starting from step 0\n",
                            cfg->out_dir);
        } else {
            moe_ckpt_state cs = {0};
            if ((st = moe_comm_agree(c, moe_train_check_lora(cfg, where)))) goto out;
            st = moe_train_ckpt_load(tr.m, tr.ck, c, where, cfg, &cs);
            if (st) goto out;
            snprintf(tr.base, sizeof tr.base, "%s", cs.base), tr.base_hash = cs.base_hash;
            if ((st = moe_comm_agree(c, moe_train_check_seed(cfg, where)))) goto out;
            start = cs.step;
            resumed = 1;
            moe_xauto_resume(&tr.xa, cs.exchange);
            if ((st = moe_comm_agree(c, moe_ckpt_check_newer(cfg->out_dir, start)))) goto out;
            moe_comm_printf(c,
                            "resumed from %s at step %lld (written at world %d, ep %d; now "
                            "world %d, ep %d)\n",
                            where, (long long)start, cs.world, cs.ep, W, lay.ep);
            moe_train_schedule_note(cfg, where, start, c);
        }
    }
    if (init && resumed) // the run's own checkpoint wins: a rerun after preemption continues
        moe_comm_printf(c, "%s = %s: ignored, the run resumed from its own checkpoint\n",
                        init_label, init);
    else if (init && (st = moe_train_init_from(cfg, c, tr.m, init, init_label, tr.base,
                                               &tr.base_hash)))
        goto out;
    if (cfg->router && cfg->router->replay && cfg->router->replay[0] && start < tc->steps) {
        if ((st = moe_replay_open(cfg, tr.m, c, start + 1, tc->steps, &tr.replay))) goto out;
        moe_comm_printf(c, "router.replay: each step's experts from %s\n", cfg->router->replay);
    }
    if (tc->record_routing && tr.m->n_moe == 0)
        moe_comm_printf(c, "note: train.record_routing: the model has no MoE layers; nothing is "
                           "recorded\n");
    if (lay.world_rank == 0) { // resumed (also from step 0): the records up to the checkpoint
        char mp[MOE_PATH_MAX];
        snprintf(mp, sizeof mp, "%s/metrics.jsonl", cfg->out_dir);
        if (o && o->resume) st = moe_metrics_trim(mp, start, stdout);
        const size_t line = 1024 + (size_t)tr.m->n_moe * (200 + 21 * (size_t)tr.m->E) +
                            (size_t)tr.m->n_groups * 160; // bytes of one record, roughly
        if (!st) st = moe_metrics_open(mp, !(o && o->resume), line, &tr.metrics);
    }
    if ((st = moe_comm_agree(c, st))) goto out;
    tr.counts = moe_model_count_params(tr.m);
    tr.total_params = moe_train_print_header(cfg, c, tr.m, &tr.counts, start);
    if (lay.ep > 1) {
        char xl[512];
        moe_xauto_describe(&tr.xa, xl, sizeof xl);
        moe_comm_printf(c, "%s\n", xl);
    }
    char ov[512];
    if (c && moe_comm_cross_node_cpu_overlap(c, ov, sizeof ov) > 0)
        moe_comm_printf(c, "warning: %s\n", ov);
    if (start >= tc->steps) { // e.g. --resume latest of a finished run: nothing is written
        moe_comm_printf(c,
                        "moe train: the checkpoint is at step %lld and train.steps = %lld: "
                        "nothing to train (raise train.steps to continue)\n",
                        (long long)start, (long long)tc->steps);
        res->step = start;
        res->loss = NAN;
        goto out;
    }
    if (lay.world_rank == 0) {
        static const Moe__WatchdogConfig def_wd = MOE__WATCHDOG_CONFIG__INIT;
        tr.strag =
            moe_straggler_create(c, W, (cfg->watchdog ? cfg->watchdog : &def_wd)->straggler_ratio);
    }
    st = moe_train_loop(&tr, start, res);
    if (st == MOE_EINTR) goto out;
    st = moe_comm_agree(c, st);
out:
    moe_watchdog_stop(tr.wd);
    moe_straggler_free(tr.strag);
    moe_replay_free(tr.replay);
    moe_metrics_close(tr.metrics);
    moe_ckpt_free(tr.ck);
    moe_model_free(tr.m);
    moe_data_free(tr.d);
    moe_train_step_free(tr.step);
    free(tr.tokens);
    free(tr.js);
    free(tr.lls);
    free(tr.llp);
    free(tr.gss);
    free(tr.gsp);
    free(tr.kept);
    return st;
}
