/* Plan execution one layer at a time (issue 11 item 4): after a site is
 * quantized its file-mapped weight pages are dropped, and each layer's H
 * pages are dropped once copied into the per-tap cache, so the process holds
 * the layer it works on, not the whole model and the whole H store. Checked
 * on stories260K (GGUF, F32, so the weights are borrowed from the mapping)
 * through the Rss of the mappings in /proc/self/smaps; the pages come back
 * from the file when read again, so a second build is identical byte for
 * byte, and weight_release leaves heap weights untouched. Also: every site's
 * quantization time is recorded and adds up to no more than the build; the
 * units a distributed build deals out to ranks, and part builds whose
 * stored sites together are the full build's. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analysis/hstore.h"
#include "analysis/qmodel.h"
#include "analysis/statsfile.h"
#include "core/mapfile.h"
#include "model/model.h"
#include "model/weight.h"
#include "quant/plan.h"
#include "quant/preset.h"
#include "sessions/qmodel_dist.h"
#include "testlib.h"

/* Rss in kB of the read-only mapping containing p (from /proc/self/smaps),
 * its bounds in *lo / *hi; -1 if not found. */
static long mapping_rss_kb(const void *p, uintptr_t *lo_out, uintptr_t *hi_out) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    int in = 0;
    long rss = -1;
    uintptr_t a = (uintptr_t)p;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perm[8];
        if (sscanf(line, "%lx-%lx %7s ", &lo, &hi, perm) == 3) {
            in = a >= lo && a < hi;
            if (in && lo_out) *lo_out = lo;
            if (in && hi_out) *hi_out = hi;
            continue;
        }
        if (in && sscanf(line, "Rss: %ld kB", &rss) == 1) break;
    }
    fclose(f);
    return rss;
}

/* Whole pages inside w's bytes: what weight_release drops. */
static long whole_pages_kb(const Weight *w) {
    uintptr_t b = (uintptr_t)w->data, e = b + weight_bytes(w);
    uintptr_t b_up = (b + 4095) & ~(uintptr_t)4095, e_down = e & ~(uintptr_t)4095;
    return e_down > b_up ? (long)((e_down - b_up) >> 10) : 0;
}

static void same_stored(const QStored *a, const QStored *b) {
    for (int64_t i = 0; i < a->n_layers * PROJ_COUNT + 2; i++) {
        const QStoredSite *x = &a->sites[i], *y = &b->sites[i];
        CHECK(x->kind == y->kind);
        if (x->kind != QSITE_QTENSOR) continue;
        CHECK(x->q.n_out == y->q.n_out && x->q.n_in == y->q.n_in && x->q.n_groups == y->q.n_groups);
        const QFormatTraits *t = qformat_traits(x->q.p.fmt);
        size_t cb = (size_t)(x->q.n_out * x->q.n_in) * t->code_bytes;
        CHECKF(memcmp(qtensor_codes(&x->q), qtensor_codes(&y->q), cb) == 0, "site %lld codes differ", (long long)i);
        if (x->q.n_groups) CHECK(memcmp(x->q.scale, y->q.scale, (size_t)x->q.n_groups * 4) == 0);
    }
}

