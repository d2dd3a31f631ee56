/* QLinear layers built from RTN-quantized tensors against plain float
 * matmuls with the dequantized weights (quant/rtn.h's qtensor_dequant):
 *  - weight-only formats: |y - x·Wdᵀ| <= 1e-5 · Σ|x·w| (float summation
 *    order; the dequantized values are exact);
 *  - W8A8 and fake-quantized activations: the same bound against x fake-
 *    quantized by this file's own reference (scales, rounding, clamping and
 *    skip-first written out here, independently of kernels/actquant.c);
 *  - W4A8 (int4 weights, int8 activations, integer dot products) within the
 *    same bound of the same fake-quant reference;
 *  - bytes() against qparams_bytes plus the stated padding. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fpconv.h"
#include "core/pool.h"
#include "kernels/sgemm.h"
#include "quant/format.h"
#include "quant/qlinear_build.h"
#include "quant/rtn.h"
#include "testlib.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static float rng_uniform(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

/* Reference activation fake quantization, written from the rules in
 * kernels/actquant.h. */
static void ref_act(const ActQuant *aq, const float *x, int64_t T, int64_t K, int64_t pos0, float *out) {
    memcpy(out, x, (size_t)(T * K) * sizeof *out);
    if (aq->fmt == ACT_NONE) return;
    float qmax = aq->fmt == ACT_INT8 ? 127.0f : aq->fmt == ACT_FP8_E4M3 ? 448.0f : 57344.0f;
    float tensor_r = 0;
    if (aq->is_static) tensor_r = aq->static_absmax;
    else
        for (int64_t t = (aq->skip_first && pos0 == 0 && T > 1) ? 1 : 0; t < T; t++)
            for (int64_t k = 0; k < K; k++) tensor_r = fmaxf(tensor_r, fabsf(x[t * K + k]));
    for (int64_t t = 0; t < T; t++) {
        float r = tensor_r;
        if (aq->per_token && !aq->is_static) {
            r = 0;
            for (int64_t k = 0; k < K; k++) r = fmaxf(r, fabsf(x[t * K + k]));
        }
        float s = r / qmax;
        for (int64_t k = 0; k < K; k++) {
            float v = s == 0 ? 0 : x[t * K + k] / s, *o = &out[t * K + k];
            if (s == 0) *o = 0;
            else if (aq->fmt == ACT_INT8) *o = rintf(fminf(fmaxf(v, -127.0f), 127.0f)) * s;
            else if (aq->fmt == ACT_FP8_E4M3) *o = fp8_e4m3_to_f32(f32_to_fp8_e4m3(v)) * s;
            else *o = fp8_e5m2_to_f32(f32_to_fp8_e5m2(v)) * s;
        }
    }
}

/* Builds a layer for W (n, k) with p and aq and checks forward on T rows at
 * position pos0 against the reference. Returns the layer's bytes(). */
static size_t check_layer(const float *W, int64_t n, int64_t k, QParams p, const ActQuant *aq, int64_t T,
                          int64_t pos0, const char *want_kernel, Pool *pool) {
    Err err;
    QTensor q;
    CHECK_OK(rtn_quantize(W, n, k, &p, &q, &err), err);
    float *Wd = malloc((size_t)(n * k) * 4), *x = malloc((size_t)(T * k) * 4), *xr = malloc((size_t)(T * k) * 4);
    float *y = malloc((size_t)(T * n) * 4);
    CHECK(Wd && x && xr && y);
    qtensor_dequant(&q, Wd);
    for (int64_t i = 0; i < T * k; i++) x[i] = rng_uniform() * 2.0f;
    if (T > 1) x[3] = 40.0f; /* a spike in token 0 */
    QLinear *l;
    CHECK_OK(qlinear_new_from_qtensor(&q, aq, &l, &err), err);
    qtensor_done(&q); /* the layer owns its own copy */
    CHECKF(strcmp(qlinear_kernel_name(l), want_kernel) == 0, "%s: kernel %s, want %s",
           qformat_traits(p.fmt)->name, qlinear_kernel_name(l), want_kernel);
    CHECK(l->n_out == n && l->n_in == k);
    CHECK_OK(qlinear_forward_pos(l, x, T, pos0, y, pool, &err), err);
    ActQuant none = {ACT_NONE, 0, 0, 0, 0};
    ref_act(aq ? aq : &none, x, T, k, pos0, xr);
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < n; o++) {
            double s = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                s += (double)xr[t * k + i] * Wd[o * k + i];
                mag += fabs((double)xr[t * k + i] * Wd[o * k + i]);
            }
            CHECKF(fabs(y[t * n + o] - s) <= 1e-5 * mag + 1e-30, "%s (%s) T=%lld row %lld out %lld: %.9g vs %.9g",
                   qformat_traits(p.fmt)->name, want_kernel, (long long)T, (long long)t, (long long)o, y[t * n + o], s);
        }
    if (pos0 == 0) { /* qlinear_forward (no position) means position 0 */
        float *y2 = malloc((size_t)(T * n) * 4);
        CHECK_OK(qlinear_forward(l, x, T, y2, pool, &err), err);
        CHECK(memcmp(y, y2, (size_t)(T * n) * 4) == 0);
        free(y2);
    }
    size_t bytes = l->ops->bytes(l);
    qlinear_free(l);
    free(Wd); free(x); free(xr); free(y);
    return bytes;
}

