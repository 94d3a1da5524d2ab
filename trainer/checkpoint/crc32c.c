// crc32c.c: CRC32C (Castagnoli), the checksum of every checkpoint file. A byte-table reference and
// an SSE4.2 path (crc32 instruction, 8 bytes at a time) picked at run time; both give the same value.
#include "checkpoint.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
#define MOE_CRC32C_HW 1
#endif

static uint32_t moe_crc32c_table[256];
static pthread_once_t moe_crc32c_once = PTHREAD_ONCE_INIT;
static int moe_crc32c_has_hw;

static void moe_crc32c_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u))); // reflected poly
        moe_crc32c_table[i] = c;
    }
#ifdef MOE_CRC32C_HW
    __builtin_cpu_init();
    moe_crc32c_has_hw = __builtin_cpu_supports("sse4.2");
#endif
}

uint32_t moe_crc32c_sw(uint32_t crc, const void *buf, size_t n) {
    pthread_once(&moe_crc32c_once, moe_crc32c_init);
    const uint8_t *p = buf;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = (crc >> 8) ^ moe_crc32c_table[(crc ^ p[i]) & 0xFFu];
    return ~crc;
}

#ifdef MOE_CRC32C_HW
__attribute__((target("sse4.2"))) static uint32_t moe_crc32c_hw(uint32_t crc, const uint8_t *p,
                                                                size_t n) {
    uint64_t c = ~crc;
    for (; n && ((uintptr_t)p & 7u); n--) c = _mm_crc32_u8((uint32_t)c, *p++);
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
    }
    for (; n; n--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

uint32_t moe_crc32c(uint32_t crc, const void *buf, size_t n) {
    pthread_once(&moe_crc32c_once, moe_crc32c_init);
#ifdef MOE_CRC32C_HW
    if (moe_crc32c_has_hw) return moe_crc32c_hw(crc, buf, n);
#endif
    return moe_crc32c_sw(crc, buf, n);
}
