/* Plans: pattern rules and their order, presets on stories260K's shape,
 * visible group fallbacks, validation messages, exact bit accounting, UI codes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "model/model.h"
#include "quant/plan.h"
#include "quant/preset.h"
#include "quant/rtn.h"
#include "tests/testlib.h"

static PlanModel stories(void) {
    ModelConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.dim = 64;
    cfg.hidden_dim = 172;
    cfg.n_layers = 5;
    cfg.n_heads = 8;
    cfg.n_kv_heads = 4;
    cfg.head_dim = 8;
    cfg.vocab_size = 512;
    cfg.max_seq_len = 512;
    cfg.tied_embeddings = 1;
    return PLAN_MODEL_FROM_CONFIG(&cfg);
}

static const PlanSiteEntry *site(const PlanResolved *r, int64_t l, int proj) { return &r->lin[l * PLAN_NPROJ + proj]; }

static int has_note(const Plan *p, const char *s) {
    for (int64_t i = 0; i < p->n_notes; i++)
        if (!strcmp(p->notes[i], s)) return 1;
    return 0;
}

static void test_rules(void) {
    PlanModel m = stories();
    Err err;
    err_init(&err);
    Plan p;
    plan_init(&p);
    p.def.w = (QParams){QF_INT8, 1, GROUP_OC, 0};
    PlanEntry e;
    plan_entry_default(&e);
    e.w = (QParams){QF_INT4, 0, GROUP_OC, 4};
    CHECK_OK(plan_add_rule(&p, "*.down", PF_FMT | PF_GROUP, &e, &err), err);     /* rule 1 */
    e.w.fmt = QF_F16;
    CHECK_OK(plan_add_rule(&p, "1.down", PF_FMT, &e, &err), err);                /* rule 2 */
    e.act = ACT_INT8;
    e.act_gran = ACT_PER_TOKEN;
    CHECK_OK(plan_add_rule(&p, "*.qkv", PF_ACT, &e, &err), err);                 /* rule 3 */
    e.w = (QParams){QF_INT3, 1, GROUP_IC, 4};
    CHECK_OK(plan_add_rule(&p, "2.*", PF_FMT | PF_GROUP, &e, &err), err);        /* rule 4 */
    e.w.fmt = QF_FP8_E5M2;
    CHECK_OK(plan_add_rule(&p, "3-4.o", PF_FMT, &e, &err), err);                 /* rule 5 */
    e.w.fmt = QF_BF16;
    CHECK_OK(plan_add_rule(&p, "0,4.gate_up", PF_FMT, &e, &err), err);           /* rule 6 */
    CHECK_OK(plan_add_rule(&p, "output", PF_FMT, &e, &err), err);                /* rule 7 */
    PlanResolved r;
    CHECK_OK(plan_resolve(&p, &m, &r, &err), err);
    CHECK(r.n_layers == 5);
    CHECK(site(&r, 0, PLAN_DOWN)->e.w.fmt == QF_INT4 && site(&r, 0, PLAN_DOWN)->e.w.group == 4);
    CHECK(site(&r, 0, PLAN_DOWN)->src[0] == 0 && site(&r, 0, PLAN_DOWN)->src[1] == 0);
    CHECK(site(&r, 1, PLAN_DOWN)->e.w.fmt == QF_F16 && site(&r, 1, PLAN_DOWN)->src[0] == 1);
    CHECK(site(&r, 1, PLAN_DOWN)->e.w.group == 4 && site(&r, 1, PLAN_DOWN)->src[1] == 0); /* group from rule 1 stays */
    CHECK(site(&r, 0, PLAN_Q)->e.act == ACT_INT8 && site(&r, 4, PLAN_V)->e.act_gran == ACT_PER_TOKEN);
    CHECK(site(&r, 0, PLAN_O)->e.act == ACT_NONE && site(&r, 0, PLAN_Q)->e.w.fmt == QF_INT8);
    CHECK(site(&r, 0, PLAN_Q)->src[0] == -1 && site(&r, 0, PLAN_Q)->src[3] == 2);
    /* rule 4 ("2.*") comes after rule 1: layer 2's down is int3/ic16 */
    CHECK(site(&r, 2, PLAN_DOWN)->e.w.fmt == QF_INT3 && site(&r, 2, PLAN_DOWN)->e.w.dim == GROUP_IC);
    CHECK(site(&r, 2, PLAN_Q)->e.w.fmt == QF_INT3 && site(&r, 2, PLAN_Q)->e.act == ACT_INT8);
    CHECK(site(&r, 3, PLAN_O)->e.w.fmt == QF_FP8_E5M2 && site(&r, 4, PLAN_O)->e.w.fmt == QF_FP8_E5M2);
    CHECK(site(&r, 2, PLAN_O)->e.w.fmt == QF_INT3 && site(&r, 1, PLAN_O)->e.w.fmt == QF_INT8);
    CHECK(site(&r, 0, PLAN_GATE)->e.w.fmt == QF_BF16 && site(&r, 4, PLAN_UP)->e.w.fmt == QF_BF16);
    CHECK(site(&r, 2, PLAN_GATE)->e.w.fmt == QF_INT3 && site(&r, 1, PLAN_UP)->e.w.fmt == QF_INT8);
    CHECK(r.output.e.w.fmt == QF_BF16 && r.output.src[0] == 6 && r.embed.e.w.fmt == QF_F32);
    CHECK(site(&r, 4, PLAN_DOWN)->n_out == 64 && site(&r, 4, PLAN_DOWN)->n_in == 172);
    CHECK(site(&r, 4, PLAN_K)->n_out == 32 && site(&r, 4, PLAN_K)->n_in == 64);
    plan_resolved_done(&r);
    CHECK_OK(plan_validate(&p, &m, &err), err);
    /* copy and remove */
    Plan c;
    CHECK_OK(plan_copy(&c, &p, &err), err);
    CHECK(c.n_rules == 7 && !strcmp(c.rules[3].pattern, "2.*"));
    CHECK_OK(plan_remove_rule(&c, 3, &err), err);
    CHECK(c.n_rules == 6 && !strcmp(c.rules[3].pattern, "3-4.o"));
    CHECK(plan_remove_rule(&c, 6, &err) == ST_ERR_RANGE);
    plan_done(&c);
    /* out-of-range layers */
    CHECK_OK(plan_add_rule(&p, "30-31.o", PF_FMT, &e, &err), err);
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECK(!strcmp(err.detail, "rule 8 '30-31.o': layer 30 does not exist (model has 5 layers)"));
    CHECK_OK(plan_remove_rule(&p, 7, &err), err);
    CHECK_OK(plan_add_rule(&p, "3,40.down", PF_FMT, &e, &err), err);
    CHECK(plan_resolve(&p, &m, &r, &err) == ST_ERR_ARG && r.lin == NULL);
    CHECK(!strcmp(err.detail, "rule 8 '3,40.down': layer 40 does not exist (model has 5 layers)"));
    CHECK_OK(plan_remove_rule(&p, 7, &err), err);
    CHECK_OK(plan_add_rule(&p, "2-7.q", PF_FMT, &e, &err), err);
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECK(strstr(err.detail, "layer 5 does not exist (model has 5 layers)"));
    plan_done(&p);
    /* syntax errors at add time */
    plan_init(&p);
    const char *bad[] = {"x.down", "1.foo", "1-.q", "1.", ".q", "1.q.k", "2-1.q", "1,.q", "1.q,", "", "embedx"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECKF(plan_add_rule(&p, bad[i], PF_FMT, &e, &err) == ST_ERR_ARG, "pattern '%s'", bad[i]);
        CHECK(strstr(err.detail, "rule 1 '"));
    }
    CHECK(plan_add_rule(&p, "1.foo", PF_FMT, &e, &err) == ST_ERR_ARG);
    CHECK(!strcmp(err.detail, "rule 1 '1.foo': unknown projection 'foo' (q, k, v, o, gate, up, down, qkv or gate_up or *)") ||
          strstr(err.detail, "unknown projection 'foo'"));
    CHECK(plan_add_rule(&p, "*.q", 0, &e, &err) == ST_ERR_ARG);
    CHECK(p.n_rules == 0);
    plan_done(&p);
    /* pattern matching */
    CHECK(plan_pattern_matches("*.down", 3, PLAN_DOWN) && !plan_pattern_matches("*.down", 3, PLAN_UP));
    CHECK(plan_pattern_matches("30-31.o", 31, PLAN_O) && !plan_pattern_matches("30-31.o", 29, PLAN_O));
    CHECK(plan_pattern_matches("*.qkv", 0, PLAN_K) && !plan_pattern_matches("*.qkv", 0, PLAN_O));
    CHECK(plan_pattern_matches("*.gate_up", 2, PLAN_UP) && plan_pattern_matches("2.*", 2, PLAN_O));
    CHECK(plan_pattern_matches("*", 9, PLAN_Q) && plan_pattern_matches("1,3.ffn_down", 3, PLAN_DOWN));
    CHECK(plan_pattern_matches("*.q_proj,w2", 0, PLAN_DOWN) && !plan_pattern_matches("embed", 0, PLAN_Q));
}

