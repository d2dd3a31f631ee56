#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

int core_mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

void *core_calloc(size_t n, size_t size) {
    size_t total;
    if (!core_mul_ok(n, size, &total)) return NULL;
    return calloc(total ? total : 1, 1);
}

void *core_alloc_aligned(size_t n, size_t size) {
    size_t total;
    if (!core_mul_ok(n, size, &total)) return NULL;
    if (total > SIZE_MAX - 64) return NULL;
    total = (total + 63) & ~(size_t)63;
    if (total == 0) total = 64;
    return aligned_alloc(64, total);
}

void core_free_aligned(void *p) { free(p); }

char *core_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *core_strdup(const char *s) { return core_strndup(s, strlen(s)); }
