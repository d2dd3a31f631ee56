/* qscope calib: run calibration text through a model and write the stats
 * cache (plus H beside it). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analysis/calib.h"
#include "analysis/eval.h"
#include "analysis/sensrun.h"
#include "analysis/spikes.h"
#include "analysis/statsfile.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "core/dist.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "core/pool.h"

static const char CALIB_USAGE[] =
    "usage: qscope calib MODEL --text FILE -o STATS [options]\n"
    "Runs sequences of FILE through MODEL with taps on every projection input and the\n"
    "residual stream, and writes STATS (the stats cache) and STATS.<id>.h64 (H = XᵀX per\n"
    "linear input: float32 upper triangles, about n_layers × (2·dim² + q_dim² + hidden²)\n"
    "× 2 bytes, each matrix checksummed). The two are put in place as a pair.\n";

static const char CALIB_EPILOG[] =
    "Ctrl-C (exit status 130): per-sample keeps the sequences done (the file records\n"
    "how many completed); stream keeps nothing, as no sequence is complete before the\n"
    "last layer. A second Ctrl-C aborts. During the sensitivity map, Ctrl-C keeps the\n"
    "finished sites (saved in STATS as they finish, so a kill keeps them too): the\n"
    "same command again computes only the missing sites.\n";

typedef struct BarJob {
    Progress *p;
    _Atomic int stop;
} BarJob;

static void *calib_bar_thread(void *arg) {
    BarJob *j = arg;
    ProgressBar pb;
    progress_bar_init(&pb, "calib");
    while (!j->stop) {
        progress_bar_draw(&pb, atomic_load(&j->p->done), atomic_load(&j->p->total), j->p->stage);
        usleep(100000);
    }
    progress_bar_draw(&pb, atomic_load(&j->p->done), atomic_load(&j->p->total), j->p->stage);
    progress_bar_finish(&pb);
    return NULL;
}

/* What the command line asks for. */
typedef struct CalibArgs {
    const char *model, *text, *tok, *out;
    CalibParams p;
    int seqlen_given, fresh, no_h;
    int64_t nthreads, max_sites, ev_chunks, ev_ctx;
    int remap;
} CalibArgs;

