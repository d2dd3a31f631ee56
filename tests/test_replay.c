/* Replay: record a session by running actions on stories260K (calibrate 4 x 64
 * tokens of tinystories_sample.txt, presets, a cell edit with undo/redo, three
 * evaluations of 2 chunks of 64), replay it with --check (bit-identical at
 * the recorded thread count, within tolerance at another), see a tampered
 * result fail with a readable diff, and see clear errors for a plan naming
 * layers the model lacks and for broken scripts. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analysis/eval.h"
#include "analysis/planner.h"
#include "analysis/qmodel.h"
#include "analysis/statsfile.h"
#include "core/mapfile.h"
#include "core/pool.h"
#include "core/status.h"
#include "model/model.h"
#include "quant/plan.h"
#include "quant/plan_edit.h"
#include "quant/preset.h"
#include "sessions/plan_json.h"
#include "sessions/replay.h"
#include "sessions/session.h"
#include "tests/testlib.h"

static char g_dir[256];

static const char *tpath(const char *name) {
    return testlib_path(g_dir, name);
}

static void spit(const char *path, const char *t) {
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK(fputs(t, f) >= 0);
    CHECK(fclose(f) == 0);
}

static Status run(const char *script, int threads, int check, ReplayReport *rep, Err *err) {
    ReplayOpts o;
    replay_opts_default(&o);
    o.threads = threads;
    o.work_dir = g_dir;
    o.check = check;
    return replay_run(script, &o, rep, err);
}

/* Records a session the way the TUI does — calibrating, building and
 * evaluating through the analysis API directly and logging each action —
 * so replay's own path is checked against an independent one. */
