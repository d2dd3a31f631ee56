/* Checked allocation: sizes are overflow-checked; failure returns NULL so
 * library code can report ST_ERR_NOMEM instead of crashing. */
#ifndef QS_CORE_ALLOC_H
#define QS_CORE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

/* Returns zeroed memory for n*size bytes, or NULL on overflow/ENOMEM.
 * Caller owns it; release with free(). */
void *core_calloc(size_t n, size_t size);

/* Returns uninitialised memory for n*size bytes aligned to 64 bytes, or NULL on
 * overflow/ENOMEM. Caller owns it; release with core_free_aligned(). */
void *core_alloc_aligned(size_t n, size_t size);

/* Frees memory from core_alloc_aligned; NULL is a no-op. */
void core_free_aligned(void *p);

/* Returns a heap copy of s (caller frees), or NULL. */
char *core_strdup(const char *s);

/* Returns a heap copy of n bytes of s plus a NUL (caller frees), or NULL. */
char *core_strndup(const char *s, size_t n);

/* Sets *out = a*b and returns 1, or returns 0 on size_t overflow. */
int core_mul_ok(size_t a, size_t b, size_t *out);

#endif
