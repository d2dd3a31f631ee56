#include "kernels/w4a8.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fpconv.h"
#include "kernels/cpu.h"

#define W4A8_KBLK 256 /* row padding: four 64-input chunks share one 16-byte load of 8 fp16 scales */

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
            int64_t c = i / 64, j = i % 64;
            uint8_t *b = row + c * 32 + (j & 31);
            uint8_t u = (uint8_t)(v + 8);
            *b = j < 32 ? (uint8_t)((*b & 0xF0) | u) : (uint8_t)((*b & 0x0F) | (u << 4));
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

void w4a8_act_corr(const int8_t *a, int64_t T, int64_t kp, int32_t *corr) {
    const int64_t nl = kp / 4;
    for (int64_t t = 0; t < T; t++) {
        const int8_t *at = a + t * kp;
        int32_t *ct = corr + t * nl;
        for (int64_t j = 0; j < nl; j++) ct[j] = -8 * (at[4 * j] + at[4 * j + 1] + at[4 * j + 2] + at[4 * j + 3]);
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
                    uint8_t byte = row[(i / 64) * 32 + (i % 32)];
                    int qv = (i % 64 < 32 ? byte & 0x0F : byte >> 4) - 8;
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

typedef struct W4a8Task {
    const W4a8Matrix *m;
    const int8_t *a;
    const int32_t *corr;
    const float *sa;
    int64_t T;
    float *y;
    W4a8RowsFn fn;
} W4a8Task;

static void w4a8_task(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const W4a8Task *t = arg;
    int64_t r0 = begin * 4, r1 = end * 4 < t->m->n ? end * 4 : t->m->n;
    t->fn(t->m, r0, r1, t->a, t->corr, t->sa, t->T, t->y);
}

static void w4a8_run(const W4a8Matrix *m, const int8_t *a, const int32_t *corr, const float *sa, int64_t T, float *y,
                     Pool *pool, W4a8RowsFn fn) {
    W4a8Task t = {m, a, corr, sa, T, y, fn};
    int64_t units = (m->n + 3) / 4;
    /* at least ~64 KB of codes per range so that small matrices stay on one thread */
    int64_t grain = (int64_t)(65536 / (4 * m->row_bytes)) + 1;
    pool_for(pool, units, grain, w4a8_task, &t);
}

/* === AVX-512 VNNI === */

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,f16c,fma")))

/* Unsigned nibbles of one 64-input chunk in natural order: the 32 bytes
 * broadcast to both halves, the upper half shifted right by 4. */
#define W4A8_NIBBLES(p) \
    _mm512_and_si512(_mm512_srlv_epi64(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(p))), sh), m0f)

