#include "kernels/vec.h"

#include <immintrin.h>
#include <math.h>

#include "kernels/cpu.h"
#include "kernels/simd.h"

/* === scalar reference twins === */

void vec_rmsnorm_ref(float *y, const float *x, const float *w, int64_t n, float eps) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    float mean = (float)(sum / (double)n);
    float s = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) y[i] = w ? w[i] * (x[i] * s) : x[i] * s;
}

void vec_softmax_ref(float *x, int64_t n, float scale) {
    if (n <= 0) return;
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        x[i] *= scale;
        if (x[i] > m) m = x[i];
    }
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void vec_swiglu_ref(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void vec_exp_ref(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = expf(x[i]);
}

/* === AVX-512 ===
 * exp(x) = 2^k · e^r with k = round(x·log2 e), r = x - k·ln2 (two-part ln2),
 * e^r by its degree-7 Taylor polynomial on |r| <= ln2/2 (truncation < 6e-9),
 * 2^k applied with scalef. x is clamped to [-104, 88.72] so -inf gives 0;
 * NaN passes the clamp and gives NaN. */

#define EXP_C2 0.5f
#define EXP_C3 (1.0f / 6)
#define EXP_C4 (1.0f / 24)
#define EXP_C5 (1.0f / 120)
#define EXP_C6 (1.0f / 720)
#define EXP_C7 (1.0f / 5040)

QS_TARGET_AVX512
static inline __m512 exp512(__m512 x) {
    /* x86 min/max return their second operand when either is NaN: x goes
     * second so a NaN stays NaN (exp(NaN) = NaN, as expf gives) */
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), _mm512_min_ps(_mm512_set1_ps(88.72f), x));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693145752f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(EXP_C7);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

QS_TARGET_AVX512
static void vec_rmsnorm_512(float *y, const float *x, const float *w, int64_t n, float eps) {
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512 sq = _mm512_mul_ps(v, v);
        acc0 = _mm512_add_pd(acc0, _mm512_cvtps_pd(_mm512_castps512_ps256(sq)));
        acc1 = _mm512_add_pd(acc1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(sq, 1)));
    }
    double sum = _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
    for (; i < n; i++) sum += (double)(x[i] * x[i]);
    float mean = (float)(sum / (double)n);
    float s = 1.0f / sqrtf(mean + eps);
    __m512 vs = _mm512_set1_ps(s);
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), vs);
        if (w) v = _mm512_mul_ps(_mm512_loadu_ps(w + i), v);
        _mm512_storeu_ps(y + i, v);
    }
    for (; i < n; i++) y[i] = w ? w[i] * (x[i] * s) : x[i] * s;
}

QS_TARGET_AVX512
static void vec_softmax_512(float *x, int64_t n, float scale) {
    if (n <= 0) return;
    __m512 vs = _mm512_set1_ps(scale);
    __m512 vm = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), vs);
        _mm512_storeu_ps(x + i, v);
        vm = _mm512_max_ps(vm, v);
    }
    float m = _mm512_reduce_max_ps(vm);
    for (; i < n; i++) {
        x[i] *= scale;
        if (x[i] > m) m = x[i];
    }
    vm = _mm512_set1_ps(m);
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(x + i, e);
        acc0 = _mm512_add_pd(acc0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        acc1 = _mm512_add_pd(acc1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
    double sum = _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
    if (i < n) {
        __mmask16 mk = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm));
        e = _mm512_maskz_mov_ps(mk, e);
        _mm512_mask_storeu_ps(x + i, mk, e);
        sum += _mm512_reduce_add_pd(_mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(e)),
                                                  _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1))));
    }
    __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= (float)(1.0 / sum);
}

QS_TARGET_AVX512
static void vec_swiglu_512(float *out, const float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 g = _mm512_maskz_loadu_ps(mk, gate + i);
        __m512 u = _mm512_maskz_loadu_ps(mk, up + i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
        __m512 s = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_mask_storeu_ps(out + i, mk, _mm512_mul_ps(s, u));
    }
}

