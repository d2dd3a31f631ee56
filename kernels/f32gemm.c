#include "kernels/f32gemm.h"

#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fpconv.h"
#include "kernels/cpu.h"
#include "kernels/sgemm.h"
#include "kernels/simd.h"

/* Blocking: an A block (MC x KC, 1 MB) and a B block (KC x NC, 512 KB) sit
 * in a 2 MB L2 together, so for M <= MC each weight element is packed once
 * per call; a larger KC halves the read-modify-write passes over C, which
 * measured better than KC 256 (and 384) here. The pool path
 * (gemm_f32_nt_pool) keeps the same tiles but runs each weight panel over
 * all of K, reading the shared packed A (up to 516 x K) from L3 once per
 * panel. */
#define MR 12
#define NR 32
#define KC 512
#define MC 516 /* a multiple of MR */
#define NC 256
#define PF_DIST 64 /* floats ahead that B packing prefetches in each row */
/* The AVX2 tiles (see "AVX2 and portable kernels"): KC2 x NC2 (256 KB)
 * leaves half of a Zen 3's 512 KB L2 for the A tiles. KC2 is part of the
 * summation order there, so it is fixed: never tune it per shape. */
#define MR2 6
#define NR2 16
#define KC2 256
#define NC2 256 /* a multiple of NR2 */
#define MC2 516 /* a multiple of MR2 */
/* Floats in each thread's packing buffers: the larger of the two schemes'. */
#define AP_FLOATS ((size_t)MC * KC > (size_t)MC2 * KC2 ? (size_t)MC * KC : (size_t)MC2 * KC2)
#define BP_FLOATS ((size_t)KC * NC > (size_t)KC2 * NC2 ? (size_t)KC * NC : (size_t)KC2 * NC2)

struct GemmWork {
    int n;
    float **ap;   /* [n] (MC, KC) packed A tiles */
    float **bp;   /* [n] (KC, NC) packed B panels */
    float *apall; /* (MC rounded up to MR, K) A packed once for all threads by gemm_f32_nt_pool */
    size_t apall_cap; /* floats allocated in apall */
    float **cs;   /* [n] A·Bᵀ before it is added to C (beta 1, K over one k block); grown on use */
    size_t *cs_cap; /* [n] floats allocated in cs[i] */
};

Status gemm_work_new(int n_threads, GemmWork **out, Err *err) {
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    GemmWork *w = core_calloc(1, sizeof *w);
    if (!w) goto fail;
    w->n = n_threads;
    w->ap = core_calloc((size_t)n_threads, sizeof *w->ap);
    w->bp = core_calloc((size_t)n_threads, sizeof *w->bp);
    w->cs = core_calloc((size_t)n_threads, sizeof *w->cs);
    w->cs_cap = core_calloc((size_t)n_threads, sizeof *w->cs_cap);
    if (!w->ap || !w->bp || !w->cs || !w->cs_cap) goto fail;
    for (int i = 0; i < n_threads; i++) {
        w->ap[i] = core_alloc_aligned(AP_FLOATS, sizeof(float));
        w->bp[i] = core_alloc_aligned(BP_FLOATS, sizeof(float));
        if (!w->ap[i] || !w->bp[i]) goto fail;
    }
    *out = w;
    return ST_OK;
fail:
    gemm_work_free(w);
    return err_set(err, ST_ERR_NOMEM, "gemm: packing buffers for %d threads", n_threads);
}

void gemm_work_free(GemmWork *w) {
    if (!w) return;
    for (int i = 0; w->ap && i < w->n; i++) core_free_aligned(w->ap[i]);
    for (int i = 0; w->bp && i < w->n; i++) core_free_aligned(w->bp[i]);
    for (int i = 0; w->cs && i < w->n; i++) core_free_aligned(w->cs[i]);
    free(w->cs);
    free(w->cs_cap);
    core_free_aligned(w->apall);
    free(w->ap);
    free(w->bp);
    free(w);
}


/* === AVX-512 packing === */


/* In-register transpose: row i of the input becomes column i. */
QS_TARGET_AVX512 __attribute__((always_inline)) static inline void tr16(__m512 r[16]) {
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
        t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD);
    }
}

/* Loads 16 rows (rows >= nrows are zero) of 16 k-values (k >= nk masked to
 * zero) starting at src, row stride ld, and transposes them: r[kk] holds
 * element k0+kk of the 16 rows. */
QS_TARGET_AVX512 __attribute__((always_inline)) static inline void load_tr16(__m512 r[16], const float *src, int64_t ld, int64_t nrows, int64_t nk) {
    __mmask16 mk = nk >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nk) - 1);
    for (int i = 0; i < 16; i++)
        r[i] = i < nrows ? _mm512_maskz_loadu_ps(mk, src + i * ld) : _mm512_setzero_ps();
    tr16(r);
}

/* B element types of the _nt products: float32, or fp16/bf16 weights widened
 * exactly to float32 as they are packed (prefill) or read (decode), so the
 * activations stay float32 whatever the weight dtype. */
#define BT_F32 GEMM_B_F32
#define BT_F16 GEMM_B_F16
#define BT_BF16 GEMM_B_BF16
#define AI __attribute__((always_inline))

static size_t bt_size(int bt) { return bt == BT_F32 ? 4 : 2; }