static void test_validation(void) {
    PlanModel m = stories();
    Err err;
    err_init(&err);
    Plan p;
    PlanEntry e;
    plan_entry_default(&e);
    /* default entry's group */
    plan_init(&p);
    p.def.w = (QParams){QF_INT4, 1, GROUP_OC, 128};
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECK(!strcmp(err.detail, "default entry: group 128 does not divide q_proj's input dim 64"));
    /* a rule's group */
    p.def.w.group = 64;
    e.act = ACT_INT8;
    CHECK_OK(plan_add_rule(&p, "*.o", PF_ACT, &e, &err), err);
    e.w = (QParams){QF_INT4, 1, GROUP_OC, 128};
    CHECK_OK(plan_add_rule(&p, "*.down", PF_GROUP, &e, &err), err);
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECK(!strcmp(err.detail, "rule 2 '*.down': group 128 does not divide down_proj's input dim 172"));
    /* IC grouping on gate/up's output dim 172 */
    CHECK_OK(plan_remove_rule(&p, 1, &err), err);
    e.w = (QParams){QF_INT4, 1, GROUP_IC, 64};
    CHECK_OK(plan_add_rule(&p, "*.gate_up", PF_GROUP, &e, &err), err);
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECK(!strcmp(err.detail, "rule 2 '*.gate_up': group 64 does not divide gate_proj's output dim 172"));
    plan_done(&p);
    /* adadim needs both dims */
    plan_init(&p);
    p.def.w = (QParams){QF_INT4, 1, GROUP_OC, 32};
    p.def.method = QM_ADADIM;
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECK(!strcmp(err.detail, "default entry: group 32 must divide both of gate_proj's dims for adadim (out 172, in 64)"));
    plan_done(&p);
    /* smoothquant only on q/k/v and gate/up, and one alpha per norm */
    plan_init(&p);
    p.def.w = (QParams){QF_INT8, 1, GROUP_OC, 0};
    plan_entry_default(&e);
    e.smooth_alpha = 0.5f;
    CHECK_OK(plan_add_rule(&p, "*.o", PF_SMOOTH, &e, &err), err);
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECK(!strcmp(err.detail, "rule 1 '*.o': smoothquant applies only to q/k/v and gate/up (inputs after an RMSNorm), not o_proj"));
    CHECK_OK(plan_remove_rule(&p, 0, &err), err);
    CHECK_OK(plan_add_rule(&p, "*.qkv", PF_SMOOTH, &e, &err), err);
    e.smooth_alpha = 0.8f;
    CHECK_OK(plan_add_rule(&p, "2.v", PF_SMOOTH, &e, &err), err);
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECK(!strcmp(err.detail, "rule 2 '2.v': layer 2: q, k and v share attn_norm, so they need one smoothquant alpha (q 0.5, v 0.8)"));
    plan_done(&p);
    /* embedding rules */
    plan_init(&p);
    p.embed.act = ACT_INT8;
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECK(!strcmp(err.detail, "embed entry: the embedding is a lookup, its activation format must be none"));
    p.embed.act = ACT_NONE;
    plan_entry_default(&e);
    e.w = (QParams){QF_INT4, 1, GROUP_OC, 0};
    e.method = QM_GPTQ;
    CHECK_OK(plan_add_rule(&p, "embed", PF_FMT | PF_METHOD, &e, &err), err);
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECK(!strcmp(err.detail, "rule 1 'embed': gptq needs calibration inputs, which the embedding lookup has none of"));
    plan_done(&p);
    /* aqlm format and method go together; its group must divide n_in */
    plan_init(&p);
    p.def.w.fmt = QF_AQLM;
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECK(!strcmp(err.detail, "default entry: format aqlm with method rtn on q_proj (aqlm needs format and method aqlm)"));
    p.def.method = QM_AQLM;
    p.def.aqlm = (AqlmParams){1, 8, 8};
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECK(!strcmp(err.detail, "default entry: aqlm group 8 does not divide down_proj's input dim 172"));
    p.def.aqlm.g = 4;
    CHECK_OK(plan_validate(&p, &m, &err), err);
    plan_done(&p);
    /* bad gptq params */
    plan_init(&p);
    p.def.w = (QParams){QF_INT4, 1, GROUP_OC, 0};
    p.def.method = QM_GPTQ;
    p.def.gptq.block = 0;
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECK(strstr(err.detail, "default entry: gptq damp 0.01 must be in [0, 1) and block 0 >= 1"));
    plan_done(&p);
}

