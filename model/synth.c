/* Synthetic LLaMA models. Every weight row comes from its own PRNG stream
 * (seed, tensor, row), so any row can be regenerated on demand: writing
 * streams tensor by tensor, and planting spikes can run the BOS token through
 * the layers below a spike without holding any weight matrix.
 *
 * Planted spikes live on BOS only. BOS's embedding is made 16x larger than
 * the others, so its residual stream keeps a large share of its own direction
 * e; other tokens meet e only by chance (|e . x_norm| ~ 1 against BOS's
 * ~sqrt(dim)). We run BOS (position 0: attention is just o(v(x))) through the
 * layers with the real weights, and at each planted layer:
 *  - down_proj input channel c: gate row c = a*e, up row c = b*e with a, b
 *    chosen so BOS's gate is 4 and silu(4) * up = FACTOR * median|silu(g)*u|
 *    (g, u ~ N(0,1), what a random layer produces); other tokens get
 *    ~(1/sqrt(dim))^2 of that.
 *  - o_proj input channel c (head h, KV head g): v row g*hd + c%hd = a*e so
 *    BOS's v there is FACTOR * median|N(0,1)|; BOS's attention output is its
 *    own v, so every query head of KV head g carries it. For later tokens not
 *    to inherit it through attention, every non-BOS embedding shares a
 *    direction w (orthogonal to e) and the q/k rows of the head group's last
 *    RoPE pair (the slowest rotation, ~constant over the context) read w:
 *    every non-BOS key then outscores BOS by ~SYNTH_SINK, an anti-sink. Other
 *    tokens still see ~|z|/sqrt(dim) of the spike through their own v. */
#include "model/synth.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pool.h"
#include "model/gguf_write.h"
#include "quant/ggml_type.h"

#define SYNTH_BOS 1
#define SYNTH_BOS_SCALE 16.0f  /* BOS embedding gain when spikes are planted */
#define SYNTH_GATE_BOS 4.0f    /* gate pre-activation of a spiked channel on BOS */
#define SYNTH_COMMON 2.0f      /* o spikes: shared embedding component, in units of the random part's norm */
#define SYNTH_SINK 30.0f       /* o spikes: attention-score lead of any token over BOS */
#define MEDIAN_ABS_NORMAL 0.6744897501960817 /* median |N(0, 1)|: typical |v| of a random layer */

typedef enum {
    TK_EMBD, TK_ATTN_NORM, TK_Q, TK_K, TK_V, TK_O, TK_FFN_NORM, TK_GATE, TK_UP, TK_DOWN, TK_OUT_NORM, TK_OUTPUT
} TKind;

#define LAYER_TENSORS 9        /* attn_norm q k v o ffn_norm gate up down */

typedef struct TSpec {
    char name[64];
    TKind kind;
    int64_t layer;
    int64_t ne0, ne1;        /* ne0 = input width (contiguous), ne1 = rows */
    uint32_t type;
} TSpec;

struct Synth {
    SynthConfig cfg;
    TSpec *t;                /* (n_t) */
    int64_t n_t;
    float *spike_dir;        /* (n_spikes, dim) unit directions */
    float gate_scale[SYNTH_MAX_SPIKES]; /* down spikes: gate/up row gains */
    float up_scale[SYNTH_MAX_SPIKES];
    float v_scale[SYNTH_MAX_SPIKES];    /* o spikes: v row gain */
    float *common;           /* (dim) unit direction shared by non-BOS embeddings; NULL without o spikes */
    float qk_scale;          /* o spikes: gain of the q/k rows along common */
    double median_h;         /* median |silu(g)*u| for g, u ~ N(0,1) */
};

/* === presets and spike grammar === */

static int64_t synth_head_dim(const SynthConfig *c) {
    return c->head_dim ? c->head_dim : c->dim / c->n_heads;
}

Status synth_preset(const char *name, SynthConfig *cfg, Err *err) {
    memset(cfg, 0, sizeof *cfg);
    cfg->rope_theta = 10000.0f;
    cfg->norm_eps = 1e-5f;
    cfg->type = GGML_F32;
    cfg->vocab_size = 512;
    cfg->n_layers = 4;
    if (strcmp(name, "tiny") == 0) {
        cfg->dim = 64, cfg->hidden_dim = 172, cfg->n_layers = 5, cfg->n_heads = 8, cfg->n_kv_heads = 4;
        cfg->context_length = 512;
    } else if (strcmp(name, "tinyllama") == 0) {
        cfg->dim = 2048, cfg->hidden_dim = 5632, cfg->n_heads = 32, cfg->n_kv_heads = 4;
        cfg->context_length = 2048;
    } else if (strcmp(name, "llama2-7b") == 0) {
        cfg->dim = 4096, cfg->hidden_dim = 11008, cfg->n_heads = 32, cfg->n_kv_heads = 32;
        cfg->context_length = 4096;
    } else {
        return err_set(err, ST_ERR_ARG, "unknown preset '%s' (known: tiny, tinyllama, llama2-7b)", name);
    }
    snprintf(cfg->name, sizeof cfg->name, "%s", name);
    return ST_OK;
}

Status synth_parse_arch(const char *name, SynthConfig *cfg, Err *err) {
    /* rope theta as the real families ship it */
    static const struct { const char *name; SynthArch a; float theta; } known[] = {
        {"llama", SYNTH_LLAMA, 10000.0f}, {"llama3", SYNTH_LLAMA3, 500000.0f},
        {"qwen2", SYNTH_QWEN2, 1000000.0f}, {"phi3", SYNTH_PHI3, 10000.0f},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i].name) == 0) {
            cfg->arch = known[i].a;
            cfg->rope_theta = known[i].theta;
            return ST_OK;
        }
    return err_set(err, ST_ERR_ARG, "unknown arch '%s' (known: llama, llama3, qwen2, phi3)", name);
}

