// replay.c: runs a fuzz target over files without libFuzzer — `replay_<target> PATH...` feeds every
// file given, and every regular file of every directory given (in name order), to the target's
// LLVMFuzzerTestOneInput, failing on an input slower than 10 s (MOE_REPLAY_MAX_SECONDS). Built in
// every build, so ctest replays the seed corpus and each crash
// ever found (tests/fuzz/regress/<target>/) under plain Release and under ASan/UBSan.
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// An input slower than this fails the replay: a hang libFuzzer reported (a timeout) stays fixed.
static double max_seconds = 10;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "replay: %s: out of memory\n", path);
        return -1;
    }
    // A copy of exactly n bytes, as libFuzzer hands it: ASan sees a read past the input.
    uint8_t *in = malloc(n ? n : 1);
    memcpy(in, buf, n);
    free(buf);
    const double t0 = now();
    LLVMFuzzerTestOneInput(in, n);
    const double dt = now() - t0;
    free(in);
    if (dt > max_seconds) {
        fprintf(stderr, "replay: %s took %.1f s, more than %.0f s (a hang?)\n", path, dt,
                max_seconds);
        return -1;
    }
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    LLVMFuzzerInitialize(&argc, &argv);
    const char *ms = getenv("MOE_REPLAY_MAX_SECONDS");
    if (ms && atof(ms) > 0) max_seconds = atof(ms);
    int n_inputs = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            bad++;
            continue;
        }
        if (!S_ISDIR(sb.st_mode)) {
            bad += replay_file(argv[i]) != 0;
            n_inputs++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            bad++;
            continue;
        }
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            if (n == cap) names = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
            names[n++] = strdup(e->d_name);
        }
        closedir(d);
        if (n) qsort(names, n, sizeof *names, by_name);
        for (size_t k = 0; k < n; k++) {
            size_t len = strlen(argv[i]) + strlen(names[k]) + 2;
            char *p = malloc(len);
            snprintf(p, len, "%s/%s", argv[i], names[k]);
            if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
                bad += replay_file(p) != 0;
                n_inputs++;
            }
            free(p);
            free(names[k]);
        }
        free(names);
    }
    printf("replay: %d inputs from %d paths, %d unreadable or too slow\n", n_inputs, argc - 1, bad);
    return bad ? 1 : 0;
}