static void test_presets(void) {
    PlanModel m = stories();
    Err err;
    err_init(&err);
    int n_presets;
    const PresetInfo *info = plan_presets(&n_presets);
    CHECK(n_presets >= 15);
    const char *spikes[] = {"1.down", "4.gate_up"};
    for (int i = 0; i < n_presets; i++) {
        PresetOpts o;
        preset_opts_default(&o);
        o.spikes = spikes;
        o.n_spikes = 2;
        Plan p;
        CHECKF(plan_preset(&p, info[i].name, &o, &m, &err) == ST_OK, "%s: %s", info[i].name, err.detail);
        CHECK(!strcmp(p.name, info[i].name));
        CHECK_OK(plan_validate(&p, &m, &err), err);
        PlanSize s;
        CHECK_OK(plan_size(&p, &m, NULL, &s, &err), err);
        CHECK(s.lin_params == 5 * (4096 + 2048 + 2048 + 4096 + 3 * 11008));
        plan_done(&p);
    }
    Plan p;
    PlanResolved r;
    CHECK(plan_preset(&p, "int5-magic", NULL, &m, &err) == ST_ERR_ARG);
    CHECK(strstr(err.detail, "unknown preset 'int5-magic' (known: fp32, fp16, w8a8-tensor"));
    /* int4-rtn: visible fallbacks */
    CHECK_OK(plan_preset(&p, "int4-rtn", NULL, &m, &err), err);
    CHECK(has_note(&p, "*.down: group 128 -> 4 (172 = 4·43)"));
    CHECK(has_note(&p, "*.qkv,o,gate_up: group 128 -> 64 (64 = 64·1)"));
    CHECK(p.n_notes == 2 && p.n_rules == 2);
    CHECK_OK(plan_resolve(&p, &m, &r, &err), err);
    for (int64_t l = 0; l < 5; l++) {
        CHECK(site(&r, l, PLAN_DOWN)->e.w.group == 4 && site(&r, l, PLAN_DOWN)->e.w.fmt == QF_INT4);
        CHECK(site(&r, l, PLAN_Q)->e.w.group == 64 && site(&r, l, PLAN_GATE)->e.w.group == 64);
        CHECK(site(&r, l, PLAN_Q)->e.w.sym == 0 && site(&r, l, PLAN_Q)->e.method == QM_RTN);
    }
    CHECK(r.embed.e.w.fmt == QF_F16 && r.output.e.w.fmt == QF_F16);
    plan_resolved_done(&r);
    plan_done(&p);
    /* group 32: q/k/v/o/gate/up divide, down falls back */
    PresetOpts o;
    preset_opts_default(&o);
    o.group = 32;
    CHECK_OK(plan_preset(&p, "int3-gptq", &o, &m, &err), err);
    CHECK(p.n_notes == 1 && has_note(&p, "*.down: group 32 -> 4 (172 = 4·43)"));
    CHECK_OK(plan_resolve(&p, &m, &r, &err), err);
    CHECK(site(&r, 3, PLAN_UP)->e.w.group == 32 && site(&r, 3, PLAN_UP)->e.method == QM_GPTQ);
    CHECK(site(&r, 3, PLAN_UP)->e.gptq.act_order == 1 && site(&r, 3, PLAN_UP)->e.gptq.damp == 0.01);
    plan_resolved_done(&r);
    plan_done(&p);
    /* group 6: 64 has no divisor <= 6 that is a multiple of 4 except 4 */
    o.group = 6;
    CHECK_OK(plan_preset(&p, "int4-rtn", &o, &m, &err), err);
    CHECK(has_note(&p, "*.qkv,o,gate_up: group 6 -> 4 (64 = 4·16)") && has_note(&p, "*.down: group 6 -> 4 (172 = 4·43)"));
    plan_done(&p);
    o.group = 3;
    CHECK_OK(plan_preset(&p, "int4-rtn", &o, &m, &err), err);
    CHECK(has_note(&p, "*.down: group 3 -> per-channel (172 has no divisor <= 3 that is a multiple of 4)"));
    plan_done(&p);
    /* adadim: a divisor of both dims */
    CHECK_OK(plan_preset(&p, "adadim-int4-gptq", NULL, &m, &err), err);
    CHECK_OK(plan_resolve(&p, &m, &r, &err), err);
    CHECK(site(&r, 0, PLAN_Q)->e.w.group == 64 && site(&r, 0, PLAN_K)->e.w.group == 32);
    CHECK(site(&r, 0, PLAN_GATE)->e.w.group == 4 && site(&r, 0, PLAN_DOWN)->e.w.group == 4);
    CHECK(site(&r, 0, PLAN_O)->e.method == QM_ADADIM && site(&r, 0, PLAN_O)->e.adadim_base == QM_GPTQ);
    CHECK(has_note(&p, "*.k,v: group 128 -> 32 for adadim (32 divides both dims; gcd 32)"));
    plan_resolved_done(&r);
    plan_done(&p);
    /* w8a8 */
    CHECK_OK(plan_preset(&p, "w8a8-token", NULL, &m, &err), err);
    CHECK(p.def.w.fmt == QF_INT8 && p.def.w.sym == 1 && p.def.w.dim == GROUP_OC && p.def.w.group == 0);
    CHECK(p.def.act == ACT_INT8 && p.def.act_gran == ACT_PER_TOKEN && p.def.act_scale == ACT_DYNAMIC);
    CHECK(p.n_rules == 0 && p.n_notes == 0);
    plan_done(&p);
    /* w4a8-token: symmetric int4 OC groups, int8 per-token dynamic activations */
    o = (PresetOpts){0};
    preset_opts_default(&o);
    o.group = 32;
    CHECK_OK(plan_preset(&p, "w4a8-token", &o, &m, &err), err);
    CHECK(p.def.w.fmt == QF_INT4 && p.def.w.sym == 1 && p.def.w.dim == GROUP_OC && p.def.w.group == 32);
    CHECK(p.def.method == QM_RTN && p.def.act == ACT_INT8 && p.def.act_gran == ACT_PER_TOKEN && p.def.act_scale == ACT_DYNAMIC);
    CHECK(p.n_notes == 1 && has_note(&p, "*.down: group 32 -> 4 (172 = 4·43)"));
    CHECK_OK(plan_resolve(&p, &m, &r, &err), err);
    CHECK(site(&r, 4, PLAN_DOWN)->e.act == ACT_INT8 && site(&r, 4, PLAN_DOWN)->e.w.sym == 1);
    plan_resolved_done(&r);
    plan_done(&p);
    o.sym = 0;
    CHECK(plan_preset(&p, "w4a8-token", &o, &m, &err) == ST_ERR_ARG);
    CHECK(strstr(err.detail, "must be symmetric") != NULL);
    /* smoothquant */
    CHECK_OK(plan_preset(&p, "smoothquant-w8a8", NULL, &m, &err), err);
    CHECK_OK(plan_resolve(&p, &m, &r, &err), err);
    CHECK(site(&r, 2, PLAN_K)->e.smooth_alpha == 0.5f && site(&r, 2, PLAN_UP)->e.smooth_alpha == 0.5f);
    CHECK(site(&r, 2, PLAN_O)->e.smooth_alpha == 0 && site(&r, 2, PLAN_DOWN)->e.smooth_alpha == 0);
    CHECK(site(&r, 2, PLAN_O)->e.act == ACT_INT8 && site(&r, 2, PLAN_O)->e.act_gran == ACT_PER_TENSOR);
    plan_resolved_done(&r);
    plan_done(&p);
    /* spike-aware: fp16, then fp8 */
    o = (PresetOpts){0};
    preset_opts_default(&o);
    o.spikes = spikes;
    o.n_spikes = 2;
    CHECK_OK(plan_preset(&p, "spike-aware-w8a8", &o, &m, &err), err);
    CHECK(has_note(&p, "spike-aware: kept fp16: 1.down, 4.gate_up"));
    CHECK_OK(plan_resolve(&p, &m, &r, &err), err);
    CHECK(site(&r, 1, PLAN_DOWN)->e.w.fmt == QF_F16 && site(&r, 1, PLAN_DOWN)->e.act == ACT_NONE);
    CHECK(site(&r, 4, PLAN_GATE)->e.w.fmt == QF_F16 && site(&r, 4, PLAN_UP)->e.act == ACT_NONE);
    CHECK(site(&r, 0, PLAN_DOWN)->e.w.fmt == QF_INT8 && site(&r, 4, PLAN_DOWN)->e.act == ACT_INT8);
    plan_resolved_done(&r);
    PlanSize s;
    CHECK_OK(plan_size(&p, &m, NULL, &s, &err), err);
    CHECK(s.fmt_params[QF_F16] == 11008 * 3 && s.fmt_params[QF_INT8] == s.lin_params - 11008 * 3);
    plan_done(&p);
    o.spike_fmt = QF_FP8_E4M3;
    CHECK_OK(plan_preset(&p, "spike-aware-w8a8", &o, &m, &err), err);
    CHECK_OK(plan_resolve(&p, &m, &r, &err), err);
    CHECK(site(&r, 1, PLAN_DOWN)->e.w.fmt == QF_FP8_E4M3 && site(&r, 1, PLAN_DOWN)->e.act == ACT_FP8_E4M3);
    plan_resolved_done(&r);
    plan_done(&p);
    const char *bad_spike[] = {"9.down"};
    o.spikes = bad_spike;
    o.n_spikes = 1;
    CHECK(plan_preset(&p, "spike-aware-w8a8", &o, &m, &err) == ST_ERR_ARG);
    CHECK(strstr(err.detail, "layer 9 does not exist (model has 5 layers)"));
    /* random-k: seeded, k projections */
    preset_opts_default(&o);
    o.random_k = 3;
    o.seed = 7;
    Plan p2;
    CHECK_OK(plan_preset(&p, "random-k", &o, &m, &err), err);
    CHECK_OK(plan_preset(&p2, "random-k", &o, &m, &err), err);
    CHECK(p.n_rules == 3 && p2.n_rules == 3);
    for (int i = 0; i < 3; i++) CHECK(!strcmp(p.rules[i].pattern, p2.rules[i].pattern));
    CHECK(strcmp(p.rules[0].pattern, p.rules[1].pattern) && strcmp(p.rules[1].pattern, p.rules[2].pattern) &&
          strcmp(p.rules[0].pattern, p.rules[2].pattern));
    CHECK(!strncmp(p.notes[0], "random-k: kept fp16: ", 21) && has_note(&p, "random-k: 3 projections, seed 7"));
    CHECK_OK(plan_resolve(&p, &m, &r, &err), err);
    int n16 = 0;
    for (int64_t i = 0; i < 5 * PLAN_NPROJ; i++) n16 += r.lin[i].e.w.fmt == QF_F16 && r.lin[i].e.act == ACT_NONE;
    CHECK(n16 == 3);
    plan_resolved_done(&r);
    plan_done(&p2);
    int differs = 0;
    for (uint64_t seed = 8; seed < 12; seed++) {
        o.seed = seed;
        CHECK_OK(plan_preset(&p2, "random-k", &o, &m, &err), err);
        for (int i = 0; i < 3; i++) differs |= strcmp(p.rules[i].pattern, p2.rules[i].pattern) != 0;
        plan_done(&p2);
    }
    CHECK(differs);
    plan_done(&p);
    /* k from the spike list: "1.down" + "4.gate_up" cover 3 projections */
    preset_opts_default(&o);
    o.spikes = spikes;
    o.n_spikes = 2;
    CHECK_OK(plan_preset(&p, "random-k", &o, &m, &err), err);
    CHECK(p.n_rules == 3 && has_note(&p, "random-k: 3 projections, seed 0"));
    plan_done(&p);
    /* all 35: every projection kept */
    o.random_k = 35;
    CHECK_OK(plan_preset(&p, "random-k", &o, &m, &err), err);
    PlanSize sz;
    CHECK_OK(plan_size(&p, &m, NULL, &sz, &err), err);
    CHECK(sz.fmt_params[QF_F16] == sz.lin_params);
    plan_done(&p);
    o.random_k = 36;
    CHECK(plan_preset(&p, "random-k", &o, &m, &err) == ST_ERR_ARG);
    CHECK(strstr(err.detail, "k = 36 must be in 1..35"));
}