int main(void) {
    Err err;
    err_init(&err);
    char *text = NULL;
    size_t len = 0;
    Model *m = testlib_stories(&text, &len);
    char hpath[] = "/tmp/qs_test_layerwise_XXXXXX";
    int fd = mkstemp(hpath);
    CHECK(fd >= 0);
    close(fd);
    QStatsFile sf;
    CHECK_OK(qstats_calibrate(m, text, len, 4, 64, hpath, NULL, &sf, &err), err);

    /* heap weights: release is a no-op */
    float heap[2048];
    for (int i = 0; i < 2048; i++) heap[i] = (float)i;
    Weight hw = weight_from_f32(heap, 4, 512);
    CHECK(!hw.mapped);
    weight_release(&hw);
    for (int i = 0; i < 2048; i++) CHECK(heap[i] == (float)i);

    /* Every page of the model's mapping resident first. */
    const Weight *w0 = &m->layers[0].proj[PROJ_Q];
    CHECK(w0->mapped);
    uintptr_t lo = 0, hi = 0;
    CHECK(mapping_rss_kb(w0->data, &lo, &hi) >= 0);
    volatile unsigned char sink = 0;
    for (uintptr_t p = lo; p < hi; p += 4096) sink ^= *(const volatile unsigned char *)p;
    (void)sink;
    long rss_model0 = mapping_rss_kb(w0->data, NULL, NULL);
    CHECKF(rss_model0 == (long)((hi - lo) >> 10), "model mapping Rss %ld of %lu kB", rss_model0,
           (unsigned long)((hi - lo) >> 10));
    long drop_kb = 0;
    for (int64_t l = 0; l < m->cfg.n_layers; l++)
        for (int p = 0; p < PROJ_COUNT; p++) drop_kb += whole_pages_kb(&m->layers[l].proj[p]);
    CHECK(drop_kb > 0);

    const HStore *hs = sf.h;
    CHECK(hs != NULL);
    uintptr_t hlo = 0, hhi = 0;
    const double *H0 = NULL;
    /* where the H mapping is: read through the store, then measure */
    CHECK_OK(hstore_get_f64(hs, 0, (int)TAP_QKV, &H0, &err), err);
    CHECK(H0 != NULL);

    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    PresetOpts o;
    preset_opts_default(&o);
    Plan p;
    CHECK_OK(plan_preset(&p, "int4-gptq", &o, &pm, &err), err);
    QModelStats qs = {sf.cs, sf.h};
    QModel *a = NULL, *b = NULL;
    CHECK_OK(qmodel_build_keep(m, &p, &qs, NULL, NULL, &a, &err), err);

    long rss_model1 = mapping_rss_kb(w0->data, NULL, NULL);
    printf("model mapping: %ld kB resident before the build, %ld kB after (projections' whole pages: %ld kB)\n",
           rss_model0, rss_model1, drop_kb);
    /* int4-gptq quantizes every projection: all their whole pages are gone
     * (the embedding and the head, fp16 here, may drop more) */
    CHECKF(rss_model1 <= rss_model0 - drop_kb, "Rss %ld kB after the build, expected <= %ld", rss_model1,
           rss_model0 - drop_kb);

    /* H: each matrix's whole pages dropped after its copy. What stays is
     * the header, a partial last page per matrix and what the kernel's
     * fault-around (up to 64 kB around each fault) maps back from the page
     * cache next to the matrix being read: a third of the file at most here,
     * where keeping the pages would leave all of it resident. */
    long rss_h = mapping_rss_kb(hs->map, &hlo, &hhi);
    long file_kb = (long)((hhi - hlo) >> 10);
    printf("H mapping: %ld kB resident after the build (file %ld kB)\n", rss_h, file_kb);
    CHECK(rss_h >= 0);
    CHECKF(rss_h * 3 <= file_kb, "H Rss %ld kB of %ld kB", rss_h, file_kb);

    /* per-site times */
    double sum = 0;
    for (int64_t i = 0; i < a->n_layers * PROJ_COUNT; i++) {
        CHECK(a->site_seconds[i] > 0);
        sum += a->site_seconds[i];
    }
    CHECKF(sum <= a->seconds, "site times %.6f s > build %.6f s", sum, a->seconds);

    /* The dropped pages read back as the file's bytes: the same quantization. */
    CHECK_OK(qmodel_build_keep(m, &p, &qs, NULL, NULL, &b, &err), err);
    same_stored(a->stored, b->stored);

    /* Builds spread over processes (sessions/qmodel_dist.h): the sites go
     * out in whole units ({q,k,v}, {o}, {gate,up}, {down}, the ends), taken
     * largest first by whichever rank is free, and the parts' stored sites
     * together are the full build's whatever rank built which unit. */
    int64_t ns = m->cfg.n_layers * PROJ_COUNT, nu = m->cfg.n_layers * 4 + 1;
    int64_t unit_of[5 * PROJ_COUNT + 2], order[5 * 4 + 1];
    double cost[5 * 4 + 1];
    CHECK(ns + 2 <= (int64_t)(sizeof unit_of / sizeof unit_of[0]) && nu <= (int64_t)(sizeof order / sizeof order[0]));
    CHECK_OK(qmodel_dist_units(m, &p, unit_of, order, cost, &err), err);
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        const int64_t *uo = unit_of + l * PROJ_COUNT;
        CHECK(uo[PROJ_Q] == l * 4 && uo[PROJ_K] == uo[PROJ_Q] && uo[PROJ_V] == uo[PROJ_Q] && uo[PROJ_O] == l * 4 + 1);
        CHECK(uo[PROJ_GATE] == l * 4 + 2 && uo[PROJ_UP] == uo[PROJ_GATE] && uo[PROJ_DOWN] == l * 4 + 3);
    }
    CHECK(unit_of[ns] == nu - 1 && unit_of[ns + 1] == nu - 1);
    uint8_t seen[5 * 4 + 1] = {0};
    for (int64_t k = 0; k < nu; k++) {
        CHECK(order[k] >= 0 && order[k] < nu && !seen[order[k]]);
        seen[order[k]] = 1;
        if (k) CHECKF(cost[order[k - 1]] >= cost[order[k]], "unit %lld before a larger one", (long long)order[k - 1]);
    }
    /* stories260K: layer 0's down_proj (64 x 172^2 + 172^3 / 3) is the largest unit, first among equals */
    CHECK(order[0] == 3 && cost[order[0]] == 64.0 * 172 * 172 + 172.0 * 172 * 172 / 3);
    /* two "ranks" taking units alternately from the back of the order: any
     * taking gives the same sites */
    uint8_t only[5 * PROJ_COUNT + 2];
    QModel *part[2];
    for (int r = 0; r < 2; r++) {
        for (int64_t i = 0; i < ns + 2; i++) {
            int64_t k = 0;
            while (order[k] != unit_of[i]) k++;
            only[i] = (uint8_t)((nu - 1 - k) % 2 == r);
        }
        CHECK_OK(qmodel_build_part(m, &p, &qs, only, NULL, NULL, &part[r], &err), err);
    }
    for (int64_t i = 0; i < ns + 2; i++) {
        int64_t k = 0;
        while (order[k] != unit_of[i]) k++;
        int r = (int)((nu - 1 - k) % 2);
        const QStoredSite *x = &a->stored->sites[i], *y = &part[r]->stored->sites[i];
        const QStoredSite *z = &part[1 - r]->stored->sites[i];
        CHECK(z->kind == QSITE_NONE); /* the other part left it alone */
        CHECK(x->kind == y->kind && x->rel_err == y->rel_err);
        if (x->kind == QSITE_QTENSOR) {
            size_t cb = (size_t)(x->q.n_out * x->q.n_in) * qformat_traits(x->q.p.fmt)->code_bytes;
            CHECKF(memcmp(qtensor_codes(&x->q), qtensor_codes(&y->q), cb) == 0, "site %lld", (long long)i);
        }
    }
    qmodel_free(part[0]);
    qmodel_free(part[1]);

    qmodel_free(a);
    qmodel_free(b);
    plan_done(&p);
    qstats_close(&sf);
    unlink(hpath);
    free(text);
    model_free(m);
    return testlib_done("test_layerwise");
}
