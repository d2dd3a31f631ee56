/* Plan editing over quant/plan.h's types (see plan_edit.h). */
#include "tui/plan_edit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "quant/preset.h"

const char *pe_scope_name(PeScope s) {
    static const char *const n[PE_SCOPE_COUNT] = {"cell", "row", "column", "marked", "all"};
    return (unsigned)s < PE_SCOPE_COUNT ? n[s] : "?";
}

int plan_entry_equal(const PlanEntry *a, const PlanEntry *b) {
    return a->w.fmt == b->w.fmt && a->w.sym == b->w.sym && a->w.dim == b->w.dim && a->w.group == b->w.group &&
           a->method == b->method && a->gptq.damp == b->gptq.damp && a->gptq.act_order == b->gptq.act_order &&
           a->gptq.block == b->gptq.block && a->gptq.static_groups == b->gptq.static_groups &&
           a->adadim_base == b->adadim_base && a->aqlm.M == b->aqlm.M && a->aqlm.B == b->aqlm.B &&
           a->aqlm.g == b->aqlm.g && a->act == b->act && a->act_gran == b->act_gran &&
           a->act_scale == b->act_scale && a->act_skip_first == b->act_skip_first &&
           a->smooth_alpha == b->smooth_alpha;
}

void plan_entry_take(PlanEntry *dst, const PlanEntry *src, unsigned fields) {
    if (fields & PF_FMT) {
        dst->w.fmt = src->w.fmt;
        dst->w.sym = src->w.sym;
    }
    if (fields & PF_GROUP) {
        dst->w.dim = src->w.dim;
        dst->w.group = src->w.group;
    }
    if (fields & PF_METHOD) {
        dst->method = src->method;
        dst->gptq = src->gptq;
        dst->adadim_base = src->adadim_base;
        dst->aqlm = src->aqlm;
    }
    if (fields & PF_ACT) {
        dst->act = src->act;
        dst->act_gran = src->act_gran;
        dst->act_scale = src->act_scale;
        dst->act_skip_first = src->act_skip_first;
    }
    if (fields & PF_SMOOTH) dst->smooth_alpha = src->smooth_alpha;
}

/* === Grid snapshots === */

static size_t grid_n(const PlanEdit *pe) { return (size_t)pe->n_layers * PLAN_NPROJ; }

static Status grid_dup(const PlanEdit *pe, const PlanGrid *src, PlanGrid *dst, Err *err) {
    *dst = *src;
    dst->cells = core_calloc(grid_n(pe), sizeof *dst->cells);
    if (!dst->cells) return err_set(err, ST_ERR_NOMEM, "plan grid of %zu cells", grid_n(pe));
    memcpy(dst->cells, src->cells, grid_n(pe) * sizeof *dst->cells);
    return ST_OK;
}

void plan_grid_done(PlanGrid *g) {
    if (!g) return;
    free(g->cells);
    g->cells = NULL;
}

Status plan_grid_copy(PlanGrid *dst, const PlanEdit *pe, Err *err) { return grid_dup(pe, &pe->cur, dst, err); }

static void stack_clear(PlanGrid *s, int64_t *n) {
    for (int64_t i = 0; i < *n; i++) plan_grid_done(&s[i]);
    *n = 0;
}

/* Pushes a copy of the current grid on the undo stack and clears redo. */
static Status push_undo(PlanEdit *pe, Err *err) {
    if (pe->n_undo == PLAN_EDIT_MAX_UNDO) {
        plan_grid_done(&pe->undo[0]);
        memmove(pe->undo, pe->undo + 1, (size_t)(PLAN_EDIT_MAX_UNDO - 1) * sizeof *pe->undo);
        pe->n_undo--;
    }
    Status st = grid_dup(pe, &pe->cur, &pe->undo[pe->n_undo], err);
    if (st != ST_OK) return st;
    pe->n_undo++;
    stack_clear(pe->redo, &pe->n_redo);
    return ST_OK;
}

/* === Init / load === */

