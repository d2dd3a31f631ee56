/* The automatic planner: chooses every projection's weight format, grouping
 * and method so that the predicted end-to-end loss is least under a size
 * budget (qscope plan --auto, the TUI's A).
 *
 * Candidates come from one table per target (planner_kinds). Target any: a
 * format, symmetric, with per-tensor, per-OC, per-IC or grouped (OC / IC, the
 * sensitivity map's group size) scales, plus fp16, plus OC groups of other
 * sizes (extra_groups; int4/3/2 also asymmetric); the embedding and head stay
 * fp16. Target llamacpp: ggml's own block types (f16, q8_0, q6_k, q5_k, q5_1,
 * q5_0, q4_k, q4_1, q4_0, q3_k, q2_k; GPTQ on the type's own grid with method
 * gptq, else ggml's reference rounding), so the plan exports exactly; the
 * embedding and the (untied) head are sites too.
 *
 * Loss model (additive over sites): the predicted loss of site s under
 * candidate c is scale_s · oerr_s(c), oerr the relative output error
 * tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) of the candidate quantized by its own method: the
 * map's cell for symmetric RTN; computed from the weights and H for the rest
 * (GPTQ with OC scales, ggml types, other group sizes, asymmetric grids) on a
 * seeded sample of oerr_rows rows. scale_s defaults to 1 (the loss is then
 * Σ relative output error, a proxy); with a site calibration
 * (analysis/sitecal.h) scale_s is the KLD that site alone caused per unit of
 * its output error, so the loss is a predicted KLD in nats. fp16 costs 0.
 * The embedding and head have no H: their candidates cost the KLD measured
 * with that end alone quantized (end_loss), or, uncalibrated, their relative
 * weight error. Sizes are plan_entry_bits of the entry on the site's shape
 * (exact). The optimiser is quant/autoplan.h's multiple-choice knapsack. */
#ifndef QS_ANALYSIS_PLANNER_H
#define QS_ANALYSIS_PLANNER_H

#include <stddef.h>
#include <stdint.h>

#include "analysis/calib.h"
#include "analysis/hstore.h"
#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/model.h"
#include "quant/autoplan.h"
#include "quant/plan.h"

typedef enum { PLANNER_TARGET_ANY, PLANNER_TARGET_LLAMACPP, PLANNER_TARGET_COUNT } PlannerTarget;

/* One row of the candidate table. */
typedef struct PlannerKind {
    const char *name;        /* "int4/oc-g", "q8_0", "fp16" */
    QFormat fmt;
    GroupDim dim;
    int grouped;             /* 1: the map's group size along dim */
    int64_t need_group;      /* > 0: only where the map's group size is exactly this (ggml blocks) */
    const char *ggml;        /* the ggml type the entry exports to, or NULL */
    PlannerTarget target;    /* PLANNER_TARGET_ANY: general table; LLAMACPP: ggml table */
    int asym;                /* 1: asymmetric grid (zero points) */
} PlannerKind;

/* The candidate table of target (static), length in *n. */
const PlannerKind *planner_kinds(PlannerTarget target, int *n);

/* "any" / "llamacpp"; parse returns -1 if unknown. */
const char *planner_target_name(PlannerTarget t);
int planner_target_parse(const char *s);

typedef struct PlannerOpts {
    double bpw;              /* > 0: budget in bits per weight over every weight (embedding
                                and head included: plan_size's bpw_all) */
    size_t bytes;            /* > 0 (bpw 0): budget in bytes (plan_size's all_bytes) */
    uint32_t formats;        /* bit (1u << QFormat) per allowed format; 0: all the table has */
    PlannerTarget target;
    QMethod method;          /* for integer candidates: QM_RTN or QM_GPTQ (needs H to build) */
    const double *site_scale;/* (n_layers * PLAN_NPROJ) loss per unit of output error, or NULL (1) */
    /* Group sizes beyond the map's (target any): candidates int8/6/4/3/2 with
     * symmetric OC groups of each (the largest divisor <= g that is a multiple
     * of 4), their output errors computed now from the weights and h. */
    int64_t extra_groups[4];
    int n_extra_groups;
    const HStore *h;  /* needed with extra groups */
    Pool *pool;              /* for those (may be NULL) */
    /* Price candidates by their own method's output error (GPTQ with OC
     * scales, ggml imatrix) computed from the weights and h, instead of the
     * map's RTN cell (default 1; 0: the map's RTN errors, the old model). */
    int price_method;
    int64_t oerr_rows;       /* rows sampled per site for computed errors (default 256; 0: all) */
    /* Target llamacpp: measured KLD of each end alone quantized,
     * [end * QF_COUNT + fmt] (end 0 embedding, 1 head; NaN: not measured),
     * required with site_scale for the ends to be sites; NULL uncalibrated. */
    const double *end_loss;
    /* Speed (analysis/speedtab.h): with a table, every candidate's matmul time
     * on its site (one token, the decode path) is looked up, measured on
     * speed_pool when missing, and the result's predicted tokens/s filled in;
     * with min_decode_tps > 0 the plan must also predict at least that many
     * decode tokens/s (matmul-only): Σ time <= 1 / min_decode_tps, enforced by
     * a Lagrange multiplier on time over the bit-exact DP (see planner_build). */
    struct SpeedTab *speed;
    Pool *speed_pool;
    double min_decode_tps;
    AutoSolveOpts solve;
} PlannerOpts;

void planner_opts_default(PlannerOpts *o);