static void test_weight_only(const float *W, Pool *pool) {
    struct { GroupDim d; int64_t g; } groups[] = {
        {GROUP_TENSOR, 0}, {GROUP_OC, 0}, {GROUP_OC, 64}, {GROUP_OC, 128}, {GROUP_OC, 4}, {GROUP_IC, 0}, {GROUP_IC, 8},
    };
    /* every integer row of the format table */
    int n_int = 0;
    for (int f = 0; f < QF_COUNT; f++) {
        const QFormatTraits *t = qformat_traits((QFormat)f);
        if (t->family != QFAM_INT) continue;
        char name[16];
        snprintf(name, sizeof name, "wq-int%d", t->bits);
        n_int++;
        for (int sym = 0; sym < 2; sym++)
            for (size_t g = 0; g < sizeof groups / sizeof *groups; g++)
                for (int64_t T = 1; T <= 9; T += 8) {
                    QParams p = {(QFormat)f, sym, groups[g].d, groups[g].g};
                    size_t b = check_layer(W, 48, 256, p, NULL, T, 0, name, pool);
                    /* no K padding at k = 256; int6/int5 ride in 8-bit storage */
                    size_t extra = t->bits >= 5 ? (size_t)48 * 256 * (size_t)(8 - t->bits) / 8 : 0;
                    CHECK(b == qparams_bytes(&p, 48, 256) + extra);
                }
    }
    CHECK(n_int == 6);
    /* K = 100: rows padded to 128 (int8/int4 blocks of 32) or 128 (int3/int2 blocks of 64) */
    QParams p4 = {QF_INT4, 1, GROUP_OC, 0};
    CHECK(check_layer(W, 48, 100, p4, NULL, 1, 0, "wq-int4", pool) == qparams_bytes(&p4, 48, 100) + 48 * 28 / 2);
    QParams p3 = {QF_INT3, 0, GROUP_IC, 0};
    CHECK(check_layer(W, 48, 100, p3, NULL, 5, 0, "wq-int3", pool) == qparams_bytes(&p3, 48, 100) + 48 * 28 * 3 / 8);

    /* every other row with a weight-only kernel: fp8 codes and plain values */
    static const struct { QFormat f; const char *kernel; } floats[] = {
        {QF_FP8_E4M3, "fp8-e4m3"}, {QF_FP8_E5M2, "fp8-e5m2"}, {QF_F16, "fp16"}, {QF_BF16, "bf16"}, {QF_F32, "f32"}};
    int n_float = 0;
    for (int f = 0; f < QF_COUNT; f++) {
        const QFormatTraits *t = qformat_traits((QFormat)f);
        if (!t->pack || t->family == QFAM_INT || t->family == QFAM_GGML) continue; /* ggml: test_ggml_formats */
        const char *want = NULL;
        for (size_t i = 0; i < sizeof floats / sizeof *floats; i++)
            if (floats[i].f == (QFormat)f) want = floats[i].kernel;
        CHECKF(want != NULL, "format %s: add its kernel name here", t->name);
        if (!want) continue;
        n_float++;
        for (int64_t T = 1; T <= 9; T += 8) {
            QParams p = {(QFormat)f, 1, t->needs_scale ? GROUP_OC : GROUP_TENSOR, 0};
            CHECK(check_layer(W, 48, 256, p, NULL, T, 0, want, pool) == qparams_bytes(&p, 48, 256));
            if (t->needs_scale) {
                p.dim = GROUP_IC;
                p.group = 16;
                check_layer(W, 48, 256, p, NULL, T, 0, want, pool);
            }
        }
    }
    CHECK(n_float == 5);
}