static Status grid_from_plan(PlanEdit *pe, const Plan *p, PlanGrid *g, Err *err) {
    PlanResolved r = {0};
    Status st = plan_resolve(p, &pe->pm, &r, err);
    if (st != ST_OK) return st;
    for (size_t i = 0; i < grid_n(pe); i++) g->cells[i] = r.lin[i].e;
    g->embed = r.embed.e;
    g->output = r.output.e;
    snprintf(g->name, sizeof g->name, "%s", p->name[0] ? p->name : "plan");
    g->n_edits = 0;
    plan_resolved_done(&r);
    return ST_OK;
}

Status plan_edit_init(PlanEdit *pe, const PlanModel *pm, const Plan *p, Err *err) {
    memset(pe, 0, sizeof *pe);
    pe->pm = *pm;
    pe->n_layers = pm->n_layers;
    Plan fp16;
    plan_init(&fp16);
    Status st = ST_OK;
    pe->cur.cells = core_calloc(grid_n(pe) ? grid_n(pe) : 1, sizeof *pe->cur.cells);
    pe->undo = core_calloc(PLAN_EDIT_MAX_UNDO, sizeof *pe->undo);
    pe->redo = core_calloc(PLAN_EDIT_MAX_UNDO, sizeof *pe->redo);
    if (!pe->cur.cells || !pe->undo || !pe->redo) {
        st = err_set(err, ST_ERR_NOMEM, "plan editor for %lld layers", (long long)pe->n_layers);
        goto fail;
    }
    if (!p) {
        if ((st = plan_preset(&fp16, "fp16", NULL, pm, err)) != ST_OK) goto fail;
        p = &fp16;
    }
    if ((st = grid_from_plan(pe, p, &pe->cur, err)) != ST_OK) goto fail;
    plan_done(&fp16);
    return ST_OK;
fail:
    plan_done(&fp16);
    plan_edit_done(pe);
    return st;
}

void plan_edit_done(PlanEdit *pe) {
    if (!pe) return;
    if (pe->undo) stack_clear(pe->undo, &pe->n_undo);
    if (pe->redo) stack_clear(pe->redo, &pe->n_redo);
    free(pe->undo);
    free(pe->redo);
    plan_grid_done(&pe->cur);
    memset(pe, 0, sizeof *pe);
}

const PlanEntry *plan_edit_cell(const PlanEdit *pe, int64_t layer, int proj) {
    return &pe->cur.cells[layer * PLAN_NPROJ + proj];
}

Status plan_edit_load(PlanEdit *pe, const Plan *p, Err *err) {
    PlanGrid g = {0};
    Status st = grid_dup(pe, &pe->cur, &g, err);
    if (st != ST_OK) return st;
    if ((st = grid_from_plan(pe, p, &g, err)) != ST_OK) {
        plan_grid_done(&g);
        return st;
    }
    if ((st = push_undo(pe, err)) != ST_OK) {
        plan_grid_done(&g);
        return st;
    }
    plan_grid_done(&pe->cur);
    pe->cur = g;
    pe->version++;
    return ST_OK;
}

/* === Editing === */

int64_t pe_fit_group(int64_t g, int64_t n) {
    if (g <= 0 || n <= 0) return 0;
    if (n % g == 0) return g;
    for (int64_t m = 8; m >= 4; m -= 4)
        for (int64_t d = g - g % m; d >= m; d -= m)
            if (n % d == 0) return d;
    return 0;
}

/* Makes e's group size valid for an (n_out, n_in) matrix; returns 1 if it changed. */
static int fix_group(PlanEntry *e, int64_t n_out, int64_t n_in) {
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    if (!t || !t->needs_scale || e->w.dim == GROUP_TENSOR || e->w.group == 0) return 0;
    int64_t g = e->w.group, ng;
    if (e->method == QM_ADADIM) ng = pe_fit_group(pe_fit_group(g, n_in), n_out);
    else ng = pe_fit_group(g, e->w.dim == GROUP_OC ? n_in : n_out);
    e->w.group = ng;
    return ng != g;
}

