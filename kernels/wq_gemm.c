#include "kernels/wq_gemm.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/assert.h"
#include "core/scratch.h"
#include "kernels/cpu.h"
#include "kernels/f16_gemm.h"
#include "kernels/f32gemm.h"
#include "kernels/fp8_gemm.h"
#include "kernels/sgemm.h"
#include "kernels/simd.h"
#include "kernels/wq_rowdot.h"

/* === code traits === */

static const struct {
    int64_t elems;
    size_t bytes;
    int bits;
} wq_traits[WQ_CODE_COUNT] = {
    [WQ_U8] = {32, 32, 8},    [WQ_U4] = {32, 16, 4},    [WQ_U3] = {64, 24, 3},
    [WQ_U2] = {64, 16, 2},    [WQ_E4M3] = {32, 32, 8},  [WQ_E5M2] = {32, 32, 8},
    [WQ_F16] = {32, 64, 16},  [WQ_BF16] = {32, 64, 16}, [WQ_F32] = {16, 64, 32},
    [WQ_BLOCKS] = {1, 0, 0}, /* per matrix: see wqmat_pack_blocks */
};

int64_t wq_block_elems(WqCode c) { return wq_traits[c].elems; }
size_t wq_block_bytes(WqCode c) { return wq_traits[c].bytes; }
int wq_code_bits(WqCode c) { return wq_traits[c].bits; }

static int wq_is_int(WqCode c) { return c <= WQ_U2; }

/* === packing === */

static Status wq_alloc(WqMatrix *m, WqCode code, int64_t n, int64_t k, WqGroup gdim, int64_t group, Err *err) {
    memset(m, 0, sizeof *m);
    if (n <= 0 || k <= 0) return err_set(err, ST_ERR_ARG, "weight-only matrix: bad shape (%lld, %lld)", (long long)n, (long long)k);
    if (group < 0) return err_set(err, ST_ERR_ARG, "weight-only matrix: negative group size %lld", (long long)group);
    int64_t ng = 0;
    switch (gdim) {
    case WQ_GROUP_TENSOR: ng = 1; break;
    case WQ_GROUP_OC:
        if (group && k % group)
            return err_set(err, ST_ERR_ARG, "group %lld does not divide the input dim %lld", (long long)group, (long long)k);
        ng = n * (group ? k / group : 1);
        break;
    case WQ_GROUP_IC:
        if (group && n % group)
            return err_set(err, ST_ERR_ARG, "group %lld does not divide the output dim %lld", (long long)group, (long long)n);
        ng = (group ? n / group : 1) * k;
        break;
    case WQ_GROUP_NONE: ng = 0; break;
    default: return err_set(err, ST_ERR_ARG, "weight-only matrix: unknown grouping %d", (int)gdim);
    }
    int64_t be = wq_traits[code].elems;
    m->code = code;
    m->n = n;
    m->k = k;
    m->kp = (k + be - 1) / be * be;
    m->row_bytes = ((size_t)(m->kp / be) * wq_traits[code].bytes + 63) & ~(size_t)63;
    m->gdim = gdim;
    m->group = group;
    m->n_groups = ng;
    m->codes = core_alloc_aligned((size_t)n, m->row_bytes);
    if (ng) m->scale = core_calloc((size_t)ng, sizeof *m->scale);
    if (ng && wq_is_int(code)) m->zero = core_calloc((size_t)ng, sizeof *m->zero);
    if (!m->codes || (ng && !m->scale) || (ng && wq_is_int(code) && !m->zero)) {
        wqmat_done(m);
        return err_set(err, ST_ERR_NOMEM, "weight-only matrix (%lld, %lld)", (long long)n, (long long)k);
    }
    memset(m->codes, 0, (size_t)n * m->row_bytes);
    return ST_OK;
}

void wqmat_done(WqMatrix *m) {
    core_free_aligned(m->codes);
    free(m->scale);
    free(m->zero);
    memset(m, 0, sizeof *m);
}

size_t wqmat_code_bytes(const WqMatrix *m) { return (size_t)m->n * m->row_bytes; }

/* Stores unsigned code u of element i in a packed integer row. */
static void wq_put_int(WqCode code, uint8_t *row, int64_t i, unsigned u) {
    int64_t blk, j;
    switch (code) {
    case WQ_U8: row[i] = (uint8_t)u; break;
    case WQ_U4:
        blk = i / 32, j = i % 32;
        row[blk * 16 + j % 16] |= (uint8_t)(u << (4 * (j / 16)));
        break;
    case WQ_U2:
        blk = i / 64, j = i % 64;
        row[blk * 16 + j % 16] |= (uint8_t)(u << (2 * (j / 16)));
        break;
    case WQ_U3:
        blk = i / 64, j = i % 64;
        row[blk * 24 + j % 16] |= (uint8_t)((u & 3) << (2 * (j / 16)));
        row[blk * 24 + 16 + j % 8] |= (uint8_t)(((u >> 2) & 1) << (j / 16 + 4 * ((j % 16) / 8)));
        break;
    default: break;
    }
}

/* Reads unsigned code of element i back (the scalar decoder). */
static unsigned wq_get_int(WqCode code, const uint8_t *row, int64_t i) {
    int64_t blk, j;
    switch (code) {
    case WQ_U8: return row[i];
    case WQ_U4:
        blk = i / 32, j = i % 32;
        return (row[blk * 16 + j % 16] >> (4 * (j / 16))) & 15u;
    case WQ_U2:
        blk = i / 64, j = i % 64;
        return (row[blk * 16 + j % 16] >> (2 * (j / 16))) & 3u;
    case WQ_U3:
        blk = i / 64, j = i % 64;
        return ((row[blk * 24 + j % 16] >> (2 * (j / 16))) & 3u) |
               (((row[blk * 24 + 16 + j % 8] >> (j / 16 + 4 * ((j % 16) / 8))) & 1u) << 2);
    default: return 0;
    }
}

Status wqmat_pack_int(const int8_t *q, int bits, int store_bits, int64_t n, int64_t k, WqGroup gdim,
                      int64_t group, const float *scale, const float *zero, WqMatrix *out, Err *err) {
    WqCode code;
    memset(out, 0, sizeof *out);
    if (bits < 2 || bits > store_bits)
        return err_set(err, ST_ERR_ARG, "weight-only: int%d codes in %d-bit storage", bits, store_bits);
    switch (store_bits) {
    case 8: code = WQ_U8; break;
    case 4: code = WQ_U4; break;
    case 3: code = WQ_U3; break;
    case 2: code = WQ_U2; break;
    default: return err_set(err, ST_ERR_ARG, "weight-only: no %d-bit integer storage (8, 4, 3, 2)", store_bits);
    }
    if (gdim == WQ_GROUP_NONE) return err_set(err, ST_ERR_ARG, "weight-only: integer codes need scales");
    Status st = wq_alloc(out, code, n, k, gdim, group, err);
    if (st) return st;
    int half = 1 << (bits - 1), shalf = 1 << (store_bits - 1);
    out->sym = zero == NULL;
    for (int64_t o = 0; o < n; o++) {
        uint8_t *row = out->codes + (size_t)o * out->row_bytes;
        for (int64_t i = 0; i < k; i++) {
            int u = q[o * k + i] + half;
            if (u < 0 || u >= 2 * half || (zero == NULL && u == 0)) {
                wqmat_done(out);
                return err_set(err, ST_ERR_RANGE, "weight-only: code %d at (%lld, %lld) outside %s int%d",
                               q[o * k + i], (long long)o, (long long)i, zero ? "asymmetric" : "symmetric", bits);
            }
            /* symmetric codes are centred on the storage's half, which the
             * decoder subtracts (int5 in 8-bit storage: u = q + 128) */
            if (zero == NULL) u = q[o * k + i] + shalf;
            wq_put_int(code, row, i, (unsigned)u);
        }
    }
    for (int64_t g = 0; g < out->n_groups; g++) {
        out->scale[g] = scale[g];
        float z = zero ? zero[g] : (float)shalf;
        if (zero && (!(z >= 0.0f && z <= (float)(2 * half - 1)) || z != floorf(z))) {
            wqmat_done(out);
            return err_set(err, ST_ERR_RANGE, "weight-only: zero point %g of group %lld is not an integer in [0, %d]",
                           (double)z, (long long)g, 2 * half - 1);
        }
        out->zero[g] = z;
    }
    return ST_OK;
}

