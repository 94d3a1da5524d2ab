// checkpoint-verify.c: the reading side of checkpoints shared by load and `moe inspect` — the
// manifest (with its own CRC32C), per-file verification, the model-config comparison, resolving
// "latest" and naming the previous checkpoint. Pure local file I/O: no MPI here.
#include "checkpoint-impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// snprintf that the compiler does not second-guess: every caller's inputs are bounded by
// MOE_DIR_MAX (moe_dir_check at the API entry points) or the output is a message where cutting is fine.
int moe_ckpt_fmt(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n;
}

int moe_ckpt_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

// "step_00000100" exactly → 100; else -1.
int64_t moe_ckpt_parse_step(const char *name) {
    if (strncmp(name, "step_", 5) != 0) return -1;
    const char *p = name + 5;
    if (!*p) return -1;
    int64_t v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || v > INT64_MAX / 10 - 10) return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

// Steps of the complete checkpoints (directory with manifest.pb) in `ckdir`, newest first.
int moe_ckpt_list_steps(const char *ckdir, int64_t **steps) {
    *steps = NULL;
    DIR *d = opendir(ckdir);
    if (!d) return 0;
    int n = 0, cap = 0;
    struct dirent *e;
    char p[MOE_PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        int64_t s = moe_ckpt_parse_step(e->d_name);
        if (s < 0) continue;
        moe_ckpt_fmt(p, sizeof p, "%s/%s/manifest.pb", ckdir, e->d_name);
        if (!moe_ckpt_exists(p)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            *steps = realloc(*steps, (size_t)cap * sizeof **steps);
            MOE_ASSERT(*steps);
        }
        (*steps)[n++] = s;
    }
    closedir(d);
    for (int i = 1; i < n; i++) // insertion sort, descending
        for (int j = i; j > 0 && (*steps)[j - 1] < (*steps)[j]; j--) {
            int64_t t = (*steps)[j];
            (*steps)[j] = (*steps)[j - 1];
            (*steps)[j - 1] = t;
        }
    return n;
}

// ---------------------------------------------------------------- manifest

uint8_t *moe_ckpt_pack(const ProtobufCMessage *m, size_t *len) {
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = moe_xcalloc(*len + 1, 1);
    MOE_ASSERT(protobuf_c_message_pack(m, buf) == *len);
    return buf;
}

// Tag byte of field 12 (file_crc32c, fixed32) and of field 11 (manifest_crc32c, fixed32):
// (number << 3) | 5. Both sit in the last 5 bytes of a manifest: 12 in this format, 11 before it.
enum { CK_TAG_FILE_CRC = (12 << 3) | 5, CK_TAG_MANIFEST_CRC = (11 << 3) | 5 };

static uint32_t ck_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// Packs with manifest_crc32c set to the CRC32C of the packing without it, then appends
// file_crc32c (field 12, the highest, so a parser sees a normal last field): the CRC32C of every
// byte before its value, so the whole file is covered, also bytes the parse would ignore.
uint8_t *moe_ckpt_pack_manifest(Moe__CheckpointManifest *m, size_t *len) {
    m->has_manifest_crc32c = m->has_file_crc32c = 0;
    uint8_t *b = moe_ckpt_pack(&m->base, len);
    m->manifest_crc32c = moe_crc32c(0, b, *len);
    m->has_manifest_crc32c = 1;
    free(b);
    b = moe_ckpt_pack(&m->base, len);
    b = realloc(b, *len + 5);
    MOE_ASSERT(b);
    b[*len] = CK_TAG_FILE_CRC;
    m->file_crc32c = moe_crc32c(0, b, *len + 1);
    for (int i = 0; i < 4; i++) b[*len + 1 + (size_t)i] = (uint8_t)(m->file_crc32c >> (8 * i));
    *len += 5;
    return b;
}

// A file the manifest needs: a missing one makes the checkpoint corrupt, not the machine.
static moe_status ck_read_whole(const char *path, uint8_t **buf, size_t *len) {
    char *text = NULL;
    moe_status st = moe_read_file(path, 0, &text, len);
    if (st == MOE_EIO && errno == ENOENT) st = moe_set_error(MOE_ECORRUPT, "%s: missing", path);
    *buf = (uint8_t *)text;
    return st;
}

