#include "sessions/gguf_export.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/fpconv.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "quant/ggml_type.h"
#include "quant/plan.h"

int gguf_fallback_parse(const char *s) {
    if (!s) return -1;
    if (!strcasecmp(s, "none")) return GGUF_FALLBACK_NONE;
    if (!strcasecmp(s, "nearest")) return GGUF_FALLBACK_NEAREST;
    if (!strcasecmp(s, "f16")) return GGUF_FALLBACK_F16;
    return -1;
}

/* === How each output tensor is produced === */

typedef enum {
    HOW_RAW,                 /* the source tensor's bytes */
    HOW_CODES,               /* a QTensor's own array (ggml blocks, fp16/bf16 bits, f32) */
    HOW_PACK,                /* a QTensor's int codes + scales packed into 32-blocks */
    HOW_F16,                 /* fallback: the source weight as F16 */
    HOW_NEAREST,             /* fallback: the source weight through a ggml reference quantizer */
    HOW_GAIN,                /* a float vector written as F32: a SmoothQuant norm gain, or a
                                non-GGUF source's norm / rope factors */
    HOW_WEIGHT,              /* a Weight's bytes as loaded: a non-GGUF source's matrix (F32/F16/BF16),
                                or a part of a phi3 stacked tensor kept as the source stores it */
    HOW_PARTS                /* phi3's stacked tensors: the parts' rows one after another */
} How;

typedef struct OutTensor {
    char name[96];
    uint32_t type;           /* GgmlType written */
    int n_dims;
    int64_t ne[4];
    size_t nbytes;
    How how;
    const GgufTensor *src;   /* HOW_RAW */
    const QTensor *qt;       /* HOW_CODES, HOW_PACK */
    const Weight *w;         /* HOW_F16, HOW_NEAREST, HOW_WEIGHT */
    const float *gain;       /* HOW_GAIN (ne[0]) */
    int64_t perm_hd;         /* > 0: rows are Hugging Face q/k rows (rotate_half pairing, heads of
                                perm_hd) written in GGUF llama's interleaved order; 0: as they are */
    struct OutTensor *parts; /* HOW_PARTS: n_parts row ranges, top first (owned by the export) */
    int n_parts;
} OutTensor;

/* The site index (QStored layout) of a tensor name, or -1. */
static int64_t site_of(const char *name, int64_t n_layers) {
    static const char *const T[PROJ_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                              "ffn_gate", "ffn_up", "ffn_down"};
    if (!strcmp(name, "token_embd.weight")) return n_layers * PROJ_COUNT + 1;
    if (!strcmp(name, "output.weight")) return n_layers * PROJ_COUNT;
    long long l;
    char t[32];
    int k = 0;
    if (sscanf(name, "blk.%lld.%31[a-z_].weight%n", &l, t, &k) == 2 && name[k] == '\0' && l >= 0 && l < n_layers)
        for (int p = 0; p < PROJ_COUNT; p++)
            if (!strcmp(t, T[p])) return l * PROJ_COUNT + p;
    return -1;
}

/* The 32-block type that holds q's int codes exactly, or -1 with *why set. */
static int pack_type(const QTensor *q, const char **why) {
    const QFormatTraits *t = qformat_traits(q->p.fmt);
    int64_t g = q->p.dim == GROUP_OC ? (q->p.group ? q->p.group : q->n_in) : q->p.dim == GROUP_TENSOR ? 32 : -1;
    *why = NULL;
    if (!t || t->family != QFAM_INT) *why = "no ggml type holds its codes";
    else if (q->n_in % 32) *why = "rows are not whole 32-blocks";
    else if (g <= 0 || g % 32) *why = "its scale groups are not whole 32-blocks of a row";
    else if (q->p.sym ? t->bits != 8 && t->bits != 5 && t->bits != 4 : t->bits != 5 && t->bits != 4)
        *why = q->p.sym ? "no 32-block ggml type has its bits" : "no 32-block ggml type has its bits with a zero point";
    if (*why) return -1;
    if (q->p.sym) return t->bits == 8 ? GGML_Q8_0 : t->bits == 5 ? GGML_Q5_0 : GGML_Q4_0;
    /* min = -scale·zero must be an fp16 value */
    for (int64_t i = 0; i < q->n_groups; i++) {
        float mn = -q->scale[i] * q->zero[i];
        if (fp16_to_f32(f32_to_fp16(mn)) != mn) {
            *why = "a group's min (-scale x zero) is not an fp16 value (Q4_1/Q5_1 store it so)";
            return -1;
        }
    }
    return t->bits == 4 ? GGML_Q4_1 : GGML_Q5_1;
}

