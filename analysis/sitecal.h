/* Site calibration of the planner's loss model: for every linear site, the
 * KLD the model shows with that site alone quantized (a probe entry, RTN) and
 * every other weight float, measured on an evaluation reference; divided by
 * the sensitivity map's relative output error of the same probe on that site
 * it gives the site's scale, the KLD per unit of output error that
 * analysis/planner.h multiplies by. Measured on demand and cached in a text
 * file keyed by the model, the text, ctx, chunks and the probe.
 *
 * File: a header line
 *   # qscope sitecal 1 fp=<hex> text=<hex> ctx=<n> chunks=<n> probe=<code>
 * then per site "LAYER PROJ SCALE KLD OERR" (PROJ q k v o gate up down),
 * and optionally per end and format "end embed|output FORMAT KLD" (the KLD
 * with that end alone quantized by ggml's rounding; -1 where the format's
 * blocks do not fit the rows);
 * `qscope plan --auto --site-scales FILE` reads the first three columns of
 * such lines from any file, header or not. */
#ifndef QS_ANALYSIS_SITECAL_H
#define QS_ANALYSIS_SITECAL_H

#include <stdint.h>

#include "analysis/calib.h"
#include "analysis/eval.h"
#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/model.h"
#include "quant/plan.h"

typedef struct SiteCal {
    int64_t n_layers;
    uint64_t fingerprint, text_hash;   /* key (text_hash 0: unknown, from --site-scales) */
    int64_t ctx, chunks;               /* eval options asked (chunks 0: all the text has) */
    char probe[32];                    /* plan_entry_code of the probe */
    double *scale;                     /* (n_layers * PLAN_NPROJ) kld / oerr; NaN unknown */
    double *kld;                       /* (n_layers * PLAN_NPROJ) measured KLD, nats */
    double *oerr;                      /* (n_layers * PLAN_NPROJ) the map's output error of the probe */
    double *end_kld;                   /* (2 * QF_COUNT) [end * QF_COUNT + fmt], end 0 embedding, 1 head:
                                          KLD with that end alone in fmt; NaN not measured, -1 n/a */
} SiteCal;

/* The default probe: int4 symmetric, the map's grouped OC cells, RTN (small
 * enough that KLD stays in its quadratic regime, large enough to stand above
 * float noise). */
void sitecal_default_probe(PlanEntry *e);

/* Measures every site of m (see the header comment) on ref (computed on m
 * with eval options o's n_ctx / max_chunks; reused for every site). The
 * probe's group size per site is the map's (cs). pool and prog may be NULL
 * (prog: stage "site KLD", one step per site; cancel -> ST_ERR_CANCELLED).
 * text_hash is recorded as the key. Caller releases *out with sitecal_done. */
Status sitecal_measure(const Model *m, const CalibStats *cs, const EvalRef *ref, const EvalOpts *o,
                       uint64_t text_hash, const PlanEntry *probe, Pool *pool, Progress *prog, SiteCal *out,
                       Err *err);

/* Measures into sc (from sitecal_measure or sitecal_load, same model) the
 * KLD of m with the embedding alone, then the head alone, quantized by RTN
 * in each of fmts[0..n) (the rest float), on ref under o; pairs already
 * measured are kept, formats whose blocks do not fit the rows get -1, fp16
 * and other plain formats are measured like the rest. prog: stage "end KLD". */
Status sitecal_measure_ends(const Model *m, const EvalRef *ref, const EvalOpts *o, const QFormat *fmts, int n,
                            Pool *pool, Progress *prog, SiteCal *sc, Err *err);

/* 1 when sc holds a value for both ends in every format of fmts[0..n). */
int sitecal_has_ends(const SiteCal *sc, const QFormat *fmts, int n);

/* Writes the file atomically (temp + rename). */
Status sitecal_save(const SiteCal *sc, const char *path, Err *err);

/* Reads path for a model of n_layers layers: every site must have a line
 * (ST_ERR_FORMAT naming the file and line otherwise). The header, when
 * present, fills the key; ST_ERR_IO when the file cannot be opened. Caller
 * releases with sitecal_done. */
Status sitecal_load(const char *path, int64_t n_layers, SiteCal *out, Err *err);

/* 1 when sc's key is (fingerprint, text_hash, ctx, chunks) and probe code. */
int sitecal_matches(const SiteCal *sc, uint64_t fingerprint, uint64_t text_hash, int64_t ctx, int64_t chunks,
                    const char *probe);

/* 1 when sc's per-site output errors are those of cs's sensitivity map for
 * probe (the map's group sizes, as sitecal_measure uses them), i.e. the scales
 * were measured against this calibration: the cache key holds the model, text
 * and eval options but not the stats file, which `qscope calib -o` can rewrite
 * (another --group, --samples or text) under the same name. 0 also when sc
 * has no oerr column (a --site-scales file without one). */
int sitecal_matches_stats(const SiteCal *sc, const CalibStats *cs, const PlanEntry *probe);

/* The site calibration of m for text (len bytes) under o (n_ctx,
 * max_chunks): loaded from path when its key (model, text, ctx, chunks, the
 * default probe) and cs's map match, else measured (sitecal_measure, the
 * reference computed here or read from cache_dir, may be NULL) and written
 * to path; then the ends in end_fmts[0..n_end) that path lacks are measured
 * (sitecal_measure_ends) and written too. *measured (may be NULL) = 1 when
 * anything was measured. pool and prog may be NULL. Caller releases *out
 * with sitecal_done. */
Status sitecal_get(const Model *m, const struct CalibStats *cs, const char *text, size_t len, const EvalOpts *o,
                   const char *cache_dir, const char *path, const QFormat *end_fmts, int n_end, Pool *pool,
                   Progress *prog, SiteCal *out, int *measured, Err *err);

/* Frees the arrays; safe on a zeroed SiteCal. */
void sitecal_done(SiteCal *sc);

#endif
