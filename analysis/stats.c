#include "analysis/stats.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/assert.h"
#include "kernels/blas.h"



/* Channels per work slice: fixed, so results never depend on the thread count. */
#define SLICE 256

/* === Histogram === */

int hist_bin(float a) {
    uint32_t b;
    memcpy(&b, &a, sizeof b);
    b &= 0x7fffffffu;
    int e = (int)(b >> 23) - 127;
    if (e < HIST_MIN_EXP) return 0;
    if (e >= HIST_MAX_EXP) return HIST_NBINS - 1;
    return 1 + (e - HIST_MIN_EXP) * HIST_SUB + (int)((b >> (23 - 4)) & (HIST_SUB - 1));
}

void hist_bin_range(int b, double *lo, double *hi) {
    if (b <= 0) {
        *lo = 0;
        *hi = ldexp(1.0, HIST_MIN_EXP);
        return;
    }
    if (b >= HIST_NBINS - 1) {
        *lo = ldexp(1.0, HIST_MAX_EXP);
        *hi = INFINITY;
        return;
    }
    int e = HIST_MIN_EXP + (b - 1) / HIST_SUB, m = (b - 1) % HIST_SUB;
    *lo = ldexp(1.0 + (double)m / HIST_SUB, e);
    *hi = ldexp(1.0 + (double)(m + 1) / HIST_SUB, e);
}

double hist_percentile(const uint64_t *h, double p, double absmax) {
    uint64_t total = 0;
    for (int b = 0; b < HIST_NBINS; b++) total += h[b];
    if (total == 0) return 0;
    double rr = ceil(p * (double)total);
    uint64_t r = rr < 1 ? 1 : (rr > (double)total ? total : (uint64_t)rr);
    uint64_t cum = 0;
    for (int b = 0; b < HIST_NBINS; b++) {
        if (h[b] == 0) continue;
        if (cum + h[b] >= r) {
            double lo, hi;
            hist_bin_range(b, &lo, &hi);
            if (hi > absmax) hi = absmax;
            if (hi < lo) return lo < absmax ? lo : absmax;
            double v = lo + (hi - lo) * ((double)(r - cum) - 0.5) / (double)h[b];
            return v;
        }
        cum += h[b];
    }
    return absmax;
}

/* === Moments === */

void moments_merge(Moments *a, const Moments *b) {
    if (b->n == 0) return;
    if (a->n == 0) {
        *a = *b;
        return;
    }
    double na = (double)a->n, nb = (double)b->n, n = na + nb;
    double d = b->mean - a->mean, d2 = d * d;
    double m2 = a->m2 + b->m2 + d2 * na * nb / n;
    double m3 = a->m3 + b->m3 + d2 * d * na * nb * (na - nb) / (n * n) +
                3.0 * d * (na * b->m2 - nb * a->m2) / n;
    double m4 = a->m4 + b->m4 + d2 * d2 * na * nb * (na * na - na * nb + nb * nb) / (n * n * n) +
                6.0 * d2 * (na * na * b->m2 + nb * nb * a->m2) / (n * n) +
                4.0 * d * (na * b->m3 - nb * a->m3) / n;
    a->mean += d * nb / n;
    a->m2 = m2;
    a->m3 = m3;
    a->m4 = m4;
    a->n += b->n;
}

double moments_variance(const Moments *m) { return m->n > 0 ? m->m2 / (double)m->n : 0; }

double moments_kurtosis(const Moments *m) {
    if (m->n == 0 || m->m2 <= 0) return 0;
    return (double)m->n * m->m4 / (m->m2 * m->m2);
}

/* === Spikes === */

int spike_before(const Spike *a, const Spike *b) {
    float x = fabsf(a->value), y = fabsf(b->value);
    if (x != y) return x > y;
    if (a->seq != b->seq) return a->seq < b->seq;
    if (a->pos != b->pos) return a->pos < b->pos;
    return a->channel < b->channel;
}

