/* A linear layer whose weights are stored in some quantized form. The forward
 * pass knows only this interface: it hands the layer its input rows and gets
 * the output rows back; the layer picks its own kernel (the plan chose it). */
#ifndef QS_QUANT_QLINEAR_H
#define QS_QUANT_QLINEAR_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"

typedef struct QLinear QLinear;

typedef struct QLinearOps {
    /* y (T, n_out) = x (T, n_in) · Wᵀ, including any activation quantization the
     * layer was built with. x is read-only. Fails (ST_ERR_NOMEM) only when a
     * scratch buffer cannot be allocated; y is then undefined. */
    Status (*forward)(const QLinear *l, const float *x, int64_t T, float *y, Pool *pool, Err *err);
    /* Bytes the packed weights occupy (scales, zero points, codebooks included). */
    size_t (*bytes)(const QLinear *l);
    /* Releases impl. */
    void (*free)(QLinear *l);
} QLinearOps;

struct QLinear {
    const QLinearOps *ops;
    int64_t n_out, n_in;
    void *impl;              /* owned by the layer, released by ops->free */
};

/* Runs l's kernel (see QLinearOps.forward). */
static inline Status qlinear_forward(const QLinear *l, const float *x, int64_t T, float *y, Pool *pool, Err *err) {
    return l->ops->forward(l, x, T, y, pool, err);
}

#endif
