// trace.c: the routing trace file (trace.h) — records in memory, their little-endian encoding,
// the atomic writer (temporary file, fsync, rename, directory fsync) and the checking reader.
// Trade-off: a whole trace is held in memory (tens of bytes per token and layer); probes are a
// few validation batches, so a reader that checks everything before answering is worth it.
#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

moe_trace *moe_trace_alloc(Moe__TraceHeader *h) {
    moe_trace *t = moe_xcalloc(1, sizeof *t);
    t->h = h;
    t->n = h->n_records;
    t->slots = h->slots;
    t->E = h->n_experts;
    t->n_moe = (int)h->n_moe_layers;
    const size_t n = (size_t)(t->n > 0 ? t->n : 1), ns = n * (size_t)(t->slots > 0 ? t->slots : 1);
    t->seq = moe_xcalloc(n, sizeof *t->seq);
    t->pos = moe_xcalloc(n, sizeof *t->pos);
    t->token = moe_xcalloc(n, sizeof *t->token);
    t->layer = moe_xcalloc(n, sizeof *t->layer);
    t->dropped = moe_xcalloc(n, sizeof *t->dropped);
    t->expert = moe_xcalloc(ns, sizeof *t->expert);
    t->weight = moe_xcalloc(ns, sizeof *t->weight);
    for (size_t i = 0; i < ns; i++) t->expert[i] = -1;
    return t;
}

void moe_trace_free(moe_trace *t) {
    if (!t) return;
    if (t->h) protobuf_c_message_free_unpacked(&t->h->base, NULL);
    free(t->seq), free(t->pos), free(t->token), free(t->layer), free(t->dropped);
    free(t->expert), free(t->weight);
    free(t);
}

void moe_trace_pack_record(const moe_trace *t, int64_t i, uint32_t *w) {
    const int S = t->slots;
    w[0] = t->seq[i], w[1] = t->pos[i], w[2] = t->token[i], w[3] = t->layer[i];
    for (int j = 0; j < S; j++) {
        memcpy(&w[4 + j], &t->expert[i * S + j], 4);
        memcpy(&w[4 + S + j], &t->weight[i * S + j], 4);
    }
    w[4 + 2 * S] = t->dropped[i];
}

void moe_trace_unpack_record(moe_trace *t, int64_t i, const uint32_t *w) {
    const int S = t->slots;
    t->seq[i] = w[0], t->pos[i] = w[1], t->token[i] = w[2], t->layer[i] = w[3];
    for (int j = 0; j < S; j++) {
        memcpy(&t->expert[i * S + j], &w[4 + j], 4);
        memcpy(&t->weight[i * S + j], &w[4 + S + j], 4);
    }
    t->dropped[i] = w[4 + 2 * S];
}

static void put_u32le(unsigned char *b, uint32_t v) {
    b[0] = (unsigned char)v, b[1] = (unsigned char)(v >> 8);
    b[2] = (unsigned char)(v >> 16), b[3] = (unsigned char)(v >> 24);
}
static uint32_t get_u32le(const unsigned char *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t moe_trace_shape_hash(const Moe__TraceHeader *h) {
    const Moe__ModelConfig *m = h->model;
    int64_t v[12] = {0};
    if (m)
        v[0] = m->vocab_size, v[1] = m->d_model, v[2] = m->n_layers, v[3] = m->n_heads,
        v[4] = m->n_kv_heads, v[5] = m->head_dim, v[6] = m->d_ff, v[7] = m->expert_d_ff,
        v[8] = m->n_shared_experts;
    v[9] = h->n_experts, v[10] = h->top_k, v[11] = h->slots;
    uint64_t x = fnv1a(0xcbf29ce484222325ull, v, sizeof v);
    for (size_t i = 0; i < h->n_moe_layers; i++)
        x = fnv1a(x, &h->moe_layers[i], sizeof h->moe_layers[i]);
    if (h->strategy) x = fnv1a(x, h->strategy, strlen(h->strategy));
    return x;
}

// ---------------------------------------------------------------- writer

static int write_all(int fd, const unsigned char *b, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w, n -= (size_t)w;
    }
    return 0;
}

