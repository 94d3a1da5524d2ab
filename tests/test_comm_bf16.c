// test_comm_bf16.c: the bf16 payload conversion (comm.h) against hand-made bit patterns (ties to
// even, subnormals, zeros, NaN, Inf, the overflow threshold) and against a plain reference that
// picks the nearer of the two bf16 neighbours in double arithmetic, over random and tie-heavy
// fp32 patterns; widening is exact (every bf16 pattern survives a round trip).
#include "comm.h"
#include "test-util.h"

#include <math.h>
#include <string.h>

static float f_of(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t u_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

// Reference: NaN -> a quiet NaN with the sign; otherwise the nearer of the bf16 values just below
// and above |f| in magnitude (exact distances in double), ties to the even one; past the largest
// finite bf16 the value above is Inf, as IEEE round-to-nearest gives.
static uint16_t ref_bf16(float f) {
    uint32_t u = u_of(f);
    if (isnan(f)) return (uint16_t)((u >> 16) | 0x0040u);
    if (isinf(f)) return (uint16_t)(u >> 16);
    const uint32_t sign = u & 0x80000000u, mag = u & 0x7fffffffu;
    const uint32_t lo = mag & 0xffff0000u, hi = lo + 0x10000u; // hi may be the Inf pattern
    if (lo == mag) return (uint16_t)((sign | lo) >> 16);
    const double v = fabs((double)f), a = (double)f_of(lo);
    // The distance to hi: for hi = Inf use where the next bf16 would sit (2^128).
    const double b = hi == 0x7f800000u ? ldexp(1.0, 128) : (double)f_of(hi);
    uint32_t pick;
    if (v - a < b - v)
        pick = lo;
    else if (v - a > b - v)
        pick = hi;
    else
        pick = ((lo >> 16) & 1u) ? hi : lo; // tie: the even mantissa
    return (uint16_t)((sign | pick) >> 16);
}

int main(void) {
    int fails = 0;
    static const struct {
        uint32_t in;
        uint16_t want;
        const char *what;
    } cases[] = {
        {0x3f800000u, 0x3f80, "1.0 exact"},
        {0x3f808000u, 0x3f80, "1 + 2^-8: tie, down to even"},
        {0x3f818000u, 0x3f82, "tie above an odd mantissa: up to even"},
        {0x3f808001u, 0x3f81, "just above a tie: up"},
        {0x3f807fffu, 0x3f80, "just below a tie: down"},
        {0xbf808000u, 0xbf80, "-(1 + 2^-8): tie, to even, sign kept"},
        {0xbf818000u, 0xbf82, "negative tie above odd"},
        {0x3fffffffu, 0x4000, "carry into the exponent"},
        {0x00000000u, 0x0000, "+0"},
        {0x80000000u, 0x8000, "-0"},
        {0x00000001u, 0x0000, "smallest subnormal: to +0"},
        {0x80000001u, 0x8000, "negative smallest subnormal: to -0"},
        {0x00008000u, 0x0000, "subnormal tie, down to even (zero)"},
        {0x00018000u, 0x0002, "subnormal tie above odd"},
        {0x0000c000u, 0x0001, "subnormal above a tie"},
        {0x00010000u, 0x0001, "smallest bf16 subnormal exact"},
        {0x007fffffu, 0x0080, "largest subnormal: up to the smallest normal"},
        {0x7f7f0000u, 0x7f7f, "largest finite bf16 exact"},
        {0x7f7f7fffu, 0x7f7f, "below max + half ulp: stays finite"},
        {0x7f7f8000u, 0x7f80, "max + half ulp (tie, odd): overflows to Inf"},
        {0x7f7fffffu, 0x7f80, "largest finite fp32: overflows to Inf"},
        {0xff7fffffu, 0xff80, "-largest finite fp32: -Inf"},
        {0x7f800000u, 0x7f80, "+Inf"},
        {0xff800000u, 0xff80, "-Inf"},
        {0x7fc00000u, 0x7fc0, "quiet NaN"},
        {0xffc00000u, 0xffc0, "negative quiet NaN"},
        {0x7f800001u, 0x7fc0, "signalling NaN with a low payload: stays NaN (quiet)"},
        {0xff800001u, 0xffc0, "negative signalling NaN"},
        {0x7fffffffu, 0x7fff, "NaN with all payload bits: no carry into the sign"},
        {0x7f80ffffu, 0x7fc0, "NaN whose rounding would carry: still NaN"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = moe_comm_bf16_from_f32(f_of(cases[i].in)), ref = ref_bf16(f_of(cases[i].in));
        if (got != cases[i].want || ref != cases[i].want) {
            fprintf(stderr, "FAIL %s: 0x%08x expected 0x%04x got 0x%04x (reference 0x%04x)\n",
                    cases[i].what, cases[i].in, cases[i].want, got, ref);
            fails++;
        }
        const float r = moe_comm_round_bf16(f_of(cases[i].in));
        if (u_of(r) != (uint32_t)cases[i].want << 16) {
            fprintf(stderr, "FAIL round %s: expected 0x%08x got 0x%08x\n", cases[i].what,
                    (uint32_t)cases[i].want << 16, u_of(r));
            fails++;
        }
    }
    // Widening is exact; narrowing a widened value gives it back (NaN: stays NaN).
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float f = moe_comm_f32_from_bf16((uint16_t)h);
        if (u_of(f) != h << 16) {
            fprintf(stderr, "FAIL widen 0x%04x: got 0x%08x\n", h, u_of(f));
            fails++;
        }
        uint16_t back = moe_comm_bf16_from_f32(f);
        if (isnan(f) ? !isnan(moe_comm_f32_from_bf16(back)) : back != h) {
            fprintf(stderr, "FAIL round trip 0x%04x: got 0x%04x\n", h, back);
            fails++;
        }
    }
    // Against the reference: random patterns, and patterns at / next to the tie of every binade.
    uint64_t s = 42;
    int64_t n = 0;
    for (int i = 0; i < (1 << 22); i++) {
        uint32_t u = (uint32_t)(test_rng(&s) >> 32);
        if (i & 1) u = (u & 0xffff0000u) | (0x7ffeu + (u & 3u)); // 0x7ffe .. 0x8001
        uint16_t got = moe_comm_bf16_from_f32(f_of(u)), ref = ref_bf16(f_of(u));
        n++;
        if (got != ref && fails < 20) {
            fprintf(stderr, "FAIL 0x%08x (%.9g): expected 0x%04x got 0x%04x\n", u, f_of(u), ref,
                    got);
            fails++;
        }
    }
    printf("bf16 conversion: %zu hand cases, 65536 round trips, %lld reference patterns: %d "
           "failures\n",
           sizeof cases / sizeof cases[0], (long long)n, fails);
    return fails ? 1 : 0;
}
