#include "core/strlist.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"

Status strlist_vaddf(char ***items, int64_t *n, const char *fmt, va_list ap) {
    char buf[STRLIST_MAX_LEN];
    vsnprintf(buf, sizeof buf, fmt, ap);
    char **grown = realloc(*items, (size_t)(*n + 1) * sizeof *grown);
    if (!grown) return ST_ERR_NOMEM;
    *items = grown;
    if (!(grown[*n] = core_strdup(buf))) return ST_ERR_NOMEM;
    (*n)++;
    return ST_OK;
}
