/* Perplexity against llama.cpp's reference figures (../shared/reference/
 * llamacpp.md): stories260K in its four forms on tinystories_sample.txt with
 * n_ctx 256, the quantized GGUFs, --full mode, batching, cancellation and the
 * per-row helpers. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/ppl.h"
#include "core/mapfile.h"
#include "core/pool.h"
#include "core/progress.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "testlib.h"

static const double REF_PPL = 6.8981;
static const double REF_RUNNING[7] = {4.2339, 6.6981, 7.5126, 8.8921, 8.0254, 8.0406, 6.8981};

typedef struct {
    Model *m;
    int32_t *ids;
    int64_t n;
} Loaded;

static Loaded load(const char *rel, const char *tok_rel) {
    Err err;
    err_init(&err);
    Loaded L = {0};
    ModelLoadOpts o = {tok_rel ? testlib_shared(tok_rel) : NULL};
    CHECK_OK(model_load(testlib_shared(rel), &o, &L.m, &err), err);
    CHECK(L.m->tok != NULL);
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(file_read_all(testlib_shared("text/tinystories_sample.txt"), 1 << 20, &text, &len, &err), err);
    CHECK_OK(tokenizer_encode(L.m->tok, text, len, 1, &L.ids, &L.n, &err), err);
    free(text);
    return L;
}

static void unload(Loaded *L) {
    free(L->ids);
    model_free(L->m);
}

static PplResult run(const Loaded *L, Pool *pool, const PplOpts *o) {
    Err err;
    err_init(&err);
    PplResult r;
    CHECK_OK(ppl_run(L->m, pool, L->ids, L->n, o, NULL, NULL, NULL, &r, &err), err);
    return r;
}

static void check_form(Pool *pool, const char *rel, const char *tok_rel, double rel_tol) {
    Loaded L = load(rel, tok_rel);
    PplOpts o = {.n_ctx = 256};
    PplResult r = run(&L, pool, &o);
    printf("%-48s PPL %.4f  (", rel, r.ppl);
    for (int64_t c = 0; c < r.chunks; c++) printf("%s[%lld]%.4f", c ? " " : "", (long long)c + 1, r.running[c]);
    printf(")\n");
    CHECK(r.chunks == 7);
    CHECK(r.tokens_scored == 889);
    CHECK(r.tokens_run == 7 * 256);
    for (int c = 0; c < 7; c++) CHECK(r.chunk_seconds[c] > 0 && r.chunk_seconds[c] <= r.seconds);
    if (rel_tol > 0) {
        CHECK_NEAR(r.ppl, REF_PPL, REF_PPL * rel_tol);
    } else {
        CHECK_NEAR(r.ppl, REF_PPL, 0.002);
        for (int c = 0; c < 7; c++) CHECK_NEAR(r.running[c], REF_RUNNING[c], 0.002);
    }
    ppl_result_done(&r);
    unload(&L);
}

static void check_quant(Pool *pool, const char *rel, double ref) {
    Loaded L = load(rel, NULL);
    PplOpts o = {.n_ctx = 256};
    PplResult r = run(&L, pool, &o);
    printf("%-48s PPL %.4f  (llama.cpp %.4f, %+.2f%%)\n", rel, r.ppl, ref, (r.ppl / ref - 1) * 100);
    CHECK(r.chunks == 7 && r.tokens_scored == 889);
    CHECK_NEAR(r.ppl, ref, ref * 0.01);
    ppl_result_done(&r);
    unload(&L);
}

/* === protocol details on the f32 GGUF === */

typedef struct {
    double nll;
    int64_t count, rows_seen, first_pos;
} Collect;

static Status collect(void *user, int64_t chunk, int64_t pos0, int64_t n_rows, const float *logits,
                      int64_t vocab, const int32_t *targets, Err *err) {
    (void)chunk;
    (void)err;
    Collect *c = user;
    if (c->rows_seen == 0) c->first_pos = pos0;
    for (int64_t r = 0; r < n_rows; r++) {
        c->nll -= ppl_log_prob(logits + r * vocab, vocab, targets[r]);
        c->count++;
    }
    c->rows_seen += n_rows;
    return ST_OK;
}

typedef struct {
    Progress *prog;
    int64_t stop_after;
    int64_t seen;
} Canceller;

static void cancel_cb(void *user, int64_t chunk, int64_t n, double running) {
    (void)n;
    (void)running;
    Canceller *c = user;
    c->seen = chunk + 1;
    if (chunk + 1 == c->stop_after) progress_cancel(c->prog);
}