moe_status moe_ckpt_read_manifest(const char *dir, Moe__CheckpointManifest **out) {
    *out = NULL;
    char path[MOE_PATH_MAX];
    moe_ckpt_fmt(path, sizeof path, "%s/manifest.pb", dir);
    uint8_t *buf = NULL;
    size_t len = 0;
    moe_status st = ck_read_whole(path, &buf, &len);
    if (st != MOE_OK) return st;
    // The bytes first, before any parse: the file ends with the CRC32C of everything before that
    // value (field 12), or, written before that field existed, with manifest_crc32c (field 11),
    // which then covers every byte but its own tag. A single flipped bit cannot turn one tag into
    // the other (0x65 vs 0x5d differ in 3 bits), so every flip fails one of these checks.
    const uint8_t tag = len >= 5 ? buf[len - 5] : 0;
    const uint32_t tail = len >= 5 ? ck_le32(buf + len - 4) : 0;
    if (tag == CK_TAG_FILE_CRC) {
        uint32_t got = moe_crc32c(0, buf, len - 4);
        if (got != tail)
            st = moe_set_error(MOE_ECORRUPT,
                               "%s: CRC32C mismatch (the file's last field says 0x%08x, its "
                               "bytes have 0x%08x)",
                               path, tail, got);
    } else if (tag == CK_TAG_MANIFEST_CRC) {
        uint32_t got = moe_crc32c(0, buf, len - 5);
        if (got != tail)
            st = moe_set_error(MOE_ECORRUPT,
                               "%s: CRC32C mismatch (manifest says 0x%08x, content has 0x%08x)",
                               path, tail, got);
    } else {
        st = moe_set_error(MOE_ECORRUPT,
                           "%s: no CRC32C at the end of the file (%zu bytes; written by an "
                           "interrupted or foreign writer, or damaged)",
                           path, len);
    }
    Moe__CheckpointManifest *m = NULL;
    if (st == MOE_OK && !(m = moe__checkpoint_manifest__unpack(NULL, len, buf)))
        st = moe_set_error(MOE_ECORRUPT, "%s: not a valid checkpoint manifest (%zu bytes)", path,
                           len);
    // The parse must agree with the bytes: the CRC field read is the one checked above.
    if (st == MOE_OK && (tag == CK_TAG_FILE_CRC ? !m->has_file_crc32c || m->file_crc32c != tail
                                                : m->has_file_crc32c || !m->has_manifest_crc32c ||
                                                      m->manifest_crc32c != tail))
        st = moe_set_error(MOE_ECORRUPT, "%s: the CRC32C field is not the file's last field", path);
    if (st == MOE_OK && m->format_version != MOE_CKPT_FORMAT_VERSION)
        st = moe_set_error(MOE_ECORRUPT, "%s: format_version %u, this binary reads %u", path,
                           m->format_version, MOE_CKPT_FORMAT_VERSION);
    // A directory named step_N holds step N (a copied or renamed one would resume at another
    // step than its name says, and "the previous checkpoint" would be chosen by the wrong step).
    const char *slash = strrchr(dir, '/');
    int64_t named = moe_ckpt_parse_step(slash ? slash + 1 : dir);
    if (st == MOE_OK && named >= 0 && named != m->step)
        st = moe_set_error(MOE_ECORRUPT,
                           "%s: the directory is named for step %lld but its manifest is of step "
                           "%lld (copied or renamed?): rename it step_%08lld",
                           path, (long long)named, (long long)m->step, (long long)m->step);
    free(buf);
    if (st != MOE_OK) {
        if (m) moe__checkpoint_manifest__free_unpacked(m, NULL);
        return st;
    }
    *out = m;
    return MOE_OK;
}

const char *moe_ckpt_manifest_note(const Moe__CheckpointManifest *m) {
    return m && !m->has_file_crc32c
               ? "manifest.pb predates the whole-file CRC32C (written by an older moe): its "
                 "bytes are verified except the CRC field's tag; the next checkpoint saved has it"
               : NULL;
}

static int ck_safe_name(const char *n) {
    return n && *n && !strchr(n, '/') && strcmp(n, ".") && strcmp(n, "..");
}

