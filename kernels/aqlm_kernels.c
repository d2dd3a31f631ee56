#include "kernels/aqlm_kernels.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "core/assert.h"
#include "kernels/cpu.h"
#include "kernels/sgemm.h"
#include "kernels/simd.h"


static inline uint32_t aqlm_code_at(const AqlmPacked *w, int64_t idx) {
    return w->codes8 ? w->codes8[idx] : w->codes16[idx];
}

/* ===================================================================== */
/* === Quantizer inner loops                                          === */
/* ===================================================================== */

void aqlm_dots_ref(const float *CT, int64_t K, int g, const float *u, const float *q, float alpha,
                   float *out) {
    for (int64_t k = 0; k < K; k++) {
        double s = q ? (double)alpha * q[k] : 0.0;
        for (int a = 0; a < g; a++) s += (double)u[a] * CT[(int64_t)a * K + k];
        out[k] = (float)s;
    }
}

QS_TARGET_AVX512
static void aqlm_dots_avx512(const float *CT, int64_t K, int g, const float *u, const float *q,
                             float alpha, float *out) {
    int64_t k = 0;
    __m512 va = _mm512_set1_ps(alpha);
    for (; k + 32 <= K; k += 32) {
        __m512 s0 = q ? _mm512_mul_ps(va, _mm512_loadu_ps(q + k)) : _mm512_setzero_ps();
        __m512 s1 = q ? _mm512_mul_ps(va, _mm512_loadu_ps(q + k + 16)) : _mm512_setzero_ps();
        for (int a = 0; a < g; a++) {
            __m512 ua = _mm512_set1_ps(u[a]);
            const float *c = CT + (int64_t)a * K + k;
            s0 = _mm512_fmadd_ps(ua, _mm512_loadu_ps(c), s0);
            s1 = _mm512_fmadd_ps(ua, _mm512_loadu_ps(c + 16), s1);
        }
        _mm512_storeu_ps(out + k, s0);
        _mm512_storeu_ps(out + k + 16, s1);
    }
    for (; k + 16 <= K; k += 16) {
        __m512 s0 = q ? _mm512_mul_ps(va, _mm512_loadu_ps(q + k)) : _mm512_setzero_ps();
        for (int a = 0; a < g; a++)
            s0 = _mm512_fmadd_ps(_mm512_set1_ps(u[a]), _mm512_loadu_ps(CT + (int64_t)a * K + k), s0);
        _mm512_storeu_ps(out + k, s0);
    }
    for (; k < K; k++) {
        float s = q ? alpha * q[k] : 0.0f;
        for (int a = 0; a < g; a++) s += u[a] * CT[(int64_t)a * K + k];
        out[k] = s;
    }
}

QS_TARGET_AVX2
static void aqlm_dots_avx2(const float *CT, int64_t K, int g, const float *u, const float *q,
                           float alpha, float *out) {
    int64_t k = 0;
    __m256 va = _mm256_set1_ps(alpha);
    for (; k + 16 <= K; k += 16) {
        __m256 s0 = q ? _mm256_mul_ps(va, _mm256_loadu_ps(q + k)) : _mm256_setzero_ps();
        __m256 s1 = q ? _mm256_mul_ps(va, _mm256_loadu_ps(q + k + 8)) : _mm256_setzero_ps();
        for (int a = 0; a < g; a++) {
            __m256 ua = _mm256_set1_ps(u[a]);
            const float *c = CT + (int64_t)a * K + k;
            s0 = _mm256_fmadd_ps(ua, _mm256_loadu_ps(c), s0);
            s1 = _mm256_fmadd_ps(ua, _mm256_loadu_ps(c + 8), s1);
        }
        _mm256_storeu_ps(out + k, s0);
        _mm256_storeu_ps(out + k + 8, s1);
    }
    for (; k < K; k++) {
        float s = q ? alpha * q[k] : 0.0f;
        for (int a = 0; a < g; a++) s += u[a] * CT[(int64_t)a * K + k];
        out[k] = s;
    }
}

