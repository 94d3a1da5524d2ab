// test_error_lists.c: a list in a message (problems, known fields, values, differing fields) that
// does not fit its buffer ends at an item boundary with "... and N more", N counting exactly
// what was left out — never in the middle of a word. First the helper (common/list.c), then the
// lists that used to be cut: the problems of a config (moe config / train / sweep / params) and
// the same message wrapped once more, the known fields after a long unknown key, and a
// checkpoint's differing model fields with a long dense_layers list.
#include "checkpoint.h"
#include "config.h"
#include "test-util.h"

#include <string.h>

// The N of a tail "... and N more" that follows `sep` at the end of s; -1 if s does not end so.
static int tail_of(const char *s, const char *sep) {
    const char *t = NULL;
    for (const char *p = strstr(s, "... and "); p; p = strstr(p + 1, "... and ")) t = p;
    if (!t) return -1;
    const size_t sl = strlen(sep);
    if (t != s && ((size_t)(t - s) < sl || strncmp(t - sl, sep, sl))) return -1;
    int n = -1, used = 0; // parsed here, not by moe_list_more: the test reads what a user reads
    return sscanf(t, "... and %d more%n", &n, &used) == 1 && t[used] == '\0' ? n : -1;
}

// How many items precede the tail (or make up s), split at sep; each must be one of the whole
// items the caller offered, i.e. end with `end` (a word no cut item ends with).
static int whole_items(const char *s, const char *sep, const char *end) {
    int n = 0;
    const size_t sl = strlen(sep), el = strlen(end);
    for (const char *p = s; *p && strncmp(p, "... and ", 8);) {
        const char *q = strstr(p, sep);
        const size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len < el || strncmp(p + len - el, end, el)) return -1; // cut inside an item
        n++;
        p = q ? q + sl : p + len;
    }
    return n;
}

static void test_helper(void) {
    char b[48];
    moe_list l;
    // Everything fits: no tail, even when the last item leaves no room for one.
    b[0] = '\0';
    moe_list_start(&l, b, 12, ", ");
    moe_list_add(&l, "%s", "0123456789");
    CHECK(moe_list_end(&l) == 0 && !strcmp(b, "0123456789"), "one item filling the buffer: '%s'",
          b);
    // Too many: whole items, then the tail; shown + N = offered.
    static const char *const w[] = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"};
    strcpy(b, "known: ");
    moe_list_start(&l, b, sizeof b, ", ");
    for (int i = 0; i < 7; i++) moe_list_add(&l, "%s", w[i]);
    const int more = moe_list_end(&l);
    CHECK(more > 0 && strlen(b) < sizeof b && !strncmp(b, "known: alpha, ", 14) &&
              tail_of(b, ", ") == more && l.n + more == 7,
          "7 words in %zu bytes: '%s' (%d shown, %d more)", sizeof b, b, l.n, more);
    // Items left out before they were offered (an earlier list's tail) are counted too.
    b[0] = '\0';
    moe_list_start(&l, b, sizeof b, ", ");
    moe_list_add(&l, "a");
    moe_list_skip(&l, 5);
    CHECK(moe_list_end(&l) == 5 && !strcmp(b, "a, ... and 5 more"), "skip: '%s'", b);
    CHECK(moe_list_more("... and 12 more") == 12 && moe_list_more("... and 12 more x") == -1 &&
              moe_list_more("... and more") == -1 && moe_list_more("and 2 more") == -1,
          "moe_list_more parses exactly the tail");
    // moe_text_clip: whole lines; a tail line of the text adds its count; a first line too long
    // alone is cut with "...".
    char out[64];
    const char *ten = "line 0 ok\nline 1 ok\nline 2 ok\nline 3 ok\nline 4 ok\nline 5 ok\n"
                      "line 6 ok\nline 7 ok\nline 8 ok\nline 9 ok\n... and 7 more";
    moe_text_clip(out, sizeof out, ten);
    const int kept = whole_items(out, "\n", " ok");
    CHECK(kept > 0 && tail_of(out, "\n") == 10 - kept + 7, "clip: '%s' (%d whole lines)", out,
          kept);
    char lng[200];
    memset(lng, 'x', sizeof lng - 1);
    lng[sizeof lng - 1] = '\0';
    moe_text_clip(out, sizeof out, lng);
    CHECK(strlen(out) < sizeof out && strlen(out) > 3 && !strcmp(out + strlen(out) - 3, "..."),
          "clip of one long line: '%s'", out);
}

// 60 lora targets "shared_experts" with no shared experts: each is refused, and each after the
// first repeats the first: 119 problems, far more than one message holds.
#define N_TARGETS  60
#define N_PROBLEMS (2 * N_TARGETS - 1)

static void check_problems(const char *what, const char *msg) {
    int kept = 0, bad = 0;
    for (const char *p = msg; *p && strncmp(p, "... and ", 8); kept++) {
        const char *q = strchr(p, '\n');
        const size_t len = q ? (size_t)(q - p) : strlen(p);
        const char *e1 = "remove it", *e2 = "list each target once";
        const int ok = (len >= strlen(e1) && !strncmp(p + len - strlen(e1), e1, strlen(e1))) ||
                       (len >= strlen(e2) && !strncmp(p + len - strlen(e2), e2, strlen(e2)));
        if (!ok) bad++;
        p = q ? q + 1 : p + len;
    }
    const int more = tail_of(msg, "\n");
    CHECK(strlen(msg) < MOE_ERROR_MAX && bad == 0 && more > 0 && kept + more == N_PROBLEMS,
          "%s: %d whole lines, %d cut, tail %d (expected %d in all), %zu bytes; ends '%s'", what,
          kept, bad, more, N_PROBLEMS, strlen(msg),
          strlen(msg) > 120 ? msg + strlen(msg) - 120 : msg);
}