/* The scale and zero of element (r, c). */
static void group_of(const QTensor *q, int64_t r, int64_t c, float *s, float *z) {
    int64_t i = 0;
    if (q->p.dim == GROUP_OC) {
        int64_t go = q->p.group ? q->p.group : q->n_in;
        i = r * (q->n_in / go) + c / go;
    }
    *s = q->scale[i];
    *z = q->zero ? q->zero[i] : 0;
}

static void put_f16(unsigned char *b, float f) {
    uint16_t h = f32_to_fp16(f);
    b[0] = (unsigned char)h;
    b[1] = (unsigned char)(h >> 8);
}

/* Packs row r of q as `type` blocks into dst (ggml_row_bytes(type, n_in)). */
static void pack_row(const QTensor *q, uint32_t type, int64_t r, unsigned char *dst) {
    /* Stored codes: symmetric q in [-(2^(b-1)-1), 2^(b-1)-1]; asymmetric c - 2^(b-1)
     * with c in [0, 2^b-1]. Either way the block's unsigned code is q + 2^(b-1):
     * Q4_0/Q5_0 subtract 8/16 again, Q4_1/Q5_1 add min = -scale·zero. */
    int bits = qformat_traits(q->p.fmt)->bits;
    const int8_t *codes = q->q + r * q->n_in;
    for (int64_t b0 = 0; b0 < q->n_in; b0 += 32) {
        float s, z;
        group_of(q, r, b0, &s, &z);
        int u[32]; /* unsigned codes as the block stores them */
        for (int j = 0; j < 32; j++) u[j] = codes[b0 + j] + (1 << (bits - 1));
        switch (type) {
        case GGML_Q8_0:
            put_f16(dst, s);
            for (int j = 0; j < 32; j++) dst[2 + j] = (unsigned char)(int8_t)codes[b0 + j];
            dst += 34;
            break;
        case GGML_Q4_0:
        case GGML_Q4_1: {
            int off = type == GGML_Q4_1 ? 4 : 2;
            put_f16(dst, s);
            if (type == GGML_Q4_1) put_f16(dst + 2, -s * z);
            for (int j = 0; j < 16; j++) dst[off + j] = (unsigned char)(u[j] | (u[j + 16] << 4));
            dst += off + 16;
            break;
        }
        default: { /* Q5_0, Q5_1 */
            int off = type == GGML_Q5_1 ? 4 : 2;
            put_f16(dst, s);
            if (type == GGML_Q5_1) put_f16(dst + 2, -s * z);
            uint32_t qh = 0;
            for (int j = 0; j < 16; j++) {
                qh |= (uint32_t)((u[j] >> 4) & 1) << j;
                qh |= (uint32_t)((u[j + 16] >> 4) & 1) << (j + 16);
                dst[off + 4 + j] = (unsigned char)((u[j] & 0x0F) | ((u[j + 16] & 0x0F) << 4));
            }
            for (int k = 0; k < 4; k++) dst[off + k] = (unsigned char)(qh >> (8 * k));
            dst += off + 20;
            break;
        }
        }
    }
}

/* Produces tensor t's bytes into dst (t->nbytes). */
static Status produce(const OutTensor *t, unsigned char *dst, Err *err) {
    switch (t->how) {
    case HOW_RAW: memcpy(dst, t->src->data, t->nbytes); return ST_OK;
    case HOW_CODES: memcpy(dst, qtensor_codes(t->qt), t->nbytes); return ST_OK;
    case HOW_GAIN: memcpy(dst, t->gain, t->nbytes); return ST_OK;
    case HOW_WEIGHT: memcpy(dst, t->w->data, t->nbytes); return ST_OK;
    case HOW_PARTS: /* ggml rows are contiguous: stacking rows concatenates the parts' bytes */
        for (int i = 0; i < t->n_parts; i++) {
            Status st = produce(&t->parts[i], dst, err);
            if (st) return st;
            dst += t->parts[i].nbytes;
        }
        return ST_OK;
    case HOW_PACK: {
        size_t rb = ggml_row_bytes(t->type, t->qt->n_in);
        for (int64_t r = 0; r < t->qt->n_out; r++) pack_row(t->qt, t->type, r, dst + (size_t)r * rb);
        return ST_OK;
    }
    default: break;
    }
    /* fallbacks: one source row at a time */
    const Weight *w = t->w;
    float *row = malloc((size_t)w->n_in * sizeof *row);
    if (!row) return err_set(err, ST_ERR_NOMEM, "%s", t->name);
    size_t rb = ggml_row_bytes(t->type, w->n_in);
    const GgmlTypeTraits *gt = ggml_type_traits(t->type);
    for (int64_t r = 0; r < w->n_out; r++) {
        weight_rows_f32(w, r, r + 1, row);
        unsigned char *d = dst + (size_t)r * rb;
        if (t->how == HOW_F16)
            for (int64_t c = 0; c < w->n_in; c++) put_f16(d + 2 * c, row[c]);
        else gt->quant_ref(row, d, w->n_in);
    }
    free(row);
    return ST_OK;
}

