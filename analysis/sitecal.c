#include "analysis/sitecal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analysis/qmodel.h"
#include "analysis/qmodel_stats.h"
#include "core/alloc.h"
#include "core/atomicfile.h"

void sitecal_default_probe(PlanEntry *e) {
    plan_entry_default(e);
    e->w = (QParams){QF_INT4, 1, GROUP_OC, 32};
    e->method = QM_RTN;
}

void sitecal_done(SiteCal *sc) {
    free(sc->scale);
    free(sc->kld);
    free(sc->oerr);
    memset(sc, 0, sizeof *sc);
}

static Status sitecal_alloc(SiteCal *sc, int64_t n_layers, Err *err) {
    memset(sc, 0, sizeof *sc);
    size_t n = (size_t)n_layers * PLAN_NPROJ;
    sc->n_layers = n_layers;
    sc->scale = core_calloc(n, sizeof *sc->scale);
    sc->kld = core_calloc(n, sizeof *sc->kld);
    sc->oerr = core_calloc(n, sizeof *sc->oerr);
    if (!sc->scale || !sc->kld || !sc->oerr) {
        sitecal_done(sc);
        return err_set(err, ST_ERR_NOMEM, "site calibration (%lld layers)", (long long)n_layers);
    }
    for (size_t i = 0; i < n; i++) sc->scale[i] = sc->kld[i] = sc->oerr[i] = NAN;
    return ST_OK;
}

/* The probe at (l, p) with the map's group size there (*e) and the map's
 * output error of it; 0 when the map has no positive error for it. */
static int probe_oerr(const struct CalibStats *cs, int64_t l, int p, const PlanEntry *probe, PlanEntry *e,
                      double *oerr) {
    *e = *probe;
    int64_t og = 0, ig = 0;
    qstats_sens_groups(cs, l, p, &og, &ig);
    if (e->w.group > 0) e->w.group = e->w.dim == GROUP_IC ? ig : og;
    return qstats_sens_cell(cs, l, p, &e->w, NULL, oerr) && *oerr > 0;
}

Status sitecal_measure(const Model *m, const struct CalibStats *cs, const EvalRef *ref, const EvalOpts *o,
                       uint64_t text_hash, const PlanEntry *probe, Pool *pool, Progress *prog, SiteCal *out,
                       Err *err) {
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    Status st = sitecal_alloc(out, pm.n_layers, err);
    if (st) return st;
    out->fingerprint = m->fingerprint;
    out->text_hash = text_hash;
    out->ctx = o->n_ctx;
    out->chunks = o->max_chunks; /* the key is what was asked (0: all); the reference may hold fewer */
    plan_entry_code(probe, out->probe, sizeof out->probe);
    EvalOpts eo = *o;
    eo.layer_err = 0;
    eo.speed = 0;
    int64_t n = pm.n_layers * PLAN_NPROJ;
    progress_begin(prog, "site KLD", n);
    for (int64_t s = 0; s < n; s++) {
        int64_t l = s / PLAN_NPROJ;
        int p = (int)(s % PLAN_NPROJ);
        PlanEntry e;
        double oerr;
        if (!probe_oerr(cs, l, p, probe, &e, &oerr)) {
            st = err_set(err, ST_ERR_ARG, "layer %lld %s: the sensitivity map has no output error for the probe %s",
                         (long long)l, plan_proj_name(p), out->probe);
            goto fail;
        }
        Plan pl;
        plan_init(&pl);
        char pat[32];
        snprintf(pat, sizeof pat, "%lld.%s", (long long)l, plan_proj_name(p));
        snprintf(pl.name, sizeof pl.name, "probe-%s", pat);
        QModel *qm = NULL;
        EvalResult res;
        memset(&res, 0, sizeof res);
        st = plan_add_rule(&pl, pat, PF_FMT | PF_GROUP | PF_METHOD, &e, err);
        if (!st) st = qmodel_build(m, &pl, NULL, pool, NULL, &qm, err);
        if (!st) st = eval_run(qm, ref, &eo, pool, NULL, NULL, NULL, &res, err);
        if (!st) {
            out->kld[s] = res.kld_mean;
            out->oerr[s] = oerr;
            out->scale[s] = res.kld_mean / oerr;
        }
        eval_result_done(&res);
        qmodel_free(qm);
        plan_done(&pl);
        if (st) {
            err_wrap(err, "site %s", pat);
            goto fail;
        }
        if (progress_cancelled(prog)) {
            st = err_set(err, ST_ERR_CANCELLED, "site calibration cancelled at layer %lld %s", (long long)l,
                         plan_proj_name(p));
            goto fail;
        }
        progress_add(prog, 1);
    }
    return ST_OK;
fail:
    sitecal_done(out);
    return st;
}

