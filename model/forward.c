#include "model/forward.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/mapfile.h"
#include "kernels/block_dot.h"
#include "kernels/f16_gemm.h"
#include "kernels/f32gemm.h"
#include "kernels/sgemm.h"
#include "kernels/vec.h"
#include "quant/ggml_type.h"
#include "quant/qlinear_build.h"

/* Rows of queries per attention block: the causal mask lets block b attend to
 * only pos0 + (b+1)·RB keys, so blocking skips most of the masked half of
 * QKᵀ and PV while keeping each GEMM large. */
#define ATTN_ROW_BLOCK 128
/* Soft cap on the scores buffer (floats) of the BLAS attention path: heads
 * are batched up to it so one pool_for runs the softmax of many heads. */
#define ATTN_SCORE_CAP ((int64_t)2 << 20)

struct Forward {
    const Model *m;
    const Overlay *ov;
    Pool *pool;
    int64_t max_ctx, max_batch, pos;
    int64_t dim, hidden, n_heads, n_kv, hd, q_dim, kv_dim, qkv_w, vocab;
    unsigned char *fuse_qkv;  /* (n_layers) q/k/v weights adjacent in memory, no overlay */
    unsigned char *fuse_gu;   /* (n_layers) gate/up adjacent, no overlay */
    float *kcache;            /* (kv_layers, max_ctx, kv_dim) */
    float *vcache;            /* (kv_layers, max_ctx, kv_dim) */
    int64_t kv_layers;        /* n_layers, or 1 with FORWARD_ONE_LAYER (every layer uses slot 0) */
    float *x;                 /* (max_batch, dim) residual stream */
    float *xn;                /* (max_batch, dim) normed input of a projection group */
    float *qkv;               /* (max_batch, q_dim + 2·kv_dim) rows [q | k | v] */
    float *att;               /* (max_batch, q_dim) attention output, input of wo */
    float *scores;            /* (score_cap) attention probabilities of a head batch */
    int64_t score_cap;
    float *gu;                /* (max_batch, 2·hidden) rows [gate | up] */
    float *hid;               /* (max_batch, hidden) silu(gate)·up, input of w_down */
    float *rope;              /* (max_batch, hd/2, 2) cos, sin per row and pair */
    float *tmp;               /* (max_batch, tmp_w) overlay outputs (a phase's, each (T, n_out) in
                                 turn); NULL without overlay */
    int64_t tmp_w;
    GemmWork *gw;             /* own GEMM buffers (n_threads; every dispatch level has the own GEMM) */
    float *wbuf;              /* (wbuf_cap) a slice of a non-F32 weight decoded to float32;
                                 NULL when every weight the pass reads is F32 */
    int64_t wbuf_cap;
    const Progress *prog;     /* polled for cancellation between layers; may be NULL */
    Numerics numerics;
    float *xr;                /* (max_batch, max(dim, q_dim, hidden)) activations rounded for
                                 NUMERICS_LLAMACPP; NULL until that mode is set */
    int n_threads;
};

/* === lifecycle === */

static float *fwd_alloc(int64_t a, int64_t b, int *ok) {
    size_t n;
    if (a < 0 || b < 0 || !core_mul_ok((size_t)a, (size_t)b, &n)) { *ok = 0; return NULL; }
    float *p = core_alloc_aligned(n ? n : 1, sizeof(float));
    if (!p) *ok = 0;
    return p;
}

/* 1 when b's rows follow a's directly in memory in the same dtype (one GEMM
 * can cover both). */
static int fwd_adjacent(const Weight *a, const Weight *b) {
    if (!a->data || !b->data || a->n_in != b->n_in || a->type != b->type || a->row_bytes != b->row_bytes)
        return 0;
    return (uintptr_t)a->data + weight_bytes(a) == (uintptr_t)b->data;
}

/* Floats of a non-F32 weight decoded per GEMM slice: large enough that each
 * slice is an efficient GEMM, small enough that the scratch stays at 32 MB
 * whatever the model's size. */
#define FWD_CONV_SLICE ((int64_t)8 << 20)

/* Rows of W per decoded slice. */
static int64_t fwd_slice_rows(const Weight *W, int64_t n_out) {
    int64_t rows = FWD_CONV_SLICE / (W->n_in > 0 ? W->n_in : 1);
    if (rows > 64) rows -= rows % 64;
    if (rows < 1) rows = 1;
    return rows < n_out ? rows : n_out;
}

/* 1 when the own GEMM reads W in its stored dtype (F16/BF16 widened in the
 * packing or, for decode, on the fly): no decoded slice is needed. */
static int fwd_native_h(const Weight *W) {
    return (W->type == GGML_F16 || W->type == GGML_BF16) && (uintptr_t)W->data % 2 == 0 &&
           W->row_bytes == (size_t)W->n_in * 2 && gemm_f32_available();
}

/* Grows *cap to hold a decoded slice of W when the pass cannot read W as
 * stored; n_out: the rows one GEMM reads from W on (more than W's own when
 * the weights after it are fused in). */
static void fwd_need_slice(const Weight *W, int64_t n_out, int64_t *cap) {
    if (weight_f32_data(W) || fwd_native_h(W)) return;
    int64_t n = fwd_slice_rows(W, n_out) * W->n_in;
    if (n > *cap) *cap = n;
}

