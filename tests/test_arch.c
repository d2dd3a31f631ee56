/* Architectures beyond plain Llama-2, each as a GGUF file and a Hugging Face
 * directory built here from stories260K's real weights (peaked predictions,
 * so a wrong RoPE angle, bias or mask moves the perplexity visibly):
 *   llama3   LlamaForCausalLM / GGUF llama, head_dim 16 != dim/heads (q is
 *            (128, 64)), Llama 3.1 RoPE: HF rope_scaling "llama3", GGUF
 *            rope_freqs.weight
 *   linear   LlamaForCausalLM with rope_scaling linear / GGUF rope.scaling
 *   qwen2    Qwen2ForCausalLM / GGUF qwen2: q/k/v biases, NEOX RoPE
 *   mistral  MistralForCausalLM with sliding_window 32 / GGUF llama (which
 *            has no sliding window in llama.cpp)
 *   phi3     Phi3ForCausalLM (qkv_proj, gate_up_proj) / GGUF phi3 (attn_qkv,
 *            ffn_up = [gate; up])
 * Each form must give the same perplexity as the other (±0.002), as an
 * independent float64 forward written below (relative 2e-5), and as
 * llama.cpp's llama-perplexity with float32 attention (±0.002) when its tools
 * are in build/llama.cpp/bin or $LLAMA_BIN. Malformed variants must fail
 * with errors naming the file and tensor or key. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "analysis/eval.h"
#include "analysis/ppl.h"
#include "analysis/qmodel.h"
#include "core/mapfile.h"
#include "model/forward.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/synth.h"
#include "model/weight.h"
#include "model/tokenizer.h"
#include "quant/ggml_type.h"
#include "quant/plan.h"
#include "quant/preset.h"
#include "testlib.h"

static char tmpdir[256];

static __attribute__((unused)) const char *tpath(const char *rel) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, rel);
    return buf[k];
}

/* === fixtures ============================================================ */

typedef enum { FX_LLAMA, FX_MISTRAL, FX_QWEN2, FX_PHI3 } FxArch;
typedef enum { RS_NONE, RS_LINEAR, RS_LLAMA3 } RopeKind;

/* Malformed variants of a fixture. */
typedef enum {
    MUT_NONE,
    MUT_BIAS_LEN,      /* q bias one element short */
    MUT_FUSED_HEIGHT,  /* fused qkv one row short */
    MUT_FUSED_GU,      /* fused gate_up one row short */
    MUT_ROPE_FREQS,    /* rope_freqs.weight one element short */
    MUT_ROPE_YARN,     /* scaling type yarn */
    MUT_ROPE_UNKNOWN,  /* scaling type "wobble" */
    MUT_ROPE_LONG,     /* phi3 LongRoPE (rope_factors_long / rope_scaling longrope) */
    MUT_O_BIAS,        /* an attn_output / o_proj bias */
    MUT_NO_BIAS,       /* qwen2 without its q bias */
    MUT_QWEN_SWA,      /* Qwen2 use_sliding_window */
    MUT_ROPE_PARAMS,   /* not malformed: transformers 5's rope_parameters instead of rope_scaling + rope_theta */
} Mutation;

#define NL 5
typedef struct Fix {
    const char *name;
    FxArch arch;
    int64_t dim, hidden, n_heads, n_kv, hd, vocab;
    double theta, eps;
    RopeKind rope;
    double factor, low, high, orig; /* rope scaling parameters */
    int64_t window;                 /* HF sliding_window (mistral); 0 none */
    /* Weights in Hugging Face layout (rotate_half q/k rows), row-major (n_out, n_in). */
    float *embd, *out_norm;
    float *attn_norm[NL], *ffn_norm[NL];
    float *w[NL][7];                /* q k v o gate up down */
    float *b[NL][3];                /* q k v biases or NULL */
} Fix;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double rnd_normal(void) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
        u[i] = ((double)(rng_state >> 11) + 1.0) * 0x1.0p-53;
    }
    return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

static float *falloc(int64_t n) {
    float *p = calloc((size_t)n, sizeof(float));
    CHECK(p != NULL);
    return p;
}

static const float *src_tensor(const Safetensors *st, const char *name, int64_t numel) {
    const StTensor *t = safetensors_find(st, name);
    CHECKF(t && t->type == GGML_F32 && t->nbytes == (size_t)numel * 4, "source tensor %s", name);
    return t->data;
}

/* Row r of a NEOX head of width hd2 built from one of width hd: the first
 * halves of both keep their order, so pair i < hd/2 of the new head is pair i
 * of the old; rows past the old halves are new (-1). */
static int64_t head_row_map(int64_t r, int64_t hd, int64_t hd2) {
    int64_t half = hd / 2, half2 = hd2 / 2;
    if (r < half) return r;
    if (r >= half2 && r < half2 + half) return half + (r - half2);
    return -1;
}

/* stories260K (HF layout) widened to head_dim hd2: q/k/v heads keep the old
 * rows (q scaled by sqrt(hd2/hd) so scores keep their size) plus small random
 * rows, o gets the matching columns, and theta is raised to theta^(hd2/hd) so
 * the old pairs keep their frequencies. */