static void test_config_problems(const char *dir) {
    char path[512], json[4096];
    size_t u = (size_t)snprintf(json, sizeof json,
                                "{\"model\": {\"n_experts\": 4, \"top_k\": 2, \"d_model\": 32, "
                                "\"n_heads\": 4},\n \"lora\": {\"rank\": 4, \"alpha\": 8, "
                                "\"targets\": [");
    for (int i = 0; i < N_TARGETS; i++)
        u += (size_t)snprintf(json + u, sizeof json - u, "%s\"shared_experts\"", i ? ", " : "");
    snprintf(json + u, sizeof json - u, "]}}\n");
    snprintf(path, sizeof path, "%s/many-problems.json", dir);
    FILE *f = fopen(path, "w");
    MOE_ASSERT(f && fputs(json, f) >= 0 && fclose(f) == 0);

    // moe train's path: moe_config_validate alone.
    ProtobufCMessage *m = NULL;
    CHECK(moe_json_parse_message(path, json, strlen(json), &moe__config__descriptor, &m) == MOE_OK,
          "parse: %s", moe_last_error());
    if (m) {
        CHECK(moe_config_validate((Moe__Config *)m, 1) == MOE_EINVAL, "validate accepted it");
        check_problems("moe_config_validate", moe_last_error());
        protobuf_c_message_free_unpacked(m, NULL);
    }
    // moe config's path: every line gets its file:line:column.
    Moe__Config *cfg = NULL;
    moe_status st = moe_config_load_with(path, NULL, 0, 1, &cfg);
    CHECK(st == MOE_EINVAL && !cfg, "load_with: status %d", st);
    check_problems("moe_config_load_with", moe_last_error());
    CHECK(strstr(moe_last_error(), "many-problems.json:2:"), "no position: %.200s",
          moe_last_error());
    // sweep and moe params wrap it once more (with the last error as an argument).
    moe_set_error(st, "%s: the base config with the sweep's \"set\": %s", path, moe_last_error());
    check_problems("wrapped again", moe_last_error());
}

// An unknown key far longer than any field name: it is shown shortened, and the known fields
// after it are all there.
static void test_long_key(void) {
    static char json[4000];
    const int klen = 3000;
    int u = snprintf(json, sizeof json, "{\"train\": {\"");
    memset(json + u, 'k', (size_t)klen);
    snprintf(json + u + klen, sizeof json - (size_t)(u + klen), "\": 1}}");
    ProtobufCMessage *m = NULL;
    moe_status st =
        moe_json_parse_message("t.json", json, strlen(json), &moe__config__descriptor, &m);
    const char *e = moe_last_error();
    const ProtobufCMessageDescriptor *d = &moe__train_config__descriptor;
    const char *last = d->fields[d->n_fields - 1].name, *known = strstr(e, "; known fields: ");
    CHECK(st == MOE_EINVAL && known && !strcmp(e + strlen(e) - strlen(last), last) &&
              whole_items(known + 16, ", ", "") == (int)d->n_fields,
          "unknown key of %d bytes: expected every known field of %s, ending '%s'; got '%.120s' "
          "... '%s'",
          klen, d->name, last, e, strlen(e) > 200 ? e + strlen(e) - 200 : e);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
}

// A checkpoint of another model: the differing fields, and a long dense_layers value list.
static void test_ckpt_diff(void) {
    Moe__Config *a = moe_config_new_default(), *b = moe_config_new_default();
    enum { NL = 300 };
    a->model->n_layers = NL, a->model->has_n_layers = 1;
    a->model->n_dense_layers = NL;
    a->model->dense_layers = moe_xcalloc(NL, sizeof *a->model->dense_layers);
    for (int i = 0; i < NL; i++) a->model->dense_layers[i] = i;
    char buf[2048];
    const int n = moe_ckpt_config_diff(a, b, buf, sizeof buf);
    const char *v = strstr(buf, "model.dense_layers (");
    int shown = 0, more = -1;
    if (v) {
        v += strlen("model.dense_layers (");
        for (const char *p = v; *p >= '0' && *p <= '9';) {
            shown++;
            p += strspn(p, "0123456789");
            if (*p == ',') p++;
            if (sscanf(p, "... and %d more", &more) == 1) break;
        }
    }
    CHECK(n == 2 && v && more > 0 && shown + more == NL,
          "dense_layers of %d values: %d shown, then %d more: '%.300s'", NL, shown, more, buf);
    // Many differing fields in a small buffer: whole items, then the count of the rest.
    a->model->d_model = 4097, a->model->n_heads = 33, a->model->n_experts = 65;
    a->model->top_k = 7, a->model->vocab_size = 129281;
    a->model->has_d_model = a->model->has_n_heads = a->model->has_n_experts = 1;
    a->model->has_top_k = a->model->has_vocab_size = 1;
    char small[160], big[4096];
    const int n2 = moe_ckpt_config_diff(a, b, small, sizeof small);
    int items = 0;
    for (const char *p = strstr(small, " in the config)"); p; p = strstr(p + 1, " in the config)"))
        items++;
    const char *tail = strstr(small, "in the config), ... and ");
    CHECK(n2 == moe_ckpt_config_diff(a, b, big, sizeof big) && n2 >= 5 && tail &&
              tail_of(small, ", ") == n2 - items && strlen(small) < sizeof small,
          "%d differing fields in %zu bytes: '%s'", n2, sizeof small, small);
    moe_config_free(a);
    moe_config_free(b);
}

int main(void) {
    char dir[64];
    test_tmpdir(dir, sizeof dir, "moe-error-lists");
    test_helper();
    test_config_problems(dir);
    test_long_key();
    test_ckpt_diff();
    test_rmtree(dir);
    return test_summary("test_error_lists");
}
