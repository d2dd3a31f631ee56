/* Model loading: stories260K in all four forms (llama2.c, GGUF F32, HF F32,
 * HF BF16 sharded) gives one config and the same weights (q/k rows of the HF
 * copies permuted per head for rotate_half RoPE), the quantized GGUFs
 * dequantize close to F32, and malformed inputs generated here fail with an
 * error naming the file and the problem. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fpconv.h"
#include "core/mapfile.h"
#include "core/status.h"
#include "kernels/cpu.h"
#include "model/gguf_write.h"
#include "model/model.h"
#include "model/synth.h"
#include "model/tokenizer.h"
#include "quant/ggml_type.h"
#include "tests/testlib.h"

static char tmpdir[256];

/* === helpers ============================================================ */

/* A weight decoded to float32 (model/weight.h). The buffer stays valid for
 * the next WF_RING - 1 calls; wf_done frees the ring. */
#define WF_RING 256
static float *wf_ring[WF_RING];
static int wf_next;

static const float *wf(const Weight *w) {
    float *buf = malloc((size_t)(w->n_out * w->n_in) * sizeof *buf);
    CHECK(buf != NULL);
    weight_rows_f32(w, 0, w->n_out, buf);
    free(wf_ring[wf_next]);
    wf_ring[wf_next] = buf;
    wf_next = (wf_next + 1) % WF_RING;
    return buf;
}

static void wf_done(void) {
    for (int i = 0; i < WF_RING; i++) {
        free(wf_ring[i]);
        wf_ring[i] = NULL;
    }
}

static Model *load_ok(const char *path, const char *tok) {
    Err err;
    err_init(&err);
    ModelLoadOpts o = {.tokenizer_path = tok};
    Model *m = NULL;
    CHECK_OK(model_load(path, &o, &m, &err), err);
    CHECK(m != NULL);
    return m;
}

/* Loading must fail, with a detail naming `file` and containing `phrase`. */
static void expect_fail(const char *path, const char *tok, const char *file, const char *phrase) {
    Err err;
    err_init(&err);
    ModelLoadOpts o = {.tokenizer_path = tok};
    Model *m = (Model *)1;
    Status st = model_load(path, &o, &m, &err);
    CHECKF(st != ST_OK, "%s loaded but should have failed (%s)", path, phrase);
    CHECK(m == NULL);
    CHECK(err.code == st);
    CHECKF(strstr(err.detail, file) != NULL, "detail '%s' does not name '%s'", err.detail, file);
    CHECKF(strstr(err.detail, phrase) != NULL, "detail '%s' lacks '%s'", err.detail, phrase);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(data, 1, n, f) == n);
    CHECK(fclose(f) == 0);
}

