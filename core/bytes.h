/* A read cursor over a file's bytes in memory whose every read is bounds-checked:
 * a read past the end fails with ST_ERR_FORMAT naming the file, the field and
 * its offset, so a binary reader never indexes past its buffer. */
#ifndef QS_CORE_BYTES_H
#define QS_CORE_BYTES_H

#include <stddef.h>
#include <stdint.h>

#include "core/atomicfile.h"
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

/* The writing twin, one for every binary writer: puts bytes little-endian
 * while hashing them (FNV-1a, core/hash.h), either straight into an
 * AtomicFile (bytes_writer_init with af) or, zeroed or with af NULL, into a
 * growing heap buffer p (caller frees) for formats assembled in memory. A
 * format ends with bytes_put_hash and its reader checks the same sum. The
 * first failure sticks: later puts do nothing, st (and oom for a failed
 * allocation) say what happened. */
typedef struct ByteWriter {
    AtomicFile *af;     /* borrowed sink, or NULL: bytes collect in p */
    unsigned char *p;   /* (n) memory mode: written bytes, heap */
    size_t n, cap;
    int oom;            /* memory mode: an allocation failed */
    uint64_t hash;      /* FNV-1a of every byte put (from HASH_SEED after bytes_writer_init) */
    Status st;          /* first failure, ST_OK while all went well */
    Err *err;           /* borrowed: receives the first failure's detail (may be NULL) */
} ByteWriter;

/* Starts *w on af (borrowed, must outlive *w; NULL for memory) with the hash
 * at HASH_SEED. A zeroed ByteWriter is a memory writer too (hash from 0). */
void bytes_writer_init(ByteWriter *w, AtomicFile *af, Err *err);

/* Appends n bytes (hashed). */
void bytes_put(ByteWriter *w, const void *p, size_t n);
void bytes_put_u8(ByteWriter *w, uint8_t v);
void bytes_put_u32(ByteWriter *w, uint32_t v);
void bytes_put_i32(ByteWriter *w, int32_t v);
void bytes_put_u64(ByteWriter *w, uint64_t v);
void bytes_put_i64(ByteWriter *w, int64_t v);
void bytes_put_f32(ByteWriter *w, float v);
void bytes_put_f64(ByteWriter *w, double v);

/* Marks the writer failed with st (e.g. an allocation made for a put failed)
 * unless it already failed; returns the writer's status. */
Status bytes_fail(ByteWriter *w, Status st, const char *what);

/* Appends the hash of everything put so far (8 bytes, not itself hashed) and
 * returns the writer's status. */
Status bytes_put_hash(ByteWriter *w);

#endif
