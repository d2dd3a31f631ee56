/* Plan execution: quantize every site of a resolved plan and build the
 * QLinears, norm gains, head and embedding the forward pass runs. */
#include "analysis/qmodel.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "core/clock.h"
#include "core/strlist.h"
#include "quant/adadim.h"
#include "quant/ggml_type.h"
#include "quant/aqlm.h"
#include "quant/gptq.h"
#include "quant/qlinear_aqlm.h"
#include "quant/qlinear_build.h"
#include "quant/rtn.h"
#include "quant/smoothquant.h"

static Status note_add(QModel *qm, Err *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static Status note_add(QModel *qm, Err *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    Status st = strlist_vaddf(&qm->notes, &qm->n_notes, fmt, ap);
    va_end(ap);
    return st ? err_set(err, st, "qmodel notes") : ST_OK;
}

/* Tags the notes added since index `from` with key (QModel.note_key). */
static Status note_keys(QModel *qm, int64_t from, int64_t key, Err *err) {
    if (qm->n_notes == 0) return ST_OK;
    int64_t *k = realloc(qm->note_key, (size_t)qm->n_notes * sizeof *k);
    if (!k) return err_set(err, ST_ERR_NOMEM, "qmodel note keys");
    for (int64_t i = qm->n_key; i < qm->n_notes; i++) k[i] = -1;
    for (int64_t i = from; i < qm->n_notes; i++) k[i] = key;
    qm->note_key = k;
    qm->n_key = qm->n_notes;
    return ST_OK;
}

/* === What a plan needs === */

/* Scales some method fits: int/fp8 groups, aqlm, ggml block headers. */
static int entry_has_scales(const PlanEntry *e) {
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    return e->w.fmt == QF_AQLM || (t && (t->needs_scale || t->family == QFAM_GGML));
}

static int entry_needs_h(const PlanEntry *e) {
    if (e->w.fmt == QF_AQLM || e->method == QM_AQLM) return 1;
    return (entry_has_scales(e) && (e->method == QM_GPTQ || e->method == QM_ADADIM)) || e->method == QM_IMATRIX;
}

static int entry_needs_act(const PlanEntry *e) {
    return (e->act != ACT_NONE && e->act_scale == ACT_STATIC) || e->smooth_alpha > 0;
}

int qmodel_plan_needs_stats(const Plan *p, const PlanModel *m, const char **what) {
    PlanResolved r;
    memset(&r, 0, sizeof r);
    if (plan_resolve(p, m, &r, NULL) != ST_OK) return 0;
    int need_h = 0, need_act = 0;
    for (int64_t i = 0; i < r.n_layers * PLAN_NPROJ; i++) {
        need_h |= entry_needs_h(&r.lin[i].e);
        need_act |= entry_needs_act(&r.lin[i].e);
    }
    plan_resolved_done(&r);
    if (what) *what = need_h ? "H" : need_act ? "activation maxima" : NULL;
    return need_h || need_act;
}

/* === One site === */

typedef struct SiteIn {
    const float *W;          /* (n_out, n_in) float32 weights to quantize (a smoothed copy), or NULL: */
    const Weight *src;       /* the model's weight, decoded to float32 only when the site quantizes */
    int64_t n_out, n_in;
    const double *H;         /* (n_in, n_in) or NULL */
    float act_absmax;        /* calibrated max|x| of the (smoothed) input */
    const char *name;        /* "3.down" */
    QLinear **ready;         /* with a stored site: NULL, or a kernel already built from it (taken) */
} SiteIn;

/* ggml's weighted rounding of a site with the diagonal of its H (Σ x² per
 * input column; llama.cpp's imatrix is the same up to the token count). */
static Status imatrix_quantize(const float *W, const SiteIn *in, const QParams *p, QTensor *q, Err *err) {
    if (!in->H) return err_set(err, ST_ERR_ARG, "%s: imatrix needs the calibration's H (--stats)", in->name);
    float *qw = malloc((size_t)in->n_in * sizeof *qw);
    if (!qw) return err_set(err, ST_ERR_NOMEM, "%s: imatrix weights", in->name);
    for (int64_t i = 0; i < in->n_in; i++) qw[i] = (float)in->H[i * in->n_in + i];
    Status st = rtn_quantize_weighted(W, in->n_out, in->n_in, p, qw, q, err);
    free(qw);
    return st;
}

/* Checks a stored site against the entry and the weight's shape. */
static Status stored_check(const PlanEntry *e, const SiteIn *in, const QStoredSite *pre, Err *err) {
    int is_aqlm = e->w.fmt == QF_AQLM || e->method == QM_AQLM;
    if (pre->kind == QSITE_NONE) {
        if (e->w.fmt == QF_F32 && e->act == ACT_NONE) return ST_OK;
        return err_set(err, ST_ERR_MISMATCH, "%s: the stored model has no weights here but the plan quantizes it", in->name);
    }
    if (pre->kind == QSITE_AQLM) {
        const AqlmTensor *a = &pre->a;
        if (!is_aqlm || a->n_out != in->n_out || a->n_in != in->n_in || a->p.M != e->aqlm.M || a->p.B != e->aqlm.B ||
            a->p.g != e->aqlm.g)
            return err_set(err, ST_ERR_MISMATCH, "%s: stored aqlm weights do not match the plan entry or the shape", in->name);
        return ST_OK;
    }
    const QTensor *q = &pre->q;
    int dim_ok = e->method == QM_ADADIM && qformat_traits(e->w.fmt)->needs_scale
                     ? (q->p.dim == GROUP_OC || q->p.dim == GROUP_IC)
                     : (q->p.dim == e->w.dim || !qformat_traits(e->w.fmt)->needs_scale);
    if (is_aqlm || q->n_out != in->n_out || q->n_in != in->n_in || q->p.fmt != e->w.fmt || !dim_ok ||
        (qformat_traits(e->w.fmt)->is_int && (q->p.sym != e->w.sym || q->p.group != e->w.group)))
        return err_set(err, ST_ERR_MISMATCH, "%s: stored %s weights (%lld x %lld) do not match the plan entry or the shape",
                       in->name, qformat_traits(q->p.fmt) ? qformat_traits(q->p.fmt)->name : "?", (long long)q->n_out,
                       (long long)q->n_in);
    return ST_OK;
}

/* The GPTQ factorizations of one layer, shared by the sites that read the
 * same H with the same damp and act_order (q/k/v, gate/up): the factor is a
 * function of those alone, so sharing changes no result. Keys are pointers
 * into H storage that outlives the cache (cleared per layer). */
typedef struct FactorCache {
    int n;
    struct {
        const double *H;
        double damp;
        int act_order;
        GptqFactor *f;
    } e[PROJ_COUNT];
} FactorCache;

static void factor_cache_clear(FactorCache *fc) {
    for (int i = 0; i < fc->n; i++) gptq_factor_free(fc->e[i].f);
    fc->n = 0;
}

/* Returns in *f (owned by fc) the factor of H (n_in, n_in) under o's damp
 * and act_order, building it on first use. */
static Status factor_get(FactorCache *fc, const double *H, int64_t n_in, const GptqOpts *o, Pool *pool,
                         const GptqFactor **f, Err *err) {
    for (int i = 0; i < fc->n; i++)
        if (fc->e[i].H == H && fc->e[i].damp == o->damp && fc->e[i].act_order == o->act_order &&
            gptq_factor_dim(fc->e[i].f) == n_in) {
            *f = fc->e[i].f;
            return ST_OK;
        }
    GptqFactor *nf = NULL;
    Status st = gptq_factor_new(H, NULL, n_in, o, pool, &nf, err);
    if (st) return st;
    ASSERT(fc->n < PROJ_COUNT); /* one new entry per site at most, cleared per layer */
    fc->e[fc->n].H = H;
    fc->e[fc->n].damp = o->damp;
    fc->e[fc->n].act_order = o->act_order;
    fc->e[fc->n].f = nf;
    fc->n++;
    *f = nf;
    return ST_OK;
}

/* Quantizes one site with entry e (or takes `pre`, a stored quantization);
 * *out receives the QLinear (NULL when the entry keeps the model's fp32
 * weights untouched); *dim AdaDim's choice; *rel ‖W - Wq‖ / ‖W‖. With keep,
 * the unpacked weights move into *keep. */
static Status site_build(QModel *qm, const PlanEntry *e, const SiteIn *in, int keep_fp32, const QStoredSite *pre,
                         QStoredSite *keep, FactorCache *fc, Pool *pool, QLinear **out, GroupDim *dim, double *rel,
                         Err *err) {
    *out = NULL;
    *dim = GROUP_TENSOR;
    *rel = 0;
    Status st = ST_OK;
    Err e2;
    err_init(&e2);
    if (pre) {
        if ((st = stored_check(e, in, pre, err))) return st;
        *dim = pre->adadim_dim;
        *rel = pre->rel_err;
        if (pre->kind == QSITE_NONE) return ST_OK;
        if (in->ready && *in->ready) { /* built from these very weights */
            *out = *in->ready;
            *in->ready = NULL;
        } else if (pre->kind == QSITE_AQLM) st = qlinear_aqlm_new(&pre->a, out, &e2);
        else {
            ActQuant aq = qlinear_act_from_plan(e, pre->act_absmax);
            st = qlinear_new_from_qtensor(&pre->q, &aq, out, &e2);
        }
        if (st) return err_set(err, st, "%s: %s", in->name, e2.detail);
        if (e->method == QM_ADADIM && pre->kind == QSITE_QTENSOR)
            return note_add(qm, err, "%s: adadim chose %s (stored)", in->name, pre->q.p.dim == GROUP_IC ? "ic" : "oc");
        return ST_OK;
    }
    if (keep) memset(keep, 0, sizeof *keep);
    if (keep_fp32 && e->w.fmt == QF_F32 && e->act == ACT_NONE) return ST_OK;
    int64_t n = in->n_out * in->n_in;
    float *Wq = NULL, *W_own = NULL;
    const float *W = in->W;
    QTensor q;
    memset(&q, 0, sizeof q);
    AdaDimResult ad;
    memset(&ad, 0, sizeof ad);
    AqlmTensor at;
    memset(&at, 0, sizeof at);
    int is_aqlm = 0;

    if (!W && (st = weight_to_f32(in->src, pool, &W, &W_own, err))) goto fail;
    Wq = malloc((size_t)n * sizeof *Wq);
    if (!Wq) {
        st = err_set(err, ST_ERR_NOMEM, "%s: %lld weights", in->name, (long long)n);
        goto fail;
    }
    if (e->w.fmt == QF_AQLM || e->method == QM_AQLM) {
        is_aqlm = 1;
        if (e->act != ACT_NONE) {
            st = err_set(err, ST_ERR_UNSUPPORTED, "%s: aqlm runs float activations; act must be none", in->name);
            goto fail;
        }
        AqlmOpts ao;
        aqlm_opts_default(&ao);
        st = aqlm_quantize(W, in->n_out, in->n_in, in->H, &e->aqlm, &ao, pool, NULL, &at, NULL, &e2);
        if (st) goto fail_e2;
        aqlm_dequant(&at, Wq);
        st = qlinear_aqlm_new(&at, out, &e2);
        if (st) goto fail_e2;
    } else {
        QParams p = e->w;
        if (e->method == QM_IMATRIX) {
            st = imatrix_quantize(W, in, &p, &q, &e2);
        } else if (!entry_has_scales(e) || e->method == QM_RTN) {
            st = rtn_quantize(W, in->n_out, in->n_in, &p, &q, &e2);
        } else if (e->method == QM_GPTQ) {
            const GptqFactor *f = NULL;
            st = factor_get(fc, in->H, in->n_in, &e->gptq, pool, &f, &e2);
            if (!st) st = gptq_quantize_factored(W, in->n_out, in->n_in, f, &p, &e->gptq, pool, NULL, &q, NULL, &e2);
        } else if (e->method == QM_ADADIM) {
            const GptqFactor *f = NULL;
            if (e->adadim_base == QM_GPTQ) st = factor_get(fc, in->H, in->n_in, &e->gptq, pool, &f, &e2);
            if (!st)
                st = adadim_choose_factored(W, in->n_out, in->n_in, in->H, f, &p,
                                            e->adadim_base == QM_GPTQ ? &e->gptq : NULL, pool, NULL, &ad, &e2);
            if (!st) {
                q = ad.q;
                memset(&ad.q, 0, sizeof ad.q);
                *dim = ad.dim;
                double ref = ad.err_ref > 0 ? ad.err_ref : 1;
                st = note_add(qm, err, "%s: adadim chose %s (output error oc %.3e, ic %.3e relative)", in->name,
                              ad.dim == GROUP_IC ? "ic" : "oc", ad.err_oc / ref, ad.err_ic / ref);
                if (st) goto fail;
            }
        } else {
            st = err_set(&e2, ST_ERR_ARG, "unknown method %d", (int)e->method);
        }
        if (st) goto fail_e2;
        qtensor_dequant(&q, Wq);
        ActQuant aq = qlinear_act_from_plan(e, in->act_absmax);
        st = qlinear_new_from_qtensor(&q, &aq, out, &e2);
        if (st) goto fail_e2;
    }
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)W[i] - (double)Wq[i];
        num += d * d;
        den += (double)W[i] * (double)W[i];
    }
    *rel = den > 0 ? sqrt(num / den) : 0;
    if (keep) {
        keep->kind = is_aqlm ? QSITE_AQLM : QSITE_QTENSOR;
        keep->q = q;
        keep->a = at;
        memset(&q, 0, sizeof q);
        memset(&at, 0, sizeof at);
        keep->act_absmax = in->act_absmax;
        keep->adadim_dim = *dim;
        keep->rel_err = *rel;
    }
    free(Wq);
    weight_f32_free(W_own);
    qtensor_done(&q);
    aqlm_tensor_done(&at);
    return ST_OK;
