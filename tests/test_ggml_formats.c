/* ggml block types as plan formats: every QFAM_GGML row of the format table
 * quantizes (RTN) exactly as quant/ggml_type.h's reference quantizer does,
 * dequantizes, fake-quantizes, sizes and packs into its kernel consistently,
 * and, against llama.cpp itself, reproduces llama-quantize's bytes for every
 * tensor of a synthetic model whose rows fit K-quant super-blocks
 * (`llama-quantize --pure`: every 2-D tensor of the one type). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/pool.h"
#include "kernels/block_dot.h"
#include "kernels/cpu.h"
#include "model/gguf.h"
#include "model/synth.h"
#include "quant/format.h"
#include "quant/ggml_type.h"
#include "quant/plan.h"
#include "quant/preset.h"
#include "quant/qlinear_build.h"
#include "quant/rtn.h"
#include "tests/testlib.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* Rows with the cases the quantizers branch on: an all-zero block, a lone
 * outlier, all-positive and all-negative blocks, tiny values. */
static void fill(float *W, int64_t n_out, int64_t n_in) {
    for (int64_t i = 0; i < n_out * n_in; i++) W[i] = frand() * (i % 11 == 0 ? 2.0f : 0.3f);
    for (int64_t c = 0; c < 32; c++) W[c] = 0.0f;                           /* row 0: a zero block */
    W[1 * n_in + 40] = 25.0f;                                                /* row 1: an outlier */
    for (int64_t c = 0; c < n_in; c++) W[2 * n_in + c] = fabsf(W[2 * n_in + c]) + 0.01f;
    for (int64_t c = 0; c < n_in; c++) W[3 * n_in + c] = -fabsf(W[3 * n_in + c]) - 0.5f;
    for (int64_t c = 0; c < n_in; c++) W[4 * n_in + c] *= 1e-3f;
}