/* Parses argv into *a (the option table); OPTS_OK, or the exit code. */
static int calib_args(CalibArgs *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    CalibParams *p = &a->p;
    calib_params_default(p);
    int no_sens = 0, sens_exact = 0, mode = (int)p->mode, pipeline = (int)p->pipeline;
    int64_t samples = p->samples, seqlen = -1, seed = (int64_t)p->seed, group = p->group, topk = p->topk;
    const Opt opts[] = {
        OPT_STR("--tokenizer", &a->tok, "T", "llama2.c tokenizer .bin (for .bin models)"),
        OPT_STR("--text", &a->text, "FILE", "calibration text"),
        OPT_INT("--samples", &samples, CALIB_SAMPLES_MIN, CALIB_SAMPLES_MAX, "N",
                "sequences (default 16; chunks mode: at most what the text holds)"),
        OPT_INT("--seqlen", &seqlen, CALIB_SEQLEN_MIN, CALIB_SEQLEN_MAX, "L",
                "tokens per sequence, BOS included (default 256, or the model's\n"
                "context if smaller; a longer one is accepted with a warning)"),
        OPT_INT("--seed", &seed, 0, INT64_MAX, "S", "seed of the random offsets (default 1)"),
        OPT_PARSE("--mode", &mode, calib_mode_parse, "random or chunks", "M",
                  "random (seeded offsets, default) or chunks (consecutive)"),
        OPT_INT("--group", &group, CALIB_GROUP_MIN, CALIB_GROUP_MAX, "G",
                "group size of the grouped sensitivity cells (default 32; where G\n"
                "does not divide a dimension, the largest divisor <= G that is a\n"
                "multiple of 4 is used and recorded)"),
        OPT_INT("--topk", &topk, CALIB_TOPK_MIN, CALIB_TOPK_MAX, "K", "spikes kept per (layer, tap) (default 16)"),
        OPT_FLAG("--no-sensitivity", &no_sens, "skip the weight-sensitivity map"),
        OPT_FLAG("--sens-exact", &sens_exact,
                 "exact output errors (a GEMM per cell); by default they are\n"
                 "estimated (closed-form diagonal + row subsample, standard\n"
                 "error <= 1 % of each value; docs/calibration.md)"),
        OPT_INT("--sens-max-sites", &a->max_sites, 1, INT32_MAX, "N",
                "stop the map after N more sites, as Ctrl-C would (the\n"
                "finished sites kept; to time a few sites of a large model)"),
        OPT_FLAG("--no-h", &a->no_h, "do not accumulate H (no output errors in the map)"),
        OPT_INT("--eval-chunks", &a->ev_chunks, 1, INT32_MAX, "N",
                "FILE is also the evaluation text, scored on its first N chunks\n"
                "(eval --chunks N): windows come only from the tokens past them,\n"
                "so the plan is not tuned on what it is scored on"),
        OPT_INT("--eval-ctx", &a->ev_ctx, 4, 1 << 20, "C",
                "those chunks' length (eval's default: 512, or the model's\n"
                "context if shorter)"),
        OPT_FLAG("--fresh", &a->fresh,
                 "recalibrate even when STATS holds this calibration with a\n"
                 "partial sensitivity map (by default only the map's missing\n"
                 "sites are computed then)"),
        OPT_FLAG("--remap", &a->remap,
                 "STATS holds this calibration: recompute its whole sensitivity\n"
                 "map (statistics and H kept; to time or redo the map alone)"),
        OPT_INT("--threads", &a->nthreads, 1, 256, "N", "worker threads (default: all CPUs)"),
        OPT_PARSE("--pipeline", &pipeline, calib_pipeline_parse, "stream or per-sample", "P",
                  "stream (default: every sequence passes layer l before layer l+1, so\n"
                  "each layer's weights are read once; the residual stream of all\n"
                  "sequences is held in RAM up to QS_CALIB_HIDDEN_MB, default 1/8 of RAM,\n"
                  "and spilled to $TMPDIR beyond) or per-sample (one sequence at a time\n"
                  "through all layers); both write the same files"),
        OPT_STR("-o", &a->out, "STATS", "output path"),
        OPT_END,
    };
    const OptSpec spec = {.cmd = "calib", .usage = CALIB_USAGE, .epilog = CALIB_EPILOG, .tables = {opts},
                          .pos = {&a->model}};
    int pr = opts_parse(&spec, argc, argv);
    if (pr != OPTS_OK) return pr;
    if (!a->model || !a->text || !a->out) {
        fprintf(stderr, "qscope calib: MODEL, --text and -o are required (see qscope calib --help)\n");
        return 2;
    }
    if (a->ev_ctx && !a->ev_chunks) {
        fprintf(stderr, "qscope calib: --eval-ctx needs --eval-chunks (how many chunks evaluation scores)\n");
        return 2;
    }
    a->seqlen_given = seqlen >= 0;
    p->samples = samples;
    if (a->seqlen_given) p->seqlen = seqlen;
    p->seed = (uint64_t)seed;
    p->mode = (CalibMode)mode;
    p->pipeline = (CalibPipeline)pipeline;
    p->group = group;
    p->topk = (int32_t)topk;
    p->sensitivity = !no_sens;
    p->sens_exact = sens_exact;
    snprintf(p->text_path, sizeof p->text_path, "%s", a->text);
    return OPTS_OK;
}

/* STATS already holding this calibration (p on the text buf, len bytes)
 * with a partial map, from a cancelled or killed pass: its statistics, whose
 * missing sites are all that is left to compute; else NULL. */
static CalibStats *calib_resumable(const char *out, const CalibParams *p, const char *buf, size_t len, const Model *m,
                                   int no_h, int remap) {
    if (!p->sensitivity || access(out, F_OK) != 0) return NULL;
    CalibParams q = *p;
    q.text_hash = hash_bytes(HASH_SEED, buf, len);
    q.text_bytes = (int64_t)len;
    CalibStats *cs = NULL;
    Err e2;
    err_init(&e2);
    if (statsfile_load(out, &cs, &e2) == ST_OK && remap && cs->has_sens) { /* a map to redo: drop it */
        sens_map_done(&cs->sens);
        cs->has_sens = 0;
    }
    if (!cs || !sensrun_resumable(cs, m, &q, NULL, 0) || cs->has_h == no_h) {
        calib_stats_free(cs);
        return NULL;
    }
    return cs;
}

/* The summary on stdout: what was calibrated (or resumed), the files, the
 * map's state and the spike-aware candidates. */