void aqlm_dots(const float *CT, int64_t K, int g, const float *u, const float *q, float alpha,
               float *out) {
    if (cpu_has_avx512f()) aqlm_dots_avx512(CT, K, g, u, q, alpha, out);
    else if (cpu_has_avx2()) aqlm_dots_avx2(CT, K, g, u, q, alpha, out);
    else aqlm_dots_ref(CT, K, g, u, q, alpha, out);
}

int64_t aqlm_argmin_ref(const float *v, int64_t n) {
    int64_t best = 0;
    for (int64_t k = 1; k < n; k++)
        if (v[k] < v[best] || (v[best] != v[best] && v[k] == v[k])) best = k;
    return best;
}

/* Two sweeps over data that is in L1 anyway: a vector min, then the first
 * lane equal to it. The scalar compare-and-move chain is several times slower
 * and dominated the k-means assignment. */
QS_TARGET_AVX512
static int64_t aqlm_argmin_avx512(const float *v, int64_t n) {
    if (n < 16) return aqlm_argmin_ref(v, n);
    __m512 mn = _mm512_loadu_ps(v);
    int64_t k = 16;
    for (; k + 16 <= n; k += 16) mn = _mm512_min_ps(_mm512_loadu_ps(v + k), mn);
    float m = _mm512_reduce_min_ps(mn);
    for (; k < n; k++)
        if (v[k] < m) m = v[k];
    if (m != m) return aqlm_argmin_ref(v, n);
    __m512 mv = _mm512_set1_ps(m);
    for (k = 0; k + 16 <= n; k += 16) {
        __mmask16 eq = _mm512_cmp_ps_mask(_mm512_loadu_ps(v + k), mv, _CMP_EQ_OQ);
        if (eq) return k + __builtin_ctz((unsigned)eq);
    }
    for (; k < n; k++)
        if (v[k] == m) return k;
    return aqlm_argmin_ref(v, n);
}

int64_t aqlm_argmin(const float *v, int64_t n) {
    if (cpu_has_avx512f()) return aqlm_argmin_avx512(v, n);
    return aqlm_argmin_ref(v, n);
}

void aqlm_rank_update_ref(float *Y, int64_t ldy, int64_t rows, const float *D, int g,
                          const float *Hj, int64_t ldh, int64_t n) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < n; c++) {
            double s = 0;
            for (int a = 0; a < g; a++) s += (double)D[r * g + a] * Hj[(int64_t)a * ldh + c];
            Y[r * ldy + c] = (float)((double)Y[r * ldy + c] - s);
        }
}

/* Holds up to 8 rows of Hj in registers per 16-column strip and streams the
 * rows of Y past them, so H (the big operand) is read once per call. */
