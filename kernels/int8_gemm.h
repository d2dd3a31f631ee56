/* W8A8 integer GEMM: C (M, N) = (A (M, K) int8 · B (N, K)ᵀ int8) in int32,
 * scaled to float by per-row activation scales and per-channel weight scales:
 *     C[m][n] = ((float)acc[m][n] * a_scale[m]) * w_scale[n]
 * evaluated in exactly that order by every path, so equal int32 sums give
 * bit-equal floats.
 *
 * Packed weight layout (one for every path): B is stored as unsigned bytes
 * u = w + 128 in slabs of 64 output channels × 4 consecutive k (256 bytes,
 * four 16-channel vectors read by one k-step of the kernel):
 *     b[((n / 64) * (kp / 4) + k / 4) * 256 + (n % 64) * 4 + k % 4]
 * with N padded to np (multiple of 64) and K to kp (multiple of 4) by u = 128
 * (w = 0). The AVX-512 VNNI path (vpdpbusd multiplies unsigned × signed bytes)
 * uses u directly against the signed activations and subtracts
 * 128 · Σ_k a[m][k] per row; the AVX2 path moves the activations' signs onto
 * w = u - 128 (vpsignb) and multiplies by |a| (vpmaddubsw), which cannot
 * saturate when no weight code is -128 (sign_ok; the symmetric quantizers
 * never produce it), and otherwise splits u into nibbles; the scalar
 * reference sums (u - 128) · a. All are exact for every int8 input while
 * K · 255 · 128 < 2^31 (K < 65793; checked when packing). */
#ifndef QS_KERNELS_INT8_GEMM_H
#define QS_KERNELS_INT8_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"

typedef struct I8Matrix {
    int64_t n, k;            /* logical shape (N, K) */
    int64_t np, kp;          /* N rounded up to 64, K rounded up to 4 */
    uint8_t *b;              /* (np / 64, kp / 4, 64, 4) codes + 128, 64-byte aligned */
    float *scale;            /* (n) per-output-channel weight scales */
    int sign_ok;             /* 1: no code is -128 (the AVX2 sign-trick dot applies) */
} I8Matrix;

/* Returns K rounded up to the multiple of 4 the activation rows must be
 * padded to (the leading dimension of A is at least this, pad bytes zero). */
int64_t i8gemm_kpad(int64_t K);

/* Packs B (N, K) int8 row-major with weight scales: scale has N entries when
 * per_channel, else 1 (copied to every channel). Fills *out (release with
 * i8mat_done). Fails with ST_ERR_ARG on a non-positive shape or K too large
 * for exact int32 sums, ST_ERR_NOMEM. */
Status i8mat_pack(const int8_t *B, int64_t N, int64_t K, const float *scale, int per_channel,
                  I8Matrix *out, Err *err);

/* Releases the arrays of an embedded I8Matrix; safe on a zeroed one. */
void i8mat_done(I8Matrix *m);

/* Returns the packed bytes (codes including padding; scales not counted). */
size_t i8mat_code_bytes(const I8Matrix *m);

/* C (M, N) with leading dimension ldc = scaled products of A (M, K) with
 * leading dimension lda >= kp (columns [K, kp) must be zero) and w. a_scale
 * has M entries. Picks the VNNI, AVX2 or scalar path at run time and splits
 * the output channels over pool (may be NULL). */
void i8gemm(const I8Matrix *w, const int8_t *A, int64_t M, int64_t lda, const float *a_scale,
            float *C, int64_t ldc, Pool *pool);

/* Rows of A one I8GemmJob covers; i8gemm runs larger M as one job per
 * slice of this many rows. */
#define I8GEMM_JOB_ROWS 192

/* One i8gemm over at most I8GEMM_JOB_ROWS rows, cut into work units (slabs
 * of 64 output channels) that any thread may run, so that several matrices
 * sharing one input run in one pool dispatch (core/pool.h pool_for_parts).
 * i8gemm_job_init fills *j on the calling thread (the rows' sums; the path
 * is chosen as i8gemm chooses it) and returns the number of units;
 * i8gemm_job_run (a PoolFn, arg = j) computes units [b, e). Running every
 * unit once gives exactly i8gemm's C. j borrows w, A, a_scale and C and must
 * not be moved after init. */
typedef struct I8GemmJob I8GemmJob;
struct I8GemmJob {
    void (*slab)(const I8GemmJob *j, int64_t blk0, int64_t nblk);
    const I8Matrix *w;
    const int8_t *A;
    int64_t M, lda, ldc;
    const int32_t *rowsum;   /* = rowsum_buf */
    const float *a_scale;    /* (M), or NULL: C receives int32 sums (the test paths) */
    void *C;
    int32_t rowsum_buf[I8GEMM_JOB_ROWS]; /* (M) Σ_k A[m][k] over kp */
};
int64_t i8gemm_job_init(I8GemmJob *j, const I8Matrix *w, const int8_t *A, int64_t M, int64_t lda,
                        const float *a_scale, float *C, int64_t ldc);
void i8gemm_job_run(void *j, int64_t b, int64_t e, int tid);

/* One path each, for tests and benchmarks. When a_scale is NULL, C is taken
 * as int32_t* and receives the raw accumulations (ldc in int32 elements).
 * The _vnni and _avx2 paths must only be called when cpu_has_avx512_vnni() /
 * cpu_has_avx2() say so. */
void i8gemm_ref(const I8Matrix *w, const int8_t *A, int64_t M, int64_t lda, const float *a_scale,
                void *C, int64_t ldc, Pool *pool);
void i8gemm_avx2(const I8Matrix *w, const int8_t *A, int64_t M, int64_t lda, const float *a_scale,
                 void *C, int64_t ldc, Pool *pool);
void i8gemm_vnni(const I8Matrix *w, const int8_t *A, int64_t M, int64_t lda, const float *a_scale,
                 void *C, int64_t ldc, Pool *pool);

#endif
