/* AQLM: bit accounting on hand-computed cases, parameter errors, every
 * kernel against its scalar reference (at each dispatch level), the
 * quantizer's invariants (k-means init beats a random one, the loss never
 * goes up, reported loss = recomputed loss, pool-size independence, cancel),
 * quality against RTN and GPTQ at equal code bits on stories260K's real
 * projections with H from the model's own activations, and at equal total
 * bits on a 4096x4096 layer with a heavy-tailed synthetic H. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/fpconv.h"
#include "core/mapfile.h"
#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "kernels/aqlm_kernels.h"
#include "kernels/cpu.h"
#include "kernels/sgemm.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "quant/aqlm.h"
#include "quant/gptq.h"
#include "quant/plan.h"
#include "quant/preset.h"
#include "quant/qlinear_aqlm.h"
#include "quant/qtensor.h"
#include "quant/rtn.h"
#include "tests/testlib.h"

static uint64_t rng = 0x243F6A8885A308D3ull;
static double urand(void) { /* [0, 1) */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}
static float frand(void) { return (float)(urand() * 2.0 - 1.0); }
static double nrand(void) {
    double u = urand(), v = urand();
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* === Bit accounting === */

static void test_bits(void) {
    AqlmParams p28 = {2, 8, 8}, p18g4 = {1, 8, 4}, p116 = {1, 16, 8}, p38 = {3, 8, 8};
    /* 4096x4096, 2x8, g 8:
     *   codebooks 16·8·2·256      =     65 536
     *   codes     4096·512·8·2    = 33 554 432
     *   scales    16·4096         =     65 536
     *   total                     = 33 685 504 bits = 4 210 688 bytes
     *   b̄ = 33 685 504 / 16 777 216 = 2.0078125 exactly (2 + 2·65536/2^24). */
    CHECK(aqlm_codebook_bits(&p28) == 65536);
    CHECK(aqlm_bits(&p28, 4096, 4096) == 33685504ull);
    CHECK(aqlm_bytes(&p28, 4096, 4096) == 4210688);
    CHECK(aqlm_bpw(&p28, 4096, 4096) == 2.0078125);
    CHECK(aqlm_code_bpw(&p28) == 2.0);
    /* stories260K's 64x64 q: the same codebooks (65 536 bits) against 4096
     * weights: codes 64·8·16 = 8192, scales 1024, total 74 752 bits = 18.25 bpw. */
    CHECK(aqlm_bits(&p28, 64, 64) == 74752ull);
    CHECK(aqlm_bpw(&p28, 64, 64) == 18.25);
    CHECK(aqlm_bytes(&p28, 64, 64) == 9344);
    /* 1x16 g8 on 64x64: codebook 16·8·65536 = 8 388 608 bits; + 8192 + 1024
     * = 8 397 824 bits = 2050.25 bpw. */
    CHECK(aqlm_bits(&p116, 64, 64) == 8397824ull);
    CHECK(aqlm_bpw(&p116, 64, 64) == 2050.25);
    CHECK(aqlm_code_bpw(&p116) == 2.0);
    /* 1x8 g4 on down_proj (64x172): 16·4·256 = 16 384; 64·43·8 = 22 016;
     * 1024 scales: 39 424 bits = 4928 bytes over 11 008 weights. */
    CHECK(aqlm_bits(&p18g4, 64, 172) == 39424ull);
    CHECK(aqlm_bytes(&p18g4, 64, 172) == 4928);
    CHECK_NEAR(aqlm_bpw(&p18g4, 64, 172), 39424.0 / 11008.0, 1e-12);
    CHECK(aqlm_code_bpw(&p18g4) == 2.0);
    /* 3x8 g8: 3 code bits; 4096x11008 (a 7B down_proj transposed shape):
     * 16·8·3·256 + 4096·1376·24 + 65536 = 98 304 + 135 266 304 + 65 536. */
    CHECK(aqlm_code_bpw(&p38) == 3.0);
    CHECK(aqlm_bits(&p38, 4096, 11008) == 98304ull + 135266304ull + 65536ull);
    /* Odd bit totals round up to whole bytes: 1x3 g1 on 1x1 = 16·1·8 + 3 + 16 = 147 bits. */
    AqlmParams p13 = {1, 3, 1};
    CHECK(aqlm_bits(&p13, 1, 1) == 147);
    CHECK(aqlm_bytes(&p13, 1, 1) == 19);
}

static void test_params(void) {
    Err err;
    AqlmParams p;
    err_init(&err);
    AqlmParams ok = {2, 8, 8};
    CHECK(aqlm_params_check(&ok, 64, 64, &err) == ST_OK);
    CHECK(aqlm_params_check(&ok, 64, 172, &err) == ST_ERR_ARG);
    CHECKF(strcmp(err.detail, "aqlm: group 8 does not divide input dim 172") == 0, "%s", err.detail);
    AqlmParams big = {3, 16, 8};
    CHECK(aqlm_params_check(&big, 64, 64, &err) == ST_ERR_ARG);
    CHECKF(strstr(err.detail, "M*B = 3*16 = 48 bits per group exceeds 32") != NULL, "%s", err.detail);
    AqlmParams b17 = {1, 17, 8};
    CHECK(aqlm_params_check(&b17, 64, 64, &err) == ST_ERR_ARG);
    CHECKF(strstr(err.detail, "17 bits per code") != NULL, "%s", err.detail);
    AqlmParams m0 = {0, 8, 8};
    CHECK(aqlm_params_check(&m0, 64, 64, &err) == ST_ERR_ARG);
    CHECKF(strstr(err.detail, "0 codebooks") != NULL, "%s", err.detail);
    AqlmParams g0 = {1, 8, 0};
    CHECK(aqlm_params_check(&g0, 64, 64, &err) == ST_ERR_ARG);
    CHECKF(strstr(err.detail, "group size 0") != NULL, "%s", err.detail);
    CHECK(aqlm_params_check(&ok, 0, 64, &err) == ST_ERR_ARG);

    CHECK_OK(aqlm_params_parse("2x8", &p, &err), err);
    CHECK(p.M == 2 && p.B == 8 && p.g == 8);
    CHECK_OK(aqlm_params_parse("1x16g8", &p, &err), err);
    CHECK(p.M == 1 && p.B == 16 && p.g == 8);
    CHECK_OK(aqlm_params_parse("1x8g4", &p, &err), err);
    CHECK(p.M == 1 && p.B == 8 && p.g == 4);
    char name[32];
    CHECK(strcmp(aqlm_params_name(&p, name, sizeof name), "1x8g4") == 0);
    p = ok;
    CHECK(aqlm_params_parse("2x8g", &p, &err) == ST_ERR_ARG);
    CHECK(p.M == 2 && p.B == 8 && p.g == 8); /* untouched on error */
    CHECK(aqlm_params_parse("2y8", &p, &err) == ST_ERR_ARG);
    CHECKF(strstr(err.detail, "is not MxB or MxBgG") != NULL, "%s", err.detail);
    CHECK(aqlm_params_parse("2x8g8x", &p, &err) == ST_ERR_ARG);
    CHECK(aqlm_params_parse("4x16", &p, &err) == ST_ERR_ARG);
    CHECK(aqlm_params_parse(NULL, &p, &err) == ST_ERR_ARG);

    /* The quantizer and the layer refuse the same things. */
    float W[64 * 12];
    for (int i = 0; i < 64 * 12; i++) W[i] = frand();
    AqlmTensor t;
    AqlmParams g8 = {1, 4, 8};
    CHECK(aqlm_quantize(W, 64, 12, NULL, &g8, NULL, NULL, NULL, &t, NULL, &err) == ST_ERR_ARG);
    CHECKF(strcmp(err.detail, "aqlm: group 8 does not divide input dim 12") == 0, "%s", err.detail);
    CHECK(t.codebooks == NULL && t.codes == NULL);
    AqlmOpts o;
    aqlm_opts_default(&o);
    o.beam = 0;
    AqlmParams g4 = {1, 4, 4};
    CHECK(aqlm_quantize(W, 64, 12, NULL, &g4, &o, NULL, NULL, &t, NULL, &err) == ST_ERR_ARG);
    CHECKF(strstr(err.detail, "beam width 0") != NULL, "%s", err.detail);
    aqlm_opts_default(&o);
    o.max_iters = AQLM_MAX_TRACE + 1;
    CHECK(aqlm_quantize(W, 64, 12, NULL, &g4, &o, NULL, NULL, &t, NULL, &err) == ST_ERR_ARG);
    W[5 * 12 + 7] = NAN;
    CHECK(aqlm_quantize(W, 64, 12, NULL, &g4, NULL, NULL, NULL, &t, NULL, &err) == ST_ERR_NUMERIC);
    CHECKF(strcmp(err.detail, "aqlm: non-finite weight at row 5, column 7") == 0, "%s", err.detail);
    CHECK(t.codebooks == NULL && t.codes == NULL && t.scales == NULL);
}

/* === Presets and plan entries === */

static void test_presets(void) {
    Err err;
    /* stories260K's shape: dim 64, hidden 172, 5 layers, 8 heads of 8, 4 KV heads. */
    PlanModel m = {.n_layers = 5, .dim = 64, .hidden_dim = 172, .n_heads = 8, .n_kv_heads = 4,
                   .head_dim = 8, .vocab_size = 512, .tied_embeddings = 1};
    Plan p;
    CHECK_OK(plan_preset(&p, "aqlm-2x8", NULL, &m, &err), err);
    CHECK(p.def.w.fmt == QF_AQLM && p.def.method == QM_AQLM);
    CHECK(p.def.aqlm.M == 2 && p.def.aqlm.B == 8 && p.def.aqlm.g == 8);
    CHECK(p.n_rules == 1 && strcmp(p.rules[0].pattern, "*.down") == 0);
    CHECK(p.rules[0].e.aqlm.M == 1 && p.rules[0].e.aqlm.B == 8 && p.rules[0].e.aqlm.g == 4);
    CHECK(p.n_notes == 1);
    CHECKF(strcmp(p.notes[0], "*.down: aqlm 2x8g8 -> 1x8g4 (8 does not divide 172; same 2 code bits)") == 0, "%s",
           p.notes[0]);
    /* Size: 4 q/o/gate/up-shaped and 2 k/v matrices at 2x8g8 plus down at
     * 1x8g4, per layer, exactly as aqlm_bits counts them. */
    PlanSize sz;
    CHECK_OK(plan_size(&p, &m, NULL, &sz, &err), err);
    AqlmParams a28 = {2, 8, 8}, a18 = {1, 8, 4};
    uint64_t per_layer = 2 * aqlm_bits(&a28, 64, 64) + 2 * aqlm_bits(&a28, 32, 64) + 2 * aqlm_bits(&a28, 172, 64) +
                         aqlm_bits(&a18, 64, 172);
    CHECK(sz.lin_bits == (int64_t)(5 * per_layer));
    CHECK(sz.lin_params == 5 * 45312);
    CHECK_NEAR(sz.bpw_lin, 5.0 * per_layer / (5 * 45312.0), 1e-12);
    printf("preset aqlm-2x8 on stories260K: %.4f bits/weight over the linear layers (code bits 2)\n", sz.bpw_lin);
    plan_done(&p);

    CHECK_OK(plan_preset(&p, "aqlm-1x8", NULL, &m, &err), err);
    CHECK(p.n_rules == 0 && p.def.aqlm.g == 4);
    plan_done(&p);
    CHECK_OK(plan_preset(&p, "aqlm-1x16", NULL, &m, &err), err);
    CHECK(p.n_rules == 1 && p.rules[0].e.aqlm.B == 8 && p.rules[0].e.aqlm.g == 4);
    plan_done(&p);
    /* An odd hidden width: 171 = 9·19, so 2x8g8 falls back to 1x6g3 (still 2 code bits). */
    m.hidden_dim = 171;
    CHECK_OK(plan_preset(&p, "aqlm-2x8", NULL, &m, &err), err);
    CHECK(p.n_rules == 1 && p.rules[0].e.aqlm.M == 1 && p.rules[0].e.aqlm.B == 6 && p.rules[0].e.aqlm.g == 3);
    plan_done(&p);
    m.hidden_dim = 172;

    /* Malformed aqlm entries are refused with the rule and the reason. */
    CHECK_OK(plan_preset(&p, "aqlm-2x8", NULL, &m, &err), err);
    plan_remove_rule(&p, 0, &err);
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECKF(strstr(err.detail, "group 8 does not divide") != NULL && strstr(err.detail, "172") != NULL, "%s",
           err.detail);
    PlanEntry bad = p.def;
    bad.aqlm = (AqlmParams){3, 16, 8};
    CHECK_OK(plan_add_rule(&p, "*.down", PF_METHOD, &bad, &err), err);
    CHECK(plan_validate(&p, &m, &err) == ST_ERR_ARG);
    CHECKF(strstr(err.detail, "3x16") != NULL, "%s", err.detail);
    plan_done(&p);
}

/* === Kernels vs references === */

typedef struct RandPacked {
    AqlmPacked pk;
    float *cb, *cbt, *scales;
    uint8_t *c8;
    uint16_t *c16;
} RandPacked;

static void rand_packed(RandPacked *r, int M, int B, int g, int64_t n_out, int64_t n_in) {
    int64_t K = (int64_t)1 << B, ng = n_in / g, nc = n_out * ng * M;
    r->cb = malloc((size_t)(M * K * g) * sizeof *r->cb);
    r->cbt = malloc((size_t)(M * K * g) * sizeof *r->cbt);
    r->scales = malloc((size_t)n_out * sizeof *r->scales);
    r->c16 = malloc((size_t)nc * sizeof *r->c16);
    r->c8 = B <= 8 ? malloc((size_t)nc) : NULL;
    CHECK(r->cb && r->cbt && r->scales && r->c16 && (B > 8 || r->c8));
    for (int64_t q = 0; q < M * K * g; q++) r->cb[q] = frand();
    for (int m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++)
            for (int a = 0; a < g; a++) r->cbt[((int64_t)m * g + a) * K + k] = r->cb[((int64_t)m * K + k) * g + a];
    for (int64_t i = 0; i < n_out; i++) r->scales[i] = 0.5f + (float)urand();
    for (int64_t q = 0; q < nc; q++) {
        r->c16[q] = (uint16_t)(urand() * (double)K);
        if (r->c8) r->c8[q] = (uint8_t)r->c16[q];
    }
    r->pk = (AqlmPacked){.M = M, .B = B, .g = g, .n_out = n_out, .n_in = n_in, .n_groups = ng, .K = K,
                         .cb = r->cb, .cbt = r->cbt, .codes8 = r->c8, .codes16 = r->c8 ? NULL : r->c16,
                         .scales = r->scales};
}

static void rand_packed_free(RandPacked *r) {
    free(r->cb);
    free(r->cbt);
    free(r->scales);
    free(r->c8);
    free(r->c16);
}

/* Σ_c |W^[i,c]·x[c]| per row: the scale of the rounding a float sum can make. */
static void abs_dots(const AqlmPacked *w, const float *x, int64_t T, double *out) {
    float *Wd = malloc((size_t)(w->n_out * w->n_in) * sizeof *Wd);
    CHECK(Wd != NULL);
    aqlm_decode_rows_ref(w, 0, w->n_out, Wd);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < w->n_out; i++) {
            double s = 0;
            for (int64_t c = 0; c < w->n_in; c++) s += fabs((double)Wd[i * w->n_in + c] * x[t * w->n_in + c]);
            out[t * w->n_out + i] = s;
        }
    free(Wd);
}

