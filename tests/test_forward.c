/* The forward pass against a plain scalar reference written here (double
 * precision loops, no BLAS, llama2.c's RoPE formula), on hand-built random
 * models and on the real stories260K checkpoint; decode vs prefill; NEOX vs
 * NORM RoPE on q/k-permuted weights; taps; the quantized-layer overlay. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/pool.h"
#include "core/progress.h"
#include "kernels/cpu.h"
#include "kernels/sgemm.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/synth.h"
#include "quant/ggml_type.h"
#include "testlib.h"

/* === scalar reference forward === */

static void ref_rmsnorm(double *y, const double *x, const float *w, int64_t n, double eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    double s = 1.0 / sqrt(ss / (double)n + eps);
    for (int64_t i = 0; i < n; i++) y[i] = w[i] * x[i] * s;
}

/* The float32 data of an F32 test weight. */
static const float *wf32(const Weight *W) {
    const float *w = weight_f32_data(W);
    CHECK(w != NULL);
    return w;
}

/* y (n_out) = W (n_out, n_in) · x; W in any stored dtype, decoded row by row. */
static void ref_matvec(double *y, const Weight *W, const double *x) {
    float *row = malloc((size_t)W->n_in * sizeof *row);
    CHECK(row);
    for (int64_t o = 0; o < W->n_out; o++) {
        weight_rows_f32(W, o, o + 1, row);
        double s = 0;
        for (int64_t i = 0; i < W->n_in; i++) s += (double)row[i] * x[i];
        y[o] = s;
    }
    free(row);
}

static void ref_rope(double *v, int64_t hd, int64_t pos, double theta, RopeStyle style) {
    int64_t half = hd / 2;
    for (int64_t i = 0; i < half; i++) {
        double freq = 1.0 / pow(theta, (double)(2 * i) / (double)hd);
        double a = (double)pos * freq, c = cos(a), s = sin(a);
        int64_t i0 = style == ROPE_NORM ? 2 * i : i, i1 = style == ROPE_NORM ? 2 * i + 1 : i + half;
        double x0 = v[i0], x1 = v[i1];
        v[i0] = x0 * c - x1 * s;
        v[i1] = x0 * s + x1 * c;
    }
}

