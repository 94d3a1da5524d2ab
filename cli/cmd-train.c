// cmd-train.c: `moe train CONFIG [--set a.b=v]... [--resume latest|DIR]` and `moe eval --checkpoint
// DIR [--data FILE] [--batches N] [--set a.b=v]... [--trace FILE [--trace-batches N]]
// [--logits FILE]` under mpirun/srun (or alone). Setup failures are agreed over the world so no
// rank is left waiting; config errors print once (rank 0), run errors on their rank.
#include "config.h"
#include "cli.h"
#include "moe-args.h"
#include "params.h"
#include "trace.h"
#include "train.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

// BLAS threads per rank: OPENBLAS_NUM_THREADS if set, else the cores this rank owns.
static void moe_train_blas_threads(const moe_comm *c) {
    if (getenv("OPENBLAS_NUM_THREADS")) return;
    int n = 1;
    if (moe_comm_blas_threads(c, &n) == MOE_OK && n >= 1) openblas_set_num_threads(n);
}

// Prints the error once: config/layout errors (same on every rank) and agreed ones
// (moe_comm_agree: "rank R: ..." on every rank) on rank 0, others on the rank that failed.
static void moe_train_report(const moe_comm *c, const char *cmd, moe_status st, int everywhere) {
    const char *msg = moe_last_error();
    int rank = c ? moe_comm_rank(c, MOE_COMM_WORLD) : 0, who = -1, n = 0;
    int agreed = sscanf(msg, "rank %d: %n", &who, &n) == 1 && n > 0;
    if ((everywhere && !agreed) || rank == 0)
        fprintf(stderr, "[rank %d] moe %s: %s (%s)\n", rank, cmd, msg, moe_status_str(st));
}

// Loads the config (identical on every rank) and builds the groups. On error *c may be a world
// with ep 1 (so the caller can print once and finalize).
static moe_status moe_train_setup(const char *path, const char **sets, int n_sets,
                                  Moe__Config **cfg, moe_comm **c) {
    moe_status st = moe_config_load_with(path, sets, n_sets, 0, cfg);
    if (st == MOE_EIO) st = MOE_EUSAGE; // the CONFIG argument names no readable file: bad usage
    int hf = 0; // a Hugging Face config.json: its unknown fields would only suggest "model"
    if (st == MOE_EINVAL && strcmp(path, "-") && moe_hf_config_detect(path, &hf) == MOE_OK && hf)
        st = moe_set_error(MOE_EINVAL,
                           "%s is a Hugging Face config.json, not a moe config: moe params %s "
                           "counts its parameters; to train, write a moe config with its shape "
                           "(docs/config.md, docs/params.md for the field mapping)",
                           path, path);
    if (!st) st = moe_model_check(*cfg);
    moe_comm_params cp = {.ep_size = 1, .n_experts = 0, .quiet = 0};
    // Testing hook (docs/training.md): pretend every N consecutive ranks form a node.
    const char *fake = getenv("MOE_TRAIN_TEST_NODE_SIZE");
    if (fake) cp.fake_node_size = atoi(fake) > 0 ? atoi(fake) : 0;
    if (!st) {
        cp.ep_size = (*cfg)->parallel ? (*cfg)->parallel->ep_size : 1;
        cp.n_experts = (*cfg)->model->n_experts;
    }
    char saved[MOE_ERROR_MAX]; // the whole message (a list of problems is never cut here)
    snprintf(saved, sizeof saved, "%s", moe_last_error());
    moe_status cs = moe_comm_create(&cp, c);
    if (cs) {
        if (st) moe_set_error(st, "%s", saved);
        if (!st) {
            // Layout refused (identical everywhere): rebuild a plain world to report it once.
            snprintf(saved, sizeof saved, "%s", moe_last_error());
            moe_comm_params one = {.ep_size = 1, .quiet = 1};
            if (moe_comm_create(&one, c) != MOE_OK) *c = NULL;
            moe_set_error(cs, "%s", saved);
        }
        return st ? st : cs;
    }
    if (st) {
        moe_set_error(st, "%s", saved);
        return st;
    }
    st = moe_config_validate(*cfg, moe_comm_size(*c, MOE_COMM_WORLD));
    return st;
}