/* produce() in the file's row order: HF q/k rows of head h, pair i, half s
 * (row h·hd + s·hd/2 + i) go to GGUF's row h·hd + 2i + s, the inverse of
 * llama.cpp's converter permutation, so llama's interleaved RoPE pairs them
 * as rotate_half did. Rows are whole blocks, so any stored type moves as is. */
static Status produce_rows(const OutTensor *t, unsigned char *dst, Err *err) {
    if (t->perm_hd <= 0) return produce(t, dst, err);
    unsigned char *tmp = malloc(t->nbytes);
    if (!tmp) return err_set(err, ST_ERR_NOMEM, "%s", t->name);
    Status st = produce(t, tmp, err);
    int64_t hd = t->perm_hd, half = hd / 2, n_rows = t->ne[1];
    size_t rb = t->nbytes / (size_t)n_rows;
    for (int64_t r = 0; r < n_rows && !st; r++) {
        int64_t h = r / hd, k = r % hd, s = k / half, i = k % half;
        memcpy(dst + (size_t)(h * hd + 2 * i + s) * rb, tmp + (size_t)r * rb, rb);
    }
    free(tmp);
    return st;
}

typedef struct FillCtx {
    const OutTensor *t;
} FillCtx;

static Status fill(void *user, int64_t i, void *dst, size_t nbytes, Err *err) {
    const FillCtx *fc = user;
    if (nbytes != fc->t[i].nbytes) return err_set(err, ST_ERR_STATE, "%s: %zu bytes, expected %zu", fc->t[i].name,
                                                  nbytes, fc->t[i].nbytes);
    return produce_rows(&fc->t[i], dst, err);
}

/* === Sites === */

/* Decides how site s (tensor src) is written into *o; notes what is lost. */
static Status plan_site(const Model *m, const PlanEntry *e, const QStoredSite *ss, const Weight *w, GgufFallback fb,
                        OutTensor *o, int *approx, int *dropped, ExportReport *rep, Err *err) {
    const char *site = o->name;
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    if (e->act != ACT_NONE) {
        *approx = 1;
        export_report_note(rep, EXPORT_APPROX, site, "activation format %s: llama.cpp picks its own (dropped)",
                           act_format_name(e->act));
    }
    if (ss->kind == QSITE_NONE) return ST_OK; /* fp32 entry: the source tensor */
    const char *why = NULL;
    if (ss->kind == QSITE_QTENSOR) {
        const QTensor *q = &ss->q;
        const QFormatTraits *qt = qformat_traits(q->p.fmt);
        if (qt->family == QFAM_GGML && qt->ggml_type >= 0) {
            o->how = HOW_CODES;
            o->type = (uint32_t)qt->ggml_type;
        } else if (q->p.fmt == QF_F16 || q->p.fmt == QF_BF16) {
            o->how = HOW_CODES;
            o->type = q->p.fmt == QF_F16 ? GGML_F16 : GGML_BF16;
        } else if (q->p.fmt == QF_F32 && q->f) {
            o->how = HOW_CODES;
            o->type = GGML_F32;
        } else {
            int pt = pack_type(q, &why);
            if (pt >= 0) {
                o->how = HOW_PACK;
                o->type = (uint32_t)pt;
            }
        }
        if (!why) {
            o->qt = q;
            o->nbytes = ggml_row_bytes(o->type, q->n_in) * (size_t)q->n_out;
            if (q->n_out != w->n_out || q->n_in != w->n_in)
                return err_set(err, ST_ERR_MISMATCH, "%s: stored (%" PRId64 ", %" PRId64 ") for a (%" PRId64 ", %" PRId64
                               ") tensor", site, q->n_out, q->n_in, w->n_out, w->n_in);
            return ST_OK;
        }
    } else {
        why = "AQLM codebooks have no ggml type";
    }
    char d[64];
    if (e->w.dim == GROUP_TENSOR) snprintf(d, sizeof d, "%s%s per-tensor", t ? t->name : "?",
                                           t && t->is_int ? (e->w.sym ? " sym" : " asym") : "");
    else if (e->w.group == 0)
        snprintf(d, sizeof d, "%s%s per-%s", t ? t->name : "?", t && t->is_int ? (e->w.sym ? " sym" : " asym") : "",
                 e->w.dim == GROUP_OC ? "OC" : "IC");
    else snprintf(d, sizeof d, "%s%s %s%" PRId64, t ? t->name : "?", t && t->is_int ? (e->w.sym ? " sym" : " asym") : "",
                  group_dim_name(e->w.dim), e->w.group);
    *dropped = 1;
    if (fb == GGUF_FALLBACK_NONE) {
        export_report_note(rep, EXPORT_DROPPED, site, "%s: %s", d, why);
        return ST_OK;
    }
    o->w = w;
    o->how = HOW_F16;
    o->type = GGML_F16;
    if (fb == GGUF_FALLBACK_NEAREST && t) {
        int cand[2] = {t->ggml_near, t->ggml_b32[e->w.sym ? 1 : 0]};
        for (int k = 0; k < 2; k++) {
            const GgmlTypeTraits *gt = cand[k] >= 0 ? ggml_type_traits((uint32_t)cand[k]) : NULL;
            if (gt && gt->quant_ref && w->n_in % gt->block_size == 0) {
                o->how = HOW_NEAREST;
                o->type = (uint32_t)cand[k];
                break;
            }
        }
    }
    o->nbytes = ggml_row_bytes(o->type, w->n_in) * (size_t)w->n_out;
    export_report_note(rep, EXPORT_DROPPED, site, "%s: %s: the source weights written as %s (%s)", d, why,
                       ggml_type_traits(o->type)->name, o->how == HOW_NEAREST ? "ggml's reference rounding" : "f16");
    (void)m;
    return ST_OK;
}

