/* Evaluation of a quantized model against its base (see the header). */
#include "analysis/eval.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analysis/ppl.h"
#include "core/alloc.h"
#include "core/bytes.h"
#include "core/clock.h"
#include "core/dist.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "model/forward.h"
#include "model/tokenizer.h"

#define EVAL_CACHE_VERSION 2 /* 2: the header holds the numerics mode */
#define EVAL_MAX_TEXT ((size_t)1 << 31)

struct EvalRef {
    uint64_t fingerprint, text_hash;
    int64_t n_ctx, max_chunks, batch;
    int64_t numerics;           /* Numerics of both passes */
    int64_t chunks, vocab, n_layers, dim;
    int64_t n_pos, per_chunk;   /* scored positions in all / in one chunk */
    int64_t n_tokens;
    int32_t bos;
    int32_t *tokens;            /* (n_tokens) the text with BOS */
    double *nll;                /* (n_pos) base -log p(target) */
    int32_t *argmax;            /* (n_pos) base top-1 */
    int32_t *target;            /* (n_pos) the scored next tokens (not stored: from tokens) */
    float *logp;                /* (n_pos, vocab) base log-softmax rows */
    float *resid;               /* (n_layers, n_ctx, dim) residual after each block, chunk 0; or NULL */
    double nll_sum;
    int partial;                /* built across MPI ranks: logp, argmax and resid hold only this
                                   rank's chunks (core/dist.h); never cached */
};

void eval_opts_default(EvalOpts *o) {
    memset(o, 0, sizeof *o);
    o->n_ctx = 512;
    o->layer_err = 1;
    o->speed = 1;
    o->decode_prompt = 16;
    o->decode_steps = 64;
    o->speed_reps = 2;
}

int64_t eval_ctx_default(const ModelConfig *c) {
    EvalOpts o;
    eval_opts_default(&o);
    return c->max_seq_len > 0 && c->max_seq_len < o.n_ctx ? c->max_seq_len : o.n_ctx;
}

static int64_t opts_batch(const EvalOpts *o) {
    int64_t b = o->batch > 0 ? o->batch : (o->n_ctx < 512 ? o->n_ctx : 512);
    return b > o->n_ctx ? o->n_ctx : b;
}

void eval_ref_free(EvalRef *r) {
    if (!r) return;
    free(r->tokens);
    free(r->nll);
    free(r->argmax);
    free(r->target);
    free(r->logp);
    free(r->resid);
    free(r);
}

double eval_ref_ppl(const EvalRef *r) { return r->n_pos ? exp(r->nll_sum / (double)r->n_pos) : 0; }
int64_t eval_ref_chunks(const EvalRef *r) { return r->chunks; }
int64_t eval_ref_positions(const EvalRef *r) { return r->n_pos; }

/* Allocates the per-position arrays of r for its dimensions. */
static Status ref_alloc(EvalRef *r, Err *err) {
    size_t nl;
    if (!core_mul_ok((size_t)r->n_pos, (size_t)r->vocab, &nl) || nl > ((size_t)1 << 34) / sizeof(float))
        return err_set(err, ST_ERR_NOMEM, "eval reference: %lld positions x %lld vocab log-probs do not fit; use fewer --chunks",
                       (long long)r->n_pos, (long long)r->vocab);
    r->nll = calloc((size_t)r->n_pos, sizeof *r->nll);
    r->argmax = calloc((size_t)r->n_pos, sizeof *r->argmax);
    r->target = calloc((size_t)r->n_pos, sizeof *r->target);
    r->logp = malloc(nl * sizeof *r->logp);
    if (!r->nll || !r->argmax || !r->target || !r->logp)
        return err_set(err, ST_ERR_NOMEM, "eval reference: %zu MB of log-probs", nl * 4 >> 20);
    if (r->n_layers > 0) {
        r->resid = malloc((size_t)(r->n_layers * r->n_ctx * r->dim) * sizeof *r->resid);
        if (!r->resid) return err_set(err, ST_ERR_NOMEM, "eval reference: residuals");
    }
    return ST_OK;
}

