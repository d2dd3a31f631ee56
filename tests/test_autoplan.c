/* The auto planner: the knapsack solver against exhaustive search (exact and
 * bucketed), its Lagrangian bound, infeasible budgets; the planner on
 * stories260K (budget kept, predictions consistent with the choice, better
 * predicted loss than the uniform plan of the same size, the llama.cpp
 * target's candidates only). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analysis/eval.h"
#include "analysis/planner.h"
#include "analysis/qmodel.h"
#include "analysis/sensitivity.h"
#include "analysis/sitecal.h"
#include "analysis/speedtab.h"
#include "analysis/statsfile.h"
#include "core/mapfile.h"
#include "core/pool.h"
#include "model/model.h"
#include "quant/autoplan.h"
#include "quant/ggml_type.h"
#include "quant/plan.h"
#include "quant/preset.h"
#include "testlib.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_u64(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Least loss over all choices with Σ bits <= budget (INFINITY if none). */
static double brute(const AutoProblem *pr, int64_t budget) {
    int64_t n = pr->n_sites, idx[8] = {0};
    double best = INFINITY;
    for (;;) {
        int64_t b = 0;
        double l = 0;
        for (int64_t s = 0; s < n; s++) {
            b += pr->cand_bits[pr->off[s] + idx[s]];
            l += pr->cand_loss[pr->off[s] + idx[s]];
        }
        if (b <= budget && l < best) best = l;
        int64_t s = 0;
        while (s < n && ++idx[s] == pr->off[s + 1] - pr->off[s]) idx[s++] = 0;
        if (s == n) break;
    }
    return best;
}

static void test_solver_random(void) {
    Err err;
    err_init(&err);
    for (int trial = 0; trial < 300; trial++) {
        int64_t n = 1 + (int64_t)(next_u64() % 6), off[8] = {0}, bits[64];
        double loss[64];
        for (int64_t s = 0; s < n; s++) {
            int64_t k = 1 + (int64_t)(next_u64() % 5);
            off[s + 1] = off[s] + k;
            for (int64_t c = off[s]; c < off[s + 1]; c++) {
                bits[c] = (int64_t)(next_u64() % 5000);
                loss[c] = (double)(next_u64() % 100000) / 1000.0;
            }
        }
        AutoProblem pr = {.n_sites = n, .off = off, .cand_bits = bits, .cand_loss = loss};
        int64_t minb = 0, maxb = 0;
        for (int64_t s = 0; s < n; s++) {
            int64_t lo = INT64_MAX, hi = 0;
            for (int64_t c = off[s]; c < off[s + 1]; c++) {
                lo = bits[c] < lo ? bits[c] : lo;
                hi = bits[c] > hi ? bits[c] : hi;
            }
            minb += lo;
            maxb += hi;
        }
        int64_t budget = minb + (int64_t)(next_u64() % (uint64_t)(maxb - minb + 1));
        double opt = brute(&pr, budget);
        /* exact: the DP table is large enough for unit 1 */
        AutoSolution sol;
        CHECK_OK(autoplan_solve(&pr, budget, NULL, &sol, &err), err);
        CHECK(sol.unit_bits == 1 && sol.slack_bits == 0);
        CHECK(sol.bits <= budget);
        CHECKF(fabs(sol.loss - opt) <= 1e-9, "trial %d: dp %.9g brute %.9g", trial, sol.loss, opt);
        CHECKF(sol.lower_bound <= opt + 1e-9, "bound %.9g > opt %.9g", sol.lower_bound, opt);
        int64_t b = 0;
        double l = 0;
        for (int64_t s = 0; s < n; s++) {
            CHECK(sol.pick[s] >= 0 && sol.pick[s] < off[s + 1] - off[s]);
            b += bits[off[s] + sol.pick[s]];
            l += loss[off[s] + sol.pick[s]];
        }
        CHECK(b == sol.bits && fabs(l - sol.loss) < 1e-9);
        autoplan_solution_done(&sol);
        /* bucketed: a tiny table forces unit q > 1; the answer fits the
         * budget and is no worse than the exact optimum at budget - slack */
        AutoSolveOpts o = {.max_cells = n * 8};
        CHECK_OK(autoplan_solve(&pr, budget, &o, &sol, &err), err);
        CHECK(sol.bits <= budget);
        CHECK(sol.loss >= opt - 1e-9);
        double opt_slack = brute(&pr, budget - sol.slack_bits);
        CHECKF(sol.loss <= opt_slack + 1e-9, "q %lld: loss %.9g > opt at budget-slack %.9g", (long long)sol.unit_bits,
               sol.loss, opt_slack);
        CHECK(sol.slack_bits == (sol.unit_bits > 1 ? n * (sol.unit_bits - 1) : 0));
        autoplan_solution_done(&sol);
        /* infeasible */
        if (minb > 0) {
            CHECK(autoplan_solve(&pr, minb - 1, NULL, &sol, &err) == ST_ERR_RANGE);
            CHECK(sol.pick == NULL);
        }
    }
}

