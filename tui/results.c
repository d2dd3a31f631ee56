/* Evaluation rows (see results.h). */
#include "tui/results.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *eval_sort_name(EvalSort s) {
    static const char *const n[ES_COUNT] = {"#", "PPL", "KLD", "top-1", "bpw", "MB", "tok/s"};
    return (unsigned)s < ES_COUNT ? n[s] : "?";
}

static double sort_val(const EvalRow *r, EvalSort k) {
    switch (k) {
    case ES_ID: return (double)r->id;
    case ES_PPL: return r->ppl;
    case ES_KLD: return r->kld_mean;
    case ES_TOP1: return -r->top1;
    case ES_BPW: return r->bpw;
    case ES_BYTES: return (double)r->bytes;
    case ES_TPS: return -r->tps;
    default: return 0;
    }
}

/* <0 when a sorts before b: NaN last, then by value, then by id. */
static int eval_cmp(const EvalRow *a, const EvalRow *b, EvalSort key) {
    double u = sort_val(a, key), v = sort_val(b, key);
    if (isnan(u) != isnan(v)) return isnan(u) ? 1 : -1;
    if (!isnan(u) && u != v) return u < v ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

void vm_eval_sort(EvalRow *rows, int64_t n, EvalSort key) {
    /* Insertion sort: a session has tens of rows; stable and context-free. */
    for (int64_t i = 1; i < n; i++) {
        EvalRow r = rows[i];
        int64_t j = i - 1;
        for (; j >= 0 && eval_cmp(&rows[j], &r, key) > 0; j--) rows[j + 1] = rows[j];
        rows[j + 1] = r;
    }
}

const char *eval_metric_name(EvalMetric m) {
    static const char *const n[EM_COUNT] = {"KLD", "PPL", "top-1 miss"};
    return (unsigned)m < EM_COUNT ? n[m] : "?";
}

double vm_metric(const EvalRow *r, EvalMetric m) {
    switch (m) {
    case EM_KLD: return r->kld_mean;
    case EM_PPL: return r->ppl;
    case EM_TOP1_MISS: return 1.0 - r->top1;
    default: return NAN;
    }
}

int vm_is_reference(const EvalRow *r) { return r->bpw >= 16.0; }

static int row_ok(const EvalRow *r, EvalMetric m, int with_ref) {
    return !r->cancelled && !r->other_text && isfinite(r->bpw) && isfinite(vm_metric(r, m)) &&
           (with_ref || !vm_is_reference(r));
}

int64_t vm_pareto(const EvalRow *rows, int64_t n, EvalMetric m, int with_ref, unsigned char *on_front) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        on_front[i] = 0;
        if (!row_ok(&rows[i], m, with_ref)) continue;
        int dominated = 0;
        double vi = vm_metric(&rows[i], m);
        for (int64_t j = 0; j < n && !dominated; j++) {
            if (j == i || !row_ok(&rows[j], m, with_ref)) continue;
            double vj = vm_metric(&rows[j], m);
            dominated = rows[j].bpw <= rows[i].bpw && vj <= vi && (rows[j].bpw < rows[i].bpw || vj < vi);
        }
        if (!dominated) {
            on_front[i] = 1;
            k++;
        }
    }
    return k;
}

void vm_scatter(const EvalRow *rows, int64_t n, EvalMetric m, int with_ref, int w, int h, int *x, int *y,
                double *bpw_lo, double *bpw_hi, double *v_lo, double *v_hi) {
    double bl = INFINITY, bh = -INFINITY, pl = INFINITY, ph = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (!row_ok(&rows[i], m, with_ref) || !(vm_metric(&rows[i], m) > 0)) continue;
        double v = vm_metric(&rows[i], m);
        bl = fmin(bl, rows[i].bpw);
        bh = fmax(bh, rows[i].bpw);
        pl = fmin(pl, v);
        ph = fmax(ph, v);
    }
    *bpw_lo = bl;
    *bpw_hi = bh;
    *v_lo = pl;
    *v_hi = ph;
    for (int64_t i = 0; i < n; i++) {
        x[i] = y[i] = -1;
        if (!row_ok(&rows[i], m, with_ref) || !(vm_metric(&rows[i], m) > 0) || w <= 0 || h <= 0) continue;
        double v = vm_metric(&rows[i], m);
        double fx = bh > bl ? (rows[i].bpw - bl) / (bh - bl) : 0.5;
        double fy = ph > pl ? (log(v) - log(pl)) / (log(ph) - log(pl)) : 0.5;
        x[i] = (int)lround(fx * (w - 1));
        y[i] = (h - 1) - (int)lround(fy * (h - 1));
    }
}

/* === Table layout === */

char *vm_fit_num(char *buf, int width, double v, int max_dec, int sign) {
    char t[64];
    if (isnan(v)) {
        snprintf(buf, (size_t)width + 1, "%*s", width, "-");
        return buf;
    }
    for (int d = max_dec; d >= 0; d--) {
        int k = snprintf(t, sizeof t, sign ? "%+.*f" : "%.*f", d, v);
        if (k <= width) {
            snprintf(buf, (size_t)width + 1, "%*s", width, t);
            return buf;
        }
    }
    for (int d = width - 6; d >= 0; d--) { /* "1e+06" forms for values no decimal form fits */
        int k = snprintf(t, sizeof t, sign ? "%+.*e" : "%.*e", d, v);
        if (k <= width) {
            snprintf(buf, (size_t)width + 1, "%*s", width, t);
            return buf;
        }
    }
    snprintf(buf, (size_t)width + 1, "%*s", width, "#");
    return buf;
}

