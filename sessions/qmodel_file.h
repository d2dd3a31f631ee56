/* The quantized-model file (`qscope quant -o FILE`): a quantized model's
 * unpacked weights plus the plan that made them, so `qscope eval --quant
 * FILE` runs it without re-quantizing (GPTQ/AQLM on a large model take
 * minutes). Our own container, little-endian, no struct dumps:
 *
 *   "QSQM", u32 version (1)
 *   u64 model fingerprint, i64 n_layers, dim, vocab
 *   u32 plan JSON length, the plan JSON (sessions/plan_json.h)
 *   u8 smoothed[n_layers·2] (attn, ffn); u8 has_attn, has_ffn; then the
 *     replaced gains as f32 (n_layers, dim) for each that is present
 *   per site, n_layers·7 projections (q k v o gate up down per layer), then the
 *   output head, then the embedding:
 *     u8 kind (0 none: the model's f32 weight, 1 qtensor, 2 aqlm),
 *     f32 act_absmax, i32 adadim_dim, f64 rel_err
 *     qtensor: i32 format, i32 sym, i32 group_dim, i64 group, n_out, n_in,

 *       fp16/bf16, f32 for fp32); f32 scales (n_groups) for formats with
 *       scales; f32 zero points (n_groups) for asymmetric integers
 *     aqlm: i32 M, B, g; i64 n_out, n_in; f32 codebooks (M, 2^B, g),
 *       u16 codes (n_out, n_in/g, M), f32 scales (n_out)
 *   u64 FNV-1a checksum of everything before it.
 *
 * The reader bounds every count and length, checks every code against its
 * format's range and every scale for finiteness, and names the file, the
 * field and its byte offset on error. */
#ifndef QS_SESSIONS_QMODEL_FILE_H
#define QS_SESSIONS_QMODEL_FILE_H

#include "analysis/qmodel.h"
#include "core/bytes.h"
#include "core/status.h"
#include "model/model.h"
#include "quant/plan.h"

#define QMODEL_FILE_VERSION 1

/* Writes qm (built with qmodel_build_keep, so qm->stored is set) and its
 * plan p to path atomically. ST_ERR_STATE when qm kept no weights. */
Status qmodel_file_save(const QModel *qm, const Plan *p, const char *path, Err *err);

/* Reads path for model m: the plan into *plan (initialised here; caller
 * plan_done's it) and the weights into *out (caller qstored_free's it), for
 * qmodel_build_stored. Fails with ST_ERR_MISMATCH when the file was made
 * from another model, ST_ERR_FORMAT on a malformed file. */
Status qmodel_file_load(const char *path, const Model *m, Plan *plan, QStored **out, Err *err);

/* One site in the file's site format (the layout above), appended to w;
 * a failure sticks in w (core/bytes.h). Also the wire form of a site
 * quantized on another process (sessions/qmodel_dist.h). */
void qmodel_file_put_site(ByteWriter *w, const QStoredSite *s);

/* Reads one site written by qmodel_file_put_site into *x (owned by the
 * caller afterwards: qtensor_done / aqlm_tensor_done, or a QStored's
 * qstored_free), with every check of qmodel_file_load; `site` names it in
 * errors ("3.down"). On error *x is left empty. */
Status qmodel_file_read_site(ByteReader *r, QStoredSite *x, const char *site, Err *err);

#endif
