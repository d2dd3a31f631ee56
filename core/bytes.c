#include "core/bytes.h"

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