int moe_cmd_train(int argc, char **argv) {
    // First: a SIGUSR1/SIGTERM/SIGINT from the first instant (before MPI_Init and setup, which
    // take a while; Open MPI leaves these alone) is kept and honoured at the first step:
    // checkpoint, exit 75 — instead of killing the rank. (docs/training.md "Preemption")
    moe_train_install_signals();
    const char *path = NULL, *resume = NULL, *init_from = NULL;
    int dry_run = 0;
    moe_args_list sets = {0};
    const moe_arg_pos pos[] = {
        {"CONFIG", MOE_ARG_STRING, &path, 1, 1, "the run's config (JSON, see docs/config.md)"},
    };
    const moe_arg_opt opts[] = {
        MOE_OPT_LIST("--set", &sets, "a.b=v", "override a config field (as moe config --set)"),
        MOE_OPT_STRING("--resume", &resume, "latest|DIR",
                       "latest: from OUT_DIR's newest checkpoint (fresh start if\n"
                       "none); DIR: from that checkpoint"),
        MOE_OPT_STRING("--init-from", &init_from, "CHECKPOINT",
                       "start from that checkpoint's weights (a moe run or moe import):\n"
                       "fresh optimizer state, step 0; the model section must match\n"
                       "(overrides train.init_from, which --resume may be combined with)"),
        MOE_OPT_FLAG("--dry-run", &dry_run,
                     "check everything (config, layout, memory per rank, out_dir,\n"
                     "checkpoints, data) and print it; train nothing, write nothing"),
    };
    const moe_args_spec spec = {
        "moe train",
        "Trains the model of CONFIG (JSON, see docs/config.md) on data.path (unset: the\n"
        "default corpus, generated into out_dir) with every rank of the launch\n"
        "(mpirun -np N / srun): parallel.ep_size experts groups, global batch split evenly.\n"
        "Writes OUT_DIR/metrics.jsonl (one JSON record per step) and checkpoints under\n"
        "OUT_DIR/checkpoints. --resume latest continues from OUT_DIR's newest checkpoint\n"
        "(fresh start if none), --resume DIR from that checkpoint; another world size or\n"
        "ep_size reshards. SIGUSR1/SIGTERM/SIGINT (Ctrl-C): checkpoint at the next step and\n"
        "exit 75 (a second Ctrl-C aborts). MOE_STOP_FILE=PATH: PATH appearing does the same.",
        pos,
        MOE_ARGS_N(pos),
        opts,
        MOE_ARGS_N(opts),
        "progress line (rank 0, every train.log_interval steps; docs/training.md):\n"
        "  step S/N        steps done / train.steps\n"
        "  loss            global loss of the step: cross-entropy + aux + z\n"
        "  aux             the router's aux loss (summed over MoE layers)\n"
        "  lr              learning rate of the step (warmup, then the schedule)\n"
        "  tok/s           tokens of the global batch per second of this step\n"
        "  worst layer load max/mean\n"
        "                  the busiest expert's tokens over the mean per expert, in\n"
        "                  the MoE layer where that ratio is largest (1 = perfect\n"
        "                  balance); moe report's max/mean columns average the layers\n"
        "  exchange        share of the step in expert all-to-alls and gradient sync\n"
        "  eta             time left at the mean step time so far\n"
        "  val             validation loss (on train.eval_interval steps)\n\n"
        "exit codes: 0 done, 1 run failed, 2 bad usage/config/layout, 3 bad data or\n"
        "checkpoint, 75 preempted (run again with --resume latest). See docs/training.md."};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    if (init_from && resume) {
        fprintf(stderr, "moe train: --init-from and --resume exclude each other: --resume "
                        "continues a run (its optimizer state too), --init-from starts a new one "
                        "from another run's weights\n");
        moe_args_free(&spec);
        return MOE_EXIT_USAGE;
    }
    if (getenv("MOE_TRAIN_TEST_SIGNAL_SETUP")) raise(SIGUSR1); // testing: a signal before MPI_Init
    moe_status st = moe_comm_init(NULL, NULL);
    if (st) {
        fprintf(stderr, "moe train: %s\n", moe_last_error());
        moe_args_free(&spec);
        return MOE_EXIT_FAILURE;
    }
    Moe__Config *cfg = NULL;
    moe_comm *c = NULL;
    st = moe_train_setup(path, sets.v, sets.n, &cfg, &c);
    moe_args_free(&spec);
    int code;
    if (st) {
        moe_train_report(c, "train", st, 0);
        code = moe_exit_code(st);
    } else {
        moe_train_blas_threads(c);
        moe_train_opts o = {.resume = resume, .init_from = init_from};
        const char *cf = cfg->train ? cfg->train->init_from : NULL;
        if (init_from && cf && cf[0] && strcmp(cf, init_from))
            moe_comm_printf(c, "moe train: --init-from %s overrides train.init_from = %s\n",
                            init_from, cf);
        moe_train_result r = {.loss = NAN};
        st = dry_run ? moe_train_dry_run(cfg, c, &o) : moe_train_run(cfg, c, &o, &r);
        if (st == MOE_EINTR)
            moe_comm_printf(c, "moe train: %s\n", moe_last_error());
        else if (st)
            moe_train_report(c, "train", st, 1);
        else if (!isnan(r.loss)) // NaN: nothing was trained (said above)
            moe_comm_printf(c, "moe train: done, %lld steps, loss %.4f%s", (long long)r.step,
                            r.loss, r.skipped ? "" : "\n");
        if (!st && r.skipped)
            moe_comm_printf(c, " (%lld non-finite steps skipped)\n", (long long)r.skipped);
        code = moe_exit_code(st);
    }
    moe_comm_free(c);
    moe_config_free(cfg);
    moe_comm_finalize();
    return code;
}

