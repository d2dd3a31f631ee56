/* The AVX-512 and AVX2 GEMMs (kernels/f32gemm.h) and the OpenBLAS wrapper
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
    printf("gemm: ");
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
                                 {9, 31, 257},  {17, 100, 300}, {64, 33, 600}, {40, 130, 530},
                                 /* the AVX2 tiles' blocks: two row blocks (MC2 516), two and a
                                  * partial NC2 panels, three k blocks (KC2 256) with a remainder */
                                 {520, 530, 520}};
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
    printf("gemm_h: max |diff| vs scalar twin %.3g\n", worst);
    gemm_work_free(w);
}

/* C = A·Bᵀ (+C) with B of type bt (raw bits) on the pool (NULL: one thread). */
static void gemm_any(Pool *pool, GemmWork *w, int bt, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                     const void *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (bt == GEMM_B_F32) gemm_f32_nt_pool(pool, w, M, N, K, A, lda, B, ldb, beta, C, ldc);
    else gemm_h_nt_pool(pool, w, M, N, K, A, lda, B, bt == GEMM_B_BF16, ldb, beta, C, ldc);
}

/* Below AVX-512 a C element's bits depend on K and on which side of 8 M is
 * (f32gemm.c, "AVX2 and portable kernels"): the AVX2 code agrees bit for bit
 * with the portable code, on one thread or two, with the columns cut into
 * odd slices (fused vs separate weights), the rows cut into calls on the same
 * side of 8 (one at a time below it; 8 and the rest above), beta 0 or 1 (and
 * beta 1 equal to beta 0 plus C), for float32, fp16 and bf16 weights. */
static void test_bits(Pool *pool) {
    if (!cpu_has_avx2()) {
        printf("bits: no AVX2 here, only the portable code runs\n");
        return;
    }
    Err err;
    err_init(&err);
    GemmWork *w = NULL;
    CHECK_OK(gemm_work_new(2, &w, &err), err);
    const int64_t shapes[][3] = {{1, 37, 300}, {7, 50, 600}, {8, 33, 256}, {13, 70, 513}, {30, 33, 77}, {530, 40, 1100}};
    int checked = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int bt = GEMM_B_F32; bt <= GEMM_B_BF16; bt++)
            for (int b = 0; b <= 1; b++) {
                int64_t M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
                int64_t lda = K + 3, ldb = K + 5, ldc = N + 2;
                size_t cn = (size_t)(M * ldc);
                float *A = rbuf(M * lda), *C0 = rbuf(M * ldc), *Bf = rbuf(N * ldb);
                uint16_t *Bh = malloc((size_t)(N * ldb) * sizeof *Bh);
                float *C[5];
                CHECK(Bh);
                for (int64_t i = 0; i < N * ldb; i++) Bh[i] = bt == GEMM_B_BF16 ? f32_to_bf16(Bf[i]) : f32_to_fp16(Bf[i]);
                const void *B = bt == GEMM_B_F32 ? (const void *)Bf : (const void *)Bh;
                size_t es = bt == GEMM_B_F32 ? 4 : 2;
                for (int r = 0; r < 5; r++) {
                    C[r] = malloc(cn * sizeof(float));
                    CHECK(C[r]);
                    memcpy(C[r], C0, cn * sizeof(float));
                }
                setenv("QS_CPU", "scalar", 1);
                cpu_refresh();
                gemm_any(NULL, w, bt, M, N, K, A, lda, B, ldb, (float)b, C[0], ldc);
                setenv("QS_CPU", "avx2", 1);
                cpu_refresh();
                gemm_any(pool, w, bt, M, N, K, A, lda, B, ldb, (float)b, C[1], ldc);
                gemm_any(NULL, w, bt, M, N, K, A, lda, B, ldb, (float)b, C[2], ldc);
                const int64_t cuts[] = {0, 5, 22, N};
                for (int c = 0; c < 3; c++) {
                    int64_t n0 = cuts[c] < N ? cuts[c] : N, n1 = cuts[c + 1] < N ? cuts[c + 1] : N;
                    gemm_any(pool, w, bt, M, n1 - n0, K, A, lda, (const char *)B + (size_t)(n0 * ldb) * es, ldb,
                             (float)b, C[3] + n0, ldc);
                }
                if (M < 8)
                    for (int64_t i = 0; i < M; i++)
                        gemm_any(pool, w, bt, 1, N, K, A + i * lda, lda, B, ldb, (float)b, C[4] + i * ldc, ldc);
                else if (M >= 16) {
                    gemm_any(pool, w, bt, 8, N, K, A, lda, B, ldb, (float)b, C[4], ldc);
                    gemm_any(pool, w, bt, M - 8, N, K, A + 8 * lda, lda, B, ldb, (float)b, C[4] + 8 * ldc, ldc);
                } else gemm_any(NULL, w, bt, M, N, K, A, lda, B, ldb, (float)b, C[4], ldc);
                if (b) { /* y + W·x in one call = W·x, then added to y (the residual adds) */
                    float *S = calloc(cn, sizeof(float));
                    CHECK(S);
                    gemm_any(pool, w, bt, M, N, K, A, lda, B, ldb, 0.0f, S, ldc);
                    for (int64_t i = 0; i < M; i++)
                        for (int64_t j = 0; j < N; j++) S[i * ldc + j] = C0[i * ldc + j] + S[i * ldc + j];
                    int same = 1;
                    for (int64_t i = 0; i < M; i++)
                        same &= !memcmp(S + i * ldc, C[1] + i * ldc, (size_t)N * sizeof(float));
                    CHECKF(same, "bits: bt %d M=%lld N=%lld K=%lld: y + W·x differs from W·x added to y", bt,
                           (long long)M, (long long)N, (long long)K);
                    free(S);
                }
                for (int r = 1; r < 5; r++)
                    CHECKF(!memcmp(C[r], C[0], cn * sizeof(float)), "bits: bt %d M=%lld N=%lld K=%lld beta=%d: run %d differs from the portable code", bt,
                           (long long)M, (long long)N, (long long)K, b, r);
                checked++;
                for (int r = 0; r < 5; r++) free(C[r]);
                free(A); free(C0); free(Bf); free(Bh);
            }
    unsetenv("QS_CPU");
    cpu_refresh();
    printf("bits: %d products, AVX2 = portable code over 4 partitions each\n", checked);
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

