/* The Plan view's layout and the budget input (see plan_grid.h). */
#include "tui/plan_grid.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pe_text_width(const char *s) {
    int w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

char *pe_cell_code(const PlanEntry *e, int level, char *buf, size_t n) {
    plan_entry_code(e, buf, n);
    if (level <= 0 || !n) return buf;
    char *dot = strstr(buf, "\xc2\xb7"); /* the first "·": suffixes follow */
    if (!dot) return buf;
    *dot = 0;
    char sfx[8];
    int k = 0;
    const QFormatTraits *t = qformat_traits(e->w.fmt);
    if (t && t->needs_scale && (e->method == QM_GPTQ || (e->method == QM_ADADIM && e->adadim_base == QM_GPTQ)))
        sfx[k++] = 'G';
    if (e->act == ACT_INT8) sfx[k++] = 'A';
    else if (e->act != ACT_NONE) sfx[k++] = 'E';
    if (e->smooth_alpha > 0) sfx[k++] = 'S';
    sfx[k] = 0;
    size_t len = strlen(buf);
    if (k) snprintf(buf + len, n - len, "%s%s", level == 1 ? "\xc2\xb7" : "+", level == 1 ? sfx : "");
    return buf;
}

const char *pe_code_legend(int level) {
    if (level == 1) return "shortened: \xc2\xb7G GPTQ, A int8 act, E fp8 act, S SmoothQuant (full code below)";
    if (level >= 2) return "shortened: + = GPTQ, activation or SmoothQuant suffixes (full code below)";
    return "";
}

void pe_grid_fit(const PlanEdit *pe, int width, int64_t cur_col, PeGridFit *f) {
    memset(f, 0, sizeof *f);
    char lab[32];
    snprintf(lab, sizeof lab, "L%lld", (long long)(pe->n_layers > 0 ? pe->n_layers - 1 : 0));
    f->label_w = 3 + (int)strlen(lab); /* margin, "L31", gap, the cursor bracket */
    int need[PLAN_NPROJ];
    int total = 0;
    for (f->level = 0; f->level <= 3; f->level++) {
        int pad = f->level == 3 ? 1 : 2; /* level 3: no room for the change marker */
        total = f->label_w - 1;
        for (int p = 0; p < PLAN_NPROJ; p++) {
            need[p] = (int)strlen(plan_proj_name(p)) + 1;
            for (int64_t l = 0; l < pe->n_layers; l++) {
                char code[48];
                pe_cell_code(plan_edit_cell(pe, l, p), f->level, code, sizeof code);
                int w = pe_text_width(code) + pad;
                if (w > need[p]) need[p] = w;
            }
            total += need[p];
        }
        if (total <= width || f->level == 3) break;
    }
    /* Widen the narrow columns evenly (up to 12) while the grid still fits. */
    int base = 0;
    for (int b = 12; b > 0 && !base; b--) {
        int t = f->label_w - 1;
        for (int p = 0; p < PLAN_NPROJ; p++) t += need[p] > b ? need[p] : b;
        if (t <= width) base = b;
    }
    for (int p = 0; p < PLAN_NPROJ; p++) f->col_w[p] = need[p] > base ? need[p] : base;
    /* Scroll when it does not fit: the first column that keeps cur_col in view. */
    if (cur_col < 0) cur_col = 0;
    if (cur_col >= PLAN_NPROJ) cur_col = PLAN_NPROJ - 1;
    f->first_col = 0;
    for (;;) {
        int t = f->label_w - 1, n = 0;
        for (int p = f->first_col; p < PLAN_NPROJ && t + f->col_w[p] <= width; p++) {
            t += f->col_w[p];
            n++;
        }
        if (n == 0) n = 1;
        f->n_vis_cols = n;
        if (cur_col < f->first_col + n || f->first_col >= cur_col) break;
        f->first_col++;
    }
}

/* === The auto plan's budget === */

int pe_parse_budget(const char *s, double *bpw, size_t *bytes, char *why, size_t n) {
    *bpw = 0;
    *bytes = 0;
    char *end;
    while (*s == ' ') s++;
    double v = strtod(s, &end);
    if (end == s || !(v > 0) || !isfinite(v)) {
        snprintf(why, n, "'%s': give bits per weight (4.5) or a size (0.21 MB, 210 kB, 210000 B)", s);
        return -1;
    }
    while (*end == ' ') end++;
    char unit[16];
    size_t k = 0;
    while (end[k] && end[k] != ' ' && k + 1 < sizeof unit) {
        unit[k] = (char)(end[k] >= 'A' && end[k] <= 'Z' ? end[k] - 'A' + 'a' : end[k]);
        k++;
    }
    unit[k] = 0;
    const char *rest = end + k;
    while (*rest == ' ') rest++;
    double mul = 0;
    if (!*unit || !strcmp(unit, "bpw")) {
        if (*rest || v > 32) {
            snprintf(why, n, "'%s': bits per weight are between 0 and 32", s);
            return -1;
        }
        *bpw = v;
        return 0;
    }
    if (!strcmp(unit, "b") || !strcmp(unit, "bytes") || !strcmp(unit, "byte")) mul = 1;
    else if (!strcmp(unit, "kb")) mul = 1e3;
    else if (!strcmp(unit, "mb")) mul = 1e6;
    else if (!strcmp(unit, "gb")) mul = 1e9;
    if (!mul || *rest) {
        snprintf(why, n, "'%s': the unit is bpw, B, kB, MB or GB (SI: 1 MB = 10^6 bytes)", s);
        return -1;
    }
    double b = floor(v * mul);
    if (b < 1 || b > 1e15) {
        snprintf(why, n, "'%s': not a size in bytes", s);
        return -1;
    }
    *bytes = (size_t)b;
    return 0;
}
