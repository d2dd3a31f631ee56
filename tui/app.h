/* The workbench's state (the "model" every view draws from) and the
 * operations on it that do not touch curses, declared by file in the
 * sections below. Calls go one way: the main loop (app.c: lifecycle, key
 * dispatch, chrome) calls the views (view_*.c) and the sides of the state —
 * statistics (app_calib.c: calibration, its cache and summaries), plan
 * (app_plan.c: editing, presets, budget, evaluation), auto plan (app_auto.c),
 * speed table (app_speed.c) — and all of them call the shared services
 * under them (app_state.c: message bar, Log, session recording, result
 * rows, prompts), which call none of them. */
#ifndef QS_TUI_APP_H
#define QS_TUI_APP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/pool.h"
#include "core/status.h"
#include "model/forward.h"
#include "model/model.h"
#include "quant/plan_edit.h"
#include "tui/job.h"
#include "tui/keys.h"
#include "tui/layout.h"
#include "tui/results.h"

#define APP_PATH_MAX 1024

typedef struct TuiOpts {
    const char *model_path;
    const char *tokenizer;   /* llama2.c tokenizer, or NULL */
    const char *session;     /* session file, or NULL */
    const char *text_path;   /* evaluation text (and calibration text without calib_text_path), or NULL */
    const char *calib_text_path; /* calibration text when it differs from the evaluation text, or NULL */
    int threads;             /* 0: all CPUs */
    int64_t ctx;             /* evaluation chunk length (0: eval's default, clipped to the model) */
    int64_t chunks;          /* evaluation chunks (0: all) */
    int64_t samples, seqlen; /* calibration sequences and their length (0: calib's defaults) */
    Numerics numerics;       /* evaluations' rounding of the base weights' activations (model/forward.h) */
} TuiOpts;

/* Reaction flags returned by key handlers; only the main loop draws. */
enum { R_NONE = 0, R_REDRAW = 1, R_QUIT = 2, R_UNHANDLED = 4 };

typedef struct LogLine {
    time_t when;
    char what[24];           /* "calibrate", "evaluate", "preset", "edit", ... */
    char text[480];          /* settings / outcome */
} LogLine;

struct CalibStats;
struct Session;
struct SessionArg;

typedef struct ActViewState {
    int64_t row, col;        /* layer, tap */
    int metric;              /* ActMetric */
    int drill;               /* 1: the per-channel detail of (row, col) */
    int sort_by_value;       /* detail: channels by max|x| (1) or index (0) */
    int topk;                /* detail: 16, 32, 64 or 0 (all) */
    int64_t scroll;          /* detail: first channel shown */
    int64_t jump;            /* grid: rank (0 = largest) of the cell the last `s` went to */
} ActViewState;

typedef struct SensViewState {
    int64_t row, col;        /* layer, proj */
    int fmt;                 /* sensitivity format index (< SENS_NFMT) */
    int grouping;            /* SensGroup */
    int adadim;              /* 1: per-IC vs per-OC mode */
    int weight_err;          /* 1: show ‖ΔW‖²/‖W‖² instead of the output error */
} SensViewState;

typedef struct PlanViewState {
    int64_t row, col;        /* layer (n_layers = the embed/output row), proj */
    int scope;               /* PeScope */
    unsigned char *marks;    /* (n_layers * 7) */
    int preset_open;         /* preset picker shown */
    int preset_sel;
    /* A run of f/F (format) or d (grouping) presses is one change: each step
     * is applied to the grid as it was before the run (so passing through
     * aqlm or per-tensor keeps the group and method), replacing the previous
     * step's undo entry; the Log and the session get the net change when
     * another key ends the run (app_edit_flush). */
    struct PlanCycle *cyc;   /* the run in progress (app_plan.c's record), or NULL */
    int settings_open;       /* the cursor cell's settings panel (o) */
    int settings_sel;
    /* The last auto plan's account of itself (A): shown under the grid until
     * Esc, following the cursor, while the user edits by hand. */
    int auto_open;
    char auto_head[240];     /* budget, prediction, bound, cells changed */
    struct AutoSiteWhy *auto_sites; /* (n_auto) owned, [layer * 7 + proj] */
    int64_t n_auto;
    char auto_init[48];      /* the budget prompt's initial text ... */
    double auto_init_bpw;    /* ... and the exact bpw it stands for */
} PlanViewState;