static void test_scattered_fallback(void) {
    PlanModel m = stories();
    m.n_layers = 80;
    Err err;
    err_init(&err);
    Plan p;
    plan_init(&p);
    p.def.w = (QParams){QF_INT4, 1, GROUP_OC, 4};
    PlanEntry e;
    plan_entry_default(&e);
    e.w = (QParams){QF_INT4, 1, GROUP_OC, 128};
    char pat[16];
    for (int l = 1; l < 80; l += 2) {
        snprintf(pat, sizeof pat, "%d.down", l);
        CHECK_OK(plan_add_rule(&p, pat, PF_GROUP, &e, &err), err);
    }
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECKF(!strcmp(err.detail, "rule 1 '1.down': group 128 does not divide down_proj's input dim 172"), "%s", err.detail);
    int64_t added = 0;
    CHECK_OK(plan_fix_groups(&p, &m, &added, &err), err);
    CHECK(added == 40 && p.n_rules == 80 && p.n_notes == 40);
    CHECK(has_note(&p, "1.down: group 128 -> 4 (172 = 4·43)") && has_note(&p, "79.down: group 128 -> 4 (172 = 4·43)"));
    CHECK_OK(plan_validate(&p, &m, &err), err);
    /* contiguous sets use ranges */
    plan_done(&p);
    plan_init(&p);
    p.def.w = (QParams){QF_INT4, 1, GROUP_OC, 4};
    CHECK_OK(plan_add_rule(&p, "3-9,20-22.down", PF_GROUP, &e, &err), err);
    CHECK_OK(plan_fix_groups(&p, &m, &added, &err), err);
    CHECK(added == 1 && has_note(&p, "3-9,20-22.down: group 128 -> 4 (172 = 4·43)"));
    plan_done(&p);
}

