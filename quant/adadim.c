#include "quant/adadim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "kernels/blas.h"
#include "kernels/cpu.h"
#include "kernels/f32gemm.h"
#include "quant/rtn.h"

/* Rows per GEMM block: bounds the scratch to 2 x 256 x n_in values. */
#define ADADIM_ROWS 256

/* The output-error machinery shared by the variants of one call: H in the
 * precision the GEMM path wants, scratch rows and GEMM buffers. */
typedef struct ErrCtx {
    int64_t n_in;
    Pool *pool;
    const double *Hd;        /* float64 path */
    float *Hf;               /* (n_in, n_in) float32 copy, AVX-512 path */
    GemmWork *gw;
    void *D, *E;             /* (ADADIM_ROWS, n_in) float or double */
} ErrCtx;

static void err_ctx_done(ErrCtx *c) {
    core_free_aligned(c->Hf);
    gemm_work_free(c->gw);
    core_free_aligned(c->D);
    core_free_aligned(c->E);
}

static int err_ctx_init(ErrCtx *c, int64_t n_in, const double *H, Pool *pool) {
    memset(c, 0, sizeof *c);
    c->n_in = n_in;
    c->pool = pool;
    c->Hd = H;
    size_t nn = (size_t)n_in * (size_t)n_in, rows = (size_t)ADADIM_ROWS * (size_t)n_in;
    /* float32 GEMM where AVX-512 makes it the fast path; elsewhere the
     * float64 one is as fast and exact to ~1e-12 */
    if (cpu_has_avx512f()) {
        c->Hf = core_alloc_aligned(nn, sizeof(float));
        c->D = core_alloc_aligned(rows, sizeof(float));
        c->E = core_alloc_aligned(rows, sizeof(float));
        if (!c->Hf || !c->D || !c->E || gemm_work_new(pool ? pool_size(pool) : 1, &c->gw, NULL) != ST_OK) {
            err_ctx_done(c);
            return 0;
        }
        for (size_t i = 0; i < nn; i++) c->Hf[i] = (float)H[i];
    } else {
        c->D = core_alloc_aligned(rows, sizeof(double));
        c->E = core_alloc_aligned(rows, sizeof(double));
        if (!c->D || !c->E) {
            err_ctx_done(c);
            return 0;
        }
    }
    return 1;
}

static double err_ctx_run(ErrCtx *c, const float *W, const float *Wq, int64_t n_out) {
    int64_t n_in = c->n_in;
    double tot = 0;
    for (int64_t r0 = 0; r0 < n_out; r0 += ADADIM_ROWS) {
        int64_t nr = r0 + ADADIM_ROWS <= n_out ? ADADIM_ROWS : n_out - r0;
        const float *w = W + r0 * n_in, *q = Wq ? Wq + r0 * n_in : NULL;
        int64_t m = nr * n_in;
        if (c->Hf) {
            float *D = c->D, *E = c->E;
            for (int64_t i = 0; i < m; i++) D[i] = q ? w[i] - q[i] : w[i];
            /* E = D · H (H symmetric, so D · Hᵀ) */
            gemm_f32_nt_pool(c->pool, c->gw, nr, n_in, n_in, D, n_in, c->Hf, n_in, 0.0f, E, n_in);
            for (int64_t i = 0; i < m; i++) tot += (double)D[i] * (double)E[i];
        } else {
            double *D = c->D, *E = c->E;
            for (int64_t i = 0; i < m; i++) D[i] = (double)w[i] - (q ? (double)q[i] : 0.0);
            blas_dgemm_nn(nr, n_in, n_in, D, n_in, c->Hd, n_in, 0.0, E, n_in);
            for (int64_t i = 0; i < m; i++) tot += D[i] * E[i];
        }
    }
    return tot;
}

double adadim_output_error(const float *W, const float *Wq, int64_t n_out, int64_t n_in, const double *H, Pool *pool) {
    ErrCtx c;
    if (!err_ctx_init(&c, n_in, H, pool)) return NAN;
    double e = err_ctx_run(&c, W, Wq, n_out);
    err_ctx_done(&c);
    return e;
}

