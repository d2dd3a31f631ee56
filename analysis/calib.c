#include "analysis/calib.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "analysis/statsfile.h"
#include "core/alloc.h"
#include "core/assert.h"
#include "core/atomicfile.h"
#include "core/clock.h"
#include "core/dist.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "model/forward.h"
#include "model/tokenizer.h"

void calib_params_default(CalibParams *p) {
    memset(p, 0, sizeof *p);
    p->samples = 16;
    p->seqlen = 256;
    p->seed = 1;
    p->mode = CALIB_RANDOM;
    p->group = SENS_DEFAULT_GROUP;
    p->topk = 16;
    p->sensitivity = 1;
}

size_t calib_hidden_budget(void) {
    const char *e = getenv("QS_CALIB_HIDDEN_MB");
    if (e && *e) return (size_t)strtoull(e, NULL, 10) << 20;
    long pages = sysconf(_SC_PHYS_PAGES), ps = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || ps <= 0) return (size_t)1 << 30;
    return (size_t)pages * (size_t)ps / 8;
}

const char *calib_pipeline_name(CalibPipeline p) { return p == CALIB_PER_SAMPLE ? "per-sample" : "stream"; }

int calib_pipeline_parse(const char *s) {
    if (strcmp(s, "stream") == 0) return CALIB_STREAM;
    if (strcmp(s, "per-sample") == 0) return CALIB_PER_SAMPLE;
    return -1;
}

const char *calib_mode_name(CalibMode m) { return m == CALIB_CHUNKS ? "chunks" : "random"; }

int calib_mode_parse(const char *s) {
    if (strcmp(s, "random") == 0) return CALIB_RANDOM;
    if (strcmp(s, "chunks") == 0) return CALIB_CHUNKS;
    return -1;
}

Status calib_stats_new(int64_t n_layers, const int64_t width[TAP_COUNT], int64_t seqlen, int32_t topk,
                       CalibStats **out, Err *err) {
    *out = NULL;
    if (n_layers <= 0 || seqlen <= 0 || topk < 0)
        return err_set(err, ST_ERR_ARG, "calibration stats: %lld layers, seqlen %lld, top-k %d",
                       (long long)n_layers, (long long)seqlen, topk);
    CalibStats *cs = core_calloc(1, sizeof *cs);
    if (!cs) return err_set(err, ST_ERR_NOMEM, "calibration stats");
    Status st = ST_OK;
    cs->n_layers = n_layers;
    memcpy(cs->width, width, sizeof cs->width);
    cs->params.seqlen = seqlen;
    cs->params.topk = topk;
    size_t np = (size_t)n_layers * (size_t)seqlen;
    cs->taps = core_calloc((size_t)n_layers * TAP_COUNT, sizeof *cs->taps);
    cs->resid_rms_sum = core_calloc(np, sizeof *cs->resid_rms_sum);
    cs->resid_rms_max = core_calloc(np, sizeof *cs->resid_rms_max);
    if (!cs->taps || !cs->resid_rms_sum || !cs->resid_rms_max) {
        st = err_set(err, ST_ERR_NOMEM, "calibration stats for %lld layers", (long long)n_layers);
        goto fail;
    }
    for (int64_t l = 0; l < n_layers; l++)
        for (int t = 0; t < TAP_COUNT; t++) {
            st = tapstats_init(&cs->taps[l * TAP_COUNT + t], width[t], topk, t != TAP_RESID, err);
            if (st) goto fail;
        }
    *out = cs;
    return ST_OK;
fail:
    calib_stats_free(cs);
    return st;
}

void calib_stats_free(CalibStats *cs) {
    if (!cs) return;
    if (cs->taps)
        for (int64_t i = 0; i < cs->n_layers * TAP_COUNT; i++) tapstats_done(&cs->taps[i]);
    free(cs->taps);
    free(cs->resid_rms_sum);
    free(cs->resid_rms_max);
    sens_map_done(&cs->sens);
    free(cs);
}

TapStats *calib_tap(const CalibStats *cs, int64_t layer, TapPoint t) {
    return &cs->taps[layer * TAP_COUNT + t];
}

double calib_resid_mean(const CalibStats *cs, int64_t l, int64_t pos) {
    if (cs->n_seqs <= 0) return 0;
    return cs->resid_rms_sum[l * cs->params.seqlen + pos] / (double)cs->n_seqs;
}

/* splitmix64: a small, well-mixed seeded generator (same seed, same offsets). */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Offset of the next window: CHUNKS window i, or a uniform draw from *rs. */
static int64_t calib_offset(int64_t n, const CalibParams *p, int64_t i, uint64_t *rs) {
    int64_t L = p->seqlen;
    if (p->mode == CALIB_CHUNKS) return i * L;
    uint64_t range = (uint64_t)(n - L + 1);
    return (int64_t)(((unsigned __int128)rng_next(rs) * range) >> 64);
}

static Status calib_check_sampling(int64_t n, const CalibParams *p, int64_t *n_seqs, Err *err) {
    int64_t L = p->seqlen;
    if (L < 2) return err_set(err, ST_ERR_ARG, "sequence length %lld: need at least 2", (long long)L);
    if (p->samples <= 0) return err_set(err, ST_ERR_ARG, "samples %lld: need at least 1", (long long)p->samples);
    if (n < L)
        return err_set(err, ST_ERR_RANGE, "the text has %lld tokens, fewer than one sequence of %lld",
                       (long long)n, (long long)L);
    int64_t ns = p->samples;
    if (p->mode == CALIB_CHUNKS && ns > n / L) ns = n / L;
    *n_seqs = ns;
    return ST_OK;
}

