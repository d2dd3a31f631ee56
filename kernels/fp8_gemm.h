/* fp8 (OCP E4M3 / E5M2) weight decoding for the weight-only kernels
 * (kernels/wq_gemm.h packs and drives them).
 *
 * Reference: a 256-entry float table per format built from core/fpconv.h's
 * decoders, so it is exact by construction. Vector path: the code is moved
 * into fp16 bits and converted with vcvtph2ps — E5M2 is the top byte of the
 * fp16 with the same exponent bias, so `code << 8` is exact for every code
 * (inf and NaN included); for E4M3, (sign << 15) | (rest << 7) read as fp16 is
 * exactly the E4M3 value × 2^-8 for every finite code, subnormals included,
 * and the kernels multiply their sums by 256 (exact). E4M3's NaN codes
 * (0x7F, 0xFF) would decode to ±480 on that path, so the packer rejects them
 * (the quantizers saturate and never write them). */
#ifndef QS_KERNELS_FP8_GEMM_H
#define QS_KERNELS_FP8_GEMM_H

#include <stddef.h>
#include <stdint.h>

/* Returns the 256-entry decode table of E4M3 (e5m2 = 0) or E5M2 (1); static,
 * built on first use, thread-safe. */
const float *fp8_lut(int e5m2);

/* Decodes n codes to floats through the table (the reference). */
void fp8_decode_ref(const uint8_t *c, int64_t n, int e5m2, float *out);

/* Same with the AVX-512 bit path for every 16-code run (scalar tail via the
 * table); callers check cpu_has_avx512f(). Equal to fp8_decode_ref for every
 * non-NaN code. */
void fp8_decode_avx512(const uint8_t *c, int64_t n, int e5m2, float *out);

/* Row-dot kernels over packed rows of 32 codes per block (see
 * kernels/wq_rowdot.h for the argument meaning); AVX-512 only. */
void fp8_rowdot_e4m3_avx512(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk,
                            int64_t gblk, const float *gs, int64_t gs_stride, float *out);
void fp8_rowdot_e5m2_avx512(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk,
                            int64_t gblk, const float *gs, int64_t gs_stride, float *out);

#endif
