/* A session: a piece of work worth keeping — which model, which calibration,
 * the plans tried, what each scored, the TUI's view state, and the action
 * log that got there (which doubles as a replayable script, see
 * sessions/replay.h). Stored as JSON (schema_version 1):
 *
 * {
 *   "schema_version": 1,
 *   "kind": "qscope-session",
 *   "created": "2026-11-22T08:00:00Z",
 *   "build": "qscope 2cafcea",             build version that wrote it first
 *   "model": {"path": "m.gguf", "tokenizer": null, "fingerprint": "0123456789abcdef",
 *             "file_bytes": 1185280, "arch": "llama", "n_layers": 5, "dim": 64,
 *             "hidden_dim": 172, "n_heads": 8, "n_kv_heads": 4, "vocab_size": 512,
 *             "tied_embeddings": false},
 *   "calibration": {"text": "t.txt", "text_hash": "…16 hex…", "text_bytes": 3804,
 *                   "samples": 4, "seqlen": 64, "seed": 1, "mode": "random",
 *                   "group": 32, "topk": 16, "sensitivity": true, "stats": "s.stats"},
 *   "current_plan": "int4-rtn",
 *   "plans": [{"name": "int4-rtn", "plan": PLAN}, ...],     PLAN: sessions/plan_json.h
 *   "results": [{"id": 1, "plan": "int4-rtn", "time": "…", "build": "qscope …",
 *                "threads": 2, "settings": {"text": "t.txt", "text_hash": "…",
 *                "ctx": 64, "chunks": 2}, "plan_json": PLAN, "metrics": {EVAL}}, ...],
 *                EVAL: the keys of `qscope eval --json` (ppl, ppl_base, kld_mean, …),
 *                with a quantized model also "site_werr": ‖ΔW‖²/‖W‖² per projection
 *                [layer * 7 + proj]; plan_json: the plan as evaluated (a plan of
 *                that name may be edited afterwards), absent in older sessions
 *   "view": {...},                          opaque to this module (the TUI's)
 *   "actions": [{"time": "…", "action": "apply_preset", "args": {...}}, ...]
 * }
 *
 * The JSON tree is the session's source of truth: everything read is kept,
 * so unknown keys at any depth survive a load/save, and saving what was
 * loaded gives the same bytes. Fingerprints and text hashes are 16 hex
 * digits (a JSON number would lose bits above 2^53).
 *
 * Action names and arguments (what the TUI records and replay executes):
 *   calibrate     {text, samples, seqlen, seed, mode, group, topk, sensitivity, sens_exact, h,
 *                  from, stats, threads}  sens_exact: exact map output errors (default estimated);
 *                                      from: windows from the text's tokens [from, n) only
 *                                      (the part evaluation does not read; default 0);
 *                                      h false: no H (no output errors, no GPTQ)
 *   calib_settings {the calibrate keys}  the workbench's settings screen changed them (recorded,
 *                                      skipped by replay: the next calibrate carries them)
 *   load_stats    {stats}                   reuse a stats cache (replay: used when it
 *                                            matches the model, else an error)
 *   apply_preset  {preset, plan, group, sym, spike_k | spikes[], spike_format, seed,
 *                  random_k, act_static, act_skip_first, alpha, fix_groups}
 *                 plan = name of the resulting plan (default: the preset's name)
 *   set_rule      {plan, pattern | patterns[], fields[], entry, edit}
 *                 entry: a plan_json ENTRY; fields: "format" "group" "method" "act" "smooth";
 *                 applied to the pattern's sites by the editor's operations
 *                 (quant/plan_edit.h: its fallbacks and consistency) and stored in the
 *                 editor's form. Consecutive set_rule / set_cell actions with the
 *                 same integer "edit" id (else the same "time") are one undo step;
 *                 replay's output gives every one an id (time stamps repeat within a second)
 *   set_cell      {plan, layer, proj, fields[], entry}   = set_rule on "layer.proj"
 *   remove_rule   {plan, index}             0-based rule index of the plan as stored
 *   set_plan      {plan, json[, result]}    replace a plan wholesale and make it current (loaded
 *                                            from a file, or a result's plan: "result" = its id)
 *   undo, redo    {}                        the editor's (current plan's) history
 *   rename_plan   {from, to}
 *   copy_plan     {from, to}
 *   delete_plan   {plan}
 *   select_plan   {plan}                    makes it the current plan
 *   evaluate      {plan, text, ctx, chunks, threads}  appends one result; with
 *                 {gguf, text, ctx, chunks, threads} the quantized GGUF file (a shipped model of
 *                 the same weights: qscope export's, llama-quantize's) instead of a plan
 *   auto_plan     {plan, bpw | bytes, target, method, formats[], groups[], price, oerr_rows,
 *                  speed, text, ctx, chunks, predicted_loss}   the planner (analysis/planner.h's
 *                 PlannerRequest) on the current statistics; with text its loss model is
 *                 calibrated on it (site scales measured); speed (min decode tokens/s) reads this
 *                 machine's speed table, so such a plan replays the same only on the same
 *                 machine and thread count; the plan is stored and made current
 * "plan" defaults to the current plan. Anything else (view moves, notes)
 * is recorded and skipped by replay.
 *
 * Nothing here touches a Model or a Plan's meaning beyond its JSON form:
 * this header includes neither quant/plan.h nor analysis/calib.h, so code
 * that only reads or writes session files does not depend on them. */
