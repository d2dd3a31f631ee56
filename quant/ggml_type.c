/* ggml storage types: block layouts, dequantization and the reference
 * quantizers, written from ggml's published definitions (ggml-common.h /
 * ggml-quants.c). Blocks are decoded byte by byte (little-endian), so the code
 * neither depends on host struct packing nor on host byte order. */
#include "quant/ggml_type.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/fpconv.h"
#include "kernels/kfit.h"

#define QK_K 256

static inline float rd_f16(const unsigned char *p) {
    return fp16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

static inline void wr_f16(unsigned char *p, float f) {
    uint16_t h = f32_to_fp16(f);
    p[0] = (unsigned char)(h & 0xFF);
    p[1] = (unsigned char)(h >> 8);
}

static inline uint32_t rd_u32le(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* === plain float types === */

static void dequant_f32(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void quant_f32(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void dequant_f16(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n; i++) dst[i] = rd_f16(p + 2 * i);
}

static void quant_f16(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n; i++) wr_f16(p + 2 * i, src[i]);
}

static void dequant_bf16(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
}

static void quant_bf16(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = f32_to_bf16(src[i]);
        p[2 * i] = (unsigned char)(h & 0xFF);
        p[2 * i + 1] = (unsigned char)(h >> 8);
    }
}

/* === 32-element blocks ===
 * Q4_0 {f16 d; u8 qs[16]}            x = (q - 8) * d
 * Q4_1 {f16 d, m; u8 qs[16]}         x = q * d + m
 * Q5_0 {f16 d; u8 qh[4]; u8 qs[16]}  x = (q - 16) * d, bit 4 of element j in qh bit j
 * Q5_1 {f16 d, m; u8 qh[4]; u8 qs[16]} x = q * d + m
 * Q8_0 {f16 d; i8 qs[32]}            x = q * d
 * In the nibble formats element j (< 16) is the low nibble of qs[j] and
 * element j + 16 the high nibble. */

/* Q4_0 / Q5_0 (bits 4, 5): x = (q - 2^(bits-1)) * d, the fifth bit of
 * element j (Q5_0) in bit j of qh. */
static inline void dequant_qx_0(const unsigned char *b, float *dst, int64_t n, int bits) {
    const int64_t bytes = bits == 4 ? 18 : 22;
    const int off = 1 << (bits - 1);
    for (int64_t i = 0; i < n / 32; i++, b += bytes, dst += 32) {
        float d = rd_f16(b);
        uint32_t qh = bits == 5 ? rd_u32le(b + 2) : 0;
        const unsigned char *qs = b + (bits == 5 ? 6 : 2);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1u) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            dst[j] = (float)(((qs[j] & 0x0F) | h0) - off) * d;
            dst[j + 16] = (float)(((qs[j] >> 4) | h1) - off) * d;
        }
    }
}

/* Q4_1 / Q5_1 (bits 4, 5): x = q * d + m, the fifth bit as in Q5_0. */
static inline void dequant_qx_1(const unsigned char *b, float *dst, int64_t n, int bits) {
    const int64_t bytes = bits == 4 ? 20 : 24;
    for (int64_t i = 0; i < n / 32; i++, b += bytes, dst += 32) {
        float d = rd_f16(b), m = rd_f16(b + 2);
        uint32_t qh = bits == 5 ? rd_u32le(b + 4) : 0;
        const unsigned char *qs = b + (bits == 5 ? 8 : 4);
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1u) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            dst[j] = (float)((qs[j] & 0x0F) | h0) * d + m;
            dst[j + 16] = (float)((qs[j] >> 4) | h1) * d + m;
        }
    }
}

static void dequant_q4_0(const void *src, float *dst, int64_t n) { dequant_qx_0(src, dst, n, 4); }
static void dequant_q5_0(const void *src, float *dst, int64_t n) { dequant_qx_0(src, dst, n, 5); }
static void dequant_q4_1(const void *src, float *dst, int64_t n) { dequant_qx_1(src, dst, n, 4); }
static void dequant_q5_1(const void *src, float *dst, int64_t n) { dequant_qx_1(src, dst, n, 5); }

static void dequant_q8_0(const void *src, float *dst, int64_t n) {
    const unsigned char *b = src;
    for (int64_t i = 0; i < n / 32; i++, b += 34, dst += 32) {
        float d = rd_f16(b);
        const int8_t *qs = (const int8_t *)(b + 2);
        for (int j = 0; j < 32; j++) dst[j] = (float)qs[j] * d;
    }
}

