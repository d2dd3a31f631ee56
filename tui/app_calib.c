/* The statistics side of the workbench: the calibration job, the stats cache
 * and the summaries views show (see app.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analysis/calib.h"
#include "analysis/eval.h"
#include "analysis/sensrun.h"
#include "analysis/spikes.h"
#include "analysis/statsfile.h"
#include "core/alloc.h"
#include "core/atomicfile.h"
#include "core/cache.h"
#include "core/hash.h"
#include "core/mapfile.h"
#include "model/tokenizer.h"
#include "sessions/session.h"
#include "tui/app.h"
#include "tui/vmodel.h"

void app_free_stats(struct CalibStats *cs) { calib_stats_free(cs); }

void app_calib_windows(App *a) {
    free(a->cs_seqs);
    a->cs_seqs = NULL;
    a->cs_nseqs = 0;
    size_t len;
    const char *t = a->cs ? app_calib_text(a, &len, NULL) : NULL;
    Err err;
    err_init(&err);
    if (t && spikes_windows(a->cs, a->m, t, len, &a->cs_seqs, &a->cs_nseqs, &err) != ST_OK) {
        a->cs_seqs = NULL;
        a->cs_nseqs = 0;
    }
}

/* The calibration text: --calib-text when given, else the evaluation text. */
const char *app_calib_text(const App *a, size_t *len, const char **path) {
    if (a->calib_text) {
        *len = a->calib_len;
        if (path) *path = a->calib_path;
        return a->calib_text;
    }
    *len = a->text_len;
    if (path) *path = a->text_path;
    return a->text;
}

/* The cache file for this model + calibration text: CACHE/stats-<model fp>-<text hash>.qss. */
static void stats_path_for(const App *a, char *buf, size_t n) {
    size_t len;
    const char *t = app_calib_text(a, &len, NULL);
    uint64_t th = hash_bytes(0xcbf29ce484222325ull, t, len);
    int64_t from = app_calib_from(a, NULL);
    if (from) th = hash_bytes(th, &from, sizeof from); /* the part past evaluation's chunks: another entry */
    snprintf(buf, n, "%s/stats-%016llx-%016llx.qss", a->cache_dir, (unsigned long long)a->m->fingerprint,
             (unsigned long long)th);
}

/* Records the calibration settings and the stats path in the session. */
static void session_record_calib(App *a, const CalibStats *cs, const char *stats_path, const char *action) {
    if (!a->sess) return;
    SessionCalib sc = {0};
    sc.text = cs->params.text_path;
    sc.text_hash = cs->params.text_hash;
    sc.text_bytes = cs->params.text_bytes;
    sc.samples = cs->params.samples;
    sc.seqlen = cs->params.seqlen;
    sc.seed = cs->params.seed;
    snprintf(sc.mode, sizeof sc.mode, "%s", calib_mode_name(cs->params.mode));
    sc.group = cs->params.group;
    sc.topk = cs->params.topk;
    /* a cancelled sensitivity pass is not recorded as done: partial, with the sites it kept */
    sc.sensitivity = cs->has_sens && sens_map_complete(&cs->sens);
    if (cs->params.sensitivity && !sc.sensitivity && cs->n_seqs == cs->n_planned) {
        sc.sens_sites = cs->n_layers * PROJ_COUNT;
        sc.sens_sites_done = cs->has_sens ? sens_map_sites_done(&cs->sens) : 0;
    }
    sc.kept = cs->n_seqs < cs->n_planned ? cs->n_seqs : 0;
    sc.stats = stats_path;
    Err err;
    err_init(&err);
    if (session_set_calib(a->sess, &sc, &err) != ST_OK) {
        app_msg(a, 1, "session: %s", err.detail);
        return;
    }
    if (strcmp(action, "load_stats") == 0) {
        SessionArg args[] = {SESSION_ARG_STR("stats", stats_path)};
        app_session_action(a, action, args, 1);
        return;
    }
    SessionArg args[16] = {
        SESSION_ARG_STR("text", cs->params.text_path), SESSION_ARG_INT("samples", cs->params.samples),
        SESSION_ARG_INT("seqlen", cs->params.seqlen), SESSION_ARG_INT("seed", (int64_t)cs->params.seed),
        SESSION_ARG_STR("mode", calib_mode_name(cs->params.mode)), SESSION_ARG_INT("group", cs->params.group),
        SESSION_ARG_INT("topk", cs->params.topk), SESSION_ARG_BOOL("sensitivity", sc.sensitivity),
        SESSION_ARG_BOOL("sens_exact", cs->params.sens_exact), SESSION_ARG_BOOL("h", cs->has_h),
        SESSION_ARG_INT("from", cs->params.tok_from), SESSION_ARG_STR("stats", stats_path), SESSION_ARG_INT("threads", pool_size(a->pool)),
    };
    int64_t n = 13;
    /* "kept" only for a cancelled run: replay stops after as many sequences */
    if (sc.kept > 0) args[n++] = SESSION_ARG_INT("kept", sc.kept);
    /* the sites a cancelled sensitivity pass kept */
    if (sc.sens_sites > 0) args[n++] = SESSION_ARG_INT("sensitivity_sites_done", sc.sens_sites_done);
    app_session_action(a, action, args, n);
}

