/* View models (see vmodel.h). */
#include "tui/vmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/spikes.h"
#include "quant/ggml_type.h"

int vm_model_kinds(const Model *m, KindRow *rows, int max) {
    int n = 0;
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const TensorEntry *t = &m->tensors[i];
        const char *k = t->kind ? t->kind : "?";
        int j = 0;
        while (j < n && strcmp(rows[j].kind, k) != 0) j++;
        if (j == n) {
            if (n == max) continue;
            memset(&rows[n], 0, sizeof rows[n]);
            snprintf(rows[n].kind, sizeof rows[n].kind, "%s", k);
            n++;
        }
        rows[j].n_tensors++;
        rows[j].params += t->ne[0] * t->ne[1];
        rows[j].bytes += t->file_bytes;
    }
    return n;
}

int vm_model_dtypes(const Model *m, DtypeRow *rows, int max) {
    int n = 0;
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const TensorEntry *t = &m->tensors[i];
        const GgmlTypeTraits *tr = ggml_type_traits(t->src_type);
        char name[16];
        snprintf(name, sizeof name, "%s", tr ? tr->name : "?");
        int j = 0;
        while (j < n && strcmp(rows[j].name, name) != 0) j++;
        if (j == n) {
            if (n == max) continue;
            memset(&rows[n], 0, sizeof rows[n]);
            snprintf(rows[n].name, sizeof rows[n].name, "%s", name);
            n++;
        }
        rows[j].n_tensors++;
        rows[j].params += t->ne[0] * t->ne[1];
    }
    return n;
}

const char *act_metric_name(ActMetric m) {
    static const char *const n[AM_COUNT] = {"max|x|", "max/median", "kurtosis", "p99.9"};
    return (unsigned)m < AM_COUNT ? n[m] : "?";
}

double vm_act_value(const CalibStats *cs, int64_t layer, TapPoint t, ActMetric m) {
    const TapStats *ts = calib_tap(cs, layer, t);
    if (!ts || ts->n_rows == 0) return NAN;
    switch (m) {
    case AM_MAX: return ts->absmax;
    case AM_RATIO: {
        double med = hist_percentile(ts->hist, 0.5, ts->absmax);
        return med > 0 ? ts->absmax / med : NAN;
    }
    case AM_KURT: return moments_kurtosis(&ts->mom);
    case AM_P999: return hist_percentile(ts->hist, 0.999, ts->absmax);
    default: return NAN;
    }
}

void vm_act_grid(const CalibStats *cs, ActMetric m, double *grid) {
    for (int64_t l = 0; l < cs->n_layers; l++)
        for (int t = 0; t < TAP_COUNT; t++) grid[l * TAP_COUNT + t] = vm_act_value(cs, l, (TapPoint)t, m);
}

static const TapStats *sort_ts;
static int cmp_channel(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    float x = sort_ts->ch_absmax[i], y = sort_ts->ch_absmax[j];
    if (x != y) return x > y ? -1 : 1;
    return i < j ? -1 : i > j;
}

void vm_channel_order(const TapStats *ts, int by_value, int64_t *idx) {
    for (int64_t c = 0; c < ts->width; c++) idx[c] = c;
    if (!by_value) return;
    /* qsort has no context argument in C11; the UI sorts on one thread only. */
    sort_ts = ts;
    qsort(idx, (size_t)ts->width, sizeof *idx, cmp_channel);
    sort_ts = NULL;
}

double vm_sens_value(const SensMap *sm, int64_t layer, int proj, int fmt, SensGroup g, int out) {
    if (!sm || layer < 0 || layer >= sm->n_layers || fmt < 0 || fmt >= SENS_NFMT) return NAN;
    const float *a = out ? sm->oerr : sm->werr;
    return a ? a[sens_index(layer, proj, fmt, g)] : NAN;
}

double vm_sens_adadim(const SensMap *sm, int64_t layer, int proj, int fmt, int grouped, int out, GroupDim *dim) {
    *dim = sens_adadim_choice(sm, layer, proj, fmt, grouped);
    if (*dim == GROUP_TENSOR) return NAN;
    SensGroup g = *dim == GROUP_IC ? (grouped ? SG_IC_G : SG_IC) : (grouped ? SG_OC_G : SG_OC);
    return vm_sens_value(sm, layer, proj, fmt, g, out);
}

int vm_spike_sites(const CalibStats *cs, int k, char (*sites)[16], Err *err) {
    SpikeScore *sc = NULL;
    int64_t n = 0;
    if (spikes_score(cs, &sc, &n, err) != ST_OK) return 0;
    int w = 0;
    for (int64_t i = 0; i < n && w < k; i++)
        if (spikes_is_candidate(&sc[i], k))
            snprintf(sites[w++], 16, "%lld.%s", (long long)sc[i].layer, tap_name(sc[i].tap));
    free(sc);
    return w;
}

char *vm_fmt_secs(double s, char *buf, size_t n) {
    if (!(s > 0)) snprintf(buf, n, "-");
    else if (s < 1e-6) snprintf(buf, n, "%.0fns", s * 1e9);
    else if (s < 1e-5) snprintf(buf, n, "%.1fus", s * 1e6);
    else if (s < 1e-3) snprintf(buf, n, "%.0fus", s * 1e6);
    else if (s < 1e-2) snprintf(buf, n, "%.1fms", s * 1e3);
    else if (s < 1) snprintf(buf, n, "%.0fms", s * 1e3);
    else snprintf(buf, n, "%.2fs", s);
    return buf;
}

void vm_fmt_bytes(size_t b, char *buf, size_t n) {
    if (b >= 1000000000) snprintf(buf, n, "%.2f GB", (double)b / 1e9);
    else if (b >= 1000000) snprintf(buf, n, "%.2f MB", (double)b / 1e6);
    else if (b >= 1000) snprintf(buf, n, "%.1f kB", (double)b / 1e3);
    else snprintf(buf, n, "%zu B", b);
}
