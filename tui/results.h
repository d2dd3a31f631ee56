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
    double tps;              /* single-token decode tokens/s (NaN if not measured) */
    double quant_s;          /* wall seconds quantizing the plan (NaN if not recorded) */
    double kld_pred;         /* the planner's loss model's KLD for this plan (NaN: no site
                                scales for this text / ctx, or no sensitivity map) */
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

/* What the Pareto front and the scatter rank against bpw (all minimised):
 * mean KLD, perplexity, or top-1 misses (1 - top-1 agreement). */
typedef enum { EM_KLD, EM_PPL, EM_TOP1_MISS, EM_COUNT } EvalMetric;

/* "KLD", "PPL", "top-1 miss". */
const char *eval_metric_name(EvalMetric m);

/* The row's value of m (NaN when not available). */
double vm_metric(const EvalRow *r, EvalMetric m);

/* A reference row: no quantized linear weight (bpw >= 16: fp16/bf16/fp32
 * everywhere); the Pareto front and the scatter leave these out unless
 * with_ref is set. */
int vm_is_reference(const EvalRow *r);

/* Marks (on_front[i] = 1) the rows on the Pareto front of (bpw, metric m),
 * both minimized: no other row is at least as good in both and better in one.
 * Cancelled rows, other_text rows, NaN values and (without with_ref)
 * reference rows are never on it. Returns the front size. */
int64_t vm_pareto(const EvalRow *rows, int64_t n, EvalMetric m, int with_ref, unsigned char *on_front);

/* Maps each row to a cell of a w × h scatter plot: x = bpw (linear between
 * the smallest and largest), y = metric m on a log scale (best at the bottom
 * row h-1, worst at row 0); rows with a value <= 0 (log undefined: the fp32
 * reference's KLD) are not plotted. x/y (n) get -1 for rows not plotted.
 * Ranges are written to *bpw_lo.. so axes can be labelled. */
void vm_scatter(const EvalRow *rows, int64_t n, EvalMetric m, int with_ref, int w, int h, int *x, int *y,
                double *bpw_lo, double *bpw_hi, double *v_lo, double *v_hi);

/* === Table layout === */

/* Optional columns, dropped (quantization seconds first, then pred, then
 * p99) when the width cannot hold them beside a plan column of 11
 * characters: numbers are never cut. */
enum { EVC_PRED = 1u << 0, EVC_P99 = 1u << 1, EVC_QSEC = 1u << 2 };

/* Chooses the columns for a table width (display columns) and returns the
 * plan column's width (>= 11, at most 32; the fixed columns take the rest).
 * have_pred: some row has a prediction (the pred column is wanted); want_pw:
 * the widest row label (vm_eval_label_width): the quantization-time column
 * also gives way when the labels would otherwise be cut. */
int vm_eval_layout(int width, int have_pred, int want_pw, unsigned *cols);

/* Width of the widest row label as vm_eval_row prints it (with its
 * "(other text) " / "(partial) " prefixes). */
int vm_eval_label_width(const EvalRow *rows, int64_t n);

/* Width of the header / a row for plan width pw and columns cols. */
int vm_eval_width(int pw, unsigned cols);

/* The header line and one row for plan width pw and columns cols, into buf
 * (n bytes). Every column has a fixed width: a number is printed with as
 * many decimals as its column holds (a size of 180.498 MB in 7 columns, a
 * PPL of 12345.6 with one decimal), so the columns line up whatever the
 * values. A row starts with the id, '*' on the Pareto front, the plan label
 * (markers first: "(other text) ", "(partial) "); pred is k * kld_pred ("-"
 * when NaN); "dec t/s" is the single-token decode rate; "quant s" the
 * seconds the plan took to quantize. */
void vm_eval_header(char *buf, size_t n, int pw, unsigned cols);
void vm_eval_row(const EvalRow *r, double k, char *buf, size_t n, int pw, unsigned cols);

/* Writes v right-aligned in exactly width characters with at most max_dec
 * decimals (fewer when it would not fit; then an exponent form); sign: '+'
 * before positive values. NaN prints "-". Returns buf (width + 1 bytes). */
char *vm_fit_num(char *buf, int width, double v, int max_dec, int sign);

#endif
