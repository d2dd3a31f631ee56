#include "kernels/actquant.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "core/fpconv.h"
#include "core/scratch.h"
#include "kernels/cpu.h"
#include "kernels/simd.h"

static const char *const ACT_NAMES[ACT_COUNT] = {"none", "int8", "fp8-e4m3", "fp8-e5m2"};

const char *act_format_name(ActFormat f) { return (unsigned)f < ACT_COUNT ? ACT_NAMES[f] : "?"; }

float actq_qmax(ActFormat f) {
    switch (f) {
    case ACT_INT8: return 127.0f;
    case ACT_FP8_E4M3: return FP8_E4M3_MAX;
    case ACT_FP8_E5M2: return FP8_E5M2_MAX;
    default: return 0.0f;
    }
}

/* A NaN anywhere makes the absmax NaN (and so the scale, and every output
 * the scale multiplies): a non-finite activation is never quantized away. */
float actq_absmax_ref(const float *x, int64_t n) {
    float m = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > m) m = a;
        else if (a != a) return a;
    }
    return m;
}

QS_TARGET_AVX512
static float actq_absmax_avx512(const float *x, int64_t n) {
    __m512 m = _mm512_setzero_ps();
    __mmask16 nan = 0; /* max_ps drops NaN (it returns its second operand): count them apart */
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m = _mm512_max_ps(m, _mm512_abs_ps(v));
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m = _mm512_max_ps(m, _mm512_abs_ps(v));
    }
    return nan ? NAN : _mm512_reduce_max_ps(m);
}

QS_TARGET_AVX2
static float actq_absmax_avx2(const float *x, int64_t n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 m0 = _mm256_setzero_ps(), m1 = m0, nan = m0; /* max_ps drops NaN: gather them apart */
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v0, v1, _CMP_UNORD_Q)); /* either one NaN */
        m0 = _mm256_max_ps(m0, _mm256_and_ps(v0, absmask));
        m1 = _mm256_max_ps(m1, _mm256_and_ps(v1, absmask));
    }
    if (_mm256_movemask_ps(nan)) return NAN;
    float lanes[8], m = 0.0f;
    _mm256_storeu_ps(lanes, _mm256_max_ps(m0, m1));
    for (int j = 0; j < 8; j++) m = lanes[j] > m ? lanes[j] : m;
    float r = actq_absmax_ref(x + i, n - i); /* max is exact: any order gives the same value */
    return r > m || r != r ? r : m;
}

float actq_absmax(const float *x, int64_t n) {
    if (cpu_has_avx512f()) return actq_absmax_avx512(x, n);
    if (cpu_has_avx2()) return actq_absmax_avx2(x, n);
    return actq_absmax_ref(x, n);
}

void actq_scales(const ActQuant *aq, const float *x, int64_t T, int64_t K, int64_t pos0, float *scale) {
    float qmax = actq_qmax(aq->fmt);
    if (qmax == 0.0f) {
        for (int64_t t = 0; t < T; t++) scale[t] = 1.0f;
        return;
    }
    if (aq->is_static) {
        for (int64_t t = 0; t < T; t++) scale[t] = aq->static_absmax / qmax;
        return;
    }
    if (aq->per_token) {
        for (int64_t t = 0; t < T; t++) scale[t] = actq_absmax(x + t * K, K) / qmax;
        return;
    }
    int64_t t0 = (aq->skip_first && pos0 == 0 && T > 1) ? 1 : 0;
    float r = actq_absmax(x + t0 * K, (T - t0) * K);
    for (int64_t t = 0; t < T; t++) scale[t] = r / qmax;
}

void actq_int8_row_ref(const float *x, int64_t n, float s, int8_t *q) {
    if (s == 0.0f || !isfinite(s)) { /* a non-finite scale carries the NaN/inf to the output */
        memset(q, 0, (size_t)n);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] / s;
        v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
        q[i] = (int8_t)nearbyintf(v);
    }
}

