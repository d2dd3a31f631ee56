/* AQLM benchmarks (make bench, or build/tests/bench_aqlm directly):
 *  1. single-token GEMV on 4096x4096: AQLM 2x8 g8 LUT (and its two halves,
 *     the LUT build and the gather), the same codes through the codeword
 *     gather, the scalar LUT loop, AQLM 1x16 g8 (gather), against fp32 sgemv
 *     (OpenBLAS and kernels/wq_gemm.h's F32 path) and int4 g128 GEMV
 *     (kernels/wq_gemm.h), on 1 and 2 threads;
 *  2. prefill: T tokens as T LUT GEMVs vs tile decode + sgemm, to place
 *     AQLM_PREFILL_DECODE_T;
 *  3. time to quantize one 4096x4096 layer with 2x8 g8 on 2 threads with
 *     bounded iterations (AQLM_BENCH_ITERS, default 2; CG 3, k-means 6),
 *     and its error against RTN / GPTQ int2 at >= equal total bits with a
 *     heavy-tailed synthetic H. AQLM_BENCH_SKIP_QUANT=1 skips part 3.
 * The machine is shared: the 1-minute load average is printed with each part. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/pool.h"
#include "core/status.h"
#include "kernels/aqlm_kernels.h"
#include "kernels/cpu.h"
#include "kernels/sgemm.h"
#include "kernels/wq_gemm.h"
#include "quant/aqlm.h"
#include "quant/gptq.h"
#include "quant/qtensor.h"
#include "quant/rtn.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}
static double nrand(void) {
    double u = urand(), v = urand();
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static double load1(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

static void die(const char *what, const Err *e) {
    fprintf(stderr, "bench_aqlm: %s: %s: %s\n", what, status_message(e->code), e->detail);
    exit(1);
}

/* Best of `reps` timings of stmt, in milliseconds: the machine is shared
 * (load averages of 6-8 on 2 CPUs while other jobs run), and the minimum is
 * the run least disturbed by them. */
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
#define TIME_MS(reps, out, stmt)                                   \
    do {                                                           \
        double ts_[64];                                            \
        int n_ = (reps) > 64 ? 64 : (reps);                        \
        stmt; /* warm-up */                                        \
        for (int r_ = 0; r_ < n_; r_++) {                          \
            double t0_ = clock_now();                                  \
            stmt;                                                  \
            ts_[r_] = (clock_now() - t0_) * 1e3;                       \
        }                                                          \
        qsort(ts_, (size_t)n_, sizeof ts_[0], cmp_d);              \
        out = ts_[0];                                              \
    } while (0)

typedef struct Packed {
    AqlmPacked pk;
    float *cb, *cbt, *scales;
    uint8_t *c8;
    uint16_t *c16;
} Packed;

static void packed_rand(Packed *p, int M, int B, int g, int64_t n_out, int64_t n_in) {
    int64_t K = (int64_t)1 << B, ng = n_in / g, nc = n_out * ng * M;
    p->cb = malloc((size_t)(M * K * g) * sizeof *p->cb);
    p->cbt = malloc((size_t)(M * K * g) * sizeof *p->cbt);
    p->scales = malloc((size_t)n_out * sizeof *p->scales);
    p->c16 = malloc((size_t)nc * sizeof *p->c16);
    p->c8 = B <= 8 ? malloc((size_t)nc) : NULL;
    if (!p->cb || !p->cbt || !p->scales || !p->c16 || (B <= 8 && !p->c8)) {
        fprintf(stderr, "bench_aqlm: out of memory\n");
        exit(1);
    }
    for (int64_t q = 0; q < M * K * g; q++) p->cb[q] = (float)nrand();
    for (int m = 0; m < M; m++)
        for (int64_t k = 0; k < K; k++)
            for (int a = 0; a < g; a++) p->cbt[((int64_t)m * g + a) * K + k] = p->cb[((int64_t)m * K + k) * g + a];
    for (int64_t i = 0; i < n_out; i++) p->scales[i] = 0.01f;
    for (int64_t q = 0; q < nc; q++) {
        p->c16[q] = (uint16_t)(urand() * (double)K);
        if (p->c8) p->c8[q] = (uint8_t)p->c16[q];
    }
    p->pk = (AqlmPacked){.M = M, .B = B, .g = g, .n_out = n_out, .n_in = n_in, .n_groups = ng, .K = K,
                         .cb = p->cb, .cbt = p->cbt, .codes8 = p->c8, .codes16 = p->c8 ? NULL : p->c16,
                         .scales = p->scales};
}

static void packed_free(Packed *p) {
    free(p->cb);
    free(p->cbt);
    free(p->scales);
    free(p->c8);
    free(p->c16);
}

