/* The Activations view: a heat map of the calibration's activation
 * statistics (rows = layers, columns = the projection inputs and the
 * residual stream), the metric cycled with m, a log colour scale with a
 * legend, the cursor cell's exact numbers in the side panel, and a drill-down
 * into one cell: per-channel max|x| bars, the |x| histogram, the top spikes. */
#define NCURSES_WIDECHAR 1
#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#include <curses.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/calib.h"
#include "analysis/spikes.h"
#include "tui/draw.h"
#include "tui/heat.h"
#include "tui/views.h"
#include "tui/vmodel.h"

static const char *tap_label(int t) {
    static const char *const n[TAP_COUNT] = {"qkv", "o", "gate_up", "down", "resid"};
    return n[t];
}

static const char *tap_desc(int t) {
    static const char *const n[TAP_COUNT] = {"input of q/k/v_proj", "input of o_proj", "input of gate/up_proj",
                                             "input of down_proj", "residual after the block"};
    return n[t];
}

/* A token's text fit for one screen line: control bytes (a newline token
 * would move the cursor) as \n, \t, \r or \xHH. */
static const char *token_show(const char *in, char *out, size_t n) {
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && k + 5 < n; p++) {
        if (*p >= 0x20 && *p != 0x7f) out[k++] = (char)*p;
        else if (*p == '\n' || *p == '\t' || *p == '\r') {
            out[k++] = '\\';
            out[k++] = *p == '\n' ? 'n' : *p == '\t' ? 't' : 'r';
        } else k += (size_t)snprintf(out + k, n - k, "\\x%02x", *p);
    }
    out[k] = 0;
    return out;
}

void view_no_calib(const App *a, const Rect *r, const char *what) {
    int y = r->y + r->h / 3;
    JobView jv;
    jobs_view((JobRunner *)&a->jobs, &jv);
    int calibrating = jv.running && strncmp(jv.label, "calibrate", 9) == 0;
    for (int i = 0; i < jv.n_queued; i++) calibrating |= strncmp(jv.queued[i], "calibrate", 9) == 0;
    if (calibrating) {
        draw_text(y, r->x + 2, r->w - 4, C_WARN, "Calibrating - the map appears when it finishes");
        draw_text(y + 2, r->x + 2, r->w - 4, C_NORMAL, "Progress is in the title bar; Esc stops it early (the sequences");
        draw_text(y + 3, r->x + 2, r->w - 4, C_NORMAL, "done so far are kept).");
        return;
    }
    draw_text(y, r->x + 2, r->w - 4, C_WARN, "No calibration yet - press c");
    draw_text(y + 2, r->x + 2, r->w - 4, C_NORMAL, "%s needs activation statistics from a calibration run.", what);
    size_t clen;
    const char *cpath = NULL;
    int64_t from = app_calib_from(a, NULL);
    char part[96] = "";
    if (a->calib_text) snprintf(part, sizeof part, " (the calibration text; evaluation uses --text)");
    else if (from) snprintf(part, sizeof part, " from token %lld (evaluation scores the chunks before)", (long long)from);
    if (app_calib_text(a, &clen, &cpath))
        draw_text(y + 3, r->x + 2, r->w - 4, C_NORMAL, "c runs it on %s%s in the background.", cpath, part);
    else draw_text(y + 3, r->x + 2, r->w - 4, C_ERROR, "There is no text: restart with --text FILE.");
}

void view_heat_cell(int y, int x, int w, int level, double v, int cursor, const char *suffix) {
    char num[24], cell[96];
    heat_fmt(v, num, sizeof num);
    if (suffix) strncat(num, suffix, sizeof num - strlen(num) - 1);
    int nw = draw_width(num);
    int fill = w - 1 - nw - 1;
    size_t len = 0;
    const char *g = heat_glyph(level, draw_utf8());
    for (int i = 0; i < fill && len + 8 < sizeof cell; i++) len += (size_t)snprintf(cell + len, sizeof cell - len, "%s", g);
    snprintf(cell + len, sizeof cell - len, " %s", num);
    draw_str(y, x, w - 1, cursor ? C_CURSOR : draw_heat_role(level), cell);
}

