/* The Evaluate view: the running evaluation (running PPL and KLD with a
 * per-chunk sparkline; Esc cancels), the table of every plan evaluated in
 * the session (sortable; fixed-width columns from tui/results.h; the loss
 * model's predicted KLD beside the measured one), and a scatter of KLD (or
 * PPL, top-1 misses: m) on a log axis against bits per weight that marks
 * the Pareto front; reference rows (>= 16 bpw) only with r. */
#define NCURSES_WIDECHAR 1
#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#include <curses.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/planner.h"
#include "tui/draw.h"
#include "tui/heat.h"
#include "tui/views.h"

static void spark(int y, int x, int w, const double *v, int64_t n) {
    if (n <= 0 || w <= 0) return;
    int64_t first = n > w ? n - w : 0;
    int lv[LIVE_HIST];
    int64_t k = n - first;
    if (k > LIVE_HIST) k = LIVE_HIST;
    heat_spark(v + first, k, 8, lv);
    for (int64_t i = 0; i < k; i++) draw_str(y, x + (int)i, 1, C_BAR, heat_spark_glyph(lv[i], draw_utf8()));
}

static int draw_live(const App *a, const Rect *r) {
    LiveEval le;
    app_live_eval(a, &le);
    int x = r->x + 1, w = r->w - 2, y = r->y;
    if (!le.active) {
        if (a->n_rows == 0) {
            draw_text(y++, x, w, C_WARN, "No evaluation yet - press e to evaluate the plan in the editor");
            char sum[200];
            app_plan_summary(a, sum, sizeof sum);
            draw_text(y++, x, w, C_NORMAL, "plan %s", sum);
        } else {
            const EvalRow *last = &a->rows[a->n_rows - 1];
            draw_text(y++, x, w, C_NORMAL, "last: #%lld %s  PPL %.4f  KLD %.5f",
                      (long long)last->id, last->label, last->ppl, last->kld_mean);
            y++;
        }
        draw_text(y++, x, w, C_DIM, "%s; sorted by %s (s)", a->eval_settings,
                  eval_sort_name((EvalSort)a->eval.sort));
        return y - r->y;
    }
    double ppl = le.ppl_now, kld = le.kld_now;
    char q[32] = "";
    if (le.queued) snprintf(q, sizeof q, " (+%d queued)", le.queued);
    if (!le.running)
        draw_text(y++, x, w, C_WARN, "%s waits for the running job%s", le.label, q);
    else if (le.chunks_done == 0)
        draw_text(y++, x, w, C_WARN, "evaluating %s: reference and quantization...%s Esc cancels", le.label, q);
    else
        draw_text(y++, x, w, C_WARN, "evaluating %s: chunk %lld/%lld  PPL %.4f  KLD %.5f%s  Esc cancels", le.label,
                  (long long)le.chunks_done, (long long)le.n_chunks, ppl, kld, q);
    draw_str(y, x, 10, C_NORMAL, "PPL/chunk");
    spark(y++, x + 10, w - 10, le.ppl_hist, le.n_hist);
    draw_text(y++, x, w, C_DIM, "%s; sorted by %s (s)", a->eval_settings,
              eval_sort_name((EvalSort)a->eval.sort));
    return y - r->y;
}

/* The loss model's standing over the session's rows with both a prediction
 * and a complete measurement on this text: mean relative error of the raw
 * prediction, and after the refinement factor (geometric mean of
 * measured / predicted). Returns the factor (1 with no pair). */
static double pred_fit(const EvalRow *rows, int64_t n, int64_t *n_used, double *raw_err, double *fit_err) {
    double *p = malloc((size_t)(n ? n : 1) * sizeof *p), *m = malloc((size_t)(n ? n : 1) * sizeof *m);
    double k = 1;
    *n_used = 0;
    *raw_err = *fit_err = NAN;
    if (p && m) {
        int64_t j = 0;
        for (int64_t i = 0; i < n; i++)
            if (!rows[i].cancelled && !rows[i].other_text && isfinite(rows[i].kld_pred)) {
                p[j] = rows[i].kld_pred;
                m[j++] = rows[i].kld_mean;
            }
        double se = 0;
        int64_t u = 0;
        for (int64_t i = 0; i < j; i++)
            if (p[i] > 0 && m[i] > 0) {
                se += fabs(p[i] - m[i]) / m[i];
                u++;
            }
        if (u) *raw_err = se / (double)u;
        k = planner_fit_factor(p, m, j, fit_err, n_used);
    }
    free(p);
    free(m);
    return k;
}

