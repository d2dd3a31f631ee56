/* The one forward pass: batched causal prefill with a KV cache (T = 1 is
 * single-token decode), tap callbacks for calibration, and an optional overlay
 * of quantized linear layers / replaced norm gains for plan execution. */
#ifndef QS_MODEL_FORWARD_H
#define QS_MODEL_FORWARD_H

#include <stdint.h>

#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/model.h"
#include "quant/qlinear.h"

/* Called at each tap point with the activations about to enter the
 * projections (or the residual stream after block `layer`).
 * x is (T, width) row-major, valid only during the call; tokens (T) are the
 * token ids of these rows and pos0 the position of row 0 in the sequence. */
typedef void (*TapFn)(void *user, int64_t layer, TapPoint point, const float *x,
                      int64_t T, int64_t width, const int32_t *tokens, int64_t pos0);

typedef struct Taps {
    TapFn fn;
    void *user;
    unsigned mask;           /* bit (1u << TapPoint) enables that point; 0 = all */
} Taps;

/* Replaces parts of the model for plan execution. Any NULL entry means "use
 * the model's own float32 weight". Arrays are (n_layers * PROJ_COUNT) and
 * (n_layers); borrowed for the life of the Forward. */
typedef struct Overlay {
    const QLinear *const *lin;     /* [layer * PROJ_COUNT + proj] */
    const float *const *attn_norm; /* [layer] (dim) */
    const float *const *ffn_norm;  /* [layer] (dim) */
    const QLinear *output;         /* output head */
} Overlay;

typedef struct Forward Forward;

/* How the activations entering a matmul with the model's own (base) weights
 * are rounded.
 * NUMERICS_EXACT (the default): float32 activations against the weights
 *   widened exactly; a native F16/BF16 model computes what its float32
 *   conversion computes.
 * NUMERICS_LLAMACPP: as llama.cpp's CPU backend does (ggml-cpu's mul_mat
 *   converts the float32 operand to its vec_dot_type before every product):
 *   the activations of a matmul with F16 weights are rounded to fp16, with
 *   BF16 weights to bf16, both to nearest even (kernels/f16_gemm.h
 *   f16_round); products with F32 weights, attention and the quantized
 *   overlay's layers are unchanged. Base weights of a ggml block type (Q4_0…)
 *   would need llama.cpp's q8_0/q8_K activations, which this mode does not
 *   reproduce: they stay float32 as in NUMERICS_EXACT. */
typedef enum { NUMERICS_EXACT, NUMERICS_LLAMACPP } Numerics;

/* "exact" / "llamacpp" (static strings). */
const char *numerics_name(Numerics n);

/* Parses "exact" or "llamacpp" into *out; returns 1, or 0 for anything else. */
int numerics_parse(const char *s, Numerics *out);

/* Creates a forward context for up to max_ctx positions (KV cache size) and
 * batches of up to max_batch tokens. m, ov and pool are borrowed and must
 * outlive it; ov and pool may be NULL. Caller frees. */
Status forward_new(const Model *m, const Overlay *ov, int64_t max_ctx, int64_t max_batch,
                   Pool *pool, Forward **out, Err *err);

/* forward_new_flags flags. FORWARD_ONE_LAYER: a KV cache for one layer only
 * (shared by all layers) and no prefault of the weights at creation: for
 * forward_run_layer, which runs one block at a time (layer-streamed
 * calibration); forward_run needs a context made without it. */
#define FORWARD_ONE_LAYER 1u

/* forward_new with flags (above); forward_new is flags 0. */
Status forward_new_flags(const Model *m, const Overlay *ov, int64_t max_ctx, int64_t max_batch, Pool *pool,
                         unsigned flags, Forward **out, Err *err);

/* NULL is a no-op. */
void forward_free(Forward *f);

/* Forgets the KV cache: the next forward_run starts at position 0. */
void forward_reset(Forward *f);

/* Current position (tokens already in the KV cache). */
int64_t forward_pos(const Forward *f);

/* Runs T tokens (T <= max_batch) starting at the current position, appending
 * to the KV cache. logits, if not NULL, receives (T, vocab) rows; with
 * last_only=1 it receives only the last token's (vocab) row. taps may be NULL.
 * Fails with ST_ERR_RANGE when the cache would overflow or a token id is out
 * of range. */
Status forward_run(Forward *f, const int32_t *tokens, int64_t T, float *logits, int last_only,
                   const Taps *taps, Err *err);

/* Like forward_run, but the output head runs only on rows [logits_from, T):
 * logits, if not NULL, receives (T - logits_from, vocab) rows. Perplexity
 * scoring uses it to skip the head on unscored positions. 0 <= logits_from <= T. */
Status forward_run_from(Forward *f, const int32_t *tokens, int64_t T, int64_t logits_from,
                        float *logits, const Taps *taps, Err *err);

/* Writes the embeddings of tokens (T) into x (T, dim) as forward_run starts
 * from them. ST_ERR_RANGE on a token outside the vocabulary. */
Status forward_embed(Forward *f, const int32_t *tokens, int64_t T, float *x, Err *err);

/* Runs block `layer` alone on x (T, dim), the residual stream entering it,
 * in place, as rows at positions [0, T) of a fresh sequence (its own KV
 * cache rows are overwritten; forward_pos is unchanged), with the taps of
 * that layer. Exactly the computation forward_run does for that layer, so
 * running every layer in turn over a sequence gives forward_run's bits.
 * T <= max_batch and max_ctx. */
Status forward_run_layer(Forward *f, int64_t layer, float *x, const int32_t *tokens, int64_t T,
                         const Taps *taps, Err *err);

/* Makes forward_run poll p between layers and fail with ST_ERR_CANCELLED
 * once cancellation is requested (the KV cache then holds a partial batch:
 * forward_reset before reuse). p is borrowed; NULL stops polling. */
void forward_set_progress(Forward *f, const Progress *p);

/* Sets how the base weights' activations are rounded (see Numerics) for
 * the following runs. NUMERICS_LLAMACPP allocates a (max_batch, widest
 * projection input) scratch the first time: ST_ERR_NOMEM when it cannot. */
Status forward_set_numerics(Forward *f, Numerics n, Err *err);

/* The model this context runs (borrowed). */
const Model *forward_model(const Forward *f);

#endif
