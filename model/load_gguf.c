/* GGUF models of architecture `llama` (Llama 1/2/3.x, Mistral, TinyLlama),
 * `qwen2` (Qwen2/2.5: q/k/v biases) and `phi3` (fused attn_qkv and [gate; up]
 * ffn_up, split here into row ranges of the same mapping): config from the
 * <arch>.* keys, tensors by llama.cpp's names. The llama.cpp converter
 * permutes llama's q/k rows so RoPE pairs are adjacent (ROPE_NORM); qwen2 and
 * phi3 keep the rotate_half layout (ROPE_NEOX), as llama.cpp computes them.
 * Tensors are borrowed from the mapping in their own dtype. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "model/gguf.h"
#include "model/load_internal.h"
#include "model/model.h"
#include "model/tokenizer.h"

typedef enum { GA_LLAMA, GA_QWEN2, GA_PHI3 } GgufArch;

typedef struct GgufCtx {
    const Gguf *g;
    const char *path;
    const ModelConfig *cfg;
    GgufArch arch;
    char name[112];
} GgufCtx;

static void release_gguf(void *p) { gguf_free(p); }

static const char *gg_type_name(GgufValueType t) {
    static const char *const names[GGUF_VTYPE_COUNT] = {"uint8", "int8", "uint16", "int16", "uint32",
                                                        "int32", "float32", "bool", "string", "array",
                                                        "uint64", "int64", "float64"};
    return (unsigned)t < GGUF_VTYPE_COUNT ? names[t] : "?";
}

/* Reads an integer key; absent and not required leaves *out untouched. A
 * value of another type, or an unsigned one past int64, says which. */
static Status gg_int(const Gguf *g, const char *path, const char *key, int required, int64_t *out, Err *err) {
    const GgufKV *kv = gguf_find(g, key);
    if (!kv) {
        if (required) return err_set(err, ST_ERR_FORMAT, "%s: missing key '%s'", path, key);
        return ST_OK;
    }
    if (!gguf_get_int(g, key, out)) {
        if (kv->value.type == GGUF_UINT64)
            return err_set(err, ST_ERR_RANGE, "%s: key '%s' = %llu is out of range", path, key,
                           (unsigned long long)kv->value.v.u);
        return err_set(err, ST_ERR_FORMAT, "%s: key '%s' is a %s, expected an integer", path, key,
                       gg_type_name(kv->value.type));
    }
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

/* Reads "<arch>.<suffix>" through gg_int / gg_float. */
static Status gg_arch_int(const Gguf *g, const char *path, const char *arch, const char *suffix, int required,
                          int64_t *out, Err *err) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gg_int(g, path, key, required, out, err);
}

static Status gg_arch_float(const Gguf *g, const char *path, const char *arch, const char *suffix, int required,
                            float *out, Err *err) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gg_float(g, path, key, required, out, err);
}

/* RoPE scaling from <arch>.rope.scaling.type / .factor (or the older
 * .rope.scale_linear), and llama's rope_freqs.weight factors. llama.cpp
 * applies the factor as freq_scale = 1/factor whenever it is set (type none
 * or linear); yarn and longrope are refused by name. */
