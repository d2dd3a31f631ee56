#include "core/fpconv.h"

#include <math.h>
#include <string.h>

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (man << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_fp16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) {
        /* subnormal half: value = m * 2^-24, round to nearest even */
        float a = bits_f32(ax);
        float m = a * 16777216.0f; /* exact scaling by 2^24 */
        float r = nearbyintf(m);   /* default rounding mode is nearest-even */
        return (uint16_t)(sign | (uint16_t)r);
    }
    uint32_t e = ((ax >> 23) - 112) << 10;
    uint32_t m = (ax >> 13) & 0x3ff;
    uint32_t rest = ax & 0x1fff;
    uint32_t h = e | m;
    if (rest > 0x1000 || (rest == 0x1000 && (m & 1))) h++;
    return (uint16_t)(sign | h);
}

float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* Generic small-float decode: ebits exponent bits, mbits mantissa bits. */
static float fp8_decode(uint8_t v, int ebits, int mbits, int bias) {
    int sign = v >> 7;
    int e = (v >> mbits) & ((1 << ebits) - 1);
    int m = v & ((1 << mbits) - 1);
    float r;
    if (e == 0) r = ldexpf((float)m, 1 - bias - mbits);
    else r = ldexpf((float)((1 << mbits) | m), e - bias - mbits);
    return sign ? -r : r;
}

float fp8_e4m3_to_f32(uint8_t v) {
    if ((v & 0x7f) == 0x7f) return NAN;
    return fp8_decode(v, 4, 3, 7);
}

float fp8_e5m2_to_f32(uint8_t v) {
    int e = (v >> 2) & 0x1f;
    if (e == 31) {
        if (v & 3) return NAN;
        return (v & 0x80) ? -INFINITY : INFINITY;
    }
    return fp8_decode(v, 5, 2, 15);
}

/* Round |f| to the nearest representable value with ebits/mbits/bias, ties to
 * even, saturating at max_code (the largest finite magnitude code). */
static uint8_t fp8_encode(float f, int ebits, int mbits, int bias, uint8_t max_code, float maxv) {
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= maxv) return (uint8_t)(sign | max_code);
    int min_exp = 1 - bias; /* exponent of the smallest normal */
    int ex;
    frexpf(a, &ex);          /* a = frac * 2^ex, frac in [0.5,1) */
    int e = ex - 1;          /* a = 1.xxx * 2^e */
    if (a == 0.0f) return sign;
    if (e < min_exp) e = min_exp; /* subnormal: fixed quantum */
    float quantum = ldexpf(1.0f, e - mbits);
    float q = nearbyintf(a / quantum); /* ties to even on the mantissa LSB */
    float r = q * quantum;
    if (r >= maxv) return (uint8_t)(sign | max_code);
    /* re-encode r exactly */
    if (r == 0.0f) return sign;
    frexpf(r, &ex);
    e = ex - 1;
    int code;
    if (e < min_exp) {
        code = (int)(r / ldexpf(1.0f, min_exp - mbits));
    } else {
        int man = (int)(ldexpf(r, mbits - e)) - (1 << mbits);
        code = ((e + bias) << mbits) | man;
    }
    (void)ebits;
    return (uint8_t)(sign | code);
}

uint8_t f32_to_fp8_e4m3(float f) {
    if (isnan(f)) return 0x7f;
    return fp8_encode(f, 4, 3, 7, 0x7e, FP8_E4M3_MAX);
}

uint8_t f32_to_fp8_e5m2(float f) {
    if (isnan(f)) return 0x7f;
    return fp8_encode(f, 5, 2, 15, 0x7b, FP8_E5M2_MAX);
}