Status forward_new(const Model *m, const Overlay *ov, int64_t max_ctx, int64_t max_batch,
                   Pool *pool, Forward **out, Err *err) {
    return forward_new_flags(m, ov, max_ctx, max_batch, pool, 0, out, err);
}

Status forward_new_flags(const Model *m, const Overlay *ov, int64_t max_ctx, int64_t max_batch, Pool *pool,
                         unsigned flags, Forward **out, Err *err) {
    *out = NULL;
    const ModelConfig *c = &m->cfg;
    if (max_ctx < 1 || max_batch < 1)
        return err_set(err, ST_ERR_ARG, "forward: max_ctx %lld and max_batch %lld must be >= 1",
                       (long long)max_ctx, (long long)max_batch);
    if (c->dim < 1 || c->hidden_dim < 1 || c->n_layers < 1 || c->n_heads < 1 || c->n_kv_heads < 1 ||
        c->head_dim < 2 || (c->head_dim & 1) || c->vocab_size < 1 || c->n_heads % c->n_kv_heads != 0)
        return err_set(err, ST_ERR_ARG,
                       "forward: bad config (dim %lld, hidden %lld, layers %lld, heads %lld/%lld, "
                       "head_dim %lld, vocab %lld)",
                       (long long)c->dim, (long long)c->hidden_dim, (long long)c->n_layers,
                       (long long)c->n_heads, (long long)c->n_kv_heads, (long long)c->head_dim,
                       (long long)c->vocab_size);
    int64_t q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    for (int64_t l = 0; l < c->n_layers; l++) {
        const LayerWeights *L = &m->layers[l];
        const int64_t want[PROJ_COUNT][2] = {
            {q_dim, c->dim}, {kv_dim, c->dim}, {kv_dim, c->dim}, {c->dim, q_dim},
            {c->hidden_dim, c->dim}, {c->hidden_dim, c->dim}, {c->dim, c->hidden_dim}};
        for (int p = 0; p < PROJ_COUNT; p++) {
            const QLinear *q = ov && ov->lin ? ov->lin[l * PROJ_COUNT + p] : NULL;
            int64_t no = q ? q->n_out : L->proj[p].n_out, ni = q ? q->n_in : L->proj[p].n_in;
            if (no != want[p][0] || ni != want[p][1] || (!q && !L->proj[p].data))
                return err_set(err, ST_ERR_MISMATCH,
                               "forward: layer %lld %s is (%lld, %lld), expected (%lld, %lld)",
                               (long long)l, proj_name((Proj)p), (long long)no, (long long)ni,
                               (long long)want[p][0], (long long)want[p][1]);
        }
    }
    if (!m->tok_embd.data || !m->out_norm || (!m->output.data && !(ov && ov->output)))
        return err_set(err, ST_ERR_ARG, "forward: model lacks embedding, final norm or output head");
    if (ov && ov->output ? (ov->output->n_out != c->vocab_size || ov->output->n_in != c->dim)
                         : (m->output.n_out != c->vocab_size || m->output.n_in != c->dim))
        return err_set(err, ST_ERR_MISMATCH, "forward: output head is not (vocab %lld, dim %lld)",
                       (long long)c->vocab_size, (long long)c->dim);

    Forward *f = core_calloc(1, sizeof *f);
    if (!f) return err_set(err, ST_ERR_NOMEM, "forward context");
    f->m = m;
    f->ov = ov;
    f->pool = pool;
    f->max_ctx = max_ctx;
    f->max_batch = max_batch;
    f->dim = c->dim;
    f->hidden = c->hidden_dim;
    f->n_heads = c->n_heads;
    f->n_kv = c->n_kv_heads;
    f->hd = c->head_dim;
    f->q_dim = q_dim;
    f->kv_dim = kv_dim;
    f->qkv_w = q_dim + 2 * kv_dim;
    f->vocab = c->vocab_size;

    int ok = 1;
    f->fuse_qkv = core_calloc((size_t)c->n_layers, 1);
    f->fuse_gu = core_calloc((size_t)c->n_layers, 1);
    if (!f->fuse_qkv || !f->fuse_gu) ok = 0;
    for (int64_t l = 0; ok && l < c->n_layers; l++) {
        const LayerWeights *L = &m->layers[l];
        const QLinear *const *ql = ov && ov->lin ? ov->lin + l * PROJ_COUNT : NULL;
        f->fuse_qkv[l] = !(ql && (ql[PROJ_Q] || ql[PROJ_K] || ql[PROJ_V])) &&
                         fwd_adjacent(&L->proj[PROJ_Q], &L->proj[PROJ_K]) &&
                         fwd_adjacent(&L->proj[PROJ_K], &L->proj[PROJ_V]);
        f->fuse_gu[l] = !(ql && (ql[PROJ_GATE] || ql[PROJ_UP])) &&
                        fwd_adjacent(&L->proj[PROJ_GATE], &L->proj[PROJ_UP]);
    }
    f->n_threads = pool_size(pool);
    int64_t rb = max_batch < ATTN_ROW_BLOCK ? max_batch : ATTN_ROW_BLOCK;
    int64_t one_head = rb * max_ctx, all_heads = one_head * c->n_heads;
    if (gemm_f32_available()) {
        /* Own GEMM: attention runs head-parallel, one scores block per thread. */
        f->score_cap = one_head * f->n_threads;
        if (ok && gemm_work_new(f->n_threads, &f->gw, NULL) != ST_OK) ok = 0;
    } else {
        f->score_cap = all_heads < ATTN_SCORE_CAP ? all_heads : ATTN_SCORE_CAP;
        if (f->score_cap < one_head) f->score_cap = one_head;
    }

    f->kv_layers = flags & FORWARD_ONE_LAYER ? 1 : c->n_layers;
    if (ok) f->kcache = fwd_alloc(f->kv_layers * max_ctx, kv_dim, &ok);
    if (ok) f->vcache = fwd_alloc(f->kv_layers * max_ctx, kv_dim, &ok);
    if (ok) f->x = fwd_alloc(max_batch, f->dim, &ok);
    if (ok) f->xn = fwd_alloc(max_batch, f->dim, &ok);
    if (ok) f->qkv = fwd_alloc(max_batch, f->qkv_w, &ok);
    if (ok) f->att = fwd_alloc(max_batch, q_dim, &ok);
    if (ok) f->scores = fwd_alloc(f->score_cap, 1, &ok);
    if (ok) f->gu = fwd_alloc(max_batch, 2 * f->hidden, &ok);
    if (ok) f->hid = fwd_alloc(max_batch, f->hidden, &ok);
    if (ok) f->rope = fwd_alloc(max_batch, f->hd, &ok);
    int64_t cap = 0;
    for (int64_t l = 0; l < c->n_layers; l++)
        for (int p = 0; p < PROJ_COUNT; p++)
            if (ok && !(ov && ov->lin && ov->lin[l * PROJ_COUNT + p])) {
                const Weight *w = &m->layers[l].proj[p];
                /* fused q/k/v and gate/up decode slices of all of their rows */
                int64_t rows = p == PROJ_Q && f->fuse_qkv[l] ? f->qkv_w
                               : p == PROJ_GATE && f->fuse_gu[l] ? 2 * f->hidden : w->n_out;
                fwd_need_slice(w, rows, &cap);
            }
    if (!(ov && ov->output)) fwd_need_slice(&m->output, m->output.n_out, &cap);
    if (ok && cap > 0) {
        f->wbuf_cap = cap;
        f->wbuf = fwd_alloc(cap, 1, &ok);
    }
    if (ok && ov) {
        /* one projection's output, or a phase's (q/k/v, gate/up) run together */
        int64_t w = f->dim;
        if (f->qkv_w > w) w = f->qkv_w;
        if (2 * f->hidden > w) w = 2 * f->hidden;
        f->tmp_w = w;
        f->tmp = fwd_alloc(max_batch, w, &ok);
    }
    if (!ok) {
        forward_free(f);
        return err_set(err, ST_ERR_NOMEM, "forward: buffers for context %lld, batch %lld",
                       (long long)max_ctx, (long long)max_batch);
    }
    /* The weights the pass will read in full (every projection without a
     * quantized overlay, and the output head) are paged in now: the first
     * batch would otherwise take a page fault per 64 KB of weights (≈ 0.1 s
     * on the 713 MB TinyLlama-shaped model). RSS ends where the first
     * batch would leave it. */
    for (int64_t l = 0; !(flags & FORWARD_ONE_LAYER) && l < c->n_layers; l++)
        for (int p = 0; p < PROJ_COUNT; p++) {
            const Weight *W = &m->layers[l].proj[p];
            if (!(ov && ov->lin && ov->lin[l * PROJ_COUNT + p])) mapfile_prefault(W->data, weight_bytes(W));
        }
    if (!(flags & FORWARD_ONE_LAYER) && !(ov && ov->output))
        mapfile_prefault(m->output.data, weight_bytes(&m->output));
    /* OpenBLAS and the pool take turns, each with pool_size threads. */
    sgemm_set_threads(pool_size(pool));
    *out = f;
    return ST_OK;
}