typedef struct { const AqlmPacked *w; const float *lut; float *y; } RowsJob;
static void job_lut_rows(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    RowsJob *j = arg;
    aqlm_lut_gemv_rows(j->w, j->lut, b, e, j->y);
}

/* === 1. GEMV === */

static void bench_gemv(int threads) {
    const int64_t n = 4096;
    Err err;
    Pool *pool = NULL;
    if (pool_new(threads, &pool, &err) != ST_OK) die("pool", &err);
    sgemm_set_threads(threads);
    float *W = malloc((size_t)(n * n) * sizeof *W), *x = malloc((size_t)n * sizeof *x);
    float *y = malloc((size_t)n * sizeof *y);
    int8_t *q4 = malloc((size_t)(n * n));
    float *s4 = malloc((size_t)(n * n / 128) * sizeof *s4);
    if (!W || !x || !y || !q4 || !s4) {
        fprintf(stderr, "bench_aqlm: out of memory\n");
        exit(1);
    }
    for (int64_t q = 0; q < n * n; q++) W[q] = (float)(0.02 * nrand());
    for (int64_t q = 0; q < n; q++) x[q] = (float)nrand();
    for (int64_t q = 0; q < n * n; q++) q4[q] = (int8_t)((int)(urand() * 15.0) - 7);
    for (int64_t q = 0; q < n * n / 128; q++) s4[q] = 0.003f;
    WqMatrix m4 = {0}, mf = {0};
    if (wqmat_pack_int(q4, 4, 4, n, n, WQ_GROUP_OC, 128, s4, NULL, &m4, &err) != ST_OK) die("pack int4", &err);
    if (wqmat_pack_f32(W, n, n, &mf, &err) != ST_OK) die("pack f32", &err);
    free(q4);
    free(s4);

    Packed a28, a116;
    packed_rand(&a28, 2, 8, 8, n, n);
    packed_rand(&a116, 1, 16, 8, n, n);
    float *lut = malloc(aqlm_lut_floats(&a28.pk) * sizeof *lut);
    if (!lut) exit(1);
    AqlmParams p28 = {2, 8, 8}, p116 = {1, 16, 8};

    int reps = 40;
    double t_sgemv, t_wqf, t_i4, t_lut, t_build, t_gath, t_lutref, t_g28, t_g116;
    TIME_MS(reps, t_sgemv, sgemm_mul_nt(1, n, n, x, n, W, n, 0.0f, y, n));
    TIME_MS(reps, t_wqf, wq_gemv(&mf, x, y, pool));
    TIME_MS(reps, t_i4, wq_gemv(&m4, x, y, pool));
    TIME_MS(reps, t_lut, aqlm_gemv(&a28.pk, x, y, lut, pool));
    TIME_MS(reps, t_build, aqlm_lut_build(&a28.pk, x, lut));
    RowsJob rj = {&a28.pk, lut, y};
    TIME_MS(reps, t_gath, pool_for(pool, n, 16, job_lut_rows, &rj));
    TIME_MS(5, t_lutref, aqlm_lut_gemv_rows_ref(&a28.pk, lut, 0, n, y));
    TIME_MS(reps, t_g28, aqlm_gemv(&a28.pk, x, y, NULL, pool));
    TIME_MS(5, t_g116, aqlm_gemv(&a116.pk, x, y, NULL, pool));

    double fp32_mb = n * n * 4.0 / 1e6;
    printf("\n[1] GEMV 4096x4096, %d thread%s (cpu %s, blas %s, load %.1f), best-of ms:\n", threads,
           threads > 1 ? "s" : "", cpu_describe(), sgemm_backend(), load1());
    printf("  %-44s %8s %9s %9s\n", "kernel", "ms", "vs sgemv", "MB read");
    printf("  %-44s %8.3f %9s %9.1f\n", "fp32 sgemv (OpenBLAS)", t_sgemv, "1.00x", fp32_mb);
    printf("  %-44s %8.3f %8.2fx %9.1f\n", "fp32 GEMV (wq_gemm F32)", t_wqf, t_sgemv / t_wqf, fp32_mb);
    printf("  %-44s %8.3f %8.2fx %9.1f\n", "int4 g128 GEMV (wq_gemm, AVX-512)", t_i4, t_sgemv / t_i4,
           wqmat_code_bytes(&m4) / 1e6 + n * n / 128 * 4 / 1e6);
    printf("  %-44s %8.3f %8.2fx %9.1f\n", "aqlm 2x8g8 LUT GEMV (build + gather)", t_lut, t_sgemv / t_lut,
           aqlm_bytes(&p28, n, n) / 1e6);
    printf("  %-44s %8.3f %9s\n", "   LUT build alone (1 thread)", t_build, "");
    printf("  %-44s %8.3f %9s\n", "   LUT gather alone (pool)", t_gath, "");
    printf("  %-44s %8.3f %8.2fx\n", "   LUT gather, scalar loads (_ref, 1 thread)", t_lutref, t_sgemv / t_lutref);
    printf("  %-44s %8.3f %8.2fx\n", "aqlm 2x8g8 codeword gather (no LUT)", t_g28, t_sgemv / t_g28);
    printf("  %-44s %8.3f %8.2fx %9.1f\n", "aqlm 1x16g8 codeword gather", t_g116, t_sgemv / t_g116,
           aqlm_bytes(&p116, n, n) / 1e6);

    /* === 2. Prefill === */
    if (threads == 2) {
        printf("\n[2] prefill 4096x4096 2x8g8, 2 threads: T GEMVs vs tile decode + sgemm, ms (load %.1f)\n", load1());
        printf("  %5s %10s %14s %10s\n", "T", "T x LUT", "decode+sgemm", "aqlm_gemm");
        int64_t Ts[] = {1, 2, 4, 8, 16, 32, 128};
        int64_t Tmax = 128;
        float *X = malloc((size_t)(Tmax * n) * sizeof *X), *Y = malloc((size_t)(Tmax * n) * sizeof *Y);
        float *tile = malloc((size_t)AQLM_DECODE_TILE * n * sizeof *tile);
        if (!X || !Y || !tile) exit(1);
        for (int64_t q = 0; q < Tmax * n; q++) X[q] = (float)nrand();
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
            int64_t T = Ts[ti];
            double t_l, t_d, t_a;
            TIME_MS(5, t_l, for (int64_t t = 0; t < T; t++) aqlm_gemv(&a28.pk, X + t * n, Y + t * n, lut, pool));
            /* aqlm_gemm's decode path, forced for every T. */
            TIME_MS(5, t_d, {
                for (int64_t r0 = 0; r0 < n; r0 += AQLM_DECODE_TILE) {
                    aqlm_decode_rows(&a28.pk, r0, r0 + AQLM_DECODE_TILE, tile);
                    sgemm_mul_nt(T, AQLM_DECODE_TILE, n, X, n, tile, n, 0.0f, Y + r0, n);
                }
            });
            TIME_MS(5, t_a, aqlm_gemm(&a28.pk, X, T, Y, lut, tile, pool));
            printf("  %5lld %10.2f %14.2f %10.2f\n", (long long)T, t_l, t_d, t_a);
        }
        printf("  (decode+sgemm above decodes on one thread; aqlm_gemm decodes tiles on the pool\n"
               "   from T >= AQLM_PREFILL_DECODE_T = %d)\n", AQLM_PREFILL_DECODE_T);
        free(X);
        free(Y);
        free(tile);
    }
    packed_free(&a28);
    packed_free(&a116);
    wqmat_done(&m4);
    wqmat_done(&mf);
    free(lut);
    free(W);
    free(x);
    free(y);
    pool_free(pool);
}