static const char *tpath(const char *rel) {
    return testlib_path(tmpdir, rel);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static void same_floats(const float *a, const float *b, int64_t n, const char *what) {
    CHECKF(memcmp(a, b, (size_t)n * sizeof(float)) == 0, "%s differs", what);
}

static const int64_t n_params_260k = 260032; /* tied: 512*64 + 5*45440 + 64 */

static void check_config_260k(const Model *m) {
    const ModelConfig *c = &m->cfg;
    CHECK(strcmp(c->arch, "llama") == 0);
    CHECK(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5);
    CHECK(c->n_heads == 8 && c->n_kv_heads == 4 && c->head_dim == 8);
    CHECK(c->vocab_size == 512);
    CHECK_NEAR(c->rope_theta, 10000.0, 0);
    CHECK_NEAR(c->norm_eps, 1e-5, 1e-12);
    CHECK(m->tok != NULL);
    CHECK(tokenizer_vocab_size(m->tok) == 512);
    CHECK(m->n_tensors == 1 + 5 * 9 + 1 + (c->tied_embeddings ? 0 : 1));
    CHECK(m->output.n_out == 512 && m->output.n_in == 64);
    for (int l = 0; l < 5; l++) {
        CHECK(m->layers[l].proj[PROJ_Q].n_out == 64 && m->layers[l].proj[PROJ_Q].n_in == 64);
        CHECK(m->layers[l].proj[PROJ_K].n_out == 32 && m->layers[l].proj[PROJ_V].n_out == 32);
        CHECK(m->layers[l].proj[PROJ_GATE].n_out == 172 && m->layers[l].proj[PROJ_UP].n_in == 64);
        CHECK(m->layers[l].proj[PROJ_DOWN].n_out == 64 && m->layers[l].proj[PROJ_DOWN].n_in == 172);
    }
}

/* === the four forms of stories260K ====================================== */

static void test_stories(void) {
    char bin[1024], tok[1024]; /* testlib_shared's buffers rotate */
    snprintf(bin, sizeof bin, "%s", testlib_shared("models/stories260K/stories260K.bin"));
    snprintf(tok, sizeof tok, "%s", testlib_shared("models/stories260K/tok512.bin"));
    Model *l2c = load_ok(bin, tok);
    Model *gg = load_ok(testlib_shared("models/stories260K/stories260K-f32.gguf"), NULL);
    Model *hf = load_ok(testlib_shared("models/stories260K-hf"), NULL);
    Model *bf = load_ok(testlib_shared("models/stories260K-hf-bf16-sharded"), NULL);

    check_config_260k(l2c);
    check_config_260k(gg);
    check_config_260k(hf);
    check_config_260k(bf);
    CHECK(l2c->format == FMT_LLAMA2C && gg->format == FMT_GGUF && hf->format == FMT_HF && bf->format == FMT_HF);
    CHECK(l2c->cfg.rope_style == ROPE_NORM && gg->cfg.rope_style == ROPE_NORM);
    CHECK(hf->cfg.rope_style == ROPE_NEOX && bf->cfg.rope_style == ROPE_NEOX);
    CHECK(l2c->cfg.max_seq_len == 512 && hf->cfg.max_seq_len == 512);
    CHECK(gg->cfg.max_seq_len == 128); /* what llama.cpp's converter wrote */
    /* llama2.c and HF tie the classifier; llama.cpp's converter wrote output.weight separately. */
    CHECK(l2c->cfg.tied_embeddings && hf->cfg.tied_embeddings && bf->cfg.tied_embeddings);
    CHECK(!gg->cfg.tied_embeddings);
    CHECK(l2c->output.data == l2c->tok_embd.data && hf->output.data == hf->tok_embd.data &&
          gg->output.data != gg->tok_embd.data);
    CHECK(model_param_count(l2c) == n_params_260k && model_param_count(hf) == n_params_260k);
    CHECK(model_param_count(gg) == n_params_260k + 512 * 64);

    /* Memory: every matrix used in place in its own dtype; only the BF16 norm
     * vectors (5 layers x 2 + the final one, 64 each) are converted. */
    CHECK(l2c->owned_bytes == 0 && gg->owned_bytes == 0 && hf->owned_bytes == 0);
    CHECK(bf->owned_bytes == (size_t)(5 * 2 + 1) * 64 * 4);
    CHECK(bf->tok_embd.type == GGML_BF16 && bf->layers[2].proj[PROJ_UP].type == GGML_BF16);
    CHECK(bf->layers[2].proj[PROJ_UP].row_bytes == 64 * 2);
    for (int64_t i = 0; i < gg->n_tensors; i++) CHECK(gg->tensors[i].borrowed && gg->tensors[i].src_type == GGML_F32);
    for (int64_t i = 0; i < hf->n_tensors; i++) CHECK(hf->tensors[i].borrowed && l2c->tensors[i].borrowed);
    for (int64_t i = 0; i < bf->n_tensors; i++)
        CHECK(bf->tensors[i].borrowed == (strcmp(bf->tensors[i].kind, "norm") != 0) &&
              bf->tensors[i].src_type == GGML_BF16);
    CHECK(l2c->file_bytes == 1056540 && gg->file_bytes == 1185376 && hf->file_bytes == 1044992);
    CHECK(bf->file_bytes == 296416 + 228568);
    /* Canonical table order and names. */
    CHECK(strcmp(gg->tensors[0].name, "token_embd.weight") == 0 && strcmp(gg->tensors[0].kind, "embedding") == 0);
    CHECK(strcmp(gg->tensors[2].name, "blk.0.attn_q.weight") == 0 && gg->tensors[2].layer == 0);
    CHECK(gg->tensors[2].ne[0] == 64 && gg->tensors[2].ne[1] == 64 && gg->tensors[2].file_bytes == 64 * 64 * 4);
    CHECK(strcmp(hf->tensors[9].name, "model.layers.0.mlp.down_proj.weight") == 0);
    CHECK(strcmp(hf->tensors[9].kind, "ffn") == 0 && hf->tensors[9].ne[0] == 172 && hf->tensors[9].ne[1] == 64);
    CHECK(strcmp(l2c->tensors[1 + 9 + 2].name, "layers.1.wk") == 0);
    CHECK(strcmp(gg->tensors[gg->n_tensors - 1].name, "output.weight") == 0);
    CHECK(strcmp(gg->tensors[gg->n_tensors - 1].kind, "output") == 0);
    CHECK(strcmp(bf->tensors[bf->n_tensors - 1].kind, "norm") == 0 && bf->tensors[bf->n_tensors - 1].layer == -1);

    /* llama2.c == GGUF, every tensor exactly (GGUF's separate head equals the shared embedding). */
    same_floats(wf(&l2c->tok_embd), wf(&gg->tok_embd), 512 * 64, "tok_embd");
    same_floats(wf(&l2c->output), wf(&gg->output), 512 * 64, "output");
    same_floats(l2c->out_norm, gg->out_norm, 64, "out_norm");
    for (int l = 0; l < 5; l++) {
        same_floats(l2c->layers[l].attn_norm, gg->layers[l].attn_norm, 64, "attn_norm");
        same_floats(l2c->layers[l].ffn_norm, gg->layers[l].ffn_norm, 64, "ffn_norm");
        for (int p = 0; p < PROJ_COUNT; p++) {
            const Weight *a = &l2c->layers[l].proj[p], *b = &gg->layers[l].proj[p];
            CHECK(a->n_out == b->n_out && a->n_in == b->n_in);
            CHECK(a->type == GGML_F32 && b->type == GGML_F32);
            same_floats(wf(a), wf(b), a->n_out * a->n_in, proj_name((Proj)p));
        }
    }

    /* HF F32 == GGUF except q/k, whose rows are permuted within each head:
     * HF row i (< hd/2) is GGUF row 2i, HF row hd/2 + i is GGUF row 2i + 1. */
    same_floats(wf(&hf->tok_embd), wf(&gg->tok_embd), 512 * 64, "hf tok_embd");
    same_floats(wf(&hf->output), wf(&gg->output), 512 * 64, "hf output");
    same_floats(hf->out_norm, gg->out_norm, 64, "hf out_norm");
    int64_t hd = 8, half = 4, dim = 64;
    for (int l = 0; l < 5; l++) {
        same_floats(hf->layers[l].attn_norm, gg->layers[l].attn_norm, 64, "hf attn_norm");
        same_floats(hf->layers[l].ffn_norm, gg->layers[l].ffn_norm, 64, "hf ffn_norm");
        for (int p = 0; p < PROJ_COUNT; p++) {
            const Weight *a = &hf->layers[l].proj[p], *b = &gg->layers[l].proj[p];
            CHECK(a->n_out == b->n_out && a->n_in == b->n_in);
            if (p != PROJ_Q && p != PROJ_K) {
                same_floats(wf(a), wf(b), a->n_out * a->n_in, proj_name((Proj)p));
                continue;
            }
            /* The permutation matters: as stored the two layouts differ. */
            CHECK(memcmp(a->data, b->data, weight_bytes(a)) != 0);
            const float *aw = wf(a), *bw = wf(b);
            int64_t heads = a->n_out / hd;
            CHECK(heads == (p == PROJ_Q ? 8 : 4));
            for (int64_t h = 0; h < heads; h++)
                for (int64_t i = 0; i < half; i++) {
                    same_floats(aw + (h * hd + i) * dim, bw + (h * hd + 2 * i) * dim, dim, "hf q/k even row");
                    same_floats(aw + (h * hd + half + i) * dim, bw + (h * hd + 2 * i + 1) * dim, dim,
                                "hf q/k odd row");
                }
        }
    }

    /* BF16 shards: each weight is the round-to-nearest-even bf16 of the F32 one
     * (so within a relative 2^-8 of it). */
    const float *pairs[2 + 5 * 9][2];
    int64_t sizes[2 + 5 * 9];
    int np = 0;
    pairs[np][0] = wf(&bf->tok_embd); pairs[np][1] = wf(&hf->tok_embd); sizes[np++] = 512 * 64;
    pairs[np][0] = bf->out_norm; pairs[np][1] = hf->out_norm; sizes[np++] = 64;
    for (int l = 0; l < 5; l++) {
        pairs[np][0] = bf->layers[l].attn_norm; pairs[np][1] = hf->layers[l].attn_norm; sizes[np++] = 64;
        pairs[np][0] = bf->layers[l].ffn_norm; pairs[np][1] = hf->layers[l].ffn_norm; sizes[np++] = 64;
        for (int p = 0; p < PROJ_COUNT; p++) {
            pairs[np][0] = wf(&bf->layers[l].proj[p]);
            pairs[np][1] = wf(&hf->layers[l].proj[p]);
            sizes[np++] = hf->layers[l].proj[p].n_out * hf->layers[l].proj[p].n_in;
        }
    }
    double max_rel = 0;
    for (int k = 0; k < np; k++)
        for (int64_t i = 0; i < sizes[k]; i++) {
            float b = pairs[k][0][i], f = pairs[k][1][i];
            CHECK(b == bf16_to_f32(f32_to_bf16(f)));
            double rel = f != 0 ? fabs((double)b - f) / fabs(f) : fabs(b);
            CHECK(rel <= 1.0 / 256);
            if (rel > max_rel) max_rel = rel;
        }
    CHECK(max_rel > 1e-3); /* really rounded, not a copy of the F32 weights */

    /* The scalar decoding path (QS_CPU=scalar) gives the same bits as the SIMD one,
     * and the scalar-loaded model's converted norms equal the SIMD-loaded ones. */
    setenv("QS_CPU", "scalar", 1);
    cpu_refresh();
    Model *bs = load_ok(testlib_shared("models/stories260K-hf-bf16-sharded"), NULL);
    const float *se = wf(&bs->tok_embd), *sp[5][PROJ_COUNT];
    for (int l = 0; l < 5; l++)
        for (int p = 0; p < PROJ_COUNT; p++) sp[l][p] = wf(&bs->layers[l].proj[p]);
    unsetenv("QS_CPU");
    cpu_refresh();
    same_floats(se, wf(&bf->tok_embd), 512 * 64, "scalar bf16 tok_embd");
    same_floats(bs->out_norm, bf->out_norm, 64, "scalar bf16 out_norm");
    for (int l = 0; l < 5; l++)
        for (int p = 0; p < PROJ_COUNT; p++)
            same_floats(sp[l][p], wf(&bf->layers[l].proj[p]),
                        bf->layers[l].proj[p].n_out * bf->layers[l].proj[p].n_in, "scalar bf16 proj");
    model_free(bs);

    /* Fingerprints: stable for a file, different across files. */
    Model *gg2 = load_ok(testlib_shared("models/stories260K/stories260K-f32.gguf"), NULL);
    CHECK(gg2->fingerprint == gg->fingerprint);
    CHECK(gg->fingerprint != l2c->fingerprint && gg->fingerprint != hf->fingerprint);
    CHECK(hf->fingerprint != bf->fingerprint && l2c->fingerprint != hf->fingerprint);
    model_free(gg2);

    /* A copy of the llama2.c file with one weight changed fingerprints differently. */
    MappedFile mf;
    Err err;
    err_init(&err);
    CHECK_OK(mapfile_open(&mf, bin, &err), err);
    unsigned char *copy = malloc(mf.size);
    CHECK(copy != NULL);
    memcpy(copy, mf.data, mf.size);
    copy[28 + 4 * 100] ^= 1;
    write_file(tpath("changed.bin"), copy, mf.size);
    Model *ch = load_ok(tpath("changed.bin"), tok);
    CHECK(ch->fingerprint != l2c->fingerprint);
    model_free(ch);
    memcpy(copy, mf.data, mf.size);
    write_file(tpath("same.bin"), copy, mf.size);
    ch = load_ok(tpath("same.bin"), tok);
    CHECK(ch->fingerprint == l2c->fingerprint);
    model_free(ch);

    /* Malformed llama2.c files. */
    write_file(tpath("trunc.bin"), copy, 500000);
    expect_fail(tpath("trunc.bin"), tok, "trunc.bin", "needs exactly 1056540 bytes, the file has 500000");
    int32_t *hdr = (int32_t *)(void *)copy;
    hdr[0] = 1 << 30; /* absurd dim */
    write_file(tpath("absurd.bin"), copy, mf.size);
    expect_fail(tpath("absurd.bin"), tok, "absurd.bin", "header field dim = 1073741824");
    hdr[0] = 64;
    hdr[2] = -3; /* negative layer count */
    write_file(tpath("neglayers.bin"), copy, mf.size);
    expect_fail(tpath("neglayers.bin"), tok, "neglayers.bin", "n_layers = -3");
    hdr[2] = 5;
    hdr[3] = 7; /* 64 is not a multiple of 7 heads */
    write_file(tpath("heads.bin"), copy, mf.size);
    expect_fail(tpath("heads.bin"), tok, "heads.bin", "inconsistent");
    hdr[3] = 8;
    hdr[5] = -512; /* claims an unshared classifier the file does not hold */
    write_file(tpath("unshared.bin"), copy, mf.size);
    expect_fail(tpath("unshared.bin"), tok, "unshared.bin", "vocab 512 unshared");
    write_file(tpath("tiny.bin"), copy, 10);
    expect_fail(tpath("tiny.bin"), tok, "tiny.bin", "too short");
    /* A consistent header whose vocab (1024) the tokenizer cannot cover is a
     * mismatch between the two files, not a truncated tokenizer. */
    {
        size_t big_n = mf.size + (size_t)512 * 64 * 4;
        unsigned char *big = calloc(1, big_n);
        CHECK(big != NULL);
        memcpy(big, copy, 28);
        ((int32_t *)(void *)big)[5] = 1024;
        write_file(tpath("vocab1024.bin"), big, big_n);
        expect_fail(tpath("vocab1024.bin"), tok, "tok512.bin",
                    "holds 512 tokens but the checkpoint's header says vocab_size 1024");
        free(big);
    }
    /* Without --tokenizer, the tokenizer beside the .bin is used (tok512.bin
     * here, same fingerprint); a copy with none beside it says what it looked for. */
    Model *beside = load_ok(bin, NULL);
    CHECK(beside->tok != NULL && beside->cfg.vocab_size == 512);
    Model *given = load_ok(bin, tok);
    CHECK(beside->fingerprint == given->fingerprint);
    model_free(beside);
    model_free(given);
    write_file(tpath("lonely.bin"), mf.data, mf.size);
    expect_fail(tpath("lonely.bin"), NULL, "lonely.bin",
                "looks like a llama2.c checkpoint: pass --tokenizer TOK.bin (no tok512.bin or tokenizer.bin beside it)");
    expect_fail(tpath("does-not-exist.bin"), tok, "does-not-exist.bin", "No such file");
    expect_fail(bin, tpath("no-tok.bin"), "no-tok.bin", "No such file");
    free(copy);
    mapfile_close(&mf);

    model_free(l2c);
    model_free(gg);
    model_free(hf);
    model_free(bf);
}

/* The llama.cpp-quantized copies: Q8_0/Q4_0 dequantized close to F32, the F16
 * ffn_down within fp16 rounding, norms F32 in place. */
static void test_quantized(void) {
    Model *f = load_ok(testlib_shared("models/stories260K/stories260K-f32.gguf"), NULL);
    const char *names[2] = {"models/stories260K/stories260K-Q8_0-mixed.gguf",
                            "models/stories260K/stories260K-Q4_0-mixed.gguf"};
    const uint32_t qtype[2] = {GGML_Q8_0, GGML_Q4_0};
    /* Error bound per 32-block, in units of amax: Q8_0 half a step (amax/127)
     * plus the fp16 rounding of the scale; Q4_0 a whole step (amax/8), since
     * its 16 levels reach -8 steps but only +7 on the other side. */
    const double tol[2] = {0.6 / 127, 1.05 / 8};
    for (int k = 0; k < 2; k++) {
        Model *q = load_ok(testlib_shared(names[k]), NULL);
        check_config_260k(q);
        CHECK(q->layers[0].proj[PROJ_Q].type == qtype[k]);
        CHECK(q->layers[0].proj[PROJ_DOWN].type == GGML_F16);
        /* Block types stay in the mapping too: nothing is converted at load. */
        for (int64_t i = 0; i < q->n_tensors; i++) CHECK(q->tensors[i].borrowed);
        CHECK(q->owned_bytes == 0);
        for (int l = 0; l < 5; l++) {
            same_floats(q->layers[l].attn_norm, f->layers[l].attn_norm, 64, "q attn_norm");
            for (int p = 0; p < PROJ_COUNT; p++) {
                const Weight *a = &q->layers[l].proj[p], *b = &f->layers[l].proj[p];
                const float *aw = wf(a), *bw = wf(b);
                int64_t n = a->n_out * a->n_in;
                if (p == PROJ_DOWN) {
                    for (int64_t i = 0; i < n; i++) CHECK(aw[i] == fp16_to_f32(f32_to_fp16(bw[i])));
                    continue;
                }
                for (int64_t i0 = 0; i0 < n; i0 += 32) {
                    float amax = 0;
                    for (int64_t i = i0; i < i0 + 32; i++) amax = fmaxf(amax, fabsf(bw[i]));
                    for (int64_t i = i0; i < i0 + 32; i++)
                        CHECK_NEAR(aw[i], bw[i], amax * tol[k]);
                }
            }
        }
        model_free(q);
    }
    model_free(f);
    expect_fail(testlib_shared("vocab/ggml-vocab-llama-spm.gguf"), NULL, "ggml-vocab-llama-spm.gguf",
                "has no tensors: vocab-only GGUF; use it with `qscope tokenize`");
}

/* === generated Hugging Face directories ================================= */

/* A tiny LLaMA: dim 8, hidden 16, 1 layer, 2 heads, 1 KV head, vocab 16. */
static const char *const tiny_config[][2] = {
    {"architectures", "[\"LlamaForCausalLM\"]"}, {"hidden_size", "8"}, {"intermediate_size", "16"},
    {"num_hidden_layers", "1"}, {"num_attention_heads", "2"}, {"num_key_value_heads", "1"},
    {"vocab_size", "16"}, {"rms_norm_eps", "1e-06"}, {"rope_theta", "500000.0"},
    {"max_position_embeddings", "64"}, {"tie_word_embeddings", "true"}, {"rope_scaling", "null"},
};

typedef struct TinyT {
    const char *name;
    int64_t rows, cols; /* rows = 0: a vector of cols */
} TinyT;

static const TinyT tiny_tensors[] = {
    {"model.embed_tokens.weight", 16, 8},
    {"model.layers.0.input_layernorm.weight", 0, 8},
    {"model.layers.0.self_attn.q_proj.weight", 8, 8},
    {"model.layers.0.self_attn.k_proj.weight", 4, 8},
    {"model.layers.0.self_attn.v_proj.weight", 4, 8},
    {"model.layers.0.self_attn.o_proj.weight", 8, 8},
    {"model.layers.0.post_attention_layernorm.weight", 0, 8},
    {"model.layers.0.mlp.gate_proj.weight", 16, 8},
    {"model.layers.0.mlp.up_proj.weight", 16, 8},
    {"model.layers.0.mlp.down_proj.weight", 8, 16},
    {"model.norm.weight", 0, 8},
    {"lm_head.weight", 16, 8},
};
#define TINY_N ((int)(sizeof tiny_tensors / sizeof tiny_tensors[0]))

static int64_t tiny_vocab = 16; /* rows of the embedding and the head */

static int64_t tiny_rows(int t) {
    return t == 0 || t == TINY_N - 1 ? tiny_vocab : tiny_tensors[t].rows;
}

/* Writes dir/config.json: the tiny config with key set to val (added if new,
 * removed when val is NULL); key NULL writes it unchanged. */
static void write_config(const char *dir, const char *key, const char *val) {
    char path[512], buf[2048];
    size_t k = (size_t)snprintf(buf, sizeof buf, "{");
    int n = 0, seen = 0;
    for (size_t i = 0; i < sizeof tiny_config / sizeof tiny_config[0]; i++) {
        const char *v = tiny_config[i][1];
        if (key && strcmp(key, tiny_config[i][0]) == 0) {
            seen = 1;
            v = val;
        }
        if (!v) continue;
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s\"%s\": %s", n++ ? ", " : "", tiny_config[i][0], v);
    }
    if (key && !seen) k += (size_t)snprintf(buf + k, sizeof buf - k, ", \"%s\": %s", key, val);
    snprintf(buf + k, sizeof buf - k, "}");
    snprintf(path, sizeof path, "%s/%s/config.json", tmpdir, dir);
    write_file(path, buf, strlen(buf));
}

