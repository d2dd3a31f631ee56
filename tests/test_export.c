/* Plan export (llama.cpp tensor types, GPTQModel dynamic, llm-compressor
 * recipe) on stories260K's shape, and llama.cpp import back into a plan.
 * Each output is read back by the consumer's own parsing rules, restated
 * here (docs/sessions.md quotes them with their source files). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <regex.h>
#include <strings.h>

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


/* === Consumers' rules === */

/* ggml_type_name() of every type llama-quantize's parse_ggml_type accepts
 * (ggml.c type_traits), compared case-insensitively (striequals). */
static int ggml_name_ok(const char *s) {
    static const char *const NAMES[] = {"f32", "f16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1", "q2_K", "q3_K",
                                        "q4_K", "q5_K", "q6_K", "q8_K", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",
                                        "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32", "i64", "f64",
                                        "iq1_m", "bf16", "tq1_0", "tq2_0", "mxfp4"};
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (!strcasecmp(s, NAMES[i])) return 1;
    return 0;
}

/* Reads a tensor-type file the way llama-quantize does
 * (tools/quantize/quantize.cpp parse_tensor_type_file: `file >> arg`, i.e.
 * whitespace-separated tokens; parse_tensor_type: the first '=' splits,
 * name non-empty and lowercased, type a ggml type name), then gives each of
 * the model's tensors the first entry whose regex matches it
 * (src/llama-quant.cpp llama_tensor_get_type: std::regex_search in file
 * order). Checks every tensor is matched by exactly one entry and every
 * entry matches a tensor; returns the type of `want` (static buffer). */
