#include "analysis/sensitivity.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/assert.h"
#include "kernels/f32gemm.h"
#include "kernels/sgemm.h"
#include "quant/ggml_type.h"
#include "quant/qtensor.h"
#include "quant/rtn.h"

/* The candidates are the formats whose traits give them a map position
 * (quant/format.c); their count is part of the stats file layout. */
static QFormat sens_fmts[SENS_NFMT];
static pthread_once_t sens_once = PTHREAD_ONCE_INIT;

static void sens_init(void) {
    int n = qformat_list(QLIST_SENS, sens_fmts, SENS_NFMT);
    ASSERT(n == SENS_NFMT);
}
static const char *const sens_group_names[SG_COUNT] = {"tensor", "oc", "ic", "oc-g", "ic-g", "blk"};

int sens_cell_applies(int fmt, SensGroup g) {
    const QFormatTraits *t = qformat_traits(sens_fmt(fmt));
    if (fmt < 0 || fmt >= SENS_NFMT || (unsigned)g >= SG_COUNT) return 0;
    return (t->family == QFAM_GGML) == (g == SG_BLOCK);
}

int sens_fmt_cells(int fmt) {
    int n = 0;
    for (int g = 0; g < SG_COUNT; g++) n += sens_cell_applies(fmt, (SensGroup)g);
    return n;
}

QFormat sens_fmt(int i) {
    pthread_once(&sens_once, sens_init);
    return (i >= 0 && i < SENS_NFMT) ? sens_fmts[i] : QF_F32;
}

int sens_fmt_index(QFormat f) {
    pthread_once(&sens_once, sens_init);
    for (int i = 0; i < SENS_NFMT; i++)
        if (sens_fmts[i] == f) return i;
    return -1;
}

const char *sens_group_name(SensGroup g) { return (unsigned)g < SG_COUNT ? sens_group_names[g] : "?"; }

GroupDim sens_group_dim(SensGroup g) {
    switch (g) {
    case SG_OC: case SG_OC_G: case SG_BLOCK: return GROUP_OC;
    case SG_IC: case SG_IC_G: return GROUP_IC;
    default: return GROUP_TENSOR;
    }
}

int64_t sens_group_size(int64_t n, int64_t g) {
    for (int64_t d = (g / 4) * 4; d >= 4; d -= 4)
        if (n % d == 0) return d;
    return 0;
}

int sens_cell_params(int fmt, SensGroup g, int64_t n_out, int64_t n_in, int64_t group, QParams *qp) {
    if (!sens_cell_applies(fmt, g)) return 0;
    QParams q = {.fmt = sens_fmt(fmt), .sym = 1, .dim = sens_group_dim(g), .group = 0};
    if (g == SG_OC_G) q.group = sens_group_size(n_in, group);
    if (g == SG_IC_G) q.group = sens_group_size(n_out, group);
    if ((g == SG_OC_G || g == SG_IC_G) && q.group == 0) return 0;
    const QFormatTraits *t = qformat_traits(q.fmt);
    if (t->family == QFAM_GGML && n_in % ggml_type_traits((uint32_t)t->ggml_type)->block_size != 0) return 0;
    *qp = q;
    return 1;
}

Status sens_map_init(SensMap *sm, int64_t n_layers, int64_t group, Err *err) {
    memset(sm, 0, sizeof *sm);
    if (n_layers <= 0 || group < 0) return err_set(err, ST_ERR_ARG, "sensitivity map: %lld layers, group %lld",
                                                   (long long)n_layers, (long long)group);
    size_t n = (size_t)n_layers * PROJ_COUNT * SENS_NFMT * SG_COUNT;
    sm->n_layers = n_layers;
    sm->group = group;
    sm->werr = core_calloc(n, sizeof *sm->werr);
    sm->oerr = core_calloc(n, sizeof *sm->oerr);
    sm->gsize = core_calloc((size_t)n_layers * PROJ_COUNT * SG_COUNT, sizeof *sm->gsize);
    sm->done = core_calloc((size_t)n_layers * PROJ_COUNT * SENS_NFMT, sizeof *sm->done);
    if (!sm->werr || !sm->oerr || !sm->gsize || !sm->done) {
        sens_map_done(sm);
        return err_set(err, ST_ERR_NOMEM, "sensitivity map");
    }
    for (size_t i = 0; i < n; i++) sm->werr[i] = sm->oerr[i] = NAN;
    return ST_OK;
}

