// json-reader.c: JSON (parsed by jansson) onto protobuf-c messages, generically through their
// descriptors, following protobuf's JSON mapping as python's json_format.Parse reads it. Every
// value is checked (type, range, enum name) and errors point at file:line:column via a re-scan of
// the source text (json-locate.c), trading a second pass on the error path for no position table.
#include "config-impl.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

// ---------------------------------------------------------------- names and messages

void moe_json_camel_name(const char *name, char *out, size_t cap) {
    size_t o = 0;
    int up = 0;
    for (const char *p = name; *p && o + 1 < cap; p++) {
        if (*p == '_') {
            up = 1;
            continue;
        }
        out[o++] = (up && *p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
        up = 0;
    }
    out[o] = '\0';
}

const ProtobufCFieldDescriptor *moe_json_find_field(const ProtobufCMessageDescriptor *d,
                                                    const char *name) {
    char camel[256];
    for (unsigned i = 0; i < d->n_fields; i++) { // JSON name first, as json_format does
        moe_json_camel_name(d->fields[i].name, camel, sizeof camel);
        if (!strcmp(camel, name)) return &d->fields[i];
    }
    return protobuf_c_message_descriptor_get_field_by_name(d, name);
}

static size_t moe_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 128 || lb > 128) return (size_t)-1;
    size_t row[129];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

void moe_json_suggest(const ProtobufCMessageDescriptor *d, const char *name, char *out,
                      size_t cap) {
    size_t best = (size_t)-1;
    size_t dist[256];
    int camel_wins[256];
    unsigned nf = d->n_fields < 256 ? d->n_fields : 256;
    for (unsigned i = 0; i < nf; i++) {
        char camel[256];
        moe_json_camel_name(d->fields[i].name, camel, sizeof camel);
        size_t dp = moe_edit_distance(name, d->fields[i].name), dc = moe_edit_distance(name, camel);
        dist[i] = dp <= dc ? dp : dc;
        camel_wins[i] = dc < dp;
        if (dist[i] < best) best = dist[i];
    }
    size_t len = strlen(name), limit = len / 2 > 2 ? len / 2 : 2;
    moe_list l;
    if (nf && best <= limit) {
        snprintf(out, cap, "; did you mean ");
        moe_list_start(&l, out, cap, " or ");
        for (unsigned i = 0, shown = 0; i < nf && shown < 3; i++) {
            if (dist[i] != best) continue;
            char camel[256];
            moe_json_camel_name(d->fields[i].name, camel, sizeof camel);
            moe_list_add(&l, "\"%s\"", camel_wins[i] ? camel : d->fields[i].name);
            shown++;
        }
        if (!moe_list_end(&l) && l.len + 1 < cap) out[l.len++] = '?', out[l.len] = '\0';
    } else {
        snprintf(out, cap, "; known fields: ");
        moe_list_start(&l, out, cap, ", ");
        for (unsigned i = 0; i < d->n_fields; i++) moe_list_add(&l, "%s", d->fields[i].name);
        moe_list_end(&l);
    }
}

void moe_json_path_str(const moe_jseg *path, int depth, char *out, size_t cap) {
    size_t o = 0;
    out[0] = '\0';
    for (int d = 0; d < depth && o < cap; d++) {
        if (path[d].key)
            o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? "." : "", path[d].name);
        else
            o += (size_t)snprintf(out + o, cap - o, "[%zu]", path[d].index);
    }
}