static void check_format(QFormat f, Pool *pool) {
    const QFormatTraits *t = qformat_traits(f);
    const GgmlTypeTraits *g = ggml_type_traits((uint32_t)t->ggml_type);
    CHECKF(g && g->quant_ref && g->dequant, "%s: no ggml quantizer", t->name);
    if (!g || !g->quant_ref) return;
    Err err;
    err_init(&err);
    const int64_t n_out = 12, n_in = 2 * (g->block_size < 256 ? 256 : g->block_size);
    size_t rb = ggml_row_bytes((uint32_t)t->ggml_type, n_in), n = (size_t)(n_out * n_in);
    float *W = malloc(n * sizeof *W), *dq = malloc(n * sizeof *dq), *fq = malloc(n * sizeof *fq);
    float *ref = malloc(n * sizeof *ref);
    uint8_t *blk = malloc(rb * (size_t)n_out);
    CHECK(W && dq && fq && ref && blk);
    fill(W, n_out, n_in);
    QParams p = {f, 1, GROUP_OC, 0};
    QTensor q;
    CHECK_OK(rtn_quantize(W, n_out, n_in, &p, &q, &err), err);
    CHECK(q.blk && q.n_groups == 0 && !q.scale && !q.q);
    for (int64_t r = 0; r < n_out; r++) g->quant_ref(W + r * n_in, blk + (size_t)r * rb, n_in);
    CHECKF(!memcmp(q.blk, blk, rb * (size_t)n_out), "%s: rtn bytes differ from the reference quantizer", t->name);
    for (int64_t r = 0; r < n_out; r++) g->dequant(blk + (size_t)r * rb, ref + r * n_in, n_in);
    qtensor_dequant(&q, dq);
    CHECK(!memcmp(dq, ref, n * sizeof *dq));
    CHECK_OK(rtn_fake_quantize(W, n_out, n_in, &p, fq, &err), err);
    CHECK(!memcmp(fq, ref, n * sizeof *fq));
    memcpy(fq, W, n * sizeof *fq); /* in place */
    CHECK_OK(rtn_fake_quantize(fq, n_out, n_in, &p, fq, &err), err);
    CHECK(!memcmp(fq, ref, n * sizeof *fq));
    /* the zero block decodes to zeros; the error is small against the row's range */
    for (int c = 0; c < 32; c++) CHECK(dq[c] == 0.0f);
    for (int64_t r = 0; r < n_out; r++) {
        float amax = 0, emax = 0;
        for (int64_t c = 0; c < n_in; c++) {
            amax = fmaxf(amax, fabsf(W[r * n_in + c]));
            emax = fmaxf(emax, fabsf(W[r * n_in + c] - dq[r * n_in + c]));
        }
        /* 2^-bits of the row's range, with room for K-quants' 6-bit scales */
        CHECKF(emax <= amax * ldexpf(1.0f, 2 - t->bits), "%s row %lld: error %g of max %g", t->name, (long long)r, emax,
               amax);
    }
    /* the importance-weighted variant (method imatrix) is the type's quant_w per row */
    if (g->quant_w) {
        float *qw = malloc((size_t)n_in * sizeof *qw);
        for (int64_t c = 0; c < n_in; c++) qw[c] = 0.1f + fabsf(frand()) * (c % 5 == 0 ? 10.0f : 1.0f);
        QTensor qi;
        CHECK_OK(rtn_quantize_weighted(W, n_out, n_in, &p, qw, &qi, &err), err);
        for (int64_t r = 0; r < n_out; r++) g->quant_w(W + r * n_in, blk + (size_t)r * rb, n_in, qw);
        CHECKF(!memcmp(qi.blk, blk, rb * (size_t)n_out), "%s: weighted bytes differ from quant_w", t->name);
        qtensor_done(&qi);
        free(qw);
    } else {
        QTensor qi;
        CHECK(rtn_quantize_weighted(W, n_out, n_in, &p, W, &qi, &err) == ST_ERR_UNSUPPORTED);
    }
    CHECK(qparams_bytes(&p, n_out, n_in) == rb * (size_t)n_out);
    CHECK(qparams_bits(&p, n_out, n_in) == (int64_t)(rb * (size_t)n_out * 8));
    /* rows that are not whole blocks are refused */
    CHECK(qparams_check(&p, n_out, n_in + g->block_size / 2, &err) == ST_ERR_ARG && strstr(err.detail, "multiple of"));
    /* the kernel: decode and GEMV (T = 1), tiles through the GEMM (T = 9) */
    QLinear *l = NULL;
    CHECK_OK(qlinear_new_from_qtensor(&q, NULL, &l, &err), err);
    CHECK(l->ops->bytes(l) == rb * (size_t)n_out);
    for (int64_t T = 1; T <= 9; T += 8) {
        float *x = malloc((size_t)(T * n_in) * sizeof *x), *y = malloc((size_t)(T * n_out) * sizeof *y);
        for (int64_t i = 0; i < T * n_in; i++) x[i] = frand();
        CHECK_OK(qlinear_forward(l, x, T, y, pool, &err), err);
        for (int64_t t0 = 0; t0 < T; t0++)
            for (int64_t o = 0; o < n_out; o++) {
                double s = 0, a = 0;
                for (int64_t i = 0; i < n_in; i++) {
                    s += (double)dq[o * n_in + i] * x[t0 * n_in + i];
                    a += fabs((double)dq[o * n_in + i] * x[t0 * n_in + i]);
                }
                CHECKF(fabs(y[t0 * n_out + o] - s) <= 1e-5 * a + 1e-30, "%s T %lld: y %g ref %g", t->name, (long long)T,
                       y[t0 * n_out + o], s);
            }
        free(x);
        free(y);
    }
    qlinear_free(l);
    qtensor_done(&q);
    free(W); free(dq); free(fq); free(ref); free(blk);
}

/* === against llama-quantize === */

/* Writes a synthetic f32 model of width 256 (4 heads, 2 KV heads, vocab 512)
 * to path and opens it (caller gguf_free's it). */
