#include "kernels/w4a8.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fpconv.h"
#include "kernels/cpu.h"
#include "kernels/simd.h"

#define W4A8_KBLK 256 /* superblock: 8 blocks of 32 inputs (one 16-byte load of fp16 scales); rows pad to it */

/* Input of a superblock at vector c, lane j, byte b (see the layout). */
static inline int64_t w4a8_input(int64_t c, int64_t j, int64_t b) { return 32 * (j % 8) + 4 * (2 * c + j / 8) + b; }

/* Byte offset within a row of input e's code, and its nibble (0 low, 1 high). */
static inline size_t w4a8_code_byte(int64_t e, int *nib) {
    int64_t sb = e / W4A8_KBLK, r = e % W4A8_KBLK, qi = (r % 32) / 4;
    int64_t c = qi / 2, j = r / 32 + 8 * (qi % 2), b = r % 4;
    *nib = (int)(c % 2);
    return (size_t)(sb * 128 + 64 * (c / 2) + 4 * j + b);
}

int w4a8_group_ok(WqGroup gdim, int64_t group, int64_t k) {
    if (k <= 0) return 0;
    if (gdim == WQ_GROUP_TENSOR) return 1;
    if (gdim != WQ_GROUP_OC) return 0;
    return group == 0 || (group > 0 && group % 32 == 0 && k % group == 0);
}

void w4a8mat_done(W4a8Matrix *m) {
    core_free_aligned(m->codes);
    core_free_aligned(m->scale);
    memset(m, 0, sizeof *m);
}

size_t w4a8mat_bytes(const W4a8Matrix *m) {
    return (size_t)m->n * (m->row_bytes + (size_t)(m->kp / 32) * sizeof(uint16_t));
}

Status w4a8mat_pack(const int8_t *q, int64_t n, int64_t k, WqGroup gdim, int64_t group, const float *scale,
                    W4a8Matrix *out, Err *err) {
    memset(out, 0, sizeof *out);
    if (n <= 0 || k <= 0) return err_set(err, ST_ERR_ARG, "w4a8: bad shape (%lld, %lld)", (long long)n, (long long)k);
    if (!w4a8_group_ok(gdim, group, k))
        return err_set(err, ST_ERR_ARG, "w4a8: grouping %d with g = %lld on %lld inputs (needs tensor, per-row, or OC groups of a multiple of 32 dividing k)",
                       (int)gdim, (long long)group, (long long)k);
    if (!q || !scale) return err_set(err, ST_ERR_ARG, "w4a8: missing codes or scales");
    W4a8Matrix m = {0};
    m.n = n;
    m.k = k;
    m.kp = (k + W4A8_KBLK - 1) / W4A8_KBLK * W4A8_KBLK;
    m.row_bytes = (size_t)(m.kp / 2);
    m.gdim = gdim;
    m.group = gdim == WQ_GROUP_OC ? group : 0;
    const int64_t nb = m.kp / 32; /* 32-input blocks per padded row */
    m.codes = core_alloc_aligned((size_t)n, m.row_bytes);
    m.scale = core_alloc_aligned((size_t)(n * nb), sizeof *m.scale);
    if (!m.codes || !m.scale) {
        w4a8mat_done(&m);
        return err_set(err, ST_ERR_NOMEM, "w4a8: %lld x %lld", (long long)n, (long long)k);
    }
    const int64_t g = gdim == WQ_GROUP_OC ? (group ? group : k) : n * k;
    for (int64_t r = 0; r < n; r++) {
        uint8_t *row = m.codes + (size_t)r * m.row_bytes;
        memset(row, 0x88, m.row_bytes); /* padding codes q = 0 */
        const int8_t *qr = q + r * k;
        for (int64_t i = 0; i < k; i++) {
            int v = qr[i];
            if (v < -8 || v > 7) {
                w4a8mat_done(&m);
                return err_set(err, ST_ERR_RANGE, "w4a8: code %d at (%lld, %lld) outside [-8, 7]", v, (long long)r, (long long)i);
            }
            int nib;
            uint8_t *b = row + w4a8_code_byte(i, &nib);
            uint8_t u = (uint8_t)(v + 8);
            *b = nib ? (uint8_t)((*b & 0x0F) | (u << 4)) : (uint8_t)((*b & 0xF0) | u);
        }
        uint16_t *sr = m.scale + r * nb;
        for (int64_t b = 0; b < nb; b++) {
            if (b * 32 >= k) {
                sr[b] = 0;
                continue;
            }
            int64_t gi = gdim == WQ_GROUP_OC ? (r * k + b * 32) / g : 0;
            float s = scale[gi];
            uint16_t h = f32_to_fp16(s);
            if (!isfinite(s) || fp16_to_f32(h) != s) {
                w4a8mat_done(&m);
                return err_set(err, ST_ERR_RANGE, "w4a8: scale %lld = %g is not exact in fp16", (long long)gi, (double)s);
            }
            sr[b] = h;
        }
    }
    *out = m;
    return ST_OK;
}

