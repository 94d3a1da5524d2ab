// config.h: the manual of the proto module — reading JSON into the one schema (proto/moe.proto),
// `--set a.b=v` overrides, and semantic validation. JSON follows protobuf's standard JSON mapping
// and is mapped onto the generated protobuf-c structs through their descriptors, so the schema is
// the only place a field is defined.
//
// Ownership: every message returned here is allocated with protobuf-c's default allocator and
// freed with protobuf_c_message_free_unpacked() (moe_config_free for a Config).
// Errors: functions return a moe_status; moe_last_error() holds the message, which names
// file:line:column and the field path (e.g. "cfg.json:12:5: model.top_k: expected an integer
// from 1 to 2147483647, got \"two\"") and, for an unknown field, the closest known names.
#ifndef MOE_CONFIG_H
#define MOE_CONFIG_H

#include "moe-common.h"
#include "moe.pb-c.h"

// Parses JSON text into a new message of type `desc`. `origin` names the text in messages (a
// path, or "--set"). Unknown fields, duplicate keys, wrong types, out-of-range numbers, unknown
// enum names and malformed JSON are errors. Fields absent from the JSON keep the schema defaults.
moe_status moe_json_parse_message(const char *origin, const char *text, size_t len,
                                  const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);

// Reads a config file (JSON) into a new moe.Config. Does not validate semantics.
moe_status moe_config_load(const char *path, Moe__Config **out);

// A default moe.Config (every sub-message present, holding the schema defaults).
Moe__Config *moe_config_new_default(void);

// Applies one override "path.to.field=value" (names as in the .proto or lowerCamelCase; the
// value is JSON or a bare string/enum name; for a repeated field, a JSON array replaces it).
moe_status moe_config_set(Moe__Config *cfg, const char *assignment);

// Semantic validation: top_k <= n_experts, heads divide d_model, kv heads divide heads, ep_size
// divides n_experts, and so on. `world` is the number of ranks (0: unknown, skip world checks).
// The message names the fields and their values and what to change.
moe_status moe_config_validate(const Moe__Config *cfg, int world);

void moe_config_free(Moe__Config *cfg);

#endif
