/* Comparing two plans cell by cell for the Evaluate view's detail and diff
 * (and the budget of a plan against another): which sites resolve to
 * different entries, with both codes. Curses-free. */
#ifndef QS_TUI_COMPARE_H
#define QS_TUI_COMPARE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "quant/plan.h"

/* Sites besides the grid's layer * PLAN_NPROJ + proj. */
enum { CMP_EMBED = -2, CMP_OUTPUT = -1 };

typedef struct CmpSite {
    int64_t site;            /* layer * PLAN_NPROJ + proj, or CMP_EMBED / CMP_OUTPUT */
    char a[48], b[48];       /* plan_entry_code of each side's entry */
} CmpSite;

/* The sites (embedding first, then the output head, then the grid in
 * layer-major order) where a and b resolve to entries that are not equal
 * on model shape pm (codes and every setting the codes omit: SmoothQuant
 * alpha, GPTQ settings, ...). *out is heap (caller frees; NULL when no
 * site differs), *n its length. */
Status cmp_plans(const Plan *a, const Plan *b, const PlanModel *pm, CmpSite **out, int64_t *n, Err *err);

/* "L2.down", "embed", "output" into buf (n bytes); returns buf. */
char *cmp_site_name(int64_t site, char *buf, size_t n);

#endif
