/* Tokenizers: llama.cpp's conformance vectors (every line of both .inp/.out
 * pairs), the three stories260K tokenizers agreeing on the whole TinyStories
 * sample, round trips, the pre-tokenizer splitters on hand-derived cases,
 * small in-memory vocabularies, and malformed files. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/mapfile.h"
#include "core/status.h"
#include "model/gguf.h"
#include "model/tok_pretok.h"
#include "model/tokenizer.h"
#include "tests/testlib.h"

static const char *write_tmp(const char *name, const void *data, size_t n);

static char *slurp(const char *path, size_t *len) {
    char *buf = NULL;
    Err err;
    err_init(&err);
    CHECK_OK(file_read_all(path, 64u << 20, &buf, len, &err), err);
    return buf;
}

static Tokenizer *load_gguf_tok(const char *path) {
    Gguf *g = NULL;
    Tokenizer *t = NULL;
    Err err;
    err_init(&err);
    CHECK_OK(gguf_open(path, &g, &err), err);
    CHECK_OK(tokenizer_from_gguf(g, &t, &err), err);
    gguf_free(g);
    return t;
}

static void encode(const Tokenizer *t, const char *s, size_t n, int bos, int32_t **ids, int64_t *nid) {
    Err err;
    err_init(&err);
    CHECK_OK(tokenizer_encode(t, s, n, bos, ids, nid, &err), err);
}

/* === llama.cpp conformance vectors ==================================== */

/* Splits .inp as test-tokenizer-0 does (separator "\n__ggml_vocab_test__\n",
 * inputs not stripped) and compares with each stripped .out line. */
