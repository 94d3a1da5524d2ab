// cmd-sweep.c: `moe sweep SWEEP.json` (launch every run of a sweep as its own mpirun of this
// binary's `moe train`, resumable, then write the report) and `moe report RUN_DIR...`.
// Trade-off: runs are sequential child processes, one at a time, each with its own log file; the
// sweep keeps no state of its own beyond each run directory (DONE marker, metrics, checkpoints),
// so a killed sweep resumes by being run again.
#include "moe-args.h"
#include "report.h"
#include "sweep-impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------- signals

static volatile sig_atomic_t moe_sweep_signals = 0;
static void moe_sweep_on_signal(int sig) {
    (void)sig;
    moe_sweep_signals++;
}

static void moe_sweep_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = moe_sweep_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; // no SA_RESTART: waitpid returns EINTR so the signal is forwarded at once
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

// ---------------------------------------------------------------- run state

static int64_t moe_metrics_last_step(const char *dir) {
    char path[MOE_PATH_MAX];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[1 << 14];
    int64_t last = -1;
    while (fgets(line, sizeof line, f)) { // "step" is the first field the writer emits
        const char *p = strstr(line, "\"step\":");
        if (p) {
            long long s = strtoll(p + 7, NULL, 10);
            if (s > last) last = s;
        }
    }
    fclose(f);
    return last;
}

typedef enum { MOE_RUN_NEW, MOE_RUN_RESUME, MOE_RUN_DONE, MOE_RUN_CHANGED } moe_run_state;

// A run directory holding results (DONE, metrics, a checkpoint) is finished or resumable only
// when it ran the config the sweep would launch now; else it is CHANGED and `diff` (cap bytes)
// lists the fields (sweep.c: moe_sweep_run_changed).
static moe_run_state moe_sweep_state(const moe_sweep_run *r, char *diff, size_t cap) {
    char done[MOE_PATH_MAX], metrics[MOE_PATH_MAX], latest[MOE_PATH_MAX];
    snprintf(done, sizeof done, "%s/DONE", r->dir);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", r->dir);
    snprintf(latest, sizeof latest, "%s/checkpoints/LATEST", r->dir);
    diff[0] = 0;
    const int results =
        moe_file_exists(done) || moe_file_exists(metrics) || moe_file_exists(latest);
    if (results && moe_sweep_run_changed(r, diff, cap)) return MOE_RUN_CHANGED;
    if (moe_file_exists(done)) return MOE_RUN_DONE;
    if (moe_metrics_last_step(r->dir) >= r->cfg->train->steps) return MOE_RUN_DONE;
    return moe_file_exists(latest) ? MOE_RUN_RESUME : MOE_RUN_NEW;
}

static const char *moe_state_name(moe_run_state s) {
    switch (s) {
    case MOE_RUN_NEW: return "new";
    case MOE_RUN_RESUME: return "resume";
    case MOE_RUN_DONE: return "done";
    case MOE_RUN_CHANGED: return "changed";
    }
    return "?";
}

// Renames path to the first free path.old-N (never deletes); the new name into out
// (MOE_PATH_MAX bytes). -1 with errno (or moe_last_error for a path too long) on failure.
static int moe_move_aside(const char *path, char *out) {
    for (int k = 1; k < 10000; k++) {
        if (moe_path_fmt(out, "the old run", "%s.old-%d", path, k)) return -1;
        struct stat sb;
        if (lstat(out, &sb) == 0) continue;
        return rename(path, out);
    }
    errno = EEXIST;
    return -1;
}

