/* The bindings table (see keys.h). Order here is the order in the help. */
#include "tui/keys.h"

#include <stdio.h>
#include <string.h>

#define V(x) VIEW_BIT(VIEW_##x)

static const Binding table[] = {
    {'?', AC_HELP, VIEWS_ALL, "?", "this help (generated from the key table)", "help"},
    {'q', AC_QUIT, VIEWS_ALL, "q", "quit (asks first while a job runs)", "quit"},
    {'1', AC_VIEW_1, VIEWS_ALL, "1", "Model view", NULL},
    {'2', AC_VIEW_2, VIEWS_ALL, "2", "Activations view (heat map of the calibration)", NULL},
    {'3', AC_VIEW_3, VIEWS_ALL, "3", "Sensitivity view (output error per format x grouping)", NULL},
    {'4', AC_VIEW_4, VIEWS_ALL, "4", "Plan view (edit the quantization plan)", NULL},
    {'5', AC_VIEW_5, VIEWS_ALL, "5", "Evaluate view (running and past evaluations)", NULL},
    {'6', AC_VIEW_6, VIEWS_ALL, "6", "Log view (what ran, when, with what settings)", NULL},
    {TK_TAB, AC_NEXT_VIEW, VIEWS_ALL, "Tab", "next view", NULL},
    {TK_BTAB, AC_PREV_VIEW, VIEWS_ALL, "Shift-Tab", "previous view", NULL},
    {TK_UP, AC_UP, VIEWS_ALL, "Up/k", "move up", NULL},
    {'k', AC_UP, VIEWS_ALL, NULL, NULL, NULL},
    {TK_DOWN, AC_DOWN, VIEWS_ALL, "Down/j", "move down", NULL},
    {'j', AC_DOWN, VIEWS_ALL, NULL, NULL, NULL},
    {TK_LEFT, AC_LEFT, VIEWS_ALL, "Left/h", "move left", NULL},
    {'h', AC_LEFT, VIEWS_ALL, NULL, NULL, NULL},
    {TK_RIGHT, AC_RIGHT, VIEWS_ALL, "Right/l", "move right", NULL},
    {'l', AC_RIGHT, VIEWS_ALL, NULL, NULL, NULL},
    {TK_PGUP, AC_PGUP, VIEWS_ALL, "PgUp", "page up", NULL},
    {TK_PGDN, AC_PGDN, VIEWS_ALL, "PgDn", "page down", NULL},
    {TK_HOME, AC_HOME, VIEWS_ALL, "Home/g", "first row", NULL},
    {TK_END, AC_END, VIEWS_ALL, "End/G", "last row", NULL},
    {'G', AC_END, VIEWS_ALL, NULL, NULL, NULL},
    {TK_ENTER, AC_ENTER, V(ACT), "Enter", "drill into the cell: channels, |x| histogram, top spikes", "detail"},
    {TK_ENTER, AC_ENTER, V(PLAN), "Enter", "apply the preset highlighted in the list (p opens it)", NULL},
    {TK_ENTER, AC_ENTER, V(EVAL), "Enter",
     "result detail: residual error per layer, error per site, times, cells that differ from the plan before", "detail"},
    {TK_ESC, AC_BACK, VIEWS_ALL, "Esc", "back out of a detail or popup; else cancel the running job", "back/cancel"},
    {'c', AC_CALIB, VIEWS_ALL, "c", "calibrate on the text (background job)", "calibrate"},
    {'e', AC_EVAL, VIEWS_ALL, "e", "evaluate the current plan (background job)", "evaluate"},
    {'C', AC_CALIB_SETTINGS, VIEWS_ALL, "C",
     "calibration settings: text, samples, sequence length, seed, mode, group, top-k, sensitivity map, H", NULL},
    {'m', AC_METRIC, V(ACT), "m", "cycle metric: max|x|, max/median, kurtosis, p99.9", "metric"},
    {'m', AC_METRIC, V(EVAL), "m", "Pareto front and scatter: KLD, PPL or top-1 misses against bpw", "metric"},
    {'r', AC_EVAL_REF, V(EVAL), "r", "reference rows (fp16/fp32) on the Pareto front and scatter or not", NULL},
    {'s', AC_SORT, V(ACT) | V(EVAL), "s", "grid: next-largest cell by the metric; detail: channel/max|x| order; results: column", "sort"},
    {'t', AC_TOPK, V(ACT), "t", "detail: cycle top-k channels shown (16, 32, 64, all)", NULL},
    {'f', AC_SENS_FMT, V(SENS), "f", "cycle weight format (int8 ... fp8-e5m2, q8_0 ... q2_k)", "format"},
    {'g', AC_SENS_GROUP, V(SENS), "g", "cycle grouping (tensor, oc, ic, oc-g, ic-g)", "grouping"},
    {'a', AC_SENS_MODE, V(SENS), "a", "AdaDim mode: per-IC vs per-OC, marking AdaDim's choice", "adadim"},
    {'w', AC_SENS_ERR, V(SENS), "w", "toggle output error / weight error", "out/weight"},
    {'g', AC_HOME, VIEWS_ALL, NULL, NULL, NULL},
    {'f', AC_FMT_NEXT, V(PLAN), "f/F", "next / previous weight format (aqlm: the method follows)", "format"},
    {'F', AC_FMT_PREV, V(PLAN), NULL, NULL, NULL},
    {'d', AC_DIM, V(PLAN), "d", "grouping dimension: oc, ic, tensor", "dim"},
    {'+', AC_GROUP_UP, V(PLAN), "+/-", "group size up / down, valid for the whole scope (0 = per-row); aqlm: g", "group"},
    {'=', AC_GROUP_UP, V(PLAN), NULL, NULL, NULL},
    {'-', AC_GROUP_DOWN, V(PLAN), NULL, NULL, NULL},
    {'m', AC_METHOD, V(PLAN), "m", "method: rtn, gptq, adadim", "method"},
    {'x', AC_AQLM_M_UP, V(PLAN), "x/X", "aqlm: codebooks M up / down (1..4, M*B <= 32)", NULL},
    {'X', AC_AQLM_M_DOWN, V(PLAN), NULL, NULL, NULL},
    {'b', AC_AQLM_B_UP, V(PLAN), "b/B", "aqlm: bits per code B up / down (1..16, 2^B codewords)", NULL},
    {'B', AC_AQLM_B_DOWN, V(PLAN), NULL, NULL, NULL},
    {'a', AC_ACTQ, V(PLAN), "a", "activation format: none, int8, fp8-e4m3, fp8-e5m2", NULL},
    {'y', AC_SYM, V(PLAN), "y", "symmetric / asymmetric integers", NULL},
    {'v', AC_SCOPE, V(PLAN), "v", "edit scope: cell, row, column, marked, all", "scope"},
    {' ', AC_MARK, V(PLAN), "Space", "mark / unmark the cell (scope 'marked')", NULL},
    {'p', AC_PRESET, V(PLAN), "p", "load a preset (spike-aware uses the calibration)", "preset"},
    {'u', AC_UNDO, V(PLAN), "u", "undo the last plan edit", "undo"},
    {TK_CTRL_R, AC_REDO, V(PLAN), "Ctrl-R", "redo", "redo"},
    {'W', AC_WRITE_PLAN, V(PLAN), "W", "write the plan: asks for the path (llamacpp:, gptqmodel:, llmcompressor: PATH export)", NULL},
    {'A', AC_AUTO_PLAN, V(PLAN) | V(EVAL), "A",
     "auto plan: asks for a budget (bpw or B/kB/MB; the editor plan's size offered), proposes the plan with the least "
     "predicted KLD and lists under the grid why each cell got its entry (Esc closes the list)", "auto"},
    {'T', AC_SPEED, V(SENS) | V(PLAN), "T",
     "time the kernels: this machine's speed table for the model's shapes (every map format and grouping, the "
     "plan's entries), shown beside the errors and as the plan's tok/s; cached per machine", "time kernels"},
    {' ', AC_MARK, V(EVAL), "Space", "mark / unmark the result (two marked: d diffs them)", "mark"},
    {'d', AC_DIFF, V(EVAL), "d", "diff the two marked results (or the marked one and the cursor's): cells, dbpw, dKLD, dtop-1", "diff"},
    {'L', AC_LOAD_PLAN, V(EVAL), "L", "load the result's plan into the Plan editor (u there undoes; recorded in the session)", "load plan"},
    {'G', AC_ADD_GGUF, V(EVAL), "G",
     "add a shipped GGUF of this model (qscope export's, llama-quantize's) as a result: asks for its path, evaluates "
     "it with the plans' protocol", "gguf"},
    {'o', AC_SETTINGS, V(PLAN), "o", "settings of the cursor cell for the scope: activation granularity/scales/skip-first, SmoothQuant alpha, GPTQ damp/act-order/block", NULL},
    {':', AC_FMT_TYPE, V(PLAN), ":", "type the format for the scope (int4, int4/ic64, fp8-e4m3, q4_0, aqlm ...)", NULL},
    {0, AC_NONE, 0, NULL, NULL, NULL},
};

