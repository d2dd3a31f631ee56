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
#include <string.h>

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

/* rtn_quantize for a ggml block format with importance weights qw (n_in,
 * one per input column: ggml's quant_weights, as llama-quantize --imatrix
 * passes them). ST_ERR_UNSUPPORTED when the format has no weighted
 * quantizer (not a ggml format). */
Status rtn_quantize_weighted(const float *W, int64_t n_out, int64_t n_in, const QParams *p, const float *qw,
                             QTensor *out, Err *err);

/* Quantize-dequantize in one step: Wq (n_out, n_in) receives the values the
 * quantized matrix represents (Wq may equal W). Same errors as rtn_quantize. */
Status rtn_fake_quantize(const float *W, int64_t n_out, int64_t n_in, const QParams *p, float *Wq, Err *err);

/* rtn_fake_quantize one row subset at a time, for estimates on a row
 * subsample (analysis/sensitivity.c): rtn_fit fits the group parameters of
 * W (n_out, n_in) under p on all of its rows (nothing for ggml and plain
 * formats, whose rows are independent); rtn_fit_rows then writes into Wq
 * (n_rows, n_in) rows rows[0..n_rows) of what rtn_fake_quantize(W) would
 * write, the same values bit for bit. W must be the matrix f was fitted on
 * and must not overlap Wq. Errors: rtn_quantize's, plus ST_ERR_ARG for a row
 * out of range. Release with rtn_fit_done (safe on a zeroed RtnFit). */
typedef struct RtnFit {
    QParams p;
    int64_t n_out, n_in, n_groups;
    float *scale, *zero;     /* (n_groups); NULL for ggml and plain formats */
} RtnFit;
Status rtn_fit(const float *W, int64_t n_out, int64_t n_in, const QParams *p, RtnFit *out, Err *err);
Status rtn_fit_rows(const RtnFit *f, const float *W, const int64_t *rows, int64_t n_rows, float *Wq, Err *err);
void rtn_fit_done(RtnFit *f);
/* rtn_fit in two steps, so that formats sharing a grouping share the pass
 * over W: rtn_ranges writes the min and max of every group of W under p's
 * grouping (dim and group; the format does not matter) into lo and hi
 * (qparams_n_groups(p, n_out, n_in) each, caller-owned), with rtn_fit's
 * finiteness check; rtn_fit_ranges then fits format p->fmt from them: the
 * same RtnFit, bit for bit, as rtn_fit(W, n_out, n_in, p) when the ranges
 * were taken under the same dim and group. lo and hi are read only during
 * the call. */
Status rtn_ranges(const float *W, int64_t n_out, int64_t n_in, const QParams *p, float *lo, float *hi, Err *err);
Status rtn_fit_ranges(const QParams *p, int64_t n_out, int64_t n_in, const float *lo, const float *hi, RtnFit *out,
                      Err *err);

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

/* Clamps x to [lo, hi] with plain compares (fminf/fmaxf are library calls
 * without -ffast-math); NaN maps to lo, so a code is always in range. */
static inline float rtn_clamp(float x, float lo, float hi) {
    x = x > lo ? x : lo;
    return x < hi ? x : hi;
}

/* Bit-level fp8 codecs for hot loops; they equal core/fpconv.h's reference
 * conversions on every input (tests/test_quant.c sweeps them). e4 selects
 * E4M3 (else E5M2). Encoding saturates finite and infinite values to +-max
 * and maps NaN to 0x7f, as fpconv does. */
static inline uint8_t rtn_fp8_encode(float f, int e4) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t sign = (uint8_t)(u >> 24 & 0x80);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return 0x7f;
    float a;
    memcpy(&a, &u, 4);
    int mb = e4 ? 3 : 2, bias = e4 ? 7 : 15;
    if (a >= (e4 ? 448.0f : 57344.0f)) return (uint8_t)(sign | (e4 ? 0x7e : 0x7b));
    if (u < (uint32_t)(127 + 1 - bias) << 23) {
        /* below the smallest normal: codes k * 2^(1-bias-mb), k <= 2^mb, and
         * k = 2^mb is exactly the smallest normal's code */
        float k = rtn_round_even(a * (e4 ? 512.0f : 65536.0f));
        return (uint8_t)(sign | (uint8_t)k);
    }
    int drop = 23 - mb;
    u += ((1u << (drop - 1)) - 1) + ((u >> drop) & 1); /* round to nearest even at bit `drop` */
    int e = (int)(u >> 23) - 127 + bias;
    return (uint8_t)(sign | (e << mb) | ((u >> drop) & ((1u << mb) - 1)));
}

static inline float rtn_fp8_decode(uint8_t c, int e4) {
    int mb = e4 ? 3 : 2, bias = e4 ? 7 : 15;
    int e = (c & 0x7f) >> mb, m = c & ((1 << mb) - 1);
    uint32_t u;
    if (e4 ? (c & 0x7f) == 0x7f : e == 31) {
        u = m || e4 ? 0x7fc00000u : 0x7f800000u; /* NaN, or E5M2's inf */
    } else if (e == 0) {
        float v = (float)m * (e4 ? 1.0f / 512.0f : 1.0f / 65536.0f);
        return c & 0x80 ? -v : v;
    } else {
        u = (uint32_t)(e - bias + 127) << 23 | (uint32_t)m << (23 - mb);
    }
    u |= (uint32_t)(c & 0x80) << 24;
    float v;
    memcpy(&v, &u, 4);
    return v;
}

/* rtn_quant_value for hot loops, per family: integer codes of `bits` bits. */
static inline float rtn_quant_int_inline(int bits, int sym, float scale, float zero, float w, int *code) {
    if (sym) {
        if (scale == 0.0f) { *code = 0; return 0.0f; }
        float qmax = (float)((1 << (bits - 1)) - 1);
        float x = rtn_clamp(w / scale, -qmax, qmax);
        x = rtn_round_even(x);
        *code = (int)x;
        return x * scale;
    }
    int half = 1 << (bits - 1);
    if (scale == 0.0f) { *code = (int)zero - half; return 0.0f; }
    float maxq = (float)((1 << bits) - 1);
    float x = rtn_round_even(rtn_clamp(w / scale + zero, 0.0f, maxq));
    *code = (int)x - half;
    return (x - zero) * scale;
}

/* fp8 codes (e4: E4M3, else E5M2) with a scale. */
static inline float rtn_quant_fp8_inline(int e4, float scale, float w, int *code) {
    if (scale == 0.0f) { *code = 0; return 0.0f; }
    uint8_t c = rtn_fp8_encode(w / scale, e4);
    *code = c;
    return rtn_fp8_decode(c, e4) * scale;
}

/* Rounds a positive finite value up to the nearest fp16-representable float;
 * returns +inf when it exceeds the fp16 range. */
float rtn_fp16_ceil(float x);

#endif