/* 16 consecutive B elements at p (element index), as floats. */
QS_TARGET_AVX512 AI static inline __m512 ldb16(const void *B, int bt, int64_t p) {
    if (bt == BT_F32) return _mm512_loadu_ps((const float *)B + p);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)B + p));
    if (bt == BT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The same with lanes outside mask zero (and not read). */
QS_TARGET_AVX512 AI static inline __m512 ldb16_mask(const void *B, int bt, int64_t p, __mmask16 m) {
    if (bt == BT_F32) return _mm512_maskz_loadu_ps(m, (const float *)B + p);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)B + p);
    if (bt == BT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Address of element p of B. */
static inline const char *bt_addr(const void *B, int bt, int64_t p) {
    return (const char *)B + (size_t)p * bt_size(bt);
}

/* A rows [0, m) x k [0, kc) -> tiles of MR rows, k-major: ap[tile][k][MR]
 * (rows past m are zero). */
QS_TARGET_AVX512 static void pack_a_512(float *ap, const float *A, int64_t lda, int64_t m, int64_t kc) {
    const __mmask16 lanes = (__mmask16)((1u << MR) - 1);
    for (int64_t i = 0; i < m; i += MR) {
        int64_t rows = m - i < MR ? m - i : MR;
        float *t = ap + (i / MR) * MR * kc;
        for (int64_t k = 0; k < kc; k += 16) {
            int64_t nk = kc - k < 16 ? kc - k : 16;
            __m512 r[16];
            if (rows == MR && nk == 16) {
                /* Full tile, unrolled to stay in registers (as in pack_b_nt_512). */
                const float *src = A + i * lda + k;
#pragma GCC unroll 16
                for (int q = 0; q < 16; q++) r[q] = q < MR ? _mm512_loadu_ps(src + q * lda) : _mm512_setzero_ps();
                tr16(r);
#pragma GCC unroll 16
                for (int q = 0; q < 16; q++) _mm512_mask_storeu_ps(t + (k + q) * MR, lanes, r[q]);
                continue;
            }
            load_tr16(r, A + i * lda + k, lda, rows, nk);
            for (int64_t kk = 0; kk < nk; kk++) _mm512_mask_storeu_ps(t + (k + kk) * MR, lanes, r[kk]);
        }
    }
}

/* B (N, K) rows [0, n) x k [0, kc) -> panels of NR columns, k-major:
 * bp[panel][k][NR]; B's elements of type bt (ldb in elements). */
QS_TARGET_AVX512 AI static inline void pack_b_nt_t(float *bp, const void *B, int bt, int64_t ldb, int64_t n, int64_t kc) {
    for (int64_t j = 0; j < n; j += NR) {
        float *p = bp + (j / NR) * NR * kc;
        for (int h = 0; h < 2; h++) {
            int64_t j0 = j + 16 * h;
            int64_t rows = n - j0 < 0 ? 0 : (n - j0 < 16 ? n - j0 : 16);
            for (int64_t k = 0; k < kc; k += 16) {
                int64_t nk = kc - k < 16 ? kc - k : 16;
                __m512 r[16];
                if (rows == 16 && nk == 16) {
                    /* The common full block, fully unrolled so that the 16
                     * rows stay in registers (the general path below goes
                     * through the stack): per element 0.66 -> 0.39 cycles
                     * with B in L2, 0.85 -> 0.7 with rows 8 KB apart. */
                    int64_t src = j0 * ldb + k;
                    if (k + PF_DIST < kc) {
#pragma GCC unroll 16
                        for (int i = 0; i < 16; i++)
                            _mm_prefetch(bt_addr(B, bt, src + i * ldb + PF_DIST), _MM_HINT_T0);
                    }
#pragma GCC unroll 16
                    for (int i = 0; i < 16; i++) r[i] = ldb16(B, bt, src + i * ldb);
                    tr16(r);
                    float *dst = p + k * NR + 16 * h;
#pragma GCC unroll 16
                    for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + i * NR, r[i]);
                    continue;
                }
                /* Weights come from DRAM: fetch each row's next lines ahead. */
                for (int64_t i = 0; i < rows && k + PF_DIST < kc; i++)
                    _mm_prefetch(bt_addr(B, bt, (j0 + i) * ldb + k + PF_DIST), _MM_HINT_T0);
                __mmask16 mk = nk >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nk) - 1);
                for (int i = 0; i < 16; i++)
                    r[i] = i < rows ? ldb16_mask(B, bt, (j0 + i) * ldb + k, mk) : _mm512_setzero_ps();
                tr16(r);
                for (int64_t kk = 0; kk < nk; kk++) _mm512_storeu_ps(p + (k + kk) * NR + 16 * h, r[kk]);
            }
        }
    }
}

QS_TARGET_AVX512 static void pack_b_nt_f32(float *bp, const void *B, int64_t ldb, int64_t n, int64_t kc) {
    pack_b_nt_t(bp, B, BT_F32, ldb, n, kc);
}
QS_TARGET_AVX512 static void pack_b_nt_f16(float *bp, const void *B, int64_t ldb, int64_t n, int64_t kc) {
    pack_b_nt_t(bp, B, BT_F16, ldb, n, kc);
}
QS_TARGET_AVX512 static void pack_b_nt_bf16(float *bp, const void *B, int64_t ldb, int64_t n, int64_t kc) {
    pack_b_nt_t(bp, B, BT_BF16, ldb, n, kc);
}

/* The packer for bt (one specialised copy per type). */
static void pack_b_nt_512(float *bp, const void *B, int bt, int64_t ldb, int64_t n, int64_t kc) {
    if (bt == BT_F16) pack_b_nt_f16(bp, B, ldb, n, kc);
    else if (bt == BT_BF16) pack_b_nt_bf16(bp, B, ldb, n, kc);
    else pack_b_nt_f32(bp, B, ldb, n, kc);
}

/* B (K, N) k [0, kc) x columns [0, n) -> the same panel layout (a copy). */
QS_TARGET_AVX512 static void pack_b_nn_512(float *bp, const float *B, int64_t ldb, int64_t n, int64_t kc) {
    for (int64_t j = 0; j < n; j += NR) {
        float *p = bp + (j / NR) * NR * kc;
        int64_t c0 = n - j < 16 ? n - j : 16, c1 = n - j - 16 < 0 ? 0 : (n - j - 16 < 16 ? n - j - 16 : 16);
        __mmask16 m0 = (__mmask16)((1u << c0) - 1), m1 = (__mmask16)((1u << c1) - 1);
        for (int64_t k = 0; k < kc; k++) {
            const float *src = B + k * ldb + j;
            _mm512_storeu_ps(p + k * NR, _mm512_maskz_loadu_ps(m0, src));
            _mm512_storeu_ps(p + k * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
        }
    }
}

/* === micro-kernel === */

/* C tile (mr <= 12 rows, nr <= 32 cols) (+)= ap (kc, 12) · bp (kc, 32). */
QS_TARGET_AVX512 static void kern_12x32(int64_t kc, const float *ap, const float *bp, float *C, int64_t ldc, int add,
                           int64_t mr, int64_t nr) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
           c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00,
           c80 = c00, c81 = c00, c90 = c00, c91 = c00, ca0 = c00, ca1 = c00, cb0 = c00, cb1 = c00;
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
        __m512 a;
#define ROW(r, x0, x1)                          \
    a = _mm512_set1_ps(ap[r]);                  \
    x0 = _mm512_fmadd_ps(a, b0, x0);            \
    x1 = _mm512_fmadd_ps(a, b1, x1);
        ROW(0, c00, c01) ROW(1, c10, c11) ROW(2, c20, c21) ROW(3, c30, c31)
        ROW(4, c40, c41) ROW(5, c50, c51) ROW(6, c60, c61) ROW(7, c70, c71)
        ROW(8, c80, c81) ROW(9, c90, c91) ROW(10, ca0, ca1) ROW(11, cb0, cb1)
#undef ROW
        ap += MR;
        bp += NR;
    }
    __m512 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                         {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71},
                         {c80, c81}, {c90, c91}, {ca0, ca1}, {cb0, cb1}};
    int64_t n0 = nr < 16 ? nr : 16, n1 = nr - 16 < 0 ? 0 : nr - 16;
    __mmask16 m0 = n0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n0) - 1);
    __mmask16 m1 = n1 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n1) - 1);
    for (int64_t r = 0; r < mr; r++) {
        float *c = C + r * ldc;
        __m512 v0 = acc[r][0], v1 = acc[r][1];
        if (add) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, c));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, c + 16));
        }
        _mm512_mask_storeu_ps(c, m0, v0);
        if (m1) _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

/* === few rows: dot products straight from B (no packing) ===
 * For M < SMALL_M (single-token decode) the product is bound by reading B
 * once; packing it would triple the traffic. Four rows of B at a time against
 * each row of A (re-read from L1). */

#define SMALL_M 8