QS_TARGET_AVX512
static void vec_exp_512(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(out + i, mk, exp512(_mm512_maskz_loadu_ps(mk, x + i)));
    }
}

/* === AVX2 ===
 * Same polynomial; 2^k is built in the exponent field, valid for k in
 * [-126, 127], so x is clamped to [-87.3, 88.72] and results below the clamp
 * are flushed to 0. */

QS_TARGET_AVX2
static inline __m256 exp256(__m256 x) {
    __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_set1_ps(-87.3f), _mm256_min_ps(_mm256_set1_ps(88.72f), x)); /* NaN stays NaN */
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693145752f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(1.42860677e-6f), r);
    __m256 p = _mm256_set1_ps(EXP_C7);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* k spans [-126, 128]; 2^128 does not fit the exponent field, so apply
     * 2^k as 2^(k>>1) · 2^(k - (k>>1)), each factor in range. */
    __m256i ki = _mm256_cvtps_epi32(k);
    __m256i h = _mm256_srai_epi32(ki, 1), bias = _mm256_set1_epi32(127);
    __m256 pa = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
    __m256 pb = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ki, h), bias), 23));
    __m256 res = _mm256_mul_ps(_mm256_mul_ps(p, pa), pb);
    return _mm256_andnot_ps(under, res);
}

QS_TARGET_AVX2
static void vec_rmsnorm_256(float *y, const float *x, const float *w, int64_t n, float eps) {
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 sq = _mm256_mul_ps(v, v);
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(acc0, acc1));
    double sum = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) sum += (double)(x[i] * x[i]);
    float mean = (float)(sum / (double)n);
    float s = 1.0f / sqrtf(mean + eps);
    __m256 vs = _mm256_set1_ps(s);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        if (w) v = _mm256_mul_ps(_mm256_loadu_ps(w + i), v);
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; i++) y[i] = w ? w[i] * (x[i] * s) : x[i] * s;
}

QS_TARGET_AVX2
static void vec_softmax_256(float *x, int64_t n, float scale) {
    if (n <= 0) return;
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        x[i] *= scale;
        if (x[i] > m) m = x[i];
    }
    __m256 vm = _mm256_set1_ps(m);
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(acc0, acc1));
    double sum = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    __m256 vi = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vi));
    for (; i < n; i++) x[i] *= inv;
}

QS_TARGET_AVX2
static void vec_swiglu_256(float *out, const float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    vec_swiglu_ref(out + i, gate + i, up + i, n - i);
}

QS_TARGET_AVX2
static void vec_exp_256(float *out, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, exp256(_mm256_loadu_ps(x + i)));
    vec_exp_ref(out + i, x + i, n - i);
}

/* === dispatch === */

void vec_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    switch (cpu_level()) {
    case CPU_LEVEL_AVX512: vec_rmsnorm_512(y, x, w, n, eps); break;
    case CPU_LEVEL_AVX2: vec_rmsnorm_256(y, x, w, n, eps); break;
    default: vec_rmsnorm_ref(y, x, w, n, eps); break;
    }
}

void vec_softmax(float *x, int64_t n, float scale) {
    switch (cpu_level()) {
    case CPU_LEVEL_AVX512: vec_softmax_512(x, n, scale); break;
    case CPU_LEVEL_AVX2: vec_softmax_256(x, n, scale); break;
    default: vec_softmax_ref(x, n, scale); break;
    }
}

void vec_swiglu(float *out, const float *gate, const float *up, int64_t n) {
    switch (cpu_level()) {
    case CPU_LEVEL_AVX512: vec_swiglu_512(out, gate, up, n); break;
    case CPU_LEVEL_AVX2: vec_swiglu_256(out, gate, up, n); break;
    default: vec_swiglu_ref(out, gate, up, n); break;
    }
}

void vec_exp(float *out, const float *x, int64_t n) {
    switch (cpu_level()) {
    case CPU_LEVEL_AVX512: vec_exp_512(out, x, n); break;
    case CPU_LEVEL_AVX2: vec_exp_256(out, x, n); break;
    default: vec_exp_ref(out, x, n); break;
    }
}
