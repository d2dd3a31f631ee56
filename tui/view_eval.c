/* The Evaluate view: the running evaluation (running PPL and KLD with a
 * per-chunk sparkline; Esc cancels), the table of every plan evaluated in
 * the session (sortable; fixed-width columns from tui/results.h; the loss
 * model's predicted KLD beside the measured one), and a scatter of KLD (or
 * PPL, top-1 misses: m) on a log axis against bits per weight that marks
 * the Pareto front; reference rows (>= 16 bpw) only with r. A cursor in the
 * table: Enter opens a result's detail (residual error per layer, errors
 * per site, times, the cells that differ from the plan it was compared
 * with), Space marks results and d diffs two side by side, L loads a
 * result's plan back into the editor. */
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
#include "tui/compare.h"
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

/* === Detail and diff === */

/* The row ids in the table's (sorted) order into ids (a->n_rows). */
static void sorted_ids(const App *a, int64_t *ids) {
    EvalRow *rows = malloc((size_t)(a->n_rows ? a->n_rows : 1) * sizeof *rows);
    if (!rows) {
        for (int64_t i = 0; i < a->n_rows; i++) ids[i] = a->rows[i].id;
        return;
    }
    memcpy(rows, a->rows, (size_t)a->n_rows * sizeof *rows);
    vm_eval_sort(rows, a->n_rows, (EvalSort)a->eval.sort);
    for (int64_t i = 0; i < a->n_rows; i++) ids[i] = rows[i].id;
    free(rows);
}

/* The id of the result under the cursor (0: none). */
static int64_t sel_id(const App *a) {
    if (a->n_rows == 0) return 0;
    int64_t *ids = malloc((size_t)a->n_rows * sizeof *ids);
    if (!ids) return 0;
    sorted_ids(a, ids);
    int64_t s = a->eval.sel < a->n_rows ? a->eval.sel : a->n_rows - 1;
    int64_t id = ids[s];
    free(ids);
    return id;
}

static int is_marked(const App *a, int64_t id) { return id && (a->eval.mark[0] == id || a->eval.mark[1] == id); }

static const char *secs_text(double s, char *buf, size_t n) {
    if (isnan(s)) snprintf(buf, n, "not recorded");
    else snprintf(buf, n, s < 1 ? "%.3f s" : "%.2f s", s);
    return buf;
}

/* "Δbpw +2.16  ΔKLD -0.13291  Δtop-1 +15.1 pts" of b against a. */
static void delta_text(const EvalRow *a, const EvalRow *b, char *buf, size_t n) {
    const char *d = draw_utf8() ? "\u0394" : "d";
    snprintf(buf, n, "%sbpw %+.2f  %sKLD %+.5f  %stop-1 %+.1f pts  %sPPL %+.4f", d, b->bpw - a->bpw, d,
             b->kld_mean - a->kld_mean, d, 100 * (b->top1 - a->top1), d, b->ppl - a->ppl);
}

static int64_t n_cells(const App *a) { return a->m->cfg.n_layers * PLAN_NPROJ + 2; }