Status wqmat_pack_fp8(const uint8_t *f8, int e5m2, int64_t n, int64_t k, WqGroup gdim, int64_t group,
                      const float *scale, WqMatrix *out, Err *err) {
    if (gdim == WQ_GROUP_NONE) return err_set(err, ST_ERR_ARG, "weight-only: fp8 codes need scales");
    Status st = wq_alloc(out, e5m2 ? WQ_E5M2 : WQ_E4M3, n, k, gdim, group, err);
    if (st) return st;
    const float *lut = fp8_lut(e5m2);
    for (int64_t o = 0; o < n; o++) {
        for (int64_t i = 0; i < k; i++) {
            uint8_t c = f8[o * k + i];
            if (isnan(lut[c])) {
                wqmat_done(out);
                return err_set(err, ST_ERR_RANGE, "weight-only: fp8 NaN code 0x%02x at (%lld, %lld)", c,
                               (long long)o, (long long)i);
            }
        }
        memcpy(out->codes + (size_t)o * out->row_bytes, f8 + o * k, (size_t)k);
    }
    memcpy(out->scale, scale, (size_t)out->n_groups * sizeof *scale);
    return ST_OK;
}

Status wqmat_pack_f16(const uint16_t *h, int bf16, int64_t n, int64_t k, WqMatrix *out, Err *err) {
    Status st = wq_alloc(out, bf16 ? WQ_BF16 : WQ_F16, n, k, WQ_GROUP_NONE, 0, err);
    if (st) return st;
    for (int64_t o = 0; o < n; o++) memcpy(out->codes + (size_t)o * out->row_bytes, h + o * k, (size_t)k * 2);
    return ST_OK;
}

Status wqmat_pack_f32(const float *w, int64_t n, int64_t k, WqMatrix *out, Err *err) {
    Status st = wq_alloc(out, WQ_F32, n, k, WQ_GROUP_NONE, 0, err);
    if (st) return st;
    for (int64_t o = 0; o < n; o++) memcpy(out->codes + (size_t)o * out->row_bytes, w + o * k, (size_t)k * 4);
    return ST_OK;
}

Status wqmat_pack_blocks(const uint8_t *blocks, size_t src_row_bytes, int64_t block_elems, WqRowDecodeFn decode,
                         BlockDotFn dot, int64_t n, int64_t k, WqMatrix *out, Err *err) {
    memset(out, 0, sizeof *out);
    if (n <= 0 || k <= 0 || block_elems <= 0 || k % block_elems || !decode || !src_row_bytes)
        return err_set(err, ST_ERR_ARG, "block matrix (%lld, %lld): rows must be whole blocks of %lld", (long long)n,
                       (long long)k, (long long)block_elems);
    out->code = WQ_BLOCKS;
    out->n = n;
    out->k = k;
    out->kp = k;
    out->row_bytes = (src_row_bytes + 63) & ~(size_t)63;
    out->gdim = WQ_GROUP_NONE;
    out->decode = decode;
    out->dot = dot;
    out->codes = core_alloc_aligned((size_t)n, out->row_bytes);
    if (!out->codes) return err_set(err, ST_ERR_NOMEM, "block matrix (%lld, %lld)", (long long)n, (long long)k);
    for (int64_t o = 0; o < n; o++) {
        uint8_t *row = out->codes + (size_t)o * out->row_bytes;
        memcpy(row, blocks + (size_t)o * src_row_bytes, src_row_bytes);
        memset(row + src_row_bytes, 0, out->row_bytes - src_row_bytes);
    }
    return ST_OK;
}

/* === exact dequantization (reference semantics) === */

static int64_t wq_group_of(const WqMatrix *m, int64_t o, int64_t i) {
    switch (m->gdim) {
    case WQ_GROUP_TENSOR: return 0;
    case WQ_GROUP_OC: return m->group ? o * (m->k / m->group) + i / m->group : o;
    case WQ_GROUP_IC: return m->group ? (o / m->group) * m->k + i : i;
    default: return -1;
    }
}

/* U3 third bits of the block at p at bits 2-5 of each lane (layout in
 * kernels/wq_gemm.h; see U3_DOT_ZS below). */
#define U3_HIGH2(p)                                                                                       \
    _mm512_slli_epi32(_mm512_srlv_epi32(_mm512_cvtepu8_epi32(_mm_castpd_si128(_mm_loaddup_pd((const double *)(const void *)((p) + 16)))), \
                                        _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4)), 2)

/* Unsigned integer codes of a packed row to floats, 16 lanes at a time. */
QS_TARGET_AVX512 static void wq_decode_int_avx512(WqCode code, const uint8_t *row, int64_t k, float *v) {
    const __m512 id = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i three = _mm512_set1_epi32(3), seven = _mm512_set1_epi32(7);
    int64_t be = wq_traits[code].elems, nb = k / be, i = 0;
    for (int64_t b = 0; b < nb; b++, i += be) {
        const uint8_t *p = row + (size_t)b * wq_traits[code].bytes;
        __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
        switch (code) {
        case WQ_U8:
            _mm512_storeu_ps(v + i, _mm512_cvtepi32_ps(c));
            _mm512_storeu_ps(v + i + 16, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 16)))));
            break;
        case WQ_U4:
            _mm512_storeu_ps(v + i, _mm512_permutexvar_ps(c, id));
            _mm512_storeu_ps(v + i + 16, _mm512_permutexvar_ps(_mm512_srli_epi32(c, 4), id));
            break;
        case WQ_U2:
            for (int t = 0; t < 4; t++)
                _mm512_storeu_ps(v + i + 16 * t, _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(c, _mm512_set1_epi32(2 * t)), three)));
            break;
        default: { /* U3 */
            __m512i h2 = U3_HIGH2(p);
            for (int t = 0; t < 4; t++) {
                __m512i e = _mm512_ternarylogic_epi32(_mm512_srlv_epi32(c, _mm512_set1_epi32(2 * t)),
                                                      _mm512_srlv_epi32(h2, _mm512_set1_epi32(t)), three, 0xE4);
                _mm512_storeu_ps(v + i + 16 * t, _mm512_cvtepi32_ps(_mm512_and_si512(e, seven)));
            }
            break;
        }
        }
    }
    for (; i < k; i++) v[i] = (float)wq_get_int(code, row, i);
}

/* w = (v - z) · s over n elements with one (s, z) or per-element arrays. */
QS_TARGET_AVX512 static void wq_scale_avx512(float *w, int64_t n, const float *s, const float *z, int per_elem) {
    int64_t i = 0;
    if (per_elem) {
        for (; i + 16 <= n; i += 16) {
            __m512 v = _mm512_loadu_ps(w + i);
            if (z) v = _mm512_sub_ps(v, _mm512_loadu_ps(z + i));
            _mm512_storeu_ps(w + i, _mm512_mul_ps(v, _mm512_loadu_ps(s + i)));
        }
        for (; i < n; i++) w[i] = z ? (w[i] - z[i]) * s[i] : w[i] * s[i];
        return;
    }
    const __m512 vs = _mm512_set1_ps(*s), vz = _mm512_set1_ps(z ? *z : 0.0f);
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(w + i);
        if (z) v = _mm512_sub_ps(v, vz);
        _mm512_storeu_ps(w + i, _mm512_mul_ps(v, vs));
    }
    for (; i < n; i++) w[i] = z ? (w[i] - *z) * *s : w[i] * *s;
}

/* w = (v - z) · s over a row of k elements with groups of glen (16 % glen
 * == 0) consecutive elements sharing s[g], z[g] (z may be NULL). */