moe_status moe_ckpt_verify_file(const char *dir, const Moe__FileEntry *fe) {
    if (!ck_safe_name(fe->name))
        return moe_set_error(MOE_ECORRUPT, "%s/manifest.pb: bad file name '%s'", dir,
                             fe->name ? fe->name : "");
    char path[MOE_PATH_MAX];
    moe_ckpt_fmt(path, sizeof path, "%s/%s", dir, fe->name);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return moe_set_error(errno == ENOENT ? MOE_ECORRUPT : MOE_EIO, "%s: %s", fe->name,
                             errno == ENOENT ? "missing" : strerror(errno));
    struct stat sb;
    fstat(fd, &sb);
    if ((uint64_t)sb.st_size != fe->bytes) {
        close(fd);
        return moe_set_error(MOE_ECORRUPT, "%s: size %lld bytes, manifest says %llu (%s)", fe->name,
                             (long long)sb.st_size, (unsigned long long)fe->bytes,
                             (uint64_t)sb.st_size < fe->bytes ? "truncated" : "extra bytes");
    }
    const size_t chunk = 1 << 20;
    uint8_t *buf = moe_xcalloc(chunk, 1);
    uint32_t crc = 0;
    ssize_t r;
    while ((r = read(fd, buf, chunk)) > 0) crc = moe_crc32c(crc, buf, (size_t)r);
    int e = errno;
    close(fd);
    free(buf);
    if (r < 0) return moe_set_error(MOE_EIO, "%s: read failed: %s", fe->name, strerror(e));
    if (crc != fe->crc32c)
        return moe_set_error(MOE_ECORRUPT, "%s: CRC32C mismatch (manifest 0x%08x, file 0x%08x)",
                             fe->name, fe->crc32c, crc);
    return MOE_OK;
}

// ---------------------------------------------------------------- config comparison

static int ck_field_i64(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, int64_t *v) {
    const void *p = m ? (const char *)m + f->offset : NULL;
    int has = m && (f->quantifier_offset == 0 ||
                    *(const protobuf_c_boolean *)((const char *)m + f->quantifier_offset));
    if (f->label == PROTOBUF_C_LABEL_REPEATED) return 0;
    const void *src = has ? p : f->default_value;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM: *v = src ? *(const int32_t *)src : 0; return 1;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: *v = src ? *(const uint32_t *)src : 0; return 1;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: *v = src ? *(const int64_t *)src : 0; return 1;
    case PROTOBUF_C_TYPE_BOOL: *v = src ? *(const protobuf_c_boolean *)src : 0; return 1;
    case PROTOBUF_C_TYPE_DOUBLE: { // compared by bits: shape fields are integers anyway
        double d = src ? *(const double *)src : 0;
        memcpy(v, &d, 8);
        return 1;
    }
    default: return 0;
    }
}

int moe_ckpt_config_diff(const Moe__Config *ckpt, const Moe__Config *cfg, char *buf, size_t cap) {
    const ProtobufCMessageDescriptor *d = &moe__model_config__descriptor;
    const ProtobufCMessage *a = ckpt && ckpt->model ? &ckpt->model->base : NULL;
    const ProtobufCMessage *b = cfg && cfg->model ? &cfg->model->base : NULL;
    int n = 0;
    moe_list diff;
    buf[0] = 0;
    moe_list_start(&diff, buf, cap, ", ");
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char va[256], vb[256];
        if (f->label == PROTOBUF_C_LABEL_REPEATED) { // repeated int32 (dense_layers)
            size_t na = a ? *(const size_t *)((const char *)a + f->quantifier_offset) : 0;
            size_t nb = b ? *(const size_t *)((const char *)b + f->quantifier_offset) : 0;
            const int32_t *pa = a ? *(int32_t *const *)((const char *)a + f->offset) : NULL;
            const int32_t *pb = b ? *(int32_t *const *)((const char *)b + f->offset) : NULL;
            if (f->type != PROTOBUF_C_TYPE_INT32 ||
                (na == nb && (na == 0 || !memcmp(pa, pb, na * sizeof *pa))))
                continue;
            moe_list la, lb;
            va[0] = vb[0] = 0;
            moe_list_start(&la, va, sizeof va, ",");
            moe_list_start(&lb, vb, sizeof vb, ",");
            for (size_t k = 0; k < na; k++) moe_list_add(&la, "%d", pa[k]);
            for (size_t k = 0; k < nb; k++) moe_list_add(&lb, "%d", pb[k]);
            moe_list_end(&la);
            moe_list_end(&lb);
        } else {
            int64_t x, y;
            if (!ck_field_i64(a, f, &x) || !ck_field_i64(b, f, &y) || x == y) continue;
            moe_ckpt_fmt(va, sizeof va, "%lld", (long long)x);
            moe_ckpt_fmt(vb, sizeof vb, "%lld", (long long)y);
        }
        moe_list_add(&diff, "model.%s (%s in the checkpoint, %s in the config)", f->name, va, vb);
        n++;
    }
    moe_list_end(&diff);
    return n;
}

// ---------------------------------------------------------------- resolve and previous

// "; the newest complete checkpoint is …: resume with --resume …" (or that there is none).
static void ck_newest_hint(const char *ckdir, char *tail, size_t cap) {
    int64_t *steps = NULL;
    int n = moe_ckpt_list_steps(ckdir, &steps);
    if (n > 0)
        moe_ckpt_fmt(tail, cap,
                     "; the newest complete checkpoint is %s/step_%08lld: "
                     "resume with --resume %s/step_%08lld",
                     ckdir, (long long)steps[0], ckdir, (long long)steps[0]);
    else
        moe_ckpt_fmt(tail, cap, "; %s holds no complete checkpoint: remove LATEST to start over",
                     ckdir);
    free(steps);
}