static void fix_from_stories(Fix *f, const Safetensors *st, int64_t hd2) {
    int64_t dim = 64, hid = 172, nh = 8, nkv = 4, hd = 8, V = 512;
    f->dim = dim, f->hidden = hid, f->n_heads = nh, f->n_kv = nkv, f->hd = hd2, f->vocab = V;
    f->theta = pow(10000.0, (double)hd2 / (double)hd);
    f->eps = 1e-5;
    f->embd = falloc(V * dim);
    memcpy(f->embd, src_tensor(st, "model.embed_tokens.weight", V * dim), (size_t)(V * dim) * 4);
    f->out_norm = falloc(dim);
    memcpy(f->out_norm, src_tensor(st, "model.norm.weight", dim), (size_t)dim * 4);
    char name[128];
    static const char *const pn[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                      "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    for (int l = 0; l < NL; l++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        f->attn_norm[l] = falloc(dim);
        memcpy(f->attn_norm[l], src_tensor(st, name, dim), (size_t)dim * 4);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        f->ffn_norm[l] = falloc(dim);
        memcpy(f->ffn_norm[l], src_tensor(st, name, dim), (size_t)dim * 4);
        for (int p = 0; p < 7; p++) {
            int64_t no = p == 0 ? nh * hd : p < 3 ? nkv * hd : p == 6 ? dim : p == 3 ? dim : hid;
            int64_t ni = p == 3 ? nh * hd : p == 6 ? hid : dim;
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, pn[p]);
            const float *w = src_tensor(st, name, no * ni);
            if (p >= 4) {
                f->w[l][p] = falloc(no * ni);
                memcpy(f->w[l][p], w, (size_t)(no * ni) * 4);
            } else if (p < 3) { /* q, k, v: widen each head's rows */
                int64_t heads = p == 0 ? nh : nkv;
                float *d = f->w[l][p] = falloc(heads * hd2 * dim);
                float gain = p == 0 ? (float)sqrt((double)hd2 / (double)hd) : 1.0f;
                for (int64_t h = 0; h < heads; h++)
                    for (int64_t r = 0; r < hd2; r++) {
                        int64_t o = head_row_map(r, hd, hd2);
                        float *row = d + (h * hd2 + r) * dim;
                        for (int64_t j = 0; j < dim; j++)
                            row[j] = o >= 0 ? gain * w[(h * hd + o) * dim + j] : (float)(0.05 * rnd_normal());
                    }
            } else { /* o: matching columns */
                float *d = f->w[l][p] = falloc(dim * nh * hd2);
                for (int64_t i = 0; i < dim; i++)
                    for (int64_t h = 0; h < nh; h++)
                        for (int64_t r = 0; r < hd2; r++) {
                            int64_t o = head_row_map(r, hd, hd2);
                            d[i * nh * hd2 + h * hd2 + r] =
                                o >= 0 ? w[i * nh * hd + h * hd + o] : (float)(0.05 * rnd_normal());
                        }
            }
        }
    }
}

static void fix_free(Fix *f) {
    free(f->embd);
    free(f->out_norm);
    for (int l = 0; l < NL; l++) {
        free(f->attn_norm[l]);
        free(f->ffn_norm[l]);
        for (int p = 0; p < 7; p++) free(f->w[l][p]);
        for (int p = 0; p < 3; p++) free(f->b[l][p]);
    }
}

static int64_t proj_rows(const Fix *f, int p) {
    int64_t q = f->n_heads * f->hd, kv = f->n_kv * f->hd;
    return p == 0 ? q : p < 3 ? kv : p == 3 || p == 6 ? f->dim : f->hidden;
}

static int64_t proj_cols(const Fix *f, int p) {
    return p == 3 ? f->n_heads * f->hd : p == 6 ? f->hidden : f->dim;
}

/* Llama 3.1 frequency factors (divisors of each pair's angle), as llama.cpp's
 * converter writes rope_freqs.weight: written out here on its own, not shared
 * with the loader's transformers-style computation. */
static void llama3_factors(const Fix *f, float *ff) {
    for (int64_t i = 0; i < f->hd / 2; i++) {
        double freq = 1.0 / pow(f->theta, (double)(2 * i) / (double)f->hd);
        double wavelen = 2.0 * M_PI / freq;
        double lw = f->orig / f->low, hw = f->orig / f->high;
        if (wavelen < hw) {
            ff[i] = 1.0f;
        } else if (wavelen > lw) {
            ff[i] = (float)f->factor;
        } else {
            double smooth = (f->orig / wavelen - f->low) / (f->high - f->low);
            ff[i] = (float)(1.0 / ((1.0 - smooth) / f->factor + smooth));
        }
    }
}

/* === GGUF writer ========================================================= */

typedef struct Bufs {
    void *p[256];
    int n;
} Bufs;

static float *keep(Bufs *b, float *p) {
    CHECK(b->n < 256);
    b->p[b->n++] = p;
    return p;
}

/* HF rotate_half rows -> llama.cpp's llama layout (adjacent pairs), the
 * permutation its converter applies: GGUF row h*hd + 2i + j = HF row
 * h*hd + j*hd/2 + i. */
static float *permute_rows(Bufs *b, const float *w, int64_t heads, int64_t hd, int64_t cols) {
    float *d = keep(b, falloc(heads * hd * cols));
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < hd / 2; i++)
            for (int j = 0; j < 2; j++)
                memcpy(d + (h * hd + 2 * i + j) * cols, w + (h * hd + j * hd / 2 + i) * cols, (size_t)cols * 4);
    return d;
}

static float *stack_rows(Bufs *b, const float *const *parts, const int64_t *rows, int n, int64_t cols) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += rows[i];
    float *d = keep(b, falloc(total * cols)), *o = d;
    for (int i = 0; i < n; i++) {
        memcpy(o, parts[i], (size_t)(rows[i] * cols) * 4);
        o += rows[i] * cols;
    }
    return d;
}

static void add_t(GgufWriter *w, const char *name, const float *data, int64_t rows, int64_t cols) {
    int64_t ne[2] = {cols, rows};
    CHECK(gguf_writer_add_tensor(w, name, GGML_F32, rows ? 2 : 1, ne, data) == ST_OK);
}

static void write_gguf(const Fix *f, const char *path, Mutation mut) {
    Err err;
    err_init(&err);
    Gguf *src = NULL;
    CHECK_OK(gguf_open(testlib_shared("models/stories260K/stories260K-f32.gguf"), &src, &err), err);
    GgufWriter *w = gguf_writer_new();
    CHECK(w != NULL);
    const char *a = f->arch == FX_QWEN2 ? "qwen2" : f->arch == FX_PHI3 ? "phi3" : "llama";
    char key[128];
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", a, s), key)
    CHECK(gguf_writer_add_str(w, "general.architecture", a) == ST_OK);
    /* Not the fixture's name: llama.cpp's vocab loader special-cases model
     * names containing "phi3" (expects <|endoftext|>, which stories lacks). */
    CHECK(gguf_writer_add_str(w, "general.name", "qscope test fixture") == ST_OK);
    CHECK(gguf_writer_add_u32(w, "general.alignment", 32) == ST_OK);
    CHECK(gguf_writer_add_u32(w, KEY("context_length"), 512) == ST_OK);
    CHECK(gguf_writer_add_u32(w, KEY("embedding_length"), (uint32_t)f->dim) == ST_OK);
    CHECK(gguf_writer_add_u32(w, KEY("block_count"), NL) == ST_OK);
    CHECK(gguf_writer_add_u32(w, KEY("feed_forward_length"), (uint32_t)f->hidden) == ST_OK);
    CHECK(gguf_writer_add_u32(w, KEY("attention.head_count"), (uint32_t)f->n_heads) == ST_OK);
    CHECK(gguf_writer_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)f->n_kv) == ST_OK);
    CHECK(gguf_writer_add_u32(w, KEY("rope.dimension_count"), (uint32_t)f->hd) == ST_OK);
    CHECK(gguf_writer_add_u32(w, KEY("attention.key_length"), (uint32_t)f->hd) == ST_OK);
    CHECK(gguf_writer_add_u32(w, KEY("attention.value_length"), (uint32_t)f->hd) == ST_OK);
    CHECK(gguf_writer_add_f32(w, KEY("rope.freq_base"), (float)f->theta) == ST_OK);
    CHECK(gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)f->eps) == ST_OK);
    if (f->rope == RS_LINEAR || mut == MUT_ROPE_YARN || mut == MUT_ROPE_UNKNOWN) {
        const char *ty = mut == MUT_ROPE_YARN ? "yarn" : mut == MUT_ROPE_UNKNOWN ? "wobble" : "linear";
        CHECK(gguf_writer_add_str(w, KEY("rope.scaling.type"), ty) == ST_OK);
        CHECK(gguf_writer_add_f32(w, KEY("rope.scaling.factor"), (float)f->factor) == ST_OK);
    }
