/* Format traits, RTN error bounds per format and grouping, asymmetric
 * exactness, fp8/fp16/bf16 edge values, group errors and exact byte counts. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fpconv.h"
#include "core/status.h"
#include "analysis/sensitivity.h"
#include "quant/format.h"
#include "quant/qtensor.h"
#include "quant/rtn.h"
#include "quant/smoothquant.h"
#include "tests/testlib.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void test_traits(void) {
    CHECK(qformat_parse("int4") == QF_INT4);
    CHECK(qformat_parse("INT4") == QF_INT4);
    CHECK(qformat_parse("I4") == QF_INT4);
    CHECK(qformat_parse("e4m3") == QF_FP8_E4M3);
    CHECK(qformat_parse("FP8-E5M2") == QF_FP8_E5M2);
    CHECK(qformat_parse("F16") == QF_F16);
    CHECK(qformat_parse("fp32") == QF_F32);
    CHECK(qformat_parse("bf16") == QF_BF16);
    CHECK(qformat_parse("aqlm") == QF_AQLM);
    CHECK(qformat_parse("int7") == -1);
    CHECK(qformat_parse("") == -1);
    CHECK(qformat_traits(QF_COUNT) == NULL);
    /* Every row of the table is self-consistent (ggml's test-quantize-fns
     * idea: the tests walk the table, so a new row is tested by being added). */
    int n_cycle = 0;
    for (int f = 0; f < QF_COUNT; f++) {
        const QFormatTraits *t = qformat_traits((QFormat)f);
        CHECK(t && t->name && t->code && t->kernel);
        CHECK(qformat_parse(t->name) == f);
        CHECK(qformat_parse(t->code) == f);
        CHECK(t->is_int == (t->family == QFAM_INT));
        CHECK(t->is_fp8 == (t->family == QFAM_FP8));
        CHECK(t->needs_scale == (t->fit != NULL));
        CHECK((t->fit != NULL) == (t->quant != NULL) && (t->quant != NULL) == (t->quant_span != NULL) &&
              (t->quant != NULL) == (t->dequant != NULL));
        CHECK((t->convert != NULL) == (t->family == QFAM_FLOAT) && (t->decode != NULL) == (t->convert != NULL));
        CHECK((t->pack != NULL) == (t->family != QFAM_AQLM));
        static const size_t store_bytes[] = {[QSTORE_NONE] = 0, [QSTORE_I8] = 1, [QSTORE_U8] = 1, [QSTORE_U16] = 2,
                                             [QSTORE_F32] = 4, [QSTORE_BLOCKS] = 0};
        CHECK(t->code_bytes == store_bytes[t->store]);
        int b = 0;
        if (t->family == QFAM_INT) CHECK(sscanf(t->name, "int%d", &b) == 1 && t->bits == b);
        else if (t->family == QFAM_GGML) CHECK(t->store == QSTORE_BLOCKS && t->ggml_type >= 0 && t->bits > 0);
        else if (t->family != QFAM_AQLM) CHECKF(t->bits == (int)t->code_bytes * 8, "%s", t->name);
        else CHECK(t->bits == 0 && t->code_bytes == 0);
        n_cycle += t->cycle > 0;
    }
    /* the lists: every format in the editor's cycle once, the map's candidates
     * are as many as the stats file holds */
    QFormat lst[QF_COUNT + 1];
    CHECK(qformat_list(QLIST_CYCLE, lst, QF_COUNT + 1) == QF_COUNT && n_cycle == QF_COUNT);
    for (int i = 0; i < QF_COUNT; i++)
        for (int j = 0; j < i; j++) CHECK(lst[i] != lst[j]);
    CHECK(lst[0] == QF_F16 && lst[QF_COUNT - 1] == QF_F32);
    CHECK(qformat_list(QLIST_SENS, lst, QF_COUNT) == SENS_NFMT);
    /* every format a plan can hold with RTN but the plain floats and aqlm: the scaled ones and ggml's */
    int n_rtn = 0;
    for (int f = 0; f < QF_COUNT; f++) {
        const QFormatTraits *t = qformat_traits((QFormat)f);
        int rtn = t->needs_scale || t->family == QFAM_GGML;
        n_rtn += rtn;
        CHECK((sens_fmt_index((QFormat)f) >= 0) == rtn);
    }
    CHECK(n_rtn == SENS_NFMT && sens_fmt_index(QF_INT5) == 2 && sens_fmt_index(QF_Q4_K) >= 8);
    for (int i = 0; i < SENS_NFMT; i++) CHECK(sens_fmt(i) == lst[i]);
    int n_end = qformat_list(QLIST_END_CYCLE, lst, QF_COUNT);
    CHECK(n_end >= 7 && lst[5] == QF_INT4 && lst[n_end - 1] == QF_F32);
    CHECK(qformat_traits(QF_INT8)->act_ok && qformat_traits(QF_FP8_E4M3)->act_ok && !qformat_traits(QF_INT4)->act_ok);
    CHECK(group_dim_parse("OC") == GROUP_OC && group_dim_parse("ic") == GROUP_IC &&
          group_dim_parse("tensor") == GROUP_TENSOR && group_dim_parse("x") == -1);
    CHECK(!strcmp(group_dim_name(GROUP_IC), "ic"));
}

