/* The Plan view: layers × projections with each entry's compact code, edits
 * on the cell / row / column / marked cells / everything, presets, undo/redo,
 * the live size budget and the diff against the last evaluated plan. */
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
#include "quant/plan_edit.h"
#include "quant/preset.h"
#include "sessions/session.h"
#include "tui/draw.h"
#include "tui/plan_grid.h"
#include "tui/views.h"
#include "tui/vmodel.h"

static PlanModel pm_of(const App *a) { return PLAN_MODEL_FROM_CONFIG(&a->m->cfg); }

static void entry_words(const PlanEntry *e, char *buf, size_t n) {
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    char grp[64] = "";
    if (e->w.fmt == QF_AQLM) {
        snprintf(buf, n, "aqlm %d codebook%s of 2^%d, g=%d: %.3g code bits/weight%s%s",
                 e->aqlm.M, e->aqlm.M == 1 ? "" : "s", e->aqlm.B, e->aqlm.g, aqlm_code_bpw(&e->aqlm),
                 e->act != ACT_NONE ? ", act " : "", e->act != ACT_NONE ? act_format_name(e->act) : "");
        return;
    }
    if (t && t->needs_scale) {
        if (e->w.dim == GROUP_TENSOR) snprintf(grp, sizeof grp, ", one scale per tensor");
        else if (e->w.group == 0) snprintf(grp, sizeof grp, ", one scale per %s", e->w.dim == GROUP_OC ? "output channel" : "input channel");
        else snprintf(grp, sizeof grp, ", groups of %lld along %s", (long long)e->w.group, e->w.dim == GROUP_OC ? "OC" : "IC");
        if (e->method == QM_ADADIM) { /* AdaDim picks OC or IC per matrix */
            if (e->w.group) snprintf(grp, sizeof grp, ", groups of %lld", (long long)e->w.group);
            else snprintf(grp, sizeof grp, ", per channel");
        }
    }
    const char *meth = t && t->needs_scale ? qmethod_name(e->method) : "direct conversion";
    if (t && t->needs_scale && e->method == QM_ADADIM) meth = e->adadim_base == QM_GPTQ ? "adadim/gptq" : "adadim/rtn";
    snprintf(buf, n, "%s%s%s, %s, act %s", t ? t->name : "?", t && t->is_int ? (e->w.sym ? " sym" : " asym") : "", grp,
             meth, act_format_name(e->act));
}

/* 1 when the cursor is on the embedding / output row under the grid. */
static int on_end_row(const App *a) { return a->plan.row >= a->pe->n_layers; }

/* The cursor's entry and its name ("L2.down", "embed", "output"). */
static const PlanEntry *cursor_entry(const App *a, char *site, size_t n) {
    if (on_end_row(a)) {
        snprintf(site, n, "%s", a->plan.col == PE_END_EMBED ? "embed" : "output");
        return plan_edit_end(a->pe, (PeEnd)a->plan.col);
    }
    snprintf(site, n, "L%lld.%s", (long long)a->plan.row, plan_proj_name((int)a->plan.col));
    return plan_edit_cell(a->pe, a->plan.row, (int)a->plan.col);
}

/* The cursor entry's cost line: its output error from the sensitivity map
 * (RTN, symmetric: the map's cells; "-" where the map lacks the entry) and
 * its kernel's time on the site's shape from the speed table. */
static void cursor_cost(const App *a, const PlanEntry *e, int y, int x, int w) {
    char err[48] = "", ds[16], ps[16];
    int64_t no, ni;
    PlanModel pm = pm_of(a);
    if (on_end_row(a)) {
        if (a->plan.col == PE_END_EMBED) { /* a lookup: no matmul to time */
            draw_text(y, x, w, C_DIM, "  the embedding is a row lookup: no kernel time");
            return;
        }
        no = pm.vocab_size;
        ni = pm.dim;
    } else {
        plan_proj_shape(&pm, (int)a->plan.col, &no, &ni);
        double oerr, werr;
        if (calib_sens_cell(a->cs, a->plan.row, (int)a->plan.col, &e->w, &werr, &oerr))
            snprintf(err, sizeof err, "%s err %.3g (map, rtn) · ", isnan(oerr) ? "weight" : "out", isnan(oerr) ? werr : oerr);
    }
    double dec, pre;
    if (app_speed_lookup(a, e, no, ni, &dec, &pre))
        draw_text(y, x, w, C_NORMAL, "  %skernel on %lldx%lld: decode %s, prefill %s/token", err, (long long)no,
                  (long long)ni, vm_fmt_secs(dec, ds, sizeof ds), vm_fmt_secs(pre, ps, sizeof ps));
    else
        draw_text(y, x, w, C_DIM, "  %skernel on %lldx%lld: not in the speed table (T times it)", err, (long long)no,
                  (long long)ni);
}

/* === The settings panel (o): the settings only the CLI could reach === */

enum { ST_ACT_GRAN, ST_ACT_SCALE, ST_ACT_SKIP, ST_SMOOTH, ST_DAMP, ST_ACT_ORDER, ST_BLOCK, ST_STATIC_GROUPS,
       ST_ADABASE, ST_COUNT };

