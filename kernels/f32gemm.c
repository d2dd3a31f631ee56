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

struct GemmWork {
    int n;
    float **ap;   /* [n] (MC, KC) packed A tiles */
    float **bp;   /* [n] (KC, NC) packed B panels */
    float *apall; /* (MC rounded up to MR, K) A packed once for all threads by gemm_f32_nt_pool */
    size_t apall_cap; /* floats allocated in apall */
};

Status gemm_work_new(int n_threads, GemmWork **out, Err *err) {
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    GemmWork *w = core_calloc(1, sizeof *w);
    if (!w) goto fail;
    w->n = n_threads;
    w->ap = core_calloc((size_t)n_threads, sizeof *w->ap);
    w->bp = core_calloc((size_t)n_threads, sizeof *w->bp);
    if (!w->ap || !w->bp) goto fail;
    for (int i = 0; i < n_threads; i++) {
        w->ap[i] = core_alloc_aligned((size_t)MC * KC, sizeof(float));
        w->bp[i] = core_alloc_aligned((size_t)KC * NC, sizeof(float));
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
 * Without AVX-512 each C element is one dot product in a fixed order that
 * nothing but K decides: lane l (0..7) sums, by fused multiply-add,
 * A[k]·B[k] for k = l (mod 8) below K8 = K rounded down to 8; the lanes
 * are added as ((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7)); then k = K8..K-1 in
 * order, by fused multiply-add; then + C when beta is non-zero. _nn sums
 * k = 0..K-1 in order by fused multiply-add per element. So a C element has
 * the same bits whatever the partition (columns per thread, fused or
 * separate weights, M), and the AVX2 and portable code give the same bits. */

static inline float bt_load1(const void *B, int bt, int64_t p) {
    if (bt == BT_F16) return fp16_to_f32(((const uint16_t *)B)[p]);
    if (bt == BT_BF16) return bf16_to_f32(((const uint16_t *)B)[p]);
    return ((const float *)B)[p];
}

static inline float lanes_sum(const float l[8]) {
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

static void dot_nt_portable(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B, int bt,
                            int64_t ldb, float beta, float *C, int64_t ldc) {
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
}

#define T2 __attribute__((target("avx2,fma,f16c")))

T2 AI static inline __m256 ld8(const void *B, int bt, int64_t p) {
    if (bt == BT_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)B + p)));
    if (bt == BT_BF16)
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)B + p))), 16));
    return _mm256_loadu_ps((const float *)B + p);
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

