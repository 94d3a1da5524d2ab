// json-writer.c: any protobuf-c message as JSON, generically through its descriptor (configs,
// metrics lines, checkpoint manifests). Protobuf's JSON mapping with .proto field names, except
// that 64-bit integers are JSON numbers (uint64 above 2^63-1 quoted, since jansson cannot read it
// back), and doubles are the shortest text that reads back to the same bits.
#include "config-impl.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

typedef struct {
    char *s; // (cap,)
    size_t len, cap;
    int oom;
} moe_jbuf;

static void moe_jb_put(moe_jbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void moe_jb_str(moe_jbuf *b, const char *s) { moe_jb_put(b, s, strlen(s)); }

static void moe_jb_indent(moe_jbuf *b, unsigned flags, int level) {
    if (flags & MOE_JSON_COMPACT) return;
    moe_jb_put(b, "\n", 1);
    for (int i = 0; i < level; i++) moe_jb_put(b, "  ", 2);
}

static void moe_jb_quoted(moe_jbuf *b, const char *s) {
    moe_jb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': moe_jb_put(b, "\\\"", 2); break;
        case '\\': moe_jb_put(b, "\\\\", 2); break;
        case '\n': moe_jb_put(b, "\\n", 2); break;
        case '\r': moe_jb_put(b, "\\r", 2); break;
        case '\t': moe_jb_put(b, "\\t", 2); break;
        case '\b': moe_jb_put(b, "\\b", 2); break;
        case '\f': moe_jb_put(b, "\\f", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                moe_jb_str(b, esc);
            } else {
                moe_jb_put(b, (const char *)p, 1); // UTF-8 passes through as is
            }
        }
    }
    moe_jb_put(b, "\"", 1);
}

static void moe_jb_double(moe_jbuf *b, double d, int is_float) {
    char t[40];
    if (isnan(d)) {
        moe_jb_str(b, "\"NaN\"");
        return;
    }
    if (isinf(d)) {
        moe_jb_str(b, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) { // shortest text that reads back to the same value
        snprintf(t, sizeof t, "%.*g", prec, d);
        if (is_float ? strtof(t, NULL) == (float)d : strtod(t, NULL) == d) break;
    }
    // Always a JSON real ("3.0", "-0.0"), so a reader keeps it a float and keeps the sign of zero.
    if (!strpbrk(t, ".e")) strcat(t, ".0");
    moe_jb_str(b, t);
}

static void moe_jb_base64(moe_jbuf *b, const ProtobufCBinaryData *bin) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    moe_jb_put(b, "\"", 1);
    for (size_t i = 0; i < bin->len; i += 3) {
        uint32_t v = (uint32_t)bin->data[i] << 16;
        size_t left = bin->len - i;
        if (left > 1) v |= (uint32_t)bin->data[i + 1] << 8;
        if (left > 2) v |= bin->data[i + 2];
        char q[4] = {tab[(v >> 18) & 63], tab[(v >> 12) & 63], left > 1 ? tab[(v >> 6) & 63] : '=',
                     left > 2 ? tab[v & 63] : '='};
        moe_jb_put(b, q, 4);
    }
    moe_jb_put(b, "\"", 1);
}

static void moe_jb_message(moe_jbuf *b, const ProtobufCMessage *m, unsigned flags, int level);

static void moe_jb_value(moe_jbuf *b, const ProtobufCFieldDescriptor *f, const void *v,
                         unsigned flags, int level) {
    char t[48];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: snprintf(t, sizeof t, "%" PRId32, *(const int32_t *)v); break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: snprintf(t, sizeof t, "%" PRIu32, *(const uint32_t *)v); break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: snprintf(t, sizeof t, "%" PRId64, *(const int64_t *)v); break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t u = *(const uint64_t *)v;
        snprintf(t, sizeof t, u > (uint64_t)INT64_MAX ? "\"%" PRIu64 "\"" : "%" PRIu64, u);
        break;
    }
    case PROTOBUF_C_TYPE_FLOAT: moe_jb_double(b, *(const float *)v, 1); return;
    case PROTOBUF_C_TYPE_DOUBLE: moe_jb_double(b, *(const double *)v, 0); return;
    case PROTOBUF_C_TYPE_BOOL:
        snprintf(t, sizeof t, "%s", *(const protobuf_c_boolean *)v ? "true" : "false");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int32_t *)v);
        if (ev) {
            moe_jb_quoted(b, ev->name);
            return;
        }
        snprintf(t, sizeof t, "%" PRId32, *(const int32_t *)v); // a number the schema lacks
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)v;
        moe_jb_quoted(b, s ? s : "");
        return;
    }
    case PROTOBUF_C_TYPE_BYTES: moe_jb_base64(b, v); return;
    case PROTOBUF_C_TYPE_MESSAGE:
        moe_jb_message(b, *(ProtobufCMessage *const *)v, flags, level);
        return;
    }
    moe_jb_str(b, t);
}

