/* The Plan view's curses-free layout (the codes at four abbreviation
 * levels fitted into the view's width) and the auto plan's budget input;
 * the editing itself is quant/plan_edit.h's. */
#ifndef QS_TUI_PLAN_GRID_H
#define QS_TUI_PLAN_GRID_H

#include <stddef.h>
#include <stdint.h>

#include "quant/plan_edit.h"

/* === The auto plan's budget === */

/* Parses a budget typed for the auto plan: a number of bits per weight
 * ("4.5", "4.5 bpw"; 0 < bpw <= 32) into *bpw (then *bytes = 0), or a size
 * with a unit ("210000 B", "210000 bytes", "0.21 MB", "210 kB", "1.5 GB";
 * SI units as everywhere in the workbench) into *bytes (then *bpw = 0).
 * Returns 0, or -1 with why (n bytes) saying what is wrong. */
int pe_parse_budget(const char *s, double *bpw, size_t *bytes, char *why, size_t n);

/* === Grid layout of the codes === */

/* How the Plan view fits the codes into its width: level 0 shows
 * quant/plan.h's codes in full; level 1 writes the suffixes as one letter
 * each after a single "·" (G GPTQ, A int8 activations, E fp8 activations,
 * S SmoothQuant: "I4/ic8·G·A8t" -> "I4/ic8·GA"); level 2 only marks that
 * there are suffixes ("I4/ic8+"); level 3 keeps level 2's codes with one
 * column less per cell. Columns are as wide as their longest code plus 2
 * (change marker or cursor bracket, gap; level 3: the gap only), widened
 * evenly up to 12 when room is left; when even level 3 does not fit, the
 * columns scroll. */
typedef struct PeGridFit {
    int level;                  /* 0 .. 3 */
    int label_w;                /* row labels ("L31") with margin and gap */
    int col_w[PLAN_NPROJ];      /* width of each projection column, gap included */
    int first_col, n_vis_cols;  /* the columns shown */
} PeGridFit;

/* Code of e at an abbreviation level (0 .. 3; 3 writes 2's) into buf (n bytes); returns buf. */
char *pe_cell_code(const PlanEntry *e, int level, char *buf, size_t n);

/* The legend line for a level ("" for 0); static string. */
const char *pe_code_legend(int level);

/* Display columns of a UTF-8 string (one per code point). */
int pe_text_width(const char *s);

/* Fits the grid of pe into `width` columns (the view's width) keeping
 * column cur_col visible; fills *f. */
void pe_grid_fit(const PlanEdit *pe, int width, int64_t cur_col, PeGridFit *f);

#endif
