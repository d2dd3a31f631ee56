/* Growing lists of owned strings (char **items, int64_t n), such as the notes a
 * plan, a quantized model and a replay report carry. */
#ifndef QS_CORE_STRLIST_H
#define QS_CORE_STRLIST_H

#include <stdarg.h>
#include <stdint.h>

#include "core/status.h"

/* Longest string strlist_vaddf stores, NUL included; longer ones are cut. */
#define STRLIST_MAX_LEN 512

/* Appends a heap copy of fmt formatted with ap (cut to STRLIST_MAX_LEN - 1
 * bytes) to *items, which holds *n strings and grows by one. The caller owns
 * the list and its strings (free each, then the list). Returns ST_OK, or
 * ST_ERR_NOMEM with *items and *n still valid and unchanged in length; the
 * caller adds the detail. */
Status strlist_vaddf(char ***items, int64_t *n, const char *fmt, va_list ap);

#endif