/* The llama_ftype of the type most weights were written in (general.file_type). */
static uint32_t file_type_of(const int64_t *n_of) {
    static const struct { uint32_t type, ftype; } MAP[] = {
        {GGML_F32, 0}, {GGML_F16, 1}, {GGML_Q4_0, 2}, {GGML_Q4_1, 3}, {GGML_Q8_0, 7}, {GGML_Q5_0, 8},
        {GGML_Q5_1, 9}, {GGML_Q2_K, 10}, {GGML_Q3_K, 12}, {GGML_Q4_K, 15}, {GGML_Q5_K, 17}, {GGML_Q6_K, 18},
        {GGML_BF16, 32},
    };
    uint32_t best = 0;
    int64_t most = -1;
    for (size_t i = 0; i < sizeof MAP / sizeof MAP[0]; i++)
        if (n_of[MAP[i].type] > most) {
            most = n_of[MAP[i].type];
            best = MAP[i].ftype;
        }
    return best;
}

/* Re-reads path and compares every tensor with what produce() makes. */
static Status verify(const char *path, const OutTensor *ot, int64_t n, int64_t n_kv, Err *err) {
    Gguf *g = NULL;
    Status st = gguf_open(path, &g, err);
    if (st) return err_wrap(err, "re-reading the export");
    unsigned char *buf = NULL;
    size_t cap = 0;
    if (g->n_tensors != n || g->n_kv != n_kv) {
        st = err_set(err, ST_ERR_FORMAT, "%s: re-read %" PRId64 " tensors and %" PRId64 " keys, wrote %" PRId64
                     " and %" PRId64, path, g->n_tensors, g->n_kv, n, n_kv);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        const GgufTensor *t = gguf_find_tensor(g, ot[i].name);
        if (!t || t->type != ot[i].type || t->nbytes != ot[i].nbytes || (int)t->n_dims != ot[i].n_dims ||
            memcmp(t->ne, ot[i].ne, sizeof t->ne)) {
            st = err_set(err, ST_ERR_FORMAT, "%s: tensor %s re-read with another type or shape", path, ot[i].name);
            goto done;
        }
        if (ot[i].nbytes > cap) {
            free(buf);
            cap = ot[i].nbytes;
            if (!(buf = malloc(cap))) {
                st = err_set(err, ST_ERR_NOMEM, "%s", path);
                goto done;
            }
        }
        if ((st = produce_rows(&ot[i], buf, err))) goto done;
        if (memcmp(buf, t->data, ot[i].nbytes)) {
            st = err_set(err, ST_ERR_FORMAT, "%s: tensor %s re-read differs from what was written", path, ot[i].name);
            goto done;
        }
    }
done:
    free(buf);
    gguf_free(g);
    return st;
}