Status synth_parse_spikes(const char *spec, SynthConfig *cfg, Err *err) {
    cfg->n_spikes = 0;
    const char *p = spec;
    while (*p) {
        if (cfg->n_spikes == SYNTH_MAX_SPIKES)
            return err_set(err, ST_ERR_ARG, "spikes '%s': at most %d items", spec, SYNTH_MAX_SPIKES);
        SynthSpike *sp = &cfg->spikes[cfg->n_spikes];
        char *end;
        long long layer = strtoll(p, &end, 10);
        if (end == p || *end != '.' || layer < 0)
            return err_set(err, ST_ERR_ARG, "spikes '%s': at '%s': expected LAYER.SITE:CHANNEL[:FACTOR]", spec, p);
        p = end + 1;
        if (strncmp(p, "down:", 5) == 0) {
            sp->site = SPIKE_DOWN;
            p += 5;
        } else if (strncmp(p, "o:", 2) == 0) {
            sp->site = SPIKE_O;
            p += 2;
        } else {
            return err_set(err, ST_ERR_ARG,
                           "spikes '%s': at '%s': site must be 'down' (down_proj input) or 'o' (o_proj input)", spec, p);
        }
        long long ch = strtoll(p, &end, 10);
        if (end == p || ch < 0) return err_set(err, ST_ERR_ARG, "spikes '%s': at '%s': expected a channel", spec, p);
        p = end;
        double factor = 100.0;
        if (*p == ':') {
            factor = strtod(p + 1, &end);
            if (end == p + 1 || !(factor >= 1.0 && factor <= 1e4))
                return err_set(err, ST_ERR_ARG, "spikes '%s': at '%s': factor must be a number in [1, 10000]", spec,
                               p + 1);
            p = end;
        }
        if (*p == ',') p++;
        else if (*p) return err_set(err, ST_ERR_ARG, "spikes '%s': unexpected '%s'", spec, p);
        if (layer >= cfg->n_layers)
            return err_set(err, ST_ERR_RANGE, "spikes '%s': layer %lld, the model has %lld layers", spec, layer,
                           (long long)cfg->n_layers);
        int64_t width = sp->site == SPIKE_DOWN ? cfg->hidden_dim : cfg->dim;
        if (ch >= width)
            return err_set(err, ST_ERR_RANGE, "spikes '%s': channel %lld, %s input width is %lld", spec, ch,
                           sp->site == SPIKE_DOWN ? "down_proj" : "o_proj", (long long)width);
        for (int i = 0; i < cfg->n_spikes; i++)
            if (cfg->spikes[i].layer == layer && cfg->spikes[i].channel == ch && cfg->spikes[i].site == sp->site)
                return err_set(err, ST_ERR_ARG, "spikes '%s': layer %lld channel %lld given twice", spec, layer, ch);
        sp->layer = layer;
        sp->channel = ch;
        sp->factor = (float)factor;
        cfg->n_spikes++;
    }
    return ST_OK;
}

/* === deterministic random numbers === */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct Rng {
    uint64_t s[4];
} Rng;

static void rng_seed(Rng *r, uint64_t seed, uint64_t a, uint64_t b) {
    uint64_t x = seed;
    x = splitmix64(&x) ^ (a * 0xd1342543de82ef95ull);
    x = splitmix64(&x) ^ (b * 0xaf251af3b0f025b5ull);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t rng_next(Rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* n standard normals (Box-Muller on 53-bit uniforms in (0, 1]). */
static void rng_normal(Rng *r, float *out, int64_t n, float scale) {
    for (int64_t j = 0; j < n; j += 2) {
        double u1 = ((double)(rng_next(r) >> 11) + 1.0) * 0x1.0p-53;
        double u2 = (double)(rng_next(r) >> 11) * 0x1.0p-53;
        double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
        out[j] = (float)(rad * cos(th)) * scale;
        if (j + 1 < n) out[j + 1] = (float)(rad * sin(th)) * scale;
    }
}

/* === tensors === */

static int64_t tensor_index(int64_t layer, TKind k) {
    return 1 + layer * LAYER_TENSORS + (int64_t)(k - TK_ATTN_NORM);
}

/* Row r of tensor i into row (ne0 floats). */
static void gen_row(const Synth *s, int64_t i, int64_t r, float *row) {
    const TSpec *t = &s->t[i];
    if (t->kind == TK_ATTN_NORM || t->kind == TK_FFN_NORM || t->kind == TK_OUT_NORM) {
        for (int64_t j = 0; j < t->ne0; j++) row[j] = 1.0f;
        return;
    }
    const SynthConfig *c = &s->cfg;
    int64_t hd = c->dim / c->n_heads, group = c->n_heads / c->n_kv_heads;
    for (int k = 0; k < c->n_spikes; k++) {
        const SynthSpike *sp = &c->spikes[k];
        if (sp->layer != t->layer) continue;
        const float *dir = NULL;
        float a = 0.0f;
        if (sp->site == SPIKE_DOWN && (t->kind == TK_GATE || t->kind == TK_UP) && sp->channel == r) {
            dir = s->spike_dir + k * c->dim;
            a = t->kind == TK_GATE ? s->gate_scale[k] : s->up_scale[k];
        } else if (sp->site == SPIKE_O) {
            int64_t h = sp->channel / hd, kvh = h / group;
            if (t->kind == TK_V && r == kvh * hd + sp->channel % hd) {
                dir = s->spike_dir + k * c->dim;
                a = s->v_scale[k];
            } else if (t->kind == TK_K && r == kvh * hd + hd - 2) {
                dir = s->common, a = s->qk_scale;
            } else if (t->kind == TK_Q && r % hd == hd - 2 && (r / hd) / group == kvh) {
                dir = s->common, a = s->qk_scale;
            }
        }
        if (dir) {
            for (int64_t j = 0; j < t->ne0; j++) row[j] = a * dir[j];
            return;
        }
    }
    Rng rng;
    rng_seed(&rng, s->cfg.seed, (uint64_t)i, (uint64_t)r);
    /* Embeddings ~ N(0, 1); projections ~ N(0, 1/fan_in) keep activations O(1). */
    float scale = t->kind == TK_EMBD ? 1.0f : 1.0f / sqrtf((float)t->ne0);
    if (t->kind == TK_EMBD && r == SYNTH_BOS && s->cfg.n_spikes > 0) scale *= SYNTH_BOS_SCALE;
    rng_normal(&rng, row, t->ne0, scale);
    if (t->kind == TK_EMBD && r != SYNTH_BOS && s->common) {
        float mu = SYNTH_COMMON * sqrtf((float)t->ne0);
        for (int64_t j = 0; j < t->ne0; j++) row[j] += mu * s->common[j];
    }
}

void synth_tensor_f32(const Synth *s, int64_t i, float *out, int64_t *ne0, int64_t *ne1) {
    const TSpec *t = &s->t[i];
    for (int64_t r = 0; r < t->ne1; r++) gen_row(s, i, r, out + r * t->ne0);
    *ne0 = t->ne0;
    *ne1 = t->ne1;
}

int64_t synth_n_tensors(const Synth *s) {
    return s->n_t;
}

const char *synth_tensor_name(const Synth *s, int64_t i) {
    return s->t[i].name;
}

/* === spike planting === */

static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t j = 0; j < n; j++) ss += (double)x[j] * x[j];
    float inv = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t j = 0; j < n; j++) out[j] = x[j] * inv * w[j];
}

