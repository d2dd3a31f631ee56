/* Calibration: draw sequences from a text, run the forward pass with taps and
 * accumulate, for every (layer, tap point), the streaming statistics of
 * analysis/stats.h, the residual-stream norms per position, and H = XᵀX of
 * the four projection inputs (analysis/hstore.h); then (optionally) the
 * weight-sensitivity map from H. The result is what the stats file holds. */
#ifndef QS_ANALYSIS_CALIB_H
#define QS_ANALYSIS_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "analysis/sensitivity.h"
#include "analysis/stats.h"
#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/model.h"

/* RANDOM: windows at seeded uniform offsets (may overlap). CHUNKS:
 * consecutive non-overlapping windows from the start (llama.cpp imatrix).
 * Either way the window's first token is replaced by BOS (when the tokenizer
 * has one), as llama.cpp's imatrix does. */
typedef enum { CALIB_RANDOM, CALIB_CHUNKS } CalibMode;

/* How sequences go through the model (neither is saved: both give the same
 * stats file and H, tests/test_calib.c).
 * STREAM (default): layer by layer, as llm-compressor's and AQLM's
 * sequential pipelines do: every sequence passes layer l before any passes
 * layer l + 1, so each layer's weights are read once and released after
 * (mapfile_release), and H is kept for one layer at a time
 * (hstore_create_layered). The residual stream of all sequences between
 * layers is held in RAM up to the hidden budget (calib_hidden_budget) and
 * spilled to an unlinked temporary file beyond it; when even that file
 * would not fit on the temporary directory's disk, the run falls back to
 * PER_SAMPLE. A cancel keeps nothing (no sequence is complete before the
 * last layer).
 * PER_SAMPLE: one sequence at a time through all layers; a cancel keeps the
 * sequences done. */
typedef enum { CALIB_STREAM, CALIB_PER_SAMPLE } CalibPipeline;

#define CALIB_PATH_MAX 256

typedef struct CalibParams {
    char text_path[CALIB_PATH_MAX]; /* as given, for reports (truncated) */
    uint64_t text_hash;      /* FNV-1a of the text bytes (set by calib_run) */
    int64_t text_bytes;      /* (set by calib_run) */
    int64_t samples;         /* sequences asked for (CHUNKS: at most what the text holds) */
    int64_t seqlen;          /* tokens per sequence, BOS included */
    uint64_t seed;           /* RANDOM offsets */
    CalibMode mode;
    int64_t group;           /* g of the grouped sensitivity cells */
    int32_t topk;            /* spikes kept per (layer, tap) */
    int32_t sensitivity;     /* 1: compute the weight-sensitivity map (needs H) */
    int64_t tok_from;        /* windows are drawn from the text's tokens [tok_from, n) only: the
                                part an evaluation of its first chunks does not reach
                                (calib_part_from); 0: the whole text */
    int32_t sens_exact;      /* 1: exact output errors, a GEMM per cell (default: estimated,
                                analysis/sensitivity.h SensOpts; not saved) */
    CalibPipeline pipeline;  /* not saved */
    size_t hidden_budget;    /* STREAM: bytes of residual stream held in RAM before spilling
                                (0: calib_hidden_budget()); not saved */
} CalibParams;

/* The limits of the calibration parameters: one table for the CLI, replay,
 * calib_run (so the TUI too) and the stats reader, which each had their own
 * (replay took topk up to 2^20 that the stats reader then refused, blaming
 * the session; replay took group 0 where the CLI wanted at least 4). */
#define CALIB_SAMPLES_MIN 1
#define CALIB_SAMPLES_MAX (1 << 24)
#define CALIB_SEQLEN_MIN 2
#define CALIB_SEQLEN_MAX (1 << 20)
#define CALIB_GROUP_MIN 4
#define CALIB_GROUP_MAX (1 << 20)
#define CALIB_TOPK_MIN 1
#define CALIB_TOPK_MAX 4096

/* ST_OK when samples, seqlen, group and topk of p are within the limits
 * above; else ST_ERR_RANGE "WHERE: FIELD = V is outside [MIN, MAX]". */
