#include "analysis/stats.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/assert.h"
#include "kernels/blas.h"

#include <immintrin.h>

#include "kernels/cpu.h"

/* Channels per work slice: fixed, so results never depend on the thread count. */
#define SLICE 256

/* === Histogram === */

int hist_bin(float a) {
    uint32_t b;
    memcpy(&b, &a, sizeof b);
    b &= 0x7fffffffu;
    int e = (int)(b >> 23) - 127;
    if (e < HIST_MIN_EXP) return 0;
    if (e >= HIST_MAX_EXP) return HIST_NBINS - 1;
    return 1 + (e - HIST_MIN_EXP) * HIST_SUB + (int)((b >> (23 - 4)) & (HIST_SUB - 1));
}

void hist_bin_range(int b, double *lo, double *hi) {
    if (b <= 0) {
        *lo = 0;
        *hi = ldexp(1.0, HIST_MIN_EXP);
        return;
    }
    if (b >= HIST_NBINS - 1) {
        *lo = ldexp(1.0, HIST_MAX_EXP);
        *hi = INFINITY;
        return;
    }
    int e = HIST_MIN_EXP + (b - 1) / HIST_SUB, m = (b - 1) % HIST_SUB;
    *lo = ldexp(1.0 + (double)m / HIST_SUB, e);
    *hi = ldexp(1.0 + (double)(m + 1) / HIST_SUB, e);
}

double hist_percentile(const uint64_t *h, double p, double absmax) {
    uint64_t total = 0;
    for (int b = 0; b < HIST_NBINS; b++) total += h[b];
    if (total == 0) return 0;
    double rr = ceil(p * (double)total);
    uint64_t r = rr < 1 ? 1 : (rr > (double)total ? total : (uint64_t)rr);
    uint64_t cum = 0;
    for (int b = 0; b < HIST_NBINS; b++) {
        if (h[b] == 0) continue;
        if (cum + h[b] >= r) {
            double lo, hi;
            hist_bin_range(b, &lo, &hi);
            if (hi > absmax) hi = absmax;
            if (hi < lo) return lo < absmax ? lo : absmax;
            double v = lo + (hi - lo) * ((double)(r - cum) - 0.5) / (double)h[b];
            return v;
        }
        cum += h[b];
    }
    return absmax;
}

/* === Moments === */

void moments_merge(Moments *a, const Moments *b) {
    if (b->n == 0) return;
    if (a->n == 0) {
        *a = *b;
        return;
    }
    double na = (double)a->n, nb = (double)b->n, n = na + nb;
    double d = b->mean - a->mean, d2 = d * d;
    double m2 = a->m2 + b->m2 + d2 * na * nb / n;
    double m3 = a->m3 + b->m3 + d2 * d * na * nb * (na - nb) / (n * n) +
                3.0 * d * (na * b->m2 - nb * a->m2) / n;
    double m4 = a->m4 + b->m4 + d2 * d2 * na * nb * (na * na - na * nb + nb * nb) / (n * n * n) +
                6.0 * d2 * (na * na * b->m2 + nb * nb * a->m2) / (n * n) +
                4.0 * d * (na * b->m3 - nb * a->m3) / n;
    a->mean += d * nb / n;
    a->m2 = m2;
    a->m3 = m3;
    a->m4 = m4;
    a->n += b->n;
}

double moments_variance(const Moments *m) { return m->n > 0 ? m->m2 / (double)m->n : 0; }

double moments_kurtosis(const Moments *m) {
    if (m->n == 0 || m->m2 <= 0) return 0;
    return (double)m->n * m->m4 / (m->m2 * m->m2);
}

/* === Spikes === */

int spike_before(const Spike *a, const Spike *b) {
    float x = fabsf(a->value), y = fabsf(b->value);
    if (x != y) return x > y;
    if (a->seq != b->seq) return a->seq < b->seq;
    if (a->pos != b->pos) return a->pos < b->pos;
    return a->channel < b->channel;
}