static Gguf *write_synth(const char *path, int64_t hidden, int64_t n_layers, uint64_t seed) {
    Err err;
    err_init(&err);
    SynthConfig cfg;
    CHECK_OK(synth_preset("tiny", &cfg, &err), err);
    cfg.dim = 256;
    cfg.hidden_dim = hidden;
    cfg.n_layers = n_layers;
    cfg.n_heads = 4;
    cfg.n_kv_heads = 2;
    cfg.vocab_size = 512;
    cfg.seed = seed;
    Synth *s = NULL;
    CHECK_OK(synth_new(&cfg, &s, &err), err);
    CHECK_OK(synth_write(s, path, NULL, &err), err);
    synth_free(s);
    Gguf *g = NULL;
    CHECK_OK(gguf_open(path, &g, &err), err);
    return g;
}

/* Writes a small synthetic model (every row length a multiple of 256),
 * quantizes it with `llama-quantize --pure` to each ggml format and compares
 * every tensor of that type with qscope's RTN of the f32 tensor. */
static void check_llama_quantize(void) {
    const char *tool = testlib_llama_tool("llama-quantize", "test_ggml_formats' byte comparison");
    if (!tool) return;
    Err err;
    err_init(&err);
    char dir[] = "/tmp/qs-ggml-fmt-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char f32[128], out[128], cmd[1024];
    snprintf(f32, sizeof f32, "%s/f32.gguf", dir);
    Gguf *ref = write_synth(f32, 512, 2, 7);
    int n_types = 0;
    for (int f = 0; f < QF_COUNT; f++) {
        const QFormatTraits *t = qformat_traits((QFormat)f);
        if (t->family != QFAM_GGML) continue;
        snprintf(out, sizeof out, "%s/%s.gguf", dir, t->name);
        snprintf(cmd, sizeof cmd, "'%s' --pure '%s' '%s' %s 1 >'%s/log' 2>&1", tool, f32, out, t->name, dir);
        int rc = system(cmd);
        CHECKF(rc == 0, "llama-quantize %s failed (see %s/log)", t->name, dir);
        if (rc) continue;
        Gguf *g = NULL;
        CHECK_OK(gguf_open(out, &g, &err), err);
        int n_same = 0;
        for (int64_t i = 0; i < g->n_tensors; i++) {
            const GgufTensor *gt = &g->tensors[i];
            if ((int)gt->type != t->ggml_type) continue;
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)gt->name.len, gt->name.s);
            const GgufTensor *rt = gguf_find_tensor(ref, name);
            CHECK(rt && rt->type == GGML_F32 && rt->ne[0] == gt->ne[0] && rt->ne[1] == gt->ne[1]);
            QParams p = {(QFormat)f, 1, GROUP_OC, 0};
            QTensor q;
            CHECK_OK(rtn_quantize(rt->data, gt->ne[1], gt->ne[0], &p, &q, &err), err);
            CHECKF(gt->nbytes == qparams_bytes(&p, gt->ne[1], gt->ne[0]) && !memcmp(q.blk, gt->data, gt->nbytes),
                   "%s: %s bytes differ from llama-quantize's", name, t->name);
            qtensor_done(&q);
            n_same++;
        }
        /* --pure: the 7 projections of 2 layers, the embedding and the head */
        CHECKF(n_same == 16, "%s: %d tensors of the type", t->name, n_same);
        gguf_free(g);
        unlink(out);
        n_types++;
    }
    printf("llama-quantize --pure: %d ggml formats byte-identical on every tensor\n", n_types);
    gguf_free(ref);
    unlink(f32);
    snprintf(cmd, sizeof cmd, "%s/log", dir);
    unlink(cmd);
    rmdir(dir);
}

/* The llama-* presets against llama-quantize's own mixtures (no imatrix) on
 * a synthetic model of 8 layers whose hidden width 320 is not a whole number
 * of K-quant super-blocks (ffn_down falls back): every tensor's type is the
 * preset's resolved format and its bytes are qscope's RTN. */