/* ggml's quantize_row_q8_0_ref: d = amax/127, q = round(x/d). */
static void quant_q8_0(const float *src, void *dst, int64_t n) {
    unsigned char *b = dst;
    for (int64_t i = 0; i < n / 32; i++, b += 34, src += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(src[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr_f16(b, d);
        for (int j = 0; j < 32; j++) b[2 + j] = (unsigned char)(int8_t)roundf(src[j] * id);
    }
}

/* Stores 32 five-bit codes: low nibbles as Q4 (j, j + 16), fifth bits in qh. */
static void put_q5(unsigned char *qh4, unsigned char *qs, const unsigned *q) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (unsigned char)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
        qh |= ((q[j] & 0x10u) >> 4) << j;
        qh |= ((q[j + 16] & 0x10u) >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; k++) qh4[k] = (unsigned char)(qh >> (8 * k));
}

/* The 32 codes of a 4-bit (qs at p) or 5-bit (qh[4] at p, qs after) block. */
static void k_put_codes32(const uint8_t *L, int bits, unsigned char *p) {
    if (bits == 4) {
        for (int j = 0; j < 16; j++) p[j] = (unsigned char)((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
        return;
    }
    unsigned q[32];
    for (int j = 0; j < 32; j++) q[j] = L[j];
    put_q5(p, p + 4, q);
}

/* ggml's quantize_row_q4_0_ref and q5_0_ref (bits 4, 5): d = (signed value
 * of largest magnitude) / -2^(bits-1), q = min(2^bits - 1, trunc(x/d +
 * 2^(bits-1) + 0.5)), so the extreme maps to 0 exactly. */
static inline void quant_qx_0(const float *src, unsigned char *b, int64_t n, int bits) {
    const int top = (1 << bits) - 1;
    const float half = (float)(1 << (bits - 1));
    const int64_t bytes = bits == 4 ? 18 : 22;
    for (int64_t i = 0; i < n / 32; i++, b += bytes, src += 32) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(src[j])) {
                amax = fabsf(src[j]);
                max = src[j];
            }
        float d = max / -half;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr_f16(b, d);
        uint8_t q[32];
        for (int j = 0; j < 32; j++) {
            int v = (int)(int8_t)(src[j] * id + (half + 0.5f));
            q[j] = (uint8_t)(v > top ? top : v);
        }
        k_put_codes32(q, bits, b + 2);
    }
}

/* ggml's quantize_row_q4_1_ref and q5_1_ref (bits 4, 5): d = (max - min) /
 * (2^bits - 1), m = min, q = trunc((x - min)/d + 0.5); Q4_1 clamps q to 15,
 * Q5_1 does not (the code is taken modulo 32 through the nibble and the
 * fifth bit, as ggml does). */
static inline void quant_qx_1(const float *src, unsigned char *b, int64_t n, int bits) {
    const float levels = (float)((1 << bits) - 1);
    const int64_t bytes = bits == 4 ? 20 : 24;
    for (int64_t i = 0; i < n / 32; i++, b += bytes, src += 32) {
        float lo = INFINITY, hi = -INFINITY;
        for (int j = 0; j < 32; j++) {
            if (src[j] < lo) lo = src[j];
            if (src[j] > hi) hi = src[j];
        }
        float d = (hi - lo) / levels;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr_f16(b, d);
        wr_f16(b + 2, lo);
        uint8_t q[32];
        for (int j = 0; j < 32; j++) {
            float x = (src[j] - lo) * id + 0.5f;
            if (bits == 4) {
                int v = (int)(int8_t)x;
                q[j] = (uint8_t)(v > 15 ? 15 : v);
            } else {
                q[j] = (uint8_t)x;
            }
        }
        k_put_codes32(q, bits, b + 4);
    }
}

static void quant_q4_0(const float *src, void *dst, int64_t n) { quant_qx_0(src, dst, n, 4); }
static void quant_q5_0(const float *src, void *dst, int64_t n) { quant_qx_0(src, dst, n, 5); }
static void quant_q4_1(const float *src, void *dst, int64_t n) { quant_qx_1(src, dst, n, 4); }
static void quant_q5_1(const float *src, void *dst, int64_t n) { quant_qx_1(src, dst, n, 5); }

/* === k-quants: super-blocks of 256 === */

/* Scale and min j (0..7) of Q4_K/Q5_K: 6 bits each, packed in 12 bytes.
 * j < 4: low 6 bits of bytes j and j+4; j >= 4: a nibble of byte j+4 plus the
 * top two bits of bytes j-4 (scale) and j (min). */
static inline void scale_min_k4(int j, const unsigned char *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q2_K {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}: 16 sub-blocks of 16;
 * scale nibble low = scale, high = min; x = d*sc*q - dmin*m with 2-bit q. */
static void dequant_q2_k(const void *src, float *dst, int64_t n) {
    const unsigned char *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 84) {
        const unsigned char *sc = b, *q = b + 16;
        float d = rd_f16(b + 80), dmin = rd_f16(b + 82);
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int k = 0; k < 2; k++, is++) {
                    float dl = d * (float)(sc[is] & 0x0F), ml = dmin * (float)(sc[is] >> 4);
                    for (int l = 0; l < 16; l++) *dst++ = dl * (float)((q[16 * k + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/* Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}: 16 sub-blocks of 16
 * with 6-bit signed scales (stored +32); q = low 2 bits - (hmask bit ? 0 : 4). */
static int q3k_scale(const unsigned char *s, int is) {
    int v;
    if (is < 4) v = (s[is] & 0x0F) | (((s[is + 8] >> 0) & 3) << 4);
    else if (is < 8) v = (s[is] & 0x0F) | (((s[is + 4] >> 2) & 3) << 4);
    else if (is < 12) v = (s[is - 8] >> 4) | (((s[is] >> 4) & 3) << 4);
    else v = (s[is - 8] >> 4) | (((s[is - 4] >> 6) & 3) << 4);
    return v - 32;
}

static void dequant_q3_k(const void *src, float *dst, int64_t n) {
    const unsigned char *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 110) {
        const unsigned char *hm = b, *q = b + 32, *sc = b + 96;
        float d = rd_f16(b + 108);
        int is = 0;
        unsigned m = 1;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int k = 0; k < 2; k++, is++) {
                    float dl = d * (float)q3k_scale(sc, is);
                    for (int l = 0; l < 16; l++) {
                        int v = ((q[16 * k + l] >> shift) & 3) - ((hm[16 * k + l] & m) ? 0 : 4);
                        *dst++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

/* Q4_K {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32;
 * each 32 bytes of qs hold two sub-blocks (low nibbles, then high).
 * Q5_K {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: the same
 * with a fifth bit: sub-block j takes bit j of qh[l]. bits: 4 or 5. */
static inline void dequant_qk_k(const unsigned char *b, float *dst, int64_t n, int bits) {
    const int64_t bytes = bits == 4 ? 144 : 176;
    for (int64_t i = 0; i < n / QK_K; i++, b += bytes) {
        float d = rd_f16(b), dmin = rd_f16(b + 2);
        const unsigned char *scales = b + 4, *qh = b + 16, *ql = b + (bits == 5 ? 48 : 16);
        for (int j = 0; j < 8; j += 2, ql += 32) {
            int sc, m;
            scale_min_k4(j, scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min_k4(j + 1, scales, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            unsigned u1 = bits == 5 ? 1u << j : 0, u2 = bits == 5 ? 1u << (j + 1) : 0;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (float)((ql[l] & 0x0F) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

static void dequant_q4_k(const void *src, float *dst, int64_t n) { dequant_qk_k(src, dst, n, 4); }
static void dequant_q5_k(const void *src, float *dst, int64_t n) { dequant_qk_k(src, dst, n, 5); }

/* Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: two halves of 128;
 * in a half, element l + 32k (k = 0..3) takes a nibble of ql[l + 32(k&1)]
 * (low for k < 2) and bits 2k..2k+1 of qh[l]; q - 32 times d * scale. */
static void dequant_q6_k(const void *src, float *dst, int64_t n) {
    const unsigned char *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 210) {
        const unsigned char *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = rd_f16(b + 208);
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, dst += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                dst[l] = d * (float)sc[is + 0] * (float)q1;
                dst[l + 32] = d * (float)sc[is + 2] * (float)q2;
                dst[l + 64] = d * (float)sc[is + 4] * (float)q3;
                dst[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

/* Q8_K {f32 d; i8 qs[256]; i16 bsums[16]}: x = q * d (bsums are a dot-product aid). */
static void dequant_q8_k(const void *src, float *dst, int64_t n) {
    const unsigned char *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 292) {
        float d;
        uint32_t u = rd_u32le(b);
        memcpy(&d, &u, sizeof d);
        const int8_t *qs = (const int8_t *)(b + 4);
        for (int j = 0; j < QK_K; j++) *dst++ = d * (float)qs[j];
    }
}

/* === k-quant reference quantizers ===
 * ggml's quantize_row_q{2..6}_K_ref: per sub-block a scale (and min) is
 * searched, the scales are quantized to 4/6/8 bits against the super-block's
 * fp16 d (and dmin), and the codes are redone with the quantized scales. The
 * float operations below keep ggml's order and types exactly (left-to-right
 * products, int operands converted where ggml converts them), because the
 * point is byte identity with llama-quantize. */

#define K_EPS 1e-15f /* ggml's GROUP_MAX_EPS: an all-zero group */

/* Weight of element i in the symmetric searches: qw, else by rmse_type
 * (1: x^2, 2: 1, 3: |x|, else sqrt|x|). */
static inline float k_weight(const float *qw, int rmse_type, float x, int i) {
    if (qw) return qw[i];
    return rmse_type == 1 ? x * x : rmse_type == 2 ? 1 : rmse_type == 3 ? fabsf(x) : sqrtf(fabsf(x));
}

/* The element of largest magnitude (the first on ties), sign kept: the
 * value ggml's signed K-quant searches map to -nmax. */
static float k_signed_max(int n, const float *x) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    return max;
}

/* The start of the signed searches: the extreme element maps to -nmax,
 * codes l = clamp(round(is x), -nmax, nmax-1) go to L as l + off, with
 * *sxl = sum w x l and *sl2 = sum w l^2 (w: k_weight). Returns that extreme,
 * or 0 (every code 0, sums unset) when the block is all but zero. */
static float k_signed_start(int n, int nmax, const float *x, const float *qw, int rmse_type, int off, int8_t *L,
                            float *sxl, float *sl2) {
    float max = k_signed_max(n, x);
    if (fabsf(max) < K_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    float is = (float)(-nmax) / max;
    float a = 0, b = 0;
    for (int i = 0; i < n; i++) {
        int l = kfit_clamp(kfit_round(is * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + off);
        float w = k_weight(qw, rmse_type, x[i], i);
        a += w * x[i] * (float)l;
        b += w * (float)l * (float)l;
    }
    *sxl = a;
    *sl2 = b;
    return max;
}

/* Signed scale for codes l in [-nmax, nmax-1] (stored l + nmax in L): the
 * extreme value maps to -nmax, then 18 nearby scales are tried and the one
 * with the best weighted fit kept (make_qx_quants, rmse_type > 0). */
static float k_fit_signed(int n, int nmax, const float *x, int8_t *L, int rmse_type, const float *qw) {
    float sxl, sl2;
    float max = k_signed_start(n, nmax, x, qw, rmse_type, nmax, L, &sxl, &sl2);
    if (max == 0.0f) return 0.0f;
    float scale = sl2 ? sxl / sl2 : 0.0f;
    float best = scale * sxl;
    for (int st = -9; st <= 9; st++) {
        if (st == 0) continue;
        float is = -((float)nmax + 0.1f * (float)st) / max;
        sxl = sl2 = 0;
        for (int i = 0; i < n; i++) {
            int l = kfit_clamp(kfit_round(is * x[i]), -nmax, nmax - 1);
            float w = k_weight(qw, rmse_type, x[i], i);
            sxl += w * x[i] * (float)l;
            sl2 += w * (float)l * (float)l;
        }
        if (sl2 > 0 && sxl * sxl > best * sl2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + kfit_clamp(kfit_round(is * x[i]), -nmax, nmax - 1));
            scale = sxl / sl2;
            best = scale * sxl;
        }
    }
    return scale;
}

/* Q3_K's sub-block search (make_q3_quants with do_rmse): codes in
 * [-nmax, nmax-1] from the extreme-maps-to-(-nmax) scale, then up to 5 passes
 * moving single codes while the x^2-weighted fit improves. L gets l + nmax. */
static float k_fit_q3(int n, int nmax, const float *x, int8_t *L) {
    float sxl, sl2;
    if (k_signed_start(n, nmax, x, NULL, 1, 0, L, &sxl, &sl2) == 0.0f) return 0.0f;
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sxl - w * x[i] * (float)L[i];
            if (!(slx > 0)) continue;
            float sl2i = sl2 - w * (float)L[i] * (float)L[i];
            int nl = kfit_clamp(kfit_round(x[i] * sl2i / slx), -nmax, nmax - 1);
            if (nl == L[i]) continue;
            slx += w * x[i] * (float)nl;
            sl2i += w * (float)nl * (float)nl;
            if (sl2i > 0 && slx * slx * sl2 > sxl * sxl * sl2i) {
                L[i] = (int8_t)nl;
                sxl = slx;
                sl2 = sl2i;
                changed++;
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return sl2 > 0.0f ? sxl / sl2 : 0.0f;
}

/* Code packers of the 16-element-sub-block K-quants (codes 0..qmax each). */

/* Q2_K (and Q3_K's low bits): element 128h + 32s + l in bits 2s of qs[32h + l]. */
static void k_pack_2bit(const uint8_t *L, unsigned char *qs) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *q = L + 128 * h + l;
            qs[32 * h + l] = (unsigned char)((q[0] & 3) | ((q[32] & 3) << 2) | ((q[64] & 3) << 4) | ((q[96] & 3) << 6));
        }
}

/* Q3_K: codes 0..7, the high bit of element j in bit j / 32 of hm[j % 32]. */
static void k_pack_q3k(const uint8_t *L, unsigned char *hm, unsigned char *qs) {
    memset(hm, 0, 32);
    for (int j = 0; j < QK_K; j++)
        if (L[j] > 3) hm[j % 32] = (unsigned char)(hm[j % 32] | (1u << (j / 32)));
    k_pack_2bit(L, qs);
}

/* Q6_K: codes 0..63, low nibbles in ql, two high bits in qh (dequant_q6_k's layout). */
static void k_pack_q6k(const uint8_t *L, unsigned char *ql, unsigned char *qh) {
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; l++) {
            const uint8_t *q = L + j + l;
            ql[l] = (unsigned char)((q[0] & 0x0F) | ((q[64] & 0x0F) << 4));
            ql[l + 32] = (unsigned char)((q[32] & 0x0F) | ((q[96] & 0x0F) << 4));
            qh[l] = (unsigned char)((q[0] >> 4) | ((q[32] >> 4) << 2) | ((q[64] >> 4) << 4) | ((q[96] >> 4) << 6));
        }
}

/* Q2_K's block from its 4-bit scales Ls and mins Lm (0..15) and the float d,
 * dmin they multiply: header written, codes L (0..3) of x redone with the
 * stored values (kept from the search where a scale is 0, as ggml does). */
static void k_store_q2k(const float *x, const uint8_t *Ls, const uint8_t *Lm, float d, float dmin, unsigned char *b,
                        uint8_t *L) {
    for (int j = 0; j < 16; j++) b[j] = (unsigned char)(Ls[j] | (Lm[j] << 4));
    wr_f16(b + 80, d);
    wr_f16(b + 82, dmin);
    float df = rd_f16(b + 80), mf = rd_f16(b + 82);
    for (int j = 0; j < 16; j++) {
        float dl = df * (float)(b[j] & 0x0F);
        if (!dl) continue;
        float ml = mf * (float)(b[j] >> 4);
        for (int l = 0; l < 16; l++) L[16 * j + l] = (uint8_t)kfit_clamp(kfit_round((x[16 * j + l] + ml) / dl), 0, 3);
    }
    k_pack_2bit(L, b + 16);
}

/* Q2_K: 16 sub-blocks of 16, 2-bit codes, 4-bit scales and mins. */
static void quant_q2_k(const float *src, void *dst, int64_t n) {
    unsigned char *b = dst;
    for (int64_t ib = 0; ib < n / QK_K; ib++, b += 84, src += QK_K) {
        uint8_t L[QK_K], Ls[16] = {0}, Lm[16] = {0};
        float w[QK_K], mins[16], scales[16], max_scale = 0, max_min = 0, d = 0, dmin = 0;
        for (int j = 0; j < QK_K; j++) w[j] = fabsf(src[j]);
        for (int h = 0; h < 2; h++) /* 8 sub-blocks' searches at a time */
            kfit_min8(16, 3, src + 128 * h, w + 128 * h, L + 128 * h, scales + 8 * h, mins + 8 * h, -0.5f, 0.1f, 15, 1);
        for (int j = 0; j < 16; j++) {
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            float is = 15.0f / max_scale;
            for (int j = 0; j < 16; j++) Ls[j] = (uint8_t)kfit_round(is * scales[j]);
            d = max_scale / 15.0f;
        }
        if (max_min > 0) {
            float is = 15.0f / max_min;
            for (int j = 0; j < 16; j++) Lm[j] = (uint8_t)kfit_round(is * mins[j]);
            dmin = max_min / 15.0f;
        }
        k_store_q2k(src, Ls, Lm, d, dmin, b, L);
    }
}

/* Q3_K's block from its 6-bit scales Ls (0..63, the signed scale + 32) and
 * the float d they multiply: header written, codes L (0..7, the signed code
 * + 4) of x redone with the stored values (kept where a scale is 0). */
static void k_store_q3k(const float *x, const uint8_t *Ls, float d, unsigned char *b, int8_t *L) {
    unsigned char *sc = b + 96;
    memset(sc, 0, 12);
    for (int j = 0; j < 16; j++) {
        int l = Ls[j];
        if (j < 8) sc[j] = (unsigned char)(l & 0x0F);
        else sc[j - 8] = (unsigned char)(sc[j - 8] | ((l & 0x0F) << 4));
        l >>= 4;
        sc[j % 4 + 8] = (unsigned char)(sc[j % 4 + 8] | (l << (2 * (j / 4))));
    }
    wr_f16(b + 108, d);
    float df = rd_f16(b + 108);
    for (int j = 0; j < 16; j++) {
        float dl = df * (float)q3k_scale(sc, j);
        if (!dl) continue;
        for (int l = 0; l < 16; l++) L[16 * j + l] = (int8_t)(kfit_clamp(kfit_round(x[16 * j + l] / dl), -4, 3) + 4);
    }
    k_pack_q3k((const uint8_t *)L, b, b + 32);
}

/* Q3_K: 16 sub-blocks of 16, 3-bit signed codes (2 low bits + hmask), 6-bit
 * signed scales against d. */
static void quant_q3_k(const float *src, void *dst, int64_t n) {
    unsigned char *b = dst;
    for (int64_t ib = 0; ib < n / QK_K; ib++, b += 110, src += QK_K) {
        int8_t L[QK_K];
        uint8_t Ls[16] = {0};
        float scales[16], max_scale = 0, amax = 0, d = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = k_fit_q3(16, 4, src + 16 * j, L + 16 * j);
            float a = fabsf(scales[j]);
            if (a > amax) {
                amax = a;
                max_scale = scales[j];
            }
        }
        if (max_scale) {
            float is = -32.0f / max_scale;
            for (int j = 0; j < 16; j++) Ls[j] = (uint8_t)(kfit_clamp(kfit_round(is * scales[j]), -32, 31) + 32);
            d = 1 / is;
        }
        k_store_q3k(src, Ls, d, b, L);
    }
}

/* Packs 6-bit scales Ls and mins Lm (scale_min_k4's layout), writes fp16 d
 * and dmin to dm and redoes the codes L (0..nmax) of x with the stored pairs. */
static void k_store_sb8(const float *x, int nmax, const uint8_t *Ls, const uint8_t *Lm, float d, float dmin,
                        unsigned char *dm, unsigned char *scales, uint8_t *L) {
    for (int j = 0; j < 8; j++) {
        uint8_t ls = Ls[j], lm = Lm[j];
        if (j < 4) {
            scales[j] = ls;
            scales[j + 4] = lm;
        } else {
            scales[j + 4] = (unsigned char)((ls & 0x0F) | ((lm & 0x0F) << 4));
            scales[j - 4] = (unsigned char)(scales[j - 4] | ((ls >> 4) << 6));
            scales[j] = (unsigned char)(scales[j] | ((lm >> 4) << 6));
        }
    }
    wr_f16(dm, d);
    wr_f16(dm + 2, dmin);
    float df = rd_f16(dm), mf = rd_f16(dm + 2);
    for (int j = 0; j < 8; j++) {
        int s, m;
        scale_min_k4(j, scales, &s, &m);
        float dl = df * (float)s;
        if (!dl) continue;
        float ml = mf * (float)m;
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)kfit_clamp(kfit_round((x[32 * j + l] + ml) / dl), 0, nmax);
    }
}

/* Q4_K / Q5_K's shared part: 8 sub-blocks of 32 with (scale, min) searched
 * under weights av_x + |x|, 6-bit scales and mins packed into 12 bytes
 * (scale_min_k4's layout), fp16 d and dmin written to dm, codes redone into
 * L (0..nmax) with the quantized pairs. */
static void k_fit_sb8(const float *x, int nmax, float rmin, int nstep, unsigned char *dm, unsigned char *scales,
                      uint8_t *L) {
    float w[QK_K], mins[8], sc[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float s2 = 0;
        for (int l = 0; l < 32; l++) s2 += x[32 * j + l] * x[32 * j + l];
        float av = sqrtf(s2 / 32);
        for (int l = 0; l < 32; l++) w[32 * j + l] = av + fabsf(x[32 * j + l]);
    }
    kfit_min8(32, nmax, x, w, L, sc, mins, rmin, 0.1f, nstep, 0); /* the 8 sub-blocks' searches at once */
    for (int j = 0; j < 8; j++) {
        if (sc[j] > max_scale) max_scale = sc[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_s = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    float inv_m = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t Ls[8], Lm[8];
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)kfit_round(inv_s * sc[j]), lm = (uint8_t)kfit_round(inv_m * mins[j]);
        Ls[j] = ls > 63 ? 63 : ls;
        Lm[j] = lm > 63 ? 63 : lm;
    }
    k_store_sb8(x, nmax, Ls, Lm, max_scale / 63.0f, max_min / 63.0f, dm, scales, L);
}

/* Q4_K: 4-bit codes, sub-blocks j, j+1 share 32 bytes (low, high nibbles). */
static void k_pack_q4k(const uint8_t *L, unsigned char *q) {
    for (int j = 0; j < QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = (unsigned char)(L[j + l] | (L[j + l + 32] << 4));
}

static void quant_q4_k(const float *src, void *dst, int64_t n) {
    unsigned char *b = dst;
    for (int64_t ib = 0; ib < n / QK_K; ib++, b += 144, src += QK_K) {
        uint8_t L[QK_K];
        memset(b + 4, 0, 12);
        k_fit_sb8(src, 15, -1.0f, 20, b, b + 4, L);
        k_pack_q4k(L, b + 16);
    }
}

/* Q5_K: 5-bit codes, the fifth bits of sub-block j in bit j of qh[l]. */
static void k_pack_q5k(const uint8_t *L, unsigned char *qh, unsigned char *ql) {
    memset(qh, 0, 32);
        unsigned m1 = 1, m2 = 2;
        for (int j = 0; j < QK_K; j += 64, ql += 32, m1 <<= 2, m2 <<= 2)
            for (int l = 0; l < 32; l++) {
                int l1 = L[j + l], l2 = L[j + l + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[l] = (unsigned char)(qh[l] | m1);
                }
                if (l2 > 15) {
                    l2 -= 16;
                    qh[l] = (unsigned char)(qh[l] | m2);
                }
                ql[l] = (unsigned char)(l1 | (l2 << 4));
            }
}

static void quant_q5_k(const float *src, void *dst, int64_t n) {
    unsigned char *b = dst;
    for (int64_t ib = 0; ib < n / QK_K; ib++, b += 176, src += QK_K) {
        uint8_t L[QK_K];
        memset(b + 4, 0, 12);
        k_fit_sb8(src, 31, -0.5f, 15, b, b + 4, L);
        k_pack_q5k(L, b + 16, b + 48);
    }
}

/* Q6_K: 16 sub-blocks of 16, 6-bit codes (low nibbles in ql, 2 high bits in
 * qh), 8-bit signed scales against d; qw (n) weighs the sub-block searches
 * (NULL: the reference's x^2). */
static void k_quant_q6(const float *src, void *dst, int64_t n, const float *qw) {
    unsigned char *b = dst;
    for (int64_t ib = 0; ib < n / QK_K; ib++, b += 210, src += QK_K) {
        int8_t L[QK_K];
        float scales[16], max_scale = 0, max_abs = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = k_fit_signed(16, 32, src + 16 * j, L + 16 * j, 1, qw ? qw + QK_K * ib + 16 * j : NULL);
            float a = fabsf(scales[j]);
            if (a > max_abs) {
                max_abs = a;
                max_scale = scales[j];
            }
        }
        if (max_abs < K_EPS) {
            memset(b, 0, 210);
            continue;
        }
        int8_t *sc = (int8_t *)(b + 192);
        float is = -128.0f / max_scale;
        wr_f16(b + 208, 1 / is);
        for (int j = 0; j < 16; j++) {
            int v = kfit_round(is * scales[j]);
            sc[j] = (int8_t)(v < 127 ? v : 127);
        }
        float d = rd_f16(b + 208);
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)sc[j];
            if (!dl) continue;
            for (int l = 0; l < 16; l++) L[16 * j + l] = (int8_t)(kfit_clamp(kfit_round(src[16 * j + l] / dl), -32, 31) + 32);
        }
        k_pack_q6k((const uint8_t *)L, b, b + 128);
    }
}

static void quant_q6_k(const float *src, void *dst, int64_t n) { k_quant_q6(src, dst, n, NULL); }

/* === importance-weighted quantizers (llama-quantize --imatrix) ===
 * ggml's quantize_row_*_impl with quant_weights: the search weights become
 * qw[i] * sqrt(sigma2 + x[i]^2), and K-quants fit their 6-bit scales by a
 * weighted search too (make_qp_quants). Same operation order as ggml. */

/* Codes in [0, nmax] for non-negative x against one scale, searched over 9
 * trial scales and refined by single-code moves (make_qp_quants). */
static float k_fit_pos(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float max = 0;
    for (int i = 0; i < n; i++) max = max > x[i] ? max : x[i];
    if (max < K_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    float is = (float)nmax / max;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)kfit_round(is * x[i]);
    float scale = 1 / is;
    float best = 0;
    for (int i = 0; i < n; i++) {
        float e = x[i] - scale * (float)L[i];
        best += qw[i] * e * e;
    }
    for (int st = -4; st <= 4; st++) {
        if (st == 0) continue;
        float is_t = (0.1f * (float)st + (float)nmax) / max;
        float sc_t = 1 / is_t;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            int l = kfit_round(is_t * x[i]);
            l = l < nmax ? l : nmax;
            float e = x[i] - sc_t * (float)l;
            mse += qw[i] * e * e;
        }
        if (mse < best) {
            best = mse;
            is = is_t;
        }
    }
    float sxl = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = kfit_round(is * x[i]);
        l = l < nmax ? l : nmax;
        L[i] = (uint8_t)l;
        sxl += qw[i] * x[i] * (float)l;
        sl2 += qw[i] * (float)l * (float)l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = qw[i];
            float slx = sxl - w * x[i] * (float)L[i];
            float sl2i = sl2 - w * (float)L[i] * (float)L[i];
            if (!(slx > 0 && sl2i > 0)) continue;
            int nl = kfit_round(x[i] * sl2i / slx);
            nl = nl < nmax ? nl : nmax;
            if (nl == L[i]) continue;
            slx += w * x[i] * (float)nl;
            sl2i += w * (float)nl * (float)nl;
            if (slx * slx * sl2 > sxl * sxl * sl2i) {
                L[i] = (uint8_t)nl;
                sxl = slx;
                sl2 = sl2i;
                changed++;
            }
        }
        if (!changed) break;
    }
    return sl2 > 0.0f ? sxl / sl2 : 0.0f;
}

/* Q8_0 has no weighted variant in ggml: quantize_q8_0 ignores quant_weights. */
static void quant_w_q8_0(const float *src, void *dst, int64_t n, const float *qw) {
    (void)qw;
    quant_q8_0(src, dst, n);
}

/* sigma2 of the 32-block types' weights: the row's mean square. */
static float k_row_sigma2(const float *x, int64_t n) {
    float s2 = 0;
    for (int64_t j = 0; j < n; j++) s2 += x[j] * x[j];
    return s2 / (float)n;
}

/* Q4_0 / Q5_0 weighted: per block the make_qx_quants search (nmax 8 / 16)
 * under qw * sqrt(sigma2 + x^2), sigma2 the row's mean square. */
static void k_quant_w_sym32(const float *src, void *dst, int64_t n, const float *qw, int nmax) {
    float sigma2 = k_row_sigma2(src, n);
    size_t bb = nmax == 8 ? 18 : 22;
    unsigned char *b = dst;
    for (int64_t ib = 0; ib < n / 32; ib++, b += bb) {
        const float *x = src + 32 * ib, *w = qw + 32 * ib;
        float wt[32];
        int8_t L[32];
        for (int j = 0; j < 32; j++) wt[j] = w[j] * sqrtf(sigma2 + x[j] * x[j]);
        wr_f16(b, k_fit_signed(32, nmax, x, L, 1, wt));
        k_put_codes32((const uint8_t *)L, nmax == 8 ? 4 : 5, b + 2);
    }
}

static void quant_w_q4_0(const float *src, void *dst, int64_t n, const float *qw) { k_quant_w_sym32(src, dst, n, qw, 8); }
static void quant_w_q5_0(const float *src, void *dst, int64_t n, const float *qw) { k_quant_w_sym32(src, dst, n, qw, 16); }

/* Q4_1 / Q5_1 weighted: per block (scale, min) by the weighted search
 * (make_qkx3_quants: rmin -0.9, step 0.05, 37 trials) under
 * qw * sqrt(sigma2 + x^2); the codes are the search's (not redone with the
 * fp16 d and m, as ggml does). */
static void k_quant_w_min32(const float *src, void *dst, int64_t n, const float *qw, int nmax) {
    float sigma2 = k_row_sigma2(src, n);
    size_t bb = nmax == 15 ? 20 : 24;
    unsigned char *b = dst;
    for (int64_t ib = 0; ib < n / 32; ib++, b += bb) {
        const float *x = src + 32 * ib, *w = qw + 32 * ib;
        float wt[32], neg_min;
        uint8_t L[32];
        for (int j = 0; j < 32; j++) wt[j] = w[j] * sqrtf(sigma2 + x[j] * x[j]);
        float d = kfit_min_ref(32, nmax, x, wt, L, &neg_min, -0.9f, 0.05f, 36, 0);
        wr_f16(b, d);
        wr_f16(b + 2, -neg_min);
        k_put_codes32(L, nmax == 15 ? 4 : 5, b + 4);
    }
}

static void quant_w_q4_1(const float *src, void *dst, int64_t n, const float *qw) { k_quant_w_min32(src, dst, n, qw, 15); }
static void quant_w_q5_1(const float *src, void *dst, int64_t n, const float *qw) { k_quant_w_min32(src, dst, n, qw, 31); }

/* Q2_K weighted: per sub-block of 16 (scale, min) by the weighted search
 * (make_qkx3_quants) under qw * sqrt(sigma2 + x^2), sigma2 the super-block's
 * mean square; the 4-bit scales and mins by make_qp_quants weighted with each
 * sub-block's weight sum. */
static void quant_w_q2_k(const float *src, void *dst, int64_t n, const float *qw) {
    unsigned char *b = dst;
    for (int64_t ib = 0; ib < n / QK_K; ib++, b += 84, src += QK_K, qw += QK_K) {
        uint8_t L[QK_K], Ls[16], Lm[16];
        float sw[16], mins[16], scales[16], w[16], s2 = 0;
        for (int j = 0; j < QK_K; j++) s2 += src[j] * src[j];
        float sigma2 = s2 / QK_K;
        for (int j = 0; j < 16; j++) {
            float sum = 0;
            for (int l = 0; l < 16; l++) w[l] = qw[16 * j + l] * sqrtf(sigma2 + src[16 * j + l] * src[16 * j + l]);
            for (int l = 0; l < 16; l++) sum += w[l];
            sw[j] = sum;
            scales[j] = kfit_min_ref(16, 3, src + 16 * j, w, L + 16 * j, &mins[j], -0.9f, 0.05f, 36, 0);
        }
        float d = k_fit_pos(16, 15, scales, Ls, sw), dmin = k_fit_pos(16, 15, mins, Lm, sw);
        k_store_q2k(src, Ls, Lm, d, dmin, b, L);
    }
}

/* Q3_K weighted: per sub-block of 16 the signed search (make_qx_quants, nmax
 * 4) under qw * sqrt(sigma2 + x^2), sigma2 twice the super-block's mean
 * square; the 6-bit scales by the same search (nmax 32) weighted with each
 * sub-block's weight sum. */
static void quant_w_q3_k(const float *src, void *dst, int64_t n, const float *qw) {
    unsigned char *b = dst;
    for (int64_t ib = 0; ib < n / QK_K; ib++, b += 110, src += QK_K, qw += QK_K) {
        int8_t L[QK_K], Ls8[16];
        uint8_t Ls[16];
        float sw[16], scales[16], w[16], s2 = 0;
        for (int j = 0; j < QK_K; j++) s2 += src[j] * src[j];
        float sigma2 = 2 * s2 / QK_K;
        for (int j = 0; j < 16; j++) {
            float sum = 0;
            for (int l = 0; l < 16; l++) w[l] = qw[16 * j + l] * sqrtf(sigma2 + src[16 * j + l] * src[16 * j + l]);
            for (int l = 0; l < 16; l++) sum += w[l];
            sw[j] = sum;
            scales[j] = k_fit_signed(16, 4, src + 16 * j, L + 16 * j, 1, w);
        }
        float d = k_fit_signed(16, 32, scales, Ls8, 1, sw);
        for (int j = 0; j < 16; j++) Ls[j] = (uint8_t)Ls8[j];
        k_store_q3k(src, Ls, d, b, L);
    }
}

/* Q4_K / Q5_K weighted: (scale, min) per sub-block by the weighted search
 * (make_qkx3_quants: rmin -0.9, step 0.05, 37 trials), then the 6-bit scales
 * and mins by make_qp_quants weighted with each sub-block's weight sum. */
static void k_fit_sb8_w(const float *x, int nmax, const float *qw, unsigned char *dm, unsigned char *scales,
                        uint8_t *L) {
    float s2 = 0;
    for (int l = 0; l < QK_K; l++) s2 += x[l] * x[l];
    float sigma2 = 2 * s2 / QK_K;
    float w[32], sw[8], mins[8], sc[8];
    uint8_t Ls[8], Lm[8];
    for (int j = 0; j < 8; j++) {
        for (int l = 0; l < 32; l++) w[l] = qw[32 * j + l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sum = 0;
        for (int l = 0; l < 32; l++) sum += w[l];
        sw[j] = sum;
        sc[j] = kfit_min_ref(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], -0.9f, 0.05f, 36, 0);
    }
    float d = k_fit_pos(8, 63, sc, Ls, sw), dmin = k_fit_pos(8, 63, mins, Lm, sw);
    k_store_sb8(x, nmax, Ls, Lm, d, dmin, dm, scales, L);
}

static void quant_w_q4_k(const float *src, void *dst, int64_t n, const float *qw) {
    unsigned char *b = dst;
    for (int64_t ib = 0; ib < n / QK_K; ib++, b += 144, src += QK_K, qw += QK_K) {
        uint8_t L[QK_K];
        memset(b + 4, 0, 12);
        k_fit_sb8_w(src, 15, qw, b, b + 4, L);
        k_pack_q4k(L, b + 16);
    }
}

static void quant_w_q5_k(const float *src, void *dst, int64_t n, const float *qw) {
    unsigned char *b = dst;
    for (int64_t ib = 0; ib < n / QK_K; ib++, b += 176, src += QK_K, qw += QK_K) {
        uint8_t L[QK_K];
        memset(b + 4, 0, 12);
        k_fit_sb8_w(src, 31, qw, b, b + 4, L);
        k_pack_q5k(L, b + 16, b + 48);
    }
}

/* Q6_K weighted: the sub-block search weighs by qw alone (ggml's choice). */
static void quant_w_q6_k(const float *src, void *dst, int64_t n, const float *qw) {
    k_quant_q6(src, dst, n, qw);
}

/* === grids: GPTQ chooses the codes, the header stays the fit's === */

int ggml_type_grid(uint32_t type, GgmlGrid *g) {
    switch (type) {
    case GGML_Q8_0: *g = (GgmlGrid){32, 255, 128}; return 0;
    case GGML_Q4_0: *g = (GgmlGrid){32, 15, 8}; return 0;
    case GGML_Q4_1: *g = (GgmlGrid){32, 15, 0}; return 0;
    case GGML_Q5_0: *g = (GgmlGrid){32, 31, 16}; return 0;
    case GGML_Q5_1: *g = (GgmlGrid){32, 31, 0}; return 0;
    case GGML_Q2_K: *g = (GgmlGrid){16, 3, 0}; return 0;
    case GGML_Q3_K: *g = (GgmlGrid){16, 7, 4}; return 0;
    case GGML_Q4_K: *g = (GgmlGrid){32, 15, 0}; return 0;
    case GGML_Q5_K: *g = (GgmlGrid){32, 31, 0}; return 0;
    case GGML_Q6_K: *g = (GgmlGrid){16, 63, 32}; return 0;
    default: return -1;
    }
}

/* The products are the dequantizers' (d * sc first, then times the code), so
 * step * (c - zoff) - offset is bit for bit what they compute; a min m that
 * is added (Q4_1, Q5_1) becomes offset -m. */
void ggml_block_steps(uint32_t type, const void *block, float *step, float *offset) {
    const unsigned char *b = block;
    switch (type) {
    case GGML_Q8_0: case GGML_Q4_0: case GGML_Q5_0:
        step[0] = rd_f16(b);
        offset[0] = 0.0f;
        break;
    case GGML_Q4_1: case GGML_Q5_1:
        step[0] = rd_f16(b);
        offset[0] = -rd_f16(b + 2);
        break;
    case GGML_Q2_K: {
        float d = rd_f16(b + 80), dmin = rd_f16(b + 82);
        for (int j = 0; j < 16; j++) {
            step[j] = d * (float)(b[j] & 0x0F);
            offset[j] = dmin * (float)(b[j] >> 4);
        }
        break;
    }
    case GGML_Q3_K: {
        float d = rd_f16(b + 108);
        for (int j = 0; j < 16; j++) {
            step[j] = d * (float)q3k_scale(b + 96, j);
            offset[j] = 0.0f;
        }
        break;
    }
    case GGML_Q4_K: case GGML_Q5_K: {
        float d = rd_f16(b), dmin = rd_f16(b + 2);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_k4(j, b + 4, &sc, &m);
            step[j] = d * (float)sc;
            offset[j] = dmin * (float)m;
        }
        break;
    }
    case GGML_Q6_K: {
        float d = rd_f16(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int j = 0; j < 16; j++) {
            step[j] = d * (float)sc[j];
            offset[j] = 0.0f;
        }
        break;
    }
    default: break;
    }
}

void ggml_block_put_codes(uint32_t type, void *block, const uint8_t *codes) {
    unsigned char *b = block;
    switch (type) {
    case GGML_Q8_0:
        for (int j = 0; j < 32; j++) b[2 + j] = (unsigned char)(int8_t)((int)codes[j] - 128);
        break;
    case GGML_Q4_0: k_put_codes32(codes, 4, b + 2); break;
    case GGML_Q4_1: k_put_codes32(codes, 4, b + 4); break;
    case GGML_Q5_0: k_put_codes32(codes, 5, b + 2); break;
    case GGML_Q5_1: k_put_codes32(codes, 5, b + 4); break;
    case GGML_Q2_K: k_pack_2bit(codes, b + 16); break;
    case GGML_Q3_K: k_pack_q3k(codes, b, b + 32); break;
    case GGML_Q4_K: k_pack_q4k(codes, b + 16); break;
    case GGML_Q5_K: k_pack_q5k(codes, b + 16, b + 48); break;
    case GGML_Q6_K: k_pack_q6k(codes, b, b + 128); break;
    default: break;
    }
}

/* === table === */

static const GgmlTypeTraits traits_table[GGML_TYPE_LIMIT] = {
    [GGML_F32] = {"F32", 1, 4, dequant_f32, quant_f32},
    [GGML_F16] = {"F16", 1, 2, dequant_f16, quant_f16},
    [GGML_BF16] = {"BF16", 1, 2, dequant_bf16, quant_bf16},
    [GGML_Q4_0] = {"Q4_0", 32, 18, dequant_q4_0, quant_q4_0, quant_w_q4_0},
    [GGML_Q4_1] = {"Q4_1", 32, 20, dequant_q4_1, quant_q4_1, quant_w_q4_1},
    [GGML_Q5_0] = {"Q5_0", 32, 22, dequant_q5_0, quant_q5_0, quant_w_q5_0},
    [GGML_Q5_1] = {"Q5_1", 32, 24, dequant_q5_1, quant_q5_1, quant_w_q5_1},
    [GGML_Q8_0] = {"Q8_0", 32, 34, dequant_q8_0, quant_q8_0, quant_w_q8_0},
    [GGML_Q2_K] = {"Q2_K", QK_K, 84, dequant_q2_k, quant_q2_k, quant_w_q2_k},
    [GGML_Q3_K] = {"Q3_K", QK_K, 110, dequant_q3_k, quant_q3_k, quant_w_q3_k},
    [GGML_Q4_K] = {"Q4_K", QK_K, 144, dequant_q4_k, quant_q4_k, quant_w_q4_k},
    [GGML_Q5_K] = {"Q5_K", QK_K, 176, dequant_q5_k, quant_q5_k, quant_w_q5_k},
    [GGML_Q6_K] = {"Q6_K", QK_K, 210, dequant_q6_k, quant_q6_k, quant_w_q6_k},
    [GGML_Q8_K] = {"Q8_K", QK_K, 292, dequant_q8_k, NULL},
};

const GgmlTypeTraits *ggml_type_traits(uint32_t type) {
    if (type >= GGML_TYPE_LIMIT || !traits_table[type].name) return NULL;
    return &traits_table[type];
}

size_t ggml_row_bytes(uint32_t type, int64_t n) {
    const GgmlTypeTraits *t = ggml_type_traits(type);
    if (!t || n < 0 || n % t->block_size != 0) return 0;
    uint64_t blocks = (uint64_t)(n / t->block_size);
    if (blocks > SIZE_MAX / t->block_bytes) return 0;
    return (size_t)blocks * t->block_bytes;
}