// `moe eval --logits FILE` (docs/training.md): the logits of the first validation batch, for a
// comparison with another implementation (tests/test_hf_parity.py). In the machine's byte order
// (little-endian on x86-64 and arm64, as checkpoint data files):
//   8 bytes "MOELOGIT", u32 sequences B (train.global_batch), u32 seq_len S, u32 vocab V, u32 0,
//   i32 input tokens (B, S), f32 logits (B, S, V): row (b, s) is the prediction after token s.
// Every rank forwards its slice, rank 0 gathers them (rank order = sequence order) and writes
// FILE.tmp, fsyncs and renames it: a reader never sees half a file. Collective; status agreed.
#define MOE_EVAL_LOGITS_MAGIC "MOELOGIT"

static moe_status moe_eval_logits_write(const char *path, const int32_t *seqs /* (B, S+1) */,
                                        const float *logits /* (B, S, V) */, int64_t B, int64_t S,
                                        int64_t V) {
    char tmp[MOE_PATH_MAX];
    moe_status st = moe_path_fmt(tmp, "--logits", "%s.tmp", path);
    if (st) return st;
    FILE *f = fopen(tmp, "wb");
    if (!f) return moe_set_error(MOE_EIO, "--logits: cannot write %s: %s", tmp, strerror(errno));
    const uint32_t h[4] = {(uint32_t)B, (uint32_t)S, (uint32_t)V, 0};
    int ok = fwrite(MOE_EVAL_LOGITS_MAGIC, 1, 8, f) == 8 && fwrite(h, sizeof h, 1, f) == 1;
    for (int64_t b = 0; b < B && ok; b++) // the inputs only: drop each window's last target
        ok = fwrite(seqs + b * (S + 1), sizeof *seqs, (size_t)S, f) == (size_t)S;
    const size_t n = (size_t)(B * S * V);
    ok = ok && fwrite(logits, sizeof *logits, n, f) == n;
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = ok ? 0 : errno;
    if (fclose(f) != 0 && ok) ok = 0, err = errno;
    if (ok && rename(tmp, path) != 0) ok = 0, err = errno;
    if (ok) return MOE_OK;
    unlink(tmp);
    return moe_set_error(MOE_EIO, "--logits: writing %s failed: %s", path,
                         strerror(err ? err : EIO));
}

