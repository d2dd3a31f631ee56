/* Weight-only quantized matmul: y (T, n) = x (T, k) · Wᵀ with float
 * activations and W stored as packed codes plus group scales (and zero points
 * for asymmetric integer codes):
 *     W[o][i] = s(o, i) · (v(o, i) - z(o, i))
 * v is the decoded code (the unsigned integer code u, or the fp8/fp16/bf16
 * value), z the zero point in code units (0 for float codes).
 *
 * Grouping (same meaning and index order as quant/qtensor.h):
 *   WQ_GROUP_TENSOR  one scale;
 *   WQ_GROUP_OC      g = 0: one scale per row; g > 0: runs of g inputs within
 *                    a row, index o * (k / g) + i / g;
 *   WQ_GROUP_IC      g = 0: one scale per column; g > 0: runs of g output rows
 *                    within a column, index (o / g) * k + i;
 *   WQ_GROUP_NONE    no scale at all (fp16 / bf16 / f32 weights).
 *
 * Packed rows (each row starts on a 64-byte boundary; the row is padded with
 * zero codes up to a whole number of blocks, kp elements):
 *   U8   32 elements in 32 bytes, one unsigned code per byte;
 *   U4   32 elements in 16 bytes: byte j holds element j in its low nibble
 *        and element j + 16 in its high nibble;
 *   U2   64 elements in 16 bytes: byte j holds elements j, j+16, j+32, j+48
 *        in bit pairs 0-1, 2-3, 4-5, 6-7;
 *   U3   64 elements in 24 bytes: the low two bits as U2 (16 bytes), then 8
 *        bytes of third bits: byte j holds bit 2 of element j + 16t in its
 *        bit t and of element j + 8 + 16t in its bit 4 + t (t = 0..3);
 *   E4M3/E5M2  32 fp8 codes in 32 bytes;
 *   F16/BF16   32 half words in 64 bytes; F32 16 floats in 64 bytes;
 *   BLOCKS     a foreign block layout (ggml's Q4_0, Q4_K, ...) kept as it is:
 *              each row is the format's row of blocks, decoded to floats by
 *              the matrix's `decode` function (no scales here: they live in
 *              the blocks). The GEMV runs the matrix's fused row dot where
 *              it has one (Q4_0, Q8_0), else decodes a row and takes a float dot.
 * Integer codes are unsigned: u = q + 2^(store_bits-1) and z = 2^(store_bits-1)
 * for symmetric matrices (quant/qtensor.h's centred codes q), u = q + 2^(bits-1)
 * (the unsigned code c) and z = the stored zero point for asymmetric ones, so
 * s·(u - z) reproduces qtensor_dequant exactly.
 *
 * Single-token (T == 1) products run a GEMV that decodes the codes in
 * registers (AVX-512) and accumulates per group before applying the group
 * scale; IC grouping pre-scales x once per block of rows instead. int4/3/2
 * codes under OC or tensor grouping decode through a per-group 16-entry table
 * of the exactly dequantized values s·(u - z) (vpermps), so the GEMV only adds
 * summation-order error on Σ|w·x|. Symmetric int8 and IC-grouped symmetric
 * codes decode u - z directly; asymmetric int8 and IC-grouped asymmetric
 * codes subtract Σ s·z·x afterwards, whose rounding scales with s·z·Σ|x|. On
 * AVX2 without AVX-512, integer codes under OC or tensor grouping run
 * wq_gemv_avx2: u - z per weight (exact), FMA'd with x into a per-group sum
 * scaled once per group (as the AVX-512 row dots), so it too adds only
 * summation-order error on Σ|w·x|; other matrices dequantize a row at a time
 * (AVX2 decode and scale, bit for bit the scalar values) and take an AVX2 dot.
 * Batches dequantize tiles of rows to float (the same values at every level)
 * and run a float GEMM on them. Every fast path has the scalar wq_gemv_ref
 * twin (exact dequant, double accumulation); tests/test_kernels.c holds each
 * within 1e-5·Σ|w·x| of it at every QS_CPU level. */
#ifndef QS_KERNELS_WQ_GEMM_H
#define QS_KERNELS_WQ_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"
#include "kernels/block_dot.h"

typedef enum {
    WQ_U8, WQ_U4, WQ_U3, WQ_U2, WQ_E4M3, WQ_E5M2, WQ_F16, WQ_BF16, WQ_F32, WQ_BLOCKS, WQ_CODE_COUNT
} WqCode;

/* Decodes n values (a whole number of blocks) of a BLOCKS row. */
typedef void (*WqRowDecodeFn)(const void *src, float *dst, int64_t n);

typedef enum { WQ_GROUP_TENSOR, WQ_GROUP_OC, WQ_GROUP_IC, WQ_GROUP_NONE } WqGroup;

typedef struct WqMatrix {
    WqCode code;
    int64_t n, k;            /* logical shape (n_out, n_in) */
    int64_t kp;              /* k rounded up to the code's block */
    size_t row_bytes;        /* bytes between consecutive packed rows (multiple of 64) */
    uint8_t *codes;          /* (n, row_bytes) packed as above, 64-byte aligned */
    WqGroup gdim;
    int64_t group;           /* g as above (0 = whole row / column) */
    int64_t n_groups;        /* entries of scale / zero */
    float *scale;            /* (n_groups), NULL for WQ_GROUP_NONE */
    float *zero;             /* (n_groups) z in code units, integer codes only; else NULL */
    int sym;                 /* integer codes symmetric: z = 2^(bits-1) everywhere, and the
                                GEMV decodes u - z directly (no zero-point term) */
    WqRowDecodeFn decode;    /* BLOCKS only: the row decoder */
    BlockDotFn dot;          /* BLOCKS only: a fused row dot (kernels/block_dot.h), or NULL */
} WqMatrix;