QS_TARGET_AVX512 AI static inline void gemm_small_t(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B,
                                        int bt, int64_t ldb, float beta, float *C, int64_t ldc) {
    int64_t kv = K & ~(int64_t)15;
    __mmask16 tail = (__mmask16)((1u << (K - kv)) - 1);
    for (int64_t n = 0; n < N; n += 4) {
        int64_t nb = N - n < 4 ? N - n : 4;
        int64_t b0 = n * ldb, b1 = nb > 1 ? b0 + ldb : b0, b2 = nb > 2 ? b0 + 2 * ldb : b0,
                b3 = nb > 3 ? b0 + 3 * ldb : b0;
        for (int64_t t = 0; t < M; t++) {
            const float *a = A + t * lda;
            __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
            for (int64_t k = 0; k < kv; k += 16) {
                __m512 x = _mm512_loadu_ps(a + k);
                s0 = _mm512_fmadd_ps(ldb16(B, bt, b0 + k), x, s0);
                s1 = _mm512_fmadd_ps(ldb16(B, bt, b1 + k), x, s1);
                s2 = _mm512_fmadd_ps(ldb16(B, bt, b2 + k), x, s2);
                s3 = _mm512_fmadd_ps(ldb16(B, bt, b3 + k), x, s3);
            }
            if (tail) {
                __m512 x = _mm512_maskz_loadu_ps(tail, a + kv);
                s0 = _mm512_fmadd_ps(ldb16_mask(B, bt, b0 + kv, tail), x, s0);
                s1 = _mm512_fmadd_ps(ldb16_mask(B, bt, b1 + kv, tail), x, s1);
                s2 = _mm512_fmadd_ps(ldb16_mask(B, bt, b2 + kv, tail), x, s2);
                s3 = _mm512_fmadd_ps(ldb16_mask(B, bt, b3 + kv, tail), x, s3);
            }
            float r[4] = {_mm512_reduce_add_ps(s0), _mm512_reduce_add_ps(s1), _mm512_reduce_add_ps(s2),
                          _mm512_reduce_add_ps(s3)};
            float *c = C + t * ldc + n;
            for (int64_t j = 0; j < nb; j++) c[j] = beta != 0.0f ? c[j] + r[j] : r[j];
        }
    }
}

QS_TARGET_AVX512 static void gemm_small_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B,
                                int64_t ldb, float beta, float *C, int64_t ldc) {
    gemm_small_t(M, N, K, A, lda, B, BT_F32, ldb, beta, C, ldc);
}
QS_TARGET_AVX512 static void gemm_small_f16(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B,
                                int64_t ldb, float beta, float *C, int64_t ldc) {
    gemm_small_t(M, N, K, A, lda, B, BT_F16, ldb, beta, C, ldc);
}
QS_TARGET_AVX512 static void gemm_small_bf16(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B,
                                 int64_t ldb, float beta, float *C, int64_t ldc) {
    gemm_small_t(M, N, K, A, lda, B, BT_BF16, ldb, beta, C, ldc);
}

/* Few rows (decode): dot products straight from B of type bt, converting on
 * the fly — the weights are read once, in their stored width. */
static void gemm_small_512(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B, int bt,
                           int64_t ldb, float beta, float *C, int64_t ldc) {
    if (bt == BT_F16) gemm_small_f16(M, N, K, A, lda, B, ldb, beta, C, ldc);
    else if (bt == BT_BF16) gemm_small_bf16(M, N, K, A, lda, B, ldb, beta, C, ldc);
    else gemm_small_f32(M, N, K, A, lda, B, ldb, beta, C, ldc);
}

/* Every dispatch level has an own GEMM: OpenBLAS's sgemm is not one to use
 * where results must not move, since the bits of a C element depend on the
 * call's shape and thread count (which edge kernel and which thread's
 * partition computed it): a fused q/k/v product then differs from the
 * separate ones, and a pool of 2 from a pool of 1. */
int gemm_f32_available(void) { return 1; }

/* === AVX2 and portable kernels ===
 * Without AVX-512 each C element of an _nt product is summed in an order
 * that K and whether M < SMALL_M decide, nothing else:
 * - M >= SMALL_M (prefill): K is cut into blocks of KC2 (256) from k = 0;
 *   each block's sum starts at zero and adds A[k]·B[k] for k in order by
 *   fused multiply-add; the block sums are added in order to the first
 *   one's, and that sum to C when beta is non-zero (so y + W·x computed in
 *   one call equals W·x added to y afterwards). This is a BLIS-style GEMM's order
 *   (one vector lane per C element, its k-chain in one register): A packed
 *   into 6-row k-major tiles, B into 16-column k-major panels (widened from
 *   fp16/bf16 by 8x8 register transposes), a 6x16 micro-kernel of 12
 *   accumulators (two B vectors and one broadcast per row and k: 8 loads for
 *   12 FMAs).
 * - M < SMALL_M (decode): one dot product per element straight from B's
 *   rows: lane l (0..7) sums, by fused multiply-add, A[k]·B[k] for k = l
 *   (mod 8) below K8 = K rounded down to 8; the lanes are added as
 *   ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)); then k = K8..K-1 in order by fused
 *   multiply-add; then + C when beta is non-zero. (The tiles' order here
 *   would need the weights transposed on the fly: half the speed measured.)
 * _nn sums k = 0..K-1 in order by fused multiply-add per element, then + C.
 * So a C element has the same bits whatever the partition (threads, columns
 * per thread, fused or separate weights, the tile it falls in, rows per call
 * on the same side of SMALL_M), as on AVX-512 (whose decode path also
 * differs from its tiles), and the AVX2 and portable code give the same
 * bits. */


static inline float bt_load1(const void *B, int bt, int64_t p) {
    if (bt == BT_F16) return fp16_to_f32(((const uint16_t *)B)[p]);
    if (bt == BT_BF16) return bf16_to_f32(((const uint16_t *)B)[p]);
    return ((const float *)B)[p];
}

static inline float lanes_sum(const float l[8]) {
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/* The portable twin of the AVX2 _nt GEMM (the same bits). */
static void blk_nt_portable(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B, int bt,
                            int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M < SMALL_M) {
        int64_t k8 = K & ~(int64_t)7;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                const float *a = A + i * lda;
                int64_t b0 = j * ldb;
                float l[8] = {0};
                for (int64_t k = 0; k < k8; k += 8)
                    for (int q = 0; q < 8; q++) l[q] = fmaf(a[k + q], bt_load1(B, bt, b0 + k + q), l[q]);
                float s = lanes_sum(l);
                for (int64_t k = k8; k < K; k++) s = fmaf(a[k], bt_load1(B, bt, b0 + k), s);
                C[i * ldc + j] = beta != 0.0f ? C[i * ldc + j] + s : s;
            }
        return;
    }
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            const float *a = A + i * lda;
            int64_t b0 = j * ldb;
            float sum = 0.0f;
            for (int64_t pc = 0; pc < K; pc += KC2) {
                int64_t k1 = K - pc < KC2 ? K : pc + KC2;
                float s = 0.0f;
                for (int64_t k = pc; k < k1; k++) s = fmaf(a[k], bt_load1(B, bt, b0 + k), s);
                sum = pc > 0 ? sum + s : s;
            }
            C[i * ldc + j] = beta != 0.0f ? C[i * ldc + j] + sum : sum;
        }
}

