/* Minimal test harness: each test program includes this once. CHECK failures
 * print the location and exit(1) at once ("fails on the first failing
 * assertion"); the program ends with testlib_done() printing a summary line. */
#ifndef QS_TESTLIB_H
#define QS_TESTLIB_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int testlib_done(const char *name) {
    printf("%s: %d checks passed\n", name, testlib_checks);
    return 0;
}

#endif