// argv of one launch (NULL-terminated, strings owned by the caller's arrays).
static char **moe_sweep_argv(const moe_sweep *s, const moe_sweep_run *r, const char *self,
                             int resume, char **od_out) {
    const Moe__SweepLaunch *l = s->sc->launch;
    const size_t n_extra = l ? l->n_extra_args : 0;
    char **a = moe_xcalloc(16 + n_extra + 2 * (size_t)r->n_sets, sizeof *a);
    int n = 0;
    static char np_buf[16];
    snprintf(np_buf, sizeof np_buf, "%d", s->np);
    a[n++] = l && l->mpirun && l->mpirun[0] ? l->mpirun : "mpirun";
    a[n++] = "-np";
    a[n++] = np_buf;
    for (size_t i = 0; i < n_extra; i++) a[n++] = l->extra_args[i];
    a[n++] = (char *)self;
    a[n++] = "train";
    a[n++] = s->base_path;
    for (int i = 0; i < r->n_sets; i++) a[n++] = "--set", a[n++] = r->sets[i];
    size_t odl = strlen(r->dir) + 16;
    *od_out = moe_xcalloc(odl, 1);
    snprintf(*od_out, odl, "out_dir=%s", r->dir);
    a[n++] = "--set";
    a[n++] = *od_out;
    if (resume) a[n++] = "--resume", a[n++] = "latest";
    a[n] = NULL;
    return a;
}

static void moe_print_argv(FILE *f, char **a) {
    for (int i = 0; a[i]; i++) {
        const char *s = a[i];
        int plain = *s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789_-./=:,+@%") == strlen(s);
        if (plain)
            fprintf(f, "%s%s", i ? " " : "", s);
        else {
            fprintf(f, "%s'", i ? " " : "");
            for (; *s; s++) *s == '\'' ? fputs("'\\''", f) : fputc(*s, f);
            fputc('\'', f);
        }
    }
    fputc('\n', f);
}

static void moe_tail(const char *path, int lines) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f), start = size > 4096 ? size - 4096 : 0;
    fseek(f, start, SEEK_SET);
    char buf[4097];
    size_t n = fread(buf, 1, 4096, f);
    fclose(f);
    buf[n] = 0;
    int seen = 0;
    char *p = buf + n;
    while (p > buf && seen <= lines)
        if (*--p == '\n' && p != buf + n - 1) seen++;
    if (seen > lines) p++;
    fprintf(stderr, "    | %s", p);
    if (n && buf[n - 1] != '\n') fputc('\n', stderr);
}

static moe_status moe_write_msg(const char *path, const ProtobufCMessage *m) {
    FILE *f = fopen(path, "w");
    if (!f) return moe_set_error(MOE_EIO, "%s: cannot write (%s)", path, strerror(errno));
    moe_status st = moe_json_write_message(f, m, 0);
    if (fclose(f) != 0 && !st) st = moe_set_error(MOE_EIO, "%s: write failed", path);
    return st;
}

static moe_status moe_write_run_record(const moe_sweep *s, const moe_sweep_run *r) {
    Moe__SweepRun sr = MOE__SWEEP_RUN__INIT;
    sr.has_index = 1, sr.index = (int32_t)(r - s->runs);
    sr.run = r->name, sr.point = r->point, sr.kind = (char *)r->kind;
    sr.has_seed = 1, sr.seed = r->seed;
    sr.n_set = (size_t)r->n_sets, sr.set = r->sets;
    sr.config = r->cfg;
    sr.sweep = s->sc->name;
    sr.init_checkpoint = r->init_ck;
    char path[MOE_PATH_MAX];
    snprintf(path, sizeof path, "%s/sweep-run.json", r->dir);
    return moe_write_msg(path, &sr.base);
}

