/* Streaming statistics against straightforward two-pass computations on small
 * random data: channel sums, moments/kurtosis, histogram percentiles, top-k
 * spikes, activation-quantization errors, and the float64 rank-k kernels
 * (the H store itself: tests/test_hstore.c; the error and fp8 rounding
 * kernels: tests/test_actq_err.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analysis/stats.h"
#include "core/pool.h"
#include "kernels/blas.h"
#include "kernels/cpu.h"
#include "testlib.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_hist_bins(void) {
    for (int i = 0; i < 20000; i++) {
        float a = (float)ldexp(testlib_rnd() + 0.5, (int)(testlib_rnd() * 44) - 22);
        int b = hist_bin(a);
        double lo, hi;
        hist_bin_range(b, &lo, &hi);
        CHECKF(a >= lo && a < hi, "a=%g bin %d [%g,%g)", a, b, lo, hi);
        if (b > 0 && b < HIST_NBINS - 1) CHECK((hi - lo) / lo <= 1.0 / 16 + 1e-12);
    }
    CHECK(hist_bin(0.0f) == 0);
    CHECK(hist_bin(1.0f) == 1 + 20 * HIST_SUB);
    CHECK(hist_bin(1e30f) == HIST_NBINS - 1);
    CHECK(hist_bin(INFINITY) == HIST_NBINS - 1);
}

/* Reference: everything recomputed from the full data set. */
static void test_streaming(Pool *pool, TapStats *out_copy) {
    enum { W = 150, NB = 5, K = 16 };
    const int64_t Ts[NB] = {7, 33, 1, 20, 40};
    int64_t total_rows = 0;
    for (int b = 0; b < NB; b++) total_rows += Ts[b];
    float *X = malloc(sizeof(float) * (size_t)total_rows * W);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)total_rows);
    for (int64_t r = 0; r < total_rows; r++) {
        tok[r] = (int32_t)(r * 7 % 50);
        for (int c = 0; c < W; c++) {
            float v = testlib_gauss() * (c == 3 ? 10.0f : 1.0f) + (c % 5 == 0 ? 0.5f : 0.0f);
            if (r % 13 == 0 && c == 77) v = 90.0f + (float)r; /* a massive channel */
            if (c == 20 && r == 5) v = 0.0f;
            X[r * W + c] = v;
        }
    }
    X[10 * W + 40] = -250.0f; /* the largest |x|, negative */
    Err err;
    err_init(&err);
    TapScratch *sc = NULL;
    CHECK_OK(tapscratch_new(64, 256, K, pool ? pool_size(pool) : 1, &sc, &err), err);
    TapStats ts;
    CHECK_OK(tapstats_init(&ts, W, K, 1, &err), err);
    int64_t r0 = 0;
    for (int b = 0; b < NB; b++) {
        tapstats_add(&ts, X + r0 * W, Ts[b], tok + r0, r0, b, sc, pool);
        r0 += Ts[b];
    }
    /* channel stats */
    CHECK(ts.n_rows == total_rows);
    for (int c = 0; c < W; c++) {
        double s = 0, s2 = 0;
        float mx = 0;
        for (int64_t r = 0; r < total_rows; r++) {
            double v = X[r * W + c];
            s += v;
            s2 += v * v;
            if (fabsf(X[r * W + c]) > mx) mx = fabsf(X[r * W + c]);
        }
        CHECK_NEAR(ts.ch_sum[c], s, 1e-12 * (fabs(s) + s2 + 1));
        CHECK_NEAR(ts.ch_sumsq[c], s2, 1e-12 * s2);
        CHECK(ts.ch_absmax[c] == mx);
    }
    CHECK(ts.absmax == 250.0f);
    /* moments: two-pass */
    int64_t n = total_rows * W;
    double mean = 0;
    for (int64_t i = 0; i < n; i++) mean += X[i];
    mean /= (double)n;
    double m2 = 0, m3 = 0, m4 = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = X[i] - mean;
        m2 += d * d;
        m3 += d * d * d;
        m4 += d * d * d * d;
    }
    CHECK(ts.mom.n == n);
    CHECK_NEAR(ts.mom.mean, mean, 1e-12 * (fabs(mean) + 1));
    CHECK_NEAR(ts.mom.m2, m2, 1e-11 * m2);
    CHECK_NEAR(ts.mom.m3, m3, 1e-10 * fabs(m4));
    CHECK_NEAR(ts.mom.m4, m4, 1e-11 * m4);
    CHECK_NEAR(moments_kurtosis(&ts.mom), (double)n * m4 / (m2 * m2), 1e-9 * (double)n * m4 / (m2 * m2));
    CHECK(moments_kurtosis(&ts.mom) > 10); /* the spikes make it heavy-tailed */
    /* histogram total and percentiles */
    uint64_t tot = 0;
    for (int b = 0; b < HIST_NBINS; b++) tot += ts.hist[b];
    CHECK(tot == (uint64_t)n);
    double *sorted = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) sorted[i] = fabs(X[i]);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
    const double ps[] = {0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        int64_t rank = (int64_t)ceil(ps[i] * (double)n);
        double exact = sorted[rank - 1], est = hist_percentile(ts.hist, ps[i], ts.absmax);
        double lo, hi;
        hist_bin_range(hist_bin((float)exact), &lo, &hi);
        CHECKF(fabs(est - exact) <= (hi - lo) && fabs(est - exact) <= exact / 16 + 0x1p-20,
               "p%g: est %g exact %g", ps[i], est, exact);
    }
    free(sorted);
    /* top-k: sort all elements by the total order */
    Spike *all = malloc(sizeof(Spike) * (size_t)n);
    int64_t rr = 0;
    for (int b = 0, rb = 0; b < NB; rb += (int)Ts[b], b++)
        for (int64_t r = 0; r < Ts[b]; r++, rr++)
            for (int c = 0; c < W; c++)
                all[rr * W + c] = (Spike){.value = X[rr * W + c], .channel = c, .token = tok[rr],
                                          .pos = (int32_t)(rb + r), .seq = b};
    Spike ref[K];
    int32_t nref = 0;
    for (int64_t i = 0; i < n; i++) spike_topk_insert(ref, &nref, K, &all[i]);
    free(all);
    CHECK(ts.n_top == K && nref == K);
    for (int i = 0; i < K; i++) {
        CHECK(ts.top[i].value == ref[i].value && ts.top[i].channel == ref[i].channel);
        CHECK(ts.top[i].pos == ref[i].pos && ts.top[i].seq == ref[i].seq && ts.top[i].token == ref[i].token);
    }
    CHECK(ts.top[0].value == -250.0f && ts.top[0].channel == 40 && ts.top[0].pos == 10);
    CHECK(ts.top[1].channel == 77);
    /* activation quantization: recompute per batch */
    double ref_err[ACT_COUNT][ACT_MODE_COUNT] = {{0}}, ref_ref[ACT_MODE_COUNT] = {0};
    float run_max = 0;
    r0 = 0;
    for (int b = 0; b < NB; b++) {
        float bmax = 0;
        for (int64_t i = r0 * W; i < (r0 + Ts[b]) * W; i++) bmax = fmaxf(bmax, fabsf(X[i]));
        for (int64_t r = r0; r < r0 + Ts[b]; r++) {
            float rmax = 0;
            for (int c = 0; c < W; c++) rmax = fmaxf(rmax, fabsf(X[r * W + c]));
            for (int c = 0; c < W; c++) {
                float x = X[r * W + c];
                float am[ACT_MODE_COUNT] = {run_max, bmax, rmax};
                for (int m = 0; m < ACT_MODE_COUNT; m++) {
                    if (m == ACT_TENSOR_STATIC && b == 0) continue;
                    ref_ref[m] += (double)x * x;
                    for (int f = ACT_INT8; f < ACT_COUNT; f++) {
                        float q = actq_qmax((ActFormat)f);
                        float s = am[m] > 0 ? am[m] / q : 0, inv = am[m] > 0 ? q / am[m] : 0;
                        double e = (double)x - actq_quant((ActFormat)f, x, s, inv);
                        ref_err[f][m] += e * e;
                    }
                }
            }
        }
        run_max = fmaxf(run_max, bmax);
        r0 += Ts[b];
    }
    for (int m = 0; m < ACT_MODE_COUNT; m++) {
        CHECK_NEAR(ts.act_ref[m], ref_ref[m], 1e-10 * ref_ref[m]);
        for (int f = ACT_INT8; f < ACT_COUNT; f++)
            CHECK_NEAR(ts.act_err[f][m], ref_err[f][m], 1e-6 * ref_err[f][m] + 1e-12);
    }
    /* the spiky tensor: per-tensor int8 much worse than per-token */
    CHECK(tapstats_act_rel_err(&ts, ACT_INT8, ACT_TENSOR_DYNAMIC) >
          3 * tapstats_act_rel_err(&ts, ACT_INT8, ACT_TOKEN_DYNAMIC));
    /* int8 at scale s: error per element <= (s/2)^2 */
    CHECK(tapstats_act_rel_err(&ts, ACT_FP8_E4M3, ACT_TOKEN_DYNAMIC) < 0.01);
    if (out_copy) {
        *out_copy = ts;
    } else {
        tapstats_done(&ts);
    }
    tapscratch_free(sc);
    free(X);
    free(tok);
}

