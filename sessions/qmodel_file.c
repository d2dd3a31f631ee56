/* Quantized-model files (see the header for the layout). */
#include "sessions/qmodel_file.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bytes.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "quant/format.h"
#include "quant/ggml_type.h"
#include "quant/qtensor.h"
#include "quant/rtn.h"
#include "sessions/plan_json.h"

/* === Writing === */

/* Integer codes are stored bit-packed: u = code + 2^(bits-1) in [0, 2^bits),
 * element i at bits [i·bits, i·bits + bits) of a little-endian bit stream. */
static size_t packed_bytes(int64_t n, int bits) { return (size_t)((n * bits + 7) / 8); }

static uint8_t *pack_codes(const int8_t *q, int64_t n, int bits) {
    uint8_t *out = calloc(packed_bytes(n, bits) + 1, 1);
    if (!out) return NULL;
    int half = 1 << (bits - 1);
    int64_t i = 0;
    size_t o = 0;
    if (8 % bits == 0) {
        /* whole bytes of 8 / bits codes (int2, int4, int8: the common formats)
         * in a loop the compiler vectorizes; the same stream as below */
        int per = 8 / bits;
        if (bits == 4)
            for (; i + 2 <= n; i += 2, o++) out[o] = (uint8_t)((unsigned)(q[i] + 8) | (unsigned)(q[i + 1] + 8) << 4);
        for (; i + per <= n; i += per, o++) {
            unsigned b = 0;
            for (int k = 0; k < per; k++) b |= (unsigned)(q[i + k] + half) << (k * bits);
            out[o] = (uint8_t)b;
        }
    }
    /* bits <= 8: the stream advances a byte at a time through a 64-bit window */
    uint64_t acc = 0;
    int have = 0;
    for (; i < n; i++) {
        acc |= (uint64_t)(uint32_t)(q[i] + half) << have;
        for (have += bits; have >= 8; have -= 8, acc >>= 8) out[o++] = (uint8_t)acc;
    }
    if (have) out[o] = (uint8_t)acc;
    return out;
}

static void unpack_codes(const uint8_t *in, int64_t n, int bits, int8_t *q) {
    int half = 1 << (bits - 1);
    uint64_t acc = 0, mask = ((uint64_t)1 << bits) - 1;
    int have = 0;
    size_t o = 0;
    int64_t i = 0;
    if (8 % bits == 0) { /* whole bytes, as in pack_codes */
        int per = 8 / bits;
        if (bits == 4)
            for (; i + 2 <= n; i += 2, o++) {
                q[i] = (int8_t)((in[o] & 15) - 8);
                q[i + 1] = (int8_t)((in[o] >> 4) - 8);
            }
        for (; i + per <= n; i += per, o++)
            for (int k = 0; k < per; k++) q[i + k] = (int8_t)((int)((in[o] >> (k * bits)) & mask) - half);
    }
    for (; i < n; i++) {
        for (; have < bits; have += 8) acc |= (uint64_t)in[o++] << have;
        q[i] = (int8_t)((int)(acc & mask) - half);
        acc >>= bits;
        have -= bits;
    }
}

void qmodel_file_put_site(ByteWriter *w, const QStoredSite *s) {
    bytes_put_u8(w, (uint8_t)s->kind);
    bytes_put(w, &s->act_absmax, 4);
    bytes_put_i32(w, (int32_t)s->adadim_dim);
    bytes_put(w, &s->rel_err, 8);
    if (s->kind == QSITE_QTENSOR) {
        const QTensor *q = &s->q;
        bytes_put_i32(w, (int32_t)q->p.fmt);
        bytes_put_i32(w, q->p.sym);
        bytes_put_i32(w, (int32_t)q->p.dim);
        bytes_put_i64(w, q->p.group);
        bytes_put_i64(w, q->n_out);
        bytes_put_i64(w, q->n_in);
        bytes_put_i64(w, q->n_groups);
        const QFormatTraits *t = qformat_traits(q->p.fmt);
        if (t->is_int) {
            uint8_t *pk = pack_codes(q->q, q->n_out * q->n_in, t->bits);
            if (!pk) bytes_fail(w, ST_ERR_NOMEM, "packing codes");
            else bytes_put(w, pk, packed_bytes(q->n_out * q->n_in, t->bits));
            free(pk);
        } else if (t->store == QSTORE_BLOCKS) {
            bytes_put(w, q->blk, (size_t)q->n_out * ggml_row_bytes((uint32_t)t->ggml_type, q->n_in));
        } else {
            bytes_put(w, qtensor_codes(q), (size_t)(q->n_out * q->n_in) * t->code_bytes);
        }
        if (q->n_groups) bytes_put(w, q->scale, (size_t)q->n_groups * 4);
        if (t->is_int && !q->p.sym) { /* exactly when read_qtensor reads them */
            if (!q->zero) bytes_fail(w, ST_ERR_ARG, "an asymmetric tensor without zero points");
            else bytes_put(w, q->zero, (size_t)q->n_groups * 4);
        }
    } else if (s->kind == QSITE_AQLM) {
        const AqlmTensor *a = &s->a;
        bytes_put_i32(w, a->p.M);
        bytes_put_i32(w, a->p.B);
        bytes_put_i32(w, a->p.g);
        bytes_put_i64(w, a->n_out);
        bytes_put_i64(w, a->n_in);
        bytes_put(w, a->codebooks, (size_t)(a->p.M * a->K * a->p.g) * 4);
        bytes_put(w, a->codes, (size_t)(a->n_out * a->n_groups * a->p.M) * 2);
        bytes_put(w, a->scales, (size_t)a->n_out * 4);
    }
}