void w4a8_act_prep(const int8_t *a, int64_t T, int64_t kp, int8_t *ap, int32_t *corr) {
    /* the reordering moves whole 4-byte quads: output quad 16c + j is input quad 8 (j mod 8) + 2c + j div 8 */
    for (int64_t t = 0; t < T; t++)
        for (int64_t sb = 0; sb < kp / W4A8_KBLK; sb++) {
            const int8_t *as = a + t * kp + sb * W4A8_KBLK;
            int8_t *ps = ap + t * kp + sb * W4A8_KBLK;
            int32_t *cs = corr + t * (kp / 16) + sb * 16;
            for (int64_t c = 0; c < 4; c++)
                for (int64_t j = 0; j < 16; j++) memcpy(ps + 64 * c + 4 * j, as + w4a8_input(c, j, 0), 4);
            for (int64_t j = 0; j < 16; j++) {
                int32_t sum = 0;
                for (int64_t c = 0; c < 4; c++)
                    for (int64_t b = 0; b < 4; b++) sum += ps[64 * c + 4 * j + b];
                cs[j] = -8 * sum;
            }
        }
}

/* === scalar twin === */

void w4a8_gemm_ref(const W4a8Matrix *m, const int8_t *a, const float *sa, int64_t T, float *y) {
    const int64_t nb = m->kp / 32;
    for (int64_t t = 0; t < T; t++) {
        const int8_t *at = a + t * m->kp;
        for (int64_t r = 0; r < m->n; r++) {
            const uint8_t *row = m->codes + (size_t)r * m->row_bytes;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                int32_t d = 0;
                for (int64_t i = b * 32; i < b * 32 + 32; i++) {
                    int nib;
                    uint8_t byte = row[w4a8_code_byte(i, &nib)];
                    int qv = (nib ? byte >> 4 : byte & 0x0F) - 8;
                    d += qv * at[i];
                }
                acc += fp16_to_f32(m->scale[r * nb + b]) * (float)d;
            }
            y[t * m->n + r] = sa[t] * acc;
        }
    }
}

/* === row tasks over the pool === */

typedef void (*W4a8RowsFn)(const W4a8Matrix *m, int64_t r0, int64_t r1, const int8_t *a, const int32_t *corr,
                           const float *sa, int64_t T, float *y);

void w4a8_gemm_job_run(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const W4a8Job *t = arg;
    int64_t r0 = begin * 4, r1 = end * 4 < t->m->n ? end * 4 : t->m->n;
    t->rows(t->m, r0, r1, t->a, t->corr, t->sa, t->T, t->y);
}