#undef KEY
    for (int64_t i = 0; i < src->n_kv; i++) {
        const GgufKV *kv = &src->kv[i];
        if (kv->key.len < 10 || memcmp(kv->key.s, "tokenizer.", 10) != 0) continue;
        char k[128];
        snprintf(k, sizeof k, "%.*s", (int)kv->key.len, kv->key.s);
        CHECK(gguf_writer_add_value(w, k, &kv->value) == ST_OK);
    }
    Bufs b = {0};
    static float ffs[64];
    if (f->rope == RS_LLAMA3) {
        llama3_factors(f, ffs);
        add_t(w, "rope_freqs.weight", ffs, 0, f->hd / 2 - (mut == MUT_ROPE_FREQS));
    }
    if (mut == MUT_ROPE_LONG) add_t(w, "rope_factors_long.weight", ffs, 0, f->hd / 2);
    add_t(w, "token_embd.weight", f->embd, f->vocab, f->dim);
    int neox = f->arch == FX_QWEN2 || f->arch == FX_PHI3;
    char name[96];
    for (int l = 0; l < NL; l++) {
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        add_t(w, name, f->attn_norm[l], 0, f->dim);
        const float *qkv[3];
        for (int p = 0; p < 3; p++)
            qkv[p] = neox || p == 2 ? f->w[l][p]
                                    : permute_rows(&b, f->w[l][p], p == 0 ? f->n_heads : f->n_kv, f->hd, f->dim);
        if (f->arch == FX_PHI3) {
            int64_t rows[3] = {proj_rows(f, 0), proj_rows(f, 1), proj_rows(f, 2) - (mut == MUT_FUSED_HEIGHT)};
            snprintf(name, sizeof name, "blk.%d.attn_qkv.weight", l);
            add_t(w, name, stack_rows(&b, qkv, rows, 3, f->dim), rows[0] + rows[1] + rows[2], f->dim);
        } else {
            static const char *const qn[3] = {"attn_q", "attn_k", "attn_v"};
            for (int p = 0; p < 3; p++) {
                snprintf(name, sizeof name, "blk.%d.%s.weight", l, qn[p]);
                add_t(w, name, qkv[p], proj_rows(f, p), f->dim);
                if (f->b[l][p] && !(mut == MUT_NO_BIAS && p == 0)) {
                    snprintf(name, sizeof name, "blk.%d.%s.bias", l, qn[p]);
                    add_t(w, name, f->b[l][p], 0, proj_rows(f, p) - (mut == MUT_BIAS_LEN && p == 0));
                }
            }
        }
        snprintf(name, sizeof name, "blk.%d.attn_output.weight", l);
        add_t(w, name, f->w[l][3], f->dim, proj_cols(f, 3));
        if (mut == MUT_O_BIAS) {
            snprintf(name, sizeof name, "blk.%d.attn_output.bias", l);
            add_t(w, name, f->out_norm, 0, f->dim);
        }
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        add_t(w, name, f->ffn_norm[l], 0, f->dim);
        if (f->arch == FX_PHI3) {
            const float *gu[2] = {f->w[l][4], f->w[l][5]};
            int64_t rows[2] = {f->hidden, f->hidden - (mut == MUT_FUSED_GU)};
            snprintf(name, sizeof name, "blk.%d.ffn_up.weight", l);
            add_t(w, name, stack_rows(&b, gu, rows, 2, f->dim), rows[0] + rows[1], f->dim);
        } else {
            snprintf(name, sizeof name, "blk.%d.ffn_gate.weight", l);
            add_t(w, name, f->w[l][4], f->hidden, f->dim);
            snprintf(name, sizeof name, "blk.%d.ffn_up.weight", l);
            add_t(w, name, f->w[l][5], f->hidden, f->dim);
        }
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
        add_t(w, name, f->w[l][6], f->dim, f->hidden);
    }
    add_t(w, "output_norm.weight", f->out_norm, 0, f->dim);
    CHECK_OK(gguf_writer_write(w, path, &err), err);
    gguf_writer_free(w);
    gguf_free(src);
    for (int i = 0; i < b.n; i++) free(b.p[i]);
}

/* === Hugging Face writer (safetensors + config.json) ===================== */

typedef struct StEntry {
    char name[96];
    int64_t rows, cols;      /* rows 0: a vector of cols */
    const float *data;
} StEntry;

static void write_file(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    CHECK(fwrite(data, 1, n, fp) == n);
    CHECK(fclose(fp) == 0);
}

static void write_safetensors(const char *path, const StEntry *e, int n) {
    size_t cap = 1 << 16, len = 0, off = 0;
    char *h = malloc(cap);
    CHECK(h != NULL);
    len += (size_t)snprintf(h + len, cap - len, "{");
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)((e[i].rows ? e[i].rows : 1) * e[i].cols) * 4;
        char shape[64];
        if (e[i].rows) snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)e[i].rows, (long long)e[i].cols);
        else snprintf(shape, sizeof shape, "[%lld]", (long long)e[i].cols);
        len += (size_t)snprintf(h + len, cap - len, "%s\"%s\": {\"dtype\": \"F32\", \"shape\": %s, \"data_offsets\": [%zu, %zu]}",
                                i ? ", " : "", e[i].name, shape, off, off + bytes);
        CHECK(len < cap - 64);
        off += bytes;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    unsigned char *buf = malloc(8 + len + off);
    CHECK(buf != NULL);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)len >> (8 * i));
    memcpy(buf + 8, h, len);
    size_t o = 8 + len;
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)((e[i].rows ? e[i].rows : 1) * e[i].cols) * 4;
        memcpy(buf + o, e[i].data, bytes);
        o += bytes;
    }
    write_file(path, buf, o);
    free(buf);
    free(h);
}

