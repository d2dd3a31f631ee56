/* The workbench's main loop and lifecycle: curses setup and teardown on every
 * exit path, key translation and dispatch through the bindings table, the
 * title bar / tabs / hints / message bar, the help screen, job polling.
 * Only this thread calls curses. The top of the workbench's layers: it calls
 * the views and the two sides of the state (app_calib.c, app_plan.c, ...),
 * which call app_state.c below them; nothing calls back up into this file. */
#define NCURSES_WIDECHAR 1
#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#include <curses.h>

#include "tui/app.h"

#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analysis/sensitivity.h"
#include "analysis/speedtab.h"
#include "core/alloc.h"
#include "core/assert.h"
#include "core/cache.h"
#include "core/mapfile.h"
#include "sessions/session.h"
#include "tui/draw.h"
#include "tui/heat.h"
#include "tui/views.h"

/* === Lifecycle === */

/* Opens --session: loads an existing file (a corrupt one is an error and is
 * left untouched) or starts a new one; the Log view shows the recorded actions. */
static Status session_open(App *a, Err *err) {
    struct stat st;
    if (stat(a->session_path, &st) != 0) {
        Status s = session_new(a->m, a->opts.tokenizer, &a->sess, err);
        if (s != ST_OK) return s;
        app_log(a, "session", "new session %s", a->session_path);
        return session_save(a->sess, a->session_path, err);
    }
    Status s = session_load(a->session_path, &a->sess, err);
    if (s != ST_OK) return s;
    char msg[300];
    if (session_check_model(a->sess, a->m, msg, sizeof msg) != SESSION_MODEL_OK) app_msg(a, 1, "%s", msg);
    for (int64_t i = 0; i < session_n_actions(a->sess); i++) {
        const SessionAction *act = session_action(a->sess, i);
        char *args = session_action_text(a->sess, i); /* key=value pairs: the Log wraps between them */
        app_log(a, act->name, "%s", args ? args : "");
        free(args);
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        if (act->time && strptime(act->time, "%Y-%m-%dT%H:%M:%SZ", &tm)) a->log[a->n_log - 1].when = timegm(&tm);
    }
    app_log(a, "session", "reopened %s: %lld actions, %lld plans, %lld results", a->session_path,
            (long long)session_n_actions(a->sess), (long long)session_n_plans(a->sess),
            (long long)session_n_results(a->sess));
    return ST_OK;
}

static void cache_dir_init(App *a) {
    Err err;
    err_init(&err);
    if (cache_dir_default(a->cache_dir, sizeof a->cache_dir, &err) != ST_OK) a->cache_dir[0] = 0;
}