/* logits (T, vocab) for tokens at positions 0..T-1, token by token. */
static void ref_forward(const Model *m, const int32_t *tokens, int64_t T, float *logits) {
    const ModelConfig *c = &m->cfg;
    int64_t dim = c->dim, hd = c->head_dim, kvd = c->n_kv_heads * hd, qd = c->n_heads * hd;
    int64_t hid = c->hidden_dim, group = c->n_heads / c->n_kv_heads;
    double *x = calloc((size_t)dim, sizeof *x), *xn = calloc((size_t)dim, sizeof *xn);
    double *q = calloc((size_t)qd, sizeof *q), *att = calloc((size_t)qd, sizeof *att);
    double *kc = calloc((size_t)(c->n_layers * T * kvd), sizeof *kc);
    double *vc = calloc((size_t)(c->n_layers * T * kvd), sizeof *vc);
    double *sc = calloc((size_t)T, sizeof *sc), *o = calloc((size_t)dim, sizeof *o);
    double *g = calloc((size_t)hid, sizeof *g), *u = calloc((size_t)hid, sizeof *u);
    float *erow = malloc((size_t)dim * sizeof *erow);
    CHECK(x && xn && q && att && kc && vc && sc && o && g && u && erow);
    for (int64_t p = 0; p < T; p++) {
        weight_rows_f32(&m->tok_embd, tokens[p], (int64_t)tokens[p] + 1, erow);
        for (int64_t i = 0; i < dim; i++) x[i] = erow[i];
        for (int64_t l = 0; l < c->n_layers; l++) {
            const LayerWeights *L = &m->layers[l];
            double *k = kc + (l * T + p) * kvd, *v = vc + (l * T + p) * kvd;
            ref_rmsnorm(xn, x, L->attn_norm, dim, c->norm_eps);
            ref_matvec(q, &L->proj[PROJ_Q], xn);
            ref_matvec(k, &L->proj[PROJ_K], xn);
            ref_matvec(v, &L->proj[PROJ_V], xn);
            for (int64_t h = 0; h < c->n_heads; h++) ref_rope(q + h * hd, hd, p, c->rope_theta, c->rope_style);
            for (int64_t h = 0; h < c->n_kv_heads; h++) ref_rope(k + h * hd, hd, p, c->rope_theta, c->rope_style);
            for (int64_t h = 0; h < c->n_heads; h++) {
                int64_t kvh = h / group;
                double mx = -INFINITY, sum = 0;
                for (int64_t s = 0; s <= p; s++) {
                    const double *ks = kc + (l * T + s) * kvd + kvh * hd;
                    double d = 0;
                    for (int64_t i = 0; i < hd; i++) d += q[h * hd + i] * ks[i];
                    sc[s] = d / sqrt((double)hd);
                    if (sc[s] > mx) mx = sc[s];
                }
                for (int64_t s = 0; s <= p; s++) sum += (sc[s] = exp(sc[s] - mx));
                for (int64_t i = 0; i < hd; i++) {
                    double a = 0;
                    for (int64_t s = 0; s <= p; s++) a += sc[s] / sum * vc[(l * T + s) * kvd + kvh * hd + i];
                    att[h * hd + i] = a;
                }
            }
            ref_matvec(o, &L->proj[PROJ_O], att);
            for (int64_t i = 0; i < dim; i++) x[i] += o[i];
            ref_rmsnorm(xn, x, L->ffn_norm, dim, c->norm_eps);
            ref_matvec(g, &L->proj[PROJ_GATE], xn);
            ref_matvec(u, &L->proj[PROJ_UP], xn);
            for (int64_t i = 0; i < hid; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            ref_matvec(o, &L->proj[PROJ_DOWN], g);
            for (int64_t i = 0; i < dim; i++) x[i] += o[i];
        }
        ref_rmsnorm(xn, x, m->out_norm, dim, c->norm_eps);
        double *lg = calloc((size_t)c->vocab_size, sizeof *lg);
        CHECK(lg);
        ref_matvec(lg, &m->output, xn);
        for (int64_t i = 0; i < c->vocab_size; i++) logits[p * c->vocab_size + i] = (float)lg[i];
        free(lg);
    }
    free(x); free(xn); free(q); free(att); free(kc); free(vc); free(sc); free(o); free(g); free(u); free(erow);
}

/* === hand-built random models === */

typedef struct {
    Model m;
    LayerWeights layers[4];
    float *bufs[64];
    int nbufs;
} TestModel;

static uint64_t rng_state = 88172645463325252ull;
static float rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float *tm_buf(TestModel *tm, int64_t n, float scale, float offset) {
    CHECK(tm->nbufs < 64);
    float *p = malloc((size_t)n * sizeof *p);
    CHECK(p);
    for (int64_t i = 0; i < n; i++) p[i] = offset + scale * rnd();
    tm->bufs[tm->nbufs++] = p;
    return p;
}

static void tm_build(TestModel *tm, int64_t dim, int64_t hidden, int64_t layers, int64_t heads,
                     int64_t kv_heads, int64_t vocab, RopeStyle style, int tied) {
    memset(tm, 0, sizeof *tm);
    ModelConfig *c = &tm->m.cfg;
    strcpy(c->arch, "llama");
    c->dim = dim;
    c->hidden_dim = hidden;
    c->n_layers = layers;
    c->n_heads = heads;
    c->n_kv_heads = kv_heads;
    c->head_dim = dim / heads;
    c->vocab_size = vocab;
    c->max_seq_len = 512;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->rope_style = style;
    c->tied_embeddings = tied;
    int64_t hd = dim / heads, qd = heads * hd, kvd = kv_heads * hd;
    float sc = 1.0f / sqrtf((float)dim);
    tm->m.tok_embd = weight_from_f32(tm_buf(tm, vocab * dim, 1.0f, 0), vocab, dim);
    tm->m.out_norm = tm_buf(tm, dim, 0.2f, 1.0f);
    tm->m.output = tied ? tm->m.tok_embd : weight_from_f32(tm_buf(tm, vocab * dim, sc, 0), vocab, dim);
    tm->m.layers = tm->layers;
    const int64_t shp[PROJ_COUNT][2] = {{qd, dim}, {kvd, dim}, {kvd, dim}, {dim, qd},
                                        {hidden, dim}, {hidden, dim}, {dim, hidden}};
    for (int64_t l = 0; l < layers; l++) {
        LayerWeights *L = &tm->layers[l];
        L->attn_norm = tm_buf(tm, dim, 0.2f, 1.0f);
        L->ffn_norm = tm_buf(tm, dim, 0.2f, 1.0f);
        for (int p = 0; p < PROJ_COUNT; p++)
            L->proj[p] = weight_from_f32(tm_buf(tm, shp[p][0] * shp[p][1], 1.5f / sqrtf((float)shp[p][1]), 0),
                                         shp[p][0], shp[p][1]);
    }
}

static void tm_free(TestModel *tm) {
    for (int i = 0; i < tm->nbufs; i++) free(tm->bufs[i]);
}

/* Copy of src whose q/k rows are permuted from NORM pairs (2i, 2i+1) to NEOX
 * halves (i, i + hd/2), run with ROPE_NEOX: must give the same logits. */
static void tm_to_neox(TestModel *dst, const TestModel *src) {
    *dst = *src;
    dst->nbufs = 0;
    dst->m.layers = dst->layers;
    dst->m.cfg.rope_style = ROPE_NEOX;
    int64_t hd = src->m.cfg.head_dim, dim = src->m.cfg.dim;
    for (int64_t l = 0; l < src->m.cfg.n_layers; l++)
        for (int p = PROJ_Q; p <= PROJ_K; p++) {
            const Weight *W = &src->layers[l].proj[p];
            float *nw = tm_buf(dst, W->n_out * dim, 0, 0);
            for (int64_t h = 0; h < W->n_out / hd; h++)
                for (int64_t i = 0; i < hd / 2; i++) {
                    memcpy(nw + (h * hd + i) * dim, wf32(W) + (h * hd + 2 * i) * dim, (size_t)dim * 4);
                    memcpy(nw + (h * hd + i + hd / 2) * dim, wf32(W) + (h * hd + 2 * i + 1) * dim, (size_t)dim * 4);
                }
            dst->layers[l].proj[p] = weight_from_f32(nw, W->n_out, W->n_in);
        }
}

/* === helpers === */

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= d)) d = e; /* NaN propagates as a failure */
    }
    return d;
}