Status qmodel_file_save(const QModel *qm, const Plan *p, const char *path, Err *err) {
    const QStored *s = qm->stored;
    if (!s) return err_set(err, ST_ERR_STATE, "%s: the quantized model kept no weights (build it with qmodel_build_keep)", path);
    char *json = NULL;
    Status st = plan_json_write(p, &json, err);
    if (st) return st;
    AtomicFile af;
    if ((st = afile_open(&af, path, err))) {
        free(json);
        return st;
    }
    ByteWriter w;
    bytes_writer_init(&w, &af, err);
    uint32_t ver = QMODEL_FILE_VERSION, jl = (uint32_t)strlen(json);
    bytes_put(&w, "QSQM", 4);
    bytes_put(&w, &ver, 4);
    bytes_put(&w, &s->fingerprint, 8);
    bytes_put_i64(&w, s->n_layers);
    bytes_put_i64(&w, s->dim);
    bytes_put_i64(&w, s->vocab);
    bytes_put(&w, &jl, 4);
    bytes_put(&w, json, jl);
    bytes_put(&w, s->smoothed, (size_t)(s->n_layers * 2));
    bytes_put_u8(&w, s->attn_norm != NULL);
    bytes_put_u8(&w, s->ffn_norm != NULL);
    if (s->attn_norm) bytes_put(&w, s->attn_norm, (size_t)(s->n_layers * s->dim) * 4);
    if (s->ffn_norm) bytes_put(&w, s->ffn_norm, (size_t)(s->n_layers * s->dim) * 4);
    for (int64_t i = 0; i < s->n_layers * PROJ_COUNT + 2; i++) qmodel_file_put_site(&w, &s->sites[i]);
    free(json);
    if ((st = bytes_put_hash(&w))) {
        afile_abort(&af);
        return st;
    }
    return afile_commit(&af, err);
}

/* === Reading === */

/* Reads n elements of size sz into a new array (*dst), bounded by the file. */
static Status get_arr(ByteReader *r, void **dst, int64_t n, size_t sz, const char *field, Err *err) {
    *dst = NULL;
    if (n < 0 || (uint64_t)n > (r->n - r->off) / (sz ? sz : 1))
        return err_set(err, ST_ERR_FORMAT, "%s: %s at offset %zu: %lld elements do not fit in the file", r->path, field,
                       r->off, (long long)n);
    *dst = malloc((size_t)n * sz + 1);
    if (!*dst) return err_set(err, ST_ERR_NOMEM, "%s: %s", r->path, field);
    return bytes_read(r, *dst, (size_t)n * sz, field, err);
}

#define BADF(...) err_set(err, ST_ERR_FORMAT, __VA_ARGS__)