/* 1: write_tiny_st writes F32 with an unpadded header of odd length, so the
 * data is misaligned for float and must be copied. */
static int tiny_f32_odd;

static float tiny_value(int t, int64_t i) {
    return (float)(t + 1) * 0.01f * (float)(i % 7 - 3);
}

/* Writes tensors [first, last) of the tiny model as F16 (or F32, see
 * tiny_f32_odd) into dir/file; element i of tensor t is tiny_value(t, i).
 * bad_k: give k_proj shape (8, 8) (and the bytes to match). */
static void write_tiny_st(const char *dir, const char *file, int first, int last, int bad_k) {
    char hdr[8192];
    CHECK(first < last);
    const char *dtype = tiny_f32_odd ? "F32" : "F16";
    uint64_t es = tiny_f32_odd ? 4 : 2;
    size_t k = (size_t)snprintf(hdr, sizeof hdr, "{\"__metadata__\": {\"format\": \"pt\"}");
    uint64_t off = 0;
    for (int t = first; t < last; t++) {
        int64_t rows = tiny_rows(t), cols = tiny_tensors[t].cols;
        if (bad_k && strstr(tiny_tensors[t].name, "k_proj")) rows = 8;
        int64_t n = (rows ? rows : 1) * cols;
        if (rows)
            k += (size_t)snprintf(hdr + k, sizeof hdr - k,
                                  ", \"%s\": {\"dtype\": \"%s\", \"shape\": [%lld, %lld], \"data_offsets\": [%llu, %llu]}",
                                  tiny_tensors[t].name, dtype, (long long)rows, (long long)cols, (unsigned long long)off,
                                  (unsigned long long)(off + (uint64_t)n * es));
        else
            k += (size_t)snprintf(hdr + k, sizeof hdr - k,
                                  ", \"%s\": {\"dtype\": \"%s\", \"shape\": [%lld], \"data_offsets\": [%llu, %llu]}",
                                  tiny_tensors[t].name, dtype, (long long)cols, (unsigned long long)off,
                                  (unsigned long long)(off + (uint64_t)n * es));
        off += (uint64_t)n * es;
    }
    k += (size_t)snprintf(hdr + k, sizeof hdr - k, "}");
    if (tiny_f32_odd)
        while (k % 2 == 0) hdr[k++] = ' ';
    else
        while (k % 8) hdr[k++] = ' ';
    size_t total = 8 + k + (size_t)off;
    unsigned char *buf = calloc(1, total);
    CHECK(buf != NULL);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)k >> (8 * i));
    memcpy(buf + 8, hdr, k);
    unsigned char *d = buf + 8 + k;
    for (int t = first; t < last; t++) {
        int64_t rows = tiny_rows(t), cols = tiny_tensors[t].cols;
        if (bad_k && strstr(tiny_tensors[t].name, "k_proj")) rows = 8;
        int64_t n = (rows ? rows : 1) * cols;
        for (int64_t i = 0; i < n; i++, d += es) {
            float v = tiny_value(t, i);
            uint16_t h = f32_to_fp16(v);
            if (tiny_f32_odd)
                memcpy(d, &v, 4);
            else
                memcpy(d, &h, 2);
        }
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", tmpdir, dir, file);
    write_file(path, buf, total);
    free(buf);
}

