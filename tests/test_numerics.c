/* llama.cpp numerics (model/forward.h NUMERICS_LLAMACPP): the fp16 / bf16
 * rounding kernel (kernels/f16_gemm.h f16_round) against its scalar twin at
 * every dispatch level, bit for bit, on edge values; the forward pass leaving
 * F32 weights alone in that mode; and perplexity on F16 and BF16 synths
 * against llama.cpp's llama-perplexity (float32 attention).
 *
 * What the llama.cpp comparison can and cannot show. Rounding the activations
 * makes the pass discontinuous: a float32 summation-order difference of
 * ~1e-7 now and then moves a value across an fp16/bf16 rounding boundary,
 * so two correct implementations that sum in different orders disagree by
 * far more than in float32. Measured on the tiny synth, 400 chunks of 128
 * of wikitext-2 (2026-12-06): qscope's own AVX-512, OpenBLAS and scalar
 * orders spread by 0.004 (bf16) and 0.0015 (f16) in PPL ~857 in this mode,
 * against 0.0002 without it. The systematic part is what the mode must
 * reproduce: with bf16 weights, rounding the activations moves PPL by -0.08,
 * and llama.cpp reports that shift (exact 856.6538, llama.cpp 856.5745, this
 * mode 856.5726). The test runs 250 chunks to stay within seconds. With f16 weights the shift (second order in the 2^-12 rounding
 * error) is ~0.001 here, below that noise, so the f16 check is only that the
 * mode stays within the noise of llama.cpp; BENCHMARKS.md has the 7B, where
 * the f16 shift is 4e-5 relative. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/ppl.h"
#include "core/fpconv.h"
#include "core/mapfile.h"
#include "kernels/cpu.h"
#include "kernels/f16_gemm.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/synth.h"
#include "model/tokenizer.h"
#include "quant/ggml_type.h"
#include "testlib.h"

static char tmpdir[256];
static const char *const levels[] = {NULL, "avx2", "scalar"}; /* NULL: what the CPU has */

static void set_level(const char *lv) {
    if (lv) setenv("QS_CPU", lv, 1);
    else unsetenv("QS_CPU");
    cpu_refresh();
}

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* f16_round at the current level equals f16_round_ref bit for bit, on random
 * values of every magnitude and on the edges: exact ties (to even), the
 * fp16 overflow threshold (65520 rounds to inf, 65519.99 to 65504), fp16
 * subnormals, bf16's largest finite value rounding to inf, ±0, ±inf, NaN. */
static void check_round(void) {
    enum { N = 4096 + 37 }; /* a tail the vector loops leave to the reference */
    static float x[N], got[N], want[N];
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < N; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        /* random sign, mantissa and an exponent in [-30, 20] */
        x[i] = ldexpf((float)(s >> 40) / (float)(1 << 24) + 0.5f, (int)(s % 51) - 30) * ((s >> 8) & 1 ? -1.0f : 1.0f);
    }
    const float edges[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 65519.99f, 65520.0f, -65520.0f,
                           1.0f + 1.0f / 4096, 1.0f + 3.0f / 4096,  /* fp16 ties: down to even, up to even */
                           5.96e-8f, 2.98e-8f, 8.9e-8f, 6.1e-5f,    /* fp16 subnormals and the normal edge */
                           bitsf(0x3f808000u), bitsf(0x3f818000u),  /* bf16 ties */
                           bitsf(0x7f7fffffu), bitsf(0xff7fffffu), bitsf(0x00000001u), bitsf(0x7fc00001u)};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) x[i * 97] = edges[i];
    for (int bf = 0; bf <= 1; bf++) {
        f16_round_ref(x, want, N, bf);
        f16_round(x, got, N, bf);
        for (int i = 0; i < N; i++) {
            if (isnan(want[i])) {
                CHECKF(isnan(got[i]), "%s round of NaN at %d gave %g", bf ? "bf16" : "f16", i, (double)got[i]);
                continue;
            }
            CHECKF(fbits(got[i]) == fbits(want[i]), "%s round of %.9g (0x%08x): 0x%08x, reference 0x%08x",
                   bf ? "bf16" : "f16", (double)x[i], fbits(x[i]), fbits(got[i]), fbits(want[i]));
        }
        /* in place too */
        memcpy(got, x, sizeof x);
        f16_round(got, got, N, bf);
        for (int i = 0; i < N; i++) CHECK(isnan(want[i]) || fbits(got[i]) == fbits(want[i]));
    }
    /* the reference itself on known values */
    float t[6] = {1.0f + 1.0f / 4096, 1.0f + 3.0f / 4096, 65520.0f, bitsf(0x3f808000u), bitsf(0x3f818000u),
                  bitsf(0x7f7fffffu)}, r[6];
    f16_round_ref(t, r, 3, 0);
    CHECK(r[0] == 1.0f && r[1] == 1.0f + 4.0f / 4096 && isinf(r[2]));
    f16_round_ref(t + 3, r + 3, 3, 1);
    CHECK(fbits(r[3]) == 0x3f800000u && fbits(r[4]) == 0x3f820000u && isinf(r[5]));
}

/* A tiny synth (stories260K's shape, random weights) with 2-D weights of type t. */
static void write_synth(const char *path, uint32_t t) {
    Err err;
    err_init(&err);
    SynthConfig cfg;
    CHECK_OK(synth_preset("tiny", &cfg, &err), err);
    cfg.type = t;
    Synth *sy = NULL;
    CHECK_OK(synth_new(&cfg, &sy, &err), err);
    CHECK_OK(synth_write(sy, path, NULL, &err), err);
    synth_free(sy);
}

