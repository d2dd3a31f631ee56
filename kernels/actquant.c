#include "kernels/actquant.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "core/fpconv.h"
#include "kernels/cpu.h"

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

__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
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

__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
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

void actq_int8_row(const float *x, int64_t n, float s, int8_t *q) {
    if (cpu_has_avx512f()) actq_int8_row_avx512(x, n, s, q);
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

/* fp8 round trip of |v| (16 lanes), as core/fpconv.h's encoder rounds:
 * quantum 2^(max(floor(log2 a), min_exp) - mbits), ties to even, saturating
 * at maxv (a >= maxv and values rounding above it give maxv). */
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
static inline __m512 actq_fp8_round_abs(__m512 a, float min_exp, float mbits, float maxv) {
    a = _mm512_min_ps(a, _mm512_set1_ps(maxv));
    __m512 e = _mm512_max_ps(_mm512_getexp_ps(a), _mm512_set1_ps(min_exp)); /* getexp(0) = -inf */
    __m512 quantum = _mm512_scalef_ps(_mm512_set1_ps(1.0f), _mm512_sub_ps(e, _mm512_set1_ps(mbits)));
    __m512 q = _mm512_roundscale_ps(_mm512_div_ps(a, quantum), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_min_ps(_mm512_mul_ps(q, quantum), _mm512_set1_ps(maxv));
}

__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
void actq_fake_row_avx512(ActFormat fmt, const float *x, int64_t n, float s, float *out) {
    if (s == 0.0f || fmt == ACT_NONE || fmt >= ACT_COUNT) {
        actq_fake_row_ref(fmt, x, n, s, out);
        return;
    }
    const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    const __m512i signbit = _mm512_set1_epi32((int)0x80000000u);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(k, x + i), vs), r;
        if (fmt == ACT_INT8) {
            v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
            r = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        } else {
            __m512 a = _mm512_abs_ps(v);
            r = fmt == ACT_FP8_E4M3 ? actq_fp8_round_abs(a, -6.0f, 3.0f, FP8_E4M3_MAX)
                                     : actq_fp8_round_abs(a, -14.0f, 2.0f, FP8_E5M2_MAX);
            r = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r),
                                                    _mm512_and_si512(_mm512_castps_si512(v), signbit)));
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
    float *scale = malloc((size_t)T * sizeof *scale);
    ASSERT(scale != NULL);
    actq_scales(aq, x, T, K, pos0, scale);
    FakeTask t = {aq->fmt, x, out, scale, K, cpu_has_avx512f()};
    pool_for(pool, T, 4, actq_fake_rows, &t);
    free(scale);
}
