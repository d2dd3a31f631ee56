/* The ggml tensor storage types a GGUF file may hold, with ggml's exact block
 * layouts and dequantization. This is the file-format table (what we read and
 * write); the plan's quantization formats have their own traits table. */
#ifndef QS_QUANT_GGML_TYPE_H
#define QS_QUANT_GGML_TYPE_H

#include <stddef.h>
#include <stdint.h>

/* Numeric ids are ggml's (they are stored in GGUF files). */
typedef enum {
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3,
    GGML_Q5_0 = 6, GGML_Q5_1 = 7, GGML_Q8_0 = 8, GGML_Q8_1 = 9,
    GGML_Q2_K = 10, GGML_Q3_K = 11, GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14,
    GGML_Q8_K = 15, GGML_BF16 = 30,
    GGML_TYPE_LIMIT = 64 /* ids >= this are rejected outright */
} GgmlType;

typedef void (*GgmlDequantFn)(const void *src, float *dst, int64_t n);
typedef void (*GgmlQuantFn)(const float *src, void *dst, int64_t n);
/* Importance-weighted quantizer of one row of n (ggml's quantize_* with
 * quant_weights, as llama-quantize --imatrix runs it): qw (n) weighs each
 * column (the imatrix: mean x^2 of the column's input). */
typedef void (*GgmlQuantWFn)(const float *src, void *dst, int64_t n, const float *qw);

typedef struct GgmlTypeTraits {
    const char *name;        /* "F32", "Q4_K", ... as llama.cpp prints them */
    int64_t block_size;      /* elements per block */
    size_t block_bytes;      /* bytes per block */
    GgmlDequantFn dequant;   /* n is a multiple of block_size; NULL: unsupported */
    GgmlQuantFn quant_ref;   /* reference quantizer (NULL where we do not write it) */
    GgmlQuantWFn quant_w;    /* weighted quantizer (NULL: not implemented; Q8_0's ignores the
                                weights, as ggml's does) */
} GgmlTypeTraits;

/* Returns the traits of a supported type, or NULL for an unknown/unsupported id.
 * The pointer is static. */
const GgmlTypeTraits *ggml_type_traits(uint32_t type);

/* Bytes needed for n elements of type (n must be a multiple of the block size);
 * returns 0 on unknown type, misaligned n or overflow. */
size_t ggml_row_bytes(uint32_t type, int64_t n);

#endif
