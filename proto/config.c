// config.c: loading a moe.Config from a file (or stdin), `--set path.to.field=value` overrides
// resolved through the descriptors, and the defaults-filled Config callers get. Overrides reuse
// the file reader's value converter, so a value means the same on the command line as in a file.
#include "config-impl.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// Files larger than this are refused: a config is a few KiB; a huge one is a wrong path.
#define MOE_CONFIG_MAX_BYTES (64u << 20)

static moe_status moe_read_all(const char *path, char **text, size_t *len) {
    int is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f)
        return moe_set_error(MOE_EIO, "%s: cannot open: %s; check the path", path, strerror(errno));
    struct stat sb;
    if (!is_stdin && fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return moe_set_error(MOE_EINVAL,
                             "%s: is a directory, not a config file; pass the path of "
                             "a JSON config (see examples/)",
                             path);
    }
    const char *name = is_stdin ? "<stdin>" : path;
    moe_status st = moe_read_stream(f, name, MOE_CONFIG_MAX_BYTES, text, len);
    if (!is_stdin) fclose(f);
    if (st == MOE_EINVAL) // the size limit: say what the file was expected to be
        return moe_set_error(MOE_EINVAL, "%s: larger than %u MiB; is this a config file?", name,
                             MOE_CONFIG_MAX_BYTES >> 20);
    return st;
}

// Gives every absent (non-repeated) sub-message of the Config its defaults.
static moe_status moe_config_fill(Moe__Config *cfg) {
    const ProtobufCMessageDescriptor *d = cfg->base.descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED ||
            (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        ProtobufCMessage **slot = (ProtobufCMessage **)((char *)cfg + f->offset);
        if (!*slot && !(*slot = moe_json_new_message(f->descriptor)))
            return moe_set_error(MOE_ENOMEM, "out of memory");
    }
    return MOE_OK;
}

Moe__Config *moe_config_new_default(void) {
    Moe__Config *cfg = (Moe__Config *)moe_json_new_message(&moe__config__descriptor);
    if (cfg && moe_config_fill(cfg) != MOE_OK) {
        moe_config_free(cfg);
        return NULL;
    }
    return cfg;
}

void moe_config_free(Moe__Config *cfg) {
    if (cfg) protobuf_c_message_free_unpacked(&cfg->base, NULL);
}

ProtobufCMessage *moe_proto_copy(const ProtobufCMessage *m) {
    const size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = moe_xcalloc(n + 1, 1);
    MOE_ASSERT_EQ(protobuf_c_message_pack(m, buf), n);
    ProtobufCMessage *out = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    free(buf);
    MOE_ASSERT(out); // it packed, so it unpacks unless memory ran out
    return out;
}

Moe__Config *moe_config_copy(const Moe__Config *cfg) {
    return (Moe__Config *)moe_proto_copy(&cfg->base);
}

// Reads and parses; on success also returns the source text (for locating validation errors).
static moe_status moe_config_read(const char *path, Moe__Config **out, char **text_out,
                                  size_t *len_out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    moe_status st = moe_read_all(path, &text, &len);
    if (st != MOE_OK) return st;
    ProtobufCMessage *m;
    st = moe_json_parse_message(strcmp(path, "-") ? path : "<stdin>", text, len,
                                &moe__config__descriptor, &m);
    if (st == MOE_OK && (st = moe_config_fill((Moe__Config *)m)) != MOE_OK)
        protobuf_c_message_free_unpacked(m, NULL);
    if (st != MOE_OK || !text_out) {
        free(text);
    } else {
        *text_out = text;
        *len_out = len;
    }
    if (st == MOE_OK) *out = (Moe__Config *)m;
    return st;
}

moe_status moe_config_load(const char *path, Moe__Config **out) {
    return moe_config_read(path, out, NULL, NULL);
}

