/* Replay: a session's action log (sessions/session.h lists the actions) run
 * as a script, headless — calibrate (analysis/calib), plan edits (through
 * the workbench editor's operations, quant/plan_edit) and presets
 * (quant/preset), evaluate (analysis/qmodel + analysis/eval) —
 * producing a new session with the re-run's plans and results.
 *
 * The input is a session file or a hand-written action list: a JSON array of
 * actions, or an object {"model": "path", "tokenizer": "tok.bin",
 * "actions": [...]}; an action is {"action": NAME, "args": {...}} (also
 * accepted flat: {"action": NAME, key: value, ...}).
 *
 * Check: every evaluation re-run is paired with the recorded result of the
 * same ordinal (the k-th evaluate action with the session's k-th result) and
 * compared key by key:
 *   - at the recorded thread count: bit-identical (every double equal);
 *   - at another thread count (float summation order differs): |Δppl|/ppl
 *     <= 1e-4 (ppl, ppl_base); |Δkld| <= 1e-5 + 1e-3·kld (kld_mean, median,
 *     p90, p99, max); |Δtop1| <= max(1e-3, 1/tokens_scored) (one flipped
 *     near-tie); layer_rel_err |Δ| <= 1e-6 + 1e-3·value;
 *   - always exact: bpw, bytes, chunks, tokens_scored;
 *   - never compared: prefill_tps, decode_tps, seconds (timings).
 * Recorded plans are compared with the replayed plans of the same name,
 * site by site after resolution on the model. */
#ifndef QS_SESSIONS_REPLAY_H
#define QS_SESSIONS_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"
#include "model/model.h"
#include "sessions/session.h"

typedef struct ReplayOpts {
    const char *model_path;  /* another model of the same architecture, or NULL: the script's */
    const char *tokenizer;   /* llama2.c tokenizer for model_path, or NULL */
    int threads;             /* 0: the recorded results' thread count if any, else all CPUs */
    const char *work_dir;    /* where calibrate writes its stats files (required) */
    const char *cache_dir;   /* evaluation reference cache, or NULL (computed in memory) */
    int check;               /* compare the re-run with the recorded results and plans */
    int speed;               /* measure prefill/decode speed in evaluations (default 0) */
    /* Called after each action (may be NULL): index, name and a one-line summary. */
    void (*on_action)(void *user, int64_t i, const char *name, const char *summary);
    void *user;
} ReplayOpts;

/* Fills o with the defaults (everything 0 / NULL). */
void replay_opts_default(ReplayOpts *o);

/* One disagreement found by the check. */
typedef struct ReplayDiff {
    int64_t result;          /* 1-based ordinal of the result, 0 for a plan difference */
    char what[160];          /* "ppl", "layer_rel_err[3]", "plan 'x' site 1.down", "count" ... */
    double recorded, replayed;
    double tol;              /* allowed |Δ| (0: bit-identical), NaN for non-numeric */
    char text[200];          /* readable line for non-numeric differences */
} ReplayDiff;

typedef struct ReplayReport {
    Session *out;            /* the resulting session (owned; replay_report_done frees it) */
    int64_t n_actions, n_run, n_skipped;
    int threads;             /* threads the replay ran with */
    int64_t recorded_threads;/* of the recorded results (0: none) */
    int64_t n_compared;      /* values compared by the check */
    ReplayDiff *diffs;       /* (n_diffs) owned */
    int64_t n_diffs;
    char **notes;            /* (n_notes) owned: skipped actions, model substitutions */
    int64_t n_notes;
} ReplayReport;

/* Runs the script at path under o. Errors (the failing action is named:
 * "s.json: actions[4] (set_cell): plan 'fp16': pattern '7.down': layer 7 does
 * not exist (model has 5 layers)") leave whatever ran in rep->out. A check that finds
 * differences still returns ST_OK: look at rep->n_diffs. Caller releases
 * *rep with replay_report_done (also on error). */
Status replay_run(const char *path, const ReplayOpts *o, ReplayReport *rep, Err *err);

/* Logs the auto_plan action (sessions/session.h) for a plan the planner made
 * from rq (analysis/planner.h) on the session's current statistics: the
 * budget, target, method, formats, groups, pricing, and for a calibrated
 * loss model text_path (rq->text's file; its hash is recorded), ctx and
 * chunks; plan is the name the plan was stored under, predicted_loss the
 * planner's. Replay re-runs the request and stores the plan under that name. */
struct PlannerRequest;
Status replay_log_auto_plan(Session *s, const char *plan, const struct PlannerRequest *rq, const char *text_path,
                            double predicted_loss, Err *err);

/* Frees everything in rep (the output session too) and zeroes it. */
void replay_report_done(ReplayReport *rep);

/* The check's differences as readable text (one line per difference, with
 * both values, Δ and the tolerance), or "" when none; heap, caller frees. */
char *replay_diff_text(const ReplayReport *rep);

/* === The calibrate action, also for tests that calibrate as replay does === */

/* Calibration settings of a `calibrate` action; negative / NULL fields take
 * analysis/calib.h's defaults (seqlen clipped to the model's context). */
typedef struct ReplayCalibArgs {
    int64_t samples, seqlen;
    int64_t seed;
    const char *mode;        /* "random" | "chunks" | NULL */
    int64_t group, topk;
    int sensitivity;         /* -1: default (on) */
    int sens_exact;          /* 1: exact map output errors (default 0: estimated) */
    int no_h;                /* 1: no H (no output errors in the map) */
    int64_t tok_from;        /* windows from the text's tokens [tok_from, n) (CalibParams) */
    int64_t kept;            /* > 0: the recorded run was cancelled after this many sequences;
                                the replay stops there too (and computes no sensitivity map) */
} ReplayCalibArgs;

/* Sets every field of a to "default". */
void replay_calib_args_default(ReplayCalibArgs *a);

/* Calibrates m on text (len bytes, read from text_path, which is recorded)
 * with a, writes the stats file to stats_path and H beside it
 * ("<stats_path>.h64"), and fills *out with the settings actually used
 * (text and stats point at the given strings, borrowed). pool may be NULL.
 * Errors name the action's setting or the file. */
Status replay_calibrate(const Model *m, const char *text_path, const char *text, size_t len,
                        const ReplayCalibArgs *a, const char *stats_path, Pool *pool, SessionCalib *out, Err *err);

#endif