void forward_free(Forward *f) {
    if (!f) return;
    free(f->fuse_qkv);
    free(f->fuse_gu);
    core_free_aligned(f->kcache);
    core_free_aligned(f->vcache);
    core_free_aligned(f->x);
    core_free_aligned(f->xn);
    core_free_aligned(f->qkv);
    core_free_aligned(f->att);
    core_free_aligned(f->scores);
    core_free_aligned(f->gu);
    core_free_aligned(f->hid);
    core_free_aligned(f->rope);
    core_free_aligned(f->tmp);
    core_free_aligned(f->wbuf);
    core_free_aligned(f->xr);
    gemm_work_free(f->gw);
    free(f);
}

void forward_reset(Forward *f) { f->pos = 0; }

/* KV cache slot of layer l: its own, or the single one of FORWARD_ONE_LAYER. */
static int64_t fwd_kv_slot(const Forward *f, int64_t l) { return f->kv_layers == 1 ? 0 : l; }

int64_t forward_pos(const Forward *f) { return f->pos; }

const Model *forward_model(const Forward *f) { return f->m; }

void forward_set_progress(Forward *f, const Progress *p) { f->prog = p; }

const char *numerics_name(Numerics n) { return n == NUMERICS_LLAMACPP ? "llamacpp" : "exact"; }

int numerics_parse(const char *s, Numerics *out) {
    if (strcmp(s, "exact") == 0) *out = NUMERICS_EXACT;
    else if (strcmp(s, "llamacpp") == 0) *out = NUMERICS_LLAMACPP;
    else return 0;
    return 1;
}