/* Elements per packed block and bytes per block of a code. */
int64_t wq_block_elems(WqCode c);
size_t wq_block_bytes(WqCode c);

/* Packs integer codes q (n, k) of a `bits`-bit format — centred as in
 * quant/qtensor.h, |q| below 2^(bits-1) (or in [-2^(bits-1), 2^(bits-1)-1]
 * when asymmetric) — in store_bits = 8, 4, 3 or 2 storage (>= bits; int6 and
 * int5 use 8). scale has the grouping's entry count; zero (same count,
 * integer values in [0, 2^bits - 1]) is NULL for symmetric matrices. Fills
 * *out (release with wqmat_done). Fails with ST_ERR_ARG on a bad shape, group
 * size or storage width, ST_ERR_RANGE on an out-of-range code or zero point,
 * ST_ERR_NOMEM. */
Status wqmat_pack_int(const int8_t *q, int bits, int store_bits, int64_t n, int64_t k, WqGroup gdim,
                      int64_t group, const float *scale, const float *zero, WqMatrix *out, Err *err);

/* Packs fp8 codes (n, k) (e5m2 = 0: E4M3, 1: E5M2) with group scales. Same
 * errors; NaN codes are rejected (ST_ERR_RANGE) — the quantizers saturate. */
Status wqmat_pack_fp8(const uint8_t *f8, int e5m2, int64_t n, int64_t k, WqGroup gdim, int64_t group,
                      const float *scale, WqMatrix *out, Err *err);

/* Packs fp16 (bf16 = 0) or bf16 bits (n, k); no scales. */
Status wqmat_pack_f16(const uint16_t *h, int bf16, int64_t n, int64_t k, WqMatrix *out, Err *err);

/* Packs plain floats (n, k) (the fp32 "format"); no scales. */
Status wqmat_pack_f32(const float *w, int64_t n, int64_t k, WqMatrix *out, Err *err);

/* Keeps n rows of foreign blocks (row r at blocks + r * src_row_bytes, k
 * values of block_elems each) as a BLOCKS matrix decoded by decode, with the
 * fused row dot `dot` for single tokens (may be NULL; both static functions
 * that outlive the matrix). Fails with ST_ERR_ARG when k is not a whole
 * number of blocks, ST_ERR_NOMEM. */
Status wqmat_pack_blocks(const uint8_t *blocks, size_t src_row_bytes, int64_t block_elems, WqRowDecodeFn decode,
                         BlockDotFn dot, int64_t n, int64_t k, WqMatrix *out, Err *err);

/* Releases the arrays of an embedded WqMatrix; safe on a zeroed one. */
void wqmat_done(WqMatrix *m);

/* Bytes of the packed codes including row padding (scales not counted). */
size_t wqmat_code_bytes(const WqMatrix *m);

/* Number of bits of real code storage per element (8, 4, 3, 2, 16, 32; 0
 * for BLOCKS, whose storage is the block layout's). */
int wq_code_bits(WqCode c);

/* Writes the represented values of rows [r0, r1) into out ((r1 - r0), k),
 * exactly as quant/rtn.h's qtensor_dequant would. */
void wqmat_dequant_rows(const WqMatrix *m, int64_t r0, int64_t r1, float *out);

/* y (n) = W · x (k). Fast path (AVX-512) when available and the grouping
 * allows it (OC groups a multiple of the block); else, on AVX2, integer codes
 * under the same groupings (tensor, OC) run wq_gemv_avx2; else the row-dequant
 * path (AVX2 decode, scale and dot where available, scalar otherwise). Rows
 * are split over pool (may be NULL). */
void wq_gemv(const WqMatrix *m, const float *x, float *y, Pool *pool);

/* The AVX-512 path alone (callers check cpu_has_avx512f() and
 * wq_gemv_fast_ok()); returns nothing, fills y (n). */
void wq_gemv_avx512(const WqMatrix *m, const float *x, float *y, Pool *pool);
int wq_gemv_fast_ok(const WqMatrix *m);

/* The AVX2 path alone (callers check cpu_has_avx2() and wq_gemv_avx2_ok():
 * integer codes, tensor or OC grouping with groups a multiple of the block):
 * per-group float sums of (u - z)·x, each scaled by its group's s; fills
 * y (n). */
void wq_gemv_avx2(const WqMatrix *m, const float *x, float *y, Pool *pool);
int wq_gemv_avx2_ok(const WqMatrix *m);

/* Scalar twin: exact dequantized rows, double accumulation. */
void wq_gemv_ref(const WqMatrix *m, const float *x, float *y);

/* y (T, n) = x (T, k) · Wᵀ: GEMV per row for small T, else dequantized tiles
 * of rows (up to 32 MB) through kernels/f32gemm.h's AVX-512 GEMM on the pool (OpenBLAS
 * sgemm, with the thread count the caller set, where that kernel cannot
 * run). The tile and GEMM packing buffers are kept per calling thread
 * between calls (grown, never shrunk; freed when the thread exits), so
 * concurrent calls from different threads are safe. Fails (ST_ERR_NOMEM)
 * only when a buffer cannot be allocated. */
Status wq_gemm(const WqMatrix *m, const float *x, int64_t T, float *y, Pool *pool, Err *err);

#endif
