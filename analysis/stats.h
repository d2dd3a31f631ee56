/* Streaming activation statistics for one (layer, tap point): per-channel
 * sums, a log-binned |x| histogram with percentiles, running central moments
 * (kurtosis), the top-k spikes and activation-quantization error sums (the
 * second-moment matrix H = XᵀX lives in analysis/hstore.h).
 *
 * Everything here is deterministic for a given input stream, whatever the
 * thread count: work is cut into fixed 64-channel slices whose partial
 * results are merged in slice order, and ties among spikes are broken by a
 * total order. */
#ifndef QS_ANALYSIS_STATS_H
#define QS_ANALYSIS_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"
#include "analysis/hstore.h"
#include "kernels/actquant.h"
#include "model/model.h"

/* === Histogram of |x| ===
 * Octaves 2^HIST_MIN_EXP .. 2^HIST_MAX_EXP, each cut into HIST_SUB linear
 * sub-bins taken from the top mantissa bits, so a bin [lo, hi) has
 * (hi - lo) / lo <= 1/16: resolution 6.25% of the value. Bin 0 holds
 * |x| < 2^-20 (zeros included), the last bin |x| >= 2^20 (and inf/NaN). */
#define HIST_SUB 16
#define HIST_MIN_EXP (-20)
#define HIST_MAX_EXP 20
#define HIST_NBINS (2 + (HIST_MAX_EXP - HIST_MIN_EXP) * HIST_SUB)

/* Returns the bin of a = |x| (a >= 0 or NaN). */
int hist_bin(float a);

/* Writes the bounds of bin b: [*lo, *hi). The last bin reports hi = +inf. */
void hist_bin_range(int b, double *lo, double *hi);

/* Returns the p-quantile (0 < p <= 1, nearest-rank definition) of the values
 * counted in h (HIST_NBINS counts), interpolated by rank inside its bin and
 * capped at absmax. Returns 0 for an empty histogram. The exact quantile lies
 * in the same bin, so the error is below the bin width (6.25% relative, or
 * 2^-20 absolute in bin 0). */
double hist_percentile(const uint64_t *h, double p, double absmax);

/* === Moments === */

/* Count, mean and central moment sums M_k = Σ(x - mean)^k, in double. */
typedef struct Moments {
    int64_t n;
    double mean, m2, m3, m4;
} Moments;

/* Folds b into a (Pébay's pairwise update); exact up to rounding. */
void moments_merge(Moments *a, const Moments *b);

/* Population variance M2/n (0 when n == 0). */
double moments_variance(const Moments *m);

/* Pearson kurtosis n·M4/M2² (3 for a Gaussian, not the excess); 0 when M2 == 0. */
double moments_kurtosis(const Moments *m);

/* === Spikes === */

/* One large activation: value x at (sequence seq, position pos, channel) with
 * the token id that row carried; text is filled by calibration from the
 * tokenizer (NUL-terminated, truncated). */
typedef struct Spike {
    float value;
    int32_t channel;
    int32_t token;           /* -1 if unknown */
    int32_t pos;
    int64_t seq;
    char text[24];
} Spike;

/* Total order used for top-k: larger |value| first, then earlier seq, pos,
 * channel. Returns 1 when a ranks before b. */
int spike_before(const Spike *a, const Spike *b);

/* Inserts s into top (n entries, sorted by spike_before, capacity k) if it
 * belongs to the k best; updates *n. */
void spike_topk_insert(Spike *top, int32_t *n, int32_t k, const Spike *s);

/* === Activation quantization error ===
 * Relative error ‖x - Q(x)‖² / ‖x‖² of a projection input under symmetric
 * int8 (±127) and OCP fp8 (saturating) with a scale s = absmax / qmax:
 *  - ACT_TENSOR_STATIC: absmax of all earlier sequences (calibrated on held-out
 *    data: the first sequence only seeds it, values above it saturate);
 *  - ACT_TENSOR_DYNAMIC: absmax of the current batch (one sequence);
 *  - ACT_TOKEN_DYNAMIC: absmax of each row (per-token scales are by nature
 *    computed at run time, so there is no static per-token mode). */
