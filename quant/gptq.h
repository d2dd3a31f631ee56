/* GPTQ (Frantar et al., 2022): quantize a weight W (n_out, n_in) column by
 * column, pushing each column's rounding error onto the columns not yet
 * quantized through the inverse of the calibration second moment H = XᵀX, so
 * the layer's output X·Wᵀ changes as little as possible.
 *
 * Details that match the reference implementation (gptq.py, fasterquant):
 *  - dead inputs (H_jj == 0) get H_jj = 1 and W[:, j] = 0;
 *  - damping lambda = damp · mean(diag H) added to the diagonal;
 *  - the upper Cholesky factor U of H^-1 (H^-1 = UᵀU) drives the updates;
 *  - lazy batches: columns are processed in blocks of `block`; inside a
 *    block each column's error updates the rest of the block, and the whole
 *    block's errors update the remaining columns with one GEMM;
 *  - act_order permutes columns by descending diag H and un-permutes at the end.
 * Grouping:
 *  - GROUP_OC, group 0 (per row) and GROUP_TENSOR: scales fitted up front
 *    on the whole (dead-column-zeroed) W;
 *  - GROUP_OC, group g: each row's run of g columns gets its scale when the
 *    quantization reaches the run's first column (on the error-updated
 *    values), or up front from the original W with static_groups; act_order
 *    with groups always uses static groups (fitted in the original order), so
 *    the stored groups stay runs of consecutive columns;
 *  - GROUP_IC (AdaDim's GPTQ-IC): each input column's scale(s) (one per
 *    column, or one per run of g rows within it) are fitted up front from
 *    that column, then the same column-by-column error propagation runs.
 *  - ggml block formats (q8_0 … q6_k): each block (32 columns, 256 for
 *    K-quants) is fitted like a dynamic OC group: on reaching its first
 *    column, ggml's own quantizer of the type (importance-weighted under
 *    diag H where the type has one) writes the block's header from the
 *    error-updated values; each code is then the nearest on its sub-block's
 *    grid (quant/ggml_type.h's GgmlGrid) and the result is the blocks
 *    themselves. Up front from the original W with static_groups/act_order.
 * The block size is rounded up to a multiple of g for dynamic OC groups (and
 * ggml blocks) so a group never straddles a lazy batch (this makes the
 * blocked algorithm equal to the unblocked one). */
#ifndef QS_QUANT_GPTQ_H
#define QS_QUANT_GPTQ_H

#include <stdint.h>

#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "quant/qtensor.h"

typedef struct GptqOpts {
    double damp;             /* fraction of mean(diag H) added to the diagonal (default 0.01) */
    int act_order;           /* 1: process columns by descending diag H (default 0) */
    int64_t block;           /* lazy batch width in columns (default 128) */
    int static_groups;       /* 1: fit OC group scales up front (forced with act_order) */
} GptqOpts;

/* Fills o with the defaults above. */
void gptq_opts_default(GptqOpts *o);

/* Statistics of one run (optional output). */
typedef struct GptqStats {
    double damp_used;        /* the lambda actually added (after any retry) */
    int64_t dead_cols;       /* inputs with H_jj == 0 */
    int retries;             /* times the damping was multiplied by 10 after a failed Cholesky */
    double sec_factor;       /* wall seconds: building and factorizing H */
    double sec_batches;      /* quantizing columns and in-batch updates (with the
                                lazy-batch GEMM fused in on AVX-512 machines) */
    double sec_gemm;         /* lazy-batch GEMM through OpenBLAS (other machines) */
} GptqStats;

/* Quantizes W (n_out, n_in) with p and the calibration matrix H (n_in, n_in),
 * given as float64 (Hd) or float32 (Hf): exactly one of them must be
 * non-NULL; only its upper triangle (j >= i) is read; borrowed for the call.
 * Result in *out (allocated here; release with qtensor_done). p's format must have scales (int or fp8)
 * or be a ggml block type ggml_type_grid accepts.
 * pool (may be NULL) runs the per-row work; prog (may be NULL) receives
 * progress in columns and is polled for cancellation (ST_ERR_CANCELLED).
 * stats may be NULL. Errors: ST_ERR_ARG (bad params/grouping),
 * ST_ERR_NUMERIC (H not positive definite even after damping retries or a
 * non-finite weight), ST_ERR_RANGE (a group scale beyond fp16), ST_ERR_NOMEM.
 * Same as gptq_factor_new + gptq_quantize_factored + gptq_factor_free. */
Status gptq_quantize(const float *W, int64_t n_out, int64_t n_in, const double *Hd, const float *Hf,
                     const QParams *p, const GptqOpts *o, Pool *pool, Progress *prog, QTensor *out,
                     GptqStats *stats, Err *err);

/* === Sharing one factorization ===
 * The O(n^3) part depends only on H, damp and act_order, so projections that
 * read the same input (q/k/v, gate/up) and AdaDim's two variants can share it. */
typedef struct GptqFactor GptqFactor;

/* Factorizes H (n, n) (as in gptq_quantize: Hd or Hf, upper triangle read)
 * with o's damp and act_order (o may be NULL: defaults), on pool (may be
 * NULL). Caller frees with gptq_factor_free. Errors: ST_ERR_ARG,
 * ST_ERR_NUMERIC, ST_ERR_NOMEM. */
Status gptq_factor_new(const double *Hd, const float *Hf, int64_t n, const GptqOpts *o, Pool *pool,
                       GptqFactor **out, Err *err);

/* NULL is a no-op. */
void gptq_factor_free(GptqFactor *f);

/* The n the factor was built for. */
int64_t gptq_factor_dim(const GptqFactor *f);

/* gptq_quantize with a prebuilt factor f (borrowed; read-only, so several
 * calls may share it one after another). The factor's damp and act_order
 * apply; o supplies block and static_groups. ST_ERR_MISMATCH if f's n is not
 * n_in. stats (may be NULL) reports the factor's figures plus this run's. */
Status gptq_quantize_factored(const float *W, int64_t n_out, int64_t n_in, const GptqFactor *f, const QParams *p,
                              const GptqOpts *o, Pool *pool, Progress *prog, QTensor *out, GptqStats *stats,
                              Err *err);

#endif
