/* Curses-free view models: the numbers each view shows, computed from the
 * model, the calibration stats and the evaluation results. Drawing code
 * reads these and never computes a statistic itself. (The Evaluate view's
 * rows, which need no calibration, are tui/results.h's.) */
#ifndef QS_TUI_VMODEL_H
#define QS_TUI_VMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "analysis/calib.h"
#include "analysis/sensitivity.h"
#include "core/status.h"
#include "model/model.h"

/* === Model view === */

typedef struct KindRow {
    char kind[16];           /* "embedding", "attention", "ffn", "norm", "output" */
    int64_t n_tensors;
    int64_t params;
    size_t bytes;            /* bytes in the file */
} KindRow;

/* Parameters and file bytes per tensor kind, in first-seen order; returns the
 * number of rows (<= max). */
int vm_model_kinds(const Model *m, KindRow *rows, int max);

typedef struct DtypeRow {
    char name[16];           /* ggml type name ("F32", "Q4_0") */
    int64_t n_tensors;
    int64_t params;
} DtypeRow;

/* Tensors per storage type, in first-seen order; returns the row count. */
int vm_model_dtypes(const Model *m, DtypeRow *rows, int max);

/* === Activations view === */

typedef enum { AM_MAX, AM_RATIO, AM_KURT, AM_P999, AM_COUNT } ActMetric;

/* "max|x|", "max/median", "kurtosis", "p99.9". */
const char *act_metric_name(ActMetric m);

/* The metric of (layer, tap) from cs: max|x|; max|x| / median|x| (median from
 * the histogram; NaN when the median is 0); Pearson kurtosis; the 99.9th
 * percentile of |x|. NaN when the tap saw no rows. */
double vm_act_value(const CalibStats *cs, int64_t layer, TapPoint t, ActMetric m);

/* Spike-aware sites from cs's ranking: the k best projection inputs as plan
 * patterns ("0.down", "2.gate_up") into sites (k rows of 16 bytes).
 * Returns the count written. */
int vm_spike_sites(const CalibStats *cs, int k, char (*sites)[16], Err *err);

/* Fills grid (n_layers * TAP_COUNT, [layer * TAP_COUNT + tap]) with metric m. */
void vm_act_grid(const CalibStats *cs, ActMetric m, double *grid);

/* Channel order for the drill-down bar chart: by_value = 1 sorts channels by
 * max|x| descending (ties: lower channel first), 0 keeps channel order.
 * idx (ts->width) receives channel indices. */
void vm_channel_order(const TapStats *ts, int by_value, int64_t *idx);

/* === Sensitivity view === */

/* The value a sensitivity cell shows: relative output error (out = 1, else
 * weight error) of (layer, proj) under format index fmt (< SENS_NFMT) and
 * grouping g. NaN when not available. */
double vm_sens_value(const SensMap *sm, int64_t layer, int proj, int fmt, SensGroup g, int out);

/* AdaDim mode: the error of the dimension AdaDim picks between per-IC and
 * per-OC (grouped = 1: ic-g vs oc-g) and that choice in *dim (GROUP_OC or
 * GROUP_IC; GROUP_TENSOR when neither is available, then NaN). */
double vm_sens_adadim(const SensMap *sm, int64_t layer, int proj, int fmt, int grouped, int out, GroupDim *dim);

/* Bytes for the screen in the one unit the workbench uses, SI: "1.19 MB" is
 * 1.19·10⁶ bytes everywhere (the Model view, the budget bar, the results),
 * "131.1 kB", "2.54 GB", "512 B". Into buf (n bytes). */
void vm_fmt_bytes(size_t b, char *buf, size_t n);

/* A kernel time for the screen in at most 6 columns, ASCII: "812ns", "38us",
 * "4.2us", "1.3ms", "2.10s"; "-" for a time that is not known (<= 0 or NaN).
 * Into buf (n bytes); returns buf. */
char *vm_fmt_secs(double s, char *buf, size_t n);

#endif
