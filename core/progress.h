/* Progress and cancellation shared between a long job and whoever watches it
 * (a CLI progress bar, the TUI's job runner). Lock-free: atomics only. */
#ifndef QS_CORE_PROGRESS_H
#define QS_CORE_PROGRESS_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct Progress {
    _Atomic int64_t done;
    _Atomic int64_t total;
    _Atomic int cancel;        /* set by the watcher; the job polls it */
    _Atomic double value;      /* latest figure the job wants shown (e.g. running PPL) */
    _Atomic int64_t stop_after;/* > 0: progress_add cancels once `done` reaches it (replaying a
                                  recorded cancel: a calibration that kept 9 of 16 sequences) */
    char stage[64];            /* written only by the job before it bumps `done` */
} Progress;

/* Zeroes *p. */
void progress_init(Progress *p);

/* Sets the stage label (truncated to 63 bytes) and the total; p may be NULL. */
void progress_begin(Progress *p, const char *stage, int64_t total);

/* Adds n to done (and cancels when it reaches a stop_after > 0); p may be NULL. */
void progress_add(Progress *p, int64_t n);

/* Returns 1 when cancellation was requested (p may be NULL: returns 0). */
int progress_cancelled(const Progress *p);

/* Requests cancellation. */
void progress_cancel(Progress *p);

#endif