#define T2 QS_TARGET_AVX2

/* 8 consecutive B elements at p (element index), as floats. */
T2 AI static inline __m256 ld8(const void *B, int bt, int64_t p) {
    if (bt == BT_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)B + p)));
    if (bt == BT_BF16)
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)B + p))), 16));
    return _mm256_loadu_ps((const float *)B + p);
}

/* The first n (< 8) B elements at p, the other lanes zero (nothing past them read). */
T2 AI static inline __m256 ld8_part(const void *B, int bt, int64_t p, int64_t n) {
    float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < n; i++) t[i] = bt_load1(B, bt, p + i);
    return _mm256_loadu_ps(t);
}

/* In-register 8x8 transpose: row i of the input becomes column i. */
T2 AI static inline void tr8(__m256 r[8]) {
    __m256 t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
        r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
    }
}

/* A rows [0, m) x k [0, kc) -> tiles of MR2 rows, k-major: ap[tile][k][MR2]
 * (rows past m are zero). The activations are small next to the weights
 * (M x K against N x K), so a plain copy does. */
static void pack_a_256(float *ap, const float *A, int64_t lda, int64_t m, int64_t kc) {
    for (int64_t i = 0; i < m; i += MR2) {
        int64_t rows = m - i < MR2 ? m - i : MR2;
        float *t = ap + (i / MR2) * MR2 * kc;
        for (int64_t r = 0; r < MR2; r++) {
            const float *src = A + (i + r) * lda;
            if (r < rows)
                for (int64_t k = 0; k < kc; k++) t[k * MR2 + r] = src[k];
            else
                for (int64_t k = 0; k < kc; k++) t[k * MR2 + r] = 0.0f;
        }
    }
}

/* B (N, K) of type bt, rows [0, n) x k [0, kc) -> panels of NR2 columns,
 * k-major: bp[panel][k][NR2] (columns past n are zero). */
T2 AI static inline void pack_b_256_t(float *bp, const void *B, int bt, int64_t ldb, int64_t n, int64_t kc) {
    for (int64_t j = 0; j < n; j += NR2) {
        float *p = bp + (j / NR2) * NR2 * kc;
        for (int h = 0; h < 2; h++) {
            int64_t j0 = j + 8 * h;
            int64_t rows = n - j0 < 0 ? 0 : (n - j0 < 8 ? n - j0 : 8);
            for (int64_t k = 0; k < kc; k += 8) {
                int64_t nk = kc - k < 8 ? kc - k : 8;
                __m256 r[8];
                int64_t src = j0 * ldb + k;
                if (rows == 8 && nk == 8) {
                    /* Weights come from DRAM: fetch each row's next lines ahead. */
                    if (k + PF_DIST < kc) {
#pragma GCC unroll 8
                        for (int i = 0; i < 8; i++) _mm_prefetch(bt_addr(B, bt, src + i * ldb + PF_DIST), _MM_HINT_T0);
                    }
#pragma GCC unroll 8
                    for (int i = 0; i < 8; i++) r[i] = ld8(B, bt, src + i * ldb);
                } else {
                    for (int i = 0; i < 8; i++)
                        r[i] = i >= rows ? _mm256_setzero_ps()
                               : nk == 8 ? ld8(B, bt, src + i * ldb)
                                         : ld8_part(B, bt, src + i * ldb, nk);
                }
                tr8(r);
                float *dst = p + k * NR2 + 8 * h;
                for (int64_t kk = 0; kk < nk; kk++) _mm256_storeu_ps(dst + kk * NR2, r[kk]);
            }
        }
    }
}

T2 static void pack_b_256_f32(float *bp, const void *B, int64_t ldb, int64_t n, int64_t kc) {
    pack_b_256_t(bp, B, BT_F32, ldb, n, kc);
}
T2 static void pack_b_256_f16(float *bp, const void *B, int64_t ldb, int64_t n, int64_t kc) {
    pack_b_256_t(bp, B, BT_F16, ldb, n, kc);
}
T2 static void pack_b_256_bf16(float *bp, const void *B, int64_t ldb, int64_t n, int64_t kc) {
    pack_b_256_t(bp, B, BT_BF16, ldb, n, kc);
}

/* The packer for bt (one specialised copy per type). */
static void pack_b_256(float *bp, const void *B, int bt, int64_t ldb, int64_t n, int64_t kc) {
    if (bt == BT_F16) pack_b_256_f16(bp, B, ldb, n, kc);
    else if (bt == BT_BF16) pack_b_256_bf16(bp, B, ldb, n, kc);
    else pack_b_256_f32(bp, B, ldb, n, kc);
}

/* C tile (ROWS <= 6 rows, nr <= 16 cols) (+)= ap (kc, 6) · bp (kc, 16);
 * ROWS is a constant in each copy below, so an edge tile (and decode, one
 * row) runs only its own rows' FMAs. Lane j of acc[r] is C element (r, j):
 * its chain is the same whatever tile or copy computes it. */
T2 AI static inline void kern_256_t(int64_t kc, const float *ap, const float *bp, float *C, int64_t ldc, int add,
                                    int ROWS, int64_t nr) {
    __m256 acc[MR2][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR2; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
        _mm_prefetch((const char *)(bp + 8 * NR2), _MM_HINT_T0);
        __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
#pragma GCC unroll 6
        for (int r = 0; r < MR2; r++) {
            if (r >= ROWS) break;
            __m256 a = _mm256_broadcast_ss(ap + r);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
        ap += MR2;
        bp += NR2;
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR2; r++) {
        if (r >= ROWS) break;
        float *c = C + r * ldc;
        if (nr == NR2) {
            __m256 v0 = acc[r][0], v1 = acc[r][1];
            if (add) {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(c));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(c + 8));
            }
            _mm256_storeu_ps(c, v0);
            _mm256_storeu_ps(c + 8, v1);
        } else {
            float t[NR2];
            _mm256_storeu_ps(t, acc[r][0]);
            _mm256_storeu_ps(t + 8, acc[r][1]);
            for (int64_t q = 0; q < nr; q++) c[q] = add ? c[q] + t[q] : t[q];
        }
    }
}

#define KERN_256(R)                                                                                                 \
    T2 static void kern_256_##R(int64_t kc, const float *ap, const float *bp, float *C, int64_t ldc, int add,       \
                                int64_t nr) {                                                                       \
        kern_256_t(kc, ap, bp, C, ldc, add, R, nr);                                                                 \
    }
KERN_256(1)
KERN_256(2)
KERN_256(3)
KERN_256(4)
KERN_256(5)
KERN_256(6)
#undef KERN_256

static void kern_6x16(int64_t kc, const float *ap, const float *bp, float *C, int64_t ldc, int add, int64_t mr,
                      int64_t nr) {
    switch (mr) {
    case 1: kern_256_1(kc, ap, bp, C, ldc, add, nr); break;
    case 2: kern_256_2(kc, ap, bp, C, ldc, add, nr); break;
    case 3: kern_256_3(kc, ap, bp, C, ldc, add, nr); break;
    case 4: kern_256_4(kc, ap, bp, C, ldc, add, nr); break;
    case 5: kern_256_5(kc, ap, bp, C, ldc, add, nr); break;
    default: kern_256_6(kc, ap, bp, C, ldc, add, nr); break;
    }
}

