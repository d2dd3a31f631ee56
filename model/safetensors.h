/* safetensors reader: an 8-byte little-endian header length N, N bytes of
 * JSON ({name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__":
 * {...}}), then the data section, with offsets relative to 8 + N. The file is
 * mmapped; every length, offset and shape is checked at open, so tensor data
 * pointers are always in range. */
#ifndef QS_MODEL_SAFETENSORS_H
#define QS_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/mapfile.h"
#include "core/status.h"

#define SAFETENSORS_MAX_DIMS 8
#define SAFETENSORS_MAX_HEADER ((size_t)100 << 20)

typedef struct StTensor {
    char *name;              /* owned by the Safetensors */
    uint32_t type;           /* GgmlType: GGML_F32, GGML_F16 or GGML_BF16 */
    int n_dims;
    int64_t shape[SAFETENSORS_MAX_DIMS]; /* outermost first, as the file lists it */
    const void *data;        /* borrowed from the mapping */
    size_t nbytes;
} StTensor;

typedef struct Safetensors {
    MappedFile mf;
    size_t header_len;       /* 8 + N: where the data section starts */
    StTensor *tensors;       /* (n_tensors), in header order */
    int64_t n_tensors;
    StTensor **by_name;      /* (n_tensors) into tensors, sorted by name: safetensors_find's index */
} Safetensors;

/* Maps and validates a .safetensors file. Only F32, F16 and BF16 tensors are
 * accepted (others are ST_ERR_UNSUPPORTED naming the tensor and dtype). On
 * error err names the file and the field. Caller frees with safetensors_free. */
Status safetensors_open(const char *path, Safetensors **out, Err *err);

/* Unmaps and frees; NULL is a no-op. */
void safetensors_free(Safetensors *st);

/* Returns the tensor with that name (borrowed, valid while st lives) or NULL. */
const StTensor *safetensors_find(const Safetensors *st, const char *name);

#endif
