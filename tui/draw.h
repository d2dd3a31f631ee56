/* Curses drawing helpers shared by the views: the semantic colour table
 * (with a monochrome fallback), clipped text output measured in display
 * columns, and small widgets (bars, boxes). Only the main thread calls these. */
#ifndef QS_TUI_DRAW_H
#define QS_TUI_DRAW_H

#include "tui/layout.h"

/* Semantic colours: views name a role, never a colour. */
typedef enum {
    C_NORMAL, C_TITLE, C_TAB, C_TAB_ACTIVE, C_HINT, C_MSG, C_ERROR, C_CURSOR, C_HEADER, C_DIM,
    C_GOOD, C_WARN, C_BAR, C_MARK, C_CHANGED, C_FRONT, C_POPUP,
    C_HEAT0, C_HEAT1, C_HEAT2, C_HEAT3, C_HEAT4, C_MISSING,
    C_COUNT
} ColorRole;

/* Sets up colour pairs when the terminal has colours (colors = 1), else the
 * monochrome attributes are used. */
void draw_init(int colors, int utf8);

/* Attribute (colour pair + bold/reverse...) of a role. */
int draw_attr(ColorRole r);

/* Role of a heat level (-1 = missing). */
ColorRole draw_heat_role(int level);

/* Prints at (y, x) at most w display columns of printf-formatted text in
 * role r; returns the columns written. UTF-8 aware (one column per code point). */
int draw_text(int y, int x, int w, ColorRole r, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Same with a plain string (no formatting). */
int draw_str(int y, int x, int w, ColorRole r, const char *s);

/* Fills a rectangle with spaces in role r. */
void draw_fill(const Rect *rc, ColorRole r);

/* A horizontal bar of `w` columns filled to frac (0..1) in role r; the rest
 * shaded lightly. Unicode blocks with eighths when utf8, else '#' and '.'. */
void draw_bar(int y, int x, int w, double frac, ColorRole r);

/* A framed box with a title (for popups and the help screen); clears inside. */
void draw_box(const Rect *rc, const char *title);

/* Display columns of a UTF-8 string (one per code point). */
int draw_width(const char *s);

/* 1 when Unicode glyphs are in use. */
int draw_utf8(void);

#endif
