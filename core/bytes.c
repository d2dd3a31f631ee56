#include "core/bytes.h"

#include <stdlib.h>
#include <string.h>

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

void bytes_put(ByteWriter *w, const void *src, size_t n) {
    if (w->oom || n == 0) return;
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : 65536;
        while (cap < w->n + n) cap *= 2;
        unsigned char *q = realloc(w->p, cap);
        if (!q) {
            w->oom = 1;
            return;
        }
        w->p = q;
        w->cap = cap;
    }
    memcpy(w->p + w->n, src, n);
    w->n += n;
}

void bytes_put_u32(ByteWriter *w, uint32_t v) {
    unsigned char t[4];
    for (int i = 0; i < 4; i++) t[i] = (unsigned char)(v >> (8 * i));
    bytes_put(w, t, 4);
}

void bytes_put_u64(ByteWriter *w, uint64_t v) {
    unsigned char t[8];
    for (int i = 0; i < 8; i++) t[i] = (unsigned char)(v >> (8 * i));
    bytes_put(w, t, 8);
}