T2 AI static inline float hsum8(__m256 v) {
    float l[8];
    _mm256_storeu_ps(l, v);
    return lanes_sum(l);
}

/* Rows of A in fours against rows of B in threes: 12 accumulators, 7 loads
 * per 12 FMAs; A in blocks of DOT_MB rows (kept in L2) swept across all of B. */
#define DOT_MB 48

T2 AI static inline void dot_nt_avx2_t(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B,
                                       int bt, int64_t ldb, float beta, float *C, int64_t ldc) {
    int64_t k8 = K & ~(int64_t)7;
    for (int64_t i0 = 0; i0 < M; i0 += DOT_MB) {
        int64_t i1 = M - i0 < DOT_MB ? M : i0 + DOT_MB;
        for (int64_t j = 0; j < N; j += 3) {
            int64_t nb = N - j < 3 ? N - j : 3;
            int64_t p0 = j * ldb, p1 = nb > 1 ? p0 + ldb : p0, p2 = nb > 2 ? p0 + 2 * ldb : p0;
            for (int64_t i = i0; i < i1; i += 4) {
                int64_t mb = i1 - i < 4 ? i1 - i : 4;
                const float *a0 = A + i * lda, *a1 = mb > 1 ? a0 + lda : a0, *a2 = mb > 2 ? a0 + 2 * lda : a0,
                            *a3 = mb > 3 ? a0 + 3 * lda : a0;
                __m256 s00 = _mm256_setzero_ps(), s01 = s00, s02 = s00, s10 = s00, s11 = s00, s12 = s00, s20 = s00,
                       s21 = s00, s22 = s00, s30 = s00, s31 = s00, s32 = s00;
                for (int64_t k = 0; k < k8; k += 8) {
                    __m256 b0 = ld8(B, bt, p0 + k), b1 = ld8(B, bt, p1 + k), b2 = ld8(B, bt, p2 + k);
                    __m256 x = _mm256_loadu_ps(a0 + k);
                    s00 = _mm256_fmadd_ps(x, b0, s00);
                    s01 = _mm256_fmadd_ps(x, b1, s01);
                    s02 = _mm256_fmadd_ps(x, b2, s02);
                    x = _mm256_loadu_ps(a1 + k);
                    s10 = _mm256_fmadd_ps(x, b0, s10);
                    s11 = _mm256_fmadd_ps(x, b1, s11);
                    s12 = _mm256_fmadd_ps(x, b2, s12);
                    x = _mm256_loadu_ps(a2 + k);
                    s20 = _mm256_fmadd_ps(x, b0, s20);
                    s21 = _mm256_fmadd_ps(x, b1, s21);
                    s22 = _mm256_fmadd_ps(x, b2, s22);
                    x = _mm256_loadu_ps(a3 + k);
                    s30 = _mm256_fmadd_ps(x, b0, s30);
                    s31 = _mm256_fmadd_ps(x, b1, s31);
                    s32 = _mm256_fmadd_ps(x, b2, s32);
                }
                float r[4][3] = {{hsum8(s00), hsum8(s01), hsum8(s02)},
                                 {hsum8(s10), hsum8(s11), hsum8(s12)},
                                 {hsum8(s20), hsum8(s21), hsum8(s22)},
                                 {hsum8(s30), hsum8(s31), hsum8(s32)}};
                for (int64_t ii = 0; ii < mb; ii++)
                    for (int64_t jj = 0; jj < nb; jj++) {
                        const float *a = A + (i + ii) * lda;
                        int64_t p = (j + jj) * ldb;
                        float s = r[ii][jj];
                        for (int64_t k = k8; k < K; k++) s = fmaf(a[k], bt_load1(B, bt, p + k), s);
                        float *c = C + (i + ii) * ldc + j + jj;
                        *c = beta != 0.0f ? *c + s : s;
                    }
            }
        }
    }
}

T2 static void dot_nt_avx2_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B,
                               int64_t ldb, float beta, float *C, int64_t ldc) {
    dot_nt_avx2_t(M, N, K, A, lda, B, BT_F32, ldb, beta, C, ldc);
}
T2 static void dot_nt_avx2_f16(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B,
                               int64_t ldb, float beta, float *C, int64_t ldc) {
    dot_nt_avx2_t(M, N, K, A, lda, B, BT_F16, ldb, beta, C, ldc);
}
T2 static void dot_nt_avx2_bf16(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B,
                                int64_t ldb, float beta, float *C, int64_t ldc) {
    dot_nt_avx2_t(M, N, K, A, lda, B, BT_BF16, ldb, beta, C, ldc);
}

/* The small-M path of the tiles: the dot products above for B of type bt. */
static void dot_nt_256(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B, int bt,
                       int64_t ldb, float beta, float *C, int64_t ldc) {
    if (bt == BT_F16) dot_nt_avx2_f16(M, N, K, A, lda, B, ldb, beta, C, ldc);
    else if (bt == BT_BF16) dot_nt_avx2_bf16(M, N, K, A, lda, B, ldb, beta, C, ldc);
    else dot_nt_avx2_f32(M, N, K, A, lda, B, ldb, beta, C, ldc);
}

/* Rows of A in fours against 16 columns of B: 8 accumulators, each element
 * summed over k in order; columns past the last 8 by fmaf (the same bits). */
T2 static void dot_nn_avx2(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                           float beta, float *C, int64_t ldc) {
    int64_t n8 = N & ~(int64_t)7;
    /* the B panel (K x 16) stays in L1 while all rows of A sweep it */
    for (int64_t j = 0; j < n8; j += 16)
        for (int64_t i = 0; i < M; i += 4) {
            int64_t mb = M - i < 4 ? M - i : 4;
            const float *a0 = A + i * lda, *a1 = mb > 1 ? a0 + lda : a0, *a2 = mb > 2 ? a0 + 2 * lda : a0,
                        *a3 = mb > 3 ? a0 + 3 * lda : a0;
            int two = j + 16 <= n8;
            int64_t jb = two ? j + 8 : j; /* one column block: the second accumulators repeat the first */
            __m256 s00 = _mm256_setzero_ps(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00,
                   s31 = s00;
            for (int64_t k = 0; k < K; k++) {
                __m256 b0 = _mm256_loadu_ps(B + k * ldb + j), b1 = _mm256_loadu_ps(B + k * ldb + jb);
                __m256 x = _mm256_broadcast_ss(a0 + k);
                s00 = _mm256_fmadd_ps(x, b0, s00);
                s01 = _mm256_fmadd_ps(x, b1, s01);
                x = _mm256_broadcast_ss(a1 + k);
                s10 = _mm256_fmadd_ps(x, b0, s10);
                s11 = _mm256_fmadd_ps(x, b1, s11);
                x = _mm256_broadcast_ss(a2 + k);
                s20 = _mm256_fmadd_ps(x, b0, s20);
                s21 = _mm256_fmadd_ps(x, b1, s21);
                x = _mm256_broadcast_ss(a3 + k);
                s30 = _mm256_fmadd_ps(x, b0, s30);
                s31 = _mm256_fmadd_ps(x, b1, s31);
            }
            __m256 r[4][2] = {{s00, s01}, {s10, s11}, {s20, s21}, {s30, s31}};
            for (int64_t ii = 0; ii < mb; ii++)
                for (int h = 0; h < 1 + two; h++) {
                    float *c = C + (i + ii) * ldc + j + 8 * h;
                    __m256 v = r[ii][h];
                    if (beta != 0.0f) v = _mm256_add_ps(_mm256_loadu_ps(c), v);
                    _mm256_storeu_ps(c, v);
                }
        }
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = n8; j < N; j++) {
            const float *a = A + i * lda;
            float s = 0;
            for (int64_t k = 0; k < K; k++) s = fmaf(a[k], B[k * ldb + j], s);
            float *c = C + i * ldc + j;
            *c = beta != 0.0f ? *c + s : s;
        }
}