QS_TARGET_AVX512 static void wq_scale_small_avx512(float *w, int64_t k, int64_t glen, const float *s, const float *z) {
    int sh = glen == 1 ? 0 : glen == 2 ? 1 : glen == 4 ? 2 : 3;
    const __m512i idx = _mm512_srli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), (unsigned)sh);
    int64_t i = 0, per = 16 >> sh; /* groups per 16 lanes */
    for (; i + 16 <= k; i += 16) {
        __mmask16 mk = (__mmask16)((1u << per) - 1);
        __m512 vs = _mm512_permutexvar_ps(idx, _mm512_maskz_loadu_ps(mk, s + (i >> sh)));
        __m512 v = _mm512_loadu_ps(w + i);
        if (z) v = _mm512_sub_ps(v, _mm512_permutexvar_ps(idx, _mm512_maskz_loadu_ps(mk, z + (i >> sh))));
        _mm512_storeu_ps(w + i, _mm512_mul_ps(v, vs));
    }
    for (; i < k; i++) w[i] = z ? (w[i] - z[i >> sh]) * s[i >> sh] : w[i] * s[i >> sh];
}

/* Σ w·x over n floats, 16 lanes (the row-dequant GEMV's dot). */
QS_TARGET_AVX512 static float wq_dot_avx512(const float *w, const float *x, int64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, w + i), _mm512_maskz_loadu_ps(mk, x + i), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* The AVX2 twins of the three above: the same operations per element (a
 * conversion, one subtraction, one rounding multiply), so the dequantized
 * rows are bit for bit the scalar ones; the dot sums in another order. */
QS_TARGET_AVX2 static void wq_decode_int_avx2(WqCode code, const uint8_t *row, int64_t k, float *v) {
    const __m256i three = _mm256_set1_epi32(3), fifteen = _mm256_set1_epi32(15), one = _mm256_set1_epi32(1);
    int64_t be = wq_traits[code].elems, nb = k / be, i = 0;
    for (int64_t b = 0; b < nb; b++, i += be) {
        const uint8_t *p = row + (size_t)b * wq_traits[code].bytes;
        __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
        __m256i hi = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8)));
        switch (code) {
        case WQ_U8:
            _mm256_storeu_ps(v + i, _mm256_cvtepi32_ps(lo));
            _mm256_storeu_ps(v + i + 8, _mm256_cvtepi32_ps(hi));
            _mm256_storeu_ps(v + i + 16, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 16)))));
            _mm256_storeu_ps(v + i + 24, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 24)))));
            break;
        case WQ_U4:
            _mm256_storeu_ps(v + i, _mm256_cvtepi32_ps(_mm256_and_si256(lo, fifteen)));
            _mm256_storeu_ps(v + i + 8, _mm256_cvtepi32_ps(_mm256_and_si256(hi, fifteen)));
            _mm256_storeu_ps(v + i + 16, _mm256_cvtepi32_ps(_mm256_srli_epi32(lo, 4)));
            _mm256_storeu_ps(v + i + 24, _mm256_cvtepi32_ps(_mm256_srli_epi32(hi, 4)));
            break;
        case WQ_U2:
            for (int t = 0; t < 4; t++) {
                __m128i sh = _mm_cvtsi32_si128(2 * t);
                _mm256_storeu_ps(v + i + 16 * t, _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(lo, sh), three)));
                _mm256_storeu_ps(v + i + 16 * t + 8, _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(hi, sh), three)));
            }
            break;
        default: { /* U3 */
            __m256i h = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 16)));
            for (int t = 0; t < 4; t++) {
                __m128i sh = _mm_cvtsi32_si128(2 * t), st = _mm_cvtsi32_si128(t), st4 = _mm_cvtsi32_si128(4 + t);
                __m256i e0 = _mm256_or_si256(_mm256_and_si256(_mm256_srl_epi32(lo, sh), three),
                                             _mm256_slli_epi32(_mm256_and_si256(_mm256_srl_epi32(h, st), one), 2));
                __m256i e1 = _mm256_or_si256(_mm256_and_si256(_mm256_srl_epi32(hi, sh), three),
                                             _mm256_slli_epi32(_mm256_and_si256(_mm256_srl_epi32(h, st4), one), 2));
                _mm256_storeu_ps(v + i + 16 * t, _mm256_cvtepi32_ps(e0));
                _mm256_storeu_ps(v + i + 16 * t + 8, _mm256_cvtepi32_ps(e1));
            }
            break;
        }
        }
    }
    for (; i < k; i++) v[i] = (float)wq_get_int(code, row, i);
}

QS_TARGET_AVX2 static void wq_scale_avx2(float *w, int64_t n, const float *s, const float *z, int per_elem) {
    int64_t i = 0;
    if (per_elem) {
        for (; i + 8 <= n; i += 8) {
            __m256 v = _mm256_loadu_ps(w + i);
            if (z) v = _mm256_sub_ps(v, _mm256_loadu_ps(z + i));
            _mm256_storeu_ps(w + i, _mm256_mul_ps(v, _mm256_loadu_ps(s + i)));
        }
        for (; i < n; i++) w[i] = z ? (w[i] - z[i]) * s[i] : w[i] * s[i];
        return;
    }
    const __m256 vs = _mm256_set1_ps(*s), vz = _mm256_set1_ps(z ? *z : 0.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(w + i);
        if (z) v = _mm256_sub_ps(v, vz);
        _mm256_storeu_ps(w + i, _mm256_mul_ps(v, vs));
    }
    for (; i < n; i++) w[i] = z ? (w[i] - *z) * *s : w[i] * *s;
}

QS_TARGET_AVX2 static float wq_dot_avx2(const float *w, const float *x, int64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    __m256 a = _mm256_add_ps(a0, a1);
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    float sum = _mm_cvtss_f32(r);
    for (; i < n; i++) sum += w[i] * x[i];
    return sum;
}

/* Decoded (unscaled) values v of row o: integer code, fp8/fp16 value. */
static void wq_decode_row(const WqMatrix *m, int64_t o, float *v, int fast) {
    const uint8_t *row = m->codes + (size_t)o * m->row_bytes;
    switch (m->code) {
    case WQ_E4M3:
    case WQ_E5M2:
        if (fast == 2) fp8_decode_avx512(row, m->k, m->code == WQ_E5M2, v);
        else fp8_decode_ref(row, m->k, m->code == WQ_E5M2, v);
        break;
    case WQ_F16:
    case WQ_BF16:
        if (fast == 2) f16_decode_avx512((const uint16_t *)(const void *)row, m->k, m->code == WQ_BF16, v);
        else if (fast == 1) f16_decode(row, m->k, m->code == WQ_BF16, v); /* AVX2 + F16C where present */
        else f16_decode_ref((const uint16_t *)(const void *)row, m->k, m->code == WQ_BF16, v);
        break;
    case WQ_F32: memcpy(v, row, (size_t)m->k * 4); break;
    case WQ_BLOCKS: m->decode(row, v, m->k); break;
    default:
        if (fast == 2) wq_decode_int_avx512(m->code, row, m->k, v);
        else if (fast == 1) wq_decode_int_avx2(m->code, row, m->k, v);
        else
            for (int64_t i = 0; i < m->k; i++) v[i] = (float)wq_get_int(m->code, row, i);
        break;
    }
}

/* fast: 2 AVX-512, 1 AVX2, 0 scalar (the same values at every level). */
static void wq_dequant_row(const WqMatrix *m, int64_t o, float *w, int fast) {
    wq_decode_row(m, o, w, fast);
    if (m->gdim == WQ_GROUP_NONE) return;
    const int64_t k = m->k;
    const int is_int = wq_is_int(m->code);
    if (m->gdim == WQ_GROUP_IC) {
        const float *s = m->scale + wq_group_of(m, o, 0);
        const float *z = is_int ? m->zero + wq_group_of(m, o, 0) : NULL;
        if (fast == 2) wq_scale_avx512(w, k, s, z, 1);
        else if (fast == 1) wq_scale_avx2(w, k, s, z, 1);
        else if (is_int) for (int64_t i = 0; i < k; i++) w[i] = (w[i] - z[i]) * s[i];
        else for (int64_t i = 0; i < k; i++) w[i] = w[i] * s[i];
        return;
    }
    /* TENSOR, or OC with runs of glen inputs sharing (s, z) */
    int64_t glen = (m->gdim == WQ_GROUP_OC && m->group) ? m->group : k;
    if (fast == 2 && glen < 16 && 16 % glen == 0) {
        /* small groups (g = 1, 2, 4, 8): spread each group's (s, z) over its lanes */
        int64_t gpr = k / glen;
        wq_scale_small_avx512(w, k, glen, m->scale + o * gpr, is_int ? m->zero + o * gpr : NULL);
        return;
    }
    for (int64_t i0 = 0; i0 < k; i0 += glen) {
        int64_t g = wq_group_of(m, o, i0);
        const float *s = m->scale + g, *z = is_int ? m->zero + g : NULL;
        if (fast == 2) wq_scale_avx512(w + i0, glen, s, z, 0);
        else if (fast == 1) wq_scale_avx2(w + i0, glen, s, z, 0);
        else
            for (int64_t i = i0; i < i0 + glen; i++) w[i] = z ? (w[i] - *z) * *s : w[i] * *s;
    }
}

