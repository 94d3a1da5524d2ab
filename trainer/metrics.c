// metrics.c: rank 0's metrics.jsonl — an append-only log that survives a transient write failure
// (a pending buffer sized at open, retried every step), the resume trim (back to the last
// complete record at or before the checkpoint, atomically) and the fresh-run check.
// Trade-off: write(2) on a raw descriptor instead of stdio, so a partial write is known to the
// byte and the next write completes the same line; the buffer is bounded, so a disk that stays
// full loses the newest records (counted and reported) rather than growing memory.
#include "config.h"
#include "train-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct moe_metrics_log {
    char path[MOE_PATH_MAX];
    int fd;
    char *buf; // (cap) pending bytes [off, len): queued lines not yet on disk
    size_t cap, off, len;
    int failing;    // the last write attempt failed (reported once per episode)
    int overflowed; // records are being dropped until writing works again
    // the step writing began to fail; the first and last dropped step and how many were dropped
    int64_t fail_step, drop_first, drop_last, dropped;
    int err;                // errno of the last failure
    int64_t hook_a, hook_b; // MOE_TRAIN_TEST_METRICS_FAIL: fail while queuing steps [a, b)
    int hook_half_done;
};

moe_status moe_metrics_open(const char *path, int fresh, size_t line_estimate,
                            moe_metrics_log **out) {
    *out = NULL;
    moe_metrics_log *l = moe_xcalloc(1, sizeof *l);
    snprintf(l->path, sizeof l->path, "%s", path);
    l->hook_a = l->hook_b = -1;
    const char *hook = getenv("MOE_TRAIN_TEST_METRICS_FAIL"); // testing: "A:B[:BYTES]"
    long long a = -1, b = -1, bytes = 0;
    if (hook && sscanf(hook, "%lld:%lld:%lld", &a, &b, &bytes) >= 2) l->hook_a = a, l->hook_b = b;
    l->cap = line_estimate * 1024 > ((size_t)1 << 20) ? line_estimate * 1024 : (size_t)1 << 20;
    if (bytes > 0) l->cap = (size_t)bytes;
    l->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | (fresh ? O_TRUNC : 0), 0644);
    if (l->fd < 0) {
        moe_status st =
            moe_set_error(MOE_EIO, "%s: cannot open for writing (%s)", path, strerror(errno));
        free(l);
        return st;
    }
    l->buf = moe_xcalloc(l->cap, 1);
    *out = l;
    return MOE_OK;
}

// write(2), or the test hook's failure: half of the bytes once, then ENOSPC.
static ssize_t moe_metrics_write(moe_metrics_log *l, const char *p, size_t n, int64_t step) {
    if (step >= l->hook_a && step < l->hook_b) {
        if (!l->hook_half_done && n / 2 > 0) {
            l->hook_half_done = 1;
            return write(l->fd, p, n / 2);
        }
        errno = ENOSPC;
        return -1;
    }
    return write(l->fd, p, n);
}

static void moe_metrics_report_drops(moe_metrics_log *l) {
    if (!l->dropped) return;
    fprintf(stderr,
            "[rank 0] moe train: warning: %s: %lld records (steps %lld-%lld) were dropped: the "
            "%zu-byte buffer for records not yet written was full\n",
            l->path, (long long)l->dropped, (long long)l->drop_first, (long long)l->drop_last,
            l->cap);
    l->dropped = 0, l->overflowed = 0;
}

// Writes what is pending. Returns 0 when nothing is left pending.
static int moe_metrics_flush(moe_metrics_log *l, int64_t step) {
    while (l->off < l->len) {
        ssize_t w = moe_metrics_write(l, l->buf + l->off, l->len - l->off, step);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            l->err = w < 0 ? errno : EIO;
            if (!l->failing)
                fprintf(stderr,
                        "[rank 0] moe train: warning: writing %s failed at step %lld (%s); "
                        "training goes on, the records are kept in memory (up to %zu bytes) and "
                        "written when writing works again\n",
                        l->path, (long long)step, strerror(l->err), l->cap);
            if (!l->failing) l->fail_step = step;
            l->failing = 1;
            return -1;
        }
        l->off += (size_t)w;
    }
    if (l->failing) {
        fprintf(stderr,
                "[rank 0] moe train: %s is written again at step %lld (it failed from step "
                "%lld on); the records kept meanwhile are written\n",
                l->path, (long long)step, (long long)l->fail_step);
        l->failing = 0;
        moe_metrics_report_drops(l);
    }
    l->off = l->len = 0;
    return 0;
}

