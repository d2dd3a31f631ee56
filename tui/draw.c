/* Curses drawing helpers (see draw.h). */
#define NCURSES_WIDECHAR 1
#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#include <curses.h>

#include "tui/draw.h"
#include "tui/layout.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* One row per role: colours (fg, bg, extra attribute) and the monochrome attribute. */
static const struct {
    short fg, bg;
    int attr;
    int mono;
} theme[C_COUNT] = {
    [C_NORMAL] = {-1, -1, 0, 0},
    [C_TITLE] = {COLOR_BLACK, COLOR_CYAN, 0, A_REVERSE},
    [C_TAB] = {-1, -1, 0, 0},
    [C_TAB_ACTIVE] = {COLOR_BLACK, COLOR_YELLOW, A_BOLD, A_REVERSE | A_BOLD},
    [C_HINT] = {COLOR_CYAN, -1, 0, A_DIM},
    [C_MSG] = {COLOR_GREEN, -1, 0, 0},
    [C_ERROR] = {COLOR_WHITE, COLOR_RED, A_BOLD, A_BOLD | A_REVERSE},
    [C_CURSOR] = {COLOR_BLACK, COLOR_WHITE, A_BOLD, A_REVERSE},
    [C_HEADER] = {COLOR_YELLOW, -1, A_BOLD, A_BOLD},
    [C_DIM] = {COLOR_BLUE, -1, A_BOLD, A_DIM},
    [C_GOOD] = {COLOR_GREEN, -1, A_BOLD, A_BOLD},
    [C_WARN] = {COLOR_YELLOW, -1, A_BOLD, A_BOLD},
    [C_BAR] = {COLOR_GREEN, -1, 0, 0},
    [C_MARK] = {COLOR_MAGENTA, -1, A_BOLD, A_UNDERLINE},
    [C_CHANGED] = {COLOR_YELLOW, -1, A_BOLD, A_BOLD},
    [C_FRONT] = {COLOR_GREEN, -1, A_BOLD, A_BOLD},
    [C_POPUP] = {COLOR_WHITE, COLOR_BLUE, 0, 0},
    [C_HEAT0] = {COLOR_WHITE, COLOR_BLUE, 0, 0},
    [C_HEAT1] = {COLOR_BLACK, COLOR_CYAN, 0, 0},
    [C_HEAT2] = {COLOR_BLACK, COLOR_GREEN, 0, 0},
    [C_HEAT3] = {COLOR_BLACK, COLOR_YELLOW, 0, 0},
    [C_HEAT4] = {COLOR_WHITE, COLOR_RED, A_BOLD, A_BOLD},
    [C_MISSING] = {COLOR_BLUE, -1, 0, A_DIM},
};

static int use_colors, use_utf8;

void draw_init(int colors, int utf8) {
    use_colors = colors;
    use_utf8 = utf8;
    if (!colors) return;
    start_color();
    use_default_colors();
    for (int r = 1; r < C_COUNT; r++) init_pair((short)r, theme[r].fg, theme[r].bg);
}

int draw_attr(ColorRole r) {
    if ((unsigned)r >= C_COUNT) r = C_NORMAL;
    if (!use_colors) return theme[r].mono;
    return (r == C_NORMAL ? 0 : (int)COLOR_PAIR(r)) | theme[r].attr;
}

ColorRole draw_heat_role(int level) {
    if (level < 0) return C_MISSING;
    if (level > 4) level = 4;
    return (ColorRole)(C_HEAT0 + level);
}

int draw_utf8(void) { return use_utf8; }

int draw_width(const char *s) {
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

int draw_str(int y, int x, int w, ColorRole r, const char *s) {
    if (w <= 0 || y < 0 || x < 0) return 0;
    /* without UTF-8 every glyph goes out as its one-column ASCII fallback */
    char ascii[1024];
    if (!use_utf8) {
        const char *p = s;
        while (*p && (unsigned char)*p < 0x80) p++;
        if (*p) s = layout_ascii(s, ascii, sizeof ascii);
    }
    /* Cut at w code points (never inside a UTF-8 sequence). */
    size_t i = 0;
    int cols = 0;
    while (s[i] && cols < w) {
        i++;
        while (s[i] && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
        cols++;
    }
    int a = draw_attr(r);
    attron(a);
    mvaddnstr(y, x, s, (int)i);
    attroff(a);
    return cols;
}

int draw_text(int y, int x, int w, ColorRole r, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return draw_str(y, x, w, r, buf);
}

void draw_fill(const Rect *rc, ColorRole r) {
    int a = draw_attr(r);
    attron(a);
    for (int y = rc->y; y < rc->y + rc->h; y++) mvhline(y, rc->x, ' ', rc->w);
    attroff(a);
}

void draw_bar(int y, int x, int w, double frac, ColorRole r) {
    if (w <= 0) return;
    if (!(frac >= 0)) frac = 0;
    if (frac > 1) frac = 1;
    int eighths = (int)(frac * w * 8 + 0.5);
    static const char *const part[8] = {"", "\u258f", "\u258e", "\u258d", "\u258c", "\u258b", "\u258a", "\u2589"};
    move(y, x);
    int a = draw_attr(r);
    attron(a);
    int col = 0;
    for (; col < eighths / 8; col++) addstr(use_utf8 ? "\u2588" : "#");
    if (col < w && eighths % 8) {
        addstr(use_utf8 ? part[eighths % 8] : "#");
        col++;
    }
    attroff(a);
    int d = draw_attr(C_DIM);
    attron(d);
    for (; col < w; col++) addstr(use_utf8 ? "\u2591" : ".");
    attroff(d);
}

void draw_box(const Rect *rc, const char *title) {
    draw_fill(rc, C_POPUP);
    int a = draw_attr(C_POPUP);
    attron(a);
    if (use_utf8) {
        for (int x = rc->x + 1; x < rc->x + rc->w - 1; x++) {
            mvaddstr(rc->y, x, "\u2500");
            mvaddstr(rc->y + rc->h - 1, x, "\u2500");
        }
        for (int y = rc->y + 1; y < rc->y + rc->h - 1; y++) {
            mvaddstr(y, rc->x, "\u2502");
            mvaddstr(y, rc->x + rc->w - 1, "\u2502");
        }
        mvaddstr(rc->y, rc->x, "\u250c");
        mvaddstr(rc->y, rc->x + rc->w - 1, "\u2510");
        mvaddstr(rc->y + rc->h - 1, rc->x, "\u2514");
        mvaddstr(rc->y + rc->h - 1, rc->x + rc->w - 1, "\u2518");
    } else {
        for (int x = rc->x; x < rc->x + rc->w; x++) {
            mvaddch(rc->y, x, '-');
            mvaddch(rc->y + rc->h - 1, x, '-');
        }
        for (int y = rc->y + 1; y < rc->y + rc->h - 1; y++) {
            mvaddch(y, rc->x, '|');
            mvaddch(y, rc->x + rc->w - 1, '|');
        }
    }
    attroff(a);
    if (title) draw_text(rc->y, rc->x + 2, rc->w - 4, C_POPUP, " %s ", title);
}
