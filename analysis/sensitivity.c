#include "analysis/sensitivity.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/assert.h"
#include "kernels/f32gemm.h"
#include "kernels/sgemm.h"
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
static const char *const sens_group_names[SG_COUNT] = {"tensor", "oc", "ic", "oc-g", "ic-g"};

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
    case SG_OC: case SG_OC_G: return GROUP_OC;
    case SG_IC: case SG_IC_G: return GROUP_IC;
    default: return GROUP_TENSOR;
    }
}

int64_t sens_group_size(int64_t n, int64_t g) {
    for (int64_t d = (g / 4) * 4; d >= 4; d -= 4)
        if (n % d == 0) return d;
    return 0;
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
    if (!sm->werr || !sm->oerr || !sm->gsize) {
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
    memset(sm, 0, sizeof *sm);
}

/* Σ_i D_i · (D H)_i for D (n_out, n_in): tr(D H Dᵀ). G is (n_out, n_in)
 * scratch. H is symmetric, so D·H = D·Hᵀ: the "nt" GEMM of our own AVX-512
 * kernel on the pool when it can run, else OpenBLAS. */
static double sens_quad(const float *D, int64_t n_out, int64_t n_in, const float *Hf, float *G, Pool *pool,
                        GemmWork *gw) {
    if (gw) gemm_f32_nt_pool(pool, gw, n_out, n_in, n_in, D, n_in, Hf, n_in, 0.0f, G, n_in);
    else sgemm_mul_nn(n_out, n_in, n_in, D, n_in, Hf, n_in, 0.0f, G, n_in);
    double s = 0;
    for (int64_t i = 0; i < n_out * n_in; i++) s += (double)D[i] * G[i];
    return s;
}

Status sens_compute(const Model *m, const HStore *h, Pool *pool, Progress *prog, SensMap *sm, Err *err) {
    const ModelConfig *c = &m->cfg;
    if (sm->n_layers != c->n_layers) return err_set(err, ST_ERR_ARG, "sensitivity map has %lld layers, model %lld",
                                                    (long long)sm->n_layers, (long long)c->n_layers);
    Status st = ST_OK;
    size_t max_w = 0, max_in = 0;
    for (int p = 0; p < PROJ_COUNT; p++) {
        const Weight *w = &m->layers[0].proj[p];
        size_t n = (size_t)w->n_out * (size_t)w->n_in;
        max_w = n > max_w ? n : max_w;
        max_in = (size_t)w->n_in > max_in ? (size_t)w->n_in : max_in;
    }
    float *Wq = core_alloc_aligned(max_w, sizeof(float));
    float *G = core_alloc_aligned(max_w, sizeof(float));
    float *Hf = h ? core_alloc_aligned(max_in * max_in, sizeof(float)) : NULL;
    float *Wconv = NULL; /* (max_w) a non-F32 weight decoded; allocated on first need */
    GemmWork *gw = NULL;
    if (!Wq || !G || (h && !Hf)) {
        st = err_set(err, ST_ERR_NOMEM, "sensitivity scratch (%zu weights)", max_w);
        goto done;
    }
    if (h && gemm_f32_available()) {
        st = gemm_work_new(pool ? pool_size(pool) : 1, &gw, err);
        if (st) goto done;
    }
    progress_begin(prog, "sensitivity", c->n_layers * PROJ_COUNT);
    for (int64_t l = 0; l < c->n_layers; l++) {
        int loaded_tap = -1;
        for (int p = 0; p < PROJ_COUNT; p++) {
            if (progress_cancelled(prog)) {
                st = err_set(err, ST_ERR_CANCELLED, "sensitivity cancelled at layer %lld", (long long)l);
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
            double denom = 0, wnorm = 0;
            for (int64_t i = 0; i < n; i++) wnorm += (double)W[i] * W[i];
            if (h) {
                if (tap != loaded_tap) {
                    if ((st = hstore_load_f32(h, l, tap, Hf, err))) goto done;
                    loaded_tap = tap;
                }
                denom = sens_quad(W, no, ni, Hf, G, pool, gw);
            }
            int32_t *gs = sm->gsize + (l * PROJ_COUNT + p) * SG_COUNT;
            gs[SG_OC_G] = (int32_t)sens_group_size(ni, sm->group);
            gs[SG_IC_G] = (int32_t)sens_group_size(no, sm->group);
            for (int f = 0; f < SENS_NFMT; f++)
                for (int g = 0; g < SG_COUNT; g++) {
                    QParams qp = {.fmt = sens_fmt(f), .sym = 1, .dim = sens_group_dim((SensGroup)g), .group = 0};
                    if (g == SG_OC_G || g == SG_IC_G) {
                        qp.group = gs[g];
                        if (qp.group == 0) continue;
                    }
                    st = rtn_fake_quantize(W, no, ni, &qp, Wq, err);
                    if (st) {
                        err_wrap(err, "layer %lld %s %s/%s", (long long)l, proj_name((Proj)p),
                                 qformat_traits(qp.fmt)->name, sens_group_names[g]);
                        goto done;
                    }
                    double dn = 0;
                    for (int64_t i = 0; i < n; i++) {
                        Wq[i] -= W[i];
                        dn += (double)Wq[i] * Wq[i];
                    }
                    int64_t idx = sens_index(l, p, f, g);
                    sm->werr[idx] = wnorm > 0 ? (float)(dn / wnorm) : 0.0f;
                    if (h) {
                        double num = sens_quad(Wq, no, ni, Hf, G, pool, gw);
                        sm->oerr[idx] = denom > 0 ? (float)(num / denom) : 0.0f;
                    }
                }
            progress_add(prog, 1);
        }
    }
done:
    gemm_work_free(gw);
    core_free_aligned(Wq);
    core_free_aligned(G);
    core_free_aligned(Hf);
    core_free_aligned(Wconv);
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
