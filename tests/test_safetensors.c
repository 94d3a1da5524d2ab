// test_safetensors.c: hf/'s safetensors reader and writer and its float conversions. The
// conversions exhaustively: every bf16 and f16 value survives f32 and back, and every midpoint
// between two neighbours rounds to the even one (a float just above or below it to the nearer);
// f16 overflow and underflow. Files: a round trip of F32, BF16 and F16 tensors with metadata,
// written twice to the same bytes; each refusal of the reader on a hand-made file (exit-3 class
// MOE_ECORRUPT with the fault named); the writer's refusals leave no file.
#include "comm.h" // OK() aborts through moe_comm_abort
#include "hf.h"
#include "test-util.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float fl(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static void check_conversions(void) {
    int bad16 = 0, badb = 0, badmid16 = 0, badmidb = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const uint16_t x = (uint16_t)h;
        const int nan16 = (x & 0x7c00) == 0x7c00 && (x & 0x3ff);
        const float f = moe_f16_to_f32(x);
        if (nan16 ? !isnan(f) || !isnan(moe_f16_to_f32(moe_f32_to_f16(f))) : moe_f32_to_f16(f) != x)
            bad16++;
        const float g = moe_bf16_to_f32(x);
        if (isnan(g) ? !isnan(moe_bf16_to_f32(moe_f32_to_bf16(g))) : moe_f32_to_bf16(g) != x)
            badb++;
        // Midpoints between x and x+1 (same sign, both finite): ties to even; just off: nearer.
        if ((x & 0x7fff) < 0x7bff) {
            const double a = moe_f16_to_f32(x), b = moe_f16_to_f32((uint16_t)(x + 1));
            const float mid = (float)((a + b) / 2); // exact: 12 significant bits
            const uint16_t even = (x & 1) ? (uint16_t)(x + 1) : x;
            const float up = nextafterf(mid, (float)(2 * b - a)), down = nextafterf(mid, (float)a);
            if (moe_f32_to_f16(mid) != even || moe_f32_to_f16(up) != (uint16_t)(x + 1) ||
                moe_f32_to_f16(down) != x)
                badmid16++;
        }
        if ((x & 0x7fff) < 0x7f7f) {
            const float mid = fl(((uint32_t)x << 16) | 0x8000u);
            const uint16_t even = (x & 1) ? (uint16_t)(x + 1) : x;
            if (moe_f32_to_bf16(mid) != even || moe_f32_to_bf16(fl(bits(mid) + 1)) != x + 1 ||
                moe_f32_to_bf16(fl(bits(mid) - 1)) != x)
                badmidb++;
        }
    }
    CHECK(!bad16, "%d f16 values do not survive f32 and back", bad16);
    CHECK(!badb, "%d bf16 values do not survive f32 and back", badb);
    CHECK(!badmid16, "%d f16 midpoints not rounded to nearest even", badmid16);
    CHECK(!badmidb, "%d bf16 midpoints not rounded to nearest even", badmidb);
    CHECK(moe_f32_to_f16(65520.0f) == 0x7c00 && moe_f32_to_f16(65519.99f) == 0x7bff &&
              moe_f32_to_f16(-1e9f) == 0xfc00 && moe_f32_to_f16(INFINITY) == 0x7c00,
          "f16 overflow");
    CHECK(moe_f32_to_f16(1e-9f) == 0 && moe_f32_to_f16(-1e-9f) == 0x8000 &&
              moe_f32_to_f16(ldexpf(1, -24)) == 1 && moe_f32_to_f16(ldexpf(1, -25)) == 0 &&
              moe_f32_to_f16(ldexpf(3, -26)) == 1,
          "f16 underflow and subnormals");
    CHECK(isnan(moe_bf16_to_f32(moe_f32_to_bf16(NAN))) &&
              isnan(moe_f16_to_f32(moe_f32_to_f16(NAN))),
          "NaN not kept");
}

