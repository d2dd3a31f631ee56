/* Calibration end to end: sequence sampling, statistics of the real forward
 * pass against an independent collection of the same activations, H against
 * a naive XᵀX, the stats file (byte-identical for the same seed, round trip,
 * corrupt and truncated files, staleness), the weight-sensitivity map against
 * a direct computation, the real spike structure of stories260K, and the
 * ranking on a synthetic model with planted spikes. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "analysis/calib.h"
#include "analysis/sensitivity.h"
#include "analysis/spikes.h"
#include "analysis/statsfile.h"
#include "core/mapfile.h"
#include "core/pool.h"
#include "model/forward.h"
#include "model/synth.h"
#include "model/tokenizer.h"
#include "quant/ggml_type.h"
#include "quant/rtn.h"
#include "testlib.h"

static char tmpdir[64];

static const char *tmp_path(const char *name) {
    return testlib_path(tmpdir, name);
}

static int files_equal(const char *a, const char *b) {
    Err err;
    MappedFile fa, fb;
    if (mapfile_open(&fa, a, &err) != ST_OK) return 0;
    if (mapfile_open(&fb, b, &err) != ST_OK) {
        mapfile_close(&fa);
        return 0;
    }
    int eq = fa.size == fb.size && (fa.size == 0 || memcmp(fa.data, fb.data, fa.size) == 0);
    mapfile_close(&fa);
    mapfile_close(&fb);
    return eq;
}

static void test_sample(void) {
    int32_t toks[100];
    for (int i = 0; i < 100; i++) toks[i] = 1000 + i;
    CalibParams p;
    calib_params_default(&p);
    p.samples = 20;
    p.seqlen = 10;
    p.seed = 7;
    Err err;
    err_init(&err);
    int32_t *s1 = NULL, *s2 = NULL;
    int64_t n1 = 0, n2 = 0;
    CHECK_OK(calib_sample(toks, 100, 1, &p, &s1, &n1, &err), err);
    CHECK_OK(calib_sample(toks, 100, 1, &p, &s2, &n2, &err), err);
    CHECK(n1 == 20 && n2 == 20 && memcmp(s1, s2, sizeof(int32_t) * 200) == 0);
    int distinct = 0;
    for (int i = 0; i < 20; i++) {
        CHECK(s1[i * 10] == 1); /* BOS replaces the window's first token */
        int off = s1[i * 10 + 1] - 1001;
        CHECK(off >= 0 && off <= 90);
        for (int j = 1; j < 10; j++) CHECK(s1[i * 10 + j] == 1000 + off + j);
        if (i > 0 && s1[i * 10 + 1] != s1[(i - 1) * 10 + 1]) distinct++;
    }
    CHECK(distinct >= 15);
    free(s2);
    p.seed = 8;
    CHECK_OK(calib_sample(toks, 100, 1, &p, &s2, &n2, &err), err);
    CHECK(memcmp(s1, s2, sizeof(int32_t) * 200) != 0);
    free(s1);
    free(s2);
    p.mode = CALIB_CHUNKS;
    CHECK_OK(calib_sample(toks, 100, -1, &p, &s1, &n1, &err), err);
    CHECK(n1 == 10); /* all the text holds */
    for (int i = 0; i < 100; i++) CHECK(s1[i] == 1000 + i);
    free(s1);
    p.seqlen = 101;
    CHECK(calib_sample(toks, 100, 1, &p, &s1, &n1, &err) == ST_ERR_RANGE);
    CHECK(sens_group_size(172, 32) == 4 && sens_group_size(64, 32) == 32 && sens_group_size(5632, 32) == 32);
    CHECK(sens_group_size(96, 32) == 32 && sens_group_size(120, 32) == 24 && sens_group_size(7, 32) == 0);
    /* a cell's parameters as the map quantizes it (the speed table times the same entries) */
    QParams qp;
    int i4 = sens_fmt_index(QF_INT4), q4k = sens_fmt_index(QF_Q4_K);
    CHECK(sens_cell_params(i4, SG_OC_G, 64, 172, 32, &qp) && qp.fmt == QF_INT4 && qp.sym && qp.dim == GROUP_OC &&
          qp.group == 4);
    CHECK(sens_cell_params(i4, SG_IC_G, 64, 172, 32, &qp) && qp.dim == GROUP_IC && qp.group == 32);
    CHECK(sens_cell_params(i4, SG_TENSOR, 64, 172, 32, &qp) && qp.dim == GROUP_TENSOR && qp.group == 0);
    CHECK(!sens_cell_params(i4, SG_BLOCK, 64, 256, 32, &qp));        /* a scaled format has no blk cell */
    CHECK(!sens_cell_params(i4, SG_OC_G, 64, 7, 32, &qp));           /* no group size divides 7 */
    CHECK(sens_cell_params(q4k, SG_BLOCK, 64, 512, 32, &qp) && qp.fmt == QF_Q4_K);
    CHECK(!sens_cell_params(q4k, SG_BLOCK, 64, 64, 32, &qp));        /* 64-wide rows hold no 256-blocks */
    CHECK(!sens_cell_params(q4k, SG_OC, 64, 512, 32, &qp));          /* ggml formats: their blocks only */
}

/* Collects every activation of one (layer, tap) through an independent run. */
typedef struct Collect {
    int64_t layer;
    TapPoint tap;
    float *x;                /* (rows, width) */
    int64_t rows, width;
} Collect;

static void collect_fn(void *user, int64_t layer, TapPoint point, const float *x, int64_t T, int64_t width,
                       const int32_t *tokens, int64_t pos0) {
    (void)tokens;
    (void)pos0;
    Collect *c = user;
    if (layer != c->layer || point != c->tap) return;
    c->width = width;
    memcpy(c->x + c->rows * width, x, sizeof(float) * (size_t)(T * width));
    c->rows += T;
}

static char *read_text(const char *path, size_t *len) {
    Err err;
    char *buf = NULL;
    CHECK_OK(file_read_all(path, 1 << 24, &buf, len, &err), err);
    return buf;
}

