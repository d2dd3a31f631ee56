#include "sessions/export.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"

/* === Text buffer === */

typedef struct Buf {
    char *p;
    size_t n, cap;
    int oom;
} Buf;

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p && (size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

/* === Names === */

static const char *const TARGET_NAMES[EXPORT_COUNT] = {"llamacpp", "gptqmodel", "llmcompressor"};
static const char *const LLAMA_T[PLAN_NPROJ] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                "ffn_gate", "ffn_up", "ffn_down"};
static const char *const HF_T[PLAN_NPROJ] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                             "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};

const char *export_target_name(ExportTarget t) {
    return (int)t >= 0 && t < EXPORT_COUNT ? TARGET_NAMES[t] : "?";
}

int export_target_parse(const char *s) {
    if (!s) return -1;
    for (int i = 0; i < EXPORT_COUNT; i++)
        if (!strcasecmp(s, TARGET_NAMES[i])) return i;
    if (!strcasecmp(s, "llama.cpp") || !strcasecmp(s, "gguf")) return EXPORT_LLAMACPP;
    if (!strcasecmp(s, "llm-compressor")) return EXPORT_LLMCOMPRESSOR;
    return -1;
}

/* HF module name of (layer, proj) with regex-escaped dots. */
static void hf_regex(char *buf, size_t n, int64_t layer, int proj) {
    const char *t = HF_T[proj];
    const char *dot = strchr(t, '.');
    snprintf(buf, n, "^model\\.layers\\.%" PRId64 "\\.%.*s\\.%s$", layer, (int)(dot - t), t, dot + 1);
}

static void hf_regex_all(char *buf, size_t n, int proj) {
    const char *t = HF_T[proj];
    const char *dot = strchr(t, '.');
    snprintf(buf, n, "^model\\.layers\\.\\d+\\.%.*s\\.%s$", (int)(dot - t), t, dot + 1);
}

/* === Report === */

void export_report_done(ExportReport *rep) {
    if (!rep) return;
    free(rep->notes);
    memset(rep, 0, sizeof *rep);
}

/* Per-site bookkeeping: worst severity noted for the site being exported. */
typedef struct SiteMark {
    int approx, dropped;
} SiteMark;