static void write_hf(const Fix *f, const char *dir, Mutation mut) {
    mkdir(dir, 0755);
    char path[512], cfg[2048], rs[512] = "null", extra[256] = "";
    static const char *const archs[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                        "Phi3ForCausalLM"};
    if (f->rope == RS_LINEAR)
        snprintf(rs, sizeof rs, "{\"rope_type\": \"linear\", \"factor\": %.17g}", f->factor);
    else if (f->rope == RS_LLAMA3)
        snprintf(rs, sizeof rs,
                 "{\"rope_type\": \"llama3\", \"factor\": %.17g, \"low_freq_factor\": %.17g, \"high_freq_factor\": "
                 "%.17g, \"original_max_position_embeddings\": %.17g}",
                 f->factor, f->low, f->high, f->orig);
    if (mut == MUT_ROPE_YARN) snprintf(rs, sizeof rs, "{\"rope_type\": \"yarn\", \"factor\": 4.0}");
    if (mut == MUT_ROPE_UNKNOWN) snprintf(rs, sizeof rs, "{\"rope_type\": \"wobble\", \"factor\": 4.0}");
    if (mut == MUT_ROPE_LONG)
        snprintf(rs, sizeof rs, "{\"type\": \"longrope\", \"long_factor\": [1.0], \"short_factor\": [1.0]}");
    char theta[600];
    snprintf(theta, sizeof theta, "\"rope_theta\": %.17g, \"rope_scaling\": %s", f->theta, rs);
    if (mut == MUT_ROPE_PARAMS) { /* rs is "{...}": splice rope_theta into it */
        CHECK(rs[0] == '{');
        snprintf(theta, sizeof theta, "\"rope_parameters\": {\"rope_theta\": %.17g, %s", f->theta, rs + 1);
    }
    if (f->window) snprintf(extra, sizeof extra, "\"sliding_window\": %lld, ", (long long)f->window);
    if (mut == MUT_QWEN_SWA) snprintf(extra, sizeof extra, "\"sliding_window\": 16, \"use_sliding_window\": true, ");
    snprintf(cfg, sizeof cfg,
             "{\"architectures\": [\"%s\"], \"hidden_size\": %lld, \"intermediate_size\": %lld, "
             "\"num_hidden_layers\": %d, \"num_attention_heads\": %lld, \"num_key_value_heads\": %lld, "
             "\"head_dim\": %lld, \"vocab_size\": %lld, \"max_position_embeddings\": 512, \"rms_norm_eps\": %.17g, "
             "%s, %s\"hidden_act\": \"silu\", \"tie_word_embeddings\": true}\n",
             archs[f->arch], (long long)f->dim, (long long)f->hidden, NL, (long long)f->n_heads, (long long)f->n_kv,
             (long long)f->hd, (long long)f->vocab, f->eps, theta, extra);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, cfg, strlen(cfg));
    static const char *const toks[] = {"tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 2; i++) {
        char *text = NULL;
        size_t len = 0;
        Err err;
        err_init(&err);
        snprintf(path, sizeof path, "models/stories260K-hf/%s", toks[i]);
        CHECK_OK(file_read_all(testlib_shared(path), 1 << 20, &text, &len, &err), err);
        snprintf(path, sizeof path, "%s/%s", dir, toks[i]);
        write_file(path, text, len);
        free(text);
    }

    StEntry e[160];
    int n = 0;
    Bufs b = {0};
    e[n++] = (StEntry){"model.embed_tokens.weight", f->vocab, f->dim, f->embd};
    static const char *const pn[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                      "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    for (int l = 0; l < NL; l++) {
        StEntry *x = &e[n++];
        snprintf(x->name, sizeof x->name, "model.layers.%d.input_layernorm.weight", l);
        x->rows = 0, x->cols = f->dim, x->data = f->attn_norm[l];
        x = &e[n++];
        snprintf(x->name, sizeof x->name, "model.layers.%d.post_attention_layernorm.weight", l);
        x->rows = 0, x->cols = f->dim, x->data = f->ffn_norm[l];
        for (int p = 0; p < 7; p++) {
            if (f->arch == FX_PHI3 && (p == 0 || p == 4)) { /* fused */
                x = &e[n++];
                if (p == 0) {
                    const float *parts[3] = {f->w[l][0], f->w[l][1], f->w[l][2]};
                    int64_t rows[3] = {proj_rows(f, 0), proj_rows(f, 1), proj_rows(f, 2) - (mut == MUT_FUSED_HEIGHT)};
                    snprintf(x->name, sizeof x->name, "model.layers.%d.self_attn.qkv_proj.weight", l);
                    x->rows = rows[0] + rows[1] + rows[2], x->cols = f->dim;
                    x->data = stack_rows(&b, parts, rows, 3, f->dim);
                } else {
                    const float *parts[2] = {f->w[l][4], f->w[l][5]};
                    int64_t rows[2] = {f->hidden, f->hidden - (mut == MUT_FUSED_GU)};
                    snprintf(x->name, sizeof x->name, "model.layers.%d.mlp.gate_up_proj.weight", l);
                    x->rows = rows[0] + rows[1], x->cols = f->dim;
                    x->data = stack_rows(&b, parts, rows, 2, f->dim);
                }
                continue;
            }
            if (f->arch == FX_PHI3 && (p == 1 || p == 2 || p == 5)) continue;
            x = &e[n++];
            snprintf(x->name, sizeof x->name, "model.layers.%d.%s.weight", l, pn[p]);
            x->rows = proj_rows(f, p), x->cols = proj_cols(f, p), x->data = f->w[l][p];
            if (p < 3 && f->b[l][p] && !(mut == MUT_NO_BIAS && p == 0)) {
                x = &e[n++];
                snprintf(x->name, sizeof x->name, "model.layers.%d.%s.bias", l, pn[p]);
                x->rows = 0, x->cols = proj_rows(f, p) - (mut == MUT_BIAS_LEN && p == 0), x->data = f->b[l][p];
            }
            if (p == 3 && mut == MUT_O_BIAS) {
                x = &e[n++];
                snprintf(x->name, sizeof x->name, "model.layers.%d.self_attn.o_proj.bias", l);
                x->rows = 0, x->cols = f->dim, x->data = f->out_norm;
            }
        }
    }
    e[n++] = (StEntry){"model.norm.weight", 0, f->dim, f->out_norm};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_safetensors(path, e, n);
    for (int i = 0; i < b.n; i++) free(b.p[i]);
}

