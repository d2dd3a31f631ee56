/* The bindings table (see keys.h). Order here is the order in the help. */
#include "tui/keys.h"

#include <stdio.h>
#include <string.h>

#define V(x) VIEW_BIT(VIEW_##x)

static const Binding table[] = {
    {'?', A_HELP, VIEWS_ALL, "?", "this help (generated from the key table)", "help"},
    {'q', A_QUIT, VIEWS_ALL, "q", "quit (asks first while a job runs)", "quit"},
    {'1', A_VIEW_1, VIEWS_ALL, "1", "Model view", NULL},
    {'2', A_VIEW_2, VIEWS_ALL, "2", "Activations view (heat map of the calibration)", NULL},
    {'3', A_VIEW_3, VIEWS_ALL, "3", "Sensitivity view (output error per format x grouping)", NULL},
    {'4', A_VIEW_4, VIEWS_ALL, "4", "Plan view (edit the quantization plan)", NULL},
    {'5', A_VIEW_5, VIEWS_ALL, "5", "Evaluate view (running and past evaluations)", NULL},
    {'6', A_VIEW_6, VIEWS_ALL, "6", "Log view (what ran, when, with what settings)", NULL},
    {TK_TAB, A_NEXT_VIEW, VIEWS_ALL, "Tab", "next view", NULL},
    {TK_BTAB, A_PREV_VIEW, VIEWS_ALL, "Shift-Tab", "previous view", NULL},
    {TK_UP, A_UP, VIEWS_ALL, "Up/k", "move up", NULL},
    {'k', A_UP, VIEWS_ALL, NULL, NULL, NULL},
    {TK_DOWN, A_DOWN, VIEWS_ALL, "Down/j", "move down", NULL},
    {'j', A_DOWN, VIEWS_ALL, NULL, NULL, NULL},
    {TK_LEFT, A_LEFT, VIEWS_ALL, "Left/h", "move left", NULL},
    {'h', A_LEFT, VIEWS_ALL, NULL, NULL, NULL},
    {TK_RIGHT, A_RIGHT, VIEWS_ALL, "Right/l", "move right", NULL},
    {'l', A_RIGHT, VIEWS_ALL, NULL, NULL, NULL},
    {TK_PGUP, A_PGUP, VIEWS_ALL, "PgUp", "page up", NULL},
    {TK_PGDN, A_PGDN, VIEWS_ALL, "PgDn", "page down", NULL},
    {TK_HOME, A_HOME, VIEWS_ALL, "Home/g", "first row", NULL},
    {TK_END, A_END, VIEWS_ALL, "End/G", "last row", NULL},
    {'G', A_END, VIEWS_ALL, NULL, NULL, NULL},
    {TK_ENTER, A_ENTER, V(ACT), "Enter", "drill into the cell: channels, |x| histogram, top spikes", "detail"},
    {TK_ESC, A_BACK, VIEWS_ALL, "Esc", "back out of a detail or popup; else cancel the running job", "back/cancel"},
    {'c', A_CALIB, VIEWS_ALL, "c", "calibrate on the text (background job)", "calibrate"},
    {'e', A_EVAL, VIEWS_ALL, "e", "evaluate the current plan (background job)", "evaluate"},
    {'m', A_METRIC, V(ACT), "m", "cycle metric: max|x|, max/median, kurtosis, p99.9", "metric"},
    {'s', A_SORT, V(ACT) | V(EVAL), "s", "cycle sort order (detail: channel/max|x|; results: column)", "sort"},
    {'t', A_TOPK, V(ACT), "t", "detail: cycle top-k channels shown (16, 32, 64, all)", NULL},
    {'f', A_SENS_FMT, V(SENS), "f", "cycle weight format (int8 ... fp8-e5m2)", "format"},
    {'g', A_SENS_GROUP, V(SENS), "g", "cycle grouping (tensor, oc, ic, oc-g, ic-g)", "grouping"},
    {'a', A_SENS_MODE, V(SENS), "a", "AdaDim mode: per-IC vs per-OC, marking AdaDim's choice", "adadim"},
    {'w', A_SENS_ERR, V(SENS), "w", "toggle output error / weight error", "out/weight"},
    {'g', A_HOME, VIEWS_ALL, NULL, NULL, NULL},
    {'f', A_FMT_NEXT, V(PLAN), "f/F", "next / previous weight format", "format"},
    {'F', A_FMT_PREV, V(PLAN), NULL, NULL, NULL},
    {'d', A_DIM, V(PLAN), "d", "grouping dimension: oc, ic, tensor", "dim"},
    {'+', A_GROUP_UP, V(PLAN), "+/-", "group size up / down (0 = per-channel)", "group"},
    {'=', A_GROUP_UP, V(PLAN), NULL, NULL, NULL},
    {'-', A_GROUP_DOWN, V(PLAN), NULL, NULL, NULL},
    {'m', A_METHOD, V(PLAN), "m", "method: rtn, gptq, adadim", "method"},
    {'a', A_ACTQ, V(PLAN), "a", "activation format: none, int8, fp8-e4m3, fp8-e5m2", NULL},
    {'y', A_SYM, V(PLAN), "y", "symmetric / asymmetric integers", NULL},
    {'v', A_SCOPE, V(PLAN), "v", "edit scope: cell, row, column, marked, all", "scope"},
    {' ', A_MARK, V(PLAN), "Space", "mark / unmark the cell (scope 'marked')", NULL},
    {'p', A_PRESET, V(PLAN), "p", "load a preset (spike-aware uses the calibration)", "preset"},
    {'u', A_UNDO, V(PLAN), "u", "undo the last plan edit", "undo"},
    {TK_CTRL_R, A_REDO, V(PLAN), "Ctrl-R", "redo", "redo"},
    {'W', A_WRITE_PLAN, V(PLAN), "W", "write the plan as JSON (path in the message bar)", NULL},
    {0, A_NONE, 0, NULL, NULL, NULL},
};

