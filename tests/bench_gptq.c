/* GPTQ time for one n x n layer (default 4096 x 4096, as in issue 4's
 * benchmark list) on a fixed thread count (default 2: the pool and
 * OpenBLAS), H from synthetic correlated activations.
 * Usage: bench_gptq [n] [threads] [tokens] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/pool.h"
#include "core/status.h"
#include "kernels/blas.h"
#include "kernels/f32gemm.h"
#include "kernels/linalg.h"
#include "kernels/sgemm.h"
#include "quant/gptq.h"
#include "quant/rtn.h"

/* The machine is shared: the 1-minute load average goes with every figure. */
static const char *load_avg(void) {
    static char buf[64] = "?\n";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%31s", buf) == 1) strcat(buf, "\n");
        fclose(f);
    }
    return buf;
}

static uint64_t rng = 0x853c49e6748fea9bull;
static double nrand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    double u = (double)(rng >> 11) * (1.0 / 9007199254740992.0) + 1e-300;
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    double v = (double)(rng >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

int main(int argc, char **argv) {
    int64_t n = argc > 1 ? atoll(argv[1]) : 4096;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    int64_t T = argc > 3 ? atoll(argv[3]) : 2048;
    if (n < 16 || threads < 1 || T < 1) {
        fprintf(stderr, "usage: bench_gptq [n >= 16] [threads >= 1] [tokens >= 1]\n");
        return 2;
    }
    Err err;
    err_init(&err);
    Pool *pool = NULL;
    if (pool_new(threads, &pool, &err)) { fprintf(stderr, "%s\n", err.detail); return 1; }
    sgemm_set_threads(threads);
    double *X = core_alloc_aligned((size_t)(T * n), sizeof *X);
    double *H = core_alloc_aligned((size_t)(n * n), sizeof *H);
    float *W = core_alloc_aligned((size_t)(n * n), sizeof *W);
    if (!X || !H || !W) { fprintf(stderr, "out of memory\n"); return 1; }
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < n; j++) {
            double z = nrand();
            X[t * n + j] = j ? 0.8 * X[t * n + j - 1] + 0.6 * z : z;
        }
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 3; j < n; j += 97) X[t * n + j] *= 20.0; /* outlier channels */
    memset(H, 0, (size_t)(n * n) * sizeof *H);
    double t0 = clock_now();
    blas_dsyrk_upper_tn(n, T, X, n, H, n);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++) H[i * n + j] = H[j * n + i];
    double t_h = clock_now() - t0;
    for (int64_t i = 0; i < n * n; i++) W[i] = (float)(0.02 * nrand());
    printf("bench_gptq: %lld x %lld layer, %d threads, H from %lld tokens (built in %.2f s), OpenBLAS core %s, "
           "AVX-512 GEMM %s, load %s", (long long)n, (long long)n, threads, (long long)T, t_h, sgemm_backend(),
           gemm_f32_available() ? "yes" : "no", load_avg());
    struct { const char *name; QParams p; int act_order; } cases[] = {
        {"int4 oc128 asym", {QF_INT4, 0, GROUP_OC, 128}, 0},
        {"int4 oc128 asym act-order", {QF_INT4, 0, GROUP_OC, 128}, 1},
        {"int3 per-IC (GPTQ-IC)", {QF_INT3, 0, GROUP_IC, 0}, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        GptqOpts o;
        gptq_opts_default(&o);
        o.act_order = cases[k].act_order;
        QTensor q;
        t0 = clock_now();
        double c0 = clock_cpu_seconds();
        GptqStats gs;
        Status st = gptq_quantize(W, n, n, H, NULL, &cases[k].p, &o, pool, NULL, &q, &gs, &err);
        double dt = clock_now() - t0, dc = clock_cpu_seconds() - c0;
        if (st) { fprintf(stderr, "gptq: %s\n", err.detail); return 1; }
        qtensor_done(&q);
        printf("gptq %-28s %7.2f s  %7.2f cpu-s  (H factor %.2f, column batches %.2f, lazy GEMM %.2f)\n",
               cases[k].name, dt, dc, gs.sec_factor, gs.sec_batches, gs.sec_gemm);
    }
    /* the factorization alone: ours on the pool vs OpenBLAS's dpotrf + dtrtri */
    double *A = core_alloc_aligned((size_t)(n * n), sizeof *A);
    if (!A) { fprintf(stderr, "out of memory\n"); return 1; }
    for (int v = 0; v < 2; v++) {
        memcpy(A, H, (size_t)(n * n) * sizeof *A);
        for (int64_t i = 0; i < n; i++) A[i * n + i] += 0.01 * H[i * n + i] + 1e-3;
        t0 = clock_now();
        double c0 = clock_cpu_seconds();
        int r1 = v ? linalg_cholesky_lower(A, n) : linalg_cholesky_lower_pool(A, n, pool);
        int r2 = r1 ? r1 : v ? linalg_trinv_lower(A, n) : linalg_trinv_lower_pool(A, n, pool);
        if (r1 || r2) { fprintf(stderr, "factorization failed (%d, %d)\n", r1, r2); return 1; }
        printf("factor %-26s %7.2f s  %7.2f cpu-s\n", v ? "OpenBLAS dpotrf+dtrtri" : "ours (pool)", clock_now() - t0,
               clock_cpu_seconds() - c0);
    }
    core_free_aligned(A);
    QTensor q;
    t0 = clock_now();
    QParams p = {QF_INT4, 0, GROUP_OC, 128};
    if (rtn_quantize(W, n, n, &p, &q, &err)) { fprintf(stderr, "rtn: %s\n", err.detail); return 1; }
    printf("rtn  %-28s %7.2f s\n", "int4 oc128 asym", clock_now() - t0);
    qtensor_done(&q);
    core_free_aligned(X);
    core_free_aligned(H);
    core_free_aligned(W);
    pool_free(pool);
    return 0;
}