/* === independent float64 reference ====================================== */

/* -log p summed over the scored positions of one chunk (llama.cpp's protocol:
 * positions [n/2, n-2] predict the next token), computed in double straight
 * from the fixture's HF-layout weights: rotate_half RoPE with the frequencies
 * transformers computes (llama3 / linear scaling), biases, the sliding window. */
static double ref_chunk_nll(const Fix *f, const int32_t *tok, int64_t n, int64_t *count) {
    int64_t dim = f->dim, hd = f->hd, half = hd / 2, nh = f->n_heads, nkv = f->n_kv, hid = f->hidden, V = f->vocab;
    int64_t qd = nh * hd, kvd = nkv * hd;
    double *x = calloc((size_t)(n * dim), sizeof *x), *xn = calloc((size_t)dim, sizeof *xn);
    double *q = calloc((size_t)(n * qd), sizeof *q), *k = calloc((size_t)(n * kvd), sizeof *k);
    double *v = calloc((size_t)(n * kvd), sizeof *v), *att = calloc((size_t)qd, sizeof *att);
    double *sc = calloc((size_t)n, sizeof *sc), *g = calloc((size_t)(2 * hid), sizeof *g);
    double *inv = calloc((size_t)half, sizeof *inv);
    CHECK(x && xn && q && k && v && att && sc && g && inv);
    for (int64_t i = 0; i < half; i++) {
        double fr = 1.0 / pow(f->theta, (double)(2 * i) / (double)hd);
        if (f->rope == RS_LINEAR) fr /= f->factor;
        if (f->rope == RS_LLAMA3) { /* transformers' _compute_llama3_parameters */
            double wl = 2.0 * M_PI / fr, lw = f->orig / f->low, hw = f->orig / f->high;
            if (wl > lw) {
                fr = fr / f->factor;
            } else if (wl >= hw) {
                double s = (f->orig / wl - f->low) / (f->high - f->low);
                fr = (1.0 - s) * fr / f->factor + s * fr;
            }
        }
        inv[i] = fr;
    }
    for (int64_t t = 0; t < n; t++)
        for (int64_t j = 0; j < dim; j++) x[t * dim + j] = f->embd[tok[t] * dim + j];
    for (int l = 0; l < NL; l++) {
        for (int64_t t = 0; t < n; t++) {
            double ss = 0;
            for (int64_t j = 0; j < dim; j++) ss += x[t * dim + j] * x[t * dim + j];
            double r = 1.0 / sqrt(ss / (double)dim + f->eps);
            for (int64_t j = 0; j < dim; j++) xn[j] = x[t * dim + j] * r * f->attn_norm[l][j];
            double *outs[3] = {q + t * qd, k + t * kvd, v + t * kvd};
            for (int p = 0; p < 3; p++)
                for (int64_t o = 0; o < proj_rows(f, p); o++) {
                    double acc = f->b[l][p] ? f->b[l][p][o] : 0.0;
                    for (int64_t j = 0; j < dim; j++) acc += (double)f->w[l][p][o * dim + j] * xn[j];
                    outs[p][o] = acc;
                }
            for (int p = 0; p < 2; p++)
                for (int64_t h = 0; h < (p ? nkv : nh); h++) {
                    double *hv = outs[p] + h * hd;
                    for (int64_t i = 0; i < half; i++) {
                        double a = (double)t * inv[i], c = cos(a), s = sin(a), x0 = hv[i], x1 = hv[i + half];
                        hv[i] = x0 * c - x1 * s;
                        hv[i + half] = x0 * s + x1 * c;
                    }
                }
        }
        for (int64_t t = 0; t < n; t++) {
            int64_t lo = f->window > 0 && t + 1 > f->window ? t + 1 - f->window : 0;
            for (int64_t h = 0; h < nh; h++) {
                int64_t kh = h / (nh / nkv);
                double mx = -INFINITY, sum = 0;
                for (int64_t s = lo; s <= t; s++) {
                    double d = 0;
                    for (int64_t i = 0; i < hd; i++) d += q[t * qd + h * hd + i] * k[s * kvd + kh * hd + i];
                    sc[s] = d / sqrt((double)hd);
                    if (sc[s] > mx) mx = sc[s];
                }
                for (int64_t s = lo; s <= t; s++) sum += (sc[s] = exp(sc[s] - mx));
                for (int64_t i = 0; i < hd; i++) {
                    double acc = 0;
                    for (int64_t s = lo; s <= t; s++) acc += sc[s] * v[s * kvd + kh * hd + i];
                    att[h * hd + i] = acc / sum;
                }
            }
            for (int64_t o = 0; o < dim; o++) {
                double acc = 0;
                for (int64_t j = 0; j < qd; j++) acc += (double)f->w[l][3][o * qd + j] * att[j];
                x[t * dim + o] += acc;
            }
        }
        for (int64_t t = 0; t < n; t++) {
            double ss = 0;
            for (int64_t j = 0; j < dim; j++) ss += x[t * dim + j] * x[t * dim + j];
            double r = 1.0 / sqrt(ss / (double)dim + f->eps);
            for (int64_t j = 0; j < dim; j++) xn[j] = x[t * dim + j] * r * f->ffn_norm[l][j];
            for (int p = 0; p < 2; p++)
                for (int64_t o = 0; o < hid; o++) {
                    double acc = 0;
                    for (int64_t j = 0; j < dim; j++) acc += (double)f->w[l][4 + p][o * dim + j] * xn[j];
                    g[p * hid + o] = acc;
                }
            for (int64_t o = 0; o < hid; o++) g[o] = g[o] / (1.0 + exp(-g[o])) * g[hid + o];
            for (int64_t o = 0; o < dim; o++) {
                double acc = 0;
                for (int64_t j = 0; j < hid; j++) acc += (double)f->w[l][6][o * hid + j] * g[j];
                x[t * dim + o] += acc;
            }
        }
    }
    double nll = 0;
    double *lg = calloc((size_t)V, sizeof *lg);
    CHECK(lg != NULL);
    for (int64_t t = n / 2; t <= n - 2; t++) {
        double ss = 0;
        for (int64_t j = 0; j < dim; j++) ss += x[t * dim + j] * x[t * dim + j];
        double r = 1.0 / sqrt(ss / (double)dim + f->eps);
        for (int64_t j = 0; j < dim; j++) xn[j] = x[t * dim + j] * r * f->out_norm[j];
        double mx = -INFINITY, sum = 0;
        for (int64_t o = 0; o < V; o++) {
            double acc = 0;
            for (int64_t j = 0; j < dim; j++) acc += (double)f->embd[o * dim + j] * xn[j];
            lg[o] = acc;
            if (acc > mx) mx = acc;
        }
        for (int64_t o = 0; o < V; o++) sum += exp(lg[o] - mx);
        nll -= lg[tok[t + 1]] - mx - log(sum);
        (*count)++;
    }
    free(lg), free(x), free(xn), free(q), free(k), free(v), free(att), free(sc), free(g), free(inv);
    return nll;
}

