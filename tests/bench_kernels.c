/* Kernel benchmarks (make bench): int8 GEMM GOPS vs OpenBLAS sgemm GFLOP/s on
 * 512×4096×4096, weight-only int4 GEMV bandwidth on 4096×4096 and on the
 * TinyLlama projection shapes, and W8A8 / int4 whole-model estimates from the
 * per-projection times. Threads: QS_THREADS (default 2). Prints one line per
 * measurement and a closing summary. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/pool.h"
#include "kernels/actquant.h"
#include "kernels/cpu.h"
#include "kernels/f32gemm.h"
#include "kernels/int8_gemm.h"
#include "kernels/sgemm.h"
#include "kernels/wq_gemm.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rng_uniform(void) { return (float)(rng_u32() & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f; }

/* Best of `reps` timings (seconds) of one call of fn. */
#define BEST_OF(reps, secs, stmt)                     \
    do {                                              \
        secs = 1e30;                                  \
        for (int r_ = 0; r_ < (reps); r_++) {         \
            double t0_ = now_s();                     \
            stmt;                                     \
            double d_ = now_s() - t0_;                \
            if (d_ < secs) secs = d_;                 \
        }                                             \
    } while (0)

typedef struct Shape { const char *name; int64_t n, k; int count; } Shape;

/* TinyLlama layer shape (dim 2048, hidden 5632, 4 KV heads × 64): the
 * projections of one layer, plus the 512-row output head once per model. */
static const Shape tiny_layer[] = {
    {"wq", 2048, 2048, 1}, {"wk", 256, 2048, 1}, {"wv", 256, 2048, 1}, {"wo", 2048, 2048, 1},
    {"w1", 5632, 2048, 1}, {"w3", 5632, 2048, 1}, {"w2", 2048, 5632, 1},
};
#define TINY_LAYERS 4

static GemmWork *bench_gw;

/* Times int8 GEMM (with the activation quantization a layer runs) on
 * (M, K) x (N, K); *sgemm_s receives OpenBLAS sgemm's time, *own_s our
 * AVX-512 f32 GEMM's (the forward pass's F32 path), either may be NULL. */
static double bench_int8(Pool *pool, int64_t M, int64_t N, int64_t K, int reps, double *sgemm_s, double *own_s) {
    Err err;
    int64_t kp = i8gemm_kpad(K);
    int8_t *A = malloc((size_t)(M * kp)), *B = malloc((size_t)(N * K));
    float *xs = malloc((size_t)(M * K) * 4), *as = malloc((size_t)M * 4), *C = malloc((size_t)(M * N) * 4);
    float *Bf = (sgemm_s || own_s) ? malloc((size_t)(N * K) * 4) : NULL;
    for (int64_t i = 0; i < M * K; i++) xs[i] = rng_uniform();
    for (int64_t i = 0; i < N * K; i++) B[i] = (int8_t)(rng_u32() % 255 - 127);
    float ws = 0.01f;
    I8Matrix w;
    if (i8mat_pack(B, N, K, &ws, 0, &w, &err) != ST_OK) { fprintf(stderr, "%s\n", err.detail); exit(1); }
    ActQuant aq = {ACTQ_INT8, 1, 0, 0, 0};
    double t;
    /* includes the dynamic per-token activation quantization, as a layer would run it */
    BEST_OF(reps, t, (actq_quantize_int8(&aq, xs, M, K, 0, A, kp, as), i8gemm(&w, A, M, kp, as, C, N, pool)));
    if (Bf)
        for (int64_t i = 0; i < N * K; i++) Bf[i] = rng_uniform();
    if (sgemm_s) {
        sgemm_set_threads(pool_size(pool));
        BEST_OF(reps, *sgemm_s, sgemm_mul_nt(M, N, K, xs, K, Bf, K, 0.0f, C, N));
    }
    if (own_s) BEST_OF(reps, *own_s, gemm_f32_nt_pool(pool, bench_gw, M, N, K, xs, K, Bf, K, 0.0f, C, N));
    i8mat_done(&w);
    free(A); free(B); free(xs); free(as); free(C); free(Bf);
    return t;
}