/* C = A·Bᵀ with B (N, K) of type bt, in the fixed order above. */
static void dot_nt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *B, int bt, int64_t ldb,
                   float beta, float *C, int64_t ldc) {
    if (!cpu_has_avx2() || (bt == BT_F16 && !cpu_has_f16c()))
        dot_nt_portable(M, N, K, A, lda, B, bt, ldb, beta, C, ldc);
    else if (bt == BT_F16) dot_nt_avx2_f16(M, N, K, A, lda, B, ldb, beta, C, ldc);
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

/* === driver === */

/* nn: B (K, N) float32; else B (N, K) of type bt. */
QS_TARGET_AVX512 static void gemm_512(GemmWork *w, int tid, int nn, int64_t M, int64_t N, int64_t K, const float *A,
                          int64_t lda, const void *B, int bt, int64_t ldb, float beta, float *C, int64_t ldc) {
    float *ap = w->ap[tid], *bp = w->bp[tid];
    for (int64_t pc = 0; pc < K; pc += KC) {
        int64_t kc = K - pc < KC ? K - pc : KC;
        int add = pc > 0 || beta != 0.0f;
        for (int64_t ic = 0; ic < M; ic += MC) {
            int64_t mc = M - ic < MC ? M - ic : MC;
            pack_a_512(ap, A + ic * lda + pc, lda, mc, kc);
            for (int64_t jc = 0; jc < N; jc += NC) {
                int64_t nc = N - jc < NC ? N - jc : NC;
                if (nn) pack_b_nn_512(bp, (const float *)B + pc * ldb + jc, ldb, nc, kc);
                else pack_b_nt_512(bp, bt_addr(B, bt, jc * ldb + pc), bt, ldb, nc, kc);
                /* The A tile (12 x KC, 24 KB) stays in L1 while the B panels
                 * of this block stream from L2. */
                for (int64_t ir = 0; ir < mc; ir += MR) {
                    int64_t mr = mc - ir < MR ? mc - ir : MR;
                    for (int64_t jr = 0; jr < nc; jr += NR) {
                        int64_t nr = nc - jr < NR ? nc - jr : NR;
                        kern_12x32(kc, ap + ir * kc, bp + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc, add, mr, nr);
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

void gemm_f32_nt(GemmWork *w, int tid, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { gemm_zero_k(M, N, beta, C, ldc); return; }
    if (!cpu_has_avx512f()) {
        dot_nt(M, N, K, A, lda, B, BT_F32, ldb, beta, C, ldc);
        return;
    }
    if (!w || tid < 0 || tid >= w->n) {
        sgemm_mul_nt_ref(M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (M < SMALL_M) gemm_small_512(M, N, K, A, lda, B, BT_F32, ldb, beta, C, ldc);
    else gemm_512(w, tid, 0, M, N, K, A, lda, B, BT_F32, ldb, beta, C, ldc);
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

/* gemm_f32_nt with B of any type (w holds tid's buffers). */
static void gemm_nt_any(GemmWork *w, int tid, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const void *B, int bt, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (!cpu_has_avx512f()) {
        dot_nt(M, N, K, A, lda, B, bt, ldb, beta, C, ldc);
        return;
    }
    if (M < SMALL_M) gemm_small_512(M, N, K, A, lda, B, bt, ldb, beta, C, ldc);
    else gemm_512(w, tid, 0, M, N, K, A, lda, B, bt, ldb, beta, C, ldc);
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
    gemm_512(w, tid, 1, M, N, K, A, lda, B, BT_F32, ldb, beta, C, ldc);
}

typedef struct {
    GemmWork *w;
    int64_t M, N, K, lda, ldb, ldc;
    const float *A;
    const void *B;
    int bt;
    float *C;
    float beta;
} GemmJob;

static void gemm_pool_part(void *arg, int64_t b, int64_t e, int tid) {
    GemmJob *j = arg;
    int64_t unit = j->M < SMALL_M ? 4 : NR;
    int64_t n0 = b * unit, n1 = e * unit < j->N ? e * unit : j->N;
    const void *B = bt_addr(j->B, j->bt, n0 * j->ldb);
    if (j->bt == BT_F32)
        gemm_f32_nt(j->w, tid, j->M, n1 - n0, j->K, j->A, j->lda, B, j->ldb, j->beta, j->C + n0, j->ldc);
    else
        gemm_nt_any(j->w, tid, j->M, n1 - n0, j->K, j->A, j->lda, B, j->bt, j->ldb, j->beta, j->C + n0, j->ldc);
}

/* === shared-A pool path ===
 * One row block of A (mc <= MC rows, all of K) is packed once, by all
 * threads together, into w->apall: k block pc at apall + pc·mpad, tile t of
 * it at + t·MR·kc (the layout pack_a_512 writes). Then every thread takes
 * NC-column panels of C from a shared counter (so a thread the machine
 * preempted does not hold the others at the barrier) and runs all k blocks
 * of its panel: pack the weight panel once, sweep all mc rows across it. */

typedef struct {
    GemmWork *w;
    int64_t mc, N, K, lda, ldb, ldc, mpad;
    const float *A;     /* A at the block's first row */
    const void *B;
    int bt;
    float *C;           /* C at the block's first row */
    float beta;
    atomic_llong next; /* next panel to take */
} SharedJob;

static void gemm_shared_pack(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    SharedJob *j = arg;
    int64_t r0 = b * MR, r1 = e * MR < j->mc ? e * MR : j->mc;
    for (int64_t pc = 0; pc < j->K; pc += KC) {
        int64_t kc = j->K - pc < KC ? j->K - pc : KC;
        pack_a_512(j->w->apall + pc * j->mpad + r0 * kc, j->A + r0 * j->lda + pc, j->lda, r1 - r0, kc);
    }
}

static void gemm_shared_panels(void *arg, int64_t b, int64_t e, int tid) {
    (void)b;
    (void)e;
    SharedJob *j = arg;
    float *bp = j->w->bp[tid];
    int64_t npanels = (j->N + NC - 1) / NC;
    for (;;) {
        int64_t p = (int64_t)atomic_fetch_add(&j->next, 1);
        if (p >= npanels) break;
        int64_t jc = p * NC, nc = j->N - jc < NC ? j->N - jc : NC;
        for (int64_t pc = 0; pc < j->K; pc += KC) {
            int64_t kc = j->K - pc < KC ? j->K - pc : KC;
            int add = pc > 0 || j->beta != 0.0f;
            pack_b_nt_512(bp, bt_addr(j->B, j->bt, jc * j->ldb + pc), j->bt, j->ldb, nc, kc);
            const float *ap = j->w->apall + pc * j->mpad;
            for (int64_t ir = 0; ir < j->mc; ir += MR) {
                int64_t mr = j->mc - ir < MR ? j->mc - ir : MR;
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int64_t nr = nc - jr < NR ? nc - jr : NR;
                    kern_12x32(kc, ap + ir * kc, bp + jr * kc, j->C + ir * j->ldc + jc + jr, j->ldc, add, mr, nr);
                }
            }
        }
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

/* The pool driver for B of type bt (AVX-512 required unless bt is F32). */
static void gemm_nt_pool_any(Pool *pool, GemmWork *w, int64_t M, int64_t N, int64_t K, const float *A,
                             int64_t lda, const void *B, int bt, int64_t ldb, float beta, float *C, int64_t ldc) {
    int nt = pool ? pool_size(pool) : 1;
    int64_t mpad = ((M < MC ? M : MC) + MR - 1) / MR * MR;
    if (M >= SMALL_M && K > 0 && N > 0 && nt > 1 && w && nt <= w->n && cpu_has_avx512f() &&
        gemm_apall_reserve(w, (size_t)mpad * (size_t)K)) {
        for (int64_t ic = 0; ic < M; ic += MC) {
            int64_t mc = M - ic < MC ? M - ic : MC;
            SharedJob j = {w, mc, N, K, lda, ldb, ldc, (mc + MR - 1) / MR * MR, A + ic * lda, B, bt, C + ic * ldc,
                           beta, 0};
            atomic_init(&j.next, 0);
            pool_for(pool, (mc + MR - 1) / MR, 1, gemm_shared_pack, &j);
            pool_for(pool, nt, 1, gemm_shared_panels, &j);
        }
        return;
    }
    GemmJob j = {w, M, N, K, lda, ldb, ldc, A, B, bt, C, beta};
    int64_t unit = M < SMALL_M ? 4 : NR;
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
