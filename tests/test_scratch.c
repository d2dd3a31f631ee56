/* Decode steps without per-call allocation (issue 17 item 3): core/scratch.h's
 * per-thread buffers (alignment, growth, one buffer per slot and per thread)
 * and objects (released on replacement and at thread exit), then whole
 * single-token forward steps counted at the allocator — this program
 * interposes malloc and friends — after a warm-up: the base model (F32, and
 * llama-quantize's Q4_0 file through the fused block dots) and the quantized
 * layers of the W8A8, W4A8, int4 weight-only and fp8-activation plans must
 * not allocate at all, at every dispatch level (QS_CPU). A second prompt of
 * the same length (the batched paths: tiles, GEMM packing) must not either. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/qmodel.h"
#include "core/pool.h"
#include "core/scratch.h"
#include "kernels/cpu.h"
#include "model/forward.h"
#include "model/model.h"
#include "quant/plan.h"
#include "quant/preset.h"
#include "sessions/plan_json.h"
#include "testlib.h"

/* === counting allocator (glibc's own underneath) ===
 * Not under AddressSanitizer (`make asan`), whose runtime owns malloc: there
 * the counts are not taken (COUNTS 0) and only the scratch semantics run. */

#if defined(__SANITIZE_ADDRESS__)
#define COUNTS 0
static atomic_int counting;
static atomic_long n_alloc;
#else
#define COUNTS 1

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
void *memalign(size_t a, size_t n); /* glibc's obsolete one, declared in <malloc.h> */

static atomic_int counting;
static atomic_long n_alloc;

static void count(void) {
    if (atomic_load(&counting)) atomic_fetch_add(&n_alloc, 1);
}

void *malloc(size_t n) {
    count();
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    count();
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    count();
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t a, size_t n) {
    count();
    return __libc_memalign(a, n);
}
void *memalign(size_t a, size_t n) {
    count();
    return __libc_memalign(a, n);
}
int posix_memalign(void **p, size_t a, size_t n) {
    count();
    *p = __libc_memalign(a, n);
    return *p ? 0 : ENOMEM;
}
void free(void *p) { __libc_free(p); }
#endif

/* === scratch itself === */

static void *other_thread(void *arg) {
    void **seen = arg;
    *seen = scratch_get(SCRATCH_QL_ACT, 100);
    return NULL;
}

static int n_destroyed;
static void obj_destroy(void *p) {
    n_destroyed++;
    free(p);
}

static void *obj_thread(void *arg) {
    (void)arg;
    CHECK(scratch_obj(SCRATCH_WQ_GEMM) == NULL); /* the other thread's is not this one's */
    CHECK(scratch_put(SCRATCH_WQ_GEMM, malloc(8), obj_destroy) == 0);
    return NULL;
}

static void check_objects(void) {
    CHECK(scratch_obj(SCRATCH_WQ_GEMM) == NULL);
    void *a = malloc(8), *b = malloc(8);
    CHECK(scratch_put(SCRATCH_WQ_GEMM, a, obj_destroy) == 0 && scratch_obj(SCRATCH_WQ_GEMM) == a);
    CHECK(scratch_get(SCRATCH_WQ_GEMM, 16) == NULL); /* an object slot is no buffer */
    CHECK(scratch_put(SCRATCH_WQ_GEMM, b, obj_destroy) == 0 && scratch_obj(SCRATCH_WQ_GEMM) == b);
    CHECK(n_destroyed == 1); /* a, on replacement */
    pthread_t th;
    CHECK(pthread_create(&th, NULL, obj_thread, NULL) == 0 && pthread_join(th, NULL) == 0);
    CHECK(n_destroyed == 2); /* the thread's, at its exit */
    CHECK(scratch_obj(SCRATCH_WQ_GEMM) == b);
    CHECK(scratch_put(SCRATCH_COUNT, b, obj_destroy) == -1 && scratch_obj(SCRATCH_COUNT) == NULL);
}

static void check_scratch(void) {
    char *a = scratch_get(SCRATCH_QL_ACT, 100), *b = scratch_get(SCRATCH_QL_SCALE, 100);
    CHECK(a && b && a != b && (uintptr_t)a % 64 == 0 && (uintptr_t)b % 64 == 0);
    memset(a, 1, 100);
    CHECK(scratch_get(SCRATCH_QL_ACT, 80) == a); /* smaller: the same buffer */
    char *c = scratch_get(SCRATCH_QL_ACT, 1 << 20);
    CHECK(c && (uintptr_t)c % 64 == 0);
    memset(c, 2, 1 << 20);                        /* all of it is writable */
    atomic_store(&n_alloc, 0);
    atomic_store(&counting, 1);
    CHECK(scratch_get(SCRATCH_QL_ACT, 1 << 20) == c && scratch_get(SCRATCH_QL_ACT, 5) == c);
    atomic_store(&counting, 0);
    CHECK(!COUNTS || atomic_load(&n_alloc) == 0);
    CHECK(scratch_get(SCRATCH_COUNT, 8) == NULL);
    /* the counter sees what it should (a test that cannot fail is no test) */
    atomic_store(&counting, 1);
    void *volatile probe = malloc(16);
    char *grown = scratch_get(SCRATCH_QL_ACT, 4 << 20);
    atomic_store(&counting, 0);
    free(probe);
    CHECK(grown && (!COUNTS || atomic_load(&n_alloc) == 2));
    void *seen = NULL;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, other_thread, &seen) == 0 && pthread_join(th, NULL) == 0);
    CHECK(seen != NULL && seen != c); /* each thread its own (freed at its exit) */
}

