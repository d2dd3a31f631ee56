/* Every quantized-matmul kernel against its scalar _ref twin: exact for the
 * integer paths (int32 sums compared directly, and float outputs bit-equal),
 * stated tolerances for float accumulation. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/fpconv.h"
#include "core/pool.h"
#include "kernels/actquant.h"
#include "kernels/cpu.h"
#include "kernels/int8_gemm.h"
#include "kernels/kfit.h"
#include "kernels/f16_gemm.h"
#include "kernels/fp8_gemm.h"
#include "kernels/sgemm.h"
#include "kernels/wq_gemm.h"
#include "testlib.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float rng_uniform(void) { return (float)(rng_u32() & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f; }

/* === activation quantization === */

static void test_actquant(void) {
    float x[300];
    for (int i = 0; i < 300; i++) x[i] = rng_uniform() * 3.0f;
    x[17] = -7.5f;
    x[123] = 0.5f * 7.5f / 127.0f * 3.0f; /* lands exactly on a .5 tie: 1.5 */
    CHECK(actq_absmax_ref(x, 300) == 7.5f);
    CHECK(actq_absmax(x, 300) == 7.5f);
    CHECK(actq_absmax(x, 0) == 0.0f);
    float s = 7.5f / 127.0f;
    int8_t q1[300], q2[300];
    actq_int8_row_ref(x, 300, s, q1);
    actq_int8_row(x, 300, s, q2);
    CHECK(memcmp(q1, q2, 300) == 0);
    CHECK(q1[17] == -127);
    /* round half to even on an exact tie: 1.5 -> 2, 2.5 -> 2 */
    float tie[2] = {1.5f, 2.5f};
    actq_int8_row_ref(tie, 2, 1.0f, q1);
    CHECK(q1[0] == 2 && q1[1] == 2);
    actq_int8_row(tie, 2, 1.0f, q2);
    CHECK(q2[0] == 2 && q2[1] == 2);
    /* clamping beyond the static range */
    float big[3] = {1000.0f, -1000.0f, 0.25f};
    actq_int8_row(big, 3, 1.0f, q2);
    CHECK(q2[0] == 127 && q2[1] == -127 && q2[2] == 0);
    actq_int8_row(big, 3, 0.0f, q2);
    CHECK(q2[0] == 0 && q2[1] == 0);
    /* the vector paths against the reference on every length 0..299 (vector
     * body and scalar tail), with ties (k + 0.5 steps) and values past the
     * clamp at every position; the absmax with its maximum and a NaN anywhere */
    for (int i = 0; i < 300; i++) x[i] = (float)((int)(rng_u32() % 301) - 150) * 0.5f;
    for (int n = 0; n <= 300; n += (n < 70 ? 1 : 23)) {
        actq_int8_row_ref(x, n, 1.0f, q1);
        actq_int8_row(x, n, 1.0f, q2);
        CHECKF(memcmp(q1, q2, (size_t)n) == 0, "int8 row n=%d", n);
        actq_int8_row_ref(x, n, 0.37f, q1);
        actq_int8_row(x, n, 0.37f, q2);
        CHECKF(memcmp(q1, q2, (size_t)n) == 0, "int8 row n=%d s=0.37", n);
        CHECK(actq_absmax(x, n) == actq_absmax_ref(x, n));
    }
    for (int p = 0; p < 40; p++) {
        float y[40];
        memcpy(y, x, sizeof y);
        y[p] = -200.0f;
        CHECK(actq_absmax(y, 40) == 200.0f);
        y[p] = NAN;
        CHECKF(isnan(actq_absmax(y, 40)), "absmax NaN at %d", p);
    }

    /* skip_first: token 0 holds a spike that must not set the range */
    enum { T = 4, K = 8 };
    float xs[T * K], sc[T];
    for (int i = 0; i < T * K; i++) xs[i] = (float)(i % 5) - 2.0f; /* |x| <= 2 */
    xs[3] = 100.0f;
    ActQuant aq = {ACT_INT8, 0, 0, 0.0f, 1};
    actq_scales(&aq, xs, T, K, 0, sc);
    CHECK(sc[0] == 2.0f / 127.0f && sc[3] == 2.0f / 127.0f);
    float fk[T * K];
    actq_fake(&aq, xs, T, K, 0, fk, NULL);
    CHECK(fk[3] == 127.0f * (2.0f / 127.0f)); /* the spike is clamped to the range */
    actq_scales(&aq, xs, T, K, 5, sc);        /* not token 0: spike included */
    CHECK(sc[1] == 100.0f / 127.0f);
    aq.skip_first = 0;
    actq_scales(&aq, xs, T, K, 0, sc);
    CHECK(sc[2] == 100.0f / 127.0f);
    aq.per_token = 1;
    actq_scales(&aq, xs, T, K, 0, sc);
    CHECK(sc[0] == 100.0f / 127.0f && sc[1] == 2.0f / 127.0f);
    aq.is_static = 1;
    aq.static_absmax = 4.0f;
    actq_scales(&aq, xs, T, K, 0, sc);
    CHECK(sc[0] == 4.0f / 127.0f && sc[3] == 4.0f / 127.0f);

    /* fake int8 = codes times scales, exactly */
    aq = (ActQuant){ACT_INT8, 1, 0, 0.0f, 0};
    int8_t qq[T * 12];
    float sc2[T];
    actq_quantize_int8(&aq, xs, T, K, 0, qq, 12, sc2, NULL);
    actq_fake(&aq, xs, T, K, 0, fk, NULL);
    for (int t = 0; t < T; t++) {
        for (int k = 0; k < K; k++) CHECK(fk[t * K + k] == (float)qq[t * 12 + k] * sc2[t]);
        for (int k = K; k < 12; k++) CHECK(qq[t * 12 + k] == 0);
    }
    /* fp8 fake quant: the scaled max maps to the format max exactly */
    aq = (ActQuant){ACT_FP8_E4M3, 0, 0, 0.0f, 0};
    actq_fake(&aq, xs, T, K, 0, fk, NULL);
    CHECK(fk[3] == 100.0f);
    float s8 = 100.0f / 448.0f;
    CHECK(fk[1] == fp8_e4m3_to_f32(f32_to_fp8_e4m3(xs[1] / s8)) * s8);
    aq.fmt = ACT_FP8_E5M2;
    actq_fake(&aq, xs, T, K, 0, fk, NULL);
    CHECK(fk[3] == 100.0f);
    float s5 = 100.0f / 57344.0f;
    CHECK(fk[5] == fp8_e5m2_to_f32(f32_to_fp8_e5m2(xs[5] / s5)) * s5);
}

