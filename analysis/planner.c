#include "analysis/planner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "analysis/qmodel.h"
#include "analysis/sensitivity.h"
#include "analysis/sitecal.h"
#include "analysis/speedtab.h"
#include "analysis/statsfile.h"
#include "core/alloc.h"
#include "model/weight.h"
#include "quant/ggml_type.h"
#include "quant/rtn.h"

/* === Candidate tables === */

#define KIND_FMT(f, nm) \
    {nm "/t", f, GROUP_TENSOR, 0, 0, NULL, PLANNER_TARGET_ANY, 0}, \
    {nm "/oc", f, GROUP_OC, 0, 0, NULL, PLANNER_TARGET_ANY, 0}, \
    {nm "/ic", f, GROUP_IC, 0, 0, NULL, PLANNER_TARGET_ANY, 0}, \
    {nm "/oc-g", f, GROUP_OC, 1, 0, NULL, PLANNER_TARGET_ANY, 0}, \
    {nm "/ic-g", f, GROUP_IC, 1, 0, NULL, PLANNER_TARGET_ANY, 0}

/* Every symmetric cell the sensitivity map measures, plus fp16. */
static const PlannerKind KINDS_ANY[] = {
    {"fp16", QF_F16, GROUP_OC, 0, 0, NULL, PLANNER_TARGET_ANY, 0},
    KIND_FMT(QF_INT8, "int8"), KIND_FMT(QF_INT6, "int6"), KIND_FMT(QF_INT4, "int4"),
    KIND_FMT(QF_INT3, "int3"), KIND_FMT(QF_INT2, "int2"),
    KIND_FMT(QF_FP8_E4M3, "e4m3"), KIND_FMT(QF_FP8_E5M2, "e5m2"),
};

/* ggml's block types (quant/format.h's QFAM_GGML rows: byte-identical to
 * llama-quantize), highest precision first; the method is chosen per
 * candidate (kind_entry: imatrix where ggml has a weighted quantizer). */
static const PlannerKind KINDS_LLAMACPP[] = {
    {"f16", QF_F16, GROUP_OC, 0, 0, "F16", PLANNER_TARGET_LLAMACPP, 0},
    {"q8_0", QF_Q8_0, GROUP_OC, 0, 0, "Q8_0", PLANNER_TARGET_LLAMACPP, 0},
    {"q6_k", QF_Q6_K, GROUP_OC, 0, 0, "Q6_K", PLANNER_TARGET_LLAMACPP, 0},
    {"q5_k", QF_Q5_K, GROUP_OC, 0, 0, "Q5_K", PLANNER_TARGET_LLAMACPP, 0},
    {"q5_1", QF_Q5_1, GROUP_OC, 0, 0, "Q5_1", PLANNER_TARGET_LLAMACPP, 0},
    {"q5_0", QF_Q5_0, GROUP_OC, 0, 0, "Q5_0", PLANNER_TARGET_LLAMACPP, 0},
    {"q4_k", QF_Q4_K, GROUP_OC, 0, 0, "Q4_K", PLANNER_TARGET_LLAMACPP, 0},
    {"q4_1", QF_Q4_1, GROUP_OC, 0, 0, "Q4_1", PLANNER_TARGET_LLAMACPP, 0},
    {"q4_0", QF_Q4_0, GROUP_OC, 0, 0, "Q4_0", PLANNER_TARGET_LLAMACPP, 0},
    {"q3_k", QF_Q3_K, GROUP_OC, 0, 0, "Q3_K", PLANNER_TARGET_LLAMACPP, 0},
    {"q2_k", QF_Q2_K, GROUP_OC, 0, 0, "Q2_K", PLANNER_TARGET_LLAMACPP, 0},
};

int planner_end_formats(PlannerTarget target, QFormat *out, int cap) {
    if (target != PLANNER_TARGET_LLAMACPP) return 0;
    int n = (int)(sizeof KINDS_LLAMACPP / sizeof KINDS_LLAMACPP[0]);
    for (int i = 0; i < n && i < cap; i++) out[i] = KINDS_LLAMACPP[i].fmt;
    return n;
}

const PlannerKind *planner_kinds(PlannerTarget target, int *n) {
    if (target == PLANNER_TARGET_LLAMACPP) {
        *n = (int)(sizeof KINDS_LLAMACPP / sizeof KINDS_LLAMACPP[0]);
        return KINDS_LLAMACPP;
    }
    *n = (int)(sizeof KINDS_ANY / sizeof KINDS_ANY[0]);
    return KINDS_ANY;
}

static const char *const TARGET_NAMES[PLANNER_TARGET_COUNT] = {"any", "llamacpp"};

const char *planner_target_name(PlannerTarget t) {
    return (unsigned)t < PLANNER_TARGET_COUNT ? TARGET_NAMES[t] : "?";
}

int planner_target_parse(const char *s) {
    for (int i = 0; i < PLANNER_TARGET_COUNT; i++)
        if (s && !strcasecmp(s, TARGET_NAMES[i])) return i;
    if (s && (!strcasecmp(s, "llama.cpp") || !strcasecmp(s, "gguf"))) return PLANNER_TARGET_LLAMACPP;
    return -1;
}

void planner_opts_default(PlannerOpts *o) {
    memset(o, 0, sizeof *o);
    o->method = QM_RTN;
    o->price_method = 1;
    o->oerr_rows = 256;
    autoplan_solve_opts_default(&o->solve);
}

void planner_result_done(PlannerResult *r) {
    plan_done(&r->plan);
    autoplan_solution_done(&r->sol);
    free(r->sites);
    memset(r, 0, sizeof *r);
}

/* The largest divisor of n that is <= g and a multiple of 4 (0: none), as
 * the sensitivity map picks its group sizes. */