Status calib_params_check(const CalibParams *p, const char *where, Err *err);

/* Defaults: 16 samples of 256 tokens, seed 1, RANDOM, group 32, top-16 spikes,
 * sensitivity on. */
void calib_params_default(CalibParams *p);

/* Default RAM for the residual stream of the layer-streamed pipeline: env
 * QS_CALIB_HIDDEN_MB (MiB) if set, else an eighth of physical memory. */
size_t calib_hidden_budget(void);

/* "stream" / "per-sample"; parse returns -1 if unknown. */
const char *calib_pipeline_name(CalibPipeline p);
int calib_pipeline_parse(const char *s);

/* "random" / "chunks"; parse returns -1 if unknown. */
const char *calib_mode_name(CalibMode m);
int calib_mode_parse(const char *s);

typedef struct CalibStats {
    uint64_t fingerprint;    /* Model.fingerprint of the calibrated model */
    CalibParams params;
    int64_t n_layers, dim, hidden_dim, q_dim, vocab_size;
    int64_t width[TAP_COUNT];  /* input width of each tap point */
    int64_t n_planned;       /* sequences planned */
    int64_t n_seqs;          /* sequences completed (< n_planned after a cancel) */
    int64_t n_tokens;        /* tokens seen by every tap (n_seqs * seqlen) */
    TapStats *taps;          /* (n_layers * TAP_COUNT), [layer * TAP_COUNT + tap];
                                act-quant sums on the four projection inputs */
    double *resid_rms_sum;   /* (n_layers, seqlen) Σ over sequences of the RMS of the
                                residual row after block l at each position */
    float *resid_rms_max;    /* (n_layers, seqlen) max over sequences */
    int has_sens;
    SensMap sens;
    int64_t text_tokens;     /* tokens windows were drawn from: the text's, or those of its
                                part from params.tok_from (set by calib_run; not saved) */
    int has_h;               /* H was accumulated and written */
    uint64_t h_id;           /* id in the H file's header */
    size_t h_bytes;          /* H file size */
    CalibPipeline pipeline;  /* the pipeline that ran (not saved) */
    size_t spilled_bytes;    /* STREAM: residual-stream bytes kept in the temporary file (not saved) */
} CalibStats;

/* Allocates an empty CalibStats for dimensions (n_layers, widths, seqlen,
 * topk); used by calib_run and the stats-file reader. Caller frees. */
Status calib_stats_new(int64_t n_layers, const int64_t width[TAP_COUNT], int64_t seqlen, int32_t topk,
                       CalibStats **out, Err *err);

/* NULL is a no-op. */
void calib_stats_free(CalibStats *cs);

/* TapStats of (layer, tap); borrowed from cs. */
TapStats *calib_tap(const CalibStats *cs, int64_t layer, TapPoint t);

/* Token windows for calibration from tokens (n, text without BOS): *seqs is
 * (*n_seqs, p->seqlen) row-major, heap (caller frees). bos < 0: keep the first
 * token. Fails with ST_ERR_RANGE when the text has fewer than seqlen tokens. */
Status calib_sample(const int32_t *tokens, int64_t n, int32_t bos, const CalibParams *p, int32_t **seqs,
                    int64_t *n_seqs, Err *err);

/* When one text serves calibration and evaluation: evaluation (llama.cpp's
 * protocol, BOS first, chunks of n_ctx) of its first eval_chunks chunks
 * reads the text's tokens [0, eval_chunks × n_ctx − 1); calibration windows
 * drawn from tokens >= the returned index never meet a token it scores or
 * reads as context. */
int64_t calib_part_from(int64_t n_ctx, int64_t eval_chunks);

/* 1 when p was calibrated on the text (text, len): same hash and size. */
int calib_same_text(const CalibParams *p, const char *text, size_t len);

/* 1 when p's windows came from the text (text, len) and reach into what an
 * evaluation of its first eval_chunks chunks of n_ctx reads (tok_from below
 * calib_part_from): the plan would be tuned on what it is scored on. */
int calib_overlaps_eval(const CalibParams *p, const char *text, size_t len, int64_t n_ctx, int64_t eval_chunks);

