/* The AVX-512 row-dot loop shared by the weight-only kernels (wq_gemm.c for
 * integer codes, fp8_gemm.c, f16_gemm.c). It is a macro template rather than a
 * function so that each code's block decoder is inlined into the loop: a call
 * per 32 weights would cost more than the decode itself. No .c of its own.
 *
 * WQ_ROWDOT_DEFINE(NAME, BLK, BBYTES, DOTBLK) defines
 *   static void NAME(const uint8_t *rows, size_t row_bytes, int nrows,
 *                    const float *x, int64_t nblk, int64_t gblk,
 *                    const float *gs, int64_t gs_stride, float *out);
 * which, for nrows = 1 or 4 consecutive packed rows, writes
 *   out[r] = Σ_g gs[r·gs_stride + g] · Σ_{blocks b of group g} Σ v·x
 * over nblk blocks of BLK elements (BBYTES bytes), groups of gblk blocks;
 * gs == NULL means unit scales. DOTBLK(p, xb, a, b) must add block p's
 * decoded values times x[xb .. xb+BLK) into the __m512 accumulators a and b.
 * Four rows keep eight FMA chains in flight and share the x loads. */
#ifndef QS_KERNELS_WQ_ROWDOT_H
#define QS_KERNELS_WQ_ROWDOT_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include "kernels/simd.h"


#define WQ_ROWDOT_DEFINE(NAME, BLK, BBYTES, DOTBLK)                                                  \
    QS_TARGET_AVX512 static void NAME##_r4(const uint8_t *rows, size_t row_bytes, const float *x,    \
                                           int64_t nblk, int64_t gblk, const float *gs,              \
                                           int64_t gs_stride, float *out) {                          \
        const uint8_t *p0 = rows, *p1 = rows + row_bytes, *p2 = rows + 2 * row_bytes,                \
                      *p3 = rows + 3 * row_bytes;                                                    \
        __m512 t0 = _mm512_setzero_ps(), t1 = t0, t2 = t0, t3 = t0;                                   \
        int64_t g = 0;                                                                               \
        for (int64_t b0 = 0; b0 < nblk; b0 += gblk, g++) {                                           \
            __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,  \
                   a30 = a00, a31 = a00;                                                             \
            int64_t b1 = b0 + gblk < nblk ? b0 + gblk : nblk;                                        \
            for (int64_t b = b0; b < b1; b++) {                                                      \
                const float *xb = x + b * (BLK);                                                     \
                size_t off = (size_t)b * (BBYTES);                                                   \
                /* the next four rows, linearly, as fast as these four are read */                   \
                _mm_prefetch((const char *)(p0 + 4 * row_bytes + 4 * off), _MM_HINT_T0);             \
                if ((BBYTES) > 16)                                                                   \
                    _mm_prefetch((const char *)(p0 + 4 * row_bytes + 4 * off + 64), _MM_HINT_T0);    \
                DOTBLK(p0 + off, xb, a00, a01);                                                      \
                DOTBLK(p1 + off, xb, a10, a11);                                                      \
                DOTBLK(p2 + off, xb, a20, a21);                                                      \
                DOTBLK(p3 + off, xb, a30, a31);                                                      \
            }                                                                                        \
            if (gs) {                                                                                \
                t0 = _mm512_fmadd_ps(_mm512_set1_ps(gs[g]), _mm512_add_ps(a00, a01), t0);            \
                t1 = _mm512_fmadd_ps(_mm512_set1_ps(gs[gs_stride + g]), _mm512_add_ps(a10, a11), t1);\
                t2 = _mm512_fmadd_ps(_mm512_set1_ps(gs[2 * gs_stride + g]), _mm512_add_ps(a20, a21), \
                                     t2);                                                            \
                t3 = _mm512_fmadd_ps(_mm512_set1_ps(gs[3 * gs_stride + g]), _mm512_add_ps(a30, a31), \
                                     t3);                                                            \
            } else {                                                                                 \
                t0 = _mm512_add_ps(t0, _mm512_add_ps(a00, a01));                                     \
                t1 = _mm512_add_ps(t1, _mm512_add_ps(a10, a11));                                     \
                t2 = _mm512_add_ps(t2, _mm512_add_ps(a20, a21));                                     \
                t3 = _mm512_add_ps(t3, _mm512_add_ps(a30, a31));                                     \
            }                                                                                        \
        }                                                                                            \
        out[0] = _mm512_reduce_add_ps(t0);                                                           \
        out[1] = _mm512_reduce_add_ps(t1);                                                           \
        out[2] = _mm512_reduce_add_ps(t2);                                                           \
        out[3] = _mm512_reduce_add_ps(t3);                                                           \
    }                                                                                                \
    QS_TARGET_AVX512 static void NAME##_r1(const uint8_t *p0, const float *x, int64_t nblk,          \
                                           int64_t gblk, const float *gs, float *out) {              \
        __m512 t0 = _mm512_setzero_ps();                                                             \
        int64_t g = 0;                                                                               \
        for (int64_t b0 = 0; b0 < nblk; b0 += gblk, g++) {                                           \
            __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;                       \
            int64_t b1 = b0 + gblk < nblk ? b0 + gblk : nblk;                                        \
            int64_t b = b0;                                                                          \
            for (; b + 1 < b1; b += 2) {                                                             \
                DOTBLK(p0 + (size_t)b * (BBYTES), x + b * (BLK), a00, a01);                          \
                DOTBLK(p0 + (size_t)(b + 1) * (BBYTES), x + (b + 1) * (BLK), a10, a11);              \
            }                                                                                        \
            if (b < b1) DOTBLK(p0 + (size_t)b * (BBYTES), x + b * (BLK), a00, a01);                  \
            __m512 a = _mm512_add_ps(_mm512_add_ps(a00, a01), _mm512_add_ps(a10, a11));              \
            t0 = gs ? _mm512_fmadd_ps(_mm512_set1_ps(gs[g]), a, t0) : _mm512_add_ps(t0, a);          \
        }                                                                                            \
        out[0] = _mm512_reduce_add_ps(t0);                                                           \
    }                                                                                                \
    static void NAME(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk, \
                     int64_t gblk, const float *gs, int64_t gs_stride, float *out) {                 \
        if (nrows == 4) NAME##_r4(rows, row_bytes, x, nblk, gblk, gs, gs_stride, out);               \
        else NAME##_r1(rows, x, nblk, gblk, gs, out);                                                \
    }

/* Signature of the defined NAME, for dispatch tables. */
typedef void (*WqRowDotFn)(const uint8_t *rows, size_t row_bytes, int nrows, const float *x,
                           int64_t nblk, int64_t gblk, const float *gs, int64_t gs_stride, float *out);

#endif