static Status read_qtensor(ByteReader *r, QTensor *q, const char *site, Err *err) {
    int32_t fmt = 0, sym = 0, dim = 0;
    int64_t group = 0, n_out = 0, n_in = 0, n_groups = 0;
    size_t at = r->off;
    Status st;
    if ((st = bytes_read(r, &fmt, 4, "format", err)) || (st = bytes_read(r, &sym, 4, "sym", err)) ||
        (st = bytes_read(r, &dim, 4, "group_dim", err)) || (st = bytes_read(r, &group, 8, "group", err)) ||
        (st = bytes_read(r, &n_out, 8, "n_out", err)) || (st = bytes_read(r, &n_in, 8, "n_in", err)) ||
        (st = bytes_read(r, &n_groups, 8, "n_groups", err)))
        return st;
    const QFormatTraits *t = qformat_traits((QFormat)fmt);
    if (!t || t->store == QSTORE_NONE || (sym != 0 && sym != 1) || dim < 0 || dim >= GROUP_COUNT || n_out < 1 || n_in < 1 ||
        n_out > (1 << 24) || n_in > (1 << 24))
        return BADF("%s: site %s at offset %zu: bad tensor header (format %d, sym %d, dim %d, %lld x %lld)", r->path, site,
                    at, fmt, sym, dim, (long long)n_out, (long long)n_in);
    QParams p = {(QFormat)fmt, sym, (GroupDim)dim, group};
    Err e2;
    err_init(&e2);
    if (qparams_check(&p, n_out, n_in, &e2)) return BADF("%s: site %s at offset %zu: %s", r->path, site, at, e2.detail);
    if (n_groups != qparams_n_groups(&p, n_out, n_in))
        return BADF("%s: site %s at offset %zu: %lld groups, expected %lld", r->path, site, at, (long long)n_groups,
                    (long long)qparams_n_groups(&p, n_out, n_in));
    q->p = p;
    q->n_out = n_out;
    q->n_in = n_in;
    q->n_groups = n_groups;
    int64_t n = n_out * n_in;
    size_t cb = t->code_bytes;
    void *codes = NULL;
    size_t coff = r->off;
    if (t->is_int) {
        size_t pb = packed_bytes(n, t->bits);
        if ((st = bytes_need(r, pb, "codes", err))) return st;
        codes = malloc((size_t)n + 1);
        if (!codes) return err_set(err, ST_ERR_NOMEM, "%s: codes", r->path);
        unpack_codes(r->p + r->off, n, t->bits, codes); /* straight from the bytes read */
        r->off += pb;
    } else if (t->store == QSTORE_BLOCKS) {
        if ((st = get_arr(r, &codes, n_out, ggml_row_bytes((uint32_t)t->ggml_type, n_in), "blocks", err))) {
            free(codes);
            return st;
        }
    } else if ((st = get_arr(r, &codes, n, cb, "codes", err))) {
        free(codes);
        return st;
    }
    switch (t->store) {
    case QSTORE_F32: q->f = codes; break;
    case QSTORE_U16: q->h = codes; break;
    case QSTORE_U8: q->f8 = codes; break;
    case QSTORE_BLOCKS: q->blk = codes; break;
    default: q->q = codes; break;
    }
    if (t->is_int) {
        int bits = t->bits, lo = sym ? -((1 << (bits - 1)) - 1) : -(1 << (bits - 1)), hi = sym ? (1 << (bits - 1)) - 1 : (1 << (bits - 1)) - 1;
        for (int64_t i = 0; i < n; i++)
            if (q->q[i] < lo || q->q[i] > hi)
                return BADF("%s: site %s codes at offset %zu: code %d at element %lld is outside [%d, %d] for %s", r->path,
                            site, coff, q->q[i], (long long)i, lo, hi, t->name);
    }
    if (t->store == QSTORE_F32)
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(q->f[i])) return BADF("%s: site %s codes at offset %zu: non-finite weight", r->path, site, coff);
    if (t->store == QSTORE_BLOCKS) { /* block scales are fp16: a NaN or inf one makes every weight of its block so */
        float *row = malloc((size_t)n_in * sizeof *row);
        if (!row) return err_set(err, ST_ERR_NOMEM, "%s: a row", r->path);
        const GgmlTypeTraits *g = ggml_type_traits((uint32_t)t->ggml_type);
        size_t rb = ggml_row_bytes((uint32_t)t->ggml_type, n_in);
        int bad = 0;
        for (int64_t o = 0; o < n_out && !bad; o++) {
            g->dequant(q->blk + (size_t)o * rb, row, n_in);
            for (int64_t i = 0; i < n_in && !bad; i++) bad = !isfinite(row[i]);
        }
        free(row);
        if (bad) return BADF("%s: site %s blocks at offset %zu: a non-finite block scale", r->path, site, coff);
    }
    if (n_groups) {
        size_t so = r->off;
        if ((st = get_arr(r, (void **)&q->scale, n_groups, 4, "scales", err))) return st;
        for (int64_t i = 0; i < n_groups; i++)
            if (!isfinite(q->scale[i]) || q->scale[i] < 0)
                return BADF("%s: site %s scales at offset %zu: scale %lld is %g", r->path, site, so, (long long)i, q->scale[i]);
        if (t->is_int && !sym) {
            so = r->off;
            if ((st = get_arr(r, (void **)&q->zero, n_groups, 4, "zero points", err))) return st;
            float zmax = (float)((1 << t->bits) - 1);
            for (int64_t i = 0; i < n_groups; i++)
                if (!(q->zero[i] >= 0 && q->zero[i] <= zmax) || q->zero[i] != floorf(q->zero[i]))
                    return BADF("%s: site %s zero points at offset %zu: zero point %lld is %g", r->path, site, so, (long long)i,
                                q->zero[i]);
        }
    }
    return ST_OK;
}

