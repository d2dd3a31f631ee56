#include "kernels/block_dot.h"

#include <immintrin.h>

#include "core/fpconv.h"
#include "kernels/cpu.h"
#include "kernels/wq_rowdot.h"

static inline float blk_d(const uint8_t *b) { return fp16_to_f32((uint16_t)(b[0] | (b[1] << 8))); }

float block_dot_q4_0_ref(const uint8_t *row, const float *x, int64_t k) {
    double s = 0;
    for (int64_t i = 0; i < k / 32; i++, row += 18, x += 32) {
        float d = blk_d(row);
        for (int j = 0; j < 16; j++) {
            s += (double)((float)((row[2 + j] & 0x0F) - 8) * d) * x[j];
            s += (double)((float)((row[2 + j] >> 4) - 8) * d) * x[j + 16];
        }
    }
    return (float)s;
}

float block_dot_q8_0_ref(const uint8_t *row, const float *x, int64_t k) {
    double s = 0;
    for (int64_t i = 0; i < k / 32; i++, row += 34, x += 32) {
        float d = blk_d(row);
        for (int j = 0; j < 32; j++) s += (double)((float)(int8_t)row[2 + j] * d) * x[j];
    }
    return (float)s;
}

WQ_AVX512_TARGET float block_dot_q4_0_avx512(const uint8_t *row, const float *x, int64_t k) {
    __m512 acc = _mm512_setzero_ps();
    const __m512i lo4 = _mm512_set1_epi32(15), eight = _mm512_set1_epi32(8);
    for (int64_t i = 0; i < k / 32; i++, row += 18, x += 32) {
        __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(row + 2)));
        __m512 q0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, lo4), eight));
        __m512 q1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(v, 4), eight));
        __m512 p = _mm512_fmadd_ps(q1, _mm512_loadu_ps(x + 16), _mm512_mul_ps(q0, _mm512_loadu_ps(x)));
        acc = _mm512_fmadd_ps(p, _mm512_set1_ps(blk_d(row)), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

WQ_AVX512_TARGET float block_dot_q8_0_avx512(const uint8_t *row, const float *x, int64_t k) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < k / 32; i++, row += 34, x += 32) {
        __m512 q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(row + 2))));
        __m512 q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(row + 18))));
        __m512 p = _mm512_fmadd_ps(q1, _mm512_loadu_ps(x + 16), _mm512_mul_ps(q0, _mm512_loadu_ps(x)));
        acc = _mm512_fmadd_ps(p, _mm512_set1_ps(blk_d(row)), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

BlockDotFn block_dot_fn(BlockDotKind kind) {
    int fast = cpu_has_avx512f();
    switch (kind) {
    case BLOCK_DOT_Q4_0: return fast ? block_dot_q4_0_avx512 : block_dot_q4_0_ref;
    case BLOCK_DOT_Q8_0: return fast ? block_dot_q8_0_avx512 : block_dot_q8_0_ref;
    default: return NULL;
    }
}
