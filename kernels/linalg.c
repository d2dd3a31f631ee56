#include "kernels/linalg.h"

#include <limits.h>
#include <math.h>

#include "core/assert.h"

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