/* Fills j for path fn; returns its units and their grain. */
static int64_t w4a8_job_fill(W4a8Job *j, const W4a8Matrix *m, const int8_t *a, const int32_t *corr, const float *sa,
                             int64_t T, float *y, W4a8RowsFn fn, int64_t *grain) {
    *j = (W4a8Job){m, a, corr, sa, T, y, fn};
    /* at least ~64 KB of codes per range so that small matrices stay on one thread */
    *grain = (int64_t)(65536 / (4 * m->row_bytes)) + 1;
    return (m->n + 3) / 4;
}

static void w4a8_run(const W4a8Matrix *m, const int8_t *a, const int32_t *corr, const float *sa, int64_t T, float *y,
                     Pool *pool, W4a8RowsFn fn) {
    W4a8Job j;
    int64_t grain, units = w4a8_job_fill(&j, m, a, corr, sa, T, y, fn, &grain);
    pool_for(pool, units, grain, w4a8_gemm_job_run, &j);
}

/* === AVX-512 VNNI === */


/* One superblock of one row: the four chained vpdpbusd from the lane
 * corrections cv, then the 8 block scales (both halves) times the lanes. */
#define W4A8_SB_VNNI(p, s, acc)                                                                        \
    do {                                                                                             \
        const __m512i v0 = _mm512_loadu_si512((p) + 128 * sb), v1 = _mm512_loadu_si512((p) + 128 * sb + 64); \
        __m512i d = _mm512_dpbusd_epi32(cv, _mm512_and_si512(v0, m0f), a0);                          \
        d = _mm512_dpbusd_epi32(d, _mm512_and_si512(_mm512_srli_epi16(v0, 4), m0f), a1);              \
        d = _mm512_dpbusd_epi32(d, _mm512_and_si512(v1, m0f), a2);                                    \
        d = _mm512_dpbusd_epi32(d, _mm512_and_si512(_mm512_srli_epi16(v1, 4), m0f), a3);              \
        const __m256 s8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((s) + 8 * sb)));          \
        const __m512 sv = _mm512_insertf32x8(_mm512_castps256_ps512(s8), s8, 1);                      \
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), sv, acc);                                       \
    } while (0)

#define W4A8_ACT_VNNI()                                                                              \
    const int8_t *as_ = ap + W4A8_KBLK * sb;                                                         \
    const __m512i a0 = _mm512_loadu_si512(as_), a1 = _mm512_loadu_si512(as_ + 64),                  \
                  a2 = _mm512_loadu_si512(as_ + 128), a3 = _mm512_loadu_si512(as_ + 192);            \
    const __m512i cv = _mm512_loadu_si512(corr + 16 * sb)