int app_calib_restore(App *a) {
    if (!a->sess) return 0;
    const SessionCalib *sc = session_calib(a->sess);
    if (!sc->present || !sc->stats) return 0;
    Err err;
    err_init(&err);
    CalibStats *cs = NULL;
    if (statsfile_load(sc->stats, &cs, &err) != ST_OK) {
        app_msg(a, 1, "the session's calibration stats are unusable (%s): press c to recalibrate", err.detail);
        return 0;
    }
    char why[256];
    if (statsfile_is_stale(cs, a->m, why, sizeof why)) {
        calib_stats_free(cs);
        app_msg(a, 1, "the session's calibration is for another model (%s): press c to recalibrate", why);
        return 0;
    }
    calib_stats_free(a->cs);
    a->cs = cs;
    app_calib_windows(a);
    snprintf(a->stats_path, sizeof a->stats_path, "%s", sc->stats);
    char sum[160];
    app_calib_summary(a, sum, sizeof sum);
    app_log(a, "load-stats", "%s (%s), from the session", sc->stats, sum);
    return 1;
}

void app_load_cached_stats(App *a) {
    size_t clen;
    if (!app_calib_text(a, &clen, NULL) || !a->cache_dir[0]) return;
    char path[APP_PATH_MAX];
    stats_path_for(a, path, sizeof path);
    struct stat st;
    if (stat(path, &st) != 0) return;
    Err err;
    err_init(&err);
    CalibStats *cs = NULL;
    if (statsfile_load(path, &cs, &err) != ST_OK) {
        app_msg(a, 1, "cached calibration unreadable (%s): press c to recalibrate", err.detail);
        return;
    }
    char why[256];
    if (statsfile_is_stale(cs, a->m, why, sizeof why)) {
        calib_stats_free(cs);
        app_msg(a, 1, "cached calibration is stale (%s): press c to recalibrate", why);
        return;
    }
    calib_stats_free(a->cs);
    a->cs = cs;
    app_calib_windows(a);
    snprintf(a->stats_path, sizeof a->stats_path, "%s", path);
    char sum[160];
    app_calib_summary(a, sum, sizeof sum);
    app_log(a, "load-stats", "%s (%s)", path, sum);
    if (app_calib_partial(a))
        app_msg(a, 1, "calibration loaded from the cache is PARTIAL (%s): c %s", sum,
                cs->n_seqs < cs->n_planned ? "recalibrates" : "resumes the sensitivity map");
    else
        app_msg(a, 0, "calibration loaded from the cache: %s", sum);
    session_record_calib(a, cs, path, "load_stats");
}

void app_calib_summary(const App *a, char *buf, size_t n) {
    const CalibStats *cs = a->cs;
    if (!cs) {
        buf[0] = 0;
        return;
    }
    char seqs[48] = "";
    if (cs->n_seqs < cs->n_planned) snprintf(seqs, sizeof seqs, " of %lld", (long long)cs->n_planned);
    /* PARTIAL first, so a narrow screen cannot cut it off */
    char sens[64] = "";
    if (cs->has_sens && sens_map_complete(&cs->sens))
        snprintf(sens, sizeof sens, ", sensitivity");
    else if (cs->params.sensitivity && cs->n_seqs == cs->n_planned)
        snprintf(sens, sizeof sens, ", sensitivity %lld/%lld sites (c resumes)",
                 (long long)(cs->has_sens ? sens_map_sites_done(&cs->sens) : 0), (long long)(cs->n_layers * PROJ_COUNT));
    char part[48] = "";
    if (cs->params.tok_from) snprintf(part, sizeof part, ", from token %lld", (long long)cs->params.tok_from);
    snprintf(buf, n, "%s%lld%s seqs x %lld tokens, %s seed %llu%s%s", app_calib_partial(a) ? "PARTIAL (cancelled): " : "",
             (long long)cs->n_seqs, seqs, (long long)cs->params.seqlen, calib_mode_name(cs->params.mode),
             (unsigned long long)cs->params.seed, sens, part);
}

