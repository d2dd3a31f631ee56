#include "kernels/kfit.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/simd.h"

float kfit_min_ref(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min, float rmin,
                   float rdelta, int nstep, int use_mad) {
    uint8_t La[32];
    float lo = x[0], hi = x[0];
    float sw = w[0], sx = sw * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        sw += w[i];
        sx += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *neg_min = -lo;
        return 0.0f;
    }
    float is = (float)nmax / (hi - lo);
    float scale = 1 / is;
    float best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)kfit_clamp(kfit_round(is * (x[i] - lo)), 0, nmax);
        float e = scale * (float)L[i] + lo - x[i];
        e = use_mad ? fabsf(e) : e * e;
        best += w[i] * e;
    }
    if (nstep < 1) {
        *neg_min = -lo;
        return scale;
    }
    for (int st = 0; st <= nstep; st++) {
        is = (rmin + rdelta * (float)st + (float)nmax) / (hi - lo);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = kfit_clamp(kfit_round(is * (x[i] - lo)), 0, nmax);
            La[i] = (uint8_t)l;
            sl += w[i] * (float)l;
            sl2 += w[i] * (float)l * (float)l;
            sxl += w[i] * (float)l * x[i];
        }
        float D = sw * sl2 - sl * sl;
        if (!(D > 0)) continue;
        float ts = (sw * sxl - sx * sl) / D;
        float tm = (sl2 * sx - sl * sxl) / D;
        if (tm > 0) {
            tm = 0;
            ts = sxl / sl2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float e = ts * (float)La[i] + tm - x[i];
            e = use_mad ? fabsf(e) : e * e;
            err += w[i] * e;
        }
        if (err < best) {
            memcpy(L, La, (size_t)n);
            best = err;
            scale = ts;
            lo = tm;
        }
    }
    *neg_min = -lo;
    return scale;
}

/* === AVX2: lane b is sub-block b === */

#define T2 QS_TARGET_AVX2

/* clamp(round(is·(x − lo)), 0, nmax) as a float, per lane (the scalar's code). */
T2 static inline __m256 kf_code8(__m256 is, __m256 x, __m256 lo, __m256i vmax) {
    __m256 v = _mm256_add_ps(_mm256_mul_ps(is, _mm256_sub_ps(x, lo)), _mm256_set1_ps(12582912.0f));
    __m256i l = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x007fffff)),
                                 _mm256_set1_epi32(0x00400000));
    l = _mm256_min_epi32(_mm256_max_epi32(l, _mm256_setzero_si256()), vmax);
    return _mm256_cvtepi32_ps(l);
}

/* w·e with e = a·l + b − x, |e| (mad) or e² */
T2 static inline __m256 kf_err8(__m256 a, __m256 l, __m256 b, __m256 x, __m256 w, int use_mad) {
    __m256 e = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(a, l), b), x);
    e = use_mad ? _mm256_and_ps(e, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))) : _mm256_mul_ps(e, e);
    return _mm256_mul_ps(w, e);
}

