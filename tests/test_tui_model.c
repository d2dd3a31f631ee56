/* Curses-free view models of the TUI: heat scales, binning, legend ticks,
 * glyphs, layout at several terminal sizes, the bindings table and help,
 * plan editing with undo/redo and its conversion back to a Plan, the job
 * runner, and the evaluation rows (sort, Pareto front, scatter). The
 * statistics-side view models are in test_tui_stats.c (analysis/stats.h and
 * quant/plan.h cannot share a translation unit: both define ACT_INT8). */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "quant/preset.h"
#include "tests/testlib.h"
#include "tui/heat.h"
#include "tui/job.h"
#include "tui/keys.h"
#include "tui/layout.h"
#include "tui/plan_edit.h"
#include "tui/results.h"

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
    CHECK(l.side.w == 32 && l.main.w == 67 && l.body.h == 26 && l.msg.y == 29);
    layout_screen(&l, 200, 60, 1);
    CHECK(l.side.w == 40 && l.main.w == 159 && l.hints.y == 58);
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
    int64_t nu = pe.n_undo;
    CHECK_OK(plan_edit_apply(&pe, PE_CELL, 3, PLAN_DOWN, NULL, PF_FMT, &f16, &r, &err), err);
    CHECK(r.changed == 0 && pe.n_undo == nu);

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
    CHECK(pe.n_redo == 0 && !plan_edit_redo(&pe));
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
    CHECK(pe_next_group(0, 64, 1) == 8 && pe_next_group(32, 64, 1) == 0 && pe_next_group(0, 64, -1) == 32);
    CHECK(pe_next_group(0, 172, 1) == 0);          /* no power of two >= 8 divides 172 */
    CHECK(pe_next_group(4, 64, 1) == 8 && pe_next_group(128, 64, -1) == 32);
    CHECK(pe_fit_group(128, 172) == 4 && pe_fit_group(128, 64) == 64 && pe_fit_group(32, 172) == 4);
    CHECK(pe_fit_group(64, 688) == 16 && pe_fit_group(3, 7) == 0);
    CHECK(pe_next_method(QM_ADADIM) == QM_RTN && pe_next_act(ACT_FP8_E5M2) == ACT_NONE);
    plan_grid_done(&fp16);
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
    CHECK(vm_pareto(rows, 4, front) == 2);
    CHECK(front[0] && front[1] && !front[2] && !front[3]);
    int x[4], y[4];
    double bl, bh, pl, ph;
    vm_scatter(rows, 4, 41, 11, x, y, &bl, &bh, &pl, &ph);
    CHECK(bl == 4.5 && bh == 16.0 && pl == 10.0 && ph == 13.0);
    CHECK(x[0] == 40 && y[0] == 10); /* best PPL at the bottom row */
    CHECK(x[1] == 0 && y[2] == 0 && x[3] == -1);
    vm_eval_sort(rows, 4, ES_PPL);
    CHECK(rows[0].id == 1 && rows[1].id == 4 && rows[2].id == 2 && rows[3].id == 3);
    vm_eval_sort(rows, 4, ES_TPS);
    CHECK(rows[0].id == 2 && rows[1].id == 4 && rows[2].id == 1 && rows[3].id == 3); /* NaN last */
    vm_eval_sort(rows, 4, ES_ID);
    CHECK(rows[0].id == 1 && rows[3].id == 4);
}

int main(void) {
    (void)testlib_shared; /* no shared files needed here */
    test_heat();
    test_layout();
    test_keys();
    test_plan_edit();
    test_jobs();
    test_results();
    return testlib_done("test_tui_model");
}