QS_TARGET_AVX512
static void actq_int8_row_avx512(const float *x, int64_t n, float s, int8_t *q) {
    if (s == 0.0f || !isfinite(s)) {
        memset(q, 0, (size_t)n);
        return;
    }
    const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    int64_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(k, x + i), vs);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
        __m512i c = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_mask_storeu_epi8(q + i, k, _mm512_cvtepi32_epi8(c));
    }
}

/* The reference's operations lane for lane: divide, clamp, round to
 * nearest even (cvtps in the default rounding mode, as nearbyintf). */
QS_TARGET_AVX2
static void actq_int8_row_avx2(const float *x, int64_t n, float s, int8_t *q) {
    if (s == 0.0f || !isfinite(s)) {
        memset(q, 0, (size_t)n);
        return;
    }
    const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i c[4];
        for (int j = 0; j < 4; j++) {
            __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i + 8 * j), vs);
            c[j] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
        }
        /* the packs work within 128-bit lanes: put the 4-byte groups back in order */
        __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_permutevar8x32_epi32(b, order));
    }
    actq_int8_row_ref(x + i, n - i, s, q + i);
}

void actq_int8_row(const float *x, int64_t n, float s, int8_t *q) {
    if (cpu_has_avx512f()) actq_int8_row_avx512(x, n, s, q);
    else if (cpu_has_avx2()) actq_int8_row_avx2(x, n, s, q);
    else actq_int8_row_ref(x, n, s, q);
}

typedef struct QuantTask {
    const float *x;
    int64_t K, ldq;
    int8_t *q;
    float *scale;            /* (T); filled per row when row_scales */
    int row_scales;          /* dynamic per-token: each row takes its own range */
} QuantTask;

static void actq_quant_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const QuantTask *t = arg;
    for (int64_t r = b; r < e; r++) {
        const float *xr = t->x + r * t->K;
        if (t->row_scales) t->scale[r] = actq_absmax(xr, t->K) / 127.0f;
        actq_int8_row(xr, t->K, t->scale[r], t->q + r * t->ldq);
        if (t->ldq > t->K) memset(t->q + r * t->ldq + t->K, 0, (size_t)(t->ldq - t->K));
    }
}

void actq_quantize_int8(const ActQuant *aq, const float *x, int64_t T, int64_t K, int64_t pos0,
                        int8_t *q, int64_t ldq, float *scale, Pool *pool) {
    QuantTask t = {x, K, ldq, q, scale, aq->per_token && !aq->is_static};
    if (!t.row_scales) actq_scales(aq, x, T, K, pos0, scale);
    pool_for(pool, T, 4, actq_quant_rows, &t);
}

/* === fp8 rounding: one definition, scalar and in SSE2 / AVX-512 lanes === */

/* Rounding to nearest even by the 1.5·2^23 trick: exact for |v| < 2^22 in
 * the default rounding mode, and branch-free (rintf is a libm call on
 * baseline x86-64). Callers keep |v| small: int8 clamps first, fp8 only
 * rounds subnormals (|v| < 8 steps) this way. */
#define RNE_MAGIC 12582912.0f

/* Rounds |v| to mbits mantissa bits (ties to even) with normals from
 * min_normal up, subnormal steps of sub_step below, saturating at maxv;
 * branch-free so the SSE2 kernel below can mirror it lane for lane. */
static inline float fp8_round_bits(float v, int drop, float min_normal, float sub_step, float inv_sub, float maxv) {
    float a = fabsf(v);
    a = a < maxv ? a : maxv;
    uint32_t b;
    memcpy(&b, &a, sizeof b);
    b = (b + ((1u << (drop - 1)) - 1u) + ((b >> drop) & 1u)) & ~((1u << drop) - 1u);
    float rn;
    memcpy(&rn, &b, sizeof rn);
    float rs = ((a * inv_sub + RNE_MAGIC) - RNE_MAGIC) * sub_step;
    float r = a < min_normal ? rs : rn;
    r = r < maxv ? r : maxv;
    return copysignf(r, v);
}