static void check_against_collection(const Model *m, const CalibStats *cs, const char *text, size_t len,
                                     const CalibParams *p, const char *hpath, Pool *pool) {
    Err err;
    err_init(&err);
    int32_t *toks = NULL, *seqs = NULL;
    int64_t nt = 0, ns = 0;
    CHECK_OK(tokenizer_encode(m->tok, text, len, 0, &toks, &nt, &err), err);
    CHECK_OK(calib_sample(toks, nt, tokenizer_bos(m->tok), p, &seqs, &ns, &err), err);
    CHECK(ns == cs->n_seqs);
    Forward *fw = NULL;
    /* same pool as the calibration: BLAS rounding depends on the thread count */
    CHECK_OK(forward_new(m, NULL, p->seqlen, p->seqlen, pool, &fw, &err), err);
    const TapPoint taps_checked[2] = {TAP_DOWN, TAP_QKV};
    for (int tc = 0; tc < 2; tc++) {
        Collect c = {.layer = 2, .tap = taps_checked[tc]};
        c.x = malloc(sizeof(float) * (size_t)(ns * p->seqlen * m->cfg.hidden_dim));
        Taps taps = {.fn = collect_fn, .user = &c, .mask = 1u << c.tap};
        for (int64_t i = 0; i < ns; i++) {
            forward_reset(fw);
            CHECK_OK(forward_run(fw, seqs + i * p->seqlen, p->seqlen, NULL, 0, &taps, &err), err);
        }
        const TapStats *ts = calib_tap(cs, 2, c.tap);
        CHECK(c.rows == ts->n_rows && c.width == ts->width);
        int64_t w = c.width;
        float amax = 0;
        for (int64_t ch = 0; ch < w; ch++) {
            double s = 0, s2 = 0;
            float mx = 0;
            for (int64_t r = 0; r < c.rows; r++) {
                double v = c.x[r * w + ch];
                s += v;
                s2 += v * v;
                mx = fabsf((float)v) > mx ? fabsf((float)v) : mx;
            }
            CHECK_NEAR(ts->ch_sum[ch], s, 1e-9 * (s2 + 1));
            CHECK_NEAR(ts->ch_sumsq[ch], s2, 1e-12 * s2);
            CHECK(ts->ch_absmax[ch] == mx);
            amax = mx > amax ? mx : amax;
        }
        CHECK(ts->absmax == amax);
        /* the largest spike is where the collection says */
        const Spike *sp = &ts->top[0];
        CHECK(fabsf(sp->value) == amax);
        int64_t row = sp->seq * p->seqlen + sp->pos;
        CHECK(c.x[row * w + sp->channel] == sp->value);
        CHECK(sp->token == seqs[row]);
        /* H = XᵀX, naive: float32 products of one sequence (seqlen terms)
         * summed in float64, stored in float32: (seqlen + 2)·2^-24 relative
         * to Σ|x_i x_j| (analysis/hstore.h) */
        HStore hs;
        CHECK_OK(hstore_open(&hs, hpath, cs->h_id, cs->n_layers, cs->width, &err), err);
        CHECK(hs.n_rows == c.rows);
        double *H = malloc(sizeof(double) * (size_t)(w * w));
        CHECK_OK(hstore_load_f64(&hs, 2, (int)c.tap, H, &err), err);
        const double tol = (double)(p->seqlen + 2) * 0x1p-24;
        for (int64_t i = 0; i < w; i += 3)
            for (int64_t j = 0; j < w; j++) {
                double s = 0, sa = 0;
                for (int64_t r = 0; r < c.rows; r++) {
                    double q = (double)c.x[r * w + i] * c.x[r * w + j];
                    s += q;
                    sa += fabs(q);
                }
                CHECKF(fabs(H[i * w + j] - s) <= tol * sa, "H[%lld][%lld] %.17g vs %.17g", (long long)i,
                       (long long)j, H[i * w + j], s);
            }
        free(H);
        hstore_close(&hs);
        free(c.x);
    }
    forward_free(fw);
    free(toks);
    free(seqs);
}

/* Output error of one cell recomputed in double from the H file. */
static void check_sensitivity_cell(const Model *m, const CalibStats *cs, const SensMap *sm, const char *hpath,
                                   int64_t l, Proj pr, int fi, SensGroup g) {
    Err err;
    err_init(&err);
    HStore hs;
    CHECK_OK(hstore_open(&hs, hpath, cs->h_id, cs->n_layers, cs->width, &err), err);
    const Weight *w = &m->layers[l].proj[pr];
    const float *wf = weight_f32_data(w); /* the test model is F32 */
    CHECK(wf != NULL);
    int64_t no = w->n_out, ni = w->n_in;
    QParams qp = {.fmt = sens_fmt(fi), .sym = 1, .dim = sens_group_dim(g), .group = 0};
    if (g == SG_OC_G) qp.group = sens_group_size(ni, cs->sens.group);
    if (g == SG_IC_G) qp.group = sens_group_size(no, cs->sens.group);
    float *Wq = malloc(sizeof(float) * (size_t)(no * ni));
    CHECK_OK(rtn_fake_quantize(wf, no, ni, &qp, Wq, &err), err);
    double *H = malloc(sizeof(double) * (size_t)(ni * ni));
    CHECK_OK(hstore_load_f64(&hs, l, (int)proj_tap(pr), H, &err), err);
    double num = 0, den = 0, dw = 0, ww = 0;
    for (int64_t r = 0; r < no; r++)
        for (int64_t i = 0; i < ni; i++) {
            double di = (double)Wq[r * ni + i] - wf[r * ni + i], wi = wf[r * ni + i];
            dw += di * di;
            ww += wi * wi;
            double hd = 0, hw = 0;
            for (int64_t j = 0; j < ni; j++) {
                hd += H[i * ni + j] * ((double)Wq[r * ni + j] - wf[r * ni + j]);
                hw += H[i * ni + j] * wf[r * ni + j];
            }
            num += di * hd;
            den += wi * hw;
        }
    int64_t ix = sens_index(l, pr, fi, g);
    CHECK_NEAR(sm->werr[ix], dw / ww, 1e-5 * dw / ww);
    CHECKF(fabs(sm->oerr[ix] - num / den) <= 1e-4 * num / den, "oerr %g vs %g", sm->oerr[ix], num / den);
    free(Wq);
    free(H);
    hstore_close(&hs);
}