void sens_map_done(SensMap *sm) {
    free(sm->werr);
    free(sm->oerr);
    free(sm->gsize);
    free(sm->done);
    memset(sm, 0, sizeof *sm);
}

/* Candidates of site s (layer * PROJ_COUNT + proj) still to compute. */
static int site_missing(const SensMap *sm, int64_t s) {
    int n = 0;
    for (int f = 0; f < SENS_NFMT; f++) n += !sm->done[s * SENS_NFMT + f];
    return n;
}

/* Their cells (the cost unit). */
static int site_missing_cells(const SensMap *sm, int64_t s) {
    int n = 0;
    for (int f = 0; f < SENS_NFMT; f++) n += sm->done[s * SENS_NFMT + f] ? 0 : sens_fmt_cells(f);
    return n;
}

int64_t sens_map_sites_done(const SensMap *sm) {
    if (!sm->done) return 0;
    int64_t n = 0;
    for (int64_t s = 0; s < sm->n_layers * PROJ_COUNT; s++) n += site_missing(sm, s) == 0;
    return n;
}

int sens_map_complete(const SensMap *sm) {
    return sm->done && sens_map_sites_done(sm) == sm->n_layers * PROJ_COUNT;
}

double sens_site_cost(int64_t n_out, int64_t n_in, int n_cells) {
    double rows = n_out < 1024 ? (double)n_out : 1024.0;
    return (double)n_cells * (rows * (double)n_in * (double)n_in + 800.0 * (double)n_out * (double)n_in);
}

double sens_cell_bpw(int fmt, SensGroup g, const int32_t *gs, int64_t n_out, int64_t n_in) {
    if (!sens_cell_applies(fmt, g)) return NAN;
    const QFormatTraits *t = qformat_traits(sens_fmt(fmt));
    if (g == SG_BLOCK) {
        const GgmlTypeTraits *b = ggml_type_traits((uint32_t)t->ggml_type);
        return 8.0 * (double)b->block_bytes / (double)b->block_size;
    }
    QParams qp = {.fmt = sens_fmt(fmt), .sym = 1, .dim = sens_group_dim(g), .group = 0};
    if (g == SG_OC_G || g == SG_IC_G) qp.group = gs[g];
    if (((g == SG_OC_G || g == SG_IC_G) && qp.group <= 0) || n_in <= 0) return NAN;
    if (n_out <= 0) { /* the scale count needs n_out except per output channel and along the input */
        if (g == SG_TENSOR) return t->bits; /* one scale: < 1e-5 bits per weight on any real matrix */
        if (g == SG_OC) return t->bits + 16.0 / (double)n_in;
        if (g == SG_OC_G) return t->bits + 16.0 / (double)qp.group;
        return NAN;
    }
    return (double)qparams_bits(&qp, n_out, n_in) / ((double)n_out * (double)n_in);
}

void sens_opts_default(SensOpts *o) {
    memset(o, 0, sizeof *o);
    o->exact = 0;
    o->min_rows = 64;
    o->rel_se = 0.01;
}

/* Rows per GEMM: bounds the per-thread scratch (BMAX x n_in floats, twice). */
#define BMAX 1024

/* splitmix64, for the seeded row order of each site. */
static uint64_t sm64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One site's shared inputs and the per-thread scratch of the cell jobs. */
typedef struct SiteJob {
    const float *W;          /* (no, ni) */
    int64_t no, ni;
    const float *Hf;         /* (ni, ni) or NULL */
    const double *hdiag;     /* (ni) diag H */
    const int64_t *perm;     /* (no) row order of the subsample */
    double wnorm, denom;
    const SensOpts *o;
    int64_t layer;
    int proj;
    SensMap *sm;
    GemmWork *gw;
    float **wq, **dsub, **g; /* [thread] (no*ni), (BMAX*ni), (BMAX*ni) */
    double **rdiag;          /* [thread] (no) Σ_i H_ii δ_ri² per row */
    Progress *prog;          /* a cancel stops the cells (the site is then not done) */
    _Atomic int next;
    _Atomic int finished;    /* cells computed or skipped */
    _Atomic int failed;
    Status st;
    Err err;
} SiteJob;