/* The dequantization level wq_dequant_row takes on this CPU. */
static int wq_fast_level(void) { return cpu_has_avx512f() ? 2 : cpu_has_avx2() ? 1 : 0; }

void wqmat_dequant_rows(const WqMatrix *m, int64_t r0, int64_t r1, float *out) {
    int fast = wq_fast_level();
    for (int64_t o = r0; o < r1; o++) wq_dequant_row(m, o, out + (o - r0) * m->k, fast);
}

void wq_gemv_ref(const WqMatrix *m, const float *x, float *y) {
    float *w = malloc((size_t)m->k * sizeof *w);
    ASSERT(w != NULL);
    for (int64_t o = 0; o < m->n; o++) {
        wq_dequant_row(m, o, w, 0);
        double s = 0;
        for (int64_t i = 0; i < m->k; i++) s += (double)w[i] * x[i];
        y[o] = (float)s;
    }
    free(w);
}

/* === AVX-512 GEMV === */

/* Block decoders. Symmetric matrices decode centred values u - 2^(bits-1)
 * directly (ZS = the offset), so no zero-point term is subtracted afterwards
 * (that subtraction cancels and would cost accuracy on near-zero rows);
 * asymmetric ones decode u (ZS = 0) and the driver subtracts Σ s·z·x.
 * vpermps reads only the low 4 bits of each index lane, so one permute of a
 * 16-entry table masks and converts a nibble (or a bit pair) at once. */
#define WQ_LUT16(ZS, MASK)                                                                                 \
    _mm512_sub_ps(_mm512_setr_ps((0 & MASK), (1 & MASK), (2 & MASK), (3 & MASK), (4 & MASK), (5 & MASK),   \
                                 (6 & MASK), (7 & MASK), (8 & MASK), (9 & MASK), (10 & MASK), (11 & MASK),  \
                                 (12 & MASK), (13 & MASK), (14 & MASK), (15 & MASK)),                       \
                  _mm512_set1_ps((float)(ZS)))

/* 32 u8 codes in 32 bytes. */
#define U8_DOT_ZS(p, xb, a, b, ZS)                                                                        \
    do {                                                                                                  \
        __m512i v0_ = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)));                        \
        __m512i v1_ = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)((p) + 16)));                 \
        if (ZS) {                                                                                         \
            v0_ = _mm512_sub_epi32(v0_, _mm512_set1_epi32(ZS));                                           \
            v1_ = _mm512_sub_epi32(v1_, _mm512_set1_epi32(ZS));                                           \
        }                                                                                                 \
        a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v0_), _mm512_loadu_ps(xb), a);                             \
        b = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v1_), _mm512_loadu_ps((xb) + 16), b);                      \
    } while (0)
/* 32 nibbles in 16 bytes: low nibbles are elements 0-15, high 16-31. */
#define U4_DOT_ZS(p, xb, a, b, ZS)                                                                        \
    do {                                                                                                  \
        const __m512 lut_ = WQ_LUT16(ZS, 15);                                                             \
        __m512i v_ = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)));                         \
        a = _mm512_fmadd_ps(_mm512_permutexvar_ps(v_, lut_), _mm512_loadu_ps(xb), a);                     \
        b = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v_, 4), lut_), _mm512_loadu_ps((xb) + 16), b); \
    } while (0)
/* 64 bit pairs in 16 bytes: pair t of byte j is element j + 16t. */
#define U2_DOT_ZS(p, xb, a, b, ZS)                                                                        \
    do {                                                                                                  \
        const __m512 lut_ = WQ_LUT16(ZS, 3);                                                              \
        __m512i v_ = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)));                         \
        a = _mm512_fmadd_ps(_mm512_permutexvar_ps(v_, lut_), _mm512_loadu_ps(xb), a);                     \
        b = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v_, 2), lut_), _mm512_loadu_ps((xb) + 16), b); \
        a = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v_, 4), lut_), _mm512_loadu_ps((xb) + 32), a); \
        b = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v_, 6), lut_), _mm512_loadu_ps((xb) + 48), b); \
    } while (0)
/* U3: the U2 layout for the low two bits (16 bytes), then 8 bytes of third
 * bits: byte j holds, in bit t, element j + 16t's and, in bit 4 + t, element
 * j + 8 + 16t's. U3_HIGH2 puts lane j's four third bits at bits 2-5 (the
 * 8 bytes duplicated into 16, lanes 8-15 shifted down a nibble); then for
 * row part t, (low >> 2t) selects bits 0-1 and (high2 >> t) bit 2 in one
 * vpternlogd (C ? A : B per bit with C = 3). Bit 3 of the index is garbage
 * the 16-entry table ignores (entries depend on i & 7). */
#define U3_IDX(v_, h2_, t) \
    _mm512_ternarylogic_epi32(_mm512_srli_epi32(v_, 2 * (t)), _mm512_srli_epi32(h2_, (t)), _mm512_set1_epi32(3), 0xE4)
#define U3_DOT_ZS(p, xb, a, b, ZS)                                                                        \
    do {                                                                                                  \
        const __m512 lut_ = WQ_LUT16(ZS, 7);                                                              \
        __m512i v_ = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)));                         \
        __m512i h2_ = U3_HIGH2(p);                                                                        \
        a = _mm512_fmadd_ps(_mm512_permutexvar_ps(U3_IDX(v_, h2_, 0), lut_), _mm512_loadu_ps(xb), a);     \
        b = _mm512_fmadd_ps(_mm512_permutexvar_ps(U3_IDX(v_, h2_, 1), lut_), _mm512_loadu_ps((xb) + 16), b); \
        a = _mm512_fmadd_ps(_mm512_permutexvar_ps(U3_IDX(v_, h2_, 2), lut_), _mm512_loadu_ps((xb) + 32), a); \
        b = _mm512_fmadd_ps(_mm512_permutexvar_ps(U3_IDX(v_, h2_, 3), lut_), _mm512_loadu_ps((xb) + 48), b); \
    } while (0)

#define U8S_DOT(p, xb, a, b) U8_DOT_ZS(p, xb, a, b, 128)
#define U8A_DOT(p, xb, a, b) U8_DOT_ZS(p, xb, a, b, 0)
#define U4S_DOT(p, xb, a, b) U4_DOT_ZS(p, xb, a, b, 8)
#define U4A_DOT(p, xb, a, b) U4_DOT_ZS(p, xb, a, b, 0)
#define U3S_DOT(p, xb, a, b) U3_DOT_ZS(p, xb, a, b, 4)
#define U3A_DOT(p, xb, a, b) U3_DOT_ZS(p, xb, a, b, 0)
#define U2S_DOT(p, xb, a, b) U2_DOT_ZS(p, xb, a, b, 2)
#define U2A_DOT(p, xb, a, b) U2_DOT_ZS(p, xb, a, b, 0)

WQ_ROWDOT_DEFINE(rowdot_u8s, 32, 32, U8S_DOT)
WQ_ROWDOT_DEFINE(rowdot_u8a, 32, 32, U8A_DOT)
WQ_ROWDOT_DEFINE(rowdot_u4s, 32, 16, U4S_DOT)
WQ_ROWDOT_DEFINE(rowdot_u4a, 32, 16, U4A_DOT)
WQ_ROWDOT_DEFINE(rowdot_u3s, 64, 24, U3S_DOT)
WQ_ROWDOT_DEFINE(rowdot_u3a, 64, 24, U3A_DOT)
WQ_ROWDOT_DEFINE(rowdot_u2s, 64, 16, U2S_DOT)
WQ_ROWDOT_DEFINE(rowdot_u2a, 64, 16, U2A_DOT)

