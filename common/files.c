// files.c: the file helpers every room shares — mkdir -p, existence, whole-file reads — so there
// is one path limit (MOE_PATH_MAX) and one way to read a file into memory.
#include "moe-common.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

int moe_mkdir_p(const char *path) {
    char tmp[MOE_PATH_MAX];
    if (!path || !path[0]) {
        errno = ENOENT;
        return -1;
    }
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

int moe_file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

moe_status moe_read_stream(FILE *f, const char *name, size_t max_bytes, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) return moe_set_error(MOE_ENOMEM, "%s: out of memory reading it", name);
    for (;;) {
        if (n + 1 >= cap) {
            if (max_bytes > 0 && cap >= max_bytes) {
                free(buf);
                return moe_set_error(MOE_EINVAL, "%s: larger than %zu MiB; is this the right file?",
                                     name, max_bytes >> 20);
            }
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                return moe_set_error(MOE_ENOMEM, "%s: out of memory reading it", name);
            }
            buf = p;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        int e = errno;
        free(buf);
        errno = e;
        return moe_set_error(MOE_EIO, "%s: read error: %s", name, strerror(e));
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return MOE_OK;
}

moe_status moe_read_file(const char *path, size_t max_bytes, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        moe_set_error(MOE_EIO, "%s: cannot open (%s)", path, strerror(e));
        errno = e;
        return MOE_EIO;
    }
    moe_status st = moe_read_stream(f, path, max_bytes, text, len);
    int e = errno;
    fclose(f);
    errno = e;
    return st;
}

moe_status moe_path_fmt(char *out, const char *what, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, MOE_PATH_MAX, fmt, ap);
    va_end(ap);
    if (n < 0) return moe_set_error(MOE_EINVAL, "%s: cannot format the path", what);
    if (n >= MOE_PATH_MAX)
        return moe_set_error(MOE_EINVAL,
                             "%s: the path %.60s... is %d characters long (at most %d); "
                             "choose a shorter path",
                             what, out, n, MOE_PATH_MAX - 1);
    return MOE_OK;
}

moe_status moe_dir_check(const char *what, const char *dir) {
    size_t n = strlen(dir);
    if (n > MOE_DIR_MAX)
        return moe_set_error(MOE_EINVAL,
                             "%s is %zu characters long (at most %d); choose a shorter "
                             "path",
                             what, n, MOE_DIR_MAX);
    return MOE_OK;
}
