// bench-util.c: what the benchmarks share — the sgemm peak every GFLOP/s figure is printed next
// to, the whole-world EP communicator and the BLAS thread default.
#include "bench-impl.h"

#include <cblas.h>

void moe_bench_threads(void) {
    // One BLAS thread per rank unless the user chose otherwise.
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
}

moe_status moe_bench_comm_world_ep(int n_experts, moe_comm **out, int *W) {
    *out = NULL;
    moe_comm *c = NULL;
    moe_comm_params p0 = {1, 0, 0, 1}; // layout-free and quiet: only the world size
    moe_status st = moe_comm_create(&p0, &c);
    if (st) return st;
    *W = moe_comm_size(c, MOE_COMM_WORLD);
    moe_comm_free(c);
    moe_comm_params p = {*W, n_experts, 0, 0};
    return moe_comm_create(&p, out);
}

double moe_sgemm_peak(int reps) {
    const int n = 1024;
    float *a = moe_xalloc_aligned((size_t)n * n * sizeof(float));
    float *b = moe_xalloc_aligned((size_t)n * n * sizeof(float));
    float *c = moe_xalloc_aligned((size_t)n * n * sizeof(float));
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = (float)(i % 17) * 0.01f;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = moe_clock_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        double dt = moe_clock_seconds() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * (double)n * n / best / 1e9;
}