void view_grid_note(int y, int x, int w, const GridLayout *g, int64_t n_rows, int64_t n_cols) {
    int rows_cut = g->first_row > 0 || g->first_row + g->n_vis_rows < n_rows;
    int cols_cut = g->first_col > 0 || g->first_col + g->n_vis_cols < n_cols;
    if (!rows_cut && !cols_cut) return;
    char cols[64] = "";
    if (cols_cut)
        snprintf(cols, sizeof cols, "%scolumns %d-%d of %lld, h/l", rows_cut ? "; " : "", g->first_col + 1,
                 g->first_col + g->n_vis_cols, (long long)n_cols);
    if (rows_cut)
        draw_text(y, x, w, C_DIM, "(layers %d-%d of %lld, j/k scroll%s)", g->first_row, g->first_row + g->n_vis_rows - 1,
                  (long long)n_rows, cols);
    else
        draw_text(y, x, w, C_DIM, "(%s)", cols);
}

void view_legend(int y, int x, int w, const HeatScale *s, const char *title) {
    int tw = draw_str(y, x, w, C_NORMAL, title);
    int bw = w - tw - 2;
    if (bw > 50) bw = 50;
    if (bw < 10 || s->empty) return;
    int bx = x + tw + 1;
    for (int i = 0; i < bw; i++) {
        double f = (double)i / (bw - 1), v;
        if (s->log) v = s->lo * pow(s->hi / s->lo, f);
        else v = s->lo + (s->hi - s->lo) * f;
        int lv = heat_level(s, v, HEAT_LEVELS);
        draw_str(y, bx + i, 1, draw_heat_role(lv), heat_glyph(lv, draw_utf8()));
    }
    double t[8];
    int nt = heat_ticks(s, t, 8);
    int last_end = bx - 1;
    for (int k = 0; k < nt; k++) {
        double p = heat_scale_pos(s, t[k]);
        if (isnan(p)) continue;
        int col = bx + (int)lround(p * (bw - 1));
        char lab[24];
        heat_fmt_tick(t[k], lab, sizeof lab);
        int lw = draw_width(lab);
        int lx = col - lw / 2;
        if (lx < bx) lx = bx;
        if (lx <= last_end) continue;
        draw_str(y + 1, col, 1, C_DIM, draw_utf8() ? "\u2191" : "^");
        draw_str(y + 2, lx, lw, C_NORMAL, lab);
        last_end = lx + lw;
    }
}

static void act_side(const App *a, const Rect *s) {
    const CalibStats *cs = a->cs;
    int64_t l = a->act.row;
    int t = (int)a->act.col;
    const TapStats *ts = calib_tap(cs, l, (TapPoint)t);
    int x = s->x + 1, w = s->w - 2, y = s->y;
    char b[24];
    draw_text(y++, x, w, C_HEADER, "L%lld %s", (long long)l, tap_label(t));
    draw_text(y++, x, w, C_DIM, "%s", tap_desc(t));
    draw_text(y++, x, w, C_NORMAL, "width %lld, %lld rows", (long long)ts->width, (long long)ts->n_rows);
    double med = hist_percentile(ts->hist, 0.5, ts->absmax);
    draw_text(y++, x, w, C_NORMAL, "max|x|      %s", heat_fmt(ts->absmax, b, sizeof b));
    draw_text(y++, x, w, C_NORMAL, "median|x|   %s", heat_fmt(med, b, sizeof b));
    draw_text(y++, x, w, C_NORMAL, "max/median  %s", heat_fmt(vm_act_value(cs, l, (TapPoint)t, AM_RATIO), b, sizeof b));
    draw_text(y++, x, w, C_NORMAL, "p99.9|x|    %s", heat_fmt(hist_percentile(ts->hist, 0.999, ts->absmax), b, sizeof b));
    draw_text(y++, x, w, C_NORMAL, "kurtosis    %s", heat_fmt(moments_kurtosis(&ts->mom), b, sizeof b));
    draw_text(y++, x, w, C_NORMAL, "mean        %s", heat_fmt(ts->mom.mean, b, sizeof b));
    draw_text(y++, x, w, C_NORMAL, "std         %s", heat_fmt(sqrt(moments_variance(&ts->mom)), b, sizeof b));
    if (t != TAP_RESID) {
        SpikeScore *sc = NULL;
        int64_t n = 0;
        Err err;
        err_init(&err);
        if (spikes_score(cs, &sc, &n, &err) == ST_OK) {
            for (int64_t i = 0; i < n; i++)
                if (sc[i].layer == l && (int)sc[i].tap == t)
                    draw_text(y++, x, w, sc[i].rank <= SPIKES_DEFAULT_K ? C_WARN : C_NORMAL, "spike rank  %lld of %lld%s",
                              (long long)sc[i].rank, (long long)n, sc[i].rank <= SPIKES_DEFAULT_K ? " (top 3)" : "");
            free(sc);
        }
    }
    if (ts->n_top > 0 && y < s->y + s->h - 2) {
        const Spike *sp = &ts->top[0];
        draw_text(y++, x, w, C_NORMAL, "top spike   %s at ch %d", heat_fmt(sp->value, b, sizeof b), sp->channel);
        char tok[4 * sizeof sp->text + 8];
        draw_text(y++, x, w, C_NORMAL, "  pos %d, token '%s'", sp->pos, token_show(sp->text, tok, sizeof tok));
    }
    if (ts->has_act && y < s->y + s->h - 4) {
        y++;
        draw_str(y++, x, w, C_HEADER, "int8 activations, rel. err");
        static const char *const mode[ACT_MODE_COUNT] = {"tensor static ", "tensor dynamic", "per token     "};
        for (int m = 0; m < ACT_MODE_COUNT && y < s->y + s->h; m++)
            draw_text(y++, x, w, C_NORMAL, "  %s %s", mode[m], heat_fmt(tapstats_act_rel_err(ts, ACT_INT8, (ActMode)m), b, sizeof b));
    }
}