Status forward_set_numerics(Forward *f, Numerics n, Err *err) {
    if (n == NUMERICS_LLAMACPP && !f->xr) {
        int64_t w = f->dim;
        if (f->q_dim > w) w = f->q_dim;
        if (f->hidden > w) w = f->hidden;
        int ok = 1;
        f->xr = fwd_alloc(f->max_batch, w, &ok);
        if (!ok)
            return err_set(err, ST_ERR_NOMEM, "forward: rounded activations for batch %lld x %lld",
                           (long long)f->max_batch, (long long)w);
    }
    f->numerics = n;
    return ST_OK;
}

/* === row-parallel pieces (run inside pool_for) === */

typedef struct {
    Forward *f;
    const float *src;
    float *dst;
    const float *w;
    int64_t T, layer;
} RowJob;

static void fwd_norm_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    RowJob *j = arg;
    const Forward *f = j->f;
    for (int64_t t = b; t < e; t++)
        vec_rmsnorm(j->dst + t * f->dim, j->src + t * f->dim, j->w, f->dim, f->m->cfg.norm_eps);
}

/* Rotates one head's pair i by the row's (cos, sin). */
static void fwd_rope_head(float *v, const float *cs, int64_t hd, RopeStyle style) {
    int64_t half = hd / 2;
    if (style == ROPE_NORM) {
        for (int64_t i = 0; i < half; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float x0 = v[2 * i], x1 = v[2 * i + 1];
            v[2 * i] = x0 * c - x1 * s;
            v[2 * i + 1] = x0 * s + x1 * c;
        }
    } else {
        for (int64_t i = 0; i < half; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * c - x1 * s;
            v[i + half] = x0 * s + x1 * c;
        }
    }
}

/* dst[i] += b[i] for i < n; b NULL is a no-op. */
static void fwd_add_bias(float *dst, const float *b, int64_t n) {
    if (b)
        for (int64_t i = 0; i < n; i++) dst[i] += b[i];
}

/* The q/k/v biases (added after the projections, so a quantized projection
 * keeps its float bias), RoPE on q and k of each row, then k and v into the
 * cache at pos + t. */
static void fwd_rope_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    RowJob *j = arg;
    const Forward *f = j->f;
    RopeStyle style = f->m->cfg.rope_style;
    const LayerWeights *L = &f->m->layers[j->layer];
    int64_t hd = f->hd;
    float *kc = f->kcache + fwd_kv_slot(f, j->layer) * f->max_ctx * f->kv_dim;
    float *vc = f->vcache + fwd_kv_slot(f, j->layer) * f->max_ctx * f->kv_dim;
    for (int64_t t = b; t < e; t++) {
        float *row = f->qkv + t * f->qkv_w;
        fwd_add_bias(row, L->bias[PROJ_Q], f->q_dim);
        fwd_add_bias(row + f->q_dim, L->bias[PROJ_K], f->kv_dim);
        fwd_add_bias(row + f->q_dim + f->kv_dim, L->bias[PROJ_V], f->kv_dim);
        const float *cs = f->rope + t * hd;
        for (int64_t h = 0; h < f->n_heads; h++) fwd_rope_head(row + h * hd, cs, hd, style);
        float *k = row + f->q_dim;
        for (int64_t h = 0; h < f->n_kv; h++) fwd_rope_head(k + h * hd, cs, hd, style);
        int64_t p = f->pos + t;
        memcpy(kc + p * f->kv_dim, k, (size_t)f->kv_dim * sizeof(float));
        memcpy(vc + p * f->kv_dim, k + f->kv_dim, (size_t)f->kv_dim * sizeof(float));
    }
}

/* cos/sin of each row's position times each pair's frequency, the way ggml
 * computes them: theta starts at the position and is multiplied by
 * base^(-2/hd) for every following pair (in float); pair i's angle is then
 * divided by its frequency factor (Llama 3.1's rope_freqs) and multiplied by
 * the linear scale 1/factor, in that order, as ggml's rope_yarn does. */
static void fwd_rope_table(Forward *f, int64_t T) {
    int64_t half = f->hd / 2;
    const float *ff = f->m->rope_freqs;
    float fs = f->m->cfg.rope_freq_scale > 0.0f ? f->m->cfg.rope_freq_scale : 1.0f;
    float theta_scale = powf(f->m->cfg.rope_theta, -2.0f / (float)f->hd);
    for (int64_t t = 0; t < T; t++) {
        float theta = (float)(f->pos + t);
        float *cs = f->rope + t * f->hd;
        for (int64_t i = 0; i < half; i++) {
            float a = fs * (ff ? theta / ff[i] : theta);
            cs[2 * i] = cosf(a);
            cs[2 * i + 1] = sinf(a);
            theta *= theta_scale;
        }
    }
}

/* Softmax of one score row over the keys query position q_pos sees: [0, q_pos]
 * causally, only the last W of them with a sliding window W; every other
 * entry of the S-wide row is zeroed for the PV product. */
static void fwd_softmax_masked(float *row, int64_t S, int64_t q_pos, int64_t window, float scale) {
    int64_t n = q_pos + 1, lo = window > 0 && n > window ? n - window : 0;
    if (lo > 0) memset(row, 0, (size_t)lo * sizeof(float));
    vec_softmax(row + lo, n - lo, scale);
    if (n < S) memset(row + n, 0, (size_t)(S - n) * sizeof(float));
}