static void make_dir(const char *dir) {
    CHECK(mkdir(tpath(dir), 0755) == 0);
}

/* A safetensors file made of a raw header (with the given declared length) and data. */
static void write_raw_st(const char *dir, uint64_t declared, const char *json, size_t data_bytes) {
    size_t jl = strlen(json);
    size_t total = 8 + jl + data_bytes;
    unsigned char *buf = calloc(1, total);
    CHECK(buf != NULL);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(declared >> (8 * i));
    memcpy(buf + 8, json, jl);
    char path[512];
    snprintf(path, sizeof path, "%s/%s/model.safetensors", tmpdir, dir);
    write_file(path, buf, total);
    free(buf);
}

static void test_hf_generated(void) {
    Err err;
    err_init(&err);

    /* A valid F16 model with a separate head: loads, converts, untied. */
    make_dir("ok");
    write_config("ok", "tie_word_embeddings", "false");
    write_tiny_st("ok", "model.safetensors", 0, TINY_N, 0);
    Model *m = load_ok(tpath("ok"), NULL);
    CHECK(m->tok == NULL); /* no tokenizer.json in this directory */
    CHECK(m->cfg.dim == 8 && m->cfg.hidden_dim == 16 && m->cfg.n_layers == 1 && m->cfg.n_heads == 2);
    CHECK(m->cfg.n_kv_heads == 1 && m->cfg.head_dim == 4 && m->cfg.vocab_size == 16 && m->cfg.max_seq_len == 64);
    CHECK_NEAR(m->cfg.rope_theta, 500000.0, 0);
    CHECK_NEAR(m->cfg.norm_eps, 1e-6, 1e-13);
    CHECK(m->cfg.rope_style == ROPE_NEOX && !m->cfg.tied_embeddings);
    CHECK(m->n_tensors == TINY_N);
    int64_t params = 16 * 8 * 2 + 8 * 3 + 8 * 8 * 2 + 4 * 8 * 2 + 16 * 8 * 3;
    CHECK(model_param_count(m) == params);
    CHECKF(m->owned_bytes == (size_t)3 * 8 * 4, "owned %zu", m->owned_bytes); /* the three F16 norm vectors */
    CHECK(m->layers[0].proj[PROJ_K].n_out == 4 && m->layers[0].proj[PROJ_K].type == GGML_F16);
    for (int64_t i = 0; i < 32; i++)
        CHECK(wf(&m->layers[0].proj[PROJ_K])[i] == fp16_to_f32(f32_to_fp16(4 * 0.01f * (float)(i % 7 - 3))));
    CHECK(m->output.data != m->tok_embd.data && wf(&m->output)[5] == fp16_to_f32(f32_to_fp16(12 * 0.01f * 2)));
    model_free(m);

    /* tie_word_embeddings true: the head is the embedding even though lm_head exists. */
    write_config("ok", NULL, NULL);
    m = load_ok(tpath("ok"), NULL);
    CHECK(m->cfg.tied_embeddings && m->output.data == m->tok_embd.data && m->n_tensors == TINY_N - 1);
    model_free(m);

    /* F32 behind an odd-length header: misaligned, so copied (and counted as owned). */
    tiny_f32_odd = 1;
    make_dir("odd");
    write_config("odd", NULL, NULL);
    write_tiny_st("odd", "model.safetensors", 0, TINY_N, 0);
    tiny_f32_odd = 0;
    m = load_ok(tpath("odd"), NULL);
    CHECK(m->owned_bytes == (size_t)(params - 16 * 8) * 4);
    for (int64_t i = 0; i < m->n_tensors; i++) CHECK(!m->tensors[i].borrowed && m->tensors[i].src_type == GGML_F32);
    CHECK(m->layers[0].proj[PROJ_DOWN].type == GGML_F32 && weight_f32_data(&m->layers[0].proj[PROJ_DOWN]));
    for (int64_t i = 0; i < 128; i++) CHECK(wf(&m->layers[0].proj[PROJ_DOWN])[i] == tiny_value(9, i));
    CHECK(m->layers[0].ffn_norm[7] == tiny_value(6, 7));
    model_free(m);

    /* A large F16 embedding (vocab 2^17 x 8 = 2^20 elements) stays in the file: rows decode on use. */
    tiny_vocab = 131072;
    make_dir("big");
    write_config("big", "vocab_size", "131072");
    write_tiny_st("big", "model.safetensors", 0, TINY_N, 0);
    m = load_ok(tpath("big"), NULL);
    CHECK(m->cfg.vocab_size == 131072 && m->cfg.tied_embeddings);
    CHECKF(m->owned_bytes == (size_t)3 * 8 * 4, "owned %zu", m->owned_bytes);
    const float *emb = wf(&m->tok_embd);
    for (int64_t i = 0; i < 131072 * 8; i++)
        CHECKF(emb[i] == fp16_to_f32(f32_to_fp16(0.01f * (float)(i % 7 - 3))), "embedding element %lld",
               (long long)i);
    model_free(m);
    tiny_vocab = 16;

    /* Sharded: two shards and an index. */
    make_dir("sharded");
    write_config("sharded", "tie_word_embeddings", "false");
    write_tiny_st("sharded", "a.safetensors", 0, 5, 0);
    write_tiny_st("sharded", "b.safetensors", 5, TINY_N, 0);
    char idx[4096];
    size_t k = (size_t)snprintf(idx, sizeof idx, "{\"metadata\": {}, \"weight_map\": {");
    for (int t = 0; t < TINY_N; t++)
        k += (size_t)snprintf(idx + k, sizeof idx - k, "%s\"%s\": \"%s\"", t ? ", " : "", tiny_tensors[t].name,
                              t < 5 ? "a.safetensors" : "b.safetensors");
    snprintf(idx + k, sizeof idx - k, "}}");
    write_file(tpath("sharded/model.safetensors.index.json"), idx, strlen(idx));
    m = load_ok(tpath("sharded"), NULL);
    CHECK(m->n_tensors == TINY_N && wf(&m->layers[0].proj[PROJ_O])[1] == fp16_to_f32(f32_to_fp16(6 * 0.01f * -2)));
    model_free(m);
    /* ... a tensor the model needs in no shard: the error names the index. */
    k = (size_t)snprintf(idx, sizeof idx, "{\"weight_map\": {");
    for (int t = 1; t < TINY_N; t++)
        k += (size_t)snprintf(idx + k, sizeof idx - k, "%s\"%s\": \"%s\"", t > 1 ? ", " : "", tiny_tensors[t].name,
                              t < 5 ? "a.safetensors" : "b.safetensors");
    snprintf(idx + k, sizeof idx - k, "}}");
    write_file(tpath("sharded/model.safetensors.index.json"), idx, strlen(idx));
    write_tiny_st("sharded", "a.safetensors", 1, 5, 0);
    expect_fail(tpath("sharded"), NULL, "sharded/model.safetensors.index.json",
                "missing tensor 'model.embed_tokens.weight'");
    write_tiny_st("sharded", "a.safetensors", 0, 5, 0);
    /* ... an index naming a shard that is not there. */
    k = (size_t)snprintf(idx, sizeof idx, "{\"weight_map\": {");
    for (int t = 0; t < TINY_N; t++)
        k += (size_t)snprintf(idx + k, sizeof idx - k, "%s\"%s\": \"%s\"", t ? ", " : "", tiny_tensors[t].name,
                              t < 5 ? "a.safetensors" : "c.safetensors");
    snprintf(idx + k, sizeof idx - k, "}}");
    write_file(tpath("sharded/model.safetensors.index.json"), idx, strlen(idx));
    expect_fail(tpath("sharded"), NULL, "model.safetensors.index.json",
                "weight_map names shard 'c.safetensors', which is missing");
    /* ... an index that puts a tensor in the wrong shard. */
    k = (size_t)snprintf(idx, sizeof idx, "{\"weight_map\": {");
    for (int t = 0; t < TINY_N; t++)
        k += (size_t)snprintf(idx + k, sizeof idx - k, "%s\"%s\": \"%s\"", t ? ", " : "", tiny_tensors[t].name,
                              t < 4 ? "a.safetensors" : "b.safetensors");
    snprintf(idx + k, sizeof idx - k, "}}");
    write_file(tpath("sharded/model.safetensors.index.json"), idx, strlen(idx));
    expect_fail(tpath("sharded"), NULL, "model.safetensors.index.json",
                "puts tensor 'model.layers.0.self_attn.v_proj.weight' in 'b.safetensors', which lacks it");
    /* ... an index escaping the directory. */
    write_file(tpath("sharded/model.safetensors.index.json"), "{\"weight_map\": {\"x\": \"../ok/model.safetensors\"}}",
               strlen("{\"weight_map\": {\"x\": \"../ok/model.safetensors\"}}"));
    expect_fail(tpath("sharded"), NULL, "model.safetensors.index.json", "not a plain file name");

    /* A shape that disagrees with config.json. */
    make_dir("badshape");
    write_config("badshape", NULL, NULL);
    write_tiny_st("badshape", "model.safetensors", 0, TINY_N, 1);
    expect_fail(tpath("badshape"), NULL, "badshape/model.safetensors",
                "tensor 'model.layers.0.self_attn.k_proj.weight' has shape [8, 8], expected [4, 8]");

    /* Broken safetensors files. */
    make_dir("st");
    write_config("st", NULL, NULL);
    write_raw_st("st", 1000, "{}", 0);
    expect_fail(tpath("st"), NULL, "st/model.safetensors", "header length 1000 at offset 0 is longer than the file");
    write_raw_st("st", 5, "nojso", 0);
    expect_fail(tpath("st"), NULL, "st/model.safetensors", "is not a JSON object");
    const char *oob = "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8000]}}";
    write_raw_st("st", strlen(oob), oob, 8);
    expect_fail(tpath("st"), NULL, "st/model.safetensors", "tensor 'a': data_offsets [0, 8000) out of bounds");
    const char *incons = "{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}";
    write_raw_st("st", strlen(incons), incons, 8);
    expect_fail(tpath("st"), NULL, "st/model.safetensors", "data_offsets span 8 bytes, dtype F32 and shape need 12");
    const char *dt = "{\"a\": {\"dtype\": \"I64\", \"shape\": [1], \"data_offsets\": [0, 8]}}";
    write_raw_st("st", strlen(dt), dt, 8);
    expect_fail(tpath("st"), NULL, "st/model.safetensors", "tensor 'a' has unsupported dtype 'I64'");
    const char *neg = "{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}";
    write_raw_st("st", strlen(neg), neg, 8);
    expect_fail(tpath("st"), NULL, "st/model.safetensors", "shape[0] is not a non-negative integer");
    const char *huge = "{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}";
    write_raw_st("st", strlen(huge), huge, 8);
    expect_fail(tpath("st"), NULL, "st/model.safetensors", "shape overflows");
    write_raw_st("st", 0, "", 0);
    expect_fail(tpath("st"), NULL, "st/model.safetensors", "is not a JSON object");
    write_file(tpath("st/model.safetensors"), "abc", 3);
    expect_fail(tpath("st"), NULL, "st/model.safetensors", "too short");
    /* A valid file missing the model's tensors. */
    const char *lone = "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}";
    write_raw_st("st", strlen(lone), lone, 8);
    expect_fail(tpath("st"), NULL, "st/model.safetensors", "missing tensor 'model.embed_tokens.weight'");
    /* A layer past num_hidden_layers is refused, not silently left out of the forward pass. */
    const char *extra = "{\"model.layers.1.input_layernorm.weight\": {\"dtype\": \"F32\", \"shape\": [2], "
                        "\"data_offsets\": [0, 8]}}";
    write_raw_st("st", strlen(extra), extra, 8);
    expect_fail(tpath("st"), NULL, "st/model.safetensors",
                "tensor 'model.layers.1.input_layernorm.weight' is in layer 1, but num_hidden_layers is 1");

    /* config.json problems. */
    make_dir("cfg");
    write_tiny_st("cfg", "model.safetensors", 0, TINY_N, 0);
    expect_fail(tpath("cfg"), NULL, "cfg", "no config.json");
    write_config("cfg", "hidden_size", NULL);
    expect_fail(tpath("cfg"), NULL, "cfg/config.json", "missing key 'hidden_size'");
    write_config("cfg", "architectures", "[\"GPT2LMHeadModel\"]");
    expect_fail(tpath("cfg"), NULL, "cfg/config.json", "architecture 'GPT2LMHeadModel' is not supported");
    write_config("cfg", "architectures", NULL);
    expect_fail(tpath("cfg"), NULL, "cfg/config.json", "missing key 'architectures'");
    write_file(tpath("cfg/config.json"), "{\"architectures\": [", strlen("{\"architectures\": ["));
    expect_fail(tpath("cfg"), NULL, "cfg/config.json", "not valid JSON");
    write_config("cfg", "rope_scaling", "{\"type\": \"yarn\", \"factor\": 2.0}");
    expect_fail(tpath("cfg"), NULL, "cfg/config.json", "rope_scaling type 'yarn' is not supported");
    write_config("cfg", "rope_scaling", "{\"rope_type\": \"dynamic\", \"factor\": 2.0}");
    expect_fail(tpath("cfg"), NULL, "cfg/config.json", "rope_scaling type 'dynamic' is not supported");
    write_config("cfg", "rope_scaling", "{\"rope_type\": \"wobble\", \"factor\": 2.0}");
    expect_fail(tpath("cfg"), NULL, "cfg/config.json", "rope_scaling type 'wobble' is unknown");
    write_config("cfg", "rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8.0}");
    expect_fail(tpath("cfg"), NULL, "cfg/config.json", "rope_scaling lacks 'low_freq_factor'");
    /* head_dim is independent of hidden_size / heads: q must then be (heads * head_dim, dim). */
    write_config("cfg", "head_dim", "8");
    expect_fail(tpath("cfg"), NULL, "model.safetensors",
                "tensor 'model.layers.0.self_attn.q_proj.weight' has shape [8, 8], expected [16, 8]");
    write_config("cfg", "num_key_value_heads", "3");
    expect_fail(tpath("cfg"), NULL, "cfg/config.json", "not a multiple of n_kv_heads (3)");
    write_config("cfg", "vocab_size", "-4");
    expect_fail(tpath("cfg"), NULL, "cfg/config.json", "'vocab_size' must be a positive integer");
    write_config("cfg", "hidden_act", "\"gelu\"");
    expect_fail(tpath("cfg"), NULL, "cfg/config.json", "hidden_act must be \"silu\"");
    write_config("cfg", NULL, NULL);
    m = load_ok(tpath("cfg"), NULL);
    model_free(m);

    make_dir("empty");
    write_config("empty", NULL, NULL);
    expect_fail(tpath("empty"), NULL, "empty", "no model.safetensors or model.safetensors.index.json");
}