static void test_activations(const float *W, Pool *pool) {
    QParams w8 = {QF_INT8, 1, GROUP_OC, 0}, w8t = {QF_INT8, 1, GROUP_TENSOR, 0};
    ActQuant tok = {ACT_INT8, 1, 0, 0, 0}, ten = {ACT_INT8, 0, 0, 0, 0};
    for (int64_t T = 1; T <= 17; T += 8) {
        size_t b = check_layer(W, 48, 256, w8, &tok, T, 0, "w8a8", pool);
        CHECK(b == qparams_bytes(&w8, 48, 256) + (size_t)16 * 256); /* N padded 48 -> 64 */
        check_layer(W, 48, 256, w8t, &ten, T, 0, "w8a8", pool);
        check_layer(W, 40, 100, w8, &ten, T, 7, "w8a8", pool); /* K padded to 4 is 100 itself */
        check_layer(W, 40, 99, w8, &tok, T, 0, "w8a8", pool);
    }
    /* skip-first: token 0's spike stays out of the range (and is clamped) */
    ActQuant skip = {ACT_INT8, 0, 0, 0, 1};
    check_layer(W, 48, 256, w8, &skip, 9, 0, "w8a8", pool);
    check_layer(W, 48, 256, w8, &skip, 9, 12, "w8a8", pool); /* not token 0: spike counts */
    check_layer(W, 48, 256, w8, &skip, 1, 0, "w8a8", pool);
    /* static range below the data: clamping */
    ActQuant st = {ACT_INT8, 0, 1, 1.5f, 0};
    check_layer(W, 48, 256, w8, &st, 9, 0, "w8a8", pool);
    /* W4A8: int4 symmetric weights under OC groups of 32k / per-row / per-tensor
     * with int8 activations of any granularity run integer dot products */
    QParams w4 = {QF_INT4, 1, GROUP_OC, 64}, w4r = {QF_INT4, 1, GROUP_OC, 0}, w4t = {QF_INT4, 1, GROUP_TENSOR, 0};
    QParams w4g32 = {QF_INT4, 1, GROUP_OC, 32};
    for (int64_t T = 1; T <= 17; T += 8) {
        CHECK(check_layer(W, 48, 256, w4, &tok, T, 0, "w4a8", pool) == qparams_bytes(&w4, 48, 256));
        check_layer(W, 48, 256, w4g32, &tok, T, 3, "w4a8", pool);
        check_layer(W, 48, 256, w4t, &ten, T, 0, "w4a8", pool);
        /* K = 100: rows padded to 256 */
        CHECK(check_layer(W, 45, 100, w4r, &tok, T, 0, "w4a8", pool) == qparams_bytes(&w4r, 45, 100) + 45 * 156 / 2);
    }
    check_layer(W, 48, 256, w4g32, &skip, 9, 0, "w4a8", pool);
    check_layer(W, 48, 256, w4g32, &st, 9, 0, "w4a8", pool);
    /* int8 activations on weights without an integer kernel: fake quantization */
    QParams w4a = {QF_INT4, 0, GROUP_OC, 64}, w4g16 = {QF_INT4, 1, GROUP_OC, 16}, w4ic = {QF_INT4, 1, GROUP_IC, 0};
    check_layer(W, 48, 256, w4a, &tok, 9, 0, "wq-int4", pool);
    check_layer(W, 48, 256, w4g16, &tok, 9, 0, "wq-int4", pool);
    check_layer(W, 48, 256, w4ic, &tok, 9, 0, "wq-int4", pool);
    check_layer(W, 48, 256, w4, NULL, 9, 0, "wq-int4", pool);
    QParams w8a = {QF_INT8, 0, GROUP_OC, 0}, w8g = {QF_INT8, 1, GROUP_OC, 64};
    check_layer(W, 48, 256, w8a, &tok, 9, 0, "wq-int8", pool);
    check_layer(W, 48, 256, w8g, &skip, 9, 0, "wq-int8", pool);
    /* fp8 activations */
    ActQuant e4 = {ACT_FP8_E4M3, 0, 0, 0, 1}, e5 = {ACT_FP8_E5M2, 1, 0, 0, 0};
    QParams f16 = {QF_F16, 1, GROUP_TENSOR, 0}, fe4 = {QF_FP8_E4M3, 1, GROUP_OC, 0};
    check_layer(W, 48, 256, f16, &e4, 9, 0, "fp16", pool);
    check_layer(W, 48, 256, fe4, &e4, 9, 0, "fp8-e4m3", pool);
    check_layer(W, 48, 256, w8, &e5, 9, 0, "wq-int8", pool);
}

