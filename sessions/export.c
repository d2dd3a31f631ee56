#include "sessions/export.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <inttypes.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/strbuf.h"
#include "quant/ggml_type.h"
#include "quant/preset.h"

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
    snprintf(buf, n, "^model\\.layers\\.[0-9]+\\.%.*s\\.%s$", (int)(dot - t), t, dot + 1);
}

/* === Report === */

void export_report_done(ExportReport *rep) {
    if (!rep) return;
    free(rep->notes);
    memset(rep, 0, sizeof *rep);
}

/* Per-site bookkeeping: worst severity noted for the site being exported. */
typedef struct SiteMark {
    int approx, dropped, unservable;
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
    else if (sev == EXPORT_UNSERVABLE) sm->unservable = 1;
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
    rep->unservable += sm->unservable;
    if (sm->dropped) rep->dropped++;
    else if (sm->approx) rep->approx++;
    else rep->exact++;
}

void export_report_note(ExportReport *rep, ExportSeverity sev, const char *site, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    SiteMark sm = {0};
    note(rep, &sm, sev, site, "%s", msg);
}

void export_report_site(ExportReport *rep, int approx, int dropped, int unservable) {
    SiteMark sm = {approx, dropped, unservable};
    site_done(rep, &sm);
}

char *export_report_text(const ExportReport *rep) {
    StrBuf b = {0};
    strbuf_printf(&b, "%" PRId64 " tensors: %" PRId64 " exact, %" PRId64 " approximate, %" PRId64
               " not expressible", rep->sites, rep->exact, rep->approx, rep->dropped);
    if (rep->unservable) strbuf_printf(&b, "; %" PRId64 " not servable", rep->unservable);
    strbuf_printf(&b, "\n");
    for (int64_t i = 0; i < rep->n_notes; i++) {
        const ExportNote *n = &rep->notes[i];
        strbuf_printf(&b, "  %s: %s (%" PRId64 " tensor%s: %s)\n",
                   n->sev == EXPORT_DROPPED ? "not expressible" : n->sev == EXPORT_UNSERVABLE ? "not servable"
                                                                                : "approximate", n->msg, n->count,
                   n->count == 1 ? "" : "s", n->examples);
    }
    return strbuf_take(&b);
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

/* llama.cpp's lower-case spelling of the ggml types the traits name. */
static const char *const LLAMA_NAMES[GGML_TYPE_LIMIT] = {
    [GGML_F32] = "f32",   [GGML_F16] = "f16",   [GGML_BF16] = "bf16", [GGML_Q8_0] = "q8_0", [GGML_Q4_0] = "q4_0",
    [GGML_Q4_1] = "q4_1", [GGML_Q5_0] = "q5_0", [GGML_Q5_1] = "q5_1", [GGML_Q2_K] = "q2_k", [GGML_Q3_K] = "q3_k",
    [GGML_Q4_K] = "q4_k", [GGML_Q5_K] = "q5_k", [GGML_Q6_K] = "q6_k",
};

static LlamaType llama_of(int type) {
    const GgmlTypeTraits *g = type >= 0 && type < GGML_TYPE_LIMIT ? ggml_type_traits((uint32_t)type) : NULL;
    if (!g || !LLAMA_NAMES[type]) return (LlamaType){NULL, 0};
    return (LlamaType){LLAMA_NAMES[type], g->block_size};
}

/* The ggml type for an entry on an (n_out, n_in) tensor, noting what is not
 * exact: the format's nearest type (quant/format.h's ggml_near), its
 * 32-element block type where rows do not fit that one's blocks. */
static const char *llama_type(const PlanEntry *e, int64_t n_in, const char *site, ExportReport *rep, SiteMark *sm) {
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    char d[64];
    entry_desc(e, d, sizeof d);
    LlamaType want = llama_of(t->ggml_near), fallback = llama_of(t->ggml_b32[e->w.sym ? 1 : 0]);
    if (!t->needs_scale && want.name) return want.name;
    if (!want.name) {
        note(rep, sm, EXPORT_DROPPED, site, "%s weights have no ggml type: written as f16", d);
        return "f16";
    }
    int oc32 = e->w.dim == GROUP_OC && e->w.group == 32;
    if (oc32 && t->ggml_b32_oc32) want = fallback;
    if (fallback.name && !strcmp(fallback.name, want.name)) fallback = (LlamaType){NULL, 0};
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
    } else if (t->bits == 8 && e->w.sym && oc32) {
        /* The grid is q8_0's (32 codes in [-127, 127] per scale), but ggml stores
         * d = amax/127 rounded to the nearest fp16 and rounds x*127/amax, where
         * qscope rounds its scale up to fp16 and divides by it: a code can move
         * by one step. */
        note(rep, sm, EXPORT_APPROX, site, "%s -> q8_0: the same grid, but ggml rounds the fp16 block scale to "
             "nearest (qscope rounds it up)", d);
    } else {
        note(rep, sm, EXPORT_APPROX, site, "%s -> %s: a different grid (ggml block format, not the plan's)", d,
             use.name);
    }
    if (e->method == QM_GPTQ || e->method == QM_ADADIM)
        note(rep, sm, EXPORT_APPROX, site, "method %s: llama-quantize rounds to nearest (an imatrix from "
             "llama-imatrix is the closest)", qmethod_name(e->method));
    return use.name;
}