static float *run_prefill(const Model *m, Pool *pool, const int32_t *tok, int64_t T, const Taps *taps,
                          const Overlay *ov) {
    Err err;
    err_init(&err);
    Forward *f = NULL;
    CHECK_OK(forward_new(m, ov, T, T, pool, &f, &err), err);
    float *lg = malloc((size_t)(T * m->cfg.vocab_size) * sizeof *lg);
    CHECK(lg);
    CHECK_OK(forward_run(f, tok, T, lg, 0, taps, &err), err);
    CHECK(forward_pos(f) == T);
    forward_free(f);
    return lg;
}

/* Decode token by token (and, if split > 0, a prefill of split tokens first). */
static float *run_decode(const Model *m, Pool *pool, const int32_t *tok, int64_t T, int64_t split) {
    Err err;
    err_init(&err);
    Forward *f = NULL;
    int64_t V = m->cfg.vocab_size;
    CHECK_OK(forward_new(m, NULL, T, split > 0 ? split : 1, pool, &f, &err), err);
    float *lg = malloc((size_t)(T * V) * sizeof *lg);
    CHECK(lg);
    int64_t t = 0;
    if (split > 0) {
        CHECK_OK(forward_run(f, tok, split, lg, 0, NULL, &err), err);
        t = split;
    }
    for (; t < T; t++) CHECK_OK(forward_run(f, tok + t, 1, lg + t * V, 1, NULL, &err), err);
    forward_free(f);
    return lg;
}

/* === taps === */

typedef struct {
    const Model *m;
    int64_t T;
    int calls[8][TAP_COUNT];
    float *gate_up_in;   /* copy of the TAP_GATE_UP input of the current layer */
    double max_down_err;
    int bad_shape;
} TapCheck;

static void tap_check(void *user, int64_t layer, TapPoint pt, const float *x, int64_t T, int64_t width,
                      const int32_t *tokens, int64_t pos0) {
    TapCheck *tc = user;
    const ModelConfig *c = &tc->m->cfg;
    (void)tokens;
    if (layer < 0 || layer >= c->n_layers || T != tc->T || pos0 != 0) { tc->bad_shape = 1; return; }
    tc->calls[layer][pt]++;
    int64_t want = pt == TAP_O ? c->n_heads * c->head_dim : pt == TAP_DOWN ? c->hidden_dim : c->dim;
    if (width != want) tc->bad_shape = 1;
    if (pt == TAP_GATE_UP) memcpy(tc->gate_up_in, x, (size_t)(T * width) * sizeof(float));
    if (pt == TAP_DOWN) {
        const LayerWeights *L = &tc->m->layers[layer];
        float *wg = malloc((size_t)(c->hidden_dim * c->dim) * sizeof *wg);
        float *wu = malloc((size_t)(c->hidden_dim * c->dim) * sizeof *wu);
        CHECK(wg && wu);
        weight_rows_f32(&L->proj[PROJ_GATE], 0, c->hidden_dim, wg);
        weight_rows_f32(&L->proj[PROJ_UP], 0, c->hidden_dim, wu);
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < c->hidden_dim; j++) {
                double g = 0, u = 0;
                for (int64_t i = 0; i < c->dim; i++) {
                    double xi = tc->gate_up_in[t * c->dim + i];
                    g += xi * wg[j * c->dim + i];
                    u += xi * wu[j * c->dim + i];
                }
                double want_v = g / (1 + exp(-g)) * u;
                double e = fabs(want_v - x[t * width + j]);
                if (!(e <= tc->max_down_err)) tc->max_down_err = e;
            }
        free(wg);
        free(wu);
    }
}

