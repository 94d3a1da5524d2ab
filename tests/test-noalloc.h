// test-noalloc.h: counting the allocations a piece of code makes. A test program linking
// test-noalloc.c gets malloc, calloc, realloc, aligned_alloc and posix_memalign interposed
// (forwarding to glibc's __libc_* entry points); every call made while test_counting is set adds
// one to test_allocs. Under a sanitizer (it interposes the allocator itself) nothing is interposed
// and MOE_NOALLOC_SKIP is defined: the test should report itself skipped.
#ifndef MOE_TEST_NOALLOC_H
#define MOE_TEST_NOALLOC_H

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
#define MOE_NOALLOC_SKIP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MOE_NOALLOC_SKIP 1
#endif
#endif

extern volatile int test_counting; // set around the code under test
extern volatile long test_allocs;  // allocation calls while test_counting was set

#endif
