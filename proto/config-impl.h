// config-impl.h: what the proto module's files share among themselves (not part of its manual):
// the JSON path being converted, the source locator, the field-name helpers and the one value
// converter that both the file reader and `--set` use, so both accept exactly the same forms.
#ifndef MOE_CONFIG_IMPL_H
#define MOE_CONFIG_IMPL_H

#include <jansson.h>
#include <string.h>

#include "config.h"

// Deepest JSON nesting followed (objects and arrays); the schema nests 4 levels, so this only
// bounds a recursive schema or a hostile file.
#define MOE_JSON_MAX_DEPTH 64

// One step of a JSON path: an object member (`key` as written in the text, `name` the .proto
// field name shown to the user) or an array element (`key` NULL, `index`).
typedef struct {
    const char *key;
    const char *name;
    size_t index;
} moe_jseg;

// Where a JSON value or key sits in a source text: 1-based line and column (columns count
// Unicode characters, as jansson's do) and its byte range [start, end).
typedef struct {
    int line, column;
    size_t start, end;
} moe_jpos;

// Finds the value at `path` in `text` (or, with want_key, the key naming the last path step).
// The text must be valid JSON (it was parsed by jansson first). Returns 0, or -1 if not found.
int moe_json_locate(const char *text, size_t len, const moe_jseg *path, int depth, int want_key,
                    moe_jpos *out);

// Conversion context. Errors read "origin:line:col: path: message" when `text` is the source
// of the whole document (base == 0), and "origin path: message" otherwise (for --set, `text` is
// the value text, which holds the path from step `base` on).
typedef struct {
    const char *origin;
    const char *text; // (len,) the source text, or NULL
    size_t len;
    int base;     // path steps above the text's root
    int with_pos; // show line:column
    moe_jseg path[MOE_JSON_MAX_DEPTH];
    int depth;
} moe_jctx;

// Merges the members of JSON object `obj` into message `m` (fields present overwrite; repeated
// fields are replaced; null clears a field). ctx->path names where `obj` sits.
moe_status moe_json_merge_object(moe_jctx *c, ProtobufCMessage *m, json_t *obj);

// Sets one field of `m` from a JSON value (null clears it). ctx->path must end at the field.
moe_status moe_json_set_field(moe_jctx *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                              json_t *v);

// Resets a field to its schema default and clears its presence; frees what it owned.
void moe_json_clear_field(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f);

// A field by its .proto name or its lowerCamelCase JSON name; NULL if neither.
const ProtobufCFieldDescriptor *moe_json_find_field(const ProtobufCMessageDescriptor *d,
                                                    const char *name);

// The lowerCamelCase JSON name of a .proto field name ("top_k" -> "topK"), as protoc makes it.
void moe_json_camel_name(const char *name, char *out, size_t cap);

// An unknown key is echoed up to MOE_JSON_KEY_SHOWN bytes, then "...": a longer one names no
// field, and the list of known fields after it must stay whole (moe_json_fail's message).
#define MOE_JSON_KEY_SHOWN 96
#define MOE_JSON_KEY_ARGS(k)                                                                       \
    (strlen(k) > MOE_JSON_KEY_SHOWN ? MOE_JSON_KEY_SHOWN - 3 : (int)strlen(k)), (k),               \
        (strlen(k) > MOE_JSON_KEY_SHOWN ? "..." : "")

// "; did you mean "top_k"?" (closest names by edit distance over both spellings) or, when
// nothing is close, "; known fields: a, b, …". Writes into out.
void moe_json_suggest(const ProtobufCMessageDescriptor *d, const char *name, char *out, size_t cap);

// Bytes one value of a field of type t takes in a generated struct (the element size of a
// repeated field's array): the reader and the writer walk the structs with it.
size_t moe_proto_elem_size(ProtobufCType t);

// A new message of type d with the schema defaults (protobuf-c's default allocator).
ProtobufCMessage *moe_json_new_message(const ProtobufCMessageDescriptor *d);

// Formats the path as "model.dense_layers[2]" ("" for the root) into out.
void moe_json_path_str(const moe_jseg *path, int depth, char *out, size_t cap);

// Reports an error at the current path (the value, or with at_key the key of the last step).
// with_path prefixes "path: " to the message.
moe_status moe_json_fail(moe_jctx *c, int at_key, int with_path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
