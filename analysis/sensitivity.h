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

/* Candidate weight formats, in map order: the formats whose traits give
 * them a map position (quant/format.c's `sens` column): int8 int6 int5 int4
 * int3 int2 fp8-e4m3 fp8-e5m2, then ggml's q8_0 q6_k q5_k q5_1 q5_0 q4_k
 * q4_1 q4_0 q3_k q2_k. Their count is part of the stats file's layout,
 * which names them (analysis/statsfile.h). */
#define SENS_NFMT 18
/* Groupings, in map order. The scaled formats (int, fp8) have the first
 * five; a ggml format has one cell, SG_BLOCK: its own blocks and block
 * scales (plans give ggml formats no grouping). */
typedef enum { SG_TENSOR, SG_OC, SG_IC, SG_OC_G, SG_IC_G, SG_BLOCK, SG_COUNT } SensGroup;
#define SENS_DEFAULT_GROUP 32
/* Deflated directions of H in the estimated map (SensOpts.rank). */
#define SENS_DEFAULT_RANK 64

/* Returns the format of map index i (< SENS_NFMT). */
QFormat sens_fmt(int i);
/* Returns the map index of f, or -1 if f is not a candidate. */
int sens_fmt_index(QFormat f);
/* 1 when candidate fmt (map index) has a cell in grouping g: SG_BLOCK for
 * the ggml formats, the other five for the rest. */
int sens_cell_applies(int fmt, SensGroup g);
/* The number of groupings candidate fmt has cells in (5, or 1 for ggml). */
int sens_fmt_cells(int fmt);
/* "tensor", "oc", "ic", "oc-g", "ic-g", "blk". */
const char *sens_group_name(SensGroup g);
/* The GroupDim of a grouping. */
GroupDim sens_group_dim(SensGroup g);

/* Group size used along a dimension of n elements when g is asked: the
 * largest divisor of n that is <= g and a multiple of 4; 0 when none. */
int64_t sens_group_size(int64_t n, int64_t g);

/* The weight parameters of candidate fmt (map index) in grouping g on an
 * (n_out, n_in) matrix when groups of `group` are asked (the map's group):
 * 1 and *qp as the map quantizes that cell (symmetric, RTN), or 0 where the
 * cell does not exist there (sens_cell_applies, no group size divides the
 * dimension, the ggml format's blocks do not divide the rows). */
int sens_cell_params(int fmt, SensGroup g, int64_t n_out, int64_t n_in, int64_t group, QParams *qp);

/* The map. Index (layer, proj, fmt, grouping) as
 * ((layer * PROJ_COUNT + proj) * SENS_NFMT + fmt) * SG_COUNT + grouping. */
typedef struct SensMap {
    int64_t n_layers;
    int64_t group;           /* g asked for */
    float *werr;             /* (n_layers, PROJ_COUNT, SENS_NFMT, SG_COUNT); NaN = not applicable
                                (sens_cell_applies, a group size or ggml block that does not fit) */
    float *oerr;             /* same shape; NaN without H or not applicable */
    int32_t *gsize;          /* (n_layers, PROJ_COUNT, SG_COUNT) group size used (0 per-tensor/-channel
                                or not applicable: then werr is NaN for SG_*_G) */
    uint8_t *done;           /* (n_layers, PROJ_COUNT, SENS_NFMT) 1: the cells of (site, format) are
                                computed; a map with a 0 is partial (a cancelled pass, or a stats
                                file from before a candidate existed) and resumes where it is 0 */
} SensMap;

/* Allocates a NaN-filled map; caller releases with sens_map_done. */
Status sens_map_init(SensMap *sm, int64_t n_layers, int64_t group, Err *err);
/* Frees the arrays; safe on a zeroed map. */
void sens_map_done(SensMap *sm);

/* Sites (layer, projection) whose every candidate is computed. */
int64_t sens_map_sites_done(const SensMap *sm);
/* 1 when every cell of every site is computed (0 for a zeroed map). */
int sens_map_complete(const SensMap *sm);

/* Relative cost of computing n_cells cells of a site of (n_out, n_in), for
 * a cost-weighted ETA, in multiply-adds of the estimated map: each cell
 * quantizes about min(n_out, 1100) rows (350 units per weight), sends about
 * 40 of them through H (n_in² each) and fits its scales on the whole matrix
 * (30 per weight); see analysis/sensitivity.c. */
double sens_site_cost(int64_t n_out, int64_t n_in, int n_cells);

/* Bits per weight of the map's cell (fmt, g) on a site of (n_out, n_in)
 * whose group sizes are gs (SG_COUNT entries, the map's gsize row), so that
 * groupings are compared at their cost: a scaled format's bits plus one fp16
 * scale per scale group (tensor: one per matrix; oc: one per n_in weights;
 * ic: one per n_out; oc-g, ic-g: one per group) — qparams_bits of the cell's
 * symmetric RTN parameters over n_out·n_in; a ggml format's block bytes·8
 * over its block size. NaN when the cell does not apply, its group size is 0,
 * or the size it needs is unknown (0). */
double sens_cell_bpw(int fmt, SensGroup g, const int32_t *gs, int64_t n_out, int64_t n_in);

