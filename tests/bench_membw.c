/* bench_membw: memory read bandwidth of this machine, 1 and 2 threads, so the
 * decode figures in BENCHMARKS.md can be read against the real ceiling (a
 * single-token decode streams every weight once: bytes/token ÷ bandwidth is
 * the floor). Streams a 1 GiB buffer with 512-bit loads (SSE2 fallback),
 * best of 5. Usage: bench_membw [MiB] */
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

static int use_avx512;

static void *bw_worker(void *v) {
    Span *s = v;
    s->sum = use_avx512 ? bw_sum_avx512(s->p, s->n) : bw_sum_sse2(s->p, s->n);
    return NULL;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1024;
    if (mib < 64) mib = 64;
    size_t n = mib * 1024 * 1024 / sizeof(float);
    float *buf = aligned_alloc(64, n * sizeof(float));
    if (!buf) { fprintf(stderr, "bench_membw: cannot allocate %zu MiB\n", mib); return 1; }
    memset(buf, 0, n * sizeof(float));
    __builtin_cpu_init();
    use_avx512 = __builtin_cpu_supports("avx512f");
    double load = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) { if (fscanf(f, "%lf", &load) != 1) load = 0; fclose(f); }
    printf("bench_membw: %zu MiB read, %s loads, best of 5, load %.2f\n", mib, use_avx512 ? "512-bit" : "128-bit", load);
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
        printf("  %d thread%s: %.1f GB/s\n", nt, nt > 1 ? "s" : "", (double)(n * sizeof(float)) / best / 1e9);
    }
    free(buf);
    return sink != 0.0f; /* the buffer is zero: keeps the loads alive */
}
