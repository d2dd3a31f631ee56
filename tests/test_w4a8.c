/* W4A8 kernels (kernels/w4a8.h): the VNNI and AVX2 paths against the scalar
 * twin — bit-equal where every float step is exact (unit scales, integer
 * activations: this checks the int32 block sums and the +8 offset
 * correction exactly), within a float summation bound otherwise — and the
 * product against the plan's reference semantics (activations fake-quantized
 * per token, weights dequantized, double accumulation). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/fpconv.h"
#include "core/pool.h"
#include "kernels/actquant.h"
#include "kernels/cpu.h"
#include "kernels/w4a8.h"
#include "kernels/wq_gemm.h"
#include "testlib.h"

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float rng_uniform(void) { return (float)(rng_u32() & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f; }

/* Code q of input i of row r, from the layout written out in kernels/w4a8.h. */
static int code_of(const W4a8Matrix *m, int64_t r, int64_t i) {
    int64_t sb = i / 256, e = i % 256;
    for (int64_t c = 0; c < 4; c++)
        for (int64_t j = 0; j < 16; j++)
            for (int64_t b = 0; b < 4; b++)
                if (32 * (j % 8) + 4 * (2 * c + j / 8) + b == e) {
                    uint8_t byte = m->codes[(size_t)r * m->row_bytes + (size_t)(sb * 128 + 64 * (c / 2) + 4 * j + b)];
                    return (c % 2 ? byte >> 4 : byte & 0x0F) - 8;
                }
    return 99;
}

typedef void (*GemmFn)(const W4a8Matrix *m, const int8_t *a, const int32_t *corr, const float *sa, int64_t T,
                       float *y, Pool *pool);

/* Runs every available path on (a, sa) and compares with the twin: exactly
 * when exact != 0, else within the bound for two float sums of nb block terms
 * in different orders: 2 · nb · eps · sa · Σ_b |s_b · d_b| (+ the final scaling). */
static void check_paths(const W4a8Matrix *m, const int8_t *a, const float *sa, int64_t T, int exact, Pool *pool) {
    const int64_t n = m->n, nb = m->kp / 32;
    float *yr = malloc((size_t)(T * n) * sizeof *yr), *yf = malloc((size_t)(T * n) * sizeof *yf);
    double *mag = malloc((size_t)(T * n) * sizeof *mag);
    int32_t *corr = malloc((size_t)(T * m->kp / 16) * sizeof *corr);
    int8_t *ap = malloc((size_t)(T * m->kp));
    CHECK(yr && yf && mag && corr && ap);
    w4a8_gemm_ref(m, a, sa, T, yr);
    w4a8_act_prep(a, T, m->kp, ap, corr);
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = 0; r < n; r++) {
            double s = 0;
            for (int64_t i = 0; i < m->k; i++) {
                int qv = code_of(m, r, i);
                s += fabs((double)fp16_to_f32(m->scale[r * nb + i / 32]) * qv * a[t * m->kp + i]);
            }
            mag[t * n + r] = s * fabs((double)sa[t]);
        }
    GemmFn fns[3] = {w4a8_gemm, NULL, NULL};
    const char *names[3] = {"dispatch", "vnni", "avx2"};
    if (cpu_has_avx512_vnni() && cpu_has_f16c()) fns[1] = w4a8_gemm_vnni;
    if (cpu_has_avx2() && cpu_has_f16c()) fns[2] = w4a8_gemm_avx2;
    for (int f = 0; f < 3; f++) {
        if (!fns[f]) continue;
        memset(yf, 0xFF, (size_t)(T * n) * sizeof *yf);
        fns[f](m, ap, corr, sa, T, yf, pool);
        for (int64_t i = 0; i < T * n; i++) {
            if (exact) CHECKF(yf[i] == yr[i], "%s (%lld, %lld) [%lld]: %.9g vs %.9g", names[f], (long long)n,
                              (long long)m->k, (long long)i, yf[i], yr[i]);
            else CHECKF(fabs((double)yf[i] - yr[i]) <= (2.0 * (double)nb + 2.0) * FLT_EPSILON * mag[i] + 1e-30,
                        "%s (%lld, %lld) [%lld]: %.9g vs %.9g (mag %g)", names[f], (long long)n, (long long)m->k,
                        (long long)i, yf[i], yr[i], mag[i]);
        }
    }
    free(yr); free(yf); free(mag); free(corr); free(ap);
}

