// test_data.c: token data — u16 shard roundtrip (tokens read back equal the written array at the
// reported starts), the train/validation split, batch determinism and layout invariance (slices of
// W = 2, 4 concatenate to the W = 1 batch), the start distribution, every bad-data error (table),
// and the default corpus (deterministic, large enough, loadable); a file shrinking under the
// mapping exits 3 naming it.
#include "data.h"
#include "test-util.h"

#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[256];

static const char *tpath(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", g_dir, name);
    return b;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    MOE_ASSERT(f);
    MOE_ASSERT(fwrite(p, 1, n, f) == n);
    fclose(f);
}

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static moe_data_params params(const char *path, int u16, int64_t vocab, int S) {
    moe_data_params p = {
        path, NULL,  u16 ? MOE__DATA_CONFIG__FORMAT__u16_tokens : MOE__DATA_CONFIG__FORMAT__text,
        0.1,  vocab, S,
        42};
    return p;
}

// Shard roundtrip: every batch token equals the array written, at the start the API reports;
// validation windows come from the tail.
static void test_u16_roundtrip(void) {
    enum { N = 5000, S = 16, B = 8 };
    static uint16_t tok[N];
    uint64_t s = 7;
    for (int i = 0; i < N; i++) tok[i] = (uint16_t)(lcg(&s) % 50000);
    const char *path = tpath("shard.bin");
    CHECK(moe_data_write_u16(path, tok, N) == MOE_OK, "%s", moe_last_error());
    struct stat sb;
    stat(path, &sb);
    CHECK(sb.st_size == 1024 + 2 * N, "file size %lld, expected %d", (long long)sb.st_size,
          1024 + 2 * N);
    moe_data_params p = params(path, 1, 50000, S);
    moe_data *d;
    moe_status st = moe_data_open(&p, &d);
    CHECK(st == MOE_OK, "open: %s", moe_last_error());
    if (st != MOE_OK) return;
    const int64_t nv = (int64_t)(N * 0.1), nt = N - nv;
    CHECK(moe_data_train_tokens(d) == nt, "train tokens %lld vs %lld",
          (long long)moe_data_train_tokens(d), (long long)nt);
    CHECK(moe_data_val_tokens(d) == nv, "val tokens %lld vs %lld",
          (long long)moe_data_val_tokens(d), (long long)nv);
    int32_t batch[B * (S + 1)];
    for (int step = 0; step < 20; step++) {
        moe_data_train_batch(d, step, 0, B, batch);
        for (int i = 0; i < B; i++) {
            int64_t st0 = moe_data_train_start(d, step, i);
            CHECK(st0 >= 0 && st0 + S + 1 <= nt, "start %lld outside [0, %lld]", (long long)st0,
                  (long long)(nt - S - 1));
            for (int t = 0; t <= S; t++)
                CHECK(batch[i * (S + 1) + t] == tok[st0 + t],
                      "step %d seq %d pos %d: got %d expected %d", step, i, t,
                      batch[i * (S + 1) + t], tok[st0 + t]);
        }
    }
    int64_t nw = moe_data_val_windows(d);
    CHECK(nw == (nv - 1) / S, "val windows %lld vs %lld", (long long)nw, (long long)((nv - 1) / S));
    for (int j = 0; j < 3; j++) {
        moe_data_val_batch(d, j, B, 0, B, batch);
        for (int i = 0; i < B; i++) {
            int64_t k = (int64_t)j * B + i, st0 = nt + (k % nw) * S;
            for (int t = 0; t <= S; t++)
                CHECK(batch[i * (S + 1) + t] == tok[st0 + t],
                      "val batch %d seq %d pos %d: %d vs %d", j, i, t, batch[i * (S + 1) + t],
                      tok[st0 + t]);
        }
    }
    moe_data_free(d);
}

