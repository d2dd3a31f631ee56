/* The plan side of the workbench: the plan editor's lifetime, the budget
 * summary, plan files, and the evaluation job (quantize the plan with
 * analysis/qmodel.h, run analysis/eval.h against the cached reference).
 * See app.h. */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "analysis/eval.h"
#include "analysis/evaluate.h"
#include "analysis/planner.h"
#include "analysis/qmodel.h"
#include "analysis/sitecal.h"
#include "analysis/speedtab.h"
#include "analysis/statsfile.h"
#include "core/alloc.h"
#include "core/hash.h"
#include "quant/ggml_type.h"
#include "quant/plan_edit.h"
#include "quant/preset.h"
#include "sessions/export.h"
#include "sessions/plan_json.h"
#include "sessions/session.h"
#include "tui/app.h"
#include "tui/compare.h"

static PlanModel app_pm(const App *a) { return PLAN_MODEL_FROM_CONFIG(&a->m->cfg); }

/* eval's defaults with --ctx / --chunks: as `qscope eval`, the default is
 * 512 or the model's context if shorter; a longer --ctx is kept (the CLI
 * warns; llama.cpp accepts it too). */
void app_eval_opts(const App *a, EvalOpts *o) {
    eval_opts_default(o);
    o->n_ctx = eval_ctx_default(&a->m->cfg);
    if (a->opts.ctx > 0) o->n_ctx = a->opts.ctx;
    if (a->opts.chunks > 0) o->max_chunks = a->opts.chunks;
    else if (a->split_chunks > 0) o->max_chunks = a->split_chunks; /* the rest is the calibration's */
    o->numerics = a->opts.numerics;
}

/* A reopened result's detail: the plan stored with it (else the session's
 * plan of that name as it is now, marked), its per-layer and per-site
 * errors and times; compared with the result before it. */
static void restore_detail(App *a, int64_t i, RowDetail *d) {
    const SessionResult *r = session_result(a->sess, i);
    Plan *p = core_calloc(1, sizeof *p);
    Err err;
    err_init(&err);
    if (p && session_result_plan(a->sess, i, p, &err) == ST_OK) {
        d->plan = p;
    } else if (p) {
        plan_done(p);
        if (r->plan && session_get_plan(a->sess, r->plan, p, &err) == ST_OK) {
            d->plan = p;
            d->plan_by_name = 1;
        } else {
            plan_done(p);
            free(p);
        }
    }
    int64_t nl = session_result_array(a->sess, i, "layer_rel_err", NULL, 0);
    if (nl > 0 && (d->layer_err = malloc((size_t)nl * sizeof *d->layer_err)))
        d->n_layer_err = session_result_array(a->sess, i, "layer_rel_err", d->layer_err, nl);
    int64_t ns = session_result_array(a->sess, i, "site_werr", NULL, 0);
    if (ns > 0 && (d->site_werr = malloc((size_t)ns * sizeof *d->site_werr)))
        d->n_site_werr = session_result_array(a->sess, i, "site_werr", d->site_werr, ns);
    double v;
    if (session_result_metric(a->sess, i, "quantize_seconds", &v)) d->quant_s = v;
    if (r->gguf) {
        d->gguf = core_strdup(r->gguf);
        if (d->plan) plan_done(d->plan);
        free(d->plan);
        d->plan = NULL;
        d->plan_by_name = 0;
    }
    d->eval_s = r->seconds;
    d->vs_id = i > 0 ? session_result(a->sess, i - 1)->id : 0;
}

/* Reopen: the session's results become rows of the Evaluate view; those
 * measured on another text or context length than this run's are marked. */
static void restore_results(App *a) {
    EvalOpts eo;
    app_eval_opts(a, &eo);
    uint64_t text_hash = a->text ? hash_bytes(HASH_SEED, a->text, a->text_len) : 0;
    for (int64_t i = 0; i < session_n_results(a->sess); i++) {
        const SessionResult *r = session_result(a->sess, i);
        EvalRow *row = app_add_row(a);
        if (!row) return;
        snprintf(row->label, sizeof row->label, "%s", r->plan ? r->plan : "?");
        row->ppl = r->ppl;
        row->ppl_base = r->ppl_base;
        row->dppl = r->ppl - r->ppl_base;
        row->kld_mean = r->kld_mean;
        row->kld_p99 = r->kld_p99;
        row->top1 = r->top1_agree;
        row->bpw = r->bpw;
        row->bytes = (size_t)r->bytes;
        row->tps = r->decode_tps > 0 ? r->decode_tps : NAN;
        row->quant_s = r->quantize_seconds;
        row->cancelled = r->cancelled;
        row->other_text = a->text && (r->text_hash != text_hash || r->ctx != eo.n_ctx);
        restore_detail(a, i, &a->details[a->n_rows - 1]);
    }
}

Status app_plan_init(App *a, Err *err) {
    PlanModel pm = app_pm(a);
    a->pe = core_calloc(1, sizeof *a->pe);
    a->plan.marks = core_calloc((size_t)(pm.n_layers * PLAN_NPROJ) + 1, 1);
    if (!a->pe || !a->plan.marks) return err_set(err, ST_ERR_NOMEM, "plan editor");
    Plan sp;
    plan_init(&sp);
    const Plan *start = NULL;
    const char *cur = a->sess ? session_current_plan(a->sess) : NULL;
    if (cur) {
        if (session_get_plan(a->sess, cur, &sp, err) != ST_OK) {
            plan_done(&sp);
            return err_wrap(err, "session %s: current plan '%s'", a->session_path, cur);
        }
        snprintf(sp.name, sizeof sp.name, "%s", cur);
        start = &sp;
    }
    Status st = plan_edit_init(a->pe, &pm, start, err);
    plan_done(&sp);
    if (st != ST_OK) {
        free(a->pe);
        a->pe = NULL;
        return st;
    }
    if (a->sess) {
        restore_results(a);
        if (!cur) { /* a new session starts with the fp16 preset, recorded so replay makes it too */
            app_plan_sync(a);
            SessionArg args[] = {SESSION_ARG_STR("preset", "fp16"), SESSION_ARG_STR("plan", "fp16")};
            app_session_action(a, "apply_preset", args, 2);
        }
    }
    return st;
}