static int in_scope(PeScope s, int64_t l0, int p0, const unsigned char *marks, int64_t l, int p, int64_t idx) {
    switch (s) {
    case PE_CELL: return l == l0 && p == p0;
    case PE_ROW: return l == l0;
    case PE_COL: return p == p0;
    case PE_MARKED: return marks && marks[idx];
    case PE_ALL: return 1;
    default: return 0;
    }
}

Status plan_edit_apply(PlanEdit *pe, PeScope scope, int64_t layer, int proj, const unsigned char *marks,
                       unsigned fields, const PlanEntry *src, PeResult *res, Err *err) {
    PeResult r = {0};
    PlanGrid g = {0};
    Status st = grid_dup(pe, &pe->cur, &g, err);
    if (st != ST_OK) return st;
    int64_t fb_from = 0, fb_to = -1, fb_dim = 0;
    for (int64_t l = 0; l < pe->n_layers; l++)
        for (int p = 0; p < PLAN_NPROJ; p++) {
            int64_t idx = l * PLAN_NPROJ + p;
            if (!in_scope(scope, layer, proj, marks, l, p, idx)) continue;
            PlanEntry e = g.cells[idx];
            plan_entry_take(&e, src, fields);
            int64_t n_out, n_in;
            plan_proj_shape(&pe->pm, p, &n_out, &n_in);
            int64_t before = e.w.group;
            if (fix_group(&e, n_out, n_in)) {
                r.fallbacks++;
                fb_from = before;
                fb_to = e.w.group;
                fb_dim = e.w.dim == GROUP_OC ? n_in : n_out;
            }
            if (!plan_entry_equal(&e, &g.cells[idx])) {
                g.cells[idx] = e;
                r.changed++;
            }
        }
    if (r.fallbacks)
        snprintf(r.note, sizeof r.note, "group %lld does not divide %lld: %lld cell%s use %s%lld", (long long)fb_from,
                 (long long)fb_dim, (long long)r.fallbacks, r.fallbacks == 1 ? "" : "s",
                 fb_to ? "group " : "per-channel, group ", (long long)fb_to);
    if (r.changed) {
        if ((st = push_undo(pe, err)) != ST_OK) {
            plan_grid_done(&g);
            return st;
        }
        g.n_edits++;
        plan_grid_done(&pe->cur);
        pe->cur = g;
        pe->version++;
    } else {
        plan_grid_done(&g);
    }
    if (res) *res = r;
    return ST_OK;
}

int plan_edit_undo(PlanEdit *pe) {
    if (pe->n_undo == 0) return 0;
    pe->redo[pe->n_redo++] = pe->cur;
    pe->cur = pe->undo[--pe->n_undo];
    pe->undo[pe->n_undo] = (PlanGrid){0};
    pe->version++;
    return 1;
}

int plan_edit_redo(PlanEdit *pe) {
    if (pe->n_redo == 0) return 0;
    pe->undo[pe->n_undo++] = pe->cur;
    pe->cur = pe->redo[--pe->n_redo];
    pe->redo[pe->n_redo] = (PlanGrid){0};
    pe->version++;
    return 1;
}

int64_t plan_edit_diff(const PlanEdit *pe, const PlanGrid *g) {
    int64_t n = 0;
    for (size_t i = 0; i < grid_n(pe); i++) n += !plan_entry_equal(&pe->cur.cells[i], &g->cells[i]);
    n += !plan_entry_equal(&pe->cur.embed, &g->embed);
    n += !plan_entry_equal(&pe->cur.output, &g->output);
    return n;
}

