/* Plan JSON: every preset and a plan with every field set survive a round
 * trip (entries, rules, notes, resolution); malformed files give errors that
 * name the file, the entry and the key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/status.h"
#include "quant/plan.h"
#include "quant/preset.h"
#include "sessions/plan_json.h"
#include "testlib.h"

static PlanModel stories(void) {
    return (PlanModel){.n_layers = 5, .dim = 64, .hidden_dim = 172, .n_heads = 8, .n_kv_heads = 4, .head_dim = 8,
                       .vocab_size = 512, .tied_embeddings = 1};
}

/* Field groups compared like the resolver applies them. */
static int entries_equal(const PlanEntry *a, const PlanEntry *b, unsigned fields) {
    if ((fields & PF_FMT) && (a->w.fmt != b->w.fmt || a->w.sym != b->w.sym)) return 0;
    if ((fields & PF_GROUP) && (a->w.dim != b->w.dim || a->w.group != b->w.group)) return 0;
    if ((fields & PF_METHOD) &&
        (a->method != b->method || a->gptq.damp != b->gptq.damp || a->gptq.act_order != b->gptq.act_order ||
         a->gptq.block != b->gptq.block || a->gptq.static_groups != b->gptq.static_groups ||
         a->adadim_base != b->adadim_base || a->aqlm.M != b->aqlm.M || a->aqlm.B != b->aqlm.B || a->aqlm.g != b->aqlm.g))
        return 0;
    if ((fields & PF_ACT) && (a->act != b->act || a->act_gran != b->act_gran || a->act_scale != b->act_scale ||
                              a->act_skip_first != b->act_skip_first))
        return 0;
    if ((fields & PF_SMOOTH) && a->smooth_alpha != b->smooth_alpha) return 0;
    return 1;
}

static void check_same_plan(const Plan *a, const Plan *b, const PlanModel *m) {
    CHECK(!strcmp(a->name, b->name));
    CHECK(entries_equal(&a->def, &b->def, PF_ALL));
    CHECK(entries_equal(&a->embed, &b->embed, PF_ALL));
    CHECK(entries_equal(&a->output, &b->output, PF_ALL));
    CHECK(a->n_rules == b->n_rules);
    for (int64_t i = 0; i < a->n_rules; i++) {
        CHECK(!strcmp(a->rules[i].pattern, b->rules[i].pattern));
        CHECK(a->rules[i].fields == b->rules[i].fields);
        CHECK(entries_equal(&a->rules[i].e, &b->rules[i].e, a->rules[i].fields));
    }
    CHECK(a->n_notes == b->n_notes);
    for (int64_t i = 0; i < a->n_notes; i++) CHECK(!strcmp(a->notes[i], b->notes[i]));
    PlanResolved ra, rb;
    Err err;
    err_init(&err);
    CHECK_OK(plan_resolve(a, m, &ra, &err), err);
    CHECK_OK(plan_resolve(b, m, &rb, &err), err);
    for (int64_t i = 0; i < ra.n_layers * PLAN_NPROJ; i++) {
        CHECK(entries_equal(&ra.lin[i].e, &rb.lin[i].e, PF_ALL));
        for (int k = 0; k < PF_NFIELDS; k++) CHECK(ra.lin[i].src[k] == rb.lin[i].src[k]);
    }
    CHECK(plan_bytes(a, m) == plan_bytes(b, m));
    plan_resolved_done(&ra);
    plan_resolved_done(&rb);
}

static void roundtrip(const Plan *p, const PlanModel *m) {
    char *text = NULL;
    Plan q;
    Err err;
    err_init(&err);
    CHECK_OK(plan_json_write(p, &text, &err), err);
    CHECK_OK(plan_json_read(text, strlen(text), "rt.json", m, &q, &err), err);
    check_same_plan(p, &q, m);
    /* writing the read plan gives the same bytes */
    char *text2 = NULL;
    CHECK_OK(plan_json_write(&q, &text2, &err), err);
    CHECK(!strcmp(text, text2));
    free(text);
    free(text2);
    plan_done(&q);
}

