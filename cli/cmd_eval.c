/* qscope eval: a plan against the base model on the same text and protocol. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "analysis/calib.h"
#include "analysis/eval.h"
#include "analysis/evaluate.h"
#include "analysis/qmodel.h"
#include "analysis/planner.h"
#include "analysis/statsfile.h"
#include "analysis/sitecal.h"
#include "cli/args.h"
#include "core/cache.h"
#include "cli/cli.h"
#include "cli/cmd_plan.h"
#include "cli/opts.h"
#include "core/mapfile.h"
#include "core/pool.h"
#include "core/progress.h"
#include "sessions/json.h"
#include "sessions/qmodel_dist.h"

#define EVAL_MAX_TEXT ((size_t)1 << 31)

static const char EVAL_USAGE[] =
    "usage: qscope eval MODEL (--plan PLAN | --preset NAME | --quant QFILE | --quant-gguf FILE) --text FILE\n"
    "                   [--stats STATS]\n"
    "                   [--ctx N] [--chunks N] [--threads N] [--numerics M] [--json]\n\n"
    "Quantizes MODEL with the plan, runs it on FILE with llama.cpp's perplexity protocol\n"
    "and compares it with the unquantized model on the same chunks: PPL and ppl_base,\n"
    "KL(base || quantized) of the next-token distributions at every scored position\n"
    "(mean, median, p90, p99, max, nats), top-1 agreement, the residual stream's relative\n"
    "error after each block (chunk 1), bits per weight, bytes, and the quantized model's\n"
    "prefill (one --ctx chunk) and single-token decode (64 steps) tokens per second.\n"
    "The base model's log-probabilities are cached (see --cache), so evaluating another\n"
    "plan on the same text runs only the quantized model.\n\n";

typedef struct {
    ProgressBar pb;
    int quiet;
    /* for the overlap warning: the calibration (may be NULL) and the text evaluated */
    const CalibStats *cs;
    const char *stats_path, *text;
    size_t len;
} EvalView;

static void eval_on_chunk(void *user, int64_t chunk, int64_t n_chunks, double ppl, double kld) {
    EvalView *v = user;
    if (v->quiet) return;
    char buf[96];
    snprintf(buf, sizeof buf, "[%lld] ppl %.4f kld %.5f", (long long)(chunk + 1), ppl, kld);
    if (v->pb.tty) progress_bar_draw(&v->pb, chunk + 1, n_chunks, buf);
    else fprintf(stderr, "%s%s", buf, chunk + 1 == n_chunks ? "\n" : " ");
}

/* 1 when path starts with the GGUF magic. */
static int is_gguf(const char *path) {
    char mg[4] = {0};
    FILE *f = fopen(path, "rb");
    int yes = f && fread(mg, 1, 4, f) == 4 && !memcmp(mg, "GGUF", 4);
    if (f) fclose(f);
    return yes;
}

/* The default cache directory (core/cache.h), heap; NULL when it cannot be made. */
static char *default_cache_dir(void) {
    char d[1024];
    Err err;
    err_init(&err);
    if (cache_dir_default(d, sizeof d, &err) != ST_OK) return NULL;
    return strdup(d);
}

/* What the command line asks for. */
typedef struct EvalArgs {
    const char *model_path, *text_path, *tok_path, *stats_path, *cache, *qfile, *gguf_file, *scales_path;
    int64_t ctx, chunks, threads, steps;
    int json, no_cache, no_speed, numerics;
    PlanCli pc;
} EvalArgs;

