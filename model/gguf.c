/* GGUF v2/v3 reader. The file is mapped once; the header, metadata and tensor
 * infos are parsed eagerly with every count, length and offset checked against
 * the bytes that remain, so nothing downstream can read out of range. Strings
 * and tensor data are borrowed from the mapping; only the KV/tensor tables and
 * the per-array element tables are allocated. */
#include "model/gguf.h"

#include <math.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/hash.h"
#include "quant/ggml_type.h"

#define GGUF_MAX_DEPTH 8       /* nesting of arrays of arrays */
#define GGUF_MIN_KV_BYTES 13   /* key length (8) + value type (4) + 1-byte value */
#define GGUF_MIN_TI_BYTES 24   /* name length (8) + n_dims (4) + type (4) + offset (8) */
#define GGUF_MAX_DIMS 4

/* A bounded little-endian cursor over the mapping. */
typedef struct Reader {
    const unsigned char *p;
    size_t size;
    size_t pos;
    const char *path;
    Err *err;
} Reader;

static size_t rd_left(const Reader *r) {
    return r->size - r->pos;
}

static Status rd_need(Reader *r, size_t n, const char *what) {
    if (n > rd_left(r))
        return err_set(r->err, ST_ERR_FORMAT, "%s: offset %zu: truncated: need %zu bytes for %s, %zu left",
                       r->path, r->pos, n, what, rd_left(r));
    return ST_OK;
}

static uint64_t le_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint32_t le_u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static Status rd_u32(Reader *r, uint32_t *out, const char *what) {
    Status st = rd_need(r, 4, what);
    if (st != ST_OK) return st;
    *out = le_u32(r->p + r->pos);
    r->pos += 4;
    return ST_OK;
}

static Status rd_u64(Reader *r, uint64_t *out, const char *what) {
    Status st = rd_need(r, 8, what);
    if (st != ST_OK) return st;
    *out = le_u64(r->p + r->pos);
    r->pos += 8;
    return ST_OK;
}

static Status rd_str(Reader *r, GgufStr *out, const char *what) {
    size_t at = r->pos;
    uint64_t len;
    Status st = rd_u64(r, &len, what);
    if (st != ST_OK) return st;
    if (len > rd_left(r))
        return err_set(r->err, ST_ERR_FORMAT,
                       "%s: offset %zu: string length %llu for %s runs past end of file (%zu bytes left)",
                       r->path, at, (unsigned long long)len, what, rd_left(r));
    out->s = (const char *)(r->p + r->pos);
    out->len = len;
    r->pos += (size_t)len;
    return ST_OK;
}