/* Fills r->target from the tokens (the protocol's scored next tokens). */
static void ref_targets(EvalRef *r) {
    PplOpts po = {.n_ctx = r->n_ctx, .max_chunks = r->max_chunks, .full = 0, .batch = r->batch};
    int64_t first, last;
    ppl_score_range(&po, &first, &last);
    int64_t k = 0;
    for (int64_t c = 0; c < r->chunks; c++)
        for (int64_t i = first; i <= last; i++) r->target[k++] = r->tokens[c * r->n_ctx + i + 1];
}

typedef struct {
    EvalRef *r;
    Progress *prog;
} RefFill;

static Status ref_rows(void *user, int64_t chunk, int64_t pos0, int64_t n_rows, const float *logits, int64_t vocab,
                       const int32_t *targets, Err *err) {
    RefFill *rf = user;
    EvalRef *r = rf->r;
    PplOpts po = {.n_ctx = r->n_ctx};
    int64_t first, last;
    ppl_score_range(&po, &first, &last);
    double *row = malloc((size_t)vocab * sizeof *row);
    if (!row) return err_set(err, ST_ERR_NOMEM, "eval reference row");
    for (int64_t i = 0; i < n_rows; i++) {
        int64_t k = chunk * r->per_chunk + (pos0 + i - first);
        const float *lg = logits + i * vocab;
        ppl_log_softmax(lg, vocab, row);
        float *dst = r->logp + k * vocab;
        for (int64_t v = 0; v < vocab; v++) dst[v] = (float)row[v];
        r->nll[k] = -row[targets[i]];
        r->argmax[k] = (int32_t)ppl_argmax(lg, vocab);
        if (!isfinite(r->nll[k])) {
            free(row);
            return err_set(err, ST_ERR_NUMERIC, "eval reference: non-finite log-probability at chunk %lld position %lld",
                           (long long)chunk, (long long)(pos0 + i));
        }
    }
    free(row);
    if (progress_cancelled(rf->prog)) return err_set(err, ST_ERR_CANCELLED, "eval reference: cancelled");
    return ST_OK;
}

/* Residual capture on chunk 0: rows into dst (n_layers, n_ctx, dim). */
typedef struct {
    float *dst;
    int64_t n_ctx, dim;
} ResidCap;

static void resid_tap(void *user, int64_t layer, TapPoint point, const float *x, int64_t T, int64_t width,
                      const int32_t *tokens, int64_t pos0) {
    (void)tokens;
    ResidCap *rc = user;
    if (point != TAP_RESID || width != rc->dim) return;
    memcpy(rc->dst + (layer * rc->n_ctx + pos0) * rc->dim, x, (size_t)(T * width) * sizeof *x);
}

/* Runs chunk 0 (BOS first) through f with residual taps into dst. */
static Status run_resid(Forward *f, const int32_t *tokens, int64_t n_ctx, int64_t batch, int32_t bos, float *dst,
                        int64_t dim, Err *err) {
    int32_t *buf = malloc((size_t)batch * sizeof *buf);
    if (!buf) return err_set(err, ST_ERR_NOMEM, "eval: batch");
    ResidCap rc = {dst, n_ctx, dim};
    Taps taps = {resid_tap, &rc, 1u << TAP_RESID};
    forward_reset(f);
    Status st = ST_OK;
    for (int64_t b0 = 0; b0 < n_ctx && !st; b0 += batch) {
        int64_t nb = n_ctx - b0 < batch ? n_ctx - b0 : batch;
        memcpy(buf, tokens + b0, (size_t)nb * sizeof *buf);
        if (b0 == 0) buf[0] = bos;
        st = forward_run_from(f, buf, nb, nb, NULL, &taps, err);
    }
    free(buf);
    return st;
}

static Status tokenize_text(const Model *m, const char *text, size_t len, int32_t **ids, int64_t *n, Err *err) {
    if (!m->tok) return err_set(err, ST_ERR_ARG, "%s: the model has no tokenizer", m->path ? m->path : "model");
    return tokenizer_encode(m->tok, text, len, 1, ids, n, err);
}

static int32_t model_bos(const Model *m) {
    int32_t bos = m->tok ? tokenizer_bos(m->tok) : -1;
    return bos < 0 ? 1 : bos; /* as analysis/ppl.c */
}