static void record_like_tui(const char *model, const char *text_path, const char *out) {
    Err err;
    err_init(&err);
    Model *m;
    CHECK_OK(model_load(model, NULL, &m, &err), err);
    Pool *pool;
    CHECK_OK(pool_new(2, &pool, &err), err);
    char *text;
    size_t len;
    CHECK_OK(file_read_all(text_path, 1 << 24, &text, &len, &err), err);
    Session *s;
    CHECK_OK(session_new(m, NULL, &s, &err), err);
    ReplayCalibArgs ca;
    replay_calib_args_default(&ca);
    ca.samples = 4;
    ca.seqlen = 64;
    ca.seed = 9;
    SessionCalib sc;
    CHECK_OK(replay_calibrate(m, text_path, text, len, &ca, tpath("tui.stats"), pool, &sc, &err), err);
    CHECK_OK(session_set_calib(s, &sc, &err), err);
    SessionArg cargs[] = {SESSION_ARG_STR("text", text_path), SESSION_ARG_INT("samples", 4), SESSION_ARG_INT("seqlen", 64),
                          SESSION_ARG_INT("seed", 9), SESSION_ARG_STR("stats", tpath("tui.stats"))};
    CHECK_OK(session_log_action(s, "calibrate", cargs, 5, &err), err);
    QStatsFile sf;
    CHECK_OK(qstats_open(tpath("tui.stats"), m, &sf, &err), err);
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    PresetOpts po;
    preset_opts_default(&po);
    po.group = 32;
    Plan p;
    CHECK_OK(plan_preset(&p, "adadim-int4-gptq", &po, &pm, &err), err);
    CHECK_OK(session_set_plan(s, "ad", &p, &err), err);
    CHECK_OK(session_set_current(s, "ad", &err), err);
    SessionArg pargs[] = {SESSION_ARG_STR("preset", "adadim-int4-gptq"), SESSION_ARG_STR("plan", "ad"),
                          SESSION_ARG_INT("group", 32)};
    CHECK_OK(session_log_action(s, "apply_preset", pargs, 3, &err), err);
    QModelStats qs = {sf.cs, sf.h};
    QModel *qm;
    CHECK_OK(qmodel_build(m, &p, &qs, pool, NULL, &qm, &err), err);
    EvalOpts eo;
    eval_opts_default(&eo);
    eo.n_ctx = 64;
    eo.max_chunks = 3;
    eo.speed = 1; /* the TUI measures speed; replay does not, and speed is never compared */
    EvalRef *ref;
    CHECK_OK(eval_ref_new(m, text, len, &eo, pool, NULL, &ref, &err), err);
    EvalResult res;
    CHECK_OK(eval_run(qm, ref, &eo, pool, NULL, NULL, NULL, &res, &err), err);
    SessionEvalInfo info = {.plan = "ad", .text = text_path, .ctx = 64, .chunks = 3, .threads = pool_size(pool)};
    CHECK_OK(session_add_eval(s, &info, &res, qm, NULL, &err), err);
    {
        /* the quantization times go with the result (replay never compares them) */
        const SessionResult *sr = session_result(s, session_n_results(s) - 1);
        /* cJSON prints 15 digits when they read back within DBL_EPSILON (relative) */
        CHECK(qm->seconds > 0 && fabs(sr->quantize_seconds - qm->seconds) <= 2 * DBL_EPSILON * qm->seconds);
        char *js;
        size_t jl;
        CHECK_OK(session_write(s, &js, &jl, &err), err);
        CHECK(strstr(js, "\"site_quantize_seconds\":") != NULL);
        free(js);
    }
    SessionArg eargs[] = {SESSION_ARG_STR("plan", "ad"), SESSION_ARG_STR("text", text_path), SESSION_ARG_INT("ctx", 64),
                          SESSION_ARG_INT("chunks", 3), SESSION_ARG_INT("threads", pool_size(pool))};
    CHECK_OK(session_log_action(s, "evaluate", eargs, 5, &err), err);
    /* an auto plan, logged by the helper the TUI's A uses */
    PlannerRequest rq;
    planner_request_default(&rq);
    rq.bpw = 8.5;
    rq.text = text;
    rq.text_len = len;
    rq.ctx = 64;
    rq.chunks = 2;
    char calp[600]; /* tpath's buffers rotate: `out` is one of them */
    snprintf(calp, sizeof calp, "%s/tui.stats.sitecal", g_dir);
    rq.sitecal = calp;
    PlannerResult pr;
    CHECK_OK(planner_run(m, &sf, &rq, pool, NULL, &pr, NULL, &err), err);
    CHECK_OK(session_set_plan(s, "mine", &pr.plan, &err), err);
    CHECK_OK(session_set_current(s, "mine", &err), err);
    CHECK_OK(replay_log_auto_plan(s, "mine", &rq, text_path, pr.sol.loss, &err), err);
    planner_result_done(&pr);
    CHECK_OK(session_save(s, out, &err), err);
    eval_result_done(&res);
    eval_ref_free(ref);
    qmodel_free(qm);
    plan_done(&p);
    qstats_close(&sf);
    session_free(s);
    free(text);
    pool_free(pool);
    model_free(m);
}

/* Replay edits the plan through the editor's operations (quant/plan_edit.h):
 * the plan it stores after set_rule actions is byte for byte the plan the
 * Plan view's edits of the same scopes give, the editor's consistency
 * included (format aqlm alone brings method aqlm; a group that does not
 * divide falls back), where rules appended to the plan said otherwise. */