size_t gguf_value_type_size(GgufValueType t) {
    switch (t) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* Decodes one scalar of type t at p (bounds already checked). */
static void decode_scalar(GgufValueType t, const unsigned char *p, GgufValue *v) {
    v->type = t;
    switch (t) {
    case GGUF_UINT8: case GGUF_BOOL: v->v.u = p[0]; break;
    case GGUF_INT8: v->v.i = (int8_t)p[0]; break;
    case GGUF_UINT16: v->v.u = (uint16_t)(p[0] | (p[1] << 8)); break;
    case GGUF_INT16: v->v.i = (int16_t)(uint16_t)(p[0] | (p[1] << 8)); break;
    case GGUF_UINT32: v->v.u = le_u32(p); break;
    case GGUF_INT32: v->v.i = (int32_t)le_u32(p); break;
    case GGUF_UINT64: v->v.u = le_u64(p); break;
    case GGUF_INT64: v->v.i = (int64_t)le_u64(p); break;
    case GGUF_FLOAT32: {
        uint32_t u = le_u32(p);
        float f;
        memcpy(&f, &u, sizeof f);
        v->v.f = f;
        break;
    }
    case GGUF_FLOAT64: {
        uint64_t u = le_u64(p);
        double f;
        memcpy(&f, &u, sizeof f);
        v->v.f = f;
        break;
    }
    default: break;
    }
}

static void value_done(GgufValue *v) {
    if (v->type != GGUF_ARRAY) return;
    free(v->v.arr.strs);
    if (v->v.arr.items) {
        for (uint64_t i = 0; i < v->v.arr.n; i++) value_done(&v->v.arr.items[i]);
        free(v->v.arr.items);
    }
    v->v.arr.strs = NULL;
    v->v.arr.items = NULL;
}

static Status rd_value(Reader *r, GgufValueType t, GgufValue *v, int depth, const char *what);

static Status rd_array(Reader *r, GgufValue *v, int depth, const char *what) {
    size_t at = r->pos;
    uint32_t et;
    uint64_t n;
    Status st;
    v->type = GGUF_ARRAY;
    if (depth >= GGUF_MAX_DEPTH)
        return err_set(r->err, ST_ERR_FORMAT, "%s: offset %zu: array in %s nested too deep (more than %d levels)",
                       r->path, at, what, GGUF_MAX_DEPTH);
    if ((st = rd_u32(r, &et, what)) != ST_OK) return st;
    if (et >= GGUF_VTYPE_COUNT)
        return err_set(r->err, ST_ERR_FORMAT, "%s: offset %zu: unknown array element type %u in %s",
                       r->path, at, et, what);
    if ((st = rd_u64(r, &n, what)) != ST_OK) return st;
    v->v.arr.elem_type = (GgufValueType)et;
    /* Smallest possible encoding of one element: its fixed size, a string's
     * 8-byte length, or a nested array's 4-byte type + 8-byte count. */
    size_t min_elem = et == GGUF_STRING ? 8 : et == GGUF_ARRAY ? 12 : gguf_value_type_size((GgufValueType)et);
    if (n > rd_left(r) / min_elem)
        return err_set(r->err, ST_ERR_FORMAT,
                       "%s: offset %zu: array length %llu of %s runs past end of file (%zu bytes left)",
                       r->path, at, (unsigned long long)n, what, rd_left(r));
    if (et == GGUF_STRING) {
        v->v.arr.strs = core_calloc(n ? (size_t)n : 1, sizeof(GgufStr));
        if (!v->v.arr.strs) return err_set(r->err, ST_ERR_NOMEM, "%s: %s: %llu strings", r->path, what,
                                           (unsigned long long)n);
        v->v.arr.n = n;
        for (uint64_t i = 0; i < n; i++)
            if ((st = rd_str(r, &v->v.arr.strs[i], what)) != ST_OK) return st;
    } else if (et == GGUF_ARRAY) {
        v->v.arr.items = core_calloc(n ? (size_t)n : 1, sizeof(GgufValue));
        if (!v->v.arr.items) return err_set(r->err, ST_ERR_NOMEM, "%s: %s: %llu arrays", r->path, what,
                                            (unsigned long long)n);
        v->v.arr.n = n;
        for (uint64_t i = 0; i < n; i++) {
            v->v.arr.items[i].type = GGUF_ARRAY;
            if ((st = rd_array(r, &v->v.arr.items[i], depth + 1, what)) != ST_OK) return st;
        }
    } else {
        v->v.arr.n = n;
        v->v.arr.raw = r->p + r->pos;
        r->pos += (size_t)n * min_elem;
    }
    return ST_OK;
}

static Status rd_value(Reader *r, GgufValueType t, GgufValue *v, int depth, const char *what) {
    if (t == GGUF_STRING) {
        v->type = GGUF_STRING;
        return rd_str(r, &v->v.str, what);
    }
    if (t == GGUF_ARRAY) return rd_array(r, v, depth, what);
    size_t sz = gguf_value_type_size(t);
    Status st = rd_need(r, sz, what);
    if (st != ST_OK) return st;
    decode_scalar(t, r->p + r->pos, v);
    r->pos += sz;
    return ST_OK;
}

/* === name set (duplicate detection) === */

typedef struct NameSet {
    const GgufStr **slot;
    size_t mask;
} NameSet;

static int nameset_init(NameSet *s, int64_t n) {
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap *= 2;
    s->slot = core_calloc(cap, sizeof *s->slot);
    s->mask = cap - 1;
    return s->slot != NULL;
}

/* Returns 1 if inserted, 0 if an equal name is already present. */
static int nameset_add(NameSet *s, const GgufStr *name) {
    size_t h = (size_t)hash_bytes(HASH_SEED, name->s, (size_t)name->len) & s->mask;
    while (s->slot[h]) {
        const GgufStr *o = s->slot[h];
        if (o->len == name->len && memcmp(o->s, name->s, (size_t)name->len) == 0) return 0;
        h = (h + 1) & s->mask;
    }
    s->slot[h] = name;
    return 1;
}

/* === open === */

static int is_pow2(uint64_t x) {
    return x != 0 && (x & (x - 1)) == 0;
}

static Status parse_kvs(Gguf *g, Reader *r) {
    Err *err = r->err;
    NameSet names = {0};
    Status st = ST_OK;
    g->kv = core_calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof(GgufKV));
    if (!g->kv || !nameset_init(&names, g->n_kv)) {
        st = err_set(err, ST_ERR_NOMEM, "%s: %lld KVs", r->path, (long long)g->n_kv);
        goto fail;
    }
    for (int64_t i = 0; i < g->n_kv; i++) {
        GgufKV *kv = &g->kv[i];
        size_t at = r->pos;
        uint32_t t;
        if ((st = rd_str(r, &kv->key, "KV key")) != ST_OK) goto fail;
        if (!nameset_add(&names, &kv->key)) {
            st = err_set(err, ST_ERR_FORMAT, "%s: offset %zu: duplicate key '%.*s'", r->path, at,
                         (int)(kv->key.len > 200 ? 200 : kv->key.len), kv->key.s);
            goto fail;
        }
        char what[256];
        snprintf(what, sizeof what, "value of '%.*s'", (int)(kv->key.len > 200 ? 200 : kv->key.len), kv->key.s);
        size_t tat = r->pos;
        if ((st = rd_u32(r, &t, what)) != ST_OK) goto fail;
        if (t >= GGUF_VTYPE_COUNT) {
            st = err_set(err, ST_ERR_FORMAT, "%s: offset %zu: unknown value type %u for key '%.*s'", r->path,
                         tat, t, (int)(kv->key.len > 200 ? 200 : kv->key.len), kv->key.s);
            goto fail;
        }
        kv->value.type = (GgufValueType)t;
        if ((st = rd_value(r, (GgufValueType)t, &kv->value, 0, what)) != ST_OK) goto fail;
    }
    g->kv_index = names.slot; /* kept for gguf_find */
    g->kv_mask = names.mask;
    return ST_OK;
fail:
    free(names.slot);
    return st;
}

