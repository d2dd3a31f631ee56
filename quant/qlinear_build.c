#include "quant/qlinear_build.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/assert.h"
#include "core/scratch.h"
#include "kernels/int8_gemm.h"
#include "kernels/w4a8.h"
#include "kernels/wq_gemm.h"
#include "quant/format.h"
#include "quant/rtn.h"

typedef enum { QL_W8A8, QL_WQ, QL_W4A8 } QlKind;

typedef struct QlImpl {
    QlKind kind;
    ActQuant aq;
    I8Matrix i8;             /* QL_W8A8 */
    WqMatrix wq;             /* QL_WQ */
    W4a8Matrix w4;           /* QL_W4A8 */
    size_t bytes;            /* see qlinear_build.h */
    const char *name;
} QlImpl;

/* Layers ls[g[0..ng)] (built here; ql_same_input pairwise when ng > 1) on
 * their shared input: the activations quantized once, the products in one
 * pool dispatch where the kernel allows. One layer alone is the ng = 1 case,
 * so a layer's own forward and a phase run the same code. The buffers are
 * the calling thread's scratch (core/scratch.h): a decode step allocates
 * nothing. */
static Status ql_run_group(const QLinear *const *ls, const int *g, int ng, const float *x, int64_t T, int64_t pos0,
                           float *const *ys, Pool *pool, Err *err) {
    const QLinear *l0 = ls[g[0]];
    const QlImpl *im0 = l0->impl;
    int64_t k = l0->n_in;
    if (T <= 0) return ST_OK;
    if (im0->kind == QL_W8A8 || im0->kind == QL_W4A8) {
        int w4 = im0->kind == QL_W4A8;
        int64_t kp = w4 ? im0->w4.kp : im0->i8.kp;
        /* W4A8 keeps the int8 codes and their reordered copy side by side */
        int8_t *A = scratch_get(SCRATCH_QL_ACT, (size_t)((w4 ? 2 : 1) * T * kp));
        int32_t *corr = w4 ? scratch_get(SCRATCH_QL_CORR, (size_t)(T * (kp / 16)) * sizeof *corr) : NULL;
        float *as = scratch_get(SCRATCH_QL_SCALE, (size_t)T * sizeof *as);
        if (!A || !as || (w4 && !corr))
            return err_set(err, ST_ERR_NOMEM, "%s: int8 activations of %lld rows", im0->name, (long long)T);
        actq_quantize_int8(&im0->aq, x, T, k, pos0, A, kp, as, pool);
        if (w4) {
            int8_t *Ap = A + T * kp;
            w4a8_act_prep(A, T, kp, Ap, corr);
            W4a8Job job[QLINEAR_SHARED_MAX];
            PoolPart part[QLINEAR_SHARED_MAX];
            int64_t grain = 1;
            for (int i = 0; i < ng; i++) {
                const QlImpl *im = ls[g[i]]->impl;
                int64_t gi;
                part[i] = (PoolPart){w4a8_gemm_job_run, &job[i],
                                     w4a8_gemm_job_init(&job[i], &im->w4, Ap, corr, as, T, ys[g[i]], &gi)};
                if (gi > grain) grain = gi;
            }
            pool_for_parts(pool, part, ng, grain);
        } else if (T <= I8GEMM_JOB_ROWS) {
            I8GemmJob job[QLINEAR_SHARED_MAX];
            PoolPart part[QLINEAR_SHARED_MAX];
            for (int i = 0; i < ng; i++) {
                const QLinear *l = ls[g[i]];
                const QlImpl *im = l->impl;
                part[i] = (PoolPart){i8gemm_job_run, &job[i],
                                     i8gemm_job_init(&job[i], &im->i8, A, T, kp, as, ys[g[i]], l->n_out)};
            }
            pool_for_parts(pool, part, ng, 1);
        } else {
            for (int i = 0; i < ng; i++) {
                const QLinear *l = ls[g[i]];
                i8gemm(&((const QlImpl *)l->impl)->i8, A, T, kp, as, ys[g[i]], l->n_out, pool);
            }
        }
        return ST_OK;
    }
    /* weight-only kernels, behind the same fake-quantized input when there is one */
    if (im0->aq.fmt != ACT_NONE) {
        float *xq = scratch_get(SCRATCH_QL_XQ, (size_t)(T * k) * sizeof *xq);
        if (!xq) return err_set(err, ST_ERR_NOMEM, "%s: quantized activations of %lld rows", im0->name, (long long)T);
        actq_fake(&im0->aq, x, T, k, pos0, xq, pool);
        x = xq;
    }
    Status st = ST_OK;
    for (int i = 0; i < ng && !st; i++) /* fails only on a failed tile allocation */
        st = wq_gemm(&((const QlImpl *)ls[g[i]]->impl)->wq, x, T, ys[g[i]], pool, err);
    return st;
}