// The whole file in one buffer (header and records little-endian).
static unsigned char *trace_encode(const moe_trace *t, size_t *len) {
    const size_t hn = moe__trace_header__get_packed_size(t->h);
    const int words = moe_trace_record_words(t->slots);
    const size_t rb = 4 * (size_t)words;
    *len = 12 + hn + (size_t)t->n * rb;
    unsigned char *buf = moe_xcalloc(*len, 1), *p = buf + 12 + hn;
    memcpy(buf, MOE_TRACE_MAGIC, 8);
    put_u32le(buf + 8, (uint32_t)hn);
    moe__trace_header__pack(t->h, buf + 12);
    uint32_t *w = moe_xcalloc((size_t)words, sizeof *w);
    for (int64_t i = 0; i < t->n; i++, p += rb) {
        moe_trace_pack_record(t, i, w);
        for (int k = 0; k < words; k++) put_u32le(p + 4 * k, w[k]);
    }
    free(w);
    return buf;
}

static int fsync_dir_of(const char *path) {
    char dir[MOE_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl == dir)
        dir[1] = 0;
    else if (sl)
        *sl = 0;
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

moe_status moe_trace_write(const moe_trace *t, const char *path) {
    MOE_ASSERT(t->h->n_records == t->n);
    char tmp[MOE_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    size_t len = 0;
    unsigned char *buf = trace_encode(t, &len);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        free(buf);
        return moe_set_error(MOE_EIO, "cannot create %s: %s", tmp, strerror(errno));
    }
    int bad = write_all(fd, buf, len) != 0 || fsync(fd) != 0;
    int err = errno;
    bad |= close(fd) != 0;
    free(buf);
    if (bad || rename(tmp, path) != 0 || fsync_dir_of(path) != 0) {
        err = err ? err : errno;
        unlink(tmp);
        return moe_set_error(MOE_EIO, "writing trace %s failed (%s); nothing was written", path,
                             strerror(err));
    }
    return MOE_OK;
}

// ---------------------------------------------------------------- reader

// The header's own consistency (before any record is looked at).
static moe_status trace_check_header(const char *path, const Moe__TraceHeader *h) {
    if (h->format_version != MOE_TRACE_VERSION)
        return moe_set_error(MOE_ECORRUPT, "%s: trace format version %u, this moe reads %u", path,
                             h->format_version, MOE_TRACE_VERSION);
    if (h->n_experts <= 0 || h->top_k <= 0 || h->slots <= 0 || h->slots > 32 ||
        h->slots > h->n_experts || h->n_moe_layers == 0 || h->seq_len <= 0 || h->n_tokens < 0)
        return moe_set_error(MOE_ECORRUPT,
                             "%s: header inconsistent: n_experts %d, top_k %d, slots %d (at most "
                             "32 and n_experts), %zu MoE layers, seq_len %d",
                             path, h->n_experts, h->top_k, h->slots, h->n_moe_layers, h->seq_len);
    if (h->n_tokens > INT64_MAX / (int64_t)h->n_moe_layers)
        return moe_set_error(MOE_ECORRUPT, "%s: header says %lld tokens: past any file", path,
                             (long long)h->n_tokens);
    if (h->record_bytes != 4 * moe_trace_record_words(h->slots))
        return moe_set_error(MOE_ECORRUPT, "%s: header says %d bytes per record; %d slots need %d",
                             path, h->record_bytes, h->slots, 4 * moe_trace_record_words(h->slots));
    if (h->n_records != h->n_tokens * (int64_t)h->n_moe_layers)
        return moe_set_error(MOE_ECORRUPT,
                             "%s: record count mismatch: header says %lld records, but %lld "
                             "tokens x %zu MoE layers = %lld",
                             path, (long long)h->n_records, (long long)h->n_tokens, h->n_moe_layers,
                             (long long)(h->n_tokens * (int64_t)h->n_moe_layers));
    return MOE_OK;
}

// Every record's values in range.
static moe_status trace_check_records(const char *path, const moe_trace *t) {
    const int S = t->slots;
    for (int64_t i = 0; i < t->n; i++) {
        if (t->layer[i] != (uint32_t)(i % t->n_moe))
            return moe_set_error(MOE_ECORRUPT,
                                 "%s: record %lld: MoE layer %u where the (seq, pos, layer) order "
                                 "puts layer %lld",
                                 path, (long long)i, t->layer[i], (long long)(i % t->n_moe));
        if (t->pos[i] >= (uint32_t)t->h->seq_len)
            return moe_set_error(MOE_ECORRUPT,
                                 "%s: record %lld: position %u out of range (seq_len %d)", path,
                                 (long long)i, t->pos[i], t->h->seq_len);
        for (int j = 0; j < S; j++) {
            int32_t e = t->expert[i * S + j];
            if (e < -1 || e >= t->E)
                return moe_set_error(MOE_ECORRUPT,
                                     "%s: record %lld slot %d: expert id %d out of range "
                                     "[0, %d) (n_experts %d)",
                                     path, (long long)i, j, (int)e, t->E, t->E);
            if (e < 0 && (t->dropped[i] >> j & 1u))
                return moe_set_error(MOE_ECORRUPT,
                                     "%s: record %lld: slot %d is empty but marked dropped", path,
                                     (long long)i, j);
        }
        if (S < 32 && (t->dropped[i] >> S) != 0)
            return moe_set_error(MOE_ECORRUPT, "%s: record %lld: dropped bits beyond %d slots",
                                 path, (long long)i, S);
    }
    return MOE_OK;
}

// Parses an in-memory file of len bytes.
static moe_status trace_decode(const char *path, const unsigned char *b, size_t len,
                               moe_trace **out) {
    if (len < 12 || memcmp(b, MOE_TRACE_MAGIC, 8) != 0)
        return moe_set_error(MOE_ECORRUPT,
                             "%s: not a moe routing trace (wrong magic; expected \"%s\" in the "
                             "first 8 bytes)",
                             path, MOE_TRACE_MAGIC);
    const size_t hn = get_u32le(b + 8);
    if (hn > len - 12)
        return moe_set_error(MOE_ECORRUPT, "%s: truncated: header of %zu bytes, file has %zu", path,
                             hn, len - 12);
    Moe__TraceHeader *h = moe__trace_header__unpack(NULL, hn, b + 12);
    if (!h) return moe_set_error(MOE_ECORRUPT, "%s: the trace header does not parse", path);
    moe_status st = trace_check_header(path, h);
    const size_t rb = (size_t)h->record_bytes, have = len - 12 - hn;
    if (!st && (uint64_t)h->n_records > have / rb + 1) // before multiplying: no overflow
        st = moe_set_error(MOE_ECORRUPT,
                           "%s: truncated: %lld records of %zu bytes declared, %zu bytes present",
                           path, (long long)h->n_records, rb, have);
    if (!st && have < (size_t)h->n_records * rb)
        st = moe_set_error(MOE_ECORRUPT,
                           "%s: truncated: %lld records of %zu bytes declared, %zu bytes "
                           "present (%zu whole records)",
                           path, (long long)h->n_records, rb, have, have / rb);
    if (!st && have > (size_t)h->n_records * rb)
        st = moe_set_error(MOE_ECORRUPT,
                           "%s: record count mismatch: header says %lld records, the file holds "
                           "%zu bytes of records (%.2f records)",
                           path, (long long)h->n_records, have, (double)have / (double)rb);
    if (st) {
        protobuf_c_message_free_unpacked(&h->base, NULL);
        return st;
    }
    moe_trace *t = moe_trace_alloc(h);
    const int words = moe_trace_record_words(t->slots);
    uint32_t *w = moe_xcalloc((size_t)words, sizeof *w);
    const unsigned char *p = b + 12 + hn;
    for (int64_t i = 0; i < t->n; i++, p += rb) {
        for (int k = 0; k < words; k++) w[k] = get_u32le(p + 4 * k);
        moe_trace_unpack_record(t, i, w);
    }
    free(w);
    if ((st = trace_check_records(path, t))) {
        moe_trace_free(t);
        return st;
    }
    *out = t;
    return MOE_OK;
}

moe_status moe_trace_read(const char *path, moe_trace **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    moe_status st = moe_read_file(path, 0, &text, &len);
    if (st) return st;
    st = trace_decode(path, (const unsigned char *)text, len, out);
    free(text);
    return st;
}
