/* A quantized model: the model's float32 weights plus, for every (layer,
 * projection) a resolved plan does not leave at fp32, a QLinear running the
 * entry's format with its own kernel, SmoothQuant-rescaled norm gains, a
 * quantized output head and a (dequantized) quantized embedding table.
 * Building it is where a plan executes: each site is quantized with its
 * entry's method (rtn; gptq with calibration H; adadim choosing the grouping
 * dimension by calibrated output error; aqlm), SmoothQuant (smooth_alpha > 0)
 * migrates each norm's activation maxima into copies of the norm gain and
 * the weight columns before quantizing, and static activation scales come
 * from calibration's per-tensor max|x|.
 *
 * The embedding is looked up, never multiplied, so its quantized form is held
 * as the dequantized float32 table in a shallow copy of the Model
 * (QModel.model) whose tok_embd points at it; run the quantized model with
 * forward_new(&qm->model, &qm->ov, ...). That copy borrows every other
 * pointer from the original Model, which must outlive the QModel. */
#ifndef QS_ANALYSIS_QMODEL_H
#define QS_ANALYSIS_QMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "analysis/calib.h"
#include "analysis/hstore.h"
#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/forward.h"
#include "model/model.h"
#include "quant/aqlm.h"
#include "quant/plan.h"
#include "quant/qlinear.h"
#include "quant/qtensor.h"

/* One site's quantized weights in unpacked form, as a build produced them
 * (kept with qmodel_build_keep) and as a quantized-model file stores them
 * (sessions/qmodel_file.h). */
typedef enum { QSITE_NONE, QSITE_QTENSOR, QSITE_AQLM } QSiteKind;

typedef struct QStoredSite {
    QSiteKind kind;          /* NONE: the model's fp32 weight */
    QTensor q;               /* kind QTENSOR (owned) */
    AqlmTensor a;            /* kind AQLM (owned) */
    float act_absmax;        /* calibrated max|x| of the (smoothed) input, for static scales */
    GroupDim adadim_dim;     /* AdaDim's choice (GROUP_TENSOR: not adadim) */
    double rel_err;          /* ‖W - Wq‖ / ‖W‖ at build time */
} QStoredSite;

typedef struct QStored {
    uint64_t fingerprint;    /* Model.fingerprint of the model quantized */
    int64_t n_layers, dim, vocab;
    QStoredSite *sites;      /* (n_layers * PROJ_COUNT + 2) owned: projections, then the
                                output head [n·7] and the embedding [n·7 + 1] */
    float *attn_norm;        /* (n_layers, dim) owned: SmoothQuant gains, or NULL */
    float *ffn_norm;         /* (n_layers, dim) owned, or NULL */
    uint8_t *smoothed;       /* (n_layers, 2) owned: 1 where attn / ffn gains were replaced */
} QStored;

/* Frees a QStored and its arrays; NULL is a no-op. */
void qstored_free(QStored *s);

/* Calibration inputs a plan may need; both borrowed for the build. */
typedef struct QModelStats {
    const CalibStats *cs; /* per-channel / per-tensor max|x| (SmoothQuant, static scales) */
    const HStore *h;             /* H = XᵀX per (layer, linear input) (gptq, adadim, aqlm) */
} QModelStats;

typedef struct QModel {
    Model model;             /* shallow copy of the source Model (see above) */
    Overlay ov;              /* points into lin / attn_norm / ffn_norm / output */
    PlanResolved res;        /* the plan resolved on the model */
    int64_t n_layers;
    QLinear **lin;           /* (n_layers * PROJ_COUNT) owned; NULL = the model's fp32 weight */
    float **attn_norm;       /* (n_layers) owned (dim) gains after SmoothQuant, or NULL */
    float **ffn_norm;        /* (n_layers) owned (dim), or NULL */
    QLinear *output;         /* owned; NULL = the model's head */
    float *embd;             /* (vocab, dim) owned dequantized embedding, or NULL */
    GroupDim *adadim_dim;    /* (n_layers * PROJ_COUNT) AdaDim's choice (GROUP_TENSOR: not adadim) */
    double *site_rel_err;    /* (n_layers * PROJ_COUNT) weight-space relative error
                                ‖W - Wq‖_F / ‖W‖_F of each site (0 for fp32) */
    double *site_seconds;    /* (n_layers * PROJ_COUNT) wall time quantizing each site (with the
                                float32 conversion, and a GPTQ factorization shared by q/k/v or
                                gate/up counted at the first site using it); NULL from
                                qmodel_from_model */
    int64_t params;          /* weights counted: projections + embedding + head (tied once) */
    int64_t bits;            /* their exact bits (plan_size with AdaDim's choices) */
    size_t bytes;            /* their bytes (plan_size's all_bytes) */
    double bpw;              /* bits / params */
    size_t kernel_bytes;     /* Σ QLinear bytes() as packed for the kernels (info) */
    QStored *stored;         /* owned; the unpacked weights (qmodel_build_keep only), or NULL */
    char **notes;            /* (n_notes) owned: the plan's notes, then the build's
                                (AdaDim choices, fallbacks, SmoothQuant sites) */
    int64_t n_notes;
    int64_t *note_key;       /* (n_key) owned: where note i came from, for merging the notes of a
                                build spread over processes: l·QMODEL_NOTE_SLOTS + 0 / 1 for layer
                                l's SmoothQuant of q/k/v / gate/up, + 2 + p for projection p's site;
                                -1 for the plan's notes and the rest (NULL when n_key is 0) */
    int64_t n_key;           /* == n_notes after a build */
    double seconds;          /* build wall time */
    LayerWeights *layers;    /* (n_layers) owned: model.layers when built by
                                qmodel_from_model, else NULL */
} QModel;