fail_e2:
    st = err_set(err, e2.code ? e2.code : st, "%s: %s", in->name, e2.detail);
fail:
    free(Wq);
    weight_f32_free(W_own);
    qtensor_done(&q);
    qtensor_done(&ad.q);
    aqlm_tensor_done(&at);
    if (*out) {
        qlinear_free(*out);
        *out = NULL;
    }
    return st;
}

/* === Calibration facts the build reads (NULL / 0 where cs or h lacks them) === */

/* max|x| per input channel of (layer, tap), width values in *width; borrowed from cs. */
static const float *stats_ch_absmax(const CalibStats *cs, int64_t layer, TapPoint tap, int64_t *width) {
    if (!cs || layer < 0 || layer >= cs->n_layers || tap < 0 || tap >= TAP_COUNT) return NULL;
    const TapStats *ts = calib_tap(cs, layer, tap);
    if (width) *width = ts->width;
    return ts->ch_absmax;
}

/* The whole-tensor max|x| of (layer, tap). */
static float stats_absmax(const CalibStats *cs, int64_t layer, TapPoint tap) {
    if (!cs || layer < 0 || layer >= cs->n_layers || tap < 0 || tap >= TAP_COUNT) return 0.0f;
    return calib_tap(cs, layer, tap)->absmax;
}

