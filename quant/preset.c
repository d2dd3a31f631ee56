#include "quant/preset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quant/aqlm.h"
#include "quant/ggml_type.h"

static const PresetInfo PRESETS[] = {
    {"fp32", "no quantization (the reference)"},
    {"fp16", "fp16 weights everywhere"},
    {"w8a8-tensor", "int8 per-OC weights, int8 per-tensor dynamic activations"},
    {"w8a8-token", "int8 per-OC weights, int8 per-token dynamic activations"},
    {"smoothquant-w8a8", "w8a8-tensor with SmoothQuant scales migrated into the RMSNorm gains"},
    {"spike-aware-w8a8", "w8a8-tensor, the spike ranking's top sites kept fp16 (or fp8)"},
    {"random-k", "w8a8-tensor, k random projections kept fp16 (control for spike-aware)"},
    {"int4-rtn", "int4 weights, groups of g along OC, round-to-nearest"},
    {"int4-gptq", "int4 weights, groups of g along OC, GPTQ"},
    {"int3-rtn", "int3 weights, groups of g along OC, round-to-nearest"},
    {"int3-gptq", "int3 weights, groups of g along OC, GPTQ"},
    {"adadim-int4", "int4 weights, AdaDim picks OC or IC groups, RTN"},
    {"adadim-int4-gptq", "int4 weights, AdaDim picks OC or IC groups, GPTQ"},
    {"adadim-int3", "int3 weights, AdaDim picks OC or IC groups, RTN"},
    {"adadim-int3-gptq", "int3 weights, AdaDim picks OC or IC groups, GPTQ"},
    {"w4a8-token", "int4 symmetric weights, groups of g along OC, RTN; int8 per-token dynamic activations"},
    {"aqlm-2x8", "AQLM 2 codebooks x 2^8, groups of 8 inputs (2 code bits; codebooks extra)"},
    {"aqlm-1x16", "AQLM 1 codebook x 2^16, groups of 8 inputs (2 code bits; codebooks extra)"},
    {"aqlm-1x8", "AQLM 1 codebook x 2^8, groups of 4 inputs (2 code bits; codebooks extra)"},
    {"llama-q8_0", "llama.cpp's Q8_0 file: q8_0 blocks everywhere (ggml's rounding)"},
    {"llama-q4_0", "llama.cpp's Q4_0 mixture: q4_0, output head q6_k"},
    {"llama-q4_k_m", "llama.cpp's Q4_K_M mixture: q4_k, q6_k on half the v/down layers and the head"},
    {"llama-q5_k_m", "llama.cpp's Q5_K_M mixture: q5_k, q6_k on half the v/down layers and the head"},
    {"llama-q6_k", "llama.cpp's Q6_K file: q6_k blocks everywhere"},
};

const PresetInfo *plan_presets(int *n) {
    *n = (int)(sizeof PRESETS / sizeof PRESETS[0]);
    return PRESETS;
}