/* "blk.3.ffn_down.weight" as an anchored regex, "^blk\.3\.ffn_down\.weight$":
 * llama-quantize runs std::regex_search, so an unanchored name also matches
 * longer names ("output.weight" is inside "blk.0.attn_output.weight"). */
static void llama_anchor(char *buf, size_t n, const char *name) {
    size_t k = 0;
    if (k + 1 < n) buf[k++] = '^';
    for (const char *c = name; *c && k + 3 < n; c++) {
        if (*c == '.') buf[k++] = '\\';
        buf[k++] = *c;
    }
    if (k + 1 < n) buf[k++] = '$';
    buf[k < n ? k : n - 1] = '\0';
}

static void llama_line(StrBuf *b, const char *site, const char *type) {
    char re[128];
    llama_anchor(re, sizeof re, site);
    strbuf_printf(b, "%s=%s\n", re, type);
}

/* No comment or header line: llama-quantize reads the file as whitespace-
 * separated NAME=TYPE tokens (parse_tensor_type_file) and rejects any token
 * without '=', so a '#' line stops it. */
static Status export_llamacpp(const PlanModel *m, const PlanResolved *r, StrBuf *b, ExportReport *rep) {
    char site[96];
    SiteMark sm = {0};
    snprintf(site, sizeof site, "token_embd.weight");
    const char *ty = llama_type(&r->embed.e, m->dim, site, rep, &sm);
    llama_line(b, site, ty);
    site_done(rep, &sm);
    for (int64_t l = 0; l < r->n_layers; l++)
        for (int pj = 0; pj < PLAN_NPROJ; pj++) {
            const PlanSiteEntry *se = &r->lin[l * PLAN_NPROJ + pj];
            sm = (SiteMark){0};
            snprintf(site, sizeof site, "blk.%" PRId64 ".%s.weight", l, LLAMA_T[pj]);
            ty = llama_type(&se->e, se->n_in, site, rep, &sm);
            note_act_smooth(rep, &sm, &se->e, site, "ggml picks the activation format of each weight type");
            llama_line(b, site, ty);
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
        llama_line(b, site, ty);
        site_done(rep, &sm);
    }
    return ST_OK;
}

/* === GPTQModel === */

typedef struct GmCfg {
    int quant;               /* 0: skipped ("-:") */
    int bits;
    int64_t group_size;      /* -1: per channel */
    int desc_act, static_groups, sym;
    double damp;
} GmCfg;

static int gm_eq(const GmCfg *a, const GmCfg *b) {
    if (a->quant != b->quant) return 0;
    if (!a->quant) return 1;
    return a->bits == b->bits && a->group_size == b->group_size && a->desc_act == b->desc_act &&
           a->static_groups == b->static_groups && a->sym == b->sym && a->damp == b->damp;
}

/* Group sizes some GPTQModel GPTQ kernel loads (GroupedQuantLinear._validate:
 * SUPPORTS_GROUP_SIZE of the torch / triton kernels, the widest; exllama,
 * marlin and machete take fewer), or the whole row (group_size == in_features). */
static int gm_group_ok(int64_t g, int64_t n_in) {
    static const int64_t OK[] = {-1, 16, 32, 64, 128, 256, 512, 1024};
    for (size_t i = 0; i < sizeof OK / sizeof OK[0]; i++)
        if (g == OK[i]) return 1;
    return g == n_in;
}

static int64_t gm_nearest_group(int64_t g, int64_t n_in) {
    static const int64_t OK[] = {16, 32, 64, 128, 256, 512, 1024};
    int64_t best = -1;
    for (size_t i = 0; i < sizeof OK / sizeof OK[0]; i++)
        if (n_in % OK[i] == 0 && (best < 0 || llabs(OK[i] - g) < llabs(best - g))) best = OK[i];
    return best;
}

