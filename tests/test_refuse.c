/* Inputs other tools refuse are refused here too, with errors that say what
 * is wrong (issue 15 item 13): safetensors tensors sharing data bytes, a key
 * twice in a safetensors header, JSON strings holding \u0000 (cJSON cut
 * "0.q\u0000garbage" to the rule "0.q"), and a directory, /dev/zero or a FIFO
 * where a file is read; GGUF keys of the wrong type or range, 'architectures'
 * as a string and a model.safetensors directory named as such.
 * GGUF tensors sharing data are in test_gguf. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/jsontext.h"
#include "core/mapfile.h"
#include "model/gguf_write.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "quant/ggml_type.h"
#include "quant/plan.h"
#include "sessions/plan_json.h"
#include "sessions/session.h"
#include "tests/testlib.h"

static char g_dir[128];

static const char *tpath(const char *name) {
    return testlib_path(g_dir, name);
}

/* A safetensors file with header hdr (padded to 8) and data_len zero bytes. */
static const char *write_st(const char *name, const char *hdr, size_t data_len) {
    const char *p = tpath(name);
    size_t k = strlen(hdr), pad = (8 - k % 8) % 8;
    FILE *f = fopen(p, "wb");
    CHECK(f);
    uint64_t n = k + pad;
    for (int i = 0; i < 8; i++) fputc((int)(n >> (8 * i)) & 0xff, f);
    fputs(hdr, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    for (size_t i = 0; i < data_len; i++) fputc(0, f);
    CHECK(fclose(f) == 0);
    return p;
}

static void test_safetensors(void) {
    Err err;
    err_init(&err);
    Safetensors *st = NULL;
    const char *ok = write_st("ok.safetensors",
                              "{\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]},"
                              " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                              16);
    CHECK_OK(safetensors_open(ok, &st, &err), err);
    CHECK(safetensors_find(st, "a") == &st->tensors[1] && safetensors_find(st, "b") == &st->tensors[0]);
    CHECK(safetensors_find(st, "c") == NULL && safetensors_find(st, "") == NULL);
    safetensors_free(st);

    const char *ov = write_st("overlap.safetensors",
                              "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                              " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                              12);
    CHECK(safetensors_open(ov, &st, &err) == ST_ERR_FORMAT && !st);
    CHECKF(strstr(err.detail, "tensors 'a' (data_offsets [0, 8)) and 'b' (from 4) overlap"), "%s", err.detail);

    const char *dup = write_st("dup.safetensors",
                               "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                               " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
                               16);
    CHECK(safetensors_open(dup, &st, &err) == ST_ERR_FORMAT);
    CHECKF(strstr(err.detail, "tensor 'a' appears twice in the header"), "%s", err.detail);

    const char *nul = write_st("nul.safetensors",
                               "{\"a\\u0000b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8);
    CHECK(safetensors_open(nul, &st, &err) == ST_ERR_FORMAT);
    CHECKF(strstr(err.detail, "offset 3: a JSON string holds \\u0000"), "%s", err.detail);
}

static void test_json_nul(void) {
    Err err;
    err_init(&err);
    /* escapes that are not a NUL, and \u0000 outside strings, pass the scan */
    const char *hidden = "{\"a\\\\u0000\": \"\\u0001\\\"\\u0000x\\\\\"}";
    CHECK(jsontext_check_nul(hidden, strlen(hidden), "x", &err) == ST_ERR_FORMAT); /* \"\u0000: inside the string */
    const char *fine2 = "{\"a\\\\u0000\": \"\\u0001\\\\\"}";
    CHECK_OK(jsontext_check_nul(fine2, strlen(fine2), "x", &err), err);

    Plan p;
    plan_init(&p);
    PlanEntry e;
    plan_entry_default(&e);
    e.w.fmt = QF_F16;
    CHECK_OK(plan_add_rule(&p, "0.q", PF_FMT, &e, &err), err);
    char *text;
    CHECK_OK(plan_json_write(&p, &text, &err), err);
    plan_done(&p);
    char *at = strstr(text, "\"0.q\"");
    CHECK(at);
    size_t n = strlen(text);
    char *bad = malloc(n + 32);
    size_t pre = (size_t)(at - text) + 4;
    memcpy(bad, text, pre);
    strcpy(bad + pre, "\\u0000garbage");
    strcat(bad, at + 4);
    Plan q;
    CHECK_OK(plan_json_read(text, n, "plan.json", NULL, &q, &err), err); /* the rule as written loads */
    plan_done(&q);
    CHECK(plan_json_read(bad, strlen(bad), "plan.json", NULL, &q, &err) == ST_ERR_FORMAT);
    plan_done(&q);
    CHECKF(strstr(err.detail, "plan.json: offset") && strstr(err.detail, "\\u0000"), "%s", err.detail);
    free(bad);
    free(text);

    Session *s;
    const char *sj = "{\"schema_version\": 1, \"model\": {\"path\": \"m\\u0000.gguf\"}}";
    CHECK(session_parse(sj, strlen(sj), "s.json", &s, &err) == ST_ERR_FORMAT);
    CHECKF(strstr(err.detail, "s.json: offset 42: a JSON string holds \\u0000"), "%s", err.detail);
}

static void test_not_regular(void) {
    Err err;
    err_init(&err);
    char *buf;
    size_t len;
    CHECK(file_read_all("/dev/zero", (size_t)1 << 31, &buf, &len, &err) == ST_ERR_IO);
    CHECKF(strstr(err.detail, "/dev/zero: a device, not a regular file"), "%s", err.detail);
    CHECK(file_read_all(g_dir, 1 << 20, &buf, &len, &err) == ST_ERR_IO);
    CHECKF(strstr(err.detail, ": a directory, not a regular file"), "%s", err.detail);
    const char *fifo = tpath("fifo");
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK(file_read_all(fifo, 1 << 20, &buf, &len, &err) == ST_ERR_IO); /* refused, not waited on */
    CHECKF(strstr(err.detail, "fifo: a FIFO, not a regular file"), "%s", err.detail);
    unlink(fifo);
}

/* GGUF keys of the wrong type or range are named as such (they said "missing
 * key 'general.architecture'" and "is not an integer"). */
static void test_gguf_keys(void) {
    Err err;
    err_init(&err);
    static const float x[32];
    const int64_t ne[1] = {32};
    for (int k = 0; k < 2; k++) {
        GgufWriter *w = gguf_writer_new();
        CHECK(w);
        if (k == 0) {
            CHECK(gguf_writer_add_u32(w, "general.architecture", 7) == ST_OK);
        } else {
            CHECK(gguf_writer_add_str(w, "general.architecture", "llama") == ST_OK);
            GgufValue v = {.type = GGUF_UINT64};
            v.v.u = UINT64_MAX;
            CHECK(gguf_writer_add_value(w, "llama.embedding_length", &v) == ST_OK);
        }
        CHECK(gguf_writer_add_tensor(w, "token_embd.weight", GGML_F32, 1, ne, x) == ST_OK);
        const char *p = tpath("keys.gguf");
        CHECK_OK(gguf_writer_write(w, p, &err), err);
        gguf_writer_free(w);
        Model *m = NULL;
        CHECK(model_load(p, NULL, &m, &err) != ST_OK && !m);
        if (k == 0)
            CHECKF(strstr(err.detail, "key 'general.architecture' is a uint32, expected a string"), "%s", err.detail);
        else
            CHECKF(strstr(err.detail, "key 'llama.embedding_length' = 18446744073709551615 is out of range"), "%s",
                   err.detail);
    }
}

/* An HF directory: 'architectures' as a string, model.safetensors a directory. */
static void test_hf_dir(void) {
    Err err;
    err_init(&err);
    char dir[300], f[400];
    snprintf(dir, sizeof dir, "%s", tpath("hf"));
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(f, sizeof f, "%s/config.json", dir);
    FILE *c = fopen(f, "w");
    CHECK(c);
    fputs("{\"architectures\": \"LlamaForCausalLM\", \"hidden_size\": 8}", c);
    CHECK(fclose(c) == 0);
    Model *m = NULL;
    CHECK(model_load(dir, NULL, &m, &err) == ST_ERR_FORMAT && !m);
    CHECKF(strstr(err.detail, "'architectures' must be a list of strings"), "%s", err.detail);
    c = fopen(f, "w");
    fputs("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16,"
          " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
          " \"vocab_size\": 16, \"rms_norm_eps\": 1e-5, \"max_position_embeddings\": 32}",
          c);
    CHECK(fclose(c) == 0);
    snprintf(f, sizeof f, "%s/model.safetensors", dir);
    CHECK(mkdir(f, 0700) == 0);
    CHECK(model_load(dir, NULL, &m, &err) != ST_OK && !m);
    CHECKF(strstr(err.detail, "model.safetensors: not a regular file"), "%s", err.detail);
}

int main(void) {
    (void)testlib_shared;
    snprintf(g_dir, sizeof g_dir, "/tmp/qs-test-refuse-%ld", (long)getpid());
    CHECK(mkdir(g_dir, 0700) == 0);
    test_safetensors();
    test_json_nul();
    test_not_regular();
    test_gguf_keys();
    test_hf_dir();
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    CHECK(system(cmd) == 0);
    return testlib_done("test_refuse");
}
