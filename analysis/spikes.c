#include "analysis/spikes.h"

#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"

#define SPIKE_TAPS 4

static int score_cmp_ratio(const void *a, const void *b) {
    const SpikeScore *x = a, *y = b;
    if (x->ratio != y->ratio) return x->ratio > y->ratio ? -1 : 1;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return (int)x->tap - (int)y->tap;
}

static int score_cmp_max(const void *a, const void *b) {
    const SpikeScore *x = a, *y = b;
    if (x->max != y->max) return x->max > y->max ? -1 : 1;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return (int)x->tap - (int)y->tap;
}

Status spikes_score(const CalibStats *cs, SpikeScore **out, int64_t *n, Err *err) {
    *out = NULL;
    *n = 0;
    int64_t cnt = cs->n_layers * SPIKE_TAPS;
    SpikeScore *s = core_calloc((size_t)cnt, sizeof *s);
    if (!s) return err_set(err, ST_ERR_NOMEM, "spike scores");
    for (int64_t l = 0; l < cs->n_layers; l++)
        for (int t = 0; t < SPIKE_TAPS; t++) {
            const TapStats *ts = calib_tap(cs, l, (TapPoint)t);
            SpikeScore *e = &s[l * SPIKE_TAPS + t];
            e->layer = l;
            e->tap = (TapPoint)t;
            e->max = ts->absmax;
            e->median = hist_percentile(ts->hist, 0.5, ts->absmax);
            e->p99 = hist_percentile(ts->hist, 0.99, ts->absmax);
            e->p999 = hist_percentile(ts->hist, 0.999, ts->absmax);
            e->kurtosis = moments_kurtosis(&ts->mom);
            double med = e->median > 0x1p-20 ? e->median : 0x1p-20;
            e->ratio = e->max / med;
        }
    qsort(s, (size_t)cnt, sizeof *s, score_cmp_max);
    for (int64_t i = 0; i < cnt; i++) s[i].rank_max = i + 1;
    qsort(s, (size_t)cnt, sizeof *s, score_cmp_ratio);
    for (int64_t i = 0; i < cnt; i++) s[i].rank = i + 1;
    *out = s;
    *n = cnt;
    return ST_OK;
}

int spikes_is_candidate(const SpikeScore *s, int64_t k) { return s->rank <= k; }
