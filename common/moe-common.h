// moe-common.h: what every module shares — the status codes, the last-error message, always-on
// assertions and checked allocation. Deliberately tiny: it includes nothing from any module.
//
// Dimension letters used across the project (every pointer comment uses them):
//   T tokens, D model dim, F expert hidden, E experts, K top-k, L layers, V vocab, S sequence,
//   H heads, Hkv kv heads, Dh head dim, W world size, EP expert-parallel size.
#ifndef MOE_COMMON_H
#define MOE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// Status of anything that can fail for reasons outside the program (files, configs, MPI, input).
// 0 is success; errors are negative. moe_status_str() names them; moe_last_error() holds the
// message a user should see (file, field, numbers, what to do), set by the function that failed.
typedef int moe_status;
enum {
    MOE_OK = 0,
    MOE_EINVAL = -1,   // bad config, bad argument, bad input data
    MOE_ENOMEM = -2,   // allocation failed
    MOE_EIO = -3,      // a file could not be read or written
    MOE_ECORRUPT = -4, // a file is there but its content is wrong (CRC, truncated, format)
    MOE_EMPI = -5,     // an MPI call failed
    MOE_EUSAGE = -6,   // bad command line
    MOE_ELAYOUT = -7,  // a parallel layout that cannot be built (EP vs world vs experts)
    MOE_ENONFINITE = -8, // NaN/Inf where a finite value was required
    MOE_EINTR = -9,    // stopped by a signal (preemption)
};

const char *moe_status_str(moe_status s);

// The message of the last error on this thread (empty string if none). Setting returns `s` so a
// failing path can read: return moe_set_error(MOE_EINVAL, "…%d…", x);
moe_status moe_set_error(moe_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *moe_last_error(void);
void moe_clear_error(void);

// Programmer errors: always on, print file:line and abort.
#define MOE_ASSERT(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

#define MOE_ASSERT_EQ(a, b)                                                                \
    do {                                                                                   \
        long long moe_a_ = (long long)(a), moe_b_ = (long long)(b);                        \
        if (moe_a_ != moe_b_) {                                                            \
            fprintf(stderr, "%s:%d: assertion failed: %s == %s (%lld vs %lld)\n", __FILE__, \
                    __LINE__, #a, #b, moe_a_, moe_b_);                                     \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

// Allocation that aborts with a message: for setup code sized from a validated config, where
// running out of memory is not recoverable anyway. Returns zeroed memory; n*size checked.
void *moe_xcalloc(size_t n, size_t size);
// 64-byte aligned, zeroed, free with free(). Aborts on overflow or out of memory.
void *moe_xalloc_aligned(size_t bytes);

// Overflow-checked product for sizes a config sets: nonzero on overflow, else *out = a*b.
int moe_mul_overflows_i64(int64_t a, int64_t b, int64_t *out);

// Seconds on the monotonic clock (phase timings and benchmarks: differences only).
double moe_clock_seconds(void);

#endif
