/* The automatic planner in the workbench (A) and the loss model's predicted
 * KLD of evaluated plans: analysis/planner.h under the budget of the plan in
 * the editor, with the site scales of analysis/sitecal.h (measured in the
 * job when STATS.sitecal does not match this model, text and context). See
 * app.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/eval.h"
#include "analysis/planner.h"
#include "analysis/sitecal.h"
#include "analysis/statsfile.h"
#include "core/alloc.h"
#include "quant/plan_edit.h"
#include "sessions/plan_json.h"
#include "sessions/replay.h"
#include "sessions/session.h"
#include "tui/app.h"
#include "tui/plan_grid.h"

/* === The auto-plan job === */

typedef struct AutoJob {
    const Model *m;          /* borrowed (the app outlives its jobs) */
    const char *text;
    size_t len;
    Pool *pool;
    EvalOpts opts;
    char cache_dir[APP_PATH_MAX];
    char stats_path[APP_PATH_MAX];
    char cal_path[APP_PATH_MAX + 16];
    double bpw;              /* the budget in bits per weight (0: bytes) */
    size_t bytes;            /* ... or in bytes (0: bpw) */
    char budget_of[120];     /* how the budget was set ("the size of int4-gptq", "typed") */
    int measured;            /* 1: the site scales were measured in this job */
    int method;              /* the integer sites' method the planner used */
    PlannerResult res;
    int have_res;
} AutoJob;

/* The planner's request for the job: the budget, GPTQ when the stats have
 * H, the loss model calibrated on the workbench's text at its evaluation
 * settings (site scales cached in STATS.sitecal); the same request is what
 * the session records. */
static void job_request(const AutoJob *j, int have_h, PlannerRequest *rq) {
    planner_request_default(rq);
    rq->bpw = j->bpw;
    rq->bytes = j->bytes;
    rq->method = have_h ? QM_GPTQ : QM_RTN;
    rq->text = j->text;
    rq->text_len = j->len;
    rq->ctx = j->opts.n_ctx;
    rq->chunks = j->opts.max_chunks;
    rq->sitecal = j->cal_path;
    rq->cache_dir = j->cache_dir[0] ? j->cache_dir : NULL;
}

static Status auto_job_run(void *arg, Progress *prog, Err *err) {
    AutoJob *j = arg;
    QStatsFile sf = {0};
    Status st = qstats_open(j->stats_path, j->m, &sf, err);
    if (st) return st;
    PlannerRequest rq;
    job_request(j, sf.h != NULL, &rq);
    j->method = rq.method;
    st = planner_run(j->m, &sf, &rq, j->pool, prog, &j->res, &j->measured, err);
    j->have_res = st == ST_OK;
    qstats_close(&sf);
    return st;
}

/* The budget as words: "7.82 bpw" or "284000 bytes (0.284 MB)". */
static void budget_words(const AutoJob *j, char *buf, size_t n) {
    if (j->bytes) snprintf(buf, n, "%zu bytes (%.3f MB)", j->bytes, j->bytes / 1e6);
    else snprintf(buf, n, "%.4g bpw", j->bpw);
}

static void auto_job_finish(void *arg, Status st, const Err *err, void *ctx) {
    AutoJob *j = arg;
    App *a = ctx;
    if (!j->have_res) {
        app_msg(a, 1, "auto plan failed: %s: %s", status_message(st), err->detail);
        app_log(a, "auto-plan", "failed: %s: %s", status_message(st), err->detail);
        return;
    }
    app_edit_flush(a);
    PlannerResult *r = &j->res;
    PlanGrid before;
    Err e2;
    err_init(&e2);
    int have_before = plan_grid_copy(&before, a->pe, &e2) == ST_OK;
    if (plan_edit_load(a->pe, &r->plan, &e2) != ST_OK) {
        app_msg(a, 1, "auto plan: %s", e2.detail);
        if (have_before) plan_grid_done(&before);
        return;
    }
    int64_t changed = have_before ? plan_edit_diff(a->pe, &before) : -1;
    char bw[64], bs[32];
    budget_words(j, bw, sizeof bw);
    if (j->bytes) snprintf(bs, sizeof bs, "%zu B", j->bytes);
    else snprintf(bs, sizeof bs, "%.4g bpw", j->bpw);
    /* The account shown under the Plan view's grid: each site's choice, its
     * predicted loss and the trade-off against its neighbours. */
    AutoSiteWhy *w = core_calloc((size_t)(r->n_sites ? r->n_sites : 1), sizeof *w);
    if (w) {
        for (int64_t s = 0; s < r->n_sites; s++) {
            const PlannerSite *ps = &r->sites[s];
            snprintf(w[s].choice, sizeof w[s].choice, "%s", ps->name);
            w[s].loss = ps->loss;
            w[s].oerr = ps->oerr;
            w[s].bits = ps->bits;
            snprintf(w[s].why, sizeof w[s].why, "%s", ps->why);
            w[s].changed = have_before && !plan_entry_equal(plan_edit_cell(a->pe, s / PLAN_NPROJ, (int)(s % PLAN_NPROJ)),
                                                            &before.cells[s]);
        }
        free(a->plan.auto_sites);
        a->plan.auto_sites = w;
        a->plan.n_auto = r->n_sites;
        a->plan.auto_open = 1;
        snprintf(a->plan.auto_head, sizeof a->plan.auto_head,
                 "auto: %s (%s): pred. %s %.5f, bound %.5f; %lld/%lld cells changed (*); Esc hides", bs,
                 j->budget_of, r->calibrated ? "KLD" : "loss", r->sol.loss, r->sol.lower_bound, (long long)changed,
                 (long long)(r->n_sites + 2));
    }
    if (have_before) plan_grid_done(&before);
    app_log(a, "auto-plan",
            "budget %s (%s); site scales %s %s; %s: predicted KLD %.5f, Lagrangian lower bound %.5f, "
            "%lld of %lld cells changed; DP %s",
            bw, j->budget_of, j->measured ? "measured into" : "from", j->cal_path, r->plan.name, r->sol.loss,
            r->sol.lower_bound, (long long)changed, (long long)r->n_sites,
            r->sol.unit_bits > 1 ? "on bucketed costs" : "exact");
    for (int64_t s = 0; s < r->n_sites; s++)
        app_log(a, "auto-plan", "layer %lld %s: %s", (long long)(s / PLAN_NPROJ), plan_proj_name((int)(s % PLAN_NPROJ)),
                r->sites[s].why);
    app_plan_sync(a);
    if (a->sess) { /* the request as an auto_plan action: replay re-runs the planner (one undo step, as
                      here) and --check compares its plan with the recorded one */
        PlannerRequest rq;
        job_request(j, j->method == QM_GPTQ, &rq);
        if (replay_log_auto_plan(a->sess, r->plan.name, &rq, a->text_path, r->sol.loss, &e2) != ST_OK)
            app_msg(a, 1, "session: %s", e2.detail);
        else app_session_save(a);
    }
    app_msg(a, 0, "auto plan under %s: pred. KLD %.5f, %lld cells changed (why: Plan view)", bw, r->sol.loss,
            (long long)changed);
}

