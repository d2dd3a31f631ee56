/* A quantization plan: which weight format, grouping, method and activation
 * format every linear projection (and the embedding and output head) gets.
 *
 * A plan is a default entry for the linear projections, base entries for the
 * embedding and the output head, and an ordered list of pattern rules; a
 * rule applies some fields (PF_*) of its entry to every site its pattern
 * matches, and later rules win. Resolving a plan against a model's shape
 * gives one concrete entry per (layer, projection), each remembering which
 * rule set each of its fields (for error messages and the UI).
 *
 * Patterns: "LAYERS.PROJS", "embed" or "output", where
 *   LAYERS = "*" | N | N-M, or a comma list of those ("1,30-31");
 *   PROJS  = "*" | a comma list of q, k, v, o, gate, up, down, qkv (= q,k,v),
 *            gate_up (= gate,up) (also q_proj, attn_q, ffn_down ... spellings);
 *   a bare "*" means "*.*".
 * Examples: "*.down", "1.down", "30-31.o", "*.qkv", "*.gate_up", "2.*".
 *
 * Rules are numbered from 1 in messages ("rule 3 '40.down': ...").
 *
 * This module knows nothing of model/ (quant/ sits below it): the model's
 * shape comes in as a PlanModel, which PLAN_MODEL_FROM_CONFIG builds from a
 * ModelConfig, and projections are numbered in model/model.h's Proj order.
 * The JSON form lives in sessions/ and fills / reads these structs. */
#ifndef QS_QUANT_PLAN_H
#define QS_QUANT_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "kernels/actquant.h"
#include "quant/aqlm.h"
#include "quant/format.h"
#include "quant/gptq.h"
#include "quant/qtensor.h"

/* Projections in model/model.h's Proj order (q, k, v, o, gate, up, down). */
enum { PLAN_Q, PLAN_K, PLAN_V, PLAN_O, PLAN_GATE, PLAN_UP, PLAN_DOWN, PLAN_NPROJ };

/* The shape facts a plan needs; PLAN_MODEL_FROM_CONFIG(&cfg) builds it from
 * a model/model.h ModelConfig (or anything with the same field names). */
typedef struct PlanModel {
    int64_t n_layers, dim, hidden_dim, n_heads, n_kv_heads, head_dim, vocab_size;
    int tied_embeddings;     /* output head shares the embedding matrix */
} PlanModel;

#define PLAN_MODEL_FROM_CONFIG(cfg) ((PlanModel){ \
    .n_layers = (cfg)->n_layers, .dim = (cfg)->dim, .hidden_dim = (cfg)->hidden_dim, \
    .n_heads = (cfg)->n_heads, .n_kv_heads = (cfg)->n_kv_heads, .head_dim = (cfg)->head_dim, \
    .vocab_size = (cfg)->vocab_size, .tied_embeddings = (cfg)->tied_embeddings})

/* QM_IMATRIX: ggml block formats only, ggml's importance-weighted rounding
 * (llama-quantize --imatrix) with the calibration's diag(H) as the weights. */
typedef enum { QM_RTN, QM_GPTQ, QM_ADADIM, QM_AQLM, QM_IMATRIX, QM_COUNT } QMethod;
typedef enum { ACT_PER_TENSOR, ACT_PER_TOKEN, ACT_GRAN_COUNT } ActGran;
typedef enum { ACT_DYNAMIC, ACT_STATIC, ACT_SCALE_COUNT } ActScale;

typedef struct PlanEntry {
    QParams w;               /* weight format, sym, grouping dim and size */
    QMethod method;          /* rtn | gptq | adadim | aqlm; formats without
                                scales (fp32/fp16/bf16) are converted directly,
                                whatever the method */
    GptqOpts gptq;           /* for gptq, and adadim with base gptq */
    QMethod adadim_base;     /* QM_RTN or QM_GPTQ */
    AqlmParams aqlm;         /* for w.fmt == QF_AQLM (method aqlm) */
    ActFormat act;           /* activation (input) quantization */
    ActGran act_gran;
    ActScale act_scale;      /* static: scale from calibration's max|x| */
    int act_skip_first;      /* leave token 0 out of the activation range */
    float smooth_alpha;      /* SmoothQuant alpha in (0, 1]; 0 = off. Only on
                                q/k/v (sharing attn_norm) and gate/up (sharing
                                ffn_norm), equal within each set of a layer */
} PlanEntry;

