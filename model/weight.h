/* A weight matrix as the model stores it: the file's own bytes and type
 * (F32, F16, BF16 or a ggml block type), borrowed from the file mapping. No
 * whole-model float32 copy exists; code that needs float rows converts one
 * matrix (or a range of rows) at a time through the functions below. */
#ifndef QS_MODEL_WEIGHT_H
#define QS_MODEL_WEIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"

typedef struct Weight {
    const void *data;        /* (n_out, n_in): n_out rows of row_bytes bytes each, in `type`;
                                borrowed from the file mapping (or a model-owned aligned copy) */
    uint32_t type;           /* GgmlType of data, as the file stored it (GGML_F32 for llama2.c) */
    size_t row_bytes;        /* bytes of one row: ggml_row_bytes(type, n_in) */
    int64_t n_out, n_in;
    int mapped;              /* 1: data lies in a read-only file mapping (the loader borrowed it),
                                so its pages can be dropped and re-read (weight_release) */
} Weight;

/* Wraps a row-major float32 matrix (n_out, n_in); w is borrowed by the result. */
Weight weight_from_f32(const float *w, int64_t n_out, int64_t n_in);

/* Total bytes of the stored matrix (n_out * row_bytes). */
size_t weight_bytes(const Weight *w);

/* Returns the data as float32 when it is stored as aligned F32 (borrowed,
 * valid as long as w's data), else NULL. */
const float *weight_f32_data(const Weight *w);

/* Decodes rows [r0, r1) to float32 into dst ((r1 - r0) * n_in floats, row
 * major), exactly (F16/BF16 widen exactly; block types as ggml dequantizes
 * them). 0 <= r0 <= r1 <= n_out. Uses SIMD when kernels/cpu.h allows it. */
void weight_rows_f32(const Weight *w, int64_t r0, int64_t r1, float *dst);

/* The whole matrix as float32. F32 data are borrowed: *out points into w's
 * data and *owned = NULL. Anything else is converted (over pool's threads;
 * pool may be NULL) into a new aligned buffer returned in both *out and
 * *owned, which the caller frees with weight_f32_free once done with *out.
 * Convert one matrix at a time: a 7B's projections are up to 180 MB each as
 * float, its output head 500 MB. */
Status weight_to_f32(const Weight *w, Pool *pool, const float **out, float **owned, Err *err);

/* Frees a buffer from weight_to_f32; NULL is a no-op. */
void weight_f32_free(float *owned);

/* Drops w's resident file pages (the pages lying wholly inside its bytes)
 * when w->mapped, so code that walks the model one layer at a time (plan
 * execution) keeps only the layer it works on resident. The data stay valid:
 * a later read faults the pages back in from the file (page cache or disk).
 * No-op for heap data (weight_from_f32, copies). */
void weight_release(const Weight *w);

#endif
