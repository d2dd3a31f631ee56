/* A GGUF v3 writer: collects KVs and tensors in memory order and writes the
 * file in one pass (header, KVs, tensor infos, aligned data). */
#ifndef QS_MODEL_GGUF_WRITE_H
#define QS_MODEL_GGUF_WRITE_H

#include <stdint.h>

#include "core/progress.h"
#include "core/status.h"
#include "model/gguf.h"

typedef struct GgufWriter GgufWriter;

/* Returns a new empty writer (alignment 32) or NULL on ENOMEM. Caller frees. */
GgufWriter *gguf_writer_new(void);
/* Frees the writer and its copies of metadata; borrowed tensor data is not
 * touched. NULL is a no-op. */
void gguf_writer_free(GgufWriter *w);

/* Add metadata; strings and arrays are copied. Return ST_OK or ST_ERR_NOMEM. */
Status gguf_writer_add_u32(GgufWriter *w, const char *key, uint32_t v);
Status gguf_writer_add_i32(GgufWriter *w, const char *key, int32_t v);
Status gguf_writer_add_f32(GgufWriter *w, const char *key, float v);
Status gguf_writer_add_bool(GgufWriter *w, const char *key, int v);
Status gguf_writer_add_str(GgufWriter *w, const char *key, const char *v);
Status gguf_writer_add_arr_str(GgufWriter *w, const char *key, const char *const *v, int64_t n);
Status gguf_writer_add_arr_f32(GgufWriter *w, const char *key, const float *v, int64_t n);
Status gguf_writer_add_arr_i32(GgufWriter *w, const char *key, const int32_t *v, int64_t n);

/* Adds a tensor; data (ggml_row_bytes(type, ne0)*rows bytes) is borrowed until
 * gguf_writer_write returns. ne[0] is the contiguous dimension. */
Status gguf_writer_add_tensor(GgufWriter *w, const char *name, uint32_t type,
                              int n_dims, const int64_t *ne, const void *data);

/* Adds a copy of any parsed metadata value (scalars, strings, arrays of
 * either, nested arrays), e.g. to carry a source file's KVs over. */
Status gguf_writer_add_value(GgufWriter *w, const char *key, const GgufValue *v);

/* Produces a tensor's bytes at write time into dst (nbytes bytes), so large
 * models can be streamed without ever holding every tensor in memory. Returns
 * ST_OK or an error (err set) that aborts the write. */
typedef Status (*GgufFillFn)(void *user, int64_t tensor_index, void *dst, size_t nbytes, Err *err);

/* Adds a tensor whose bytes come from fill(user, tensor_index, ...) during
 * gguf_writer_write; tensor_index is the order of addition (0-based, counting
 * every tensor). user is borrowed until gguf_writer_write returns. */
Status gguf_writer_add_tensor_fill(GgufWriter *w, const char *name, uint32_t type, int n_dims,
                                   const int64_t *ne, GgufFillFn fill, void *user);

/* Reports tensor bytes written to p (total = all tensor bytes) and stops with
 * ST_ERR_CANCELLED when p->cancel is set. p is borrowed; NULL disables. */
void gguf_writer_set_progress(GgufWriter *w, Progress *p);

/* Writes the file atomically (temp file + rename). err names the path. */
Status gguf_writer_write(GgufWriter *w, const char *path, Err *err);

#endif