const Binding *keys_table(int *n) {
    if (n) *n = (int)(sizeof table / sizeof table[0]) - 1;
    return table;
}

Action keys_lookup(ViewId v, int key) {
    Action global = AC_NONE;
    for (const Binding *b = table; b->action != AC_NONE; b++) {
        if (b->key != key) continue;
        if (b->views == VIEWS_ALL) {
            if (global == AC_NONE) global = b->action;
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
        for (const Binding *b = table; b->action != AC_NONE; b++) {
            if (!b->hint || !b->key_name) continue;
            int mine = pass == 0   ? b->action == AC_HELP
                       : pass == 1 ? (b->views & VIEW_BIT(v)) != 0
                                   : b->views == VIEWS_ALL && b->action != AC_HELP;
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
        int any = 0;
        for (const Binding *b = table; b->action != AC_NONE; b++) {
            if (!b->key_name || !b->help) continue;
            int mine = pass == 0 ? b->views == VIEWS_ALL : (b->views & VIEW_BIT(v)) != 0;
            if (!mine) continue;
            snprintf(line, sizeof line, "  %-10s %s", b->key_name, b->help);
            fn(user, line, 0);
            lines++;
            any++;
        }
        if (pass == 1 && !any) {
            fn(user, "  (none besides the global keys)", 0);
            lines++;
        }
    }
    return lines;
}

/* Copies s into out (n bytes) with '|' escaped for a Markdown table cell. */
static void md_escape(const char *s, char *out, size_t n) {
    size_t k = 0;
    for (; *s && k + 3 < n; s++) {
        if (*s == '|') out[k++] = '\\';
        out[k++] = *s;
    }
    out[k] = 0;
}

int keys_markdown(void (*fn)(void *user, const char *line), void *user) {
    int lines = 2;
    fn(user, "| key | where | action |");
    fn(user, "| --- | --- | --- |");
    for (const Binding *b = table; b->action != AC_NONE; b++) {
        if (!b->key_name || !b->help) continue;
        char where[96] = "";
        if (b->views == VIEWS_ALL) snprintf(where, sizeof where, "everywhere");
        else {
            size_t len = 0;
            for (int v = 0; v < VIEW_COUNT; v++)
                if (b->views & VIEW_BIT(v) && len < sizeof where)
                    len += (size_t)snprintf(where + len, sizeof where - len, "%s%s", len ? ", " : "", view_title((ViewId)v));
        }
        char key[48], help[256], line[400];
        md_escape(b->key_name, key, sizeof key);
        md_escape(b->help, help, sizeof help);
        snprintf(line, sizeof line, "| `%s` | %s | %s |", key, where, help);
        fn(user, line);
        lines++;
    }
    return lines;
}

int view_move(Action act, int64_t *cur, int64_t n, int64_t page) {
    int64_t c = *cur;
    switch (act) {
    case AC_UP: c--; break;
    case AC_DOWN: c++; break;
    case AC_PGUP: c -= page > 1 ? page : 1; break;
    case AC_PGDN: c += page > 1 ? page : 1; break;
    case AC_HOME: c = 0; break;
    case AC_END: c = n - 1; break;
    default: return 0;
    }
    if (c >= n) c = n - 1;
    if (c < 0) c = 0;
    *cur = c;
    return 1;
}
