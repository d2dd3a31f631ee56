/* Curses-free screen layout: where the title bar, tab line, main view, side
 * panel, key hints and message bar go for a terminal size, and how a labelled
 * grid (heat map, plan) fits into an area. Everything the draw code needs to
 * place text is computed here, so it can be tested at any size. */
#ifndef QS_TUI_LAYOUT_H
#define QS_TUI_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

/* Smallest terminal the workbench draws into. */
#define LAYOUT_MIN_COLS 80
#define LAYOUT_MIN_ROWS 24

typedef struct Rect {
    int x, y, w, h;
} Rect;

typedef struct Layout {
    int cols, rows;
    int too_small;           /* 1: below LAYOUT_MIN_*; only `msg` is meaningful */
    Rect title;              /* row 0: model, session, running job */
    Rect tabs;               /* row 1: view names */
    Rect body;               /* everything between tabs and hints */
    Rect main;               /* body minus the side panel (and its separator) */
    Rect side;               /* right-hand detail panel (w = 0 when none) */
    Rect hints;              /* one-line key hints */
    Rect msg;                /* message bar (last row) */
} Layout;

/* Computes the layout for a cols × rows terminal. with_side: the view wants a
 * side panel (width grows with the terminal: 28 at 80 columns, up to 40). */
void layout_screen(Layout *l, int cols, int rows, int with_side);

/* A grid of n_rows × n_cols cells with a row-label column and header lines. */
typedef struct GridLayout {
    int label_w;             /* columns of the row labels */
    int cell_w;              /* columns per cell (gap included) */
    int header_h;            /* header lines above the first row */
    int n_vis_cols;          /* columns that fit (scroll horizontally past this) */
    int first_col;           /* first visible column (keeps the cursor visible) */
    int n_vis_rows;          /* rows that fit */
    int first_row;           /* first visible row (keeps the cursor visible) */
} GridLayout;

/* Fits a grid into area: cells are cell_min..cell_max columns wide (as wide
 * as fits), rows one line each below header_h lines, with room for
 * footer_h lines below (legend). Scrolls so (cur_row, cur_col) is visible. */
void layout_grid(GridLayout *g, const Rect *area, int64_t n_rows, int64_t n_cols, int label_w, int cell_min,
                 int cell_max, int header_h, int footer_h, int64_t cur_row, int64_t cur_col);

/* First visible index of a list of n items in `visible` lines so that
 * index `cur` is shown, scrolling as little as possible from `prev_first`. */
int64_t layout_scroll(int64_t n, int64_t visible, int64_t cur, int64_t prev_first);

/* The ASCII fallback of a UTF-8 string for terminals without UTF-8 (LANG=C):
 * every code point becomes exactly one ASCII character, so widths and
 * columns stay what they are in UTF-8 ("I4/ic64·G" -> "I4/ic64.G", "│" -> "|",
 * "░▒▓█" -> ".:*#", "…" -> "~", "×" -> "x", "²" -> "2"; anything else
 * non-ASCII -> "?"). Writes at most n bytes (NUL included) into out; returns out. */
char *layout_ascii(const char *s, char *out, size_t n);

#endif