Status eval_ref_new(const Model *m, const char *text, size_t len, const EvalOpts *o, Pool *pool, Progress *prog,
                    EvalRef **out, Err *err) {
    *out = NULL;
    EvalOpts d;
    if (!o) {
        eval_opts_default(&d);
        o = &d;
    }
    if (o->n_ctx < 4) return err_set(err, ST_ERR_ARG, "eval: context %lld is below 4 tokens", (long long)o->n_ctx);
    Forward *f = NULL;
    float *logits = NULL;
    Status st;
    EvalRef *r = calloc(1, sizeof *r);
    if (!r) return err_set(err, ST_ERR_NOMEM, "eval reference");
    r->fingerprint = m->fingerprint;
    r->text_hash = hash_bytes(HASH_SEED, text, len);
    r->n_ctx = o->n_ctx;
    r->max_chunks = o->max_chunks;
    r->numerics = o->numerics;
    r->batch = opts_batch(o);
    r->vocab = m->cfg.vocab_size;
    r->dim = m->cfg.dim;
    r->bos = model_bos(m);
    if ((st = tokenize_text(m, text, len, &r->tokens, &r->n_tokens, err))) goto fail;
    if (r->n_tokens < r->n_ctx) {
        st = err_set(err, ST_ERR_RANGE, "eval: the text has %lld tokens but one chunk of --ctx %lld needs %lld",
                     (long long)r->n_tokens, (long long)r->n_ctx, (long long)r->n_ctx);
        goto fail;
    }
    PplOpts po = {.n_ctx = r->n_ctx, .max_chunks = r->max_chunks, .full = 0, .batch = r->batch};
    int64_t first, last;
    ppl_score_range(&po, &first, &last);
    r->chunks = ppl_chunk_count(r->n_tokens, &po);
    r->per_chunk = last - first + 1;
    r->n_pos = r->chunks * r->per_chunk;
    r->n_layers = o->layer_err ? m->cfg.n_layers : 0;
    if ((st = ref_alloc(r, err))) goto fail;
    ref_targets(r);
    if ((st = forward_new(m, NULL, r->n_ctx, r->batch, pool, &f, err))) goto fail;
    if ((st = forward_set_numerics(f, (Numerics)r->numerics, err))) goto fail;
    logits = core_alloc_aligned((size_t)(r->batch * r->vocab), sizeof(float));
    if (!logits) {
        st = err_set(err, ST_ERR_NOMEM, "eval: logits");
        goto fail;
    }
    progress_begin(prog, "reference", r->chunks);
    RefFill rf = {r, prog};
    /* Each rank runs the chunks it owns; the NLLs are summed across ranks
     * (exact: zeros elsewhere), the rest stays with the rank that scores it. */
    r->partial = dist_size() > 1;
    for (int64_t c = 0; c < r->chunks; c++) {
        if (!dist_owns(c)) continue;
        if ((st = ppl_eval_chunk(f, r->tokens, r->n_tokens, c, &po, r->bos, logits, ref_rows, &rf, err))) {
            if (st == ST_ERR_NUMERIC) ppl_explain_nonfinite(m, err);
            goto fail;
        }
        progress_add(prog, 1);
    }
    if ((st = dist_sum_f64(r->nll, r->n_pos, err))) goto fail;
    for (int64_t k = 0; k < r->n_pos; k++) r->nll_sum += r->nll[k];
    if (r->resid && dist_owns(0) &&
        (st = run_resid(f, r->tokens, r->n_ctx, r->batch, r->bos, r->resid, r->dim, err)))
        goto fail;
    core_free_aligned(logits);
    forward_free(f);
    *out = r;
    return ST_OK;
fail:
    core_free_aligned(logits);
    forward_free(f);
    eval_ref_free(r);
    return st;
}

/* === Cache file === */

char *eval_ref_cache_path(const char *dir, uint64_t fingerprint, uint64_t text_hash, int64_t n_ctx,
                          int64_t max_chunks, Numerics numerics) {
    size_t n = strlen(dir) + 112;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/evalref-%016llx-%016llx-c%lld-n%lld%s.bin", dir, (unsigned long long)fingerprint,
                 (unsigned long long)text_hash, (long long)n_ctx, (long long)max_chunks,
                 numerics == NUMERICS_LLAMACPP ? "-llamacpp" : "");
    return p;
}

