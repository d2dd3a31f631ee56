#include "core/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef QS_MPI
#include <limits.h>
#include <mpi.h>

static int dist_started;
static int dist_r, dist_n = 1;

/* MPI counts are int: arrays are reduced in pieces below INT_MAX elements. */
#define DIST_PIECE ((int64_t)1 << 28)

static Status dist_fail(Err *err, const char *what, int rc) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return err_set(err, ST_ERR_IO, "%s%s failed: %s", dist_prefix(), what, msg);
}

Status dist_init(int *argc, char ***argv, Err *err) {
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return dist_fail(err, "MPI_Init_thread", rc);
    dist_started = 1;
    /* Errors come back as codes, so a failed collective becomes a Status. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &dist_r);
    MPI_Comm_size(MPI_COMM_WORLD, &dist_n);
    return ST_OK;
}

void dist_finalize(void) {
    if (dist_started) MPI_Finalize();
    dist_started = 0;
}

void dist_abort(int code) {
    if (dist_started && dist_n > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

int dist_rank(void) { return dist_r; }
int dist_size(void) { return dist_n; }

static Status dist_allreduce(void *buf, int64_t n, MPI_Datatype type, size_t elem, MPI_Op op, Err *err) {
    if (dist_n <= 1) return ST_OK;
    for (int64_t i = 0; i < n; i += DIST_PIECE) {
        int64_t k = n - i < DIST_PIECE ? n - i : DIST_PIECE;
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + (size_t)i * elem, (int)k, type, op, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return dist_fail(err, "MPI_Allreduce", rc);
    }
    return ST_OK;
}

Status dist_sum_f64(double *buf, int64_t n, Err *err) {
    return dist_allreduce(buf, n, MPI_DOUBLE, sizeof(double), MPI_SUM, err);
}

Status dist_reduce_sum_f64(double *buf, int64_t n, int root, Err *err) {
    if (dist_n <= 1) return ST_OK;
    for (int64_t i = 0; i < n; i += DIST_PIECE) {
        int64_t k = n - i < DIST_PIECE ? n - i : DIST_PIECE;
        double *p = buf + i;
        int rc = dist_r == root ? MPI_Reduce(MPI_IN_PLACE, p, (int)k, MPI_DOUBLE, MPI_SUM, root, MPI_COMM_WORLD)
                                : MPI_Reduce(p, NULL, (int)k, MPI_DOUBLE, MPI_SUM, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return dist_fail(err, "MPI_Reduce", rc);
    }
    return ST_OK;
}

Status dist_sum_i64(int64_t *buf, int64_t n, Err *err) {
    return dist_allreduce(buf, n, MPI_INT64_T, sizeof(int64_t), MPI_SUM, err);
}

Status dist_max_f64(double *buf, int64_t n, Err *err) {
    return dist_allreduce(buf, n, MPI_DOUBLE, sizeof(double), MPI_MAX, err);
}

Status dist_bcast(void *buf, size_t bytes, int root, Err *err) {
    if (dist_n <= 1) return ST_OK;
    for (size_t i = 0; i < bytes; i += (size_t)DIST_PIECE) {
        size_t k = bytes - i < (size_t)DIST_PIECE ? bytes - i : (size_t)DIST_PIECE;
        int rc = MPI_Bcast((char *)buf + i, (int)k, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return dist_fail(err, "MPI_Bcast", rc);
    }
    return ST_OK;
}

Status dist_send(const void *buf, size_t bytes, int to, Err *err) {
    if (dist_n <= 1 || to == dist_r || to < 0 || to >= dist_n)
        return err_set(err, ST_ERR_ARG, "%ssend to rank %d of %d", dist_prefix(), to, dist_n);
    for (size_t i = 0; i < bytes; i += (size_t)DIST_PIECE) {
        size_t k = bytes - i < (size_t)DIST_PIECE ? bytes - i : (size_t)DIST_PIECE;
        int rc = MPI_Send((const char *)buf + i, (int)k, MPI_BYTE, to, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return dist_fail(err, "MPI_Send", rc);
    }
    return ST_OK;
}

Status dist_recv(void *buf, size_t bytes, int from, Err *err) {
    if (dist_n <= 1 || from == dist_r || from < 0 || from >= dist_n)
        return err_set(err, ST_ERR_ARG, "%sreceive from rank %d of %d", dist_prefix(), from, dist_n);
    for (size_t i = 0; i < bytes; i += (size_t)DIST_PIECE) {
        size_t k = bytes - i < (size_t)DIST_PIECE ? bytes - i : (size_t)DIST_PIECE;
        MPI_Status ms;
        int got = 0, rc = MPI_Recv((char *)buf + i, (int)k, MPI_BYTE, from, 0, MPI_COMM_WORLD, &ms);
        if (rc != MPI_SUCCESS) return dist_fail(err, "MPI_Recv", rc);
        if (MPI_Get_count(&ms, MPI_BYTE, &got) != MPI_SUCCESS || got != (int)k)
            return err_set(err, ST_ERR_IO, "%sreceived %d bytes from rank %d, expected %zu", dist_prefix(), got, from, k);
    }
    return ST_OK;
}

Status dist_barrier(Err *err) {
    if (dist_n <= 1) return ST_OK;
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? ST_OK : dist_fail(err, "MPI_Barrier", rc);
}

struct DistCounter {
    MPI_Win win;             /* one int64 on rank 0, none elsewhere */
    int64_t *base;
    int64_t next;            /* one rank: the plain counter */
};

