/* The Sensitivity view: the relative output error tr(ΔW H ΔWᵀ)/tr(W H Wᵀ)
 * (or the weight error) of every (layer, projection) under a format ×
 * grouping chosen with f and g, and an AdaDim mode that shows the better of
 * per-IC and per-OC with AdaDim's choice marked per cell. */
#define NCURSES_WIDECHAR 1
#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#include <curses.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "analysis/calib.h"
#include "analysis/sensitivity.h"
#include "tui/draw.h"
#include "tui/views.h"
#include "tui/vmodel.h"

/* A ggml candidate has one cell, its own blocks, whatever the grouping chosen. */
static int fmt_is_ggml(int fmt) { return !sens_cell_applies(fmt, SG_TENSOR); }

static double cell_value(const App *a, int64_t l, int p, GroupDim *dim) {
    const SensMap *sm = &a->cs->sens;
    const SensViewState *s = &a->sens;
    *dim = GROUP_TENSOR;
    if (fmt_is_ggml(s->fmt)) return vm_sens_value(sm, l, p, s->fmt, SG_BLOCK, !s->weight_err);
    if (s->adadim) return vm_sens_adadim(sm, l, p, s->fmt, s->grouping >= SG_OC_G, !s->weight_err, dim);
    return vm_sens_value(sm, l, p, s->fmt, (SensGroup)s->grouping, !s->weight_err);
}

/* Bits per weight of cell (fmt, g) at site (l, p): NaN without the model. */
static double cell_bpw(const App *a, int64_t l, int p, int fmt, SensGroup g) {
    if (!a->m || l >= a->m->cfg.n_layers) return NAN;
    const Weight *w = &a->m->layers[l].proj[p];
    return sens_cell_bpw(fmt, g, a->cs->sens.gsize + (l * PROJ_COUNT + p) * SG_COUNT, w->n_out, w->n_in);
}

/* Rows of the whole detail: title, header, the scale overhead, the scaled
 * formats, the ggml formats three to a line, a blank, the cursor cell's
 * bits, AdaDim, the group sizes and the kernel's time (under the grid it
 * shows as many formats as fit, at least two). */
static int side_rows(void) {
    int scaled = 0, ggml = 0;
    for (int f = 0; f < SENS_NFMT; f++) fmt_is_ggml(f) ? ggml++ : scaled++;
    return 4 + scaled + (ggml + 2) / 3 + 5;
}

/* The grouping of the cell (layer, p) as the grid shows it: a ggml format's
 * own blocks, AdaDim's choice, else the grouping chosen with g. */
static SensGroup shown_group(const App *a, int64_t l, int p) {
    const SensViewState *s = &a->sens;
    if (fmt_is_ggml(s->fmt)) return SG_BLOCK;
    if (!s->adadim) return (SensGroup)s->grouping;
    GroupDim d = sens_adadim_choice(&a->cs->sens, l, p, s->fmt, s->grouping >= SG_OC_G);
    if (d == GROUP_IC) return s->grouping >= SG_OC_G ? SG_IC_G : SG_IC;
    return s->grouping >= SG_OC_G ? SG_OC_G : SG_OC;
}