Status app_init(App *a, const TuiOpts *o, Err *err) {
    memset(a, 0, sizeof *a);
    a->opts = *o;
    a->act.topk = 32;
    a->act.sort_by_value = 1;
    a->act.jump = -1;
    a->sens.grouping = 1; /* per-OC */
    a->sens.fmt = sens_fmt_index(QF_INT4);
    a->eval.sort = 0;
    ModelLoadOpts mo = {.tokenizer_path = o->tokenizer};
    Status st = model_load(o->model_path, &mo, &a->m, err);
    if (st != ST_OK) goto fail;
    const char *base = strrchr(o->model_path, '/');
    snprintf(a->model_name, sizeof a->model_name, "%s", base && base[1] ? base + 1 : o->model_path);
    if (o->text_path) {
        snprintf(a->text_path, sizeof a->text_path, "%s", o->text_path);
        if ((st = file_read_all(o->text_path, (size_t)1 << 30, &a->text, &a->text_len, err)) != ST_OK) goto fail;
    }
    if (o->calib_text_path) {
        snprintf(a->calib_path, sizeof a->calib_path, "%s", o->calib_text_path);
        if ((st = file_read_all(o->calib_text_path, (size_t)1 << 30, &a->calib_text, &a->calib_len, err)) != ST_OK)
            goto fail;
    }
    cache_dir_init(a);
    if (o->session) {
        snprintf(a->session_path, sizeof a->session_path, "%s", o->session);
        if ((st = session_open(a, err)) != ST_OK) goto fail;
    }
    if ((st = pool_new(o->threads, &a->pool, err)) != ST_OK) goto fail;
    {
        char sp[APP_PATH_MAX + 64];
        Err e2;
        err_init(&e2);
        a->speed = core_calloc(1, sizeof *a->speed);
        if (a->speed && (!a->cache_dir[0] || speedtab_path(a->cache_dir, pool_size(a->pool), sp, sizeof sp, &e2) ||
                         speedtab_load(sp, pool_size(a->pool), a->speed, &e2))) { /* no table: no speed shown */
            free(a->speed);
            a->speed = NULL;
        }
    }
    if ((st = app_plan_init(a, err)) != ST_OK) goto fail;
    app_calibset_init(a);
    app_split_init(a);
    if ((st = jobs_init(&a->jobs, err)) != ST_OK) goto fail;
    app_log(a, "open", "model %s (%s), text %s, %d threads", o->model_path,
            a->m->tok ? tokenizer_describe(a->m->tok) : "no tokenizer",
            a->text ? a->text_path : "(none)", pool_size(a->pool));
    if (!app_calib_restore(a)) app_load_cached_stats(a);
    if (!a->msg[0]) app_msg(a, 0, "press c to calibrate, e to evaluate the plan, ? for help");
    return ST_OK;
fail:
    app_done(a);
    return st;
}

void app_done(App *a) {
    if (!a) return;
    jobs_done(&a->jobs);
    app_details_free(a);
    app_plan_done(a);
    app_free_stats(a->cs);
    a->cs = NULL;
    free(a->cs_seqs);
    pool_free(a->pool);
    if (a->speed) speedtab_done(a->speed);
    free(a->speed);
    model_free(a->m);
    free(a->text);
    free(a->calib_text);
    free(a->rows);
    free(a->details);
    free(a->log);
    free(a->plan.marks);
    free(a->plan.auto_sites);
    session_free(a->sess);
    memset(a, 0, sizeof *a);
}

/* === Terminal lifecycle === */

static volatile sig_atomic_t got_signal;
static int curses_on;
static SCREEN *screen; /* from newterm: unlike initscr, it reports a bad TERM instead of exiting */

static void on_signal(int sig) { got_signal = sig; }

static void restore_terminal(void) {
    if (curses_on) {
        curses_on = 0;
        endwin();
    }
}

/* Frees the SCREEN after the terminal is restored; not for the fatal path. */
static void release_screen(void) {
    if (screen) {
        delscreen(screen);
        screen = NULL;
    }
}

static void fatal_hook(void) { restore_terminal(); }

static int translate_key(int ch) {
    switch (ch) {
    case KEY_UP: return TK_UP;
    case KEY_DOWN: return TK_DOWN;
    case KEY_LEFT: return TK_LEFT;
    case KEY_RIGHT: return TK_RIGHT;
    case KEY_PPAGE: return TK_PGUP;
    case KEY_NPAGE: return TK_PGDN;
    case KEY_HOME: return TK_HOME;
    case KEY_END: return TK_END;
    case KEY_BTAB: return TK_BTAB;
    case KEY_ENTER: case '\r': case '\n': return TK_ENTER;
    case KEY_BACKSPACE: case 127: return TK_BACKSPACE;
    default: return ch;
    }
}

static const ViewOps *const views[VIEW_COUNT] = {&view_model_ops, &view_act_ops,  &view_sens_ops,
                                                 &view_plan_ops,  &view_eval_ops, &view_log_ops};

/* === Chrome: title, tabs, hints, message === */

