#include "quant/rtn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fpconv.h"
#include "quant/ggml_type.h"

float rtn_fp16_ceil(float x) {
    if (!(x <= 65504.0f)) return INFINITY;
    uint16_t h = f32_to_fp16(x);
    if (fp16_to_f32(h) < x) h++;
    return fp16_to_f32(h);
}

Status qparams_check(const QParams *p, int64_t n_out, int64_t n_in, Err *err) {
    const QFormatTraits *t = qformat_traits(p->fmt);
    if (!t) return err_set(err, ST_ERR_ARG, "unknown weight format %d", (int)p->fmt);
    if (n_out <= 0 || n_in <= 0)
        return err_set(err, ST_ERR_ARG, "bad matrix shape (%lld, %lld)", (long long)n_out, (long long)n_in);
    if ((int)p->dim < 0 || p->dim >= GROUP_COUNT)
        return err_set(err, ST_ERR_ARG, "unknown grouping %d", (int)p->dim);
    if (t->family == QFAM_GGML) {
        const GgmlTypeTraits *g = ggml_type_traits((uint32_t)t->ggml_type);
        if (n_in % g->block_size)
            return err_set(err, ST_ERR_ARG, "%s needs rows of a multiple of %lld (input dim %lld)", t->name,
                           (long long)g->block_size, (long long)n_in);
        return ST_OK;
    }
    if (!t->needs_scale || p->dim == GROUP_TENSOR) return ST_OK;
    if (p->group < 0) return err_set(err, ST_ERR_ARG, "negative group size %lld", (long long)p->group);
    if (p->dim == GROUP_OC && p->group && n_in % p->group)
        return err_set(err, ST_ERR_ARG, "group %lld does not divide the input dim %lld",
                       (long long)p->group, (long long)n_in);
    if (p->dim == GROUP_IC && p->group && n_out % p->group)
        return err_set(err, ST_ERR_ARG, "group %lld does not divide the output dim %lld",
                       (long long)p->group, (long long)n_out);
    return ST_OK;
}

Status rtn_fit_group(QFormat f, int sym, float lo, float hi, float *scale, float *zero, Err *err) {
    const QFormatTraits *t = qformat_traits(f);
    *scale = 0.0f;
    *zero = 0.0f;
    if (!t || !t->fit) return err_set(err, ST_ERR_ARG, "format %s has no scales", t ? t->name : "?");
    return t->fit(t, sym, lo, hi, scale, zero, err);
}

float rtn_quant_value(QFormat f, int sym, float scale, float zero, float w, int *code) {
    const QFormatTraits *t = qformat_traits(f);
    return t->quant(t, sym, scale, zero, w, code);
}

float rtn_dequant_value(QFormat f, int sym, float scale, float zero, int code) {
    const QFormatTraits *t = qformat_traits(f);
    return t->dequant(t, sym, scale, zero, code);
}

/* Group ranges: lo/hi (n_groups) over W, with a finiteness check. */
static Status rtn_group_ranges(const float *W, int64_t n_out, int64_t n_in, const QParams *p, int64_t n_groups,
                               float *lo, float *hi, Err *err) {
    for (int64_t i = 0; i < n_groups; i++) { lo[i] = INFINITY; hi[i] = -INFINITY; }
    int64_t g = qparams_group_len(p, n_out, n_in);
    for (int64_t r = 0; r < n_out; r++) {
        const float *w = W + r * n_in;
        for (int64_t c = 0; c < n_in; c++)
            if (!isfinite(w[c]))
                return err_set(err, ST_ERR_NUMERIC, "weight (%lld, %lld) is not finite (%g)",
                               (long long)r, (long long)c, w[c]);
        /* plain compares: every value was just checked to be finite */
        if (p->dim == GROUP_IC) {
            float *l = lo + (r / g) * n_in, *h = hi + (r / g) * n_in;
            for (int64_t c = 0; c < n_in; c++) {
                l[c] = w[c] < l[c] ? w[c] : l[c];
                h[c] = w[c] > h[c] ? w[c] : h[c];
            }
        } else {
            int64_t gl = p->dim == GROUP_OC ? g : n_in;
            for (int64_t c0 = 0; c0 < n_in; c0 += gl) {
                int64_t gi = p->dim == GROUP_OC ? r * (n_in / g) + c0 / g : 0;
                float l = lo[gi], h = hi[gi];
                for (int64_t c = c0; c < c0 + gl; c++) {
                    l = w[c] < l ? w[c] : l;
                    h = w[c] > h ? w[c] : h;
                }
                lo[gi] = l;
                hi[gi] = h;
            }
        }
    }
    return ST_OK;
}