typedef struct MatvecJob {
    const Synth *s;
    int64_t i;
    const float *x;
    float *y;
    _Atomic int failed;
} MatvecJob;

static void matvec_rows(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    MatvecJob *j = arg;
    const TSpec *t = &j->s->t[j->i];
    float *row = malloc((size_t)t->ne0 * sizeof(float));
    if (!row) {
        atomic_store(&j->failed, 1);
        return;
    }
    for (int64_t r = begin; r < end; r++) {
        gen_row(j->s, j->i, r, row);
        double acc = 0.0;
        for (int64_t k = 0; k < t->ne0; k++) acc += (double)row[k] * j->x[k];
        j->y[r] = (float)acc;
    }
    free(row);
}

/* y (rows of tensor i) = W x, regenerating W row by row on the pool. */
static Status matvec(const Synth *s, Pool *pool, int64_t i, const float *x, float *y, Err *err) {
    MatvecJob job = {.s = s, .i = i, .x = x, .y = y, .failed = 0};
    pool_for(pool, s->t[i].ne1, 1 + 16384 / s->t[i].ne0, matvec_rows, &job);
    if (atomic_load(&job.failed)) return err_set(err, ST_ERR_NOMEM, "synth: row buffer");
    return ST_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of |silu(g) * u| for independent g, u ~ N(0, 1): the typical size of
 * a down_proj input component in a random layer (its gate/up outputs are
 * N(0, 1) because rows have variance 1/dim and the normed input has rms 1). */
static Status median_swiglu(double *out, Err *err) {
    enum { N = 1 << 16 };
    double *h = malloc(N * sizeof *h);
    float *g = malloc(2 * N * sizeof *g);
    if (!h || !g) {
        free(h);
        free(g);
        return err_set(err, ST_ERR_NOMEM, "synth: median table");
    }
    Rng rng;
    rng_seed(&rng, 0x5eed, 0, 0);
    rng_normal(&rng, g, 2 * N, 1.0f);
    for (int i = 0; i < N; i++) {
        double a = g[2 * i], b = g[2 * i + 1];
        h[i] = fabs(a / (1.0 + exp(-a)) * b);
    }
    qsort(h, N, sizeof *h, cmp_double);
    *out = 0.5 * (h[N / 2 - 1] + h[N / 2]);
    free(h);
    free(g);
    return ST_OK;
}

/* Runs BOS through layers 0..max spike layer (position 0: each head attends
 * only to itself, so attention output = v of its KV head) and solves the
 * spike rows at each spiked layer before that layer's FFN runs. */
static Status plant_spikes(Synth *s, Err *err) {
    const SynthConfig *c = &s->cfg;
    int64_t dim = c->dim, hid = c->hidden_dim, hd = dim / c->n_heads, kvd = hd * c->n_kv_heads;
    int64_t group = c->n_heads / c->n_kv_heads, max_layer = 0;
    for (int k = 0; k < c->n_spikes; k++)
        if (c->spikes[k].layer > max_layer) max_layer = c->spikes[k].layer;
    Status st = median_swiglu(&s->median_h, err);
    if (st != ST_OK) return st;
    Pool *pool = NULL;
    float *x = core_calloc((size_t)dim, sizeof(float)), *xn = core_calloc((size_t)dim, sizeof(float));
    float *att = core_calloc((size_t)dim, sizeof(float)), *v = core_calloc((size_t)kvd, sizeof(float));
    float *tmp = core_calloc((size_t)dim, sizeof(float)), *nw = core_calloc((size_t)dim, sizeof(float));
    float *g = core_calloc((size_t)hid, sizeof(float)), *u = core_calloc((size_t)hid, sizeof(float));
    s->spike_dir = core_calloc((size_t)c->n_spikes * (size_t)dim, sizeof(float));
    if (!x || !xn || !att || !v || !tmp || !nw || !g || !u || !s->spike_dir) {
        st = err_set(err, ST_ERR_NOMEM, "synth: spike planting buffers");
        goto fail;
    }
    if ((st = pool_new(0, &pool, err)) != ST_OK) goto fail;
    gen_row(s, 0, SYNTH_BOS, x);
    /* Every plant reads BOS's embedding direction e: BOS's residual keeps a
     * large share of it (its embedding is 16x the others'), while other
     * tokens only see it by chance (|e . x| ~ 1 against BOS's ~sqrt(dim)).
     * Reading BOS's current residual direction instead would also pick up
     * what earlier plants wrote into it, which leaks into later tokens. */
    double en = 0.0;
    for (int64_t j = 0; j < dim; j++) en += (double)x[j] * x[j];
    en = sqrt(en);
    for (int k = 0; k < c->n_spikes; k++)
        for (int64_t j = 0; j < dim; j++) s->spike_dir[k * dim + j] = (float)(x[j] / en);
    const float *e = s->spike_dir;
    for (int64_t l = 0; l <= max_layer; l++) {
        gen_row(s, tensor_index(l, TK_ATTN_NORM), 0, nw);
        rmsnorm(xn, x, nw, dim, c->norm_eps);
        double aproj = 0.0;
        for (int64_t j = 0; j < dim; j++) aproj += (double)xn[j] * e[j];
        for (int k = 0; k < c->n_spikes; k++) {
            if (c->spikes[k].layer != l || c->spikes[k].site != SPIKE_O) continue;
            s->v_scale[k] = (float)(c->spikes[k].factor * MEDIAN_ABS_NORMAL / aproj);
        }
        if ((st = matvec(s, pool, tensor_index(l, TK_V), xn, v, err)) != ST_OK) goto fail;
        for (int64_t h = 0; h < c->n_heads; h++) memcpy(att + h * hd, v + (h / group) * hd, (size_t)hd * sizeof(float));
        if ((st = matvec(s, pool, tensor_index(l, TK_O), att, tmp, err)) != ST_OK) goto fail;
        for (int64_t j = 0; j < dim; j++) x[j] += tmp[j];
        gen_row(s, tensor_index(l, TK_FFN_NORM), 0, nw);
        rmsnorm(xn, x, nw, dim, c->norm_eps);
        double nrm = 0.0;
        for (int64_t j = 0; j < dim; j++) nrm += (double)xn[j] * e[j];
        for (int k = 0; k < c->n_spikes; k++) {
            if (c->spikes[k].layer != l || c->spikes[k].site != SPIKE_DOWN) continue;
            double target = c->spikes[k].factor * s->median_h;
            double silu_g = SYNTH_GATE_BOS / (1.0 + exp(-SYNTH_GATE_BOS));
            s->gate_scale[k] = (float)(SYNTH_GATE_BOS / nrm);
            s->up_scale[k] = (float)(target / silu_g / nrm);
        }
        if (l == max_layer) break;
        if ((st = matvec(s, pool, tensor_index(l, TK_GATE), xn, g, err)) != ST_OK) goto fail;
        if ((st = matvec(s, pool, tensor_index(l, TK_UP), xn, u, err)) != ST_OK) goto fail;
        for (int64_t j = 0; j < hid; j++) g[j] = g[j] / (1.0f + expf(-g[j])) * u[j];
        if ((st = matvec(s, pool, tensor_index(l, TK_DOWN), g, tmp, err)) != ST_OK) goto fail;
        for (int64_t j = 0; j < dim; j++) x[j] += tmp[j];
    }
fail:
    free(x), free(xn), free(att), free(v), free(tmp), free(nw), free(g), free(u);
    pool_free(pool);
    return st;
}

/* === setup === */

static uint32_t storage_type(uint32_t want, int64_t ne0) {
    if (want == GGML_Q8_0 && ne0 % 32 != 0) return GGML_F16;
    return want;
}

Status synth_new(const SynthConfig *cfg, Synth **out, Err *err) {
    *out = NULL;
    const SynthConfig *c = cfg;
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->head_dim < 0 || c->head_dim > 4096 || (!c->head_dim && c->dim % c->n_heads != 0) ||
        c->n_heads % c->n_kv_heads != 0 || synth_head_dim(c) % 2 != 0)
        return err_set(err, ST_ERR_ARG, "synth: inconsistent shape dim %lld hidden %lld heads %lld/%lld head_dim %lld",
                       (long long)c->dim, (long long)c->hidden_dim, (long long)c->n_heads, (long long)c->n_kv_heads,
                       (long long)synth_head_dim(c));
    if ((unsigned)c->arch > SYNTH_PHI3) return err_set(err, ST_ERR_ARG, "synth: arch %d", (int)c->arch);
    if ((c->arch == SYNTH_QWEN2 || c->arch == SYNTH_PHI3) && c->n_heads * synth_head_dim(c) != c->dim)
        return err_set(err, ST_ERR_ARG, "synth: %s needs n_heads * head_dim = dim (llama.cpp's graph), got %lld * %lld",
                       c->arch == SYNTH_QWEN2 ? "qwen2" : "phi3", (long long)c->n_heads, (long long)synth_head_dim(c));
    if (c->n_spikes > 0 && (c->arch != SYNTH_LLAMA || c->n_heads * synth_head_dim(c) != c->dim))
        return err_set(err, ST_ERR_ARG, "synth: spikes are planted only in the llama layout with head_dim = dim / n_heads");
    if (c->n_layers > 1024) return err_set(err, ST_ERR_RANGE, "synth: %lld layers (at most 1024)", (long long)c->n_layers);
    if (c->vocab_size < 260 || c->vocab_size > (1 << 20))
        return err_set(err, ST_ERR_RANGE, "synth: vocab size %lld outside [260, 1048576] (3 special + 256 byte tokens + pieces)",
                       (long long)c->vocab_size);
    if (c->type != GGML_F32 && c->type != GGML_F16 && c->type != GGML_BF16 && c->type != GGML_Q8_0)
        return err_set(err, ST_ERR_ARG, "synth: storage type %u (supported: F32, F16, BF16, Q8_0)", c->type);
    /* synth_parse_spikes checks these against the shape it saw; the shape may
     * have changed since, and planting indexes the tensor table by layer. */
    if (c->n_spikes < 0 || c->n_spikes > SYNTH_MAX_SPIKES)
        return err_set(err, ST_ERR_RANGE, "synth: %d spikes (at most %d)", c->n_spikes, SYNTH_MAX_SPIKES);
    for (int k = 0; k < c->n_spikes; k++) {
        const SynthSpike *sp = &c->spikes[k];
        int64_t width = sp->site == SPIKE_DOWN ? c->hidden_dim : c->dim;
        if (sp->layer < 0 || sp->layer >= c->n_layers || sp->channel < 0 || sp->channel >= width)
            return err_set(err, ST_ERR_RANGE, "synth: spike %d at layer %lld channel %lld, outside %lld layers x %lld channels",
                           k, (long long)sp->layer, (long long)sp->channel, (long long)c->n_layers, (long long)width);
    }
    Synth *s = core_calloc(1, sizeof *s);
    if (!s) return err_set(err, ST_ERR_NOMEM, "synth");
    s->cfg = *c;
    s->n_t = 1 + c->n_layers * LAYER_TENSORS + 2;
    s->t = core_calloc((size_t)s->n_t, sizeof(TSpec));
    if (!s->t) {
        synth_free(s);
        return err_set(err, ST_ERR_NOMEM, "synth: tensor table");
    }
    int64_t hd = synth_head_dim(c), kvd = hd * c->n_kv_heads, qd = hd * c->n_heads;
    TSpec *t = s->t;
    t[0] = (TSpec){"token_embd.weight", TK_EMBD, -1, c->dim, c->vocab_size, storage_type(c->type, c->dim)};
    static const struct { TKind k; const char *name; } lk[LAYER_TENSORS] = {
        {TK_ATTN_NORM, "attn_norm"}, {TK_Q, "attn_q"}, {TK_K, "attn_k"}, {TK_V, "attn_v"}, {TK_O, "attn_output"},
        {TK_FFN_NORM, "ffn_norm"}, {TK_GATE, "ffn_gate"}, {TK_UP, "ffn_up"}, {TK_DOWN, "ffn_down"},
    };
    for (int64_t l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < LAYER_TENSORS; k++) {
            TSpec *e = &t[tensor_index(l, lk[k].k)];
            snprintf(e->name, sizeof e->name, "blk.%lld.%s.weight", (long long)l, lk[k].name);
            e->kind = lk[k].k;
            e->layer = l;
            switch (e->kind) {
            case TK_ATTN_NORM: case TK_FFN_NORM: e->ne0 = c->dim, e->ne1 = 1; break;
            case TK_Q: e->ne0 = c->dim, e->ne1 = qd; break;
            case TK_O: e->ne0 = qd, e->ne1 = c->dim; break;
            case TK_K: case TK_V: e->ne0 = c->dim, e->ne1 = kvd; break;
            case TK_GATE: case TK_UP: e->ne0 = c->dim, e->ne1 = c->hidden_dim; break;
            case TK_DOWN: e->ne0 = c->hidden_dim, e->ne1 = c->dim; break;
            default: break;
            }
            e->type = e->ne1 == 1 ? GGML_F32 : storage_type(c->type, e->ne0);
        }
    }
    t[s->n_t - 2] = (TSpec){"output_norm.weight", TK_OUT_NORM, -1, c->dim, 1, GGML_F32};
    t[s->n_t - 1] = (TSpec){"output.weight", TK_OUTPUT, -1, c->dim, c->vocab_size, storage_type(c->type, c->dim)};
    int has_o = 0;
    for (int k = 0; k < c->n_spikes; k++) has_o |= c->spikes[k].site == SPIKE_O;
    if (has_o) {
        /* A direction every non-BOS embedding shares (orthogonal to BOS's own):
         * q/k rows along it give every other key a score lead of ~SYNTH_SINK
         * over BOS, so later tokens do not inherit BOS's spiked v. */
        float *bos = core_calloc((size_t)c->dim, sizeof(float));
        s->common = core_calloc((size_t)c->dim, sizeof(float));
        if (!bos || !s->common) {
            free(bos);
            synth_free(s);
            return err_set(err, ST_ERR_NOMEM, "synth: common direction");
        }
        gen_row(s, 0, SYNTH_BOS, bos);
        Rng rng;
        rng_seed(&rng, c->seed, UINT64_MAX, 0);
        rng_normal(&rng, s->common, c->dim, 1.0f);
        double bb = 0.0, cb = 0.0, cc = 0.0;
        for (int64_t j = 0; j < c->dim; j++) bb += (double)bos[j] * bos[j], cb += (double)s->common[j] * bos[j];
        for (int64_t j = 0; j < c->dim; j++) s->common[j] -= (float)(cb / bb) * bos[j];
        for (int64_t j = 0; j < c->dim; j++) cc += (double)s->common[j] * s->common[j];
        for (int64_t j = 0; j < c->dim; j++) s->common[j] = (float)(s->common[j] / sqrt(cc));
        free(bos);
        /* normed non-BOS inputs project ~ C*sqrt(dim)/sqrt(C^2 + 2) on it */
        double m = SYNTH_COMMON * sqrt((double)c->dim) / sqrt(SYNTH_COMMON * SYNTH_COMMON + 2.0);
        s->qk_scale = (float)(sqrt(SYNTH_SINK * sqrt((double)hd)) / m);
    }
    if (c->n_spikes > 0) {
        Status st = plant_spikes(s, err);
        if (st != ST_OK) {
            synth_free(s);
            return st;
        }
    }
    *out = s;
    return ST_OK;
}