static void test_presets(void) {
    PlanModel m = stories();
    int n;
    const PresetInfo *pi = plan_presets(&n);
    CHECK(n >= 10);
    const char *spikes[2] = {"1.down", "4.gate_up"};
    for (int i = 0; i < n; i++) {
        for (int variant = 0; variant < 2; variant++) {
            PresetOpts o;
            preset_opts_default(&o);
            o.spikes = spikes;
            o.n_spikes = 2;
            o.random_k = 3;
            o.seed = 7;
            if (variant) {
                o.group = 4;
                o.spike_fmt = QF_FP8_E4M3;
                o.act_static = 1;
                o.act_skip_first = 1;
                o.alpha = 0.75f;
            }
            Plan p;
            Err err;
            err_init(&err);
            CHECK_OK(plan_preset(&p, pi[i].name, &o, &m, &err), err);
            roundtrip(&p, &m);
            plan_done(&p);
        }
    }
}

static void test_every_field(void) {
    PlanModel m = stories();
    Plan p;
    plan_init(&p);
    Err err;
    err_init(&err);
    snprintf(p.name, sizeof p.name, "every \"field\"");
    PlanEntry e;
    plan_entry_default(&e);
    e.w = (QParams){QF_INT3, 0, GROUP_IC, 4};
    e.method = QM_ADADIM;
    e.gptq = (GptqOpts){.damp = 0.05, .act_order = 1, .block = 64, .static_groups = 1};
    e.adadim_base = QM_GPTQ;
    e.aqlm = (AqlmParams){2, 8, 4};
    e.act = ACT_FP8_E5M2;
    e.act_gran = ACT_PER_TOKEN;
    e.act_scale = ACT_STATIC;
    e.act_skip_first = 1;
    e.smooth_alpha = 0.25f;
    p.def = e;
    p.def.smooth_alpha = 0; /* o and down may not smooth */
    p.embed.w = (QParams){QF_BF16, 1, GROUP_OC, 0};
    p.output.w = (QParams){QF_FP8_E4M3, 1, GROUP_OC, 0};
    p.output.act = ACT_INT8;
    CHECK_OK(plan_add_rule(&p, "*.qkv,gate_up", PF_SMOOTH, &e, &err), err);
    PlanEntry r2 = e;
    r2.w = (QParams){QF_INT8, 1, GROUP_OC, 0};
    r2.method = QM_GPTQ;
    CHECK_OK(plan_add_rule(&p, "1,3-4.down", PF_FMT | PF_GROUP | PF_METHOD, &r2, &err), err);
    PlanEntry r3 = e;
    r3.w = (QParams){QF_AQLM, 1, GROUP_OC, 0};
    r3.method = QM_AQLM;
    r3.act = ACT_NONE;
    CHECK_OK(plan_add_rule(&p, "0.o", PF_FMT | PF_METHOD | PF_ACT, &r3, &err), err);
    CHECK_OK(plan_add_note(&p, &err, "a note with \"quotes\" and a\nnewline"), err);
    CHECK_OK(plan_validate(&p, &m, &err), err);
    roundtrip(&p, &m);

    /* through a file */
    char path[] = "/tmp/qs_plan_json_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_OK(plan_json_save(&p, path, &err), err);
    Plan q;
    CHECK_OK(plan_json_load(path, &m, &q, &err), err);
    check_same_plan(&p, &q, &m);
    plan_done(&q);
    remove(path);
    CHECK(plan_json_load(path, &m, &q, &err) != ST_OK);
    CHECK(strstr(err.detail, path) != NULL);
    plan_done(&q);
    plan_done(&p);
}