static moe_status moe_eval_logits(moe_model *m, const moe_data *d, const moe_comm *c, int64_t B,
                                  int32_t *tokens /* (Bl, S+1) */, const char *path) {
    const int rank = m->lay.world_rank, W = m->lay.world;
    const int64_t S = m->S, V = m->V, n = m->T * V;
    MOE_ASSERT(B == (int64_t)W * m->Bl);
    if (B * S * V > INT32_MAX) // the gather's limit
        return moe_set_error(MOE_EINVAL,
                             "--logits: %lld x %lld x %lld logits do not fit one gather; "
                             "--set train.global_batch=... smaller",
                             (long long)B, (long long)S, (long long)V);
    moe_data_val_batch(d, 0, B, (int64_t)rank * m->Bl, m->Bl, tokens);
    moe_model_loss l;
    moe_status st =
        moe_comm_agree(c, moe_model_forward(m, tokens, 0, 0, 0, (int64_t)rank * m->T, &l));
    if (st) return st;
    float *all = rank == 0 ? moe_xcalloc((size_t)(n * W), sizeof *all) : NULL;
    int64_t *counts = rank == 0 ? moe_xcalloc((size_t)W, sizeof *counts) : NULL;
    st = moe_comm_gatherv_f32(c, MOE_COMM_WORLD, moe_model_logits(m), n, all, rank == 0 ? n * W : 0,
                              counts);
    if (!st && rank == 0) {
        int32_t *seqs = moe_xcalloc((size_t)(B * (S + 1)), sizeof *seqs);
        moe_data_val_batch(d, 0, B, 0, B, seqs); // the same windows, all of them
        st = moe_eval_logits_write(path, seqs, all, B, S, V);
        free(seqs);
    }
    free(all);
    free(counts);
    return moe_comm_agree(c, st);
}

