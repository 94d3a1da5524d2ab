// test_layer_noalloc.c: the layer's forward and backward allocate nothing. The test interposes
// malloc/calloc/realloc/aligned_alloc/posix_memalign (test-noalloc.c, forwarding to glibc)
// and counts calls made while a step runs, after one warm-up step. Skipped under sanitizers,
// which interpose the allocator themselves.
#include "experts.h"
#include "test-noalloc.h"

#include <string.h>

int main(void) {
#ifdef MOE_NOALLOC_SKIP
    printf("skipped: built with a sanitizer\n");
    return 0;
#else
    int fails = 0;
    for (int variant = 0; variant < 3; variant++) {
        moe_layer_params p;
        memset(&p, 0, sizeof p);
        p.router.D = 16, p.router.E = 8, p.router.K = 2, p.router.renormalize = 1;
        p.router.routed_scaling = 1, p.router.aux_loss_coef = 0.01, p.router.z_loss_coef = 0.001;
        p.F = 32, p.act = variant == 1 ? MOE_ACT_SWIGLU : MOE_ACT_GELU, p.T_max = 256;
        if (variant == 1)
            p.router.capacity_factor = 1.0, p.n_shared = 1, p.Fs = 8, p.shared_gate = 1;
        if (variant == 2) p.router.strategy = MOE_ROUTE_EXPERT_CHOICE, p.router.jitter = 0.1;
        moe_layer *L;
        MOE_ASSERT(moe_layer_create(&p, &L) == MOE_OK);
        moe_layer_weights w, g;
        moe_layer_weights_alloc(&p, &w);
        moe_layer_weights_alloc(&p, &g);
        moe_layer_weights_init(&p, &w, 5);
        float *x = moe_xcalloc(256 * 16, sizeof(float)), *y = moe_xcalloc(256 * 16, sizeof(float));
        float *dx = moe_xcalloc(256 * 16, sizeof(float));
        for (int i = 0; i < 256 * 16; i++) x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
        moe_route_stats st;
        moe_route_opts opts = {1, 42, 0, NULL};
        moe_layer_forward(L, y, &st, x, 256, &w, NULL, &opts); // warm-up (BLAS buffers)
        moe_layer_backward(L, dx, &g, y, &w);
        test_allocs = 0;
        test_counting = 1;
        for (int it = 0; it < 2; it++) {
            moe_layer_forward(L, y, &st, x, 256 - 7 * it, &w, NULL, &opts);
            moe_layer_backward(L, dx, &g, y, &w);
        }
        test_counting = 0;
        if (test_allocs != 0) {
            fprintf(stderr,
                    "FAIL variant %d: forward/backward made %ld allocation(s), expected 0\n",
                    variant, test_allocs);
            fails++;
        } else {
            printf("variant %d: 0 allocations in 2 forward+backward steps\n", variant);
        }
        free(x);
        free(y);
        free(dx);
        moe_layer_weights_free(&w);
        moe_layer_weights_free(&g);
        moe_layer_free(L);
    }
    return fails ? 1 : 0;
#endif
}