static void test_fp_edges(void) {
    /* E4M3: max 448 = 0x7e, saturation above it, NaN = 0x7f. */
    CHECK(f32_to_fp8_e4m3(448.0f) == 0x7e);
    CHECK(f32_to_fp8_e4m3(448.0001f) == 0x7e);
    CHECK(f32_to_fp8_e4m3(464.0f) == 0x7e);    /* the tie towards 480 saturates */
    CHECK(f32_to_fp8_e4m3(1e9f) == 0x7e);
    CHECK(f32_to_fp8_e4m3(INFINITY) == 0x7e);
    CHECK(f32_to_fp8_e4m3(-448.0f) == 0xfe);
    CHECK(f32_to_fp8_e4m3(-1e9f) == 0xfe);
    CHECK(f32_to_fp8_e4m3(NAN) == 0x7f);
    CHECK(isnan(fp8_e4m3_to_f32(0x7f)) && isnan(fp8_e4m3_to_f32(0xff)));
    CHECK(fp8_e4m3_to_f32(0x7e) == 448.0f);
    CHECK(f32_to_fp8_e4m3(416.0f) == 0x7d);    /* 416 is exact (1.625 * 2^8) */
    CHECK(f32_to_fp8_e4m3(432.0f) == 0x7e);    /* tie 416|448 -> even mantissa 448 */
    /* subnormals: quantum 2^-9 */
    CHECK(f32_to_fp8_e4m3(ldexpf(1, -9)) == 0x01);
    CHECK(fp8_e4m3_to_f32(0x01) == ldexpf(1, -9));
    CHECK(f32_to_fp8_e4m3(ldexpf(1, -10)) == 0x00);            /* tie 0|1 -> 0 */
    CHECK(f32_to_fp8_e4m3(ldexpf(1.0001f, -10)) == 0x01);      /* just above the tie */
    CHECK(f32_to_fp8_e4m3(ldexpf(3, -10)) == 0x02);            /* tie 1|2 -> 2 */
    CHECK(f32_to_fp8_e4m3(ldexpf(7, -9)) == 0x07);             /* largest subnormal */
    CHECK(f32_to_fp8_e4m3(ldexpf(1, -6)) == 0x08);             /* smallest normal */
    CHECK(f32_to_fp8_e4m3(ldexpf(15, -10)) == 0x08);           /* tie 7|8 subnormal->normal: even 8 */
    CHECK(f32_to_fp8_e4m3(-0.0f) == 0x80);
    /* normal ties */
    CHECK(f32_to_fp8_e4m3(1.0625f) == 0x38);  /* 1.0|1.125 -> 1.0 */
    CHECK(f32_to_fp8_e4m3(1.1875f) == 0x3a);  /* 1.125|1.25 -> 1.25 */
    /* E5M2: max 57344 = 0x7b, inf 0x7c, NaN 0x7f. */
    CHECK(f32_to_fp8_e5m2(57344.0f) == 0x7b);
    CHECK(f32_to_fp8_e5m2(57345.0f) == 0x7b);
    CHECK(f32_to_fp8_e5m2(1e30f) == 0x7b);
    CHECK(f32_to_fp8_e5m2(-60000.0f) == 0xfb);
    CHECK(isnan(fp8_e5m2_to_f32(f32_to_fp8_e5m2(NAN))));
    CHECK(isinf(fp8_e5m2_to_f32(0x7c)));
    CHECK(f32_to_fp8_e5m2(ldexpf(1, -16)) == 0x01);
    CHECK(f32_to_fp8_e5m2(ldexpf(1, -17)) == 0x00);
    CHECK(f32_to_fp8_e5m2(ldexpf(3, -17)) == 0x02);
    CHECK(f32_to_fp8_e5m2(ldexpf(1, -14)) == 0x04);
    CHECK(f32_to_fp8_e5m2(1.125f) == 0x3c);   /* tie 1.0|1.25 -> 1.0 */
    CHECK(f32_to_fp8_e5m2(1.375f) == 0x3e);   /* tie 1.25|1.5 -> 1.5 */
    /* every code round-trips */
    for (int c = 0; c < 256; c++) {
        float v = fp8_e4m3_to_f32((uint8_t)c);
        if (!isnan(v)) CHECKF(f32_to_fp8_e4m3(v) == (c == 0x80 ? 0x80 : c), "e4m3 code %02x", c);
        v = fp8_e5m2_to_f32((uint8_t)c);
        if (!isnan(v) && !isinf(v)) CHECKF(f32_to_fp8_e5m2(v) == c, "e5m2 code %02x", c);
    }
    /* fp16 */
    CHECK(f32_to_fp16(65504.0f) == 0x7bff);
    CHECK(f32_to_fp16(65519.0f) == 0x7bff);
    CHECK(f32_to_fp16(65520.0f) == 0x7c00);
    CHECK(f32_to_fp16(ldexpf(1, -24)) == 0x0001);
    CHECK(f32_to_fp16(ldexpf(1, -25)) == 0x0000);
    CHECK(f32_to_fp16(ldexpf(3, -25)) == 0x0002);
    CHECK(f32_to_fp16(1.0f + ldexpf(1, -11)) == 0x3c00);
    CHECK(f32_to_fp16(1.0f + ldexpf(3, -11)) == 0x3c02);
    CHECK((f32_to_fp16(NAN) & 0x7c00) == 0x7c00 && (f32_to_fp16(NAN) & 0x3ff));
    /* bf16 */
    CHECK(f32_to_bf16(1.0f + ldexpf(1, -8)) == 0x3f80);
    CHECK(f32_to_bf16(1.0f + ldexpf(3, -8)) == 0x3f82);
    CHECK(isnan(bf16_to_f32(f32_to_bf16(NAN))));
    /* fp16 ceiling used for scales */
    CHECK(rtn_fp16_ceil(1.0f) == 1.0f);
    CHECK(rtn_fp16_ceil(1.0001f) == 1.0f + ldexpf(1, -10));
    CHECK(rtn_fp16_ceil(1e-9f) == ldexpf(1, -24));
    CHECK(isinf(rtn_fp16_ceil(70000.0f)));
}