/* PPL of the reference over the first n_chunks chunks of ids (llama.cpp's
 * protocol: BOS at the start of every chunk). */
static double ref_ppl(const Fix *f, const int32_t *ids, int64_t n_ids, int64_t n_ctx, int64_t n_chunks, int32_t bos) {
    double nll = 0;
    int64_t count = 0;
    int32_t *c = malloc((size_t)n_ctx * sizeof *c);
    CHECK(c != NULL);
    for (int64_t ch = 0; ch < n_chunks; ch++) {
        CHECK((ch + 1) * n_ctx <= n_ids);
        memcpy(c, ids + ch * n_ctx, (size_t)n_ctx * sizeof *c);
        c[0] = bos;
        nll += ref_chunk_nll(f, c, n_ctx, &count);
    }
    free(c);
    return exp(nll / (double)count);
}

/* === running the forms =================================================== */

static char *text;
static size_t text_len;

typedef struct Run {
    double ppl;
    int32_t *ids;
    int64_t n_ids;
    int32_t bos;
    char arch[32];
} Run;

static Run qscope_ppl_batch(const char *path, int64_t n_ctx, int64_t max_chunks, int64_t batch) {
    Err err;
    err_init(&err);
    Model *m = NULL;
    CHECK_OK(model_load(path, NULL, &m, &err), err);
    CHECK(m->tok != NULL);
    Run r = {0};
    snprintf(r.arch, sizeof r.arch, "%s", m->cfg.arch);
    CHECK_OK(tokenizer_encode(m->tok, text, text_len, 1, &r.ids, &r.n_ids, &err), err);
    r.bos = tokenizer_bos(m->tok);
    PplOpts o = {.n_ctx = n_ctx, .max_chunks = max_chunks, .batch = batch};
    PplResult res;
    memset(&res, 0, sizeof res);
    CHECK_OK(ppl_run(m, NULL, r.ids, r.n_ids, &o, NULL, NULL, NULL, &res, &err), err);
    r.ppl = res.ppl;
    ppl_result_done(&res);
    model_free(m);
    return r;
}

static Run qscope_ppl(const char *path, int64_t n_ctx, int64_t max_chunks) {
    return qscope_ppl_batch(path, n_ctx, max_chunks, 0);
}

/* llama.cpp's perplexity of a GGUF on the TinyStories sample; NAN when its
 * tools are not built. */
static double llamacpp_ppl(const char *gguf, int64_t n_ctx, int64_t chunks) {
    return testlib_llama_ppl(gguf, testlib_shared("text/tinystories_sample.txt"), n_ctx, chunks,
                             "the llama.cpp perplexity comparison");
}

/* Writes both forms of f, checks they agree with each other, with the float64
 * reference and with llama.cpp. ctx_ll: the context at which the GGUF (and
 * llama.cpp) is compared (for the sliding-window fixture, within the window). */
static void check_fixture(const Fix *f, const char *want_arch, int64_t n_ctx, int64_t chunks) {
    char g[256], h[256];
    snprintf(g, sizeof g, "%s/%s.gguf", tmpdir, f->name);
    snprintf(h, sizeof h, "%s/%s-hf", tmpdir, f->name);
    write_gguf(f, g, MUT_NONE);
    write_hf(f, h, MUT_NONE);
    Run rg = qscope_ppl(g, n_ctx, chunks), rh = qscope_ppl(h, n_ctx, chunks);
    CHECK(strcmp(rg.arch, want_arch) == 0 && strcmp(rh.arch, want_arch) == 0);
    CHECK(rg.n_ids == rh.n_ids && memcmp(rg.ids, rh.ids, (size_t)rg.n_ids * sizeof *rg.ids) == 0);
    double ref = ref_ppl(f, rh.ids, rh.n_ids, n_ctx, chunks, rh.bos);
    double ll = llamacpp_ppl(g, n_ctx, chunks);
    printf("%-8s ctx %3lld x %lld chunks: GGUF %.5f  HF %.5f  float64 ref %.5f  llama.cpp %.4f\n", f->name,
           (long long)n_ctx, (long long)chunks, rg.ppl, rh.ppl, ref, ll);
    CHECK_NEAR(rg.ppl, rh.ppl, 0.002);
    CHECK_NEAR(rh.ppl, ref, 2e-5 * ref);
    CHECK_NEAR(rg.ppl, ref, 2e-5 * ref);
    if (!isnan(ll)) CHECK_NEAR(rg.ppl, ll, 0.002);
    free(rg.ids);
    free(rh.ids);
}

/* Qwen2's biases under a plan: q/k/v run as fp16 QLinears (the overlay path)
 * and their float biases are still added after them, so the PPL stays
 * within fp16 noise of the float model's, while the same model without
 * biases is far away. */