static const double SMOOTH_VALUES[] = {0, 0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0};
static const double DAMP_VALUES[] = {0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2};
static const int64_t BLOCK_VALUES[] = {16, 32, 64, 128, 256, 512};
#define NV(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* The label, the value as text and the edit bit of setting k for entry e. */
static unsigned setting_text(int k, const PlanEntry *e, char *label, size_t ln, char *val, size_t vn) {
    switch (k) {
    case ST_ACT_GRAN:
        snprintf(label, ln, "activation granularity");
        snprintf(val, vn, "%s", act_gran_name(e->act_gran));
        return PE_ACT_GRAN;
    case ST_ACT_SCALE:
        snprintf(label, ln, "activation scale");
        snprintf(val, vn, "%s", act_scale_name(e->act_scale));
        return PE_ACT_SCALE;
    case ST_ACT_SKIP:
        snprintf(label, ln, "activation range skips token 0");
        snprintf(val, vn, "%s", e->act_skip_first ? "yes" : "no");
        return PE_ACT_SKIP;
    case ST_SMOOTH:
        snprintf(label, ln, "SmoothQuant alpha (q/k/v, gate/up)");
        if (e->smooth_alpha > 0) snprintf(val, vn, "%.2f", e->smooth_alpha);
        else snprintf(val, vn, "off");
        return PF_SMOOTH;
    case ST_DAMP:
        snprintf(label, ln, "GPTQ damp");
        snprintf(val, vn, "%g", e->gptq.damp);
        return PE_GPTQ;
    case ST_ACT_ORDER:
        snprintf(label, ln, "GPTQ act-order");
        snprintf(val, vn, "%s", e->gptq.act_order ? "yes" : "no");
        return PE_GPTQ;
    case ST_BLOCK:
        snprintf(label, ln, "GPTQ block");
        snprintf(val, vn, "%lld", (long long)e->gptq.block);
        return PE_GPTQ;
    case ST_STATIC_GROUPS:
        snprintf(label, ln, "GPTQ static groups");
        snprintf(val, vn, "%s", e->gptq.static_groups ? "yes" : "no");
        return PE_GPTQ;
    default:
        snprintf(label, ln, "AdaDim base method");
        snprintf(val, vn, "%s", qmethod_name(e->adadim_base));
        return PE_ADABASE;
    }
}

static int next_double(const double *v, int n, double x, int dir) {
    int i = 0;
    while (i < n && v[i] < x - 1e-9) i++;
    if (i < n && fabs(v[i] - x) < 1e-9) i += dir;
    else if (dir < 0) i--;
    return ((i % n) + n) % n;
}

/* Entry e with setting k stepped in direction dir. */
static void setting_step(int k, PlanEntry *e, int dir) {
    switch (k) {
    case ST_ACT_GRAN: e->act_gran = e->act_gran == ACT_PER_TENSOR ? ACT_PER_TOKEN : ACT_PER_TENSOR; break;
    case ST_ACT_SCALE: e->act_scale = e->act_scale == ACT_DYNAMIC ? ACT_STATIC : ACT_DYNAMIC; break;
    case ST_ACT_SKIP: e->act_skip_first = !e->act_skip_first; break;
    case ST_SMOOTH: e->smooth_alpha = (float)SMOOTH_VALUES[next_double(SMOOTH_VALUES, NV(SMOOTH_VALUES), e->smooth_alpha, dir)]; break;
    case ST_DAMP: e->gptq.damp = DAMP_VALUES[next_double(DAMP_VALUES, NV(DAMP_VALUES), e->gptq.damp, dir)]; break;
    case ST_ACT_ORDER: e->gptq.act_order = !e->gptq.act_order; break;
    case ST_BLOCK: {
        int i = 0;
        while (i < NV(BLOCK_VALUES) && BLOCK_VALUES[i] < e->gptq.block) i++;
        if (i < NV(BLOCK_VALUES) && BLOCK_VALUES[i] == e->gptq.block) i += dir;
        else if (dir < 0) i--;
        e->gptq.block = BLOCK_VALUES[((i % NV(BLOCK_VALUES)) + NV(BLOCK_VALUES)) % NV(BLOCK_VALUES)];
        break;
    }
    case ST_STATIC_GROUPS: e->gptq.static_groups = !e->gptq.static_groups; break;
    default: e->adadim_base = e->adadim_base == QM_RTN ? QM_GPTQ : QM_RTN; break;
    }
}

static void settings_draw(const App *a, const Layout *l) {
    char site[32];
    const PlanEntry *e = cursor_entry(a, site, sizeof site);
    int bh = ST_COUNT + 4;
    if (bh > l->body.h) bh = l->body.h;
    int bw = l->cols - 4 < 76 ? l->cols - 4 : 76;
    Rect box = {2, l->body.y + l->body.h - bh, bw, bh}; /* at the bottom: the grid's first rows stay in view */
    char title[96];
    snprintf(title, sizeof title, "Settings of %s for the scope (%s): +/- change, Esc closes", site,
             pe_scope_name((PeScope)a->plan.scope));
    draw_box(&box, title);
    for (int k = 0; k < ST_COUNT && k < bh - 3; k++) {
        char label[64], val[32];
        setting_text(k, e, label, sizeof label, val, sizeof val);
        draw_text(box.y + 1 + k, box.x + 2, box.w - 4, k == a->plan.settings_sel ? C_CURSOR : C_POPUP, "%s %-36s %s",
                  k == a->plan.settings_sel ? ">" : " ", label, val);
    }
    draw_str(box.y + bh - 2, box.x + 2, box.w - 4, C_POPUP,
             "AQLM beam: not a plan setting (the quantizer searches with beam 1)");
}

/* The last auto plan's account under the grid: its budget and prediction,
 * the cursor site's trade-off against the neighbouring candidates (wrapped
 * at its "; "), then per site the choice and its predicted loss ('*': the
 * auto plan changed the cell); the cursor's site is highlighted and kept in
 * view. */
