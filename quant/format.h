/* The plan's weight/activation formats: one traits table read by the planner,
 * the size budget, the UI, the quantizers and the kernels alike (ggml's
 * type_traits idea). A format is a row: its data (name, bits, flags, where
 * its codes live, its place in the editor's cycle and the sensitivity map, its
 * llama.cpp export target) and its behaviour (fit a group, quantize and
 * dequantize a value, convert plain values, pack for the kernel) as function
 * pointers, so adding a format is a row plus its kernels.
 *
 * Grouping terminology (AdaDim): W is (n_out, n_in).
 *  - GROUP_TENSOR: one scale for the whole matrix.
 *  - GROUP_OC: scales belong to output channels (rows). group == 0: one scale
 *    per row ("per-OC"); group == g: each row is cut into runs of g input
 *    elements ("oc128" = the usual GPTQ/AWQ group-wise layout).
 *  - GROUP_IC: scales belong to input channels (columns). group == 0: one scale
 *    per column ("per-IC"); group == g: each column is cut into runs of g output
 *    elements ("ic64"), so an outlier input channel gets scales of its own. */
#ifndef QS_QUANT_FORMAT_H
#define QS_QUANT_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* The numeric values are stored in quantized-model files (sessions/qmodel_file.h):
 * append new formats before QF_COUNT, never reorder. */
typedef enum {
    QF_F32, QF_F16, QF_BF16, QF_FP8_E4M3, QF_FP8_E5M2,
    QF_INT8, QF_INT6, QF_INT5, QF_INT4, QF_INT3, QF_INT2,
    QF_AQLM,
    QF_Q8_0, QF_Q4_0, QF_Q4_1, QF_Q5_0, QF_Q5_1, QF_Q2_K, QF_Q3_K, QF_Q4_K, QF_Q5_K, QF_Q6_K,
    QF_COUNT
} QFormat;

typedef enum { GROUP_TENSOR, GROUP_OC, GROUP_IC, GROUP_COUNT } GroupDim;

/* How a format's codes are read. */
typedef enum {
    QFAM_FLOAT,              /* plain values (fp32/fp16/bf16), no scales */
    QFAM_INT,                /* integer grid with group scales (and zero points if asymmetric) */
    QFAM_FP8,                /* 8-bit float codes with group scales */
    QFAM_AQLM,               /* additive codebooks (quant/aqlm.h): no per-element codes here */
    QFAM_GGML                /* ggml blocks (quant/ggml_type.h): the codes are the packed blocks,
                                scales inside; no plan grouping */
} QFamily;

/* Which array of a QTensor (quant/qtensor.h) holds the codes. */
typedef enum { QSTORE_NONE, QSTORE_I8, QSTORE_U8, QSTORE_U16, QSTORE_F32, QSTORE_BLOCKS } QStore;

struct QFormatTraits;
struct QTensor;
struct WqMatrix;

/* Fits one group's scale (fp16-representable, 0 for an all-zero group) and
 * zero point (asymmetric integer formats; else 0) for values in [lo, hi]
 * (finite, lo <= hi). ST_ERR_RANGE when the scale overflows fp16. */
typedef Status (*QFitFn)(const struct QFormatTraits *t, int sym, float lo, float hi, float *scale, float *zero,
                         Err *err);
/* Quantizes w with a fitted group: returns the represented value and stores
 * the code (as QTensor holds it: centred int code, or fp8 bits) in *code. */
typedef float (*QQuantFn)(const struct QFormatTraits *t, int sym, float scale, float zero, float w, int *code);
/* quant over n values: scale/zero advance by sstep per element (0: one group,
 * 1: a scale per element); codes (one byte each) and wq (values) may be NULL. */
typedef void (*QQuantSpanFn)(const struct QFormatTraits *t, int sym, const float *scale, const float *zero,
                             int64_t sstep, const float *w, int64_t n, uint8_t *codes, float *wq);
