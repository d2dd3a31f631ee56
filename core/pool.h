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

/* One part of a pool_for_parts call: fn's units [0, n) with its arg. */
typedef struct PoolPart {
    PoolFn fn;
    void *arg;
    int64_t n;
} PoolPart;

/* Runs the units of several parts in one dispatch instead of one pool_for
 * each: the parts' units, laid end to end, are split as pool_for splits
 * [0, Σ n) with grain, and each range calls fn of every part it covers with
 * that part's share of the range (in the part's own units; a range spanning
 * parts makes one call per part, in order). Each fn sees the tid of the
 * thread running it. Equal results to a pool_for per part whenever fn's
 * output does not depend on how its units are split (every kernel here).
 * Parts with n <= 0 are skipped. Not re-entrant (as pool_for). */
void pool_for_parts(Pool *pool, const PoolPart *parts, int n_parts, int64_t grain);

/* Returns the number of online CPUs (at least 1). */
int pool_cpu_count(void);

#endif
