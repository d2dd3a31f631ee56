/* W4A8: int4 symmetric weights times int8 activations with integer dot
 * products (AVX-512 VNNI vpdpbusd, AVX2 vpmaddubsw, scalar twin):
 *     y[t][o] = sa[t] · Σ_b s(o, b) · Σ_{i in block b} q(o, i) · a(t, i)
 * over blocks b of 32 inputs; q in [-8, 7] are the weight codes, s(o, b) the
 * scale of the group holding block b, a the int8 activation codes of token t
 * and sa[t] its scale (kernels/actquant.h: a = clamp(rint(x / sa), ±127)).
 * This is the dequantized-weight, fake-quantized-activation product of the
 * plan's reference semantics, summed in another order: the inner sums are
 * exact int32 (|Σ| ≤ 32·8·127 per block), only the ⌈k/32⌉ block terms and
 * the final scaling round in float.
 *
 * Grouping: one scale per row (OC, g = 0), groups of g along each row with
 * g a multiple of 32 dividing k (OC), or one scale for the tensor. Groups
 * are stored expanded to one fp16 scale per 32-input block (2 bytes per 32
 * weights, llama.cpp Q4_0's density), so every supported g runs the same
 * loop. The scales must be exact in fp16 (quant/qtensor.h guarantees this
 * for the quantizers' output); g = 4..16 is not supported (callers fall back
 * to the weight-only kernel with fake-quantized activations).
 *
 * Layout. Rows are padded with zero codes to kp = k rounded up to 256 and cut
 * into superblocks of 256 inputs = 8 blocks of 32. Inside a superblock the
 * inputs are reordered so that one 64-byte vector of int8 activations covers
 * a quarter of every block: vector c (0..3), 32-bit lane j (0..15), byte b
 * (0..3) holds input
 *     32 · (j mod 8) + 4 · (2c + j div 8) + b.
 * Every int32 lane of a vpdpbusd then belongs to one block (j mod 8) in all
 * four vectors, so a superblock is four chained vpdpbusd and one int→float
 * conversion and FMA with the 8 block scales (twice), instead of one per 64
 * inputs. Codes: 128 bytes per superblock; byte i of bytes [64h, 64h + 64)
 * holds u = q + 8 of vector 2h's byte i in its low nibble and of vector
 * 2h + 1's byte i in its high nibble. The unsigned nibble goes straight into
 * the unsigned operand of vpdpbusd / vpmaddubsw; the +8 offset is removed
 * exactly by starting each lane at -8 · Σ of its 16 activation codes.
 *
 * Activations: natural-order int8 codes a (T, kp), zero in the padding
 * [k, kp) (what actq_quantize_int8 writes with ldq = kp), and their scales
 * sa (T); w4a8_act_prep reorders them and computes the lane corrections
 * once per token. */
#ifndef QS_KERNELS_W4A8_H
#define QS_KERNELS_W4A8_H

#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"
#include "kernels/wq_gemm.h"

typedef struct W4a8Matrix {
    int64_t n, k;            /* logical shape (n_out, n_in) */
    int64_t kp;              /* k rounded up to 256 */
    size_t row_bytes;        /* kp / 2 */
    uint8_t *codes;          /* (n, row_bytes) nibbles in the layout above, 64-byte aligned */
    uint16_t *scale;         /* (n, kp / 32) fp16 scale of each 32-input block (0 in padding) */
    WqGroup gdim;            /* WQ_GROUP_OC or WQ_GROUP_TENSOR, as packed */
    int64_t group;           /* OC group size as packed (0 = whole row) */
} W4a8Matrix;

/* Returns 1 when the grouping can run here (tensor; OC with g = 0, or g a
 * positive multiple of 32 dividing k), else 0. */
int w4a8_group_ok(WqGroup gdim, int64_t group, int64_t k);

