// moe-common.h: what every module shares — the status codes, the last-error message, always-on
// assertions and checked allocation. Deliberately tiny: it includes nothing from any module.
//
// Dimension letters used across the project (every pointer comment uses them):
//   T tokens, D model dim, F expert hidden, E experts, K top-k, L layers, V vocab, S sequence,
//   H heads, Hkv kv heads, Dh head dim, W world size, EP expert-parallel size.
#ifndef MOE_COMMON_H
#define MOE_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// Exit codes of every moe command (documented in README and `moe --help`).
typedef enum {
    MOE_EXIT_OK = 0,
    MOE_EXIT_FAILURE = 1,   // a run failed (I/O, MPI, non-finite values beyond the limit)
    MOE_EXIT_USAGE = 2,     // bad command line, bad or invalid config
    MOE_EXIT_DATA = 3,      // bad data or checkpoint file (corrupt, truncated, wrong format)
    MOE_EXIT_TEMPFAIL = 75, // preempted: checkpoint written, run again to resume (EX_TEMPFAIL)
} moe_exit;

// Status of anything that can fail for reasons outside the program (files, configs, MPI, input).
// 0 is success; errors are negative. moe_status_str() names them; moe_last_error() holds the
// message a user should see (file, field, numbers, what to do), set by the function that failed.
// One row per status: X(name, value, string, exit code). The enum, moe_status_str and
// moe_exit_code are generated from it (libuv's UV_ERRNO_MAP), so a new status is one new row.
#define MOE_STATUS_MAP(X)                                                                          \
    X(OK, 0, "ok", MOE_EXIT_OK)                                                                    \
    X(EINVAL, -1, "invalid input", MOE_EXIT_USAGE)   /* bad config, argument, input data */        \
    X(ENOMEM, -2, "out of memory", MOE_EXIT_FAILURE) /* allocation failed */                       \
    X(EIO, -3, "i/o error", MOE_EXIT_FAILURE)        /* a file could not be read/written */        \
    X(ECORRUPT, -4, "corrupt file", MOE_EXIT_DATA)   /* content wrong: CRC, truncated */           \
    X(EMPI, -5, "MPI error", MOE_EXIT_FAILURE)       /* an MPI call failed */                      \
    X(EUSAGE, -6, "bad usage", MOE_EXIT_USAGE)       /* bad command line */                        \
    X(ELAYOUT, -7, "invalid parallel layout", MOE_EXIT_USAGE) /* EP vs world vs experts */         \
    X(ENONFINITE, -8, "non-finite value", MOE_EXIT_FAILURE)   /* NaN/Inf where finite needed */    \
    X(EINTR, -9, "interrupted", MOE_EXIT_TEMPFAIL)            /* stopped by a signal (preemption) */

typedef enum {
#define MOE_STATUS_ENUM_(name, value, str, exit) MOE_##name = value,
    MOE_STATUS_MAP(MOE_STATUS_ENUM_)
#undef MOE_STATUS_ENUM_
} moe_status;

// The string of a status ("unknown error" for a value outside the table).
const char *moe_status_str(moe_status s);
// The exit code of a status (MOE_EXIT_FAILURE for a value outside the table).
moe_exit moe_exit_code(moe_status s);

