/* Plan execution spread over MPI ranks (core/dist.h; issue 18): the
 * projections of every layer are shared out, each rank quantizes its share
 * layer by layer (its sites' weights and H only), and the quantized sites
 * travel in the quantized-model file's site format (sessions/qmodel_file.h)
 * to every rank, which builds the kernels from them as `eval --quant` does.
 * So rank 0 holds, and `quant -o` writes, exactly what one process makes.
 *
 * Work units. A layer has four: {q, k, v} (one H, one GPTQ factorization
 * shared, one SmoothQuant norm group), {o}, {gate, up} (likewise) and
 * {down}; the embedding and the head are one more unit. Each unit's cost is
 * estimated from its shapes and methods (GPTQ n_out·n_in² per site plus
 * n_in³/3 for the shared factorization, AdaDim twice that, AQLM 8×, RTN and
 * conversions n_out·n_in) and the units are taken largest first over the
 * whole model: each rank, whenever it is free, takes the next one from a
 * counter shared by the job (core/dist.h dist_counter_next). Dealing them
 * out in advance balanced the estimates to 1 % but not the time: on a shared
 * machine one rank's core is often slower than the other's, and the job
 * waits for the slower rank. Taken as ranks become free, the ranks end
 * within about one of the last (smallest) units of each other. Which rank
 * builds a unit does not change its result.
 *
 * Every rank quantizes units until none is left before the exchange; the
 * exchange then sends each site once from its builder, in site order: to
 * every rank (MPI_Bcast), or, when only rank 0 needs the model (`quant`),
 * to rank 0 alone (MPI_Send). A builder keeps its own sites and the kernels
 * it built for them as they are; only the sites from other ranks are
 * unpacked and get kernels built. A rank that fails returns its error, and
 * the CLI stops the job naming the rank (main.c). */
#ifndef QS_SESSIONS_QMODEL_DIST_H
#define QS_SESSIONS_QMODEL_DIST_H

#include <stdint.h>

#include "analysis/qmodel.h"
#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/model.h"
#include "quant/plan.h"

/* The work units of p on m in the order the ranks take them: unit_of
 * (n_layers * PROJ_COUNT + 2 entries: projections layer-major, then the
 * head and the embedding) receives every site's unit (layer l's {q,k,v},
 * {o}, {gate,up}, {down} are 4l .. 4l + 3; the ends n_layers * 4); order
 * (n_layers * 4 + 1) the units by non-increasing estimated cost (ties: lower
 * unit first); cost (same length, may be NULL) the estimates, by the rule
 * above. ST_ERR_ARG when p does not resolve on m. */
Status qmodel_dist_units(const Model *m, const Plan *p, int64_t *unit_of, int64_t *order, double *cost, Err *err);

/* flags of qmodel_build_dist (0: every rank gets the model, no stored weights) */
enum {
    QDIST_KEEP = 1, /* this rank also keeps the unpacked weights (qmodel_build_keep) */
    QDIST_ROOT = 2  /* only rank 0 gets the model; the other ranks' *out is NULL */
};

/* qmodel_build (flags without QDIST_KEEP) or qmodel_build_keep (with it)
 * over every rank of the job; with one rank exactly those. The result equals
 * the single-process build: the same stored sites (keep), kernels, sizes,
 * AdaDim choices, errors and notes; site_seconds are the times on the owning
 * rank and seconds the wall time of the whole distributed build. Every rank
 * must call it with the same arguments, except QDIST_KEEP: only the ranks
 * that write the weights need them (the CLI keeps them on rank 0). With
 * QDIST_ROOT and more than one rank, the ranks other than 0 return ST_OK with
 * *out NULL. Borrowing as qmodel_build; caller frees *out with qmodel_free. */
Status qmodel_build_dist(const Model *m, const Plan *p, const QModelStats *st, int flags, Pool *pool, Progress *prog,
                         QModel **out, Err *err);

#endif
