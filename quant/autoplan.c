#include "quant/autoplan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

void autoplan_solve_opts_default(AutoSolveOpts *o) { o->max_cells = (int64_t)1 << 25; }

void autoplan_solution_done(AutoSolution *s) {
    free(s->pick);
    memset(s, 0, sizeof *s);
}

static Status check_problem(const AutoProblem *pr, Err *err) {
    if (pr->n_sites <= 0 || !pr->off || pr->off[0] != 0)
        return err_set(err, ST_ERR_ARG, "auto plan: %lld sites", (long long)pr->n_sites);
    for (int64_t s = 0; s < pr->n_sites; s++) {
        if (pr->off[s + 1] <= pr->off[s])
            return err_set(err, ST_ERR_ARG, "auto plan: site %lld has no candidate", (long long)s);
        if (pr->off[s + 1] - pr->off[s] > 255)
            return err_set(err, ST_ERR_ARG, "auto plan: site %lld has %lld candidates (at most 255)", (long long)s,
                           (long long)(pr->off[s + 1] - pr->off[s]));
        for (int64_t c = pr->off[s]; c < pr->off[s + 1]; c++)
            if (pr->cand_bits[c] < 0 || !(pr->cand_loss[c] >= 0) || !isfinite(pr->cand_loss[c]))
                return err_set(err, ST_ERR_ARG, "auto plan: site %lld candidate %lld: bits %lld, loss %g",
                               (long long)s, (long long)(c - pr->off[s]), (long long)pr->cand_bits[c],
                               pr->cand_loss[c]);
    }
    return ST_OK;
}

static int64_t site_min_bits(const AutoProblem *pr, int64_t s) {
    int64_t m = INT64_MAX;
    for (int64_t c = pr->off[s]; c < pr->off[s + 1]; c++)
        if (pr->cand_bits[c] < m) m = pr->cand_bits[c];
    return m;
}

/* Σ_s min_c (loss + lambda bits) - lambda budget; *bits gets Σ bits of the
 * minimisers (ties to the cheaper). */
static double lagrange_at(const AutoProblem *pr, int64_t budget, double lambda, int64_t *bits) {
    double g = -lambda * (double)budget;
    int64_t b = 0;
    for (int64_t s = 0; s < pr->n_sites; s++) {
        double best = INFINITY;
        int64_t bb = 0;
        for (int64_t c = pr->off[s]; c < pr->off[s + 1]; c++) {
            double v = pr->cand_loss[c] + lambda * (double)pr->cand_bits[c];
            if (v < best || (v == best && pr->cand_bits[c] < bb)) {
                best = v;
                bb = pr->cand_bits[c];
            }
        }
        g += best;
        b += bb;
    }
    *bits = b;
    return g;
}

double autoplan_lagrange_bound(const AutoProblem *pr, int64_t budget_bits) {
    int64_t bits;
    double best = lagrange_at(pr, budget_bits, 0.0, &bits);
    if (bits <= budget_bits) return best; /* the unconstrained optimum fits: the bound is tight */
    /* g is concave in lambda; its subgradient Σ bits - budget decreases with
     * lambda. Find lambda_hi whose minimisers fit, then bisect (geometric). */
    double lo = 0, hi = 1e-12;
    for (int i = 0; i < 400; i++) {
        double g = lagrange_at(pr, budget_bits, hi, &bits);
        if (g > best) best = g;
        if (bits <= budget_bits) break;
        lo = hi;
        hi *= 4;
    }
    for (int i = 0; i < 200; i++) {
        double mid = lo > 0 ? sqrt(lo * hi) : hi / 2;
        if (!(mid > lo && mid < hi)) break;
        double g = lagrange_at(pr, budget_bits, mid, &bits);
        if (g > best) best = g;
        if (bits > budget_bits) lo = mid;
        else hi = mid;
    }
    return best;
}