/* The float64 H of (layer, tap) in *out (NULL without h), borrowed from h's
 * one-layer-per-tap cache (analysis/hstore.h hstore_get_f64). */
static Status stats_h(const HStore *h, int64_t layer, TapPoint tap, const double **out, Err *err) {
    *out = NULL;
    if (!h || layer < 0 || layer >= h->n_layers || (int)tap < 0 || (int)tap >= HSTORE_TAPS) return ST_OK;
    return hstore_get_f64(h, layer, (int)tap, out, err);
}

/* === Output errors of entries, as the build quantizes them === */

typedef struct OerrCtx {
    const PlanEntry *es;
    const double *H;         /* (n_in, n_in) */
    const GptqFactor **f;    /* per entry (gptq) */
    Pool *pool;
} OerrCtx;

static Status oerr_quant(void *user, int k, const float *W, int64_t no, int64_t ni, float *Wq, Err *err) {
    const OerrCtx *c = user;
    const PlanEntry *e = &c->es[k];
    QParams p = e->w;
    QTensor q;
    memset(&q, 0, sizeof q);
    Status st;
    if (e->method == QM_GPTQ && entry_has_scales(e)) {
        st = gptq_quantize_factored(W, no, ni, c->f[k], &p, &e->gptq, c->pool, NULL, &q, NULL, err);
    } else if (e->method == QM_IMATRIX) {
        SiteIn in = {.n_out = no, .n_in = ni, .H = c->H, .name = "oerr"};
        st = imatrix_quantize(W, &in, &p, &q, err);
    } else {
        return rtn_fake_quantize(W, no, ni, &p, Wq, err);
    }
    if (!st) qtensor_dequant(&q, Wq);
    qtensor_done(&q);
    return st;
}

Status qmodel_site_oerr(const Model *m, const struct HStore *h, int64_t layer, int proj, const PlanEntry *es, int n,
                        int64_t max_rows, Pool *pool, double *oerr, Err *err) {
    if (!h) return err_set(err, ST_ERR_ARG, "output errors need H (the stats file's .h64)");
    if (layer < 0 || layer >= m->cfg.n_layers || proj < 0 || proj >= PROJ_COUNT)
        return err_set(err, ST_ERR_ARG, "output errors: no site layer %lld proj %d", (long long)layer, proj);
    int64_t ni = m->layers[layer].proj[proj].n_in;
    for (int k = 0; k < n; k++) {
        const PlanEntry *e = &es[k];
        const QFormatTraits *t = qformat_traits(e->w.fmt);
        int rows_ok = t && (t->family == QFAM_GGML || !t->needs_scale ||
                            (e->w.dim == GROUP_OC && (t->is_int || e->method == QM_RTN)));
        int meth_ok = e->method == QM_RTN || e->method == QM_GPTQ || (e->method == QM_IMATRIX && t &&
                                                                       t->family == QFAM_GGML);
        if (!rows_ok || !meth_ok || e->act != ACT_NONE)
            return err_set(err, ST_ERR_ARG, "output error of %s %s: only row-wise entries (ggml blocks, OC scales) "
                           "with rtn, gptq or imatrix and no activation format", t ? t->name : "?",
                           qmethod_name(e->method));
    }
    const double *H = NULL;
    Status st = stats_h(h, layer, proj_tap((Proj)proj), &H, err);
    if (st) return st;
    if (!H) return err_set(err, ST_ERR_ARG, "output errors: no H for layer %lld", (long long)layer);
    const GptqFactor **f = calloc((size_t)(n > 0 ? n : 1), sizeof *f);
    FactorCache fc = {0};
    if (!f) return err_set(err, ST_ERR_NOMEM, "output errors");
    for (int k = 0; k < n && !st; k++) {
        if (es[k].method != QM_GPTQ || !entry_has_scales(&es[k])) continue;
        /* entries with other damp / act_order than the cache's PROJ_COUNT slots build their own */
        int have = 0;
        for (int i = 0; i < fc.n; i++)
            if (fc.e[i].damp == es[k].gptq.damp && fc.e[i].act_order == es[k].gptq.act_order) have = 1;
        if (!have && fc.n >= PROJ_COUNT) {
            st = err_set(err, ST_ERR_ARG, "output errors: more than %d GPTQ settings on one site", PROJ_COUNT);
            break;
        }
        st = factor_get(&fc, H, ni, &es[k].gptq, pool, &f[k], err);
    }
    OerrCtx c = {.es = es, .H = H, .f = f, .pool = pool};
    if (!st) st = sens_site_errors_fn(m, h, layer, proj, n, max_rows, oerr_quant, &c, pool, NULL, oerr, err);
    factor_cache_clear(&fc);
    free(f);
    return st;
}