// The message of the last error on this thread (empty string if none). Setting returns `s` so a
// failing path can read: return moe_set_error(MOE_EINVAL, "…%d…", x);
// The message holds at most MOE_ERROR_MAX - 1 bytes; a longer one is cut at a line boundary as
// moe_text_clip does. moe_last_error() may be an argument (to add context to the last error).
#define MOE_ERROR_MAX 4096
moe_status moe_set_error(moe_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *moe_last_error(void);
void moe_clear_error(void);

// Programmer errors: always on, print file:line and abort.
#define MOE_ASSERT(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MOE_ASSERT_EQ(a, b)                                                                        \
    do {                                                                                           \
        long long moe_a_ = (long long)(a), moe_b_ = (long long)(b);                                \
        if (moe_a_ != moe_b_) {                                                                    \
            fprintf(stderr, "%s:%d: assertion failed: %s == %s (%lld vs %lld)\n", __FILE__,        \
                    __LINE__, #a, #b, moe_a_, moe_b_);                                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

// Allocation that aborts with a message: for setup code sized from a validated config, where
// running out of memory is not recoverable anyway. Returns zeroed memory; n*size checked.
void *moe_xcalloc(size_t n, size_t size);
// strdup that aborts on out of memory (setup code, as moe_xcalloc).
char *moe_xstrdup(const char *s);
// 64-byte aligned, zeroed, free with free(). Aborts on overflow or out of memory.
void *moe_xalloc_aligned(size_t bytes);

// Overflow-checked product for sizes a config sets: nonzero on overflow, else *out = a*b.
int moe_mul_overflows_i64(int64_t a, int64_t b, int64_t *out);

// Seconds on the monotonic clock (phase timings and benchmarks: differences only).
double moe_clock_seconds(void);

// splitmix64 (Steele, Lea & Flood 2014): moe_splitmix64(x) is a well-mixed 64-bit hash of x (the
// generator's output for state x + golden ratio); moe_splitmix64_next steps a sequence seeded by
// *state. Every counter-based draw of moe (init, jitter, data order, test inputs) uses these.
static inline uint64_t moe_splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
static inline uint64_t moe_splitmix64_next(uint64_t *state) {
    const uint64_t x = *state;
    *state += 0x9e3779b97f4a7c15ull;
    return moe_splitmix64(x);
}

// ---------------------------------------------------------------- lists (common/list.c)
// A list of items (field names, problems, values) in a fixed-size buffer that never ends inside
// an item: once an item does not fit, it and every later one are left out and moe_list_end
// writes "<sep>... and N more" (room for it is kept back). The buffer is always a string.
typedef struct {
    char *buf;
    size_t cap, len, kept_len, reserve; // kept_len: the items that leave room for the tail
    const char *sep;                    // between items
    int n, kept_n, more;                // items written, items within kept_len, left out
} moe_list;
// Starts a list in buf (cap bytes) after the text buf holds already (a header; "" for none).
void moe_list_start(moe_list *l, char *buf, size_t cap, const char *sep);
// Appends one item (printf-style), preceded by sep unless it is the first.
void moe_list_add(moe_list *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void moe_list_vadd(moe_list *l, const char *fmt, va_list ap); // moe_list_add with a va_list
// Counts n more items as left out without offering them (e.g. the tail of an earlier list).
void moe_list_skip(moe_list *l, int n);
// Writes the tail if items were left out; returns how many (0: the whole list is there).
int moe_list_end(moe_list *l);
// N if line is exactly a list's tail "... and N more", else -1.
int moe_list_more(const char *line);
// Copies text into out (cap bytes); too long: whole lines, then "... and N more" (N adds up).
size_t moe_text_clip(char *out, size_t cap, const char *text);

// ---------------------------------------------------------------- files (common/files.c)
// The one path-length limit: every path buffer of moe is MOE_PATH_MAX bytes, and a path that
// would not fit is refused by the code that builds it (never truncated silently).
#define MOE_PATH_MAX 4096
// The longest directory moe writes files under (out_dir, a checkpoint, sweep or report directory):
// the rest of MOE_PATH_MAX is room for the names moe appends (".../checkpoints/step_00000012/…").
#define MOE_DIR_MAX (MOE_PATH_MAX - 296)

// Formats a path into out (MOE_PATH_MAX bytes). A path that would not fit is refused, never cut:
// MOE_EINVAL with a message naming `what` (e.g. "out_dir", "--resume"), the length and the limit.
moe_status moe_path_fmt(char *out, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// MOE_EINVAL, naming `what`, if dir is longer than MOE_DIR_MAX (see above); else MOE_OK.
moe_status moe_dir_check(const char *what, const char *dir);

// mkdir -p with mode 0755: 0 ok (also when it exists), -1 with errno set (ENAMETOOLONG past
// MOE_PATH_MAX).
int moe_mkdir_p(const char *path);
// 1 if something exists at path (stat succeeds), else 0.
int moe_file_exists(const char *path);
// Reads the rest of stream f into a new NUL-terminated buffer (*text, free with free(); *len
// bytes without the NUL). max_bytes > 0: MOE_EINVAL past it. `name` names f in messages.
// MOE_EIO on a read error, MOE_ENOMEM; errno is kept for the caller.
moe_status moe_read_stream(FILE *f, const char *name, size_t max_bytes, char **text, size_t *len);
// Opens path and reads it whole as above. MOE_EIO when it cannot be opened (errno kept: ENOENT
// tells a missing file apart).
moe_status moe_read_file(const char *path, size_t max_bytes, char **text, size_t *len);

#endif