float actq_fp8_round_e4m3(float v) { return fp8_round_bits(v, 20, 0x1p-6f, 0x1p-9f, 0x1p9f, 448.0f); }
float actq_fp8_round_e5m2(float v) { return fp8_round_bits(v, 21, 0x1p-14f, 0x1p-16f, 0x1p16f, 57344.0f); }

/* SSE2 is part of the x86-64 baseline: no dispatch needed. Lane for lane the
 * same operations as actq_quant; only the summation order differs (float
 * partial sums of 4 lanes per call, folded into double). */
static inline __m128 sse_fp8(__m128 y, int drop, float min_normal, float sub_step, float inv_sub, float maxv) {
    const __m128 sign = _mm_set1_ps(-0.0f), mx = _mm_set1_ps(maxv), mag = _mm_set1_ps(RNE_MAGIC);
    __m128 a = _mm_min_ps(_mm_andnot_ps(sign, y), mx);
    __m128i b = _mm_castps_si128(a);
    __m128i odd = _mm_and_si128(_mm_srli_epi32(b, drop), _mm_set1_epi32(1));
    b = _mm_add_epi32(b, _mm_add_epi32(_mm_set1_epi32((int)((1u << (drop - 1)) - 1u)), odd));
    b = _mm_and_si128(b, _mm_set1_epi32((int)~((1u << drop) - 1u)));
    __m128 rn = _mm_castsi128_ps(b);
    __m128 rs = _mm_mul_ps(_mm_sub_ps(_mm_add_ps(_mm_mul_ps(a, _mm_set1_ps(inv_sub)), mag), mag), _mm_set1_ps(sub_step));
    __m128 sel = _mm_cmplt_ps(a, _mm_set1_ps(min_normal));
    __m128 r = _mm_or_ps(_mm_and_ps(sel, rs), _mm_andnot_ps(sel, rn));
    r = _mm_min_ps(r, mx);
    return _mm_or_ps(r, _mm_and_ps(sign, y));
}

/* AVX-512: the same lane operations 16 wide (integer ops for abs/sign so
 * only AVX512F is needed). */
static inline __m512 avx512_fp8(__m512 y, int drop, float min_normal, float sub_step, float inv_sub, float maxv)
    QS_TARGET_AVX512;
static inline __m512 avx512_fp8(__m512 y, int drop, float min_normal, float sub_step, float inv_sub, float maxv) {
    const __m512i absm = _mm512_set1_epi32(0x7fffffff), signm = _mm512_set1_epi32((int)0x80000000u);
    const __m512 mx = _mm512_set1_ps(maxv), mag = _mm512_set1_ps(RNE_MAGIC);
    __m512i yi = _mm512_castps_si512(y);
    __m512 a = _mm512_min_ps(_mm512_castsi512_ps(_mm512_and_si512(yi, absm)), mx);
    __m512i b = _mm512_castps_si512(a);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(b, (unsigned)drop), _mm512_set1_epi32(1));
    b = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32((int)((1u << (drop - 1)) - 1u)), odd));
    b = _mm512_and_si512(b, _mm512_set1_epi32((int)~((1u << drop) - 1u)));
    __m512 rn = _mm512_castsi512_ps(b);
    __m512 rs = _mm512_mul_ps(_mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(a, _mm512_set1_ps(inv_sub)), mag), mag),
                              _mm512_set1_ps(sub_step));
    __mmask16 sel = _mm512_cmp_ps_mask(a, _mm512_set1_ps(min_normal), _CMP_LT_OQ);
    __m512 r = _mm512_min_ps(_mm512_mask_blend_ps(sel, rn, rs), mx);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r), _mm512_and_si512(yi, signm)));
}

/* === fake quantization === */