/* The vector fake quantizers against the fpconv-based reference: every
 * float whose bits are a multiple of 4099 (about a million values over all
 * exponents, both signs, subnormals and infinities), at several scales. */
static void test_fake_rows(void) {
    if (!cpu_has_avx512f()) return;
    enum { N = 4096 };
    float x[N], a[N], b[N];
    static const float scales[] = {1.0f, 0.37f, 1e-3f, 250.0f, 1e-30f};
    for (int f = ACT_INT8; f <= ACT_FP8_E5M2; f++)
        for (size_t si = 0; si < sizeof scales / sizeof *scales; si++) {
            uint64_t bits = 0;
            while (bits < 0x100000000ull) {
                int n = 0;
                for (; n < N && bits < 0x100000000ull; bits += 4099) {
                    uint32_t u = (uint32_t)bits;
                    float v;
                    memcpy(&v, &u, 4);
                    if (isnan(v)) continue;
                    x[n++] = v;
                }
                actq_fake_row_ref((ActFormat)f, x, n, scales[si], a);
                actq_fake_row_avx512((ActFormat)f, x, n, scales[si], b);
                for (int i = 0; i < n; i++)
                    CHECKF(memcmp(&a[i], &b[i], 4) == 0 || (isnan(a[i]) && isnan(b[i])),
                           "fake %s s=%g x=%a: %a vs %a", act_format_name((ActFormat)f), scales[si], x[i], a[i], b[i]);
            }
        }
    /* ties and the saturation boundary, exactly */
    float t[8] = {464.0f, 463.9f, 448.0f, 480.0f, 0x1p-10f, 0x3p-10f, 61440.0f, 1e9f};
    for (int f = ACT_INT8; f <= ACT_FP8_E5M2; f++) {
        actq_fake_row_ref((ActFormat)f, t, 8, 1.0f, a);
        actq_fake_row_avx512((ActFormat)f, t, 8, 1.0f, b);
        CHECK(memcmp(a, b, sizeof a) == 0);
    }
}

/* === W8A8 int8 GEMM === */