static void sens_side(const App *a, const Rect *r) {
    const SensMap *sm = &a->cs->sens;
    int64_t l = a->sens.row;
    int p = (int)a->sens.col;
    int x = r->x + 1, w = r->w - 2, y = r->y;
    draw_text(y++, x, w, C_HEADER, "L%lld %s_proj", (long long)l, proj_name((Proj)p));
    draw_text(y++, x, w, C_DIM, "%s error, all formats", a->sens.weight_err ? "weight" : "output");
    char line[128];
    /* format codes take 4 columns (E4M3), each grouping 7: all five fit in 39 */
    int ww = r->w - 1;
    int n = snprintf(line, sizeof line, "%-4s", "");
    int ng = (ww - 4) / 7; /* groupings that fit the panel */
    if (ng > SG_BLOCK) ng = SG_BLOCK;
    for (int g = 0; g < ng; g++) n += snprintf(line + n, sizeof line - n, "%7s", sens_group_name((SensGroup)g));
    draw_str(y++, x, ww, C_HEADER, line);
    /* what a grouping's scales add to the format's bits: a cell costs both */
    n = snprintf(line, sizeof line, "%-4s", "+bpw");
    for (int g = 0; g < ng; g++) {
        double b = cell_bpw(a, l, p, 0, (SensGroup)g) - qformat_traits(sens_fmt(0))->bits;
        char c[16];
        if (isnan(b)) snprintf(c, sizeof c, "?");
        else if (b < 0.0005) snprintf(c, sizeof c, "+0");
        else snprintf(c, sizeof c, "+%.3f", b);
        n += snprintf(line + n, sizeof line - n, "%7s", c);
    }
    draw_str(y++, x, ww, C_DIM, line);
    int k = 0;
    for (int f = 0; f < SENS_NFMT && y < r->y + r->h - 6; f++) {
        const QFormatTraits *t = qformat_traits(sens_fmt(f));
        if (fmt_is_ggml(f)) { /* one cell each: three to a line */
            char b[16];
            heat_fmt(vm_sens_value(sm, l, p, f, SG_BLOCK, !a->sens.weight_err), b, sizeof b);
            draw_text(y, x + 13 * (k % 3), 13, f == a->sens.fmt ? C_CURSOR : C_NORMAL, "%-4s %7s", t->code, b);
            if (++k % 3 == 0 || f == SENS_NFMT - 1) y++;
            continue;
        }
        draw_text(y, x, 4, f == a->sens.fmt ? C_HEADER : C_NORMAL, "%-4s", t->code);
        for (int g = 0; g < ng; g++) {
            char b[16];
            heat_fmt(vm_sens_value(sm, l, p, f, (SensGroup)g, !a->sens.weight_err), b, sizeof b);
            int cur = f == a->sens.fmt && g == a->sens.grouping;
            draw_text(y, x + 4 + 7 * g, 7, cur ? C_CURSOR : C_NORMAL, "%7s", b);
        }
        y++;
    }
    y++;
    {
        int f = a->sens.fmt;
        SensGroup g = fmt_is_ggml(f) ? SG_BLOCK : (SensGroup)a->sens.grouping;
        draw_text(y++, x, w, C_NORMAL, "%s %s: %.3f bits per weight", qformat_traits(sens_fmt(f))->code,
                  sens_group_name(g), cell_bpw(a, l, p, f, g));
    }
    GroupDim d0 = sens_adadim_choice(sm, l, p, a->sens.fmt, 0), d1 = sens_adadim_choice(sm, l, p, a->sens.fmt, 1);
    draw_text(y++, x, w, C_NORMAL, "AdaDim (%s): %s; grouped: %s", qformat_traits(sens_fmt(a->sens.fmt))->code,
              d0 == GROUP_TENSOR ? "-" : group_dim_name(d0), d1 == GROUP_TENSOR ? "-" : group_dim_name(d1));
    int32_t gs = sm->gsize[(l * PROJ_COUNT + p) * SG_COUNT + SG_OC_G];
    int32_t gi = sm->gsize[(l * PROJ_COUNT + p) * SG_COUNT + SG_IC_G];
    draw_text(y++, x, w, C_DIM, "groups used: oc-g %d, ic-g %d", gs, gi);
    /* the kernel's time beside the error: this cell's format and grouping on this site's shape */
    SensGroup sg = shown_group(a, l, p);
    double dec, pre;
    char ds[16], ps[16];
    if (app_speed_cell(a, p, a->sens.fmt, sg, &dec, &pre))
        draw_text(y++, x, w, C_NORMAL, "kernel %s %s: dec %s, pre %s/tok", qformat_traits(sens_fmt(a->sens.fmt))->code,
                  sens_group_name(sg), vm_fmt_secs(dec, ds, sizeof ds), vm_fmt_secs(pre, ps, sizeof ps));
    else
        draw_text(y++, x, w, C_DIM, "kernel: not timed yet (T times it)");
}

