/* qscope plan --auto: the planner (analysis/planner.h) from the command line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/planner.h"
#include "analysis/qmodel.h"
#include "analysis/statsfile.h"
#include "analysis/sitecal.h"
#include "analysis/speedtab.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/cmd_plan.h"
#include "cli/opts.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "core/pool.h"
#include "quant/format.h"

static const char AUTO_USAGE[] =
    "usage: qscope plan MODEL --auto (--bpw B | --bytes N) --stats STATS [options] [-o PLAN.json]\n"
    "Chooses every projection's weight format and grouping (and the method) so that the\n"
    "predicted loss is least under the budget, and writes the plan.\n"
    "Loss model: site s under candidate c costs scale_s * oerr_s(c), oerr the sensitivity\n"
    "map's relative output error tr(dW H dW^T)/tr(W H W^T) (symmetric RTN, from `qscope\n"
    "calib`); scale_s = 1 unless --site-scales gives the measured KLD per unit error.\n"
    "Optimiser: multiple-choice knapsack solved by dynamic programming over integer bit\n"
    "costs (exact when the budget fits the table; otherwise costs are rounded up to a unit\n"
    "q and the answer is optimal for the budget minus sites*(q-1) bits, both printed),\n"
    "with the Lagrangian (LP relaxation) lower bound on the exact optimum.\n";

/* --formats "fp16,int4" -> the format mask at o->user; 0 and a message on an unknown name. */
static int take_formats(const char *cmd, const Opt *o, const char *s) {
    uint32_t *mask = o->user;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    *mask = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int f = qformat_parse(tok);
        if (f < 0) {
            fprintf(stderr, "qscope %s: %s: unknown format '%s'\n", cmd, o->name, tok);
            return 0;
        }
        *mask |= 1u << f;
    }
    return 1;
}

static const OptChoice METHODS[] = {{"rtn", QM_RTN}, {"gptq", QM_GPTQ}, {NULL, 0}};

/* The site scales: from --site-scales FILE alone, or (with --text) from the
 * cache at FILE (default STATS.sitecal) when its key matches, else measured
 * on the text and written there (sitecal_get); with target llamacpp also the
 * ends' KLD per ggml type. Returns 0, or -1 after printing the error. */
static int site_scales(const Model *m, const QStatsFile *sf, const char *stats_path, const char *path,
                       const char *text_path, const char *cache, int64_t ctx, int64_t chunks, int64_t threads,
                       PlannerTarget target, SiteCal *sc) {
    Err err;
    err_init(&err);
    int rc = -1;
    char *own = NULL, *text = NULL;
    Pool *pool = NULL;
    if (!text_path) {
        if (sitecal_load(path, m->cfg.n_layers, sc, &err)) goto fail;
        fprintf(stderr, "plan: site scales from %s\n", path);
        return 0;
    }
    if (!path) {
        size_t n = strlen(stats_path) + 16;
        own = malloc(n);
        if (!own) goto fail;
        snprintf(own, n, "%s.sitecal", stats_path);
        path = own;
    }
    size_t len = 0;
    if (file_read_all(text_path, (size_t)1 << 31, &text, &len, &err)) goto fail;
    if (ctx == 0) ctx = eval_ctx_default(&m->cfg);
    /* one context policy (ppl, calib, eval, the TUI): longer than declared is accepted with a warning */
    if (m->cfg.max_seq_len > 0 && ctx > m->cfg.max_seq_len)
        fprintf(stderr, "qscope plan: warning: --ctx %lld is longer than the %lld positions the model was trained on\n",
                (long long)ctx, (long long)m->cfg.max_seq_len);
    EvalOpts eo;
    eval_opts_default(&eo);
    eo.n_ctx = ctx;
    eo.max_chunks = chunks;
    QFormat ef[24];
    int ne = m->cfg.tied_embeddings ? 0 : planner_end_formats(target, ef, 24);
    int w = 0;
    for (int i = 0; i < ne; i++) /* fp16 ends cost 0: nothing to measure */
        if (qformat_traits(ef[i])->family == QFAM_GGML) ef[w++] = ef[i];
    if (pool_new((int)threads, &pool, &err)) goto fail;
    Progress prog;
    progress_init(&prog);
    args_cancel_on_sigint(&prog);
    double t0 = args_now();
    int measured = 0;
    if (sitecal_get(m, sf->cs, text, len, &eo, cache, path, ef, w, pool, &prog, sc, &measured, &err)) goto fail;
    if (measured)
        fprintf(stderr, "plan: site scales measured (%lld sites%s, %lld chunks of %lld, %.1f s), cached in %s\n",
                (long long)(m->cfg.n_layers * PLAN_NPROJ), w ? " and the ends in each ggml type" : "",
                (long long)chunks, (long long)ctx, args_now() - t0, path);
    else fprintf(stderr, "plan: site scales from the cache %s\n", path);
    rc = 0;
fail:
    if (rc) args_print_err("plan", &err);
    pool_free(pool);
    free(text);
    free(own);
    return rc;
}