/* full_range: B takes every int8 value, -128 included (the AVX2 nibble
 * path); else B stays in [-127, 127] as the symmetric quantizers leave it
 * (the AVX2 sign-trick path). A always takes the full range. */
static void test_int8_shape(int64_t M, int64_t N, int64_t K, int full_range, Pool *pool) {
    Err err;
    int64_t kp = i8gemm_kpad(K);
    int8_t *A = calloc((size_t)(M * kp), 1);
    int8_t *B = malloc((size_t)(N * K));
    float *as = malloc((size_t)M * sizeof *as), *ws = malloc((size_t)N * sizeof *ws);
    int32_t *cref = malloc((size_t)(M * N) * 4), *c = malloc((size_t)(M * N) * 4);
    float *fref = malloc((size_t)(M * N) * 4), *f = malloc((size_t)(M * N) * 4);
    CHECK(A && B && as && ws && cref && c && fref && f);
    for (int64_t i = 0; i < M; i++)
        for (int64_t k = 0; k < K; k++) A[i * kp + k] = (int8_t)(rng_u32() & 0xFF); /* full range incl. -128 */
    for (int64_t i = 0; i < N * K; i++) B[i] = full_range ? (int8_t)(rng_u32() & 0xFF) : (int8_t)(rng_u32() % 255 - 127);
    if (K > 2) { /* the saturating corners: a = -128 against w = -128 or ±127 */
        A[0] = -128; A[1] = -128;
        B[0] = full_range ? -128 : 127; B[1] = full_range ? -128 : 127;
    }
    for (int64_t i = 0; i < M && K > 3; i++) A[i * kp + 2] = A[i * kp + 3] = -128;
    for (int64_t i = 0; i < M; i++) as[i] = 0.01f + (float)i * 1e-3f;
    for (int64_t i = 0; i < N; i++) ws[i] = 0.02f + (float)i * 1e-4f;
    I8Matrix w;
    CHECK_OK(i8mat_pack(B, N, K, ws, 1, &w, &err), err);
    CHECK(w.sign_ok == !(full_range && K > 2));
    /* independent triple loop on the unpacked B */
    for (int64_t i = 0; i < M; i++)
        for (int64_t n = 0; n < N; n++) {
            int32_t s = 0;
            for (int64_t k = 0; k < K; k++) s += (int32_t)A[i * kp + k] * B[n * K + k];
            cref[i * N + n] = s;
            fref[i * N + n] = (float)s * as[i] * ws[n];
        }
    i8gemm_ref(&w, A, M, kp, NULL, c, N, pool);
    CHECK(memcmp(c, cref, (size_t)(M * N) * 4) == 0);
    i8gemm_ref(&w, A, M, kp, as, f, N, pool);
    CHECK(memcmp(f, fref, (size_t)(M * N) * 4) == 0);
    if (cpu_has_avx2()) {
        memset(c, 0, (size_t)(M * N) * 4);
        i8gemm_avx2(&w, A, M, kp, NULL, c, N, pool);
        CHECKF(memcmp(c, cref, (size_t)(M * N) * 4) == 0, "avx2 int32 M=%lld N=%lld K=%lld", (long long)M, (long long)N, (long long)K);
        i8gemm_avx2(&w, A, M, kp, as, f, N, pool);
        CHECK(memcmp(f, fref, (size_t)(M * N) * 4) == 0);
    }
    if (cpu_has_avx512_vnni()) {
        memset(c, 0, (size_t)(M * N) * 4);
        i8gemm_vnni(&w, A, M, kp, NULL, c, N, pool);
        CHECKF(memcmp(c, cref, (size_t)(M * N) * 4) == 0, "vnni int32 M=%lld N=%lld K=%lld", (long long)M, (long long)N, (long long)K);
        i8gemm_vnni(&w, A, M, kp, as, f, N, pool);
        CHECK(memcmp(f, fref, (size_t)(M * N) * 4) == 0);
    }
    memset(f, 0, (size_t)(M * N) * 4);
    i8gemm(&w, A, M, kp, as, f, N, pool);
    CHECK(memcmp(f, fref, (size_t)(M * N) * 4) == 0);
    /* per-tensor weight scale */
    I8Matrix w2;
    CHECK_OK(i8mat_pack(B, N, K, ws, 0, &w2, &err), err);
    i8gemm(&w2, A, M, kp, as, f, N, pool);
    for (int64_t i = 0; i < M; i++)
        for (int64_t n = 0; n < N; n++) CHECK(f[i * N + n] == (float)cref[i * N + n] * as[i] * ws[0]);
    /* both matrices on the same rows as jobs in one dispatch: i8gemm's bits */
    if (M <= I8GEMM_JOB_ROWS) {
        float *g = malloc((size_t)(2 * M * N) * 4);
        CHECK(g != NULL);
        memset(g, 0, (size_t)(2 * M * N) * 4);
        I8GemmJob j[2];
        PoolPart parts[2] = {{i8gemm_job_run, &j[0], i8gemm_job_init(&j[0], &w, A, M, kp, as, g, N)},
                             {i8gemm_job_run, &j[1], i8gemm_job_init(&j[1], &w2, A, M, kp, as, g + M * N, N)}};
        pool_for_parts(pool, parts, 2, 1);
        CHECKF(memcmp(g, fref, (size_t)(M * N) * 4) == 0 && memcmp(g + M * N, f, (size_t)(M * N) * 4) == 0,
               "int8 jobs M=%lld N=%lld K=%lld", (long long)M, (long long)N, (long long)K);
        free(g);
    }
    i8mat_done(&w);
    i8mat_done(&w2);
    free(A); free(B); free(as); free(ws); free(cref); free(c); free(fref); free(f);
}