// Whether a field is written: present (has_ flag, non-NULL pointer, non-empty array, active
// oneof member); with MOE_JSON_DEFAULTS also absent scalars and strings (their defaults) and
// empty arrays. Absent sub-messages are never written (a recursive schema would not end).
static int moe_jb_shown(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                        unsigned flags) {
    const char *base = (const char *)m;
    const void *member = base + f->offset;
    int defaults = (flags & MOE_JSON_DEFAULTS) != 0;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return defaults || *(const size_t *)(base + f->quantifier_offset) > 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) return *(void *const *)member != NULL;
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        const char *s = *(char *const *)member;
        if (defaults || f->label == PROTOBUF_C_LABEL_REQUIRED) return 1;
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL) return s && s != (const char *)f->default_value;
        return s && *s; // proto3: written when not empty
    }
    if (defaults || f->label == PROTOBUF_C_LABEL_REQUIRED) return 1;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset)
        return *(const protobuf_c_boolean *)(base + f->quantifier_offset) != 0;
    // proto3 singular scalar: written when not zero
    static const char zero[sizeof(ProtobufCBinaryData)];
    if (f->type == PROTOBUF_C_TYPE_BYTES) return ((const ProtobufCBinaryData *)member)->len > 0;
    return memcmp(member, zero, moe_proto_elem_size(f->type)) != 0;
}

static void moe_jb_message(moe_jbuf *b, const ProtobufCMessage *m, unsigned flags, int level) {
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *sep = (flags & MOE_JSON_COMPACT) ? ":" : ": ";
    int first = 1;
    moe_jb_put(b, "{", 1);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!moe_jb_shown(m, f, flags)) continue;
        if (!first) moe_jb_put(b, ",", 1);
        first = 0;
        moe_jb_indent(b, flags, level + 1);
        moe_jb_quoted(b, f->name);
        moe_jb_str(b, sep);
        const char *member = (const char *)m + f->offset;
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            moe_jb_value(b, f, member, flags, level + 1);
            continue;
        }
        size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
        const char *arr = *(char *const *)member;
        size_t es = moe_proto_elem_size(f->type);
        int nested = f->type == PROTOBUF_C_TYPE_MESSAGE; // messages one per line, scalars inline
        moe_jb_put(b, "[", 1);
        for (size_t k = 0; k < n; k++) {
            if (k) moe_jb_str(b, (flags & MOE_JSON_COMPACT) || nested ? "," : ", ");
            if (nested) moe_jb_indent(b, flags, level + 2);
            moe_jb_value(b, f, arr + k * es, flags, level + 2);
        }
        if (nested && n) moe_jb_indent(b, flags, level + 1);
        moe_jb_put(b, "]", 1);
    }
    if (!first) moe_jb_indent(b, flags, level);
    moe_jb_put(b, "}", 1);
}

char *moe_json_format_message(const ProtobufCMessage *m, unsigned flags) {
    moe_jbuf b = {0};
    moe_jb_message(&b, m, flags, 0);
    if (!(flags & MOE_JSON_COMPACT)) moe_jb_put(&b, "\n", 1);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

int64_t moe_json_format_message_buf(const ProtobufCMessage *m, unsigned flags, char **buf,
                                    size_t *cap) {
    moe_jbuf b = {*buf, 0, *cap, 0};
    if (b.s && b.cap) b.s[0] = '\0';
    moe_jb_message(&b, m, flags, 0);
    if (!(flags & MOE_JSON_COMPACT)) moe_jb_put(&b, "\n", 1);
    *buf = b.s, *cap = b.cap; // realloc may have moved it even when it later ran out
    return b.oom ? -1 : (int64_t)b.len;
}

moe_status moe_json_write_message(FILE *out, const ProtobufCMessage *m, unsigned flags) {
    char *s = moe_json_format_message(m, flags);
    if (!s)
        return moe_set_error(MOE_ENOMEM, "out of memory formatting a %s as JSON",
                             m->descriptor->name);
    size_t n = strlen(s);
    int ok = fwrite(s, 1, n, out) == n;
    free(s);
    if (!ok) return moe_set_error(MOE_EIO, "writing a %s as JSON failed", m->descriptor->name);
    return MOE_OK;
}