/* Index helpers. */
static inline int64_t sens_index(int64_t layer, int proj, int fmt, int grouping) {
    return ((layer * PROJ_COUNT + proj) * SENS_NFMT + fmt) * SG_COUNT + grouping;
}

/* How output errors are computed. Exact: tr(ΔW H ΔWᵀ) through a float32
 * GEMM ΔW·H per cell (n_out·n_in² each, 50 per site), and ‖ΔW‖² over all
 * rows. Estimated (default): H's top `rank` eigen-directions (seeded
 * subspace iteration per loaded H) and its remaining diagonal are computed
 * exactly for each quantized row, the remaining off-diagonal part on a
 * subsample of those rows through H; a cell quantizes only a seeded random
 * subsample of the rows (its scales fitted on all of them), both samples
 * growing until the standard errors of ‖ΔW‖² and of tr(ΔW H ΔWᵀ) are at most
 * rel_se of the estimates (0.01: the 5 % accuracy asked for is 5 standard
 * errors; all rows means exact). The denominator tr(W H Wᵀ) is estimated the
 * same way from all rows to rel_se/4. The argument is in sensitivity.c
 * (quad_est, cell_est); BENCHMARKS.md has the cost and the errors. */
/* Called after each site a run finishes (the map then holds it, done flags
 * set), e.g. to save the partial map; an error stops the run with it. */
typedef Status (*SensSiteFn)(void *user, const SensMap *sm, int64_t layer, int proj, Err *err);

typedef struct SensOpts {
    int exact;
    int64_t min_rows;        /* first subsample through H (default 32) */
    double rel_se;           /* target standard error, relative (default 0.01) */
    int rank;                /* eigen-directions of H computed exactly per row (default SENS_DEFAULT_RANK;
                                0: the diagonal alone) */
    int64_t max_sites;       /* > 0: stop after computing this many sites (as a cancel: ST_ERR_CANCELLED,
                                finished sites kept); 0: all */
    SensSiteFn on_site;      /* NULL: none */
    void *user;              /* for on_site */
} SensOpts;

/* Fills o with the defaults above (estimated). */
void sens_opts_default(SensOpts *o);

/* Fills the cells of sm (already initialised for m's layer count) that are
 * not done, site by site (layer, projection), setting their done flags: a
 * fresh map is computed whole, a partial one resumed. h may be NULL (output
 * errors stay NaN); it must hold the finished H of m's four projection
 * inputs. The cells of a site run in parallel on pool (may be NULL), one per
 * thread, each cell's sums in double in a fixed order, so the map does not
 * depend on the thread count nor on where a run was resumed. Progress: stage
 * "sensitivity", total 1000, advanced by each site's share of the remaining
 * cost (sens_site_cost), so its ETA is cost-weighted. A cancel (checked
 * between sites) or o->max_sites returns ST_ERR_CANCELLED with the finished
 * sites kept. sens_compute uses the defaults. */
Status sens_compute_opts(const Model *m, const HStore *h, const SensOpts *o, Pool *pool, Progress *prog,
                         SensMap *sm, Err *err);
Status sens_compute(const Model *m, const HStore *h, Pool *pool, Progress *prog, SensMap *sm, Err *err);

/* Relative weight and output errors of symmetric or asymmetric RTN under
 * each of qps[0..n) on one site (layer, proj) of m, as sens_compute measures
 * its cells: werr[i] = ‖ΔW‖²/‖W‖², oerr[i] = tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) (NaN
 * when h is NULL). For cells the map lacks (other group sizes); pool and
 * werr may be NULL. */
Status sens_site_errors(const Model *m, const HStore *h, int64_t layer, int proj, const QParams *qps, int n,
                        Pool *pool, double *werr, double *oerr, Err *err);

/* A quantizer for sens_site_errors_fn: writes into Wq (no, ni) the values
 * cell k represents for the rows W (no, ni). */
typedef Status (*SensQuantFn)(void *user, int k, const float *W, int64_t no, int64_t ni, float *Wq, Err *err);

/* sens_site_errors with the cells' quantizer fn (any method: GPTQ, ggml's
 * weighted rounding ...), on a seeded subsample of max_rows rows of the
 * weight (0 or >= n_out: all rows, exact). The subsample serves quantizers
 * whose rows are independent (groups along a row, per-OC scales, ggml blocks);
 * both traces are then summed over the same rows, a ratio estimate of the
 * whole matrix's relative errors. */
Status sens_site_errors_fn(const Model *m, const HStore *h, int64_t layer, int proj, int n, int64_t max_rows,
                           SensQuantFn fn, void *user, Pool *pool, double *werr, double *oerr, Err *err);

/* AdaDim's choice for (layer, proj, fmt) per-channel (grouped = 0: per-IC vs
 * per-OC) or grouped (1: ic-g vs oc-g): the dimension with the lower output
 * error (weight error when output errors are NaN); GROUP_OC on ties;
 * GROUP_TENSOR when neither cell is available. */
GroupDim sens_adadim_choice(const SensMap *sm, int64_t layer, int proj, int fmt, int grouped);

#endif
