/* core/strlist: the note lists of plans, quantized models and replay reports
 * grow by one formatted, owned string per call; over-long strings are cut to
 * STRLIST_MAX_LEN - 1 bytes. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/strlist.h"
#include "testlib.h"

static Status addf(char ***items, int64_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static Status addf(char ***items, int64_t *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    Status st = strlist_vaddf(items, n, fmt, ap);
    va_end(ap);
    return st;
}

int main(void) {
    (void)testlib_shared; /* this test needs no shared files */
    char **items = NULL;
    int64_t n = 0;
    CHECK(addf(&items, &n, "%lld.%s: group %d", 3LL, "q_proj", 128) == ST_OK);
    CHECK(addf(&items, &n, "%s", "") == ST_OK);
    char long_s[STRLIST_MAX_LEN + 100];
    memset(long_s, 'x', sizeof long_s - 1);
    long_s[sizeof long_s - 1] = '\0';
    CHECK(addf(&items, &n, "%s!", long_s) == ST_OK);
    CHECK(n == 3);
    CHECK(!strcmp(items[0], "3.q_proj: group 128"));
    CHECK(!strcmp(items[1], ""));
    CHECK(strlen(items[2]) == STRLIST_MAX_LEN - 1 && items[2][0] == 'x' && items[2][STRLIST_MAX_LEN - 2] == 'x');
    for (int64_t i = 0; i < n; i++) free(items[i]);
    free(items);
    return testlib_done("test_strlist");
}