/* Parses text and expects failure `code` with every needle in the detail. */
static void expect_err(const char *text, Status code, const char *n1, const char *n2) {
    PlanModel m = stories();
    Plan p;
    Err err;
    err_init(&err);
    Status st = plan_json_read(text, strlen(text), "plan.json", &m, &p, &err);
    CHECKF(st == code, "status %d (%s), want %d for %s", st, err.detail, code, text);
    CHECKF(strstr(err.detail, "plan.json") != NULL, "'%s' does not name the file", err.detail);
    CHECKF(!n1 || strstr(err.detail, n1), "'%s' lacks '%s'", err.detail, n1);
    CHECKF(!n2 || strstr(err.detail, n2), "'%s' lacks '%s'", err.detail, n2);
    CHECK(p.n_rules == 0 && p.n_notes == 0); /* left empty */
    plan_done(&p);
}

static void test_malformed(void) {
    expect_err("this is not JSON", ST_ERR_FORMAT, "not valid JSON", NULL);
    expect_err("{\"schema_version\": 1, \"rules\": [", ST_ERR_FORMAT, "truncated JSON", NULL); /* cut short */
    expect_err("{\"schema_version\": 1} x", ST_ERR_FORMAT, "trailing data after the JSON value at byte 22", NULL);
    expect_err("[1, 2]", ST_ERR_FORMAT, "expected a JSON object", NULL);
    expect_err("{\"name\": \"x\"}", ST_ERR_FORMAT, "schema_version: missing", NULL);
    expect_err("{\"schema_version\": 2}", ST_ERR_FORMAT, "schema_version: expected 1", NULL);
    expect_err("{\"schema_version\": \"1\"}", ST_ERR_FORMAT, "schema_version", NULL);
    expect_err("{\"schema_version\": 1, \"rules\": [{\"pattern\": \"*.q\", \"format\": \"int8\"},"
               "{\"pattern\": \"*.k\", \"format\": \"int8\"}, {\"pattern\": \"*.down\", \"format\": \"int9\"}]}",
               ST_ERR_FORMAT, "rules[2].format: 'int9' is not a format", NULL);
    expect_err("{\"schema_version\": 1, \"default\": {\"format\": \"fp12\"}}", ST_ERR_FORMAT,
               "default.format: 'fp12' is not a format", NULL);
    expect_err("{\"schema_version\": 1, \"output\": {\"act\": \"int4\"}}", ST_ERR_FORMAT, "output.act: 'int4'", NULL);
    expect_err("{\"schema_version\": 1, \"default\": {\"group\": \"big\"}}", ST_ERR_FORMAT, "default.group: expected a number",
               NULL);
    expect_err("{\"schema_version\": 1, \"default\": {\"group\": 4.5}}", ST_ERR_FORMAT, "default.group: 4.5 is not an integer",
               NULL);
    expect_err("{\"schema_version\": 1, \"default\": {\"sym\": 1}}", ST_ERR_FORMAT, "default.sym: expected true or false",
               NULL);
    expect_err("{\"schema_version\": 1, \"default\": {\"gptq\": {\"block\": 0}}}", ST_ERR_FORMAT, "default.gptq.block", NULL);
    expect_err("{\"schema_version\": 1, \"default\": {\"smooth_alpha\": 1.5}}", ST_ERR_FORMAT, "default.smooth_alpha", NULL);
    expect_err("{\"schema_version\": 1, \"rules\": [{\"format\": \"int8\"}]}", ST_ERR_FORMAT, "rules[0].pattern: missing",
               NULL);
    expect_err("{\"schema_version\": 1, \"rules\": [{\"pattern\": \"*.banana\", \"format\": \"int8\"}]}", ST_ERR_FORMAT,
               "rules[0].pattern", "banana");
    expect_err("{\"schema_version\": 1, \"rules\": [{\"pattern\": \"*.q\", \"fields\": [\"colour\"]}]}", ST_ERR_FORMAT,
               "rules[0].fields: 'colour'", NULL);
    expect_err("{\"schema_version\": 1, \"rules\": [{\"pattern\": \"*.q\"}]}", ST_ERR_FORMAT, "rules[0]: the rule sets no field",
               NULL);
    expect_err("{\"schema_version\": 1, \"rules\": {}}", ST_ERR_FORMAT, "rules: expected an array", NULL);
    expect_err("{\"schema_version\": 1, \"notes\": [3]}", ST_ERR_FORMAT, "notes[0]: expected a string", NULL);
    /* model-dependent: layer 40 of 5, group 128 not dividing 172 */
    expect_err("{\"schema_version\": 1, \"rules\": [{\"pattern\": \"*.q\", \"format\": \"int8\"},"
               "{\"pattern\": \"40.down\", \"format\": \"int8\"}]}",
               ST_ERR_ARG, "rule 2 '40.down'", "layer 40");
    expect_err("{\"schema_version\": 1, \"rules\": [{\"pattern\": \"*.down\", \"format\": \"int4\", \"group_dim\": \"oc\", "
               "\"group\": 128}]}",
               ST_ERR_ARG, "'*.down'", "172");
    expect_err("{\"schema_version\": 1, \"default\": {\"format\": \"int4\", \"group\": 48}}", ST_ERR_ARG, "default entry",
               "48");

    /* A misspelt key in a plan file is an error naming it (it used to be
     * ignored: "defualt" left every projection fp32 and the run said int4). */
    expect_err("{\"schema_version\": 1, \"name\": \"int4-gptq\", \"defualt\": {\"format\": \"int4\"}}", ST_ERR_FORMAT,
               "unknown key 'defualt'", "did you mean 'default'?");
    expect_err("{\"schema_version\": 1, \"rules\": [{\"pattern\": \"*.down\", \"fromat\": \"fp16\"}]}", ST_ERR_FORMAT,
               "rules[0]: unknown key 'fromat'", "did you mean 'format'?");
    expect_err("{\"schema_version\": 1, \"default\": {\"format\": \"int4\", \"group_size\": 32}}", ST_ERR_FORMAT,
               "default: unknown key 'group_size'", NULL);
    expect_err("{\"schema_version\": 1, \"default\": {\"pattern\": \"*\"}}", ST_ERR_FORMAT, "default: unknown key 'pattern'",
               NULL);
    expect_err("{\"schema_version\": 1, \"default\": {\"gptq\": {\"dmap\": 0.1}}}", ST_ERR_FORMAT,
               "default.gptq: unknown key 'dmap'", "'damp'");
    expect_err("{\"schema_version\": 1, \"colour\": 1}", ST_ERR_FORMAT, "unknown key 'colour'", NULL);

    /* A plan inside a session tolerates unknown keys (newer writers);
     * missing keys take plan_entry_default's values. */
    PlanModel m = stories();
    const char *ok = "{\"schema_version\": 1, \"future_key\": {\"x\": [1]}, \"name\": \"t\", "
                     "\"default\": {\"format\": \"int8\", \"colour\": \"red\"}, "
                     "\"rules\": [{\"pattern\": \"*.down\", \"format\": \"fp16\", \"extra\": 1}]}";
    Plan p;
    Err err;
    err_init(&err);
    cJSON *okj = cJSON_Parse(ok);
    CHECK(okj != NULL);
    CHECK_OK(plan_json_parse(okj, "session.json: plans[0]", &m, &p, &err), err);
    cJSON_Delete(okj);
    CHECK(p.def.w.fmt == QF_INT8 && p.def.w.sym == 1 && p.def.w.dim == GROUP_OC && p.def.w.group == 0);
    CHECK(p.n_rules == 1 && p.rules[0].fields == PF_FMT && p.rules[0].e.w.fmt == QF_F16);
    CHECK(!strcmp(p.name, "t"));
    plan_done(&p);
    /* without a model only model-independent checks run */
    const char *l40 = "{\"schema_version\": 1, \"rules\": [{\"pattern\": \"40.down\", \"format\": \"int8\"}]}";
    CHECK_OK(plan_json_read(l40, strlen(l40), "l40.json", NULL, &p, &err), err);
    plan_done(&p);
}

int main(void) {
    (void)testlib_shared; /* this test needs no shared files */
    test_presets();
    test_every_field();
    test_malformed();
    return testlib_done("test_plan_json");
}
