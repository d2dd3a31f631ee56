/* Heat-map scales, ticks and glyphs (see heat.h). */
#include "tui/heat.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void heat_scale_fit(HeatScale *s, const double *v, int64_t n, int log_scale) {
    s->log = log_scale;
    s->empty = 1;
    s->lo = s->hi = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = v[i];
        if (!isfinite(x) || (log_scale && x <= 0)) continue;
        if (s->empty) {
            s->lo = s->hi = x;
            s->empty = 0;
        } else {
            if (x < s->lo) s->lo = x;
            if (x > s->hi) s->hi = x;
        }
    }
}

double heat_scale_pos(const HeatScale *s, double v) {
    if (s->empty || !isfinite(v) || (s->log && v <= 0)) return NAN;
    double a = s->lo, b = s->hi, x = v;
    if (s->log) {
        a = log10(a);
        b = log10(b);
        x = log10(x);
    }
    if (!(b > a)) return 1.0;
    double p = (x - a) / (b - a);
    return p < 0 ? 0 : p > 1 ? 1 : p;
}

int heat_level(const HeatScale *s, double v, int n_levels) {
    double p = heat_scale_pos(s, v);
    if (isnan(p)) return -1;
    int k = (int)floor(p * n_levels);
    return k >= n_levels ? n_levels - 1 : k;
}

/* Tolerance so a tick equal to lo/hi up to rounding is kept. */
static int in_range(double t, double lo, double hi) {
    double eps = 1e-9 * fmax(fabs(lo), fabs(hi));
    return t >= lo - eps && t <= hi + eps;
}

static int ticks_log(const HeatScale *s, double *ticks, int max_ticks) {
    static const double mult[3][3] = {{1, 0, 0}, {1, 3, 0}, {1, 2, 5}};
    static const int nmult[3] = {1, 2, 3};
    int best = 0;
    for (int m = 0; m < 3; m++) {
        int n = 0;
        int e0 = (int)floor(log10(s->lo)) - 1, e1 = (int)ceil(log10(s->hi)) + 1;
        for (int e = e0; e <= e1 && n < max_ticks; e++)
            for (int k = 0; k < nmult[m] && n < max_ticks; k++) {
                double t = mult[m][k] * pow(10.0, e);
                if (in_range(t, s->lo, s->hi)) ticks[n++] = t;
            }
        best = n;
        if (n >= 2) return n;
    }
    return best;
}

static int ticks_lin(const HeatScale *s, double *ticks, int max_ticks) {
    double span = s->hi - s->lo;
    if (!(span > 0)) return 0;
    double raw = span / (max_ticks > 1 ? max_ticks - 1 : 1);
    double p = pow(10.0, floor(log10(raw)));
    double step = p;
    if (raw > 5 * p) step = 10 * p;
    else if (raw > 2 * p) step = 5 * p;
    else if (raw > p) step = 2 * p;
    int n = 0;
    for (double t = ceil(s->lo / step - 1e-9) * step; n < max_ticks && in_range(t, s->lo, s->hi); t += step)
        ticks[n++] = fabs(t) < step * 1e-9 ? 0.0 : t;
    return n;
}

int heat_ticks(const HeatScale *s, double *ticks, int max_ticks) {
    if (s->empty || max_ticks <= 0) return 0;
    int n = s->log ? ticks_log(s, ticks, max_ticks) : ticks_lin(s, ticks, max_ticks);
    if (n >= 2 || max_ticks < 2) return n;
    if (s->lo == s->hi) {
        ticks[0] = s->lo;
        return 1;
    }
    ticks[0] = s->lo;
    ticks[1] = s->hi;
    return 2;
}

char *heat_fmt_tick(double v, char *buf, size_t n) {
    double a = fabs(v);
    if (a >= 0.001 && a < 99999.5 && fabs(v - round(v * 1000) / 1000) < 1e-9 * fmax(1, a)) snprintf(buf, n, "%g", v);
    else heat_fmt(v, buf, n);
    return buf;
}

const char *heat_glyph(int level, int utf8) {
    static const char *const u[HEAT_LEVELS] = {" ", "\u2591", "\u2592", "\u2593", "\u2588"};
    static const char *const a[HEAT_LEVELS] = {" ", ".", ":", "*", "#"};
    if (level < 0) return utf8 ? "\u00b7" : "-";
    if (level >= HEAT_LEVELS) level = HEAT_LEVELS - 1;
    return utf8 ? u[level] : a[level];
}

char *heat_fmt(double v, char *buf, size_t n) {
    double a = fabs(v);
    if (isnan(v)) snprintf(buf, n, "-");
    else if (isinf(v)) snprintf(buf, n, v > 0 ? "inf" : "-inf");
    else if (a == 0) snprintf(buf, n, "0");
    else if (a >= 99999.5 || a < 0.00995) {
        /* "1.2e+06" -> "1.2e6", "9.8e-04" -> "9.8e-4": six columns at most */
        char t[32];
        snprintf(t, sizeof t, "%.1e", v);
        char *e = strchr(t, 'e');
        char *d = e + 1;
        int neg = *d == '-';
        if (*d == '+' || *d == '-') d++;
        while (*d == '0' && d[1]) d++;
        *e = 0;
        snprintf(buf, n, "%se%s%s", t, neg ? "-" : "", d);
    }
    else if (a >= 999.5) snprintf(buf, n, "%.0f", v);
    else if (a >= 99.95) snprintf(buf, n, "%.0f", v);
    else if (a >= 9.995) snprintf(buf, n, "%.1f", v);
    else if (a >= 0.9995) snprintf(buf, n, "%.2f", v);
    else snprintf(buf, n, "%.3g", v);
    return buf;
}

uint64_t heat_rebin(const uint64_t *counts, int64_t n, int64_t n_out, uint64_t *out, int64_t *first,
                    int64_t *last) {
    int64_t f = -1, l = -1;
    for (int64_t i = 0; i < n; i++)
        if (counts[i]) {
            if (f < 0) f = i;
            l = i;
        }
    for (int64_t j = 0; j < n_out; j++) out[j] = 0;
    *first = f;
    *last = l;
    if (f < 0 || n_out <= 0) return 0;
    int64_t span = l - f + 1;
    uint64_t mx = 0;
    for (int64_t i = f; i <= l; i++) {
        int64_t j = (i - f) * n_out / span;
        out[j] += counts[i];
    }
    for (int64_t j = 0; j < n_out; j++)
        if (out[j] > mx) mx = out[j];
    return mx;
}

void heat_spark(const double *v, int64_t n, int n_levels, int *levels) {
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(v[i])) {
            if (v[i] < lo) lo = v[i];
            if (v[i] > hi) hi = v[i];
        }
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) levels[i] = -1;
        else if (!(hi > lo)) levels[i] = n_levels / 2;
        else {
            int k = (int)floor((v[i] - lo) / (hi - lo) * n_levels);
            levels[i] = k >= n_levels ? n_levels - 1 : k;
        }
    }
}

const char *heat_spark_glyph(int level, int utf8) {
    static const char *const u[8] = {"\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588"};
    static const char *const a[8] = {"_", ".", "-", "=", "+", "*", "#", "@"};
    if (level < 0) return " ";
    if (level > 7) level = 7;
    return utf8 ? u[level] : a[level];
}