/* The value a code represents under (scale, zero); inverse of quant. */
typedef float (*QDequantFn)(const struct QFormatTraits *t, int sym, float scale, float zero, int code);
/* Plain formats: n values to stored codes, and back. */
typedef void (*QConvertFn)(const float *w, void *codes, size_t n);
typedef void (*QDecodeFn)(const void *codes, float *w, size_t n);
/* Packs a checked QTensor of this format for kernels/wq_gemm.h's weight-only
 * kernel into *out (release with wqmat_done). */
typedef Status (*QPackFn)(const struct QTensor *q, struct WqMatrix *out, Err *err);

typedef struct QFormatTraits {
    const char *name;        /* "fp16", "fp8-e4m3", "int4", "aqlm" (plan JSON / CLI spelling) */
    const char *code;        /* compact UI code: "F16", "E4M3", "I4", "AQ" */
    int bits;                /* storage bits per weight element (0 for aqlm: see aqlm) */
    QFamily family;
    int is_int;              /* integer grid with scale (and zero point if asymmetric) */
    int is_fp8;              /* 8-bit float codes with a scale */
    int needs_scale;         /* carries per-group scales */
    int act_ok;              /* allowed as an activation format (int8, fp8) */
    QStore store;            /* the QTensor array of its codes */
    size_t code_bytes;       /* bytes per element of that array (0: none, or blocks) */
    int ggml_type;           /* QFAM_GGML: the quant/ggml_type.h type its blocks are; else -1 */
    int fallback;            /* QFAM_GGML: the format llama.cpp falls back to when rows are not a
                                whole number of blocks (tensor_type_fallback), QF_F16 at the end */
    /* Ordered lists, as 1-based positions (0: not listed). */
    int cycle;               /* the plan editor's format cycle for linear layers */
    int end_cycle;           /* its cycle for the embedding and the output head */
    int sens;                /* candidate of the sensitivity map (analysis/sensitivity.h): this column
                                is the map's candidate list (every format a plan can hold with RTN
                                except the plain floats and aqlm) */
    /* llama.cpp tensor-type export (sessions/export.c), as quant/ggml_type.h ids (-1: none). */
    int ggml_near;           /* the ggml type nearest to the format */
    int ggml_b32[2];         /* [sym] its 32-element block type: the fallback when rows are not a
                                multiple of ggml_near's block */
    int ggml_b32_oc32;       /* oc32 groups write ggml_b32 directly (they match its blocks) */
    const char *kernel;      /* name of the weight-only kernel it runs in ("wq-int4", "fp16") */
    int block_dot;           /* QFAM_GGML: its fused single-token dot (kernels/block_dot.h's
                                BlockDotKind; 0: none, rows are decoded) */
    /* Behaviour (NULL where the family has none: no fit/quant for plain values,
     * no convert/decode for scaled codes, nothing for aqlm). */
    QFitFn fit;
    QQuantFn quant;
    QQuantSpanFn quant_span;
    QDequantFn dequant;
    QConvertFn convert;
    QDecodeFn decode;
    QPackFn pack;
} QFormatTraits;

/* Returns the traits of f (static), or NULL for an out-of-range value. */
const QFormatTraits *qformat_traits(QFormat f);

/* Parses a format name ("int4", "fp16", "e4m3"/"fp8-e4m3", ...); returns -1 if unknown. */
int qformat_parse(const char *s);

/* The ordered lists of the traits' positions. */
typedef enum {
    QLIST_CYCLE,             /* the editor's format cycle (linear layers) */
    QLIST_END_CYCLE,         /* the editor's cycle for the embedding and the output head */
    QLIST_SENS               /* the sensitivity map's candidates */
} QFormatList;

/* The formats of list `which`, in order: writes up to cap formats to out and
 * returns the list's length. */
int qformat_list(QFormatList which, QFormat *out, int cap);

/* The kernels/wq_gemm.h WqGroup value of a grouping (as an int: this header
 * does not include the kernels). */
int group_dim_wq(GroupDim d);

/* "tensor", "oc", "ic" and back; parse returns -1 if unknown. */
const char *group_dim_name(GroupDim d);
int group_dim_parse(const char *s);

#endif