/* Fits every group of W (its ranges over all rows) into scale/zero (n_groups). */
static Status rtn_fit_all(const float *W, int64_t n_out, int64_t n_in, const QParams *p, int64_t n_groups,
                          float *scale, float *zero, Err *err) {
    float *lo = malloc((size_t)n_groups * sizeof *lo), *hi = malloc((size_t)n_groups * sizeof *hi);
    Status st = ST_OK;
    if (!lo || !hi) { st = err_set(err, ST_ERR_NOMEM, "rtn: %lld groups", (long long)n_groups); goto fail; }
    st = rtn_group_ranges(W, n_out, n_in, p, n_groups, lo, hi, err);
    if (st) goto fail;
    for (int64_t i = 0; i < n_groups; i++) {
        st = rtn_fit_group(p->fmt, p->sym, lo[i], hi[i], &scale[i], &zero[i], err);
        if (st) { err_wrap(err, "group %lld", (long long)i); goto fail; }
    }
fail:
    free(lo);
    free(hi);
    return st;
}

/* Quantizes row r of the matrix (its values w, n_in) with the fitted groups:
 * codes and/or represented values for that row (either may be NULL). */
static void rtn_row(const float *w, int64_t r, int64_t n_out, int64_t n_in, const QParams *p, const float *scale,
                    const float *zero, uint8_t *codes, float *wq) {
    int64_t g = qparams_group_len(p, n_out, n_in);
    const QFormatTraits *t = qformat_traits(p->fmt);
    int64_t base = p->dim == GROUP_IC ? (r / g) * n_in : p->dim == GROUP_OC ? r * (n_in / g) : 0;
    if (p->dim == GROUP_IC) { /* a scale per column of this row block */
        t->quant_span(t, p->sym, scale + base, zero + base, 1, w, n_in, codes, wq);
        return;
    }
    int64_t span = p->dim == GROUP_OC ? g : n_in; /* one span per group along the row */
    for (int64_t c0 = 0; c0 < n_in; c0 += span) {
        int64_t gi = p->dim == GROUP_OC ? base + c0 / g : 0;
        t->quant_span(t, p->sym, scale + gi, zero + gi, 0, w + c0, span, codes ? codes + c0 : NULL,
                      wq ? wq + c0 : NULL);
    }
}

/* Fits every group, then quantizes every element; writes the one-byte codes
 * (int or fp8, as QTensor holds them) to codes and the represented values to
 * wq (either may be NULL). scale/zero (n_groups) receive the group parameters. */
static Status rtn_run(const float *W, int64_t n_out, int64_t n_in, const QParams *p, int64_t n_groups,
                      float *scale, float *zero, uint8_t *codes, float *wq, Err *err) {
    Status st = rtn_fit_all(W, n_out, n_in, p, n_groups, scale, zero, err);
    if (st) return st;
    for (int64_t r = 0; r < n_out; r++)
        rtn_row(W + r * n_in, r, n_out, n_in, p, scale, zero, codes ? codes + r * n_in : NULL,
                wq ? wq + r * n_in : NULL);
    return ST_OK;
}

/* ggml block formats: each row through the type's reference quantizer into
 * blk (rows of ggml_row_bytes), and/or its represented values into wq (may
 * alias W: a row is quantized before its values are written). */
static Status rtn_ggml_rows(const QFormatTraits *t, const float *W, int64_t n_out, int64_t n_in, uint8_t *blk,
                            float *wq, const float *qw, Err *err) {
    const GgmlTypeTraits *g = ggml_type_traits((uint32_t)t->ggml_type);
    if (qw && !g->quant_w) return err_set(err, ST_ERR_UNSUPPORTED, "%s: no weighted (imatrix) quantizer", t->name);
    size_t rb = ggml_row_bytes((uint32_t)t->ggml_type, n_in);
    if (!g->quant_ref) return err_set(err, ST_ERR_UNSUPPORTED, "%s: no reference quantizer", t->name);
    uint8_t *tmp = blk ? NULL : malloc(rb);
    if (!blk && !tmp) return err_set(err, ST_ERR_NOMEM, "%s row", t->name);
    Status st = ST_OK;
    for (int64_t r = 0; r < n_out && !st; r++) {
        const float *w = W + r * n_in;
        for (int64_t c = 0; c < n_in; c++)
            if (!isfinite(w[c])) {
                st = err_set(err, ST_ERR_NUMERIC, "weight (%lld, %lld) is not finite (%g)", (long long)r, (long long)c, w[c]);
                break;
            }
        if (st) break;
        uint8_t *dst = blk ? blk + (size_t)r * rb : tmp;
        if (qw) g->quant_w(w, dst, n_in, qw);
        else g->quant_ref(w, dst, n_in);
        if (wq) g->dequant(dst, wq + r * n_in, n_in);
    }
    free(tmp);
    return st;
}