Status eval_ref_save(const EvalRef *r, const char *path, Err *err) {
    if (r->partial)
        return err_set(err, ST_ERR_STATE, "%s: this reference holds one MPI rank's chunks only; not cached", path);
    AtomicFile af;
    Status st = afile_open(&af, path, err);
    if (st) return st;
    ByteWriter w;
    bytes_writer_init(&w, &af, err);
    uint32_t ver = EVAL_CACHE_VERSION;
    int64_t hdr[10] = {r->n_ctx,  r->max_chunks, r->chunks,   r->vocab, r->n_layers,
                       r->dim,    r->n_pos,      r->n_tokens, r->batch, r->numerics};
    bytes_put(&w, "QSEV", 4);
    bytes_put(&w, &ver, 4);
    bytes_put(&w, &r->fingerprint, 8);
    bytes_put(&w, &r->text_hash, 8);
    bytes_put(&w, hdr, sizeof hdr);
    bytes_put(&w, &r->nll_sum, 8);
    bytes_put(&w, &r->bos, 4);
    bytes_put(&w, r->tokens, (size_t)r->n_tokens * 4);
    bytes_put(&w, r->nll, (size_t)r->n_pos * 8);
    bytes_put(&w, r->argmax, (size_t)r->n_pos * 4);
    bytes_put(&w, r->logp, (size_t)(r->n_pos * r->vocab) * 4);
    if (r->resid) bytes_put(&w, r->resid, (size_t)(r->n_layers * r->n_ctx * r->dim) * 4);
    if ((st = bytes_put_hash(&w))) {
        afile_abort(&af);
        return st;
    }
    return afile_commit(&af, err);
}