/* The bit-level codecs in quant/rtn.h against core/fpconv.h: every code, and
 * a sweep over float bit patterns from below the smallest subnormal to above
 * the maximum, plus each midpoint between neighbouring codes and the floats
 * next to it. */
static void test_fast_fp8(void) {
    for (int e4 = 0; e4 <= 1; e4++) {
        for (int c = 0; c < 256; c++) {
            float r = e4 ? fp8_e4m3_to_f32((uint8_t)c) : fp8_e5m2_to_f32((uint8_t)c), v = rtn_fp8_decode((uint8_t)c, e4);
            CHECKF((isnan(r) && isnan(v)) || (r == v && signbit(r) == signbit(v)), "decode e4=%d %02x: %g vs %g", e4, c, v, r);
        }
        uint32_t lo = e4 ? 0x39000000u : 0x33000000u, hi = e4 ? 0x44000000u : 0x48000000u;
        for (uint32_t u = lo; u < hi; u += 61) {
            for (int s = 0; s < 2; s++) {
                uint32_t b = u | (uint32_t)s << 31;
                float f;
                memcpy(&f, &b, 4);
                uint8_t r = e4 ? f32_to_fp8_e4m3(f) : f32_to_fp8_e5m2(f);
                CHECKF(rtn_fp8_encode(f, e4) == r, "encode e4=%d %a: %02x vs %02x", e4, f, rtn_fp8_encode(f, e4), r);
            }
        }
        for (int c = 0; c < 0x7f; c++) {
            float a = e4 ? fp8_e4m3_to_f32((uint8_t)c) : fp8_e5m2_to_f32((uint8_t)c);
            float b = e4 ? fp8_e4m3_to_f32((uint8_t)(c + 1)) : fp8_e5m2_to_f32((uint8_t)(c + 1));
            if (isnan(b) || isinf(b)) continue;
            float mids[3];
            mids[0] = a + (b - a) * 0.5f;
            mids[1] = nextafterf(mids[0], 0.0f);
            mids[2] = nextafterf(mids[0], INFINITY);
            for (int k = 0; k < 3; k++) {
                uint8_t r = e4 ? f32_to_fp8_e4m3(mids[k]) : f32_to_fp8_e5m2(mids[k]);
                CHECKF(rtn_fp8_encode(mids[k], e4) == r, "mid e4=%d %a: %02x vs %02x", e4, mids[k], rtn_fp8_encode(mids[k], e4), r);
                CHECK(rtn_fp8_encode(-mids[k], e4) == (e4 ? f32_to_fp8_e4m3(-mids[k]) : f32_to_fp8_e5m2(-mids[k])));
            }
        }
        float sp[] = {0.0f, -0.0f, 1e-30f, -1e-30f, INFINITY, -INFINITY, NAN, 1e30f, 448.0f, 464.0f, 57344.0f, 61440.0f};
        for (size_t k = 0; k < sizeof sp / sizeof sp[0]; k++) {
            uint8_t r = e4 ? f32_to_fp8_e4m3(sp[k]) : f32_to_fp8_e5m2(sp[k]);
            CHECKF(rtn_fp8_encode(sp[k], e4) == r, "special e4=%d %g", e4, sp[k]);
        }
    }
}