static void auto_draw(const App *a, int y, int h, int x, int w) {
    if (h < 4) return;
    draw_text(y++, x, w, C_HEADER, "%s", a->plan.auto_head);
    int64_t n = a->plan.n_auto;
    int64_t cur = on_end_row(a) ? -1 : a->plan.row * PLAN_NPROJ + a->plan.col;
    char site[24];
    if (cur >= 0) {
        const char *why = a->plan.auto_sites[cur].why;
        snprintf(site, sizeof site, "L%lld.%s", (long long)a->plan.row, plan_proj_name((int)a->plan.col));
        /* two lines: as many "; "-separated parts as fit on the first */
        char l1[256];
        int lw = w - pe_text_width(site) - 2;
        size_t cut = strlen(why);
        for (const char *p = why; (p = strstr(p, "; ")) != NULL; p += 2) {
            char t[256];
            snprintf(t, sizeof t, "%.*s", (int)(p - why), why);
            if (pe_text_width(t) > lw) break;
            cut = (size_t)(p - why);
        }
        snprintf(l1, sizeof l1, "%.*s", (int)cut, why);
        draw_text(y++, x, w, C_NORMAL, "%s: %s", site, l1);
        draw_text(y++, x, w, C_NORMAL, "  %s", why[cut] ? why + cut + 2 : "");
    } else {
        draw_text(y++, x, w, C_DIM, "the embedding and the head stay fp16 in the auto plan (counted in the budget)");
        y++;
    }
    int rows = h - 3;
    int64_t first = layout_scroll(n, 2 * (int64_t)rows, cur >= 0 ? cur : n - 1, 0);
    int cw = (w - 2) / 2 > 46 ? 46 : (w - 2) / 2; /* two columns of sites */
    for (int64_t k = 0; k < 2 * (int64_t)rows && first + k < n; k++) {
        int64_t s = first + k;
        const AutoSiteWhy *e = &a->plan.auto_sites[s];
        snprintf(site, sizeof site, "L%lld.%s", (long long)(s / PLAN_NPROJ), plan_proj_name((int)(s % PLAN_NPROJ)));
        ColorRole role = s == cur ? C_CURSOR : e->changed ? C_CHANGED : C_NORMAL;
        char loss[16];
        draw_text(y + (int)(k % rows), x + (int)(k / rows) * (cw + 2), cw, role, "%s%s%-8s %-11s loss %s",
                  e->changed ? "*" : " ", s == cur ? ">" : " ", site, e->choice, vm_fit_num(loss, 8, e->loss, 5, 0));
    }
}