static void test_thread_independence(void) {
    Err err;
    err_init(&err);
    Pool *pool = NULL;
    CHECK_OK(pool_new(3, &pool, &err), err);
    TapStats a, b;
    testlib_rng = 99;
    test_streaming(NULL, &a);
    testlib_rng = 99;
    test_streaming(pool, &b);
    CHECK(memcmp(a.ch_sum, b.ch_sum, sizeof(double) * 150) == 0);
    CHECK(memcmp(a.ch_sumsq, b.ch_sumsq, sizeof(double) * 150) == 0);
    CHECK(memcmp(&a.mom, &b.mom, sizeof a.mom) == 0);
    CHECK(memcmp(a.hist, b.hist, sizeof a.hist) == 0);
    CHECK(memcmp(a.act_err, b.act_err, sizeof a.act_err) == 0);
    CHECK(memcmp(a.top, b.top, sizeof(Spike) * 16) == 0);
    tapstats_done(&a);
    tapstats_done(&b);
    pool_free(pool);
}

static void test_moments_merge(void) {
    /* merging many tiny groups equals one two-pass computation */
    enum { N = 1000 };
    double x[N];
    for (int i = 0; i < N; i++) x[i] = 1000.0 + testlib_gauss() * 0.01 + (i % 100 == 0 ? 0.5 : 0);
    Moments acc = {0};
    for (int i = 0; i < N; i += 3) {
        Moments g = {0};
        int e = i + 3 < N ? i + 3 : N;
        double mu = 0;
        for (int j = i; j < e; j++) mu += x[j];
        mu /= e - i;
        g.n = e - i;
        g.mean = mu;
        for (int j = i; j < e; j++) {
            double d = x[j] - mu;
            g.m2 += d * d;
            g.m3 += d * d * d;
            g.m4 += d * d * d * d;
        }
        moments_merge(&acc, &g);
    }
    double mu = 0;
    for (int i = 0; i < N; i++) mu += x[i];
    mu /= N;
    double m2 = 0, m4 = 0;
    for (int i = 0; i < N; i++) {
        m2 += (x[i] - mu) * (x[i] - mu);
        m4 += pow(x[i] - mu, 4);
    }
    CHECK_NEAR(acc.mean, mu, 1e-12 * mu);
    CHECK_NEAR(acc.m2, m2, 1e-8 * m2);
    CHECK_NEAR(acc.m4, m4, 1e-7 * m4);
}