#ifndef QS_SESSIONS_SESSION_H
#define QS_SESSIONS_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define SESSION_SCHEMA_VERSION 1

struct cJSON;
struct Plan;
struct PlanEntry;
struct Model;

typedef struct Session Session;

/* The model a session was made on. */
typedef struct SessionModelRef {
    const char *path;        /* as given (borrowed from the session) */
    const char *tokenizer;   /* llama2.c tokenizer path, or NULL */
    uint64_t fingerprint;    /* Model.fingerprint */
    int64_t file_bytes;      /* Model.file_bytes */
    char arch[32];
    int64_t n_layers, dim, hidden_dim, n_heads, n_kv_heads, vocab_size;
    int64_t head_dim;        /* 0 in sessions saved before it was recorded: read as dim / n_heads */
    int tied_embeddings;     /* output head shares the embedding */
} SessionModelRef;

/* Calibration settings (present = 0 until a calibration was recorded). */
typedef struct SessionCalib {
    int present;
    const char *text;        /* text path as given (borrowed), or NULL */
    uint64_t text_hash;      /* FNV-1a of the text bytes */
    int64_t text_bytes;
    int64_t samples, seqlen;
    uint64_t seed;
    char mode[16];           /* "random" | "chunks" */
    int64_t group, topk;
    int sensitivity;         /* the sensitivity map was computed (not merely asked for) */
    int64_t sens_sites;      /* > 0 with sens_sites_done < sens_sites: the map is partial (a cancelled
                                pass kept sens_sites_done of sens_sites sites; resumable) */
    int64_t sens_sites_done;
    int64_t kept;            /* > 0: cancelled after `kept` of `samples` sequences (partial) */
    const char *stats;       /* stats cache path (borrowed), or NULL */
} SessionCalib;

/* One evaluation result, as a typed copy of its JSON (NaN / 0 when absent). */
typedef struct SessionResult {
    int64_t id;              /* 1, 2, ... */
    const char *plan;        /* plan name (borrowed) */
    const char *time;        /* ISO 8601 UTC (borrowed) */
    const char *build;       /* build version that produced it (borrowed) */
    int64_t threads;
    const char *text;        /* evaluation text path (borrowed) */
    uint64_t text_hash;
    int64_t ctx, chunks;
    const char *gguf;        /* a quantized GGUF evaluated in place of a plan (path as given,
                                borrowed), or NULL */
    double ppl, ppl_base, kld_mean, kld_median, kld_p90, kld_p99, kld_max, top1_agree, bpw;
    int64_t bytes, tokens_scored;
    double prefill_tps, decode_tps, seconds;
    double quantize_seconds; /* wall time building the quantized model (NaN when not recorded) */
    int cancelled;
} SessionResult;