static int64_t fit_group(int64_t n, int64_t g) {
    for (int64_t d = (g / 4) * 4; d >= 4; d -= 4)
        if (n % d == 0) return d;
    return 0;
}

/* The plan entry of kind k on a site whose map group sizes are (oc_g, ic_g)
 * (for an extra group size, oc_g is the site's n_in) and rows n_in long; 0
 * when the kind does not apply there. method: the integer sites' (QM_RTN or
 * QM_GPTQ); ggml types take GPTQ on their own grid for gptq (imatrix where
 * a type had no grid), rtn otherwise; ends (no H) rtn. */
static int kind_entry(const PlannerKind *k, int64_t oc_g, int64_t ic_g, int64_t n_in, QMethod method, int end,
                      PlanEntry *e) {
    plan_entry_default(e);
    e->w.fmt = k->fmt;
    e->w.sym = !k->asym;
    e->w.dim = k->dim;
    e->w.group = 0;
    const QFormatTraits *t = qformat_traits(k->fmt);
    if (t->family == QFAM_GGML) {
        const GgmlTypeTraits *g = ggml_type_traits((uint32_t)t->ggml_type);
        if (n_in % g->block_size) return 0;
        e->w.sym = 1;
        GgmlGrid grid;
        if (!end && method == QM_GPTQ && ggml_type_grid((uint32_t)t->ggml_type, &grid) == 0) {
            e->method = QM_GPTQ; /* GPTQ on the type's own grid (quant/gptq.h) */
            e->gptq.act_order = 1;
        } else {
            e->method = !end && method != QM_RTN && g->quant_w ? QM_IMATRIX : QM_RTN;
        }
        return 1;
    }
    if (k->grouped == 2) { /* an extra group size */
        e->w.group = fit_group(oc_g, k->need_group);
        if (e->w.group <= 0) return 0;
    } else if (k->grouped) {
        e->w.group = k->dim == GROUP_OC ? oc_g : ic_g;
        if (e->w.group <= 0) return 0;
        if (k->need_group > 0 && e->w.group != k->need_group) return 0;
    }
    e->method = t->is_int && !end ? method : QM_RTN;
    if (e->method == QM_GPTQ) e->gptq.act_order = 1; /* as the GPTQ presets */
    return 1;
}

/* Relative output error of entry e on (layer, proj) from the map (symmetric
 * RTN cells); 0 for the float formats; -1 when the map lacks the cell. */
static double entry_oerr(const struct CalibStats *cs, int64_t l, int p, const PlanEntry *e) {
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    if (!t->needs_scale && e->w.fmt != QF_AQLM && t->family != QFAM_GGML) return 0;
    if (t->family == QFAM_GGML || !e->w.sym) return -1;
    double oerr;
    if (!calib_sens_cell(cs, l, p, &e->w, NULL, &oerr) || !(oerr >= 0)) return -1;
    return oerr;
}

static double site_scale_of(const PlannerOpts *o, int64_t s) {
    return o->site_scale ? o->site_scale[s] : 1.0;
}

static void fmt_bits(char *buf, size_t n, double bits) {
    if (fabs(bits) >= 8e6) snprintf(buf, n, "%.2f MB", bits / 8e6);
    else snprintf(buf, n, "%.1f kB", bits / 8e3);
}

/* === Build === */

#define MAX_KINDS 96
#define MAX_COMPUTED 64

/* The candidate arrays of the knapsack, site after site. */
typedef struct Cands {
    int64_t *off;            /* (n_sites + 1) */
    int64_t *cost;           /* bits, or bytes x 8 with a byte budget */
    int64_t *other;          /* the other of (bits, bytes x 8) */
    double *loss, *oerr;
    double *time;            /* matmul seconds per token (decode), with a speed table; else NULL */
    int *kind;
    int64_t n;               /* candidates so far */
} Cands;

/* Adds a candidate to the current site (first .. n), sorted by cost. */
static void cands_add(Cands *c, int64_t first, int64_t cost, int64_t other, double loss, double oerr, double time,
                      int kind) {
    int64_t j = c->n;
    while (j > first && (c->cost[j - 1] > cost || (c->cost[j - 1] == cost && c->loss[j - 1] > loss))) {
        c->cost[j] = c->cost[j - 1];
        c->other[j] = c->other[j - 1];
        c->loss[j] = c->loss[j - 1];
        c->oerr[j] = c->oerr[j - 1];
        if (c->time) c->time[j] = c->time[j - 1];
        c->kind[j] = c->kind[j - 1];
        j--;
    }
    c->cost[j] = cost;
    c->other[j] = other;
    c->loss[j] = loss;
    c->oerr[j] = oerr;
    if (c->time) c->time[j] = time;
    c->kind[j] = kind;
    c->n++;
}

/* Keeps the site's Pareto set, cheapest first: fewer bits and lower loss,
 * and with times also faster (a candidate survives unless another is no
 * dearer, no worse and no slower). */
static void cands_prune(Cands *c, int64_t first) {
    int64_t w = first;
    for (int64_t j = first; j < c->n; j++) {
        int dominated = 0;
        if (!c->time) dominated = w > first && c->loss[j] >= c->loss[w - 1];
        else
            for (int64_t i = first; i < w && !dominated; i++) /* kept ones are no dearer */
                dominated = c->loss[i] <= c->loss[j] && c->time[i] <= c->time[j];
        if (dominated) continue;
        c->cost[w] = c->cost[j];
        c->other[w] = c->other[j];
        c->loss[w] = c->loss[j];
        c->oerr[w] = c->oerr[j];
        if (c->time) c->time[w] = c->time[j];
        c->kind[w] = c->kind[j];
        w++;
    }
    c->n = w;
}

