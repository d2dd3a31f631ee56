/* Per-thread scratch kept between calls, so that a kernel called once per
 * projection per decoded token does not go to the allocator each time (and a
 * large prefill buffer does not pay fresh page faults every call). Each call
 * site owns one slot; a slot's buffer grows on demand, never shrinks, and is
 * freed when its thread exits (a pthread key destructor; the main thread's
 * stay reachable until exit). A slot may instead hold an object its user
 * builds (with the function that frees it), for scratch that is more than
 * bytes (wq_gemm's GEMM packing buffers). */
#ifndef QS_CORE_SCRATCH_H
#define QS_CORE_SCRATCH_H

#include <stddef.h>

/* One slot per call site, so that nested users never share a buffer. */
typedef enum {
    SCRATCH_QL_ACT,     /* quant/qlinear_build.c: int8 activations (and W4A8's prepared copy) */
    SCRATCH_QL_CORR,    /* quant/qlinear_build.c: W4A8 per-block corrections */
    SCRATCH_QL_SCALE,   /* quant/qlinear_build.c: per-row activation scales */
    SCRATCH_QL_XQ,      /* quant/qlinear_build.c: fake-quantized activations */
    SCRATCH_ACTQ_SCALE, /* kernels/actquant.c actq_fake: per-row scales */
    SCRATCH_GEMV_X,     /* kernels/wq_gemm.c GEMV: padded / pre-scaled input */
    SCRATCH_GEMV_ZTERM, /* kernels/wq_gemm.c GEMV: zero-point terms */
    SCRATCH_GEMV_XSUM,  /* kernels/wq_gemm.c GEMV: group sums of x */
    SCRATCH_GEMV_ROW,   /* kernels/wq_gemm.c GEMV fallback: one dequantized row (pool workers) */
    SCRATCH_WQ_TILE,    /* kernels/wq_gemm.c batches: the dequantized tile of rows */
    SCRATCH_WQ_GEMM,    /* kernels/wq_gemm.c batches: the GEMM's packing buffers (an object) */
    SCRATCH_COUNT
} ScratchSlot;

/* Returns a buffer of at least `bytes` bytes, 64-byte aligned, owned by the
 * calling thread and valid until its next scratch_get(slot) or its exit;
 * the contents are not kept when it grows. NULL when it cannot be
 * allocated (callers fail as they would on a failed malloc). */
void *scratch_get(ScratchSlot slot, size_t bytes);

/* Returns the object the calling thread stored in `slot` with scratch_put,
 * or NULL (none yet, or the thread's scratch cannot be set up). Borrowed:
 * valid until the thread's next scratch_put(slot) or its exit. */
void *scratch_obj(ScratchSlot slot);

/* Stores obj in the calling thread's `slot` (releasing what the slot held
 * before, with that object's own function); the thread's exit releases it
 * with destroy(obj). Returns 0, or -1 when the thread's scratch cannot be set
 * up: the caller still owns obj then. A slot holds either a buffer or an
 * object, never both. */
int scratch_put(ScratchSlot slot, void *obj, void (*destroy)(void *));

#endif
