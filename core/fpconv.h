/* Scalar conversions between float and the 16- and 8-bit float formats.
 * These are the reference definitions; vector kernels must agree with them. */
#ifndef QS_CORE_FPCONV_H
#define QS_CORE_FPCONV_H

#include <stdint.h>

/* IEEE binary16 <-> float, round-to-nearest-even, inf/NaN preserved. */
float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);

/* bfloat16 <-> float, round-to-nearest-even (NaN stays NaN). */
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

/* OCP FP8 E4M3 (bias 7, max 448, no inf, NaN = S.1111.111) and
 * E5M2 (bias 15, max 57344, IEEE-like inf/NaN). Encoding rounds to nearest
 * even and saturates finite values to +-max (the usual "satfinite" mode used
 * for quantization); NaN maps to NaN. */
float fp8_e4m3_to_f32(uint8_t v);
uint8_t f32_to_fp8_e4m3(float f);
float fp8_e5m2_to_f32(uint8_t v);
uint8_t f32_to_fp8_e5m2(float f);

#define FP8_E4M3_MAX 448.0f
#define FP8_E5M2_MAX 57344.0f

#endif
