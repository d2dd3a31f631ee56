/* Plan editing: the plan as a grid of resolved entries (layers ×
 * projections, plus embedding and head), edit operations on a cell, row,
 * column, marked set or everything, with undo/redo, and the conversion back
 * to a quant/plan.h Plan (a default entry plus rules) that evaluation and
 * sessions consume. The workbench's Plan view edits through it (its layout
 * is tui/plan_grid.h's); replay keeps its undo history of session plans in
 * the same PlanUndo. quant/plan.h has no edit helpers of its own; these work
 * over its types. */
#ifndef QS_QUANT_PLAN_EDIT_H
#define QS_QUANT_PLAN_EDIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "quant/plan.h"

/* Undo levels the editor keeps (the oldest is dropped beyond this). */
#define PLAN_EDIT_MAX_UNDO 256

/* === Undo history === */

/* An undo/redo history of snapshots of one size (the editor's grids,
 * replay's named plans): the state before each change is pushed; undo
 * swaps the newest snapshot with the present state, redo swaps it back; a
 * new change clears redo. At most max snapshots are kept (the oldest is
 * released beyond that; max 0: no limit). Snapshots are moved in and out by value; `done`
 * releases one. */
typedef struct PlanUndo {
    size_t item;             /* snapshot size in bytes */
    int64_t max;
    void (*done)(void *snap);
    unsigned char *undo;     /* (n_undo) oldest first; owned */
    unsigned char *redo;     /* (n_redo) most recently undone last; owned */
    int64_t n_undo, n_redo, cap;
} PlanUndo;

/* An empty history of item-byte snapshots released by done. */
void plan_undo_init(PlanUndo *h, size_t item, int64_t max, void (*done)(void *snap));

/* Releases every snapshot and the stacks; safe on a zeroed one. */
void plan_undo_done(PlanUndo *h);

/* Takes *snap (the state before a change) as the newest undo step and
 * releases the redo steps. ST_ERR_NOMEM (snap released) when the stack
 * cannot grow. */
Status plan_undo_push(PlanUndo *h, void *snap, Err *err);

/* The snapshot undo (redo = 0) or redo (redo = 1) would restore, or NULL
 * when there is none; borrowed until the history changes. */
void *plan_undo_peek(const PlanUndo *h, int redo);

/* One undo (redo = 0) or redo step: *cur, the present state, goes on the
 * other stack and the restored snapshot is moved into *cur. Returns 1, or 0
 * (nothing changed) when there is nothing to undo / redo. */
int plan_undo_step(PlanUndo *h, int redo, void *cur);

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
    PlanUndo hist;           /* of PlanGrid snapshots */
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

/* Edit-only field bits beyond quant/plan.h's PF_* (for plan_edit_apply's
 * `fields`): one AQLM parameter alone, taken only by cells already in aqlm.
 * A session records them as PF_METHOD. */
enum { PE_AQLM_M = 1u << 8, PE_AQLM_B = 1u << 9, PE_AQLM_G = 1u << 10, PE_AQLM_ANY = 7u << 8 };

/* Edit-only field bit: w.sym alone, taken only by cells whose format is an
 * integer one (the `y` key: a row of int4 and fp16 cells keeps its formats).
 * A session records it as PF_FMT (per cell when the formats differ). */
enum { PE_SYM = 1u << 11 };

/* Edit-only field bits of the settings panel: one setting alone, leaving
 * the cells' formats, methods and other settings as they are. A session
 * records them as PF_ACT / PF_METHOD (per cell when the rest differs). */
enum {
    PE_ACT_GRAN = 1u << 12, PE_ACT_SCALE = 1u << 13, PE_ACT_SKIP = 1u << 14, /* PF_ACT's parts */
    PE_GPTQ = 1u << 15,     /* gptq damp / act_order / block / static_groups */
    PE_ADABASE = 1u << 16,  /* adadim_base */
    PE_ACT_PARTS = 7u << 12,
    PE_METHOD_PARTS = 3u << 15
};

/* The AQLM parameters a cell gets when its format becomes aqlm: 2x8g8 (the
 * aqlm-2x8 preset; 2 code bits per weight), with the preset's fallback where
 * g does not divide the input. */
#define PE_AQLM_DEFAULT ((AqlmParams){2, 8, 8})

/* The embedding and the output head, edited as the row under the grid. */
typedef enum { PE_END_EMBED, PE_END_OUTPUT, PE_END_COUNT } PeEnd;

/* Result of an edit: cells changed, and group sizes that had to fall back
 * because they do not divide a cell's dimension (note says which). */
typedef struct PeResult {
    int64_t changed;
    int64_t fallbacks;
    char note[160];
} PeResult;