static void check_packed(int M, int B, int g, int64_t n_out, int64_t n_in, Pool *pool) {
    RandPacked r;
    rand_packed(&r, M, B, g, n_out, n_in);
    const AqlmPacked *w = &r.pk;
    int64_t Tmax = AQLM_PREFILL_DECODE_T + 5;
    float *x = malloc((size_t)(Tmax * n_in) * sizeof *x);
    float *y = malloc((size_t)(Tmax * n_out) * sizeof *y), *yr = malloc((size_t)(Tmax * n_out) * sizeof *yr);
    double *ab = malloc((size_t)(Tmax * n_out) * sizeof *ab);
    float *Wd = malloc((size_t)(n_out * n_in) * sizeof *Wd), *Wr = malloc((size_t)(n_out * n_in) * sizeof *Wr);
    CHECK(x && y && yr && ab && Wd && Wr);
    for (int64_t q = 0; q < Tmax * n_in; q++) x[q] = frand();
    abs_dots(w, x, Tmax, ab);

    /* Decode: the same sums of M codewords times s_i; float vs double sum of M terms. */
    aqlm_decode_rows(w, 0, n_out, Wd);
    aqlm_decode_rows_ref(w, 0, n_out, Wr);
    for (int64_t q = 0; q < n_out * n_in; q++) CHECK_NEAR(Wd[q], Wr[q], 1e-6 * M * 1.5);

    /* Gather GEMV (any B): tolerance 1e-5 of Σ|terms|. */
    aqlm_gather_gemv_rows(w, x, 0, n_out, y);
    aqlm_gather_gemv_rows_ref(w, x, 0, n_out, yr);
    for (int64_t i = 0; i < n_out; i++) CHECK_NEAR(y[i], yr[i], 1e-5 * ab[i] + 1e-7);

    size_t lutn = aqlm_lut_floats(w);
    float *lut = malloc(lutn * sizeof *lut), *lutr = malloc(lutn * sizeof *lutr);
    CHECK(lut && lutr);
    if (B <= 8) {
        /* LUT build: entries are g-term dots of values in [-1, 1]. */
        aqlm_lut_build(w, x, lut);
        aqlm_lut_build_ref(w, x, lutr);
        for (size_t q = 0; q < lutn; q++) CHECK_NEAR(lut[q], lutr[q], 1e-6 * g);
        /* LUT gather on the same table: only the summation order differs. */
        aqlm_lut_gemv_rows(w, lutr, 0, n_out, y);
        aqlm_lut_gemv_rows_ref(w, lutr, 0, n_out, yr);
        for (int64_t i = 0; i < n_out; i++) {
            double sabs = 0;
            int64_t nt = w->n_groups * M;
            for (int64_t t = 0; t < nt; t++) sabs += fabs(lutr[t * w->K + w->codes8[i * nt + t]]);
            CHECK_NEAR(y[i], yr[i], 1e-5 * sabs * r.scales[i] + 1e-7);
        }
        /* Partial row ranges touch only their rows. */
        for (int64_t i = 0; i < n_out; i++) y[i] = -99.0f;
        aqlm_lut_gemv_rows(w, lutr, 1, n_out - 1, y);
        CHECK(y[0] == -99.0f && y[n_out - 1] == -99.0f);
    }
    /* The whole product at T = 1, 3 (GEMV per token, LUT and gather) and
     * T >= AQLM_PREFILL_DECODE_T (tile decode + sgemm), against the double
     * reference: 2e-5 of Σ|terms| (float LUT entries, float accumulation). */
    float *tile = malloc((aqlm_gemm_scratch_floats(w, Tmax) + 1) * sizeof *tile);
    CHECK(tile != NULL);
    int64_t Ts[3] = {1, 3, Tmax};
    for (int ti = 0; ti < 3; ti++) {
        int64_t T = Ts[ti];
        aqlm_gemm_ref(w, x, T, yr);
        for (int use_lut = 0; use_lut < 2; use_lut++) {
            aqlm_gemm(w, x, T, y, use_lut ? lut : NULL, tile, pool);
            for (int64_t q = 0; q < T * n_out; q++) CHECK_NEAR(y[q], yr[q], 2e-5 * ab[q] + 1e-6);
        }
    }
    CHECK(aqlm_gemm_scratch_floats(w, AQLM_PREFILL_DECODE_T - 1) == 0);

    /* The QLinear built from the same tensor runs the same numbers. */
    AqlmTensor t = {.p = {M, B, g}, .n_out = n_out, .n_in = n_in, .n_groups = w->n_groups, .K = w->K,
                    .codebooks = r.cb, .codes = r.c16, .scales = r.scales};
    QLinear *l = NULL;
    Err err;
    CHECK_OK(qlinear_aqlm_new(&t, &l, &err), err);
    CHECK(qlinear_is_aqlm(l));
    CHECK(strcmp(qlinear_aqlm_kernel(l), B <= 8 ? "aqlm-lut" : "aqlm-gather") == 0);
    CHECK(l->ops->bytes(l) == aqlm_bytes(&t.p, n_out, n_in));
    for (int ti = 0; ti < 3; ti++) {
        int64_t T = Ts[ti];
        aqlm_gemm_ref(w, x, T, yr);
        CHECK_OK(qlinear_forward(l, x, T, y, pool, &err), err);
        for (int64_t q = 0; q < T * n_out; q++) CHECK_NEAR(y[q], yr[q], 2e-5 * ab[q] + 1e-6);
    }
    l->ops->free(l);
    /* A code past 2^B - 1 is refused. */
    uint16_t keep = r.c16[0];
    r.c16[0] = (uint16_t)w->K;
    if (B < 16) {
        CHECK(qlinear_aqlm_new(&t, &l, &err) == ST_ERR_RANGE);
        CHECK(l == NULL);
    }
    r.c16[0] = keep;

    free(tile);
    free(lut);
    free(lutr);
    free(x);
    free(y);
    free(yr);
    free(ab);
    free(Wd);
    free(Wr);
    rand_packed_free(&r);
}