/* Logits of the first n tokens of ids in mode nm. */
static float *run_logits(const Model *m, const int32_t *ids, int64_t n, Numerics nm) {
    Err err;
    err_init(&err);
    Forward *f = NULL;
    CHECK_OK(forward_new(m, NULL, n, n, NULL, &f, &err), err);
    CHECK_OK(forward_set_numerics(f, nm, &err), err);
    float *lg = malloc((size_t)(n * m->cfg.vocab_size) * sizeof *lg);
    CHECK(lg);
    CHECK_OK(forward_run(f, ids, n, lg, 0, NULL, &err), err);
    forward_free(f);
    return lg;
}

static char *text;
static size_t text_len;

/* qscope's perplexity of path in mode nm (ctx 128, `chunks` chunks). */
static double qs_ppl(const char *path, Numerics nm, int64_t chunks) {
    Err err;
    err_init(&err);
    Model *m = NULL;
    CHECK_OK(model_load(path, NULL, &m, &err), err);
    int32_t *ids = NULL;
    int64_t n = 0;
    CHECK_OK(tokenizer_encode(m->tok, text, text_len, 1, &ids, &n, &err), err);
    PplOpts o = {.n_ctx = 128, .max_chunks = chunks, .numerics = nm};
    PplResult r;
    CHECK_OK(ppl_run(m, NULL, ids, n, &o, NULL, NULL, NULL, &r, &err), err);
    CHECK(r.chunks == chunks);
    double p = r.ppl;
    ppl_result_done(&r);
    free(ids);
    model_free(m);
    return p;
}

#define CHUNKS 250

int main(void) {
    for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
        set_level(levels[l]);
        check_round();
    }
    set_level(NULL);
    printf("f16_round: bit-equal to the reference at every level (%s, avx2, scalar)\n", cpu_describe());

    snprintf(tmpdir, sizeof tmpdir, "%s/qs-numerics-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(tmpdir) != NULL);
    char p32[300], p16[300], pbf[300];
    snprintf(p32, sizeof p32, "%s/tiny-f32.gguf", tmpdir);
    snprintf(p16, sizeof p16, "%s/tiny-f16.gguf", tmpdir);
    snprintf(pbf, sizeof pbf, "%s/tiny-bf16.gguf", tmpdir);
    write_synth(p32, GGML_F32);
    write_synth(p16, GGML_F16);
    write_synth(pbf, GGML_BF16);
    Err err;
    err_init(&err);
    CHECK_OK(file_read_all(testlib_shared("text/wikitext-2-test.txt"), (size_t)1 << 26, &text, &text_len, &err), err);

    /* F32 weights: the mode changes nothing, bit for bit; BF16 weights: it
     * changes the logits (how, the llama.cpp comparison below checks). */
    {
        Model *m = NULL;
        CHECK_OK(model_load(p32, NULL, &m, &err), err);
        int32_t *ids = NULL;
        int64_t n = 0;
        CHECK_OK(tokenizer_encode(m->tok, text, 4000, 1, &ids, &n, &err), err);
        CHECK(n >= 64);
        float *a = run_logits(m, ids, 64, NUMERICS_EXACT), *b = run_logits(m, ids, 64, NUMERICS_LLAMACPP);
        CHECK(memcmp(a, b, (size_t)(64 * m->cfg.vocab_size) * sizeof *a) == 0);
        free(a);
        free(b);
        model_free(m);
        CHECK_OK(model_load(pbf, NULL, &m, &err), err);
        a = run_logits(m, ids, 64, NUMERICS_EXACT);
        b = run_logits(m, ids, 64, NUMERICS_LLAMACPP);
        CHECK(memcmp(a, b, (size_t)(64 * m->cfg.vocab_size) * sizeof *a) != 0);
        free(a);
        free(b);
        free(ids);
        model_free(m);
    }

    const char *wiki = testlib_shared("text/wikitext-2-test.txt"), *what = "the llama.cpp numerics comparison";
    double ll16 = testlib_llama_ppl(p16, wiki, 128, CHUNKS, what), llbf = testlib_llama_ppl(pbf, wiki, 128, CHUNKS, what);
    /* exact mode: the same value at every level to ~1e-7 (test_forward) */
    double e16 = qs_ppl(p16, NUMERICS_EXACT, CHUNKS), ebf = qs_ppl(pbf, NUMERICS_EXACT, CHUNKS);
    for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
        set_level(levels[l]);
        double q16 = qs_ppl(p16, NUMERICS_LLAMACPP, CHUNKS), qbf = qs_ppl(pbf, NUMERICS_LLAMACPP, CHUNKS);
        printf("QS_CPU=%-6s f16: exact %.4f llamacpp %.4f llama.cpp %.4f | bf16: exact %.4f llamacpp %.4f "
               "llama.cpp %.4f\n", levels[l] ? levels[l] : "(cpu)", e16, q16, ll16, ebf, qbf, llbf);
        /* Without the mode bf16 is 0.08 from llama.cpp; with it, within the
         * noise (250 chunks: 0.015-0.021 measured at the three levels, and
         * of either sign on other seeds: seed 1 at 400 chunks 0.001-0.002) */
        CHECK(fabs(ebf - qbf) > 0.06);
        if (!isnan(llbf)) {
            CHECK_NEAR(qbf, llbf, 0.03);
            CHECK(fabs(ebf - llbf) > 0.06);
        }
        if (!isnan(ll16)) CHECK_NEAR(q16, ll16, 0.006);
    }
    set_level(NULL);
    free(text);
    unlink(p32);
    unlink(p16);
    unlink(pbf);
    rmdir(tmpdir);
    return testlib_done("test_numerics");
}