static void test_solver_known(void) {
    /* two sites: {0 bits: 10, 4: 3, 8: 1} and {0: 5, 4: 1}; budget 8: the
     * best is 3 + 1 = 4 (4 + 4 bits), not 1 + 5 (8 + 0) */
    int64_t off[3] = {0, 3, 5}, bits[5] = {0, 4, 8, 0, 4};
    double loss[5] = {10, 3, 1, 5, 1};
    AutoProblem pr = {.n_sites = 2, .off = off, .cand_bits = bits, .cand_loss = loss};
    AutoSolution sol;
    Err err;
    CHECK_OK(autoplan_solve(&pr, 8, NULL, &sol, &err), err);
    CHECK(sol.pick[0] == 1 && sol.pick[1] == 1 && sol.loss == 4 && sol.bits == 8);
    /* the LP relaxation here is tight at 4 */
    CHECK_NEAR(sol.lower_bound, 4, 1e-6);
    autoplan_solution_done(&sol);
    /* budget 6: one upgrade only, the first site's (3 + 5 = 8); the LP
     * relaxation also buys half of the second's: 3 + 5 - 2 = 6 */
    CHECK_OK(autoplan_solve(&pr, 6, NULL, &sol, &err), err);
    CHECK(sol.loss == 8 && sol.bits == 4 && sol.pick[0] == 1 && sol.pick[1] == 0);
    CHECK_NEAR(sol.lower_bound, 6, 1e-6);
    autoplan_solution_done(&sol);
    /* malformed */
    int64_t off_bad[3] = {0, 0, 2};
    AutoProblem bad = {.n_sites = 2, .off = off_bad, .cand_bits = bits, .cand_loss = loss};
    CHECK(autoplan_solve(&bad, 8, NULL, &sol, &err) == ST_ERR_ARG);
    double nanloss[5] = {1, NAN, 1, 1, 1};
    AutoProblem bad2 = {.n_sites = 2, .off = off, .cand_bits = bits, .cand_loss = nanloss};
    CHECK(autoplan_solve(&bad2, 8, NULL, &sol, &err) == ST_ERR_ARG);
}

static void test_fit_factor(void) {
    double pred[4] = {1, 2, 0, 4}, meas[4] = {2, 4, 5, 8};
    double rel;
    int64_t used;
    CHECK_NEAR(planner_fit_factor(pred, meas, 4, &rel, &used), 2, 1e-12);
    CHECK(used == 3 && rel < 1e-12);
    double meas2[2] = {1, 4};
    CHECK_NEAR(planner_fit_factor(pred, meas2, 2, &rel, &used), sqrt(2), 1e-12); /* ratios 1 and 2 */
    CHECK_NEAR(rel, (fabs(sqrt(2) - 1) / 1 + fabs(2 * sqrt(2) - 4) / 4) / 2, 1e-12);
    CHECK(planner_fit_factor(pred, meas, 0, &rel, &used) == 1 && used == 0 && isnan(rel));
}