void spike_topk_insert(Spike *top, int32_t *n, int32_t k, const Spike *s) {
    if (k <= 0) return;
    int32_t m = *n;
    if (m == k && !spike_before(s, &top[m - 1])) return;
    int32_t i = m < k ? m : k - 1;
    while (i > 0 && spike_before(s, &top[i - 1])) {
        top[i] = top[i - 1];
        i--;
    }
    top[i] = *s;
    if (m < k) *n = m + 1;
}

/* === Activation quantization === */

static const char *const act_mode_names[ACT_MODE_COUNT] = {"tensor-static", "tensor-dynamic",
                                                           "token-dynamic"};

const char *act_mode_name(ActMode m) { return (unsigned)m < ACT_MODE_COUNT ? act_mode_names[m] : "?"; }



/* === TapStats === */

Status tapstats_init(TapStats *ts, int64_t width, int32_t k, int has_act, Err *err) {
    memset(ts, 0, sizeof *ts);
    if (width <= 0 || k < 0) return err_set(err, ST_ERR_ARG, "tap stats: width %lld, k %d", (long long)width, k);
    ts->width = width;
    ts->k = k;
    ts->has_act = has_act;
    ts->ch_sum = core_calloc((size_t)width, sizeof *ts->ch_sum);
    ts->ch_sumsq = core_calloc((size_t)width, sizeof *ts->ch_sumsq);
    ts->ch_absmax = core_calloc((size_t)width, sizeof *ts->ch_absmax);
    ts->top = core_calloc((size_t)(k > 0 ? k : 1), sizeof *ts->top);
    if (!ts->ch_sum || !ts->ch_sumsq || !ts->ch_absmax || !ts->top) {
        tapstats_done(ts);
        return err_set(err, ST_ERR_NOMEM, "tap stats for width %lld", (long long)width);
    }
    return ST_OK;
}

void tapstats_done(TapStats *ts) {
    free(ts->ch_sum);
    free(ts->ch_sumsq);
    free(ts->ch_absmax);
    free(ts->top);
    memset(ts, 0, sizeof *ts);
}

double tapstats_act_rel_err(const TapStats *ts, ActFormat f, ActMode m) {
    if (!ts->has_act || ts->act_ref[m] <= 0) return NAN;
    return ts->act_err[f][m] / ts->act_ref[m];
}

/* Partial results of one channel slice for one batch. */
typedef struct SliceAcc {
    Moments mom;
    float absmax;
    double ref[ACT_MODE_COUNT];
    double err[ACT_COUNT][ACT_MODE_COUNT];
    int32_t n_top;
    int64_t n_nonfinite;
} SliceAcc;

struct TapScratch {
    int64_t max_T, max_width;
    int32_t k;
    int n_threads;
    float *row_amax;         /* (max_T) */
    SliceAcc *slices;        /* (n_slices) */
    Spike *slice_top;        /* (n_slices, k) */
    uint64_t *hist;          /* (n_threads, HIST_NBINS) */
    TapStats batch;          /* tapstats_add's batch (max_width, k, with act sums) */
};

Status tapscratch_new(int64_t max_T, int64_t max_width, int32_t k, int n_threads, TapScratch **out,
                      Err *err) {
    *out = NULL;
    if (max_T <= 0 || max_width <= 0 || k < 0 || n_threads <= 0)
        return err_set(err, ST_ERR_ARG, "tap scratch: T %lld width %lld k %d threads %d",
                       (long long)max_T, (long long)max_width, k, n_threads);
    TapScratch *sc = core_calloc(1, sizeof *sc);
    if (!sc) return err_set(err, ST_ERR_NOMEM, "tap scratch");
    int64_t ns = (max_width + SLICE - 1) / SLICE;
    sc->max_T = max_T;
    sc->max_width = max_width;
    sc->k = k;
    sc->n_threads = n_threads;
    sc->row_amax = core_calloc((size_t)max_T, sizeof *sc->row_amax);
    sc->slices = core_calloc((size_t)ns, sizeof *sc->slices);
    sc->slice_top = core_calloc((size_t)ns * (size_t)(k > 0 ? k : 1), sizeof *sc->slice_top);
    sc->hist = core_calloc((size_t)n_threads * HIST_NBINS, sizeof *sc->hist);
    if (!sc->row_amax || !sc->slices || !sc->slice_top || !sc->hist ||
        tapstats_init(&sc->batch, max_width, k, 1, NULL) != ST_OK) {
        tapscratch_free(sc);
        return err_set(err, ST_ERR_NOMEM, "tap scratch for width %lld", (long long)max_width);
    }
    *out = sc;
    return ST_OK;
}

