// data.c: token data — memory-mapped text bytes or llm.c uint16 shards, validated once at open
// (header, token ids), split train/validation, and batches whose sequence starts are a hash of
// (seed, step, i): sampling with replacement, but layout-invariant and resumable from the step alone.
#include "data.h"
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *path;
    void *map;
    size_t map_bytes;
    const void *tokens; // uint8_t (text) or uint16_t (u16) array
    int64_t n;          // tokens in the file
} moe_data_file;

struct moe_data {
    moe_data_params p;
    int u16;
    moe_data_file train_file, val_file; // val_file.map == NULL when the split is a tail
    const void *train_base, *val_base;
    int64_t train_n, val_n;
};

static inline int32_t moe_data_tok(const void *base, int u16, int64_t i) {
    return u16 ? (int32_t)((const uint16_t *)base)[i] : (int32_t)((const uint8_t *)base)[i];
}

// A mapped file that shrinks under the run (truncated, rewritten in place) turns the next read of
// a vanished page into SIGBUS. The handler names the file and exits 3 (bad data) instead of a
// crash; a SIGBUS outside every data mapping goes to the previous handler. The table is the one
// global state of this module: a signal handler cannot be handed a context.
#define MOE_DATA_MAX_MAPS 8
static struct {
    const char *volatile base;
    size_t bytes;
    char msg[640];
} moe_data_maps[MOE_DATA_MAX_MAPS];
static struct sigaction moe_data_prev_bus;
static int moe_data_bus_installed;

static void moe_data_on_sigbus(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    const char *a = si ? (const char *)si->si_addr : NULL;
    for (int i = 0; i < MOE_DATA_MAX_MAPS; i++) {
        const char *b = moe_data_maps[i].base;
        if (b && a >= b && a < b + moe_data_maps[i].bytes) {
            ssize_t w = write(STDERR_FILENO, moe_data_maps[i].msg, strlen(moe_data_maps[i].msg));
            (void)w;
            _exit(3); // MOE_EXIT_DATA
        }
    }
    // Not ours: back to the previous action, then deliver again (a raised SIGBUS at once on
    // return, a fault also by repeating).
    sigaction(sig, &moe_data_prev_bus, NULL);
    raise(sig);
}

static void moe_data_watch(const char *path, const void *base, size_t bytes) {
    if (!moe_data_bus_installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = moe_data_on_sigbus;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, &moe_data_prev_bus) == 0) moe_data_bus_installed = 1;
    }
    for (int i = 0; i < MOE_DATA_MAX_MAPS; i++)
        if (!moe_data_maps[i].base) {
            snprintf(
                moe_data_maps[i].msg, sizeof moe_data_maps[i].msg,
                "moe: data file %s shrank while the run was reading it (truncated or rewritten "
                "in place; it had %zu bytes): restore it and run again with --resume latest "
                "(exit 3)\n",
                path, bytes);
            moe_data_maps[i].bytes = bytes;
            moe_data_maps[i].base = base;
            return;
        }
}

static void moe_data_unwatch(const void *base) {
    for (int i = 0; i < MOE_DATA_MAX_MAPS; i++)
        if (moe_data_maps[i].base == base) moe_data_maps[i].base = NULL;
}

static void moe_data_file_close(moe_data_file *f) {
    if (f->map) moe_data_unwatch(f->map);
    if (f->map) munmap(f->map, f->map_bytes);
    free(f->path);
    memset(f, 0, sizeof *f);
}

// What a non-regular file is, for the message.
static const char *moe_data_kind(mode_t m) {
    return S_ISDIR(m)    ? "a directory"
           : S_ISFIFO(m) ? "a FIFO (named pipe)"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISSOCK(m) ? "a socket"
                         : "not a regular file";
}

