#include "analysis/planner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "analysis/qmodel_stats.h"
#include "core/alloc.h"

/* === Candidate tables === */

#define KIND_FMT(f, nm) \
    {nm "/t", f, GROUP_TENSOR, 0, 0, NULL, PLANNER_TARGET_ANY}, \
    {nm "/oc", f, GROUP_OC, 0, 0, NULL, PLANNER_TARGET_ANY}, \
    {nm "/ic", f, GROUP_IC, 0, 0, NULL, PLANNER_TARGET_ANY}, \
    {nm "/oc-g", f, GROUP_OC, 1, 0, NULL, PLANNER_TARGET_ANY}, \
    {nm "/ic-g", f, GROUP_IC, 1, 0, NULL, PLANNER_TARGET_ANY}

/* Every symmetric cell the sensitivity map measures, plus fp16. */
static const PlannerKind KINDS_ANY[] = {
    {"fp16", QF_F16, GROUP_OC, 0, 0, NULL, PLANNER_TARGET_ANY},
    KIND_FMT(QF_INT8, "int8"), KIND_FMT(QF_INT6, "int6"), KIND_FMT(QF_INT4, "int4"),
    KIND_FMT(QF_INT3, "int3"), KIND_FMT(QF_INT2, "int2"),
    KIND_FMT(QF_FP8_E4M3, "e4m3"), KIND_FMT(QF_FP8_E5M2, "e5m2"),
};

/* Entries that are ggml block types: blocks of 32 along a row (OC groups of
 * 32) with one scale each. q8_0 is exactly int8 symmetric in blocks of 32.
 * Until the plan formats carry ggml's own grids, q4_0 stands for int4
 * symmetric in blocks of 32 (ggml's Q4_0 uses the 16 levels -8..7 with the
 * block's signed extreme at -8: the same storage, a slightly finer grid, so
 * the map's error for it is an upper bound). */
static const PlannerKind KINDS_LLAMACPP[] = {
    {"f16", QF_F16, GROUP_OC, 0, 0, "F16", PLANNER_TARGET_LLAMACPP},
    {"q8_0", QF_INT8, GROUP_OC, 1, 32, "Q8_0", PLANNER_TARGET_LLAMACPP},
    {"q4_0", QF_INT4, GROUP_OC, 1, 32, "Q4_0", PLANNER_TARGET_LLAMACPP},
};

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

/* The plan entry of kind k on a site whose map group sizes are (oc_g, ic_g);
 * 0 when the kind does not apply there. */
static int kind_entry(const PlannerKind *k, int64_t oc_g, int64_t ic_g, QMethod method, PlanEntry *e) {
    plan_entry_default(e);
    e->w.fmt = k->fmt;
    e->w.sym = 1;
    e->w.dim = k->dim;
    e->w.group = 0;
    if (k->grouped == 2) { /* an extra group size: oc_g is the site's n_in here */
        e->w.group = fit_group(oc_g, k->need_group);
        if (e->w.group <= 0) return 0;
    } else if (k->grouped) {
        e->w.group = k->dim == GROUP_OC ? oc_g : ic_g;
        if (e->w.group <= 0) return 0;
        if (k->need_group > 0 && e->w.group != k->need_group) return 0;
    }
    const QFormatTraits *t = qformat_traits(k->fmt);
    e->method = t->is_int ? method : QM_RTN;
    if (e->method == QM_GPTQ) e->gptq.act_order = 1; /* as the GPTQ presets */
    return 1;
}

/* Relative output error of entry e on (layer, proj) from the map; 0 for the
 * float formats; -1 when the map lacks the cell. */
static double entry_oerr(const struct CalibStats *cs, int64_t l, int p, const PlanEntry *e) {
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    if (!t->needs_scale && e->w.fmt != QF_AQLM) return 0;
    double oerr;
    if (!qstats_sens_cell(cs, l, p, &e->w, NULL, &oerr) || !(oerr >= 0)) return -1;
    return oerr;
}

static int64_t pm_n_in(const PlanModel *pm, int proj) {
    int64_t no, ni;
    plan_proj_shape(pm, proj, &no, &ni);
    return ni;
}

static double site_scale_of(const PlannerOpts *o, int64_t s) {
    return o->site_scale ? o->site_scale[s] : 1.0;
}

static void fmt_bits(char *buf, size_t n, double bits) {
    if (fabs(bits) >= 8e6) snprintf(buf, n, "%.2f MB", bits / 8e6);
    else snprintf(buf, n, "%.1f kB", bits / 8e3);
}

/* === Build === */