/* The candidates of linear site s (layer l, proj p). */
static Status site_cands(const Model *m, const struct CalibStats *cs, const PlannerOpts *o, const PlannerKind *kinds,
                         int nk, int64_t s, int by_bytes, Cands *c, Err *err) {
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    int64_t l = s / PLAN_NPROJ;
    int p = (int)(s % PLAN_NPROJ);
    int64_t no, ni, og = 0, ig = 0;
    plan_proj_shape(&pm, p, &no, &ni);
    calib_sens_groups(cs, l, p, &og, &ig);
    int64_t first = c->n;
    PlanEntry ents[MAX_KINDS], comp[MAX_COMPUTED];
    double oe[MAX_KINDS], xo[MAX_COMPUTED];
    int ok[MAX_KINDS], slot[MAX_KINDS], nc = 0;
    for (int k = 0; k < nk; k++) {
        ok[k] = 0;
        slot[k] = -1;
        if (o->formats && !(o->formats & (1u << kinds[k].fmt))) continue;
        if (!kind_entry(&kinds[k], kinds[k].grouped == 2 ? ni : og, ig, ni, o->method, 0, &ents[k])) continue;
        const PlanEntry *e = &ents[k];
        const QFormatTraits *t = qformat_traits(e->w.fmt);
        int in_map = kinds[k].grouped != 2 && e->w.sym && t->family != QFAM_GGML;
        if (kinds[k].grouped == 2 && e->w.sym && e->w.group == og) continue; /* the map's oc-g row holds it */
        int own = o->h && o->price_method && e->method == QM_GPTQ && e->w.dim == GROUP_OC;
        if (!t->needs_scale && t->family != QFAM_GGML) { /* fp16 */
            oe[k] = 0;
        } else if (in_map && !own) {
            oe[k] = entry_oerr(cs, l, p, e);
            if (oe[k] < 0) continue;
        } else {
            if (!o->h) continue; /* computed errors need H */
            if (nc >= MAX_COMPUTED) return err_set(err, ST_ERR_ARG, "auto plan: more than %d computed candidates per site",
                                                   MAX_COMPUTED);
            slot[k] = nc;
            comp[nc] = *e;
            if (!o->price_method && comp[nc].method == QM_GPTQ) comp[nc].method = QM_RTN;
            if (!o->price_method && comp[nc].method == QM_IMATRIX) comp[nc].method = QM_RTN;
            nc++;
        }
        ok[k] = 1;
    }
    if (nc) {
        Status st = qmodel_site_oerr(m, o->h, l, p, comp, nc, o->oerr_rows, o->pool, xo, err);
        if (st) return err_wrap(err, "auto plan: layer %lld %s", (long long)l, plan_proj_name(p)), st;
    }
    for (int k = 0; k < nk; k++) {
        if (!ok[k]) continue;
        double e_ = slot[k] >= 0 ? xo[slot[k]] : oe[k];
        if (!(e_ >= 0)) continue;
        int64_t b = plan_entry_bits(&ents[k], no, ni, GROUP_TENSOR, NULL);
        int64_t b8 = (int64_t)plan_entry_bytes(&ents[k], no, ni, GROUP_TENSOR, NULL) * 8;
        double tm = 0;
        if (o->speed) {
            Status st = speedtab_get(o->speed, &ents[k], no, ni, o->speed_pool, &tm, NULL, err);
            if (st) return st;
        }
        cands_add(c, first, by_bytes ? b8 : b, by_bytes ? b : b8, site_scale_of(o, s) * e_, e_, tm, k);
    }
    cands_prune(c, first);
    if (c->n == first)
        return err_set(err, ST_ERR_ARG, "layer %lld %s: no candidate of target '%s'%s (map group sizes oc %lld, ic %lld)",
                       (long long)l, plan_proj_name(p), planner_target_name(o->target),
                       o->formats ? " among --formats" : "", (long long)og, (long long)ig);
    return ST_OK;
}

/* The candidates of end `end` (0 embedding, 1 head): the end kinds
 * kinds[k0 .. k1), costed by end_loss (calibrated) or the relative weight
 * error of ggml's rounding (uncalibrated). */
static Status end_cands(const Model *m, const PlannerOpts *o, const PlannerKind *kinds, int k0, int k1, int end,
                        int by_bytes, Cands *c, Err *err) {
    const Weight *w = end ? &m->output : &m->tok_embd;
    int64_t no = w->n_out, ni = w->n_in, nn = no * ni, first = c->n;
    const float *W = NULL;
    float *W_own = NULL, *Wq = NULL;
    Status st = ST_OK;
    if (!o->end_loss) {
        if ((st = weight_to_f32(w, o->pool, &W, &W_own, err))) return st;
        if (!(Wq = malloc((size_t)nn * sizeof *Wq))) {
            st = err_set(err, ST_ERR_NOMEM, "auto plan: %s copy", end ? "head" : "embedding");
            goto done;
        }
    }
    for (int k = k0; k < k1; k++) {
        if (o->formats && !(o->formats & (1u << kinds[k].fmt))) continue;
        PlanEntry e;
        if (!kind_entry(&kinds[k], 0, 0, ni, QM_RTN, 1, &e)) continue;
        const QFormatTraits *t = qformat_traits(e.w.fmt);
        double loss;
        if (!t->needs_scale && t->family != QFAM_GGML) {
            loss = 0;
        } else if (o->end_loss) {
            loss = o->end_loss[end * QF_COUNT + e.w.fmt];
            if (!(loss >= 0)) continue; /* not measured */
        } else {
            if ((st = rtn_fake_quantize(W, no, ni, &e.w, Wq, err))) goto done;
            double dn = 0, wn = 0;
            for (int64_t i = 0; i < nn; i++) {
                double d = (double)Wq[i] - W[i];
                dn += d * d;
                wn += (double)W[i] * W[i];
            }
            loss = wn > 0 ? dn / wn : 0;
        }
        int64_t b = plan_entry_bits(&e, no, ni, GROUP_TENSOR, NULL);
        int64_t b8 = (int64_t)plan_entry_bytes(&e, no, ni, GROUP_TENSOR, NULL) * 8;
        double tm = 0; /* the embedding is a lookup */
        if (end && o->speed && (st = speedtab_get(o->speed, &e, no, ni, o->speed_pool, &tm, NULL, err))) goto done;
        cands_add(c, first, by_bytes ? b8 : b, by_bytes ? b : b8, loss, loss, tm, k);
    }
    cands_prune(c, first);
    if (c->n == first)
        st = err_set(err, ST_ERR_ARG, "%s: no candidate of target '%s'%s", end ? "output head" : "embedding",
                     planner_target_name(o->target), o->formats ? " among --formats" : "");
done:
    weight_f32_free(W_own);
    free(Wq);
    return st;
}

