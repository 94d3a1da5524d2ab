// cluster_standin.c: a test-only MPI program that stands in for `moe train` in the cluster tests, so
// the batch scripts and the local Slurm can be tested before (and independently of) the trainer.
// It includes <mpi.h> directly, outside comm/, because it is a test program, not part of moe.
//
// Same command line shape as the trainer:  cluster_standin train CONFIG [--set key=value]...
// [--resume latest|CKPT_FILE]. CONFIG is a tiny "key = value" file (out_dir, steps, sleep_ms,
// ckpt_every). Each step sleeps, mixes every rank's contribution through an all-reduce into a
// 64-bit state, and rank 0 writes OUT_DIR/steps/step-NNNNNN and a line of OUT_DIR/metrics.jsonl.
// SIGUSR1/SIGTERM, or the file MOE_STOP_FILE names appearing, set a flag; at the end of every step
// the ranks all-reduce (MAX) the flag, so all stop after the same step, write a checkpoint (temp
// file, fsync, rename, then LATEST swapped the same way) and exit 75. `--resume latest` continues from OUT_DIR/checkpoints/LATEST, or starts
// at step 0 when there is none. Exit codes: 0 done, 1 failure, 2 usage, 75 preempted.
#include <mpi.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char out_dir[1024];
    long steps;      // total steps of the run
    long sleep_ms;   // per-step "compute" time
    long ckpt_every; // periodic checkpoint interval in steps (0: only on preemption)
} standin_config;

static volatile sig_atomic_t standin_stop_signal = 0; // last SIGUSR1/SIGTERM received, 0 if none

static void standin_on_signal(int sig) { standin_stop_signal = sig; }

static int standin_rank = 0;

#define STANDIN_FAIL(...)                                                                          \
    do {                                                                                           \
        fprintf(stderr, "[rank %d] cluster_standin: ", standin_rank);                              \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        MPI_Abort(MPI_COMM_WORLD, 1);                                                              \
    } while (0)

// splitmix64 finaliser: a cheap, well-mixed, deterministic step function.
static uint64_t standin_mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static int standin_set(standin_config *c, const char *key, const char *val) {
    char *end = NULL;
    if (!strcmp(key, "out_dir")) {
        if (strlen(val) >= sizeof c->out_dir) return -1;
        strcpy(c->out_dir, val);
        return 0;
    }
    long v = strtol(val, &end, 10);
    if (end == val || *end != '\0' || v < 0) return -1;
    if (!strcmp(key, "steps"))
        c->steps = v;
    else if (!strcmp(key, "sleep_ms"))
        c->sleep_ms = v;
    else if (!strcmp(key, "ckpt_every"))
        c->ckpt_every = v;
    else
        return -1;
    return 0;
}

static char *standin_trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static void standin_read_config(standin_config *c, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) STANDIN_FAIL("cannot open config %s: %s", path, strerror(errno));
    char line[1200];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = standin_trim(line);
        if (*s == '\0' || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) STANDIN_FAIL("%s:%d: expected key = value", path, lineno);
        *eq = '\0';
        if (standin_set(c, standin_trim(s), standin_trim(eq + 1)))
            STANDIN_FAIL("%s:%d: bad key or value '%s'", path, lineno, standin_trim(s));
    }
    fclose(f);
}

static void standin_mkdir(const char *path) {
    if (mkdir(path, 0755) && errno != EEXIST)
        STANDIN_FAIL("cannot create %s: %s", path, strerror(errno));
}

// Write text to path atomically: path.tmp, fsync, rename (a reader sees the old or the new file).
static void standin_write_atomic(const char *path, const char *text) {
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) STANDIN_FAIL("cannot write %s: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n || fsync(fd) || close(fd))
        STANDIN_FAIL("cannot write %s: %s", tmp, strerror(errno));
    if (rename(tmp, path)) STANDIN_FAIL("cannot rename %s to %s: %s", tmp, path, strerror(errno));
}

static int standin_read_ckpt(const char *path, long *step, uint64_t *state) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int ok = fscanf(f, "step %ld state %" SCNx64, step, state) == 2;
    fclose(f);
    return ok ? 0 : -1;
}

