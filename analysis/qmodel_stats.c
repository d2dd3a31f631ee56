/* Stats-file, H and spike-ranking access for plan-side code (see the header
 * for why this sits apart from analysis/qmodel.c). */
#include "analysis/qmodel_stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/calib.h"
#include "analysis/spikes.h"
#include "analysis/stats.h"
#include "analysis/statsfile.h"
#include "core/mapfile.h"

Status qstats_open(const char *path, const Model *m, QStatsFile *out, Err *err) {
    memset(out, 0, sizeof *out);
    char *hpath = NULL;
    Status st = statsfile_load(path, &out->cs, err);
    if (st) goto fail;
    char why[256];
    if (m && statsfile_is_stale(out->cs, m, why, sizeof why)) {
        st = err_set(err, ST_ERR_MISMATCH, "%s: statistics were not computed on %s: %s", path, m->path, why);
        goto fail;
    }
    if (out->cs->has_h) {
        hpath = statsfile_h_path(path, out->cs->h_id);
        if (!hpath) {
            st = err_set(err, ST_ERR_NOMEM, "%s: H path", path);
            goto fail;
        }
        out->h = calloc(1, sizeof *out->h);
        if (!out->h) {
            st = err_set(err, ST_ERR_NOMEM, "%s: H store", path);
            goto fail;
        }
        st = hstore_open(out->h, hpath, out->cs->h_id, out->cs->n_layers, out->cs->width, err);
        if (st) {
            free(out->h);
            out->h = NULL;
            goto fail;
        }
    }
    free(hpath);
    return ST_OK;
fail:
    free(hpath);
    qstats_close(out);
    return st;
}

static Status calibrate(const Model *m, const char *text, size_t len, int64_t samples, int64_t seqlen,
                        const char *h_path, int sensitivity, Pool *pool, QStatsFile *out, Err *err) {
    memset(out, 0, sizeof *out);
    CalibParams p;
    calib_params_default(&p);
    p.samples = samples;
    p.seqlen = seqlen;
    p.sensitivity = sensitivity;
    Status st = calib_run(m, text, len, &p, h_path, pool, NULL, &out->cs, err);
    if (st) return st;
    if (h_path && out->cs->has_h) {
        out->h = calloc(1, sizeof *out->h);
        if (!out->h) {
            st = err_set(err, ST_ERR_NOMEM, "%s: H store", h_path);
            goto fail;
        }
        st = hstore_open(out->h, h_path, out->cs->h_id, out->cs->n_layers, out->cs->width, err);
        if (st) {
            free(out->h);
            out->h = NULL;
            goto fail;
        }
    }
    return ST_OK;
fail:
    qstats_close(out);
    return st;
}

Status qstats_calibrate(const Model *m, const char *text, size_t len, int64_t samples, int64_t seqlen,
                        const char *h_path, Pool *pool, QStatsFile *out, Err *err) {
    return calibrate(m, text, len, samples, seqlen, h_path, 0, pool, out, err);
}

Status qstats_calibrate_sens(const Model *m, const char *text, size_t len, int64_t samples, int64_t seqlen,
                             const char *h_path, Pool *pool, QStatsFile *out, Err *err) {
    return calibrate(m, text, len, samples, seqlen, h_path, 1, pool, out, err);
}

void qstats_close(QStatsFile *f) {
    if (!f) return;
    if (f->h) {
        hstore_close(f->h);
        free(f->h);
    }
    calib_stats_free(f->cs);
    memset(f, 0, sizeof *f);
}

const float *qstats_ch_absmax(const struct CalibStats *cs, int64_t layer, TapPoint tap, int64_t *width) {
    if (!cs || layer < 0 || layer >= cs->n_layers || tap < 0 || tap >= TAP_COUNT) return NULL;
    const TapStats *ts = calib_tap(cs, layer, tap);
    if (width) *width = ts->width;
    return ts->ch_absmax;
}

float qstats_absmax(const struct CalibStats *cs, int64_t layer, TapPoint tap) {
    if (!cs || layer < 0 || layer >= cs->n_layers || tap < 0 || tap >= TAP_COUNT) return 0.0f;
    return calib_tap(cs, layer, tap)->absmax;
}

Status qstats_h(const struct HStore *h, int64_t layer, TapPoint tap, const double **out, Err *err) {
    *out = NULL;
    if (!h || layer < 0 || layer >= h->n_layers || (int)tap < 0 || (int)tap >= HSTORE_TAPS) return ST_OK;
    return hstore_get_f64(h, layer, (int)tap, out, err);
}

void qstats_h_drop(const struct HStore *h) { hstore_cache_drop(h); }

Status qstats_spike_sites(const struct CalibStats *cs, int64_t k, char ***sites, int64_t *n, Err *err) {
    *sites = NULL;
    *n = 0;
    SpikeScore *sc = NULL;
    int64_t n_sc = 0;
    Status st = spikes_score(cs, &sc, &n_sc, err);
    if (st) return st;
    if (k > n_sc) k = n_sc;
    char **out = calloc((size_t)(k > 0 ? k : 1), sizeof *out);
    if (!out) {
        free(sc);
        return err_set(err, ST_ERR_NOMEM, "spike sites");
    }
    for (int64_t i = 0; i < k; i++) {
        out[i] = malloc(48);
        if (!out[i]) {
            for (int64_t j = 0; j < i; j++) free(out[j]);
            free(out);
            free(sc);
            return err_set(err, ST_ERR_NOMEM, "spike sites");
        }
        snprintf(out[i], 48, "%lld.%s", (long long)sc[i].layer, tap_name(sc[i].tap));
    }
    free(sc);
    *sites = out;
    *n = k;
    return ST_OK;
}

const char *qstats_text_path(const struct CalibStats *cs) { return cs ? cs->params.text_path : ""; }

int64_t qstats_tokens(const struct CalibStats *cs) { return cs ? cs->n_tokens : 0; }

int qstats_sens_cell(const struct CalibStats *cs, int64_t layer, int proj, const QParams *qp, double *werr,
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

int qstats_sens_groups(const struct CalibStats *cs, int64_t layer, int proj, int64_t *oc_group, int64_t *ic_group) {
    if (!cs || !cs->has_sens || layer < 0 || layer >= cs->sens.n_layers || proj < 0 || proj >= PROJ_COUNT) return 0;
    const int32_t *gs = cs->sens.gsize + (layer * PROJ_COUNT + proj) * SG_COUNT;
    *oc_group = gs[SG_OC_G];
    *ic_group = gs[SG_IC_G];
    return 1;
}

Status qstats_site_oerr_fn(const Model *m, const struct HStore *h, int64_t layer, int proj, int n, int64_t max_rows,
                           QStatsQuantFn fn, void *user, Pool *pool, double *oerr, Err *err) {
    double *werr = malloc((size_t)(n > 0 ? n : 1) * sizeof *werr);
    if (!werr) return err_set(err, ST_ERR_NOMEM, "site errors (%d cells)", n);
    Status st = sens_site_errors_fn(m, h, layer, proj, n, max_rows, fn, user, pool, werr, oerr, err);
    free(werr);
    return st;
}

Status qstats_site_oerr(const Model *m, const struct HStore *h, int64_t layer, int proj, const QParams *qps, int n,
                        Pool *pool, double *oerr, Err *err) {
    double werr[64];
    if (n > 64) return err_set(err, ST_ERR_ARG, "qstats_site_oerr: %d cells (at most 64)", n);
    return sens_site_errors(m, h, layer, proj, qps, n, pool, werr, oerr, err);
}
