/* The format-independent half of loading, below the three loaders (model/load.c
 * dispatches to them; they call in here): config validation, binding tensors to the Model with shape checks (matrices
 * stay in their dtype, norm vectors become float32), resource bookkeeping,
 * fingerprints and names. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/fpconv.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "model/load_internal.h"
#include "model/tokenizer.h"
#include "quant/ggml_type.h"

typedef struct Keep {
    ReleaseFn release;
    void *p;
} Keep;

typedef struct ModelPriv {
    Keep *keep;              /* (n_keep) resources released by model_free, last first */
    int64_t n_keep, cap_keep;
} ModelPriv;

/* Upper bounds that keep every element count and byte size far from overflow
 * while admitting any real LLaMA-family model. */
#define MAX_DIM (1 << 20)
#define MAX_LAYERS 4096
#define MAX_HEADS 4096
#define MAX_VOCAB (1 << 24)
#define MAX_CTX (1 << 26)

Status model_keep(Model *m, ReleaseFn release, void *p, Err *err) {
    ModelPriv *pv = m->priv;
    if (pv->n_keep == pv->cap_keep) {
        int64_t cap = pv->cap_keep ? pv->cap_keep * 2 : 16;
        Keep *k = realloc(pv->keep, (size_t)cap * sizeof *k);
        if (!k) {
            release(p);
            return err_set(err, ST_ERR_NOMEM, "%s: out of memory", m->path);
        }
        pv->keep = k;
        pv->cap_keep = cap;
    }
    pv->keep[pv->n_keep++] = (Keep){release, p};
    return ST_OK;
}

void model_free(Model *m) {
    if (!m) return;
    ModelPriv *pv = m->priv;
    if (pv) {
        for (int64_t i = pv->n_keep - 1; i >= 0; i--) pv->keep[i].release(pv->keep[i].p);
        free(pv->keep);
        free(pv);
    }
    tokenizer_free(m->tok);
    free(m->layers);
    free(m->tensors);
    free(m->path);
    free(m);
}

Status model_new_empty(const char *path, Model **out, Err *err) {
    *out = NULL;
    Model *m = core_calloc(1, sizeof *m);
    if (!m) return err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
    m->priv = core_calloc(1, sizeof(ModelPriv));
    m->path = core_strdup(path);
    if (!m->priv || !m->path) {
        model_free(m);
        return err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
    }
    *out = m;
    return ST_OK;
}

Status model_check_config(const Model *m, const char *file, Err *err) {
    const ModelConfig *c = &m->cfg;
    struct {
        const char *name;
        int64_t v, max;
    } lim[] = {
        {"dim", c->dim, MAX_DIM},           {"hidden_dim", c->hidden_dim, MAX_DIM},
        {"n_layers", c->n_layers, MAX_LAYERS}, {"n_heads", c->n_heads, MAX_HEADS},
        {"n_kv_heads", c->n_kv_heads, MAX_HEADS}, {"head_dim", c->head_dim, MAX_DIM},
        {"vocab_size", c->vocab_size, MAX_VOCAB}, {"context_length", c->max_seq_len, MAX_CTX},
    };
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++)
        if (lim[i].v <= 0 || lim[i].v > lim[i].max)
            return err_set(err, ST_ERR_RANGE, "%s: %s = %lld is outside [1, %lld]", file, lim[i].name,
                           (long long)lim[i].v, (long long)lim[i].max);
    if (c->n_heads * c->head_dim > MAX_DIM)
        return err_set(err, ST_ERR_RANGE, "%s: n_heads (%lld) * head_dim (%lld) is larger than %lld", file,
                       (long long)c->n_heads, (long long)c->head_dim, (long long)MAX_DIM);
    if (c->n_heads % c->n_kv_heads != 0)
        return err_set(err, ST_ERR_FORMAT, "%s: n_heads (%lld) is not a multiple of n_kv_heads (%lld)", file,
                       (long long)c->n_heads, (long long)c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return err_set(err, ST_ERR_FORMAT, "%s: head_dim %lld is odd (RoPE rotates pairs)", file,
                       (long long)c->head_dim);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return err_set(err, ST_ERR_RANGE, "%s: rope theta %g is not a positive number", file, c->rope_theta);
    if (!(c->norm_eps > 0) || !(c->norm_eps < 1))
        return err_set(err, ST_ERR_RANGE, "%s: RMSNorm epsilon %g is outside (0, 1)", file, c->norm_eps);
    if (!(c->rope_freq_scale >= 0) || !isfinite(c->rope_freq_scale))
        return err_set(err, ST_ERR_RANGE, "%s: RoPE frequency scale %g is not a positive number", file,
                       c->rope_freq_scale);
    if (c->sliding_window < 0)
        return err_set(err, ST_ERR_RANGE, "%s: sliding window %lld is negative", file, (long long)c->sliding_window);
    return ST_OK;
}