void app_plan_sync(App *a) {
    if (!a->sess) return;
    Plan p;
    Err err;
    err_init(&err);
    if (plan_edit_to_plan(a->pe, &p, &err) != ST_OK) {
        app_msg(a, 1, "session: %s", err.detail);
        return;
    }
    if (session_set_plan(a->sess, a->pe->cur.name, &p, &err) != ST_OK ||
        session_set_current(a->sess, a->pe->cur.name, &err) != ST_OK)
        app_msg(a, 1, "session: %s", err.detail);
    plan_done(&p);
    app_session_save(a);
}

void app_plan_done(App *a) {
    if (a->pe) plan_edit_done(a->pe);
    free(a->pe);
    a->pe = NULL;
    if (a->last_eval) plan_grid_done(a->last_eval);
    free(a->last_eval);
    a->last_eval = NULL;
}

int64_t app_plan_diff(const App *a) { return a->last_eval ? plan_edit_diff(a->pe, a->last_eval) : -1; }

static void plan_label(const App *a, char *buf, size_t n) {
    if (a->pe->cur.n_edits) snprintf(buf, n, "%s +%lld", a->pe->cur.name, (long long)a->pe->cur.n_edits);
    else snprintf(buf, n, "%s", a->pe->cur.name);
}

void app_plan_budget(const App *a, PlanBudget *b) {
    memset(b, 0, sizeof *b);
    b->frac_fp16 = NAN;
    plan_label(a, b->label, sizeof b->label);
    Plan p, f16;
    Err err;
    err_init(&err);
    PlanModel pm = app_pm(a);
    PlanSize ps, fs;
    if (plan_edit_to_plan(a->pe, &p, &err) != ST_OK) {
        snprintf(b->error, sizeof b->error, "%s", err.detail);
        return;
    }
    Status st = plan_size(&p, &pm, NULL, &ps, &err);
    if (st != ST_OK || !a->speed ||
        speedtab_plan(a->speed, &p, &pm, NULL, &b->decode_tps, &b->prefill_tps, NULL) != ST_OK)
        b->decode_tps = b->prefill_tps = 0;
    plan_done(&p);
    if (st != ST_OK) {
        snprintf(b->error, sizeof b->error, "%s", err.detail);
        return;
    }
    b->valid = 1;
    b->bpw = ps.bpw_all;
    b->bytes = ps.all_bytes;
    if (plan_preset(&f16, "fp16", NULL, &pm, &err) == ST_OK) {
        if (plan_size(&f16, &pm, NULL, &fs, &err) == ST_OK && fs.all_bytes)
            b->frac_fp16 = (double)ps.all_bytes / (double)fs.all_bytes;
        plan_done(&f16);
    }
}

void app_plan_summary(const App *a, char *buf, size_t n) {
    PlanBudget b;
    app_plan_budget(a, &b);
    if (!b.valid) snprintf(buf, n, "%s (invalid: %s)", b.label, b.error);
    else snprintf(buf, n, "%s: %.2f bpw, %.3f MB, %.0f%% of fp16", b.label, b.bpw, b.bytes / 1e6, 100 * b.frac_fp16);
}

/* === Plan files === */

