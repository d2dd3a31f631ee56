/* Read-only memory mapping of a whole file. Model weights are borrowed
 * straight from the mapping, so a MappedFile must outlive every pointer into it. */
#ifndef QS_CORE_MAPFILE_H
#define QS_CORE_MAPFILE_H

#include <stddef.h>

#include "core/status.h"

typedef struct MappedFile {
    char *path;              /* owned copy of the path as given */
    const unsigned char *data; /* (size) bytes; NULL for an empty file */
    size_t size;
} MappedFile;

/* Maps path read-only into *mf. On error *mf is left empty and err names the file. */
Status mapfile_open(MappedFile *mf, const char *path, Err *err);

/* Unmaps and frees the path; safe on a zeroed or already-closed MappedFile. */
void mapfile_close(MappedFile *mf);

/* Best effort, for memory about to be read in full (a model's weights before
 * a forward pass): asks the kernel to fill the page tables of the pages
 * covering [addr, addr + len) now (MADV_POPULATE_READ, reading the file into
 * the page cache where needed), so the first pass over them takes no page
 * faults. Those pages count towards RSS from here on, as they would after
 * that first pass. No-op when len is 0, on kernels before 5.14 or on error. */
void mapfile_prefault(const void *addr, size_t len);

/* Best effort, for mapped memory needed soon but not yet (the next layer
 * of a walk over a model): starts reading the file pages under [addr,
 * addr + len) into the page cache (MADV_WILLNEED) without mapping them, so
 * RSS does not grow until they are read. May block while the reads are
 * queued: call it from a thread that has nothing else to do. */
void mapfile_willneed(const void *addr, size_t len);

/* Best effort, for mapped bytes a pass has finished with (a layer's weights
 * after calibration or quantization, a tensor the loader copied): drops this
 * process's pages lying wholly inside [addr, addr + len) where they belong to
 * a read-only mapping of a file, private or shared (checked in
 * /proc/self/maps; the H store maps its file shared), so they
 * stop counting towards RSS; they stay in the page cache and a later read
 * faults them back in from there. Pages shared with the bytes around the range
 * are kept, as is any other memory (heap copies, anonymous or writable
 * mappings), since MADV_DONTNEED would zero it. The one place qscope drops
 * file pages (model/weight.h weight_release calls it). Returns the bytes
 * released (0 when nothing qualified or on error). */
size_t mapfile_release(const void *addr, size_t len);

/* Reads a whole (small) file into a NUL-terminated heap buffer; caller frees.
 * Fails with ST_ERR_RANGE when the file is larger than max_bytes. */
Status file_read_all(const char *path, size_t max_bytes, char **out, size_t *len, Err *err);

#endif
