/* Minimal test harness: each test program includes this once. CHECK failures
 * print the location and exit(1) at once ("fails on the first failing
 * assertion"); the program ends with testlib_done() printing a summary line.
 * Below the checks: the scaffolding several tests share (a random generator,
 * the stories260K fixture, a synth fixture, GGUF tensor comparison). */
#ifndef QS_TESTLIB_H
#define QS_TESTLIB_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mapfile.h"
#include "core/status.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model/synth.h"

static int testlib_checks;

#define CHECK(cond) do { testlib_checks++; if (!(cond)) { \
    fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); exit(1); } } while (0)
#define CHECKF(cond, ...) do { testlib_checks++; if (!(cond)) { \
    fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (a), b_ = (b), t_ = (tol); testlib_checks++; \
    if (!(fabs(a_ - b_) <= t_)) { fprintf(stderr, "%s:%d: |%s - %s| = |%.9g - %.9g| > %g\n", \
    __FILE__, __LINE__, #a, #b, a_, b_, t_); exit(1); } } while (0)
#define CHECK_OK(st, err) do { testlib_checks++; if ((st) != ST_OK) { \
    fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #st, \
    status_message((err).code), (err).detail); exit(1); } } while (0)

/* Path of a file under ../shared (QS_SHARED overrides). Static buffer rotation. */
__attribute__((unused)) static const char *testlib_shared(const char *rel) {
    static char buf[4][1024];
    static int k;
    const char *root = getenv("QS_SHARED");
    if (!root) root = "../shared";
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, rel);
    return buf[k];
}

/* Path of one of llama.cpp's tools (the oracle) in $LLAMA_BIN, else
 * build/llama.cpp/bin; NULL, after printing a note naming the test that
 * skips, when it is not there (`make test` builds it when it can). */
__attribute__((unused)) static const char *testlib_llama_tool(const char *tool, const char *what) {
    static char buf[4][1024];
    static int k;
    const char *dir = getenv("LLAMA_BIN");
    if (!dir || !*dir) dir = "build/llama.cpp/bin";
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, tool);
    FILE *f = fopen(buf[k], "rb");
    if (!f) {
        printf("note: %s not found: skipping %s (llama.cpp oracle)\n", buf[k], what);
        return NULL;
    }
    fclose(f);
    return buf[k];
}

/* "LD_PRELOAD=/tmp/...so " (or "" when no compiler is at hand): a preloaded
 * destructor that waits 0.3 s at exit, so llama.cpp's logger thread
 * (common/log.cpp) flushes its last lines ("Final estimate: PPL = ...")
 * before the process ends; under load they were lost now and then. Built once
 * per test process; prefix a llama.cpp command line with it. */
static char testlib_delay_so[512];
static void testlib_delay_rm(void) { unlink(testlib_delay_so); }

__attribute__((unused)) static const char *testlib_llama_exit_delay(void) {
    static char pre[600];
    static int done;
    if (done) return pre;
    done = 1;
    char *so = testlib_delay_so, cmd[1024];
    const char *tmp = getenv("TMPDIR");
    snprintf(so, sizeof testlib_delay_so, "%s/qs-llama-exit-delay-%ld.so", tmp && *tmp ? tmp : "/tmp", (long)getpid());
    snprintf(cmd, sizeof cmd, "printf '#include <unistd.h>\\n__attribute__((destructor)) static void w(void) "
             "{ usleep(300000); }\\n' | ${CC:-cc} -shared -fPIC -x c -o '%s' - 2>/dev/null", so);
    if (system(cmd) == 0) {
        snprintf(pre, sizeof pre, "LD_PRELOAD='%s' ", so);
        atexit(testlib_delay_rm);
    }
    return pre;
}

/* llama-perplexity's perplexity of the GGUF `model` on text_path: -c and -b
 * n_ctx, `chunks` chunks (all of the text when chunks <= 0), float32
 * attention and KV cache, one thread (on a loaded 2-core machine its OpenMP
 * workers spin against each other: 8 s instead of 0.5 s). NAN, after
 * testlib_llama_tool's note naming `what`, when the tool is not built; the
 * test fails when it fails or prints no value. Its log, and the final
 * estimate, go to stderr; stdout is dropped so the two streams cannot
 * interleave inside the line parsed. Its asynchronous logger now and then
 * loses the last lines at exit: the final estimate, or failing that the
 * running value after the last chunk ("[N]x", when chunks > 0), is taken
 * from up to four runs, each with the exit delay. */