static void test_sizes(void) {
    PlanModel m = stories();
    Err err;
    err_init(&err);
    /* a 64x64 int4 oc32 symmetric matrix */
    PlanEntry e;
    plan_entry_default(&e);
    e.w = (QParams){QF_INT4, 1, GROUP_OC, 32};
    CHECK(plan_entry_bits(&e, 64, 64, GROUP_TENSOR, NULL) == 4096 * 4 + 128 * 16);
    CHECK(plan_entry_bytes(&e, 64, 64, GROUP_TENSOR, NULL) == (4096 * 4 + 128 * 16) / 8);
    /* asymmetric adds a 4-bit zero point per group */
    e.w.sym = 0;
    CHECK(plan_entry_bits(&e, 64, 64, GROUP_TENSOR, NULL) == 4096 * 4 + 128 * 20);
    /* adadim per-channel on gate (172, 64): OC = 172 scales, IC = 64 scales */
    e.w = (QParams){QF_INT4, 1, GROUP_OC, 0};
    e.method = QM_ADADIM;
    CHECK(plan_entry_bits(&e, 172, 64, GROUP_TENSOR, NULL) == 11008 * 4 + 172 * 16);
    CHECK(plan_entry_bits(&e, 172, 64, GROUP_IC, NULL) == 11008 * 4 + 64 * 16);
    CHECK(plan_entry_bits(&e, 172, 64, GROUP_OC, NULL) == 11008 * 4 + 172 * 16);
    /* aqlm 1x8 g8 on 64x64: fp16 codebook 256x8, 8-bit codes per 8 weights, fp16 row scales */
    e.w.fmt = QF_AQLM;
    e.method = QM_AQLM;
    e.aqlm = (AqlmParams){1, 8, 8};
    CHECK(plan_entry_bits(&e, 64, 64, GROUP_TENSOR, NULL) == 16 * 8 * 256 + 64 * 8 * 8 + 16 * 64);
    CHECK(plan_entry_bits(&e, 64, 64, GROUP_TENSOR, NULL) == (int64_t)aqlm_bits(&e.aqlm, 64, 64));
    CHECK(plan_entry_bytes(&e, 64, 64, GROUP_TENSOR, NULL) == (16 * 8 * 256 + 64 * 8 * 8 + 16 * 64) / 8);
    /* fp16 preset: 16 bits everywhere, tied head counted once */
    const int64_t lin = 5 * (4096 + 2048 + 2048 + 4096 + 3 * 11008);
    Plan p;
    PlanSize s;
    CHECK_OK(plan_preset(&p, "fp16", NULL, &m, &err), err);
    CHECK_OK(plan_size(&p, &m, NULL, &s, &err), err);
    CHECK(s.lin_params == lin && s.lin_bits == 16 * lin && s.bpw_lin == 16.0);
    CHECK(s.all_params == lin + 512 * 64 && s.all_bits == 16 * (lin + 512 * 64) && s.bpw_all == 16.0);
    CHECK(s.all_bytes == 2 * (size_t)(lin + 512 * 64) && plan_bytes(&p, &m) == s.all_bytes);
    /* an untied model with an int8 head stores both */
    PlanModel mu = m;
    mu.tied_embeddings = 0;
    PlanEntry h;
    plan_entry_default(&h);
    h.w = (QParams){QF_INT8, 1, GROUP_OC, 0};
    CHECK_OK(plan_add_rule(&p, "output", PF_FMT | PF_GROUP, &h, &err), err);
    CHECK_OK(plan_size(&p, &mu, NULL, &s, &err), err);
    CHECK(s.all_bits == 16 * (lin + 512 * 64) + 512 * 64 * 8 + 512 * 16);
    CHECK_OK(plan_size(&p, &m, NULL, &s, &err), err); /* tied but a different format: two copies */
    CHECK(s.all_params == lin + 2 * 512 * 64);
    plan_done(&p);
    /* int4-rtn (asym; g 64 on dim-64 inputs, 4 on down): per layer, 20 bits per group */
    CHECK_OK(plan_preset(&p, "int4-rtn", NULL, &m, &err), err);
    CHECK_OK(plan_size(&p, &m, NULL, &s, &err), err);
    int64_t layer = (4096 * 4 + 64 * 20) + 2 * (2048 * 4 + 32 * 20) + (4096 * 4 + 64 * 20) + 2 * (11008 * 4 + 172 * 20) +
                    (11008 * 4 + 64 * 43 * 20);
    CHECK(s.lin_bits == 5 * layer);
    CHECK(s.fmt_params[QF_INT4] == lin && s.fmt_bits[QF_INT4] == 5 * layer);
    CHECK_NEAR(s.bpw_lin, (double)(5 * layer) / (double)lin, 1e-12);
    CHECK(s.all_bits == 5 * layer + 16 * 512 * 64);
    plan_done(&p);
    /* w8a8-tensor: int8 per-OC */
    CHECK_OK(plan_preset(&p, "w8a8-tensor", NULL, &m, &err), err);
    CHECK_OK(plan_size(&p, &m, NULL, &s, &err), err);
    CHECK(s.lin_bits == 8 * lin + 16 * 5 * (64 + 32 + 32 + 64 + 172 + 172 + 64));
    plan_done(&p);
    /* adadim with the chosen dims passed in: all IC */
    CHECK_OK(plan_preset(&p, "adadim-int4", NULL, &m, &err), err);
    GroupDim dims[5 * PLAN_NPROJ];
    for (int i = 0; i < 5 * PLAN_NPROJ; i++) dims[i] = GROUP_IC;
    PlanSizeOpts so = {NULL, dims};
    PlanSize s_ic, s_max;
    CHECK_OK(plan_size(&p, &m, &so, &s_ic, &err), err);
    CHECK_OK(plan_size(&p, &m, NULL, &s_max, &err), err);
    /* IC groups of g: n_in * n_out/g groups, the same count as OC for grouped layouts */
    CHECK(s_ic.lin_bits == s_max.lin_bits);
    plan_done(&p);
}

