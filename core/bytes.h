/* A read cursor over a file's bytes in memory whose every read is bounds-checked:
 * a read past the end fails with ST_ERR_FORMAT naming the file, the field and
 * its offset, so a binary reader never indexes past its buffer. */
#ifndef QS_CORE_BYTES_H
#define QS_CORE_BYTES_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct ByteReader {
    const unsigned char *p; /* (n) borrowed: the whole file */
    size_t n;               /* bytes in p */
    size_t off;             /* next byte to read */
    const char *path;       /* borrowed: names the file in errors */
} ByteReader;

/* Starts *r at offset 0 of the n bytes at p. p and path are borrowed and must
 * outlive every use of *r. */
void bytes_init(ByteReader *r, const void *p, size_t n, const char *path);

/* Returns ST_OK when n more bytes remain at r->off; otherwise ST_ERR_FORMAT with
 * "PATH: truncated at field 'FIELD' (offset O: need N bytes, L left)". Reads nothing. */
Status bytes_need(const ByteReader *r, size_t n, const char *field, Err *err);

/* Copies the next n bytes into dst and advances r->off; fails as bytes_need
 * does, leaving dst and r->off untouched. */
Status bytes_read(ByteReader *r, void *dst, size_t n, const char *field, Err *err);

/* A growing little-endian byte buffer for binary writers: appends never
 * fail, a failed allocation sets oom and turns later appends into no-ops, so
 * a writer checks oom once at the end. p is heap (caller frees). Zero it to
 * start. */
typedef struct ByteWriter {
    unsigned char *p;       /* (n) written bytes, heap */
    size_t n, cap;
    int oom;
} ByteWriter;

void bytes_put(ByteWriter *w, const void *src, size_t n);
void bytes_put_u32(ByteWriter *w, uint32_t v);
void bytes_put_u64(ByteWriter *w, uint64_t v);

#endif