/* === binding ============================================================ */

static const char *const role_kind[ROLE_COUNT] = {
    [ROLE_EMBD] = "embedding", [ROLE_ATTN_NORM] = "norm", [ROLE_Q] = "attention",
    [ROLE_K] = "attention",    [ROLE_V] = "attention",    [ROLE_O] = "attention",
    [ROLE_FFN_NORM] = "norm",  [ROLE_GATE] = "ffn",       [ROLE_UP] = "ffn",
    [ROLE_DOWN] = "ffn",       [ROLE_OUT_NORM] = "norm",  [ROLE_OUTPUT] = "output",
    [ROLE_Q_BIAS] = "attention", [ROLE_K_BIAS] = "attention", [ROLE_V_BIAS] = "attention",
};

/* Formats a shape as "[a, b]" in the file's own order. */
static void shape_str(char *buf, size_t cap, const int64_t *ne, int n_dims, int outer_first) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n_dims && k < cap; i++) {
        int64_t v = outer_first ? ne[n_dims - 1 - i] : ne[i];
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)v);
    }
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

static void release_aligned(void *p) { core_free_aligned(p); }

/* Checks t against the expected (n_out, n_in) (n_out = 0: a vector of n_in),
 * then binds it and appends its table entry. A matrix (mat != NULL) stays in
 * its own dtype, borrowed from the mapping unless its bytes are misaligned
 * for the kernels (then copied, still in its dtype); a vector (vec != NULL)
 * is borrowed when it is aligned F32 and converted to float32 otherwise. */