/* Every site's choice and its trade-off (--why), else a count per candidate
 * in order of first use; on stderr. */
static void print_choices(const PlannerResult *res, int why) {
    if (why) {
        for (int64_t s = 0; s < res->n_sites; s++)
            fprintf(stderr, "  %3lld %-5s %s\n", (long long)(s / PLAN_NPROJ), plan_proj_name((int)(s % PLAN_NPROJ)),
                    res->sites[s].why);
    } else {
        /* a count per candidate, in order of first use */
        for (int64_t s = 0; s < res->n_sites; s++) {
            int64_t c = 0, seen = 0;
            for (int64_t t = 0; t < s && !seen; t++) seen = !strcmp(res->sites[t].name, res->sites[s].name);
            if (seen) continue;
            for (int64_t t = s; t < res->n_sites; t++) c += !strcmp(res->sites[t].name, res->sites[s].name);
            fprintf(stderr, "  %-10s %lld sites\n", res->sites[s].name, (long long)c);
        }
    }
    for (int e = 0; res->has_ends && e < 2; e++)
        fprintf(stderr, "  %-5s %s\n", e ? "head" : "embed", why ? res->ends[e].why : res->ends[e].name);
}

/* What the command line asked for. */
typedef struct AutoArgs {
    const char *model_path, *tok_path, *stats_path, *out_path, *scales_path, *text_path, *cache, *groups;
    int64_t ctx, chunks, threads;
    double min_tps;
    int method, why;
    PlannerOpts po;          /* budget, formats and target filled in */
} AutoArgs;

/* The option table and the required arguments; OPTS_OK, or the exit code
 * (usage printed). */