// One launch; returns the child's exit code (128 + signal when killed), -1 if it never ran.
static int moe_sweep_launch(char **argv, const char *log) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        setpgid(0, 0); // away from the terminal's Ctrl-C: the sweep forwards signals itself
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        if (!getenv("OPENBLAS_NUM_THREADS")) setenv("OPENBLAS_NUM_THREADS", "1", 1);
        // Open MPI's mpirun refuses to run as root unless told so (--allow-run-as-root, or these
        // two variables); the variables are ignored by other launchers, so they are set here
        // rather than adding an option only Open MPI knows. A container or fresh machine as root.
        if (geteuid() == 0) {
            setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
            setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
        }
        execvp(argv[0], argv);
        fprintf(stderr, "moe sweep: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    int status = 0, forwarded = 0;
    for (;;) {
        if (moe_sweep_signals > forwarded) {
            forwarded = moe_sweep_signals;
            if (forwarded == 1)
                kill(pid, SIGUSR1); // ranks checkpoint, exit 75
            else if (forwarded == 2)
                kill(-pid, SIGTERM);
            else
                kill(-pid, SIGKILL);
        }
        pid_t w = waitpid(pid, &status, 0);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status)
                             : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static int moe_selected(const moe_sweep_run *r, char **only, int n_only) {
    if (!n_only) return 1;
    for (int i = 0; i < n_only; i++)
        if (!strcmp(only[i], r->point) || !strcmp(only[i], r->name)) return 1;
    return 0;
}

// --dry-run: every selected run, its state, shape and command line; launches nothing.
static void moe_sweep_print_plan(const moe_sweep *s, const char *self, char **only, int n_only) {
    static char diff[8192]; // one run's changed fields
    if (geteuid() == 0)
        printf("as root: every launch gets OMPI_ALLOW_RUN_AS_ROOT=1 and "
               "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (Open MPI's mpirun refuses root otherwise)\n");
    for (int i = 0; i < s->n_runs; i++) {
        const moe_sweep_run *r = &s->runs[i];
        if (!moe_selected(r, only, n_only)) continue;
        const moe_run_state rs = moe_sweep_state(r, diff, sizeof diff);
        printf("\n[%d/%d] %s  (%s, %s)  active %lld  total %lld  flops/token %lld\n", i + 1,
               s->n_runs, r->name, r->kind, moe_state_name(rs), (long long)r->active,
               (long long)r->total, (long long)r->flops);
        if (r->note[0]) printf("  %s\n", r->note);
        if (r->init_ck) printf("  train.init_from: %s\n", r->init_ck);
        if (rs == MOE_RUN_CHANGED) printf("  changed since it ran (old -> new):\n%s", diff);
        char *od;
        char **a = moe_sweep_argv(s, r, self, rs == MOE_RUN_RESUME, &od);
        fputs("  $ ", stdout);
        moe_print_argv(stdout, a);
        free(a);
        free(od);
    }
}

// Runs whose settings changed since they ran (their results would be reported under the new
// settings) are listed with their differences; returns how many. Without --rerun-changed the
// sweep then launches nothing.
static int moe_sweep_list_changed(const moe_sweep *s, char **only, int n_only, int rerun) {
    static char diff[8192]; // one run's changed fields
    int n_changed = 0;
    for (int i = 0; i < s->n_runs; i++) {
        const moe_sweep_run *r = &s->runs[i];
        if (!moe_selected(r, only, n_only) ||
            moe_sweep_state(r, diff, sizeof diff) != MOE_RUN_CHANGED)
            continue;
        if (!n_changed++ && !rerun)
            fprintf(stderr, "moe sweep: runs whose settings changed since they ran (their results "
                            "would be reported under the new settings):\n");
        if (!rerun) fprintf(stderr, "  %s (%s), old -> new:\n%s", r->name, r->dir, diff);
    }
    return n_changed;
}

typedef enum { MOE_SWEEP_OK = 0, MOE_SWEEP_FAILED, MOE_SWEEP_INTERRUPTED } moe_sweep_outcome;

// Runs, skips or resumes run i: moves a changed run or an orphan metrics file aside (kept, never
// deleted), writes the run record, launches `moe train` and marks the run DONE when it finishes.
static moe_sweep_outcome moe_sweep_run_one(const moe_sweep *s, int i, const char *self) {
    static char diff[8192]; // the run's changed fields
    const moe_sweep_run *r = &s->runs[i];
    char p[MOE_PATH_MAX];
    moe_run_state rs = moe_sweep_state(r, diff, sizeof diff);
    char done_path[MOE_PATH_MAX], log[MOE_PATH_MAX], old[MOE_PATH_MAX];
    snprintf(done_path, sizeof done_path, "%s/DONE", r->dir);
    snprintf(log, sizeof log, "%s/train.log", r->dir);
    snprintf(p, sizeof p, "%s/metrics.jsonl", r->dir);
    const char *aside = rs == MOE_RUN_CHANGED ? r->dir : rs == MOE_RUN_NEW ? p : NULL;
    if (aside && moe_file_exists(aside)) { // kept, never deleted: moe train refuses to wipe it
        errno = 0;
        if (moe_move_aside(aside, old) != 0) {
            fprintf(stderr, "[%d/%d] %s: FAILED: cannot move %s aside (%s)\n", i + 1, s->n_runs,
                    r->name, aside, errno ? strerror(errno) : moe_last_error());
            return MOE_SWEEP_FAILED;
        }
        printf("[%d/%d] %s: %s; the old %s is kept as %s\n", i + 1, s->n_runs, r->name,
               rs == MOE_RUN_CHANGED ? "settings changed since it ran, running it again"
                                     : "no checkpoint to resume, running it from the start",
               rs == MOE_RUN_CHANGED ? "run" : "metrics.jsonl", old);
        if (rs == MOE_RUN_CHANGED) fputs(diff, stdout);
        rs = MOE_RUN_NEW;
    }
    if (rs == MOE_RUN_DONE) {
        printf("[%d/%d] %s: finished earlier, skipped\n", i + 1, s->n_runs, r->name);
        if (!moe_file_exists(done_path)) { // finished per its metrics: mark it
            FILE *f = fopen(done_path, "w");
            if (f) fprintf(f, "finished (metrics reached train.steps)\n"), fclose(f);
        }
        return MOE_SWEEP_OK;
    }
    if (moe_mkdir_p(r->dir) != 0 || moe_write_run_record(s, r) != MOE_OK) {
        fprintf(stderr, "[%d/%d] %s: FAILED: cannot prepare %s (%s)\n", i + 1, s->n_runs, r->name,
                r->dir, moe_last_error()[0] ? moe_last_error() : strerror(errno));
        return MOE_SWEEP_FAILED;
    }
    char *od;
    char **a = moe_sweep_argv(s, r, self, rs == MOE_RUN_RESUME, &od);
    printf("[%d/%d] %s: %s (log %s)\n", i + 1, s->n_runs, r->name,
           rs == MOE_RUN_RESUME ? "resuming from its checkpoint" : "running", log);
    fflush(stdout);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const int code = moe_sweep_launch(a, log);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    free(a);
    free(od);
    if (code == 0) {
        FILE *f = fopen(done_path, "w");
        if (f) fprintf(f, "finished (exit 0) in %.1f s\n", secs), fclose(f);
        printf("[%d/%d] %s: done in %.1f s\n", i + 1, s->n_runs, r->name, secs);
    } else if (code == MOE_EXIT_TEMPFAIL || moe_sweep_signals) {
        printf("[%d/%d] %s: interrupted (exit %d) after %.1f s; resumable\n", i + 1, s->n_runs,
               r->name, code, secs);
        return MOE_SWEEP_INTERRUPTED;
    } else {
        fprintf(stderr,
                "[%d/%d] %s: FAILED (exit %d) after %.1f s; the sweep continues. Last "
                "lines of %s:\n",
                i + 1, s->n_runs, r->name, code, secs, log);
        moe_tail(log, 8);
        return MOE_SWEEP_FAILED;
    }
    return MOE_SWEEP_OK;
}

int moe_cmd_sweep(int argc, char **argv) {
    const char *path = NULL, *out = NULL;
    moe_args_list only_args = {0};
    int dry = 0, n_only = 0, rerun = 0, rc = MOE_EXIT_USAGE;
    const moe_arg_pos pos[] = {
        {"SWEEP.json", MOE_ARG_STRING, &path, 1, 1, "the sweep file (docs/sweeps.md)"},
    };
    const moe_arg_opt opts[] = {
        MOE_OPT_FLAG("--dry-run", &dry,
                     "print the runs, their state and command lines; launch nothing"),
        MOE_OPT_FLAG("--rerun-changed", &rerun,
                     "a run whose settings changed since it ran is moved to RUN.old-N\n"
                     "and run again (without this flag the sweep refuses it)"),
        MOE_OPT_LIST("--only", &only_args, "NAME",
                     "run only this point or run (or NAME,NAME); the report\n"
                     "still covers every run with metrics"),
        MOE_OPT_STRING("--out", &out, "DIR", "output directory instead of the file's out_dir"),
    };
    const moe_args_spec spec = {
        "moe sweep",
        "Runs every point of a load-balancing sweep (docs/sweeps.md) as its own launch of\n"
        "  LAUNCHER -np N [extra_args] <this moe> train BASE --set ... --set out_dir=OUT/runs/RUN\n"
        "one after another, then writes the report to OUT/report/ (moe report). Running it again\n"
        "skips finished runs (OUT/runs/RUN/DONE, or metrics that reached train.steps) and resumes\n"
        "half-finished ones from their checkpoint (--resume latest) — only when the run's\n"
        "recorded config (sweep-run.json) equals the one it would launch now; a changed run is\n"
        "refused with the fields that differ (exit 2) unless --rerun-changed.",
        pos,
        MOE_ARGS_N(pos),
        opts,
        MOE_ARGS_N(opts),
        "Ctrl-C / SIGTERM: no further launches; the running child gets SIGUSR1 (the ranks\n"
        "checkpoint and exit 75); a second signal sends SIGTERM, a third SIGKILL. Exit 75.\n"
        "exit codes: 0 every run finished, 1 a run failed (the others still ran), 2 bad sweep\n"
        "file or usage or a changed run, 75 interrupted (run the same command again to resume)"};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    // --only values split at commas (a copy of each, cut in place).
    size_t obl = 0, n_max = 1;
    for (int i = 0; i < only_args.n; i++) {
        obl += strlen(only_args.v[i]) + 1;
        n_max += strlen(only_args.v[i]) / 2 + 1;
    }
    char **only = moe_xcalloc(n_max, sizeof *only);
    char *only_buf = moe_xcalloc(obl + 1, 1), *ob = only_buf;
    moe_sweep *s = NULL;
    for (int i = 0; i < only_args.n; i++) {
        strcpy(ob, only_args.v[i]);
        for (char *t = strtok(ob, ","); t; t = strtok(NULL, ",")) only[n_only++] = t;
        ob += strlen(only_args.v[i]) + 1;
    }
    moe_status st = moe_sweep_load(path, out, &s);
    if (st) {
        fprintf(stderr, "moe sweep: %s\n", moe_last_error());
        rc = moe_exit_code(st);
        goto done;
    }
    for (int k = 0; k < n_only; k++) {
        int hit = 0;
        for (int i = 0; i < s->n_runs && !hit; i++) hit = moe_selected(&s->runs[i], &only[k], 1);
        if (!hit) {
            fprintf(stderr, "moe sweep: --only %s: no such point or run; the runs are:", only[k]);
            for (int i = 0; i < s->n_runs; i++) fprintf(stderr, " %s", s->runs[i].name);
            fputc('\n', stderr);
            goto done;
        }
    }
    char self[MOE_PATH_MAX];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        fprintf(stderr, "moe sweep: cannot find this program's path (/proc/self/exe: %s)\n",
                strerror(errno));
        rc = MOE_EXIT_FAILURE;
        goto done;
    }
    self[sl] = 0;
    const char *title = s->sc->name && s->sc->name[0] ? s->sc->name : "sweep";
    printf("sweep %s: %d runs, %d ranks each -> %s\n", title, s->n_runs, s->np, s->out_dir);
    if (dry) {
        moe_sweep_print_plan(s, self, only, n_only);
        rc = MOE_EXIT_OK;
        goto done;
    }
    // ------------------------------------------------ stale runs: refused before any launch
    const int n_changed = moe_sweep_list_changed(s, only, n_only, rerun);
    if (n_changed && !rerun) {
        fprintf(stderr,
                "moe sweep: %d changed run(s); nothing launched. Rerun them with --rerun-changed "
                "(each old run directory is kept as RUN.old-N), or restore the settings, or use "
                "another --out\n",
                n_changed);
        goto done;
    }
    // ------------------------------------------------ run
    char p[MOE_PATH_MAX];
    snprintf(p, sizeof p, "%s/runs", s->out_dir);
    if (moe_mkdir_p(p) != 0) {
        fprintf(stderr, "moe sweep: %s: cannot create (%s)\n", p, strerror(errno));
        rc = MOE_EXIT_FAILURE;
        goto done;
    }
    snprintf(p, sizeof p, "%s/sweep.json", s->out_dir);
    if (!(st = moe_write_msg(p, &s->sc->base)) && s->sc->base_config)
        st = moe_write_msg(s->base_path, &s->sc->base_config->base);
    if (st) {
        fprintf(stderr, "moe sweep: %s\n", moe_last_error());
        rc = MOE_EXIT_FAILURE;
        goto done;
    }
    moe_sweep_install();
    int failed = 0, interrupted = 0;
    for (int i = 0; i < s->n_runs && !interrupted; i++) {
        const moe_sweep_run *r = &s->runs[i];
        if (!moe_selected(r, only, n_only)) continue;
        if (moe_sweep_signals) {
            interrupted = 1;
            break;
        }
        switch (moe_sweep_run_one(s, i, self)) {
        case MOE_SWEEP_OK: break;
        case MOE_SWEEP_FAILED: failed++; break;
        case MOE_SWEEP_INTERRUPTED: interrupted = 1; break;
        }
    }
    if (interrupted) {
        printf(
            "sweep %s interrupted: finished runs are kept; run the same command again to resume\n",
            title);
        rc = MOE_EXIT_TEMPFAIL;
        goto done;
    }
    // ------------------------------------------------ report over every run with metrics
    const char **dirs = moe_xcalloc((size_t)s->n_runs, sizeof *dirs);
    int nd = 0;
    for (int i = 0; i < s->n_runs; i++) {
        snprintf(p, sizeof p, "%s/metrics.jsonl", s->runs[i].dir);
        if (moe_file_exists(p)) dirs[nd++] = s->runs[i].dir;
    }
    rc = failed ? MOE_EXIT_FAILURE : MOE_EXIT_OK;
    if (nd) {
        snprintf(p, sizeof p, "%s/report", s->out_dir);
        if ((st = moe_report_write(dirs, nd, p, title, 1, stdout))) { // its own directory
            fprintf(stderr, "moe sweep: report: %s\n", moe_last_error());
            rc = MOE_EXIT_FAILURE;
        }
    } else {
        fprintf(stderr, "moe sweep: no run has metrics; no report written\n");
    }
    free(dirs);
    if (failed) fprintf(stderr, "sweep %s: %d run(s) failed (see above)\n", title, failed);
done:
    moe_sweep_free(s);
    free(only);
    free(only_buf);
    moe_args_free(&spec);
    return rc;
}