static void auto_job_free(void *arg) {
    AutoJob *j = arg;
    if (!j) return;
    planner_result_done(&j->res);
    free(j);
}

/* Why A cannot run now ("" when it can); the editor's budget into *b. */
static int auto_ready(App *a, PlanBudget *b) {
    if (!a->cs || !a->stats_path[0]) {
        app_msg(a, 1, "the auto plan needs the calibration's sensitivity map: press c first");
        return 0;
    }
    if (!a->text) {
        app_msg(a, 1, "no text to calibrate the loss model on: start with --text FILE");
        return 0;
    }
    app_plan_budget(a, b);
    return 1;
}

void app_auto_plan(App *a) {
    PlanBudget b;
    if (!auto_ready(a, &b)) return;
    a->plan.auto_init[0] = 0;
    a->plan.auto_init_bpw = 0;
    if (b.valid) {
        snprintf(a->plan.auto_init, sizeof a->plan.auto_init, "%.4f bpw", b.bpw);
        a->plan.auto_init_bpw = b.bpw;
    }
    char label[96];
    snprintf(label, sizeof label, "auto plan budget (bpw, or B/kB/MB; %s: %.3f MB):", b.valid ? "editor" : "invalid",
             b.valid ? b.bytes / 1e6 : 0.0);
    app_prompt_open(a, PROMPT_AUTO_BUDGET, label, a->plan.auto_init);
}

void app_auto_plan_budget(App *a, const char *text) {
    PlanBudget b;
    if (!auto_ready(a, &b)) return;
    double bpw;
    size_t bytes;
    char why[160];
    if (pe_parse_budget(text, &bpw, &bytes, why, sizeof why) != 0) {
        app_msg(a, 1, "%s", why);
        return;
    }
    AutoJob *j = core_calloc(1, sizeof *j);
    if (!j) {
        app_msg(a, 1, "out of memory");
        return;
    }
    j->m = a->m;
    j->text = a->text;
    j->len = a->text_len;
    j->pool = a->pool;
    app_eval_opts(a, &j->opts);
    snprintf(j->cache_dir, sizeof j->cache_dir, "%s", a->cache_dir);
    snprintf(j->stats_path, sizeof j->stats_path, "%s", a->stats_path);
    app_sitecal_path(a, j->cal_path, sizeof j->cal_path);
    j->bpw = bpw;
    j->bytes = bytes;
    /* the offered budget taken as it was: the editor's plan's exact size, not its 4 decimals */
    if (a->plan.auto_init[0] && !strcmp(text, a->plan.auto_init) && b.valid) {
        j->bpw = b.bpw;
        snprintf(j->budget_of, sizeof j->budget_of, "size of %s", b.label);
    } else {
        snprintf(j->budget_of, sizeof j->budget_of, "typed");
    }
    char bw[64];
    budget_words(j, bw, sizeof bw);
    Err err;
    err_init(&err);
    if (!jobs_submit(&a->jobs, "auto plan", auto_job_run, auto_job_finish, auto_job_free, j, &err)) {
        app_msg(a, 1, "%s", err.detail);
        return;
    }
    app_msg(a, 0, "auto plan queued: least predicted KLD under %s (%s)", bw, j->budget_of);
}

void app_result_site_oerr(App *a, int64_t id) {
    free(a->eval.oerr);
    a->eval.oerr = NULL;
    int64_t i = app_row_index(a, id);
    if (i < 0 || !a->details[i].plan || !a->cs) return;
    int64_t ns = a->m->cfg.n_layers * PLAN_NPROJ;
    double *one = core_calloc((size_t)ns, sizeof *one), *v = malloc((size_t)ns * sizeof *v);
    if (!one || !v) {
        free(one);
        free(v);
        return;
    }
    /* the loss model's term of one site: its prediction with that site's scale 1, the others' 0 */
    int any = 0;
    for (int64_t s = 0; s < ns; s++) {
        one[s] = 1;
        double pred;
        v[s] = planner_predict(a->m, a->cs, a->details[i].plan, one, &pred, NULL, NULL) == ST_OK ? pred : NAN;
        any |= !isnan(v[s]);
        one[s] = 0;
    }
    free(one);
    if (!any) {
        free(v);
        v = NULL;
    }
    a->eval.oerr = v;
}
