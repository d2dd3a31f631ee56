/* The calibration step of a replay, in a translation unit of its own:
 * analysis/calib.h (through analysis/stats.h) and quant/plan.h define
 * clashing ACT_* enumerators, so replay.c (plans, evaluation) reaches
 * calibration only through this plan-free interface. */
#ifndef QS_SESSIONS_REPLAY_CALIB_H
#define QS_SESSIONS_REPLAY_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"
#include "model/model.h"
#include "sessions/session.h"

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