/* === Drill-down === */

static void act_drill(const App *a, const Layout *l) {
    const CalibStats *cs = a->cs;
    int64_t layer = a->act.row;
    int t = (int)a->act.col;
    const TapStats *ts = calib_tap(cs, layer, (TapPoint)t);
    const Rect *r = &l->body;
    int lw = r->w / 2;
    char b[24];
    draw_text(r->y, r->x + 1, r->w - 2, C_HEADER, "L%lld %s (%s): %lld channels, Esc back", (long long)layer,
              tap_label(t), tap_desc(t), (long long)ts->width);
    /* Channel bars. */
    int64_t *idx = malloc((size_t)ts->width * sizeof *idx);
    if (!idx) return;
    vm_channel_order(ts, a->act.sort_by_value, idx);
    int64_t shown = a->act.topk > 0 && a->act.topk < ts->width ? a->act.topk : ts->width;
    int rows = r->h - 2;
    char kk[24];
    if (a->act.topk > 0 && a->act.topk < ts->width) snprintf(kk, sizeof kk, "top %d", a->act.topk);
    else snprintf(kk, sizeof kk, "all");
    draw_text(r->y + 1, r->x + 1, lw - 2, C_NORMAL, "max|x| by channel%s, %s (s, t)",
              a->act.sort_by_value ? "" : " in order", kk);
    int64_t first = a->act.scroll;
    if (first > shown - rows + 1) first = shown - rows + 1;
    if (first < 0) first = 0;
    int barw = lw - 20;
    for (int i = 0; i < rows - 1 && first + i < shown; i++) {
        int64_t c = idx[first + i];
        double v = ts->ch_absmax[c];
        int y = r->y + 2 + i;
        draw_text(y, r->x + 1, 8, C_DIM, "ch%5lld", (long long)c);
        draw_bar(y, r->x + 9, barw, ts->absmax > 0 ? v / ts->absmax : 0, v >= 0.5 * ts->absmax ? C_WARN : C_BAR);
        draw_text(y, r->x + 10 + barw, 8, C_NORMAL, "%s", heat_fmt(v, b, sizeof b));
    }
    free(idx);
    /* |x| histogram. */
    int rx = r->x + lw + 1, rw = r->w - lw - 2;
    int hrows = (r->h - 3) / 2;
    uint64_t coarse[64];
    int64_t f, lst;
    if (hrows > 64) hrows = 64;
    uint64_t mx = heat_rebin(ts->hist, HIST_NBINS, hrows, coarse, &f, &lst);
    draw_str(r->y + 1, rx, rw, C_NORMAL, "|x| histogram: bin start, count");
    if (f >= 0) {
        int64_t span = lst - f + 1;
        for (int i = 0; i < hrows; i++) {
            int64_t b0 = f + (i * span + hrows - 1) / hrows, b1 = f + ((i + 1) * span + hrows - 1) / hrows - 1;
            if (b0 > lst) break;
            if (b1 < b0) b1 = b0;
            double lo, hi, lo2, hi2;
            hist_bin_range((int)b0, &lo, &hi);
            hist_bin_range((int)b1, &lo2, &hi2);
            int y = r->y + 2 + i;
            char blo[16];
            draw_text(y, rx, 8, C_DIM, "%7s", heat_fmt(lo, blo, sizeof blo));
            int hb = rw - 17;
            draw_bar(y, rx + 8, hb, mx ? (double)coarse[i] / (double)mx : 0, C_BAR);
            draw_text(y, rx + 9 + hb, 8, C_NORMAL, "%llu", (unsigned long long)coarse[i]);
        }
    }
    /* Top spikes: with the tokens before each (the windows rebuilt from the
     * calibration text), duplicates (same channel, token, context) merged. */
    int sy = r->y + 3 + hrows;
    enum { NS = 64 }; /* the first NS spikes: more than a screen shows */
    int64_t ns = ts->n_top < NS ? ts->n_top : NS, keep[NS], count[NS];
    char ctx[NS][96];
    const char *cp[NS];
    for (int64_t i = 0; i < ns; i++) {
        spikes_context(a->m->tok, a->cs_seqs, a->cs_nseqs, a->cs->params.seqlen, &ts->top[i], ctx[i], sizeof ctx[i]);
        cp[i] = ctx[i];
    }
    int64_t nk = spikes_merge(ts->top, ns, a->cs_seqs ? cp : NULL, keep, count);
    draw_text(sy++, rx, rw, C_HEADER, "%8s %5s %4s %4s %3s  %s", "value", "ch", "pos", "seq", "n",
              a->cs_seqs ? "context [token]" : "token");
    for (int64_t i = 0; i < nk && sy < r->y + r->h; i++, sy++) {
        const Spike *sp = &ts->top[keep[i]];
        char tok[4 * sizeof sp->text + 8], n[8] = "";
        if (count[i] > 1) snprintf(n, sizeof n, "x%lld", (long long)count[i]);
        if (a->cs_seqs)
            draw_text(sy, rx, rw, C_NORMAL, "%8s %5d %4d %4lld %3s  %s", heat_fmt(sp->value, b, sizeof b), sp->channel,
                      sp->pos, (long long)sp->seq, n, ctx[keep[i]]);
        else
            draw_text(sy, rx, rw, C_NORMAL, "%8s %5d %4d %4lld %3s  '%s'", heat_fmt(sp->value, b, sizeof b), sp->channel,
                      sp->pos, (long long)sp->seq, n, token_show(sp->text, tok, sizeof tok));
    }
}