static Status parse_tensor_infos(Gguf *g, Reader *r) {
    Err *err = r->err;
    NameSet names = {0};
    Status st = ST_OK;
    g->tensors = core_calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof(GgufTensor));
    if (!g->tensors || !nameset_init(&names, g->n_tensors)) {
        st = err_set(err, ST_ERR_NOMEM, "%s: %lld tensors", r->path, (long long)g->n_tensors);
        goto fail;
    }
    for (int64_t i = 0; i < g->n_tensors; i++) {
        GgufTensor *t = &g->tensors[i];
        size_t at = r->pos;
        if ((st = rd_str(r, &t->name, "tensor name")) != ST_OK) goto fail;
        int nl = (int)(t->name.len > 200 ? 200 : t->name.len);
        if (!nameset_add(&names, &t->name)) {
            st = err_set(err, ST_ERR_FORMAT, "%s: offset %zu: duplicate tensor name '%.*s'", r->path, at, nl,
                         t->name.s);
            goto fail;
        }
        size_t dat = r->pos;
        if ((st = rd_u32(r, &t->n_dims, "tensor n_dims")) != ST_OK) goto fail;
        if (t->n_dims > GGUF_MAX_DIMS) {
            st = err_set(err, ST_ERR_FORMAT, "%s: offset %zu: tensor '%.*s' has n_dims %u, at most %d allowed",
                         r->path, dat, nl, t->name.s, t->n_dims, GGUF_MAX_DIMS);
            goto fail;
        }
        int64_t nelem = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            size_t eat = r->pos;
            uint64_t ne;
            if ((st = rd_u64(r, &ne, "tensor dimension")) != ST_OK) goto fail;
            if (ne > (uint64_t)INT64_MAX) {
                st = err_set(err, ST_ERR_FORMAT, "%s: offset %zu: tensor '%.*s' ne[%u] = %llu is negative",
                             r->path, eat, nl, t->name.s, d, (unsigned long long)ne);
                goto fail;
            }
            t->ne[d] = (int64_t)ne;
            if (ne != 0 && nelem > INT64_MAX / (int64_t)ne) {
                st = err_set(err, ST_ERR_FORMAT, "%s: offset %zu: tensor '%.*s' element count overflows int64 at ne[%u] = %llu",
                             r->path, eat, nl, t->name.s, d, (unsigned long long)ne);
                goto fail;
            }
            nelem *= (int64_t)ne;
        }
        size_t tat = r->pos;
        if ((st = rd_u32(r, &t->type, "tensor type")) != ST_OK) goto fail;
        const GgmlTypeTraits *tt = ggml_type_traits(t->type);
        if (!tt) {
            st = err_set(err, ST_ERR_UNSUPPORTED, "%s: offset %zu: unknown tensor type %u for tensor '%.*s'",
                         r->path, tat, t->type, nl, t->name.s);
            goto fail;
        }
        if (t->ne[0] % tt->block_size != 0) {
            st = err_set(err, ST_ERR_FORMAT,
                         "%s: offset %zu: tensor '%.*s' ne[0] = %lld is not a multiple of the %s block size %lld",
                         r->path, dat, nl, t->name.s, (long long)t->ne[0], tt->name, (long long)tt->block_size);
            goto fail;
        }
        /* nbytes = row bytes * rows; both factors fit, the product is checked. */
        int64_t rows = t->ne[0] ? nelem / t->ne[0] : 0;
        size_t row_bytes = (size_t)(t->ne[0] / tt->block_size) * tt->block_bytes;
        if (t->ne[0] && (uint64_t)(t->ne[0] / tt->block_size) > SIZE_MAX / tt->block_bytes) {
            st = err_set(err, ST_ERR_FORMAT, "%s: offset %zu: tensor '%.*s' row size overflows", r->path, dat, nl, t->name.s);
            goto fail;
        }
        if (!core_mul_ok(row_bytes, (size_t)rows, &t->nbytes)) {
            st = err_set(err, ST_ERR_FORMAT, "%s: offset %zu: tensor '%.*s' byte size overflows", r->path, dat, nl, t->name.s);
            goto fail;
        }
        size_t oat = r->pos;
        if ((st = rd_u64(r, &t->offset, "tensor offset")) != ST_OK) goto fail;
        if (t->offset % g->alignment != 0) {
            st = err_set(err, ST_ERR_FORMAT, "%s: offset %zu: tensor '%.*s' data offset %llu is not aligned to %llu",
                         r->path, oat, nl, t->name.s, (unsigned long long)t->offset,
                         (unsigned long long)g->alignment);
            goto fail;
        }
    }
    g->t_index = names.slot; /* kept for gguf_find_tensor */
    g->t_mask = names.mask;
    return ST_OK;
