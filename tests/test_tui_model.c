/* Curses-free view models of the TUI: heat scales, binning, legend ticks,
 * glyphs, layout at several terminal sizes, the bindings table and help,
 * plan editing with undo/redo and its conversion back to a Plan, the job
 * runner, the evaluation rows (sort, Pareto front, scatter) and plans
 * compared cell by cell (the results' detail and diff), and the
 * statistics-side view models on a real stories260K calibration. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "analysis/calib.h"
#include "analysis/spikes.h"
#include "core/mapfile.h"
#include "quant/plan_edit.h"
#include "quant/preset.h"
#include "tests/testlib.h"
#include "tui/compare.h"
#include "tui/heat.h"
#include "tui/job.h"
#include "tui/keys.h"
#include "tui/layout.h"
#include "tui/plan_grid.h"
#include "tui/results.h"
#include "tui/vmodel.h"

static void test_heat(void) {
    double v[] = {0.5, NAN, 5.0, 50.0, 0.0, -1.0};
    HeatScale s;
    heat_scale_fit(&s, v, 6, 1);
    CHECK(!s.empty);
    CHECK(s.lo == 0.5 && s.hi == 50.0);            /* 0 and negatives ignored on a log scale */
    CHECK_NEAR(heat_scale_pos(&s, 5.0), 0.5, 1e-12); /* log10: -0.301 .. 1.699, 5 -> 0.699 */
    CHECK(heat_scale_pos(&s, 0.5) == 0.0);
    CHECK(heat_scale_pos(&s, 50.0) == 1.0);
    CHECK(heat_scale_pos(&s, 500.0) == 1.0);       /* clamped */
    CHECK(isnan(heat_scale_pos(&s, NAN)));
    CHECK(isnan(heat_scale_pos(&s, 0.0)));
    CHECK(heat_level(&s, 0.5, 5) == 0);
    CHECK(heat_level(&s, 5.0, 5) == 2);
    CHECK(heat_level(&s, 50.0, 5) == 4);
    CHECK(heat_level(&s, 4.99, 5) == 2);          /* pos 0.4996 -> floor(2.498) */
    CHECK(heat_level(&s, NAN, 5) == -1);
    double t[8];
    int n = heat_ticks(&s, t, 8);
    CHECK(n == 2 && t[0] == 1.0 && t[1] == 10.0);  /* decades inside [0.5, 50] */
    HeatScale s2 = {.lo = 2.0, .hi = 9.0, .log = 1};
    n = heat_ticks(&s2, t, 8);                     /* no decade inside, only 3 of 1/3: 1/2/5 */
    CHECK(n == 2 && t[0] == 2.0 && t[1] == 5.0);
    HeatScale s2b = {.lo = 2.5, .hi = 2.9, .log = 1};
    n = heat_ticks(&s2b, t, 8);                    /* nothing round inside: the ends */
    CHECK(n == 2 && t[0] == 2.5 && t[1] == 2.9);
    HeatScale s3;
    double lin[] = {0.13, 0.92};
    heat_scale_fit(&s3, lin, 2, 0);
    n = heat_ticks(&s3, t, 5);                     /* step 0.2: 0.2 0.4 0.6 0.8 */
    CHECK(n == 4);
    CHECK_NEAR(t[0], 0.2, 1e-12);
    CHECK_NEAR(t[3], 0.8, 1e-12);
    HeatScale s4;
    heat_scale_fit(&s4, v + 1, 1, 1);              /* only NaN */
    CHECK(s4.empty && heat_level(&s4, 1.0, 5) == -1 && heat_ticks(&s4, t, 4) == 0);
    HeatScale s5;
    double one[] = {3.0};
    heat_scale_fit(&s5, one, 1, 1);
    CHECK(heat_level(&s5, 3.0, 5) == 4);
    CHECK(strcmp(heat_glyph(4, 1), "\u2588") == 0 && strcmp(heat_glyph(4, 0), "#") == 0);
    CHECK(strcmp(heat_glyph(0, 0), " ") == 0 && strcmp(heat_glyph(-1, 0), "-") == 0);
    char b[16];
    CHECK(strcmp(heat_fmt(7.329, b, sizeof b), "7.33") == 0);
    CHECK(strcmp(heat_fmt(105.2, b, sizeof b), "105") == 0);
    CHECK(strcmp(heat_fmt(0.06964, b, sizeof b), "0.0696") == 0);
    CHECK(strcmp(heat_fmt(12.34, b, sizeof b), "12.3") == 0);
    CHECK(strcmp(heat_fmt(1234567.0, b, sizeof b), "1.2e6") == 0);
    CHECK(strcmp(heat_fmt(9.8e-4, b, sizeof b), "9.8e-4") == 0);
    CHECK(strcmp(heat_fmt(0.00177, b, sizeof b), "1.8e-3") == 0 && strcmp(heat_fmt(0.0155, b, sizeof b), "0.0155") == 0);
    CHECK(strcmp(heat_fmt(-2.5e-12, b, sizeof b), "-2.5e-12") == 0);
    CHECK(strcmp(heat_fmt_tick(3.0, b, sizeof b), "3") == 0 && strcmp(heat_fmt_tick(0.01, b, sizeof b), "0.01") == 0);
    CHECK(strcmp(heat_fmt_tick(2.9, b, sizeof b), "2.9") == 0 && strcmp(heat_fmt_tick(1e-5, b, sizeof b), "1.0e-5") == 0);
    CHECK(strcmp(heat_fmt(NAN, b, sizeof b), "-") == 0);
    uint64_t h[10] = {0, 0, 3, 1, 0, 4, 2, 0, 0, 0}, o[2];
    int64_t f, l;
    uint64_t mx = heat_rebin(h, 10, 2, o, &f, &l);
    CHECK(f == 2 && l == 6);                       /* span 5 bins -> 0,0,0,1,1 */
    CHECK(o[0] == 4 && o[1] == 6 && mx == 6);
    double sp[] = {1, 2, 3, NAN};
    int lv[4];
    heat_spark(sp, 4, 8, lv);
    CHECK(lv[0] == 0 && lv[1] == 4 && lv[2] == 7 && lv[3] == -1);
}

static void test_layout(void) {
    Layout l;
    layout_screen(&l, 80, 24, 1);
    CHECK(!l.too_small);
    CHECK(l.title.y == 0 && l.tabs.y == 1 && l.body.y == 2 && l.body.h == 20);
    CHECK(l.hints.y == 22 && l.msg.y == 23);
    CHECK(l.side.w == 28 && l.side.x == 52 && l.main.w == 51);
    CHECK(l.main.x + l.main.w + 1 == l.side.x);     /* separator column between */
    layout_screen(&l, 100, 30, 1);
    CHECK(l.side.w == 34 && l.main.w == 65 && l.body.h == 26 && l.msg.y == 29);
    layout_screen(&l, 200, 60, 1);
    CHECK(l.side.w == 40 && l.main.w == 159 && l.hints.y == 58);
    layout_screen(&l, 125, 30, 1); /* the Sensitivity panel's five groupings need 40 from 120 on */
    CHECK(l.side.w == 40 && l.main.w == 84);
    layout_screen(&l, 200, 60, 0);
    CHECK(l.side.w == 0 && l.main.w == 200);
    layout_screen(&l, 79, 24, 1);
    CHECK(l.too_small && l.msg.y == 23);
    layout_screen(&l, 80, 23, 1);
    CHECK(l.too_small);

    /* Activation grid: 5 layers x 5 taps, label 6, cells 6..10 wide, 2 header lines, 3 legend lines. */
    GridLayout g;
    layout_screen(&l, 80, 24, 1);
    layout_grid(&g, &l.main, 5, 5, 6, 6, 10, 2, 3, 0, 0);
    CHECK(g.cell_w == 9 && g.n_vis_cols == 5 && g.n_vis_rows == 5 && g.first_row == 0);
    layout_screen(&l, 100, 30, 1);
    layout_grid(&g, &l.main, 5, 5, 6, 6, 10, 2, 3, 4, 4);
    CHECK(g.cell_w == 10 && g.n_vis_cols == 5 && g.first_col == 0);
    /* A 32-layer model at 80x24 scrolls to keep the cursor row visible. */
    layout_screen(&l, 80, 24, 1);
    layout_grid(&g, &l.main, 32, 7, 6, 6, 10, 2, 3, 31, 6);
    CHECK(g.n_vis_rows == 15 && g.first_row == 17);
    CHECK(g.cell_w == 6 && g.n_vis_cols == 7);      /* (51-6)/7 = 6 */
    layout_screen(&l, 200, 60, 1);
    layout_grid(&g, &l.main, 32, 7, 6, 6, 10, 2, 3, 31, 6);
    CHECK(g.n_vis_rows == 32 && g.first_row == 0 && g.cell_w == 10);
    CHECK(layout_scroll(100, 10, 50, 0) == 41);
    CHECK(layout_scroll(100, 10, 45, 41) == 41);
    CHECK(layout_scroll(100, 10, 3, 41) == 3);
    CHECK(layout_scroll(5, 10, 3, 2) == 0);
}