moe_status moe_json_fail(moe_jctx *c, int at_key, int with_path, const char *fmt, ...) {
    char msg[2048], path[512], where[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    moe_json_path_str(c->path, c->depth, path, sizeof path);
    moe_jpos pos;
    if (c->with_pos && c->text &&
        moe_json_locate(c->text, c->len, c->path + c->base, c->depth - c->base, at_key, &pos) == 0)
        snprintf(where, sizeof where, "%s:%d:%d: ", c->origin, pos.line, pos.column);
    else if (c->with_pos)
        snprintf(where, sizeof where, "%s: ", c->origin);
    else
        snprintf(where, sizeof where, "%s ", c->origin); // "--set a.b: ..."
    if (!c->with_pos && !with_path) // keep the --set path visible even when the message has none
        return moe_set_error(MOE_EINVAL, "%s%s: %s", where, path, msg);
    if (with_path && path[0]) return moe_set_error(MOE_EINVAL, "%s%s: %s", where, path, msg);
    return moe_set_error(MOE_EINVAL, "%s%s", where, msg);
}

// What the user wrote for `v`: the source slice when we have the text, else jansson's dump.
static void moe_json_got(moe_jctx *c, json_t *v, char *out, size_t cap) {
    moe_jpos pos;
    if (c->text &&
        moe_json_locate(c->text, c->len, c->path + c->base, c->depth - c->base, 0, &pos) == 0 &&
        pos.end > pos.start) {
        size_t n = pos.end - pos.start;
        if (n > 60)
            snprintf(out, cap, "%.57s...", c->text + pos.start);
        else
            snprintf(out, cap, "%.*s", (int)n, c->text + pos.start);
        return;
    }
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (s && strlen(s) > 60)
        snprintf(out, cap, "%.57s...", s);
    else
        snprintf(out, cap, "%s", s ? s : "?");
    free(s);
}

static const char *moe_type_name(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_INT32: return "int32";
    case PROTOBUF_C_TYPE_SINT32: return "sint32";
    case PROTOBUF_C_TYPE_SFIXED32: return "sfixed32";
    case PROTOBUF_C_TYPE_INT64: return "int64";
    case PROTOBUF_C_TYPE_SINT64: return "sint64";
    case PROTOBUF_C_TYPE_SFIXED64: return "sfixed64";
    case PROTOBUF_C_TYPE_UINT32: return "uint32";
    case PROTOBUF_C_TYPE_FIXED32: return "fixed32";
    case PROTOBUF_C_TYPE_UINT64: return "uint64";
    case PROTOBUF_C_TYPE_FIXED64: return "fixed64";
    case PROTOBUF_C_TYPE_FLOAT: return "float";
    case PROTOBUF_C_TYPE_DOUBLE: return "double";
    case PROTOBUF_C_TYPE_BOOL: return "bool";
    case PROTOBUF_C_TYPE_ENUM: return "enum";
    case PROTOBUF_C_TYPE_STRING: return "string";
    case PROTOBUF_C_TYPE_BYTES: return "bytes";
    case PROTOBUF_C_TYPE_MESSAGE: return "message";
    }
    return "?";
}

// ---------------------------------------------------------------- scalar values

size_t moe_proto_elem_size(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM: return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return 8;
    case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    }
    return 0;
}

// Reads an integer written as a JSON integer, a float with no fraction, or a decimal string
// ("-12", "+7"; no spaces), as sign and magnitude. Returns 0, or -1 if `v` is none of those.
static int moe_json_integer(json_t *v, int *neg, uint64_t *mag) {
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        *neg = x < 0;
        *mag = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d != floor(d) || fabs(d) >= 18446744073709551616.0) return -2;
        *neg = d < 0;
        *mag = (uint64_t)fabs(d);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        *neg = 0;
        if (*s == '-' || *s == '+') *neg = *s++ == '-';
        if (!*s) return -1;
        for (const char *p = s; *p; p++)
            if (*p < '0' || *p > '9') return -1;
        errno = 0;
        unsigned long long u = strtoull(s, NULL, 10);
        if (errno == ERANGE) return -2;
        *mag = u;
        return 0;
    }
    return -1;
}

