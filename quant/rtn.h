/* Round-to-nearest quantization for every format and grouping.
 *
 * Integer formats (b bits): symmetric scale = max|w| / qmax with
 * qmax = 2^(b-1)-1 and codes in [-qmax, qmax]; asymmetric (GPTQ's min-max
 * convention) widens [min, max] to include 0, scale = (max-min)/(2^b-1) and an
 * integer zero point z = round(-min/scale) in [0, 2^b-1]. FP8: scale =
 * max|w| / FP8_MAX, codes from core/fpconv.h (round-to-nearest-even,
 * saturating, subnormals). fp16/bf16: plain conversion (grouping ignored).
 * fp32: a copy. Scales are rounded UP to the next fp16 value so they are
 * stored losslessly in 16 bits and never clip the group's range. Rounding of
 * integer codes is to nearest, ties to even. The `sym` flag is ignored for
 * fp8 (always symmetric) and for the 16/32-bit formats; `group` is ignored
 * with GROUP_TENSOR. AQLM is not an RTN format (quant/aqlm quantizes it). */
#ifndef QS_QUANT_RTN_H
#define QS_QUANT_RTN_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/fpconv.h"
#include "core/status.h"
#include "quant/qtensor.h"

/* Checks p against a (n_out, n_in) matrix: known format, group >= 0 and
 * dividing the grouped dimension (n_in for GROUP_OC, n_out for GROUP_IC) for
 * formats with scales. Returns ST_ERR_ARG with a detail like
 * "group 128 does not divide the input dim 172". */
Status qparams_check(const QParams *p, int64_t n_out, int64_t n_in, Err *err);

/* Quantizes W (n_out, n_in) with p into *out (allocated here; release with
 * qtensor_done). Fails with ST_ERR_ARG when the group size does not divide the
 * grouped dimension, ST_ERR_UNSUPPORTED for aqlm, ST_ERR_NUMERIC for a
 * non-finite weight, ST_ERR_RANGE when a scale would overflow fp16. */
Status rtn_quantize(const float *W, int64_t n_out, int64_t n_in, const QParams *p, QTensor *out, Err *err);

/* Quantize-dequantize in one step: Wq (n_out, n_in) receives the values the
 * quantized matrix represents (Wq may equal W). Same errors as rtn_quantize. */
Status rtn_fake_quantize(const float *W, int64_t n_out, int64_t n_in, const QParams *p, float *Wq, Err *err);

/* Writes the represented values of q into W (n_out, n_in). */
void qtensor_dequant(const QTensor *q, float *W);

/* Allocates the arrays of *out for p and the shape (codes zeroed, scales
 * zeroed) without quantizing anything: for quantizers other than RTN (GPTQ)
 * that fill codes and scales themselves. p must pass qparams_check. */
Status qtensor_alloc(QTensor *out, const QParams *p, int64_t n_out, int64_t n_in, Err *err);

/* Frees the arrays of an embedded QTensor and zeroes it; safe on a zeroed one. */
void qtensor_done(QTensor *q);

/* Exact storage bits of a matrix under p: n_out*n_in codes at the format's
 * bits, 16 bits per scale, `bits` bits per zero point (asymmetric integer
 * formats only); 16/32 bits per element for fp16/bf16/fp32. Returns 0 for
 * aqlm (its size depends on codebook parameters: see plan.h). */
int64_t qparams_bits(const QParams *p, int64_t n_out, int64_t n_in);

/* Exact storage bytes: ceil(code bits / 8) + 2 * n_groups + ceil(zero bits / 8)
 * (each section packed on its own). 0 for aqlm. */
size_t qparams_bytes(const QParams *p, int64_t n_out, int64_t n_in);

/* === Per-group primitives shared with GPTQ === */

/* Fits one group's parameters for values in [lo, hi] (lo <= hi, finite):
 * *scale (fp16-representable, 0 when the group is all zeros) and *zero
 * (asymmetric integer formats; else 0). Returns ST_ERR_RANGE if the scale
 * overflows fp16, ST_ERR_ARG for a format without scales. */
Status rtn_fit_group(QFormat f, int sym, float lo, float hi, float *scale, float *zero, Err *err);

/* Quantizes one value with a fitted group: returns the represented value and
 * stores the code in *code (int code as stored in QTensor.q, or fp8 bits).
 * f must be an integer or fp8 format. */
float rtn_quant_value(QFormat f, int sym, float scale, float zero, float w, int *code);

/* The value a code represents under (scale, zero); inverse of rtn_quant_value. */
float rtn_dequant_value(QFormat f, int sym, float scale, float zero, int code);

/* Round to nearest, ties to even, for |x| < 2^22 (codes are within +-255):
 * adding 1.5*2^23 pushes the fraction out of the mantissa under the default
 * rounding mode (the project never builds with -ffast-math). */
static inline float rtn_round_even(float x) {
    const float b = 12582912.0f;
    return (x + b) - b;
}

/* rtn_quant_value for hot loops: bits = the format's bits. */
static inline float rtn_quant_inline(QFormat f, int bits, int sym, float scale, float zero, float w, int *code) {
    if (f == QF_FP8_E4M3 || f == QF_FP8_E5M2) {
        if (scale == 0.0f) { *code = 0; return 0.0f; }
        uint8_t c = f == QF_FP8_E4M3 ? f32_to_fp8_e4m3(w / scale) : f32_to_fp8_e5m2(w / scale);
        *code = c;
        return (f == QF_FP8_E4M3 ? fp8_e4m3_to_f32(c) : fp8_e5m2_to_f32(c)) * scale;
    }
    if (sym) {
        if (scale == 0.0f) { *code = 0; return 0.0f; }
        float qmax = (float)((1 << (bits - 1)) - 1);
        float x = rtn_round_even(fminf(fmaxf(w / scale, -qmax), qmax));
        *code = (int)x;
        return x * scale;
    }
    int half = 1 << (bits - 1);
    if (scale == 0.0f) { *code = (int)zero - half; return 0.0f; }
    float maxq = (float)((1 << bits) - 1);
    float x = rtn_round_even(fminf(fmaxf(w / scale + zero, 0.0f), maxq));
    *code = (int)x - half;
    return (x - zero) * scale;
}

/* Rounds a positive finite value up to the nearest fp16-representable float;
 * returns +inf when it exceeds the fp16 range. */
float rtn_fp16_ceil(float x);

#endif
