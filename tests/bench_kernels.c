/* Kernel benchmarks (make bench): int8 GEMM GOPS vs float GEMM GFLOP/s on
 * 512×4096×4096, weight-only GEMV bandwidth on 4096×4096, and whole-model
 * matmul estimates on the TinyLlama layer shape (dim 2048, hidden 5632,
 * 4 KV heads × 64, 4 layers, 512-row output head): W8A8 and int4 prefill of
 * 512 tokens against the F32 GEMM the forward pass uses, and int4 decode,
 * weight-only and W4A8 (int4 weights × int8 per-token activations).
 * Threads: QS_THREADS (default 2).
 *
 * The machine is shared with other jobs, so each figure is the best wall time
 * of several repetitions, and beside it the least process CPU time of any
 * repetition (all threads); "cpu-rate" = work / CPU-seconds × threads is what
 * the kernel would reach with the cores to itself. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/pool.h"
#include "kernels/actquant.h"
#include "kernels/cpu.h"
#include "kernels/f32gemm.h"
#include "kernels/int8_gemm.h"
#include "kernels/sgemm.h"
#include "kernels/w4a8.h"
#include "kernels/wq_gemm.h"

typedef struct Timing { double wall, cpu; } Timing;

/* Best wall and least CPU time over reps runs of stmt into Timing tm. */
#define MEASURE(reps, tm, stmt)                                               \
    do {                                                                      \
        (tm).wall = (tm).cpu = 1e30;                                          \
        for (int r_ = 0; r_ < (reps); r_++) {                                 \
            double w0_ = clock_now(), c0_ = clock_cpu_seconds();              \
            stmt;                                                             \
            double w_ = clock_now() - w0_;                                    \
            double c_ = clock_cpu_seconds() - c0_;                            \
            if (w_ < (tm).wall) (tm).wall = w_;                               \
            if (c_ < (tm).cpu) (tm).cpu = c_;                                 \
        }                                                                     \
    } while (0)