typedef struct {
    Forward *f;
    int64_t t0, tb, S;
} SoftmaxJob;

/* Row r of the head batch: its (r / tb)-th head, query row t0 + r % tb, which
 * sees keys [0, pos + t] (or the window's last W of them). */
static void fwd_softmax_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    SoftmaxJob *j = arg;
    const Forward *f = j->f;
    float scale = 1.0f / sqrtf((float)f->hd);
    for (int64_t r = b; r < e; r++) {
        int64_t t = j->t0 + r % j->tb;
        fwd_softmax_masked(f->scores + r * j->S, j->S, f->pos + t, f->m->cfg.sliding_window, scale);
    }
}

static void fwd_swiglu_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    RowJob *j = arg;
    const Forward *f = j->f;
    for (int64_t t = b; t < e; t++) {
        const float *g = f->gu + t * 2 * f->hidden;
        vec_swiglu(f->hid + t * f->hidden, g, g + f->hidden, f->hidden);
    }
}

/* === pieces run on the calling thread (BLAS inside) === */

/* y (T, n) with row stride ldy = x (T, k) · Wᵀ (+ y if accumulate), W (n, k). */
static void fwd_gemm(Forward *f, int64_t T, int64_t n, int64_t k, const float *x, const float *w,
                     int accumulate, float *y, int64_t ldy) {
    float beta = accumulate ? 1.0f : 0.0f;
    if (f->gw)
        gemm_f32_nt_pool(f->pool, f->gw, T, n, k, x, k, w, k, beta, y, ldy);
    else
        sgemm_mul_nt(T, n, k, x, k, w, k, beta, y, ldy);
}

typedef struct {
    const Weight *W;
    int64_t r0;
    float *dst;
} SliceJob;

static void fwd_slice_rows_job(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    SliceJob *j = arg;
    weight_rows_f32(j->W, j->r0 + b, j->r0 + e, j->dst + b * j->W->n_in);
}

/* The fused block dot for W's type (kernels/block_dot.h), or NULL. */
static BlockDotFn fwd_block_dot(const Weight *W) {
    switch (W->type) {
    case GGML_Q4_0: return block_dot_fn(BLOCK_DOT_Q4_0);
    case GGML_Q8_0: return block_dot_fn(BLOCK_DOT_Q8_0);
    case GGML_Q4_K: return block_dot_fn(BLOCK_DOT_Q4_K);
    default: return NULL;
    }
}

/* Rows with a fused block dot at decode: each row of blocks is read once,
 * straight from the mapping, instead of being decoded into f->wbuf. */
#define FWD_DOT_MAX_T 8

typedef struct {
    const Weight *W;
    BlockDotFn dot;
    const float *x;
    float *y;
    int64_t T, ldy;
    int accumulate;
} DotJob;

static void fwd_dot_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    const DotJob *j = arg;
    const int64_t k = j->W->n_in;
    for (int64_t r = b; r < e; r++) {
        const uint8_t *row = (const uint8_t *)j->W->data + (size_t)r * j->W->row_bytes;
        for (int64_t t = 0; t < j->T; t++) {
            float v = j->dot(row, j->x + t * k, k);
            float *d = j->y + t * j->ldy + r;
            *d = j->accumulate ? *d + v : v;
        }
    }
}

/* y (T, n_out) with row stride ldy = x (T, W->n_in) · W[0:n_out]ᵀ (+ y if
 * accumulate); n_out may exceed W->n_out when adjacent weights of the same
 * dtype follow W (fused q/k/v, gate/up). F32 weights are used in place, and
 * so are F16/BF16 ones (gemm_h_nt_pool); at decode (T < 8) Q4_0, Q8_0 and
 * Q4_K rows go through their fused block dots; everything else (other ggml
 * block types, prefill) is decoded a slice of rows at a time into f->wbuf for
 * the float GEMM. The own GEMM's result per element does not depend on the
 * slicing or on the fusing of q/k/v, so a weight gives the same bits as a
 * QLinear over it. */
static void fwd_gemm_w(Forward *f, int64_t T, const Weight *W, int64_t n_out, const float *x, int accumulate,
                       float *y, int64_t ldy) {
    if (f->numerics == NUMERICS_LLAMACPP && (W->type == GGML_F16 || W->type == GGML_BF16)) {
        /* ggml-cpu's mul_mat: the float operand becomes the weights' vec_dot_type first. */
        f16_round(x, f->xr, T * W->n_in, W->type == GGML_BF16);
        x = f->xr;
    }
    const float *wf = weight_f32_data(W);
    if (wf) {
        fwd_gemm(f, T, n_out, W->n_in, x, wf, accumulate, y, ldy);
        return;
    }
    if (f->gw && fwd_native_h(W)) {
        gemm_h_nt_pool(f->pool, f->gw, T, n_out, W->n_in, x, W->n_in, W->data, W->type == GGML_BF16, W->n_in,
                       accumulate ? 1.0f : 0.0f, y, ldy);
        return;
    }
    BlockDotFn dot = T < FWD_DOT_MAX_T ? fwd_block_dot(W) : NULL;
    if (dot) {
        DotJob j = {W, dot, x, y, T, ldy, accumulate};
        pool_for(f->pool, n_out, 64, fwd_dot_rows, &j);
        return;
    }
    Weight all = *W;
    all.n_out = n_out;
    int64_t rows = fwd_slice_rows(&all, n_out);
    for (int64_t r0 = 0; r0 < n_out; r0 += rows) {
        int64_t nr = n_out - r0 < rows ? n_out - r0 : rows;
        SliceJob j = {&all, r0, f->wbuf};
        pool_for(f->pool, nr, 16, fwd_slice_rows_job, &j);
        fwd_gemm(f, T, nr, W->n_in, x, f->wbuf, accumulate, y + r0, ldy);
    }
}

