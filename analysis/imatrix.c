#include "analysis/imatrix.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/atomicfile.h"
#include "core/bytes.h"
#include "core/mapfile.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "quant/ggml_type.h"

static const char *const PROJ_T[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
static const TapPoint PROJ_TAP[7] = {TAP_QKV, TAP_QKV, TAP_QKV, TAP_O, TAP_GATE_UP, TAP_GATE_UP, TAP_DOWN};

void imatrix_free(Imatrix *im) {
    if (!im) return;
    for (int64_t i = 0; i < im->n_entries; i++) free(im->e[i].sum2);
    free(im->e);
    free(im);
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const ImatrixEntry *)a)->name, ((const ImatrixEntry *)b)->name);
}

const ImatrixEntry *imatrix_find(const Imatrix *im, const char *name) {
    for (int64_t i = 0; i < im->n_entries; i++)
        if (!strcmp(im->e[i].name, name)) return &im->e[i];
    return NULL;
}

/* An empty Imatrix with room for n entries (each sum2 allocated by the caller). */
static Imatrix *imatrix_alloc(int64_t n) {
    Imatrix *im = core_calloc(1, sizeof *im);
    if (!im) return NULL;
    im->e = core_calloc((size_t)(n > 0 ? n : 1), sizeof *im->e);
    if (!im->e) {
        free(im);
        return NULL;
    }
    return im;
}

Status imatrix_from_stats(const CalibStats *cs, Imatrix **out, Err *err) {
    *out = NULL;
    if (cs->n_tokens <= 0) return err_set(err, ST_ERR_ARG, "imatrix: the calibration saw no tokens");
    int64_t n = cs->n_layers * 7;
    Imatrix *im = imatrix_alloc(n);
    if (!im) return err_set(err, ST_ERR_NOMEM, "imatrix");
    for (int64_t l = 0; l < cs->n_layers; l++)
        for (int pj = 0; pj < 7; pj++) {
            const TapStats *ts = calib_tap(cs, l, PROJ_TAP[pj]);
            ImatrixEntry *e = &im->e[im->n_entries];
            snprintf(e->name, sizeof e->name, "blk.%" PRId64 ".%s.weight", l, PROJ_T[pj]);
            e->n = ts->width;
            e->count = (double)ts->n_rows;
            if (!(e->sum2 = malloc((size_t)ts->width * sizeof *e->sum2))) {
                imatrix_free(im);
                return err_set(err, ST_ERR_NOMEM, "imatrix");
            }
            memcpy(e->sum2, ts->ch_sumsq, (size_t)ts->width * sizeof *e->sum2);
            im->n_entries++;
        }
    qsort(im->e, (size_t)im->n_entries, sizeof *im->e, cmp_entry);
    im->chunk_count = cs->n_seqs;
    im->chunk_size = cs->params.seqlen;
    snprintf(im->dataset, sizeof im->dataset, "%s", cs->params.text_path);
    *out = im;
    return ST_OK;
}

/* === Writing === */

static Status write_gguf(const Imatrix *im, const char *path, Err *err) {
    GgufWriter *w = gguf_writer_new();
    float *data = NULL;
    Status st = ST_OK;
    int64_t total = 0;
    for (int64_t i = 0; i < im->n_entries; i++) total += im->e[i].n + 1;
    if (!w || !(data = malloc((size_t)(total > 0 ? total : 1) * sizeof *data))) {
        st = err_set(err, ST_ERR_NOMEM, "%s", path);
        goto fail;
    }
    const char *ds = im->dataset;
    if ((st = gguf_writer_add_str(w, "general.type", "imatrix")) ||
        (st = gguf_writer_add_arr_str(w, "imatrix.datasets", &ds, 1)) ||
        (st = gguf_writer_add_u32(w, "imatrix.chunk_count", (uint32_t)im->chunk_count)) ||
        (st = gguf_writer_add_u32(w, "imatrix.chunk_size", (uint32_t)im->chunk_size))) {
        st = err_set(err, st, "%s", path);
        goto fail;
    }
    float *p = data;
    for (int64_t i = 0; i < im->n_entries; i++) {
        const ImatrixEntry *e = &im->e[i];
        char nm[128];
        int64_t ne_s[2] = {e->n, 1}, ne_c[2] = {1, 1};
        for (int64_t j = 0; j < e->n; j++) p[j] = (float)e->sum2[j];
        p[e->n] = (float)e->count;
        snprintf(nm, sizeof nm, "%s.in_sum2", e->name);
        if ((st = gguf_writer_add_tensor(w, nm, GGML_F32, 2, ne_s, p))) goto nomem;
        snprintf(nm, sizeof nm, "%s.counts", e->name);
        if ((st = gguf_writer_add_tensor(w, nm, GGML_F32, 2, ne_c, p + e->n))) goto nomem;
        p += e->n + 1;
    }
    st = gguf_writer_write(w, path, err);
    goto fail;
nomem:
    st = err_set(err, st, "%s", path);
fail:
    gguf_writer_free(w);
    free(data);
    return st;
}

