#include "quant/qlinear_aqlm.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/aqlm_kernels.h"

typedef struct AqImpl {
    AqlmParams p;
    AqlmPacked pk;           /* views into the arrays below */
    float *cb;               /* (M, K, g) */
    float *cbt;              /* (M, g, K) */
    uint8_t *codes8;         /* (n_out, n_groups, M) when B <= 8 */
    uint16_t *codes16;       /* (n_out, n_groups, M) when B > 8 */
    float *scales;           /* (n_out) */
    size_t bytes;            /* aqlm_bytes: the stored size (fp16 codebooks, B-bit codes, fp16 scales) */
} AqImpl;

static Status aq_forward(const QLinear *l, const float *x, int64_t T, float *y, Pool *pool, Err *err) {
    (void)err; /* without scratch the gather path runs: nothing here can fail */
    const AqImpl *im = l->impl;
    if (T <= 0) return ST_OK;
    /* Scratch per call; if an allocation fails the gather path needs none. */
    float *tile = NULL, *lut = NULL;
    size_t nt = aqlm_gemm_scratch_floats(&im->pk, T);
    if (nt) tile = malloc(nt * sizeof *tile);
    if (!tile && im->pk.codes8) lut = malloc(aqlm_lut_floats(&im->pk) * sizeof *lut);
    aqlm_gemm(&im->pk, x, T, y, lut, tile, pool);
    free(tile);
    free(lut);
    return ST_OK;
}

static size_t aq_bytes(const QLinear *l) { return ((const AqImpl *)l->impl)->bytes; }

static void aq_free(QLinear *l) {
    if (!l) return;
    AqImpl *im = l->impl;
    if (im) {
        free(im->cb);
        free(im->cbt);
        free(im->codes8);
        free(im->codes16);
        free(im->scales);
        free(im);
    }
    free(l);
}

static const QLinearOps aq_ops = {aq_forward, aq_bytes, aq_free};

int qlinear_is_aqlm(const QLinear *l) { return l && l->ops == &aq_ops; }

const char *qlinear_aqlm_kernel(const QLinear *l) {
    if (!qlinear_is_aqlm(l)) return NULL;
    return ((const AqImpl *)l->impl)->codes8 ? "aqlm-lut" : "aqlm-gather";
}

Status qlinear_aqlm_new(const AqlmTensor *t, QLinear **out, Err *err) {
    *out = NULL;
    Status st = aqlm_params_check(&t->p, t->n_out, t->n_in, err);
    if (st != ST_OK) return st;
    if (!t->codebooks || !t->codes || !t->scales || t->n_groups != t->n_in / t->p.g ||
        t->K != ((int64_t)1 << t->p.B))
        return err_set(err, ST_ERR_ARG, "aqlm layer: tensor %lldx%lld is incomplete or inconsistent",
                       (long long)t->n_out, (long long)t->n_in);
    int64_t M = t->p.M, K = t->K, g = t->p.g, ncodes = t->n_out * t->n_groups * M;
    for (int64_t q = 0; q < ncodes; q++)
        if (t->codes[q] >= K)
            return err_set(err, ST_ERR_RANGE, "aqlm layer: code %u at index %lld exceeds 2^%d - 1",
                           t->codes[q], (long long)q, t->p.B);
    QLinear *l = calloc(1, sizeof *l);
    AqImpl *im = calloc(1, sizeof *im);
    if (!l || !im) goto nomem;
    l->ops = &aq_ops;
    l->impl = im;
    l->n_out = t->n_out;
    l->n_in = t->n_in;
    im->p = t->p;
    im->cb = malloc((size_t)(M * K * g) * sizeof *im->cb);
    im->cbt = malloc((size_t)(M * K * g) * sizeof *im->cbt);
    im->scales = malloc((size_t)t->n_out * sizeof *im->scales);
    if (!im->cb || !im->cbt || !im->scales) goto nomem;
    memcpy(im->cb, t->codebooks, (size_t)(M * K * g) * sizeof *im->cb);
    memcpy(im->scales, t->scales, (size_t)t->n_out * sizeof *im->scales);
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++)
            for (int64_t a = 0; a < g; a++) im->cbt[(m * g + a) * K + k] = im->cb[(m * K + k) * g + a];
    if (t->p.B <= 8) {
        im->codes8 = malloc((size_t)ncodes);
        if (!im->codes8) goto nomem;
        for (int64_t q = 0; q < ncodes; q++) im->codes8[q] = (uint8_t)t->codes[q];
    } else {
        im->codes16 = malloc((size_t)ncodes * sizeof *im->codes16);
        if (!im->codes16) goto nomem;
        memcpy(im->codes16, t->codes, (size_t)ncodes * sizeof *im->codes16);
    }
    im->pk = (AqlmPacked){.M = t->p.M, .B = t->p.B, .g = t->p.g, .n_out = t->n_out, .n_in = t->n_in,
                          .n_groups = t->n_groups, .K = K, .cb = im->cb, .cbt = im->cbt,
                          .codes8 = im->codes8, .codes16 = im->codes16, .scales = im->scales};
    im->bytes = aqlm_bytes(&t->p, t->n_out, t->n_in);
    *out = l;
    return ST_OK;
nomem:
    if (l) l->impl = im;
    aq_free(l);
    if (!l) free(im);
    return err_set(err, ST_ERR_NOMEM, "aqlm layer %lldx%lld", (long long)t->n_out, (long long)t->n_in);
}
