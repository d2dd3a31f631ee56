/* GGUF v3 writer. Metadata is serialized into one byte buffer as it is added;
 * tensors are recorded (borrowed data or a fill callback) and laid out at
 * write time. The file is replaced atomically (core/atomicfile.h), so readers
 * never see half a file. */
#include "model/gguf_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/atomicfile.h"
#include "quant/ggml_type.h"

#define WRITER_ALIGN 32

typedef struct WTensor {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[4];
    size_t nbytes;
    uint64_t offset;         /* relative to the data section */
    const void *data;        /* borrowed, or NULL when fill is set */
    GgufFillFn fill;
    void *user;
} WTensor;

struct GgufWriter {
    unsigned char *kv;       /* serialized KVs */
    size_t kv_len, kv_cap;
    int64_t n_kv;
    char **keys;             /* (n_kv) owned copies, for duplicate checks */
    WTensor *t;              /* (n_t) */
    int64_t n_t, cap_t;
    Progress *progress;
};

GgufWriter *gguf_writer_new(void) {
    return core_calloc(1, sizeof(GgufWriter));
}

void gguf_writer_free(GgufWriter *w) {
    if (!w) return;
    free(w->kv);
    for (int64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    free(w->keys);
    for (int64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

void gguf_writer_set_progress(GgufWriter *w, Progress *p) {
    w->progress = p;
}

/* === metadata serialization === */

static Status buf_put(GgufWriter *w, const void *p, size_t n) {
    if (n > SIZE_MAX - w->kv_len) return ST_ERR_NOMEM;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) {
            if (cap > SIZE_MAX / 2) return ST_ERR_NOMEM;
            cap *= 2;
        }
        unsigned char *nb = realloc(w->kv, cap);
        if (!nb) return ST_ERR_NOMEM;
        w->kv = nb;
        w->kv_cap = cap;
    }
    if (n) memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return ST_OK;
}

static Status put_u32(GgufWriter *w, uint32_t v) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return buf_put(w, b, 4);
}

static Status put_u64(GgufWriter *w, uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    return buf_put(w, b, 8);
}

static Status put_str(GgufWriter *w, const char *s, uint64_t len) {
    Status st = put_u64(w, len);
    return st != ST_OK ? st : buf_put(w, s, (size_t)len);
}

/* Writes one scalar of type t holding value bits u (LE, truncated to its size). */
static Status put_scalar(GgufWriter *w, GgufValueType t, uint64_t u) {
    unsigned char b[8];
    size_t n = gguf_value_type_size(t);
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(u >> (8 * i));
    return buf_put(w, b, n);
}

/* Starts a KV: rejects duplicates, records the key and writes key + type. */
static Status kv_begin(GgufWriter *w, const char *key, GgufValueType t) {
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0) return ST_ERR_ARG;
    char **nk = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *nk);
    if (!nk) return ST_ERR_NOMEM;
    w->keys = nk;
    if (!(w->keys[w->n_kv] = core_strdup(key))) return ST_ERR_NOMEM;
    w->n_kv++;
    Status st = put_str(w, key, strlen(key));
    return st != ST_OK ? st : put_u32(w, (uint32_t)t);
}

static uint64_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

Status gguf_writer_add_u32(GgufWriter *w, const char *key, uint32_t v) {
    Status st = kv_begin(w, key, GGUF_UINT32);
    return st != ST_OK ? st : put_scalar(w, GGUF_UINT32, v);
}

Status gguf_writer_add_i32(GgufWriter *w, const char *key, int32_t v) {
    Status st = kv_begin(w, key, GGUF_INT32);
    return st != ST_OK ? st : put_scalar(w, GGUF_INT32, (uint32_t)v);
}

Status gguf_writer_add_f32(GgufWriter *w, const char *key, float v) {
    Status st = kv_begin(w, key, GGUF_FLOAT32);
    return st != ST_OK ? st : put_scalar(w, GGUF_FLOAT32, f32_bits(v));
}

Status gguf_writer_add_bool(GgufWriter *w, const char *key, int v) {
    Status st = kv_begin(w, key, GGUF_BOOL);
    return st != ST_OK ? st : put_scalar(w, GGUF_BOOL, v ? 1 : 0);
}

Status gguf_writer_add_str(GgufWriter *w, const char *key, const char *v) {
    Status st = kv_begin(w, key, GGUF_STRING);
    return st != ST_OK ? st : put_str(w, v, strlen(v));
}