Status gguf_export_check_source(const Model *m, Err *err) {
    if (m->format == FMT_GGUF) return ST_OK; /* phi3's stacked tensors included (plan_fused) */
    /* Hugging Face and llama2.c sources: the metadata and tokenizer are
     * written from the loaded config and tokenizer, as GGUF `llama`. */
    const char *what = m->format == FMT_HF ? "Hugging Face" : "llama2.c";
    if (strcmp(m->cfg.arch, "llama") != 0)
        return err_set(err, ST_ERR_UNSUPPORTED, "%s: export from a %s %s model is not written (llama only; "
                       "convert it to GGUF first)", m->path, what, m->cfg.arch);
    if (m->cfg.sliding_window > 0)
        return err_set(err, ST_ERR_UNSUPPORTED, "%s: sliding window %lld: llama.cpp's llama architecture has none, "
                       "so the export would compute something else", m->path, (long long)m->cfg.sliding_window);
    if (!m->tok) return err_set(err, ST_ERR_UNSUPPORTED, "%s: no tokenizer to write", m->path);
    return ST_OK;
}

/* === Non-GGUF sources: tensors and metadata from the loaded model === */

/* Upper bound of the tensors list_model writes. */
static int64_t model_tensor_cap(const Model *m) { return m->cfg.n_layers * 9 + 4; }

static void out_vec(OutTensor *o, const char *name, const float *v, int64_t n) {
    snprintf(o->name, sizeof o->name, "%s", name);
    o->type = GGML_F32;
    o->n_dims = 1;
    o->ne[0] = n;
    o->ne[1] = o->ne[2] = o->ne[3] = 1;
    o->nbytes = (size_t)n * sizeof(float);
    o->how = HOW_GAIN;
    o->gain = v;
}

static void out_mat(OutTensor *o, const char *name, const Weight *w) {
    snprintf(o->name, sizeof o->name, "%s", name);
    o->type = w->type;
    o->n_dims = 2;
    o->ne[0] = w->n_in;
    o->ne[1] = w->n_out;
    o->ne[2] = o->ne[3] = 1;
    o->nbytes = weight_bytes(w);
    o->how = HOW_WEIGHT;
    o->w = w;
}

/* The tensors of a GGUF `llama` file for m, in llama.cpp's converter order;
 * the norms of smoothed layers take the stored gains. Returns the count. */
static int64_t list_model(const Model *m, const QStored *stored, OutTensor *ot) {
    static const char *const T[PROJ_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                              "ffn_gate", "ffn_up", "ffn_down"};
    const ModelConfig *c = &m->cfg;
    int64_t n = 0;
    char nm[96];
    out_mat(&ot[n++], "token_embd.weight", &m->tok_embd);
    for (int64_t l = 0; l < c->n_layers; l++) {
        const LayerWeights *L = &m->layers[l];
        for (int k = 0; k < 2; k++) {
            const float *g = k ? L->ffn_norm : L->attn_norm;
            const float *sg = k ? stored->ffn_norm : stored->attn_norm;
            if (sg && stored->smoothed && stored->smoothed[l * 2 + k]) g = sg + l * c->dim;
            snprintf(nm, sizeof nm, "blk.%lld.%s.weight", (long long)l, k ? "ffn_norm" : "attn_norm");
            out_vec(&ot[n++], nm, g, c->dim);
            for (int p = k ? PROJ_GATE : PROJ_Q; p < (k ? PROJ_COUNT : PROJ_GATE); p++) {
                snprintf(nm, sizeof nm, "blk.%lld.%s.weight", (long long)l, T[p]);
                OutTensor *o = &ot[n++];
                out_mat(o, nm, &L->proj[p]);
                if (m->format == FMT_HF && c->rope_style == ROPE_NEOX && (p == PROJ_Q || p == PROJ_K))
                    o->perm_hd = c->head_dim;
            }
        }
    }
    out_vec(&ot[n++], "output_norm.weight", m->out_norm, c->dim);
    if (!c->tied_embeddings) out_mat(&ot[n++], "output.weight", &m->output);
    if (m->rope_freqs) out_vec(&ot[n++], "rope_freqs.weight", m->rope_freqs, c->head_dim / 2);
    return n;
}