static int help_lines, help_heads, help_has_calib;
static void help_cb(void *user, const char *line, int heading) {
    (void)user;
    help_lines++;
    help_heads += heading;
    if (strstr(line, "calibrate on the text")) help_has_calib = 1;
}

static void test_keys(void) {
    CHECK(keys_lookup(VIEW_ACT, 'q') == AC_QUIT);
    CHECK(keys_lookup(VIEW_ACT, 'm') == AC_METRIC);
    CHECK(keys_lookup(VIEW_PLAN, 'm') == AC_METHOD);
    CHECK(keys_lookup(VIEW_SENS, 'g') == AC_SENS_GROUP); /* a view binding wins over the global 'g' */
    CHECK(keys_lookup(VIEW_MODEL, 'g') == AC_HOME);
    CHECK(keys_lookup(VIEW_PLAN, TK_CTRL_R) == AC_REDO);
    CHECK(keys_lookup(VIEW_MODEL, TK_CTRL_R) == AC_NONE);
    CHECK(keys_lookup(VIEW_MODEL, 'j') == AC_DOWN && keys_lookup(VIEW_LOG, TK_BTAB) == AC_PREV_VIEW);
    CHECK(keys_lookup(VIEW_EVAL, '5') == AC_VIEW_5);
    /* No key is bound twice in the same view. */
    int n;
    const Binding *t = keys_table(&n);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            if (t[i].key != t[j].key) continue;
            int overlap = (t[i].views == VIEWS_ALL && t[j].views == VIEWS_ALL) ||
                          (t[i].views != VIEWS_ALL && t[j].views != VIEWS_ALL && (t[i].views & t[j].views));
            CHECKF(!overlap, "key %d bound twice (%d, %d)", t[i].key, i, j);
        }
    help_lines = help_heads = help_has_calib = 0;
    int k = keys_help(VIEW_PLAN, help_cb, NULL);
    CHECK(k == help_lines && help_heads == 2 && help_has_calib);
    CHECK(help_lines >= 30);
    char buf[256];
    keys_hint_line(VIEW_PLAN, 80, buf, sizeof buf);
    CHECK(strncmp(buf, "? help  f/F format", 18) == 0);
    CHECK(strlen(buf) <= 80);
    keys_hint_line(VIEW_MODEL, 200, buf, sizeof buf);
    CHECK(strcmp(buf, "? help  q quit  Esc back/cancel  c calibrate  e evaluate") == 0);
}

static PlanModel stories_pm(void) {
    return (PlanModel){.n_layers = 5, .dim = 64, .hidden_dim = 172, .n_heads = 8, .n_kv_heads = 4,
                       .head_dim = 8, .vocab_size = 512, .tied_embeddings = 1};
}

static void test_plan_edit(void) {
    Err err;
    err_init(&err);
    PlanModel pm = stories_pm();
    PlanEdit pe;
    CHECK_OK(plan_edit_init(&pe, &pm, NULL, &err), err);
    CHECK(strcmp(pe.cur.name, "fp16") == 0);
    for (int64_t l = 0; l < 5; l++)
        for (int p = 0; p < PLAN_NPROJ; p++) CHECK(plan_edit_cell(&pe, l, p)->w.fmt == QF_F16);
    CHECK(pe.cur.embed.w.fmt == QF_F16);
    PlanGrid fp16;
    CHECK_OK(plan_grid_copy(&fp16, &pe, &err), err);

    /* Everything to int4 per-OC groups of 128: down (n_in 172) falls back to 4, the rest to 64. */
    PlanEntry e = *plan_edit_cell(&pe, 0, 0);
    e.w = (QParams){QF_INT4, 0, GROUP_OC, 128};
    PeResult r;
    CHECK_OK(plan_edit_apply(&pe, PE_ALL, 0, 0, NULL, PF_FMT | PF_GROUP, &e, &r, &err), err);
    CHECK(r.changed == 35 && r.fallbacks == 35);
    CHECK(plan_edit_cell(&pe, 2, PLAN_DOWN)->w.group == 4);
    CHECK(plan_edit_cell(&pe, 2, PLAN_Q)->w.group == 64);
    CHECK(plan_edit_cell(&pe, 2, PLAN_GATE)->w.group == 64);
    CHECK(strstr(r.note, "does not divide") != NULL);
    CHECK(plan_edit_diff(&pe, &fp16) == 35);
    char code[32];
    CHECK(strcmp(plan_entry_code(plan_edit_cell(&pe, 0, PLAN_DOWN), code, sizeof code), "I4a/oc4") == 0);

    /* One cell back to fp16. */
    PlanEntry f16 = e;
    f16.w.fmt = QF_F16;
    CHECK_OK(plan_edit_apply(&pe, PE_CELL, 3, PLAN_DOWN, NULL, PF_FMT, &f16, &r, &err), err);
    CHECK(r.changed == 1 && plan_edit_cell(&pe, 3, PLAN_DOWN)->w.fmt == QF_F16);
    CHECK(plan_edit_cell(&pe, 3, PLAN_UP)->w.fmt == QF_INT4);
    CHECK(pe.cur.n_edits == 2);
    /* The same edit again changes nothing and pushes no undo step. */
    int64_t nu = pe.hist.n_undo;
    CHECK_OK(plan_edit_apply(&pe, PE_CELL, 3, PLAN_DOWN, NULL, PF_FMT, &f16, &r, &err), err);
    CHECK(r.changed == 0 && pe.hist.n_undo == nu);

    /* Row and column scopes. */
    PlanEntry i8 = e;
    i8.w = (QParams){QF_INT8, 1, GROUP_OC, 0};
    CHECK_OK(plan_edit_apply(&pe, PE_ROW, 1, 0, NULL, PF_FMT | PF_GROUP, &i8, &r, &err), err);
    CHECK(r.changed == 7 && r.fallbacks == 0);
    CHECK_OK(plan_edit_apply(&pe, PE_COL, 0, PLAN_O, NULL, PF_FMT | PF_GROUP, &i8, &r, &err), err);
    CHECK(r.changed == 4); /* layer 1's o is already int8 */
    unsigned char marks[35] = {0};
    marks[0 * 7 + PLAN_K] = marks[4 * 7 + PLAN_V] = 1;
    PlanEntry ad = e;
    ad.method = QM_ADADIM;
    CHECK_OK(plan_edit_apply(&pe, PE_MARKED, 0, 0, marks, PF_METHOD, &ad, &r, &err), err);
    CHECK(r.changed == 2 && plan_edit_cell(&pe, 4, PLAN_V)->method == QM_ADADIM);
    CHECK(plan_edit_cell(&pe, 4, PLAN_Q)->method == QM_RTN);

    /* The grid converts to a plan that resolves back to exactly the grid. */
    Plan p;
    CHECK_OK(plan_edit_to_plan(&pe, &p, &err), err);
    CHECK(p.def.w.fmt == QF_INT4);
    CHECK_OK(plan_validate(&p, &pm, &err), err);
    PlanResolved res = {0};
    CHECK_OK(plan_resolve(&p, &pm, &res, &err), err);
    for (int64_t i = 0; i < 35; i++) CHECK(plan_entry_equal(&res.lin[i].e, &pe.cur.cells[i]));
    CHECK(plan_entry_equal(&res.embed.e, &pe.cur.embed));
    int has_col_rule = 0;
    for (int64_t i = 0; i < p.n_rules; i++) has_col_rule |= strcmp(p.rules[i].pattern, "*.o") == 0;
    CHECK(has_col_rule); /* o is int8 in every layer: one column rule */
    /* *.o; row 1 but its o (6); downs of layers 0, 2, 4 (group 4) and 3 (fp16); 0.k and 4.v (adadim). */
    CHECK(p.n_rules == 1 + 6 + 4 + 2);
    plan_resolved_done(&res);
    plan_done(&p);

    /* Undo walks back to fp16, redo forward again. */
    int steps = 0;
    while (plan_edit_undo(&pe)) steps++;
    CHECK(steps == 5);
    CHECK(plan_edit_diff(&pe, &fp16) == 0);
    CHECK(plan_edit_redo(&pe) && plan_edit_cell(&pe, 0, 0)->w.fmt == QF_INT4);
    CHECK(plan_edit_redo(&pe) && plan_edit_cell(&pe, 3, PLAN_DOWN)->w.fmt == QF_F16);
    /* A new edit clears the redo stack. */
    CHECK_OK(plan_edit_apply(&pe, PE_CELL, 0, 0, NULL, PF_FMT, &i8, &r, &err), err);
    CHECK(pe.hist.n_redo == 0 && !plan_edit_redo(&pe));
    CHECK(plan_edit_undo(&pe) && plan_edit_cell(&pe, 0, 0)->w.fmt == QF_INT4);

    /* Loading a preset is one undoable step. */
    Plan w8;
    CHECK_OK(plan_preset(&w8, "w8a8-tensor", NULL, &pm, &err), err);
    CHECK_OK(plan_edit_load(&pe, &w8, &err), err);
    CHECK(strcmp(pe.cur.name, "w8a8-tensor") == 0 && pe.cur.n_edits == 0);
    CHECK(plan_edit_cell(&pe, 2, PLAN_O)->act == ACT_INT8);
    CHECK(plan_edit_undo(&pe) && plan_edit_cell(&pe, 3, PLAN_DOWN)->w.fmt == QF_F16);
    plan_done(&w8);

    /* Value cycling. */
    CHECK(pe_next_format(QF_F16, 1) == QF_BF16 && pe_next_format(QF_F16, -1) == QF_F32);
    CHECK(pe_next_format(QF_F32, 1) == QF_F16 && pe_next_format(QF_INT4, 1) == QF_INT3);
    CHECK(pe_next_dim(GROUP_OC) == GROUP_IC && pe_next_dim(GROUP_TENSOR) == GROUP_OC);
    CHECK(pe_next_format(QF_INT2, 1) == QF_Q8_0 && pe_next_format(QF_AQLM, 1) == QF_F32);
    CHECK(pe_next_format(QF_F32, -1) == QF_AQLM && qformat_traits(pe_next_format(QF_AQLM, -1))->family == QFAM_GGML);
    int64_t o5[] = {0, 4, 8, 16, 32};
    CHECK(pe_next_group(0, o5, 5, 1) == 4 && pe_next_group(32, o5, 5, 1) == 0 && pe_next_group(0, o5, 5, -1) == 32);
    CHECK(pe_next_group(128, o5, 5, -1) == 32 && pe_next_group(6, o5, 5, 1) == 8 && pe_next_group(6, o5, 5, -1) == 4);
    CHECK(pe_next_group(7, o5, 0, 1) == 7);
    CHECK(pe_fit_group(128, 172) == 4 && pe_fit_group(128, 64) == 64 && pe_fit_group(32, 172) == 4);
    CHECK(pe_fit_group(64, 688) == 16 && pe_fit_group(3, 7) == 0);
    CHECK(pe_next_method(QM_ADADIM) == QM_RTN && pe_next_act(ACT_FP8_E5M2) == ACT_NONE);
    plan_grid_done(&fp16);
    plan_edit_done(&pe);
}