static moe_status moe_conv_integer(moe_jctx *c, const ProtobufCFieldDescriptor *f, json_t *v,
                                   void *dst) {
    int neg = 0;
    uint64_t mag = 0;
    int is_unsigned = f->type == PROTOBUF_C_TYPE_UINT32 || f->type == PROTOBUF_C_TYPE_FIXED32 ||
                      f->type == PROTOBUF_C_TYPE_UINT64 || f->type == PROTOBUF_C_TYPE_FIXED64;
    int bits = moe_proto_elem_size(f->type) == 8 ? 64 : 32;
    uint64_t max_pos = is_unsigned ? (bits == 64 ? UINT64_MAX : UINT32_MAX)
                                   : (bits == 64 ? (uint64_t)INT64_MAX : (uint64_t)INT32_MAX);
    uint64_t max_neg = is_unsigned ? 0 : max_pos + 1;
    int r = moe_json_integer(v, &neg, &mag);
    if (r == 0 && (neg ? mag <= max_neg : mag <= max_pos)) {
        if (is_unsigned) {
            if (bits == 64)
                *(uint64_t *)dst = mag;
            else
                *(uint32_t *)dst = (uint32_t)mag;
        } else {
            int64_t x = neg ? (int64_t)(0 - mag) : (int64_t)mag;
            if (bits == 64)
                *(int64_t *)dst = x;
            else
                *(int32_t *)dst = (int32_t)x;
        }
        return MOE_OK;
    }
    char got[80];
    moe_json_got(c, v, got, sizeof got);
    if (is_unsigned)
        return moe_json_fail(c, 0, 1, "expected an integer in [0, %" PRIu64 "] (%s), got %s",
                             max_pos, moe_type_name(f->type), got);
    return moe_json_fail(c, 0, 1, "expected an integer in [-%" PRIu64 ", %" PRIu64 "] (%s), got %s",
                         max_neg, max_pos, moe_type_name(f->type), got);
}

static int moe_decimal_syntax(const char *s) { // JSON number syntax, sign '+' allowed too
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+') p++;
        if (*p < '0' || *p > '9') return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    return *p == '\0';
}

static moe_status moe_conv_float(moe_jctx *c, const ProtobufCFieldDescriptor *f, json_t *v,
                                 void *dst) {
    double d = 0;
    int ok = 1;
    if (json_is_integer(v))
        d = (double)json_integer_value(v);
    else if (json_is_real(v))
        d = json_real_value(v);
    else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!strcmp(s, "NaN"))
            d = NAN;
        else if (!strcmp(s, "Infinity"))
            d = INFINITY;
        else if (!strcmp(s, "-Infinity"))
            d = -INFINITY;
        else if (moe_decimal_syntax(s)) {
            d = strtod(s, NULL);
            ok = isfinite(d);
        } else
            ok = 0;
    } else
        ok = 0;
    if (ok && f->type == PROTOBUF_C_TYPE_FLOAT && isfinite(d) && fabs(d) > FLT_MAX) ok = 0;
    if (!ok) {
        char got[80];
        moe_json_got(c, v, got, sizeof got);
        return moe_json_fail(c, 0, 1,
                             "expected a number%s (or \"NaN\", \"Infinity\", "
                             "\"-Infinity\"), got %s",
                             f->type == PROTOBUF_C_TYPE_FLOAT ? " within float range" : "", got);
    }
    if (f->type == PROTOBUF_C_TYPE_FLOAT)
        *(float *)dst = (float)d;
    else
        *(double *)dst = d;
    return MOE_OK;
}

static moe_status moe_conv_enum(moe_jctx *c, const ProtobufCFieldDescriptor *f, json_t *v,
                                void *dst) {
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    const ProtobufCEnumValue *ev = NULL;
    if (json_is_string(v))
        ev = protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(v));
    if (!ev) {
        int neg;
        uint64_t mag;
        if (moe_json_integer(v, &neg, &mag) == 0 && mag <= (uint64_t)INT32_MAX)
            ev = protobuf_c_enum_descriptor_get_value(ed, neg ? -(int)mag : (int)mag);
    }
    if (ev) {
        *(int32_t *)dst = ev->value;
        return MOE_OK;
    }
    char got[80], names[512] = "";
    moe_list l;
    moe_list_start(&l, names, sizeof names, ", ");
    for (unsigned i = 0; i < ed->n_values; i++)
        moe_list_add(&l, "%s (%d)", ed->values[i].name, ed->values[i].value);
    moe_list_end(&l);
    moe_json_got(c, v, got, sizeof got);
    return moe_json_fail(c, 0, 1, "expected one of %s [%s], got %s", names, ed->name, got);
}