/* C = A·B with B (K, N), each element summed over k in order. */
static void dot_nn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                   float beta, float *C, int64_t ldc) {
    if (cpu_has_avx2()) {
        dot_nn_avx2(M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = 0;
            for (int64_t k = 0; k < K; k++) s = fmaf(A[i * lda + k], B[k * ldb + j], s);
            C[i * ldc + j] = beta != 0.0f ? C[i * ldc + j] + s : s;
        }
}

/* === driver ===
 * One blocked scheme for both instruction sets; a GemmTiles names the tile
 * sizes and the pieces that depend on the vector width. */

typedef struct {
    int64_t mr, nr, kc, mc, nc; /* micro-tile rows / columns, k block, row block, column panel */
    void (*pack_a)(float *ap, const float *A, int64_t lda, int64_t m, int64_t kc);
    void (*pack_b)(float *bp, const void *B, int bt, int64_t ldb, int64_t n, int64_t kc); /* B (N, K) */
    void (*pack_b_nn)(float *bp, const float *B, int64_t ldb, int64_t n, int64_t kc);     /* B (K, N); NULL: none */
    void (*kern)(int64_t kc, const float *ap, const float *bp, float *C, int64_t ldc, int add, int64_t mr,
                 int64_t nr);
    /* M < SMALL_M (_nt): dot products straight from B, whose order differs
     * from the tiles' */
    void (*small)(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B, int bt, int64_t ldb,
                  float beta, float *C, int64_t ldc);
} GemmTiles;

/* The A tile (12 x KC, 24 KB) stays in L1 while the B panels of a block
 * stream from L2. */
static const GemmTiles TILES_512 = {MR, NR, KC, MC, NC, pack_a_512, pack_b_nt_512, pack_b_nn_512, kern_12x32,
                                    gemm_small_512};
static const GemmTiles TILES_256 = {MR2, NR2, KC2, MC2, NC2, pack_a_256, pack_b_256, NULL, kern_6x16, dot_nt_256};

/* The tiles for B of type bt at this dispatch level; NULL: the portable twin. */
static const GemmTiles *gemm_tiles(int bt) {
    if (cpu_has_avx512f()) return &TILES_512;
    if (cpu_has_avx2() && (bt != BT_F16 || cpu_has_f16c())) return &TILES_256;
    return NULL;
}

/* C (m, n) += S (m, n). */
static void gemm_add(int64_t m, int64_t n, const float *S, int64_t lds, float *C, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) C[i * ldc + j] += S[i * lds + j];
}

/* Columns [jc, jc + nc) of C's rows [0, mc) over all of K, with A packed
 * whole: k block pc at ap + pc·mpad (t->pack_a's layout). The panel of B is
 * packed once per k block into bp and all mc rows sweep it. */
static void gemm_panel(const GemmTiles *t, const float *ap, int64_t mpad, int64_t mc, float *bp, float *cs,
                       int64_t jc, int64_t nc, int64_t K, const void *B, int bt, int64_t ldb, float beta, float *C,
                       int64_t ldc) {
    /* beta 1 over several k blocks: the sum goes to cs (mc, nc), then to C */
    int sep = beta != 0.0f && K > t->kc;
    float *T = sep ? cs : C + jc;
    int64_t ldt = sep ? nc : ldc;
    for (int64_t pc = 0; pc < K; pc += t->kc) {
        int64_t kc = K - pc < t->kc ? K - pc : t->kc;
        int add = pc > 0 || (beta != 0.0f && !sep);
        t->pack_b(bp, bt_addr(B, bt, jc * ldb + pc), bt, ldb, nc, kc);
        const float *a = ap + pc * mpad;
        for (int64_t ir = 0; ir < mc; ir += t->mr) {
            int64_t mr = mc - ir < t->mr ? mc - ir : t->mr;
            for (int64_t jr = 0; jr < nc; jr += t->nr) {
                int64_t nr = nc - jr < t->nr ? nc - jr : t->nr;
                t->kern(kc, a + ir * kc, bp + jr * kc, T + ir * ldt + jr, ldt, add, mr, nr);
            }
        }
    }
    if (sep) gemm_add(mc, nc, cs, nc, C + jc, ldc);
}

/* Makes tid's cs hold n floats; NULL when it cannot. */
static float *gemm_cs_reserve(GemmWork *w, int tid, size_t n) {
    if (w->cs_cap[tid] >= n) return w->cs[tid];
    core_free_aligned(w->cs[tid]);
    w->cs[tid] = core_alloc_aligned(n, sizeof(float));
    w->cs_cap[tid] = w->cs[tid] ? n : 0;
    return w->cs[tid];
}

/* Single-threaded on tid's buffers. nn: B (K, N) float32 (t->pack_b_nn
 * must exist); else B (N, K) of type bt. */
static void gemm_blocked(const GemmTiles *t, GemmWork *w, int tid, int nn, int64_t M, int64_t N, int64_t K,
                         const float *A, int64_t lda, const void *B, int bt, int64_t ldb, float beta, float *C,
                         int64_t ldc) {
    if (!nn && M < SMALL_M) {
        t->small(M, N, K, A, lda, B, bt, ldb, beta, C, ldc);
        return;
    }
    if (beta != 0.0f && K > t->kc) {
        /* A·Bᵀ whole, then + C (the order the contract names) */
        float *S = gemm_cs_reserve(w, tid, (size_t)M * (size_t)N);
        if (S) {
            gemm_blocked(t, w, tid, nn, M, N, K, A, lda, B, bt, ldb, 0.0f, S, N);
            gemm_add(M, N, S, N, C, ldc);
        } else if (!cpu_has_avx512f()) { /* no memory for it: the same bits, slowly */
            blk_nt_portable(M, N, K, A, lda, B, bt, ldb, beta, C, ldc);
        } else if (nn) {
            sgemm_mul_nn_ref(M, N, K, A, lda, B, ldb, beta, C, ldc);
        } else if (bt == BT_F32) {
            sgemm_mul_nt_ref(M, N, K, A, lda, B, ldb, beta, C, ldc);
        } else {
            gemm_h_nt_ref(M, N, K, A, lda, B, bt == BT_BF16, ldb, beta, C, ldc);
        }
        return;
    }
    float *ap = w->ap[tid], *bp = w->bp[tid];
    for (int64_t pc = 0; pc < K; pc += t->kc) {
        int64_t kc = K - pc < t->kc ? K - pc : t->kc;
        int add = pc > 0 || beta != 0.0f;
        for (int64_t ic = 0; ic < M; ic += t->mc) {
            int64_t mc = M - ic < t->mc ? M - ic : t->mc;
            t->pack_a(ap, A + ic * lda + pc, lda, mc, kc);
            for (int64_t jc = 0; jc < N; jc += t->nc) {
                int64_t nc = N - jc < t->nc ? N - jc : t->nc;
                if (nn) t->pack_b_nn(bp, (const float *)B + pc * ldb + jc, ldb, nc, kc);
                else t->pack_b(bp, bt_addr(B, bt, jc * ldb + pc), bt, ldb, nc, kc);
                for (int64_t ir = 0; ir < mc; ir += t->mr) {
                    int64_t mr = mc - ir < t->mr ? mc - ir : t->mr;
                    for (int64_t jr = 0; jr < nc; jr += t->nr) {
                        int64_t nr = nc - jr < t->nr ? nc - jr : t->nr;
                        t->kern(kc, ap + ir * kc, bp + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc, add, mr, nr);
                    }
                }
            }
        }
    }
}

