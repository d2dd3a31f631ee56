/* Curses-free plan editing for the Plan view: the plan as a grid of resolved
 * entries (layers × projections, plus embedding and head), edit operations
 * on a cell, row, column, marked set or everything, with undo/redo, and the
 * conversion back to a quant/plan.h Plan (a default entry plus rules) that
 * evaluation and sessions consume. quant/plan.h has no edit helpers of its
 * own; these work over its types. */
#ifndef QS_TUI_PLAN_EDIT_H
#define QS_TUI_PLAN_EDIT_H

#include <stdint.h>

#include "core/status.h"
#include "quant/plan.h"

/* Undo levels kept (the oldest is dropped beyond this). */
#define PLAN_EDIT_MAX_UNDO 256

typedef enum { PE_CELL, PE_ROW, PE_COL, PE_MARKED, PE_ALL, PE_SCOPE_COUNT } PeScope;

/* One full state of the grid (what undo restores). */
typedef struct PlanGrid {
    PlanEntry *cells;        /* (n_layers, PLAN_NPROJ) [layer * PLAN_NPROJ + proj]; owned */
    PlanEntry embed, output;
    char name[64];           /* where the plan came from ("fp16", "int4-rtn") */
    int64_t n_edits;         /* edits since `name` was loaded */
} PlanGrid;

typedef struct PlanEdit {
    PlanModel pm;
    int64_t n_layers;
    PlanGrid cur;
    PlanGrid *undo;          /* (n_undo) oldest first; owned */
    int64_t n_undo;
    PlanGrid *redo;          /* (n_redo) most recently undone last; owned */
    int64_t n_redo;
    uint64_t version;        /* bumped on every change (edits, undo, redo, load) */
} PlanEdit;

/* Names of the scopes: "cell", "row", "column", "marked", "all". */
const char *pe_scope_name(PeScope s);

/* Initialises pe for model shape pm with plan p resolved onto the grid
 * (p may be NULL: the fp16 preset). pe_done releases it. */
Status plan_edit_init(PlanEdit *pe, const PlanModel *pm, const Plan *p, Err *err);

/* Frees everything; safe on a zeroed PlanEdit. */
void plan_edit_done(PlanEdit *pe);

/* The entry of (layer, proj); borrowed until the next change. */
const PlanEntry *plan_edit_cell(const PlanEdit *pe, int64_t layer, int proj);

/* Replaces the whole grid with plan p resolved (a preset); undoable. */
Status plan_edit_load(PlanEdit *pe, const Plan *p, Err *err);

/* Result of an edit: cells changed, and group sizes that had to fall back
 * because they do not divide a cell's dimension (note says which). */
typedef struct PeResult {
    int64_t changed;
    int64_t fallbacks;
    char note[160];
} PeResult;

/* Copies the `fields` (PF_* bits) of src into every cell of the scope around
 * (layer, proj) — marks (n_layers * PLAN_NPROJ, nonzero = marked) is read
 * for PE_MARKED and may be NULL otherwise. Group sizes that do not divide a
 * cell's grouped dimension fall back to the largest divisor <= g that is a
 * multiple of 8 (else 4), else per-channel. One undo step when anything
 * changed (nothing is pushed when no cell changes). */
Status plan_edit_apply(PlanEdit *pe, PeScope scope, int64_t layer, int proj, const unsigned char *marks,
                       unsigned fields, const PlanEntry *src, PeResult *res, Err *err);

/* Undo / redo one step; return 1 when something was undone / redone. */
int plan_edit_undo(PlanEdit *pe);
int plan_edit_redo(PlanEdit *pe);

/* Builds the Plan the grid means: the most common projection entry becomes
 * the default, a column that is uniform otherwise becomes "*.proj", every
 * other differing cell "L.proj". *out is initialised here (plan_done it).
 * The plan resolves back to exactly the grid. */
Status plan_edit_to_plan(const PlanEdit *pe, Plan *out, Err *err);

/* Number of cells (embed/output included) whose entry differs from grid g
 * (which must have the same shape). */
int64_t plan_edit_diff(const PlanEdit *pe, const PlanGrid *g);

/* Deep copy of the current grid into *dst (dst->cells allocated; release
 * with plan_grid_done). */
Status plan_grid_copy(PlanGrid *dst, const PlanEdit *pe, Err *err);
void plan_grid_done(PlanGrid *g);

/* 1 when two entries mean the same thing (field by field). */
int plan_entry_equal(const PlanEntry *a, const PlanEntry *b);

/* Copies the PF_* fields of src into dst. */
void plan_entry_take(PlanEntry *dst, const PlanEntry *src, unsigned fields);

/* === Value cycling (the cursor cell's next value) === */

/* Next / previous weight format in the UI order F16 BF16 E4M3 E5M2 I8 I6 I5
 * I4 I3 I2 F32 (dir = +1 / -1). */
QFormat pe_next_format(QFormat f, int dir);

/* Next grouping dimension: oc -> ic -> tensor -> oc. */
GroupDim pe_next_dim(GroupDim d);

/* Next / previous group size among 0 (per-channel) and the powers of two
 * 8..1024 that divide `n` (the grouped dimension). */
int64_t pe_next_group(int64_t g, int64_t n, int dir);

/* Next method: rtn -> gptq -> adadim -> rtn. */
QMethod pe_next_method(QMethod m);

/* Next activation format: none -> int8 -> fp8-e4m3 -> fp8-e5m2 -> none. */
ActFormat pe_next_act(ActFormat a);

/* Group size a format with scales would use along a dimension of n when g
 * is asked: g if it divides n, else the largest divisor <= g that is a
 * multiple of 8, else of 4, else 0 (per-channel). */
int64_t pe_fit_group(int64_t g, int64_t n);

#endif
