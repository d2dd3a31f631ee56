/* The cache directory ($XDG_CACHE_HOME/qscope, else ~/.cache/qscope, else
 * /tmp/qscope-cache-UID): calibration stats and their H files, evaluation
 * references and the workbench's plan files. H alone is GBs on a 7B model,
 * so what it holds can be listed and cleaned (`qscope cache list|clean`). */
#ifndef QS_CORE_CACHE_H
#define QS_CORE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* The kinds of file the cache holds, by name pattern. */
typedef enum {
    CACHE_STATS,     /* stats-*.qss: calibration statistics */
    CACHE_H,         /* *.h64: the calibration's H = XᵀX (the big ones) */
    CACHE_REF,       /* evalref-*.bin: an evaluation reference (the base model's log-probabilities) */
    CACHE_PLAN,      /* plans/ *.json: plans the workbench evaluated or wrote */
    CACHE_OTHER,
    CACHE_KIND_COUNT
} CacheKind;

/* "stats", "H", "reference", "plan", "other". */
const char *cache_kind_name(CacheKind k);

/* Parses a kind name (case-insensitive "h"); -1 when unknown. */
int cache_kind_parse(const char *s);

typedef struct CacheEntry {
    char path[1024];         /* relative to the cache directory ("plans/x.json") */
    CacheKind kind;
    size_t bytes;
    int64_t mtime;           /* seconds since the epoch */
} CacheEntry;

/* The default cache directory into buf (n bytes), created when missing.
 * ST_ERR_IO when it cannot be created (the path is still written). */
Status cache_dir_default(char *buf, size_t n, Err *err);

/* Lists the regular files of dir and dir/plans, largest first, into *out
 * (caller frees) and *n. A missing dir is an empty list. */
Status cache_list(const char *dir, CacheEntry **out, int64_t *n, Err *err);

/* Total bytes of cache_list(dir) (0 when it cannot be read). */
size_t cache_total_bytes(const char *dir);

/* Removes the files of kind k (k < 0: every kind) from dir; *removed and
 * *bytes (may be NULL) say how many and how large. Errors name the file. */
Status cache_clean(const char *dir, int k, int64_t *removed, size_t *bytes, Err *err);

#endif