T2 static void kfit_min8_avx2(int n, int nmax, const float *x, const float *w, uint8_t *L, float *scale_out,
                              float *neg_min, float rmin, float rdelta, int nstep, int use_mad) {
    __m256 X[32], Wv[32], Lb[32], La[32];
    int i0 = 0;
    do { /* n >= 1: X[0] is always set */
        float tx[8], tw[8];
        for (int b = 0; b < 8; b++) {
            tx[b] = x[b * n + i0];
            tw[b] = w[b * n + i0];
        }
        X[i0] = _mm256_loadu_ps(tx);
        Wv[i0] = _mm256_loadu_ps(tw);
    } while (++i0 < n);
    const __m256i vmax = _mm256_set1_epi32(nmax);
    __m256 lo = X[0], hi = X[0], sw = Wv[0], sx = _mm256_mul_ps(sw, X[0]);
    for (int i = 1; i < n; i++) {
        lo = _mm256_blendv_ps(lo, X[i], _mm256_cmp_ps(X[i], lo, _CMP_LT_OQ));
        hi = _mm256_blendv_ps(hi, X[i], _mm256_cmp_ps(X[i], hi, _CMP_GT_OQ));
        sw = _mm256_add_ps(sw, Wv[i]);
        sx = _mm256_add_ps(sx, _mm256_mul_ps(Wv[i], X[i]));
    }
    lo = _mm256_blendv_ps(lo, _mm256_setzero_ps(), _mm256_cmp_ps(lo, _mm256_setzero_ps(), _CMP_GT_OQ));
    __m256 flat = _mm256_cmp_ps(hi, lo, _CMP_EQ_OQ); /* the scalar returns early: never updated below */
    __m256 is = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(hi, lo));
    __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), is), best = _mm256_setzero_ps();
    for (int i = 0; i < n; i++) {
        Lb[i] = kf_code8(is, X[i], lo, vmax);
        best = _mm256_add_ps(best, kf_err8(scale, Lb[i], lo, X[i], Wv[i], use_mad));
    }
    for (int st = 0; st <= nstep; st++) {
        is = _mm256_div_ps(_mm256_set1_ps(rmin + rdelta * (float)st + (float)nmax), _mm256_sub_ps(hi, lo));
        __m256 sl = _mm256_setzero_ps(), sl2 = sl, sxl = sl;
        for (int i = 0; i < n; i++) {
            La[i] = kf_code8(is, X[i], lo, vmax);
            __m256 t = _mm256_mul_ps(Wv[i], La[i]);
            sl = _mm256_add_ps(sl, t);
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(t, La[i]));
            sxl = _mm256_add_ps(sxl, _mm256_mul_ps(t, X[i]));
        }
        __m256 D = _mm256_sub_ps(_mm256_mul_ps(sw, sl2), _mm256_mul_ps(sl, sl));
        __m256 ok = _mm256_andnot_ps(flat, _mm256_cmp_ps(D, _mm256_setzero_ps(), _CMP_GT_OQ));
        if (_mm256_movemask_ps(ok) == 0) continue;
        __m256 ts = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sw, sxl), _mm256_mul_ps(sx, sl)), D);
        __m256 tm = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sl2, sx), _mm256_mul_ps(sl, sxl)), D);
        __m256 pos = _mm256_cmp_ps(tm, _mm256_setzero_ps(), _CMP_GT_OQ);
        tm = _mm256_blendv_ps(tm, _mm256_setzero_ps(), pos);
        ts = _mm256_blendv_ps(ts, _mm256_div_ps(sxl, sl2), pos);
        __m256 err = _mm256_setzero_ps();
        for (int i = 0; i < n; i++) err = _mm256_add_ps(err, kf_err8(ts, La[i], tm, X[i], Wv[i], use_mad));
        __m256 up = _mm256_and_ps(ok, _mm256_cmp_ps(err, best, _CMP_LT_OQ));
        if (_mm256_movemask_ps(up) == 0) continue;
        for (int i = 0; i < n; i++) Lb[i] = _mm256_blendv_ps(Lb[i], La[i], up);
        best = _mm256_blendv_ps(best, err, up);
        scale = _mm256_blendv_ps(scale, ts, up);
        lo = _mm256_blendv_ps(lo, tm, up);
    }
    int fm = _mm256_movemask_ps(flat);
    float lov[8], sc[8];
    _mm256_storeu_ps(lov, lo);
    _mm256_storeu_ps(sc, scale);
    for (int i = 0; i < n; i++) {
        int32_t c[8];
        _mm256_storeu_si256((__m256i *)c, _mm256_cvttps_epi32(Lb[i]));
        for (int b = 0; b < 8; b++) L[b * n + i] = (uint8_t)c[b];
    }
    for (int b = 0; b < 8; b++) {
        int is_flat = (fm >> b) & 1;
        neg_min[b] = -lov[b];
        scale_out[b] = is_flat ? 0.0f : sc[b];
        if (is_flat) memset(L + b * n, 0, (size_t)n);
    }
}

void kfit_min8(int n, int nmax, const float *x, const float *w, uint8_t *L, float *scale, float *neg_min, float rmin,
               float rdelta, int nstep, int use_mad) {
    if (cpu_has_avx2() && n >= 1 && n <= 32 && nstep >= 1) {
        kfit_min8_avx2(n, nmax, x, w, L, scale, neg_min, rmin, rdelta, nstep, use_mad);
        return;
    }
    for (int b = 0; b < 8; b++)
        scale[b] = kfit_min_ref(n, nmax, x + b * n, w + b * n, L + b * n, &neg_min[b], rmin, rdelta, nstep, use_mad);
}