static void test_stories(void) {
    Err err;
    err_init(&err);
    const char *mpath = testlib_shared("models/stories260K/stories260K-f32.gguf");
    Model *m = NULL;
    CHECK_OK(model_load(mpath, NULL, &m, &err), err);
    size_t len = 0;
    char *text = read_text(testlib_shared("text/tinystories_sample.txt"), &len);
    CalibParams p;
    calib_params_default(&p);
    p.samples = 8;
    p.seqlen = 128;
    p.seed = 3;
    snprintf(p.text_path, sizeof p.text_path, "tinystories_sample.txt");
    Pool *pool = NULL;
    CHECK_OK(pool_new(2, &pool, &err), err);
    CalibStats *a = NULL, *b = NULL;
    char ha[256], hb[256];
    snprintf(ha, sizeof ha, "%s", tmp_path("a.qsst.h64"));
    snprintf(hb, sizeof hb, "%s", tmp_path("b.qsst.h64"));
    Progress prog;
    progress_init(&prog);
    CHECK_OK(calib_run(m, text, len, &p, ha, pool, &prog, &a, &err), err);
    CHECK(a->n_seqs == 8 && a->n_planned == 8 && a->n_tokens == 8 * 128 && a->has_h && a->has_sens);
    /* float32 upper triangles, each page-aligned: 64·65/2·4 = 8320 -> 12288, 172·173/2·4 = 59512 -> 61440 */
    CHECK(a->h_bytes == calib_h_bytes(m) && a->h_bytes == 4096 + 5 * (3 * 12288 + 61440));
    CHECK(access(ha, F_OK) == 0);
    CHECK_OK(statsfile_save(a, tmp_path("a.qsst"), &err), err);

    /* same seed, same bytes (stats and H) */
    CHECK_OK(calib_run(m, text, len, &p, hb, pool, NULL, &b, &err), err);
    CHECK_OK(statsfile_save(b, tmp_path("b.qsst"), &err), err);
    CHECK(files_equal(tmp_path("a.qsst"), tmp_path("b.qsst")));
    CHECK(files_equal(ha, hb));
    calib_stats_free(b);
    /* another seed differs */
    p.seed = 4;
    CHECK_OK(calib_run(m, text, len, &p, NULL, pool, NULL, &b, &err), err);
    CHECK(!b->has_h && b->has_sens && isnan(b->sens.oerr[sens_index(0, PROJ_Q, 0, SG_OC)]));
    CHECK(!isnan(b->sens.werr[sens_index(0, PROJ_Q, 0, SG_OC)]));
    CHECK_OK(statsfile_save(b, tmp_path("c.qsst"), &err), err);
    CHECK(!files_equal(tmp_path("a.qsst"), tmp_path("c.qsst")));
    calib_stats_free(b);
    p.seed = 3;

    /* round trip: load and save again gives the same bytes */
    CHECK_OK(statsfile_load(tmp_path("a.qsst"), &b, &err), err);
    CHECK(b->n_seqs == 8 && b->fingerprint == m->fingerprint && b->params.seed == 3);
    CHECK(strcmp(b->params.text_path, "tinystories_sample.txt") == 0);
    CHECK_OK(statsfile_save(b, tmp_path("d.qsst"), &err), err);
    CHECK(files_equal(tmp_path("a.qsst"), tmp_path("d.qsst")));
    char why[256];
    CHECK(statsfile_is_stale(b, m, why, sizeof why) == 0);
    calib_stats_free(b);

    /* the statistics are those of the real activations */
    check_against_collection(m, a, text, len, &p, ha, pool);

    /* The exact map (a GEMM per cell) against a direct double computation;
     * the estimated map (closed-form diagonal + row subsample, here from 8
     * rows so that it really samples) within 5 % of the exact one in every
     * cell, independent of the thread count. */
    SensMap ex, es, es1;
    {
        HStore hs;
        CHECK_OK(hstore_open(&hs, ha, a->h_id, a->n_layers, a->width, &err), err);
        SensOpts so;
        sens_opts_default(&so);
        so.exact = 1;
        CHECK_OK(sens_map_init(&ex, a->n_layers, a->sens.group, &err), err);
        CHECK_OK(sens_compute_opts(m, &hs, &so, pool, NULL, &ex, &err), err);
        sens_opts_default(&so);
        so.min_rows = 8;
        CHECK_OK(sens_map_init(&es, a->n_layers, a->sens.group, &err), err);
        CHECK_OK(sens_compute_opts(m, &hs, &so, pool, NULL, &es, &err), err);
        CHECK_OK(sens_map_init(&es1, a->n_layers, a->sens.group, &err), err);
        CHECK_OK(sens_compute_opts(m, &hs, &so, NULL, NULL, &es1, &err), err);
        hstore_close(&hs);
        size_t nc = (size_t)a->n_layers * PROJ_COUNT * SENS_NFMT * SG_COUNT;
        int sampled = 0;
        double worst = 0;
        for (size_t i = 0; i < nc; i++) {
            if (isnan(ex.oerr[i])) {
                CHECK(isnan(es.oerr[i]) && isnan(a->sens.oerr[i]));
                continue;
            }
            double e = fabs(es.oerr[i] - ex.oerr[i]) / ex.oerr[i], e64 = fabs(a->sens.oerr[i] - ex.oerr[i]) / ex.oerr[i];
            CHECKF(e <= 0.05 && e64 <= 0.05, "cell %zu: estimate %g / %g vs exact %g", i, es.oerr[i], a->sens.oerr[i],
                   ex.oerr[i]);
            CHECK(fabs(es.werr[i] - ex.werr[i]) <= 0.05 * ex.werr[i] && es1.oerr[i] == es.oerr[i] && es1.werr[i] == es.werr[i]);
            worst = e > worst ? e : worst;
            sampled += e > 1e-5;
        }
        printf("sensitivity estimate (8-row start) vs exact: %d of %zu cells sampled, worst %.2f %%\n", sampled, nc,
               100 * worst);
        CHECK(sampled > 0);
    }
    const int i8 = sens_fmt_index(QF_INT8), i5 = sens_fmt_index(QF_INT5), i4 = sens_fmt_index(QF_INT4);
    const int i2 = sens_fmt_index(QF_INT2), e4 = sens_fmt_index(QF_FP8_E4M3), q40 = sens_fmt_index(QF_Q4_0);
    check_sensitivity_cell(m, a, &ex, ha, 1, PROJ_DOWN, i4, SG_OC);   /* int4 per-OC */
    check_sensitivity_cell(m, a, &ex, ha, 1, PROJ_DOWN, i8, SG_IC_G); /* int8 ic groups */
    check_sensitivity_cell(m, a, &ex, ha, 3, PROJ_Q, e4, SG_TENSOR);  /* fp8-e4m3 per-tensor */
    check_sensitivity_cell(m, a, &ex, ha, 0, PROJ_GATE, i2, SG_OC_G); /* int2 oc groups */
    check_sensitivity_cell(m, a, &ex, ha, 2, PROJ_UP, i5, SG_IC);     /* int5 per-IC */
    check_sensitivity_cell(m, a, &ex, ha, 4, PROJ_O, q40, SG_BLOCK);  /* q4_0's own blocks */
    /* a ggml format needs whole blocks: 172-wide down rows fit no q4_0 block, 64-wide ones no K block */
    CHECK(isnan(ex.werr[sens_index(1, PROJ_DOWN, q40, SG_BLOCK)]) &&
          isnan(ex.werr[sens_index(1, PROJ_Q, sens_fmt_index(QF_Q4_K), SG_BLOCK)]));
    CHECK(isnan(ex.werr[sens_index(1, PROJ_Q, q40, SG_OC)]) && isnan(ex.werr[sens_index(1, PROJ_Q, i4, SG_BLOCK)]));
    sens_map_done(&ex);
    sens_map_done(&es);
    sens_map_done(&es1);
    CHECK(a->sens.gsize[(1 * PROJ_COUNT + PROJ_DOWN) * SG_COUNT + SG_OC_G] == 4);  /* 172 = 4·43 */
    CHECK(a->sens.gsize[(1 * PROJ_COUNT + PROJ_DOWN) * SG_COUNT + SG_IC_G] == 32);
    for (int64_t l = 0; l < 5; l++)
        for (int pr = 0; pr < PROJ_COUNT; pr++) {
            /* fewer bits, more error; finer groups, less error */
            for (int f = i8; f + 1 <= i2; f++)
                CHECK(a->sens.oerr[sens_index(l, pr, f, SG_OC)] < a->sens.oerr[sens_index(l, pr, f + 1, SG_OC)]);
            CHECK(a->sens.werr[sens_index(l, pr, i4, SG_OC_G)] < a->sens.werr[sens_index(l, pr, i4, SG_TENSOR)]);
            GroupDim c = sens_adadim_choice(&a->sens, l, pr, i4, 0);
            float ei = a->sens.oerr[sens_index(l, pr, i4, SG_IC)], eo = a->sens.oerr[sens_index(l, pr, i4, SG_OC)];
            CHECK(c == (ei < eo ? GROUP_IC : GROUP_OC));
        }

    /* the real structure: down_proj inputs rank above every other projection */
    SpikeScore *s = NULL;
    int64_t n = 0;
    CHECK_OK(spikes_score(a, &s, &n, &err), err);
    CHECK(n == 20);
    for (int64_t i = 0; i < n; i++) {
        CHECK(s[i].rank == i + 1);
        if (i < 5) {
            CHECKF(s[i].tap == TAP_DOWN, "rank %lld is layer %lld %s", (long long)i + 1, (long long)s[i].layer,
                   tap_name(s[i].tap));
            CHECKF(s[i].ratio > 35 && s[i].ratio < 120, "down ratio %g", s[i].ratio);
        } else {
            CHECK(s[i].tap != TAP_DOWN);
            CHECKF(s[i].ratio > 3 && s[i].ratio < 20, "layer %lld %s ratio %g", (long long)s[i].layer,
                   tap_name(s[i].tap), s[i].ratio);
        }
        const TapStats *ts = calib_tap(a, s[i].layer, s[i].tap);
        CHECK(s[i].max == ts->absmax);
        CHECK(spikes_is_candidate(&s[i], 3) == (i < 3));
    }
    free(s);
    /* spiky down inputs: per-tensor int8 activations much worse than per-token */
    for (int64_t l = 0; l < 5; l++) {
        const TapStats *d = calib_tap(a, l, TAP_DOWN), *q = calib_tap(a, l, TAP_QKV);
        CHECK(tapstats_act_rel_err(d, ACT_INT8, ACT_TENSOR_DYNAMIC) > 4 * tapstats_act_rel_err(d, ACT_INT8, ACT_TOKEN_DYNAMIC));
        CHECK(tapstats_act_rel_err(d, ACT_INT8, ACT_TENSOR_DYNAMIC) > 5 * tapstats_act_rel_err(q, ACT_INT8, ACT_TENSOR_DYNAMIC));
        /* fp8 is scale-free-ish: e4m3 ≈ 2^-8 relative error whatever the mode */
        CHECK(tapstats_act_rel_err(q, ACT_FP8_E4M3, ACT_TOKEN_DYNAMIC) < 2e-3);
        CHECK(isfinite(tapstats_act_rel_err(d, ACT_INT8, ACT_TENSOR_STATIC)));
        CHECK(calib_tap(a, l, TAP_RESID)->has_act == 0);
    }
    /* BOS at position 0 shows up among the residual spikes / norms */
    CHECK(a->resid_rms_max[1 * 128 + 0] > 0 && calib_resid_mean(a, 1, 0) > calib_resid_mean(a, 1, 5));

    /* corrupt and truncated files: clear errors, never a crash */
    MappedFile mf;
    CHECK_OK(mapfile_open(&mf, tmp_path("a.qsst"), &err), err);
    size_t size = mf.size;
    unsigned char *bytes = malloc(size);
    memcpy(bytes, mf.data, size);
    mapfile_close(&mf);
    char bad[256];
    snprintf(bad, sizeof bad, "%s", tmp_path("bad.qsst"));
    for (size_t cut = 0; cut < size; cut += (cut < 200 ? 7 : 4099)) {
        FILE *f = fopen(bad, "wb");
        fwrite(bytes, 1, cut, f);
        fclose(f);
        CalibStats *x = NULL;
        CHECK(statsfile_load(bad, &x, &err) == ST_ERR_FORMAT && x == NULL);
        CHECKF(strstr(err.detail, bad) && (strstr(err.detail, "truncated") || strstr(err.detail, "magic")),
               "cut %zu: %s", cut, err.detail);
    }
    CalibStats *x = NULL;
    bytes[size / 2] ^= 0x10; /* a flipped bit in the middle */
    FILE *f = fopen(bad, "wb");
    fwrite(bytes, 1, size, f);
    fclose(f);
    CHECK(statsfile_load(bad, &x, &err) == ST_ERR_FORMAT);
    CHECK(strstr(err.detail, bad) != NULL);
    bytes[size / 2] ^= 0x10;
    bytes[4] = 9; /* version */
    f = fopen(bad, "wb");
    fwrite(bytes, 1, size, f);
    fclose(f);
    CHECK(statsfile_load(bad, &x, &err) == ST_ERR_FORMAT && strstr(err.detail, "version"));
    bytes[4] = STATSFILE_VERSION;
    /* n_layers huge: rejected before allocating */
    size_t nl_off = 4 + 4 + 8 + 4 + strlen("tinystories_sample.txt") + 8 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 4 + 8;
    CHECK(bytes[nl_off] == 5);
    bytes[nl_off + 3] = 0x7f;
    f = fopen(bad, "wb");
    fwrite(bytes, 1, size, f);
    fclose(f);
    CHECK(statsfile_load(bad, &x, &err) == ST_ERR_FORMAT && strstr(err.detail, "n_layers"));
    bytes[nl_off + 3] = 0;
    bytes[nl_off + 1] = 0x0f; /* 3845 layers: in range, but the file is far too short for them */
    f = fopen(bad, "wb");
    fwrite(bytes, 1, size, f);
    fclose(f);
    CHECK(statsfile_load(bad, &x, &err) == ST_ERR_FORMAT && strstr(err.detail, "truncated at field 'layers'"));
    free(bytes);
    CHECK(statsfile_load(tmp_path("missing.qsst"), &x, &err) == ST_ERR_IO);

    /* H file tied to its stats: another run's id is refused */
    HStore hs;
    CHECK(hstore_open(&hs, ha, a->h_id ^ 1, a->n_layers, a->width, &err) == ST_ERR_MISMATCH);

    /* cancel before the first sequence: nothing kept */
    progress_init(&prog);
    progress_cancel(&prog);
    CHECK(calib_run(m, text, len, &p, NULL, pool, &prog, &b, &err) == ST_ERR_CANCELLED && b == NULL);

    calib_stats_free(a);
    pool_free(pool);
    free(text);
    model_free(m);
}