int app_calib_partial(const App *a) {
    const CalibStats *cs = a->cs;
    return cs && (cs->n_seqs < cs->n_planned ||
                  (cs->params.sensitivity && !(cs->has_sens && sens_map_complete(&cs->sens))));
}

int app_spike_sites(const App *a, int k, char (*sites)[16]) {
    if (!a->cs) return 0;
    Err err;
    err_init(&err);
    return vm_spike_sites(a->cs, k, sites, &err);
}

/* === The calibration job === */

typedef struct CalibJob {
    const Model *m;          /* borrowed: the app outlives its jobs */
    const char *text;
    size_t len;
    Pool *pool;
    CalibParams p;
    char path[APP_PATH_MAX];
    char *tmp_h;             /* H is written here; calib_commit puts it in place with the stats */
    int keep_partial;        /* no calibration before: a cancelled one is kept (with what it saw) */
    int resume_map;          /* the stats at path are this calibration with a partial map: run only the
                                missing sites */
    int map_stopped;         /* the map pass was cancelled (its finished sites are kept) */
    CalibStats *out;
    double seconds;
} CalibJob;

/* H goes to a side file and the stats are saved only when the run is kept, so
 * cancelling a recalibration leaves the previous stats and H untouched. The
 * sensitivity map then runs as its own stage on the committed pair, saving
 * finished sites as it goes: cancelling it keeps the new calibration with a
 * partial map, which c resumes. */
static Status calib_job_run(void *arg, Progress *prog, Err *err) {
    CalibJob *j = arg;
    double t0 = jobs_now();
    /* one calibration per cache entry at a time: a second window on the same
     * model and text would otherwise write the same stats and H */
    int lock = -1;
    Status st = afile_lock(j->path, 0, &lock, err);
    if (st == ST_ERR_STATE)
        return err_set(err, ST_ERR_STATE, "another qscope is calibrating this model on this text (%s.lock); "
                       "wait for it to finish, then press c again", j->path);
    if (st != ST_OK) return st;
    if (j->resume_map) {
        /* a copy of the stats the views show, so the map can grow off the UI thread */
        char why[256];
        st = statsfile_load(j->path, &j->out, err);
        if (st == ST_OK && !sensrun_resumable(j->out, j->m, &j->p, why, sizeof why))
            st = err_set(err, ST_ERR_STATE, "%s: cannot resume its sensitivity map: %s", j->path, why);
    } else {
        CalibParams pc = j->p;
        pc.sensitivity = 0;
        st = calib_run(j->m, j->text, j->len, &pc, j->tmp_h, j->pool, prog, &j->out, err);
        if (st == ST_OK) j->out->params.sensitivity = j->p.sensitivity;
        if (st == ST_OK && progress_cancelled(prog) && !j->keep_partial) {
            st = err_set(err, ST_ERR_CANCELLED, "stopped after %lld of %lld sequences; the previous calibration is kept",
                         (long long)j->out->n_seqs, (long long)j->out->n_planned);
            calib_stats_free(j->out);
            j->out = NULL;
        }
        if (st != ST_OK && j->tmp_h) unlink(j->tmp_h);
        if (st == ST_OK) {
            progress_begin(prog, "save stats", 1);
            st = calib_commit(j->out, j->tmp_h, j->path, err);
        }
    }
    if (st == ST_OK && j->p.sensitivity && j->out->n_seqs == j->out->n_planned && !progress_cancelled(prog)) {
        SensOpts so;
        sens_opts_default(&so);
        so.exact = j->p.sens_exact;
        st = sensrun_map(j->m, j->out, j->path, &so, SENSRUN_SAVE_SECS, j->pool, prog, err);
        if (st == ST_ERR_CANCELLED) {
            j->map_stopped = 1;
            st = ST_OK;
        }
    }
    afile_unlock(lock);
    j->seconds = jobs_now() - t0;
    return st;
}

