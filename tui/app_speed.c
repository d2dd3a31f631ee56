/* The speed table in the workbench: T times the kernels of this model's
 * shapes (every sensitivity-map format and grouping, fp16, and the editor
 * plan's own entries) in a background job and keeps the table in the cache
 * directory, so the Sensitivity view shows each cell's kernel time beside
 * its error, and the Plan view the cursor entry's time and the plan's
 * predicted tokens/s beside its size. See app.h and analysis/speedtab.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/calib.h"
#include "analysis/sensitivity.h"
#include "analysis/speedtab.h"
#include "core/alloc.h"
#include "quant/plan_edit.h"
#include "tui/app.h"

int app_speed_lookup(const App *a, const PlanEntry *e, int64_t n_out, int64_t n_in, double *decode_s,
                     double *prefill_s) {
    return a->speed && speedtab_lookup(a->speed, e, n_out, n_in, decode_s, prefill_s);
}

/* The map's group size: the calibration's, else the default. */
static int64_t map_group(const App *a) { return a->cs && a->cs->has_sens ? a->cs->sens.group : SENS_DEFAULT_GROUP; }

int app_speed_cell(const App *a, int proj, int fmt, int grouping, double *decode_s, double *prefill_s) {
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&a->m->cfg);
    int64_t no, ni;
    plan_proj_shape(&pm, proj, &no, &ni);
    PlanEntry e;
    plan_entry_default(&e);
    if (!sens_cell_params(fmt, (SensGroup)grouping, no, ni, map_group(a), &e.w)) return 0;
    return app_speed_lookup(a, &e, no, ni, decode_s, prefill_s);
}

typedef struct SpeedJob {
    PlanModel pm;
    Pool *pool;
    Progress *prog;          /* the running job's (set by speed_job_run) */
    SpeedTab tab;            /* a copy of the app's table, extended by the job */
    Plan plan;               /* the editor's plan: its entries are timed too */
    int have_plan;
    int64_t group;           /* the map's group size */
    char path[APP_PATH_MAX + 64];
    int64_t n_missing;       /* rows the table lacked among the map's cells */
    int plan_status;         /* speedtab_plan's status on the editor's plan (AQLM: unsupported) */
    char plan_err[160];
    double decode_tps, prefill_tps;
} SpeedJob;

typedef Status (*CellFn)(SpeedJob *j, const PlanEntry *e, int64_t n_out, int64_t n_in, Err *err);

/* Calls fn for every (shape, entry) the views look up: the map's cells and
 * fp16 on each distinct projection shape; stops at its first error. */
static Status each_cell(SpeedJob *j, CellFn fn, Err *err) {
    for (int p = 0; p < PLAN_NPROJ; p++) {
        int64_t no, ni;
        plan_proj_shape(&j->pm, p, &no, &ni);
        int dup = 0; /* q and o, gate and up share a shape: timed once */
        for (int q = 0; q < p; q++) {
            int64_t qo, qi;
            plan_proj_shape(&j->pm, q, &qo, &qi);
            dup |= qo == no && qi == ni;
        }
        if (dup) continue;
        for (int f = -1; f < SENS_NFMT; f++)
            for (int g = 0; g < SG_COUNT; g++) {
                PlanEntry e;
                plan_entry_default(&e);
                if (f < 0) { /* fp16, the editor's default entry */
                    if (g) break;
                    e.w = (QParams){QF_F16, 1, GROUP_TENSOR, 0};
                } else if (!sens_cell_params(f, (SensGroup)g, no, ni, j->group, &e.w)) {
                    continue;
                }
                Status st = fn(j, &e, no, ni, err);
                if (st) return st;
            }
    }
    return ST_OK;
}

static Status count_missing(SpeedJob *j, const PlanEntry *e, int64_t no, int64_t ni, Err *err) {
    (void)err;
    j->n_missing += !speedtab_lookup(&j->tab, e, no, ni, NULL, NULL);
    return ST_OK;
}