/* Table-decoded codes (U4, U3, U2) under OC or tensor grouping: each row's
 * 16-entry table holds the group's dequantized values s·((i & MASK) - z),
 * computed like qtensor_dequant (one subtraction, one rounding multiply),
 * so the permute yields the exact dequantized weight and the FMAs only add
 * the usual summation-order error — no per-group scale step and no
 * zero-point term. Rows as in kernels/wq_rowdot.h; gs/gz are row 0's group
 * scales and zero points, gstride the groups per row (0: one for all). */
typedef void (*WqLutDotFn)(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk,
                           int64_t gblk, const float *gs, const float *gz, int64_t gstride, float *out);

#define WQ_ID16(MASK)                                                                                      \
    _mm512_setr_ps((0 & MASK), (1 & MASK), (2 & MASK), (3 & MASK), (4 & MASK), (5 & MASK), (6 & MASK),     \
                   (7 & MASK), (8 & MASK), (9 & MASK), (10 & MASK), (11 & MASK), (12 & MASK), (13 & MASK),  \
                   (14 & MASK), (15 & MASK))
#define WQ_GROUP_LUT(id, gs, gz, i) _mm512_mul_ps(_mm512_sub_ps(id, _mm512_set1_ps((gz)[i])), _mm512_set1_ps((gs)[i]))

#define U4_LDOT(p, xb, a, b, lut)                                                                          \
    do {                                                                                                   \
        __m512i v_ = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)));                          \
        a = _mm512_fmadd_ps(_mm512_permutexvar_ps(v_, lut), _mm512_loadu_ps(xb), a);                       \
        b = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v_, 4), lut), _mm512_loadu_ps((xb) + 16), b); \
    } while (0)
#define U2_LDOT(p, xb, a, b, lut)                                                                          \
    do {                                                                                                   \
        __m512i v_ = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)));                          \
        a = _mm512_fmadd_ps(_mm512_permutexvar_ps(v_, lut), _mm512_loadu_ps(xb), a);                       \
        b = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v_, 2), lut), _mm512_loadu_ps((xb) + 16), b); \
        a = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v_, 4), lut), _mm512_loadu_ps((xb) + 32), a); \
        b = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v_, 6), lut), _mm512_loadu_ps((xb) + 48), b); \
    } while (0)
#define U3_LDOT(p, xb, a, b, lut)                                                                          \
    do {                                                                                                   \
        __m512i v_ = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p)));                          \
        __m512i h2_ = U3_HIGH2(p);                                                                         \
        a = _mm512_fmadd_ps(_mm512_permutexvar_ps(U3_IDX(v_, h2_, 0), lut), _mm512_loadu_ps(xb), a);       \
        b = _mm512_fmadd_ps(_mm512_permutexvar_ps(U3_IDX(v_, h2_, 1), lut), _mm512_loadu_ps((xb) + 16), b); \
        a = _mm512_fmadd_ps(_mm512_permutexvar_ps(U3_IDX(v_, h2_, 2), lut), _mm512_loadu_ps((xb) + 32), a); \
        b = _mm512_fmadd_ps(_mm512_permutexvar_ps(U3_IDX(v_, h2_, 3), lut), _mm512_loadu_ps((xb) + 48), b); \
    } while (0)

#define WQ_LUTDOT_DEFINE(NAME, BLK, BBYTES, MASK, LDOT)                                                    \
    QS_TARGET_AVX512 static void NAME##_r4(const uint8_t *rows, size_t row_bytes, const float *x,          \
                                           int64_t nblk, int64_t gblk, const float *gs, const float *gz,   \
                                           int64_t gstride, float *out) {                                  \
        const __m512 id = WQ_ID16(MASK);                                                                   \
        const uint8_t *p0 = rows, *p1 = rows + row_bytes, *p2 = rows + 2 * row_bytes,                      \
                      *p3 = rows + 3 * row_bytes;                                                          \
        __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,            \
               a30 = a00, a31 = a00;                                                                       \
        int64_t g = 0;                                                                                     \
        for (int64_t b0 = 0; b0 < nblk; b0 += gblk, g++) {                                                 \
            const __m512 l0 = WQ_GROUP_LUT(id, gs, gz, g), l1 = WQ_GROUP_LUT(id, gs, gz, gstride + g),     \
                         l2 = WQ_GROUP_LUT(id, gs, gz, 2 * gstride + g),                                   \
                         l3 = WQ_GROUP_LUT(id, gs, gz, 3 * gstride + g);                                   \
            int64_t b1 = b0 + gblk < nblk ? b0 + gblk : nblk;                                              \
            for (int64_t b = b0; b < b1; b++) {                                                            \
                const float *xb = x + b * (BLK);                                                           \
                size_t off = (size_t)b * (BBYTES);                                                         \
                _mm_prefetch((const char *)(p0 + 4 * row_bytes + 4 * off), _MM_HINT_T0);                   \
                LDOT(p0 + off, xb, a00, a01, l0);                                                          \
                LDOT(p1 + off, xb, a10, a11, l1);                                                          \
                LDOT(p2 + off, xb, a20, a21, l2);                                                          \
                LDOT(p3 + off, xb, a30, a31, l3);                                                          \
            }                                                                                              \
        }                                                                                                  \
        out[0] = _mm512_reduce_add_ps(_mm512_add_ps(a00, a01));                                            \
        out[1] = _mm512_reduce_add_ps(_mm512_add_ps(a10, a11));                                            \
        out[2] = _mm512_reduce_add_ps(_mm512_add_ps(a20, a21));                                            \
        out[3] = _mm512_reduce_add_ps(_mm512_add_ps(a30, a31));                                            \
    }                                                                                                      \
    QS_TARGET_AVX512 static void NAME##_r1(const uint8_t *p0, const float *x, int64_t nblk, int64_t gblk,  \
                                           const float *gs, const float *gz, float *out) {                 \
        const __m512 id = WQ_ID16(MASK);                                                                   \
        __m512 a00 = _mm512_setzero_ps(), a01 = a00;                                                       \
        int64_t g = 0;                                                                                     \
        for (int64_t b0 = 0; b0 < nblk; b0 += gblk, g++) {                                                 \
            const __m512 l0 = WQ_GROUP_LUT(id, gs, gz, g);                                                 \
            int64_t b1 = b0 + gblk < nblk ? b0 + gblk : nblk;                                              \
            for (int64_t b = b0; b < b1; b++) LDOT(p0 + (size_t)b * (BBYTES), x + b * (BLK), a00, a01, l0); \
        }                                                                                                  \
        out[0] = _mm512_reduce_add_ps(_mm512_add_ps(a00, a01));                                            \
    }                                                                                                      \
    static void NAME(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk,       \
                     int64_t gblk, const float *gs, const float *gz, int64_t gstride, float *out) {        \
        if (nrows == 4) NAME##_r4(rows, row_bytes, x, nblk, gblk, gs, gz, gstride, out);                   \
        else NAME##_r1(rows, x, nblk, gblk, gs, gz, out);                                                  \
    }

WQ_LUTDOT_DEFINE(lutdot_u4, 32, 16, 15, U4_LDOT)
WQ_LUTDOT_DEFINE(lutdot_u3, 64, 24, 7, U3_LDOT)
WQ_LUTDOT_DEFINE(lutdot_u2, 64, 16, 3, U2_LDOT)

/* The table path for m, or NULL (U8, float codes, IC grouping). */
static WqLutDotFn wq_lutdot_fn(const WqMatrix *m) {
    if (m->gdim != WQ_GROUP_OC && m->gdim != WQ_GROUP_TENSOR) return NULL;
    switch (m->code) {
    case WQ_U4: return lutdot_u4;
    case WQ_U3: return lutdot_u3;
    case WQ_U2: return lutdot_u2;
    default: return NULL;
    }
}

static WqRowDotFn wq_rowdot_fn(const WqMatrix *m) {
    switch (m->code) {
    case WQ_U8: return m->sym ? rowdot_u8s : rowdot_u8a;
    case WQ_U4: return m->sym ? rowdot_u4s : rowdot_u4a;
    case WQ_U3: return m->sym ? rowdot_u3s : rowdot_u3a;
    case WQ_U2: return m->sym ? rowdot_u2s : rowdot_u2a;
    case WQ_E4M3: return fp8_rowdot_e4m3_avx512;
    case WQ_E5M2: return fp8_rowdot_e5m2_avx512;
    case WQ_F16: return f16_rowdot_f16_avx512;
    case WQ_BF16: return f16_rowdot_bf16_avx512;
    case WQ_F32: return f16_rowdot_f32_avx512;
    default: return NULL;
    }
}