static void check_llama_mixtures(void) {
    const char *tool = testlib_llama_tool("llama-quantize", "test_ggml_formats' mixture comparison");
    if (!tool) return;
    static const char *const LT[PLAN_NPROJ] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                               "ffn_down"};
    static const struct { const char *preset, *ftype; } MIX[] = {
        {"llama-q4_k_m", "Q4_K_M"}, {"llama-q5_k_m", "Q5_K_M"}, {"llama-q4_0", "Q4_0"}, {"llama-q8_0", "Q8_0"},
        {"llama-q6_k", "Q6_K"}};
    Err err;
    err_init(&err);
    char dir[] = "/tmp/qs-ggml-mix-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char f32[128], out[128], cmd[1024];
    snprintf(f32, sizeof f32, "%s/f32.gguf", dir);
    Gguf *ref = write_synth(f32, 320, 8, 11);
    PlanModel pm = {.n_layers = 8, .dim = 256, .hidden_dim = 320, .n_heads = 4, .n_kv_heads = 2, .head_dim = 64,
                    .vocab_size = 512, .tied_embeddings = gguf_find_tensor(ref, "output.weight") == NULL};
    for (size_t k = 0; k < sizeof MIX / sizeof MIX[0]; k++) {
        Plan p;
        PlanResolved r;
        CHECK_OK(plan_preset(&p, MIX[k].preset, NULL, &pm, &err), err);
        CHECK_OK(plan_resolve(&p, &pm, &r, &err), err);
        snprintf(out, sizeof out, "%s/%s.gguf", dir, MIX[k].ftype);
        snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' %s 1 >'%s/log' 2>&1", tool, f32, out, MIX[k].ftype, dir);
        int rc = system(cmd);
        CHECKF(rc == 0, "llama-quantize %s failed (see %s/log)", MIX[k].ftype, dir);
        Gguf *g = NULL;
        if (rc || gguf_open(out, &g, &err) != ST_OK) {
            CHECK(0);
            plan_resolved_done(&r);
            plan_done(&p);
            continue;
        }
        int n_checked = 0;
        for (int64_t i = 0; i < g->n_tensors; i++) {
            const GgufTensor *gt = &g->tensors[i];
            if (gt->n_dims != 2) continue;
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)gt->name.len, gt->name.s);
            const PlanEntry *e = NULL;
            if (!strcmp(name, "token_embd.weight")) e = &r.embed.e;
            else if (!strcmp(name, "output.weight")) e = &r.output.e;
            for (int64_t l = 0; l < pm.n_layers && !e; l++)
                for (int pj = 0; pj < PLAN_NPROJ && !e; pj++) {
                    char want[64];
                    snprintf(want, sizeof want, "blk.%lld.%s.weight", (long long)l, LT[pj]);
                    if (!strcmp(name, want)) e = &r.lin[l * PLAN_NPROJ + pj].e;
                }
            CHECKF(e != NULL, "%s: no plan site", name);
            if (!e) continue;
            const QFormatTraits *t = qformat_traits(e->w.fmt);
            int want_type = t->family == QFAM_GGML ? t->ggml_type : e->w.fmt == QF_F16 ? GGML_F16 : -1;
            CHECKF((int)gt->type == want_type, "%s %s: llama-quantize wrote %s, the preset says %s", MIX[k].ftype, name,
                   ggml_type_traits(gt->type) ? ggml_type_traits(gt->type)->name : "?", t->name);
            const GgufTensor *rt = gguf_find_tensor(ref, name);
            if ((int)gt->type != want_type || !rt || t->family != QFAM_GGML) continue;
            QParams qp = e->w;
            QTensor q;
            CHECK_OK(rtn_quantize(rt->data, gt->ne[1], gt->ne[0], &qp, &q, &err), err);
            CHECKF(!memcmp(q.blk, gt->data, gt->nbytes), "%s %s: bytes differ", MIX[k].ftype, name);
            qtensor_done(&q);
            n_checked++;
        }
        CHECKF(n_checked >= 8 * 6, "%s: %d tensors compared", MIX[k].ftype, n_checked);
        printf("llama-quantize %s: the preset's types and bytes on %d tensors\n", MIX[k].ftype, n_checked);
        gguf_free(g);
        unlink(out);
        plan_resolved_done(&r);
        plan_done(&p);
    }
    gguf_free(ref);
    unlink(f32);
    snprintf(cmd, sizeof cmd, "%s/log", dir);
    unlink(cmd);
    rmdir(dir);
}