/* Fields a rule may set. */
enum {
    PF_FMT = 1u << 0,        /* w.fmt, w.sym */
    PF_GROUP = 1u << 1,      /* w.dim, w.group */
    PF_METHOD = 1u << 2,     /* method, gptq, adadim_base, aqlm */
    PF_ACT = 1u << 3,        /* act, act_gran, act_scale, act_skip_first */
    PF_SMOOTH = 1u << 4,     /* smooth_alpha */
    PF_ALL = 0x1f,
    PF_NFIELDS = 5
};

typedef struct PlanRule {
    char pattern[64];
    unsigned fields;         /* PF_* bits taken from e */
    PlanEntry e;
} PlanRule;

typedef struct Plan {
    char name[64];           /* preset name or a user label */
    PlanEntry def;           /* every linear projection starts from this */
    PlanEntry embed;         /* token embedding (activation fields must be none) */
    PlanEntry output;        /* output head */
    PlanRule *rules;         /* (n_rules) owned */
    int64_t n_rules, cap_rules;
    char **notes;            /* (n_notes) owned strings: fallbacks and preset choices */
    int64_t n_notes;
} Plan;

/* An fp32 / rtn / per-OC / no-activation-quantization entry with GPTQ defaults. */
void plan_entry_default(PlanEntry *e);

/* Initialises an empty plan: all entries plan_entry_default, no rules. */
void plan_init(Plan *p);

/* Frees rules and notes and re-initialises; safe on an initialised plan. */
void plan_done(Plan *p);

/* Deep copy into *dst (initialised here; caller plan_done's it). */
Status plan_copy(Plan *dst, const Plan *src, Err *err);

/* Appends a rule after checking the pattern's syntax (model-independent);
 * e is copied. ST_ERR_ARG with a detail naming the pattern on a bad one. */
Status plan_add_rule(Plan *p, const char *pattern, unsigned fields, const PlanEntry *e, Err *err);

/* Removes rule i (0-based); returns ST_ERR_RANGE if out of range. */
Status plan_remove_rule(Plan *p, int64_t i, Err *err);