/* qlinear_forward_shared gives each layer exactly qlinear_forward_pos's bits,
 * whatever mix of kernels and activation settings reads the one input. */
static void check_shared(const float *W, const QParams *ps, const ActQuant *const *aqs, const int64_t *ns, int n,
                         int64_t T, int64_t pos0, Pool *pool) {
    Err err;
    const int64_t k = 256;
    QLinear *ls[QLINEAR_SHARED_MAX];
    float *ys[QLINEAR_SHARED_MAX], *yr = malloc((size_t)(T * 48) * 4), *x = malloc((size_t)(T * k) * 4);
    CHECK(yr && x);
    for (int64_t i = 0; i < T * k; i++) x[i] = rng_uniform() * 2.0f;
    if (T > 1) x[5] = 30.0f; /* a spike in token 0 */
    for (int i = 0; i < n; i++) {
        QTensor q;
        CHECK_OK(rtn_quantize(W, ns[i], k, &ps[i], &q, &err), err);
        CHECK_OK(qlinear_new_from_qtensor(&q, aqs[i], &ls[i], &err), err);
        qtensor_done(&q);
        ys[i] = malloc((size_t)(T * ns[i]) * 4);
        CHECK(ys[i] != NULL);
    }
    CHECK_OK(qlinear_forward_shared((const QLinear *const *)ls, n, x, T, pos0, ys, pool, &err), err);
    for (int i = 0; i < n; i++) {
        CHECK_OK(qlinear_forward_pos(ls[i], x, T, pos0, yr, pool, &err), err);
        CHECKF(memcmp(yr, ys[i], (size_t)(T * ns[i]) * 4) == 0, "shared: layer %d of %d (%s) T=%lld pos0=%lld", i, n,
               qlinear_kernel_name(ls[i]), (long long)T, (long long)pos0);
        qlinear_free(ls[i]);
        free(ys[i]);
    }
    free(yr);
    free(x);
}

static void test_shared(const float *W, Pool *pool) {
    ActQuant tok = {ACT_INT8, 1, 0, 0, 0}, ten = {ACT_INT8, 0, 0, 0, 0}, skip = {ACT_INT8, 0, 0, 0, 1};
    ActQuant st = {ACT_INT8, 0, 1, 1.5f, 0}, st2 = {ACT_INT8, 0, 1, 2.5f, 0}, e4 = {ACT_FP8_E4M3, 1, 0, 0, 0};
    QParams w8 = {QF_INT8, 1, GROUP_OC, 0}, w4 = {QF_INT4, 1, GROUP_OC, 64}, w4a = {QF_INT4, 0, GROUP_OC, 64};
    QParams f16 = {QF_F16, 1, GROUP_TENSOR, 0};
    static const int64_t T[] = {1, 9, 200}; /* 200: W8A8 beyond one job's rows */
    for (int t = 0; t < 3; t++) {
        /* q/k/v-like: three W8A8, then two W4A8 */
        const QParams p1[] = {w8, w8, w8};
        const ActQuant *a1[] = {&tok, &tok, &tok};
        const int64_t n1[] = {48, 16, 16};
        check_shared(W, p1, a1, n1, 3, T[t], 0, pool);
        const QParams p2[] = {w4, w4};
        const ActQuant *a2[] = {&tok, &tok};
        const int64_t n2[] = {48, 32};
        check_shared(W, p2, a2, n2, 2, T[t], 0, pool);
        /* a mix: groups form across the list, the rest run alone */
        const QParams p3[] = {w8, w4, w8, w4a, f16, w4a, w8, f16};
        const ActQuant *a3[] = {&tok, &tok, &ten, &tok, NULL, &tok, &tok, &e4};
        const int64_t n3[] = {48, 32, 16, 48, 8, 16, 40, 24};
        check_shared(W, p3, a3, n3, 8, T[t], 3, pool);
        /* skip-first at and after position 0; static ranges, shared only when equal */
        const QParams p4[] = {w8, w8, w4, w4};
        const ActQuant *a4[] = {&skip, &skip, &skip, &skip};
        const int64_t n4[] = {48, 16, 32, 32};
        check_shared(W, p4, a4, n4, 4, T[t], 0, pool);
        check_shared(W, p4, a4, n4, 4, T[t], 12, pool);
        const ActQuant *a5[] = {&st, &st2, &st, &st2};
        check_shared(W, p4, a5, n4, 4, T[t], 0, pool);
    }
}