Status plan_edit_to_plan(const PlanEdit *pe, Plan *out, Err *err) {
    plan_init(out);
    size_t n = grid_n(pe);
    Status st = ST_OK;
    /* The most common entry becomes the default (first one on ties). */
    size_t best = 0, best_n = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c = 0;
        for (size_t j = 0; j < n; j++) c += plan_entry_equal(&pe->cur.cells[i], &pe->cur.cells[j]);
        if (c > best_n) {
            best_n = c;
            best = i;
        }
    }
    if (n) out->def = pe->cur.cells[best];
    out->embed = pe->cur.embed;
    out->output = pe->cur.output;
    snprintf(out->name, sizeof out->name, "%s", pe->cur.name);
    PlanEntry col[PLAN_NPROJ];
    for (int p = 0; p < PLAN_NPROJ; p++) {
        col[p] = out->def;
        if (pe->n_layers == 0) continue;
        const PlanEntry *e0 = &pe->cur.cells[p];
        int uniform = 1;
        for (int64_t l = 1; l < pe->n_layers && uniform; l++)
            uniform = plan_entry_equal(e0, &pe->cur.cells[l * PLAN_NPROJ + p]);
        if (uniform && !plan_entry_equal(e0, &out->def)) {
            char pat[64];
            snprintf(pat, sizeof pat, "*.%s", plan_proj_name(p));
            if ((st = plan_add_rule(out, pat, PF_ALL, e0, err)) != ST_OK) goto fail;
            col[p] = *e0;
        }
    }
    for (int64_t l = 0; l < pe->n_layers; l++)
        for (int p = 0; p < PLAN_NPROJ; p++) {
            const PlanEntry *e = &pe->cur.cells[l * PLAN_NPROJ + p];
            if (plan_entry_equal(e, &col[p])) continue;
            char pat[64];
            snprintf(pat, sizeof pat, "%lld.%s", (long long)l, plan_proj_name(p));
            if ((st = plan_add_rule(out, pat, PF_ALL, e, err)) != ST_OK) goto fail;
        }
    return ST_OK;
fail:
    plan_done(out);
    return st;
}

/* === Value cycling === */

static const QFormat fmt_order[] = {QF_F16,  QF_BF16, QF_FP8_E4M3, QF_FP8_E5M2, QF_INT8, QF_INT6,
                                    QF_INT5, QF_INT4, QF_INT3,     QF_INT2,     QF_F32};
#define N_FMT_ORDER ((int)(sizeof fmt_order / sizeof fmt_order[0]))

QFormat pe_next_format(QFormat f, int dir) {
    int i = 0;
    while (i < N_FMT_ORDER && fmt_order[i] != f) i++;
    if (i == N_FMT_ORDER) return fmt_order[0];
    return fmt_order[((i + (dir < 0 ? -1 : 1)) % N_FMT_ORDER + N_FMT_ORDER) % N_FMT_ORDER];
}

GroupDim pe_next_dim(GroupDim d) { return d == GROUP_OC ? GROUP_IC : d == GROUP_IC ? GROUP_TENSOR : GROUP_OC; }

int64_t pe_next_group(int64_t g, int64_t n, int dir) {
    int64_t opts[16];
    int k = 0;
    opts[k++] = 0;
    for (int64_t s = 8; s <= 1024; s *= 2)
        if (n > 0 && n % s == 0 && s < n) opts[k++] = s;
    int i = 0;
    while (i < k && opts[i] != g) i++;
    if (i == k) { /* not in the list: the nearest one above (or below) */
        for (i = 0; i < k && opts[i] < g; i++) {}
        if (dir > 0) return i < k ? opts[i] : opts[0];
        return i > 0 ? opts[i - 1] : opts[k - 1];
    }
    return opts[((i + (dir < 0 ? -1 : 1)) % k + k) % k];
}

QMethod pe_next_method(QMethod m) { return m == QM_RTN ? QM_GPTQ : m == QM_GPTQ ? QM_ADADIM : QM_RTN; }

ActFormat pe_next_act(ActFormat a) {
    return a == ACT_NONE ? ACT_INT8 : a == ACT_INT8 ? ACT_FP8_E4M3 : a == ACT_FP8_E4M3 ? ACT_FP8_E5M2 : ACT_NONE;
}
