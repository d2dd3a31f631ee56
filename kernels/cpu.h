/* Runtime CPU feature detection for kernel dispatch. Every fast kernel asks
 * these before taking an AVX2/AVX-512 path and otherwise runs its scalar
 * *_ref twin. The environment variable QS_CPU forces a lower level for tests
 * and comparisons: QS_CPU=scalar disables every SIMD path, QS_CPU=avx2 caps
 * at AVX2/FMA/F16C (no AVX-512). Results are computed once and cached. */
#ifndef QS_KERNELS_CPU_H
#define QS_KERNELS_CPU_H

/* The dispatch level in force after QS_CPU is applied. */
typedef enum { CPU_LEVEL_SCALAR, CPU_LEVEL_AVX2, CPU_LEVEL_AVX512 } CpuLevel;

/* Returns the highest level both the CPU and QS_CPU allow. Thread-safe. */
CpuLevel cpu_level(void);

/* Each returns 1 when the feature is present and allowed by QS_CPU, else 0.
 * AVX2 implies FMA here (we never use AVX2 without FMA). */
int cpu_has_avx2(void);
int cpu_has_f16c(void);
int cpu_has_avx512f(void);      /* also requires avx512bw/dq/vl */
int cpu_has_avx512_vnni(void);
int cpu_has_avx512_bf16(void);

/* Returns a static string like "avx512 (vnni bf16)" for reports; never NULL. */
const char *cpu_describe(void);

/* Test hook: re-reads QS_CPU (after setenv) instead of the cached answer. */
void cpu_refresh(void);

#endif