const Binding *keys_table(int *n) {
    if (n) *n = (int)(sizeof table / sizeof table[0]) - 1;
    return table;
}

Action keys_lookup(ViewId v, int key) {
    Action global = A_NONE;
    for (const Binding *b = table; b->action != A_NONE; b++) {
        if (b->key != key) continue;
        if (b->views == VIEWS_ALL) {
            if (global == A_NONE) global = b->action;
        } else if (b->views & VIEW_BIT(v)) {
            return b->action;
        }
    }
    return global;
}

const char *view_title(ViewId v) {
    static const char *const t[VIEW_COUNT] = {"Model", "Activations", "Sensitivity", "Plan", "Evaluate", "Log"};
    return (unsigned)v < VIEW_COUNT ? t[v] : "?";
}

/* Display width of a UTF-8 string (one column per code point). */
static int utf8_width(const char *s) {
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static int hint_add(char *buf, int n, int *len, int *w, int width, const Binding *b) {
    char item[64];
    const char *k = b->key_name;
    snprintf(item, sizeof item, "%s%s %s", *len ? "  " : "", k, b->hint);
    int iw = utf8_width(item);
    if (*w + iw > width || *len + (int)strlen(item) + 1 > n) return 0;
    memcpy(buf + *len, item, strlen(item) + 1);
    *len += (int)strlen(item);
    *w += iw;
    return 1;
}

char *keys_hint_line(ViewId v, int width, char *buf, int n) {
    int len = 0, w = 0;
    if (n > 0) buf[0] = 0;
    /* "? help" first, then the view's own keys, then the other global ones. */
    for (int pass = 0; pass < 3; pass++)
        for (const Binding *b = table; b->action != A_NONE; b++) {
            if (!b->hint || !b->key_name) continue;
            int mine = pass == 0   ? b->action == A_HELP
                       : pass == 1 ? (b->views & VIEW_BIT(v)) != 0
                                   : b->views == VIEWS_ALL && b->action != A_HELP;
            if (mine && !hint_add(buf, n, &len, &w, width, b)) return buf;
        }
    return buf;
}

int keys_help(ViewId v, void (*fn)(void *user, const char *line, int heading), void *user) {
    int lines = 0;
    char line[160];
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) snprintf(line, sizeof line, "Global keys");
        else snprintf(line, sizeof line, "%s view keys", view_title(v));
        fn(user, line, 1);
        lines++;
        for (const Binding *b = table; b->action != A_NONE; b++) {
            if (!b->key_name || !b->help) continue;
            int mine = pass == 0 ? b->views == VIEWS_ALL : (b->views & VIEW_BIT(v)) != 0;
            if (!mine) continue;
            snprintf(line, sizeof line, "  %-10s %s", b->key_name, b->help);
            fn(user, line, 0);
            lines++;
        }
    }
    return lines;
}