static void calib_print(const CalibArgs *a, const CalibParams *p, const CalibStats *cs, int resumed, double dt,
                        double dt_map, int64_t ev_ctx, int rc) {
    const char *out = a->out;
    Err err;
    err_init(&err);
    char *hfinal = cs->has_h ? statsfile_h_path(out, cs->h_id) : NULL;
    if (resumed) {
        printf("resumed the sensitivity map of %s (calibrated on %s: %lld sequences × %lld tokens)\n", out,
               cs->params.text_path, (long long)cs->n_seqs, (long long)cs->params.seqlen);
    } else {
        printf("calibrated %s on %s: %lld sequences × %lld tokens (%s, seed %llu) in %.2f s\n", a->model, a->text,
               (long long)cs->n_seqs, (long long)p->seqlen, calib_mode_name(p->mode), (unsigned long long)p->seed, dt);
        if (p->tok_from)
            printf("calibration part: tokens %lld-%lld of %s (%lld tokens), past the %lld chunks of %lld that "
                   "`eval --chunks %lld --ctx %lld` scores\n",
                   (long long)p->tok_from, (long long)(p->tok_from + cs->text_tokens - 1), a->text,
                   (long long)cs->text_tokens, (long long)a->ev_chunks, (long long)ev_ctx, (long long)a->ev_chunks,
                   (long long)ev_ctx);
        else
            printf("calibration part: the whole text (%lld tokens; with --eval-chunks N, only what `eval --chunks "
                   "N` does not read)\n",
                   (long long)cs->text_tokens);
        printf("pipeline: %s%s", calib_pipeline_name(cs->pipeline),
               p->pipeline == CALIB_STREAM && cs->pipeline != CALIB_STREAM ? " (the residual stream would not fit the "
                                                                            "temporary directory's disk)" : "");
        if (cs->spilled_bytes)
            printf(", %.1f MB of residual stream spilled to a temporary file", (double)cs->spilled_bytes / 1e6);
        printf("\n");
    }
    if (cs->n_seqs < cs->n_planned)
        printf("cancelled: kept %lld of %lld sequences\n", (long long)cs->n_seqs, (long long)cs->n_planned);
    printf("stats: %s\n", out);
    if (cs->has_h) printf("H: %s (%zu bytes)\n", hfinal ? hfinal : "?", cs->h_bytes);
    if (!p->sensitivity)
        printf("sensitivity map: not computed\n");
    else if (cs->n_seqs < cs->n_planned)
        printf("sensitivity map: not computed (interrupted)\n");
    else if (cs->has_sens && sens_map_complete(&cs->sens))
        printf("sensitivity map: computed in %.2f s\n", dt_map);
    else
        printf("sensitivity map: partial, %lld of %lld sites (%s; the same command resumes it)\n",
               (long long)(cs->has_sens ? sens_map_sites_done(&cs->sens) : 0), (long long)(cs->n_layers * PROJ_COUNT),
               rc == 130 ? "interrupted" : "stopped");
    SpikeScore *sc = NULL;
    int64_t n = 0;
    if (spikes_score(cs, &sc, &n, &err) == ST_OK) {
        printf("spike-aware candidates (top %d by max/median):\n", SPIKES_DEFAULT_K);
        for (int64_t i = 0; i < n && i < SPIKES_DEFAULT_K; i++)
            printf("  %lld. layer %lld %-7s max %.4g median %.4g ratio %.1f\n", (long long)sc[i].rank,
                   (long long)sc[i].layer, tap_name(sc[i].tap), sc[i].max, sc[i].median, sc[i].ratio);
        free(sc);
    }
    free(hfinal);
}