/* Fills ps (the choice c of a site) with its name, size, losses and the
 * trade-off against its neighbours on the site's Pareto list [lo, hi). */
static void site_why(const Cands *c, const PlannerKind *kinds, int64_t ci, int64_t lo, int64_t hi, int by_bytes,
                     PlannerSite *ps) {
    int k = c->kind[ci];
    snprintf(ps->name, sizeof ps->name, "%s", kinds[k].name);
    ps->fmt = kinds[k].fmt;
    ps->bits = by_bytes ? c->other[ci] : c->cost[ci];
    ps->oerr = c->oerr[ci];
    ps->loss = c->loss[ci];
    char a[96] = "", b[96] = "", sz[24];
    if (ci > lo) {
        fmt_bits(sz, sizeof sz, (double)(c->cost[ci] - c->cost[ci - 1]));
        snprintf(a, sizeof a, "; %s saves %s for +%.3g", kinds[c->kind[ci - 1]].name, sz, c->loss[ci - 1] - c->loss[ci]);
    }
    if (ci + 1 < hi) {
        fmt_bits(sz, sizeof sz, (double)(c->cost[ci + 1] - c->cost[ci]));
        snprintf(b, sizeof b, "; %s costs +%s for -%.3g", kinds[c->kind[ci + 1]].name, sz, c->loss[ci] - c->loss[ci + 1]);
    }
    snprintf(ps->why, sizeof ps->why, "%s: loss %.3g (out err %.3g)%s%s", kinds[k].name, c->loss[ci], c->oerr[ci], a, b);
}

/* The knapsack under bits and a time budget t_max (seconds per token over
 * the sites): the bit-exact DP on loss + lambda * time, lambda the least
 * (by bisection) whose answer keeps the time budget. A feasible answer, not
 * certified optimal for the two constraints; sol->loss is recomputed as the
 * true loss and sol->lower_bound is the bits-only Lagrangian bound (also a
 * bound for the constrained problem). */
static Status solve_with_time(const AutoProblem *pr, const Cands *c, int64_t budget, double t_max,
                              const AutoSolveOpts *so, AutoSolution *out, double *lambda, Err *err) {
    int64_t n = pr->n_sites, m = pr->off[n];
    double t_min = 0, loss_max = 0;
    for (int64_t s = 0; s < n; s++) {
        double f = INFINITY;
        for (int64_t j = pr->off[s]; j < pr->off[s + 1]; j++) {
            if (c->time[j] < f) f = c->time[j];
            if (c->loss[j] > loss_max) loss_max = c->loss[j];
        }
        t_min += f;
    }
    if (t_max < t_min)
        return err_set(err, ST_ERR_RANGE, "the speed asked needs at most %.4g ms of matmuls per token; the fastest "
                       "candidates take %.4g ms (%.1f tok/s without the fixed part)", 1e3 * t_max, 1e3 * t_min,
                       1.0 / t_min);
    double *lt = malloc((size_t)m * sizeof *lt);
    if (!lt) return err_set(err, ST_ERR_NOMEM, "auto plan: speed");
    AutoProblem q = *pr;
    q.cand_loss = lt;
    AutoSolution best = {0}, cur = {0};
    int have = 0;
    double lo = 0, hi = 0, lam = 0;
    Status st = ST_OK;
    for (int it = 0; it < 120; it++) {
        for (int64_t j = 0; j < m; j++) lt[j] = c->loss[j] + lam * c->time[j];
        if ((st = autoplan_solve(&q, budget, so, &cur, err))) break;
        double t = 0;
        for (int64_t s = 0; s < n; s++) t += c->time[pr->off[s] + cur.pick[s]];
        if (t <= t_max) {
            autoplan_solution_done(&best);
            best = cur;
            memset(&cur, 0, sizeof cur);
            have = 1;
            *lambda = lam;
            if (lam == 0) break; /* not binding */
            hi = lam;
        } else {
            autoplan_solution_done(&cur);
            lo = lam;
        }
        if (hi == 0) lam = lam > 0 ? lam * 4 : (loss_max > 0 ? loss_max : 1) / (t_min > 0 ? t_min : 1e-9);
        else if (hi - lo <= 1e-6 * hi) break;
        else lam = 0.5 * (lo + hi);
    }
    autoplan_solution_done(&cur);
    free(lt);
    if (!st && !have) st = err_set(err, ST_ERR_RANGE, "the speed constraint could not be met within the budget");
    if (st) {
        autoplan_solution_done(&best);
        return st;
    }
    best.loss = 0;
    for (int64_t s = 0; s < n; s++) best.loss += pr->cand_loss[pr->off[s] + best.pick[s]];
    best.lower_bound = autoplan_lagrange_bound(pr, budget);
    if (best.lower_bound > best.loss) best.lower_bound = best.loss;
    *out = best;
    return ST_OK;
}

/* The candidate kinds of a request: the target's table, then the extra
 * group sizes' rows (int4/3/2 also asymmetric), then the ends' rows (copies
 * of table rows). Names of the extra rows live in xname. */