// Maps `path` (the value of config field `field`, named in messages), checks the u16 header and
// every token id against vocab. Only regular files: a FIFO or a device would block or never end,
// so the file is opened non-blocking and its type checked before anything is read.
static moe_status moe_data_file_open(const char *path, const char *field, int u16, int64_t vocab,
                                     moe_data_file *f) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return moe_set_error(MOE_EIO, "data file %s: cannot open: %s (set %s to a readable file)",
                             path, strerror(errno), field);
    struct stat sb;
    const int fs = fstat(fd, &sb);
    if (fs != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return moe_set_error(MOE_EIO,
                             "data file %s (%s): %s, not a regular file: set %s to a token or "
                             "text file (FIFOs, devices and directories cannot be read by offset)",
                             path, field, fs == 0 ? moe_data_kind(sb.st_mode) : "cannot stat",
                             field);
    }
    f->path = strdup(path);
    MOE_ASSERT(f->path);
    f->map_bytes = (size_t)sb.st_size;
    if (f->map_bytes > 0) {
        f->map = mmap(NULL, f->map_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            close(fd);
            moe_status st = moe_set_error(MOE_EIO, "data file %s: mmap of %zu bytes failed: %s",
                                          path, f->map_bytes, strerror(errno));
            moe_data_file_close(f);
            return st;
        }
        moe_data_watch(path, f->map, f->map_bytes);
    }
    close(fd);
    const int64_t hdr_bytes = MOE_DATA_U16_HEADER_INTS * 4;
    if (u16) {
        if ((int64_t)f->map_bytes < hdr_bytes) {
            moe_set_error(MOE_ECORRUPT,
                          "data file %s: %zu bytes, shorter than the %lld-byte header "
                          "of a u16_tokens shard (is data.format right?)",
                          path, f->map_bytes, (long long)hdr_bytes);
            goto fail;
        }
        int32_t h[3];
        memcpy(h, f->map, sizeof h);
        if (h[0] != MOE_DATA_U16_MAGIC) {
            moe_set_error(
                MOE_ECORRUPT,
                "data file %s: bad magic %d in the u16_tokens header, "
                "expected %d (an llm.c token shard; for a text file set data.format = text)",
                path, h[0], MOE_DATA_U16_MAGIC);
            goto fail;
        }
        if (h[1] != MOE_DATA_U16_VERSION) {
            moe_set_error(MOE_ECORRUPT,
                          "data file %s: header version %d, only version %d "
                          "(uint16 tokens) is supported",
                          path, h[1], MOE_DATA_U16_VERSION);
            goto fail;
        }
        int64_t expect = hdr_bytes + 2 * (int64_t)h[2];
        if (h[2] < 0 || expect != (int64_t)f->map_bytes) {
            moe_set_error(MOE_ECORRUPT,
                          "data file %s: header says %d tokens (%lld bytes with the "
                          "header) but the file has %zu bytes (truncated or not a u16 shard)",
                          path, h[2], (long long)expect, f->map_bytes);
            goto fail;
        }
        f->tokens = (const uint8_t *)f->map + hdr_bytes;
        f->n = h[2];
    } else {
        int32_t magic = 0;
        if (f->map_bytes >= MOE_DATA_U16_HEADER_INTS * 4) memcpy(&magic, f->map, sizeof magic);
        if (magic == MOE_DATA_U16_MAGIC) { // an llm.c shard read as text would train on its bytes
            moe_set_error(MOE_EINVAL,
                          "data file %s: starts with the llm.c token-shard magic %d but "
                          "data.format = text: set data.format = u16_tokens "
                          "(--set data.format=u16_tokens)",
                          path, MOE_DATA_U16_MAGIC);
            moe_data_file_close(f);
            return MOE_EINVAL;
        }
        f->tokens = f->map;
        f->n = (int64_t)f->map_bytes;
    }
    if (vocab < (u16 ? 65536 : 256)) {
        for (int64_t i = 0; i < f->n; i++) {
            int32_t t = moe_data_tok(f->tokens, u16, i);
            if (t >= vocab) {
                moe_set_error(
                    MOE_ECORRUPT,
                    "data file %s: token %lld (byte offset %lld) is %d, "
                    "not below model.vocab_size = %lld (raise vocab_size or fix the data)",
                    path, (long long)i, (long long)(i * (u16 ? 2 : 1) + (u16 ? hdr_bytes : 0)), t,
                    (long long)vocab);
                goto fail;
            }
        }
    }
    return MOE_OK;
