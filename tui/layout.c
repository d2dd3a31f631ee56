/* Screen and grid layout (see layout.h). */
#include "tui/layout.h"

#include <string.h>

void layout_screen(Layout *l, int cols, int rows, int with_side) {
    *l = (Layout){0};
    l->cols = cols;
    l->rows = rows;
    l->msg = (Rect){0, rows > 0 ? rows - 1 : 0, cols, rows > 0 ? 1 : 0};
    if (cols < LAYOUT_MIN_COLS || rows < LAYOUT_MIN_ROWS) {
        l->too_small = 1;
        return;
    }
    l->title = (Rect){0, 0, cols, 1};
    l->tabs = (Rect){0, 1, cols, 1};
    l->hints = (Rect){0, rows - 2, cols, 1};
    l->body = (Rect){0, 2, cols, rows - 4};
    l->main = l->body;
    if (with_side) {
        /* 40 columns from 120 up: the Sensitivity panel's five groupings (4 + 5 x 7 + margins)
         * need them, and between 120 and 140 columns its ic-g column was cut */
        int sw = 28 + 3 * (cols - LAYOUT_MIN_COLS) / 10;
        if (sw > 40) sw = 40;
        l->side = (Rect){cols - sw, l->body.y, sw, l->body.h};
        l->main.w = cols - sw - 1; /* one column for the separator */
    }
}

int64_t layout_scroll(int64_t n, int64_t visible, int64_t cur, int64_t prev_first) {
    if (visible <= 0 || n <= visible) return 0;
    int64_t first = prev_first;
    if (cur < first) first = cur;
    if (cur >= first + visible) first = cur - visible + 1;
    if (first > n - visible) first = n - visible;
    if (first < 0) first = 0;
    return first;
}

void layout_grid(GridLayout *g, const Rect *area, int64_t n_rows, int64_t n_cols, int label_w, int cell_min,
                 int cell_max, int header_h, int footer_h, int64_t cur_row, int64_t cur_col) {
    *g = (GridLayout){0};
    g->label_w = label_w;
    g->header_h = header_h;
    int avail = area->w - label_w;
    if (avail < cell_min) avail = cell_min;
    int cw = n_cols > 0 ? (int)(avail / n_cols) : cell_max;
    if (cw > cell_max) cw = cell_max;
    if (cw < cell_min) cw = cell_min;
    g->cell_w = cw;
    int vis_c = avail / cw;
    if (vis_c > n_cols) vis_c = (int)n_cols;
    if (vis_c < 1) vis_c = 1;
    g->n_vis_cols = vis_c;
    g->first_col = (int)layout_scroll(n_cols, vis_c, cur_col, 0);
    int vis_r = area->h - header_h - footer_h;
    if (vis_r < 1) vis_r = 1;
    if (vis_r > n_rows) vis_r = (int)n_rows;
    g->n_vis_rows = vis_r;
    g->first_row = (int)layout_scroll(n_rows, vis_r, cur_row, 0);
}

char *layout_ascii(const char *s, char *out, size_t n) {
    static const struct {
        const char *u;
        char a;
    } map[] = {
        {"\u00b7", '.'}, {"\u2026", '~'}, {"\u2502", '|'}, {"\u2500", '-'}, {"\u00d7", 'x'}, {"\u2016", '|'},
        {"\u00b2", '2'}, {"\u00b3", '3'}, {"\u1d40", '\''}, {"\u0394", 'd'}, {"\u2264", '<'}, {"\u2265", '>'},
        {"\u2192", '>'}, {"\u2190", '<'}, {"\u00b1", '+'}, {"\u2591", '.'}, {"\u2592", ':'}, {"\u2593", '*'},
        {"\u2588", '#'}, {"\u258f", '#'}, {"\u258e", '#'}, {"\u258d", '#'}, {"\u258c", '#'}, {"\u258b", '#'},
        {"\u258a", '#'}, {"\u2589", '#'}, {"\u2191", '^'}, {"\u2193", 'v'}, {"\u03b1", 'a'}, {"\u00b5", 'u'},
        {"\u2014", '-'}, {"\u2013", '-'}, {"\u2713", 'v'}, {"\u00b0", 'o'}, {"\u2070", '0'}, {"\u00b9", '1'},
        {"\u2074", '4'}, {"\u2076", '6'}, {"\u2212", '-'}, {"\u2248", '~'}, {"\u25b2", '^'}, {"\u25bc", 'v'},
    };
    size_t o = 0;
    if (!n) return out;
    while (*s && o + 1 < n) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x80) {
            out[o++] = *s++;
            continue;
        }
        size_t len = 1;
        while (s[len] && ((unsigned char)s[len] & 0xC0) == 0x80) len++;
        char a = '?';
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (strlen(map[i].u) == len && memcmp(map[i].u, s, len) == 0) {
                a = map[i].a;
                break;
            }
        out[o++] = a;
        s += len;
    }
    out[o] = 0;
    return out;
}