/* Replaces what is not [A-Za-z0-9-] in s by '_' (file names). */
static void file_safe(char *s) {
    for (char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-'))
            *c = '_';
}

/* CACHE/plans/SESSION-MODEL-TAG-PLAN.json: named by the session (its file
 * name; without one, this run's start time and pid) and the model (file
 * name and fingerprint), so evaluations of other sessions and models do
 * not overwrite each other's eval1-... files. */
static Status plan_file_path(App *a, const char *tag, char *buf, size_t n, Err *err) {
    if (!a->cache_dir[0]) return err_set(err, ST_ERR_IO, "no writable cache directory");
    static char run[48]; /* one per process: the main thread names plan files */
    if (!run[0]) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(run, sizeof run, "run%04d%02d%02d-%02d%02d%02d-%ld", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, (long)getpid());
    }
    char dir[APP_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/plans", a->cache_dir);
    mkdir(dir, 0755);
    char name[64], sess[64], model[64];
    snprintf(name, sizeof name, "%s", a->pe->cur.name);
    const char *sp = a->session_path[0] ? a->session_path : run;
    const char *sb = strrchr(sp, '/');
    snprintf(sess, sizeof sess, "%s", sb ? sb + 1 : sp);
    char *dot = strrchr(sess, '.');
    if (dot && dot != sess) *dot = 0;
    const char *mp = a->opts.model_path ? a->opts.model_path : "model";
    size_t ml = strlen(mp);
    while (ml > 1 && mp[ml - 1] == '/') ml--; /* a Hugging Face directory */
    const char *mb = mp + ml;
    while (mb > mp && mb[-1] != '/') mb--;
    snprintf(model, sizeof model, "%.*s", (int)(mp + ml - mb), mb);
    dot = strrchr(model, '.');
    if (dot && dot != model) *dot = 0;
    file_safe(name);
    file_safe(sess);
    file_safe(model);
    snprintf(buf, n, "%s/%s-%s-%08llx-%s-%s.json", dir, sess, model, (unsigned long long)(a->m->fingerprint >> 32), tag,
             name);
    return ST_OK;
}

void app_plan_default_path(App *a, char *buf, size_t n) {
    Err err;
    err_init(&err);
    if (plan_file_path(a, "edited", buf, n, &err) != ST_OK) snprintf(buf, n, "%s.json", a->pe->cur.name);
}

void app_write_plan(App *a, const char *dest) {
    Err err;
    err_init(&err);
    /* "TARGET:PATH" exports for another tool; a plain path is the plan JSON */
    int target = -1;
    const char *path = dest, *colon = strchr(dest, ':');
    if (colon && colon > dest && colon - dest < 16) {
        char t[16];
        snprintf(t, sizeof t, "%.*s", (int)(colon - dest), dest);
        target = export_target_parse(t);
        if (target >= 0) path = colon + 1;
    }
    if (!path[0]) {
        app_msg(a, 1, "no path given: nothing written");
        return;
    }
    Plan p;
    if (plan_edit_to_plan(a->pe, &p, &err) != ST_OK) {
        app_msg(a, 1, "cannot write the plan: %s", err.detail);
        return;
    }
    Status st;
    char summary[160] = "";
    if (target < 0) {
        st = plan_json_save(&p, path, &err);
    } else {
        char *text = NULL;
        ExportReport rep;
        memset(&rep, 0, sizeof rep);
        PlanModel pm = app_pm(a);
        st = plan_export(&p, &pm, (ExportTarget)target, &text, &rep, &err);
        if (st == ST_OK) {
            FILE *f = fopen(path, "w");
            if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
                if (f) fclose(f);
                st = err_set(&err, ST_ERR_IO, "%s: %s", path, strerror(errno));
            }
            snprintf(summary, sizeof summary, " (%s: %lld exact, %lld approximate, %lld not expressible)",
                     export_target_name((ExportTarget)target), (long long)rep.exact, (long long)rep.approx,
                     (long long)rep.dropped);
        }
        free(text);
        export_report_done(&rep);
    }
    plan_done(&p);
    if (st != ST_OK) {
        app_msg(a, 1, "cannot write the plan: %s", err.detail);
        return;
    }
    app_msg(a, 0, "plan written: %s%s", path, summary);
    app_log(a, "write-plan", "%s%s", path, summary);
}

/* === The evaluation job === */

#define LIVE_MAX 4096

struct EvalJob {
    const Model *m;          /* borrowed (the app outlives its jobs) */
    const char *text;
    size_t len;
    Pool *pool;
    EvalOpts opts;
    char cache_dir[APP_PATH_MAX];
    char stats_path[APP_PATH_MAX]; /* "" without calibration */
    char plan_path[APP_PATH_MAX];  /* where the plan was written ("" if not) */
    char label[64];
    uint64_t text_hash;
    Plan plan;
    PlanGrid grid;           /* what the editor held, for the diff afterwards */
    int64_t vs_id;           /* the result the Plan view compared it with (0: none) */
    char gguf[APP_PATH_MAX]; /* a quantized GGUF evaluated instead of the plan ("" : the plan) */
    Evaluation ev;           /* the quantized model (kept for the session's record until the
                                job is freed: its weight errors, quantization time) and the result */
    double kld_pred;         /* the loss model's prediction (NaN: none) */
    int64_t n_notes;
    char note0[160];
    /* Live values, a ring of the last LIVE_MAX chunks: the worker writes entry
     * i % LIVE_MAX, then publishes chunks_done = i + 1; the UI reads only the
     * last LIVE_HIST entries, which the worker is not writing. */
    _Atomic int64_t chunks_done, n_chunks;
    _Atomic int started;
    double ppl[LIVE_MAX], kld[LIVE_MAX];
};

static void eval_chunk_cb(void *user, int64_t chunk, int64_t n_chunks, double running_ppl, double running_kld) {
    EvalJob *j = user;
    atomic_store(&j->n_chunks, n_chunks);
    if (chunk < 0) return;
    j->ppl[chunk % LIVE_MAX] = running_ppl;
    j->kld[chunk % LIVE_MAX] = running_kld;
    atomic_store(&j->chunks_done, chunk + 1);
}

/* The live view learns the chunk count once the reference is there. */
static void eval_stage_cb(void *user, EvalStage done, const Evaluation *e) {
    EvalJob *j = user;
    if (done == EVAL_STAGE_BUILD) {
        j->n_notes = e->qm->n_notes;
        if (e->qm->n_notes) snprintf(j->note0, sizeof j->note0, "%s", e->qm->notes[e->qm->n_notes - 1]);
    } else if (done == EVAL_STAGE_REF) {
        atomic_store(&j->n_chunks, e->ref_chunks);
    }
}

static Status eval_job_run(void *arg, Progress *prog, Err *err) {
    EvalJob *j = arg;
    atomic_store(&j->started, 1);
    EvalSpec s;
    evaluate_spec_init(&s, j->m, j->text, j->len);
    s.opts = j->opts;
    s.cache_dir = j->cache_dir[0] ? j->cache_dir : NULL;
    if (j->gguf[0]) {
        s.gguf_path = j->gguf;
    } else {
        s.plan = &j->plan;
        s.stats_path = j->stats_path;
    }
    s.pool = j->pool;
    s.prog = prog;
    s.on_chunk = eval_chunk_cb;
    s.on_stage = eval_stage_cb;
    s.user = j;
    return evaluate(&s, &j->ev, err);
}

