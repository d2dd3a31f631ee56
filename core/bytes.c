#include "core/bytes.h"

#include <stdlib.h>
#include <string.h>

#include "core/hash.h"

void bytes_init(ByteReader *r, const void *p, size_t n, const char *path) {
    r->p = p;
    r->n = n;
    r->off = 0;
    r->path = path;
}

Status bytes_need(const ByteReader *r, size_t n, const char *field, Err *err) {
    if (n > r->n - r->off)
        return err_set(err, ST_ERR_FORMAT, "%s: truncated at field '%s' (offset %zu: need %zu bytes, %zu left)",
                       r->path, field, r->off, n, r->n - r->off);
    return ST_OK;
}

Status bytes_read(ByteReader *r, void *dst, size_t n, const char *field, Err *err) {
    Status st = bytes_need(r, n, field, err);
    if (st) return st;
    if (n) memcpy(dst, r->p + r->off, n);
    r->off += n;
    return ST_OK;
}

/* === writer === */

void bytes_writer_init(ByteWriter *w, AtomicFile *af, Err *err) {
    memset(w, 0, sizeof *w);
    w->af = af;
    w->hash = HASH_SEED;
    w->err = err;
}

/* Memory mode: appends to p, doubling it. */
static void mem_put(ByteWriter *w, const void *src, size_t n) {
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : 65536;
        while (cap < w->n + n) cap *= 2;
        unsigned char *q = realloc(w->p, cap);
        if (!q) {
            w->oom = 1;
            w->st = err_set(w->err, ST_ERR_NOMEM, "%zu-byte write buffer", cap);
            return;
        }
        w->p = q;
        w->cap = cap;
    }
    memcpy(w->p + w->n, src, n);
    w->n += n;
}

void bytes_put(ByteWriter *w, const void *p, size_t n) {
    if (w->st || n == 0) return;
    w->hash = hash_bytes(w->hash, p, n);
    if (w->af) w->st = afile_write(w->af, p, n, w->err);
    else mem_put(w, p, n);
}

static void put_le(ByteWriter *w, uint64_t v, int n) {
    unsigned char t[8];
    for (int i = 0; i < n; i++) t[i] = (unsigned char)(v >> (8 * i));
    bytes_put(w, t, (size_t)n);
}

void bytes_put_u8(ByteWriter *w, uint8_t v) { bytes_put(w, &v, 1); }
void bytes_put_u32(ByteWriter *w, uint32_t v) { put_le(w, v, 4); }
void bytes_put_i32(ByteWriter *w, int32_t v) { put_le(w, (uint32_t)v, 4); }
void bytes_put_u64(ByteWriter *w, uint64_t v) { put_le(w, v, 8); }
void bytes_put_i64(ByteWriter *w, int64_t v) { put_le(w, (uint64_t)v, 8); }
void bytes_put_f32(ByteWriter *w, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    put_le(w, u, 4);
}
void bytes_put_f64(ByteWriter *w, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    put_le(w, u, 8);
}

Status bytes_fail(ByteWriter *w, Status st, const char *what) {
    if (!w->st) w->st = err_set(w->err, st, "%s: %s", w->af && w->af->path ? w->af->path : "write", what);
    return w->st;
}

Status bytes_put_hash(ByteWriter *w) {
    uint64_t h = w->hash;
    put_le(w, h, 8);
    w->hash = h;
    return w->st;
}