/* === overlay: the f32 weights behind the QLinear interface === */

typedef struct {
    float *w;         /* (n_out, n_in) the weight decoded to float32 (owned) */
    int use_blas;
} F32Impl;

static Status f32_forward(const QLinear *l, const float *x, int64_t T, float *y, Pool *pool, Err *err) {
    (void)pool;
    (void)err;
    const F32Impl *im = l->impl;
    if (im->use_blas) {
        sgemm_mul_nt(T, l->n_out, l->n_in, x, l->n_in, im->w, l->n_in, 0.0f, y, l->n_out);
        return ST_OK;
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t o = 0; o < l->n_out; o++) {
            float s = 0;
            for (int64_t i = 0; i < l->n_in; i++) s += x[t * l->n_in + i] * im->w[o * l->n_in + i];
            y[t * l->n_out + o] = s;
        }
    return ST_OK;
}
static size_t f32_bytes(const QLinear *l) { return (size_t)(l->n_out * l->n_in) * sizeof(float); }
static void f32_free(QLinear *l) {
    F32Impl *im = l->impl;
    free(im->w);
    free(im);
}
static const QLinearOps f32_ops = {f32_forward, f32_bytes, f32_free};

static QLinear *f32_wrap(const Weight *W, int use_blas) {
    QLinear *q = malloc(sizeof *q);
    F32Impl *im = malloc(sizeof *im);
    CHECK(q && im);
    im->w = malloc((size_t)(W->n_out * W->n_in) * sizeof *im->w);
    CHECK(im->w);
    weight_rows_f32(W, 0, W->n_out, im->w);
    im->use_blas = use_blas;
    *q = (QLinear){&f32_ops, W->n_out, W->n_in, im};
    return q;
}

static void test_overlay(const Model *m, Pool *pool, const int32_t *tok, int64_t T, const float *base) {
    int64_t nl = m->cfg.n_layers, V = m->cfg.vocab_size;
    for (int use_blas = 1; use_blas >= 0; use_blas--) {
        const QLinear **lin = calloc((size_t)(nl * PROJ_COUNT), sizeof *lin);
        const float **an = calloc((size_t)nl, sizeof *an), **fn = calloc((size_t)nl, sizeof *fn);
        CHECK(lin && an && fn);
        for (int64_t l = 0; l < nl; l++) {
            for (int p = 0; p < PROJ_COUNT; p++) lin[l * PROJ_COUNT + p] = f32_wrap(&m->layers[l].proj[p], use_blas);
            an[l] = m->layers[l].attn_norm;
            fn[l] = m->layers[l].ffn_norm;
        }
        QLinear *out = f32_wrap(&m->output, use_blas);
        Overlay ov = {lin, an, fn, out};
        float *lg = run_prefill(m, pool, tok, T, NULL, &ov);
        double d = max_abs_diff(lg, base, T * V);
        /* The plain path folds the residual add into the GEMM (beta = 1), the
         * overlay adds separately: equal up to one rounding per add. */
        if (use_blas) CHECKF(d < 2e-5, "overlay through sgemm differs by %g", d);
        else CHECKF(d < 1e-4, "overlay through scalar loops differs by %g", d);
        free(lg);
        for (int64_t i = 0; i < nl * PROJ_COUNT; i++) {
            QLinear *q = (QLinear *)lin[i];
            q->ops->free(q);
            free(q);
        }
        out->ops->free(out);
        free(out);
        free(lin); free(an); free(fn);
    }
}

/* === the checks === */