/* The stats file and its H are replaced as a pair: a crash between putting
 * the new H in place and writing the new stats leaves the old pair loadable
 * (before, the new H was renamed over the old one first and the old stats
 * then met a foreign H); a committed run removes the H it replaced; a
 * directory as the stats path is refused without writing beside it. */
static void test_pair_commit(const Model *m, const char *text, size_t len) {
    Err err;
    err_init(&err);
    CalibParams p;
    calib_params_default(&p);
    p.samples = 2;
    p.seqlen = 64;
    p.sensitivity = 0;
    char sp[300];
    snprintf(sp, sizeof sp, "%s", tmp_path("pair.qsst"));
    CalibStats *a = NULL, *b = NULL;
    char *h1 = calib_h_temp(sp);
    CHECK_OK(calib_run(m, text, len, &p, h1, NULL, NULL, &a, &err), err);
    CHECK_OK(calib_commit(a, h1, sp, &err), err);
    CHECK(access(h1, F_OK) != 0);
    char *ha = statsfile_h_path(sp, a->h_id);
    CHECK(access(ha, F_OK) == 0);
    QStatsFile f;
    CHECK_OK(qstats_open(sp, m, &f, &err), err);
    CHECK(f.h && f.cs->h_id == a->h_id);
    qstats_close(&f);

    p.seed = 2;
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setenv("QS_CALIB_CRASH_AT", "after-h-rename", 1);
        char *h2 = calib_h_temp(sp);
        if (calib_run(m, text, len, &p, h2, NULL, NULL, &b, &err) == ST_OK) calib_commit(b, h2, sp, &err);
        _exit(9); /* not reached: the hook kills the process */
    }
    int ws = 0;
    CHECK(waitpid(pid, &ws, 0) == pid && WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    CHECK_OK(qstats_open(sp, m, &f, &err), err); /* the old pair, intact */
    CHECK(f.h && f.cs->h_id == a->h_id && f.cs->params.seed == 1);
    qstats_close(&f);

    char *h3 = calib_h_temp(sp);
    CHECK_OK(calib_run(m, text, len, &p, h3, NULL, NULL, &b, &err), err);
    CHECK(b->h_id != a->h_id);
    CHECK_OK(calib_commit(b, h3, sp, &err), err);
    CHECK_OK(qstats_open(sp, m, &f, &err), err);
    CHECK(f.h && f.cs->h_id == b->h_id && f.cs->params.seed == 2);
    qstats_close(&f);
    CHECK(access(ha, F_OK) != 0); /* the replaced H is gone */
    char *hb = statsfile_h_path(sp, b->h_id);

    /* `calib -o /tmp`: refused up front and at commit; nothing written beside the directory */
    CHECK(calib_output_check(tmpdir, &err) == ST_ERR_ARG && strstr(err.detail, "directory"));
    char *h4 = calib_h_temp(tmpdir);
    CalibStats *c = NULL;
    CHECK_OK(calib_run(m, text, len, &p, h4, NULL, NULL, &c, &err), err);
    CHECK(calib_commit(c, h4, tmpdir, &err) == ST_ERR_ARG);
    CHECK(access(h4, F_OK) != 0);
    char *hd = statsfile_h_path(tmpdir, c->h_id);
    CHECK(access(hd, F_OK) != 0);
    unlink(sp);
    unlink(hb);
    free(h1);
    free(h3);
    free(h4);
    free(ha);
    free(hb);
    free(hd);
    calib_stats_free(a);
    calib_stats_free(b);
    calib_stats_free(c);
}

