#include "core/assert.h"

#include <stdio.h>
#include <stdlib.h>

static FatalHook fatal_hook;

void assert_set_fatal_hook(FatalHook hook) { fatal_hook = hook; }

_Noreturn void assert_fail(const char *expr, const char *file, int line) {
    FatalHook h = fatal_hook;
    fatal_hook = NULL; /* a failing hook must not recurse */
    if (h) h();
    fprintf(stderr, "qscope: internal error: ASSERT(%s) failed at %s:%d\n", expr, file, line);
    abort();
}
