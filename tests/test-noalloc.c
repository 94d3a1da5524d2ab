// test-noalloc.c: the allocator interposition of test-noalloc.h. Trade-off: glibc-only (__libc_*
// entry points), which is what the development machine and CI run; free() is not counted.
#include "test-noalloc.h"

#include <stddef.h>

volatile int test_counting;
volatile long test_allocs;

#ifndef MOE_NOALLOC_SKIP
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

void *malloc(size_t n) {
    if (test_counting) test_allocs++;
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t s) {
    if (test_counting) test_allocs++;
    return __libc_calloc(n, s);
}
void *realloc(void *p, size_t n) {
    if (test_counting) test_allocs++;
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t a, size_t n) {
    if (test_counting) test_allocs++;
    return __libc_memalign(a, n);
}
int posix_memalign(void **out, size_t a, size_t n) {
    if (test_counting) test_allocs++;
    *out = __libc_memalign(a, n);
    return *out ? 0 : 12;
}
#endif
