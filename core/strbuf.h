/* A growing string printf appends to (the export recipes, the JSON printer):
 * a memory failure is sticky and reported once, at the end. */
#ifndef QS_CORE_STRBUF_H
#define QS_CORE_STRBUF_H

#include <stddef.h>

typedef struct StrBuf {
    char *p;                 /* NUL-terminated once anything was appended; owned; NULL when empty */
    size_t n, cap;           /* length, allocated bytes */
    int oom;                 /* an append ran out of memory (later ones do nothing) */
} StrBuf;

/* Appends fmt formatted (printf) to b, which starts zeroed ({0}). */
void strbuf_printf(StrBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The string built (heap, caller frees; "" when nothing was appended), or NULL
 * when memory ran out (then b's memory is freed). b is empty afterwards. */
char *strbuf_take(StrBuf *b);

#endif
