// test_config_oracle.c: our JSON reader against python's json_format.Parse (the oracle) on every
// JSON file of the given directories: both must produce the same serialized bytes. Also round
// trips through our writer: its output, read by us and by python, gives the same bytes again.
//
// usage: test_config_oracle PYTHON ORACLE_PY PB2_DIR OUT_DIR [--strict|--lenient|--reject DIR]...
// --strict: every file must be accepted by both readers. --lenient (examples/): a file both
// readers reject is not a moe message (e.g. a Hugging Face config.json) and is skipped.
// --reject (tests/configs/bad/): every file must be rejected by both readers, except invalid_*
// files, which are well-formed but semantically invalid (validation's business, not the reader's).
// The message type is chosen by file-name prefix: manifest* CheckpointManifest, metrics*
// MetricsRecord, anything else Config.
#include "config.h"

#include <dirent.h>
#include <string.h>

typedef struct {
    char path[1024];
    const char *type; // python name, e.g. "Config"
    const ProtobufCMessageDescriptor *desc;
    int strict, reject;
    int ours_ok;
    char ours_err[512];
    uint8_t *bytes; // (n_bytes,) our parse, packed
    size_t n_bytes;
    char rt_path[4096], rtd_path[4096]; // our writer's output: present fields / with defaults
    uint8_t *rtd_bytes;                 // (n_rtd,) our parse of rtd_path, packed
    size_t n_rtd;
} oracle_case;

static int failures = 0, checks = 0;

// Bad files that python 4.21 accepts but our stricter rules refuse on purpose (docs/config.md).
// Only python may accept these; ours must still reject them.
static const struct {
    const char *file, *why;
} stricter_than_python[] = {
    {"both_spellings.json",
     "python 4.21 checks duplicate keys, not fields: the last spelling wins"},
};

static const char *stricter_reason(const char *path) {
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    for (size_t i = 0; i < sizeof stricter_than_python / sizeof stricter_than_python[0]; i++)
        if (!strcmp(base, stricter_than_python[i].file)) return stricter_than_python[i].why;
    return NULL;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    return buf;
}

static int write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fputs(s, f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *n) {
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*n ? *n : 1);
    MOE_ASSERT(b);
    MOE_ASSERT_EQ(protobuf_c_message_pack(m, b), *n);
    return b;
}

static void fail(const char *what, const char *file, const char *detail) {
    failures++;
    fprintf(stderr, "FAIL %s: %s\n  %s\n", what, file, detail);
}

// Compares two byte strings; on a difference reports the first differing offset and the bytes.
static void compare_bytes(const char *what, const char *file, const uint8_t *exp, size_t ne,
                          const uint8_t *got, size_t ng) {
    checks++;
    size_t i = 0;
    while (i < ne && i < ng && exp[i] == got[i]) i++;
    if (i == ne && i == ng) return;
    char detail[1024];
    size_t o = (size_t)snprintf(detail, sizeof detail,
                                "bytes differ at offset %zu (expected %zu bytes, got %zu)\n  "
                                "expected[%zu..]:",
                                i, ne, ng, i);
    for (size_t k = i; k < ne && k < i + 16; k++)
        o += (size_t)snprintf(detail + o, sizeof detail - o, " %02x", exp[k]);
    o += (size_t)snprintf(detail + o, sizeof detail - o, "\n  got[%zu..]:     ", i);
    for (size_t k = i; k < ng && k < i + 16 && o < sizeof detail; k++)
        o += (size_t)snprintf(detail + o, sizeof detail - o, " %02x", got[k]);
    fail(what, file, detail);
}

static int hex_decode(const char *h, uint8_t **out, size_t *n) {
    size_t len = strcspn(h, "\r\n");
    if (len % 2) return -1;
    *out = malloc(len / 2 + 1);
    for (size_t i = 0; i < len / 2; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1) return -1;
        (*out)[i] = (uint8_t)v;
    }
    *n = len / 2;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void shell_quote(char *out, size_t cap, size_t *o, const char *s) {
    *o += (size_t)snprintf(out + *o, cap - *o, " '");
    for (; *s && *o + 5 < cap; s++) {
        if (*s == '\'')
            *o += (size_t)snprintf(out + *o, cap - *o, "'\\''");
        else
            out[(*o)++] = *s;
    }
    *o += (size_t)snprintf(out + *o, cap - *o, "'");
}