static Status read_aqlm(ByteReader *r, AqlmTensor *a, const char *site, Err *err) {
    size_t at = r->off;
    Status st;
    if ((st = bytes_read(r, &a->p.M, 4, "aqlm M", err)) || (st = bytes_read(r, &a->p.B, 4, "aqlm B", err)) ||
        (st = bytes_read(r, &a->p.g, 4, "aqlm g", err)) || (st = bytes_read(r, &a->n_out, 8, "n_out", err)) ||
        (st = bytes_read(r, &a->n_in, 8, "n_in", err)))
        return st;
    Err e2;
    err_init(&e2);
    if (a->n_out > (1 << 24) || a->n_in > (1 << 24) || aqlm_params_check(&a->p, a->n_out, a->n_in, &e2))
        return BADF("%s: site %s at offset %zu: %s", r->path, site, at, e2.detail[0] ? e2.detail : "bad shape");
    a->K = (int64_t)1 << a->p.B;
    a->n_groups = a->n_in / a->p.g;
    if ((st = get_arr(r, (void **)&a->codebooks, a->p.M * a->K * a->p.g, 4, "codebooks", err))) return st;
    size_t co = r->off;
    int64_t nc = a->n_out * a->n_groups * a->p.M;
    if ((st = get_arr(r, (void **)&a->codes, nc, 2, "aqlm codes", err))) return st;
    for (int64_t i = 0; i < nc; i++)
        if (a->codes[i] >= a->K)
            return BADF("%s: site %s aqlm codes at offset %zu: code %u >= %lld", r->path, site, co, a->codes[i], (long long)a->K);
    if ((st = get_arr(r, (void **)&a->scales, a->n_out, 4, "aqlm scales", err))) return st;
    for (int64_t i = 0; i < a->p.M * a->K * a->p.g; i++)
        if (!isfinite(a->codebooks[i])) return BADF("%s: site %s: non-finite codebook entry", r->path, site);
    for (int64_t i = 0; i < a->n_out; i++)
        if (!isfinite(a->scales[i])) return BADF("%s: site %s: non-finite aqlm scale", r->path, site);
    return ST_OK;
}

Status qmodel_file_read_site(ByteReader *r, QStoredSite *x, const char *site, Err *err) {
    memset(x, 0, sizeof *x);
    uint8_t kind;
    int32_t ad;
    size_t so = r->off;
    Status st;
    if ((st = bytes_read(r, &kind, 1, "site kind", err)) || (st = bytes_read(r, &x->act_absmax, 4, "act_absmax", err)) ||
        (st = bytes_read(r, &ad, 4, "adadim_dim", err)) || (st = bytes_read(r, &x->rel_err, 8, "rel_err", err)))
        return st;
    if (kind > QSITE_AQLM || ad < 0 || ad >= GROUP_COUNT || !isfinite(x->act_absmax) || x->act_absmax < 0 ||
        !isfinite(x->rel_err))
        return BADF("%s: site %s at offset %zu: bad header (kind %u, adadim %d)", r->path, site, so, kind, ad);
    x->kind = (QSiteKind)kind;
    x->adadim_dim = (GroupDim)ad;
    if (kind == QSITE_QTENSOR) st = read_qtensor(r, &x->q, site, err);
    if (kind == QSITE_AQLM) st = read_aqlm(r, &x->a, site, err);
    if (st) { /* the caller's array is freed with qstored_free, but a lone site must not leak */
        qtensor_done(&x->q);
        aqlm_tensor_done(&x->a);
        memset(x, 0, sizeof *x);
    }
    return st;
}