Status autoplan_solve(const AutoProblem *pr, int64_t budget_bits, const AutoSolveOpts *opts, AutoSolution *out,
                      Err *err) {
    memset(out, 0, sizeof *out);
    AutoSolveOpts def;
    if (!opts) {
        autoplan_solve_opts_default(&def);
        opts = &def;
    }
    Status st = check_problem(pr, err);
    if (st) return st;
    int64_t n = pr->n_sites, base = 0, max_excess = 0;
    for (int64_t s = 0; s < n; s++) {
        int64_t mb = site_min_bits(pr, s), mx = 0;
        base += mb;
        for (int64_t c = pr->off[s]; c < pr->off[s + 1]; c++)
            if (pr->cand_bits[c] - mb > mx) mx = pr->cand_bits[c] - mb;
        max_excess += mx;
    }
    out->min_bits = base;
    if (base > budget_bits)
        return err_set(err, ST_ERR_RANGE, "the budget (%lld bits) is below the cheapest choice (%lld bits)",
                       (long long)budget_bits, (long long)base);
    /* Capacity in bits beyond the bases; no need to go past what the most
     * expensive choice uses. */
    int64_t room = budget_bits - base;
    if (room > max_excess) room = max_excess;
    int64_t max_units = opts->max_cells / n - 1;
    if (max_units < 1) max_units = 1;
    int64_t q = room / max_units + 1;
    if (room <= max_units) q = 1;
    int64_t cap = room / q;
    uint8_t *choice = core_calloc((size_t)n * (size_t)(cap + 1), 1);
    double *dp = core_calloc((size_t)(cap + 1), sizeof *dp);
    double *nx = core_calloc((size_t)(cap + 1), sizeof *nx);
    int64_t *w = core_calloc((size_t)pr->off[n], sizeof *w);
    out->pick = core_calloc((size_t)n, sizeof *out->pick);
    if (!choice || !dp || !nx || !w || !out->pick) {
        st = err_set(err, ST_ERR_NOMEM, "auto plan: DP table %lld x %lld", (long long)n, (long long)(cap + 1));
        goto fail;
    }
    for (int64_t s = 0; s < n; s++) {
        int64_t mb = site_min_bits(pr, s);
        for (int64_t c = pr->off[s]; c < pr->off[s + 1]; c++) {
            int64_t e = pr->cand_bits[c] - mb;
            w[c] = e / q + (e % q != 0); /* rounded up: answers stay within the budget */
        }
    }
    /* dp[u]: least loss of the sites so far with at most u units. */
    for (int64_t u = 0; u <= cap; u++) dp[u] = 0;
    for (int64_t s = 0; s < n; s++) {
        uint8_t *ch = choice + (size_t)s * (size_t)(cap + 1);
        for (int64_t u = 0; u <= cap; u++) {
            double best = INFINITY;
            int bc = 0;
            for (int64_t c = pr->off[s]; c < pr->off[s + 1]; c++) {
                if (w[c] > u) continue;
                double v = dp[u - w[c]] + pr->cand_loss[c];
                if (v < best) {
                    best = v;
                    bc = (int)(c - pr->off[s]);
                }
            }
            nx[u] = best;
            ch[u] = (uint8_t)bc;
        }
        double *t = dp;
        dp = nx;
        nx = t;
    }
    int64_t u = cap;
    out->bits = 0;
    out->loss = 0;
    for (int64_t s = n - 1; s >= 0; s--) {
        int64_t c = choice[(size_t)s * (size_t)(cap + 1) + (size_t)u];
        out->pick[s] = c;
        u -= w[pr->off[s] + c];
        out->bits += pr->cand_bits[pr->off[s] + c];
        out->loss += pr->cand_loss[pr->off[s] + c];
    }
    out->unit_bits = q;
    out->slack_bits = q > 1 ? n * (q - 1) : 0;
    out->lower_bound = autoplan_lagrange_bound(pr, budget_bits);
    if (out->lower_bound > out->loss) out->lower_bound = out->loss; /* rounding of the float sums */
    free(choice);
    free(dp);
    free(nx);
    free(w);
    return ST_OK;
fail:
    free(choice);
    free(dp);
    free(nx);
    free(w);
    autoplan_solution_done(out);
    return st;
}