/* Activations that overflow fail the calibration, naming the layer and tap
 * (before, it reported success with zero statistics and NaN kurtosis). */
static void test_nonfinite(Model *m, const char *text, size_t len) {
    Err err;
    err_init(&err);
    CalibParams p;
    calib_params_default(&p);
    p.samples = 2;
    p.seqlen = 32;
    p.sensitivity = 0;
    int64_t dim = m->cfg.dim;
    float *gain = malloc(sizeof(float) * (size_t)dim);
    for (int64_t i = 0; i < dim; i++) gain[i] = 1e30f; /* rmsnorm output ~1e30: the FFN overflows */
    const float *saved = m->layers[2].ffn_norm;
    m->layers[2].ffn_norm = gain;
    CalibStats *cs = NULL;
    Status st = calib_run(m, text, len, &p, NULL, NULL, NULL, &cs, &err);
    m->layers[2].ffn_norm = saved;
    free(gain);
    CHECKF(st == ST_ERR_NUMERIC && cs == NULL, "status %d", (int)st);
    CHECKF(strstr(err.detail, "non-finite") && strstr(err.detail, "layer 2, tap down"), "%s", err.detail);
}

typedef struct Canceller {
    Progress *prog;
    _Atomic int stop;
} Canceller;

static void *cancel_after_two(void *arg) {
    Canceller *c = arg;
    while (!c->stop && atomic_load(&c->prog->done) < 2) usleep(1000);
    progress_cancel(c->prog);
    return NULL;
}

