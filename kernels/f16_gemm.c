#include "kernels/f16_gemm.h"

#include "core/fpconv.h"
#include "kernels/cpu.h"
#include "kernels/simd.h"
#include "kernels/wq_rowdot.h"

void f16_decode_ref(const uint16_t *h, int64_t n, int bf16, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = bf16 ? bf16_to_f32(h[i]) : fp16_to_f32(h[i]);
}

QS_TARGET_AVX512 static inline __m512 f16_load16(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

QS_TARGET_AVX512 static inline __m512 bf16_load16(const uint8_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

QS_TARGET_AVX512 void f16_decode_avx512(const uint16_t *h, int64_t n, int bf16, float *out) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const uint8_t *p = (const uint8_t *)(h + i);
        _mm512_storeu_ps(out + i, bf16 ? bf16_load16(p) : f16_load16(p));
    }
    if (i < n) f16_decode_ref(h + i, n - i, bf16, out + i);
}

QS_TARGET_AVX2 void f16_decode_avx2(const uint16_t *h, int64_t n, int bf16, float *out) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(h + i));
        __m256 f = bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16)) : _mm256_cvtph_ps(v);
        _mm256_storeu_ps(out + i, f);
    }
    if (i < n) f16_decode_ref(h + i, n - i, bf16, out + i);
}

void f16_decode(const void *src, int64_t n, int bf16, float *out) {
    if ((uintptr_t)src % 2 == 0) {
        const uint16_t *h = src;
        if (cpu_has_avx512f()) f16_decode_avx512(h, n, bf16, out);
        else if (cpu_has_avx2() && cpu_has_f16c()) f16_decode_avx2(h, n, bf16, out);
        else f16_decode_ref(h, n, bf16, out);
        return;
    }
    /* bytewise (little-endian halves): the data need not be 2-byte aligned */
    const unsigned char *b = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(b[2 * i] | (b[2 * i + 1] << 8));
        out[i] = bf16 ? bf16_to_f32(h) : fp16_to_f32(h);
    }
}

/* === rounding to fp16 / bf16 (llama.cpp's activation operand) === */

void f16_round_ref(const float *x, float *y, int64_t n, int bf16) {
    for (int64_t i = 0; i < n; i++) y[i] = bf16 ? bf16_to_f32(f32_to_bf16(x[i])) : fp16_to_f32(f32_to_fp16(x[i]));
}

/* bf16 rounding as integer arithmetic on the float's bits: + 0x7fff + (bit
 * 16), keep the high half; NaN lanes keep their bits with the quiet bit set. */
QS_TARGET_AVX512 static inline __m512 bf16_round16(__m512 v) {
    __m512i b = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, b, _mm512_set1_epi32(0x400000));
    return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32((int)0xffff0000u)));
}

QS_TARGET_AVX512 static void f16_round_avx512(const float *x, float *y, int64_t n, int bf16) {
    int64_t i = 0;
    if (bf16) {
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, bf16_round16(_mm512_loadu_ps(x + i)));
    } else {
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
    }
    if (i < n) f16_round_ref(x + i, y + i, n - i, bf16);
}

QS_TARGET_AVX2 static void f16_round_avx2(const float *x, float *y, int64_t n, int bf16) {
    int64_t i = 0;
    if (!bf16)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
    if (i < n) f16_round_ref(x + i, y + i, n - i, bf16);
}

void f16_round(const float *x, float *y, int64_t n, int bf16) {
    if (cpu_has_avx512f()) f16_round_avx512(x, y, n, bf16);
    else if (cpu_has_avx2() && cpu_has_f16c()) f16_round_avx2(x, y, n, bf16);
    else f16_round_ref(x, y, n, bf16);
}

#define F16_DOT(p, xb, a, b)                                                       \
    do {                                                                           \
        a = _mm512_fmadd_ps(f16_load16(p), _mm512_loadu_ps(xb), a);                \
        b = _mm512_fmadd_ps(f16_load16((p) + 32), _mm512_loadu_ps((xb) + 16), b);  \
    } while (0)
#define BF16_DOT(p, xb, a, b)                                                      \
    do {                                                                           \
        a = _mm512_fmadd_ps(bf16_load16(p), _mm512_loadu_ps(xb), a);               \
        b = _mm512_fmadd_ps(bf16_load16((p) + 32), _mm512_loadu_ps((xb) + 16), b); \
    } while (0)
/* f32 blocks are 16 floats; the second accumulator is left alone. */
#define F32_DOT(p, xb, a, b)                                                                   \
    do {                                                                                       \
        a = _mm512_fmadd_ps(_mm512_loadu_ps((const float *)(const void *)(p)), _mm512_loadu_ps(xb), a); \
        (void)(b);                                                                             \
    } while (0)

WQ_ROWDOT_DEFINE(rowdot_f16, 32, 64, F16_DOT)
WQ_ROWDOT_DEFINE(rowdot_bf16, 32, 64, BF16_DOT)
WQ_ROWDOT_DEFINE(rowdot_f32, 16, 64, F32_DOT)

void f16_rowdot_f16_avx512(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk,
                           int64_t gblk, const float *gs, int64_t gs_stride, float *out) {
    rowdot_f16(rows, row_bytes, nrows, x, nblk, gblk, gs, gs_stride, out);
}

void f16_rowdot_bf16_avx512(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk,
                            int64_t gblk, const float *gs, int64_t gs_stride, float *out) {
    rowdot_bf16(rows, row_bytes, nrows, x, nblk, gblk, gs, gs_stride, out);
}

void f16_rowdot_f32_avx512(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk,
                           int64_t gblk, const float *gs, int64_t gs_stride, float *out) {
    rowdot_f32(rows, row_bytes, nrows, x, nblk, gblk, gs, gs_stride, out);
}