Status qmodel_file_load(const char *path, const Model *m, Plan *plan, QStored **out, Err *err) {
    *out = NULL;
    plan_init(plan);
    char *data = NULL, *json = NULL;
    size_t len = 0;
    Status st = file_read_all(path, (size_t)1 << 40, &data, &len, err);
    if (st) return st;
    ByteReader r;
    bytes_init(&r, data, len, path);
    QStored *s = calloc(1, sizeof *s);
    if (!s) {
        st = err_set(err, ST_ERR_NOMEM, "%s", path);
        goto fail;
    }
    char magic[4];
    uint32_t ver, jl;
    if ((st = bytes_read(&r, magic, 4, "magic", err))) goto fail;
    if (memcmp(magic, "QSQM", 4)) {
        st = BADF("%s: magic at offset 0: not a qscope quantized-model file", path);
        goto fail;
    }
    if ((st = bytes_read(&r, &ver, 4, "version", err))) goto fail;
    if (ver != QMODEL_FILE_VERSION) {
        st = BADF("%s: version at offset 4: %u, expected %u", path, ver, QMODEL_FILE_VERSION);
        goto fail;
    }
    if ((st = bytes_read(&r, &s->fingerprint, 8, "fingerprint", err)) ||
        (st = bytes_read(&r, &s->n_layers, 8, "n_layers", err)) || (st = bytes_read(&r, &s->dim, 8, "dim", err)) ||
        (st = bytes_read(&r, &s->vocab, 8, "vocab", err)))
        goto fail;
    if (s->fingerprint != m->fingerprint || s->n_layers != m->cfg.n_layers || s->dim != m->cfg.dim ||
        s->vocab != m->cfg.vocab_size) {
        st = err_set(err, ST_ERR_MISMATCH, "%s: made from another model (fingerprint %016llx, %lld layers; %s is %016llx, %lld layers)",
                     path, (unsigned long long)s->fingerprint, (long long)s->n_layers, m->path ? m->path : "the model",
                     (unsigned long long)m->fingerprint, (long long)m->cfg.n_layers);
        goto fail;
    }
    if ((st = bytes_read(&r, &jl, 4, "plan length", err))) goto fail;
    size_t jo = r.off;
    if ((st = get_arr(&r, (void **)&json, jl, 1, "plan", err))) goto fail;
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    char where[600];
    snprintf(where, sizeof where, "%s: plan at offset %zu", path, jo);
    if ((st = plan_json_read(json, jl, where, &pm, plan, err))) goto fail;
    int64_t L = s->n_layers, ns = L * PROJ_COUNT;
    if ((st = get_arr(&r, (void **)&s->smoothed, L * 2, 1, "smoothed", err))) goto fail;
    uint8_t has[2];
    if ((st = bytes_read(&r, has, 2, "gain flags", err))) goto fail;
    if (has[0] > 1 || has[1] > 1) {
        st = BADF("%s: gain flags at offset %zu: %u %u", path, r.off - 2, has[0], has[1]);
        goto fail;
    }
    if (has[0] && (st = get_arr(&r, (void **)&s->attn_norm, L * s->dim, 4, "attn gains", err))) goto fail;
    if (has[1] && (st = get_arr(&r, (void **)&s->ffn_norm, L * s->dim, 4, "ffn gains", err))) goto fail;
    for (int64_t l = 0; l < L; l++)
        if (s->smoothed[l * 2] > 1 || s->smoothed[l * 2 + 1] > 1 || (s->smoothed[l * 2] && !has[0]) ||
            (s->smoothed[l * 2 + 1] && !has[1])) {
            st = BADF("%s: smoothed flags: layer %lld has no stored gains", path, (long long)l);
            goto fail;
        }
    s->sites = calloc((size_t)(ns + 2), sizeof *s->sites);
    if (!s->sites) {
        st = err_set(err, ST_ERR_NOMEM, "%s: sites", path);
        goto fail;
    }
    for (int64_t i = 0; i < ns + 2; i++) {
        QStoredSite *x = &s->sites[i];
        char site[32];
        if (i < ns) snprintf(site, sizeof site, "%lld.%s", (long long)(i / PROJ_COUNT), proj_name((Proj)(i % PROJ_COUNT)));
        else snprintf(site, sizeof site, "%s", i == ns ? "output" : "embed");
        if ((st = qmodel_file_read_site(&r, x, site, err))) goto fail;
    }
    size_t body = r.off;
    uint64_t h;
    if ((st = bytes_read(&r, &h, 8, "checksum", err))) goto fail;
    if (h != hash_bytes(HASH_SEED, data, body)) {
        st = BADF("%s: checksum at offset %zu does not match the contents", path, body);
        goto fail;
    }
    if (r.off != len) {
        st = BADF("%s: %zu trailing bytes at offset %zu", path, len - r.off, r.off);
        goto fail;
    }
    free(json);
    free(data);
    *out = s;
    return ST_OK;
fail:
    free(json);
    free(data);
    qstored_free(s);
    plan_done(plan);
    return st;
}