/* === whole decode steps === */

/* Allocations of `steps` single-token steps after a prompt and two warm-up
 * steps; *prefill gets those of a second prompt of the same length. */
static long decode_allocs(const Model *m, const Overlay *ov, Pool *pool, int64_t steps, long *prefill) {
    Err err;
    err_init(&err);
    Forward *f = NULL;
    CHECK_OK(forward_new(m, ov, 64, 16, pool, &f, &err), err);
    int64_t V = m->cfg.vocab_size;
    float *logits = malloc((size_t)(16 * V) * sizeof *logits);
    CHECK(logits);
    int32_t prompt[12];
    for (int i = 0; i < 12; i++) prompt[i] = (int32_t)((i * 37 + 1) % V);
    CHECK_OK(forward_run(f, prompt, 12, logits, 1, NULL, &err), err);
    int32_t tok = 5;
    for (int i = 0; i < 2; i++) CHECK_OK(forward_run(f, &tok, 1, logits, 1, NULL, &err), err);
    atomic_store(&n_alloc, 0);
    atomic_store(&counting, 1);
    for (int64_t i = 0; i < steps; i++) {
        Status st = forward_run(f, &tok, 1, logits, 1, NULL, &err);
        if (st != ST_OK) break;
        tok = (int32_t)((tok * 7 + 3) % V);
    }
    atomic_store(&counting, 0);
    long n = atomic_load(&n_alloc);
    forward_reset(f);
    atomic_store(&n_alloc, 0);
    atomic_store(&counting, 1);
    CHECK_OK(forward_run(f, prompt, 12, logits, 1, NULL, &err), err);
    atomic_store(&counting, 0);
    *prefill = atomic_load(&n_alloc);
    free(logits);
    forward_free(f);
    return n;
}

/* Every model and plan above at the current dispatch level. */
static void check_decode(const Model *m, Pool *pool) {
    Err err;
    err_init(&err);
    const char *lvl = cpu_describe();
    long pf = 0, n = decode_allocs(m, NULL, pool, 8, &pf);
    printf("[%s] base F32: %ld allocations in 8 decode steps, %ld in a second prompt\n", lvl, n, pf);
    CHECK(n == 0 && pf == 0);
    Model *q4 = NULL;
    CHECK_OK(model_load(testlib_shared("models/stories260K/stories260K-Q4_0-mixed.gguf"), NULL, &q4, &err), err);
    n = decode_allocs(q4, NULL, pool, 8, &pf);
    printf("[%s] base Q4_0 (block dots): %ld allocations in 8 decode steps, %ld in a second prompt\n", lvl, n, pf);
    CHECK(n == 0 && pf == 0);
    model_free(q4);
    PlanModel pm = PLAN_MODEL_FROM_CONFIG(&m->cfg);
    PresetOpts po;
    preset_opts_default(&po);
    static const char *const PRESETS[] = {"w8a8-token", "w4a8-token", "int4-rtn"};
    for (size_t i = 0; i < 4; i++) {
        Plan p;
        if (i < 3) {
            CHECK_OK(plan_preset(&p, PRESETS[i], &po, &pm, &err), err);
        } else { /* int4 weights behind fp8 fake-quantized activations */
            const char *js = "{\"schema_version\": 1, \"name\": \"int4-fp8\", \"default\": {\"format\": \"int4\", "
                             "\"sym\": true, \"group_dim\": \"oc\", \"group\": 0, \"act\": \"fp8-e4m3\"}}";
            CHECK_OK(plan_json_read(js, strlen(js), "test", &pm, &p, &err), err);
        }
        QModel *qm = NULL;
        CHECK_OK(qmodel_build(m, &p, NULL, pool, NULL, &qm, &err), err);
        n = decode_allocs(&qm->model, &qm->ov, pool, 8, &pf);
        printf("[%s] %s: %ld allocations in 8 decode steps, %ld in a second prompt\n", lvl,
               i < 3 ? PRESETS[i] : "int4 + fp8 activations", n, pf);
        CHECK(n == 0 && pf == 0);
        qmodel_free(qm);
        plan_done(&p);
    }
}

int main(void) {
    check_scratch();
    check_objects();
    Err err;
    err_init(&err);
    Pool *pool = NULL;
    CHECK_OK(pool_new(2, &pool, &err), err);
    Model *m = NULL;
    CHECK_OK(model_load(testlib_shared("models/stories260K/stories260K-f32.gguf"), NULL, &m, &err), err);
    if (!COUNTS) {
        printf("test_scratch: allocation counts skipped (AddressSanitizer owns malloc)\n");
        model_free(m);
        pool_free(pool);
        return testlib_done("test_scratch");
    }
    static const char *const LEVELS[] = {NULL, "avx2", "scalar"};
    for (int lv = 0; lv < 3; lv++) {
        if (LEVELS[lv]) setenv("QS_CPU", LEVELS[lv], 1);
        cpu_refresh();
        check_decode(m, pool);
    }
    unsetenv("QS_CPU");
    cpu_refresh();
    model_free(m);
    pool_free(pool);
    return testlib_done("test_scratch");
}