void spike_topk_insert(Spike *top, int32_t *n, int32_t k, const Spike *s) {
    if (k <= 0) return;
    int32_t m = *n;
    if (m == k && !spike_before(s, &top[m - 1])) return;
    int32_t i = m < k ? m : k - 1;
    while (i > 0 && spike_before(s, &top[i - 1])) {
        top[i] = top[i - 1];
        i--;
    }
    top[i] = *s;
    if (m < k) *n = m + 1;
}

/* === Activation quantization === */

static const char *const act_mode_names[ACT_MODE_COUNT] = {"tensor-static", "tensor-dynamic",
                                                           "token-dynamic"};

const char *act_mode_name(ActMode m) { return (unsigned)m < ACT_MODE_COUNT ? act_mode_names[m] : "?"; }


/* Rounding to nearest even by the 1.5·2^23 trick: exact for |v| < 2^22 in
 * the default rounding mode, and branch-free (rintf is a libm call on
 * baseline x86-64). Callers keep |v| small: int8 clamps first, fp8 only
 * rounds subnormals (|v| < 8 steps) this way. */
#define RNE_MAGIC 12582912.0f

/* Rounds |v| to mbits mantissa bits (ties to even) with normals from
 * min_normal up, subnormal steps of sub_step below, saturating at maxv;
 * branch-free so the SSE2 kernel below can mirror it lane for lane. */
