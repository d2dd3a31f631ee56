/* A quantized weight matrix in unpacked form (one code per element plus group
 * scales / zero points): what the quantizers (RTN, GPTQ, AdaDim) produce and
 * what the kernel packers and the size accounting consume. */
#ifndef QS_QUANT_QTENSOR_H
#define QS_QUANT_QTENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "quant/format.h"

typedef struct QParams {
    QFormat fmt;
    int sym;                 /* 1 symmetric (no zero point), 0 asymmetric */
    GroupDim dim;
    int64_t group;           /* 0 = whole row/column (per-OC / per-IC) */
} QParams;

typedef struct QTensor {
    QParams p;
    int64_t n_out, n_in;
    int64_t n_groups;
    int8_t *q;               /* (n_out, n_in) int codes: sym in [-(2^(b-1)-1), 2^(b-1)-1];
                                asym codes c in [0, 2^b-1] are stored as c - 2^(b-1) */
    uint8_t *f8;             /* (n_out, n_in) fp8 codes, for fp8 formats */
    uint16_t *h;             /* (n_out, n_in) fp16/bf16 bits, for 16-bit formats */
    float *scale;            /* (n_groups) */
    float *zero;             /* (n_groups) integer-valued zero points (asym only), else NULL */
} QTensor;

#endif