/* === AVX2 GEMV ===
 * Integer codes (U8, U4, U3, U2) under OC or tensor grouping: each code is
 * widened and converted, its zero point subtracted (u - z, exact: small
 * integers), and FMA'd with x into a per-group sum that is scaled once at the
 * group's end, as the AVX-512 row dots do (kernels/wq_rowdot.h). Subtracting
 * z per weight, not Σ z·x afterwards, keeps near-zero rows accurate, so the
 * GEMV adds only summation-order error on Σ|w·x| (one rounding more per
 * group than the AVX-512 table path; the multiply per weight that exact
 * dequantization would take cost 12-15 % of the rate). Rows as in
 * kernels/wq_rowdot.h, four at a time sharing the x loads; the signature is
 * WqLutDotFn's, so the same driver (gemv_rows) runs them. 8-lane blocks:
 * bytes 0-7 and 8-15 of a block widened to 32-bit lanes hold elements j and
 * j + 8 (+ 16t for the bit fields of U4 / U2 / U3, layout in
 * kernels/wq_gemm.h). */

#define DQ8(u, vz) _mm256_sub_ps(_mm256_cvtepi32_ps(u), vz)
#define DQ8_FMA(u, xp, acc, vz) acc = _mm256_fmadd_ps(DQ8(u, vz), _mm256_loadu_ps(xp), acc)
#define LD8(p) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(p)))

#define U8_DQ(p, xb, a, b, vz)                                                                       \
    do {                                                                                                 \
        DQ8_FMA(LD8(p), xb, a, vz);                                                                  \
        DQ8_FMA(LD8((p) + 8), (xb) + 8, b, vz);                                                      \
        DQ8_FMA(LD8((p) + 16), (xb) + 16, a, vz);                                                    \
        DQ8_FMA(LD8((p) + 24), (xb) + 24, b, vz);                                                    \
    } while (0)
#define U4_DQ(p, xb, a, b, vz)                                                                       \
    do {                                                                                                 \
        const __m256i m_ = _mm256_set1_epi32(15);                                                        \
        __m256i lo_ = LD8(p), hi_ = LD8((p) + 8);                                                        \
        DQ8_FMA(_mm256_and_si256(lo_, m_), xb, a, vz);                                               \
        DQ8_FMA(_mm256_and_si256(hi_, m_), (xb) + 8, b, vz);                                         \
        DQ8_FMA(_mm256_srli_epi32(lo_, 4), (xb) + 16, a, vz);                                        \
        DQ8_FMA(_mm256_srli_epi32(hi_, 4), (xb) + 24, b, vz);                                        \
    } while (0)
#define U2_DQ(p, xb, a, b, vz)                                                                       \
    do {                                                                                                 \
        const __m256i m_ = _mm256_set1_epi32(3);                                                         \
        __m256i lo_ = LD8(p), hi_ = LD8((p) + 8);                                                        \
        DQ8_FMA(_mm256_and_si256(lo_, m_), xb, a, vz);                                               \
        DQ8_FMA(_mm256_and_si256(hi_, m_), (xb) + 8, b, vz);                                         \
        DQ8_FMA(_mm256_and_si256(_mm256_srli_epi32(lo_, 2), m_), (xb) + 16, a, vz);                  \
        DQ8_FMA(_mm256_and_si256(_mm256_srli_epi32(hi_, 2), m_), (xb) + 24, b, vz);                  \
        DQ8_FMA(_mm256_and_si256(_mm256_srli_epi32(lo_, 4), m_), (xb) + 32, a, vz);                  \
        DQ8_FMA(_mm256_and_si256(_mm256_srli_epi32(hi_, 4), m_), (xb) + 40, b, vz);                  \
        DQ8_FMA(_mm256_srli_epi32(lo_, 6), (xb) + 48, a, vz);                                        \
        DQ8_FMA(_mm256_srli_epi32(hi_, 6), (xb) + 56, b, vz);                                        \
    } while (0)
/* U3: bits 0-1 as U2; the third bit of element j + 16t is bit t of third-bit
 * byte j, of element j + 8 + 16t bit 4 + t (moved to bit 2 of the lane). */
#define U3_E(v_, h_, SH, HS)                                                                              \
    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(v_, SH), m_),                                     \
                    _mm256_and_si256(_mm256_slli_epi32(_mm256_srli_epi32(h_, HS), 2), four_))
#define U3_DQ(p, xb, a, b, vz)                                                                       \
    do {                                                                                                 \
        const __m256i m_ = _mm256_set1_epi32(3), four_ = _mm256_set1_epi32(4);                           \
        __m256i lo_ = LD8(p), hi_ = LD8((p) + 8), h_ = LD8((p) + 16);                                    \
        DQ8_FMA(U3_E(lo_, h_, 0, 0), xb, a, vz);                                                     \
        DQ8_FMA(U3_E(hi_, h_, 0, 4), (xb) + 8, b, vz);                                               \
        DQ8_FMA(U3_E(lo_, h_, 2, 1), (xb) + 16, a, vz);                                              \
        DQ8_FMA(U3_E(hi_, h_, 2, 5), (xb) + 24, b, vz);                                              \
        DQ8_FMA(U3_E(lo_, h_, 4, 2), (xb) + 32, a, vz);                                              \
        DQ8_FMA(U3_E(hi_, h_, 4, 6), (xb) + 40, b, vz);                                              \
        DQ8_FMA(U3_E(lo_, h_, 6, 3), (xb) + 48, a, vz);                                              \
        DQ8_FMA(U3_E(hi_, h_, 6, 7), (xb) + 56, b, vz);                                              \
    } while (0)

QS_TARGET_AVX2 static inline float wq_hsum_avx2(__m256 a) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    return _mm_cvtss_f32(_mm_add_ss(r, _mm_movehdup_ps(r)));
}

#define WQ_DQDOT_AVX2_DEFINE(NAME, BLK, BBYTES, DQ)                                                      \
    QS_TARGET_AVX2 static void NAME##_r4(const uint8_t *rows, size_t row_bytes, const float *x,          \
                                         int64_t nblk, int64_t gblk, const float *gs, const float *gz,    \
                                         int64_t gstride, float *out) {                                   \
        const uint8_t *p0 = rows, *p1 = rows + row_bytes, *p2 = rows + 2 * row_bytes,                     \
                      *p3 = rows + 3 * row_bytes;                                                         \
        __m256 t0 = _mm256_setzero_ps(), t1 = t0, t2 = t0, t3 = t0;                                       \
        int64_t g = 0;                                                                                    \
        for (int64_t b0 = 0; b0 < nblk; b0 += gblk, g++) {                                                \
            const __m256 z0 = _mm256_set1_ps(gz[g]), z1 = _mm256_set1_ps(gz[gstride + g]);                \
            const __m256 z2 = _mm256_set1_ps(gz[2 * gstride + g]), z3 = _mm256_set1_ps(gz[3 * gstride + g]); \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0; \
            int64_t b1 = b0 + gblk < nblk ? b0 + gblk : nblk;                                             \
            for (int64_t b = b0; b < b1; b++) {                                                           \
                const float *xb = x + b * (BLK);                                                          \
                size_t off = (size_t)b * (BBYTES);                                                        \
                _mm_prefetch((const char *)(p0 + 4 * row_bytes + 4 * off), _MM_HINT_T0);                  \
                DQ(p0 + off, xb, a0, c0, z0);                                                        \
                DQ(p1 + off, xb, a1, c1, z1);                                                        \
                DQ(p2 + off, xb, a2, c2, z2);                                                        \
                DQ(p3 + off, xb, a3, c3, z3);                                                        \
            }                                                                                             \
            t0 = _mm256_fmadd_ps(_mm256_set1_ps(gs[g]), _mm256_add_ps(a0, c0), t0);                       \
            t1 = _mm256_fmadd_ps(_mm256_set1_ps(gs[gstride + g]), _mm256_add_ps(a1, c1), t1);             \
            t2 = _mm256_fmadd_ps(_mm256_set1_ps(gs[2 * gstride + g]), _mm256_add_ps(a2, c2), t2);         \
            t3 = _mm256_fmadd_ps(_mm256_set1_ps(gs[3 * gstride + g]), _mm256_add_ps(a3, c3), t3);         \
        }                                                                                                 \
        out[0] = wq_hsum_avx2(t0);                                                                        \
        out[1] = wq_hsum_avx2(t1);                                                                        \
        out[2] = wq_hsum_avx2(t2);                                                                        \
        out[3] = wq_hsum_avx2(t3);                                                                        \
    }                                                                                                     \
    QS_TARGET_AVX2 static void NAME##_r1(const uint8_t *p0, const float *x, int64_t nblk, int64_t gblk,   \
                                         const float *gs, const float *gz, float *out) {                  \
        __m256 t0 = _mm256_setzero_ps();                                                                  \
        int64_t g = 0;                                                                                    \
        for (int64_t b0 = 0; b0 < nblk; b0 += gblk, g++) {                                                \
            const __m256 z0 = _mm256_set1_ps(gz[g]);                                                      \
            __m256 a00 = _mm256_setzero_ps(), a01 = a00;                                                  \
            int64_t b1 = b0 + gblk < nblk ? b0 + gblk : nblk;                                             \
            for (int64_t b = b0; b < b1; b++) DQ(p0 + (size_t)b * (BBYTES), x + b * (BLK), a00, a01, z0); \
            t0 = _mm256_fmadd_ps(_mm256_set1_ps(gs[g]), _mm256_add_ps(a00, a01), t0);                     \
        }                                                                                                 \
        out[0] = wq_hsum_avx2(t0);                                                                        \
    }                                                                                                     \
    static void NAME(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk,      \
                     int64_t gblk, const float *gs, const float *gz, int64_t gstride, float *out) {       \
        if (nrows == 4) NAME##_r4(rows, row_bytes, x, nblk, gblk, gs, gz, gstride, out);                  \
        else NAME##_r1(rows, x, nblk, gblk, gs, gz, out);                                                 \
    }

