#include "core/progress.h"

#include <string.h>

void progress_init(Progress *p) {
    atomic_store(&p->done, 0);
    atomic_store(&p->total, 0);
    atomic_store(&p->cancel, 0);
    atomic_store(&p->value, 0.0);
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
    if (p) atomic_fetch_add(&p->done, n);
}

int progress_cancelled(const Progress *p) {
    return p ? atomic_load(&((Progress *)p)->cancel) : 0;
}

void progress_cancel(Progress *p) { atomic_store(&p->cancel, 1); }