/* === 3. Quantization time and quality at 4096x4096 === */

static double loss_fast(const float *W, const float *Wq, int64_t no, int64_t ni, const float *Hf) {
    float *R = malloc((size_t)(no * ni) * sizeof *R), *RH = malloc((size_t)(no * ni) * sizeof *RH);
    if (!R || !RH) exit(1);
    for (int64_t q = 0; q < no * ni; q++) R[q] = W[q] - Wq[q];
    sgemm_mul_nt(no, ni, ni, R, ni, Hf, ni, 0.0f, RH, ni);
    double L = 0;
    for (int64_t q = 0; q < no * ni; q++) L += (double)R[q] * RH[q];
    free(R);
    free(RH);
    return L;
}

static void bench_quantize(void) {
    const int64_t n = 4096, T = 4096;
    int iters = getenv("AQLM_BENCH_ITERS") ? atoi(getenv("AQLM_BENCH_ITERS")) : 2;
    Err err;
    Pool *pool = NULL;
    if (pool_new(2, &pool, &err) != ST_OK) die("pool", &err);
    sgemm_set_threads(2);
    printf("\n[3] quantize 4096x4096 with 2x8 g8 on 2 threads (blas %s, load %.1f)\n", sgemm_backend(), load1());
    /* The same synthetic layer as tests/test_aqlm.c's test_big: Gaussian W,
     * heavy-tailed X with one outlier channel in 512 at 20x and a shared
     * rank-1 component; H = XᵀX / T. */
    float *Xt = malloc((size_t)(n * T) * sizeof *Xt), *Hf = malloc((size_t)(n * n) * sizeof *Hf);
    double *Hd = malloc((size_t)(n * n) * sizeof *Hd), *v = malloc((size_t)n * sizeof *v);
    float *W = malloc((size_t)(n * n) * sizeof *W), *Wq = malloc((size_t)(n * n) * sizeof *Wq);
    if (!Xt || !Hf || !Hd || !v || !W || !Wq) exit(1);
    for (int64_t c = 0; c < n; c++) v[c] = nrand();
    for (int64_t t = 0; t < T; t++) {
        double f = nrand();
        for (int64_t c = 0; c < n; c++) {
            double z = nrand(), chi = (nrand() * nrand() + nrand() * nrand() + nrand() * nrand()) / 3.0;
            double st = z / sqrt(chi * chi + 0.05);
            Xt[c * T + t] = (float)((st + 0.5 * f * v[c]) * ((c % 512) == 7 ? 20.0 : 1.0));
        }
    }
    double t0 = clock_now();
    sgemm_mul_nt(n, n, T, Xt, T, Xt, T, 0.0f, Hf, n);
    for (int64_t q = 0; q < n * n; q++) {
        Hf[q] /= (float)T;
        Hd[q] = Hf[q];
    }
    free(Xt);
    printf("  H = XᵀX/T from %lld tokens: %.1f s\n", (long long)T, clock_now() - t0);
    for (int64_t q = 0; q < n * n; q++) W[q] = (float)(0.02 * nrand());

    AqlmParams p = {2, 8, 8};
    AqlmOpts o;
    aqlm_opts_default(&o);
    o.max_iters = iters;
    o.cg_iters = 3;
    o.kmeans_iters = 6;
    o.tau = 0;
    AqlmTensor t;
    AqlmReport rep;
    t0 = clock_now();
    if (aqlm_quantize(W, n, n, Hd, &p, &o, pool, NULL, &t, &rep, &err) != ST_OK) die("aqlm", &err);
    double t_aq = clock_now() - t0;
    aqlm_dequant(&t, Wq);
    aqlm_tensor_done(&t);
    double e_aq = loss_fast(W, Wq, n, n, Hf) / rep.loss_zero;
    printf("  aqlm 2x8g8: %.1f s for k-means (6 Lloyd iterations per codebook) + %d iterations (CG 3, beam 1)\n",
           t_aq, rep.iters);
    printf("  relative loss tr(dW H dW^T)/tr(W H W^T): init %.4f", rep.loss[0] / rep.loss_zero);
    for (int it = 1; it <= rep.iters; it++) printf(" -> %.4f", rep.loss[it] / rep.loss_zero);
    printf("\n");

    double bpw_aq = aqlm_bpw(&p, n, n);
    QParams qp = {QF_INT2, 0, GROUP_OC, n};
    while (qparams_bytes(&qp, n, n) * 8.0 / ((double)n * n) < bpw_aq) qp.group /= 2;
    double bpw_int = qparams_bytes(&qp, n, n) * 8.0 / ((double)n * n);
    if (rtn_fake_quantize(W, n, n, &qp, Wq, &err) != ST_OK) die("rtn", &err);
    double e_rtn = loss_fast(W, Wq, n, n, Hf) / rep.loss_zero;
    QTensor qt = {0};
    GptqOpts go;
    gptq_opts_default(&go);
    t0 = clock_now();
    if (gptq_quantize(W, n, n, Hd, NULL, &qp, &go, pool, NULL, &qt, NULL, &err) != ST_OK) die("gptq", &err);
    double t_gptq = clock_now() - t0;
    qtensor_dequant(&qt, Wq);
    qtensor_done(&qt);
    double e_gptq = loss_fast(W, Wq, n, n, Hf) / rep.loss_zero;
    printf("  at >= equal total bits (in-sample H):\n");
    printf("    %-26s %7.4f bpw  rel. loss %.4f  (%.1f s)\n", "aqlm 2x8g8", bpw_aq, e_aq, t_aq);
    printf("    rtn int2 asym g%-10lld %7.4f bpw  rel. loss %.4f\n", (long long)qp.group, bpw_int, e_rtn);
    printf("    gptq int2 asym g%-9lld %7.4f bpw  rel. loss %.4f  (%.1f s)\n", (long long)qp.group, bpw_int, e_gptq,
           t_gptq);
    free(Hf);
    free(Hd);
    free(v);
    free(W);
    free(Wq);
    pool_free(pool);
}

int main(void) {
    printf("bench_aqlm: OPENBLAS_CORETYPE=%s\n", getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
    bench_gemv(1);
    bench_gemv(2);
    if (!getenv("AQLM_BENCH_SKIP_QUANT")) bench_quantize();
    return 0;
}
