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

/* Reads a whole (small) file into a NUL-terminated heap buffer; caller frees.
 * Fails with ST_ERR_RANGE when the file is larger than max_bytes. */
Status file_read_all(const char *path, size_t max_bytes, char **out, size_t *len, Err *err);

#endif