static void gemm_zero_k(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
    if (beta != 0.0f) return;
    for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
}

/* gemm_f32_nt with B of any type on tid's buffers of w; without tiles or
 * buffers the scalar code (on AVX-512 the *_ref twins, below it the
 * portable code whose bits equal the AVX2 tiles'). */
static void gemm_nt_any(GemmWork *w, int tid, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const void *B, int bt, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        gemm_zero_k(M, N, beta, C, ldc);
        return;
    }
    const GemmTiles *t = gemm_tiles(bt);
    if (t && w && tid >= 0 && tid < w->n) gemm_blocked(t, w, tid, 0, M, N, K, A, lda, B, bt, ldb, beta, C, ldc);
    else if (!cpu_has_avx512f()) blk_nt_portable(M, N, K, A, lda, B, bt, ldb, beta, C, ldc);
    else if (bt == BT_F32) sgemm_mul_nt_ref(M, N, K, A, lda, B, ldb, beta, C, ldc);
    else gemm_h_nt_ref(M, N, K, A, lda, B, bt == BT_BF16, ldb, beta, C, ldc);
}

void gemm_f32_nt(GemmWork *w, int tid, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    gemm_nt_any(w, tid, M, N, K, A, lda, B, BT_F32, ldb, beta, C, ldc);
}

struct GemmPackedB {
    const GemmTiles *t;      /* the tiles it was packed for; NULL: not packed (no tiles), B is used as given */
    const float *B;          /* borrowed (N, K), row stride ldb: the small-M path reads it */
    int64_t N, K, ldb, nblk; /* nblk: column panels per k block */
    float *bp;               /* the packed blocks, k block kb and column block jb at bp + off[kb * nblk + jb] */
    size_t *off;
};

Status gemm_f32_pack_b(int64_t N, int64_t K, const float *B, int64_t ldb, GemmPackedB **out, Err *err) {
    *out = NULL;
    GemmPackedB *pb = core_calloc(1, sizeof *pb);
    if (!pb) return err_set(err, ST_ERR_NOMEM, "gemm: packed B");
    pb->B = B;
    pb->N = N;
    pb->K = K;
    pb->ldb = ldb;
    const GemmTiles *t = gemm_tiles(BT_F32);
    if (t && N > 0 && K > 0) {
        int64_t nkb = (K + t->kc - 1) / t->kc;
        pb->nblk = (N + t->nc - 1) / t->nc;
        size_t total = 0;
        pb->off = core_calloc((size_t)(nkb * pb->nblk), sizeof *pb->off);
        if (!pb->off) goto nomem;
        for (int64_t kb = 0; kb < nkb; kb++)
            for (int64_t jb = 0; jb < pb->nblk; jb++) {
                int64_t kc = K - kb * t->kc < t->kc ? K - kb * t->kc : t->kc;
                int64_t nc = N - jb * t->nc < t->nc ? N - jb * t->nc : t->nc;
                pb->off[kb * pb->nblk + jb] = total;
                total += (size_t)((nc + t->nr - 1) / t->nr * t->nr) * (size_t)kc;
            }
        if (!(pb->bp = core_alloc_aligned(total, sizeof(float)))) goto nomem;
        for (int64_t kb = 0; kb < nkb; kb++)
            for (int64_t jb = 0; jb < pb->nblk; jb++) {
                int64_t pc = kb * t->kc, jc = jb * t->nc;
                int64_t kc = K - pc < t->kc ? K - pc : t->kc, nc = N - jc < t->nc ? N - jc : t->nc;
                t->pack_b(pb->bp + pb->off[kb * pb->nblk + jb], bt_addr(B, BT_F32, jc * ldb + pc), BT_F32, ldb, nc,
                          kc);
            }
        pb->t = t;
    }
    *out = pb;
    return ST_OK;
nomem:
    gemm_packed_b_free(pb);
    return err_set(err, ST_ERR_NOMEM, "gemm: packed B (%lld x %lld)", (long long)N, (long long)K);
}

void gemm_packed_b_free(GemmPackedB *pb) {
    if (!pb) return;
    core_free_aligned(pb->bp);
    free(pb->off);
    free(pb);
}

/* gemm_blocked's loop (beta 0) with B's panels taken from pb instead of
 * packed per call: the kernels see the same data, so C's bits are the
 * same. */
void gemm_f32_nt_packed(GemmWork *w, int tid, int64_t M, const float *A, int64_t lda, const GemmPackedB *pb, float *C,
                        int64_t ldc) {
    const GemmTiles *t = pb->t;
    int64_t N = pb->N, K = pb->K;
    if (!t || !w || tid < 0 || tid >= w->n || M < SMALL_M || gemm_tiles(BT_F32) != t) {
        gemm_nt_any(w, tid, M, N, K, A, lda, pb->B, BT_F32, pb->ldb, 0.0f, C, ldc);
        return;
    }
    float *ap = w->ap[tid];
    for (int64_t pc = 0; pc < K; pc += t->kc) {
        int64_t kc = K - pc < t->kc ? K - pc : t->kc;
        int add = pc > 0;
        for (int64_t ic = 0; ic < M; ic += t->mc) {
            int64_t mc = M - ic < t->mc ? M - ic : t->mc;
            t->pack_a(ap, A + ic * lda + pc, lda, mc, kc);
            for (int64_t jc = 0; jc < N; jc += t->nc) {
                int64_t nc = N - jc < t->nc ? N - jc : t->nc;
                const float *bp = pb->bp + pb->off[(pc / t->kc) * pb->nblk + jc / t->nc];
                for (int64_t ir = 0; ir < mc; ir += t->mr) {
                    int64_t mr = mc - ir < t->mr ? mc - ir : t->mr;
                    for (int64_t jr = 0; jr < nc; jr += t->nr) {
                        int64_t nr = nc - jr < t->nr ? nc - jr : t->nr;
                        t->kern(kc, ap + ir * kc, bp + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc, add, mr, nr);
                    }
                }
            }
        }
    }
}