typedef struct PlannerSite {
    int kind;                /* index into planner_kinds(target); -1: an extra group size */
    char name[24];           /* the candidate ("int4/oc-g", "int4/oc128", "q8_0") */
    QFormat fmt;
    int64_t bits;
    double oerr;             /* the map's relative output error of the choice (0 for fp16) */
    double loss;             /* predicted loss of the choice */
    char why[200];           /* the trade-off against the neighbouring candidates */
} PlannerSite;

typedef struct PlannerResult {
    Plan plan;               /* the chosen plan (named "auto-<bpw>") */
    AutoSolution sol;        /* over the linear sites */
    int64_t budget_bits;     /* whole-model budget in bits */
    int64_t fixed_bits;      /* embedding + head */
    int64_t all_params;
    int calibrated;          /* site_scale given: losses are predicted KLD in nats */
    int64_t n_sites;         /* n_layers * PLAN_NPROJ */
    PlannerSite *sites;      /* (n_sites) owned, [layer * PLAN_NPROJ + proj] */
    PlannerTarget target;
    int has_ends;            /* 1: the embedding and the head were sites too (ends[0], ends[1];
                                sol.pick[n_sites + 0/1]); fixed_bits is then 0 */
    PlannerSite ends[2];
    double decode_tps, prefill_tps;  /* predicted matmul-only tokens/s of the plan (0: no speed table) */
    double speed_lambda;     /* the multiplier the speed constraint needed (0: not binding) */
} PlannerResult;

/* The formats the target offers the embedding and the head as sites (f16
 * and ggml types for llamacpp; none for any): up to cap into out, returns the
 * count. */
int planner_end_formats(PlannerTarget target, QFormat *out, int cap);

/* Builds the plan for m from cs's sensitivity map under o. Fails with
 * ST_ERR_ARG when cs has no sensitivity map or output errors (needs H), when
 * the target's table has no candidate on some site ("layer 3 down: no
 * candidate: the map's group size 28 is not 32"), ST_ERR_RANGE when the budget
 * is below the cheapest plan (the message gives that plan's bpw). m, cs and
 * o->site_scale are borrowed for the call. Caller releases *out with
 * planner_result_done. */
Status planner_build(const Model *m, const CalibStats *cs, const PlannerOpts *o, PlannerResult *out, Err *err);

/* Frees everything in r; safe on a zeroed result. */
void planner_result_done(PlannerResult *r);

/* A whole auto-plan request in plain values: what `qscope plan --auto`
 * takes and the session's auto_plan action records. */
typedef struct PlannerRequest {
    double bpw;              /* one of bpw > 0 / bytes > 0 */
    size_t bytes;
    PlannerTarget target;
    int method;              /* QM_RTN or QM_GPTQ; -1: gptq when the stats have H, else rtn */
    uint32_t formats;        /* as PlannerOpts (0: all) */
    int64_t groups[4];       /* extra OC group sizes (target any, with H) */
    int n_groups;
    int price_method;        /* PlannerOpts.price_method */
    int64_t oerr_rows;       /* PlannerOpts.oerr_rows */
    double min_decode_tps;   /* PlannerOpts.min_decode_tps (0: none) */
    const char *speed_cache; /* the speed table's cache dir (NULL: the default); with min_decode_tps or
                                speed_table set, the table is loaded from there, extended and saved */
    int speed_table;         /* 1: predict the plan's tokens/s (measuring what the table lacks) */
    /* The loss model's calibration (sitecal_get): text NULL = uncalibrated. */
    const char *text;
    size_t text_len;
    int64_t ctx, chunks;     /* ctx 0: 512 or the model's context if smaller */
    const char *sitecal;     /* the scales' cache file (required with text) */
    const char *cache_dir;   /* evaluation reference cache, or NULL */
} PlannerRequest;

/* Defaults: method -1, groups 64 and 128, price_method 1, oerr_rows 256,
 * chunks 4; no budget, no text. */
void planner_request_default(PlannerRequest *rq);

/* Runs rq on m with the stats sf (borrowed: sf->cs the map, sf->h H or
 * NULL): the site scales from rq->sitecal or measured (and the ends' KLD for
 * target llamacpp), then planner_build. *measured (may be NULL) = 1 when the
 * scales were measured now. pool and prog may be NULL. Caller releases *out
 * with planner_result_done. */
struct QStatsFile;
Status planner_run(const Model *m, const struct QStatsFile *sf, const PlannerRequest *rq, Pool *pool, Progress *prog,
                   PlannerResult *out, int *measured, Err *err);

/* The loss model's prediction for any plan p on m: Σ over linear sites of
 * scale_s · oerr_s(entry) (site_scale may be NULL: 1). A site whose entry the
 * map does not cover (asymmetric integers, other group sizes, AQLM) uses the
 * map's symmetric cell of the same format and grouping dimension with the
 * nearest group size, and is counted in *n_approx (may be NULL); fp16/bf16/
 * fp32 sites add 0. The map is RTN's: GPTQ sites are predicted as RTN (the
 * caller's refinement factor corrects that, see planner_fit_factor).
 * Returns ST_ERR_ARG when cs has no map with output errors. */
Status planner_predict(const Model *m, const CalibStats *cs, const Plan *p, const double *site_scale,
                       double *pred, int64_t *n_approx, Err *err);

/* The refinement factor k of measured ≈ k · predicted over n pairs: the
 * geometric mean of measured / predicted (pairs with a non-finite value or a
 * value <= 0 skipped), so every plan counts by its relative error; returns 1
 * when no pair is usable. *rel_err (may be NULL) gets the mean
 * |k·pred - meas| / meas over the pairs used (NaN when none), *n_used (may be
 * NULL) their number. */
double planner_fit_factor(const double *pred, const double *meas, int64_t n, double *rel_err, int64_t *n_used);

#endif