static void check_small_kernels(void) {
    /* aqlm_dots: tolerance 1e-5 of Σ|terms|. */
    int64_t Ks[4] = {4, 48, 256, 1000};
    int gs[3] = {3, 4, 8};
    for (int ki = 0; ki < 4; ki++)
        for (int gi = 0; gi < 3; gi++) {
            int64_t K = Ks[ki];
            int g = gs[gi];
            float *CT = malloc((size_t)(K * g) * sizeof *CT), *q = malloc((size_t)K * sizeof *q);
            float *o = malloc((size_t)K * sizeof *o), *orf = malloc((size_t)K * sizeof *orf);
            float u[8];
            CHECK(CT && q && o && orf);
            for (int64_t t = 0; t < K * g; t++) CT[t] = frand();
            for (int64_t t = 0; t < K; t++) q[t] = frand();
            for (int a = 0; a < g; a++) u[a] = frand();
            for (int withq = 0; withq < 2; withq++) {
                aqlm_dots(CT, K, g, u, withq ? q : NULL, 0.75f, o);
                aqlm_dots_ref(CT, K, g, u, withq ? q : NULL, 0.75f, orf);
                for (int64_t k = 0; k < K; k++) {
                    double sabs = withq ? fabs(0.75 * q[k]) : 0;
                    for (int a = 0; a < g; a++) sabs += fabs((double)u[a] * CT[(int64_t)a * K + k]);
                    CHECK_NEAR(o[k], orf[k], 1e-5 * sabs + 1e-7);
                }
            }
            /* argmin: exact, first of equal minima. */
            CHECK(aqlm_argmin(o, K) == aqlm_argmin_ref(o, K));
            o[K - 1] = -5.0f;
            CHECK(aqlm_argmin(o, K) == K - 1);
            if (K > 2) {
                o[K / 2] = -5.0f;
                CHECK(aqlm_argmin(o, K) == K / 2);
                CHECK(aqlm_argmin_ref(o, K) == K / 2);
            }
            free(CT);
            free(q);
            free(o);
            free(orf);
        }
    float one = 3.0f;
    CHECK(aqlm_argmin(&one, 1) == 0);

    /* aqlm_rank_update: Y -= D·Hj, tolerance 1e-5 of Σ|terms|. */
    int64_t ns[3] = {37, 64, 130};
    for (int ni = 0; ni < 3; ni++)
        for (int gi = 1; gi < 3; gi++) {
            int64_t n = ns[ni], rows = 5, ldh = n + 3, ldy = n + 1;
            int g = gs[gi];
            float *Y = malloc((size_t)(rows * ldy) * sizeof *Y), *Yr = malloc((size_t)(rows * ldy) * sizeof *Yr);
            float *D = malloc((size_t)(rows * g) * sizeof *D), *Hj = malloc((size_t)(g * ldh) * sizeof *Hj);
            CHECK(Y && Yr && D && Hj);
            for (int64_t t = 0; t < rows * ldy; t++) Y[t] = Yr[t] = frand();
            for (int64_t t = 0; t < rows * g; t++) D[t] = frand();
            for (int64_t t = 0; t < g * ldh; t++) Hj[t] = frand();
            aqlm_rank_update(Y, ldy, rows, D, g, Hj, ldh, n);
            aqlm_rank_update_ref(Yr, ldy, rows, D, g, Hj, ldh, n);
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < ldy; c++) {
                    double sabs = 1.0;
                    for (int a = 0; a < g && c < n; a++) sabs += fabs((double)D[r * g + a] * Hj[a * ldh + c]);
                    CHECK_NEAR(Y[r * ldy + c], Yr[r * ldy + c], 1e-5 * sabs);
                }
            free(Y);
            free(Yr);
            free(D);
            free(Hj);
        }
}