static GmCfg gm_cfg(const PlanEntry *e, int64_t n_in, const char *site, ExportReport *rep, SiteMark *sm) {
    GmCfg c = {0};
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    char d[64];
    entry_desc(e, d, sizeof d);
    if (t->family == QFAM_GGML) {
        note(rep, sm, EXPORT_DROPPED, site, "%s is a ggml block format, not expressible in GPTQModel: module skipped", d);
        return c;
    }
    if (!t->needs_scale && e->w.fmt != QF_AQLM) return c; /* 16/32-bit: left unquantized */
    if (!t->is_int) {
        note(rep, sm, EXPORT_DROPPED, site, "%s not expressible in GPTQModel (int weights only): module skipped", d);
        return c;
    }
    c.quant = 1;
    c.bits = t->bits; /* 2..8; 5 and 6 need the planar gptq_p format */
    c.sym = e->w.sym;
    c.group_size = -1;
    if (e->w.dim == GROUP_OC) c.group_size = e->w.group ? e->w.group : -1;
    else
        note(rep, sm, EXPORT_DROPPED, site, "%s: no GPTQModel layout has %s scales (groups run along the input "
             "dimension only): per channel written", d, e->w.dim == GROUP_IC ? "per-IC" : "per-tensor");
    if (!gm_group_ok(c.group_size, n_in)) {
        int64_t g = gm_nearest_group(c.group_size, n_in);
        note(rep, sm, EXPORT_DROPPED, site, "%s: no GPTQModel kernel takes group size %" PRId64 " (torch/triton: -1 "
             "16 32 64 128 256 512 1024 or in_features): %" PRId64 " written", d, c.group_size, g);
        c.group_size = g;
    }
    int gptq = e->method == QM_GPTQ || (e->method == QM_ADADIM && e->adadim_base == QM_GPTQ);
    c.desc_act = gptq && e->gptq.act_order;
    /* qscope's act-order fits the group scales up front in the original
     * column order (gptq.h): GPTQModel's static_groups. Without it, with
     * desc_act, GPTQModel would fit groups in the permuted order. */
    c.static_groups = gptq && c.group_size > 0 && (e->gptq.act_order || e->gptq.static_groups);
    c.damp = e->gptq.damp;
    if (e->method == QM_RTN) note(rep, sm, EXPORT_APPROX, site, "method rtn: GPTQModel always runs GPTQ");
    if (e->method == QM_ADADIM)
        note(rep, sm, EXPORT_APPROX, site, "AdaDim's per-IC choice not expressible: GPTQ per OC");
    note_act_smooth(rep, sm, e, site, "GPTQModel is weight-only");
    return c;
}

/* Every key the GPTQ processor reads from a dynamic override
 * (clone_gptq_config_for_module): a missing key falls back to the base
 * config, so each override states all of them. act_group_aware is false:
 * GPTQConfig turns it on by default for method gptq, and qscope has no
 * group-aware reordering (with desc_act it must be false anyway). */
static cJSON *gm_json(const GmCfg *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !c->quant) return o;
    cJSON_AddNumberToObject(o, "bits", c->bits);
    cJSON_AddNumberToObject(o, "group_size", (double)c->group_size);
    cJSON_AddBoolToObject(o, "desc_act", c->desc_act);
    cJSON_AddBoolToObject(o, "act_group_aware", 0);
    cJSON_AddBoolToObject(o, "static_groups", c->static_groups);
    cJSON_AddBoolToObject(o, "sym", c->sym);
    cJSON_AddNumberToObject(o, "damp_percent", c->damp);
    return o;
}

static int gm_add_dyn(cJSON *dyn, const char *regex, const GmCfg *c) {
    char key[160];
    snprintf(key, sizeof key, "%s:%s", c->quant ? "+" : "-", regex);
    cJSON *v = gm_json(c);
    return v && cJSON_AddItemToObject(dyn, key, v);
}

