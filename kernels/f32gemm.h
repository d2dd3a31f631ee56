/* Our own float32 GEMM at every dispatch level: BLIS-style packing (A into
 * k-major tiles of rows, B into k-major panels of columns by register
 * transposes, fp16/bf16 weights widened there) and an FMA micro-kernel:
 * 12x32 tiles on AVX-512, 6x16 on AVX2, and a portable C twin of the AVX2
 * code. It exists because the OpenBLAS this project links (0.3.21) does not
 * recognise recent Xeons and falls back to SSE3 or, under
 * OPENBLAS_CORETYPE=Haswell, to AVX2 kernels, because running it on our own
 * pool keeps BLAS threads from competing with the pool, and because a C
 * element's bits must not depend on the partition (thread count, column
 * slices, rows per call), which OpenBLAS's sgemm cannot promise: below
 * AVX-512 the order of each element's sum is fixed by K alone and the AVX2
 * and portable code give the same bits (kernels/f32gemm.c, "AVX2 and
 * portable kernels"). The scalar twins are sgemm_mul_nt_ref /
 * sgemm_mul_nn_ref (kernels/sgemm.h) and gemm_h_nt_ref;
 * tests/test_f32gemm.c compares them at every dispatch level.
 *
 * Row-major everywhere; C (M, N) = A (M, K) · op(B) + beta·C, beta 0 or 1. */
#ifndef QS_KERNELS_F32GEMM_H
#define QS_KERNELS_F32GEMM_H

#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"

/* Per-thread packing buffers (1.5 MB per thread), plus one A buffer shared
 * by the threads of gemm_f32_nt_pool (grown on first use to min(M, 516)
 * rounded up to 12, times K floats: 11.6 MB for 512 x 5632). */
typedef struct GemmWork GemmWork;

/* Allocates buffers for n_threads callers (tid 0..n_threads-1). Caller frees. */
Status gemm_work_new(int n_threads, GemmWork **out, Err *err);

/* NULL is a no-op. */
void gemm_work_free(GemmWork *w);

/* Returns 1: the own GEMM runs at every dispatch level (AVX-512 tiles; else
 * AVX2 tiles or their portable twin, whose result per C element depends on K
 * alone, never on the partition — which OpenBLAS's sgemm cannot promise). */
int gemm_f32_available(void);

/* Single-threaded, using tid's buffers (tid < the n_threads of w). B is
 * (N, K) for _nt (C = A·Bᵀ) and (K, N) for _nn (C = A·B). Without AVX-512
 * _nn runs an AVX2/portable dot-product kernel (w unused) and _nt the AVX2
 * tiles, or their portable twin when w or tid gives no buffers (the same
 * bits, slower). Safe to call concurrently with distinct tids. */
void gemm_f32_nt(GemmWork *w, int tid, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void gemm_f32_nn(GemmWork *w, int tid, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* A float32 B (N, K) packed once into the tiles' panels, for many
 * gemm_f32_nt calls with the same B (the sensitivity map sends the sampled
 * rows of 50 cells through one H: packing H per call cost as much as a
 * third of those GEMMs). Holds about N·K floats; B stays borrowed (the
 * small-M path reads it) and must outlive it. Caller frees with
 * gemm_packed_b_free (NULL is a no-op). ST_ERR_NOMEM. */
typedef struct GemmPackedB GemmPackedB;
Status gemm_f32_pack_b(int64_t N, int64_t K, const float *B, int64_t ldb, GemmPackedB **out, Err *err);
void gemm_packed_b_free(GemmPackedB *pb);

/* gemm_f32_nt(w, tid, M, N, K, A, lda, B, ldb, 0, C, ldc) with pb's N, K and
 * B: the same bits, without packing B. */
void gemm_f32_nt_packed(GemmWork *w, int tid, int64_t M, const float *A, int64_t lda, const GemmPackedB *pb, float *C,
                        int64_t ldc);

/* C = A·Bᵀ split over the pool's threads by columns of C (rows of B). w must
 * have at least pool_size(pool) threads' buffers; pool may be NULL. With two
 * or more threads and M >= 8, A (per 516-row block) is packed once by all
 * threads together and the threads then take 256-column panels of C from a
 * shared counter, each panel over all of K; if the shared buffer cannot be
 * allocated it falls back to one contiguous column range per thread. Below
 * AVX-512 the result is the same bits either way. */
void gemm_f32_nt_pool(Pool *pool, GemmWork *w, int64_t M, int64_t N, int64_t K, const float *A,
                      int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* Element types of B in gemm_h_nt_pool's weight operand. */
enum { GEMM_B_F32, GEMM_B_F16, GEMM_B_BF16 };

/* C = A·Bᵀ (+C when beta is 1) with B (N, K) stored as fp16 (bf16 = 0) or
 * bf16 (1), ldb in elements: the forward pass on native F16/BF16 weights.
 * B is widened exactly to float32 while it is packed (the packed panel is the
 * float GEMM's; on AVX-512 decode, M < 8, reads the stored halves directly),
 * so A — the activations — stays float32 and the result equals
 * gemm_f32_nt_pool on the widened B (bit for bit below AVX-512, up to
 * summation order on it). (AVX512-BF16's
 * vdpbf16ps would round the activations to bf16; not used.) Split over the
 * pool like gemm_f32_nt_pool; with w NULL it runs the scalar twin
 * gemm_h_nt_ref. */
void gemm_h_nt_pool(Pool *pool, GemmWork *w, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                    const uint16_t *B, int bf16, int64_t ldb, float beta, float *C, int64_t ldc);

/* Scalar twin of gemm_h_nt_pool (double accumulation). */
void gemm_h_nt_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const uint16_t *B, int bf16,
                   int64_t ldb, float beta, float *C, int64_t ldc);

#endif
