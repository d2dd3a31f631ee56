/* llama2.c checkpoints (Karpathy's run.c format, "version 0"): a header of
 * seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len; a negative vocab_size means a separate classifier follows), then
 * float32 tensors back to back, each stacked over layers. Every tensor is
 * borrowed from the mapping; the file size must match the header exactly. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "model/load_internal.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "quant/ggml_type.h"

#define L2C_HEADER_BYTES 28

typedef struct L2cHeader {
    int64_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared_classifier;
} L2cHeader;

/* Offsets (in floats, from the end of the header) of each stacked tensor. */
typedef struct L2cLayout {
    const char *path;
    const float *base;       /* first float after the header */
    L2cHeader h;
    int64_t kv_dim;
    int64_t off[ROLE_COUNT]; /* start of the tensor (stacked over layers for per-layer roles) */
    int64_t per_layer[ROLE_COUNT];
    int64_t total;           /* floats after the header */
    char name[96];
} L2cLayout;

static void release_mapfile(void *p) {
    mapfile_close(p);
    free(p);
}

/* Adds a*b to *acc with overflow checks on int64; returns 0 on overflow. */
static int add_prod(int64_t *acc, int64_t a, int64_t b) {
    int64_t p;
    if (__builtin_mul_overflow(a, b, &p)) return 0;
    if (__builtin_add_overflow(*acc, p, acc)) return 0;
    return 1;
}