/* One logged action (borrowed strings). */
typedef struct SessionAction {
    const char *name;        /* "calibrate", "set_cell", ... */
    const char *time;        /* ISO 8601 UTC */
} SessionAction;

/* An action argument for session_log_action (no cJSON needed by callers). */
typedef enum { SARG_STR, SARG_NUM, SARG_INT, SARG_BOOL, SARG_JSON, SARG_STRS } SessionArgType;
typedef struct SessionArg {
    const char *key;
    SessionArgType type;
    const char *s;           /* SARG_STR (NULL writes null); SARG_JSON: JSON text */
    double num;              /* SARG_NUM */
    int64_t i;               /* SARG_INT, SARG_BOOL (0/1); SARG_STRS: count */
    const char *const *strs; /* SARG_STRS: (i) strings */
} SessionArg;

#define SESSION_ARG_STR(k, v) ((SessionArg){.key = (k), .type = SARG_STR, .s = (v)})
#define SESSION_ARG_NUM(k, v) ((SessionArg){.key = (k), .type = SARG_NUM, .num = (v)})
#define SESSION_ARG_INT(k, v) ((SessionArg){.key = (k), .type = SARG_INT, .i = (v)})
#define SESSION_ARG_BOOL(k, v) ((SessionArg){.key = (k), .type = SARG_BOOL, .i = !!(v)})
#define SESSION_ARG_JSON(k, v) ((SessionArg){.key = (k), .type = SARG_JSON, .s = (v)})
#define SESSION_ARG_STRS(k, v, n) ((SessionArg){.key = (k), .type = SARG_STRS, .strs = (v), .i = (n)})

/* === Life cycle === */

/* A new empty session for model m (path as given in m->path; tokenizer may
 * be NULL). Caller frees with session_free. */
Status session_new(const struct Model *m, const char *tokenizer, Session **out, Err *err);

/* NULL is a no-op. */
void session_free(Session *s);

/* Parses session JSON text (len bytes; need not be NUL-terminated). `where`
 * prefixes error details (the file name). Errors: ST_ERR_FORMAT for text that
 * is not JSON (with the byte offset), a truncated file, a missing or mistyped
 * member (named by its JSON path: "s.json: plans[1].plan.rules[0].format:
 * 'int9' is not a format"); ST_ERR_UNSUPPORTED for a schema_version this
 * build does not read (newer: refused; there is no older schema to migrate).
 * Caller frees *out. */
Status session_parse(const char *text, size_t len, const char *where, Session **out, Err *err);

/* Reads path (at most 256 MiB) and parses it. The file is never modified.
 * A session whose model file is missing still loads: see session_model_status. */
Status session_load(const char *path, Session **out, Err *err);

/* Serialises s (indented JSON ending in a newline) into a heap string (caller frees). */
Status session_write(const Session *s, char **out, size_t *len, Err *err);

/* Saves atomically through core/atomicfile.h: a fresh temporary beside path,
 * fsynced, the current file (if any) kept as "<path>.bak", the temporary
 * renamed over path and the directory fsynced. Killing the process at any
 * instant leaves path either the old or the new valid session. */
Status session_save(const Session *s, const char *path, Err *err);

/* === Model reference === */

/* The model reference (borrowed; valid until s changes or is freed). */
const SessionModelRef *session_model(const Session *s);

typedef enum {
    SESSION_MODEL_OK,        /* fingerprint and shape match */
    SESSION_MODEL_CHANGED,   /* same shape, different fingerprint (weights changed) */
    SESSION_MODEL_SHAPE,     /* a different architecture / shape */
    SESSION_MODEL_MISSING    /* the model path does not exist (session_model_status) */
} SessionModelCheck;

