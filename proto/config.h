// config.h: the manual of the proto module — reading JSON into the one schema (proto/moe.proto),
// `--set a.b=v` overrides, and semantic validation. JSON follows protobuf's standard JSON mapping
// and is mapped onto the generated protobuf-c structs through their descriptors, so the schema is
// the only place a field is defined.
//
// Ownership: every message returned here is allocated with protobuf-c's default allocator and
// freed with protobuf_c_message_free_unpacked() (moe_config_free for a Config).
// Errors: functions return a moe_status; moe_last_error() holds the message, which names
// file:line:column and the field path (e.g. "cfg.json:12:5: model.top_k: expected an integer
// in [-2147483648, 2147483647] (int32), got \"two\"") and, for an unknown field, the closest
// known names. The accepted JSON forms, the error format and the validation rules: docs/config.md.
// Thread safety: none of these share state; errors go to the calling thread's moe_last_error().
#ifndef MOE_CONFIG_H
#define MOE_CONFIG_H

#include "moe-common.h"
#include "moe.pb-c.h"

// Parses JSON text into a new message of type `desc`. `origin` names the text in messages (a
// path, or "--set"). Unknown fields, duplicate keys, wrong types, out-of-range numbers, unknown
// enum names and malformed JSON are errors. Fields absent from the JSON keep the schema defaults.
moe_status moe_json_parse_message(const char *origin, const char *text, size_t len,
                                  const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);

// Reads a config file (JSON; "-" reads standard input) into a new moe.Config. Does not validate
// semantics.
moe_status moe_config_load(const char *path, Moe__Config **out);

// A default moe.Config (every sub-message present, holding the schema defaults).
// moe_config_load() also adds every absent sub-message of the Config with its defaults, so a
// caller may read cfg->model->top_k without NULL checks; moe_json_parse_message() does not.
Moe__Config *moe_config_new_default(void);

// Applies one override "path.to.field=value" (names as in the .proto or lowerCamelCase; the
// value is JSON or a bare string/enum name; for a repeated field, a JSON array replaces it; a
// JSON object merges into a sub-message; null clears the field). Sub-messages on the path are
// created when absent. Errors read "--set model.top_k: expected …". On error the config is
// left consistent (fields already converted may be changed); discard it or report and exit.
moe_status moe_config_set(Moe__Config *cfg, const char *assignment);

// Semantic validation: top_k <= n_experts, heads divide d_model, kv heads divide heads, ep_size
// divides n_experts, and so on. `world` is the number of ranks (0: unknown, skip world checks).
// Every problem is reported, one per line, each naming the fields, their values and what to
// change (e.g. "model.top_k = 9 exceeds model.n_experts = 8; set top_k <= 8 or raise
// n_experts"). Absent sub-messages count as their defaults.
moe_status moe_config_validate(const Moe__Config *cfg, int world);
// Upper bounds moe_config_validate puts on counts (far beyond any published model;
// they keep a typo such as 2^31 layers from running for minutes or overflowing a product).
#define MOE_MAX_LAYERS  65536
#define MOE_MAX_HEADS   65536
#define MOE_MAX_EXPERTS 65536
// Also refuses an enum field holding a number its enum does not name (possible in a message built
// in C or unpacked from bytes), naming the field, the number and the values allowed.

// MOE_OK if v is a value of the proto enum d, else MOE_EINVAL "<field> = <v> is not a value of
// <Enum>; use one of: <names>". For mapping code that reads an enum field into C.
moe_status moe_config_check_enum(const ProtobufCEnumDescriptor *d, int v, const char *field);

void moe_config_free(Moe__Config *cfg);

// A deep copy of any message (protobuf-c has no copy call: pack + unpack), owned by the caller:
// free with protobuf_c_message_free_unpacked. Aborts on out of memory, like moe_xcalloc.
ProtobufCMessage *moe_proto_copy(const ProtobufCMessage *m);
// The same for a Config; free with moe_config_free.
Moe__Config *moe_config_copy(const Moe__Config *cfg);

// Reads a config from `path`, or from standard input when path is "-" (named "<stdin>" in
// messages), then applies the `--set` overrides in order and validates against `world`.
// The one call a subcommand needs; on error *out is NULL and moe_last_error() says why.
moe_status moe_config_load_with(const char *path, const char *const *sets, int n_sets, int world,
                                Moe__Config **out);

// ---------------------------------------------------------------- JSON writer
// Any message as JSON (protobuf's JSON mapping with .proto field names, fields in field-number
// order). Present fields only, unless MOE_JSON_DEFAULTS: then every scalar, enum and string too
// (its schema default when absent) and repeated fields as [] when empty; absent sub-messages are
// never written. int64/uint64 are JSON numbers, except uint64 values above 2^63-1, which are
// quoted strings (jansson cannot read such a number). Doubles and floats are the shortest text
// that reads back to the same bits, always with a "." or exponent ("3.0"); NaN and infinities
// are "NaN", "Infinity", "-Infinity"; bytes are standard base64.
enum {
    MOE_JSON_DEFAULTS = 1 << 0, // also write fields that are absent, with their defaults
    MOE_JSON_COMPACT = 1 << 1,  // one line, no spaces and no trailing newline (metrics lines)
};

// A malloc'd NUL-terminated string (pretty output ends with a newline); NULL on out of memory.
char *moe_json_format_message(const ProtobufCMessage *m, unsigned flags);
moe_status moe_json_write_message(FILE *out, const ProtobufCMessage *m, unsigned flags);
// cfg as JSON (pretty, present fields) to path through path.tmp, fsynced, then renamed: a reader
// sees the old file or the whole new one. MOE_EIO naming the file; no path.tmp left on failure.
// (moe upcycle, moe merge: OUT/config.json.)
moe_status moe_config_write_file(const Moe__Config *cfg, const char *path);
// The same text into a caller-owned buffer (*buf of *cap bytes, NULL/0 to start), grown with
// realloc only when too small — a caller that reuses it (a metrics line per training step)
// stops allocating once it has reached its steady size. Returns the length, -1 out of memory.
int64_t moe_json_format_message_buf(const ProtobufCMessage *m, unsigned flags, char **buf,
                                    size_t *cap);

#endif