// ---------------------------------------------------------------- moe report

// A run directory's position in its sweep (sweep-run.json "index"), INT32_MAX when unknown.
static int32_t moe_run_index(const char *dir) {
    char p[MOE_PATH_MAX], *text;
    size_t len;
    snprintf(p, sizeof p, "%s/sweep-run.json", dir);
    int32_t idx = INT32_MAX;
    if (!moe_file_exists(p) || moe_read_file(p, 0, &text, &len)) return idx;
    ProtobufCMessage *m = NULL;
    if (moe_json_parse_message(p, text, len, &moe__sweep_run__descriptor, &m) == MOE_OK) {
        if (((Moe__SweepRun *)m)->has_index) idx = ((Moe__SweepRun *)m)->index;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    free(text);
    moe_clear_error();
    return idx;
}

typedef struct {
    char *dir;
    int32_t index;
} moe_dir_key;

// A run moved aside by `moe sweep --rerun-changed` (NAME.old-N): not one of the sweep's runs.
static int moe_is_old_run(const char *name) {
    const char *p = strstr(name, ".old-");
    if (!p) return 0;
    p += 5;
    if (!*p) return 0;
    while (*p >= '0' && *p <= '9') p++;
    return *p == 0;
}

// Sweep order first (the index the sweep recorded), then by name.
static int moe_dir_cmp(const void *a, const void *b) {
    const moe_dir_key *x = a, *y = b;
    if (x->index != y->index) return x->index < y->index ? -1 : 1;
    return strcmp(x->dir, y->dir);
}

// One argument that is not a sweep's output directory (no runs/ in it): the one-run report.
static int moe_report_one_run(const char *dir) {
    char p[MOE_PATH_MAX];
    snprintf(p, sizeof p, "%s/runs", dir);
    struct stat sb;
    return stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode);
}

