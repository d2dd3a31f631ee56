/* Named plans ("presets") that work on any model: a preset builds a Plan for
 * a model's shape, falling back visibly (plan notes) where its group size
 * does not divide a dimension.
 *
 *   fp32, fp16             everything in that format (embedding and head too)
 *   w8a8-tensor            int8 per-OC weights, int8 per-tensor activations
 *   w8a8-token             same with per-token activations
 *   smoothquant-w8a8       w8a8-tensor + SmoothQuant (alpha) on q/k/v and gate/up
 *   spike-aware-w8a8       w8a8-tensor, the given spike sites kept fp16 (or fp8
 *                          weights and activations with spike_fmt)
 *   random-k               w8a8-tensor, k random projections (of layers x
 *                          7, seeded) kept like spike-aware's sites; k
 *                          defaults to the number of projections the spike
 *                          list covers (the paper's control)
 *   int4-rtn, int3-rtn     weight-only, groups of g along OC, asymmetric
 *   int4-gptq, int3-gptq   same through GPTQ (damp 0.01, act-order, block 128)
 *   adadim-int4[-gptq], adadim-int3[-gptq]
 *                          weight-only, AdaDim picks per-OC or per-IC groups
 *   w4a8-token             int4 symmetric weights, groups of g along OC, RTN, and
 *                          int8 per-token dynamic activations: the layers run
 *                          kernels/w4a8.h's integer dot products where g is a
 *                          multiple of 32 (or 0), else fake-quantized activations
 *                          on the weight-only kernel (g = 32 is llama.cpp Q4_0's
 *                          weight layout; the default g is 128 as for int4-rtn)
 *   aqlm-2x8, aqlm-1x16, aqlm-1x8
 *                          AQLM 2x8 g8, 1x16 g8, 1x8 g4 (2 code bits per weight;
 *                          codebooks extra); a projection whose input width g
 *                          does not divide gets one codebook over a smaller group
 *                          with the same code bits (2x8g8 -> 1x8g4 on a 172-wide
 *                          down_proj), or fp16, with a note. --group is ignored.
 *   llama-q8_0, llama-q4_0, llama-q4_k_m, llama-q5_k_m, llama-q6_k
 *                          llama.cpp's mixtures of those ftypes without an
 *                          imatrix (src/llama-quant.cpp's llama_tensor_get_type
 *                          on a dense model): the base ggml type, the output head
 *                          q6_k (q8_0 where its rows do not fit the base's
 *                          blocks; q8_0 stays q8_0), the embedding the base (the
 *                          head's type when tied), _k_m q6_k on attn_v and
 *                          ffn_down of use_more_bits layers, then llama.cpp's
 *                          fallback where rows are not whole blocks (noted).
 *                          --group is ignored.
 * In every other preset the embedding and output head stay fp16 (fp32 in "fp32"). */
#ifndef QS_QUANT_PRESET_H
#define QS_QUANT_PRESET_H

#include <stdint.h>

#include "core/status.h"
#include "quant/format.h"
#include "quant/plan.h"

typedef struct PresetOpts {
    int64_t group;                /* group size g (default 128; 0 = per-channel) */
    int sym;                      /* -1 preset default (int8 symmetric, int4/int3 asymmetric) */
    const char *const *spikes;    /* spike-aware: sites as patterns ("1.down", "4.gate_up"),
                                     borrowed for the call; from calibration's ranking */
    int64_t n_spikes;
    QFormat spike_fmt;            /* QF_F16 (default), QF_FP8_E4M3 or QF_FP8_E5M2 */
    int64_t random_k;             /* random-k: number of projections (0: as many as
                                     the spike list covers) */
    uint64_t seed;                /* random-k seed */
    int act_static;               /* w8a8 presets: static activation scales from calibration */
    int act_skip_first;           /* w8a8 presets: leave token 0 out of the activation range */
    float alpha;                  /* smoothquant alpha (default 0.5) */
    int fix_groups;               /* 1 (default): apply plan_fix_groups */
} PresetOpts;

/* Fills o with the defaults above. */
void preset_opts_default(PresetOpts *o);

/* Builds preset `name` for m into *out (initialised here; caller plan_done's
 * it). o may be NULL (defaults). Errors: ST_ERR_ARG for an unknown preset
 * (the detail lists the known ones), a bad spike site or option. */
Status plan_preset(Plan *out, const char *name, const PresetOpts *o, const PlanModel *m, Err *err);

typedef struct PresetInfo {
    const char *name;
    const char *desc;             /* one line for --help and the UI */
} PresetInfo;

/* The format llama-quantize writes for f on rows of n_in: f, else its
 * tensor_type_fallback chain (the traits' fallback) down to fp16. Formats
 * other than the ggml block types are returned unchanged. */
QFormat preset_ggml_fit(QFormat f, int64_t n_in);

/* Returns the preset table (static) and its length in *n. */
const PresetInfo *plan_presets(int *n);

#endif