typedef struct KindTable {
    PlannerKind kinds[MAX_KINDS];
    char xname[48][24];
    int nk;                  /* rows in all */
    int nk_table;            /* rows from the target's table */
    int end_k0, end_k1;      /* [end_k0, end_k1): the ends' rows */
    int n_extra;             /* extra group sizes' rows */
} KindTable;

static void kinds_build(const PlannerOpts *o, KindTable *kt) {
    static const QFormat xf[] = {QF_INT8, QF_INT6, QF_INT4, QF_INT3, QF_INT2};
    int nk0;
    const PlannerKind *kinds0 = planner_kinds(o->target, &nk0);
    int nk = 0, nx = 0;
    for (int k = 0; k < nk0 && nk < 32; k++) kt->kinds[nk++] = kinds0[k];
    kt->nk_table = nk;
    for (int g = 0; o->target == PLANNER_TARGET_ANY && g < o->n_extra_groups && g < 4; g++)
        for (int f = 0; f < 5; f++)
            for (int asym = 0; asym < 2 && nx < 48; asym++) {
                if (asym && qformat_traits(xf[f])->bits > 4) continue;
                snprintf(kt->xname[nx], sizeof kt->xname[nx], "%s%s/oc%lld", qformat_traits(xf[f])->name,
                         asym ? "a" : "", (long long)o->extra_groups[g]);
                kt->kinds[nk++] = (PlannerKind){kt->xname[nx], xf[f], GROUP_OC, 2, o->extra_groups[g], NULL,
                                                PLANNER_TARGET_ANY, asym};
                nx++;
            }
    kt->n_extra = nx;
    kt->end_k0 = nk;
    QFormat ef[24];
    int ne = planner_end_formats(o->target, ef, 24);
    for (int i = 0; i < ne && nk < MAX_KINDS; i++)
        for (int k = 0; k < kt->nk_table; k++)
            if (kinds0[k].fmt == ef[i]) kt->kinds[nk++] = kinds0[k];
    kt->end_k1 = nk;
    kt->nk = nk;
}

/* What the request needs from the statistics and the options before any
 * candidate is priced: a sensitivity map with output errors, H where the
 * kinds need it, a budget. */
static Status planner_check(const struct CalibStats *cs, const PlannerOpts *o, const KindTable *kt, Err *err) {
    if (kt->n_extra && !o->h) return err_set(err, ST_ERR_ARG, "extra group sizes need H (the stats file's .h64)");
    if (o->target == PLANNER_TARGET_LLAMACPP && !o->h)
        return err_set(err, ST_ERR_ARG, "target llamacpp prices ggml's types from the weights and H: the stats file "
                                        "needs its H (.h64)");
    int64_t og, ig;
    double probe;
    QParams q = {QF_INT8, 1, GROUP_OC, 0};
    if (!calib_sens_groups(cs, 0, 0, &og, &ig))
        return err_set(err, ST_ERR_ARG, "the statistics have no sensitivity map: run `qscope calib` without --no-sensitivity");
    if (!calib_sens_cell(cs, 0, 0, &q, NULL, &probe) || isnan(probe))
        return err_set(err, ST_ERR_ARG, "the sensitivity map has no output errors (calibrated without H): "
                                        "the planner needs them; rerun `qscope calib` with H");
    if (!(o->bpw > 0) && o->bytes == 0) return err_set(err, ST_ERR_ARG, "auto plan: no budget (give --bpw or --bytes)");
    return ST_OK;
}

/* The budget of the sites: out's fixed_bits, all_params and budget_bits,
 * and *lin_budget, the sites' share (bits, or bytes x 8 with a byte budget);
 * *fixed_bytes is the fp16 embedding and head when they are not sites. */
static Status planner_budget(const PlanModel *pm, const PlannerOpts *o, int has_ends, const PlanEntry *half,
                             PlannerResult *out, int64_t *lin_budget, size_t *fixed_bytes, Err *err) {
    Plan fixed;
    plan_init(&fixed);
    fixed.def = fixed.embed = fixed.output = *half;
    PlanSize fs;
    Status st = plan_size(&fixed, pm, NULL, &fs, err);
    plan_done(&fixed);
    if (st) return st;
    out->fixed_bits = has_ends ? 0 : fs.all_bits - fs.lin_bits;
    out->all_params = fs.all_params;
    *fixed_bytes = has_ends ? 0 : fs.all_bytes - fs.lin_bytes;
    if (!(o->bpw > 0)) {
        if (o->bytes <= *fixed_bytes)
            return err_set(err, ST_ERR_RANGE, "budget %zu bytes: the fp16 embedding and head alone take %zu", o->bytes,
                           *fixed_bytes);
        out->budget_bits = (int64_t)o->bytes * 8;
        *lin_budget = (int64_t)(o->bytes - *fixed_bytes) * 8;
    } else {
        out->budget_bits = (int64_t)floor(o->bpw * (double)fs.all_params);
        *lin_budget = out->budget_bits - out->fixed_bits;
    }
    return ST_OK;
}

static void cands_free(Cands *c) {
    free(c->off);
    free(c->cost);
    free(c->other);
    free(c->loss);
    free(c->oerr);
    free(c->kind);
    free(c->time);
}

/* Room for nk candidates on each of n_all sites (times with a speed table). */
static Status cands_alloc(Cands *c, int64_t n_all, int nk, int with_time, Err *err) {
    size_t cap = (size_t)n_all * (size_t)nk;
    c->off = core_calloc((size_t)n_all + 1, sizeof *c->off);
    c->cost = core_calloc(cap, sizeof *c->cost);
    c->other = core_calloc(cap, sizeof *c->other);
    c->loss = core_calloc(cap, sizeof *c->loss);
    c->oerr = core_calloc(cap, sizeof *c->oerr);
    c->kind = core_calloc(cap, sizeof *c->kind);
    c->time = with_time ? core_calloc(cap, sizeof *c->time) : NULL;
    if (!c->off || !c->cost || !c->other || !c->loss || !c->oerr || !c->kind || (with_time && !c->time))
        return err_set(err, ST_ERR_NOMEM, "auto plan: candidates");
    return ST_OK;
}

