#include "analysis/ppl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
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

/* === the full run === */

typedef struct {
    double nll;
    int64_t count;
} PplAcc;

static Status ppl_accumulate(void *user, int64_t chunk, int64_t pos0, int64_t n_rows,
                             const float *logits, int64_t vocab, const int32_t *targets, Err *err) {
    (void)chunk;
    (void)pos0;
    PplAcc *a = user;
    for (int64_t r = 0; r < n_rows; r++) {
        double lp = ppl_log_prob(logits + r * vocab, vocab, targets[r]);
        if (!isfinite(lp))
            return err_set(err, ST_ERR_NUMERIC, "ppl: non-finite log-probability at chunk %lld position %lld",
                           (long long)chunk, (long long)(pos0 + r));
        a->nll -= lp;
        a->count++;
    }
    return ST_OK;
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
    Status s = forward_new(m, NULL, o->n_ctx, batch, pool, &f, err);
    if (s != ST_OK) goto fail;
    size_t nl;
    if (!core_mul_ok((size_t)batch, (size_t)m->cfg.vocab_size, &nl) ||
        !(logits = core_alloc_aligned(nl, sizeof(float))) ||
        !(res->running = core_calloc((size_t)n_chunks, sizeof(double))) ||
        !(res->chunk_seconds = core_calloc((size_t)n_chunks, sizeof(double)))) {
        s = err_set(err, ST_ERR_NOMEM, "ppl: logits for a batch of %lld", (long long)batch);
        goto fail;
    }
    progress_begin(prog, "perplexity", n_chunks);
    forward_set_progress(f, prog);
    PplOpts oo = *o;
    oo.batch = batch;
    PplAcc acc = {0, 0};
    for (int64_t c = 0; c < n_chunks; c++) {
        if (progress_cancelled(prog)) {
            s = err_set(err, ST_ERR_CANCELLED, "ppl: cancelled after %lld of %lld chunks", (long long)c,
                        (long long)n_chunks);
            break;
        }
        PplAcc before = acc;
        double tc = clock_now();
        s = ppl_eval_chunk(f, tokens, n_tokens, c, &oo, bos, logits, ppl_accumulate, &acc, err);
        if (s == ST_ERR_CANCELLED) {
            acc = before; /* a partly scored chunk does not count */
            err_set(err, ST_ERR_CANCELLED, "ppl: cancelled after %lld of %lld chunks", (long long)c,
                    (long long)n_chunks);
            break;
        }
        if (s != ST_OK) goto fail;
        res->chunks = c + 1;
        res->chunk_seconds[c] = clock_now() - tc;
        res->tokens_run += o->n_ctx;
        res->running[c] = exp(acc.nll / (double)acc.count);
        if (prog) atomic_store(&prog->value, res->running[c]);
        progress_add(prog, 1);
        if (cb) cb(user, c, n_chunks, res->running[c]);
    }
    for (int64_t c = 0; c < res->chunks; c++) res->seconds += res->chunk_seconds[c];
    res->nll_sum = acc.nll;
    res->tokens_scored = acc.count;
    res->ppl = acc.count > 0 ? exp(acc.nll / (double)acc.count) : NAN;
    res->cancelled = s == ST_ERR_CANCELLED;
    core_free_aligned(logits);
    forward_free(f);
    return s;
fail:
    core_free_aligned(logits);
    forward_free(f);
    ppl_result_done(res);
    return s;
}