QS_TARGET_AVX512
static void aqlm_rank_update_avx512(float *Y, int64_t ldy, int64_t rows, const float *D, int g,
                                    const float *Hj, int64_t ldh, int64_t n) {
    int64_t c = 0;
    if (g == 8) {
        for (; c + 16 <= n; c += 16) {
            __m512 h0 = _mm512_loadu_ps(Hj + 0 * ldh + c), h1 = _mm512_loadu_ps(Hj + 1 * ldh + c);
            __m512 h2 = _mm512_loadu_ps(Hj + 2 * ldh + c), h3 = _mm512_loadu_ps(Hj + 3 * ldh + c);
            __m512 h4 = _mm512_loadu_ps(Hj + 4 * ldh + c), h5 = _mm512_loadu_ps(Hj + 5 * ldh + c);
            __m512 h6 = _mm512_loadu_ps(Hj + 6 * ldh + c), h7 = _mm512_loadu_ps(Hj + 7 * ldh + c);
            for (int64_t r = 0; r < rows; r++) {
                const float *d = D + r * 8;
                float *y = Y + r * ldy + c;
                __m512 s = _mm512_mul_ps(_mm512_set1_ps(d[0]), h0);
                s = _mm512_fmadd_ps(_mm512_set1_ps(d[1]), h1, s);
                s = _mm512_fmadd_ps(_mm512_set1_ps(d[2]), h2, s);
                s = _mm512_fmadd_ps(_mm512_set1_ps(d[3]), h3, s);
                s = _mm512_fmadd_ps(_mm512_set1_ps(d[4]), h4, s);
                s = _mm512_fmadd_ps(_mm512_set1_ps(d[5]), h5, s);
                s = _mm512_fmadd_ps(_mm512_set1_ps(d[6]), h6, s);
                s = _mm512_fmadd_ps(_mm512_set1_ps(d[7]), h7, s);
                _mm512_storeu_ps(y, _mm512_sub_ps(_mm512_loadu_ps(y), s));
            }
        }
    } else {
        for (; c + 16 <= n; c += 16)
            for (int64_t r = 0; r < rows; r++) {
                __m512 s = _mm512_setzero_ps();
                for (int a = 0; a < g; a++)
                    s = _mm512_fmadd_ps(_mm512_set1_ps(D[r * g + a]),
                                        _mm512_loadu_ps(Hj + (int64_t)a * ldh + c), s);
                float *y = Y + r * ldy + c;
                _mm512_storeu_ps(y, _mm512_sub_ps(_mm512_loadu_ps(y), s));
            }
    }
    for (; c < n; c++)
        for (int64_t r = 0; r < rows; r++) {
            float s = 0;
            for (int a = 0; a < g; a++) s += D[r * g + a] * Hj[(int64_t)a * ldh + c];
            Y[r * ldy + c] -= s;
        }
}

QS_TARGET_AVX2
static void aqlm_rank_update_avx2(float *Y, int64_t ldy, int64_t rows, const float *D, int g,
                                  const float *Hj, int64_t ldh, int64_t n) {
    int64_t c = 0;
    for (; c + 8 <= n; c += 8)
        for (int64_t r = 0; r < rows; r++) {
            __m256 s = _mm256_setzero_ps();
            for (int a = 0; a < g; a++)
                s = _mm256_fmadd_ps(_mm256_set1_ps(D[r * g + a]),
                                    _mm256_loadu_ps(Hj + (int64_t)a * ldh + c), s);
            float *y = Y + r * ldy + c;
            _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_loadu_ps(y), s));
        }
    for (; c < n; c++)
        for (int64_t r = 0; r < rows; r++) {
            float s = 0;
            for (int a = 0; a < g; a++) s += D[r * g + a] * Hj[(int64_t)a * ldh + c];
            Y[r * ldy + c] -= s;
        }
}

void aqlm_rank_update(float *Y, int64_t ldy, int64_t rows, const float *D, int g, const float *Hj,
                      int64_t ldh, int64_t n) {
    if (cpu_has_avx512f()) aqlm_rank_update_avx512(Y, ldy, rows, D, g, Hj, ldh, n);
    else if (cpu_has_avx2()) aqlm_rank_update_avx2(Y, ldy, rows, D, g, Hj, ldh, n);
    else aqlm_rank_update_ref(Y, ldy, rows, D, g, Hj, ldh, n);
}

/* ===================================================================== */
/* === LUT GEMV (B <= 8)                                              === */
/* ===================================================================== */

size_t aqlm_lut_floats(const AqlmPacked *w) {
    return (size_t)w->n_groups * (size_t)w->M * (size_t)w->K;
}

void aqlm_lut_build_ref(const AqlmPacked *w, const float *x, float *lut) {
    for (int64_t j = 0; j < w->n_groups; j++)
        for (int m = 0; m < w->M; m++)
            for (int64_t k = 0; k < w->K; k++) {
                const float *c = w->cb + ((int64_t)m * w->K + k) * w->g;
                double s = 0;
                for (int a = 0; a < w->g; a++) s += (double)x[j * w->g + a] * c[a];
                lut[(j * w->M + m) * w->K + k] = (float)s;
            }
}