/* A new row's detail from its job (copies: the job is freed after this). */
static void fill_detail(RowDetail *d, const EvalJob *j) {
    d->vs_id = j->vs_id;
    d->eval_s = j->ev.res.seconds;
    Err err;
    err_init(&err);
    if (j->gguf[0]) {
        d->gguf = core_strdup(j->gguf);
    } else {
        Plan *p = core_calloc(1, sizeof *p);
        if (p && plan_copy(p, &j->plan, &err) == ST_OK) d->plan = p;
        else free(p);
    }
    if (j->ev.res.layer_rel_err && j->ev.res.n_layers > 0 &&
        (d->layer_err = malloc((size_t)j->ev.res.n_layers * sizeof *d->layer_err))) {
        memcpy(d->layer_err, j->ev.res.layer_rel_err, (size_t)j->ev.res.n_layers * sizeof *d->layer_err);
        d->n_layer_err = j->ev.res.n_layers;
    }
    if (j->ev.qm) {
        d->quant_s = j->ev.qm->seconds;
        int64_t ns = j->ev.qm->n_layers * PLAN_NPROJ;
        if (j->ev.qm->site_rel_err && ns > 0 && (d->site_werr = malloc((size_t)ns * sizeof *d->site_werr))) {
            for (int64_t i = 0; i < ns; i++) d->site_werr[i] = j->ev.qm->site_rel_err[i] * j->ev.qm->site_rel_err[i];
            d->n_site_werr = ns;
        }
    }
}

static void eval_job_finish(void *arg, Status st, const Err *err, void *ctx) {
    EvalJob *j = arg;
    App *a = ctx;
    for (int i = 0; i < a->n_evals; i++)
        if (a->evals[i] == j) {
            memmove(a->evals + i, a->evals + i + 1, (size_t)(a->n_evals - i - 1) * sizeof a->evals[0]);
            a->n_evals--;
            break;
        }
    if (!j->ev.have_res && st == ST_ERR_CANCELLED) {
        app_msg(a, 0, "evaluation of '%s' cancelled before its first chunk", j->label);
        app_log(a, "evaluate", "%s: cancelled before its first chunk", j->label);
        return;
    }
    if (!j->ev.have_res) {
        app_msg(a, 1, "evaluation of '%s' failed: %s: %s", j->label, status_message(st), err->detail);
        app_log(a, "evaluate", "%s: failed: %s: %s", j->label, status_message(st), err->detail);
        return;
    }
    const EvalResult *r = &j->ev.res;
    EvalRow *row = app_add_row(a);
    if (!row) {
        app_msg(a, 1, "out of memory");
        return;
    }
    snprintf(row->label, sizeof row->label, "%s", j->label);
    row->ppl = r->ppl;
    row->ppl_base = r->ppl_base;
    row->dppl = r->ppl - r->ppl_base;
    row->kld_mean = r->kld_mean;
    row->kld_p99 = r->kld_p99;
    row->top1 = r->top1_agree;
    row->bpw = r->bpw;
    row->bytes = r->bytes;
    row->tps = r->decode_tps > 0 ? r->decode_tps : NAN;
    row->quant_s = j->ev.qm ? j->ev.qm->seconds : NAN;
    row->cancelled = r->cancelled;
    row->kld_pred = j->kld_pred;
    fill_detail(&a->details[a->n_rows - 1], j);
    if (a->sess && !r->cancelled) {
        SessionEvalInfo info = {.plan = j->label, .text = a->text_path, .text_hash = j->text_hash,
                                .ctx = j->opts.n_ctx, .chunks = j->opts.max_chunks, .threads = pool_size(a->pool)};
        Err serr;
        err_init(&serr);
        info.plan_eval = j->gguf[0] ? NULL : &j->plan;
        info.gguf = j->gguf[0] ? j->gguf : NULL;
        if (session_add_eval(a->sess, &info, r, j->ev.qm, NULL, &serr) != ST_OK)
            app_msg(a, 1, "session: result not recorded: %s", serr.detail);
        SessionArg args[] = {j->gguf[0] ? SESSION_ARG_STR("gguf", j->gguf) : SESSION_ARG_STR("plan", j->label),
                             SESSION_ARG_STR("text", a->text_path), SESSION_ARG_INT("ctx", j->opts.n_ctx),
                             SESSION_ARG_INT("chunks", j->opts.max_chunks),
                             SESSION_ARG_INT("threads", pool_size(a->pool)),
                             SESSION_ARG_STR("numerics", numerics_name(j->opts.numerics))};
        /* "numerics" only when not the default, so older qscopes replay exact-mode sessions */
        app_session_action(a, "evaluate", args, j->opts.numerics == NUMERICS_EXACT ? 5 : 6);
    }
    if (!r->cancelled && !j->gguf[0]) {
        if (!a->last_eval) a->last_eval = core_calloc(1, sizeof *a->last_eval);
        if (a->last_eval) {
            plan_grid_done(a->last_eval);
            *a->last_eval = j->grid;
            j->grid.cells = NULL;
            a->last_eval_id = row->id;
        }
    }
    app_msg(a, 0, "#%lld %s: PPL %.4f (base %.4f), KLD %.5f, top-1 %.1f%%, %.2f bpw%s", (long long)row->id, j->label,
            r->ppl, r->ppl_base, r->kld_mean, 100 * r->top1_agree, r->bpw, r->cancelled ? " (cancelled: partial)" : "");
    char notes[64] = "";
    if (j->n_notes) snprintf(notes, sizeof notes, "; %lld quantizer notes, the last: ", (long long)j->n_notes);
    app_log(a, "evaluate",
            "#%lld %s (%s; plan %s): PPL %.4f base %.4f KLD mean %.5f p99 %.5f top-1 %.4f, %.3f bpw, %zu bytes, "
            "prefill %.0f tok/s, decode %.0f tok/s, %lld chunks, reference %s, %.1f s%s%s%s",
            (long long)row->id, j->label, a->eval_settings, j->plan_path[0] ? j->plan_path : "not written", r->ppl,
            r->ppl_base, r->kld_mean, r->kld_p99, r->top1_agree, r->bpw, r->bytes, r->prefill_tps, r->decode_tps,
            (long long)r->chunks, j->ev.ref_cached ? "cached" : "computed", r->seconds,
            r->cancelled ? ", cancelled" : "", notes, j->n_notes ? j->note0 : "");
}

