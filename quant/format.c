#include "quant/format.h"

#include <math.h>
#include <string.h>
#include <strings.h>

#include "core/fpconv.h"
#include "kernels/wq_gemm.h"
#include "quant/ggml_type.h"
#include "quant/qtensor.h"
#include "quant/rtn.h"

/* === Integer grids === */

/* Rounds the raw scale s up to fp16 and, for asymmetric grids, fits the zero point. */
static Status fit_finish(const QFormatTraits *t, int sym, float lo, float hi, float s, float *scale, float *zero,
                         Err *err) {
    float sc = rtn_fp16_ceil(s);
    if (isinf(sc))
        return err_set(err, ST_ERR_RANGE, "group range [%g, %g] needs a scale %g beyond fp16's 65504", lo, hi, s);
    *scale = sc;
    if (t->is_int && !sym) {
        float maxq = (float)((1 << t->bits) - 1);
        float z = rtn_round_even(-fminf(lo, 0.0f) / sc);
        *zero = fminf(fmaxf(z, 0.0f), maxq);
    }
    return ST_OK;
}

/* Symmetric: max|w| / (2^(b-1) - 1). Asymmetric (GPTQ's min-max convention):
 * [min, max] widened to include 0, over 2^b - 1 steps. */
static Status fit_int(const QFormatTraits *t, int sym, float lo, float hi, float *scale, float *zero, Err *err) {
    *scale = 0.0f;
    *zero = 0.0f;
    float s;
    if (sym) {
        float amax = fmaxf(fabsf(lo), fabsf(hi));
        if (amax == 0.0f) return ST_OK;
        s = amax / (float)((1 << (t->bits - 1)) - 1);
    } else {
        float mn = fminf(lo, 0.0f), mx = fmaxf(hi, 0.0f);
        if (mx == mn) return ST_OK;
        s = (mx - mn) / (float)((1 << t->bits) - 1);
    }
    return fit_finish(t, sym, lo, hi, s, scale, zero, err);
}

static float quant_int(const QFormatTraits *t, int sym, float scale, float zero, float w, int *code) {
    return rtn_quant_int_inline(t->bits, sym, scale, zero, w, code);
}

static void span_int(const QFormatTraits *t, int sym, const float *scale, const float *zero, int64_t sstep,
                     const float *w, int64_t n, uint8_t *codes, float *wq) {
    const int bits = t->bits;
    for (int64_t i = 0; i < n; i++) {
        int code;
        float v = rtn_quant_int_inline(bits, sym, scale[i * sstep], zero[i * sstep], w[i], &code);
        if (codes) codes[i] = (uint8_t)(int8_t)code;
        if (wq) wq[i] = v;
    }
}

static float dequant_int(const QFormatTraits *t, int sym, float scale, float zero, int code) {
    if (sym) return (float)code * scale;
    return ((float)(code + (1 << (t->bits - 1))) - zero) * scale;
}

static WqGroup wq_group(GroupDim d) {
    switch (d) {
    case GROUP_OC: return WQ_GROUP_OC;
    case GROUP_IC: return WQ_GROUP_IC;
    default: return WQ_GROUP_TENSOR;
    }
}

int group_dim_wq(GroupDim d) { return (int)wq_group(d); }

/* int5 and int6 are stored in bytes (U8); int4/3/2 in their own widths. */
static Status pack_int(const QTensor *q, WqMatrix *out, Err *err) {
    const QFormatTraits *t = qformat_traits(q->p.fmt);
    int store = t->bits >= 5 ? 8 : t->bits;
    return wqmat_pack_int(q->q, t->bits, store, q->n_out, q->n_in, wq_group(q->p.dim), q->p.group, q->scale,
                          q->p.sym ? NULL : q->zero, out, err);
}

/* === fp8 codes (always symmetric: scale = max|w| / FP8_MAX) === */

static Status fit_fp8(const QFormatTraits *t, float fmax, float lo, float hi, float *scale, float *zero, Err *err) {
    *scale = 0.0f;
    *zero = 0.0f;
    float amax = fmaxf(fabsf(lo), fabsf(hi));
    if (amax == 0.0f) return ST_OK;
    return fit_finish(t, 1, lo, hi, amax / fmax, scale, zero, err);
}

static Status fit_e4m3(const QFormatTraits *t, int sym, float lo, float hi, float *scale, float *zero, Err *err) {
    (void)sym;
    return fit_fp8(t, FP8_E4M3_MAX, lo, hi, scale, zero, err);
}

