/* The weight-sensitivity map as a resumable stage after calibration: the map
 * of a committed stats file (and its H) is computed site by site, the
 * finished sites saved into the stats file as it goes (atomically, through
 * statsfile_save), so a cancelled or killed pass keeps them and a later run
 * computes only the sites still missing. The CLI's `calib` and the
 * workbench's calibration job both run the map this way. */
#ifndef QS_ANALYSIS_SENSRUN_H
#define QS_ANALYSIS_SENSRUN_H

#include "analysis/calib.h"
#include "analysis/sensitivity.h"
#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/model.h"

/* Seconds between two saves of the partial map during a pass (the last
 * site is always saved). */
#define SENSRUN_SAVE_SECS 10.0

/* Returns 1 when cs (loaded from a stats file) is a calibration that a run
 * with parameters p on m would repeat, whose sequences are all done and
 * whose sensitivity map is missing or partial: then only the map needs to
 * run (sensrun_map). p->text_hash must be set (hash_bytes of the text).
 * Otherwise 0 and, when why is not NULL, the reason in why (cap bytes). */
int sensrun_resumable(const CalibStats *cs, const Model *m, const CalibParams *p, char *why, size_t cap);

/* Computes the cells of cs's map that are not done (allocating the map
 * when cs has none), with H from the store beside stats_path (cs->has_h),
 * saving cs to stats_path after a finished site at most every save_secs
 * seconds (0: after every site) and once more at the end, whatever the
 * outcome. cs must be the calibration committed at stats_path (calib_commit).
 * o: the estimate's options (NULL: defaults); its on_site, if any, is called
 * after each site as well. A cancel (prog) or o->max_sites returns
 * ST_ERR_CANCELLED with the finished sites in cs and in the file. */
Status sensrun_map(const Model *m, CalibStats *cs, const char *stats_path, const SensOpts *o, double save_secs,
                   Pool *pool, Progress *prog, Err *err);

#endif