static void test_edits_as_editor(const char *model) {
    Err err;
    err_init(&err);
    char script[2048];
    snprintf(script, sizeof script,
             "{\"model\": \"%s\", \"actions\": [{\"action\": \"apply_preset\", \"args\": {\"preset\": \"int4-rtn\", "
             "\"group\": 32}}]}", model);
    spit(tpath("edit0.json"), script);
    ReplayReport rep;
    CHECK_OK(run(tpath("edit0.json"), 1, 0, &rep, &err), err);
    Plan p0;
    CHECK_OK(session_get_plan(rep.out, "int4-rtn", &p0, &err), err);
    replay_report_done(&rep);
    char *w = strstr(script, "}}]}");
    CHECK(w);
    snprintf(w, sizeof script - (size_t)(w - script),
             "}},\n {\"action\": \"set_rule\", \"args\": {\"pattern\": \"*.down\", \"fields\": [\"format\"], "
             "\"entry\": {\"format\": \"aqlm\"}}},\n {\"action\": \"set_rule\", \"args\": {\"patterns\": [\"1.q\", "
             "\"3.*\"], \"fields\": [\"format\", \"group\"], \"entry\": {\"format\": \"int6\", \"group\": 48}}}]}");
    spit(tpath("edit.json"), script);
    CHECK_OK(run(tpath("edit.json"), 1, 0, &rep, &err), err);
    Plan got;
    CHECK_OK(session_get_plan(rep.out, "int4-rtn", &got, &err), err);
    replay_report_done(&rep);

    /* The same edits in the editor: a column, then a cell and a row. */
    PlanModel pm = {.n_layers = 5, .dim = 64, .hidden_dim = 172, .n_heads = 8, .n_kv_heads = 4, .head_dim = 8,
                    .vocab_size = 512};
    PlanEdit pe;
    CHECK_OK(plan_edit_init(&pe, &pm, &p0, &err), err);
    PlanEntry e;
    plan_entry_default(&e);
    e.w.fmt = QF_AQLM;
    CHECK_OK(plan_edit_apply(&pe, PE_COL, 0, PLAN_DOWN, NULL, PF_FMT, &e, NULL, &err), err);
    e.w.fmt = QF_INT6;
    e.w.group = 48;
    CHECK_OK(plan_edit_apply(&pe, PE_CELL, 1, PLAN_Q, NULL, PF_FMT | PF_GROUP, &e, NULL, &err), err);
    CHECK_OK(plan_edit_apply(&pe, PE_ROW, 3, 0, NULL, PF_FMT | PF_GROUP, &e, NULL, &err), err);
    const PlanEntry *d = plan_edit_cell(&pe, 2, PLAN_DOWN), *q3 = plan_edit_cell(&pe, 3, PLAN_DOWN);
    CHECK(d->w.fmt == QF_AQLM && d->method == QM_AQLM); /* the method follows the format */
    CHECK(q3->w.fmt == QF_INT6 && q3->w.group == 4);    /* 48 does not divide 172: the editor's fallback */
    Plan want;
    CHECK_OK(plan_edit_to_plan(&pe, &want, &err), err);
    char *jg = NULL, *jw = NULL;
    CHECK_OK(plan_json_write(&got, &jg, &err), err);
    CHECK_OK(plan_json_write(&want, &jw, &err), err);
    CHECKF(!strcmp(jg, jw), "replayed plan:\n%s\neditor's plan:\n%s", jg, jw);
    free(jg);
    free(jw);
    plan_done(&want);
    plan_edit_done(&pe);
    plan_done(&got);
    plan_done(&p0);
}

