/* Float32 matrix products for the forward pass: a thin wrapper over OpenBLAS
 * (the only place besides kernels/ that would need <cblas.h>) plus scalar
 * *_ref twins used by tests. All matrices are row-major with explicit leading
 * dimensions (elements between consecutive rows). Names avoid OpenBLAS's own
 * exported internals (sgemm_nn, sgemm_nt, ...), which a same-named function
 * here would silently interpose. */
#ifndef QS_KERNELS_SGEMM_H
#define QS_KERNELS_SGEMM_H

#include <stdint.h>

/* C (M, N) = A (M, K) · Bᵀ + beta·C, with B stored (N, K) — the "x · Wᵀ" of a
 * linear layer whose weight W is (n_out, n_in). beta is 0 (overwrite; C may
 * hold garbage) or 1 (accumulate). M == 1 is routed to sgemv. Dimensions must
 * fit in int (OpenBLAS's blasint); checked with ASSERT. Uses the thread count
 * set by sgemm_set_threads; must not be called concurrently from several
 * threads while that count is above 1. */
void sgemm_mul_nt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
              int64_t ldb, float beta, float *C, int64_t ldc);

/* C (M, N) = A (M, K) · B (K, N) + beta·C, B stored (K, N). Same rules. */
void sgemm_mul_nn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
              int64_t ldb, float beta, float *C, int64_t ldc);

/* C (M, N) = Aᵀ · B + beta·C with A stored (K, M) and B (K, N): a product of
 * column slices of row-major matrices, e.g. a block of the Gram matrix XᵀX of
 * activations X (T, w) without transposing X. Same rules. */
void sgemm_mul_tn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
              int64_t ldb, float beta, float *C, int64_t ldc);

/* The upper triangle (j >= i) of C (n, n) = Aᵀ · A + beta·C, A stored (k, n):
 * a symmetric rank-k update; elements below the diagonal are not touched.
 * Same rules as sgemm_mul_nt. */
void ssyrk_upper_tn(int64_t n, int64_t k, const float *A, int64_t lda, float beta, float *C, int64_t ldc);

/* Scalar twins (double accumulation), for tests. */
void sgemm_mul_nt_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc);
void sgemm_mul_nn_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc);

/* Transitional spellings for callers written against the first draft of this
 * header (kernels/aqlm_kernels.c); as macros they never reach the linker, so
 * they cannot interpose OpenBLAS's symbols. Prefer sgemm_mul_*. */
#define sgemm_nt sgemm_mul_nt
#define sgemm_nn sgemm_mul_nn

/* Sets the number of threads OpenBLAS uses (process-wide; n < 1 means 1).
 * The forward pass sets it to its pool size so BLAS and the pool never run at
 * the same time with more threads than cores. */
void sgemm_set_threads(int n);

/* Returns OpenBLAS's thread count. */
int sgemm_threads(void);

/* Returns OpenBLAS's core name (e.g. "Haswell", "Cooperlake"); static, never NULL. */
const char *sgemm_backend(void);

#endif
