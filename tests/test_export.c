/* Plan export (llama.cpp tensor types, GPTQModel dynamic, llm-compressor
 * recipe) on stories260K's shape, and llama.cpp import back into a plan. */
#include "core/status.h"
#include "model/model.h"
#include "quant/plan.h"
#include "quant/preset.h"
#include "sessions/export.h"
#include "tests/testlib.h"

static char *export_of(const Plan *p, const PlanModel *pm, ExportTarget t, ExportReport *rep) {
    Err err;
    err_init(&err);
    char *out = NULL;
    CHECK_OK(plan_export(p, pm, t, &out, rep, &err), err);
    return out;
}

static const char *after_first_line(const char *s) {
    const char *nl = strchr(s, '\n');
    return nl ? nl + 1 : s;
}

static void test_llamacpp(const PlanModel *pm) {
    Err err;
    err_init(&err);
    PresetOpts o;
    preset_opts_default(&o);
    o.group = 32;
    Plan p;
    CHECK_OK(plan_preset(&p, "int4-rtn", &o, pm, &err), err);
    /* Make a mixed plan: layer 1's q at fp16, int8 sym g32 on layer 2's o (q8_0's own grid),
     * fp8 on layer 3's k (no ggml type). */
    PlanEntry e;
    plan_entry_default(&e);
    e.w.fmt = QF_F16;
    CHECK_OK(plan_add_rule(&p, "1.q", PF_FMT | PF_GROUP, &e, &err), err);
    e.w.fmt = QF_INT8;
    e.w.sym = 1;
    e.w.dim = GROUP_OC;
    e.w.group = 32;
    CHECK_OK(plan_add_rule(&p, "2.o", PF_FMT | PF_GROUP, &e, &err), err);
    e.w.fmt = QF_FP8_E4M3;
    e.w.group = 0;
    CHECK_OK(plan_add_rule(&p, "3.k", PF_FMT | PF_GROUP, &e, &err), err);
    ExportReport rep;
    char *t = export_of(&p, pm, EXPORT_LLAMACPP, &rep);
    CHECK(strstr(t, "\ntoken_embd.weight=f16\n"));
    CHECK(strstr(t, "\nblk.0.attn_q.weight=q4_1\n"));   /* int4 asym oc32 */
    CHECK(strstr(t, "\nblk.1.attn_q.weight=f16\n"));
    CHECK(strstr(t, "\nblk.2.attn_output.weight=q8_0\n"));
    CHECK(strstr(t, "\nblk.3.attn_k.weight=f16\n"));    /* fp8: not expressible */
    CHECK(strstr(t, "\nblk.4.ffn_down.weight=f16\n"));  /* n_in 172: no block type */
    CHECK(strstr(t, "\nblk.4.ffn_gate.weight=q4_1\n"));
    int64_t lines = 0;
    for (const char *c = t; *c; c++) lines += *c == '\n';
    int64_t want = 1 + 1 + pm->n_layers * PLAN_NPROJ + (pm->tied_embeddings ? 0 : 1);
    CHECKF(lines == want, "%lld lines, want %lld", (long long)lines, (long long)want);
    /* Report: exact = embed, head, 1.q, 2.o; dropped = 5 downs + 3.k; the rest approximate. */
    CHECK(rep.sites == 2 + pm->n_layers * PLAN_NPROJ);
    CHECKF(rep.exact == 4 && rep.dropped == 6 && rep.approx == rep.sites - 10, "exact %lld approx %lld dropped %lld",
           (long long)rep.exact, (long long)rep.approx, (long long)rep.dropped);
    char *rt = export_report_text(&rep);
    CHECK(strstr(rt, "n_in 172 is not a multiple of 32") && strstr(rt, "fp8-e4m3 per-OC weights have no ggml type"));
    free(rt);
    export_report_done(&rep);

    /* Import gives back a plan whose export is the same lines. */
    Plan q;
    CHECK_OK(plan_import_llamacpp(t, strlen(t), "t.txt", pm, &q, &err), err);
    ExportReport rep2;
    char *t2 = export_of(&q, pm, EXPORT_LLAMACPP, &rep2);
    CHECK(!strcmp(after_first_line(t), after_first_line(t2)));
    PlanResolved r;
    CHECK_OK(plan_resolve(&q, pm, &r, &err), err);
    const PlanEntry *e2 = &r.lin[2 * PLAN_NPROJ + PLAN_O].e;
    CHECK(e2->w.fmt == QF_INT8 && e2->w.sym == 1 && e2->w.dim == GROUP_OC && e2->w.group == 32);
    const PlanEntry *e0 = &r.lin[0 * PLAN_NPROJ + PLAN_Q].e;
    CHECK(e0->w.fmt == QF_INT4 && e0->w.sym == 0 && e0->w.group == 32);
    CHECK(r.lin[4 * PLAN_NPROJ + PLAN_DOWN].e.w.fmt == QF_F16 && r.embed.e.w.fmt == QF_F16);
    plan_resolved_done(&r);
    export_report_done(&rep2);
    free(t2);
    plan_done(&q);
    free(t);
    plan_done(&p);

    /* Hand-written files: all-layer names, comments, blanks, regex dots. */
    const char *hand = "# mine\nffn_down=q8_0  attn_q=f16\n\nblk\\.2\\.attn_v=Q4_K\n";
    CHECK_OK(plan_import_llamacpp(hand, strlen(hand), "hand.txt", NULL, &q, &err), err);
    CHECK_OK(plan_resolve(&q, pm, &r, &err), err);
    CHECK(r.lin[3 * PLAN_NPROJ + PLAN_DOWN].e.w.fmt == QF_INT8 && r.lin[0 * PLAN_NPROJ + PLAN_Q].e.w.fmt == QF_F16);
    CHECK(r.lin[2 * PLAN_NPROJ + PLAN_V].e.w.fmt == QF_INT4 && r.lin[1 * PLAN_NPROJ + PLAN_V].e.w.fmt == QF_F32);
    plan_resolved_done(&r);
    plan_done(&q);
    /* Errors name the line. */
    struct { const char *text; const char *needle; } bad[] = {
        {"blk.0.attn_q.weight=q4_1\nblk.1.attn_q.weight=iq2_xxs\n", "line 2: type 'iq2_xxs' has no plan equivalent"},
        {"\n\nfoo.weight=q8_0\n", "line 3: 'foo.weight' is not a tensor"},
        {"blk.0.attn_q.weight\n", "line 1: expected TENSOR=TYPE"},
        {"blk.9.attn_q.weight=q8_0\n", "layer 9"},
        {"# nothing\n", "no TENSOR=TYPE entries"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Status st = plan_import_llamacpp(bad[i].text, strlen(bad[i].text), "bad.txt", pm, &q, &err);
        CHECK(st != ST_OK);
        CHECKF(strstr(err.detail, bad[i].needle) && strstr(err.detail, "bad.txt"), "'%s' lacks '%s'", err.detail,
               bad[i].needle);
        plan_done(&q);
    }
}

static void test_gptqmodel(const PlanModel *pm) {
    Err err;
    err_init(&err);
    PresetOpts o;
    preset_opts_default(&o);
    o.group = 32;
    Plan p;
    CHECK_OK(plan_preset(&p, "int4-gptq", &o, pm, &err), err);
    PlanEntry e;
    plan_entry_default(&e);
    e.w.fmt = QF_F16;
    CHECK_OK(plan_add_rule(&p, "0.v", PF_FMT | PF_GROUP, &e, &err), err);
    ExportReport rep;
    char *t = export_of(&p, pm, EXPORT_GPTQMODEL, &rep);
    CHECK(strstr(t, "\"bits\":\t4,\n\t\"group_size\":\t32,\n\t\"desc_act\":\ttrue,\n\t\"sym\":\tfalse"));
    /* down's group fell back to 4 in every layer: one regex for the column. */
    CHECK(strstr(t, "\"+:^model\\\\.layers\\\\.\\\\d+\\\\.mlp\\\\.down_proj$\":\t{\n\t\t\t\"bits\":\t4,\n\t\t\t\"group_size\":\t4"));
    CHECK(strstr(t, "\"-:^model\\\\.layers\\\\.0\\\\.self_attn\\\\.v_proj$\":\t{\n\t\t}"));
    CHECK(strstr(t, "\"lm_head\":\tfalse"));
    CHECK(rep.exact == rep.sites && rep.approx == 0 && rep.dropped == 0);
    export_report_done(&rep);
    free(t);
    plan_done(&p);
    /* W8A8: weight-only target, activations reported. */
    CHECK_OK(plan_preset(&p, "w8a8-token", &o, pm, &err), err);
    t = export_of(&p, pm, EXPORT_GPTQMODEL, &rep);
    CHECK(strstr(t, "\"bits\":\t8,\n\t\"group_size\":\t-1"));
    CHECK(rep.approx == pm->n_layers * PLAN_NPROJ);
    char *rt = export_report_text(&rep);
    CHECK(strstr(rt, "activation quantization (int8 per-token) not expressible: GPTQModel is weight-only"));
    free(rt);
    export_report_done(&rep);
    free(t);
    plan_done(&p);
}

static void test_llmcompressor(const PlanModel *pm) {
    Err err;
    err_init(&err);
    PresetOpts o;
    preset_opts_default(&o);
    o.group = 32;
    Plan p;
    CHECK_OK(plan_preset(&p, "smoothquant-w8a8", &o, pm, &err), err);
    ExportReport rep;
    char *t = export_of(&p, pm, EXPORT_LLMCOMPRESSOR, &rep);
    const char *want =
        "quant_stage:\n  quant_modifiers:\n    SmoothQuantModifier:\n      smoothing_strength: 0.5\n"
        "    QuantizationModifier:\n      ignore: ['lm_head']\n      config_groups:\n        group_0:\n"
        "          targets: ['re:^model\\.layers\\.\\d+\\.self_attn\\.q_proj$', ";
    CHECKF(strstr(t, want), "%s", t);
    CHECK(strstr(t, "          weights:\n            num_bits: 8\n            type: int\n            symmetric: true\n"
                    "            strategy: channel\n            dynamic: false\n          input_activations:\n"
                    "            num_bits: 8\n            type: int\n            symmetric: true\n"
                    "            strategy: tensor\n            dynamic: true\n"));
    CHECK(rep.exact == rep.sites);
    export_report_done(&rep);
    free(t);
    plan_done(&p);
    /* int4 GPTQ with an fp8 layer and an fp16 layer: two schemes, an ignore, GPTQModifier. */
    CHECK_OK(plan_preset(&p, "int4-gptq", &o, pm, &err), err);
    PlanEntry e;
    plan_entry_default(&e);
    e.w.fmt = QF_FP8_E4M3;
    e.w.sym = 1;
    CHECK_OK(plan_add_rule(&p, "2.up", PF_FMT | PF_GROUP, &e, &err), err);
    e.w.fmt = QF_F16;
    CHECK_OK(plan_add_rule(&p, "3.o", PF_FMT | PF_GROUP, &e, &err), err);
    e.w.fmt = QF_FP8_E5M2;
    CHECK_OK(plan_add_rule(&p, "4.k", PF_FMT | PF_GROUP, &e, &err), err);
    t = export_of(&p, pm, EXPORT_LLMCOMPRESSOR, &rep);
    CHECK(strstr(t, "    GPTQModifier:\n      dampening_frac: 0.01\n"));
    CHECK(strstr(t, "ignore: ['lm_head', 're:^model\\.layers\\.4\\.self_attn\\.k_proj$', "
                    "'re:^model\\.layers\\.3\\.self_attn\\.o_proj$']"));
    CHECK(strstr(t, "targets: ['re:^model\\.layers\\.2\\.mlp\\.up_proj$']\n          weights:\n            num_bits: 8\n"
                    "            type: float\n"));
    CHECK(strstr(t, "strategy: group\n            group_size: 32\n            actorder: weight\n"));
    CHECK(rep.dropped == 1);
    export_report_done(&rep);
    free(t);
    plan_done(&p);
}

int main(void) {
    Err err;
    err_init(&err);
    Model *m;
    CHECK_OK(model_load(testlib_shared("models/stories260K/stories260K-f32.gguf"), NULL, &m, &err), err);
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    test_llamacpp(&pm);
    test_gptqmodel(&pm);
    test_llmcompressor(&pm);
    CHECK(export_target_parse("llama.cpp") == EXPORT_LLAMACPP && export_target_parse("gptqmodel") == EXPORT_GPTQMODEL &&
          export_target_parse("nope") == -1);
    model_free(m);
    return testlib_done("test_export");
}
