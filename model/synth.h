/* Random-weight LLaMA models of real shapes, written as llama.cpp-compatible
 * GGUF: for benchmarks at full width without downloading weights, and for
 * tests that need a model with known structure (planted activation spikes).
 * Weights are seeded and deterministic: the same config gives the same bytes. */
#ifndef QS_MODEL_SYNTH_H
#define QS_MODEL_SYNTH_H

#include <stdint.h>

#include "core/progress.h"
#include "core/status.h"

#define SYNTH_MAX_SPIKES 16

/* Where a planted spike lives: the input of a layer's down_proj (the SwiGLU
 * output silu(gate) * up), or of its o_proj (the attention output; with GQA
 * the channel spikes in every query head sharing that KV head). */
typedef enum { SPIKE_DOWN, SPIKE_O } SpikeSite;

typedef struct SynthSpike {
    int64_t layer;
    SpikeSite site;
    int64_t channel;         /* index into the site's input width */
    float factor;            /* target |x| on BOS / typical |x| of an unspiked layer: for down the
                                median |silu(g)*u| with g, u ~ N(0,1); for o the median |v|, |N(0,1)| */
} SynthSpike;

/* The file layout written: llama (the default), llama with Llama 3.1
 * rope_freqs.weight (factor 8, low 1, high 4, original context 8192, as
 * llama.cpp's converter computes them), qwen2 (q/k/v biases, NEOX RoPE) or
 * phi3 (attn_qkv = [q; k; v], ffn_up = [gate; up], NEOX RoPE). The weights
 * are the same random streams in every layout. */
typedef enum { SYNTH_LLAMA, SYNTH_LLAMA3, SYNTH_QWEN2, SYNTH_PHI3 } SynthArch;

typedef struct SynthConfig {
    char name[32];           /* preset name, written as general.name */
    SynthArch arch;
    int64_t head_dim;        /* 0: dim / n_heads; else any even width (llama / llama3 only:
                                llama.cpp's qwen2 and phi3 need n_heads * head_dim = dim) */
    int64_t dim, hidden_dim, n_layers, n_heads, n_kv_heads;
    int64_t vocab_size;      /* >= 260: <unk> <s> </s>, 256 byte tokens, filler pieces */
    int64_t context_length;
    float rope_theta, norm_eps;
    uint64_t seed;
    uint32_t type;           /* GgmlType of the 2-D weights: GGML_F32, GGML_F16, GGML_BF16 or GGML_Q8_0
                                (Q8_0 falls back to F16 where ne[0] % 32 != 0); norms stay F32 */
    int n_spikes;
    SynthSpike spikes[SYNTH_MAX_SPIKES];
} SynthConfig;

/* Fills *cfg with a preset: "tiny" (stories260K shape: 64/172, 5 layers,
 * 8/4 heads, vocab 512), "tinyllama" (2048/5632, 32/4 heads, 4 layers,
 * vocab 512) or "llama2-7b" (4096/11008, 32/32 heads, 4 layers, vocab 512;
 * the real model has 32 layers and 32000 tokens: use --layers/--vocab).
 * Seed 0, type F32, no spikes. Returns ST_ERR_ARG for an unknown name. */
Status synth_preset(const char *name, SynthConfig *cfg, Err *err);

/* Parses "llama", "llama3", "qwen2" or "phi3" into cfg->arch (other names:
 * ST_ERR_ARG naming the known ones). */
Status synth_parse_arch(const char *name, SynthConfig *cfg, Err *err);

/* Parses a spike list into cfg->spikes (replacing any): comma-separated
 * items LAYER.SITE:CHANNEL[:FACTOR], SITE `down` or `o`, FACTOR in [1, 1e4]
 * defaulting to 100. Checks layer and channel against cfg's shape, so set the
 * shape (and --layers) first. */
Status synth_parse_spikes(const char *spec, SynthConfig *cfg, Err *err);

/* A prepared synthetic model: config validated, tensor list built and spike
 * directions solved (which runs the BOS token through the layers below each
 * spike). Cheap in memory: weights are generated row by row when needed. */
typedef struct Synth Synth;

/* Validates cfg and prepares (cfg is copied); caller frees with synth_free.
 * With spikes this runs BOS through the layers up to the deepest plant. */
Status synth_new(const SynthConfig *cfg, Synth **out, Err *err);
/* NULL is a no-op. */
void synth_free(Synth *s);

/* Number of tensors and the name of tensor i (llama.cpp names; the string is
 * owned by s). These are the unfused projections in llama's file order: a
 * phi3 file stores q/k/v and gate/up of a layer stacked in one tensor, and
 * qwen2 / llama3 files hold their biases / rope_freqs besides. */
int64_t synth_n_tensors(const Synth *s);
const char *synth_tensor_name(const Synth *s, int64_t i);

/* The float32 values of tensor i before storage conversion, (ne1, ne0)
 * row-major into out (ne0*ne1 floats); *ne0 / *ne1 receive the shape. */
void synth_tensor_f32(const Synth *s, int64_t i, float *out, int64_t *ne0, int64_t *ne1);

/* Writes the model as GGUF v3 (atomic; streams tensor by tensor). p may be
 * NULL; with p, progress is in bytes and cancel is honoured. */
Status synth_write(const Synth *s, const char *path, Progress *p, Err *err);

#endif
