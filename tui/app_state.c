/* The workbench's shared state services, the layer under both sides of the
 * state (app_calib.c, app_plan.c, app_auto.c, app_speed.c), the views and
 * the main loop (app.c): the message bar, the Log, recording actions in the
 * session, result rows and prompts. It calls none of them, so calls between
 * the workbench's files go one way (app.c -> views -> sides -> here).
 * Declared in app.h's "App state" section; curses-free. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sessions/plan_json.h"
#include "sessions/session.h"
#include "tui/app.h"
#include "tui/draw.h"

void app_msg(App *a, int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->msg, sizeof a->msg, fmt, ap);
    va_end(ap);
    a->msg_err = err;
    /* the message bar is one line: a long message is kept whole in the Log
     * (the bar points there when it does not fit) */
    if (draw_width(a->msg) > 78) app_log(a, err ? "error" : "message", "%s", a->msg);
}

void app_log(App *a, const char *what, const char *fmt, ...) {
    if (a->n_log == a->cap_log) {
        int64_t cap = a->cap_log ? 2 * a->cap_log : 64;
        LogLine *n = realloc(a->log, (size_t)cap * sizeof *n);
        if (!n) return;
        a->log = n;
        a->cap_log = cap;
    }
    LogLine *l = &a->log[a->n_log++];
    l->when = time(NULL);
    snprintf(l->what, sizeof l->what, "%s", what);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->text, sizeof l->text, fmt, ap);
    va_end(ap);
}

void app_session_save(App *a) {
    if (!a->sess) return;
    Err err;
    err_init(&err);
    if (session_save(a->sess, a->session_path, &err) != ST_OK) app_msg(a, 1, "session not saved: %s", err.detail);
}

void app_session_action(App *a, const char *name, const SessionArg *args, int64_t n) {
    if (!a->sess) return;
    Err err;
    err_init(&err);
    if (session_log_action(a->sess, name, args, n, &err) != ST_OK) {
        app_msg(a, 1, "session: %s", err.detail);
        return;
    }
    app_session_save(a);
}

void app_session_set_plan(App *a, const Plan *p, const SessionArg *extra) {
    if (!a->sess) return;
    Err err;
    err_init(&err);
    char *js = NULL;
    if (plan_json_write(p, &js, &err) == ST_OK) {
        SessionArg args[] = {SESSION_ARG_STR("plan", p->name), SESSION_ARG_JSON("json", js), *extra};
        app_session_action(a, "set_plan", args, 3);
    } else {
        app_msg(a, 1, "session: %s", err.detail);
    }
    free(js);
}

EvalRow *app_add_row(App *a) {
    if (a->n_rows == a->cap_rows) {
        int64_t cap = a->cap_rows ? 2 * a->cap_rows : 16;
        EvalRow *n = realloc(a->rows, (size_t)cap * sizeof *n);
        if (!n) return NULL;
        a->rows = n;
        RowDetail *d = realloc(a->details, (size_t)cap * sizeof *d);
        if (!d) return NULL;
        a->details = d;
        a->cap_rows = cap;
    }
    RowDetail *d = &a->details[a->n_rows];
    memset(d, 0, sizeof *d);
    d->quant_s = d->eval_s = NAN;
    EvalRow *r = &a->rows[a->n_rows++];
    memset(r, 0, sizeof *r);
    r->id = a->n_rows;
    r->kld_pred = NAN;
    r->quant_s = NAN;
    return r;
}

void app_prompt_open(App *a, int kind, const char *label, const char *initial) {
    a->prompt = kind;
    snprintf(a->prompt_label, sizeof a->prompt_label, "%s", label);
    snprintf(a->prompt_buf, sizeof a->prompt_buf, "%s", initial ? initial : "");
}