void tapscratch_free(TapScratch *sc) {
    if (!sc) return;
    free(sc->row_amax);
    free(sc->slices);
    free(sc->slice_top);
    free(sc->hist);
    tapstats_done(&sc->batch);
    free(sc);
}

typedef struct AddJob {
    TapStats *ts;
    TapScratch *sc;
    const float *x;
    int64_t T, pos0, seq;
    const int32_t *tokens;
    float batch_amax, static_amax; /* static_amax 0: no static measurement */
    float top_thr;           /* |value| a spike must exceed to enter the global top-k */
} AddJob;

static void job_row_amax(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    AddJob *j = arg;
    int64_t w = j->ts->width;
    for (int64_t r = b; r < e; r++) {
        const float *row = j->x + r * w;
        float m = 0;
        for (int64_t c = 0; c < w; c++) {
            float a = fabsf(row[c]);
            m = a > m ? a : m;
        }
        j->sc->row_amax[r] = m;
    }
}

/* Scale and inverse for absmax under format f (0, 0 when absmax is 0). */
static inline void act_scale(ActFormat f, float amax, float *s, float *inv) {
    if (amax > 0) {
        *s = amax / actq_qmax(f);
        *inv = actq_qmax(f) / amax;
    } else {
        *s = 0;
        *inv = 0;
    }
}