/* Σ_{r in rows} δ_r H δ_rᵀ for the given rows of D (no, ni), GEMMs of up to
 * BMAX rows on thread tid's scratch; per-row values to out (may be NULL). */
static double rows_quad(const SiteJob *j, int tid, const float *D, const int64_t *rows, int64_t n, double *out) {
    int64_t ni = j->ni;
    double s = 0;
    for (int64_t b0 = 0; b0 < n; b0 += BMAX) {
        int64_t nb = n - b0 < BMAX ? n - b0 : BMAX;
        float *A = j->dsub[tid], *G = j->g[tid];
        for (int64_t r = 0; r < nb; r++) memcpy(A + r * ni, D + rows[b0 + r] * ni, (size_t)ni * sizeof *A);
        if (j->gw) gemm_f32_nt(j->gw, tid, nb, ni, ni, A, ni, j->Hf, ni, 0.0f, G, ni);
        else sgemm_mul_nn(nb, ni, ni, A, ni, j->Hf, ni, 0.0f, G, ni); /* one thread at a time: see sens_compute */
        for (int64_t r = 0; r < nb; r++) {
            double q = 0;
            const float *a = A + r * ni, *g = G + r * ni;
            for (int64_t i = 0; i < ni; i++) q += (double)a[i] * g[i];
            if (out) out[b0 + r] = q;
            s += q;
        }
    }
    return s;
}

/* tr(ΔW H ΔWᵀ) of one cell: exact, or the diagonal closed form
 * Σ_i H_ii ‖ΔW_:,i‖² plus the off-diagonal rest estimated on a growing
 * random subsample of rows until its standard error is below rel_se of the
 * total (all rows at the end: exact). */
static double cell_quad(const SiteJob *j, int tid, const float *D) {
    int64_t no = j->no, ni = j->ni;
    if (j->o->exact) {
        double s = 0;
        int64_t rows[BMAX];
        for (int64_t r0 = 0; r0 < no; r0 += BMAX) {
            int64_t n = no - r0 < BMAX ? no - r0 : BMAX;
            for (int64_t r = 0; r < n; r++) rows[r] = r0 + r;
            s += rows_quad(j, tid, D, rows, n, NULL);
        }
        return s;
    }
    double *rd = j->rdiag[tid], diag = 0;
    for (int64_t r = 0; r < no; r++) {
        const float *d = D + r * ni;
        double q = 0;
        for (int64_t i = 0; i < ni; i++) q += j->hdiag[i] * ((double)d[i] * d[i]);
        rd[r] = q;
        diag += q;
    }
    double so = 0, so2 = 0, full[BMAX];
    int64_t m = 0, step = j->o->min_rows > 0 ? j->o->min_rows : 64;
    for (;;) {
        int64_t n = no - m < step ? no - m : step;
        if (n > BMAX) n = BMAX;
        rows_quad(j, tid, D, j->perm + m, n, full);
        for (int64_t r = 0; r < n; r++) {
            double o = full[r] - rd[j->perm[m + r]];
            so += o;
            so2 += o * o;
        }
        m += n;
        if (m >= no) return diag + so;
        double est = diag + (double)no * so / (double)m;
        double var = (so2 - so * so / (double)m) / (double)(m - 1);
        double se = (double)no * sqrt((var > 0 ? var : 0) / (double)m * (1.0 - (double)m / (double)no));
        if (se <= j->o->rel_se * fabs(est)) return est;
        step = m; /* double the sample */
    }
}

