// test_params_cli.c: the `moe params` command run as a user runs it. Mixtral in our format and in
// HF format must give identical numbers (and the hand-derived totals); bad usage exits 2; an
// unknown HF field is listed as ignored; per-rank bytes at world 4 / ep 2 against hand arithmetic.
// usage: test_params_cli MOE_BINARY EXAMPLES_DIR
#include "moe-common.h"

#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
static const char *moe_bin, *examples;

static void expect_eq(int line, const char *what, long long got, long long want) {
    if (got != want) {
        fprintf(stderr, "test_params_cli.c:%d: %s: expected %lld, got %lld\n", line, what, want,
                got);
        failures++;
    }
}
#define EXPECT_EQ(what, got, want) expect_eq(__LINE__, what, (long long)(got), (long long)(want))
#define EXPECT(what, cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "test_params_cli.c:%d: %s: false\n", __LINE__, what);                  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

typedef struct {
    int code;
    char out[1 << 16], err[1 << 16];
} run_result;

static void slurp(int fd, char *buf, size_t cap) {
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, cap - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
}

// Runs moe with the NULL-terminated args (after "moe"), capturing stdout and stderr in files.
static run_result *run(const char *const *args) {
    static run_result r;
    char out_path[] = "/tmp/test_params_cli_out_XXXXXX",
         err_path[] = "/tmp/test_params_cli_err_XXXXXX";
    int fo = mkstemp(out_path), fe = mkstemp(err_path);
    MOE_ASSERT(fo >= 0 && fe >= 0);
    unlink(out_path);
    unlink(err_path);
    const char *argv[32];
    int n = 0;
    argv[n++] = moe_bin;
    for (int i = 0; args[i]; i++) argv[n++] = args[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    MOE_ASSERT(pid >= 0);
    if (pid == 0) {
        dup2(fo, 1);
        dup2(fe, 2);
        execv(moe_bin, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    slurp(fo, r.out, sizeof r.out);
    slurp(fe, r.err, sizeof r.err);
    return &r;
}

static json_t *run_json(int line, const char *const *args) {
    run_result *r = run(args);
    if (r->code != 0) {
        fprintf(stderr, "test_params_cli.c:%d: exit %d, stderr:\n%s\n", line, r->code, r->err);
        failures++;
        return NULL;
    }
    json_error_t e;
    json_t *j = json_loads(r->out, 0, &e);
    if (!j) {
        fprintf(stderr, "test_params_cli.c:%d: --json output is not JSON (%s):\n%s\n", line, e.text,
                r->out);
        failures++;
    }
    return j;
}

static long long jint(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) {
        fprintf(stderr, "test_params_cli.c: key \"%s\" missing or not an integer\n", key);
        failures++;
        return -1;
    }
    return json_integer_value(v);
}

static char ours[4096], hf[4096], tiny[4096];

static void test_same_totals(void) {
    json_t *a = run_json(__LINE__, (const char *[]){"params", ours, "--json", NULL});
    json_t *b = run_json(__LINE__, (const char *[]){"params", hf, "--json", NULL});
    if (!a || !b) return;
    // Hand count in test_params.c: 46,702,792,704 total, 12,879,925,248 active.
    EXPECT_EQ("ours total", jint(a, "total_params"), 46702792704LL);
    EXPECT_EQ("ours active", jint(a, "active_params"), 12879925248LL);
    const char *keys[] = {"total_params", "active_params", "flops_per_token", "trainable_params",
                          "per_rank_bytes"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        EXPECT_EQ(keys[i], jint(b, keys[i]), jint(a, keys[i]));
    EXPECT("components present", json_is_object(json_object_get(a, "components")));
    EXPECT_EQ("routed experts component",
              jint(json_object_get(json_object_get(a, "components"), "routed_experts"), "total"),
              32LL * 8 * 3 * 4096 * 14336);
    EXPECT("HF ignored list present", json_array_size(json_object_get(b, "ignored_hf_fields")) > 0);
    json_decref(a);
    json_decref(b);

    // Human output: the totals in B.
    run_result *r = run((const char *[]){"params", ours, NULL});
    EXPECT_EQ("table exit", r->code, 0);
    EXPECT("table shows 46.70B", strstr(r->out, "46.70B") != NULL);
    EXPECT("table shows 12.88B", strstr(r->out, "12.88B") != NULL);
    EXPECT("table shows exact total", strstr(r->out, "46,702,792,704") != NULL);
}

static void test_usage(void) {
    EXPECT_EQ("no args", run((const char *[]){"params", NULL})->code, 2);
    EXPECT_EQ("unknown option", run((const char *[]){"params", ours, "--frobnicate", NULL})->code,
              2);
    EXPECT_EQ("two configs", run((const char *[]){"params", ours, hf, NULL})->code, 2);
    EXPECT_EQ("--world 0", run((const char *[]){"params", ours, "--world", "0", NULL})->code, 2);
    EXPECT_EQ("--ep x", run((const char *[]){"params", ours, "--ep", "x", NULL})->code, 2);
    run_result *r = run((const char *[]){"params", "/nonexistent.json", NULL});
    EXPECT_EQ("missing file", r->code, 2);
    EXPECT("missing file named", strstr(r->err, "/nonexistent.json") != NULL);
    r = run((const char *[]){"params", ours, "--ep", "3", NULL});
    EXPECT_EQ("ep 3 for 8 experts", r->code, 2);
    EXPECT("layout message names n_experts", strstr(r->err, "n_experts") != NULL);
    EXPECT_EQ("world 6 ep 4",
              run((const char *[]){"params", ours, "--world", "6", "--ep", "4", NULL})->code, 2);
    EXPECT_EQ("bad --set",
              run((const char *[]){"params", ours, "--set", "model.nope=1", NULL})->code, 2);
    r = run((const char *[]){"params", tiny, "--set", "model.n_kv_heads=3", NULL});
    EXPECT_EQ("invalid config", r->code, 2);
    EXPECT("invalid config names file and field",
           strstr(r->err, tiny) && strstr(r->err, "n_kv_heads"));
    r = run((const char *[]){"params", "--help", NULL});
    EXPECT_EQ("--help", r->code, 0);
    EXPECT("--help text", strstr(r->out, "usage: moe params") != NULL);
}

static void test_unknown_hf_field(void) {
    // The Mixtral HF example plus one field moe does not know.
    FILE *f = fopen(hf, "rb");
    MOE_ASSERT(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *brace = strchr(text, '{');
    MOE_ASSERT(brace);
    char path[] = "/tmp/test_params_cli_hf_XXXXXX";
    int fd = mkstemp(path);
    MOE_ASSERT(fd >= 0);
    FILE *o = fdopen(fd, "wb");
    fprintf(o, "{\n  \"foo_unknown_field\": 1,%s", brace + 1);
    fclose(o);

    run_result *r = run((const char *[]){"params", path, NULL});
    EXPECT_EQ("unknown field: exit 0", r->code, 0);
    EXPECT("unknown field on stderr",
           strstr(r->err, "\"foo_unknown_field\" (unknown field)") != NULL);
    const char *known = strstr(r->err, "ignored known HF fields");
    EXPECT("known fields on stderr", known && strstr(known, "torch_dtype") &&
                                         strstr(known, "torch_dtype") < strchr(known, '\n'));
    json_t *j = run_json(__LINE__, (const char *[]){"params", path, "--json", NULL});
    int found = 0;
    size_t i;
    json_t *e;
    json_array_foreach(j ? json_object_get(j, "ignored_hf_fields") : NULL, i, e) {
        found |= !strcmp(json_string_value(json_object_get(e, "field")), "foo_unknown_field") &&
                 !strcmp(json_string_value(json_object_get(e, "reason")), "unknown field");
    }
    EXPECT("unknown field in --json", found);
    if (j)
        EXPECT_EQ("unknown field does not change the count", jint(j, "total_params"),
                  46702792704LL);
    json_decref(j);
    unlink(path);
}

static void test_per_rank(void) {
    // tiny-moe: V=256, D=128, L=4, H=4, layer 0 dense (FFN 512), 8 experts of 256 top-2.
    //   emb 256·128 = 32,768; attention 4·4·128·128 = 262,144; norms 4·2·128 + 128 = 1,152;
    //   dense 3·128·512 = 196,608; router 3·128·8 = 3,072; experts 3·8·3·128·256 = 2,359,296;
    //   head 32,768 -> total 2,887,808.
    // World 1: 2,887,808 entries × (4 params + 4 grads + 8 Adam) = 46,204,928 bytes.
    // World 4, EP 2: experts halved: 2,887,808 - 1,179,648 = 1,708,160 entries -> 27,330,560 bytes.
    json_t *a = run_json(__LINE__, (const char *[]){"params", tiny, "--json", NULL});
    json_t *b = run_json(
        __LINE__, (const char *[]){"params", tiny, "--world", "4", "--ep", "2", "--json", NULL});
    if (a && b) {
        EXPECT_EQ("tiny total", jint(a, "total_params"), 2887808);
        EXPECT_EQ("tiny w1 bytes", jint(a, "per_rank_bytes"), 16LL * 2887808);
        EXPECT_EQ("tiny w4 ep2 params", jint(b, "per_rank_params"), 2887808 - 2359296 / 2);
        EXPECT_EQ("tiny w4 ep2 bytes", jint(b, "per_rank_bytes"), 16LL * (2887808 - 2359296 / 2));
        EXPECT_EQ("tiny w4 ep2 edp", jint(b, "edp"), 2);
    }
    json_decref(a);
    json_decref(b);
    // --set: top-1 leaves 3 MoE layers × 1 of 8 experts active: 2,887,808 - 3·7·98,304 = 823,424;
    // LoRA rank 4 on attention: 4 layers · 4 matrices · 4·(128+128) = 16,384 trainable.
    json_t *c = run_json(__LINE__, (const char *[]){"params", tiny, "--set", "model.top_k=1",
                                                    "--set", "lora.rank=4", "--json", NULL});
    if (c) {
        EXPECT_EQ("--set top_k active", jint(c, "active_params"), 823424);
        EXPECT_EQ("--set lora trainable", jint(c, "trainable_params"), 16384);
        EXPECT_EQ("--set lora frozen", jint(c, "frozen_params"), 2887808);
    }
    json_decref(c);
}

// Group-limited routing through `moe params`: the DeepSeek-V3 config.json (n_group 8, topk_group 4,
// noaux_tc) prints its restriction on the routing line and in --json; the counts do not move
// (a token still uses top-8 experts). A node-limited moe config prints its node restriction.
static void test_groups(void) {
    char v3[4096];
    snprintf(v3, sizeof v3, "%s/hf/deepseek-v3.json", examples);
    run_result *r = run((const char *[]){"params", v3, NULL});
    EXPECT_EQ("v3 table exit", r->code, 0);
    EXPECT("v3 routing line",
           strstr(r->out, "routing: top-8 of 256 experts within 4 of 8 groups (group score "
                          "top2_sum; 128 experts reachable per token") != NULL);
    json_t *a = run_json(__LINE__, (const char *[]){"params", v3, "--json", NULL});
    json_t *b =
        run_json(__LINE__, (const char *[]){"params", v3, "--set", "router.n_group=0", "--set",
                                            "router.topk_group=0", "--json", NULL});
    if (a && b) {
        EXPECT_EQ("v3 n_group", jint(a, "n_group"), 8);
        EXPECT_EQ("v3 topk_group", jint(a, "topk_group"), 4);
        EXPECT_EQ("v3 reachable", jint(a, "reachable_experts"), 128);
        EXPECT("v3 group score",
               !strcmp(json_string_value(json_object_get(a, "group_score")), "top2_sum"));
        EXPECT_EQ("v3 active (DeepSeek's 36.6B w/o embeddings)",
                  jint(a, "active_params_nonembedding"), 36625618432LL);
        EXPECT_EQ("groups off: same active", jint(b, "active_params"), jint(a, "active_params"));
        EXPECT_EQ("groups off: n_group", jint(b, "n_group"), 0);
        EXPECT_EQ("groups off: all reachable", jint(b, "reachable_experts"), 256);
    }
    json_decref(a);
    json_decref(b);
    r = run((const char *[]){"params", tiny, "--set", "router.node_limited=true", "--set",
                             "router.topk_group=1", "--set", "parallel.ep_size=4", NULL});
    EXPECT_EQ("node-limited exit", r->code, 0);
    EXPECT("node-limited routing line",
           strstr(r->out, "routing: top-2 of 8 experts within 1 node(s) of the EP group") != NULL);
    r = run((const char *[]){"params", tiny, "--set", "router.n_group=3", "--set",
                             "router.topk_group=1", NULL});
    EXPECT_EQ("n_group 3 of 8 refused", r->code, 2);
    EXPECT("refusal names the fields",
           strstr(r->err, "router.n_group = 3 does not divide model.n_experts = 8") != NULL);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_params_cli MOE_BINARY EXAMPLES_DIR\n");
        return 2;
    }
    moe_bin = argv[1];
    examples = argv[2];
    snprintf(ours, sizeof ours, "%s/mixtral-8x7b.json", examples);
    snprintf(hf, sizeof hf, "%s/hf/mixtral-8x7b.json", examples);
    snprintf(tiny, sizeof tiny, "%s/tiny-moe.json", examples);
    test_same_totals();
    test_usage();
    test_unknown_hf_field();
    test_per_rank();
    test_groups();
    if (failures) {
        fprintf(stderr, "test_params_cli: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_params_cli: all checks passed\n");
    return 0;
}