static void check_model(const Model *m, Pool *pool, int64_t T, const char *what) {
    int64_t V = m->cfg.vocab_size;
    int32_t *tok = malloc((size_t)T * sizeof *tok);
    CHECK(tok);
    for (int64_t t = 0; t < T; t++) tok[t] = (int32_t)((t * 7919 + 13) % V);
    tok[0] = 1;
    float *ref = malloc((size_t)(T * V) * sizeof *ref);
    CHECK(ref);
    ref_forward(m, tok, T, ref);
    float *pre = run_prefill(m, pool, tok, T, NULL, NULL);
    double d = max_abs_diff(pre, ref, T * V);
    printf("%s: prefill %lld vs scalar reference: max |diff| %.3g\n", what, (long long)T, d);
    CHECKF(d < 1e-4, "%s: prefill vs reference %g", what, d);
    float *dec = run_decode(m, pool, tok, T, 0);
    d = max_abs_diff(dec, pre, T * V);
    printf("%s: token-by-token decode vs prefill: max |diff| %.3g\n", what, d);
    CHECKF(d < 1e-4, "%s: decode vs prefill %g", what, d);
    free(dec);
    dec = run_decode(m, pool, tok, T, T / 2 + 1);
    d = max_abs_diff(dec, pre, T * V);
    CHECKF(d < 1e-4, "%s: half prefill + decode vs prefill %g", what, d);
    free(dec);

    /* last_only and logits_from return the same rows. */
    Err err;
    err_init(&err);
    Forward *f = NULL;
    CHECK_OK(forward_new(m, NULL, T, T, pool, &f, &err), err);
    float *row = malloc((size_t)(T * V) * sizeof *row);
    CHECK(row);
    CHECK_OK(forward_run(f, tok, T, row, 1, NULL, &err), err);
    /* The head over fewer rows is a GEMM of another shape, which OpenBLAS may
     * block differently (its Haswell kernels do): summation order differs, so
     * allow float rounding of logits ~10 in magnitude. */
    CHECK(max_abs_diff(row, pre + (T - 1) * V, V) < 1e-4); /* sgemv vs sgemm order */
    forward_reset(f);
    CHECK(forward_pos(f) == 0);
    CHECK_OK(forward_run_from(f, tok, T, T / 3, row, NULL, &err), err);
    CHECK(max_abs_diff(row, pre + (T / 3) * V, (T - T / 3) * V) < 1e-4);
    /* Errors: cache overflow, token out of range, batch too big. */
    CHECK(forward_run(f, tok, 1, NULL, 0, NULL, &err) == ST_ERR_RANGE);
    forward_reset(f);
    int32_t badtok = (int32_t)V;
    CHECK(forward_run(f, &badtok, 1, NULL, 0, NULL, &err) == ST_ERR_RANGE);
    CHECK(forward_run(f, tok, T + 1, NULL, 0, NULL, &err) == ST_ERR_RANGE);
    /* A cancelled Progress stops the pass between layers. */
    Progress prog;
    progress_init(&prog);
    progress_cancel(&prog);
    forward_set_progress(f, &prog);
    CHECK(forward_run(f, tok, T, row, 0, NULL, &err) == ST_ERR_CANCELLED);
    forward_set_progress(f, NULL);
    forward_reset(f);
    CHECK_OK(forward_run(f, tok, T, row, 0, NULL, &err), err);
    CHECK(max_abs_diff(row, pre, T * V) < 1e-5);
    forward_free(f);
    free(row);

    /* Taps: every point of every layer fires once with the right shape, and
     * the down-projection input is silu(gate)·up of the gate/up input. */
    TapCheck tc;
    memset(&tc, 0, sizeof tc);
    tc.m = m;
    tc.T = T;
    tc.gate_up_in = malloc((size_t)(T * m->cfg.dim) * sizeof(float));
    CHECK(tc.gate_up_in);
    Taps taps = {tap_check, &tc, 0};
    float *tapped = run_prefill(m, pool, tok, T, &taps, NULL);
    CHECK(!tc.bad_shape);
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < TAP_COUNT; p++) CHECK(tc.calls[l][p] == 1);
    CHECKF(tc.max_down_err < 1e-4, "TAP_DOWN vs silu(gate)*up: %g", tc.max_down_err);
    CHECK(max_abs_diff(tapped, pre, T * V) == 0);
    free(tapped);
    /* The mask limits the points. */
    memset(tc.calls, 0, sizeof tc.calls);
    taps.mask = 1u << TAP_RESID;
    tapped = run_prefill(m, pool, tok, T, &taps, NULL);
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < TAP_COUNT; p++) CHECK(tc.calls[l][p] == (p == TAP_RESID));
    free(tapped);
    free(tc.gate_up_in);

    test_overlay(m, pool, tok, T, pre);
    free(pre);
    free(ref);
    free(tok);
}