static void test_int8_gemm(Pool *pool) {
    Err err;
    static const int64_t Ms[] = {1, 2, 3, 4, 17, 7};
    static const int64_t NKs[][2] = {{16, 64}, {33, 70}, {100, 131}, {64, 4}, {250, 257}, {5, 3}, {130, 2052}};
    for (int full = 0; full < 2; full++) {
        for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++)
            for (size_t j = 0; j < sizeof NKs / sizeof *NKs; j++)
                test_int8_shape(Ms[i], NKs[j][0], NKs[j][1], full, pool);
        test_int8_shape(200, 300, 520, full, pool); /* more than one M chunk */
    }
    I8Matrix w;
    int8_t b = 1;
    float s = 1;
    CHECK(i8mat_pack(&b, 1, 70000, &s, 0, &w, &err) == ST_ERR_ARG);
    CHECK(i8mat_pack(&b, 0, 4, &s, 0, &w, &err) == ST_ERR_ARG);
}


/* === weight-only GEMV / GEMM === */

/* Exact values w (n, k) of the matrix the test built, from its own unpacked
 * codes: the definition the kernels must reproduce. */
static int64_t test_group_of(WqGroup gd, int64_t g, int64_t n, int64_t k, int64_t o, int64_t i) {
    (void)n;
    if (gd == WQ_GROUP_TENSOR) return 0;
    if (gd == WQ_GROUP_OC) return g ? o * (k / g) + i / g : o;
    return g ? (o / g) * k + i : i;
}

static int64_t test_n_groups(WqGroup gd, int64_t g, int64_t n, int64_t k) {
    if (gd == WQ_GROUP_TENSOR) return 1;
    if (gd == WQ_GROUP_OC) return n * (g ? k / g : 1);
    return (g ? n / g : 1) * k;
}

/* Compares every path on m against the exact values w: dequant bit-exact,
 * GEMV within 1e-5 of Σ|w·x| (float summation order), GEMM (T = 5) too. */