void preset_opts_default(PresetOpts *o) {
    memset(o, 0, sizeof *o);
    o->group = 128;
    o->sym = -1;
    o->spike_fmt = QF_F16;
    o->alpha = 0.5f;
    o->fix_groups = 1;
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void w8a8(Plan *p, const PresetOpts *o, ActGran gran) {
    PlanEntry *e = &p->def;
    e->w = (QParams){QF_INT8, o->sym < 0 ? 1 : o->sym, GROUP_OC, 0};
    e->act = ACT_INT8;
    e->act_gran = gran;
    e->act_scale = o->act_static ? ACT_STATIC : ACT_DYNAMIC;
    e->act_skip_first = o->act_skip_first;
}

/* Keeps the sites (patterns) in high precision: fp16 weights and float
 * activations, or fp8 weights (per-OC scales) with fp8 activations. */
static Status keep_sites(Plan *p, const PresetOpts *o, const char *const *sites, int64_t n, const char *why, Err *err) {
    PlanEntry e = p->def;
    if (o->spike_fmt == QF_F16) {
        e.w = (QParams){QF_F16, 1, GROUP_OC, 0};
        e.act = ACT_NONE;
    } else if (o->spike_fmt == QF_FP8_E4M3 || o->spike_fmt == QF_FP8_E5M2) {
        e.w = (QParams){o->spike_fmt, 1, GROUP_OC, 0};
        e.act = o->spike_fmt == QF_FP8_E4M3 ? ACT_FP8_E4M3 : ACT_FP8_E5M2;
    } else {
        const QFormatTraits *t = qformat_traits(o->spike_fmt);
        return err_set(err, ST_ERR_ARG, "spike format must be fp16, fp8-e4m3 or fp8-e5m2, not %s", t ? t->name : "?");
    }
    e.method = QM_RTN;
    char list[400];
    size_t len = 0;
    list[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        Status st = plan_add_rule(p, sites[i], PF_FMT | PF_GROUP | PF_METHOD | PF_ACT, &e, err);
        if (st) return err_wrap(err, "%s site %lld", why, (long long)i + 1);
        if (len < sizeof list)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", sites[i]);
    }
    return plan_add_note(p, err, "%s: kept %s: %s", why, qformat_traits(o->spike_fmt)->name, n ? list : "(none)");
}

/* AQLM presets: every projection gets params p; a projection whose input
 * width g does not divide falls back to one codebook over the largest group
 * g' < g that divides it with the same code bits (B = code bits · g', at most
 * 16), else to fp16, and says so in a note. */
static Status aqlm_preset(Plan *p, AqlmParams ap, const PlanModel *m, Err *err) {
    PlanEntry *e = &p->def;
    e->w = (QParams){QF_AQLM, 1, GROUP_OC, 0};
    e->method = QM_AQLM;
    e->aqlm = ap;
    int code_x_g = ap.M * ap.B; /* code bits per weight times g */
    for (int pj = 0; pj < PLAN_NPROJ; pj++) {
        int64_t n_out, n_in;
        plan_proj_shape(m, pj, &n_out, &n_in);
        if (n_in % ap.g == 0) continue;
        char pat[16];
        snprintf(pat, sizeof pat, "*.%s", plan_proj_name(pj));
        PlanEntry f = *e;
        int found = 0;
        for (int g = ap.g - 1; g >= 1 && !found; g--) {
            if (n_in % g != 0 || (code_x_g * g) % ap.g != 0) continue;
            int B = code_x_g * g / ap.g;
            if (B < 1 || B > 16) continue;
            f.aqlm = (AqlmParams){1, B, g};
            found = 1;
        }
        Status st;
        if (found) {
            st = plan_add_rule(p, pat, PF_METHOD, &f, err);
            if (!st)
                st = plan_add_note(p, err, "%s: aqlm %dx%dg%d -> %dx%dg%d (%d does not divide %lld; same %g code bits)",
                                   pat, ap.M, ap.B, ap.g, f.aqlm.M, f.aqlm.B, f.aqlm.g, ap.g, (long long)n_in,
                                   (double)code_x_g / ap.g);
        } else {
            f.w = (QParams){QF_F16, 1, GROUP_OC, 0};
            f.method = QM_RTN;
            st = plan_add_rule(p, pat, PF_FMT | PF_GROUP | PF_METHOD, &f, err);
            if (!st)
                st = plan_add_note(p, err, "%s: aqlm %dx%dg%d -> fp16 (no group size divides %lld at the same code bits)",
                                   pat, ap.M, ap.B, ap.g, (long long)n_in);
        }
        if (st) return st;
    }
    return ST_OK;
}

/* === llama.cpp's mixtures (src/llama-quant.cpp, llama_tensor_get_type) === */

QFormat preset_ggml_fit(QFormat f, int64_t n_in) {
    const QFormatTraits *t = qformat_traits(f);
    while (t->family == QFAM_GGML && n_in % ggml_type_traits((uint32_t)t->ggml_type)->block_size) {
        f = (QFormat)t->fallback;
        t = qformat_traits(f);
    }
    return f;
}

/* A rule giving pattern format f (method rtn), with a note when f is a
 * fallback from want. */
static Status ggml_rule(Plan *p, const char *pat, QFormat want, QFormat f, int64_t n_in, Err *err) {
    PlanEntry e = p->def;
    e.w = (QParams){f, 1, GROUP_OC, 0};
    e.method = QM_RTN;
    Status st = plan_add_rule(p, pat, PF_FMT | PF_GROUP | PF_METHOD, &e, err);
    if (!st && f != want)
        st = plan_add_note(p, err, "%s: %s -> %s (%lld is not a multiple of %s's block: llama.cpp's fallback)", pat,
                           qformat_traits(want)->name, qformat_traits(f)->name, (long long)n_in,
                           qformat_traits(want)->name);
    return st;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and
 * every third one between. */
static int more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* The mixture of ftype `base` (k_m: the _K_M variant) without an imatrix, on
 * a dense (non-MoE, non-Falcon) model: the output head q6_k (q8_0 where its
 * rows are not whole blocks of base, base itself for q8_0), the embedding the
 * head's type when tied else base; _K_M adds q6_k on attn_v and ffn_down of
 * more_bits layers; every tensor then falls back where its rows do not fit. */
static Status llama_mix(Plan *p, QFormat base, int k_m, const PlanModel *m, Err *err) {
    p->def.w = (QParams){base, 1, GROUP_OC, 0};
    p->def.method = QM_RTN;
    int64_t blk = ggml_type_traits((uint32_t)qformat_traits(base)->ggml_type)->block_size;
    QFormat head = m->dim % blk ? QF_Q8_0 : base != QF_Q8_0 ? QF_Q6_K : base;
    p->output = p->def;
    p->output.w.fmt = preset_ggml_fit(head, m->dim);
    p->embed = p->def;
    p->embed.w.fmt = preset_ggml_fit(m->tied_embeddings ? head : base, m->dim);
    Status st = ST_OK;
    if (p->output.w.fmt != head)
        st = plan_add_note(p, err, "output: %s -> %s (llama.cpp's fallback)", qformat_traits(head)->name,
                           qformat_traits(p->output.w.fmt)->name);
    for (int pj = 0; pj < PLAN_NPROJ && !st; pj++) {
        int64_t n_out, n_in;
        plan_proj_shape(m, pj, &n_out, &n_in);
        char pat[32];
        snprintf(pat, sizeof pat, "*.%s", plan_proj_name(pj));
        if (preset_ggml_fit(base, n_in) != base) st = ggml_rule(p, pat, base, preset_ggml_fit(base, n_in), n_in, err);
        if (!k_m || (pj != PLAN_V && pj != PLAN_DOWN)) continue;
        for (int64_t l = 0; l < m->n_layers && !st; l++) {
            if (!more_bits(l, m->n_layers)) continue;
            snprintf(pat, sizeof pat, "%lld.%s", (long long)l, plan_proj_name(pj));
            st = ggml_rule(p, pat, QF_Q6_K, preset_ggml_fit(QF_Q6_K, n_in), n_in, err);
        }
    }
    return st;
}

Status plan_preset(Plan *out, const char *name, const PresetOpts *opts, const PlanModel *m, Err *err) {
    PresetOpts o;
    if (opts) o = *opts;
    else preset_opts_default(&o);
    plan_init(out);
    if (!name) name = "";
    snprintf(out->name, sizeof out->name, "%s", name);
    if (o.group < 0) return err_set(err, ST_ERR_ARG, "preset %s: negative group size %lld", name, (long long)o.group);
    Status st = ST_OK;
    PlanEntry half;
    plan_entry_default(&half);
    half.w.fmt = QF_F16;
    out->embed = out->output = half;
    if (!strcasecmp(name, "fp32")) {
        plan_entry_default(&out->def);
        plan_entry_default(&out->embed);
        plan_entry_default(&out->output);
    } else if (!strcasecmp(name, "fp16")) {
        out->def = half;
    } else if (!strcasecmp(name, "w8a8-tensor")) {
        w8a8(out, &o, ACT_PER_TENSOR);
    } else if (!strcasecmp(name, "w8a8-token")) {
        w8a8(out, &o, ACT_PER_TOKEN);
    } else if (!strcasecmp(name, "smoothquant-w8a8")) {
        w8a8(out, &o, ACT_PER_TENSOR);
        if (!(o.alpha > 0 && o.alpha <= 1)) return err_set(err, ST_ERR_ARG, "smoothquant alpha %g must be in (0, 1]", o.alpha);
        PlanEntry e = out->def;
        e.smooth_alpha = o.alpha;
        st = plan_add_rule(out, "*.qkv,gate_up", PF_SMOOTH, &e, err);
        if (!st) st = plan_add_note(out, err, "smoothquant: alpha %g on q/k/v (attn_norm) and gate/up (ffn_norm)", o.alpha);
    } else if (!strcasecmp(name, "spike-aware-w8a8")) {
        w8a8(out, &o, ACT_PER_TENSOR);
        if (o.n_spikes < 0 || (o.n_spikes && !o.spikes))
            return err_set(err, ST_ERR_ARG, "spike-aware-w8a8: bad spike list");
        st = keep_sites(out, &o, o.spikes, o.n_spikes, "spike-aware", err);
    } else if (!strcasecmp(name, "random-k")) {
        w8a8(out, &o, ACT_PER_TENSOR);
        /* k projections (modules), as many as the spike list covers unless given */
        int64_t n_proj = m->n_layers * PLAN_NPROJ, k = o.random_k;
        if (!k && o.n_spikes > 0 && o.spikes)
            for (int64_t l = 0; l < m->n_layers; l++)
                for (int j = 0; j < PLAN_NPROJ; j++) {
                    int hit = 0;
                    for (int64_t i = 0; i < o.n_spikes && !hit; i++) hit = plan_pattern_matches(o.spikes[i], l, j);
                    k += hit;
                }
        if (k <= 0 || k > n_proj)
            return err_set(err, ST_ERR_ARG, "random-k: k = %lld must be in 1..%lld (layers x 7 projections)",
                           (long long)k, (long long)n_proj);
        char (*pats)[32] = malloc((size_t)k * sizeof *pats);
        const char **ptrs = malloc((size_t)k * sizeof *ptrs);
        int64_t *idx = malloc((size_t)n_proj * sizeof *idx);
        if (!pats || !ptrs || !idx) {
            st = err_set(err, ST_ERR_NOMEM, "random-k");
        } else {
            /* partial Fisher-Yates: the first k of a seeded shuffle */
            uint64_t s = o.seed;
            for (int64_t i = 0; i < n_proj; i++) idx[i] = i;
            for (int64_t i = 0; i < k; i++) {
                int64_t r = i + (int64_t)(splitmix64(&s) % (uint64_t)(n_proj - i));
                int64_t t = idx[i];
                idx[i] = idx[r];
                idx[r] = t;
                snprintf(pats[i], sizeof pats[i], "%lld.%s", (long long)(idx[i] / PLAN_NPROJ),
                         plan_proj_name((int)(idx[i] % PLAN_NPROJ)));
                ptrs[i] = pats[i];
            }
            st = keep_sites(out, &o, ptrs, k, "random-k", err);
            if (!st) st = plan_add_note(out, err, "random-k: %lld projections, seed %llu", (long long)k, (unsigned long long)o.seed);
        }
        free(pats);
        free(ptrs);
        free(idx);
    } else if (!strcasecmp(name, "w4a8-token")) {
        /* symmetric codes: the integer kernel (kernels/w4a8.h) has no zero-point term */
        if (o.sym == 0) return err_set(err, ST_ERR_ARG, "preset %s: int4 weights must be symmetric here", name);
        PlanEntry *e = &out->def;
        e->w = (QParams){QF_INT4, 1, GROUP_OC, o.group};
        e->method = QM_RTN;
        e->act = ACT_INT8;
        e->act_gran = ACT_PER_TOKEN;
        e->act_scale = ACT_DYNAMIC;
    } else if (!strcasecmp(name, "aqlm-2x8")) {
        st = aqlm_preset(out, (AqlmParams){2, 8, 8}, m, err);
    } else if (!strcasecmp(name, "aqlm-1x16")) {
        st = aqlm_preset(out, (AqlmParams){1, 16, 8}, m, err);
    } else if (!strcasecmp(name, "aqlm-1x8")) {
        st = aqlm_preset(out, (AqlmParams){1, 8, 4}, m, err);
    } else if (!strcasecmp(name, "llama-q8_0")) {
        st = llama_mix(out, QF_Q8_0, 0, m, err);
    } else if (!strcasecmp(name, "llama-q4_0")) {
        st = llama_mix(out, QF_Q4_0, 0, m, err);
    } else if (!strcasecmp(name, "llama-q4_k_m")) {
        st = llama_mix(out, QF_Q4_K, 1, m, err);
    } else if (!strcasecmp(name, "llama-q5_k_m")) {
        st = llama_mix(out, QF_Q5_K, 1, m, err);
    } else if (!strcasecmp(name, "llama-q6_k")) {
        st = llama_mix(out, QF_Q6_K, 0, m, err);
    } else {
        static const struct { const char *name; int bits, gptq, adadim; } WEIGHT_ONLY[] = {
            {"int4-rtn", 4, 0, 0}, {"int4-gptq", 4, 1, 0}, {"int3-rtn", 3, 0, 0}, {"int3-gptq", 3, 1, 0},
            {"adadim-int4", 4, 0, 1}, {"adadim-int4-rtn", 4, 0, 1}, {"adadim-int4-gptq", 4, 1, 1},
            {"adadim-int3", 3, 0, 1}, {"adadim-int3-rtn", 3, 0, 1}, {"adadim-int3-gptq", 3, 1, 1},
        };
        int bits = 0, gptq = 0, adadim = 0;
        for (size_t i = 0; i < sizeof WEIGHT_ONLY / sizeof WEIGHT_ONLY[0]; i++)
            if (!strcasecmp(name, WEIGHT_ONLY[i].name)) {
                bits = WEIGHT_ONLY[i].bits;
                gptq = WEIGHT_ONLY[i].gptq;
                adadim = WEIGHT_ONLY[i].adadim;
            }
        if (!bits) {
            char known[1024];
            size_t len = 0;
            for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
                len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "", PRESETS[i].name);
            return err_set(err, ST_ERR_ARG, "unknown preset '%s' (known: %s)", name, known);
        }
        PlanEntry *e = &out->def;
        e->w = (QParams){bits == 4 ? QF_INT4 : QF_INT3, o.sym < 0 ? 0 : o.sym, GROUP_OC, o.group};
        e->method = adadim ? QM_ADADIM : gptq ? QM_GPTQ : QM_RTN;
        e->adadim_base = gptq ? QM_GPTQ : QM_RTN;
        gptq_opts_default(&e->gptq);
        e->gptq.act_order = 1;
    }
    if (!st && o.fix_groups) st = plan_fix_groups(out, m, NULL, err);
    if (!st) st = plan_validate(out, m, err);
    if (st) {
        err_wrap(err, "preset %s", name);
        plan_done(out);
    }
    return st;
}
