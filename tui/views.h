/* The views behind one small ops table. enter/leave run when the view is
 * switched to/from; draw only reads the App; key changes state for an action
 * and returns R_* flags (R_UNHANDLED lets the main loop try the global
 * meaning). Only the main loop calls draw. */
#ifndef QS_TUI_VIEWS_H
#define QS_TUI_VIEWS_H

#include "tui/app.h"
#include "tui/heat.h"
#include "tui/layout.h"

typedef struct ViewOps {
    void (*enter)(App *a);
    void (*draw)(const App *a, const Layout *l);
    int (*key)(App *a, Action act);
    void (*leave)(App *a);
    int (*side)(const App *a, int cols); /* 1: the view wants the side panel now (cols wide terminal) */
} ViewOps;

extern const ViewOps view_model_ops; /* view_model.c */
extern const ViewOps view_act_ops;   /* view_act.c */
extern const ViewOps view_sens_ops;  /* view_sens.c */
extern const ViewOps view_plan_ops;  /* view_plan.c */
extern const ViewOps view_eval_ops;  /* view_eval.c */
extern const ViewOps view_log_ops;   /* view_model.c */

/* The calibration settings screen (view_calibset.c), over any view while
 * App.cset.open: drawn after the view; its keys come first. */
void calibset_draw(const App *a, const Layout *l);
int calibset_key(App *a, int key, Action act);

/* Shared drawing pieces of the heat-map views (view_act.c). */

/* "No calibration yet - press c" with what needs it, in area r. */
void view_no_calib(const App *a, const Rect *r, const char *what);

/* A heat cell of w columns at (y, x): shade glyphs then the number (plus
 * suffix, may be NULL), in the colour of level; cursor = highlighted. */
void view_heat_cell(int y, int x, int w, int level, double v, int cursor, const char *suffix);

/* A legend at (y, x) over 3 lines: title, a gradient across the scale, tick
 * marks and their labels at round numbers (heat_ticks). */
void view_legend(int y, int x, int w, const HeatScale *s, const char *title);

/* Under a grid of n_rows layers and n_cols columns that does not fit, says
 * which are shown ("(layers 8-27 of 32, j/k scroll; columns 1-5 of 7, h/l)"),
 * as the Plan view does; draws nothing when everything fits. */
void view_grid_note(int y, int x, int w, const GridLayout *g, int64_t n_rows, int64_t n_cols);

#endif