VNNI_TARGET static void w4a8_r4_vnni(const W4a8Matrix *m, int64_t r, const int8_t *a, const int32_t *corr, float *out) {
    const __m512i m0f = _mm512_set1_epi8(0x0F);
    const __m512i sh = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
    const __m512i i0 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i i1 = _mm512_add_epi32(i0, _mm512_set1_epi32(2));
    const __m512i i2 = _mm512_add_epi32(i0, _mm512_set1_epi32(4));
    const __m512i i3 = _mm512_add_epi32(i0, _mm512_set1_epi32(6));
    const int64_t nb = m->kp / 32, nq = m->kp / W4A8_KBLK;
    const uint8_t *p0 = m->codes + (size_t)r * m->row_bytes, *p1 = p0 + m->row_bytes, *p2 = p1 + m->row_bytes,
                  *p3 = p2 + m->row_bytes;
    const uint16_t *s0 = m->scale + r * nb, *s1 = s0 + nb, *s2 = s1 + nb, *s3 = s2 + nb;
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
#define W4A8_CHUNK(c, idx)                                                                            \
    do {                                                                                              \
        const int64_t e = q * W4A8_KBLK + 64 * (c);                                                   \
        const __m512i av = _mm512_loadu_si512(a + e);                                                 \
        const __m512i cv = _mm512_loadu_si512(corr + e / 4);                                          \
        __m512i d0 = _mm512_dpbusd_epi32(cv, W4A8_NIBBLES(p0 + e / 2), av);                           \
        __m512i d1 = _mm512_dpbusd_epi32(cv, W4A8_NIBBLES(p1 + e / 2), av);                           \
        __m512i d2 = _mm512_dpbusd_epi32(cv, W4A8_NIBBLES(p2 + e / 2), av);                           \
        __m512i d3 = _mm512_dpbusd_epi32(cv, W4A8_NIBBLES(p3 + e / 2), av);                           \
        c0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), _mm512_permutexvar_ps(idx, f0), c0);             \
        c1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1), _mm512_permutexvar_ps(idx, f1), c1);             \
        c2 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d2), _mm512_permutexvar_ps(idx, f2), c2);             \
        c3 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d3), _mm512_permutexvar_ps(idx, f3), c3);             \
    } while (0)
    for (int64_t q = 0; q < nq; q++) {
        /* the next four rows' codes, as fast as these are read */
        _mm_prefetch((const char *)(p0 + 4 * m->row_bytes + q * 128), _MM_HINT_T0);
        _mm_prefetch((const char *)(p0 + 4 * m->row_bytes + q * 128 + 64), _MM_HINT_T0);
        const __m512 f0 = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s0 + 8 * q))));
        const __m512 f1 = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s1 + 8 * q))));
        const __m512 f2 = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s2 + 8 * q))));
        const __m512 f3 = _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s3 + 8 * q))));
        W4A8_CHUNK(0, i0);
        W4A8_CHUNK(1, i1);
        W4A8_CHUNK(2, i2);
        W4A8_CHUNK(3, i3);
    }
#undef W4A8_CHUNK
    out[0] = _mm512_reduce_add_ps(c0);
    out[1] = _mm512_reduce_add_ps(c1);
    out[2] = _mm512_reduce_add_ps(c2);
    out[3] = _mm512_reduce_add_ps(c3);
}

VNNI_TARGET static float w4a8_r1_vnni(const W4a8Matrix *m, int64_t r, const int8_t *a, const int32_t *corr) {
    const __m512i m0f = _mm512_set1_epi8(0x0F);
    const __m512i sh = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
    const __m512i i0 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const int64_t nb = m->kp / 32, nc = m->kp / 64;
    const uint8_t *p = m->codes + (size_t)r * m->row_bytes;
    const uint16_t *s = m->scale + r * nb;
    __m512 c0 = _mm512_setzero_ps(), c1 = c0;
    for (int64_t c = 0; c < nc; c += 2) { /* nc is even: kp is a multiple of 256 */
        const __m512 f = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(s + 2 * c))));
        __m512i d0 = _mm512_dpbusd_epi32(_mm512_loadu_si512(corr + 16 * c), W4A8_NIBBLES(p + 32 * c),
                                         _mm512_loadu_si512(a + 64 * c));
        __m512i d1 = _mm512_dpbusd_epi32(_mm512_loadu_si512(corr + 16 * c + 16), W4A8_NIBBLES(p + 32 * c + 32),
                                         _mm512_loadu_si512(a + 64 * c + 64));
        c0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d0), _mm512_permutexvar_ps(i0, f), c0);
        c1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1),
                             _mm512_permutexvar_ps(_mm512_add_epi32(i0, _mm512_set1_epi32(2)), f), c1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(c0, c1));
}

VNNI_TARGET static void w4a8_rows_vnni(const W4a8Matrix *m, int64_t r0, int64_t r1, const int8_t *a,
                                       const int32_t *corr, const float *sa, int64_t T, float *y) {
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4)
        for (int64_t t = 0; t < T; t++) {
            float o[4];
            w4a8_r4_vnni(m, r, a + t * m->kp, corr + t * (m->kp / 4), o);
            for (int i = 0; i < 4; i++) y[t * m->n + r + i] = sa[t] * o[i];
        }
    for (; r < r1; r++)
        for (int64_t t = 0; t < T; t++)
            y[t * m->n + r] = sa[t] * w4a8_r1_vnni(m, r, a + t * m->kp, corr + t * (m->kp / 4));
}

void w4a8_gemm_vnni(const W4a8Matrix *m, const int8_t *a, const int32_t *corr, const float *sa, int64_t T,
                    float *y, Pool *pool) {
    w4a8_run(m, a, corr, sa, T, y, pool, w4a8_rows_vnni);
}