static void eval_job_free(void *arg) {
    EvalJob *j = arg;
    if (!j) return;
    evaluation_done(&j->ev);
    plan_done(&j->plan);
    plan_grid_done(&j->grid);
    free(j);
}

/* A new evaluation job on this run's text and settings (a plan's or a
 * GGUF's), or NULL with the message bar saying why. */
static EvalJob *eval_job_new(App *a) {
    if (!a->text) {
        app_msg(a, 1, "no evaluation text: start with --text FILE");
        return NULL;
    }
    if (a->n_evals > JOBS_MAX_QUEUE) {
        app_msg(a, 1, "%d evaluations are already waiting", a->n_evals);
        return NULL;
    }
    EvalJob *j = core_calloc(1, sizeof *j);
    if (!j) {
        app_msg(a, 1, "out of memory");
        return NULL;
    }
    j->m = a->m;
    j->text = a->text;
    j->len = a->text_len;
    j->pool = a->pool;
    app_eval_opts(a, &j->opts);
    snprintf(j->cache_dir, sizeof j->cache_dir, "%s", a->cache_dir);
    j->text_hash = hash_bytes(HASH_SEED, a->text, a->text_len);
    plan_init(&j->plan);
    return j;
}

/* Queues j (the job runner owns it from here) behind the running one. */
static void eval_job_queue(App *a, EvalJob *j) {
    char jl[48];
    snprintf(jl, sizeof jl, "evaluate %s", j->label);
    Err err;
    err_init(&err);
    a->evals[a->n_evals++] = j;
    if (!jobs_submit(&a->jobs, jl, eval_job_run, eval_job_finish, eval_job_free, j, &err)) {
        a->n_evals--;
        app_msg(a, 1, "%s", err.detail);
        return;
    }
    app_msg(a, 0, "evaluation of %s'%s' queued (%s)", j->gguf[0] ? "the GGUF " : "", j->label, a->eval_settings);
}

void app_evaluate(App *a) {
    EvalJob *j = eval_job_new(a);
    if (!j) return;
    Err err;
    err_init(&err);
    snprintf(j->stats_path, sizeof j->stats_path, "%s", a->cs ? a->stats_path : "");
    plan_label(a, j->label, sizeof j->label);
    j->vs_id = a->last_eval ? a->last_eval_id : 0;
    if (a->sess && strcmp(j->label, a->pe->cur.name) != 0) {
        /* An edited plan is evaluated as a copy under its own name, so the
         * result keeps pointing at what ran while editing goes on. */
        char base[64];
        snprintf(base, sizeof base, "%s", j->label);
        for (int k = 2; session_find_plan(a->sess, j->label) >= 0 && k < 1000; k++)
            snprintf(j->label, sizeof j->label, "%.50s (%d)", base, k);
    }
    if (plan_edit_to_plan(a->pe, &j->plan, &err) != ST_OK || plan_grid_copy(&j->grid, a->pe, &err) != ST_OK) {
        app_msg(a, 1, "cannot evaluate: %s", err.detail);
        eval_job_free(j);
        return;
    }
    snprintf(j->plan.name, sizeof j->plan.name, "%s", j->label);
    PlanModel pm = app_pm(a);
    if (plan_validate(&j->plan, &pm, &err) != ST_OK) {
        app_msg(a, 1, "plan is not valid: %s", err.detail);
        eval_job_free(j);
        return;
    }
    j->kld_pred = app_predict_kld(a, &j->plan);
    const char *what = NULL;
    if (!j->stats_path[0] && qmodel_plan_needs_stats(&j->plan, &pm, &what)) {
        /* GPTQ, AdaDim, AQLM, static scales ... need the calibration: say so now, not from the job */
        app_msg(a, 1, "'%s' needs a calibration first (%s): press c", j->label, what ? what : "H");
        eval_job_free(j);
        return;
    }
    /* The plan file evaluated, so the CLI can reproduce this run. */
    char tag[32];
    snprintf(tag, sizeof tag, "eval%lld", (long long)(a->n_rows + 1));
    if (plan_file_path(a, tag, j->plan_path, sizeof j->plan_path, &err) != ST_OK ||
        plan_json_save(&j->plan, j->plan_path, &err) != ST_OK)
        j->plan_path[0] = 0;
    if (a->sess && strcmp(j->label, a->pe->cur.name) != 0) {
        app_plan_sync(a);
        SessionArg args[] = {SESSION_ARG_STR("from", a->pe->cur.name), SESSION_ARG_STR("to", j->label)};
        if (session_set_plan(a->sess, j->label, &j->plan, &err) != ST_OK) app_msg(a, 1, "session: %s", err.detail);
        app_session_action(a, "copy_plan", args, 2);
    }
    eval_job_queue(a, j);
}

