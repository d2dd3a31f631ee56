#include "kernels/int8_gemm.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/assert.h"
#include "kernels/cpu.h"
#include "kernels/simd.h"

/* Rows of A handled per pass (MCHUNK = I8GEMM_JOB_ROWS, below): their row
 * sums live in the job and the chunk (MCHUNK × K bytes) stays in L2 while
 * the weight slabs stream by. */
#define SLAB 4 /* 16-channel blocks per parallel work item (64 channels) */

int64_t i8gemm_kpad(int64_t K) { return (K + 3) & ~(int64_t)3; }

static size_t i8_index(int64_t kp, int64_t n, int64_t k) {
    return (size_t)(((n / 64) * (kp / 4) + k / 4) * 256 + (n % 64) * 4 + k % 4);
}

Status i8mat_pack(const int8_t *B, int64_t N, int64_t K, const float *scale, int per_channel,
                  I8Matrix *out, Err *err) {
    memset(out, 0, sizeof *out);
    if (N <= 0 || K <= 0) return err_set(err, ST_ERR_ARG, "int8 gemm: bad shape (%lld, %lld)", (long long)N, (long long)K);
    if (K > 65792) return err_set(err, ST_ERR_ARG, "int8 gemm: K = %lld too large for exact int32 sums (max 65792)", (long long)K);
    out->n = N;
    out->k = K;
    out->np = (N + 63) & ~(int64_t)63;
    out->kp = i8gemm_kpad(K);
    out->b = core_alloc_aligned((size_t)out->np, (size_t)out->kp);
    out->scale = core_calloc((size_t)N, sizeof *out->scale);
    if (!out->b || !out->scale) {
        i8mat_done(out);
        return err_set(err, ST_ERR_NOMEM, "int8 gemm: packing %lld x %lld", (long long)N, (long long)K);
    }
    memset(out->b, 128, (size_t)(out->np * out->kp));
    out->sign_ok = 1;
    for (int64_t i = 0; i < N * K; i++) out->sign_ok &= B[i] != -128;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++) out->b[i8_index(out->kp, n, k)] = (uint8_t)(B[n * K + k] + 128);
        out->scale[n] = per_channel ? scale[n] : scale[0];
    }
    return ST_OK;
}

void i8mat_done(I8Matrix *m) {
    core_free_aligned(m->b);
    free(m->scale);
    memset(m, 0, sizeof *m);
}

size_t i8mat_code_bytes(const I8Matrix *m) { return (size_t)(m->np * m->kp); }

/* === shared driver === */

typedef I8GemmJob I8Task;
typedef void (*I8SlabFn)(const I8Task *t, int64_t blk0, int64_t nblk);

static void i8_slab_ref(const I8Task *t, int64_t blk0, int64_t nblk);
QS_TARGET_AVX2 static void i8_slab_avx2(const I8Task *t, int64_t blk0, int64_t nblk);

#define MCHUNK I8GEMM_JOB_ROWS

void i8gemm_job_run(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const I8Task *t = arg;
    int64_t nblk_total = t->w->np / 16;
    for (int64_t s = b; s < e; s++) {
        int64_t blk0 = s * SLAB;
        int64_t nb = nblk_total - blk0 < SLAB ? nblk_total - blk0 : SLAB;
        t->slab(t, blk0, nb);
    }
}

/* Fills t for rows [0, M) of A (M <= MCHUNK) with path fn; returns its units. */
static int64_t i8_job_fill(I8Task *t, const I8Matrix *w, const int8_t *A, int64_t M, int64_t lda,
                           const float *a_scale, void *C, int64_t ldc, I8SlabFn fn) {
    ASSERT(M >= 0 && M <= MCHUNK);
    /* the +128 bias is taken back through the row sums by the VNNI and the
     * AVX2 nibble paths only */
    int need_sums = fn != i8_slab_ref && !(fn == i8_slab_avx2 && w->sign_ok);
    for (int64_t r = 0; r < M && need_sums; r++) {
        int32_t s = 0;
        const int8_t *a = A + r * lda;
        for (int64_t k = 0; k < w->kp; k++) s += a[k];
        t->rowsum_buf[r] = s;
    }
    t->slab = fn;
    t->w = w;
    t->A = A;
    t->M = M;
    t->lda = lda;
    t->ldc = ldc;
    t->rowsum = t->rowsum_buf;
    t->a_scale = a_scale;
    t->C = C;
    return (w->np / 16 + SLAB - 1) / SLAB;
}