/* Seconds per int4 GEMV (best of reps) of an (n, k) matrix with OC groups of
 * g (0 = per row); *bytes receives the bytes one call reads (codes + scales). */
static double bench_gemv(Pool *pool, int bits, int64_t n, int64_t k, WqGroup gd, int64_t g, int reps, double *bytes) {
    Err err;
    int half = 1 << (bits - 1);
    int64_t ng = gd == WQ_GROUP_OC ? n * (g ? k / g : 1) : gd == WQ_GROUP_IC ? (g ? n / g : 1) * k : 1;
    int8_t *q = malloc((size_t)(n * k));
    float *sc = malloc((size_t)ng * 4), *x = malloc((size_t)k * 4), *y = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n * k; i++) q[i] = (int8_t)((int)(rng_u32() % (unsigned)(2 * half - 1)) - (half - 1));
    for (int64_t i = 0; i < ng; i++) sc[i] = 0.01f;
    for (int64_t i = 0; i < k; i++) x[i] = rng_uniform();
    WqMatrix m;
    if (wqmat_pack_int(q, bits, bits, n, k, gd, g, sc, NULL, &m, &err) != ST_OK) { fprintf(stderr, "%s\n", err.detail); exit(1); }
    double t;
    wq_gemv(&m, x, y, pool);
    BEST_OF(reps, t, wq_gemv(&m, x, y, pool));
    *bytes = (double)wqmat_code_bytes(&m) + (double)ng * 2.0; /* fp16 scales as stored on disk */
    wqmat_done(&m);
    free(q); free(sc); free(x); free(y);
    return t;
}

/* Seconds for a T-row weight-only product (dequantized tiles + f32 GEMM). */
static double bench_prefill_wq(Pool *pool, int bits, int64_t n, int64_t k, int64_t T, int reps) {
    Err err;
    int half = 1 << (bits - 1);
    int64_t ng = n * (k / 128);
    int8_t *q = malloc((size_t)(n * k));
    float *sc = malloc((size_t)ng * 4), *x = malloc((size_t)(T * k) * 4), *y = malloc((size_t)(T * n) * 4);
    for (int64_t i = 0; i < n * k; i++) q[i] = (int8_t)((int)(rng_u32() % (unsigned)(2 * half - 1)) - (half - 1));
    for (int64_t i = 0; i < ng; i++) sc[i] = 0.01f;
    for (int64_t i = 0; i < T * k; i++) x[i] = rng_uniform();
    WqMatrix m;
    if (wqmat_pack_int(q, bits, bits, n, k, WQ_GROUP_OC, 128, sc, NULL, &m, &err) != ST_OK) { fprintf(stderr, "%s\n", err.detail); exit(1); }
    double t;
    BEST_OF(reps, t, (void)wq_gemm(&m, x, T, y, pool, &err));
    wqmat_done(&m);
    free(q); free(sc); free(x); free(y);
    return t;
}

static void bench_decode(Pool *pool, int bits, WqGroup gd, int64_t g, const char *label) {
    double total = 0, bytes = 0, b;
    for (size_t i = 0; i < sizeof tiny_layer / sizeof *tiny_layer; i++) {
        total += TINY_LAYERS * bench_gemv(pool, bits, tiny_layer[i].n, tiny_layer[i].k, gd, g, 20, &b);
        bytes += TINY_LAYERS * b;
    }
    total += bench_gemv(pool, bits, 512, 2048, gd, g, 20, &b);
    bytes += b;
    printf("int%d %s decode, tinyllama projections: %.3f ms/token  %.1f GB/s  (%.0f tok/s matmul-only)\n", bits,
           label, total * 1e3, bytes / total * 1e-9, 1.0 / total);
}

