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
 * conversions n_out·n_in) and the units are dealt out largest first to the
 * least loaded rank over the whole model (ties: lower unit, lower rank), the
 * same on every rank. Balancing over the whole model rather than per layer
 * matters: down_proj alone is over half a TinyLlama layer's GPTQ work.
 *
 * Every rank quantizes all of its units before the exchange, so no rank
 * waits on another mid-way; the exchange then sends each site once from its
 * owner (MPI_Bcast, in site order). A rank that fails returns its error,
 * and the CLI stops the job naming the rank (main.c). */
#ifndef QS_SESSIONS_QMODEL_DIST_H
#define QS_SESSIONS_QMODEL_DIST_H

#include <stdint.h>

#include "analysis/qmodel.h"
#include "core/pool.h"
#include "core/progress.h"
#include "core/status.h"
#include "model/model.h"
#include "quant/plan.h"

/* The rank of every site (owner, n_layers * PROJ_COUNT + 2 entries:
 * projections layer-major, then the head and the embedding) for n_ranks
 * ranks, and each rank's estimated load (load, n_ranks entries, may be NULL),
 * by the rule above. ST_ERR_ARG when p does not resolve on m. */
Status qmodel_dist_assign(const Model *m, const Plan *p, int n_ranks, int *owner, double *load, Err *err);

/* qmodel_build (keep = 0) or qmodel_build_keep (keep = 1) over every rank
 * of the job; with one rank exactly those. The result on every rank equals
 * the single-process build: the same stored sites (keep), kernels, sizes,
 * AdaDim choices, errors and notes; site_seconds are the times on the owning
 * rank and seconds the wall time of the whole distributed build. Every rank
 * must call it with the same arguments, except keep: only the ranks that
 * write the weights need them (the CLI keeps them on rank 0). Borrowing as qmodel_build; caller
 * frees *out with qmodel_free. */
Status qmodel_build_dist(const Model *m, const Plan *p, const QModelStats *st, int keep, Pool *pool, Progress *prog,
                         QModel **out, Err *err);

#endif