static Status time_cell(SpeedJob *j, const PlanEntry *e, int64_t no, int64_t ni, Err *err) {
    if (progress_cancelled(j->prog)) return err_set(err, ST_ERR_CANCELLED, "speed table: cancelled");
    if (speedtab_lookup(&j->tab, e, no, ni, NULL, NULL)) return ST_OK;
    Status st = speedtab_get(&j->tab, e, no, ni, j->pool, NULL, NULL, err);
    progress_add(j->prog, 1);
    return st;
}

static Status speed_job_run(void *arg, Progress *prog, Err *err) {
    SpeedJob *j = arg;
    j->prog = prog;
    Status st = each_cell(j, count_missing, err);
    progress_begin(prog, "timing kernels", j->n_missing);
    if (!st) st = each_cell(j, time_cell, err);
    if (!st && j->have_plan) { /* the editor's plan: its other entries and the head */
        Err e2;
        err_init(&e2);
        j->plan_status = speedtab_plan(&j->tab, &j->plan, &j->pm, j->pool, &j->decode_tps, &j->prefill_tps, &e2);
        if (j->plan_status) snprintf(j->plan_err, sizeof j->plan_err, "%s", e2.detail);
    }
    return st;
}

static void speed_job_finish(void *arg, Status st, const Err *err, void *ctx) {
    SpeedJob *j = arg;
    App *a = ctx;
    if (!a->speed) return;
    /* what was measured is kept, also when cancelled: the main thread's table becomes the job's */
    int64_t n_new = j->tab.n_measured;
    speedtab_done(a->speed);
    *a->speed = j->tab;
    memset(&j->tab, 0, sizeof j->tab);
    Err e2;
    err_init(&e2);
    if (n_new && speedtab_save(a->speed, j->path, &e2) != ST_OK) app_msg(a, 1, "speed table: %s", e2.detail);
    else if (st) app_msg(a, st != ST_ERR_CANCELLED, "speed table: %s (%lld rows timed, kept)", err->detail, (long long)n_new);
    else if (j->have_plan && j->plan_status)
        app_msg(a, 1, "speed table: %lld rows timed; the plan has entries it cannot time: %s", (long long)n_new, j->plan_err);
    else
        app_msg(a, 0, "speed table: %lld rows timed (%lld in all, %d threads); plan: ~%.0f tok/s decode, %.0f prefill",
                (long long)n_new, (long long)a->speed->n, a->speed->threads, j->decode_tps, j->prefill_tps);
    app_log(a, "speed", "%lld kernel rows timed on this model's shapes into %s (%s)", (long long)n_new, j->path,
            st ? err->detail : "complete");
}

static void speed_job_free(void *arg) {
    SpeedJob *j = arg;
    if (!j) return;
    speedtab_done(&j->tab);
    if (j->have_plan) plan_done(&j->plan);
    free(j);
}

void app_speed_measure(App *a) {
    if (!a->speed || !a->cache_dir[0]) {
        app_msg(a, 1, "no cache directory: the speed table would not be kept (see --cache)");
        return;
    }
    SpeedJob *j = core_calloc(1, sizeof *j);
    if (!j) {
        app_msg(a, 1, "out of memory");
        return;
    }
    Err err;
    err_init(&err);
    j->pm = PLAN_MODEL_FROM_CONFIG(&a->m->cfg);
    j->pool = a->pool;
    j->group = map_group(a);
    j->tab = *a->speed;
    j->tab.rows = NULL;
    j->tab.n = j->tab.cap = j->tab.n_measured = 0;
    Status st = speedtab_path(a->cache_dir, a->speed->threads, j->path, sizeof j->path, &err);
    for (int64_t i = 0; !st && i < a->speed->n; i++) st = speedtab_add(&j->tab, &a->speed->rows[i], &err);
    if (!st) j->have_plan = plan_edit_to_plan(a->pe, &j->plan, &err) == ST_OK;
    if (st) {
        app_msg(a, 1, "speed table: %s", err.detail);
        speed_job_free(j);
        return;
    }
    if (!jobs_submit(&a->jobs, "speed table", speed_job_run, speed_job_finish, speed_job_free, j, &err)) {
        app_msg(a, 1, "%s", err.detail);
        return;
    }
    app_msg(a, 0, "speed table queued: every map format x grouping and the plan's entries on this model's shapes");
}
