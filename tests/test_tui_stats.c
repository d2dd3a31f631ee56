/* Statistics-side view models of the TUI on a real stories260K calibration:
 * tensor kinds and dtypes of the Model view, the activation metrics against
 * the spike ranking, channel ordering, spike-aware sites. */
#include <math.h>
#include <string.h>

#include "analysis/calib.h"
#include "analysis/spikes.h"
#include "core/mapfile.h"
#include "tests/testlib.h"
#include "tui/vmodel.h"

static void test_vmodel(void) {
    Err err;
    err_init(&err);
    Model *m = NULL;
    CHECK_OK(model_load(testlib_shared("models/stories260K/stories260K-f32.gguf"), NULL, &m, &err), err);
    KindRow kr[8];
    int nk = vm_model_kinds(m, kr, 8);
    int64_t params = 0;
    for (int i = 0; i < nk; i++) params += kr[i].params;
    CHECK(params == model_param_count(m));
    CHECK(strcmp(kr[0].kind, "embedding") == 0 && kr[0].params == 512 * 64);
    DtypeRow dr[8];
    int nd = vm_model_dtypes(m, dr, 8);
    CHECK(nd == 1 && strcmp(dr[0].name, "F32") == 0 && dr[0].n_tensors == m->n_tensors);

    char *text = NULL;
    size_t len = 0;
    CHECK_OK(file_read_all(testlib_shared("text/tinystories_sample.txt"), 1 << 20, &text, &len, &err), err);
    CalibParams cp;
    calib_params_default(&cp);
    cp.samples = 4;
    cp.seqlen = 64;
    cp.sensitivity = 0;
    CalibStats *cs = NULL;
    CHECK_OK(calib_run(m, text, len, &cp, NULL, NULL, NULL, &cs, &err), err);
    double grid[5 * TAP_COUNT];
    vm_act_grid(cs, AM_MAX, grid);
    for (int64_t l = 0; l < 5; l++)
        for (int t = 0; t < TAP_COUNT; t++) {
            const TapStats *ts = calib_tap(cs, l, (TapPoint)t);
            float mx = 0;
            for (int64_t c = 0; c < ts->width; c++) mx = fmaxf(mx, ts->ch_absmax[c]);
            CHECK(grid[l * TAP_COUNT + t] == mx); /* the tensor max is the channel maxima's max */
        }
    /* max/median agrees with the spike ranking's ratio for the projection inputs. */
    SpikeScore *sc = NULL;
    int64_t n = 0;
    CHECK_OK(spikes_score(cs, &sc, &n, &err), err);
    CHECK(n == 20);
    for (int64_t i = 0; i < n; i++) {
        double r = vm_act_value(cs, sc[i].layer, sc[i].tap, AM_RATIO);
        CHECK_NEAR(r, sc[i].ratio, 1e-9 * sc[i].ratio);
        CHECK_NEAR(vm_act_value(cs, sc[i].layer, sc[i].tap, AM_KURT), sc[i].kurtosis, 1e-9 * sc[i].kurtosis);
        CHECK_NEAR(vm_act_value(cs, sc[i].layer, sc[i].tap, AM_P999), sc[i].p999, 1e-9 * sc[i].p999);
    }
    free(sc);
    /* The channel order puts the largest max|x| first. */
    const TapStats *ts = calib_tap(cs, 0, TAP_DOWN);
    int64_t idx[172];
    vm_channel_order(ts, 1, idx);
    CHECK(ts->ch_absmax[idx[0]] == ts->absmax);
    for (int64_t c = 1; c < ts->width; c++) CHECK(ts->ch_absmax[idx[c - 1]] >= ts->ch_absmax[idx[c]]);
    vm_channel_order(ts, 0, idx);
    CHECK(idx[0] == 0 && idx[171] == 171);
    CHECK(isnan(vm_sens_value(NULL, 0, 0, 0, SG_OC, 1)));
    char sites[3][16];
    CHECK(vm_spike_sites(cs, 3, sites, &err) == 3);
    CHECK_OK(spikes_score(cs, &sc, &n, &err), err);
    for (int i = 0; i < 3; i++) {
        char want[16];
        snprintf(want, sizeof want, "%lld.%s", (long long)sc[i].layer, tap_name(sc[i].tap));
        CHECK(strcmp(sites[i], want) == 0);
    }
    free(sc);
    calib_stats_free(cs);
    free(text);
    model_free(m);
}


int main(void) {
    test_vmodel();
    return testlib_done("test_tui_stats");
}
