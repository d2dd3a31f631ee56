#include "analysis/evaluate.h"

#include <string.h>
#include <time.h>

#include "analysis/statsfile.h"

void evaluate_spec_init(EvalSpec *s, const Model *m, const char *text, size_t len) {
    memset(s, 0, sizeof *s);
    s->m = m;
    s->text = text;
    s->len = len;
    eval_opts_default(&s->opts);
    s->opts.n_ctx = eval_ctx_default(&m->cfg);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void stage_done(const EvalSpec *s, EvalStage st, Evaluation *e) {
    e->stage = st + 1;
    if (s->on_stage) s->on_stage(s->user, st, e);
}

Status evaluate(const EvalSpec *s, Evaluation *e, Err *err) {
    memset(e, 0, sizeof *e);
    QStatsFile sf = {0};
    QModelStats qs = s->stats;
    EvalRef *own = NULL;
    const EvalRef *ref = s->ref;
    Status st = ST_OK;
    double t0;
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&s->m->cfg);
    e->stage = EVAL_STAGE_OPEN;
    if (s->gguf_path) {
        ModelLoadOpts mo = {0};
        if ((st = model_load(s->gguf_path, &mo, &e->qsrc, err))) goto done;
    } else if (!qs.cs && s->stats_path && s->stats_path[0] && !s->stored &&
               qmodel_plan_needs_stats(s->plan, &pm, NULL)) {
        if ((st = qstats_open(s->stats_path, s->m, &sf, err))) goto done;
        qs.cs = sf.cs;
        qs.h = sf.h;
    }
    e->stage = EVAL_STAGE_BUILD;
    st = e->qsrc     ? qmodel_from_model(s->m, e->qsrc, &e->qm, err)
         : s->stored ? qmodel_build_stored(s->m, s->plan, s->stored, s->pool, s->prog, &e->qm, err)
                     : (s->build ? s->build : qmodel_build)(s->m, s->plan, &qs, s->pool, s->prog, &e->qm, err);
    if (st) goto done;
    stage_done(s, EVAL_STAGE_BUILD, e);
    t0 = now_s();
    if (!ref) {
        st = eval_ref_get(s->m, s->text, s->len, &s->opts, s->cache_dir, s->pool, s->prog, &own, &e->ref_cached,
                          err);
        if (st) goto done;
        ref = own;
    }
    e->ref_seconds = now_s() - t0;
    e->ref_ctx = s->opts.n_ctx;
    e->ref_chunks = eval_ref_chunks(ref);
    e->ref_positions = eval_ref_positions(ref);
    e->ref_ppl = eval_ref_ppl(ref);
    stage_done(s, EVAL_STAGE_REF, e);
    st = eval_run(e->qm, ref, &s->opts, s->pool, s->on_chunk, s->user, s->prog, &e->res, err);
    e->have_res = st == ST_OK || st == ST_ERR_CANCELLED;
    if (!st) e->stage = EVAL_STAGE_DONE;
done:
    eval_ref_free(own);
    qstats_close(&sf);
    return st;
}

void evaluation_done(Evaluation *e) {
    if (!e) return;
    eval_result_done(&e->res);
    qmodel_free(e->qm);
    model_free(e->qsrc); /* after the QModel, which borrows it */
    memset(e, 0, sizeof *e);
}
