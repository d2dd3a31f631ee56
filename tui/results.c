/* Evaluation rows (see results.h). */
#include "tui/results.h"

#include <math.h>

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

static int row_ok(const EvalRow *r) { return !r->cancelled && !r->other_text && isfinite(r->bpw) && isfinite(r->ppl); }

int64_t vm_pareto(const EvalRow *rows, int64_t n, unsigned char *on_front) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        on_front[i] = 0;
        if (!row_ok(&rows[i])) continue;
        int dominated = 0;
        for (int64_t j = 0; j < n && !dominated; j++) {
            if (j == i || !row_ok(&rows[j])) continue;
            const EvalRow *a = &rows[j], *b = &rows[i];
            dominated = a->bpw <= b->bpw && a->ppl <= b->ppl && (a->bpw < b->bpw || a->ppl < b->ppl);
        }
        if (!dominated) {
            on_front[i] = 1;
            k++;
        }
    }
    return k;
}

void vm_scatter(const EvalRow *rows, int64_t n, int w, int h, int *x, int *y, double *bpw_lo, double *bpw_hi,
                double *ppl_lo, double *ppl_hi) {
    double bl = INFINITY, bh = -INFINITY, pl = INFINITY, ph = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        if (!row_ok(&rows[i]) || rows[i].ppl <= 0) continue;
        bl = fmin(bl, rows[i].bpw);
        bh = fmax(bh, rows[i].bpw);
        pl = fmin(pl, rows[i].ppl);
        ph = fmax(ph, rows[i].ppl);
    }
    *bpw_lo = bl;
    *bpw_hi = bh;
    *ppl_lo = pl;
    *ppl_hi = ph;
    for (int64_t i = 0; i < n; i++) {
        x[i] = y[i] = -1;
        if (!row_ok(&rows[i]) || rows[i].ppl <= 0 || w <= 0 || h <= 0) continue;
        double fx = bh > bl ? (rows[i].bpw - bl) / (bh - bl) : 0.5;
        double fy = ph > pl ? (log(rows[i].ppl) - log(pl)) / (log(ph) - log(pl)) : 0.5;
        x[i] = (int)lround(fx * (w - 1));
        y[i] = (h - 1) - (int)lround(fy * (h - 1));
    }
}
