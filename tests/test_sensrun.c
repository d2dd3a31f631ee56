/* The sensitivity map as a resumable stage (analysis/sensrun.h): a pass
 * stopped after some sites keeps them in the stats file, a later pass
 * computes only the missing sites and ends with the same map as one
 * uninterrupted pass; the progress is weighted by each site's cost; the
 * stats file maps the cells by candidate name (a file lacking a candidate
 * loads as a partial map and resumes that candidate alone) and refuses the
 * version-1 layout with "recalibrate"; the candidates added with int5 and
 * the ggml types are estimated within 5 % of exact. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analysis/calib.h"
#include "analysis/sensitivity.h"
#include "analysis/sensrun.h"
#include "analysis/statsfile.h"
#include "core/atomicfile.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "core/pool.h"
#include "model/synth.h"
#include "testlib.h"

static char tmpdir[64];

/* Identical cells, bit for bit (NaN where the other is NaN). */
static int maps_equal(const SensMap *a, const SensMap *b) {
    size_t nc = (size_t)a->n_layers * PROJ_COUNT * SENS_NFMT * SG_COUNT;
    for (size_t i = 0; i < nc; i++) {
        if (isnan(a->werr[i]) != isnan(b->werr[i]) || isnan(a->oerr[i]) != isnan(b->oerr[i])) return 0;
        if (!isnan(a->werr[i]) && a->werr[i] != b->werr[i]) return 0;
        if (!isnan(a->oerr[i]) && a->oerr[i] != b->oerr[i]) return 0;
    }
    return memcmp(a->gsize, b->gsize, sizeof(int32_t) * (size_t)a->n_layers * PROJ_COUNT * SG_COUNT) == 0;
}

/* The cells of a whole site: every candidate's groupings. */
static int site_cells(void) {
    int n = 0;
    for (int f = 0; f < SENS_NFMT; f++) n += sens_fmt_cells(f);
    return n;
}

/* What the site callback sees: the file holds every finished site when saved
 * after each one; the progress ticks follow the cost of the sites done. */
typedef struct Watch {
    const char *path;
    const Model *m;
    Progress *prog;
    int sites;
    int file_ok;             /* the file's done count matched after every site */
    double cost_total, cost_done;
    int ticks_ok;
} Watch;

static Status watch_site(void *user, const SensMap *sm, int64_t layer, int proj, Err *err) {
    Watch *w = user;
    w->sites++;
    CalibStats *f = NULL;
    /* sensrun_map saves (save_secs 0) before it calls back */
    if (statsfile_load(w->path, &f, err) != ST_OK) return ST_ERR_IO;
    if (!f->has_sens || sens_map_sites_done(&f->sens) != sens_map_sites_done(sm)) w->file_ok = 0;
    calib_stats_free(f);
    const Weight *wt = &w->m->layers[layer].proj[proj];
    w->cost_done += sens_site_cost(wt->n_out, wt->n_in, site_cells());
    /* the ticks of this site are added after the callback: compare with the previous site's */
    int64_t before = (int64_t)(1000.0 * (w->cost_done - sens_site_cost(wt->n_out, wt->n_in, site_cells())) /
                               w->cost_total);
    if (w->prog && atomic_load(&w->prog->done) != before) w->ticks_ok = 0;
    return ST_OK;
}

/* The new candidates' cells (int5, ggml's q8_0 ... q2_k) estimated within
 * 5 % of the exact tr(ΔW H ΔWᵀ), as the others: on a synth whose rows are
 * 256 and 768 wide, so the K-quants' 256-element blocks fit (stories260K's
 * 64 and 172 hold none), from 8 rows so that the estimate really samples. */