void synth_free(Synth *s) {
    if (!s) return;
    free(s->t);
    free(s->spike_dir);
    free(s->common);
    free(s);
}

/* === vocabulary === */

/* A valid SentencePiece vocabulary: <unk> <s> </s>, the 256 byte-fallback
 * tokens <0x00>..<0xFF>, then "▁", "▁a".."▁z", letters, digits, punctuation
 * and all lowercase n-grams (with and without a leading ▁) until full. Pieces
 * are distinct by construction. */
typedef struct Vocab {
    char **tok;              /* (n) owned strings */
    float *score;            /* (n) */
    int32_t *type;           /* (n) 1 normal, 2 unknown, 3 control, 6 byte */
    int64_t n, cap;
} Vocab;

static int vocab_add(Vocab *v, const char *s, float score, int32_t type) {
    if (v->n >= v->cap) return 1; /* full: stop quietly */
    if (!(v->tok[v->n] = core_strdup(s))) return -1;
    v->score[v->n] = score;
    v->type[v->n] = type;
    v->n++;
    return 0;
}

static void vocab_done(Vocab *v) {
    if (v->tok)
        for (int64_t i = 0; i < v->n; i++) free(v->tok[i]);
    free(v->tok);
    free(v->score);
    free(v->type);
}

static Status vocab_build(Vocab *v, int64_t n, Err *err) {
    memset(v, 0, sizeof *v);
    v->cap = n;
    v->tok = core_calloc((size_t)n, sizeof(char *));
    v->score = core_calloc((size_t)n, sizeof(float));
    v->type = core_calloc((size_t)n, sizeof(int32_t));
    if (!v->tok || !v->score || !v->type) goto nomem;
    if (vocab_add(v, "<unk>", 0.0f, 2) < 0 || vocab_add(v, "<s>", 0.0f, 3) < 0 || vocab_add(v, "</s>", 0.0f, 3) < 0)
        goto nomem;
    char buf[64];
    for (int b = 0; b < 256; b++) {
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        if (vocab_add(v, buf, 0.0f, 6) < 0) goto nomem;
    }
    static const char *const sp = "\xe2\x96\x81"; /* U+2581 ▁ */
    static const char punct[] = ".,!?'\"-:;()";
    int64_t k = 0;
    int rc = 0;
#define ADD(s) do { if ((rc = vocab_add(v, (s), -(float)(k++), 1)) != 0) goto done; } while (0)
    ADD(sp);
    for (char ch = 'a'; ch <= 'z'; ch++) { snprintf(buf, sizeof buf, "%s%c", sp, ch); ADD(buf); }
    for (char ch = 'a'; ch <= 'z'; ch++) { snprintf(buf, sizeof buf, "%c", ch); ADD(buf); }
    for (char ch = 'A'; ch <= 'Z'; ch++) { snprintf(buf, sizeof buf, "%c", ch); ADD(buf); }
    for (char ch = 'A'; ch <= 'Z'; ch++) { snprintf(buf, sizeof buf, "%s%c", sp, ch); ADD(buf); }
    for (char ch = '0'; ch <= '9'; ch++) { snprintf(buf, sizeof buf, "%c", ch); ADD(buf); }
    for (const char *p = punct; *p; p++) { snprintf(buf, sizeof buf, "%c", *p); ADD(buf); }
    /* n-grams of length 2..6 over a-z: 26^6 > 3e8 pieces, far beyond any vocab. */
    for (int len = 2; len <= 6; len++) {
        int64_t count = 1;
        for (int i = 0; i < len; i++) count *= 26;
        for (int with_sp = 1; with_sp >= 0; with_sp--) {
            for (int64_t idx = 0; idx < count; idx++) {
                char gram[8];
                int64_t x = idx;
                for (int i = len - 1; i >= 0; i--, x /= 26) gram[i] = (char)('a' + x % 26);
                gram[len] = '\0';
                snprintf(buf, sizeof buf, "%s%s", with_sp ? sp : "", gram);
                ADD(buf);
            }
        }
    }
#undef ADD
done:
    if (rc < 0) goto nomem;
    return ST_OK;
nomem:
    vocab_done(v);
    return err_set(err, ST_ERR_NOMEM, "synth: vocabulary of %lld tokens", (long long)n);
}