/* === SmoothQuant for one norm group === */

/* Smooths the projections `projs` (sharing one norm, input tap `tap`) of
 * layer l with alpha: writes the new gain into *gain_out (owned) and the
 * scaled weights into ws[k] (owned, one per proj), the smoothed H into *h_out
 * (owned; NULL when H is NULL) and the input's new max|x| into *absmax. */
static Status smooth_group(const Model *m, const CalibStats *cs, int64_t l, const int *projs, int np,
                           TapPoint tap, float alpha, const float *gain, const double *H, float **gain_out,
                           float **ws, double **h_out, float *absmax, float srange[2], Err *err) {
    int64_t width = 0;
    const float *amax = stats_ch_absmax(cs, l, tap, &width);
    int64_t dim = m->cfg.dim;
    float *s = NULL;
    Status st;
    if (!amax || width != dim) return err_set(err, ST_ERR_MISMATCH, "layer %lld %s: no activation maxima of width %lld",
                                              (long long)l, tap_name(tap), (long long)dim);
    const float *W[4];
    float *W_own[4] = {NULL, NULL, NULL, NULL};
    int64_t n_out[4];
    for (int k = 0; k < np; k++) {
        const Weight *w = &m->layers[l].proj[projs[k]];
        n_out[k] = w->n_out;
        ws[k] = malloc((size_t)(w->n_out * dim) * sizeof(float));
        if (!ws[k]) {
            st = err_set(err, ST_ERR_NOMEM, "smoothquant weights");
            goto fail;
        }
        if ((st = weight_to_f32(w, NULL, &W[k], &W_own[k], err))) goto fail;
    }
    s = malloc((size_t)dim * sizeof *s);
    *gain_out = malloc((size_t)dim * sizeof **gain_out);
    if (!s || !*gain_out) {
        st = err_set(err, ST_ERR_NOMEM, "smoothquant scales");
        goto fail;
    }
    st = smooth_scales(amax, W, n_out, np, dim, alpha, s, err);
    if (!st) st = smooth_apply(gain, W, n_out, np, dim, s, *gain_out, ws, err);
    for (int k = 0; k < np; k++) {
        weight_f32_free(W_own[k]);
        W_own[k] = NULL;
    }
    if (st) goto fail;
    float mx = 0;
    srange[0] = INFINITY;
    srange[1] = 0;
    for (int64_t j = 0; j < dim; j++) {
        float v = amax[j] / s[j];
        if (v > mx) mx = v;
        if (s[j] < srange[0]) srange[0] = s[j];
        if (s[j] > srange[1]) srange[1] = s[j];
    }
    *absmax = mx;
    *h_out = NULL;
    if (H) {
        /* x' = x / s, so H' = diag(1/s) H diag(1/s). */
        double *h = malloc((size_t)(dim * dim) * sizeof *h);
        if (!h) {
            free(s);
            return err_set(err, ST_ERR_NOMEM, "smoothed H");
        }
        for (int64_t i = 0; i < dim; i++)
            for (int64_t j = 0; j < dim; j++) h[i * dim + j] = H[i * dim + j] / ((double)s[i] * (double)s[j]);
        *h_out = h;
    }
    free(s);
    return ST_OK;
fail: /* ws[k] and *gain_out stay with the caller, which frees them */
    for (int k = 0; k < np; k++) weight_f32_free(W_own[k]);
    free(s);
    return st;
}

/* === Build === */

void qstored_free(QStored *s) {
    if (!s) return;
    if (s->sites)
        for (int64_t i = 0; i < s->n_layers * PROJ_COUNT + 2; i++) {
            qtensor_done(&s->sites[i].q);
            aqlm_tensor_done(&s->sites[i].a);
        }
    free(s->sites);
    free(s->attn_norm);
    free(s->ffn_norm);
    free(s->smoothed);
    free(s);
}

void qmodel_free(QModel *qm) {
    if (!qm) return;
    qstored_free(qm->stored);
    if (qm->lin)
        for (int64_t i = 0; i < qm->n_layers * PROJ_COUNT; i++) qlinear_free(qm->lin[i]);
    free(qm->lin);
    if (qm->attn_norm)
        for (int64_t l = 0; l < qm->n_layers; l++) free(qm->attn_norm[l]);
    if (qm->ffn_norm)
        for (int64_t l = 0; l < qm->n_layers; l++) free(qm->ffn_norm[l]);
    free(qm->attn_norm);
    free(qm->ffn_norm);
    qlinear_free(qm->output);
    free(qm->embd);
    free(qm->adadim_dim);
    free(qm->site_rel_err);
    free(qm->site_seconds);
    free(qm->note_key);
    for (int64_t i = 0; i < qm->n_notes; i++) free(qm->notes[i]);
    free(qm->notes);
    plan_resolved_done(&qm->res);
    free(qm->layers);
    free(qm);
}