static void test_kernels(Pool *pool) {
    const char *levels[3] = {NULL, "avx2", "scalar"};
    for (int lv = 0; lv < 3; lv++) {
        if (levels[lv]) setenv("QS_CPU", levels[lv], 1);
        else unsetenv("QS_CPU");
        cpu_refresh();
        check_small_kernels();
        check_packed(2, 8, 8, 37, 64, pool);   /* LUT, 16 codes per row: one gather step */
        check_packed(1, 8, 4, 20, 172, pool);  /* LUT, 43 codes per row: tail */
        check_packed(3, 5, 8, 33, 48, pool);   /* LUT with K = 32 */
        check_packed(1, 2, 8, 5, 16, pool);    /* K = 4: every vector loop's tail */
        check_packed(1, 16, 8, 9, 64, pool);   /* gather, 2^16 codewords */
        check_packed(2, 10, 8, 17, 40, pool);  /* gather, M = 2 */
        check_packed(1, 12, 4, 7, 20, pool);   /* gather with g = 4 (scalar path) */
        printf("kernels vs ref at %s: ok\n", cpu_describe());
    }
    unsetenv("QS_CPU");
    cpu_refresh();
}

/* === Quantizer invariants === */

/* H = XᵀX / T for T rows of correlated inputs (AR(1) along the channel
 * index) with a few channels scaled up: a small stand-in for activations. */