// Text split, val_path, layout invariance, determinism and spread of the starts.
static void test_text_split_batches(void) {
    enum { N = 20000, S = 32, B = 16 };
    static uint8_t txt[N], val[300];
    uint64_t s = 99;
    for (int i = 0; i < N; i++) txt[i] = (uint8_t)(32 + lcg(&s) % 90);
    for (int i = 0; i < 300; i++) val[i] = (uint8_t)('a' + i % 26);
    write_bytes(tpath("a.txt"), txt, N);
    write_bytes(tpath("v.txt"), val, sizeof val);
    moe_data_params p = params(tpath("a.txt"), 0, 256, S);
    p.val_fraction = 0.25;
    moe_data *d, *d2;
    CHECK(moe_data_open(&p, &d) == MOE_OK, "%s", moe_last_error());
    CHECK(moe_data_open(&p, &d2) == MOE_OK, "%s", moe_last_error());
    CHECK(moe_data_train_tokens(d) == 15000 && moe_data_val_tokens(d) == 5000, "split %lld/%lld",
          (long long)moe_data_train_tokens(d), (long long)moe_data_val_tokens(d));
    static int32_t full[B * (S + 1)], part[B * (S + 1)], again[B * (S + 1)];
    double mean = 0;
    int distinct_steps = 0;
    for (int step = 0; step < 64; step++) {
        moe_data_train_batch(d, step, 0, B, full);
        for (int W = 2; W <= 4; W *= 2)
            for (int r = 0; r < W; r++)
                moe_data_train_batch(d, step, r * B / W, B / W, part + r * (B / W) * (S + 1));
        CHECK(!memcmp(full, part, sizeof full),
              "step %d: ranks' slices differ from the world-1 batch", step);
        moe_data_train_batch(d2, step, 0, B, again);
        CHECK(!memcmp(full, again, sizeof full), "step %d: a second reader gives another batch",
              step);
        for (int i = 0; i < B; i++) {
            int64_t a = moe_data_train_start(d, step, i);
            mean += (double)a / (double)(15000 - S - 1) / (64.0 * B);
            CHECK(a + S + 1 <= 15000, "start %lld crosses into validation", (long long)a);
        }
        distinct_steps += moe_data_train_start(d, step, 0) != moe_data_train_start(d, step + 1, 0);
    }
    CHECK(mean > 0.45 && mean < 0.55, "mean normalised start %.3f, expected ~0.5 (uniform)", mean);
    CHECK(distinct_steps >= 60, "starts barely change across steps (%d of 64)", distinct_steps);
    moe_data_params p2 = p;
    p2.seed = 43;
    moe_data *d3;
    CHECK(moe_data_open(&p2, &d3) == MOE_OK, "%s", moe_last_error());
    CHECK(moe_data_train_start(d3, 5, 3) != moe_data_train_start(d, 5, 3), "seed has no effect");
    moe_data_free(d3);
    moe_data_free(d);
    moe_data_free(d2);
    // Separate validation file: training gets the whole file.
    p.val_path = tpath("v.txt");
    CHECK(moe_data_open(&p, &d) == MOE_OK, "%s", moe_last_error());
    CHECK(moe_data_train_tokens(d) == N && moe_data_val_tokens(d) == 300,
          "val_path split %lld/%lld", (long long)moe_data_train_tokens(d),
          (long long)moe_data_val_tokens(d));
    moe_data_val_batch(d, 0, 2, 1, 1, full); // k = 1: window 1 starts at S
    for (int t = 0; t <= S; t++)
        CHECK(full[t] == val[S + t], "val_path window: pos %d %d vs %d", t, full[t], val[S + t]);
    moe_data_free(d);
}

typedef struct {
    const char *what, *file;
    int u16;
    int64_t vocab;
    int S;
    double vf;
    const char *val_path;
    moe_status expect;
    const char *needles[3]; // substrings the message must contain
} bad_case;