/* === writing === */

typedef struct FillCtx {
    const Synth *s;
    Pool *pool;
} FillCtx;

typedef struct FillJob {
    const Synth *s;
    int64_t i;
    unsigned char *dst;
    size_t row_bytes;
    const GgmlTypeTraits *tt;
    _Atomic int failed;
} FillJob;

/* Rows [begin, end) of one tensor: generate, then convert to the storage type
 * (F32 rows are generated in place). */
static void fill_rows(void *arg, int64_t begin, int64_t end, int tid) {
    (void)tid;
    FillJob *j = arg;
    const TSpec *t = &j->s->t[j->i];
    float *row = NULL;
    if (t->type != GGML_F32 && !(row = core_alloc_aligned((size_t)t->ne0, sizeof(float)))) {
        atomic_store(&j->failed, 1);
        return;
    }
    for (int64_t r = begin; r < end; r++) {
        unsigned char *d = j->dst + (size_t)r * j->row_bytes;
        if (!row) {
            gen_row(j->s, j->i, r, (float *)(void *)d);
            continue;
        }
        gen_row(j->s, j->i, r, row);
        j->tt->quant_ref(row, d, t->ne0);
    }
    core_free_aligned(row);
}

/* A tensor of the file: one spec, a stack of consecutive specs (phi3's
 * [q; k; v] and [gate; up]), a q/k/v bias or rope_freqs. */