static int64_t n_groups(WqGroup gd, int64_t g, int64_t n, int64_t k) {
    return gd == WQ_GROUP_TENSOR ? 1 : n * (k / (g ? g : k));
}

/* Random codes in [-8, 7] (sym int4 codes are [-7, 7]; -8 checks the edge),
 * fp16-exact scales; float activations quantized per token as the plan does. */
static void test_shape(int64_t n, int64_t k, WqGroup gd, int64_t g, int64_t T, Pool *pool) {
    Err err;
    const int64_t ng = n_groups(gd, g, n, k);
    int8_t *q = malloc((size_t)(n * k));
    float *sc = malloc((size_t)ng * sizeof *sc), *x = malloc((size_t)(T * k) * sizeof *x);
    CHECK(q && sc && x);
    for (int64_t i = 0; i < n * k; i++) q[i] = (int8_t)((int)(rng_u32() % 16) - 8);
    for (int64_t i = 0; i < ng; i++) sc[i] = fp16_to_f32(f32_to_fp16(0.0005f * (float)(1 + rng_u32() % 200)));
    for (int64_t i = 0; i < T * k; i++) x[i] = rng_uniform() * (i % 97 == 5 ? 40.0f : 2.0f);
    W4a8Matrix m;
    CHECK_OK(w4a8mat_pack(q, n, k, gd, g, sc, &m, &err), err);
    CHECK(m.kp % 256 == 0 && m.kp >= k && m.kp < k + 256);
    CHECK(w4a8mat_bytes(&m) == (size_t)n * (size_t)(m.kp / 2 + m.kp / 16));

    /* activations exactly as the layer quantizes them */
    ActQuant aq = {ACT_INT8, 1, 0, 0.0f, 0};
    int8_t *a = malloc((size_t)(T * m.kp));
    float *sa = malloc((size_t)T * sizeof *sa);
    CHECK(a && sa);
    actq_quantize_int8(&aq, x, T, k, 0, a, m.kp, sa, pool);
    check_paths(&m, a, sa, T, 0, pool);

    /* against the plan's reference: fake-quantized x, dequantized W, double sums */
    WqMatrix wq;
    int8_t *q7 = malloc((size_t)(n * k));
    CHECK(q7 != NULL);
    for (int64_t i = 0; i < n * k; i++) q7[i] = q[i] < -7 ? -7 : q[i]; /* the wq packer wants |q| <= 7 */
    W4a8Matrix m7;
    CHECK_OK(w4a8mat_pack(q7, n, k, gd, g, sc, &m7, &err), err);
    CHECK_OK(wqmat_pack_int(q7, 4, 4, n, k, gd, g, sc, NULL, &wq, &err), err);
    float *xf = malloc((size_t)(T * k) * sizeof *xf), *yref = malloc((size_t)n * sizeof *yref),
          *y = malloc((size_t)(T * n) * sizeof *y), *w = malloc((size_t)k * sizeof *w);
    int32_t *corr = malloc((size_t)(T * m.kp / 16) * sizeof *corr);
    int8_t *ap = malloc((size_t)(T * m.kp));
    CHECK(xf && yref && y && w && corr && ap);
    actq_fake(&aq, x, T, k, 0, xf, pool);
    w4a8_act_prep(a, T, m7.kp, ap, corr);
    w4a8_gemm(&m7, ap, corr, sa, T, y, pool);
    {   /* m7 and m on the same activations as jobs in one dispatch: w4a8_gemm's bits */
        float *y2 = malloc((size_t)(T * n) * sizeof *y2), *yj = malloc((size_t)(2 * T * n) * sizeof *yj);
        CHECK(y2 && yj);
        w4a8_gemm(&m, ap, corr, sa, T, y2, pool);
        W4a8Job j[2];
        int64_t g0, g1;
        PoolPart parts[2] = {{w4a8_gemm_job_run, &j[0], w4a8_gemm_job_init(&j[0], &m7, ap, corr, sa, T, yj, &g0)},
                             {w4a8_gemm_job_run, &j[1], w4a8_gemm_job_init(&j[1], &m, ap, corr, sa, T, yj + T * n, &g1)}};
        CHECK(g0 == g1 && g0 >= 1);
        pool_for_parts(pool, parts, 2, 1);
        CHECKF(memcmp(yj, y, (size_t)(T * n) * sizeof *yj) == 0 && memcmp(yj + T * n, y2, (size_t)(T * n) * sizeof *yj) == 0,
               "w4a8 jobs (%lld, %lld) T %lld", (long long)n, (long long)k, (long long)T);
        free(y2);
        free(yj);
    }
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        wq_gemv_ref(&wq, xf + t * k, yref);
        for (int64_t r = 0; r < n; r++) {
            wqmat_dequant_rows(&wq, r, r + 1, w);
            double mag = 0;
            for (int64_t i = 0; i < k; i++) mag += fabs((double)w[i] * xf[t * k + i]);
            /* ours: nb float block terms; the reference: the rounded products q_a · sa */
            double tol = ((double)m7.kp / 16.0 + 2.0) * FLT_EPSILON * mag + 1e-30;
            double e = fabs((double)y[t * n + r] - yref[r]);
            CHECKF(e <= tol, "(%lld, %lld) g %lld t %lld r %lld: %.9g vs %.9g", (long long)n, (long long)k,
                   (long long)g, (long long)t, (long long)r, y[t * n + r], yref[r]);
            if (mag > 0 && e / mag > worst) worst = e / mag;
        }
    }
    printf("w4a8 (%lld, %lld) gdim %d g %lld T %lld: max |y - ref| / sum|w x| = %.2e\n", (long long)n, (long long)k,
           (int)gd, (long long)g, (long long)T, worst);
    wqmat_done(&wq);
    w4a8mat_done(&m7);
    w4a8mat_done(&m);
    free(q); free(q7); free(sc); free(x); free(a); free(sa); free(xf); free(yref); free(y); free(w); free(corr); free(ap);
}

