#include "kernels/cpu.h"

#include <cpuid.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Bit set of allowed features; bit 31 marks "computed". */
enum {
    F_AVX2 = 1u << 0,
    F_F16C = 1u << 1,
    F_AVX512 = 1u << 2,
    F_VNNI = 1u << 3,
    F_BF16 = 1u << 4,
    F_DONE = 1u << 31
};

static _Atomic unsigned cpu_flags;

static unsigned cpu_detect(void) {
    unsigned f = 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) f |= F_AVX2;
    unsigned a, b, c, d; /* F16C is CPUID.1:ECX bit 29 (clang has no "f16c" for __builtin_cpu_supports) */
    if (__get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1)) f |= F_F16C;
    if ((f & F_AVX2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        f |= F_AVX512;
    if ((f & F_AVX512) && __builtin_cpu_supports("avx512vnni")) f |= F_VNNI;
    if ((f & F_AVX512) && __builtin_cpu_supports("avx512bf16")) f |= F_BF16;

    const char *env = getenv("QS_CPU");
    if (env && strcmp(env, "scalar") == 0) f = 0;
    else if (env && strcmp(env, "avx2") == 0) f &= F_AVX2 | F_F16C;
    return f | F_DONE;
}

static unsigned cpu_get(void) {
    unsigned f = atomic_load(&cpu_flags);
    if (!(f & F_DONE)) {
        f = cpu_detect();
        atomic_store(&cpu_flags, f);
    }
    return f;
}

void cpu_refresh(void) { atomic_store(&cpu_flags, cpu_detect()); }

CpuLevel cpu_level(void) {
    unsigned f = cpu_get();
    if (f & F_AVX512) return CPU_LEVEL_AVX512;
    if (f & F_AVX2) return CPU_LEVEL_AVX2;
    return CPU_LEVEL_SCALAR;
}

int cpu_has_avx2(void) { return (cpu_get() & F_AVX2) != 0; }
int cpu_has_f16c(void) { return (cpu_get() & F_F16C) != 0; }
int cpu_has_avx512f(void) { return (cpu_get() & F_AVX512) != 0; }
int cpu_has_avx512_vnni(void) { return (cpu_get() & F_VNNI) != 0; }
int cpu_has_avx512_bf16(void) { return (cpu_get() & F_BF16) != 0; }

const char *cpu_describe(void) {
    unsigned f = cpu_get();
    if (f & F_AVX512) {
        static const char *const names[4] = {"avx512", "avx512 (vnni)", "avx512 (bf16)",
                                             "avx512 (vnni bf16)"};
        return names[((f & F_VNNI) ? 1 : 0) | ((f & F_BF16) ? 2 : 0)];
    }
    return (f & F_AVX2) ? "avx2" : "scalar";
}
