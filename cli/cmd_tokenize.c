/* qscope tokenize: token ids of a text, from only the model's tokenizer — a
 * GGUF's tokenizer.ggml.* metadata (weights are never loaded, so vocab-only
 * GGUFs work), a Hugging Face directory's tokenizer.json, or a llama2.c
 * tokenizer .bin sized by the checkpoint's header. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/mapfile.h"
#include "model/gguf.h"
#include "model/tokenizer.h"

static const char TOKENIZE_USAGE[] =
    "usage: qscope tokenize MODEL (--text S | --file F) [--no-bos] [--tokenizer T] [--json]\n\n"
    "Prints the token ids of a text on one line, space-separated, with BOS first\n"
    "when the tokenizer adds it by default (SentencePiece vocabularies do).\n"
    "Only the tokenizer is read: a vocab-only GGUF works, weights are never loaded.\n\n"
    "MODEL is a .gguf file, a Hugging Face directory (its tokenizer.json) or a\n"
    "tokenizer.json itself, or a llama2.c checkpoint .bin with --tokenizer TOK.bin\n"
    "(the vocab size comes from the checkpoint's header).\n\n"
    "options:\n";

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* 1 if the file starts with the GGUF magic. */
static int is_gguf_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

/* vocab_size from a llama2.c checkpoint's 7 int32 header (negative means a
 * separate classifier, so the magnitude counts). */
static Status llama2c_vocab_size(const char *path, int64_t *vocab, Err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(err, ST_ERR_IO, "%s: cannot open", path);
    unsigned char h[28];
    size_t n = fread(h, 1, sizeof h, f);
    fclose(f);
    if (n != sizeof h)
        return err_set(err, ST_ERR_FORMAT, "%s: truncated: %zu bytes, a llama2.c header has 7 int32 (28 bytes)", path, n);
    int32_t v = (int32_t)((uint32_t)h[20] | (uint32_t)h[21] << 8 | (uint32_t)h[22] << 16 | (uint32_t)h[23] << 24);
    if (v == 0 || v == INT32_MIN)
        return err_set(err, ST_ERR_FORMAT, "%s: offset 20: vocab_size %d in the llama2.c header", path, v);
    *vocab = v < 0 ? -(int64_t)v : v;
    return ST_OK;
}

static Status open_tokenizer(const char *model, const char *tok_path, Tokenizer **t, Err *err) {
    struct stat st;
    if (stat(model, &st) != 0) return err_set(err, ST_ERR_IO, "%s: no such file or directory", model);
    if (S_ISDIR(st.st_mode)) {
        size_t n = strlen(model);
        char *p = malloc(n + 32);
        if (!p) return err_set(err, ST_ERR_NOMEM, "path");
        snprintf(p, n + 32, "%s/tokenizer.json", model);
        Status s = tokenizer_from_hf(p, t, err);
        free(p);
        return s;
    }
    if (has_suffix(model, ".json")) return tokenizer_from_hf(model, t, err);
    if (is_gguf_file(model)) {
        Gguf *g = NULL;
        Status s = gguf_open(model, &g, err);
        if (s == ST_OK) s = tokenizer_from_gguf(g, t, err);
        gguf_free(g);
        return s;
    }
    if (!tok_path)
        return err_set(err, ST_ERR_ARG, "%s: not a GGUF or HF directory; a llama2.c checkpoint needs --tokenizer TOK.bin", model);
    int64_t vocab = 0;
    Status s = llama2c_vocab_size(model, &vocab, err);
    if (s != ST_OK) return s;
    return tokenizer_from_llama2c(tok_path, vocab, t, err);
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL, *tok_path = NULL;
    int no_bos = 0, json = 0;
    const Opt opts[] = {
        OPT_STR("--text", &text, "S", "the text to tokenize (taken byte for byte)"),
        OPT_STR("--file", &file, "F", "tokenize the contents of file F instead"),
        OPT_FLAG("--no-bos", &no_bos, "do not prepend BOS"),
        OPT_STR("--tokenizer", &tok_path, "T", "llama2.c tokenizer .bin (for llama2.c checkpoints)"),
        OPT_FLAG("--json", &json, "print {\"tokenizer\", \"n_tokens\", \"ids\", \"pieces\"} instead"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "tokenize", .usage = TOKENIZE_USAGE, .tables = {opts}, .pos = {&model}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (!model || (!text) == (!file)) {
        fprintf(stderr, "qscope tokenize: need MODEL and exactly one of --text S or --file F (try --help)\n");
        return 2;
    }
    Err err;
    err_init(&err);
    char *buf = NULL;
    size_t len = 0;
    if (file) {
        if (file_read_all(file, (size_t)1 << 31, &buf, &len, &err) != ST_OK) {
            args_print_err("tokenize", &err);
            return 1;
        }
    } else {
        len = strlen(text);
    }
    Tokenizer *t = NULL;
    int32_t *ids = NULL;
    int64_t n = 0;
    int rc = 1;
    if (open_tokenizer(model, tok_path, &t, &err) != ST_OK ||
        tokenizer_encode(t, file ? buf : text, len, no_bos ? 0 : -1, &ids, &n, &err) != ST_OK) {
        args_print_err("tokenize", &err);
        goto done;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject(), *ia = NULL, *pa = NULL;
        int ok = o && json_set_str(o, "tokenizer", tokenizer_describe(t)) && json_set_num(o, "n_tokens", (double)n) &&
                 (ia = json_add_array(o, "ids")) && (pa = json_add_array(o, "pieces"));
        for (int64_t i = 0; ok && i < n; i++)
            ok = json_push(ia, cJSON_CreateNumber(ids[i])) && json_push(pa, cJSON_CreateString(tokenizer_piece(t, ids[i])));
        if (args_print_json("tokenize", json_finish(o, ok))) goto done;
    } else {
        for (int64_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    rc = fflush(stdout) == 0 ? 0 : 1;
done:
    free(ids);
    tokenizer_free(t);
    free(buf);
    return rc;
}
