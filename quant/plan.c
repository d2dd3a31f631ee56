#include "quant/plan.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/strlist.h"
#include "quant/ggml_type.h"
#include "quant/rtn.h"

/* === Names === */

static const char *const METHOD_NAMES[QM_COUNT] = {"rtn", "gptq", "adadim", "aqlm", "imatrix"};
static const char *const GRAN_NAMES[ACT_GRAN_COUNT] = {"tensor", "token"};
static const char *const SCALE_NAMES[ACT_SCALE_COUNT] = {"dynamic", "static"};
static const char *const PROJ_NAMES[PLAN_NPROJ] = {"q", "k", "v", "o", "gate", "up", "down"};

static int name_parse(const char *s, const char *const *names, int n) {
    if (!s) return -1;
    for (int i = 0; i < n; i++)
        if (!strcasecmp(s, names[i])) return i;
    return -1;
}

const char *qmethod_name(QMethod m) { return (unsigned)m < QM_COUNT ? METHOD_NAMES[m] : "?"; }
int qmethod_parse(const char *s) { return name_parse(s, METHOD_NAMES, QM_COUNT); }
const char *act_gran_name(ActGran g) { return (unsigned)g < ACT_GRAN_COUNT ? GRAN_NAMES[g] : "?"; }
int act_gran_parse(const char *s) { return name_parse(s, GRAN_NAMES, ACT_GRAN_COUNT); }
const char *act_scale_name(ActScale s) { return (unsigned)s < ACT_SCALE_COUNT ? SCALE_NAMES[s] : "?"; }
int act_scale_parse(const char *s) { return name_parse(s, SCALE_NAMES, ACT_SCALE_COUNT); }
const char *plan_proj_name(int proj) { return proj >= 0 && proj < PLAN_NPROJ ? PROJ_NAMES[proj] : "?"; }

int act_format_parse(const char *s) {
    for (int a = 0; s && a < ACT_COUNT; a++)
        if (!strcasecmp(s, act_format_name((ActFormat)a))) return a;
    int f = qformat_parse(s);
    if (f == QF_INT8) return ACT_INT8;
    if (f == QF_FP8_E4M3) return ACT_FP8_E4M3;
    if (f == QF_FP8_E5M2) return ACT_FP8_E5M2;
    if (s && (!strcasecmp(s, "f32") || !strcasecmp(s, "fp32"))) return ACT_NONE;
    return -1;
}

QFormat act_format_qformat(ActFormat a) {
    switch (a) {
    case ACT_INT8: return QF_INT8;
    case ACT_FP8_E4M3: return QF_FP8_E4M3;
    case ACT_FP8_E5M2: return QF_FP8_E5M2;
    default: return QF_F32;
    }
}

void plan_proj_shape(const PlanModel *m, int proj, int64_t *n_out, int64_t *n_in) {
    int64_t hd = m->head_dim ? m->head_dim : (m->n_heads ? m->dim / m->n_heads : 0);
    switch (proj) {
    case PLAN_Q: *n_out = m->n_heads * hd; *n_in = m->dim; break;
    case PLAN_K:
    case PLAN_V: *n_out = m->n_kv_heads * hd; *n_in = m->dim; break;
    case PLAN_O: *n_out = m->dim; *n_in = m->n_heads * hd; break;
    case PLAN_GATE:
    case PLAN_UP: *n_out = m->hidden_dim; *n_in = m->dim; break;
    default: *n_out = m->dim; *n_in = m->hidden_dim; break;
    }
}

/* === Entries and plans === */

void plan_entry_default(PlanEntry *e) {
    memset(e, 0, sizeof *e);
    e->w = (QParams){QF_F32, 1, GROUP_OC, 0};
    e->method = QM_RTN;
    gptq_opts_default(&e->gptq);
    e->adadim_base = QM_RTN;
    e->aqlm = (AqlmParams){1, 8, 8};
    e->act = ACT_NONE;
    e->act_gran = ACT_PER_TENSOR;
    e->act_scale = ACT_DYNAMIC;
}

void plan_init(Plan *p) {
    memset(p, 0, sizeof *p);
    plan_entry_default(&p->def);
    plan_entry_default(&p->embed);
    plan_entry_default(&p->output);
}

void plan_done(Plan *p) {
    if (!p) return;
    free(p->rules);
    for (int64_t i = 0; i < p->n_notes; i++) free(p->notes[i]);
    free(p->notes);
    plan_init(p);
}

Status plan_copy(Plan *dst, const Plan *src, Err *err) {
    plan_init(dst);
    memcpy(dst->name, src->name, sizeof dst->name);
    dst->def = src->def;
    dst->embed = src->embed;
    dst->output = src->output;
    if (src->n_rules) {
        dst->rules = core_calloc((size_t)src->n_rules, sizeof *dst->rules);
        if (!dst->rules) goto nomem;
        memcpy(dst->rules, src->rules, (size_t)src->n_rules * sizeof *dst->rules);
        dst->n_rules = dst->cap_rules = src->n_rules;
    }
    if (src->n_notes) {
        dst->notes = core_calloc((size_t)src->n_notes, sizeof *dst->notes);
        if (!dst->notes) goto nomem;
        for (int64_t i = 0; i < src->n_notes; i++) {
            dst->notes[i] = core_strdup(src->notes[i]);
            dst->n_notes = i + 1;
            if (!dst->notes[i]) goto nomem;
        }
    }
    return ST_OK;
nomem:
    plan_done(dst);
    return err_set(err, ST_ERR_NOMEM, "plan copy");
}