static int moe_b64_val(char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+' || ch == '-') return 62;
    if (ch == '/' || ch == '_') return 63;
    return -1;
}

// Standard or URL-safe base64, padding optional. Returns 0 or -1.
static int moe_b64_decode(const char *s, ProtobufCBinaryData *out) {
    size_t n = strlen(s);
    while (n && s[n - 1] == '=') n--;
    if (n % 4 == 1) return -1;
    uint8_t *buf = malloc(n * 3 / 4 + 1);
    if (!buf) return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int x = moe_b64_val(s[i]);
        if (x < 0) {
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)x;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
        }
    }
    out->data = buf;
    out->len = o;
    return 0;
}

// Converts a non-message, non-null JSON value into *dst (an element of the field's C type).
static moe_status moe_conv_scalar(moe_jctx *c, const ProtobufCFieldDescriptor *f, json_t *v,
                                  void *dst) {
    char got[80];
    switch (f->type) {
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: return moe_conv_float(c, f, v, dst);
    case PROTOBUF_C_TYPE_ENUM: return moe_conv_enum(c, f, v, dst);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v)) {
            moe_json_got(c, v, got, sizeof got);
            return moe_json_fail(c, 0, 1, "expected true or false, got %s", got);
        }
        *(protobuf_c_boolean *)dst = json_is_true(v);
        return MOE_OK;
    case PROTOBUF_C_TYPE_STRING:
        if (!json_is_string(v)) {
            moe_json_got(c, v, got, sizeof got);
            return moe_json_fail(c, 0, 1, "expected a string, got %s", got);
        }
        *(char **)dst = strdup(json_string_value(v));
        if (!*(char **)dst) return moe_set_error(MOE_ENOMEM, "out of memory");
        return MOE_OK;
    case PROTOBUF_C_TYPE_BYTES:
        if (!json_is_string(v) || moe_b64_decode(json_string_value(v), dst) != 0) {
            moe_json_got(c, v, got, sizeof got);
            return moe_json_fail(c, 0, 1, "expected base64 bytes in a string, got %s", got);
        }
        return MOE_OK;
    case PROTOBUF_C_TYPE_MESSAGE: MOE_ASSERT(0 && "messages are not scalars");
    default: return moe_conv_integer(c, f, v, dst);
    }
}

// ---------------------------------------------------------------- fields and messages

ProtobufCMessage *moe_json_new_message(const ProtobufCMessageDescriptor *d) {
    ProtobufCMessage *m = malloc(d->sizeof_message);
    if (m) protobuf_c_message_init(d, m);
    return m;
}

static void moe_free_elem(const ProtobufCFieldDescriptor *f, void *elem) {
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        char *s = *(char **)elem;
        if (s && s != (const char *)f->default_value) free(s);
    } else if (f->type == PROTOBUF_C_TYPE_BYTES) {
        ProtobufCBinaryData *b = elem;
        const ProtobufCBinaryData *def = f->default_value;
        if (b->data && (!def || def->data != b->data)) free(b->data);
    } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        ProtobufCMessage *sm = *(ProtobufCMessage **)elem;
        if (sm) protobuf_c_message_free_unpacked(sm, NULL);
    }
}

void moe_json_clear_field(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
    char *base = (char *)m;
    void *member = base + f->offset;
    size_t es = moe_proto_elem_size(f->type);
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t *n = (size_t *)(base + f->quantifier_offset);
        char *arr = *(char **)member;
        for (size_t i = 0; i < *n; i++) moe_free_elem(f, arr + i * es);
        free(arr);
        *(void **)member = NULL;
        *n = 0;
        return;
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *which = (uint32_t *)(base + f->quantifier_offset);
        if (*which != f->id) return; // another member of the oneof holds the storage
        *which = 0;
    } else if (f->quantifier_offset && f->type != PROTOBUF_C_TYPE_STRING &&
               f->type != PROTOBUF_C_TYPE_MESSAGE) {
        *(protobuf_c_boolean *)(base + f->quantifier_offset) = 0;
    }
    moe_free_elem(f, member);
    if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)
        *(const void **)member = f->default_value;
    else if (f->default_value)
        memcpy(member, f->default_value, es);
    else
        memset(member, 0, es);
}