/* The importance-weighted quantizers against llama-quantize --imatrix, with
 * an imatrix llama-imatrix computes on the synthetic model: a tensor with
 * imatrix data must equal quant_w under in_sum2 / counts (llama-quantize's
 * weights), one without it the reference quantizer. */
static void check_imatrix(void) {
    const char *tool = testlib_llama_tool("llama-quantize", "test_ggml_formats' imatrix comparison");
    const char *imx = testlib_llama_tool("llama-imatrix", "test_ggml_formats' imatrix comparison");
    if (!tool || !imx) return;
    Err err;
    err_init(&err);
    char dir[] = "/tmp/qs-ggml-imx-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char f32[128], im[128], out[128], cmd[2048];
    snprintf(f32, sizeof f32, "%s/f32.gguf", dir);
    snprintf(im, sizeof im, "%s/imatrix.gguf", dir);
    Gguf *ref = write_synth(f32, 512, 2, 5);
    snprintf(cmd, sizeof cmd, "'%s' -m '%s' -f '%s' -o '%s' -c 128 --chunks 4 -t 2 >'%s/log' 2>&1", imx, f32,
             testlib_shared("text/tinystories_sample.txt"), im, dir);
    int rc = system(cmd);
    CHECKF(rc == 0, "llama-imatrix failed (see %s/log)", dir);
    Gguf *ig = NULL;
    if (rc || gguf_open(im, &ig, &err) != ST_OK) {
        CHECK(0);
        gguf_free(ref);
        return;
    }
    for (int f = 0; f < QF_COUNT; f++) {
        const QFormatTraits *t = qformat_traits((QFormat)f);
        if (t->family != QFAM_GGML || !ggml_type_traits((uint32_t)t->ggml_type)->quant_w) continue;
        const GgmlTypeTraits *g = ggml_type_traits((uint32_t)t->ggml_type);
        snprintf(out, sizeof out, "%s/%s.gguf", dir, t->name);
        snprintf(cmd, sizeof cmd, "'%s' --pure --imatrix '%s' '%s' '%s' %s 1 >'%s/log' 2>&1", tool, im, f32, out,
                 t->name, dir);
        rc = system(cmd);
        CHECKF(rc == 0, "llama-quantize --imatrix %s failed (see %s/log)", t->name, dir);
        Gguf *gq = NULL;
        if (rc || gguf_open(out, &gq, &err) != ST_OK) continue;
        int n_w = 0, n_ref = 0;
        for (int64_t i = 0; i < gq->n_tensors; i++) {
            const GgufTensor *gt = &gq->tensors[i];
            if ((int)gt->type != t->ggml_type) continue;
            char name[128], key[160];
            snprintf(name, sizeof name, "%.*s", (int)gt->name.len, gt->name.s);
            const GgufTensor *rt = gguf_find_tensor(ref, name);
            snprintf(key, sizeof key, "%s.in_sum2", name);
            const GgufTensor *sums = gguf_find_tensor(ig, key);
            snprintf(key, sizeof key, "%s.counts", name);
            const GgufTensor *cnt = gguf_find_tensor(ig, key);
            int64_t n_in = gt->ne[0], n_out = gt->ne[1];
            size_t rb = ggml_row_bytes((uint32_t)t->ggml_type, n_in);
            uint8_t *mine = malloc(rb * (size_t)n_out);
            float *qw = malloc((size_t)n_in * sizeof *qw);
            const float *x = rt->data;
            if (sums && cnt && ((const float *)cnt->data)[0] > 0) {
                float c = ((const float *)cnt->data)[0];
                for (int64_t k = 0; k < n_in; k++) qw[k] = ((const float *)sums->data)[k] / c;
                for (int64_t r = 0; r < n_out; r++) g->quant_w(x + r * n_in, mine + (size_t)r * rb, n_in, qw);
                n_w++;
            } else {
                for (int64_t r = 0; r < n_out; r++) g->quant_ref(x + r * n_in, mine + (size_t)r * rb, n_in);
                n_ref++;
            }
            CHECKF(!memcmp(mine, gt->data, gt->nbytes), "%s --imatrix: %s bytes differ", t->name, name);
            free(mine);
            free(qw);
        }
        CHECKF(n_w >= 14, "%s: %d tensors with imatrix data", t->name, n_w);
        printf("llama-quantize --imatrix %s: %d weighted + %d reference tensors byte-identical\n", t->name, n_w, n_ref);
        gguf_free(gq);
        unlink(out);
    }
    gguf_free(ig);
    gguf_free(ref);
    unlink(im);
    unlink(f32);
    snprintf(cmd, sizeof cmd, "%s/log", dir);
    unlink(cmd);
    rmdir(dir);
}

