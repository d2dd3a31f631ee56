/* A quantized weight matrix in unpacked form (one code per element plus group
 * scales / zero points): what the quantizers (RTN, GPTQ, AdaDim) produce and
 * what the kernel packers and the size accounting consume.
 *
 * Group layout (W is (n_out, n_in), element (r, c)); let go = group size along
 * the grouped dimension with 0 meaning "the whole row/column":
 *  - GROUP_TENSOR: n_groups = 1, index 0.
 *  - GROUP_OC: scales (n_out, n_in / go), index r * (n_in / go) + c / go
 *    (go = n_in when group == 0: one scale per row).
 *  - GROUP_IC: scales (n_out / go, n_in), index (r / go) * n_in + c
 *    (go = n_out when group == 0: one scale per column). A row's scales are
 *    contiguous, which is what a row-by-row dequant kernel wants.
 *
 * Values: for integer formats w = scale * (q + zoff - zero) with
 * zoff = 2^(bits-1) for asymmetric and zoff = zero = 0 for symmetric; for
 * fp8 w = decode(f8) * scale; for fp16/bf16 w = decode(h); for f32 w = f;
 * for ggml block formats, what quant/ggml_type.h's dequantizer makes of blk.
 * Every scale the quantizers write is exactly representable in fp16 (rounded
 * up so the range is never clipped), so packers may store them as fp16
 * without changing a single dequantized value. */
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
    int64_t n_groups;        /* 0 for fp16/bf16/f32 (no scales) */
    int8_t *q;               /* (n_out, n_in) int codes: sym in [-(2^(b-1)-1), 2^(b-1)-1];
                                asym codes c in [0, 2^b-1] are stored as c - 2^(b-1) */
    uint8_t *f8;             /* (n_out, n_in) fp8 codes, for fp8 formats */
    uint16_t *h;             /* (n_out, n_in) fp16/bf16 bits, for 16-bit formats */
    float *f;                /* (n_out, n_in) plain copy, for QF_F32 */
    uint8_t *blk;            /* (n_out, ggml_row_bytes(type, n_in)) ggml blocks, for QFAM_GGML
                                formats: scales inside, no n_groups */
    float *scale;            /* (n_groups) fp16-representable, see the layout above */
    float *zero;             /* (n_groups) integer-valued zero points in [0, 2^b-1]
                                (asym only), else NULL */
} QTensor;

/* Group size along the grouped dimension (n_in for OC, n_out for IC, the
 * whole matrix for TENSOR), resolving group == 0. */
static inline int64_t qparams_group_len(const QParams *p, int64_t n_out, int64_t n_in) {
    if (p->dim == GROUP_OC) return p->group ? p->group : n_in;
    if (p->dim == GROUP_IC) return p->group ? p->group : n_out;
    return n_out * n_in;
}

/* Number of scale groups of a valid (checked) QParams; 0 for formats
 * without scales. */
static inline int64_t qparams_n_groups(const QParams *p, int64_t n_out, int64_t n_in) {
    const QFormatTraits *t = qformat_traits(p->fmt);
    if (!t || !t->needs_scale) return 0;
    if (p->dim == GROUP_OC) return n_out * (n_in / qparams_group_len(p, n_out, n_in));
    if (p->dim == GROUP_IC) return n_in * (n_out / qparams_group_len(p, n_out, n_in));
    return 1;
}

/* The array holding q's codes (by its format's QStore), NULL for none. */
static inline void *qtensor_codes(const QTensor *q) {
    const QFormatTraits *t = qformat_traits(q->p.fmt);
    switch (t ? t->store : QSTORE_NONE) {
    case QSTORE_I8: return q->q;
    case QSTORE_U8: return q->f8;
    case QSTORE_U16: return q->h;
    case QSTORE_F32: return q->f;
    case QSTORE_BLOCKS: return q->blk;
    default: return NULL;
    }
}

/* Group index of element (r, c) (see the layout above). */
static inline int64_t qtensor_group_of(const QParams *p, int64_t n_out, int64_t n_in, int64_t r, int64_t c) {
    if (p->dim == GROUP_OC) {
        int64_t g = qparams_group_len(p, n_out, n_in);
        return r * (n_in / g) + c / g;
    }
    if (p->dim == GROUP_IC) return (r / qparams_group_len(p, n_out, n_in)) * n_in + c;
    return 0;
}

#endif