static void note(ExportReport *rep, SiteMark *sm, ExportSeverity sev, const char *site, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void note(ExportReport *rep, SiteMark *sm, ExportSeverity sev, const char *site, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (sev == EXPORT_DROPPED) sm->dropped = 1;
    else sm->approx = 1;
    ExportNote *n = NULL;
    for (int64_t i = 0; i < rep->n_notes; i++)
        if (rep->notes[i].sev == sev && !strcmp(rep->notes[i].msg, msg)) n = &rep->notes[i];
    if (!n) {
        ExportNote *nn = realloc(rep->notes, (size_t)(rep->n_notes + 1) * sizeof *nn);
        if (!nn) return; /* the report loses a line; the export itself is unaffected */
        rep->notes = nn;
        n = &rep->notes[rep->n_notes++];
        memset(n, 0, sizeof *n);
        n->sev = sev;
        snprintf(n->msg, sizeof n->msg, "%s", msg);
    }
    n->count++;
    size_t used = strlen(n->examples);
    if (n->count <= 3 && used + strlen(site) + 3 < sizeof n->examples)
        snprintf(n->examples + used, sizeof n->examples - used, "%s%s", used ? ", " : "", site);
    else if (n->count == 4 && used + 5 < sizeof n->examples)
        snprintf(n->examples + used, sizeof n->examples - used, ", ...");
}

static void site_done(ExportReport *rep, const SiteMark *sm) {
    rep->sites++;
    if (sm->dropped) rep->dropped++;
    else if (sm->approx) rep->approx++;
    else rep->exact++;
}

char *export_report_text(const ExportReport *rep) {
    Buf b = {0};
    buf_printf(&b, "%" PRId64 " tensors: %" PRId64 " exact, %" PRId64 " approximate, %" PRId64
               " not expressible\n", rep->sites, rep->exact, rep->approx, rep->dropped);
    for (int64_t i = 0; i < rep->n_notes; i++) {
        const ExportNote *n = &rep->notes[i];
        buf_printf(&b, "  %s: %s (%" PRId64 " tensor%s: %s)\n",
                   n->sev == EXPORT_DROPPED ? "not expressible" : "approximate", n->msg, n->count,
                   n->count == 1 ? "" : "s", n->examples);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p ? b.p : core_strdup("");
}

/* Short text of an entry's weight format for messages: "int4 asym oc128". */
static void entry_desc(const PlanEntry *e, char *buf, size_t n) {
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    if (!t->needs_scale) {
        snprintf(buf, n, "%s", t->name);
        return;
    }
    char g[32];
    if (e->w.dim == GROUP_TENSOR) snprintf(g, sizeof g, "per-tensor");
    else if (e->w.group == 0) snprintf(g, sizeof g, "per-%s", e->w.dim == GROUP_OC ? "OC" : "IC");
    else snprintf(g, sizeof g, "%s%" PRId64, group_dim_name(e->w.dim), e->w.group);
    snprintf(buf, n, "%s%s %s", t->name, t->is_int ? (e->w.sym ? " sym" : " asym") : "", g);
}

/* Notes shared by the weight-only targets: activations and SmoothQuant. */
static void note_act_smooth(ExportReport *rep, SiteMark *sm, const PlanEntry *e, const char *site,
                            const char *why) {
    if (e->act != ACT_NONE)
        note(rep, sm, EXPORT_APPROX, site, "activation quantization (%s per-%s) not expressible: %s",
             act_format_name(e->act), act_gran_name(e->act_gran), why);
    if (e->smooth_alpha > 0)
        note(rep, sm, EXPORT_APPROX, site, "SmoothQuant (alpha %g) not expressible", (double)e->smooth_alpha);
}

/* === llama.cpp === */

typedef struct LlamaType {
    const char *name;
    int64_t block;
} LlamaType;

/* The ggml type for an entry on an (n_out, n_in) tensor, noting what is not exact. */
static const char *llama_type(const PlanEntry *e, int64_t n_in, const char *site, ExportReport *rep, SiteMark *sm) {
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    char d[64];
    entry_desc(e, d, sizeof d);
    if (e->w.fmt == QF_F32) return "f32";
    if (e->w.fmt == QF_F16) return "f16";
    if (e->w.fmt == QF_BF16) return "bf16";
    if (!t->is_int) {
        note(rep, sm, EXPORT_DROPPED, site, "%s weights have no ggml type: written as f16", d);
        return "f16";
    }
    int oc32 = e->w.dim == GROUP_OC && e->w.group == 32;
    LlamaType want, fallback = {NULL, 0};
    switch (t->bits) {
    case 8: want = (LlamaType){"q8_0", 32}; break;
    case 6: want = (LlamaType){"q6_k", 256}; fallback = (LlamaType){"q8_0", 32}; break;
    case 5:
        fallback = (LlamaType){e->w.sym ? "q5_0" : "q5_1", 32};
        want = oc32 ? fallback : (LlamaType){"q5_k", 256};
        break;
    case 4:
        fallback = (LlamaType){e->w.sym ? "q4_0" : "q4_1", 32};
        want = oc32 ? fallback : (LlamaType){"q4_k", 256};
        break;
    case 3: want = (LlamaType){"q3_k", 256}; fallback = (LlamaType){"q4_0", 32}; break;
    default: want = (LlamaType){"q2_k", 256}; fallback = (LlamaType){"q4_0", 32}; break;
    }
    LlamaType use = want;
    if (n_in % want.block != 0) {
        if (fallback.name && n_in % fallback.block == 0) {
            note(rep, sm, EXPORT_APPROX, site, "%s: %s needs rows of a multiple of %" PRId64 " (n_in %" PRId64
                 "): %s written", d, want.name, want.block, n_in, fallback.name);
            use = fallback;
        } else {
            note(rep, sm, EXPORT_DROPPED, site, "%s: n_in %" PRId64 " is not a multiple of %" PRId64
                 " (no ggml block type fits): written as f16", d, n_in, fallback.name ? fallback.block : want.block);
            return "f16";
        }
    } else if (!(t->bits == 8 && e->w.sym && oc32)) {
        note(rep, sm, EXPORT_APPROX, site, "%s -> %s: a different grid (ggml block format, not the plan's)", d,
             use.name);
    }
    if (e->method == QM_GPTQ || e->method == QM_ADADIM)
        note(rep, sm, EXPORT_APPROX, site, "method %s: llama-quantize rounds to nearest (an imatrix from "
             "llama-imatrix is the closest)", qmethod_name(e->method));
    return use.name;
}

static Status export_llamacpp(const Plan *p, const PlanModel *m, const PlanResolved *r, Buf *b, ExportReport *rep) {
    buf_printf(b, "# qscope plan '%s' as llama-quantize --tensor-type-file lines (last match wins)\n", p->name);
    char site[96];
    SiteMark sm = {0};
    snprintf(site, sizeof site, "token_embd.weight");
    const char *ty = llama_type(&r->embed.e, m->dim, site, rep, &sm);
    buf_printf(b, "%s=%s\n", site, ty);
    site_done(rep, &sm);
    for (int64_t l = 0; l < r->n_layers; l++)
        for (int pj = 0; pj < PLAN_NPROJ; pj++) {
            const PlanSiteEntry *se = &r->lin[l * PLAN_NPROJ + pj];
            sm = (SiteMark){0};
            snprintf(site, sizeof site, "blk.%" PRId64 ".%s.weight", l, LLAMA_T[pj]);
            ty = llama_type(&se->e, se->n_in, site, rep, &sm);
            note_act_smooth(rep, &sm, &se->e, site, "ggml picks the activation format of each weight type");
            buf_printf(b, "%s=%s\n", site, ty);
            site_done(rep, &sm);
        }
    sm = (SiteMark){0};
    if (m->tied_embeddings) {
        char de[64], dout[64];
        entry_desc(&r->embed.e, de, sizeof de);
        entry_desc(&r->output.e, dout, sizeof dout);
        if (strcmp(de, dout))
            note(rep, &sm, EXPORT_APPROX, "output.weight", "tied head: llama.cpp stores one token_embd (%s); "
                 "the head's %s is not written", de, dout);
        site_done(rep, &sm);
    } else {
        snprintf(site, sizeof site, "output.weight");
        ty = llama_type(&r->output.e, m->dim, site, rep, &sm);
        note_act_smooth(rep, &sm, &r->output.e, site, "ggml picks the activation format of each weight type");
        buf_printf(b, "%s=%s\n", site, ty);
        site_done(rep, &sm);
    }
    return ST_OK;
}

/* === GPTQModel === */

typedef struct GmCfg {
    int quant;               /* 0: skipped ("-:") */
    int bits;
    int64_t group_size;      /* -1: per channel */
    int desc_act, sym;
    double damp;
} GmCfg;

static int gm_eq(const GmCfg *a, const GmCfg *b) {
    if (a->quant != b->quant) return 0;
    if (!a->quant) return 1;
    return a->bits == b->bits && a->group_size == b->group_size && a->desc_act == b->desc_act && a->sym == b->sym;
}

static GmCfg gm_cfg(const PlanEntry *e, const char *site, ExportReport *rep, SiteMark *sm) {
    GmCfg c = {0};
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    char d[64];
    entry_desc(e, d, sizeof d);
    if (!t->needs_scale && e->w.fmt != QF_AQLM) return c; /* 16/32-bit: left unquantized */
    if (!t->is_int) {
        note(rep, sm, EXPORT_DROPPED, site, "%s not expressible in GPTQModel (int weights only): module skipped", d);
        return c;
    }
    c.quant = 1;
    c.bits = t->bits;
    if (c.bits == 5 || c.bits == 6) {
        note(rep, sm, EXPORT_APPROX, site, "%s: GPTQModel has 2/3/4/8-bit weights: 8 bits written", d);
        c.bits = 8;
    }
    c.sym = e->w.sym;
    c.group_size = -1;
    if (e->w.dim == GROUP_OC) c.group_size = e->w.group ? e->w.group : -1;
    else note(rep, sm, EXPORT_APPROX, site, "%s: only input-dimension groups (per OC) exist: per channel written", d);
    int gptq = e->method == QM_GPTQ || (e->method == QM_ADADIM && e->adadim_base == QM_GPTQ);
    c.desc_act = gptq && e->gptq.act_order;
    c.damp = e->gptq.damp;
    if (e->method == QM_RTN) note(rep, sm, EXPORT_APPROX, site, "method rtn: GPTQModel always runs GPTQ");
    if (e->method == QM_ADADIM)
        note(rep, sm, EXPORT_APPROX, site, "AdaDim's per-IC choice not expressible: GPTQ per OC");
    note_act_smooth(rep, sm, e, site, "GPTQModel is weight-only");
    return c;
}

static cJSON *gm_json(const GmCfg *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !c->quant) return o;
    cJSON_AddNumberToObject(o, "bits", c->bits);
    cJSON_AddNumberToObject(o, "group_size", (double)c->group_size);
    cJSON_AddBoolToObject(o, "desc_act", c->desc_act);
    cJSON_AddBoolToObject(o, "sym", c->sym);
    return o;
}

static int gm_add_dyn(cJSON *dyn, const char *regex, const GmCfg *c) {
    char key[160];
    snprintf(key, sizeof key, "%s:%s", c->quant ? "+" : "-", regex);
    cJSON *v = gm_json(c);
    return v && cJSON_AddItemToObject(dyn, key, v);
}

static Status export_gptqmodel(const Plan *p, const PlanModel *m, const PlanResolved *r, Buf *b, ExportReport *rep,
                               Err *err) {
    int64_t n = r->n_layers * PLAN_NPROJ;
    GmCfg *cfg = core_calloc((size_t)(n > 0 ? n : 1), sizeof *cfg);
    cJSON *root = cJSON_CreateObject(), *dyn = cJSON_CreateObject();
    Status st = ST_OK;
    if (!cfg || !root || !dyn) {
        st = err_set(err, ST_ERR_NOMEM, "export");
        goto fail;
    }
    char site[96];
    for (int64_t l = 0; l < r->n_layers; l++)
        for (int pj = 0; pj < PLAN_NPROJ; pj++) {
            SiteMark sm = {0};
            snprintf(site, sizeof site, "model.layers.%" PRId64 ".%s", l, HF_T[pj]);
            cfg[l * PLAN_NPROJ + pj] = gm_cfg(&r->lin[l * PLAN_NPROJ + pj].e, site, rep, &sm);
            site_done(rep, &sm);
        }
    /* Base: the most common quantized configuration (first on ties). */
    GmCfg base = {.quant = 1, .bits = 4, .group_size = 128, .damp = 0.01};
    int64_t best = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!cfg[i].quant) continue;
        int64_t k = 0;
        for (int64_t j = 0; j < n; j++) k += gm_eq(&cfg[i], &cfg[j]);
        if (k > best) {
            best = k;
            base = cfg[i];
        }
    }
    cJSON_AddStringToObject(root, "quant_method", "gptq");
    cJSON_AddNumberToObject(root, "bits", base.bits);
    cJSON_AddNumberToObject(root, "group_size", (double)base.group_size);
    cJSON_AddBoolToObject(root, "desc_act", base.desc_act);
    cJSON_AddBoolToObject(root, "sym", base.sym);
    cJSON_AddNumberToObject(root, "damp_percent", base.damp);
    /* Embedding and head. */
    SiteMark sm = {0};
    const QFormatTraits *te = qformat_traits(r->embed.e.w.fmt);
    if (te->needs_scale || r->embed.e.w.fmt == QF_AQLM)
        note(rep, &sm, EXPORT_DROPPED, "model.embed_tokens", "GPTQModel does not quantize the embedding: kept 16-bit");
    site_done(rep, &sm);
    sm = (SiteMark){0};
    GmCfg head = {0};
    if (!m->tied_embeddings) head = gm_cfg(&r->output.e, "lm_head", rep, &sm);
    else if (qformat_traits(r->output.e.w.fmt)->needs_scale)
        note(rep, &sm, EXPORT_DROPPED, "lm_head", "tied head is the embedding: not quantized");
    site_done(rep, &sm);
    cJSON_AddBoolToObject(root, "lm_head", head.quant);
    for (int pj = 0; pj < PLAN_NPROJ; pj++) {
        int uniform = r->n_layers > 1;
        for (int64_t l = 1; l < r->n_layers; l++) uniform &= gm_eq(&cfg[pj], &cfg[l * PLAN_NPROJ + pj]);
        char re[128];
        if (uniform) {
            if (gm_eq(&cfg[pj], &base)) continue;
            hf_regex_all(re, sizeof re, pj);
            if (!gm_add_dyn(dyn, re, &cfg[pj])) goto oom;
            continue;
        }
        for (int64_t l = 0; l < r->n_layers; l++) {
            const GmCfg *c = &cfg[l * PLAN_NPROJ + pj];
            if (gm_eq(c, &base)) continue;
            hf_regex(re, sizeof re, l, pj);
            if (!gm_add_dyn(dyn, re, c)) goto oom;
        }
    }
    if (head.quant && !gm_add_dyn(dyn, "^lm_head$", &head)) goto oom;
    cJSON_AddItemToObject(root, "dynamic", dyn);
    dyn = NULL;
    char *t = cJSON_Print(root);
    if (!t) goto oom;
    buf_printf(b, "%s\n", t);
    cJSON_free(t);
    (void)p;
    goto fail;