/* Parses argv into *a (the option table); OPTS_OK, or the exit code. */
static int eval_args(EvalArgs *a, int argc, char **argv) {
    static const OptChoice numerics_choices[] = {{"exact", NUMERICS_EXACT}, {"llamacpp", NUMERICS_LLAMACPP}, {NULL, 0}};
    memset(a, 0, sizeof *a);
    a->steps = 64;
    plancli_init(&a->pc);
    const Opt opts[] = {
        OPT_STR("--text", &a->text_path, "FILE", "text to score"),
        OPT_STR("--quant", &a->qfile, "QFILE",
                "a quantized model from `qscope quant -o` (its plan and weights: no\n"
                "re-quantization, no --stats needed); a GGUF here means --quant-gguf"),
        OPT_STR("--quant-gguf", &a->gguf_file, "FILE",
                "a quantized GGUF of MODEL (llama-quantize's, or `qscope export`'s):\n"
                "its weights in their own ggml types, decoded as ggml dequantizes\n"
                "them, against MODEL's reference; bpw counts the stored blocks"),
        OPT_STR("--stats", &a->stats_path, "STATS",
                "stats file from `qscope calib` (gptq, adadim, aqlm, smoothquant,\n"
                "static activation scales and spike-aware need it)"),
        OPT_STR("--tokenizer", &a->tok_path, "T", "llama2.c tokenizer .bin (for .bin models)"),
        OPT_STR("--site-scales", &a->scales_path, "F",
                "also print the planner's predicted KLD of the plan (kld_pred) from the\n"
                "site scales F (`qscope plan --auto --text` caches them as STATS.sitecal)"),
        OPT_INT("--ctx", &a->ctx, 4, 1 << 20, "N", "chunk length (default: 512, or the model's context if shorter)"),
        OPT_INT("--chunks", &a->chunks, 1, INT64_MAX / 2, "N", "at most N chunks (default: all)"),
        OPT_INT("--threads", &a->threads, 1, 256, "N", "threads (default: all CPUs)"),
        OPT_INT("--decode-steps", &a->steps, 1, 1 << 20, "N", "decode benchmark steps (default 64)"),
        OPT_ENUM("--numerics", &a->numerics, numerics_choices, "M",
                 "exact (default): float32 activations against the weights widened\n"
                 "exactly; llamacpp: round the activations of F16 / BF16 weights'\n"
                 "matmuls to fp16 / bf16 as llama.cpp's CPU backend does"),
        OPT_FLAG("--no-speed", &a->no_speed, "skip the speed measurement"),
        OPT_STR("--cache", &a->cache, "DIR",
                "reference cache directory (default $XDG_CACHE_HOME/qscope or\n"
                "~/.cache/qscope)"),
        OPT_FLAG("--no-cache", &a->no_cache, "compute the reference afresh"),
        OPT_FLAG("--json", &a->json,
                 "one JSON object on stdout (keys ppl, ppl_base, kld_mean, kld_median,\n"
                 "kld_p90, kld_p99, kld_max, top1_agree, bpw, bytes, prefill_tps,\n"
                 "decode_tps, chunks, tokens_scored, notes, layer_rel_err, seconds)"),
        OPT_END,
    };
    Opt plan_opts[PLANCLI_NOPTS];
    plancli_opts(&a->pc, 1, plan_opts);
    const OptSpec spec = {.cmd = "eval", .usage = EVAL_USAGE, .tables = {opts, plan_opts}, .pos = {&a->model_path}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (a->qfile && is_gguf(a->qfile)) {
        a->gguf_file = a->qfile;
        a->qfile = NULL;
    }
    int n_src = !!a->pc.plan_path + !!a->pc.preset + !!a->qfile + !!a->gguf_file;
    if (!a->model_path || !a->text_path || n_src != 1) {
        fprintf(stderr, "qscope eval: need MODEL, one of --plan PLAN, --preset NAME, --quant QFILE or --quant-gguf FILE, "
                        "and --text FILE\n");
        opts_usage(&spec, stderr);
        return 2;
    }
    return OPTS_OK;
}

/* Prints the result: one JSON object (with the loss model's prediction when
 * --site-scales gave one) or the text report. Returns 0, or -1 out of memory. */
static int eval_print(const EvalArgs *a, const EvalResult *res, const QModel *qm, const char *plan_name,
                      const EvalOpts *eo, int threads, double kld_pred, int64_t n_approx) {
    if (a->json) {
        cJSON *o = json_eval_result(res, qm, plan_name);
        if (o && a->scales_path) { /* the loss model's prediction beside the measurement */
            if (!json_set_num(o, "kld_pred", kld_pred) ||
                !json_set_num(o, "kld_pred_approx_sites", (double)n_approx)) {
                cJSON_Delete(o);
                o = NULL;
            }
        }
        char *line = o ? json_print_line(o, 9) : NULL;
        cJSON_Delete(o);
        if (!line) {
            fprintf(stderr, "qscope eval: out of memory\n");
            return -1;
        }
        printf("%s\n", line);
        free(line);
    } else {
        printf("plan %s on %s, %lld chunks of %lld (%lld positions)\n", plan_name, a->text_path, (long long)res->chunks,
               (long long)eo->n_ctx, (long long)res->tokens_scored);
        printf("  PPL        %.4f   (base %.4f, %+.3f%%)\n", res->ppl, res->ppl_base,
               100.0 * (res->ppl / res->ppl_base - 1.0));
        printf("  KLD        mean %.6f  median %.6f  p90 %.6f  p99 %.6f  max %.6f\n", res->kld_mean, res->kld_median,
               res->kld_p90, res->kld_p99, res->kld_max);
        if (a->scales_path)
            printf("  KLD pred   %.6f   (loss model, %s; %lld sites approximated)\n", kld_pred, a->scales_path,
                   (long long)n_approx);
        printf("  top-1      %.4f\n", res->top1_agree);
        printf("  size       %.4f bpw, %zu bytes (%lld weights)\n", res->bpw, res->bytes, (long long)qm->params);
        /* an interrupted run measures neither (eval_run skips both): say so, not "0.0 tok/s" */
        if (eo->speed && res->cancelled)
            printf("  speed      not measured (interrupted)\n");
        else if (eo->speed)
            printf("  speed      prefill %.1f tok/s, decode %.1f tok/s (%d threads; per CPU-second and thread:\n"
                   "             prefill %.1f, decode %.1f)\n",
                   res->prefill_tps, res->decode_tps, threads, res->prefill_cpu_tps, res->decode_cpu_tps);
        if (res->n_layers == 0) {
            printf("  layer err  not measured%s\n", res->cancelled ? " (interrupted)" : "");
        } else {
            printf("  layer err ");
            for (int64_t l = 0; l < res->n_layers; l++) printf(" %.4g", res->layer_rel_err[l]);
            printf("\n");
        }
    }
    return 0;
}

/* The plan's quantized model, its sites shared out over MPI ranks under
 * mpirun (sessions/qmodel_dist.h; one process: qmodel_build). */
static Status eval_build(const Model *m, const Plan *p, const QModelStats *st, Pool *pool, Progress *prog, QModel **out,
                         Err *err) {
    return qmodel_build_dist(m, p, st, 0, pool, prog, out, err);
}

/* Reports the stages as they finish: the reference (from the cache or
 * computed) and the quantizer's notes, on stderr unless --json. */
static void eval_on_stage(void *user, EvalStage done, const Evaluation *e) {
    const EvalView *v = user;
    if (done == EVAL_STAGE_BUILD && !v->quiet)
        for (int64_t i = 0; i < e->qm->n_notes; i++) fprintf(stderr, "eval: note: %s\n", e->qm->notes[i]);
    if (done != EVAL_STAGE_REF) return;
    if (!v->quiet)
        fprintf(stderr, "eval: reference %s (%lld chunks, %lld positions, base PPL %.4f, %.2f s)\n",
                e->ref_cached ? "from cache" : "computed", (long long)e->ref_chunks, (long long)e->ref_positions,
                e->ref_ppl, e->ref_seconds);
    /* one text for both: the calibration should not have drawn from what is scored here */
    if (v->cs && calib_overlaps_eval(&v->cs->params, v->text, v->len, e->ref_ctx, e->ref_chunks)) {
        char part[64] = "all of it";
        if (v->cs->params.tok_from) snprintf(part, sizeof part, "its tokens from %lld", (long long)v->cs->params.tok_from);
        fprintf(stderr,
                "qscope eval: warning: %s was calibrated on this text (%s), which this evaluation reads (its first "
                "%lld chunks of %lld): the plan is tuned on what it is scored on (calib --eval-chunks N with "
                "eval --chunks N, or a calibration text of its own, keeps them apart)\n",
                v->stats_path, part, (long long)e->ref_chunks, (long long)e->ref_ctx);
    } else if (v->cs && v->cs->params.tok_from && !v->quiet && calib_same_text(&v->cs->params, v->text, v->len)) {
        /* the same text, kept apart (calib --eval-chunks): say which part each took */
        fprintf(stderr, "eval: %s was calibrated on this text's tokens from %lld, past the %lld chunks of %lld scored here\n",
                v->stats_path, (long long)v->cs->params.tok_from, (long long)e->ref_chunks, (long long)e->ref_ctx);
    }
}

int cmd_eval(int argc, char **argv) {
    EvalArgs a;
    int pr = eval_args(&a, argc, argv);
    if (pr != OPTS_OK) return pr;
    int rc = 1;
    Err err;
    err_init(&err);
    QStatsFile sf;
    memset(&sf, 0, sizeof sf);
    Plan plan;
    plan_init(&plan);
    Pool *pool = NULL;
    QStored *stored = NULL;
    Evaluation ev;
    memset(&ev, 0, sizeof ev);
    char *text = NULL, *cdir = NULL;
    size_t len = 0;
    SiteCal sc;
    memset(&sc, 0, sizeof sc);
    double kld_pred = NAN;
    int64_t n_approx = 0;
    if (a.scales_path && !a.stats_path) {
        fprintf(stderr, "qscope eval: --site-scales needs --stats (the sensitivity map)\n");
        return 2;
    }
    Model *m = args_load_model(a.model_path, a.tok_path);
    if (!m) goto done;
    if (file_read_all(a.text_path, EVAL_MAX_TEXT, &text, &len, &err)) {
        args_print_err("eval", &err);
        goto done;
    }
    EvalSpec spec;
    evaluate_spec_init(&spec, m, text, len);
    if (a.ctx) spec.opts.n_ctx = a.ctx;
    /* One context policy (ppl, calib, eval, the TUI): longer than declared is
     * accepted with a warning, as llama.cpp does. */
    if (spec.opts.n_ctx > m->cfg.max_seq_len && m->cfg.max_seq_len > 0)
        fprintf(stderr, "qscope eval: warning: --ctx %lld is longer than the %lld positions %s was trained on\n",
                (long long)spec.opts.n_ctx, (long long)m->cfg.max_seq_len, a.model_path);
    spec.opts.max_chunks = a.chunks;
    spec.opts.speed = !a.no_speed;
    spec.opts.decode_steps = a.steps;
    spec.opts.numerics = (Numerics)a.numerics;
    if (a.gguf_file) {
        /* the file is the quantized model; its name stands for the plan's */
        const char *slash = strrchr(a.gguf_file, '/');
        snprintf(plan.name, sizeof plan.name, "%s", slash ? slash + 1 : a.gguf_file);
        spec.gguf_path = a.gguf_file;
    } else if (plancli_load(&a.pc, m, a.stats_path, a.qfile, &sf, &plan, &stored, &err)) {
        args_print_err("eval", &err);
        goto done;
    } else {
        spec.plan = &plan;
        spec.stored = stored;
        spec.stats = (QModelStats){sf.cs, sf.h};
        spec.build = eval_build;
    }
    if (a.scales_path && (sitecal_load(a.scales_path, m->cfg.n_layers, &sc, &err) ||
                        planner_predict(m, sf.cs, &plan, sc.scale, &kld_pred, &n_approx, &err))) {
        args_print_err("eval", &err);
        goto done;
    }
    if (pool_new((int)a.threads, &pool, &err)) {
        args_print_err("eval", &err);
        goto done;
    }
    Progress prog;
    progress_init(&prog);
    args_cancel_on_sigint(&prog);
    if (!a.no_cache) cdir = a.cache ? strdup(a.cache) : default_cache_dir();
    if (a.cache) mkdir(a.cache, 0777);
    EvalView view;
    memset(&view, 0, sizeof view);
    view.quiet = a.json;
    view.cs = sf.cs;
    view.stats_path = a.stats_path;
    view.text = text;
    view.len = len;
    progress_bar_init(&view.pb, "eval");
    spec.cache_dir = cdir;
    spec.pool = pool;
    spec.prog = &prog;
    spec.on_chunk = eval_on_chunk;
    spec.on_stage = eval_on_stage;
    spec.user = &view;
    Status st = evaluate(&spec, &ev, &err);
    if (!a.json && view.pb.tty && ev.stage >= EVAL_STAGE_RUN) progress_bar_finish(&view.pb);
    if (st == ST_ERR_CANCELLED && ev.stage == EVAL_STAGE_REF) {
        fprintf(stderr, "qscope eval: interrupted while computing the reference: nothing measured\n");
        rc = 130;
        goto done;
    }
    if (st && st != ST_ERR_CANCELLED) {
        if (ev.stage == EVAL_STAGE_REF) err_wrap(&err, "%s", a.text_path);
        args_print_err("eval", &err);
        goto done;
    }
    if (st == ST_ERR_CANCELLED && ev.stage < EVAL_STAGE_RUN) { /* the build */
        args_print_err("eval", &err);
        rc = 130;
        goto done;
    }
    const EvalResult *res = &ev.res;
    if (st == ST_ERR_CANCELLED) {
        fprintf(stderr, "qscope eval: interrupted after %lld chunks%s\n", (long long)res->chunks,
                res->chunks ? "" : ": nothing measured");
        rc = 130;
    }
    if (res->chunks == 0) goto done;
    if (eval_print(&a, res, ev.qm, plan.name, &spec.opts, pool_size(pool), kld_pred, n_approx)) goto done;
    rc = res->cancelled ? 130 : 0;
done:
    sitecal_done(&sc);
    evaluation_done(&ev);
    qstored_free(stored);
    pool_free(pool);
    plan_done(&plan);
    qstats_close(&sf);
    free(cdir);
    free(text);
    model_free(m);
    return rc;
}