static Status ql_forward_at(const QLinear *l, const float *x, int64_t T, int64_t pos0, float *y, Pool *pool,
                            Err *err) {
    const int g0 = 0;
    return ql_run_group(&l, &g0, 1, x, T, pos0, &y, pool, err);
}

static Status ql_forward(const QLinear *l, const float *x, int64_t T, float *y, Pool *pool, Err *err) {
    return ql_forward_at(l, x, T, 0, y, pool, err);
}

static size_t ql_bytes(const QLinear *l) { return ((const QlImpl *)l->impl)->bytes; }

static void ql_free(QLinear *l) {
    QlImpl *im = l->impl;
    if (im) {
        i8mat_done(&im->i8);
        wqmat_done(&im->wq);
        w4a8mat_done(&im->w4);
        free(im);
    }
    free(l);
}

static const QLinearOps ql_ops = {ql_forward, ql_bytes, ql_free};

void qlinear_free(QLinear *l) {
    if (l) l->ops->free(l);
}

Status qlinear_forward_pos(const QLinear *l, const float *x, int64_t T, int64_t pos0, float *y, Pool *pool,
                           Err *err) {
    if (l->ops == &ql_ops) return ql_forward_at(l, x, T, pos0, y, pool, err);
    return l->ops->forward(l, x, T, y, pool, err);
}

/* 1 when a and b quantize the same input to the same codes and scales. */
static int ql_same_input(const QlImpl *a, const QlImpl *b) {
    if (a->kind != b->kind || a->aq.fmt != b->aq.fmt || a->aq.per_token != b->aq.per_token ||
        a->aq.is_static != b->aq.is_static || a->aq.skip_first != b->aq.skip_first ||
        (a->aq.is_static && a->aq.static_absmax != b->aq.static_absmax))
        return 0;
    if (a->kind == QL_W8A8) return a->i8.kp == b->i8.kp;
    if (a->kind == QL_W4A8) return a->w4.kp == b->w4.kp;
    return a->aq.fmt != ACT_NONE; /* weight-only: only a fake-quantized input is worth sharing */
}

Status qlinear_forward_shared(const QLinear *const *ls, int n, const float *x, int64_t T, int64_t pos0,
                              float *const *ys, Pool *pool, Err *err) {
    ASSERT(n >= 0 && n <= QLINEAR_SHARED_MAX);
    if (T <= 0) return ST_OK;
    Status st = ST_OK;
    unsigned char done[QLINEAR_SHARED_MAX] = {0};
    for (int i = 0; i < n && !st; i++) {
        if (done[i]) continue;
        const QLinear *l = ls[i];
        ASSERT(l->n_in == ls[0]->n_in);
        const QlImpl *im = l->ops == &ql_ops ? l->impl : NULL;
        if (!im || !ql_same_input(im, im)) { /* not built here, or nothing to share */
            st = qlinear_forward_pos(l, x, T, pos0, ys[i], pool, err);
            continue;
        }
        int g[QLINEAR_SHARED_MAX], ng = 0;
        for (int j = i; j < n; j++)
            if (!done[j] && ls[j]->ops == &ql_ops && ql_same_input(im, ls[j]->impl)) {
                g[ng++] = j;
                done[j] = 1;
            }
        st = ql_run_group(ls, g, ng, x, T, pos0, ys, pool, err);
    }
    return st;
}

const char *qlinear_kernel_name(const QLinear *l) {
    return l->ops == &ql_ops ? ((const QlImpl *)l->impl)->name : "external";
}

ActQuant qlinear_act_from_plan(const PlanEntry *e, float static_absmax) {
    ActQuant a = {ACT_NONE, 0, 0, 0.0f, 0};
    a.fmt = (unsigned)e->act < ACT_COUNT ? e->act : ACT_NONE; /* the plan's and the kernels' enum are one */
    a.per_token = e->act_gran == ACT_PER_TOKEN;
    a.is_static = e->act_scale == ACT_STATIC;
    a.static_absmax = static_absmax;
    a.skip_first = e->act_skip_first != 0;
    return a;
}

static WqGroup ql_group(GroupDim d) { return (WqGroup)group_dim_wq(d); }

