/* Perplexity with llama.cpp's protocol (llama-perplexity), plus the per-row
 * helpers other evaluations reuse (log-softmax, KL divergence, top-1).
 *
 * Protocol: the whole text is tokenized once with BOS; it is cut into
 * consecutive chunks of n_ctx tokens (the tail that does not fill a chunk is
 * dropped); the first token of every chunk is overwritten with BOS; each chunk
 * runs as one causal sequence from position 0; position i in
 * [n_ctx/2, n_ctx-2] scores -log p(token[i+1] | logits[i]) (full mode: every
 * i in [0, n_ctx-2]). PPL = exp(sum / count), sums in double. */
#ifndef QS_ANALYSIS_PPL_H
#define QS_ANALYSIS_PPL_H

#include <stdint.h>

#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/forward.h"
#include "model/model.h"

typedef struct PplOpts {
    int64_t n_ctx;       /* chunk length in tokens, >= 2 */
    int64_t max_chunks;  /* 0: every full chunk of the text */
    int full;            /* 1: score every position, not just the second half */
    int64_t batch;       /* forward batch size; 0: min(n_ctx, 512) */
    Numerics numerics;   /* rounding of the base weights' activations (model/forward.h);
                            0 = NUMERICS_EXACT */
} PplOpts;

typedef struct PplResult {
    double ppl;              /* exp(nll_sum / tokens_scored) */
    double nll_sum;          /* sum of -log p, natural log */
    int64_t chunks;          /* chunks evaluated */
    int64_t tokens_scored;
    int64_t tokens_run;      /* tokens fed through the forward pass */
    int64_t text_tokens;     /* tokens in the whole text (BOS included) */
    double seconds;          /* wall time of the completed chunks (forward + scoring) */
    double *running;         /* (chunks) running PPL after each chunk; owned */
    double *chunk_seconds;   /* (chunks) wall time of each chunk; owned */
    int cancelled;           /* 1: stopped early by Progress.cancel */
} PplResult;

/* First and last scored positions of a chunk under o (inclusive). */
void ppl_score_range(const PplOpts *o, int64_t *first, int64_t *last);

/* Number of chunks ppl_run will evaluate for a text of n_tokens. */
int64_t ppl_chunk_count(int64_t n_tokens, const PplOpts *o);

/* Called after each chunk with its index (0-based), the total and the
 * running PPL; runs on the caller's thread. */
typedef void (*PplChunkFn)(void *user, int64_t chunk, int64_t n_chunks, double running_ppl);

/* Receives the logits of scored positions as the forward pass produces them:
 * rows for positions [pos0, pos0 + n_rows) of chunk `chunk`, logits
 * (n_rows, vocab) and the tokens they predict, targets (n_rows). Pointers are
 * valid only during the call. A non-OK return aborts the evaluation. */
typedef Status (*PplLogitsFn)(void *user, int64_t chunk, int64_t pos0, int64_t n_rows,
                              const float *logits, int64_t vocab, const int32_t *targets, Err *err);

/* Runs chunk `chunk` of tokens (n_tokens, the whole tokenized text) through f
 * (reset first), BOS at position 0, and hands every scored row's logits to fn.
 * f must have max_ctx >= n_ctx; its max_batch bounds the batch. logits_buf is
 * caller scratch of (max_batch, vocab) floats. */
Status ppl_eval_chunk(Forward *f, const int32_t *tokens, int64_t n_tokens, int64_t chunk,
                      const PplOpts *o, int32_t bos, float *logits_buf, PplLogitsFn fn, void *user,
                      Err *err);

/* Full perplexity run over tokens (n_tokens, tokenized with BOS). pool may be
 * NULL; prog may be NULL (when set: total = chunks, done bumps per chunk,
 * value = running PPL, cancel is polled between layers; a chunk cut short
 * does not count). cb may be NULL. On
 * ST_OK or ST_ERR_CANCELLED, *res holds the chunks done (free with
 * ppl_result_done). Fails with ST_ERR_RANGE when the text has fewer than
 * n_ctx tokens. */
Status ppl_run(const Model *m, Pool *pool, const int32_t *tokens, int64_t n_tokens,
               const PplOpts *o, PplChunkFn cb, void *user, Progress *prog, PplResult *res,
               Err *err);

/* For a run that met a non-finite value: appends to err's detail where m's
 * first non-finite weight is ("; first non-finite weight: layer 0 q row 3
 * column 17 = nan"), or that every weight is finite (then the activations
 * overflowed). Scans every weight once (on the failure path only). */
void ppl_explain_nonfinite(const Model *m, Err *err);

/* Frees res->running and res->chunk_seconds; res may be zeroed or NULL. */
void ppl_result_done(PplResult *res);

/* === per-row helpers (reusable by KL / top-1 evaluation) === */

/* log p(target) under softmax(logits), max-subtracted, sum in double. */
double ppl_log_prob(const float *logits, int64_t n, int32_t target);

/* out[i] = log softmax(logits)[i] in double. */
void ppl_log_softmax(const float *logits, int64_t n, double *out);

/* KL(P_ref || P) in nats for two logit rows of length n (double math). */
double ppl_kl_div(const float *ref_logits, const float *logits, int64_t n);

/* Index of the largest logit (lowest index on ties). */
int64_t ppl_argmax(const float *logits, int64_t n);

#endif