int moe_cmd_report(int argc, char **argv) {
    const char *out = NULL, *title = NULL;
    moe_args_list run_args = {0};
    char **dirs = NULL, *def_out = NULL;
    int n = 0, cap = 0, force = 0, rc = MOE_EXIT_USAGE;
    const moe_arg_pos pos[] = {
        {"RUN_DIR", MOE_ARG_LIST, &run_args, 1, 0,
         "a training run (a directory with metrics.jsonl), or a sweep's output\n"
         "directory (all its runs)"},
    };
    const moe_arg_opt opts[] = {
        MOE_OPT_STRING("--out", &out, "DIR",
                       "where to write (default: RUN/report for one run, report/ next to\n"
                       "the first run directory, or inside a sweep's output directory)"),
        MOE_OPT_STRING("--title", &title, "TEXT", "the report's title"),
        MOE_OPT_FLAG("--force", &force,
                     "write into a report directory that is not empty: the files of\n"
                     "an earlier report are removed first (others are left)"),
    };
    const moe_args_spec spec = {
        "moe report",
        "One run directory: its curves against steps (loss and val loss, lr, grad norm, aux\n"
        "and z loss, tokens/s and exchange share, per-group weight/grad/update norms) as\n"
        "PNGs and report.md in RUN/report (default). Several runs, or a sweep's output\n"
        "directory (all its runs): tables (results.csv, results.md), PNG plots, report.md\n"
        "(with each run's config difference from the first run) and index.html. Plots use\n"
        "gnuplot: skipped with a note when it is not on PATH or MOE_GNUPLOT=none.",
        pos,
        MOE_ARGS_N(pos),
        opts,
        MOE_ARGS_N(opts),
        "A report directory that exists and is not empty is refused (exit 2) unless --force.\n"
        "exit codes: 0 written, 1 cannot write, 2 bad usage, a directory without metrics or a\n"
        "report directory in use"};
    int pr = moe_args_parse(&spec, argc, argv);
    if (pr != MOE_ARGS_RUN) return pr;
    if (run_args.n == 1 && moe_report_one_run(run_args.v[0])) { // report/report.h
        char def[MOE_PATH_MAX];
        moe_status st = out ? MOE_OK : moe_path_fmt(def, "--out", "%s/report", run_args.v[0]);
        if (!st) st = moe_run_report_write(run_args.v[0], out ? out : def, title, force, stdout);
        if (st) fprintf(stderr, "moe report: %s\n", moe_last_error());
        moe_args_free(&spec);
        return moe_exit_code(st);
    }
    for (int i = 0; i < run_args.n; i++) {
        const char *a = run_args.v[i];
        char p[MOE_PATH_MAX];
        snprintf(p, sizeof p, "%s/metrics.jsonl", a);
        int sweep_dir = 0;
        if (!moe_file_exists(p)) { // a sweep's output directory: its runs
            snprintf(p, sizeof p, "%s/runs", a);
            DIR *d = opendir(p);
            if (d) {
                sweep_dir = 1;
                moe_dir_key *names = NULL;
                int nn = 0, nc = 0;
                for (struct dirent *e; (e = readdir(d));) {
                    char mp[MOE_PATH_MAX];
                    if (e->d_name[0] == '.' || moe_is_old_run(e->d_name)) continue;
                    if (moe_path_fmt(mp, "run directory", "%s/%s/metrics.jsonl", p, e->d_name)) {
                        fprintf(stderr, "moe report: skipped %s: %s\n", e->d_name,
                                moe_last_error());
                        continue;
                    }
                    if (!moe_file_exists(mp)) continue;
                    if (nn == nc) {
                        nc = nc ? 2 * nc : 16;
                        moe_dir_key *t = realloc(names, (size_t)nc * sizeof *t);
                        MOE_ASSERT(t);
                        names = t;
                    }
                    size_t l = strlen(p) + strlen(e->d_name) + 2;
                    names[nn].dir = moe_xcalloc(l, 1);
                    snprintf(names[nn].dir, l, "%s/%s", p, e->d_name);
                    names[nn].index = moe_run_index(names[nn].dir);
                    nn++;
                }
                closedir(d);
                qsort(names, (size_t)nn, sizeof *names, moe_dir_cmp);
                for (int k = 0; k < nn; k++) {
                    if (n == cap) {
                        cap = cap ? 2 * cap : 16;
                        char **t = realloc(dirs, (size_t)cap * sizeof *t);
                        MOE_ASSERT(t);
                        dirs = t;
                    }
                    dirs[n++] = names[k].dir;
                }
                free(names);
                if (!def_out) {
                    size_t l = strlen(a) + 8;
                    def_out = moe_xcalloc(l, 1);
                    snprintf(def_out, l, "%s/report", a);
                }
            }
        }
        if (!sweep_dir) {
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                char **t = realloc(dirs, (size_t)cap * sizeof *t);
                MOE_ASSERT(t);
                dirs = t;
            }
            size_t l = strlen(a) + 1;
            dirs[n] = moe_xcalloc(l, 1);
            memcpy(dirs[n++], a, l);
            if (!def_out) { // report/ next to the run directory
                char tmp[MOE_PATH_MAX];
                snprintf(tmp, sizeof tmp, "%s", a);
                size_t tl = strlen(tmp);
                while (tl > 1 && tmp[tl - 1] == '/') tmp[--tl] = 0;
                char *sl = strrchr(tmp, '/');
                size_t dl = strlen(tmp) + 16;
                def_out = moe_xcalloc(dl, 1);
                if (sl)
                    snprintf(def_out, dl, "%.*s/report", (int)(sl - tmp), tmp);
                else
                    snprintf(def_out, dl, "report");
            }
        }
    }
    if (!n) { // only sweep directories, none with a run that has metrics
        fprintf(stderr, "moe report: no run directory with metrics.jsonl in the arguments\n");
        moe_args_usage(&spec, stderr);
        goto done;
    }
    moe_status st =
        moe_report_write((const char *const *)dirs, n, out ? out : def_out, title, force, stdout);
    if (st) {
        fprintf(stderr, "moe report: %s\n", moe_last_error());
        rc = moe_exit_code(st);
    } else {
        rc = MOE_EXIT_OK;
    }
done:
    for (int i = 0; i < n; i++) free(dirs[i]);
    free(dirs);
    free(def_out);
    moe_args_free(&spec);
    return rc;
}