/* === generated GGUF files =============================================== */

static int tiny_flat_embd; /* write token_embd.weight as a vector (no vocab dimension) */

static void write_tiny_gguf(const char *file, const char *arch, int drop_key, int bad_k, int bad_heads,
                            int extra_blk) {
    GgufWriter *w = gguf_writer_new();
    CHECK(w != NULL);
    CHECK(gguf_writer_add_str(w, "general.architecture", arch) == ST_OK);
    if (drop_key != 1) CHECK(gguf_writer_add_u32(w, "llama.block_count", 1) == ST_OK);
    CHECK(gguf_writer_add_u32(w, "llama.embedding_length", 8) == ST_OK);
    CHECK(gguf_writer_add_u32(w, "llama.feed_forward_length", 16) == ST_OK);
    CHECK(gguf_writer_add_u32(w, "llama.attention.head_count", bad_heads ? 3 : 2) == ST_OK);
    CHECK(gguf_writer_add_u32(w, "llama.attention.head_count_kv", 1) == ST_OK);
    CHECK(gguf_writer_add_u32(w, "llama.rope.dimension_count", 4) == ST_OK);
    CHECK(gguf_writer_add_u32(w, "llama.context_length", 32) == ST_OK);
    CHECK(gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f) == ST_OK);
    CHECK(gguf_writer_add_f32(w, "llama.rope.freq_base", 1e6f) == ST_OK);
    static float data[16 * 16];
    for (int i = 0; i < 16 * 16; i++) data[i] = (float)i * 0.001f;
    static const struct {
        const char *name;
        int64_t ne0, ne1;
    } ts[] = {
        {"token_embd.weight", 8, 16},      {"blk.0.attn_norm.weight", 8, 0}, {"blk.0.attn_q.weight", 8, 8},
        {"blk.0.attn_k.weight", 8, 4},     {"blk.0.attn_v.weight", 8, 4},    {"blk.0.attn_output.weight", 8, 8},
        {"blk.0.ffn_norm.weight", 8, 0},   {"blk.0.ffn_gate.weight", 8, 16}, {"blk.0.ffn_up.weight", 8, 16},
        {"blk.0.ffn_down.weight", 16, 8},  {"output_norm.weight", 8, 0},
    };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        int64_t ne[2] = {ts[i].ne0, ts[i].ne1};
        if (bad_k && strcmp(ts[i].name, "blk.0.attn_k.weight") == 0) ne[1] = 8;
        if (tiny_flat_embd && i == 0) ne[1] = 0;
        CHECK(gguf_writer_add_tensor(w, ts[i].name, GGML_F32, ne[1] ? 2 : 1, ne, data) == ST_OK);
    }
    if (extra_blk) {
        int64_t ne[1] = {8};
        CHECK(gguf_writer_add_tensor(w, "blk.1.attn_norm.weight", GGML_F32, 1, ne, data) == ST_OK);
    }
    Err err;
    err_init(&err);
    CHECK_OK(gguf_writer_write(w, tpath(file), &err), err);
    gguf_writer_free(w);
}

