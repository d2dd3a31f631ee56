/* Dot products of one row of ggml blocks with a float vector, without
 * decoding the row to memory: the single-token path of kernels/wq_gemm.h's
 * BLOCKS matrices. The layouts are ggml's (quant/ggml_type.h decodes them
 * for everything else):
 *   Q4_0  18 bytes per 32 values: fp16 d, 16 bytes of nibbles (element j low
 *         nibble of byte j, element j + 16 high nibble), value d * (q - 8);
 *   Q8_0  34 bytes per 32 values: fp16 d, 32 int8 q, value d * q;
 *   Q4_K  144 bytes per 256 values: fp16 d, fp16 dmin, 12 bytes of 6-bit
 *         (scale, min) pairs for 8 sub-blocks of 32 (ggml's get_scale_min_k4
 *         packing), 128 bytes of nibbles (sub-blocks 2i and 2i+1 in the low
 *         and high nibbles of bytes 32i..32i+31), value d*sc*q - dmin*m.
 * Every kernel has a scalar _ref twin (exact block values, double
 * accumulation); the AVX-512 versions accumulate in float per block
 * (tests/test_ggml_formats.c bounds the difference by 1e-5 of Σ|w·x|). */
#ifndef QS_KERNELS_BLOCK_DOT_H
#define QS_KERNELS_BLOCK_DOT_H

#include <stdint.h>

typedef enum { BLOCK_DOT_NONE, BLOCK_DOT_Q4_0, BLOCK_DOT_Q8_0, BLOCK_DOT_Q4_K } BlockDotKind;

/* Σ w[i] x[i] over a row of k values (k a multiple of 32). */
typedef float (*BlockDotFn)(const uint8_t *row, const float *x, int64_t k);

float block_dot_q4_0_ref(const uint8_t *row, const float *x, int64_t k);
float block_dot_q8_0_ref(const uint8_t *row, const float *x, int64_t k);
float block_dot_q4_0_avx512(const uint8_t *row, const float *x, int64_t k);
float block_dot_q8_0_avx512(const uint8_t *row, const float *x, int64_t k);
float block_dot_q4_k_ref(const uint8_t *row, const float *x, int64_t k);   /* k a multiple of 256 */
float block_dot_q4_k_avx512(const uint8_t *row, const float *x, int64_t k);

/* The fastest dot for kind on this CPU (the _ref twin without AVX-512);
 * NULL for BLOCK_DOT_NONE. Static functions, valid forever. */
BlockDotFn block_dot_fn(BlockDotKind kind);

#endif