static void i8_drive(const I8Matrix *w, const int8_t *A, int64_t M, int64_t lda, const float *a_scale,
                     void *C, int64_t ldc, Pool *pool, I8SlabFn fn) {
    I8Task t;
    for (int64_t m0 = 0; m0 < M; m0 += MCHUNK) {
        int64_t mc = M - m0 < MCHUNK ? M - m0 : MCHUNK;
        void *Cm = a_scale ? (void *)((float *)C + m0 * ldc) : (void *)((int32_t *)C + m0 * ldc);
        int64_t nslab = i8_job_fill(&t, w, A + m0 * lda, mc, lda, a_scale ? a_scale + m0 : NULL, Cm, ldc, fn);
        pool_for(pool, nslab, 1, i8gemm_job_run, &t);
    }
}

/* === scalar reference === */

static void i8_slab_ref(const I8Task *t, int64_t blk0, int64_t nblk) {
    const I8Matrix *w = t->w;
    for (int64_t m = 0; m < t->M; m++) {
        const int8_t *a = t->A + m * t->lda;
        for (int64_t n = blk0 * 16; n < (blk0 + nblk) * 16 && n < w->n; n++) {
            int32_t acc = 0;
            for (int64_t k = 0; k < w->kp; k++) acc += ((int32_t)w->b[i8_index(w->kp, n, k)] - 128) * a[k];
            if (t->a_scale) ((float *)t->C)[m * t->ldc + n] = (float)acc * t->a_scale[m] * w->scale[n];
            else ((int32_t *)t->C)[m * t->ldc + n] = acc;
        }
    }
}

void i8gemm_ref(const I8Matrix *w, const int8_t *A, int64_t M, int64_t lda, const float *a_scale,
                void *C, int64_t ldc, Pool *pool) {
    i8_drive(w, A, M, lda, a_scale, C, ldc, pool, i8_slab_ref);
}

/* === AVX-512 VNNI === */


/* Epilogue for one row r of a tile: subtract the +128 bias, scale, store. */
QS_TARGET_AVX512_VNNI static inline __attribute__((always_inline)) void
i8_vnni_store(const I8Task *t, int64_t m, int64_t blk0, int nb, const __m512i *acc) {
    const I8Matrix *w = t->w;
    __m512i corr = _mm512_set1_epi32(128 * t->rowsum[m]);
    for (int j = 0; j < nb; j++) {
        int64_t n = (blk0 + j) * 16;
        int64_t left = w->n - n;
        if (left <= 0) break;
        __mmask16 mk = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        __m512i v = _mm512_sub_epi32(acc[j], corr);
        if (t->a_scale) {
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_set1_ps(t->a_scale[m]));
            f = _mm512_mul_ps(f, _mm512_maskz_loadu_ps(mk, w->scale + n));
            _mm512_mask_storeu_ps((float *)t->C + m * t->ldc + n, mk, f);
        } else {
            _mm512_mask_storeu_epi32((int32_t *)t->C + m * t->ldc + n, mk, v);
        }
    }
}

/* One tile: MR rows of A × 4 blocks of 16 channels, accumulators held in
 * named registers (GCC does not keep a 2-D array of them in registers). */
#define BCAST(r) _mm512_set1_epi32(i8_load4(A + (r) * lda + k4 * 4))
#define DP4(r)                                                      \
    do {                                                            \
        __m512i av_ = BCAST(r);                                     \
        c##r##0 = _mm512_dpbusd_epi32(c##r##0, b0, av_);             \
        c##r##1 = _mm512_dpbusd_epi32(c##r##1, b1, av_);             \
        c##r##2 = _mm512_dpbusd_epi32(c##r##2, b2, av_);             \
        c##r##3 = _mm512_dpbusd_epi32(c##r##3, b3, av_);             \
    } while (0)
#define ZERO4(r) __m512i c##r##0 = _mm512_setzero_si512(), c##r##1 = c##r##0, c##r##2 = c##r##0, c##r##3 = c##r##0
#define STORE4(r)                                                   \
    do {                                                            \
        __m512i v_[4] = {c##r##0, c##r##1, c##r##2, c##r##3};        \
        i8_vnni_store(t, m0 + (r), blk0, nb, v_);                   \
    } while (0)

static inline int32_t i8_load4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

#define VNNI_KERNEL(MR, ZEROS, DPS, STORES)                                                   \
    QS_TARGET_AVX512_VNNI static void i8_vnni_mr##MR(const I8Task *t, int64_t m0, int64_t blk0, int nb) { \
        const int64_t k4n = t->w->kp / 4;                                                     \
        const uint8_t *B = t->w->b + (size_t)blk0 * (size_t)k4n * 64;                          \
        const int8_t *A = t->A + m0 * t->lda;                                                 \
        const int64_t lda = t->lda;                                                           \
        ZEROS;                                                                                \
        for (int64_t k4 = 0; k4 < k4n; k4++) {                                                \
            const uint8_t *bp = B + k4 * 256;                                                 \
            __m512i b0 = _mm512_load_si512((const void *)bp);                                 \
            __m512i b1 = _mm512_load_si512((const void *)(bp + 64));                          \
            __m512i b2 = _mm512_load_si512((const void *)(bp + 128));                         \
            __m512i b3 = _mm512_load_si512((const void *)(bp + 192));                         \
            DPS;                                                                              \
        }                                                                                     \
        STORES;                                                                               \
    }

