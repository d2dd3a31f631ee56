/* bench_membw: memory read bandwidth of this machine, 1 and 2 threads, so the
 * decode figures in BENCHMARKS.md can be read against the real ceiling (a
 * single-token decode streams every weight once: bytes/token ÷ bandwidth is
 * the floor). Streams a 1 GiB buffer with 512-bit loads (256-bit on AVX2,
 * SSE2 fallback), best of 5. A buffer smaller than 64 MiB is read again
 * until 1 GiB has passed (each thread its own half, again and again): the
 * bandwidth of the cache level that holds it, e.g. 16 MiB for the L3 of a
 * 32 MiB-L3 machine. Usage: bench_membw [MiB] */
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "kernels/simd.h"

typedef struct {
    const float *p;
    size_t n;
    float sum;
} Span;


QS_TARGET_AVX512 static float bw_sum_avx512(const float *p, size_t n) {
    __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        a = _mm512_add_ps(a, _mm512_load_ps(p + i));
        b = _mm512_add_ps(b, _mm512_load_ps(p + i + 16));
        c = _mm512_add_ps(c, _mm512_load_ps(p + i + 32));
        d = _mm512_add_ps(d, _mm512_load_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

QS_TARGET_AVX2 static float bw_sum_avx2(const float *p, size_t n) {
    __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        a = _mm256_add_ps(a, _mm256_load_ps(p + i));
        b = _mm256_add_ps(b, _mm256_load_ps(p + i + 8));
        c = _mm256_add_ps(c, _mm256_load_ps(p + i + 16));
        d = _mm256_add_ps(d, _mm256_load_ps(p + i + 24));
    }
    float r[8];
    _mm256_storeu_ps(r, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
    return r[0] + r[1] + r[2] + r[3] + r[4] + r[5] + r[6] + r[7];
}

static float bw_sum_sse2(const float *p, size_t n) {
    __m128 a = _mm_setzero_ps(), b = a;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        a = _mm_add_ps(a, _mm_load_ps(p + i));
        b = _mm_add_ps(b, _mm_load_ps(p + i + 4));
    }
    float r[4];
    _mm_storeu_ps(r, _mm_add_ps(a, b));
    return r[0] + r[1] + r[2] + r[3];
}

static int use_avx512, use_avx2, passes = 1;

static void *bw_worker(void *v) {
    Span *s = v;
    float sum = 0;
    for (int i = 0; i < passes; i++)
        sum += use_avx512 ? bw_sum_avx512(s->p, s->n) : use_avx2 ? bw_sum_avx2(s->p, s->n) : bw_sum_sse2(s->p, s->n);
    s->sum = sum;
    return NULL;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1024;
    if (mib < 1) mib = 1;
    if (mib < 64) passes = (int)(1024 / mib);
    size_t n = mib * 1024 * 1024 / sizeof(float);
    float *buf = aligned_alloc(64, n * sizeof(float));
    if (!buf) { fprintf(stderr, "bench_membw: cannot allocate %zu MiB\n", mib); return 1; }
    memset(buf, 0, n * sizeof(float));
    __builtin_cpu_init();
    use_avx512 = __builtin_cpu_supports("avx512f");
    use_avx2 = __builtin_cpu_supports("avx2");
    double load = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) { if (fscanf(f, "%lf", &load) != 1) load = 0; fclose(f); }
    printf("bench_membw: %zu MiB read %d time%s, %s loads, best of 5, load %.2f\n", mib, passes, passes > 1 ? "s" : "",
           use_avx512 ? "512-bit" : use_avx2 ? "256-bit" : "128-bit", load);
    float sink = 0;
    for (int nt = 1; nt <= 2; nt++) {
        double best = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            pthread_t th[2];
            Span s[2];
            double t0 = clock_now();
            for (int i = 0; i < nt; i++) {
                s[i].p = buf + n / nt * i;
                s[i].n = n / nt;
                pthread_create(&th[i], NULL, bw_worker, &s[i]);
            }
            for (int i = 0; i < nt; i++) {
                pthread_join(th[i], NULL);
                sink += s[i].sum;
            }
            double dt = clock_now() - t0;
            if (dt < best) best = dt;
        }
        printf("  %d thread%s: %.1f GB/s\n", nt, nt > 1 ? "s" : "", (double)(n * sizeof(float)) * passes / best / 1e9);
    }
    free(buf);
    return sink != 0.0f; /* the buffer is zero: keeps the loads alive */
}
