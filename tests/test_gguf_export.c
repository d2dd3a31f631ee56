/* qscope export on stories260K: a plan's own codes written into a GGUF bit for
 * bit (the exported file evaluates exactly as the plan does: same PPL and
 * KLD to the last bit, GPTQ included), entries no ggml type holds refused or
 * written by the fallback, the file re-read; and, with llama.cpp's tools
 * built: llama-perplexity on the export within 0.5 % of qscope's eval of the
 * plan (GPTQ solved on ggml grids too: every 32-block type on stories260K,
 * the K-quants on a 256-wide synthetic model), and qscope's q8_0 / q4_0 RTN
 * exports byte-identical to llama-quantize's Q8_0 / Q4_0 of the same tensors;
 * a phi3 model's split sites stacked back into attn_qkv / ffn_up. */
#include <unistd.h>

#include "analysis/eval.h"
#include "analysis/qmodel.h"
#include "analysis/statsfile.h"
#include "core/mapfile.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model/synth.h"
#include "model/tokenizer.h"
#include "quant/ggml_type.h"
#include "sessions/gguf_export.h"
#include "sessions/plan_json.h"
#include "tests/testlib.h"

static char tmpdir[256];
static Model *base;
static EvalRef *ref;

static const char *tmp_path(const char *name) {
    return testlib_path(tmpdir, name);
}

static void plan_of(const char *json, Plan *p) {
    Err err;
    err_init(&err);
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&base->cfg);
    CHECK_OK(plan_json_read(json, strlen(json), "test plan", &pm, p, &err), err);
}

static EvalResult eval_of(const QModel *qm) {
    Err err;
    err_init(&err);
    EvalOpts o;
    eval_opts_default(&o);
    o.n_ctx = 128;
    o.speed = 0;
    EvalResult res;
    CHECK_OK(eval_run(qm, ref, &o, NULL, NULL, NULL, NULL, &res, &err), err);
    return res;
}

/* Exports p (with stats qs) to path; returns the plan's own eval result and
 * checks the file evaluates to the same numbers, bit for bit. */
static EvalResult export_and_check(const Plan *p, const QModelStats *qs, const char *path, int64_t want_exact) {
    Err err;
    err_init(&err);
    QModel *qm, *qf;
    CHECK_OK(qmodel_build_keep(base, p, qs, NULL, NULL, &qm, &err), err);
    ExportReport rep;
    CHECK_OK(gguf_export(base, qm, NULL, p->name, GGUF_FALLBACK_NONE, path, &rep, &err), err);
    CHECKF(rep.exact == want_exact && rep.sites == want_exact, "%lld of %lld exact", (long long)rep.exact,
           (long long)rep.sites);
    export_report_done(&rep);
    Model *f;
    CHECK_OK(model_load(path, NULL, &f, &err), err);
    CHECK_OK(qmodel_from_model(base, f, &qf, &err), err);
    EvalResult a = eval_of(qm), b = eval_of(qf);
    CHECKF(a.ppl == b.ppl && a.kld_mean == b.kld_mean && a.top1_agree == b.top1_agree,
           "plan %s: ppl %.9g kld %.9g, its export: ppl %.9g kld %.9g", p->name, a.ppl, a.kld_mean, b.ppl, b.kld_mean);
    eval_result_done(&b);
    qmodel_free(qf);
    model_free(f);
    qmodel_free(qm);
    return a;
}

