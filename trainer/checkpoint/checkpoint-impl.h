// checkpoint-impl.h: what checkpoint.c (save, load) and checkpoint-verify.c (manifest, files,
// resolve) share. Not part of the trainer's manual (checkpoint.h is).
#ifndef MOE_CHECKPOINT_IMPL_H
#define MOE_CHECKPOINT_IMPL_H

#include "checkpoint.h"
#include "config.h"

// snprintf that the compiler does not second-guess (-Wformat-truncation): every caller's inputs
// are bounded by MOE_DIR_MAX (moe_dir_check at the API entry points), or the output is a message where
// cutting is harmless.
int moe_ckpt_fmt(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int moe_ckpt_exists(const char *path);
// "step_00000100" exactly → 100; anything else → -1.
int64_t moe_ckpt_parse_step(const char *name);
// Steps of the complete checkpoints (directories with manifest.pb) in ckdir, newest first;
// *steps is malloc'd (free it), the count is returned.
int moe_ckpt_list_steps(const char *ckdir, int64_t **steps);
// Packs a message into a new buffer (free it).
uint8_t *moe_ckpt_pack(const ProtobufCMessage *m, size_t *len);
// Packs with manifest_crc32c set to the CRC32C of the packing without it.
uint8_t *moe_ckpt_pack_manifest(Moe__CheckpointManifest *m, size_t *len);
// Rewrites the current error as "checkpoint step_N is corrupt (<error>); the previous one is …:
// resume with --resume …" (or that there is no earlier one) and returns st.
moe_status moe_ckpt_name_previous(moe_status st, const char *dir);

#endif
