/* GEMM throughput on the prefill shapes of the tinyllama benchmark model:
 * our AVX-512 kernel (kernels/f32gemm.h) on the pool vs OpenBLAS with the
 * same thread count, wall GFLOP/s and GFLOP per CPU-second (the machine is
 * shared, so the second figure is the steadier one). Best of 5 calls.
 * Both are set against the FMA peak measured in the same run (one thread,
 * 24 independent register-only FMA chains, no memory): "% peak" is the GEMM's
 * per-CPU-second rate over that peak, which stays meaningful when other jobs
 * slow the cores down (the peak drops with them). */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "core/clock.h"
#include "core/pool.h"
#include "kernels/cpu.h"
#include "kernels/f32gemm.h"
#include "kernels/sgemm.h"
#include "kernels/simd.h"
#include "testlib.h"

static double wall(void) { return clock_now(); }
static double cpu(void) { return clock_cpu_seconds(); }


/* FLOP per CPU-second of n steps of 24 independent 16-lane FMAs. */
QS_TARGET_AVX512 static double fma_peak_512(int64_t n) {
    __m512 c[24];
    for (int i = 0; i < 24; i++) c[i] = _mm512_set1_ps((float)i * 1e-3f);
    __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-6f);
    double c0 = cpu();
    for (int64_t k = 0; k < n; k++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++) c[i] = _mm512_fmadd_ps(c[i], a, b);
        __asm__ volatile("" : "+v"(a)); /* keep the loop from being folded */
    }
    double dc = cpu() - c0;
    __m512 s = c[0];
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, c[i]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return 24.0 * 16 * 2 * (double)n / dc;
}

/* Best of 5 of fma_peak_512 (about 0.15 s each), GFLOP per CPU-second. */
static double fma_peak(void) {
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double g = fma_peak_512(20000000) * 1e-9;
        if (g > best) best = g;
    }
    return best;
}

int main(void) {
    (void)testlib_shared;
    Err err;
    err_init(&err);
    int nt = 2;
    Pool *pool = NULL;
    GemmWork *w = NULL;
    CHECK_OK(pool_new(nt, &pool, &err), err);
    CHECK_OK(gemm_work_new(nt, &w, &err), err);
    sgemm_set_threads(nt);
    /* (M, N, K): q+k+v fused, o, gate+up fused, down, and the 4096² reference shape. */
    const int64_t shapes[][3] = {{512, 2560, 2048}, {512, 2048, 2048}, {512, 11264, 2048},
                                 {512, 2048, 5632}, {512, 4096, 4096}};
    printf("bench_gemm: %d threads, OpenBLAS core %s, own kernel %s\n", nt, sgemm_backend(),
           cpu_describe());
    double peak = cpu_has_avx512f() ? fma_peak() : 0; /* the peak loop is AVX-512 code */
    if (peak > 0) printf("FMA peak (1 thread, registers only): %.1f GFLOP per CPU-second\n", peak);
    printf("%-18s %-9s %10s %12s %7s\n", "M x N x K", "impl", "GFLOP/s", "GFLOP/cpu-s", "% peak");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = malloc((size_t)(M * K) * sizeof *A), *B = malloc((size_t)(N * K) * sizeof *B);
        float *C = malloc((size_t)(M * N) * sizeof *C);
        CHECK(A && B && C);
        for (int64_t i = 0; i < M * K; i++) A[i] = (float)(i % 13) * 0.01f;
        for (int64_t i = 0; i < N * K; i++) B[i] = (float)(i % 7) * 0.01f;
        double flop = 2.0 * (double)M * (double)N * (double)K;
        for (int impl = 0; impl < 2; impl++) {
            if (impl == 0 && !gemm_f32_available()) continue;
            double bw = 1e30, bc = 1e30;
            for (int r = 0; r < 5; r++) {
                double t0 = wall(), c0 = cpu();
                if (impl == 0) gemm_f32_nt_pool(pool, w, M, N, K, A, K, B, K, 0.0f, C, N);
                else sgemm_mul_nt(M, N, K, A, K, B, K, 0.0f, C, N);
                double dt = wall() - t0, dc = cpu() - c0;
                if (dt < bw) bw = dt;
                if (dc < bc) bc = dc;
            }
            char shp[32];
            snprintf(shp, sizeof shp, "%lldx%lldx%lld", (long long)M, (long long)N, (long long)K);
            printf("%-18s %-9s %10.1f %12.1f %7.1f\n", shp, impl == 0 ? "own" : "openblas", flop / bw * 1e-9,
                   flop / bc * 1e-9, peak > 0 ? 100.0 * flop / bc * 1e-9 / peak : 0.0);
        }
        free(A);
        free(B);
        free(C);
    }
    if (peak > 0) printf("FMA peak at the end: %.1f GFLOP per CPU-second\n", fma_peak());
    gemm_work_free(w);
    pool_free(pool);
    return testlib_done("bench_gemm");
}
