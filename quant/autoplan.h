/* The automatic planner's optimiser: a multiple-choice knapsack. Every site
 * (a layer's projection) must take exactly one of its candidates; each
 * candidate has an exact size in bits and a predicted loss; the sum of the
 * chosen sizes must not exceed a budget, and the sum of the chosen losses is
 * minimised (the loss model is additive over sites: see analysis/autoplan.h).
 *
 * Method: dynamic programming over integer costs. Each site's cheapest
 * candidate is taken as its base, and the excess bits of every candidate over
 * that base are counted in units of q bits, rounded up; the DP is exact on
 * those unit costs with a capacity of floor((budget - base) / q) units.
 * Rounding up keeps every answer within the budget; the price is at most q
 * bits per site, so the answer's loss is at most the exact optimum at a
 * budget smaller by n_sites * q bits (AutoSolution.slack_bits). q = 1 (the
 * exact optimum) whenever the capacity fits the table limit. Beside it the
 * solver reports the Lagrangian (LP relaxation) lower bound on the exact
 * optimum at the full budget, so the gap loss - lower_bound bounds how far
 * the answer can be from optimal. */
#ifndef QS_QUANT_AUTOPLAN_H
#define QS_QUANT_AUTOPLAN_H

#include <stdint.h>

#include "core/status.h"

/* Candidates of site s are cand_bits[off[s] .. off[s + 1]) and the same range
 * of cand_loss; all borrowed for the call. Losses must be finite and >= 0,
 * bits >= 0. */
typedef struct AutoProblem {
    int64_t n_sites;
    const int64_t *off;        /* (n_sites + 1), off[0] = 0, strictly increasing */
    const int64_t *cand_bits;  /* (off[n_sites]) */
    const double *cand_loss;   /* (off[n_sites]) */
} AutoProblem;

typedef struct AutoSolveOpts {
    int64_t max_cells;         /* DP table limit, sites x (capacity + 1) (default 1 << 25):
                                  sets q; one byte per cell */
} AutoSolveOpts;

void autoplan_solve_opts_default(AutoSolveOpts *o);

typedef struct AutoSolution {
    int64_t *pick;             /* (n_sites) owned: chosen index within each site's range */
    int64_t bits;              /* Σ chosen bits (<= budget) */
    double loss;               /* Σ chosen losses */
    double lower_bound;        /* Lagrangian bound: no choice within the budget has a lower loss */
    int64_t unit_bits;         /* q: the DP's cost unit (1 = exact) */
    int64_t slack_bits;        /* n_sites * (q - 1) when q > 1, else 0: loss <= the exact
                                  optimum at budget - slack_bits */
    int64_t min_bits;          /* Σ of each site's cheapest candidate */
} AutoSolution;

/* Solves pr under budget_bits (see the header comment). Fails with ST_ERR_RANGE
 * ("needs at least N bits") when even the cheapest choice exceeds the budget,
 * ST_ERR_ARG on a malformed problem, ST_ERR_NOMEM. opts may be NULL
 * (defaults). Caller releases *out with autoplan_solution_done. */
Status autoplan_solve(const AutoProblem *pr, int64_t budget_bits, const AutoSolveOpts *opts, AutoSolution *out,
                      Err *err);

/* Frees pick; safe on a zeroed solution. */
void autoplan_solution_done(AutoSolution *s);

/* The Lagrangian lower bound alone: max over lambda >= 0 of
 * Σ_s min_c (loss + lambda bits) - lambda budget (bisection on lambda). */
double autoplan_lagrange_bound(const AutoProblem *pr, int64_t budget_bits);

#endif