static void fmt_secs(double s, char *buf, size_t n) {
    if (s < 0) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", ceil(s));
    else snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

static void draw_title(const App *a, const Layout *l) {
    draw_fill(&l->title, C_TITLE);
    JobView jv;
    jobs_view((JobRunner *)&a->jobs, &jv);
    char right[160] = "";
    int bar_w = 0;
    if (jv.running) {
        char eta[16];
        fmt_secs(jv.eta, eta, sizeof eta);
        char q[48] = "";
        if (jv.n_queued) snprintf(q, sizeof q, "  +%d queued (%s)", jv.n_queued, jv.queued[0]);
        char what[112];
        if (!jv.stage[0] || strncmp(jv.label, jv.stage, strlen(jv.stage)) == 0) snprintf(what, sizeof what, "%s", jv.label);
        else snprintf(what, sizeof what, "%s (%s)", jv.label, jv.stage);
        snprintf(right, sizeof right, "%s %lld/%lld ETA %s%s ", what, (long long)jv.done, (long long)jv.total, eta, q);
        /* too wide for its half of the title: the queue keeps its count, not its name (it was cut at the edge) */
        if (jv.n_queued && draw_width(right) > l->cols / 2) {
            snprintf(q, sizeof q, "  +%d queued", jv.n_queued);
            snprintf(right, sizeof right, "%s %lld/%lld ETA %s%s ", what, (long long)jv.done, (long long)jv.total, eta, q);
        }
        bar_w = l->cols >= 120 ? 16 : 10;
    } else {
        snprintf(right, sizeof right, "idle ");
    }
    const char *sess = a->session_path[0] ? strrchr(a->session_path, '/') : NULL;
    sess = sess ? sess + 1 : a->session_path[0] ? a->session_path : "none";
    char left[300];
    const char *bar = a->utf8 ? "\u2502" : "|";
    snprintf(left, sizeof left, " qscope %s %s %s session: %s", bar, a->model_name, bar, sess);
    /* The job's text keeps up to half the width (a long session name is cut
     * first); then the bar goes, then the job's text is cut. */
    int keep = draw_width(right) + (bar_w ? bar_w + 1 : 0);
    if (keep > l->cols / 2) keep = l->cols / 2;
    int lmax = l->cols - keep - 2;
    if (draw_width(left) > lmax && lmax > 4) {
        size_t i = 0;
        int cols = 0;
        while (left[i] && cols < lmax - 1) { /* cut at lmax - 1 code points, then an ellipsis */
            i++;
            while (left[i] && ((unsigned char)left[i] & 0xC0) == 0x80) i++;
            cols++;
        }
        snprintf(left + i, sizeof left - i, "%s", a->utf8 ? "\u2026" : "~");
    }
    int avail = l->cols - draw_width(left) - 2;
    int rw = draw_width(right);
    if (bar_w && rw + bar_w + 1 > avail) bar_w = 0;
    if (rw > avail) rw = avail > 0 ? avail : 0;
    int x = l->cols - rw - (bar_w ? bar_w + 1 : 0);
    draw_str(0, 0, x - 1, C_TITLE, left);
    if (bar_w) {
        double frac = jv.total > 0 ? (double)jv.done / (double)jv.total : 0;
        draw_bar(0, x, bar_w, frac, C_TITLE);
        x += bar_w + 1;
    }
    draw_str(0, x, rw, C_TITLE, right);
}

static void draw_tabs(const App *a, const Layout *l) {
    int x = 0;
    for (int v = 0; v < VIEW_COUNT; v++) {
        char t[32];
        snprintf(t, sizeof t, " %d %s ", v + 1, view_title((ViewId)v));
        x += draw_str(1, x, l->cols - x, v == (int)a->view ? C_TAB_ACTIVE : C_TAB, t);
        x += draw_str(1, x, l->cols - x, C_TAB, " ");
    }
}

static void draw_hints(const App *a, const Layout *l) {
    char buf[512];
    keys_hint_line(a->view, l->cols - 1, buf, sizeof buf);
    draw_str(l->hints.y, 1, l->cols - 1, C_HINT, buf);
}

static void draw_msg(const App *a, const Layout *l) {
    if (a->confirm_quit) {
        JobView jv;
        jobs_view((JobRunner *)&a->jobs, &jv);
        if (jv.running) draw_text(l->msg.y, 0, l->cols, C_ERROR, " A job is running (%s). Quit anyway? y/n ", jv.label);
        else if (jv.n_queued) draw_text(l->msg.y, 0, l->cols, C_ERROR, " A job is queued (%s). Quit anyway? y/n ", jv.queued[0]);
        else draw_text(l->msg.y, 0, l->cols, C_ERROR, " The job has finished. Quit? y/n ");
        return;
    }
    if (a->prompt) {
        /* the end of a long line stays in view: the label, then as much of the text's tail as fits */
        int lw = draw_text(l->msg.y, 0, l->cols, C_HEADER, " %s ", a->prompt_label);
        int room = l->cols - lw - 2;
        const char *t = a->prompt_buf;
        int tw = draw_width(t);
        while (tw > room && *t) {
            t++;
            while (*t && ((unsigned char)*t & 0xC0) == 0x80) t++;
            tw--;
        }
        draw_text(l->msg.y, lw, l->cols - lw, C_CURSOR, "%s_", t);
        return;
    }
    if (!a->msg[0]) return;
    /* a message wider than the screen ends in a pointer to the Log, which has it whole */
    int mw = draw_width(a->msg);
    if (mw + 2 <= l->cols) {
        draw_text(l->msg.y, 0, l->cols, a->msg_err ? C_ERROR : C_MSG, " %s ", a->msg);
        return;
    }
    static const char more[] = " ... (whole in 6 Log)";
    int keep = l->cols - 1 - (int)sizeof more + 1;
    int x = draw_str(l->msg.y, 0, 1, a->msg_err ? C_ERROR : C_MSG, " ");
    x += draw_str(l->msg.y, x, keep > 0 ? keep : 0, a->msg_err ? C_ERROR : C_MSG, a->msg);
    draw_str(l->msg.y, x, l->cols - x, C_DIM, more);
}

typedef struct HelpCtx {
    Rect rc;
    int y, skip;
} HelpCtx;

static void help_line(void *user, const char *line, int heading) {
    HelpCtx *h = user;
    if (h->skip > 0) {
        h->skip--;
        return;
    }
    if (h->y >= h->rc.y + h->rc.h - 1) return;
    draw_str(h->y++, h->rc.x + 2, h->rc.w - 4, heading ? C_HEADER : C_POPUP, line);
}

static void help_count(void *user, const char *line, int heading) {
    (void)user;
    (void)line;
    (void)heading;
}

static void draw_help(const App *a, const Layout *l) {
    Rect rc = l->body;
    draw_box(&rc, "Keys (generated from the bindings table) - Esc or ? closes, arrows scroll");
    HelpCtx h = {.rc = rc, .y = rc.y + 1, .skip = (int)a->help_scroll};
    keys_help(a->view, help_line, &h);
}

static void draw_all(const App *a) {
    Layout l;
    const ViewOps *v = views[a->view];
    layout_screen(&l, COLS, LINES, v->side ? v->side(a, COLS) : 0);
    erase();
    if (l.too_small) {
        draw_text(0, 0, COLS, C_ERROR, "terminal %dx%d is too small: qscope needs %dx%d", COLS, LINES,
                  LAYOUT_MIN_COLS, LAYOUT_MIN_ROWS);
        draw_text(1, 0, COLS, C_NORMAL, "enlarge the window, or press q to quit");
        refresh();
        return;
    }
    draw_title(a, &l);
    draw_tabs(a, &l);
    v->draw(a, &l);
    if (l.side.w > 0) {
        int at = draw_attr(C_DIM);
        attron(at);
        for (int y = l.body.y; y < l.body.y + l.body.h; y++) mvaddstr(y, l.side.x - 1, a->utf8 ? "\u2502" : "|");
        attroff(at);
    }
    if (a->cset.open) calibset_draw(a, &l);
    draw_hints(a, &l);
    draw_msg(a, &l);
    if (a->help_open) draw_help(a, &l);
    refresh();
}

/* === Dispatch === */

static void switch_view(App *a, ViewId v) {
    if (v == a->view) return;
    if (views[a->view]->leave) views[a->view]->leave(a);
    a->view = v;
    if (views[v]->enter) views[v]->enter(a);
}

/* A key while a prompt is open: printable characters, Backspace, Enter, Esc. */
static int prompt_key(App *a, int key) {
    size_t n = strlen(a->prompt_buf);
    if (key == 27) {
        a->prompt = 0;
        app_msg(a, 0, "cancelled");
    } else if (key == TK_ENTER) {
        int kind = a->prompt;
        a->prompt = 0;
        char text[APP_PATH_MAX];
        snprintf(text, sizeof text, "%s", a->prompt_buf);
        if (kind == PROMPT_CALIB_TEXT || kind == PROMPT_CALIB_NUM) app_calibset_typed(a, kind, text);
        else view_plan_prompt_done(a, kind, text);
    } else if (key == TK_BACKSPACE || key == 8) {
        while (n > 0 && ((unsigned char)a->prompt_buf[n - 1] & 0xC0) == 0x80) n--; /* a whole UTF-8 character */
        if (n > 0) n--;
        a->prompt_buf[n] = 0;
    } else if (key == 21) { /* Ctrl-U: clear */
        a->prompt_buf[0] = 0;
    } else if (key >= 32 && key < 127 && n + 1 < sizeof a->prompt_buf) {
        a->prompt_buf[n] = (char)key;
        a->prompt_buf[n + 1] = 0;
    }
    return R_REDRAW;
}

static int handle_key(App *a, int key) {
    if (a->prompt) return prompt_key(a, key);
    if (a->confirm_quit) {
        a->confirm_quit = 0;
        if (key == 'y' || key == 'Y') return R_QUIT;
        app_msg(a, 0, "not quitting");
        return R_REDRAW;
    }
    Action act = keys_lookup(a->view, key);
    if (a->help_open) {
        if (act == AC_BACK || act == AC_HELP || act == AC_QUIT) a->help_open = 0;
        else if (act == AC_DOWN || act == AC_PGDN) a->help_scroll += act == AC_DOWN ? 1 : 10;
        else if ((act == AC_UP || act == AC_PGUP) && a->help_scroll > 0) a->help_scroll -= act == AC_UP ? 1 : 10;
        Layout l;
        layout_screen(&l, COLS, LINES, 0);
        int64_t max = keys_help(a->view, help_count, NULL) - (l.body.h - 2); /* the last line at the bottom */
        if (a->help_scroll > max) a->help_scroll = max;
        if (a->help_scroll < 0) a->help_scroll = 0;
        return R_REDRAW;
    }
    if (a->cset.open) { /* raw keys too: +/- and Enter are not bound in every view */
        int r = calibset_key(a, key, act);
        if (!(r & R_UNHANDLED)) return r;
    }
    if (act == AC_NONE) return R_NONE;
    int r = views[a->view]->key(a, act);
    if (!(r & R_UNHANDLED)) return r;
    switch (act) {
    case AC_HELP: a->help_open = 1; a->help_scroll = 0; return R_REDRAW;
    case AC_QUIT:
        if (jobs_busy(&a->jobs)) {
            a->confirm_quit = 1;
            return R_REDRAW;
        }
        return R_QUIT;
    case AC_VIEW_1: case AC_VIEW_2: case AC_VIEW_3: case AC_VIEW_4: case AC_VIEW_5: case AC_VIEW_6:
        switch_view(a, (ViewId)(act - AC_VIEW_1));
        return R_REDRAW;
    case AC_NEXT_VIEW: switch_view(a, (ViewId)((a->view + 1) % VIEW_COUNT)); return R_REDRAW;
    case AC_PREV_VIEW: switch_view(a, (ViewId)((a->view + VIEW_COUNT - 1) % VIEW_COUNT)); return R_REDRAW;
    case AC_CALIB: app_calibrate(a); return R_REDRAW;
    case AC_EVAL: app_evaluate(a); return R_REDRAW;
    case AC_AUTO_PLAN: app_auto_plan(a); return R_REDRAW;
    case AC_CALIB_SETTINGS: app_calibset_open(a); return R_REDRAW;
    case AC_SPEED: app_speed_measure(a); return R_REDRAW;
    case AC_BACK:
        if (jobs_cancel(&a->jobs)) app_msg(a, 0, "cancelling the running job...");
        return R_REDRAW;
    default: return R_NONE;
    }
}

int tui_run(const TuiOpts *o) {
    setlocale(LC_ALL, "");
    int utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
    App *a = core_calloc(1, sizeof *a);
    if (!a) {
        fprintf(stderr, "qscope: out of memory\n");
        return 1;
    }
    Err err;
    err_init(&err);
    if (app_init(a, o, &err) != ST_OK) {
        fprintf(stderr, "qscope: %s: %s\n", status_message(err.code), err.detail);
        free(a);
        return 1;
    }
    a->utf8 = utf8;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    struct sigaction old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    assert_set_fatal_hook(fatal_hook);

    screen = newterm(NULL, stdout, stdin);
    if (!screen) {
        assert_set_fatal_hook(NULL);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        fprintf(stderr, "qscope: cannot initialise the terminal (TERM=%s)\n", getenv("TERM") ? getenv("TERM") : "");
        app_done(a);
        free(a);
        return 1;
    }
    set_term(screen);
    /* A terminal that cannot address the cursor (TERM=dumb, a hardcopy or an
     * emacs shell) would get an unusable screen: refuse and point at the CLI. */
    char *cup = tigetstr("cup");
    if (!cup || cup == (char *)-1 || tigetflag("hc") > 0) {
        endwin();
        delscreen(screen);
        screen = NULL;
        assert_set_fatal_hook(NULL);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        fprintf(stderr,
                "qscope: the terminal (TERM=%s) cannot move the cursor, so the workbench cannot draw on it; "
                "use a full-screen terminal (TERM=xterm-256color) or the subcommands (qscope --help: info, calib, "
                "plan, eval, replay ...)\n",
                getenv("TERM") ? getenv("TERM") : "");
        app_done(a);
        free(a);
        return 2;
    }
    curses_on = 1;
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    set_escdelay(25);
    curs_set(0);
    timeout(40); /* keys are handled within 50 ms, and the title's progress moves */
    a->colors = has_colors() && getenv("NO_COLOR") == NULL;
    draw_init(a->colors, utf8);

    /* The fatal path (ASSERT -> hook -> endwin -> abort) is exercised by the
     * end-to-end test through this variable; nothing else sets it. */
    const char *tf = getenv("QSCOPE_TEST_FATAL");
    if (tf && *tf) {
        draw_all(a);
        ASSERT(!"QSCOPE_TEST_FATAL is set");
    }
    int dirty = 1;
    while (!got_signal) {
        while (jobs_poll(&a->jobs, a)) dirty = 1;
        if (dirty || jobs_busy(&a->jobs)) {
            draw_all(a);
            dirty = 0;
        }
        int ch = getch();
        if (ch == ERR) continue;
        if (ch == KEY_RESIZE) {
            dirty = 1;
            continue;
        }
        int r = handle_key(a, translate_key(ch));
        if (r & R_QUIT) break;
        if (r) dirty = 1;
    }
    app_edit_flush(a); /* a run of format presses ended by Ctrl-C still reaches the session */
    restore_terminal();
    release_screen();
    assert_set_fatal_hook(NULL);
    /* app_done waits for the running job to see the cancel: say why the shell is not back yet */
    if (jobs_busy(&a->jobs)) {
        fprintf(stderr, "qscope: stopping the running job...\n");
        jobs_cancel(&a->jobs);
    }
    int sig = got_signal;
    app_done(a);
    free(a);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (sig) fprintf(stderr, "qscope: %s: terminal restored\n", sig == SIGINT ? "interrupted" : "terminated");
    return sig ? 128 + sig : 0;
}