moe_status moe_config_set(Moe__Config *cfg, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return moe_set_error(MOE_EUSAGE,
                             "--set %s: expected path.to.field=value "
                             "(e.g. --set model.top_k=4)",
                             assignment);
    size_t plen = (size_t)(eq - assignment);
    char *path = malloc(plen + 1);
    moe_jctx *c = calloc(1, sizeof *c);
    json_t *v = NULL;
    moe_status st = MOE_OK;
    if (!path || !c) {
        st = moe_set_error(MOE_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(path, assignment, plen);
    path[plen] = '\0';
    const char *value = eq + 1;
    c->origin = "--set";
    ProtobufCMessage *m = &cfg->base;
    const ProtobufCFieldDescriptor *f = NULL;
    for (char *seg = path, *next; seg; seg = next) {
        next = strchr(seg, '.');
        if (next) *next++ = '\0';
        if (c->depth >= MOE_JSON_MAX_DEPTH) {
            st = moe_json_fail(c, 0, 1, "path deeper than %d fields", MOE_JSON_MAX_DEPTH);
            goto done;
        }
        f = moe_json_find_field(m->descriptor, seg);
        if (!f) {
            char at[512], hint[1024];
            moe_json_path_str(c->path, c->depth, at, sizeof at);
            moe_json_suggest(m->descriptor, seg, hint, sizeof hint);
            c->path[c->depth++] = (moe_jseg){seg, seg, 0};
            st = moe_json_fail(c, 1, 0, "unknown field \"%.*s%s\" in %s (at %s)%s",
                               MOE_JSON_KEY_ARGS(seg), m->descriptor->name,
                               at[0] ? at : "top level", hint);
            goto done;
        }
        c->path[c->depth++] = (moe_jseg){seg, f->name, 0};
        if (!next) break;
        if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED) {
            st = moe_json_fail(c, 0, 1,
                               "a %s%s field has no fields; end the path here "
                               "(then =value)",
                               f->label == PROTOBUF_C_LABEL_REPEATED ? "repeated " : "",
                               f->type == PROTOBUF_C_TYPE_MESSAGE
                                   ? ((const ProtobufCMessageDescriptor *)f->descriptor)->name
                                   : "scalar");
            goto done;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) { // switch the oneof to this member
            uint32_t *which = (uint32_t *)((char *)m + f->quantifier_offset);
            if (*which != f->id) {
                const ProtobufCFieldDescriptor *g =
                    protobuf_c_message_descriptor_get_field(m->descriptor, *which);
                if (g) moe_json_clear_field(m, g);
                *(void **)((char *)m + f->offset) = NULL;
                *which = f->id;
            }
        }
        ProtobufCMessage **slot = (ProtobufCMessage **)((char *)m + f->offset);
        if (!*slot && !(*slot = moe_json_new_message(f->descriptor))) {
            st = moe_set_error(MOE_ENOMEM, "out of memory");
            goto done;
        }
        m = *slot;
    }
    // The value: JSON when it parses as JSON, else the bare text as a string (an enum name, a
    // path). Text that looks like an object or array but is malformed is reported as such. For a
    // string field, a number or true/false is taken as its text.
    json_error_t err;
    v = json_loads(value, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (v && f->type == PROTOBUF_C_TYPE_STRING && f->label != PROTOBUF_C_LABEL_REPEATED &&
        (json_is_number(v) || json_is_boolean(v))) {
        json_decref(v); // name=3 means the string "3"
        v = NULL;
    } else if (v) {
        c->text = value;
        c->len = strlen(value);
        c->base = c->depth;
    }
    if (!v) {
        size_t lead = strspn(value, " \t\r\n");
        // A quoted value is JSON too: "\u0000" (refused: protobuf-c strings are C strings)
        // must not become the text with its quotes.
        if (value[lead] == '{' || value[lead] == '[' || value[lead] == '"') {
            st =
                moe_json_fail(c, 0, 1, "invalid JSON value at column %d: %s", err.column, err.text);
            goto done;
        }
        v = json_string(value);
        if (!v) {
            st = moe_json_fail(c, 0, 1, "the value is not valid UTF-8");
            goto done;
        }
    }
    st = moe_json_set_field(c, m, f, v);
    // The Config's own sub-messages stay present (callers read cfg->model->… unchecked):
    // model=null resets the sub-message to its defaults rather than removing it.
    if (st == MOE_OK && m == &cfg->base && f->type == PROTOBUF_C_TYPE_MESSAGE &&
        f->label != PROTOBUF_C_LABEL_REPEATED) {
        ProtobufCMessage **slot = (ProtobufCMessage **)((char *)m + f->offset);
        if (!*slot && !(*slot = moe_json_new_message(f->descriptor)))
            st = moe_set_error(MOE_ENOMEM, "out of memory");
    }
done:
    json_decref(v);
    free(c);
    free(path);
    return st;
}

// Finds where the field named at the start of a validation message ("model.top_k = 9 …") was
// written in the source text: tries .proto names, then lowerCamelCase. Returns 0 or -1.
static int moe_locate_field(const char *line, const char *text, size_t len, moe_jpos *pos) {
    char tok[256];
    size_t n = strspn(line, "abcdefghijklmnopqrstuvwxyz0123456789_.[]");
    if (n == 0 || n >= sizeof tok || !memchr(line, '.', n)) return -1;
    memcpy(tok, line, n);
    tok[n] = '\0';
    for (int camel = 0; camel < 2; camel++) {
        moe_jseg path[16];
        char names[16][256];
        int depth = 0;
        char work[256];
        memcpy(work, tok, n + 1);
        for (char *seg = work, *next; seg && depth < 15; seg = next) {
            next = strchr(seg, '.');
            if (next) *next++ = '\0';
            char *br = strchr(seg, '[');
            if (br) *br = '\0';
            if (camel)
                moe_json_camel_name(seg, names[depth], sizeof names[depth]);
            else
                snprintf(names[depth], sizeof names[depth], "%s", seg);
            path[depth] = (moe_jseg){names[depth], names[depth], 0};
            depth++;
            if (br) path[depth++] = (moe_jseg){NULL, NULL, strtoul(br + 1, NULL, 10)};
        }
        if (moe_json_locate(text, len, path, depth, 0, pos) == 0) return 0;
    }
    return -1;
}

// Folds a field path for comparison: lowercase, '_' dropped, so that a --set written in
// lowerCamelCase ("parallel.epSize") matches the .proto name ("parallel.ep_size").
static void moe_fold_path(const char *in, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && in[i] && o + 1 < cap; i++)
        if (in[i] != '_')
            out[o++] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] - 'A' + 'a' : in[i]);
    out[o] = '\0';
}