void gemm_h_nt_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const uint16_t *B, int bf16,
                   int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                uint16_t h = B[j * ldb + k];
                s += (double)A[i * lda + k] * (double)(bf16 ? bf16_to_f32(h) : fp16_to_f32(h));
            }
            C[i * ldc + j] = (float)(beta != 0.0f ? (double)C[i * ldc + j] + s : s);
        }
}

void gemm_f32_nn(GemmWork *w, int tid, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { gemm_zero_k(M, N, beta, C, ldc); return; }
    if (!cpu_has_avx512f()) {
        dot_nn(M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (!w || tid < 0 || tid >= w->n) {
        sgemm_mul_nn_ref(M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_blocked(&TILES_512, w, tid, 1, M, N, K, A, lda, B, BT_F32, ldb, beta, C, ldc);
}

typedef struct {
    const GemmTiles *t; /* NULL: the scalar code */
    GemmWork *w;
    int64_t M, N, K, lda, ldb, ldc;
    const float *A;
    const void *B;
    int bt;
    float *C;
    float beta;
} GemmJob;

/* Columns of C per unit of the column split: the tile width, or 4 for the
 * dot products of a small M. */
static int64_t gemm_unit(const GemmTiles *t, int64_t M) {
    return !t || M < SMALL_M ? 4 : t->nr;
}

static void gemm_pool_part(void *arg, int64_t b, int64_t e, int tid) {
    GemmJob *j = arg;
    int64_t unit = gemm_unit(j->t, j->M);
    int64_t n0 = b * unit, n1 = e * unit < j->N ? e * unit : j->N;
    const void *B = bt_addr(j->B, j->bt, n0 * j->ldb);
    gemm_nt_any(j->w, tid, j->M, n1 - n0, j->K, j->A, j->lda, B, j->bt, j->ldb, j->beta, j->C + n0, j->ldc);
}

/* === shared-A pool path ===
 * One row block of A (mc <= t->mc rows, all of K) is packed once, by all
 * threads together, into w->apall: k block pc at apall + pc·mpad, tile i of
 * it at + i·mr·kc (the layout t->pack_a writes). Then every thread takes
 * nc-column panels of C from a shared counter (so a thread the machine
 * preempted does not hold the others at the barrier) and runs all k blocks
 * of its panel: pack the weight panel once, sweep all mc rows across it. */

typedef struct {
    const GemmTiles *t;
    GemmWork *w;
    int64_t mc, N, K, lda, ldb, ldc, mpad;
    const float *A;     /* A at the block's first row */
    const void *B;
    int bt;
    float *C;           /* C at the block's first row */
    float beta;
    atomic_llong next; /* next panel to take */
    float **cs;        /* [threads] (mc, nc) sums before C is added (beta 1, K over one k block); else NULL */
} SharedJob;

static void gemm_shared_pack(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    SharedJob *j = arg;
    const GemmTiles *t = j->t;
    int64_t r0 = b * t->mr, r1 = e * t->mr < j->mc ? e * t->mr : j->mc;
    for (int64_t pc = 0; pc < j->K; pc += t->kc) {
        int64_t kc = j->K - pc < t->kc ? j->K - pc : t->kc;
        t->pack_a(j->w->apall + pc * j->mpad + r0 * kc, j->A + r0 * j->lda + pc, j->lda, r1 - r0, kc);
    }
}

static void gemm_shared_panels(void *arg, int64_t b, int64_t e, int tid) {
    (void)b;
    (void)e;
    SharedJob *j = arg;
    const GemmTiles *t = j->t;
    int64_t npanels = (j->N + t->nc - 1) / t->nc;
    for (;;) {
        int64_t p = (int64_t)atomic_fetch_add(&j->next, 1);
        if (p >= npanels) break;
        int64_t jc = p * t->nc, nc = j->N - jc < t->nc ? j->N - jc : t->nc;
        gemm_panel(t, j->w->apall, j->mpad, j->mc, j->w->bp[tid], j->cs ? j->cs[tid] : NULL, jc, nc, j->K, j->B,
                   j->bt, j->ldb, j->beta, j->C, j->ldc);
    }
}

/* Makes w->apall hold at least n floats; returns 0 when it cannot. */
static int gemm_apall_reserve(GemmWork *w, size_t n) {
    if (w->apall_cap >= n) return 1;
    core_free_aligned(w->apall);
    w->apall = core_alloc_aligned(n, sizeof(float));
    w->apall_cap = w->apall ? n : 0;
    return w->apall != NULL;
}

/* The pool driver for B of type bt. */
static void gemm_nt_pool_any(Pool *pool, GemmWork *w, int64_t M, int64_t N, int64_t K, const float *A,
                             int64_t lda, const void *B, int bt, int64_t ldb, float beta, float *C, int64_t ldc) {
    int nt = pool ? pool_size(pool) : 1;
    const GemmTiles *t = w ? gemm_tiles(bt) : NULL;
    if (t && M >= SMALL_M && K > 0 && N > 0 && nt > 1 && nt <= w->n) {
        int64_t mpad = ((M < t->mc ? M : t->mc) + t->mr - 1) / t->mr * t->mr;
        int sep = beta != 0.0f && K > t->kc, ok = gemm_apall_reserve(w, (size_t)mpad * (size_t)K);
        for (int i = 0; ok && sep && i < nt; i++) ok = gemm_cs_reserve(w, i, (size_t)(mpad * t->nc)) != NULL;
        if (ok) {
            for (int64_t ic = 0; ic < M; ic += t->mc) {
                int64_t mc = M - ic < t->mc ? M - ic : t->mc;
                SharedJob j = {t,  w, mc, N, K, lda, ldb, ldc, (mc + t->mr - 1) / t->mr * t->mr, A + ic * lda, B, bt,
                               C + ic * ldc, beta, 0, sep ? w->cs : NULL};
                atomic_init(&j.next, 0);
                pool_for(pool, (mc + t->mr - 1) / t->mr, 1, gemm_shared_pack, &j);
                pool_for(pool, nt, 1, gemm_shared_panels, &j);
            }
            return;
        }
    }
    GemmJob j = {t, w, M, N, K, lda, ldb, ldc, A, B, bt, C, beta};
    int64_t unit = gemm_unit(t, M);
    pool_for(pool, (N + unit - 1) / unit, 1, gemm_pool_part, &j);
}

void gemm_f32_nt_pool(Pool *pool, GemmWork *w, int64_t M, int64_t N, int64_t K, const float *A,
                      int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    gemm_nt_pool_any(pool, w, M, N, K, A, lda, B, BT_F32, ldb, beta, C, ldc);
}

void gemm_h_nt_pool(Pool *pool, GemmWork *w, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                    const uint16_t *B, int bf16, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        gemm_zero_k(M, N, beta, C, ldc);
        return;
    }
    if (!w) {
        gemm_h_nt_ref(M, N, K, A, lda, B, bf16, ldb, beta, C, ldc);
        return;
    }
    gemm_nt_pool_any(pool, w, M, N, K, A, lda, B, bf16 ? BT_BF16 : BT_F16, ldb, beta, C, ldc);
}