typedef enum { FT_SPEC, FT_STACK, FT_BIAS, FT_ROPE_FREQS } FileKind;

typedef struct FileT {
    FileKind kind;
    int64_t spec;            /* the spec (first of the stack; the projection a bias belongs to) */
    int n_parts;             /* FT_STACK: specs spec .. spec + n_parts - 1 */
    char name[64];
} FileT;

static Status fill_spec(const FillCtx *ctx, int64_t i, void *dst, size_t nbytes, Err *err) {
    const TSpec *t = &ctx->s->t[i];
    const GgmlTypeTraits *tt = ggml_type_traits(t->type);
    size_t rb = ggml_row_bytes(t->type, t->ne0);
    if (!tt || !tt->quant_ref || rb * (size_t)t->ne1 != nbytes)
        return err_set(err, ST_ERR_STATE, "synth: tensor %s: type/size mismatch", t->name);
    FillJob job = {.s = ctx->s, .i = i, .dst = dst, .row_bytes = rb, .tt = tt, .failed = 0};
    int64_t grain = 1 + 16384 / t->ne0;
    pool_for(ctx->pool, t->ne1, grain, fill_rows, &job);
    if (atomic_load(&job.failed)) return err_set(err, ST_ERR_NOMEM, "synth: row buffer");
    return ST_OK;
}

