/* GGUF models of architecture `llama` (Llama 1/2/3, Mistral, TinyLlama):
 * config from the llama.* keys, tensors by llama.cpp's names. The llama.cpp
 * converter permutes q/k rows so RoPE pairs are adjacent (ROPE_NORM). F32
 * tensors are borrowed from the mapping; others are dequantized to float32. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "model/gguf.h"
#include "model/load_internal.h"
#include "model/model.h"
#include "model/tokenizer.h"

typedef struct GgufCtx {
    const Gguf *g;
    const char *path;
    char name[96];
} GgufCtx;

static void release_gguf(void *p) { gguf_free(p); }

/* Reads an integer key; absent and not required leaves *out untouched. */
static Status gg_int(const Gguf *g, const char *path, const char *key, int required, int64_t *out, Err *err) {
    if (!gguf_find(g, key)) {
        if (required) return err_set(err, ST_ERR_FORMAT, "%s: missing key '%s'", path, key);
        return ST_OK;
    }
    if (!gguf_get_int(g, key, out)) return err_set(err, ST_ERR_FORMAT, "%s: key '%s' is not an integer", path, key);
    return ST_OK;
}

static Status gg_float(const Gguf *g, const char *path, const char *key, int required, float *out, Err *err) {
    double v;
    if (!gguf_find(g, key)) {
        if (required) return err_set(err, ST_ERR_FORMAT, "%s: missing key '%s'", path, key);
        return ST_OK;
    }
    if (!gguf_get_double(g, key, &v)) return err_set(err, ST_ERR_FORMAT, "%s: key '%s' is not a number", path, key);
    *out = (float)v;
    return ST_OK;
}