static Status fit_e5m2(const QFormatTraits *t, int sym, float lo, float hi, float *scale, float *zero, Err *err) {
    (void)sym;
    return fit_fp8(t, FP8_E5M2_MAX, lo, hi, scale, zero, err);
}

static void span_fp8(int e4, const float *scale, int64_t sstep, const float *w, int64_t n, uint8_t *codes,
                     float *wq) {
    for (int64_t i = 0; i < n; i++) {
        int code;
        float v = rtn_quant_fp8_inline(e4, scale[i * sstep], w[i], &code);
        if (codes) codes[i] = (uint8_t)code;
        if (wq) wq[i] = v;
    }
}

#define FP8_VARIANT(sfx, e4)                                                                                     \
    static float quant_##sfx(const QFormatTraits *t, int sym, float scale, float zero, float w, int *code) {    \
        (void)t, (void)sym, (void)zero;                                                                         \
        return rtn_quant_fp8_inline(e4, scale, w, code);                                                        \
    }                                                                                                           \
    static void span_##sfx(const QFormatTraits *t, int sym, const float *scale, const float *zero,              \
                           int64_t sstep, const float *w, int64_t n, uint8_t *codes, float *wq) {               \
        (void)t, (void)sym, (void)zero;                                                                         \
        span_fp8(e4, scale, sstep, w, n, codes, wq);                                                            \
    }                                                                                                           \
    static float dequant_##sfx(const QFormatTraits *t, int sym, float scale, float zero, int code) {            \
        (void)t, (void)sym, (void)zero;                                                                         \
        return rtn_fp8_decode((uint8_t)code, e4) * scale;                                                       \
    }                                                                                                           \
    static Status pack_##sfx(const QTensor *q, WqMatrix *out, Err *err) {                                      \
        return wqmat_pack_fp8(q->f8, !(e4), q->n_out, q->n_in, wq_group(q->p.dim), q->p.group, q->scale, out,   \
                              err);                                                                             \
    }
FP8_VARIANT(e4m3, 1)
FP8_VARIANT(e5m2, 0)

/* === Plain values === */

static void convert_f32(const float *w, void *codes, size_t n) { memmove(codes, w, n * sizeof(float)); }
static void decode_f32(const void *codes, float *w, size_t n) { memmove(w, codes, n * sizeof(float)); }

static void convert_f16(const float *w, void *codes, size_t n) {
    uint16_t *h = codes;
    for (size_t i = 0; i < n; i++) h[i] = f32_to_fp16(w[i]);
}

static void decode_f16(const void *codes, float *w, size_t n) {
    const uint16_t *h = codes;
    for (size_t i = 0; i < n; i++) w[i] = fp16_to_f32(h[i]);
}

static void convert_bf16(const float *w, void *codes, size_t n) {
    uint16_t *h = codes;
    for (size_t i = 0; i < n; i++) h[i] = f32_to_bf16(w[i]);
}

static void decode_bf16(const void *codes, float *w, size_t n) {
    const uint16_t *h = codes;
    for (size_t i = 0; i < n; i++) w[i] = bf16_to_f32(h[i]);
}

static Status pack_f32(const QTensor *q, WqMatrix *out, Err *err) {
    return wqmat_pack_f32(q->f, q->n_out, q->n_in, out, err);
}

static Status pack_f16(const QTensor *q, WqMatrix *out, Err *err) {
    return wqmat_pack_f16(q->h, 0, q->n_out, q->n_in, out, err);
}

static Status pack_bf16(const QTensor *q, WqMatrix *out, Err *err) {
    return wqmat_pack_f16(q->h, 1, q->n_out, q->n_in, out, err);
}

/* === ggml blocks === */

static Status pack_blocks(const QTensor *q, WqMatrix *out, Err *err) {
    const QFormatTraits *t = qformat_traits(q->p.fmt);
    const GgmlTypeTraits *g = ggml_type_traits((uint32_t)t->ggml_type);
    return wqmat_pack_blocks(q->blk, ggml_row_bytes((uint32_t)t->ggml_type, q->n_in), g->block_size, g->dequant,
                             block_dot_fn((BlockDotKind)t->block_dot), q->n_out, q->n_in, out, err);
}

/* === The table === */

