/* Float64 BLAS entry points for the analysis code (second-moment matrices
 * H = XᵀX and products with them): a thin wrapper over OpenBLAS so that
 * <cblas.h> stays in kernels/, plus scalar *_ref twins used by tests.
 * Row-major, explicit leading dimensions (elements between rows). Thread
 * count is OpenBLAS's process-wide setting (kernels/sgemm.h). */
#ifndef QS_KERNELS_BLAS_H
#define QS_KERNELS_BLAS_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"

/* Rank-k update of the upper triangle: C (n, n) += Aᵀ A with A (k, n)
 * row-major (k rows of n features). Only C[i][j] with j >= i is read or
 * written. Dimensions must fit in int (checked with ASSERT). */
void blas_dsyrk_upper_tn(int64_t n, int64_t k, const double *A, int64_t lda, double *C, int64_t ldc);

/* Scalar twin of blas_dsyrk_upper_tn (plain double loops). */
void blas_dsyrk_upper_tn_ref(int64_t n, int64_t k, const double *A, int64_t lda, double *C,
                             int64_t ldc);

/* The same update from float32 rows, products and sums in float64:
 * C (n, n) += Xᵀ X for X (k, n) row-major float. Own AVX-512 kernel (OpenBLAS
 * picks SSE3 kernels on CPUs it does not recognise, 5x slower), blocked and
 * spread over pool (may be NULL); falls back to converting and calling
 * blas_dsyrk_upper_tn without AVX-512. Writes the upper triangle and, inside
 * the 8x16 tiles that cross the diagonal, a few elements just below it (with
 * their correct symmetric values). pack is scratch of
 * blas_dsyrk_f32_pack_len(n, k) doubles. Not from inside a pool job. */
void blas_dsyrk_f32_upper(int64_t n, int64_t k, const float *X, int64_t ldx, double *C, int64_t ldc,
                          double *pack, Pool *pool);

/* Scalar twin: plain double loops over the upper triangle. */
void blas_dsyrk_f32_upper_ref(int64_t n, int64_t k, const float *X, int64_t ldx, double *C, int64_t ldc);

/* Scratch doubles blas_dsyrk_f32_upper needs for (n, k). */
size_t blas_dsyrk_f32_pack_len(int64_t n, int64_t k);

/* C (M, N) = A (M, K) · B (K, N) + beta·C, all float64, B stored (K, N).
 * beta is 0 (C may hold garbage) or 1. Dimensions must fit in int. */
void blas_dgemm_nn(int64_t M, int64_t N, int64_t K, const double *A, int64_t lda, const double *B,
                   int64_t ldb, double beta, double *C, int64_t ldc);

/* Scalar twin of blas_dgemm_nn. */
void blas_dgemm_nn_ref(int64_t M, int64_t N, int64_t K, const double *A, int64_t lda,
                       const double *B, int64_t ldb, double beta, double *C, int64_t ldc);

#endif