static int64_t aqlm_lin_bits(const PlanModel *pm, const AqlmParams *a, const AqlmParams *down) {
    int64_t bits = 0;
    for (int p = 0; p < PLAN_NPROJ; p++) {
        int64_t n_out, n_in;
        plan_proj_shape(pm, p, &n_out, &n_in);
        bits += (int64_t)aqlm_bits(p == PLAN_DOWN ? down : a, n_out, n_in);
    }
    return bits * pm->n_layers;
}

/* AQLM per entry: the format cycle, the preset's fallback, M/B/g edits, and
 * the size the budget bar shows. */
static void test_plan_aqlm(void) {
    Err err;
    err_init(&err);
    PlanModel pm = stories_pm();
    AqlmParams f;
    CHECK(pe_fit_aqlm(&(AqlmParams){2, 8, 8}, 64, &f) == 0 && f.M == 2 && f.B == 8 && f.g == 8);
    CHECK(pe_fit_aqlm(&(AqlmParams){2, 8, 8}, 172, &f) == 1 && f.M == 1 && f.B == 8 && f.g == 4);
    CHECK(pe_fit_aqlm(&(AqlmParams){1, 16, 8}, 172, &f) == 1 && f.M == 1 && f.B == 8 && f.g == 4);
    CHECK(pe_fit_aqlm(&(AqlmParams){2, 8, 8}, 171, &f) == 1 && f.M == 1 && f.B == 6 && f.g == 3); /* docs/aqlm.md */
    CHECK(pe_fit_aqlm(&(AqlmParams){1, 1, 8}, 172, &f) == -1); /* 1/8 code bit: no g' < 8 keeps it */

    PlanEdit pe;
    CHECK_OK(plan_edit_init(&pe, &pm, NULL, &err), err);
    /* Everything to aqlm as the view does it (f past int2): down falls back like aqlm-2x8. */
    PlanEntry e = *plan_edit_cell(&pe, 0, 0);
    e.w = (QParams){QF_AQLM, 1, GROUP_OC, 0};
    e.method = QM_AQLM;
    e.aqlm = PE_AQLM_DEFAULT;
    PeResult r;
    CHECK_OK(plan_edit_apply(&pe, PE_ALL, 0, 0, NULL, PF_FMT | PF_METHOD | PF_GROUP, &e, &r, &err), err);
    CHECK(r.changed == 35 && r.fallbacks == 5);
    CHECK(strstr(r.note, "5 cells 1x8g4: g8 does not divide 172, same code bits") != NULL);
    const PlanEntry *d = plan_edit_cell(&pe, 3, PLAN_DOWN);
    CHECK(d->method == QM_AQLM && d->aqlm.M == 1 && d->aqlm.B == 8 && d->aqlm.g == 4);
    char code[48];
    CHECK(strcmp(plan_entry_code(plan_edit_cell(&pe, 0, PLAN_Q), code, sizeof code), "AQ2x8g8") == 0);
    /* The same grid as the aqlm-2x8 preset, and the budget counts its exact bits. */
    Plan pre, p;
    CHECK_OK(plan_preset(&pre, "aqlm-2x8", NULL, &pm, &err), err);
    PlanEdit pe2;
    CHECK_OK(plan_edit_init(&pe2, &pm, &pre, &err), err);
    for (int64_t i = 0; i < 35; i++) CHECK(plan_entry_equal(&pe2.cur.cells[i], &pe.cur.cells[i]));
    plan_edit_done(&pe2);
    plan_done(&pre);
    CHECK_OK(plan_edit_to_plan(&pe, &p, &err), err);
    PlanSize ps;
    CHECK_OK(plan_size(&p, &pm, NULL, &ps, &err), err);
    CHECK(ps.lin_bits == aqlm_lin_bits(&pm, &(AqlmParams){2, 8, 8}, &(AqlmParams){1, 8, 4}));
    /* by hand: q, o 65536 + 8192 + 1024; k, v 65536 + 4096 + 512; gate, up 65536 + 22016 + 2752;
     * down (1x8g4) 16384 + 22016 + 1024 (docs/aqlm.md) */
    CHECK(ps.lin_bits == 5 * (2 * 74752 + 2 * 70144 + 2 * 90304 + 39424));
    plan_done(&p);

    /* M up on everything: only M changes, each cell keeps its B and g. */
    PlanEntry m3 = e;
    m3.aqlm.M = 3;
    CHECK_OK(plan_edit_apply(&pe, PE_ALL, 0, 0, NULL, PE_AQLM_M, &m3, &r, &err), err);
    CHECK(r.changed == 35 && r.fallbacks == 0);
    d = plan_edit_cell(&pe, 1, PLAN_DOWN);
    CHECK(d->aqlm.M == 3 && d->aqlm.B == 8 && d->aqlm.g == 4);
    CHECK(plan_edit_cell(&pe, 1, PLAN_UP)->aqlm.g == 8 && plan_edit_cell(&pe, 1, PLAN_UP)->aqlm.M == 3);
    /* B 16 with M 3 would exceed 32 bits per group: clamped to B 10. */
    PlanEntry b16 = m3;
    b16.aqlm.B = 16;
    CHECK_OK(plan_edit_apply(&pe, PE_CELL, 0, PLAN_Q, NULL, PE_AQLM_B, &b16, &r, &err), err);
    CHECK(plan_edit_cell(&pe, 0, PLAN_Q)->aqlm.B == 10);
    /* g 8 on the down column: 172 falls back to the same code bits (3*8/8 = 3 -> 1x12g4). */
    PlanEntry g8 = m3;
    g8.aqlm.g = 8;
    CHECK_OK(plan_edit_apply(&pe, PE_COL, 0, PLAN_DOWN, NULL, PE_AQLM_G, &g8, &r, &err), err);
    d = plan_edit_cell(&pe, 0, PLAN_DOWN);
    CHECK(r.fallbacks == 5 && d->aqlm.M == 1 && d->aqlm.B == 12 && d->aqlm.g == 4);
    /* AQLM edits leave other formats alone. */
    PlanEntry i4 = e;
    i4.w = (QParams){QF_INT4, 1, GROUP_OC, 0};
    i4.method = QM_RTN;
    CHECK_OK(plan_edit_apply(&pe, PE_CELL, 2, PLAN_K, NULL, PF_FMT | PF_METHOD | PF_GROUP, &i4, &r, &err), err);
    CHECK(r.changed == 1 && plan_edit_cell(&pe, 2, PLAN_K)->method == QM_RTN);
    CHECK_OK(plan_edit_apply(&pe, PE_ALL, 0, 0, NULL, PE_AQLM_M, &e, &r, &err), err);
    CHECK(r.changed == 34 && plan_edit_cell(&pe, 2, PLAN_K)->w.fmt == QF_INT4);
    /* A format-only edit keeps format and method consistent both ways. */
    CHECK_OK(plan_edit_apply(&pe, PE_ROW, 2, 0, NULL, PF_FMT, &i4, &r, &err), err);
    CHECK(plan_edit_cell(&pe, 2, PLAN_Q)->w.fmt == QF_INT4 && plan_edit_cell(&pe, 2, PLAN_Q)->method == QM_RTN);
    PlanEntry aq_fmt_only = i4;
    aq_fmt_only.w.fmt = QF_AQLM;
    CHECK_OK(plan_edit_apply(&pe, PE_CELL, 2, PLAN_DOWN, NULL, PF_FMT, &aq_fmt_only, &r, &err), err);
    d = plan_edit_cell(&pe, 2, PLAN_DOWN);
    CHECK(d->method == QM_AQLM && d->aqlm.M == 1 && d->aqlm.B == 8 && d->aqlm.g == 4 && r.fallbacks == 1);
    CHECK_OK(plan_edit_to_plan(&pe, &p, &err), err);
    CHECK_OK(plan_validate(&p, &pm, &err), err);
    plan_done(&p);
    /* Group options of an aqlm cell: divisors of the input up to 64. */
    int64_t opts[80];
    int k = pe_group_options(plan_edit_cell(&pe, 0, PLAN_DOWN), 64, 172, opts, 80);
    CHECK(k == 4 && opts[0] == 1 && opts[1] == 2 && opts[2] == 4 && opts[3] == 43);
    k = pe_scope_group_options(&pe, PE_ALL, 0, PLAN_Q, NULL, plan_edit_cell(&pe, 0, PLAN_Q), opts, 80);
    CHECK(k == 3 && opts[0] == 1 && opts[2] == 4); /* common to 64 and 172 */
    plan_edit_done(&pe);
}