/* Llama 3.1's frequency factors (factor 8, low 1, high 4, original context
 * 8192) for head width hd and base theta, as llama.cpp's converter writes
 * rope_freqs.weight: 1 for wavelengths under 8192/4, 8 over 8192, smoothed
 * between. */
static void llama3_rope_freqs(float *ff, int64_t hd, double theta) {
    const double factor = 8.0, lo = 1.0, hi = 4.0, orig = 8192.0;
    for (int64_t i = 0; i < hd / 2; i++) {
        double freq = 1.0 / pow(theta, (double)(2 * i) / (double)hd), wavelen = 2.0 * M_PI / freq;
        if (wavelen < orig / hi) {
            ff[i] = 1.0f;
        } else if (wavelen > orig / lo) {
            ff[i] = (float)factor;
        } else {
            double smooth = (orig / wavelen - lo) / (hi - lo);
            ff[i] = (float)(1.0 / ((1.0 - smooth) / factor + smooth));
        }
    }
}

typedef struct FileCtx {
    FillCtx fill;
    const FileT *ft;
} FileCtx;

static Status fill_file_tensor(void *user, int64_t idx, void *dst, size_t nbytes, Err *err) {
    const FileCtx *fc = user;
    const FileT *f = &fc->ft[idx];
    const Synth *s = fc->fill.s;
    float *out = dst;
    switch (f->kind) {
    case FT_SPEC: return fill_spec(&fc->fill, f->spec, dst, nbytes, err);
    case FT_STACK: {
        size_t off = 0;
        for (int p = 0; p < f->n_parts; p++) {
            const TSpec *t = &s->t[f->spec + p];
            size_t part = ggml_row_bytes(t->type, t->ne0) * (size_t)t->ne1;
            if (off + part > nbytes) return err_set(err, ST_ERR_STATE, "synth: tensor %s: size mismatch", f->name);
            Status st = fill_spec(&fc->fill, f->spec + p, (unsigned char *)dst + off, part, err);
            if (st != ST_OK) return st;
            off += part;
        }
        return off == nbytes ? ST_OK : err_set(err, ST_ERR_STATE, "synth: tensor %s: size mismatch", f->name);
    }
    case FT_BIAS: {
        /* Its own stream, so the projections' streams stay those of the llama layout. */
        Rng rng;
        rng_seed(&rng, s->cfg.seed, UINT64_MAX - 1, (uint64_t)f->spec);
        rng_normal(&rng, out, (int64_t)(nbytes / sizeof(float)), 0.5f);
        return ST_OK;
    }
    case FT_ROPE_FREQS:
        llama3_rope_freqs(out, (int64_t)(nbytes / sizeof(float)) * 2, s->cfg.rope_theta);
        return ST_OK;
    }
    return err_set(err, ST_ERR_STATE, "synth: file tensor %lld", (long long)idx);
}

/* The file's tensor list for the configured layout; caller frees. */
static FileT *file_tensors(const Synth *s, int64_t *n_out) {
    const SynthConfig *c = &s->cfg;
    FileT *ft = core_calloc((size_t)(s->n_t + 3 * c->n_layers + 1), sizeof *ft);
    if (!ft) return NULL;
    int64_t n = 0;
    if (c->arch == SYNTH_LLAMA3) {
        ft[n].kind = FT_ROPE_FREQS;
        snprintf(ft[n++].name, sizeof ft[0].name, "rope_freqs.weight");
    }
    for (int64_t i = 0; i < s->n_t; i++) {
        const TSpec *t = &s->t[i];
        if (c->arch == SYNTH_PHI3 && (t->kind == TK_Q || t->kind == TK_GATE)) {
            int qkv = t->kind == TK_Q;
            ft[n] = (FileT){.kind = FT_STACK, .spec = i, .n_parts = qkv ? 3 : 2};
            snprintf(ft[n++].name, sizeof ft[0].name, "blk.%lld.%s.weight", (long long)t->layer,
                     qkv ? "attn_qkv" : "ffn_up");
            i += qkv ? 2 : 1;
            continue;
        }
        ft[n] = (FileT){.kind = FT_SPEC, .spec = i};
        snprintf(ft[n++].name, sizeof ft[0].name, "%s", t->name);
        if (c->arch == SYNTH_QWEN2 && t->kind == TK_V)
            for (int p = 0; p < 3; p++) { /* after v: the q, k, v biases */
                static const char *const bn[3] = {"attn_q", "attn_k", "attn_v"};
                ft[n] = (FileT){.kind = FT_BIAS, .spec = i - 2 + p};
                snprintf(ft[n++].name, sizeof ft[0].name, "blk.%lld.%s.bias", (long long)t->layer, bn[p]);
            }
    }
    *n_out = n;
    return ft;
}