static double *synth_h(int64_t n, int64_t T, int n_outlier, double outlier_scale) {
    double *H = calloc((size_t)(n * n), sizeof *H);
    double *x = malloc((size_t)n * sizeof *x);
    CHECK(H && x);
    for (int64_t t = 0; t < T; t++) {
        double prev = 0;
        for (int64_t c = 0; c < n; c++) {
            prev = 0.6 * prev + nrand();
            x[c] = prev * (c < n_outlier ? outlier_scale : 1.0);
        }
        for (int64_t a = 0; a < n; a++)
            for (int64_t b = 0; b < n; b++) H[a * n + b] += x[a] * x[b] / (double)T;
    }
    free(x);
    return H;
}

static int fp16_exact(float v) { return fp16_to_f32(f32_to_fp16(v)) == v; }

static void check_tensor_sane(const AqlmTensor *t) {
    for (int64_t q = 0; q < t->p.M * t->K * t->p.g; q++) CHECK(fp16_exact(t->codebooks[q]));
    for (int64_t i = 0; i < t->n_out; i++) CHECK(fp16_exact(t->scales[i]));
    for (int64_t q = 0; q < t->n_out * t->n_groups * t->p.M; q++) CHECK(t->codes[q] < t->K);
}

static void test_quantizer(Pool *pool) {
    Err err;
    const int64_t n_out = 48, n_in = 64;
    float *W = malloc((size_t)(n_out * n_in) * sizeof *W), *Wq = malloc((size_t)(n_out * n_in) * sizeof *Wq);
    CHECK(W && Wq);
    for (int64_t q = 0; q < n_out * n_in; q++) W[q] = (float)(0.02 * nrand());
    double *H = synth_h(n_in, 512, 3, 8.0);
    AqlmParams p = {1, 6, 8}; /* 64 codewords for 384 groups: the codes matter */
    AqlmOpts o;
    aqlm_opts_default(&o);

    /* k-means start vs Gaussian codebooks of the same spread (both then
     * assigned greedily): the k-means one starts lower. */
    AqlmTensor t, tr;
    AqlmReport rk, rr;
    o.max_iters = 0;
    CHECK_OK(aqlm_quantize(W, n_out, n_in, H, &p, &o, pool, NULL, &t, &rk, &err), err);
    o.init = AQLM_INIT_RANDOM;
    CHECK_OK(aqlm_quantize(W, n_out, n_in, H, &p, &o, pool, NULL, &tr, &rr, &err), err);
    printf("synthetic 48x64 1x6g8: init loss k-means %.5g, random %.5g (W^=0: %.5g)\n", rk.loss[0],
           rr.loss[0], rk.loss_zero);
    CHECK(rk.loss[0] < 0.8 * rr.loss[0]);
    CHECK(rk.loss[0] < rk.loss_zero);
    aqlm_tensor_done(&t);
    aqlm_tensor_done(&tr);

    /* Alternating optimisation: the loss never rises (up to the fp16
     * rounding of codebooks and scales: 1e-4 relative), and it ends well
     * below the start. The reported loss is the recomputed one. */
    AqlmParams pb = {2, 5, 8}; /* two codebooks, so the beam has something to search */
    double final_loss[4] = {0};
    for (int beam = 1; beam <= 3; beam += 2) {
        aqlm_opts_default(&o);
        o.max_iters = 8;
        o.tau = 0;
        o.beam = beam;
        AqlmReport rep;
        CHECK_OK(aqlm_quantize(W, n_out, n_in, H, &pb, &o, pool, NULL, &t, &rep, &err), err);
        CHECK(rep.iters == 8);
        final_loss[beam] = rep.loss[rep.iters];
        printf("beam %d: loss", beam);
        for (int it = 0; it <= rep.iters; it++) printf(" %.5g", rep.loss[it]);
        printf("\n");
        for (int it = 1; it <= rep.iters; it++) CHECK(rep.loss[it] <= rep.loss[it - 1] * (1 + 1e-4));
        CHECK(rep.loss[rep.iters] < 0.9 * rep.loss[0]);
        check_tensor_sane(&t);
        aqlm_dequant(&t, Wq);
        CHECK_NEAR(aqlm_loss(W, Wq, n_out, n_in, H), rep.loss[rep.iters], 1e-3 * rep.loss[rep.iters]);
        aqlm_tensor_done(&t);
    }
    /* The wider beam explores other states (a different result); not
     * necessarily better after 8 alternations, but of the same quality. */
    CHECK(final_loss[3] != final_loss[1]);
    CHECK(final_loss[3] < 1.2 * final_loss[1] && final_loss[1] < 1.2 * final_loss[3]);

    /* Stopping rule: with tau = 0.5 the run stops after the first iteration
     * that improves by less than half. */
    aqlm_opts_default(&o);
    o.tau = 0.5;
    AqlmReport rs;
    CHECK_OK(aqlm_quantize(W, n_out, n_in, H, &p, &o, pool, NULL, &t, &rs, &err), err);
    CHECK(rs.iters >= 1 && rs.iters < o.max_iters);
    CHECK((rs.loss[rs.iters - 1] - rs.loss[rs.iters]) < 0.5 * rs.loss[rs.iters - 1]);
    for (int it = 1; it < rs.iters; it++)
        CHECK((rs.loss[it - 1] - rs.loss[it]) >= 0.5 * rs.loss[it - 1]);

    /* Same seed, different pool sizes: identical result. */
    AqlmTensor t1;
    CHECK_OK(aqlm_quantize(W, n_out, n_in, H, &p, &o, NULL, NULL, &t1, NULL, &err), err);
    CHECK(memcmp(t.codes, t1.codes, (size_t)(n_out * t.n_groups * p.M) * sizeof *t.codes) == 0);
    CHECK(memcmp(t.codebooks, t1.codebooks, (size_t)(p.M * t.K * p.g) * sizeof *t.codebooks) == 0);
    CHECK(memcmp(t.scales, t1.scales, (size_t)n_out * sizeof *t.scales) == 0);
    aqlm_tensor_done(&t1);
    /* A different seed gives a different (but similar-quality) result. */
    o.seed = 7;
    AqlmReport r7;
    CHECK_OK(aqlm_quantize(W, n_out, n_in, H, &p, &o, pool, NULL, &t1, &r7, &err), err);
    CHECK(memcmp(t.codes, t1.codes, (size_t)(n_out * t.n_groups * p.M) * sizeof *t.codes) != 0);
    CHECK(r7.loss[r7.iters] < 1.5 * rs.loss[rs.iters] && rs.loss[rs.iters] < 1.5 * r7.loss[r7.iters]);
    aqlm_tensor_done(&t1);
    aqlm_tensor_done(&t);

    /* H = NULL is plain weight MSE. */
    aqlm_opts_default(&o);
    AqlmParams p2 = {2, 4, 4};
    AqlmReport rn;
    CHECK_OK(aqlm_quantize(W, n_out, n_in, NULL, &p2, &o, pool, NULL, &t, &rn, &err), err);
    aqlm_dequant(&t, Wq);
    double mse = 0;
    for (int64_t q = 0; q < n_out * n_in; q++) mse += ((double)W[q] - Wq[q]) * ((double)W[q] - Wq[q]);
    CHECK_NEAR(rn.loss[rn.iters], mse, 1e-4 * mse);
    CHECK(rn.loss[rn.iters] < 0.5 * rn.loss_zero);
    check_tensor_sane(&t);
    aqlm_tensor_done(&t);

    /* 16-bit codes (more codewords than groups) go through the same code. */
    AqlmParams p16 = {1, 16, 8};
    o.max_iters = 1;
    CHECK_OK(aqlm_quantize(W, 16, n_in, NULL, &p16, &o, pool, NULL, &t, &rn, &err), err);
    CHECK(rn.loss[1] <= rn.loss[0] * (1 + 1e-4));
    /* 128 groups, 65536 codewords: every group can get its own codeword, so
     * what is left is the fp16 rounding of codewords and scales. */
    CHECK(rn.loss[1] < 1e-4 * rn.loss_zero);
    check_tensor_sane(&t);
    aqlm_tensor_done(&t);

    /* Cancel: a job cancelled before it starts returns ST_ERR_CANCELLED and nothing. */
    Progress prog;
    progress_init(&prog);
    progress_cancel(&prog);
    CHECK(aqlm_quantize(W, n_out, n_in, H, &p, NULL, pool, &prog, &t, NULL, &err) == ST_ERR_CANCELLED);
    CHECK(t.codebooks == NULL && t.codes == NULL && t.scales == NULL);
    /* Progress advances during a normal run. */
    progress_init(&prog);
    CHECK_OK(aqlm_quantize(W, n_out, n_in, H, &p, NULL, pool, &prog, &t, NULL, &err), err);
    CHECK(atomic_load(&prog.done) > 0);
    aqlm_tensor_done(&t);

    free(H);
    free(W);
    free(Wq);
}

