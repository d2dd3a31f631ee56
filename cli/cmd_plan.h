/* Plan options shared by `qscope plan`, `qscope quant` and `qscope eval`:
 * a plan from --preset NAME (with its options) or from --plan FILE. */
#ifndef QS_CLI_CMD_PLAN_H
#define QS_CLI_CMD_PLAN_H

#include <stdint.h>
#include <stdio.h>

#include "analysis/qmodel.h"
#include "analysis/statsfile.h"
#include "cli/opts.h"
#include "core/status.h"
#include "model/model.h"
#include "quant/plan.h"

typedef struct PlanCli {
    const char *preset;      /* --preset NAME */
    const char *plan_path;   /* --plan FILE */
    int64_t group;           /* --group G (-1: preset default) */
    int64_t spike_k;         /* --spike-k K (spike-aware / random-k site count) */
    const char *spike_format; /* --spike-format fp16|fp8-e4m3|fp8-e5m2 */
    int64_t seed;            /* --seed S (random-k) */
    double alpha;            /* --alpha A (smoothquant; <0: default) */
    int act_static;          /* --act-static */
    int skip_first;          /* --skip-first */
} PlanCli;

/* Defaults: no plan, group -1, spike_k SPIKES_DEFAULT_K (analysis/spikes.h), seed 1. */
void plancli_init(PlanCli *o);

/* The plan options' table entries (cli/opts.h), PLANCLI_NOPTS of them, the last
 * OPT_END: they write into o, which must outlive the parse. --plan is parsed
 * always but listed in --help only when with_plan_file. */
#define PLANCLI_NOPTS 10
void plancli_opts(PlanCli *o, int with_plan_file, Opt t[PLANCLI_NOPTS]);

/* Builds the plan for m into *out (initialised here; caller plan_done's it):
 * from --plan (validated against m) or --preset (spike-aware takes its sites
 * from stats' ranking; needs stats). stats may be NULL. */
Status plancli_build(const PlanCli *o, const Model *m, const QStatsFile *stats, Plan *out, Err *err);

/* What plan, quant and eval do once the model is loaded: opens stats_path (when
 * not NULL) into *sf, checked against m, then fills *plan from qfile (a `qscope
 * quant -o` file; its weights go to *stored, which the caller qstored_free's)
 * when qfile is not NULL, else as plancli_build does. The caller zeroes *sf and
 * plan_init's *plan before, and qstats_close's and plan_done's them after,
 * failure included. stored may be NULL when qfile is. */
Status plancli_load(const PlanCli *o, const Model *m, const char *stats_path, const char *qfile, QStatsFile *sf,
                    Plan *plan, QStored **stored, Err *err);

/* Writes p as plan JSON to out_path ("plan: wrote PATH" on stderr) or, when
 * out_path is NULL, to stdout. Returns 0, or -1 after printing the error. */
int plancli_write(const Plan *p, const char *out_path);

#endif