/* Compares m with the session's model reference; msg (cap bytes, may be
 * NULL) receives a sentence for the user, e.g. "model m.gguf changed since
 * the session was saved (fingerprint 0123… -> 4567…): its statistics and
 * results no longer apply; recalibrate (c) before evaluating". */
SessionModelCheck session_check_model(const Session *s, const struct Model *m, char *msg, size_t cap);

/* Checks that the model path exists (relative paths: as given, then relative
 * to the directory of session_path, which may be NULL). Returns
 * SESSION_MODEL_OK or SESSION_MODEL_MISSING with a message in msg. */
SessionModelCheck session_model_status(const Session *s, const char *session_path, char *msg, size_t cap);

/* Points the session at another model (replay --model): path, fingerprint,
 * sizes and shape are replaced. */
Status session_set_model(Session *s, const struct Model *m, const char *tokenizer, Err *err);

/* === Calibration === */

/* The calibration settings (borrowed). */
const SessionCalib *session_calib(const Session *s);

/* Records calibration settings (c->present is ignored; strings copied). */
Status session_set_calib(Session *s, const SessionCalib *c, Err *err);

/* === Plans === */

/* Number of stored plans (indices for session_plan_name). */
int64_t session_n_plans(const Session *s);

/* Name of plan i (borrowed), or NULL out of range. */
const char *session_plan_name(const Session *s, int64_t i);

/* Index of the plan named name, or -1. */
int64_t session_find_plan(const Session *s, const char *name);

/* Parses plan `name` into *out (initialised here; caller plan_done's it).
 * ST_ERR_ARG when there is no such plan. */
Status session_get_plan(const Session *s, const char *name, struct Plan *out, Err *err);

/* Stores p under name (replacing a plan of that name, else appending). */
Status session_set_plan(Session *s, const char *name, const struct Plan *p, Err *err);

/* Renames / removes a plan (ST_ERR_ARG when missing or the new name is taken). */
Status session_rename_plan(Session *s, const char *from, const char *to, Err *err);
Status session_delete_plan(Session *s, const char *name, Err *err);

/* The current plan's name (borrowed) or NULL; set it with session_set_current
 * (name may be NULL to clear). */
const char *session_current_plan(const Session *s);
Status session_set_current(Session *s, const char *name, Err *err);

/* === Results === */

/* Number of recorded evaluation results (indices for session_result). */
int64_t session_n_results(const Session *s);

/* Result i (borrowed; valid until s changes), or NULL out of range. */
const SessionResult *session_result(const Session *s, int64_t i);

/* Settings an evaluation ran with. */
typedef struct SessionEvalInfo {
    const char *plan;        /* plan name */
    const char *text;        /* text path as given */
    uint64_t text_hash;
    int64_t ctx, chunks;     /* chunks as asked (0: all) */
    int64_t threads;
    const struct Plan *plan_eval; /* the plan evaluated, stored with the result as "plan_json"
                                (NULL: not stored, e.g. a GGUF evaluated as it is) */
    const char *gguf;        /* the quantized GGUF evaluated instead of a plan (stored as
                                settings.gguf), or NULL */
} SessionEvalInfo;

/* Appends a result whose metrics are the JSON object text metrics_json (as
 * `qscope eval --json` prints it: sessions/json.h's json_eval_result); the
 * build version and the time are added here. *id (may be NULL) receives the
 * result's id. */
Status session_add_result(Session *s, const SessionEvalInfo *info, const char *metrics_json, int64_t *id,
                          Err *err);

/* Appends an evaluation (analysis/eval.h's EvalResult of the quantized
 * model qm, which may be NULL): the metrics are sessions/json.h's
 * json_eval_result (the measured values at full precision, so a replay can
 * demand bit-identical numbers), plus qm's per-site weight errors
 * ("site_werr") and quantization times ("site_quantize_seconds", one per
 * projection, layer-major; "quantize_seconds" is the build's, here to an
 * ulp or two) when qm is given. Replay does not compare times. *id may be
 * NULL. */