fail:
    free(names.slot);
    return st;
}

static Status check_header_counts(Gguf *g, Reader *r, uint64_t n_tensors, uint64_t n_kv) {
    size_t left = rd_left(r);
    if (n_kv > left / GGUF_MIN_KV_BYTES)
        return err_set(r->err, ST_ERR_FORMAT, "%s: offset 16: KV count %llu is impossible for a %zu-byte file",
                       r->path, (unsigned long long)n_kv, r->size);
    if (n_tensors > left / GGUF_MIN_TI_BYTES)
        return err_set(r->err, ST_ERR_FORMAT, "%s: offset 8: tensor count %llu is impossible for a %zu-byte file",
                       r->path, (unsigned long long)n_tensors, r->size);
    if (n_kv * GGUF_MIN_KV_BYTES + n_tensors * GGUF_MIN_TI_BYTES > left)
        return err_set(r->err, ST_ERR_FORMAT,
                       "%s: offset 8: %llu tensors and %llu KVs cannot fit in a %zu-byte file", r->path,
                       (unsigned long long)n_tensors, (unsigned long long)n_kv, r->size);
    g->n_tensors = (int64_t)n_tensors;
    g->n_kv = (int64_t)n_kv;
    return ST_OK;
}

static Status read_alignment(Gguf *g, const char *path, Err *err) {
    g->alignment = 32;
    const GgufKV *kv = gguf_find(g, "general.alignment");
    if (!kv) return ST_OK;
    const GgufValue *v = &kv->value;
    /* the value follows the key bytes and its 4-byte type */
    size_t at = (size_t)((const unsigned char *)kv->key.s - g->mf.data) + (size_t)kv->key.len + 4;
    if (v->type != GGUF_UINT32 && v->type != GGUF_UINT64 && v->type != GGUF_UINT16 && v->type != GGUF_UINT8 &&
        v->type != GGUF_INT32 && v->type != GGUF_INT64)
        return err_set(err, ST_ERR_FORMAT, "%s: offset %zu: general.alignment has value type %d, expected an integer",
                       path, at, (int)v->type);
    uint64_t a = (v->type == GGUF_INT32 || v->type == GGUF_INT64) ? (v->v.i < 0 ? 0 : (uint64_t)v->v.i) : v->v.u;
    if (!is_pow2(a) || a > (1u << 30))
        return err_set(err, ST_ERR_FORMAT,
                       "%s: offset %zu: general.alignment = %llu, expected a non-zero power of two (at most 2^30)",
                       path, at, (unsigned long long)a);
    g->alignment = a;
    return ST_OK;
}