static void calib_job_finish(void *arg, Status st, const Err *err, void *ctx) {
    CalibJob *j = arg;
    App *a = ctx;
    if (st == ST_ERR_CANCELLED) {
        app_msg(a, 0, "calibration cancelled: %s", err->detail);
        app_log(a, "calibrate", "cancelled: %s", err->detail);
        return;
    }
    if (st != ST_OK) {
        app_msg(a, 1, "calibration failed: %s: %s", status_message(st), err->detail);
        app_log(a, "calibrate", "failed: %s: %s", status_message(st), err->detail);
        return;
    }
    calib_stats_free(a->cs);
    a->cs = j->out;
    app_calib_windows(a);
    j->out = NULL;
    a->calib_stale = 0;
    snprintf(a->stats_path, sizeof a->stats_path, "%s", j->path);
    char sum[160];
    app_calib_summary(a, sum, sizeof sum);
    if (j->map_stopped)
        app_msg(a, 1, "sensitivity map cancelled after %.1f s, finished sites kept (c resumes): %s", j->seconds, sum);
    else if (app_calib_partial(a))
        app_msg(a, 1, "calibration cancelled after %.1f s, partial result kept: %s", j->seconds, sum);
    else if (j->resume_map)
        app_msg(a, 0, "sensitivity map resumed and completed in %.1f s: %s", j->seconds, sum);
    else if (calib_windows_repeat(a->cs->text_tokens, &j->p))
        /* the warning first: a narrow message bar cuts the end */
        app_msg(a, 1, "calibrated in %.1f s, windows repeat (%lld x %lld tokens > the %s's %lld): %s", j->seconds,
                (long long)j->p.samples, (long long)j->p.seqlen, j->p.tok_from ? "part" : "text",
                (long long)a->cs->text_tokens, sum);
    else
        app_msg(a, 0, "calibrated in %.1f s: %s", j->seconds, sum);
    app_log(a, "calibrate", "text=%s samples=%lld seqlen=%lld seed=%llu mode=%s group=%lld -> %s in %.1f s, stats %s",
            j->p.text_path, (long long)j->p.samples, (long long)j->p.seqlen, (unsigned long long)j->p.seed,
            calib_mode_name(j->p.mode), (long long)j->p.group, sum, j->seconds, j->path);
    session_record_calib(a, a->cs, j->path, "calibrate");
}

static void calib_job_free(void *arg) {
    CalibJob *j = arg;
    if (!j) return;
    calib_stats_free(j->out);
    free(j->tmp_h);
    free(j);
}

void app_calibrate(App *a) {
    size_t clen;
    const char *cpath = NULL, *ctext = app_calib_text(a, &clen, &cpath);
    if (!ctext) {
        app_msg(a, 1, "no calibration text: start with --text FILE");
        return;
    }
    CalibJob *j = core_calloc(1, sizeof *j);
    if (!j) {
        app_msg(a, 1, "out of memory");
        return;
    }
    j->m = a->m;
    j->text = ctext;
    j->len = clen;
    j->pool = a->pool;
    calib_params_default(&j->p);
    const CalibSettings *c = &a->cset; /* the settings screen's (C), from calib's defaults and the options */
    j->p.samples = c->samples;
    j->p.seqlen = c->seqlen;
    j->p.seed = (uint64_t)c->seed;
    j->p.mode = (CalibMode)c->mode;
    j->p.group = c->group;
    j->p.topk = (int32_t)c->topk;
    j->p.sensitivity = c->sensitivity;
    j->p.sens_exact = c->sens_exact;
    j->p.tok_from = app_calib_from(a, NULL);
    snprintf(j->p.text_path, sizeof j->p.text_path, "%s", cpath);
    Err perr;
    err_init(&perr);
    if (calib_params_check(&j->p, "calibration settings (C)", &perr) != ST_OK) {
        free(j);
        app_msg(a, 1, "%s", perr.detail);
        return;
    }
    stats_path_for(a, j->path, sizeof j->path);
    j->tmp_h = c->with_h ? calib_h_temp(j->path) : NULL;
    if (!j->tmp_h && c->with_h) {
        free(j);
        app_msg(a, 1, "out of memory");
        return;
    }
    j->keep_partial = a->cs == NULL;
    /* A first calibration keeps what it saw when cancelled, which only the
     * per-sample pipeline can do (the streamed one completes no sequence
     * before the last layer); it costs nothing extra while the weights stay
     * in the page cache, so the layer-streamed pipeline is kept for models
     * above a quarter of physical memory (and for every recalibration). */
    if (j->keep_partial && a->m->file_bytes <= hstore_ram_limit()) j->p.pipeline = CALIB_PER_SAMPLE;
    /* the stats in place are this calibration with a partial map: only the missing sites run */
    j->p.text_hash = hash_bytes(HASH_SEED, ctext, clen);
    j->p.text_bytes = (int64_t)clen;
    j->resume_map = a->cs && strcmp(a->stats_path, j->path) == 0 && a->cs->has_h == c->with_h &&
                    sensrun_resumable(a->cs, a->m, &j->p, NULL, 0);
    size_t cache_now = cache_total_bytes(a->cache_dir); /* before the job starts writing H */
    Err err;
    err_init(&err);
    int64_t done0 = j->resume_map && a->cs->has_sens ? sens_map_sites_done(&a->cs->sens) : 0;
    if (!jobs_submit(&a->jobs, j->resume_map ? "sensitivity" : "calibrate", calib_job_run, calib_job_finish,
                     calib_job_free, j, &err)) {
        app_msg(a, 1, "%s", err.detail);
        return;
    }
    if (j->resume_map) {
        app_msg(a, 0, "sensitivity map resumed: %lld of %lld sites done, the rest queued", (long long)done0,
                (long long)(a->cs->n_layers * PROJ_COUNT));
        return;
    }
    int64_t ctx = a->m->cfg.max_seq_len;
    /* H is the big file (GBs on a 7B model): say what it adds to the cache before it is written */
    const char *tb = strrchr(cpath, '/');
    app_msg(a, 0, "calibration queued: H adds %.1f MB to the cache (now %.1f MB; qscope cache list); %lld x %lld tokens of %s%s",
            j->tmp_h ? calib_h_bytes(a->m) / 1e6 : 0.0, cache_now / 1e6, (long long)j->p.samples,
            (long long)j->p.seqlen, tb ? tb + 1 : cpath,
            ctx > 0 && j->p.seqlen > ctx ? " (warning: longer than the model's context; accepted, as in calib)" : "");
}