struct EvalResult;
struct QModel;
Status session_add_eval(Session *s, const SessionEvalInfo *info, const struct EvalResult *res,
                        const struct QModel *qm, int64_t *id, Err *err);

/* Number of key (a number in the result's metrics) in *out; 0 if absent. */
int session_result_metric(const Session *s, int64_t i, const char *key, double *out);

/* The array of numbers key in result i's metrics ("layer_rel_err",
 * "site_werr") into out (at most cap values; null entries read as NaN).
 * Returns the array's length (may exceed cap), 0 when absent. */
int64_t session_result_array(const Session *s, int64_t i, const char *key, double *out, int64_t cap);

/* The plan result i was evaluated with ("plan_json") parsed into *out
 * (initialised here; caller plan_done's it). ST_ERR_ARG when the result
 * has none (sessions saved before it was recorded, GGUF rows). */
Status session_result_plan(const Session *s, int64_t i, struct Plan *out, Err *err);

/* === View state === */

/* The view object as JSON text (heap; caller frees), "{}" when none. */
char *session_view_get(const Session *s);

/* Replaces the view object with the JSON object in json (ST_ERR_FORMAT if
 * it is not an object). */
Status session_view_set(Session *s, const char *json, Err *err);

/* === Action log === */

/* Number of entries in the action log (indices for session_action). */
int64_t session_n_actions(const Session *s);

/* Action i (borrowed), or NULL out of range. */
const SessionAction *session_action(const Session *s, int64_t i);

/* The arguments of action i as JSON text (heap; caller frees), or NULL. */
char *session_action_args(const Session *s, int64_t i);

/* The arguments of action i for people: "key=value" pairs separated by
 * spaces (strings unquoted, nested values as compact JSON), so the Log
 * wraps them between pairs instead of inside raw JSON. Heap (caller frees);
 * "" without arguments, NULL when out of range or out of memory. */
char *session_action_text(const Session *s, int64_t i);

/* Argument key of action i: a number (or a boolean, 0/1) into *out, returning
 * 1, or 0 when absent or of another type; a string (borrowed until s
 * changes) or NULL. */
int session_action_arg_num(const Session *s, int64_t i, const char *key, double *out);
const char *session_action_arg_str(const Session *s, int64_t i, const char *key);

/* Appends an action with the current time and n arguments (copied). */
Status session_log_action(Session *s, const char *name, const SessionArg *args, int64_t n, Err *err);

/* Appends an action whose arguments are a copy of the JSON object args
 * (NULL: none); for replay, which re-logs the actions it runs. */
Status session_log_action_json(Session *s, const char *name, const struct cJSON *args, Err *err);

/* Logs set_rule {plan, pattern, fields, entry} with entry taken from e
 * (plan_json's ENTRY form); plan may be NULL (the current plan). */
Status session_log_set_rule(Session *s, const char *plan, const char *pattern, unsigned fields,
                            const struct PlanEntry *e, Err *err);

/* Like session_log_set_rule with an "edit" id (>= 0): the rules one editor
 * edit logs share it, so replay undoes them as one step even when the time
 * stamp ticks between them. */
Status session_log_set_rule_edit(Session *s, const char *plan, const char *pattern, unsigned fields,
                                 const struct PlanEntry *e, int64_t edit, Err *err);

/* === Helpers === */

/* The build version string ("qscope <git describe>"), static. */
const char *session_build_version(void);

/* Current UTC time as "YYYY-MM-DDTHH:MM:SSZ" into buf (size >= 21); returns buf. */
char *session_time_now(char *buf, size_t n);

/* The root JSON tree (borrowed; sessions/ internal use: replay reads
 * actions through it). */
struct cJSON *session_json(const Session *s);

#endif