static void dat_i32(ByteWriter *b, int32_t v) { bytes_put_u32(b, (uint32_t)v); }

static void dat_f32(ByteWriter *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    bytes_put_u32(b, u);
}

static Status write_dat(const Imatrix *im, const char *path, Err *err) {
    ByteWriter b = {0};
    int64_t cs = im->chunk_size > 0 ? im->chunk_size : 1;
    dat_i32(&b, (int32_t)im->n_entries);
    for (int64_t i = 0; i < im->n_entries; i++) {
        const ImatrixEntry *e = &im->e[i];
        int32_t len = (int32_t)strlen(e->name);
        dat_i32(&b, len);
        bytes_put(&b, e->name, (size_t)len);
        int32_t ncall = (int32_t)(((int64_t)e->count + cs - 1) / cs);
        if (ncall < 1) ncall = 1;
        dat_i32(&b, ncall);
        dat_i32(&b, (int32_t)e->n);
        for (int64_t j = 0; j < e->n; j++)
            dat_f32(&b, e->count > 0 ? (float)(e->sum2[j] / e->count * ncall) : (float)ncall);
    }
    dat_i32(&b, (int32_t)im->chunk_count);
    int32_t dl = (int32_t)strlen(im->dataset);
    dat_i32(&b, dl);
    bytes_put(&b, im->dataset, (size_t)dl);
    Status st = b.oom ? err_set(err, ST_ERR_NOMEM, "%s", path) : afile_save(path, b.p, b.n, err);
    free(b.p);
    return st;
}

Status imatrix_write(const Imatrix *im, const char *path, int legacy, Err *err) {
    if (im->n_entries < 1) return err_set(err, ST_ERR_ARG, "%s: an importance matrix needs entries", path);
    return legacy ? write_dat(im, path, err) : write_gguf(im, path, err);
}

/* === Reading === */

static Status read_gguf(const char *path, Imatrix **out, Err *err) {
    Gguf *g = NULL;
    Imatrix *im = NULL;
    Status st = gguf_open(path, &g, err);
    if (st) return st;
    int64_t cc = 0, csz = 0;
    const GgufValue *ds = gguf_get_arr(g, "imatrix.datasets");
    if (!gguf_get_int(g, "imatrix.chunk_count", &cc) || !gguf_get_int(g, "imatrix.chunk_size", &csz) || !ds) {
        st = err_set(err, ST_ERR_FORMAT, "%s: not an importance matrix (imatrix.datasets, imatrix.chunk_count "
                     "or imatrix.chunk_size missing)", path);
        goto fail;
    }
    if (!(im = imatrix_alloc(g->n_tensors / 2 + 1))) {
        st = err_set(err, ST_ERR_NOMEM, "%s", path);
        goto fail;
    }
    im->chunk_count = cc;
    im->chunk_size = csz;
    if (ds->v.arr.elem_type == GGUF_STRING && ds->v.arr.n > 0) {
        GgufStr s = ds->v.arr.strs[ds->v.arr.n - 1];
        snprintf(im->dataset, sizeof im->dataset, "%.*s", (int)(s.len < 255 ? s.len : 255), s.s);
    }
    static const char SUF[] = ".in_sum2";
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const GgufTensor *t = &g->tensors[i];
        size_t ls = sizeof SUF - 1;
        if (t->name.len <= ls || memcmp(t->name.s + t->name.len - ls, SUF, ls)) continue;
        ImatrixEntry *e = &im->e[im->n_entries];
        size_t bl = t->name.len - ls;
        if (bl >= sizeof e->name) {
            st = err_set(err, ST_ERR_FORMAT, "%s: tensor name of %zu bytes", path, bl);
            goto fail;
        }
        memcpy(e->name, t->name.s, bl);
        e->name[bl] = '\0';
        char cn[128];
        snprintf(cn, sizeof cn, "%s.counts", e->name);
        const GgufTensor *c = gguf_find_tensor(g, cn);
        if (!c) {
            st = err_set(err, ST_ERR_FORMAT, "%s: %s.in_sum2 without %s", path, e->name, cn);
            goto fail;
        }
        int64_t n_mat = t->n_dims > 1 ? t->ne[1] : 1;
        if (t->type != GGML_F32 || c->type != GGML_F32 || n_mat != 1 || c->ne[0] != 1 || t->ne[0] < 1 ||
            (c->n_dims > 1 && c->ne[1] != 1) || (t->n_dims > 2 && t->ne[2] != 1)) {
            st = err_set(err, ST_ERR_FORMAT, "%s: %s: expected F32 in_sum2 (n, 1) and counts (1, 1)%s", path,
                         e->name, n_mat != 1 ? " (expert stacks are not supported)" : "");
            goto fail;
        }
        e->n = t->ne[0];
        if (!(e->sum2 = malloc((size_t)e->n * sizeof *e->sum2))) {
            st = err_set(err, ST_ERR_NOMEM, "%s", path);
            goto fail;
        }
        im->n_entries++;
        const unsigned char *src = t->data;
        for (int64_t j = 0; j < e->n; j++) {
            float f;
            memcpy(&f, src + 4 * j, 4);
            e->sum2[j] = f;
        }
        float cf;
        memcpy(&cf, c->data, 4);
        e->count = cf;
    }
    if (im->n_entries == 0) {
        st = err_set(err, ST_ERR_FORMAT, "%s: no <name>.in_sum2 tensors", path);
        goto fail;
    }
    qsort(im->e, (size_t)im->n_entries, sizeof *im->e, cmp_entry);
    *out = im;
    im = NULL;