/* === Patterns === */

#define PAT_MAX_RANGES 32
typedef enum { PAT_LIN, PAT_EMBED, PAT_OUTPUT } PatKind;
typedef struct Pattern {
    PatKind kind;
    int all_layers;
    int n_ranges;
    int64_t lo[PAT_MAX_RANGES], hi[PAT_MAX_RANGES];
    unsigned projs;          /* bit per PLAN_* */
} Pattern;

static const struct { const char *s; unsigned mask; } PROJ_WORDS[] = {
    {"*", 0x7f}, {"q", 1u << PLAN_Q}, {"k", 1u << PLAN_K}, {"v", 1u << PLAN_V}, {"o", 1u << PLAN_O},
    {"gate", 1u << PLAN_GATE}, {"up", 1u << PLAN_UP}, {"down", 1u << PLAN_DOWN},
    {"qkv", (1u << PLAN_Q) | (1u << PLAN_K) | (1u << PLAN_V)}, {"gate_up", (1u << PLAN_GATE) | (1u << PLAN_UP)},
    {"q_proj", 1u << PLAN_Q}, {"k_proj", 1u << PLAN_K}, {"v_proj", 1u << PLAN_V}, {"o_proj", 1u << PLAN_O},
    {"gate_proj", 1u << PLAN_GATE}, {"up_proj", 1u << PLAN_UP}, {"down_proj", 1u << PLAN_DOWN},
    {"attn_q", 1u << PLAN_Q}, {"attn_k", 1u << PLAN_K}, {"attn_v", 1u << PLAN_V}, {"attn_output", 1u << PLAN_O},
    {"ffn_gate", 1u << PLAN_GATE}, {"ffn_up", 1u << PLAN_UP}, {"ffn_down", 1u << PLAN_DOWN},
    {"wq", 1u << PLAN_Q}, {"wk", 1u << PLAN_K}, {"wv", 1u << PLAN_V}, {"wo", 1u << PLAN_O},
    {"w1", 1u << PLAN_GATE}, {"w3", 1u << PLAN_UP}, {"w2", 1u << PLAN_DOWN},
};

