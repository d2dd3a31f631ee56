/* --calib-text: the workbench calibrates on its own text, not on the text
 * evaluation scores (issue 11 item 5), and says which; without it the
 * evaluation text serves both, split: evaluation scores its first chunks and
 * calibration draws from the rest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tui/app.h"
#include "testlib.h"

int main(void) {
    Err err;
    err_init(&err);
    char model[1024], text[1024], ctext[1024];
    snprintf(model, sizeof model, "%s", testlib_shared("models/stories260K/stories260K-f32.gguf"));
    snprintf(text, sizeof text, "%s", testlib_shared("text/tinystories_sample.txt"));
    snprintf(ctext, sizeof ctext, "%s", testlib_shared("text/wikitext-2-test.txt"));
    setenv("XDG_CACHE_HOME", "/tmp", 0);
    App *a = calloc(1, sizeof *a);
    TuiOpts o = {.model_path = model, .text_path = text, .calib_text_path = ctext, .threads = 1};
    CHECK_OK(app_init(a, &o, &err), err);
    size_t len = 0;
    const char *path = NULL, *t = app_calib_text(a, &len, &path);
    CHECK(t == a->calib_text && len == a->calib_len && len > 1000000 && strcmp(path, ctext) == 0);
    CHECK(a->text_len == 3793 && strcmp(a->text_path, text) == 0); /* evaluation keeps --text */
    /* a text of calibration's own: evaluation scores every chunk of --text, calibration all of C */
    CHECK(a->split_chunks == 0 && app_calib_from(a, NULL) == 0);
    CHECKF(strstr(a->eval_settings, "ctx 128, all chunks of tinystories_sample.txt") == a->eval_settings, "%s",
           a->eval_settings);
    app_done(a);
    TuiOpts o2 = {.model_path = model, .text_path = text, .threads = 1};
    CHECK_OK(app_init(a, &o2, &err), err);
    t = app_calib_text(a, &len, &path);
    CHECK(t == a->text && len == 3793 && strcmp(path, text) == 0);
    /* one text for both: evaluation scores 7 of its 14 chunks of 128, calibration draws past them */
    int over = -1;
    CHECK(a->split_chunks == 7 && app_calib_from(a, &over) == 896 && over == 0);
    CHECKF(strcmp(a->eval_settings, "ctx 128, 7 of 14 chunks of tinystories_sample.txt (the rest calibrates)") == 0,
           "%s", a->eval_settings);
    app_done(a);
    /* --chunks 3: evaluation reads 3 chunks, calibration draws past them; --ctx above the
     * model's context: accepted, with a warning in the settings line */
    TuiOpts o3 = {.model_path = model, .text_path = text, .threads = 1, .chunks = 3, .ctx = 256};
    CHECK_OK(app_init(a, &o3, &err), err);
    CHECK(a->split_chunks == 0 && app_calib_from(a, NULL) == 768);
    CHECKF(strcmp(a->eval_settings,
                  "ctx 256 (warning: above the model's context 128), at most 3 chunks of tinystories_sample.txt") == 0,
           "%s", a->eval_settings);
    app_calibset_open(a); /* counts the text's tokens */
    char label[64], val[256];
    app_calibset_field(a, CS_TEXT, label, sizeof label, val, sizeof val);
    CHECKF(strcmp(val, "tinystories_sample.txt, tokens 768-1880 (evaluation reads 0-767)") == 0, "%s", val);
    app_done(a);
    /* --chunks 14: every chunk evaluated, no sequence fits past them */
    TuiOpts o4 = {.model_path = model, .text_path = text, .threads = 1, .chunks = 14};
    CHECK_OK(app_init(a, &o4, &err), err);
    app_calibset_open(a);
    app_calibset_field(a, CS_TEXT, label, sizeof label, val, sizeof val);
    CHECKF(strstr(val, "no sequence fits past the 1792 tokens evaluation reads") != NULL, "%s", val);
    app_done(a);
    free(a);
    return testlib_done("test_tui_calibtext");
}