void app_live_eval(const App *a, LiveEval *le) {
    memset(le, 0, sizeof *le);
    if (a->n_evals == 0) return;
    /* Jobs run in order, so the oldest pending evaluation is the one running (or next). */
    const EvalJob *j = a->evals[0];
    le->active = 1;
    le->running = atomic_load(&((EvalJob *)j)->started);
    le->queued = a->n_evals - 1;
    snprintf(le->label, sizeof le->label, "%s", j->label);
    le->chunks_done = atomic_load(&((EvalJob *)j)->chunks_done);
    le->n_chunks = atomic_load(&((EvalJob *)j)->n_chunks);
    le->ppl_now = le->kld_now = NAN;
    int64_t done = le->chunks_done;
    if (done <= 0) return;
    le->ppl_now = j->ppl[(done - 1) % LIVE_MAX];
    le->kld_now = j->kld[(done - 1) % LIVE_MAX];
    le->n_hist = (int)(done < LIVE_HIST ? done : LIVE_HIST);
    for (int i = 0; i < le->n_hist; i++) le->ppl_hist[i] = j->ppl[(done - le->n_hist + i) % LIVE_MAX];
}

/* === Results: detail, diff, load back === */

int64_t app_row_index(const App *a, int64_t id) {
    for (int64_t i = 0; i < a->n_rows; i++)
        if (a->rows[i].id == id) return i;
    return -1;
}

void app_load_result_plan(App *a, int64_t id) {
    int64_t i = app_row_index(a, id);
    if (i < 0) return;
    const RowDetail *d = &a->details[i];
    if (!d->plan) {
        if (d->gguf) app_msg(a, 1, "result #%lld is a GGUF file, not a plan: nothing to load", (long long)id);
        else app_msg(a, 1, "result #%lld has no plan recorded: nothing to load", (long long)id);
        return;
    }
    app_edit_flush(a);
    Plan p;
    Err err;
    err_init(&err);
    if (plan_copy(&p, d->plan, &err) != ST_OK) {
        app_msg(a, 1, "cannot load the plan of #%lld: %s", (long long)id, err.detail);
        return;
    }
    snprintf(p.name, sizeof p.name, "%s", a->rows[i].label);
    int64_t before = -1;
    PlanGrid was;
    if (plan_grid_copy(&was, a->pe, &err) == ST_OK) before = 0;
    if (plan_edit_load(a->pe, &p, &err) != ST_OK) {
        app_msg(a, 1, "cannot load the plan of #%lld: %s", (long long)id, err.detail);
        if (!before) plan_grid_done(&was);
        plan_done(&p);
        return;
    }
    int64_t changed = before ? -1 : plan_edit_diff(a->pe, &was);
    if (!before) plan_grid_done(&was);
    if (a->sess) { /* replay's set_plan stores it, makes it current, and undoes like the editor */
        SessionArg from = SESSION_ARG_INT("result", id);
        app_session_set_plan(a, &p, &from);
        app_plan_sync(a);
    }
    app_log(a, "load-plan", "the plan of result #%lld (%s)%s into the editor: %lld cells changed", (long long)id,
            p.name, d->plan_by_name ? ", as the session holds it now," : "", (long long)changed);
    app_msg(a, 0, "plan of #%lld (%s) loaded: %lld cells changed; u (Plan view) undoes", (long long)id, p.name,
            (long long)changed);
    plan_done(&p);
}

void app_compare_results(App *a, int64_t ida, int64_t idb) {
    free(a->eval.cmp);
    a->eval.cmp = NULL;
    a->eval.n_cmp = 0;
    a->eval.cmp_note[0] = 0;
    int64_t ia = app_row_index(a, ida), ib = app_row_index(a, idb);
    if (ia < 0 || ib < 0) {
        snprintf(a->eval.cmp_note, sizeof a->eval.cmp_note, "no result to compare with");
        return;
    }
    const Plan *pa = a->details[ia].plan, *pb = a->details[ib].plan;
    if (!pa || !pb) {
        int64_t k = !pa ? ia : ib;
        snprintf(a->eval.cmp_note, sizeof a->eval.cmp_note, "#%lld %s: cells not compared", (long long)a->rows[k].id,
                 a->details[k].gguf ? "is a GGUF file, not a plan" : "has no plan recorded");
        return;
    }
    PlanModel pm = app_pm(a);
    Err err;
    err_init(&err);
    if (cmp_plans(pa, pb, &pm, &a->eval.cmp, &a->eval.n_cmp, &err) != ST_OK)
        snprintf(a->eval.cmp_note, sizeof a->eval.cmp_note, "cells not compared: %s", err.detail);
}

void app_details_free(App *a) {
    for (int64_t i = 0; a->details && i < a->n_rows; i++) {
        RowDetail *d = &a->details[i];
        if (d->plan) plan_done(d->plan);
        free(d->plan);
        free(d->layer_err);
        free(d->site_werr);
        free(d->gguf);
        memset(d, 0, sizeof *d);
    }
    free(a->eval.cmp);
    free(a->eval.oerr);
    free(a->eval.site_type);
    a->eval.cmp = NULL;
    a->eval.oerr = NULL;
    a->eval.site_type = NULL;
    a->eval.n_cmp = 0;
}