VNNI_KERNEL(1, ZERO4(0), DP4(0), STORE4(0))
VNNI_KERNEL(2, ZERO4(0); ZERO4(1), DP4(0); DP4(1), STORE4(0); STORE4(1))
VNNI_KERNEL(3, ZERO4(0); ZERO4(1); ZERO4(2), DP4(0); DP4(1); DP4(2), STORE4(0); STORE4(1); STORE4(2))
VNNI_KERNEL(4, ZERO4(0); ZERO4(1); ZERO4(2); ZERO4(3), DP4(0); DP4(1); DP4(2); DP4(3),
            STORE4(0); STORE4(1); STORE4(2); STORE4(3))
VNNI_KERNEL(5, ZERO4(0); ZERO4(1); ZERO4(2); ZERO4(3); ZERO4(4), DP4(0); DP4(1); DP4(2); DP4(3); DP4(4),
            STORE4(0); STORE4(1); STORE4(2); STORE4(3); STORE4(4))
VNNI_KERNEL(6, ZERO4(0); ZERO4(1); ZERO4(2); ZERO4(3); ZERO4(4); ZERO4(5),
            DP4(0); DP4(1); DP4(2); DP4(3); DP4(4); DP4(5),
            STORE4(0); STORE4(1); STORE4(2); STORE4(3); STORE4(4); STORE4(5))

QS_TARGET_AVX512_VNNI static void i8_slab_vnni(const I8Task *t, int64_t blk0, int64_t nblk) {
    const int nb = (int)nblk;
    int64_t m0 = 0;
    for (; m0 + 6 <= t->M; m0 += 6) i8_vnni_mr6(t, m0, blk0, nb);
    switch (t->M - m0) {
    case 0: break;
    case 1: i8_vnni_mr1(t, m0, blk0, nb); break;
    case 2: i8_vnni_mr2(t, m0, blk0, nb); break;
    case 3: i8_vnni_mr3(t, m0, blk0, nb); break;
    case 4: i8_vnni_mr4(t, m0, blk0, nb); break;
    default: i8_vnni_mr5(t, m0, blk0, nb); break;
    }
}

void i8gemm_vnni(const I8Matrix *w, const int8_t *A, int64_t M, int64_t lda, const float *a_scale,
                 void *C, int64_t ldc, Pool *pool) {
    i8_drive(w, A, M, lda, a_scale, C, ldc, pool, i8_slab_vnni);
}

/* === AVX2 === */

/* Two dot products, both exact in int32:
 *  - the sign trick (every matrix i8mat_pack found no -128 code in, sign_ok):
 *    w = u ^ 0x80 and vpmaddubsw(|a|, sign(w, a)): |a| ≤ 128 as an unsigned
 *    byte and |sign(w, a)| ≤ 127, so a pair sum is at most 2·128·127 = 32512
 *    and never saturates; the result is Σ w·a directly (no +128 bias to take
 *    back). One multiply-add pair per 32 weights and row.
 *  - nibbles (a -128 code present: its sign cannot be flipped in a byte):
 *    u = 16·hi + lo with both ≤ 15, each vpmaddubsw pair sum within ±3840,
 *    and 128 · Σ_k a subtracted per row. Two multiply-add pairs. */

#define AVX2_MR 4

QS_TARGET_AVX2 static inline __attribute__((always_inline)) __m256i
i8_avx2_dot(__m256i acc, __m256i lo, __m256i hi, __m256i av) {
    const __m256i one = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
    __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, av), one);
    __m256i ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, av), sixteen);
    return _mm256_add_epi32(acc, _mm256_add_epi32(pl, ph));
}