/* Appends a note (printf-style). */
Status plan_add_note(Plan *p, Err *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* One resolved entry: src[k] is the 0-based rule that last set field k
 * (bit k of PF_*), or -1 for the plan's default / embed / output entry. */
typedef struct PlanSiteEntry {
    PlanEntry e;
    int64_t src[PF_NFIELDS];
    int64_t n_out, n_in;     /* the weight's shape */
} PlanSiteEntry;

typedef struct PlanResolved {
    int64_t n_layers;
    PlanSiteEntry *lin;      /* (n_layers * PLAN_NPROJ), [layer * PLAN_NPROJ + proj] */
    PlanSiteEntry embed, output;
} PlanResolved;

/* Applies the rules to m's sites. Fails (ST_ERR_ARG) on a pattern naming a
 * layer the model lacks: "rule 3 '40.down': layer 40 does not exist (model
 * has 5 layers)". Caller releases *out with plan_resolved_done. */
Status plan_resolve(const Plan *p, const PlanModel *m, PlanResolved *out, Err *err);

/* Frees a resolution; safe on a zeroed one. */
void plan_resolved_done(PlanResolved *r);

/* Resolves and checks every entry against m. The error names the rule (or
 * "default entry", "embed entry", "output entry") that set the offending
 * field, e.g. "rule 2 '*.down': group 128 does not divide down_proj's input
 * dim 172". */
Status plan_validate(const Plan *p, const PlanModel *m, Err *err);

/* Replaces every group size that does not divide its dimension by the
 * largest divisor <= g that is a multiple of 8 (else of 4), else per-channel
 * (group 0), by appending PF_GROUP rules, and records one note per fallback,
 * e.g. "*.down: group 128 -> 4 (172 = 4·43)". AdaDim entries need a divisor
 * of both dimensions. Returns the number of rules added in *n_added (may be NULL). */
Status plan_fix_groups(Plan *p, const PlanModel *m, int64_t *n_added, Err *err);

/* === Size accounting === */

/* Exact bits of an AQLM matrix (quant/aqlm.h's aqlm_bits fits). */
typedef uint64_t (*PlanAqlmBitsFn)(const AqlmParams *p, int64_t n_out, int64_t n_in);

typedef struct PlanSizeOpts {
    PlanAqlmBitsFn aqlm_bits;        /* NULL: quant/aqlm.h's aqlm_bits */
    const GroupDim *adadim_dims;     /* (n_layers * PLAN_NPROJ) dims AdaDim chose, or NULL:
                                        then the larger of the OC and IC sizes is counted */
} PlanSizeOpts;

typedef struct PlanSize {
    int64_t lin_params;              /* weights of the linear projections */
    int64_t lin_bits;                /* their exact bits (codes, scales, zeros, codebooks) */
    int64_t all_params, all_bits;    /* plus embedding and output head (a tied head
                                        stored in the embedding's format counts once) */
    size_t lin_bytes, all_bytes;     /* sums of per-matrix byte sizes */
    double bpw_lin, bpw_all;         /* bits / params */
    int64_t fmt_params[QF_COUNT];    /* linear-layer weights per weight format */
    int64_t fmt_bits[QF_COUNT];
} PlanSize;

/* Computes the exact size of p on m (validating it first). opts may be NULL. */
Status plan_size(const Plan *p, const PlanModel *m, const PlanSizeOpts *opts, PlanSize *out, Err *err);

/* Convenience: total bytes (linear layers + embedding + head); 0 if p is invalid. */
size_t plan_bytes(const Plan *p, const PlanModel *m);

/* Exact bits of one entry on an (n_out, n_in) matrix; adadim_dim picks the
 * AdaDim variant (GROUP_TENSOR = unknown: the larger). bits_fn may be NULL (aqlm_bits). */
int64_t plan_entry_bits(const PlanEntry *e, int64_t n_out, int64_t n_in, GroupDim adadim_dim,
                        PlanAqlmBitsFn bits_fn);
size_t plan_entry_bytes(const PlanEntry *e, int64_t n_out, int64_t n_in, GroupDim adadim_dim,
                        PlanAqlmBitsFn bits_fn);

/* === Names and UI codes === */

/* Compact UI code of an entry, written into buf (size n, >= 32 advised):
 *   weight: format code ("F16", "BF16", "E4M3", "I8" ...), "a" suffix for
 *     asymmetric integers, then for formats with scales "/" + grouping:
 *     "t" per-tensor, "oc"/"ic" + group size if any ("I4/oc128", "I3a/ic64"),
 *     "ad" for AdaDim ("I4/ad128"); AQLM "AQ2x8g8";
 *   method: "·G" for GPTQ (also under AdaDim);
 *   activations: "·A8" int8, "·E4"/"·E5" fp8, followed by "t" per-token,
 *     "s" static scale, "k" skip token 0 ("I8/oc·A8t");
 *   SmoothQuant: "·S".
 * Returns buf. */
char *plan_entry_code(const PlanEntry *e, char *buf, size_t n);

/* Names used by the JSON form and the CLI; parse functions return -1 if unknown. */
const char *qmethod_name(QMethod m);          /* "rtn" "gptq" "adadim" "aqlm" */
int qmethod_parse(const char *s);
/* act_format_name is kernels/actquant.h's; the parse also takes the quant
 * formats' spellings (int8, fp8 aliases) and f32/fp32 for none. */
int act_format_parse(const char *s);
const char *act_gran_name(ActGran g);         /* "tensor" "token" */
int act_gran_parse(const char *s);
const char *act_scale_name(ActScale s);       /* "dynamic" "static" */
int act_scale_parse(const char *s);
const char *plan_proj_name(int proj);         /* "q" ... "down" */

/* The weight format an activation format quantizes to (QF_F32 for none). */
QFormat act_format_qformat(ActFormat a);

/* Shape (n_out, n_in) of projection proj in m. */
void plan_proj_shape(const PlanModel *m, int proj, int64_t *n_out, int64_t *n_in);

/* Returns 1 if pattern matches (layer, proj) (syntax assumed valid), 0 otherwise. */
int plan_pattern_matches(const char *pattern, int64_t layer, int proj);

#endif
