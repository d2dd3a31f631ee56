/* Plan editing over quant/plan.h's types (see plan_edit.h). */
#include "quant/plan_edit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "quant/ggml_type.h"
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
    if (fields & PE_ACT_GRAN) dst->act_gran = src->act_gran;
    if (fields & PE_ACT_SCALE) dst->act_scale = src->act_scale;
    if (fields & PE_ACT_SKIP) dst->act_skip_first = src->act_skip_first;
    if (fields & PE_GPTQ) dst->gptq = src->gptq;
    if (fields & PE_ADABASE) dst->adadim_base = src->adadim_base;
    if (fields & PE_SYM) {
        const QFormatTraits *t = qformat_traits(dst->w.fmt);
        if (t && t->is_int) dst->w.sym = src->w.sym;
    }
    if ((fields & PE_AQLM_ANY) && dst->w.fmt == QF_AQLM) {
        if (fields & PE_AQLM_M) dst->aqlm.M = src->aqlm.M;
        if (fields & PE_AQLM_B) dst->aqlm.B = src->aqlm.B;
        if (fields & PE_AQLM_G) dst->aqlm.g = src->aqlm.g;
    }
}

/* === Undo history === */

void plan_undo_init(PlanUndo *h, size_t item, int64_t max, void (*done)(void *snap)) {
    memset(h, 0, sizeof *h);
    h->item = item;
    h->max = max;
    h->done = done;
}

static void *slot(unsigned char *stack, const PlanUndo *h, int64_t i) { return stack + (size_t)i * h->item; }

static void release_all(PlanUndo *h, unsigned char *stack, int64_t *n) {
    for (int64_t i = 0; i < *n; i++) h->done(slot(stack, h, i));
    *n = 0;
}

void plan_undo_done(PlanUndo *h) {
    if (!h) return;
    if (h->undo) release_all(h, h->undo, &h->n_undo);
    if (h->redo) release_all(h, h->redo, &h->n_redo);
    free(h->undo);
    free(h->redo);
    memset(h, 0, sizeof *h);
}

Status plan_undo_push(PlanUndo *h, void *snap, Err *err) {
    if (h->redo) release_all(h, h->redo, &h->n_redo);
    if (h->n_undo == h->max && h->max > 0) {
        h->done(slot(h->undo, h, 0));
        memmove(h->undo, slot(h->undo, h, 1), (size_t)(h->n_undo - 1) * h->item);
        h->n_undo--;
    }
    if (h->n_undo == h->cap) { /* both stacks grow together: n_undo + n_redo <= cap always */
        int64_t nc = h->cap ? 2 * h->cap : 16;
        if (h->max > 0 && nc > h->max) nc = h->max;
        unsigned char *u = realloc(h->undo, (size_t)nc * h->item);
        if (u) h->undo = u;
        unsigned char *r = u ? realloc(h->redo, (size_t)nc * h->item) : NULL;
        if (r) h->redo = r;
        if (!u || !r) {
            h->done(snap);
            return err_set(err, ST_ERR_NOMEM, "undo history of %lld steps", (long long)nc);
        }
        h->cap = nc;
    }
    memcpy(slot(h->undo, h, h->n_undo++), snap, h->item);
    return ST_OK;
}

void *plan_undo_peek(const PlanUndo *h, int redo) {
    int64_t n = redo ? h->n_redo : h->n_undo;
    return n ? slot(redo ? h->redo : h->undo, h, n - 1) : NULL;
}