/* The fused single-token dots against their scalar twins and the decoded
 * row (tolerance 1e-5 of Σ|w·x|: float accumulation per block). */
static void check_block_dots(void) {
    static const struct { QFormat f; BlockDotKind k; BlockDotFn ref, fast; } D[] = {
        {QF_Q4_0, BLOCK_DOT_Q4_0, block_dot_q4_0_ref, block_dot_q4_0_avx512},
        {QF_Q8_0, BLOCK_DOT_Q8_0, block_dot_q8_0_ref, block_dot_q8_0_avx512},
        {QF_Q4_K, BLOCK_DOT_Q4_K, block_dot_q4_k_ref, block_dot_q4_k_avx512}};
    Err err;
    err_init(&err);
    const int64_t k = 4096;
    float *W = malloc((size_t)k * sizeof *W), *x = malloc((size_t)k * sizeof *x), *dq = malloc((size_t)k * sizeof *dq);
    for (int64_t i = 0; i < k; i++) {
        W[i] = frand() * (i % 97 == 0 ? 8.0f : 1.0f);
        x[i] = frand();
    }
    for (size_t i = 0; i < sizeof D / sizeof D[0]; i++) {
        const QFormatTraits *t = qformat_traits(D[i].f);
        CHECK(t->block_dot == (int)D[i].k && block_dot_fn(D[i].k) != NULL);
        QParams p = {D[i].f, 1, GROUP_OC, 0};
        QTensor q;
        CHECK_OK(rtn_quantize(W, 1, k, &p, &q, &err), err);
        qtensor_dequant(&q, dq);
        double s = 0, a = 0;
        for (int64_t j = 0; j < k; j++) {
            s += (double)dq[j] * x[j];
            a += fabs((double)dq[j] * x[j]);
        }
        float r = D[i].ref(q.blk, x, k);
        CHECKF(fabs(r - s) <= 1e-6 * a, "%s ref dot %g vs %g", t->name, r, s);
        if (cpu_has_avx512f()) {
            float f = D[i].fast(q.blk, x, k);
            CHECKF(fabs(f - r) <= 1e-5 * a, "%s avx512 dot %g vs ref %g", t->name, f, r);
        }
        qtensor_done(&q);
    }
    CHECK(block_dot_fn(BLOCK_DOT_NONE) == NULL);
    free(W);
    free(x);
    free(dq);
}

int main(void) {
    Err err;
    err_init(&err);
    Pool *pool = NULL;
    CHECK_OK(pool_new(2, &pool, &err), err);
    int n = 0;
    for (int f = 0; f < QF_COUNT; f++)
        if (qformat_traits((QFormat)f)->family == QFAM_GGML) {
            check_format((QFormat)f, pool);
            n++;
        }
    CHECK(n >= 2);
    CHECK(qformat_parse("q4_0") == QF_Q4_0 && qformat_parse("Q8_0") == QF_Q8_0);
    {   /* imatrix is a method of ggml formats only */
        QParams pi = {QF_INT4, 1, GROUP_OC, 0};
        QTensor qi;
        float w[64], qw[64];
        for (int i = 0; i < 64; i++) w[i] = qw[i] = 1.0f;
        CHECK(rtn_quantize_weighted(w, 1, 64, &pi, qw, &qi, &err) == ST_ERR_UNSUPPORTED);
        CHECK(qmethod_parse("imatrix") == QM_IMATRIX);
    }
    check_block_dots();
    check_llama_quantize();
    check_llama_mixtures();
    check_imatrix();
    pool_free(pool);
    return testlib_done("test_ggml_formats");
}
