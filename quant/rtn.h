/* Round-to-nearest quantization for every format and grouping. */
#ifndef QS_QUANT_RTN_H
#define QS_QUANT_RTN_H

#include <stdint.h>

#include "core/status.h"
#include "quant/qtensor.h"

/* Quantizes W (n_out, n_in) with p into *out (allocated here; release with
 * qtensor_done). Fails with ST_ERR_ARG when the group size does not divide the
 * grouped dimension or the format is not a weight format handled by RTN. */
Status rtn_quantize(const float *W, int64_t n_out, int64_t n_in, const QParams *p, QTensor *out, Err *err);

/* Quantize-dequantize in one step: Wq (n_out, n_in) receives the values the
 * quantized matrix represents. Same errors as rtn_quantize. */
Status rtn_fake_quantize(const float *W, int64_t n_out, int64_t n_in, const QParams *p, float *Wq, Err *err);

/* Writes the represented values of q into W (n_out, n_in). */
void qtensor_dequant(const QTensor *q, float *W);

/* Frees the arrays of an embedded QTensor; safe on a zeroed one. */
void qtensor_done(QTensor *q);

/* Exact storage bytes of a matrix under p: codes packed at the format's bits,
 * fp16 scales, zero points packed at the format's bits. */
size_t qparams_bytes(const QParams *p, int64_t n_out, int64_t n_in);

#endif