static const char *const PROJ_T[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

/* llama-perplexity's PPL of path on all of text_path (-c 128, f32 KV cache). */
static double llama_ppl(const char *path, const char *text_path) {
    return testlib_llama_ppl(path, text_path, 128, 0, "llama-perplexity on an exported GGUF");
}

/* GPTQ solved on ggml grids ships as those blocks: the export evaluates
 * exactly as the plan, and llama-perplexity agrees within 0.5 %. The 32-block
 * types on stories260K (five types across the layers), the K-quants on a
 * 256-wide synthetic model (rows of whole super-blocks). */
static void check_gptq_ggml(const char *text, size_t len, const char *text_path, const char *lp) {
    Err err;
    err_init(&err);
    Model *keep_base = base;
    EvalRef *keep_ref = ref;
    static const char *const PLANS[2] = {
        "{\"schema_version\": 1, \"name\": \"gptq-b32\", \"default\": {\"format\": \"q4_0\", \"method\": \"gptq\"}, "
        "\"embed\": {\"format\": \"fp16\"}, \"rules\": ["
        "{\"pattern\": \"1.*\", \"fields\": [\"format\"], \"format\": \"q4_1\"},"
        "{\"pattern\": \"2.*\", \"fields\": [\"format\"], \"format\": \"q5_0\"},"
        "{\"pattern\": \"3.*\", \"fields\": [\"format\"], \"format\": \"q5_1\"},"
        "{\"pattern\": \"4.*\", \"fields\": [\"format\"], \"format\": \"q8_0\"},"
        "{\"pattern\": \"*.down\", \"fields\": [\"format\", \"method\"], \"format\": \"fp16\"}]}",
        "{\"schema_version\": 1, \"name\": \"gptq-k\", \"default\": {\"format\": \"q4_k\", \"method\": \"gptq\"}, "
        "\"embed\": {\"format\": \"fp16\"}, \"output\": {\"format\": \"q6_k\"}, \"rules\": ["
        "{\"pattern\": \"0.q\", \"fields\": [\"format\"], \"format\": \"q2_k\"},"
        "{\"pattern\": \"0.k\", \"fields\": [\"format\"], \"format\": \"q3_k\"},"
        "{\"pattern\": \"0.v\", \"fields\": [\"format\"], \"format\": \"q5_k\"},"
        "{\"pattern\": \"0.o\", \"fields\": [\"format\"], \"format\": \"q6_k\"},"
        "{\"pattern\": \"1.gate\", \"fields\": [\"format\"], \"format\": \"q3_k\"},"
        "{\"pattern\": \"1.down\", \"fields\": [\"format\"], \"format\": \"q5_k\"}]}"};
    for (int k = 0; k < 2; k++) {
        const char *mp = k ? tmp_path("synth256.gguf") : NULL;
        if (k) { /* dim 256, hidden 512, 2 layers: every row whole super-blocks */
            base = testlib_synth_wide(mp, 256, 512, 512, 3);
            EvalOpts o;
            eval_opts_default(&o);
            o.n_ctx = 128;
            o.speed = 0;
            CHECK_OK(eval_ref_new(base, text, len, &o, NULL, NULL, &ref, &err), err);
        }
        QStatsFile sf;
        memset(&sf, 0, sizeof sf);
        CHECK_OK(qstats_calibrate(base, text, len, 8, 64, tmp_path(k ? "hk.h64" : "hb.h64"), NULL, &sf, &err), err);
        Plan p;
        plan_of(PLANS[k], &p);
        QModelStats qs = {sf.cs, sf.h};
        const char *out = tmp_path(k ? "gptq-k.gguf" : "gptq-b32.gguf");
        EvalResult r = export_and_check(&p, &qs, out, base->cfg.n_layers * 7 + 2);
        Gguf *g;
        CHECK_OK(gguf_open(out, &g, &err), err);
        CHECK(gguf_find_tensor(g, k ? "blk.0.attn_q.weight" : "blk.1.attn_q.weight")->type == (k ? GGML_Q2_K : GGML_Q4_1));
        CHECK(gguf_find_tensor(g, k ? "blk.1.ffn_up.weight" : "blk.4.attn_k.weight")->type == (k ? GGML_Q4_K : GGML_Q8_0));
        gguf_free(g);
        if (lp) {
            double got = llama_ppl(out, text_path);
            printf("%s export: llama-perplexity %.4f, qscope eval of the plan %.4f (%+.3f %%)\n", p.name, got, r.ppl,
                   100 * (got / r.ppl - 1));
            CHECK(got > 0 && fabs(got / r.ppl - 1) < 0.005);
        }
        eval_result_done(&r);
        plan_done(&p);
        qstats_close(&sf);
        if (k) {
            eval_ref_free(ref);
            model_free(base);
        }
    }
    base = keep_base;
    ref = keep_ref;
}

/* Export from the llama2.c and Hugging Face forms of stories260K: metadata
 * and tokenizer written from the loaded config and tokenizer (the HF q/k rows
 * put back in GGUF's interleaved order). Every tensor equals the GGUF-source
 * export's bytes, the re-loaded files tokenize the text as their sources do,
 * and llama-perplexity gives all three exports the same PPL. */
static void check_other_sources(const char *text, size_t len, const char *text_path, const char *lp) {
    Err err;
    err_init(&err);
    static const char *const SRC[3] = {"models/stories260K/stories260K-f32.gguf", "models/stories260K/stories260K.bin",
                                       "models/stories260K-hf"};
    static const char *const OUT[3] = {"src-gguf.gguf", "src-l2c.gguf", "src-hf.gguf"};
    static const char *const PLAN =
        "{\"schema_version\": 1, \"name\": \"srcs\", \"default\": {\"format\": \"q4_0\"}, \"embed\": "
        "{\"format\": \"q8_0\"}, \"output\": {\"format\": \"q8_0\"}, \"rules\": [{\"pattern\": \"1.*\", \"fields\": [\"format\"], \"format\": \"q8_0\"}, "
        "{\"pattern\": \"*.down\", \"fields\": [\"format\"], \"format\": \"fp16\"}]}";
    const char *path[3];
    double ppl[3] = {0, 0, 0};
    int32_t *ids0 = NULL;
    int64_t n0 = 0;
    for (int k = 0; k < 3; k++) {
        Model *src;
        CHECK_OK(model_load(testlib_shared(SRC[k]), NULL, &src, &err), err);
        Model *keep = base;
        base = src; /* plan_of reads base's shape */
        Plan p;
        plan_of(PLAN, &p);
        base = keep;
        QModelStats none = {NULL, NULL};
        QModel *qm;
        CHECK_OK(qmodel_build_keep(src, &p, &none, NULL, NULL, &qm, &err), err);
        ExportReport rep;
        path[k] = tmp_path(OUT[k]);
        CHECK_OK(gguf_export(src, qm, NULL, p.name, GGUF_FALLBACK_NONE, path[k], &rep, &err), err);
        CHECK(rep.dropped == 0);
        export_report_done(&rep);
        /* the file tokenizes the text as its source does */
        Model *f;
        CHECK_OK(model_load(path[k], NULL, &f, &err), err);
        int32_t *a, *b;
        int64_t na, nb;
        CHECK_OK(tokenizer_encode(src->tok, text, len, 1, &a, &na, &err), err);
        CHECK_OK(tokenizer_encode(f->tok, text, len, 1, &b, &nb, &err), err);
        CHECKF(na == nb && !memcmp(a, b, (size_t)na * sizeof *a), "%s: the export tokenizes differently", SRC[k]);
        if (!ids0) {
            ids0 = a;
            n0 = na;
        } else {
            CHECK(na == n0 && !memcmp(a, ids0, (size_t)na * sizeof *a));
            free(a);
        }
        free(b);
        model_free(f);
        qmodel_free(qm);
        plan_done(&p);
        /* a sliding window llama's llama architecture lacks is refused */
        if (k == 2) {
            src->cfg.sliding_window = 32;
            CHECK(gguf_export_check_source(src, &err) == ST_ERR_UNSUPPORTED && strstr(err.detail, "sliding window"));
        }
        model_free(src);
        if (lp) ppl[k] = llama_ppl(path[k], text_path);
    }
    free(ids0);
    int n_same = 0;
    for (int64_t l = 0; l < base->cfg.n_layers; l++)
        for (int pj = 0; pj < 7; pj++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%lld.%s.weight", (long long)l, PROJ_T[pj]);
            for (int k = 1; k < 3; k++) CHECKF(testlib_same_tensor(path[0], path[k], nm), "%s: %s differs", OUT[k], nm);
            n_same++;
        }
    for (int k = 1; k < 3; k++)
        CHECK(testlib_same_tensor(path[0], path[k], "token_embd.weight") && testlib_same_tensor(path[0], path[k], "output_norm.weight"));
    printf("export from llama2.c and HF sources: %d projections byte-identical to the GGUF-source export\n", n_same);
    if (lp) {
        printf("llama-perplexity of the exports: gguf %.4f, llama2.c %.4f, hf %.4f\n", ppl[0], ppl[1], ppl[2]);
        CHECK(ppl[0] > 0 && ppl[0] == ppl[1] && ppl[0] == ppl[2]);
    }
}

/* phi3 stacks q/k/v (attn_qkv) and gate/up (ffn_up) in one tensor each;
 * qscope splits them at load. The export stacks the planned sites again:
 * the file evaluates exactly as the plan and llama-perplexity runs it. Parts
 * planned in different types cannot share one tensor: refused without a
 * fallback, f16 with one. */
static void check_phi3(const char *text, size_t len, const char *text_path, const char *lp) {
    Err err;
    err_init(&err);
    Model *keep_base = base;
    EvalRef *keep_ref = ref;
    const char *mp = tmp_path("phi3.gguf");
    SynthConfig cfg;
    CHECK_OK(synth_preset("tiny", &cfg, &err), err);
    CHECK_OK(synth_parse_arch("phi3", &cfg, &err), err);
    Synth *sy = NULL;
    CHECK_OK(synth_new(&cfg, &sy, &err), err);
    CHECK_OK(synth_write(sy, mp, NULL, &err), err);
    synth_free(sy);
    CHECK_OK(model_load(mp, NULL, &base, &err), err);
    CHECK(!strcmp(base->cfg.arch, "phi3"));
    EvalOpts o;
    eval_opts_default(&o);
    o.n_ctx = 128;
    o.speed = 0;
    CHECK_OK(eval_ref_new(base, text, len, &o, NULL, NULL, &ref, &err), err);
    Plan p;
    plan_of("{\"schema_version\": 1, \"name\": \"phi3-q8\", \"default\": {\"format\": \"q8_0\"}, "
            "\"embed\": {\"format\": \"fp16\"}, \"rules\": [{\"pattern\": \"1.*\", \"fields\": [\"format\"], "
            "\"format\": \"q4_0\"}, {\"pattern\": \"*.down\", \"fields\": [\"format\"], \"format\": \"fp16\"}]}", &p);
    QModelStats none = {NULL, NULL};
    const char *out = tmp_path("phi3-q8.gguf");
    EvalResult r = export_and_check(&p, &none, out, base->cfg.n_layers * 7 + 2);
    Gguf *g;
    CHECK_OK(gguf_open(out, &g, &err), err);
    const GgufTensor *qkv = gguf_find_tensor(g, "blk.0.attn_qkv.weight"), *up = gguf_find_tensor(g, "blk.1.ffn_up.weight");
    CHECK(qkv && qkv->type == GGML_Q8_0 && qkv->ne[0] == 64 && qkv->ne[1] == 64 + 2 * 32);
    CHECK(up && up->type == GGML_Q4_0 && up->ne[1] == 2 * 172);
    CHECK(!gguf_find_tensor(g, "blk.0.attn_q.weight") && !gguf_find_tensor(g, "blk.0.ffn_gate.weight"));
    CHECK(gguf_find_tensor(g, "blk.0.ffn_down.weight")->type == GGML_F16);
    gguf_free(g);
    if (lp) {
        double got = llama_ppl(out, text_path);
        printf("phi3 export: llama-perplexity %.4f, qscope eval of the plan %.4f (%+.3f %%)\n", got, r.ppl,
               100 * (got / r.ppl - 1));
        CHECK(got > 0 && fabs(got / r.ppl - 1) < 0.005);
    }
    eval_result_done(&r);
    plan_done(&p);

    /* q in q4_0, k and v in q8_0: no one type for attn_qkv */
    plan_of("{\"schema_version\": 1, \"name\": \"phi3-mixed\", \"default\": {\"format\": \"q8_0\"}, "
            "\"rules\": [{\"pattern\": \"0.q\", \"fields\": [\"format\"], \"format\": \"q4_0\"}, "
            "{\"pattern\": \"*.down\", \"fields\": [\"format\"], \"format\": \"fp16\"}]}", &p);
    QModel *qm;
    CHECK_OK(qmodel_build_keep(base, &p, &none, NULL, NULL, &qm, &err), err);
    ExportReport rep;
    const char *mx = tmp_path("phi3-mixed.gguf");
    CHECK(gguf_export(base, qm, NULL, p.name, GGUF_FALLBACK_NONE, mx, &rep, &err) == ST_ERR_UNSUPPORTED);
    CHECK(rep.dropped == 3 && access(mx, F_OK) != 0);
    char *rt = export_report_text(&rep);
    CHECKF(strstr(rt, "blk.0.attn_k.weight (rows of blk.0.attn_qkv.weight)") && strstr(rt, "different"), "%s", rt);
    free(rt);
    export_report_done(&rep);
    CHECK_OK(gguf_export(base, qm, NULL, p.name, GGUF_FALLBACK_F16, mx, &rep, &err), err);
    CHECK(rep.dropped == 3);
    export_report_done(&rep);
    CHECK_OK(gguf_open(mx, &g, &err), err);
    CHECK(gguf_find_tensor(g, "blk.0.attn_qkv.weight")->type == GGML_F16 &&
          gguf_find_tensor(g, "blk.1.attn_qkv.weight")->type == GGML_Q8_0);
    gguf_free(g);
    qmodel_free(qm);
    plan_done(&p);
    eval_ref_free(ref);
    model_free(base);
    base = keep_base;
    ref = keep_ref;
}

int main(void) {
    Err err;
    err_init(&err);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qs_gguf_export_%ld", (long)getpid());
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    CHECK(system(cmd) == 0);
    /* own copies: testlib_shared's buffers rotate */
    char model_path[1024], text_path[1024];
    snprintf(model_path, sizeof model_path, "%s", testlib_shared("models/stories260K/stories260K-f32.gguf"));
    snprintf(text_path, sizeof text_path, "%s", testlib_shared("text/tinystories_sample.txt"));
    CHECK_OK(model_load(model_path, NULL, &base, &err), err);
    char *text;
    size_t len;
    CHECK_OK(file_read_all(text_path, (size_t)1 << 20, &text, &len, &err), err);
    EvalOpts o;
    eval_opts_default(&o);
    o.n_ctx = 128;
    o.speed = 0;
    CHECK_OK(eval_ref_new(base, text, len, &o, NULL, NULL, &ref, &err), err);
    int64_t n_sites = base->cfg.n_layers * 7 + 2;

    /* int4 sym g32 -> Q4_0, int5 sym g64 -> Q5_0, per-OC int8 -> Q8_0, q8_0 blocks, fp16. */
    Plan p;
    plan_of("{\"schema_version\": 1, \"name\": \"mixed-sym\", \"default\": {\"format\": \"int4\", \"sym\": true, "
            "\"group_dim\": \"oc\", \"group\": 32, \"method\": \"rtn\"}, \"embed\": {\"format\": \"int8\", \"sym\": true, "
            "\"group_dim\": \"oc\", \"group\": 0}, \"output\": {\"format\": \"fp16\"}, \"rules\": ["
            "{\"pattern\": \"*.down\", \"fields\": [\"format\", \"group\"], \"format\": \"fp16\"},"
            "{\"pattern\": \"2.q\", \"fields\": [\"format\", \"group\"], \"format\": \"int5\", \"sym\": true, "
            "\"group_dim\": \"oc\", \"group\": 64},"
            "{\"pattern\": \"3.v\", \"fields\": [\"format\", \"group\"], \"format\": \"q8_0\"}]}", &p);
    const char *mixed = tmp_path("mixed.gguf");
    QModelStats none = {NULL, NULL};
    EvalResult rm = export_and_check(&p, &none, mixed, n_sites);
    Gguf *g;
    CHECK_OK(gguf_open(mixed, &g, &err), err);
    CHECK(gguf_find_tensor(g, "blk.0.attn_q.weight")->type == GGML_Q4_0);
    CHECK(gguf_find_tensor(g, "blk.2.attn_q.weight")->type == GGML_Q5_0);
    CHECK(gguf_find_tensor(g, "blk.3.attn_v.weight")->type == GGML_Q8_0);
    CHECK(gguf_find_tensor(g, "token_embd.weight")->type == GGML_Q8_0);
    CHECK(gguf_find_tensor(g, "blk.1.ffn_down.weight")->type == GGML_F16);
    CHECK(gguf_find_tensor(g, "blk.1.attn_norm.weight")->type == GGML_F32);
    GgufStr s;
    CHECK(gguf_get_str(g, "qscope.plan", &s) && gguf_str_eq(s, "mixed-sym"));
    CHECK(gguf_get_str(g, "tokenizer.ggml.model", &s) && gguf_str_eq(s, "llama"));
    int64_t ft;
    CHECK(gguf_get_int(g, "general.file_type", &ft) && ft == 2); /* mostly Q4_0 */
    gguf_free(g);
    plan_done(&p);

    /* GPTQ codes, asymmetric int4 groups of 32 whose mins are fp16 values, and SmoothQuant
     * gains: the GGUF still evaluates exactly as the plan. */
    const char *hp = tmp_path("h.h64");
    QStatsFile sf;
    memset(&sf, 0, sizeof sf);
    CHECK_OK(qstats_calibrate(base, text, len, 8, 64, hp, NULL, &sf, &err), err);
    plan_of("{\"schema_version\": 1, \"name\": \"gptq-sym\", \"default\": {\"format\": \"int4\", \"sym\": true, "
            "\"group_dim\": \"oc\", \"group\": 32, \"method\": \"gptq\"}, \"embed\": {\"format\": \"fp16\"}, "
            "\"rules\": [{\"pattern\": \"*.down\", \"fields\": [\"format\", \"group\", \"method\"], "
            "\"format\": \"fp16\"}]}", &p);
    QModelStats qs = {sf.cs, sf.h};
    EvalResult rg = export_and_check(&p, &qs, tmp_path("gptq.gguf"), n_sites);
    printf("plan mixed-sym: PPL %.4f KLD %.5f; gptq-sym: PPL %.4f KLD %.5f (exports identical)\n", rm.ppl, rm.kld_mean,
           rg.ppl, rg.kld_mean);
    fflush(stdout);
    plan_done(&p);

    /* Refused without a fallback (nothing written), written with one. */
    plan_of("{\"schema_version\": 1, \"name\": \"needs-fallback\", \"default\": {\"format\": \"int4\", \"sym\": true, "
            "\"group_dim\": \"ic\", \"group\": 0}, \"rules\": [{\"pattern\": \"1.o\", \"fields\": [\"format\", "
            "\"group\"], \"format\": \"int8\", \"sym\": false, \"group_dim\": \"oc\", \"group\": 32}, {\"pattern\": "
            "\"*.down\", \"fields\": [\"format\", \"group\"], \"format\": \"fp8-e4m3\", \"group_dim\": \"oc\", "
            "\"group\": 0}]}", &p);
    QModel *qm;
    CHECK_OK(qmodel_build_keep(base, &p, &none, NULL, NULL, &qm, &err), err);
    const char *fbp = tmp_path("fb.gguf");
    ExportReport rep;
    CHECK(gguf_export(base, qm, NULL, p.name, GGUF_FALLBACK_NONE, fbp, &rep, &err) == ST_ERR_UNSUPPORTED);
    CHECK(access(fbp, F_OK) != 0 && rep.dropped == base->cfg.n_layers * 7);
    char *rt = export_report_text(&rep);
    CHECKF(strstr(rt, "int4 sym per-IC: its scale groups are not whole 32-blocks of a row") &&
               strstr(rt, "int8 asym oc32: no 32-block ggml type has its bits with a zero point") &&
               strstr(rt, "fp8-e4m3 per-OC: no ggml type holds its codes"), "%s", rt);
    free(rt);
    export_report_done(&rep);
    CHECK_OK(gguf_export(base, qm, NULL, p.name, GGUF_FALLBACK_NEAREST, fbp, &rep, &err), err);
    CHECK(rep.dropped == base->cfg.n_layers * 7 && rep.exact == 2);
    export_report_done(&rep);
    CHECK_OK(gguf_open(fbp, &g, &err), err);
    /* nearest: int8 -> q8_0 through ggml's reference rounding; int4 -> q4_k, q4_0: q4_0's */
    CHECK(gguf_find_tensor(g, "blk.1.attn_output.weight")->type == GGML_Q8_0);
    CHECK(gguf_find_tensor(g, "blk.0.attn_q.weight")->type == GGML_Q4_0);
    CHECK(gguf_find_tensor(g, "blk.0.ffn_down.weight")->type == GGML_F16); /* 172 columns */
    gguf_free(g);
    CHECK_OK(gguf_export(base, qm, NULL, p.name, GGUF_FALLBACK_F16, fbp, &rep, &err), err);
    export_report_done(&rep);
    CHECK_OK(gguf_open(fbp, &g, &err), err);
    CHECK(gguf_find_tensor(g, "blk.0.attn_q.weight")->type == GGML_F16);
    gguf_free(g);
    qmodel_free(qm);
    plan_done(&p);

    /* The consumers. */
    const char *lp = testlib_llama_tool("llama-perplexity", "llama-perplexity on an exported GGUF");
    if (lp) {
        double got = llama_ppl(mixed, text_path);
        printf("mixed-sym export: llama-perplexity %.4f, qscope eval of the plan %.4f (%+.3f %%)\n", got, rm.ppl,
               100 * (got / rm.ppl - 1));
        CHECK(got > 0 && fabs(got / rm.ppl - 1) < 0.005);
    }
    check_gptq_ggml(text, len, text_path, lp);
    check_other_sources(text, len, text_path, lp);
    check_phi3(text, len, text_path, lp);
    const char *lq = testlib_llama_tool("llama-quantize", "llama-quantize byte identity");
    if (lq) {
        static const char *const F[2] = {"q8_0", "q4_0"};
        for (int k = 0; k < 2; k++) {
            char json[1024];
            snprintf(json, sizeof json, "{\"schema_version\": 1, \"name\": \"%s-rtn\", \"default\": {\"format\": \"%s\", "
                     "\"method\": \"rtn\"}, \"embed\": {\"format\": \"%s\"}, \"output\": {\"format\": \"%s\"}, "
                     "\"rules\": [{\"pattern\": \"*.down\", \"fields\": [\"format\", \"group\"], \"format\": "
                     "\"fp16\"}]}", F[k], F[k], F[k], F[k]);
            plan_of(json, &p);
            const char *qx = tmp_path(k ? "q4_qs.gguf" : "q8_qs.gguf"), *lx = tmp_path(k ? "q4_lq.gguf" : "q8_lq.gguf");
            CHECK_OK(qmodel_build_keep(base, &p, &none, NULL, NULL, &qm, &err), err);
            CHECK_OK(gguf_export(base, qm, NULL, p.name, GGUF_FALLBACK_NONE, qx, &rep, &err), err);
            export_report_done(&rep);
            qmodel_free(qm);
            plan_done(&p);
            snprintf(cmd, sizeof cmd, "%s --tensor-type ffn_down=f16 --token-embedding-type %s --output-tensor-type %s "
                     "%s %s %s >%s/lq.log 2>&1", lq, F[k], F[k], model_path, lx, k ? "Q4_0" : "Q8_0", tmpdir);
            CHECKF(system(cmd) == 0, "llama-quantize (see %s/lq.log)", tmpdir);
            int n = 0;
            for (int64_t l = 0; l < base->cfg.n_layers; l++)
                for (int pj = 0; pj < 7; pj++) {
                    char nm[64];
                    snprintf(nm, sizeof nm, "blk.%lld.%s.weight", (long long)l, PROJ_T[pj]);
                    CHECKF(testlib_same_tensor(qx, lx, nm), "%s: %s differs from llama-quantize's", F[k], nm);
                    n++;
                }
            CHECKF(testlib_same_tensor(qx, lx, "token_embd.weight") && testlib_same_tensor(qx, lx, "output.weight"), "%s ends", F[k]);
            printf("%s: %d tensors byte-identical to llama-quantize\n", F[k], n + 2);
        }
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0);
    eval_result_done(&rm);
    eval_result_done(&rg);
    qstats_close(&sf);
    eval_ref_free(ref);
    free(text);
    model_free(base);
    return testlib_done("test_gguf_export");
}