static Status export_gptqmodel(const PlanModel *m, const PlanResolved *r, StrBuf *b, ExportReport *rep, Err *err) {
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
            const PlanSiteEntry *se = &r->lin[l * PLAN_NPROJ + pj];
            snprintf(site, sizeof site, "model.layers.%" PRId64 ".%s", l, HF_T[pj]);
            cfg[l * PLAN_NPROJ + pj] = gm_cfg(&se->e, se->n_in, site, rep, &sm);
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
    /* Embedding and head. */
    SiteMark sm = {0};
    const QFormatTraits *te = qformat_traits(r->embed.e.w.fmt);
    if (te->needs_scale || r->embed.e.w.fmt == QF_AQLM)
        note(rep, &sm, EXPORT_DROPPED, "model.embed_tokens", "GPTQModel does not quantize the embedding: kept 16-bit");
    site_done(rep, &sm);
    sm = (SiteMark){0};
    GmCfg head = {0};
    if (!m->tied_embeddings) head = gm_cfg(&r->output.e, m->dim, "lm_head", rep, &sm);
    else if (qformat_traits(r->output.e.w.fmt)->needs_scale)
        note(rep, &sm, EXPORT_DROPPED, "lm_head", "tied head is the embedding: not quantized");
    site_done(rep, &sm);
    /* 5- and 6-bit GPTQ exists only in the planar gptq_p checkpoint format
     * (QuantizeConfig.__post_init__ switches gptq to it; said here outright). */
    int planar = base.bits == 5 || base.bits == 6 || (head.quant && (head.bits == 5 || head.bits == 6));
    for (int64_t i = 0; i < n; i++) planar |= cfg[i].quant && (cfg[i].bits == 5 || cfg[i].bits == 6);
    cJSON_AddStringToObject(root, "method", "gptq");
    cJSON_AddStringToObject(root, "format", planar ? "gptq_p" : "gptq");
    cJSON_AddNumberToObject(root, "bits", base.bits);
    cJSON_AddNumberToObject(root, "group_size", (double)base.group_size);
    cJSON_AddBoolToObject(root, "desc_act", base.desc_act);
    cJSON_AddBoolToObject(root, "act_group_aware", 0);
    cJSON_AddBoolToObject(root, "static_groups", base.static_groups);
    cJSON_AddBoolToObject(root, "sym", base.sym);
    cJSON_AddNumberToObject(root, "damp_percent", base.damp);
    cJSON_AddBoolToObject(root, "true_sequential", 1);
    cJSON_AddBoolToObject(root, "lm_head", head.quant);
    /* Dynamic: GPTQModel moves every "-:" key ahead of the "+:" ones and takes
     * the first whose pattern matches (pcre match, anchored at the start);
     * the patterns here never overlap, so the order does not matter. */
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
    strbuf_printf(b, "%s\n", t);
    cJSON_free(t);
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
    if (e->w.fmt == QF_AQLM || e->w.fmt == QF_FP8_E5M2 || t->family == QFAM_GGML) {
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
    /* llm-compressor's GPTQ takes every group scale from the observer before
     * the column loop (gptq_quantize.py quantize_weight: static groups);
     * qscope fits a group on the error-updated weights unless static_groups
     * or act_order is set. */
    if (is_gptq && e->w.dim == GROUP_OC && e->w.group > 0 && !e->gptq.act_order && !e->gptq.static_groups)
        note(rep, sm, EXPORT_APPROX, site, "%s: llm-compressor fits group scales before GPTQ (static); qscope fits "
             "each on the error-updated weights (set static_groups to match)", d);
    int n = snprintf(out, cap,
                     "          weights:\n            num_bits: %d\n            type: %s\n"
                     "            symmetric: %s\n            strategy: %s\n%s            dynamic: false\n",
                     t->bits, t->is_int ? "int" : "float", e->w.sym || !t->is_int ? "true" : "false", strategy, gs);
    if (e->act != ACT_NONE && n > 0 && (size_t)n < cap) {
        if (e->act == ACT_FP8_E5M2)
            note(rep, sm, EXPORT_APPROX, site, "fp8-e5m2 activations: compressed-tensors fp8 is e4m3");
        if (e->act_skip_first)
            note(rep, sm, EXPORT_APPROX, site, "activation range without token 0 not expressible");
        int token = e->act_gran == ACT_PER_TOKEN, dyn = e->act_scale == ACT_DYNAMIC;
        if (token && !dyn) {
            /* QuantizationArgs.validate_model_after: "Cannot perform static
             * token quantization, please use `dynamic=True`". */
            note(rep, sm, EXPORT_DROPPED, site, "static per-token activation scales: compressed-tensors has none "
                 "(static token quantization is refused): dynamic per-token written");
            dyn = 1;
        }
        /* vLLM's compressed-tensors loader (compressed_tensors.py,
         * _get_scheme_from_parts) runs int8 W8A8 only as static per-tensor or
         * dynamic per-token activations with symmetric per-tensor/per-channel
         * int8 weights; fp8 activations need fp8 per-tensor/channel weights. */
        int w_ok = e->w.sym && (e->w.dim == GROUP_TENSOR || (e->w.dim == GROUP_OC && e->w.group == 0));
        if (e->act == ACT_INT8) {
            if (!token && dyn)
                note(rep, sm, EXPORT_UNSERVABLE, site, "int8 activations with one dynamic scale per tensor: vLLM "
                     "has no W8A8 kernel for it (static per-tensor or dynamic per-token only)");
            if (t->bits != 8 || !t->is_int || !w_ok)
                note(rep, sm, EXPORT_UNSERVABLE, site, "%s weights with int8 activations: vLLM's W8A8 kernels take "
                     "int8 symmetric per-tensor or per-channel weights only", d);
        } else if (!t->is_fp8 || !w_ok) {
            note(rep, sm, EXPORT_UNSERVABLE, site, "%s weights with fp8 activations: vLLM's fp8 W8A8 takes fp8 "
                 "symmetric per-tensor or per-channel weights only", d);
        }
        snprintf(out + n, cap - (size_t)n,
                 "          input_activations:\n            num_bits: 8\n            type: %s\n"
                 "            symmetric: true\n            strategy: %s\n            dynamic: %s\n",
                 e->act == ACT_INT8 ? "int" : "float", token ? "token" : "tensor", dyn ? "true" : "false");
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

static void yaml_targets(StrBuf *b, const char *key, int indent, char **list, int64_t n) {
    strbuf_printf(b, "%*s%s: [", indent, "", key);
    for (int64_t i = 0; i < n; i++) strbuf_printf(b, "%s'%s'", i ? ", " : "", list[i]);
    strbuf_printf(b, "]\n");
}

/* The HF module name of site i (hi: the output head). */
static void lc_site_name(char *nm, size_t cap, int64_t i, int64_t hi) {
    if (i == hi) snprintf(nm, cap, "lm_head");
    else snprintf(nm, cap, "model.layers.%" PRId64 ".%s", i / PLAN_NPROJ, HF_T[i % PLAN_NPROJ]);
}

/* The GPTQModifier of a recipe whose quantized sites (quant[0..n), hi the
 * head) include GPTQ ones: its damping, the one actorder it can hold, and a
 * note on each site where the recipe cannot give what the plan asked. */
static void lc_gptq_modifier(const PlanResolved *r, const int *quant, int64_t n, int64_t hi, SiteMark *sms, StrBuf *b,
                             ExportReport *rep) {
    for (int64_t i = 0; i < n; i++)
        if (quant[i]) {
            const PlanEntry *e = i == hi ? &r->output.e : &r->lin[i].e;
            if (e->method == QM_RTN) {
                char nm[96];
                lc_site_name(nm, sizeof nm, i, hi);
                note(rep, &sms[i], EXPORT_APPROX, nm, "method rtn under a GPTQModifier: GPTQ runs on it too");
            }
        }
    double damp = 0.01;
    for (int64_t i = 0; i < n - 1; i++)
        if (quant[i] && r->lin[i].e.method == QM_GPTQ) {
            damp = r->lin[i].e.gptq.damp;
            break;
        }
    /* GPTQModifier.actorder defaults to "static" and a scheme without
     * actorder takes the modifier's (resolve_quantization_config), so it
     * is written out; a scheme-level value that differs from the
     * modifier's is an error there, so there is one value per recipe. */
    int64_t ao_on = 0, ao_off = 0;
    for (int64_t i = 0; i < n; i++) {
        const PlanEntry *e = i == hi ? &r->output.e : &r->lin[i].e;
        if (!quant[i] || !(e->method == QM_GPTQ || (e->method == QM_ADADIM && e->adadim_base == QM_GPTQ)))
            continue;
        if (e->gptq.act_order) ao_on++;
        else ao_off++;
    }
    int ao = ao_on > ao_off;
    for (int64_t i = 0; i < n; i++) {
        const PlanEntry *e = i == hi ? &r->output.e : &r->lin[i].e;
        if (!quant[i] || !(e->method == QM_GPTQ || (e->method == QM_ADADIM && e->adadim_base == QM_GPTQ)) ||
            !e->gptq.act_order == !ao)
            continue;
        char nm[96];
        lc_site_name(nm, sizeof nm, i, hi);
        note(rep, &sms[i], EXPORT_APPROX, nm, "act_order %s: one actorder per GPTQModifier (%s written)",
             e->gptq.act_order ? "on" : "off", ao ? "static" : "null");
    }
    strbuf_printf(b, "    GPTQModifier:\n      dampening_frac: %g\n      actorder: %s\n", damp,
               ao ? "static" : "null");
}

static Status export_llmcompressor(const Plan *p, const PlanModel *m, const PlanResolved *r, StrBuf *b,
                                   ExportReport *rep, Err *err) {
    enum { SIG = 1024 };
    int64_t n = r->n_layers * PLAN_NPROJ + 1; /* + lm_head */
    char *sig = core_calloc((size_t)n, SIG);
    int *quant = core_calloc((size_t)n, sizeof *quant);
    char **targets = core_calloc((size_t)n, sizeof *targets), **ignore = core_calloc((size_t)n + 1, sizeof *ignore);
    /* (n + 1): sites' marks, counted at the end since recipe-wide choices
     * (actorder) add notes after the first pass; [n] is the embedding */
    SiteMark *sms = core_calloc((size_t)n + 1, sizeof *sms);
    int64_t n_ignore = 0;
    Status st = ST_OK;
    if (!sig || !quant || !targets || !ignore || !sms) {
        st = err_set(err, ST_ERR_NOMEM, "export");
        goto fail;
    }
    int gptq = 0, smooth = 0;
    float alpha = 0;
    char site[96];
    for (int64_t l = 0; l < r->n_layers; l++)
        for (int pj = 0; pj < PLAN_NPROJ; pj++) {
            int64_t i = l * PLAN_NPROJ + pj;
            snprintf(site, sizeof site, "model.layers.%" PRId64 ".%s", l, HF_T[pj]);
            quant[i] = lc_scheme(&r->lin[i].e, site, sig + i * SIG, SIG, &gptq, &smooth, &alpha, rep, &sms[i]);
        }
    if (qformat_traits(r->embed.e.w.fmt)->needs_scale || r->embed.e.w.fmt == QF_AQLM)
        note(rep, &sms[n], EXPORT_DROPPED, "model.embed_tokens", "the embedding is not a Linear: not quantized");
    int64_t hi = n - 1;
    if (!m->tied_embeddings)
        quant[hi] = lc_scheme(&r->output.e, "lm_head", sig + hi * SIG, SIG, &gptq, &smooth, &alpha, rep, &sms[hi]);
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
    strbuf_printf(b, "# qscope plan '%s' as an llm-compressor recipe (see the export report for what is approximate)\n",
               p->name);
    strbuf_printf(b, "quant_stage:\n  quant_modifiers:\n");
    if (smooth) strbuf_printf(b, "    SmoothQuantModifier:\n      smoothing_strength: %g\n", (double)alpha);
    if (gptq) {
        lc_gptq_modifier(r, quant, n, hi, sms, b, rep);
    } else {
        strbuf_printf(b, "    QuantizationModifier:\n");
    }
    yaml_targets(b, "ignore", 6, ignore, n_ignore);
    strbuf_printf(b, "      config_groups:\n");
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
        strbuf_printf(b, "        group_%" PRId64 ":\n", group++);
        yaml_targets(b, "targets", 10, targets, nt);
        strbuf_printf(b, "%s", scheme);
        for (int64_t k = 0; k < nt; k++) {
            free(targets[k]);
            targets[k] = NULL;
        }
    }
    if (group == 0) strbuf_printf(b, "        {}\n");
    for (int64_t i = 0; i <= n; i++) site_done(rep, &sms[i]);
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
    free(sms);
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
    StrBuf b = {0};
    if (t == EXPORT_LLAMACPP) st = export_llamacpp(m, &r, &b, rep);
    else if (t == EXPORT_GPTQMODEL) st = export_gptqmodel(m, &r, &b, rep, err);
    else st = export_llmcompressor(p, m, &r, &b, rep, err);
    plan_resolved_done(&r);
    *out = strbuf_take(&b);
    if (st) {
        free(*out);
        *out = NULL;
        return st;
    }
    return *out ? ST_OK : err_set(err, ST_ERR_NOMEM, "export");
}

/* === llama.cpp import === */

static const struct {
    const char *name;
    QFormat fmt;
    int sym;
    int64_t group;
} LLAMA_IMPORT[] = {
    /* the ggml block types are plan formats (quant/format.h): an imported
     * file evaluates as llama-quantize would write it */
    {"f32", QF_F32, 1, 0},   {"f16", QF_F16, 1, 0},   {"bf16", QF_BF16, 1, 0}, {"q8_0", QF_Q8_0, 1, 0},
    {"q4_0", QF_Q4_0, 1, 0}, {"q4_1", QF_Q4_1, 1, 0}, {"q4_k", QF_Q4_K, 1, 0}, {"q5_0", QF_Q5_0, 1, 0},
    {"q5_1", QF_Q5_1, 1, 0}, {"q5_k", QF_Q5_K, 1, 0}, {"q6_k", QF_Q6_K, 1, 0}, {"q3_k", QF_Q3_K, 1, 0},
    {"q2_k", QF_Q2_K, 1, 0},
};

/* A literal tensor name (regex anchors and "\." escapes removed) as a plan
 * pattern ("3.down", "*.q", "embed", "output"); 0 if it is not one. An
 * unanchored name stands for every tensor containing it, as in
 * std::regex_search: "attn_q" is every layer's, while "output" would also
 * be every attn_output, so it is refused (*why says so). */
static int llama_literal_pattern(const char *name, char *pat, size_t cap, const char **why) {
    char nm[128];
    size_t k = 0;
    int anchored_start = name[0] == '^', anchored_end = 0;
    *why = NULL;
    for (const char *c = name + anchored_start; *c && k + 1 < sizeof nm; c++) {
        if (c[0] == '\\' && c[1] == '.') {
            nm[k++] = '.';
            c++;
        } else if (c[0] == '$' && c[1] == '\0') {
            anchored_end = 1;
        } else if (strchr("\\^$()[]{}*+?|", *c)) {
            *why = "a regular expression: give --model so it is matched against the model's tensor names";
            return 0;
        } else {
            nm[k++] = *c;
        }
    }
    nm[k] = '\0';
    size_t n = strlen(nm);
    int full = anchored_start && anchored_end;
    if (n > 7 && !strcmp(nm + n - 7, ".weight")) nm[n - 7] = '\0';
    else if (full) return 0; /* "^blk\.0\.attn_q$" matches no tensor */
    if (!strcmp(nm, "token_embd")) return snprintf(pat, cap, "embed"), 1;
    if (!strcmp(nm, "output")) {
        if (!full) {
            *why = "unanchored 'output' also matches every blk.N.attn_output.weight in llama-quantize: write "
                   "^output\\.weight$ or give --model";
            return 0;
        }
        return snprintf(pat, cap, "output"), 1;
    }
    const char *t = nm;
    char layer[24] = "*";
    if (!strncmp(nm, "blk.", 4)) {
        const char *c = nm + 4;
        size_t d = 0;
        while (c[d] >= '0' && c[d] <= '9') d++;
        if (d == 0 || d > 9 || c[d] != '.') return 0;
        snprintf(layer, sizeof layer, "%.*s", (int)d, c);
        t = c + d + 1;
    } else if (anchored_start) {
        return 0; /* "^attn_q" matches nothing */
    }
    for (int pj = 0; pj < PLAN_NPROJ; pj++)
        if (!strcmp(t, LLAMA_T[pj])) return snprintf(pat, cap, "%s.%s", layer, plan_proj_name(pj)), 1;
    return 0;
}

/* std::regex (ECMAScript) pattern -> POSIX ERE for regcomp: \d, \w, \s become
 * bracket expressions; other escapes of letters have no ERE spelling. */
static int llama_regex_to_ere(const char *re, char *out, size_t cap) {
    size_t k = 0;
    for (const char *c = re; *c; c++) {
        const char *add = NULL;
        char one[3] = {0};
        if (c[0] == '\\' && c[1]) {
            c++;
            if (*c == 'd') add = "[0-9]";
            else if (*c == 'w') add = "[a-z0-9_]";
            else if (*c == 's') add = "[[:space:]]";
            else if ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')) return 0;
            else {
                one[0] = '\\';
                one[1] = *c;
                add = one;
            }
        } else {
            one[0] = *c;
            add = one;
        }
        size_t n = strlen(add);
        if (k + n + 1 > cap) return 0;
        memcpy(out + k, add, n);
        k += n;
    }
    out[k] = '\0';
    return 1;
}

typedef struct ImportEntry {
    char name[256];          /* lowercased, as llama-quantize stores it */
    int type;                /* index in LLAMA_IMPORT */
    int64_t line;
} ImportEntry;

/* Sets rule/entry fields of a plan entry from an imported type. */
static void import_entry(PlanEntry *e, int ti) {
    plan_entry_default(e);
    e->w.fmt = LLAMA_IMPORT[ti].fmt;
    e->w.sym = LLAMA_IMPORT[ti].sym;
    e->w.dim = GROUP_OC;
    e->w.group = LLAMA_IMPORT[ti].group;
}

/* With the model's tensor names: each tensor takes the first entry whose
 * regex std::regex_search would match (llama_tensor_get_type's loop). */
static Status import_by_regex(const ImportEntry *ent, int64_t n, const char *where, const PlanModel *m, Plan *out,
                              Err *err) {
    regex_t *rx = core_calloc((size_t)n, sizeof *rx);
    char *used = core_calloc((size_t)n, 1);
    int64_t n_rx = 0;
    Status st = ST_OK;
    if (!rx || !used) {
        st = err_set(err, ST_ERR_NOMEM, "%s", where);
        goto fail;
    }
    for (; n_rx < n; n_rx++) {
        char ere[512];
        if (!llama_regex_to_ere(ent[n_rx].name, ere, sizeof ere) || regcomp(&rx[n_rx], ere, REG_EXTENDED | REG_NOSUB)) {
            st = err_set(err, ST_ERR_FORMAT, "%s: line %" PRId64 ": '%.64s' is not a regular expression qscope can "
                         "match (std::regex ECMAScript; \\d \\w \\s and POSIX ERE are understood)", where,
                         ent[n_rx].line, ent[n_rx].name);
            goto fail;
        }
    }
    int64_t n_sites = m->n_layers * PLAN_NPROJ + 2;
    for (int64_t s = 0; s < n_sites; s++) {
        char nm[96];
        if (s == n_sites - 2) snprintf(nm, sizeof nm, "token_embd.weight");
        else if (s == n_sites - 1) snprintf(nm, sizeof nm, "output.weight");
        else snprintf(nm, sizeof nm, "blk.%" PRId64 ".%s.weight", s / PLAN_NPROJ, LLAMA_T[s % PLAN_NPROJ]);
        int64_t hit = -1;
        for (int64_t i = 0; i < n; i++)
            if (regexec(&rx[i], nm, 0, NULL, 0) == 0) {
                if (hit < 0) hit = i;
                used[i] = 1;
            }
        if (hit < 0) continue;
        PlanEntry e;
        import_entry(&e, ent[hit].type);
        /* llama-quantize falls back where rows are not whole blocks */
        int64_t n_out, n_in = m->dim;
        if (s < n_sites - 2) plan_proj_shape(m, (int)(s % PLAN_NPROJ), &n_out, &n_in);
        QFormat fit = preset_ggml_fit(e.w.fmt, n_in);
        if (fit != e.w.fmt) {
            if ((st = plan_add_note(out, err, "%s: %s -> %s (%lld is not a multiple of its block: llama.cpp's "
                                    "fallback)", nm, qformat_traits(e.w.fmt)->name, qformat_traits(fit)->name,
                                    (long long)n_in)))
                goto fail;
            e.w.fmt = fit;
        }
        if (s == n_sites - 2) out->embed = e;
        else if (s == n_sites - 1) out->output = e;
        else {
            char pat[48];
            snprintf(pat, sizeof pat, "%" PRId64 ".%s", s / PLAN_NPROJ, plan_proj_name((int)(s % PLAN_NPROJ)));
            if ((st = plan_add_rule(out, pat, PF_ALL, &e, err))) {
                err_wrap(err, "%s: line %" PRId64, where, ent[hit].line);
                goto fail;
            }
        }
    }
    for (int64_t i = 0; i < n; i++)
        if (!used[i]) {
            st = err_set(err, ST_ERR_FORMAT, "%s: line %" PRId64 ": '%.64s' matches none of the model's tensors "
                         "(token_embd.weight, output.weight, blk.N.attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|"
                         "ffn_down.weight)", where, ent[i].line, ent[i].name);
            break;
        }
fail:
    for (int64_t i = 0; i < n_rx; i++) regfree(&rx[i]);
    free(rx);
    free(used);
    return st;
}

/* Without a model: literal names only. llama-quantize takes the first
 * matching line and a plan's later rule overrides an earlier one, so the
 * rules are added in reverse file order. */
static Status import_literal(const ImportEntry *ent, int64_t n, const char *where, Plan *out, Err *err) {
    for (int64_t i = n - 1; i >= 0; i--) {
        char pat[64];
        const char *why;
        if (!llama_literal_pattern(ent[i].name, pat, sizeof pat, &why))
            return err_set(err, ST_ERR_FORMAT, "%s: line %" PRId64 ": '%.64s' is %s", where, ent[i].line,
                           ent[i].name, why ? why : "not a tensor qscope plans (token_embd, output, "
                           "[blk.N.]attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down[.weight])");
        PlanEntry e;
        import_entry(&e, ent[i].type);
        Status st;
        if (!strcmp(pat, "embed")) out->embed = e;
        else if (!strcmp(pat, "output")) out->output = e;
        else if ((st = plan_add_rule(out, pat, PF_ALL, &e, err)))
            return err_wrap(err, "%s: line %" PRId64, where, ent[i].line);
    }
    return ST_OK;
}

Status plan_import_llamacpp(const char *text, size_t len, const char *where, const PlanModel *m, Plan *out,
                            Err *err) {
    plan_init(out);
    if (!where) where = "tensor-type file";
    snprintf(out->name, sizeof out->name, "llamacpp-import");
    size_t i = 0;
    int64_t line = 1, n = 0, cap = 0;
    ImportEntry *ent = NULL;
    Status st = ST_OK;
    while (i < len) {
        char c = text[i];
        if (c == '\n') {
            line++;
            i++;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
            i++;
            continue;
        }
        /* '#' lines: llama-quantize rejects them ("malformed tensor type"),
         * but files written by older qscope had one; skip and go on. */
        if (c == '#') {
            while (i < len && text[i] != '\n') i++;
            continue;
        }
        size_t s = i;
        while (i < len && !strchr(" \t\r\n\v\f", text[i])) i++;
        if (i - s >= sizeof ent->name) {
            st = err_set(err, ST_ERR_FORMAT, "%s: line %" PRId64 ": entry longer than %zu bytes", where, line,
                         sizeof ent->name - 1);
            goto fail;
        }
        char tok[sizeof ent->name];
        memcpy(tok, text + s, i - s);
        tok[i - s] = '\0';
        for (size_t k = 0; k < i - s; k++)
            if (tok[k] == '\0' || (unsigned char)tok[k] < 0x20) {
                st = err_set(err, ST_ERR_FORMAT, "%s: line %" PRId64 ": control byte in entry", where, line);
                goto fail;
            }
        /* The first '=' separates name and type (parse_tensor_type's strchr). */
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1]) {
            st = err_set(err, ST_ERR_FORMAT, "%s: line %" PRId64 ": expected TENSOR=TYPE, got '%.64s'", where, line,
                         tok);
            goto fail;
        }
        *eq = '\0';
        const char *ty = eq + 1;
        int ti = -1;
        for (size_t k = 0; k < sizeof LLAMA_IMPORT / sizeof LLAMA_IMPORT[0]; k++)
            if (!strcasecmp(ty, LLAMA_IMPORT[k].name)) ti = (int)k;
        if (ti < 0) {
            st = err_set(err, ST_ERR_FORMAT, "%s: line %" PRId64 ": type '%.32s' has no plan equivalent (known: "
                         "f32 f16 bf16 q8_0 q6_k q5_0 q5_1 q5_k q4_0 q4_1 q4_k q3_k q2_k)", where, line, ty);
            goto fail;
        }
        if (n == cap) {
            int64_t nc = cap ? cap * 2 : 32;
            ImportEntry *ne = realloc(ent, (size_t)nc * sizeof *ne);
            if (!ne) {
                st = err_set(err, ST_ERR_NOMEM, "%s", where);
                goto fail;
            }
            ent = ne;
            cap = nc;
        }
        for (char *c2 = tok; *c2; c2++) *c2 = (char)tolower((unsigned char)*c2); /* as llama-quantize does */
        snprintf(ent[n].name, sizeof ent[n].name, "%s", tok);
        ent[n].type = ti;
        ent[n].line = line;
        n++;
    }
    if (n == 0) {
        st = err_set(err, ST_ERR_FORMAT, "%s: no TENSOR=TYPE entries", where);
        goto fail;
    }
    if ((st = m ? import_by_regex(ent, n, where, m, out, err) : import_literal(ent, n, where, out, err))) goto fail;
    if ((st = plan_add_note(out, err, "imported from %s: tensors it does not name keep fp32 here "
                            "(llama-quantize's base type is not in the file)", where)))
        goto fail;
    if (m && (st = plan_validate(out, m, err))) err_wrap(err, "%s", where);
fail:
    free(ent);
    return st;
}