fail:
    moe_data_file_close(f);
    return MOE_ECORRUPT; // every goto fail above set a MOE_ECORRUPT message
}

moe_status moe_data_open(const moe_data_params *p, moe_data **out) {
    *out = NULL;
    if (!p->path || !*p->path)
        return moe_set_error(
            MOE_EINVAL,
            "data.path is not set: give a text file or a u16 token "
            "shard, or build the default corpus first (moe_data_make_corpus, docs/data.md)");
    if (p->seq_len < 1 || p->vocab_size < 1)
        return moe_set_error(MOE_EINVAL, "data: seq_len = %d and vocab_size = %lld must be >= 1",
                             p->seq_len, (long long)p->vocab_size);
    if (!(p->val_fraction >= 0 && p->val_fraction < 1))
        return moe_set_error(MOE_EINVAL, "data.val_fraction = %g: must be in [0, 1)",
                             p->val_fraction);
    int u16 = p->format == MOE__DATA_CONFIG__FORMAT__u16_tokens;
    if (!u16 && p->format != MOE__DATA_CONFIG__FORMAT__text)
        return moe_set_error(MOE_EINVAL, "data.format = %d is not a known format", (int)p->format);
    moe_data *d = moe_xcalloc(1, sizeof *d);
    d->p = *p;
    d->p.path = d->p.val_path = NULL; // the copies below own the strings
    d->u16 = u16;
    moe_status st = moe_data_file_open(p->path, "data.path", u16, p->vocab_size, &d->train_file);
    if (st != MOE_OK) goto fail;
    const int64_t need = (int64_t)p->seq_len + 1;
    if (p->val_path && *p->val_path) {
        st = moe_data_file_open(p->val_path, "data.val_path", u16, p->vocab_size, &d->val_file);
        if (st != MOE_OK) goto fail;
        d->train_base = d->train_file.tokens;
        d->train_n = d->train_file.n;
        d->val_base = d->val_file.tokens;
        d->val_n = d->val_file.n;
        if (d->val_n < need) {
            st = moe_set_error(MOE_EINVAL,
                               "validation file %s has %lld tokens, fewer than one "
                               "sequence of train.seq_len + 1 = %lld tokens: use a longer file",
                               p->val_path, (long long)d->val_n, (long long)need);
            goto fail;
        }
    } else {
        int64_t n = d->train_file.n;
        int64_t nv = (int64_t)((double)n * p->val_fraction);
        d->train_base = d->train_file.tokens;
        d->train_n = n - nv;
        d->val_base = (const uint8_t *)d->train_file.tokens + (size_t)d->train_n * (u16 ? 2 : 1);
        d->val_n = nv;
        if (p->val_fraction > 0 && nv < need) {
            st = moe_set_error(MOE_EINVAL,
                               "data file %s: its validation tail (data.val_fraction = "
                               "%g of %lld tokens) has %lld tokens, fewer than one sequence of "
                               "train.seq_len + 1 = %lld: use a longer file, a larger val_fraction "
                               "or data.val_path",
                               p->path, p->val_fraction, (long long)n, (long long)nv,
                               (long long)need);
            goto fail;
        }
    }
    if (d->train_n < need) {
        st = moe_set_error(MOE_EINVAL,
                           "data file %s: its training split has %lld tokens, fewer "
                           "than one sequence of train.seq_len + 1 = %lld tokens: use a longer "
                           "file or a smaller seq_len",
                           p->path, (long long)d->train_n, (long long)need);
        goto fail;
    }
    *out = d;
    return MOE_OK;
fail:
    moe_data_free(d);
    return st;
}