/* === The calibration settings screen (C) === */

/* The settings of action i of the session (calibrate or calib_settings). */
static void cset_from_action(App *a, int64_t i) {
    CalibSettings *c = &a->cset;
    double v;
    if (session_action_arg_num(a->sess, i, "samples", &v) && v >= CALIB_SAMPLES_MIN) c->samples = (int64_t)v;
    if (session_action_arg_num(a->sess, i, "seqlen", &v) && v >= CALIB_SEQLEN_MIN) c->seqlen = (int64_t)v;
    if (session_action_arg_num(a->sess, i, "seed", &v) && v >= 0) c->seed = (int64_t)v;
    if (session_action_arg_num(a->sess, i, "group", &v) && v >= CALIB_GROUP_MIN) c->group = (int64_t)v;
    if (session_action_arg_num(a->sess, i, "topk", &v) && v >= CALIB_TOPK_MIN) c->topk = (int64_t)v;
    if (session_action_arg_num(a->sess, i, "sensitivity", &v)) c->sensitivity = v != 0;
    if (session_action_arg_num(a->sess, i, "sens_exact", &v)) c->sens_exact = v != 0;
    if (session_action_arg_num(a->sess, i, "h", &v)) c->with_h = v != 0;
    const char *mode = session_action_arg_str(a->sess, i, "mode");
    if (mode && calib_mode_parse(mode) >= 0) c->mode = calib_mode_parse(mode);
    /* the text: when it is not the evaluation text and the file is still there */
    const char *t = session_action_arg_str(a->sess, i, "text");
    struct stat st;
    if (t && !a->opts.calib_text_path && strcmp(t, a->text_path) != 0 && stat(t, &st) == 0) {
        char *buf = NULL;
        size_t len = 0;
        Err err;
        err_init(&err);
        if (file_read_all(t, (size_t)1 << 30, &buf, &len, &err) == ST_OK) {
            free(a->calib_text);
            a->calib_text = buf;
            a->calib_len = len;
            snprintf(a->calib_path, sizeof a->calib_path, "%s", t);
            c->text_tokens = -1;
        }
    }
}

