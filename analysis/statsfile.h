/* The stats cache: a versioned little-endian binary file holding a
 * CalibStats (model fingerprint, calibration parameters, every per-tap
 * statistic, residual norms, the weight-sensitivity map) so reports and the
 * TUI reopen instantly and can tell when it is stale. H lives beside it in
 * STATS.<id>.h64 (analysis/hstore.h), tied by that id.
 *
 * Layout: "QSST", u32 version, then fields in a fixed order (each written
 * explicitly: no struct dumps, no padding, no timestamps, so the same inputs
 * give the same bytes), then a u64 FNV-1a checksum of everything before it.
 * Every count and length is validated on read. */
#ifndef QS_ANALYSIS_STATSFILE_H
#define QS_ANALYSIS_STATSFILE_H

#include <stddef.h>
#include <stdint.h>

#include "analysis/calib.h"
#include "analysis/hstore.h"
#include "core/pool.h"
#include "core/status.h"
#include "model/model.h"

/* 2: the sensitivity map names its candidates and groupings and carries a
 * done flag per (site, candidate) (partial maps resume); version 1 files are
 * refused with "recalibrate". 3: the calibration part's first token
 * (params.tok_from); version 2 files read as drawn from the whole text. */
#define STATSFILE_VERSION 3

/* Writes cs to path atomically (temp file + rename). */
Status statsfile_save(const CalibStats *cs, const char *path, Err *err);

/* Reads path into a new CalibStats (caller frees). A truncated or corrupt
 * file fails with ST_ERR_FORMAT naming the file, the field and its offset. */
Status statsfile_load(const char *path, CalibStats **out, Err *err);

/* Returns 1 when cs was not computed on m (fingerprint or shape differ) and
 * writes the reason into why (cap bytes); 0 when it matches. */
int statsfile_is_stale(const CalibStats *cs, const Model *m, char *why, size_t cap);

/* Returns the path of the H file that belongs to a stats path and its H id:
 * "<stats>.<id as 16 hex digits>.h64" (heap; caller frees). Naming H by its id
 * lets a new pair be put in place without ever pairing a stats file with a
 * foreign H (calib_commit). */
char *statsfile_h_path(const char *stats_path, uint64_t h_id);

/* === The stats file with its H store, as the quantized-model build reads them === */

/* A loaded stats file and its H store (if it has one). */
typedef struct QStatsFile {
    CalibStats *cs;          /* owned */
    HStore *h;               /* owned; NULL when the stats were computed without H */
} QStatsFile;

/* Loads the stats file at path and, when present, its H store (statsfile_h_path),
 * checking both against m (a stale file fails with ST_ERR_MISMATCH naming the
 * file and the reason). Caller releases with qstats_close. */
Status qstats_open(const char *path, const Model *m, QStatsFile *out, Err *err);

/* Calibrates m on text (len bytes) in memory: `samples` random windows of
 * `seqlen` tokens (seed 1; analysis/calib.h's defaults otherwise, without the
 * sensitivity map), H written to h_path (kept open in out->h; the caller
 * removes the file when done). pool may be NULL. For tests and tools that
 * need statistics without a stats file. Caller releases with qstats_close. */
Status qstats_calibrate(const Model *m, const char *text, size_t len, int64_t samples, int64_t seqlen,
                        const char *h_path, Pool *pool, QStatsFile *out, Err *err);

/* qstats_calibrate plus the weight-sensitivity map (group 32; output errors
 * when h_path is given). */
Status qstats_calibrate_sens(const Model *m, const char *text, size_t len, int64_t samples, int64_t seqlen,
                             const char *h_path, Pool *pool, QStatsFile *out, Err *err);

/* Frees both; safe on a zeroed QStatsFile. */
void qstats_close(QStatsFile *f);

#endif
