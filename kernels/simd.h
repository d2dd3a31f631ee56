/* The instruction-set levels the fast kernels are compiled for, one spelling
 * each. A function carrying one of these may run only after kernels/cpu.h
 * says the CPU has that level (the dispatcher picks it at run time; every
 * such kernel has a scalar *_ref twin):
 *   QS_TARGET_AVX2         cpu_has_avx2() (AVX2 + FMA; F16C code also checks
 *                          cpu_has_f16c())
 *   QS_TARGET_AVX512       cpu_has_avx512f() (F, BW, DQ, VL; FMA and F16C come
 *                          with every AVX-512 CPU)
 *   QS_TARGET_AVX512_VNNI  cpu_has_avx512_vnni() as well
 * The builds use ISO C (-std=c11), so the compiler never fuses a separate
 * multiply and add into an FMA on its own: enabling FMA in a target changes
 * no result, only what intrinsics may be used. */
#ifndef QS_KERNELS_SIMD_H
#define QS_KERNELS_SIMD_H

#define QS_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define QS_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c")))
#define QS_TARGET_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma,f16c")))

#endif