static void cell_job(void *arg, int64_t b, int64_t e, int tid) {
    (void)b;
    (void)e;
    SiteJob *j = arg;
    int64_t n = j->no * j->ni;
    for (;;) {
        int c = atomic_fetch_add(&j->next, 1);
        if (c >= SENS_NFMT * SG_COUNT || atomic_load(&j->failed) || progress_cancelled(j->prog)) break;
        int f = c / SG_COUNT, g = c % SG_COUNT;
        QParams qp;
        if (j->sm->done[(j->layer * PROJ_COUNT + j->proj) * SENS_NFMT + f] ||
            !sens_cell_params(f, (SensGroup)g, j->no, j->ni, j->sm->group, &qp)) {
            atomic_fetch_add(&j->finished, 1);
            continue;
        }
        float *Wq = j->wq[tid];
        Err e2;
        err_init(&e2);
        Status st = rtn_fake_quantize(j->W, j->no, j->ni, &qp, Wq, &e2);
        if (st) {
            if (!atomic_exchange(&j->failed, 1)) {
                j->st = st;
                j->err = e2;
                err_wrap(&j->err, "layer %lld %s %s/%s", (long long)j->layer, proj_name((Proj)j->proj),
                         qformat_traits(qp.fmt)->name, sens_group_names[g]);
            }
            break;
        }
        double dn = 0;
        for (int64_t i = 0; i < n; i++) {
            Wq[i] -= j->W[i];
            dn += (double)Wq[i] * Wq[i];
        }
        int64_t idx = sens_index(j->layer, j->proj, f, g);
        j->sm->werr[idx] = j->wnorm > 0 ? (float)(dn / j->wnorm) : 0.0f;
        if (j->Hf) {
            double num = cell_quad(j, tid, Wq);
            j->sm->oerr[idx] = j->denom > 0 ? (float)(num / j->denom) : 0.0f;
        }
        atomic_fetch_add(&j->finished, 1);
    }
}

/* tr(W H Wᵀ), exact, with the GEMM spread over the pool. */
static double site_denom(const float *W, int64_t no, int64_t ni, const float *Hf, float *G, Pool *pool,
                         GemmWork *gw) {
    double s = 0;
    for (int64_t r0 = 0; r0 < no; r0 += BMAX) {
        int64_t nb = no - r0 < BMAX ? no - r0 : BMAX;
        if (gw) gemm_f32_nt_pool(pool, gw, nb, ni, ni, W + r0 * ni, ni, Hf, ni, 0.0f, G, ni);
        else sgemm_mul_nn(nb, ni, ni, W + r0 * ni, ni, Hf, ni, 0.0f, G, ni);
        for (int64_t i = 0; i < nb * ni; i++) s += (double)W[r0 * ni + i] * G[i];
    }
    return s;
}

Status sens_compute(const Model *m, const HStore *h, Pool *pool, Progress *prog, SensMap *sm, Err *err) {
    SensOpts o;
    sens_opts_default(&o);
    return sens_compute_opts(m, h, &o, pool, prog, sm, err);
}

