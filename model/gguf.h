/* GGUF v2/v3 reader. The whole file is mmapped; every string, array and
 * tensor is bounds-checked at open, so accessors never read out of range.
 * Borrowed pointers (strings, arrays, tensor data) live as long as the Gguf. */
#ifndef QS_MODEL_GGUF_H
#define QS_MODEL_GGUF_H

#include <stdint.h>

#include "core/mapfile.h"
#include "core/status.h"

typedef enum {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3,
    GGUF_UINT32 = 4, GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7,
    GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_UINT64 = 10, GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12, GGUF_VTYPE_COUNT
} GgufValueType;

typedef struct GgufStr {
    const char *s;           /* borrowed, NOT NUL-terminated */
    uint64_t len;
} GgufStr;

typedef struct GgufValue GgufValue;
struct GgufValue {
    GgufValueType type;
    union {
        uint64_t u;          /* all unsigned ints and bool */
        int64_t i;           /* signed ints */
        double f;            /* float32/float64 */
        GgufStr str;
        struct {
            GgufValueType elem_type;
            uint64_t n;
            const unsigned char *raw; /* scalar arrays: packed little-endian elements */
            GgufStr *strs;            /* string arrays: (n), owned by the Gguf */
            GgufValue *items;         /* arrays of arrays: (n), owned by the Gguf */
        } arr;
    } v;
};

typedef struct GgufKV {
    GgufStr key;
    GgufValue value;
} GgufKV;

typedef struct GgufTensor {
    GgufStr name;
    uint32_t n_dims;
    int64_t ne[4];           /* ne[0] is the contiguous (innermost) dimension */
    uint32_t type;           /* GgmlType */
    uint64_t offset;         /* relative to the data section */
    const void *data;        /* borrowed from the mapping */
    size_t nbytes;
} GgufTensor;

typedef struct Gguf {
    MappedFile mf;
    uint32_t version;
    int64_t n_kv;
    GgufKV *kv;              /* (n_kv) */
    int64_t n_tensors;
    GgufTensor *tensors;     /* (n_tensors) */
    uint64_t alignment;
    uint64_t data_offset;
    const GgufStr **kv_index; /* (kv_mask + 1) open-addressing hash of kv[].key, owned */
    const GgufStr **t_index;  /* (t_mask + 1) the same of tensors[].name, owned */
    size_t kv_mask, t_mask;
} Gguf;

/* Opens and validates a GGUF file. On error returns the status and err names
 * the file, the byte offset and what was wrong. Caller frees with gguf_free. */
Status gguf_open(const char *path, Gguf **out, Err *err);

/* Frees everything and unmaps; NULL is a no-op. */
void gguf_free(Gguf *g);

/* Returns the KV with that key (borrowed, valid while g lives), or NULL. */
const GgufKV *gguf_find(const Gguf *g, const char *key);

/* Returns the tensor with that name (borrowed, valid while g lives), or NULL. */
const GgufTensor *gguf_find_tensor(const Gguf *g, const char *name);

/* Typed getters: return 1 and set *out when key exists and is convertible
 * (any integer type for int, any float or integer for double), else 0. */
int gguf_get_int(const Gguf *g, const char *key, int64_t *out);
int gguf_get_double(const Gguf *g, const char *key, double *out);
int gguf_get_bool(const Gguf *g, const char *key, int *out);
/* String getter: *out points into g's mapping (valid while g lives) and is
 * not NUL-terminated. */
int gguf_get_str(const Gguf *g, const char *key, GgufStr *out);
/* Array getter: returns the array value (type GGUF_ARRAY; borrowed, valid
 * while g lives) or NULL. */
const GgufValue *gguf_get_arr(const Gguf *g, const char *key);

/* Element i of a scalar array as double / int64 (caller checks i < n). */
double gguf_arr_double(const GgufValue *arr, uint64_t i);
int64_t gguf_arr_int(const GgufValue *arr, uint64_t i);

/* Returns 1 if the GgufStr equals the C string. */
int gguf_str_eq(GgufStr s, const char *c);

/* Returns the byte size of one element of a scalar value type, 0 otherwise. */
size_t gguf_value_type_size(GgufValueType t);

#endif
