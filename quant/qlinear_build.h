/* Builds the QLinear a plan entry runs: packs a QTensor for the kernel that
 * fits its format and the entry's activation quantization.
 *
 * Kernel choice (qlinear_kernel_name says which one a layer got):
 *  - "w8a8":   int8 symmetric weights with a per-tensor or per-OC scale (no
 *              groups) and int8 activations: kernels/int8_gemm.h, the
 *              activations quantized by kernels/actquant.h (per-tensor or
 *              per-token, dynamic or static, optional skip-first);
 *  - "w4a8":   int4 symmetric weights, per-tensor, per-OC or OC groups of a
 *              multiple of 32, and int8 activations (any granularity and
 *              scale, quantized as for w8a8): kernels/w4a8.h integer dot
 *              products (VNNI / AVX2 / scalar). Equals the fake-quant
 *              reference (activations quantized and dequantized, weights
 *              dequantized, float matmul) up to float summation order:
 *              |Δy| ≤ (k/16 + 2)·eps·Σ|w·x̂| (tests/test_w4a8.c);
 *  - "wq-intN": other integer weights (int8 … int2; int6/int5 ride in the
 *              8-bit storage): kernels/wq_gemm.h GEMV for one token, dequantized
 *              tiles + sgemm for batches;
 *  - "fp8-e4m3" / "fp8-e5m2", "fp16", "bf16", "f32": the same driver with the
 *              float decoders.
 * Activation formats without a native kernel for the weights (fp8 always;
 * int8 with non-W8A8 weights) are applied as exact fake quantization
 * (actq_fake: the same rounding as the integer path) before the kernel.
 *
 * bytes(): qparams_bytes() of the QTensor's params (codes at the format's
 * bits, fp16 scales, packed zero points) plus the padding the packed layout
 * adds: K rounded up to the code block (32 or 64 elements; 4 for w8a8; 256
 * for w4a8), N up to 64 for w8a8, and the 8-bit storage of int6/int5. Not
 * counted: in-memory alignment of rows to 64 bytes, the float32 copies of
 * scales / zero points the kernels read (fp16 in any file we write), and
 * w4a8's expansion of a group's fp16 scale to every 32-input block. */
#ifndef QS_QUANT_QLINEAR_BUILD_H
#define QS_QUANT_QLINEAR_BUILD_H

#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"
#include "kernels/actquant.h"
#include "quant/plan.h"
#include "quant/qlinear.h"
#include "quant/qtensor.h"

/* Builds a layer from q (copied and packed; q may be released afterwards)
 * with activation settings aq (NULL = none; static scales use
 * aq->static_absmax, the calibrated max|x| the caller supplies). Fails with
 * ST_ERR_UNSUPPORTED for AQLM, ST_ERR_ARG for a malformed QTensor or
 * activation setting, ST_ERR_NOMEM. *out is owned by the caller
 * (qlinear_free). */
Status qlinear_new_from_qtensor(const QTensor *q, const ActQuant *aq, QLinear **out, Err *err);

/* Releases a layer built here (any QLinear, through its ops->free); NULL is a
 * no-op. */
void qlinear_free(QLinear *l);

/* Forward for rows whose first one sits at sequence position pos0: layers
 * built here use it for skip-first activation ranges; any other QLinear runs
 * its ops->forward. Same contract as qlinear_forward otherwise. */
Status qlinear_forward_pos(const QLinear *l, const float *x, int64_t T, int64_t pos0, float *y, Pool *pool,
                           Err *err);

/* Most layers qlinear_forward_shared takes at once (a layer phase: q/k/v, gate/up). */
#define QLINEAR_SHARED_MAX 8

/* ys[i] (T, ls[i]->n_out) = x (T, n_in) · W_iᵀ for n <= QLINEAR_SHARED_MAX
 * layers reading the same input x (rows at positions pos0 ..), bit for bit
 * what n qlinear_forward_pos calls give, with fewer hand-offs: layers built
 * here with the same kernel family and the same activation quantization
 * (format, granularity, static range, skip-first, padded width) quantize x
 * once between them (int8 codes and scales, W4A8's reordered copy, or the
 * fake-quantized rows), and their W8A8 / W4A8 products run in one pool
 * dispatch (W8A8 for T <= I8GEMM_JOB_ROWS; more rows run per layer). Other
 * layers run as qlinear_forward_pos does. Every ls[i]->n_in must be the same.
 * Fails as qlinear_forward does (a scratch buffer that cannot be allocated). */
Status qlinear_forward_shared(const QLinear *const *ls, int n, const float *x, int64_t T, int64_t pos0,
                              float *const *ys, Pool *pool, Err *err);

/* Returns the kernel a layer built here runs ("w8a8", "wq-int4", "fp8-e4m3",
 * "fp16", ...; static), or "external" for other QLinears. */
const char *qlinear_kernel_name(const QLinear *l);

/* The activation settings of a plan entry; static_absmax is the calibrated
 * max|x| of the layer's input (ignored unless e->act_scale is static). */
ActQuant qlinear_act_from_plan(const PlanEntry *e, float static_absmax);

#endif