static void timing_add(Timing *acc, Timing t, double times) {
    acc->wall += t.wall * times;
    acc->cpu += t.cpu * times;
}

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rng_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float rng_uniform(void) { return (float)(rng_u32() & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f; }

static int threads = 2;
static GemmWork *bench_gw;

typedef struct Shape { const char *name; int64_t n, k; int times; } Shape;

/* One model's projections: each layer's seven, then the output head once. */
static const Shape tiny[] = {
    {"wq", 2048, 2048, 4}, {"wk", 256, 2048, 4}, {"wv", 256, 2048, 4}, {"wo", 2048, 2048, 4},
    {"w1", 5632, 2048, 4}, {"w3", 5632, 2048, 4}, {"w2", 2048, 5632, 4}, {"output", 512, 2048, 1},
};
#define N_TINY (sizeof tiny / sizeof *tiny)

static void die(const Err *err) {
    fprintf(stderr, "bench_kernels: %s\n", err->detail);
    exit(1);
}

/* int8 GEMM with the dynamic per-token activation quantization a layer runs,
 * and (when own/blas are not NULL) the float GEMMs on the same shape. */
static Timing bench_int8(Pool *pool, int64_t M, int64_t N, int64_t K, int reps, Timing *own, Timing *blas) {
    Err err;
    int64_t kp = i8gemm_kpad(K);
    int8_t *A = malloc((size_t)(M * kp)), *B = malloc((size_t)(N * K));
    float *xs = malloc((size_t)(M * K) * 4), *as = malloc((size_t)M * 4), *C = malloc((size_t)(M * N) * 4);
    float *Bf = (own || blas) ? malloc((size_t)(N * K) * 4) : NULL;
    for (int64_t i = 0; i < M * K; i++) xs[i] = rng_uniform();
    for (int64_t i = 0; i < N * K; i++) B[i] = (int8_t)(rng_u32() % 255 - 127);
    float ws = 0.01f;
    I8Matrix w;
    if (i8mat_pack(B, N, K, &ws, 0, &w, &err) != ST_OK) die(&err);
    ActQuant aq = {ACT_INT8, 1, 0, 0, 0};
    Timing t;
    MEASURE(reps, t, (actq_quantize_int8(&aq, xs, M, K, 0, A, kp, as, pool), i8gemm(&w, A, M, kp, as, C, N, pool)));
    if (Bf)
        for (int64_t i = 0; i < N * K; i++) Bf[i] = rng_uniform();
    if (own) MEASURE(reps, *own, gemm_f32_nt_pool(pool, bench_gw, M, N, K, xs, K, Bf, K, 0.0f, C, N));
    if (blas) {
        sgemm_set_threads(threads);
        MEASURE(reps, *blas, sgemm_mul_nt(M, N, K, xs, K, Bf, K, 0.0f, C, N));
    }
    i8mat_done(&w);
    free(A); free(B); free(xs); free(as); free(C); free(Bf);
    return t;
}

/* A symmetric `bits` weight-only matrix (n, k) with OC groups of g. */
static void make_wq(int bits, int64_t n, int64_t k, WqGroup gd, int64_t g, WqMatrix *m) {
    Err err;
    int half = 1 << (bits - 1);
    int64_t ng = gd == WQ_GROUP_OC ? n * (g ? k / g : 1) : gd == WQ_GROUP_IC ? (g ? n / g : 1) * k : 1;
    int8_t *q = malloc((size_t)(n * k));
    float *sc = malloc((size_t)ng * 4);
    for (int64_t i = 0; i < n * k; i++) q[i] = (int8_t)((int)(rng_u32() % (unsigned)(2 * half - 1)) - (half - 1));
    for (int64_t i = 0; i < ng; i++) sc[i] = 0.01f;
    if (wqmat_pack_int(q, bits, bits, n, k, gd, g, sc, NULL, m, &err) != ST_OK) die(&err);
    free(q);
    free(sc);
}

/* Bytes one GEMV reads: packed codes plus fp16 scales as a file stores them. */
static double wq_bytes(const WqMatrix *m) { return (double)wqmat_code_bytes(m) + 2.0 * (double)m->n_groups; }

static Timing bench_gemv(Pool *pool, const WqMatrix *m, int reps) {
    float *x = malloc((size_t)m->k * 4), *y = malloc((size_t)m->n * 4);
    for (int64_t i = 0; i < m->k; i++) x[i] = rng_uniform();
    wq_gemv(m, x, y, pool);
    Timing t;
    MEASURE(reps, t, wq_gemv(m, x, y, pool));
    free(x);
    free(y);
    return t;
}

static Timing bench_wq_batch(Pool *pool, const WqMatrix *m, int64_t T, int reps) {
    Err err;
    float *x = malloc((size_t)(T * m->k) * 4), *y = malloc((size_t)(T * m->n) * 4);
    for (int64_t i = 0; i < T * m->k; i++) x[i] = rng_uniform();
    Timing t;
    MEASURE(reps, t, if (wq_gemm(m, x, T, y, pool, &err) != ST_OK) die(&err));
    free(x);
    free(y);
    return t;
}

static void print_rate(const char *what, Timing t, double work, const char *unit) {
    printf("%-44s %8.3f ms  %7.1f %s   cpu-rate %7.1f %s\n", what, t.wall * 1e3, work / t.wall * 1e-9, unit,
           work / t.cpu * threads * 1e-9, unit);
}

/* Decode as the model runs it: every projection of every layer is a distinct
 * matrix (89 MB at int4), walked in model order once per token, so weights
 * stream from memory instead of sitting in cache as a repeated GEMV's do. */
static void bench_decode(Pool *pool, int bits, WqGroup gd, int64_t g, const char *label) {
    enum { MAXM = 4 * 7 + 1 };
    WqMatrix ms[MAXM];
    int nm = 0;
    double bytes = 0;
    for (size_t i = 0; i < N_TINY; i++)
        for (int r = 0; r < tiny[i].times; r++) {
            make_wq(bits, tiny[i].n, tiny[i].k, gd, g, &ms[nm]);
            bytes += wq_bytes(&ms[nm]);
            nm++;
        }
    float *x = malloc(5632 * 4), *y = malloc(5632 * 4);
    for (int i = 0; i < 5632; i++) x[i] = rng_uniform();
    Timing t;
    MEASURE(10, t, for (int i = 0; i < nm; i++) wq_gemv(&ms[i], x, y, pool));
    char what[96];
    snprintf(what, sizeof what, "decode int%d %s, tinyllama matmuls/token", bits, label);
    print_rate(what, t, bytes, "GB/s");
    printf("%-44s %8.0f tok/s wall, %.0f tok/s cpu-rate (matmuls only)\n", "", 1.0 / t.wall, 1.0 / (t.cpu / threads));
    for (int i = 0; i < nm; i++) wqmat_done(&ms[i]);
    free(x);
    free(y);
}

/* === W4A8 === */

/* A symmetric int4 (n, k) W4A8 matrix with OC groups of g. */
static void make_w4a8(int64_t n, int64_t k, int64_t g, W4a8Matrix *m) {
    Err err;
    int64_t ng = n * (g ? k / g : 1);
    int8_t *q = malloc((size_t)(n * k));
    float *sc = malloc((size_t)ng * 4);
    for (int64_t i = 0; i < n * k; i++) q[i] = (int8_t)((int)(rng_u32() % 15) - 7);
    for (int64_t i = 0; i < ng; i++) sc[i] = 0.0078125f * (float)(1 + rng_u32() % 8);
    if (w4a8mat_pack(q, n, k, WQ_GROUP_OC, g, sc, m, &err) != ST_OK) die(&err);
    free(q);
    free(sc);
}

/* Scratch for T tokens of up to kp inputs: float input, codes, reordered codes,
 * corrections, scales, output. */
typedef struct W4a8Buf { float *x, *y; int8_t *a, *ap; int32_t *corr; float *sa; } W4a8Buf;

static void w4a8buf_init(W4a8Buf *b, int64_t T, int64_t kp, int64_t n) {
    b->x = malloc((size_t)(T * kp) * 4);
    b->y = malloc((size_t)(T * n) * 4);
    b->a = malloc((size_t)(T * kp));
    b->ap = malloc((size_t)(T * kp));
    b->corr = malloc((size_t)(T * kp / 16) * 4);
    b->sa = malloc((size_t)T * 4);
    for (int64_t i = 0; i < T * kp; i++) b->x[i] = rng_uniform();
}

static void w4a8buf_done(W4a8Buf *b) {
    free(b->x); free(b->y); free(b->a); free(b->ap); free(b->corr); free(b->sa);
}

/* What a W4A8 layer does per call: quantize per token, reorder, multiply. */
static void w4a8_call(const W4a8Matrix *m, W4a8Buf *b, int64_t T, Pool *pool) {
    static const ActQuant tok = {ACT_INT8, 1, 0, 0.0f, 0};
    actq_quantize_int8(&tok, b->x, T, m->k, 0, b->a, m->kp, b->sa, pool);
    w4a8_act_prep(b->a, T, m->kp, b->ap, b->corr);
    w4a8_gemm(m, b->ap, b->corr, b->sa, T, b->y, pool);
}

/* W4A8 GEMV cache-hot, decode over the model's distinct matrices (streamed),
 * and prefill of 512 tokens; activation quantization included throughout. */
static void bench_w4a8(Pool *pool) {
    printf("-- w4a8 path: %s\n", w4a8_path_name());
    W4a8Matrix m;
    W4a8Buf b;
    Timing t;
    make_w4a8(4096, 4096, 32, &m);
    w4a8buf_init(&b, 1, m.kp, m.n);
    MEASURE(30, t, w4a8_call(&m, &b, 1, pool));
    print_rate("gemv w4a8 g32 4096x4096 (+act quant)", t, (double)w4a8mat_bytes(&m), "GB/s");
    w4a8buf_done(&b);
    w4a8mat_done(&m);

    static const int64_t gs[] = {32, 128};
    for (size_t gi = 0; gi < 2; gi++) {
        enum { MAXM = 4 * 7 + 1 };
        W4a8Matrix ms[MAXM];
        int nm = 0;
        double bytes = 0;
        for (size_t i = 0; i < N_TINY; i++)
            for (int r = 0; r < tiny[i].times; r++) {
                make_w4a8(tiny[i].n, tiny[i].k, gs[gi], &ms[nm]);
                bytes += (double)w4a8mat_bytes(&ms[nm]);
                nm++;
            }
        w4a8buf_init(&b, 1, 5632, 5632);
        MEASURE(10, t, for (int i = 0; i < nm; i++) w4a8_call(&ms[i], &b, 1, pool));
        char what[96];
        snprintf(what, sizeof what, "decode w4a8 g%lld, tinyllama matmuls/token", (long long)gs[gi]);
        print_rate(what, t, bytes, "GB/s");
        printf("%-44s %8.0f tok/s wall, %.0f tok/s cpu-rate (matmuls only)\n", "", 1.0 / t.wall, 1.0 / (t.cpu / threads));
        w4a8buf_done(&b);
        for (int i = 0; i < nm; i++) w4a8mat_done(&ms[i]);
    }

    Timing p = {0, 0};
    double flops = 0;
    for (size_t i = 0; i < N_TINY; i++) {
        make_w4a8(tiny[i].n, tiny[i].k, 32, &m);
        w4a8buf_init(&b, 512, m.kp, m.n);
        MEASURE(2, t, w4a8_call(&m, &b, 512, pool));
        timing_add(&p, t, tiny[i].times);
        flops += 2.0 * 512 * (double)(tiny[i].n * tiny[i].k) * tiny[i].times;
        w4a8buf_done(&b);
        w4a8mat_done(&m);
    }
    print_rate("prefill 512 w4a8 g32, tinyllama matmuls", p, flops, "GOPS");
    printf("%-44s %8.0f tok/s wall (matmuls only)\n", "", 512 / p.wall);
}

int main(void) {
    Err err;
    if (getenv("QS_THREADS")) threads = atoi(getenv("QS_THREADS"));
    if (threads < 1) threads = 1;
    Pool *pool;
    if (pool_new(threads, &pool, &err) != ST_OK) die(&err);
    if (gemm_work_new(threads, &bench_gw, &err) != ST_OK) die(&err);
    FILE *la = fopen("/proc/loadavg", "r");
    char load[64] = "?";
    if (la) {
        if (!fgets(load, sizeof load, la)) strcpy(load, "?");
        fclose(la);
        load[strcspn(load, " ")] = 0;
    }
    printf("== bench_kernels: cpu %s, %d threads, OpenBLAS core %s, load %s\n", cpu_describe(), threads,
           sgemm_backend(), load);

    /* int8 GEMM vs float GEMMs, 512×4096×4096 */
    Timing own, blas, t8 = bench_int8(pool, 512, 4096, 4096, 5, &own, &blas);
    double ops = 2.0 * 512 * 4096 * 4096;
    print_rate("int8 gemm 512x4096x4096 (+act quant)", t8, ops, "GOPS");
    print_rate("own f32 gemm 512x4096x4096 (forward's F32)", own, ops, "GFLOP/s");
    print_rate("OpenBLAS sgemm 512x4096x4096", blas, ops, "GFLOP/s");
    printf("%-44s int8/own-f32 %.2fx wall %.2fx cpu; int8/OpenBLAS %.2fx wall\n", "", own.wall / t8.wall,
           own.cpu / t8.cpu, blas.wall / t8.wall);

    /* prefill of 512 tokens: all projections of the model */
    Timing pw = {0, 0}, pf = {0, 0}, p4 = {0, 0};
    double flops = 0;
    for (size_t i = 0; i < N_TINY; i++) {
        Timing f, q = bench_int8(pool, 512, tiny[i].n, tiny[i].k, 3, &f, NULL);
        timing_add(&pw, q, tiny[i].times);
        timing_add(&pf, f, tiny[i].times);
        WqMatrix m;
        make_wq(4, tiny[i].n, tiny[i].k, WQ_GROUP_OC, 128, &m);
        timing_add(&p4, bench_wq_batch(pool, &m, 512, 2), tiny[i].times);
        wqmat_done(&m);
        flops += 2.0 * 512 * (double)(tiny[i].n * tiny[i].k) * tiny[i].times;
    }
    print_rate("prefill 512 W8A8, tinyllama matmuls", pw, flops, "GOPS");
    print_rate("prefill 512 F32 (own gemm), tinyllama matmuls", pf, flops, "GFLOP/s");
    print_rate("prefill 512 int4 oc128 weight-only", p4, flops, "GFLOP/s");
    printf("%-44s tok/s wall: W8A8 %.0f, F32 %.0f, int4 %.0f; W8A8/F32 %.2fx wall %.2fx cpu\n", "", 512 / pw.wall,
           512 / pf.wall, 512 / p4.wall, pf.wall / pw.wall, pf.cpu / pw.cpu);

    /* weight-only GEMV */
    static const struct { int bits; WqGroup gd; int64_t g; const char *label; } gv[] = {
        {4, WQ_GROUP_OC, 128, "oc128"}, {4, WQ_GROUP_OC, 0, "per-oc"}, {4, WQ_GROUP_IC, 64, "ic64"},
        {8, WQ_GROUP_OC, 0, "per-oc"},  {3, WQ_GROUP_OC, 128, "oc128"}, {2, WQ_GROUP_OC, 128, "oc128"},
    };
    for (size_t i = 0; i < sizeof gv / sizeof *gv; i++) {
        WqMatrix m;
        make_wq(gv[i].bits, 4096, 4096, gv[i].gd, gv[i].g, &m);
        char what[96];
        snprintf(what, sizeof what, "gemv int%d %s 4096x4096", gv[i].bits, gv[i].label);
        print_rate(what, bench_gemv(pool, &m, 30), wq_bytes(&m), "GB/s");
        wqmat_done(&m);
    }
    bench_decode(pool, 4, WQ_GROUP_OC, 128, "oc128");
    bench_decode(pool, 4, WQ_GROUP_OC, 0, "per-oc");
    bench_decode(pool, 4, WQ_GROUP_IC, 0, "per-ic");
    bench_decode(pool, 8, WQ_GROUP_OC, 0, "per-oc");
    bench_decode(pool, 4, WQ_GROUP_OC, 32, "oc32");
    bench_w4a8(pool);
    gemm_work_free(bench_gw);
    pool_free(pool);
    return 0;
}
