/* libFuzzer harnesses for every reader of untrusted files, one binary per
 * reader (built with -DFUZZ_<NAME>; see `make fuzz` and tests/fuzz/run.sh):
 *
 *   gguf         gguf_open + every lookup, then model_load (binding, config, tokenizer)
 *   safetensors  safetensors_open + lookups, then model_load of an HF directory
 *                (a fixed config.json beside the input as model.safetensors)
 *   tokenizer    tokenizer_from_hf on the input as tokenizer.json, then encode
 *   plan         plan_json_read
 *   session      session_parse
 *   stats        statsfile_load
 *   qsq          qmodel_file_load against the model in $QS_FUZZ_MODEL
 *
 * The readers take paths (they map files), so each input is written to a
 * per-process file first. Any crash, sanitizer report or leak is a finding;
 * a reader returning an error is the expected outcome for most inputs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analysis/calib.h"
#include "analysis/qmodel.h"
#include "analysis/statsfile.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "quant/plan.h"
#include "sessions/plan_json.h"
#include "sessions/qmodel_file.h"
#include "sessions/session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char g_dir[256];
static char g_file[320];
static Model *g_model; /* qsq: the model the files are checked against */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/qs-fuzz-%ld", base, (long)getpid());
    mkdir(g_dir, 0700);
#if defined(FUZZ_SAFETENSORS)
    snprintf(g_file, sizeof g_file, "%s/model.safetensors", g_dir);
    char cfg[320];
    snprintf(cfg, sizeof cfg, "%s/config.json", g_dir);
    FILE *f = fopen(cfg, "w");
    if (f) {
        fputs("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16,"
              " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
              " \"vocab_size\": 16, \"rms_norm_eps\": 1e-5, \"max_position_embeddings\": 32}",
              f);
        fclose(f);
    }
#elif defined(FUZZ_TOKENIZER)
    snprintf(g_file, sizeof g_file, "%s/tokenizer.json", g_dir);
#else
    snprintf(g_file, sizeof g_file, "%s/input", g_dir);
#endif
#if defined(FUZZ_QSQ)
    const char *mp = getenv("QS_FUZZ_MODEL");
    Err err;
    err_init(&err);
    if (!mp || model_load(mp, NULL, &g_model, &err) != ST_OK) {
        fprintf(stderr, "fuzz_qsq: set QS_FUZZ_MODEL to a loadable model (%s)\n", mp ? err.detail : "unset");
        exit(1);
    }
#endif
    return 0;
}

static int write_input(const uint8_t *data, size_t size) {
    FILE *f = fopen(g_file, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Err err;
    err_init(&err);
#if defined(FUZZ_PLAN)
    Plan p;
    plan_json_read((const char *)data, size, "fuzz", NULL, &p, &err);
    plan_done(&p);
    return 0;
#elif defined(FUZZ_SESSION)
    Session *s = NULL;
    if (session_parse((const char *)data, size, "fuzz", &s, &err) == ST_OK) {
        char *out = NULL;
        size_t len = 0;
        if (session_write(s, &out, &len, &err) == ST_OK) free(out);
        for (int64_t i = 0; i < session_n_plans(s); i++) (void)session_find_plan(s, session_plan_name(s, i));
        session_free(s);
    }
    return 0;
#else
    if (!write_input(data, size)) return 0;
#if defined(FUZZ_GGUF)
    Gguf *g = NULL;
    if (gguf_open(g_file, &g, &err) == ST_OK) {
        for (int64_t i = 0; i < g->n_tensors; i++) {
            char name[256];
            size_t n = g->tensors[i].name.len < 255 ? g->tensors[i].name.len : 255;
            memcpy(name, g->tensors[i].name.s, n);
            name[n] = 0;
            (void)gguf_find_tensor(g, name);
        }
        (void)gguf_find(g, "general.architecture");
        gguf_free(g);
        Model *m = NULL;
        if (model_load(g_file, NULL, &m, &err) == ST_OK) model_free(m);
    }
#elif defined(FUZZ_SAFETENSORS)
    Safetensors *st = NULL;
    if (safetensors_open(g_file, &st, &err) == ST_OK) {
        for (int64_t i = 0; i < st->n_tensors; i++) (void)safetensors_find(st, st->tensors[i].name);
        safetensors_free(st);
        Model *m = NULL;
        if (model_load(g_dir, NULL, &m, &err) == ST_OK) model_free(m);
    }
#elif defined(FUZZ_TOKENIZER)
    Tokenizer *t = NULL;
    if (tokenizer_from_hf(g_file, &t, &err) == ST_OK) {
        static const char text[] = "Hello, world! 123 \xc3\xa9t\xc3\xa9 \xe2\x96\x81x\n\t<s>";
        int32_t *ids = NULL;
        int64_t n = 0;
        if (tokenizer_encode(t, text, sizeof text - 1, 1, &ids, &n, &err) == ST_OK) {
            char *back = NULL;
            size_t blen = 0;
            if (tokenizer_detokenize(t, ids, n, &back, &blen, &err) == ST_OK) free(back);
            free(ids);
        }
        tokenizer_free(t);
    }
#elif defined(FUZZ_STATS)
    CalibStats *cs = NULL;
    if (statsfile_load(g_file, &cs, &err) == ST_OK) calib_stats_free(cs);
#elif defined(FUZZ_QSQ)
    Plan p;
    QStored *q = NULL;
    if (qmodel_file_load(g_file, g_model, &p, &q, &err) == ST_OK) qstored_free(q);
    plan_done(&p);
#else
#error "define one FUZZ_<READER>"
#endif
    return 0;
#endif
}