void moe_metrics_append(moe_metrics_log *l, const char *line, size_t n, int64_t step) {
    if (l->off > 0) { // keep the pending bytes at the front: room for the new line
        memmove(l->buf, l->buf + l->off, l->len - l->off);
        l->len -= l->off, l->off = 0;
    }
    if (l->overflowed || l->len + n + 1 > l->cap) moe_metrics_flush(l, step); // make room
    if (l->overflowed || l->len + n + 1 > l->cap) { // dropped; later records too until written
        if (!l->dropped) l->drop_first = step;
        l->drop_last = step, l->dropped++, l->overflowed = 1;
    } else {
        memcpy(l->buf + l->len, line, n);
        l->buf[l->len + n] = '\n';
        l->len += n + 1;
    }
    moe_metrics_flush(l, step);
}

void moe_metrics_close(moe_metrics_log *l) {
    if (!l) return;
    if (l->len > l->off && moe_metrics_flush(l, -1) != 0) {
        int64_t lines = 0;
        for (size_t i = l->off; i < l->len; i++) lines += l->buf[i] == '\n';
        fprintf(stderr,
                "[rank 0] moe train: warning: %s: %lld records could not be written before the "
                "run ended (%s); the file ends at an earlier step\n",
                l->path, (long long)lines, strerror(l->err));
    }
    moe_metrics_report_drops(l);
    close(l->fd);
    free(l->buf);
    free(l);
}

// ---------------------------------------------------------------- resume and fresh runs

static int moe_fsync_dir_of(const char *path) {
    char dir[MOE_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (!sl)
        snprintf(dir, sizeof dir, ".");
    else
        sl[sl == dir ? 1 : 0] = 0; // "/f" → "/", "a/b/f" → "a/b"
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

moe_status moe_metrics_trim(const char *path, int64_t step, FILE *log) {
    FILE *f = fopen(path, "r");
    if (!f) return MOE_OK; // nothing recorded yet
    char tmp[MOE_PATH_MAX];
    moe_status st = moe_path_fmt(tmp, "metrics", "%s.tmp", path);
    FILE *o = st ? NULL : fopen(tmp, "w");
    if (!o) {
        fclose(f);
        return st ? st
                  : moe_set_error(MOE_EIO, "%s: cannot write (%s); resuming needs it to trim %s",
                                  tmp, strerror(errno), path);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int64_t kept = 0, later = 0, broken = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        ProtobufCMessage *m = NULL;
        int ok = line[n - 1] == '\n' &&
                 moe_json_parse_message(path, line, (size_t)n, &moe__metrics_record__descriptor,
                                        &m) == MOE_OK;
        const Moe__MetricsRecord *r = (const Moe__MetricsRecord *)m;
        if (ok && r->has_step && r->step <= step) {
            fputs(line, o);
            kept++;
        } else if (ok) {
            later++;
        } else {
            broken++;
        }
        if (m) protobuf_c_message_free_unpacked(m, NULL);
    }
    moe_clear_error();
    free(line);
    const int rerr = ferror(f);
    fclose(f);
    int werr = rerr || fflush(o) != 0 || fsync(fileno(o)) != 0;
    werr |= fclose(o) != 0;
    if (!werr && !later && !broken) { // nothing to drop: the file stays as it is
        unlink(tmp);
        return MOE_OK;
    }
    if (werr || rename(tmp, path) != 0 || moe_fsync_dir_of(path) != 0) {
        st = moe_set_error(MOE_EIO,
                           "%s: cannot trim it to the checkpoint's step %lld (%s); it is left "
                           "as it was: free space and resume again",
                           path, (long long)step, strerror(errno));
        unlink(tmp);
        return st;
    }
    if (log)
        fprintf(log,
                "%s: kept %lld records up to step %lld; dropped %lld of later steps and %lld "
                "incomplete line(s)\n",
                path, (long long)kept, (long long)step, (long long)later, (long long)broken);
    return MOE_OK;
}

moe_status moe_metrics_check_fresh(const char *dir) {
    char p[MOE_PATH_MAX];
    moe_status st = moe_path_fmt(p, "out_dir", "%s/metrics.jsonl", dir);
    if (st) return st;
    struct stat sb;
    if (stat(p, &sb) != 0 || sb.st_size == 0) return MOE_OK;
    return moe_set_error(MOE_EUSAGE,
                         "%s already holds %lld bytes of metrics from an earlier run (and "
                         "out_dir has no checkpoint); a fresh run would overwrite them: set "
                         "out_dir to another directory, or remove the file, or continue with "
                         "--resume latest (which keeps the records up to the checkpoint it "
                         "resumes, none without one)",
                         p, (long long)sb.st_size);
}
