/* Non-finite values are never laundered into finite ones, at every kernel
 * level (QS_CPU=scalar, avx2, avx512 where the CPU has it): exp, softmax and
 * SwiGLU of a NaN give NaN, the activation absmax of a row holding a NaN is
 * NaN, and stories260K with 64 NaN weights in blk.0.attn_q (a copy written
 * at test time) makes ppl fail instead of reporting a finite perplexity. On
 * AVX-512 the exp clamp used to turn a NaN attention score into exp(88.7). */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analysis/ppl.h"
#include "core/mapfile.h"
#include "core/pool.h"
#include "kernels/actquant.h"
#include "kernels/cpu.h"
#include "kernels/vec.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/testlib.h"

static const char *const LEVELS[] = {"scalar", "avx2", "avx512"};

/* Forces QS_CPU=level; returns 0 (with a note) when the CPU lacks it. */
static int set_level(int l) {
    setenv("QS_CPU", LEVELS[l], 1);
    cpu_refresh();
    if ((int)cpu_level() != l) {
        printf("test_nonfinite: note: this CPU has no %s; that level is skipped\n", LEVELS[l]);
        return 0;
    }
    return 1;
}

static void test_kernels(int l) {
    float x[37], y[37], g[37], u[37];
    for (int i = 0; i < 37; i++) x[i] = g[i] = u[i] = (float)(i % 7) - 3.0f;
    x[3] = NAN;
    vec_exp(y, x, 37);
    CHECKF(isnan(y[3]) && isfinite(y[4]), "%s: exp(NaN) = %g", LEVELS[l], y[3]);
    x[20] = NAN; /* one in the SIMD body, one in the tail at every width */
    vec_exp(y, x, 37);
    CHECKF(isnan(y[20]), "%s: exp(NaN) = %g", LEVELS[l], y[20]);
    memcpy(y, x, sizeof y);
    vec_softmax(y, 37, 0.125f);
    for (int i = 0; i < 37; i++) CHECKF(isnan(y[i]), "%s: softmax[%d] = %g with a NaN input", LEVELS[l], i, y[i]);
    for (int n = 1; n <= 37; n += 9) { /* a lone NaN score anywhere */
        for (int k = 0; k < n; k++) {
            for (int i = 0; i < n; i++) y[i] = (float)i * 0.5f;
            y[k] = NAN;
            vec_softmax(y, n, 1.0f);
            for (int i = 0; i < n; i++) CHECKF(isnan(y[i]), "%s: softmax n=%d NaN at %d: [%d] = %g", LEVELS[l], n, k, i, y[i]);
        }
    }
    g[5] = NAN;
    u[30] = INFINITY;
    vec_swiglu(y, g, u, 37);
    CHECKF(isnan(y[5]), "%s: swiglu(NaN) = %g", LEVELS[l], y[5]);
    CHECKF(!isfinite(y[30]) || g[30] == 0.0f, "%s: swiglu(g, inf) = %g", LEVELS[l], y[30]);
    for (int n = 1; n <= 40; n += 13) {
        for (int i = 0; i < n; i++) x[i % 37] = (float)i;
        float row[40];
        for (int i = 0; i < n; i++) row[i] = (float)(i - 5);
        row[n - 1] = NAN;
        CHECKF(isnan(actq_absmax(row, n)), "%s: absmax of %d values ending in NaN = %g", LEVELS[l], n,
               actq_absmax(row, n));
        row[n - 1] = -INFINITY;
        CHECKF(isinf(actq_absmax(row, n)), "%s: absmax with -inf", LEVELS[l]);
    }
}

/* A copy of stories260K-f32.gguf with the first 64 weights of blk.0.attn_q NaN. */
static void write_nan_model(const char *out) {
    Err err;
    err_init(&err);
    Gguf *g;
    CHECK_OK(gguf_open(testlib_shared("models/stories260K/stories260K-f32.gguf"), &g, &err), err);
    const GgufTensor *t = gguf_find_tensor(g, "blk.0.attn_q.weight");
    CHECK(t && t->type == 0 && t->ne[0] * t->ne[1] >= 64);
    size_t off = (size_t)((const unsigned char *)t->data - g->mf.data);
    unsigned char *copy = malloc(g->mf.size);
    memcpy(copy, g->mf.data, g->mf.size);
    float nan = NAN;
    for (int i = 0; i < 64; i++) memcpy(copy + off + (size_t)i * 4, &nan, 4);
    FILE *f = fopen(out, "wb");
    CHECK(f && fwrite(copy, 1, g->mf.size, f) == g->mf.size && fclose(f) == 0);
    free(copy);
    gguf_free(g);
}

static void test_ppl(int l, const char *path, const int32_t *ids, int64_t n) {
    Err err;
    err_init(&err);
    Model *m;
    CHECK_OK(model_load(path, NULL, &m, &err), err);
    Pool *pool;
    CHECK_OK(pool_new(2, &pool, &err), err);
    PplOpts o = {.n_ctx = 128, .max_chunks = 1};
    PplResult r;
    Status st = ppl_run(m, pool, ids, n, &o, NULL, NULL, NULL, &r, &err);
    CHECKF(st == ST_ERR_NUMERIC, "%s: ppl with NaN weights returned %s (PPL %g)", LEVELS[l], status_message(st),
           st ? 0.0 : r.ppl);
    CHECKF(strstr(err.detail, "non-finite"), "%s: %s", LEVELS[l], err.detail);
    /* the message names where the NaN is (issue 15 item 12) */
    CHECKF(strstr(err.detail, "; first non-finite weight: layer 0 q row 0 column 0 = nan"), "%s: %s", LEVELS[l],
           err.detail);
    pool_free(pool);
    model_free(m);
}

int main(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/qs-test-nonfinite-%ld.gguf", (long)getpid());
    write_nan_model(path);
    Err err;
    err_init(&err);
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(file_read_all(testlib_shared("text/tinystories_sample.txt"), 1 << 20, &text, &len, &err), err);
    int32_t *ids = NULL;
    int64_t n = 0;
    {
        Model *m;
        CHECK_OK(model_load(path, NULL, &m, &err), err);
        CHECK_OK(tokenizer_encode(m->tok, text, len, 1, &ids, &n, &err), err);
        model_free(m);
    }
    free(text);
    for (int l = 0; l < 3; l++) {
        if (!set_level(l)) continue;
        test_kernels(l);
        test_ppl(l, path, ids, n);
    }
    free(ids);
    unlink(path);
    return testlib_done("test_nonfinite");
}
