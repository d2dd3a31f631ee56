/* Work spread over processes with MPI (`make MPI=1` builds ./qscope-mpi with
 * -DQS_MPI against Debian's OpenMPI); the default build has one process and
 * every call below is the single-process identity, so library code calls
 * them unconditionally.
 *
 * Sharding rule used by every distributed loop: item i (a chunk, a sequence,
 * a projection) belongs to rank i % dist_size(). Results are combined with
 * dist_sum_f64 over arrays in which each rank fills only the items it owns
 * and leaves zeros elsewhere: x + 0 is exact, so the combined array holds
 * exactly the values a single process computes, and a later in-order
 * accumulation over it is bit-identical to the single-process run. */
#ifndef QS_CORE_DIST_H
#define QS_CORE_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Starts MPI when built with it (MPI_Init_thread, funneled: only the thread
 * that called this makes MPI calls). Harmless without MPI. Call once, first. */
Status dist_init(int *argc, char ***argv, Err *err);

/* Ends MPI (MPI_Finalize) when it was started; no-op otherwise. */
void dist_finalize(void);

/* Stops every rank of the job with exit status code (MPI_Abort) when there
 * is more than one; returns otherwise so the caller exits normally. For
 * main.c only: library code returns a Status. */
void dist_abort(int code);

/* This process's rank in [0, dist_size()), and the number of ranks (1
 * without MPI or under a plain launch). */
int dist_rank(void);
int dist_size(void);

/* 1 when item i belongs to this rank (i % size == rank). */
int dist_owns(int64_t i);

/* Element-wise sum of buf (n doubles) over all ranks, result on every rank
 * (MPI_Allreduce in place). Identity with one rank. */
Status dist_sum_f64(double *buf, int64_t n, Err *err);

/* Element-wise sum of buf (n doubles) over all ranks onto root's buf
 * (MPI_Reduce; half an all-reduce's traffic when only root needs it); the
 * other ranks' buf is left as it was. Identity with one rank. */
Status dist_reduce_sum_f64(double *buf, int64_t n, int root, Err *err);

/* The same for int64 counts and for the element-wise maximum of doubles. */
Status dist_sum_i64(int64_t *buf, int64_t n, Err *err);
Status dist_max_f64(double *buf, int64_t n, Err *err);

/* Copies bytes of root's buf to every rank (MPI_Bcast, in pieces below
 * 2 GiB). Identity with one rank. */
Status dist_bcast(void *buf, size_t bytes, int root, Err *err);

/* Point to point: bytes of buf to rank `to` (MPI_Send), and the matching
 * receive from rank `from` into buf (MPI_Recv, exactly bytes), in pieces
 * below 2 GiB; messages between two ranks arrive in the order sent. Only
 * between two different ranks of a job: with one rank ST_ERR_ARG. */
Status dist_send(const void *buf, size_t bytes, int to, Err *err);
Status dist_recv(void *buf, size_t bytes, int from, Err *err);

/* Waits for every rank (MPI_Barrier); identity with one rank. */
Status dist_barrier(Err *err);

/* A counter shared by every rank: dist_counter_next hands out 0, 1, 2, ...
 * once each over the whole job, in the order the ranks ask. Under MPI it is
 * an atomic fetch-and-add on rank 0's memory (one-sided, MPI_Fetch_and_op),
 * so no rank stops its work to serve the others; with one rank a plain
 * counter. It lets ranks take work as they become free (dynamic dealing):
 * a rank slowed by another job on its core simply takes fewer items. */
typedef struct DistCounter DistCounter;

/* Collective: every rank calls it. Caller frees with dist_counter_free.
 * Errors: ST_ERR_NOMEM, ST_ERR_IO (MPI). */
Status dist_counter_new(DistCounter **out, Err *err);

/* The next value in *out (each value goes to exactly one caller). */
Status dist_counter_next(DistCounter *c, int64_t *out, Err *err);

/* Collective when there is more than one rank, so call it on the success
 * path only: a rank that failed returns without it (the CLI then stops the
 * whole job with dist_abort) rather than wait for ranks that never come.
 * NULL is a no-op. */
void dist_counter_free(DistCounter *c);

/* "rank 1 of 2: " when there is more than one rank, "" otherwise (static):
 * the prefix the CLI puts on a rank's error message. */
const char *dist_prefix(void);

#endif
