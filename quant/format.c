#include "quant/format.h"

#include <strings.h>

/* name, code, bits, is_int, is_fp8, needs_scale, act_ok */
static const QFormatTraits FORMATS[QF_COUNT] = {
    [QF_F32] = {"fp32", "F32", 32, 0, 0, 0, 0},
    [QF_F16] = {"fp16", "F16", 16, 0, 0, 0, 0},
    [QF_BF16] = {"bf16", "BF16", 16, 0, 0, 0, 0},
    [QF_FP8_E4M3] = {"fp8-e4m3", "E4M3", 8, 0, 1, 1, 1},
    [QF_FP8_E5M2] = {"fp8-e5m2", "E5M2", 8, 0, 1, 1, 1},
    [QF_INT8] = {"int8", "I8", 8, 1, 0, 1, 1},
    [QF_INT6] = {"int6", "I6", 6, 1, 0, 1, 0},
    [QF_INT5] = {"int5", "I5", 5, 1, 0, 1, 0},
    [QF_INT4] = {"int4", "I4", 4, 1, 0, 1, 0},
    [QF_INT3] = {"int3", "I3", 3, 1, 0, 1, 0},
    [QF_INT2] = {"int2", "I2", 2, 1, 0, 1, 0},
    /* AQLM's size comes from its codebook parameters, not a per-element width. */
    [QF_AQLM] = {"aqlm", "AQ", 0, 0, 0, 0, 0},
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
