// test-util.h: the plumbing several test programs share, header-only (everything static): the
// CHECK / OK macros with the program's failure counter and summary, a scratch directory, seeded
// splitmix64 numbers and a relative max-error comparison of float tensors. Each test stays one
// readable file; what it checks stays in it. The allocation counter of the no-allocation tests
// is apart (test-noalloc.h/.c).
#ifndef MOE_TEST_UTIL_H
#define MOE_TEST_UTIL_H

#include "moe-common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

// Failed checks of this program (main turns them into the exit code), and in MPI tests the world
// rank that prefixes every message: main sets it once known (-1: not an MPI test, or not yet).
static int g_fail __attribute__((unused));
static int g_rank __attribute__((unused)) = -1;

// "[rank r] file:line: check failed: cond: message" on stderr for the first 20 failures of the
// program (later ones are only counted), g_fail++.
static inline void __attribute__((format(printf, 4, 5)))
test_check_failed(const char *file, int line, const char *cond, const char *fmt, ...) {
    if (g_fail++ >= 20) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_rank >= 0) fprintf(stderr, "[rank %d] ", g_rank);
    fprintf(stderr, "%s:%d: check failed: %s: %s\n", file, line, cond, msg);
}

// CHECK(cond, fmt, ...): a failed condition is reported (above) and counted; the test goes on.
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) test_check_failed(__FILE__, __LINE__, #cond, __VA_ARGS__);                    \
    } while (0)

// OK(call): a moe_status call that must succeed (setup, collectives); else the call and
// moe_last_error() are printed and every rank is aborted (MPI tests: needs comm.h).
#define OK(call)                                                                                   \
    do {                                                                                           \
        moe_status st_ = (call);                                                                   \
        if (st_ != MOE_OK) {                                                                       \
            if (g_rank >= 0) fprintf(stderr, "[rank %d] ", g_rank);                                \
            fprintf(stderr, "%s failed: %s\n", #call, moe_last_error());                           \
            moe_comm_abort(1);                                                                     \
        }                                                                                          \
    } while (0)

// The end of a single-process test's main: "<name>: all checks passed" on stdout, or
// "<name>: N check(s) failed" on stderr; returns the exit code (0 / 1).
static inline int test_summary(const char *name) {
    if (g_fail) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, g_fail);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

// A fresh directory "/tmp/<prefix>-XXXXXX" written into dir (n bytes); aborts if it cannot be made.
static inline void test_tmpdir(char *dir, size_t n, const char *prefix) {
    snprintf(dir, n, "/tmp/%s-XXXXXX", prefix);
    MOE_ASSERT(mkdtemp(dir));
}

// rm -rf dir (a note on stderr if that fails; not a failed check).
static inline void test_rmtree(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

// splitmix64: the next number of the sequence seeded by *s.
static inline uint64_t test_rng(uint64_t *s) { return moe_splitmix64_next(s); }

// Uniform in [0, 1) with 53 random bits.
static inline double test_urand(uint64_t *s) {
    return (double)(test_rng(s) >> 11) / 9007199254740992.0;
}

// Uniform in [lo, hi).
static inline double test_uniform(uint64_t *s, double lo, double hi) {
    return lo + (hi - lo) * test_urand(s);
}

// Relative max error: max_i |got_i·scale_got − ref_i| / max(max_i |ref_i|, 1e-3) <= tol, else
// print the worst element (expected vs got, the first NaN if any) and return 1.
static inline int test_close(const char *what, const char *tensor, const float *got,
                             const float *ref, int64_t n, double scale_got, double tol) {
    double mx = 0, worst = 0;
    int64_t wi = 0;
    for (int64_t i = 0; i < n; i++) mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
    double sc = mx > 1e-3 ? mx : 1e-3;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(got[i] * scale_got - ref[i]) / sc;
        if (e > worst || e != e) worst = e, wi = i;
        if (e != e) break;
    }
    if (worst <= tol) return 0;
    fprintf(stderr, "FAIL %s: %s[%lld] expected %.9g got %.9g (max|ref| %.3g, error %.3g > %.1g)\n",
            what, tensor, (long long)wi, ref[wi], got[wi] * scale_got, mx, worst, tol);
    return 1;
}

#endif