static Status arr_begin(GgufWriter *w, const char *key, GgufValueType et, int64_t n) {
    if (n < 0) return ST_ERR_ARG;
    Status st = kv_begin(w, key, GGUF_ARRAY);
    if (st == ST_OK) st = put_u32(w, (uint32_t)et);
    if (st == ST_OK) st = put_u64(w, (uint64_t)n);
    return st;
}

Status gguf_writer_add_arr_str(GgufWriter *w, const char *key, const char *const *v, int64_t n) {
    Status st = arr_begin(w, key, GGUF_STRING, n);
    for (int64_t i = 0; st == ST_OK && i < n; i++) st = put_str(w, v[i], strlen(v[i]));
    return st;
}

Status gguf_writer_add_arr_f32(GgufWriter *w, const char *key, const float *v, int64_t n) {
    Status st = arr_begin(w, key, GGUF_FLOAT32, n);
    for (int64_t i = 0; st == ST_OK && i < n; i++) st = put_scalar(w, GGUF_FLOAT32, f32_bits(v[i]));
    return st;
}

Status gguf_writer_add_arr_i32(GgufWriter *w, const char *key, const int32_t *v, int64_t n) {
    Status st = arr_begin(w, key, GGUF_INT32, n);
    for (int64_t i = 0; st == ST_OK && i < n; i++) st = put_scalar(w, GGUF_INT32, (uint32_t)v[i]);
    return st;
}

/* Serializes a parsed value's payload (not its type tag). */
static Status put_value(GgufWriter *w, const GgufValue *v) {
    switch (v->type) {
    case GGUF_STRING: return put_str(w, v->v.str.s, v->v.str.len);
    case GGUF_FLOAT32: return put_scalar(w, GGUF_FLOAT32, f32_bits((float)v->v.f));
    case GGUF_FLOAT64: {
        uint64_t u;
        memcpy(&u, &v->v.f, sizeof u);
        return put_scalar(w, GGUF_FLOAT64, u);
    }
    case GGUF_INT8: case GGUF_INT16: case GGUF_INT32: case GGUF_INT64:
        return put_scalar(w, v->type, (uint64_t)v->v.i);
    case GGUF_ARRAY: {
        GgufValueType et = v->v.arr.elem_type;
        uint64_t n = v->v.arr.n;
        Status st = put_u32(w, (uint32_t)et);
        if (st == ST_OK) st = put_u64(w, n);
        if (st != ST_OK) return st;
        if (et == GGUF_STRING) {
            for (uint64_t i = 0; st == ST_OK && i < n; i++) st = put_str(w, v->v.arr.strs[i].s, v->v.arr.strs[i].len);
        } else if (et == GGUF_ARRAY) {
            for (uint64_t i = 0; st == ST_OK && i < n; i++) st = put_value(w, &v->v.arr.items[i]);
        } else {
            size_t sz = gguf_value_type_size(et);
            if (!sz || (n && !v->v.arr.raw)) return ST_ERR_ARG;
            st = buf_put(w, v->v.arr.raw, (size_t)n * sz);
        }
        return st;
    }
    case GGUF_UINT8: case GGUF_UINT16: case GGUF_UINT32: case GGUF_UINT64: case GGUF_BOOL:
        return put_scalar(w, v->type, v->v.u);
    default: return ST_ERR_ARG;
    }
}

Status gguf_writer_add_value(GgufWriter *w, const char *key, const GgufValue *v) {
    if (v->type >= GGUF_VTYPE_COUNT) return ST_ERR_ARG;
    Status st = kv_begin(w, key, v->type);
    return st != ST_OK ? st : put_value(w, v);
}

/* === tensors === */

static Status add_tensor(GgufWriter *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                         const void *data, GgufFillFn fill, void *user) {
    if (n_dims < 1 || n_dims > 4) return ST_ERR_ARG;
    for (int64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return ST_ERR_ARG;
    int64_t rows = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0) return ST_ERR_ARG;
        if (d > 0) {
            if (ne[d] && rows > INT64_MAX / ne[d]) return ST_ERR_ARG;
            rows *= ne[d];
        }
    }
    size_t row_bytes = ggml_row_bytes(type, ne[0]);
    if (!ggml_type_traits(type) || (ne[0] > 0 && row_bytes == 0)) return ST_ERR_ARG;
    size_t nbytes;
    if (!core_mul_ok(row_bytes, (size_t)rows, &nbytes)) return ST_ERR_ARG;
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? w->cap_t * 2 : 64;
        WTensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) return ST_ERR_NOMEM;
        w->t = nt;
        w->cap_t = cap;
    }
    WTensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = core_strdup(name))) return ST_ERR_NOMEM;
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = nbytes;
    t->data = data;
    t->fill = fill;
    t->user = user;
    w->n_t++;
    return ST_OK;
}