/* acc + Σ over 4 k of w·a per channel, 8 channels (w signed, no -128). */
QS_TARGET_AVX2 static inline __attribute__((always_inline)) __m256i
i8_avx2_sdot(__m256i acc, __m256i w, __m256i aabs, __m256i a) {
    __m256i p = _mm256_maddubs_epi16(aabs, _mm256_sign_epi8(w, a));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* Writes 8 channels n0.. of row m from int32 sums v (already unbiased):
 * ((float)v * a_scale[m]) * scale[n] as the scalar twin computes it, so
 * equal sums give equal bits. */
QS_TARGET_AVX2 static inline __attribute__((always_inline)) void
i8_avx2_store8(const I8Task *t, int64_t m, int64_t n0, __m256i v) {
    const I8Matrix *w = t->w;
    if (n0 >= w->n) return;
    if (t->a_scale && n0 + 8 <= w->n) {
        __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(t->a_scale[m]));
        _mm256_storeu_ps((float *)t->C + m * t->ldc + n0, _mm256_mul_ps(f, _mm256_loadu_ps(w->scale + n0)));
        return;
    }
    if (!t->a_scale && n0 + 8 <= w->n) {
        _mm256_storeu_si256((__m256i *)((int32_t *)t->C + m * t->ldc + n0), v);
        return;
    }
    int32_t out[8];
    _mm256_storeu_si256((__m256i *)out, v);
    for (int j = 0; j < 8 && n0 + j < w->n; j++) {
        if (t->a_scale) ((float *)t->C)[m * t->ldc + n0 + j] = (float)out[j] * t->a_scale[m] * w->scale[n0 + j];
        else ((int32_t *)t->C)[m * t->ldc + n0 + j] = out[j];
    }
}

/* One 16-channel block blk × rows [m0, m0 + mr): the sign-trick dot when
 * sign (a constant at every call, so each variant compiles without the
 * other's work), else the nibble dot and the row sums' correction. */
QS_TARGET_AVX2 static inline __attribute__((always_inline)) void
i8_avx2_tile(const I8Task *t, int64_t m0, int64_t blk, const int mr, const int sign) {
    const I8Matrix *w = t->w;
    const int64_t k4n = w->kp / 4;
    const uint8_t *B = w->b + (size_t)(blk / 4) * (size_t)k4n * 256 + (size_t)(blk % 4) * 64;
    const int8_t *A = t->A + m0 * t->lda;
    const __m256i m4 = _mm256_set1_epi8(0x0F), bias = _mm256_set1_epi8((char)0x80);
    __m256i acc[AVX2_MR][2];
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int64_t k4 = 0; k4 < k4n; k4++) {
        __m256i b0 = _mm256_load_si256((const __m256i *)(B + k4 * 256));
        __m256i b1 = _mm256_load_si256((const __m256i *)(B + k4 * 256 + 32));
        if (sign) {
            b0 = _mm256_xor_si256(b0, bias);
            b1 = _mm256_xor_si256(b1, bias);
            for (int r = 0; r < mr; r++) {
                __m256i av = _mm256_set1_epi32(i8_load4(A + r * t->lda + k4 * 4));
                __m256i aa = _mm256_abs_epi8(av);
                acc[r][0] = i8_avx2_sdot(acc[r][0], b0, aa, av);
                acc[r][1] = i8_avx2_sdot(acc[r][1], b1, aa, av);
            }
            continue;
        }
        __m256i l0 = _mm256_and_si256(b0, m4), h0 = _mm256_and_si256(_mm256_srli_epi16(b0, 4), m4);
        __m256i l1 = _mm256_and_si256(b1, m4), h1 = _mm256_and_si256(_mm256_srli_epi16(b1, 4), m4);
        for (int r = 0; r < mr; r++) {
            __m256i av = _mm256_set1_epi32(i8_load4(A + r * t->lda + k4 * 4));
            acc[r][0] = i8_avx2_dot(acc[r][0], l0, h0, av);
            acc[r][1] = i8_avx2_dot(acc[r][1], l1, h1, av);
        }
    }
    for (int r = 0; r < mr; r++) {
        __m256i corr = _mm256_set1_epi32(sign ? 0 : 128 * t->rowsum[m0 + r]);
        i8_avx2_store8(t, m0 + r, blk * 16, _mm256_sub_epi32(acc[r][0], corr));
        i8_avx2_store8(t, m0 + r, blk * 16 + 8, _mm256_sub_epi32(acc[r][1], corr));
    }
}

/* Rows [0, M) of block blk in tiles of AVX2_MR rows and one of the rest. */
QS_TARGET_AVX2 static inline __attribute__((always_inline)) void
i8_avx2_block(const I8Task *t, int64_t blk, const int sign) {
    int64_t m0 = 0;
    for (; m0 + AVX2_MR <= t->M; m0 += AVX2_MR) i8_avx2_tile(t, m0, blk, AVX2_MR, sign);
    switch (t->M - m0) {
    case 0: break;
    case 1: i8_avx2_tile(t, m0, blk, 1, sign); break;
    case 2: i8_avx2_tile(t, m0, blk, 2, sign); break;
    default: i8_avx2_tile(t, m0, blk, 3, sign); break;
    }
}