int plan_undo_step(PlanUndo *h, int redo, void *cur) {
    unsigned char *from = redo ? h->redo : h->undo, *to = redo ? h->undo : h->redo;
    int64_t *nf = redo ? &h->n_redo : &h->n_undo, *nt = redo ? &h->n_undo : &h->n_redo;
    if (*nf == 0) return 0;
    memcpy(slot(to, h, (*nt)++), cur, h->item);
    memcpy(cur, slot(from, h, --*nf), h->item);
    return 1;
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

static void grid_release(void *g) { plan_grid_done(g); }

/* Pushes a copy of the current grid as an undo step. */
static Status push_undo(PlanEdit *pe, Err *err) {
    PlanGrid g;
    Status st = grid_dup(pe, &pe->cur, &g, err);
    if (st != ST_OK) return st;
    return plan_undo_push(&pe->hist, &g, err);
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
    plan_undo_init(&pe->hist, sizeof(PlanGrid), PLAN_EDIT_MAX_UNDO, grid_release);
    if (!pe->cur.cells) {
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
    plan_undo_done(&pe->hist);
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

int pe_fit_aqlm(const AqlmParams *ap, int64_t n_in, AqlmParams *out) {
    *out = *ap;
    if (n_in > 0 && n_in % ap->g == 0) return 0;
    int code_x_g = ap->M * ap->B; /* code bits per weight times g */
    for (int g = ap->g - 1; g >= 1; g--) {
        if (n_in % g != 0 || (code_x_g * g) % ap->g != 0) continue;
        int B = code_x_g * g / ap->g;
        if (B < 1 || B > 16) continue;
        *out = (AqlmParams){1, B, g};
        return 1;
    }
    return -1;
}

/* Why a cell's entry was changed after taking the edit. */
typedef enum { FIX_NONE, FIX_GROUP, FIX_AQLM, FIX_AQLM_F16, FIX_GGML } FixKind;

/* Makes e consistent and valid for an (n_out, n_in) matrix: format and
 * method aqlm go together (was_aqlm: the cell was aqlm before the edit, so
 * it keeps its parameters), M·B stays <= 32, and group sizes fall back. */
static FixKind fix_cell(PlanEntry *e, int was_aqlm, int64_t n_out, int64_t n_in) {
    if (e->w.fmt == QF_AQLM) {
        if (e->method != QM_AQLM || !was_aqlm) {
            if (e->method != QM_AQLM) e->aqlm = PE_AQLM_DEFAULT;
            e->method = QM_AQLM;
        }
        e->w = (QParams){QF_AQLM, 1, GROUP_OC, 0};
        if (e->aqlm.M < 1) e->aqlm.M = 1;
        if (e->aqlm.B < 1) e->aqlm.B = 1;
        if (e->aqlm.B > 16) e->aqlm.B = 16;
        if (e->aqlm.M * e->aqlm.B > 32) e->aqlm.B = 32 / e->aqlm.M;
        if (e->aqlm.g < 1 || e->aqlm.g > 64) e->aqlm.g = 8;
        AqlmParams f;
        int r = pe_fit_aqlm(&e->aqlm, n_in, &f);
        if (r == 0) return FIX_NONE;
        if (r > 0) {
            e->aqlm = f;
            return FIX_AQLM;
        }
        e->w = (QParams){QF_F16, 1, GROUP_OC, 0};
        e->method = QM_RTN;
        return FIX_AQLM_F16;
    }
    if (e->method == QM_AQLM) e->method = QM_RTN;
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    if (t && t->family == QFAM_GGML) { /* llama.cpp's fallback where rows do not fit; rtn or imatrix */
        FixKind k = FIX_NONE;
        while (t->family == QFAM_GGML && n_in % ggml_type_traits((uint32_t)t->ggml_type)->block_size) {
            e->w.fmt = (QFormat)t->fallback;
            t = qformat_traits(e->w.fmt);
            k = FIX_GGML;
        }
        int w_ok = t->family == QFAM_GGML && e->method == QM_IMATRIX && ggml_type_traits((uint32_t)t->ggml_type)->quant_w;
        if (e->method != QM_RTN && !w_ok) e->method = QM_RTN;
        return k;
    }
    if (e->method == QM_IMATRIX) e->method = QM_RTN; /* ggml formats only */
    if (!t || !t->needs_scale || e->w.dim == GROUP_TENSOR || e->w.group == 0) return FIX_NONE;
    int64_t g = e->w.group, ng;
    if (e->method == QM_ADADIM) ng = pe_fit_group(pe_fit_group(g, n_in), n_out);
    else ng = pe_fit_group(g, e->w.dim == GROUP_OC ? n_in : n_out);
    e->w.group = ng;
    return ng != g ? FIX_GROUP : FIX_NONE;
}

/* Accumulates the note of an edit's fallbacks: each distinct group outcome
 * (asked size, dimension it did not divide, size used) with its own count,
 * so a row whose cells fell back to different sizes says which got what;
 * the last AQLM fallback. */
#define FIX_NOTE_OUTCOMES 4
typedef struct FixNote {
    int64_t n_group, n_aqlm;
    struct {
        int64_t from, dim, to, n;
    } g[FIX_NOTE_OUTCOMES];
    int n_g;
    int64_t n_g_other;           /* fallback cells beyond the outcomes kept */
    AqlmParams a_from, a_to;
    int64_t a_dim;
    int a_f16;
    int64_t n_ggml, f_dim;
    QFormat f_from, f_to;
} FixNote;

static void fix_cell_note(FixNote *fn, FixKind k, const PlanEntry *before, const PlanEntry *after, int64_t n_out,
                          int64_t n_in) {
    if (k == FIX_GROUP) {
        fn->n_group++;
        int64_t dim = after->method == QM_ADADIM ? 0 : after->w.dim == GROUP_OC ? n_in : n_out;
        int i = 0;
        while (i < fn->n_g && !(fn->g[i].from == before->w.group && fn->g[i].dim == dim && fn->g[i].to == after->w.group))
            i++;
        if (i == fn->n_g) {
            if (fn->n_g == FIX_NOTE_OUTCOMES) {
                fn->n_g_other++;
                return;
            }
            fn->g[fn->n_g].from = before->w.group;
            fn->g[fn->n_g].dim = dim;
            fn->g[fn->n_g].to = after->w.group;
            fn->g[fn->n_g++].n = 0;
        }
        fn->g[i].n++;
    } else if (k == FIX_GGML) {
        fn->n_ggml++;
        fn->f_from = before->w.fmt;
        fn->f_to = after->w.fmt;
        fn->f_dim = n_in;
    } else if (k == FIX_AQLM || k == FIX_AQLM_F16) {
        fn->n_aqlm++;
        fn->a_from = before->aqlm;
        fn->a_to = after->aqlm;
        fn->a_dim = n_in;
        fn->a_f16 = k == FIX_AQLM_F16;
    }
}

static void fix_note_text(const FixNote *fn, PeResult *r) {
    size_t len = 0;
    r->fallbacks = fn->n_group + fn->n_aqlm + fn->n_ggml;
    r->note[0] = 0;
    for (int i = 0; i < fn->n_g && len < sizeof r->note; i++) {
        char dim[48];
        if (fn->g[i].dim) snprintf(dim, sizeof dim, "%lld", (long long)fn->g[i].dim);
        else snprintf(dim, sizeof dim, "both dims (adadim)");
        int same_from = i > 0 && fn->g[i - 1].from == fn->g[i].from;
        len += (size_t)snprintf(r->note + len, sizeof r->note - len, "%s%s%lld does not divide %s: %lld cell%s %s%lld",
                                i ? "; " : "", same_from ? "" : "group ", (long long)fn->g[i].from, dim,
                                (long long)fn->g[i].n, fn->g[i].n == 1 ? " uses" : "s use",
                                fn->g[i].to ? "group " : "per-channel, group ", (long long)fn->g[i].to);
    }
    if (fn->n_g_other && len < sizeof r->note)
        len += (size_t)snprintf(r->note + len, sizeof r->note - len, "; %lld more fall back", (long long)fn->n_g_other);
    if (fn->n_aqlm && len < sizeof r->note) {
        char to[24];
        if (fn->a_f16) snprintf(to, sizeof to, "fp16");
        else snprintf(to, sizeof to, "%dx%dg%d", fn->a_to.M, fn->a_to.B, fn->a_to.g);
        snprintf(r->note + len, sizeof r->note - len, "%s%lld cell%s %s: g%d does not divide %lld, %s",
                 len ? "; " : "", (long long)fn->n_aqlm, fn->n_aqlm == 1 ? "" : "s", to, fn->a_from.g,
                 (long long)fn->a_dim, fn->a_f16 ? "no g keeps the code bits" : "same code bits");
        len = strlen(r->note);
    }
    if (fn->n_ggml && len < sizeof r->note)
        snprintf(r->note + len, sizeof r->note - len, "%s%lld cell%s %s: %s blocks do not divide %lld (llama.cpp's fallback)",
                 len ? "; " : "", (long long)fn->n_ggml, fn->n_ggml == 1 ? "" : "s", qformat_traits(fn->f_to)->name,
                 qformat_traits(fn->f_from)->name, (long long)fn->f_dim);
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

/* Replaces the current grid by g (one undo step) when something changed;
 * otherwise releases g. */
static Status commit(PlanEdit *pe, PlanGrid *g, int64_t changed, Err *err) {
    if (!changed) {
        plan_grid_done(g);
        return ST_OK;
    }
    Status st = push_undo(pe, err);
    if (st != ST_OK) {
        plan_grid_done(g);
        return st;
    }
    g->n_edits++;
    plan_grid_done(&pe->cur);
    pe->cur = *g;
    pe->version++;
    return ST_OK;
}

Status plan_edit_apply(PlanEdit *pe, PeScope scope, int64_t layer, int proj, const unsigned char *marks,
                       unsigned fields, const PlanEntry *src, PeResult *res, Err *err) {
    PeResult r = {0};
    FixNote fn = {0};
    PlanGrid g = {0};
    Status st = grid_dup(pe, &pe->cur, &g, err);
    if (st != ST_OK) return st;
    for (int64_t l = 0; l < pe->n_layers; l++)
        for (int p = 0; p < PLAN_NPROJ; p++) {
            int64_t idx = l * PLAN_NPROJ + p;
            if (!in_scope(scope, layer, proj, marks, l, p, idx)) continue;
            PlanEntry e = g.cells[idx];
            plan_entry_take(&e, src, fields);
            int64_t n_out, n_in;
            plan_proj_shape(&pe->pm, p, &n_out, &n_in);
            PlanEntry taken = e;
            FixKind k = fix_cell(&e, g.cells[idx].w.fmt == QF_AQLM, n_out, n_in);
            fix_cell_note(&fn, k, &taken, &e, n_out, n_in);
            if (!plan_entry_equal(&e, &g.cells[idx])) {
                g.cells[idx] = e;
                r.changed++;
            }
        }
    fix_note_text(&fn, &r);
    if ((st = commit(pe, &g, r.changed, err)) != ST_OK) return st;
    if (res) *res = r;
    return ST_OK;
}

const PlanEntry *plan_edit_end(const PlanEdit *pe, PeEnd which) {
    return which == PE_END_EMBED ? &pe->cur.embed : &pe->cur.output;
}

Status plan_edit_apply_end(PlanEdit *pe, PeEnd which, unsigned fields, const PlanEntry *src, PeResult *res, Err *err) {
    PeResult r = {0};
    FixNote fn = {0};
    PlanGrid g = {0};
    Status st = grid_dup(pe, &pe->cur, &g, err);
    if (st != ST_OK) return st;
    PlanEntry *dst = which == PE_END_EMBED ? &g.embed : &g.output;
    PlanEntry e = *dst;
    plan_entry_take(&e, src, fields & (PF_FMT | PF_GROUP));
    PlanEntry taken = e;
    FixKind k = fix_cell(&e, 0, pe->pm.vocab_size, pe->pm.dim);
    fix_cell_note(&fn, k, &taken, &e, pe->pm.vocab_size, pe->pm.dim);
    if (!plan_entry_equal(&e, dst)) {
        *dst = e;
        r.changed = 1;
    }
    fix_note_text(&fn, &r);
    if ((st = commit(pe, &g, r.changed, err)) != ST_OK) return st;
    if (res) *res = r;
    return ST_OK;
}

int plan_edit_undo(PlanEdit *pe) {
    if (!plan_undo_step(&pe->hist, 0, &pe->cur)) return 0;
    pe->version++;
    return 1;
}

int plan_edit_redo(PlanEdit *pe) {
    if (!plan_undo_step(&pe->hist, 1, &pe->cur)) return 0;
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

/* The orders are the traits' cycle positions (quant/format.c). */
static QFormat next_in(QFormatList which, QFormat f, int dir) {
    QFormat order[QF_COUNT];
    int n = qformat_list(which, order, QF_COUNT);
    int i = 0;
    while (i < n && order[i] != f) i++;
    if (i == n) return order[0];
    return order[((i + (dir < 0 ? -1 : 1)) % n + n) % n];
}

QFormat pe_next_format(QFormat f, int dir) {
    return next_in(QLIST_CYCLE, f, dir);
}

QFormat pe_next_end_format(QFormat f, int dir) {
    return next_in(QLIST_END_CYCLE, f, dir);
}

GroupDim pe_next_dim(GroupDim d) { return d == GROUP_OC ? GROUP_IC : d == GROUP_IC ? GROUP_TENSOR : GROUP_OC; }

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

int pe_group_options(const PlanEntry *e, int64_t n_out, int64_t n_in, int64_t *opts, int cap) {
    int k = 0;
    if (e->w.fmt == QF_AQLM) {
        for (int64_t g = 1; g <= 64 && k < cap; g++)
            if (n_in % g == 0) opts[k++] = g;
        return k;
    }
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    if (!t || !t->needs_scale || e->w.dim == GROUP_TENSOR) return 0;
    /* a group as long as the whole grouped dimension is per-channel (0) */
    int64_t n = e->method == QM_ADADIM ? gcd64(n_in, n_out) : e->w.dim == GROUP_OC ? n_in : n_out;
    int64_t lim = e->method == QM_ADADIM ? (n_in < n_out ? n_in : n_out) : n;
    if (k < cap) opts[k++] = 0;
    for (int64_t d = 4; d <= n && d < lim && k < cap; d += 4)
        if (n % d == 0) opts[k++] = d;
    return k;
}

#define PE_MAX_OPTS 512

int pe_scope_group_options(const PlanEdit *pe, PeScope scope, int64_t layer, int proj, const unsigned char *marks,
                           const PlanEntry *src, int64_t *opts, int cap) {
    int aqlm = src->w.fmt == QF_AQLM;
    int64_t own[PE_MAX_OPTS], cell[PE_MAX_OPTS];
    int64_t n_out, n_in;
    plan_proj_shape(&pe->pm, proj, &n_out, &n_in);
    int n_own = pe_group_options(src, n_out, n_in, own, PE_MAX_OPTS);
    int64_t common[PE_MAX_OPTS];
    int n_common = n_own;
    memcpy(common, own, (size_t)n_own * sizeof *own);
    for (int64_t l = 0; l < pe->n_layers; l++)
        for (int p = 0; p < PLAN_NPROJ; p++) {
            int64_t idx = l * PLAN_NPROJ + p;
            if (!in_scope(scope, layer, proj, marks, l, p, idx)) continue;
            PlanEntry e = pe->cur.cells[idx];
            if (aqlm) {
                if (e.w.fmt != QF_AQLM) continue; /* the edit leaves it alone */
            } else {
                plan_entry_take(&e, src, PF_GROUP);
                if (e.w.fmt == QF_AQLM) continue;
            }
            plan_proj_shape(&pe->pm, p, &n_out, &n_in);
            int nc = pe_group_options(&e, n_out, n_in, cell, PE_MAX_OPTS);
            if (nc == 0) continue; /* no groups there (fp16, per-tensor) */
            int w = 0;
            for (int i = 0; i < n_common; i++)
                for (int j = 0; j < nc; j++)
                    if (cell[j] == common[i]) {
                        common[w++] = common[i];
                        break;
                    }
            n_common = w;
        }
    const int64_t *use = n_common >= 2 ? common : own;
    int n = n_common >= 2 ? n_common : n_own;
    if (n > cap) n = cap;
    memcpy(opts, use, (size_t)n * sizeof *opts);
    return n;
}

int64_t pe_next_group(int64_t g, const int64_t *opts, int k, int dir) {
    if (k <= 0) return g;
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
