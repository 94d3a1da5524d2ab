// common.c: status strings, the thread-local last-error message, checked allocation, the clock.
#include "moe-common.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

static _Thread_local char moe_errbuf[MOE_ERROR_MAX];

// Both switches are generated from MOE_STATUS_MAP and have no default: -Wswitch lists them when
// the enum changes. A value outside the table (a corrupt int sent between ranks) falls through.
const char *moe_status_str(moe_status s) {
    switch (s) {
#define MOE_STATUS_STR_(name, value, str, exit)                                                    \
    case MOE_##name: return str;
        MOE_STATUS_MAP(MOE_STATUS_STR_)
#undef MOE_STATUS_STR_
    }
    return "unknown error";
}

moe_exit moe_exit_code(moe_status s) {
    switch (s) {
#define MOE_STATUS_EXIT_(name, value, str, exit)                                                   \
    case MOE_##name: return exit;
        MOE_STATUS_MAP(MOE_STATUS_EXIT_)
#undef MOE_STATUS_EXIT_
    }
    return MOE_EXIT_FAILURE;
}

// Formatted whole first (the arguments may include moe_errbuf itself), then clipped into
// moe_errbuf at a line boundary: a long list of problems loses whole lines, never half a word.
moe_status moe_set_error(moe_status s, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    const int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (text) {
        vsnprintf(text, (size_t)n + 1, fmt, ap);
        moe_text_clip(moe_errbuf, sizeof moe_errbuf, text);
        free(text);
    } else { // out of memory: as much as fits
        char tmp[sizeof moe_errbuf];
        vsnprintf(tmp, sizeof tmp, fmt, ap);
        memcpy(moe_errbuf, tmp, strlen(tmp) + 1);
    }
    va_end(ap);
    return s;
}

const char *moe_last_error(void) { return moe_errbuf; }
void moe_clear_error(void) { moe_errbuf[0] = '\0'; }

void *moe_xcalloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) {
        fprintf(stderr, "moe: allocation of %zu x %zu bytes overflows\n", n, size);
        abort();
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "moe: out of memory allocating %zu bytes\n", n * size);
        abort();
    }
    return p;
}

char *moe_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = moe_xcalloc(n, 1);
    memcpy(d, s, n);
    return d;
}

void *moe_xalloc_aligned(size_t bytes) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) {
        fprintf(stderr, "moe: allocation of %zu bytes overflows\n", bytes);
        abort();
    }
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) {
        fprintf(stderr, "moe: out of memory allocating %zu bytes\n", bytes);
        abort();
    }
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

int moe_mul_overflows_i64(int64_t a, int64_t b, int64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}

double moe_clock_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