static void test_errors(const float *W) {
    Err err;
    QTensor q;
    QParams p = {QF_INT8, 1, GROUP_OC, 0};
    CHECK_OK(rtn_quantize(W, 8, 16, &p, &q, &err), err);
    QLinear *l;
    ActQuant st = {ACT_INT8, 0, 1, 0.0f, 0};
    CHECK(qlinear_new_from_qtensor(&q, &st, &l, &err) == ST_ERR_ARG && l == NULL);
    CHECK(strstr(err.detail, "static") != NULL);
    ActQuant bad = {(ActFormat)9, 0, 0, 0, 0};
    CHECK(qlinear_new_from_qtensor(&q, &bad, &l, &err) == ST_ERR_ARG);
    float *s = q.scale;
    q.scale = NULL;
    CHECK(qlinear_new_from_qtensor(&q, NULL, &l, &err) == ST_ERR_ARG);
    q.scale = s;
    q.p.fmt = QF_AQLM;
    CHECK(qlinear_new_from_qtensor(&q, NULL, &l, &err) == ST_ERR_UNSUPPORTED);
    q.p.fmt = QF_INT8;
    qtensor_done(&q);
    qlinear_free(NULL);

    /* plan entry -> activation settings */
    PlanEntry e;
    memset(&e, 0, sizeof e);
    e.act = ACT_FP8_E5M2;
    e.act_gran = ACT_PER_TOKEN;
    e.act_scale = ACT_STATIC;
    e.act_skip_first = 1;
    ActQuant a = qlinear_act_from_plan(&e, 3.5f);
    CHECK(a.fmt == ACT_FP8_E5M2 && a.per_token && a.is_static && a.static_absmax == 3.5f && a.skip_first);
}

/* A scratch buffer that cannot be allocated is a Status from the forward
 * (ST_ERR_NOMEM naming the kernel), not an abort: 2^40 rows of int8
 * activations (64 TiB) are refused by malloc before x or y is touched. */
static void test_nomem(const float *W) {
    if (getenv("QS_ASAN")) {
        printf("note: QS_ASAN: skipping the failed-allocation forward (ASan aborts on a 64 TiB request)\n");
        return;
    }
    Err err;
    err_init(&err);
    QParams w8 = {QF_INT8, 1, GROUP_OC, 0};
    ActQuant tok = {ACT_INT8, 1, 0, 0, 0}, fp8 = {ACT_FP8_E4M3, 1, 0, 0, 0};
    QParams w4 = {QF_INT4, 1, GROUP_OC, 32};
    const ActQuant *aqs[2] = {&tok, &fp8};
    const QParams *ps[2] = {&w8, &w4};
    for (int c = 0; c < 2; c++) {
        QTensor q;
        CHECK_OK(rtn_quantize(W, 48, 256, ps[c], &q, &err), err);
        QLinear *l;
        CHECK_OK(qlinear_new_from_qtensor(&q, aqs[c], &l, &err), err);
        qtensor_done(&q);
        float x[256], y[48];
        Status st = qlinear_forward(l, x, (int64_t)1 << 40, y, NULL, &err);
        CHECKF(st == ST_ERR_NOMEM && strstr(err.detail, "activations of 1099511627776 rows"), "%s: %d %s",
               qlinear_kernel_name(l), (int)st, err.detail);
        qlinear_free(l);
    }
}

int main(void) {
    Err err;
    Pool *pool;
    (void)testlib_shared;
    CHECK_OK(pool_new(2, &pool, &err), err);
    sgemm_set_threads(1);
    float *W = malloc(48 * 256 * sizeof *W);
    for (int i = 0; i < 48 * 256; i++) W[i] = rng_uniform() * (i % 37 == 0 ? 3.0f : 0.5f);
    test_weight_only(W, pool);
    test_weight_only(W, NULL);
    test_activations(W, pool);
    test_shared(W, pool);
    test_shared(W, NULL);
    test_errors(W);
    test_nomem(W);
    free(W);
    pool_free(pool);
    return testlib_done("test_qlinear");
}