static void job_slices(void *arg, int64_t sb, int64_t se, int tid) {
    AddJob *j = arg;
    TapStats *ts = j->ts;
    TapScratch *sc = j->sc;
    int64_t w = ts->width, T = j->T;
    uint64_t *hist = sc->hist + (size_t)tid * HIST_NBINS;
    float sc_s[ACT_COUNT][ACT_MODE_COUNT], sc_inv[ACT_COUNT][ACT_MODE_COUNT];
    for (int f = ACT_INT8; f < ACT_COUNT; f++) {
        act_scale((ActFormat)f, j->static_amax, &sc_s[f][ACT_TENSOR_STATIC], &sc_inv[f][ACT_TENSOR_STATIC]);
        act_scale((ActFormat)f, j->batch_amax, &sc_s[f][ACT_TENSOR_DYNAMIC], &sc_inv[f][ACT_TENSOR_DYNAMIC]);
    }
    for (int64_t s = sb; s < se; s++) {
        int64_t c0 = s * SLICE, c1 = c0 + SLICE < w ? c0 + SLICE : w, nc = c1 - c0;
        SliceAcc *acc = &sc->slices[s];
        Spike *top = sc->slice_top + (size_t)s * (size_t)(sc->k > 0 ? sc->k : 1);
        memset(acc, 0, sizeof *acc);
        /* Pass 1: channel sums (each channel summed in row order) and the slice mean. */
        double tot = 0;
        float amax = 0;
        for (int64_t r = 0; r < T; r++) {
            const float *row = j->x + r * w;
            for (int64_t c = c0; c < c1; c++) {
                double v = row[c];
                ts->ch_sum[c] += v;
                ts->ch_sumsq[c] += v * v;
                tot += v;
                float a = fabsf(row[c]);
                acc->n_nonfinite += !(a <= FLT_MAX); /* inf and NaN */
                if (a > ts->ch_absmax[c]) ts->ch_absmax[c] = a;
                amax = a > amax ? a : amax;
            }
        }
        acc->absmax = amax;
        double n = (double)T * (double)nc, mu = tot / n;
        /* Pass 2: central moments about mu (corrected for its rounding), the
         * histogram, spikes and quantization errors. */
        double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
        float thr = j->top_thr;
        for (int64_t r = 0; r < T; r++) {
            const float *row = j->x + r * w;
            double rref = 0;
            for (int64_t c = c0; c < c1; c++) {
                float x = row[c];
                double d = (double)x - mu, d2 = d * d;
                s1 += d;
                s2 += d2;
                s3 += d2 * d;
                s4 += d2 * d2;
                float a = fabsf(x);
                hist[hist_bin(a)]++;
                if (a > thr && sc->k > 0) {
                    Spike sp = {.value = x, .channel = (int32_t)c, .token = j->tokens ? j->tokens[r] : -1,
                                .pos = (int32_t)(j->pos0 + r), .seq = j->seq};
                    spike_topk_insert(top, &acc->n_top, sc->k, &sp);
                    if (acc->n_top == sc->k) {
                        float kth = fabsf(top[sc->k - 1].value);
                        if (kth > thr) thr = kth;
                    }
                }
                rref += (double)x * x;
            }
            if (ts->has_act) {
                double rerr[ACT_COUNT][ACT_MODE_COUNT];
                memset(rerr, 0, sizeof rerr);
                for (int f = ACT_INT8; f < ACT_COUNT; f++) {
                    act_scale((ActFormat)f, sc->row_amax[r], &sc_s[f][ACT_TOKEN_DYNAMIC], &sc_inv[f][ACT_TOKEN_DYNAMIC]);
                }
                actq_err_row(row + c0, nc, sc_s, sc_inv, rerr);
                for (int m = 0; m < ACT_MODE_COUNT; m++) {
                    if (m == ACT_TENSOR_STATIC && j->static_amax <= 0) continue;
                    acc->ref[m] += rref;
                    for (int f = ACT_INT8; f < ACT_COUNT; f++) acc->err[f][m] += rerr[f][m];
                }
            }
        }
        double mc = s1 / n;
        acc->mom.n = (int64_t)n;
        acc->mom.mean = mu + mc;
        acc->mom.m2 = s2 - n * mc * mc;
        if (acc->mom.m2 < 0) acc->mom.m2 = 0;
        acc->mom.m3 = s3 - 3.0 * mc * s2 + 2.0 * n * mc * mc * mc;
        acc->mom.m4 = s4 - 4.0 * mc * s3 + 6.0 * mc * mc * s2 - 3.0 * n * mc * mc * mc * mc;
    }
}

/* Zeroes the sums of ts, keeping its arrays, width, k and has_act. */
static void tapstats_reset(TapStats *ts) {
    size_t w = (size_t)ts->width;
    memset(ts->ch_sum, 0, w * sizeof *ts->ch_sum);
    memset(ts->ch_sumsq, 0, w * sizeof *ts->ch_sumsq);
    memset(ts->ch_absmax, 0, w * sizeof *ts->ch_absmax);
    ts->n_rows = ts->n_top = 0;
    ts->n_nonfinite = 0;
    ts->absmax = 0;
    memset(&ts->mom, 0, sizeof ts->mom);
    memset(ts->hist, 0, sizeof ts->hist);
    memset(ts->act_ref, 0, sizeof ts->act_ref);
    memset(ts->act_err, 0, sizeof ts->act_err);
}

float tapstats_batch_absmax(const float *x, int64_t T, int64_t width) {
    float m = 0;
    for (int64_t i = 0; i < T * width; i++) {
        float a = fabsf(x[i]);
        m = a > m ? a : m; /* NaN never wins, as in the slices' absmax */
    }
    return m;
}