/* y (T, n_out) with row stride ldy = x (T, n_in) · Wᵀ (+ y if accumulate),
 * through the overlay's QLinear when the plan replaced this projection. */
static Status fwd_linear(Forward *f, const Weight *W, const QLinear *q, const float *x, int64_t T,
                         float *y, int64_t ldy, int accumulate, Err *err) {
    if (!q) {
        fwd_gemm_w(f, T, W, W->n_out, x, accumulate, y, ldy);
        return ST_OK;
    }
    Status st = qlinear_forward_pos(q, x, T, f->pos, f->tmp, f->pool, err); /* skip-first ranges need the position */
    if (st) return st;
    for (int64_t t = 0; t < T; t++) {
        const float *src = f->tmp + t * q->n_out;
        float *dst = y + t * ldy;
        if (accumulate)
            for (int64_t i = 0; i < q->n_out; i++) dst[i] += src[i];
        else
            memcpy(dst, src, (size_t)q->n_out * sizeof(float));
    }
    return ST_OK;
}

static const QLinear *fwd_qlin(const Forward *f, int64_t l, Proj p) {
    return f->ov && f->ov->lin ? f->ov->lin[l * PROJ_COUNT + p] : NULL;
}

/* The n projections ps of layer l that read the same x (T, n_in) (a phase:
 * q/k/v or gate/up), projection i into columns [col[i], + n_out) of y (T
 * rows, stride ldy): the model's own weights one GEMM each, the overlay's
 * QLinears through qlinear_forward_shared (one activation quantization and
 * one pool dispatch where their kernels allow), the same bits as fwd_linear
 * on each. */
static Status fwd_linear_phase(Forward *f, int64_t l, const Proj *ps, const int64_t *col, int n, const float *x,
                               int64_t T, float *y, int64_t ldy, Err *err) {
    const LayerWeights *L = &f->m->layers[l];
    const QLinear *ql[3];
    float *out[3];
    int64_t qcol[3], off = 0;
    int nq = 0;
    for (int i = 0; i < n; i++) {
        const QLinear *q = fwd_qlin(f, l, ps[i]);
        if (!q) {
            fwd_gemm_w(f, T, &L->proj[ps[i]], L->proj[ps[i]].n_out, x, 0, y + col[i], ldy);
            continue;
        }
        ql[nq] = q;
        out[nq] = f->tmp + off * T;
        qcol[nq++] = col[i];
        off += q->n_out;
    }
    if (!nq) return ST_OK;
    /* skip-first ranges need the position */
    Status st = qlinear_forward_shared(ql, nq, x, T, f->pos, out, f->pool, err);
    if (st) return st;
    for (int i = 0; i < nq; i++)
        for (int64_t t = 0; t < T; t++)
            memcpy(y + t * ldy + qcol[i], out[i] + t * ql[i]->n_out, (size_t)ql[i]->n_out * sizeof(float));
    return ST_OK;
}

static void fwd_tap(const Taps *taps, int64_t l, TapPoint pt, const float *x, int64_t T, int64_t w,
                    const int32_t *tokens, int64_t pos0) {
    if (taps && taps->fn && (taps->mask == 0 || (taps->mask >> pt) & 1u))
        taps->fn(taps->user, l, pt, x, T, w, tokens, pos0);
}

typedef struct {
    Forward *f;
    int64_t l, T;
} HeadJob;

/* Heads [b, e) on one thread with the own GEMM: per row block, scores =
 * Q·Kᵀ into this thread's block of f->scores, causal softmax, att = P·V. */
static void fwd_attention_heads(void *arg, int64_t b, int64_t e, int tid) {
    HeadJob *j = arg;
    Forward *f = j->f;
    int64_t hd = f->hd, group = f->n_heads / f->n_kv, T = j->T;
    const float *kc = f->kcache + fwd_kv_slot(f, j->l) * f->max_ctx * f->kv_dim;
    const float *vc = f->vcache + fwd_kv_slot(f, j->l) * f->max_ctx * f->kv_dim;
    float *sc = f->scores + (int64_t)tid * (f->score_cap / f->n_threads);
    float scale = 1.0f / sqrtf((float)hd);
    for (int64_t h = b; h < e; h++) {
        int64_t kvh = h / group;
        for (int64_t t0 = 0; t0 < T; t0 += ATTN_ROW_BLOCK) {
            int64_t tb = T - t0 < ATTN_ROW_BLOCK ? T - t0 : ATTN_ROW_BLOCK;
            int64_t S = f->pos + t0 + tb;
            gemm_f32_nt(f->gw, tid, tb, S, hd, f->qkv + t0 * f->qkv_w + h * hd, f->qkv_w, kc + kvh * hd,
                        f->kv_dim, 0.0f, sc, S);
            for (int64_t r = 0; r < tb; r++)
                fwd_softmax_masked(sc + r * S, S, f->pos + t0 + r, f->m->cfg.sliding_window, scale);
            gemm_f32_nn(f->gw, tid, tb, hd, S, sc, S, vc + kvh * hd, f->kv_dim, 0.0f,
                        f->att + t0 * f->q_dim + h * hd, f->q_dim);
        }
    }
}