Status eval_ref_load(const char *path, const Model *m, const char *text, size_t len, const EvalOpts *o,
                     EvalRef **out, Err *err) {
    *out = NULL;
    char *data = NULL;
    size_t n = 0;
    Status st = file_read_all(path, (size_t)1 << 40, &data, &n, err);
    if (st) return st;
    EvalRef *r = calloc(1, sizeof *r);
    if (!r) {
        free(data);
        return err_set(err, ST_ERR_NOMEM, "%s", path);
    }
    ByteReader b;
    bytes_init(&b, data, n, path);
    char magic[4];
    uint32_t ver;
    int64_t hdr[10];
    if ((st = bytes_read(&b, magic, 4, "magic", err))) goto fail;
    if (memcmp(magic, "QSEV", 4)) {
        st = err_set(err, ST_ERR_FORMAT, "%s: magic at offset 0: not an eval reference file", path);
        goto fail;
    }
    if ((st = bytes_read(&b, &ver, 4, "version", err))) goto fail;
    if (ver != EVAL_CACHE_VERSION) {
        st = err_set(err, ST_ERR_FORMAT, "%s: version at offset 4: %u, expected %u", path, ver, EVAL_CACHE_VERSION);
        goto fail;
    }
    if ((st = bytes_read(&b, &r->fingerprint, 8, "fingerprint", err))) goto fail;
    if ((st = bytes_read(&b, &r->text_hash, 8, "text_hash", err))) goto fail;
    if ((st = bytes_read(&b, hdr, sizeof hdr, "header", err))) goto fail;
    if ((st = bytes_read(&b, &r->nll_sum, 8, "nll_sum", err))) goto fail;
    if ((st = bytes_read(&b, &r->bos, 4, "bos", err))) goto fail;
    r->n_ctx = hdr[0];
    r->max_chunks = hdr[1];
    r->chunks = hdr[2];
    r->vocab = hdr[3];
    r->n_layers = hdr[4];
    r->dim = hdr[5];
    r->n_pos = hdr[6];
    r->n_tokens = hdr[7];
    r->batch = hdr[8];
    r->numerics = hdr[9];
    uint64_t th = hash_bytes(HASH_SEED, text, len);
    int want_layers = o->layer_err ? 1 : 0;
    if (r->fingerprint != m->fingerprint || r->text_hash != th || r->n_ctx != o->n_ctx ||
        r->max_chunks != o->max_chunks || r->numerics != (int64_t)o->numerics || r->vocab != m->cfg.vocab_size ||
        r->dim != m->cfg.dim ||
        (want_layers && r->n_layers != m->cfg.n_layers)) {
        st = err_set(err, ST_ERR_MISMATCH, "%s: computed for another model, text, ctx, chunk count or numerics", path);
        goto fail;
    }
    PplOpts po = {.n_ctx = r->n_ctx, .max_chunks = r->max_chunks};
    int64_t first, last;
    ppl_score_range(&po, &first, &last);
    r->per_chunk = last - first + 1;
    if (r->n_tokens < r->n_ctx || r->n_tokens > (int64_t)EVAL_MAX_TEXT || r->chunks != ppl_chunk_count(r->n_tokens, &po) ||
        r->n_pos != r->chunks * r->per_chunk || (r->n_layers != 0 && r->n_layers != m->cfg.n_layers) ||
        r->batch < 1 || r->batch > r->n_ctx) {
        st = err_set(err, ST_ERR_FORMAT, "%s: header at offset 24: inconsistent counts", path);
        goto fail;
    }
    if ((st = ref_alloc(r, err))) goto fail;
    r->tokens = malloc((size_t)r->n_tokens * sizeof *r->tokens);
    if (!r->tokens) {
        st = err_set(err, ST_ERR_NOMEM, "%s: tokens", path);
        goto fail;
    }
    if ((st = bytes_read(&b, r->tokens, (size_t)r->n_tokens * 4, "tokens", err))) goto fail;
    if ((st = bytes_read(&b, r->nll, (size_t)r->n_pos * 8, "nll", err))) goto fail;
    if ((st = bytes_read(&b, r->argmax, (size_t)r->n_pos * 4, "argmax", err))) goto fail;
    if ((st = bytes_read(&b, r->logp, (size_t)(r->n_pos * r->vocab) * 4, "logp", err))) goto fail;
    if (r->resid &&
        (st = bytes_read(&b, r->resid, (size_t)(r->n_layers * r->n_ctx * r->dim) * 4, "resid", err)))
        goto fail;
    size_t body = b.off;
    uint64_t h;
    if ((st = bytes_read(&b, &h, 8, "checksum", err))) goto fail;
    if (h != hash_bytes(HASH_SEED, data, body)) {
        st = err_set(err, ST_ERR_FORMAT, "%s: checksum at offset %zu does not match", path, body);
        goto fail;
    }
    if (b.off != n) {
        st = err_set(err, ST_ERR_FORMAT, "%s: %zu trailing bytes at offset %zu", path, n - b.off, b.off);
        goto fail;
    }
    for (int64_t i = 0; i < r->n_tokens; i++)
        if (r->tokens[i] < 0 || r->tokens[i] >= r->vocab) {
            st = err_set(err, ST_ERR_FORMAT, "%s: token %lld out of range", path, (long long)i);
            goto fail;
        }
    for (int64_t k = 0; k < r->n_pos; k++)
        if (r->argmax[k] < 0 || r->argmax[k] >= r->vocab) {
            st = err_set(err, ST_ERR_FORMAT, "%s: argmax %lld out of range", path, (long long)k);
            goto fail;
        }
    ref_targets(r);
    free(data);
    *out = r;
    return ST_OK;
fail:
    free(data);
    eval_ref_free(r);
    return st;
}

Status eval_ref_get(const Model *m, const char *text, size_t len, const EvalOpts *o, const char *cache_dir, Pool *pool,
                    Progress *prog, EvalRef **out, int *from_cache, Err *err) {
    EvalOpts d;
    if (!o) {
        eval_opts_default(&d);
        o = &d;
    }
    if (from_cache) *from_cache = 0;
    char *path = NULL;
    if (cache_dir) {
        path = eval_ref_cache_path(cache_dir, m->fingerprint, hash_bytes(HASH_SEED, text, len), o->n_ctx, o->max_chunks,
                                   o->numerics);
        if (!path) return err_set(err, ST_ERR_NOMEM, "cache path");
        Err e2;
        err_init(&e2);
        if (access(path, R_OK) == 0 && eval_ref_load(path, m, text, len, o, out, &e2) == ST_OK) {
            if (from_cache) *from_cache = 1;
            free(path);
            return ST_OK;
        }
    }
    Status st = eval_ref_new(m, text, len, o, pool, prog, out, err);
    if (!st && path) {
        Err e2;
        err_init(&e2);
        mkdir(cache_dir, 0777); /* best effort: a failed cache write is not an error */
        eval_ref_save(*out, path, &e2);
    }
    free(path);
    return st;
}

/* === Running the quantized model === */