static void run_ours(oracle_case *c, const char *out_dir, int idx) {
    size_t len;
    char *text = read_file(c->path, &len);
    if (!text) {
        snprintf(c->ours_err, sizeof c->ours_err, "cannot read %.480s", c->path);
        return;
    }
    ProtobufCMessage *m;
    moe_status st = moe_json_parse_message(c->path, text, len, c->desc, &m);
    free(text);
    if (st != MOE_OK) {
        snprintf(c->ours_err, sizeof c->ours_err, "%s", moe_last_error());
        return;
    }
    c->ours_ok = 1;
    c->bytes = pack(m, &c->n_bytes);

    // Round trip through our writer: present fields only, then with defaults.
    const char *base = strrchr(c->path, '/') ? strrchr(c->path, '/') + 1 : c->path;
    snprintf(c->rt_path, sizeof c->rt_path, "%.1000s/%03d-%.1000s", out_dir, idx, base);
    snprintf(c->rtd_path, sizeof c->rtd_path, "%.1000s/%03d-defaults-%.1000s", out_dir, idx, base);
    char *js = moe_json_format_message(m, 0), *jsd = moe_json_format_message(m, MOE_JSON_DEFAULTS);
    MOE_ASSERT(js && jsd);
    MOE_ASSERT(write_file(c->rt_path, js) == 0 && write_file(c->rtd_path, jsd) == 0);
    ProtobufCMessage *m2, *m3;
    checks++;
    if (moe_json_parse_message(c->rt_path, js, strlen(js), c->desc, &m2) != MOE_OK) {
        fail("our reader rejects our writer's output", c->path, moe_last_error());
    } else {
        size_t n2;
        uint8_t *b2 = pack(m2, &n2);
        compare_bytes("writer round trip (ours)", c->path, c->bytes, c->n_bytes, b2, n2);
        free(b2);
        protobuf_c_message_free_unpacked(m2, NULL);
    }
    checks++;
    if (moe_json_parse_message(c->rtd_path, jsd, strlen(jsd), c->desc, &m3) != MOE_OK) {
        fail("our reader rejects our writer's output with defaults", c->path, moe_last_error());
    } else {
        c->rtd_bytes = pack(m3, &c->n_rtd);
        char *again = moe_json_format_message(m3, MOE_JSON_DEFAULTS);
        checks++;
        if (strcmp(again, jsd) != 0) {
            char detail[512];
            size_t k = 0;
            while (again[k] && again[k] == jsd[k]) k++;
            snprintf(detail, sizeof detail,
                     "defaults output is not a fixpoint; first difference "
                     "at char %zu: expected \"%.40s\", got \"%.40s\"",
                     k, jsd + k, again + k);
            fail("writer with defaults", c->path, detail);
        }
        free(again);
        protobuf_c_message_free_unpacked(m3, NULL);
    }
    free(js);
    free(jsd);
    protobuf_c_message_free_unpacked(m, NULL);
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: %s PYTHON ORACLE_PY PB2_DIR OUT_DIR [--strict|--lenient DIR]...\n",
                argv[0]);
        return 2;
    }
    const char *python = argv[1], *oracle = argv[2], *pb2 = argv[3], *out_dir = argv[4];
    oracle_case *cases = calloc(4096, sizeof *cases);
    int n = 0;
    for (int a = 5; a + 1 < argc; a += 2) {
        int strict = !strcmp(argv[a], "--strict"), reject = !strcmp(argv[a], "--reject");
        const char *dir = argv[a + 1];
        DIR *d = opendir(dir);
        if (!d) {
            fprintf(stderr, "FAIL cannot open directory %s\n", dir);
            return 1;
        }
        char *names[1024];
        int nn = 0;
        struct dirent *e;
        while ((e = readdir(d)) && nn < 1024) {
            size_t l = strlen(e->d_name);
            if (l > 5 && !strcmp(e->d_name + l - 5, ".json") &&
                !(reject && !strncmp(e->d_name, "invalid_", 8)))
                names[nn++] = strdup(e->d_name);
        }
        closedir(d);
        qsort(names, (size_t)nn, sizeof *names, cmp_str);
        if ((strict || reject) && nn == 0) {
            fprintf(stderr, "FAIL %s has no .json files\n", dir);
            failures++;
        }
        for (int i = 0; i < nn && n < 4096; i++, n++) {
            oracle_case *c = &cases[n];
            snprintf(c->path, sizeof c->path, "%s/%s", dir, names[i]);
            c->strict = strict;
            c->reject = reject;
            if (!strncmp(names[i], "manifest", 8)) {
                c->type = "CheckpointManifest";
                c->desc = &moe__checkpoint_manifest__descriptor;
            } else if (!strncmp(names[i], "metrics", 7)) {
                c->type = "MetricsRecord";
                c->desc = &moe__metrics_record__descriptor;
            } else {
                c->type = "Config";
                c->desc = &moe__config__descriptor;
            }
            free(names[i]);
            run_ours(c, out_dir, n);
        }
    }

    // One python run for all files: originals, then our writer's outputs.
    size_t cap = 1 << 20, o = 0;
    char *cmd = malloc(cap);
    o += (size_t)snprintf(cmd, cap, "%s", "");
    shell_quote(cmd, cap, &o, python);
    shell_quote(cmd, cap, &o, oracle);
    shell_quote(cmd, cap, &o, pb2);
    for (int i = 0; i < n; i++) {
        shell_quote(cmd, cap, &o, cases[i].type);
        shell_quote(cmd, cap, &o, cases[i].path);
        if (cases[i].ours_ok) {
            shell_quote(cmd, cap, &o, cases[i].type);
            shell_quote(cmd, cap, &o, cases[i].rt_path);
            shell_quote(cmd, cap, &o, cases[i].type);
            shell_quote(cmd, cap, &o, cases[i].rtd_path);
        }
    }
    FILE *p = popen(cmd, "r");
    MOE_ASSERT(p);
    static char line[1 << 20];
    int skipped = 0;
    for (int i = 0; i < n; i++) {
        oracle_case *c = &cases[i];
        int nread = c->ours_ok ? 3 : 1;
        for (int k = 0; k < nread; k++) {
            if (!fgets(line, sizeof line, p)) {
                fail("oracle gave no answer (is python3-protobuf installed?)", c->path, cmd);
                pclose(p);
                return 1;
            }
            int py_ok = !strncmp(line, "OK ", 3);
            line[strcspn(line, "\n")] = '\0';
            if (k == 0 && c->reject) {
                checks++;
                const char *why = stricter_reason(c->path);
                if (!c->ours_ok && py_ok && why) {
                    printf("ok   %s rejected by us; python accepts it (%s)\n", c->path, why);
                } else if (c->ours_ok || py_ok) {
                    char detail[1024];
                    snprintf(detail, sizeof detail,
                             "expected both readers to reject it; ours: %s, "
                             "python: %.400s",
                             c->ours_ok ? "accepts" : "rejects", py_ok ? "accepts" : line + 4);
                    fail("a bad file is accepted", c->path, detail);
                } else {
                    printf("ok   %s rejected by both\n", c->path);
                }
            } else if (k == 0) {
                checks++;
                if (!c->ours_ok && !py_ok) {
                    if (c->strict) {
                        char detail[1024];
                        snprintf(detail, sizeof detail,
                                 "both readers reject it:\n  ours: %s\n  "
                                 "python: %.400s",
                                 c->ours_err, line + 4);
                        fail("a good file is rejected", c->path, detail);
                    } else {
                        skipped++;
                        printf("skip %s: not a moe.%s (both readers reject it)\n", c->path,
                               c->type);
                    }
                } else if (!c->ours_ok) {
                    fail("we reject what python accepts", c->path, c->ours_err);
                } else if (!py_ok) {
                    char detail[600];
                    snprintf(detail, sizeof detail, "python: %.500s", line + 4);
                    fail("we accept what python rejects", c->path, detail);
                }
            }
            if (!py_ok || !c->ours_ok || c->reject) continue;
            uint8_t *pb;
            size_t npb;
            MOE_ASSERT(hex_decode(line + 3, &pb, &npb) == 0);
            if (k == 0) {
                compare_bytes("our parse vs python's", c->path, pb, npb, c->bytes, c->n_bytes);
                printf("ok   %s (moe.%s, %zu bytes)\n", c->path, c->type, c->n_bytes);
            } else if (k == 1) {
                compare_bytes("python's parse of our writer's output", c->rt_path, c->bytes,
                              c->n_bytes, pb, npb);
            } else if (c->rtd_bytes) {
                compare_bytes("python's parse of our writer's output with defaults", c->rtd_path,
                              pb, npb, c->rtd_bytes, c->n_rtd);
            }
            free(pb);
        }
    }
    if (pclose(p) != 0) fail("oracle exited with an error", oracle, cmd);
    for (int i = 0; i < n; i++) {
        free(cases[i].bytes);
        free(cases[i].rtd_bytes);
    }
    free(cases);
    free(cmd);
    printf("%d files, %d checks, %d skipped, %d failed\n", n, checks, skipped, failures);
    return failures ? 1 : 0;
}