/* The knapsack over the priced candidates (under the speed bound too when
 * one is asked) into out->sol; a budget below the cheapest plan is
 * ST_ERR_RANGE naming that plan's size. */
static Status planner_solve(const Model *m, const PlannerOpts *o, const Cands *c, int64_t n_all, int has_ends,
                            const PlanEntry *half, int64_t lin_budget, int by_bytes, size_t fixed_bytes,
                            PlannerResult *out, Err *err) {
    AutoProblem pr = {.n_sites = n_all, .off = c->off, .cand_bits = c->cost, .cand_loss = c->loss};
    Status st;
    if (o->min_decode_tps > 0) {
        if (!o->speed) return err_set(err, ST_ERR_ARG, "auto plan: a speed constraint needs a speed table");
        /* the head's time when it is not a site (fp16) */
        double fixed_t = 0;
        if (!has_ends && (st = speedtab_get(o->speed, half, m->output.n_out, m->output.n_in, o->speed_pool, &fixed_t,
                                            NULL, err)))
            return st;
        if (fixed_t >= 1.0 / o->min_decode_tps)
            return err_set(err, ST_ERR_RANGE, "the fp16 head alone (not a site of this target) takes %.4g ms per token: "
                           "at most %.1f tok/s, below the %.1f asked", 1e3 * fixed_t, 1.0 / fixed_t, o->min_decode_tps);
        /* its messages name the speed or the budget */
        return solve_with_time(&pr, c, lin_budget, 1.0 / o->min_decode_tps - fixed_t, &o->solve, &out->sol,
                               &out->speed_lambda, err);
    }
    st = autoplan_solve(&pr, lin_budget, &o->solve, &out->sol, err);
    if (st == ST_ERR_RANGE) {
        int64_t min_bits = 0;
        for (int64_t s = 0; s < n_all; s++) min_bits += c->cost[c->off[s]];
        double min_all = (double)min_bits + (double)(by_bytes ? (int64_t)fixed_bytes * 8 : out->fixed_bits);
        return err_set(err, ST_ERR_RANGE, "the budget is below the cheapest plan of these candidates: %.4f bpw (%.0f bytes)",
                       min_all / (double)out->all_params, min_all / 8);
    }
    return st;
}

/* The plan of the solution: the most common choice is the default entry,
 * the others "L.proj" rules; each site's (and end's) why. */
static Status planner_plan(const Model *m, const struct CalibStats *cs, const PlannerOpts *o, const KindTable *kt,
                           const Cands *c, int64_t n, int has_ends, const PlanEntry *half, int by_bytes,
                           PlannerResult *out, Err *err) {
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    const PlannerKind *kinds = kt->kinds;
    int count[MAX_KINDS] = {0};
    for (int64_t s = 0; s < n; s++) count[c->kind[c->off[s] + out->sol.pick[s]]]++;
    int top = 0;
    for (int k = 1; k < kt->nk_table; k++) /* the default comes from the table (same groups on every site) */
        if (count[k] > count[top]) top = k;
    Plan *pl = &out->plan;
    if (by_bytes) snprintf(pl->name, sizeof pl->name, "auto-%zuB", o->bytes);
    else snprintf(pl->name, sizeof pl->name, "auto-%.2fbpw", o->bpw);
    pl->embed = pl->output = *half;
    for (int end = 0; has_ends && end < 2; end++) {
        int64_t ci = c->off[n + end] + out->sol.pick[n + end];
        PlanEntry *e = end ? &pl->output : &pl->embed;
        kind_entry(&kinds[c->kind[ci]], 0, 0, end ? m->output.n_in : m->tok_embd.n_in, QM_RTN, 1, e);
        site_why(c, kinds, ci, c->off[n + end], c->off[n + end + 1], by_bytes, &out->ends[end]);
    }
    {
        int64_t og = 0, ig = 0, no, ni;
        calib_sens_groups(cs, 0, 0, &og, &ig);
        plan_proj_shape(&pm, 0, &no, &ni);
        if (!kind_entry(&kinds[top], og, ig, ni, o->method, 0, &pl->def)) pl->def = *half;
    }
    for (int64_t s = 0; s < n; s++) {
        int64_t l = s / PLAN_NPROJ;
        int p = (int)(s % PLAN_NPROJ);
        int64_t og = 0, ig = 0, no, ni, ci = c->off[s] + out->sol.pick[s];
        calib_sens_groups(cs, l, p, &og, &ig);
        plan_proj_shape(&pm, p, &no, &ni);
        const PlannerKind *k = &kinds[c->kind[ci]];
        PlanEntry e;
        kind_entry(k, k->grouped == 2 ? ni : og, ig, ni, o->method, 0, &e);
        if (e.w.fmt != pl->def.w.fmt || e.w.sym != pl->def.w.sym || e.w.dim != pl->def.w.dim ||
            e.w.group != pl->def.w.group || e.method != pl->def.method) {
            char pat[32];
            snprintf(pat, sizeof pat, "%lld.%s", (long long)l, plan_proj_name(p));
            Status st = plan_add_rule(pl, pat, PF_FMT | PF_GROUP | PF_METHOD, &e, err);
            if (st) return st;
        }
        PlannerSite *ps = &out->sites[s];
        ps->kind = c->kind[ci] < kt->nk_table ? c->kind[ci] : -1;
        site_why(c, kinds, ci, c->off[s], c->off[s + 1], by_bytes, ps);
    }
    return ST_OK;
}

/* The plan's notes (how it was solved and priced), its predicted speed,
 * and the checks that it keeps the speed asked and the budget. */