int moe_cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *trace = NULL, *logits = NULL;
    int batches = 0;       // 0: the checkpoint's train.eval_batches
    int trace_batches = 0; // 0: the evaluation's batches
    moe_args_list sets = {0};
    const moe_arg_opt opts[] = {
        {"--checkpoint", MOE_ARG_STRING, &ckpt, "DIR",
         "a checkpoint, checkpoints or run directory, or RUN/latest", 0, 0, NULL, 1},
        MOE_OPT_STRING("--data", &data, "FILE",
                       "replaces data.path (its validation split is used)"),
        MOE_OPT_INT("--batches", &batches, "N", 1, INT32_MAX,
                    "replaces train.eval_batches (default: the checkpoint's)"),
        MOE_OPT_LIST("--set", &sets, "a.b=v",
                     "override a field of the checkpoint's config (before --data\n"
                     "and --batches), e.g. --set data.val_fraction=0.1"),
        MOE_OPT_STRING("--trace", &trace, "FILE",
                       "also write the routing trace of the evaluated batches\n"
                       "(docs/routes.md; read it with moe routes)"),
        MOE_OPT_INT("--trace-batches", &trace_batches, "N", 1, INT32_MAX,
                    "trace only the first N of them (default: all)"),
        MOE_OPT_STRING("--logits", &logits, "FILE",
                       "also write the first batch's tokens and logits (float32;\n"
                       "docs/training.md) to FILE, for comparisons"),
    };
    const moe_args_spec spec = {
        "moe eval",
        "Prints the validation loss of a checkpoint (a checkpoint, checkpoints or run\n"
        "directory, or RUN/latest) at any world size: the fixed validation batches of\n"
        "train.global_batch sequences (docs/data.md). The config is the one the checkpoint\n"
        "was written with; --set, --data and --batches change it for this evaluation.",
        NULL,
        0,
        opts,
        MOE_ARGS_N(opts),
        "exit codes: 0 printed, 1 run failed (I/O, MPI), 2 bad usage, config or world\n"
        "size (no validation split, global_batch not divisible), 3 corrupt checkpoint\n"
        "or data."};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    if (trace_batches && !trace) {
        fprintf(stderr, "moe eval: --trace-batches needs --trace FILE\n");
        moe_args_usage(&spec, stderr);
        moe_args_free(&spec);
        return MOE_EXIT_USAGE;
    }
    if (moe_comm_init(NULL, NULL) != MOE_OK) {
        fprintf(stderr, "moe eval: %s\n", moe_last_error());
        moe_args_free(&spec);
        return MOE_EXIT_FAILURE;
    }
    moe_comm *c = NULL;
    moe_comm_params cp = {.ep_size = 1, .quiet = 1};
    moe_status st = moe_comm_create(&cp, &c);
    if (st) {
        fprintf(stderr, "moe eval: %s\n", moe_last_error());
        moe_args_free(&spec);
        moe_comm_finalize();
        return MOE_EXIT_FAILURE;
    }
    // The checkpoint's own config (every rank reads the manifest; it is small).
    char dir[MOE_PATH_MAX];
    Moe__CheckpointManifest *man = NULL;
    Moe__Config *cfg = NULL;
    moe_model *m = NULL;
    moe_data *d = NULL;
    moe_ckpt *ck = NULL;
    int32_t *tokens = NULL;
    st = moe_ckpt_resolve(ckpt, dir, sizeof dir);
    if (!st) st = moe_ckpt_read_manifest(dir, &man);
    if (!st && !man->config) st = moe_set_error(MOE_ECORRUPT, "%s: manifest has no config", dir);
    if (!st) {
        cfg = moe_config_copy(man->config);
        Moe__Config *def = moe_config_new_default(); // fill absent sub-messages with defaults
#define FILL(f)                                                                                    \
    if (!cfg->f) {                                                                                 \
        cfg->f = def->f;                                                                           \
        def->f = NULL;                                                                             \
    }
        FILL(model)
        FILL(router)
        FILL(train)
        FILL(parallel)
        FILL(data) FILL(lora)
#undef FILL
            moe_config_free(def);
        for (int i = 0; i < sets.n && !st; i++) st = moe_config_set(cfg, sets.v[i]);
        if (!st && data) {
            free(cfg->data->path);
            cfg->data->path = strdup(data);
        }
        if (!st && batches > 0) cfg->train->eval_batches = (int32_t)batches;
        if (!st && !(cfg->data->path && cfg->data->path[0])) {
            // The default corpus lives in the run directory: the one the checkpoint is in now
            // (RUN/checkpoints/step_N), never the out_dir recorded at training time, which may
            // be gone or another run's (a moved or copied run).
            char run[MOE_PATH_MAX];
            snprintf(run, sizeof run, "%s", dir);
            for (int up = 0; up < 2; up++) { // step_N → checkpoints → the run directory
                char *sl = strrchr(run, '/');
                const char *base = sl ? sl + 1 : run;
                if (up == 1 && strcmp(base, "checkpoints")) break;
                if (sl)
                    *sl = 0;
                else
                    snprintf(run, sizeof run, ".");
            }
            free(cfg->out_dir);
            cfg->out_dir = strdup(run[0] ? run : "/");
        }
        if (!st) {
            cfg->parallel->ep_size = 1; // experts all local: any world size
            st = moe_config_validate(cfg, moe_comm_size(c, MOE_COMM_WORLD));
        }
    }
    moe_args_free(&spec);
    const int W = moe_comm_size(c, MOE_COMM_WORLD);
    if (!st && cfg->train->global_batch % W != 0)
        st = moe_set_error(MOE_ELAYOUT,
                           "train.global_batch = %d is not divisible by the %d ranks; "
                           "run with a divisor of it, or --set train.global_batch=...",
                           cfg->train->global_batch, W);
    if (st) {
        moe_train_report(c, "eval", st, 0);
        goto out;
    }
    if ((st = moe_train_open_data(cfg, c, &d))) {
        moe_train_report(c, "eval", st, 1);
        goto out;
    }
    if (moe_data_val_tokens(d) == 0) {
        st = moe_set_error(MOE_EINVAL,
                           "no validation split (data.val_fraction = 0 and no "
                           "data.val_path); pass --data FILE or --set data.val_fraction=0.1");
        moe_train_report(c, "eval", st, 0);
        goto out;
    }
    if (batches > 0) { // an explicit --batches: at most the distinct batches the split holds
        const int64_t B = cfg->train->global_batch;
        const int64_t distinct = (moe_data_val_windows(d) + B - 1) / B;
        if (batches > distinct) {
            moe_comm_printf(c,
                            "moe eval: note: --batches %d: the validation split holds %lld "
                            "distinct batches of %lld sequences; evaluating those %lld\n",
                            batches, (long long)distinct, (long long)B, (long long)distinct);
            cfg->train->eval_batches = (int32_t)distinct;
        }
    }
    moe_model_layout lay = moe_model_layout_of(c);
    const int64_t Bl = cfg->train->global_batch / W;
    st = moe_comm_agree(c, moe_model_create(cfg, &lay, c, Bl, &m));
    if (st) {
        moe_train_report(c, "eval", st, 1);
        goto out;
    }
    moe_train_blas_threads(c);
    ck = moe_train_ckpt_register(m);
    moe_ckpt_state cs;
    if ((st = moe_train_ckpt_load(m, ck, c, dir, cfg, &cs))) {
        moe_train_report(c, "eval", st, 0);
        goto out;
    }
    tokens = moe_xcalloc((size_t)(Bl * (cfg->train->seq_len + 1)), sizeof(int32_t));
    double val = 0;
    if ((st = moe_train_eval(m, d, c, cfg->train->global_batch, cfg->train->eval_batches, tokens,
                             &val))) {
        moe_train_report(c, "eval", st, 1);
        goto out;
    }
    moe_comm_printf(c, "val_loss %.6f  (%s, step %lld; %d batches of %d x %d tokens; %d ranks)\n",
                    val, dir, (long long)cs.step, cfg->train->eval_batches,
                    cfg->train->global_batch, cfg->train->seq_len, W);
    if (logits) { // before --trace, which rebuilds the model with one sequence per forward
        if ((st = moe_eval_logits(m, d, c, cfg->train->global_batch, tokens, logits))) {
            moe_train_report(c, "eval", st, 0);
            goto out;
        }
        moe_comm_printf(c, "logits %s: %d sequences x %d tokens x %lld vocab\n", logits,
                        cfg->train->global_batch, cfg->train->seq_len, (long long)m->V);
    }
    if (trace) { // the probe: the first --trace-batches of the batches just evaluated
        int tb = trace_batches > 0 && trace_batches < cfg->train->eval_batches
                     ? trace_batches
                     : cfg->train->eval_batches;
        moe_trace_probe tp = {.batches = tb, .step = cs.step, .checkpoint = dir};
        // One sequence per forward: the same float operations at every world size, so the
        // trace's records are the same bytes at any layout (trainer/trace/trace.h).
        moe_ckpt_free(ck), ck = NULL;
        moe_model_free(m), m = NULL;
        st = moe_comm_agree(c, moe_model_create(cfg, &lay, c, 1, &m));
        if (!st) ck = moe_train_ckpt_register(m);
        if (!st) st = moe_train_ckpt_load(m, ck, c, dir, cfg, &cs);
        if (!st) st = moe_trace_capture(m, d, c, cfg, &tp, tokens, trace);
        if (st) {
            moe_train_report(c, "eval", st, 0);
            goto out;
        }
        moe_comm_printf(c, "trace %s: %d batches, %lld tokens, %d MoE layers\n", trace, tb,
                        (long long)tb * Bl * W * cfg->train->seq_len, m->n_moe);
    }
out:
    free(tokens);
    moe_ckpt_free(ck);
    moe_model_free(m);
    moe_data_free(d);
    if (cfg) protobuf_c_message_free_unpacked(&cfg->base, NULL);
    if (man) protobuf_c_message_free_unpacked(&man->base, NULL);
    moe_comm_free(c);
    moe_comm_finalize();
    return moe_exit_code(st);
}