Status planner_build(const Model *m, const struct CalibStats *cs, const PlannerOpts *o, PlannerResult *out, Err *err) {
    memset(out, 0, sizeof *out);
    plan_init(&out->plan);
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    int nk0;
    const PlannerKind *kinds0 = planner_kinds(o->target, &nk0);
    /* the table, then the extra group sizes' rows */
    static const QFormat xf[] = {QF_INT8, QF_INT6, QF_INT4, QF_INT3, QF_INT2};
    PlannerKind kinds[96];
    char xname[40][24];
    int nk = 0, nx = 0;
    for (int k = 0; k < nk0 && nk < 56; k++) kinds[nk++] = kinds0[k];
    int nk_table = nk;
    for (int g = 0; o->target == PLANNER_TARGET_ANY && g < o->n_extra_groups && g < 4; g++)
        for (int f = 0; f < 5 && nx < 40; f++) {
            snprintf(xname[nx], sizeof xname[nx], "%s/oc%lld", qformat_traits(xf[f])->name, (long long)o->extra_groups[g]);
            kinds[nk++] = (PlannerKind){xname[nx], xf[f], GROUP_OC, 2, o->extra_groups[g], NULL, PLANNER_TARGET_ANY};
            nx++;
        }
    if (nx && !o->h) return err_set(err, ST_ERR_ARG, "extra group sizes need H (the stats file's .h64)");
    int64_t n = pm.n_layers * PLAN_NPROJ;
    Status st = ST_OK;
    int64_t *off = NULL, *bits = NULL, *bytes8 = NULL;
    double *loss = NULL, *oerrs = NULL;
    int *kind_of = NULL;
    Plan fixed;
    plan_init(&fixed);
    {
        int64_t og, ig;
        double probe;
        PlanEntry e;
        if (!qstats_sens_groups(cs, 0, 0, &og, &ig))
            return err_set(err, ST_ERR_ARG, "the statistics have no sensitivity map: run `qscope calib` without --no-sensitivity");
        kind_entry(&kinds[0], og, ig, QM_RTN, &e);
        e.w.fmt = QF_INT8;
        e.w.dim = GROUP_OC;
        e.w.group = 0;
        if (!qstats_sens_cell(cs, 0, 0, &e.w, NULL, &probe) || isnan(probe))
            return err_set(err, ST_ERR_ARG, "the sensitivity map has no output errors (calibrated without H): "
                                            "the planner needs them; rerun `qscope calib` with H");
    }
    if (!(o->bpw > 0) && o->bytes == 0) return err_set(err, ST_ERR_ARG, "auto plan: no budget (give --bpw or --bytes)");
    /* The fixed part: embedding and head in fp16. */
    PlanEntry half;
    plan_entry_default(&half);
    half.w.fmt = QF_F16;
    fixed.def = fixed.embed = fixed.output = half;
    PlanSize fs;
    if ((st = plan_size(&fixed, &pm, NULL, &fs, err))) goto fail;
    out->fixed_bits = fs.all_bits - fs.lin_bits;
    out->all_params = fs.all_params;
    size_t fixed_bytes = fs.all_bytes - fs.lin_bytes;
    int by_bytes = !(o->bpw > 0);
    if (by_bytes) {
        if (o->bytes <= fixed_bytes) {
            st = err_set(err, ST_ERR_RANGE, "budget %zu bytes: the fp16 embedding and head alone take %zu", o->bytes,
                         fixed_bytes);
            goto fail;
        }
        out->budget_bits = (int64_t)o->bytes * 8;
    } else {
        out->budget_bits = (int64_t)floor(o->bpw * (double)fs.all_params);
    }
    int64_t lin_budget = by_bytes ? (int64_t)(o->bytes - fixed_bytes) * 8 : out->budget_bits - out->fixed_bits;

    off = core_calloc((size_t)n + 1, sizeof *off);
    bits = core_calloc((size_t)n * (size_t)nk, sizeof *bits);
    bytes8 = core_calloc((size_t)n * (size_t)nk, sizeof *bytes8);
    loss = core_calloc((size_t)n * (size_t)nk, sizeof *loss);
    oerrs = core_calloc((size_t)n * (size_t)nk, sizeof *oerrs);
    kind_of = core_calloc((size_t)n * (size_t)nk, sizeof *kind_of);
    out->sites = core_calloc((size_t)n, sizeof *out->sites);
    if (!off || !bits || !bytes8 || !loss || !oerrs || !kind_of || !out->sites) {
        st = err_set(err, ST_ERR_NOMEM, "auto plan: candidates");
        goto fail;
    }
    out->n_sites = n;
    out->target = o->target;
    out->calibrated = o->site_scale != NULL;
    /* Candidates per site: the kinds that apply, reduced to the site's
     * Pareto set (fewer bits and lower loss), cheapest first. */
    int64_t k_all = 0;
    for (int64_t s = 0; s < n; s++) {
        int64_t l = s / PLAN_NPROJ;
        int p = (int)(s % PLAN_NPROJ);
        int64_t no, ni, og = 0, ig = 0;
        plan_proj_shape(&pm, p, &no, &ni);
        qstats_sens_groups(cs, l, p, &og, &ig);
        int64_t first = k_all;
        /* the extra rows' output errors, computed now (the map lacks them) */
        double xo[40];
        QParams xq[40];
        int xk[40], nxq = 0;
        for (int k = nk_table; k < nk; k++) {
            PlanEntry e;
            xk[k - nk_table] = -1;
            if (o->formats && !(o->formats & (1u << kinds[k].fmt))) continue;
            if (!kind_entry(&kinds[k], ni, ni, o->method, &e) || e.w.group == og) continue; /* og: in the map */
            xk[k - nk_table] = nxq;
            xq[nxq++] = e.w;
        }
        if (nxq && (st = qstats_site_oerr(m, o->h, l, p, xq, nxq, o->pool, xo, err))) goto fail;
        for (int k = 0; k < nk; k++) {
            if (o->formats && !(o->formats & (1u << kinds[k].fmt))) continue;
            PlanEntry e;
            if (!kind_entry(&kinds[k], kinds[k].grouped == 2 ? ni : og, ig, o->method, &e)) continue;
            double oe;
            if (kinds[k].grouped == 2) {
                if (xk[k - nk_table] < 0) continue;
                oe = xo[xk[k - nk_table]];
            } else {
                oe = entry_oerr(cs, l, p, &e);
            }
            if (oe < 0 || isnan(oe)) continue;
            int64_t b = plan_entry_bits(&e, no, ni, GROUP_TENSOR, NULL);
            int64_t b8 = (int64_t)plan_entry_bytes(&e, no, ni, GROUP_TENSOR, NULL) * 8;
            double ls = site_scale_of(o, s) * oe;
            int64_t cost = by_bytes ? b8 : b;
            /* insert sorted by cost, then drop the dominated */
            int64_t j = k_all;
            while (j > first && (bits[j - 1] > cost || (bits[j - 1] == cost && loss[j - 1] > ls))) {
                bits[j] = bits[j - 1];
                bytes8[j] = bytes8[j - 1];
                loss[j] = loss[j - 1];
                oerrs[j] = oerrs[j - 1];
                kind_of[j] = kind_of[j - 1];
                j--;
            }
            bits[j] = cost;
            bytes8[j] = by_bytes ? b : b8;
            loss[j] = ls;
            oerrs[j] = oe;
            kind_of[j] = k;
            k_all++;
        }
        int64_t w = first;
        for (int64_t j = first; j < k_all; j++) {
            if (w > first && loss[j] >= loss[w - 1]) continue;
            bits[w] = bits[j];
            bytes8[w] = bytes8[j];
            loss[w] = loss[j];
            oerrs[w] = oerrs[j];
            kind_of[w] = kind_of[j];
            w++;
        }
        k_all = w;
        if (k_all == first) {
            st = err_set(err, ST_ERR_ARG,
                         "layer %lld %s: no candidate of target '%s'%s (map group sizes oc %lld, ic %lld)", (long long)l,
                         plan_proj_name(p), planner_target_name(o->target), o->formats ? " among --formats" : "",
                         (long long)og, (long long)ig);
            goto fail;
        }
        off[s + 1] = k_all;
    }
    AutoProblem pr = {.n_sites = n, .off = off, .cand_bits = bits, .cand_loss = loss};
    st = autoplan_solve(&pr, lin_budget, &o->solve, &out->sol, err);
    if (st == ST_ERR_RANGE) {
        int64_t min_bits = 0;
        for (int64_t s = 0; s < n; s++) min_bits += bits[off[s]];
        double min_all = (double)min_bits + (double)(by_bytes ? (int64_t)fixed_bytes * 8 : out->fixed_bits);
        st = err_set(err, ST_ERR_RANGE, "the budget is below the cheapest plan of these candidates: %.4f bpw (%.0f bytes)",
                     min_all / (double)fs.all_params, min_all / 8);
        goto fail;
    }
    if (st) goto fail;

    /* The plan: the most common choice is the default entry, the others rules. */
    int count[96] = {0};
    for (int64_t s = 0; s < n; s++) count[kind_of[off[s] + out->sol.pick[s]]]++;
    int top = 0;
    for (int k = 1; k < nk_table; k++) /* the default comes from the table (same groups on every site) */
        if (count[k] > count[top]) top = k;
    Plan *pl = &out->plan;
    if (by_bytes) snprintf(pl->name, sizeof pl->name, "auto-%zuB", o->bytes);
    else snprintf(pl->name, sizeof pl->name, "auto-%.2fbpw", o->bpw);
    pl->embed = pl->output = half;
    {
        int64_t og = 0, ig = 0;
        qstats_sens_groups(cs, 0, 0, &og, &ig);
        if (!kind_entry(&kinds[top], og, ig, o->method, &pl->def)) pl->def = half;
    }
    for (int64_t s = 0; s < n; s++) {
        int64_t l = s / PLAN_NPROJ;
        int p = (int)(s % PLAN_NPROJ);
        int64_t og = 0, ig = 0, c = off[s] + out->sol.pick[s];
        qstats_sens_groups(cs, l, p, &og, &ig);
        PlanEntry e;
        kind_entry(&kinds[kind_of[c]], kinds[kind_of[c]].grouped == 2 ? pm_n_in(&pm, p) : og, ig, o->method, &e);
        if (e.w.fmt != pl->def.w.fmt || e.w.sym != pl->def.w.sym || e.w.dim != pl->def.w.dim ||
            e.w.group != pl->def.w.group || e.method != pl->def.method) {
            char pat[32];
            snprintf(pat, sizeof pat, "%lld.%s", (long long)l, plan_proj_name(p));
            if ((st = plan_add_rule(pl, pat, PF_FMT | PF_GROUP | PF_METHOD, &e, err))) goto fail;
        }
        PlannerSite *ps = &out->sites[s];
        ps->kind = kind_of[c] < nk_table ? kind_of[c] : -1;
        snprintf(ps->name, sizeof ps->name, "%s", kinds[kind_of[c]].name);
        ps->fmt = kinds[kind_of[c]].fmt;
        ps->bits = by_bytes ? bytes8[c] : bits[c];
        ps->oerr = oerrs[c];
        ps->loss = loss[c];
        /* why: the neighbours on the site's Pareto list */
        char a[96] = "", b[96] = "", sz[24];
        if (c > off[s]) {
            fmt_bits(sz, sizeof sz, (double)(bits[c] - bits[c - 1]));
            snprintf(a, sizeof a, "; %s saves %s for +%.3g", kinds[kind_of[c - 1]].name, sz, loss[c - 1] - loss[c]);
        }
        if (c + 1 < off[s + 1]) {
            fmt_bits(sz, sizeof sz, (double)(bits[c + 1] - bits[c]));
            snprintf(b, sizeof b, "; %s costs +%s for -%.3g", kinds[kind_of[c + 1]].name, sz, loss[c] - loss[c + 1]);
        }
        snprintf(ps->why, sizeof ps->why, "%s: loss %.3g (out err %.3g)%s%s", kinds[kind_of[c]].name, loss[c],
                 oerrs[c], a, b);
    }
    if ((st = plan_add_note(pl, err,
                            "auto: %s target, %lld sites, multiple-choice knapsack by DP (cost unit %lld bits%s), "
                            "predicted loss %.4g%s, Lagrangian lower bound %.4g",
                            planner_target_name(o->target), (long long)n, (long long)out->sol.unit_bits,
                            out->sol.unit_bits > 1 ? ": optimal up to the slack" : ": exact", out->sol.loss,
                            out->calibrated ? " nats KLD" : " (sum of relative output errors)",
                            out->sol.lower_bound)))
        goto fail;
    if (o->method == QM_GPTQ &&
        (st = plan_add_note(pl, err, "auto: integer sites use GPTQ; the loss model predicts them from RTN's errors")))
        goto fail;
    PlanSize ps;
    if ((st = plan_size(pl, &pm, NULL, &ps, err))) goto fail;
    if (by_bytes ? ps.all_bytes > o->bytes : ps.all_bits > out->budget_bits) {
        st = err_set(err, ST_ERR_STATE, "auto plan over budget: %lld bits > %lld", (long long)ps.all_bits,
                     (long long)out->budget_bits);
        goto fail;
    }
fail:
    plan_done(&fixed);
    free(off);
    free(bits);
    free(bytes8);
    free(loss);
    free(oerrs);
    free(kind_of);
    if (st) planner_result_done(out);
    return st;
}

/* === Prediction of any plan === */

Status planner_predict(const Model *m, const struct CalibStats *cs, const Plan *p, const double *site_scale,
                       double *pred, int64_t *n_approx, Err *err) {
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    int64_t og, ig;
    if (!qstats_sens_groups(cs, 0, 0, &og, &ig))
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
            qstats_sens_groups(cs, l, pj, &og, &ig);
            double best = -1;
            for (int d = GROUP_OC; d <= (int)GROUP_IC; d++) {
                if (e->method != QM_ADADIM && d != (int)q.dim && q.dim != GROUP_TENSOR) continue;
                QParams c = q;
                c.dim = (GroupDim)d;
                if (q.dim == GROUP_TENSOR && e->method != QM_ADADIM) c.dim = GROUP_TENSOR;
                c.group = q.group ? (d == GROUP_OC ? og : ig) : 0;
                double v;
                if (qstats_sens_cell(cs, l, pj, &c, NULL, &v) && v >= 0 && (best < 0 || v < best)) best = v;
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
