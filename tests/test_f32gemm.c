/* The AVX-512 GEMM (kernels/f32gemm.h) and the OpenBLAS wrapper
 * (kernels/sgemm.h) against their scalar twins over edge shapes (tile and
 * block remainders in M, N and K), strided operands, beta 0/1, the pool-split
 * version; and the vector kernels (kernels/vec.h) against theirs. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/fpconv.h"
#include "core/pool.h"
#include "kernels/cpu.h"
#include "kernels/f32gemm.h"
#include "kernels/sgemm.h"
#include "kernels/vec.h"
#include "testlib.h"

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static float urand(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float *rbuf(int64_t n) {
    float *p = malloc((size_t)n * sizeof *p);
    CHECK(p);
    for (int64_t i = 0; i < n; i++) p[i] = urand();
    return p;
}

typedef enum { IMPL_OWN, IMPL_OWN_POOL, IMPL_BLAS } Impl;

/* C = A·op(B) (+C) by impl vs the scalar twin; returns max |diff|. */
static double one(Impl impl, int nn, GemmWork *w, Pool *pool, int64_t M, int64_t N, int64_t K, float beta) {
    int64_t lda = K + 3, ldb = (nn ? N : K) + 5, ldc = N + 2;
    float *A = rbuf(M * lda), *B = rbuf((nn ? K : N) * ldb), *C = rbuf(M * ldc);
    float *R = malloc((size_t)(M * ldc) * sizeof *R);
    CHECK(R);
    memcpy(R, C, (size_t)(M * ldc) * sizeof *R);
    if (nn) sgemm_mul_nn_ref(M, N, K, A, lda, B, ldb, beta, R, ldc);
    else sgemm_mul_nt_ref(M, N, K, A, lda, B, ldb, beta, R, ldc);
    switch (impl) {
    case IMPL_OWN:
        if (nn) gemm_f32_nn(w, 1, M, N, K, A, lda, B, ldb, beta, C, ldc);
        else gemm_f32_nt(w, 1, M, N, K, A, lda, B, ldb, beta, C, ldc);
        break;
    case IMPL_OWN_POOL:
        gemm_f32_nt_pool(pool, w, M, N, K, A, lda, B, ldb, beta, C, ldc);
        break;
    case IMPL_BLAS:
        if (nn) sgemm_mul_nn(M, N, K, A, lda, B, ldb, beta, C, ldc);
        else sgemm_mul_nt(M, N, K, A, lda, B, ldb, beta, C, ldc);
        break;
    }
    double d = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < ldc; j++) {
            /* padding columns beyond N must be untouched */
            double e = fabs((double)C[i * ldc + j] - (double)R[i * ldc + j]);
            if (!(e <= d)) d = e;
        }
    free(A); free(B); free(C); free(R);
    return d;
}

static void test_gemm(Pool *pool) {
    Err err;
    err_init(&err);
    GemmWork *w = NULL;
    CHECK_OK(gemm_work_new(2, &w, &err), err);
    const int64_t shapes[][3] = {
        {1, 1, 1}, {1, 33, 17}, {7, 15, 16}, {8, 32, 256}, {9, 31, 257}, {16, 64, 15}, {17, 100, 300},
        {33, 257, 64}, {64, 33, 600}, {520, 70, 40}, {100, 600, 100}, {3, 5, 513},
        /* the pool's shared-A path: two row blocks (MC 516), two and a
         * partial NC panels, three k blocks (KC 512) with a remainder */
        {530, 600, 1100}, {40, 520, 600},
    };
    printf("gemm (%s): ", gemm_f32_available() ? "avx512" : "scalar fallback");
    double worst = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int nn = 0; nn <= 1; nn++)
            for (int b = 0; b <= 1; b++) {
                int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                double tol = 2e-6 * (double)K + 1e-6;
                double d = one(IMPL_OWN, nn, w, pool, M, N, K, (float)b);
                CHECKF(d <= tol, "own %s M=%lld N=%lld K=%lld beta=%d: %g", nn ? "nn" : "nt", (long long)M,
                       (long long)N, (long long)K, b, d);
                if (d > worst) worst = d;
                d = one(IMPL_BLAS, nn, w, pool, M, N, K, (float)b);
                CHECKF(d <= tol, "blas %s M=%lld N=%lld K=%lld: %g", nn ? "nn" : "nt", (long long)M,
                       (long long)N, (long long)K, d);
                if (!nn) {
                    d = one(IMPL_OWN_POOL, 0, w, pool, M, N, K, (float)b);
                    CHECKF(d <= tol, "pool nt M=%lld N=%lld K=%lld: %g", (long long)M, (long long)N,
                           (long long)K, d);
                }
            }
    printf("max |diff| vs scalar twin %.3g\n", worst);
    /* K = 0 with beta 0 clears C. */
    float c[4] = {1, 2, 3, 4};
    gemm_f32_nt(w, 0, 2, 2, 0, c, 1, c, 1, 0.0f, c, 2);
    CHECK(c[0] == 0 && c[3] == 0);
    gemm_work_free(w);
}

/* gemm_h_nt_pool (fp16/bf16 weights widened in the packing or on the fly)
 * vs its scalar twin over edge shapes, strides, beta 0/1, decode (M < 8) and
 * prefill (pool shared-A and split paths), with and without a pool. */