/* Fixed columns: "NN*" id, then per column (width, title); the plan column sits between. */
enum { W_ID = 3, W_PPL = 8, W_DPPL = 8, W_KLD = 8, W_PRED = 8, W_P99 = 8, W_TOP1 = 6, W_BPW = 5, W_MB = 7, W_TPS = 7,
       W_QSEC = 7 };

int vm_eval_width(int pw, unsigned cols) {
    int w = W_ID + 1 + pw + 1 + W_PPL + 1 + W_DPPL + 1 + W_KLD + 1 + W_TOP1 + 1 + W_BPW + 1 + W_MB + 1 + W_TPS;
    if (cols & EVC_PRED) w += 1 + W_PRED;
    if (cols & EVC_P99) w += 1 + W_P99;
    if (cols & EVC_QSEC) w += 1 + W_QSEC;
    return w;
}

static int eval_pw(int width, unsigned c) {
    int pw = width - vm_eval_width(0, c);
    return pw < 11 ? 11 : pw > 32 ? 32 : pw;
}

int vm_eval_layout(int width, int have_pred, int want_pw, unsigned *cols) {
    unsigned c = EVC_P99 | EVC_QSEC | (have_pred ? EVC_PRED : 0);
    if (vm_eval_width(11, c) > width) c &= ~(unsigned)EVC_QSEC;
    if (vm_eval_width(11, c) > width) c &= ~(unsigned)EVC_PRED;
    if (vm_eval_width(11, c) > width) c &= ~(unsigned)EVC_P99;
    /* a name people recognise matters more than the quantization time: quant s
     * also goes when the names would be cut and its columns would make them whole */
    int want = want_pw > 32 ? 32 : want_pw;
    if ((c & EVC_QSEC) && eval_pw(width, c) < want) c &= ~(unsigned)EVC_QSEC;
    *cols = c;
    return eval_pw(width, c);
}

int vm_eval_label_width(const EvalRow *rows, int64_t n) {
    int w = 0;
    for (int64_t i = 0; i < n; i++) {
        int k = (int)strlen(rows[i].label) + (rows[i].other_text ? 13 : 0) + (rows[i].cancelled ? 10 : 0);
        if (k > w) w = k;
    }
    return w;
}

void vm_eval_header(char *buf, size_t n, int pw, unsigned cols) {
    char pc[16] = "", qc[16] = "";
    if (cols & EVC_PRED) snprintf(pc, sizeof pc, " %*s", W_PRED, "KLD pred");
    if (cols & EVC_P99) snprintf(qc, sizeof qc, " %*s", W_P99, "KLD p99");
    char sc[16] = "";
    if (cols & EVC_QSEC) snprintf(sc, sizeof sc, " %*s", W_QSEC, "quant s");
    snprintf(buf, n, "%*s %-*s %*s %*s %*s%s%s %*s %*s %*s %*s%s", W_ID, "# ", pw, "plan", W_PPL, "PPL", W_DPPL, "dPPL",
             W_KLD, "KLD", pc, qc, W_TOP1, "top-1", W_BPW, "bpw", W_MB, "MB", W_TPS, "dec t/s", sc);
}

void vm_eval_row(const EvalRow *r, double k, char *buf, size_t n, int pw, unsigned cols) {
    char lab[160], ppl[16], dppl[16], kld[16], pred[16], p99[16], top1[16], bpw[16], mb[16], tps[16];
    snprintf(lab, sizeof lab, "%s%s%s", r->other_text ? "(other text) " : "", r->cancelled ? "(partial) " : "",
             r->label);
    vm_fit_num(ppl, W_PPL, r->ppl, 4, 0);
    vm_fit_num(dppl, W_DPPL, r->dppl, 4, 1);
    vm_fit_num(kld, W_KLD, r->kld_mean, 5, 0);
    vm_fit_num(pred, W_PRED, k * r->kld_pred, 5, 0);
    vm_fit_num(p99, W_P99, r->kld_p99, 5, 0);
    char t1[16];
    vm_fit_num(t1, W_TOP1 - 1, 100 * r->top1, 1, 0);
    snprintf(top1, sizeof top1, "%s%%", t1);
    vm_fit_num(bpw, W_BPW, r->bpw, 2, 0);
    vm_fit_num(mb, W_MB, r->bytes / 1e6, 3, 0);
    vm_fit_num(tps, W_TPS, r->tps, 0, 0);
    char pc[16] = "", qc[16] = "", sc[16] = "", qs[16];
    if (cols & EVC_PRED) snprintf(pc, sizeof pc, " %s", pred);
    if (cols & EVC_P99) snprintf(qc, sizeof qc, " %s", p99);
    if (cols & EVC_QSEC) snprintf(sc, sizeof sc, " %s", vm_fit_num(qs, W_QSEC, r->quant_s, 2, 0));
    snprintf(buf, n, "%2lld%s %-*.*s %s %s %s%s%s %s %s %s %s%s", (long long)r->id, r->front ? "*" : " ", pw, pw, lab, ppl,
             dppl, kld, pc, qc, top1, bpw, mb, tps, sc);
}
