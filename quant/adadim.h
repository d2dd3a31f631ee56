/* AdaDim: quantize a weight with scales along the output channels (per-OC /
 * groups of g along each row) and along the input channels (per-IC / groups
 * of g down each column), with the same format, bits and group size, and
 * keep the variant whose calibrated output error tr(ΔW·H·ΔWᵀ) is lower
 * (H = XᵀX of the layer's inputs). Per-IC scales give an outlier input
 * channel its own range, which is what activation-outlier-heavy layers need. */
#ifndef QS_QUANT_ADADIM_H
#define QS_QUANT_ADADIM_H

#include <stdint.h>

#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "quant/gptq.h"
#include "quant/qtensor.h"

typedef struct AdaDimResult {
    GroupDim dim;            /* the choice: GROUP_OC or GROUP_IC */
    double err_oc, err_ic;   /* tr(ΔW H ΔWᵀ) of each variant */
    double err_ref;          /* tr(W H Wᵀ), to turn them into relative errors */
    QTensor q;               /* the chosen quantization (owned: qtensor_done) */
} AdaDimResult;

/* Quantizes W (n_out, n_in) both ways with p's format, sym and group (p->dim
 * is ignored) by RTN (gptq == NULL) or GPTQ with *gptq, using H (n_in, n_in)
 * (float64, both triangles filled, borrowed for the call), and fills *out. Ties go to OC. pool and
 * prog may be NULL. Errors as rtn_quantize / gptq_quantize, the group size
 * having to divide both n_out and n_in. */
Status adadim_choose(const float *W, int64_t n_out, int64_t n_in, const double *H, const QParams *p,
                     const GptqOpts *gptq, Pool *pool, Progress *prog, AdaDimResult *out, Err *err);

/* adadim_choose with GPTQ through a prebuilt factor f of H (borrowed,
 * read-only, from gptq_factor_new with gptq's damp and act_order; NULL:
 * exactly adadim_choose), so
 * projections reading the same H share one factorization; gptq supplies
 * block and static_groups (NULL: defaults). Results are those of
 * adadim_choose with the same options. H is still read for the output
 * errors. ST_ERR_MISMATCH if f's n is not n_in. */
Status adadim_choose_factored(const float *W, int64_t n_out, int64_t n_in, const double *H, const GptqFactor *f,
                              const QParams *p, const GptqOpts *gptq, Pool *pool, Progress *prog, AdaDimResult *out,
                              Err *err);

/* Returns tr((W - Wq) H (W - Wq)ᵀ) (Wq NULL: tr(W H Wᵀ)) for a full
 * symmetric H (n_in, n_in), or NaN when memory runs out. On AVX-512 machines
 * D·H runs in float32 through kernels/f32gemm.h on pool (the row sums in
 * float64): relative error about 1e-5, enough to rank variants; elsewhere
 * float64 OpenBLAS. pool may be NULL. */
double adadim_output_error(const float *W, const float *Wq, int64_t n_out, int64_t n_in, const double *H, Pool *pool);

#endif