#define FLOAT_ROW(nm, cd, b, st, sz, cy, ecy, ggml, krn, sfx)                                                   \
    {nm, cd, b, QFAM_FLOAT, 0, 0, 0, 0, st, sz, -1, -1, cy, ecy, 0, ggml, {ggml, ggml}, 0, krn, 0,                  \
     NULL, NULL, NULL, NULL, convert_##sfx, decode_##sfx, pack_##sfx}
#define FP8_ROW(nm, cd, cy, ecy, sens, sfx)                                                                     \
    {nm, cd, 8, QFAM_FP8, 0, 1, 1, 1, QSTORE_U8, 1, -1, -1, cy, ecy, sens, -1, {-1, -1}, 0, nm, 0,                  \
     fit_##sfx, quant_##sfx, span_##sfx, dequant_##sfx, NULL, NULL, pack_##sfx}
/* near: the ggml type for rows of its block; b32a/b32s: the 32-element block
 * types for asymmetric / symmetric grids; oc32: oc32 groups write those. */
#define INT_ROW(nm, cd, b, act, cy, ecy, sens, near, b32a, b32s, oc32)                                          \
    {nm, cd, b, QFAM_INT, 1, 0, 1, act, QSTORE_I8, 1, -1, -1, cy, ecy, sens, near, {b32a, b32s}, oc32, "wq-" nm, 0, \
     fit_int, quant_int, span_int, dequant_int, NULL, NULL, pack_int}

/* bits: the nominal code width (block scales come on top: see qparams_bits). */
#define GGML_ROW(nm, cd, b, cy, ecy, sens, type, fb, dot)                                                             \
    {nm, cd, b, QFAM_GGML, 0, 0, 0, 0, QSTORE_BLOCKS, 0, type, fb, cy, ecy, sens, type, {-1, -1}, 0, "ggml-" nm, dot,  \
     NULL, NULL, NULL, NULL, NULL, NULL, pack_blocks}

static const QFormatTraits FORMATS[QF_COUNT] = {
    [QF_F32] = FLOAT_ROW("fp32", "F32", 32, QSTORE_F32, 4, 30, 30, GGML_F32, "f32", f32),
    [QF_F16] = FLOAT_ROW("fp16", "F16", 16, QSTORE_U16, 2, 1, 1, GGML_F16, "fp16", f16),
    [QF_BF16] = FLOAT_ROW("bf16", "BF16", 16, QSTORE_U16, 2, 2, 2, GGML_BF16, "bf16", bf16),
    [QF_FP8_E4M3] = FP8_ROW("fp8-e4m3", "E4M3", 3, 3, 7, e4m3),
    [QF_FP8_E5M2] = FP8_ROW("fp8-e5m2", "E5M2", 4, 4, 8, e5m2),
    [QF_INT8] = INT_ROW("int8", "I8", 8, 1, 5, 5, 1, GGML_Q8_0, GGML_Q8_0, GGML_Q8_0, 0),
    [QF_INT6] = INT_ROW("int6", "I6", 6, 0, 6, 0, 2, GGML_Q6_K, GGML_Q8_0, GGML_Q8_0, 0),
    [QF_INT5] = INT_ROW("int5", "I5", 5, 0, 7, 0, 3, GGML_Q5_K, GGML_Q5_1, GGML_Q5_0, 1),
    [QF_INT4] = INT_ROW("int4", "I4", 4, 0, 8, 6, 4, GGML_Q4_K, GGML_Q4_1, GGML_Q4_0, 1),
    [QF_INT3] = INT_ROW("int3", "I3", 3, 0, 9, 0, 5, GGML_Q3_K, GGML_Q4_0, GGML_Q4_0, 0),
    [QF_INT2] = INT_ROW("int2", "I2", 2, 0, 10, 0, 6, GGML_Q2_K, GGML_Q4_0, GGML_Q4_0, 0),
    /* AQLM's size comes from its codebook parameters, not a per-element width;
     * quant/aqlm.h quantizes it and quant/qlinear_aqlm.h runs it. */
    [QF_AQLM] = {"aqlm", "AQ", 0, QFAM_AQLM, 0, 0, 0, 0, QSTORE_NONE, 0, -1, -1, 25, 0, 0, -1, {-1, -1}, 0, "aqlm", 0,
                 NULL, NULL, NULL, NULL, NULL, NULL, NULL},
    /* ggml's block types, quantized by ggml's reference algorithms
     * (quant/ggml_type.c: byte-identical to llama-quantize without an
     * imatrix) and run from their own blocks. Cycle positions 11-20 sit
     * between int2 and aqlm; in the end cycle 7-10, before fp32; in the
     * sensitivity map 9-18, after the scaled formats (their one cell is
     * SG_BLOCK: their own blocks, no plan grouping). */
    [QF_Q8_0] = GGML_ROW("q8_0", "Q8_0", 8, 11, 7, 9, GGML_Q8_0, QF_F16, BLOCK_DOT_Q8_0),
    [QF_Q6_K] = GGML_ROW("q6_k", "Q6_K", 6, 12, 8, 10, GGML_Q6_K, QF_Q8_0, BLOCK_DOT_NONE),
    [QF_Q5_K] = GGML_ROW("q5_k", "Q5_K", 5, 13, 0, 11, GGML_Q5_K, QF_Q5_1, BLOCK_DOT_NONE),
    [QF_Q5_1] = GGML_ROW("q5_1", "Q5_1", 5, 14, 0, 12, GGML_Q5_1, QF_F16, BLOCK_DOT_NONE),
    [QF_Q5_0] = GGML_ROW("q5_0", "Q5_0", 5, 15, 0, 13, GGML_Q5_0, QF_F16, BLOCK_DOT_NONE),
    [QF_Q4_K] = GGML_ROW("q4_k", "Q4_K", 4, 16, 9, 14, GGML_Q4_K, QF_Q5_0, BLOCK_DOT_Q4_K),
    [QF_Q4_1] = GGML_ROW("q4_1", "Q4_1", 4, 17, 0, 15, GGML_Q4_1, QF_F16, BLOCK_DOT_NONE),
    [QF_Q4_0] = GGML_ROW("q4_0", "Q4_0", 4, 18, 10, 16, GGML_Q4_0, QF_F16, BLOCK_DOT_Q4_0),
    [QF_Q3_K] = GGML_ROW("q3_k", "Q3_K", 3, 19, 0, 17, GGML_Q3_K, QF_Q4_0, BLOCK_DOT_NONE),
    [QF_Q2_K] = GGML_ROW("q2_k", "Q2_K", 2, 20, 0, 18, GGML_Q2_K, QF_Q4_0, BLOCK_DOT_NONE),
};

/* Extra spellings accepted on input (all case-insensitive). */
static const struct { const char *s; QFormat f; } ALIASES[] = {
    {"f32", QF_F32}, {"float32", QF_F32}, {"float", QF_F32},
    {"f16", QF_F16}, {"half", QF_F16}, {"float16", QF_F16},
    {"bfloat16", QF_BF16},
    {"e4m3", QF_FP8_E4M3}, {"fp8", QF_FP8_E4M3}, {"fp8e4m3", QF_FP8_E4M3}, {"fp8_e4m3", QF_FP8_E4M3},
    {"e5m2", QF_FP8_E5M2}, {"fp8e5m2", QF_FP8_E5M2}, {"fp8_e5m2", QF_FP8_E5M2},
};

const QFormatTraits *qformat_traits(QFormat f) {
    if ((int)f < 0 || f >= QF_COUNT) return NULL;
    return &FORMATS[f];
}

int qformat_parse(const char *s) {
    if (!s) return -1;
    for (int i = 0; i < QF_COUNT; i++)
        if (!strcasecmp(s, FORMATS[i].name) || !strcasecmp(s, FORMATS[i].code)) return i;
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++)
        if (!strcasecmp(s, ALIASES[i].s)) return (int)ALIASES[i].f;
    return -1;
}

static int list_pos(const QFormatTraits *t, QFormatList which) {
    return which == QLIST_CYCLE ? t->cycle : which == QLIST_END_CYCLE ? t->end_cycle : which == QLIST_SENS ? t->sens : 0;
}

int qformat_list(QFormatList which, QFormat *out, int cap) {
    int n = 0;
    for (int pos = 1; pos < 64; pos++) /* positions are small: gaps leave room for rows */
        for (int f = 0; f < QF_COUNT; f++)
            if (list_pos(&FORMATS[f], which) == pos) {
                if (n < cap) out[n] = (QFormat)f;
                n++;
            }
    return n;
}

static const char *const GROUP_NAMES[GROUP_COUNT] = {"tensor", "oc", "ic"};

const char *group_dim_name(GroupDim d) {
    if ((int)d < 0 || d >= GROUP_COUNT) return "?";
    return GROUP_NAMES[d];
}

int group_dim_parse(const char *s) {
    if (!s) return -1;
    for (int i = 0; i < GROUP_COUNT; i++)
        if (!strcasecmp(s, GROUP_NAMES[i])) return i;
    if (!strcasecmp(s, "per-tensor") || !strcasecmp(s, "t")) return GROUP_TENSOR;
    if (!strcasecmp(s, "per-oc") || !strcasecmp(s, "row")) return GROUP_OC;
    if (!strcasecmp(s, "per-ic") || !strcasecmp(s, "col")) return GROUP_IC;
    return -1;
}