static void check_wq(const WqMatrix *m, const float *w, Pool *pool) {
    int64_t n = m->n, k = m->k;
    float *d = malloc((size_t)(n * k) * 4), *x = malloc((size_t)(5 * k) * 4);
    float *y = malloc((size_t)(5 * n) * 4), *yr = malloc((size_t)n * 4), *yf = malloc((size_t)n * 4);
    CHECK(d && x && y && yr && yf);
    wqmat_dequant_rows(m, 0, n, d);
    for (int64_t i = 0; i < n * k; i++) CHECKF(d[i] == w[i], "code %d dequant (%lld) %g != %g", (int)m->code, (long long)i, d[i], w[i]);
    for (int64_t i = 0; i < 5 * k; i++) x[i] = rng_uniform();
    Err err;
    CHECK_OK(wq_gemm(m, x, 5, y, pool, &err), err);
    for (int t = 0; t < 5; t++) {
        wq_gemv_ref(m, x + t * k, yr);
        wq_gemv(m, x + t * k, yf, pool);
        int fast = cpu_has_avx512f() && wq_gemv_fast_ok(m);
        for (int64_t o = 0; o < n; o++) {
            double exact = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                exact += (double)w[o * k + i] * x[t * k + i];
                mag += fabs((double)w[o * k + i] * x[t * k + i]);
            }
            double tol = 1e-5 * mag + 1e-30;
            CHECK_NEAR(yr[o], exact, 1e-7 * mag + 1e-30);
            CHECKF(fabs(yf[o] - exact) <= tol, "code %d sym %d gdim %d g %lld fast %d row %lld: %g vs %g (ref %g)", (int)m->code, m->sym,
                   (int)m->gdim, (long long)m->group, fast, (long long)o, yf[o], exact, yr[o]);
            CHECKF(fabs(y[t * n + o] - exact) <= tol, "gemm code %d row %lld", (int)m->code, (long long)o);
        }
        /* each fast path alone, no pool: within 1e-5 of Σ|w·x| of the scalar twin */
        for (int path = 0; path < 2; path++) {
            if (path == 0 && !fast) continue;
            if (path == 1 && !(cpu_has_avx2() && wq_gemv_avx2_ok(m))) continue;
            if (path == 0) wq_gemv_avx512(m, x + t * k, yf, NULL);
            else wq_gemv_avx2(m, x + t * k, yf, NULL);
            for (int64_t o = 0; o < n; o++) {
                double mag = 0;
                for (int64_t i = 0; i < k; i++) mag += fabs((double)w[o * k + i] * x[t * k + i]);
                CHECKF(fabs(yf[o] - yr[o]) <= 1e-5 * mag + 1e-30, "%s code %d sym %d gdim %d g %lld row %lld: %g vs %g",
                       path ? "avx2" : "avx512", (int)m->code, m->sym, (int)m->gdim, (long long)m->group, (long long)o,
                       yf[o], yr[o]);
            }
        }
    }
    free(d); free(x); free(y); free(yr); free(yf);
}

static void test_wq_int_store(int bits, int store, int sym, WqGroup gd, int64_t g, int64_t n, int64_t k, Pool *pool) {
    Err err;
    int half = 1 << (bits - 1);
    int64_t ng = test_n_groups(gd, g, n, k);
    int8_t *q = malloc((size_t)(n * k));
    float *sc = malloc((size_t)ng * 4), *z = malloc((size_t)ng * 4), *w = malloc((size_t)(n * k) * 4);
    CHECK(q && sc && z && w);
    for (int64_t i = 0; i < ng; i++) {
        sc[i] = 0.001f * (float)(1 + rng_u32() % 100);
        z[i] = (float)(rng_u32() % (unsigned)(2 * half));
    }
    for (int64_t o = 0; o < n; o++)
        for (int64_t i = 0; i < k; i++) {
            int c = sym ? (int)(rng_u32() % (unsigned)(2 * half - 1)) - (half - 1) : (int)(rng_u32() % (unsigned)(2 * half)) - half;
            q[o * k + i] = (int8_t)c;
            int64_t gi = test_group_of(gd, g, n, k, o, i);
            /* quant/rtn.c's rtn_dequant_value formula */
            w[o * k + i] = sym ? (float)c * sc[gi] : ((float)(c + half) - z[gi]) * sc[gi];
        }
    WqMatrix m;
    CHECK_OK(wqmat_pack_int(q, bits, store, n, k, gd, g, sc, sym ? NULL : z, &m, &err), err);
    check_wq(&m, w, pool);
    wqmat_done(&m);
    free(q); free(sc); free(z); free(w);
}