Status calib_sample(const int32_t *tokens, int64_t n, int32_t bos, const CalibParams *p, int32_t **seqs,
                    int64_t *n_seqs, Err *err) {
    *seqs = NULL;
    *n_seqs = 0;
    int64_t ns, L = p->seqlen;
    Status st = calib_check_sampling(n, p, &ns, err);
    if (st) return st;
    int32_t *s = core_calloc((size_t)ns * (size_t)L, sizeof *s);
    if (!s) return err_set(err, ST_ERR_NOMEM, "%lld calibration sequences", (long long)ns);
    uint64_t rs = p->seed;
    for (int64_t i = 0; i < ns; i++) {
        memcpy(s + i * L, tokens + calib_offset(n, p, i, &rs), (size_t)L * sizeof *s);
        if (bos >= 0) s[i * L] = bos;
    }
    *seqs = s;
    *n_seqs = ns;
    return ST_OK;
}

int64_t calib_part_from(int64_t n_ctx, int64_t eval_chunks) { return n_ctx * eval_chunks; }

int calib_same_text(const CalibParams *p, const char *text, size_t len) {
    return (int64_t)len == p->text_bytes && p->text_hash == hash_bytes(HASH_SEED, text, len);
}

int calib_overlaps_eval(const CalibParams *p, const char *text, size_t len, int64_t n_ctx, int64_t eval_chunks) {
    return calib_same_text(p, text, len) && p->tok_from < calib_part_from(n_ctx, eval_chunks);
}

int64_t calib_split_eval_chunks(int64_t n_text, int64_t n_ctx) {
    if (n_ctx < 2) return 0;
    int64_t all = (n_text + 1) / n_ctx; /* evaluation's chunks: the text with BOS */
    if (all < 2) return 0;
    int64_t keep = (n_text + 1) / 2 < CALIB_PART_TOKENS ? (n_text + 1) / 2 : CALIB_PART_TOKENS;
    int64_t r = keep / n_ctx;
    if (r < 1) r = 1;
    return all - r;
}

int calib_windows_repeat(int64_t n_tokens, const CalibParams *p) {
    return p->mode == CALIB_RANDOM && p->seqlen > 0 && p->samples > 0 &&
           (double)p->samples * (double)p->seqlen > (double)n_tokens;
}

size_t calib_h_bytes(const Model *m) {
    const ModelConfig *c = &m->cfg;
    int64_t qd = c->n_heads * c->head_dim;
    const int64_t w[HSTORE_TAPS] = {c->dim, qd, c->dim, c->hidden_dim};
    return hstore_bytes(c->n_layers, w);
}

char *calib_h_temp(const char *stats_path) {
    static _Atomic unsigned counter;
    size_t n = strlen(stats_path) + 64;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s.h64.tmp.%ld.%u.%llx", stats_path, (long)getpid(), atomic_fetch_add(&counter, 1),
                 (unsigned long long)(clock_now() * 1e6));
    return s;
}