void app_calibset_init(App *a) {
    CalibParams p;
    calib_params_default(&p);
    CalibSettings *c = &a->cset;
    c->samples = a->opts.samples > 0 ? a->opts.samples : p.samples;
    c->seqlen = a->opts.seqlen > 0 ? a->opts.seqlen : p.seqlen;
    /* The CLI's defaults: 256, or the model's context if smaller; a longer
     * --seqlen given by the user is kept (with a warning), as in `calib`. */
    if (a->opts.seqlen <= 0 && a->m->cfg.max_seq_len > 0 && c->seqlen > a->m->cfg.max_seq_len)
        c->seqlen = a->m->cfg.max_seq_len;
    c->seed = (int64_t)p.seed;
    c->mode = (int)p.mode;
    c->group = p.group;
    c->topk = p.topk;
    c->sensitivity = p.sensitivity;
    c->sens_exact = p.sens_exact;
    c->with_h = 1;
    c->text_tokens = -1;
    if (!a->sess) return;
    for (int64_t i = session_n_actions(a->sess) - 1; i >= 0; i--) {
        const char *n = session_action(a->sess, i)->name;
        if (strcmp(n, "calibrate") == 0 || strcmp(n, "calib_settings") == 0) {
            cset_from_action(a, i);
            break;
        }
    }
}

/* Tokens of text (as calib_run counts them: no BOS), or -1. */
static int64_t count_tokens(const App *a, const char *t, size_t len) {
    if (!t || !a->m->tok) return -1;
    int32_t *toks = NULL;
    int64_t n = -1;
    Err err;
    err_init(&err);
    /* a second at most on a few-MB text */
    if (tokenizer_encode(a->m->tok, t, len, 0, &toks, &n, &err) != ST_OK) n = -1;
    free(toks);
    return n;
}

/* Tokens of the calibration text, counted once per text. */
static int64_t calib_text_tokens(App *a) {
    size_t len;
    const char *t = app_calib_text(a, &len, NULL);
    if (a->cset.text_tokens < 0) a->cset.text_tokens = count_tokens(a, t, len);
    return a->cset.text_tokens;
}

/* The split follows the command line alone (--text without --calib-text or
 * --chunks), so a reopened session evaluates as it did whatever text its
 * settings screen last chose. */
void app_split_init(App *a) {
    a->split_chunks = 0;
    EvalOpts o;
    app_eval_opts(a, &o);
    int64_t n = -1;
    if (!a->opts.calib_text_path && a->text && a->opts.chunks <= 0 &&
        (n = count_tokens(a, a->text, a->text_len)) >= 0)
        a->split_chunks = calib_split_eval_chunks(n, o.n_ctx);
    const char *tb = strrchr(a->text_path, '/');
    char nch[64] = "all";
    if (a->split_chunks)
        snprintf(nch, sizeof nch, "%lld of %lld", (long long)a->split_chunks, (long long)((n + 1) / o.n_ctx));
    else if (o.max_chunks)
        snprintf(nch, sizeof nch, "at most %lld", (long long)o.max_chunks);
    char over[64] = ""; /* one context policy: longer than declared is accepted, with a warning */
    if (a->m->cfg.max_seq_len > 0 && o.n_ctx > a->m->cfg.max_seq_len)
        snprintf(over, sizeof over, " (warning: above the model's context %lld)", (long long)a->m->cfg.max_seq_len);
    snprintf(a->eval_settings, sizeof a->eval_settings, "ctx %lld%s, %s chunks of %s%s", (long long)o.n_ctx, over, nch,
             tb ? tb + 1 : a->text_path, a->split_chunks ? " (the rest calibrates)" : "");
    if (o.numerics == NUMERICS_LLAMACPP) {
        size_t used = strlen(a->eval_settings);
        snprintf(a->eval_settings + used, sizeof a->eval_settings - used, ", llama.cpp numerics");
    }
}

int64_t app_calib_from(const App *a, int *overlaps) {
    if (overlaps) *overlaps = 0;
    if (a->calib_text || !a->text) return 0;
    EvalOpts o;
    app_eval_opts(a, &o);
    if (o.max_chunks > 0) return calib_part_from(o.n_ctx, o.max_chunks);
    if (overlaps) *overlaps = 1; /* evaluation reads every chunk: no part is left */
    return 0;
}

void app_calibset_open(App *a) {
    a->cset.open = 1;
    calib_text_tokens(a);
}

static const char *const CS_LABELS[CS_COUNT] = {
    "calibration text", "samples (sequences)", "sequence length (tokens)", "seed", "mode", "group (map cells)",
    "spikes kept (top-k)", "sensitivity map", "map output errors", "H = X'X",
};