static Status bind_one(Model *m, const SrcTensor *t, TensorRole role, int64_t layer, int64_t n_out,
                       int64_t n_in, const float **vec, Weight *mat, Err *err) {
    int want_dims = n_out ? 2 : 1;
    int64_t want[2] = {n_in, n_out};
    int ok = t->n_dims >= want_dims && t->n_dims <= 4;
    for (int d = 0; ok && d < t->n_dims; d++) ok = t->ne[d] == (d < want_dims ? want[d] : 1);
    if (!ok) {
        char got[96], exp[96];
        shape_str(got, sizeof got, t->ne, t->n_dims < 0 ? 0 : (t->n_dims > 4 ? 4 : t->n_dims),
                  t->outer_first);
        shape_str(exp, sizeof exp, want, want_dims, t->outer_first);
        return err_set(err, ST_ERR_MISMATCH, "%s: tensor '%s' has shape %s, expected %s from the config",
                       t->file, t->name, got, exp);
    }
    int64_t rows = n_out ? n_out : 1;
    size_t need;
    const GgmlTypeTraits *tr = ggml_type_traits(t->type);
    if (!tr || !tr->dequant)
        return err_set(err, ST_ERR_UNSUPPORTED, "%s: tensor '%s' has unsupported type %u", t->file, t->name,
                       (unsigned)t->type);
    if (n_in % tr->block_size != 0)
        return err_set(err, ST_ERR_FORMAT, "%s: tensor '%s' (%s): row length %lld is not a multiple of %lld",
                       t->file, t->name, tr->name, (long long)n_in, (long long)tr->block_size);
    need = ggml_row_bytes(t->type, n_in);
    if (!need || !core_mul_ok(need, (size_t)rows, &need))
        return err_set(err, ST_ERR_RANGE, "%s: tensor '%s' is too large", t->file, t->name);
    if (t->nbytes != need)
        return err_set(err, ST_ERR_FORMAT, "%s: tensor '%s' holds %zu bytes, its type and shape need %zu", t->file,
                       t->name, t->nbytes, need);

    /* 4-byte alignment covers F32 loads, F16/BF16 and the fp16 block scales. */
    int borrowed = ((uintptr_t)t->data % sizeof(float)) == 0 && (mat || t->type == GGML_F32);
    const void *data = t->data;
    if (!borrowed) {
        size_t bytes = mat ? need : (size_t)n_in * sizeof(float);
        void *buf = core_alloc_aligned(bytes, 1);
        if (!buf) return err_set(err, ST_ERR_NOMEM, "%s: no memory to copy tensor '%s'", t->file, t->name);
        Status s = model_keep(m, release_aligned, buf, err);
        if (s != ST_OK) return s;
        if (mat) {
            memcpy(buf, t->data, need);
        } else {
            Weight v = {.data = t->data, .type = t->type, .row_bytes = need, .n_out = 1, .n_in = n_in};
            weight_rows_f32(&v, 0, 1, buf);
        }
        /* the file pages and the copy need not both be resident */
        (void)mapfile_release(t->data, t->nbytes);
        m->owned_bytes += bytes;
        data = buf;
    }
    if (mat)
        *mat = (Weight){.data = data, .type = t->type, .row_bytes = need / (size_t)rows, .n_out = rows, .n_in = n_in,
                        .mapped = borrowed};
    else
        *vec = data;
    TensorEntry *e = &m->tensors[m->n_tensors++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", t->name);
    e->src_type = t->type;
    e->ne[0] = n_in;
    e->ne[1] = rows;
    e->file_bytes = t->nbytes;
    e->borrowed = borrowed;
    e->kind = role_kind[role];
    e->layer = (int)layer;
    return ST_OK;
}

/* Expected (n_out, n_in) of a role; n_out = 0 marks a vector. */
static void role_shape(const ModelConfig *c, TensorRole role, int64_t *n_out, int64_t *n_in) {
    int64_t q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    switch (role) {
    case ROLE_EMBD:
    case ROLE_OUTPUT: *n_out = c->vocab_size; *n_in = c->dim; break;
    case ROLE_Q: *n_out = q; *n_in = c->dim; break;
    case ROLE_K:
    case ROLE_V: *n_out = kv; *n_in = c->dim; break;
    case ROLE_O: *n_out = c->dim; *n_in = q; break;
    case ROLE_GATE:
    case ROLE_UP: *n_out = c->hidden_dim; *n_in = c->dim; break;
    case ROLE_DOWN: *n_out = c->dim; *n_in = c->hidden_dim; break;
    default: *n_out = 0; *n_in = c->dim; break;
    }
}

static const TensorRole layer_roles[] = {ROLE_ATTN_NORM, ROLE_Q,        ROLE_K,  ROLE_V,   ROLE_O,
                                         ROLE_FFN_NORM,  ROLE_GATE,     ROLE_UP, ROLE_DOWN};
static const int role_proj[ROLE_COUNT] = {
    [ROLE_Q] = PROJ_Q + 1,       [ROLE_K] = PROJ_K + 1,   [ROLE_V] = PROJ_V + 1,
    [ROLE_O] = PROJ_O + 1,       [ROLE_GATE] = PROJ_GATE + 1, [ROLE_UP] = PROJ_UP + 1,
    [ROLE_DOWN] = PROJ_DOWN + 1,
};

/* Binds an optional bias of projection p: absent leaves *dst NULL; present,
 * it must be a vector of the projection's n_out and is converted to owned
 * float32 (biases are small, and the forward pass adds them in float). */
static Status bind_bias(Model *m, TensorFindFn find, void *ctx, TensorRole role, int64_t layer, int64_t n,
                        const float **dst, Err *err) {
    SrcTensor t;
    memset(&t, 0, sizeof t);
    *dst = NULL;
    Status s = find(ctx, role, layer, &t, err);
    if (s != ST_OK || !t.data) return s;
    int64_t numel = t.n_dims >= 1 && t.n_dims <= 4 ? t.ne[0] : -1;
    for (int d = 1; d < t.n_dims && d < 4; d++) numel = t.ne[d] == 1 ? numel : -1;
    size_t esz = t.type == GGML_F32 ? 4 : (t.type == GGML_F16 || t.type == GGML_BF16) ? 2 : 0;
    if (!esz)
        return err_set(err, ST_ERR_UNSUPPORTED, "%s: bias '%s' has type %u (F32, F16 or BF16 expected)", t.file,
                       t.name, (unsigned)t.type);
    if (numel != n || t.nbytes != (size_t)n * esz) {
        char got[96];
        shape_str(got, sizeof got, t.ne, t.n_dims < 0 ? 0 : (t.n_dims > 4 ? 4 : t.n_dims), t.outer_first);
        return err_set(err, ST_ERR_MISMATCH, "%s: bias '%s' has shape %s, expected [%lld] from the config", t.file,
                       t.name, got, (long long)n);
    }
    float *buf = core_alloc_aligned((size_t)n, sizeof(float));
    if (!buf) return err_set(err, ST_ERR_NOMEM, "%s: no memory for bias '%s'", t.file, t.name);
    s = model_keep(m, release_aligned, buf, err);
    if (s != ST_OK) return s;
    const unsigned char *src = t.data;
    for (int64_t i = 0; i < n; i++) { /* bytewise: the data need not be aligned */
        if (esz == 4) {
            memcpy(&buf[i], src + 4 * i, 4);
        } else {
            uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
            buf[i] = t.type == GGML_BF16 ? bf16_to_f32(h) : fp16_to_f32(h);
        }
    }
    m->owned_bytes += (size_t)n * sizeof(float);
    TensorEntry *e = &m->tensors[m->n_tensors++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", t.name);
    e->src_type = t.type;
    e->ne[0] = n;
    e->ne[1] = 1;
    e->file_bytes = t.nbytes;
    e->kind = role_kind[role];
    e->layer = (int)layer;
    *dst = buf;
    return ST_OK;
}

/* Finds and binds one tensor; a missing required tensor is an error. */
static Status bind_role(Model *m, TensorFindFn find, void *ctx, TensorRole role, int64_t layer,
                        const float **vec, Weight *mat, Err *err) {
    SrcTensor t;
    memset(&t, 0, sizeof t);
    Status s = find(ctx, role, layer, &t, err);
    if (s != ST_OK) return s;
    if (!t.data) return err_set(err, ST_ERR_FORMAT, "%s: missing tensor '%s'", t.file, t.name);
    int64_t n_out, n_in;
    role_shape(&m->cfg, role, &n_out, &n_in);
    return bind_one(m, &t, role, layer, n_out, n_in, vec, mat, err);
}

Status model_bind_weights(Model *m, TensorFindFn find, void *ctx, int force_tied, Err *err) {
    const ModelConfig *c = &m->cfg;
    int64_t cap = c->n_layers * (int64_t)(sizeof layer_roles / sizeof layer_roles[0] + 3) + 3;
    m->layers = core_calloc((size_t)c->n_layers, sizeof *m->layers);
    m->tensors = core_calloc((size_t)cap, sizeof *m->tensors);
    if (!m->layers || !m->tensors) return err_set(err, ST_ERR_NOMEM, "%s: out of memory", m->path);
    m->n_tensors = 0;
    Status s = bind_role(m, find, ctx, ROLE_EMBD, -1, NULL, &m->tok_embd, err);
    if (s != ST_OK) return s;
    for (int64_t l = 0; l < c->n_layers; l++) {
        LayerWeights *lw = &m->layers[l];
        for (size_t r = 0; r < sizeof layer_roles / sizeof layer_roles[0]; r++) {
            TensorRole role = layer_roles[r];
            if (role == ROLE_ATTN_NORM) {
                s = bind_role(m, find, ctx, role, l, &lw->attn_norm, NULL, err);
            } else if (role == ROLE_FFN_NORM) {
                s = bind_role(m, find, ctx, role, l, &lw->ffn_norm, NULL, err);
            } else {
                s = bind_role(m, find, ctx, role, l, NULL, &lw->proj[role_proj[role] - 1], err);
            }
            if (s != ST_OK) return s;
        }
        static const TensorRole bias_roles[3] = {ROLE_Q_BIAS, ROLE_K_BIAS, ROLE_V_BIAS};
        static const Proj bias_proj[3] = {PROJ_Q, PROJ_K, PROJ_V};
        for (int b = 0; b < 3; b++) {
            Proj p = bias_proj[b];
            s = bind_bias(m, find, ctx, bias_roles[b], l, lw->proj[p].n_out, &lw->bias[p], err);
            if (s != ST_OK) return s;
        }
    }
    s = bind_role(m, find, ctx, ROLE_OUT_NORM, -1, &m->out_norm, NULL, err);
    if (s != ST_OK) return s;

    SrcTensor t;
    memset(&t, 0, sizeof t);
    if (!force_tied) {
        s = find(ctx, ROLE_OUTPUT, -1, &t, err);
        if (s != ST_OK) return s;
    }
    if (force_tied || !t.data) {
        m->cfg.tied_embeddings = 1;
        m->output = m->tok_embd;
    } else {
        m->cfg.tied_embeddings = 0;
        s = bind_one(m, &t, ROLE_OUTPUT, -1, c->vocab_size, c->dim, NULL, &m->output, err);
        if (s != ST_OK) return s;
    }
    return ST_OK;
}

uint64_t model_hash_file(uint64_t h, const unsigned char *data, size_t size, size_t header_len) {
    uint64_t sz = size;
    h = hash_bytes(h, &sz, sizeof sz);
    if (!data) return h;
    if (header_len > size) header_len = size;
    h = hash_bytes(h, data, header_len);
    const size_t chunk = 4096;
    size_t len = size < chunk ? size : chunk;
    for (size_t i = 0; i < 16; i++) {
        size_t off = size > chunk ? (size - chunk) / 15 * i : 0;
        h = hash_bytes(h, data + off, len);
    }
    return h;
}

/* === architecture helpers (fused tensors, RoPE frequency factors) ======= */

static Status src_rows(SrcTensor *t, char *name_buf, size_t cap, int64_t total, int64_t r0, int64_t n,
                       const char *part, Err *err) {
    if (!t->data) return ST_OK;
    if (t->n_dims != 2 || t->ne[1] != total || total <= 0 || t->nbytes % (size_t)total != 0) {
        char got[96];
        shape_str(got, sizeof got, t->ne, t->n_dims < 0 ? 0 : (t->n_dims > 4 ? 4 : t->n_dims), t->outer_first);
        return err_set(err, ST_ERR_MISMATCH,
                       "%s: fused tensor '%s' has shape %s; the config implies %lld rows (stacked projections)",
                       t->file, t->name, got, (long long)total);
    }
    size_t row_bytes = t->nbytes / (size_t)total;
    t->data = (const unsigned char *)t->data + (size_t)r0 * row_bytes;
    t->nbytes = (size_t)n * row_bytes;
    t->ne[1] = n;
    size_t len = strlen(name_buf);
    if (len < cap) snprintf(name_buf + len, cap - len, "[%s]", part);
    t->name = name_buf;
    return ST_OK;
}

Status model_src_split(const ModelConfig *c, TensorRole role, SrcTensor *t, char *name_buf, size_t cap, Err *err) {
    int64_t q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim, h = c->hidden_dim;
    switch (role) {
    case ROLE_Q: return src_rows(t, name_buf, cap, q + 2 * kv, 0, q, "q", err);
    case ROLE_K: return src_rows(t, name_buf, cap, q + 2 * kv, q, kv, "k", err);
    case ROLE_V: return src_rows(t, name_buf, cap, q + 2 * kv, q + kv, kv, "v", err);
    case ROLE_GATE: return src_rows(t, name_buf, cap, 2 * h, 0, h, "gate", err);
    case ROLE_UP: return src_rows(t, name_buf, cap, 2 * h, h, h, "up", err);
    default: return err_set(err, ST_ERR_STATE, "%s: tensor '%s' is not part of a fused tensor", t->file, t->name);
    }
}

static Status set_rope_table(Model *m, const float *ff, const char *file, const char *what, Err *err) {
    int64_t half = m->cfg.head_dim / 2;
    for (int64_t i = 0; i < half; i++)
        if (!(ff[i] > 0) || !isfinite(ff[i]))
            return err_set(err, ST_ERR_FORMAT, "%s: %s: frequency factor %lld is %g, not a positive number", file,
                           what, (long long)i, ff[i]);
    float *own = core_calloc((size_t)half, sizeof(float));
    if (!own) return err_set(err, ST_ERR_NOMEM, "%s: out of memory", file);
    memcpy(own, ff, (size_t)half * sizeof(float));
    Status s = model_keep(m, free, own, err);
    if (s != ST_OK) return s;
    m->rope_freqs = own;
    return ST_OK;
}

Status model_set_rope_freqs(Model *m, const SrcTensor *t, Err *err) {
    int64_t half = m->cfg.head_dim / 2;
    int64_t n = t->ne[0];
    for (int d = 1; d < t->n_dims && d < 4; d++) n *= t->ne[d];
    if (t->type != GGML_F32 || n != half || t->nbytes != (size_t)half * sizeof(float))
        return err_set(err, ST_ERR_MISMATCH,
                       "%s: tensor '%s' must hold head_dim/2 = %lld F32 frequency factors (it has %lld of type %u)",
                       t->file, t->name, (long long)half, (long long)n, (unsigned)t->type);
    float *tmp = core_calloc((size_t)half, sizeof(float));
    if (!tmp) return err_set(err, ST_ERR_NOMEM, "%s: out of memory", t->file);
    memcpy(tmp, t->data, (size_t)half * sizeof(float)); /* the mapping need not be 4-byte aligned */
    Status s = set_rope_table(m, tmp, t->file, t->name, err);
    free(tmp);
    return s;
}

Status model_set_llama3_rope(Model *m, double factor, double low_freq_factor, double high_freq_factor,
                             double original_max, const char *file, Err *err) {
    if (!(factor > 0) || !(low_freq_factor > 0) || !(high_freq_factor > low_freq_factor) || !(original_max >= 1))
        return err_set(err, ST_ERR_FORMAT,
                       "%s: rope_scaling llama3 needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
                       "original_max_position_embeddings >= 1 (got %g, %g, %g, %g)",
                       file, factor, low_freq_factor, high_freq_factor, original_max);
    int64_t hd = m->cfg.head_dim, half = hd / 2;
    float *ff = core_calloc((size_t)half, sizeof(float));
    if (!ff) return err_set(err, ST_ERR_NOMEM, "%s: out of memory", file);
    double low_wavelen = original_max / low_freq_factor, high_wavelen = original_max / high_freq_factor;
    for (int64_t i = 0; i < half; i++) {
        double inv_freq = 1.0 / pow((double)m->cfg.rope_theta, (double)(2 * i) / (double)hd);
        double wavelen = 2.0 * M_PI / inv_freq;
        double scale; /* new inv_freq / old inv_freq */
        if (wavelen < high_wavelen) {
            scale = 1.0;
        } else if (wavelen > low_wavelen) {
            scale = 1.0 / factor;
        } else {
            double smooth = (original_max / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
            scale = (1.0 - smooth) / factor + smooth;
        }
        ff[i] = (float)(1.0 / scale);
    }
    Status s = set_rope_table(m, ff, file, "rope_scaling", err);
    free(ff);
    return s;
}

/* === names ============================================================== */

const char *proj_name(Proj p) {
    static const char *const names[PROJ_COUNT] = {"q", "k", "v", "o", "gate", "up", "down"};
    return (unsigned)p < PROJ_COUNT ? names[p] : "?";
}

const char *tap_name(TapPoint t) {
    static const char *const names[TAP_COUNT] = {"qkv", "o", "gate_up", "down", "resid"};
    return (unsigned)t < TAP_COUNT ? names[t] : "?";
}

TapPoint proj_tap(Proj p) {
    switch (p) {
    case PROJ_Q:
    case PROJ_K:
    case PROJ_V: return TAP_QKV;
    case PROJ_O: return TAP_O;
    case PROJ_GATE:
    case PROJ_UP: return TAP_GATE_UP;
    default: return TAP_DOWN;
    }
}

int proj_parse(const char *s) {
    static const struct {
        const char *name;
        Proj p;
    } spell[] = {
        {"q", PROJ_Q},          {"q_proj", PROJ_Q},       {"attn_q", PROJ_Q},     {"wq", PROJ_Q},
        {"k", PROJ_K},          {"k_proj", PROJ_K},       {"attn_k", PROJ_K},     {"wk", PROJ_K},
        {"v", PROJ_V},          {"v_proj", PROJ_V},       {"attn_v", PROJ_V},     {"wv", PROJ_V},
        {"o", PROJ_O},          {"o_proj", PROJ_O},       {"attn_output", PROJ_O}, {"wo", PROJ_O},
        {"gate", PROJ_GATE},    {"gate_proj", PROJ_GATE}, {"ffn_gate", PROJ_GATE}, {"w1", PROJ_GATE},
        {"up", PROJ_UP},        {"up_proj", PROJ_UP},     {"ffn_up", PROJ_UP},    {"w3", PROJ_UP},
        {"down", PROJ_DOWN},    {"down_proj", PROJ_DOWN}, {"ffn_down", PROJ_DOWN}, {"w2", PROJ_DOWN},
    };
    if (!s) return -1;
    for (size_t i = 0; i < sizeof spell / sizeof spell[0]; i++)
        if (strcmp(s, spell[i].name) == 0) return (int)spell[i].p;
    return -1;
}

int64_t model_param_count(const Model *m) {
    const ModelConfig *c = &m->cfg;
    int64_t q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    int64_t per_layer = 2 * c->dim + 2 * q * c->dim + 2 * kv * c->dim + 3 * c->hidden_dim * c->dim;
    int64_t n = c->vocab_size * c->dim + c->n_layers * per_layer + c->dim;
    if (!c->tied_embeddings) n += c->vocab_size * c->dim;
    for (int64_t l = 0; m->layers && l < c->n_layers; l++)
        for (int p = 0; p < PROJ_COUNT; p++)
            if (m->layers[l].bias[p]) n += m->layers[l].proj[p].n_out;
    return n;
}