QS_TARGET_AVX512_VNNI static void w4a8_r4_vnni(const W4a8Matrix *m, int64_t r, const int8_t *ap, const int32_t *corr, float *out) {
    const __m512i m0f = _mm512_set1_epi8(0x0F);
    const int64_t nb = m->kp / 32, nsb = m->kp / W4A8_KBLK;
    const size_t rb = m->row_bytes;
    const uint8_t *p0 = m->codes + (size_t)r * rb, *p1 = p0 + rb, *p2 = p1 + rb, *p3 = p2 + rb;
    const uint16_t *s0 = m->scale + r * nb, *s1 = s0 + nb, *s2 = s1 + nb, *s3 = s2 + nb;
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    for (int64_t sb = 0; sb < nsb; sb++) {
        /* the next four rows' codes, as fast as these are read */
        _mm_prefetch((const char *)(p0 + 4 * rb + 512 * sb), _MM_HINT_T0);
        _mm_prefetch((const char *)(p0 + 4 * rb + 512 * sb + 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(p0 + 4 * rb + 512 * sb + 128), _MM_HINT_T0);
        _mm_prefetch((const char *)(p0 + 4 * rb + 512 * sb + 192), _MM_HINT_T0);
        _mm_prefetch((const char *)(p0 + 4 * rb + 512 * sb + 256), _MM_HINT_T0);
        _mm_prefetch((const char *)(p0 + 4 * rb + 512 * sb + 320), _MM_HINT_T0);
        _mm_prefetch((const char *)(p0 + 4 * rb + 512 * sb + 384), _MM_HINT_T0);
        _mm_prefetch((const char *)(p0 + 4 * rb + 512 * sb + 448), _MM_HINT_T0);
        W4A8_ACT_VNNI();
        W4A8_SB_VNNI(p0, s0, c0);
        W4A8_SB_VNNI(p1, s1, c1);
        W4A8_SB_VNNI(p2, s2, c2);
        W4A8_SB_VNNI(p3, s3, c3);
    }
    out[0] = _mm512_reduce_add_ps(c0);
    out[1] = _mm512_reduce_add_ps(c1);
    out[2] = _mm512_reduce_add_ps(c2);
    out[3] = _mm512_reduce_add_ps(c3);
}

QS_TARGET_AVX512_VNNI static float w4a8_r1_vnni(const W4a8Matrix *m, int64_t r, const int8_t *ap, const int32_t *corr) {
    const __m512i m0f = _mm512_set1_epi8(0x0F);
    const int64_t nb = m->kp / 32, nsb = m->kp / W4A8_KBLK;
    const uint8_t *p = m->codes + (size_t)r * m->row_bytes;
    const uint16_t *s = m->scale + r * nb;
    __m512 c0 = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < nsb; sb++) {
        W4A8_ACT_VNNI();
        W4A8_SB_VNNI(p, s, c0);
    }
    return _mm512_reduce_add_ps(c0);
}

/* Four rows times two tokens: the decoded nibbles serve both tokens. */
QS_TARGET_AVX512_VNNI static void w4a8_r4t2_vnni(const W4a8Matrix *m, int64_t r, const int8_t *ap, const int32_t *corr,
                                       float *out) {
    const __m512i m0f = _mm512_set1_epi8(0x0F);
    const int64_t nb = m->kp / 32, nsb = m->kp / W4A8_KBLK, kp = m->kp;
    const size_t rb = m->row_bytes;
    const uint8_t *p0 = m->codes + (size_t)r * rb;
    const uint16_t *s0 = m->scale + r * nb;
    __m512 c[2][4];
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 4; i++) c[t][i] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < nsb; sb++) {
        const int8_t *x0 = ap + W4A8_KBLK * sb, *x1 = x0 + kp;
        const __m512i a0 = _mm512_loadu_si512(x0), a1 = _mm512_loadu_si512(x0 + 64),
                      a2 = _mm512_loadu_si512(x0 + 128), a3 = _mm512_loadu_si512(x0 + 192);
        const __m512i b0 = _mm512_loadu_si512(x1), b1 = _mm512_loadu_si512(x1 + 64),
                      b2 = _mm512_loadu_si512(x1 + 128), b3 = _mm512_loadu_si512(x1 + 192);
        const __m512i cv0 = _mm512_loadu_si512(corr + 16 * sb), cv1 = _mm512_loadu_si512(corr + kp / 16 + 16 * sb);
        for (int i = 0; i < 4; i++) {
            const uint8_t *p = p0 + (size_t)i * rb + 128 * sb;
            const __m512i v0 = _mm512_loadu_si512(p), v1 = _mm512_loadu_si512(p + 64);
            const __m512i w0 = _mm512_and_si512(v0, m0f), w1 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), m0f);
            const __m512i w2 = _mm512_and_si512(v1, m0f), w3 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), m0f);
            __m512i d0 = _mm512_dpbusd_epi32(cv0, w0, a0), d1 = _mm512_dpbusd_epi32(cv1, w0, b0);
            d0 = _mm512_dpbusd_epi32(d0, w1, a1);
            d1 = _mm512_dpbusd_epi32(d1, w1, b1);
            d0 = _mm512_dpbusd_epi32(d0, w2, a2);
            d1 = _mm512_dpbusd_epi32(d1, w2, b2);
            d0 = _mm512_dpbusd_epi32(d0, w3, a3);
            d1 = _mm512_dpbusd_epi32(d1, w3, b3);
            const __m256 s8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s0 + (size_t)i * nb + 8 * sb)));
            const __m512 sv = _mm512_insertf32x8(_mm512_castps256_ps512(s8), s8, 1);
            c[0][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), sv, c[0][i]);
            c[1][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1), sv, c[1][i]);
        }
    }
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 4; i++) out[4 * t + i] = _mm512_reduce_add_ps(c[t][i]);
}