/* Why the auto plan gave a site its entry. */
typedef struct AutoSiteWhy {
    char choice[24];         /* the candidate ("int4/oc-g", "fp16") */
    double loss;             /* its predicted loss (KLD in nats with site scales) */
    double oerr;             /* the map's relative output error of the choice */
    int64_t bits;
    int changed;             /* the cell differs from the plan the editor held before */
    char why[200];           /* the trade-off against the neighbouring candidates */
} AutoSiteWhy;

struct CmpSite;

typedef struct EvalViewState {
    int sort;                /* EvalSort */
    int64_t sel;             /* cursor, in the sorted order */
    int metric;              /* EvalMetric of the Pareto front and scatter (EM_KLD first) */
    int with_ref;            /* 1: reference rows (>= 16 bpw) take part in them */
    int64_t mark[2];         /* ids of the marked results (0: none), oldest first */
    int64_t open_id;         /* the detail of this result is open (0: none) */
    int64_t diff_a, diff_b;  /* the diff of these two results is open (0: none) */
    int64_t scroll;          /* first line of the detail's or the diff's site list */
    struct CmpSite *cmp;     /* (n_cmp) owned: cells that differ (detail: from the result it
                                is compared with; diff: between the two) */
    int64_t n_cmp;
    char cmp_note[160];      /* why there is no cell comparison ("" when there is) */
    double *oerr;            /* detail: (n_layers * 7) owned map output error of each site's
                                entry (NaN: no map), or NULL */
    char (*site_type)[16];   /* detail of a GGUF row: (n_layers * 7) owned tensor type of each
                                projection in the file, or NULL */
    char types[160];         /* ... and the file's types with their counts ("Q4_0 x31, ...") */
} EvalViewState;

/* The calibration settings screen (C): what c calibrates with next. Numbers
 * as analysis/calib.h's CalibParams (mode: its CalibMode, 0 random, 1
 * chunks); the text is App.calib_path ("" = the evaluation text). */
typedef struct CalibSettings {
    int open;                /* the screen is shown */
    int sel;                 /* the field under the cursor (CS_*) */
    int64_t samples, seqlen, seed, group, topk;
    int mode;
    int sensitivity;         /* compute the weight-sensitivity map */
    int sens_exact;          /* its output errors exact (a GEMM per cell) instead of estimated */
    int with_h;              /* accumulate H = XᵀX (GPTQ, AdaDim, AQLM and output errors need it) */
    int64_t text_tokens;     /* tokens of the calibration text (-1: not counted yet; counted
                                when the screen opens and when the text changes) */
} CalibSettings;

/* The fields of the screen, in order. */
enum { CS_TEXT, CS_SAMPLES, CS_SEQLEN, CS_SEED, CS_MODE, CS_GROUP, CS_TOPK, CS_SENS, CS_EXACT, CS_H, CS_COUNT };

/* What the detail and the diff views show of a result beyond its table
 * row: App.details[i] belongs to App.rows[i] (rows never reorder; the view
 * sorts a copy). */
typedef struct RowDetail {
    struct Plan *plan;       /* the plan evaluated (owned), or NULL when unknown */
    int plan_by_name;        /* 1: reopened without the evaluated plan: the session's plan of
                                that name as it is now (it may have been edited since) */
    double *layer_err;       /* (n_layer_err) owned: residual relative error after each block */
    int64_t n_layer_err;
    double *site_werr;       /* (n_site_werr) owned: ‖ΔW‖²/‖W‖² of each projection */
    int64_t n_site_werr;
    double quant_s;          /* quantization wall time (NaN: not recorded) */
    double eval_s;           /* evaluation wall time (NaN: not recorded) */
    char *gguf;              /* owned: the GGUF file evaluated instead of a plan, or NULL */
    int64_t vs_id;           /* the result its cells are compared with (0: none) */
} RowDetail;

/* A queued or running evaluation job; its fields are app_plan.c's. */
typedef struct EvalJob EvalJob;