static void plan_draw(const App *a, const Layout *l) {
    const PlanEdit *pe = a->pe;
    const Rect *r = &l->main;
    int x0 = r->x + 1, w = r->w - 2;
    int64_t diff = app_plan_diff(a);
    int64_t nmarked = 0;
    for (int64_t i = 0; i < pe->n_layers * PLAN_NPROJ; i++) nmarked += a->plan.marks[i] != 0;
    char head[200];
    snprintf(head, sizeof head, "Plan: %s%s", pe->cur.name, pe->cur.n_edits ? "" : "");
    int x = x0 + draw_str(r->y, x0, w, C_HEADER, head);
    if (pe->cur.n_edits) x += draw_text(r->y, x, w - (x - x0), C_CHANGED, " +%lld edit%s", (long long)pe->cur.n_edits, pe->cur.n_edits == 1 ? "" : "s");
    x += draw_text(r->y, x, w - (x - x0), C_NORMAL, "   scope: %s (v)", pe_scope_name((PeScope)a->plan.scope));
    if (nmarked) x += draw_text(r->y, x, w - (x - x0), C_MARK, "   %lld marked", (long long)nmarked);
    if (diff >= 0) draw_text(r->y, x, w - (x - x0), diff ? C_CHANGED : C_DIM, "   vs #%lld: %lld %s%s",
                             (long long)a->last_eval_id, (long long)diff, diff == 1 ? "cell differs" : "cells differ",
                             diff ? " (*)" : "");

    /* The grid: columns as wide as their codes (abbreviated to fit, with a legend). */
    PeGridFit fit;
    pe_grid_fit(pe, w + 1, a->plan.row < pe->n_layers ? a->plan.col : PLAN_Q, &fit);
    int footer = 7 + (fit.level > 0);
    int gx = r->x, gy = r->y + 1;
    int vis_rows = r->h - 1 - 1 - footer;
    if (vis_rows < 1) vis_rows = 1;
    int64_t cur_layer = a->plan.row < pe->n_layers ? a->plan.row : pe->n_layers - 1;
    int first_row = (int)layout_scroll(pe->n_layers, vis_rows, cur_layer, 0);
    int n_rows = (int)(pe->n_layers - first_row < vis_rows ? pe->n_layers - first_row : vis_rows);
    int colx[PLAN_NPROJ];
    for (int c = 0, cx = gx + fit.label_w; c < fit.n_vis_cols; c++) {
        colx[c] = cx;
        cx += fit.col_w[fit.first_col + c];
    }
    int y = gy;
    for (int c = 0; c < fit.n_vis_cols; c++) {
        int p = fit.first_col + c;
        draw_text(y, colx[c], fit.col_w[p], C_HEADER, "%s", plan_proj_name(p));
    }
    y++;
    for (int rr = 0; rr < n_rows; rr++, y++) {
        int64_t layer = first_row + rr;
        draw_text(y, gx + 1, fit.label_w - 1, layer == a->plan.row ? C_HEADER : C_DIM, "L%lld", (long long)layer);
        for (int c = 0; c < fit.n_vis_cols; c++) {
            int p = fit.first_col + c;
            const PlanEntry *e = plan_edit_cell(pe, layer, p);
            char code[48];
            pe_cell_code(e, fit.level, code, sizeof code);
            int idx = (int)(layer * PLAN_NPROJ + p);
            int changed = a->last_eval && !plan_entry_equal(e, &a->last_eval->cells[idx]);
            /* '*' marks a change when it fits; the colour (bold without colours) always does */
            int cursor = layer == a->plan.row && p == a->plan.col;
            /* the cursor's "[code*]" keeps the gap before the next column too */
            if (changed && draw_width(code) + (cursor ? 3 : 2) <= fit.col_w[p])
                strncat(code, "*", sizeof code - strlen(code) - 1);
            ColorRole role = C_NORMAL;
            if (changed) role = C_CHANGED;
            if (a->plan.marks[idx]) role = C_MARK;
            if (cursor) role = C_CURSOR;
            if (role == C_CURSOR) { /* brackets keep the cursor visible without colours */
                char pad[56];
                snprintf(pad, sizeof pad, "[%s]", code);
                draw_str(y, colx[c] - 1, fit.col_w[p] + 1, role, pad);
            } else {
                draw_str(y, colx[c], fit.col_w[p] - 1, role, code);
            }
        }
    }
    if (first_row > 0 || first_row + n_rows < pe->n_layers || fit.n_vis_cols < PLAN_NPROJ) {
        char cols[48] = "";
        if (fit.n_vis_cols < PLAN_NPROJ)
            snprintf(cols, sizeof cols, "; columns %s-%s of q-down, h/l scroll", plan_proj_name(fit.first_col),
                     plan_proj_name(fit.first_col + fit.n_vis_cols - 1));
        draw_text(y++, gx + 1, w, C_DIM, "(layers %d-%d of %lld%s)", first_row, first_row + n_rows - 1,
                  (long long)pe->n_layers, cols);
    }
    /* The embedding and the output head: a row of their own, edited like cells. */
    int ex = gx + 1;
    for (int k = 0; k < PE_END_COUNT; k++) {
        const PlanEntry *e = plan_edit_end(pe, (PeEnd)k);
        char code[48];
        plan_entry_code(e, code, sizeof code);
        const PlanEntry *was = a->last_eval ? (k == PE_END_EMBED ? &a->last_eval->embed : &a->last_eval->output) : NULL;
        int changed = was && !plan_entry_equal(e, was);
        if (changed) strncat(code, "*", sizeof code - strlen(code) - 1);
        ex += draw_str(y, ex, w, C_HEADER, k == PE_END_EMBED ? "embed " : "   output ");
        int cur = a->plan.row == pe->n_layers && a->plan.col == k;
        char pad[56];
        snprintf(pad, sizeof pad, cur ? "[%s]" : " %s ", code);
        ex += draw_str(y, ex, w, cur ? C_CURSOR : changed ? C_CHANGED : C_NORMAL, pad);
    }
    if (a->m->cfg.tied_embeddings) draw_str(y, ex, w - ex, C_DIM, " (head tied to the embedding)");
    y++;
    if (fit.level > 0) draw_str(y++, x0, w, C_DIM, pe_code_legend(fit.level));
    y++;
    /* Budget bar. */
    PlanBudget b;
    app_plan_budget(a, &b);
    draw_str(y, x0, 7, C_NORMAL, "budget");
    int bw = w / 3;
    double frac = b.valid && !isnan(b.frac_fp16) ? b.frac_fp16 : 0;
    draw_bar(y, x0 + 7, bw, frac, frac > 0.75 ? C_WARN : C_BAR);
    /* the predicted speed beside the size: matmuls only, from this machine's speed table */
    char tps[64] = "";
    if (b.valid && b.decode_tps > 0)
        snprintf(tps, sizeof tps, "  ~%.0f tok/s decode, %.0f prefill", b.decode_tps, b.prefill_tps);
    else if (b.valid && a->speed)
        snprintf(tps, sizeof tps, "  (tok/s: T times the kernels)");
    if (b.valid)
        draw_text(y++, x0 + 8 + bw, w - 8 - bw, C_NORMAL, "%.2f bpw  %.3f MB  %.0f%% of fp16%s", b.bpw, b.bytes / 1e6,
                  100 * b.frac_fp16, tps);
    else
        draw_text(y++, x0 + 8 + bw, w - 8 - bw, C_ERROR, "invalid: %s", b.error);
    char words[200], code[48], site[32];
    const PlanEntry *ce = cursor_entry(a, site, sizeof site);
    entry_words(ce, words, sizeof words);
    plan_entry_code(ce, code, sizeof code);
    draw_text(y++, x0, w, C_NORMAL, "%s %s: %s", site, code, words);
    cursor_cost(a, ce, y++, x0, w);
    if (a->plan.auto_open && a->plan.auto_sites) auto_draw(a, y + 1, r->y + r->h - (y + 1), x0, w);

    if (a->plan.settings_open) settings_draw(a, l);
    if (a->plan.preset_open) {
        int n;
        const PresetInfo *pi = plan_presets(&n);
        int bh = n + 3;
        if (bh > l->body.h) bh = l->body.h;
        Rect box = {2, l->body.y, l->cols - 4, bh};
        draw_box(&box, "Preset (Enter applies, Esc closes; spike-aware uses the calibration's top 3)");
        int first = (int)layout_scroll(n, bh - 2, a->plan.preset_sel, 0);
        int nw = 0;
        for (int i = 0; i < n; i++)
            if ((int)strlen(pi[i].name) > nw) nw = (int)strlen(pi[i].name);
        int dw = box.w - 4 - (nw + 4); /* room for the description */
        for (int i = first; i < n && i - first < bh - 2; i++) {
            char desc[160];
            snprintf(desc, sizeof desc, "%s", pi[i].desc);
            if (dw > 4 && pe_text_width(desc) > dw && dw < (int)sizeof desc - 4) /* ASCII descriptions */
                snprintf(desc + dw - 1, sizeof desc - (size_t)dw + 1, "%s", draw_utf8() ? "\u2026" : "~");
            draw_text(box.y + 1 + i - first, box.x + 2, box.w - 4, i == a->plan.preset_sel ? C_CURSOR : C_POPUP,
                      "%s %-*s %s", i == a->plan.preset_sel ? ">" : " ", nw + 1, pi[i].name, desc);
        }
    }
}

/* The message bar's line for an edit. */
static void report_edit_msg(App *a, const char *what, const PeResult *res) {
    if (res->changed == 0) {
        app_msg(a, 0, "%s: no cell changed", what);
        return;
    }
    char where[48];
    app_edit_where(a, where, sizeof where);
    if (res->changed == 1 && res->fallbacks) /* one cell: the note alone says what it got */
        app_msg(a, 1, "%s on %s: %s", what, where, res->note);
    else
        app_msg(a, res->fallbacks ? 1 : 0, "%s on %s: %lld cell%s changed%s%s", what, where, (long long)res->changed,
                res->changed == 1 ? "" : "s", res->fallbacks ? "; " : "", res->note);
}

/* The message and the Log line of an edit. */
static void report_edit(App *a, const char *what, const PeResult *res) {
    report_edit_msg(a, what, res);
    if (res->changed == 0) return;
    char where[48];
    app_edit_where(a, where, sizeof where);
    app_log(a, "edit", "%s on %s (%lld cell%s)%s%s", what, where, (long long)res->changed, res->changed == 1 ? "" : "s",
            res->fallbacks ? ": " : "", res->note);
}