/* Appends printf-style text to af (lines here are short; a longer one is cut). */
static Status put_line(AtomicFile *af, Err *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static Status put_line(AtomicFile *af, Err *err, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (k < 0) k = 0;
    if ((size_t)k >= sizeof line) k = (int)sizeof line - 1;
    return afile_write(af, line, (size_t)k, err);
}

Status sitecal_save(const SiteCal *sc, const char *path, Err *err) {
    AtomicFile af;
    Status st = afile_open(&af, path, err);
    if (st) return st;
    st = put_line(&af, err, "# qscope sitecal 1 fp=%016" PRIx64 " text=%016" PRIx64 " ctx=%lld chunks=%lld probe=%s\n",
                  sc->fingerprint, sc->text_hash, (long long)sc->ctx, (long long)sc->chunks, sc->probe);
    if (!st) st = put_line(&af, err, "# layer proj scale(KLD per unit output error) kld(nats) oerr\n");
    for (int64_t s = 0; !st && s < sc->n_layers * PLAN_NPROJ; s++)
        st = put_line(&af, err, "%lld %s %.9g %.9g %.9g\n", (long long)(s / PLAN_NPROJ),
                      plan_proj_name((int)(s % PLAN_NPROJ)), sc->scale[s], sc->kld[s], sc->oerr[s]);
    if (st) {
        afile_abort(&af);
        return st;
    }
    return afile_commit(&af, err);
}

Status sitecal_load(const char *path, int64_t n_layers, SiteCal *out, Err *err) {
    FILE *f = fopen(path, "r");
    if (!f) return err_set(err, ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    Status st = sitecal_alloc(out, n_layers, err);
    if (st) {
        fclose(f);
        return st;
    }
    char line[512];
    int ln = 0;
    int64_t got = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        if (line[0] == '#') {
            unsigned long long fp, th;
            long long ctx, ch;
            char probe[32];
            if (sscanf(line, "# qscope sitecal 1 fp=%llx text=%llx ctx=%lld chunks=%lld probe=%31s", &fp, &th, &ctx,
                       &ch, probe) == 5) {
                out->fingerprint = fp;
                out->text_hash = th;
                out->ctx = ctx;
                out->chunks = ch;
                snprintf(out->probe, sizeof out->probe, "%s", probe);
            }
            continue;
        }
        if (line[0] == '\n') continue;
        long long l;
        char proj[16];
        double v, kld = NAN, oerr = NAN;
        int k = sscanf(line, "%lld %15s %lf %lf %lf", &l, proj, &v, &kld, &oerr);
        int p = -1;
        for (int j = 0; j < PLAN_NPROJ && k >= 3; j++)
            if (!strcmp(proj, plan_proj_name(j))) p = j;
        if (k < 3 || l < 0 || l >= n_layers || p < 0 || !(v >= 0) || !isfinite(v)) {
            st = err_set(err, ST_ERR_FORMAT, "%s:%d: expected 'LAYER PROJ SCALE' with LAYER < %lld, PROJ one of "
                         "q k v o gate up down and SCALE >= 0", path, ln, (long long)n_layers);
            goto fail;
        }
        int64_t s = l * PLAN_NPROJ + p;
        if (isnan(out->scale[s])) got++;
        out->scale[s] = v;
        out->kld[s] = kld;
        out->oerr[s] = oerr;
    }
    if (got != n_layers * PLAN_NPROJ) {
        st = err_set(err, ST_ERR_FORMAT, "%s: %lld of the model's %lld sites", path, (long long)got,
                     (long long)(n_layers * PLAN_NPROJ));
        goto fail;
    }
    fclose(f);
    return ST_OK;
fail:
    fclose(f);
    sitecal_done(out);
    return st;
}

int sitecal_matches(const SiteCal *sc, uint64_t fingerprint, uint64_t text_hash, int64_t ctx, int64_t chunks,
                    const char *probe) {
    return sc->fingerprint == fingerprint && sc->text_hash == text_hash && sc->ctx == ctx && sc->chunks == chunks &&
           !strcmp(sc->probe, probe);
}

int sitecal_matches_stats(const SiteCal *sc, const struct CalibStats *cs, const PlanEntry *probe) {
    for (int64_t s = 0; s < sc->n_layers * PLAN_NPROJ; s++) {
        PlanEntry e;
        double oerr;
        if (!probe_oerr(cs, s / PLAN_NPROJ, (int)(s % PLAN_NPROJ), probe, &e, &oerr)) return 0;
        /* the file holds %.9g: equal to 1e-8 relative when the map is the same */
        if (!(fabs(sc->oerr[s] - oerr) <= 1e-7 * oerr)) return 0;
    }
    return 1;
}