void tapstats_batch(TapStats *b, const float *x, int64_t T, const int32_t *tokens, int64_t pos0, int64_t seq,
                    float static_amax, TapScratch *sc, Pool *pool) {
    tapstats_reset(b);
    if (T <= 0) return;
    ASSERT(T <= sc->max_T && b->width <= sc->max_width && b->k <= sc->k);
    int nt = pool ? pool_size(pool) : 1;
    ASSERT(nt <= sc->n_threads);
    /* top_thr -1: the batch's spikes are ranked among themselves only (the
     * global top-k is their union's, spike_before being a total order) */
    AddJob j = {.ts = b, .sc = sc, .x = x, .T = T, .pos0 = pos0, .seq = seq, .tokens = tokens, .top_thr = -1.0f};
    j.static_amax = static_amax;
    if (b->has_act) {
        pool_for(pool, T, 16, job_row_amax, &j);
        float m = 0;
        for (int64_t r = 0; r < T; r++) m = sc->row_amax[r] > m ? sc->row_amax[r] : m;
        j.batch_amax = m;
    }
    memset(sc->hist, 0, (size_t)nt * HIST_NBINS * sizeof *sc->hist);
    int64_t ns = (b->width + SLICE - 1) / SLICE;
    pool_for(pool, ns, 1, job_slices, &j);
    /* Merge in slice order (deterministic), histograms in any order (integers). */
    for (int t = 0; t < nt; t++)
        for (int k = 0; k < HIST_NBINS; k++) b->hist[k] += sc->hist[(size_t)t * HIST_NBINS + k];
    for (int64_t s = 0; s < ns; s++) {
        SliceAcc *acc = &sc->slices[s];
        moments_merge(&b->mom, &acc->mom);
        b->n_nonfinite += acc->n_nonfinite;
        if (acc->absmax > b->absmax) b->absmax = acc->absmax;
        for (int m = 0; m < ACT_MODE_COUNT; m++) {
            b->act_ref[m] += acc->ref[m];
            for (int f = ACT_INT8; f < ACT_COUNT; f++) b->act_err[f][m] += acc->err[f][m];
        }
        const Spike *top = sc->slice_top + (size_t)s * (size_t)(sc->k > 0 ? sc->k : 1);
        for (int32_t i = 0; i < acc->n_top; i++) spike_topk_insert(b->top, &b->n_top, b->k, &top[i]);
    }
    b->n_rows = T;
}

void tapstats_merge(TapStats *ts, const TapStats *b) {
    ASSERT(ts->width == b->width && ts->has_act == b->has_act);
    for (int64_t c = 0; c < ts->width; c++) {
        ts->ch_sum[c] += b->ch_sum[c];
        ts->ch_sumsq[c] += b->ch_sumsq[c];
        if (b->ch_absmax[c] > ts->ch_absmax[c]) ts->ch_absmax[c] = b->ch_absmax[c];
    }
    if (b->absmax > ts->absmax) ts->absmax = b->absmax;
    moments_merge(&ts->mom, &b->mom);
    for (int k = 0; k < HIST_NBINS; k++) ts->hist[k] += b->hist[k];
    for (int32_t i = 0; i < b->n_top; i++) spike_topk_insert(ts->top, &ts->n_top, ts->k, &b->top[i]);
    for (int m = 0; m < ACT_MODE_COUNT; m++) {
        ts->act_ref[m] += b->act_ref[m];
        for (int f = ACT_INT8; f < ACT_COUNT; f++) ts->act_err[f][m] += b->act_err[f][m];
    }
    ts->n_rows += b->n_rows;
    ts->n_nonfinite += b->n_nonfinite;
}

void tapstats_add(TapStats *ts, const float *x, int64_t T, const int32_t *tokens, int64_t pos0,
                  int64_t seq, TapScratch *sc, Pool *pool) {
    if (T <= 0) return;
    TapStats *b = &sc->batch;
    b->width = ts->width;
    b->k = ts->k;
    b->has_act = ts->has_act;
    tapstats_batch(b, x, T, tokens, pos0, seq, ts->n_rows > 0 ? ts->absmax : 0, sc, pool);
    tapstats_merge(ts, b);
}
