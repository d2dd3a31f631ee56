/* A fixed thread pool with one operation: a parallel for over [0, n).
 * The caller's thread takes part, so a pool of 1 runs inline. */
#ifndef QS_CORE_POOL_H
#define QS_CORE_POOL_H

#include <stdint.h>

#include "core/status.h"

typedef struct Pool Pool;

/* fn is called with disjoint [begin, end) ranges; tid is 0..n_threads-1. */
typedef void (*PoolFn)(void *arg, int64_t begin, int64_t end, int tid);

/* Creates a pool of n_threads (<=0: number of online CPUs). Caller owns it. */
Status pool_new(int n_threads, Pool **out, Err *err);

/* Stops and joins the workers; NULL is a no-op. */
void pool_free(Pool *pool);

/* Returns the number of threads (callers size per-thread scratch with it). */
int pool_size(const Pool *pool);

/* Splits [0, n) into min(threads, ceil(n / grain)) contiguous ranges of equal
 * size (the last may be shorter), at most one per thread, and runs fn on them;
 * returns when all are done. One range runs inline on the caller. pool may be
 * NULL (runs inline with tid 0). Not re-entrant: do not call from inside fn. */
void pool_for(Pool *pool, int64_t n, int64_t grain, PoolFn fn, void *arg);

/* Returns the number of online CPUs (at least 1). */
int pool_cpu_count(void);

#endif