static int parse_uint(const char *s, size_t n, int64_t *out) {
    if (n == 0 || n > 9) return 0;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

static Status pattern_parse(const char *s, Pattern *pt, Err *err) {
    memset(pt, 0, sizeof *pt);
    if (!s || !*s) return err_set(err, ST_ERR_ARG, "empty pattern");
    if (strlen(s) >= sizeof(((PlanRule *)0)->pattern))
        return err_set(err, ST_ERR_ARG, "pattern longer than %zu characters", sizeof(((PlanRule *)0)->pattern) - 1);
    if (!strcasecmp(s, "embed") || !strcasecmp(s, "token_embd") || !strcasecmp(s, "embed_tokens")) {
        pt->kind = PAT_EMBED;
        return ST_OK;
    }
    if (!strcasecmp(s, "output") || !strcasecmp(s, "lm_head")) {
        pt->kind = PAT_OUTPUT;
        return ST_OK;
    }
    pt->kind = PAT_LIN;
    if (!strcmp(s, "*")) {
        pt->all_layers = 1;
        pt->projs = 0x7f;
        return ST_OK;
    }
    const char *dot = strchr(s, '.');
    if (!dot || strchr(dot + 1, '.'))
        return err_set(err, ST_ERR_ARG, "expected LAYERS.PROJS (like '*.down' or '1,30-31.o'), 'embed' or 'output'");
    /* layers */
    if (dot == s) return err_set(err, ST_ERR_ARG, "missing layers before '.' (a number, N-M, a list or *)");
    if (dot - s == 1 && s[0] == '*') {
        pt->all_layers = 1;
    } else {
        const char *a = s;
        while (a < dot) {
            const char *e = memchr(a, ',', (size_t)(dot - a));
            if (!e) e = dot;
            const char *dash = memchr(a, '-', (size_t)(e - a));
            int64_t lo, hi;
            if (pt->n_ranges == PAT_MAX_RANGES) return err_set(err, ST_ERR_ARG, "more than %d layer ranges", PAT_MAX_RANGES);
            if (dash) {
                if (!parse_uint(a, (size_t)(dash - a), &lo) || !parse_uint(dash + 1, (size_t)(e - dash - 1), &hi))
                    return err_set(err, ST_ERR_ARG, "bad layer range '%.*s'", (int)(e - a), a);
                if (hi < lo) return err_set(err, ST_ERR_ARG, "layer range %lld-%lld is reversed", (long long)lo, (long long)hi);
            } else {
                if (!parse_uint(a, (size_t)(e - a), &lo))
                    return err_set(err, ST_ERR_ARG, "bad layer '%.*s' (a number, N-M or *)", (int)(e - a), a);
                hi = lo;
            }
            pt->lo[pt->n_ranges] = lo;
            pt->hi[pt->n_ranges] = hi;
            pt->n_ranges++;
            a = e < dot ? e + 1 : dot;
            if (e < dot && a == dot) return err_set(err, ST_ERR_ARG, "trailing ',' in the layer list");
        }
    }
    /* projections */
    const char *a = dot + 1;
    if (!*a) return err_set(err, ST_ERR_ARG, "missing projection after '.'");
    while (*a) {
        const char *e = strchr(a, ',');
        if (!e) e = a + strlen(a);
        size_t n = (size_t)(e - a);
        unsigned mask = 0;
        for (size_t i = 0; i < sizeof PROJ_WORDS / sizeof PROJ_WORDS[0]; i++)
            if (strlen(PROJ_WORDS[i].s) == n && !strncasecmp(a, PROJ_WORDS[i].s, n)) mask = PROJ_WORDS[i].mask;
        if (!mask)
            return err_set(err, ST_ERR_ARG,
                           "unknown projection '%.*s' (q, k, v, o, gate, up, down, qkv, gate_up or *)", (int)n, a);
        pt->projs |= mask;
        a = *e ? e + 1 : e;
        if (*e && !*a) return err_set(err, ST_ERR_ARG, "trailing ',' in the projection list");
    }
    return ST_OK;
}

static int pattern_has_layer(const Pattern *pt, int64_t layer) {
    if (pt->all_layers) return 1;
    for (int i = 0; i < pt->n_ranges; i++)
        if (layer >= pt->lo[i] && layer <= pt->hi[i]) return 1;
    return 0;
}

int plan_pattern_matches(const char *pattern, int64_t layer, int proj) {
    Pattern pt;
    if (pattern_parse(pattern, &pt, NULL) != ST_OK || pt.kind != PAT_LIN) return 0;
    return proj >= 0 && proj < PLAN_NPROJ && (pt.projs >> proj & 1) && pattern_has_layer(&pt, layer);
}

Status plan_add_rule(Plan *p, const char *pattern, unsigned fields, const PlanEntry *e, Err *err) {
    Pattern pt;
    Status st = pattern_parse(pattern, &pt, err);
    if (st) return err_wrap(err, "rule %lld '%s'", (long long)p->n_rules + 1, pattern ? pattern : "");
    if (!fields || fields & ~(unsigned)PF_ALL)
        return err_set(err, ST_ERR_ARG, "rule %lld '%s': field mask 0x%x is empty or unknown",
                       (long long)p->n_rules + 1, pattern, fields);
    if (p->n_rules == p->cap_rules) {
        int64_t cap = p->cap_rules ? 2 * p->cap_rules : 8;
        PlanRule *r = realloc(p->rules, (size_t)cap * sizeof *r);
        if (!r) return err_set(err, ST_ERR_NOMEM, "plan rules");
        p->rules = r;
        p->cap_rules = cap;
    }
    PlanRule *r = &p->rules[p->n_rules++];
    memset(r, 0, sizeof *r);
    snprintf(r->pattern, sizeof r->pattern, "%s", pattern);
    r->fields = fields;
    r->e = *e;
    return ST_OK;
}

Status plan_remove_rule(Plan *p, int64_t i, Err *err) {
    if (i < 0 || i >= p->n_rules)
        return err_set(err, ST_ERR_RANGE, "rule index %lld out of range (plan has %lld rules)", (long long)i,
                       (long long)p->n_rules);
    memmove(&p->rules[i], &p->rules[i + 1], (size_t)(p->n_rules - i - 1) * sizeof *p->rules);
    p->n_rules--;
    return ST_OK;
}

Status plan_add_note(Plan *p, Err *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    Status st = strlist_vaddf(&p->notes, &p->n_notes, fmt, ap);
    va_end(ap);
    return st ? err_set(err, st, "plan notes") : ST_OK;
}

/* === Resolution === */

static void entry_apply(PlanSiteEntry *s, const PlanEntry *e, unsigned fields, int64_t rule) {
    if (fields & PF_FMT) { s->e.w.fmt = e->w.fmt; s->e.w.sym = e->w.sym; s->src[0] = rule; }
    if (fields & PF_GROUP) { s->e.w.dim = e->w.dim; s->e.w.group = e->w.group; s->src[1] = rule; }
    if (fields & PF_METHOD) {
        s->e.method = e->method;
        s->e.gptq = e->gptq;
        s->e.adadim_base = e->adadim_base;
        s->e.aqlm = e->aqlm;
        s->src[2] = rule;
    }
    if (fields & PF_ACT) {
        s->e.act = e->act;
        s->e.act_gran = e->act_gran;
        s->e.act_scale = e->act_scale;
        s->e.act_skip_first = e->act_skip_first;
        s->src[3] = rule;
    }
    if (fields & PF_SMOOTH) { s->e.smooth_alpha = e->smooth_alpha; s->src[4] = rule; }
}

static void site_init(PlanSiteEntry *s, const PlanEntry *e, int64_t n_out, int64_t n_in) {
    s->e = *e;
    for (int k = 0; k < PF_NFIELDS; k++) s->src[k] = -1;
    s->n_out = n_out;
    s->n_in = n_in;
}

void plan_resolved_done(PlanResolved *r) {
    if (!r) return;
    free(r->lin);
    memset(r, 0, sizeof *r);
}

Status plan_resolve(const Plan *p, const PlanModel *m, PlanResolved *out, Err *err) {
    memset(out, 0, sizeof *out);
    if (m->n_layers <= 0 || m->dim <= 0 || m->hidden_dim <= 0 || m->n_heads <= 0 || m->n_kv_heads <= 0 ||
        m->vocab_size <= 0)
        return err_set(err, ST_ERR_ARG, "model shape is incomplete (layers %lld, dim %lld, hidden %lld, heads %lld/%lld)",
                       (long long)m->n_layers, (long long)m->dim, (long long)m->hidden_dim, (long long)m->n_heads,
                       (long long)m->n_kv_heads);
    out->n_layers = m->n_layers;
    out->lin = core_calloc((size_t)m->n_layers * PLAN_NPROJ, sizeof *out->lin);
    if (!out->lin) return err_set(err, ST_ERR_NOMEM, "plan resolution");
    for (int64_t l = 0; l < m->n_layers; l++)
        for (int j = 0; j < PLAN_NPROJ; j++) {
            int64_t no, ni;
            plan_proj_shape(m, j, &no, &ni);
            site_init(&out->lin[l * PLAN_NPROJ + j], &p->def, no, ni);
        }
    site_init(&out->embed, &p->embed, m->vocab_size, m->dim);
    site_init(&out->output, &p->output, m->vocab_size, m->dim);
    Status st = ST_OK;
    for (int64_t i = 0; i < p->n_rules; i++) {
        const PlanRule *r = &p->rules[i];
        Pattern pt;
        st = pattern_parse(r->pattern, &pt, err);
        if (st) { err_wrap(err, "rule %lld '%s'", (long long)i + 1, r->pattern); goto fail; }
        if (pt.kind == PAT_EMBED) { entry_apply(&out->embed, &r->e, r->fields, i); continue; }
        if (pt.kind == PAT_OUTPUT) { entry_apply(&out->output, &r->e, r->fields, i); continue; }
        for (int k = 0; k < pt.n_ranges; k++)
            if (pt.hi[k] >= m->n_layers) {
                int64_t bad = pt.lo[k] > m->n_layers ? pt.lo[k] : m->n_layers;
                st = err_set(err, ST_ERR_ARG, "rule %lld '%s': layer %lld does not exist (model has %lld layers)",
                             (long long)i + 1, r->pattern, (long long)bad, (long long)m->n_layers);
                goto fail;
            }
        for (int64_t l = 0; l < m->n_layers; l++) {
            if (!pattern_has_layer(&pt, l)) continue;
            for (int j = 0; j < PLAN_NPROJ; j++)
                if (pt.projs >> j & 1) entry_apply(&out->lin[l * PLAN_NPROJ + j], &r->e, r->fields, i);
        }
    }
    return ST_OK;
fail:
    plan_resolved_done(out);
    return st;
}

/* === Validation === */

/* "rule 2 '*.down'" or "default entry" for field k of a site. */
static const char *src_label(const Plan *p, const PlanSiteEntry *s, int k, const char *base, char *buf, size_t n) {
    int64_t i = s->src[k];
    if (i < 0) snprintf(buf, n, "%s", base);
    else snprintf(buf, n, "rule %lld '%s'", (long long)i + 1, p->rules[i].pattern);
    return buf;
}

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) { int64_t t = a % b; a = b; b = t; }
    return a;
}