/* Returns 1 when resolving p on m gives a site that needs H (gptq, adadim,
 * aqlm) or activation maxima (static scales, SmoothQuant); *what (may be
 * NULL) receives a static word for the message ("H", "activation maxima"). */
int qmodel_plan_needs_stats(const Plan *p, const PlanModel *m, const char **what);

/* Builds the quantized model of m under p. st may be NULL or have NULL
 * members when the plan needs no calibration; otherwise fails with
 * ST_ERR_ARG: "plan 'int4-gptq' needs calibration statistics (H): pass
 * --stats STATS from `qscope calib`". Validates p on m first (plan_validate's
 * message). pool may be NULL; prog may be NULL (stage "quantize", one step
 * per site; cancel -> ST_ERR_CANCELLED). m, st borrowed; m must outlive the
 * result. Caller frees *out with qmodel_free. */
Status qmodel_build(const Model *m, const Plan *p, const QModelStats *st, Pool *pool, Progress *prog,
                    QModel **out, Err *err);

/* qmodel_build that also keeps every site's unpacked weights in qm->stored
 * (to write a quantized-model file; twice the memory of the packed model). */
Status qmodel_build_keep(const Model *m, const Plan *p, const QModelStats *st, Pool *pool, Progress *prog,
                         QModel **out, Err *err);

/* Note slots per layer (QModel.note_key): two norm groups, seven sites. */
#define QMODEL_NOTE_SLOTS (2 + PROJ_COUNT)

/* qmodel_build_keep of only the sites with only[i] != 0 (only has
 * n_layers * PROJ_COUNT + 2 flags: projections layer-major, then the output
 * head, then the embedding; the head and the embedding are built together
 * when either flag is set). The other sites stay kind NONE with no QLinear,
 * their H never loaded; a norm group's SmoothQuant runs when its first
 * projection (q, gate) is included, so include a group's projections
 * together. For builds spread over processes (sessions/qmodel_dist.h): the
 * parts' stored sites, merged, are what one qmodel_build_keep stores. The
 * size fields count the parts' AdaDim choices only. Borrowing as qmodel_build;
 * caller frees *out with qmodel_free. */
Status qmodel_build_part(const Model *m, const Plan *p, const QModelStats *st, const uint8_t *only, Pool *pool,
                         Progress *prog, QModel **out, Err *err);

/* Builds the quantized model of m under p from stored weights (a
 * quantized-model file made from the same model and plan) instead of
 * quantizing: no calibration needed. Fails with ST_ERR_MISMATCH when st was
 * made from another model or a site does not match p. st is borrowed for the
 * call. */
Status qmodel_build_stored(const Model *m, const Plan *p, const QStored *st, Pool *pool, Progress *prog,
                           QModel **out, Err *err);

/* qmodel_build_stored that takes ready[i] (ready has n_layers * PROJ_COUNT
 * entries; NULL ones are built) as projection i's kernel instead of building
 * it again: a kernel a qmodel_build_part built while quantizing the very
 * weights st->sites[i] holds (a distributed build's own sites). Taken
 * kernels are set to NULL in ready; the caller frees the rest. */
Status qmodel_build_stored_ready(const Model *m, const Plan *p, const QStored *st, QLinear **ready, Pool *pool,
                                 Progress *prog, QModel **out, Err *err);

/* Relative output errors tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) of entries es[0..n) on
 * (layer, proj) of m, each site quantized as qmodel_build quantizes it: rtn,
 * imatrix (ggml's weighted rounding with diag H) or gptq (one factorization
 * shared by the entries with the same damp and act_order), with H from h.
 * Computed on a seeded subsample of max_rows rows (0: all), so every entry
 * must quantize its rows independently: a ggml block format, or an integer
 * format with per-OC scales or groups along OC (ST_ERR_ARG otherwise, and
 * for adadim / aqlm / activation formats). pool may be NULL. */
Status qmodel_site_oerr(const Model *m, const struct HStore *h, int64_t layer, int proj, const PlanEntry *es, int n,
                        int64_t max_rows, Pool *pool, double *oerr, Err *err);

/* NULL is a no-op. */
void qmodel_free(QModel *qm);

/* A QModel that runs another file's weights in base's place: a quantized
 * GGUF of the same model (llama-quantize's, or qscope export's) evaluated
 * against base's reference (eval_run). model is base's shallow copy with
 * q's matrices in their own ggml types (decoded as ggml dequantizes them),
 * q's norms and biases, base's fingerprint; no plan (res is empty); params,
 * bits and bytes count q's stored embedding, projections and head (a tied
 * head once), so bpw includes the block scales; one note lists the types.
 * Fails with ST_ERR_MISMATCH naming the first config or tensor-shape
 * difference. base and q are borrowed and must outlive the result. */
Status qmodel_from_model(const Model *base, const Model *q, QModel **out, Err *err);

#endif
