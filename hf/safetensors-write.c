// safetensors-write.c: writing safetensors files (hf.h): declare, then stream the tensors in the
// declared order into PATH.tmp, fsync and rename. The header is deterministic — __metadata__
// first, then the tensors in declared order, compact JSON padded with spaces to a multiple of 8
// bytes — so the same tensors give the same bytes (export → import → export round trips).
#include "hf.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct moe_st_writer {
    char *path, *tmp;
    FILE *f;
    moe_st_dtype dtype;
    int n, cap, next; // declared, capacity, next to write
    char **name;
    int *ndim;
    int64_t (*shape)[MOE_ST_MAX_DIMS];
    json_t *meta;
};

moe_status moe_st_writer_create(const char *path, moe_st_dtype dtype, moe_st_writer **out) {
    *out = NULL;
    moe_st_writer *w = moe_xcalloc(1, sizeof *w);
    w->path = moe_xstrdup(path);
    const size_t n = strlen(path) + 8;
    w->tmp = moe_xcalloc(n, 1);
    snprintf(w->tmp, n, "%s.tmp", path);
    w->dtype = dtype;
    w->meta = json_object();
    if (!(w->f = fopen(w->tmp, "wb"))) {
        moe_status st = moe_set_error(MOE_EIO, "%s: cannot create: %s", w->tmp, strerror(errno));
        moe_st_writer_abort(w);
        return st;
    }
    *out = w;
    return MOE_OK;
}

moe_status moe_st_declare(moe_st_writer *w, const char *name, int ndim, const int64_t *shape) {
    if (w->next > 0)
        return moe_set_error(MOE_EINVAL, "%s: tensor '%s' declared after writing began", w->path,
                             name);
    if (ndim < 0 || ndim > MOE_ST_MAX_DIMS || !strcmp(name, "__metadata__"))
        return moe_set_error(MOE_EINVAL, "%s: tensor '%s': bad name or %d dimensions", w->path,
                             name, ndim);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->name[i], name))
            return moe_set_error(MOE_EINVAL, "%s: tensor '%s' declared twice", w->path, name);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return moe_set_error(MOE_EINVAL, "%s: tensor '%s': negative shape", w->path, name);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->name = realloc(w->name, (size_t)w->cap * sizeof *w->name);
        w->ndim = realloc(w->ndim, (size_t)w->cap * sizeof *w->ndim);
        w->shape = realloc(w->shape, (size_t)w->cap * sizeof *w->shape);
        MOE_ASSERT(w->name && w->ndim && w->shape);
    }
    w->name[w->n] = moe_xstrdup(name);
    w->ndim[w->n] = ndim;
    for (int i = 0; i < ndim; i++) w->shape[w->n][i] = shape[i];
    w->n++;
    return MOE_OK;
}

moe_status moe_st_set_meta(moe_st_writer *w, const char *key, const char *value) {
    if (w->next > 0)
        return moe_set_error(MOE_EINVAL, "%s: metadata '%s' set after writing began", w->path, key);
    json_object_set_new(w->meta, key, json_string(value));
    return MOE_OK;
}

static moe_status write_header(moe_st_writer *w) {
    json_t *root = json_object();
    if (json_object_size(w->meta)) json_object_set(root, "__metadata__", w->meta);
    uint64_t at = 0;
    for (int i = 0; i < w->n; i++) {
        json_t *e = json_object(), *sh = json_array();
        for (int d = 0; d < w->ndim[i]; d++)
            json_array_append_new(sh, json_integer(w->shape[i][d]));
        const uint64_t bytes = (uint64_t)moe_st_bytes(w->dtype, w->ndim[i], w->shape[i]);
        json_object_set_new(e, "dtype", json_string(moe_st_dtype_name(w->dtype)));
        json_object_set_new(e, "shape", sh);
        json_object_set_new(e, "data_offsets",
                            json_pack("[II]", (json_int_t)at, (json_int_t)(at + bytes)));
        json_object_set_new(root, w->name[i], e);
        at += bytes;
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    MOE_ASSERT(text);
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    unsigned char n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int ok = fwrite(n8, 1, 8, w->f) == 8 && fwrite(text, 1, len, w->f) == len;
    for (size_t i = len; i < padded && ok; i++) ok = fputc(' ', w->f) != EOF;
    free(text);
    return ok ? MOE_OK : moe_set_error(MOE_EIO, "%s: write: %s", w->tmp, strerror(errno));
}

moe_status moe_st_write(moe_st_writer *w, const char *name, const float *data) {
    if (w->next >= w->n || strcmp(w->name[w->next], name))
        return moe_set_error(MOE_EINVAL,
                             "%s: tensor '%s' written out of the declared order "
                             "(expected '%s')",
                             w->path, name, w->next < w->n ? w->name[w->next] : "nothing more");
    moe_status st;
    if (w->next == 0 && (st = write_header(w))) return st;
    const int64_t numel = moe_st_bytes(MOE_ST_F32, w->ndim[w->next], w->shape[w->next]) / 4;
    unsigned char buf[1 << 14];
    const size_t es = w->dtype == MOE_ST_F32 ? 4 : 2, per = sizeof buf / es;
    for (int64_t done = 0; done < numel;) {
        const size_t k = (size_t)(numel - done) < per ? (size_t)(numel - done) : per;
        for (size_t i = 0; i < k; i++) {
            const float x = data[done + (int64_t)i];
            unsigned char *p = buf + i * es;
            uint32_t u;
            if (w->dtype == MOE_ST_F32)
                memcpy(&u, &x, 4);
            else
                u = w->dtype == MOE_ST_BF16 ? moe_f32_to_bf16(x) : moe_f32_to_f16(x);
            for (size_t b = 0; b < es; b++) p[b] = (unsigned char)(u >> (8 * b));
        }
        if (fwrite(buf, es, k, w->f) != k)
            return moe_set_error(MOE_EIO, "%s: write: %s", w->tmp, strerror(errno));
        done += (int64_t)k;
    }
    w->next++;
    return MOE_OK;
}

static void writer_free(moe_st_writer *w) {
    for (int i = 0; i < w->n; i++) free(w->name[i]);
    free(w->name), free(w->ndim), free(w->shape), free(w->path), free(w->tmp);
    json_decref(w->meta);
    free(w);
}

moe_status moe_st_writer_finish(moe_st_writer *w) {
    moe_status st = MOE_OK;
    if (w->next < w->n)
        st = moe_set_error(MOE_EINVAL, "%s: tensor '%s' declared but never written", w->path,
                           w->name[w->next]);
    else if (w->n == 0)
        st = write_header(w); // an empty file still has its header
    if (!st && (fflush(w->f) || fsync(fileno(w->f))))
        st = moe_set_error(MOE_EIO, "%s: write: %s (disk full?)", w->tmp, strerror(errno));
    if (st) {
        moe_st_writer_abort(w);
        return st;
    }
    const int rc = fclose(w->f);
    w->f = NULL;
    if (rc || rename(w->tmp, w->path)) {
        st = moe_set_error(MOE_EIO, "%s: cannot finish: %s", w->path, strerror(errno));
        moe_st_writer_abort(w);
        return st;
    }
    char *dcopy = moe_xstrdup(w->path);
    const int dfd = open(dirname(dcopy), O_RDONLY);
    if (dfd >= 0) fsync(dfd), close(dfd);
    free(dcopy);
    writer_free(w);
    return MOE_OK;
}

void moe_st_writer_abort(moe_st_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    unlink(w->tmp);
    writer_free(w);
}