static void test_new_cells(Pool *pool, const char *text, size_t len) {
    Err err;
    err_init(&err);
    char mp[256];
    snprintf(mp, sizeof mp, "%s/w256.gguf", tmpdir);
    Model *m = testlib_synth_wide(mp, 256, 768, 0, 3);
    CalibParams p;
    calib_params_default(&p);
    p.samples = 3;
    p.seqlen = 64;
    p.sensitivity = 0;
    char hp[256];
    snprintf(hp, sizeof hp, "%s/w256.h64", tmpdir);
    CalibStats *cs = NULL;
    CHECK_OK(calib_run(m, text, len, &p, hp, pool, NULL, &cs, &err), err);
    HStore hs;
    CHECK_OK(hstore_open(&hs, hp, cs->h_id, cs->n_layers, cs->width, &err), err);
    SensMap ex, es;
    SensOpts so;
    sens_opts_default(&so);
    so.exact = 1;
    CHECK_OK(sens_map_init(&ex, cs->n_layers, 32, &err), err);
    CHECK_OK(sens_compute_opts(m, &hs, &so, pool, NULL, &ex, &err), err);
    sens_opts_default(&so);
    so.min_rows = 8;
    CHECK_OK(sens_map_init(&es, cs->n_layers, 32, &err), err);
    CHECK_OK(sens_compute_opts(m, &hs, &so, pool, NULL, &es, &err), err);
    hstore_close(&hs);
    int n_new = 0, n_k = 0, sampled = 0;
    double worst = 0;
    for (int64_t l = 0; l < cs->n_layers; l++)
        for (int pr = 0; pr < PROJ_COUNT; pr++)
            for (int f = 0; f < SENS_NFMT; f++) {
                QFormat q = sens_fmt(f);
                const QFormatTraits *t = qformat_traits(q);
                if (q != QF_INT5 && t->family != QFAM_GGML) continue;
                for (int g = 0; g < SG_COUNT; g++) {
                    int64_t i = sens_index(l, pr, f, (SensGroup)g);
                    CHECK(isnan(ex.oerr[i]) == !sens_cell_applies(f, (SensGroup)g) || g >= SG_OC_G);
                    if (isnan(ex.oerr[i])) continue;
                    double e = fabs(es.oerr[i] - ex.oerr[i]) / ex.oerr[i];
                    CHECKF(e <= 0.05, "L%lld %s %s/%s: estimate %g vs exact %g", (long long)l, proj_name((Proj)pr),
                           t->name, sens_group_name((SensGroup)g), es.oerr[i], ex.oerr[i]);
                    CHECK(fabs(es.werr[i] - ex.werr[i]) <= 0.05 * ex.werr[i] && ex.oerr[i] > 0);
                    worst = e > worst ? e : worst;
                    sampled += e > 1e-6;
                    n_new++;
                    n_k += t->family == QFAM_GGML && strchr(t->name, 'k') != NULL;
                }
            }
    /* 2 layers x 7 sites: int5 5 cells + 10 ggml cells each (k/v rows of 128 are blocks too) */
    printf("new candidates' cells: %d (%d K-quant), %d sampled, worst %.2f %% from exact\n", n_new, n_k, sampled,
           100 * worst);
    CHECK(n_new == 2 * PROJ_COUNT * 15 && n_k == 2 * PROJ_COUNT * 5 && sampled > 0);
    /* ordered as their bits: q8_0 < q6_k < q4_k < q2_k on every site */
    for (int64_t l = 0; l < cs->n_layers; l++)
        for (int pr = 0; pr < PROJ_COUNT; pr++) {
            const QFormat order[] = {QF_Q8_0, QF_Q6_K, QF_Q4_K, QF_Q2_K};
            for (int k = 0; k + 1 < 4; k++)
                CHECK(ex.oerr[sens_index(l, pr, sens_fmt_index(order[k]), SG_BLOCK)] <
                      ex.oerr[sens_index(l, pr, sens_fmt_index(order[k + 1]), SG_BLOCK)]);
        }
    sens_map_done(&ex);
    sens_map_done(&es);
    calib_stats_free(cs);
    model_free(m);
    unlink(hp);
    unlink(mp);
}

