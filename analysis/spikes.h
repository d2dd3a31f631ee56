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
#include "model/model.h"
#include "model/tokenizer.h"

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

/* The calibration windows cs was computed on, rebuilt from its text (text,
 * len: checked against cs's text hash and size; ST_ERR_MISMATCH when they
 * differ) and parameters: *seqs is (*n_seqs, seqlen) row-major, heap
 * (caller frees). m supplies the tokenizer. */
Status spikes_windows(const CalibStats *cs, const Model *m, const char *text, size_t len, int32_t **seqs,
                      int64_t *n_seqs, Err *err);

#define SPIKE_CONTEXT 4 /* tokens shown before a spike's */

/* A spike's token with the SPIKE_CONTEXT tokens before it in its window, as
 * display text: "…once upon a[ time]" (newlines as \n, control bytes as
 * \xNN; "…" when the window goes on before). Written to buf (n bytes). */
void spikes_context(const Tokenizer *t, const int32_t *seqs, int64_t n_seqs, int64_t seqlen, const Spike *s,
                    char *buf, size_t n);

/* Merges duplicates among n spikes (largest |value| first, as TapStats.top
 * holds them): spikes with the same channel and token and the same context
 * (ctx[i], when ctx is not NULL) or else the same value are one row. Writes
 * the index of each kept spike into keep and how many it stands for into
 * count (both n entries); returns the number kept, in order. */
int64_t spikes_merge(const Spike *s, int64_t n, const char *const *ctx, int64_t *keep, int64_t *count);

/* The top-k spike sites by calibration's ranking, as plan patterns
 * "L.qkv", "L.o", "L.gate_up", "L.down" (best first). *sites is an array of
 * k heap strings (caller frees each and the array); *n <= k. */
Status spikes_top_sites(const CalibStats *cs, int64_t k, char ***sites, int64_t *n, Err *err);

#endif
