#include "kernels/linalg.h"

#include <immintrin.h>
#include <limits.h>
#include <math.h>

#include "core/assert.h"
#include "kernels/cpu.h"

/* OpenBLAS's own C LAPACK entry points (interface/lapack/potrf.c, trtri.c):
 * column-major, so a row-major lower triangle is LAPACK's upper one. */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
extern void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info);

int linalg_cholesky_lower(double *A, int64_t n) {
    ASSERT(n >= 0 && n <= INT_MAX);
    if (n == 0) return 0;
    int nn = (int)n, info = 0;
    dpotrf_("U", &nn, A, &nn, &info);
    ASSERT(info >= 0);
    return info;
}

int linalg_cholesky_lower_ref(double *A, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int64_t k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
        if (!(d > 0)) return (int)(j + 1);
        d = sqrt(d);
        A[j * n + j] = d;
        for (int64_t i = j + 1; i < n; i++) {
            double s = A[i * n + j];
            for (int64_t k = 0; k < j; k++) s -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = s / d;
        }
    }
    return 0;
}

int linalg_trinv_lower(double *L, int64_t n) {
    ASSERT(n >= 0 && n <= INT_MAX);
    if (n == 0) return 0;
    int nn = (int)n, info = 0;
    dtrtri_("U", "N", &nn, L, &nn, &info);
    ASSERT(info >= 0);
    return info;
}

int linalg_trinv_lower_ref(double *L, int64_t n) {
    for (int64_t j = 0; j < n; j++)
        if (L[j * n + j] == 0) return (int)(j + 1);
    /* Column j of X = L^-1 by forward substitution, top-down, in place:
     * X[i][j] = -(sum_{k=j}^{i-1} L[i][k] X[k][j]) / L[i][i]. Columns right of
     * j still hold L, column j above row i already holds X. */
    for (int64_t j = 0; j < n; j++) {
        L[j * n + j] = 1.0 / L[j * n + j];
        for (int64_t i = j + 1; i < n; i++) {
            double s = 0;
            for (int64_t k = j; k < i; k++) s += L[i * n + k] * L[k * n + j];
            L[i * n + j] = -s / L[i * n + i];
        }
    }
    return 0;
}

void linalg_axpy_f32_ref(int64_t n, float a, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

__attribute__((target("avx512f"))) static void axpy_avx512(int64_t n, float a, const float *x, float *y) {
    __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

__attribute__((target("avx2,fma"))) static void axpy_avx2(int64_t n, float a, const float *x, float *y) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

void linalg_axpy_f32(int64_t n, float a, const float *x, float *y) {
    if (cpu_has_avx512f()) axpy_avx512(n, a, x, y);
    else if (cpu_has_avx2()) axpy_avx2(n, a, x, y);
    else linalg_axpy_f32_ref(n, a, x, y);
}