static void test_gemm_h(Pool *pool) {
    Err err;
    err_init(&err);
    GemmWork *w = NULL;
    CHECK_OK(gemm_work_new(2, &w, &err), err);
    const int64_t shapes[][3] = {{1, 1, 1},     {1, 33, 17},   {3, 70, 513},   {7, 15, 16},  {8, 32, 256},
                                 {9, 31, 257},  {17, 100, 300}, {64, 33, 600}, {40, 130, 530}};
    double worst = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int bf = 0; bf <= 1; bf++)
            for (int b = 0; b <= 1; b++)
                for (int usepool = 0; usepool <= 1; usepool++) {
                    int64_t M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
                    int64_t lda = K + 3, ldb = K + 5, ldc = N + 2;
                    float *A = rbuf(M * lda), *C = rbuf(M * ldc), *R = malloc((size_t)(M * ldc) * sizeof *R);
                    uint16_t *B = malloc((size_t)(N * ldb) * sizeof *B);
                    CHECK(R && B);
                    for (int64_t i = 0; i < N * ldb; i++) {
                        float v = urand();
                        B[i] = bf ? f32_to_bf16(v) : f32_to_fp16(v);
                    }
                    memcpy(R, C, (size_t)(M * ldc) * sizeof *R);
                    gemm_h_nt_ref(M, N, K, A, lda, B, bf, ldb, (float)b, R, ldc);
                    gemm_h_nt_pool(usepool ? pool : NULL, w, M, N, K, A, lda, B, bf, ldb, (float)b, C, ldc);
                    double d = 0, tol = 2e-6 * (double)K + 1e-6;
                    for (int64_t i = 0; i < M * ldc; i++) { /* padding columns untouched too */
                        double e = fabs((double)C[i] - (double)R[i]);
                        if (!(e <= d)) d = e;
                    }
                    CHECKF(d <= tol, "gemm_h %s M=%lld N=%lld K=%lld beta=%d pool=%d: %g", bf ? "bf16" : "f16",
                           (long long)M, (long long)N, (long long)K, b, usepool, d);
                    if (d > worst) worst = d;
                    free(A); free(B); free(C); free(R);
                }
    printf("gemm_h (%s): max |diff| vs scalar twin %.3g\n", gemm_f32_available() ? "avx512" : "scalar fallback",
           worst);
    gemm_work_free(w);
}

static void test_vec(void) {
    int64_t ns[] = {1, 7, 16, 17, 64, 100, 2048, 5633};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        int64_t n = ns[t];
        float *x = rbuf(n), *w = rbuf(n), *y0 = rbuf(n), *y1 = rbuf(n), *g = rbuf(n), *u = rbuf(n);
        for (int64_t i = 0; i < n; i++) { x[i] *= 20; g[i] *= 30; }
        vec_rmsnorm(y0, x, w, n, 1e-5f);
        vec_rmsnorm_ref(y1, x, w, n, 1e-5f);
        for (int64_t i = 0; i < n; i++) CHECK_NEAR(y0[i], y1[i], 1e-6 * (1 + fabs(y1[i])));
        memcpy(y0, x, (size_t)n * 4);
        memcpy(y1, x, (size_t)n * 4);
        vec_softmax(y0, n, 0.37f);
        vec_softmax_ref(y1, n, 0.37f);
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            CHECK_NEAR(y0[i], y1[i], 2e-6 * y1[i] + 1e-12);
            s += y0[i];
        }
        CHECK_NEAR(s, 1.0, 1e-5);
        vec_swiglu(y0, g, u, n);
        vec_swiglu_ref(y1, g, u, n);
        for (int64_t i = 0; i < n; i++) CHECK_NEAR(y0[i], y1[i], 2e-6 * (1 + fabs(y1[i])));
        free(x); free(w); free(y0); free(y1); free(g); free(u);
    }
    /* exp over its whole range, including the clamps and -inf. */
    float xs[] = {-INFINITY, -200, -104, -87.5f, -87.3f, -20, -1, -1e-3f, 0, 1e-3f, 0.5f, 1, 10, 50, 88, 88.7f};
    int64_t nx = sizeof xs / sizeof xs[0];
    float e0[16], e1[16];
    vec_exp(e0, xs, nx);
    vec_exp_ref(e1, xs, nx);
    for (int64_t i = 0; i < nx; i++) {
        if (e1[i] < 1e-37f) CHECKF(e0[i] < 2e-38f && e0[i] >= 0, "exp(%g) = %g", xs[i], e0[i]);
        else CHECKF(fabs(e0[i] - e1[i]) <= 3e-7 * e1[i], "exp(%g): %g vs %g", xs[i], e0[i], e1[i]);
    }
    float dense[4096], d0[4096], d1[4096];
    for (int i = 0; i < 4096; i++) dense[i] = -87.0f + 175.0f * (float)i / 4096.0f;
    vec_exp(d0, dense, 4096);
    vec_exp_ref(d1, dense, 4096);
    for (int i = 0; i < 4096; i++) CHECKF(fabs(d0[i] - d1[i]) <= 3e-7 * d1[i], "exp(%g)", dense[i]);
}

int main(void) {
    (void)testlib_shared;
    Err err;
    err_init(&err);
    Pool *pool = NULL;
    CHECK_OK(pool_new(2, &pool, &err), err);
    /* Each dispatch level in turn: QS_CPU caps it (the scalar run checks the fallbacks). */
    const char *levels[] = {NULL, "avx2", "scalar"};
    for (int l = 0; l < 3; l++) {
        if (levels[l]) setenv("QS_CPU", levels[l], 1);
        else unsetenv("QS_CPU");
        cpu_refresh();
        printf("level %s: ", cpu_describe());
        test_gemm(pool);
        test_gemm_h(pool);
        test_vec();
    }
    unsetenv("QS_CPU");
    cpu_refresh();
    pool_free(pool);
    return testlib_done("test_f32gemm");
}
