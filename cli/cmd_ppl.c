/* qscope ppl: perplexity of a model on a text file, llama.cpp's protocol. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "analysis/eval.h"
#include "analysis/ppl.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/clock.h"
#include "core/mapfile.h"
#include "core/pool.h"
#include "core/progress.h"
#include "kernels/cpu.h"
#include "kernels/sgemm.h"
#include "model/model.h"
#include "model/tokenizer.h"

#define PPL_MAX_TEXT ((size_t)1 << 31)

static const char PPL_USAGE[] =
    "usage: qscope ppl MODEL --text FILE [--tokenizer TOK] [--ctx N] [--chunks N]\n"
    "                  [--threads N] [--full] [--numerics exact|llamacpp] [--json]\n\n"
    "Perplexity with llama.cpp's protocol: the text is tokenized with BOS and cut into\n"
    "chunks of --ctx tokens (the tail is dropped), each chunk starts with BOS,\n"
    "and the second half of every chunk is scored (--full: every position).\n"
    "Running values [k]ppl and a progress bar go to stderr, the final \"PPL = x\" to stdout.\n"
    "Ctrl-C stops after the current batch and reports the chunks done (exit status 130).\n\n";

/* Floating-point operations of one chunk as this forward pass runs it:
 * 2·n_in·n_out per row for every projection, the output head on the rows
 * from the first scored position on, and causal attention (QKᵀ and PV over
 * the t+1 visible keys of row t: 4·head_dim·(t+1) per head). */
static double ppl_chunk_flops(const Model *m, int64_t n_ctx, int full) {
    const ModelConfig *c = &m->cfg;
    double lin = 0;
    for (int64_t l = 0; l < c->n_layers; l++)
        for (int p = 0; p < PROJ_COUNT; p++)
            lin += (double)m->layers[l].proj[p].n_out * (double)m->layers[l].proj[p].n_in;
    double head_rows = (double)(full ? n_ctx : n_ctx - n_ctx / 2);
    double attn = 4.0 * (double)c->head_dim * (double)c->n_heads * (double)c->n_layers *
                  ((double)n_ctx * (double)(n_ctx + 1) / 2.0);
    return 2.0 * lin * (double)n_ctx + 2.0 * (double)c->vocab_size * (double)c->dim * head_rows + attn;
}

typedef struct {
    ProgressBar pb;
    int tty;
    char last[64];
} PplView;

static void ppl_on_chunk(void *user, int64_t chunk, int64_t n_chunks, double running) {
    PplView *v = user;
    snprintf(v->last, sizeof v->last, "[%lld]%.4f", (long long)(chunk + 1), running);
    if (v->tty) {
        progress_bar_draw(&v->pb, chunk + 1, n_chunks, v->last);
    } else {
        fprintf(stderr, "%s%s", chunk ? " " : "", v->last);
        fflush(stderr);
    }
}

/* The text of text_path, tokenized with BOS by m's tokenizer: *text and *ids
 * are the caller's (free), *t_tok the seconds tokenizing took. 0, or 1 after
 * printing what was wrong. */
static int ppl_tokenize(const Model *m, const char *model_path, const char *text_path, char **text, int32_t **ids,
                        int64_t *n_ids, double *t_tok) {
    Err err;
    err_init(&err);
    if (!m->tok) {
        fprintf(stderr, "qscope ppl: %s has no tokenizer (pass --tokenizer)\n", model_path);
        return 1;
    }
    size_t len = 0;
    if (file_read_all(text_path, PPL_MAX_TEXT, text, &len, &err) != ST_OK) {
        args_print_err("ppl", &err);
        return 1;
    }
    *t_tok = args_now();
    if (tokenizer_encode(m->tok, *text, len, 1, ids, n_ids, &err) != ST_OK) {
        args_print_err("ppl", &err);
        return 1;
    }
    *t_tok = args_now() - *t_tok;
    return 0;
}

/* What a run was asked and measured beside its PplResult, for the report. */
typedef struct {
    const char *model_path, *text_path;
    int64_t ctx, n_ids, n_chunks, threads;
    int full, numerics;
    double t_load, t_tok, cpu_s;
} PplRun;

/* The --json report on stdout: 0, or nonzero when it could not be built or
 * written (the error printed). */
