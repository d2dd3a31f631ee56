/* Results of the evaluations of a session: the rows of the Evaluate view's
 * table, their sort orders, the Pareto front of quality against size and the
 * scatter plot's cell mapping. Curses-free. */
#ifndef QS_TUI_RESULTS_H
#define QS_TUI_RESULTS_H

#include <stddef.h>
#include <stdint.h>

/* === Evaluate view === */

typedef struct EvalRow {
    int64_t id;              /* 1, 2, ... in evaluation order */
    char label[64];          /* plan name (+ edits) */
    double ppl, ppl_base, dppl;
    double kld_mean, kld_p99, top1;
    double bpw;
    size_t bytes;
    double tps;              /* decode tokens/s (NaN if not measured) */
    int cancelled;           /* stopped early: the values cover the chunks done */
    int other_text;          /* (reopened session) evaluated on another text or context length:
                                listed, never compared */
    int front;               /* on the Pareto front (set by the view from vm_pareto) */
} EvalRow;

typedef enum { ES_ID, ES_PPL, ES_KLD, ES_TOP1, ES_BPW, ES_BYTES, ES_TPS, ES_COUNT } EvalSort;

/* Column name of a sort key ("#", "PPL", "KLD", "top-1", "bpw", "MB", "tok/s"). */
const char *eval_sort_name(EvalSort s);

/* Sorts rows: # ascending, PPL/KLD/bpw/MB ascending, top-1 and tok/s
 * descending; ties by id. NaN sorts last. */
void vm_eval_sort(EvalRow *rows, int64_t n, EvalSort key);

/* Marks (on_front[i] = 1) the rows on the Pareto front of (bpw, ppl), both
 * minimized: no other row is at least as good in both and better in one.
 * Cancelled rows, other_text rows and NaN values are never on it. Returns the front size. */
int64_t vm_pareto(const EvalRow *rows, int64_t n, unsigned char *on_front);

/* Maps each row to a cell of a w × h scatter plot: x = bpw (linear between
 * the smallest and largest), y = ppl (log scale, best at the bottom row
 * h-1... worst at row 0). x/y (n) get -1 for rows not plotted. Ranges are
 * written to *bpw_lo.. so axes can be labelled. */
void vm_scatter(const EvalRow *rows, int64_t n, int w, int h, int *x, int *y, double *bpw_lo, double *bpw_hi,
                double *ppl_lo, double *ppl_hi);

#endif