static void test_random_models(Pool *pool) {
    TestModel a, b;
    /* GQA with separate head */
    tm_build(&a, 64, 96, 2, 8, 2, 50, ROPE_NORM, 0);
    check_model(&a.m, pool, 17, "random gqa");
    /* NEOX copy gives the same logits */
    tm_to_neox(&b, &a);
    int32_t tok[17];
    for (int i = 0; i < 17; i++) tok[i] = (int32_t)((i * 31 + 5) % 50);
    float *la = run_prefill(&a.m, pool, tok, 17, NULL, NULL);
    float *lb = run_prefill(&b.m, pool, tok, 17, NULL, NULL);
    double d = max_abs_diff(la, lb, 17 * 50);
    printf("NORM model vs permuted NEOX copy: max |diff| %.3g\n", d);
    CHECKF(d < 1e-5, "NEOX vs NORM %g", d);
    /* ... and the NEOX model itself matches the reference. */
    check_model(&b.m, pool, 9, "random neox");
    free(la);
    free(lb);
    tm_free(&b);
    tm_free(&a);
    /* MHA, tied head, a batch longer than the attention row block (128). */
    tm_build(&a, 32, 48, 1, 4, 4, 40, ROPE_NORM, 1);
    check_model(&a.m, pool, 300, "random mha tied");
    tm_free(&a);
}

static void test_stories(Pool *pool) {
    Err err;
    err_init(&err);
    Model *m = NULL;
    ModelLoadOpts o = {testlib_shared("models/stories260K/tok512.bin")};
    CHECK_OK(model_load(testlib_shared("models/stories260K/stories260K.bin"), &o, &m, &err), err);
    check_model(m, pool, 20, "stories260K.bin");
    /* A long prefill over several attention row blocks against the reference. */
    int64_t T = 300, V = m->cfg.vocab_size;
    int32_t *tok = malloc((size_t)T * sizeof *tok);
    float *ref = malloc((size_t)(T * V) * sizeof *ref);
    CHECK(tok && ref);
    for (int64_t t = 0; t < T; t++) tok[t] = (int32_t)((t * 104729 + 7) % V);
    ref_forward(m, tok, T, ref);
    float *pre = run_prefill(m, pool, tok, T, NULL, NULL);
    double d = max_abs_diff(pre, ref, T * V);
    printf("stories260K.bin: prefill 300 vs reference: max |diff| %.3g\n", d);
    CHECKF(d < 1e-4, "stories 300 %g", d);
    free(pre);
    free(ref);
    free(tok);
    model_free(m);
}

/* === native-dtype weights === */

/* A float32 conversion of m: the same config and norms, every matrix decoded
 * to an owned float32 buffer (freed by native_copy_free). */
typedef struct {
    Model m;
    LayerWeights *layers;
    float *bufs[2 + 4 * 64 * PROJ_COUNT];
    int nb;
} F32Copy;

static Weight native_to_f32(F32Copy *c, const Weight *w) {
    CHECK(c->nb < (int)(sizeof c->bufs / sizeof c->bufs[0]));
    float *b = malloc((size_t)(w->n_out * w->n_in) * sizeof *b);
    CHECK(b);
    weight_rows_f32(w, 0, w->n_out, b);
    c->bufs[c->nb++] = b;
    return weight_from_f32(b, w->n_out, w->n_in);
}

static void native_copy(F32Copy *c, const Model *m) {
    memset(c, 0, sizeof *c);
    c->m = *m;
    c->layers = calloc((size_t)m->cfg.n_layers, sizeof *c->layers);
    CHECK(c->layers);
    c->m.layers = c->layers;
    c->m.tok_embd = native_to_f32(c, &m->tok_embd);
    c->m.output = m->cfg.tied_embeddings ? c->m.tok_embd : native_to_f32(c, &m->output);
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        c->layers[l] = m->layers[l];
        for (int p = 0; p < PROJ_COUNT; p++) c->layers[l].proj[p] = native_to_f32(c, &m->layers[l].proj[p]);
    }
}

static void native_copy_free(F32Copy *c) {
    for (int i = 0; i < c->nb; i++) free(c->bufs[i]);
    free(c->layers);
}

/* m (F16/BF16 matrices used as stored) gives the logits of its float32
 * conversion — prefill (GEMM with widening in the packing) and decode (GEMV
 * reading the halves) — within 1e-4 on logits of magnitude ~10: the weights
 * are the same numbers, only the summation order differs. Then the full
 * check_model battery (double reference, decode, taps) on the native model. */