static Status planner_finish(const PlanModel *pm, const PlannerOpts *o, int64_t n_all, int by_bytes,
                             PlannerResult *out, Err *err) {
    Plan *pl = &out->plan;
    Status st;
    if ((st = plan_add_note(pl, err,
                            "auto: %s target, %lld sites, multiple-choice knapsack by DP (cost unit %lld bits%s), "
                            "predicted loss %.4g%s, Lagrangian lower bound %.4g",
                            planner_target_name(o->target), (long long)n_all, (long long)out->sol.unit_bits,
                            out->sol.unit_bits > 1 ? ": optimal up to the slack" : ": exact", out->sol.loss,
                            out->calibrated ? " nats KLD" : " (sum of relative output errors)",
                            out->sol.lower_bound)))
        return st;
    if (o->method == QM_GPTQ && o->h &&
        (st = plan_add_note(pl, err, o->price_method
                                         ? "auto: GPTQ (OC scales) and imatrix candidates priced by their own output "
                                           "errors (%lld rows sampled per site); IC / per-tensor GPTQ by RTN's"
                                         : "auto: integer sites use GPTQ; the loss model prices them with RTN's errors%.0lld",
                            o->price_method ? (long long)o->oerr_rows : 0LL)))
        return st;
    if (o->speed && (st = speedtab_plan(o->speed, pl, pm, o->speed_pool, &out->decode_tps, &out->prefill_tps, err)))
        return st;
    if (o->min_decode_tps > 0 && out->decode_tps < o->min_decode_tps * (1 - 1e-9))
        return err_set(err, ST_ERR_STATE, "auto plan: predicted %.1f tok/s, below the %.1f asked", out->decode_tps,
                       o->min_decode_tps);
    PlanSize ps;
    if ((st = plan_size(pl, pm, NULL, &ps, err))) return st;
    if (by_bytes ? ps.all_bytes > o->bytes : ps.all_bits > out->budget_bits)
        return err_set(err, ST_ERR_STATE, "auto plan over budget: %lld bits > %lld", (long long)ps.all_bits,
                       (long long)out->budget_bits);
    return ST_OK;
}

Status planner_build(const Model *m, const struct CalibStats *cs, const PlannerOpts *o, PlannerResult *out, Err *err) {
    memset(out, 0, sizeof *out);
    plan_init(&out->plan);
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    KindTable kt;
    kinds_build(o, &kt);
    int has_ends = kt.end_k1 > kt.end_k0 && !pm.tied_embeddings && (o->end_loss || !o->site_scale);
    Status st = planner_check(cs, o, &kt, err);
    if (st) return st;
    int64_t n = pm.n_layers * PLAN_NPROJ, n_all = n + (has_ends ? 2 : 0);
    /* The fixed part: embedding and head in fp16 (unless they are sites). */
    PlanEntry half;
    plan_entry_default(&half);
    half.w.fmt = QF_F16;
    int by_bytes = !(o->bpw > 0);
    int64_t lin_budget = 0;
    size_t fixed_bytes = 0;
    Cands c = {0};
    if ((st = planner_budget(&pm, o, has_ends, &half, out, &lin_budget, &fixed_bytes, err))) goto fail;
    if ((st = cands_alloc(&c, n_all, kt.nk, o->speed != NULL, err))) goto fail;
    out->sites = core_calloc((size_t)n, sizeof *out->sites);
    if (!out->sites) {
        st = err_set(err, ST_ERR_NOMEM, "auto plan: candidates");
        goto fail;
    }
    out->n_sites = n;
    out->target = o->target;
    out->calibrated = o->site_scale != NULL;
    out->has_ends = has_ends;
    for (int64_t s = 0; s < n; s++) {
        if ((st = site_cands(m, cs, o, kt.kinds, kt.end_k0, s, by_bytes, &c, err))) goto fail;
        c.off[s + 1] = c.n;
    }
    for (int end = 0; has_ends && end < 2; end++) {
        if ((st = end_cands(m, o, kt.kinds, kt.end_k0, kt.end_k1, end, by_bytes, &c, err))) goto fail;
        c.off[n + end + 1] = c.n;
    }
    if ((st = planner_solve(m, o, &c, n_all, has_ends, &half, lin_budget, by_bytes, fixed_bytes, out, err))) goto fail;
    if ((st = planner_plan(m, cs, o, &kt, &c, n, has_ends, &half, by_bytes, out, err))) goto fail;
    st = planner_finish(&pm, o, n_all, by_bytes, out, err);
fail:
    cands_free(&c);
    if (st) planner_result_done(out);
    return st;
}

/* === A whole request === */

void planner_request_default(PlannerRequest *rq) {
    memset(rq, 0, sizeof *rq);
    rq->method = -1;
    rq->groups[0] = 64;
    rq->groups[1] = 128;
    rq->n_groups = 2;
    rq->price_method = 1;
    rq->oerr_rows = 256;
    rq->chunks = 4;
}