void aqlm_lut_build(const AqlmPacked *w, const float *x, float *lut) {
    ASSERT(w->cbt != NULL);
    /* One dot-product sweep over the transposed codebook per (group, codebook):
     * the same kernel the quantizer uses to score codewords. */
    for (int64_t j = 0; j < w->n_groups; j++)
        for (int m = 0; m < w->M; m++)
            aqlm_dots(w->cbt + (int64_t)m * w->g * w->K, w->K, w->g, x + j * w->g, NULL, 0.0f,
                      lut + (j * w->M + m) * w->K);
}

void aqlm_lut_gemv_rows_ref(const AqlmPacked *w, const float *lut, int64_t r0, int64_t r1,
                            float *y) {
    int64_t nt = w->n_groups * w->M;
    for (int64_t i = r0; i < r1; i++) {
        const uint8_t *c = w->codes8 + i * nt;
        double s = 0;
        for (int64_t t = 0; t < nt; t++) s += lut[t * w->K + c[t]];
        y[i] = (float)(s * w->scales[i]);
    }
}

/* Gathers 16 LUT entries per instruction (lane l of step t reads
 * lut[(t + l)*K + code[t + l]]), cache-blocked: the 1 MB LUT of a 4096-wide
 * 2x8 layer lives in L2, and gathers from L2 are slower than from L1. So walk
 * the codes in blocks whose LUT slice (AQLM_LUT_BLOCK_FLOATS floats) fits in
 * L1, sweep a chunk of rows over each block, and keep the row sums in a small
 * array until the chunk is done. Measured on 4096x4096 2x8 (one thread, CPU
 * time): 1.30 ms blocked vs 2.0 ms row by row over the whole LUT. */
#ifndef AQLM_LUT_BLOCK_FLOATS
#define AQLM_LUT_BLOCK_FLOATS 8192
#endif
#define AQLM_LUT_ROW_CHUNK 256
QS_TARGET_AVX512
static void aqlm_lut_gemv_rows_avx512(const AqlmPacked *w, const float *lut, int64_t r0, int64_t r1,
                                      float *y) {
    int64_t nt = w->n_groups * w->M;
    int32_t K = (int32_t)w->K;
    int64_t bt = (AQLM_LUT_BLOCK_FLOATS / K) & ~(int64_t)15;
    if (bt < 16) bt = 16;
    const __m512i lane = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                              12, 13, 14, 15),
                                            _mm512_set1_epi32(K));
    const __m512i step = _mm512_set1_epi32(16 * K);
    float acc[AQLM_LUT_ROW_CHUNK];
    for (int64_t c0 = r0; c0 < r1; c0 += AQLM_LUT_ROW_CHUNK) {
        int64_t c1 = c0 + AQLM_LUT_ROW_CHUNK < r1 ? c0 + AQLM_LUT_ROW_CHUNK : r1;
        for (int64_t i = c0; i < c1; i++) acc[i - c0] = 0;
        for (int64_t t0 = 0; t0 < nt; t0 += bt) {
            int64_t t1 = t0 + bt < nt ? t0 + bt : nt;
            int64_t tv = t0 + ((t1 - t0) & ~(int64_t)15);
            const __m512i base0 = _mm512_add_epi32(lane, _mm512_set1_epi32((int32_t)(t0 * K)));
            for (int64_t i = c0; i < c1; i++) {
                const uint8_t *c = w->codes8 + i * nt;
                __m512 a0 = _mm512_setzero_ps();
                __m512i base = base0;
                for (int64_t t = t0; t < tv; t += 16) {
                    __m512i ix = _mm512_add_epi32(base, _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + t))));
                    a0 = _mm512_add_ps(a0, _mm512_i32gather_ps(ix, lut, 4));
                    base = _mm512_add_epi32(base, step);
                }
                float s = _mm512_reduce_add_ps(a0);
                for (int64_t t = tv; t < t1; t++) s += lut[t * K + c[t]];
                acc[i - c0] += s;
            }
        }
        for (int64_t i = c0; i < c1; i++) y[i] = acc[i - c0] * w->scales[i];
    }
}

