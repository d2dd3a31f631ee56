/* Plan export for the tools people deploy with, and import back.
 *
 * A plan is resolved on a model shape first (PlanModel), so each target gets
 * one decision per tensor / module, and every entry the target cannot say
 * exactly is reported (approximated, or left out and kept at 16 bits). The
 * consumers' parsing rules each output is written for are quoted, with the
 * file and function they come from, in docs/sessions.md.
 *
 * llama.cpp (`llama-quantize --tensor-type-file FILE IN OUT Q8_0`): one
 * anchored entry per tensor, "^blk\.1\.ffn_down\.weight$=q4_k", and nothing
 * else (the file is read as whitespace-separated NAME=TYPE tokens; a '#'
 * line is a malformed entry). Each tensor takes the first entry whose regex
 * std::regex_search matches, so entries are anchored and never overlap. Use
 * Q8_0 as the base type: llama-quantize skips an entry whose type equals the
 * base type's and lets its mixture rules pick, and for Q8_0 they keep Q8_0.
 * Mapping (weights only):
 *   fp32/fp16/bf16          -> f32/f16/bf16                       exact
 *   int8 sym, OC group 32   -> q8_0                               approximate: q8_0's grid, but ggml
 *                                                                  rounds the fp16 scale to nearest
 *   int8 otherwise          -> q8_0                               approximate (blocks of 32)
 *   int4 OC group 32        -> q4_0 (sym) / q4_1 (asym)           approximate (q4_0 has 16 levels
 *                                                                  [-8, 7]; q4_1 stores a float min)
 *   int4 other groups       -> q4_k (n_in % 256 == 0, else q4_0/q4_1)  approximate (6-bit sub-block
 *                                                                  scales in super-blocks of 256)
 *   int5                    -> q5_k / q5_0 / q5_1 alike;  int6 -> q6_k;  int3 -> q3_k;  int2 -> q2_k
 *   fp8, aqlm               -> not expressible: written as f16 and reported
 * A row length (n_in) that is not a multiple of the type's block (32, or 256
 * for k-quants) cannot hold that type: the tensor is written as f16 and
 * reported. Also reported: GPTQ/AdaDim (llama-quantize rounds; an imatrix
 * is the closest), per-IC or per-tensor grouping, activation quantization
 * and SmoothQuant (no equivalent: ggml picks the activation format itself).
 *
 * GPTQModel (QuantizeConfig JSON, method gptq): the most common quantized
 * projection entry gives the base {bits, group_size (-1 = per channel),
 * desc_act, act_group_aware (false: on by default, and qscope has no
 * group-aware reordering), static_groups (qscope's act-order fits groups up
 * front in the original order), sym, damp_percent}, format gptq (gptq_p when
 * a 5/6-bit module exists: GPTQModel's planar layout); other modules get
 * "+:REGEX" overrides with every one of those keys on
 * "model.layers.N.mlp.down_proj"-style names (one per projection when every
 * layer agrees), 16/32-bit modules "-:REGEX" (skipped). Not expressible:
 * group sizes no GPTQ kernel loads (anything but -1 16 32 64 128 256 512 1024
 * or the row length), per-IC and per-tensor scales, non-int formats.
 * GPTQModel always runs GPTQ (RTN entries approximate), never quantizes the
 * embedding, and is weight-only.
 *
 * llm-compressor (recipe YAML): one QuantizationModifier (GPTQModifier when
 * any entry uses GPTQ, with `actorder` written out: static for qscope's
 * act-order, null otherwise; one value per recipe) whose config_groups hold
 * one scheme per distinct entry: weights {num_bits, type int|float,
 * symmetric, strategy tensor | channel | group, group_size}, input_activations
 * for W8A8 entries {num_bits 8, type, symmetric, strategy tensor|token,
 * dynamic}, targets as "re:" regexes; unquantized modules in `ignore`;
 * SmoothQuant as a SmoothQuantModifier(smoothing_strength). fp8-e4m3 is
 * expressible here; fp8-e5m2, AQLM, per-IC groups, static per-token
 * activation scales and skipped-first-token ranges are not. Entries vLLM
 * cannot serve (int8 activations with a dynamic per-tensor scale, W8A8 with
 * grouped or asymmetric weights) are reported as "not servable". */