/* Checks every bound of one quantization of W under p. */
static void check_rtn(const float *W, int64_t n_out, int64_t n_in, const QParams *p) {
    Err err;
    err_init(&err);
    QTensor q;
    CHECK_OK(rtn_quantize(W, n_out, n_in, p, &q, &err), err);
    const QFormatTraits *t = qformat_traits(p->fmt);
    size_t n = (size_t)(n_out * n_in);
    float *dq = malloc(n * sizeof *dq), *fq = malloc(n * sizeof *fq);
    qtensor_dequant(&q, dq);
    CHECK_OK(rtn_fake_quantize(W, n_out, n_in, p, fq, &err), err);
    CHECK(!memcmp(dq, fq, n * sizeof *dq));
    CHECK(q.n_groups == qparams_n_groups(p, n_out, n_in));
    /* Independent group maxima via qtensor_group_of. */
    float *gmin = malloc((size_t)q.n_groups * sizeof *gmin), *gmax = malloc((size_t)q.n_groups * sizeof *gmax);
    for (int64_t g = 0; g < q.n_groups; g++) { gmin[g] = INFINITY; gmax[g] = -INFINITY; }
    for (int64_t r = 0; r < n_out; r++)
        for (int64_t c = 0; c < n_in; c++) {
            int64_t g = qtensor_group_of(p, n_out, n_in, r, c);
            CHECK(g >= 0 && g < q.n_groups);
            gmin[g] = fminf(gmin[g], W[r * n_in + c]);
            gmax[g] = fmaxf(gmax[g], W[r * n_in + c]);
        }
    for (int64_t g = 0; g < q.n_groups; g++) {
        float s = q.scale[g];
        CHECK(fp16_to_f32(f32_to_fp16(s)) == s);
        float amax = fmaxf(fabsf(gmin[g]), fabsf(gmax[g]));
        float expect;
        if (t->is_fp8) expect = amax / (p->fmt == QF_FP8_E4M3 ? 448.0f : 57344.0f);
        else if (p->sym) expect = amax / (float)((1 << (t->bits - 1)) - 1);
        else expect = (fmaxf(gmax[g], 0) - fminf(gmin[g], 0)) / (float)((1 << t->bits) - 1);
        CHECKF(s >= expect && s <= rtn_fp16_ceil(expect), "group %lld scale %g expect %g", (long long)g, s, expect);
    }
    int bits = t->bits;
    for (int64_t r = 0; r < n_out; r++)
        for (int64_t c = 0; c < n_in; c++) {
            size_t i = (size_t)(r * n_in + c);
            int64_t g = qtensor_group_of(p, n_out, n_in, r, c);
            float s = q.scale[g], w = W[i], d = fabsf(w - dq[i]);
            if (t->is_int) {
                int lo = p->sym ? -((1 << (bits - 1)) - 1) : -(1 << (bits - 1));
                int hi = (1 << (bits - 1)) - 1;
                CHECK(q.q[i] >= lo && q.q[i] <= hi);
                CHECKF(d <= s * 0.5f * (1 + 1e-4f) /* float rounding of w/s + z */, "%s r%lld c%lld w %g q %g s %g", t->name,
                       (long long)r, (long long)c, w, dq[i], s);
            } else {
                /* fp8 with m mantissa bits: half an ulp relative, or half the
                 * subnormal quantum (times the scale) near zero */
                int m = p->fmt == QF_FP8_E4M3 ? 3 : 2;
                float subq = p->fmt == QF_FP8_E4M3 ? ldexpf(1, -9) : ldexpf(1, -16);
                float bound = fmaxf(fabsf(w) * ldexpf(1, -(m + 1)), s * subq * 0.5f) * (1 + 1e-5f);
                CHECKF(d <= bound, "%s r%lld c%lld w %g q %g s %g", t->name, (long long)r, (long long)c, w, dq[i], s);
            }
        }
    /* fake quantization in place gives the same values */
    memcpy(fq, W, n * sizeof *fq);
    CHECK_OK(rtn_fake_quantize(fq, n_out, n_in, p, fq, &err), err);
    CHECK(!memcmp(dq, fq, n * sizeof *dq));
    free(gmin);
    free(gmax);
    free(dq);
    free(fq);
    qtensor_done(&q);
    CHECK(q.q == NULL && q.scale == NULL);
}

