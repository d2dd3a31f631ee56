/* Closest-name suggestions (see suggest.h). */
#include "core/suggest.h"

#include <string.h>

#define SUGGEST_MAX 63

int suggest_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > SUGGEST_MAX || nb > SUGGEST_MAX) return SUGGEST_MAX + 1;
    /* optimal string alignment distance over a (na+1) x (nb+1) table */
    int d[SUGGEST_MAX + 1][SUGGEST_MAX + 1];
    for (size_t i = 0; i <= na; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= nb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= na; i++)
        for (size_t j = 1; j <= nb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[na][nb];
}

int suggest_closest(const char *s, const char *const *names, int n) {
    int lim = (int)(strlen(s) / 3);
    if (lim < 1) lim = 1;
    int best = -1, best_d = lim + 1;
    for (int i = 0; i < n; i++) {
        int dd = suggest_distance(s, names[i]);
        if (dd < best_d) {
            best_d = dd;
            best = i;
        }
    }
    return best;
}