/* Causal GQA attention of rows [0, T) over the cache of layer l into f->att. */
static void fwd_attention(Forward *f, int64_t l, int64_t T) {
    if (f->gw) {
        HeadJob j = {f, l, T};
        pool_for(f->pool, f->n_heads, 1, fwd_attention_heads, &j);
        return;
    }
    int64_t hd = f->hd, group = f->n_heads / f->n_kv;
    const float *kc = f->kcache + fwd_kv_slot(f, l) * f->max_ctx * f->kv_dim;
    const float *vc = f->vcache + fwd_kv_slot(f, l) * f->max_ctx * f->kv_dim;
    for (int64_t t0 = 0; t0 < T; t0 += ATTN_ROW_BLOCK) {
        int64_t tb = T - t0 < ATTN_ROW_BLOCK ? T - t0 : ATTN_ROW_BLOCK;
        int64_t S = f->pos + t0 + tb; /* keys the last row of the block sees */
        int64_t hb = f->score_cap / (tb * S);
        if (hb < 1) hb = 1;
        if (hb > f->n_heads) hb = f->n_heads;
        for (int64_t h0 = 0; h0 < f->n_heads; h0 += hb) {
            int64_t nh = f->n_heads - h0 < hb ? f->n_heads - h0 : hb;
            for (int64_t j = 0; j < nh; j++) {
                int64_t h = h0 + j, kvh = h / group;
                sgemm_mul_nt(tb, S, hd, f->qkv + t0 * f->qkv_w + h * hd, f->qkv_w, kc + kvh * hd,
                         f->kv_dim, 0.0f, f->scores + j * tb * S, S);
            }
            SoftmaxJob sj = {f, t0, tb, S};
            pool_for(f->pool, nh * tb, 8, fwd_softmax_rows, &sj);
            for (int64_t j = 0; j < nh; j++) {
                int64_t h = h0 + j, kvh = h / group;
                sgemm_mul_nn(tb, hd, S, f->scores + j * tb * S, S, vc + kvh * hd, f->kv_dim, 0.0f,
                         f->att + t0 * f->q_dim + h * hd, f->q_dim);
            }
        }
    }
}

/* === the forward pass === */

/* Block l on the T rows of f->x (positions pos .. pos + T - 1; their RoPE
 * table already in f->rope), with its taps: the body of forward_run_from,
 * shared with forward_run_layer so both compute the same bits. */
static Status fwd_block(Forward *f, int64_t l, int64_t T, const int32_t *tokens, const Taps *taps, Err *err) {
    Status st;
    const Model *m = f->m;
    int64_t dim = f->dim, pos0 = f->pos, grain = 1;
    const LayerWeights *L = &m->layers[l];
    const float *an = f->ov && f->ov->attn_norm && f->ov->attn_norm[l] ? f->ov->attn_norm[l] : L->attn_norm;
    const float *fn = f->ov && f->ov->ffn_norm && f->ov->ffn_norm[l] ? f->ov->ffn_norm[l] : L->ffn_norm;

    RowJob nj = {f, f->x, f->xn, an, T, l};
    pool_for(f->pool, T, grain, fwd_norm_rows, &nj);
    fwd_tap(taps, l, TAP_QKV, f->xn, T, dim, tokens, pos0);
    if (f->fuse_qkv[l]) {
        fwd_gemm_w(f, T, &L->proj[PROJ_Q], f->qkv_w, f->xn, 0, f->qkv, f->qkv_w);
    } else {
        static const Proj qkv[3] = {PROJ_Q, PROJ_K, PROJ_V};
        const int64_t col[3] = {0, f->q_dim, f->q_dim + f->kv_dim};
        if ((st = fwd_linear_phase(f, l, qkv, col, 3, f->xn, T, f->qkv, f->qkv_w, err))) return st;
    }
    RowJob rj = {f, NULL, NULL, NULL, T, l};
    pool_for(f->pool, T, grain, fwd_rope_rows, &rj);
    fwd_attention(f, l, T);
    fwd_tap(taps, l, TAP_O, f->att, T, f->q_dim, tokens, pos0);
    if ((st = fwd_linear(f, &L->proj[PROJ_O], fwd_qlin(f, l, PROJ_O), f->att, T, f->x, dim, 1, err))) return st;

    RowJob fj = {f, f->x, f->xn, fn, T, l};
    pool_for(f->pool, T, grain, fwd_norm_rows, &fj);
    fwd_tap(taps, l, TAP_GATE_UP, f->xn, T, dim, tokens, pos0);
    int64_t h2 = 2 * f->hidden;
    if (f->fuse_gu[l]) {
        fwd_gemm_w(f, T, &L->proj[PROJ_GATE], h2, f->xn, 0, f->gu, h2);
    } else {
        static const Proj gu[2] = {PROJ_GATE, PROJ_UP};
        const int64_t col[2] = {0, f->hidden};
        if ((st = fwd_linear_phase(f, l, gu, col, 2, f->xn, T, f->gu, h2, err))) return st;
    }
    RowJob sj = {f, NULL, NULL, NULL, T, l};
    pool_for(f->pool, T, grain, fwd_swiglu_rows, &sj);
    fwd_tap(taps, l, TAP_DOWN, f->hid, T, f->hidden, tokens, pos0);
    if ((st = fwd_linear(f, &L->proj[PROJ_DOWN], fwd_qlin(f, l, PROJ_DOWN), f->hid, T, f->x, dim, 1, err)))
        return st;
    fwd_tap(taps, l, TAP_RESID, f->x, T, dim, tokens, pos0);
    return ST_OK;
}