static Status parse_config(Model *m, const Gguf *g, const char *path, Err *err) {
    GgufStr arch;
    if (!gguf_get_str(g, "general.architecture", &arch))
        return err_set(err, ST_ERR_FORMAT, "%s: missing key 'general.architecture'", path);
    if (!gguf_str_eq(arch, "llama"))
        return err_set(err, ST_ERR_UNSUPPORTED,
                       "%s: architecture '%.*s' is not supported (only 'llama': Llama 1/2/3, Mistral, TinyLlama)",
                       path, (int)(arch.len > 64 ? 64 : arch.len), arch.s);
    ModelConfig *c = &m->cfg;
    snprintf(c->arch, sizeof c->arch, "llama");
    Status s;
    if ((s = gg_int(g, path, "llama.embedding_length", 1, &c->dim, err)) != ST_OK) return s;
    if ((s = gg_int(g, path, "llama.feed_forward_length", 1, &c->hidden_dim, err)) != ST_OK) return s;
    if ((s = gg_int(g, path, "llama.block_count", 1, &c->n_layers, err)) != ST_OK) return s;
    if ((s = gg_int(g, path, "llama.attention.head_count", 1, &c->n_heads, err)) != ST_OK) return s;
    c->n_kv_heads = c->n_heads;
    if ((s = gg_int(g, path, "llama.attention.head_count_kv", 0, &c->n_kv_heads, err)) != ST_OK) return s;
    if ((s = gg_int(g, path, "llama.context_length", 1, &c->max_seq_len, err)) != ST_OK) return s;
    c->rope_theta = 10000.0f;
    if ((s = gg_float(g, path, "llama.rope.freq_base", 0, &c->rope_theta, err)) != ST_OK) return s;
    if ((s = gg_float(g, path, "llama.attention.layer_norm_rms_epsilon", 1, &c->norm_eps, err)) != ST_OK) return s;
    c->rope_style = ROPE_NORM;
    c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;

    const GgufTensor *te = gguf_find_tensor(g, "token_embd.weight");
    if (!te) return err_set(err, ST_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", path);
    c->vocab_size = te->n_dims >= 2 ? te->ne[1] : 0;
    int64_t v = c->vocab_size;
    if ((s = gg_int(g, path, "llama.vocab_size", 0, &v, err)) != ST_OK) return s;
    if (v != c->vocab_size)
        return err_set(err, ST_ERR_MISMATCH, "%s: llama.vocab_size %lld disagrees with token_embd.weight (%lld rows)",
                       path, (long long)v, (long long)c->vocab_size);

    /* The shape checks first, so that a bad head count or width is named as
     * such rather than as a head_dim mismatch of the keys below. */
    if ((s = model_check_config(m, path, err)) != ST_OK) return s;

    /* Features the forward pass does not implement: refuse rather than compute wrong numbers. */
    int64_t x = c->head_dim;
    static const char *const hd_keys[] = {"llama.rope.dimension_count", "llama.attention.key_length",
                                          "llama.attention.value_length"};
    for (int i = 0; i < 3; i++) {
        x = c->head_dim;
        if ((s = gg_int(g, path, hd_keys[i], 0, &x, err)) != ST_OK) return s;
        if (x != c->head_dim)
            return err_set(err, ST_ERR_UNSUPPORTED, "%s: %s = %lld differs from head_dim %lld", path, hd_keys[i],
                           (long long)x, (long long)c->head_dim);
    }
    x = 0;
    if ((s = gg_int(g, path, "llama.expert_count", 0, &x, err)) != ST_OK) return s;
    if (x > 0)
        return err_set(err, ST_ERR_UNSUPPORTED, "%s: mixture-of-experts (llama.expert_count = %lld) is not supported",
                       path, (long long)x);
    GgufStr st;
    if (gguf_get_str(g, "llama.rope.scaling.type", &st) && !gguf_str_eq(st, "none"))
        return err_set(err, ST_ERR_UNSUPPORTED, "%s: RoPE scaling '%.*s' is not supported", path,
                       (int)(st.len > 32 ? 32 : st.len), st.s);
    if (gguf_find_tensor(g, "rope_freqs.weight"))
        return err_set(err, ST_ERR_UNSUPPORTED,
                       "%s: has rope_freqs.weight (Llama 3.1-style RoPE scaling), which is not supported", path);
    return ST_OK;
}

static const char *const gguf_layer_names[ROLE_COUNT] = {
    [ROLE_ATTN_NORM] = "attn_norm", [ROLE_Q] = "attn_q",      [ROLE_K] = "attn_k",   [ROLE_V] = "attn_v",
    [ROLE_O] = "attn_output",       [ROLE_FFN_NORM] = "ffn_norm", [ROLE_GATE] = "ffn_gate", [ROLE_UP] = "ffn_up",
    [ROLE_DOWN] = "ffn_down",
};

static Status gguf_find_role(void *ctx, TensorRole role, int64_t layer, SrcTensor *out, Err *err) {
    (void)err;
    GgufCtx *gc = ctx;
    if (role == ROLE_EMBD)
        snprintf(gc->name, sizeof gc->name, "token_embd.weight");
    else if (role == ROLE_OUT_NORM)
        snprintf(gc->name, sizeof gc->name, "output_norm.weight");
    else if (role == ROLE_OUTPUT)
        snprintf(gc->name, sizeof gc->name, "output.weight");
    else
        snprintf(gc->name, sizeof gc->name, "blk.%lld.%s.weight", (long long)layer, gguf_layer_names[role]);
    out->file = gc->path;
    out->name = gc->name;
    const GgufTensor *t = gguf_find_tensor(gc->g, gc->name);
    if (!t) return ST_OK;
    out->type = t->type;
    out->n_dims = (int)t->n_dims;
    for (int d = 0; d < 4; d++) out->ne[d] = t->ne[d];
    out->data = t->data;
    out->nbytes = t->nbytes;
    out->outer_first = 0;
    return ST_OK;
}

/* The block index of a tensor named "blk.N.…", else -1. */
static int64_t gguf_block_index(GgufStr name) {
    if (name.len < 6 || memcmp(name.s, "blk.", 4) != 0) return -1;
    int64_t v = 0;
    size_t i = 4;
    for (; i < name.len && name.s[i] >= '0' && name.s[i] <= '9' && v < ((int64_t)1 << 40); i++)
        v = v * 10 + (name.s[i] - '0');
    return i > 4 && i < name.len && name.s[i] == '.' ? v : -1;
}

Status load_gguf(Model *m, const char *path, Err *err) {
    Gguf *g = NULL;
    Status s = gguf_open(path, &g, err);
    if (s != ST_OK) return s;
    s = model_keep(m, release_gguf, g, err);
    if (s != ST_OK) return s;
    if (g->n_tensors == 0)
        return err_set(err, ST_ERR_UNSUPPORTED, "%s has no tensors: vocab-only GGUF; use it with `qscope tokenize`",
                       path);
    s = parse_config(m, g, path, err);
    if (s != ST_OK) return s;
    /* Binding asks only for blocks below block_count: a file with more blocks
     * would run cut short and give wrong numbers (llama.cpp refuses it too). */
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const GgufStr nm = g->tensors[i].name;
        int64_t b = gguf_block_index(nm);
        if (b >= m->cfg.n_layers)
            return err_set(err, ST_ERR_MISMATCH, "%s: tensor '%.*s' is in block %lld, but llama.block_count is %lld",
                           path, (int)(nm.len > 96 ? 96 : nm.len), nm.s, (long long)b, (long long)m->cfg.n_layers);
    }
    if (gguf_find(g, "tokenizer.ggml.model")) {
        s = tokenizer_from_gguf(g, &m->tok, err);
        if (s != ST_OK) return s;
    }
    m->file_bytes = g->mf.size;
    m->fingerprint = model_hash_file(HASH_SEED, g->mf.data, g->mf.size, (size_t)g->data_offset);
    GgufCtx gc = {.g = g, .path = path};
    return model_bind_weights(m, gguf_find_role, &gc, 0, err);
}