oom:
    st = err_set(err, ST_ERR_NOMEM, "export");
fail:
    free(cfg);
    cJSON_Delete(root);
    cJSON_Delete(dyn);
    return st;
}

/* === llm-compressor === */

/* The YAML lines of an entry's scheme (weights + input activations) into
 * out (sig, the grouping key); returns 0 when the module is ignored. */
static int lc_scheme(const PlanEntry *e, const char *site, char *out, size_t cap, int *gptq, int *smooth,
                     float *alpha, ExportReport *rep, SiteMark *sm) {
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    char d[64];
    entry_desc(e, d, sizeof d);
    out[0] = '\0';
    if (e->w.fmt == QF_F32 || e->w.fmt == QF_F16 || e->w.fmt == QF_BF16) return 0;
    if (e->w.fmt == QF_AQLM || e->w.fmt == QF_FP8_E5M2) {
        note(rep, sm, EXPORT_DROPPED, site, "%s not expressible in compressed-tensors: module ignored", d);
        return 0;
    }
    const char *strategy;
    char gs[48] = "";
    if (e->w.dim == GROUP_TENSOR) strategy = "tensor";
    else if (e->w.dim == GROUP_IC) {
        note(rep, sm, EXPORT_APPROX, site, "%s: per-IC groups not expressible: per-channel written", d);
        strategy = "channel";
    } else if (e->w.group == 0) strategy = "channel";
    else {
        strategy = "group";
        snprintf(gs, sizeof gs, "            group_size: %" PRId64 "\n", e->w.group);
    }
    int is_gptq = e->method == QM_GPTQ || (e->method == QM_ADADIM && e->adadim_base == QM_GPTQ);
    if (e->method == QM_ADADIM) note(rep, sm, EXPORT_APPROX, site, "AdaDim's dimension choice not expressible");
    if (is_gptq) *gptq = 1;
    char ao[64] = "";
    if (is_gptq && e->gptq.act_order) snprintf(ao, sizeof ao, "            actorder: weight\n");
    int n = snprintf(out, cap,
                     "          weights:\n            num_bits: %d\n            type: %s\n"
                     "            symmetric: %s\n            strategy: %s\n%s%s            dynamic: false\n",
                     t->bits, t->is_int ? "int" : "float", e->w.sym || !t->is_int ? "true" : "false", strategy, gs, ao);
    if (e->act != ACT_NONE && n > 0 && (size_t)n < cap) {
        if (e->act == ACT_FP8_E5M2)
            note(rep, sm, EXPORT_APPROX, site, "fp8-e5m2 activations: compressed-tensors fp8 is e4m3");
        if (e->act_skip_first)
            note(rep, sm, EXPORT_APPROX, site, "activation range without token 0 not expressible");
        snprintf(out + n, cap - (size_t)n,
                 "          input_activations:\n            num_bits: 8\n            type: %s\n"
                 "            symmetric: true\n            strategy: %s\n            dynamic: %s\n",
                 e->act == ACT_INT8 ? "int" : "float", e->act_gran == ACT_PER_TOKEN ? "token" : "tensor",
                 e->act_scale == ACT_DYNAMIC ? "true" : "false");
    }
    if (e->smooth_alpha > 0) {
        if (*smooth && *alpha != e->smooth_alpha)
            note(rep, sm, EXPORT_APPROX, site, "SmoothQuant alpha %g: one smoothing_strength (%g) per recipe",
                 (double)e->smooth_alpha, (double)*alpha);
        if (!*smooth) *alpha = e->smooth_alpha;
        *smooth = 1;
    }
    return 1;
}

