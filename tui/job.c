/* Job runner (see job.h). */
#include "tui/job.h"

#include <stdio.h>
#include <string.h>

#include "core/assert.h"
#include "core/clock.h"

double jobs_now(void) { return clock_now(); }

static void *jobs_main(void *arg) {
    JobRunner *jr = arg;
    pthread_mutex_lock(&jr->mu);
    for (;;) {
        /* The next job starts only after the main thread has applied the last
         * result (jobs_poll), so a queued job sees the state its predecessor made. */
        while (!jr->stop && (jr->n_queue == 0 || jr->n_done > 0)) pthread_cond_wait(&jr->cv, &jr->mu);
        if (jr->stop) break;
        jr->running = jr->queue[0];
        memmove(jr->queue, jr->queue + 1, (size_t)(jr->n_queue - 1) * sizeof jr->queue[0]);
        jr->n_queue--;
        jr->has_running = 1;
        progress_init(&jr->prog);
        jr->running.t_start = jobs_now();
        Job j = jr->running;
        pthread_mutex_unlock(&jr->mu);

        err_init(&j.err);
        j.st = j.run(j.arg, &jr->prog, &j.err);
        j.t_end = jobs_now();

        pthread_mutex_lock(&jr->mu);
        jr->has_running = 0;
        /* A job starts only when the done list is empty, so it holds one at most. */
        ASSERT(jr->n_done < JOBS_MAX_QUEUE);
        jr->done[jr->n_done++] = j;
    }
    pthread_mutex_unlock(&jr->mu);
    return NULL;
}

Status jobs_init(JobRunner *jr, Err *err) {
    memset(jr, 0, sizeof *jr);
    pthread_mutex_init(&jr->mu, NULL);
    pthread_cond_init(&jr->cv, NULL);
    progress_init(&jr->prog);
    jr->next_id = 1;
    if (pthread_create(&jr->thread, NULL, jobs_main, jr) != 0) {
        pthread_mutex_destroy(&jr->mu);
        pthread_cond_destroy(&jr->cv);
        return err_set(err, ST_ERR_STATE, "cannot start the job thread");
    }
    jr->started = 1;
    return ST_OK;
}

void jobs_done(JobRunner *jr) {
    if (!jr->started) return;
    pthread_mutex_lock(&jr->mu);
    jr->stop = 1;
    progress_cancel(&jr->prog);
    for (int i = 0; i < jr->n_queue; i++)
        if (jr->queue[i].free_fn) jr->queue[i].free_fn(jr->queue[i].arg);
    jr->n_queue = 0;
    pthread_cond_broadcast(&jr->cv);
    pthread_mutex_unlock(&jr->mu);
    pthread_join(jr->thread, NULL);
    for (int i = 0; i < jr->n_done; i++)
        if (jr->done[i].free_fn) jr->done[i].free_fn(jr->done[i].arg);
    jr->n_done = 0;
    pthread_mutex_destroy(&jr->mu);
    pthread_cond_destroy(&jr->cv);
    jr->started = 0;
}

int64_t jobs_submit(JobRunner *jr, const char *label, JobRunFn run, JobFinishFn finish, JobFreeFn free_fn,
                    void *arg, Err *err) {
    pthread_mutex_lock(&jr->mu);
    if (jr->n_queue == JOBS_MAX_QUEUE) {
        pthread_mutex_unlock(&jr->mu);
        if (free_fn) free_fn(arg);
        err_set(err, ST_ERR_STATE, "job queue full (%d waiting): '%s' not queued", JOBS_MAX_QUEUE, label);
        return 0;
    }
    Job *j = &jr->queue[jr->n_queue++];
    memset(j, 0, sizeof *j);
    j->id = jr->next_id++;
    snprintf(j->label, sizeof j->label, "%s", label);
    j->run = run;
    j->finish = finish;
    j->free_fn = free_fn;
    j->arg = arg;
    int64_t id = j->id;
    pthread_cond_signal(&jr->cv);
    pthread_mutex_unlock(&jr->mu);
    return id;
}

int jobs_poll(JobRunner *jr, void *ctx) {
    pthread_mutex_lock(&jr->mu);
    if (jr->n_done == 0) {
        pthread_mutex_unlock(&jr->mu);
        return 0;
    }
    Job j = jr->done[0];
    memmove(jr->done, jr->done + 1, (size_t)(jr->n_done - 1) * sizeof jr->done[0]);
    jr->n_done--;
    pthread_cond_signal(&jr->cv);
    pthread_mutex_unlock(&jr->mu);
    if (j.finish) j.finish(j.arg, j.st, &j.err, ctx);
    if (j.free_fn) j.free_fn(j.arg);
    return 1;
}

int jobs_cancel(JobRunner *jr) {
    pthread_mutex_lock(&jr->mu);
    int r = jr->has_running;
    if (r) progress_cancel(&jr->prog);
    pthread_mutex_unlock(&jr->mu);
    return r;
}

void jobs_view(JobRunner *jr, JobView *v) {
    memset(v, 0, sizeof *v);
    v->eta = -1;
    pthread_mutex_lock(&jr->mu);
    v->running = jr->has_running;
    if (v->running) {
        snprintf(v->label, sizeof v->label, "%s", jr->running.label);
        v->done = atomic_load(&jr->prog.done);
        v->total = atomic_load(&jr->prog.total);
        v->value = atomic_load(&jr->prog.value);
        memcpy(v->stage, jr->prog.stage, sizeof v->stage);
        v->stage[sizeof v->stage - 1] = 0;
        v->elapsed = jobs_now() - jr->running.t_start;
        if (v->total > 0 && v->done > 0 && v->done <= v->total)
            v->eta = v->elapsed * (double)(v->total - v->done) / (double)v->done;
    }
    v->n_queued = jr->n_queue;
    for (int i = 0; i < jr->n_queue; i++) snprintf(v->queued[i], sizeof v->queued[i], "%s", jr->queue[i].label);
    pthread_mutex_unlock(&jr->mu);
}

int jobs_busy(JobRunner *jr) {
    pthread_mutex_lock(&jr->mu);
    int b = jr->has_running || jr->n_queue > 0;
    pthread_mutex_unlock(&jr->mu);
    return b;
}
