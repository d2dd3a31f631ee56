#include "analysis/ppl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/dist.h"
#include "model/tokenizer.h"

void ppl_score_range(const PplOpts *o, int64_t *first, int64_t *last) {
    *first = o->full ? 0 : o->n_ctx / 2;
    *last = o->n_ctx - 2;
}

int64_t ppl_chunk_count(int64_t n_tokens, const PplOpts *o) {
    if (o->n_ctx < 2 || n_tokens < o->n_ctx) return 0;
    int64_t n = n_tokens / o->n_ctx;
    if (o->max_chunks > 0 && n > o->max_chunks) n = o->max_chunks;
    return n;
}

/* === per-row helpers === */

double ppl_log_prob(const float *logits, int64_t n, int32_t target) {
    float mx = logits[0];
    for (int64_t i = 1; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += exp((double)(logits[i] - mx));
    return (double)(logits[target] - mx) - log(sum);
}

void ppl_log_softmax(const float *logits, int64_t n, double *out) {
    double mx = logits[0];
    for (int64_t i = 1; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    double ls = log(sum);
    for (int64_t i = 0; i < n; i++) out[i] = (double)logits[i] - mx - ls;
}

double ppl_kl_div(const float *ref_logits, const float *logits, int64_t n) {
    double mr = ref_logits[0], mq = logits[0];
    for (int64_t i = 1; i < n; i++) {
        if (ref_logits[i] > mr) mr = ref_logits[i];
        if (logits[i] > mq) mq = logits[i];
    }
    double sr = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) {
        sr += exp((double)ref_logits[i] - mr);
        sq += exp((double)logits[i] - mq);
    }
    double lr = log(sr), lq = log(sq), kl = 0;
    for (int64_t i = 0; i < n; i++) {
        double lp = (double)ref_logits[i] - mr - lr;
        double lqi = (double)logits[i] - mq - lq;
        kl += exp(lp) * (lp - lqi);
    }
    return kl < 0 ? 0 : kl; /* rounding can leave a tiny negative for equal rows */
}

int64_t ppl_argmax(const float *logits, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* === chunk evaluation === */

Status ppl_eval_chunk(Forward *f, const int32_t *tokens, int64_t n_tokens, int64_t chunk,
                      const PplOpts *o, int32_t bos, float *logits_buf, PplLogitsFn fn, void *user,
                      Err *err) {
    int64_t n_ctx = o->n_ctx;
    if (n_ctx < 2 || chunk < 0 || (chunk + 1) * n_ctx > n_tokens)
        return err_set(err, ST_ERR_RANGE, "ppl: chunk %lld of %lld tokens does not fit %lld tokens",
                       (long long)chunk, (long long)n_ctx, (long long)n_tokens);
    const Model *m = forward_model(f);
    int64_t vocab = m->cfg.vocab_size;
    int64_t batch = o->batch > 0 ? o->batch : (n_ctx < 512 ? n_ctx : 512);
    int64_t first, last;
    ppl_score_range(o, &first, &last);
    const int32_t *src = tokens + chunk * n_ctx;
    int32_t *buf = malloc((size_t)batch * sizeof *buf);
    if (!buf) return err_set(err, ST_ERR_NOMEM, "ppl: batch of %lld tokens", (long long)batch);
    forward_reset(f);
    Status s = ST_OK;
    for (int64_t b0 = 0; b0 < n_ctx && s == ST_OK; b0 += batch) {
        int64_t nb = n_ctx - b0 < batch ? n_ctx - b0 : batch;
        memcpy(buf, src + b0, (size_t)nb * sizeof *buf);
        if (b0 == 0 && bos >= 0) buf[0] = bos;
        /* Rows of this batch that are scored: positions [lo, hi]. */
        int64_t lo = first > b0 ? first : b0, hi = last < b0 + nb - 1 ? last : b0 + nb - 1;
        if (lo > hi) {
            s = forward_run_from(f, buf, nb, nb, NULL, NULL, err);
            continue;
        }
        s = forward_run_from(f, buf, nb, lo - b0, logits_buf, NULL, err);
        if (s == ST_OK && fn) s = fn(user, chunk, lo, hi - lo + 1, logits_buf, vocab, src + lo + 1, err);
    }
    free(buf);
    return s;
}

/* === where a non-finite value comes from === */

/* The first non-finite value of the n floats at v, or -1. */
static int64_t first_nonfinite(const float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return i;
    return -1;
}

/* Scans w row by row; on a non-finite value appends what/row/column to err. */
static int explain_weight(const Weight *w, const char *what, float *row, Err *err) {
    for (int64_t r = 0; r < w->n_out; r++) {
        weight_rows_f32(w, r, r + 1, row);
        int64_t c = first_nonfinite(row, w->n_in);
        if (c >= 0) {
            size_t n = strlen(err->detail);
            snprintf(err->detail + n, sizeof err->detail - n, "; first non-finite weight: %s row %lld column %lld = %g",
                     what, (long long)r, (long long)c, (double)row[c]);
            return 1;
        }
    }
    return 0;
}

static int explain_vec(const float *v, int64_t n, const char *what, Err *err) {
    int64_t c = v ? first_nonfinite(v, n) : -1;
    if (c < 0) return 0;
    size_t len = strlen(err->detail);
    snprintf(err->detail + len, sizeof err->detail - len, "; first non-finite weight: %s[%lld] = %g", what,
             (long long)c, (double)v[c]);
    return 1;
}

void ppl_explain_nonfinite(const Model *m, Err *err) {
    const ModelConfig *c = &m->cfg;
    int64_t widest = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    for (int64_t l = 0; l < c->n_layers; l++)
        for (int p = 0; p < PROJ_COUNT; p++)
            if (m->layers[l].proj[p].n_in > widest) widest = m->layers[l].proj[p].n_in;
    float *row = malloc((size_t)widest * sizeof *row);
    if (!row || !err) {
        free(row);
        return;
    }
    char what[64];
    int found = explain_weight(&m->tok_embd, "token embedding", row, err);
    for (int64_t l = 0; l < c->n_layers && !found; l++) {
        const LayerWeights *lw = &m->layers[l];
        snprintf(what, sizeof what, "layer %lld attn_norm", (long long)l);
        found = explain_vec(lw->attn_norm, c->dim, what, err);
        for (int p = 0; p < PROJ_COUNT && !found; p++) {
            snprintf(what, sizeof what, "layer %lld %s", (long long)l, proj_name((Proj)p));
            found = explain_weight(&lw->proj[p], what, row, err);
            if (!found && lw->bias[p]) {
                snprintf(what, sizeof what, "layer %lld %s bias", (long long)l, proj_name((Proj)p));
                found = explain_vec(lw->bias[p], lw->proj[p].n_out, what, err);
            }
            if (!found && p == PROJ_O) {
                snprintf(what, sizeof what, "layer %lld ffn_norm", (long long)l);
                found = explain_vec(lw->ffn_norm, c->dim, what, err);
            }
        }
    }
    if (!found) found = explain_vec(m->out_norm, c->dim, "output_norm", err);
    if (!found && m->output.data != m->tok_embd.data) found = explain_weight(&m->output, "output", row, err);
    if (!found) {
        size_t n = strlen(err->detail);
        snprintf(err->detail + n, sizeof err->detail - n, "; every weight is finite: the activations overflow");
    }
    free(row);
}

/* === the full run === */

/* Per scored position -log p, filled for the chunks this rank runs (zeros
 * elsewhere) so the ranks' arrays sum exactly to the single-process one. */
typedef struct {
    double *nll;             /* (n_chunks, per_chunk) */
    int64_t per_chunk, first;
} PplRows;

static Status ppl_store(void *user, int64_t chunk, int64_t pos0, int64_t n_rows,
                        const float *logits, int64_t vocab, const int32_t *targets, Err *err) {
    PplRows *a = user;
    for (int64_t r = 0; r < n_rows; r++) {
        double lp = ppl_log_prob(logits + r * vocab, vocab, targets[r]);
        if (!isfinite(lp))
            return err_set(err, ST_ERR_NUMERIC, "ppl: non-finite log-probability at chunk %lld position %lld",
                           (long long)chunk, (long long)(pos0 + r));
        a->nll[chunk * a->per_chunk + (pos0 + r - a->first)] = -lp;
    }
    return ST_OK;
}

typedef struct {
    double nll;
    int64_t count;
} PplAcc;

/* Adds chunk c's rows to the running sums, in position order (the order a
 * single process has always summed in), and reports the chunk. */
static void ppl_account(const PplRows *rows, int64_t c, int64_t n_chunks, PplAcc *acc, PplResult *res,
                        const PplOpts *o, Progress *prog, PplChunkFn cb, void *user) {
    for (int64_t k = c * rows->per_chunk; k < (c + 1) * rows->per_chunk; k++) {
        acc->nll += rows->nll[k];
        acc->count++;
    }
    res->chunks = c + 1;
    res->tokens_run += o->n_ctx;
    res->running[c] = exp(acc->nll / (double)acc->count);
    if (prog) atomic_store(&prog->value, res->running[c]);
    if (cb) cb(user, c, n_chunks, res->running[c]);
}

void ppl_result_done(PplResult *res) {
    if (!res) return;
    free(res->running);
    free(res->chunk_seconds);
    res->running = NULL;
    res->chunk_seconds = NULL;
}

Status ppl_run(const Model *m, Pool *pool, const int32_t *tokens, int64_t n_tokens,
               const PplOpts *o, PplChunkFn cb, void *user, Progress *prog, PplResult *res,
               Err *err) {
    memset(res, 0, sizeof *res);
    res->text_tokens = n_tokens;
    if (o->n_ctx < 2)
        return err_set(err, ST_ERR_ARG, "ppl: context %lld is below 2 tokens", (long long)o->n_ctx);
    if (n_tokens < o->n_ctx)
        return err_set(err, ST_ERR_RANGE, "ppl: the text has %lld tokens but one chunk needs %lld",
                       (long long)n_tokens, (long long)o->n_ctx);
    int64_t n_chunks = ppl_chunk_count(n_tokens, o);
    int64_t batch = o->batch > 0 ? o->batch : (o->n_ctx < 512 ? o->n_ctx : 512);
    if (batch > o->n_ctx) batch = o->n_ctx;
    int32_t bos = m->tok ? tokenizer_bos(m->tok) : -1;
    if (bos < 0) bos = 1; /* llama's BOS when the tokenizer does not name one */

    Forward *f = NULL;
    float *logits = NULL;
    int64_t first, last;
    ppl_score_range(o, &first, &last);
    PplRows rows = {NULL, last - first + 1, first};
    double *done = NULL; /* (n_chunks) 1 for a chunk run to its end */
    Status s = forward_new(m, NULL, o->n_ctx, batch, pool, &f, err);
    if (s == ST_OK) s = forward_set_numerics(f, o->numerics, err);
    if (s != ST_OK) goto fail;
    size_t nl;
    if (!core_mul_ok((size_t)batch, (size_t)m->cfg.vocab_size, &nl) ||
        !(logits = core_alloc_aligned(nl, sizeof(float))) ||
        !(res->running = core_calloc((size_t)n_chunks, sizeof(double))) ||
        !(res->chunk_seconds = core_calloc((size_t)n_chunks, sizeof(double)))) {
        s = err_set(err, ST_ERR_NOMEM, "ppl: logits for a batch of %lld", (long long)batch);
        goto fail;
    }
    size_t nr;
    if (!core_mul_ok((size_t)n_chunks, (size_t)rows.per_chunk, &nr) ||
        !(rows.nll = core_calloc(nr, sizeof(double))) || !(done = core_calloc((size_t)n_chunks, sizeof(double)))) {
        s = err_set(err, ST_ERR_NOMEM, "ppl: scores of %lld chunks", (long long)n_chunks);
        goto fail;
    }
    progress_begin(prog, "perplexity", n_chunks);
    forward_set_progress(f, prog);
    PplOpts oo = *o;
    oo.batch = batch;
    PplAcc acc = {0, 0};
    /* With several ranks (core/dist.h) each runs the chunks it owns; the
     * chunks are reported once all ranks are done, in order. */
    int single = dist_size() == 1;
    for (int64_t c = 0; c < n_chunks; c++) {
        if (!dist_owns(c)) continue;
        if (progress_cancelled(prog)) {
            s = err_set(err, ST_ERR_CANCELLED, "ppl: cancelled after %lld of %lld chunks", (long long)c,
                        (long long)n_chunks);
            break;
        }
        double tc = clock_now();
        s = ppl_eval_chunk(f, tokens, n_tokens, c, &oo, bos, logits, ppl_store, &rows, err);
        if (s == ST_ERR_CANCELLED) {
            err_set(err, ST_ERR_CANCELLED, "ppl: cancelled after %lld of %lld chunks", (long long)c,
                    (long long)n_chunks); /* a partly scored chunk does not count */
            break;
        }
        if (s == ST_ERR_NUMERIC) ppl_explain_nonfinite(m, err);
        if (s != ST_OK) goto fail;
        res->chunk_seconds[c] = clock_now() - tc;
        done[c] = 1;
        progress_add(prog, 1);
        if (single) ppl_account(&rows, c, n_chunks, &acc, res, o, prog, cb, user);
    }
    if (!single) {
        Status ds;
        if ((ds = dist_sum_f64(rows.nll, (int64_t)nr, err)) || (ds = dist_sum_f64(done, n_chunks, err)) ||
            (ds = dist_sum_f64(res->chunk_seconds, n_chunks, err))) {
            s = ds;
            goto fail;
        }
        /* A chunk some rank did not finish ends the run there, as a cancel would. */
        int64_t c = 0;
        for (; c < n_chunks && done[c] > 0; c++) ppl_account(&rows, c, n_chunks, &acc, res, o, prog, cb, user);
        if (c < n_chunks && s == ST_OK)
            s = err_set(err, ST_ERR_CANCELLED, "ppl: cancelled after %lld of %lld chunks", (long long)c,
                        (long long)n_chunks);
    }
    free(rows.nll);
    free(done);
    rows.nll = NULL;
    done = NULL;
    for (int64_t c = 0; c < res->chunks; c++) res->seconds += res->chunk_seconds[c];
    res->nll_sum = acc.nll;
    res->tokens_scored = acc.count;
    res->ppl = acc.count > 0 ? exp(acc.nll / (double)acc.count) : NAN;
    res->cancelled = s == ST_ERR_CANCELLED;
    core_free_aligned(logits);
    forward_free(f);
    return s;
fail:
    free(rows.nll);
    free(done);
    core_free_aligned(logits);
    forward_free(f);
    ppl_result_done(res);
    return s;
}