static void yaml_targets(Buf *b, const char *key, int indent, char **list, int64_t n) {
    buf_printf(b, "%*s%s: [", indent, "", key);
    for (int64_t i = 0; i < n; i++) buf_printf(b, "%s'%s'", i ? ", " : "", list[i]);
    buf_printf(b, "]\n");
}

static Status export_llmcompressor(const Plan *p, const PlanModel *m, const PlanResolved *r, Buf *b,
                                   ExportReport *rep, Err *err) {
    enum { SIG = 1024 };
    int64_t n = r->n_layers * PLAN_NPROJ + 1; /* + lm_head */
    char *sig = core_calloc((size_t)n, SIG);
    int *quant = core_calloc((size_t)n, sizeof *quant);
    char **targets = core_calloc((size_t)n, sizeof *targets), **ignore = core_calloc((size_t)n + 1, sizeof *ignore);
    int64_t n_ignore = 0;
    Status st = ST_OK;
    if (!sig || !quant || !targets || !ignore) {
        st = err_set(err, ST_ERR_NOMEM, "export");
        goto fail;
    }
    int gptq = 0, smooth = 0;
    float alpha = 0;
    char site[96];
    for (int64_t l = 0; l < r->n_layers; l++)
        for (int pj = 0; pj < PLAN_NPROJ; pj++) {
            SiteMark sm = {0};
            int64_t i = l * PLAN_NPROJ + pj;
            snprintf(site, sizeof site, "model.layers.%" PRId64 ".%s", l, HF_T[pj]);
            quant[i] = lc_scheme(&r->lin[i].e, site, sig + i * SIG, SIG, &gptq, &smooth, &alpha, rep, &sm);
            site_done(rep, &sm);
        }
    SiteMark sm = {0};
    if (qformat_traits(r->embed.e.w.fmt)->needs_scale || r->embed.e.w.fmt == QF_AQLM)
        note(rep, &sm, EXPORT_DROPPED, "model.embed_tokens", "the embedding is not a Linear: not quantized");
    site_done(rep, &sm);
    sm = (SiteMark){0};
    int64_t hi = n - 1;
    if (!m->tied_embeddings)
        quant[hi] = lc_scheme(&r->output.e, "lm_head", sig + hi * SIG, SIG, &gptq, &smooth, &alpha, rep, &sm);
    site_done(rep, &sm);
    if (!quant[hi] && !(ignore[n_ignore++] = core_strdup("lm_head"))) goto oom;
    /* Ignore list: unquantized projections (per projection when every layer agrees). */
    for (int pj = 0; pj < PLAN_NPROJ; pj++) {
        int64_t k = 0;
        for (int64_t l = 0; l < r->n_layers; l++) k += !quant[l * PLAN_NPROJ + pj];
        char re[160];
        if (k == r->n_layers && k > 0) {
            hf_regex_all(re, sizeof re, pj);
            char full[170];
            snprintf(full, sizeof full, "re:%s", re);
            if (!(ignore[n_ignore++] = core_strdup(full))) goto oom;
            continue;
        }
        for (int64_t l = 0; l < r->n_layers; l++)
            if (!quant[l * PLAN_NPROJ + pj]) {
                hf_regex(re, sizeof re, l, pj);
                char full[170];
                snprintf(full, sizeof full, "re:%s", re);
                char **ni = realloc(ignore, (size_t)(n_ignore + 2) * sizeof *ignore);
                if (!ni) goto oom;
                ignore = ni;
                if (!(ignore[n_ignore++] = core_strdup(full))) goto oom;
            }
    }
    buf_printf(b, "# qscope plan '%s' as an llm-compressor recipe (see the export report for what is approximate)\n",
               p->name);
    buf_printf(b, "quant_stage:\n  quant_modifiers:\n");
    if (smooth) buf_printf(b, "    SmoothQuantModifier:\n      smoothing_strength: %g\n", (double)alpha);
    if (gptq) {
        for (int64_t i = 0; i < n; i++)
            if (quant[i]) {
                const PlanEntry *e = i == hi ? &r->output.e : &r->lin[i].e;
                if (e->method == QM_RTN) {
                    SiteMark dummy = {0};
                    char nm[96];
                    if (i == hi) snprintf(nm, sizeof nm, "lm_head");
                    else snprintf(nm, sizeof nm, "model.layers.%" PRId64 ".%s", i / PLAN_NPROJ, HF_T[i % PLAN_NPROJ]);
                    note(rep, &dummy, EXPORT_APPROX, nm, "method rtn under a GPTQModifier: GPTQ runs on it too");
                }
            }
        double damp = 0.01;
        for (int64_t i = 0; i < n - 1; i++)
            if (quant[i] && r->lin[i].e.method == QM_GPTQ) {
                damp = r->lin[i].e.gptq.damp;
                break;
            }
        buf_printf(b, "    GPTQModifier:\n      dampening_frac: %g\n", damp);
    } else {
        buf_printf(b, "    QuantizationModifier:\n");
    }
    yaml_targets(b, "ignore", 6, ignore, n_ignore);
    buf_printf(b, "      config_groups:\n");
    int64_t group = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!quant[i] || !sig[i * SIG]) continue;
        /* Collect every module with this scheme, then clear their keys. */
        int64_t nt = 0;
        char *s0 = sig + i * SIG;
        char scheme[SIG];
        snprintf(scheme, sizeof scheme, "%s", s0);
        for (int pj = 0; pj < PLAN_NPROJ; pj++) {
            int64_t k = 0;
            for (int64_t l = 0; l < r->n_layers; l++)
                k += quant[l * PLAN_NPROJ + pj] && !strcmp(sig + (l * PLAN_NPROJ + pj) * SIG, scheme);
            char re[160], full[170];
            if (k == r->n_layers && k > 0) {
                hf_regex_all(re, sizeof re, pj);
                snprintf(full, sizeof full, "re:%s", re);
                if (!(targets[nt++] = core_strdup(full))) goto oom;
                for (int64_t l = 0; l < r->n_layers; l++) sig[(l * PLAN_NPROJ + pj) * SIG] = '\0';
                continue;
            }
            for (int64_t l = 0; l < r->n_layers; l++) {
                char *sl = sig + (l * PLAN_NPROJ + pj) * SIG;
                if (!quant[l * PLAN_NPROJ + pj] || strcmp(sl, scheme)) continue;
                hf_regex(re, sizeof re, l, pj);
                snprintf(full, sizeof full, "re:%s", re);
                if (!(targets[nt++] = core_strdup(full))) goto oom;
                sl[0] = '\0';
            }
        }
        if (quant[hi] && !strcmp(sig + hi * SIG, scheme)) {
            if (!(targets[nt++] = core_strdup("re:^lm_head$"))) goto oom;
            sig[hi * SIG] = '\0';
        }
        buf_printf(b, "        group_%" PRId64 ":\n", group++);
        yaml_targets(b, "targets", 10, targets, nt);
        buf_printf(b, "%s", scheme);
        for (int64_t k = 0; k < nt; k++) {
            free(targets[k]);
            targets[k] = NULL;
        }
    }
    if (group == 0) buf_printf(b, "        {}\n");
    goto fail;