const char *app_calibset_field(const App *a, int k, char *label, size_t ln, char *val, size_t vn) {
    const CalibSettings *c = &a->cset;
    snprintf(label, ln, "%s", (unsigned)k < CS_COUNT ? CS_LABELS[k] : "?");
    switch (k) {
    case CS_TEXT: {
        int over;
        int64_t from = app_calib_from(a, &over);
        const char *tb = strrchr(a->text_path, '/');
        tb = tb ? tb + 1 : a->text_path[0] ? a->text_path : "none";
        if (a->calib_path[0]) snprintf(val, vn, "%s", a->calib_path);
        else if (from > 0 && c->text_tokens >= 0 && from + c->seqlen > c->text_tokens)
            snprintf(val, vn, "%s: no sequence fits past the %lld tokens evaluation reads (fewer --chunks)", tb,
                     (long long)from);
        else if (from > 0 && c->text_tokens >= 0)
            snprintf(val, vn, "%s, tokens %lld-%lld (evaluation reads 0-%lld)", tb, (long long)from,
                     (long long)(c->text_tokens - 1), (long long)(from - 1));
        else if (from > 0) snprintf(val, vn, "%s, tokens from %lld (evaluation reads 0-%lld)", tb, (long long)from, (long long)(from - 1));
        else snprintf(val, vn, "%s, all of it%s", tb, over ? " (evaluation reads it all)" : "");
        return "Enter: a path ('' = the evaluation text)";
    }
    case CS_SAMPLES: snprintf(val, vn, "%lld", (long long)c->samples); return "+/- doubles / halves, Enter types";
    case CS_SEQLEN: {
        int64_t ctx = a->m->cfg.max_seq_len;
        snprintf(val, vn, "%lld%s", (long long)c->seqlen, ctx > 0 && c->seqlen > ctx ? " (above the model's context)" : "");
        return "+/- doubles / halves, Enter types";
    }
    case CS_SEED: snprintf(val, vn, "%lld", (long long)c->seed); return "random offsets; +/- steps, Enter types";
    case CS_MODE:
        snprintf(val, vn, "%s", calib_mode_name((CalibMode)c->mode));
        return c->mode == CALIB_RANDOM ? "seeded random windows" : "consecutive windows from the start";
    case CS_GROUP: snprintf(val, vn, "%lld", (long long)c->group); return "group size of the map's grouped cells";
    case CS_TOPK: snprintf(val, vn, "%lld", (long long)c->topk); return "per layer and tap";
    case CS_SENS: snprintf(val, vn, "%s", c->sensitivity ? "yes" : "no"); return "the Sensitivity view, A";
    case CS_EXACT:
        snprintf(val, vn, "%s", c->sens_exact ? "exact" : "estimated");
        return c->sens_exact ? "a GEMM per cell" : "closed-form diagonal + row subsample, s.e. <= 1%";
    default:
        snprintf(val, vn, "%s", c->with_h ? "yes" : "no");
        return c->with_h ? "GPTQ, AdaDim, AQLM, output errors need it" : "no GPTQ/AdaDim/AQLM, no output errors";
    }
}

/* Records the settings in the session, for the record (replay skips it: the
 * next calibrate carries them) and for a reopen. */
