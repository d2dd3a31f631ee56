#include "quant/smoothquant.h"

#include <math.h>
#include <stdlib.h>

Status smooth_scales(const float *act_max, const float *const *W, const int64_t *n_out, int64_t n_w, int64_t n_in,
                     float alpha, float *s, Err *err) {
    if (!(alpha >= 0 && alpha <= 1)) return err_set(err, ST_ERR_ARG, "smoothquant: alpha %g must be in [0, 1]", alpha);
    if (n_in <= 0 || n_w <= 0) return err_set(err, ST_ERR_ARG, "smoothquant: %lld weights of %lld inputs", (long long)n_w, (long long)n_in);
    for (int64_t j = 0; j < n_in; j++) {
        if (!(act_max[j] >= 0) || isinf(act_max[j]))
            return err_set(err, ST_ERR_NUMERIC, "smoothquant: activation max of channel %lld is %g", (long long)j, act_max[j]);
        s[j] = 0; /* running weight column maximum */
    }
    for (int64_t k = 0; k < n_w; k++) {
        if (n_out[k] <= 0) return err_set(err, ST_ERR_ARG, "smoothquant: weight %lld has %lld rows", (long long)k, (long long)n_out[k]);
        for (int64_t r = 0; r < n_out[k]; r++) {
            const float *w = W[k] + r * n_in;
            for (int64_t j = 0; j < n_in; j++) {
                float a = fabsf(w[j]);
                if (!isfinite(a))
                    return err_set(err, ST_ERR_NUMERIC, "smoothquant: weight %lld (%lld, %lld) is not finite", (long long)k,
                                   (long long)r, (long long)j);
                if (a > s[j]) s[j] = a;
            }
        }
    }
    for (int64_t j = 0; j < n_in; j++) {
        double wm = s[j], am = act_max[j];
        double v = am > 0 && wm > 0 ? pow(am, alpha) / pow(wm, 1.0 - alpha) : 1.0;
        s[j] = (float)fmin(fmax(v, 1e-5), 1e5);
    }
    return ST_OK;
}

Status smooth_apply(const float *gain, const float *const *W, const int64_t *n_out, int64_t n_w, int64_t n_in,
                    const float *s, float *gain_out, float *const *W_out, Err *err) {
    for (int64_t j = 0; j < n_in; j++)
        if (!(s[j] > 0) || isinf(s[j]))
            return err_set(err, ST_ERR_ARG, "smoothquant: scale %lld is %g (must be positive and finite)", (long long)j, s[j]);
    for (int64_t j = 0; j < n_in; j++) gain_out[j] = gain[j] / s[j];
    for (int64_t k = 0; k < n_w; k++)
        for (int64_t r = 0; r < n_out[k]; r++) {
            const float *w = W[k] + r * n_in;
            float *o = W_out[k] + r * n_in;
            for (int64_t j = 0; j < n_in; j++) o[j] = w[j] * s[j];
        }
    return ST_OK;
}
