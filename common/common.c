// common.c: status strings, the thread-local last-error message, checked allocation, the clock.
#include "moe-common.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

static _Thread_local char moe_errbuf[4096];

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

moe_status moe_set_error(moe_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(moe_errbuf, sizeof moe_errbuf, fmt, ap);
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