__attribute__((unused)) static double testlib_llama_ppl(const char *model, const char *text_path, int64_t n_ctx,
                                                        int64_t chunks, const char *what) {
    const char *bin = testlib_llama_tool("llama-perplexity", what);
    if (!bin) return NAN;
    char cmd[4096], line[1024], nchunks[48] = "", tag[32] = "";
    if (chunks > 0) {
        snprintf(nchunks, sizeof nchunks, " --chunks %lld", (long long)chunks);
        snprintf(tag, sizeof tag, "[%lld]", (long long)chunks);
    }
    snprintf(cmd, sizeof cmd, "%s'%s' -m '%s' -f '%s' -c %lld -b %lld%s -fa off -ctk f32 -ctv f32 -t 1 2>&1 >/dev/null",
             testlib_llama_exit_delay(), bin, model, text_path, (long long)n_ctx, (long long)n_ctx, nchunks);
    double v = NAN;
    for (int attempt = 0; attempt < 4 && isnan(v); attempt++) {
        FILE *p = popen(cmd, "r");
        CHECK(p != NULL);
        while (fgets(line, sizeof line, p)) {
            const char *s = strstr(line, "Final estimate: PPL = ");
            if (s) v = strtod(s + strlen("Final estimate: PPL = "), NULL);
            else if (isnan(v) && *tag && (s = strstr(line, tag)) != NULL) v = strtod(s + strlen(tag), NULL);
        }
        int rc = pclose(p);
        CHECKF(rc == 0, "%s failed on %s (exit %d)", bin, model, rc);
    }
    CHECKF(!isnan(v), "%s printed no perplexity for %s in four runs", bin, model);
    return v;
}

/* === Shared scaffolding === */

/* "dir/name" in one of 32 rotating buffers: a path stays valid for the next
 * 31 calls (the tests' temporary files). */
__attribute__((unused)) static const char *testlib_path(const char *dir, const char *name) {
    static char buf[32][512];
    static int k;
    k = (k + 1) % 32;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* The tests' random generator (64-bit LCG); a test reseeds it by assigning
 * testlib_rng. testlib_rnd: uniform in [0, 1) from the top 53 bits;
 * testlib_gauss: standard normal (Box-Muller, cosine branch). */
static uint64_t testlib_rng = 0x1234567u;
__attribute__((unused)) static double testlib_rnd(void) {
    testlib_rng = testlib_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(testlib_rng >> 11) * 0x1p-53;
}
__attribute__((unused)) static float testlib_gauss(void) {
    double u = testlib_rnd() + 1e-12, v = testlib_rnd();
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

/* stories260K (the f32 GGUF under ../shared) and, when text is not NULL, the
 * TinyStories sample text into *text / *len; both the caller's (model_free,
 * free). Fails the test when either cannot be read. */
__attribute__((unused)) static Model *testlib_stories(char **text, size_t *len) {
    Err err;
    err_init(&err);
    Model *m = NULL;
    CHECK_OK(model_load(testlib_shared("models/stories260K/stories260K-f32.gguf"), NULL, &m, &err), err);
    if (text) CHECK_OK(file_read_all(testlib_shared("text/tinystories_sample.txt"), 1 << 24, text, len, &err), err);
    return m;
}

/* The "tiny" synth preset widened to dim x hidden (vocab too when vocab > 0),
 * 2 layers of 4 heads (2 KV heads), random seed `seed`: written to path as
 * F32 GGUF and loaded (the caller's: model_free). Rows of 256 and more hold
 * whole K-quant super-blocks, which stories260K's 64 and 172 do not. */
__attribute__((unused)) static Model *testlib_synth_wide(const char *path, int64_t dim, int64_t hidden, int64_t vocab,
                                                         uint64_t seed) {
    Err err;
    err_init(&err);
    SynthConfig cfg;
    CHECK_OK(synth_preset("tiny", &cfg, &err), err);
    cfg.dim = dim;
    cfg.hidden_dim = hidden;
    cfg.n_layers = 2;
    cfg.n_heads = 4;
    cfg.n_kv_heads = 2;
    if (vocab > 0) cfg.vocab_size = vocab;
    cfg.seed = seed;
    Synth *sy = NULL;
    CHECK_OK(synth_new(&cfg, &sy, &err), err);
    CHECK_OK(synth_write(sy, path, NULL, &err), err);
    synth_free(sy);
    Model *m = NULL;
    CHECK_OK(model_load(path, NULL, &m, &err), err);
    return m;
}

/* 1 when tensor `name` has the same type and bytes in GGUF files a and b
 * (the test fails when either file or the tensor is missing). */
__attribute__((unused)) static int testlib_same_tensor(const char *a, const char *b, const char *name) {
    Err err;
    err_init(&err);
    Gguf *ga, *gb;
    CHECK_OK(gguf_open(a, &ga, &err), err);
    CHECK_OK(gguf_open(b, &gb, &err), err);
    const GgufTensor *ta = gguf_find_tensor(ga, name), *tb = gguf_find_tensor(gb, name);
    CHECKF(ta && tb, "%s missing", name);
    int eq = ta->type == tb->type && ta->nbytes == tb->nbytes && !memcmp(ta->data, tb->data, ta->nbytes);
    gguf_free(ga);
    gguf_free(gb);
    return eq;
}

static int testlib_done(const char *name) {
    printf("%s: %d checks passed\n", name, testlib_checks);
    return 0;
}

#endif