WQ_DQDOT_AVX2_DEFINE(dqdot_u8_avx2, 32, 32, U8_DQ)
WQ_DQDOT_AVX2_DEFINE(dqdot_u4_avx2, 32, 16, U4_DQ)
WQ_DQDOT_AVX2_DEFINE(dqdot_u3_avx2, 64, 24, U3_DQ)
WQ_DQDOT_AVX2_DEFINE(dqdot_u2_avx2, 64, 16, U2_DQ)

int wq_gemv_fast_ok(const WqMatrix *m) {
    if (m->code == WQ_BLOCKS) return 0; /* decoded row by row, float dot */
    if (m->gdim == WQ_GROUP_OC && m->group) return m->group % wq_traits[m->code].elems == 0;
    return 1;
}

typedef struct GemvTask {
    const WqMatrix *m;
    WqRowDotFn fn;
    WqLutDotFn lfn;          /* table path (U4/U3/U2, OC or tensor groups), else NULL */
    const float *x;          /* (kp) zero-padded input, or the IC blocks' pre-scaled copies */
    int64_t x_stride;        /* floats between IC blocks' copies (0 when shared) */
    int64_t ic_rows;         /* rows per IC block (IC grouping), else 0 */
    const float *zterm;      /* (n_ic_blocks) IC zero terms, or NULL */
    const float *xsum;       /* (groups per row) Σx per OC group / (1) Σx, for zero points */
    float *y;
} GemvTask;

static void gemv_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const GemvTask *t = arg;
    const WqMatrix *m = t->m;
    const int64_t be = wq_traits[m->code].elems;
    const int64_t nblk = m->kp / be;
    const int is_int = wq_is_int(m->code) && !m->sym; /* a zero-point term to subtract */
    for (int64_t q = b; q < e; q++) {
        int64_t o0 = q * 4, o1 = o0 + 4 < m->n ? o0 + 4 : m->n;
        int same_x = t->ic_rows == 0 || (o0 / t->ic_rows == (o1 - 1) / t->ic_rows);
        int64_t o = o0;
        while (o < o1) {
            int nr = (o1 - o == 4 && same_x) ? 4 : 1;
            const uint8_t *rows = m->codes + (size_t)o * m->row_bytes;
            float out[4];
            if (t->lfn) {
                int64_t gpr = m->gdim == WQ_GROUP_OC && m->group ? m->k / m->group : 1;
                int64_t gblk = m->gdim == WQ_GROUP_OC && m->group ? m->group / be : nblk;
                int64_t g0 = m->gdim == WQ_GROUP_OC ? o * gpr : 0;
                t->lfn(rows, m->row_bytes, nr, t->x, nblk, gblk, m->scale + g0, m->zero + g0,
                       m->gdim == WQ_GROUP_OC ? gpr : 0, out);
                for (int r = 0; r < nr; r++) t->y[o + r] = out[r];
                o += nr;
                continue;
            }
            switch (m->gdim) {
            case WQ_GROUP_TENSOR:
                t->fn(rows, m->row_bytes, nr, t->x, nblk, nblk, m->scale, 0, out);
                for (int r = 0; r < nr; r++)
                    t->y[o + r] = is_int ? out[r] - m->scale[0] * m->zero[0] * t->xsum[0] : out[r];
                break;
            case WQ_GROUP_OC: {
                int64_t gpr = m->group ? m->k / m->group : 1;
                int64_t gblk = m->group ? m->group / be : nblk;
                t->fn(rows, m->row_bytes, nr, t->x, nblk, gblk, m->scale + o * gpr, gpr, out);
                for (int r = 0; r < nr; r++) {
                    float zt = 0.0f;
                    if (is_int) {
                        const float *s = m->scale + (o + r) * gpr, *z = m->zero + (o + r) * gpr;
                        for (int64_t g = 0; g < gpr; g++) zt += s[g] * z[g] * t->xsum[g];
                    }
                    t->y[o + r] = out[r] - zt;
                }
                break;
            }
            case WQ_GROUP_IC: {
                int64_t blk = o / t->ic_rows;
                t->fn(rows, m->row_bytes, nr, t->x + blk * t->x_stride, nblk, nblk, NULL, 0, out);
                for (int r = 0; r < nr; r++) t->y[o + r] = out[r] - (is_int ? t->zterm[blk] : 0.0f);
                break;
            }
            default:
                t->fn(rows, m->row_bytes, nr, t->x, nblk, nblk, NULL, 0, out);
                for (int r = 0; r < nr; r++) t->y[o + r] = out[r];
                break;
            }
            o += nr;
        }
    }
}

typedef struct IcTask {
    const WqMatrix *m;
    const float *x;          /* (k) */
    float *xs;               /* (n_blocks, kp) */
    float *zterm;            /* (n_blocks) */
} IcTask;

/* xs_b[i] = s(b, i) · x[i] and the block's Σ s·z·x, per block of rows. */
static void gemv_ic_prescale(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const IcTask *t = arg;
    const WqMatrix *m = t->m;
    for (int64_t blk = b; blk < e; blk++) {
        const float *s = m->scale + blk * m->k;
        float *xs = t->xs + blk * m->kp;
        for (int64_t i = 0; i < m->k; i++) xs[i] = s[i] * t->x[i];
        for (int64_t i = m->k; i < m->kp; i++) xs[i] = 0.0f;
        float zt = 0.0f;
        if (m->zero && !m->sym) {
            const float *z = m->zero + blk * m->k;
            for (int64_t i = 0; i < m->k; i++) zt += z[i] * xs[i];
        }
        t->zterm[blk] = zt;
    }
}

/* x (k) copied into this thread's scratch with zeros up to kp: the padding
 * codes of a row need not decode to zero weights. */
static const float *gemv_padded_x(const WqMatrix *m, const float *x) {
    float *buf = scratch_get(SCRATCH_GEMV_X, (size_t)m->kp * sizeof(float));
    ASSERT(buf != NULL);
    memcpy(buf, x, (size_t)m->k * sizeof *x);
    for (int64_t i = m->k; i < m->kp; i++) buf[i] = 0.0f;
    return buf;
}

