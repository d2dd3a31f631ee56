/* The plan's weight/activation formats: one traits table read by the planner,
 * the size budget, the UI and the kernels alike (ggml's type_traits idea).
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

typedef enum {
    QF_F32, QF_F16, QF_BF16, QF_FP8_E4M3, QF_FP8_E5M2,
    QF_INT8, QF_INT6, QF_INT5, QF_INT4, QF_INT3, QF_INT2,
    QF_AQLM,
    QF_COUNT
} QFormat;

typedef enum { GROUP_TENSOR, GROUP_OC, GROUP_IC, GROUP_COUNT } GroupDim;

typedef struct QFormatTraits {
    const char *name;        /* "fp16", "fp8-e4m3", "int4", "aqlm" (plan JSON / CLI spelling) */
    const char *code;        /* compact UI code: "F16", "E4M3", "I4", "AQ" */
    int bits;                /* storage bits per weight element (0 for aqlm: see aqlm) */
    int is_int;              /* integer grid with scale (and zero point if asymmetric) */
    int is_fp8;              /* 8-bit float codes with a scale */
    int needs_scale;         /* carries per-group scales */
    int act_ok;              /* allowed as an activation format (int8, fp8) */
} QFormatTraits;

/* Returns the traits of f (static), or NULL for an out-of-range value. */
const QFormatTraits *qformat_traits(QFormat f);

/* Parses a format name ("int4", "fp16", "e4m3"/"fp8-e4m3", ...); returns -1 if unknown. */
int qformat_parse(const char *s);

/* "tensor", "oc", "ic" and back; parse returns -1 if unknown. */
const char *group_dim_name(GroupDim d);
int group_dim_parse(const char *s);

#endif