static void test_rtn_bounds(void) {
    const int64_t n_out = 24, n_in = 48;
    float *W = malloc(n_out * n_in * sizeof *W);
    for (int64_t i = 0; i < n_out * n_in; i++) W[i] = frand() * (i % 7 == 0 ? 3.0f : 0.5f);
    W[5 * n_in + 17] = 40.0f; /* an outlier */
    struct { GroupDim d; int64_t g; } groups[] = {
        {GROUP_TENSOR, 0}, {GROUP_OC, 0}, {GROUP_OC, 8}, {GROUP_OC, 16}, {GROUP_IC, 0}, {GROUP_IC, 8}, {GROUP_IC, 12}};
    int n_fit = 0;
    for (int f = 0; f < QF_COUNT; f++) {
        if (!qformat_traits((QFormat)f)->fit) continue;
        n_fit++;
        for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
            for (int sym = 0; sym <= 1; sym++) {
                QParams p = {(QFormat)f, sym, groups[g].d, groups[g].g};
                check_rtn(W, n_out, n_in, &p);
            }
    }
    CHECK(n_fit == 8);
    /* fp16 / bf16 / f32: conversions */
    Err err;
    err_init(&err);
    float *Wq = malloc(n_out * n_in * sizeof *Wq);
    QParams p16 = {QF_F16, 1, GROUP_OC, 5}; /* grouping is ignored for 16-bit formats */
    CHECK_OK(rtn_fake_quantize(W, n_out, n_in, &p16, Wq, &err), err);
    for (int64_t i = 0; i < n_out * n_in; i++) CHECK(Wq[i] == fp16_to_f32(f32_to_fp16(W[i])));
    QTensor q;
    QParams pb = {QF_BF16, 1, GROUP_TENSOR, 0};
    CHECK_OK(rtn_quantize(W, n_out, n_in, &pb, &q, &err), err);
    CHECK(q.n_groups == 0 && q.h && !q.scale);
    qtensor_dequant(&q, Wq);
    for (int64_t i = 0; i < n_out * n_in; i++) {
        CHECK(q.h[i] == f32_to_bf16(W[i]));
        CHECK(Wq[i] == bf16_to_f32(f32_to_bf16(W[i])));
    }
    qtensor_done(&q);
    QParams pf = {QF_F32, 1, GROUP_TENSOR, 0};
    CHECK_OK(rtn_quantize(W, n_out, n_in, &pf, &q, &err), err);
    qtensor_dequant(&q, Wq);
    CHECK(!memcmp(W, Wq, n_out * n_in * sizeof *W));
    qtensor_done(&q);
    free(Wq);
    free(W);
}

/* rtn_fit + rtn_fit_rows (the sensitivity map's row subsamples) give each
 * listed row the very bits rtn_fake_quantize gives it in the whole matrix,
 * for every grouping of the scaled formats, a plain format and ggml blocks. */