// The last --set that wrote the field named at the start of `line` (itself or a message holding
// it), or NULL.
static const char *moe_set_for_field(const char *line, const char *const *sets, int n_sets) {
    char field[256], set[256];
    moe_fold_path(line, strspn(line, "abcdefghijklmnopqrstuvwxyz0123456789_.[]"), field,
                  sizeof field);
    if (!field[0]) return NULL;
    for (int i = n_sets - 1; i >= 0; i--) {
        const char *eq = strchr(sets[i], '=');
        if (!eq) continue;
        moe_fold_path(sets[i], (size_t)(eq - sets[i]), set, sizeof set);
        size_t n = strlen(set);
        if (n && !strncmp(field, set, n) &&
            (field[n] == '\0' || field[n] == '.' || field[n] == '['))
            return sets[i];
    }
    return NULL;
}

// The override that wrote another field the line names ("... exceeds train.steps = 10": a
// relation between two fields), NULL if none; *other gets the field's text (cap bytes).
static const char *moe_set_for_other(const char *line, const char *const *sets, int n_sets,
                                     char *other, size_t cap) {
    const char *id = "abcdefghijklmnopqrstuvwxyz0123456789_.[]";
    for (const char *p = line + strspn(line, id); *p; p++) {
        if (p[-1] != ' ' || !strchr("abcdefghijklmnopqrstuvwxyz", *p)) continue;
        const size_t n = strspn(p, id);
        if (!memchr(p, '.', n) || strncmp(p + n, " = ", 3)) continue;
        const char *set = moe_set_for_field(p, sets, n_sets);
        if (set) {
            snprintf(other, cap, "%.*s", (int)n, p);
            return set;
        }
    }
    return NULL;
}