QS_TARGET_AVX2
static void aqlm_lut_gemv_rows_avx2(const AqlmPacked *w, const float *lut, int64_t r0, int64_t r1,
                                    float *y) {
    int64_t nt = w->n_groups * w->M;
    int32_t K = (int32_t)w->K;
    const __m256i lane = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                            _mm256_set1_epi32(K));
    const __m256i step = _mm256_set1_epi32(8 * K);
    for (int64_t i = r0; i < r1; i++) {
        const uint8_t *c0 = w->codes8 + i * nt;
        __m256 a0 = _mm256_setzero_ps();
        __m256i base = lane;
        int64_t t = 0;
        for (; t + 8 <= nt; t += 8) {
            __m256i i0 = _mm256_add_epi32(base, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(c0 + t))));
            a0 = _mm256_add_ps(a0, _mm256_i32gather_ps(lut, i0, 4));
            base = _mm256_add_epi32(base, step);
        }
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        float s0 = _mm_cvtss_f32(h);
        for (; t < nt; t++) s0 += lut[t * K + c0[t]];
        y[i] = s0 * w->scales[i];
    }
}

void aqlm_lut_gemv_rows(const AqlmPacked *w, const float *lut, int64_t r0, int64_t r1, float *y) {
    ASSERT(w->codes8 != NULL && w->B <= 8);
    /* 32-bit gather indices: the LUT must stay below 2^31 entries. */
    ASSERT((int64_t)aqlm_lut_floats(w) < INT32_MAX);
    if (cpu_has_avx512f()) aqlm_lut_gemv_rows_avx512(w, lut, r0, r1, y);
    else if (cpu_has_avx2()) aqlm_lut_gemv_rows_avx2(w, lut, r0, r1, y);
    else aqlm_lut_gemv_rows_ref(w, lut, r0, r1, y);
}

/* ===================================================================== */
/* === Codeword gather GEMV and decode (any B)                        === */
/* ===================================================================== */

void aqlm_gather_gemv_rows_ref(const AqlmPacked *w, const float *x, int64_t r0, int64_t r1,
                               float *y) {
    for (int64_t i = r0; i < r1; i++) {
        double s = 0;
        for (int64_t j = 0; j < w->n_groups; j++)
            for (int m = 0; m < w->M; m++) {
                uint32_t k = aqlm_code_at(w, (i * w->n_groups + j) * w->M + m);
                const float *c = w->cb + ((int64_t)m * w->K + k) * w->g;
                for (int a = 0; a < w->g; a++) s += (double)x[j * w->g + a] * c[a];
            }
        y[i] = (float)(s * w->scales[i]);
    }
}

/* For g == 8: sums the M codewords of a group in one 8-wide register and
 * multiplies by x's group; 16-bit codes index codebooks far larger than any
 * cache, so this path is bound by the codeword loads. */
QS_TARGET_AVX2
static void aqlm_gather_gemv_rows_avx2_g8(const AqlmPacked *w, const float *x, int64_t r0,
                                          int64_t r1, float *y) {
    const int64_t KG = w->K * 8;
    for (int64_t i = r0; i < r1; i++) {
        __m256 acc = _mm256_setzero_ps();
        int64_t base = i * w->n_groups * w->M;
        for (int64_t j = 0; j < w->n_groups; j++) {
            __m256 v = _mm256_setzero_ps();
            for (int m = 0; m < w->M; m++) {
                uint32_t k = aqlm_code_at(w, base + j * w->M + m);
                v = _mm256_add_ps(v, _mm256_loadu_ps(w->cb + m * KG + (int64_t)k * 8));
            }
            acc = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + j * 8), acc);
        }
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        y[i] = _mm_cvtss_f32(h) * w->scales[i];
    }
}