static void test_fit_rows(void) {
    const int64_t n_out = 24, n_in = 256;
    float *W = malloc(n_out * n_in * sizeof *W), *full = malloc(n_out * n_in * sizeof *W);
    float *part = malloc(n_out * n_in * sizeof *W);
    for (int64_t i = 0; i < n_out * n_in; i++) W[i] = frand() * (i % 11 == 0 ? 2.0f : 0.3f);
    W[7 * n_in + 3] = -25.0f; /* an outlier sets the tensor's, its row's and its column's scale */
    const int64_t rows[] = {17, 3, 7, 0, 23, 12, 8};
    const int nr = (int)(sizeof rows / sizeof rows[0]);
    struct { QFormat f; GroupDim d; int64_t g; } cells[] = {
        {QF_INT4, GROUP_TENSOR, 0}, {QF_INT4, GROUP_OC, 0}, {QF_INT4, GROUP_OC, 32}, {QF_INT3, GROUP_IC, 0},
        {QF_INT8, GROUP_IC, 8}, {QF_FP8_E4M3, GROUP_IC, 0}, {QF_FP8_E5M2, GROUP_TENSOR, 0}, {QF_F16, GROUP_TENSOR, 0},
        {QF_Q4_K, GROUP_OC, 0}, {QF_Q2_K, GROUP_OC, 0}, {QF_Q8_0, GROUP_OC, 0}};
    Err err;
    err_init(&err);
    for (size_t c = 0; c < sizeof cells / sizeof cells[0]; c++) {
        QParams p = {cells[c].f, 1, cells[c].d, cells[c].g};
        CHECK_OK(rtn_fake_quantize(W, n_out, n_in, &p, full, &err), err);
        RtnFit fit;
        CHECK_OK(rtn_fit(W, n_out, n_in, &p, &fit, &err), err);
        CHECK_OK(rtn_fit_rows(&fit, W, rows, 3, part, &err), err); /* in two calls, as the map grows its sample */
        CHECK_OK(rtn_fit_rows(&fit, W, rows + 3, nr - 3, part + 3 * n_in, &err), err);
        for (int k = 0; k < nr; k++)
            CHECKF(!memcmp(part + k * n_in, full + rows[k] * n_in, n_in * sizeof *W), "%s dim %d g %lld row %lld",
                   qformat_traits(p.fmt)->name, (int)p.dim, (long long)p.group, (long long)rows[k]);
        const int64_t bad = n_out;
        CHECK(rtn_fit_rows(&fit, W, &bad, 1, part, &err) == ST_ERR_ARG);
        /* the fit from ranges taken once per grouping (shared by its formats) is the same fit */
        int64_t ng = qparams_n_groups(&p, n_out, n_in);
        if (ng > 0) {
            float *lo = malloc((size_t)ng * sizeof *lo), *hi = malloc((size_t)ng * sizeof *hi);
            RtnFit f2;
            CHECK_OK(rtn_ranges(W, n_out, n_in, &p, lo, hi, &err), err);
            CHECK_OK(rtn_fit_ranges(&p, n_out, n_in, lo, hi, &f2, &err), err);
            CHECK(f2.n_groups == fit.n_groups && memcmp(f2.scale, fit.scale, (size_t)ng * sizeof(float)) == 0 &&
                  memcmp(f2.zero, fit.zero, (size_t)ng * sizeof(float)) == 0);
            rtn_fit_done(&f2);
            free(lo);
            free(hi);
        }
        rtn_fit_done(&fit);
        rtn_fit_done(&fit); /* safe twice */
    }
    free(W);
    free(full);
    free(part);
}

static void test_asym_exact(void) {
    Err err;
    err_init(&err);
    /* row 0: constant 7.5 (int4 asym: scale 0.5, zero 0, code 15);
     * row 1: ramp -5*0.25 .. 10*0.25 in steps of 0.25 (zero point 5);
     * row 2: constant -3 (scale 0.2 is not fp16-exact: bound checked below);
     * row 3: zeros. */
    float W[4 * 16], Wq[4 * 16];
    for (int c = 0; c < 16; c++) {
        W[c] = 7.5f;
        W[16 + c] = (float)(c - 5) * 0.25f;
        W[32 + c] = -3.0f;
        W[48 + c] = 0.0f;
    }
    QParams p = {QF_INT4, 0, GROUP_OC, 0};
    CHECK_OK(rtn_fake_quantize(W, 4, 16, &p, Wq, &err), err);
    for (int c = 0; c < 16; c++) {
        CHECK(Wq[c] == 7.5f);
        CHECK(Wq[16 + c] == W[16 + c]);
        CHECK_NEAR(Wq[32 + c], -3.0f, 3.0f / 2048);
        CHECK(Wq[48 + c] == 0.0f);
    }
    QTensor q;
    CHECK_OK(rtn_quantize(W, 4, 16, &p, &q, &err), err);
    CHECK(q.scale[0] == 0.5f && q.zero[0] == 0.0f && q.q[0] == 15 - 8);
    CHECK(q.scale[1] == 0.25f && q.zero[1] == 5.0f && q.q[16] == 0 - 8 && q.q[31] == 15 - 8);
    CHECK(q.zero[2] == 15.0f && q.q[32] == 0 - 8);
    CHECK(q.scale[3] == 0.0f);
    qtensor_done(&q);
    /* the same ramp per column (GROUP_IC) for int8 with 255 steps */
    static float R[256 * 2], Rq[256 * 2];
    for (int r = 0; r < 256; r++) { R[2 * r] = (float)(r - 100) * 0.125f; R[2 * r + 1] = (float)r; }
    QParams pi = {QF_INT8, 0, GROUP_IC, 0};
    CHECK_OK(rtn_fake_quantize(R, 256, 2, &pi, Rq, &err), err);
    CHECK(!memcmp(R, Rq, sizeof R));
}

