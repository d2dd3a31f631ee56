/* Weight sensitivity map: for every (layer, projection), candidate weight
 * format and grouping, the relative weight error ‖ΔW‖²/‖W‖² and the relative
 * output error tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) of symmetric round-to-nearest, with H
 * the calibration's second-moment matrix of the projection input; plus
 * AdaDim's per-projection choice between input- and output-channel scales.
 * (The activation-quantization map is accumulated during calibration: see
 * tapstats_act_rel_err in analysis/stats.h.) */
#ifndef QS_ANALYSIS_SENSITIVITY_H
#define QS_ANALYSIS_SENSITIVITY_H

#include <stdint.h>

#include "analysis/stats.h"
#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/model.h"
#include "quant/format.h"
#include "quant/qtensor.h"

/* Candidate weight formats, in map order: int8 int6 int4 int3 int2 fp8-e4m3 fp8-e5m2. */
#define SENS_NFMT 7
/* Groupings, in map order. */
typedef enum { SG_TENSOR, SG_OC, SG_IC, SG_OC_G, SG_IC_G, SG_COUNT } SensGroup;
#define SENS_DEFAULT_GROUP 32

/* Returns the format of map index i (< SENS_NFMT). */
QFormat sens_fmt(int i);
/* Returns the map index of f, or -1 if f is not a candidate. */
int sens_fmt_index(QFormat f);
/* "tensor", "oc", "ic", "oc-g", "ic-g". */
const char *sens_group_name(SensGroup g);
/* The GroupDim of a grouping. */
GroupDim sens_group_dim(SensGroup g);

/* Group size used along a dimension of n elements when g is asked: the
 * largest divisor of n that is <= g and a multiple of 4; 0 when none. */
int64_t sens_group_size(int64_t n, int64_t g);

/* The map. Index (layer, proj, fmt, grouping) as
 * ((layer * PROJ_COUNT + proj) * SENS_NFMT + fmt) * SG_COUNT + grouping. */
typedef struct SensMap {
    int64_t n_layers;
    int64_t group;           /* g asked for */
    float *werr;             /* (n_layers, PROJ_COUNT, SENS_NFMT, SG_COUNT); NaN = not applicable */
    float *oerr;             /* same shape; NaN without H or not applicable */
    int32_t *gsize;          /* (n_layers, PROJ_COUNT, SG_COUNT) group size used (0 per-tensor/-channel
                                or not applicable: then werr is NaN for SG_*_G) */
} SensMap;

/* Allocates a NaN-filled map; caller releases with sens_map_done. */
Status sens_map_init(SensMap *sm, int64_t n_layers, int64_t group, Err *err);
/* Frees the arrays; safe on a zeroed map. */
void sens_map_done(SensMap *sm);

/* Index helpers. */
static inline int64_t sens_index(int64_t layer, int proj, int fmt, int grouping) {
    return ((layer * PROJ_COUNT + proj) * SENS_NFMT + fmt) * SG_COUNT + grouping;
}

/* How output errors are computed. Exact: tr(ΔW H ΔWᵀ) through a float32
 * GEMM ΔW·H per cell (n_out·n_in² each, 35 per site). Estimated (default):
 * the diagonal part Σ_i H_ii ‖ΔW_:,i‖² in closed form plus the off-diagonal
 * rest from a seeded random subsample of rows, doubled from min_rows until
 * the estimate's standard error is at most rel_se of it (0.01: the 5 %
 * accuracy asked for is 5 standard errors; all rows means exact); the
 * denominator tr(W H Wᵀ) is always exact (one GEMM per site). */
typedef struct SensOpts {
    int exact;
    int64_t min_rows;        /* first subsample (default 64) */
    double rel_se;           /* target standard error, relative (default 0.01) */
} SensOpts;

/* Fills o with the defaults above (estimated). */
void sens_opts_default(SensOpts *o);

/* Fills sm (already initialised for m's layer count) for every layer and
 * projection. h may be NULL (output errors stay NaN); it must hold the
 * finished H of m's four projection inputs. The 35 cells of a site run in
 * parallel on pool (may be NULL), one per thread, each cell's sums in double
 * in a fixed order, so the map does not depend on the thread count.
 * Progress counts (layer, projection) pairs; cancel returns
 * ST_ERR_CANCELLED (map partly filled). sens_compute uses the defaults. */
Status sens_compute_opts(const Model *m, const HStore *h, const SensOpts *o, Pool *pool, Progress *prog,
                         SensMap *sm, Err *err);
Status sens_compute(const Model *m, const HStore *h, Pool *pool, Progress *prog, SensMap *sm, Err *err);

/* Relative weight and output errors of symmetric or asymmetric RTN under
 * each of qps[0..n) on one site (layer, proj) of m, as sens_compute measures
 * its cells: werr[i] = ‖ΔW‖²/‖W‖², oerr[i] = tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) (NaN
 * when h is NULL). For cells the map lacks (other group sizes); pool may be
 * NULL. */
Status sens_site_errors(const Model *m, const HStore *h, int64_t layer, int proj, const QParams *qps, int n,
                        Pool *pool, double *werr, double *oerr, Err *err);

/* AdaDim's choice for (layer, proj, fmt) per-channel (grouped = 0: per-IC vs
 * per-OC) or grouped (1: ic-g vs oc-g): the dimension with the lower output
 * error (weight error when output errors are NaN); GROUP_OC on ties;
 * GROUP_TENSOR when neither cell is available. */
GroupDim sens_adadim_choice(const SensMap *sm, int64_t layer, int proj, int fmt, int grouped);

#endif