/* Each cell's bits per weight: the format's bits plus its scales (one fp16
 * per group), or a ggml format's block bytes; n/a where the cell is not one
 * of the candidate's or its size is unknown. */
static void test_cell_bpw(void) {
    const int32_t gs[SG_COUNT] = {0, 0, 0, 32, 64, 0};
    int i4 = sens_fmt_index(QF_INT4), i8 = sens_fmt_index(QF_INT8), q40 = sens_fmt_index(QF_Q4_0);
    int q4k = sens_fmt_index(QF_Q4_K), q6k = sens_fmt_index(QF_Q6_K), q80 = sens_fmt_index(QF_Q8_0);
    CHECK(i4 >= 0 && i8 >= 0 && q40 >= 0 && q4k >= 0 && q6k >= 0 && q80 >= 0);
    CHECK(sens_cell_bpw(i4, SG_TENSOR, gs, 256, 768) == 4.0 + 16.0 / (256.0 * 768.0));
    CHECK(sens_cell_bpw(i4, SG_OC, gs, 256, 768) == 4.0 + 16.0 / 768.0); /* a scale per output row of 768 */
    CHECK(sens_cell_bpw(i4, SG_IC, gs, 256, 768) == 4.0 + 16.0 / 256.0);
    CHECK(sens_cell_bpw(i4, SG_OC_G, gs, 256, 768) == 4.5);
    CHECK(sens_cell_bpw(i8, SG_IC_G, gs, 256, 768) == 8.25);
    CHECK(sens_cell_bpw(q40, SG_BLOCK, gs, 256, 768) == 4.5 && sens_cell_bpw(q4k, SG_BLOCK, gs, 256, 768) == 4.5);
    CHECK(sens_cell_bpw(q6k, SG_BLOCK, gs, 256, 768) == 6.5625 && sens_cell_bpw(q80, SG_BLOCK, gs, 256, 768) == 8.5);
    CHECK(isnan(sens_cell_bpw(q40, SG_OC, gs, 256, 768)) && isnan(sens_cell_bpw(i4, SG_BLOCK, gs, 256, 768)));
    const int32_t none[SG_COUNT] = {0};
    CHECK(isnan(sens_cell_bpw(i4, SG_OC_G, none, 256, 768)));
    /* n_out unknown (report on K/V): only what does not depend on it */
    CHECK(sens_cell_bpw(i4, SG_OC, gs, 0, 768) == 4.0 + 16.0 / 768.0 && sens_cell_bpw(i4, SG_OC_G, gs, 0, 768) == 4.5);
    CHECK(isnan(sens_cell_bpw(i4, SG_IC, gs, 0, 768)) && isnan(sens_cell_bpw(i4, SG_IC_G, gs, 0, 768)));
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qs_sensrun_XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    Err err;
    err_init(&err);
    char *text = NULL;
    size_t len = 0;
    Model *m = testlib_stories(&text, &len);
    Pool *pool = NULL;
    CHECK_OK(pool_new(2, &pool, &err), err);
    const int64_t n_sites = m->cfg.n_layers * PROJ_COUNT;
    test_cell_bpw();

    /* the reference: one uninterrupted pass inside calib_run */
    CalibParams p;
    calib_params_default(&p);
    p.samples = 4;
    p.seqlen = 96;
    p.seed = 5;
    char spath[256], rpath[256], refpath[256];
    snprintf(spath, sizeof spath, "%s/s.qsst", tmpdir);
    snprintf(rpath, sizeof rpath, "%s/renamed.qsst", tmpdir);
    snprintf(refpath, sizeof refpath, "%s/ref.qsst", tmpdir);
    char *h0 = calib_h_temp(refpath);
    CalibStats *ref = NULL;
    CHECK_OK(calib_run(m, text, len, &p, h0, pool, NULL, &ref, &err), err);
    CHECK(ref->has_sens && sens_map_complete(&ref->sens) && sens_map_sites_done(&ref->sens) == n_sites);

    /* the same calibration without the map, committed; then the map stopped after 6 sites */
    CalibParams pc = p;
    pc.sensitivity = 0;
    char *h1 = calib_h_temp(spath);
    CalibStats *cs = NULL;
    CHECK_OK(calib_run(m, text, len, &pc, h1, pool, NULL, &cs, &err), err);
    cs->params.sensitivity = 1;
    CHECK_OK(calib_commit(cs, h1, spath, &err), err);
    CalibParams q = p;
    q.text_hash = hash_bytes(HASH_SEED, text, len);
    q.text_bytes = (int64_t)len;
    char why[256];
    CHECK(sensrun_resumable(cs, m, &q, why, sizeof why)); /* no map yet: all of it to run */

    Progress prog;
    progress_init(&prog);
    SensOpts so;
    sens_opts_default(&so);
    so.max_sites = 6;
    Watch w = {.path = spath, .m = m, .prog = &prog, .file_ok = 1, .ticks_ok = 1};
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int pr = 0; pr < PROJ_COUNT; pr++)
            w.cost_total += sens_site_cost(m->layers[l].proj[pr].n_out, m->layers[l].proj[pr].n_in, site_cells());
    so.on_site = watch_site;
    so.user = &w;
    Status st = sensrun_map(m, cs, spath, &so, 0, pool, &prog, &err);
    CHECKF(st == ST_ERR_CANCELLED && strstr(err.detail, "6 of 35 sites"), "%d %s", (int)st, err.detail);
    CHECK(w.sites == 6 && w.file_ok && w.ticks_ok);
    /* cost-weighted: 6 sites of layer 0 are not 6/35 of the work (the down
     * site is the widest), and the ticks say so */
    int64_t t6 = atomic_load(&prog.done);
    CHECKF(t6 == (int64_t)(1000.0 * w.cost_done / w.cost_total) && t6 != 1000 * 6 / 35, "ticks %lld",
           (long long)t6);
    calib_stats_free(cs);

    /* what the file kept: 6 sites, and those cells equal the reference's */
    cs = NULL;
    CHECK_OK(statsfile_load(spath, &cs, &err), err);
    CHECK(cs->has_sens && cs->params.sensitivity && sens_map_sites_done(&cs->sens) == 6 &&
          !sens_map_complete(&cs->sens));
    for (int f = 0; f < SENS_NFMT; f++) {
        CHECK(cs->sens.done[0 * SENS_NFMT + f] == 1 && cs->sens.done[6 * SENS_NFMT + f] == 0);
        /* stories260K's 64-wide q rows hold ggml's 32-blocks but no K-quant block */
        SensGroup g = sens_cell_applies(f, SG_OC) ? SG_OC : SG_BLOCK;
        int64_t i = sens_index(0, PROJ_Q, f, g), k = sens_index(1, PROJ_Q, f, g);
        int fits = !isnan(ref->sens.oerr[i]);
        CHECK(fits == (g == SG_OC || qformat_traits(sens_fmt(f))->name[3] != 'k'));
        CHECK((fits ? cs->sens.oerr[i] == ref->sens.oerr[i] : isnan(cs->sens.oerr[i])) && isnan(cs->sens.oerr[k]));
    }
    CHECK(sensrun_resumable(cs, m, &q, why, sizeof why));
    CalibParams other = q;
    other.seed = 6;
    CHECK(!sensrun_resumable(cs, m, &other, why, sizeof why) && strstr(why, "settings differ"));

    /* a cancel: stops between sites, the finished ones kept */
    progress_init(&prog);
    progress_cancel(&prog);
    CHECK(sensrun_map(m, cs, spath, NULL, 0, pool, &prog, &err) == ST_ERR_CANCELLED);
    CHECK(sens_map_sites_done(&cs->sens) == 6);

    /* the resume: only the 29 missing sites, and the map of one pass */
    progress_init(&prog);
    w = (Watch){.path = spath, .m = m, .prog = NULL, .file_ok = 1, .ticks_ok = 1, .cost_total = 1};
    sens_opts_default(&so);
    so.on_site = watch_site;
    so.user = &w;
    CHECK_OK(sensrun_map(m, cs, spath, &so, 0, pool, &prog, &err), err);
    CHECK(w.sites == 29 && w.file_ok && atomic_load(&prog.done) == 1000);
    CHECK(sens_map_complete(&cs->sens) && maps_equal(&cs->sens, &ref->sens));
    CHECK(!sensrun_resumable(cs, m, &q, why, sizeof why) && strstr(why, "complete"));
    calib_stats_free(cs);
    cs = NULL;
    CHECK_OK(statsfile_load(spath, &cs, &err), err);
    CHECK(sens_map_complete(&cs->sens) && maps_equal(&cs->sens, &ref->sens));
    calib_stats_free(cs);

    /* The file names its candidates: one renamed to a name this build does
     * not know ("int8" -> "int9", checksum fixed) loads as a map lacking
     * int8, partial, and a resume computes int8 alone, as the reference. */
    MappedFile mf;
    CHECK_OK(mapfile_open(&mf, spath, &err), err);
    size_t size = mf.size;
    unsigned char *bytes = malloc(size);
    memcpy(bytes, mf.data, size);
    mapfile_close(&mf);
    unsigned char *hit = NULL;
    for (size_t i = 0; i + 8 <= size; i++)
        if (memcmp(bytes + i, "\x04\0\0\0int8", 8) == 0) hit = bytes + i + 4;
    CHECK(hit != NULL);
    hit[3] = '9';
    uint64_t sum = hash_bytes(HASH_SEED, bytes, size - 8);
    for (int i = 0; i < 8; i++) bytes[size - 8 + i] = (unsigned char)(sum >> (8 * i));
    CHECK_OK(afile_save(rpath, bytes, size, &err), err);
    cs = NULL;
    CHECK_OK(statsfile_load(rpath, &cs, &err), err);
    int i8 = sens_fmt_index(QF_INT8);
    CHECK(i8 >= 0 && sens_map_sites_done(&cs->sens) == 0);
    CHECK(isnan(cs->sens.werr[sens_index(2, PROJ_DOWN, i8, SG_OC)]));
    CHECK(cs->sens.done[(2 * PROJ_COUNT + PROJ_DOWN) * SENS_NFMT + i8] == 0);
    for (int f = 0; f < SENS_NFMT; f++)
        if (f != i8) CHECK(cs->sens.done[(2 * PROJ_COUNT + PROJ_DOWN) * SENS_NFMT + f] == 1);
    /* its H is the pair's: link it under the renamed file's name */
    char *hs = statsfile_h_path(spath, cs->h_id), *hr = statsfile_h_path(rpath, cs->h_id);
    CHECK(link(hs, hr) == 0);
    CHECK_OK(sensrun_map(m, cs, rpath, NULL, 0, pool, NULL, &err), err);
    CHECK(sens_map_complete(&cs->sens) && maps_equal(&cs->sens, &ref->sens));
    calib_stats_free(cs);

    /* version 1 (before the names and done flags): refused, recalibrate */
    bytes[4] = 1;
    CHECK_OK(afile_save(rpath, bytes, size, &err), err);
    cs = NULL;
    CHECK(statsfile_load(rpath, &cs, &err) == ST_ERR_FORMAT && cs == NULL);
    CHECKF(strstr(err.detail, "version 1") && strstr(err.detail, "recalibrate"), "%s", err.detail);
    free(bytes);

    unlink(hr);
    unlink(rpath);
    unlink(hs);
    unlink(spath);
    unlink(h0);
    free(hs);
    free(hr);
    free(h0);
    free(h1);
    calib_stats_free(ref);
    test_new_cells(pool, text, len);
    pool_free(pool);
    free(text);
    model_free(m);
    rmdir(tmpdir);
    return testlib_done("test_sensrun");
}
