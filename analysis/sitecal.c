#include "analysis/sitecal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analysis/evaluate.h"
#include "analysis/sensitivity.h"
#include "analysis/qmodel.h"
#include "analysis/statsfile.h"
#include "core/alloc.h"
#include "core/atomicfile.h"
#include "core/hash.h"
#include "quant/ggml_type.h"

void sitecal_default_probe(PlanEntry *e) {
    plan_entry_default(e);
    e->w = (QParams){QF_INT4, 1, GROUP_OC, 32};
    e->method = QM_RTN;
}

void sitecal_done(SiteCal *sc) {
    free(sc->scale);
    free(sc->kld);
    free(sc->oerr);
    free(sc->end_kld);
    memset(sc, 0, sizeof *sc);
}

static Status sitecal_alloc(SiteCal *sc, int64_t n_layers, Err *err) {
    memset(sc, 0, sizeof *sc);
    size_t n = (size_t)n_layers * PLAN_NPROJ;
    sc->n_layers = n_layers;
    sc->scale = core_calloc(n, sizeof *sc->scale);
    sc->kld = core_calloc(n, sizeof *sc->kld);
    sc->oerr = core_calloc(n, sizeof *sc->oerr);
    sc->end_kld = core_calloc(2 * QF_COUNT, sizeof *sc->end_kld);
    if (!sc->scale || !sc->kld || !sc->oerr || !sc->end_kld) {
        sitecal_done(sc);
        return err_set(err, ST_ERR_NOMEM, "site calibration (%lld layers)", (long long)n_layers);
    }
    for (size_t i = 0; i < n; i++) sc->scale[i] = sc->kld[i] = sc->oerr[i] = NAN;
    for (int i = 0; i < 2 * QF_COUNT; i++) sc->end_kld[i] = NAN;
    return ST_OK;
}

/* The probe at (l, p) with the map's group size there (*e) and the map's
 * output error of it; 0 when the map has no positive error for it. */
static int probe_oerr(const CalibStats *cs, int64_t l, int p, const PlanEntry *probe, PlanEntry *e,
                      double *oerr) {
    *e = *probe;
    int64_t og = 0, ig = 0;
    calib_sens_groups(cs, l, p, &og, &ig);
    if (e->w.group > 0) e->w.group = e->w.dim == GROUP_IC ? ig : og;
    return calib_sens_cell(cs, l, p, &e->w, NULL, oerr) && *oerr > 0;
}

