/* SmoothQuant (Xiao et al., 2023): migrate activation outliers into the
 * weights with a per-input-channel factor s_j, so that
 *   y = (x ⊙ gain / rms(x)) · Wᵀ = (x ⊙ (gain / s) / rms(x)) · (W · diag(s))ᵀ
 * stays exactly the same function while the activation channel j shrinks by
 * s_j and the weight columns grow by it:
 *   s_j = max|X_j|^α / max|W_:,j|^(1-α)
 * with the weight maximum taken over every projection reading that input
 * (q/k/v after attn_norm, gate/up after ffn_norm), since one RMSNorm gain
 * feeds them all. Channel maxima come from calibration as plain arrays. */
#ifndef QS_QUANT_SMOOTHQUANT_H
#define QS_QUANT_SMOOTHQUANT_H

#include <stdint.h>

#include "core/status.h"

/* Computes s (n_in) from act_max (n_in, max|x| per input channel) and the
 * n_w weights W[k] (n_out[k], n_in) sharing that input. alpha in [0, 1]
 * (0.5 is SmoothQuant's default). Channels whose activation or weight
 * maximum is 0 get s = 1; s is clamped to [1e-5, 1e5]. All pointers are
 * borrowed for the call. ST_ERR_ARG on a bad alpha or shape, ST_ERR_NUMERIC
 * on a negative or non-finite maximum. */
Status smooth_scales(const float *act_max, const float *const *W, const int64_t *n_out, int64_t n_w, int64_t n_in,
                     float alpha, float *s, Err *err);

/* Applies s: gain_out[j] = gain[j] / s[j] and W_out[k][r][j] = W[k][r][j] * s[j]
 * for each of the n_w matrices. Outputs are caller-owned copies (they may
 * also be the inputs themselves, for in-place use). ST_ERR_ARG when an s_j is
 * not positive and finite. */
Status smooth_apply(const float *gain, const float *const *W, const int64_t *n_out, int64_t n_w, int64_t n_in,
                    const float *s, float *gain_out, float *const *W_out, Err *err);

#endif