Status gguf_writer_add_tensor(GgufWriter *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                              const void *data) {
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL);
}

Status gguf_writer_add_tensor_fill(GgufWriter *w, const char *name, uint32_t type, int n_dims,
                                   const int64_t *ne, GgufFillFn fill, void *user) {
    if (!fill) return ST_ERR_ARG;
    return add_tensor(w, name, type, n_dims, ne, NULL, fill, user);
}

/* === file output === */

static Status write_pad(AtomicFile *f, uint64_t pos, Err *err) {
    static const unsigned char zeros[WRITER_ALIGN];
    size_t pad = (size_t)((WRITER_ALIGN - pos % WRITER_ALIGN) % WRITER_ALIGN);
    return afile_write(f, zeros, pad, err);
}

/* Header, KVs and tensor infos, serialized after the KV buffer (reusing it). */
static Status build_header(GgufWriter *w, unsigned char **out, size_t *len) {
    GgufWriter h = {0};
    Status st = buf_put(&h, "GGUF", 4);
    if (st == ST_OK) st = put_u32(&h, 3);
    if (st == ST_OK) st = put_u64(&h, (uint64_t)w->n_t);
    if (st == ST_OK) st = put_u64(&h, (uint64_t)w->n_kv);
    if (st == ST_OK) st = buf_put(&h, w->kv, w->kv_len);
    uint64_t off = 0;
    for (int64_t i = 0; st == ST_OK && i < w->n_t; i++) {
        WTensor *t = &w->t[i];
        t->offset = off;
        off += (t->nbytes + WRITER_ALIGN - 1) / WRITER_ALIGN * WRITER_ALIGN;
        st = put_str(&h, t->name, strlen(t->name));
        if (st == ST_OK) st = put_u32(&h, (uint32_t)t->n_dims);
        for (int d = 0; st == ST_OK && d < t->n_dims; d++) st = put_u64(&h, (uint64_t)t->ne[d]);
        if (st == ST_OK) st = put_u32(&h, t->type);
        if (st == ST_OK) st = put_u64(&h, t->offset);
    }
    if (st != ST_OK) {
        free(h.kv);
        return st;
    }
    *out = h.kv;
    *len = h.kv_len;
    return ST_OK;
}

Status gguf_writer_write(GgufWriter *w, const char *path, Err *err) {
    unsigned char *hdr = NULL, *buf = NULL;
    size_t hdr_len = 0;
    AtomicFile f = {.fd = -1};
    Status st = build_header(w, &hdr, &hdr_len);
    if (st != ST_OK) {
        err_set(err, st, "%s: building the GGUF header", path);
        goto fail;
    }
    size_t fill_max = 0;
    uint64_t total = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        if (w->t[i].fill && w->t[i].nbytes > fill_max) fill_max = w->t[i].nbytes;
        total += w->t[i].nbytes;
    }
    if (fill_max && !(buf = core_alloc_aligned(fill_max, 1))) {
        st = err_set(err, ST_ERR_NOMEM, "%s: %zu-byte tensor buffer", path, fill_max);
        goto fail;
    }
    if ((st = afile_open(&f, path, err)) != ST_OK) goto fail;
    progress_begin(w->progress, "writing", (int64_t)total);
    if ((st = afile_write(&f, hdr, hdr_len, err)) != ST_OK) goto fail;
    if ((st = write_pad(&f, hdr_len, err)) != ST_OK) goto fail;
    for (int64_t i = 0; i < w->n_t; i++) {
        WTensor *t = &w->t[i];
        if (progress_cancelled(w->progress)) {
            st = err_set(err, ST_ERR_CANCELLED, "%s: write cancelled", path);
            goto fail;
        }
        const void *src = t->data;
        if (t->fill) {
            if ((st = t->fill(t->user, i, buf, t->nbytes, err)) != ST_OK) {
                err_wrap(err, "%s: tensor '%s'", path, t->name);
                goto fail;
            }
            src = buf;
        }
        if (t->nbytes && !src) {
            st = err_set(err, ST_ERR_ARG, "%s: tensor '%s' has no data", path, t->name);
            goto fail;
        }
        if ((st = afile_write(&f, src, t->nbytes, err)) != ST_OK) goto fail;
        if ((st = write_pad(&f, t->nbytes, err)) != ST_OK) goto fail;
        progress_add(w->progress, (int64_t)t->nbytes);
    }
    if ((st = afile_commit(&f, err)) != ST_OK) goto fail;
    free(hdr);
    core_free_aligned(buf);
    return ST_OK;
fail:
    afile_abort(&f);
    free(hdr);
    core_free_aligned(buf);
    return st;
}