static void test_gguf_generated(void) {
    write_tiny_gguf("tiny.gguf", "llama", 0, 0, 0, 0);
    Model *m = load_ok(tpath("tiny.gguf"), NULL);
    CHECK(m->tok == NULL && m->cfg.tied_embeddings && m->output.data == m->tok_embd.data);
    CHECK(m->cfg.dim == 8 && m->cfg.vocab_size == 16 && m->cfg.n_kv_heads == 1 && m->cfg.max_seq_len == 32);
    CHECK_NEAR(m->cfg.rope_theta, 1e6, 0);
    CHECK(m->owned_bytes == 0 && wf(&m->layers[0].proj[PROJ_DOWN])[3] == 0.003f);
    model_free(m);
    tiny_flat_embd = 1; /* was "vocab_size = 0 is outside [1, ...]" */
    write_tiny_gguf("flatembd.gguf", "llama", 0, 0, 0, 0);
    tiny_flat_embd = 0;
    expect_fail(tpath("flatembd.gguf"), NULL, "flatembd.gguf",
                "tensor 'token_embd.weight' has 1 dimension, expected 2 (dim, vocab)");
    write_tiny_gguf("gpt2.gguf", "gpt2", 0, 0, 0, 0);
    expect_fail(tpath("gpt2.gguf"), NULL, "gpt2.gguf", "architecture 'gpt2' is not supported");
    write_tiny_gguf("nokey.gguf", "llama", 1, 0, 0, 0);
    expect_fail(tpath("nokey.gguf"), NULL, "nokey.gguf", "missing key 'llama.block_count'");
    write_tiny_gguf("badk.gguf", "llama", 0, 1, 0, 0);
    expect_fail(tpath("badk.gguf"), NULL, "badk.gguf",
                "tensor 'blk.0.attn_k.weight' has shape [8, 8], expected [8, 4]");
    /* 8 is no multiple of 3 heads: named as such, not as rope.dimension_count 4 != head_dim 2. */
    write_tiny_gguf("heads.gguf", "llama", 0, 0, 1, 0);
    expect_fail(tpath("heads.gguf"), NULL, "heads.gguf",
                "dim 8 is not a multiple of n_heads 3 and llama.attention.key_length is absent");
    /* A block past block_count is refused, not silently left out of the forward pass. */
    write_tiny_gguf("blk.gguf", "llama", 0, 0, 0, 1);
    expect_fail(tpath("blk.gguf"), NULL, "blk.gguf",
                "tensor 'blk.1.attn_norm.weight' is in block 1, but llama.block_count is 1");
}