/* Group sizes +/- offers: every multiple of 4 dividing the grouped dimension. */
static void test_plan_groups(void) {
    Err err;
    err_init(&err);
    PlanModel pm = stories_pm();
    PlanEntry e;
    plan_entry_default(&e);
    e.w = (QParams){QF_INT4, 1, GROUP_OC, 0};
    int64_t o[80];
    int k = pe_group_options(&e, 64, 64, o, 80);
    CHECK(k == 5 && o[0] == 0 && o[1] == 4 && o[2] == 8 && o[3] == 16 && o[4] == 32);
    k = pe_group_options(&e, 64, 172, o, 80);       /* down along OC: 172 = 4·43 */
    CHECK(k == 2 && o[0] == 0 && o[1] == 4);
    e.w.dim = GROUP_IC;
    k = pe_group_options(&e, 172, 64, o, 80);       /* gate along IC: groups of output rows */
    CHECK(k == 2 && o[1] == 4);
    k = pe_group_options(&e, 11008, 4096, o, 80);   /* 11008 = 2^8·43 */
    CHECK(k == 14 && o[1] == 4 && o[5] == 64 && o[7] == 172 && o[8] == 256 && o[13] == 5504);
    e.method = QM_ADADIM;
    k = pe_group_options(&e, 64, 172, o, 80);       /* both dims: gcd 4 */
    CHECK(k == 2 && o[1] == 4);
    e.w.dim = GROUP_TENSOR;
    CHECK(pe_group_options(&e, 64, 64, o, 80) == 0);
    e.w = (QParams){QF_F16, 1, GROUP_OC, 0};
    CHECK(pe_group_options(&e, 64, 64, o, 80) == 0);

    PlanEdit pe;
    CHECK_OK(plan_edit_init(&pe, &pm, NULL, &err), err);
    PlanEntry i4 = *plan_edit_cell(&pe, 0, 0);
    i4.w = (QParams){QF_INT4, 1, GROUP_OC, 0};
    PeResult r;
    CHECK_OK(plan_edit_apply(&pe, PE_ALL, 0, 0, NULL, PF_FMT | PF_GROUP, &i4, &r, &err), err);
    /* The q column offers q's sizes; everything only those valid for down too. */
    k = pe_scope_group_options(&pe, PE_COL, 0, PLAN_Q, NULL, &i4, o, 80);
    CHECK(k == 5 && o[4] == 32);
    k = pe_scope_group_options(&pe, PE_ALL, 0, PLAN_Q, NULL, &i4, o, 80);
    CHECK(k == 2 && o[0] == 0 && o[1] == 4);
    /* fp16 cells have no groups and do not restrict the choice. */
    PlanEntry f16 = i4;
    f16.w.fmt = QF_F16;
    CHECK_OK(plan_edit_apply(&pe, PE_COL, 0, PLAN_DOWN, NULL, PF_FMT, &f16, &r, &err), err);
    k = pe_scope_group_options(&pe, PE_ALL, 0, PLAN_Q, NULL, &i4, o, 80);
    CHECK(k == 5);
    /* A group of 4 on a preset's fallback is reachable: -, - from per-channel on down. */
    CHECK_OK(plan_edit_apply(&pe, PE_COL, 0, PLAN_DOWN, NULL, PF_FMT, &i4, &r, &err), err);
    k = pe_scope_group_options(&pe, PE_CELL, 1, PLAN_DOWN, NULL, plan_edit_cell(&pe, 1, PLAN_DOWN), o, 80);
    CHECK(k == 2 && pe_next_group(0, o, k, -1) == 4);
    plan_edit_done(&pe);

    /* Where the common sizes offer no choice, the cursor cell's own are used
     * (others fall back visibly): down's 170 has no multiple of 4. */
    PlanModel odd = pm;
    odd.hidden_dim = 170;
    CHECK_OK(plan_edit_init(&pe, &odd, NULL, &err), err);
    CHECK_OK(plan_edit_apply(&pe, PE_ALL, 0, 0, NULL, PF_FMT | PF_GROUP, &i4, &r, &err), err);
    k = pe_scope_group_options(&pe, PE_ROW, 0, PLAN_Q, NULL, &i4, o, 80);
    CHECK(k == 5 && o[4] == 32);
    PlanEntry g32 = i4;
    g32.w.group = 32;
    CHECK_OK(plan_edit_apply(&pe, PE_ROW, 0, PLAN_Q, NULL, PF_GROUP, &g32, &r, &err), err);
    CHECK(r.changed == 6 && r.fallbacks == 1 && plan_edit_cell(&pe, 0, PLAN_DOWN)->w.group == 0);
    CHECK(strstr(r.note, "group 32 does not divide 170: 1 cell uses per-channel") != NULL);
    plan_edit_done(&pe);

    /* Cells falling back to different sizes are reported by outcome (the
     * note said "7 cells use group 4" for six that use 48): dim 96 takes 48
     * for 64, down's 172 takes 4. */
    PlanModel wide = {.n_layers = 2, .dim = 96, .hidden_dim = 172, .n_heads = 8, .n_kv_heads = 4,
                      .head_dim = 12, .vocab_size = 512, .tied_embeddings = 1};
    CHECK_OK(plan_edit_init(&pe, &wide, NULL, &err), err);
    PlanEntry g64 = i4;
    g64.w.group = 64;
    CHECK_OK(plan_edit_apply(&pe, PE_ROW, 1, PLAN_Q, NULL, PF_FMT | PF_GROUP, &g64, &r, &err), err);
    CHECK(r.changed == 7 && r.fallbacks == 7);
    CHECK(plan_edit_cell(&pe, 1, PLAN_Q)->w.group == 48 && plan_edit_cell(&pe, 1, PLAN_DOWN)->w.group == 4);
    CHECK(strstr(r.note, "group 64 does not divide 96: 6 cells use group 48") != NULL);
    CHECK(strstr(r.note, "64 does not divide 172: 1 cell uses group 4") != NULL);
    plan_edit_done(&pe);
}

/* `y` toggles symmetry on the integer cells of the scope and nothing else
 * (it used to copy the cursor cell's format and sign to every cell). */