Status sitecal_measure(const Model *m, const CalibStats *cs, const EvalRef *ref, const EvalOpts *o,
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
        EvalSpec es; /* the one evaluate path, on the caller's reference */
        evaluate_spec_init(&es, m, NULL, 0);
        es.opts = eo;
        es.ref = ref;
        es.plan = &pl;
        es.pool = pool;
        Evaluation ev;
        memset(&ev, 0, sizeof ev);
        st = plan_add_rule(&pl, pat, PF_FMT | PF_GROUP | PF_METHOD, &e, err);
        if (!st) st = evaluate(&es, &ev, err);
        if (!st) {
            out->kld[s] = ev.res.kld_mean;
            out->oerr[s] = oerr;
            out->scale[s] = ev.res.kld_mean / oerr;
        }
        evaluation_done(&ev);
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

static const char *const END_NAMES[2] = {"embed", "output"};

Status sitecal_measure_ends(const Model *m, const EvalRef *ref, const EvalOpts *o, const QFormat *fmts, int n,
                            Pool *pool, Progress *prog, SiteCal *sc, Err *err) {
    EvalOpts eo = *o;
    eo.layer_err = 0;
    eo.speed = 0;
    progress_begin(prog, "end KLD", 2 * (int64_t)n);
    Status st = ST_OK;
    for (int end = 0; end < 2; end++)
        for (int i = 0; i < n; i++) {
            double *v = &sc->end_kld[end * QF_COUNT + fmts[i]];
            const QFormatTraits *t = qformat_traits(fmts[i]);
            int64_t ni = end ? m->output.n_in : m->tok_embd.n_in;
            if (!isnan(*v)) goto next;
            if (t->family == QFAM_GGML && ni % ggml_type_traits((uint32_t)t->ggml_type)->block_size) {
                *v = -1;
                goto next;
            }
            Plan pl;
            plan_init(&pl);
            snprintf(pl.name, sizeof pl.name, "probe-%s-%s", END_NAMES[end], t->name);
            PlanEntry *e = end ? &pl.output : &pl.embed;
            e->w.fmt = fmts[i];
            e->w.sym = 1;
            e->w.dim = GROUP_OC;
            e->w.group = t->is_int || t->is_fp8 ? 32 : 0;
            e->method = QM_RTN;
            QModel *qm = NULL;
            EvalResult res;
            memset(&res, 0, sizeof res);
            st = qmodel_build(m, &pl, NULL, pool, NULL, &qm, err);
            if (!st) st = eval_run(qm, ref, &eo, pool, NULL, NULL, NULL, &res, err);
            if (!st) *v = res.kld_mean;
            eval_result_done(&res);
            qmodel_free(qm);
            plan_done(&pl);
            if (st) return err_wrap(err, "%s in %s", END_NAMES[end], t->name), st;
        next:
            if (progress_cancelled(prog))
                return err_set(err, ST_ERR_CANCELLED, "end calibration cancelled at %s %s", END_NAMES[end], t->name);
            progress_add(prog, 1);
        }
    return st;
}

int sitecal_has_ends(const SiteCal *sc, const QFormat *fmts, int n) {
    if (!sc->end_kld) return 0;
    for (int end = 0; end < 2; end++)
        for (int i = 0; i < n; i++)
            if (isnan(sc->end_kld[end * QF_COUNT + fmts[i]])) return 0;
    return 1;
}

Status sitecal_save(const SiteCal *sc, const char *path, Err *err) {
    AtomicFile af;
    Status st = afile_open(&af, path, err);
    if (st) return st;
    st = afile_printf(&af, err, "# qscope sitecal 1 fp=%016" PRIx64 " text=%016" PRIx64 " ctx=%lld chunks=%lld probe=%s\n",
                  sc->fingerprint, sc->text_hash, (long long)sc->ctx, (long long)sc->chunks, sc->probe);
    if (!st) st = afile_printf(&af, err, "# layer proj scale(KLD per unit output error) kld(nats) oerr\n");
    for (int64_t s = 0; !st && s < sc->n_layers * PLAN_NPROJ; s++)
        st = afile_printf(&af, err, "%lld %s %.9g %.9g %.9g\n", (long long)(s / PLAN_NPROJ),
                      plan_proj_name((int)(s % PLAN_NPROJ)), sc->scale[s], sc->kld[s], sc->oerr[s]);
    for (int i = 0; !st && sc->end_kld && i < 2 * QF_COUNT; i++)
        if (!isnan(sc->end_kld[i]))
            st = afile_printf(&af, err, "end %s %s %.9g\n", END_NAMES[i / QF_COUNT], qformat_traits((QFormat)(i % QF_COUNT))->name,
                          sc->end_kld[i]);
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
        if (!strncmp(line, "end ", 4)) {
            char en[16], fn[32];
            double v;
            int fi = -1, e = -1;
            if (sscanf(line + 4, "%15s %31s %lf", en, fn, &v) == 3) {
                fi = qformat_parse(fn);
                e = !strcmp(en, END_NAMES[0]) ? 0 : !strcmp(en, END_NAMES[1]) ? 1 : -1;
            }
            if (fi < 0 || e < 0 || !(v >= 0 || v == -1)) {
                st = err_set(err, ST_ERR_FORMAT, "%s:%d: expected 'end embed|output FORMAT KLD'", path, ln);
                goto fail;
            }
            out->end_kld[e * QF_COUNT + fi] = v;
            continue;
        }
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

int sitecal_matches_stats(const SiteCal *sc, const CalibStats *cs, const PlanEntry *probe) {
    for (int64_t s = 0; s < sc->n_layers * PLAN_NPROJ; s++) {
        PlanEntry e;
        double oerr;
        if (!probe_oerr(cs, s / PLAN_NPROJ, (int)(s % PLAN_NPROJ), probe, &e, &oerr)) return 0;
        /* the file holds %.9g: equal to 1e-8 relative when the map is the same */
        if (!(fabs(sc->oerr[s] - oerr) <= 1e-7 * oerr)) return 0;
    }
    return 1;
}

Status sitecal_get(const Model *m, const struct CalibStats *cs, const char *text, size_t len, const EvalOpts *o,
                   const char *cache_dir, const char *path, const QFormat *end_fmts, int n_end, Pool *pool,
                   Progress *prog, SiteCal *out, int *measured, Err *err) {
    memset(out, 0, sizeof *out);
    if (measured) *measured = 0;
    PlanEntry probe;
    sitecal_default_probe(&probe);
    char code[32];
    plan_entry_code(&probe, code, sizeof code);
    uint64_t th = hash_bytes(HASH_SEED, text, len);
    EvalOpts eo = *o;
    eo.layer_err = 0;
    eo.speed = 0;
    EvalRef *ref = NULL;
    Status st = ST_OK;
    int have = sitecal_load(path, m->cfg.n_layers, out, NULL) == ST_OK;
    if (have && !(sitecal_matches(out, m->fingerprint, th, eo.n_ctx, eo.max_chunks, code) &&
                  sitecal_matches_stats(out, cs, &probe))) {
        sitecal_done(out);
        have = 0;
    }
    if (have && sitecal_has_ends(out, end_fmts, n_end)) return ST_OK;
    if ((st = eval_ref_get(m, text, len, &eo, cache_dir, pool, prog, &ref, NULL, err))) goto fail;
    if (!have && (st = sitecal_measure(m, cs, ref, &eo, th, &probe, pool, prog, out, err))) goto fail;
    if (n_end > 0 && (st = sitecal_measure_ends(m, ref, &eo, end_fmts, n_end, pool, prog, out, err))) goto fail;
    if ((st = sitecal_save(out, path, err))) goto fail;
    if (measured) *measured = 1;
    eval_ref_free(ref);
    return ST_OK;
fail:
    eval_ref_free(ref);
    sitecal_done(out);
    return st;
}