void wq_gemv_avx512(const WqMatrix *m, const float *x, float *y, Pool *pool) {
    GemvTask t = {m, wq_rowdot_fn(m), wq_lutdot_fn(m), NULL, 0, 0, NULL, NULL, y};
    float *buf = NULL, *zterm = NULL, *xsum = NULL;
    int64_t nq = (m->n + 3) / 4;
    if (m->gdim == WQ_GROUP_IC) {
        int64_t rows = m->group ? m->group : m->n, nb = m->n / rows;
        buf = scratch_get(SCRATCH_GEMV_X, (size_t)(nb * m->kp) * sizeof(float));
        zterm = scratch_get(SCRATCH_GEMV_ZTERM, (size_t)nb * sizeof *zterm);
        ASSERT(buf && zterm);
        IcTask it = {m, x, buf, zterm};
        pool_for(pool, nb, 1, gemv_ic_prescale, &it);
        t.x = buf;
        t.x_stride = m->kp;
        t.ic_rows = rows;
        t.zterm = zterm;
    } else {
        t.x = gemv_padded_x(m, x);
        if (wq_is_int(m->code) && !m->sym && !t.lfn) {
            int64_t glen = (m->gdim == WQ_GROUP_OC && m->group) ? m->group : m->k;
            int64_t ng = m->k / glen;
            xsum = scratch_get(SCRATCH_GEMV_XSUM, (size_t)ng * sizeof *xsum);
            ASSERT(xsum != NULL);
            for (int64_t g = 0; g < ng; g++) {
                float s = 0.0f;
                for (int64_t i = g * glen; i < (g + 1) * glen; i++) s += x[i];
                xsum[g] = s;
            }
            t.xsum = xsum;
        }
    }
    pool_for(pool, nq, 8, gemv_rows, &t);
}

int wq_gemv_avx2_ok(const WqMatrix *m) {
    return wq_is_int(m->code) && (m->gdim == WQ_GROUP_TENSOR || m->gdim == WQ_GROUP_OC) && wq_gemv_fast_ok(m);
}

void wq_gemv_avx2(const WqMatrix *m, const float *x, float *y, Pool *pool) {
    static const WqLutDotFn fns[] = {[WQ_U8] = dqdot_u8_avx2, [WQ_U4] = dqdot_u4_avx2, [WQ_U3] = dqdot_u3_avx2,
                                     [WQ_U2] = dqdot_u2_avx2};
    GemvTask t = {m, NULL, fns[m->code], gemv_padded_x(m, x), 0, 0, NULL, NULL, y};
    pool_for(pool, (m->n + 3) / 4, 8, gemv_rows, &t);
}

/* Fallback for groupings the fast path does not take (and machines without
 * AVX-512): exact row dequantization, float dot. */
typedef struct SlowTask { const WqMatrix *m; const float *x; float *y; } SlowTask;

static void gemv_rows_slow(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const SlowTask *t = arg;
    float *w = scratch_get(SCRATCH_GEMV_ROW, (size_t)t->m->k * sizeof *w); /* this worker's */
    ASSERT(w != NULL);
    int fast = wq_fast_level();
    for (int64_t o = b; o < e; o++) {
        wq_dequant_row(t->m, o, w, fast);
        float s = 0.0f;
        if (fast == 2) s = wq_dot_avx512(w, t->x, t->m->k);
        else if (fast == 1) s = wq_dot_avx2(w, t->x, t->m->k);
        else
            for (int64_t i = 0; i < t->m->k; i++) s += w[i] * t->x[i];
        t->y[o] = s;
    }
}

static void gemv_rows_blocks(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const SlowTask *t = arg;
    for (int64_t o = b; o < e; o++) t->y[o] = t->m->dot(t->m->codes + (size_t)o * t->m->row_bytes, t->x, t->m->k);
}

void wq_gemv(const WqMatrix *m, const float *x, float *y, Pool *pool) {
    if (m->code == WQ_BLOCKS && m->dot) {
        SlowTask t = {m, x, y};
        pool_for(pool, m->n, 16, gemv_rows_blocks, &t);
        return;
    }
    if (cpu_has_avx512f() && wq_gemv_fast_ok(m)) {
        wq_gemv_avx512(m, x, y, pool);
        return;
    }
    if (cpu_has_avx2() && wq_gemv_avx2_ok(m)) {
        wq_gemv_avx2(m, x, y, pool);
        return;
    }
    SlowTask t = {m, x, y};
    pool_for(pool, m->n, 16, gemv_rows_slow, &t);
}

/* === batched: dequantized tiles through a float GEMM === */

/* Floats per dequantized tile (32 MB): the GEMM re-packs x once per tile
 * and thread, so tiles are as large as the L3 comfortably holds; never fewer
 * than 512 rows. */
#define TILE_FLOATS ((int64_t)8 << 20)

typedef struct TileTask { const WqMatrix *m; int64_t r0; float *w; } TileTask;

static void tile_dequant(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const TileTask *t = arg;
    wqmat_dequant_rows(t->m, t->r0 + b, t->r0 + e, t->w + b * t->m->k);
}

/* wq_gemm's GEMM packing buffers, kept per calling thread between calls in
 * core/scratch.h's SCRATCH_WQ_GEMM (as is the dequantized tile, in
 * SCRATCH_WQ_TILE): a fresh 32 MB tile per prefill projection could pay its
 * page faults every call. */
typedef struct WqGemmWork {
    GemmWork *gw;   // packing buffers for `threads` threads
    int threads;
} WqGemmWork;

static void wq_gemm_work_free(void *p) {
    WqGemmWork *g = p;
    if (!g) return;
    gemm_work_free(g->gw);
    free(g);
}

/* Sets *out to the calling thread's packing buffers for nt threads and *own
 * when the caller must free them (the thread's scratch could not keep them).
 * Fails (ST_ERR_NOMEM) when they cannot be allocated. */
static Status wq_gemm_work(int nt, WqGemmWork **out, int *own, Err *err) {
    *own = 0;
    WqGemmWork *g = scratch_obj(SCRATCH_WQ_GEMM);
    if (g && g->threads >= nt) {
        *out = g;
        return ST_OK;
    }
    if (!(g = core_calloc(1, sizeof *g))) return err_set(err, ST_ERR_NOMEM, "weight-only GEMM buffers");
    Status st = gemm_work_new(nt, &g->gw, err);
    if (st) {
        free(g);
        return st;
    }
    g->threads = nt;
    if (scratch_put(SCRATCH_WQ_GEMM, g, wq_gemm_work_free)) *own = 1;
    *out = g;
    return ST_OK;
}

Status wq_gemm(const WqMatrix *m, const float *x, int64_t T, float *y, Pool *pool, Err *err) {
    /* a few rows: GEMV per row costs less than dequantizing the matrix */
    if (T <= 3) {
        for (int64_t t = 0; t < T; t++) wq_gemv(m, x + t * m->k, y + t * m->n, pool);
        return ST_OK;
    }
    int64_t rows = TILE_FLOATS / m->k < 512 ? 512 : TILE_FLOATS / m->k;
    if (rows > m->n) rows = m->n;
    float *w = scratch_get(SCRATCH_WQ_TILE, (size_t)(rows * m->k) * sizeof *w);
    if (!w) return err_set(err, ST_ERR_NOMEM, "weight-only tile (%lld, %lld)", (long long)rows, (long long)m->k);
    /* our GEMM on the pool (every dispatch level), the kernel a plain weight runs too */
    WqGemmWork *g = NULL;
    int own = 0;
    if (gemm_f32_available()) {
        Status st = wq_gemm_work(pool ? pool_size(pool) : 1, &g, &own, err);
        if (st) return st;
    }
    for (int64_t r0 = 0; r0 < m->n; r0 += rows) {
        int64_t nr = m->n - r0 < rows ? m->n - r0 : rows;
        TileTask tt = {m, r0, w};
        pool_for(pool, nr, 8, tile_dequant, &tt);
        if (g) gemm_f32_nt_pool(pool, g->gw, T, nr, m->k, x, m->k, w, m->k, 0.0f, y + r0, m->n);
        else sgemm_mul_nt(T, nr, m->k, x, m->k, w, m->k, 0.0f, y + r0, m->n);
    }
    if (own) wq_gemm_work_free(g);
    return ST_OK;
}