static void test_plan_sym(void) {
    Err err;
    err_init(&err);
    PlanModel pm = stories_pm();
    PlanEdit pe;
    CHECK_OK(plan_edit_init(&pe, &pm, NULL, &err), err);
    PeResult r;
    PlanEntry e = *plan_edit_cell(&pe, 0, 0);
    e.w = (QParams){QF_INT8, 0, GROUP_IC, 64};
    CHECK_OK(plan_edit_apply(&pe, PE_CELL, 0, PLAN_Q, NULL, PF_FMT | PF_GROUP, &e, &r, &err), err);
    e.w = (QParams){QF_INT4, 1, GROUP_IC, 4};
    CHECK_OK(plan_edit_apply(&pe, PE_CELL, 0, PLAN_UP, NULL, PF_FMT | PF_GROUP, &e, &r, &err), err);
    /* L0: q I8a/ic64, up I4/ic4, the rest fp16; the cursor is on up (sym). */
    PlanEntry s = *plan_edit_cell(&pe, 0, PLAN_UP);
    s.w.sym = 0;
    CHECK_OK(plan_edit_apply(&pe, PE_ROW, 0, PLAN_UP, NULL, PE_SYM, &s, &r, &err), err);
    CHECK(r.changed == 1); /* q is already asymmetric; fp16 cells take no sign */
    const PlanEntry *q = plan_edit_cell(&pe, 0, PLAN_Q), *up = plan_edit_cell(&pe, 0, PLAN_UP);
    CHECK(q->w.fmt == QF_INT8 && q->w.dim == GROUP_IC && q->w.group == 64 && !q->w.sym);
    CHECK(up->w.fmt == QF_INT4 && up->w.group == 4 && !up->w.sym);
    CHECK(plan_edit_cell(&pe, 0, PLAN_DOWN)->w.fmt == QF_F16 && plan_edit_cell(&pe, 0, PLAN_K)->w.fmt == QF_F16);
    s.w.sym = 1;
    CHECK_OK(plan_edit_apply(&pe, PE_ALL, 0, PLAN_UP, NULL, PE_SYM, &s, &r, &err), err);
    CHECK(r.changed == 2 && plan_edit_cell(&pe, 0, PLAN_Q)->w.sym && plan_edit_cell(&pe, 0, PLAN_Q)->w.fmt == QF_INT8);
    CHECK(plan_edit_cell(&pe, 0, PLAN_Q)->w.group == 64 && plan_edit_cell(&pe, 3, PLAN_Q)->w.fmt == QF_F16);
    plan_edit_done(&pe);
}

/* The settings panel's bits change one setting and nothing else. */
static void test_plan_settings(void) {
    Err err;
    err_init(&err);
    PlanModel pm = stories_pm();
    PlanEdit pe;
    CHECK_OK(plan_edit_init(&pe, &pm, NULL, &err), err);
    PeResult r;
    PlanEntry g = *plan_edit_cell(&pe, 0, 0);
    g.w = (QParams){QF_INT4, 1, GROUP_OC, 32};
    g.method = QM_GPTQ;
    g.act = ACT_INT8;
    CHECK_OK(plan_edit_apply(&pe, PE_CELL, 0, PLAN_Q, NULL, PF_ALL, &g, &r, &err), err);
    /* L0: q int4 gptq act int8, the rest fp16 rtn; damp 0.05 on the row */
    PlanEntry s = g;
    s.gptq.damp = 0.05;
    s.act_gran = ACT_PER_TOKEN;
    CHECK_OK(plan_edit_apply(&pe, PE_ROW, 0, PLAN_Q, NULL, PE_GPTQ, &s, &r, &err), err);
    CHECK(r.changed == 7);
    CHECK(plan_edit_cell(&pe, 0, PLAN_K)->method == QM_RTN && plan_edit_cell(&pe, 0, PLAN_K)->w.fmt == QF_F16);
    CHECK(plan_edit_cell(&pe, 0, PLAN_K)->gptq.damp == 0.05 && plan_edit_cell(&pe, 0, PLAN_K)->act_gran == ACT_PER_TENSOR);
    CHECK_OK(plan_edit_apply(&pe, PE_ROW, 0, PLAN_Q, NULL, PE_ACT_GRAN, &s, &r, &err), err);
    CHECK(r.changed == 7 && plan_edit_cell(&pe, 0, PLAN_K)->act == ACT_NONE);
    CHECK(plan_edit_cell(&pe, 0, PLAN_K)->act_gran == ACT_PER_TOKEN && plan_edit_cell(&pe, 0, PLAN_Q)->act == ACT_INT8);
    plan_edit_done(&pe);
}

/* The embedding and the output head are edited like cells. */
static void test_plan_ends(void) {
    Err err;
    err_init(&err);
    PlanModel pm = stories_pm();
    pm.tied_embeddings = 0;
    PlanEdit pe;
    CHECK_OK(plan_edit_init(&pe, &pm, NULL, &err), err);
    CHECK(pe_next_end_format(QF_F16, 1) == QF_BF16 && pe_next_end_format(QF_INT8, 1) == QF_INT4);
    CHECK(pe_next_end_format(QF_INT4, 1) == QF_Q8_0 && pe_next_end_format(QF_F32, 1) == QF_F16);
    CHECK(qformat_traits(pe_next_end_format(QF_F32, -1))->family == QFAM_GGML);
    CHECK(pe_next_end_format(QF_F16, -1) == QF_F32 && pe_next_end_format(QF_INT3, 1) == QF_F16);
    PlanEntry e = *plan_edit_end(&pe, PE_END_OUTPUT);
    e.w = (QParams){QF_INT4, 1, GROUP_OC, 128};
    e.act = ACT_INT8;                                /* not taken: ends get format and grouping only */
    e.method = QM_GPTQ;
    PeResult r;
    CHECK_OK(plan_edit_apply_end(&pe, PE_END_OUTPUT, PF_ALL, &e, &r, &err), err);
    const PlanEntry *o = plan_edit_end(&pe, PE_END_OUTPUT);
    CHECK(r.changed == 1 && r.fallbacks == 1 && o->w.fmt == QF_INT4 && o->w.group == 64); /* dim 64 */
    CHECK(o->act == ACT_NONE && o->method == QM_RTN);
    CHECK(plan_edit_end(&pe, PE_END_EMBED)->w.fmt == QF_F16);
    e.w = (QParams){QF_FP8_E4M3, 1, GROUP_TENSOR, 0};
    CHECK_OK(plan_edit_apply_end(&pe, PE_END_EMBED, PF_FMT | PF_GROUP, &e, &r, &err), err);
    CHECK(plan_edit_end(&pe, PE_END_EMBED)->w.fmt == QF_FP8_E4M3 && pe.cur.n_edits == 2);
    Plan p;
    CHECK_OK(plan_edit_to_plan(&pe, &p, &err), err);
    CHECK_OK(plan_validate(&p, &pm, &err), err);
    CHECK(p.output.w.fmt == QF_INT4 && p.embed.w.fmt == QF_FP8_E4M3);
    PlanSize ps, ps16;
    CHECK_OK(plan_size(&p, &pm, NULL, &ps, &err), err);
    plan_done(&p);
    CHECK(plan_edit_undo(&pe) && plan_edit_undo(&pe));
    CHECK(plan_edit_end(&pe, PE_END_OUTPUT)->w.fmt == QF_F16);
    CHECK_OK(plan_edit_to_plan(&pe, &p, &err), err);
    CHECK_OK(plan_size(&p, &pm, NULL, &ps16, &err), err);
    plan_done(&p);
    /* the budget sees it */
    CHECK(ps.lin_bits == ps16.lin_bits);
    /* (fp16 -> int4 with one fp16 scale per row of 64) + (fp16 -> fp8 with one fp16 scale) */
    CHECK(ps16.all_bits - ps.all_bits == (int64_t)512 * 64 * (16 - 4) - 512 * 16 + (512 * 64 * (16 - 8) - 16));
    plan_edit_done(&pe);
}