void actq_fake_row_ref(ActFormat fmt, const float *x, int64_t n, float s, float *out) {
    if (s == 0.0f || fmt == ACT_NONE) {
        for (int64_t i = 0; i < n; i++) out[i] = s == 0.0f && fmt != ACT_NONE ? 0.0f : x[i];
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] / s;
        if (fmt == ACT_INT8) {
            v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
            out[i] = nearbyintf(v) * s;
        } else if (fmt == ACT_FP8_E4M3) {
            out[i] = fp8_e4m3_to_f32(f32_to_fp8_e4m3(v)) * s;
        } else {
            out[i] = fp8_e5m2_to_f32(f32_to_fp8_e5m2(v)) * s;
        }
    }
}

QS_TARGET_AVX512
void actq_fake_row_avx512(ActFormat fmt, const float *x, int64_t n, float s, float *out) {
    if (s == 0.0f || fmt == ACT_NONE || fmt >= ACT_COUNT) {
        actq_fake_row_ref(fmt, x, n, s, out);
        return;
    }
    const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(k, x + i), vs), r;
        if (fmt == ACT_INT8) {
            v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            r = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        } else {
            r = fmt == ACT_FP8_E4M3 ? avx512_fp8(v, 20, 0x1p-6f, 0x1p-9f, 0x1p9f, FP8_E4M3_MAX)
                                     : avx512_fp8(v, 21, 0x1p-14f, 0x1p-16f, 0x1p16f, FP8_E5M2_MAX);
        }
        _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(r, vs));
    }
}

typedef struct FakeTask {
    ActFormat fmt;
    const float *x;
    float *out;
    const float *scale;      /* (T) */
    int64_t K;
    int fast;
} FakeTask;

static void actq_fake_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const FakeTask *t = arg;
    for (int64_t r = b; r < e; r++) {
        if (t->fast) actq_fake_row_avx512(t->fmt, t->x + r * t->K, t->K, t->scale[r], t->out + r * t->K);
        else actq_fake_row_ref(t->fmt, t->x + r * t->K, t->K, t->scale[r], t->out + r * t->K);
    }
}

void actq_fake(const ActQuant *aq, const float *x, int64_t T, int64_t K, int64_t pos0, float *out, Pool *pool) {
    if (aq->fmt == ACT_NONE || aq->fmt >= ACT_COUNT) {
        if (out != x) memmove(out, x, (size_t)(T * K) * sizeof *out);
        return;
    }
    /* every scale is taken before any row is written: out may alias x */
    float *scale = scratch_get(SCRATCH_ACTQ_SCALE, (size_t)T * sizeof *scale);
    ASSERT(scale != NULL);
    actq_scales(aq, x, T, K, pos0, scale);
    FakeTask t = {aq->fmt, x, out, scale, K, cpu_has_avx512f()};
    pool_for(pool, T, 4, actq_fake_rows, &t);
}

/* === The quantization error of int8 and fp8 activations (calibration's statistics) === */

float actq_quant(ActFormat f, float x, float s, float inv) {
    float v = x * inv;
    switch (f) {
    case ACT_INT8: {
        v = v > 127.0f ? 127.0f : v;
        v = v < -127.0f ? -127.0f : v;
        return ((v + RNE_MAGIC) - RNE_MAGIC) * s;
    }
    case ACT_FP8_E4M3: return actq_fp8_round_e4m3(v) * s;
    case ACT_FP8_E5M2: return actq_fp8_round_e5m2(v) * s;
    default: return 0;
    }
}

void actq_err_row_ref(const float *x, int64_t n, const float s[ACT_COUNT][ACTQ_ERR_SCALES],
                     const float inv[ACT_COUNT][ACTQ_ERR_SCALES], double err[ACT_COUNT][ACTQ_ERR_SCALES]) {
    for (int f = ACT_INT8; f < ACT_COUNT; f++)
        for (int m = 0; m < ACTQ_ERR_SCALES; m++) {
            double e = 0;
            for (int64_t i = 0; i < n; i++) {
                float d = x[i] - actq_quant((ActFormat)f, x[i], s[f][m], inv[f][m]);
                e += (double)d * d;
            }
            err[f][m] += e;
        }
}

