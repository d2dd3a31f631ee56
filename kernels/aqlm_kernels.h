/* Kernels for AQLM (additive multi-codebook) weights: a lookup-table GEMV for
 * codebooks of up to 2^8 codewords, a direct codeword-gather GEMV for larger
 * ones (up to 2^16), a batched path for prefill (decode a tile of W^ to
 * float32, then sgemm), and the two inner loops the quantizer spends its time
 * in (codeword scoring and a rank-g row update). Every fast path dispatches at
 * run time through kernels/cpu.h and has a scalar *_ref twin.
 *
 * The weight W^ (n_out, n_in) represented by an AQLM matrix is
 *   W^[i, j*g + a] = s_i * sum_m C_m[code(i, j, m)][a]
 * for output row i, input group j (n_in / g groups of g columns), codebook m. */
#ifndef QS_KERNELS_AQLM_KERNELS_H
#define QS_KERNELS_AQLM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"

/* Borrowed views of a packed AQLM matrix; the kernels never own anything.
 * Exactly one of codes8 (B <= 8) / codes16 (B > 8) is non-NULL, except that
 * the gather and decode kernels accept codes16 for any B. */
typedef struct AqlmPacked {
    int M;                    /* codebooks */
    int B;                    /* bits per code; K = 2^B codewords per codebook */
    int g;                    /* group size along the input dimension */
    int64_t n_out, n_in;
    int64_t n_groups;         /* n_in / g */
    int64_t K;                /* 2^B */
    const float *cb;          /* (M, K, g) codewords */
    const float *cbt;         /* (M, g, K) the same, transposed (LUT build); may be NULL
                                 for the gather/decode kernels */
    const uint8_t *codes8;    /* (n_out, n_groups, M) when B <= 8 */
    const uint16_t *codes16;  /* (n_out, n_groups, M) when B > 8 */
    const float *scales;      /* (n_out) */
} AqlmPacked;

/* === Quantizer inner loops === */

/* out[k] = alpha * q[k] + sum_a u[a] * CT[a*K + k] for k in [0, K); q may be
 * NULL (then the alpha term is 0). CT is one transposed codebook (g, K). */
void aqlm_dots(const float *CT, int64_t K, int g, const float *u, const float *q, float alpha,
               float *out);
void aqlm_dots_ref(const float *CT, int64_t K, int g, const float *u, const float *q, float alpha,
                   float *out);

/* Returns the first index of the smallest of v[0, n) (n >= 1; NaNs are never
 * chosen unless all are NaN, then 0). */
int64_t aqlm_argmin(const float *v, int64_t n);
int64_t aqlm_argmin_ref(const float *v, int64_t n);

/* Y[r, 0:n] -= sum_a D[r*g + a] * Hj[a*ldh + 0:n] for r in [0, rows): the
 * change of R·H when a group's residual changes by D (rows, g). */
void aqlm_rank_update(float *Y, int64_t ldy, int64_t rows, const float *D, int g, const float *Hj,
                      int64_t ldh, int64_t n);
void aqlm_rank_update_ref(float *Y, int64_t ldy, int64_t rows, const float *D, int g,
                          const float *Hj, int64_t ldh, int64_t n);

/* === Inference === */

/* Floats of LUT scratch aqlm_gemv / aqlm_lut_build need: n_groups * M * K. */
size_t aqlm_lut_floats(const AqlmPacked *w);

/* lut[(j*M + m)*K + k] = x[j*g : j*g+g] · C_m[k] for every group j, codebook m,
 * codeword k. Requires w->cbt. x is (n_in). */
void aqlm_lut_build(const AqlmPacked *w, const float *x, float *lut);
void aqlm_lut_build_ref(const AqlmPacked *w, const float *x, float *lut);

/* y[i] = s_i * sum_j sum_m lut[(j*M + m)*K + code(i,j,m)] for rows [r0, r1)
 * (y indexed by absolute row). Requires codes8 (B <= 8). */
void aqlm_lut_gemv_rows(const AqlmPacked *w, const float *lut, int64_t r0, int64_t r1, float *y);
void aqlm_lut_gemv_rows_ref(const AqlmPacked *w, const float *lut, int64_t r0, int64_t r1,
                            float *y);

/* y[i] = s_i * sum_j x_j · (sum_m C_m[code(i,j,m)]) for rows [r0, r1): decodes
 * each group's codeword sum on the fly. Any B (codes8 or codes16). */
void aqlm_gather_gemv_rows(const AqlmPacked *w, const float *x, int64_t r0, int64_t r1, float *y);
void aqlm_gather_gemv_rows_ref(const AqlmPacked *w, const float *x, int64_t r0, int64_t r1,
                               float *y);

/* out[(i - r0)*n_in + c] = W^[i, c] for rows [r0, r1). */
void aqlm_decode_rows(const AqlmPacked *w, int64_t r0, int64_t r1, float *out);
void aqlm_decode_rows_ref(const AqlmPacked *w, int64_t r0, int64_t r1, float *out);

/* y (n_out) = W^ x. With B <= 8 and lut non-NULL (aqlm_lut_floats floats)
 * builds the LUT and gathers from it; otherwise gathers codewords. Rows run
 * in parallel on pool (may be NULL). */
void aqlm_gemv(const AqlmPacked *w, const float *x, float *y, float *lut, Pool *pool);

/* Tokens at or above which aqlm_gemm decodes tiles of W^ and calls sgemm
 * instead of running one GEMV per token (measured in tests/bench_aqlm.c). */
#define AQLM_PREFILL_DECODE_T 8

/* Rows of W^ decoded per sgemm call in the prefill path. */
#define AQLM_DECODE_TILE 256

/* Floats of scratch aqlm_gemm needs for T tokens (0 when it needs none
 * beyond the LUT): AQLM_DECODE_TILE * n_in when T >= AQLM_PREFILL_DECODE_T. */
size_t aqlm_gemm_scratch_floats(const AqlmPacked *w, int64_t T);

/* y (T, n_out) = x (T, n_in) · W^ᵀ. For T >= AQLM_PREFILL_DECODE_T and a
 * non-NULL tile (aqlm_gemm_scratch_floats floats) decodes tiles of W^ on the
 * pool and multiplies them with sgemm (OpenBLAS threads; call from one thread
 * at a time); otherwise one aqlm_gemv per token (lut as there, may be NULL). */
void aqlm_gemm(const AqlmPacked *w, const float *x, int64_t T, float *y, float *lut, float *tile,
               Pool *pool);

/* Reference: y (T, n_out) = x · W^ᵀ decoded in double, for tests. */
void aqlm_gemm_ref(const AqlmPacked *w, const float *x, int64_t T, float *y);

#endif
