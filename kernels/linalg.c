#include "kernels/linalg.h"

#include <immintrin.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "core/assert.h"
#include "kernels/cpu.h"
#include "kernels/simd.h"

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
    if (info) return info;
    /* OpenBLAS's potrf tests a pivot with `ajj <= 0`, which a NaN passes: a
     * NaN (or inf) in the lower triangle comes back as a "factor" full of
     * NaNs and info 0. Every entry of row i reaches L[i][i] (through
     * L[i][k]^2), so a pivot that is not > 0 names the first bad minor, as
     * the blocked path and linalg_cholesky_lower_ref do. */
    for (int64_t j = 0; j < n; j++)
        if (!(A[j * n + j] > 0)) return (int)(j + 1);
    return 0;
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

QS_TARGET_AVX512 static void axpy_avx512(int64_t n, float a, const float *x, float *y) {
    __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

QS_TARGET_AVX2 static void axpy_avx2(int64_t n, float a, const float *x, float *y) {
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

/* === Own blocked float64 factorizations (AVX-512) ===
 * OpenBLAS 0.3.21 runs SSE3 kernels on this CPU family unless
 * OPENBLAS_CORETYPE is forced, which made GPTQ's factorization its slowest
 * step. These are right-looking blocked versions whose O(n^3) work is one
 * packed 8x16 FMA micro-kernel, spread over the pool. */

#define DMR 8     /* micro-tile rows */
#define DNR 16    /* micro-tile columns (two zmm of doubles) */
#define DMC 128   /* rows of A packed at once (stay in L2) */
#define DKC 256   /* depth of one packed block */
#define DNB 128   /* factorization block */

/* Per-thread packing buffers. */
typedef struct DWork {
    double *ap;   /* (DMC, DKC) */
    double *bp;   /* (ceil(nmax / DNR) * DNR, DKC) */
} DWork;

/* Ap[p][k][r] = A[(p*8 + r) * lda + k], rows past m zeroed. */
static void dpack_a(const double *A, int64_t lda, int64_t m, int64_t kc, double *ap) {
    for (int64_t p = 0; p < m; p += DMR)
        for (int64_t k = 0; k < kc; k++)
            for (int64_t r = 0; r < DMR; r++) *ap++ = p + r < m ? A[(p + r) * lda + k] : 0.0;
}

/* Bp[q][k][j] = B(k, q*16 + j) = B[k * sbk + (q*16 + j) * sbn], columns past n zeroed. */
static void dpack_b(const double *B, int64_t sbk, int64_t sbn, int64_t n, int64_t kc, double *bp) {
    for (int64_t q = 0; q < n; q += DNR)
        for (int64_t k = 0; k < kc; k++)
            for (int64_t j = 0; j < DNR; j++) *bp++ = q + j < n ? B[k * sbk + (q + j) * sbn] : 0.0;
}

#define DK_ROW(r) c##r##a = _mm512_fmadd_pd(_mm512_set1_pd(ap[r]), b0, c##r##a); \
                  c##r##b = _mm512_fmadd_pd(_mm512_set1_pd(ap[r]), b1, c##r##b)
#define DK_STORE(r) if (r < mr) { \
        double *cr = C + (r) * ldc; \
        __m512d o0 = _mm512_mul_pd(va, c##r##a), o1 = _mm512_mul_pd(va, c##r##b); \
        if (accum) { o0 = _mm512_add_pd(o0, _mm512_maskz_loadu_pd(m0, cr)); \
                     o1 = _mm512_add_pd(o1, _mm512_maskz_loadu_pd(m1, cr + 8)); } \
        _mm512_mask_storeu_pd(cr, m0, o0); _mm512_mask_storeu_pd(cr + 8, m1, o1); }

/* C (mr <= 8, nr <= 16) = [accum ? C : 0] + alpha · Ap·Bp over kc. */
QS_TARGET_AVX512 static void dkernel(int64_t kc, const double *ap, const double *bp, double *C,
                                                       int64_t ldc, int mr, int nr, double alpha, int accum) {
    __m512d c0a = _mm512_setzero_pd(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a, c3b = c0a;
    __m512d c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a, c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a;
    for (int64_t k = 0; k < kc; k++, ap += DMR, bp += DNR) {
        __m512d b0 = _mm512_loadu_pd(bp), b1 = _mm512_loadu_pd(bp + 8);
        DK_ROW(0); DK_ROW(1); DK_ROW(2); DK_ROW(3); DK_ROW(4); DK_ROW(5); DK_ROW(6); DK_ROW(7);
    }
    __m512d va = _mm512_set1_pd(alpha);
    __mmask8 m0 = (__mmask8)(nr >= 8 ? 0xff : (1u << nr) - 1);
    __mmask8 m1 = (__mmask8)(nr >= 16 ? 0xff : nr > 8 ? (1u << (nr - 8)) - 1 : 0);
    DK_STORE(0) DK_STORE(1) DK_STORE(2) DK_STORE(3) DK_STORE(4) DK_STORE(5) DK_STORE(6) DK_STORE(7)
}

/* C (m, n) = beta·C + alpha · A (m, k) · B(k, n), beta 0 or 1; A row-major
 * with lda, B element (k, j) at B[k*sbk + j*sbn] (sbk = 1, sbn = ldb for
 * A·Bᵀ with B stored (n, k); sbk = ldb, sbn = 1 for A·B). One thread. */
static void dgemm_one(DWork *w, int64_t m, int64_t n, int64_t k, double alpha, const double *A, int64_t lda,
                      const double *B, int64_t sbk, int64_t sbn, double beta, double *C, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (int64_t i = 0; i < m && beta == 0; i++)
            for (int64_t j = 0; j < n; j++) C[i * ldc + j] = 0;
        return;
    }
    for (int64_t k0 = 0; k0 < k; k0 += DKC) {
        int64_t kc = k - k0 < DKC ? k - k0 : DKC;
        int accum = k0 > 0 || beta != 0;
        dpack_b(B + k0 * sbk, sbk, sbn, n, kc, w->bp);
        for (int64_t i0 = 0; i0 < m; i0 += DMC) {
            int64_t mc = m - i0 < DMC ? m - i0 : DMC;
            dpack_a(A + i0 * lda + k0, lda, mc, kc, w->ap);
            for (int64_t q = 0; q < n; q += DNR)
                for (int64_t p = 0; p < mc; p += DMR)
                    dkernel(kc, w->ap + p * kc, w->bp + q * kc, C + (i0 + p) * ldc + q, ldc,
                            (int)(mc - p < DMR ? mc - p : DMR), (int)(n - q < DNR ? n - q : DNR), alpha, accum);
        }
    }
}

/* Unblocked Cholesky of the (kb, kb) block at A (leading dimension ld). */
static int dchol_block(double *A, int64_t kb, int64_t ld) {
    for (int64_t j = 0; j < kb; j++) {
        double d = A[j * ld + j];
        for (int64_t k = 0; k < j; k++) d -= A[j * ld + k] * A[j * ld + k];
        if (!(d > 0)) return (int)(j + 1);
        d = sqrt(d);
        A[j * ld + j] = d;
        for (int64_t i = j + 1; i < kb; i++) {
            double s = A[i * ld + j];
            for (int64_t k = 0; k < j; k++) s -= A[i * ld + k] * A[j * ld + k];
            A[i * ld + j] = s / d;
        }
    }
    return 0;
}

/* T (kb, kb) dense = inverse of the lower-triangular block at L (ld), zeros above. */
static int dtrinv_block(const double *L, int64_t kb, int64_t ld, double *T) {
    for (int64_t i = 0; i < kb; i++)
        for (int64_t j = 0; j < kb; j++) T[i * kb + j] = j <= i ? L[i * ld + j] : 0.0;
    return linalg_trinv_lower_ref(T, kb);
}

typedef struct DJob {
    DWork *w;                /* (pool size) */
    double *A;               /* the matrix (n, n) */
    int64_t n, k0, k1;       /* current block columns [k0, k1) */
    const double *T;         /* (kb, kb) */
    double *P;               /* scratch */
} DJob;

/* Cholesky panel: rows [k1 + b*DMC, ...) of A[:, k0:k1] = copy · Tᵀ. */
static void dchol_panel(void *arg, int64_t b0, int64_t b1, int tid) {
    DJob *j = arg;
    int64_t n = j->n, kb = j->k1 - j->k0;
    for (int64_t b = b0; b < b1; b++) {
        int64_t r0 = j->k1 + b * DMC, m = n - r0 < DMC ? n - r0 : DMC;
        double *P = j->P + (size_t)tid * DMC * DNB;
        for (int64_t i = 0; i < m; i++)
            for (int64_t c = 0; c < kb; c++) P[i * kb + c] = j->A[(r0 + i) * n + j->k0 + c];
        dgemm_one(&j->w[tid], m, kb, kb, 1.0, P, kb, j->T, 1, kb, 0.0, j->A + r0 * n + j->k0, n);
    }
}

/* Trailing update of row block b: A[rows, k1:rows_end] -= L21[rows] · L21[k1:rows_end]ᵀ
 * (the lower triangle plus the rest of the diagonal block, which is scratch). */
static void dchol_trail(void *arg, int64_t b0, int64_t b1, int tid) {
    DJob *j = arg;
    int64_t n = j->n, kb = j->k1 - j->k0;
    for (int64_t b = b0; b < b1; b++) {
        int64_t r0 = j->k1 + b * DMC, m = n - r0 < DMC ? n - r0 : DMC;
        int64_t cols = r0 + m - j->k1;
        dgemm_one(&j->w[tid], m, cols, kb, -1.0, j->A + r0 * n + j->k0, n, j->A + j->k1 * n + j->k0, 1, n, 1.0,
                  j->A + r0 * n + j->k1, n);
    }
}

static DWork *dwork_new(int nt, int64_t nmax) {
    DWork *w = calloc((size_t)nt, sizeof *w);
    if (!w) return NULL;
    size_t bn = (size_t)((nmax + DNR - 1) / DNR * DNR);
    for (int t = 0; t < nt; t++) {
        w[t].ap = malloc((size_t)DMC * DKC * sizeof(double));
        w[t].bp = malloc(bn * DKC * sizeof(double));
        if (!w[t].ap || !w[t].bp) {
            for (int u = 0; u <= t; u++) { free(w[u].ap); free(w[u].bp); }
            free(w);
            return NULL;
        }
    }
    return w;
}

static void dwork_free(DWork *w, int nt) {
    if (!w) return;
    for (int t = 0; t < nt; t++) { free(w[t].ap); free(w[t].bp); }
    free(w);
}

static int chol_blocked(double *A, int64_t n, Pool *pool) {
    int nt = pool ? pool_size(pool) : 1;
    DWork *w = dwork_new(nt, n);
    double *T = malloc((size_t)DNB * DNB * sizeof *T), *P = malloc((size_t)nt * DMC * DNB * sizeof *P);
    int info = -1;
    if (!w || !T || !P) goto out;
    info = 0;
    for (int64_t k0 = 0; k0 < n && !info; k0 += DNB) {
        int64_t kb = n - k0 < DNB ? n - k0 : DNB, k1 = k0 + kb;
        int r = dchol_block(A + k0 * n + k0, kb, n);
        if (r) { info = (int)(k0 + r); break; }
        if (k1 == n) break;
        if (dtrinv_block(A + k0 * n + k0, kb, n, T)) { info = (int)(k0 + 1); break; }
        DJob j = {w, A, n, k0, k1, T, P};
        int64_t nblk = (n - k1 + DMC - 1) / DMC;
        pool_for(pool, nblk, 1, dchol_panel, &j);
        pool_for(pool, nblk, 1, dchol_trail, &j);
    }
out:
    dwork_free(w, nt);
    free(T);
    free(P);
    return info;
}

typedef struct TJob {
    DWork *w;
    double *L;               /* (n, n): rows < i0 already inverted */
    int64_t n, i0, ib;       /* current block rows [i0, i0 + ib) */
    const double *X;         /* (ib, ib) inverse of the diagonal block */
    double *Tm;              /* (ib, i0) L[i, :i0] · X[:i0, :i0] */
} TJob;

/* Tm[:, jb] = L[i, j0:i0] · X[j0:i0, jb] (X lower triangular: rows below j0 only). */
static void dtrinv_t(void *arg, int64_t b0, int64_t b1, int tid) {
    TJob *j = arg;
    int64_t n = j->n;
    for (int64_t b = b0; b < b1; b++) {
        int64_t j0 = b * DNB, w = j->i0 - j0 < DNB ? j->i0 - j0 : DNB;
        dgemm_one(&j->w[tid], j->ib, w, j->i0 - j0, 1.0, j->L + j->i0 * n + j0, n, j->L + j0 * n + j0, n, 1, 0.0,
                  j->Tm + j0, j->i0);
    }
}

/* L[i, jb] = -X · Tm[:, jb]. */
static void dtrinv_x(void *arg, int64_t b0, int64_t b1, int tid) {
    TJob *j = arg;
    int64_t n = j->n;
    for (int64_t b = b0; b < b1; b++) {
        int64_t j0 = b * DNB, w = j->i0 - j0 < DNB ? j->i0 - j0 : DNB;
        dgemm_one(&j->w[tid], j->ib, w, j->ib, -1.0, j->X, j->ib, j->Tm + j0, j->i0, 1, 0.0, j->L + j->i0 * n + j0, n);
    }
}

static int trinv_blocked(double *L, int64_t n, Pool *pool) {
    int nt = pool ? pool_size(pool) : 1;
    DWork *w = dwork_new(nt, n);
    double *X = malloc((size_t)DNB * DNB * sizeof *X), *Tm = malloc((size_t)DNB * (size_t)n * sizeof *Tm);
    int info = -1;
    if (!w || !X || !Tm) goto out;
    info = 0;
    for (int64_t i0 = 0; i0 < n; i0 += DNB) {
        int64_t ib = n - i0 < DNB ? n - i0 : DNB;
        for (int64_t d = 0; d < ib; d++)
            if (L[(i0 + d) * n + i0 + d] == 0) { info = (int)(i0 + d + 1); goto out; }
        dtrinv_block(L + i0 * n + i0, ib, n, X);
        if (i0 > 0) {
            TJob j = {w, L, n, i0, ib, X, Tm};
            int64_t nblk = (i0 + DNB - 1) / DNB;
            pool_for(pool, nblk, 1, dtrinv_t, &j);
            pool_for(pool, nblk, 1, dtrinv_x, &j);
        }
        /* zeros above the diagonal inside the block: later products read
         * these rows as the (lower-triangular) inverse */
        for (int64_t r = 0; r < ib; r++)
            for (int64_t c = 0; c < ib; c++) L[(i0 + r) * n + i0 + c] = c <= r ? X[r * ib + c] : 0.0;
    }
out:
    dwork_free(w, nt);
    free(X);
    free(Tm);
    return info;
}

int linalg_cholesky_lower_pool(double *A, int64_t n, Pool *pool) {
    ASSERT(n >= 0 && n <= INT_MAX);
    if (n == 0) return 0;
    if (!cpu_has_avx512f()) return linalg_cholesky_lower(A, n);
    int r = chol_blocked(A, n, pool);
    return r >= 0 ? r : -1;
}

int linalg_trinv_lower_pool(double *L, int64_t n, Pool *pool) {
    ASSERT(n >= 0 && n <= INT_MAX);
    if (n == 0) return 0;
    if (!cpu_has_avx512f()) return linalg_trinv_lower(L, n);
    int r = trinv_blocked(L, n, pool);
    return r >= 0 ? r : -1;
}