static int auto_args(int argc, char **argv, AutoArgs *a) {
    memset(a, 0, sizeof *a);
    a->chunks = 4;
    a->groups = "64,128";
    a->method = -1;
    planner_opts_default(&a->po);
    int64_t bytes = 0;
    int is_auto = 0, target = (int)a->po.target;
    int nk;
    planner_kinds(PLANNER_TARGET_ANY, &nk);
    char target_help[256]; /* names the candidate count of target any */
    snprintf(target_help, sizeof target_help,
             "any (default: %d candidates per site: each format x tensor, oc, ic,\n"
             "oc-g, ic-g scales) or llamacpp (ggml's block types f16, q8_0, q6_k,\n"
             "q5_k, q5_1, q5_0, q4_k, q4_1, q4_0, q3_k, q2_k with GPTQ on their grids;\n"
             "the embedding and head chosen too; exports exactly)",
             nk);
    const Opt opts[] = {
        OPT_FLAG("--auto", &is_auto, NULL),
        OPT_FLOAT("--bpw", &a->po.bpw, 0.01, 64, "B",
                  "budget in bits per weight over every weight (embedding and head,\n"
                  "kept fp16, included: the bpw `qscope eval` reports)"),
        OPT_INT("--bytes", &bytes, 1, INT64_MAX / 16, "N", "budget in bytes instead"),
        OPT_STR("--stats", &a->stats_path, "STATS", "stats file with the sensitivity map (needs H)"),
        OPT_FN("--formats", take_formats, &a->po.formats, "LIST",
               "allowed formats, comma-separated (default: all of the target's):\n"
               "fp16,int8,int6,int4,int3,int2,fp8-e4m3,fp8-e5m2"),
        {.name = "--target", .kind = OPTK_PARSE, .flag = &target, .parse = planner_target_parse,
         .expect = "any or llamacpp", .metavar = "T", .help = target_help},
        OPT_ENUM("--method", &a->method, METHODS, "M", "rtn or gptq for the integer sites (default gptq when STATS has H)"),
        OPT_STR("--groups", &a->groups, "LIST",
                "also int8/6/4/3/2 with OC groups of these sizes (default 64,128;\n"
                "none: only the map's cells); their output errors are computed now\n"
                "from the weights and H (target any, STATS with H)"),
        OPT_STR("--text", &a->text_path, "T",
                "calibrate the loss model on text T: for every site, the KLD of the\n"
                "model with that site alone quantized (int4 sym, the map's OC groups,\n"
                "RTN; the rest float) over --chunks C chunks of --ctx N gives\n"
                "scale_s = KLD_s / oerr_s; losses become predicted KLD in nats. Cached\n"
                "in STATS.sitecal (or --site-scales F) and reused while model, text,\n"
                "ctx and chunks match"),
        OPT_INT("--chunks", &a->chunks, 1, INT64_MAX / 2, "C", "chunks of the --text calibration (default 4)"),
        OPT_INT("--ctx", &a->ctx, 4, 1 << 20, "N", "their length (default 512 or the model's context)"),
        OPT_STR("--site-scales", &a->scales_path, "F",
                "the scales from F alone (one 'LAYER PROJ SCALE' line per site, PROJ\n"
                "q k v o gate up down), or with --text the cache path"),
        OPT_INT("--threads", &a->threads, 1, 256, "N", "threads for the calibration (default: all CPUs)"),
        OPT_STR("--cache", &a->cache, "DIR", "keep the evaluation reference there (as qscope eval)"),
        OPT_FLOAT("--speed", &a->min_tps, 0.001, 1e9, "MIN_TOKS",
                  "also keep the predicted decode speed at or above MIN_TOKS tokens/s\n"
                  "(matmul-only, from the per-machine speed table: every candidate's\n"
                  "kernel timed on the model's shapes, cached in the cache directory)"),
        OPT_FLAG("--why", &a->why, "print every site's choice and its trade-off"),
        OPT_STR("--tokenizer", &a->tok_path, "T", "llama2.c tokenizer .bin (for .bin models)"),
        OPT_STR("-o", &a->out_path, "PLAN.json", "output path (default: print the JSON on stdout)"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "plan --auto", .usage = AUTO_USAGE, .tables = {opts}, .pos = {&a->model_path}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    a->po.bytes = (size_t)bytes;
    a->po.target = (PlannerTarget)target;
    if (!a->model_path || !a->stats_path || (a->po.bpw > 0) == (a->po.bytes > 0)) {
        fprintf(stderr, "qscope plan --auto: need MODEL, --stats STATS and one of --bpw B or --bytes N\n");
        opts_usage(&spec, stderr);
        return 2;
    }
    return OPTS_OK;
}

/* The plan's size against the budget, the predicted loss and its bound,
 * the predicted speed and the DP's slack; on stderr. */
static void print_summary(const PlannerResult *res, const PlanSize *sz, const SpeedTab *spd, const char *spath) {
    fprintf(stderr,
            "plan '%s': %.4f bits per weight (linear layers %.4f), %zu bytes; budget %lld bits (%.4f bpw); "
            "predicted loss %.6g%s, lower bound %.6g (gap %.2g%%)%s\n",
            res->plan.name, sz->bpw_all, sz->bpw_lin, sz->all_bytes, (long long)res->budget_bits,
            (double)res->budget_bits / (double)res->all_params, res->sol.loss,
            res->calibrated ? " nats KLD" : " (sum of relative output errors)", res->sol.lower_bound,
            res->sol.loss > 0 ? 100.0 * (res->sol.loss - res->sol.lower_bound) / res->sol.loss : 0.0,
            res->sol.unit_bits > 1 ? "" : "; DP exact");
    if (res->decode_tps > 0)
        fprintf(stderr, "plan: predicted %.1f tok/s decode, %.1f tok/s prefill (matmuls only, %d threads; speed table %s)%s\n",
                res->decode_tps, res->prefill_tps, spd->threads, spath,
                res->speed_lambda > 0 ? "; the speed constraint binds" : "");
    if (res->sol.unit_bits > 1)
        fprintf(stderr, "plan: DP cost unit %lld bits: optimal for the budget minus %lld bits (%.5f bpw)\n",
                (long long)res->sol.unit_bits, (long long)res->sol.slack_bits,
                (double)res->sol.slack_bits / (double)res->all_params);
}

int cmd_plan_auto(int argc, char **argv) {
    AutoArgs a;
    int pr = auto_args(argc, argv, &a);
    if (pr != OPTS_OK) return pr;
    PlannerOpts po = a.po;
    int rc = 1;
    Err err;
    err_init(&err);
    QStatsFile sf;
    memset(&sf, 0, sizeof sf);
    PlannerResult res;
    memset(&res, 0, sizeof res);
    plan_init(&res.plan);
    SiteCal sc;
    memset(&sc, 0, sizeof sc);
    Pool *pool = NULL;
    SpeedTab spd;
    memset(&spd, 0, sizeof spd);
    char spath[1200] = "";
    Model *m = args_load_model(a.model_path, a.tok_path);
    if (!m) goto done;
    if (qstats_open(a.stats_path, m, &sf, &err)) {
        args_print_err("plan", &err);
        goto done;
    }
    po.method = a.method >= 0 ? (QMethod)a.method : sf.h ? QM_GPTQ : QM_RTN;
    if (po.method == QM_GPTQ && !sf.h) {
        fprintf(stderr, "qscope plan: --method gptq needs H beside the stats file (%s.h64)\n", a.stats_path);
        goto done;
    }
    if (a.scales_path || a.text_path) {
        if (site_scales(m, &sf, a.stats_path, a.scales_path, a.text_path, a.cache, a.ctx, a.chunks, a.threads,
                        po.target, &sc))
            goto done;
        po.site_scale = sc.scale;
        po.end_loss = sc.end_kld;
    }
    if (sf.h) { /* computed output errors: ggml types, GPTQ, other group sizes */
        po.h = sf.h;
        if (pool_new((int)a.threads, &pool, &err)) {
            args_print_err("plan", &err);
            goto done;
        }
        po.pool = pool;
    }
    if (strcmp(a.groups, "none") != 0 && sf.h && po.target == PLANNER_TARGET_ANY) {
        char gb[64];
        snprintf(gb, sizeof gb, "%s", a.groups);
        for (char *t = strtok(gb, ","); t && po.n_extra_groups < 4; t = strtok(NULL, ",")) {
            int64_t g;
            if (!args_int("plan", "--groups", t, 4, 1 << 16, &g)) goto done;
            po.extra_groups[po.n_extra_groups++] = g;
        }
    }
    /* the speed table: every candidate timed with --speed, else only the plan's entries */
    if (!pool && pool_new((int)a.threads, &pool, &err)) {
        args_print_err("plan", &err);
        goto done;
    }
    if (speedtab_path(a.cache, pool_size(pool), spath, sizeof spath, &err) ||
        speedtab_load(spath, pool_size(pool), &spd, &err)) {
        args_print_err("plan", &err);
        goto done;
    }
    if (a.min_tps > 0) {
        po.speed = &spd;
        po.speed_pool = pool;
        po.min_decode_tps = a.min_tps;
    }
    Status bst = planner_build(m, sf.cs, &po, &res, &err);
    if (bst) {
        args_print_err("plan", &err);
        goto done;
    }
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    if (!po.speed && speedtab_plan(&spd, &res.plan, &pm, pool, &res.decode_tps, &res.prefill_tps, &err)) {
        args_print_err("plan", &err); /* no prediction: not fatal */
        res.decode_tps = res.prefill_tps = 0;
    }
    if (spd.n_measured && speedtab_save(&spd, spath, &err)) args_print_err("plan", &err);
    PlanSize sz;
    if (plan_size(&res.plan, &pm, NULL, &sz, &err)) {
        args_print_err("plan", &err);
        goto done;
    }
    print_choices(&res, a.why);
    for (int64_t i = 0; i < res.plan.n_notes; i++) fprintf(stderr, "plan: note: %s\n", res.plan.notes[i]);
    print_summary(&res, &sz, &spd, spath);
    if (plancli_write(&res.plan, a.out_path)) goto done;
    rc = 0;
done:
    speedtab_done(&spd);
    pool_free(pool);
    sitecal_done(&sc);
    planner_result_done(&res);
    qstats_close(&sf);
    model_free(m);
    return rc;
}