#ifndef QS_SESSIONS_EXPORT_H
#define QS_SESSIONS_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "quant/plan.h"

typedef enum { EXPORT_LLAMACPP, EXPORT_GPTQMODEL, EXPORT_LLMCOMPRESSOR, EXPORT_COUNT } ExportTarget;

/* "llamacpp", "gptqmodel", "llmcompressor"; parse returns -1 if unknown. */
const char *export_target_name(ExportTarget t);
int export_target_parse(const char *s);

/* APPROX: written, but not the same; DROPPED: not written as planned ("not
 * expressible"); UNSERVABLE: written as planned, but the serving engine the
 * target feeds (vLLM for llm-compressor) has no kernel for it. */
typedef enum { EXPORT_APPROX, EXPORT_DROPPED, EXPORT_UNSERVABLE } ExportSeverity;

/* One kind of problem, with how many tensors it hit and a few of them. */
typedef struct ExportNote {
    ExportSeverity sev;
    char msg[200];
    int64_t count;
    char examples[160];      /* first few tensor/module names, comma-separated */
} ExportNote;

typedef struct ExportReport {
    int64_t sites;           /* tensors considered (projections + embedding + head) */
    int64_t exact, approx, dropped;  /* each site counted once, by its worst note */
    int64_t unservable;      /* sites with an UNSERVABLE note (counted apart) */
    ExportNote *notes;       /* (n_notes) owned */
    int64_t n_notes;
} ExportReport;

/* Releases rep->notes and zeroes it; safe on a zeroed report. */
void export_report_done(ExportReport *rep);

/* The report as text ("exact 30, approximate 5, not expressible 0" then one
 * line per note); heap, caller frees; NULL when memory runs out. */
char *export_report_text(const ExportReport *rep);

/* For other writers of a report (sessions/gguf_export.c): adds a note of
 * sev hit by site (merging equal messages), and counts one site by its
 * worst note (dropped > approx > exact; unservable counted apart). */
void export_report_note(ExportReport *rep, ExportSeverity sev, const char *site, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void export_report_site(ExportReport *rep, int approx, int dropped, int unservable);

/* Exports p (validated on m first: plan_validate's error) for target t into
 * *out (heap text, caller frees) and fills *rep (caller export_report_done's
 * it, also on error). */
Status plan_export(const Plan *p, const PlanModel *m, ExportTarget t, char **out, ExportReport *rep, Err *err);

/* Reads a llama.cpp tensor-type file or the arguments of --tensor-type
 * (len bytes of whitespace-separated NAME=TYPE entries; '#' lines, which
 * llama-quantize itself rejects, are skipped) into a plan. With m, each
 * NAME is the regex llama-quantize takes it for (lowercased, then
 * std::regex_search; \d \w \s and POSIX ERE are understood) and each
 * tensor of m takes the first entry that matches. Without m, only literal
 * names (optionally ^...$-anchored, dots as "\."): "blk.N.<tensor>[.weight]"
 * sets (N, proj), "<tensor>" every layer, token_embd / ^output\.weight$ the
 * embedding / head; an unanchored "output" (it also matches attn_output) and
 * other regexes are refused with a request for the model.
 * Types map back as q8_0 -> int8 sym oc32, q4_0 -> int4 sym oc32, q4_1 and
 * q4_k -> int4 asym oc32, q5_0 -> int5 sym oc32, q5_1 and q5_k -> int5 asym
 * oc32, q6_k -> int6 sym oc16, q3_k -> int3 sym oc16, q2_k -> int2 asym oc16,
 * f32/f16/bf16 as themselves; tensors not named keep the plan default (fp32:
 * llama-quantize's own base type is not in the file; a plan note says so).
 * Errors name `where`, the line and what was expected. m may be NULL (no
 * layer-range check); with m the plan is validated. *out is initialised
 * here (caller plan_done's it, also on error). */
Status plan_import_llamacpp(const char *text, size_t len, const char *where, const PlanModel *m, Plan *out,
                            Err *err);

#endif