oom:
    st = err_set(err, ST_ERR_NOMEM, "export");
fail:
    if (targets)
        for (int64_t k = 0; k < n; k++) free(targets[k]);
    if (ignore)
        for (int64_t k = 0; k < n_ignore; k++) free(ignore[k]);
    free(targets);
    free(ignore);
    free(sig);
    free(quant);
    return st;
}

Status plan_export(const Plan *p, const PlanModel *m, ExportTarget t, char **out, ExportReport *rep, Err *err) {
    *out = NULL;
    memset(rep, 0, sizeof *rep);
    if ((int)t < 0 || t >= EXPORT_COUNT) return err_set(err, ST_ERR_ARG, "export: unknown target %d", (int)t);
    PlanResolved r = {0};
    Status st = plan_validate(p, m, err);
    if (!st) st = plan_resolve(p, m, &r, err);
    if (st) return st;
    Buf b = {0};
    if (t == EXPORT_LLAMACPP) st = export_llamacpp(p, m, &r, &b, rep);
    else if (t == EXPORT_GPTQMODEL) st = export_gptqmodel(p, m, &r, &b, rep, err);
    else st = export_llmcompressor(p, m, &r, &b, rep, err);
    plan_resolved_done(&r);
    if (!st && b.oom) st = err_set(err, ST_ERR_NOMEM, "export");
    if (st) {
        free(b.p);
        return st;
    }
    *out = b.p ? b.p : core_strdup("");
    return *out ? ST_OK : err_set(err, ST_ERR_NOMEM, "export");
}

