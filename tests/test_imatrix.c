/* llama.cpp importance matrices: written from a qscope calibration of
 * stories260K (GGUF and legacy .dat), read back, refused when malformed; and,
 * with llama.cpp's tools built, accepted by llama-quantize --imatrix (which
 * then rounds differently than without), and llama-imatrix's own file read
 * by qscope, agreeing with qscope's calibration of the same chunks. */
#include <math.h>
#include <unistd.h>

#include "analysis/calib.h"
#include "analysis/imatrix.h"
#include "core/atomicfile.h"
#include "core/mapfile.h"
#include "model/gguf.h"
#include "model/model.h"
#include "tests/testlib.h"

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    return testlib_path(tmpdir, name);
}

static int run(const char *cmd) {
    int rc = system(cmd);
    return rc == 0;
}

int main(void) {
    Err err;
    err_init(&err);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qs_imatrix_%ld", (long)getpid());
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    CHECK(run(cmd));
    const char *model_path = testlib_shared("models/stories260K/stories260K-f32.gguf");
    const char *text_path = testlib_shared("text/tinystories_sample.txt");
    Model *m;
    CHECK_OK(model_load(model_path, NULL, &m, &err), err);
    char *text;
    size_t len;
    CHECK_OK(file_read_all(text_path, (size_t)1 << 20, &text, &len, &err), err);

    /* qscope's calibration in llama-imatrix's windows: consecutive chunks of 64 tokens. */
    CalibParams p;
    calib_params_default(&p);
    p.mode = CALIB_CHUNKS;
    p.seqlen = 64;
    p.samples = 1000;
    p.sensitivity = 0;
    snprintf(p.text_path, sizeof p.text_path, "%s", text_path);
    CalibStats *cs;
    CHECK_OK(calib_run(m, text, len, &p, NULL, NULL, NULL, &cs, &err), err);
    Imatrix *im;
    CHECK_OK(imatrix_from_stats(cs, &im, &err), err);
    CHECK(im->n_entries == 5 * 7 && im->chunk_size == 64 && im->chunk_count == cs->n_seqs);
    const ImatrixEntry *q3 = imatrix_find(im, "blk.3.attn_q.weight"), *k3 = imatrix_find(im, "blk.3.attn_k.weight");
    const ImatrixEntry *d4 = imatrix_find(im, "blk.4.ffn_down.weight");
    CHECK(q3 && k3 && d4 && q3->n == 64 && d4->n == 172 && q3->count == (double)cs->n_tokens);
    const TapStats *ts = calib_tap(cs, 4, TAP_DOWN);
    for (int64_t j = 0; j < 172; j++) CHECK(d4->sum2[j] == ts->ch_sumsq[j] && d4->sum2[j] > 0);
    CHECK(!memcmp(q3->sum2, k3->sum2, 64 * sizeof(double))); /* q, k and v read the same input */
    for (int64_t i = 1; i < im->n_entries; i++) CHECK(strcmp(im->e[i - 1].name, im->e[i].name) < 0);

    /* GGUF round trip: float32 on disk, so equal to the float32 of qscope's sums. */
    const char *qg = tmp_path("qs.gguf"), *qd = tmp_path("qs.dat");
    CHECK_OK(imatrix_write(im, qg, 0, &err), err);
    CHECK_OK(imatrix_write(im, qd, 1, &err), err);
    Imatrix *rg, *rd;
    CHECK_OK(imatrix_read(qg, &rg, &err), err);
    CHECK_OK(imatrix_read(qd, &rd, &err), err);
    CHECK(rg->n_entries == im->n_entries && rd->n_entries == im->n_entries);
    CHECK(rg->chunk_count == im->chunk_count && rg->chunk_size == 64 && !strcmp(rg->dataset, text_path));
    CHECK(rd->chunk_count == im->chunk_count && !strcmp(rd->dataset, text_path));
    for (int64_t i = 0; i < im->n_entries; i++) {
        const ImatrixEntry *a = &im->e[i], *g = &rg->e[i], *d = &rd->e[i];
        CHECK(!strcmp(a->name, g->name) && !strcmp(a->name, d->name) && a->n == g->n && a->n == d->n);
        CHECK(g->count == (double)(float)a->count);
        for (int64_t j = 0; j < a->n; j++) {
            CHECK(g->sum2[j] == (double)(float)a->sum2[j]);
            double mean = a->sum2[j] / a->count;
            CHECK_NEAR(d->sum2[j] / d->count, mean, 1e-6 * mean);
        }
    }
    /* Malformed files fail naming the file. */
    Imatrix *bad = NULL;
    char *raw;
    size_t rl;
    CHECK_OK(file_read_all(qd, (size_t)1 << 24, &raw, &rl, &err), err);
    const char *cut = tmp_path("cut.dat");
    CHECK_OK(afile_save(cut, raw, rl / 2, &err), err);
    CHECK(imatrix_read(cut, &bad, &err) != ST_OK && strstr(err.detail, "cut.dat") && !bad);
    free(raw);
    CHECK(imatrix_read(model_path, &bad, &err) == ST_ERR_FORMAT && strstr(err.detail, "not an importance matrix"));

    /* The consumers (ffn_down's 172 columns hold no 32-blocks: kept f16, as in ../shared's
     * stories260K-Q4_0-mixed.gguf). */
    const char *lq = testlib_llama_tool("llama-quantize", "llama-quantize --imatrix with qscope's matrix");
    if (lq) {
        const char *o_im = tmp_path("q4_im.gguf"), *o_no = tmp_path("q4_no.gguf"), *o_dat = tmp_path("q4_dat.gguf");
        snprintf(cmd, sizeof cmd, "%s --tensor-type ffn_down=f16 --imatrix %s %s %s Q4_0 >%s/lq1.log 2>&1 && grep -q 'loaded 35 importance "
                 "matrix entries' %s/lq1.log", lq, qg, model_path, o_im, tmpdir, tmpdir);
        CHECKF(run(cmd), "llama-quantize refused %s (see %s/lq1.log)", qg, tmpdir);
        snprintf(cmd, sizeof cmd, "%s --tensor-type ffn_down=f16 --imatrix %s %s %s Q4_0 >%s/lq2.log 2>&1 && grep -q 'loaded 35 importance "
                 "matrix entries' %s/lq2.log", lq, qd, model_path, o_dat, tmpdir, tmpdir);
        CHECKF(run(cmd), "llama-quantize refused %s (see %s/lq2.log)", qd, tmpdir);
        snprintf(cmd, sizeof cmd, "%s --tensor-type ffn_down=f16 %s %s Q4_0 >%s/lq3.log 2>&1", lq, model_path, o_no, tmpdir);
        CHECK(run(cmd));
        /* the matrix changed the rounding (Q4_0 with an imatrix weights each column) */
        CHECK(!testlib_same_tensor(o_im, o_no, "blk.2.attn_q.weight"));
        CHECK(!testlib_same_tensor(o_dat, o_no, "blk.2.attn_q.weight"));
    }
    const char *li = testlib_llama_tool("llama-imatrix", "reading llama-imatrix's matrix");
    if (li && lq) {
        /* float32 attention (the README's tight protocol), one thread, chunks of 64 */
        const char *lig = tmp_path("li.gguf");
        snprintf(cmd, sizeof cmd, "%s -m %s -f %s -c 64 -b 64 -t 1 -fa off -ctk f32 -ctv f32 -o %s >%s/li.log 2>&1",
                 li, model_path, text_path, lig, tmpdir);
        CHECKF(run(cmd), "llama-imatrix failed (see %s/li.log)", tmpdir);
        Imatrix *l;
        CHECK_OK(imatrix_read(lig, &l, &err), err);
        CHECK(l->n_entries == 35 && l->chunk_size == 64);
        /* Same window count as qscope's; llama.cpp tokenizes the text with a leading BOS
         * (imatrix.cpp: common_tokenize(..., add_bos)), so its windows sit one token later
         * than qscope's chunks: per-tensor mean x² agrees within 3 % (1.7 % measured), where
         * a mixed-up tap or a sum/mean confusion would be off by far more. */
        CHECKF(l->chunk_count == cs->n_seqs, "%lld vs %lld chunks", (long long)l->chunk_count, (long long)cs->n_seqs);
        double worst = 0;
        for (int64_t i = 0; i < l->n_entries; i++) {
            const ImatrixEntry *a = &l->e[i], *b = imatrix_find(im, a->name);
            CHECKF(b && b->n == a->n && a->count == b->count, "%s", a->name);
            double sa = 0, sb = 0;
            for (int64_t j = 0; j < a->n; j++) sa += a->sum2[j], sb += b->sum2[j];
            double d = fabs(sa - sb) / sb;
            if (d > worst) worst = d;
        }
        printf("llama-imatrix vs qscope calibration: largest per-tensor mean x^2 difference %.3g %%\n", 100 * worst);
        fflush(stdout);
        CHECK(worst < 0.03);
        /* Rewritten by qscope, llama-imatrix's matrix quantizes exactly as the original. */
        const char *rw = tmp_path("li_rw.gguf"), *o_li = tmp_path("q4_li.gguf"), *o_rw = tmp_path("q4_rw.gguf");
        CHECK_OK(imatrix_write(l, rw, 0, &err), err);
        snprintf(cmd, sizeof cmd, "%s --tensor-type ffn_down=f16 --imatrix %s %s %s Q4_0 >/dev/null 2>&1 && %s --tensor-type ffn_down=f16 --imatrix %s %s %s Q4_0 "
                 ">/dev/null 2>&1", lq, lig, model_path, o_li, lq, rw, model_path, o_rw);
        CHECK(run(cmd));
        static const char *const NAMES[] = {"blk.0.attn_q.weight", "blk.2.ffn_up.weight", "blk.4.attn_output.weight",
                                            "token_embd.weight"};
        for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) CHECKF(testlib_same_tensor(o_li, o_rw, NAMES[i]), "%s", NAMES[i]);
        imatrix_free(l);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(run(cmd));
    imatrix_free(rg);
    imatrix_free(rd);
    imatrix_free(im);
    calib_stats_free(cs);
    free(text);
    model_free(m);
    return testlib_done("test_imatrix");
}