static int cmp_offset(const void *a, const void *b) {
    const GgufTensor *x = *(const GgufTensor *const *)a, *y = *(const GgufTensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset ? 1 : (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

/* Two tensors sharing bytes (llama.cpp's reader refuses them: its offsets
 * must follow one another) would alias each other's weights. */
static Status check_overlap(const Gguf *g, const char *path, Err *err) {
    const GgufTensor **by = malloc((size_t)g->n_tensors * sizeof *by);
    if (!by) return err_set(err, ST_ERR_NOMEM, "%s: %lld tensors", path, (long long)g->n_tensors);
    int64_t n = 0;
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].nbytes) by[n++] = &g->tensors[i];
    qsort(by, (size_t)n, sizeof *by, cmp_offset);
    Status st = ST_OK;
    for (int64_t i = 1; i < n && !st; i++) {
        const GgufTensor *a = by[i - 1], *b = by[i];
        if (a->offset + a->nbytes > b->offset)
            st = err_set(err, ST_ERR_FORMAT,
                         "%s: tensors '%.*s' (data offset %llu, %zu bytes) and '%.*s' (data offset %llu) overlap",
                         path, (int)(a->name.len > 96 ? 96 : a->name.len), a->name.s, (unsigned long long)a->offset,
                         a->nbytes, (int)(b->name.len > 96 ? 96 : b->name.len), b->name.s,
                         (unsigned long long)b->offset);
    }
    free(by);
    return st;
}

static Status place_tensors(Gguf *g, size_t info_end, const char *path, Err *err) {
    const unsigned char *base = g->mf.data;
    size_t size = g->mf.size;
    uint64_t a = g->alignment;
    uint64_t data_off = ((uint64_t)info_end + a - 1) / a * a;
    g->data_offset = data_off;
    if (g->n_tensors == 0) return ST_OK;
    if (data_off > size)
        return err_set(err, ST_ERR_FORMAT, "%s: offset %zu: data section (aligned to %llu) starts past end of file",
                       path, info_end, (unsigned long long)a);
    uint64_t data_size = size - data_off;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        GgufTensor *t = &g->tensors[i];
        int nl = (int)(t->name.len > 200 ? 200 : t->name.len);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return err_set(err, ST_ERR_FORMAT,
                           "%s: tensor '%.*s' data out of bounds: offset %llu + %zu bytes at file offset %llu "
                           "runs past end of file (%zu bytes)",
                           path, nl, t->name.s, (unsigned long long)t->offset, t->nbytes,
                           (unsigned long long)(data_off + t->offset), size);
        t->data = base + data_off + t->offset;
    }
    return check_overlap(g, path, err);
}