static void sens_draw(const App *a, const Layout *l) {
    const Rect *r = &l->main;
    if (!a->cs) {
        view_no_calib(a, r, "The sensitivity map");
        return;
    }
    if (!a->cs->has_sens) {
        draw_text(r->y + 2, r->x + 2, r->w - 4, C_WARN, "This calibration has no sensitivity map - press c to recalibrate");
        return;
    }
    const SensViewState *s = &a->sens;
    int64_t nl = a->cs->n_layers;
    double *grid = malloc((size_t)(nl * PROJ_COUNT) * sizeof *grid);
    GroupDim *dims = malloc((size_t)(nl * PROJ_COUNT) * sizeof *dims);
    if (!grid || !dims) {
        free(grid);
        free(dims);
        return;
    }
    for (int64_t i = 0; i < nl; i++)
        for (int p = 0; p < PROJ_COUNT; p++) grid[i * PROJ_COUNT + p] = cell_value(a, i, p, &dims[i * PROJ_COUNT + p]);
    HeatScale hs;
    heat_scale_fit(&hs, grid, nl * PROJ_COUNT, 1);
    const QFormatTraits *t = qformat_traits(sens_fmt(s->fmt));
    /* the cells' bits per weight over the sites (they differ where a scale covers a row or a column) */
    char bits[48] = "";
    if (!s->adadim) {
        SensGroup sg = fmt_is_ggml(s->fmt) ? SG_BLOCK : (SensGroup)s->grouping;
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < nl; i++)
            for (int p = 0; p < PROJ_COUNT; p++) {
                double b = cell_bpw(a, i, p, s->fmt, sg);
                if (isnan(b)) continue;
                lo = b < lo ? b : lo;
                hi = b > hi ? b : hi;
            }
        if (lo <= hi && hi - lo < 0.0005) snprintf(bits, sizeof bits, ", %.3f bpw", lo);
        else if (lo <= hi) snprintf(bits, sizeof bits, ", %.3f-%.3f bpw", lo, hi);
    }
    if (fmt_is_ggml(s->fmt))
        draw_text(r->y, r->x + 1, r->w - 2, C_HEADER, "%s error, %s (f), its own blocks%s",
                  s->weight_err ? "weight" : "output", t->name, bits);
    else if (s->adadim)
        draw_text(r->y, r->x + 1, r->w - 2, C_HEADER, "%s error, %s, AdaDim: best of %s (a)", s->weight_err ? "weight" : "output",
                  t->name, s->grouping >= SG_OC_G ? "ic-g / oc-g" : "per-IC / per-OC");
    else
        draw_text(r->y, r->x + 1, r->w - 2, C_HEADER, "%s error, %s (f), %s (g)%s", s->weight_err ? "weight" : "output",
                  t->name, sens_group_name((SensGroup)s->grouping), bits);
    draw_text(r->y + 1, r->x + 1, r->w - 2, C_DIM, "%s", s->weight_err ? "|dW|^2/|W|^2, relative" :
              "tr(dW H dW')/tr(W H W'), relative; H from the calibration");
    GridLayout g;
    Rect gr = {r->x, r->y + 2, r->w, r->h - 2};
    layout_grid(&g, &gr, nl, PROJ_COUNT, 5, 9, 11, 2, 5, s->row, s->col);
    int y = gr.y;
    for (int c = 0; c < g.n_vis_cols; c++)
        draw_text(y, gr.x + g.label_w + c * g.cell_w, g.cell_w - 1, C_HEADER, "%*s", g.cell_w - 1,
                  proj_name((Proj)(g.first_col + c)));
    y++;
    /* the speed table beside the errors: each column's kernel time for one decoded token (its shape,
       the format and grouping shown; the cursor's row decides AdaDim's) */
    draw_text(y, gr.x + 1, g.label_w - 1, C_DIM, "dec");
    for (int c = 0; c < g.n_vis_cols; c++) {
        int p = g.first_col + c;
        double dec;
        char b[16];
        if (!app_speed_cell(a, p, s->fmt, shown_group(a, s->row, p), &dec, NULL)) dec = 0;
        draw_text(y, gr.x + g.label_w + c * g.cell_w, g.cell_w - 1, C_DIM, "%*s", g.cell_w - 1, vm_fmt_secs(dec, b, sizeof b));
    }
    y++;
    for (int rr = 0; rr < g.n_vis_rows; rr++, y++) {
        int64_t layer = g.first_row + rr;
        draw_text(y, gr.x + 1, g.label_w - 1, layer == s->row ? C_HEADER : C_DIM, "L%lld", (long long)layer);
        for (int c = 0; c < g.n_vis_cols; c++) {
            int p = g.first_col + c;
            double v = grid[layer * PROJ_COUNT + p];
            GroupDim d = dims[layer * PROJ_COUNT + p];
            const char *suf = s->adadim ? (d == GROUP_IC ? "i" : d == GROUP_OC ? "o" : NULL) : NULL;
            view_heat_cell(y, gr.x + g.label_w + c * g.cell_w, g.cell_w, heat_level(&hs, v, HEAT_LEVELS), v,
                           layer == s->row && p == s->col, suf);
        }
    }
    view_grid_note(y, gr.x + 1, gr.w - 2, &g, nl, PROJ_COUNT);
    y++;
    view_legend(y, gr.x + 1, gr.w - 2, &hs, "log scale");
    if (s->adadim) draw_str(y + 3, gr.x + 1, gr.w - 2, C_DIM, "suffix: AdaDim's choice, i = per-IC scales, o = per-OC");
    free(grid);
    free(dims);
    if (l->side.w) sens_side(a, &l->side);
    else if (y + 4 + (side_rows() < 9 ? side_rows() : 9) <= r->y + r->h) { /* as many formats as fit */
        Rect below = {r->x, y + 4, r->w, r->y + r->h - (y + 4)};
        sens_side(a, &below);
    }
}

static int sens_key(App *a, Action act) {
    SensViewState *s = &a->sens;
    if (!a->cs) return R_UNHANDLED;
    if (view_move(act, &s->row, a->cs->n_layers, 5)) return R_REDRAW;
    switch (act) {
    case AC_LEFT: if (s->col > 0) s->col--; return R_REDRAW;
    case AC_RIGHT: if (s->col < PROJ_COUNT - 1) s->col++; return R_REDRAW;
    case AC_SENS_FMT: s->fmt = (s->fmt + 1) % SENS_NFMT; return R_REDRAW;
    case AC_SENS_GROUP: s->grouping = (s->grouping + 1) % SG_BLOCK; return R_REDRAW; /* blk: the ggml formats' own */
    case AC_SENS_MODE: s->adadim = !s->adadim; return R_REDRAW;
    case AC_SENS_ERR: s->weight_err = !s->weight_err; return R_REDRAW;
    default: return R_UNHANDLED;
    }
}

/* Seven columns of numbers need the full width below 120 columns: the detail then goes under the grid. */
static int sens_wants_side(const App *a, int cols) { return a->cs && a->cs->has_sens && cols >= 120; }

const ViewOps view_sens_ops = {.draw = sens_draw, .key = sens_key, .side = sens_wants_side};