static void test_protocol(Pool *pool) {
    Err err;
    err_init(&err);
    Loaded L = load("models/stories260K/stories260K-f32.gguf", NULL);
    PplOpts o = {.n_ctx = 256};
    PplResult base = run(&L, pool, &o);

    /* Smaller forward batches (KV cache across batches) give the same figure. */
    PplOpts ob = {.n_ctx = 256, .batch = 100};
    PplResult rb = run(&L, pool, &ob);
    CHECK_NEAR(rb.ppl, base.ppl, 1e-4);
    ppl_result_done(&rb);

    /* --chunks limits the run; the running value equals the full run's. */
    PplOpts oc = {.n_ctx = 256, .max_chunks = 3};
    PplResult rc = run(&L, pool, &oc);
    CHECK(rc.chunks == 3 && rc.tokens_scored == 3 * 127);
    CHECK_NEAR(rc.ppl, base.running[2], 1e-9);
    ppl_result_done(&rc);

    /* Full mode scores positions 0..n_ctx-2 of every chunk. */
    PplOpts of = {.n_ctx = 256, .full = 1};
    PplResult rf = run(&L, pool, &of);
    CHECK(rf.chunks == 7 && rf.tokens_scored == 7 * 255);
    CHECK(rf.ppl > 1 && isfinite(rf.ppl));
    /* ... and the chunk runner hands exactly those rows to a caller. */
    Forward *f = NULL;
    CHECK_OK(forward_new(L.m, NULL, 256, 256, pool, &f, &err), err);
    float *buf = malloc((size_t)(256 * L.m->cfg.vocab_size) * sizeof *buf);
    CHECK(buf);
    Collect col = {0};
    for (int64_t c = 0; c < 7; c++)
        CHECK_OK(ppl_eval_chunk(f, L.ids, L.n, c, &of, tokenizer_bos(L.m->tok), buf, collect, &col, &err), err);
    CHECK(col.count == 7 * 255 && col.first_pos == 0);
    CHECK_NEAR(col.nll, rf.nll_sum, 1e-6 * rf.nll_sum);
    Collect half = {0};
    for (int64_t c = 0; c < 7; c++)
        CHECK_OK(ppl_eval_chunk(f, L.ids, L.n, c, &o, tokenizer_bos(L.m->tok), buf, collect, &half, &err), err);
    CHECK(half.count == 889 && half.first_pos == 128);
    CHECK_NEAR(exp(half.nll / (double)half.count), base.ppl, 1e-6);
    CHECK(ppl_eval_chunk(f, L.ids, L.n, 7, &o, 1, buf, collect, &half, &err) == ST_ERR_RANGE);
    free(buf);
    forward_free(f);
    ppl_result_done(&rf);

    /* Cancellation after the second chunk keeps the two chunks done. */
    Progress prog;
    progress_init(&prog);
    Canceller cc = {&prog, 2, 0};
    PplResult rx;
    Status s = ppl_run(L.m, pool, L.ids, L.n, &o, cancel_cb, &cc, &prog, &rx, &err);
    CHECK(s == ST_ERR_CANCELLED && rx.cancelled);
    CHECK(rx.chunks == 2 && rx.tokens_scored == 2 * 127);
    CHECK_NEAR(rx.ppl, base.running[1], 1e-9);
    CHECK(atomic_load(&prog.done) == 2 && atomic_load(&prog.total) == 7);
    ppl_result_done(&rx);

    /* A text shorter than one chunk is an error that says so. */
    PplResult rs;
    PplOpts big = {.n_ctx = 4096};
    CHECK(ppl_run(L.m, pool, L.ids, L.n, &big, NULL, NULL, NULL, &rs, &err) == ST_ERR_RANGE);
    CHECK(strstr(err.detail, "4096") != NULL);
    CHECK(ppl_chunk_count(L.n, &o) == 7 && ppl_chunk_count(L.n, &big) == 0);

    ppl_result_done(&base);
    unload(&L);
}

static void test_helpers(void) {
    float a[4] = {0, 0, 0, 0}, b[2] = {0, 0}, q[2] = {0, (float)log(3.0)};
    CHECK_NEAR(ppl_log_prob(a, 4, 2), log(0.25), 1e-12);
    CHECK_NEAR(ppl_log_prob(q, 2, 1), log(0.75), 1e-7);
    double ls[2];
    ppl_log_softmax(q, 2, ls);
    CHECK_NEAR(ls[0], log(0.25), 1e-7);
    CHECK_NEAR(ls[1], log(0.75), 1e-7);
    /* KL(P||Q) for P = (1/2, 1/2), Q = (1/4, 3/4). */
    CHECK_NEAR(ppl_kl_div(b, q, 2), 0.5 * log(2.0) + 0.5 * log(2.0 / 3.0), 1e-7);
    CHECK(ppl_kl_div(q, q, 2) == 0);
    /* Large logits do not overflow. */
    float big[3] = {1000, 999, -1000};
    CHECK_NEAR(ppl_log_prob(big, 3, 0), -log(1 + exp(-1.0)), 1e-9);
    float tie[4] = {1, 3, 3, 2};
    CHECK(ppl_argmax(tie, 4) == 1);
    PplOpts o = {.n_ctx = 256};
    int64_t first, last;
    ppl_score_range(&o, &first, &last);
    CHECK(first == 128 && last == 254);
    o.full = 1;
    ppl_score_range(&o, &first, &last);
    CHECK(first == 0 && last == 254);
}

int main(void) {
    Err err;
    err_init(&err);
    Pool *pool = NULL;
    CHECK_OK(pool_new(2, &pool, &err), err);
    test_helpers();
    check_form(pool, "models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", 0);
    check_form(pool, "models/stories260K/stories260K-f32.gguf", NULL, 0);
    check_form(pool, "models/stories260K-hf", NULL, 0);
    check_form(pool, "models/stories260K-hf-bf16-sharded", NULL, 0.005);
    check_quant(pool, "models/stories260K/stories260K-Q8_0-mixed.gguf", 6.9245);
    check_quant(pool, "models/stories260K/stories260K-Q4_0-mixed.gguf", 7.6621);
    test_protocol(pool);
    pool_free(pool);
    return testlib_done("test_ppl");
}