/* site: "down_proj", "the embedding", ... ; base: label of the entry the site starts from. */
static Status site_check(const Plan *p, const PlanSiteEntry *s, const char *site, const char *base, int proj,
                         int is_embed, Err *err) {
    char lb[96];
    const PlanEntry *e = &s->e;
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    if (!t) return err_set(err, ST_ERR_ARG, "%s: unknown weight format %d", src_label(p, s, 0, base, lb, sizeof lb), (int)e->w.fmt);
    if ((unsigned)e->method >= QM_COUNT)
        return err_set(err, ST_ERR_ARG, "%s: unknown method %d", src_label(p, s, 2, base, lb, sizeof lb), (int)e->method);
    if ((e->w.fmt == QF_AQLM) != (e->method == QM_AQLM)) {
        int k = e->w.fmt == QF_AQLM ? 0 : 2;
        return err_set(err, ST_ERR_ARG, "%s: format %s with method %s on %s (aqlm needs format and method aqlm)",
                       src_label(p, s, k, base, lb, sizeof lb), t->name, qmethod_name(e->method), site);
    }
    if (e->w.fmt == QF_AQLM) {
        const AqlmParams *a = &e->aqlm;
        if (a->M < 1 || a->B < 1 || a->B > 16 || a->M * a->B > 32 || a->g < 1 || a->g > 64)
            return err_set(err, ST_ERR_ARG, "%s: aqlm %dx%d g%d is out of range (M >= 1, 1 <= B <= 16, M·B <= 32, 1 <= g <= 64)",
                           src_label(p, s, 2, base, lb, sizeof lb), a->M, a->B, a->g);
        if (s->n_in % a->g)
            return err_set(err, ST_ERR_ARG, "%s: aqlm group %d does not divide %s's input dim %lld",
                           src_label(p, s, 2, base, lb, sizeof lb), a->g, site, (long long)s->n_in);
    }
    if (t->family == QFAM_GGML) {
        int64_t blk = ggml_type_traits((uint32_t)t->ggml_type)->block_size;
        if (s->n_in % blk)
            return err_set(err, ST_ERR_ARG, "%s: %s needs rows of a multiple of %lld: %s's input dim is %lld",
                           src_label(p, s, 0, base, lb, sizeof lb), t->name, (long long)blk, site, (long long)s->n_in);
        GgmlGrid grid;
        int w_ok = e->method == QM_IMATRIX && ggml_type_traits((uint32_t)t->ggml_type)->quant_w;
        int g_ok = e->method == QM_GPTQ && ggml_type_grid((uint32_t)t->ggml_type, &grid) == 0;
        if (e->method != QM_RTN && !w_ok && !g_ok)
            return err_set(err, ST_ERR_UNSUPPORTED, "%s: method %s on %s is not implemented (rtn, gptq%s)",
                           src_label(p, s, 2, base, lb, sizeof lb), qmethod_name(e->method), t->name,
                           ggml_type_traits((uint32_t)t->ggml_type)->quant_w ? " or imatrix" : "");
        if (is_embed && e->method == QM_IMATRIX)
            return err_set(err, ST_ERR_ARG, "%s: imatrix needs calibration inputs, which the embedding lookup has none of",
                           src_label(p, s, 2, base, lb, sizeof lb));
    } else if (e->method == QM_IMATRIX) {
        return err_set(err, ST_ERR_ARG, "%s: method imatrix is ggml's weighted rounding: it needs a ggml format, not %s",
                       src_label(p, s, 2, base, lb, sizeof lb), t->name);
    }
    if (t->needs_scale) {
        if ((unsigned)e->w.dim >= GROUP_COUNT)
            return err_set(err, ST_ERR_ARG, "%s: unknown grouping %d", src_label(p, s, 1, base, lb, sizeof lb), (int)e->w.dim);
        if (e->w.group < 0)
            return err_set(err, ST_ERR_ARG, "%s: negative group size %lld", src_label(p, s, 1, base, lb, sizeof lb),
                           (long long)e->w.group);
        int64_t g = e->w.group;
        if (e->method == QM_ADADIM) {
            if (g && (s->n_in % g || s->n_out % g))
                return err_set(err, ST_ERR_ARG, "%s: group %lld must divide both of %s's dims for adadim (out %lld, in %lld)",
                               src_label(p, s, 1, base, lb, sizeof lb), (long long)g, site, (long long)s->n_out,
                               (long long)s->n_in);
        } else if (e->w.dim == GROUP_OC && g && s->n_in % g) {
            return err_set(err, ST_ERR_ARG, "%s: group %lld does not divide %s's input dim %lld",
                           src_label(p, s, 1, base, lb, sizeof lb), (long long)g, site, (long long)s->n_in);
        } else if (e->w.dim == GROUP_IC && g && s->n_out % g) {
            return err_set(err, ST_ERR_ARG, "%s: group %lld does not divide %s's output dim %lld",
                           src_label(p, s, 1, base, lb, sizeof lb), (long long)g, site, (long long)s->n_out);
        }
        int uses_gptq = e->method == QM_GPTQ || (e->method == QM_ADADIM && e->adadim_base == QM_GPTQ);
        if (e->method == QM_ADADIM && e->adadim_base != QM_RTN && e->adadim_base != QM_GPTQ)
            return err_set(err, ST_ERR_ARG, "%s: adadim's base method must be rtn or gptq, not %s",
                           src_label(p, s, 2, base, lb, sizeof lb), qmethod_name(e->adadim_base));
        if (uses_gptq && (!(e->gptq.damp >= 0 && e->gptq.damp < 1) || e->gptq.block < 1))
            return err_set(err, ST_ERR_ARG, "%s: gptq damp %g must be in [0, 1) and block %lld >= 1",
                           src_label(p, s, 2, base, lb, sizeof lb), e->gptq.damp, (long long)e->gptq.block);
        if (is_embed && (e->method == QM_GPTQ || e->method == QM_ADADIM))
            return err_set(err, ST_ERR_ARG, "%s: %s needs calibration inputs, which the embedding lookup has none of",
                           src_label(p, s, 2, base, lb, sizeof lb), qmethod_name(e->method));
    }
    if ((unsigned)e->act >= ACT_COUNT || (unsigned)e->act_gran >= ACT_GRAN_COUNT || (unsigned)e->act_scale >= ACT_SCALE_COUNT)
        return err_set(err, ST_ERR_ARG, "%s: unknown activation setting (format %d, granularity %d, scale %d)",
                       src_label(p, s, 3, base, lb, sizeof lb), (int)e->act, (int)e->act_gran, (int)e->act_scale);
    if (is_embed && e->act != ACT_NONE)
        return err_set(err, ST_ERR_ARG, "%s: the embedding is a lookup, its activation format must be none",
                       src_label(p, s, 3, base, lb, sizeof lb));
    if (!(e->smooth_alpha >= 0 && e->smooth_alpha <= 1))
        return err_set(err, ST_ERR_ARG, "%s: smoothquant alpha %g must be in [0, 1]", src_label(p, s, 4, base, lb, sizeof lb),
                       e->smooth_alpha);
    if (e->smooth_alpha != 0 && (proj < 0 || proj == PLAN_O || proj == PLAN_DOWN))
        return err_set(err, ST_ERR_ARG, "%s: smoothquant applies only to q/k/v and gate/up (inputs after an RMSNorm), not %s",
                       src_label(p, s, 4, base, lb, sizeof lb), site);
    return ST_OK;
}