Status sens_compute_opts(const Model *m, const HStore *h, const SensOpts *o, Pool *pool, Progress *prog,
                         SensMap *sm, Err *err) {
    const ModelConfig *c = &m->cfg;
    if (sm->n_layers != c->n_layers) return err_set(err, ST_ERR_ARG, "sensitivity map has %lld layers, model %lld",
                                                    (long long)sm->n_layers, (long long)c->n_layers);
    Status st = ST_OK;
    size_t max_w = 0, max_in = 0, max_out = 0;
    for (int p = 0; p < PROJ_COUNT; p++) {
        const Weight *w = &m->layers[0].proj[p];
        size_t n = (size_t)w->n_out * (size_t)w->n_in;
        max_w = n > max_w ? n : max_w;
        max_in = (size_t)w->n_in > max_in ? (size_t)w->n_in : max_in;
        max_out = (size_t)w->n_out > max_out ? (size_t)w->n_out : max_out;
    }
    /* Cells run in parallel, one per thread, each with its own GEMMs; without
     * the own GEMM OpenBLAS runs them (its own threads) one at a time. */
    int nt = pool ? pool_size(pool) : 1;
    if (h && !gemm_f32_available()) nt = 1;
    float *Hf = h ? core_alloc_aligned(max_in * max_in, sizeof(float)) : NULL;
    double *hdiag = core_calloc(max_in, sizeof *hdiag);
    int64_t *perm = core_calloc(max_out, sizeof *perm);
    float **wq = core_calloc((size_t)nt, sizeof *wq), **dsub = core_calloc((size_t)nt, sizeof *dsub);
    float **gb = core_calloc((size_t)nt, sizeof *gb);
    double **rdiag = core_calloc((size_t)nt, sizeof *rdiag);
    float *G = h ? core_alloc_aligned((size_t)BMAX * max_in, sizeof(float)) : NULL;
    float *Wconv = NULL; /* (max_w) a non-F32 weight decoded; allocated on first need */
    GemmWork *gw = NULL;
    if ((h && (!Hf || !G)) || !hdiag || !perm || !wq || !dsub || !gb || !rdiag) goto nomem;
    for (int t = 0; t < nt; t++) {
        wq[t] = core_alloc_aligned(max_w, sizeof(float));
        rdiag[t] = core_calloc(max_out, sizeof(double));
        if (!wq[t] || !rdiag[t]) goto nomem;
        if (h) {
            dsub[t] = core_alloc_aligned((size_t)BMAX * max_in, sizeof(float));
            gb[t] = core_alloc_aligned((size_t)BMAX * max_in, sizeof(float));
            if (!dsub[t] || !gb[t]) goto nomem;
        }
    }
    if (h && gemm_f32_available()) {
        st = gemm_work_new(pool ? pool_size(pool) : 1, &gw, err);
        if (st) goto done;
    }
    /* Progress in thousandths of the remaining cost, so the ETA weighs each site by its cost. */
    double cost_total = 0, cost_done = 0;
    int64_t sites_total = c->n_layers * PROJ_COUNT, sites_done = sens_map_sites_done(sm), ran = 0, ticks = 0;
    for (int64_t l = 0; l < c->n_layers; l++)
        for (int p = 0; p < PROJ_COUNT; p++) {
            const Weight *w = &m->layers[l].proj[p];
            cost_total += sens_site_cost(w->n_out, w->n_in, site_missing_cells(sm, l * PROJ_COUNT + p));
        }
    progress_begin(prog, "sensitivity", 1000);
    if (prog) snprintf(prog->stage, sizeof prog->stage, "sensitivity %lld/%lld sites", (long long)sites_done,
                       (long long)sites_total);
    for (int64_t l = 0; l < c->n_layers; l++) {
        int loaded_tap = -1;
        for (int p = 0; p < PROJ_COUNT; p++) {
            if (site_missing(sm, l * PROJ_COUNT + p) == 0) continue;
            int missing = site_missing_cells(sm, l * PROJ_COUNT + p);
            if (progress_cancelled(prog) || (o->max_sites > 0 && ran >= o->max_sites)) {
                st = err_set(err, ST_ERR_CANCELLED, "sensitivity stopped at layer %lld %s: %lld of %lld sites done (kept)",
                             (long long)l, proj_name((Proj)p), (long long)sites_done, (long long)sites_total);
                goto done;
            }
            const Weight *w = &m->layers[l].proj[p];
            int64_t no = w->n_out, ni = w->n_in, n = no * ni;
            int tap = (int)proj_tap((Proj)p);
            const float *W = weight_f32_data(w);
            if (!W) {
                if (!Wconv && !(Wconv = core_alloc_aligned(max_w, sizeof(float)))) {
                    st = err_set(err, ST_ERR_NOMEM, "sensitivity: decoding a weight (%zu floats)", max_w);
                    goto done;
                }
                weight_rows_f32(w, 0, no, Wconv);
                W = Wconv;
            }
            SiteJob j = {.W = W, .no = no, .ni = ni, .Hf = h ? Hf : NULL, .hdiag = hdiag, .perm = perm, .o = o,
                         .layer = l, .proj = p, .sm = sm, .gw = gw, .wq = wq, .dsub = dsub, .g = gb, .rdiag = rdiag,
                         .prog = prog};
            for (int64_t i = 0; i < n; i++) j.wnorm += (double)W[i] * W[i];
            if (h) {
                if (tap != loaded_tap) {
                    if ((st = hstore_load_f32(h, l, tap, Hf, err))) goto done;
                    for (int64_t i = 0; i < ni; i++) hdiag[i] = Hf[i * ni + i];
                    loaded_tap = tap;
                }
                j.denom = site_denom(W, no, ni, Hf, G, pool, gw);
            }
            /* the rows of the subsample: a seeded shuffle per site */
            uint64_t rs = (uint64_t)(l * PROJ_COUNT + p) + 1;
            for (int64_t r = 0; r < no; r++) perm[r] = r;
            for (int64_t r = no - 1; r > 0; r--) {
                int64_t k = (int64_t)(sm64(&rs) % (uint64_t)(r + 1)), t = perm[r];
                perm[r] = perm[k];
                perm[k] = t;
            }
            int32_t *gs = sm->gsize + (l * PROJ_COUNT + p) * SG_COUNT;
            gs[SG_OC_G] = (int32_t)sens_group_size(ni, sm->group);
            gs[SG_IC_G] = (int32_t)sens_group_size(no, sm->group);
            atomic_init(&j.next, 0);
            atomic_init(&j.finished, 0);
            atomic_init(&j.failed, 0);
            err_init(&j.err);
            if (nt > 1) pool_for(pool, nt, 1, cell_job, &j);
            else cell_job(&j, 0, 1, 0);
            if (atomic_load(&j.failed)) {
                st = j.st;
                *err = j.err;
                goto done;
            }
            if (atomic_load(&j.finished) < SENS_NFMT * SG_COUNT) { /* cancelled inside the site: not kept */
                st = err_set(err, ST_ERR_CANCELLED, "sensitivity cancelled in layer %lld %s: %lld of %lld sites done (kept)",
                             (long long)l, proj_name((Proj)p), (long long)sites_done, (long long)sites_total);
                goto done;
            }
            memset(sm->done + (l * PROJ_COUNT + p) * SENS_NFMT, 1, SENS_NFMT);
            sites_done++;
            ran++;
            if (o->on_site && (st = o->on_site(o->user, sm, l, p, err))) goto done;
            cost_done += sens_site_cost(no, ni, missing);
            int64_t t = cost_total > 0 ? (int64_t)(1000.0 * cost_done / cost_total) : 1000;
            if (prog) snprintf(prog->stage, sizeof prog->stage, "sensitivity %lld/%lld sites", (long long)sites_done,
                               (long long)sites_total);
            progress_add(prog, t - ticks);
            ticks = t;
        }
    }
    goto done;
nomem:
    st = err_set(err, ST_ERR_NOMEM, "sensitivity scratch (%zu weights, %d threads)", max_w, nt);
done:
    gemm_work_free(gw);
    for (int t = 0; t < nt; t++) {
        if (wq) core_free_aligned(wq[t]);
        if (dsub) core_free_aligned(dsub[t]);
        if (gb) core_free_aligned(gb[t]);
        if (rdiag) free(rdiag[t]);
    }
    free(wq);
    free(dsub);
    free(gb);
    free(rdiag);
    free(hdiag);
    free(perm);
    core_free_aligned(Hf);
    core_free_aligned(G);
    core_free_aligned(Wconv);
    return st;
}

