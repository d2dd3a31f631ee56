/* Activation quantization in front of a quantized linear layer: int8 codes
 * for the W8A8 integer GEMM, and exact fake quantization (quantize then
 * dequantize, same rounding as the real path) for activation formats that
 * have no native kernel (fp8, or int8 in front of non-int8 weights).
 *
 * Rules, shared by every path so the fake and the real agree bit for bit:
 *  - range r = max|x| over the rows that define the scale: each row
 *    (per-token) or all rows of the call (per-tensor), or the calibrated
 *    static_absmax (static; always per-tensor);
 *  - int8: s = r / 127, q = clamp(rint(x / s), -127, 127) (round half to
 *    even), value = q * s; r == 0 gives s = 0 and q = 0;
 *  - fp8: s = r / FP8_MAX (448 for E4M3, 57344 for E5M2),
 *    value = fp8_to_f32(f32_to_fp8(x / s)) * s (core/fpconv.h: RNE,
 *    saturating);
 *  - skip_first: when the scale is a dynamic per-tensor one and the call's
 *    first row is token 0 of its sequence (pos0 == 0) and T > 1, row 0 is
 *    left out of the range (the spike-aware paper's protocol: the attention
 *    sink's massive activations would otherwise set the scale). Row 0 is then
 *    quantized with that scale and so clamped to [-r, r]. With T == 1 there is
 *    nothing else to take the range from, so token 0 keeps its own range.
 *    Per-token and static scales are not affected by skip_first. */
#ifndef QS_KERNELS_ACTQUANT_H
#define QS_KERNELS_ACTQUANT_H

#include <stdint.h>

#include "core/pool.h"

/* The activation format in front of a linear layer: the one enum of the plan
 * (quant/plan.h PlanEntry.act), these kernels and calibration's activation
 * error statistics (analysis/stats.h, whose per-format tables are indexed by
 * it and leave the ACT_NONE row unused). */
typedef enum { ACT_NONE, ACT_INT8, ACT_FP8_E4M3, ACT_FP8_E5M2, ACT_COUNT } ActFormat;

typedef struct ActQuant {
    ActFormat fmt;
    int per_token;           /* 1: one scale per row; 0: one per call (tensor) */
    int is_static;           /* 1: range = static_absmax (implies per-tensor) */
    float static_absmax;     /* calibrated max|x| for static scales */
    int skip_first;          /* leave token 0 out of a dynamic per-tensor range */
} ActQuant;

/* Returns "none", "int8", "fp8-e4m3", "fp8-e5m2" (static), or "?" when out of
 * range: the formats' one name table (quant/plan.h act_format_parse reads it). */
const char *act_format_name(ActFormat f);

/* Returns the largest code magnitude of f: 127, 448, 57344 (0 for NONE). */
float actq_qmax(ActFormat f);

/* Returns max|x[i]| over n floats (0 for n == 0; NaN when any x is NaN):
 * AVX-512, AVX2 or scalar, the same value. */
float actq_absmax(const float *x, int64_t n);
float actq_absmax_ref(const float *x, int64_t n);

/* Fills scale (T) with the per-row scales aq gives x (T, K) whose row 0 sits
 * at sequence position pos0 (equal values for per-tensor scales). */
void actq_scales(const ActQuant *aq, const float *x, int64_t T, int64_t K, int64_t pos0, float *scale);

/* Quantizes one row of n floats to int8 with scale s (rule above) into q.
 * The fast version uses AVX-512 or AVX2 when available; all give identical codes. */
void actq_int8_row(const float *x, int64_t n, float s, int8_t *q);
void actq_int8_row_ref(const float *x, int64_t n, float s, int8_t *q);

/* int8 codes for x (T, K): q (T, ldq) receives the codes in columns [0, K)
 * and zeros in [K, ldq); scale (T) the per-row scales. aq->fmt must be INT8.
 * Rows are split over pool (may be NULL). */
void actq_quantize_int8(const ActQuant *aq, const float *x, int64_t T, int64_t K, int64_t pos0,
                        int8_t *q, int64_t ldq, float *scale, Pool *pool);

/* Fake quantization: out (T, K) = the values x (T, K) takes after quantizing
 * with aq and dequantizing (copy for ACT_NONE). out may equal x. Rows are
 * split over pool (may be NULL). */
void actq_fake(const ActQuant *aq, const float *x, int64_t T, int64_t K, int64_t pos0, float *out, Pool *pool);

/* One row of n values with scale s (rule above): the scalar reference through
 * core/fpconv.h's encoders, and the AVX-512 version (callers check
 * cpu_has_avx512f()), bit-equal for every finite input (a NaN input gives
 * ±max·s on the vector path, NaN on the reference). */
void actq_fake_row_ref(ActFormat fmt, const float *x, int64_t n, float s, float *out);
void actq_fake_row_avx512(ActFormat fmt, const float *x, int64_t n, float s, float *out);

/* === Activation-quantization error, for calibration's statistics === */

/* Scales per format the error kernels take at once: calibration's modes
 * (tensor static, tensor dynamic, token dynamic; analysis/stats.h ActMode). */
#define ACTQ_ERR_SCALES 3

/* Quantize-dequantize x with scale s (inv = 1/s, or 0 when s == 0). */
float actq_quant(ActFormat f, float x, float s, float inv);

/* Adds Σ(x_i - Q(x_i))² over n values to err[f][m] for every format f and
 * scale column m (calibration's modes, analysis/stats.h ActMode), with scale s[f][m] and inverse inv[f][m] (0 when the scale is 0).
 * actq_err_row runs an AVX-512 kernel when cpu_has_avx512f(), else SSE2 (the
 * x86-64 baseline); actq_err_row_ref is the scalar twin: elementwise
 * identical, sums differ only by summation order (float lanes folded into
 * double: relative 1e-6). */
void actq_err_row(const float *x, int64_t n, const float s[ACT_COUNT][ACTQ_ERR_SCALES],
                  const float inv[ACT_COUNT][ACTQ_ERR_SCALES], double err[ACT_COUNT][ACTQ_ERR_SCALES]);
void actq_err_row_ref(const float *x, int64_t n, const float s[ACT_COUNT][ACTQ_ERR_SCALES],
                      const float inv[ACT_COUNT][ACTQ_ERR_SCALES], double err[ACT_COUNT][ACTQ_ERR_SCALES]);

/* Round v to the nearest fp8 value (ties to even), saturating at ±max;
 * equals fp8_*_to_f32(f32_to_fp8_*(v)) for finite v: a branch-free bit form
 * whose SSE2 and AVX-512 lanes (here and in actq_fake_row_avx512) are the
 * same operations. NaN saturates (callers refuse non-finite input first). */
float actq_fp8_round_e4m3(float v);
float actq_fp8_round_e5m2(float v);

#endif
