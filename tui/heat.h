/* Curses-free pieces of the heat maps and charts: a value -> [0, 1] colour
 * scale (log or linear), binning into shade levels, legend ticks at round
 * numbers, the shade glyphs (Unicode or ASCII), compact number formatting,
 * histogram re-binning and sparkline levels. Drawing code only reads these. */
#ifndef QS_TUI_HEAT_H
#define QS_TUI_HEAT_H

#include <stddef.h>
#include <stdint.h>

/* Number of shade levels a heat cell can take (glyph and colour per level). */
#define HEAT_LEVELS 5

typedef struct HeatScale {
    double lo, hi;           /* range of the finite values (log: of the positive ones) */
    int log;                 /* 1: position by log10 */
    int empty;               /* 1: no usable value was seen */
} HeatScale;

/* Fits the scale to the finite values of v (n); with log_scale only values
 * > 0 count. NaN entries are skipped (they are "no data" cells). */
void heat_scale_fit(HeatScale *s, const double *v, int64_t n, int log_scale);

/* Position of v on the scale in [0, 1] (clamped), or NaN when v is not
 * finite, or not positive on a log scale, or the scale is empty. A scale
 * whose lo == hi puts every value at 1. */
double heat_scale_pos(const HeatScale *s, double v);

/* Shade level of v in [0, n_levels - 1], or -1 for a missing value. */
int heat_level(const HeatScale *s, double v, int n_levels);

/* Legend ticks at round numbers inside [lo, hi], ascending: log scale ->
 * powers of ten, or 1/2/5 multiples when fewer than two powers fit; linear ->
 * multiples of a 1/2/5 step. Falls back to lo and hi themselves. Returns the
 * count written (<= max_ticks). */
int heat_ticks(const HeatScale *s, double *ticks, int max_ticks);

/* Glyph (static string) of a shade level: " ", "░", "▒", "▓", "█" with
 * utf8, else " ", ".", ":", "*", "#"; level -1 (missing) is "·" / "-". */
const char *heat_glyph(int level, int utf8);

/* Formats v compactly in at most 6 columns ("0.0123", "7.33", "105", "1.2e4", "9.8e-4",
 * "-" for NaN); writes into buf (n >= 16 advised) and returns buf. */
char *heat_fmt(double v, char *buf, size_t n);

/* Formats a legend tick: round numbers plainly ("3", "10", "0.01"), others
 * as heat_fmt. Returns buf. */
char *heat_fmt_tick(double v, char *buf, size_t n);

/* Sums counts (n bins) into n_out coarser bins covering [first, last] where
 * first/last are the first and last non-empty bins; out (n_out) receives the
 * sums; first and last receive the source range (both -1 when all are empty).
 * Returns the largest coarse count. */
uint64_t heat_rebin(const uint64_t *counts, int64_t n, int64_t n_out, uint64_t *out, int64_t *first,
                    int64_t *last);

/* Sparkline levels (0..n_levels-1) of v (n) scaled between its finite
 * min and max (all equal -> middle level); NaN -> -1. */
void heat_spark(const double *v, int64_t n, int n_levels, int *levels);

/* Sparkline glyph of a level out of 8: "▁".."█" with utf8, else "_.-=+*#@". */
const char *heat_spark_glyph(int level, int utf8);

#endif