static void standin_sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    // A signal cuts the sleep short (EINTR): the step then ends early, which only speeds up the stop.
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    int world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &standin_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);

    if (argc < 3 || strcmp(argv[1], "train")) {
        if (standin_rank == 0)
            fprintf(stderr, "usage: %s train CONFIG [--set key=value]... [--resume latest|FILE]\n",
                    argv[0]);
        MPI_Finalize();
        return 2;
    }
    standin_config cfg = {.out_dir = "standin-out", .steps = 10, .sleep_ms = 100, .ckpt_every = 0};
    standin_read_config(&cfg, argv[2]);
    const char *resume = NULL;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc) {
            char kv[1200];
            snprintf(kv, sizeof kv, "%s", argv[++i]);
            char *eq = strchr(kv, '=');
            if (!eq) STANDIN_FAIL("--set %s: expected key=value", kv);
            *eq = '\0';
            if (standin_set(&cfg, kv, eq + 1))
                STANDIN_FAIL("--set %s=%s: bad key or value", kv, eq + 1);
        } else if (!strcmp(argv[i], "--resume") && i + 1 < argc) {
            resume = argv[++i];
        } else {
            STANDIN_FAIL("unknown argument '%s'", argv[i]);
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = standin_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char path[1200], ckdir[1100], text[256];
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", cfg.out_dir);
    if (standin_rank == 0) {
        standin_mkdir(cfg.out_dir);
        snprintf(path, sizeof path, "%s/steps", cfg.out_dir);
        standin_mkdir(path);
        standin_mkdir(ckdir);
        snprintf(path, sizeof path, "%s/pids", cfg.out_dir);
        standin_mkdir(path);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    // The pid files let a test kill one particular rank.
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    snprintf(path, sizeof path, "%s/pids/rank-%d", cfg.out_dir, standin_rank);
    snprintf(text, sizeof text, "%ld %s\n", (long)getpid(), host);
    standin_write_atomic(path, text);

    // Resume: rank 0 reads the checkpoint and broadcasts (step, state).
    long start = 0;
    uint64_t state = 0x6d6f652d636c7573ULL; // initial state, fixed
    if (standin_rank == 0 && resume) {
        char ck[1200];
        if (!strcmp(resume, "latest")) {
            char name[256] = "";
            snprintf(path, sizeof path, "%s/LATEST", ckdir);
            FILE *f = fopen(path, "r");
            if (f) {
                if (!fgets(name, sizeof name, f)) name[0] = '\0';
                fclose(f);
            }
            snprintf(ck, sizeof ck, "%s/%s", ckdir, standin_trim(name));
            if (!f) printf("standin: no checkpoint in %s, starting at step 0\n", ckdir);
        } else {
            snprintf(ck, sizeof ck, "%s", resume);
        }
        if (strcmp(resume, "latest") || access(path, F_OK) == 0) {
            if (standin_read_ckpt(ck, &start, &state))
                STANDIN_FAIL("cannot read checkpoint %s", ck);
            printf("standin: resumed from %s at step %ld\n", ck, start);
        }
    }
    MPI_Bcast(&start, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    MPI_Bcast(&state, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);

    int exit_code = 0;
    for (long step = start; step < cfg.steps; step++) {
        standin_sleep_ms(cfg.sleep_ms);
        uint64_t local = standin_mix(state ^ (uint64_t)(step * 1000003 + standin_rank));
        uint64_t sum = 0;
        MPI_Allreduce(&local, &sum, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
        state = standin_mix(sum);
        long done = step + 1; // steps completed

        if (standin_rank == 0) {
            snprintf(path, sizeof path, "%s/steps/step-%06ld", cfg.out_dir, done);
            snprintf(text, sizeof text, "%016" PRIx64 "\n", state);
            standin_write_atomic(path, text);
            snprintf(path, sizeof path, "%s/metrics.jsonl", cfg.out_dir);
            FILE *m = fopen(path, "a");
            if (!m) STANDIN_FAIL("cannot append to %s: %s", path, strerror(errno));
            fprintf(m, "{\"step\":%ld,\"world\":%d,\"state\":\"%016" PRIx64 "\"}\n", done, world,
                    state);
            fclose(m);
            printf("step %ld/%ld state %016" PRIx64 "\n", done, cfg.steps, state);
            fflush(stdout);
        }

        // Agree on the stop step: any rank that saw a signal stops everyone after this step.
        // MOE_STOP_FILE appearing is a stop request too, as in `moe train`: cluster/mpirun-train.sh
        // writes it when a signal arrives before mpirun can forward one.
        const char *stop_file = getenv("MOE_STOP_FILE");
        int flag =
            standin_stop_signal != 0 || (stop_file && *stop_file && access(stop_file, F_OK) == 0);
        int any = 0;
        MPI_Allreduce(&flag, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        int periodic = cfg.ckpt_every > 0 && done % cfg.ckpt_every == 0 && done < cfg.steps;
        if (any || periodic) {
            if (standin_rank == 0) {
                char name[64];
                snprintf(name, sizeof name, "step_%08ld", done);
                snprintf(path, sizeof path, "%s/%s", ckdir, name);
                snprintf(text, sizeof text, "step %ld state %016" PRIx64 "\n", done, state);
                standin_write_atomic(path, text);
                snprintf(path, sizeof path, "%s/LATEST", ckdir);
                snprintf(text, sizeof text, "%s\n", name);
                standin_write_atomic(path, text);
                printf("standin: checkpoint %s/%s\n", ckdir, name);
                fflush(stdout);
            }
            MPI_Barrier(MPI_COMM_WORLD); // nobody exits before the checkpoint is on disk
            if (any && done < cfg.steps) {
                if (standin_rank == 0) printf("standin: preempted after step %ld, exit 75\n", done);
                exit_code = 75;
                break;
            }
        }
    }
    if (exit_code == 0 && standin_rank == 0) {
        snprintf(path, sizeof path, "%s/final", cfg.out_dir);
        snprintf(text, sizeof text, "step %ld world %d state %016" PRIx64 "\n", cfg.steps, world,
                 state);
        standin_write_atomic(path, text);
        printf("standin: done, %ld steps\n", cfg.steps);
    }
    fflush(stdout);
    MPI_Finalize();
    return exit_code;
}