static void detail_draw(const App *a, const Rect *r) {
    int64_t i = app_row_index(a, a->eval.open_id);
    if (i < 0) return;
    const EvalRow *e = &a->rows[i];
    const RowDetail *d = &a->details[i];
    int x = r->x + 1, w = r->w - 2, y = r->y;
    draw_text(y++, x, w, C_HEADER, "Result #%lld %s%s: PPL %.4f  KLD %.5f (p99 %.5f)  top-1 %.1f%%  %.2f bpw  %.3f MB",
              (long long)e->id, e->cancelled ? "(partial) " : "", e->label, e->ppl, e->kld_mean, e->kld_p99,
              100 * e->top1, e->bpw, e->bytes / 1e6);
    char q[32], ev[32];
    if (d->gguf)
        draw_text(y++, x, w, C_NORMAL, "GGUF: %s; evaluation %s; %s", a->eval.types,
                  secs_text(d->eval_s, ev, sizeof ev), d->gguf);
    else
        draw_text(y++, x, w, C_NORMAL, "quantization %s, evaluation %s; %s%s", secs_text(d->quant_s, q, sizeof q),
                  secs_text(d->eval_s, ev, sizeof ev), a->eval_settings,
                  d->plan_by_name ? "; plan: the session's of that name now (not stored with the result)" : "");
    draw_text(y++, x, w, C_DIM, "wt err |dW|^2/|W|^2 as built; out err: the map's tr(dW H dW')/tr(W H W') (RTN); "
              "L loads");
    int64_t vi = app_row_index(a, d->vs_id);
    if (vi >= 0) {
        char dt[160];
        delta_text(&a->rows[vi], e, dt, sizeof dt);
        if (a->eval.cmp_note[0])
            draw_text(y++, x, w, C_NORMAL, "vs #%lld %s: %s; %s", (long long)d->vs_id, a->rows[vi].label, a->eval.cmp_note, dt);
        else
            draw_text(y++, x, w, a->eval.n_cmp ? C_CHANGED : C_NORMAL, "vs #%lld %s: %lld of %lld cells differ (*); %s",
                      (long long)d->vs_id, a->rows[vi].label, (long long)a->eval.n_cmp, (long long)n_cells(a), dt);
    } else {
        draw_text(y++, x, w, C_DIM, "compared with: none (no plan was evaluated before it)");
    }
    y++;
    /* Left: the residual stream's relative error after each block (chunk 0). */
    int lw = 28, top = y, h = r->y + r->h - y;
    draw_str(y, x, lw, C_HEADER, "residual err per layer");
    double mx = 0;
    for (int64_t k = 0; k < d->n_layer_err; k++)
        if (isfinite(d->layer_err[k]) && d->layer_err[k] > mx) mx = d->layer_err[k];
    if (d->n_layer_err == 0) draw_str(y + 1, x, lw, C_DIM, "not recorded");
    int64_t first = a->eval.scroll;
    if (first > d->n_layer_err - (h - 1)) first = d->n_layer_err - (h - 1);
    if (first < 0) first = 0;
    for (int64_t k = first; k < d->n_layer_err && k - first < h - 1; k++) {
        char v[16];
        int yy = top + 1 + (int)(k - first);
        draw_text(yy, x, 15, C_NORMAL, "L%-3lld %9s", (long long)k, vm_fit_num(v, 9, d->layer_err[k], 5, 0));
        draw_bar(yy, x + 16, lw - 17, mx > 0 && isfinite(d->layer_err[k]) ? d->layer_err[k] / mx : 0, C_BAR);
    }
    /* Right: each site's entry, its weight error as built, the map's output
     * error of that entry, and the compared plan's entry where it differs. */
    int sx = x + lw + 1, sw = w - lw - 1;
    draw_text(y, sx, sw, C_HEADER, "%-9s %-14s %9s %9s  %s", "site", "entry", "wt err", "out err",
              vi >= 0 ? "vs entry" : "");
    int64_t ns = a->m->cfg.n_layers * PLAN_NPROJ;
    PlanResolved res = {0};
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&a->m->cfg);
    Err err;
    err_init(&err);
    int have = d->plan && plan_resolve(d->plan, &pm, &res, &err) == ST_OK;
    int64_t sfirst = a->eval.scroll;
    if (sfirst > ns - (h - 1)) sfirst = ns - (h - 1);
    if (sfirst < 0) sfirst = 0;
    for (int64_t s = sfirst; s < ns && s - sfirst < h - 1; s++) {
        char site[24], code[48] = "?", we[16], oe[16], other[52] = "";
        cmp_site_name(s, site, sizeof site);
        if (have) plan_entry_code(&res.lin[s].e, code, sizeof code);
        else if (a->eval.site_type) snprintf(code, sizeof code, "%s", a->eval.site_type[s]);
        vm_fit_num(we, 9, s < d->n_site_werr ? d->site_werr[s] : NAN, 6, 0);
        vm_fit_num(oe, 9, a->eval.oerr ? a->eval.oerr[s] : NAN, 6, 0);
        for (int64_t c = 0; c < a->eval.n_cmp; c++)
            if (a->eval.cmp[c].site == s) snprintf(other, sizeof other, "* %s", a->eval.cmp[c].a);
        draw_text(top + 1 + (int)(s - sfirst), sx, sw, other[0] ? C_CHANGED : C_NORMAL, "%-9s %-14s %s %s  %s", site,
                  code, we, oe, other);
    }
    plan_resolved_done(&res);
}