/* The evaluation's share when one text of n_text tokens (no BOS) serves both
 * and the user did not say how many chunks to score: every chunk of n_ctx but
 * the last min(CALIB_PART_TOKENS, half the text) tokens' worth of whole
 * chunks, which calibration gets (with the tail no chunk fills). 0: the text
 * has fewer than 2 chunks, no split. */
#define CALIB_PART_TOKENS 4096
int64_t calib_split_eval_chunks(int64_t n_text, int64_t n_ctx);

/* Returns 1 when RANDOM windows of p cover more tokens than the text has
 * (samples × seqlen > n_tokens: windows repeat), for a warning. */
int calib_windows_repeat(int64_t n_tokens, const CalibParams *p);

/* H file size for m: float32 packed upper triangles of the (dim, q_dim, dim,
 * hidden) inputs per layer, page-aligned, plus the header (analysis/hstore.h). */
size_t calib_h_bytes(const Model *m);

/* Returns a fresh temporary name for H beside stats_path
 * ("<stats>.h64.tmp.<pid>.<n>.<time>", heap; caller frees), for calib_run. */
char *calib_h_temp(const char *stats_path);

/* ST_OK when stats_path can name the statistics file (absent, or a regular
 * file); otherwise ST_ERR_ARG naming it (a directory such as /tmp). Callers
 * check before calibrating. */
Status calib_output_check(const char *stats_path, Err *err);

/* Puts a calibration in place as a pair: renames the H written by calib_run
 * at h_tmp (may be NULL without H) to statsfile_h_path(stats_path, id), then
 * replaces stats_path atomically, then removes the H of the stats it
 * replaced. A crash at any point leaves the old pair or the new pair loadable
 * (at worst an orphan H file). On error h_tmp is removed and the old pair
 * kept. */
Status calib_commit(const CalibStats *cs, const char *h_tmp, const char *stats_path, Err *err);

/* Runs calibration of m on text (len bytes; path and hash recorded from p
 * and the bytes). h_path: the file to create for H (NULL: no H,
 * no output errors in the map); on success it is complete and fsynced under
 * that name (pair it with a stats file through calib_commit), on failure it
 * is removed. A seqlen above the model's declared context is accepted (the
 * caller warns). p->pipeline chooses the order (CalibPipeline above).
 * Fails with ST_ERR_NUMERIC naming the layer and tap when an activation is
 * inf or NaN. pool may be NULL; prog may be NULL (with it: stage "calibrate"
 * counting sequences (STREAM: sequences' worth of work, one per n_layers
 * layer steps), then "sensitivity";
 * PER_SAMPLE: cancel stops after the current sequence and returns the
 * sequences done with n_seqs < n_planned, or ST_ERR_CANCELLED if none;
 * STREAM: cancel returns ST_ERR_CANCELLED; a cancel during sensitivity drops
 * the map).
 * Caller frees *out. */
Status calib_run(const Model *m, const char *text, size_t len, const CalibParams *p, const char *h_path,
                 Pool *pool, Progress *prog, CalibStats **out, Err *err);

/* Residual-stream RMS of layer l at position pos averaged over sequences (0 if none). */
double calib_resid_mean(const CalibStats *cs, int64_t l, int64_t pos);

/* The weight-sensitivity map's cell for symmetric round-to-nearest under qp
 * on (layer, proj): returns 1 and sets *werr (‖ΔW‖²/‖W‖²) and *oerr
 * (tr(ΔW H ΔWᵀ)/tr(W H Wᵀ), NaN without H) when cs has the map and the cell
 * (qp symmetric, a format the map covers, per-tensor / per-channel or the
 * map's group size for that site); 0 otherwise. Either pointer may be NULL. */
int calib_sens_cell(const CalibStats *cs, int64_t layer, int proj, const QParams *qp, double *werr,
                     double *oerr);

/* The group sizes the map used on (layer, proj) for OC- and IC-grouped cells
 * (0: none fits); returns 0 when cs has no map. */
int calib_sens_groups(const CalibStats *cs, int64_t layer, int proj, int64_t *oc_group, int64_t *ic_group);

#endif