Status dist_counter_new(DistCounter **out, Err *err) {
    *out = NULL;
    DistCounter *c = calloc(1, sizeof *c);
    if (!c) return err_set(err, ST_ERR_NOMEM, "counter");
    if (dist_n > 1) {
        MPI_Aint bytes = dist_r == 0 ? (MPI_Aint)sizeof(int64_t) : 0;
        int rc = MPI_Win_allocate(bytes, (int)sizeof(int64_t), MPI_INFO_NULL, MPI_COMM_WORLD, &c->base, &c->win);
        if (rc != MPI_SUCCESS) {
            free(c);
            return dist_fail(err, "MPI_Win_allocate", rc);
        }
        MPI_Win_set_errhandler(c->win, MPI_ERRORS_RETURN);
        if (dist_r == 0) { /* a local store, made public by the unlock */
            MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, c->win);
            *c->base = 0;
            MPI_Win_unlock(0, c->win);
        }
        rc = MPI_Barrier(MPI_COMM_WORLD);
        if (rc == MPI_SUCCESS) rc = MPI_Win_lock_all(0, c->win);
        if (rc != MPI_SUCCESS) {
            MPI_Win_free(&c->win);
            free(c);
            return dist_fail(err, "counter start", rc);
        }
    }
    *out = c;
    return ST_OK;
}

Status dist_counter_next(DistCounter *c, int64_t *out, Err *err) {
    if (dist_n <= 1) {
        *out = c->next++;
        return ST_OK;
    }
    const int64_t one = 1;
    int rc = MPI_Fetch_and_op(&one, out, MPI_INT64_T, 0, 0, MPI_SUM, c->win);
    if (rc == MPI_SUCCESS) rc = MPI_Win_flush(0, c->win);
    return rc == MPI_SUCCESS ? ST_OK : dist_fail(err, "MPI_Fetch_and_op", rc);
}

void dist_counter_free(DistCounter *c) {
    if (!c) return;
    if (dist_n > 1) {
        MPI_Win_unlock_all(c->win);
        MPI_Win_free(&c->win);
    }
    free(c);
}

#else /* one process */

struct DistCounter {
    int64_t next;
};

Status dist_counter_new(DistCounter **out, Err *err) {
    *out = calloc(1, sizeof **out);
    return *out ? ST_OK : err_set(err, ST_ERR_NOMEM, "counter");
}

Status dist_counter_next(DistCounter *c, int64_t *out, Err *err) {
    (void)err;
    *out = c->next++;
    return ST_OK;
}

void dist_counter_free(DistCounter *c) { free(c); }


Status dist_init(int *argc, char ***argv, Err *err) {
    (void)argc;
    (void)argv;
    (void)err;
    return ST_OK;
}

void dist_finalize(void) {}
void dist_abort(int code) { (void)code; }
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }

Status dist_sum_f64(double *buf, int64_t n, Err *err) {
    (void)buf, (void)n, (void)err;
    return ST_OK;
}

Status dist_sum_i64(int64_t *buf, int64_t n, Err *err) {
    (void)buf, (void)n, (void)err;
    return ST_OK;
}

Status dist_reduce_sum_f64(double *buf, int64_t n, int root, Err *err) {
    (void)buf, (void)n, (void)root, (void)err;
    return ST_OK;
}

Status dist_max_f64(double *buf, int64_t n, Err *err) {
    (void)buf, (void)n, (void)err;
    return ST_OK;
}

Status dist_bcast(void *buf, size_t bytes, int root, Err *err) {
    (void)buf, (void)bytes, (void)root, (void)err;
    return ST_OK;
}

Status dist_send(const void *buf, size_t bytes, int to, Err *err) {
    (void)buf, (void)bytes;
    return err_set(err, ST_ERR_ARG, "send to rank %d: one process, no other rank", to);
}

Status dist_recv(void *buf, size_t bytes, int from, Err *err) {
    (void)buf, (void)bytes;
    return err_set(err, ST_ERR_ARG, "receive from rank %d: one process, no other rank", from);
}

Status dist_barrier(Err *err) {
    (void)err;
    return ST_OK;
}

#endif

int dist_owns(int64_t i) { return i % dist_size() == dist_rank(); }

const char *dist_prefix(void) {
    static char buf[48];
    if (dist_size() <= 1) return "";
    snprintf(buf, sizeof buf, "rank %d of %d: ", dist_rank(), dist_size());
    return buf;
}
