/* The (scale, min) search of ggml's K-quants (make_qkx2_quants /
 * make_qkx3_quants), scalar and eight sub-blocks at a time. Q4_K, Q5_K and
 * Q2_K run it on every sub-block of every super-block, and it was the
 * largest single cost of the sensitivity map's ggml cells (19 % of the whole
 * map on the 7B). The search must give llama-quantize's bytes, so the fast
 * version keeps each sub-block's arithmetic exactly the scalar one's: the
 * eight lanes of a vector are eight independent sub-blocks, each running the
 * scalar steps in the scalar order (no reassociated sums, no fused
 * multiply-adds: quant/ggml_type.c's byte identity carries over). */
#ifndef QS_KERNELS_KFIT_H
#define QS_KERNELS_KFIT_H

#include <stdint.h>
#include <string.h>

/* Round to nearest, ties to even, for |x| <= 2^22 (ggml's nearest_int). */
static inline int kfit_round(float x) {
    float v = x + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int kfit_clamp(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Scale and min for the n values x (weights w) as codes in [0, nmax],
 * minimizing the weighted error (|e| with use_mad, else e²): min-max first,
 * then nstep + 1 trial scales (rmin + rdelta·is + nmax)/(max − min), each
 * refit by weighted least squares (min kept <= 0). L (n) receives the codes;
 * *neg_min = −min; returns the scale. n <= 32. ggml's make_qkx2_quants, the
 * scalar reference. */
float kfit_min_ref(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min, float rmin,
                   float rdelta, int nstep, int use_mad);

/* kfit_min_ref on 8 sub-blocks at once: sub-block b is x + b·n, w + b·n,
 * L + b·n, with its results in scale[b], neg_min[b]; bit for bit the 8
 * scalar calls (tests/test_kernels.c), AVX2 where the CPU has it. n <= 32. */
void kfit_min8(int n, int nmax, const float *x, const float *w, uint8_t *L, float *scale, float *neg_min, float rmin,
               float rdelta, int nstep, int use_mad);

#endif