static void aqlm_gather_gemv_rows_scalar(const AqlmPacked *w, const float *x, int64_t r0,
                                         int64_t r1, float *y) {
    for (int64_t i = r0; i < r1; i++) {
        float s = 0;
        int64_t base = i * w->n_groups * w->M;
        for (int64_t j = 0; j < w->n_groups; j++)
            for (int m = 0; m < w->M; m++) {
                uint32_t k = aqlm_code_at(w, base + j * w->M + m);
                const float *c = w->cb + ((int64_t)m * w->K + k) * w->g;
                for (int a = 0; a < w->g; a++) s += x[j * w->g + a] * c[a];
            }
        y[i] = s * w->scales[i];
    }
}

void aqlm_gather_gemv_rows(const AqlmPacked *w, const float *x, int64_t r0, int64_t r1, float *y) {
    if (w->g == 8 && cpu_has_avx2()) aqlm_gather_gemv_rows_avx2_g8(w, x, r0, r1, y);
    else aqlm_gather_gemv_rows_scalar(w, x, r0, r1, y);
}

void aqlm_decode_rows_ref(const AqlmPacked *w, int64_t r0, int64_t r1, float *out) {
    for (int64_t i = r0; i < r1; i++)
        for (int64_t j = 0; j < w->n_groups; j++)
            for (int a = 0; a < w->g; a++) {
                double s = 0;
                for (int m = 0; m < w->M; m++) {
                    uint32_t k = aqlm_code_at(w, (i * w->n_groups + j) * w->M + m);
                    s += w->cb[((int64_t)m * w->K + k) * w->g + a];
                }
                out[(i - r0) * w->n_in + j * w->g + a] = (float)(s * w->scales[i]);
            }
}

QS_TARGET_AVX2
static void aqlm_decode_rows_avx2_g8(const AqlmPacked *w, int64_t r0, int64_t r1, float *out) {
    const int64_t KG = w->K * 8;
    for (int64_t i = r0; i < r1; i++) {
        __m256 sc = _mm256_set1_ps(w->scales[i]);
        int64_t base = i * w->n_groups * w->M;
        float *o = out + (i - r0) * w->n_in;
        for (int64_t j = 0; j < w->n_groups; j++) {
            __m256 v = _mm256_setzero_ps();
            for (int m = 0; m < w->M; m++) {
                uint32_t k = aqlm_code_at(w, base + j * w->M + m);
                v = _mm256_add_ps(v, _mm256_loadu_ps(w->cb + m * KG + (int64_t)k * 8));
            }
            _mm256_storeu_ps(o + j * 8, _mm256_mul_ps(v, sc));
        }
    }
}

static void aqlm_decode_rows_scalar(const AqlmPacked *w, int64_t r0, int64_t r1, float *out) {
    for (int64_t i = r0; i < r1; i++) {
        float *o = out + (i - r0) * w->n_in;
        int64_t base = i * w->n_groups * w->M;
        for (int64_t j = 0; j < w->n_groups; j++) {
            float *og = o + j * w->g;
            for (int a = 0; a < w->g; a++) og[a] = 0;
            for (int m = 0; m < w->M; m++) {
                uint32_t k = aqlm_code_at(w, base + j * w->M + m);
                const float *c = w->cb + ((int64_t)m * w->K + k) * w->g;
                for (int a = 0; a < w->g; a++) og[a] += c[a];
            }
            for (int a = 0; a < w->g; a++) og[a] *= w->scales[i];
        }
    }
}

void aqlm_decode_rows(const AqlmPacked *w, int64_t r0, int64_t r1, float *out) {
    if (w->g == 8 && cpu_has_avx2()) aqlm_decode_rows_avx2_g8(w, r0, r1, out);
    else aqlm_decode_rows_scalar(w, r0, r1, out);
}

/* ===================================================================== */
/* === Parallel drivers                                               === */
/* ===================================================================== */