/* Bit l set when layer l's q projection of plan `name` in s is int8. */
static unsigned q_int8_layers(const Session *s, const char *name, const PlanModel *pm) {
    Err err;
    err_init(&err);
    Plan p;
    PlanResolved res;
    CHECK_OK(session_get_plan(s, name, &p, &err), err);
    CHECK_OK(plan_resolve(&p, pm, &res, &err), err);
    unsigned bits = 0;
    for (int64_t l = 0; l < pm->n_layers; l++)
        if (res.lin[l * PLAN_NPROJ + PLAN_Q].e.w.fmt == QF_INT8) bits |= 1u << l;
    plan_resolved_done(&res);
    plan_done(&p);
    return bits;
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/qs_test_replay.%ld", (long)getpid());
    CHECK(mkdir(g_dir, 0700) == 0 || errno == EEXIST);
    const char *model = testlib_shared("models/stories260K/stories260K-f32.gguf");
    const char *text = testlib_shared("text/tinystories_sample.txt");
    char script[4096];
    snprintf(script, sizeof script,
             "{\"model\": \"%s\", \"actions\": [\n"
             " {\"action\": \"calibrate\", \"args\": {\"text\": \"%s\", \"samples\": 4, \"seqlen\": 64, \"seed\": 3}},\n"
             " {\"action\": \"apply_preset\", \"args\": {\"preset\": \"int4-gptq\", \"group\": 32}},\n"
             " {\"action\": \"evaluate\", \"args\": {\"text\": \"%s\", \"ctx\": 64, \"chunks\": 2}},\n"
             " {\"action\": \"set_cell\", \"args\": {\"layer\": 1, \"proj\": \"down\", \"fields\": [\"format\", \"group\"],"
             "  \"entry\": {\"format\": \"fp16\"}}},\n"
             " {\"action\": \"undo\"},\n"
             " {\"action\": \"view\", \"args\": {\"tab\": \"plan\"}},\n"
             " {\"action\": \"redo\"},\n"
             " {\"action\": \"apply_preset\", \"plan\": \"rtn\", \"preset\": \"int4-rtn\", \"group\": 32},\n"
             " {\"action\": \"evaluate\", \"args\": {\"text\": \"%s\", \"ctx\": 64, \"chunks\": 2}},\n"
             " {\"action\": \"evaluate\", \"args\": {\"plan\": \"int4-gptq\", \"text\": \"%s\", \"ctx\": 64, \"chunks\": 2}}\n"
             "]}\n",
             model, text, text, text, text);
    spit(tpath("script.json"), script);
    Err err;
    err_init(&err);

    /* Record. */
    ReplayReport rep;
    CHECK_OK(run(tpath("script.json"), 2, 0, &rep, &err), err);
    CHECK(rep.n_actions == 10 && rep.n_run == 9 && rep.n_skipped == 1 && rep.threads == 2);
    Session *s = rep.out;
    CHECK(session_n_results(s) == 3 && session_n_actions(s) == 10 && session_n_plans(s) == 2);
    const SessionResult *r0 = session_result(s, 0), *r1 = session_result(s, 1), *r2 = session_result(s, 2);
    CHECK(!strcmp(r0->plan, "int4-gptq") && !strcmp(r1->plan, "rtn") && !strcmp(r2->plan, "int4-gptq"));
    CHECK(r0->threads == 2 && r0->ctx == 64 && r0->chunks == 2);
    CHECK(r0->ppl_base == r1->ppl_base && r1->ppl_base == r2->ppl_base);
    CHECK(r0->tokens_scored == 2 * (64 - 1 - 32)); /* llama.cpp protocol: positions ctx/2 .. ctx-2 */
    CHECK(r0->kld_mean > 0 && r0->kld_mean < r1->kld_mean); /* GPTQ beats RTN at int4 */
    CHECK(r2->bytes > r0->bytes);     /* the redone edit put 1.down at fp16 */
    CHECK(session_calib(s)->present && session_calib(s)->samples == 4 && session_calib(s)->seqlen == 64);
    Plan p;
    CHECK_OK(session_get_plan(s, "int4-gptq", &p, &err), err);
    PlanModel pm = {.n_layers = 5, .dim = 64, .hidden_dim = 172, .n_heads = 8, .n_kv_heads = 4, .head_dim = 8,
                    .vocab_size = 512};
    PlanResolved res;
    CHECK_OK(plan_resolve(&p, &pm, &res, &err), err);
    CHECK(res.lin[1 * PLAN_NPROJ + PLAN_DOWN].e.w.fmt == QF_F16 && res.lin[2 * PLAN_NPROJ + PLAN_DOWN].e.w.fmt == QF_INT4);
    plan_resolved_done(&res);
    plan_done(&p);
    CHECK(!strcmp(session_action(s, 5)->name, "view"));
    CHECK_OK(session_save(s, tpath("rec.json"), &err), err);
    replay_report_done(&rep);

    /* Replay --check at the recorded thread count: bit-identical. */
    CHECK_OK(run(tpath("rec.json"), 0, 1, &rep, &err), err);
    char *d = replay_diff_text(&rep);
    CHECKF(rep.n_diffs == 0, "%s", d);
    free(d);
    CHECK(rep.threads == 2 && rep.recorded_threads == 2);
    CHECK(rep.n_compared >= 3 * 17 + 2 * 37);
    replay_report_done(&rep);

    /* At another thread count: within the stated tolerances. */
    CHECK_OK(run(tpath("rec.json"), 1, 1, &rep, &err), err);
    d = replay_diff_text(&rep);
    CHECKF(rep.n_diffs == 0, "%s", d);
    free(d);
    replay_report_done(&rep);

    /* A tampered result fails with a diff naming the result, the key and both values. */
    char *t;
    size_t n;
    CHECK_OK(file_read_all(tpath("rec.json"), 1 << 24, &t, &n, &err), err);
    const char *k = strstr(strstr(strstr(t, "\"results\""), "\"plan\":\t\"rtn\""), "\"ppl\":\t");
    CHECK(k);
    char *tt = malloc(n + 8);
    size_t at = (size_t)(k - t) + strlen("\"ppl\":\t");
    memcpy(tt, t, at);
    tt[at] = '\0';
    strcat(tt, "3.25");
    const char *rest = t + at;
    while (*rest != ',') rest++;
    strcat(tt, rest);
    spit(tpath("tampered.json"), tt);
    CHECK_OK(run(tpath("tampered.json"), 0, 1, &rep, &err), err);
    CHECK(rep.n_diffs == 1 && rep.diffs[0].result == 2 && !strcmp(rep.diffs[0].what, "ppl") &&
          rep.diffs[0].recorded == 3.25 && rep.diffs[0].tol == 0);
    d = replay_diff_text(&rep);
    CHECKF(strstr(d, "result 2: ppl") && strstr(d, "recorded 3.25") && strstr(d, "must be bit-identical"), "%s", d);
    printf("tampered diff:\n%s", d);
    free(d);
    replay_report_done(&rep);
    /* ...and a tampered plan too. */
    char *tp = strdup(t);
    char *fmt = strstr(strstr(tp, "\"plans\""), "\"format\":\t\"int4\"");
    CHECK(fmt);
    memcpy(fmt + strlen("\"format\":\t\""), "int8", 4);
    spit(tpath("tampered2.json"), tp);
    CHECK_OK(run(tpath("tampered2.json"), 0, 1, &rep, &err), err);
    d = replay_diff_text(&rep);
    CHECKF(rep.n_diffs >= 1 && strstr(d, "plan 'int4-gptq' site") && strstr(d, "recorded I8"), "%s", d);
    free(d);
    replay_report_done(&rep);
    free(tp);
    free(tt);
    free(t);

    /* A session recorded through the analysis API (as the TUI records) replays bit-identically. */
    record_like_tui(model, text, tpath("tui.json"));
    CHECK_OK(run(tpath("tui.json"), 0, 1, &rep, &err), err);
    d = replay_diff_text(&rep);
    CHECKF(rep.n_diffs == 0 && rep.threads == 2 && rep.n_compared > 17, "%s", d);
    free(d);
    replay_report_done(&rep);

    /* auto_plan: the planner's request recorded as an action. Replayed, it gives
     * the plan planner_run gives on the same statistics and text (site scales
     * measured by the replay); a replay --check of the result reproduces the
     * plans site by site and the evaluation bit for bit; a tampered auto plan
     * is caught. */
    snprintf(script, sizeof script,
             "{\"model\": \"%s\", \"actions\": [\n"
             " {\"action\": \"calibrate\", \"args\": {\"text\": \"%s\", \"samples\": 4, \"seqlen\": 64, \"seed\": 3}},\n"
             " {\"action\": \"auto_plan\", \"args\": {\"plan\": \"auto\", \"bpw\": 7.9, \"text\": \"%s\", \"ctx\": 64,"
             " \"chunks\": 2}},\n"
             " {\"action\": \"evaluate\", \"args\": {\"text\": \"%s\", \"ctx\": 64, \"chunks\": 2}},\n"
             " {\"action\": \"auto_plan\", \"args\": {\"bytes\": 300000, \"target\": \"llamacpp\", \"method\": \"gptq\","
             " \"text\": \"%s\", \"ctx\": 64, \"chunks\": 2}}\n"
             "]}\n",
             model, text, text, text, text);
    spit(tpath("auto.json"), script);
    CHECK_OK(run(tpath("auto.json"), 2, 0, &rep, &err), err);
    CHECK(rep.n_run == 4 && session_n_plans(rep.out) == 2 && session_n_results(rep.out) == 1);
    CHECK(!strcmp(session_current_plan(rep.out), "auto-300000B"));
    {
        Model *m;
        CHECK_OK(model_load(model, NULL, &m, &err), err);
        Pool *pool;
        CHECK_OK(pool_new(2, &pool, &err), err);
        QStatsFile sf;
        CHECK_OK(qstats_open(tpath("replay-1.stats"), m, &sf, &err), err);
        char *tx;
        size_t tn;
        CHECK_OK(file_read_all(text, 1 << 24, &tx, &tn, &err), err);
        PlannerRequest rq;
        planner_request_default(&rq);
        rq.bpw = 7.9;
        rq.text = tx;
        rq.text_len = tn;
        rq.ctx = 64;
        rq.chunks = 2;
        rq.sitecal = tpath("direct.sitecal");
        PlannerResult pr;
        int measured = 0;
        CHECK_OK(planner_run(m, &sf, &rq, pool, NULL, &pr, &measured, &err), err);
        CHECK(measured && pr.calibrated);
        CHECK_OK(session_get_plan(rep.out, "auto", &p, &err), err);
        PlanResolved ra, rb;
        CHECK_OK(plan_resolve(&p, &pm, &ra, &err), err);
        CHECK_OK(plan_resolve(&pr.plan, &pm, &rb, &err), err);
        int64_t differ = 0;
        for (int64_t i = 0; i < 5 * PLAN_NPROJ; i++) {
            char ca[48], cb[48];
            plan_entry_code(&ra.lin[i].e, ca, sizeof ca);
            plan_entry_code(&rb.lin[i].e, cb, sizeof cb);
            differ += strcmp(ca, cb) != 0;
        }
        CHECK(differ == 0);
        plan_resolved_done(&ra);
        plan_resolved_done(&rb);
        plan_done(&p);
        /* the logged action carries the request's result */
        char *args = session_action_args(rep.out, 1);
        CHECKF(args && strstr(args, "\"predicted_loss\"") && strstr(args, "\"text_hash\""), "%s", args ? args : "");
        free(args);
        /* the llama.cpp plan: ggml types, the ends chosen */
        CHECK_OK(session_get_plan(rep.out, "auto-300000B", &p, &err), err);
        CHECK_OK(plan_resolve(&p, &pm, &ra, &err), err);
        CHECK(qformat_traits(ra.embed.e.w.fmt)->family == QFAM_GGML || ra.embed.e.w.fmt == QF_F16);
        CHECK(qformat_traits(ra.lin[0].e.w.fmt)->family == QFAM_GGML || ra.lin[0].e.w.fmt == QF_F16);
        plan_resolved_done(&ra);
        plan_done(&p);
        planner_result_done(&pr);
        free(tx);
        qstats_close(&sf);
        pool_free(pool);
        model_free(m);
    }
    CHECK_OK(session_save(rep.out, tpath("auto-rec.json"), &err), err);
    replay_report_done(&rep);
    CHECK_OK(run(tpath("auto-rec.json"), 0, 1, &rep, &err), err);
    d = replay_diff_text(&rep);
    CHECKF(rep.n_diffs == 0 && rep.n_compared >= 17 + 2 * 37, "%s", d);
    free(d);
    replay_report_done(&rep);
    {
        char *atx, *q;
        size_t an;
        CHECK_OK(file_read_all(tpath("auto-rec.json"), 1 << 24, &atx, &an, &err), err);
        q = strstr(atx, "\"plans\"");
        CHECK(q);
        q = strstr(q, "\"rules\"");
        CHECK(q);
        char *fq = strstr(q, "\"format\":\t\"");
        CHECK(fq);
        fq += strlen("\"format\":\t\"");
        int is16 = !strncmp(fq, "fp16", 4);
        memcpy(fq, is16 ? "int8" : "fp16", 4); /* a site of the recorded auto plan changed */
        spit(tpath("auto-tampered.json"), atx);
        free(atx);
        CHECK_OK(run(tpath("auto-tampered.json"), 0, 1, &rep, &err), err);
        d = replay_diff_text(&rep);
        CHECKF(rep.n_diffs >= 1 && strstr(d, "plan 'auto' site"), "%s", d);
        free(d);
        replay_report_done(&rep);
    }

    /* Undo granularity: rules logged with one "edit" id are one step. */
    snprintf(script, sizeof script,
             "{\"model\": \"%s\", \"actions\": [{\"action\": \"apply_preset\", \"args\": {\"preset\": \"fp16\"}},\n"
             " {\"action\": \"set_rule\", \"args\": {\"pattern\": \"1.q\", \"edit\": 7, \"entry\": {\"format\": \"int8\"}}},\n"
             " {\"action\": \"set_rule\", \"args\": {\"pattern\": \"2.q\", \"edit\": 7, \"entry\": {\"format\": \"int8\"}}},\n"
             " {\"action\": \"set_rule\", \"args\": {\"pattern\": \"3.q\", \"entry\": {\"format\": \"int8\"}}},\n"
             " {\"action\": \"undo\"}]}", model);
    spit(tpath("undo.json"), script);
    static const int want[2][4] = {{0, 1, 1, 0}, {0, 0, 0, 0}}; /* int8 at layers 0..3 after 1 and 2 undos */
    for (int u = 0; u < 2; u++) {
        if (u == 1) {
            char *w = strstr(script, "{\"action\": \"undo\"}]");
            CHECK(w);
            strcpy(w, "{\"action\": \"undo\"}, {\"action\": \"undo\"}]}");
            spit(tpath("undo.json"), script);
        }
        CHECK_OK(run(tpath("undo.json"), 1, 0, &rep, &err), err);
        unsigned got = q_int8_layers(rep.out, "fp16", &pm);
        for (int l = 0; l < 4; l++) CHECKF(((got >> l) & 1) == (unsigned)want[u][l], "undo %d layer %d", u + 1, l);
        replay_report_done(&rep);
    }
    /* Replay's output records an edit id per step: two rules without ids,
     * separate steps, are logged within the same second, and a replay of the
     * output grouping them by that time stamp undid both as one step. */
    snprintf(script, sizeof script,
             "{\"model\": \"%s\", \"actions\": [{\"action\": \"apply_preset\", \"args\": {\"preset\": \"fp16\"}},\n"
             " {\"action\": \"set_rule\", \"args\": {\"pattern\": \"1.q\", \"entry\": {\"format\": \"int8\"}}},\n"
             " {\"action\": \"set_rule\", \"args\": {\"pattern\": \"2.q\", \"entry\": {\"format\": \"int8\"}}},\n"
             " {\"action\": \"set_rule\", \"args\": {\"pattern\": \"3.q\", \"edit\": 1, \"entry\": {\"format\": \"int8\"}}},\n"
             " {\"action\": \"undo\"}, {\"action\": \"undo\"}]}", model);
    spit(tpath("steps.json"), script);
    CHECK_OK(run(tpath("steps.json"), 1, 0, &rep, &err), err);
    CHECK(q_int8_layers(rep.out, "fp16", &pm) == 0x2); /* 3.q and 2.q undone */
    CHECK_OK(session_save(rep.out, tpath("steps-out.json"), &err), err);
    replay_report_done(&rep);
    {
        /* ids 0 and 1 generated; the recorded 1 would join the second step: 2 */
        char *out;
        size_t on;
        CHECK_OK(file_read_all(tpath("steps-out.json"), 1 << 24, &out, &on, &err), err);
        const char *e0 = strstr(out, "\"edit\":\t0"), *e1 = e0 ? strstr(e0, "\"edit\":\t1") : NULL;
        CHECKF(e1 && strstr(e1, "\"edit\":\t2"), "replay's output lacks an edit id per step:\n%s", out);
        free(out);
    }
    for (int pass = 0; pass < 2; pass++) { /* the output replays as the script did, and its own output too */
        CHECK_OK(run(tpath("steps-out.json"), 1, 0, &rep, &err), err);
        CHECK(q_int8_layers(rep.out, "fp16", &pm) == 0x2);
        CHECK_OK(session_save(rep.out, tpath("steps-out.json"), &err), err);
        replay_report_done(&rep);
    }

    /* A plan naming a layer the model lacks: a clear error naming the action. */
    snprintf(script, sizeof script,
             "[{\"action\": \"apply_preset\", \"args\": {\"preset\": \"fp16\"}},\n"
             " {\"action\": \"set_cell\", \"args\": {\"layer\": 7, \"proj\": \"down\", \"entry\": {\"format\": \"int8\"}}}]");
    spit(tpath("bad.json"), script);
    ReplayOpts o;
    replay_opts_default(&o);
    o.work_dir = g_dir;
    o.model_path = model;
    CHECK(replay_run(tpath("bad.json"), &o, &rep, &err) == ST_ERR_ARG);
    CHECKF(strstr(err.detail, "bad.json: actions[1] (set_cell)") && strstr(err.detail, "layer 7") &&
           strstr(err.detail, "5 layers"), "%s", err.detail);
    CHECK(rep.out && session_n_plans(rep.out) == 1); /* what ran is kept */
    replay_report_done(&rep);
    /* An action list without a model, a missing text, not JSON. */
    CHECK(run(tpath("bad.json"), 0, 0, &rep, &err) == ST_ERR_ARG && strstr(err.detail, "--model"));
    replay_report_done(&rep);
    snprintf(script, sizeof script, "{\"model\": \"%s\", \"actions\": [{\"action\": \"calibrate\", \"args\": "
             "{\"text\": \"/nonexistent/t.txt\"}}]}", model);
    spit(tpath("bad2.json"), script);
    CHECK(run(tpath("bad2.json"), 0, 0, &rep, &err) != ST_OK);
    CHECKF(strstr(err.detail, "actions[0] (calibrate)") && strstr(err.detail, "/nonexistent/t.txt"), "%s", err.detail);
    replay_report_done(&rep);
    /* A cancelled calibration is recorded as partial ("kept") and replayed
     * as one: it stops after as many sequences, with no sensitivity map. */
    snprintf(script, sizeof script, "{\"model\": \"%s\", \"actions\": [{\"action\": \"calibrate\", \"args\": "
             "{\"text\": \"%s\", \"samples\": 8, \"seqlen\": 32, \"kept\": 3}}]}", model, text);
    spit(tpath("partial.json"), script);
    CHECK_OK(run(tpath("partial.json"), 1, 0, &rep, &err), err);
    const SessionCalib *pc = session_calib(rep.out);
    CHECK(pc->present && pc->samples == 8 && pc->kept == 3 && !pc->sensitivity);
    CHECK_OK(session_save(rep.out, tpath("partial-out.json"), &err), err);
    replay_report_done(&rep);
    char *pt;
    size_t pn;
    CHECK_OK(file_read_all(tpath("partial-out.json"), 1 << 24, &pt, &pn, &err), err);
    CHECK(strstr(pt, "\"partial\":\ttrue") && strstr(pt, "\"kept\":\t3"));
    free(pt);
    CHECK_OK(run(tpath("partial-out.json"), 1, 0, &rep, &err), err); /* the recorded session replays too */
    CHECK(session_calib(rep.out)->kept == 3);
    replay_report_done(&rep);

    /* A misspelt action is an error naming it (it was skipped with exit 0:
     * a replay "passed" with nothing evaluated). */
    snprintf(script, sizeof script, "{\"model\": \"%s\", \"actions\": [{\"action\": \"apply_preset\", \"args\": "
             "{\"preset\": \"fp16\"}}, {\"action\": \"evalute\", \"args\": {\"ctx\": 64}}]}", model);
    spit(tpath("bad4.json"), script);
    CHECK(run(tpath("bad4.json"), 0, 0, &rep, &err) == ST_ERR_FORMAT);
    CHECKF(strstr(err.detail, "actions[1] (evalute): unknown action 'evalute' (did you mean 'evaluate'?)"), "%s",
           err.detail);
    replay_report_done(&rep);
    spit(tpath("bad3.json"), "{\"model\": 1, \"actions\": [");
    CHECK(run(tpath("bad3.json"), 0, 0, &rep, &err) == ST_ERR_FORMAT && strstr(err.detail, "truncated JSON"));
    replay_report_done(&rep);

    test_edits_as_editor(model);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    CHECK(system(cmd) == 0);
    return testlib_done("test_replay");
}