static void test_bad_data(void) {
    // Fixtures.
    uint8_t small[10] = "0123456789";
    write_bytes(tpath("small.txt"), small, sizeof small);
    static uint8_t mid[200];
    memset(mid, '0', sizeof mid);
    mid[137] = 'z'; // 122
    write_bytes(tpath("mid.txt"), mid, sizeof mid);
    uint16_t tok[100];
    for (int i = 0; i < 100; i++) tok[i] = (uint16_t)(i % 200);
    tok[37] = 300;
    moe_data_write_u16(tpath("vocab.bin"), tok, 100);
    tok[37] = 1;
    moe_data_write_u16(tpath("good.bin"), tok, 100);
    int32_t hdr[256] = {20240520, 2, 100};
    write_bytes(tpath("version.bin"), hdr, sizeof hdr);
    hdr[0] = 12345;
    hdr[1] = 1;
    write_bytes(tpath("magic.bin"), hdr, sizeof hdr);
    write_bytes(tpath("short.bin"), hdr, 100);
    // truncated: header says 100 tokens, 50 present
    FILE *f = fopen(tpath("trunc.bin"), "wb");
    int32_t h2[256] = {20240520, 1, 100};
    fwrite(h2, 4, 256, f);
    fwrite(tok, 2, 50, f);
    fclose(f);
    const bad_case cases[] = {
        {"missing file", "nope.txt", 0, 256, 8, 0.1, NULL, MOE_EIO, {"nope.txt", "cannot open"}},
        {"train shorter than a sequence",
         "small.txt",
         0,
         256,
         16,
         0,
         NULL,
         MOE_EINVAL,
         {"small.txt", "10 tokens", "17"}},
        {"val tail shorter than a sequence",
         "mid.txt",
         0,
         256,
         32,
         0.1,
         NULL,
         MOE_EINVAL,
         {"mid.txt", "val_fraction", "20 tokens"}},
        {"val file shorter than a sequence",
         "mid.txt",
         0,
         256,
         16,
         0.1,
         "small.txt",
         MOE_EINVAL,
         {"small.txt", "10 tokens", "17"}},
        {"byte >= vocab",
         "mid.txt",
         0,
         100,
         8,
         0.1,
         NULL,
         MOE_ECORRUPT,
         {"mid.txt", "token 137", "is 122"}},
        {"u16 token >= vocab",
         "vocab.bin",
         1,
         256,
         8,
         0.1,
         NULL,
         MOE_ECORRUPT,
         {"vocab.bin", "token 37", "is 300"}},
        {"u16 bad magic",
         "magic.bin",
         1,
         256,
         8,
         0.1,
         NULL,
         MOE_ECORRUPT,
         {"magic.bin", "magic 12345", "20240520"}},
        {"u16 bad version",
         "version.bin",
         1,
         256,
         8,
         0.1,
         NULL,
         MOE_ECORRUPT,
         {"version.bin", "version 2"}},
        {"u16 shorter than header",
         "short.bin",
         1,
         256,
         8,
         0.1,
         NULL,
         MOE_ECORRUPT,
         {"short.bin", "100 bytes", "header"}},
        {"u16 truncated",
         "trunc.bin",
         1,
         256,
         8,
         0.1,
         NULL,
         MOE_ECORRUPT,
         {"trunc.bin", "says 100 tokens", "1124 bytes"}},
        {"u16 train too short",
         "good.bin",
         1,
         256,
         100,
         0,
         NULL,
         MOE_EINVAL,
         {"good.bin", "100 tokens", "101"}},
        {"text file read as u16",
         "mid.txt",
         1,
         256,
         8,
         0.1,
         NULL,
         MOE_ECORRUPT,
         {"mid.txt", "u16_tokens"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const bad_case *c = &cases[i];
        char path[512], vpath[512];
        snprintf(path, sizeof path, "%s", tpath(c->file));
        if (c->val_path) snprintf(vpath, sizeof vpath, "%s", tpath(c->val_path));
        moe_data_params p = params(path, c->u16, c->vocab, c->S);
        p.val_fraction = c->vf;
        p.val_path = c->val_path ? vpath : NULL;
        moe_data *d = NULL;
        moe_clear_error();
        moe_status st = moe_data_open(&p, &d);
        CHECK(st == c->expect && d == NULL, "%s: status %s, expected %s (%s)", c->what,
              moe_status_str(st), moe_status_str(c->expect), moe_last_error());
        for (int k = 0; k < 3 && c->needles[k]; k++)
            CHECK(strstr(moe_last_error(), c->needles[k]), "%s: message lacks '%s': %s", c->what,
                  c->needles[k], moe_last_error());
        moe_data_free(d);
    }
}

static void test_corpus(void) {
    int64_t n1 = 0, n2 = 0;
    moe_status st = moe_data_make_corpus(tpath("corpus1.txt"), &n1);
    CHECK(st == MOE_OK, "%s", moe_last_error());
    CHECK(moe_data_make_corpus(tpath("corpus2.txt"), &n2) == MOE_OK, "%s", moe_last_error());
    CHECK(n1 >= 300000, "default corpus has %lld bytes, expected >= 300000", (long long)n1);
    CHECK(n1 == n2, "two builds differ in size: %lld vs %lld", (long long)n1, (long long)n2);
    int same = n1 == n2 && n1 > 0;
    if (same) {
        char *x = moe_xcalloc((size_t)n1, 1), *y = moe_xcalloc((size_t)n1, 1);
        FILE *a = fopen(tpath("corpus1.txt"), "rb"), *b = fopen(tpath("corpus2.txt"), "rb");
        same = a && b && fread(x, 1, (size_t)n1, a) == (size_t)n1 &&
               fread(y, 1, (size_t)n1, b) == (size_t)n1 && !memcmp(x, y, (size_t)n1);
        if (a) fclose(a);
        if (b) fclose(b);
        free(x);
        free(y);
    }
    CHECK(same, "two builds of the default corpus differ");
    moe_data_params p = params(tpath("corpus1.txt"), 0, 256, 64);
    moe_data *d;
    CHECK(moe_data_open(&p, &d) == MOE_OK, "corpus does not open as text: %s", moe_last_error());
    moe_data_free(d);
}

// A file that shrinks under an open moe_data: the next read of a vanished page exits 3 with the
// file named (child process), not a SIGBUS crash; a SIGBUS that is not about a data mapping goes
// to the previous action (death by the signal, or a sanitizer's report).
static void test_shrunk_file(void) {
    const size_t n = 1 << 18;
    uint8_t *bytes = moe_xcalloc(n, 1);
    for (size_t i = 0; i < n; i++) bytes[i] = (uint8_t)(i * 7);
    for (int mode = 0; mode < 2; mode++) {
        write_bytes(tpath("shrinks.txt"), bytes, n);
        int fds[2];
        MOE_ASSERT(pipe(fds) == 0);
        pid_t pid = fork();
        MOE_ASSERT(pid >= 0);
        if (pid == 0) {
            dup2(fds[1], STDERR_FILENO);
            moe_data_params p = params(tpath("shrinks.txt"), 0, 256, 64);
            moe_data *d;
            if (moe_data_open(&p, &d) != MOE_OK) _exit(90);
            if (mode == 1) raise(SIGBUS);
            if (truncate(tpath("shrinks.txt"), 0) != 0) _exit(91);
            int32_t tok[4 * 65];
            for (int64_t step = 0; step < 1000; step++) moe_data_train_batch(d, step, 0, 4, tok);
            _exit(0); // read every token of a truncated file: the bug
        }
        close(fds[1]);
        char err[2048] = {0};
        size_t got = 0;
        ssize_t r;
        while (got + 1 < sizeof err && (r = read(fds[0], err + got, sizeof err - 1 - got)) > 0)
            got += (size_t)r;
        close(fds[0]);
        int ws = 0;
        waitpid(pid, &ws, 0);
        if (mode == 0) {
            CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 3, "shrunk file: expected exit 3, got %s %d",
                  WIFEXITED(ws) ? "exit" : "signal",
                  WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
            CHECK(strstr(err, "shrinks.txt") && strstr(err, "shrank") && strstr(err, "--resume"),
                  "shrunk file: message does not name the file and what to do: '%s'", err);
        } else {
            // The previous action: death by the signal, or a sanitizer's report and exit 1.
            const int prev = WIFSIGNALED(ws) ? WTERMSIG(ws) == SIGBUS : WEXITSTATUS(ws) == 1;
            CHECK(prev,
                  "a SIGBUS outside the data mappings: expected the previous action (death by "
                  "SIGBUS, or a sanitizer's exit 1), got %s %d",
                  WIFEXITED(ws) ? "exit" : "signal",
                  WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
        }
    }
    free(bytes);
}

int main(void) {
    test_tmpdir(g_dir, sizeof g_dir, "moe-test-data");
    test_u16_roundtrip();
    test_text_split_batches();
    test_bad_data();
    test_corpus();
    test_shrunk_file();
    test_rmtree(g_dir);
    return test_summary("test_data");
}