Status gguf_open(const char *path, Gguf **out, Err *err) {
    *out = NULL;
    Gguf *g = core_calloc(1, sizeof *g);
    if (!g) return err_set(err, ST_ERR_NOMEM, "%s", path);
    Status st = mapfile_open(&g->mf, path, err);
    if (st != ST_OK) goto fail;
    Reader r = {.p = g->mf.data, .size = g->mf.size, .pos = 0, .path = path, .err = err};
    if (r.size < 4 || memcmp(r.p, "GGUF", 4) != 0) {
        if (r.size < 4) st = rd_need(&r, 4, "magic");
        else st = err_set(err, ST_ERR_FORMAT, "%s: offset 0: bad magic %02x %02x %02x %02x, expected \"GGUF\"",
                          path, r.p[0], r.p[1], r.p[2], r.p[3]);
        goto fail;
    }
    r.pos = 4;
    if ((st = rd_u32(&r, &g->version, "version")) != ST_OK) goto fail;
    if (g->version > 0xFFFF && (g->version & 0xFFFF) == 0) {
        st = err_set(err, ST_ERR_UNSUPPORTED, "%s: offset 4: big-endian GGUF (version field %08x) is not supported",
                     path, g->version);
        goto fail;
    }
    if (g->version != 2 && g->version != 3) {
        st = err_set(err, ST_ERR_UNSUPPORTED, "%s: offset 4: unsupported GGUF version %u (expected 2 or 3)", path,
                     g->version);
        goto fail;
    }
    uint64_t n_tensors, n_kv;
    if ((st = rd_u64(&r, &n_tensors, "tensor count")) != ST_OK) goto fail;
    if ((st = rd_u64(&r, &n_kv, "KV count")) != ST_OK) goto fail;
    if ((st = check_header_counts(g, &r, n_tensors, n_kv)) != ST_OK) goto fail;
    if ((st = parse_kvs(g, &r)) != ST_OK) goto fail;
    if ((st = read_alignment(g, path, err)) != ST_OK) goto fail;
    if ((st = parse_tensor_infos(g, &r)) != ST_OK) goto fail;
    if ((st = place_tensors(g, r.pos, path, err)) != ST_OK) goto fail;
    *out = g;
    return ST_OK;
fail:
    gguf_free(g);
    return st;
}

void gguf_free(Gguf *g) {
    if (!g) return;
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++) value_done(&g->kv[i].value);
    free(g->kv);
    free(g->tensors);
    free(g->kv_index);
    free(g->t_index);
    mapfile_close(&g->mf);
    free(g);
}

/* === lookups === */

int gguf_str_eq(GgufStr s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && memcmp(s.s, c, n) == 0;
}

/* The entry of the name index equal to name, else NULL: one hash and a short
 * probe, so binding a model's tensors by name is linear in their number. */
static const GgufStr *index_find(const GgufStr *const *slot, size_t mask, const char *name) {
    if (!slot) return NULL;
    size_t n = strlen(name);
    size_t h = (size_t)hash_bytes(HASH_SEED, name, n) & mask;
    for (; slot[h]; h = (h + 1) & mask)
        if (slot[h]->len == n && memcmp(slot[h]->s, name, n) == 0) return slot[h];
    return NULL;
}