Status calib_output_check(const char *stats_path, Err *err) {
    struct stat sb;
    if (!stats_path || !*stats_path) return err_set(err, ST_ERR_ARG, "no stats path");
    if (stat(stats_path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return err_set(err, ST_ERR_ARG, "%s: %s, not a file: give a file name for the statistics", stats_path,
                       S_ISDIR(sb.st_mode) ? "is a directory" : "exists");
    return ST_OK;
}

/* Crash-test hook: QS_CALIB_CRASH_AT=after-h-rename kills the process with
 * SIGKILL between putting the new H in place and the stats file (tests only). */
static void crash_point(const char *stage) {
    const char *e = getenv("QS_CALIB_CRASH_AT");
    if (e && strcmp(e, stage) == 0) raise(SIGKILL);
}

Status calib_commit(const CalibStats *cs, const char *h_tmp, const char *stats_path, Err *err) {
    Status st = calib_output_check(stats_path, err);
    char *h_new = NULL, *h_old = NULL;
    if (st) goto fail;
    /* The pair in place now (if any): its H is removed once the new stats replace it. */
    CalibStats *old = NULL;
    Err e2;
    err_init(&e2);
    if (access(stats_path, F_OK) == 0 && statsfile_load(stats_path, &old, &e2) == ST_OK) {
        if (old->has_h) h_old = statsfile_h_path(stats_path, old->h_id);
        calib_stats_free(old);
    }
    if (cs->has_h) {
        if (!h_tmp) {
            st = err_set(err, ST_ERR_ARG, "%s: the statistics have H but no H file was given", stats_path);
            goto fail;
        }
        h_new = statsfile_h_path(stats_path, cs->h_id);
        if (!h_new) {
            st = err_set(err, ST_ERR_NOMEM, "path");
            goto fail;
        }
        if (rename(h_tmp, h_new) != 0) {
            st = err_set(err, ST_ERR_IO, "%s: cannot rename to %s: %s", h_tmp, h_new, strerror(errno));
            goto fail;
        }
        afile_sync_dir(h_new);
    }
    crash_point("after-h-rename");
    st = statsfile_save(cs, stats_path, err);
    if (st) {
        if (h_new && (!h_old || strcmp(h_old, h_new) != 0)) unlink(h_new);
        goto fail;
    }
    if (h_old && (!h_new || strcmp(h_old, h_new) != 0)) unlink(h_old);
    free(h_new);
    free(h_old);
    return ST_OK;
fail:
    if (h_tmp && cs->has_h) unlink(h_tmp);
    free(h_new);
    free(h_old);
    return st;
}

/* State of one calibration run, seen by the tap callback. */
typedef struct CalibRun {
    CalibStats *cs;
    HStore *hs;              /* NULL: no H */
    TapScratch *sc;
    Pool *pool;
    int64_t seq;
    float *keep;             /* MPI: the four projection inputs of the sequence being run are
                                copied here, (T, width[t]) at keep_off[t], and folded into the
                                statistics later, in sequence order; NULL: folded at once */
    size_t keep_off[HSTORE_TAPS];
    /* MPI: calib_fold_ranks' per-layer buffers, made for the first layer and
     * reused by the others (calib_fold_ranks_done frees them) */
    TapStats *fold_bt;       /* (n_own + 1, NT): own batches, then one to receive into */
    double *fold_amax;       /* (n_seqs, NT) */
    double *fold_rms;        /* (n_own + 1, seqlen) */
} CalibRun;

/* The residual stream's RMS of one row. */
static double resid_rms(const float *row, int64_t width) {
    double s = 0;
    for (int64_t c = 0; c < width; c++) s += (double)row[c] * row[c];
    return sqrt(s / (double)width);
}

/* Adds a sequence's per-position residual RMS (rms[t] for position pos0 + t) to layer's sums and maxima. */
static void resid_rms_merge(CalibStats *cs, int64_t layer, const double *rms, int64_t T, int64_t pos0) {
    int64_t L = cs->params.seqlen;
    for (int64_t t = 0; t < T && pos0 + t < L; t++) {
        int64_t i = layer * L + pos0 + t;
        cs->resid_rms_sum[i] += rms[t];
        if ((float)rms[t] > cs->resid_rms_max[i]) cs->resid_rms_max[i] = (float)rms[t];
    }
}

/* Folds one tap batch into the statistics (not H). */
static void calib_fold(CalibRun *r, int64_t layer, TapPoint point, const float *x, int64_t T, int64_t width,
                       const int32_t *tokens, int64_t pos0) {
    CalibStats *cs = r->cs;
    tapstats_add(calib_tap(cs, layer, point), x, T, tokens, pos0, r->seq, r->sc, r->pool);
    if (point == TAP_RESID) {
        int64_t L = cs->params.seqlen;
        for (int64_t t = 0; t < T && pos0 + t < L; t++) {
            double rms = resid_rms(x + t * width, width);
            resid_rms_merge(cs, layer, &rms, 1, pos0 + t);
        }
    }
}

static void calib_tap_fn(void *user, int64_t layer, TapPoint point, const float *x, int64_t T,
                         int64_t width, const int32_t *tokens, int64_t pos0) {
    CalibRun *r = user;
    CalibStats *cs = r->cs;
    if (layer < 0 || layer >= cs->n_layers || (unsigned)point >= TAP_COUNT || width != cs->width[point]) return;
    if (!r->keep) calib_fold(r, layer, point, x, T, width, tokens, pos0);
    else if (point != TAP_RESID) /* the residual stream is the block's output: the caller has it */
        memcpy(r->keep + r->keep_off[point], x, (size_t)T * (size_t)width * sizeof *x);
    if (point != TAP_RESID && r->hs) hstore_add(r->hs, layer, (int)point, x, T);
}

/* === Over MPI ===
 * Rank r runs the sequences s with s % size == r through each layer (the
 * forward pass and H, the bulk of the work, in parallel). The statistics of
 * each of its sequences are then measured on their own by the owner, all
 * ranks at once (stats.h tapstats_batch: the expensive part), and folded in
 * sequence order by every rank (tapstats_merge, cheap): for s = 0, 1, ...
 * the owner broadcasts s's batch statistics and residual-norm row. One
 * process folds the same batches in the same order (tapstats_add is batch
 * then merge), so the stats file is bit-identical. The one thing a batch
 * needs from the ones before it, the static-scale absmax, is exchanged
 * first (each batch's max|x|, a max over ranks, then a prefix max). H: each
 * rank sums its own sequences' products, then hstore_layer_sum_ranks. */

static Status calib_check_finite(const CalibStats *cs, int64_t seq, Err *err);

/* The scalar part of a TapStats, broadcast as one block. */
typedef struct TapScalars {
    float absmax;
    Moments mom;
    uint64_t hist[HIST_NBINS];
    int32_t n_top;
    double act_ref[ACT_MODE_COUNT];
    double act_err[ACT_COUNT][ACT_MODE_COUNT];
    int64_t n_rows, n_nonfinite;
} TapScalars;

/* Copies root's ts (a batch's statistics) to every rank's ts (same width and k). */
static Status bcast_tapstats(TapStats *ts, int root, Err *err) {
    size_t w = (size_t)ts->width;
    TapScalars sc;
    memset(&sc, 0, sizeof sc);
    sc.absmax = ts->absmax;
    sc.mom = ts->mom;
    memcpy(sc.hist, ts->hist, sizeof sc.hist);
    sc.n_top = ts->n_top;
    memcpy(sc.act_ref, ts->act_ref, sizeof sc.act_ref);
    memcpy(sc.act_err, ts->act_err, sizeof sc.act_err);
    sc.n_rows = ts->n_rows;
    sc.n_nonfinite = ts->n_nonfinite;
    Status st;
    if ((st = dist_bcast(&sc, sizeof sc, root, err)) || (st = dist_bcast(ts->ch_sum, w * sizeof(double), root, err)) ||
        (st = dist_bcast(ts->ch_sumsq, w * sizeof(double), root, err)) ||
        (st = dist_bcast(ts->ch_absmax, w * sizeof(float), root, err)))
        return st;
    if (sc.n_top < 0 || sc.n_top > ts->k) return err_set(err, ST_ERR_FORMAT, "%sbatch statistics from rank %d: %d spikes",
                                                         dist_prefix(), root, sc.n_top);
    if ((st = dist_bcast(ts->top, (size_t)sc.n_top * sizeof *ts->top, root, err))) return st;
    ts->absmax = sc.absmax;
    ts->mom = sc.mom;
    memcpy(ts->hist, sc.hist, sizeof sc.hist);
    ts->n_top = sc.n_top;
    memcpy(ts->act_ref, sc.act_ref, sizeof sc.act_ref);
    memcpy(ts->act_err, sc.act_err, sizeof sc.act_err);
    ts->n_rows = sc.n_rows;
    ts->n_nonfinite = sc.n_nonfinite;
    return ST_OK;
}

enum { FOLD_NT = HSTORE_TAPS + 1 }; /* the taps folded over ranks: the projection inputs, then the residual stream */

static TapPoint fold_tap(int i) { return i < HSTORE_TAPS ? (TapPoint)i : TAP_RESID; }

/* Frees calib_fold_ranks' buffers (n_own as given to it); safe when none were made. */
static void calib_fold_ranks_done(CalibRun *run, int64_t n_own) {
    if (run->fold_bt)
        for (int64_t k = 0; k < (n_own + 1) * FOLD_NT; k++) tapstats_done(&run->fold_bt[k]);
    free(run->fold_bt);
    free(run->fold_amax);
    free(run->fold_rms);
    run->fold_bt = NULL;
    run->fold_amax = run->fold_rms = NULL;
}

/* Layer l's statistics over the ranks (see above). Tap inputs of this
 * rank's j-th sequence: keep + j·keep_elems at run->keep_off[t] for the
 * projection inputs, hid + j·seq_elems for the residual stream. The batch
 * statistics live for the run: every layer's taps have the same widths
 * (tapstats_batch zeroes a batch, a broadcast overwrites what it receives). */
static Status calib_fold_ranks(CalibRun *run, int64_t l, const float *keep, size_t keep_elems, const float *hid,
                               size_t seq_elems, const int32_t *win, int64_t n_seqs, int64_t n_own, Err *err) {
    enum { NT = FOLD_NT };
    CalibStats *cs = run->cs;
    int nr = dist_size(), rk = dist_rank();
    int64_t L = cs->params.seqlen;
    Status st = ST_OK;
    if (!run->fold_bt) {
        run->fold_amax = core_calloc((size_t)(n_seqs * NT), sizeof *run->fold_amax);
        run->fold_bt = core_calloc((size_t)((n_own + 1) * NT), sizeof *run->fold_bt);
        run->fold_rms = core_calloc((size_t)((n_own + 1) * L), sizeof *run->fold_rms);
        if (!run->fold_amax || !run->fold_bt || !run->fold_rms)
            return err_set(err, ST_ERR_NOMEM, "calibration over MPI: batch statistics of layer %lld", (long long)l);
        for (int64_t j = 0; j <= n_own && !st; j++)
            for (int i = 0; i < NT && !st; i++) {
                const TapStats *ts = calib_tap(cs, l, fold_tap(i));
                st = tapstats_init(&run->fold_bt[j * NT + i], ts->width, ts->k, ts->has_act, err);
            }
        if (st) return st;
    }
    TapStats *bt = run->fold_bt;
    double *amax = run->fold_amax, *rms = run->fold_rms;
    for (int i = 0; i < NT; i++) {
        const TapStats *ts = calib_tap(cs, l, fold_tap(i));
        ASSERT(bt[i].width == ts->width && bt[i].k == ts->k && bt[i].has_act == ts->has_act);
    }
    memset(amax, 0, (size_t)(n_seqs * NT) * sizeof *amax); /* the other ranks' slots: 0 into the max */
#define TAP_IN(j, i) ((i) < HSTORE_TAPS ? keep + (size_t)(j) * keep_elems + run->keep_off[i] : hid + (size_t)(j) * seq_elems)
    /* each batch's max|x|, then the static scale each batch sees: the max of those before it */
    for (int64_t j = 0; j < n_own; j++)
        for (int i = 0; i < NT; i++)
            amax[(rk + j * nr) * NT + i] = tapstats_batch_absmax(TAP_IN(j, i), L, cs->width[fold_tap(i)]);
    if ((st = dist_max_f64(amax, n_seqs * NT, err))) return st;
    for (int64_t j = 0; j < n_own; j++) {
        int64_t s = rk + j * nr;
        for (int i = 0; i < NT; i++) {
            double stat = 0;
            for (int64_t q = 0; q < s; q++) stat = amax[q * NT + i] > stat ? amax[q * NT + i] : stat;
            tapstats_batch(&bt[j * NT + i], TAP_IN(j, i), L, win + s * L, 0, s, (float)stat, run->sc, run->pool);
        }
        for (int64_t t = 0; t < L; t++) rms[j * L + t] = resid_rms(TAP_IN(j, HSTORE_TAPS) + (size_t)t * (size_t)cs->width[TAP_RESID], cs->width[TAP_RESID]);
    }
#undef TAP_IN
    /* folded in sequence order, on every rank */
    for (int64_t s = 0; s < n_seqs; s++) {
        int root = (int)(s % nr);
        int64_t j = root == rk ? s / nr : n_own;
        for (int i = 0; i < NT && !st; i++)
            if (!(st = bcast_tapstats(&bt[j * NT + i], root, err))) tapstats_merge(calib_tap(cs, l, fold_tap(i)), &bt[j * NT + i]);
        if (!st) st = dist_bcast(rms + j * L, (size_t)L * sizeof *rms, root, err);
        if (st) return st;
        resid_rms_merge(cs, l, rms + j * L, L, 0);
        if ((st = calib_check_finite(cs, s, err))) return st;
    }
    return ST_OK;
}

/* 1 on every rank when any rank asked to cancel (a collective call). */
static int calib_cancelled_all(const Progress *prog) {
    double c = progress_cancelled(prog) ? 1 : 0;
    if (dist_size() > 1 && dist_max_f64(&c, 1, NULL) != ST_OK) return 1;
    return c > 0;
}

static uint64_t calib_h_id(const CalibStats *cs) {
    uint64_t h = HASH_SEED;
    const CalibParams *p = &cs->params;
    h = hash_bytes(h, &cs->fingerprint, sizeof cs->fingerprint);
    h = hash_bytes(h, &p->text_hash, sizeof p->text_hash);
    int64_t v[6] = {p->samples, p->seqlen, (int64_t)p->seed, (int64_t)p->mode, cs->n_seqs, cs->n_tokens};
    return hash_bytes(h, v, sizeof v);
}

/* Fails when any tap of the sequence just run saw an inf or NaN, naming the
 * first (layer, tap): the statistics of an overflowing model are meaningless. */
static Status calib_check_finite(const CalibStats *cs, int64_t seq, Err *err) {
    for (int64_t l = 0; l < cs->n_layers; l++)
        for (int t = 0; t < TAP_COUNT; t++) {
            const TapStats *ts = calib_tap(cs, l, (TapPoint)t);
            if (ts->n_nonfinite > 0)
                return err_set(err, ST_ERR_NUMERIC,
                               "calibration: %lld non-finite activations at layer %lld, tap %s (sequence %lld): the "
                               "model's activations overflow",
                               (long long)ts->n_nonfinite, (long long)l, tap_name((TapPoint)t), (long long)seq);
        }
    return ST_OK;
}

Status calib_params_check(const CalibParams *p, const char *where, Err *err) {
    const struct {
        const char *name;
        int64_t v, lo, hi;
    } f[] = {
        {"samples", p->samples, CALIB_SAMPLES_MIN, CALIB_SAMPLES_MAX},
        {"seqlen", p->seqlen, CALIB_SEQLEN_MIN, CALIB_SEQLEN_MAX},
        {"group", p->group, CALIB_GROUP_MIN, CALIB_GROUP_MAX},
        {"topk", p->topk, CALIB_TOPK_MIN, CALIB_TOPK_MAX},
        {"tok_from", p->tok_from, 0, (int64_t)1 << 40},
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (f[i].v < f[i].lo || f[i].v > f[i].hi)
            return err_set(err, ST_ERR_RANGE, "%s: %s = %lld is outside [%lld, %lld]", where, f[i].name,
                           (long long)f[i].v, (long long)f[i].lo, (long long)f[i].hi);
    return ST_OK;
}

/* === The two pipelines === */

/* PER_SAMPLE: window i drawn when it is used, then all layers over it
 * (--samples bounded by time, not memory); a cancel keeps the sequences done. */
static Status calib_pass_sample(const Model *m, Forward *fw, CalibRun *run, const int32_t *toks, int64_t n_tok,
                                const CalibParams *p, int64_t n_seqs, Progress *prog, Err *err) {
    CalibStats *cs = run->cs;
    int32_t *seq = core_calloc((size_t)p->seqlen, sizeof *seq);
    if (!seq) return err_set(err, ST_ERR_NOMEM, "calibration sequence of %lld tokens", (long long)p->seqlen);
    Taps taps = {.fn = calib_tap_fn, .user = run, .mask = 0};
    int32_t bos = tokenizer_bos(m->tok);
    uint64_t rs = p->seed;
    Status st = ST_OK;
    progress_begin(prog, "calibrate", n_seqs);
    for (int64_t i = 0; i < n_seqs; i++) {
        if (progress_cancelled(prog)) break;
        memcpy(seq, toks + calib_offset(n_tok, p, i, &rs), (size_t)p->seqlen * sizeof *seq);
        if (bos >= 0) seq[0] = bos;
        run->seq = i;
        forward_reset(fw);
        if ((st = forward_run(fw, seq, p->seqlen, NULL, 0, &taps, err))) break;
        if ((st = calib_check_finite(cs, i, err))) break;
        cs->n_seqs = i + 1;
        cs->n_tokens += p->seqlen;
        progress_add(prog, 1);
    }
    for (int64_t l = 0; st == ST_OK && run->hs && l < cs->n_layers; l++) st = hstore_layer_done(run->hs, l, err);
    free(seq);
    return st;
}

/* Decides where STREAM keeps the residual stream: the first *n_ram
 * sequences in RAM (within p->hidden_budget or calib_hidden_budget()), the
 * rest in an unlinked temporary file (*spill_fd, in $TMPDIR or /tmp) when
 * its disk has room for them plus 1 GiB; otherwise *pipe becomes
 * PER_SAMPLE (no error). */
static Status calib_stream_plan(const CalibParams *p, int64_t n_seqs, int64_t dim, int *spill_fd, int64_t *n_ram,
                                CalibPipeline *pipe, Err *err) {
    *spill_fd = -1;
    size_t seq_bytes = (size_t)p->seqlen * (size_t)dim * sizeof(float);
    size_t budget = p->hidden_budget ? p->hidden_budget : calib_hidden_budget();
    int64_t fit = (int64_t)(budget / seq_bytes);
    *n_ram = fit < n_seqs ? fit : n_seqs;
    if (*n_ram == n_seqs) return ST_OK;
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    char path[CALIB_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/qscope-calib-spill.XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) return err_set(err, ST_ERR_IO, "%s: cannot create the calibration spill file: %s", path, strerror(errno));
    unlink(path); /* gone when closed, whatever happens */
    struct statvfs sv;
    double need = (double)(n_seqs - *n_ram) * (double)seq_bytes;
    if (fstatvfs(fd, &sv) != 0 || (double)sv.f_bavail * (double)sv.f_frsize < need + (double)(1u << 30)) {
        close(fd);
        *pipe = CALIB_PER_SAMPLE;
        *n_ram = 0;
        return ST_OK;
    }
    *spill_fd = fd;
    return ST_OK;
}

static Status spill_io(int fd, int write, float *x, size_t bytes, size_t off, Err *err) {
    unsigned char *b = (unsigned char *)x;
    size_t done = 0;
    while (done < bytes) {
        ssize_t r = write ? pwrite(fd, b + done, bytes - done, (off_t)(off + done))
                          : pread(fd, b + done, bytes - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return err_set(err, ST_ERR_IO, "calibration spill file: %s at byte %zu: %s", write ? "write" : "read",
                           off + done, r < 0 ? strerror(errno) : "short read");
        done += (size_t)r;
    }
    return ST_OK;
}

/* STREAM: the windows are drawn up front (n_seqs × seqlen tokens); this
 * rank's sequences s = rank + j·size (all of them in one process) keep
 * their residual stream in slot j: in RAM (j < n_ram) or at
 * (j - n_ram) · seq_bytes in spill_fd. Layer by layer, sequences in order,
 * so each (layer, tap) sees the same batches in the same order as
 * PER_SAMPLE and the sums come out bit-identical. */
static Status calib_pass_stream(const Model *m, Forward *fw, CalibRun *run, const int32_t *toks, int64_t n_tok,
                                const CalibParams *p, int64_t n_seqs, int spill_fd, int64_t n_ram, Progress *prog,
                                Err *err) {
    CalibStats *cs = run->cs;
    int64_t L = p->seqlen, dim = m->cfg.dim, nl = m->cfg.n_layers;
    int nr = dist_size(), rk = dist_rank();
    int64_t n_own = n_seqs > rk ? (n_seqs - rk + nr - 1) / nr : 0;
    size_t seq_elems = (size_t)L * (size_t)dim, seq_bytes = seq_elems * sizeof(float), keep_elems = 0;
    for (int t = 0; t < HSTORE_TAPS; t++) {
        run->keep_off[t] = keep_elems;
        keep_elems += (size_t)L * (size_t)cs->width[t];
    }
    Status st = ST_OK;
    int32_t *win = core_calloc((size_t)n_seqs * (size_t)L, sizeof *win);
    float *hid = n_ram > 0 ? core_alloc_aligned((size_t)n_ram * seq_elems, sizeof(float)) : NULL;
    float *work = n_ram < n_own ? core_alloc_aligned(seq_elems, sizeof(float)) : NULL;
    /* MPI: the projection inputs of this rank's sequences for one layer (folded after it) */
    float *keep = nr > 1 && n_own > 0 ? core_alloc_aligned((size_t)n_own * keep_elems, sizeof(float)) : NULL;
    if (!win || (n_ram > 0 && !hid) || (n_ram < n_own && !work) || (nr > 1 && n_own > 0 && !keep)) {
        st = err_set(err, ST_ERR_NOMEM, "calibration: residual stream of %lld sequences × %lld tokens × %lld",
                     (long long)n_own, (long long)L, (long long)dim);
        goto done;
    }
    if (nr > 1 && n_ram < n_own) {
        st = err_set(err, ST_ERR_ARG, "calibration over MPI: the residual stream of %lld sequences exceeds "
                     "QS_CALIB_HIDDEN_MB on rank %d (spilling is single-process only): raise it or add ranks",
                     (long long)n_own, rk);
        goto done;
    }
    int32_t bos = tokenizer_bos(m->tok);
    uint64_t rs = p->seed;
    for (int64_t i = 0; i < n_seqs; i++) {
        memcpy(win + i * L, toks + calib_offset(n_tok, p, i, &rs), (size_t)L * sizeof *win);
        if (bos >= 0) win[i * L] = bos;
    }
    Taps taps = {.fn = calib_tap_fn, .user = run, .mask = 0};
    /* Counted in sequences' worth of work (one per n_layers layer steps), so
     * the count reads as in the per-sample pipeline. */
    progress_begin(prog, "calibrate", n_own);
    int64_t steps = 0;
    for (int64_t l = 0; l < nl; l++) {
        const LayerWeights *LW = &m->layers[l];
        for (int q = 0; q < PROJ_COUNT; q++) mapfile_prefault(LW->proj[q].data, weight_bytes(&LW->proj[q]));
        /* Over MPI every rank asks once per layer (a collective call: a rank
         * may own no sequence); one process asks before every step. */
        int cancel_layer = nr > 1 && calib_cancelled_all(prog);
        for (int64_t j = 0; j < n_own || (cancel_layer && j == 0); j++) {
            int64_t s = rk + j * nr;
            if (cancel_layer || (nr == 1 && progress_cancelled(prog))) {
                st = err_set(err, ST_ERR_CANCELLED,
                             "calibration cancelled at layer %lld: the layer-streamed pipeline keeps no partial "
                             "result (--pipeline per-sample keeps the sequences done)",
                             (long long)l);
                goto done;
            }
            const int32_t *tk = win + s * L;
            float *x = j < n_ram ? hid + (size_t)j * seq_elems : work;
            size_t off = (size_t)(j - n_ram) * seq_bytes;
            if (l == 0) st = forward_embed(fw, tk, L, x, err);
            else if (j >= n_ram) st = spill_io(spill_fd, 0, x, seq_bytes, off, err);
            if (st) goto done;
            run->seq = s;
            run->keep = keep ? keep + (size_t)j * keep_elems : NULL;
            if ((st = forward_run_layer(fw, l, x, tk, L, &taps, err))) goto done;
            if (nr == 1 && (st = calib_check_finite(cs, s, err))) goto done;
            if (j >= n_ram && l + 1 < nl && (st = spill_io(spill_fd, 1, x, seq_bytes, off, err))) goto done;
            if (++steps % nl == 0) progress_add(prog, 1);
        }
        if (nr > 1) {
            run->keep = NULL;
            if ((st = calib_fold_ranks(run, l, keep, keep_elems, hid, seq_elems, win, n_seqs, n_own, err))) goto done;
            if (run->hs && (st = hstore_layer_sum_ranks(run->hs, err))) goto done;
        }
        if (run->hs && (st = hstore_layer_done(run->hs, l, err))) goto done;
        /* This layer's weights are not read again: out of RSS (still in the page cache). */
        for (int q = 0; q < PROJ_COUNT; q++) weight_release(&LW->proj[q]);
    }
    cs->n_seqs = n_seqs;
    cs->n_tokens = n_seqs * L;
done:
    run->keep = NULL;
    calib_fold_ranks_done(run, n_own);
    free(win);
    core_free_aligned(hid);
    core_free_aligned(work);
    core_free_aligned(keep);
    return st;
}

/* text's tokens (no BOS), from p->tok_from on when calibration takes only
 * the part past what evaluation reads: *toks (*n) heap, caller frees. */
static Status calib_tokens(const Model *m, const char *text, size_t len, const CalibParams *p, int32_t **toks,
                           int64_t *n, Err *err) {
    Status st = tokenizer_encode(m->tok, text, len, 0, toks, n, err);
    if (st) return st;
    if (p->tok_from > 0) { /* the part evaluation does not reach: windows come from it alone */
        if (p->tok_from + p->seqlen > *n)
            return err_set(err, ST_ERR_RANGE,
                           "%s: the calibration part (tokens from %lld of %lld, past what evaluation reads) has "
                           "fewer than one sequence of %lld tokens: evaluate fewer chunks or give a calibration "
                           "text of its own",
                           p->text_path, (long long)p->tok_from, (long long)*n, (long long)p->seqlen);
        *n -= p->tok_from;
        memmove(*toks, *toks + p->tok_from, (size_t)*n * sizeof **toks);
    }
    return ST_OK;
}

/* Token text of every kept spike, for reports that run without the model. */
static void spikes_fill_text(CalibStats *cs, const Tokenizer *t) {
    for (int64_t i = 0; i < cs->n_layers * TAP_COUNT; i++) {
        TapStats *ts = &cs->taps[i];
        for (int32_t k = 0; k < ts->n_top; k++) {
            Spike *s = &ts->top[k];
            memset(s->text, 0, sizeof s->text);
            if (s->token >= 0) {
                size_t nb = tokenizer_decode(t, s->token, s->text, sizeof s->text - 1);
                s->text[nb] = '\0';
                if (nb == 0) /* control tokens (BOS) decode to nothing: show the piece */
                    snprintf(s->text, sizeof s->text, "%s", tokenizer_piece(t, s->token));
            }
        }
    }
}

Status calib_run(const Model *m, const char *text, size_t len, const CalibParams *p, const char *h_path,
                 Pool *pool, Progress *prog, CalibStats **out, Err *err) {
    *out = NULL;
    Status pst = calib_params_check(p, "calibration", err);
    if (pst) return pst;
    const ModelConfig *c = &m->cfg;
    Status st = ST_OK;
    int32_t *toks = NULL;
    int64_t n_tok = 0, n_seqs = 0, n_ram = 0;
    int spill_fd = -1;
    CalibStats *cs = NULL;
    TapScratch *sc = NULL;
    Forward *fw = NULL;
    HStore hs;
    memset(&hs, 0, sizeof hs);
    int h_created = 0;
    if (!m->tok) return err_set(err, ST_ERR_STATE, "%s: the model has no tokenizer", m->path);
    /* A sequence longer than the declared context is accepted (llama.cpp does
     * the same; RoPE runs past its trained range): callers warn. */
    st = calib_tokens(m, text, len, p, &toks, &n_tok, err);
    if (st) goto fail;
    st = calib_check_sampling(n_tok, p, &n_seqs, err);
    if (st) goto fail;

    int64_t qd = c->n_heads * c->head_dim;
    const int64_t width[TAP_COUNT] = {c->dim, qd, c->dim, c->hidden_dim, c->dim};
    st = calib_stats_new(c->n_layers, width, p->seqlen, p->topk, &cs, err);
    if (st) goto fail;
    cs->params = *p;
    cs->params.text_hash = hash_bytes(HASH_SEED, text, len);
    cs->params.text_bytes = (int64_t)len;
    cs->text_tokens = n_tok;
    cs->fingerprint = m->fingerprint;
    cs->n_layers = c->n_layers;
    cs->dim = c->dim;
    cs->hidden_dim = c->hidden_dim;
    cs->q_dim = qd;
    cs->vocab_size = c->vocab_size;
    cs->n_planned = n_seqs;

    int64_t wmax = 0;
    for (int t = 0; t < TAP_COUNT; t++) wmax = width[t] > wmax ? width[t] : wmax;
    st = tapscratch_new(p->seqlen, wmax, p->topk, pool ? pool_size(pool) : 1, &sc, err);
    if (st) goto fail;
    cs->pipeline = p->pipeline;
    int nr = dist_size(), rk = dist_rank();
    int64_t n_own = n_seqs > rk ? (n_seqs - rk + nr - 1) / nr : 0;
    if (nr > 1 && cs->pipeline != CALIB_STREAM) {
        st = err_set(err, ST_ERR_ARG, "calibration over MPI runs the layer-streamed pipeline only (not per-sample)");
        goto fail;
    }
    if (cs->pipeline == CALIB_STREAM) {
        st = calib_stream_plan(p, n_own, c->dim, &spill_fd, &n_ram, &cs->pipeline, err);
        if (st) goto fail;
        cs->spilled_bytes = (size_t)(n_own - n_ram) * (size_t)p->seqlen * (size_t)c->dim * sizeof(float);
        if (nr > 1 && (cs->pipeline != CALIB_STREAM || spill_fd >= 0)) {
            st = err_set(err, ST_ERR_ARG, "calibration over MPI: the residual stream of %lld sequences does not fit "
                         "QS_CALIB_HIDDEN_MB on rank %d (spilling is single-process only): raise it or add ranks",
                         (long long)n_own, rk);
            goto fail;
        }
    }
    st = forward_new_flags(m, NULL, p->seqlen, p->seqlen, pool, cs->pipeline == CALIB_STREAM ? FORWARD_ONE_LAYER : 0,
                           &fw, err);
    if (st) goto fail;
    /* Over MPI every rank sums H for its sequences; rank 0 alone has the file. */
    const char *h_file = rk == 0 ? h_path : NULL;
    if (h_path) {
        st = cs->pipeline == CALIB_STREAM ? hstore_create_layered(&hs, h_file, c->n_layers, width, p->seqlen, pool, err)
                                          : hstore_create(&hs, h_path, c->n_layers, width, p->seqlen, pool, err);
        if (st) goto fail;
        h_created = h_file != NULL;
    }

    CalibRun run = {.cs = cs, .hs = h_path ? &hs : NULL, .sc = sc, .pool = pool};
    if (cs->pipeline == CALIB_STREAM) {
        st = calib_pass_stream(m, fw, &run, toks, n_tok, p, n_seqs, spill_fd, n_ram, prog, err);
    } else {
        st = calib_pass_sample(m, fw, &run, toks, n_tok, p, n_seqs, prog, err);
    }
    if (st) goto fail;
    if (cs->n_seqs == 0) {
        st = err_set(err, ST_ERR_CANCELLED, "calibration cancelled before the first sequence");
        goto fail;
    }
    spikes_fill_text(cs, m->tok);
    if (h_path) cs->h_id = calib_h_id(cs);
    if (h_file) {
        st = hstore_finish(&hs, cs->h_id, err);
        if (st) goto fail;
        cs->has_h = 1;
        cs->h_bytes = hs.bytes;
    }
    /* The map reads H and the weights only: rank 0 computes it (not distributed). */
    if (p->sensitivity && rk == 0 && !progress_cancelled(prog)) {
        st = sens_map_init(&cs->sens, c->n_layers, p->group, err);
        if (st) goto fail;
        SensOpts so;
        sens_opts_default(&so);
        so.exact = p->sens_exact;
        st = sens_compute_opts(m, h_file ? &hs : NULL, &so, pool, prog, &cs->sens, err);
        if (st == ST_ERR_CANCELLED) {
            sens_map_done(&cs->sens);
            st = ST_OK;
        } else if (st) {
            goto fail;
        } else {
            cs->has_sens = 1;
        }
    }
    hstore_close(&hs);
    forward_free(fw);
    tapscratch_free(sc);
    free(toks);
    if (spill_fd >= 0) close(spill_fd);
    *out = cs;
    return ST_OK;
fail:
    hstore_close(&hs);
    if (h_created) unlink(h_file);
    forward_free(fw);
    tapscratch_free(sc);
    calib_stats_free(cs);
    free(toks);
    if (spill_fd >= 0) close(spill_fd);
    return st;
}

/* === The sensitivity map's cells === */

int calib_sens_cell(const CalibStats *cs, int64_t layer, int proj, const QParams *qp, double *werr,
                     double *oerr) {
    if (!cs || !cs->has_sens || layer < 0 || layer >= cs->sens.n_layers || proj < 0 || proj >= PROJ_COUNT) return 0;
    int f = sens_fmt_index(qp->fmt);
    if (f < 0) return 0;
    int ggml = qformat_traits(qp->fmt)->family == QFAM_GGML; /* one cell: its blocks; sym and grouping unused */
    if (!ggml && !qp->sym) return 0;
    const int32_t *gs = cs->sens.gsize + (layer * PROJ_COUNT + proj) * SG_COUNT;
    SensGroup g;
    if (ggml) g = SG_BLOCK;
    else if (qp->dim == GROUP_TENSOR) g = SG_TENSOR;
    else if (qp->group == 0) g = qp->dim == GROUP_OC ? SG_OC : SG_IC;
    else {
        g = qp->dim == GROUP_OC ? SG_OC_G : SG_IC_G;
        if (gs[g] != qp->group) return 0;
    }
    int64_t i = sens_index(layer, proj, f, g);
    if (isnan(cs->sens.werr[i])) return 0;
    if (werr) *werr = cs->sens.werr[i];
    if (oerr) *oerr = cs->sens.oerr[i];
    return 1;
}

int calib_sens_groups(const CalibStats *cs, int64_t layer, int proj, int64_t *oc_group, int64_t *ic_group) {
    if (!cs || !cs->has_sens || layer < 0 || layer >= cs->sens.n_layers || proj < 0 || proj >= PROJ_COUNT) return 0;
    const int32_t *gs = cs->sens.gsize + (layer * PROJ_COUNT + proj) * SG_COUNT;
    *oc_group = gs[SG_OC_G];
    *ic_group = gs[SG_IC_G];
    return 1;
}
