#include "kernels/blas.h"

#include <cblas.h>
#include <limits.h>

#include "core/assert.h"

static void blas_check_dims(int64_t a, int64_t b, int64_t c, int64_t l1, int64_t l2, int64_t l3) {
    ASSERT(a >= 0 && b >= 0 && c >= 0);
    ASSERT(a <= INT_MAX && b <= INT_MAX && c <= INT_MAX);
    ASSERT(l1 <= INT_MAX && l2 <= INT_MAX && l3 <= INT_MAX);
}

void blas_dsyrk_upper_tn(int64_t n, int64_t k, const double *A, int64_t lda, double *C, int64_t ldc) {
    blas_check_dims(n, k, 0, lda, ldc, 0);
    if (n == 0 || k == 0) return;
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)k, 1.0, A, (int)lda, 1.0, C,
                (int)ldc);
}

void blas_dsyrk_upper_tn_ref(int64_t n, int64_t k, const double *A, int64_t lda, double *C,
                             int64_t ldc) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) {
            double s = 0;
            for (int64_t r = 0; r < k; r++) s += A[r * lda + i] * A[r * lda + j];
            C[i * ldc + j] += s;
        }
}

void blas_dgemm_nn(int64_t M, int64_t N, int64_t K, const double *A, int64_t lda, const double *B,
                   int64_t ldb, double beta, double *C, int64_t ldc) {
    blas_check_dims(M, N, K, lda, ldb, ldc);
    if (M == 0 || N == 0) return;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0, A, (int)lda,
                B, (int)ldb, beta, C, (int)ldc);
}

void blas_dgemm_nn_ref(int64_t M, int64_t N, int64_t K, const double *A, int64_t lda,
                       const double *B, int64_t ldb, double beta, double *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += A[i * lda + k] * B[k * ldb + j];
            C[i * ldc + j] = s + (beta != 0 ? beta * C[i * ldc + j] : 0);
        }
}