/* === stories260K: equal code bits against RTN and GPTQ === */

typedef struct HAcc {
    int64_t n_layers;
    int64_t width[TAP_COUNT];
    double *H[TAP_COUNT];    /* (n_layers, width, width) sums of x xᵀ */
    int64_t rows;            /* tokens accumulated (per layer and tap) */
} HAcc;

static void hacc_tap(void *user, int64_t layer, TapPoint point, const float *x, int64_t T, int64_t width,
                     const int32_t *tokens, int64_t pos0) {
    (void)tokens;
    (void)pos0;
    HAcc *h = user;
    if (!h->H[point]) return;
    CHECK(width == h->width[point]);
    double *Hl = h->H[point] + layer * width * width;
    for (int64_t t = 0; t < T; t++) {
        const float *r = x + t * width;
        for (int64_t a = 0; a < width; a++)
            for (int64_t b = 0; b < width; b++) Hl[a * width + b] += (double)r[a] * r[b];
    }
    if (layer == 0 && point == TAP_QKV) h->rows += T;
}

/* Runs tokens [0, n) through the model in chunks of 128 (each from position
 * 0, with BOS) and accumulates H = Σ x xᵀ at the projection inputs. */
static void collect_h(const Model *m, Pool *pool, const int32_t *tok, int64_t n, HAcc *h) {
    Err err;
    Forward *f = NULL;
    CHECK_OK(forward_new(m, NULL, 256, 128, pool, &f, &err), err);
    Taps taps = {hacc_tap, h, (1u << TAP_QKV) | (1u << TAP_O) | (1u << TAP_GATE_UP) | (1u << TAP_DOWN)};
    for (int64_t s = 0; s < n; s += 127) {
        int32_t buf[128];
        int64_t len = n - s < 127 ? n - s : 127;
        buf[0] = 1; /* BOS */
        memcpy(buf + 1, tok + s, (size_t)len * sizeof *buf);
        forward_reset(f);
        CHECK_OK(forward_run(f, buf, len + 1, NULL, 0, &taps, &err), err);
    }
    forward_free(f);
}

/* Largest divisor of n not above 32 (int2 group size of the baselines). */
static int64_t group_for(int64_t n) {
    for (int64_t g = 32; g > 1; g--)
        if (n % g == 0) return g;
    return 1;
}

