/* The job runner: long work (calibration, quantization, evaluation) runs on
 * one worker thread, one job at a time, with a visible FIFO queue. A job
 * reports through its core/progress.h Progress and honours cancel; when it
 * ends, the main thread collects it with jobs_poll and applies the result
 * (the finish callback runs there, so only the main thread touches the UI
 * state and curses). The next job starts only after the previous one was
 * polled, so it sees its predecessor's result. Curses-free. */
#ifndef QS_TUI_JOB_H
#define QS_TUI_JOB_H

#include <pthread.h>
#include <stdint.h>

#include "core/progress.h"
#include "core/status.h"

#define JOBS_MAX_QUEUE 8

/* Runs on the worker thread. arg belongs to the job; p is the job's progress. */
typedef Status (*JobRunFn)(void *arg, Progress *p, Err *err);
/* Runs on the main thread (from jobs_poll) with the run's status; then free_fn(arg). */
typedef void (*JobFinishFn)(void *arg, Status st, const Err *err, void *ctx);
typedef void (*JobFreeFn)(void *arg);

typedef struct Job {
    int64_t id;
    char label[48];
    JobRunFn run;
    JobFinishFn finish;
    JobFreeFn free_fn;
    void *arg;
    Status st;
    Err err;
    double t_start, t_end;   /* monotonic seconds */
} Job;

typedef struct JobRunner {
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Job queue[JOBS_MAX_QUEUE];   /* waiting, FIFO */
    int n_queue;
    Job running;                 /* valid when has_running */
    int has_running;
    Job done[JOBS_MAX_QUEUE];    /* finished, not yet polled */
    int n_done;
    int stop;
    int64_t next_id;
    Progress prog;               /* of the running job (reset when it starts) */
} JobRunner;

/* Starts the worker thread. jobs_done stops it. */
Status jobs_init(JobRunner *jr, Err *err);

/* Cancels the running job, drops the queue (their free_fn runs), joins the
 * worker and frees what is left; safe on a zeroed runner. Finished jobs not
 * polled are freed without their finish callback. */
void jobs_done(JobRunner *jr);

/* Queues a job; returns its id (> 0), or 0 with err set when the queue is
 * full (then free_fn(arg) has been called). label is copied. */
int64_t jobs_submit(JobRunner *jr, const char *label, JobRunFn run, JobFinishFn finish, JobFreeFn free_fn,
                    void *arg, Err *err);

/* Main thread: takes one finished job, calls its finish(arg, st, err, ctx)
 * and free_fn(arg). Returns 1 if a job was finished, 0 if none was waiting. */
int jobs_poll(JobRunner *jr, void *ctx);

/* Requests cancellation of the running job; returns 1 if one was running. */
int jobs_cancel(JobRunner *jr);

/* What the title bar shows. */
typedef struct JobView {
    int running;
    char label[48];
    char stage[64];
    int64_t done, total;
    double value;            /* Progress.value (e.g. running PPL) */
    double elapsed;          /* seconds since the job started */
    double eta;              /* seconds left (linear in done/total), < 0 if unknown */
    int n_queued;
    char queued[JOBS_MAX_QUEUE][48];
} JobView;

/* Snapshot of the runner under its lock. */
void jobs_view(JobRunner *jr, JobView *v);

/* 1 when a job is running or queued. */
int jobs_busy(JobRunner *jr);

/* Monotonic clock in seconds: the same clock as core/clock.h clock_now(). */
double jobs_now(void);

#endif
