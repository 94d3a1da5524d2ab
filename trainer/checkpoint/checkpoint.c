// checkpoint.c: atomic, verified, reshardable checkpoints. Each writer rank streams its tensors
// into one file of a temporary directory; rank 0 gathers the entries, writes the manifest last,
// renames and swaps LATEST. Simplicity over speed: whole-file CRC verification before any load.
#include "checkpoint-impl.h"
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *name, *kind;
    int layer, expert, ndim, writer;
    int64_t shape[MOE_CKPT_MAX_DIMS];
    int64_t numel;
    float *data;
} moe_ckpt_t;

struct moe_ckpt {
    moe_ckpt_t *t;
    int n, cap;
};

moe_ckpt *moe_ckpt_create(void) { return moe_xcalloc(1, sizeof(moe_ckpt)); }

void moe_ckpt_free(moe_ckpt *ck) {
    if (!ck) return;
    for (int i = 0; i < ck->n; i++) {
        free(ck->t[i].name);
        free(ck->t[i].kind);
    }
    free(ck->t);
    free(ck);
}

int moe_ckpt_count(const moe_ckpt *ck) { return ck->n; }

static int ck_same_key(const char *kind, const char *name, int layer, int expert,
                       const moe_ckpt_t *t) {
    return t->layer == layer && t->expert == expert && !strcmp(t->name, name) &&
           !strcmp(t->kind, kind);
}

void moe_ckpt_add(moe_ckpt *ck, const moe_ckpt_tensor *t) {
    MOE_ASSERT(t->name && *t->name && t->kind && *t->kind && t->data);
    MOE_ASSERT(t->ndim >= 1 && t->ndim <= MOE_CKPT_MAX_DIMS);
    for (int i = 0; i < ck->n; i++)
        MOE_ASSERT(!ck_same_key(t->kind, t->name, t->layer, t->expert, &ck->t[i]));
    if (ck->n == ck->cap) {
        ck->cap = ck->cap ? 2 * ck->cap : 64;
        ck->t = realloc(ck->t, (size_t)ck->cap * sizeof *ck->t);
        MOE_ASSERT(ck->t);
    }
    moe_ckpt_t *d = &ck->t[ck->n++];
    memset(d, 0, sizeof *d);
    d->name = strdup(t->name);
    d->kind = strdup(t->kind);
    MOE_ASSERT(d->name && d->kind);
    d->layer = t->layer;
    d->expert = t->expert;
    d->ndim = t->ndim;
    d->writer = t->writer;
    d->data = t->data;
    d->numel = 1;
    for (int k = 0; k < t->ndim; k++) {
        MOE_ASSERT(t->shape[k] >= 0);
        d->shape[k] = t->shape[k];
        MOE_ASSERT(!moe_mul_overflows_i64(d->numel, t->shape[k], &d->numel));
    }
    MOE_ASSERT(d->numel <= INT64_MAX / MOE_CKPT_ELEM_BYTES);
}

// ---------------------------------------------------------------- agreement across ranks
// Every phase ends with moe_comm_agree (comm.h): the lowest failing rank's status and message
// become everyone's.

static moe_status ck_bcast_str(const moe_comm *c, char *buf, size_t cap) {
    return c ? moe_comm_bcast(c, MOE_COMM_WORLD, buf, cap) : MOE_OK;
}

// ---------------------------------------------------------------- files and directories