static void actq_err_row_sse2(const float *x, int64_t n, const float s[ACT_COUNT][ACTQ_ERR_SCALES],
                             const float inv[ACT_COUNT][ACTQ_ERR_SCALES], double err[ACT_COUNT][ACTQ_ERR_SCALES]);

QS_TARGET_AVX512 static void actq_err_row_avx512(
    const float *x, int64_t n, const float s[ACT_COUNT][ACTQ_ERR_SCALES],
    const float inv[ACT_COUNT][ACTQ_ERR_SCALES], double err[ACT_COUNT][ACTQ_ERR_SCALES]) {
    int64_t n16 = n & ~(int64_t)15;
    __m512 acc[ACT_COUNT][ACTQ_ERR_SCALES];
    for (int f = ACT_INT8; f < ACT_COUNT; f++)
        for (int m = 0; m < ACTQ_ERR_SCALES; m++) acc[f][m] = _mm512_setzero_ps();
    const __m512 mag = _mm512_set1_ps(RNE_MAGIC), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (int64_t i = 0; i < n16; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        for (int m = 0; m < ACTQ_ERR_SCALES; m++) {
            __m512 y = _mm512_mul_ps(v, _mm512_set1_ps(inv[ACT_INT8][m]));
            y = _mm512_max_ps(_mm512_min_ps(y, hi), lo);
            __m512 q = _mm512_mul_ps(_mm512_sub_ps(_mm512_add_ps(y, mag), mag), _mm512_set1_ps(s[ACT_INT8][m]));
            __m512 d = _mm512_sub_ps(v, q);
            acc[ACT_INT8][m] = _mm512_add_ps(acc[ACT_INT8][m], _mm512_mul_ps(d, d));
            y = _mm512_mul_ps(v, _mm512_set1_ps(inv[ACT_FP8_E4M3][m]));
            q = _mm512_mul_ps(avx512_fp8(y, 20, 0x1p-6f, 0x1p-9f, 0x1p9f, 448.0f), _mm512_set1_ps(s[ACT_FP8_E4M3][m]));
            d = _mm512_sub_ps(v, q);
            acc[ACT_FP8_E4M3][m] = _mm512_add_ps(acc[ACT_FP8_E4M3][m], _mm512_mul_ps(d, d));
            y = _mm512_mul_ps(v, _mm512_set1_ps(inv[ACT_FP8_E5M2][m]));
            q = _mm512_mul_ps(avx512_fp8(y, 21, 0x1p-14f, 0x1p-16f, 0x1p16f, 57344.0f), _mm512_set1_ps(s[ACT_FP8_E5M2][m]));
            d = _mm512_sub_ps(v, q);
            acc[ACT_FP8_E5M2][m] = _mm512_add_ps(acc[ACT_FP8_E5M2][m], _mm512_mul_ps(d, d));
        }
    }
    for (int f = ACT_INT8; f < ACT_COUNT; f++)
        for (int m = 0; m < ACTQ_ERR_SCALES; m++) {
            float t[16];
            _mm512_storeu_ps(t, acc[f][m]);
            double e = 0;
            for (int k = 0; k < 16; k++) e += t[k];
            err[f][m] += e;
        }
    if (n16 < n) actq_err_row_sse2(x + n16, n - n16, s, inv, err);
}

/* AVX2 (CPUs without AVX-512, e.g. Zen 3): the SSE2 lane operations 8 wide;
 * "avx2" without "fma", so no multiply-add is contracted and every lane
 * rounds as act_quant does. Where it ran 4 wide it was 5 % of a calibration
 * without H on the tinyllama synth. */