typedef struct {
    const AqlmPacked *w;
    const float *x;
    const float *lut;
    float *lut_out;
    float *y;
    int64_t r0;      /* first row of the tile (decode) */
    float *tile;
} AqlmJob;

static void aqlm_job_lut_build(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    AqlmJob *jb = arg;
    const AqlmPacked *w = jb->w;
    for (int64_t j = b; j < e; j++)
        for (int m = 0; m < w->M; m++)
            aqlm_dots(w->cbt + (int64_t)m * w->g * w->K, w->K, w->g, jb->x + j * w->g, NULL, 0.0f,
                      jb->lut_out + (j * w->M + m) * w->K);
}

static void aqlm_job_lut_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    AqlmJob *jb = arg;
    aqlm_lut_gemv_rows(jb->w, jb->lut, b, e, jb->y);
}

static void aqlm_job_gather_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    AqlmJob *jb = arg;
    aqlm_gather_gemv_rows(jb->w, jb->x, b, e, jb->y);
}

static void aqlm_job_decode(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    AqlmJob *jb = arg;
    aqlm_decode_rows(jb->w, jb->r0 + b, jb->r0 + e, jb->tile + b * jb->w->n_in);
}

void aqlm_gemv(const AqlmPacked *w, const float *x, float *y, float *lut, Pool *pool) {
    AqlmJob jb = {.w = w, .x = x, .y = y};
    if (lut && w->codes8 && w->cbt && w->B <= 8) {
        jb.lut_out = lut;
        jb.lut = lut;
        pool_for(pool, w->n_groups, 16, aqlm_job_lut_build, &jb);
        pool_for(pool, w->n_out, 16, aqlm_job_lut_rows, &jb);
    } else {
        pool_for(pool, w->n_out, 8, aqlm_job_gather_rows, &jb);
    }
}

size_t aqlm_gemm_scratch_floats(const AqlmPacked *w, int64_t T) {
    if (T < AQLM_PREFILL_DECODE_T) return 0;
    int64_t rows = w->n_out < AQLM_DECODE_TILE ? w->n_out : AQLM_DECODE_TILE;
    return (size_t)rows * (size_t)w->n_in;
}

void aqlm_gemm(const AqlmPacked *w, const float *x, int64_t T, float *y, float *lut, float *tile,
               Pool *pool) {
    if (T >= AQLM_PREFILL_DECODE_T && tile) {
        AqlmJob jb = {.w = w, .tile = tile};
        for (int64_t r0 = 0; r0 < w->n_out; r0 += AQLM_DECODE_TILE) {
            int64_t rows = w->n_out - r0 < AQLM_DECODE_TILE ? w->n_out - r0 : AQLM_DECODE_TILE;
            jb.r0 = r0;
            pool_for(pool, rows, 8, aqlm_job_decode, &jb);
            sgemm_mul_nt(T, rows, w->n_in, x, w->n_in, tile, w->n_in, 0.0f, y + r0, w->n_out);
        }
        return;
    }
    /* Row t of y is contiguous (n_out), so each token is one GEMV. */
    for (int64_t t = 0; t < T; t++) aqlm_gemv(w, x + t * w->n_in, y + t * w->n_out, lut, pool);
}

void aqlm_gemm_ref(const AqlmPacked *w, const float *x, int64_t T, float *y) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < w->n_out; i++) {
            double s = 0;
            for (int64_t j = 0; j < w->n_groups; j++)
                for (int a = 0; a < w->g; a++) {
                    double c = 0;
                    for (int m = 0; m < w->M; m++) {
                        uint32_t k = aqlm_code_at(w, (i * w->n_groups + j) * w->M + m);
                        c += w->cb[((int64_t)m * w->K + k) * w->g + a];
                    }
                    s += c * x[t * w->n_in + j * w->g + a];
                }
            y[t * w->n_out + i] = (float)(s * w->scales[i]);
        }
}