static void eval_draw(const App *a, const Layout *l) {
    const Rect *r = &l->main;
    int y = r->y + draw_live(a, r) + 1;
    int x = r->x + 1, w = r->w - 2;
    if (a->n_rows == 0) return;
    EvalRow *rows = malloc((size_t)a->n_rows * sizeof *rows);
    unsigned char *front = malloc((size_t)a->n_rows);
    if (!rows || !front) {
        free(rows);
        free(front);
        return;
    }
    EvalMetric met = (EvalMetric)a->eval.metric;
    memcpy(rows, a->rows, (size_t)a->n_rows * sizeof *rows);
    vm_pareto(rows, a->n_rows, met, a->eval.with_ref, front);
    int have_pred = 0;
    for (int64_t i = 0; i < a->n_rows; i++) {
        rows[i].front = front[i]; /* follows the row through the sort */
        have_pred |= isfinite(rows[i].kld_pred);
    }
    vm_eval_sort(rows, a->n_rows, (EvalSort)a->eval.sort);
    unsigned cols;
    int pw = vm_eval_layout(w, have_pred, &cols);
    char line[512];
    vm_eval_header(line, sizeof line, pw, cols);
    draw_text(y++, x, w, C_HEADER, "%s", line);
    int table_rows = (r->y + r->h - y) / 2;
    if (table_rows < 3) table_rows = 3;
    int64_t first = layout_scroll(a->n_rows, table_rows, a->eval.sel, 0);
    for (int64_t i = first; i < a->n_rows && i - first < table_rows; i++) {
        const EvalRow *e = &rows[i];
        vm_eval_row(e, 1.0, line, sizeof line, pw, cols);
        ColorRole role = i == a->eval.sel ? C_CURSOR : e->front ? C_FRONT : C_NORMAL;
        draw_text(y++, x, w, role, "%s", line);
    }
    int64_t n_other = 0;
    for (int64_t i = 0; i < a->n_rows; i++) n_other += rows[i].other_text;
    if (n_other)
        draw_text(y++, x, w, C_DIM, "(other text): reopened, measured on another text or ctx; not compared");
    if (have_pred) {
        int64_t nu;
        double raw, fit;
        double k = pred_fit(rows, a->n_rows, &nu, &raw, &fit);
        if (nu)
            draw_text(y++, x, w, C_DIM, "KLD pred (loss model): off by %.0f%% over %lld plans; x%.3g leaves %.0f%%",
                      100 * raw, (long long)nu, k, 100 * fit);
    }
    /* Scatter: the metric (log) against bpw. */
    int sh = r->y + r->h - y - 2;
    if (sh >= 4) {
        int sw = w - 12;
        if (sw > 60) sw = 60;
        int *px = malloc((size_t)a->n_rows * sizeof *px), *py = malloc((size_t)a->n_rows * sizeof *py);
        if (px && py) {
            double bl, bh, pl, ph;
            vm_scatter(a->rows, a->n_rows, met, a->eval.with_ref, sw, sh, px, py, &bl, &bh, &pl, &ph);
            /* front marks in a->rows order (rows[] is sorted) */
            vm_pareto(a->rows, a->n_rows, met, a->eval.with_ref, front);
            int top = y + 1;
            if (!(bl <= bh)) { /* no complete evaluation of this text yet: no axes to draw */
                draw_text(y, x, w, C_DIM, "%s vs bpw: nothing to plot yet (partial / other-text%s rows are not compared)",
                          eval_metric_name(met), a->eval.with_ref ? "" : " / reference");
                free(px);
                free(py);
                free(rows);
                free(front);
                return;
            }
            char b1[16], b2[16];
            draw_text(y, x, w, C_DIM, "%s (log) vs bits per weight (* = Pareto front); m: metric, r: reference rows %s",
                      eval_metric_name(met), a->eval.with_ref ? "shown" : "hidden");
            /* one value (or one bpw) among the plotted rows: vm_scatter centres it, so is its label */
            int mid_y = (sh - 1) - (int)lround(0.5 * (sh - 1)), mid_x = (int)lround(0.5 * (sw - 1));
            draw_text(ph > pl ? top : top + mid_y, x, 9, C_DIM, "%9s", heat_fmt(ph, b1, sizeof b1));
            if (ph > pl) draw_text(top + sh - 1, x, 9, C_DIM, "%9s", heat_fmt(pl, b2, sizeof b2));
            for (int k = 0; k < sh; k++) draw_str(top + k, x + 10, 1, C_DIM, draw_utf8() ? "\u2502" : "|");
            for (int64_t i = 0; i < a->n_rows; i++) {
                if (px[i] < 0) continue;
                char id[8];
                snprintf(id, sizeof id, "%s%lld", front[i] ? "*" : "", (long long)a->rows[i].id);
                draw_str(top + py[i], x + 11 + px[i], 4, front[i] ? C_FRONT : C_NORMAL, id);
            }
            heat_fmt(bl, b1, sizeof b1);
            int lx = bh > bl ? x + 10 : x + 11 + mid_x - draw_width(b1) / 2;
            draw_text(top + sh, lx, sw + 2, C_DIM, "%s bpw", b1);
            if (bh > bl) draw_text(top + sh, x + 10 + sw - 6, 12, C_DIM, "%s bpw", heat_fmt(bh, b2, sizeof b2));
        }
        free(px);
        free(py);
    }
    free(rows);
    free(front);
}

static int eval_key(App *a, Action act) {
    if (view_move(act, &a->eval.sel, a->n_rows > 0 ? a->n_rows : 1, 5)) return R_REDRAW;
    if (act == AC_METRIC) {
        a->eval.metric = (a->eval.metric + 1) % EM_COUNT;
        app_msg(a, 0, "Pareto front and scatter: %s against bpw", eval_metric_name((EvalMetric)a->eval.metric));
        return R_REDRAW;
    }
    if (act == AC_EVAL_REF) {
        a->eval.with_ref = !a->eval.with_ref;
        app_msg(a, 0, "reference rows (fp16/fp32, >= 16 bpw) %s the Pareto front and scatter",
                a->eval.with_ref ? "on" : "off");
        return R_REDRAW;
    }
    if (act == AC_SORT) {
        a->eval.sort = (a->eval.sort + 1) % ES_COUNT;
        app_msg(a, 0, "results sorted by %s", eval_sort_name((EvalSort)a->eval.sort));
        return R_REDRAW;
    }
    return R_UNHANDLED;
}

const ViewOps view_eval_ops = {.draw = eval_draw, .key = eval_key};
