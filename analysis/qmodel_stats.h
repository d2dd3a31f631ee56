/* The calibration facts a quantized-model build reads, behind functions that
 * do not need quant/plan.h: analysis/stats.h and quant/plan.h both define
 * ACT_INT8 (for different enums), so code that works with plans (qmodel.c,
 * the eval/quant/plan commands) reaches the stats file, H and the spike
 * ranking through here. */
#ifndef QS_ANALYSIS_QMODEL_STATS_H
#define QS_ANALYSIS_QMODEL_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"
#include "model/model.h"
#include "quant/qtensor.h"

struct CalibStats;
struct HStore;

/* A loaded stats file and its H store (if it has one). */
typedef struct QStatsFile {
    struct CalibStats *cs;   /* owned */
    struct HStore *h;        /* owned; NULL when the stats were computed without H */
} QStatsFile;

/* Loads the stats file at path and, when present, its H store (statsfile_h_path),
 * checking both against m (a stale file fails with ST_ERR_MISMATCH naming the
 * file and the reason). Caller releases with qstats_close. */
Status qstats_open(const char *path, const Model *m, QStatsFile *out, Err *err);

/* Calibrates m on text (len bytes) in memory: `samples` random windows of
 * `seqlen` tokens (seed 1; analysis/calib.h's defaults otherwise, without the
 * sensitivity map), H written to h_path (kept open in out->h; the caller
 * removes the file when done). pool may be NULL. For tests and tools that
 * need statistics without a stats file. Caller releases with qstats_close. */
Status qstats_calibrate(const Model *m, const char *text, size_t len, int64_t samples, int64_t seqlen,
                        const char *h_path, Pool *pool, QStatsFile *out, Err *err);

/* qstats_calibrate plus the weight-sensitivity map (group 32; output errors
 * when h_path is given). */
Status qstats_calibrate_sens(const Model *m, const char *text, size_t len, int64_t samples, int64_t seqlen,
                             const char *h_path, Pool *pool, QStatsFile *out, Err *err);

/* Frees both; safe on a zeroed QStatsFile. */
void qstats_close(QStatsFile *f);

/* The max|x| per input channel of (layer, tap) (TAP_QKV .. TAP_DOWN), width
 * values in *width; borrowed from cs. */
const float *qstats_ch_absmax(const struct CalibStats *cs, int64_t layer, TapPoint tap, int64_t *width);

/* The whole-tensor max|x| of (layer, tap). */
float qstats_absmax(const struct CalibStats *cs, int64_t layer, TapPoint tap);

/* The float64 (w, w) H of (layer, tap) (TAP_QKV .. TAP_DOWN) in *out
 * (NULL when h is NULL or (layer, tap) out of range), borrowed from h's cache
 * of one layer per tap (analysis/hstore.h hstore_get_f64: valid until the
 * same tap is asked for another layer). Fails when the matrix is corrupt. */
Status qstats_h(const struct HStore *h, int64_t layer, TapPoint tap, const double **out, Err *err);

/* Frees the matrices qstats_h cached (their pointers become invalid); h may
 * be NULL. */
void qstats_h_drop(const struct HStore *h);

/* The top-k spike sites by calibration's ranking, as plan patterns
 * "L.qkv", "L.o", "L.gate_up", "L.down" (best first). *sites is an array of
 * k heap strings (caller frees each and the array); *n <= k. */
Status qstats_spike_sites(const struct CalibStats *cs, int64_t k, char ***sites, int64_t *n, Err *err);

/* The weight-sensitivity map's cell for symmetric round-to-nearest under qp
 * on (layer, proj): returns 1 and sets *werr (‖ΔW‖²/‖W‖²) and *oerr
 * (tr(ΔW H ΔWᵀ)/tr(W H Wᵀ), NaN without H) when cs has the map and the cell
 * (qp symmetric, a format the map covers, per-tensor / per-channel or the
 * map's group size for that site); 0 otherwise. Either pointer may be NULL. */
int qstats_sens_cell(const struct CalibStats *cs, int64_t layer, int proj, const QParams *qp, double *werr,
                     double *oerr);

/* Relative output errors (tr(ΔW H ΔWᵀ)/tr(W H Wᵀ)) of RTN under qps[0..n)
 * on (layer, proj) of m, computed now from the weights and h (cells the map
 * does not hold, e.g. other group sizes). pool may be NULL. */
Status qstats_site_oerr(const Model *m, const struct HStore *h, int64_t layer, int proj, const QParams *qps, int n,
                        Pool *pool, double *oerr, Err *err);

/* A quantizer for qstats_site_oerr_fn (analysis/sensitivity.h's SensQuantFn):
 * writes into Wq (no, ni) the values cell k represents for the rows W. */
typedef Status (*QStatsQuantFn)(void *user, int k, const float *W, int64_t no, int64_t ni, float *Wq, Err *err);

/* Relative output errors of cells 0..n on (layer, proj) of m quantized by fn,
 * on a seeded subsample of max_rows rows (0: all; for quantizers whose rows
 * are independent): sens_site_errors_fn. */
Status qstats_site_oerr_fn(const Model *m, const struct HStore *h, int64_t layer, int proj, int n, int64_t max_rows,
                           QStatsQuantFn fn, void *user, Pool *pool, double *oerr, Err *err);

/* The group sizes the map used on (layer, proj) for OC- and IC-grouped cells
 * (0: none fits); returns 0 when cs has no map. */
int qstats_sens_groups(const struct CalibStats *cs, int64_t layer, int proj, int64_t *oc_group, int64_t *ic_group);

/* Calibration text path and token count, for reports (borrowed). */
const char *qstats_text_path(const struct CalibStats *cs);
int64_t qstats_tokens(const struct CalibStats *cs);

#endif
