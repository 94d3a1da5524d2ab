// nn-init.c: deterministic, layout-independent parameter initialisation. Each element's value is
// a pure function of (seed, tensor key, element index) — a counter-based hash (splitmix64) fed to
// Box–Muller — so any shard of any tensor is drawn identically at every world size and EP layout,
// at the price of two hashes and a log/sqrt/cos per element (setup only).
#include "nn.h"

#include <math.h>
#include <string.h>

uint64_t moe_nn_init_key(const char *name, int32_t layer, int32_t expert) {
    uint64_t h = 0xcbf29ce484222325ULL; // FNV-1a over the name, then the indices mixed in
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    h = moe_splitmix64(h ^ (uint64_t)(uint32_t)layer);
    return moe_splitmix64(h ^ ((uint64_t)(uint32_t)expert << 32));
}

void moe_nn_init_normal(float *w, int64_t n, double std, uint64_t seed, uint64_t key,
                        int64_t first) {
    const double two_pi = 6.283185307179586476925;
    const uint64_t base = moe_splitmix64(seed ^ moe_splitmix64(key));
    for (int64_t i = 0; i < n; i++) {
        const uint64_t idx = (uint64_t)(first + i);
        const uint64_t a = moe_splitmix64(base + 2 * idx), b = moe_splitmix64(base + 2 * idx + 1);
        const double u1 = ((double)(a >> 11) + 0.5) * (1.0 / 9007199254740992.0); // (0, 1)
        const double u2 = (double)(b >> 11) * (1.0 / 9007199254740992.0);         // [0, 1)
        w[i] = (float)(std * sqrt(-2.0 * log(u1)) * cos(two_pi * u2));
    }
}

void moe_nn_init_const(float *w, int64_t n, float value) {
    for (int64_t i = 0; i < n; i++) w[i] = value;
}
