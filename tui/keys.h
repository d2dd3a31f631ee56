/* The one bindings table: every key the workbench understands maps to an
 * action here, for all views or for some; the help screen and the key-hint
 * line are generated from it. Key codes are curses-free (TK_* for special
 * keys; the main loop translates curses codes). */
#ifndef QS_TUI_KEYS_H
#define QS_TUI_KEYS_H

#include <stdint.h>

/* Special keys (outside the byte range). */
enum {
    TK_ESC = 27, TK_TAB = 9, TK_ENTER = 10, TK_CTRL_R = 18,
    TK_UP = 0x10000, TK_DOWN, TK_LEFT, TK_RIGHT, TK_PGUP, TK_PGDN, TK_HOME, TK_END, TK_BTAB, TK_BACKSPACE
};

/* The views, in tab order ('1'..'6'). */
typedef enum { VIEW_MODEL, VIEW_ACT, VIEW_SENS, VIEW_PLAN, VIEW_EVAL, VIEW_LOG, VIEW_COUNT } ViewId;

#define VIEW_BIT(v) (1u << (v))
#define VIEWS_ALL 0u

typedef enum {
    AC_NONE,
    AC_HELP, AC_QUIT, AC_VIEW_1, AC_VIEW_2, AC_VIEW_3, AC_VIEW_4, AC_VIEW_5, AC_VIEW_6, AC_NEXT_VIEW, AC_PREV_VIEW,
    AC_UP, AC_DOWN, AC_LEFT, AC_RIGHT, AC_PGUP, AC_PGDN, AC_HOME, AC_END,
    AC_ENTER, AC_BACK, AC_CALIB, AC_EVAL, AC_UNDO, AC_REDO,
    AC_METRIC, AC_SORT, AC_TOPK,                       /* activations */
    AC_SENS_FMT, AC_SENS_GROUP, AC_SENS_MODE, AC_SENS_ERR, /* sensitivity */
    AC_FMT_NEXT, AC_FMT_PREV, AC_DIM, AC_GROUP_UP, AC_GROUP_DOWN, AC_METHOD, AC_ACTQ, AC_SYM, /* plan */
    AC_AQLM_M_UP, AC_AQLM_M_DOWN, AC_AQLM_B_UP, AC_AQLM_B_DOWN,
    AC_SCOPE, AC_MARK, AC_PRESET, AC_WRITE_PLAN, AC_FMT_TYPE, AC_SETTINGS,
    AC_EVAL_REF, AC_AUTO_PLAN,                         /* evaluate; auto plan */
    AC_DIFF, AC_LOAD_PLAN, AC_ADD_GGUF,                /* results: diff two, load one's plan back, a GGUF */
    AC_CALIB_SETTINGS,
    AC_SPEED,                                          /* time the kernels (the speed table) */
    AC_COUNT
} Action;

typedef struct Binding {
    int key;                 /* character or TK_* */
    Action action;
    unsigned views;          /* VIEW_BIT mask; VIEWS_ALL = every view */
    const char *key_name;    /* as shown: "?", "Tab", "Ctrl-R", "←↓↑→/hjkl" */
    const char *help;        /* one line for the help screen */
    const char *hint;        /* short label for the hint line, or NULL (not shown) */
} Binding;

/* The table (static; terminated by a {0} entry) and its length. */
const Binding *keys_table(int *n);

/* The action of key in view v: a binding for that view wins over a global
 * one; AC_NONE if the key is unbound there. */
Action keys_lookup(ViewId v, int key);

/* Name of a view ("Model", "Activations", ...). */
const char *view_title(ViewId v);

/* Writes the hint line for view v into buf (n bytes): the hinted bindings of
 * the view, then the global ones, "key label" pairs separated by two spaces,
 * stopping before `width` display columns would be exceeded. Returns buf. */
char *keys_hint_line(ViewId v, int width, char *buf, int n);

/* Help lines for view v: a heading per section ("Global keys", "<View>
 * keys"), then "  KEY  help" per binding (global ones first). Calls fn once
 * per line with the line and whether it is a heading. Returns the line count. */
int keys_help(ViewId v, void (*fn)(void *user, const char *line, int heading), void *user);

/* The key table as Markdown (the docs' and README's table): a header, then
 * "| `KEY` | where | help |" per binding with a help text, in table order
 * ("|" escaped). Calls fn once per line (no newline); returns the count. */
int keys_markdown(void (*fn)(void *user, const char *line), void *user);

/* Moves a cursor for an arrow/page action inside [0, n) (PgUp/PgDn by `page`,
 * Home/End to the ends); returns 1 if the action was a vertical move. The
 * views' one cursor rule, kept beside the bindings that name the actions. */
int view_move(Action act, int64_t *cur, int64_t n, int64_t page);

#endif