static void test_wq_fp8(int e5m2, WqGroup gd, int64_t g, int64_t n, int64_t k, Pool *pool) {
    Err err;
    int64_t ng = test_n_groups(gd, g, n, k);
    uint8_t *c = malloc((size_t)(n * k));
    float *sc = malloc((size_t)ng * 4), *w = malloc((size_t)(n * k) * 4);
    for (int64_t i = 0; i < ng; i++) sc[i] = 0.01f * (float)(1 + rng_u32() % 50);
    for (int64_t o = 0; o < n; o++)
        for (int64_t i = 0; i < k; i++) {
            uint8_t v;
            do v = (uint8_t)rng_u32(); while (isnan(e5m2 ? fp8_e5m2_to_f32(v) : fp8_e4m3_to_f32(v)) ||
                                          isinf(fp8_e5m2_to_f32(v)));
            c[o * k + i] = v;
            w[o * k + i] = (e5m2 ? fp8_e5m2_to_f32(v) : fp8_e4m3_to_f32(v)) * sc[test_group_of(gd, g, n, k, o, i)];
        }
    WqMatrix m;
    CHECK_OK(wqmat_pack_fp8(c, e5m2, n, k, gd, g, sc, &m, &err), err);
    check_wq(&m, w, pool);
    wqmat_done(&m);
    c[3] = e5m2 ? 0x7F : 0xFF; /* a NaN code */
    CHECK(wqmat_pack_fp8(c, e5m2, n, k, gd, g, sc, &m, &err) == ST_ERR_RANGE);
    free(c); free(sc); free(w);
}

static void test_wq_f16(int bf16, int64_t n, int64_t k, Pool *pool) {
    Err err;
    uint16_t *h = malloc((size_t)(n * k) * 2);
    float *w = malloc((size_t)(n * k) * 4);
    for (int64_t i = 0; i < n * k; i++) {
        float v = rng_uniform() * 4.0f;
        h[i] = bf16 ? f32_to_bf16(v) : f32_to_fp16(v);
        w[i] = bf16 ? bf16_to_f32(h[i]) : fp16_to_f32(h[i]);
    }
    WqMatrix m;
    CHECK_OK(wqmat_pack_f16(h, bf16, n, k, &m, &err), err);
    check_wq(&m, w, pool);
    wqmat_done(&m);
    CHECK_OK(wqmat_pack_f32(w, n, k, &m, &err), err);
    check_wq(&m, w, pool);
    wqmat_done(&m);
    free(h); free(w);
}

static void test_decoders(void) {
    if (!cpu_has_avx512f()) return;
    uint8_t c[256];
    float a[256], b[256];
    for (int i = 0; i < 256; i++) c[i] = (uint8_t)i;
    for (int e5 = 0; e5 < 2; e5++) {
        fp8_decode_ref(c, 256, e5, a);
        fp8_decode_avx512(c, 256, e5, b);
        for (int i = 0; i < 256; i++) {
            if (isnan(a[i])) continue; /* E4M3 NaN codes are rejected at pack time */
            CHECKF(memcmp(&a[i], &b[i], 4) == 0, "fp8 e5m2=%d code 0x%02x: %g vs %g", e5, i, a[i], b[i]);
        }
        CHECK(a[0x7E] == (e5 ? 57344.0f : 448.0f) || e5);
    }
    CHECK(fp8_lut(0)[0x7E] == 448.0f && fp8_lut(0)[0x01] == 0x1p-9f && fp8_lut(1)[0x7B] == 57344.0f);
    uint16_t *h = malloc(65536 * 2);
    float *fa = malloc(65536 * 4), *fb = malloc(65536 * 4);
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    for (int bf = 0; bf < 2; bf++) {
        f16_decode_ref(h, 65536, bf, fa);
        f16_decode_avx512(h, 65536, bf, fb);
        for (int i = 0; i < 65536; i++) {
            if (isnan(fa[i])) { CHECK(isnan(fb[i])); continue; }
            CHECK(memcmp(&fa[i], &fb[i], 4) == 0);
        }
    }
    /* The AVX2 + F16C decoder (what f16_decode picks below AVX-512): every
     * code, and a length that leaves a scalar tail. */
    if (cpu_has_avx2() && cpu_has_f16c())
        for (int bf = 0; bf < 2; bf++) {
            f16_decode_ref(h, 65536, bf, fa);
            f16_decode_avx2(h, 65533, bf, fb);
            for (int i = 0; i < 65533; i++) {
                if (isnan(fa[i])) { CHECK(isnan(fb[i])); continue; }
                CHECKF(memcmp(&fa[i], &fb[i], 4) == 0, "avx2 %s decode of 0x%04x", bf ? "bf16" : "f16", i);
            }
        }
    /* f16_decode, the dispatcher model/weight.c calls: every code, from an
     * aligned source and from one at an odd address (bytewise path) */
    unsigned char *odd = malloc(65536 * 2 + 1);
    for (int i = 0; i < 65536; i++) {
        odd[1 + 2 * i] = (unsigned char)(i & 0xff);
        odd[2 + 2 * i] = (unsigned char)(i >> 8);
    }
    for (int bf = 0; bf < 2; bf++)
        for (int mis = 0; mis < 2; mis++) {
            f16_decode_ref(h, 65536, bf, fa);
            f16_decode(mis ? (const void *)(odd + 1) : (const void *)h, 65536, bf, fb);
            for (int i = 0; i < 65536; i++) {
                if (isnan(fa[i])) { CHECK(isnan(fb[i])); continue; }
                CHECKF(memcmp(&fa[i], &fb[i], 4) == 0, "f16_decode %s %s of 0x%04x", bf ? "bf16" : "f16",
                       mis ? "misaligned" : "aligned", i);
            }
        }
    free(odd);
    free(h); free(fa); free(fb);
}