static const char *llama_consumer_type(const char *text, const PlanModel *pm, const char *want) {
    static char out[16];
    enum { MAXE = 512 };
    static char names[MAXE][128], types[MAXE][16];
    int n = 0;
    const char *c = text;
    for (;;) {
        while (*c && isspace((unsigned char)*c)) c++;
        if (!*c) break;
        const char *s = c;
        while (*c && !isspace((unsigned char)*c)) c++;
        char tok[160];
        CHECK((size_t)(c - s) < sizeof tok && n < MAXE);
        memcpy(tok, s, (size_t)(c - s));
        tok[c - s] = '\0';
        char *eq = strchr(tok, '=');
        CHECKF(eq && eq != tok && eq[1], "malformed tensor type '%s'", tok);
        *eq = '\0';
        CHECKF(ggml_name_ok(eq + 1), "invalid ggml_type '%s'", eq + 1);
        for (char *k = tok; *k; k++) *k = (char)tolower((unsigned char)*k);
        snprintf(names[n], sizeof names[n], "%s", tok);
        snprintf(types[n], sizeof types[n], "%s", eq + 1);
        n++;
    }
    regex_t rx[MAXE];
    int used[MAXE] = {0};
    for (int i = 0; i < n; i++) CHECKF(regcomp(&rx[i], names[i], REG_EXTENDED | REG_NOSUB) == 0, "%s", names[i]);
    static const char *const T[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    out[0] = '\0';
    int64_t n_t = pm->n_layers * 7 + 2;
    for (int64_t s = 0; s < n_t; s++) {
        char nm[64];
        if (s == n_t - 2) snprintf(nm, sizeof nm, "token_embd.weight");
        else if (s == n_t - 1) {
            if (pm->tied_embeddings) continue; /* no output.weight in the file */
            snprintf(nm, sizeof nm, "output.weight");
        } else snprintf(nm, sizeof nm, "blk.%lld.%s.weight", (long long)(s / 7), T[s % 7]);
        int first = -1, hits = 0;
        for (int i = 0; i < n; i++)
            if (regexec(&rx[i], nm, 0, NULL, 0) == 0) {
                hits++;
                used[i] = 1;
                if (first < 0) first = i;
            }
        CHECKF(hits == 1, "%s matched by %d entries", nm, hits);
        if (!strcmp(nm, want)) snprintf(out, sizeof out, "%s", types[first]);
    }
    for (int i = 0; i < n; i++) {
        CHECKF(used[i], "entry '%s' matches no tensor", names[i]);
        regfree(&rx[i]);
    }
    return out;
}

/* GPTQModel's view of a QuantizeConfig (gptqmodel/quantization/config.py):
 * __post_init__ moves the "-:" dynamic keys ahead of the others; a module
 * takes the first pattern that matches (_resolve_dynamic_override, pcre
 * match, anchored at the start), "-:" meaning skipped; a positive override's
 * missing keys fall back to the base (gptq_processor.py
 * clone_gptq_config_for_module). GPTQConfig.__post_init__ refuses
 * act_group_aware together with desc_act and defaults act_group_aware to true,
 * and GroupedQuantLinear._validate refuses group sizes outside its kernels'
 * SUPPORTS_GROUP_SIZE (torch: -1 16 32 64 128 256 512 1024). Returns the
 * override object of `module` (NULL: base; the string "skip" when skipped via
 * *skipped). */
static const cJSON *gptqmodel_consumer(const cJSON *root, const char *module, int *skipped) {
    const char *keys[] = {"bits", "group_size", "desc_act", "act_group_aware", "static_groups", "sym", "damp_percent"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        CHECKF(cJSON_GetObjectItemCaseSensitive(root, keys[k]), "base lacks '%s'", keys[k]);
    CHECK(!(cJSON_IsTrue(cJSON_GetObjectItem(root, "desc_act")) && cJSON_IsTrue(cJSON_GetObjectItem(root, "act_group_aware"))));
    const cJSON *dyn = cJSON_GetObjectItemCaseSensitive(root, "dynamic");
    *skipped = 0;
    for (int pass = 0; pass < 2 && dyn; pass++) /* negatives first */
        for (const cJSON *d = dyn->child; d; d = d->next) {
            CHECKF(!strncmp(d->string, "+:", 2) || !strncmp(d->string, "-:", 2), "%s", d->string);
            int neg = d->string[0] == '-';
            if (neg != (pass == 0)) continue;
            if (!neg) {
                for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
                    CHECKF(cJSON_GetObjectItemCaseSensitive(d, keys[k]), "%s lacks '%s'", d->string, keys[k]);
                CHECK(!(cJSON_IsTrue(cJSON_GetObjectItem(d, "desc_act")) &&
                        cJSON_IsTrue(cJSON_GetObjectItem(d, "act_group_aware"))));
                int g = cJSON_GetObjectItem(d, "group_size")->valueint;
                CHECKF(g == -1 || g == 16 || g == 32 || g == 64 || g == 128 || g == 256 || g == 512 || g == 1024,
                       "group_size %d", g);
            }
            regex_t rx;
            CHECKF(regcomp(&rx, d->string + 2, REG_EXTENDED | REG_NOSUB) == 0, "%s", d->string);
            int hit = regexec(&rx, module, 0, NULL, 0) == 0;
            regfree(&rx);
            if (hit) {
                *skipped = neg;
                return d;
            }
        }
    return NULL;
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
    CHECK(!strchr(t, '#'));                              /* llama-quantize: "malformed tensor type '#'" */
    CHECK(!strncmp(t, "^token_embd\\.weight$=f16\n", 24));
    CHECK(strstr(t, "\n^blk\\.0\\.attn_q\\.weight$=q4_1\n"));   /* int4 asym oc32 */
    CHECK(strstr(t, "\n^blk\\.4\\.ffn_down\\.weight$=f16\n"));  /* n_in 172: no block type */
    /* What llama-quantize makes of the file, tensor by tensor. */
    CHECK(!strcmp(llama_consumer_type(t, pm, "token_embd.weight"), "f16"));
    CHECK(!strcmp(llama_consumer_type(t, pm, "blk.0.attn_q.weight"), "q4_1"));
    CHECK(!strcmp(llama_consumer_type(t, pm, "blk.1.attn_q.weight"), "f16"));
    CHECK(!strcmp(llama_consumer_type(t, pm, "blk.2.attn_output.weight"), "q8_0"));
    CHECK(!strcmp(llama_consumer_type(t, pm, "blk.3.attn_k.weight"), "f16"));    /* fp8: not expressible */
    CHECK(!strcmp(llama_consumer_type(t, pm, "blk.4.ffn_down.weight"), "f16"));
    CHECK(!strcmp(llama_consumer_type(t, pm, "blk.4.ffn_gate.weight"), "q4_1"));
    int64_t lines = 0;
    for (const char *c = t; *c; c++) lines += *c == '\n';
    int64_t want = 1 + pm->n_layers * PLAN_NPROJ + (pm->tied_embeddings ? 0 : 1);
    CHECKF(lines == want, "%lld lines, want %lld", (long long)lines, (long long)want);
    /* Report: exact = embed, head (tied, same entry), 1.q; dropped = 5 downs + 3.k; the rest
     * (2.o's q8_0 included: ggml rounds its fp16 scale differently) approximate. */
    CHECK(rep.sites == 2 + pm->n_layers * PLAN_NPROJ);
    CHECKF(rep.exact == 3 && rep.dropped == 6 && rep.approx == rep.sites - 9, "exact %lld approx %lld dropped %lld",
           (long long)rep.exact, (long long)rep.approx, (long long)rep.dropped);
    char *rt = export_report_text(&rep);
    CHECK(strstr(rt, "n_in 172 is not a multiple of 32") && strstr(rt, "fp8-e4m3 per-OC weights have no ggml type"));
    CHECK(strstr(rt, "the same grid, but ggml rounds the fp16 block scale to nearest"));
    free(rt);
    export_report_done(&rep);

    /* Import gives back a plan whose export is the same lines. */
    Plan q;
    CHECK_OK(plan_import_llamacpp(t, strlen(t), "t.txt", pm, &q, &err), err);
    ExportReport rep2;
    char *t2 = export_of(&q, pm, EXPORT_LLAMACPP, &rep2);
    CHECK(!strcmp(t, t2));
    PlanResolved r;
    CHECK_OK(plan_resolve(&q, pm, &r, &err), err);
    const PlanEntry *e2 = &r.lin[2 * PLAN_NPROJ + PLAN_O].e;
    /* each type comes back as that ggml type, as a plan format (not qscope's
     * nearest int grid, which rounds differently from llama-quantize) */
    CHECK(e2->w.fmt == QF_Q8_0 && e2->w.sym == 1 && e2->w.dim == GROUP_OC && e2->w.group == 0 && e2->method == QM_RTN);
    const PlanEntry *e0 = &r.lin[0 * PLAN_NPROJ + PLAN_Q].e;
    CHECK(e0->w.fmt == QF_Q4_1 && e0->w.group == 0);
    CHECK(r.lin[4 * PLAN_NPROJ + PLAN_DOWN].e.w.fmt == QF_F16 && r.embed.e.w.fmt == QF_F16);
    plan_resolved_done(&r);
    export_report_done(&rep2);
    free(t2);
    plan_done(&q);
    free(t);
    plan_done(&p);

    /* llama.cpp's own mixture survives export -> import site by site: every
     * tensor comes back in the ggml type the preset gave it (its fallbacks
     * included), so the imported plan evaluates what llama-quantize writes. */
    Plan km;
    CHECK_OK(plan_preset(&km, "llama-q4_k_m", NULL, pm, &err), err);
    ExportReport rep3;
    char *tk = export_of(&km, pm, EXPORT_LLAMACPP, &rep3);
    CHECK_OK(plan_import_llamacpp(tk, strlen(tk), "km.txt", pm, &q, &err), err);
    PlanResolved rk, rq;
    CHECK_OK(plan_resolve(&km, pm, &rk, &err), err);
    CHECK_OK(plan_resolve(&q, pm, &rq, &err), err);
    for (int64_t s = 0; s < pm->n_layers * PLAN_NPROJ; s++)
        CHECKF(rq.lin[s].e.w.fmt == rk.lin[s].e.w.fmt, "site %lld: imported %s, preset %s", (long long)s,
               qformat_traits(rq.lin[s].e.w.fmt)->name, qformat_traits(rk.lin[s].e.w.fmt)->name);
    CHECK(rq.output.e.w.fmt == rk.output.e.w.fmt && rq.embed.e.w.fmt == rk.embed.e.w.fmt);
    CHECK(qformat_traits(rq.lin[2 * PLAN_NPROJ + PLAN_V].e.w.fmt)->family == QFAM_GGML);
    plan_resolved_done(&rk);
    plan_resolved_done(&rq);
    export_report_done(&rep3);
    free(tk);
    plan_done(&q);
    plan_done(&km);
    /* a type the rows cannot hold falls back as llama-quantize does (q8_0 on
     * ffn_down's 172 columns: f16), noted, instead of a refused plan */
    const char *down = "ffn_down=q8_0\n";
    CHECK_OK(plan_import_llamacpp(down, strlen(down), "down.txt", pm, &q, &err), err);
    CHECK_OK(plan_resolve(&q, pm, &rq, &err), err);
    CHECK(rq.lin[0 * PLAN_NPROJ + PLAN_DOWN].e.w.fmt == QF_F16 && rq.lin[0 * PLAN_NPROJ + PLAN_Q].e.w.fmt == QF_F32);
    CHECK(q.n_notes >= 1 && strstr(q.notes[0], "blk.0.ffn_down.weight: q8_0 -> fp16"));
    plan_resolved_done(&rq);
    plan_done(&q);

    /* Hand-written files: all-layer names, comments, blanks, regex dots; first match wins
     * (blk.0's q is f16 from line 2, not q8_0 from line 3); without a model. */
    const char *hand = "# mine\nffn_down=q8_0  attn_q=f16\n^blk\\.0\\.attn_q\\.weight$=q8_0\n\nblk\\.2\\.attn_v=Q4_K\n"
                       "^output\\.weight$=q6_k\n";
    CHECK_OK(plan_import_llamacpp(hand, strlen(hand), "hand.txt", NULL, &q, &err), err);
    CHECK_OK(plan_resolve(&q, pm, &r, &err), err);
    CHECK(r.lin[3 * PLAN_NPROJ + PLAN_DOWN].e.w.fmt == QF_Q8_0 && r.lin[0 * PLAN_NPROJ + PLAN_Q].e.w.fmt == QF_F16);
    CHECK(r.lin[2 * PLAN_NPROJ + PLAN_V].e.w.fmt == QF_Q4_K && r.lin[1 * PLAN_NPROJ + PLAN_V].e.w.fmt == QF_F32);
    CHECK(r.output.e.w.fmt == QF_Q6_K && r.lin[2 * PLAN_NPROJ + PLAN_O].e.w.fmt == QF_F32);
    plan_resolved_done(&r);
    plan_done(&q);
    /* --tensor-type regexes, matched against the model's tensor names: an unanchored
     * "output" also takes every attn_output (as in llama-quantize); \d and groups work. */
    const char *rx = "blk\\.[0-2]\\.ffn_(up|gate)=q5_0 output=q8_0 blk\\.\\d+\\.attn_[qk]\\.weight=q4_0 "
                     "attn_v=bf16\n";
    CHECK_OK(plan_import_llamacpp(rx, strlen(rx), "rx.txt", pm, &q, &err), err);
    CHECK_OK(plan_resolve(&q, pm, &r, &err), err);
    CHECK(r.lin[2 * PLAN_NPROJ + PLAN_UP].e.w.fmt == QF_Q5_0 && r.lin[1 * PLAN_NPROJ + PLAN_GATE].e.w.fmt == QF_Q5_0);
    CHECK(r.lin[3 * PLAN_NPROJ + PLAN_UP].e.w.fmt == QF_F32 && r.lin[4 * PLAN_NPROJ + PLAN_O].e.w.fmt == QF_Q8_0);
    CHECK(r.lin[4 * PLAN_NPROJ + PLAN_K].e.w.fmt == QF_Q4_0 && r.lin[0 * PLAN_NPROJ + PLAN_V].e.w.fmt == QF_BF16);
    CHECK(r.output.e.w.fmt == QF_Q8_0 && r.embed.e.w.fmt == QF_F32);
    plan_resolved_done(&r);
    plan_done(&q);
    CHECK(plan_import_llamacpp(rx, strlen(rx), "rx.txt", NULL, &q, &err) != ST_OK);
    CHECKF(strstr(err.detail, "give --model"), "%s", err.detail);
    plan_done(&q);
    const char *out_only = "output=q8_0\n";
    CHECK(plan_import_llamacpp(out_only, strlen(out_only), "o.txt", NULL, &q, &err) != ST_OK);
    CHECKF(strstr(err.detail, "also matches every blk.N.attn_output.weight"), "%s", err.detail);
    plan_done(&q);
    /* Errors name the line. */
    struct { const char *text; const char *needle; } bad[] = {
        {"blk.0.attn_q.weight=q4_1\nblk.1.attn_q.weight=iq2_xxs\n", "line 2: type 'iq2_xxs' has no plan equivalent"},
        {"\n\nfoo.weight=q8_0\n", "line 3: 'foo.weight' matches none of the model's tensors"},
        {"blk.0.attn_q.weight\n", "line 1: expected TENSOR=TYPE"},
        {"blk.9.attn_q.weight=q8_0\n", "line 1: 'blk.9.attn_q.weight' matches none"},
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
    /* layer 1's up at 5 bits, group 64: the planar format, a per-layer override */
    e.w.fmt = QF_INT5;
    e.w.sym = 1;
    e.w.dim = GROUP_OC;
    e.w.group = 64;
    CHECK_OK(plan_add_rule(&p, "1.up", PF_FMT | PF_GROUP, &e, &err), err);
    ExportReport rep;
    char *t = export_of(&p, pm, EXPORT_GPTQMODEL, &rep);
    cJSON *root = cJSON_Parse(t);
    CHECKF(root, "%s", t);
    CHECK(!strcmp(cJSON_GetObjectItem(root, "method")->valuestring, "gptq"));
    CHECK(!strcmp(cJSON_GetObjectItem(root, "format")->valuestring, "gptq_p"));
    /* Base: int4 asym g32 with act-order = desc_act + static groups, never act_group_aware. */
    CHECK(cJSON_GetObjectItem(root, "bits")->valueint == 4 && cJSON_GetObjectItem(root, "group_size")->valueint == 32);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(root, "desc_act")) && cJSON_IsTrue(cJSON_GetObjectItem(root, "static_groups")));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(root, "act_group_aware")) && cJSON_IsFalse(cJSON_GetObjectItem(root, "sym")));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(root, "lm_head")));
    int skipped;
    CHECK(gptqmodel_consumer(root, "model.layers.2.self_attn.q_proj", &skipped) == NULL && !skipped);
    gptqmodel_consumer(root, "model.layers.0.self_attn.v_proj", &skipped);
    CHECK(skipped);
    const cJSON *up1 = gptqmodel_consumer(root, "model.layers.1.mlp.up_proj", &skipped);
    CHECK(up1 && !skipped && cJSON_GetObjectItem(up1, "bits")->valueint == 5 &&
          cJSON_GetObjectItem(up1, "group_size")->valueint == 64 && cJSON_IsTrue(cJSON_GetObjectItem(up1, "sym")));
    /* down's group fell back to 4 in every layer (172 = 4 * 43): no kernel takes 4 and no
     * supported size divides 172, so per channel (-1) is written and reported. */
    const cJSON *down = gptqmodel_consumer(root, "model.layers.3.mlp.down_proj", &skipped);
    CHECK(down && cJSON_GetObjectItem(down, "group_size")->valueint == -1);
    CHECK(!strcmp(down->string, "+:^model\\.layers\\.[0-9]+\\.mlp\\.down_proj$"));
    CHECK(!cJSON_IsTrue(cJSON_GetObjectItem(down, "static_groups")));
    CHECKF(rep.dropped == pm->n_layers && rep.approx == 0 && rep.exact == rep.sites - pm->n_layers,
           "exact %lld approx %lld dropped %lld", (long long)rep.exact, (long long)rep.approx, (long long)rep.dropped);
    char *rt = export_report_text(&rep);
    CHECKF(strstr(rt, "no GPTQModel kernel takes group size 4"), "%s", rt);
    free(rt);
    cJSON_Delete(root);
    export_report_done(&rep);
    free(t);
    plan_done(&p);
    /* W8A8: weight-only target, activations reported. */
    CHECK_OK(plan_preset(&p, "w8a8-token", &o, pm, &err), err);
    t = export_of(&p, pm, EXPORT_GPTQMODEL, &rep);
    CHECK(strstr(t, "\"bits\":\t8,\n\t\"group_size\":\t-1"));
    CHECK(rep.approx == pm->n_layers * PLAN_NPROJ);
    rt = export_report_text(&rep);
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
        "          targets: ['re:^model\\.layers\\.[0-9]+\\.self_attn\\.q_proj$', ";
    CHECKF(strstr(t, want), "%s", t);
    CHECK(strstr(t, "          weights:\n            num_bits: 8\n            type: int\n            symmetric: true\n"
                    "            strategy: channel\n            dynamic: false\n          input_activations:\n"
                    "            num_bits: 8\n            type: int\n            symmetric: true\n"
                    "            strategy: tensor\n            dynamic: true\n"));
    /* The recipe says it exactly, but vLLM has no int8 kernel for a dynamic per-tensor scale. */
    CHECK(rep.exact == rep.sites && rep.unservable == pm->n_layers * PLAN_NPROJ);
    char *rt = export_report_text(&rep);
    CHECKF(strstr(rt, "; 35 not servable\n") && strstr(rt, "not servable: int8 activations with one dynamic scale "
                                                           "per tensor: vLLM has no W8A8 kernel"), "%s", rt);
    free(rt);
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
    /* actorder written out (GPTQModifier's default would be static either way). */
    CHECK(strstr(t, "    GPTQModifier:\n      dampening_frac: 0.01\n      actorder: static\n"));
    CHECK(!strstr(t, "            actorder:"));
    CHECK(strstr(t, "ignore: ['lm_head', 're:^model\\.layers\\.4\\.self_attn\\.k_proj$', "
                    "'re:^model\\.layers\\.3\\.self_attn\\.o_proj$']"));
    CHECK(strstr(t, "targets: ['re:^model\\.layers\\.2\\.mlp\\.up_proj$']\n          weights:\n            num_bits: 8\n"
                    "            type: float\n"));
    CHECK(strstr(t, "strategy: group\n            group_size: 32\n            dynamic: false\n"));
    CHECK(rep.dropped == 1);
    export_report_done(&rep);
    free(t);
    /* Act-order off on one layer, on elsewhere: one actorder per recipe, that layer reported;
     * without act-order or static_groups qscope's groups are dynamic: reported too. */
    e = p.def;
    e.gptq.act_order = 0;
    CHECK_OK(plan_add_rule(&p, "0.q", PF_METHOD, &e, &err), err);
    t = export_of(&p, pm, EXPORT_LLMCOMPRESSOR, &rep);
    CHECK(strstr(t, "      actorder: static\n"));
    rt = export_report_text(&rep);
    CHECKF(strstr(rt, "act_order off: one actorder per GPTQModifier (static written) (1 tensor: "
                      "model.layers.0.self_attn.q_proj)"), "%s", rt);
    CHECKF(strstr(rt, "llm-compressor fits group scales before GPTQ (static)"), "%s", rt);
    free(rt);
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