int main(void) {
    Err err;
    int threads = getenv("QS_THREADS") ? atoi(getenv("QS_THREADS")) : 2;
    Pool *pool;
    if (pool_new(threads, &pool, &err) != ST_OK) { fprintf(stderr, "%s\n", err.detail); return 1; }
    printf("== bench_kernels: cpu %s, %d threads, OpenBLAS %s\n", cpu_describe(), threads, sgemm_backend());

    if (gemm_work_new(threads, &bench_gw, &err) != ST_OK) { fprintf(stderr, "%s\n", err.detail); return 1; }

    /* int8 GEMM vs sgemm, 512×4096×4096 */
    double sg, own, t8 = bench_int8(pool, 512, 4096, 4096, 5, &sg, &own);
    double ops = 2.0 * 512 * 4096 * 4096;
    printf("int8 gemm 512x4096x4096 (incl. act quant): %7.1f ms  %5.0f GOPS\n", t8 * 1e3, ops / t8 * 1e-9);
    printf("OpenBLAS sgemm 512x4096x4096:              %7.1f ms  %5.0f GFLOP/s  (int8 %.2fx faster)\n",
           sg * 1e3, ops / sg * 1e-9, sg / t8);
    printf("own AVX-512 f32 gemm 512x4096x4096:        %7.1f ms  %5.0f GFLOP/s  (int8 %.2fx faster)\n",
           own * 1e3, ops / own * 1e-9, own / t8);

    /* W8A8 and int4 prefill estimates on the TinyLlama shapes, T = 512 */
    double tw = 0, tf = 0, t4 = 0;
    for (size_t i = 0; i <= sizeof tiny_layer / sizeof *tiny_layer; i++) {
        int last = i == sizeof tiny_layer / sizeof *tiny_layer; /* the output head, once */
        int64_t n = last ? 512 : tiny_layer[i].n, k = last ? 2048 : tiny_layer[i].k;
        int times = last ? 1 : TINY_LAYERS;
        double f, q = bench_int8(pool, 512, n, k, 3, NULL, &f);
        tw += q * times;
        tf += f * times;
        t4 += bench_prefill_wq(pool, 4, n, k, 512, 2) * times;
    }
    printf("tinyllama projections, T=512: W8A8 %.1f ms (%.0f tok/s), F32 own gemm %.1f ms (%.0f tok/s): W8A8 %.2fx; "
           "int4 oc128 weight-only %.1f ms (%.0f tok/s)\n",
           tw * 1e3, 512 / tw, tf * 1e3, 512 / tf, tf / tw, t4 * 1e3, 512 / t4);

    /* weight-only int4 GEMV */
    double bytes, tg = bench_gemv(pool, 4, 4096, 4096, WQ_GROUP_OC, 128, 20, &bytes);
    printf("int4 gemv 4096x4096 oc128: %.3f ms  %.1f GB/s\n", tg * 1e3, bytes / tg * 1e-9);
    tg = bench_gemv(pool, 4, 4096, 4096, WQ_GROUP_OC, 0, 20, &bytes);
    printf("int4 gemv 4096x4096 per-oc: %.3f ms  %.1f GB/s\n", tg * 1e3, bytes / tg * 1e-9);
    tg = bench_gemv(pool, 4, 4096, 4096, WQ_GROUP_IC, 64, 20, &bytes);
    printf("int4 gemv 4096x4096 ic64: %.3f ms  %.1f GB/s\n", tg * 1e3, bytes / tg * 1e-9);
    bench_decode(pool, 4, WQ_GROUP_OC, 128, "oc128");
    bench_decode(pool, 4, WQ_GROUP_OC, 32, "oc32");
    bench_decode(pool, 4, WQ_GROUP_IC, 0, "per-ic");
    bench_decode(pool, 8, WQ_GROUP_OC, 0, "per-oc");
    bench_decode(pool, 3, WQ_GROUP_OC, 128, "oc128");
    bench_decode(pool, 2, WQ_GROUP_OC, 128, "oc128");
    gemm_work_free(bench_gw);
    pool_free(pool);
    return 0;
}