static void act_draw(const App *a, const Layout *l) {
    const CalibStats *cs = a->cs;
    if (!cs) {
        view_no_calib(a, &l->main, "The activation heat map");
        return;
    }
    if (a->act.drill) {
        act_drill(a, l);
        return;
    }
    const Rect *r = &l->main;
    int64_t nl = cs->n_layers;
    double *grid = malloc((size_t)(nl * TAP_COUNT) * sizeof *grid);
    if (!grid) return;
    vm_act_grid(cs, (ActMetric)a->act.metric, grid);
    HeatScale s;
    heat_scale_fit(&s, grid, nl * TAP_COUNT, 1);
    char sum[160];
    app_calib_summary(a, sum, sizeof sum);
    draw_text(r->y, r->x + 1, r->w - 2, C_HEADER, "%s (m) per layer and input", act_metric_name((ActMetric)a->act.metric));
    draw_text(r->y + 1, r->x + 1, r->w - 2, C_DIM, "%s", sum);
    GridLayout g;
    Rect gr = {r->x, r->y + 2, r->w, r->h - 2};
    layout_grid(&g, &gr, nl, TAP_COUNT, 5, 7, 11, 1, 4, a->act.row, a->act.col);
    int y = gr.y;
    for (int c = 0; c < g.n_vis_cols; c++)
        draw_text(y, gr.x + g.label_w + c * g.cell_w, g.cell_w - 1, C_HEADER, "%*s", g.cell_w - 1, tap_label(g.first_col + c));
    y++;
    for (int rr = 0; rr < g.n_vis_rows; rr++, y++) {
        int64_t layer = g.first_row + rr;
        draw_text(y, gr.x + 1, g.label_w - 1, layer == a->act.row ? C_HEADER : C_DIM, "L%lld", (long long)layer);
        for (int c = 0; c < g.n_vis_cols; c++) {
            int t = g.first_col + c;
            double v = grid[layer * TAP_COUNT + t];
            view_heat_cell(y, gr.x + g.label_w + c * g.cell_w, g.cell_w, heat_level(&s, v, HEAT_LEVELS), v,
                           layer == a->act.row && t == a->act.col, NULL);
        }
    }
    view_grid_note(y, gr.x + 1, gr.w - 2, &g, nl, TAP_COUNT);
    y++;
    view_legend(y, gr.x + 1, gr.w - 2, &s, "log scale");
    free(grid);
    if (l->side.w) act_side(a, &l->side);
}