static const char *site_name(int proj, char *buf, size_t n) {
    snprintf(buf, n, "%s_proj", plan_proj_name(proj));
    return buf;
}

Status plan_validate(const Plan *p, const PlanModel *m, Err *err) {
    PlanResolved r;
    Status st = plan_resolve(p, m, &r, err);
    if (st) return st;
    char site[32], lb[96];
    for (int64_t l = 0; l < r.n_layers && !st; l++) {
        const PlanSiteEntry *s = &r.lin[l * PLAN_NPROJ];
        for (int j = 0; j < PLAN_NPROJ && !st; j++)
            st = site_check(p, &s[j], site_name(j, site, sizeof site), "default entry", j, 0, err);
        /* q/k/v share attn_norm, gate/up share ffn_norm: one alpha each */
        for (int j = PLAN_K; j <= PLAN_V && !st; j++)
            if (s[j].e.smooth_alpha != s[PLAN_Q].e.smooth_alpha)
                st = err_set(err, ST_ERR_ARG, "%s: layer %lld: q, k and v share attn_norm, so they need one smoothquant alpha (q %g, %s %g)",
                             src_label(p, &s[j], 4, "default entry", lb, sizeof lb), (long long)l,
                             s[PLAN_Q].e.smooth_alpha, plan_proj_name(j), s[j].e.smooth_alpha);
        if (!st && s[PLAN_UP].e.smooth_alpha != s[PLAN_GATE].e.smooth_alpha)
            st = err_set(err, ST_ERR_ARG, "%s: layer %lld: gate and up share ffn_norm, so they need one smoothquant alpha (gate %g, up %g)",
                         src_label(p, &s[PLAN_UP], 4, "default entry", lb, sizeof lb), (long long)l,
                         s[PLAN_GATE].e.smooth_alpha, s[PLAN_UP].e.smooth_alpha);
    }
    if (!st) st = site_check(p, &r.embed, "the embedding", "embed entry", -1, 1, err);
    if (!st) st = site_check(p, &r.output, "the output head", "output entry", -1, 0, err);
    plan_resolved_done(&r);
    return st;
}

