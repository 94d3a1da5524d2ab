// test_trace.c: the routing trace file (trainer/trace/trace.h) — a hand-made trace written and
// read back equal (header and every record), and every refusal of the reader with its message:
// wrong magic, header length past the end, truncated records, extra bytes (record count
// mismatch), a header whose record count disagrees with tokens × layers, an expert id out of
// range, records out of order; a failed write leaves neither the file nor a temporary.
#include "test-util.h"
#include "trace.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

// A header for N tokens (sequences of S), E experts, `slots` slots, Lm MoE layers.
static Moe__TraceHeader *header(int64_t N, int S, int E, int slots, int Lm) {
    Moe__TraceHeader *h = moe_xcalloc(1, sizeof *h);
    moe__trace_header__init(h);
    h->has_format_version = 1, h->format_version = MOE_TRACE_VERSION;
    h->has_n_experts = 1, h->n_experts = E;
    h->has_top_k = 1, h->top_k = slots;
    h->has_slots = 1, h->slots = slots;
    h->strategy = moe_xstrdup("token_choice");
    h->n_moe_layers = (size_t)Lm;
    h->moe_layers = moe_xcalloc((size_t)Lm, sizeof *h->moe_layers);
    for (int l = 0; l < Lm; l++) h->moe_layers[l] = l + 1;
    h->has_n_tokens = 1, h->n_tokens = N;
    h->has_n_sequences = 1, h->n_sequences = N / S;
    h->has_seq_len = 1, h->seq_len = S;
    h->has_n_records = 1, h->n_records = N * Lm;
    h->has_record_bytes = 1, h->record_bytes = 4 * moe_trace_record_words(slots);
    h->has_step = 1, h->step = 42;
    h->probe = moe_xstrdup("test probe");
    h->has_config_hash = 1, h->config_hash = moe_trace_shape_hash(h);
    return h;
}

// Random records in (seq, pos, layer) order, some slots empty and some dropped.
static moe_trace *random_trace(int64_t N, int S, int E, int slots, int Lm, uint64_t seed) {
    moe_trace *t = moe_trace_alloc(header(N, S, E, slots, Lm));
    for (int64_t i = 0; i < t->n; i++) {
        const int64_t tok = i / Lm;
        t->seq[i] = (uint32_t)(tok / S), t->pos[i] = (uint32_t)(tok % S);
        t->token[i] = (uint32_t)(test_rng(&seed) % 50), t->layer[i] = (uint32_t)(i % Lm);
        for (int j = 0; j < slots; j++) {
            if (test_rng(&seed) % 10 == 0) continue; // empty
            t->expert[i * slots + j] = (int32_t)(test_rng(&seed) % (uint64_t)E);
            t->weight[i * slots + j] = (float)test_urand(&seed);
            if (test_rng(&seed) % 7 == 0) t->dropped[i] |= 1u << j;
        }
    }
    return t;
}

static void write_bytes(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    MOE_ASSERT(f && fwrite(b, 1, n, f) == n);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    char *text = NULL;
    MOE_ASSERT(moe_read_file(path, 0, &text, n) == MOE_OK);
    return (unsigned char *)text;
}

// Reading `b` (n bytes) as path must fail with MOE_ECORRUPT and a message holding `want`.
static void refused(const char *path, const unsigned char *b, size_t n, const char *want) {
    write_bytes(path, b, n);
    moe_trace *t = NULL;
    moe_status st = moe_trace_read(path, &t);
    CHECK(st == MOE_ECORRUPT && moe_exit_code(st) == MOE_EXIT_DATA,
          "%s: status %d, want MOE_ECORRUPT (exit 3)", want, (int)st);
    CHECK(strstr(moe_last_error(), want) != NULL, "message '%s' lacks '%s'", moe_last_error(),
          want);
    CHECK(t == NULL, "%s: a refused trace is not returned", want);
    moe_trace_free(t);
}