static Status rtn_cells(void *user, int k, const float *W, int64_t no, int64_t ni, float *Wq, Err *err) {
    return rtn_fake_quantize(W, no, ni, &((const QParams *)user)[k], Wq, err);
}

Status sens_site_errors(const Model *m, const HStore *h, int64_t layer, int proj, const QParams *qps, int n,
                        Pool *pool, double *werr, double *oerr, Err *err) {
    return sens_site_errors_fn(m, h, layer, proj, n, 0, rtn_cells, (void *)qps, pool, werr, oerr, err);
}

Status sens_site_errors_fn(const Model *m, const HStore *h, int64_t layer, int proj, int n, int64_t max_rows,
                           SensQuantFn fn, void *user, Pool *pool, double *werr, double *oerr, Err *err) {
    const Weight *w = &m->layers[layer].proj[proj];
    int64_t no = w->n_out, ni = w->n_in;
    int64_t ns = max_rows > 0 && max_rows < no ? max_rows : no, nn = ns * ni;
    Status st = ST_OK;
    int64_t gr = ns < BMAX ? ns : BMAX;
    float *Wq = core_alloc_aligned((size_t)nn, sizeof(float));
    float *G = h ? core_alloc_aligned((size_t)(gr * ni), sizeof(float)) : NULL;
    float *Hf = h ? core_alloc_aligned((size_t)(ni * ni), sizeof(float)) : NULL;
    float *Wconv = NULL, *Ws = NULL;
    int64_t *perm = NULL;
    GemmWork *gw = NULL;
    const float *W = weight_f32_data(w);
    if (!Wq || (h && (!G || !Hf))) {
        st = err_set(err, ST_ERR_NOMEM, "sensitivity of one site (%lld weights)", (long long)nn);
        goto done;
    }
    if (!W) {
        if (!(Wconv = core_alloc_aligned((size_t)(no * ni), sizeof(float)))) {
            st = err_set(err, ST_ERR_NOMEM, "sensitivity: decoding a weight");
            goto done;
        }
        weight_rows_f32(w, 0, no, Wconv);
        W = Wconv;
    }
    if (ns < no) {
        /* a seeded subsample of rows, kept in their order */
        perm = core_calloc((size_t)no, sizeof *perm);
        Ws = core_alloc_aligned((size_t)nn, sizeof(float));
        if (!perm || !Ws) {
            st = err_set(err, ST_ERR_NOMEM, "sensitivity: row subsample");
            goto done;
        }
        uint64_t rs = (uint64_t)(layer * PROJ_COUNT + proj) + 1;
        for (int64_t r = 0; r < no; r++) perm[r] = r;
        for (int64_t r = 0; r < ns; r++) { /* partial Fisher-Yates: perm[0..ns) is the sample */
            int64_t k = r + (int64_t)(sm64(&rs) % (uint64_t)(no - r)), t = perm[r];
            perm[r] = perm[k];
            perm[k] = t;
        }
        for (int64_t i = 1; i < ns; i++) /* insertion sort of the sample (small) */
            for (int64_t j = i; j > 0 && perm[j - 1] > perm[j]; j--) {
                int64_t t = perm[j];
                perm[j] = perm[j - 1];
                perm[j - 1] = t;
            }
        for (int64_t r = 0; r < ns; r++) memcpy(Ws + r * ni, W + perm[r] * ni, (size_t)ni * sizeof *Ws);
        W = Ws;
    }
    if (h && gemm_f32_available() && (st = gemm_work_new(pool ? pool_size(pool) : 1, &gw, err))) goto done;
    double wnorm = 0, denom = 0;
    for (int64_t i = 0; i < nn; i++) wnorm += (double)W[i] * W[i];
    if (h) {
        if ((st = hstore_load_f32(h, layer, (int)proj_tap((Proj)proj), Hf, err))) goto done;
        denom = site_denom(W, ns, ni, Hf, G, pool, gw);
    }
    for (int k = 0; k < n; k++) {
        if ((st = fn(user, k, W, ns, ni, Wq, err))) goto done;
        double dn = 0;
        for (int64_t i = 0; i < nn; i++) {
            Wq[i] -= W[i];
            dn += (double)Wq[i] * Wq[i];
        }
        if (werr) werr[k] = wnorm > 0 ? dn / wnorm : 0;
        oerr[k] = h ? (denom > 0 ? site_denom(Wq, ns, ni, Hf, G, pool, gw) / denom : 0) : NAN;
    }
done:
    gemm_work_free(gw);
    core_free_aligned(Wq);
    core_free_aligned(G);
    core_free_aligned(Hf);
    core_free_aligned(Wconv);
    core_free_aligned(Ws);
    free(perm);
    return st;
}

GroupDim sens_adadim_choice(const SensMap *sm, int64_t layer, int proj, int fmt, int grouped) {
    int gi = grouped ? SG_IC_G : SG_IC, go = grouped ? SG_OC_G : SG_OC;
    float ei = sm->oerr[sens_index(layer, proj, fmt, gi)], eo = sm->oerr[sens_index(layer, proj, fmt, go)];
    if (isnan(ei) || isnan(eo)) {
        ei = sm->werr[sens_index(layer, proj, fmt, gi)];
        eo = sm->werr[sens_index(layer, proj, fmt, go)];
    }
    if (isnan(ei) && isnan(eo)) return GROUP_TENSOR;
    if (isnan(ei)) return GROUP_OC;
    if (isnan(eo)) return GROUP_IC;
    return ei < eo ? GROUP_IC : GROUP_OC;
}