/* gemm_f32_nt_packed: B packed once gives gemm_f32_nt's bits for every M
 * (the small-M path included) on shapes with remainders in every block. */
static void test_packed(void) {
    Err err;
    err_init(&err);
    GemmWork *w = NULL;
    CHECK_OK(gemm_work_new(1, &w, &err), err);
    const int64_t shapes[][2] = {{300, 530}, {17, 9}, {256, 256}, {513, 1100}};
    const int64_t Ms[] = {1, 7, 8, 37, 600};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t N = shapes[s][0], K = shapes[s][1], ldb = K + 3;
        float *B = rbuf(N * ldb);
        GemmPackedB *pb = NULL;
        CHECK_OK(gemm_f32_pack_b(N, K, B, ldb, &pb, &err), err);
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            int64_t M = Ms[mi], lda = K + 1;
            float *A = rbuf(M * lda), *C1 = rbuf(M * N), *C2 = rbuf(M * N);
            gemm_f32_nt(w, 0, M, N, K, A, lda, B, ldb, 0.0f, C1, N);
            gemm_f32_nt_packed(w, 0, M, A, lda, pb, C2, N);
            CHECKF(memcmp(C1, C2, (size_t)(M * N) * sizeof *C1) == 0, "packed B: %lld x %lld x %lld differs",
                   (long long)M, (long long)N, (long long)K);
            free(A);
            free(C1);
            free(C2);
        }
        gemm_packed_b_free(pb);
        free(B);
    }
    gemm_packed_b_free(NULL);
    gemm_work_free(w);
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
        test_packed();
    }
    unsetenv("QS_CPU");
    cpu_refresh();
    test_bits(pool);
    pool_free(pool);
    return testlib_done("test_f32gemm");
}
