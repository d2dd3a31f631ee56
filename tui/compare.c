/* Plans compared cell by cell (see compare.h). */
#include "tui/compare.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/plan_edit.h"

char *cmp_site_name(int64_t site, char *buf, size_t n) {
    if (site == CMP_EMBED) snprintf(buf, n, "embed");
    else if (site == CMP_OUTPUT) snprintf(buf, n, "output");
    else snprintf(buf, n, "L%lld.%s", (long long)(site / PLAN_NPROJ), plan_proj_name((int)(site % PLAN_NPROJ)));
    return buf;
}

Status cmp_plans(const Plan *a, const Plan *b, const PlanModel *pm, CmpSite **out, int64_t *n, Err *err) {
    *out = NULL;
    *n = 0;
    PlanResolved ra = {0}, rb = {0};
    CmpSite *v = NULL;
    Status st = plan_resolve(a, pm, &ra, err);
    if (st == ST_OK) st = plan_resolve(b, pm, &rb, err);
    if (st != ST_OK) goto fail;
    int64_t n_sites = ra.n_layers * PLAN_NPROJ, k = 0;
    v = calloc((size_t)n_sites + 2, sizeof *v);
    if (!v) {
        st = err_set(err, ST_ERR_NOMEM, "plan comparison of %lld sites", (long long)n_sites);
        goto fail;
    }
    for (int64_t s = CMP_EMBED; s < n_sites; s++) {
        const PlanEntry *ea = s == CMP_EMBED ? &ra.embed.e : s == CMP_OUTPUT ? &ra.output.e : &ra.lin[s].e;
        const PlanEntry *eb = s == CMP_EMBED ? &rb.embed.e : s == CMP_OUTPUT ? &rb.output.e : &rb.lin[s].e;
        if (plan_entry_equal(ea, eb)) continue;
        v[k].site = s;
        plan_entry_code(ea, v[k].a, sizeof v[k].a);
        plan_entry_code(eb, v[k].b, sizeof v[k].b);
        k++;
    }
    plan_resolved_done(&ra);
    plan_resolved_done(&rb);
    if (k == 0) {
        free(v);
        v = NULL;
    }
    *out = v;
    *n = k;
    return ST_OK;
fail:
    free(v);
    plan_resolved_done(&ra);
    plan_resolved_done(&rb);
    return st;
}
