/* The calibration settings screen (C): every setting of `qscope calib` in
 * a box over the current view, edited in place (see app.h, CalibSettings;
 * the values and their steps live in app_calib.c). */
#define NCURSES_WIDECHAR 1
#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#include <curses.h>

#include <stdio.h>
#include <string.h>

#include "analysis/calib.h"
#include "tui/draw.h"
#include "tui/views.h"

void calibset_draw(const App *a, const Layout *l) {
    int bh = CS_COUNT + 6;
    if (bh > l->body.h) bh = l->body.h;
    int bw = l->cols - 4 < 96 ? l->cols - 4 : 96;
    Rect box = {2, l->body.y, bw, bh};
    draw_box(&box, "Calibration settings: j/k select, +/- change, Enter types, c calibrates, Esc closes");
    int y = box.y + 1;
    for (int k = 0; k < CS_COUNT && y < box.y + bh - 3; k++, y++) {
        char label[48], val[APP_PATH_MAX];
        const char *hint = app_calibset_field(a, k, label, sizeof label, val, sizeof val);
        int sel = k == a->cset.sel;
        int x = box.x + 2 + draw_text(y, box.x + 2, box.w - 4, sel ? C_CURSOR : C_POPUP, "%s %-25s %s", sel ? ">" : " ",
                                      label, val);
        if (sel && hint[0]) draw_text(y, x, box.x + box.w - 2 - x, C_DIM, "  %s", hint);
    }
    /* what calibration will do with them, and what the loaded one did */
    const CalibSettings *c = &a->cset;
    char sum[160];
    app_calib_summary(a, sum, sizeof sum);
    char of[96] = "";
    int warn = 0;
    int over;
    int64_t from = app_calib_from(a, &over);
    int64_t want = c->samples * c->seqlen, nt = c->text_tokens >= 0 ? c->text_tokens - from : -1;
    if (nt >= 0 && c->mode == CALIB_RANDOM && want > nt) {
        snprintf(of, sizeof of, " > the %s's %lld: windows repeat", from ? "part" : "text", (long long)nt);
        warn = 1;
    } else if (nt >= 0 && c->mode == CALIB_CHUNKS && want > nt) {
        snprintf(of, sizeof of, " > the %s's %lld: %lld windows fit", from ? "part" : "text", (long long)nt,
                 (long long)(nt / c->seqlen));
        warn = 1;
    } else if (nt >= 0) {
        snprintf(of, sizeof of, " of the %s's %lld", from ? "part" : "text", (long long)nt);
    }
    draw_text(box.y + bh - 3, box.x + 2, box.w - 4, warn ? C_WARN : C_POPUP, "c: %lld x %lld = %lld tokens%s%s",
              (long long)c->samples, (long long)c->seqlen, (long long)want, of,
              c->with_h ? "" : "; no H: no output errors, no GPTQ");
    draw_text(box.y + bh - 2, box.x + 2, box.w - 4, C_DIM, "loaded: %s", sum[0] ? sum : "no calibration yet");
}

int calibset_key(App *a, int key, Action act) {
    CalibSettings *c = &a->cset;
    int64_t sel = c->sel;
    if (key == '+' || key == '=') act = AC_GROUP_UP;
    else if (key == '-') act = AC_GROUP_DOWN;
    else if (key == TK_ENTER) act = AC_ENTER;
    if (view_move(act, &sel, CS_COUNT, 3)) {
        c->sel = (int)sel;
        return R_REDRAW;
    }
    switch (act) {
    case AC_BACK: case AC_CALIB_SETTINGS: c->open = 0; return R_REDRAW;
    case AC_GROUP_UP: case AC_RIGHT: app_calibset_step(a, c->sel, 1); return R_REDRAW;
    case AC_GROUP_DOWN: case AC_LEFT: app_calibset_step(a, c->sel, -1); return R_REDRAW;
    case AC_ENTER: app_calibset_enter(a, c->sel); return R_REDRAW;
    case AC_CALIB: c->open = 0; return R_UNHANDLED; /* c calibrates (global) and closes the screen */
    case AC_QUIT: case AC_HELP: return R_UNHANDLED;
    default:
        if (act >= AC_VIEW_1 && act <= AC_PREV_VIEW) {
            c->open = 0;
            return R_UNHANDLED;
        }
        return R_NONE;
    }
}