/* --samples 2^24: windows are drawn as they are used (before, 2^24 × seqlen
 * tokens were allocated and copied up front: 4 GiB here, refused under a
 * 2 GiB address-space limit). Runs in a child with that limit. */
static void test_lazy_windows(const Model *m, const char *text, size_t len) {
    /* AddressSanitizer reserves terabytes of address space for its shadow
     * memory: under a 2 GiB RLIMIT_AS the child cannot even start (make asan
     * failed here with "ASan failed to allocate ... Failed to mmap"). */
    if (getenv("QS_ASAN")) {
        printf("note: QS_ASAN: skipping the 2 GiB address-space limit test (ASan's shadow needs more)\n");
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {(rlim_t)2 << 30, (rlim_t)2 << 30};
        setrlimit(RLIMIT_AS, &rl);
        Err err;
        err_init(&err);
        CalibParams p;
        calib_params_default(&p);
        p.samples = (int64_t)1 << 24;
        p.seqlen = 64;
        p.sensitivity = 0;
        Progress prog;
        progress_init(&prog);
        Canceller c = {.prog = &prog};
        pthread_t th;
        if (pthread_create(&th, NULL, cancel_after_two, &c) != 0) _exit(4);
        CalibStats *cs = NULL;
        Status st = calib_run(m, text, len, &p, NULL, NULL, &prog, &cs, &err);
        c.stop = 1;
        pthread_join(th, NULL);
        if (st != ST_OK) {
            fprintf(stderr, "test_lazy_windows: %s: %s\n", status_message(st), err.detail);
            _exit(3);
        }
        int ok = cs->n_planned == p.samples && cs->n_seqs >= 2 && cs->n_seqs < 100;
        calib_stats_free(cs);
        _exit(ok ? 0 : 5);
    }
    int ws = 0;
    CHECK(waitpid(pid, &ws, 0) == pid);
    CHECKF(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "child status %d", ws);
}

/* One text for calibration and evaluation: the split (calib_split_eval_chunks),
 * windows from the part past evaluation's chunks only (text_tokens counts the
 * part; tok_from is saved), a part shorter than a window refused, and the
 * overlap test eval uses. stories260K's sample: 1881 tokens, 14 chunks of 128
 * with BOS, 7 kept for evaluation (896 tokens), 985 for calibration. */