static void diff_draw(const App *a, const Rect *r) {
    int64_t ia = app_row_index(a, a->eval.diff_a), ib = app_row_index(a, a->eval.diff_b);
    if (ia < 0 || ib < 0) return;
    const EvalRow *ea = &a->rows[ia], *eb = &a->rows[ib];
    int x = r->x + 1, w = r->w - 2, y = r->y;
    const char *dl = draw_utf8() ? "\u0394" : "d";
    draw_text(y++, x, w, C_HEADER, "Diff: #%lld %s  vs  #%lld %s   (Esc back)", (long long)ea->id, ea->label,
              (long long)eb->id, eb->label);
    char ha[16], hb[16];
    snprintf(ha, sizeof ha, "#%lld", (long long)ea->id);
    snprintf(hb, sizeof hb, "#%lld", (long long)eb->id);
    char dh[40];
    snprintf(dh, sizeof dh, "%s (%s - %s)", dl, hb, ha);
    draw_text(y++, x, w, C_HEADER, "%-8s %12s %12s %*s", "", ha, hb, 12 + (int)strlen(dh) - draw_width(dh), dh);
    struct { const char *name; double va, vb; int dec; double mul; const char *unit; } m[] = {
        {"bpw", ea->bpw, eb->bpw, 2, 1, ""},
        {"KLD", ea->kld_mean, eb->kld_mean, 5, 1, ""},
        {"top-1 %", ea->top1, eb->top1, 1, 100, " pts"},
        {"PPL", ea->ppl, eb->ppl, 4, 1, ""},
        {"KLD p99", ea->kld_p99, eb->kld_p99, 5, 1, ""},
        {"MB", ea->bytes / 1e6, eb->bytes / 1e6, 3, 1, ""},
    };
    for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) {
        char va[16], vb[16], dv[16];
        vm_fit_num(va, 12, m[k].mul * m[k].va, m[k].dec, 0);
        vm_fit_num(vb, 12, m[k].mul * m[k].vb, m[k].dec, 0);
        vm_fit_num(dv, 12, m[k].mul * (m[k].vb - m[k].va), m[k].dec, 1);
        draw_text(y++, x, w, C_NORMAL, "%-8s %s %s %s%s", m[k].name, va, vb, dv, m[k].unit);
    }
    const RowDetail *da = &a->details[ia], *db = &a->details[ib];
    char qa[32], qb[32];
    draw_text(y++, x, w, C_NORMAL, "%-8s %12s %12s", "quant s", secs_text(da->quant_s, qa, sizeof qa),
              secs_text(db->quant_s, qb, sizeof qb));
    y++;
    if (a->eval.cmp_note[0]) {
        draw_text(y++, x, w, C_WARN, "%s", a->eval.cmp_note);
        return;
    }
    draw_text(y++, x, w, a->eval.n_cmp ? C_CHANGED : C_GOOD, "%lld of %lld cells differ%s", (long long)a->eval.n_cmp,
              (long long)n_cells(a), a->eval.n_cmp ? ":" : " (the same plan)");
    if (!a->eval.n_cmp) return;
    draw_text(y++, x, w, C_HEADER, "%-10s %-22s %-22s", "site", ha, hb);
    int h = r->y + r->h - y;
    int64_t first = a->eval.scroll;
    if (first > a->eval.n_cmp - h) first = a->eval.n_cmp - h;
    if (first < 0) first = 0;
    for (int64_t k = first; k < a->eval.n_cmp && k - first < h; k++) {
        char site[24];
        const CmpSite *c = &a->eval.cmp[k];
        draw_text(y++, x, w, C_NORMAL, "%-10s %-22s %-22s", cmp_site_name(c->site, site, sizeof site), c->a, c->b);
    }
    if (first + h < a->eval.n_cmp)
        draw_text(r->y + r->h - 1, x + 58, w - 58, C_DIM, "(%lld more: j/k)", (long long)(a->eval.n_cmp - first - h));
}