/* Per scored position values, filled for the chunks this process runs
 * (zeros elsewhere, so MPI ranks' arrays sum exactly), then added up chunk by
 * chunk in position order (eval_account). */
typedef struct {
    const EvalRef *r;
    double *kld;                /* (n_pos) */
    double *nll;                /* (n_pos) -log p(target) of the quantized model */
    double *agree;              /* (n_pos) 1 where both argmaxes agree */
    double nll_sum, kld_sum, base_nll;
    int64_t agree_n, count;
    double *row;                /* (vocab) */
    Progress *prog;
} EvalAcc;

static Status eval_rows(void *user, int64_t chunk, int64_t pos0, int64_t n_rows, const float *logits, int64_t vocab,
                        const int32_t *targets, Err *err) {
    EvalAcc *a = user;
    const EvalRef *r = a->r;
    PplOpts po = {.n_ctx = r->n_ctx};
    int64_t first, last;
    ppl_score_range(&po, &first, &last);
    for (int64_t i = 0; i < n_rows; i++) {
        int64_t k = chunk * r->per_chunk + (pos0 + i - first);
        const float *lg = logits + i * vocab;
        ppl_log_softmax(lg, vocab, a->row);
        const float *lr = r->logp + k * vocab;
        double kl = 0;
        for (int64_t v = 0; v < vocab; v++) {
            double lp = (double)lr[v];
            kl += exp(lp) * (lp - a->row[v]);
        }
        if (kl < 0) kl = 0; /* rounding of a zero divergence */
        double nll = -a->row[targets[i]];
        if (!isfinite(nll) || !isfinite(kl))
            return err_set(err, ST_ERR_NUMERIC, "eval: non-finite log-probability at chunk %lld position %lld",
                           (long long)chunk, (long long)(pos0 + i));
        a->kld[k] = kl;
        a->nll[k] = nll;
        a->agree[k] = ppl_argmax(lg, vocab) == r->argmax[k];
    }
    if (progress_cancelled(a->prog)) return err_set(err, ST_ERR_CANCELLED, "eval: cancelled");
    return ST_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank quantile of sorted v (n > 0). */
static double quantile(const double *v, int64_t n, double p) {
    int64_t k = (int64_t)ceil(p * (double)n) - 1;
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return v[k];
}

void eval_result_done(EvalResult *res) {
    if (!res) return;
    free(res->layer_rel_err);
    free(res->running_ppl);
    free(res->running_kld);
    memset(res, 0, sizeof *res);
}

/* Prefill and decode speed of f's model. */
static Status measure_speed(Forward *f, const EvalRef *r, const EvalOpts *o, int threads, float *logits,
                            EvalResult *res, Err *err) {
    int64_t n_ctx = r->n_ctx, batch = r->batch, vocab = r->vocab;
    int32_t *buf = malloc((size_t)n_ctx * sizeof *buf);
    if (!buf) return err_set(err, ST_ERR_NOMEM, "eval: speed tokens");
    memcpy(buf, r->tokens, (size_t)n_ctx * sizeof *buf);
    buf[0] = r->bos;
    Status st = ST_OK;
    double best = 0, best_cpu = 0;
    int64_t reps = o->speed_reps > 0 ? o->speed_reps : 1;
    for (int64_t rep = 0; rep < reps && !st; rep++) {
        forward_reset(f);
        double t0 = clock_now(), c0 = clock_cpu_seconds();
        for (int64_t b0 = 0; b0 < n_ctx && !st; b0 += batch) {
            int64_t nb = n_ctx - b0 < batch ? n_ctx - b0 : batch;
            st = forward_run_from(f, buf + b0, nb, nb - 1, logits, NULL, err);
        }
        double dt = clock_now() - t0, dc = (clock_cpu_seconds() - c0) / threads;
        if (!st && dt > 0 && (double)n_ctx / dt > best) best = (double)n_ctx / dt;
        if (!st && dc > 0 && (double)n_ctx / dc > best_cpu) best_cpu = (double)n_ctx / dc;
    }
    res->prefill_tps = best;
    res->prefill_cpu_tps = best_cpu;
    int64_t prompt = o->decode_prompt > 0 ? o->decode_prompt : 1;
    if (prompt > n_ctx / 2) prompt = n_ctx / 2;
    int64_t steps = o->decode_steps > 0 ? o->decode_steps : 1;
    if (prompt + steps > n_ctx) steps = n_ctx - prompt;
    if (!st && steps > 0) {
        forward_reset(f);
        st = forward_run(f, buf, prompt, logits, 1, NULL, err);
        int32_t tok = (int32_t)ppl_argmax(logits, vocab);
        double t0 = clock_now(), c0 = clock_cpu_seconds();
        for (int64_t s = 0; s < steps && !st; s++) {
            st = forward_run(f, &tok, 1, logits, 1, NULL, err);
            tok = (int32_t)ppl_argmax(logits, vocab);
        }
        double dt = clock_now() - t0, dc = (clock_cpu_seconds() - c0) / threads;
        if (!st && dt > 0) res->decode_tps = (double)steps / dt;
        if (!st && dc > 0) res->decode_cpu_tps = (double)steps / dc;
    }
    free(buf);
    return st;
}

/* Adds chunk c's positions to the running sums and reports the chunk. */
static void eval_account(EvalAcc *a, int64_t c, EvalResult *res, Progress *prog, EvalChunkFn cb, void *user) {
    const EvalRef *r = a->r;
    for (int64_t k = c * r->per_chunk; k < (c + 1) * r->per_chunk; k++) {
        a->kld_sum += a->kld[k];
        a->nll_sum += a->nll[k];
        a->agree_n += a->agree[k] > 0;
        a->count++;
    }
    for (int64_t k = c * r->per_chunk; k < (c + 1) * r->per_chunk; k++) a->base_nll += r->nll[k];
    res->chunks = c + 1;
    res->running_ppl[c] = exp(a->nll_sum / (double)a->count);
    res->running_kld[c] = a->kld_sum / (double)a->count;
    if (prog) atomic_store(&prog->value, res->running_ppl[c]);
    if (cb) cb(user, c, r->chunks, res->running_ppl[c], res->running_kld[c]);
}

Status eval_run(const QModel *qm, const EvalRef *r, const EvalOpts *o, Pool *pool, EvalChunkFn cb, void *user,
                Progress *prog, EvalResult *res, Err *err) {
    memset(res, 0, sizeof *res);
    EvalOpts d;
    if (!o) {
        eval_opts_default(&d);
        o = &d;
    }
    const Model *m = &qm->model;
    if (m->fingerprint != r->fingerprint || m->cfg.vocab_size != r->vocab || m->cfg.dim != r->dim)
        return err_set(err, ST_ERR_MISMATCH, "eval: the reference was computed on another model");
    double t0 = clock_now();
    Forward *f = NULL;
    float *logits = NULL, *resid = NULL;
    double *done = NULL; /* (chunks) 1 for a chunk scored to its end */
    EvalAcc a;
    memset(&a, 0, sizeof a);
    a.r = r;
    a.prog = prog;
    Status st;
    int measured = 0; /* res holds a result (complete, or the chunks before a cancel) */
    if ((st = forward_new(m, &qm->ov, r->n_ctx, r->batch, pool, &f, err))) goto fail;
    if ((st = forward_set_numerics(f, (Numerics)r->numerics, err))) goto fail;
    logits = core_alloc_aligned((size_t)(r->batch * r->vocab), sizeof(float));
    size_t npos = (size_t)(r->n_pos > 0 ? r->n_pos : 1);
    a.kld = calloc(npos, sizeof *a.kld);
    a.nll = calloc(npos, sizeof *a.nll);
    a.agree = calloc(npos, sizeof *a.agree);
    done = calloc((size_t)(r->chunks > 0 ? r->chunks : 1), sizeof *done);
    a.row = malloc((size_t)r->vocab * sizeof *a.row);
    res->running_ppl = calloc((size_t)r->chunks, sizeof(double));
    res->running_kld = calloc((size_t)r->chunks, sizeof(double));
    if (!logits || !a.kld || !a.nll || !a.agree || !done || !a.row || !res->running_ppl || !res->running_kld) {
        st = err_set(err, ST_ERR_NOMEM, "eval buffers");
        goto fail;
    }
    PplOpts po = {.n_ctx = r->n_ctx, .max_chunks = r->max_chunks, .full = 0, .batch = r->batch};
    progress_begin(prog, "eval", r->chunks);
    /* With several MPI ranks each runs the chunks it owns and the chunks are
     * reported once all are done, in order (the same sums as one process). */
    int single = dist_size() == 1;
    for (int64_t c = 0; c < r->chunks; c++) {
        if (!dist_owns(c)) continue;
        st = progress_cancelled(prog) ? err_set(err, ST_ERR_CANCELLED, "eval: cancelled")
                                      : ppl_eval_chunk(f, r->tokens, r->n_tokens, c, &po, r->bos, logits, eval_rows, &a, err);
        if (st == ST_ERR_CANCELLED) break; /* a partly scored chunk does not count */
        if (st) goto fail;
        done[c] = 1;
        progress_add(prog, 1);
        if (single) eval_account(&a, c, res, prog, cb, user);
    }
    if (!single) {
        Status ds;
        if ((ds = dist_sum_f64(a.kld, r->n_pos, err)) || (ds = dist_sum_f64(a.nll, r->n_pos, err)) ||
            (ds = dist_sum_f64(a.agree, r->n_pos, err)) || (ds = dist_sum_f64(done, r->chunks, err))) {
            st = ds;
            goto fail;
        }
        for (int64_t c = 0; c < r->chunks && done[c] > 0; c++) eval_account(&a, c, res, prog, cb, user);
        if (res->chunks < r->chunks) st = ST_ERR_CANCELLED; /* some rank stopped early */
    }
    if (st == ST_ERR_CANCELLED) {
        res->cancelled = 1;
        err_set(err, ST_ERR_CANCELLED, "eval: cancelled after %lld of %lld chunks", (long long)res->chunks,
                (long long)r->chunks);
    }
    res->tokens_scored = a.count;
    if (a.count > 0) {
        res->ppl = exp(a.nll_sum / (double)a.count);
        res->ppl_base = exp(a.base_nll / (double)a.count);
        res->kld_mean = a.kld_sum / (double)a.count;
        res->top1_agree = (double)a.agree_n / (double)a.count;
        qsort(a.kld, (size_t)a.count, sizeof *a.kld, cmp_double);
        res->kld_median = quantile(a.kld, a.count, 0.5);
        res->kld_p90 = quantile(a.kld, a.count, 0.9);
        res->kld_p99 = quantile(a.kld, a.count, 0.99);
        res->kld_max = a.kld[a.count - 1];
    }
    res->bpw = qm->bpw;
    res->bytes = qm->bytes;
    if (!res->cancelled && r->resid && o->layer_err) {
        int64_t L = r->n_layers, per = r->n_ctx * r->dim;
        res->layer_rel_err = calloc((size_t)L, sizeof(double));
        if (!res->layer_rel_err) {
            st = err_set(err, ST_ERR_NOMEM, "eval residuals");
            goto fail;
        }
        res->n_layers = L;
        if (dist_owns(0)) { /* chunk 0's rank holds its base residuals */
            resid = malloc((size_t)(L * per) * sizeof *resid);
            if (!resid) {
                st = err_set(err, ST_ERR_NOMEM, "eval residuals");
                goto fail;
            }
            if ((st = run_resid(f, r->tokens, r->n_ctx, r->batch, r->bos, resid, r->dim, err))) goto fail;
            for (int64_t l = 0; l < L; l++) {
                double num = 0, den = 0;
                const float *q = resid + l * per, *b = r->resid + l * per;
                for (int64_t i = 0; i < per; i++) {
                    double dd = (double)q[i] - (double)b[i];
                    num += dd * dd;
                    den += (double)b[i] * (double)b[i];
                }
                res->layer_rel_err[l] = den > 0 ? sqrt(num / den) : 0;
            }
        }
        if ((st = dist_sum_f64(res->layer_rel_err, L, err))) goto fail;
    }
    if (!res->cancelled && o->speed && (st = measure_speed(f, r, o, pool ? pool_size(pool) : 1, logits, res, err))) goto fail;
    res->seconds = clock_now() - t0;
    measured = 1;
    st = res->cancelled ? ST_ERR_CANCELLED : ST_OK;
fail:
    free(resid);
    free(a.kld);
    free(a.nll);
    free(a.agree);
    free(done);
    free(a.row);
    core_free_aligned(logits);
    forward_free(f);
    if (!measured) eval_result_done(res);
    return st;
}