static Status parse_header(const char *path, const unsigned char *data, size_t size, L2cLayout *lay, Err *err) {
    if (size < L2C_HEADER_BYTES)
        return err_set(err, ST_ERR_FORMAT,
                       "%s: %zu bytes is too short for a llama2.c header (%d bytes); not a GGUF either", path,
                       size, L2C_HEADER_BYTES);
    int32_t v[7];
    memcpy(v, data, sizeof v);
    static const char *const field[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                                         "seq_len"};
    static const int64_t max[7] = {1 << 20, 1 << 20, 4096, 4096, 4096, 1 << 24, 1 << 26};
    for (int i = 0; i < 7; i++) {
        int64_t x = v[i];
        if (i == 5 && x < 0) x = -x;
        if (x <= 0 || x > max[i])
            return err_set(err, ST_ERR_FORMAT,
                           "%s: not a GGUF (no magic) and not a llama2.c checkpoint: header field %s = %d "
                           "(offset %d) is outside [1, %lld]",
                           path, field[i], v[i], 4 * i, (long long)max[i]);
    }
    L2cHeader *h = &lay->h;
    h->dim = v[0];
    h->hidden_dim = v[1];
    h->n_layers = v[2];
    h->n_heads = v[3];
    h->n_kv_heads = v[4];
    h->shared_classifier = v[5] > 0;
    h->vocab_size = v[5] > 0 ? v[5] : -(int64_t)v[5];
    h->seq_len = v[6];
    if (h->dim % h->n_heads != 0 || h->n_heads % h->n_kv_heads != 0 || (h->dim / h->n_heads) % 2 != 0)
        return err_set(err, ST_ERR_FORMAT,
                       "%s: llama2.c header is inconsistent: dim %lld, n_heads %lld, n_kv_heads %lld "
                       "(dim must be a multiple of n_heads, n_heads of n_kv_heads, head size even)",
                       path, (long long)h->dim, (long long)h->n_heads, (long long)h->n_kv_heads);
    int64_t hs = h->dim / h->n_heads;
    lay->kv_dim = hs * h->n_kv_heads;
    int64_t L = h->n_layers, d = h->dim, hid = h->hidden_dim, kv = lay->kv_dim;

    /* llama2.c order: token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2,
     * w3, rms_final, freq_cis_real, freq_cis_imag, wcls. */
    struct {
        TensorRole role;
        int64_t a, b; /* per-layer (or whole, for non-layer roles) size a*b */
        int stacked;
    } order[] = {
        {ROLE_EMBD, h->vocab_size, d, 0}, {ROLE_ATTN_NORM, 1, d, 1}, {ROLE_Q, d, d, 1},
        {ROLE_K, kv, d, 1},              {ROLE_V, kv, d, 1},        {ROLE_O, d, d, 1},
        {ROLE_FFN_NORM, 1, d, 1},         {ROLE_GATE, hid, d, 1},    {ROLE_DOWN, d, hid, 1},
        {ROLE_UP, hid, d, 1},             {ROLE_OUT_NORM, 1, d, 0},
    };
    int64_t acc = 0;
    int ok = 1;
    for (size_t i = 0; i < sizeof order / sizeof order[0] && ok; i++) {
        int64_t n = 0;
        ok = add_prod(&n, order[i].a, order[i].b);
        lay->off[order[i].role] = acc;
        lay->per_layer[order[i].role] = n;
        ok = ok && add_prod(&acc, n, order[i].stacked ? L : 1);
    }
    ok = ok && add_prod(&acc, h->seq_len, hs); /* freq_cis_real + imag: 2 * seq_len * hs/2 */
    lay->off[ROLE_OUTPUT] = acc;
    lay->per_layer[ROLE_OUTPUT] = h->vocab_size * d;
    if (!h->shared_classifier) ok = ok && add_prod(&acc, h->vocab_size, d);
    int64_t bytes = 0;
    ok = ok && add_prod(&bytes, acc, 4) && !__builtin_add_overflow(bytes, L2C_HEADER_BYTES, &bytes);
    if (!ok)
        return err_set(err, ST_ERR_FORMAT, "%s: llama2.c header describes an impossibly large model", path);
    if ((uint64_t)bytes != (uint64_t)size)
        return err_set(err, ST_ERR_FORMAT,
                       "%s: llama2.c header (dim %lld, hidden %lld, %lld layers, %lld/%lld heads, vocab %lld%s, "
                       "seq_len %lld) needs exactly %lld bytes, the file has %zu%s",
                       path, (long long)d, (long long)hid, (long long)L, (long long)h->n_heads,
                       (long long)h->n_kv_heads, (long long)h->vocab_size,
                       h->shared_classifier ? "" : " unshared", (long long)h->seq_len, (long long)bytes, size,
                       (uint64_t)bytes > (uint64_t)size ? " (truncated)" : "");
    lay->total = acc;
    lay->path = path;
    lay->base = (const float *)(const void *)(data + L2C_HEADER_BYTES);
    return ST_OK;
}

static const char *const l2c_names[ROLE_COUNT] = {
    [ROLE_EMBD] = "token_embedding_table", [ROLE_ATTN_NORM] = "rms_att_weight", [ROLE_Q] = "wq",
    [ROLE_K] = "wk",   [ROLE_V] = "wv",    [ROLE_O] = "wo", [ROLE_FFN_NORM] = "rms_ffn_weight",
    [ROLE_GATE] = "w1", [ROLE_UP] = "w3",   [ROLE_DOWN] = "w2", [ROLE_OUT_NORM] = "rms_final_weight",
    [ROLE_OUTPUT] = "wcls",
};