/* Unit scales and integer activations with max |x| = 127 (so sa = 1 and the
 * codes are x): every path must give exactly Σ q·x, computed here in int64. */
static void test_exact(int64_t n, int64_t k, int64_t T, Pool *pool) {
    Err err;
    int8_t *q = malloc((size_t)(n * k));
    float *sc = malloc((size_t)n * sizeof *sc), *x = malloc((size_t)(T * k) * sizeof *x);
    CHECK(q && sc && x);
    for (int64_t i = 0; i < n * k; i++) q[i] = (int8_t)((int)(rng_u32() % 16) - 8);
    for (int64_t i = 0; i < n; i++) sc[i] = 1.0f;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < k; i++) x[t * k + i] = (float)((int)(rng_u32() % 255) - 127);
        x[t * k + (t * 7) % k] = t % 2 ? -127.0f : 127.0f;
    }
    W4a8Matrix m;
    CHECK_OK(w4a8mat_pack(q, n, k, WQ_GROUP_OC, 0, sc, &m, &err), err);
    ActQuant aq = {ACT_INT8, 1, 0, 0.0f, 0};
    int8_t *a = malloc((size_t)(T * m.kp));
    float *sa = malloc((size_t)T * sizeof *sa), *y = malloc((size_t)(T * n) * sizeof *y);
    CHECK(a && sa && y);
    actq_quantize_int8(&aq, x, T, k, 0, a, m.kp, sa, pool);
    for (int64_t t = 0; t < T; t++) CHECK(sa[t] == 1.0f);
    check_paths(&m, a, sa, T, 1, pool);
    w4a8_gemm_ref(&m, a, sa, T, y);
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = 0; r < n; r++) {
            int64_t s = 0;
            for (int64_t i = 0; i < k; i++) s += (int64_t)q[r * k + i] * (int64_t)x[t * k + i];
            CHECK(y[t * n + r] == (float)s);
        }
    w4a8mat_done(&m);
    free(q); free(sc); free(x); free(a); free(sa); free(y);
}

