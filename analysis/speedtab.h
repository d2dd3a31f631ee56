/* The speed side of a plan: how long each weight format's kernel takes on
 * the model's own site shapes, measured on this machine and cached, so a
 * plan's tokens per second can be predicted beside its size and the auto
 * planner can be held to a speed (qscope plan --auto --speed).
 *
 * A row is (n_out, n_in, entry code): the entry's weight format, grouping
 * and activation format as plan_entry_code spells them with the method
 * dropped (GPTQ and RTN codes run the same kernel). Its two times are the
 * minimum over repetitions of the QLinear built from a seeded random matrix
 * of that shape: decode_s, one token (the GEMV path); prefill_s, seconds per
 * token of a SPEED_PREFILL_T-token batch. A plan's prediction is matmul-only:
 * Σ over its linear sites and the head of those times (attention, norms and
 * the embedding lookup are not counted), so the predicted tokens/s is an
 * upper bound that ranks plans, not a benchmark.
 *
 * File (one per machine and thread count, in the cache directory as
 * speed-<hash of the machine key>.txt): a header
 *   # qscope speed 1 machine=<cpu_describe()> threads=<n>
 * then "N_OUT N_IN CODE DECODE_S PREFILL_S" per row. */
#ifndef QS_ANALYSIS_SPEEDTAB_H
#define QS_ANALYSIS_SPEEDTAB_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"
#include "quant/plan.h"

#define SPEED_PREFILL_T 64

typedef struct SpeedRow {
    int64_t n_out, n_in;
    char code[40];
    double decode_s;         /* seconds, one token */
    double prefill_s;        /* seconds per token, batches of SPEED_PREFILL_T */
} SpeedRow;

typedef struct SpeedTab {
    char machine[160];       /* cpu_describe() */
    int threads;             /* the pool size the times were taken with */
    SpeedRow *rows;          /* (n) owned */
    int64_t n, cap;
    int64_t n_measured;      /* rows measured since the load (0: nothing to save) */
    double min_time_s;       /* least total time spent timing each path of a row (0: 0.02 s decode,
                                0.05 s prefill; tests set it small), at least 3 repetitions */
} SpeedTab;

/* The table file of this machine with `threads` threads in cache_dir
 * (NULL: core/cache.h's default) into buf. */
Status speedtab_path(const char *cache_dir, int threads, char *buf, size_t n, Err *err);

/* Loads path into *t for this machine and `threads` (a missing file, or one
 * of another machine or thread count, gives an empty table; a malformed line
 * ST_ERR_FORMAT naming the file and line). Caller releases with
 * speedtab_done. */
Status speedtab_load(const char *path, int threads, SpeedTab *t, Err *err);

/* Writes t atomically to path. */
Status speedtab_save(const SpeedTab *t, const char *path, Err *err);

/* Frees the rows; safe on a zeroed table. */
void speedtab_done(SpeedTab *t);

/* Appends a copy of row r (not counted in n_measured). */
Status speedtab_add(SpeedTab *t, const SpeedRow *r, Err *err);

/* The times of entry e on an (n_out, n_in) matrix: the table's row, else
 * measured now on pool (which should have t->threads threads) and added.
 * fp32 / fp16 / bf16 entries are timed as their converted QLinear. AQLM is
 * not supported (ST_ERR_UNSUPPORTED). */
Status speedtab_get(SpeedTab *t, const PlanEntry *e, int64_t n_out, int64_t n_in, Pool *pool, double *decode_s,
                    double *prefill_s, Err *err);

/* The table's row for e on (n_out, n_in) without measuring: 1 and the times
 * when present, else 0. */
int speedtab_lookup(const SpeedTab *t, const PlanEntry *e, int64_t n_out, int64_t n_in, double *decode_s,
                    double *prefill_s);

/* The plan's predicted matmul-only tokens/s on m (decode and prefill),
 * measuring the entries the table lacks when pool is not NULL (with pool
 * NULL, ST_ERR_STATE when a row is missing). The embedding lookup counts 0;
 * an untied head counts its own entry, a tied one the embedding's. */
Status speedtab_plan(SpeedTab *t, const Plan *p, const PlanModel *m, Pool *pool, double *decode_tps,
                     double *prefill_tps, Err *err);

#endif