static Status l2c_find(void *ctx, TensorRole role, int64_t layer, SrcTensor *out, Err *err) {
    (void)err;
    L2cLayout *lay = ctx;
    if (!l2c_names[role]) return ST_OK; /* no biases in llama2.c checkpoints */
    if (layer >= 0)
        snprintf(lay->name, sizeof lay->name, "layers.%lld.%s", (long long)layer, l2c_names[role]);
    else
        snprintf(lay->name, sizeof lay->name, "%s", l2c_names[role]);
    out->file = lay->path;
    out->name = lay->name;
    if (role == ROLE_OUTPUT && lay->h.shared_classifier) return ST_OK; /* absent: tied */
    int64_t n_out, n_in, n = lay->per_layer[role];
    switch (role) {
    case ROLE_ATTN_NORM:
    case ROLE_FFN_NORM:
    case ROLE_OUT_NORM: n_out = 1; n_in = lay->h.dim; out->n_dims = 1; break;
    case ROLE_DOWN: n_out = lay->h.dim; n_in = lay->h.hidden_dim; out->n_dims = 2; break;
    case ROLE_O: n_out = lay->h.dim; n_in = lay->h.dim; out->n_dims = 2; break;
    default: n_in = lay->h.dim; n_out = n / n_in; out->n_dims = 2; break;
    }
    out->ne[0] = n_in;
    out->ne[1] = n_out;
    out->ne[2] = out->ne[3] = 1;
    out->type = GGML_F32;
    out->outer_first = 1;
    out->data = lay->base + lay->off[role] + (layer >= 0 ? layer * n : 0);
    out->nbytes = (size_t)n * sizeof(float);
    return ST_OK;
}

Status load_llama2c(Model *m, const char *path, const char *tokenizer_path, Err *err) {
    MappedFile *mf = core_calloc(1, sizeof *mf);
    if (!mf) return err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
    Status s = mapfile_open(mf, path, err);
    if (s != ST_OK) {
        free(mf);
        return s;
    }
    s = model_keep(m, release_mapfile, mf, err);
    if (s != ST_OK) return s;
    L2cLayout lay;
    memset(&lay, 0, sizeof lay);
    s = parse_header(path, mf->data, mf->size, &lay, err);
    if (s != ST_OK) return s;
    /* llama2.c ships its tokenizer beside the checkpoint: tok<vocab>.bin (tok512.bin) or tokenizer.bin */
    char found[4096];
    if (!tokenizer_path) {
        const char *slash = strrchr(path, '/');
        int dl = slash ? (int)(slash - path + 1) : 0;
        char name[32];
        snprintf(name, sizeof name, "tok%d.bin", (int)lay.h.vocab_size);
        const char *names[2] = {name, "tokenizer.bin"};
        for (int i = 0; i < 2 && !tokenizer_path; i++) {
            snprintf(found, sizeof found, "%.*s%s", dl, path, names[i]);
            if (access(found, R_OK) == 0) tokenizer_path = found;
        }
        if (!tokenizer_path)
            return err_set(err, ST_ERR_ARG,
                           "%s looks like a llama2.c checkpoint: pass --tokenizer TOK.bin (no %s or tokenizer.bin "
                           "beside it)", path, name);
    }

    ModelConfig *c = &m->cfg;
    snprintf(c->arch, sizeof c->arch, "llama");
    c->dim = lay.h.dim;
    c->hidden_dim = lay.h.hidden_dim;
    c->n_layers = lay.h.n_layers;
    c->n_heads = lay.h.n_heads;
    c->n_kv_heads = lay.h.n_kv_heads;
    c->head_dim = lay.h.dim / lay.h.n_heads;
    c->vocab_size = lay.h.vocab_size;
    c->max_seq_len = lay.h.seq_len;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->rope_style = ROPE_NORM;
    s = model_check_config(m, path, err);
    if (s != ST_OK) return s;

    s = tokenizer_from_llama2c(tokenizer_path, c->vocab_size, &m->tok, err);
    if (s != ST_OK) return s;

    m->file_bytes = mf->size;
    uint64_t h = model_hash_file(HASH_SEED, mf->data, mf->size, L2C_HEADER_BYTES);
    MappedFile tf;
    if (mapfile_open(&tf, tokenizer_path, NULL) == ST_OK) {
        /* The tokenizer is part of what the model means: a different one changes every result. */
        h = model_hash_file(h, tf.data, tf.size, tf.size < 4096 ? tf.size : 4096);
        mapfile_close(&tf);
    }
    m->fingerprint = h;
    return model_bind_weights(m, l2c_find, &lay, lay.h.shared_classifier, err);
}