static void test_errors(void) {
    Err err;
    int8_t q[2 * 64];
    float sc[8];
    W4a8Matrix m;
    memset(q, 0, sizeof q);
    for (int i = 0; i < 8; i++) sc[i] = 0.5f;
    CHECK(w4a8_group_ok(WQ_GROUP_OC, 32, 64) && w4a8_group_ok(WQ_GROUP_OC, 0, 172) && w4a8_group_ok(WQ_GROUP_TENSOR, 0, 5));
    CHECK(!w4a8_group_ok(WQ_GROUP_OC, 16, 64) && !w4a8_group_ok(WQ_GROUP_OC, 96, 128) && !w4a8_group_ok(WQ_GROUP_IC, 32, 64));
    CHECK(w4a8mat_pack(q, 2, 64, WQ_GROUP_OC, 16, sc, &m, &err) == ST_ERR_ARG);
    CHECK(strstr(err.detail, "g = 16") != NULL);
    CHECK(m.codes == NULL);
    CHECK(w4a8mat_pack(q, 0, 64, WQ_GROUP_OC, 32, sc, &m, &err) == ST_ERR_ARG);
    q[70] = 8;
    CHECK(w4a8mat_pack(q, 2, 64, WQ_GROUP_OC, 32, sc, &m, &err) == ST_ERR_RANGE);
    CHECK(strstr(err.detail, "(1, 6)") != NULL);
    q[70] = 0;
    sc[3] = 0.1f; /* not exact in fp16 */
    CHECK(w4a8mat_pack(q, 2, 64, WQ_GROUP_OC, 32, sc, &m, &err) == ST_ERR_RANGE);
    CHECK(strstr(err.detail, "scale 3") != NULL);
    sc[3] = 0.5f;
    CHECK_OK(w4a8mat_pack(q, 2, 64, WQ_GROUP_OC, 32, sc, &m, &err), err);
    w4a8mat_done(&m);
    w4a8mat_done(&m); /* zeroed: no-op */
}

int main(void) {
    Err err;
    Pool *pool = NULL;
    CHECK_OK(pool_new(2, &pool, &err), err);
    (void)testlib_shared;
    printf("cpu: %s, w4a8 path: %s\n", cpu_describe(), w4a8_path_name());
    test_errors();
    test_exact(13, 5632, 1, pool);
    test_exact(8, 300, 3, NULL);
    test_shape(64, 2048, WQ_GROUP_OC, 32, 1, pool);
    test_shape(37, 5632, WQ_GROUP_OC, 32, 2, pool);
    test_shape(16, 5632, WQ_GROUP_OC, 128, 1, NULL);
    test_shape(9, 2048, WQ_GROUP_OC, 0, 5, pool);
    test_shape(6, 172, WQ_GROUP_OC, 0, 1, pool);
    test_shape(5, 64, WQ_GROUP_OC, 32, 3, NULL);
    test_shape(7, 96, WQ_GROUP_OC, 96, 1, NULL);
    test_shape(4, 100, WQ_GROUP_TENSOR, 0, 2, pool);
    /* batches over more than one token tile (22 tokens of 5632 inputs), odd T */
    test_shape(10, 5632, WQ_GROUP_OC, 64, 45, pool);
    test_exact(6, 5632, 25, NULL);
    pool_free(pool);
    return testlib_done("test_w4a8");
}