/* The grid fits long codes into 80 and 100 columns. */
static void test_plan_grid_fit(void) {
    Err err;
    err_init(&err);
    PlanModel pm = stories_pm();
    PlanEdit pe;
    CHECK_OK(plan_edit_init(&pe, &pm, NULL, &err), err);
    PlanEntry e = *plan_edit_cell(&pe, 0, 0);
    e.w = (QParams){QF_INT4, 1, GROUP_IC, 8};
    e.method = QM_GPTQ;
    e.act = ACT_INT8;
    char c[48];
    CHECK(strcmp(plan_entry_code(&e, c, sizeof c), "I4/ic8\xc2\xb7G\xc2\xb7" "A8") == 0);
    CHECK(strcmp(pe_cell_code(&e, 1, c, sizeof c), "I4/ic8\xc2\xb7GA") == 0);
    CHECK(strcmp(pe_cell_code(&e, 2, c, sizeof c), "I4/ic8+") == 0);
    PlanEntry t = e;
    t.method = QM_RTN;
    t.act_gran = ACT_PER_TOKEN;
    t.w = (QParams){QF_INT8, 1, GROUP_OC, 0};
    CHECK(strcmp(pe_cell_code(&t, 0, c, sizeof c), "I8/oc\xc2\xb7" "A8t") == 0);
    CHECK(strcmp(pe_cell_code(&t, 1, c, sizeof c), "I8/oc\xc2\xb7" "A") == 0);
    CHECK(strcmp(pe_cell_code(plan_edit_cell(&pe, 0, 0), 2, c, sizeof c), "F16") == 0);
    CHECK(pe_text_width("I4/ic8\xc2\xb7GA") == 9);
    CHECK(pe_code_legend(0)[0] == 0 && strstr(pe_code_legend(1), "G GPTQ") != NULL);
    CHECK(pe_text_width(pe_code_legend(1)) <= 78 && pe_text_width(pe_code_legend(2)) <= 78); /* 80 columns */

    /* fp16 everywhere: full codes, columns widened to 12 at 100 columns. */
    Layout l;
    PeGridFit f;
    layout_screen(&l, 100, 30, 0);
    pe_grid_fit(&pe, l.main.w - 1, 0, &f);
    CHECK(f.level == 0 && f.label_w == 5 && f.col_w[0] == 12 && f.col_w[6] == 12 && f.n_vis_cols == 7);
    /* One long column at 80x24: it gets its width, the others share the rest. */
    PeResult r;
    CHECK_OK(plan_edit_apply(&pe, PE_COL, 0, PLAN_DOWN, NULL, PF_ALL, &e, &r, &err), err);
    layout_screen(&l, 80, 24, 0);
    CHECK(l.main.w == 80);
    pe_grid_fit(&pe, l.main.w - 1, 0, &f);
    CHECK(f.level == 0 && f.col_w[PLAN_DOWN] == 13 && f.col_w[0] == 10 && f.n_vis_cols == 7);
    /* Every cell I4/ic8·G·A8: full at 100x30, abbreviated to "I4/ic8+" at 80x24. */
    CHECK_OK(plan_edit_apply(&pe, PE_ALL, 0, 0, NULL, PF_ALL, &e, &r, &err), err);
    layout_screen(&l, 100, 30, 0);
    pe_grid_fit(&pe, l.main.w - 1, 6, &f);
    CHECK(f.level == 0 && f.col_w[0] == 13 && f.first_col == 0 && f.n_vis_cols == 7);
    CHECK(f.label_w + 6 * 13 + 11 + 1 <= l.main.w); /* the cursor's closing bracket fits */
    layout_screen(&l, 80, 24, 0);
    pe_grid_fit(&pe, l.main.w - 1, 6, &f);
    CHECK(f.level == 2 && f.col_w[0] == 10 && f.first_col == 0 && f.n_vis_cols == 7);
    /* Narrower than any level: the columns scroll to keep the cursor's in view. */
    pe_grid_fit(&pe, 40, 6, &f);
    CHECK(f.level == 3 && f.col_w[0] == 8 && f.first_col == 3 && f.n_vis_cols == 4);
    pe_grid_fit(&pe, 40, 0, &f);
    CHECK(f.first_col == 0 && f.n_vis_cols == 4);
    plan_edit_done(&pe);
    /* 32 layers of int4-gptq at 80x24: "I4a/oc64+" with one column of gap, all 7 columns. */
    PlanModel deep = pm;
    deep.n_layers = 32;
    Plan g4;
    CHECK_OK(plan_preset(&g4, "int4-gptq", NULL, &deep, &err), err);
    CHECK_OK(plan_edit_init(&pe, &deep, &g4, &err), err);
    plan_done(&g4);
    pe_grid_fit(&pe, l.main.w - 1, 6, &f);
    CHECK(f.label_w == 6 && f.level == 3 && f.col_w[0] == 10 && f.col_w[6] == 10 && f.n_vis_cols == 7);
    layout_screen(&l, 100, 30, 0);
    pe_grid_fit(&pe, l.main.w - 1, 6, &f);
    CHECK(f.level == 0 && f.col_w[0] == 12 && f.n_vis_cols == 7);
    plan_edit_done(&pe);
}

/* === Jobs === */

typedef struct TJob {
    int steps;
    int *finished;
    Status got;
} TJob;

static Status tjob_run(void *arg, Progress *p, Err *err) {
    TJob *j = arg;
    progress_begin(p, "count", j->steps);
    for (int i = 0; i < j->steps; i++) {
        if (progress_cancelled(p)) return err_set(err, ST_ERR_CANCELLED, "stopped at step %d", i);
        usleep(2000);
        progress_add(p, 1);
    }
    if (j->steps == 3) return err_set(err, ST_ERR_IO, "three is a failure");
    return ST_OK;
}

static int finish_order[8], n_finished;
static void tjob_finish(void *arg, Status st, const Err *err, void *ctx) {
    TJob *j = arg;
    (void)err;
    CHECK(ctx == (void *)&n_finished);
    j->got = st;
    finish_order[n_finished++] = j->steps;
}

static void test_jobs(void) {
    Err err;
    err_init(&err);
    JobRunner jr;
    CHECK_OK(jobs_init(&jr, &err), err);
    TJob a = {.steps = 20}, b = {.steps = 3}, c = {.steps = 100000};
    CHECK(jobs_submit(&jr, "a", tjob_run, tjob_finish, NULL, &a, &err) == 1);
    CHECK(jobs_submit(&jr, "b", tjob_run, tjob_finish, NULL, &b, &err) == 2);
    CHECK(jobs_submit(&jr, "c", tjob_run, tjob_finish, NULL, &c, &err) == 3);
    JobView v;
    jobs_view(&jr, &v);
    CHECK(v.n_queued >= 2); /* a may have started; b and c wait */
    double t0 = jobs_now();
    while (n_finished < 2 && jobs_now() - t0 < 10) {
        jobs_poll(&jr, &n_finished);
        usleep(1000);
    }
    CHECK(n_finished == 2 && finish_order[0] == 20 && finish_order[1] == 3);
    CHECK(a.got == ST_OK && b.got == ST_ERR_IO);
    /* c runs now: progress is visible, cancel stops it promptly. */
    t0 = jobs_now();
    do {
        jobs_view(&jr, &v);
        usleep(1000);
    } while ((!v.running || v.done < 5) && jobs_now() - t0 < 10);
    CHECK(v.running && strcmp(v.label, "c") == 0 && v.total == 100000 && strcmp(v.stage, "count") == 0);
    CHECK(v.eta > 0);
    CHECK(jobs_cancel(&jr) == 1);
    t0 = jobs_now();
    while (n_finished < 3 && jobs_now() - t0 < 10) {
        jobs_poll(&jr, &n_finished);
        usleep(1000);
    }
    CHECK(n_finished == 3 && c.got == ST_ERR_CANCELLED);
    CHECK(jobs_now() - t0 < 0.5);
    CHECK(!jobs_busy(&jr) && jobs_poll(&jr, &n_finished) == 0);
    jobs_done(&jr);
}

static void test_results(void) {
    /* Evaluation rows: sort, Pareto front, scatter. */
    EvalRow rows[4] = {
        {.id = 1, .ppl = 10.0, .bpw = 16.0, .kld_mean = 0, .top1 = 1, .tps = 100},
        {.id = 2, .ppl = 12.0, .bpw = 4.5, .kld_mean = 0.1, .top1 = 0.8, .tps = 300},
        {.id = 3, .ppl = 13.0, .bpw = 8.0, .kld_mean = 0.2, .top1 = 0.7, .tps = NAN},
        {.id = 4, .ppl = 11.0, .bpw = 8.0, .kld_mean = 0.05, .top1 = 0.9, .tps = 200, .cancelled = 1},
    };
    unsigned char front[4];
    CHECK(vm_pareto(rows, 4, EM_PPL, 1, front) == 2);
    CHECK(front[0] && front[1] && !front[2] && !front[3]);
    /* without the reference row (16 bpw) only #2 is left on the PPL front */
    CHECK(vm_pareto(rows, 4, EM_PPL, 0, front) == 1 && front[1] && !front[0]);
    /* by KLD: the fp32 row's KLD 0 dominates everything at >= 16 bpw only */
    CHECK(vm_pareto(rows, 4, EM_KLD, 1, front) == 2 && front[0] && front[1]);
    CHECK_NEAR(vm_metric(&rows[1], EM_TOP1_MISS), 0.2, 1e-12);
    int x[4], y[4];
    double bl, bh, pl, ph;
    vm_scatter(rows, 4, EM_PPL, 1, 41, 11, x, y, &bl, &bh, &pl, &ph);
    CHECK(bl == 4.5 && bh == 16.0 && pl == 10.0 && ph == 13.0);
    CHECK(x[0] == 40 && y[0] == 10); /* best PPL at the bottom row */
    CHECK(x[1] == 0 && y[2] == 0 && x[3] == -1);
    vm_eval_sort(rows, 4, ES_PPL);
    CHECK(rows[0].id == 1 && rows[1].id == 4 && rows[2].id == 2 && rows[3].id == 3);
    vm_eval_sort(rows, 4, ES_TPS);
    CHECK(rows[0].id == 2 && rows[1].id == 4 && rows[2].id == 1 && rows[3].id == 3); /* NaN last */
    vm_eval_sort(rows, 4, ES_ID);
    CHECK(rows[0].id == 1 && rows[3].id == 4);
    /* A reopened row from another text (here the best of all) is listed but never compared. */
    EvalRow other[2] = {
        {.id = 1, .ppl = 10.0, .bpw = 16.0},
        {.id = 2, .ppl = 5.0, .bpw = 4.0, .other_text = 1},
    };
    unsigned char of[2];
    CHECK(vm_pareto(other, 2, EM_PPL, 1, of) == 1 && of[0] && !of[1]);
    vm_scatter(other, 2, EM_PPL, 1, 41, 11, x, y, &bl, &bh, &pl, &ph);
    CHECK(bl == 16.0 && pl == 10.0 && x[1] == -1 && y[1] == -1);
    /* KLD scatter, log axis: KLD 0 (fp32) is not plotted; 0.01 and 0.1 span
     * the rows, 0.0316 (the geometric middle) lands in the middle row */
    EvalRow k3[4] = {
        {.id = 1, .ppl = 10, .bpw = 32, .kld_mean = 0},
        {.id = 2, .ppl = 11, .bpw = 4, .kld_mean = 0.1},
        {.id = 3, .ppl = 10.5, .bpw = 6, .kld_mean = 0.01},
        {.id = 4, .ppl = 10.7, .bpw = 5, .kld_mean = 0.0316227766},
    };
    vm_scatter(k3, 4, EM_KLD, 1, 41, 11, x, y, &bl, &bh, &pl, &ph);
    CHECK(x[0] == -1 && pl == 0.01 && ph == 0.1 && y[1] == 0 && y[2] == 10 && y[3] == 5);
}