static int apply(App *a, unsigned fields, const PlanEntry *e, const char *what) {
    Err err;
    err_init(&err);
    PeResult res;
    PlanGrid before = {0};
    if (a->sess && plan_grid_copy(&before, a->pe, &err) != ST_OK) {
        app_msg(a, 1, "%s: %s", what, err.detail);
        return R_REDRAW;
    }
    Status st = on_end_row(a) ? plan_edit_apply_end(a->pe, (PeEnd)a->plan.col, fields, e, &res, &err)
                              : plan_edit_apply(a->pe, (PeScope)a->plan.scope, a->plan.row, (int)a->plan.col,
                                                a->plan.marks, fields, e, &res, &err);
    if (st != ST_OK) {
        app_msg(a, 1, "%s: %s", what, err.detail);
        plan_grid_done(&before);
        return R_REDRAW;
    }
    report_edit(a, what, &res);
    if (res.changed) app_edit_record(a, &before, fields, e);
    plan_grid_done(&before);
    return R_REDRAW;
}

/* === Cycling runs: f/F and d presses as one change === */

/* One step of a run: the grid as before the run with the cursor entry's
 * `kind` value set to v (the previous step's undo entry is replaced). */
static int cycle_step(App *a, int kind, int dir) {
    PlanViewState *s = &a->plan;
    PlanCycle *c = s->cyc;
    int end = on_end_row(a);
    if (c && (c->kind != kind || c->row != s->row || c->col != s->col || c->scope != s->scope)) {
        app_edit_flush(a);
        c = NULL;
    }
    Err err;
    err_init(&err);
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c || plan_grid_copy(&c->before, a->pe, &err) != ST_OK) {
            free(c);
            app_msg(a, 1, "out of memory");
            return R_REDRAW;
        }
        char site[32];
        c->kind = kind;
        c->row = s->row;
        c->col = s->col;
        c->scope = s->scope;
        c->base = *cursor_entry(a, site, sizeof site);
        c->val = kind == 1 ? (int)c->base.w.fmt : (int)c->base.w.dim;
        s->cyc = c;
    } else if (c->pushed) {
        plan_edit_undo(a->pe); /* back to the grid before the run: the run keeps one undo entry */
    }
    PlanEntry e = c->base;
    unsigned fields;
    if (kind == 1) {
        c->val = (int)(end ? pe_next_end_format((QFormat)c->val, dir) : pe_next_format((QFormat)c->val, dir));
        e.w.fmt = (QFormat)c->val;
        fields = PF_FMT;
        if (e.w.fmt == QF_AQLM) { /* aqlm is a format and a method: both change together */
            e.method = QM_AQLM;
            e.aqlm = c->base.w.fmt == QF_AQLM ? c->base.aqlm : PE_AQLM_DEFAULT;
            e.w = (QParams){QF_AQLM, 1, GROUP_OC, 0};
            fields |= PF_METHOD | PF_GROUP;
        } else if (c->base.w.fmt == QF_AQLM) {
            e.method = QM_RTN;
            e.w.dim = GROUP_OC;
            e.w.group = 0;
            fields |= PF_METHOD | PF_GROUP;
        }
        snprintf(c->what, sizeof c->what, "format %s", qformat_traits(e.w.fmt)->name);
    } else {
        c->val = (int)pe_next_dim((GroupDim)c->val);
        e.w.dim = (GroupDim)c->val;
        if (e.w.dim == GROUP_TENSOR) e.w.group = 0; /* the base keeps the group for the way back */
        fields = PF_GROUP;
        snprintf(c->what, sizeof c->what, "grouping %s", group_dim_name(e.w.dim));
    }
    c->fields = fields;
    c->src = e;
    PeResult res;
    uint64_t v0 = a->pe->version;
    Status st = end ? plan_edit_apply_end(a->pe, (PeEnd)s->col, fields, &e, &res, &err)
                    : plan_edit_apply(a->pe, (PeScope)s->scope, s->row, (int)s->col, s->marks, fields, &e, &res, &err);
    c->pushed = a->pe->version != v0; /* an unchanged grid pushes no undo entry */
    if (st != ST_OK) {
        app_msg(a, 1, "%s: %s", c->what, err.detail);
        app_edit_cycle_free(a);
        return R_REDRAW;
    }
    /* the message counts the cells that differ from before the run */
    res.changed = plan_edit_diff(a->pe, &c->before);
    report_edit_msg(a, c->what, &res);
    return R_REDRAW;
}

static int apply_preset(App *a) {
    int n;
    const PresetInfo *pi = plan_presets(&n);
    const char *name = pi[a->plan.preset_sel].name;
    PresetOpts o;
    preset_opts_default(&o);
    char sites[8][16];
    const char *sp[8];
    int ns = 0;
    if (strstr(name, "spike") || strstr(name, "random")) {
        ns = app_spike_sites(a, 3, sites);
        if (ns == 0 && strstr(name, "spike")) {
            app_msg(a, 1, "%s needs the calibration's spike ranking: press c first", name);
            return R_REDRAW;
        }
        if (ns == 0) ns = 3; /* random-k: three random sites, as spike-aware would keep */
        for (int i = 0; i < ns; i++) sp[i] = sites[i];
        o.spikes = strstr(name, "spike") ? sp : NULL;
        o.n_spikes = strstr(name, "spike") ? ns : 0;
        o.random_k = ns;
    }
    Plan p;
    Err err;
    err_init(&err);
    PlanModel pm = pm_of(a);
    if (plan_preset(&p, name, &o, &pm, &err) != ST_OK) {
        app_msg(a, 1, "preset %s: %s", name, err.detail);
        return R_REDRAW;
    }
    Status st = plan_edit_load(a->pe, &p, &err);
    char notes[160] = "";
    if (p.n_notes) snprintf(notes, sizeof notes, " (%s%s)", p.notes[0], p.n_notes > 1 ? ", ..." : "");
    if (st != ST_OK) app_msg(a, 1, "preset %s: %s", name, err.detail);
    else {
        app_msg(a, 0, "preset %s loaded%s", name, notes);
        char all[400] = "";
        size_t len = 0;
        for (int64_t i = 0; i < p.n_notes && len < sizeof all; i++)
            len += (size_t)snprintf(all + len, sizeof all - len, "%s%s", i ? "; " : "", p.notes[i]);
        app_log(a, "preset", "%s%s%s", name, p.n_notes ? ": " : "", all);
        app_plan_sync(a);
        SessionArg args[3] = {SESSION_ARG_STR("preset", name), SESSION_ARG_STR("plan", name)};
        int na = 2;
        if (o.spikes) args[na++] = SESSION_ARG_STRS("spikes", o.spikes, o.n_spikes);
        else if (o.random_k) args[na++] = SESSION_ARG_INT("random_k", o.random_k);
        app_session_action(a, "apply_preset", args, na);
    }
    plan_done(&p);
    a->plan.preset_open = 0;
    return R_REDRAW;
}