/* Rows [r0, r1) for T tokens: tiles of tokens small enough (~128 KB of
 * codes) to stay in L2 while every block of four rows runs over them. */
QS_TARGET_AVX512_VNNI static void w4a8_rows_vnni(const W4a8Matrix *m, int64_t r0, int64_t r1, const int8_t *ap,
                                       const int32_t *corr, const float *sa, int64_t T, float *y) {
    const int64_t kp = m->kp, cs = kp / 16;
    int64_t tt = (131072 / kp) & ~(int64_t)1;
    if (tt < 2) tt = 2;
    for (int64_t t0 = 0; t0 < T; t0 += tt) {
        const int64_t t1 = t0 + tt < T ? t0 + tt : T;
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) {
            int64_t t = t0;
            for (; t + 2 <= t1; t += 2) {
                float o[8];
                w4a8_r4t2_vnni(m, r, ap + t * kp, corr + t * cs, o);
                for (int i = 0; i < 4; i++) {
                    y[t * m->n + r + i] = sa[t] * o[i];
                    y[(t + 1) * m->n + r + i] = sa[t + 1] * o[4 + i];
                }
            }
            for (; t < t1; t++) {
                float o[4];
                w4a8_r4_vnni(m, r, ap + t * kp, corr + t * cs, o);
                for (int i = 0; i < 4; i++) y[t * m->n + r + i] = sa[t] * o[i];
            }
        }
        for (; r < r1; r++)
            for (int64_t t = t0; t < t1; t++) y[t * m->n + r] = sa[t] * w4a8_r1_vnni(m, r, ap + t * kp, corr + t * cs);
    }
}

void w4a8_gemm_vnni(const W4a8Matrix *m, const int8_t *ap, const int32_t *corr, const float *sa, int64_t T,
                    float *y, Pool *pool) {
    w4a8_run(m, ap, corr, sa, T, y, pool, w4a8_rows_vnni);
}

/* === AVX2 === */


/* One row. A 256-bit half of a 64-byte vector holds lanes j = 8h .. 8h + 7,
 * so its lane i belongs to block i in every half; vpmaddubsw pairs stay
 * within ±2·15·127. */
QS_TARGET_AVX2 static float w4a8_r1_avx2(const W4a8Matrix *m, int64_t r, const int8_t *ap, const int32_t *corr) {
    const __m256i m0f = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi16(1);
    const int64_t nb = m->kp / 32, nsb = m->kp / W4A8_KBLK;
    const uint8_t *p = m->codes + (size_t)r * m->row_bytes;
    const uint16_t *s = m->scale + r * nb;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < nsb; sb++) {
        const int8_t *as = ap + W4A8_KBLK * sb;
        __m256i d = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(corr + 16 * sb)),
                                     _mm256_loadu_si256((const __m256i *)(corr + 16 * sb + 8)));
        for (int h = 0; h < 2; h++)
            for (int half = 0; half < 2; half++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(p + 128 * sb + 64 * h + 32 * half));
                __m256i lo = _mm256_and_si256(v, m0f), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f);
                __m256i alo = _mm256_loadu_si256((const __m256i *)(as + 128 * h + 32 * half));
                __m256i ahi = _mm256_loadu_si256((const __m256i *)(as + 128 * h + 64 + 32 * half));
                d = _mm256_add_epi32(d, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, alo), one));
                d = _mm256_add_epi32(d, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, ahi), one));
            }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 8 * sb))), acc);
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