// Prefixes every line of the last error with "--set a.b=v: " when an override wrote the field it
// names, else "origin:line:col: " where the file wrote it, else "origin: " (a default). Lines
// that no longer fit are counted in the tail "... and N more", never cut.
static moe_status moe_prefix_error(moe_status st, const char *origin, const char *text, size_t len,
                                   const char *const *sets, int n_sets) {
    char msg[MOE_ERROR_MAX], out[MOE_ERROR_MAX], where[600];
    snprintf(msg, sizeof msg, "%s", moe_last_error());
    // The problems validation left out already (its own tail, the last line) carry over.
    char *last = strrchr(msg, '\n');
    const int earlier = last ? moe_list_more(last + 1) : -1;
    if (earlier >= 0) *last = '\0';
    out[0] = '\0';
    moe_list l;
    moe_list_start(&l, out, sizeof out, "\n");
    for (char *line = msg, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        moe_jpos pos;
        const char *set = moe_set_for_field(line, sets, n_sets);
        if (set)
            snprintf(where, sizeof where, "--set %s: ", set);
        else if (moe_locate_field(line, text, len, &pos) == 0) {
            char other[128], field[128];
            const char *oset = moe_set_for_other(line, sets, n_sets, other, sizeof other);
            snprintf(field, sizeof field, "%.*s",
                     (int)strspn(line, "abcdefghijklmnopqrstuvwxyz0123456789_.[]"), line);
            if (oset) { // the file's field is fine alone: the override made the conflict
                moe_list_add(&l,
                             "--set %s conflicts with %s:%d:%d (the file's %s): %s; override "
                             "%s too (--set %s=...) or leave %s as the file has it",
                             oset, origin, pos.line, pos.column, field, line, field, field, other);
                continue;
            }
            snprintf(where, sizeof where, "%s:%d:%d: ", origin, pos.line, pos.column);
        }
        else
            snprintf(where, sizeof where, "%s: ", origin);
        moe_list_add(&l, "%s%s", where, line);
    }
    moe_list_skip(&l, earlier);
    moe_list_end(&l);
    return moe_set_error(st, "%s", out);
}

moe_status moe_config_load_with(const char *path, const char *const *sets, int n_sets, int world,
                                Moe__Config **out) {
    Moe__Config *cfg;
    char *text = NULL;
    size_t len = 0;
    moe_status st = moe_config_read(path, &cfg, &text, &len);
    *out = NULL;
    if (st != MOE_OK) return st;
    for (int i = 0; i < n_sets && st == MOE_OK; i++) st = moe_config_set(cfg, sets[i]);
    if (st == MOE_OK && (st = moe_config_validate(cfg, world)) != MOE_OK)
        st = moe_prefix_error(st, strcmp(path, "-") ? path : "<stdin>", text, len, sets, n_sets);
    free(text);
    if (st != MOE_OK) {
        moe_config_free(cfg);
        return st;
    }
    *out = cfg;
    return MOE_OK;
}

moe_status moe_config_write_file(const Moe__Config *cfg, const char *path) {
    char tmp[MOE_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return moe_set_error(MOE_EIO, "cannot write %s: %s", tmp, strerror(errno));
    moe_status st = moe_json_write_message(f, &cfg->base, 0);
    if (!st && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        st = moe_set_error(MOE_EIO, "cannot write %s: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && !st) st = moe_set_error(MOE_EIO, "cannot write %s: %s", tmp, strerror(errno));
    if (!st && rename(tmp, path) != 0)
        st = moe_set_error(MOE_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (st) unlink(tmp);
    return st;
}