static void round_trip(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/a.trace", dir);
    moe_trace *t = random_trace(24, 8, 6, 2, 3, 7);
    OK(moe_trace_write(t, path));
    moe_trace *r = NULL;
    OK(moe_trace_read(path, &r));
    CHECK(r->n == t->n && r->slots == 2 && r->E == 6 && r->n_moe == 3, "shape");
    CHECK(r->h->step == 42 && !strcmp(r->h->probe, "test probe") &&
              r->h->config_hash == t->h->config_hash && r->h->moe_layers[2] == 3,
          "header fields");
    const size_t ns = (size_t)t->n * 2;
    CHECK(!memcmp(r->seq, t->seq, 4 * (size_t)t->n) && !memcmp(r->pos, t->pos, 4 * (size_t)t->n) &&
              !memcmp(r->token, t->token, 4 * (size_t)t->n) &&
              !memcmp(r->layer, t->layer, 4 * (size_t)t->n) &&
              !memcmp(r->dropped, t->dropped, 4 * (size_t)t->n),
          "per-record words");
    CHECK(!memcmp(r->expert, t->expert, 4 * ns) && !memcmp(r->weight, t->weight, 4 * ns), "slots");
    // The file is exactly magic + length + header + records.
    size_t n = 0;
    unsigned char *b = read_bytes(path, &n);
    const size_t hn = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16;
    CHECK(n == 12 + hn + (size_t)t->n * 4 * 9, "file size %zu", n);
    CHECK(!memcmp(b, "MOETRACE", 8), "magic");
    // Little-endian words: the first record's seq, pos, token, layer.
    const unsigned char *rec = b + 12 + hn;
    CHECK(rec[8] == (unsigned char)t->token[0] && rec[9] == 0 && rec[12] == 0, "record 0 layout");
    char bad[512];
    snprintf(bad, sizeof bad, "%s/bad.trace", dir);
    unsigned char *c = moe_xcalloc(n + 64, 1);
    memcpy(c, b, n);
    c[0] = 'X';
    refused(bad, c, n, "wrong magic");
    refused(bad, b, 6, "wrong magic");
    memcpy(c, b, n);
    c[10] = 0x7f; // header length far past the end
    refused(bad, c, n, "truncated");
    refused(bad, b, n - 5, "truncated");
    refused(bad, b, n - 36, "truncated");
    memcpy(c, b, n);
    refused(bad, c, n + 36, "record count mismatch");
    // An expert id out of range: record 5, slot 1 (little-endian int32 at word 5).
    memcpy(c, b, n);
    c[12 + hn + 5 * 36 + 5 * 4] = 6, c[12 + hn + 5 * 36 + 5 * 4 + 1] = 0;
    c[12 + hn + 5 * 36 + 5 * 4 + 2] = 0, c[12 + hn + 5 * 36 + 5 * 4 + 3] = 0;
    refused(bad, c, n, "expert id 6 out of range");
    memcpy(c, b, n);
    c[12 + hn + 4 * 36 + 12] = 0; // record 4 is layer 1: say layer 0
    refused(bad, c, n, "order");
    // A header whose record count is not tokens x layers (records as they were).
    Moe__TraceHeader *h = moe__trace_header__unpack(NULL, hn, b + 12);
    h->n_records += 3;
    const size_t hn2 = moe__trace_header__get_packed_size(h), nr = n - 12 - hn;
    unsigned char *c2 = moe_xcalloc(12 + hn2 + nr, 1);
    memcpy(c2, b, 8);
    c2[8] = (unsigned char)hn2, c2[9] = (unsigned char)(hn2 >> 8);
    moe__trace_header__pack(h, c2 + 12);
    memcpy(c2 + 12 + hn2, b + 12 + hn, nr);
    refused(bad, c2, 12 + hn2 + nr, "record count mismatch");
    protobuf_c_message_free_unpacked(&h->base, NULL);
    free(c2);
    free(c);
    free(b);
    moe_trace_free(r);
    moe_trace_free(t);
}

// A write that cannot complete leaves nothing: no file at the path, no temporary beside it.
static void failed_write(const char *dir) {
    moe_trace *t = random_trace(8, 4, 4, 2, 2, 3);
    char path[512];
    snprintf(path, sizeof path, "%s/no/such/dir/x.trace", dir);
    moe_status st = moe_trace_write(t, path);
    CHECK(st == MOE_EIO, "write into a missing directory: %d", (int)st);
    snprintf(path, sizeof path, "%s/isdir", dir); // rename over a directory fails
    mkdir(path, 0755);
    st = moe_trace_write(t, path);
    CHECK(st == MOE_EIO && strstr(moe_last_error(), "nothing was written"),
          "write over a directory: %d %s", (int)st, moe_last_error());
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode), "the directory is untouched");
    DIR *d = opendir(dir);
    int tmp = 0;
    for (struct dirent *e; (e = readdir(d));) tmp += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    CHECK(tmp == 0, "%d temporary files left in %s", tmp, dir);
    moe_trace_free(t);
}

int main(void) {
    char dir[256];
    test_tmpdir(dir, sizeof dir, "test_trace");
    round_trip(dir);
    failed_write(dir);
    moe_trace *r = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/missing.trace", dir);
    CHECK(moe_trace_read(path, &r) == MOE_EIO && r == NULL, "a missing file is MOE_EIO");
    test_rmtree(dir);
    return test_summary("test_trace");
}