/* === AVX2 === */

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

/* One row: per 64-input chunk the low nibbles are block 2c, the high ones
 * block 2c + 1; vpmaddubsw pairs stay within ±2·15·127. */
AVX2_TARGET static float w4a8_r1_avx2(const W4a8Matrix *m, int64_t r, const int8_t *a, const int32_t *corr) {
    const __m256i m0f = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi16(1);
    const int64_t nb = m->kp / 32, nq = m->kp / W4A8_KBLK;
    const uint8_t *p = m->codes + (size_t)r * m->row_bytes;
    const uint16_t *s = m->scale + r * nb;
    __m256 c0 = _mm256_setzero_ps(), c1 = c0;
    for (int64_t q = 0; q < nq; q++) {
        const __m256 f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 8 * q)));
        for (int c = 0; c < 4; c++) {
            const int64_t e = q * W4A8_KBLK + 64 * c;
            __m256i v = _mm256_loadu_si256((const __m256i *)(p + e / 2));
            __m256i lo = _mm256_and_si256(v, m0f), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m0f);
            __m256i d0 = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(a + e))), one),
                                          _mm256_loadu_si256((const __m256i *)(corr + e / 4)));
            __m256i d1 = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a + e + 32))), one),
                                          _mm256_loadu_si256((const __m256i *)(corr + e / 4 + 8)));
            c0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0), _mm256_permutevar8x32_ps(f, _mm256_set1_epi32(2 * c)), c0);
            c1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1), _mm256_permutevar8x32_ps(f, _mm256_set1_epi32(2 * c + 1)), c1);
        }
    }
    __m256 c = _mm256_add_ps(c0, c1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

AVX2_TARGET static void w4a8_rows_avx2(const W4a8Matrix *m, int64_t r0, int64_t r1, const int8_t *a,
                                       const int32_t *corr, const float *sa, int64_t T, float *y) {
    for (int64_t r = r0; r < r1; r++)
        for (int64_t t = 0; t < T; t++)
            y[t * m->n + r] = sa[t] * w4a8_r1_avx2(m, r, a + t * m->kp, corr + t * (m->kp / 4));
}

void w4a8_gemm_avx2(const W4a8Matrix *m, const int8_t *a, const int32_t *corr, const float *sa, int64_t T,
                    float *y, Pool *pool) {
    w4a8_run(m, a, corr, sa, T, y, pool, w4a8_rows_avx2);
}

/* === dispatch === */

static void w4a8_rows_ref(const W4a8Matrix *m, int64_t r0, int64_t r1, const int8_t *a, const int32_t *corr,
                          const float *sa, int64_t T, float *y) {
    (void)corr;
    /* the twin over a row range: a view of rows [r0, r1) written into a (T, r1 - r0) scratch would
     * cost a copy; instead run it row by row on a one-row matrix view */
    for (int64_t r = r0; r < r1; r++) {
        W4a8Matrix v = *m;
        v.n = 1;
        v.codes = m->codes + (size_t)r * m->row_bytes;
        v.scale = m->scale + r * (m->kp / 32);
        for (int64_t t = 0; t < T; t++) w4a8_gemm_ref(&v, a + t * m->kp, sa + t, 1, y + t * m->n + r);
    }
}

void w4a8_gemm(const W4a8Matrix *m, const int8_t *a, const int32_t *corr, const float *sa, int64_t T, float *y,
               Pool *pool) {
    if (cpu_has_avx512_vnni() && cpu_has_f16c()) w4a8_run(m, a, corr, sa, T, y, pool, w4a8_rows_vnni);
    else if (cpu_has_avx2() && cpu_has_f16c()) w4a8_run(m, a, corr, sa, T, y, pool, w4a8_rows_avx2);
    else w4a8_run(m, a, corr, sa, T, y, pool, w4a8_rows_ref);
}

const char *w4a8_path_name(void) {
    if (cpu_has_avx512_vnni() && cpu_has_f16c()) return "vnni";
    if (cpu_has_avx2() && cpu_has_f16c()) return "avx2";
    return "scalar";
}