QS_TARGET_AVX2 static void w4a8_rows_avx2(const W4a8Matrix *m, int64_t r0, int64_t r1, const int8_t *ap,
                                       const int32_t *corr, const float *sa, int64_t T, float *y) {
    for (int64_t r = r0; r < r1; r++)
        for (int64_t t = 0; t < T; t++)
            y[t * m->n + r] = sa[t] * w4a8_r1_avx2(m, r, ap + t * m->kp, corr + t * (m->kp / 16));
}

void w4a8_gemm_avx2(const W4a8Matrix *m, const int8_t *ap, const int32_t *corr, const float *sa, int64_t T,
                    float *y, Pool *pool) {
    w4a8_run(m, ap, corr, sa, T, y, pool, w4a8_rows_avx2);
}

/* === dispatch === */

/* The no-SIMD path: the fast paths' lane algorithm on prepared activations
 * (the twin, w4a8_gemm_ref, reads natural-order codes instead). */
static void w4a8_rows_scalar(const W4a8Matrix *m, int64_t r0, int64_t r1, const int8_t *ap, const int32_t *corr,
                             const float *sa, int64_t T, float *y) {
    const int64_t nb = m->kp / 32, nsb = m->kp / W4A8_KBLK;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *p = m->codes + (size_t)r * m->row_bytes;
        const uint16_t *s = m->scale + r * nb;
        for (int64_t t = 0; t < T; t++) {
            const int8_t *at = ap + t * m->kp;
            const int32_t *ct = corr + t * (m->kp / 16);
            float acc = 0.0f;
            for (int64_t sb = 0; sb < nsb; sb++)
                for (int64_t j = 0; j < 16; j++) {
                    int32_t d = ct[16 * sb + j];
                    for (int64_t c = 0; c < 4; c++)
                        for (int64_t b = 0; b < 4; b++) {
                            uint8_t byte = p[128 * sb + 64 * (c / 2) + 4 * j + b];
                            d += (c % 2 ? byte >> 4 : byte & 0x0F) * at[W4A8_KBLK * sb + 64 * c + 4 * j + b];
                        }
                    acc += fp16_to_f32(s[8 * sb + j % 8]) * (float)d;
                }
            y[t * m->n + r] = sa[t] * acc;
        }
    }
}

void w4a8_gemm(const W4a8Matrix *m, const int8_t *a, const int32_t *corr, const float *sa, int64_t T, float *y,
               Pool *pool) {
    if (cpu_has_avx512_vnni() && cpu_has_f16c()) w4a8_run(m, a, corr, sa, T, y, pool, w4a8_rows_vnni);
    else if (cpu_has_avx2() && cpu_has_f16c()) w4a8_run(m, a, corr, sa, T, y, pool, w4a8_rows_avx2);
    else w4a8_run(m, a, corr, sa, T, y, pool, w4a8_rows_scalar);
}

int64_t w4a8_gemm_job_init(W4a8Job *j, const W4a8Matrix *m, const int8_t *ap, const int32_t *corr, const float *sa,
                           int64_t T, float *y, int64_t *grain) {
    W4a8RowsFn fn = cpu_has_avx512_vnni() && cpu_has_f16c() ? w4a8_rows_vnni
                    : cpu_has_avx2() && cpu_has_f16c()      ? w4a8_rows_avx2
                                                            : w4a8_rows_scalar;
    return w4a8_job_fill(j, m, ap, corr, sa, T, y, fn, grain);
}

const char *w4a8_path_name(void) {
    if (cpu_has_avx512_vnni() && cpu_has_f16c()) return "vnni";
    if (cpu_has_avx2() && cpu_has_f16c()) return "avx2";
    return "scalar";
}