static void check_native(const Model *m, Pool *pool, uint32_t want_type, const char *what) {
    CHECK(m->layers[0].proj[PROJ_Q].type == want_type && m->tok_embd.type == want_type);
    CHECK(weight_f32_data(&m->layers[0].proj[PROJ_Q]) == NULL);
    F32Copy c;
    native_copy(&c, m);
    int64_t T = 24, V = m->cfg.vocab_size;
    int32_t tok[24];
    for (int64_t t = 0; t < T; t++) tok[t] = (int32_t)((t * 7919 + 5) % V);
    float *a = run_prefill(m, pool, tok, T, NULL, NULL), *b = run_prefill(&c.m, pool, tok, T, NULL, NULL);
    double d = max_abs_diff(a, b, T * V);
    printf("%s: native prefill vs float32 conversion: max |diff| %.3g\n", what, d);
    CHECKF(d < 1e-4, "%s: native vs float32 %g", what, d);
    float *dec = run_decode(m, pool, tok, T, 0);
    d = max_abs_diff(dec, b, T * V);
    printf("%s: native decode vs float32 prefill: max |diff| %.3g\n", what, d);
    CHECKF(d < 1e-4, "%s: native decode vs float32 %g", what, d);
    free(a);
    free(b);
    free(dec);
    native_copy_free(&c);
    check_model(m, pool, 20, what);
}

static void test_native(Pool *pool) {
    Err err;
    err_init(&err);
    /* BF16: stories260K's real weights, sharded HF. */
    Model *m = NULL;
    CHECK_OK(model_load(testlib_shared("models/stories260K-hf-bf16-sharded"), NULL, &m, &err), err);
    check_native(m, pool, GGML_BF16, "stories260K bf16");
    model_free(m);
    /* F16: a synthetic stories260K-shaped GGUF (q/k/v and gate/up adjacent
     * in the file, so the fused GEMMs run on native data). */
    SynthConfig sc;
    CHECK_OK(synth_preset("tiny", &sc, &err), err);
    sc.type = GGML_F16;
    sc.seed = 7;
    Synth *sy = NULL;
    CHECK_OK(synth_new(&sc, &sy, &err), err);
    char path[] = "/tmp/qs_test_forward_f16_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_OK(synth_write(sy, path, NULL, &err), err);
    synth_free(sy);
    m = NULL;
    CHECK_OK(model_load(path, NULL, &m, &err), err);
    unlink(path);
    check_native(m, pool, GGML_F16, "synth tiny f16");
    model_free(m);
}

/* ggml block types as the base model's weights: decode (T = 1) reads Q4_0,
 * Q8_0 and Q4_K rows through the fused block dots (kernels/block_dot.h),
 * prefill decodes slices for the float GEMM: check_model compares the two
 * (and both with the double reference) on llama-quantize's stories260K
 * files, and on a Q4_K_M quantization of a 256-wide synth when llama.cpp's
 * tools are built (Q4_K needs rows of whole 256-blocks). */
static void test_blocks(Pool *pool) {
    Err err;
    err_init(&err);
    static const char *const F[2] = {"models/stories260K/stories260K-Q4_0-mixed.gguf",
                                     "models/stories260K/stories260K-Q8_0-mixed.gguf"};
    for (int i = 0; i < 2; i++) {
        Model *m = NULL;
        CHECK_OK(model_load(testlib_shared(F[i]), NULL, &m, &err), err);
        CHECK(m->layers[0].proj[PROJ_Q].type == (i ? GGML_Q8_0 : GGML_Q4_0));
        check_model(m, pool, 20, i ? "stories260K Q8_0-mixed" : "stories260K Q4_0-mixed");
        model_free(m);
    }
    const char *lq = testlib_llama_tool("llama-quantize", "the Q4_K decode check");
    if (!lq) return;
    SynthConfig sc;
    CHECK_OK(synth_preset("tiny", &sc, &err), err);
    sc.dim = 256, sc.hidden_dim = 512, sc.n_layers = 2, sc.n_heads = 4, sc.n_kv_heads = 2, sc.seed = 5;
    Synth *sy = NULL;
    CHECK_OK(synth_new(&sc, &sy, &err), err);
    char src[] = "/tmp/qs_test_forward_q4k_XXXXXX";
    int fd = mkstemp(src);
    CHECK(fd >= 0);
    close(fd);
    CHECK_OK(synth_write(sy, src, NULL, &err), err);
    synth_free(sy);
    char dst[64], cmd[1024];
    snprintf(dst, sizeof dst, "%s.q4k", src);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' Q4_K_M >/dev/null 2>&1", lq, src, dst);
    CHECK(system(cmd) == 0);
    Model *m = NULL;
    CHECK_OK(model_load(dst, NULL, &m, &err), err);
    unlink(src);
    unlink(dst);
    CHECK(m->layers[0].proj[PROJ_Q].type == GGML_Q4_K);
    check_model(m, pool, 20, "synth 256 Q4_K_M");
    model_free(m);
}