Status qmodel_from_model(const Model *base, const Model *q, QModel **out, Err *err) {
    *out = NULL;
    const ModelConfig *a = &base->cfg, *b = &q->cfg;
#define QFM_SAME(f)                                                                                                  \
    if (a->f != b->f)                                                                                                \
        return err_set(err, ST_ERR_MISMATCH, "%s: " #f " %lld, the base model's is %lld", q->path, (long long)b->f,   \
                       (long long)a->f);
    QFM_SAME(dim) QFM_SAME(hidden_dim) QFM_SAME(n_layers) QFM_SAME(n_heads) QFM_SAME(n_kv_heads) QFM_SAME(head_dim)
    QFM_SAME(vocab_size) QFM_SAME(tied_embeddings)
#undef QFM_SAME
    if (strcmp(a->arch, b->arch) || a->rope_style != b->rope_style || a->rope_theta != b->rope_theta)
        return err_set(err, ST_ERR_MISMATCH, "%s: architecture %s (rope %d, theta %g), the base model's is %s (rope %d, "
                       "theta %g)", q->path, b->arch, (int)b->rope_style, (double)b->rope_theta, a->arch,
                       (int)a->rope_style, (double)a->rope_theta);
    QModel *qm = calloc(1, sizeof *qm);
    if (!qm) return err_set(err, ST_ERR_NOMEM, "qmodel");
    Status st = ST_OK;
    int64_t L = a->n_layers;
    qm->model = *base;
    qm->n_layers = L;
    if (!(qm->layers = calloc((size_t)(L > 0 ? L : 1), sizeof *qm->layers))) {
        st = err_set(err, ST_ERR_NOMEM, "qmodel layers");
        goto fail;
    }
    /* ggml type -> matrices of it, for the note */
    int64_t n_of[GGML_TYPE_LIMIT] = {0};
    for (int64_t l = 0; l < L; l++) {
        qm->layers[l] = q->layers[l];
        for (int pj = 0; pj < PROJ_COUNT; pj++) {
            const Weight *wa = &base->layers[l].proj[pj], *wb = &q->layers[l].proj[pj];
            if (wa->n_out != wb->n_out || wa->n_in != wb->n_in) {
                st = err_set(err, ST_ERR_MISMATCH, "%s: layer %lld %s is (%lld, %lld), the base model's (%lld, %lld)",
                             q->path, (long long)l, proj_name((Proj)pj), (long long)wb->n_out, (long long)wb->n_in,
                             (long long)wa->n_out, (long long)wa->n_in);
                goto fail;
            }
            if (wb->type < GGML_TYPE_LIMIT) n_of[wb->type]++;
            qm->params += wb->n_out * wb->n_in;
            qm->bytes += weight_bytes(wb);
        }
    }
    qm->model.layers = qm->layers;
    qm->model.tok_embd = q->tok_embd;
    qm->model.output = q->output;
    qm->model.out_norm = q->out_norm;
    qm->model.rope_freqs = q->rope_freqs;
    qm->model.path = q->path;
    qm->model.tensors = q->tensors;
    qm->model.n_tensors = q->n_tensors;
    qm->params += q->tok_embd.n_out * q->tok_embd.n_in;
    qm->bytes += weight_bytes(&q->tok_embd);
    if (q->tok_embd.type < GGML_TYPE_LIMIT) n_of[q->tok_embd.type]++;
    if (!b->tied_embeddings) {
        qm->params += q->output.n_out * q->output.n_in;
        qm->bytes += weight_bytes(&q->output);
        if (q->output.type < GGML_TYPE_LIMIT) n_of[q->output.type]++;
    }
    qm->bits = (int64_t)qm->bytes * 8;
    qm->bpw = qm->params ? (double)qm->bits / (double)qm->params : 0;
    qm->kernel_bytes = qm->bytes;
    char types[256] = "";
    size_t used = 0;
    for (int t = 0; t < GGML_TYPE_LIMIT; t++) {
        const GgmlTypeTraits *tt = ggml_type_traits((uint32_t)t);
        if (n_of[t] && used < sizeof types)
            used += (size_t)snprintf(types + used, sizeof types - used, "%s%s x%lld", used ? ", " : "",
                                     tt ? tt->name : "?", (long long)n_of[t]);
    }
    if ((st = note_add(qm, err, "weights from %s: %s (decoded as ggml dequantizes them)", q->path, types))) goto fail;
    *out = qm;
    return ST_OK;
fail:
    qmodel_free(qm);
    return st;
}

/* Quantizes the embedding table (lookup: kept as dequantized floats) and the
 * output head. Methods other than rtn need the head's input H, which
 * calibration does not collect: those fall back to rtn with a note. pre /
 * keep: the stored sites of the head and the embedding, or NULL. */
static Status build_ends(QModel *qm, const Model *m, const QStored *pre, QStored *keep, Pool *pool, Err *err) {
    const ModelConfig *c = &m->cfg;
    int64_t ns = c->n_layers * PROJ_COUNT;
    Status st;
    PlanEntry ee = qm->res.embed.e, oe = qm->res.output.e;
    if (ee.method != QM_RTN && (entry_has_scales(&ee) || ee.method == QM_IMATRIX) && ee.w.fmt != QF_AQLM) {
        if ((st = note_add(qm, err, "embed: %s -> rtn (an embedding lookup has no input statistics)",
                           qmethod_name(ee.method))))
            return st;
        ee.method = QM_RTN;
    }
    if (ee.w.fmt == QF_AQLM) return err_set(err, ST_ERR_UNSUPPORTED, "embed entry: aqlm embeddings are not supported");
    if (ee.w.fmt != QF_F32) {
        int64_t n = c->vocab_size * c->dim;
        qm->embd = malloc((size_t)n * sizeof *qm->embd);
        if (!qm->embd) return err_set(err, ST_ERR_NOMEM, "embedding copy");
        Err e2;
        err_init(&e2);
        QTensor q;
        memset(&q, 0, sizeof q);
        const QTensor *src = &q;
        if (pre) {
            const QStoredSite *ps = &pre->sites[ns + 1];
            if (ps->kind != QSITE_QTENSOR || ps->q.p.fmt != ee.w.fmt || ps->q.n_out != c->vocab_size || ps->q.n_in != c->dim)
                return err_set(err, ST_ERR_MISMATCH, "embed: the stored embedding does not match the plan entry or the shape");
            src = &ps->q;
        } else {
            const float *E = NULL;
            float *E_own = NULL;
            if ((st = weight_to_f32(&m->tok_embd, pool, &E, &E_own, err))) return st;
            st = rtn_quantize(E, c->vocab_size, c->dim, &ee.w, &q, &e2);
            weight_f32_free(E_own);
            if (st) return err_set(err, st, "embed: %s", e2.detail);
        }
        qtensor_dequant(src, qm->embd);
        if (!c->tied_embeddings) weight_release(&m->tok_embd); /* the lookups read qm->embd from here on */
        if (keep) {
            keep->sites[ns + 1].kind = QSITE_QTENSOR;
            keep->sites[ns + 1].q = q;
        } else {
            qtensor_done(&q);
        }
        qm->model.tok_embd = weight_from_f32(qm->embd, c->vocab_size, c->dim);
    }
    if (oe.method != QM_RTN && (entry_has_scales(&oe) || oe.method == QM_IMATRIX)) {
        if ((st = note_add(qm, err, "output: %s -> rtn (calibration collects no H for the head's input)",
                           oe.w.fmt == QF_AQLM ? "aqlm" : qmethod_name(oe.method))))
            return st;
        if (oe.w.fmt == QF_AQLM) return err_set(err, ST_ERR_UNSUPPORTED, "output entry: aqlm head is not supported");
        oe.method = QM_RTN;
    }
    SiteIn in = {.W = NULL, .src = &m->output, .n_out = m->output.n_out, .n_in = m->output.n_in, .H = NULL, .name = "output"};
    if (oe.act != ACT_NONE && oe.act_scale == ACT_STATIC) {
        if ((st = note_add(qm, err, "output: static activation scale -> dynamic (no calibration of the head's input)")))
            return st;
        oe.act_scale = ACT_DYNAMIC;
    }
    GroupDim d;
    double rel;
    FactorCache fc = {0};
    st = site_build(qm, &oe, &in, 1, pre ? &pre->sites[ns] : NULL, keep ? &keep->sites[ns] : NULL, &fc, pool,
                    &qm->output, &d, &rel, err);
    factor_cache_clear(&fc);
    if (!st && qm->output && !(c->tied_embeddings && !qm->embd)) weight_release(&m->output);
    return st;
}