/* Quantizes one variant (GPTQ when f is set) and measures its output error. */
static Status adadim_variant(const float *W, int64_t n_out, int64_t n_in, const GptqFactor *f, const QParams *p,
                             const GptqOpts *gptq, Pool *pool, Progress *prog, ErrCtx *ec, float *wq, QTensor *q,
                             double *e, Err *err) {
    Status st = f ? gptq_quantize_factored(W, n_out, n_in, f, p, gptq, pool, prog, q, NULL, err)
                  : rtn_quantize(W, n_out, n_in, p, q, err);
    if (st) return st;
    qtensor_dequant(q, wq);
    *e = err_ctx_run(ec, W, wq, n_out);
    return ST_OK;
}

/* adadim_choose and adadim_choose_factored: GPTQ through `shared` when set,
 * else through a factor built here when gptq is set, else RTN. */
static Status choose(const float *W, int64_t n_out, int64_t n_in, const double *H, const GptqFactor *shared,
                     const QParams *p, const GptqOpts *gptq, Pool *pool, Progress *prog, AdaDimResult *out, Err *err) {
    memset(out, 0, sizeof *out);
    const QFormatTraits *t = qformat_traits(p->fmt);
    if (!t || !t->fit)
        return err_set(err, ST_ERR_ARG, "adadim: format %s has no scales to place", t ? t->name : "?");
    QParams oc = *p, ic = *p;
    oc.dim = GROUP_OC;
    ic.dim = GROUP_IC;
    Status st = qparams_check(&oc, n_out, n_in, err);
    if (!st) st = qparams_check(&ic, n_out, n_in, err);
    if (st) return err_wrap(err, "adadim");
    ErrCtx ec;
    float *wq = core_alloc_aligned((size_t)n_out * (size_t)n_in, sizeof *wq);
    if (!wq || !err_ctx_init(&ec, n_in, H, pool)) {
        core_free_aligned(wq);
        return err_set(err, ST_ERR_NOMEM, "adadim (%lld, %lld)", (long long)n_out, (long long)n_in);
    }
    QTensor qoc = {0}, qic = {0};
    GptqFactor *own = NULL;
    if (gptq && !shared) st = gptq_factor_new(H, NULL, n_in, gptq, pool, &own, err); /* one factorization for both variants */
    const GptqFactor *f = shared ? shared : own;
    if (!st) st = adadim_variant(W, n_out, n_in, f, &oc, gptq, pool, prog, &ec, wq, &qoc, &out->err_oc, err);
    if (!st) st = adadim_variant(W, n_out, n_in, f, &ic, gptq, pool, prog, &ec, wq, &qic, &out->err_ic, err);
    gptq_factor_free(own);
    if (!st) {
        out->err_ref = err_ctx_run(&ec, W, NULL, n_out);
        if (out->err_ic < out->err_oc) {
            out->dim = GROUP_IC;
            out->q = qic;
            qtensor_done(&qoc);
        } else {
            out->dim = GROUP_OC;
            out->q = qoc;
            qtensor_done(&qic);
        }
    } else {
        qtensor_done(&qoc);
        qtensor_done(&qic);
    }
    err_ctx_done(&ec);
    core_free_aligned(wq);
    return st;
}

Status adadim_choose(const float *W, int64_t n_out, int64_t n_in, const double *H, const QParams *p,
                     const GptqOpts *gptq, Pool *pool, Progress *prog, AdaDimResult *out, Err *err) {
    return choose(W, n_out, n_in, H, NULL, p, gptq, pool, prog, out, err);
}

Status adadim_choose_factored(const float *W, int64_t n_out, int64_t n_in, const double *H, const GptqFactor *f,
                              const QParams *p, const GptqOpts *gptq, Pool *pool, Progress *prog, AdaDimResult *out,
                              Err *err) {
    GptqOpts defo;
    if (f && !gptq) {
        gptq_opts_default(&defo);
        gptq = &defo;
    }
    return choose(W, n_out, n_in, H, f, p, gptq, pool, prog, out, err);
}