static void test_planner_stories(void) {
    Err err;
    err_init(&err);
    char *text = NULL;
    size_t len = 0;
    Model *m = testlib_stories(&text, &len);
    char hpath[64];
    snprintf(hpath, sizeof hpath, "/tmp/qs-test-autoplan-%d.h64", (int)getpid());
    QStatsFile sf;
    CHECK_OK(qstats_calibrate_sens(m, text, len, 8, 128, hpath, NULL, &sf, &err), err);
    unlink(hpath);
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);

    /* the uniform int4 symmetric oc32 plan (embedding and head fp16): the map covers it */
    Plan uni;
    plan_init(&uni);
    plan_entry_default(&uni.def);
    uni.def.w = (QParams){QF_INT4, 1, GROUP_OC, 32};
    plan_entry_default(&uni.embed);
    uni.embed.w.fmt = QF_F16;
    uni.output = uni.embed;
    CHECK_OK(plan_fix_groups(&uni, &pm, NULL, &err), err); /* down: 172 = 4·43, as the map's */
    PlanSize us;
    CHECK_OK(plan_size(&uni, &pm, NULL, &us, &err), err);
    double uni_pred;
    int64_t napprox;
    CHECK_OK(planner_predict(m, sf.cs, &uni, NULL, &uni_pred, &napprox, &err), err);
    CHECK(napprox == 0 && uni_pred > 0);

    PlannerOpts o;
    planner_opts_default(&o);
    o.bpw = us.bpw_all;
    PlannerResult r;
    CHECK_OK(planner_build(m, sf.cs, &o, &r, &err), err);
    PlanSize ps;
    CHECK_OK(plan_size(&r.plan, &pm, NULL, &ps, &err), err);
    CHECK(ps.all_bits <= (int64_t)floor(o.bpw * (double)ps.all_params));
    CHECK(r.sol.unit_bits == 1);
    /* the uniform plan is one of the choices: the optimum is at least as good */
    CHECKF(r.sol.loss <= uni_pred * (1 + 1e-9), "auto %g vs uniform %g", r.sol.loss, uni_pred);
    CHECK(r.sol.loss < 0.9 * uni_pred); /* and strictly better on this model */
    CHECK(r.sol.lower_bound <= r.sol.loss && r.sol.lower_bound > 0.5 * r.sol.loss);
    /* the prediction of the written plan is what the solver optimised */
    double pred;
    CHECK_OK(planner_predict(m, sf.cs, &r.plan, NULL, &pred, &napprox, &err), err);
    CHECK(napprox == 0);
    CHECK_NEAR(pred, r.sol.loss, 1e-9 * r.sol.loss);
    /* site scales multiply the loss (a zero scale makes that site's error free) */
    double *sc = calloc((size_t)(pm.n_layers * PLAN_NPROJ), sizeof *sc);
    for (int64_t s = 0; s < pm.n_layers * PLAN_NPROJ; s++) sc[s] = 2.0;
    sc[3 * PLAN_NPROJ + PLAN_DOWN] = 0;
    PlannerResult r2;
    o.site_scale = sc;
    CHECK_OK(planner_build(m, sf.cs, &o, &r2, &err), err);
    CHECK(r2.calibrated);
    int nk;
    const PlannerKind *kinds = planner_kinds(PLANNER_TARGET_ANY, &nk);
    const PlannerSite *zs = &r2.sites[3 * PLAN_NPROJ + PLAN_DOWN];
    /* a free site takes the cheapest candidate: per-tensor int2 */
    CHECKF(!strcmp(zs->name, "int2/t") && zs->kind >= 0 && !strcmp(kinds[zs->kind].name, "int2/t"), "free site got %s",
           zs->name);
    CHECK_OK(planner_predict(m, sf.cs, &r2.plan, sc, &pred, NULL, &err), err);
    CHECK_NEAR(pred, r2.sol.loss, 1e-9 * r2.sol.loss);
    planner_result_done(&r2);
    o.site_scale = NULL;
    free(sc);

    /* cells computed now agree with the map's (which may estimate the off-diagonal part within 1 %) */
    {
        QParams qp[2] = {{QF_INT4, 1, GROUP_OC, 32}, {QF_INT3, 1, GROUP_IC, 0}};
        double oe[2], mo;
        CHECK_OK(sens_site_errors(m, sf.h, 2, PLAN_GATE, qp, 2, NULL, NULL, oe, &err), err);
        for (int k = 0; k < 2; k++) {
            CHECK(calib_sens_cell(sf.cs, 2, PLAN_GATE, &qp[k], NULL, &mo));
            CHECKF(fabs(oe[k] - mo) <= 0.03 * mo, "cell %d: computed %g, map %g", k, oe[k], mo);
        }
    }
    /* extra group sizes (16 and 64 along the rows; the down projections' 172 inputs take 4 = 4·43) add
     * candidates: never a worse optimum, and here a strictly better one */
    {
        PlannerOpts ox = o;
        ox.site_scale = NULL;
        ox.extra_groups[0] = 16;
        ox.extra_groups[1] = 64;
        ox.n_extra_groups = 2;
        ox.h = sf.h;
        PlannerResult rx;
        CHECK_OK(planner_build(m, sf.cs, &ox, &rx, &err), err);
        CHECKF(rx.sol.loss <= r.sol.loss * (1 + 1e-12), "extras %g > without %g", rx.sol.loss, r.sol.loss);
        int64_t n_extra = 0;
        for (int64_t s = 0; s < rx.n_sites; s++) n_extra += rx.sites[s].kind < 0;
        CHECK(n_extra > 0 && rx.sol.loss < r.sol.loss);
        CHECK_OK(plan_size(&rx.plan, &pm, NULL, &ps, &err), err);
        CHECK(ps.all_bits <= (int64_t)floor(o.bpw * (double)ps.all_params));
        ox.h = NULL;
        CHECK(planner_build(m, sf.cs, &ox, &r2, &err) == ST_ERR_ARG);
        planner_result_done(&rx);
    }

    /* --formats: only fp16 and int8 */
    o.formats = (1u << QF_F16) | (1u << QF_INT8);
    o.bpw = 10;
    CHECK_OK(planner_build(m, sf.cs, &o, &r2, &err), err);
    for (int64_t s = 0; s < r2.n_sites; s++) {
        QFormat f = r2.sites[s].fmt;
        CHECK(f == QF_F16 || f == QF_INT8);
    }
    planner_result_done(&r2);
    /* too small a budget names the cheapest plan's bpw */
    o.bpw = 2;
    CHECK(planner_build(m, sf.cs, &o, &r2, &err) == ST_ERR_RANGE);
    CHECK(strstr(err.detail, "cheapest plan") != NULL);

    /* llama.cpp target: ggml's block types only, the ends as sites (uncalibrated: priced by their
     * relative weight error), every entry one that `qscope export` writes as its blocks */
    o.formats = 0;
    o.target = PLANNER_TARGET_LLAMACPP;
    o.bpw = 8;
    o.method = QM_GPTQ;
    CHECK(planner_build(m, sf.cs, &o, &r2, &err) == ST_ERR_ARG); /* needs H */
    o.h = sf.h;
    CHECK_OK(planner_build(m, sf.cs, &o, &r2, &err), err);
    CHECK(r2.has_ends && r2.fixed_bits == 0);
    const PlannerKind *gk = planner_kinds(PLANNER_TARGET_LLAMACPP, &nk);
    PlanResolved res;
    CHECK_OK(plan_resolve(&r2.plan, &pm, &res, &err), err);
    int64_t n_q = 0;
    for (int64_t s = 0; s < r2.n_sites; s++) {
        CHECK(gk[r2.sites[s].kind].ggml != NULL);
        const PlanEntry *e = &res.lin[s].e;
        const QFormatTraits *t = qformat_traits(e->w.fmt);
        CHECK(e->w.fmt == QF_F16 || t->family == QFAM_GGML);
        /* GPTQ on the type's own grid (method gptq asked) */
        if (t->family == QFAM_GGML) CHECK(e->method == QM_GPTQ && e->gptq.act_order);
        n_q += t->family == QFAM_GGML;
        if (s % PLAN_NPROJ == PLAN_DOWN) CHECK(e->w.fmt == QF_F16); /* 172 inputs: no whole 32-blocks */
    }
    CHECK(n_q > 0);
    CHECK(res.embed.e.method == QM_RTN && res.output.e.method == QM_RTN);
    CHECK(r2.ends[0].bits > 0 && r2.ends[1].bits > 0);
    CHECK_OK(plan_size(&r2.plan, &pm, NULL, &ps, &err), err);
    CHECK(ps.all_bits <= (int64_t)floor(o.bpw * (double)ps.all_params));
    CHECK(ps.bpw_all > 7.5); /* the budget is used */
    plan_resolved_done(&res);
    planner_result_done(&r2);
    o.target = PLANNER_TARGET_ANY;
    o.method = QM_RTN;

    /* Speed: the table times an entry once (then looks it up), survives a save/load round trip,
     * and the planner under --speed keeps the predicted decode time within 1/MIN while never
     * beating the unconstrained loss; an impossible speed is refused naming the fastest */
    {
        char spath[600];
        snprintf(spath, sizeof spath, "/tmp/qs-test-speed-%d.txt", (int)getpid());
        Pool *sp;
        CHECK_OK(pool_new(1, &sp, &err), err);
        SpeedTab st0, st1;
        CHECK_OK(speedtab_load(spath, 1, &st0, &err), err); /* missing: empty */
        CHECK(st0.n == 0);
        st0.min_time_s = 1e-4; /* three repetitions: the test checks the bookkeeping, not the speeds */
        PlanEntry e4;
        plan_entry_default(&e4);
        e4.w = (QParams){QF_INT4, 1, GROUP_OC, 32};
        double d1, p1, d2, p2;
        CHECK_OK(speedtab_get(&st0, &e4, 172, 64, sp, &d1, &p1, &err), err);
        e4.method = QM_GPTQ; /* same kernel: a lookup */
        CHECK_OK(speedtab_get(&st0, &e4, 172, 64, sp, &d2, &p2, &err), err);
        CHECK(st0.n == 1 && st0.n_measured == 1 && d1 == d2 && p1 == p2 && d1 > 0 && p1 > 0);
        CHECK_OK(speedtab_save(&st0, spath, &err), err);
        CHECK_OK(speedtab_load(spath, 1, &st1, &err), err);
        CHECK(st1.n == 1 && speedtab_lookup(&st1, &e4, 172, 64, &d2, &p2) && fabs(d2 - d1) <= 1e-6 * d1);
        speedtab_done(&st1);
        CHECK_OK(speedtab_load(spath, 3, &st1, &err), err); /* another thread count: another table */
        CHECK(st1.n == 0);
        speedtab_done(&st1);
        PlannerOpts os = o;
        os.site_scale = NULL;
        os.speed = &st0;
        os.speed_pool = sp;
        os.bpw = 10;
        os.formats = (1u << QF_F16) | (1u << QF_INT8) | (1u << QF_INT4); /* fewer rows to time */
        PlannerResult rs0, rs1;
        CHECK_OK(planner_build(m, sf.cs, &os, &rs0, &err), err); /* every candidate timed */
        CHECK(rs0.decode_tps > 0 && rs0.prefill_tps > 0 && rs0.speed_lambda == 0);
        double want = rs0.decode_tps * 1.05; /* a little faster than the unconstrained plan */
        os.min_decode_tps = want;
        Status sst = planner_build(m, sf.cs, &os, &rs1, &err);
        if (sst == ST_OK) {
            CHECKF(rs1.decode_tps >= want * (1 - 1e-9), "%g < %g", rs1.decode_tps, want);
            CHECK(rs1.sol.loss >= rs0.sol.loss * (1 - 1e-12));
            double dt, pt;
            CHECK_OK(speedtab_plan(&st0, &rs1.plan, &pm, NULL, &dt, &pt, &err), err); /* all rows cached now */
            CHECK(dt == rs1.decode_tps);
            printf("speed: unconstrained %.0f tok/s loss %.4g; --speed %.0f: %.0f tok/s loss %.4g (lambda %.3g)\n",
                   rs0.decode_tps, rs0.sol.loss, want, rs1.decode_tps, rs1.sol.loss, rs1.speed_lambda);
            planner_result_done(&rs1);
        } else { /* the machine's timings may leave no faster plan under 10 bpw: then it says so */
            CHECKF(sst == ST_ERR_RANGE, "%s", err.detail);
        }
        os.min_decode_tps = 1e12;
        sst = planner_build(m, sf.cs, &os, &rs1, &err);
        CHECKF(sst == ST_ERR_RANGE && strstr(err.detail, "head alone"), "%d %s", (int)sst, err.detail);
        /* a speed the head allows but no set of site candidates reaches: the fastest is named */
        double head_t;
        PlanEntry hf;
        plan_entry_default(&hf);
        hf.w.fmt = QF_F16;
        CHECK(speedtab_lookup(&st0, &hf, m->output.n_out, m->output.n_in, &head_t, NULL));
        os.min_decode_tps = 1.0 / (head_t * 1.0001);
        sst = planner_build(m, sf.cs, &os, &rs1, &err);
        CHECKF(sst == ST_ERR_RANGE && strstr(err.detail, "fastest candidates take"), "%d %s", (int)sst, err.detail);
        planner_result_done(&rs0);
        speedtab_done(&st0);
        pool_free(sp);
        unlink(spath);
    }

    /* Output errors of entries by their own method: RTN on all rows is the map's computation;
     * GPTQ lowers exactly this quantity below RTN's; a 32-row sample estimates the whole */
    {
        PlanEntry es[3];
        for (int k = 0; k < 3; k++) plan_entry_default(&es[k]);
        es[0].w = es[1].w = es[2].w = (QParams){QF_INT3, 1, GROUP_OC, 32};
        es[1].method = es[2].method = QM_GPTQ;
        es[2].gptq.act_order = 1;
        double sum_r = 0, sum_g = 0;
        for (int64_t l = 0; l < pm.n_layers; l++)
            for (int p = 0; p < PLAN_DOWN; p++) {
                double oe[3], ref1, os[1];
                CHECK_OK(qmodel_site_oerr(m, sf.h, l, p, es, 3, 0, NULL, oe, &err), err);
                CHECK_OK(sens_site_errors(m, sf.h, l, p, &es[0].w, 1, NULL, NULL, &ref1, &err), err);
                CHECK_NEAR(oe[0], ref1, 1e-12 * ref1);
                CHECKF(oe[1] < oe[0] && oe[2] < oe[0], "L%lld p%d: gptq %g / %g, rtn %g", (long long)l, p, oe[1], oe[2],
                       oe[0]);
                sum_r += oe[0];
                sum_g += oe[2];
                if (p == PLAN_GATE) { /* 172 rows, sample 96 */
                    CHECK_OK(qmodel_site_oerr(m, sf.h, l, p, &es[2], 1, 96, NULL, os, &err), err);
                    CHECKF(fabs(os[0] - oe[2]) < 0.25 * oe[2], "sampled %g vs all rows %g", os[0], oe[2]);
                }
            }
        printf("int3 oc32 output error summed over 30 sites: rtn %.4g, gptq act-order %.4g\n", sum_r, sum_g);
        /* refused: IC scales, whose rows are not independent */
        es[0].w.dim = GROUP_IC;
        double x;
        CHECK(qmodel_site_oerr(m, sf.h, 0, 0, es, 1, 0, NULL, &x, &err) == ST_ERR_ARG);
    }

    /* Site calibration: every site's KLD alone, measured; the prediction of a
     * one-site plan is that measurement; of the uniform int4 oc32 RTN plan
     * (every site at the probe), the sum, which must land near the measured
     * KLD (the additive model: within a factor 1.5 here). */
    EvalOpts eo;
    eval_opts_default(&eo);
    eo.n_ctx = 64;
    eo.max_chunks = 4;
    eo.layer_err = 0;
    eo.speed = 0;
    EvalRef *ref = NULL;
    CHECK_OK(eval_ref_new(m, text, len, &eo, NULL, NULL, &ref, &err), err);
    PlanEntry probe;
    sitecal_default_probe(&probe);
    SiteCal cal, cal2;
    CHECK_OK(sitecal_measure(m, sf.cs, ref, &eo, 1234, &probe, NULL, NULL, &cal, &err), err);
    for (int64_t s = 0; s < cal.n_layers * PLAN_NPROJ; s++)
        CHECKF(cal.kld[s] > 0 && cal.oerr[s] > 0 && fabs(cal.scale[s] - cal.kld[s] / cal.oerr[s]) <= 1e-12 * cal.scale[s],
               "site %lld: kld %g oerr %g", (long long)s, cal.kld[s], cal.oerr[s]);
    Plan one;
    plan_init(&one);
    CHECK_OK(plan_add_rule(&one, "2.up", PF_FMT | PF_GROUP | PF_METHOD, &uni.def, &err), err);
    CHECK_OK(planner_predict(m, sf.cs, &one, cal.scale, &pred, &napprox, &err), err);
    CHECK_NEAR(pred, cal.kld[2 * PLAN_NPROJ + PLAN_UP], 1e-9 * pred);
    plan_done(&one);
    CHECK_OK(planner_predict(m, sf.cs, &uni, cal.scale, &pred, &napprox, &err), err);
    CHECK(napprox == 0);
    QModel *qm = NULL;
    CHECK_OK(qmodel_build(m, &uni, NULL, NULL, NULL, &qm, &err), err);
    EvalResult er;
    CHECK_OK(eval_run(qm, ref, &eo, NULL, NULL, NULL, NULL, &er, &err), err);
    CHECKF(pred > er.kld_mean / 1.5 && pred < er.kld_mean * 1.5, "predicted %g measured %g", pred, er.kld_mean);
    printf("uniform int4 oc32 rtn: predicted KLD %.5f, measured %.5f\n", pred, er.kld_mean);
    eval_result_done(&er);
    qmodel_free(qm);
    /* the cache file round trip and its key */
    char cpath[64];
    snprintf(cpath, sizeof cpath, "/tmp/qs-test-sitecal-%d.txt", (int)getpid());
    CHECK_OK(sitecal_save(&cal, cpath, &err), err);
    CHECK_OK(sitecal_load(cpath, pm.n_layers, &cal2, &err), err);
    CHECK(sitecal_matches(&cal2, m->fingerprint, 1234, 64, 4, "I4/oc32"));
    CHECK(!sitecal_matches(&cal2, m->fingerprint, 1235, 64, 4, "I4/oc32"));
    CHECK(!sitecal_matches(&cal2, m->fingerprint, 1234, 64, 0, "I4/oc32"));
    /* the cache belongs to this calibration: the same key over another map
     * (a stats file rewritten by `calib -o` with other --group/--samples) is
     * not a match, since every scale is KLD / that map's output error */
    CHECK(sitecal_matches_stats(&cal2, sf.cs, &probe));
    cal2.oerr[3 * PLAN_NPROJ + PLAN_DOWN] *= 1.001;
    CHECK(!sitecal_matches_stats(&cal2, sf.cs, &probe));
    cal2.oerr[3 * PLAN_NPROJ + PLAN_DOWN] = NAN;
    CHECK(!sitecal_matches_stats(&cal2, sf.cs, &probe));
    for (int64_t s = 0; s < cal.n_layers * PLAN_NPROJ; s++) CHECK_NEAR(cal2.scale[s], cal.scale[s], 1e-8 * cal.scale[s]);
    sitecal_done(&cal2);
    /* a missing site is an error naming the file */
    FILE *f = fopen(cpath, "w");
    fprintf(f, "0 q 1.5\n0 k 2\n");
    fclose(f);
    CHECK(sitecal_load(cpath, pm.n_layers, &cal2, &err) == ST_ERR_FORMAT);
    CHECK(strstr(err.detail, "2 of the model's 35 sites") != NULL);
    f = fopen(cpath, "w");
    fprintf(f, "0 qq 1.5\n");
    fclose(f);
    CHECK(sitecal_load(cpath, pm.n_layers, &cal2, &err) == ST_ERR_FORMAT);
    CHECK(strstr(err.detail, ":1: expected") != NULL);
    unlink(cpath);
    sitecal_done(&cal);
    eval_ref_free(ref);

    planner_result_done(&r);
    plan_done(&uni);
    qstats_close(&sf);
    free(text);
    model_free(m);
}

int main(void) {
    test_solver_known();
    test_solver_random();
    test_fit_factor();
    test_planner_stories();
    return testlib_done("test_autoplan");
}