static void write_file(const char *name, const char *header, const void *data, size_t n,
                       int64_t claim) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    MOE_ASSERT(f);
    const uint64_t len = claim >= 0 ? (uint64_t)claim : strlen(header);
    unsigned char n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (unsigned char)(len >> (8 * i));
    fwrite(n8, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void expect_refused(const char *name, const char *header, size_t data_bytes, int64_t claim,
                           const char *phrase) {
    static unsigned char zeros[256];
    write_file(name, header, zeros, data_bytes, claim);
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    moe_st_file *f = NULL;
    moe_status st = moe_st_open(p, &f);
    CHECK(st == MOE_ECORRUPT && moe_exit_code(st) == 3, "%s: status %d, expected MOE_ECORRUPT",
          name, (int)st);
    CHECK(strstr(moe_last_error(), phrase) != NULL, "%s: message '%s' does not say '%s'", name,
          moe_last_error(), phrase);
    moe_st_close(f);
}

static void check_refusals(void) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_refused("len-past", ok, 8, 100000, "header length");
    expect_refused("not-json", "{\"a\":", 0, -1, "JSON header");
    expect_refused("not-object", "[1,2]", 0, -1, "not a JSON object");
    expect_refused("dup",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                   8, -1, "duplicate");
    expect_refused("dtype", "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
                   -1, "F64");
    expect_refused("shape-neg", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
                   4, -1, "shape[0]");
    expect_refused("shape-str",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, -1,
                   "shape[0]");
    expect_refused("offsets-rev",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, -1,
                   "data_offsets");
    expect_refused("bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                   -1, "take 12");
    expect_refused("overlap",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   12, -1, "overlaps");
    expect_refused("hole",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                   12, -1, "hole");
    expect_refused("truncated", ok, 5, -1, "truncated");
    expect_refused("trailing", ok, 12, -1, "trailing");
    expect_refused("meta", "{\"__metadata__\":{\"k\":1}}", 0, -1, "not a string");
    expect_refused("utf8", "{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                   -1, "JSON header");
    expect_refused("field",
                   "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
                   -1, "unknown field");
    expect_refused("short", "", 0, 0, "header length");
}

static void round_trip(void) {
    const int64_t s1[2] = {3, 5}, s2[1] = {7}, s3[3] = {2, 0, 4};
    float a[15], b[7];
    uint64_t st = 7;
    for (int i = 0; i < 15; i++) a[i] = (float)test_uniform(&st, -3, 3);
    for (int i = 0; i < 7; i++) b[i] = (float)test_uniform(&st, -1e5, 1e5);
    for (int d = 0; d < 3; d++) {
        char p[2][512];
        for (int rep = 0; rep < 2; rep++) {
            snprintf(p[rep], sizeof p[rep], "%s/rt-%d-%d.safetensors", dir, d, rep);
            moe_st_writer *w;
            OK(moe_st_writer_create(p[rep], (moe_st_dtype)d, &w));
            OK(moe_st_declare(w, "model.layers.0.w", 2, s1));
            OK(moe_st_declare(w, "b", 1, s2));
            OK(moe_st_declare(w, "empty", 3, s3));
            OK(moe_st_set_meta(w, "format", "pt"));
            OK(moe_st_write(w, "model.layers.0.w", a));
            OK(moe_st_write(w, "b", b));
            OK(moe_st_write(w, "empty", a));
            OK(moe_st_writer_finish(w));
        }
        size_t n0 = 0, n1 = 0;
        char *x = NULL, *y = NULL;
        OK(moe_read_file(p[0], 1 << 20, &x, &n0));
        OK(moe_read_file(p[1], 1 << 20, &y, &n1));
        CHECK(n0 == n1 && !memcmp(x, y, n0), "dtype %d: two writes differ", d);
        CHECK(n0 >= 9 && x[8] == '{', "dtype %d: the header does not start with '{'", d);
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = hl << 8 | (unsigned char)x[i];
        CHECK(hl % 8 == 0, "dtype %d: header length %llu not a multiple of 8", d,
              (unsigned long long)hl);
        free(x), free(y);
        moe_st_file *f;
        OK(moe_st_open(p[0], &f));
        CHECK(f->n == 3 && moe_st_meta(f, "format") && !strcmp(moe_st_meta(f, "format"), "pt"),
              "dtype %d: tensors or metadata lost", d);
        const moe_st_tensor *t = moe_st_find(f, "model.layers.0.w");
        CHECK(t && t->ndim == 2 && t->shape[0] == 3 && t->shape[1] == 5 && (int)t->dtype == d,
              "dtype %d: shape or dtype", d);
        float got[15];
        OK(moe_st_read_f32(f, t, got));
        int same = 1;
        for (int i = 0; i < 15; i++) {
            const float want = d == 0   ? a[i]
                               : d == 1 ? moe_bf16_to_f32(moe_f32_to_bf16(a[i]))
                                        : moe_f16_to_f32(moe_f32_to_f16(a[i]));
            same &= bits(got[i]) == bits(want);
        }
        CHECK(same, "dtype %d: values changed", d);
        t = moe_st_find(f, "empty");
        CHECK(t && t->numel == 0 && t->begin == t->end, "dtype %d: empty tensor", d);
        moe_st_close(f);
    }
}

static void writer_refusals(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/w.safetensors", dir);
    const int64_t s[1] = {2};
    float v[2] = {1, 2};
    moe_st_writer *w;
    OK(moe_st_writer_create(p, MOE_ST_F32, &w));
    OK(moe_st_declare(w, "x", 1, s));
    OK(moe_st_declare(w, "y", 1, s));
    CHECK(moe_st_declare(w, "x", 1, s) == MOE_EINVAL, "a name declared twice is accepted");
    CHECK(moe_st_write(w, "y", v) == MOE_EINVAL, "out of order write accepted");
    OK(moe_st_write(w, "x", v));
    CHECK(moe_st_writer_finish(w) == MOE_EINVAL, "a tensor never written is accepted");
    struct stat sb;
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    CHECK(stat(p, &sb) != 0 && stat(tmp, &sb) != 0, "a refused write left a file");
    snprintf(p, sizeof p, "%s/no/such/dir.safetensors", dir);
    CHECK(moe_st_writer_create(p, MOE_ST_F32, &w) == MOE_EIO, "unwritable path accepted");
}

// A file written by another implementation (Python's struct and json: the fuzz seed
// tests/fuzz/corpus/safetensors/mixed.safetensors) reads back its values.
static void foreign_file(void) {
    moe_st_file *f;
    OK(moe_st_open(MOE_SOURCE_DIR "/tests/fuzz/corpus/safetensors/mixed.safetensors", &f));
    const moe_st_tensor *w = moe_st_find(f, "w"), *h = moe_st_find(f, "h");
    float v[3] = {0}, u[2] = {0};
    CHECK(w && h && w->dtype == MOE_ST_BF16 && h->dtype == MOE_ST_F16, "foreign file: tensors");
    if (w && h) {
        OK(moe_st_read_f32(f, w, v));
        OK(moe_st_read_f32(f, h, u));
    }
    CHECK(v[0] == 1.0f && v[1] == 2.0f && v[2] == -3.0f && u[0] == 1.5f && u[1] == -2.25f,
          "foreign file: values %g %g %g %g %g", v[0], v[1], v[2], u[0], u[1]);
    moe_st_close(f);
}

// Sharded models: the plan, the file names, model.safetensors.index.json written as transformers
// writes it (the text Python's json.dumps(indent=2, sort_keys=True) gives, plus a newline) and
// read back; the reader's refusals.
static void sharding(void) {
    const int64_t bytes[5] = {4, 4, 4, 20, 1};
    int shard[5];
    // 4+4 fit, the third 4 opens shard 1, 20 (over the limit) gets shard 2 to itself, 1 opens 3
    CHECK(moe_st_shard_plan(bytes, 5, 10, shard) == 4 && shard[0] == 0 && shard[1] == 0 &&
              shard[2] == 1 && shard[3] == 2 && shard[4] == 3,
          "plan at 10 bytes: %d %d %d %d %d", shard[0], shard[1], shard[2], shard[3], shard[4]);
    CHECK(moe_st_shard_plan(bytes, 5, 0, shard) == 1 && shard[4] == 0, "no limit: one shard");
    CHECK(moe_st_shard_plan(bytes, 0, 10, shard) == 1, "no tensors: one shard");
    char nm[64];
    moe_st_shard_name(nm, sizeof nm, 1, 3);
    CHECK(!strcmp(nm, "model-00002-of-00003.safetensors"), "shard name %s", nm);
    moe_st_shard_name(nm, sizeof nm, 0, 1);
    CHECK(!strcmp(nm, "model.safetensors"), "single file name %s", nm);

    const char *names[3] = {"b.weight", "a.weight", "c"};
    const int sh[3] = {0, 0, 1};
    OK(moe_st_index_write(dir, names, sh, 3, 2, 60));
    char p[512], *text = NULL;
    size_t len = 0;
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    OK(moe_read_file(p, 1 << 20, &text, &len));
    const char *python = "{\n  \"metadata\": {\n    \"total_size\": 60\n  },\n  \"weight_map\": {\n"
                         "    \"a.weight\": \"model-00001-of-00002.safetensors\",\n"
                         "    \"b.weight\": \"model-00001-of-00002.safetensors\",\n"
                         "    \"c\": \"model-00002-of-00002.safetensors\"\n  }\n}\n";
    CHECK(text && !strcmp(text, python), "index text differs from transformers':\n%s", text);
    free(text);
    moe_st_index ix;
    OK(moe_st_index_read(dir, &ix));
    CHECK(ix.n == 3 && ix.total_size == 60 && !strcmp(ix.name[0], "a.weight") &&
              !strcmp(ix.file[2], "model-00002-of-00002.safetensors"),
          "index read back: n %d total %lld", ix.n, (long long)ix.total_size);
    moe_st_index_free(&ix);

    const char *bad[][2] = {
        {"{\"weight_map\": {\"a\": \"../x.safetensors\"}}", "not a file name"},
        {"{\"weight_map\": {\"a\": \"f\", \"a\": \"g\"}}", "duplicate"},
        {"{\"metadata\": {}}", "no \"weight_map\""},
        {"{\"weight_map\": {\"a\": 3}}", "not a file name"},
        {"{\"metadata\": {\"total_size\": -1}, \"weight_map\": {}}", "total_size"},
        {"{\"weight_map\": ", "safetensors index"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(p, "w");
        MOE_ASSERT(f);
        fputs(bad[i][0], f);
        fclose(f);
        moe_status st = moe_st_index_read(dir, &ix);
        CHECK(st == MOE_ECORRUPT && strstr(moe_last_error(), bad[i][1]),
              "index '%s': status %d, message '%s'", bad[i][0], (int)st, moe_last_error());
    }
    unlink(p);
    CHECK(moe_st_index_read(dir, &ix) == MOE_EIO, "a missing index is not MOE_EIO");
}

int main(void) {
    test_tmpdir(dir, sizeof dir, "moe-safetensors");
    foreign_file();
    check_conversions();
    check_refusals();
    round_trip();
    writer_refusals();
    sharding();
    test_rmtree(dir);
    return test_summary("safetensors");
}