static Status parse_rope_scaling(Model *m, const Gguf *g, const char *path, GgufArch ga, Err *err) {
    const char *arch = m->cfg.arch;
    char key[96];
    GgufStr st;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (gguf_find(g, key)) {
        if (!gguf_get_str(g, key, &st)) return err_set(err, ST_ERR_FORMAT, "%s: key '%s' is not a string", path, key);
        if (!gguf_str_eq(st, "none") && !gguf_str_eq(st, "linear")) {
            int known = gguf_str_eq(st, "yarn") || gguf_str_eq(st, "longrope");
            return err_set(err, ST_ERR_UNSUPPORTED, "%s: %s = '%.*s': %s (supported: none, linear, and Llama 3.1 "
                           "rope_freqs)", path, key, (int)(st.len > 32 ? 32 : st.len), st.s,
                           known ? "this RoPE scaling is not supported" : "unknown RoPE scaling type");
        }
    }
    float factor = 0.0f;
    Status s = gg_arch_float(g, path, arch, "rope.scaling.factor", 0, &factor, err);
    if (s == ST_OK && factor == 0.0f) s = gg_arch_float(g, path, arch, "rope.scale_linear", 0, &factor, err);
    if (s != ST_OK) return s;
    if (factor != 0.0f) {
        if (!(factor > 0) || !isfinite(factor))
            return err_set(err, ST_ERR_FORMAT, "%s: %s.rope.scaling.factor %g is not a positive number", path, arch,
                           factor);
        m->cfg.rope_freq_scale = 1.0f / factor;
    }
    static const char *const longrope[] = {"rope_factors_long.weight", "rope_factors_short.weight"};
    for (int i = 0; i < 2; i++)
        if (gguf_find_tensor(g, longrope[i]))
            return err_set(err, ST_ERR_UNSUPPORTED, "%s: has %s: LongRoPE (Phi-3 128k) is not supported", path,
                           longrope[i]);
    const GgufTensor *rf = gguf_find_tensor(g, "rope_freqs.weight");
    if (rf) {
        if (ga != GA_LLAMA) /* llama.cpp reads it only for llama */
            return err_set(err, ST_ERR_UNSUPPORTED, "%s: has rope_freqs.weight, which architecture '%s' does not use",
                           path, arch);
        SrcTensor t = {.file = path, .name = "rope_freqs.weight", .type = rf->type, .n_dims = (int)rf->n_dims,
                       .data = rf->data, .nbytes = rf->nbytes};
        for (int d = 0; d < 4; d++) t.ne[d] = rf->ne[d];
        return model_set_rope_freqs(m, &t, err);
    }
    return ST_OK;
}