static void test_wq_int(int bits, int sym, WqGroup gd, int64_t g, int64_t n, int64_t k, Pool *pool) {
    test_wq_int_store(bits, bits, sym, gd, g, n, k, pool);
}

static void test_weight_only(Pool *pool) {
    static const int bits[] = {8, 4, 3, 2};
    for (size_t b = 0; b < 4; b++)
        for (int sym = 0; sym < 2; sym++) {
            test_wq_int(bits[b], sym, WQ_GROUP_TENSOR, 0, 37, 100, pool);
            test_wq_int(bits[b], sym, WQ_GROUP_OC, 0, 37, 100, pool);
            test_wq_int(bits[b], sym, WQ_GROUP_OC, 64, 13, 192, pool);   /* fast path */
            test_wq_int(bits[b], sym, WQ_GROUP_OC, 128, 9, 256, pool);   /* fast path */
            test_wq_int(bits[b], sym, WQ_GROUP_OC, 4, 6, 172, pool);     /* row-dequant path */
            test_wq_int(bits[b], sym, WQ_GROUP_IC, 0, 37, 100, pool);
            test_wq_int(bits[b], sym, WQ_GROUP_IC, 8, 40, 70, pool);
            test_wq_int(bits[b], sym, WQ_GROUP_IC, 3, 9, 64, pool);      /* blocks straddle row quads */
        }
    test_wq_int(4, 1, WQ_GROUP_OC, 32, 64, 2048, pool);
    test_wq_int(4, 0, WQ_GROUP_OC, 2, 5, 70, pool);   /* small groups: lane-spread scales */
    test_wq_int(3, 1, WQ_GROUP_OC, 8, 5, 72, pool);
    test_wq_int(8, 0, WQ_GROUP_OC, 1, 3, 40, pool);
    test_wq_int_store(6, 8, 0, WQ_GROUP_OC, 64, 13, 192, pool);
    test_wq_int_store(5, 8, 1, WQ_GROUP_IC, 0, 13, 100, pool);
    test_wq_int_store(3, 4, 0, WQ_GROUP_OC, 0, 13, 100, pool);
    test_wq_int(4, 0, WQ_GROUP_IC, 64, 256, 1000, pool);
    for (int e5 = 0; e5 < 2; e5++) {
        test_wq_fp8(e5, WQ_GROUP_TENSOR, 0, 21, 77, pool);
        test_wq_fp8(e5, WQ_GROUP_OC, 0, 21, 77, pool);
        test_wq_fp8(e5, WQ_GROUP_OC, 32, 20, 96, pool);
        test_wq_fp8(e5, WQ_GROUP_OC, 4, 20, 92, pool);
        test_wq_fp8(e5, WQ_GROUP_IC, 0, 21, 77, pool);
        test_wq_fp8(e5, WQ_GROUP_IC, 7, 21, 77, pool);
    }
    test_wq_f16(0, 19, 77, pool);
    test_wq_f16(1, 19, 77, pool);
    test_wq_f16(0, 64, 512, pool);

    /* malformed input */
    Err err;
    WqMatrix m;
    int8_t q[8] = {0};
    float s[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(wqmat_pack_int(q, 5, 5, 2, 4, WQ_GROUP_TENSOR, 0, s, NULL, &m, &err) == ST_ERR_ARG);
    CHECK(wqmat_pack_int(q, 4, 3, 2, 4, WQ_GROUP_TENSOR, 0, s, NULL, &m, &err) == ST_ERR_ARG);
    CHECK(wqmat_pack_int(q, 4, 4, 2, 4, WQ_GROUP_OC, 3, s, NULL, &m, &err) == ST_ERR_ARG);
    CHECK(wqmat_pack_int(q, 4, 4, 2, 4, WQ_GROUP_IC, 3, s, NULL, &m, &err) == ST_ERR_ARG);
    q[2] = -8; /* outside symmetric int4 */
    CHECK(wqmat_pack_int(q, 4, 4, 2, 4, WQ_GROUP_TENSOR, 0, s, NULL, &m, &err) == ST_ERR_RANGE);
    float z[1] = {16.0f};
    q[2] = 0;
    CHECK(wqmat_pack_int(q, 4, 4, 2, 4, WQ_GROUP_TENSOR, 0, s, z, &m, &err) == ST_ERR_RANGE);
}

/* kfit_min8 against 8 calls of its scalar twin, bit for bit (the K-quants'
 * bytes must stay llama-quantize's): random sub-blocks of both shapes the
 * K-quants use (Q4_K/Q5_K 32 × 31/15 codes, Q2_K 16 × 3 with |e|), plus the
 * edge cases: constant blocks (the early return), all-positive, all-negative,
 * zeros mixed in, a lone spike, tiny values. */
static void test_kfit(void) {
    uint64_t rs = 12345;
    int mism = 0, total = 0;
    for (int trial = 0; trial < 3000; trial++) {
        int kind = trial % 3, n = kind == 2 ? 16 : 32, nmax = kind == 0 ? 15 : kind == 1 ? 31 : 3;
        int mad = kind == 2, nstep = kind == 2 ? 15 : 20;
        float rmin = kind == 2 ? -0.5f : -1.0f, x[8 * 32], w[8 * 32];
        for (int b = 0; b < 8; b++) {
            int shape = (trial / 3 + b) % 7;
            for (int i = 0; i < n; i++) {
                rs = rs * 6364136223846793005ull + 1442695040888963407ull;
                float u = (float)((double)(rs >> 11) * 0x1p-53) - 0.5f;
                float v = shape == 0 ? 0.25f : shape == 1 ? fabsf(u) + 0.01f : shape == 2 ? -fabsf(u) - 0.01f
                        : shape == 3 ? (i % 3 ? 0.0f : u) : shape == 4 ? (i == 5 ? 40.0f : u * 0.01f)
                        : shape == 5 ? u * 1e-6f : u;
                x[b * n + i] = v;
                w[b * n + i] = mad ? fabsf(v) : 0.1f + fabsf(v);
            }
        }
        uint8_t L8[8 * 32], L1[8 * 32];
        float sc8[8], nm8[8], sc1[8], nm1[8];
        memset(L8, 0xAA, sizeof L8);
        kfit_min8(n, nmax, x, w, L8, sc8, nm8, rmin, 0.1f, nstep, mad);
        for (int b = 0; b < 8; b++)
            sc1[b] = kfit_min_ref(n, nmax, x + b * n, w + b * n, L1 + b * n, &nm1[b], rmin, 0.1f, nstep, mad);
        total++;
        if (memcmp(L8, L1, (size_t)(8 * n)) || memcmp(sc8, sc1, sizeof sc8) || memcmp(nm8, nm1, sizeof nm8)) mism++;
    }
    CHECKF(mism == 0, "kfit_min8 differs from kfit_min_ref in %d of %d batches", mism, total);
}

int main(void) {
    Err err;
    Pool *pool = NULL;
    CHECK_OK(pool_new(2, &pool, &err), err);
    (void)testlib_shared;
    printf("cpu: %s\n", cpu_describe());
    test_fake_rows();
    test_decoders();
    test_kfit();
    sgemm_set_threads(1);
    /* the weight-only paths at every dispatch level the CPU has: AVX-512,
     * AVX2 (its GEMV and row dequantization), scalar */
    static const char *const LEVELS[] = {NULL, "avx2", "scalar"};
    for (int lv = 0; lv < 3; lv++) {
        if (LEVELS[lv]) setenv("QS_CPU", LEVELS[lv], 1);
        cpu_refresh();
        printf("int8 and weight-only at %s\n", cpu_describe());
        test_actquant();
        test_int8_gemm(pool);
        test_int8_gemm(NULL);
        test_weight_only(pool);
        test_weight_only(NULL);
    }
    unsetenv("QS_CPU");
    cpu_refresh();
    pool_free(pool);
    return testlib_done("test_kernels");
}