static void test_codes(void) {
    char buf[64];
    PlanEntry e;
    plan_entry_default(&e);
    CHECK(!strcmp(plan_entry_code(&e, buf, sizeof buf), "F32"));
    e.w.fmt = QF_F16;
    CHECK(!strcmp(plan_entry_code(&e, buf, sizeof buf), "F16"));
    e.w = (QParams){QF_INT4, 1, GROUP_OC, 128};
    CHECK(!strcmp(plan_entry_code(&e, buf, sizeof buf), "I4/oc128"));
    e.w = (QParams){QF_INT3, 0, GROUP_IC, 64};
    e.method = QM_GPTQ;
    CHECK(!strcmp(plan_entry_code(&e, buf, sizeof buf), "I3a/ic64·G"));
    e.w = (QParams){QF_INT8, 1, GROUP_OC, 0};
    e.method = QM_RTN;
    e.act = ACT_INT8;
    e.act_gran = ACT_PER_TOKEN;
    CHECK(!strcmp(plan_entry_code(&e, buf, sizeof buf), "I8/oc·A8t"));
    e.w = (QParams){QF_INT8, 1, GROUP_TENSOR, 0};
    e.act_gran = ACT_PER_TENSOR;
    e.act_scale = ACT_STATIC;
    e.act_skip_first = 1;
    e.smooth_alpha = 0.5f;
    CHECK(!strcmp(plan_entry_code(&e, buf, sizeof buf), "I8/t·A8sk·S"));
    plan_entry_default(&e);
    e.w = (QParams){QF_FP8_E4M3, 1, GROUP_OC, 0};
    e.act = ACT_FP8_E4M3;
    CHECK(!strcmp(plan_entry_code(&e, buf, sizeof buf), "E4M3/oc·E4"));
    e.w = (QParams){QF_INT4, 0, GROUP_OC, 4};
    e.method = QM_ADADIM;
    e.act = ACT_NONE;
    CHECK(!strcmp(plan_entry_code(&e, buf, sizeof buf), "I4a/ad4"));
    e.adadim_base = QM_GPTQ;
    CHECK(!strcmp(plan_entry_code(&e, buf, sizeof buf), "I4a/ad4·G"));
    e.w.fmt = QF_AQLM;
    e.method = QM_AQLM;
    e.aqlm = (AqlmParams){2, 8, 8};
    CHECK(!strcmp(plan_entry_code(&e, buf, sizeof buf), "AQ2x8g8"));
    CHECK(!strcmp(plan_entry_code(&e, buf, 4), "AQ2"));
    /* names round-trip */
    for (int i = 0; i < QM_COUNT; i++) CHECK(qmethod_parse(qmethod_name((QMethod)i)) == i);
    for (int i = 0; i < ACT_COUNT; i++) CHECK(act_format_parse(act_format_name((ActFormat)i)) == i);
    CHECK(act_format_parse("e4m3") == ACT_FP8_E4M3 && act_format_parse("int4") == -1);
    CHECK(act_gran_parse("token") == ACT_PER_TOKEN && act_scale_parse("static") == ACT_STATIC);
    CHECK(act_format_qformat(ACT_FP8_E5M2) == QF_FP8_E5M2 && act_format_qformat(ACT_NONE) == QF_F32);
}

int main(void) {
    (void)testlib_shared; /* the model shape is built by hand */
    test_rules();
    test_validation();
    test_presets();
    test_scattered_fallback();
    test_sizes();
    test_codes();
    return testlib_done("test_plan");
}