fail:
    imatrix_free(im);
    gguf_free(g);
    return st;
}

static Status read_dat(const char *path, const unsigned char *p, size_t n, Imatrix **out, Err *err) {
    ByteReader r;
    bytes_init(&r, p, n, path);
    int32_t ne;
    Status st = bytes_read(&r, &ne, 4, "n_entries", err);
    if (st) return st;
    if (ne < 1 || (size_t)ne > n / 12)
        return err_set(err, ST_ERR_FORMAT, "%s: %d entries in %zu bytes", path, ne, n);
    Imatrix *im = imatrix_alloc(ne);
    if (!im) return err_set(err, ST_ERR_NOMEM, "%s", path);
    for (int32_t i = 0; i < ne; i++) {
        ImatrixEntry *e = &im->e[i];
        int32_t len, ncall, nval;
        if ((st = bytes_read(&r, &len, 4, "name length", err))) goto fail;
        if (len < 1 || (size_t)len >= sizeof e->name) {
            st = err_set(err, ST_ERR_FORMAT, "%s: entry %d: name of %d bytes", path, i, len);
            goto fail;
        }
        if ((st = bytes_read(&r, e->name, (size_t)len, "name", err)) || (st = bytes_read(&r, &ncall, 4, "ncall", err)) ||
            (st = bytes_read(&r, &nval, 4, "nval", err)))
            goto fail;
        if (nval < 1 || (st = bytes_need(&r, (size_t)nval * 4, "values", err))) {
            if (!st) st = err_set(err, ST_ERR_FORMAT, "%s: entry %s: %d values", path, e->name, nval);
            goto fail;
        }
        e->n = nval;
        e->count = ncall > 0 ? ncall : 1;
        if (!(e->sum2 = malloc((size_t)nval * sizeof *e->sum2))) {
            st = err_set(err, ST_ERR_NOMEM, "%s", path);
            goto fail;
        }
        im->n_entries++;
        for (int32_t j = 0; j < nval; j++) {
            float f;
            if ((st = bytes_read(&r, &f, 4, "values", err))) goto fail;
            e->sum2[j] = f; /* (mean · ncall): sum2 / count is the mean */
        }
    }
    int32_t cc, dl;
    if (bytes_read(&r, &cc, 4, "chunk count", err) == ST_OK && bytes_read(&r, &dl, 4, "dataset length", err) == ST_OK &&
        dl >= 0 && bytes_need(&r, (size_t)dl, "dataset", err) == ST_OK) {
        im->chunk_count = cc;
        char ds[256];
        size_t k = (size_t)dl < sizeof ds - 1 ? (size_t)dl : sizeof ds - 1;
        bytes_read(&r, ds, k, "dataset", err);
        ds[k] = '\0';
        snprintf(im->dataset, sizeof im->dataset, "%s", ds);
    }
    err_init(err); /* the trailer is optional (older files end after the entries) */
    qsort(im->e, (size_t)im->n_entries, sizeof *im->e, cmp_entry);
    *out = im;
    return ST_OK;
fail:
    imatrix_free(im);
    return st;
}

Status imatrix_read(const char *path, Imatrix **out, Err *err) {
    *out = NULL;
    /* A GGUF goes to the mapping reader by its magic, before any of it is
     * read into memory: a model GGUF given by mistake (gigabytes) is then
     * "not an importance matrix", not a 1 GB read ending in "larger than". */
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, ST_ERR_IO, "%s: %s", path, strerror(errno));
    int is_gguf = fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    fclose(f);
    if (is_gguf) return read_gguf(path, out, err);
    char *text = NULL;
    size_t len = 0;
    Status st = file_read_all(path, (size_t)1 << 30, &text, &len, err);
    if (st) return st;
    st = read_dat(path, (const unsigned char *)text, len, out, err);
    free(text);
    return st;
}
