/* Evaluation of a quantized model against its unquantized base on the same
 * text and protocol (llama.cpp's perplexity protocol, analysis/ppl.h):
 * perplexity of both, the KL divergence KL(P_base || P_q) of the next-token
 * distributions at every scored position (mean, median, p90, p99, max),
 * top-1 agreement, the relative error of the residual stream after each block
 * on the first chunk, size (bits per weight, bytes) and measured speed
 * (prefill and single-token decode tokens per second).
 *
 * The base side is an EvalRef: the tokenized text plus, per scored position,
 * the base model's full log-softmax row (float32), its NLL and argmax, and
 * the residual rows after each block of chunk 0. It is computed once and can
 * be cached on disk (eval_ref_get), keyed by the model fingerprint, the text
 * hash, ctx and chunk count, so re-evaluating an edited plan runs only the
 * quantized model. Cache file layout (little-endian): "QSEV", u32 version,
 * u64 fingerprint, u64 text hash, i64 ctx, chunks, vocab, n_layers, dim,
 * n_pos, n_tokens, batch, numerics (0 exact, 1 llamacpp), f64 nll_sum, then tokens (i32), per position nll (f64),
 * argmax (i32), log-probs (n_pos, vocab) f32, residuals (n_layers, ctx, dim)
 * f32, and a u64 FNV-1a checksum of everything before it; every field is
 * checked on read and a mismatch means "recompute", never a wrong answer.
 *
 * Nothing here keeps global state: several evaluations may run at once on
 * different threads (each with its own Pool or none). */
#ifndef QS_ANALYSIS_EVAL_H
#define QS_ANALYSIS_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "analysis/qmodel.h"
#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/forward.h"
#include "model/model.h"

typedef struct EvalOpts {
    int64_t n_ctx;           /* chunk length (default 512; clipped to the model's max_seq_len
                                by the caller if it wishes) */
    int64_t max_chunks;      /* 0: every full chunk of the text (default 0) */
    int64_t batch;           /* forward batch; 0: min(n_ctx, 512) */
    int layer_err;           /* 1 (default): per-layer residual relative error on chunk 0 */
    int speed;               /* 1 (default): measure prefill and decode tok/s */
    int64_t decode_prompt;   /* decode benchmark: prompt tokens before decoding (default 16) */
    int64_t decode_steps;    /* decode benchmark: single-token steps (default 64) */
    int64_t speed_reps;      /* prefill repetitions, best taken (default 2) */
    Numerics numerics;       /* rounding of the base weights' activations in both passes
                                (model/forward.h; default NUMERICS_EXACT); part of the cache key */
} EvalOpts;

/* Fills o with the defaults above. */
void eval_opts_default(EvalOpts *o);

/* The one context policy of ppl-style evaluation (the CLI, the TUI, replay,
 * calibration's split of one text and the planner's site calibration):
 * eval_opts_default's 512, or c's declared context when that is shorter. A
 * longer chunk asked for explicitly is kept (callers warn, as llama.cpp
 * accepts it). */
int64_t eval_ctx_default(const ModelConfig *c);

/* The base model's side of an evaluation (opaque; immutable once built, so
 * one EvalRef may serve several concurrent eval_run calls). */
typedef struct EvalRef EvalRef;

/* Computes the reference for m on text (len bytes, tokenized with BOS) under
 * o (n_ctx, max_chunks, batch, layer_err). pool and prog may be NULL (prog:
 * stage "reference", one step per chunk; cancel -> ST_ERR_CANCELLED).
 * Fails with ST_ERR_RANGE when the text has fewer than n_ctx tokens, with
 * ST_ERR_NOMEM when the log-probs would not fit (positions × vocab × 4
 * bytes). m and text are borrowed for the call. Caller frees. */
Status eval_ref_new(const Model *m, const char *text, size_t len, const EvalOpts *o, Pool *pool,
                    Progress *prog, EvalRef **out, Err *err);