static Status rtn_check(const QParams *p, int64_t n_out, int64_t n_in, Err *err) {
    Status st = qparams_check(p, n_out, n_in, err);
    if (st) return st;
    const QFormatTraits *t = qformat_traits(p->fmt);
    if (!t->convert && !t->quant_span && t->family != QFAM_GGML)
        return err_set(err, ST_ERR_UNSUPPORTED, "%s is not an RTN format (use quant/%s)", t->name, t->name);
    return ST_OK;
}

Status qtensor_alloc(QTensor *out, const QParams *p, int64_t n_out, int64_t n_in, Err *err) {
    memset(out, 0, sizeof *out);
    Status st = qparams_check(p, n_out, n_in, err);
    if (st) return st;
    const QFormatTraits *t = qformat_traits(p->fmt);
    size_t n = (size_t)n_out * (size_t)n_in;
    out->p = *p;
    out->n_out = n_out;
    out->n_in = n_in;
    out->n_groups = qparams_n_groups(p, n_out, n_in);
    size_t nbytes = t->family == QFAM_GGML ? (size_t)n_out * ggml_row_bytes((uint32_t)t->ggml_type, n_in)
                                           : n * t->code_bytes;
    void *codes = nbytes ? core_calloc(nbytes, 1) : NULL;
    switch (t->store) {
    case QSTORE_I8: out->q = codes; break;
    case QSTORE_U8: out->f8 = codes; break;
    case QSTORE_U16: out->h = codes; break;
    case QSTORE_F32: out->f = codes; break;
    case QSTORE_BLOCKS: out->blk = codes; break;
    default: break;
    }
    int bad = nbytes && !codes;
    /* Symmetric and fp8 tensors carry no zero points (documented as NULL). */
    int asym = t->is_int && !p->sym;
    if (out->n_groups) {
        out->scale = core_calloc((size_t)out->n_groups, sizeof(float));
        if (asym) out->zero = core_calloc((size_t)out->n_groups, sizeof(float));
        bad |= !out->scale || (asym && !out->zero);
    }
    if (bad) {
        qtensor_done(out);
        return err_set(err, ST_ERR_NOMEM, "quantized tensor (%lld, %lld)", (long long)n_out, (long long)n_in);
    }
    return ST_OK;
}

Status rtn_quantize(const float *W, int64_t n_out, int64_t n_in, const QParams *p, QTensor *out, Err *err) {
    memset(out, 0, sizeof *out);
    Status st = rtn_check(p, n_out, n_in, err);
    if (st) return st;
    st = qtensor_alloc(out, p, n_out, n_in, err);
    if (st) return st;
    const QFormatTraits *t = qformat_traits(p->fmt);
    if (t->convert) {
        t->convert(W, qtensor_codes(out), (size_t)n_out * (size_t)n_in);
        return ST_OK;
    }
    if (t->family == QFAM_GGML) {
        st = rtn_ggml_rows(t, W, n_out, n_in, out->blk, NULL, NULL, err);
        if (st) qtensor_done(out);
        return st;
    }
    float *zero = out->zero;
    float *ztmp = NULL;
    if (!zero) {
        ztmp = core_calloc((size_t)out->n_groups, sizeof(float));
        if (!ztmp) { qtensor_done(out); return err_set(err, ST_ERR_NOMEM, "rtn zero points"); }
        zero = ztmp;
    }
    st = rtn_run(W, n_out, n_in, p, out->n_groups, out->scale, zero, qtensor_codes(out), NULL, err);
    free(ztmp);
    if (st) qtensor_done(out);
    return st;
}

Status rtn_quantize_weighted(const float *W, int64_t n_out, int64_t n_in, const QParams *p, const float *qw,
                             QTensor *out, Err *err) {
    memset(out, 0, sizeof *out);
    const QFormatTraits *t = qformat_traits(p->fmt);
    if (!t || t->family != QFAM_GGML || !ggml_type_traits((uint32_t)t->ggml_type)->quant_w)
        return err_set(err, ST_ERR_UNSUPPORTED, "%s has no weighted (imatrix) quantizer", t ? t->name : "?");
    Status st = rtn_check(p, n_out, n_in, err);
    if (!st) st = qtensor_alloc(out, p, n_out, n_in, err);
    if (st) return st;
    st = rtn_ggml_rows(t, W, n_out, n_in, out->blk, NULL, qw, err);
    if (st) qtensor_done(out);
    return st;
}