static moe_status ck_read_latest(const char *ckdir, char *dir, size_t cap) {
    char p[MOE_PATH_MAX], name[512], tail[MOE_PATH_MAX];
    moe_ckpt_fmt(p, sizeof p, "%s/LATEST", ckdir);
    FILE *f = fopen(p, "r");
    if (!f) // a symlink loop or a dangling link is a broken LATEST: never "no LATEST"
        return moe_set_error(errno == ELOOP || errno == ENOENT ? MOE_ECORRUPT : MOE_EIO,
                             "%s: cannot read: %s (a broken symlink? LATEST is a file naming "
                             "step_N)",
                             p, strerror(errno));
    name[0] = 0;
    if (!fgets(name, sizeof name, f)) name[0] = 0;
    fclose(f);
    name[strcspn(name, "\r\n")] = 0;
    if (moe_ckpt_parse_step(name) < 0) {
        ck_newest_hint(ckdir, tail, sizeof tail);
        return moe_set_error(MOE_ECORRUPT, "%s: does not name a checkpoint directory ('%s')%s", p,
                             name, tail);
    }
    moe_ckpt_fmt(dir, cap, "%s/%s", ckdir, name);
    struct stat sb;
    if (stat(dir, &sb) != 0) { // missing, not corrupt: say which
        int e = errno;
        ck_newest_hint(ckdir, tail, sizeof tail);
        return moe_set_error(MOE_ECORRUPT, "%s names %s, which is missing (%s: %s)%s", p, name, dir,
                             strerror(e), tail);
    }
    return MOE_OK;
}

// Whether `p` exists as a name (a dangling or looping symlink counts: reading it says why).
static int ck_name_exists(const char *p) {
    struct stat sb;
    return lstat(p, &sb) == 0;
}

moe_status moe_ckpt_check_fresh(const char *out_dir) {
    moe_status dst = moe_dir_check("out_dir", out_dir);
    if (dst) return dst;
    char ckdir[MOE_PATH_MAX], p[MOE_PATH_MAX];
    moe_ckpt_fmt(ckdir, sizeof ckdir, "%s/checkpoints", out_dir);
    moe_ckpt_fmt(p, sizeof p, "%s/LATEST", ckdir);
    int64_t *steps = NULL;
    int n = moe_ckpt_list_steps(ckdir, &steps);
    int64_t newest = n > 0 ? steps[0] : -1;
    free(steps);
    if (n > 0) {
        char hint[MOE_PATH_MAX];
        if (moe_ckpt_exists(p))
            moe_ckpt_fmt(hint, sizeof hint, "--resume latest");
        else
            moe_ckpt_fmt(hint, sizeof hint, "--resume %s/step_%08lld", ckdir, (long long)newest);
        return moe_set_error(MOE_EUSAGE,
                             "%s already holds checkpoints (newest step_%08lld%s); a "
                             "fresh run would not overwrite them: continue with %s, or set out_dir "
                             "to a new directory (or move %s away)",
                             ckdir, (long long)newest, moe_ckpt_exists(p) ? "" : ", no LATEST",
                             hint, ckdir);
    }
    if (moe_ckpt_exists(p))
        return moe_set_error(MOE_EUSAGE,
                             "%s exists but %s holds no complete checkpoint: remove "
                             "it to start over, or set out_dir to a new directory",
                             p, ckdir);
    return MOE_OK;
}

moe_status moe_ckpt_check_newer(const char *out_dir, int64_t step) {
    moe_status dst = moe_dir_check("out_dir", out_dir);
    if (dst) return dst;
    char ckdir[MOE_PATH_MAX];
    moe_ckpt_fmt(ckdir, sizeof ckdir, "%s/checkpoints", out_dir);
    DIR *d = opendir(ckdir);
    if (!d) return MOE_OK;
    int64_t first = -1; // the lowest step above `step` (the first save that would be refused)
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t s = moe_ckpt_parse_step(e->d_name);
        if (s > step && (first < 0 || s < first)) first = s;
    }
    closedir(d);
    if (first < 0) return MOE_OK;
    return moe_set_error(MOE_EUSAGE,
                         "%s/step_%08lld is newer than the checkpoint resumed (step "
                         "%lld) and would not be overwritten when training reaches it: move the "
                         "newer step_* directories out of %s (e.g. to keep a corrupt one for a "
                         "post-mortem), or resume into another out_dir",
                         ckdir, (long long)first, (long long)step, ckdir);
}