static void test_stories(Pool *pool) {
    Err err;
    Model *m = NULL;
    ModelLoadOpts lo = {testlib_shared("models/stories260K/tok512.bin")};
    CHECK_OK(model_load(testlib_shared("models/stories260K/stories260K.bin"), &lo, &m, &err), err);
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(file_read_all(testlib_shared("text/tinystories_sample.txt"), 1 << 20, &text, &len, &err), err);
    int32_t *tok = NULL;
    int64_t n = 0;
    CHECK_OK(tokenizer_encode(m->tok, text, len, 0, &tok, &n, &err), err);
    CHECK(n > 600);
    /* First 60% of the text calibrates (H_cal), the rest measures (H_eval):
     * the errors below are on activations the quantizers never saw. */
    int64_t n_cal = n * 6 / 10;
    const ModelConfig *cfg = &m->cfg;
    HAcc hc = {.n_layers = cfg->n_layers}, he = {.n_layers = cfg->n_layers};
    int64_t widths[TAP_COUNT] = {cfg->dim, cfg->n_heads * cfg->head_dim, cfg->dim, cfg->hidden_dim, 0};
    for (int tp = 0; tp < TAP_DOWN + 1; tp++) {
        hc.width[tp] = he.width[tp] = widths[tp];
        hc.H[tp] = calloc((size_t)(cfg->n_layers * widths[tp] * widths[tp]), sizeof(double));
        he.H[tp] = calloc((size_t)(cfg->n_layers * widths[tp] * widths[tp]), sizeof(double));
        CHECK(hc.H[tp] && he.H[tp]);
    }
    collect_h(m, pool, tok, n_cal, &hc);
    collect_h(m, pool, tok + n_cal, n - n_cal, &he);
    printf("stories260K: H from %lld calibration tokens, errors on %lld held-out tokens (tinystories_sample.txt)\n",
           (long long)hc.rows, (long long)he.rows);

    /* Per projection: tr(ΔW H_eval ΔWᵀ)/tokens for AQLM at 2 code bits
     * (1x8 g4 everywhere, 2x8 g8 where g 8 divides the input) against int2
     * asymmetric (2 code bits) with groups of up to 32 inputs by RTN and GPTQ. */
    double sum_aq14 = 0, sum_aq28 = 0, sum_rtn = 0, sum_gptq = 0, sum_rtn28 = 0, sum_gptq28 = 0;
    double down_aq = 0, down_gptq = 0, down_rtn = 0;
    int kmeans_wins = 0, kmeans_total = 0;
    printf("%-8s %8s %8s %8s %8s   (tr(dW H dW^T)/token on held-out text)\n", "proj", "aq1x8g4", "aq2x8g8",
           "rtn-i2", "gptq-i2");
    for (int64_t l = 0; l < cfg->n_layers; l++)
        for (int pj = 0; pj < PROJ_COUNT; pj++) {
            const Weight *w = &m->layers[l].proj[pj];
            const float *wf = weight_f32_data(w); /* the test model is F32 */
            CHECK(wf != NULL);
            int64_t no = w->n_out, ni = w->n_in;
            TapPoint tp = proj_tap((Proj)pj);
            const double *Hc = hc.H[tp] + l * ni * ni, *Hev = he.H[tp] + l * ni * ni;
            double *Hn = malloc((size_t)(ni * ni) * sizeof *Hn);
            float *Wq = malloc((size_t)(no * ni) * sizeof *Wq);
            CHECK(Hn && Wq);
            for (int64_t q = 0; q < ni * ni; q++) Hn[q] = Hc[q] / (double)hc.rows;
            double ev = (double)he.rows;

            QParams qp = {QF_INT2, 0, GROUP_OC, group_for(ni)};
            CHECK_OK(rtn_fake_quantize(wf, no, ni, &qp, Wq, &err), err);
            double e_rtn = aqlm_loss(wf, Wq, no, ni, Hev) / ev;
            QTensor qt = {0};
            GptqOpts go;
            gptq_opts_default(&go);
            CHECK_OK(gptq_quantize(wf, no, ni, Hn, NULL, &qp, &go, pool, NULL, &qt, NULL, &err), err);
            qtensor_dequant(&qt, Wq);
            qtensor_done(&qt);
            double e_gptq = aqlm_loss(wf, Wq, no, ni, Hev) / ev;

            AqlmOpts o;
            aqlm_opts_default(&o);
            AqlmTensor t;
            AqlmReport rep;
            AqlmParams p14 = {1, 8, 4};
            CHECK_OK(aqlm_quantize(wf, no, ni, Hn, &p14, &o, pool, NULL, &t, &rep, &err), err);
            aqlm_dequant(&t, Wq);
            aqlm_tensor_done(&t);
            double e14 = aqlm_loss(wf, Wq, no, ni, Hev) / ev;
            /* k-means start vs random start on the same projection. */
            AqlmReport rr;
            o.max_iters = 0;
            o.init = AQLM_INIT_RANDOM;
            CHECK_OK(aqlm_quantize(wf, no, ni, Hn, &p14, &o, pool, NULL, &t, &rr, &err), err);
            aqlm_tensor_done(&t);
            kmeans_wins += rep.loss[0] < rr.loss[0];
            kmeans_total++;

            double e28 = NAN;
            if (ni % 8 == 0) {
                aqlm_opts_default(&o);
                AqlmParams p28 = {2, 8, 8};
                CHECK_OK(aqlm_quantize(wf, no, ni, Hn, &p28, &o, pool, NULL, &t, &rep, &err), err);
                aqlm_dequant(&t, Wq);
                aqlm_tensor_done(&t);
                e28 = aqlm_loss(wf, Wq, no, ni, Hev) / ev;
                sum_aq28 += e28;
                sum_rtn28 += e_rtn;
                sum_gptq28 += e_gptq;
                CHECKF(e28 < e_rtn && e28 < e_gptq, "layer %lld %s: aqlm 2x8g8 %.4g rtn %.4g gptq %.4g",
                       (long long)l, proj_name((Proj)pj), e28, e_rtn, e_gptq);
            }
            printf("%lld.%-6s %8.4g %8.4g %8.4g %8.4g\n", (long long)l, proj_name((Proj)pj), e14, e28, e_rtn, e_gptq);
            if (ni % 8 == 0) {
                CHECKF(e14 < e_rtn && e14 < e_gptq, "layer %lld %s: aqlm 1x8g4 %.4g rtn %.4g gptq %.4g",
                       (long long)l, proj_name((Proj)pj), e14, e_rtn, e_gptq);
            } else {
                /* down_proj (64x172, 43 groups of 4 per row, 2752 groups for 256
                 * codewords): measured, AQLM loses to GPTQ int2 g43 here
                 * (docs/aqlm.md); bound the gap so a regression shows. */
                CHECKF(e14 < 1.6 * e_gptq, "layer %lld down: aqlm 1x8g4 %.4g gptq %.4g", (long long)l, e14, e_gptq);
                down_aq += e14;
                down_gptq += e_gptq;
                down_rtn += e_rtn;
            }
            sum_aq14 += e14;
            sum_rtn += e_rtn;
            sum_gptq += e_gptq;
            free(Hn);
            free(Wq);
        }
    printf("sum over all 35 projections: aqlm 1x8g4 %.4g, rtn int2 %.4g, gptq int2 %.4g\n", sum_aq14, sum_rtn,
           sum_gptq);
    printf("sum over the 5 down projections: aqlm 1x8g4 %.4g, rtn int2 %.4g, gptq int2 %.4g\n", down_aq, down_rtn,
           down_gptq);
    CHECK(sum_aq14 < sum_gptq && sum_aq14 < sum_rtn);
    printf("sum over the 30 with n_in %% 8 == 0: aqlm 2x8g8 %.4g, rtn int2 %.4g, gptq int2 %.4g\n", sum_aq28,
           sum_rtn28, sum_gptq28);
    /* Bits (64x64 q): codes 2 for all three; totals with codebooks/scales: */
    AqlmParams p14 = {1, 8, 4}, p28 = {2, 8, 8};
    QParams qp = {QF_INT2, 0, GROUP_OC, 32};
    printf("total bits/weight on a 64x64 projection: aqlm 1x8g4 %.3f, 2x8g8 %.3f, int2 g32 asym %.3f\n",
           aqlm_bpw(&p14, 64, 64), aqlm_bpw(&p28, 64, 64), qparams_bytes(&qp, 64, 64) * 8.0 / 4096.0);
    printf("k-means init below random init on %d of %d projections\n", kmeans_wins, kmeans_total);
    CHECK(kmeans_wins == kmeans_total);

    for (int tp = 0; tp < TAP_COUNT; tp++) {
        free(hc.H[tp]);
        free(he.H[tp]);
    }
    free(tok);
    free(text);
    model_free(m);
}