static void test_errors(void) {
    Err err;
    err_init(&err);
    float W[24 * 48] = {0}, Wq[24 * 48];
    QParams p = {QF_INT4, 1, GROUP_OC, 5};
    CHECK(rtn_fake_quantize(W, 24, 48, &p, Wq, &err) == ST_ERR_ARG);
    CHECK(strstr(err.detail, "group 5 does not divide the input dim 48"));
    QParams pi = {QF_INT4, 1, GROUP_IC, 7};
    QTensor q;
    CHECK(rtn_quantize(W, 24, 48, &pi, &q, &err) == ST_ERR_ARG);
    CHECK(strstr(err.detail, "group 7 does not divide the output dim 24"));
    CHECK(q.q == NULL);
    QParams pn = {QF_INT4, 1, GROUP_OC, -2};
    CHECK(qparams_check(&pn, 24, 48, &err) == ST_ERR_ARG);
    QParams pa = {QF_AQLM, 1, GROUP_OC, 8};
    CHECK(rtn_fake_quantize(W, 24, 48, &pa, Wq, &err) == ST_ERR_UNSUPPORTED);
    W[3 * 48 + 9] = NAN;
    QParams pok = {QF_INT8, 1, GROUP_OC, 0};
    CHECK(rtn_fake_quantize(W, 24, 48, &pok, Wq, &err) == ST_ERR_NUMERIC);
    CHECK(strstr(err.detail, "weight (3, 9) is not finite"));
    W[3 * 48 + 9] = 1e9f; /* needs scale 1e9/7 > 65504 for int4 */
    QParams p4 = {QF_INT4, 1, GROUP_TENSOR, 0};
    CHECK(rtn_fake_quantize(W, 24, 48, &p4, Wq, &err) == ST_ERR_RANGE);
    QParams pbad = {(QFormat)99, 1, GROUP_OC, 0};
    CHECK(rtn_fake_quantize(W, 24, 48, &pbad, Wq, &err) == ST_ERR_ARG);
}

static void test_bytes(void) {
    QParams p = {QF_INT4, 1, GROUP_OC, 32};
    CHECK(qparams_bits(&p, 64, 64) == 4096 * 4 + 128 * 16);
    CHECK(qparams_bytes(&p, 64, 64) == (4096 * 4 + 128 * 16) / 8);
    QParams a = {QF_INT3, 0, GROUP_OC, 0}; /* 10x10: 300 code bits, 10 scales, 10 3-bit zeros */
    CHECK(qparams_bits(&a, 10, 10) == 300 + 160 + 30);
    CHECK(qparams_bytes(&a, 10, 10) == 38 + 20 + 4);
    QParams ic = {QF_INT4, 0, GROUP_IC, 16}; /* 64x172: ic16 -> 4 * 172 groups */
    CHECK(qparams_bits(&ic, 64, 172) == 64 * 172 * 4 + 688 * 16 + 688 * 4);
    QParams e = {QF_FP8_E4M3, 0, GROUP_TENSOR, 0}; /* sym ignored for fp8 */
    CHECK(qparams_bytes(&e, 7, 9) == 63 + 2);
    QParams h = {QF_F16, 1, GROUP_OC, 0}, b = {QF_BF16, 1, GROUP_TENSOR, 0}, f = {QF_F32, 1, GROUP_TENSOR, 0};
    CHECK(qparams_bytes(&h, 64, 172) == 2 * 64 * 172);
    CHECK(qparams_bytes(&b, 3, 5) == 30);
    CHECK(qparams_bytes(&f, 3, 5) == 60 && qparams_bits(&f, 3, 5) == 480);
    QParams i8t = {QF_INT8, 1, GROUP_TENSOR, 0};
    CHECK(qparams_bits(&i8t, 64, 64) == 4096 * 8 + 16);
    QParams aq = {QF_AQLM, 1, GROUP_OC, 8};
    CHECK(qparams_bits(&aq, 64, 64) == 0);
}