const GgufKV *gguf_find(const Gguf *g, const char *key) {
    const GgufStr *k = index_find(g->kv_index, g->kv_mask, key);
    return k ? (const GgufKV *)((const char *)k - offsetof(GgufKV, key)) : NULL;
}

const GgufTensor *gguf_find_tensor(const Gguf *g, const char *name) {
    const GgufStr *k = index_find(g->t_index, g->t_mask, name);
    return k ? (const GgufTensor *)((const char *)k - offsetof(GgufTensor, name)) : NULL;
}

static int value_is_uint(GgufValueType t) {
    return t == GGUF_UINT8 || t == GGUF_UINT16 || t == GGUF_UINT32 || t == GGUF_UINT64;
}

static int value_is_sint(GgufValueType t) {
    return t == GGUF_INT8 || t == GGUF_INT16 || t == GGUF_INT32 || t == GGUF_INT64;
}

int gguf_get_int(const Gguf *g, const char *key, int64_t *out) {
    const GgufKV *kv = gguf_find(g, key);
    if (!kv) return 0;
    if (value_is_sint(kv->value.type)) {
        *out = kv->value.v.i;
        return 1;
    }
    if (value_is_uint(kv->value.type) && kv->value.v.u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)kv->value.v.u;
        return 1;
    }
    return 0;
}

int gguf_get_double(const Gguf *g, const char *key, double *out) {
    const GgufKV *kv = gguf_find(g, key);
    if (!kv) return 0;
    GgufValueType t = kv->value.type;
    if (t == GGUF_FLOAT32 || t == GGUF_FLOAT64) *out = kv->value.v.f;
    else if (value_is_sint(t)) *out = (double)kv->value.v.i;
    else if (value_is_uint(t)) *out = (double)kv->value.v.u;
    else return 0;
    return 1;
}

int gguf_get_bool(const Gguf *g, const char *key, int *out) {
    const GgufKV *kv = gguf_find(g, key);
    if (!kv) return 0;
    if (kv->value.type == GGUF_BOOL || value_is_uint(kv->value.type)) *out = kv->value.v.u != 0;
    else if (value_is_sint(kv->value.type)) *out = kv->value.v.i != 0;
    else return 0;
    return 1;
}

int gguf_get_str(const Gguf *g, const char *key, GgufStr *out) {
    const GgufKV *kv = gguf_find(g, key);
    if (!kv || kv->value.type != GGUF_STRING) return 0;
    *out = kv->value.v.str;
    return 1;
}

const GgufValue *gguf_get_arr(const Gguf *g, const char *key) {
    const GgufKV *kv = gguf_find(g, key);
    if (!kv || kv->value.type != GGUF_ARRAY) return NULL;
    return &kv->value;
}

double gguf_arr_double(const GgufValue *arr, uint64_t i) {
    GgufValueType t = arr->v.arr.elem_type;
    size_t sz = gguf_value_type_size(t);
    if (!sz || !arr->v.arr.raw || i >= arr->v.arr.n) return 0.0;
    GgufValue v;
    decode_scalar(t, arr->v.arr.raw + i * sz, &v);
    if (t == GGUF_FLOAT32 || t == GGUF_FLOAT64) return v.v.f;
    if (value_is_sint(t)) return (double)v.v.i;
    return (double)v.v.u;
}

int64_t gguf_arr_int(const GgufValue *arr, uint64_t i) {
    GgufValueType t = arr->v.arr.elem_type;
    size_t sz = gguf_value_type_size(t);
    if (!sz || !arr->v.arr.raw || i >= arr->v.arr.n) return 0;
    GgufValue v;
    decode_scalar(t, arr->v.arr.raw + i * sz, &v);
    if (t == GGUF_FLOAT32 || t == GGUF_FLOAT64)
        return isfinite(v.v.f) && fabs(v.v.f) < 9.2e18 ? (int64_t)v.v.f : 0;
    if (value_is_sint(t)) return v.v.i;
    return v.v.u <= (uint64_t)INT64_MAX ? (int64_t)v.v.u : 0;
}
