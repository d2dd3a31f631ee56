/* The one "evaluate a plan" path of `qscope eval`, the workbench's
 * evaluation job and replay's evaluate action: open the calibration the
 * plan needs, build the quantized model (a plan quantized, a plan with a
 * quantized-model file's weights, or a quantized GGUF of the model; a plan
 * that cannot be built fails before the reference is computed), get the
 * base model's reference (cached on disk, or one the caller keeps), run the
 * quantized model against it. The context policy is eval_ctx_default's
 * (evaluate_spec_init); callers differ only in how they report. */
#ifndef QS_ANALYSIS_EVALUATE_H
#define QS_ANALYSIS_EVALUATE_H

#include <stddef.h>

#include "analysis/eval.h"
#include "analysis/qmodel.h"
#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/model.h"
#include "quant/plan.h"

/* The stages in order (OPEN: the statistics or the GGUF); Evaluation.stage
 * says where a failure happened. */
typedef enum { EVAL_STAGE_OPEN, EVAL_STAGE_BUILD, EVAL_STAGE_REF, EVAL_STAGE_RUN, EVAL_STAGE_DONE } EvalStage;

struct Evaluation;

/* Called on the evaluating thread when a stage is done: EVAL_STAGE_BUILD (qm
 * is set) and EVAL_STAGE_REF (the reference's summary is set). */
typedef void (*EvalStageFn)(void *user, EvalStage done, const struct Evaluation *e);

typedef struct EvalSpec {
    const Model *m;
    const char *text;        /* the evaluation text (len bytes) */
    size_t len;
    EvalOpts opts;           /* evaluate_spec_init: eval_opts_default with eval_ctx_default(&m->cfg) */
    const char *cache_dir;   /* reference cache directory (NULL: compute afresh, keep nothing) */
    const EvalRef *ref;      /* a reference of m on this text and opts the caller keeps, or NULL */
    /* What is evaluated: a plan (quantized; from `stored`'s weights when
     * given), or the quantized GGUF at gguf_path. */
    const Plan *plan;
    const QStored *stored;
    const char *gguf_path;
    /* Calibration for plans that need it: open statistics (borrowed), or a
     * stats file opened here only when the plan needs it. */
    QModelStats stats;
    const char *stats_path;  /* NULL or "": none */
    /* Builds a plan's quantized model in qmodel_build's place (the CLI's
     * spreads the sites over MPI ranks); NULL: qmodel_build. */
    Status (*build)(const Model *m, const Plan *p, const QModelStats *st, Pool *pool, Progress *prog, QModel **out,
                    Err *err);
    Pool *pool;              /* may be NULL */
    Progress *prog;          /* may be NULL: stages "reference", "quantize", "eval"; cancel honoured */
    EvalChunkFn on_chunk;    /* eval_run's callback (may be NULL) */
    EvalStageFn on_stage;    /* may be NULL */
    void *user;              /* for both callbacks */
} EvalSpec;

typedef struct Evaluation {
    EvalStage stage;         /* the stage reached (a failure's stage; DONE on success) */
    int ref_cached;          /* the reference came from the cache */
    int64_t ref_ctx, ref_chunks, ref_positions; /* chunk length, chunks, scored positions */
    double ref_ppl, ref_seconds;
    Model *qsrc;             /* the GGUF's model (owned; qm borrows it) or NULL */
    QModel *qm;              /* owned; set from the build on */
    EvalResult res;          /* valid when have_res */
    int have_res;            /* the run finished, or was cancelled (res covers the chunks done) */
} Evaluation;

/* Zeroes s and sets m, text and the default options (context eval_ctx_default(&m->cfg)). */
void evaluate_spec_init(EvalSpec *s, const Model *m, const char *text, size_t len);

/* Runs the stages of s into *out (zeroed here; release with evaluation_done,
 * also after a failure). Returns the first failing stage's status (out->stage
 * names it); a cancelled run returns ST_ERR_CANCELLED with have_res when some
 * chunks were scored. Everything in s is borrowed for the call. */
Status evaluate(const EvalSpec *s, struct Evaluation *out, Err *err);

/* Frees what *e owns and zeroes it; safe on a zeroed one. */
void evaluation_done(struct Evaluation *e);

#endif