// Before a oneof member is written: clears whichever other member of its oneof holds the storage.
static void moe_oneof_take(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
    uint32_t which = *(uint32_t *)((char *)m + f->quantifier_offset);
    if (which == 0 || which == f->id) return;
    const ProtobufCFieldDescriptor *g =
        protobuf_c_message_descriptor_get_field(m->descriptor, which);
    if (g) moe_json_clear_field(m, g);
}

static moe_status moe_push(moe_jctx *c, const char *key, const char *name, size_t index) {
    if (c->depth >= MOE_JSON_MAX_DEPTH)
        return moe_json_fail(c, 0, 1, "nested deeper than %d levels", MOE_JSON_MAX_DEPTH);
    c->path[c->depth++] = (moe_jseg){key, name, index};
    return MOE_OK;
}

static moe_status moe_conv_message_into(moe_jctx *c, const ProtobufCFieldDescriptor *f, json_t *v,
                                        ProtobufCMessage **slot) {
    if (!json_is_object(v)) {
        char got[80];
        moe_json_got(c, v, got, sizeof got);
        return moe_json_fail(c, 0, 1, "expected a JSON object (%s), got %s",
                             ((const ProtobufCMessageDescriptor *)f->descriptor)->name, got);
    }
    if (!*slot) {
        *slot = moe_json_new_message(f->descriptor);
        if (!*slot) return moe_set_error(MOE_ENOMEM, "out of memory");
    }
    return moe_json_merge_object(c, *slot, v);
}

moe_status moe_json_set_field(moe_jctx *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                              json_t *v) {
    char *base = (char *)m;
    void *member = base + f->offset;
    moe_status st;
    if (json_is_null(v)) {
        moe_json_clear_field(m, f);
        return MOE_OK;
    }
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        if (!json_is_array(v)) {
            char got[80];
            moe_json_got(c, v, got, sizeof got);
            return moe_json_fail(c, 0, 1, "expected a JSON array (repeated %s), got %s",
                                 moe_type_name(f->type), got);
        }
        moe_json_clear_field(m, f);
        size_t n = json_array_size(v), es = moe_proto_elem_size(f->type);
        char *arr = n ? calloc(n, es) : NULL;
        if (n && !arr) return moe_set_error(MOE_ENOMEM, "out of memory");
        *(void **)member = arr;
        size_t *count = (size_t *)(base + f->quantifier_offset);
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(v, i);
            if ((st = moe_push(c, NULL, NULL, i)) != MOE_OK) return st;
            if (json_is_null(e))
                return moe_json_fail(c, 0, 1,
                                     "null is not allowed as an element of a repeated "
                                     "field; remove it");
            if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                st = moe_conv_message_into(c, f, e, (ProtobufCMessage **)(arr + i * es));
            else
                st = moe_conv_scalar(c, f, e, arr + i * es);
            // Count the element as soon as it owns memory, so a failure frees it.
            if (f->type == PROTOBUF_C_TYPE_MESSAGE ? *(void **)(arr + i * es) != NULL
                                                   : st == MOE_OK)
                *count = i + 1;
            if (st != MOE_OK) return st;
            c->depth--;
        }
        return MOE_OK;
    }
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            moe_oneof_take(m, f);
            *(uint32_t *)(base + f->quantifier_offset) = f->id;
        }
        return moe_conv_message_into(c, f, v, (ProtobufCMessage **)member);
    }
    union {
        int64_t i;
        double d;
        char *s;
        ProtobufCBinaryData b;
    } tmp;
    memset(&tmp, 0, sizeof tmp);
    if ((st = moe_conv_scalar(c, f, v, &tmp)) != MOE_OK) return st;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        moe_oneof_take(m, f);
        if (*(uint32_t *)(base + f->quantifier_offset) == f->id) moe_free_elem(f, member);
        *(uint32_t *)(base + f->quantifier_offset) = f->id;
    } else {
        moe_free_elem(f, member);
        if (f->quantifier_offset && f->type != PROTOBUF_C_TYPE_STRING)
            *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
    }
    memcpy(member, &tmp, moe_proto_elem_size(f->type));
    return MOE_OK;
}