int cmd_calib(int argc, char **argv) {
    CalibArgs a;
    int pr = calib_args(&a, argc, argv);
    if (pr != OPTS_OK) return pr;
    const char *model = a.model, *text = a.text, *out = a.out;
    CalibParams p = a.p;
    int64_t nthreads = a.nthreads, nmax = a.max_sites, ev_chunks = a.ev_chunks, ev_ctx = a.ev_ctx;
    int fresh = a.fresh, no_h = a.no_h;

    Err err;
    err_init(&err);
    char *buf = NULL;
    size_t len = 0;
    if (file_read_all(text, (size_t)1 << 31, &buf, &len, &err) != ST_OK) {
        args_print_err("calib", &err);
        return 1;
    }
    if (calib_output_check(out, &err) != ST_OK) {
        args_print_err("calib", &err);
        free(buf);
        return 2;
    }
    Model *m = args_load_model(model, a.tok);
    if (!m) {
        free(buf);
        return 1;
    }
    int64_t ctx = m->cfg.max_seq_len;
    if (ctx > 0 && p.seqlen > ctx && !a.seqlen_given) p.seqlen = ctx;
    if (ctx > 0 && p.seqlen > ctx)
        fprintf(stderr, "qscope calib: warning: --seqlen %lld is above the model's context %lld (accepted, as llama.cpp "
                        "does; positions past it are outside what the model was trained on)\n",
                (long long)p.seqlen, (long long)ctx);
    if (ev_chunks) {
        if (!ev_ctx) ev_ctx = eval_ctx_default(&m->cfg);
        p.tok_from = calib_part_from(ev_ctx, ev_chunks);
    }
    fprintf(stderr, "qscope calib: %lld samples × %lld tokens (%s, seed %llu)\n", (long long)p.samples,
            (long long)p.seqlen, calib_mode_name(p.mode), (unsigned long long)p.seed);
    Pool *pool = NULL;
    if (pool_new((int)nthreads, &pool, &err) != ST_OK) {
        args_print_err("calib", &err);
        model_free(m);
        free(buf);
        return 1;
    }
    CalibStats *cs = fresh ? NULL : calib_resumable(out, &p, buf, len, m, no_h, a.remap);
    if (a.remap && !cs) {
        fprintf(stderr, "qscope calib: --remap: %s does not hold this calibration (same model, text and settings, "
                        "with H unless --no-h)\n", out);
        pool_free(pool);
        model_free(m);
        free(buf);
        return 2;
    }
    char *hpath = no_h || cs ? NULL : calib_h_temp(out);
    size_t hb = calib_h_bytes(m);
    if (cs)
        fprintf(stderr, "qscope calib: %s holds this calibration with a partial sensitivity map (%lld of %lld sites): "
                        "computing the missing sites (--fresh recalibrates)\n",
                out, (long long)(cs->has_sens ? sens_map_sites_done(&cs->sens) : 0),
                (long long)(cs->n_layers * PROJ_COUNT));
    else if (!no_h)
        fprintf(stderr, "qscope calib: H = XᵀX (float32 upper triangles) for %lld layers of widths %lld/%lld/%lld: "
                        "%.1f MB\n",
                (long long)m->cfg.n_layers, (long long)m->cfg.dim, (long long)(m->cfg.n_heads * m->cfg.head_dim),
                (long long)m->cfg.hidden_dim, (double)hb / 1e6);
    Progress prog;
    progress_init(&prog);
    args_cancel_on_sigint(&prog);
    BarJob job = {.p = &prog, .stop = 0};
    pthread_t th;
    int have_bar = pthread_create(&th, NULL, calib_bar_thread, &job) == 0;
    double t0 = args_now(), dt = 0, dt_map = 0;
    int resumed = cs != NULL, rc = 0;
    Status st = ST_OK, mst = ST_OK;
    if (!resumed) {
        /* the statistics and H first, committed as a pair (rank 0 over MPI);
         * the map then runs as its own stage on the committed files, saving
         * finished sites as it goes */
        CalibParams pc = p;
        pc.sensitivity = 0;
        st = calib_run(m, buf, len, &pc, hpath, pool, &prog, &cs, &err);
        dt = args_now() - t0;
        if (st == ST_OK && dist_rank() == 0) {
            cs->params.sensitivity = p.sensitivity; /* asked for: a map not yet run counts as partial */
            if (calib_windows_repeat(cs->text_tokens, &p))
                fprintf(stderr, "\nqscope calib: warning: %lld samples × %lld tokens exceed the %s's %lld tokens: "
                                "windows overlap and repeat\n",
                        (long long)p.samples, (long long)p.seqlen, p.tok_from ? "calibration part" : "text",
                        (long long)cs->text_tokens);
            else if (p.mode == CALIB_CHUNKS && cs->n_planned < p.samples)
                fprintf(stderr, "\nqscope calib: warning: the %s's %lld tokens hold %lld consecutive windows of %lld, "
                                "fewer than the %lld samples asked\n",
                        p.tok_from ? "calibration part" : "text", (long long)cs->text_tokens, (long long)cs->n_planned,
                        (long long)p.seqlen, (long long)p.samples);
            st = calib_commit(cs, hpath, out, &err);
        }
    }
    if (st == ST_OK && dist_rank() == 0 && p.sensitivity && cs->n_seqs == cs->n_planned && !progress_cancelled(&prog)) {
        double t1 = args_now();
        SensOpts so;
        sens_opts_default(&so);
        so.exact = p.sens_exact;
        so.max_sites = nmax;
        mst = sensrun_map(m, cs, out, &so, SENSRUN_SAVE_SECS, pool, &prog, &err);
        dt_map = args_now() - t1;
    }
    job.stop = 1;
    if (have_bar) pthread_join(th, NULL);
    /* Ctrl-C exits 130 like ppl and eval, also when it kept a partial result */
    rc = progress_cancelled(&prog) ? 130 : 0;
    if (st != ST_OK) {
        args_print_err("calib", &err);
        if (st != ST_ERR_CANCELLED) rc = 1;
        goto done;
    }
    /* Over MPI the ranks computed the same statistics; rank 0 wrote them and H. */
    if (dist_rank() != 0) goto done;
    if (mst != ST_OK && mst != ST_ERR_CANCELLED) {
        args_print_err("calib", &err);
        rc = 1;
    }
    calib_print(&a, &p, cs, resumed, dt, dt_map, ev_ctx, rc);
done:
    calib_stats_free(cs);
    free(hpath);
    pool_free(pool);
    model_free(m);
    free(buf);
    return rc;
}
