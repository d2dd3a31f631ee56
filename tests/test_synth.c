/* synth --spikes: planted massive activations really happen in the forward
 * pass. A plain float reference forward written here (RMSNorm, NORM RoPE,
 * causal GQA attention, SwiGLU; weights read back from the written GGUF)
 * measures every down_proj input and checks that the planted channels spike
 * on BOS only, at the requested size, and that unspiked layers stay tame.
 * Also: the spike grammar and its errors. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gguf.h"
#include "model/synth.h"
#include "quant/ggml_type.h"
#include "tests/testlib.h"

enum { T = 48 };

typedef struct Ref {
    int64_t dim, hid, n_layers, n_heads, n_kv, hd, vocab;
    const Gguf *g;
} Ref;

static const float *weight(const Ref *r, int64_t layer, const char *name) {
    char full[96];
    if (layer >= 0) snprintf(full, sizeof full, "blk.%lld.%s.weight", (long long)layer, name);
    else snprintf(full, sizeof full, "%s.weight", name);
    const GgufTensor *t = gguf_find_tensor(r->g, full);
    CHECKF(t && t->type == GGML_F32, "%s", full);
    return t->data;
}

static void rmsnorm(float *o, const float *x, const float *w, int64_t n) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double inv = 1.0 / sqrt(ss / (double)n + 1e-5);
    for (int64_t i = 0; i < n; i++) o[i] = (float)(x[i] * inv) * w[i];
}

/* y (n_out) = W (n_out, n_in) x */
static void matvec(float *y, const float *w, const float *x, int64_t n_out, int64_t n_in) {
    for (int64_t r = 0; r < n_out; r++) {
        double acc = 0;
        for (int64_t j = 0; j < n_in; j++) acc += (double)w[r * n_in + j] * x[j];
        y[r] = (float)acc;
    }
}

static void rope(float *v, int64_t n_heads, int64_t hd, int64_t pos) {
    for (int64_t h = 0; h < n_heads; h++)
        for (int64_t i = 0; i < hd; i += 2) {
            double th = (double)pos * pow(10000.0, -(double)i / (double)hd);
            double c = cos(th), s = sin(th);
            float a = v[h * hd + i], b = v[h * hd + i + 1];
            v[h * hd + i] = (float)(a * c - b * s);
            v[h * hd + i + 1] = (float)(a * s + b * c);
        }
}