/* pool_for hands out ceil(n / grain) ranges at most, however many threads
 * the pool has: small work is not scattered one item per thread. */
typedef struct {
    int64_t lo[8], hi[8];
    int calls[8];
} GrainSeen;

static void grain_record(void *arg, int64_t b, int64_t e, int tid) {
    GrainSeen *g = arg;
    g->lo[tid] = b;
    g->hi[tid] = e;
    g->calls[tid]++;
}

static void test_pool_grain(void) {
    Err err;
    err_init(&err);
    Pool *p = NULL;
    CHECK_OK(pool_new(4, &p, &err), err);
    static const int64_t cases[][3] = {{8, 4, 2}, {10, 4, 3}, {100, 1, 4}, {3, 8, 1}, {4, 1, 4}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        GrainSeen g;
        memset(&g, 0, sizeof g);
        pool_for(p, cases[c][0], cases[c][1], grain_record, &g);
        int ranges = 0;
        int64_t covered = 0;
        for (int t = 0; t < 4; t++) {
            if (!g.calls[t]) continue;
            ranges++;
            covered += g.hi[t] - g.lo[t];
            CHECKF(g.calls[t] == 1 && g.hi[t] > g.lo[t], "n %lld grain %lld: tid %d", (long long)cases[c][0],
                   (long long)cases[c][1], t);
        }
        CHECKF(ranges == cases[c][2] && covered == cases[c][0], "n %lld grain %lld: %d ranges covering %lld",
               (long long)cases[c][0], (long long)cases[c][1], ranges, (long long)covered);
    }
    pool_free(p);
}

/* pool_for_parts: every unit of every part runs once, on its part's fn with
 * the part's own unit numbers; empty parts are skipped. */
typedef struct {
    int hits[16];
    int calls;
} PartSeen;

static void part_record(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    PartSeen *s = arg;
    __atomic_fetch_add(&s->calls, 1, __ATOMIC_RELAXED);
    for (int64_t i = b; i < e; i++) __atomic_fetch_add(&s->hits[i], 1, __ATOMIC_RELAXED);
}

static void test_pool_parts(void) {
    Err err;
    err_init(&err);
    Pool *p = NULL;
    CHECK_OK(pool_new(3, &p, &err), err);
    static const int64_t sizes[][4] = {{3, 0, 5, 2}, {1, 1, 1, 1}, {16, 0, 0, 0}, {0, 0, 0, 7}};
    for (int c = 0; c < 4; c++)
        for (int64_t grain = 1; grain <= 4; grain += 3) {
            PartSeen seen[4];
            memset(seen, 0, sizeof seen);
            PoolPart parts[4];
            for (int i = 0; i < 4; i++) parts[i] = (PoolPart){part_record, &seen[i], sizes[c][i]};
            pool_for_parts(c % 2 ? p : NULL, parts, 4, grain);
            for (int i = 0; i < 4; i++) {
                for (int64_t u = 0; u < 16; u++)
                    CHECKF(seen[i].hits[u] == (u < sizes[c][i]), "case %d part %d unit %lld: %d runs", c, i,
                           (long long)u, seen[i].hits[u]);
                CHECK(sizes[c][i] > 0 || seen[i].calls == 0);
            }
        }
    pool_free(p);
}

int main(void) {
    test_pool_grain();
    test_pool_parts();
    Err err;
    err_init(&err);
    Pool *pool = NULL;
    CHECK_OK(pool_new(2, &pool, &err), err);
    test_random_models(pool);
    test_random_models(NULL);
    test_stories(pool);
    test_native(pool);
    test_blocks(pool);
    /* The OpenBLAS path (what machines without AVX-512 run) must agree too. */
    setenv("QS_CPU", "avx2", 1);
    cpu_refresh();
    printf("-- QS_CPU=avx2 (OpenBLAS projections and attention)\n");
    test_random_models(pool);
    test_stories(pool);
    test_native(pool);
    /* ... and the scalar level (F16/BF16 decoded in slices, scalar decoding). */
    setenv("QS_CPU", "scalar", 1);
    cpu_refresh();
    printf("-- QS_CPU=scalar\n");
    test_native(pool);
    test_blocks(pool);
    unsetenv("QS_CPU");
    cpu_refresh();
    pool_free(pool);
    return testlib_done("test_forward");
}
