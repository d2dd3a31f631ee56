/* fp16 / bf16 (and plain f32) weight decoding for the weight-only kernels
 * (kernels/wq_gemm.h packs and drives them). fp16 goes through F16C's
 * vcvtph2ps, bf16 through a 16-bit shift — both exact, so the activations
 * stay float32. (AVX512-BF16's vdpbf16ps would need the activations rounded
 * to bf16, which changes the numerics of a weight-only format; it is not
 * used.) */
#ifndef QS_KERNELS_F16_GEMM_H
#define QS_KERNELS_F16_GEMM_H

#include <stddef.h>
#include <stdint.h>

/* Decodes n fp16 (bf16 = 0) or bf16 (1) little-endian halves at src (any
 * alignment) into out with the fastest path the CPU has (kernels/cpu.h):
 * AVX-512, AVX2 + F16C, else the reference; bytewise when src is not 2-byte
 * aligned. Bit-equal to f16_decode_ref in every case. */
void f16_decode(const void *src, int64_t n, int bf16, float *out);

/* Decodes n fp16 (bf16 = 0) or bf16 (1) values with core/fpconv.h (reference). */
void f16_decode_ref(const uint16_t *h, int64_t n, int bf16, float *out);

/* Same with F16C / shifts; callers check cpu_has_avx512f(). Bit-equal to the
 * reference for every input (NaN payloads aside). */
void f16_decode_avx512(const uint16_t *h, int64_t n, int bf16, float *out);

/* Same with AVX2 + F16C (vcvtph2ps on 8 lanes, bf16 by a shift); callers
 * check cpu_has_avx2() && cpu_has_f16c(). Bit-equal to the reference. */
void f16_decode_avx2(const uint16_t *h, int64_t n, int bf16, float *out);

/* y[i] = x[i] rounded to the nearest fp16 (bf16 = 0) or bf16 (1) value,
 * ties to even, and widened back to float: the activation operand llama.cpp's
 * CPU backend feeds its F16 / BF16 matmuls (ggml's vec_dot_type; the fp16
 * rounding is F16C's vcvtps2ph with _MM_FROUND_TO_NEAREST_INT, the bf16 one
 * ggml_compute_fp32_to_bf16: +0x7fff + lsb, NaN kept quiet). f16_round
 * dispatches (kernels/cpu.h) to AVX-512, AVX2+F16C or the reference, all
 * bit-equal (NaN payloads aside). y may equal x. */
void f16_round_ref(const float *x, float *y, int64_t n, int bf16);
void f16_round(const float *x, float *y, int64_t n, int bf16);

/* Row-dot kernels over packed rows of 32 halves (64 bytes) per block, or 16
 * floats per block for f32; see kernels/wq_rowdot.h. AVX-512 only. */
void f16_rowdot_f16_avx512(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk,
                           int64_t gblk, const float *gs, int64_t gs_stride, float *out);
void f16_rowdot_bf16_avx512(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk,
                            int64_t gblk, const float *gs, int64_t gs_stride, float *out);
void f16_rowdot_f32_avx512(const uint8_t *rows, size_t row_bytes, int nrows, const float *x, int64_t nblk,
                           int64_t gblk, const float *gs, int64_t gs_stride, float *out);

#endif