static void test_syrk_f32(Pool *pool) {
    const int64_t ns[] = {1, 7, 16, 45, 130, 300};
    const int64_t ks[] = {1, 13, 256, 300, 600};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++) {
            int64_t n = ns[a], k = ks[b], ld = n + 3;
            float *X = malloc(sizeof(float) * (size_t)(k * ld));
            double *C1 = malloc(sizeof(double) * (size_t)(n * n)), *C2 = malloc(sizeof(double) * (size_t)(n * n));
            double *pack = malloc(sizeof(double) * blas_dsyrk_f32_pack_len(n, k));
            for (int64_t i = 0; i < k * ld; i++) X[i] = testlib_gauss() * (i % 11 == 0 ? 20.0f : 1.0f);
            for (int64_t i = 0; i < n * n; i++) C1[i] = C2[i] = (double)(i % 5);
            blas_dsyrk_f32_upper(n, k, X, ld, C1, n, pack, pool);
            blas_dsyrk_f32_upper_ref(n, k, X, ld, C2, n);
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = i; j < n; j++) {
                    double sa = 4;
                    for (int64_t r = 0; r < k; r++) sa += fabs((double)X[r * ld + i] * X[r * ld + j]);
                    CHECKF(fabs(C1[i * n + j] - C2[i * n + j]) <= 1e-13 * sa, "n %lld k %lld (%lld,%lld): %.17g vs %.17g",
                           (long long)n, (long long)k, (long long)i, (long long)j, C1[i * n + j], C2[i * n + j]);
                }
            free(X);
            free(C1);
            free(C2);
            free(pack);
        }
}

static void test_blas_twins(void) {
    enum { N = 45, K = 19 };
    double A[K * N], C1[N * N], C2[N * N];
    for (int i = 0; i < K * N; i++) A[i] = testlib_gauss();
    for (int i = 0; i < N * N; i++) C1[i] = C2[i] = testlib_gauss();
    blas_dsyrk_upper_tn(N, K, A, N, C1, N);
    blas_dsyrk_upper_tn_ref(N, K, A, N, C2, N);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) CHECK_NEAR(C1[i * N + j], C2[i * N + j], 1e-12 * 40);
    double B[N * 7], D1[K * 7], D2[K * 7];
    for (int i = 0; i < N * 7; i++) B[i] = testlib_gauss();
    blas_dgemm_nn(K, 7, N, A, N, B, 7, 0, D1, 7);
    blas_dgemm_nn_ref(K, 7, N, A, N, B, 7, 0, D2, 7);
    for (int i = 0; i < K * 7; i++) CHECK_NEAR(D1[i], D2[i], 1e-12 * 50);
}

int main(void) {
    (void)testlib_shared; /* no shared files needed here */
    test_hist_bins();
    test_streaming(NULL, NULL);
    test_thread_independence();
    test_moments_merge();
    test_blas_twins();
    {
        Err err;
        Pool *pool = NULL;
        CHECK_OK(pool_new(2, &pool, &err), err);
        test_syrk_f32(NULL);
        test_syrk_f32(pool);
        setenv("QS_CPU", "scalar", 1); /* OpenBLAS fallback */
        cpu_refresh();
        test_syrk_f32(pool);
        unsetenv("QS_CPU");
        cpu_refresh();
        pool_free(pool);
    }
    return testlib_done("test_stats");
}
