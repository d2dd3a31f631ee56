#include "quant/adadim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "kernels/blas.h"
#include "quant/rtn.h"

/* Rows per GEMM block: bounds the float64 scratch to 2 x 256 x n_in. */
#define ADADIM_ROWS 256

double adadim_output_error(const float *W, const float *Wq, int64_t n_out, int64_t n_in, const double *H) {
    int64_t rb = n_out < ADADIM_ROWS ? n_out : ADADIM_ROWS;
    double *D = core_alloc_aligned((size_t)rb * (size_t)n_in, sizeof *D);
    double *E = core_alloc_aligned((size_t)rb * (size_t)n_in, sizeof *E);
    double tot = NAN;
    if (!D || !E) goto out;
    tot = 0;
    for (int64_t r0 = 0; r0 < n_out; r0 += rb) {
        int64_t nr = r0 + rb <= n_out ? rb : n_out - r0;
        for (int64_t r = 0; r < nr; r++)
            for (int64_t c = 0; c < n_in; c++) {
                size_t i = (size_t)(r0 + r) * (size_t)n_in + (size_t)c;
                D[r * n_in + c] = (double)W[i] - (Wq ? (double)Wq[i] : 0.0);
            }
        blas_dgemm_nn(nr, n_in, n_in, D, n_in, H, n_in, 0.0, E, n_in);
        for (int64_t i = 0; i < nr * n_in; i++) tot += D[i] * E[i];
    }
out:
    core_free_aligned(D);
    core_free_aligned(E);
    return tot;
}

/* Quantizes one variant and measures its output error. */
static Status adadim_variant(const float *W, int64_t n_out, int64_t n_in, const double *H, const QParams *p,
                             const GptqOpts *gptq, Pool *pool, Progress *prog, float *wq, QTensor *q, double *e,
                             Err *err) {
    Status st = gptq ? gptq_quantize(W, n_out, n_in, H, NULL, p, gptq, pool, prog, q, NULL, err)
                     : rtn_quantize(W, n_out, n_in, p, q, err);
    if (st) return st;
    qtensor_dequant(q, wq);
    *e = adadim_output_error(W, wq, n_out, n_in, H);
    if (isnan(*e)) {
        qtensor_done(q);
        return err_set(err, ST_ERR_NOMEM, "adadim: output error scratch");
    }
    return ST_OK;
}

Status adadim_choose(const float *W, int64_t n_out, int64_t n_in, const double *H, const QParams *p,
                     const GptqOpts *gptq, Pool *pool, Progress *prog, AdaDimResult *out, Err *err) {
    memset(out, 0, sizeof *out);
    const QFormatTraits *t = qformat_traits(p->fmt);
    if (!t || !t->needs_scale || p->fmt == QF_AQLM)
        return err_set(err, ST_ERR_ARG, "adadim: format %s has no scales to place", t ? t->name : "?");
    QParams oc = *p, ic = *p;
    oc.dim = GROUP_OC;
    ic.dim = GROUP_IC;
    Status st = qparams_check(&oc, n_out, n_in, err);
    if (!st) st = qparams_check(&ic, n_out, n_in, err);
    if (st) return err_wrap(err, "adadim");
    float *wq = core_alloc_aligned((size_t)n_out * (size_t)n_in, sizeof *wq);
    if (!wq) return err_set(err, ST_ERR_NOMEM, "adadim (%lld, %lld)", (long long)n_out, (long long)n_in);
    QTensor qoc = {0}, qic = {0};
    st = adadim_variant(W, n_out, n_in, H, &oc, gptq, pool, prog, wq, &qoc, &out->err_oc, err);
    if (!st) st = adadim_variant(W, n_out, n_in, H, &ic, gptq, pool, prog, wq, &qic, &out->err_ic, err);
    if (!st) {
        out->err_ref = adadim_output_error(W, NULL, n_out, n_in, H);
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
    core_free_aligned(wq);
    return st;
}
