#include "kernels/fp8_gemm.h"

#include <pthread.h>

#include "core/fpconv.h"
#include "kernels/simd.h"
#include "kernels/wq_rowdot.h"

static float lut_e4m3[256], lut_e5m2[256];
static pthread_once_t lut_once = PTHREAD_ONCE_INIT;

static void fp8_lut_build(void) {
    for (int i = 0; i < 256; i++) {
        lut_e4m3[i] = fp8_e4m3_to_f32((uint8_t)i);
        lut_e5m2[i] = fp8_e5m2_to_f32((uint8_t)i);
    }
}

const float *fp8_lut(int e5m2) {
    pthread_once(&lut_once, fp8_lut_build);
    return e5m2 ? lut_e5m2 : lut_e4m3;
}

void fp8_decode_ref(const uint8_t *c, int64_t n, int e5m2, float *out) {
    const float *lut = fp8_lut(e5m2);
    for (int64_t i = 0; i < n; i++) out[i] = lut[c[i]];
}

/* 16 codes -> 16 floats (E4M3: the value × 2^-8). */
QS_TARGET_AVX512 static inline __m512 fp8_e4m3_half(const uint8_t *p) {
    __m256i h = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p));
    __m256i s = _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x80)), 8);
    __m256i m = _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x7F)), 7);
    return _mm512_cvtph_ps(_mm256_or_si256(s, m));
}

QS_TARGET_AVX512 static inline __m512 fp8_e5m2_half(const uint8_t *p) {
    __m256i h = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p));
    return _mm512_cvtph_ps(_mm256_slli_epi16(h, 8));
}

QS_TARGET_AVX512 void fp8_decode_avx512(const uint8_t *c, int64_t n, int e5m2, float *out) {
    int64_t i = 0;
    const __m512 k256 = _mm512_set1_ps(256.0f);
    for (; i + 16 <= n; i += 16) {
        __m512 v = e5m2 ? fp8_e5m2_half(c + i) : _mm512_mul_ps(fp8_e4m3_half(c + i), k256);
        _mm512_storeu_ps(out + i, v);
    }
    if (i < n) fp8_decode_ref(c + i, n - i, e5m2, out + i);
}

#define FP8_E4M3_DOT(p, xb, a, b)                                                      \
    do {                                                                               \
        a = _mm512_fmadd_ps(fp8_e4m3_half(p), _mm512_loadu_ps(xb), a);                 \
        b = _mm512_fmadd_ps(fp8_e4m3_half((p) + 16), _mm512_loadu_ps((xb) + 16), b);   \
    } while (0)
#define FP8_E5M2_DOT(p, xb, a, b)                                                      \
    do {                                                                               \
        a = _mm512_fmadd_ps(fp8_e5m2_half(p), _mm512_loadu_ps(xb), a);                 \
        b = _mm512_fmadd_ps(fp8_e5m2_half((p) + 16), _mm512_loadu_ps((xb) + 16), b);   \
    } while (0)

WQ_ROWDOT_DEFINE(rowdot_e4m3, 32, 32, FP8_E4M3_DOT)
WQ_ROWDOT_DEFINE(rowdot_e5m2, 32, 32, FP8_E5M2_DOT)

void fp8_rowdot_e4m3_avx512(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk,
                            int64_t gblk, const float *gs, int64_t gs_stride, float *out) {
    rowdot_e4m3(rows, row_bytes, nrows, x, nblk, gblk, gs, gs_stride, out);
    for (int r = 0; r < (nrows == 4 ? 4 : 1); r++) out[r] *= 256.0f; /* undo the 2^-8 of the fp16 view */
}

void fp8_rowdot_e5m2_avx512(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk,
                            int64_t gblk, const float *gs, int64_t gs_stride, float *out) {
    rowdot_e5m2(rows, row_bytes, nrows, x, nblk, gblk, gs, gs_stride, out);
}