static void eval_draw(const App *a, const Layout *l) {
    const Rect *r = &l->main;
    if (a->eval.open_id) {
        detail_draw(a, r);
        return;
    }
    if (a->eval.diff_a) {
        diff_draw(a, r);
        return;
    }
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
    int pw = vm_eval_layout(w, have_pred, vm_eval_label_width(rows, a->n_rows), &cols);
    char line[512];
    vm_eval_header(line, sizeof line, pw, cols);
    draw_text(y++, x, w, C_HEADER, "%s", line);
    int table_rows = (r->y + r->h - y) / 2;
    if (table_rows < 3) table_rows = 3;
    int64_t first = layout_scroll(a->n_rows, table_rows, a->eval.sel, 0);
    for (int64_t i = first; i < a->n_rows && i - first < table_rows; i++) {
        const EvalRow *e = &rows[i];
        vm_eval_row(e, 1.0, line, sizeof line, pw, cols);
        if (is_marked(a, e->id) && line[0] == ' ') line[0] = '>'; /* ids up to 9: the colour alone beyond */
        ColorRole role = i == a->eval.sel ? C_CURSOR : is_marked(a, e->id) ? C_MARK : e->front ? C_FRONT : C_NORMAL;
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

static void close_sub(App *a) {
    a->eval.open_id = a->eval.diff_a = a->eval.diff_b = 0;
    a->eval.scroll = 0;
    free(a->eval.oerr);
    a->eval.oerr = NULL;
    free(a->eval.site_type);
    a->eval.site_type = NULL;
}

/* Keys while the detail or the diff is open. */
static int sub_key(App *a, Action act) {
    switch (act) {
    case AC_BACK: case AC_ENTER: case AC_DIFF: close_sub(a); return R_REDRAW;
    case AC_UP: case AC_PGUP: case AC_HOME:
        a->eval.scroll -= act == AC_UP ? 1 : act == AC_PGUP ? 10 : a->eval.scroll;
        if (a->eval.scroll < 0) a->eval.scroll = 0;
        return R_REDRAW;
    case AC_DOWN: case AC_PGDN: case AC_END: {
        int64_t max = a->eval.open_id ? a->m->cfg.n_layers * PLAN_NPROJ : a->eval.n_cmp;
        a->eval.scroll += act == AC_DOWN ? 1 : act == AC_PGDN ? 10 : max;
        if (a->eval.scroll > max - 1) a->eval.scroll = max > 0 ? max - 1 : 0;
        return R_REDRAW;
    }
    case AC_LOAD_PLAN:
        if (a->eval.open_id) {
            app_load_result_plan(a, a->eval.open_id);
            return R_REDRAW;
        }
        return R_NONE;
    default: return R_UNHANDLED;
    }
}

static int eval_key(App *a, Action act) {
    if (a->eval.open_id || a->eval.diff_a) {
        int r = sub_key(a, act);
        if (!(r & R_UNHANDLED)) return r;
        if (act >= AC_VIEW_1 && act <= AC_PREV_VIEW) close_sub(a);
        return r;
    }
    if (view_move(act, &a->eval.sel, a->n_rows > 0 ? a->n_rows : 1, 5)) return R_REDRAW;
    if (act == AC_ADD_GGUF) {
        app_prompt_open(a, PROMPT_GGUF, "GGUF of this model to evaluate (qscope export's, llama-quantize's):", "");
        return R_REDRAW;
    }
    if (act == AC_ENTER || act == AC_MARK || act == AC_LOAD_PLAN || act == AC_DIFF) {
        int64_t id = sel_id(a);
        if (!id) {
            app_msg(a, 0, "no result yet: press e to evaluate the plan in the editor");
            return R_REDRAW;
        }
        if (act == AC_ENTER) {
            a->eval.open_id = id;
            a->eval.scroll = 0;
            int64_t vs = a->details[app_row_index(a, id)].vs_id;
            if (vs) app_compare_results(a, vs, id);
            else {
                free(a->eval.cmp);
                a->eval.cmp = NULL;
                a->eval.n_cmp = 0;
                a->eval.cmp_note[0] = 0;
            }
            app_result_site_oerr(a, id);
            app_result_site_types(a, id);
            return R_REDRAW;
        }
        if (act == AC_LOAD_PLAN) {
            app_load_result_plan(a, id);
            return R_REDRAW;
        }
        if (act == AC_MARK) {
            int64_t *m = a->eval.mark;
            if (m[0] == id) m[0] = m[1], m[1] = 0;
            else if (m[1] == id) m[1] = 0;
            else if (!m[0]) m[0] = id;
            else if (!m[1]) m[1] = id;
            else m[0] = m[1], m[1] = id; /* a third mark drops the oldest */
            if (m[0] && m[1]) app_msg(a, 0, "#%lld and #%lld marked: d diffs them", (long long)m[0], (long long)m[1]);
            else if (m[0]) app_msg(a, 0, "#%lld marked: mark another (Space) or d diffs it with the cursor's", (long long)m[0]);
            else app_msg(a, 0, "no result marked");
            return R_REDRAW;
        }
        /* d: the two marked, or the marked one and the cursor's */
        int64_t x = a->eval.mark[0], y = a->eval.mark[1] ? a->eval.mark[1] : id;
        if (!x || x == y) {
            app_msg(a, 1, "mark two results with Space (or one, and put the cursor on the other), then d");
            return R_REDRAW;
        }
        if (x > y) { int64_t t = x; x = y; y = t; }
        a->eval.diff_a = x;
        a->eval.diff_b = y;
        a->eval.scroll = 0;
        app_compare_results(a, x, y);
        return R_REDRAW;
    }
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