static QStored *stored_new(const Model *m) {
    QStored *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->fingerprint = m->fingerprint;
    s->n_layers = m->cfg.n_layers;
    s->dim = m->cfg.dim;
    s->vocab = m->cfg.vocab_size;
    s->sites = calloc((size_t)(s->n_layers * PROJ_COUNT + 2), sizeof *s->sites);
    s->smoothed = calloc((size_t)(s->n_layers * 2), 1);
    if (!s->sites || !s->smoothed) {
        qstored_free(s);
        return NULL;
    }
    return s;
}

/* Copies the replaced gains into the stored form (after the build). */
static Status stored_gains(QModel *qm, Err *err) {
    QStored *s = qm->stored;
    int64_t L = s->n_layers, dim = s->dim;
    for (int64_t l = 0; l < L; l++)
        for (int g = 0; g < 2; g++) {
            const float *src = g ? qm->ffn_norm[l] : qm->attn_norm[l];
            if (!src) continue;
            float **dst = g ? &s->ffn_norm : &s->attn_norm;
            if (!*dst && !(*dst = calloc((size_t)(L * dim), sizeof **dst)))
                return err_set(err, ST_ERR_NOMEM, "stored gains");
            memcpy(*dst + l * dim, src, (size_t)dim * sizeof *src);
            s->smoothed[l * 2 + g] = 1;
        }
    return ST_OK;
}

/* Refuses a stored model made from another model, and a plan whose methods
 * need calibration the caller did not give. */
static Status build_check(const Model *m, const Plan *p, const PlanModel *pm, const CalibStats *cs, const HStore *hs,
                          const QStored *pre, Err *err) {
    const ModelConfig *c = &m->cfg;
    const char *what = NULL;
    if (pre && (pre->fingerprint != m->fingerprint || pre->n_layers != c->n_layers || pre->dim != c->dim ||
                pre->vocab != c->vocab_size))
        return err_set(err, ST_ERR_MISMATCH, "the stored quantized model was made from another model (fingerprint %016llx, %s has %016llx)",
                       (unsigned long long)pre->fingerprint, m->path ? m->path : "the model",
                       (unsigned long long)m->fingerprint);
    if (!pre && qmodel_plan_needs_stats(p, pm, &what)) {
        int need_h = !strcmp(what, "H");
        if (!cs || (need_h && !hs))
            return err_set(err, ST_ERR_ARG, "plan '%s' needs calibration statistics (%s): pass --stats STATS from `qscope calib`%s",
                           p->name[0] ? p->name : "(unnamed)", what,
                           cs && need_h ? " (run without --no-h: this stats file has no H)" : "");
    }
    return ST_OK;
}

/* Size: exact plan accounting with AdaDim's choices, and the kernels' bytes. */
static Status build_size(QModel *qm, const Plan *p, const PlanModel *pm, int64_t ns, Err *err) {
    PlanSizeOpts so = {.aqlm_bits = NULL, .adadim_dims = qm->adadim_dim};
    PlanSize sz;
    Status st = plan_size(p, pm, &so, &sz, err);
    if (st) return st;
    qm->params = sz.all_params;
    qm->bits = sz.all_bits;
    qm->bytes = sz.all_bytes;
    qm->bpw = sz.bpw_all;
    for (int64_t i = 0; i < ns; i++)
        if (qm->lin[i]) qm->kernel_bytes += qm->lin[i]->ops->bytes(qm->lin[i]);
    if (qm->output) qm->kernel_bytes += qm->output->ops->bytes(qm->output);
    return ST_OK;
}