/* === Group fallbacks === */

/* The largest divisor of n that is <= g and a multiple of 8, else of 4, else 0. */
static int64_t group_fallback(int64_t g, int64_t n) {
    int64_t top = g < n ? g : n;
    for (int64_t d = top; d >= 8; d--)
        if (n % d == 0 && d % 8 == 0) return d;
    for (int64_t d = top; d >= 4; d--)
        if (n % d == 0 && d % 4 == 0) return d;
    return 0;
}

/* Does s's group not fit its dimension? Sets *n to the dimension to divide
 * (gcd of both for adadim). */
static int site_group_bad(const PlanSiteEntry *s, int64_t *n) {
    const QFormatTraits *t = qformat_traits(s->e.w.fmt);
    if (!t || !t->needs_scale || s->e.w.group <= 0) return 0;
    int64_t g = s->e.w.group;
    if (s->e.method == QM_ADADIM) *n = gcd64(s->n_out, s->n_in);
    else if (s->e.w.dim == GROUP_OC) *n = s->n_in;
    else if (s->e.w.dim == GROUP_IC) *n = s->n_out;
    else return 0;
    return *n % g != 0;
}

/* Appends "a-b" or "a" layer ranges of set (n) to buf. */
static void layers_text(const uint8_t *set, int64_t n, char *buf, size_t cap) {
    int64_t cnt = 0;
    for (int64_t l = 0; l < n; l++) cnt += set[l];
    if (cnt == n) { snprintf(buf, cap, "*"); return; }
    size_t len = 0;
    buf[0] = 0;
    for (int64_t l = 0; l < n && len + 1 < cap;) { /* a cut-off list only makes the caller split the rule */
        if (!set[l]) { l++; continue; }
        int64_t e = l;
        while (e + 1 < n && set[e + 1]) e++;
        if (e > l) len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s%lld-%lld", len ? "," : "", (long long)l, (long long)e);
        else len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s%lld", len ? "," : "", (long long)l);
        l = e + 1;
    }
}

static void projs_text(unsigned mask, char *buf, size_t cap) {
    if (mask == 0x7f) { snprintf(buf, cap, "*"); return; }
    size_t len = 0;
    buf[0] = 0;
    unsigned qkv = (1u << PLAN_Q) | (1u << PLAN_K) | (1u << PLAN_V), gu = (1u << PLAN_GATE) | (1u << PLAN_UP);
    if ((mask & qkv) == qkv) { len += (size_t)snprintf(buf + len, cap - len, "qkv"); mask &= ~qkv; }
    for (int j = 0; j < PLAN_NPROJ; j++) {
        if (j == PLAN_GATE && (mask & gu) == gu) {
            len += (size_t)snprintf(buf + len, cap - len, "%sgate_up", len ? "," : "");
            mask &= ~gu;
            continue;
        }
        if (mask >> j & 1) len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? "," : "", plan_proj_name(j));
    }
}

static Status fallback_note(Plan *p, const char *pattern, int64_t old, int64_t g, int64_t n, int adadim, Err *err) {
    if (g > 0 && adadim)
        return plan_add_note(p, err, "%s: group %lld -> %lld for adadim (%lld divides both dims; gcd %lld)", pattern,
                             (long long)old, (long long)g, (long long)g, (long long)n);
    if (g > 0)
        return plan_add_note(p, err, "%s: group %lld -> %lld (%lld = %lld·%lld)", pattern, (long long)old, (long long)g,
                             (long long)n, (long long)g, (long long)(n / g));
    return plan_add_note(p, err, "%s: group %lld -> per-channel (%lld has no divisor <= %lld that is a multiple of 4)",
                         pattern, (long long)old, (long long)n, (long long)old);
}