/* === llama.cpp import === */

static const struct {
    const char *name;
    QFormat fmt;
    int sym;
    int64_t group;
} LLAMA_IMPORT[] = {
    {"f32", QF_F32, 1, 0},   {"f16", QF_F16, 1, 0},   {"bf16", QF_BF16, 1, 0}, {"q8_0", QF_INT8, 1, 32},
    {"q4_0", QF_INT4, 1, 32}, {"q4_1", QF_INT4, 0, 32}, {"q4_k", QF_INT4, 0, 32}, {"q5_0", QF_INT5, 1, 32},
    {"q5_1", QF_INT5, 0, 32}, {"q5_k", QF_INT5, 0, 32}, {"q6_k", QF_INT6, 1, 16}, {"q3_k", QF_INT3, 1, 16},
    {"q2_k", QF_INT2, 0, 16},
};

/* Parses a tensor name into a plan pattern ("3.down", "*.q", "embed", "output"). */
static int llama_name_pattern(const char *name, char *pat, size_t cap) {
    char nm[128];
    size_t k = 0;
    /* Accept regex-escaped dots ("blk\.3\.ffn_down") as written by hand. */
    for (const char *c = name; *c && k + 1 < sizeof nm; c++)
        if (!(c[0] == '\\' && c[1] == '.')) nm[k++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    nm[k] = '\0';
    size_t n = strlen(nm);
    if (n > 7 && !strcmp(nm + n - 7, ".weight")) nm[n - 7] = '\0';
    if (!strcmp(nm, "token_embd")) return snprintf(pat, cap, "embed"), 1;
    if (!strcmp(nm, "output")) return snprintf(pat, cap, "output"), 1;
    const char *t = nm;
    char layer[24] = "*";
    if (!strncmp(nm, "blk.", 4)) {
        const char *c = nm + 4;
        size_t d = 0;
        while (c[d] >= '0' && c[d] <= '9') d++;
        if (d == 0 || d > 9 || c[d] != '.') return 0;
        snprintf(layer, sizeof layer, "%.*s", (int)d, c);
        t = c + d + 1;
    }
    for (int pj = 0; pj < PLAN_NPROJ; pj++)
        if (!strcmp(t, LLAMA_T[pj])) return snprintf(pat, cap, "%s.%s", layer, plan_proj_name(pj)), 1;
    return 0;
}

Status plan_import_llamacpp(const char *text, size_t len, const char *where, const PlanModel *m, Plan *out,
                            Err *err) {
    plan_init(out);
    if (!where) where = "tensor-type file";
    snprintf(out->name, sizeof out->name, "llamacpp-import");
    size_t i = 0;
    int64_t line = 1, n_entries = 0;
    Status st = ST_OK;
    while (i < len) {
        char c = text[i];
        if (c == '\n') {
            line++;
            i++;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r') {
            i++;
            continue;
        }
        if (c == '#') {
            while (i < len && text[i] != '\n') i++;
            continue;
        }
        size_t s = i;
        while (i < len && text[i] != '\n' && text[i] != ' ' && text[i] != '\t' && text[i] != '\r') i++;
        char tok[256];
        if (i - s >= sizeof tok)
            return err_set(err, ST_ERR_FORMAT, "%s: line %" PRId64 ": entry longer than %zu bytes", where, line,
                           sizeof tok - 1);
        memcpy(tok, text + s, i - s);
        tok[i - s] = '\0';
        for (size_t k = 0; k < i - s; k++)
            if (tok[k] == '\0' || (unsigned char)tok[k] < 0x20)
                return err_set(err, ST_ERR_FORMAT, "%s: line %" PRId64 ": control byte in entry", where, line);
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1])
            return err_set(err, ST_ERR_FORMAT, "%s: line %" PRId64 ": expected TENSOR=TYPE, got '%.64s'", where, line,
                           tok);
        *eq = '\0';
        const char *ty = eq + 1;
        int ti = -1;
        for (size_t k = 0; k < sizeof LLAMA_IMPORT / sizeof LLAMA_IMPORT[0]; k++)
            if (!strcasecmp(ty, LLAMA_IMPORT[k].name)) ti = (int)k;
        if (ti < 0)
            return err_set(err, ST_ERR_FORMAT, "%s: line %" PRId64 ": type '%.32s' has no plan equivalent (known: "
                           "f32 f16 bf16 q8_0 q6_k q5_0 q5_1 q5_k q4_0 q4_1 q4_k q3_k q2_k)", where, line, ty);
        char pat[64];
        if (!llama_name_pattern(tok, pat, sizeof pat))
            return err_set(err, ST_ERR_FORMAT, "%s: line %" PRId64 ": '%.64s' is not a tensor qscope plans "
                           "(token_embd, output, [blk.N.]attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)",
                           where, line, tok);
        PlanEntry e;
        plan_entry_default(&e);
        e.w.fmt = LLAMA_IMPORT[ti].fmt;
        e.w.sym = LLAMA_IMPORT[ti].sym;
        e.w.dim = GROUP_OC;
        e.w.group = LLAMA_IMPORT[ti].group;
        if (!strcmp(pat, "embed")) out->embed = e;
        else if (!strcmp(pat, "output")) out->output = e;
        else if ((st = plan_add_rule(out, pat, PF_ALL, &e, err)))
            return err_wrap(err, "%s: line %" PRId64, where, line);
        n_entries++;
    }
    if (n_entries == 0) return err_set(err, ST_ERR_FORMAT, "%s: no TENSOR=TYPE entries", where);
    if ((st = plan_add_note(out, err, "imported from %s: tensors it does not name keep fp32 here "
                            "(llama-quantize's base type is not in the file)", where)))
        return st;
    if (m && (st = plan_validate(out, m, err))) return err_wrap(err, "%s", where);
    return ST_OK;
}