#define T256 __attribute__((target("avx2")))
T256 static inline __m256 avx2_fp8(__m256 y, int drop, float min_normal, float sub_step, float inv_sub, float maxv) {
    const __m256 sign = _mm256_set1_ps(-0.0f), mx = _mm256_set1_ps(maxv), mag = _mm256_set1_ps(RNE_MAGIC);
    __m256 a = _mm256_min_ps(_mm256_andnot_ps(sign, y), mx);
    __m256i b = _mm256_castps_si256(a);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(b, drop), _mm256_set1_epi32(1));
    b = _mm256_add_epi32(b, _mm256_add_epi32(_mm256_set1_epi32((int)((1u << (drop - 1)) - 1u)), odd));
    b = _mm256_and_si256(b, _mm256_set1_epi32((int)~((1u << drop) - 1u)));
    __m256 rn = _mm256_castsi256_ps(b);
    __m256 rs = _mm256_mul_ps(
        _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(a, _mm256_set1_ps(inv_sub)), mag), mag), _mm256_set1_ps(sub_step));
    __m256 sel = _mm256_cmp_ps(a, _mm256_set1_ps(min_normal), _CMP_LT_OQ);
    __m256 r = _mm256_min_ps(_mm256_blendv_ps(rn, rs, sel), mx);
    return _mm256_or_ps(r, _mm256_and_ps(sign, y));
}

T256 static void actq_err_row_avx2(const float *x, int64_t n, const float s[ACT_COUNT][ACTQ_ERR_SCALES],
                                  const float inv[ACT_COUNT][ACTQ_ERR_SCALES],
                                  double err[ACT_COUNT][ACTQ_ERR_SCALES]) {
    int64_t n8 = n & ~(int64_t)7;
    __m256 acc[ACT_COUNT][ACTQ_ERR_SCALES];
    for (int f = ACT_INT8; f < ACT_COUNT; f++)
        for (int m = 0; m < ACTQ_ERR_SCALES; m++) acc[f][m] = _mm256_setzero_ps();
    const __m256 mag = _mm256_set1_ps(RNE_MAGIC), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    for (int64_t i = 0; i < n8; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        for (int m = 0; m < ACTQ_ERR_SCALES; m++) {
            __m256 y = _mm256_mul_ps(v, _mm256_set1_ps(inv[ACT_INT8][m]));
            y = _mm256_max_ps(_mm256_min_ps(y, hi), lo);
            __m256 q = _mm256_mul_ps(_mm256_sub_ps(_mm256_add_ps(y, mag), mag), _mm256_set1_ps(s[ACT_INT8][m]));
            __m256 d = _mm256_sub_ps(v, q);
            acc[ACT_INT8][m] = _mm256_add_ps(acc[ACT_INT8][m], _mm256_mul_ps(d, d));
            y = _mm256_mul_ps(v, _mm256_set1_ps(inv[ACT_FP8_E4M3][m]));
            q = _mm256_mul_ps(avx2_fp8(y, 20, 0x1p-6f, 0x1p-9f, 0x1p9f, 448.0f), _mm256_set1_ps(s[ACT_FP8_E4M3][m]));
            d = _mm256_sub_ps(v, q);
            acc[ACT_FP8_E4M3][m] = _mm256_add_ps(acc[ACT_FP8_E4M3][m], _mm256_mul_ps(d, d));
            y = _mm256_mul_ps(v, _mm256_set1_ps(inv[ACT_FP8_E5M2][m]));
            q = _mm256_mul_ps(avx2_fp8(y, 21, 0x1p-14f, 0x1p-16f, 0x1p16f, 57344.0f),
                              _mm256_set1_ps(s[ACT_FP8_E5M2][m]));
            d = _mm256_sub_ps(v, q);
            acc[ACT_FP8_E5M2][m] = _mm256_add_ps(acc[ACT_FP8_E5M2][m], _mm256_mul_ps(d, d));
        }
    }
    for (int f = ACT_INT8; f < ACT_COUNT; f++)
        for (int m = 0; m < ACTQ_ERR_SCALES; m++) {
            float t[8];
            _mm256_storeu_ps(t, acc[f][m]);
            double e = 0;
            for (int k = 0; k < 8; k++) e += t[k];
            err[f][m] += e;
        }
    if (n8 < n) actq_err_row_sse2(x + n8, n - n8, s, inv, err);
}