static void check_bias_under_plan(const Fix *f) {
    char h[256];
    snprintf(h, sizeof h, "%s/%s-hf", tmpdir, f->name);
    Err err;
    err_init(&err);
    Model *m = NULL;
    CHECK_OK(model_load(h, NULL, &m, &err), err);
    CHECK(m->layers[0].bias[PROJ_Q] && m->layers[4].bias[PROJ_V] && !m->layers[0].bias[PROJ_O]);
    EvalOpts o;
    eval_opts_default(&o);
    o.n_ctx = 128, o.max_chunks = 8, o.speed = 0, o.layer_err = 0;
    EvalRef *ref = NULL;
    CHECK_OK(eval_ref_new(m, text, text_len, &o, NULL, NULL, &ref, &err), err);
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    PresetOpts po;
    preset_opts_default(&po);
    Plan p;
    CHECK_OK(plan_preset(&p, "fp16", &po, &pm, &err), err);
    QModel *qm = NULL;
    CHECK_OK(qmodel_build(m, &p, NULL, NULL, NULL, &qm, &err), err);
    CHECK(qm->lin[PROJ_Q] != NULL && qm->lin[4 * PROJ_COUNT + PROJ_V] != NULL);
    EvalResult res;
    memset(&res, 0, sizeof res);
    CHECK_OK(eval_run(qm, ref, &o, NULL, NULL, NULL, NULL, &res, &err), err);
    Fix nob = *f;
    for (int l = 0; l < NL; l++)
        for (int b = 0; b < 3; b++) nob.b[l][b] = NULL;
    int32_t *ids = NULL;
    int64_t n = 0;
    CHECK_OK(tokenizer_encode(m->tok, text, text_len, 1, &ids, &n, &err), err);
    double no_bias = ref_ppl(&nob, ids, n, 128, 8, tokenizer_bos(m->tok));
    printf("%-8s fp16 plan: PPL %.5f (float %.5f; without the biases %.5f)\n", f->name, res.ppl, res.ppl_base,
           no_bias);
    CHECK_NEAR(res.ppl, res.ppl_base, 0.002 * res.ppl_base);
    CHECK(fabs(no_bias - res.ppl_base) > 0.05 * res.ppl_base);
    free(ids);
    eval_result_done(&res);
    qmodel_free(qm);
    plan_done(&p);
    eval_ref_free(ref);
    model_free(m);
}

/* qscope synth --arch: each layout loads with the weight rows the synth
 * generated (phi3's stacked tensors split back into q/k/v and gate/up), the
 * biases and frequency factors in place, and the same perplexity as
 * llama.cpp on the file (random weights: PPL ~ vocab). */
static void check_synth_arch(SynthArch a, const char *name, int64_t head_dim) {
    Err err;
    err_init(&err);
    SynthConfig cfg;
    CHECK_OK(synth_preset("tiny", &cfg, &err), err);
    CHECK_OK(synth_parse_arch(name, &cfg, &err), err);
    CHECK(cfg.arch == a);
    cfg.head_dim = head_dim;
    Synth *sy = NULL;
    CHECK_OK(synth_new(&cfg, &sy, &err), err);
    char path[256];
    snprintf(path, sizeof path, "%s/synth-%s-%lld.gguf", tmpdir, name, (long long)head_dim);
    CHECK_OK(synth_write(sy, path, NULL, &err), err);
    Model *m = NULL;
    CHECK_OK(model_load(path, NULL, &m, &err), err);
    int64_t hd = head_dim ? head_dim : 8;
    CHECK(m->cfg.head_dim == hd && m->cfg.rope_style == (a == SYNTH_QWEN2 || a == SYNTH_PHI3 ? ROPE_NEOX : ROPE_NORM));
    CHECK((m->rope_freqs != NULL) == (a == SYNTH_LLAMA3) && (m->layers[0].bias[PROJ_Q] != NULL) == (a == SYNTH_QWEN2));
    float *want = falloc(172 * 64), *got = falloc(172 * 64);
    for (int64_t i = 0; i < synth_n_tensors(sy); i++) {
        const char *tn = synth_tensor_name(sy, i);
        int l = -1, p = -1;
        char part[32];
        if (sscanf(tn, "blk.%d.%31[a-z_].weight", &l, part) != 2) continue;
        p = proj_parse(part);
        if (p < 0) continue;
        int64_t ne0, ne1;
        synth_tensor_f32(sy, i, want, &ne0, &ne1);
        const Weight *w = &m->layers[l].proj[p];
        CHECK(w->n_out == ne1 && w->n_in == ne0);
        weight_rows_f32(w, 0, ne1, got);
        CHECKF(memcmp(want, got, (size_t)(ne0 * ne1) * sizeof(float)) == 0, "%s: %s differs", path, tn);
    }
    free(want);
    free(got);
    model_free(m);
    synth_free(sy);
    Run r = qscope_ppl(path, 64, 4);
    double ll = llamacpp_ppl(path, 64, 4);
    printf("synth --arch %-6s head_dim %2lld: qscope %.4f  llama.cpp %.4f\n", name, (long long)hd, r.ppl, ll);
    if (!isnan(ll)) CHECK_NEAR(r.ppl, ll, 2e-5 * ll);
    free(r.ids);
}

