/* Row-wise vector kernels of the forward pass (RMSNorm, softmax, SwiGLU),
 * each dispatched at run time to an AVX-512 or AVX2 path (kernels/cpu.h) with
 * a scalar *_ref twin. The SIMD paths use a polynomial exp with < 2 ulp
 * relative error, so they agree with the twins to ~1e-6 relative. */
#ifndef QS_KERNELS_VEC_H
#define QS_KERNELS_VEC_H

#include <stdint.h>

/* y[i] = w[i] * (x[i] * s), s = 1/sqrt(mean(x²) + eps), the sum of squares
 * taken in double as llama.cpp does. w may be NULL (no gain). y may equal x. */
void vec_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);
void vec_rmsnorm_ref(float *y, const float *x, const float *w, int64_t n, float eps);

/* In place: x[i] = exp(scale·x[i] - m) / Σ, m = max(scale·x), Σ summed in double. */
void vec_softmax(float *x, int64_t n, float scale);
void vec_softmax_ref(float *x, int64_t n, float scale);

/* out[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + exp(-g)). out may equal gate or up. */
void vec_swiglu(float *out, const float *gate, const float *up, int64_t n);
void vec_swiglu_ref(float *out, const float *gate, const float *up, int64_t n);

/* out[i] = exp(x[i]) (for tests of the polynomial). out may equal x. */
void vec_exp(float *out, const float *x, int64_t n);
void vec_exp_ref(float *out, const float *x, int64_t n);

#endif