/* The note that says which kernels run, with their counts. */
static Status note_kernels(QModel *qm, int64_t ns, Err *err) {
    const char *names[16];
    int64_t counts[16];
    int nk = 0;
    for (int64_t i = 0; i < ns; i++) {
        const char *k = qm->lin[i] ? qlinear_kernel_name(qm->lin[i]) : "model-f32";
        if (qm->lin[i] && qlinear_is_aqlm(qm->lin[i])) k = qlinear_aqlm_kernel(qm->lin[i]);
        int j;
        for (j = 0; j < nk; j++)
            if (!strcmp(names[j], k)) break;
        if (j == nk && nk < 16) {
            names[nk] = k;
            counts[nk++] = 0;
        }
        if (j < 16) counts[j]++;
    }
    char buf[256];
    size_t o = 0;
    for (int j = 0; j < nk && o < sizeof buf; j++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s x%lld", j ? ", " : "", names[j], (long long)counts[j]);
    return note_add(qm, err, "kernels: %s; head %s", buf, qm->output ? qlinear_kernel_name(qm->output) : "model-f32");
}

/* One layer's working state while its sites are built: SmoothQuant's
 * scaled weights and their input max|x|, the H each projection reads
 * (hown: the smoothed groups' own), and GPTQ's factor cache. */
typedef struct LayerWork {
    float *ws[PROJ_COUNT];         /* smoothed (n_out, n_in) weights, or NULL: the model's */
    float absmax_s[PROJ_COUNT];
    const double *hsite[PROJ_COUNT];
    double *hown[2];               /* qkv, gate_up */
    FactorCache fc;
} LayerWork;

static void layer_work_done(LayerWork *w) {
    factor_cache_clear(&w->fc); /* before hown: its pointers are the keys */
    free(w->hown[0]);
    free(w->hown[1]);
    for (int pj = 0; pj < PROJ_COUNT; pj++) free(w->ws[pj]);
    memset(w, 0, sizeof *w);
}

/* qm's per-site arrays, the stored model when kept, the resolved plan and
 * the plan's notes. */
static Status build_alloc(QModel *qm, const Model *m, const Plan *p, const PlanModel *pm, int keep, Err *err) {
    int64_t L = m->cfg.n_layers, ns = L * PROJ_COUNT;
    qm->model = *m;
    qm->n_layers = L;
    if (keep && !(qm->stored = stored_new(m))) return err_set(err, ST_ERR_NOMEM, "stored quantized model");
    Status st = plan_resolve(p, pm, &qm->res, err);
    if (st) return st;
    qm->lin = calloc((size_t)ns, sizeof *qm->lin);
    qm->attn_norm = calloc((size_t)L, sizeof *qm->attn_norm);
    qm->ffn_norm = calloc((size_t)L, sizeof *qm->ffn_norm);
    qm->adadim_dim = calloc((size_t)ns, sizeof *qm->adadim_dim);
    qm->site_rel_err = calloc((size_t)ns, sizeof *qm->site_rel_err);
    qm->site_seconds = calloc((size_t)ns, sizeof *qm->site_seconds);
    if (!qm->lin || !qm->attn_norm || !qm->ffn_norm || !qm->adadim_dim || !qm->site_rel_err || !qm->site_seconds)
        return err_set(err, ST_ERR_NOMEM, "qmodel arrays");
    for (int64_t i = 0; i < p->n_notes; i++)
        if ((st = note_add(qm, err, "%s", p->notes[i]))) return st;
    return ST_OK;
}

/* Layer l's norm groups (qkv, gate_up): loads H where a method reads it and
 * applies SmoothQuant where the plan asks (the stored gains with a stored
 * model), into w and qm's norm gains and notes. */
static Status build_smooth(QModel *qm, const Model *m, const CalibStats *cs, const HStore *hs, const QStored *pre,
                           const uint8_t *only, int64_t l, LayerWork *w, Err *err) {
    static const int QKV[3] = {PROJ_Q, PROJ_K, PROJ_V}, GU[2] = {PROJ_GATE, PROJ_UP};
    const ModelConfig *c = &m->cfg;
    Status st;
    for (int g = 0; g < 2; g++) {
        const int *projs = g ? GU : QKV;
        int np = g ? 2 : 3;
        TapPoint tap = g ? TAP_GATE_UP : TAP_QKV;
        const PlanEntry *e0 = &qm->res.lin[l * PROJ_COUNT + projs[0]].e;
        if (only && !only[l * PROJ_COUNT + projs[0]]) continue; /* a part build takes a norm group whole */
        /* H is loaded (and its checksum verified) only where a method reads it. */
        int want_h = e0->smooth_alpha > 0;
        for (int k = 0; k < np; k++) want_h |= entry_needs_h(&qm->res.lin[l * PROJ_COUNT + projs[k]].e);
        const double *H = NULL;
        if (want_h && (st = stats_h(hs, l, tap, &H, err))) return st;
        for (int k = 0; k < np; k++) w->hsite[projs[k]] = H;
        if (!(e0->smooth_alpha > 0)) continue;
        if (pre) {
            /* the stored weights are already smoothed: take the stored gains */
            const float *sg = g ? pre->ffn_norm : pre->attn_norm;
            if (!pre->smoothed[l * 2 + g] || !sg)
                return err_set(err, ST_ERR_MISMATCH,
                               "layer %lld: the plan smooths %s but the stored model has no gains for it", (long long)l,
                               g ? "gate_up" : "qkv");
            float *gain = malloc((size_t)c->dim * sizeof *gain);
            if (!gain) return err_set(err, ST_ERR_NOMEM, "gains");
            memcpy(gain, sg + l * c->dim, (size_t)c->dim * sizeof *gain);
            if (g) qm->ffn_norm[l] = gain;
            else qm->attn_norm[l] = gain;
            continue;
        }
        float *gain = NULL, *wk[3] = {NULL, NULL, NULL};
        float sr[2] = {0, 0};
        float amx = 0;
        st = smooth_group(m, cs, l, projs, np, tap, e0->smooth_alpha, g ? m->layers[l].ffn_norm : m->layers[l].attn_norm,
                          H, &gain, wk, &w->hown[g], &amx, sr, err);
        if (g) qm->ffn_norm[l] = gain;
        else qm->attn_norm[l] = gain;
        for (int k = 0; k < np; k++) {
            w->ws[projs[k]] = wk[k];
            w->absmax_s[projs[k]] = amx;
            if (w->hown[g]) w->hsite[projs[k]] = w->hown[g];
        }
        if (st) return st;
        int64_t n0 = qm->n_notes;
        st = note_add(qm, err, "%lld.%s: smoothquant alpha %.2f, s in [%.3g, %.3g], input max|x| %.3g -> %.3g",
                      (long long)l, g ? "gate_up" : "qkv", e0->smooth_alpha, sr[0], sr[1], stats_absmax(cs, l, tap),
                      amx);
        if (!st) st = note_keys(qm, n0, l * QMODEL_NOTE_SLOTS + g, err);
        if (st) return st;
    }
    return ST_OK;
}

/* Layer l's seven projections (those of `only`), each quantized by its
 * plan entry; a site's file pages are dropped once it is built. */
static Status build_projs(QModel *qm, const Model *m, const CalibStats *cs, const HStore *hs, const QStored *pre,
                          QLinear **ready, int keep, const uint8_t *only, int64_t l, LayerWork *w, Pool *pool,
                          Progress *prog, Err *err) {
    Status st = ST_OK;
    for (int pj = 0; pj < PROJ_COUNT && !st; pj++) {
        int64_t i = l * PROJ_COUNT + pj;
        if (only && !only[i]) continue;
        const PlanEntry *e = &qm->res.lin[i].e;
        const Weight *wt = &m->layers[l].proj[pj];
        TapPoint tap = proj_tap((Proj)pj);
        char name[32];
        snprintf(name, sizeof name, "%lld.%s", (long long)l, proj_name((Proj)pj));
        const double *Hs = w->hsite[pj];
        if (!Hs && entry_needs_h(e) && (st = stats_h(hs, l, tap, &Hs, err))) break;
        SiteIn in = {.W = w->ws[pj], .src = wt, .n_out = wt->n_out, .n_in = wt->n_in,
                     .H = Hs,
                     .act_absmax = w->ws[pj] ? w->absmax_s[pj] : stats_absmax(cs, l, tap), .name = name,
                     .ready = ready ? &ready[i] : NULL};
        if (progress_cancelled(prog)) {
            st = err_set(err, ST_ERR_CANCELLED, "quantization cancelled at %s", name);
            break;
        }
        int smoothed = w->ws[pj] != NULL || (pre && pre->smoothed[l * 2 + (pj >= PROJ_GATE)] && pj != PROJ_O &&
                                             pj != PROJ_DOWN);
        double ts = clock_now();
        int64_t n0 = qm->n_notes;
        st = site_build(qm, e, &in, !smoothed, pre ? &pre->sites[i] : NULL, keep ? &qm->stored->sites[i] : NULL,
                        &w->fc, pool, &qm->lin[i], &qm->adadim_dim[i], &qm->site_rel_err[i], err);
        qm->site_seconds[i] = clock_now() - ts;
        if (!st) st = note_keys(qm, n0, l * QMODEL_NOTE_SLOTS + 2 + pj, err);
        /* The quantized model never reads this weight again: drop its file
         * pages, so only the layer being quantized stays resident. */
        if (!st && qm->lin[i]) weight_release(wt);
        progress_add(prog, 1);
    }
    return st;
}

/* only: NULL, or (n_layers * 7 + 2) flags: quantize just those sites
 * (qmodel_build_part). ready: NULL, or with pre the kernels already built
 * (qmodel_build_stored_ready). */
static Status build(const Model *m, const Plan *p, const QModelStats *stats, const QStored *pre, QLinear **ready,
                    int keep, const uint8_t *only, Pool *pool, Progress *prog, QModel **out, Err *err) {
    *out = NULL;
    double t0 = clock_now();
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    Status st = plan_validate(p, &pm, err);
    if (st) return st;
    const CalibStats *cs = stats ? stats->cs : NULL;
    const HStore *hs = stats ? stats->h : NULL;
    if ((st = build_check(m, p, &pm, cs, hs, pre, err))) return st;

    QModel *qm = calloc(1, sizeof *qm);
    if (!qm) return err_set(err, ST_ERR_NOMEM, "qmodel");
    int64_t L = m->cfg.n_layers, ns = L * PROJ_COUNT;
    if ((st = build_alloc(qm, m, p, &pm, keep, err))) goto fail;

    int64_t n_steps = ns + 1;
    if (only) {
        n_steps = 1;
        for (int64_t i = 0; i < ns; i++) n_steps += only[i] != 0;
    }
    progress_begin(prog, "quantize", n_steps);
    for (int64_t l = 0; l < L; l++) {
        if (only) {
            int any = 0;
            for (int pj = 0; pj < PROJ_COUNT; pj++) any |= only[l * PROJ_COUNT + pj];
            if (!any) continue;
        }
        /* SmoothQuant per norm group, then every projection. */
        LayerWork w = {0};
        st = build_smooth(qm, m, cs, hs, pre, only, l, &w, err);
        if (!st) st = build_projs(qm, m, cs, hs, pre, ready, keep, only, l, &w, pool, prog, err);
        layer_work_done(&w);
        if (st) goto fail;
    }
    hstore_cache_drop(hs); /* the last layer's H: nothing below reads it */
    if ((!only || only[ns] || only[ns + 1]) && (st = build_ends(qm, m, pre, keep ? qm->stored : NULL, pool, err)))
        goto fail;
    if (keep && (st = stored_gains(qm, err))) goto fail;
    if ((st = note_keys(qm, qm->n_notes, -1, err))) goto fail;
    progress_add(prog, 1);

    if ((st = build_size(qm, p, &pm, ns, err))) goto fail;
    if ((st = note_kernels(qm, ns, err))) goto fail;

    qm->ov.lin = (const QLinear *const *)qm->lin;
    qm->ov.attn_norm = (const float *const *)qm->attn_norm;
    qm->ov.ffn_norm = (const float *const *)qm->ffn_norm;
    qm->ov.output = qm->output;
    qm->seconds = clock_now() - t0;
    *out = qm;
    return ST_OK;
fail:
    qmodel_free(qm);
    return st;
}

Status qmodel_build(const Model *m, const Plan *p, const QModelStats *st, Pool *pool, Progress *prog, QModel **out,
                    Err *err) {
    return build(m, p, st, NULL, NULL, 0, NULL, pool, prog, out, err);
}

Status qmodel_build_keep(const Model *m, const Plan *p, const QModelStats *st, Pool *pool, Progress *prog,
                         QModel **out, Err *err) {
    return build(m, p, st, NULL, NULL, 1, NULL, pool, prog, out, err);
}

Status qmodel_build_part(const Model *m, const Plan *p, const QModelStats *st, const uint8_t *only, Pool *pool,
                         Progress *prog, QModel **out, Err *err) {
    return build(m, p, st, NULL, NULL, 1, only, pool, prog, out, err);
}

Status qmodel_build_stored(const Model *m, const Plan *p, const QStored *st, Pool *pool, Progress *prog,
                           QModel **out, Err *err) {
    return build(m, p, NULL, st, NULL, 0, NULL, pool, prog, out, err);
}

Status qmodel_build_stored_ready(const Model *m, const Plan *p, const QStored *st, QLinear **ready, Pool *pool,
                                 Progress *prog, QModel **out, Err *err) {
    return build(m, p, NULL, st, ready, 0, NULL, pool, prog, out, err);
}