static Status parse_config(Model *m, const Gguf *g, const char *path, GgufArch *ga, Err *err) {
    GgufStr arch;
    if (!gguf_get_str(g, "general.architecture", &arch)) {
        const GgufKV *kv = gguf_find(g, "general.architecture");
        if (kv)
            return err_set(err, ST_ERR_FORMAT, "%s: key 'general.architecture' is a %s, expected a string", path,
                           gg_type_name(kv->value.type));
        return err_set(err, ST_ERR_FORMAT, "%s: missing key 'general.architecture'", path);
    }
    if (gguf_str_eq(arch, "llama"))
        *ga = GA_LLAMA;
    else if (gguf_str_eq(arch, "qwen2"))
        *ga = GA_QWEN2;
    else if (gguf_str_eq(arch, "phi3"))
        *ga = GA_PHI3;
    else
        return err_set(err, ST_ERR_UNSUPPORTED,
                       "%s: architecture '%.*s' is not supported (llama: Llama 1/2/3, Mistral, TinyLlama; qwen2; phi3)",
                       path, (int)(arch.len > 64 ? 64 : arch.len), arch.s);
    ModelConfig *c = &m->cfg;
    snprintf(c->arch, sizeof c->arch, "%.*s", (int)arch.len, arch.s);
    const char *a = c->arch;
    Status s;
    if ((s = gg_arch_int(g, path, a, "embedding_length", 1, &c->dim, err)) != ST_OK) return s;
    if ((s = gg_arch_int(g, path, a, "feed_forward_length", 1, &c->hidden_dim, err)) != ST_OK) return s;
    if ((s = gg_arch_int(g, path, a, "block_count", 1, &c->n_layers, err)) != ST_OK) return s;
    if ((s = gg_arch_int(g, path, a, "attention.head_count", 1, &c->n_heads, err)) != ST_OK) return s;
    c->n_kv_heads = c->n_heads;
    if ((s = gg_arch_int(g, path, a, "attention.head_count_kv", 0, &c->n_kv_heads, err)) != ST_OK) return s;
    if ((s = gg_arch_int(g, path, a, "context_length", 1, &c->max_seq_len, err)) != ST_OK) return s;
    c->rope_theta = 10000.0f;
    if ((s = gg_arch_float(g, path, a, "rope.freq_base", 0, &c->rope_theta, err)) != ST_OK) return s;
    if ((s = gg_arch_float(g, path, a, "attention.layer_norm_rms_epsilon", 1, &c->norm_eps, err)) != ST_OK) return s;
    /* llama's converter permutes q/k rows into adjacent pairs; qwen2 and phi3
     * keep Hugging Face's rotate_half layout (llama.cpp: LLAMA_ROPE_TYPE_NEOX). */
    c->rope_style = *ga == GA_LLAMA ? ROPE_NORM : ROPE_NEOX;
    c->head_dim = 0;
    if ((s = gg_arch_int(g, path, a, "attention.key_length", 0, &c->head_dim, err)) != ST_OK) return s;
    if (!c->head_dim && c->n_heads > 0) {
        if (c->dim % c->n_heads != 0)
            return err_set(err, ST_ERR_FORMAT,
                           "%s: dim %lld is not a multiple of n_heads %lld and %s.attention.key_length is absent", path,
                           (long long)c->dim, (long long)c->n_heads, a);
        c->head_dim = c->dim / c->n_heads;
    }

    const GgufTensor *te = gguf_find_tensor(g, "token_embd.weight");
    if (!te) return err_set(err, ST_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", path);
    if (te->n_dims < 2) /* a vector or a scalar: there is no vocabulary to read */
        return err_set(err, ST_ERR_FORMAT, "%s: tensor 'token_embd.weight' has %d dimension%s, expected 2 (dim, vocab)",
                       path, te->n_dims, te->n_dims == 1 ? "" : "s");
    c->vocab_size = te->ne[1];
    int64_t v = c->vocab_size;
    if ((s = gg_arch_int(g, path, a, "vocab_size", 0, &v, err)) != ST_OK) return s;
    if (v != c->vocab_size)
        return err_set(err, ST_ERR_MISMATCH, "%s: %s.vocab_size %lld disagrees with token_embd.weight (%lld rows)",
                       path, a, (long long)v, (long long)c->vocab_size);

    /* The shape checks first, so that a bad head count or width is named as
     * such rather than as a head_dim mismatch of the keys below. */
    if ((s = model_check_config(m, path, err)) != ST_OK) return s;

    /* Features the forward pass does not implement: refuse rather than compute wrong numbers. */
    int64_t x = c->head_dim;
    if ((s = gg_arch_int(g, path, a, "attention.value_length", 0, &x, err)) != ST_OK) return s;
    if (x != c->head_dim)
        return err_set(err, ST_ERR_UNSUPPORTED, "%s: %s.attention.value_length %lld differs from key_length %lld", path,
                       a, (long long)x, (long long)c->head_dim);
    x = c->head_dim;
    if ((s = gg_arch_int(g, path, a, "rope.dimension_count", 0, &x, err)) != ST_OK) return s;
    if (x != c->head_dim)
        return err_set(err, ST_ERR_UNSUPPORTED,
                       "%s: %s.rope.dimension_count %lld differs from head_dim %lld (partial rotary is not supported)",
                       path, a, (long long)x, (long long)c->head_dim);
    x = 0;
    if ((s = gg_arch_int(g, path, a, "expert_count", 0, &x, err)) != ST_OK) return s;
    if (x > 0)
        return err_set(err, ST_ERR_UNSUPPORTED, "%s: mixture-of-experts (%s.expert_count = %lld) is not supported",
                       path, a, (long long)x);
    /* A sliding-window key is ignored, as llama.cpp ignores it for llama (no
     * SWA in its graph) and disables it for phi3: full causal attention. */
    return parse_rope_scaling(m, g, path, *ga, err);
}

static const char *const gguf_layer_names[ROLE_COUNT] = {
    [ROLE_ATTN_NORM] = "attn_norm", [ROLE_Q] = "attn_q",      [ROLE_K] = "attn_k",   [ROLE_V] = "attn_v",
    [ROLE_O] = "attn_output",       [ROLE_FFN_NORM] = "ffn_norm", [ROLE_GATE] = "ffn_gate", [ROLE_UP] = "ffn_up",
    [ROLE_DOWN] = "ffn_down",       [ROLE_Q_BIAS] = "attn_q",  [ROLE_K_BIAS] = "attn_k", [ROLE_V_BIAS] = "attn_v",
};

/* Points out at tensor gc->name (absent: data NULL). */
static void gguf_src(GgufCtx *gc, SrcTensor *out) {
    out->file = gc->path;
    out->name = gc->name;
    const GgufTensor *t = gguf_find_tensor(gc->g, gc->name);
    if (!t) return;
    out->type = t->type;
    out->n_dims = (int)t->n_dims;
    for (int d = 0; d < 4; d++) out->ne[d] = t->ne[d];
    out->data = t->data;
    out->nbytes = t->nbytes;
    out->outer_first = 0;
}

static Status gguf_find_role(void *ctx, TensorRole role, int64_t layer, SrcTensor *out, Err *err) {
    GgufCtx *gc = ctx;
    int is_bias = role == ROLE_Q_BIAS || role == ROLE_K_BIAS || role == ROLE_V_BIAS;
    if (role == ROLE_EMBD)
        snprintf(gc->name, sizeof gc->name, "token_embd.weight");
    else if (role == ROLE_OUT_NORM)
        snprintf(gc->name, sizeof gc->name, "output_norm.weight");
    else if (role == ROLE_OUTPUT)
        snprintf(gc->name, sizeof gc->name, "output.weight");
    else
        snprintf(gc->name, sizeof gc->name, "blk.%lld.%s.%s", (long long)layer, gguf_layer_names[role],
                 is_bias ? "bias" : "weight");
    out->file = gc->path;
    out->name = gc->name;
    char fused[64];
    snprintf(fused, sizeof fused, "blk.%lld.attn_qkv.weight", (long long)layer);
    if ((role == ROLE_Q || role == ROLE_K || role == ROLE_V) && !gguf_find_tensor(gc->g, gc->name) &&
        gguf_find_tensor(gc->g, fused)) {
        /* Fused [q; k; v] (phi3, and llama files that store it so). */
        snprintf(gc->name, sizeof gc->name, "%s", fused);
        gguf_src(gc, out);
        return model_src_split(gc->cfg, role, out, gc->name, sizeof gc->name, err);
    }
    if (gc->arch == GA_PHI3 && (role == ROLE_GATE || role == ROLE_UP)) {
        /* phi3's ffn_up is [gate; up] and there is no ffn_gate (llama.cpp's swiglu: silu(first half) * second). */
        snprintf(gc->name, sizeof gc->name, "blk.%lld.ffn_up.weight", (long long)layer);
        gguf_src(gc, out);
        return model_src_split(gc->cfg, role, out, gc->name, sizeof gc->name, err);
    }
    gguf_src(gc, out);
    return ST_OK;
}

/* Tensors that would change the computation but that the forward pass does
 * not implement: any bias but q/k/v's (attn_output, ffn_*, output, fused
 * attn_qkv), refused by name rather than silently dropped. */
static Status check_unused_bias(const Gguf *g, const char *path, Err *err) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        GgufStr nm = g->tensors[i].name;
        if (nm.len < 5 || memcmp(nm.s + nm.len - 5, ".bias", 5) != 0) continue;
        int ok = 0;
        static const char *const used[] = {".attn_q.bias", ".attn_k.bias", ".attn_v.bias"};
        for (int k = 0; k < 3; k++) {
            size_t n = strlen(used[k]);
            if (nm.len > n && memcmp(nm.s + nm.len - n, used[k], n) == 0 && nm.s[0] == 'b') ok = 1;
        }
        if (!ok)
            return err_set(err, ST_ERR_UNSUPPORTED, "%s: has tensor '%.*s': only q/k/v biases are supported", path,
                           (int)(nm.len > 96 ? 96 : nm.len), nm.s);
    }
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
    GgufArch ga = GA_LLAMA;
    s = parse_config(m, g, path, &ga, err);
    if (s != ST_OK) return s;
    s = check_unused_bias(g, path, err);
    if (s != ST_OK) return s;
    /* Binding asks only for blocks below block_count: a file with more blocks
     * would run cut short and give wrong numbers (llama.cpp refuses it too). */
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const GgufStr nm = g->tensors[i].name;
        int64_t b = gguf_block_index(nm);
        if (b >= m->cfg.n_layers)
            return err_set(err, ST_ERR_MISMATCH, "%s: tensor '%.*s' is in block %lld, but %s.block_count is %lld",
                           path, (int)(nm.len > 96 ? 96 : nm.len), nm.s, (long long)b, m->cfg.arch, (long long)m->cfg.n_layers);
    }
    if (gguf_find(g, "tokenizer.ggml.model")) {
        s = tokenizer_from_gguf(g, &m->tok, err);
        if (s != ST_OK) return s;
    }
    m->file_bytes = g->mf.size;
    m->fingerprint = model_hash_file(HASH_SEED, g->mf.data, g->mf.size, (size_t)g->data_offset);
    GgufCtx gc = {.g = g, .path = path, .cfg = &m->cfg, .arch = ga};
    return model_bind_weights(m, gguf_find_role, &gc, 0, err);
}