static int ppl_print_json(const PplRun *r, const PplResult *res, double flops, double gflops, double tps) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double best = res->chunk_seconds[0];
    for (int64_t c = 1; c < res->chunks; c++)
        if (res->chunk_seconds[c] < best) best = res->chunk_seconds[c];
    cJSON *jo = cJSON_CreateObject(), *run = NULL, *cs = NULL;
    int ok = jo && json_set_str(jo, "model", r->model_path) && json_set_str(jo, "text", r->text_path) &&
             json_setf(jo, "ppl", "%.6f", res->ppl) && json_set_num(jo, "chunks", (double)res->chunks) &&
             json_set_num(jo, "chunks_total", (double)r->n_chunks) &&
             json_set_num(jo, "tokens_scored", (double)res->tokens_scored) &&
             json_set_num(jo, "tokens_run", (double)res->tokens_run) && json_set_num(jo, "text_tokens", (double)r->n_ids) &&
             json_set_num(jo, "ctx", (double)r->ctx) && json_set_bool(jo, "full", r->full) &&
             json_set_num(jo, "threads", (double)r->threads) && json_setf(jo, "seconds", "%.4f", res->seconds) &&
             json_setf(jo, "seconds_per_chunk", "%.4f", res->seconds / (double)res->chunks) &&
             json_setf(jo, "tokens_per_second", "%.2f", tps) && json_setf(jo, "load_seconds", "%.4f", r->t_load) &&
             json_setf(jo, "tokenize_seconds", "%.4f", r->t_tok) &&
             json_setf(jo, "gflop_per_chunk", "%.3f", flops * 1e-9) && json_setf(jo, "gflops", "%.2f", gflops) &&
             json_setf(jo, "cpu_seconds", "%.4f", r->cpu_s) &&
             json_set_num(jo, "peak_rss_bytes", (double)ru.ru_maxrss * 1024) &&
             json_set_bool(jo, "cancelled", res->cancelled) &&
             json_set_str(jo, "numerics", numerics_name((Numerics)r->numerics)) &&
             json_set_str(jo, "cpu", cpu_describe()) &&
             json_set_str(jo, "blas_core", sgemm_backend()) && json_setf(jo, "best_chunk_seconds", "%.4f", best) &&
             (run = json_add_array(jo, "running")) && (cs = json_add_array(jo, "chunk_seconds"));
    for (int64_t c = 0; ok && c < res->chunks; c++)
        ok = json_push(run, json_numf("%.6f", res->running[c])) && json_push(cs, json_numf("%.4f", res->chunk_seconds[c]));
    return args_print_json("ppl", json_finish(jo, ok));
}