/* `s` in the grid: the cursor goes to the largest cell by the metric, then
 * the next largest on each press (wrapping), and the message says which. */
static int jump_to_rank(App *a) {
    ActViewState *s = &a->act;
    int64_t n = a->cs->n_layers * TAP_COUNT;
    double *g = malloc((size_t)n * sizeof *g);
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    if (!g || !idx) {
        free(g);
        free(idx);
        app_msg(a, 1, "out of memory");
        return R_REDRAW;
    }
    vm_act_grid(a->cs, (ActMetric)s->metric, g);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(g[i])) idx[m++] = i;
    /* descending by value, ties by position (insertion sort: a few hundred cells) */
    for (int64_t i = 1; i < m; i++) {
        int64_t v = idx[i], j = i;
        while (j > 0 && (g[idx[j - 1]] < g[v] || (g[idx[j - 1]] == g[v] && idx[j - 1] > v))) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
    if (m > 0) {
        /* continue the ranking when the cursor is where the last `s` put it, else start at the top */
        int64_t cur = s->row * TAP_COUNT + s->col;
        int64_t r = s->jump >= 0 && s->jump < m && idx[s->jump] == cur ? (s->jump + 1) % m : 0;
        s->jump = r;
        s->row = idx[r] / TAP_COUNT;
        s->col = idx[r] % TAP_COUNT;
        char b[32];
        app_msg(a, 0, "%s rank %lld of %lld: L%lld %s = %s (s: next)", act_metric_name((ActMetric)s->metric),
                (long long)r + 1, (long long)m, (long long)s->row, tap_name((TapPoint)s->col),
                heat_fmt(g[idx[r]], b, sizeof b));
    }
    free(g);
    free(idx);
    return R_REDRAW;
}

static int act_key(App *a, Action act) {
    ActViewState *s = &a->act;
    if (!a->cs) return R_UNHANDLED;
    const TapStats *ts = calib_tap(a->cs, s->row, (TapPoint)s->col);
    if (s->drill) {
        int64_t shown = s->topk > 0 && s->topk < ts->width ? s->topk : ts->width;
        if (view_move(act, &s->scroll, shown, 10)) return R_REDRAW;
        switch (act) {
        case AC_BACK: s->drill = 0; return R_REDRAW;
        case AC_SORT: s->sort_by_value = !s->sort_by_value; s->scroll = 0; return R_REDRAW;
        case AC_TOPK: s->topk = s->topk == 16 ? 32 : s->topk == 32 ? 64 : s->topk == 64 ? 0 : 16; s->scroll = 0; return R_REDRAW;
        default: return R_UNHANDLED;
        }
    }
    if (view_move(act, &s->row, a->cs->n_layers, 5)) return R_REDRAW;
    switch (act) {
    case AC_LEFT: if (s->col > 0) s->col--; return R_REDRAW;
    case AC_RIGHT: if (s->col < TAP_COUNT - 1) s->col++; return R_REDRAW;
    case AC_METRIC: s->metric = (s->metric + 1) % AM_COUNT; return R_REDRAW;
    case AC_ENTER: s->drill = 1; s->scroll = 0; return R_REDRAW;
    case AC_SORT: return jump_to_rank(a);
    default: return R_UNHANDLED;
    }
}

static int act_wants_side(const App *a, int cols) {
    (void)cols; return a->cs && !a->act.drill; }

const ViewOps view_act_ops = {.draw = act_draw, .key = act_key, .side = act_wants_side};
