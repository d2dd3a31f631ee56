#include "kernels/sgemm.h"

#include <cblas.h>
#include <limits.h>

#include "core/assert.h"

static void sgemm_check_dims(int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc) {
    ASSERT(M >= 0 && N >= 0 && K >= 0);
    ASSERT(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX);
    ASSERT(lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX);
}

void sgemm_mul_nt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
              int64_t ldb, float beta, float *C, int64_t ldc) {
    sgemm_check_dims(M, N, K, lda, ldb, ldc);
    if (M == 0 || N == 0) return;
    if (M == 1) {
        /* y (N) = B (N, K) · a (K): one row of activations is a matrix-vector product. */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, 1.0f, B, (int)ldb, A, 1, beta, C, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, A, (int)lda,
                B, (int)ldb, beta, C, (int)ldc);
}

void sgemm_mul_nn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
              int64_t ldb, float beta, float *C, int64_t ldc) {
    sgemm_check_dims(M, N, K, lda, ldb, ldc);
    if (M == 0 || N == 0) return;
    if (M == 1) {
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)K, (int)N, 1.0f, B, (int)ldb, A, 1, beta, C, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, A, (int)lda,
                B, (int)ldb, beta, C, (int)ldc);
}

void sgemm_mul_tn(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
              int64_t ldb, float beta, float *C, int64_t ldc) {
    sgemm_check_dims(M, N, K, lda, ldb, ldc);
    if (M == 0 || N == 0) return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, A, (int)lda,
                B, (int)ldb, beta, C, (int)ldc);
}

void ssyrk_upper_tn(int64_t n, int64_t k, const float *A, int64_t lda, float beta, float *C, int64_t ldc) {
    sgemm_check_dims(n, n, k, lda, ldc, 0);
    if (n == 0) return;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)k, 1.0f, A, (int)lda, beta, C, (int)ldc);
}

void sgemm_mul_nt_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)A[i * lda + k] * B[j * ldb + k];
            C[i * ldc + j] = (float)(s + (beta != 0 ? (double)beta * C[i * ldc + j] : 0));
        }
}

void sgemm_mul_nn_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)A[i * lda + k] * B[k * ldb + j];
            C[i * ldc + j] = (float)(s + (beta != 0 ? (double)beta * C[i * ldc + j] : 0));
        }
}

void sgemm_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }

int sgemm_threads(void) { return openblas_get_num_threads(); }

const char *sgemm_backend(void) {
    const char *s = openblas_get_corename();
    return s ? s : "unknown";
}
