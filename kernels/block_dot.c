#include "kernels/block_dot.h"

#include <immintrin.h>

#include "core/fpconv.h"
#include "kernels/cpu.h"
#include "kernels/simd.h"
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

/* Sub-block j's 6-bit scale and min of a Q4_K block's 12 scale bytes. */
static inline void q4k_sm(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

float block_dot_q4_k_ref(const uint8_t *row, const float *x, int64_t k) {
    double s = 0;
    for (int64_t i = 0; i < k / 256; i++, row += 144) {
        float d = blk_d(row), dmin = blk_d(row + 2);
        const uint8_t *q = row + 16;
        for (int j = 0; j < 8; j++, x += 32) {
            int sc, m;
            q4k_sm(row + 4, j, &sc, &m);
            float dl = d * (float)sc, ml = dmin * (float)m;
            const uint8_t *qs = q + 32 * (j / 2);
            for (int l = 0; l < 32; l++) {
                int v = j % 2 ? qs[l] >> 4 : qs[l] & 0x0F;
                s += (double)(dl * (float)v - ml) * x[l];
            }
        }
    }
    return (float)s;
}

/* Per sub-block: dl * Σ q·x - ml * Σ x, both sums in vectors. */
QS_TARGET_AVX512 float block_dot_q4_k_avx512(const uint8_t *row, const float *x, int64_t k) {
    __m512 acc = _mm512_setzero_ps();
    const __m512i lo4 = _mm512_set1_epi32(15);
    for (int64_t i = 0; i < k / 256; i++, row += 144) {
        float d = blk_d(row), dmin = blk_d(row + 2);
        const uint8_t *q = row + 16;
        for (int j = 0; j < 8; j += 2, q += 32, x += 64) {
            int sc0, m0, sc1, m1;
            q4k_sm(row + 4, j, &sc0, &m0);
            q4k_sm(row + 4, j + 1, &sc1, &m1);
            __m512i va = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)q));
            __m512i vb = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(q + 16)));
            __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
            __m512 x2 = _mm512_loadu_ps(x + 32), x3 = _mm512_loadu_ps(x + 48);
            __m512 qa = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(vb, lo4)), x1,
                                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(va, lo4)), x0));
            __m512 qb = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(vb, 4)), x3,
                                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(va, 4)), x2));
            acc = _mm512_fmadd_ps(qa, _mm512_set1_ps(d * (float)sc0), acc);
            acc = _mm512_fmadd_ps(qb, _mm512_set1_ps(d * (float)sc1), acc);
            acc = _mm512_fnmadd_ps(_mm512_add_ps(x0, x1), _mm512_set1_ps(dmin * (float)m0), acc);
            acc = _mm512_fnmadd_ps(_mm512_add_ps(x2, x3), _mm512_set1_ps(dmin * (float)m1), acc);
        }
    }
    return _mm512_reduce_add_ps(acc);
}

QS_TARGET_AVX512 float block_dot_q4_0_avx512(const uint8_t *row, const float *x, int64_t k) {
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

QS_TARGET_AVX512 float block_dot_q8_0_avx512(const uint8_t *row, const float *x, int64_t k) {
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
    case BLOCK_DOT_Q4_K: return fast ? block_dot_q4_k_avx512 : block_dot_q4_k_ref;
    default: return NULL;
    }
}