static int file_type_of(uint32_t t) {
    /* llama_ftype: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_BF16 */
    return t == GGML_F16 ? 1 : t == GGML_Q8_0 ? 7 : t == GGML_BF16 ? 32 : 0;
}

Status synth_write(const Synth *s, const char *path, Progress *p, Err *err) {
    const SynthConfig *c = &s->cfg;
    Vocab voc = {0};
    Status st = vocab_build(&voc, c->vocab_size, err);
    if (st != ST_OK) return st;
    GgufWriter *w = gguf_writer_new();
    if (!w) {
        vocab_done(&voc);
        return err_set(err, ST_ERR_NOMEM, "%s: writer", path);
    }
    char name[64], key[96];
    snprintf(name, sizeof name, "qscope-synth-%s", c->name[0] ? c->name : "custom");
    const char *arch = c->arch == SYNTH_QWEN2 ? "qwen2" : c->arch == SYNTH_PHI3 ? "phi3" : "llama";
    int64_t hd = synth_head_dim(c);
#define AKEY(sfx) (snprintf(key, sizeof key, "%s.%s", arch, sfx), key)
    st = gguf_writer_add_str(w, "general.architecture", arch);
    if (st == ST_OK) st = gguf_writer_add_str(w, "general.name", name);
    if (st == ST_OK) st = gguf_writer_add_u32(w, "general.alignment", 32);
    if (st == ST_OK) st = gguf_writer_add_u32(w, "general.file_type", (uint32_t)file_type_of(c->type));
    if (st == ST_OK && c->type == GGML_Q8_0) st = gguf_writer_add_u32(w, "general.quantization_version", 2);
    if (st == ST_OK) st = gguf_writer_add_u32(w, AKEY("context_length"), (uint32_t)c->context_length);
    if (st == ST_OK) st = gguf_writer_add_u32(w, AKEY("embedding_length"), (uint32_t)c->dim);
    if (st == ST_OK) st = gguf_writer_add_u32(w, AKEY("block_count"), (uint32_t)c->n_layers);
    if (st == ST_OK) st = gguf_writer_add_u32(w, AKEY("feed_forward_length"), (uint32_t)c->hidden_dim);
    if (st == ST_OK) st = gguf_writer_add_u32(w, AKEY("attention.head_count"), (uint32_t)c->n_heads);
    if (st == ST_OK) st = gguf_writer_add_u32(w, AKEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads);
    if (st == ST_OK) st = gguf_writer_add_u32(w, AKEY("rope.dimension_count"), (uint32_t)hd);
    if (st == ST_OK && hd * c->n_heads != c->dim) st = gguf_writer_add_u32(w, AKEY("attention.key_length"), (uint32_t)hd);
    if (st == ST_OK && hd * c->n_heads != c->dim) st = gguf_writer_add_u32(w, AKEY("attention.value_length"), (uint32_t)hd);
    if (st == ST_OK) st = gguf_writer_add_f32(w, AKEY("rope.freq_base"), c->rope_theta);
    if (st == ST_OK) st = gguf_writer_add_f32(w, AKEY("attention.layer_norm_rms_epsilon"), c->norm_eps);
    if (st == ST_OK) st = gguf_writer_add_u32(w, AKEY("vocab_size"), (uint32_t)c->vocab_size);
#undef AKEY
    if (st == ST_OK) st = gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    if (st == ST_OK) st = gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)voc.tok, voc.n);
    if (st == ST_OK) st = gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", voc.score, voc.n);
    if (st == ST_OK) st = gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", voc.type, voc.n);
    if (st == ST_OK) st = gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (st == ST_OK) st = gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (st == ST_OK) st = gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (st == ST_OK) st = gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 1);
    if (st == ST_OK) st = gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", 0);
    FileCtx ctx = {.fill = {.s = s, .pool = NULL}, .ft = NULL};
    int64_t n_ft = 0;
    FileT *ft = NULL;
    if (st == ST_OK && !(ft = file_tensors(s, &n_ft))) st = ST_ERR_NOMEM;
    ctx.ft = ft;
    for (int64_t i = 0; st == ST_OK && i < n_ft; i++) {
        const TSpec *t = &s->t[ft[i].spec];
        int64_t ne[2] = {t->ne0, t->ne1};
        int dims = t->ne1 == 1 ? 1 : 2;
        uint32_t type = t->type;
        if (ft[i].kind == FT_STACK)
            for (int q = 1; q < ft[i].n_parts; q++) ne[1] += s->t[ft[i].spec + q].ne1;
        if (ft[i].kind == FT_BIAS) ne[0] = t->ne1, dims = 1, type = GGML_F32;
        if (ft[i].kind == FT_ROPE_FREQS) ne[0] = hd / 2, dims = 1, type = GGML_F32;
        st = gguf_writer_add_tensor_fill(w, ft[i].name, type, dims, ne, fill_file_tensor, &ctx);
    }
    if (st != ST_OK) {
        err_set(err, st, "%s: building GGUF metadata", path);
    } else if ((st = pool_new(0, &ctx.fill.pool, err)) == ST_OK) {
        gguf_writer_set_progress(w, p);
        st = gguf_writer_write(w, path, err);
    }
    free(ft);
    pool_free(ctx.fill.pool);
    gguf_writer_free(w);
    vocab_done(&voc);
    return st;
}