static Status ql_check(const QTensor *q, const ActQuant *aq, Err *err) {
    const QFormatTraits *t = qformat_traits(q->p.fmt);
    if (!t) return err_set(err, ST_ERR_ARG, "qlinear: unknown weight format %d", (int)q->p.fmt);
    if (!t->pack) return err_set(err, ST_ERR_UNSUPPORTED, "qlinear: %s weights have their own layer", t->name);
    if (q->n_out <= 0 || q->n_in <= 0)
        return err_set(err, ST_ERR_ARG, "qlinear: bad shape (%lld, %lld)", (long long)q->n_out, (long long)q->n_in);
    if (t->needs_scale && (!q->scale || q->n_groups != qparams_n_groups(&q->p, q->n_out, q->n_in)))
        return err_set(err, ST_ERR_ARG, "qlinear: %s tensor without its %lld scales", t->name,
                       (long long)qparams_n_groups(&q->p, q->n_out, q->n_in));
    if (!qtensor_codes(q))
        return err_set(err, ST_ERR_ARG, "qlinear: %s tensor without %s", t->name, t->needs_scale ? "codes" : "values");
    if (t->is_int && !q->p.sym && !q->zero) return err_set(err, ST_ERR_ARG, "qlinear: asymmetric %s tensor without zero points", t->name);
    if (aq) {
        if (aq->fmt < ACT_NONE || aq->fmt >= ACT_COUNT) return err_set(err, ST_ERR_ARG, "qlinear: unknown activation format %d", (int)aq->fmt);
        if (aq->fmt != ACT_NONE && aq->is_static && !(aq->static_absmax > 0.0f && isfinite(aq->static_absmax)))
            return err_set(err, ST_ERR_ARG, "qlinear: static activation scale needs a calibrated max|x| > 0 (got %g)",
                           (double)aq->static_absmax);
    }
    return ST_OK;
}

Status qlinear_new_from_qtensor(const QTensor *q, const ActQuant *aq, QLinear **out, Err *err) {
    *out = NULL;
    Status st = ql_check(q, aq, err);
    if (st) return st;
    const QFormatTraits *t = qformat_traits(q->p.fmt);
    QLinear *l = core_calloc(1, sizeof *l);
    QlImpl *im = core_calloc(1, sizeof *im);
    if (!l || !im) {
        free(l);
        free(im);
        return err_set(err, ST_ERR_NOMEM, "qlinear");
    }
    l->ops = &ql_ops;
    l->n_out = q->n_out;
    l->n_in = q->n_in;
    l->impl = im;
    if (aq) im->aq = *aq;
    else im->aq.fmt = ACT_NONE;
    const int64_t n = q->n_out, k = q->n_in;
    const size_t base = qparams_bytes(&q->p, n, k);
    int w8a8 = q->p.fmt == QF_INT8 && q->p.sym && im->aq.fmt == ACT_INT8 &&
               (q->p.dim == GROUP_TENSOR || (q->p.dim == GROUP_OC && q->p.group == 0));
    /* int4 symmetric weights under OC groups of a multiple of 32 (or per-row /
     * per-tensor) with int8 activations: integer dot products; a scale that is
     * not exact in fp16 (only possible in a hand-made QTensor) falls back to
     * the weight-only kernel below */
    int w4a8 = q->p.fmt == QF_INT4 && q->p.sym && im->aq.fmt == ACT_INT8 &&
               (q->p.dim == GROUP_TENSOR || q->p.dim == GROUP_OC) && w4a8_group_ok(ql_group(q->p.dim), q->p.group, k);
    if (w4a8) {
        st = w4a8mat_pack(q->q, n, k, ql_group(q->p.dim), q->p.group, q->scale, &im->w4, err);
        if (st == ST_OK) {
            im->kind = QL_W4A8;
            im->name = "w4a8";
            im->bytes = base + (size_t)n * (size_t)(im->w4.kp - k) / 2;
            *out = l;
            return ST_OK;
        }
        if (st != ST_ERR_RANGE) goto fail;
        st = ST_OK;
    }
    if (w8a8) {
        im->kind = QL_W8A8;
        im->name = "w8a8";
        st = i8mat_pack(q->q, n, k, q->scale, q->p.dim == GROUP_OC, &im->i8, err);
        if (st) goto fail;
        im->bytes = base + (i8mat_code_bytes(&im->i8) - (size_t)(n * k));
    } else {
        im->kind = QL_WQ;
        im->name = t->kernel;
        st = t->pack(q, &im->wq, err);
        if (st) goto fail;
        /* storage beyond the format's bits: block padding of K, wider storage
         * (a block format is stored as it is) */
        size_t packed_bits = (size_t)n * (size_t)im->wq.kp * (size_t)wq_code_bits(im->wq.code);
        size_t fmt_bits = (size_t)n * (size_t)k * (size_t)t->bits;
        im->bytes = im->wq.code == WQ_BLOCKS ? base : base + (packed_bits - fmt_bits) / 8;
    }
    *out = l;
    return ST_OK;
fail:
    err_wrap(err, "qlinear %s (%lld, %lld)", t->name, (long long)n, (long long)k);
    ql_free(l);
    return st;
}
