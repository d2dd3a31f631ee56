/* Dense float64 factorizations for GPTQ (Cholesky, triangular inverse): thin
 * wrappers over OpenBLAS's LAPACK (dpotrf_, dtrtri_; the Fortran symbols are
 * declared only in kernels/linalg.c), each with a plain scalar *_ref twin
 * that tests compare against. Row-major (n, n) with leading dimension n.
 * Threads: OpenBLAS's process-wide count (kernels/sgemm.h). */
#ifndef QS_KERNELS_LINALG_H
#define QS_KERNELS_LINALG_H

#include <stdint.h>

#include "core/pool.h"

/* In-place Cholesky A = L·Lᵀ of a symmetric positive definite A: reads the
 * lower triangle, writes L there; the strict upper triangle is left as is.
 * Returns 0, or k > 0 when the leading minor of order k is not positive
 * definite (A is then partly overwritten). n must fit in int. */
int linalg_cholesky_lower(double *A, int64_t n);
int linalg_cholesky_lower_ref(double *A, int64_t n);

/* In-place inverse of a lower-triangular L (non-unit diagonal; the strict
 * upper triangle is neither read nor written). Returns 0, or k > 0 when
 * L[k-1][k-1] == 0. */
int linalg_trinv_lower(double *L, int64_t n);
int linalg_trinv_lower_ref(double *L, int64_t n);

/* The same two factorizations spread over pool (may be NULL): on AVX-512
 * machines our own blocked float64 code (packed 8x16 FMA micro-kernel),
 * elsewhere the OpenBLAS calls above. They use the strict upper triangle as
 * scratch (its contents are undefined on return). Same return values, plus
 * -1 when scratch memory runs out. */
int linalg_cholesky_lower_pool(double *A, int64_t n, Pool *pool);
int linalg_trinv_lower_pool(double *L, int64_t n, Pool *pool);

/* y[i] += a * x[i] for i < n (GPTQ's in-batch rank-1 updates). Dispatched to
 * AVX-512 or AVX2 FMA at run time (kernels/cpu.h); the FMA paths round once
 * per element, so they agree with the scalar twin (multiply, then add) to
 * within one rounding of a*x[i]. x and y must not overlap. */
void linalg_axpy_f32(int64_t n, float a, const float *x, float *y);
void linalg_axpy_f32_ref(int64_t n, float a, const float *x, float *y);

#endif
