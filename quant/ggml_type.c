/* ggml storage types: block layouts, dequantization and the reference
 * quantizers, written from ggml's published definitions (ggml-common.h /
 * ggml-quants.c). Blocks are decoded byte by byte (little-endian), so the code
 * neither depends on host struct packing nor on host byte order. */
#include "quant/ggml_type.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/fpconv.h"

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

static void dequant_q4_0(const void *src, float *dst, int64_t n) {
    const unsigned char *b = src;
    for (int64_t i = 0; i < n / 32; i++, b += 18, dst += 32) {
        float d = rd_f16(b);
        const unsigned char *qs = b + 2;
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)((qs[j] & 0x0F) - 8) * d;
            dst[j + 16] = (float)((qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequant_q4_1(const void *src, float *dst, int64_t n) {
    const unsigned char *b = src;
    for (int64_t i = 0; i < n / 32; i++, b += 20, dst += 32) {
        float d = rd_f16(b), m = rd_f16(b + 2);
        const unsigned char *qs = b + 4;
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)(qs[j] & 0x0F) * d + m;
            dst[j + 16] = (float)(qs[j] >> 4) * d + m;
        }
    }
}

static void dequant_q5_0(const void *src, float *dst, int64_t n) {
    const unsigned char *b = src;
    for (int64_t i = 0; i < n / 32; i++, b += 22, dst += 32) {
        float d = rd_f16(b);
        uint32_t qh = rd_u32le(b + 2);
        const unsigned char *qs = b + 6;
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1u) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            dst[j] = (float)(((qs[j] & 0x0F) | h0) - 16) * d;
            dst[j + 16] = (float)(((qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

static void dequant_q5_1(const void *src, float *dst, int64_t n) {
    const unsigned char *b = src;
    for (int64_t i = 0; i < n / 32; i++, b += 24, dst += 32) {
        float d = rd_f16(b), m = rd_f16(b + 2);
        uint32_t qh = rd_u32le(b + 4);
        const unsigned char *qs = b + 8;
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1u) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            dst[j] = (float)((qs[j] & 0x0F) | h0) * d + m;
            dst[j + 16] = (float)((qs[j] >> 4) | h1) * d + m;
        }
    }
}

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

/* ggml's quantize_row_q4_0_ref: d = (signed value of largest magnitude) / -8,
 * q = min(15, trunc(x/d + 8.5)), so the extreme maps to 0 exactly. */
static void quant_q4_0(const float *src, void *dst, int64_t n) {
    unsigned char *b = dst;
    for (int64_t i = 0; i < n / 32; i++, b += 18, src += 32) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (amax < fabsf(src[j])) {
                amax = fabsf(src[j]);
                max = src[j];
            }
        }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        wr_f16(b, d);
        for (int j = 0; j < 16; j++) {
            int q0 = (int)(int8_t)(src[j] * id + 8.5f);
            int q1 = (int)(int8_t)(src[j + 16] * id + 8.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            b[2 + j] = (unsigned char)(q0 | (q1 << 4));
        }
    }
}

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
 * each 32 bytes of qs hold two sub-blocks (low nibbles, then high). */
static void dequant_q4_k(const void *src, float *dst, int64_t n) {
    const unsigned char *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 144) {
        float d = rd_f16(b), dmin = rd_f16(b + 2);
        const unsigned char *scales = b + 4, *q = b + 16;
        for (int j = 0; j < 8; j += 2, q += 32) {
            int sc, m;
            scale_min_k4(j, scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min_k4(j + 1, scales, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (float)(q[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Q5_K {f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: as Q4_K with
 * a fifth bit: sub-block j takes bit j of qh[l]. */
static void dequant_q5_k(const void *src, float *dst, int64_t n) {
    const unsigned char *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, b += 176) {
        float d = rd_f16(b), dmin = rd_f16(b + 2);
        const unsigned char *scales = b + 4, *qh = b + 16, *ql = b + 48;
        for (int j = 0; j < 8; j += 2, ql += 32) {
            int sc, m;
            scale_min_k4(j, scales, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min_k4(j + 1, scales, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            unsigned u1 = 1u << j, u2 = 1u << (j + 1);
            for (int l = 0; l < 32; l++) *dst++ = d1 * (float)((ql[l] & 0x0F) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

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

/* === table === */

static const GgmlTypeTraits traits_table[GGML_TYPE_LIMIT] = {
    [GGML_F32] = {"F32", 1, 4, dequant_f32, quant_f32},
    [GGML_F16] = {"F16", 1, 2, dequant_f16, quant_f16},
    [GGML_BF16] = {"BF16", 1, 2, dequant_bf16, quant_bf16},
    [GGML_Q4_0] = {"Q4_0", 32, 18, dequant_q4_0, quant_q4_0},
    [GGML_Q4_1] = {"Q4_1", 32, 20, dequant_q4_1, NULL},
    [GGML_Q5_0] = {"Q5_0", 32, 22, dequant_q5_0, NULL},
    [GGML_Q5_1] = {"Q5_1", 32, 24, dequant_q5_1, NULL},
    [GGML_Q8_0] = {"Q8_0", 32, 34, dequant_q8_0, quant_q8_0},
    [GGML_Q2_K] = {"Q2_K", QK_K, 84, dequant_q2_k, NULL},
    [GGML_Q3_K] = {"Q3_K", QK_K, 110, dequant_q3_k, NULL},
    [GGML_Q4_K] = {"Q4_K", QK_K, 144, dequant_q4_k, NULL},
    [GGML_Q5_K] = {"Q5_K", QK_K, 176, dequant_q5_k, NULL},
    [GGML_Q6_K] = {"Q6_K", QK_K, 210, dequant_q6_k, NULL},
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