/* Copies the `fields` (PF_* and PE_AQLM_* bits) of src into every cell of
 * the scope around (layer, proj) — marks (n_layers * PLAN_NPROJ, nonzero =
 * marked) is read for PE_MARKED and may be NULL otherwise. Each cell is then
 * made consistent: format aqlm forces method aqlm (with PE_AQLM_DEFAULT when
 * the cell was not aqlm) and leaving aqlm sets method rtn; group sizes that
 * do not divide a cell's grouped dimension fall back to the largest divisor
 * <= g that is a multiple of 8 (else 4), else per-channel; an AQLM group g
 * that does not divide the input falls back like the aqlm presets
 * (pe_fit_aqlm). One undo step when anything changed (nothing is pushed when
 * no cell changes). */
Status plan_edit_apply(PlanEdit *pe, PeScope scope, int64_t layer, int proj, const unsigned char *marks,
                       unsigned fields, const PlanEntry *src, PeResult *res, Err *err);

/* The embedding's or the output head's entry; borrowed until the next change. */
const PlanEntry *plan_edit_end(const PlanEdit *pe, PeEnd which);

/* Like plan_edit_apply for the embedding or the output head alone (PF_FMT,
 * PF_GROUP only: both are round-to-nearest without activation quantization).
 * Group sizes fall back as for the grid (shape vocab x dim). */
Status plan_edit_apply_end(PlanEdit *pe, PeEnd which, unsigned fields, const PlanEntry *src, PeResult *res, Err *err);

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

/* Copies the PF_* fields of src into dst (and the PE_SYM / PE_AQLM_* bits
 * where dst's format takes them). */
void plan_entry_take(PlanEntry *dst, const PlanEntry *src, unsigned fields);

/* === Value cycling (the cursor cell's next value) === */

/* Next / previous weight format in the UI order F16 BF16 E4M3 E5M2 I8 I6 I5
 * I4 I3 I2 AQLM F32 (dir = +1 / -1). */
QFormat pe_next_format(QFormat f, int dir);

/* The same for the embedding and output head: F16 BF16 E4M3 E5M2 I8 I4 F32. */
QFormat pe_next_end_format(QFormat f, int dir);

/* Next grouping dimension: oc -> ic -> tensor -> oc. */
GroupDim pe_next_dim(GroupDim d);

/* Candidate group sizes of one cell for entry e on an (n_out, n_in) matrix,
 * ascending, into opts (cap entries); returns the count. Formats with
 * scales: 0 (one scale per row / column) and every multiple of 4 below the
 * grouped dimension that divides it (for AdaDim: that divides both
 * dimensions and is below the smaller one); AQLM:
 * every g in 1..64 dividing n_in; other formats: none. */
int pe_group_options(const PlanEntry *e, int64_t n_out, int64_t n_in, int64_t *opts, int cap);

/* The group sizes +/- cycle through for an edit of the scope around (layer,
 * proj) that gives the cells src's grouping (AQLM: src's g on aqlm cells):
 * the sizes valid for every affected cell, or the cursor cell's own when
 * the common ones offer no choice (then the others fall back visibly).
 * Writes at most cap sizes into opts, ascending; returns the count. */
int pe_scope_group_options(const PlanEdit *pe, PeScope scope, int64_t layer, int proj, const unsigned char *marks,
                           const PlanEntry *src, int64_t *opts, int cap);

/* Next / previous value after g among opts (k ascending sizes); a g not in
 * the list goes to the nearest one in that direction (wrapping). */
int64_t pe_next_group(int64_t g, const int64_t *opts, int k, int dir);

/* AQLM parameters for an input of n_in following quant/preset.c's aqlm
 * presets: ap itself when its g divides n_in, else one codebook over the
 * largest g' < g dividing n_in with the same code bits (B = M·B·g'/g, 1..16)
 * into *out and returns 1, or returns -1 when none exists (the presets use
 * fp16 then); 0 when ap fits unchanged. */
int pe_fit_aqlm(const AqlmParams *ap, int64_t n_in, AqlmParams *out);

/* Next method: rtn -> gptq -> adadim -> rtn. */
QMethod pe_next_method(QMethod m);

/* Next activation format: none -> int8 -> fp8-e4m3 -> fp8-e5m2 -> none. */
ActFormat pe_next_act(ActFormat a);

/* Group size a format with scales would use along a dimension of n when g
 * is asked: g if it divides n, else the largest divisor <= g that is a
 * multiple of 8, else of 4, else 0 (per-channel). */
int64_t pe_fit_group(int64_t g, int64_t n);

#endif