void app_result_site_types(App *a, int64_t id) {
    free(a->eval.site_type);
    a->eval.site_type = NULL;
    a->eval.types[0] = 0;
    int64_t i = app_row_index(a, id);
    if (i < 0 || !a->details[i].gguf) return;
    Model *q = NULL;
    ModelLoadOpts mo = {0};
    Err err;
    err_init(&err);
    if (model_load(a->details[i].gguf, &mo, &q, &err) != ST_OK) {
        snprintf(a->eval.types, sizeof a->eval.types, "cannot read it now: %s", err.detail);
        return;
    }
    int64_t ns = q->cfg.n_layers * PLAN_NPROJ, n_of[GGML_TYPE_LIMIT] = {0};
    a->eval.site_type = ns == a->m->cfg.n_layers * PLAN_NPROJ ? core_calloc((size_t)ns, sizeof *a->eval.site_type) : NULL;
    for (int64_t s = 0; a->eval.site_type && s < ns; s++) {
        uint32_t t = q->layers[s / PLAN_NPROJ].proj[s % PLAN_NPROJ].type;
        const GgmlTypeTraits *tt = ggml_type_traits(t);
        snprintf(a->eval.site_type[s], sizeof a->eval.site_type[s], "%s", tt ? tt->name : "?");
        if (t < GGML_TYPE_LIMIT) n_of[t]++;
    }
    const Weight *ends[2] = {&q->tok_embd, q->cfg.tied_embeddings ? NULL : &q->output};
    for (int k = 0; k < 2; k++)
        if (ends[k] && ends[k]->type < GGML_TYPE_LIMIT) n_of[ends[k]->type]++;
    size_t used = 0;
    for (int t = 0; t < GGML_TYPE_LIMIT && used < sizeof a->eval.types; t++)
        if (n_of[t]) {
            const GgmlTypeTraits *tt = ggml_type_traits((uint32_t)t);
            used += (size_t)snprintf(a->eval.types + used, sizeof a->eval.types - used, "%s%s x%lld", used ? ", " : "",
                                     tt ? tt->name : "?", (long long)n_of[t]);
        }
    model_free(q);
}

void app_evaluate_gguf(App *a, const char *path) {
    struct stat st;
    if (!path[0] || stat(path, &st) != 0) {
        app_msg(a, 1, "%s: %s", path[0] ? path : "no file given", path[0] ? strerror(errno) : "nothing evaluated");
        return;
    }
    EvalJob *j = eval_job_new(a);
    if (!j) return;
    snprintf(j->gguf, sizeof j->gguf, "%s", path);
    const char *slash = strrchr(path, '/');
    snprintf(j->label, sizeof j->label, "%s", slash ? slash + 1 : path); /* as qscope eval --quant-gguf names it */
    j->kld_pred = NAN;
    snprintf(j->plan_path, sizeof j->plan_path, "%s", path);
    eval_job_queue(a, j);
}

/* === Predicted KLD (the auto plan's loss model) === */

int app_sitecal_path(const App *a, char *buf, size_t n) {
    if (!a->cs || !a->stats_path[0]) return 0;
    snprintf(buf, n, "%s.sitecal", a->stats_path);
    return 1;
}

/* Loads the site scales when the cache matches this model, text and the
 * evaluation settings; 0 otherwise. */
static int load_scales(const App *a, const EvalOpts *o, SiteCal *sc) {
    char path[APP_PATH_MAX + 16], code[32];
    if (!a->text || !app_sitecal_path(a, path, sizeof path) || sitecal_load(path, a->m->cfg.n_layers, sc, NULL) != ST_OK)
        return 0;
    PlanEntry probe;
    sitecal_default_probe(&probe);
    plan_entry_code(&probe, code, sizeof code);
    if (sitecal_matches(sc, a->m->fingerprint, hash_bytes(HASH_SEED, a->text, a->text_len), o->n_ctx, o->max_chunks,
                        code) &&
        sitecal_matches_stats(sc, a->cs, &probe))
        return 1;
    sitecal_done(sc);
    return 0;
}

double app_predict_kld(const App *a, const Plan *p) {
    EvalOpts o;
    app_eval_opts(a, &o);
    SiteCal sc;
    if (!load_scales(a, &o, &sc)) return NAN;
    double pred = NAN;
    if (planner_predict(a->m, a->cs, p, sc.scale, &pred, NULL, NULL) != ST_OK) pred = NAN;
    sitecal_done(&sc);
    return pred;
}

/* === The record of edits ===
 * Where an edit applies, its set_rule actions in the session, and the
 * pending run of f/F/d presses (PlanCycle), whose net change reaches the Log
 * and the session when the run ends, from whichever file ends it (the Plan
 * view, loading a result's plan, an auto plan, quitting). */

static int on_end_row(const App *a) { return a->plan.row >= a->pe->n_layers; }

/* Where an edit of the current scope applies ("L2.down", "layer 2", ...). */
void app_edit_where(const App *a, char *where, size_t n) {
    PeScope s = (PeScope)a->plan.scope;
    if (on_end_row(a)) snprintf(where, n, "%s", a->plan.col == PE_END_EMBED ? "the embedding" : "the output head");
    else if (s == PE_CELL) snprintf(where, n, "L%lld.%s", (long long)a->plan.row, plan_proj_name((int)a->plan.col));
    else if (s == PE_ROW) snprintf(where, n, "layer %lld", (long long)a->plan.row);
    else if (s == PE_COL) snprintf(where, n, "every %s", plan_proj_name((int)a->plan.col));
    else snprintf(where, n, "%s cells", pe_scope_name(s));
}