static int ck_fsync_path(const char *path, int dir) {
    int fd = open(path, dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int ck_write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

// Writes `n` bytes to path, fsyncs. Returns MOE_OK or MOE_EIO with a message.
static moe_status ck_write_file_bytes(const char *path, const void *buf, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return moe_set_error(MOE_EIO, "cannot create %s: %s", path, strerror(errno));
    if (ck_write_all(fd, buf, n) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return moe_set_error(MOE_EIO, "writing %s failed: %s", path, strerror(e));
    }
    if (close(fd) != 0)
        return moe_set_error(MOE_EIO, "closing %s failed: %s", path, strerror(errno));
    return MOE_OK;
}

// Removes a flat directory (our checkpoint directories have no subdirectories).
static void ck_remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[MOE_PATH_MAX];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            moe_ckpt_fmt(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

// ---------------------------------------------------------------- save

// Writes the tensors of this rank selected by `expert_file` (0: dense, 1: expert) to dir/fname and
// adds their entries to `part`.
static moe_status ck_write_tensors(const moe_ckpt *ck, const char *dir, const char *fname,
                                   int expert_file, Moe__CheckpointManifest *part) {
    char path[MOE_PATH_MAX];
    moe_ckpt_fmt(path, sizeof path, "%s/%s", dir, fname);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return moe_set_error(MOE_EIO, "cannot create %s: %s", path, strerror(errno));
    uint64_t off = 0;
    uint32_t fcrc = 0;
    for (int i = 0; i < ck->n; i++) {
        const moe_ckpt_t *t = &ck->t[i];
        if (!t->writer || (t->expert >= 0) != expert_file) continue;
        size_t bytes = (size_t)t->numel * MOE_CKPT_ELEM_BYTES;
        if (ck_write_all(fd, t->data, bytes) != 0) {
            int e = errno;
            close(fd);
            return moe_set_error(MOE_EIO, "writing %s failed: %s", path, strerror(e));
        }
        Moe__TensorEntry *te = moe_xcalloc(1, sizeof *te);
        moe__tensor_entry__init(te);
        te->name = t->name; // borrowed: freed with ck, not with part
        te->kind = t->kind;
        te->file = (char *)fname;
        te->n_shape = (size_t)t->ndim;
        te->shape = (int64_t *)t->shape;
        te->has_bytes = te->has_crc32c = te->has_layer = te->has_expert = te->has_offset = 1;
        te->bytes = bytes;
        te->crc32c = moe_crc32c(0, t->data, bytes);
        te->layer = t->layer;
        te->expert = t->expert;
        te->offset = off;
        fcrc = moe_crc32c(fcrc, t->data, bytes);
        off += bytes;
        part->tensors = realloc(part->tensors, (part->n_tensors + 1) * sizeof *part->tensors);
        MOE_ASSERT(part->tensors);
        part->tensors[part->n_tensors++] = te;
    }
    if (fsync(fd) != 0 || close(fd) != 0)
        return moe_set_error(MOE_EIO, "fsync/close of %s failed: %s", path, strerror(errno));
    Moe__FileEntry *fe = moe_xcalloc(1, sizeof *fe);
    moe__file_entry__init(fe);
    fe->name = (char *)fname;
    fe->has_bytes = fe->has_crc32c = 1;
    fe->bytes = off;
    fe->crc32c = fcrc;
    part->files = realloc(part->files, (part->n_files + 1) * sizeof *part->files);
    MOE_ASSERT(part->files);
    part->files[part->n_files++] = fe;
    return MOE_OK;
}

static void ck_part_clear(Moe__CheckpointManifest *part) { // frees what ck_write_tensors added
    for (size_t i = 0; i < part->n_tensors; i++) free(part->tensors[i]);
    for (size_t i = 0; i < part->n_files; i++) free(part->files[i]);
    free(part->tensors);
    free(part->files);
    part->tensors = NULL;
    part->files = NULL;
    part->n_tensors = part->n_files = 0;
}

// Rank 0: merges the gathered parts into the manifest, writes manifest.json and manifest.pb,
// renames tmp → final and swaps LATEST.
static moe_status ck_commit(const char *ckdir, const char *tmp, const char *final,
                            const char *final_name, Moe__CheckpointManifest **parts, int n_parts,
                            const Moe__Config *cfg, const moe_ckpt_state *st) {
    Moe__CheckpointManifest m = MOE__CHECKPOINT_MANIFEST__INIT;
    moe_status rc = MOE_OK;
    m.config = (Moe__Config *)cfg;
    m.has_step = m.has_rng_state = m.has_data_cursor = m.has_world_size = m.has_ep_size = 1;
    m.has_format_version = 1;
    m.format_version = MOE_CKPT_FORMAT_VERSION;
    m.step = st->step;
    m.rng_state = st->rng_state;
    m.data_cursor = st->data_cursor;
    m.world_size = st->world;
    m.ep_size = st->ep;
    m.created_by = "moe (checkpoint format 1)";
    if (st->exchange[0]) m.exchange_choice = (char *)st->exchange;
    if (st->base[0]) {
        m.base_checkpoint = (char *)st->base;
        m.has_base_manifest_hash = 1, m.base_manifest_hash = st->base_hash;
    }
    size_t nt = 0, nf = 0;
    for (int r = 0; r < n_parts; r++) nt += parts[r]->n_tensors, nf += parts[r]->n_files;
    m.tensors = moe_xcalloc(nt + 1, sizeof *m.tensors);
    m.files = moe_xcalloc(nf + 1, sizeof *m.files);
    for (int r = 0; r < n_parts; r++) {
        for (size_t i = 0; i < parts[r]->n_files; i++) m.files[m.n_files++] = parts[r]->files[i];
        for (size_t i = 0; i < parts[r]->n_tensors; i++) {
            Moe__TensorEntry *t = parts[r]->tensors[i];
            for (size_t j = 0; j < m.n_tensors; j++) {
                const Moe__TensorEntry *u = m.tensors[j];
                if (u->layer == t->layer && u->expert == t->expert && !strcmp(u->name, t->name) &&
                    !strcmp(u->kind, t->kind)) {
                    rc = moe_set_error(MOE_EINVAL,
                                       "checkpoint: tensor %s (%s, layer %d, expert %d) "
                                       "has two writers (files %s and %s): exactly one rank must "
                                       "write it",
                                       t->name, t->kind, t->layer, t->expert, u->file, t->file);
                    goto out;
                }
            }
            m.tensors[m.n_tensors++] = t;
        }
    }
    char path[MOE_PATH_MAX];
    size_t len;
    uint8_t *pb = moe_ckpt_pack_manifest(&m, &len);
    char *json = moe_json_format_message(&m.base, 0);
    MOE_ASSERT(json);
    moe_ckpt_fmt(path, sizeof path, "%s/manifest.json", tmp);
    rc = ck_write_file_bytes(path, json, strlen(json));
    free(json);
    if (rc == MOE_OK) {
        moe_ckpt_fmt(path, sizeof path, "%s/manifest.pb",
                     tmp); // last: its presence marks completeness
        rc = ck_write_file_bytes(path, pb, len);
    }
    free(pb);
    if (rc != MOE_OK) goto out;
    if (ck_fsync_path(tmp, 1) != 0 || rename(tmp, final) != 0 || ck_fsync_path(ckdir, 1) != 0) {
        rc = moe_set_error(MOE_EIO, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
        goto out;
    }
    char latest[MOE_PATH_MAX], latest_tmp[MOE_PATH_MAX], line[256];
    moe_ckpt_fmt(latest, sizeof latest, "%s/LATEST", ckdir);
    moe_ckpt_fmt(latest_tmp, sizeof latest_tmp, "%s/LATEST.tmp", ckdir);
    moe_ckpt_fmt(line, sizeof line, "%s\n", final_name);
    rc = ck_write_file_bytes(latest_tmp, line, strlen(line));
    if (rc == MOE_OK && (rename(latest_tmp, latest) != 0 || ck_fsync_path(ckdir, 1) != 0))
        rc = moe_set_error(MOE_EIO, "cannot replace %s: %s", latest, strerror(errno));
out:
    free(m.tensors);
    free(m.files);
    return rc;
}

// mkdtemp creates 0700 whatever the umask: give the directory the mode mkdir would (0777 less
// the umask), so group members on a shared cluster can read checkpoints when the umask lets them.
static int ck_follow_umask(const char *dir) {
    const mode_t u = umask(0); // read it (there is no other way) and put it back at once
    umask(u);
    return chmod(dir, 0777 & ~u);
}

// Rank 0 after a complete save: all but the newest `keep` checkpoints go (renamed first, so a
// half-deleted directory never looks like a checkpoint).
static void ck_prune(const char *ckdir, int keep, int64_t newest) {
    if (keep <= 0) return;
    int64_t *steps;
    int n = moe_ckpt_list_steps(ckdir, &steps);
    for (int i = keep; i < n; i++) {
        if (steps[i] == newest) continue;
        char from[MOE_PATH_MAX], to[MOE_PATH_MAX];
        moe_ckpt_fmt(from, sizeof from, "%s/step_%08lld", ckdir, (long long)steps[i]);
        moe_ckpt_fmt(to, sizeof to, "%s/step_%08lld.tmp-delete", ckdir, (long long)steps[i]);
        if (rename(from, to) == 0) ck_remove_dir(to);
    }
    free(steps);
}

// Rank 0 before a save: leftovers of interrupted saves (names containing ".tmp-").
static void ck_clean_tmp(const char *ckdir) {
    DIR *d = opendir(ckdir);
    if (!d) return;
    struct dirent *e;
    char p[MOE_PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "step_", 5) != 0 || !strstr(e->d_name, ".tmp-")) continue;
        moe_ckpt_fmt(p, sizeof p, "%s/%s", ckdir, e->d_name);
        ck_remove_dir(p);
    }
    closedir(d);
}

// The paths of a save: ckdir, final, final_name (MOE_PATH_MAX, MOE_PATH_MAX, 64 bytes).
static void ck_names(const char *out_dir, int64_t step, char *ckdir, char *final,
                     char *final_name) {
    moe_ckpt_fmt(ckdir, MOE_PATH_MAX, "%s/checkpoints", out_dir);
    moe_ckpt_fmt(final_name, 64, "step_%08lld", (long long)step);
    moe_ckpt_fmt(final, MOE_PATH_MAX, "%s/%s", ckdir, final_name);
}

// Phase 1 of a save (rank 0): checkpoints/ created, step_N refused if it exists, leftovers of
// interrupted saves removed, the temporary directory created in tmp (MOE_PATH_MAX bytes).
static moe_status ck_begin(const char *ckdir, const char *final, char *tmp) {
    if (moe_mkdir_p(ckdir) != 0)
        return moe_set_error(MOE_EIO, "cannot create %s: %s (check out_dir)", ckdir,
                             strerror(errno));
    if (moe_ckpt_exists(final))
        return moe_set_error(MOE_EIO, "checkpoint %s already exists: not overwritten", final);
    ck_clean_tmp(ckdir);
    moe_ckpt_fmt(tmp, MOE_PATH_MAX, "%s.tmp-XXXXXX", final);
    if (!mkdtemp(tmp) || ck_follow_umask(tmp) != 0) {
        const int e = errno;
        tmp[0] = 0; // nothing to remove
        return moe_set_error(MOE_EIO, "cannot create %s.tmp-XXXXXX: %s", final, strerror(e));
    }
    return MOE_OK;
}

// Phase 2 for world rank `rank`: its files (dense.bin or dense-R.bin, experts-R.bin) with the
// tensors of ck it writes; their entries into *part (borrowing ck's strings and `names`, 2 × 64
// bytes that must outlive *part). A rank that writes nothing writes no file.
static moe_status ck_write_rank(const moe_ckpt *ck, const char *tmp, int rank, char names[2][64],
                                Moe__CheckpointManifest *part) {
    int has_dense = 0, has_expert = 0;
    for (int i = 0; i < ck->n; i++)
        if (ck->t[i].writer) {
            if (ck->t[i].expert >= 0)
                has_expert = 1;
            else
                has_dense = 1;
        }
    moe_ckpt_fmt(names[0], 64, rank == 0 ? "dense.bin" : "dense-%05d.bin", rank);
    moe_ckpt_fmt(names[1], 64, "experts-%05d.bin", rank);
    moe_status rc = MOE_OK;
    if (has_dense) rc = ck_write_tensors(ck, tmp, names[0], 0, part);
    if (rc == MOE_OK && has_expert) rc = ck_write_tensors(ck, tmp, names[1], 1, part);
    return rc;
}

// A part's entries packed, as they travel to rank 0: u32 length, the packed message, padded to
// whole floats (*nf of them). Free with free().
static float *ck_pack_part(const Moe__CheckpointManifest *part, int64_t *nf) {
    size_t plen;
    uint8_t *pbytes = moe_ckpt_pack(&part->base, &plen);
    *nf = (int64_t)((plen + 4 + 3) / 4);
    float *b = moe_xcalloc((size_t)*nf, sizeof(float));
    uint32_t plen32 = (uint32_t)plen;
    memcpy(b, &plen32, 4);
    memcpy((uint8_t *)b + 4, pbytes, plen);
    free(pbytes);
    return b;
}

static Moe__CheckpointManifest *ck_unpack_part(const float *b) {
    uint32_t l;
    memcpy(&l, b, 4);
    return moe__checkpoint_manifest__unpack(NULL, l, (const uint8_t *)b + 4);
}

moe_status moe_ckpt_save(moe_ckpt *ck, const moe_comm *c, const char *out_dir,
                         const Moe__Config *cfg, const moe_ckpt_state *st, int keep, char *written,
                         size_t cap) {
    const int W = c ? moe_comm_size(c, MOE_COMM_WORLD) : 1;
    const int rank = c ? moe_comm_rank(c, MOE_COMM_WORLD) : 0;
    char ckdir[MOE_PATH_MAX], final[MOE_PATH_MAX], final_name[64], tmp[MOE_PATH_MAX];
    moe_status dst = moe_dir_check("out_dir", out_dir); // same on every rank: no agreement needed
    if (dst) return dst;
    memset(tmp, 0, sizeof tmp);
    moe_status rc = MOE_OK;
    // Phase 1 (rank 0): directories, leftovers, the temporary directory's name for everyone.
    ck_names(out_dir, st->step, ckdir, final, final_name);
    if (rank == 0) rc = ck_begin(ckdir, final, tmp);
    if ((rc = moe_comm_agree(c, rc)) != MOE_OK) return rc;
    if ((rc = ck_bcast_str(c, tmp, sizeof tmp)) != MOE_OK) return rc;
    // Phase 2: every writer rank writes and fsyncs its files.
    Moe__CheckpointManifest part = MOE__CHECKPOINT_MANIFEST__INIT;
    char names[2][64];
    rc = moe_comm_agree(c, ck_write_rank(ck, tmp, rank, names, &part));
    // Phase 3: entries to rank 0 (length-prefixed packed parts, carried as floats).
    float *sendb = NULL, *recvb = NULL;
    int64_t *counts = NULL;
    Moe__CheckpointManifest **parts = NULL;
    int n_parts = 0;
    if (rc != MOE_OK) goto fail;
    int64_t nf, total;
    sendb = ck_pack_part(&part, &nf);
    total = nf;
    parts = moe_xcalloc((size_t)W, sizeof *parts);
    if (c) {
        if ((rc = moe_comm_allreduce_i64(c, MOE_COMM_WORLD, &total, 1, MOE_COMM_SUM)) != MOE_OK)
            goto fail;
        counts = moe_xcalloc((size_t)W, sizeof *counts);
        if (rank == 0) recvb = moe_xcalloc((size_t)total, sizeof(float));
        rc = moe_comm_gatherv_f32(c, MOE_COMM_WORLD, sendb, nf, recvb, rank == 0 ? total : 0,
                                  counts);
        if (rc != MOE_OK) goto fail;
    } else {
        recvb = sendb;
        sendb = NULL;
    }
    // Phase 4 (rank 0): manifest, rename, LATEST, prune.
    if (rank == 0) {
        int64_t at = 0;
        for (int r = 0; r < W && rc == MOE_OK; r++) {
            parts[r] = ck_unpack_part(recvb + at);
            n_parts = r + 1;
            if (!parts[r])
                rc = moe_set_error(MOE_EIO, "checkpoint: entries of rank %d did not unpack", r);
            at += c ? counts[r] : nf;
        }
        if (rc == MOE_OK) rc = ck_commit(ckdir, tmp, final, final_name, parts, W, cfg, st);
        if (rc == MOE_OK) ck_prune(ckdir, keep, st->step);
    }
    rc = moe_comm_agree(c, rc);
fail:
    if (rc != MOE_OK && rank == 0 && tmp[0]) ck_remove_dir(tmp);
    for (int r = 0; r < n_parts; r++)
        if (parts[r]) moe__checkpoint_manifest__free_unpacked(parts[r], NULL);
    free(parts);
    ck_part_clear(&part);
    free(sendb);
    free(recvb);
    free(counts);
    if (rc == MOE_OK && written) moe_ckpt_fmt(written, cap, "%s", final);
    return rc;
}

// ---------------------------------------------------------------- one process, rank by rank

struct moe_ckpt_serial {
    char ckdir[MOE_PATH_MAX], final[MOE_PATH_MAX], final_name[64], tmp[MOE_PATH_MAX];
    int64_t step;
    int world;
    Moe__CheckpointManifest **parts; // (world) unpacked copies; NULL: that rank not written yet
};

moe_status moe_ckpt_serial_begin(const char *out_dir, int64_t step, int world,
                                 moe_ckpt_serial **out) {
    *out = NULL;
    MOE_ASSERT(world >= 1);
    moe_status rc = moe_dir_check("out_dir", out_dir);
    if (rc) return rc;
    moe_ckpt_serial *s = moe_xcalloc(1, sizeof *s);
    s->step = step, s->world = world;
    s->parts = moe_xcalloc((size_t)world, sizeof *s->parts);
    ck_names(out_dir, step, s->ckdir, s->final, s->final_name);
    if ((rc = ck_begin(s->ckdir, s->final, s->tmp))) {
        moe_ckpt_serial_free(s);
        return rc;
    }
    *out = s;
    return MOE_OK;
}

moe_status moe_ckpt_serial_write(moe_ckpt_serial *s, const moe_ckpt *ck, int rank) {
    MOE_ASSERT(rank >= 0 && rank < s->world && !s->parts[rank]);
    Moe__CheckpointManifest part = MOE__CHECKPOINT_MANIFEST__INIT;
    char names[2][64];
    moe_status rc = ck_write_rank(ck, s->tmp, rank, names, &part);
    if (rc == MOE_OK) { // a copy that owns its strings: ck may be freed before the commit
        int64_t nf;
        float *b = ck_pack_part(&part, &nf);
        s->parts[rank] = ck_unpack_part(b);
        free(b);
        if (!s->parts[rank])
            rc = moe_set_error(MOE_EIO, "checkpoint: entries of rank %d did not unpack", rank);
    }
    ck_part_clear(&part);
    return rc;
}

moe_status moe_ckpt_serial_commit(moe_ckpt_serial *s, const Moe__Config *cfg,
                                  const moe_ckpt_state *st, int keep, char *written, size_t cap) {
    MOE_ASSERT(st->step == s->step);
    static const Moe__CheckpointManifest empty = MOE__CHECKPOINT_MANIFEST__INIT;
    Moe__CheckpointManifest **parts = moe_xcalloc((size_t)s->world, sizeof *parts);
    for (int r = 0; r < s->world; r++) // a rank never written holds nothing, as in a save
        parts[r] = s->parts[r] ? s->parts[r] : (Moe__CheckpointManifest *)&empty;
    moe_status rc =
        ck_commit(s->ckdir, s->tmp, s->final, s->final_name, parts, s->world, cfg, st);
    free(parts);
    if (rc == MOE_OK) {
        s->tmp[0] = 0; // renamed: nothing left to remove
        ck_prune(s->ckdir, keep, st->step);
        if (written) moe_ckpt_fmt(written, cap, "%s", s->final);
    }
    return rc;
}

void moe_ckpt_serial_free(moe_ckpt_serial *s) {
    if (!s) return;
    if (s->tmp[0]) ck_remove_dir(s->tmp); // not committed: no half checkpoint is left
    for (int r = 0; r < s->world; r++)
        if (s->parts[r]) moe__checkpoint_manifest__free_unpacked(s->parts[r], NULL);
    free(s->parts);
    free(s);
}

// ---------------------------------------------------------------- load

static const Moe__TensorEntry *ck_find(const Moe__CheckpointManifest *m, const moe_ckpt_t *t) {
    for (size_t j = 0; j < m->n_tensors; j++) {
        const Moe__TensorEntry *e = m->tensors[j];
        if (e->layer == t->layer && e->expert == t->expert && e->name && e->kind &&
            !strcmp(e->name, t->name) && !strcmp(e->kind, t->kind))
            return e;
    }
    return NULL;
}

// Every registered tensor present, same shape, inside a verified file.
static moe_status ck_match(const moe_ckpt *ck, const Moe__CheckpointManifest *m, const char *dir) {
    for (int i = 0; i < ck->n; i++) {
        const moe_ckpt_t *t = &ck->t[i];
        const Moe__TensorEntry *e = ck_find(m, t);
        if (!e)
            return moe_set_error(MOE_EINVAL,
                                 "%s: no tensor %s (%s, layer %d, expert %d) in the "
                                 "manifest: a checkpoint of another model?",
                                 dir, t->name, t->kind, t->layer, t->expert);
        int same = e->n_shape == (size_t)t->ndim;
        for (int k = 0; same && k < t->ndim; k++) same = e->shape[k] == t->shape[k];
        if (!same || e->bytes != (uint64_t)t->numel * MOE_CKPT_ELEM_BYTES)
            return moe_set_error(
                MOE_EINVAL,
                "%s: tensor %s (%s, layer %d, expert %d) has %zu dims / "
                "%llu bytes in the checkpoint, the model expects %d dims / %lld bytes",
                dir, t->name, t->kind, t->layer, t->expert, e->n_shape,
                (unsigned long long)e->bytes, t->ndim, (long long)t->numel * MOE_CKPT_ELEM_BYTES);
        const Moe__FileEntry *fe = NULL;
        for (size_t f = 0; f < m->n_files && !fe; f++)
            if (m->files[f]->name && e->file && !strcmp(m->files[f]->name, e->file))
                fe = m->files[f];
        if (!fe || e->offset > fe->bytes || e->bytes > fe->bytes - e->offset) // no wrap-around
            return moe_set_error(MOE_ECORRUPT,
                                 "%s/manifest.pb: tensor %s lies outside the listed "
                                 "files (file %s)",
                                 dir, t->name, e->file ? e->file : "(none)");
    }
    return MOE_OK;
}

static moe_status ck_read_tensors(const moe_ckpt *ck, const Moe__CheckpointManifest *m,
                                  const char *dir) {
    char path[MOE_PATH_MAX];
    for (int i = 0; i < ck->n; i++) {
        const moe_ckpt_t *t = &ck->t[i];
        const Moe__TensorEntry *e = ck_find(m, t);
        moe_ckpt_fmt(path, sizeof path, "%s/%s", dir, e->file);
        int fd = open(path, O_RDONLY);
        if (fd < 0) return moe_set_error(MOE_EIO, "cannot open %s: %s", path, strerror(errno));
        size_t done = 0;
        while (done < e->bytes) {
            ssize_t r =
                pread(fd, (char *)t->data + done, e->bytes - done, (off_t)(e->offset + done));
            if (r <= 0) {
                close(fd);
                return moe_set_error(MOE_EIO, "reading %s at offset %llu failed: %s", path,
                                     (unsigned long long)(e->offset + done),
                                     r < 0 ? strerror(errno) : "end of file");
            }
            done += (size_t)r;
        }
        close(fd);
    }
    return MOE_OK;
}

// ---------------------------------------------------------------- one process, part by part

struct moe_ckpt_reader {
    char dir[MOE_PATH_MAX];
    Moe__CheckpointManifest *m;
};

moe_status moe_ckpt_reader_open(const char *where, moe_ckpt_reader **out) {
    *out = NULL;
    moe_ckpt_reader *r = moe_xcalloc(1, sizeof *r);
    moe_status rc = moe_ckpt_resolve(where, r->dir, sizeof r->dir);
    if (rc == MOE_OK) rc = moe_ckpt_read_manifest(r->dir, &r->m);
    for (size_t f = 0; rc == MOE_OK && f < r->m->n_files; f++)
        rc = moe_ckpt_verify_file(r->dir, r->m->files[f]);
    if (rc == MOE_ECORRUPT) rc = moe_ckpt_name_previous(rc, r->dir);
    if (rc != MOE_OK) {
        moe_ckpt_reader_free(r);
        return rc;
    }
    if (moe_ckpt_manifest_note(r->m))
        fprintf(stderr, "moe: note: %s: %s\n", r->dir, moe_ckpt_manifest_note(r->m));
    *out = r;
    return MOE_OK;
}

moe_status moe_ckpt_reader_check(const moe_ckpt_reader *r, const moe_ckpt *ck) {
    return ck_match(ck, r->m, r->dir);
}

moe_status moe_ckpt_reader_read(const moe_ckpt_reader *r, moe_ckpt *ck) {
    moe_status rc = ck_match(ck, r->m, r->dir);
    return rc == MOE_OK ? ck_read_tensors(ck, r->m, r->dir) : rc;
}

const char *moe_ckpt_reader_dir(const moe_ckpt_reader *r) { return r->dir; }

void moe_ckpt_reader_free(moe_ckpt_reader *r) {
    if (!r) return;
    if (r->m) moe__checkpoint_manifest__free_unpacked(r->m, NULL);
    free(r);
}

moe_status moe_ckpt_load(moe_ckpt *ck, const moe_comm *c, const char *where, const Moe__Config *cfg,
                         moe_ckpt_state *st) {
    const int W = c ? moe_comm_size(c, MOE_COMM_WORLD) : 1;
    const int rank = c ? moe_comm_rank(c, MOE_COMM_WORLD) : 0;
    char dir[MOE_PATH_MAX];
    memset(dir, 0, sizeof dir);
    moe_status rc = rank == 0 ? moe_ckpt_resolve(where, dir, sizeof dir) : MOE_OK;
    if ((rc = moe_comm_agree(c, rc)) != MOE_OK) return rc;
    if ((rc = ck_bcast_str(c, dir, sizeof dir)) != MOE_OK) return rc;
    // Verify: the manifest on every rank, the files spread over the ranks.
    Moe__CheckpointManifest *m = NULL;
    rc = moe_ckpt_read_manifest(dir, &m);
    if (rc == MOE_OK)
        for (size_t f = (size_t)rank; f < m->n_files && rc == MOE_OK; f += (size_t)W)
            rc = moe_ckpt_verify_file(dir, m->files[f]);
    if (rc == MOE_ECORRUPT) rc = moe_ckpt_name_previous(rc, dir);
    if ((rc = moe_comm_agree(c, rc)) != MOE_OK) goto out;
    if (rank == 0 && moe_ckpt_manifest_note(m))
        fprintf(stderr, "moe: note: %s: %s\n", dir, moe_ckpt_manifest_note(m));
    // Same model, every tensor present with its shape.
    if (cfg) {
        // The list gets the room the message leaves after the directory (MOE_DIR_MAX at most),
        // so that it ends whole ("... and N more"), not cut by the error buffer.
        char diff[2048];
        const size_t used = strlen(dir) + 80,
                     room = used < MOE_ERROR_MAX ? MOE_ERROR_MAX - used : 1;
        if (moe_ckpt_config_diff(m->config, cfg, diff, room < sizeof diff ? room : sizeof diff) > 0)
            rc = moe_set_error(MOE_EINVAL, "%s/manifest.pb: the checkpoint is of another model: %s",
                               dir, diff);
    }
    if (rc == MOE_OK) rc = ck_match(ck, m, dir);
    if ((rc = moe_comm_agree(c, rc)) != MOE_OK) goto out;
    rc = moe_comm_agree(c, ck_read_tensors(ck, m, dir));
    if (rc == MOE_OK && st) {
        st->step = m->step;
        st->rng_state = m->rng_state;
        st->data_cursor = m->data_cursor;
        st->world = m->world_size;
        st->ep = m->ep_size;
        snprintf(st->exchange, sizeof st->exchange, "%s",
                 m->exchange_choice ? m->exchange_choice : "");
        snprintf(st->base, sizeof st->base, "%s", m->base_checkpoint ? m->base_checkpoint : "");
        st->base_hash = m->base_manifest_hash;
    }
out:
    if (m) moe__checkpoint_manifest__free_unpacked(m, NULL);
    return rc;
}
