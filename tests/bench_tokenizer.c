/* Tokenizer benchmark (make bench): best of 5 encodes of the whole
 * wikitext-2 test file (1.3 MB) with llama.cpp's SPM vocab (Llama 2, 32000
 * tokens), its GPT-2 byte-level vocab (50257 tokens, 50000 merges) and the
 * 512-token stories260K vocab. One line per vocab: seconds, MB/s, tokens/s.
 * Shared data from QS_SHARED (default ../shared). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/clock.h"
#include "core/mapfile.h"
#include "model/gguf.h"
#include "model/tokenizer.h"

static const char *shared(const char *rel, char *buf, size_t cap) {
    const char *root = getenv("QS_SHARED");
    snprintf(buf, cap, "%s/%s", root ? root : "../shared", rel);
    return buf;
}

int main(void) {
    static const char *const vocabs[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                                         "models/stories260K/stories260K-f32.gguf"};
    char path[1024];
    Err err;
    err_init(&err);
    char *text = NULL;
    size_t len = 0;
    if (file_read_all(shared("text/wikitext-2-test.txt", path, sizeof path), 1u << 30, &text, &len, &err) != ST_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.detail);
        return 1;
    }
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        Gguf *g = NULL;
        Tokenizer *t = NULL;
        if (gguf_open(shared(vocabs[v], path, sizeof path), &g, &err) != ST_OK ||
            tokenizer_from_gguf(g, &t, &err) != ST_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.detail);
            return 1;
        }
        double best = 1e30;
        int64_t n = 0;
        for (int r = 0; r < 5; r++) {
            int32_t *ids = NULL;
            double t0 = clock_now();
            if (tokenizer_encode(t, text, len, 0, &ids, &n, &err) != ST_OK) {
                fprintf(stderr, "bench_tokenizer: %s\n", err.detail);
                return 1;
            }
            double dt = clock_now() - t0;
            if (dt < best) best = dt;
            free(ids);
        }
        printf("tokenize wikitext-2-test (%zu bytes) %-40s %8lld tokens %.3f s %6.1f MB/s %9.0f tok/s  [%s]\n", len,
               vocabs[v], (long long)n, best, len / best / 1e6, n / best, tokenizer_describe(t));
        tokenizer_free(t);
        gguf_free(g);
    }
    free(text);
    return 0;
}