/* A malformed variant must fail with an error containing want. */
static void expect_fail(const Fix *f, Mutation mut, int hf, const char *want) {
    char p[256];
    snprintf(p, sizeof p, "%s/bad-%s-%d%s", tmpdir, f->name, (int)mut, hf ? "-hf" : ".gguf");
    if (hf) write_hf(f, p, mut);
    else write_gguf(f, p, mut);
    Err err;
    err_init(&err);
    Model *m = NULL;
    Status st = model_load(p, NULL, &m, &err);
    CHECKF(st != ST_OK, "%s loaded but should fail with '%s'", p, want);
    CHECKF(strstr(err.detail, want) != NULL, "%s: error '%s' lacks '%s'", p, err.detail, want);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/qs_test_arch_XXXXXX", base && base[0] ? base : "/tmp");
    CHECK(mkdtemp(tmpdir) != NULL);
    Err err;
    err_init(&err);
    CHECK_OK(file_read_all(testlib_shared("text/tinystories_sample.txt"), 1 << 20, &text, &text_len, &err), err);
    Safetensors *st = NULL;
    CHECK_OK(safetensors_open(testlib_shared("models/stories260K-hf/model.safetensors"), &st, &err), err);

    /* Llama 3.1 RoPE with head_dim 16 (q is (128, 64), o (64, 128)). theta
     * becomes 1e8, so pair i's wavelength is 2*pi*10^i: with original 2048,
     * low 1, high 4, pairs 0-1 keep their frequency, pair 2 is smoothed and
     * pairs 3-7 are divided by 8 — every branch of the formula is used. */
    Fix l3 = {.name = "llama3", .arch = FX_LLAMA, .rope = RS_LLAMA3, .factor = 8, .low = 1, .high = 4, .orig = 2048};
    fix_from_stories(&l3, st, 16);
    check_fixture(&l3, "llama", 128, 8);
    {   /* the same in transformers 5's spelling: rope_parameters holds rope_theta and the scaling */
        char h[256], h5[256];
        snprintf(h, sizeof h, "%s/llama3-hf", tmpdir);
        snprintf(h5, sizeof h5, "%s/llama3-hf5", tmpdir);
        write_hf(&l3, h5, MUT_ROPE_PARAMS);
        Run a = qscope_ppl(h, 128, 8), b = qscope_ppl(h5, 128, 8);
        CHECK(a.ppl == b.ppl);
        free(a.ids);
        free(b.ids);
    }

    Fix lin = {.name = "linear", .arch = FX_LLAMA, .rope = RS_LINEAR, .factor = 2};
    fix_from_stories(&lin, st, 8);
    check_fixture(&lin, "llama", 128, 8);

    Fix qw = {.name = "qwen2", .arch = FX_QWEN2};
    fix_from_stories(&qw, st, 8);
    for (int l = 0; l < NL; l++)
        for (int p = 0; p < 3; p++) {
            qw.b[l][p] = falloc(proj_rows(&qw, p));
            for (int64_t i = 0; i < proj_rows(&qw, p); i++) qw.b[l][p][i] = (float)(0.3 * rnd_normal());
        }
    check_fixture(&qw, "qwen2", 128, 8);
    check_bias_under_plan(&qw);

    Fix phi = {.name = "phi3", .arch = FX_PHI3};
    fix_from_stories(&phi, st, 8);
    check_fixture(&phi, "phi3", 128, 8);

    /* Mistral's sliding window: within the window (ctx 32 <= 32) the HF form
     * equals the full-attention GGUF and llama.cpp; past it (ctx 128) the HF
     * form follows the float64 reference with the window, and differs
     * clearly from full attention. */
    Fix mi = {.name = "mistral", .arch = FX_MISTRAL, .window = 32};
    fix_from_stories(&mi, st, 8);
    check_fixture(&mi, "llama", 32, 24);
    {
        char g[256], h[256];
        snprintf(g, sizeof g, "%s/mistral.gguf", tmpdir);
        snprintf(h, sizeof h, "%s/mistral-hf", tmpdir);
        Run rg = qscope_ppl(g, 128, 8), rh = qscope_ppl(h, 128, 8);
        double ref = ref_ppl(&mi, rh.ids, rh.n_ids, 128, 8, rh.bos);
        Fix full = mi;
        full.window = 0;
        double ref_full = ref_ppl(&full, rh.ids, rh.n_ids, 128, 8, rh.bos);
        printf("mistral  ctx 128, window 32: HF %.5f  float64 ref %.5f;  full attention: GGUF %.5f  ref %.5f\n",
               rh.ppl, ref, rg.ppl, ref_full);
        CHECK_NEAR(rh.ppl, ref, 2e-5 * ref);
        CHECK_NEAR(rg.ppl, ref_full, 2e-5 * ref_full);
        CHECK(fabs(rh.ppl - rg.ppl) > 0.05);
        /* Batches of 24 tokens: the window reaches back into earlier batches' cache. */
        Run rb = qscope_ppl_batch(h, 128, 8, 24);
        CHECK_NEAR(rb.ppl, rh.ppl, 1e-5 * rh.ppl);
        free(rb.ids);
        free(rg.ids);
        free(rh.ids);
    }

    check_synth_arch(SYNTH_LLAMA, "llama", 0);
    check_synth_arch(SYNTH_LLAMA3, "llama3", 0);
    check_synth_arch(SYNTH_LLAMA3, "llama3", 16);
    check_synth_arch(SYNTH_QWEN2, "qwen2", 0);
    check_synth_arch(SYNTH_PHI3, "phi3", 0);

    /* Malformed and refused variants. */
    expect_fail(&qw, MUT_BIAS_LEN, 0, "bias 'blk.0.attn_q.bias' has shape [63], expected [64]");
    expect_fail(&qw, MUT_BIAS_LEN, 1, "bias 'model.layers.0.self_attn.q_proj.bias' has shape [63], expected [64]");
    expect_fail(&qw, MUT_NO_BIAS, 1, "missing tensor 'model.layers.0.self_attn.q_proj.bias'");
    expect_fail(&qw, MUT_QWEN_SWA, 1, "use_sliding_window is true");
    expect_fail(&qw, MUT_O_BIAS, 0, "has tensor 'blk.0.attn_output.bias': only q/k/v biases are supported");
    expect_fail(&qw, MUT_O_BIAS, 1,
                "has tensor 'model.layers.0.self_attn.o_proj.bias': only q/k/v biases are supported");
    expect_fail(&phi, MUT_FUSED_HEIGHT, 0, "fused tensor 'blk.0.attn_qkv.weight' has shape [64, 127]");
    expect_fail(&phi, MUT_FUSED_HEIGHT, 1,
                "fused tensor 'model.layers.0.self_attn.qkv_proj.weight' has shape [127, 64]; the config implies 128");
    expect_fail(&phi, MUT_FUSED_GU, 0, "fused tensor 'blk.0.ffn_up.weight' has shape [64, 343]");
    expect_fail(&phi, MUT_FUSED_GU, 1, "fused tensor 'model.layers.0.mlp.gate_up_proj.weight' has shape [343, 64]");
    expect_fail(&phi, MUT_ROPE_LONG, 0, "has rope_factors_long.weight: LongRoPE");
    expect_fail(&phi, MUT_ROPE_LONG, 1, "rope_scaling type 'longrope' is not supported");
    expect_fail(&l3, MUT_ROPE_FREQS, 0, "tensor 'rope_freqs.weight' must hold head_dim/2 = 8 F32 frequency factors");
    expect_fail(&lin, MUT_ROPE_YARN, 0, "llama.rope.scaling.type = 'yarn': this RoPE scaling is not supported");
    expect_fail(&lin, MUT_ROPE_YARN, 1, "rope_scaling type 'yarn' is not supported");
    expect_fail(&lin, MUT_ROPE_UNKNOWN, 0, "llama.rope.scaling.type = 'wobble': unknown RoPE scaling type");
    expect_fail(&lin, MUT_ROPE_UNKNOWN, 1, "rope_scaling type 'wobble' is unknown");

    fix_free(&l3), fix_free(&lin), fix_free(&qw), fix_free(&phi), fix_free(&mi);
    safetensors_free(st);
    free(text);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (!getenv("QS_KEEP")) CHECK(system(cmd) == 0); /* QS_KEEP=1 keeps the fixtures for a look */
    return testlib_done("test_arch");
}