moe_status moe_data_open_config(const Moe__Config *cfg, moe_data **out) {
    Moe__Config *def = NULL;
    if (!cfg->data || !cfg->model || !cfg->train) def = moe_config_new_default();
    const Moe__DataConfig *dc = cfg->data ? cfg->data : def->data;
    const Moe__ModelConfig *mc = cfg->model ? cfg->model : def->model;
    const Moe__TrainConfig *tc = cfg->train ? cfg->train : def->train;
    moe_data_params p = {
        .path = dc->path,
        .val_path = dc->val_path,
        .format = dc->format,
        .val_fraction = dc->val_fraction,
        .vocab_size = mc->vocab_size,
        .seq_len = tc->seq_len,
        .seed = tc->seed,
    };
    moe_status st = moe_data_open(&p, out);
    if (def) protobuf_c_message_free_unpacked(&def->base, NULL);
    return st;
}

void moe_data_free(moe_data *d) {
    if (!d) return;
    moe_data_file_close(&d->train_file);
    moe_data_file_close(&d->val_file);
    free(d);
}

int64_t moe_data_train_tokens(const moe_data *d) { return d->train_n; }
int64_t moe_data_val_tokens(const moe_data *d) { return d->val_n; }
int32_t moe_data_seq_len(const moe_data *d) { return d->p.seq_len; }

int64_t moe_data_train_start(const moe_data *d, int64_t step, int64_t i) {
    uint64_t h =
        moe_splitmix64(d->p.seed ^ moe_splitmix64((uint64_t)step ^ moe_splitmix64((uint64_t)i)));
    uint64_t n_starts = (uint64_t)(d->train_n - d->p.seq_len); // starts 0 .. train_n - S - 1
    return (int64_t)(((unsigned __int128)h * n_starts) >> 64);
}

static void moe_data_copy(const void *base, int u16, int64_t start, int64_t len, int32_t *dst) {
    for (int64_t t = 0; t < len; t++) dst[t] = moe_data_tok(base, u16, start + t);
}

void moe_data_train_batch(const moe_data *d, int64_t step, int64_t first_seq, int64_t n_seq,
                          int32_t *tokens) {
    const int64_t len = (int64_t)d->p.seq_len + 1;
    for (int64_t s = 0; s < n_seq; s++)
        moe_data_copy(d->train_base, d->u16, moe_data_train_start(d, step, first_seq + s), len,
                      tokens + s * len);
}

int64_t moe_data_val_windows(const moe_data *d) {
    return d->val_n > d->p.seq_len ? (d->val_n - 1) / d->p.seq_len : 0;
}

void moe_data_val_batch(const moe_data *d, int64_t batch, int64_t global_batch, int64_t first_seq,
                        int64_t n_seq, int32_t *tokens) {
    int64_t nw = moe_data_val_windows(d);
    MOE_ASSERT(nw > 0);
    const int64_t len = (int64_t)d->p.seq_len + 1;
    for (int64_t s = 0; s < n_seq; s++) {
        int64_t k = batch * global_batch + first_seq + s;
        moe_data_copy(d->val_base, d->u16, (k % nw) * d->p.seq_len, len, tokens + s * len);
    }
}

// Writes all of buf or fails.
static int moe_data_write_all(FILE *f, const void *buf, size_t n) {
    return fwrite(buf, 1, n, f) == n;
}

moe_status moe_data_write_u16(const char *path, const uint16_t *tokens, int64_t n) {
    if (n < 0 || n > INT32_MAX)
        return moe_set_error(MOE_EINVAL, "u16 shard %s: %lld tokens do not fit the int32 header",
                             path, (long long)n);
    FILE *f = fopen(path, "wb");
    if (!f) return moe_set_error(MOE_EIO, "cannot write %s: %s", path, strerror(errno));
    int32_t h[MOE_DATA_U16_HEADER_INTS] = {MOE_DATA_U16_MAGIC, MOE_DATA_U16_VERSION, (int32_t)n};
    int ok = moe_data_write_all(f, h, sizeof h) && moe_data_write_all(f, tokens, (size_t)n * 2);
    ok = (fclose(f) == 0) && ok;
    return ok ? MOE_OK : moe_set_error(MOE_EIO, "writing %s failed: %s", path, strerror(errno));
}