static void test_smoothquant(void) {
    Err err;
    err_init(&err);
    /* hand values, alpha 0.5: s = sqrt(a) / sqrt(w) over both matrices' columns */
    float act[4] = {16.0f, 1.0f, 0.0f, 9.0f};
    float W1[2 * 4] = {4.0f, 0.25f, 1.0f, 0.0f, -1.0f, 0.5f, 2.0f, 0.0f};
    float W2[1 * 4] = {-2.0f, 1.0f, 3.0f, 0.0f};
    const float *Ws[2] = {W1, W2};
    int64_t n_out[2] = {2, 1};
    float s[4];
    CHECK_OK(smooth_scales(act, Ws, n_out, 2, 4, 0.5f, s, &err), err);
    CHECK_NEAR(s[0], 2.0, 1e-6);   /* sqrt(16) / sqrt(4) */
    CHECK_NEAR(s[1], 1.0, 1e-6);   /* sqrt(1) / sqrt(1) */
    CHECK(s[2] == 1.0f);           /* silent channel */
    CHECK(s[3] == 1.0f);           /* zero weight column */
    CHECK_OK(smooth_scales(act, Ws, n_out, 2, 4, 1.0f, s, &err), err);
    CHECK_NEAR(s[0], 16.0, 1e-5);  /* alpha 1: all of the activation range moves */
    CHECK_OK(smooth_scales(act, Ws, n_out, 2, 4, 0.0f, s, &err), err);
    CHECK_NEAR(s[0], 0.25, 1e-7);  /* alpha 0: 1 / max|W| */
    CHECK(smooth_scales(act, Ws, n_out, 2, 4, 1.5f, s, &err) == ST_ERR_ARG);
    act[1] = NAN;
    CHECK(smooth_scales(act, Ws, n_out, 2, 4, 0.5f, s, &err) == ST_ERR_NUMERIC);
    /* the function is unchanged: y = (x * gain) Wᵀ before and after, and the
     * smoothed activation and weight maxima meet at sqrt(a * w) for alpha 0.5 */
    enum { N = 48, T = 20, O1 = 24, O2 = 10 };
    static float x[T * N], gain[N], A[O1 * N], B[O2 * N], A2[O1 * N], B2[O2 * N], g2[N], amax[N], sc[N];
    for (int j = 0; j < N; j++) { gain[j] = 0.5f + 0.5f * fabsf(frand()); amax[j] = 0; }
    for (int t = 0; t < T; t++)
        for (int j = 0; j < N; j++) {
            x[t * N + j] = frand() * (j == 7 ? 60.0f : 1.0f); /* an outlier channel */
            amax[j] = fmaxf(amax[j], fabsf(x[t * N + j] * gain[j]));
        }
    for (int i = 0; i < O1 * N; i++) A[i] = frand() * 0.1f;
    for (int i = 0; i < O2 * N; i++) B[i] = frand() * 0.1f;
    const float *in[2] = {A, B};
    float *outw[2] = {A2, B2};
    int64_t no[2] = {O1, O2};
    CHECK_OK(smooth_scales(amax, in, no, 2, N, 0.5f, sc, &err), err);
    CHECK(sc[7] > 5.0f);
    CHECK_OK(smooth_apply(gain, in, no, 2, N, sc, g2, outw, &err), err);
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < T; t++)
            for (int r = 0; r < no[k]; r++) {
                double y0 = 0, y1 = 0, mag = 0;
                for (int j = 0; j < N; j++) {
                    y0 += (double)x[t * N + j] * gain[j] * in[k][r * N + j];
                    y1 += (double)x[t * N + j] * g2[j] * outw[k][r * N + j];
                    mag += fabs((double)x[t * N + j] * gain[j] * in[k][r * N + j]);
                }
                CHECK_NEAR(y1, y0, 1e-6 * mag);
            }
    for (int j = 0; j < N; j++) {
        float wm = 0;
        for (int r = 0; r < O1; r++) wm = fmaxf(wm, fabsf(A2[r * N + j]));
        for (int r = 0; r < O2; r++) wm = fmaxf(wm, fabsf(B2[r * N + j]));
        CHECK_NEAR(amax[j] / sc[j], wm, 1e-5 * wm);
    }
    /* in place on the caller's copies */
    CHECK_OK(smooth_apply(gain, in, no, 2, N, sc, gain, (float *const[]){A, B}, &err), err);
    CHECK(!memcmp(A, A2, sizeof A) && !memcmp(gain, g2, sizeof gain));
    sc[3] = 0;
    CHECK(smooth_apply(gain, in, no, 2, N, sc, g2, outw, &err) == ST_ERR_ARG);
}

int main(void) {
    (void)testlib_shared; /* this test needs no shared files */
    test_traits();
    test_fp_edges();
    test_fast_fp8();
    test_rtn_bounds();
    test_fit_rows();
    test_asym_exact();
    test_errors();
    test_bytes();
    test_smoothquant();
    return testlib_done("test_quant");
}
