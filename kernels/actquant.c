#include "kernels/actquant.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/fpconv.h"
#include "kernels/cpu.h"

const char *actq_format_name(ActQFormat f) {
    switch (f) {
    case ACTQ_NONE: return "none";
    case ACTQ_INT8: return "int8";
    case ACTQ_FP8_E4M3: return "fp8-e4m3";
    case ACTQ_FP8_E5M2: return "fp8-e5m2";
    default: return "?";
    }
}

float actq_qmax(ActQFormat f) {
    switch (f) {
    case ACTQ_INT8: return 127.0f;
    case ACTQ_FP8_E4M3: return FP8_E4M3_MAX;
    case ACTQ_FP8_E5M2: return FP8_E5M2_MAX;
    default: return 0.0f;
    }
}

float actq_absmax_ref(const float *x, int64_t n) {
    float m = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > m) m = a;
    }
    return m;
}

__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
static float actq_absmax_avx512(const float *x, int64_t n) {
    __m512 m = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_maskz_loadu_ps(k, x + i)));
    }
    return _mm512_reduce_max_ps(m);
}

float actq_absmax(const float *x, int64_t n) {
    if (cpu_has_avx512f()) return actq_absmax_avx512(x, n);
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
    if (s == 0.0f) {
        memset(q, 0, (size_t)n);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] / s;
        v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
        q[i] = (int8_t)nearbyintf(v);
    }
}

__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
static void actq_int8_row_avx512(const float *x, int64_t n, float s, int8_t *q) {
    if (s == 0.0f) {
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

void actq_int8_row(const float *x, int64_t n, float s, int8_t *q) {
    if (cpu_has_avx512f()) actq_int8_row_avx512(x, n, s, q);
    else actq_int8_row_ref(x, n, s, q);
}

void actq_quantize_int8(const ActQuant *aq, const float *x, int64_t T, int64_t K, int64_t pos0,
                        int8_t *q, int64_t ldq, float *scale) {
    actq_scales(aq, x, T, K, pos0, scale);
    for (int64_t t = 0; t < T; t++) {
        actq_int8_row(x + t * K, K, scale[t], q + t * ldq);
        if (ldq > K) memset(q + t * ldq + K, 0, (size_t)(ldq - K));
    }
}

void actq_fake(const ActQuant *aq, const float *x, int64_t T, int64_t K, int64_t pos0, float *out) {
    if (aq->fmt == ACTQ_NONE || aq->fmt >= ACTQ_COUNT) {
        if (out != x) memmove(out, x, (size_t)(T * K) * sizeof *out);
        return;
    }
    /* The per-tensor scale is taken before any row is written: out may alias x. */
    float qmax = actq_qmax(aq->fmt);
    float tensor_s = 0.0f;
    if (!aq->is_static && !aq->per_token) {
        int64_t t0 = (aq->skip_first && pos0 == 0 && T > 1) ? 1 : 0;
        tensor_s = actq_absmax(x + t0 * K, (T - t0) * K) / qmax;
    } else if (aq->is_static) {
        tensor_s = aq->static_absmax / qmax;
    }
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * K;
        float *yr = out + t * K;
        float s = aq->per_token && !aq->is_static ? actq_absmax(xr, K) / qmax : tensor_s;
        if (s == 0.0f) {
            memset(yr, 0, (size_t)K * sizeof *yr);
            continue;
        }
        for (int64_t i = 0; i < K; i++) {
            float v = xr[i] / s;
            if (aq->fmt == ACTQ_INT8) {
                v = v < -127.0f ? -127.0f : (v > 127.0f ? 127.0f : v);
                yr[i] = nearbyintf(v) * s;
            } else if (aq->fmt == ACTQ_FP8_E4M3) {
                yr[i] = fp8_e4m3_to_f32(f32_to_fp8_e4m3(v)) * s;
            } else {
                yr[i] = fp8_e5m2_to_f32(f32_to_fp8_e5m2(v)) * s;
            }
        }
    }
}