/* The Evaluate table: columns never shift or cut a number (issue: at 100
 * columns a 180.498 MB size pushed the row right and the decode rate was cut:
 * "180.498     6" for 66 tok/s). */
static void test_results_table(void) {
    char b[32];
    CHECK(!strcmp(vm_fit_num(b, 7, 180.498, 3, 0), "180.498"));
    CHECK(!strcmp(vm_fit_num(b, 7, 1804.98, 3, 0), "1804.98"));
    CHECK(!strcmp(vm_fit_num(b, 7, 123456789.0, 3, 0), "1.2e+08"));
    CHECK(!strcmp(vm_fit_num(b, 8, 12345.678, 4, 0), "12345.68"));
    CHECK(!strcmp(vm_fit_num(b, 8, 0.5, 4, 1), " +0.5000"));
    CHECK(!strcmp(vm_fit_num(b, 5, NAN, 2, 0), "    -"));
    EvalRow r[3] = {
        {.id = 1, .label = "int4-gptq", .ppl = 7.1982, .dppl = 0.3, .kld_mean = 0.0798, .kld_p99 = 0.5, .top1 = 0.856,
         .bpw = 4.30, .bytes = 180498000, .tps = 66, .quant_s = 12.345, .kld_pred = NAN, .front = 1},
        {.id = 12, .label = "a-plan-name-much-longer-than-thirty-two-characters", .ppl = 123456.7, .dppl = -1234.5,
         .kld_mean = 123.4, .kld_p99 = 1234.5, .top1 = 1, .bpw = 16, .bytes = 2000000000, .tps = 123456,
         .quant_s = 123456.7, .kld_pred = 0.0123},
        {.id = 3, .label = "x", .ppl = 7, .dppl = 0, .kld_mean = 0, .top1 = 0, .bpw = 2.5, .bytes = 1000, .tps = NAN,
         .quant_s = NAN, .kld_pred = NAN, .cancelled = 1},
    };
    for (int width = 60; width <= 160; width += 20) {
        for (int hp = 0; hp <= 1; hp++) {
            unsigned cols;
            int pw = vm_eval_layout(width, hp, vm_eval_label_width(r, 3), &cols);
            char head[512], row[512];
            vm_eval_header(head, sizeof head, pw, cols);
            int hw = (int)strlen(head);
            CHECK(hw == vm_eval_width(pw, cols));
            CHECKF(hw <= width || (pw == 11 && cols == 0), "width %d: header %d", width, hw);
            if (width >= 100) CHECK(cols & EVC_P99);
            if (width >= 120) CHECK(cols & EVC_QSEC);
            if (width <= 80) CHECK(!(cols & EVC_QSEC)); /* the first to go */
            if (width >= 100 && hp) CHECK(cols & EVC_PRED);
            if (!hp) CHECK(!(cols & EVC_PRED));
            for (int i = 0; i < 3; i++) {
                vm_eval_row(&r[i], 1.0, row, sizeof row, pw, cols);
                CHECKF((int)strlen(row) == hw, "width %d row %d: %d vs header %d\n%s\n%s", width, i, (int)strlen(row), hw,
                       head, row);
                /* every numeric column is right-aligned and ends where its title ends:
                 * the last character of each is not blank in the header nor in the row */
                int ends[12], ne = 0, e = 3 + 1 + pw;
                int wl[10] = {8, 8, 8, (cols & EVC_PRED) ? 8 : 0, (cols & EVC_P99) ? 8 : 0, 6, 5, 7, 7,
                              (cols & EVC_QSEC) ? 7 : 0};
                for (int k = 0; k < 10; k++)
                    if (wl[k]) ends[ne++] = (e += 1 + wl[k]) - 1;
                CHECK(e == hw);
                for (int k = 0; k < ne; k++)
                    CHECKF(head[ends[k]] != ' ' && row[ends[k]] != ' ',
                           "width %d row %d: column ending at %d\n%s\n%s", width, i, ends[k], head, row);
            }
        }
    }
    /* at 100 columns the size and the decode rate print whole, in their columns */
    unsigned cols;
    int pw = vm_eval_layout(100, 0, 9, &cols);
    char head[512], row[512];
    vm_eval_header(head, sizeof head, pw, cols);
    vm_eval_row(&r[0], 1.0, row, sizeof row, pw, cols);
    CHECK(strstr(head, "dec t/s") != NULL);
    CHECK(strstr(row, "180.498      66") != NULL);
    CHECK(strstr(row, " 1*") == row && strstr(row, "int4-gptq") != NULL && strstr(row, "85.6%") != NULL);
    vm_eval_row(&r[2], 1.0, row, sizeof row, pw, cols);
    CHECK(strstr(row, "(partial) x") != NULL);
    /* quant s gives way to a label it would cut (a GGUF's file name at 100 columns) */
    CHECK(cols & EVC_QSEC);
    pw = vm_eval_layout(100, 0, (int)strlen("stories260K-Q4_0-mixed.gguf"), &cols);
    CHECK(!(cols & EVC_QSEC) && (cols & EVC_P99) && pw >= 27);
    /* wide enough: the quantization time, last, with two decimals; "-" when not recorded */
    pw = vm_eval_layout(140, 0, 9, &cols);
    CHECK(cols & EVC_QSEC);
    vm_eval_header(head, sizeof head, pw, cols);
    CHECK(strlen(head) >= 7 && !strcmp(head + strlen(head) - 7, "quant s"));
    vm_eval_row(&r[0], 1.0, row, sizeof row, pw, cols);
    CHECKF(!strcmp(row + strlen(row) - 8, "   12.35"), "%s", row);
    vm_eval_row(&r[1], 1.0, row, sizeof row, pw, cols);
    CHECKF(!strcmp(row + strlen(row) - 8, "  123457"), "%s", row);
    vm_eval_row(&r[2], 1.0, row, sizeof row, pw, cols);
    CHECKF(!strcmp(row + strlen(row) - 2, " -"), "%s", row);
}

/* One byte unit on every screen (the Model view said "MB" for MiB while the
 * budget bar meant 10^6 bytes). */
/* LANG=C: every glyph has a one-column ASCII fallback (the plan codes' "·"
 * went out raw, shifting the columns). */
static void test_ascii(void) {
    char b[64];
    CHECK(strcmp(layout_ascii("I4/ic64\u00b7G\u00b7A8t", b, sizeof b), "I4/ic64.G.A8t") == 0);
    CHECK(strcmp(layout_ascii("\u2591\u2592\u2593\u2588 \u2502 x\u00b2 \u2026", b, sizeof b), ".:*# | x2 ~") == 0);
    CHECK(strcmp(layout_ascii("\u4e2d\u00e9", b, sizeof b), "??") == 0); /* one column per code point */
    CHECK(strcmp(layout_ascii("abcdef", b, 4), "abc") == 0);
}

static void test_units(void) {
    char b[32];
    vm_fmt_bytes(1185376, b, sizeof b); /* stories260K-f32.gguf */
    CHECK(strcmp(b, "1.19 MB") == 0);
    vm_fmt_bytes(131072, b, sizeof b);
    CHECK(strcmp(b, "131.1 kB") == 0);
    vm_fmt_bytes(2540000000u, b, sizeof b);
    CHECK(strcmp(b, "2.54 GB") == 0);
    vm_fmt_bytes(999, b, sizeof b);
    CHECK(strcmp(b, "999 B") == 0);
    /* kernel times (the speed table beside the errors) */
    CHECK(strcmp(vm_fmt_secs(8.12e-7, b, sizeof b), "812ns") == 0);
    CHECK(strcmp(vm_fmt_secs(4.24e-6, b, sizeof b), "4.2us") == 0);
    CHECK(strcmp(vm_fmt_secs(3.8e-5, b, sizeof b), "38us") == 0);
    CHECK(strcmp(vm_fmt_secs(1.3e-3, b, sizeof b), "1.3ms") == 0);
    CHECK(strcmp(vm_fmt_secs(2.1, b, sizeof b), "2.10s") == 0);
    CHECK(strcmp(vm_fmt_secs(0, b, sizeof b), "-") == 0 && strcmp(vm_fmt_secs(NAN, b, sizeof b), "-") == 0);
}

