/* `qscope export`: a GGUF llama.cpp loads and runs, carrying the plan's own
 * quantized weights.
 *
 * From a GGUF source every metadata key (tokenizer included;
 * general.alignment dropped, general.file_type set from the written types)
 * and every tensor the plan does not touch (norms, biases, rope factors) are
 * carried over byte for byte. From a Hugging Face directory or a llama2.c
 * .bin (architecture llama, no sliding window) the file is GGUF `llama`:
 * keys written from the loaded config, the tokenizer from the loaded one
 * (tokenizer_gguf_info / tokenizer_gguf_scores: an HF BPE vocabulary with byte
 * fallback becomes a SentencePiece one whose scores follow the merge ranks),
 * norms and rope factors as F32, HF q/k rows permuted back to GGUF's
 * interleaved RoPE order (rows move whole, so quantized rows stay exact). Each planned site (the
 * embedding, every projection, an untied head) is written from qscope's own
 * codes (QStored), bit for bit where a ggml type holds them:
 *   fp32 entry (no quantization)           the source tensor as it is
 *   fp16 / bf16                             F16 / BF16 from the stored bits
 *   ggml formats (q8_0, q4_0, ...)          their blocks, as quantized
 *   int8 / int5 / int4 symmetric            Q8_0 / Q5_0 / Q4_0: each 32-block takes its
 *                                           group's scale (fp16-exact by construction) and
 *                                           the codes; groups along OC that are multiples of
 *                                           32 (per-OC rows included) or one per tensor
 *   int5 / int4 asymmetric, same groups     Q5_1 / Q4_1 with min = -scale·zero when that is
 *                                           exact in fp16 for every group
 * so the file's dequantized weights are exactly qscope's. Nothing else has a
 * ggml type (per-IC groups, groups not a multiple of 32, int8 asym, int6/3/2,
 * fp8, AQLM), nor does an activation format: such entries are refused, or
 * with a fallback written as FALLBACK_F16 (the source weights as F16) or
 * FALLBACK_NEAREST (the source weights through ggml's reference quantizer of
 * the nearest type qscope has one for, else F16); the report lists them.
 * SmoothQuant entries are exact: the smoothed weights and the stored norm
 * gains are written. The file is written atomically (temp file in the
 * destination directory, fsync, rename), then re-read and every tensor
 * compared with what was meant to be written. */
#ifndef QS_SESSIONS_GGUF_EXPORT_H
#define QS_SESSIONS_GGUF_EXPORT_H

#include "analysis/qmodel.h"
#include "core/status.h"
#include "model/model.h"
#include "sessions/export.h"

typedef enum { GGUF_FALLBACK_NONE, GGUF_FALLBACK_NEAREST, GGUF_FALLBACK_F16 } GgufFallback;

/* "none", "nearest", "f16"; parse returns -1 if unknown. */
int gguf_fallback_parse(const char *s);

/* ST_OK when m is a source gguf_export can write from: any GGUF (a phi3's
 * stacked attn_qkv / ffn_up are stacked again from their split sites) and,
 * when not a GGUF, a llama without a sliding window and with a tokenizer; ST_ERR_UNSUPPORTED
 * saying why otherwise. Cheap: callers check it before
 * quantizing, which can take minutes on a real model. */
Status gguf_export_check_source(const Model *m, Err *err);

/* Writes m with the quantized sites of qm (built from m
 * with qmodel_build_keep or qmodel_build_stored, so qm->stored or `stored`
 * holds the codes; stored may be NULL to use qm->stored) to out_path.
 * rep (caller export_report_done's it, also on error) counts the sites:
 * exact, approximate (an activation format dropped), not expressible (a
 * fallback wrote them). Without a fallback an entry no ggml type holds fails
 * with ST_ERR_UNSUPPORTED before anything is written, the report naming
 * them. ST_ERR_FORMAT when the re-read file differs (the file is removed).
 * plan_name goes to the file's "qscope.plan" key. */
Status gguf_export(const Model *m, const QModel *qm, const QStored *stored, const char *plan_name, GgufFallback fb,
                   const char *out_path, ExportReport *rep, Err *err);

#endif