static void test_names(void) {
    static const char *const spellings[PROJ_COUNT][4] = {
        {"q", "q_proj", "attn_q", "wq"},         {"k", "k_proj", "attn_k", "wk"},
        {"v", "v_proj", "attn_v", "wv"},         {"o", "o_proj", "attn_output", "wo"},
        {"gate", "gate_proj", "ffn_gate", "w1"}, {"up", "up_proj", "ffn_up", "w3"},
        {"down", "down_proj", "ffn_down", "w2"},
    };
    for (int p = 0; p < PROJ_COUNT; p++) {
        CHECK(strcmp(proj_name((Proj)p), spellings[p][0]) == 0);
        for (int k = 0; k < 4; k++) CHECK(proj_parse(spellings[p][k]) == p);
    }
    CHECK(proj_parse("qkv") == -1 && proj_parse("") == -1 && proj_parse(NULL) == -1 && proj_parse("Q") == -1);
    CHECK(proj_tap(PROJ_Q) == TAP_QKV && proj_tap(PROJ_K) == TAP_QKV && proj_tap(PROJ_V) == TAP_QKV);
    CHECK(proj_tap(PROJ_O) == TAP_O && proj_tap(PROJ_GATE) == TAP_GATE_UP && proj_tap(PROJ_UP) == TAP_GATE_UP);
    CHECK(proj_tap(PROJ_DOWN) == TAP_DOWN);
    static const char *const taps[TAP_COUNT] = {"qkv", "o", "gate_up", "down", "resid"};
    for (int t = 0; t < TAP_COUNT; t++) CHECK(strcmp(tap_name((TapPoint)t), taps[t]) == 0);
}

