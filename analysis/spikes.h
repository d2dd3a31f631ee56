/* Spike scores: per (layer, projection input) the max |x|, the median |x|
 * (from the histogram) and their ratio, ranked; the top-k form the
 * spike-aware candidate set (the projections a plan keeps at higher
 * precision or treats with per-IC scales). See docs/spikes.md for what the
 * paper found on full-size models. */
#ifndef QS_ANALYSIS_SPIKES_H
#define QS_ANALYSIS_SPIKES_H

#include <stdint.h>

#include "analysis/calib.h"
#include "core/status.h"

#define SPIKES_DEFAULT_K 3

typedef struct SpikeScore {
    int64_t layer;
    TapPoint tap;            /* TAP_QKV, TAP_O, TAP_GATE_UP or TAP_DOWN */
    double max;              /* max |x| */
    double median;           /* median |x| (histogram, 6.25% resolution) */
    double ratio;            /* max / median (max / 2^-20 when the median is 0) */
    double p99, p999;        /* |x| percentiles */
    double kurtosis;         /* Pearson, of x */
    int64_t rank;            /* 1-based, by ratio (ties: layer, then tap order) */
    int64_t rank_max;        /* 1-based, by max */
} SpikeScore;

/* Scores the four projection inputs of every layer of cs: *out has
 * cs->n_layers * 4 entries sorted by rank (heap; caller frees). */
Status spikes_score(const CalibStats *cs, SpikeScore **out, int64_t *n, Err *err);

/* 1 when s is in the spike-aware candidate set of size k (rank <= k). */
int spikes_is_candidate(const SpikeScore *s, int64_t k);

#endif
