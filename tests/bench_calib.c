/* Calibration cost against a plain forward pass on the same tokens.
 * usage: bench_calib [MODEL.gguf] [--threads N] [--samples N] [--seqlen L] [--text F]
 * Without MODEL, uses build/bench/tinyllama.gguf (written by scripts/bench.sh)
 * or generates `synth --preset tinyllama` (4 layers, dim 2048, hidden 5632,
 * ~712 MB F32) at /tmp/qs_bench_tinyllama.gguf once.
 * Prints one line per configuration: seconds and tokens/s, and the overhead
 * of calibration relative to the plain forward pass (with logits, as `ppl`
 * runs it, and without). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "analysis/calib.h"
#include "core/mapfile.h"
#include "core/pool.h"
#include "model/forward.h"
#include "model/synth.h"
#include "model/tokenizer.h"
#include "testlib.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *model = NULL, *text_path = testlib_shared("text/tinystories_sample.txt");
    int threads = 2;
    int64_t samples = 4, seqlen = 512;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc) samples = atoll(argv[++i]);
        else if (strcmp(argv[i], "--seqlen") == 0 && i + 1 < argc) seqlen = atoll(argv[++i]);
        else if (strcmp(argv[i], "--text") == 0 && i + 1 < argc) text_path = argv[++i];
        else model = argv[i];
    }
    Err err;
    err_init(&err);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!model && access("build/bench/tinyllama.gguf", R_OK) == 0) model = "build/bench/tinyllama.gguf";
    if (!model) {
        model = "/tmp/qs_bench_tinyllama.gguf";
        if (access(model, F_OK) != 0) {
            SynthConfig cfg;
            Synth *s = NULL;
            CHECK_OK(synth_preset("tinyllama", &cfg, &err), err);
            CHECK_OK(synth_new(&cfg, &s, &err), err);
            fprintf(stderr, "bench_calib: writing %s\n", model);
            CHECK_OK(synth_write(s, model, NULL, &err), err);
            synth_free(s);
        }
    }
    Model *m = NULL;
    CHECK_OK(model_load(model, NULL, &m, &err), err);
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(file_read_all(text_path, 1 << 26, &text, &len, &err), err);
    Pool *pool = NULL;
    CHECK_OK(pool_new(threads, &pool, &err), err);

    CalibParams p;
    calib_params_default(&p);
    p.samples = samples;
    p.seqlen = seqlen;
    p.sensitivity = 0;
    int32_t *toks = NULL, *seqs = NULL;
    int64_t nt = 0, ns = 0;
    CHECK_OK(tokenizer_encode(m->tok, text, len, 0, &toks, &nt, &err), err);
    CHECK_OK(calib_sample(toks, nt, tokenizer_bos(m->tok), &p, &seqs, &ns, &err), err);
    printf("model %s: %lld layers, dim %lld, hidden %lld; %lld sequences x %lld tokens, %d threads\n", model,
           (long long)m->cfg.n_layers, (long long)m->cfg.dim, (long long)m->cfg.hidden_dim, (long long)ns,
           (long long)seqlen, threads);

    Forward *fw = NULL;
    CHECK_OK(forward_new(m, NULL, seqlen, seqlen, pool, &fw, &err), err);
    float *logits = malloc(sizeof(float) * (size_t)(seqlen * m->cfg.vocab_size));
    double t_logits = 1e30, t_plain = 1e30;
    for (int rep = 0; rep < 2; rep++) { /* best of 2: the first also warms the page cache */
        double t0 = now();
        for (int64_t i = 0; i < ns; i++) {
            forward_reset(fw);
            CHECK_OK(forward_run(fw, seqs + i * seqlen, seqlen, logits, 0, NULL, &err), err);
        }
        double t1 = now();
        for (int64_t i = 0; i < ns; i++) {
            forward_reset(fw);
            CHECK_OK(forward_run(fw, seqs + i * seqlen, seqlen, NULL, 0, NULL, &err), err);
        }
        double t2 = now();
        t_logits = t1 - t0 < t_logits ? t1 - t0 : t_logits;
        t_plain = t2 - t1 < t_plain ? t2 - t1 : t_plain;
    }
    forward_free(fw);
    free(logits);
    double tok = (double)(ns * seqlen);
    printf("forward, all logits (ppl):      %8.3f s  %8.1f tok/s\n", t_logits, tok / t_logits);
    printf("forward, no logits:             %8.3f s  %8.1f tok/s\n", t_plain, tok / t_plain);

    const char *hpath = "/tmp/qs_bench_calib.h64";
    double t_stats = 1e30, t_full = 1e30;
    for (int rep = 0; rep < 2; rep++) {
        CalibStats *cs = NULL;
        double t0 = now();
        CHECK_OK(calib_run(m, text, len, &p, NULL, pool, NULL, &cs, &err), err);
        double t1 = now();
        calib_stats_free(cs);
        CHECK_OK(calib_run(m, text, len, &p, hpath, pool, NULL, &cs, &err), err);
        double t2 = now();
        calib_stats_free(cs);
        t_stats = t1 - t0 < t_stats ? t1 - t0 : t_stats;
        t_full = t2 - t1 < t_full ? t2 - t1 : t_full;
    }
    unlink(hpath);
    printf("calib, statistics without H:    %8.3f s  %8.1f tok/s  (+%.0f%% vs ppl forward, +%.0f%% vs no-logits)\n",
           t_stats, tok / t_stats, 100 * (t_stats / t_logits - 1), 100 * (t_stats / t_plain - 1));
    printf("calib, statistics + H (%.0f MB): %8.3f s  %8.1f tok/s  (+%.0f%% vs ppl forward, +%.0f%% vs no-logits)\n",
           (double)calib_h_bytes(m) / 1e6, t_full, tok / t_full, 100 * (t_full / t_logits - 1),
           100 * (t_full / t_plain - 1));
    /* H alone: the same dsyrk updates on random rows of the same shapes. */
    {
        const ModelConfig *c = &m->cfg;
        const int64_t w[HSTORE_TAPS] = {c->dim, c->n_heads * c->head_dim, c->dim, c->hidden_dim};
        float *x = malloc(sizeof(float) * (size_t)(seqlen * c->hidden_dim));
        for (int64_t i = 0; i < seqlen * c->hidden_dim; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
        HStore hs;
        double t0 = now();
        CHECK_OK(hstore_create(&hs, hpath, c->n_layers, w, seqlen, &err), err);
        double t1 = now();
        for (int64_t i = 0; i < ns; i++)
            for (int64_t l = 0; l < c->n_layers; l++)
                for (int t = 0; t < HSTORE_TAPS; t++) hstore_add(&hs, l, t, x, seqlen);
        double t2 = now();
        CHECK_OK(hstore_finish(&hs, 1, NULL, &err), err);
        double t3 = now();
        hstore_close(&hs);
        unlink(hpath);
        free(x);
        printf("H alone: create %.3f s, dsyrk updates %.3f s (%.1f GFLOP/s double), finish %.3f s\n", t1 - t0,
               t2 - t1, 1e-9 * (double)ns * (double)seqlen * (double)c->n_layers *
               (double)(w[0] * w[0] + w[1] * w[1] + w[2] * w[2] + w[3] * w[3]) / (t2 - t1), t3 - t2);
    }
    free(toks);
    free(seqs);
    free(text);
    pool_free(pool);
    model_free(m);
    return testlib_done("bench_calib");
}