/* The GGUF `llama` keys of m's config and tokenizer into w; *n_kv counts them. */
static Status write_model_meta(const Model *m, GgufWriter *w, int64_t *n_kv) {
    const ModelConfig *c = &m->cfg;
    const Tokenizer *tok = m->tok;
    TokGgufInfo ti;
    tokenizer_gguf_info(tok, &ti);
    int64_t nt = tokenizer_vocab_size(tok), nm = tokenizer_n_merges(tok);
    const char **pieces = malloc((size_t)(nt > 0 ? nt : 1) * sizeof *pieces);
    float *scores = malloc((size_t)(nt > 0 ? nt : 1) * sizeof *scores);
    int32_t *types = malloc((size_t)(nt > 0 ? nt : 1) * sizeof *types);
    char **merges = NULL;
    int want_merges = !strcmp(ti.model, "gpt2") && nm > 0;
    Status st = ST_ERR_NOMEM;
    if (!pieces || !scores || !types) goto done;
    if (want_merges) {
        if (!(merges = core_calloc((size_t)nm, sizeof *merges))) goto done;
        for (int64_t i = 0; i < nm; i++) {
            char tmp[8];
            size_t len = tokenizer_merge_text(tok, i, tmp, sizeof tmp);
            if (!(merges[i] = malloc(len + 1))) goto done;
            tokenizer_merge_text(tok, i, merges[i], len + 1);
        }
    }
    for (int64_t i = 0; i < nt; i++) {
        pieces[i] = tokenizer_piece(tok, (int32_t)i);
        types[i] = tokenizer_token_type(tok, (int32_t)i);
    }
    tokenizer_gguf_scores(tok, scores);
    int64_t k = 0;
#define KV(call) do { if ((st = (call))) goto done; k++; } while (0)
    KV(gguf_writer_add_str(w, "general.architecture", "llama"));
    KV(gguf_writer_add_str(w, "general.name", m->format == FMT_HF ? "qscope export (Hugging Face source)"
                                                                  : "qscope export (llama2.c source)"));
    KV(gguf_writer_add_u32(w, "llama.context_length", (uint32_t)c->max_seq_len));
    KV(gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)c->dim));
    KV(gguf_writer_add_u32(w, "llama.block_count", (uint32_t)c->n_layers));
    KV(gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden_dim));
    KV(gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads));
    KV(gguf_writer_add_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads));
    KV(gguf_writer_add_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim));
    if (c->head_dim * c->n_heads != c->dim) {
        KV(gguf_writer_add_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim));
        KV(gguf_writer_add_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim));
    }
    KV(gguf_writer_add_f32(w, "llama.rope.freq_base", c->rope_theta));
    if (c->rope_freq_scale != 0 && c->rope_freq_scale != 1) {
        KV(gguf_writer_add_str(w, "llama.rope.scaling.type", "linear"));
        KV(gguf_writer_add_f32(w, "llama.rope.scaling.factor", 1.0f / c->rope_freq_scale));
    }
    KV(gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps));
    KV(gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size));
    KV(gguf_writer_add_str(w, "tokenizer.ggml.model", ti.model));
    if (ti.pre) KV(gguf_writer_add_str(w, "tokenizer.ggml.pre", ti.pre));
    KV(gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", pieces, nt));
    KV(gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", scores, nt));
    KV(gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, nt));
    if (want_merges) KV(gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", (const char *const *)merges, nm));
    if (ti.bos >= 0) KV(gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)ti.bos));
    if (ti.eos >= 0) KV(gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)ti.eos));
    if (ti.unk >= 0) KV(gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)ti.unk));
    KV(gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", ti.add_bos));
    KV(gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", 0));
    if (!strcmp(ti.model, "llama")) KV(gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", ti.add_space_prefix));
#undef KV
    *n_kv += k;
    st = ST_OK;
done:
    if (merges)
        for (int64_t i = 0; i < nm; i++) free(merges[i]);
    free(merges);
    free(pieces);
    free(scores);
    free(types);
    return st;
}

/* Output tensor o for source tensor t of a GGUF source: its bytes as they
 * are, or the stored gain of a smoothed norm. Sites are decided after. */
static void list_gguf_tensor(const Model *m, const QStored *stored, const GgufTensor *t, OutTensor *o) {
    const int64_t L = m->cfg.n_layers;
    snprintf(o->name, sizeof o->name, "%.*s", (int)t->name.len, t->name.s);
    o->type = t->type;
    o->n_dims = (int)t->n_dims;
    memcpy(o->ne, t->ne, sizeof o->ne);
    o->nbytes = t->nbytes;
    o->how = HOW_RAW;
    o->src = t;
    long long l;
    char nm[16];
    int k = 0;
    if (sscanf(o->name, "blk.%lld.%15[a-z_].weight%n", &l, nm, &k) == 2 && o->name[k] == '\0' && l >= 0 && l < L &&
        (!strcmp(nm, "attn_norm") || !strcmp(nm, "ffn_norm"))) {
        const float *g = !strcmp(nm, "attn_norm") ? stored->attn_norm : stored->ffn_norm;
        if (g && stored->smoothed && stored->smoothed[l * 2 + (nm[0] == 'f')]) {
            o->how = HOW_GAIN;
            o->gain = g + l * m->cfg.dim;
            o->type = GGML_F32;
            o->nbytes = (size_t)m->cfg.dim * sizeof(float);
        }
    }
}

/* phi3's stacked tensors: blk.L.attn_qkv = [q; k; v] and blk.L.ffn_up =
 * [gate; up] (qscope splits them at load into the usual sites). Returns the
 * number of parts (3 or 2) with their projections in parts, or 0 when
 * name is not one (or the model is not phi3). */
static int fused_parts(const Model *m, const char *name, int64_t *layer, Proj parts[3]) {
    if (strcmp(m->cfg.arch, "phi3") != 0) return 0;
    long long l;
    char t[32];
    int k = 0;
    if (sscanf(name, "blk.%lld.%31[a-z_].weight%n", &l, t, &k) != 2 || name[k] != '\0' || l < 0 ||
        l >= m->cfg.n_layers)
        return 0;
    *layer = l;
    if (!strcmp(t, "attn_qkv")) {
        parts[0] = PROJ_Q, parts[1] = PROJ_K, parts[2] = PROJ_V;
        return 3;
    }
    if (!strcmp(t, "ffn_up")) {
        parts[0] = PROJ_GATE, parts[1] = PROJ_UP;
        return 2;
    }
    return 0;
}

/* Plans the parts of a stacked tensor o (fused_parts) as the sites they are
 * and joins them: one tensor has one type, so the parts must come out in the
 * same one. When they do not, every part counts as dropped: refused without a
 * fallback, else the whole tensor is written as f16 from the source rows. */
static Status plan_fused(const Model *m, const QModel *qm, const QStored *stored, int64_t l, const Proj *pj, int np,
                         GgufFallback fb, OutTensor *o, int *any_dropped, int64_t *n_of, ExportReport *rep, Err *err) {
    static const char *const T[PROJ_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                              "ffn_gate", "ffn_up", "ffn_down"};
    OutTensor *pt = core_calloc((size_t)np, sizeof *pt);
    if (!pt) return err_set(err, ST_ERR_NOMEM, "%s", o->name);
    o->parts = pt;
    o->n_parts = np;
    int approx[3] = {0}, dropped[3] = {0}, mixed = 0;
    for (int i = 0; i < np; i++) {
        int64_t s = l * PROJ_COUNT + pj[i];
        const Weight *wt = &m->layers[l].proj[pj[i]];
        snprintf(pt[i].name, sizeof pt[i].name, "blk.%lld.%s.weight (rows of %s)", (long long)l, T[pj[i]], o->name);
        pt[i].n_dims = 2;
        pt[i].ne[0] = wt->n_in, pt[i].ne[1] = wt->n_out, pt[i].ne[2] = pt[i].ne[3] = 1;
        pt[i].how = HOW_WEIGHT; /* an fp32 entry keeps the source's rows; plan_site replaces the rest */
        pt[i].w = wt;
        pt[i].type = wt->type;
        pt[i].nbytes = weight_bytes(wt);
        Status st = plan_site(m, &qm->res.lin[s].e, &stored->sites[s], wt, fb, &pt[i], &approx[i], &dropped[i], rep, err);
        if (st) return st;
        if (pt[i].type != pt[0].type) mixed = 1;
    }
    if (mixed) {
        for (int i = 0; i < np; i++) {
            if (!dropped[i])
                export_report_note(rep, EXPORT_DROPPED, pt[i].name, "%s: its stacked tensor holds one type and the "
                                   "parts are planned in different ones", ggml_type_traits(pt[i].type)->name);
            dropped[i] = 1;
            pt[i].how = HOW_F16;
            pt[i].type = GGML_F16;
            pt[i].w = &m->layers[l].proj[pj[i]];
            pt[i].nbytes = ggml_row_bytes(GGML_F16, pt[i].w->n_in) * (size_t)pt[i].w->n_out;
        }
    }
    o->how = HOW_PARTS;
    o->type = pt[0].type;
    o->nbytes = 0;
    for (int i = 0; i < np; i++) {
        o->nbytes += pt[i].nbytes;
        export_report_site(rep, approx[i], dropped[i], 0);
        *any_dropped |= dropped[i];
        if (o->type < GGML_TYPE_LIMIT) n_of[o->type]++;
    }
    return ST_OK;
}

Status gguf_export(const Model *m, const QModel *qm, const QStored *stored, const char *plan_name, GgufFallback fb,
                   const char *out_path, ExportReport *rep, Err *err) {
    memset(rep, 0, sizeof *rep);
    if (!stored) stored = qm->stored;
    Status cs = gguf_export_check_source(m, err);
    if (cs) return cs;
    if (!stored) return err_set(err, ST_ERR_ARG, "export: the quantized model kept no codes (qmodel_build_keep)");
    const int64_t L = m->cfg.n_layers;
    Gguf *src = NULL;
    GgufWriter *w = NULL;
    OutTensor *ot = NULL;
    const int from_gguf = m->format == FMT_GGUF;
    Status st = from_gguf ? gguf_open(m->path, &src, err) : ST_OK;
    if (st) return st;
    int64_t n_t = from_gguf ? src->n_tensors : model_tensor_cap(m);
    if (!(ot = core_calloc((size_t)(n_t > 0 ? n_t : 1), sizeof *ot)) || !(w = gguf_writer_new())) {
        st = err_set(err, ST_ERR_NOMEM, "export");
        goto fail;
    }
    if (!from_gguf) n_t = list_model(m, stored, ot);
    int64_t n_of[GGML_TYPE_LIMIT] = {0};
    int any_dropped = 0;
    for (int64_t i = 0; i < n_t; i++) {
        OutTensor *o = &ot[i];
        if (from_gguf) list_gguf_tensor(m, stored, &src->tensors[i], o);
        int64_t fl;
        Proj fp[3];
        int np = fused_parts(m, o->name, &fl, fp);
        if (np) {
            if ((st = plan_fused(m, qm, stored, fl, fp, np, fb, o, &any_dropped, n_of, rep, err))) goto fail;
            continue;
        }
        int64_t s = site_of(o->name, L);
        if (s >= 0) {
            const PlanEntry *e = s < L * PROJ_COUNT ? &qm->res.lin[s].e : s == L * PROJ_COUNT ? &qm->res.output.e
                                                                                              : &qm->res.embed.e;
            const Weight *wt = s < L * PROJ_COUNT ? &m->layers[s / PROJ_COUNT].proj[s % PROJ_COUNT]
                               : s == L * PROJ_COUNT ? &m->output : &m->tok_embd;
            int approx = 0, dropped = 0;
            if ((st = plan_site(m, e, &stored->sites[s], wt, fb, o, &approx, &dropped, rep, err))) goto fail;
            export_report_site(rep, approx, dropped, 0);
            any_dropped |= dropped;
            if (o->type < GGML_TYPE_LIMIT) n_of[o->type]++;
        }
    }
    if (any_dropped && fb == GGUF_FALLBACK_NONE) {
        st = err_set(err, ST_ERR_UNSUPPORTED, "%s: %" PRId64 " tensor%s no ggml type holds as planned (see the report; "
                     "--fallback nearest|f16 writes them anyway)", out_path, rep->dropped, rep->dropped == 1 ? "" : "s");
        goto fail;
    }
    /* Metadata: the source's, file type and provenance replaced; or, from
     * another format, written from the loaded config and tokenizer. */
    int64_t n_kv = 0;
    if (!from_gguf && (st = write_model_meta(m, w, &n_kv))) goto nomem;
    for (int64_t i = 0; from_gguf && i < src->n_kv; i++) {
        const GgufKV *kv = &src->kv[i];
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.s);
        if (!strcmp(key, "general.alignment") || !strcmp(key, "general.file_type") || !strcmp(key, "qscope.plan"))
            continue;
        if ((st = gguf_writer_add_value(w, key, &kv->value))) goto nomem;
        n_kv++;
    }
    if ((st = gguf_writer_add_u32(w, "general.file_type", file_type_of(n_of))) ||
        (st = gguf_writer_add_str(w, "qscope.plan", plan_name ? plan_name : ""))) goto nomem;
    n_kv += 2;
    FillCtx fc = {ot};
    for (int64_t i = 0; i < n_t; i++)
        if ((st = gguf_writer_add_tensor_fill(w, ot[i].name, ot[i].type, ot[i].n_dims, ot[i].ne, fill, &fc))) goto nomem;
    if ((st = gguf_writer_write(w, out_path, err))) goto fail;
    if ((st = verify(out_path, ot, n_t, n_kv, err))) {
        unlink(out_path);
        goto fail;
    }
    goto fail;
nomem:
    st = err_set(err, st, "%s", out_path);
fail:
    gguf_writer_free(w);
    for (int64_t i = 0; ot && i < n_t; i++) free(ot[i].parts);
    free(ot);
    gguf_free(src);
    return st;
}