static void test_part(const Model *m, const char *text, size_t len) {
    CHECK(calib_split_eval_chunks(1881, 128) == 7);
    CHECK(calib_split_eval_chunks(826674, 512) == 1614 - 8); /* wikitext-2: 4096 tokens kept */
    CHECK(calib_split_eval_chunks(300, 128) == 1);           /* 2 chunks: one each */
    CHECK(calib_split_eval_chunks(200, 128) == 0);           /* 1 chunk: no split */
    CHECK(calib_part_from(128, 7) == 896);
    Err err;
    err_init(&err);
    CalibParams p;
    calib_params_default(&p);
    p.samples = 3;
    p.seqlen = 64;
    p.mode = CALIB_CHUNKS;
    p.sensitivity = 0;
    p.tok_from = calib_part_from(128, 7);
    CalibStats *cs = NULL;
    CHECK_OK(calib_run(m, text, len, &p, NULL, NULL, NULL, &cs, &err), err);
    CHECK(cs->text_tokens == 1881 - 896 && cs->n_seqs == 3 && cs->params.tok_from == 896);
    CHECK_OK(statsfile_save(cs, tmp_path("d.qsst"), &err), err);
    CalibStats *back = NULL;
    CHECK_OK(statsfile_load(tmp_path("d.qsst"), &back, &err), err);
    CHECK(back->params.tok_from == 896);
    /* the windows rebuilt for the spikes' context are the ones calibrated on: each
     * spike's token sits at its (seq, pos), and its context ends with that token */
    int32_t *seqs = NULL;
    int64_t nw = 0;
    CHECK_OK(spikes_windows(back, m, text, len, &seqs, &nw, &err), err);
    CHECK(nw == 3);
    int64_t n_checked = 0;
    for (int64_t i = 0; i < back->n_layers * TAP_COUNT; i++)
        for (int64_t k = 0; k < back->taps[i].n_top; k++) {
            const Spike *sp = &back->taps[i].top[k];
            CHECK(seqs[sp->seq * 64 + sp->pos] == sp->token || sp->pos == 0);
            char c[128], want[64];
            spikes_context(m->tok, seqs, nw, 64, sp, c, sizeof c);
            snprintf(want, sizeof want, "[%s]", sp->text);
            if (sp->pos > 0 && !strchr(sp->text, '\n')) CHECKF(strstr(c, want) != NULL, "'%s' lacks '%s'", c, want);
            n_checked++;
        }
    CHECK(n_checked > 50);
    free(seqs);
    CHECK(spikes_windows(back, m, text, len - 1, &seqs, &nw, &err) == ST_ERR_MISMATCH && !seqs);
    /* eval of the first 7 chunks reads tokens [0, 895): apart; of 8 or all 14: overlapping */
    CHECK(!calib_overlaps_eval(&back->params, text, len, 128, 7));
    CHECK(calib_overlaps_eval(&back->params, text, len, 128, 8));
    CHECK(!calib_overlaps_eval(&back->params, text, len - 1, 128, 14)); /* another text */
    back->params.tok_from = 0;
    CHECK(calib_overlaps_eval(&back->params, text, len, 128, 1)); /* the whole text */
    calib_stats_free(back);
    calib_stats_free(cs);
    p.tok_from = 1881 - 63; /* 63 tokens left: fewer than a window */
    CHECK(calib_run(m, text, len, &p, NULL, NULL, NULL, &cs, &err) == ST_ERR_RANGE && !cs);
    CHECKF(strstr(err.detail, "calibration part (tokens from 1818 of 1881"), "%s", err.detail);
}

/* Duplicates: same channel and token with the same context (or, without
 * contexts, the same value) are one row, counted; order is kept. */
static void test_merge(void) {
    Spike s[5] = {{5.f, 3, 7, 1, 0, "a"}, {5.f, 3, 7, 9, 1, "a"}, {4.f, 3, 8, 2, 0, "b"}, {4.f, 2, 7, 3, 0, "a"},
                  {3.f, 3, 7, 4, 2, "a"}};
    int64_t keep[5], count[5];
    CHECK(spikes_merge(s, 5, NULL, keep, count) == 4 && keep[0] == 0 && count[0] == 2 && keep[3] == 4 && count[3] == 1);
    const char *ctx[5] = {"x[a]", "y[a]", "x[b]", "x[a]", "x[a]"};
    CHECK(spikes_merge(s, 5, ctx, keep, count) == 4 && count[0] == 2 && keep[1] == 1 && count[1] == 1 && keep[3] == 3);
}

/* A model with planted spikes: the top-k of the ranking is exactly them. */
static void test_synth_spikes(void) {
    Err err;
    err_init(&err);
    SynthConfig cfg;
    CHECK_OK(synth_preset("tiny", &cfg, &err), err);
    cfg.seed = 11;
    CHECK_OK(synth_parse_spikes("1.down:7:100,3.down:20:100", &cfg, &err), err);
    Synth *sy = NULL;
    CHECK_OK(synth_new(&cfg, &sy, &err), err);
    const char *mp = tmp_path("spiky.gguf");
    CHECK_OK(synth_write(sy, mp, NULL, &err), err);
    synth_free(sy);
    Model *m = NULL;
    CHECK_OK(model_load(mp, NULL, &m, &err), err);
    size_t len = 0;
    char *text = read_text(testlib_shared("text/tinystories_sample.txt"), &len);
    CalibParams p;
    calib_params_default(&p);
    p.samples = 6;
    p.seqlen = 64;
    p.sensitivity = 0;
    CalibStats *cs = NULL;
    CHECK_OK(calib_run(m, text, len, &p, NULL, NULL, NULL, &cs, &err), err);
    SpikeScore *s = NULL;
    int64_t n = 0;
    CHECK_OK(spikes_score(cs, &s, &n, &err), err);
    int found1 = 0, found3 = 0;
    for (int i = 0; i < 2; i++) {
        CHECK(s[i].tap == TAP_DOWN && s[i].ratio > 80);
        found1 |= s[i].layer == 1;
        found3 |= s[i].layer == 3;
        const TapStats *ts = calib_tap(cs, s[i].layer, TAP_DOWN);
        CHECK(ts->top[0].pos == 0 && ts->top[0].token == tokenizer_bos(m->tok));
        CHECK(ts->top[0].channel == (s[i].layer == 1 ? 7 : 20));
    }
    CHECK(found1 && found3);
    /* planted at 100x the median: the random down inputs' own tails reach
     * ~60x here (SwiGLU products are heavy-tailed), so the margin is ~1.6x */
    CHECKF(s[1].ratio > 1.4 * s[2].ratio, "planted %g vs next %g", s[1].ratio, s[2].ratio);
    CHECK(s[0].rank_max <= 2 && s[1].rank_max <= 2);
    free(s);
    calib_stats_free(cs);
    free(text);
    model_free(m);
}

/* Runs calibration of m with pipeline pipe (hidden budget budget bytes, 0:
 * default) and writes stats + H under tag; returns the stats (caller frees). */