/* ST_OK when every token id is inside the vocabulary. */
static Status fwd_check_tokens(const Forward *f, const int32_t *tokens, int64_t T, Err *err) {
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= f->vocab)
            return err_set(err, ST_ERR_RANGE, "forward: token %d at row %lld outside vocab %lld",
                           tokens[t], (long long)t, (long long)f->vocab);
    return ST_OK;
}

Status forward_embed(Forward *f, const int32_t *tokens, int64_t T, float *x, Err *err) {
    Status st = fwd_check_tokens(f, tokens, T, err);
    if (st) return st;
    for (int64_t t = 0; t < T; t++)
        weight_rows_f32(&f->m->tok_embd, tokens[t], (int64_t)tokens[t] + 1, x + t * f->dim);
    return ST_OK;
}

Status forward_run_layer(Forward *f, int64_t layer, float *x, const int32_t *tokens, int64_t T,
                         const Taps *taps, Err *err) {
    if (T < 1 || T > f->max_batch || T > f->max_ctx)
        return err_set(err, ST_ERR_RANGE, "forward: batch of %lld tokens (max %lld, context %lld)", (long long)T,
                       (long long)f->max_batch, (long long)f->max_ctx);
    if (layer < 0 || layer >= f->m->cfg.n_layers)
        return err_set(err, ST_ERR_RANGE, "forward: layer %lld outside [0, %lld)", (long long)layer,
                       (long long)f->m->cfg.n_layers);
    Status st = fwd_check_tokens(f, tokens, T, err);
    if (st) return st;
    int64_t saved = f->pos;
    f->pos = 0;
    memcpy(f->x, x, (size_t)T * (size_t)f->dim * sizeof *x);
    fwd_rope_table(f, T);
    st = fwd_block(f, layer, T, tokens, taps, err);
    if (!st) memcpy(x, f->x, (size_t)T * (size_t)f->dim * sizeof *x);
    f->pos = saved;
    return st;
}

Status forward_run_from(Forward *f, const int32_t *tokens, int64_t T, int64_t logits_from,
                        float *logits, const Taps *taps, Err *err) {
    const Model *m = f->m;
    if (T < 1 || T > f->max_batch)
        return err_set(err, ST_ERR_RANGE, "forward: batch of %lld tokens (max %lld)", (long long)T,
                       (long long)f->max_batch);
    if (logits_from < 0 || logits_from > T)
        return err_set(err, ST_ERR_RANGE, "forward: logits_from %lld outside [0, %lld]",
                       (long long)logits_from, (long long)T);
    if (f->pos + T > f->max_ctx)
        return err_set(err, ST_ERR_RANGE, "forward: %lld + %lld tokens overflow the %lld-position cache",
                       (long long)f->pos, (long long)T, (long long)f->max_ctx);
    Status st = fwd_check_tokens(f, tokens, T, err);
    if (st) return st;

    int64_t dim = f->dim;
    for (int64_t t = 0; t < T; t++) weight_rows_f32(&m->tok_embd, tokens[t], (int64_t)tokens[t] + 1, f->x + t * dim);
    fwd_rope_table(f, T);
    int64_t grain = 1;

    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        if (progress_cancelled(f->prog)) {
            f->pos += T; /* the cache now holds a partial batch; callers reset */
            return err_set(err, ST_ERR_CANCELLED, "forward: cancelled at layer %lld", (long long)l);
        }
        if ((st = fwd_block(f, l, T, tokens, taps, err))) goto fail;
    }
    f->pos += T;

    int64_t rows = T - logits_from;
    if (logits && rows > 0) {
        const float *src = f->x + logits_from * dim;
        float *xn = f->xn + logits_from * dim;
        RowJob oj = {f, src, xn, m->out_norm, rows, -1};
        pool_for(f->pool, rows, grain, fwd_norm_rows, &oj);
        if (f->ov && f->ov->output) {
            if ((st = qlinear_forward(f->ov->output, xn, rows, logits, f->pool, err))) return st;
        } else {
            fwd_gemm_w(f, rows, &m->output, f->vocab, xn, 0, logits, f->vocab);
        }
    }
    return ST_OK;
fail:
    f->pos += T; /* as after a cancel: the cache holds a partial batch; callers reset */
    return st;
}

Status forward_run(Forward *f, const int32_t *tokens, int64_t T, float *logits, int last_only,
                   const Taps *taps, Err *err) {
    return forward_run_from(f, tokens, T, last_only ? T - 1 : 0, logits, taps, err);
}
