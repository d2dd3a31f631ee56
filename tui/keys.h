/* The one bindings table: every key the workbench understands maps to an
 * action here, for all views or for some; the help screen and the key-hint
 * line are generated from it. Key codes are curses-free (TK_* for special
 * keys; the main loop translates curses codes). */
#ifndef QS_TUI_KEYS_H
#define QS_TUI_KEYS_H

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
    A_NONE,
    A_HELP, A_QUIT, A_VIEW_1, A_VIEW_2, A_VIEW_3, A_VIEW_4, A_VIEW_5, A_VIEW_6, A_NEXT_VIEW, A_PREV_VIEW,
    A_UP, A_DOWN, A_LEFT, A_RIGHT, A_PGUP, A_PGDN, A_HOME, A_END,
    A_ENTER, A_BACK, A_CALIB, A_EVAL, A_UNDO, A_REDO,
    A_METRIC, A_SORT, A_TOPK,                       /* activations */
    A_SENS_FMT, A_SENS_GROUP, A_SENS_MODE, A_SENS_ERR, /* sensitivity */
    A_FMT_NEXT, A_FMT_PREV, A_DIM, A_GROUP_UP, A_GROUP_DOWN, A_METHOD, A_ACTQ, A_SYM, /* plan */
    A_SCOPE, A_MARK, A_PRESET, A_WRITE_PLAN,
    A_COUNT
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
 * one; A_NONE if the key is unbound there. */
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

#endif
