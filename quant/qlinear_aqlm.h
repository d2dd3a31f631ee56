/* A QLinear that runs an AQLM-quantized projection (quant/aqlm.h) with the
 * kernels of kernels/aqlm_kernels.h: the lookup-table GEMV when codes have at
 * most 8 bits, the codeword-gather GEMV above that, and tile decode + sgemm
 * for prefill batches of AQLM_PREFILL_DECODE_T tokens or more. Activations
 * stay float32 (AQLM quantizes weights only). */
#ifndef QS_QUANT_QLINEAR_AQLM_H
#define QS_QUANT_QLINEAR_AQLM_H

#include <stddef.h>

#include "core/status.h"
#include "quant/aqlm.h"
#include "quant/qlinear.h"

/* Builds a layer from t (copied and packed: 8-bit codes when B <= 8, plus a
 * transposed codebook for the LUT build; t may be released afterwards).
 * Fails with ST_ERR_ARG when t's parameters or shape are invalid, ST_ERR_NOMEM.
 * *out is owned by the caller and released by its ops->free (which frees
 * the QLinear itself, as quant/qlinear_build.h's qlinear_free does). */
Status qlinear_aqlm_new(const AqlmTensor *t, QLinear **out, Err *err);

/* Returns 1 when l was built by qlinear_aqlm_new, else 0. */
int qlinear_is_aqlm(const QLinear *l);

/* Returns "aqlm-lut" or "aqlm-gather" (the single-token kernel l runs), or
 * NULL when l is not an AQLM layer. Static. */
const char *qlinear_aqlm_kernel(const QLinear *l);

#endif