// ---------------------------------------------------------------- default corpus

static const char *const moe_corpus_license_dir = "/usr/share/common-licenses";
// Essential packages (present on every Debian system); Debian policy puts their copyright file here.
static const char *const moe_corpus_packages[] = {
    "base-files", "bash",        "coreutils", "dash", "debianutils", "diffutils",
    "dpkg",       "findutils",   "grep",      "gzip", "hostname",    "libc-bin",
    "login",      "ncurses-bin", "perl-base", "sed",  "tar",         "util-linux",
};

static int moe_corpus_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Appends "==> path <==\n" and the file; a missing file is skipped (returns 0), else 1; -1 on a
// write error.
static int moe_corpus_append(FILE *out, const char *path, int64_t *total) {
    struct stat sb;
    if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return 0;
    FILE *in = fopen(path, "rb");
    if (!in) return 0;
    int n = fprintf(out, "==> %s <==\n", path);
    if (n < 0) {
        fclose(in);
        return -1;
    }
    *total += n;
    char buf[65536];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, in)) > 0) {
        if (!moe_data_write_all(out, buf, r)) {
            fclose(in);
            return -1;
        }
        *total += (int64_t)r;
    }
    fclose(in);
    if (fputc('\n', out) == EOF) return -1;
    *total += 1;
    return 1;
}

moe_status moe_data_make_corpus(const char *out_path, int64_t *bytes) {
    size_t plen = strlen(out_path);
    char *tmp = moe_xcalloc(plen + 8, 1);
    snprintf(tmp, plen + 8, "%s.tmp", out_path);
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        moe_status st = moe_set_error(MOE_EIO, "cannot write %s: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    int64_t total = 0;
    int err = 0;
    char path[MOE_PATH_MAX];
    DIR *dir = opendir(moe_corpus_license_dir);
    if (dir) {
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            if (e->d_name[0] == '.') continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 32;
                names = realloc(names, cap * sizeof *names);
                MOE_ASSERT(names);
            }
            names[n] = strdup(e->d_name);
            MOE_ASSERT(names[n]);
            n++;
        }
        closedir(dir);
        if (n) qsort(names, n, sizeof *names, moe_corpus_cmp);
        for (size_t i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/%s", moe_corpus_license_dir, names[i]);
            if (!err && moe_corpus_append(out, path, &total) < 0) err = 1;
            free(names[i]);
        }
        free(names);
    }
    for (size_t i = 0; !err && i < sizeof moe_corpus_packages / sizeof *moe_corpus_packages; i++) {
        snprintf(path, sizeof path, "/usr/share/doc/%s/copyright", moe_corpus_packages[i]);
        if (moe_corpus_append(out, path, &total) < 0) err = 1;
    }
    err |= fflush(out) != 0 || fsync(fileno(out)) != 0;
    err |= fclose(out) != 0;
    moe_status st = MOE_OK;
    if (err) {
        st = moe_set_error(MOE_EIO, "writing %s failed: %s", tmp, strerror(errno));
    } else if (total < 65536) {
        st = moe_set_error(MOE_EIO,
                           "default corpus: only %lld bytes found under %s and "
                           "/usr/share/doc/*/copyright (need >= 65536): give data.path instead",
                           (long long)total, moe_corpus_license_dir);
    } else if (rename(tmp, out_path) != 0) {
        st = moe_set_error(MOE_EIO, "cannot rename %s to %s: %s", tmp, out_path, strerror(errno));
    }
    if (st != MOE_OK) unlink(tmp);
    free(tmp);
    if (bytes) *bytes = st == MOE_OK ? total : 0;
    return st;
}