int cmd_ppl(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *tok_path = NULL;
    int64_t ctx = 0, chunks = 0, threads = 0; /* ctx 0: eval_ctx_default, once the model is loaded */
    int full = 0, json = 0, numerics = NUMERICS_EXACT;
    static const OptChoice numerics_choices[] = {{"exact", NUMERICS_EXACT}, {"llamacpp", NUMERICS_LLAMACPP}, {NULL, 0}};
    const Opt opts[] = {
        OPT_STR("--text", &text_path, "FILE", "text to score (UTF-8)"),
        OPT_STR("--tokenizer", &tok_path, "TOK", "llama2.c tokenizer .bin (needed for llama2.c checkpoints)"),
        OPT_INT("--ctx", &ctx, 4, 1 << 20, "N",
                "chunk length in tokens (default 512, or the model's context if\n"
                "shorter, as eval and the workbench; longer is accepted with a warning)"),
        OPT_INT("--chunks", &chunks, 1, INT64_MAX / 2, "N", "evaluate at most N chunks (default: all)"),
        OPT_INT("--threads", &threads, 1, 256, "N", "threads for the forward pass (default: all CPUs)"),
        OPT_FLAG("--full", &full, "score every position of each chunk"),
        OPT_ENUM("--numerics", &numerics, numerics_choices, "M",
                 "exact (default) or llamacpp: round the activations of F16 / BF16\n"
                 "weights' matmuls to fp16 / bf16 as llama.cpp's CPU backend does"),
        OPT_FLAG("--json", &json, "print one JSON object on stdout instead of the text report"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "ppl", .usage = PPL_USAGE, .tables = {opts}, .pos = {&model_path}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (!model_path || !text_path) {
        fprintf(stderr, "qscope ppl: need MODEL and --text FILE\n");
        opts_usage(&spec, stderr);
        return 2;
    }

    int rc = 1;
    Model *m = NULL;
    Pool *pool = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    PplResult res;
    memset(&res, 0, sizeof res);
    Err err;
    err_init(&err);

    double t_load = args_now(), t_tok = 0;
    m = args_load_model(model_path, tok_path);
    if (m && ctx == 0) ctx = eval_ctx_default(&m->cfg);
    if (!m) goto done;
    t_load = args_now() - t_load;
    if (ppl_tokenize(m, model_path, text_path, &text, &ids, &n_ids, &t_tok)) goto done;
    if (n_ids < ctx) {
        fprintf(stderr, "qscope ppl: %s has %lld tokens, but one chunk of --ctx %lld needs %lld\n",
                text_path, (long long)n_ids, (long long)ctx, (long long)ctx);
        goto done;
    }
    if (pool_new((int)threads, &pool, &err) != ST_OK) {
        args_print_err("ppl", &err);
        goto done;
    }
    threads = pool_size(pool);
    if (m->cfg.max_seq_len > 0 && ctx > m->cfg.max_seq_len)
        fprintf(stderr, "qscope ppl: warning: --ctx %lld is longer than the %lld positions %s was trained on\n",
                (long long)ctx, (long long)m->cfg.max_seq_len, model_path);

    PplOpts o = {.n_ctx = ctx, .max_chunks = chunks, .full = full, .batch = 0, .numerics = (Numerics)numerics};
    int64_t n_chunks = ppl_chunk_count(n_ids, &o);
    Progress prog;
    progress_init(&prog);
    args_cancel_on_sigint(&prog);
    PplView view;
    memset(&view, 0, sizeof view);
    progress_bar_init(&view.pb, "ppl");
    view.tty = view.pb.tty;
    if (!json)
        fprintf(stderr, "ppl: %lld tokens, %lld chunks of %lld, %lld threads, %s, BLAS %s%s\n",
                (long long)n_ids, (long long)n_chunks, (long long)ctx, (long long)threads,
                cpu_describe(), sgemm_backend(), numerics == NUMERICS_LLAMACPP ? ", llama.cpp numerics" : "");
    if (view.tty) progress_bar_draw(&view.pb, 0, n_chunks, NULL);
    double cpu0 = clock_cpu_seconds();
    Status s = ppl_run(m, pool, ids, n_ids, &o, ppl_on_chunk, &view, &prog, &res, &err);
    double cpu_s = clock_cpu_seconds() - cpu0;
    if (view.tty) {
        progress_bar_finish(&view.pb);
        for (int64_t c = 0; c < res.chunks; c++)
            fprintf(stderr, "%s[%lld]%.4f", c ? " " : "", (long long)(c + 1), res.running[c]);
    }
    if (res.chunks > 0 || !view.tty) fputc('\n', stderr);
    if (s != ST_OK && s != ST_ERR_CANCELLED) {
        args_print_err("ppl", &err);
        goto done;
    }
    if (s == ST_ERR_CANCELLED) fprintf(stderr, "qscope ppl: interrupted after %lld of %lld chunks\n",
                                       (long long)res.chunks, (long long)n_chunks);
    if (res.chunks == 0) {
        if (s == ST_ERR_CANCELLED) rc = 130; /* Ctrl-C during the first chunk: same status as later */
        goto done;
    }

    double tps = res.seconds > 0 ? (double)res.tokens_run / res.seconds : 0;
    double flops = ppl_chunk_flops(m, ctx, full);
    double gflops = res.seconds > 0 ? flops * (double)res.chunks / res.seconds * 1e-9 : 0;
    if (json) {
        const PplRun run = {model_path, text_path, ctx, n_ids, n_chunks, threads, full, numerics, t_load, t_tok, cpu_s};
        if (ppl_print_json(&run, &res, flops, gflops, tps)) goto done;
    } else {
        fprintf(stderr, "ppl: %lld chunks, %lld tokens scored, %.2f s (%.3f s per chunk, %.1f tok/s, %.1f GFLOP/s)\n",
                (long long)res.chunks, (long long)res.tokens_scored, res.seconds,
                res.seconds / (double)res.chunks, tps, gflops);
        printf("PPL = %.4f\n", res.ppl);
    }
    rc = res.cancelled ? 130 : 0;
done:
    ppl_result_done(&res);
    free(ids);
    free(text);
    pool_free(pool);
    model_free(m);
    return rc;
}
