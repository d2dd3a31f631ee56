#include "core/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"

/* How long a thread that waits for the pool (a worker for the next job, the
 * caller for the workers) polls before it sleeps on the condition variable.
 * A decode step hands the pool ~16-30 short jobs (a few hundred µs each)
 * separated by a few µs of single-threaded work; a worker put to sleep
 * between them and woken through the futex arrived tens of µs late on the
 * shared VM, and the caller, done with its half, waited for it: one core
 * idled about a fifth of each step. Polling this long costs at most that
 * much CPU time per job and thread where a wait is longer. */
#define POOL_SPIN_SECONDS 50e-6

struct Pool {
    int n;                 /* threads including the caller */
    pthread_t *threads;    /* (n-1) */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    uint64_t generation;   /* bumped for each pool_for */
    int pending;           /* workers still running the current job */
    int quit;
    PoolFn fn;
    void *arg;
    int64_t count, chunk;
};

typedef struct { Pool *pool; int tid; } WorkerArg;

static void pool_run_share(Pool *p, int tid) {
    int64_t b = (int64_t)tid * p->chunk;
    int64_t e = b + p->chunk;
    if (e > p->count) e = p->count;
    if (b < e) p->fn(p->arg, b, e, tid);
}

/* The spin-wait hint of the CPU (x86 `pause`, Arm `yield`); nothing elsewhere. */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

/* Polls, for at most POOL_SPIN_SECONDS, until the next job is posted
 * (worker: generation != seen, or quit) or the current one is done (caller,
 * for_done: no worker pending). Reads only; the protocol itself runs under
 * the mutex, whose writers store these fields atomically for these reads. */
static void pool_spin(Pool *p, int for_done, uint64_t seen) {
    double t0 = 0;
    for (unsigned i = 1;; i++) {
        if (for_done ? __atomic_load_n(&p->pending, __ATOMIC_ACQUIRE) == 0
                     : __atomic_load_n(&p->generation, __ATOMIC_ACQUIRE) != seen ||
                           __atomic_load_n(&p->quit, __ATOMIC_ACQUIRE))
            return;
        if ((i & 63) == 0) {
            double t = clock_now();
            if (t0 == 0) t0 = t;
            else if (t - t0 > POOL_SPIN_SECONDS) return;
        }
        cpu_relax();
    }
}

static void *pool_worker(void *v) {
    WorkerArg *wa = v;
    Pool *p = wa->pool;
    int tid = wa->tid;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        pool_spin(p, 0, seen);
        pthread_mutex_lock(&p->mu);
        while (!p->quit && p->generation == seen) pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->quit) { pthread_mutex_unlock(&p->mu); return NULL; }
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        pool_run_share(p, tid);
        pthread_mutex_lock(&p->mu);
        if (__atomic_sub_fetch(&p->pending, 1, __ATOMIC_RELEASE) == 0) pthread_cond_signal(&p->cv_done);
        pthread_mutex_unlock(&p->mu);
    }
}

int pool_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

Status pool_new(int n_threads, Pool **out, Err *err) {
    *out = NULL;
    if (n_threads <= 0) n_threads = pool_cpu_count();
    if (n_threads > 256) return err_set(err, ST_ERR_ARG, "thread count %d is above 256", n_threads);
    Pool *p = core_calloc(1, sizeof *p);
    if (!p) return err_set(err, ST_ERR_NOMEM, "thread pool");
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    if (n_threads > 1) {
        p->threads = core_calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) { p->n = 1; goto fail; } /* no workers to join */
        for (int i = 1; i < n_threads; i++) {
            WorkerArg *wa = malloc(sizeof *wa);
            if (!wa) { p->n = i; goto fail; }
            wa->pool = p;
            wa->tid = i;
            if (pthread_create(&p->threads[i - 1], NULL, pool_worker, wa) != 0) {
                free(wa);
                p->n = i;
                goto fail;
            }
        }
    }
    *out = p;
    return ST_OK;
fail:
    pool_free(p);
    return err_set(err, ST_ERR_NOMEM, "cannot start %d threads", n_threads);
}

void pool_free(Pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->quit, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i - 1], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p);
}

int pool_size(const Pool *p) { return p ? p->n : 1; }

void pool_for(Pool *p, int64_t n, int64_t grain, PoolFn fn, void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int nt = p ? p->n : 1;
    int64_t max_parts = (n + grain - 1) / grain;
    if (max_parts < nt) nt = (int)max_parts;
    if (!p || nt <= 1) { fn(arg, 0, n, 0); return; }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->count = n;
    p->chunk = (n + nt - 1) / nt; /* nt ranges: grain limits how many threads share small work */
    __atomic_store_n(&p->pending, p->n - 1, __ATOMIC_RELEASE);
    __atomic_store_n(&p->generation, p->generation + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    pool_run_share(p, 0);
    pool_spin(p, 1, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

typedef struct PartsJob {
    const PoolPart *parts;
    int n_parts;
} PartsJob;

/* Range [b, e) of the parts laid end to end: each part's overlap, in order. */
static void pool_parts_run(void *arg, int64_t b, int64_t e, int tid) {
    const PartsJob *j = arg;
    int64_t off = 0;
    for (int i = 0; i < j->n_parts && off < e; i++) {
        const PoolPart *pt = &j->parts[i];
        if (pt->n <= 0) continue;
        int64_t lo = b > off ? b - off : 0, hi = e - off < pt->n ? e - off : pt->n;
        if (lo < hi) pt->fn(pt->arg, lo, hi, tid);
        off += pt->n;
    }
}

void pool_for_parts(Pool *p, const PoolPart *parts, int n_parts, int64_t grain) {
    int64_t total = 0;
    for (int i = 0; i < n_parts; i++)
        if (parts[i].n > 0) total += parts[i].n;
    PartsJob j = {parts, n_parts};
    pool_for(p, total, grain, pool_parts_run, &j);
}