// LATEST of d itself, else of d/checkpoints (d a run directory), read into dir. Returns 1 with *st
// the outcome when one of them exists, 0 when neither does.
static int ck_try_latest(const char *d, char *dir, size_t cap, moe_status *st) {
    char p[MOE_PATH_MAX], ck[MOE_PATH_MAX];
    moe_ckpt_fmt(p, sizeof p, "%s/LATEST", d);
    if (ck_name_exists(p)) return *st = ck_read_latest(d, dir, cap), 1;
    moe_ckpt_fmt(ck, sizeof ck, "%s/checkpoints", d);
    moe_ckpt_fmt(p, sizeof p, "%s/LATEST", ck);
    if (ck_name_exists(p)) return *st = ck_read_latest(ck, dir, cap), 1;
    return 0;
}

moe_status moe_ckpt_resolve(const char *where, char *dir, size_t cap) {
    moe_status dst = moe_dir_check("checkpoint path", where);
    if (dst) return dst;
    char p[MOE_PATH_MAX], base[MOE_PATH_MAX];
    moe_ckpt_fmt(base, sizeof base, "%s", where);
    size_t L = strlen(base);
    while (L > 1 && base[L - 1] == '/') base[--L] = 0;
    const char *slash = strrchr(base, '/');
    const char *last = slash ? slash + 1 : base;
    moe_status st;
    if (!strcmp(last, "latest")) { // ".../latest": LATEST of the parent (checkpoints or run dir)
        char parent[MOE_PATH_MAX];
        moe_ckpt_fmt(parent, sizeof parent, "%.*s", slash ? (int)(slash - base) : 1,
                     slash ? base : ".");
        if (ck_try_latest(parent, dir, cap, &st)) return st;
        return moe_set_error(MOE_EUSAGE,
                             "%s: no LATEST in %s or %s/checkpoints (no checkpoint written yet?)",
                             where, parent, parent);
    }
    moe_ckpt_fmt(p, sizeof p, "%s/manifest.pb", base);
    if (moe_ckpt_exists(p) || (moe_ckpt_parse_step(last) >= 0 && moe_ckpt_exists(base))) {
        moe_ckpt_fmt(dir, cap, "%s", base);
        return MOE_OK;
    }
    if (ck_try_latest(base, dir, cap, &st)) return st;
    return moe_set_error(MOE_EUSAGE,
                         "no checkpoint at %s: expected a checkpoint directory (with "
                         "manifest.pb), a checkpoints directory or a run directory with LATEST",
                         where);
}

// Appends "; the previous one is X: resume with --resume X" (or that there is none) to the error.
moe_status moe_ckpt_name_previous(moe_status st, const char *dir) {
    char parent[MOE_PATH_MAX], msg[1024], tail[MOE_PATH_MAX + 256];
    moe_ckpt_fmt(msg, sizeof msg, "%s", moe_last_error());
    const char *slash = strrchr(dir, '/');
    const char *name = slash ? slash + 1 : dir;
    moe_ckpt_fmt(parent, sizeof parent, "%.*s", slash ? (int)(slash - dir) : 1, slash ? dir : ".");
    int64_t step = moe_ckpt_parse_step(name), *steps, prev = -1;
    int n = moe_ckpt_list_steps(parent, &steps);
    for (int i = 0; i < n; i++)
        if (steps[i] < step && steps[i] > prev) prev = steps[i];
    free(steps);
    if (prev >= 0)
        moe_ckpt_fmt(
            tail, sizeof tail,
            "; the previous one is %s/step_%08lld: move %s/%s and any "
            "newer step_* out of %s (training would reach them), then resume with --resume "
            "%s/step_%08lld",
            parent, (long long)prev, parent, name, parent, parent, (long long)prev);
    else
        moe_ckpt_fmt(tail, sizeof tail, "; there is no earlier checkpoint in %s", parent);
    return moe_set_error(st, "checkpoint %s is corrupt (%s)%s", name, msg, tail);
}

moe_status moe_ckpt_manifest_hash(const char *dir, uint64_t *out) {
    char path[MOE_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/manifest.pb", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return moe_set_error(MOE_EIO, "%s: cannot open (%s)", path, strerror(errno));
    uint64_t h = 14695981039346656037ull;
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++) h = (h ^ buf[i]) * 1099511628211ull;
    const int err = ferror(f);
    fclose(f);
    if (err) return moe_set_error(MOE_EIO, "%s: read error", path);
    *out = h;
    return MOE_OK;
}