Status planner_run(const Model *m, const QStatsFile *sf, const PlannerRequest *rq, Pool *pool, Progress *prog,
                   PlannerResult *out, int *measured, Err *err) {
    memset(out, 0, sizeof *out);
    plan_init(&out->plan);
    if (measured) *measured = 0;
    PlannerOpts po;
    planner_opts_default(&po);
    po.bpw = rq->bpw;
    po.bytes = rq->bytes;
    po.target = rq->target;
    po.formats = rq->formats;
    po.method = rq->method >= 0 ? (QMethod)rq->method : sf->h ? QM_GPTQ : QM_RTN;
    po.price_method = rq->price_method;
    po.oerr_rows = rq->oerr_rows;
    po.h = sf->h;
    po.pool = pool;
    if (po.method == QM_GPTQ && !sf->h) return err_set(err, ST_ERR_ARG, "method gptq needs H beside the stats file");
    for (int g = 0; sf->h && rq->target == PLANNER_TARGET_ANY && g < rq->n_groups && g < 4; g++)
        po.extra_groups[po.n_extra_groups++] = rq->groups[g];
    SiteCal sc;
    memset(&sc, 0, sizeof sc);
    Status st = ST_OK;
    if (rq->text) {
        if (!rq->sitecal) return err_set(err, ST_ERR_ARG, "auto plan: a calibrated loss model needs a sitecal path");
        EvalOpts eo;
        eval_opts_default(&eo);
        eo.n_ctx = rq->ctx > 0 ? rq->ctx : m->cfg.max_seq_len > 0 && m->cfg.max_seq_len < 512 ? m->cfg.max_seq_len : 512;
        eo.max_chunks = rq->chunks;
        QFormat ef[24];
        int ne = m->cfg.tied_embeddings ? 0 : planner_end_formats(rq->target, ef, 24), w = 0;
        for (int i = 0; i < ne; i++) /* fp16 ends cost 0: nothing to measure */
            if (qformat_traits(ef[i])->family == QFAM_GGML) ef[w++] = ef[i];
        if ((st = sitecal_get(m, sf->cs, rq->text, rq->text_len, &eo, rq->cache_dir, rq->sitecal, ef, w, pool, prog, &sc,
                              measured, err)))
            return st;
        po.site_scale = sc.scale;
        po.end_loss = sc.end_kld;
    }
    SpeedTab spd;
    memset(&spd, 0, sizeof spd);
    char spath[1200];
    if (rq->speed_table || rq->min_decode_tps > 0) {
        int threads = pool ? pool_size(pool) : 1;
        if ((st = speedtab_path(rq->speed_cache, threads, spath, sizeof spath, err)) ||
            (st = speedtab_load(spath, threads, &spd, err))) {
            sitecal_done(&sc);
            return st;
        }
        po.speed = &spd;
        po.speed_pool = pool;
        po.min_decode_tps = rq->min_decode_tps;
    }
    st = planner_build(m, sf->cs, &po, out, err);
    if (po.speed && spd.n_measured) {
        Err e2; /* the table is a cache: failing to save it loses nothing */
        err_init(&e2);
        (void)speedtab_save(&spd, spath, &e2);
    }
    speedtab_done(&spd);
    sitecal_done(&sc);
    return st;
}

/* === Prediction of any plan === */

Status planner_predict(const Model *m, const CalibStats *cs, const Plan *p, const double *site_scale,
                       double *pred, int64_t *n_approx, Err *err) {
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    int64_t og, ig;
    if (!calib_sens_groups(cs, 0, 0, &og, &ig))
        return err_set(err, ST_ERR_ARG, "no sensitivity map in the statistics: no prediction");
    PlanResolved r;
    Status st = plan_resolve(p, &pm, &r, err);
    if (st) return st;
    double sum = 0;
    int64_t approx = 0;
    for (int64_t s = 0; s < r.n_layers * PLAN_NPROJ; s++) {
        int64_t l = s / PLAN_NPROJ;
        int pj = (int)(s % PLAN_NPROJ);
        const PlanEntry *e = &r.lin[s].e;
        const QFormatTraits *t = qformat_traits(e->w.fmt);
        if (!t->needs_scale && e->w.fmt != QF_AQLM) continue;
        double oe = entry_oerr(cs, l, pj, e);
        if (oe < 0 || e->method == QM_ADADIM) {
            /* nearest cell: symmetric, the map's grouping along the same
             * dimension (AdaDim: the better of OC and IC; AQLM: int2 groups) */
            QParams q = e->w;
            q.sym = 1;
            if (e->w.fmt == QF_AQLM) {
                q.fmt = QF_INT2;
                q.dim = GROUP_OC;
                q.group = 1;
            }
            calib_sens_groups(cs, l, pj, &og, &ig);
            double best = -1;
            for (int d = GROUP_OC; d <= (int)GROUP_IC; d++) {
                if (e->method != QM_ADADIM && d != (int)q.dim && q.dim != GROUP_TENSOR) continue;
                QParams c = q;
                c.dim = (GroupDim)d;
                if (q.dim == GROUP_TENSOR && e->method != QM_ADADIM) c.dim = GROUP_TENSOR;
                c.group = q.group ? (d == GROUP_OC ? og : ig) : 0;
                double v;
                if (calib_sens_cell(cs, l, pj, &c, NULL, &v) && v >= 0 && (best < 0 || v < best)) best = v;
            }
            if (best < 0) {
                plan_resolved_done(&r);
                return err_set(err, ST_ERR_ARG, "layer %lld %s: the sensitivity map has no cell near %s", (long long)l,
                               plan_proj_name(pj), t->name);
            }
            oe = best;
            approx++;
        }
        sum += (site_scale ? site_scale[s] : 1.0) * oe;
    }
    plan_resolved_done(&r);
    *pred = sum;
    if (n_approx) *n_approx = approx;
    return ST_OK;
}

double planner_fit_factor(const double *pred, const double *meas, int64_t n, double *rel_err, int64_t *n_used) {
    double slog = 0;
    int64_t used = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!(pred[i] > 0) || !(meas[i] > 0) || !isfinite(pred[i]) || !isfinite(meas[i])) continue;
        slog += log(meas[i] / pred[i]);
        used++;
    }
    double k = used ? exp(slog / (double)used) : 1.0;
    if (rel_err) {
        double se = 0;
        for (int64_t i = 0; i < n; i++) {
            if (!(pred[i] > 0) || !(meas[i] > 0) || !isfinite(pred[i]) || !isfinite(meas[i])) continue;
            se += fabs(k * pred[i] - meas[i]) / meas[i];
        }
        *rel_err = used ? se / (double)used : NAN;
    }
    if (n_used) *n_used = used;
    return k;
}