Status rtn_fake_quantize(const float *W, int64_t n_out, int64_t n_in, const QParams *p, float *Wq, Err *err) {
    Status st = rtn_check(p, n_out, n_in, err);
    if (st) return st;
    size_t n = (size_t)n_out * (size_t)n_in;
    const QFormatTraits *t = qformat_traits(p->fmt);
    if (t->convert) { /* a chunk is read whole before it is written back, so Wq may alias W */
        float buf[256];
        for (size_t i = 0; i < n; i += 256) {
            size_t k = n - i < 256 ? n - i : 256;
            t->convert(W + i, buf, k);
            t->decode(buf, Wq + i, k);
        }
        return ST_OK;
    }
    if (t->family == QFAM_GGML) return rtn_ggml_rows(t, W, n_out, n_in, NULL, Wq, NULL, err);
    int64_t ng = qparams_n_groups(p, n_out, n_in);
    float *scale = core_calloc((size_t)ng, sizeof(float)), *zero = core_calloc((size_t)ng, sizeof(float));
    if (!scale || !zero) st = err_set(err, ST_ERR_NOMEM, "rtn: %lld groups", (long long)ng);
    /* Ranges are taken before any element is written, so Wq may alias W. */
    else st = rtn_run(W, n_out, n_in, p, ng, scale, zero, NULL, Wq, err);
    free(scale);
    free(zero);
    return st;
}

/* rtn_fit's and rtn_fit_ranges' common part: checks p, fills out's shape
 * and, for a format with groups, allocates its scale and zero (n_groups). */
static Status fit_begin(const QParams *p, int64_t n_out, int64_t n_in, RtnFit *out, Err *err) {
    memset(out, 0, sizeof *out);
    Status st = rtn_check(p, n_out, n_in, err);
    if (st) return st;
    out->p = *p;
    out->n_out = n_out;
    out->n_in = n_in;
    const QFormatTraits *t = qformat_traits(p->fmt);
    if (t->convert || t->family == QFAM_GGML) return ST_OK; /* no groups: rows are independent */
    int64_t ng = qparams_n_groups(p, n_out, n_in);
    out->n_groups = ng;
    out->scale = core_calloc((size_t)ng, sizeof(float));
    out->zero = core_calloc((size_t)ng, sizeof(float));
    if (!out->scale || !out->zero) {
        rtn_fit_done(out);
        return err_set(err, ST_ERR_NOMEM, "rtn: %lld groups", (long long)ng);
    }
    return ST_OK;
}

Status rtn_fit(const float *W, int64_t n_out, int64_t n_in, const QParams *p, RtnFit *out, Err *err) {
    Status st = fit_begin(p, n_out, n_in, out, err);
    if (st || !out->scale) return st;
    if ((st = rtn_fit_all(W, n_out, n_in, p, out->n_groups, out->scale, out->zero, err))) rtn_fit_done(out);
    return st;
}

Status rtn_ranges(const float *W, int64_t n_out, int64_t n_in, const QParams *p, float *lo, float *hi, Err *err) {
    Status st = rtn_check(p, n_out, n_in, err);
    if (st) return st;
    return rtn_group_ranges(W, n_out, n_in, p, qparams_n_groups(p, n_out, n_in), lo, hi, err);
}

Status rtn_fit_ranges(const QParams *p, int64_t n_out, int64_t n_in, const float *lo, const float *hi, RtnFit *out,
                      Err *err) {
    Status st = fit_begin(p, n_out, n_in, out, err);
    if (st || !out->scale) return st;
    for (int64_t i = 0; i < out->n_groups && !st; i++)
        if ((st = rtn_fit_group(p->fmt, p->sym, lo[i], hi[i], &out->scale[i], &out->zero[i], err)))
            err_wrap(err, "group %lld", (long long)i);
    if (st) rtn_fit_done(out);
    return st;
}

