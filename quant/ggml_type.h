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

/* === A block type's grid, for quantizers that choose the codes themselves (GPTQ) ===
 * A block holds its scales (and mins) in a header and one code per element.
 * Elements come in sub-blocks of `sub` consecutive elements sharing one
 * (step, offset); element code c in [0, qmax] represents
 *     step * (c - zoff) - offset,
 * the value the type's dequantizer computes for it (same float operations). */
typedef struct GgmlGrid {
    int64_t sub;             /* elements per sub-block */
    int qmax;                /* codes are 0..qmax */
    int zoff;                /* code of the value -offset */
} GgmlGrid;

/* Fills *g for a block type whose codes GPTQ can choose (Q8_0, Q4_0, Q4_1,
 * Q5_0, Q5_1, Q2_K..Q6_K); returns 0, or -1 for any other type. */
int ggml_type_grid(uint32_t type, GgmlGrid *g);

/* The step and offset (block_size / sub entries each) of the sub-blocks of
 * one block of type (a type ggml_type_grid accepts), read from its header. */
void ggml_block_steps(uint32_t type, const void *block, float *step, float *offset);

/* Overwrites the codes of one block of type with codes (block_size entries,
 * each in [0, qmax]), keeping its header (scales, mins). */
void ggml_block_put_codes(uint32_t type, void *block, const uint8_t *codes);

/* Bytes needed for n elements of type (n must be a multiple of the block size);
 * returns 0 on unknown type, misaligned n or overflow. */
size_t ggml_row_bytes(uint32_t type, int64_t n);

#endif