/* The text of a prompt: a path for W, a format for ':' ("int4", "int4/ic64",
 * "int8/oc", "int8/tensor", "fp8-e4m3", "aqlm"), applied to the scope as
 * one edit. */
void view_plan_prompt_done(App *a, int kind, const char *text) {
    if (kind == PROMPT_WRITE_PLAN) {
        app_write_plan(a, text);
        return;
    }
    if (kind == PROMPT_AUTO_BUDGET) {
        app_auto_plan_budget(a, text);
        return;
    }
    if (kind == PROMPT_GGUF) {
        app_evaluate_gguf(a, text);
        return;
    }
    if (kind != PROMPT_FORMAT) return;
    char name[48], *slash;
    snprintf(name, sizeof name, "%s", text);
    for (char *c = name; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    const char *dim = NULL;
    if ((slash = strchr(name, '/'))) {
        *slash = 0;
        dim = slash + 1;
    }
    int f = qformat_parse(name);
    if (f < 0) {
        app_msg(a, 1, "'%s' is not a format (int8 ... int2, fp16, bf16, fp8-e4m3, fp8-e5m2, fp32, aqlm, ...)", name);
        return;
    }
    char site[32];
    PlanEntry e = *cursor_entry(a, site, sizeof site);
    int was_aqlm = e.w.fmt == QF_AQLM;
    unsigned fields = PF_FMT;
    e.w.fmt = (QFormat)f;
    if (dim && *dim) {
        char dn[16];
        int k = 0;
        while (dim[k] && !(dim[k] >= '0' && dim[k] <= '9') && k < 15) {
            dn[k] = dim[k];
            k++;
        }
        dn[k] = 0;
        int d = group_dim_parse(dn);
        if (d < 0) {
            app_msg(a, 1, "'%s': the grouping is oc, ic or tensor, then a group size (int4/ic64)", text);
            return;
        }
        e.w.dim = (GroupDim)d;
        e.w.group = d == GROUP_TENSOR ? 0 : atoll(dim + k);
        fields |= PF_GROUP;
    }
    if (e.w.fmt == QF_AQLM) {
        e.method = QM_AQLM;
        if (!was_aqlm) e.aqlm = PE_AQLM_DEFAULT;
        e.w = (QParams){QF_AQLM, 1, GROUP_OC, 0};
        fields |= PF_METHOD | PF_GROUP;
    } else if (was_aqlm) {
        e.method = QM_RTN;
        if (!(fields & PF_GROUP)) {
            e.w.dim = GROUP_OC;
            e.w.group = 0;
        }
        fields |= PF_METHOD | PF_GROUP;
    }
    char what[80];
    snprintf(what, sizeof what, "format %s", text);
    apply(a, fields, &e, what);
}

/* Applies a SmoothQuant alpha to the scope's cells and their partners (q/k/v
 * share attn_norm, gate/up ffn_norm: plan_validate wants one alpha per set
 * and layer) as one marked-cells edit. */
static int apply_smooth(App *a, const PlanEntry *e, const char *what) {
    PlanViewState *s = &a->plan;
    const PlanEdit *pe = a->pe;
    int64_t n = pe->n_layers * PLAN_NPROJ;
    unsigned char *m = calloc((size_t)n, 1);
    if (!m) {
        app_msg(a, 1, "out of memory");
        return R_REDRAW;
    }
    for (int64_t l = 0; l < pe->n_layers; l++)
        for (int p = 0; p < PLAN_NPROJ; p++) {
            int64_t i = l * PLAN_NPROJ + p;
            int in = 0;
            switch ((PeScope)s->scope) {
            case PE_CELL: in = l == s->row && p == s->col; break;
            case PE_ROW: in = l == s->row; break;
            case PE_COL: in = p == s->col; break;
            case PE_MARKED: in = s->marks[i] != 0; break;
            default: in = 1; break;
            }
            if (!in || p == PLAN_O || p == PLAN_DOWN) continue; /* their inputs follow no RMS norm */
            int lo = p <= PLAN_V ? PLAN_Q : p == PLAN_GATE || p == PLAN_UP ? PLAN_GATE : p, hi = p <= PLAN_V ? PLAN_V : p == PLAN_GATE || p == PLAN_UP ? PLAN_UP : p;
            for (int q = lo; q <= hi; q++) m[l * PLAN_NPROJ + q] = 1;
        }
    int64_t nm = 0;
    for (int64_t i = 0; i < n; i++) nm += m[i];
    if (nm == 0) {
        free(m);
        app_msg(a, 1, "SmoothQuant applies to q/k/v and gate/up (their inputs follow an RMS norm), not o or down");
        return R_REDRAW;
    }
    Err err;
    err_init(&err);
    PlanGrid before = {0};
    PeResult res;
    Status st = plan_grid_copy(&before, a->pe, &err);
    if (st == ST_OK) st = plan_edit_apply(a->pe, PE_MARKED, s->row, (int)s->col, m, PF_SMOOTH, e, &res, &err);
    free(m);
    if (st != ST_OK) {
        app_msg(a, 1, "%s: %s", what, err.detail);
        plan_grid_done(&before);
        return R_REDRAW;
    }
    report_edit(a, what, &res);
    /* The session gets one rule per layer and set ("3.qkv", "3.gate_up"), so
     * every plan replay checks on the way keeps the alpha equal within a set. */
    if (res.changed && a->sess) {
        int64_t edit = (int64_t)a->pe->version;
        static const char *const sets[2] = {"qkv", "gate_up"};
        static const int first[2] = {PLAN_Q, PLAN_GATE}, last[2] = {PLAN_V, PLAN_UP};
        for (int64_t l = 0; l < pe->n_layers && st == ST_OK; l++)
            for (int k = 0; k < 2 && st == ST_OK; k++) {
                int ch = 0;
                for (int p = first[k]; p <= last[k]; p++)
                    ch |= !plan_entry_equal(plan_edit_cell(pe, l, p), &before.cells[l * PLAN_NPROJ + p]);
                if (!ch) continue;
                char pat[32];
                snprintf(pat, sizeof pat, "%lld.%s", (long long)l, sets[k]);
                st = session_log_set_rule_edit(a->sess, NULL, pat, PF_SMOOTH, e, edit, &err);
            }
        if (st != ST_OK) app_msg(a, 1, "session: %s", err.detail);
        app_plan_sync(a);
    }
    plan_grid_done(&before);
    return R_REDRAW;
}

static int settings_key(App *a, Action act) {
    PlanViewState *s = &a->plan;
    int64_t sel = s->settings_sel;
    if (view_move(act, &sel, ST_COUNT, 3)) {
        s->settings_sel = (int)sel;
        return R_REDRAW;
    }
    if (act == AC_BACK || act == AC_SETTINGS) {
        s->settings_open = 0;
        return R_REDRAW;
    }
    if (act == AC_QUIT || act == AC_HELP) return R_UNHANDLED;
    int dir = act == AC_GROUP_UP || act == AC_RIGHT || act == AC_ENTER ? 1 : act == AC_GROUP_DOWN || act == AC_LEFT ? -1 : 0;
    if (!dir) return R_NONE;
    if (on_end_row(a)) {
        app_msg(a, 1, "the embedding and the output head are round-to-nearest without activation quantization");
        return R_REDRAW;
    }
    char site[32], label[64], val[32], what[120];
    PlanEntry e = *cursor_entry(a, site, sizeof site);
    setting_step(s->settings_sel, &e, dir);
    unsigned bit = setting_text(s->settings_sel, &e, label, sizeof label, val, sizeof val);
    snprintf(what, sizeof what, "%s %s", label, val);
    if (bit == PF_SMOOTH) return apply_smooth(a, &e, what);
    return apply(a, bit, &e, what);
}

/* The keys that change one setting of the cursor cell's entry (on the scope
 * around it): symmetry, grouping, group size, AQLM's M and B, method,
 * activations, a typed format. R_UNHANDLED for any other key. */
static int cell_key(App *a, Action act, int end) {
    PlanViewState *s = &a->plan;
    const PlanEdit *pe = a->pe;
    char site[32];
    PlanEntry e = *cursor_entry(a, site, sizeof site);
    int64_t n_out = pe->pm.vocab_size, n_in = pe->pm.dim;
    PlanModel pm = pm_of(a);
    if (!end) plan_proj_shape(&pm, (int)s->col, &n_out, &n_in);
    char what[80];
    switch (act) {
    case AC_SYM: {
        const QFormatTraits *t = qformat_traits(e.w.fmt);
        if (!t->is_int) {
            app_msg(a, 1, "%s is not an integer format: symmetry applies to int8 ... int2", t->name);
            return R_REDRAW;
        }
        e.w.sym = !e.w.sym;
        return apply(a, PE_SYM, &e, e.w.sym ? "symmetric" : "asymmetric");
    }
    case AC_DIM:
        if (e.w.fmt == QF_AQLM) {
            app_msg(a, 1, "aqlm groups run along the input: +/- change g");
            return R_REDRAW;
        }
        return cycle_step(a, 2, 1);
    case AC_GROUP_UP: case AC_GROUP_DOWN: {
        const QFormatTraits *t = qformat_traits(e.w.fmt);
        if (e.w.fmt != QF_AQLM && !t->needs_scale) {
            app_msg(a, 1, "%s has no scales, so no groups: press f for an integer format", t->name);
            return R_REDRAW;
        }
        if (e.w.fmt != QF_AQLM && e.w.dim == GROUP_TENSOR) {
            app_msg(a, 1, "per-tensor scales have no groups: press d for oc or ic grouping");
            return R_REDRAW;
        }
        int64_t opts[80];
        int k;
        if (end) k = pe_group_options(&e, n_out, n_in, opts, 80);
        else k = pe_scope_group_options(pe, (PeScope)s->scope, s->row, (int)s->col, s->marks, &e, opts, 80);
        int dir = act == AC_GROUP_UP ? 1 : -1;
        if (e.w.fmt == QF_AQLM) {
            e.aqlm.g = (int)pe_next_group(e.aqlm.g, opts, k, dir);
            snprintf(what, sizeof what, "aqlm g%d (%dx%dg%d)", e.aqlm.g, e.aqlm.M, e.aqlm.B, e.aqlm.g);
            return apply(a, PE_AQLM_G, &e, what);
        }
        e.w.group = pe_next_group(e.w.group, opts, k, dir);
        if (e.w.group) snprintf(what, sizeof what, "group %lld along %s", (long long)e.w.group, group_dim_name(e.w.dim));
        else snprintf(what, sizeof what, "per-channel scales (%s)", group_dim_name(e.w.dim));
        return apply(a, PF_GROUP, &e, what);
    }
    case AC_AQLM_M_UP: case AC_AQLM_M_DOWN: case AC_AQLM_B_UP: case AC_AQLM_B_DOWN: {
        if (e.w.fmt != QF_AQLM) {
            app_msg(a, 1, "%s is not aqlm: press f until the format is aqlm", site);
            return R_REDRAW;
        }
        int is_m = act == AC_AQLM_M_UP || act == AC_AQLM_M_DOWN;
        int dir = act == AC_AQLM_M_UP || act == AC_AQLM_B_UP ? 1 : -1;
        /* M in 1..4 and B in 1..16, both with M·B <= 32 bits per group */
        int hi = is_m ? (32 / e.aqlm.B < 4 ? 32 / e.aqlm.B : 4) : (32 / e.aqlm.M < 16 ? 32 / e.aqlm.M : 16);
        int v = (is_m ? e.aqlm.M : e.aqlm.B) + dir;
        if (v > hi) v = 1;
        if (v < 1) v = hi;
        if (is_m) e.aqlm.M = v;
        else e.aqlm.B = v;
        snprintf(what, sizeof what, "aqlm %s %d (%dx%dg%d)", is_m ? "M" : "B", v, e.aqlm.M, e.aqlm.B, e.aqlm.g);
        return apply(a, is_m ? PE_AQLM_M : PE_AQLM_B, &e, what);
    }
    case AC_METHOD:
        if (end) {
            app_msg(a, 1, "%s is quantized round-to-nearest (no calibration inputs for it)", site);
            return R_REDRAW;
        }
        if (e.w.fmt == QF_AQLM) {
            app_msg(a, 1, "aqlm is its own method: press f for another format");
            return R_REDRAW;
        }
        e.method = pe_next_method(e.method);
        snprintf(what, sizeof what, "method %s", qmethod_name(e.method));
        return apply(a, PF_METHOD, &e, what);
    case AC_ACTQ:
        if (end) {
            app_msg(a, 1, "%s takes no activation quantization", site);
            return R_REDRAW;
        }
        e.act = pe_next_act(e.act);
        snprintf(what, sizeof what, "activations %s", act_format_name(e.act));
        return apply(a, PF_ACT, &e, what);
    case AC_FMT_TYPE: {
        char code[48];
        plan_entry_code(&e, code, sizeof code);
        app_prompt_open(a, PROMPT_FORMAT, "format for the scope (int4, int4/ic64, int8/oc, fp16, aqlm):",
                        qformat_traits(e.w.fmt)->name);
        return R_REDRAW;
    }
    default: return R_UNHANDLED;
    }
}

/* Undo (redo = 0) or redo one edit, as the session records it. */
static int undo_redo(App *a, int redo) {
    if (!(redo ? plan_edit_redo(a->pe) : plan_edit_undo(a->pe))) {
        app_msg(a, 0, "nothing to %s", redo ? "redo" : "undo");
        return R_REDRAW;
    }
    app_msg(a, 0, "%s (%lld more)", redo ? "redone" : "undone",
            (long long)(redo ? a->pe->hist.n_redo : a->pe->hist.n_undo));
    app_log(a, redo ? "redo" : "undo", "plan now %s +%lld", a->pe->cur.name, (long long)a->pe->cur.n_edits);
    app_session_action(a, redo ? "redo" : "undo", NULL, 0);
    app_plan_sync(a);
    return R_REDRAW;
}

static int plan_key(App *a, Action act) {
    PlanViewState *s = &a->plan;
    if (s->cyc && act != AC_FMT_NEXT && act != AC_FMT_PREV && act != AC_DIM) app_edit_flush(a);
    if (s->settings_open) return settings_key(a, act);
    if (s->preset_open) {
        int n;
        plan_presets(&n);
        int64_t sel = s->preset_sel;
        if (view_move(act, &sel, n, 5)) {
            s->preset_sel = (int)sel;
            return R_REDRAW;
        }
        if (act == AC_ENTER) return apply_preset(a);
        if (act == AC_BACK || act == AC_PRESET) {
            s->preset_open = 0;
            return R_REDRAW;
        }
        if (act == AC_QUIT || act == AC_HELP) return R_UNHANDLED;
        return R_NONE;
    }
    if (act == AC_BACK && s->auto_open) {
        s->auto_open = 0;
        return R_REDRAW;
    }
    const PlanEdit *pe = a->pe;
    int64_t prev_row = s->row;
    if (view_move(act, &s->row, pe->n_layers + 1, 5)) {
        /* the embed / output row has two cells: map the column across */
        if (prev_row < pe->n_layers && s->row == pe->n_layers) s->col = s->col >= PLAN_O ? PE_END_OUTPUT : PE_END_EMBED;
        else if (prev_row == pe->n_layers && s->row < pe->n_layers) s->col = s->col == PE_END_OUTPUT ? PLAN_DOWN : PLAN_Q;
        return R_REDRAW;
    }
    int end = on_end_row(a);
    if (act == AC_LEFT || act == AC_RIGHT) {
        int64_t n_cols = end ? PE_END_COUNT : PLAN_NPROJ;
        s->col += act == AC_LEFT ? -1 : 1;
        if (s->col < 0) s->col = 0;
        if (s->col >= n_cols) s->col = n_cols - 1;
        return R_REDRAW;
    }
    int r = cell_key(a, act, end);
    if (r != R_UNHANDLED) return r;
    switch (act) {
    case AC_FMT_NEXT: case AC_FMT_PREV: return cycle_step(a, 1, act == AC_FMT_NEXT ? 1 : -1);
    case AC_SCOPE:
        s->scope = (s->scope + 1) % PE_SCOPE_COUNT;
        app_msg(a, 0, "edits now apply to: %s", pe_scope_name((PeScope)s->scope));
        return R_REDRAW;
    case AC_MARK: {
        if (end) {
            char site[32];
            cursor_entry(a, site, sizeof site);
            app_msg(a, 1, "marks are for grid cells; edits on %s apply to it alone", site);
            return R_REDRAW;
        }
        int64_t i = s->row * PLAN_NPROJ + s->col;
        s->marks[i] = !s->marks[i];
        return R_REDRAW;
    }
    case AC_PRESET: s->preset_open = 1; return R_REDRAW;
    case AC_SETTINGS: s->settings_open = 1; return R_REDRAW;
    case AC_UNDO: return undo_redo(a, 0);
    case AC_REDO: return undo_redo(a, 1);
    case AC_WRITE_PLAN: {
        char path[APP_PATH_MAX];
        app_plan_default_path(a, path, sizeof path);
        app_prompt_open(a, PROMPT_WRITE_PLAN, "write plan to (or llamacpp:/gptqmodel:/llmcompressor:PATH):", path);
        return R_REDRAW;
    }
    default: return R_UNHANDLED;
    }
}

const ViewOps view_plan_ops = {.draw = plan_draw, .key = plan_key};