typedef enum { ACT_TENSOR_STATIC, ACT_TENSOR_DYNAMIC, ACT_TOKEN_DYNAMIC, ACT_MODE_COUNT } ActMode;

/* "tensor-static", "tensor-dynamic", "token-dynamic" (the formats' names are
 * kernels/actquant.h act_format_name, their ranges actq_qmax). */
const char *act_mode_name(ActMode m);

/* The error kernels (kernels/actquant.h actq_err_row) take one scale per mode. */
_Static_assert(ACT_MODE_COUNT == ACTQ_ERR_SCALES, "ActMode and the error kernels' scale count differ");

/* === Per-(layer, tap) accumulator === */

typedef struct TapStats {
    int64_t width;
    int64_t n_rows;          /* rows (tokens) seen: the count of every channel */
    double *ch_sum;          /* (width) Σx */
    double *ch_sumsq;        /* (width) Σx² */
    float *ch_absmax;        /* (width) max|x| */
    float absmax;            /* whole tensor max|x| */
    Moments mom;             /* whole tensor, signed x */
    uint64_t hist[HIST_NBINS]; /* |x| */
    int32_t k;               /* capacity of top */
    int32_t n_top;
    Spike *top;              /* (k) best first (spike_before order) */
    int has_act;             /* accumulates act_err */
    double act_ref[ACT_MODE_COUNT];                /* Σx² over the rows each mode saw */
    double act_err[ACT_COUNT][ACT_MODE_COUNT]; /* Σ(x - Q(x))² */
    int64_t n_nonfinite;     /* inf/NaN values seen (calibration fails on any; not saved) */
} TapStats;

/* Allocates the channel arrays and top-k storage of an embedded TapStats
 * (zeroed). has_act enables the activation-quantization sums. */
Status tapstats_init(TapStats *ts, int64_t width, int32_t k, int has_act, Err *err);

/* Frees the arrays; safe on a zeroed TapStats. */
void tapstats_done(TapStats *ts);

/* Scratch shared by tapstats_add calls: sized for batches up to max_T rows,
 * widths up to max_width, top-k capacity k and the pool's thread count. */
typedef struct TapScratch TapScratch;

/* Creates scratch; caller frees with tapscratch_free. */
Status tapscratch_new(int64_t max_T, int64_t max_width, int32_t k, int n_threads, TapScratch **out,
                      Err *err);

/* NULL is a no-op. */
void tapscratch_free(TapScratch *sc);

/* One batch's statistics on their own, and their fold into running ones.
 * tapstats_add(ts, …) is tapstats_batch(b, …, static_amax) with static_amax
 * = ts->absmax when ts has rows (else 0: no static measurement), then
 * tapstats_merge(ts, b); apart, batches can be measured anywhere (MPI
 * ranks, analysis/calib.c) and folded in batch order with the same result
 * as one process. b: initialized with ts's width (or wider, then its width
 * set to ts's), k and has_act; tapstats_batch zeroes it first. Spikes of
 * a batch are ranked among themselves: the running top-k is the union's
 * (spike_before is a total order). */
void tapstats_batch(TapStats *b, const float *x, int64_t T, const int32_t *tokens, int64_t pos0, int64_t seq,
                    float static_amax, TapScratch *sc, Pool *pool);
void tapstats_merge(TapStats *ts, const TapStats *b);

/* max|x| over a batch (T, width), NaN ignored: what the batch adds to a
 * TapStats' absmax, so the next batch's static_amax is known before the
 * batch itself is measured. */
float tapstats_batch_absmax(const float *x, int64_t T, int64_t width);

/* Folds a batch x (T, ts->width) into ts. tokens (T) may be NULL (token -1);
 * row r sits at position pos0 + r of sequence seq. Runs on pool (may be NULL;
 * not from inside a pool job). T <= max_T and width <= max_width of sc. */
void tapstats_add(TapStats *ts, const float *x, int64_t T, const int32_t *tokens, int64_t pos0,
                  int64_t seq, TapScratch *sc, Pool *pool);

/* Relative activation-quantization error of ts for (f, m); NaN when no row
 * was measured in that mode. */
double tapstats_act_rel_err(const TapStats *ts, ActFormat f, ActMode m);

#endif