/* One row (decode) against a whole slab of 64 channels: the slab's 256
 * bytes per k-step are read in order, once, and each broadcast of the four
 * activations (and its |a|) serves eight vectors. */
QS_TARGET_AVX2 static void i8_avx2_row64(const I8Task *t, int64_t m, int64_t blk0) {
    const int64_t k4n = t->w->kp / 4;
    const uint8_t *B = t->w->b + (size_t)(blk0 / 4) * (size_t)k4n * 256;
    const int8_t *A = t->A + m * t->lda;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    for (int64_t k4 = 0; k4 < k4n; k4++) {
        const __m256i *bp = (const __m256i *)(B + k4 * 256);
        __m256i av = _mm256_set1_epi32(i8_load4(A + k4 * 4));
        __m256i aa = _mm256_abs_epi8(av);
        c0 = i8_avx2_sdot(c0, _mm256_xor_si256(_mm256_load_si256(bp + 0), bias), aa, av);
        c1 = i8_avx2_sdot(c1, _mm256_xor_si256(_mm256_load_si256(bp + 1), bias), aa, av);
        c2 = i8_avx2_sdot(c2, _mm256_xor_si256(_mm256_load_si256(bp + 2), bias), aa, av);
        c3 = i8_avx2_sdot(c3, _mm256_xor_si256(_mm256_load_si256(bp + 3), bias), aa, av);
        c4 = i8_avx2_sdot(c4, _mm256_xor_si256(_mm256_load_si256(bp + 4), bias), aa, av);
        c5 = i8_avx2_sdot(c5, _mm256_xor_si256(_mm256_load_si256(bp + 5), bias), aa, av);
        c6 = i8_avx2_sdot(c6, _mm256_xor_si256(_mm256_load_si256(bp + 6), bias), aa, av);
        c7 = i8_avx2_sdot(c7, _mm256_xor_si256(_mm256_load_si256(bp + 7), bias), aa, av);
    }
    const int64_t n0 = blk0 * 16;
    i8_avx2_store8(t, m, n0 + 0, c0);
    i8_avx2_store8(t, m, n0 + 8, c1);
    i8_avx2_store8(t, m, n0 + 16, c2);
    i8_avx2_store8(t, m, n0 + 24, c3);
    i8_avx2_store8(t, m, n0 + 32, c4);
    i8_avx2_store8(t, m, n0 + 40, c5);
    i8_avx2_store8(t, m, n0 + 48, c6);
    i8_avx2_store8(t, m, n0 + 56, c7);
}

QS_TARGET_AVX2 static void i8_slab_avx2(const I8Task *t, int64_t blk0, int64_t nblk) {
    if (t->w->sign_ok && t->M < AVX2_MR && nblk == 4 && blk0 % 4 == 0) {
        for (int64_t m = 0; m < t->M; m++) i8_avx2_row64(t, m, blk0);
        return;
    }
    for (int64_t blk = blk0; blk < blk0 + nblk; blk++) {
        if (t->w->sign_ok) i8_avx2_block(t, blk, 1);
        else i8_avx2_block(t, blk, 0);
    }
}

void i8gemm_avx2(const I8Matrix *w, const int8_t *A, int64_t M, int64_t lda, const float *a_scale,
                 void *C, int64_t ldc, Pool *pool) {
    i8_drive(w, A, M, lda, a_scale, C, ldc, pool, i8_slab_avx2);
}

int64_t i8gemm_job_init(I8GemmJob *j, const I8Matrix *w, const int8_t *A, int64_t M, int64_t lda,
                        const float *a_scale, float *C, int64_t ldc) {
    I8SlabFn fn = cpu_has_avx512_vnni() ? i8_slab_vnni : cpu_has_avx2() ? i8_slab_avx2 : i8_slab_ref;
    return i8_job_fill(j, w, A, M, lda, a_scale, C, ldc, fn);
}

void i8gemm(const I8Matrix *w, const int8_t *A, int64_t M, int64_t lda, const float *a_scale,
            float *C, int64_t ldc, Pool *pool) {
    if (cpu_has_avx512_vnni()) i8gemm_vnni(w, A, M, lda, a_scale, C, ldc, pool);
    else if (cpu_has_avx2()) i8gemm_avx2(w, A, M, lda, a_scale, C, ldc, pool);
    else i8gemm_ref(w, A, M, lda, a_scale, C, ldc, pool);
}
