/* model_load: the dispatcher above the three file-format loaders — a
 * directory is a Hugging Face checkpoint, a "GGUF" magic a GGUF, anything
 * else a llama2.c checkpoint. The loaders call down into model/model.c's
 * binding and bookkeeping (model/load_internal.h), which knows no loader. */
#include "model/model.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "model/load_internal.h"
#include "model/tokenizer.h"

/* Reads up to 4 bytes of the file head; returns the count read, or -1 with err set. */
static int read_magic(const char *path, unsigned char magic[4], Err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, ST_ERR_IO, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return (int)n;
}

Status model_load(const char *path, const ModelLoadOpts *opts, Model **out, Err *err) {
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return err_set(err, ST_ERR_IO, "%s: %s", path, strerror(errno));
    Model *m = NULL;
    Status s = model_new_empty(path, &m, err);
    if (s) return s;
    const char *tok_path = opts ? opts->tokenizer_path : NULL;
    if (S_ISDIR(st.st_mode)) {
        m->format = FMT_HF;
        s = load_hf(m, path, err);
    } else {
        unsigned char magic[4] = {0};
        int n = read_magic(path, magic, err);
        if (n < 0) {
            s = ST_ERR_IO; /* err (which may be NULL) already names the file */
            goto fail;
        }
        if (n == 4 && memcmp(magic, "GGUF", 4) == 0) {
            m->format = FMT_GGUF;
            s = load_gguf(m, path, err);
        } else {
            m->format = FMT_LLAMA2C;
            s = load_llama2c(m, path, tok_path, err);
        }
    }
    if (s != ST_OK) goto fail;
    if (m->tok && tokenizer_vocab_size(m->tok) > m->cfg.vocab_size) {
        s = err_set(err, ST_ERR_MISMATCH, "%s: tokenizer has %lld tokens but the model's vocab is %lld",
                    path, (long long)tokenizer_vocab_size(m->tok), (long long)m->cfg.vocab_size);
        goto fail;
    }
    *out = m;
    return ST_OK;
fail:
    model_free(m);
    return s;
}