Status plan_fix_groups(Plan *p, const PlanModel *m, int64_t *n_added, Err *err) {
    if (n_added) *n_added = 0;
    PlanResolved r;
    Status st = plan_resolve(p, m, &r, err);
    if (st) return st;
    int64_t L = r.n_layers, nsites = L * PLAN_NPROJ;
    uint8_t *done = core_calloc((size_t)nsites, 1), *set = core_calloc((size_t)L, 1);
    if (!done || !set) { st = err_set(err, ST_ERR_NOMEM, "plan fallbacks"); goto out; }
    for (int64_t i = 0; i < nsites && !st; i++) {
        int64_t n;
        if (done[i] || !site_group_bad(&r.lin[i], &n)) continue;
        /* every site with the same (group, dim, adadim-ness, dimension to divide) */
        const PlanEntry *e0 = &r.lin[i].e;
        int ad0 = e0->method == QM_ADADIM;
        int64_t g = group_fallback(e0->w.group, n);
        uint8_t *match = core_calloc((size_t)nsites, 1);
        if (!match) { st = err_set(err, ST_ERR_NOMEM, "plan fallbacks"); break; }
        for (int64_t k = i; k < nsites; k++) {
            int64_t nk;
            const PlanEntry *e = &r.lin[k].e;
            if (!done[k] && site_group_bad(&r.lin[k], &nk) && nk == n && e->w.group == e0->w.group &&
                e->w.dim == e0->w.dim && (e->method == QM_ADADIM) == ad0)
                match[k] = done[k] = 1;
        }
        /* one rule per set of projections sharing a layer set */
        unsigned used = 0;
        for (int j = 0; j < PLAN_NPROJ && !st; j++) {
            if (used >> j & 1) continue;
            int any = 0;
            for (int64_t l = 0; l < L; l++) any |= set[l] = match[l * PLAN_NPROJ + j];
            if (!any) continue;
            unsigned mask = 1u << j;
            for (int j2 = j + 1; j2 < PLAN_NPROJ; j2++) {
                int same = 1;
                for (int64_t l = 0; l < L; l++) same &= set[l] == match[l * PLAN_NPROJ + j2];
                if (same) mask |= 1u << j2;
            }
            used |= mask;
            char lt[256], pt[64], pat[320];
            layers_text(set, L, lt, sizeof lt);
            projs_text(mask, pt, sizeof pt);
            snprintf(pat, sizeof pat, "%s.%s", lt, pt);
            PlanEntry fe = *e0;
            fe.w.group = g;
            if (strlen(pat) < sizeof(((PlanRule *)0)->pattern)) {
                st = plan_add_rule(p, pat, PF_GROUP, &fe, err);
                if (!st) st = fallback_note(p, pat, e0->w.group, g, n, ad0, err);
                if (!st && n_added) (*n_added)++;
            } else {
                /* a scattered layer set: one rule per layer */
                for (int64_t l = 0; l < L && !st; l++) {
                    if (!set[l]) continue;
                    snprintf(pat, sizeof pat, "%lld.%s", (long long)l, pt);
                    st = plan_add_rule(p, pat, PF_GROUP, &fe, err);
                    if (!st) st = fallback_note(p, pat, e0->w.group, g, n, ad0, err);
                    if (!st && n_added) (*n_added)++;
                }
            }
        }
        free(match);
    }
    PlanSiteEntry *ends[2] = {&r.embed, &r.output};
    const char *names[2] = {"embed", "output"};
    for (int k = 0; k < 2 && !st; k++) {
        int64_t n;
        if (!site_group_bad(ends[k], &n)) continue;
        PlanEntry fe = ends[k]->e;
        fe.w.group = group_fallback(fe.w.group, n);
        st = plan_add_rule(p, names[k], PF_GROUP, &fe, err);
        if (!st) st = fallback_note(p, names[k], ends[k]->e.w.group, fe.w.group, n, fe.method == QM_ADADIM, err);
        if (!st && n_added) (*n_added)++;
    }
out:
    free(done);
    free(set);
    plan_resolved_done(&r);
    return st;
}

/* === Size accounting === */

/* The QParams an entry stores with (AdaDim: the chosen or larger variant). */
static QParams entry_qparams(const PlanEntry *e, int64_t n_out, int64_t n_in, GroupDim adadim_dim) {
    QParams q = e->w;
    if (e->method == QM_ADADIM) {
        QParams oc = q, ic = q;
        oc.dim = GROUP_OC;
        ic.dim = GROUP_IC;
        if (adadim_dim == GROUP_OC) return oc;
        if (adadim_dim == GROUP_IC) return ic;
        return qparams_bits(&oc, n_out, n_in) >= qparams_bits(&ic, n_out, n_in) ? oc : ic;
    }
    return q;
}

int64_t plan_entry_bits(const PlanEntry *e, int64_t n_out, int64_t n_in, GroupDim adadim_dim,
                        PlanAqlmBitsFn bits_fn) {
    if (e->w.fmt == QF_AQLM)
        return (int64_t)(bits_fn ? bits_fn(&e->aqlm, n_out, n_in) : aqlm_bits(&e->aqlm, n_out, n_in));
    QParams q = entry_qparams(e, n_out, n_in, adadim_dim);
    return qparams_bits(&q, n_out, n_in);
}