/* Runs T tokens; down_in receives (n_layers, T, hid) down_proj inputs. */
static void ref_forward(const Ref *r, const int32_t *tok, float *down_in) {
    int64_t dim = r->dim, hid = r->hid, hd = r->hd, kvd = r->n_kv * hd, grp = r->n_heads / r->n_kv;
    float *x = calloc((size_t)(T * dim), sizeof(float)), *xn = calloc((size_t)dim, sizeof(float));
    float *q = calloc((size_t)(T * dim), sizeof(float)), *k = calloc((size_t)(T * kvd), sizeof(float));
    float *v = calloc((size_t)(T * kvd), sizeof(float)), *att = calloc((size_t)dim, sizeof(float));
    float *tmp = calloc((size_t)dim, sizeof(float)), *g = calloc((size_t)hid, sizeof(float));
    float *u = calloc((size_t)hid, sizeof(float)), *sc = calloc(T, sizeof(float));
    CHECK(x && xn && q && k && v && att && tmp && g && u && sc);
    const float *emb = weight(r, -1, "token_embd");
    for (int t = 0; t < T; t++) memcpy(x + t * dim, emb + tok[t] * dim, (size_t)dim * sizeof(float));
    for (int64_t l = 0; l < r->n_layers; l++) {
        for (int t = 0; t < T; t++) {
            rmsnorm(xn, x + t * dim, weight(r, l, "attn_norm"), dim);
            matvec(q + t * dim, weight(r, l, "attn_q"), xn, dim, dim);
            matvec(k + t * kvd, weight(r, l, "attn_k"), xn, kvd, dim);
            matvec(v + t * kvd, weight(r, l, "attn_v"), xn, kvd, dim);
            rope(q + t * dim, r->n_heads, hd, t);
            rope(k + t * kvd, r->n_kv, hd, t);
        }
        for (int t = 0; t < T; t++) {
            for (int64_t h = 0; h < r->n_heads; h++) {
                const float *qh = q + t * dim + h * hd;
                int64_t kvh = h / grp;
                double mx = -1e30, sum = 0;
                for (int s = 0; s <= t; s++) {
                    double d = 0;
                    for (int64_t i = 0; i < hd; i++) d += (double)qh[i] * k[s * kvd + kvh * hd + i];
                    sc[s] = (float)(d / sqrt((double)hd));
                    if (sc[s] > mx) mx = sc[s];
                }
                for (int s = 0; s <= t; s++) sum += sc[s] = (float)exp(sc[s] - mx);
                for (int64_t i = 0; i < hd; i++) {
                    double acc = 0;
                    for (int s = 0; s <= t; s++) acc += sc[s] / sum * v[s * kvd + kvh * hd + i];
                    att[h * hd + i] = (float)acc;
                }
            }
            matvec(tmp, weight(r, l, "attn_output"), att, dim, dim);
            for (int64_t i = 0; i < dim; i++) x[t * dim + i] += tmp[i];
        }
        for (int t = 0; t < T; t++) {
            rmsnorm(xn, x + t * dim, weight(r, l, "ffn_norm"), dim);
            matvec(g, weight(r, l, "ffn_gate"), xn, hid, dim);
            matvec(u, weight(r, l, "ffn_up"), xn, hid, dim);
            float *h = down_in + (l * T + t) * hid;
            for (int64_t i = 0; i < hid; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
            matvec(tmp, weight(r, l, "ffn_down"), h, dim, hid);
            for (int64_t i = 0; i < dim; i++) x[t * dim + i] += tmp[i];
        }
    }
    free(x), free(xn), free(q), free(k), free(v), free(att), free(tmp), free(g), free(u), free(sc);
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float median_abs(const float *h, int64_t n) {
    float *c = malloc((size_t)n * sizeof(float));
    CHECK(c);
    for (int64_t i = 0; i < n; i++) c[i] = fabsf(h[i]);
    qsort(c, (size_t)n, sizeof(float), cmp_f);
    float m = 0.5f * (c[n / 2] + c[(n - 1) / 2]);
    free(c);
    return m;
}

static void test_spikes(const char *dir) {
    Err err;
    err_init(&err);
    SynthConfig cfg;
    CHECK_OK(synth_preset("tiny", &cfg, &err), err);
    cfg.seed = 11;
    CHECK_OK(synth_parse_spikes("1.down:7:100,3.down:100:40,3.down:5", &cfg, &err), err);
    CHECK(cfg.n_spikes == 3 && cfg.spikes[2].factor == 100.0f && cfg.spikes[1].channel == 100);
    Synth *s = NULL;
    CHECK_OK(synth_new(&cfg, &s, &err), err);
    char path[512];
    snprintf(path, sizeof path, "%s/spiky.gguf", dir);
    CHECK_OK(synth_write(s, path, NULL, &err), err);
    synth_free(s);
    Gguf *g = NULL;
    CHECK_OK(gguf_open(path, &g, &err), err);
    Ref r = {.dim = 64, .hid = 172, .n_layers = 5, .n_heads = 8, .n_kv = 4, .hd = 8, .vocab = 512, .g = g};
    int32_t tok[T];
    uint64_t st = 99;
    tok[0] = 1; /* BOS */
    for (int t = 1; t < T; t++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        tok[t] = 3 + (int32_t)((st >> 33) % 509);
    }
    float *h = malloc((size_t)(r.n_layers * T * r.hid) * sizeof(float));
    CHECK(h);
    ref_forward(&r, tok, h);
    struct { int64_t layer, ch; float factor; } want[3] = {{1, 7, 100}, {3, 100, 40}, {3, 5, 100}};
    for (int64_t l = 0; l < r.n_layers; l++) {
        const float *hl = h + l * T * r.hid;
        float med = median_abs(hl, T * r.hid);
        float mx_plain = 0; /* largest |x| outside the planted (BOS, channel) cells */
        for (int t = 0; t < T; t++)
            for (int64_t c = 0; c < r.hid; c++) {
                int planted = 0;
                for (int k = 0; k < 3; k++) planted |= t == 0 && want[k].layer == l && want[k].ch == c;
                if (!planted && fabsf(hl[t * r.hid + c]) > mx_plain) mx_plain = fabsf(hl[t * r.hid + c]);
            }
        float max_factor = 0;
        for (int k = 0; k < 3; k++) {
            if (want[k].layer != l) continue;
            float spike = fabsf(hl[want[k].ch]);
            if (getenv("QS_VERBOSE"))
                fprintf(stderr, "layer %lld ch %lld: %.3f = %.1fx median (target %g)\n", (long long)l,
                        (long long)want[k].ch, spike, spike / med, want[k].factor);
            /* "about FACTOR x typical": within a factor 1.6 of the target (the
             * median of a real layer differs from the N(0,1) model's a little) */
            CHECKF(spike / med > want[k].factor / 1.6f && spike / med < want[k].factor * 1.6f,
                   "layer %lld ch %lld: %g / median %g = %g, want ~%g", (long long)l, (long long)want[k].ch, spike,
                   med, spike / med, want[k].factor);
            /* on BOS only: every later token stays far below in that channel */
            for (int t = 1; t < T; t++) CHECK(fabsf(hl[t * r.hid + want[k].ch]) < 0.25f * spike);
            if (want[k].factor > max_factor) max_factor = want[k].factor;
        }
        if (getenv("QS_VERBOSE"))
            fprintf(stderr, "layer %lld: median %.4f, max unplanted %.3f (%.1fx)\n", (long long)l, med, mx_plain,
                    mx_plain / med);
        /* A random SwiGLU output is heavy-tailed (a product of two Gaussians):
         * its natural max/median over these T*hid cells is ~40-50. The
         * 100x plants stand clearly above that, and nothing else comes near. */
        CHECK(mx_plain / med < 70.0f);
        if (max_factor >= 100.0f) CHECK(max_factor * med > 1.5f * mx_plain);
    }
    free(h);
    gguf_free(g);
}

static void test_spike_grammar(void) {
    Err err;
    err_init(&err);
    SynthConfig cfg;
    CHECK_OK(synth_preset("tinyllama", &cfg, &err), err);
    CHECK(cfg.dim == 2048 && cfg.hidden_dim == 5632 && cfg.n_heads == 32 && cfg.n_kv_heads == 4 &&
          cfg.n_layers == 4 && cfg.vocab_size == 512 && cfg.context_length == 2048);
    CHECK_OK(synth_parse_spikes("0.down:5631:2.5", &cfg, &err), err);
    CHECK(cfg.n_spikes == 1 && cfg.spikes[0].layer == 0 && cfg.spikes[0].channel == 5631 &&
          cfg.spikes[0].factor == 2.5f);
    static const struct { const char *spec, *phrase; } bad[] = {
        {"4.down:1", "layer 4, the model has 4 layers"},
        {"1.down:5632", "channel 5632"},
        {"1.up:3", "site must be 'down'"},
        {"x.down:3", "expected LAYER.down"},
        {"1.down:", "expected a channel"},
        {"1.down:3:0.5", "factor must be"},
        {"1.down:3;", "unexpected ';'"},
        {"1.down:3,1.down:3", "given twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECKF(synth_parse_spikes(bad[i].spec, &cfg, &err) != ST_OK, "%s accepted", bad[i].spec);
        CHECKF(strstr(err.detail, bad[i].phrase) != NULL, "%s: %s", bad[i].spec, err.detail);
    }
    CHECK(synth_preset("gpt5", &cfg, &err) == ST_ERR_ARG && strstr(err.detail, "unknown preset 'gpt5'"));
    CHECK_OK(synth_preset("llama2-7b", &cfg, &err), err);
    CHECK(cfg.dim == 4096 && cfg.hidden_dim == 11008 && cfg.n_kv_heads == 32);
    cfg.vocab_size = 100;
    Synth *s = NULL;
    CHECK(synth_new(&cfg, &s, &err) == ST_ERR_RANGE && s == NULL && strstr(err.detail, "vocab size 100"));
}

int main(void) {
    (void)testlib_shared; /* this test needs no shared files */
    char dir[256];
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/qs_synth_XXXXXX", base ? base : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    test_spike_grammar();
    test_spikes(dir);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return testlib_done("test_synth");
}
