#include "core/progress.h"

#include <string.h>

void progress_init(Progress *p) {
    atomic_store(&p->done, 0);
    atomic_store(&p->total, 0);
    atomic_store(&p->cancel, 0);
    atomic_store(&p->value, 0.0);
    atomic_store(&p->stop_after, 0);
    p->stage[0] = '\0';
}

void progress_begin(Progress *p, const char *stage, int64_t total) {
    if (!p) return;
    strncpy(p->stage, stage ? stage : "", sizeof p->stage - 1);
    p->stage[sizeof p->stage - 1] = '\0';
    atomic_store(&p->done, 0);
    atomic_store(&p->total, total);
}

void progress_add(Progress *p, int64_t n) {
    if (!p) return;
    int64_t done = atomic_fetch_add(&p->done, n) + n;
    int64_t stop = atomic_load(&p->stop_after);
    if (stop > 0 && done >= stop) atomic_store(&p->cancel, 1);
}

int progress_cancelled(const Progress *p) {
    return p ? atomic_load(&((Progress *)p)->cancel) : 0;
}

void progress_cancel(Progress *p) { atomic_store(&p->cancel, 1); }