/* Packs symmetric int4 codes q (n, k), |q| ≤ 8 (q = -8 allowed), with scales
 * laid out as quant/qtensor.h's OC or tensor grouping (n · k / g, n or 1
 * entries). Fills *out (release with w4a8mat_done). Fails with ST_ERR_ARG on
 * a bad shape or grouping (see w4a8_group_ok), ST_ERR_RANGE on a code out of
 * range or a scale that is not exact in fp16 (or not finite), ST_ERR_NOMEM. */
Status w4a8mat_pack(const int8_t *q, int64_t n, int64_t k, WqGroup gdim, int64_t group, const float *scale,
                    W4a8Matrix *out, Err *err);

/* Releases the arrays of an embedded W4a8Matrix; safe on a zeroed one. */
void w4a8mat_done(W4a8Matrix *m);

/* Bytes of the packed codes and fp16 block scales (what a GEMV streams). */
size_t w4a8mat_bytes(const W4a8Matrix *m);

/* Reorders natural-order int8 codes a (T, kp) into ap (T, kp) as the layout
 * above and fills corr (T, kp / 16) with each lane's -8 · Σ of its codes. */
void w4a8_act_prep(const int8_t *a, int64_t T, int64_t kp, int8_t *ap, int32_t *corr);

/* y (T, n) = the product above for prepared activations ap (T, m->kp) and
 * corr (T, m->kp / 16) (w4a8_act_prep) with scales sa (T). Rows are split
 * over pool (may be NULL); within a block of four rows all T tokens run
 * while the rows sit in cache. Dispatches to the VNNI, AVX2 or scalar path
 * (kernels/cpu.h). */
void w4a8_gemm(const W4a8Matrix *m, const int8_t *ap, const int32_t *corr, const float *sa, int64_t T, float *y,
               Pool *pool);

/* One w4a8_gemm cut into work units (four rows each) that any thread may
 * run, so that several matrices sharing one input run in one pool dispatch
 * (core/pool.h pool_for_parts). w4a8_gemm_job_init fills *j (the path as
 * w4a8_gemm chooses it), returns the number of units and sets *grain to the
 * units w4a8_gemm keeps together (small matrices stay on one thread);
 * w4a8_gemm_job_run (a PoolFn, arg = j) computes units [b, e). Running
 * every unit once gives exactly w4a8_gemm's y. j borrows everything. */
typedef struct W4a8Job {
    const W4a8Matrix *m;
    const int8_t *a;         /* prepared activations (T, m->kp) */
    const int32_t *corr;     /* (T, m->kp / 16) */
    const float *sa;         /* (T) */
    int64_t T;
    float *y;                /* (T, m->n) */
    void (*rows)(const W4a8Matrix *m, int64_t r0, int64_t r1, const int8_t *a, const int32_t *corr,
                 const float *sa, int64_t T, float *y);
} W4a8Job;
int64_t w4a8_gemm_job_init(W4a8Job *j, const W4a8Matrix *m, const int8_t *ap, const int32_t *corr, const float *sa,
                           int64_t T, float *y, int64_t *grain);
void w4a8_gemm_job_run(void *j, int64_t b, int64_t e, int tid);

/* The single paths, for tests and benchmarks: callers check
 * cpu_has_avx512_vnni() / cpu_has_avx2() and cpu_has_f16c() first. */
void w4a8_gemm_vnni(const W4a8Matrix *m, const int8_t *ap, const int32_t *corr, const float *sa, int64_t T,
                    float *y, Pool *pool);
void w4a8_gemm_avx2(const W4a8Matrix *m, const int8_t *ap, const int32_t *corr, const float *sa, int64_t T,
                    float *y, Pool *pool);

/* Scalar twin on natural-order codes a (T, m->kp) (not prepared): per block
 * of 32 inputs Σ q·a in int32 from the packed codes (decoded through the
 * layout, without the offset trick), block terms s·Σ added in float in
 * block order, times sa. */
void w4a8_gemm_ref(const W4a8Matrix *m, const int8_t *a, const float *sa, int64_t T, float *y);

/* Returns the path w4a8_gemm takes on this CPU: "vnni", "avx2" or "scalar". */
const char *w4a8_path_name(void);

#endif