/* Like eval_ref_new, but first looks in cache_dir (may be NULL: no cache)
 * for a file matching (m->fingerprint, text hash, n_ctx, chunks); a valid one
 * is loaded, a missing or invalid one is recomputed and written (atomically;
 * a failed write is not an error). *from_cache (may be NULL) says which
 * happened. *out is the caller's (eval_ref_free), as with eval_ref_new. */
Status eval_ref_get(const Model *m, const char *text, size_t len, const EvalOpts *o, const char *cache_dir,
                    Pool *pool, Progress *prog, EvalRef **out, int *from_cache, Err *err);

/* Writes / reads the cache file format described above. Load checks the
 * key against (m, text, o) and fails with ST_ERR_MISMATCH on a different
 * key, ST_ERR_FORMAT (naming the path and field) on a corrupt file; *out is
 * the caller's (eval_ref_free); m and text are borrowed for the call. */
Status eval_ref_save(const EvalRef *r, const char *path, Err *err);
Status eval_ref_load(const char *path, const Model *m, const char *text, size_t len, const EvalOpts *o,
                     EvalRef **out, Err *err);

/* The cache file name for a key: "<dir>/evalref-<fp>-<texthash>-c<ctx>-n<chunks>.bin",
 * "...-n<chunks>-llamacpp.bin" under NUMERICS_LLAMACPP (heap; caller frees). */
char *eval_ref_cache_path(const char *dir, uint64_t fingerprint, uint64_t text_hash, int64_t n_ctx,
                          int64_t max_chunks, Numerics numerics);

/* NULL is a no-op. */
void eval_ref_free(EvalRef *r);

/* The base model's perplexity on the reference's chunks. */
double eval_ref_ppl(const EvalRef *r);

/* Chunks and scored positions held. */
int64_t eval_ref_chunks(const EvalRef *r);
int64_t eval_ref_positions(const EvalRef *r);

/* Called after each chunk with its index, the total, and the running PPL of
 * the quantized model and running mean KLD; runs on the evaluating thread. */
typedef void (*EvalChunkFn)(void *user, int64_t chunk, int64_t n_chunks, double running_ppl,
                            double running_kld);

typedef struct EvalResult {
    double ppl, ppl_base;
    double kld_mean, kld_median, kld_p90, kld_p99, kld_max;  /* nats, over scored positions */
    double top1_agree;       /* fraction of positions where both argmaxes agree */
    int64_t chunks, tokens_scored;
    double *layer_rel_err;   /* (n_layers) ‖r_q - r_base‖ / ‖r_base‖ after each block,
                                over chunk 0's rows; owned; NULL when not measured */
    int64_t n_layers;
    double bpw;              /* plan bits / params (QModel.bpw) */
    size_t bytes;            /* QModel.bytes */
    double prefill_tps;      /* one n_ctx chunk, best of speed_reps; 0 if not measured */
    double decode_tps;       /* decode_steps single-token steps after a short prompt */
    double prefill_cpu_tps;  /* the same two rates per process CPU-second and thread
                                (tokens / (cpu_s / threads)): close to what an idle
                                machine gives when the run shares its cores */
    double decode_cpu_tps;
    double seconds;          /* evaluation wall time (quantized runs + speed) */
    double *running_ppl;     /* (chunks) owned */
    double *running_kld;     /* (chunks) owned */
    int cancelled;           /* stopped early by prog->cancel (values cover the chunks done) */
} EvalResult;

/* Runs the quantized model qm on ref's chunks and compares. cb and prog may
 * be NULL (prog: stage "eval", one step per chunk, value = running PPL;
 * cancel polled between batches: returns ST_ERR_CANCELLED with *res holding
 * the chunks done). qm must be built from the model ref was computed on
 * (fingerprint checked: ST_ERR_MISMATCH). o: speed / decode settings (NULL:
 * defaults). Caller releases *res with eval_result_done. */
Status eval_run(const QModel *qm, const EvalRef *ref, const EvalOpts *o, Pool *pool, EvalChunkFn cb,
                void *user, Progress *prog, EvalResult *res, Err *err);

/* Frees the arrays of *res and zeroes it; safe on a zeroed one. */
void eval_result_done(EvalResult *res);

#endif
