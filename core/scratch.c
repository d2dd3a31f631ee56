#include "core/scratch.h"

#include <pthread.h>
#include <stdlib.h>

#include "core/alloc.h"

typedef struct Scratch {
    void *buf[SCRATCH_COUNT];
    size_t cap[SCRATCH_COUNT];
    void (*destroy[SCRATCH_COUNT])(void *); /* set for object slots */
} Scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;
static _Thread_local Scratch *scratch_tls;

static void scratch_release(Scratch *s, int i) {
    if (s->destroy[i]) s->destroy[i](s->buf[i]);
    else core_free_aligned(s->buf[i]);
    s->buf[i] = NULL;
    s->cap[i] = 0;
    s->destroy[i] = NULL;
}

static void scratch_free(void *p) {
    Scratch *s = p;
    if (!s) return;
    for (int i = 0; i < SCRATCH_COUNT; i++) scratch_release(s, i);
    free(s);
}

static void scratch_key_init(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0; }

/* The calling thread's scratch, set up on first use; NULL when it cannot be. */
static Scratch *scratch_self(void) {
    Scratch *s = scratch_tls;
    if (s) return s;
    pthread_once(&scratch_once, scratch_key_init);
    if (!scratch_key_ok || !(s = core_calloc(1, sizeof *s))) return NULL;
    if (pthread_setspecific(scratch_key, s) != 0) {
        free(s);
        return NULL;
    }
    scratch_tls = s;
    return s;
}

void *scratch_get(ScratchSlot slot, size_t bytes) {
    if ((int)slot < 0 || slot >= SCRATCH_COUNT) return NULL;
    Scratch *s = scratch_self();
    if (!s || s->destroy[slot]) return NULL;
    if (bytes == 0) bytes = 1;
    if (s->cap[slot] < bytes) {
        scratch_release(s, slot);
        /* a little headroom so that a slowly growing T does not reallocate every step */
        size_t want = bytes + bytes / 4;
        s->buf[slot] = core_alloc_aligned(want, 1);
        s->cap[slot] = s->buf[slot] ? want : 0;
    }
    return s->buf[slot];
}

void *scratch_obj(ScratchSlot slot) {
    if ((int)slot < 0 || slot >= SCRATCH_COUNT) return NULL;
    Scratch *s = scratch_self();
    return s && s->destroy[slot] ? s->buf[slot] : NULL;
}

int scratch_put(ScratchSlot slot, void *obj, void (*destroy)(void *)) {
    if ((int)slot < 0 || slot >= SCRATCH_COUNT || !destroy) return -1;
    Scratch *s = scratch_self();
    if (!s) return -1;
    scratch_release(s, slot);
    s->buf[slot] = obj;
    s->destroy[slot] = destroy;
    return 0;
}