static void cset_record(App *a) {
    const CalibSettings *c = &a->cset;
    SessionArg args[] = {
        SESSION_ARG_STR("text", a->calib_path[0] ? a->calib_path : a->text_path),
        SESSION_ARG_INT("samples", c->samples), SESSION_ARG_INT("seqlen", c->seqlen), SESSION_ARG_INT("seed", c->seed),
        SESSION_ARG_STR("mode", calib_mode_name((CalibMode)c->mode)), SESSION_ARG_INT("group", c->group),
        SESSION_ARG_INT("topk", c->topk), SESSION_ARG_BOOL("sensitivity", c->sensitivity),
        SESSION_ARG_BOOL("sens_exact", c->sens_exact), SESSION_ARG_BOOL("h", c->with_h),
    };
    app_session_action(a, "calib_settings", args, (int64_t)(sizeof args / sizeof args[0]));
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

void app_calibset_step(App *a, int k, int dir) {
    CalibSettings *c = &a->cset;
    switch (k) {
    case CS_TEXT: app_calibset_enter(a, k); return;
    case CS_SAMPLES: c->samples = clamp64(dir > 0 ? c->samples * 2 : c->samples / 2, CALIB_SAMPLES_MIN, CALIB_SAMPLES_MAX); break;
    case CS_SEQLEN: c->seqlen = clamp64(dir > 0 ? c->seqlen * 2 : c->seqlen / 2, CALIB_SEQLEN_MIN, CALIB_SEQLEN_MAX); break;
    case CS_SEED: c->seed = clamp64(c->seed + dir, 0, (int64_t)1 << 52); break;
    case CS_MODE: c->mode = c->mode == CALIB_RANDOM ? CALIB_CHUNKS : CALIB_RANDOM; break;
    case CS_GROUP: c->group = clamp64(dir > 0 ? c->group * 2 : c->group / 2, CALIB_GROUP_MIN, CALIB_GROUP_MAX); break;
    case CS_TOPK: c->topk = clamp64(dir > 0 ? c->topk * 2 : c->topk / 2, CALIB_TOPK_MIN, CALIB_TOPK_MAX); break;
    case CS_SENS: c->sensitivity = !c->sensitivity; break;
    case CS_EXACT: c->sens_exact = !c->sens_exact; break;
    default: c->with_h = !c->with_h; break;
    }
    char label[48], val[160];
    app_calibset_field(a, k, label, sizeof label, val, sizeof val);
    app_msg(a, 0, "calibration %s: %s (c calibrates with it)", label, val);
    cset_record(a);
}

void app_calibset_enter(App *a, int k) {
    char label[48], val[APP_PATH_MAX], prompt[96];
    app_calibset_field(a, k, label, sizeof label, val, sizeof val);
    if (k == CS_TEXT) {
        if (jobs_busy(&a->jobs)) { /* a calibration job reads the text it was given */
            app_msg(a, 1, "the calibration text cannot change while a job runs: wait or Esc cancels it");
            return;
        }
        app_prompt_open(a, PROMPT_CALIB_TEXT, "calibration text ('' = the evaluation text):", a->calib_path);
        return;
    }
    if (k == CS_MODE || k == CS_SENS || k == CS_EXACT || k == CS_H) {
        app_calibset_step(a, k, 1);
        return;
    }
    snprintf(prompt, sizeof prompt, "%s:", label);
    app_prompt_open(a, PROMPT_CALIB_NUM, prompt, val);
}

void app_calibset_typed(App *a, int kind, const char *text) {
    if (kind == PROMPT_CALIB_TEXT) {
        if (jobs_busy(&a->jobs)) {
            app_msg(a, 1, "the calibration text cannot change while a job runs: wait or Esc cancels it");
            return;
        }
        if (!text[0] || (a->text_path[0] && strcmp(text, a->text_path) == 0)) {
            free(a->calib_text);
            a->calib_text = NULL;
            a->calib_len = 0;
            a->calib_path[0] = 0;
            a->cset.text_tokens = -1;
            app_calibset_open(a);
            app_msg(a, 0, "calibration text: the evaluation text (c calibrates on it)");
        } else {
            char *buf = NULL;
            size_t len = 0;
            Err err;
            err_init(&err);
            if (file_read_all(text, (size_t)1 << 30, &buf, &len, &err) != ST_OK) {
                app_msg(a, 1, "calibration text not changed: %s", err.detail);
                return;
            }
            free(a->calib_text);
            a->calib_text = buf;
            a->calib_len = len;
            snprintf(a->calib_path, sizeof a->calib_path, "%s", text);
            a->cset.text_tokens = -1;
            app_calibset_open(a);
            app_msg(a, 0, "calibration text: %s (%.1f kB; c calibrates on it)", text, len / 1e3);
        }
        cset_record(a);
        return;
    }
    CalibSettings *c = &a->cset;
    int k = c->sel;
    static const int64_t lo[CS_COUNT] = {0, CALIB_SAMPLES_MIN, CALIB_SEQLEN_MIN, 0, 0, CALIB_GROUP_MIN, CALIB_TOPK_MIN};
    static const int64_t hi[CS_COUNT] = {0, CALIB_SAMPLES_MAX, CALIB_SEQLEN_MAX, (int64_t)1 << 52, 0, CALIB_GROUP_MAX,
                                         CALIB_TOPK_MAX};
    char *end;
    long long v = strtoll(text, &end, 10);
    while (*end == ' ') end++;
    if (k < CS_SAMPLES || k > CS_TOPK || k == CS_MODE) return;
    if (end == text || *end || v < lo[k] || v > hi[k]) {
        app_msg(a, 1, "'%s': %s is a whole number in [%lld, %lld]", text, CS_LABELS[k], (long long)lo[k], (long long)hi[k]);
        return;
    }
    int64_t *f = k == CS_SAMPLES ? &c->samples : k == CS_SEQLEN ? &c->seqlen : k == CS_SEED ? &c->seed
               : k == CS_GROUP   ? &c->group   : &c->topk;
    *f = v;
    app_msg(a, 0, "calibration %s: %lld (c calibrates with it)", CS_LABELS[k], v);
    cset_record(a);
}