static int run_vocab_vectors(const char *name, Tokenizer *given) {
    char vocab[512], inp[512], outp[512];
    snprintf(vocab, sizeof vocab, "vocab/%s.gguf", name);
    snprintf(inp, sizeof inp, "%s.inp", testlib_shared(vocab));
    snprintf(outp, sizeof outp, "%s.out", testlib_shared(vocab));
    Tokenizer *t = given ? given : load_gguf_tok(testlib_shared(vocab));
    size_t ilen, olen;
    char *in = slurp(inp, &ilen), *out = slurp(outp, &olen);
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t seplen = strlen(sep), pos = 0, opos = 0;
    int tests = 0;
    while (pos < ilen) {
        const char *next = strstr(in + pos, sep);
        size_t end = next ? (size_t)(next - in) : ilen;
        /* the matching .out line */
        CHECKF(opos < olen, "%s: more inputs than output lines", name);
        const char *nl = memchr(out + opos, '\n', olen - opos);
        size_t oend = nl ? (size_t)(nl - out) : olen;
        int32_t expect[1024];
        int64_t ne = 0;
        for (size_t k = opos; k < oend;) {
            while (k < oend && (out[k] == ' ' || out[k] == '\r' || out[k] == '\t')) k++;
            if (k >= oend) break;
            CHECK(ne < 1024);
            expect[ne++] = (int32_t)strtol(out + k, NULL, 10);
            while (k < oend && out[k] != ' ') k++;
        }
        int32_t *ids;
        int64_t n;
        encode(t, in + pos, end - pos, 0, &ids, &n);
        int same = n == ne;
        for (int64_t i = 0; same && i < n; i++) same = ids[i] == expect[i];
        if (!same) {
            fprintf(stderr, "%s test %d: input '%.*s'\n  expected:", name, tests, (int)(end - pos), in + pos);
            for (int64_t i = 0; i < ne; i++) fprintf(stderr, " %d", expect[i]);
            fprintf(stderr, "\n  got:     ");
            for (int64_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
            fputc('\n', stderr);
        }
        CHECKF(same, "%s: test %d differs from llama.cpp", name, tests);
        free(ids);
        tests++;
        opos = nl ? oend + 1 : olen;
        if (!next) break;
        pos = end + seplen;
    }
    CHECKF(opos >= olen, "%s: more output lines than inputs", name);
    free(in);
    free(out);
    if (!given) tokenizer_free(t);
    return tests;
}

/* === stories260K: GGUF vs llama2.c vs HF on the whole sample ========== */

static void check_stories(void) {
    Err err;
    err_init(&err);
    size_t len;
    char *text = slurp(testlib_shared("text/tinystories_sample.txt"), &len);
    Tokenizer *tg = load_gguf_tok(testlib_shared("models/stories260K/stories260K-f32.gguf"));
    Tokenizer *tl = NULL, *th = NULL;
    CHECK_OK(tokenizer_from_llama2c(testlib_shared("models/stories260K/tok512.bin"), 512, &tl, &err), err);
    CHECK_OK(tokenizer_from_hf(testlib_shared("models/stories260K-hf/tokenizer.json"), &th, &err), err);
    CHECK(tokenizer_kind(tg) == TOK_SPM && tokenizer_kind(tl) == TOK_SPM && tokenizer_kind(th) == TOK_SPM);
    CHECK(tokenizer_vocab_size(tg) == 512 && tokenizer_vocab_size(tl) == 512 && tokenizer_vocab_size(th) == 512);
    CHECK(tokenizer_bos(tg) == 1 && tokenizer_bos(tl) == 1 && tokenizer_bos(th) == 1);
    CHECK(tokenizer_eos(tg) == 2 && tokenizer_eos(tl) == 2 && tokenizer_eos(th) == 2);
    CHECK(tokenizer_add_bos(tg) && tokenizer_add_bos(tl) && tokenizer_add_bos(th));
    int32_t *a, *b, *c;
    int64_t na, nb, nc;
    encode(tg, text, len, -1, &a, &na);
    encode(tl, text, len, -1, &b, &nb);
    encode(th, text, len, -1, &c, &nc);
    /* BOS + the 1881 text tokens the HF fixture's README reports for this file. */
    CHECKF(na == 1882, "gguf: %lld tokens", (long long)na);
    CHECK(a[0] == 1 && a[1] != 1);
    CHECKF(nb == na, "llama2.c %lld vs gguf %lld tokens", (long long)nb, (long long)na);
    CHECKF(nc == na, "hf %lld vs gguf %lld tokens", (long long)nc, (long long)na);
    for (int64_t i = 0; i < na; i++) {
        CHECKF(a[i] == b[i], "token %lld: gguf %d llama2.c %d", (long long)i, a[i], b[i]);
        CHECKF(a[i] == c[i], "token %lld: gguf %d hf %d", (long long)i, a[i], c[i]);
    }
    /* Round trip: decode(encode(x)) is x behind the U+2581 prefix (BOS decodes to nothing). */
    Tokenizer *all[3] = {tg, tl, th};
    for (int k = 0; k < 3; k++) {
        char *dec;
        size_t dlen;
        CHECK_OK(tokenizer_detokenize(all[k], a, na, &dec, &dlen, &err), err);
        CHECK(dlen == len + 1 && dec[0] == ' ' && memcmp(dec + 1, text, len) == 0);
        free(dec);
    }
    /* Pieces: llama2.c's spaces and "\n<s>\n" are normalised to the GGUF's. */
    for (int32_t i = 0; i < 512; i++) CHECK(strcmp(tokenizer_piece(tg, i), tokenizer_piece(tl, i)) == 0);
    CHECK(strcmp(tokenizer_piece(tg, 259), "\xE2\x96\x81t") == 0);
    CHECK(strcmp(tokenizer_piece(tg, 1), "<s>") == 0);
    CHECK(strcmp(tokenizer_describe(tg), "spm (llama), 512 tokens") == 0);
    /* Byte fallback: a character outside the 512-token vocab becomes its UTF-8 bytes. */
    int32_t *ids;
    int64_t n;
    encode(tg, "\xE6\x97\xA5", 3, 0, &ids, &n); /* U+65E5 */
    CHECK(n == 4 && ids[1] == 3 + 0xE6 && ids[2] == 3 + 0x97 && ids[3] == 3 + 0xA5);
    char buf[8];
    CHECK(tokenizer_decode(tg, ids[1], buf, sizeof buf) == 1 && (unsigned char)buf[0] == 0xE6);
    free(ids);
    int32_t *h;
    int64_t nh;
    encode(th, "\xE6\x97\xA5", 3, 0, &h, &nh);
    CHECK(nh == 4 && h[1] == 3 + 0xE6 && h[3] == 3 + 0xA5);
    free(h);
    /* add_bos = 0 / 1 override the default. */
    encode(tg, "Once", 4, 0, &ids, &n);
    CHECK(n >= 1 && ids[0] != 1);
    free(ids);
    free(a);
    free(b);
    free(c);
    tokenizer_free(tg);
    tokenizer_free(tl);
    tokenizer_free(th);
    free(text);
}

/* The stories tokenizer.json rewritten with HF's newer Metaspace
 * pre-tokenizer (prepend_scheme "first", split false) instead of the
 * Prepend+Replace normalizer: a leading space is then not doubled. */
static void check_metaspace(void) {
    Err err;
    err_init(&err);
    size_t len;
    char *js = slurp(testlib_shared("models/stories260K-hf/tokenizer.json"), &len);
    char *a = strstr(js, "\"normalizer\":"), *b = strstr(js, "\"pre_tokenizer\": null,");
    CHECK(a && b && b > a);
    const char *mid = "\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": "
                      "\"\xE2\x96\x81\", \"prepend_scheme\": \"first\", \"split\": false},";
    size_t na = (size_t)(a - js), nm = strlen(mid), nb = len - (size_t)(b - js) - strlen("\"pre_tokenizer\": null,");
    char *out = malloc(na + nm + nb);
    memcpy(out, js, na);
    memcpy(out + na, mid, nm);
    memcpy(out + na + nm, b + strlen("\"pre_tokenizer\": null,"), nb);
    const char *p = write_tmp("metaspace.json", out, na + nm + nb);
    Tokenizer *tm = NULL, *th = NULL;
    CHECK_OK(tokenizer_from_hf(p, &tm, &err), err);
    CHECK_OK(tokenizer_from_hf(testlib_shared("models/stories260K-hf/tokenizer.json"), &th, &err), err);
    CHECK(tokenizer_add_bos(tm) && tokenizer_bos(tm) == 1);
    int32_t *x, *y;
    int64_t nx, ny;
    encode(tm, "Once upon a time", 16, -1, &x, &nx);
    encode(th, "Once upon a time", 16, -1, &y, &ny);
    CHECK(nx == ny && memcmp(x, y, (size_t)nx * sizeof *x) == 0);
    free(x);
    free(y);
    encode(tm, " Once upon", 10, 0, &x, &nx); /* "▁Once▁upon" */
    encode(th, "Once upon", 9, 0, &y, &ny);
    CHECK(nx == ny && memcmp(x, y, (size_t)nx * sizeof *x) == 0);
    free(x);
    free(y);
    encode(th, " Once upon", 10, 0, &y, &ny); /* the legacy normalizer gives "▁▁Once▁upon" */
    CHECK(ny == nx + 1);
    free(y);
    tokenizer_free(tm);
    tokenizer_free(th);
    free(out);
    free(js);
}

/* === round trips and speed on wikitext ================================ */

static void check_wikitext(void) {
    Err err;
    err_init(&err);
    size_t len;
    char *text = slurp(testlib_shared("text/wikitext-2-test.txt"), &len);
    const char *names[2] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf"};
    for (int k = 0; k < 2; k++) {
        Tokenizer *t = load_gguf_tok(testlib_shared(names[k]));
        int32_t *ids;
        int64_t n;
        /* CPU time, not wall: a guard against a quadratic merge loop that a loaded machine
         * (other jobs on the cores) cannot trip; encode is single-threaded */
        double t0 = clock_cpu_seconds();
        encode(t, text, len, 0, &ids, &n);
        double dt = clock_cpu_seconds() - t0;
        printf("  %s: %zu bytes -> %lld tokens in %.3f CPU-s\n", names[k], len, (long long)n, dt);
        if (!getenv("QS_ASAN")) CHECKF(dt < 5.0, "tokenizing wikitext took %.2f CPU-s", dt);
        CHECK(n > (int64_t)(len / 8) && n < (int64_t)len);
        char *dec;
        size_t dlen;
        CHECK_OK(tokenizer_detokenize(t, ids, n, &dec, &dlen, &err), err);
        int spm = tokenizer_kind(t) == TOK_SPM;
        CHECK(dlen == len + (size_t)spm);
        CHECK(memcmp(dec + spm, text, len) == 0);
        free(dec);
        free(ids);
        tokenizer_free(t);
    }
    /* Out of the stories' domain (many byte fallbacks), the three stories260K
     * tokenizers still agree id for id on the whole file. */
    Tokenizer *tg = load_gguf_tok(testlib_shared("models/stories260K/stories260K-f32.gguf"));
    Tokenizer *tl = NULL, *th = NULL;
    CHECK_OK(tokenizer_from_llama2c(testlib_shared("models/stories260K/tok512.bin"), 512, &tl, &err), err);
    CHECK_OK(tokenizer_from_hf(testlib_shared("models/stories260K-hf/tokenizer.json"), &th, &err), err);
    int32_t *a, *b, *c;
    int64_t na, nb, nc;
    encode(tg, text, len, -1, &a, &na);
    encode(tl, text, len, -1, &b, &nb);
    encode(th, text, len, -1, &c, &nc);
    CHECK(na == nb && na == nc);
    int64_t diff = 0;
    for (int64_t i = 0; i < na; i++) diff += a[i] != b[i] || a[i] != c[i];
    CHECKF(diff == 0, "%lld of %lld wikitext ids differ between gguf, llama2.c and hf", (long long)diff, (long long)na);
    free(a);
    free(b);
    free(c);
    tokenizer_free(tg);
    tokenizer_free(tl);
    tokenizer_free(th);
    free(text);
}

/* === pre-tokenizers =================================================== */

/* Splits UTF-8 s with pre and compares the words with the '|'-separated expect. */
static void check_split(TokPre pre, const char *s, const char *expect) {
    uint32_t cp[512];
    int64_t n = 0;
    size_t off[513];
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s), i = 0;
    while (i < len) {
        off[n] = i;
        uint32_t c = p[i];
        size_t m = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (m == 1) cp[n] = c;
        else if (m == 2) cp[n] = ((c & 0x1F) << 6) | (p[i + 1] & 0x3F);
        else if (m == 3) cp[n] = ((c & 0x0F) << 12) | ((uint32_t)(p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
        else cp[n] = ((c & 0x07) << 18) | ((uint32_t)(p[i + 1] & 0x3F) << 12) | ((uint32_t)(p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
        n++;
        i += m;
    }
    off[n] = len;
    int64_t *lens, nw;
    Err err;
    err_init(&err);
    CHECK_OK(tok_pretok_split(pre, cp, n, &lens, &nw, &err), err);
    char got[2048];
    size_t k = 0;
    int64_t c0 = 0;
    for (int64_t w = 0; w < nw; w++) {
        if (w) got[k++] = '|';
        size_t b = off[c0], e = off[c0 + lens[w]];
        memcpy(got + k, s + b, e - b);
        k += e - b;
        c0 += lens[w];
    }
    got[k] = 0;
    CHECKF(c0 == n, "%s: lengths sum to %lld of %lld", tok_pretok_name(pre), (long long)c0, (long long)n);
    CHECKF(strcmp(got, expect) == 0, "%s on '%s': got '%s', want '%s'", tok_pretok_name(pre), s, got, expect);
    free(lens);
}

static void check_pretokenizers(void) {
    /* GPT-2: contractions are case-sensitive, whitespace before a word stays one space. */
    check_split(TOK_PRE_GPT2, "I'm  here's 'RE", "I|'m| | here|'s| '|RE");
    check_split(TOK_PRE_GPT2, "a1234 !!x\n\n", "a|1234| !!|x|\n\n");
    /* Llama 3: case-insensitive contractions, numbers in threes, newlines glued to punctuation. */
    check_split(TOK_PRE_LLAMA3, "I'M 12345,\n\nok", "I|'M| |123|45|,\n\n|ok");
    check_split(TOK_PRE_LLAMA3, "  x\t\n y", " | x|\t\n| y");
    /* Qwen2: single digits. */
    check_split(TOK_PRE_QWEN2, "x 2024!", "x| |2|0|2|4|!");
    /* default: punctuation runs, then GPT-2, then numbers, then digit triples. */
    check_split(TOK_PRE_DEFAULT, "ab, c12345", "ab|,| c|123|45");
    /* DeepSeek-LLM: line breaks alone, letters with one leading space, CJK runs. */
    check_split(TOK_PRE_DEEPSEEK_LLM, "Hi there\n\xE4\xBD\xA0\xE5\xA5\xBD 42",
                "Hi| there|\n|\xE4\xBD\xA0\xE5\xA5\xBD| |42");
    /* Mixed-script cases, expected splits from an independent regex engine:
     * `python3 scripts/pretok_reference.py --cases` (Python's regex module on
     * llama.cpp's regex lists). */
    static const struct { TokPre pre; const char *text, *expect; } cases[] = {
        {TOK_PRE_DEFAULT, "Hello, y'all! I'M 'Ll 2024?? \xC2\xBD \xD9\xA3\xD9\xA4 caf\xC3\xA9 e\xCC\x81 \xF0\x9F\x98\x80\xF0\x9F\x98\x80 --== \xC2\xA0\xC2\xA0x\xE2\x80\x83\xE2\x80\x83y \x09\x0D\x0A\x0D\x0A  z  ",
         "Hello|,| y|'|all|!| I|'|M| |'|Ll| |202|4|??| |\xC2\xBD| |\xD9\xA3\xD9\xA4| caf\xC3\xA9| e|\xCC\x81| \xF0\x9F\x98\x80\xF0\x9F\x98\x80| |--==| \xC2\xA0|\xC2\xA0|x|\xE2\x80\x83|\xE2\x80\x83|y| \x09\x0D\x0A\x0D\x0A | z|  "},
        {TOK_PRE_DEFAULT, "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C\x31\x33\x31\x34\x31\x35\x31\xE5\xA4\xA9\xEF\xBD\x9E \xEA\xB0\x80\xEB\x82\x98 \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C's 3.14e-10 ``x`` $5+6<7>",
         "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C|131|415|1|\xE5\xA4\xA9|\xEF\xBD\x9E| \xEA\xB0\x80\xEB\x82\x98| \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C|'|s| |3|.|14|e|-|10| ``|x|``| |$|5|+|6|<|7|>"},
        {TOK_PRE_DEFAULT, "  \x0A\x0A\x09 end\xE3\x80\x80\xE3\x80\x80\xE3\x80\x8C\xE5\xBC\x95\xE7\x94\xA8\xE3\x80\x8D!?\x0A",
         "  \x0A\x0A\x09| end|\xE3\x80\x80\xE3\x80\x80|\xE3\x80\x8C|\xE5\xBC\x95\xE7\x94\xA8|\xE3\x80\x8D!?|\x0A"},
        {TOK_PRE_GPT2, "Hello, y'all! I'M 'Ll 2024?? \xC2\xBD \xD9\xA3\xD9\xA4 caf\xC3\xA9 e\xCC\x81 \xF0\x9F\x98\x80\xF0\x9F\x98\x80 --== \xC2\xA0\xC2\xA0x\xE2\x80\x83\xE2\x80\x83y \x09\x0D\x0A\x0D\x0A  z  ",
         "Hello|,| y|'|all|!| I|'|M| '|Ll| 2024|??| \xC2\xBD| \xD9\xA3\xD9\xA4| caf\xC3\xA9| e|\xCC\x81| \xF0\x9F\x98\x80\xF0\x9F\x98\x80| --==| \xC2\xA0|\xC2\xA0|x|\xE2\x80\x83|\xE2\x80\x83|y| \x09\x0D\x0A\x0D\x0A | z|  "},
        {TOK_PRE_GPT2, "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C\x31\x33\x31\x34\x31\x35\x31\xE5\xA4\xA9\xEF\xBD\x9E \xEA\xB0\x80\xEB\x82\x98 \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C's 3.14e-10 ``x`` $5+6<7>",
         "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C|1314151|\xE5\xA4\xA9|\xEF\xBD\x9E| \xEA\xB0\x80\xEB\x82\x98| \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C|'s| 3|.|14|e|-|10| ``|x|``| $|5|+|6|<|7|>"},
        {TOK_PRE_GPT2, "  \x0A\x0A\x09 end\xE3\x80\x80\xE3\x80\x80\xE3\x80\x8C\xE5\xBC\x95\xE7\x94\xA8\xE3\x80\x8D!?\x0A",
         "  \x0A\x0A\x09| end|\xE3\x80\x80|\xE3\x80\x80|\xE3\x80\x8C|\xE5\xBC\x95\xE7\x94\xA8|\xE3\x80\x8D!?|\x0A"},
        {TOK_PRE_LLAMA3, "Hello, y'all! I'M 'Ll 2024?? \xC2\xBD \xD9\xA3\xD9\xA4 caf\xC3\xA9 e\xCC\x81 \xF0\x9F\x98\x80\xF0\x9F\x98\x80 --== \xC2\xA0\xC2\xA0x\xE2\x80\x83\xE2\x80\x83y \x09\x0D\x0A\x0D\x0A  z  ",
         "Hello|,| y|'all|!| I|'M| '|Ll| |202|4|??| |\xC2\xBD| |\xD9\xA3\xD9\xA4| caf\xC3\xA9| e|\xCC\x81| \xF0\x9F\x98\x80\xF0\x9F\x98\x80| --==| \xC2\xA0|\xC2\xA0x|\xE2\x80\x83|\xE2\x80\x83y| \x09\x0D\x0A\x0D\x0A| | z|  "},
        {TOK_PRE_LLAMA3, "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C\x31\x33\x31\x34\x31\x35\x31\xE5\xA4\xA9\xEF\xBD\x9E \xEA\xB0\x80\xEB\x82\x98 \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C's 3.14e-10 ``x`` $5+6<7>",
         "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C|131|415|1|\xE5\xA4\xA9|\xEF\xBD\x9E| \xEA\xB0\x80\xEB\x82\x98| \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C|'s| |3|.|14|e|-|10| ``|x|``| $|5|+|6|<|7|>"},
        {TOK_PRE_LLAMA3, "  \x0A\x0A\x09 end\xE3\x80\x80\xE3\x80\x80\xE3\x80\x8C\xE5\xBC\x95\xE7\x94\xA8\xE3\x80\x8D!?\x0A",
         "  \x0A\x0A|\x09| end|\xE3\x80\x80|\xE3\x80\x80|\xE3\x80\x8C\xE5\xBC\x95\xE7\x94\xA8|\xE3\x80\x8D!?\x0A"},
        {TOK_PRE_QWEN2, "Hello, y'all! I'M 'Ll 2024?? \xC2\xBD \xD9\xA3\xD9\xA4 caf\xC3\xA9 e\xCC\x81 \xF0\x9F\x98\x80\xF0\x9F\x98\x80 --== \xC2\xA0\xC2\xA0x\xE2\x80\x83\xE2\x80\x83y \x09\x0D\x0A\x0D\x0A  z  ",
         "Hello|,| y|'all|!| I|'M| '|Ll| |2|0|2|4|??| |\xC2\xBD| |\xD9\xA3|\xD9\xA4| caf\xC3\xA9| e|\xCC\x81| \xF0\x9F\x98\x80\xF0\x9F\x98\x80| --==| \xC2\xA0|\xC2\xA0x|\xE2\x80\x83|\xE2\x80\x83y| \x09\x0D\x0A\x0D\x0A| | z|  "},
        {TOK_PRE_QWEN2, "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C\x31\x33\x31\x34\x31\x35\x31\xE5\xA4\xA9\xEF\xBD\x9E \xEA\xB0\x80\xEB\x82\x98 \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C's 3.14e-10 ``x`` $5+6<7>",
         "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C|1|3|1|4|1|5|1|\xE5\xA4\xA9|\xEF\xBD\x9E| \xEA\xB0\x80\xEB\x82\x98| \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C|'s| |3|.|1|4|e|-|1|0| ``|x|``| $|5|+|6|<|7|>"},
        {TOK_PRE_QWEN2, "  \x0A\x0A\x09 end\xE3\x80\x80\xE3\x80\x80\xE3\x80\x8C\xE5\xBC\x95\xE7\x94\xA8\xE3\x80\x8D!?\x0A",
         "  \x0A\x0A|\x09| end|\xE3\x80\x80|\xE3\x80\x80|\xE3\x80\x8C\xE5\xBC\x95\xE7\x94\xA8|\xE3\x80\x8D!?\x0A"},
        {TOK_PRE_DEEPSEEK_LLM, "Hello, y'all! I'M 'Ll 2024?? \xC2\xBD \xD9\xA3\xD9\xA4 caf\xC3\xA9 e\xCC\x81 \xF0\x9F\x98\x80\xF0\x9F\x98\x80 --== \xC2\xA0\xC2\xA0x\xE2\x80\x83\xE2\x80\x83y \x09\x0D\x0A\x0D\x0A  z  ",
         "Hello|,| y|'|all|!| I|'|M| '|Ll| |2024|??| |\xC2\xBD| |\xD9\xA3\xD9\xA4| caf|\xC3\xA9| e|\xCC\x81 \xF0\x9F\x98\x80\xF0\x9F\x98\x80| --==| \xC2\xA0|\xC2\xA0x|\xE2\x80\x83|\xE2\x80\x83y| \x09|\x0D|\x0A|\x0D|\x0A| | z|  "},
        {TOK_PRE_DEEPSEEK_LLM, "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C\x31\x33\x31\x34\x31\x35\x31\xE5\xA4\xA9\xEF\xBD\x9E \xEA\xB0\x80\xEB\x82\x98 \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C's 3.14e-10 ``x`` $5+6<7>",
         "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8|apple|\xE5\xB7\xA5\xE4\xBD\x9C|1314151|\xE5\xA4\xA9|\xEF\xBD\x9E| |\xEA\xB0\x80\xEB\x82\x98| \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C|'|s| |3|.|14|e|-|10| ``|x|``| $|5|+|6|<|7|>"},
        {TOK_PRE_DEEPSEEK_LLM, "  \x0A\x0A\x09 end\xE3\x80\x80\xE3\x80\x80\xE3\x80\x8C\xE5\xBC\x95\xE7\x94\xA8\xE3\x80\x8D!?\x0A",
         "  |\x0A|\x0A|\x09| end|\xE3\x80\x80\xE3\x80\x80|\xE3\x80\x8C\xE5\xBC\x95\xE7\x94\xA8\xE3\x80\x8D|!?|\x0A"},
        {TOK_PRE_STARCODER, "Hello, y'all! I'M 'Ll 2024?? \xC2\xBD \xD9\xA3\xD9\xA4 caf\xC3\xA9 e\xCC\x81 \xF0\x9F\x98\x80\xF0\x9F\x98\x80 --== \xC2\xA0\xC2\xA0x\xE2\x80\x83\xE2\x80\x83y \x09\x0D\x0A\x0D\x0A  z  ",
         "Hello|,| y|'|all|!| I|'|M| '|Ll| |2|0|2|4|??| |\xC2\xBD| |\xD9\xA3|\xD9\xA4| caf\xC3\xA9| e|\xCC\x81| \xF0\x9F\x98\x80\xF0\x9F\x98\x80| --==| \xC2\xA0|\xC2\xA0|x|\xE2\x80\x83|\xE2\x80\x83|y| \x09\x0D\x0A\x0D\x0A | z|  "},
        {TOK_PRE_STARCODER, "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C\x31\x33\x31\x34\x31\x35\x31\xE5\xA4\xA9\xEF\xBD\x9E \xEA\xB0\x80\xEB\x82\x98 \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C's 3.14e-10 ``x`` $5+6<7>",
         "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C|1|3|1|4|1|5|1|\xE5\xA4\xA9|\xEF\xBD\x9E| \xEA\xB0\x80\xEB\x82\x98| \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C|'s| |3|.|1|4|e|-|1|0| ``|x|``| $|5|+|6|<|7|>"},
        {TOK_PRE_STARCODER, "  \x0A\x0A\x09 end\xE3\x80\x80\xE3\x80\x80\xE3\x80\x8C\xE5\xBC\x95\xE7\x94\xA8\xE3\x80\x8D!?\x0A",
         "  \x0A\x0A\x09| end|\xE3\x80\x80|\xE3\x80\x80|\xE3\x80\x8C|\xE5\xBC\x95\xE7\x94\xA8|\xE3\x80\x8D!?|\x0A"},
        {TOK_PRE_FALCON, "Hello, y'all! I'M 'Ll 2024?? \xC2\xBD \xD9\xA3\xD9\xA4 caf\xC3\xA9 e\xCC\x81 \xF0\x9F\x98\x80\xF0\x9F\x98\x80 --== \xC2\xA0\xC2\xA0x\xE2\x80\x83\xE2\x80\x83y \x09\x0D\x0A\x0D\x0A  z  ",
         "Hello|,| y|'|all|!| I|'|M| |'|Ll| |202|4|??| \xC2\xBD| \xD9\xA3\xD9\xA4| caf\xC3\xA9| e|\xCC\x81| \xF0\x9F\x98\x80\xF0\x9F\x98\x80| |--==| \xC2\xA0|\xC2\xA0|x|\xE2\x80\x83|\xE2\x80\x83|y| \x09\x0D\x0A\x0D\x0A | z|  "},
        {TOK_PRE_FALCON, "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C\x31\x33\x31\x34\x31\x35\x31\xE5\xA4\xA9\xEF\xBD\x9E \xEA\xB0\x80\xEB\x82\x98 \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C's 3.14e-10 ``x`` $5+6<7>",
         "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C|131|415|1|\xE5\xA4\xA9|\xEF\xBD\x9E| \xEA\xB0\x80\xEB\x82\x98| \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C|'|s| 3|.|14|e|-|10| |``|x|``| |$|5|+|6|<|7|>"},
        {TOK_PRE_FALCON, "  \x0A\x0A\x09 end\xE3\x80\x80\xE3\x80\x80\xE3\x80\x8C\xE5\xBC\x95\xE7\x94\xA8\xE3\x80\x8D!?\x0A",
         "  \x0A\x0A\x09| end|\xE3\x80\x80\xE3\x80\x80|\xE3\x80\x8C|\xE5\xBC\x95\xE7\x94\xA8|\xE3\x80\x8D!?|\x0A"},
        {TOK_PRE_DEEPSEEK_CODER, "Hello, y'all! I'M 'Ll 2024?? \xC2\xBD \xD9\xA3\xD9\xA4 caf\xC3\xA9 e\xCC\x81 \xF0\x9F\x98\x80\xF0\x9F\x98\x80 --== \xC2\xA0\xC2\xA0x\xE2\x80\x83\xE2\x80\x83y \x09\x0D\x0A\x0D\x0A  z  ",
         "Hello|,| y|'|all|!| I|'|M| '|Ll| |2|0|2|4|??| |\xC2\xBD| |\xD9\xA3|\xD9\xA4| caf\xC3\xA9| e|\xCC\x81 \xF0\x9F\x98\x80\xF0\x9F\x98\x80| --|== \xC2\xA0|\xC2\xA0x|\xE2\x80\x83|\xE2\x80\x83y| \x09|\x0D|\x0A|\x0D|\x0A| | z|  "},
        {TOK_PRE_DEEPSEEK_CODER, "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8\x61pple\xE5\xB7\xA5\xE4\xBD\x9C\x31\x33\x31\x34\x31\x35\x31\xE5\xA4\xA9\xEF\xBD\x9E \xEA\xB0\x80\xEB\x82\x98 \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C's 3.14e-10 ``x`` $5+6<7>",
         "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8|apple|\xE5\xB7\xA5\xE4\xBD\x9C|1|3|1|4|1|5|1|\xE5\xA4\xA9|\xEF\xBD\x9E| |\xEA\xB0\x80\xEB\x82\x98| \xD0\x96\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C|'|s| |3|.|1|4|e|-|1|0| ``|x|`` $|5|+|6|<|7|>"},
        {TOK_PRE_DEEPSEEK_CODER, "  \x0A\x0A\x09 end\xE3\x80\x80\xE3\x80\x80\xE3\x80\x8C\xE5\xBC\x95\xE7\x94\xA8\xE3\x80\x8D!?\x0A",
         "  |\x0A|\x0A|\x09| end|\xE3\x80\x80|\xE3\x80\x80|\xE3\x80\x8C|\xE5\xBC\x95\xE7\x94\xA8|\xE3\x80\x8D|!?|\x0A"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_split(cases[i].pre, cases[i].text, cases[i].expect);
    TokPre p;
    CHECK(tok_pretok_parse("llama-bpe", 9, &p) && p == TOK_PRE_LLAMA3);
    CHECK(tok_pretok_parse("gpt-2", 5, &p) && p == TOK_PRE_GPT2);
    CHECK(!tok_pretok_parse("no-such-pre", 11, &p));
    const TokPreName *pn = tok_pretok_lookup("llama3", 6);
    CHECK(pn && pn->pre == TOK_PRE_LLAMA3 && pn->ignore_merges && pn->add_bos);
    pn = tok_pretok_lookup("dbrx", 4); /* Llama 3's regex without its flags */
    CHECK(pn && pn->pre == TOK_PRE_LLAMA3 && !pn->ignore_merges && !pn->add_bos);
    const char *ds_llm[3] = {"[\r\n]", "\\s?[A-Za-z\xC2\xB5]+", "\\p{N}+"};
    const char *ds_coder[3] = {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+"};
    CHECK(tok_pretok_from_regex_list(ds_llm, 3, &p) && p == TOK_PRE_DEEPSEEK_LLM);
    CHECK(tok_pretok_from_regex_list(ds_coder, 3, &p) && p == TOK_PRE_DEEPSEEK_CODER);
    CHECK(!tok_pretok_from_regex_list(ds_coder + 1, 2, &p));
    pn = tok_pretok_lookup("command-r", 9);
    CHECK(pn && pn->pre == TOK_PRE_STARCODER);
    CHECK(tok_pretok_from_regex("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", &p) &&
          p == TOK_PRE_LLAMA3);
}

/* === in-memory vocabularies =========================================== */

static void check_memory_vocabs(void) {
    Err err;
    err_init(&err);
    /* SPM: "ab" (score -1) beats "bc" (-2) on "abc"; ties go to the leftmost pair. */
    const char *sp[] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "c", "ab", "bc", "<0x78>", "<X>"};
    TokPiece tp[11];
    for (int i = 0; i < 11; i++) tp[i] = (TokPiece){sp[i], strlen(sp[i])};
    float sc[11] = {0, 0, 0, -5, -9, -9, -9, -1, -2, 0, 0};
    int32_t ty[11] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 6, 4};
    TokVocab v = {.model = "llama", .n_tokens = 11, .tokens = tp, .scores = sc, .types = ty,
                  .bos = 1, .eos = 2, .unk = 0, .add_bos = 1, .add_space_prefix = TOK_PREFIX_ALWAYS};
    Tokenizer *t;
    CHECK_OK(tokenizer_from_vocab(&v, &t, &err), err);
    int32_t *ids;
    int64_t n;
    encode(t, "abc", 3, -1, &ids, &n);
    CHECK(n == 4 && ids[0] == 1 && ids[1] == 3 && ids[2] == 7 && ids[3] == 6);
    free(ids);
    sc[8] = -1; /* now "ab" and "bc" tie: the left pair wins */
    tokenizer_free(t);
    CHECK_OK(tokenizer_from_vocab(&v, &t, &err), err);
    encode(t, "abc", 3, 0, &ids, &n);
    CHECK(n == 3 && ids[1] == 7 && ids[2] == 6);
    free(ids);
    /* 'x' has a byte token; 'y' has none and falls back to <unk>. A user-defined
     * token is cut out of the text and the text after it gets the U+2581 prefix;
     * a control token in the text is plain text unless parse_special. */
    encode(t, "x<X>a", 5, 0, &ids, &n);
    CHECK(n == 5 && ids[0] == 3 && ids[1] == 9 && ids[2] == 10 && ids[3] == 3 && ids[4] == 4);
    free(ids);
    encode(t, "y", 1, 0, &ids, &n);
    CHECK(n == 2 && ids[0] == 3 && ids[1] == 0);
    free(ids);
    CHECK_OK(tokenizer_encode_ex(t, "<s>", 3, 0, 1, &ids, &n, &err), err);
    CHECK(n == 1 && ids[0] == 1);
    free(ids);
    encode(t, "", 0, -1, &ids, &n);
    CHECK(n == 1 && ids[0] == 1);
    free(ids);
    tokenizer_free(t);

    /* Byte-level BPE: merges apply by rank, not by order of appearance. */
    const char *bp[] = {"a", "b", "c", "ab", "bc", "abc", "\xC4\xA0", "\xC4\xA0" "a"};
    TokPiece bt[8];
    for (int i = 0; i < 8; i++) bt[i] = (TokPiece){bp[i], strlen(bp[i])};
    TokPiece mg[3] = {{"b c", 3}, {"a b", 3}, {"\xC4\xA0 a", 4}};
    TokVocab bv = {.model = "gpt2", .pre = "gpt-2", .n_tokens = 8, .tokens = bt, .n_merges = 3,
                   .merges = mg, .bos = -1, .eos = -1, .unk = -1};
    CHECK_OK(tokenizer_from_vocab(&bv, &t, &err), err);
    encode(t, "abc a", 5, -1, &ids, &n);
    CHECK(n == 3 && ids[0] == 0 && ids[1] == 4 && ids[2] == 7);
    char buf[16];
    CHECK(tokenizer_decode(t, 7, buf, sizeof buf) == 2 && memcmp(buf, " a", 2) == 0);
    free(ids);
    tokenizer_free(t);
    bv.pre = "no-such-pre";
    CHECK(tokenizer_from_vocab(&bv, &t, &err) == ST_ERR_UNSUPPORTED && strstr(err.detail, "no-such-pre"));
}

/* === arbitrary bytes ================================================== */

/* Random bytes (mostly invalid UTF-8) through every tokenizer and every
 * pre-tokenizer: ids stay in range, and SPM's pieces (byte tokens as their
 * byte) still spell out exactly the U+2581-escaped text. (Decoding does not
 * round-trip here: an invalid lead byte can swallow part of an escaped space,
 * which then comes back as bytes, exactly as in llama.cpp.) */
static void check_random_bytes(void) {
    Err err;
    err_init(&err);
    enum { N = 1 << 15 };
    static char buf[N];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* a mix of ASCII, spaces/newlines and high bytes */
        unsigned r = (unsigned)(x >> 24);
        if ((r & 3) == 0) buf[i] = " \n\t'"[r >> 2 & 3];
        else if ((r & 3) == 1) buf[i] = (char)('a' + (r >> 2) % 26);
        else buf[i] = (char)(r >> 2);
    }
    Tokenizer *t = load_gguf_tok(testlib_shared("vocab/ggml-vocab-llama-spm.gguf"));
    int32_t *ids;
    int64_t n;
    encode(t, buf, N, 0, &ids, &n);
    static char esc[3 * N + 3], spelled[3 * N + 3];
    size_t ne = 0, ns = 0;
    memcpy(esc, "\xE2\x96\x81", 3);
    ne = 3;
    for (int i = 0; i < N; i++) {
        if (buf[i] == ' ') { memcpy(esc + ne, "\xE2\x96\x81", 3); ne += 3; }
        else esc[ne++] = buf[i];
    }
    for (int64_t i = 0; i < n; i++) {
        const char *pc = tokenizer_piece(t, ids[i]);
        CHECK(tokenizer_token_type(t, ids[i]) == TOK_TYPE_NORMAL || tokenizer_token_type(t, ids[i]) == TOK_TYPE_BYTE);
        size_t pl = strlen(pc);
        if (tokenizer_token_type(t, ids[i]) == TOK_TYPE_BYTE) {
            CHECK(pl == 6 && ns < sizeof spelled);
            spelled[ns++] = (char)strtol(pc + 3, NULL, 16);
        } else {
            CHECK(ns + pl <= sizeof spelled);
            memcpy(spelled + ns, pc, pl);
            ns += pl;
        }
    }
    CHECK(ns == ne && memcmp(spelled, esc, ne) == 0);
    free(ids);
    tokenizer_free(t);
    char *dec;
    size_t dlen;

    Gguf *g = NULL;
    CHECK_OK(gguf_open(testlib_shared("vocab/ggml-vocab-gpt-2.gguf"), &g, &err), err);
    const GgufValue *toks = gguf_get_arr(g, "tokenizer.ggml.tokens");
    const GgufValue *merges = gguf_get_arr(g, "tokenizer.ggml.merges");
    int64_t nt = (int64_t)toks->v.arr.n, nm = (int64_t)merges->v.arr.n;
    TokPiece *tp = malloc((size_t)nt * sizeof *tp), *mp = malloc((size_t)nm * sizeof *mp);
    for (int64_t i = 0; i < nt; i++) tp[i] = (TokPiece){toks->v.arr.strs[i].s, (size_t)toks->v.arr.strs[i].len};
    for (int64_t i = 0; i < nm; i++) mp[i] = (TokPiece){merges->v.arr.strs[i].s, (size_t)merges->v.arr.strs[i].len};
    const char *pres[8] = {"default", "gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "starcoder", "falcon", "deepseek-coder"};
    for (int k = 0; k < 8; k++) {
        TokVocab v = {.model = "gpt2", .pre = pres[k], .n_tokens = nt, .tokens = tp, .n_merges = nm, .merges = mp,
                      .bos = 50256, .eos = 50256, .unk = -1, .ignore_merges = k == 2};
        CHECK_OK(tokenizer_from_vocab(&v, &t, &err), err);
        encode(t, buf, N, 0, &ids, &n);
        CHECK(n > N / 16 && n <= 2 * N);
        for (int64_t i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < nt);
        /* Valid UTF-8 survives byte-level BPE exactly: the ASCII-only prefix does. */
        free(ids);
        const char *ascii = "It's 12345 o'clock... \t\n\n  the END!! ";
        encode(t, ascii, strlen(ascii), 0, &ids, &n);
        CHECK_OK(tokenizer_detokenize(t, ids, n, &dec, &dlen, &err), err);
        CHECKF(dlen == strlen(ascii) && memcmp(dec, ascii, dlen) == 0, "%s round trip", pres[k]);
        free(dec);
        free(ids);
        tokenizer_free(t);
    }
    free(tp);
    free(mp);
    gguf_free(g);
}

/* === malformed files ================================================== */

static char tmp_paths[16][256];
static int n_tmp;

/* Writes a scratch file (removed by remove_tmp) and returns its path. */
static const char *write_tmp(const char *name, const void *data, size_t n) {
    char (*path)[256] = tmp_paths;
    int k = n_tmp++;
    CHECK(k < 16);
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path[k], sizeof path[k], "%s/qs_tok_%d_%s", dir, (int)getpid(), name);
    FILE *f = fopen(path[k], "wb");
    CHECK(f);
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
    return path[k];
}

static void check_bad_files(void) {
    Err err;
    err_init(&err);
    Tokenizer *t = NULL;
    size_t len;
    char *tok = slurp(testlib_shared("models/stories260K/tok512.bin"), &len);
    /* Truncated in the middle of the token list. */
    const char *p = write_tmp("trunc.bin", tok, len / 2);
    CHECK(tokenizer_from_llama2c(p, 512, &t, &err) == ST_ERR_FORMAT && !t);
    CHECKF(strstr(err.detail, p) && strstr(err.detail, "truncated"), "%s", err.detail);
    /* Shorter than the header. */
    p = write_tmp("tiny.bin", tok, 2);
    CHECK(tokenizer_from_llama2c(p, 512, &t, &err) == ST_ERR_FORMAT && strstr(err.detail, p));
    /* A token length running past the end of the file. */
    char *bad = malloc(len);
    memcpy(bad, tok, len);
    int32_t huge = 1 << 30;
    memcpy(bad + 4 + 4, &huge, 4); /* token 0's length */
    p = write_tmp("badlen.bin", bad, len);
    CHECK(tokenizer_from_llama2c(p, 512, &t, &err) == ST_ERR_FORMAT);
    CHECKF(strstr(err.detail, p) && strstr(err.detail, "past the end"), "%s", err.detail);
    int32_t neg = -5;
    memcpy(bad + 4 + 4, &neg, 4);
    p = write_tmp("neglen.bin", bad, len);
    CHECK(tokenizer_from_llama2c(p, 512, &t, &err) == ST_ERR_FORMAT && strstr(err.detail, p));
    free(bad);
    free(tok);
    /* Not JSON. */
    const char *junk = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}";
    p = write_tmp("tokenizer.json", junk, strlen(junk));
    CHECK(tokenizer_from_hf(p, &t, &err) == ST_ERR_FORMAT);
    CHECKF(strstr(err.detail, p) && strstr(err.detail, "not valid JSON"), "%s", err.detail);
    /* Valid JSON, but a vocab id that is not an integer. */
    const char *badid = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}";
    p = write_tmp("tokenizer.json", badid, strlen(badid));
    CHECK(tokenizer_from_hf(p, &t, &err) == ST_ERR_FORMAT && strstr(err.detail, p));
    /* An id that would need a 2-billion-entry table. */
    const char *sparse = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 2000000000}, \"merges\": []}}";
    p = write_tmp("sparse.json", sparse, strlen(sparse));
    CHECK(tokenizer_from_hf(p, &t, &err) == ST_ERR_FORMAT);
    CHECKF(strstr(err.detail, p) && strstr(err.detail, "2000000000"), "%s", err.detail);
    /* Missing file. */
    CHECK(tokenizer_from_hf("/nonexistent/tokenizer.json", &t, &err) != ST_OK &&
          strstr(err.detail, "/nonexistent/tokenizer.json"));
    /* A GGUF without a vocabulary. */
    Gguf *g = NULL;
    CHECK_OK(gguf_open(testlib_shared("models/stories260K/stories260K-f32.gguf"), &g, &err), err);
    CHECK_OK(tokenizer_from_gguf(g, &t, &err), err);
    tokenizer_free(t);
    gguf_free(g);
}

static void remove_tmp(void) {
    for (int i = 0; i < n_tmp; i++) unlink(tmp_paths[i]);
}

/* === HF byte-level tokenizer.json ===================================== */

static void json_put_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

/* Writes the GPT-2 vocab GGUF out as a Hugging Face tokenizer.json with the
 * given pre_tokenizer JSON and checks tokenizer_from_hf reproduces llama.cpp's
 * vectors through it. */
static void check_hf_byte_level(void) {
    Err err;
    err_init(&err);
    Gguf *g = NULL;
    CHECK_OK(gguf_open(testlib_shared("vocab/ggml-vocab-gpt-2.gguf"), &g, &err), err);
    const GgufValue *toks = gguf_get_arr(g, "tokenizer.ggml.tokens");
    const GgufValue *merges = gguf_get_arr(g, "tokenizer.ggml.merges");
    CHECK(toks && merges);
    const char *pres[3] = {
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}",
        "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
        "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|"
        "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}, "
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}",
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true}",
    };
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "hf%d.json", k);
        const char *p = write_tmp(name, "", 0);
        FILE *f = fopen(p, "wb");
        CHECK(f);
        fprintf(f, "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 50256, \"content\": \"<|endoftext|>\", "
                   "\"special\": true}], \"normalizer\": null, \"pre_tokenizer\": %s, \"model\": {\"type\": \"BPE\", "
                   "\"byte_fallback\": false, \"vocab\": {", pres[k]);
        for (uint64_t i = 0; i < toks->v.arr.n; i++) {
            char *s = strndup(toks->v.arr.strs[i].s, toks->v.arr.strs[i].len);
            fprintf(f, i ? ", " : "");
            json_put_str(f, s);
            fprintf(f, ": %llu", (unsigned long long)i);
            free(s);
        }
        fprintf(f, "}, \"merges\": [");
        for (uint64_t i = 0; i < merges->v.arr.n; i++) {
            char *s = strndup(merges->v.arr.strs[i].s, merges->v.arr.strs[i].len);
            fprintf(f, i ? ", " : "");
            json_put_str(f, s);
            free(s);
        }
        fprintf(f, "]}}\n");
        fclose(f);
        Tokenizer *t = NULL;
        CHECK_OK(tokenizer_from_hf(p, &t, &err), err);
        CHECK(tokenizer_kind(t) == TOK_BPE && tokenizer_vocab_size(t) == 50257 && !tokenizer_add_bos(t));
        CHECK(tokenizer_token_type(t, 50256) == TOK_TYPE_CONTROL);
        if (k == 0) {
            CHECKF(strstr(tokenizer_describe(t), "pre gpt-2"), "%s", tokenizer_describe(t));
            CHECK(run_vocab_vectors("ggml-vocab-gpt-2", t) == 46);
        } else if (k == 2) {
            /* add_prefix_space: "Hello" is tokenized as " Hello"; " Hello" gets no second space. */
            int32_t *ids;
            int64_t n;
            encode(t, "Hello", 5, -1, &ids, &n);
            CHECK(n == 1 && ids[0] == 18435);
            free(ids);
            encode(t, " Hello", 6, -1, &ids, &n);
            CHECK(n == 1 && ids[0] == 18435);
            free(ids);
        } else {
            /* Llama 3's regex selects the llama-bpe splitter: digits go in threes. */
            CHECKF(strstr(tokenizer_describe(t), "pre llama-bpe"), "%s", tokenizer_describe(t));
            int32_t *ids;
            int64_t n;
            encode(t, "12345", 5, -1, &ids, &n);
            CHECK(n == 2 && strcmp(tokenizer_piece(t, ids[0]), "123") == 0 && strcmp(tokenizer_piece(t, ids[1]), "45") == 0);
            free(ids);
        }
        tokenizer_free(t);
    }
    gguf_free(g);
}

int main(void) {
    check_pretokenizers();
    check_memory_vocabs();
    int a = run_vocab_vectors("ggml-vocab-llama-spm", NULL);
    int b = run_vocab_vectors("ggml-vocab-gpt-2", NULL);
    printf("  llama.cpp vectors: %d spm + %d gpt-2 lines exact\n", a, b);
    CHECK(a == 46 && b == 46);
    check_hf_byte_level();
    check_stories();
    check_metaspace();
    check_wikitext();
    check_random_bytes();
    check_bad_files();
    remove_tmp();
    return testlib_done("test_tokenizer");
}