/* The detail's and the diff's cell comparison: int4-rtn against itself is
 * no difference; with L2.down at int3 and the head at int8 exactly those two
 * sites differ, in the order embed, output, grid; a GPTQ damp change alone
 * (a setting the code does not show) counts too. */
static void test_compare(void) {
    Err err;
    err_init(&err);
    PlanModel pm = stories_pm();
    Plan a, b;
    CHECK_OK(plan_preset(&a, "int4-rtn", NULL, &pm, &err), err);
    CHECK_OK(plan_copy(&b, &a, &err), err);
    CmpSite *c = NULL;
    int64_t n = -1;
    CHECK_OK(cmp_plans(&a, &b, &pm, &c, &n, &err), err);
    CHECK(n == 0 && c == NULL);
    PlanEntry e;
    plan_entry_default(&e);
    e.w = (QParams){QF_INT3, 0, GROUP_OC, 4};
    CHECK_OK(plan_add_rule(&b, "2.down", PF_FMT | PF_GROUP, &e, &err), err);
    b.output.w = (QParams){QF_INT8, 1, GROUP_OC, 0};
    CHECK_OK(cmp_plans(&a, &b, &pm, &c, &n, &err), err);
    CHECK(n == 2);
    if (n == 2) {
        char name[24];
        CHECK(c[0].site == CMP_OUTPUT && strcmp(cmp_site_name(c[0].site, name, sizeof name), "output") == 0);
        CHECK(strcmp(c[0].a, "F16") == 0 && strcmp(c[0].b, "I8/oc") == 0);
        CHECK(c[1].site == 2 * PLAN_NPROJ + PLAN_DOWN);
        CHECK(strcmp(cmp_site_name(c[1].site, name, sizeof name), "L2.down") == 0);
        CHECK(strcmp(c[1].a, "I4a/oc4") == 0 && strcmp(c[1].b, "I3a/oc4") == 0);
    }
    free(c);
    Plan d;
    CHECK_OK(plan_copy(&d, &a, &err), err);
    plan_entry_default(&e);
    e.gptq.damp = 0.1;
    CHECK_OK(plan_add_rule(&d, "0.q", PF_METHOD, &e, &err), err);
    PlanResolved ra = {0}, rd = {0};
    CHECK_OK(plan_resolve(&a, &pm, &ra, &err), err);
    CHECK_OK(plan_resolve(&d, &pm, &rd, &err), err);
    char ca[48], cd[48];
    CHECK(strcmp(plan_entry_code(&ra.lin[0].e, ca, sizeof ca), plan_entry_code(&rd.lin[0].e, cd, sizeof cd)) == 0);
    CHECK_OK(cmp_plans(&a, &d, &pm, &c, &n, &err), err);
    CHECK(n == 1 && c && c[0].site == 0);
    free(c);
    plan_resolved_done(&ra);
    plan_resolved_done(&rd);
    plan_done(&a);
    plan_done(&b);
    plan_done(&d);
}

/* The auto plan's budget prompt: bits per weight, or SI sizes. */
static void test_budget_parse(void) {
    double bpw;
    size_t bytes;
    char why[160];
    CHECK(pe_parse_budget("4.5", &bpw, &bytes, why, sizeof why) == 0 && bpw == 4.5 && bytes == 0);
    CHECK(pe_parse_budget(" 7.8180 bpw", &bpw, &bytes, why, sizeof why) == 0 && bpw == 7.818 && bytes == 0);
    CHECK(pe_parse_budget("0.25 MB", &bpw, &bytes, why, sizeof why) == 0 && bytes == 250000 && bpw == 0);
    CHECK(pe_parse_budget("210kB", &bpw, &bytes, why, sizeof why) == 0 && bytes == 210000);
    CHECK(pe_parse_budget("284000 bytes", &bpw, &bytes, why, sizeof why) == 0 && bytes == 284000);
    CHECK(pe_parse_budget("1.5 GB", &bpw, &bytes, why, sizeof why) == 0 && bytes == 1500000000u);
    CHECK(pe_parse_budget("33", &bpw, &bytes, why, sizeof why) == -1 && strstr(why, "between 0 and 32"));
    CHECK(pe_parse_budget("7 parsecs", &bpw, &bytes, why, sizeof why) == -1 && strstr(why, "the unit is"));
    CHECK(pe_parse_budget("-1", &bpw, &bytes, why, sizeof why) == -1);
    CHECK(pe_parse_budget("", &bpw, &bytes, why, sizeof why) == -1);
    CHECK(pe_parse_budget("4 bpw extra", &bpw, &bytes, why, sizeof why) == -1);
}

/* Statistics-side view models on a real stories260K calibration: tensor kinds
 * and dtypes of the Model view, the activation metrics against the spike
 * ranking, channel ordering, spike-aware sites. */
static void test_vmodel_stats(void) {
    Err err;
    err_init(&err);
    Model *m = NULL;
    CHECK_OK(model_load(testlib_shared("models/stories260K/stories260K-f32.gguf"), NULL, &m, &err), err);
    KindRow kr[8];
    int nk = vm_model_kinds(m, kr, 8);
    int64_t params = 0;
    for (int i = 0; i < nk; i++) params += kr[i].params;
    CHECK(params == model_param_count(m));
    CHECK(strcmp(kr[0].kind, "embedding") == 0 && kr[0].params == 512 * 64);
    DtypeRow dr[8];
    int nd = vm_model_dtypes(m, dr, 8);
    CHECK(nd == 1 && strcmp(dr[0].name, "F32") == 0 && dr[0].n_tensors == m->n_tensors);

    char *text = NULL;
    size_t len = 0;
    CHECK_OK(file_read_all(testlib_shared("text/tinystories_sample.txt"), 1 << 20, &text, &len, &err), err);
    CalibParams cp;
    calib_params_default(&cp);
    cp.samples = 4;
    cp.seqlen = 64;
    cp.sensitivity = 0;
    CalibStats *cs = NULL;
    CHECK_OK(calib_run(m, text, len, &cp, NULL, NULL, NULL, &cs, &err), err);
    double grid[5 * TAP_COUNT];
    vm_act_grid(cs, AM_MAX, grid);
    for (int64_t l = 0; l < 5; l++)
        for (int t = 0; t < TAP_COUNT; t++) {
            const TapStats *ts = calib_tap(cs, l, (TapPoint)t);
            float mx = 0;
            for (int64_t c = 0; c < ts->width; c++) mx = fmaxf(mx, ts->ch_absmax[c]);
            CHECK(grid[l * TAP_COUNT + t] == mx); /* the tensor max is the channel maxima's max */
        }
    /* max/median agrees with the spike ranking's ratio for the projection inputs. */
    SpikeScore *sc = NULL;
    int64_t n = 0;
    CHECK_OK(spikes_score(cs, &sc, &n, &err), err);
    CHECK(n == 20);
    for (int64_t i = 0; i < n; i++) {
        double r = vm_act_value(cs, sc[i].layer, sc[i].tap, AM_RATIO);
        CHECK_NEAR(r, sc[i].ratio, 1e-9 * sc[i].ratio);
        CHECK_NEAR(vm_act_value(cs, sc[i].layer, sc[i].tap, AM_KURT), sc[i].kurtosis, 1e-9 * sc[i].kurtosis);
        CHECK_NEAR(vm_act_value(cs, sc[i].layer, sc[i].tap, AM_P999), sc[i].p999, 1e-9 * sc[i].p999);
    }
    free(sc);
    /* The channel order puts the largest max|x| first. */
    const TapStats *ts = calib_tap(cs, 0, TAP_DOWN);
    int64_t idx[172];
    vm_channel_order(ts, 1, idx);
    CHECK(ts->ch_absmax[idx[0]] == ts->absmax);
    for (int64_t c = 1; c < ts->width; c++) CHECK(ts->ch_absmax[idx[c - 1]] >= ts->ch_absmax[idx[c]]);
    vm_channel_order(ts, 0, idx);
    CHECK(idx[0] == 0 && idx[171] == 171);
    CHECK(isnan(vm_sens_value(NULL, 0, 0, 0, SG_OC, 1)));
    char sites[3][16];
    CHECK(vm_spike_sites(cs, 3, sites, &err) == 3);
    CHECK_OK(spikes_score(cs, &sc, &n, &err), err);
    for (int i = 0; i < 3; i++) {
        char want[16];
        snprintf(want, sizeof want, "%lld.%s", (long long)sc[i].layer, tap_name(sc[i].tap));
        CHECK(strcmp(sites[i], want) == 0);
    }
    free(sc);
    calib_stats_free(cs);
    free(text);
    model_free(m);
}


int main(void) {
    test_vmodel_stats();
    test_heat();
    test_layout();
    test_keys();
    test_plan_edit();
    test_plan_aqlm();
    test_plan_groups();
    test_plan_sym();
    test_plan_settings();
    test_plan_ends();
    test_plan_grid_fit();
    test_jobs();
    test_results();
    test_results_table();
    test_compare();
    test_budget_parse();
    test_units();
    test_ascii();
    return testlib_done("test_tui_model");
}