typedef struct App {
    TuiOpts opts;
    Model *m;                /* owned */
    char model_name[128];    /* file name of the model */
    char text_path[APP_PATH_MAX]; /* "" when none was found */
    char *text;              /* (text_len) its bytes, owned; NULL when none */
    size_t text_len;
    char calib_path[APP_PATH_MAX]; /* --calib-text, "" when calibration uses the evaluation text */
    char *calib_text;        /* (calib_len) its bytes, owned; NULL without --calib-text */
    size_t calib_len;
    char session_path[APP_PATH_MAX]; /* "" without --session */
    struct Session *sess;    /* owned; NULL without --session: then nothing is saved */
    char cache_dir[APP_PATH_MAX]; /* where stats and written plans go */
    Pool *pool;              /* used by the job thread only */
    struct SpeedTab *speed;  /* this machine's speed table (analysis/speedtab.h), read at start; the main
                                thread reads it (T's job extends a copy that replaces it when the job is
                                polled); NULL without a cache directory */
    JobRunner jobs;

    struct CalibStats *cs;   /* NULL until calibrated (or loaded from the cache) */
    int32_t *cs_seqs;        /* (cs_nseqs, seqlen) owned: cs's calibration windows rebuilt from
                                the calibration text (spikes' context), or NULL when that text
                                is not the one cs was calibrated on */
    int64_t cs_nseqs;
    char stats_path[APP_PATH_MAX];
    int calib_stale;         /* loaded stats were for another model */

    struct PlanEdit *pe;     /* the plan in the editor */
    struct PlanGrid *last_eval; /* grid of the last evaluated plan, or NULL */
    int64_t last_eval_id;

    EvalRow *rows;           /* (n_rows) every evaluation of the session */
    RowDetail *details;      /* (n_rows, capacity cap_rows) the rows' details */
    int64_t n_rows, cap_rows;
    EvalJob *evals[JOBS_MAX_QUEUE + 1]; /* queued or running evaluation jobs, oldest first */
    int n_evals;
    char eval_settings[160]; /* "ctx 512, all chunks of tinystories_sample.txt" */
    int64_t split_chunks;    /* --text without --calib-text or --chunks: evaluation scores its
                                first split_chunks chunks and calibration draws from the rest
                                (calib_split_eval_chunks; from the command line alone, so a
                                reopened session evaluates as before); 0: no split */

    LogLine *log;
    int64_t n_log, cap_log;

    ViewId view;
    int help_open;
    int64_t help_scroll;
    int confirm_quit;
    int prompt;              /* a line being typed in the message bar: PROMPT_* (0: none) */
    char prompt_label[96];
    char prompt_buf[APP_PATH_MAX];
    char msg[256];
    int msg_err;
    int utf8;                /* the locale is UTF-8: Unicode shading */
    int colors;              /* the terminal has colours */

    CalibSettings cset;
    ActViewState act;
    SensViewState sens;
    PlanViewState plan;
    EvalViewState eval;
    int64_t log_scroll;      /* first Log entry shown; -1 follows the end */
    int quit;
} App;

/* === Lifecycle (app.c) === */

/* Loads the model and text, creates the thread pool, job runner and an
 * fp16 plan, and reopens a cached calibration when one matches. err says
 * what failed (model path, ...). app_done releases it. */
Status app_init(App *a, const TuiOpts *o, Err *err);

/* Releases everything (cancels and joins any job first); safe on a zeroed App. */
void app_done(App *a);

/* === App state services (app_state.c) === */