/* Resident bytes of this process from /proc/self/status: key "RssAnon:"
 * (heap: a conversion shows here) or "RssFile:" (mapped file pages: touching
 * the weights shows here). */
static size_t rss_kind(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL);
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0) kb = (size_t)strtoull(line + strlen(key), NULL, 10);
    fclose(f);
    return kb * 1024;
}

/* Loading (what `qscope info` does) never converts the weights: a 13 MB F16
 * model (2 blocks of width 512, hidden 1536) adds no owned bytes and under
 * 3 MB of resident heap, where a float32 conversion would add 26 MB. (Mapped
 * file pages are printed, not checked: the fingerprint reads 16 samples, and
 * how much of the page cache one read maps depends on the kernel's folio
 * sizes; on the 13 GB 7B file the mapping's RSS after load is ~1 MB.) */
static void test_load_touches_nothing(void) {
    Err err;
    err_init(&err);
    SynthConfig sc;
    CHECK_OK(synth_preset("tiny", &sc, &err), err);
    sc.type = GGML_F16;
    sc.dim = 512;
    sc.hidden_dim = 1536;
    sc.n_layers = 2;
    Synth *sy = NULL;
    CHECK_OK(synth_new(&sc, &sy, &err), err);
    CHECK_OK(synth_write(sy, tpath("big-f16.gguf"), NULL, &err), err);
    synth_free(sy);
    size_t anon0 = rss_kind("RssAnon:"), file0 = rss_kind("RssFile:");
    Model *m = load_ok(tpath("big-f16.gguf"), NULL);
    size_t anon1 = rss_kind("RssAnon:"), file1 = rss_kind("RssFile:");
    CHECK(m->file_bytes > (size_t)12 << 20 && m->owned_bytes == 0);
    CHECK(m->layers[1].proj[PROJ_DOWN].type == GGML_F16 && m->layers[1].proj[PROJ_DOWN].n_in == 1536);
    double da = ((double)anon1 - (double)anon0) / 1048576.0, df = ((double)file1 - (double)file0) / 1048576.0;
    printf("load of a %.1f MB F16 model: resident heap %+.2f MB, mapped file pages %+.2f MB\n",
           (double)m->file_bytes / 1048576.0, da, df);
    CHECKF(da < 3.0, "loading grew the resident heap by %+.2f MB (file pages %+.2f MB)", da, df);
    model_free(m);
}

int main(void) {
    test_names();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qs_test_model_load_XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    test_stories();
    test_quantized();
    test_hf_generated();
    test_gguf_generated();
    test_load_touches_nothing();
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    wf_done();
    return testlib_done("test_model_load");
}