static CalibStats *run_pipe(const Model *m, const char *text, size_t len, const CalibParams *base, CalibPipeline pipe,
                            size_t budget, const char *tag) {
    Err err;
    err_init(&err);
    CalibParams p = *base;
    p.pipeline = pipe;
    p.hidden_budget = budget;
    char sp[64], hp[64];
    snprintf(sp, sizeof sp, "%s.qsst", tag);
    snprintf(hp, sizeof hp, "%s.h64", tag);
    char hpath[256];
    snprintf(hpath, sizeof hpath, "%s", tmp_path(hp));
    Pool *pool = NULL;
    CHECK_OK(pool_new(2, &pool, &err), err);
    CalibStats *cs = NULL;
    CHECK_OK(calib_run(m, text, len, &p, hpath, pool, NULL, &cs, &err), err);
    CHECK_OK(statsfile_save(cs, tmp_path(sp), &err), err);
    pool_free(pool);
    return cs;
}

/* The layer-streamed pipeline (default) against the per-sample one: the
 * same stats file and the same H, byte for byte, with the residual stream
 * in RAM and with all but one sequence spilled to the temporary file
 * (same reduction order: each (layer, tap) sees the sequences in order).
 * On stories260K (F32) and on a small F16 synth wide enough for several
 * 256-channel slices and 192-row H blocks. */
static void test_pipelines(const char *model_path, const char *label, int64_t samples, int64_t seqlen) {
    Err err;
    err_init(&err);
    Model *m = NULL;
    CHECK_OK(model_load(model_path, NULL, &m, &err), err);
    size_t len = 0;
    char *text = read_text(testlib_shared("text/tinystories_sample.txt"), &len);
    CalibParams p;
    calib_params_default(&p);
    p.samples = samples;
    p.seqlen = seqlen;
    p.seed = 5;
    p.sensitivity = 1;
    snprintf(p.text_path, sizeof p.text_path, "tinystories_sample.txt");
    size_t seq_bytes = (size_t)seqlen * (size_t)m->cfg.dim * sizeof(float);
    CalibStats *a = run_pipe(m, text, len, &p, CALIB_PER_SAMPLE, 0, "pa");
    CalibStats *b = run_pipe(m, text, len, &p, CALIB_STREAM, 0, "pb");
    CalibStats *c = run_pipe(m, text, len, &p, CALIB_STREAM, seq_bytes, "pc");
    CHECK(a->pipeline == CALIB_PER_SAMPLE && b->pipeline == CALIB_STREAM && c->pipeline == CALIB_STREAM);
    CHECK(b->spilled_bytes == 0 && c->spilled_bytes == (size_t)(samples - 1) * seq_bytes);
    CHECK(a->n_seqs == samples && b->n_seqs == samples && c->n_seqs == samples && b->has_h && b->has_sens);
    /* the H id hashes n_seqs and the parameters: equal ids, equal files */
    CHECK(a->h_id == b->h_id && a->h_id == c->h_id);
    CHECKF(files_equal(tmp_path("pa.qsst"), tmp_path("pb.qsst")), "%s: stats differ (stream vs per-sample)", label);
    CHECKF(files_equal(tmp_path("pa.qsst"), tmp_path("pc.qsst")), "%s: stats differ (spilled stream)", label);
    CHECKF(files_equal(tmp_path("pa.h64"), tmp_path("pb.h64")), "%s: H differs (stream vs per-sample)", label);
    CHECKF(files_equal(tmp_path("pa.h64"), tmp_path("pc.h64")), "%s: H differs (spilled stream)", label);
    printf("%s: %lld x %lld tokens: stream, spilled stream and per-sample give identical stats and H\n", label,
           (long long)samples, (long long)seqlen);
    /* a cancel before the first step keeps nothing */
    Progress prog;
    progress_init(&prog);
    progress_cancel(&prog);
    CalibStats *d = NULL;
    CHECK(calib_run(m, text, len, &p, NULL, NULL, &prog, &d, &err) == ST_ERR_CANCELLED && d == NULL);
    calib_stats_free(a);
    calib_stats_free(b);
    calib_stats_free(c);
    const char *names[] = {"pa.qsst", "pb.qsst", "pc.qsst", "pa.h64", "pb.h64", "pc.h64"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(tmp_path(names[i]));
    free(text);
    model_free(m);
}

static void test_pipelines_synth(void) {
    Err err;
    err_init(&err);
    SynthConfig cfg;
    CHECK_OK(synth_preset("tiny", &cfg, &err), err);
    cfg.dim = 512;
    cfg.hidden_dim = 1376;
    cfg.n_layers = 2;
    cfg.type = GGML_F16;
    cfg.seed = 7;
    Synth *sy = NULL;
    CHECK_OK(synth_new(&cfg, &sy, &err), err);
    const char *mp = tmp_path("pipe.gguf");
    CHECK_OK(synth_write(sy, mp, NULL, &err), err);
    synth_free(sy);
    test_pipelines(mp, "synth 512/1376 F16", 3, 96);
    unlink(mp);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qs_calib_XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    test_sample();
    test_merge();
    test_stories();
    test_synth_spikes();
    test_pipelines(testlib_shared("models/stories260K/stories260K-f32.gguf"), "stories260K", 6, 128);
    test_pipelines_synth();
    {
        Err err;
        err_init(&err);
        Model *m = NULL;
        CHECK_OK(model_load(testlib_shared("models/stories260K/stories260K-f32.gguf"), NULL, &m, &err), err);
        size_t len = 0;
        char *text = read_text(testlib_shared("text/tinystories_sample.txt"), &len);
        test_pair_commit(m, text, len);
        test_nonfinite(m, text, len);
        test_lazy_windows(m, text, len);
        test_part(m, text, len);
        free(text);
        model_free(m);
    }
    const char *names[] = {"a.qsst", "b.qsst", "c.qsst", "d.qsst", "bad.qsst", "a.qsst.h64", "b.qsst.h64", "spiky.gguf"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(tmp_path(names[i]));
    rmdir(tmpdir);
    return testlib_done("test_calib");
}
