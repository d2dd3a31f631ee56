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
#include <unistd.h>

#include "analysis/calib.h"
#include "core/clock.h"
#include "core/mapfile.h"
#include "core/pool.h"
#include "model/forward.h"
#include "model/synth.h"
#include "model/tokenizer.h"
#include "testlib.h"

/* Wall and CPU seconds of one timed section. */
typedef struct Span { double wall, cpu; } Span;
static Span span_begin(void) { return (Span){clock_now(), clock_cpu_seconds()}; }
static Span span_end(Span s) { return (Span){clock_now() - s.wall, clock_cpu_seconds() - s.cpu}; }
static Span span_min(Span a, Span b) { return a.cpu < b.cpu ? a : b; }

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
    Span s_logits = {1e30, 1e30}, s_plain = {1e30, 1e30};
    for (int rep = 0; rep < 2; rep++) { /* best of 2: the first also warms the page cache */
        Span a = span_begin();
        for (int64_t i = 0; i < ns; i++) {
            forward_reset(fw);
            CHECK_OK(forward_run(fw, seqs + i * seqlen, seqlen, logits, 0, NULL, &err), err);
        }
        s_logits = span_min(s_logits, span_end(a));
        a = span_begin();
        for (int64_t i = 0; i < ns; i++) {
            forward_reset(fw);
            CHECK_OK(forward_run(fw, seqs + i * seqlen, seqlen, NULL, 0, NULL, &err), err);
        }
        s_plain = span_min(s_plain, span_end(a));
    }
    forward_free(fw);
    free(logits);
    double tok = (double)(ns * seqlen);
    printf("%-34s %9s %9s %9s   %s\n", "run (best of 2)", "wall s", "cpu s", "tok/cpu-s", "cpu overhead");
    printf("%-34s %9.3f %9.3f %9.1f\n", "forward, all logits (as ppl)", s_logits.wall, s_logits.cpu, tok / s_logits.cpu);
    printf("%-34s %9.3f %9.3f %9.1f\n", "forward, no logits", s_plain.wall, s_plain.cpu, tok / s_plain.cpu);

    /* A per-process path: two benches must not write one H file. */
    char hpath[96];
    snprintf(hpath, sizeof hpath, "/tmp/qs_bench_calib.%ld.h64", (long)getpid());
    Span s_stats = {1e30, 1e30}, s_full = {1e30, 1e30};
    for (int rep = 0; rep < 2; rep++) {
        CalibStats *cs = NULL;
        Span a = span_begin();
        CHECK_OK(calib_run(m, text, len, &p, NULL, pool, NULL, &cs, &err), err);
        s_stats = span_min(s_stats, span_end(a));
        calib_stats_free(cs);
        a = span_begin();
        CHECK_OK(calib_run(m, text, len, &p, hpath, pool, NULL, &cs, &err), err);
        s_full = span_min(s_full, span_end(a));
        calib_stats_free(cs);
        unlink(hpath);
    }
    unlink(hpath);
    printf("%-34s %9.3f %9.3f %9.1f   %+.0f%% vs ppl forward, %+.0f%% vs no-logits\n", "calib, statistics, no H",
           s_stats.wall, s_stats.cpu, tok / s_stats.cpu, 100 * (s_stats.cpu / s_logits.cpu - 1),
           100 * (s_stats.cpu / s_plain.cpu - 1));
    char lab[64];
    snprintf(lab, sizeof lab, "calib, statistics + H (%.0f MB)", (double)calib_h_bytes(m) / 1e6);
    printf("%-34s %9.3f %9.3f %9.1f   %+.0f%% vs ppl forward, %+.0f%% vs no-logits\n", lab, s_full.wall,
           s_full.cpu, tok / s_full.cpu, 100 * (s_full.cpu / s_logits.cpu - 1), 100 * (s_full.cpu / s_plain.cpu - 1));
    /* H alone: the same dsyrk updates on synthetic rows of the same shapes. */
    {
        const ModelConfig *c = &m->cfg;
        const int64_t w[HSTORE_TAPS] = {c->dim, c->n_heads * c->head_dim, c->dim, c->hidden_dim};
        float *x = malloc(sizeof(float) * (size_t)(seqlen * c->hidden_dim));
        for (int64_t i = 0; i < seqlen * c->hidden_dim; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
        HStore hs;
        CHECK_OK(hstore_create(&hs, hpath, c->n_layers, w, seqlen, pool, &err), err);
        Span a = span_begin();
        for (int64_t i = 0; i < ns; i++)
            for (int64_t l = 0; l < c->n_layers; l++)
                for (int t = 0; t < HSTORE_TAPS; t++) hstore_add(&hs, l, t, x, seqlen);
        Span up = span_end(a);
        a = span_begin();
        CHECK_OK(hstore_finish(&hs, 1, &err), err);
        Span fin = span_end(a);
        int in_ram = hs.in_ram;
        hstore_close(&hs);
        unlink(hpath);
        free(x);
        double flop = (double)ns * (double)seqlen * (double)c->n_layers *
                      (double)(w[0] * w[0] + w[1] * w[1] + w[2] * w[2] + w[3] * w[3]);
        printf("H alone (%s): float32 block products %.3f s wall %.3f s cpu (%.1f useful GFLOP per cpu-s), "
               "finish (convert, checksum, write, fsync) %.3f s wall\n",
               in_ram ? "float64 sums in RAM" : "float32 sums in the file mapping", up.wall, up.cpu,
               1e-9 * flop / up.cpu, fin.wall);
    }
    printf("load average: ");
    FILE *la = fopen("/proc/loadavg", "r");
    int ch;
    while (la && (ch = fgetc(la)) != EOF && ch != '\n') putchar(ch);
    if (la) fclose(la);
    printf("\n");
    free(toks);
    free(seqs);
    free(text);
    pool_free(pool);
    model_free(m);
    return testlib_done("bench_calib");
}