/* === 4096x4096 at equal total bits === */

/* tr((W - Wq) H (W - Wq)ᵀ) through sgemm (the double loop of aqlm_loss takes
 * minutes at this size); float products, double sum. */
static double loss_fast(const float *W, const float *Wq, int64_t no, int64_t ni, const float *Hf) {
    /* calloc: at -O1 (make asan) GCC 12 cannot see the loop below fill R and
     * fails the build with -Wmaybe-uninitialized at the sgemm call */
    float *R = calloc((size_t)(no * ni), sizeof *R), *RH = malloc((size_t)(no * ni) * sizeof *RH);
    CHECK(R && RH);
    for (int64_t q = 0; q < no * ni; q++) R[q] = W[q] - Wq[q];
    sgemm_mul_nt(no, ni, ni, R, ni, Hf, ni, 0.0f, RH, ni);
    double L = 0;
    for (int64_t q = 0; q < no * ni; q++) L += (double)R[q] * RH[q];
    free(R);
    free(RH);
    return L;
}

/* n x n layer, T synthetic tokens; AQLM 2x8 g8 with bounded iterations
 * against int2 asym RTN/GPTQ with the widest power-of-two group whose total
 * bits are still >= AQLM's (codebooks and scales included). */
static void test_big(Pool *pool, int64_t n, int64_t T) {
    double t0 = clock_now();
    Err err;
    /* X: heavy-tailed entries (normal over a noisy scale), one outlier
     * channel in 512 at 20x, plus a shared
     * rank-1 component so channels correlate; H = XᵀX / T. */
    float *Xt = malloc((size_t)(n * T) * sizeof *Xt); /* (n, T): Xᵀ */
    float *Hf = malloc((size_t)(n * n) * sizeof *Hf);
    double *Hd = malloc((size_t)(n * n) * sizeof *Hd);
    float *W = malloc((size_t)(n * n) * sizeof *W), *Wq = malloc((size_t)(n * n) * sizeof *Wq);
    double *v = malloc((size_t)n * sizeof *v);
    CHECK(Xt && Hf && Hd && W && Wq && v);
    for (int64_t c = 0; c < n; c++) v[c] = nrand();
    for (int64_t t = 0; t < T; t++) {
        double f = nrand();
        for (int64_t c = 0; c < n; c++) {
            double z = nrand(), chi = (nrand() * nrand() + nrand() * nrand() + nrand() * nrand()) / 3.0;
            double st = z / sqrt(chi * chi + 0.05); /* heavy-tailed, finite */
            Xt[c * T + t] = (float)((st + 0.5 * f * v[c]) * ((c % 512) == 7 ? 20.0 : 1.0));
        }
    }
    sgemm_mul_nt(n, n, T, Xt, T, Xt, T, 0.0f, Hf, n);
    for (int64_t q = 0; q < n * n; q++) {
        Hf[q] /= (float)T;
        Hd[q] = Hf[q];
    }
    free(Xt);
    for (int64_t q = 0; q < n * n; q++) W[q] = (float)(0.02 * nrand());
    double t_h = clock_now() - t0;

    AqlmParams p = {2, 8, 8};
    AqlmOpts o;
    aqlm_opts_default(&o);
    o.max_iters = 2;
    o.cg_iters = 3;
    o.kmeans_iters = 6;
    AqlmTensor t;
    AqlmReport rep;
    double t1 = clock_now();
    CHECK_OK(aqlm_quantize(W, n, n, Hd, &p, &o, pool, NULL, &t, &rep, &err), err);
    double t_aq = clock_now() - t1;
    aqlm_dequant(&t, Wq);
    aqlm_tensor_done(&t);
    double e_aq = loss_fast(W, Wq, n, n, Hf);

    /* Baselines at >= AQLM's total bits: at 4096 that is g 2048
     * (2 + (16 + 2)/2048 = 2.0088 bpw vs AQLM's 2.0078), at 1024 g 128. */
    double bpw_aq = aqlm_bpw(&p, n, n);
    QParams qp = {QF_INT2, 0, GROUP_OC, n};
    while (qparams_bytes(&qp, n, n) * 8.0 / ((double)n * n) < bpw_aq) qp.group /= 2;
    double bpw_int = qparams_bytes(&qp, n, n) * 8.0 / ((double)n * n);
    CHECK(bpw_int >= bpw_aq && qp.group >= 64);
    Err e2;
    CHECK_OK(rtn_fake_quantize(W, n, n, &qp, Wq, &e2), e2);
    double e_rtn = loss_fast(W, Wq, n, n, Hf);
    QTensor qt = {0};
    GptqOpts go;
    gptq_opts_default(&go);
    double t2 = clock_now();
    CHECK_OK(gptq_quantize(W, n, n, Hd, NULL, &qp, &go, pool, NULL, &qt, NULL, &e2), e2);
    double t_gptq = clock_now() - t2;
    qtensor_dequant(&qt, Wq);
    qtensor_done(&qt);
    double e_gptq = loss_fast(W, Wq, n, n, Hf);
    printf("%lldx%lld, heavy-tailed synthetic H (in-sample): tr(dW H dW^T) relative to tr(W H W^T)\n"
           "  aqlm 2x8g8 (%.4f bpw, %d iters, %.1f s): %.4f (init %.4f)\n"
           "  rtn int2 g%lld asym (%.4f bpw): %.4f\n"
           "  gptq int2 g%lld asym (%.4f bpw, %.1f s): %.4f\n  (H build %.1f s)\n",
           (long long)n, (long long)n, bpw_aq, rep.iters, t_aq, e_aq / rep.loss_zero, rep.loss[0] / rep.loss_zero,
           (long long)qp.group, bpw_int, e_rtn / rep.loss_zero, (long long)qp.group, bpw_int, t_gptq,
           e_gptq / rep.loss_zero, t_h);
    CHECK(e_aq < e_rtn && e_aq < e_gptq);
    free(Hf);
    free(Hd);
    free(W);
    free(Wq);
    free(v);
}

int main(void) {
    Pool *pool = NULL;
    Err err;
    CHECK_OK(pool_new(2, &pool, &err), err);
    test_bits();
    test_params();
    test_presets();
    test_kernels(pool);
    test_quantizer(pool);
    test_stories(pool);
    /* 1024² here; the 4096² run of the same comparison takes minutes and
     * lives in tests/bench_aqlm.c. */
    if (!getenv("QS_ASAN")) test_big(pool, 1024, 2048);
    pool_free(pool);
    return testlib_done("test_aqlm");
}