Status rtn_fit_rows(const RtnFit *f, const float *W, const int64_t *rows, int64_t n_rows, float *Wq, Err *err) {
    const QParams *p = &f->p;
    int64_t n_out = f->n_out, n_in = f->n_in;
    Status st = ST_OK;
    for (int64_t k = 0; k < n_rows; k++)
        if (rows[k] < 0 || rows[k] >= n_out)
            return err_set(err, ST_ERR_ARG, "rtn: row %lld of a %lld-row matrix", (long long)rows[k], (long long)n_out);
    const QFormatTraits *t = qformat_traits(p->fmt);
    if (t->convert) {
        float buf[256];
        for (int64_t k = 0; k < n_rows; k++)
            for (int64_t i = 0; i < n_in; i += 256) {
                int64_t m = n_in - i < 256 ? n_in - i : 256;
                t->convert(W + rows[k] * n_in + i, buf, (size_t)m);
                t->decode(buf, Wq + k * n_in + i, (size_t)m);
            }
        return ST_OK;
    }
    if (t->family == QFAM_GGML) { /* each row as the whole matrix's quantization gives it */
        for (int64_t k = 0; k < n_rows && !st; k++)
            if ((st = rtn_ggml_rows(t, W + rows[k] * n_in, 1, n_in, NULL, Wq + k * n_in, NULL, err)))
                err_wrap(err, "row %lld", (long long)rows[k]);
        return st;
    }
    if (!f->scale) return err_set(err, ST_ERR_ARG, "rtn: %s rows without a fit", t->name);
    for (int64_t k = 0; k < n_rows; k++)
        rtn_row(W + rows[k] * n_in, rows[k], n_out, n_in, p, f->scale, f->zero, NULL, Wq + k * n_in);
    return ST_OK;
}

void rtn_fit_done(RtnFit *f) {
    free(f->scale);
    free(f->zero);
    memset(f, 0, sizeof *f);
}

void qtensor_dequant(const QTensor *q, float *W) {
    size_t n = (size_t)q->n_out * (size_t)q->n_in;
    const QParams *p = &q->p;
    const QFormatTraits *t = qformat_traits(p->fmt);
    if (t->decode) {
        t->decode(qtensor_codes(q), W, n);
        return;
    }
    if (t->family == QFAM_GGML) {
        const GgmlTypeTraits *g = ggml_type_traits((uint32_t)t->ggml_type);
        size_t rb = ggml_row_bytes((uint32_t)t->ggml_type, q->n_in);
        for (int64_t r = 0; r < q->n_out; r++) g->dequant(q->blk + (size_t)r * rb, W + r * q->n_in, q->n_in);
        return;
    }
    for (int64_t r = 0; r < q->n_out; r++)
        for (int64_t c = 0; c < q->n_in; c++) {
            int64_t gi = qtensor_group_of(p, q->n_out, q->n_in, r, c);
            size_t i = (size_t)r * (size_t)q->n_in + (size_t)c;
            int code = q->q ? q->q[i] : q->f8[i];
            W[i] = t->dequant(t, p->sym, q->scale[gi], q->zero ? q->zero[gi] : 0.0f, code);
        }
}

void qtensor_done(QTensor *q) {
    if (!q) return;
    free(q->q);
    free(q->f8);
    free(q->h);
    free(q->f);
    free(q->blk);
    free(q->scale);
    free(q->zero);
    memset(q, 0, sizeof *q);
}

int64_t qparams_bits(const QParams *p, int64_t n_out, int64_t n_in) {
    const QFormatTraits *t = qformat_traits(p->fmt);
    if (!t || t->family == QFAM_AQLM) return 0;
    if (t->family == QFAM_GGML) return (int64_t)qparams_bytes(p, n_out, n_in) * 8;
    int64_t n = n_out * n_in;
    int64_t ng = qparams_n_groups(p, n_out, n_in);
    int64_t zbits = t->is_int && !p->sym ? ng * t->bits : 0;
    return n * t->bits + ng * 16 + zbits;
}

size_t qparams_bytes(const QParams *p, int64_t n_out, int64_t n_in) {
    const QFormatTraits *t = qformat_traits(p->fmt);
    if (!t || t->family == QFAM_AQLM) return 0;
    if (t->family == QFAM_GGML) return (size_t)n_out * ggml_row_bytes((uint32_t)t->ggml_type, n_in);
    size_t n = (size_t)n_out * (size_t)n_in;
    size_t ng = (size_t)qparams_n_groups(p, n_out, n_in);
    size_t zbits = t->is_int && !p->sym ? ng * (size_t)t->bits : 0;
    return (n * (size_t)t->bits + 7) / 8 + 2 * ng + (zbits + 7) / 8;
}