size_t plan_entry_bytes(const PlanEntry *e, int64_t n_out, int64_t n_in, GroupDim adadim_dim,
                        PlanAqlmBitsFn bits_fn) {
    if (e->w.fmt == QF_AQLM) return (size_t)((plan_entry_bits(e, n_out, n_in, adadim_dim, bits_fn) + 7) / 8);
    QParams q = entry_qparams(e, n_out, n_in, adadim_dim);
    return qparams_bytes(&q, n_out, n_in);
}

static int entries_store_same(const PlanEntry *a, const PlanEntry *b) {
    if (a->w.fmt != b->w.fmt) return 0;
    const QFormatTraits *t = qformat_traits(a->w.fmt);
    if (a->w.fmt == QF_AQLM) return !memcmp(&a->aqlm, &b->aqlm, sizeof a->aqlm);
    if (!t->needs_scale) return 1;
    return a->w.sym == b->w.sym && a->w.dim == b->w.dim && a->w.group == b->w.group && a->method == b->method;
}

Status plan_size(const Plan *p, const PlanModel *m, const PlanSizeOpts *opts, PlanSize *out, Err *err) {
    memset(out, 0, sizeof *out);
    Status st = plan_validate(p, m, err);
    if (st) return st;
    PlanResolved r;
    st = plan_resolve(p, m, &r, err);
    if (st) return st;
    PlanAqlmBitsFn ab = opts ? opts->aqlm_bits : NULL;
    for (int64_t i = 0; i < r.n_layers * PLAN_NPROJ; i++) {
        const PlanSiteEntry *s = &r.lin[i];
        GroupDim ad = opts && opts->adadim_dims ? opts->adadim_dims[i] : GROUP_TENSOR;
        int64_t bits = plan_entry_bits(&s->e, s->n_out, s->n_in, ad, ab);
        int64_t n = s->n_out * s->n_in;
        out->lin_params += n;
        out->lin_bits += bits;
        out->lin_bytes += plan_entry_bytes(&s->e, s->n_out, s->n_in, ad, ab);
        out->fmt_params[s->e.w.fmt] += n;
        out->fmt_bits[s->e.w.fmt] += bits;
    }
    out->all_params = out->lin_params;
    out->all_bits = out->lin_bits;
    out->all_bytes = out->lin_bytes;
    const PlanSiteEntry *ends[2] = {&r.embed, &r.output};
    for (int k = 0; k < 2; k++) {
        if (k == 1 && m->tied_embeddings && entries_store_same(&r.embed.e, &r.output.e)) break;
        const PlanSiteEntry *s = ends[k];
        out->all_params += s->n_out * s->n_in;
        out->all_bits += plan_entry_bits(&s->e, s->n_out, s->n_in, GROUP_TENSOR, ab);
        out->all_bytes += plan_entry_bytes(&s->e, s->n_out, s->n_in, GROUP_TENSOR, ab);
    }
    out->bpw_lin = out->lin_params ? (double)out->lin_bits / (double)out->lin_params : 0;
    out->bpw_all = out->all_params ? (double)out->all_bits / (double)out->all_params : 0;
    plan_resolved_done(&r);
    return ST_OK;
}

size_t plan_bytes(const Plan *p, const PlanModel *m) {
    PlanSize s;
    if (plan_size(p, m, NULL, &s, NULL) != ST_OK) return 0;
    return s.all_bytes;
}

/* === UI codes === */

char *plan_entry_code(const PlanEntry *e, char *buf, size_t n) {
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    size_t len = 0;
#define PUT(...) do { int k_ = snprintf(buf + len, len < n ? n - len : 0, __VA_ARGS__); \
                      if (k_ > 0) len += (size_t)k_; } while (0)
    if (!n) return buf;
    buf[0] = 0;
    if (!t) { PUT("?"); return buf; }
    if (e->w.fmt == QF_AQLM) {
        PUT("AQ%dx%dg%d", e->aqlm.M, e->aqlm.B, e->aqlm.g);
    } else {
        PUT("%s%s", t->code, t->is_int && !e->w.sym ? "a" : "");
        if (t->needs_scale) {
            if (e->method == QM_ADADIM) PUT("/ad");
            else if (e->w.dim == GROUP_TENSOR) PUT("/t");
            else PUT("/%s", group_dim_name(e->w.dim));
            if (e->w.group > 0 && (e->method == QM_ADADIM || e->w.dim != GROUP_TENSOR)) PUT("%lld", (long long)e->w.group);
            if (e->method == QM_GPTQ || (e->method == QM_ADADIM && e->adadim_base == QM_GPTQ)) PUT("·G");
        }
        if (e->method == QM_IMATRIX) PUT("·I");
    }
    if (e->act != ACT_NONE) {
        PUT("·%s", e->act == ACT_INT8 ? "A8" : e->act == ACT_FP8_E4M3 ? "E4" : "E5");
        if (e->act_gran == ACT_PER_TOKEN) PUT("t");
        if (e->act_scale == ACT_STATIC) PUT("s");
        if (e->act_skip_first) PUT("k");
    }
    if (e->smooth_alpha > 0) PUT("·S");
#undef PUT
    return buf;
}