void actq_err_row(const float *x, int64_t n, const float s[ACT_COUNT][ACTQ_ERR_SCALES],
                 const float inv[ACT_COUNT][ACTQ_ERR_SCALES], double err[ACT_COUNT][ACTQ_ERR_SCALES]) {
    if (cpu_has_avx512f()) actq_err_row_avx512(x, n, s, inv, err);
    else if (cpu_has_avx2()) actq_err_row_avx2(x, n, s, inv, err);
    else actq_err_row_sse2(x, n, s, inv, err);
}

static void actq_err_row_sse2(const float *x, int64_t n, const float s[ACT_COUNT][ACTQ_ERR_SCALES],
                             const float inv[ACT_COUNT][ACTQ_ERR_SCALES], double err[ACT_COUNT][ACTQ_ERR_SCALES]) {
    int64_t n4 = n & ~(int64_t)3;
    __m128 acc[ACT_COUNT][ACTQ_ERR_SCALES];
    for (int f = ACT_INT8; f < ACT_COUNT; f++)
        for (int m = 0; m < ACTQ_ERR_SCALES; m++) acc[f][m] = _mm_setzero_ps();
    const __m128 mag = _mm_set1_ps(RNE_MAGIC), lo = _mm_set1_ps(-127.0f), hi = _mm_set1_ps(127.0f);
    for (int64_t i = 0; i < n4; i += 4) {
        __m128 v = _mm_loadu_ps(x + i);
        for (int m = 0; m < ACTQ_ERR_SCALES; m++) {
            __m128 y = _mm_mul_ps(v, _mm_set1_ps(inv[ACT_INT8][m]));
            y = _mm_max_ps(_mm_min_ps(y, hi), lo);
            __m128 q = _mm_mul_ps(_mm_sub_ps(_mm_add_ps(y, mag), mag), _mm_set1_ps(s[ACT_INT8][m]));
            __m128 d = _mm_sub_ps(v, q);
            acc[ACT_INT8][m] = _mm_add_ps(acc[ACT_INT8][m], _mm_mul_ps(d, d));
            y = _mm_mul_ps(v, _mm_set1_ps(inv[ACT_FP8_E4M3][m]));
            q = _mm_mul_ps(sse_fp8(y, 20, 0x1p-6f, 0x1p-9f, 0x1p9f, 448.0f), _mm_set1_ps(s[ACT_FP8_E4M3][m]));
            d = _mm_sub_ps(v, q);
            acc[ACT_FP8_E4M3][m] = _mm_add_ps(acc[ACT_FP8_E4M3][m], _mm_mul_ps(d, d));
            y = _mm_mul_ps(v, _mm_set1_ps(inv[ACT_FP8_E5M2][m]));
            q = _mm_mul_ps(sse_fp8(y, 21, 0x1p-14f, 0x1p-16f, 0x1p16f, 57344.0f), _mm_set1_ps(s[ACT_FP8_E5M2][m]));
            d = _mm_sub_ps(v, q);
            acc[ACT_FP8_E5M2][m] = _mm_add_ps(acc[ACT_FP8_E5M2][m], _mm_mul_ps(d, d));
        }
    }
    for (int f = ACT_INT8; f < ACT_COUNT; f++)
        for (int m = 0; m < ACTQ_ERR_SCALES; m++) {
            float t[4];
            _mm_storeu_ps(t, acc[f][m]);
            err[f][m] += (double)t[0] + (double)t[1] + (double)t[2] + (double)t[3];
        }
    if (n4 < n) actq_err_row_ref(x + n4, n - n4, s, inv, err);
}
