/* Minimal test harness: each test program includes this once. CHECK failures
 * print the location and exit(1) at once ("fails on the first failing
 * assertion"); the program ends with testlib_done() printing a summary line. */
#ifndef QS_TESTLIB_H
#define QS_TESTLIB_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int testlib_checks;

#define CHECK(cond) do { testlib_checks++; if (!(cond)) { \
    fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); exit(1); } } while (0)
#define CHECKF(cond, ...) do { testlib_checks++; if (!(cond)) { \
    fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } } while (0)
#define CHECK_NEAR(a, b, tol) do { double a_ = (a), b_ = (b), t_ = (tol); testlib_checks++; \
    if (!(fabs(a_ - b_) <= t_)) { fprintf(stderr, "%s:%d: |%s - %s| = |%.9g - %.9g| > %g\n", \
    __FILE__, __LINE__, #a, #b, a_, b_, t_); exit(1); } } while (0)
#define CHECK_OK(st, err) do { testlib_checks++; if ((st) != ST_OK) { \
    fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #st, \
    status_message((err).code), (err).detail); exit(1); } } while (0)

/* Path of a file under ../shared (QS_SHARED overrides). Static buffer rotation. */
__attribute__((unused)) static const char *testlib_shared(const char *rel) {
    static char buf[4][1024];
    static int k;
    const char *root = getenv("QS_SHARED");
    if (!root) root = "../shared";
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, rel);
    return buf[k];
}

/* Path of one of llama.cpp's tools (the oracle) in $LLAMA_BIN, else
 * build/llama.cpp/bin; NULL, after printing a note naming the test that
 * skips, when it is not there (`make test` builds it when it can). */
__attribute__((unused)) static const char *testlib_llama_tool(const char *tool, const char *what) {
    static char buf[4][1024];
    static int k;
    const char *dir = getenv("LLAMA_BIN");
    if (!dir || !*dir) dir = "build/llama.cpp/bin";
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, tool);
    FILE *f = fopen(buf[k], "rb");
    if (!f) {
        printf("note: %s not found: skipping %s (llama.cpp oracle)\n", buf[k], what);
        return NULL;
    }
    fclose(f);
    return buf[k];
}

/* "LD_PRELOAD=/tmp/...so " (or "" when no compiler is at hand): a preloaded
 * destructor that waits 0.3 s at exit, so llama.cpp's logger thread
 * (common/log.cpp) flushes its last lines ("Final estimate: PPL = ...")
 * before the process ends; under load they were lost now and then. Built once
 * per test process; prefix a llama.cpp command line with it. */
static char testlib_delay_so[512];
static void testlib_delay_rm(void) { unlink(testlib_delay_so); }

__attribute__((unused)) static const char *testlib_llama_exit_delay(void) {
    static char pre[600];
    static int done;
    if (done) return pre;
    done = 1;
    char *so = testlib_delay_so, cmd[1024];
    const char *tmp = getenv("TMPDIR");
    snprintf(so, sizeof testlib_delay_so, "%s/qs-llama-exit-delay-%ld.so", tmp && *tmp ? tmp : "/tmp", (long)getpid());
    snprintf(cmd, sizeof cmd, "printf '#include <unistd.h>\\n__attribute__((destructor)) static void w(void) "
             "{ usleep(300000); }\\n' | ${CC:-cc} -shared -fPIC -x c -o '%s' - 2>/dev/null", so);
    if (system(cmd) == 0) {
        snprintf(pre, sizeof pre, "LD_PRELOAD='%s' ", so);
        atexit(testlib_delay_rm);
    }
    return pre;
}

static int testlib_done(const char *name) {
    printf("%s: %d checks passed\n", name, testlib_checks);
    return 0;
}

#endif