static inline float fp8_round(float v, int drop, float min_normal, float sub_step, float inv_sub, float maxv) {
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

float fp8_round_e4m3(float v) { return fp8_round(v, 20, 0x1p-6f, 0x1p-9f, 0x1p9f, 448.0f); }
float fp8_round_e5m2(float v) { return fp8_round(v, 21, 0x1p-14f, 0x1p-16f, 0x1p16f, 57344.0f); }

float act_quant(ActFormat f, float x, float s, float inv) {
    float v = x * inv;
    switch (f) {
    case ACT_INT8: {
        v = v > 127.0f ? 127.0f : v;
        v = v < -127.0f ? -127.0f : v;
        return ((v + RNE_MAGIC) - RNE_MAGIC) * s;
    }
    case ACT_FP8_E4M3: return fp8_round_e4m3(v) * s;
    case ACT_FP8_E5M2: return fp8_round_e5m2(v) * s;
    default: return 0;
    }
}

void act_err_row_ref(const float *x, int64_t n, const float s[ACT_COUNT][ACT_MODE_COUNT],
                     const float inv[ACT_COUNT][ACT_MODE_COUNT], double err[ACT_COUNT][ACT_MODE_COUNT]) {
    for (int f = ACT_INT8; f < ACT_COUNT; f++)
        for (int m = 0; m < ACT_MODE_COUNT; m++) {
            double e = 0;
            for (int64_t i = 0; i < n; i++) {
                float d = x[i] - act_quant((ActFormat)f, x[i], s[f][m], inv[f][m]);
                e += (double)d * d;
            }
            err[f][m] += e;
        }
}

static void act_err_row_sse2(const float *x, int64_t n, const float s[ACT_COUNT][ACT_MODE_COUNT],
                             const float inv[ACT_COUNT][ACT_MODE_COUNT], double err[ACT_COUNT][ACT_MODE_COUNT]);

/* SSE2 is part of the x86-64 baseline: no dispatch needed. Lane for lane the
 * same operations as act_quant; only the summation order differs (float
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
    __attribute__((target("avx512f")));
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

__attribute__((target("avx512f"))) static void act_err_row_avx512(
    const float *x, int64_t n, const float s[ACT_COUNT][ACT_MODE_COUNT],
    const float inv[ACT_COUNT][ACT_MODE_COUNT], double err[ACT_COUNT][ACT_MODE_COUNT]) {
    int64_t n16 = n & ~(int64_t)15;
    __m512 acc[ACT_COUNT][ACT_MODE_COUNT];
    for (int f = ACT_INT8; f < ACT_COUNT; f++)
        for (int m = 0; m < ACT_MODE_COUNT; m++) acc[f][m] = _mm512_setzero_ps();
    const __m512 mag = _mm512_set1_ps(RNE_MAGIC), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (int64_t i = 0; i < n16; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        for (int m = 0; m < ACT_MODE_COUNT; m++) {
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
        for (int m = 0; m < ACT_MODE_COUNT; m++) {
            float t[16];
            _mm512_storeu_ps(t, acc[f][m]);
            double e = 0;
            for (int k = 0; k < 16; k++) e += t[k];
            err[f][m] += e;
        }
    if (n16 < n) act_err_row_sse2(x + n16, n - n16, s, inv, err);
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

T256 static void act_err_row_avx2(const float *x, int64_t n, const float s[ACT_COUNT][ACT_MODE_COUNT],
                                  const float inv[ACT_COUNT][ACT_MODE_COUNT],
                                  double err[ACT_COUNT][ACT_MODE_COUNT]) {
    int64_t n8 = n & ~(int64_t)7;
    __m256 acc[ACT_COUNT][ACT_MODE_COUNT];
    for (int f = ACT_INT8; f < ACT_COUNT; f++)
        for (int m = 0; m < ACT_MODE_COUNT; m++) acc[f][m] = _mm256_setzero_ps();
    const __m256 mag = _mm256_set1_ps(RNE_MAGIC), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    for (int64_t i = 0; i < n8; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        for (int m = 0; m < ACT_MODE_COUNT; m++) {
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
        for (int m = 0; m < ACT_MODE_COUNT; m++) {
            float t[8];
            _mm256_storeu_ps(t, acc[f][m]);
            double e = 0;
            for (int k = 0; k < 8; k++) e += t[k];
            err[f][m] += e;
        }
    if (n8 < n) act_err_row_sse2(x + n8, n - n8, s, inv, err);
}

void act_err_row(const float *x, int64_t n, const float s[ACT_COUNT][ACT_MODE_COUNT],
                 const float inv[ACT_COUNT][ACT_MODE_COUNT], double err[ACT_COUNT][ACT_MODE_COUNT]) {
    if (cpu_has_avx512f()) act_err_row_avx512(x, n, s, inv, err);
    else if (cpu_has_avx2()) act_err_row_avx2(x, n, s, inv, err);
    else act_err_row_sse2(x, n, s, inv, err);
}

static void act_err_row_sse2(const float *x, int64_t n, const float s[ACT_COUNT][ACT_MODE_COUNT],
                             const float inv[ACT_COUNT][ACT_MODE_COUNT], double err[ACT_COUNT][ACT_MODE_COUNT]) {
    int64_t n4 = n & ~(int64_t)3;
    __m128 acc[ACT_COUNT][ACT_MODE_COUNT];
    for (int f = ACT_INT8; f < ACT_COUNT; f++)
        for (int m = 0; m < ACT_MODE_COUNT; m++) acc[f][m] = _mm_setzero_ps();
    const __m128 mag = _mm_set1_ps(RNE_MAGIC), lo = _mm_set1_ps(-127.0f), hi = _mm_set1_ps(127.0f);
    for (int64_t i = 0; i < n4; i += 4) {
        __m128 v = _mm_loadu_ps(x + i);
        for (int m = 0; m < ACT_MODE_COUNT; m++) {
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
        for (int m = 0; m < ACT_MODE_COUNT; m++) {
            float t[4];
            _mm_storeu_ps(t, acc[f][m]);
            err[f][m] += (double)t[0] + (double)t[1] + (double)t[2] + (double)t[3];
        }
    if (n4 < n) act_err_row_ref(x + n4, n - n4, s, inv, err);
}

/* === TapStats === */

Status tapstats_init(TapStats *ts, int64_t width, int32_t k, int has_act, Err *err) {
    memset(ts, 0, sizeof *ts);
    if (width <= 0 || k < 0) return err_set(err, ST_ERR_ARG, "tap stats: width %lld, k %d", (long long)width, k);
    ts->width = width;
    ts->k = k;
    ts->has_act = has_act;
    ts->ch_sum = core_calloc((size_t)width, sizeof *ts->ch_sum);
    ts->ch_sumsq = core_calloc((size_t)width, sizeof *ts->ch_sumsq);
    ts->ch_absmax = core_calloc((size_t)width, sizeof *ts->ch_absmax);
    ts->top = core_calloc((size_t)(k > 0 ? k : 1), sizeof *ts->top);
    if (!ts->ch_sum || !ts->ch_sumsq || !ts->ch_absmax || !ts->top) {
        tapstats_done(ts);
        return err_set(err, ST_ERR_NOMEM, "tap stats for width %lld", (long long)width);
    }
    return ST_OK;
}

void tapstats_done(TapStats *ts) {
    free(ts->ch_sum);
    free(ts->ch_sumsq);
    free(ts->ch_absmax);
    free(ts->top);
    memset(ts, 0, sizeof *ts);
}

double tapstats_act_rel_err(const TapStats *ts, ActFormat f, ActMode m) {
    if (!ts->has_act || ts->act_ref[m] <= 0) return NAN;
    return ts->act_err[f][m] / ts->act_ref[m];
}

/* Partial results of one channel slice for one batch. */
typedef struct SliceAcc {
    Moments mom;
    float absmax;
    double ref[ACT_MODE_COUNT];
    double err[ACT_COUNT][ACT_MODE_COUNT];
    int32_t n_top;
    int64_t n_nonfinite;
} SliceAcc;

struct TapScratch {
    int64_t max_T, max_width;
    int32_t k;
    int n_threads;
    float *row_amax;         /* (max_T) */
    SliceAcc *slices;        /* (n_slices) */
    Spike *slice_top;        /* (n_slices, k) */
    uint64_t *hist;          /* (n_threads, HIST_NBINS) */
};

Status tapscratch_new(int64_t max_T, int64_t max_width, int32_t k, int n_threads, TapScratch **out,
                      Err *err) {
    *out = NULL;
    if (max_T <= 0 || max_width <= 0 || k < 0 || n_threads <= 0)
        return err_set(err, ST_ERR_ARG, "tap scratch: T %lld width %lld k %d threads %d",
                       (long long)max_T, (long long)max_width, k, n_threads);
    TapScratch *sc = core_calloc(1, sizeof *sc);
    if (!sc) return err_set(err, ST_ERR_NOMEM, "tap scratch");
    int64_t ns = (max_width + SLICE - 1) / SLICE;
    sc->max_T = max_T;
    sc->max_width = max_width;
    sc->k = k;
    sc->n_threads = n_threads;
    sc->row_amax = core_calloc((size_t)max_T, sizeof *sc->row_amax);
    sc->slices = core_calloc((size_t)ns, sizeof *sc->slices);
    sc->slice_top = core_calloc((size_t)ns * (size_t)(k > 0 ? k : 1), sizeof *sc->slice_top);
    sc->hist = core_calloc((size_t)n_threads * HIST_NBINS, sizeof *sc->hist);
    if (!sc->row_amax || !sc->slices || !sc->slice_top || !sc->hist) {
        tapscratch_free(sc);
        return err_set(err, ST_ERR_NOMEM, "tap scratch for width %lld", (long long)max_width);
    }
    *out = sc;
    return ST_OK;
}

void tapscratch_free(TapScratch *sc) {
    if (!sc) return;
    free(sc->row_amax);
    free(sc->slices);
    free(sc->slice_top);
    free(sc->hist);
    free(sc);
}

typedef struct AddJob {
    TapStats *ts;
    TapScratch *sc;
    const float *x;
    int64_t T, pos0, seq;
    const int32_t *tokens;
    float batch_amax, static_amax; /* static_amax 0: no static measurement */
    float top_thr;           /* |value| a spike must exceed to enter the global top-k */
} AddJob;

static void job_row_amax(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    AddJob *j = arg;
    int64_t w = j->ts->width;
    for (int64_t r = b; r < e; r++) {
        const float *row = j->x + r * w;
        float m = 0;
        for (int64_t c = 0; c < w; c++) {
            float a = fabsf(row[c]);
            m = a > m ? a : m;
        }
        j->sc->row_amax[r] = m;
    }
}

/* Scale and inverse for absmax under format f (0, 0 when absmax is 0). */
static inline void act_scale(ActFormat f, float amax, float *s, float *inv) {
    if (amax > 0) {
        *s = amax / actq_qmax(f);
        *inv = actq_qmax(f) / amax;
    } else {
        *s = 0;
        *inv = 0;
    }
}

static void job_slices(void *arg, int64_t sb, int64_t se, int tid) {
    AddJob *j = arg;
    TapStats *ts = j->ts;
    TapScratch *sc = j->sc;
    int64_t w = ts->width, T = j->T;
    uint64_t *hist = sc->hist + (size_t)tid * HIST_NBINS;
    float sc_s[ACT_COUNT][ACT_MODE_COUNT], sc_inv[ACT_COUNT][ACT_MODE_COUNT];
    for (int f = ACT_INT8; f < ACT_COUNT; f++) {
        act_scale((ActFormat)f, j->static_amax, &sc_s[f][ACT_TENSOR_STATIC], &sc_inv[f][ACT_TENSOR_STATIC]);
        act_scale((ActFormat)f, j->batch_amax, &sc_s[f][ACT_TENSOR_DYNAMIC], &sc_inv[f][ACT_TENSOR_DYNAMIC]);
    }
    for (int64_t s = sb; s < se; s++) {
        int64_t c0 = s * SLICE, c1 = c0 + SLICE < w ? c0 + SLICE : w, nc = c1 - c0;
        SliceAcc *acc = &sc->slices[s];
        Spike *top = sc->slice_top + (size_t)s * (size_t)(sc->k > 0 ? sc->k : 1);
        memset(acc, 0, sizeof *acc);
        /* Pass 1: channel sums (each channel summed in row order) and the slice mean. */
        double tot = 0;
        float amax = 0;
        for (int64_t r = 0; r < T; r++) {
            const float *row = j->x + r * w;
            for (int64_t c = c0; c < c1; c++) {
                double v = row[c];
                ts->ch_sum[c] += v;
                ts->ch_sumsq[c] += v * v;
                tot += v;
                float a = fabsf(row[c]);
                acc->n_nonfinite += !(a <= FLT_MAX); /* inf and NaN */
                if (a > ts->ch_absmax[c]) ts->ch_absmax[c] = a;
                amax = a > amax ? a : amax;
            }
        }
        acc->absmax = amax;
        double n = (double)T * (double)nc, mu = tot / n;
        /* Pass 2: central moments about mu (corrected for its rounding), the
         * histogram, spikes and quantization errors. */
        double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
        float thr = j->top_thr;
        for (int64_t r = 0; r < T; r++) {
            const float *row = j->x + r * w;
            double rref = 0;
            for (int64_t c = c0; c < c1; c++) {
                float x = row[c];
                double d = (double)x - mu, d2 = d * d;
                s1 += d;
                s2 += d2;
                s3 += d2 * d;
                s4 += d2 * d2;
                float a = fabsf(x);
                hist[hist_bin(a)]++;
                if (a > thr && sc->k > 0) {
                    Spike sp = {.value = x, .channel = (int32_t)c, .token = j->tokens ? j->tokens[r] : -1,
                                .pos = (int32_t)(j->pos0 + r), .seq = j->seq};
                    spike_topk_insert(top, &acc->n_top, sc->k, &sp);
                    if (acc->n_top == sc->k) {
                        float kth = fabsf(top[sc->k - 1].value);
                        if (kth > thr) thr = kth;
                    }
                }
                rref += (double)x * x;
            }
            if (ts->has_act) {
                double rerr[ACT_COUNT][ACT_MODE_COUNT];
                memset(rerr, 0, sizeof rerr);
                for (int f = ACT_INT8; f < ACT_COUNT; f++) {
                    act_scale((ActFormat)f, sc->row_amax[r], &sc_s[f][ACT_TOKEN_DYNAMIC], &sc_inv[f][ACT_TOKEN_DYNAMIC]);
                }
                act_err_row(row + c0, nc, sc_s, sc_inv, rerr);
                for (int m = 0; m < ACT_MODE_COUNT; m++) {
                    if (m == ACT_TENSOR_STATIC && j->static_amax <= 0) continue;
                    acc->ref[m] += rref;
                    for (int f = ACT_INT8; f < ACT_COUNT; f++) acc->err[f][m] += rerr[f][m];
                }
            }
        }
        double mc = s1 / n;
        acc->mom.n = (int64_t)n;
        acc->mom.mean = mu + mc;
        acc->mom.m2 = s2 - n * mc * mc;
        if (acc->mom.m2 < 0) acc->mom.m2 = 0;
        acc->mom.m3 = s3 - 3.0 * mc * s2 + 2.0 * n * mc * mc * mc;
        acc->mom.m4 = s4 - 4.0 * mc * s3 + 6.0 * mc * mc * s2 - 3.0 * n * mc * mc * mc * mc;
    }
}

void tapstats_add(TapStats *ts, const float *x, int64_t T, const int32_t *tokens, int64_t pos0,
                  int64_t seq, TapScratch *sc, Pool *pool) {
    if (T <= 0) return;
    ASSERT(T <= sc->max_T && ts->width <= sc->max_width && ts->k <= sc->k);
    int nt = pool ? pool_size(pool) : 1;
    ASSERT(nt <= sc->n_threads);
    AddJob j = {.ts = ts, .sc = sc, .x = x, .T = T, .pos0 = pos0, .seq = seq, .tokens = tokens};
    j.static_amax = ts->n_rows > 0 ? ts->absmax : 0;
    j.top_thr = ts->n_top == ts->k && ts->k > 0 ? fabsf(ts->top[ts->k - 1].value) : -1.0f;
    if (ts->has_act) {
        pool_for(pool, T, 16, job_row_amax, &j);
        float m = 0;
        for (int64_t r = 0; r < T; r++) m = sc->row_amax[r] > m ? sc->row_amax[r] : m;
        j.batch_amax = m;
    }
    memset(sc->hist, 0, (size_t)nt * HIST_NBINS * sizeof *sc->hist);
    int64_t ns = (ts->width + SLICE - 1) / SLICE;
    pool_for(pool, ns, 1, job_slices, &j);
    /* Merge in slice order (deterministic), histograms in any order (integers). */
    for (int t = 0; t < nt; t++)
        for (int b = 0; b < HIST_NBINS; b++) ts->hist[b] += sc->hist[(size_t)t * HIST_NBINS + b];
    for (int64_t s = 0; s < ns; s++) {
        SliceAcc *acc = &sc->slices[s];
        moments_merge(&ts->mom, &acc->mom);
        ts->n_nonfinite += acc->n_nonfinite;
        if (acc->absmax > ts->absmax) ts->absmax = acc->absmax;
        for (int m = 0; m < ACT_MODE_COUNT; m++) {
            ts->act_ref[m] += acc->ref[m];
            for (int f = ACT_INT8; f < ACT_COUNT; f++) ts->act_err[f][m] += acc->err[f][m];
        }
        const Spike *top = sc->slice_top + (size_t)s * (size_t)(sc->k > 0 ? sc->k : 1);
        for (int32_t i = 0; i < acc->n_top; i++) spike_topk_insert(ts->top, &ts->n_top, ts->k, &top[i]);
    }
    ts->n_rows += T;
}