/* The session records an edit as set_rule actions sharing one edit id, so
 * replay (which checks the plan after every rule) rebuilds exactly this grid
 * as one undo step: the scope's pattern with the edited fields when every
 * cell got what that rule gives, up to a group fallback replay repeats
 * (then an "L.proj" group rule per such cell); otherwise — an AQLM fallback,
 * a method following the format — one rule with all fields per changed
 * cell, each valid on its own. PE_AQLM_* edits take the PF_METHOD field. */
void app_edit_record(App *a, const PlanGrid *before, unsigned fields, const PlanEntry *src) {
    if (!a->sess) return;
    const PlanViewState *s = &a->plan;
    unsigned sf = (fields & PF_ALL) | ((fields & (PE_AQLM_ANY | PE_METHOD_PARTS)) ? PF_METHOD : 0) |
                  ((fields & PE_SYM) ? PF_FMT : 0) | ((fields & PE_ACT_PARTS) ? PF_ACT : 0);
    int64_t edit = (int64_t)a->pe->version;
    char pat[64];
    Err err;
    err_init(&err);
    Status st = ST_OK;
    const PlanEdit *pe = a->pe;
    if (on_end_row(a)) {
        const char *name = s->col == PE_END_EMBED ? "embed" : "output";
        st = session_log_set_rule_edit(a->sess, NULL, name, PF_FMT | PF_GROUP, plan_edit_end(pe, (PeEnd)s->col), edit,
                                       &err);
        if (st != ST_OK) app_msg(a, 1, "session: %s", err.detail);
        app_plan_sync(a);
        return;
    }
    switch ((PeScope)s->scope) {
    case PE_CELL: snprintf(pat, sizeof pat, "%lld.%s", (long long)s->row, plan_proj_name((int)s->col)); break;
    case PE_ROW: snprintf(pat, sizeof pat, "%lld.*", (long long)s->row); break;
    case PE_COL: snprintf(pat, sizeof pat, "*.%s", plan_proj_name((int)s->col)); break;
    case PE_ALL: snprintf(pat, sizeof pat, "*"); break;
    default: pat[0] = 0; break;
    }
    /* Does the scope rule alone (with replay's group fallback) give every cell? */
    int by_cell = 0;
    for (int64_t l = 0; l < pe->n_layers && !by_cell; l++)
        for (int p = 0; p < PLAN_NPROJ && !by_cell; p++) {
            int64_t i = l * PLAN_NPROJ + p;
            if (!(s->scope == PE_MARKED ? s->marks[i] != 0 : plan_pattern_matches(pat, l, p))) continue;
            PlanEntry want = before->cells[i];
            plan_entry_take(&want, src, sf);
            want.w.group = plan_edit_cell(pe, l, p)->w.group;
            by_cell = !plan_entry_equal(&want, plan_edit_cell(pe, l, p));
        }
    for (int64_t l = 0; l < pe->n_layers && st == ST_OK; l++)
        for (int p = 0; p < PLAN_NPROJ && st == ST_OK; p++) {
            int64_t i = l * PLAN_NPROJ + p;
            const PlanEntry *got = plan_edit_cell(pe, l, p);
            char cell[32];
            snprintf(cell, sizeof cell, "%lld.%s", (long long)l, plan_proj_name(p));
            if (by_cell) {
                if (!plan_entry_equal(got, &before->cells[i]))
                    st = session_log_set_rule_edit(a->sess, NULL, cell, PF_ALL, got, edit, &err);
            } else if (s->scope == PE_MARKED && s->marks[i]) {
                st = session_log_set_rule_edit(a->sess, NULL, cell, sf, src, edit, &err);
            }
        }
    if (!by_cell && pat[0] && st == ST_OK) st = session_log_set_rule_edit(a->sess, NULL, pat, sf, src, edit, &err);
    for (int64_t l = 0; l < pe->n_layers && st == ST_OK && !by_cell; l++)
        for (int p = 0; p < PLAN_NPROJ && st == ST_OK; p++) {
            int64_t i = l * PLAN_NPROJ + p;
            PlanEntry want = before->cells[i];
            plan_entry_take(&want, src, sf);
            const PlanEntry *got = plan_edit_cell(pe, l, p);
            if (got->w.group == want.w.group || plan_entry_equal(got, &before->cells[i])) continue;
            char cell[32];
            snprintf(cell, sizeof cell, "%lld.%s", (long long)l, plan_proj_name(p));
            st = session_log_set_rule_edit(a->sess, NULL, cell, PF_GROUP, got, edit, &err);
        }
    if (st != ST_OK) app_msg(a, 1, "session: %s", err.detail);
    app_plan_sync(a);
}


void app_edit_cycle_free(App *a) {
    PlanCycle *c = a->plan.cyc;
    if (!c) return;
    plan_grid_done(&c->before);
    free(c);
    a->plan.cyc = NULL;
}

void app_edit_flush(App *a) {
    PlanCycle *c = a->plan.cyc;
    if (!c) return;
    int64_t changed = plan_edit_diff(a->pe, &c->before);
    if (changed == 0) {
        /* cycled back to where it started: no change, no undo step */
        if (c->pushed) plan_edit_undo(a->pe);
        app_log(a, "edit", "%s: cycled back, no change", c->what);
    } else {
        char where[48];
        app_edit_where(a, where, sizeof where);
        app_log(a, "edit", "%s on %s (%lld cell%s)", c->what, where, (long long)changed, changed == 1 ? "" : "s");
        app_edit_record(a, &c->before, c->fields, &c->src);
    }
    app_edit_cycle_free(a);
}
