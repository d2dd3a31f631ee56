#include "kernels/blas.h"

#include <cblas.h>
#include <immintrin.h>
#include <limits.h>

#include "core/assert.h"
#include "kernels/cpu.h"
#include "kernels/simd.h"

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

/* === float32 rows -> float64 rank-k update (own AVX-512 kernel) ===
 * X is packed, KC rows at a time, into 16-column panels of doubles:
 * P[(p * kc + r) * 16 + c] = X[k0 + r][16p + c] (zero past n). A tile of C
 * (8 rows i0.., 16 columns j0..) is Σ_r P_i[r][8h + 0..7]ᵀ ⊗ P_j[r][0..15]:
 * one broadcast per row of the tile and two loads per r, 16 FMAs. Rows of C
 * are cut into blocks of 64; block b is paired with block nb-1-b so the
 * triangle splits evenly over the pool. */

#define SY_NR 16
#define SY_MR 8
#define SY_KC 256
#define SY_IB 64

size_t blas_dsyrk_f32_pack_len(int64_t n, int64_t k) {
    int64_t kc = k < SY_KC ? k : SY_KC;
    int64_t np = (n + SY_NR - 1) / SY_NR;
    return (size_t)(kc > 0 ? kc : 1) * (size_t)np * SY_NR;
}

void blas_dsyrk_f32_upper_ref(int64_t n, int64_t k, const float *X, int64_t ldx, double *C, int64_t ldc) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) {
            double s = 0;
            for (int64_t r = 0; r < k; r++) s += (double)X[r * ldx + i] * X[r * ldx + j];
            C[i * ldc + j] += s;
        }
}

typedef struct SyrkJob {
    const float *X;
    int64_t ldx, n, k0, kc, np, nb;
    double *P, *C;
    int64_t ldc;
} SyrkJob;

static void syrk_pack_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    SyrkJob *j = arg;
    for (int64_t p = b; p < e; p++) {
        double *dst = j->P + p * j->kc * SY_NR;
        int64_t c0 = p * SY_NR, nc = j->n - c0 < SY_NR ? j->n - c0 : SY_NR;
        for (int64_t r = 0; r < j->kc; r++) {
            const float *src = j->X + (j->k0 + r) * j->ldx + c0;
            int64_t c = 0;
            for (; c < nc; c++) dst[r * SY_NR + c] = src[c];
            for (; c < SY_NR; c++) dst[r * SY_NR + c] = 0.0;
        }
    }
}

#define SY_ROW(r) c##r##a = _mm512_fmadd_pd(_mm512_set1_pd(a[r]), b0, c##r##a); \
                  c##r##b = _mm512_fmadd_pd(_mm512_set1_pd(a[r]), b1, c##r##b)
#define SY_STORE(r) if (r < mr) syrk_store_row(C + r * ldc, c##r##a, c##r##b, nr)

QS_TARGET_AVX512 static inline void syrk_store_row(double *c, __m512d lo, __m512d hi, int64_t nr) {
    if (nr == SY_NR) {
        _mm512_storeu_pd(c, _mm512_add_pd(_mm512_loadu_pd(c), lo));
        _mm512_storeu_pd(c + 8, _mm512_add_pd(_mm512_loadu_pd(c + 8), hi));
        return;
    }
    double t[SY_NR];
    _mm512_storeu_pd(t, lo);
    _mm512_storeu_pd(t + 8, hi);
    for (int64_t j = 0; j < nr; j++) c[j] += t[j];
}

/* C tile (mr <= 8 rows, nr <= 16 columns) += A-half-panel ⊗ B-panel over kc rows. */
QS_TARGET_AVX512 static void syrk_tile(int64_t kc, const double *A, const double *B, double *C,
                                                         int64_t ldc, int64_t mr, int64_t nr) {
    __m512d c0a = _mm512_setzero_pd(), c0b = c0a, c1a = c0a, c1b = c0a, c2a = c0a, c2b = c0a, c3a = c0a, c3b = c0a;
    __m512d c4a = c0a, c4b = c0a, c5a = c0a, c5b = c0a, c6a = c0a, c6b = c0a, c7a = c0a, c7b = c0a;
    for (int64_t r = 0; r < kc; r++) {
        const double *a = A + r * SY_NR;
        __m512d b0 = _mm512_loadu_pd(B + r * SY_NR), b1 = _mm512_loadu_pd(B + r * SY_NR + 8);
        SY_ROW(0); SY_ROW(1); SY_ROW(2); SY_ROW(3); SY_ROW(4); SY_ROW(5); SY_ROW(6); SY_ROW(7);
    }
    SY_STORE(0); SY_STORE(1); SY_STORE(2); SY_STORE(3); SY_STORE(4); SY_STORE(5); SY_STORE(6); SY_STORE(7);
}

QS_TARGET_AVX512 static void syrk_block(const SyrkJob *j, int64_t b) {
    int64_t i_begin = b * SY_IB, i_end = i_begin + SY_IB < j->n ? i_begin + SY_IB : j->n;
    for (int64_t q = i_begin / SY_NR; q < j->np; q++) {
        int64_t j0 = q * SY_NR, nr = j->n - j0 < SY_NR ? j->n - j0 : SY_NR;
        const double *B = j->P + q * j->kc * SY_NR;
        for (int64_t i0 = i_begin; i0 < i_end && i0 < j0 + SY_NR; i0 += SY_MR) {
            int64_t mr = i_end - i0 < SY_MR ? i_end - i0 : SY_MR;
            const double *A = j->P + (i0 / SY_NR) * j->kc * SY_NR + (i0 % SY_NR);
            syrk_tile(j->kc, A, B, j->C + i0 * j->ldc + j0, j->ldc, mr, nr);
        }
    }
}

static void syrk_pairs(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    SyrkJob *j = arg;
    for (int64_t p = b; p < e; p++) {
        syrk_block(j, p);
        if (j->nb - 1 - p != p) syrk_block(j, j->nb - 1 - p);
    }
}

void blas_dsyrk_f32_upper(int64_t n, int64_t k, const float *X, int64_t ldx, double *C, int64_t ldc,
                          double *pack, Pool *pool) {
    if (n <= 0 || k <= 0) return;
    if (!cpu_has_avx512f()) {
        /* Convert a KC-row block at a time into pack (n * KC >= its size) and use BLAS. */
        for (int64_t k0 = 0; k0 < k; k0 += SY_KC) {
            int64_t kc = k - k0 < SY_KC ? k - k0 : SY_KC;
            for (int64_t r = 0; r < kc; r++)
                for (int64_t c = 0; c < n; c++) pack[r * n + c] = X[(k0 + r) * ldx + c];
            blas_dsyrk_upper_tn(n, kc, pack, n, C, ldc);
        }
        return;
    }
    SyrkJob j = {.X = X, .ldx = ldx, .n = n, .P = pack, .C = C, .ldc = ldc};
    j.np = (n + SY_NR - 1) / SY_NR;
    j.nb = (n + SY_IB - 1) / SY_IB;
    for (int64_t k0 = 0; k0 < k; k0 += SY_KC) {
        j.k0 = k0;
        j.kc = k - k0 < SY_KC ? k - k0 : SY_KC;
        pool_for(pool, j.np, 4, syrk_pack_rows, &j);
        pool_for(pool, (j.nb + 1) / 2, 1, syrk_pairs, &j);
    }
}