/* Sets the message bar (printf-style); err = 1 shows it as an error. */
void app_msg(App *a, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Appends a log line (printf-style text). */
void app_log(App *a, const char *what, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Saves the session (atomically) after an action; errors go to the message
 * bar. No-op without a session. */
void app_session_save(App *a);

/* Records an action in the session (sessions/session.h names and args) and
 * saves it. No-op without a session. */
void app_session_action(App *a, const char *name, const struct SessionArg *args, int64_t n);

/* Records a plan the editor now holds as the action "set_plan" {plan, json,
 * and extra (the auto plan's budget, the result it came from)}, which replay
 * stores, makes current and undoes as the editor does; a plan that cannot be
 * written says so on the message bar. */
void app_session_set_plan(App *a, const struct Plan *p, const struct SessionArg *extra);

/* Appends an evaluation row; returns it (borrowed until the next append). */
EvalRow *app_add_row(App *a);

/* === Statistics side (app_calib.c) === */

/* Queues a calibration job; the message bar says why when it cannot. */
void app_calibrate(App *a);

/* The calibration text (--calib-text when given, else the evaluation text;
 * NULL when there is none): its length in *len and, if path is not NULL, its
 * path in *path. Borrowed from a. */
const char *app_calib_text(const App *a, size_t *len, const char **path);

/* The calibration settings: calib's defaults with --samples / --seqlen (the
 * sequence length clipped to the model's context unless given), then, in a
 * reopened session, those of its last calibrate or calib_settings action
 * (the text too when the file is still there and --calib-text was not
 * given). */
void app_calibset_init(App *a);

/* Where calibration windows start in the calibration text (CalibParams
 * tok_from): past the chunks evaluation reads when the calibration text is
 * the evaluation text and evaluation does not read all of it, else 0. *ends
 * (may be NULL): 1 when calibration on the evaluation text overlaps what
 * evaluation reads (no part is left: all chunks evaluated). */
int64_t app_calib_from(const App *a, int *overlaps);

/* Decides the split of one text between evaluation and calibration
 * (App.split_chunks) and writes App.eval_settings. */
void app_split_init(App *a);

/* Opens the settings screen, counting the calibration text's tokens first
 * if they are not known (for the windows-repeat warning). */
void app_calibset_open(App *a);

/* Field k of the settings screen: its label and value as text; returns a
 * hint for the field ("" when none). */
const char *app_calibset_field(const App *a, int k, char *label, size_t ln, char *val, size_t vn);

/* Steps field k (dir +1 / -1: doubles / halves sizes, seed ±1, toggles the
 * others) and records the settings in the session (calib_settings). */
void app_calibset_step(App *a, int k, int dir);

/* Enter on field k: a prompt for the text's path or the number. */
void app_calibset_enter(App *a, int k);

/* The text typed for a PROMPT_CALIB_* prompt: a path ("" = the evaluation
 * text) or the number of the selected field; errors in the message bar. */
void app_calibset_typed(App *a, int kind, const char *text);

/* Looks for cached stats for this model and text and loads them. */
void app_load_cached_stats(App *a);

/* One-line summary of the calibration ("16 seqs × 128 tokens, random seed
 * 1, sensitivity: yes") or "" when there is none. */
void app_calib_summary(const App *a, char *buf, size_t n);

/* 1 when the loaded calibration is partial: cancelled before its last
 * sequence, or its sensitivity pass cancelled (the summary says so too). */
int app_calib_partial(const App *a);

/* Spike-aware sites of the current calibration (k best), as plan patterns.
 * Returns the count (0 without calibration). */
int app_spike_sites(const App *a, int k, char (*sites)[16]);

/* Reopen: loads the stats file the session names (if it still matches the
 * model); 0 when there is none or it could not be used (the message says). */
int app_calib_restore(App *a);

/* Frees a CalibStats (for app_done). */
void app_free_stats(struct CalibStats *cs);

/* Rebuilds App.cs_seqs for the current App.cs (after it changes). */
void app_calib_windows(App *a);

/* === Plan side (app_plan.c) === */

/* Creates the plan editor with the fp16 preset, or with the session's
 * current plan and its evaluation results when a session was reopened. */
Status app_plan_init(App *a, Err *err);
void app_plan_done(App *a);

/* Stores the editor's plan in the session under its name (the current plan)
 * and saves. No-op without a session. */
void app_plan_sync(App *a);

/* Queues an evaluation of the current plan (or says why not). */
void app_evaluate(App *a);

/* The plan in the editor as the budget bar shows it. */
typedef struct PlanBudget {
    char label[80];          /* "int4-rtn +2" */
    int valid;               /* 0: error holds why the plan does not fit the model */
    char error[200];
    double bpw;              /* bits per weight, embedding and head included */
    size_t bytes;
    double frac_fp16;        /* bytes / bytes of the fp16 plan */
    double decode_tps;       /* predicted matmul-only decode tokens/s (0: the speed table lacks a row) */
    double prefill_tps;      /* the same for prefill, per token of a batch (0: as decode_tps) */
} PlanBudget;
void app_plan_budget(const App *a, PlanBudget *b);

/* One-line plan summary ("int4-rtn +2 edits · 4.63 bpw · 0.21 MB · 29% of fp16"). */
void app_plan_summary(const App *a, char *buf, size_t n);

/* Queues an evaluation of a quantized GGUF of this model (a shipped file:
 * qscope export's, llama-quantize's) in place of a plan, with the same
 * protocol as the plans' (the base's reference, ctx, chunks): a row of the
 * results table named by the file, recorded in the session (replay
 * evaluates the file again). */
void app_evaluate_gguf(App *a, const char *path);

/* The running (or queued) evaluation as the Evaluate view shows it. */
#define LIVE_HIST 512
typedef struct LiveEval {
    int active;              /* 0: none queued or running */
    int running;             /* 1: it has started (else it waits in the queue) */
    int queued;              /* evaluations waiting behind it */
    char label[64];
    int64_t chunks_done, n_chunks;
    double ppl_now, kld_now; /* running PPL and mean KLD after the last chunk (NaN before it) */
    int n_hist;              /* entries in ppl_hist */
    double ppl_hist[LIVE_HIST]; /* (n_hist) running PPL after each of the last n_hist chunks, oldest first */
} LiveEval;
void app_live_eval(const App *a, LiveEval *le);

/* The path `W` offers: the plan as JSON under the cache dir, named by the
 * session and the model (into buf, n bytes). */
void app_plan_default_path(App *a, char *buf, size_t n);

/* Writes the plan in the editor to `dest`: a path (JSON plan), or
 * "llamacpp:PATH", "gptqmodel:PATH", "llmcompressor:PATH" for the exports
 * (sessions/export.h; the message says how much was exact). The message bar
 * and the Log say where it went or why not. */
void app_write_plan(App *a, const char *dest);

/* Lines typed in the message bar (app.c draws and edits them; Enter hands
 * the text to view_plan_prompt_done, Esc cancels); app_prompt_open
 * (app_state.c) opens one of these kinds with a label and initial text. */
enum { PROMPT_NONE, PROMPT_WRITE_PLAN, PROMPT_FORMAT, PROMPT_AUTO_BUDGET, PROMPT_GGUF, PROMPT_CALIB_TEXT,
       PROMPT_CALIB_NUM };
void app_prompt_open(App *a, int kind, const char *label, const char *initial);
void view_plan_prompt_done(App *a, int kind, const char *text);

/* The evaluation settings of this run: eval's defaults with --ctx /
 * --chunks, the context clipped to the model's. */
struct EvalOpts;
void app_eval_opts(const App *a, struct EvalOpts *o);

/* The loss model's predicted KLD of p (NaN without a calibration or without
 * site scales for this text and context); the plan side annotates each
 * evaluation with it, the auto plan (app_auto.c) measures the scales. */
double app_predict_kld(const App *a, const struct Plan *p);

/* STATS.sitecal (the site scales' cache beside the stats file) into buf;
 * 0 without a calibration. */
int app_sitecal_path(const App *a, char *buf, size_t n);

/* === The record of edits (app_plan.c) === */

/* A run of f/F (format) or d (grouping) presses in the Plan view, one change
 * (PlanViewState.cyc; the view steps it, app_edit_flush ends it). */
typedef struct PlanCycle {
    int kind;                /* 1: format, 2: grouping dimension */
    int64_t row, col;
    int scope;
    int val;                 /* the QFormat / GroupDim the run is at */
    PlanGrid before;         /* the grid before the run; owned */
    PlanEntry base;          /* the cursor's entry before the run */
    unsigned fields;         /* the last step's fields and source entry */
    PlanEntry src;
    char what[80];
    int pushed;              /* the last step pushed an undo entry */
} PlanCycle;

/* Where an edit of the Plan view's current scope applies ("L2.down",
 * "layer 2", "every down", "marked cells", "the output head") into where. */
void app_edit_where(const App *a, char *where, size_t n);

/* Records an edit of the current scope (the grid was `before`; fields and
 * src as given to plan_edit_apply) in the session as set_rule actions
 * sharing one edit id, then stores the editor's plan (app_plan_sync). */
void app_edit_record(App *a, const PlanGrid *before, unsigned fields, const PlanEntry *src);

/* Ends a run of f/F or d presses: logs the net change and records it in the
 * session (a no-op without a run). Called by the Plan view on any other key,
 * before a result's plan or an auto plan replaces the editor's, and by the
 * app before it quits. */
void app_edit_flush(App *a);

/* Releases the run without recording it; safe without one. */
void app_edit_cycle_free(App *a);

/* === Auto plan (app_auto.c) === */

/* Asks for the automatic planner's budget in the message bar (bits per
 * weight or a size, the plan in the editor's size offered); Enter hands it
 * to app_auto_plan_budget. Needs the calibration (else says so). */
void app_auto_plan(App *a);

/* Queues the automatic planner (analysis/planner.h) under the budget typed
 * (pe_parse_budget's forms); the result replaces the editor's plan (one
 * undo step, recorded in the session as set_plan so replay reproduces it),
 * the Plan view lists which cells it set and why (the per-site choice and
 * its predicted loss) and so does the Log. The loss model's site scales
 * are measured in the job unless STATS.sitecal matches. */
void app_auto_plan_budget(App *a, const char *text);

/* === Speed table (app_speed.c) === */

/* The speed table's times of entry e on an (n_out, n_in) matrix: 1 and the
 * seconds (decode: one token; prefill: per token of a batch), or 0 when the
 * table lacks the row (T measures it) or there is no table. */
struct PlanEntry;
int app_speed_lookup(const App *a, const struct PlanEntry *e, int64_t n_out, int64_t n_in, double *decode_s,
                     double *prefill_s);

/* The same for the sensitivity map's cell (format index fmt, SensGroup
 * grouping) on projection proj's shape, as the map quantizes it. */
int app_speed_cell(const App *a, int proj, int fmt, int grouping, double *decode_s, double *prefill_s);

/* Queues the job that times the kernels of this model's shapes the table
 * lacks (every map format and grouping, fp16, the editor plan's entries and
 * the head) and keeps the table in the cache directory; a cancel keeps what
 * was timed. The message bar says what happened. */
void app_speed_measure(App *a);

/* Number of cells that differ from the last evaluated plan (-1: none yet). */
int64_t app_plan_diff(const App *a);

/* === Results: detail, diff, load back (app_plan.c) === */

/* Index in App.rows of the result with this id, or -1. */
int64_t app_row_index(const App *a, int64_t id);

/* Loads the plan of result `id` into the editor under the result's name:
 * one undo step, recorded in the session as set_plan (replay reproduces
 * it). The message bar says what happened or why not. */
void app_load_result_plan(App *a, int64_t id);

/* Fills a->eval.cmp with the cells where result ida's plan and result
 * idb's plan differ (cmp_note says why when a plan is unknown). */
void app_compare_results(App *a, int64_t ida, int64_t idb);

/* The map's output error tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) of each site's entry in
 * the plan of result id (the loss model's per-site term, RTN; nearest cell
 * where the map lacks the entry) into a->eval.oerr; NULL without a
 * calibration map or plan. */
void app_result_site_oerr(App *a, int64_t id);

/* For a GGUF row: each projection's tensor type in the file (re-read: its
 * metadata only) into a->eval.site_type and the counts into a->eval.types;
 * NULL / "" when the row is not a GGUF or the file cannot be read. */
void app_result_site_types(App *a, int64_t id);

/* Frees the views' comparison arrays and every row's detail (app_done). */
void app_details_free(App *a);

/* === Main loop (app.c) === */

/* Runs the workbench until the user quits; restores the terminal on every
 * exit path. Returns 0 on a normal exit, 1 when it could not start (the
 * reason printed to stderr after the terminal was restored). */
int tui_run(const TuiOpts *o);

#endif
