/* Native-dtype weight matrices: decoding rows to float32 for the code that
 * needs floats (quantizers, statistics, exports, tests). */
#include "model/weight.h"

#include <string.h>

#include "core/alloc.h"
#include "core/mapfile.h"
#include "kernels/f16_gemm.h"
#include "quant/ggml_type.h"

Weight weight_from_f32(const float *w, int64_t n_out, int64_t n_in) {
    return (Weight){.data = w, .type = GGML_F32, .row_bytes = (size_t)n_in * sizeof(float), .n_out = n_out,
                    .n_in = n_in};
}

size_t weight_bytes(const Weight *w) { return (size_t)w->n_out * w->row_bytes; }

const float *weight_f32_data(const Weight *w) {
    if (w->type != GGML_F32 || (uintptr_t)w->data % sizeof(float) != 0) return NULL;
    return w->data;
}

void weight_rows_f32(const Weight *w, int64_t r0, int64_t r1, float *dst) {
    if (r1 <= r0) return;
    const unsigned char *src = (const unsigned char *)w->data + (size_t)r0 * w->row_bytes;
    int64_t n = (r1 - r0) * w->n_in;
    switch (w->type) {
    case GGML_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return;
    case GGML_F16:
    case GGML_BF16:
        f16_decode(src, n, w->type == GGML_BF16, dst); /* the ISA choice is the dispatcher's */
        return;
    default: {
        const GgmlTypeTraits *tr = ggml_type_traits(w->type);
        /* The loader admits only types with a dequantizer; rows are whole blocks. */
        for (int64_t r = r0; r < r1; r++, src += w->row_bytes, dst += w->n_in) tr->dequant(src, dst, w->n_in);
        return;
    }
    }
}

typedef struct {
    const Weight *w;
    float *dst;
} ConvJob;

static void conv_rows(void *arg, int64_t r0, int64_t r1, int tid) {
    (void)tid;
    const ConvJob *j = arg;
    weight_rows_f32(j->w, r0, r1, j->dst + r0 * j->w->n_in);
}

/* Matrices of at least this many elements are converted over the pool. */
#define CONV_PARALLEL_MIN ((int64_t)1 << 18)

Status weight_to_f32(const Weight *w, Pool *pool, const float **out, float **owned, Err *err) {
    *out = NULL;
    *owned = NULL;
    const float *f = weight_f32_data(w);
    if (f) {
        *out = f;
        return ST_OK;
    }
    size_t n;
    if (w->n_out < 0 || w->n_in < 0 || !core_mul_ok((size_t)w->n_out, (size_t)w->n_in, &n))
        return err_set(err, ST_ERR_RANGE, "weight (%lld, %lld) is too large", (long long)w->n_out,
                       (long long)w->n_in);
    float *buf = core_alloc_aligned(n ? n : 1, sizeof(float));
    if (!buf)
        return err_set(err, ST_ERR_NOMEM, "no memory to convert a (%lld, %lld) weight to float32",
                       (long long)w->n_out, (long long)w->n_in);
    ConvJob j = {w, buf};
    pool_for((int64_t)n >= CONV_PARALLEL_MIN ? pool : NULL, w->n_out, 1, conv_rows, &j);
    *out = buf;
    *owned = buf;
    return ST_OK;
}

void weight_f32_free(float *owned) { core_free_aligned(owned); }

void weight_release(const Weight *w) {
    if (w && w->mapped && w->data) (void)mapfile_release(w->data, weight_bytes(w));
}