moe_status moe_json_merge_object(moe_jctx *c, ProtobufCMessage *m, json_t *obj) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (!json_is_object(obj)) {
        char got[80];
        moe_json_got(c, obj, got, sizeof got);
        return moe_json_fail(c, 0, 1, "expected a JSON object (%s), got %s", d->name, got);
    }
    // The key each field was given under, to refuse both spellings of one field.
    const char **seen = calloc(d->n_fields ? d->n_fields : 1, sizeof *seen);
    if (!seen) return moe_set_error(MOE_ENOMEM, "out of memory");
    moe_status st = MOE_OK;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        const ProtobufCFieldDescriptor *f = moe_json_find_field(d, key);
        if (!f) {
            char at[512], hint[1024];
            moe_json_path_str(c->path, c->depth, at, sizeof at);
            moe_json_suggest(d, key, hint, sizeof hint);
            if ((st = moe_push(c, key, key, 0)) != MOE_OK) break;
            st = moe_json_fail(c, 1, 0, "unknown field \"%.*s%s\" in %s (at %s)%s",
                               MOE_JSON_KEY_ARGS(key), d->name, at[0] ? at : "top level", hint);
            break;
        }
        size_t fi = (size_t)(f - d->fields);
        if ((st = moe_push(c, key, f->name, 0)) != MOE_OK) break;
        if (seen[fi]) {
            st = moe_json_fail(c, 1, 1, "field given twice, as \"%s\" and \"%s\"; keep one",
                               seen[fi], key);
            break;
        }
        seen[fi] = key;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && !json_is_null(v)) {
            for (unsigned j = 0; j < d->n_fields; j++) {
                const ProtobufCFieldDescriptor *g = &d->fields[j];
                if (g != f && seen[j] && !json_is_null(json_object_get(obj, seen[j])) &&
                    (g->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                    g->quantifier_offset == f->quantifier_offset) {
                    st = moe_json_fail(c, 1, 1,
                                       "\"%s\" and \"%s\" are members of one oneof; "
                                       "give only one",
                                       seen[j], key);
                    break;
                }
            }
            if (st != MOE_OK) break;
        }
        if ((st = moe_json_set_field(c, m, f, v)) != MOE_OK) break;
        c->depth--;
    }
    free(seen);
    return st;
}

// ---------------------------------------------------------------- entry points

moe_status moe_json_parse_message(const char *origin, const char *text, size_t len,
                                  const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out) {
    *out = NULL;
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!root)
        return moe_set_error(MOE_EINVAL, "%s:%d:%d: invalid JSON: %s", origin, err.line, err.column,
                             err.text);
    moe_jctx *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(root);
        return moe_set_error(MOE_ENOMEM, "out of memory");
    }
    *c = (moe_jctx){.origin = origin, .text = text, .len = len, .with_pos = 1};
    moe_status st;
    if (!json_is_object(root)) {
        char got[80];
        moe_json_got(c, root, got, sizeof got);
        st = moe_json_fail(c, 0, 0, "expected a JSON object (%s) at the top level, got %s",
                           desc->name, got);
    } else {
        ProtobufCMessage *m = moe_json_new_message(desc);
        if (!m)
            st = moe_set_error(MOE_ENOMEM, "out of memory");
        else if ((st = moe_json_merge_object(c, m, root)) != MOE_OK)
            protobuf_c_message_free_unpacked(m, NULL);
        else
            *out = m;
    }
    free(c);
    json_decref(root);
    return st;
}
