/* A loaded LLaMA-family model: config, tokenizer and weights. The matrices
 * (embedding, projections, output head) stay in the file mapping in their own
 * dtype (model/weight.h); only the norm vectors are converted to float32 when
 * stored otherwise. The forward pass reads only this struct (plus an optional
 * quantized overlay). */
#ifndef QS_MODEL_MODEL_H
#define QS_MODEL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/tokenizer.h"
#include "model/weight.h"

/* RoPE pairing. NORM: consecutive pairs (2i, 2i+1) — llama2.c and GGUF
 * `llama` (whose converter permutes q/k rows). NEOX: halves (i, i+hd/2) — the
 * rotate_half convention of Hugging Face q/k weights, used as stored. */
typedef enum { ROPE_NORM, ROPE_NEOX } RopeStyle;

typedef enum { FMT_GGUF, FMT_HF, FMT_LLAMA2C } ModelFormat;

/* The seven linear projections of a block. */
typedef enum { PROJ_Q, PROJ_K, PROJ_V, PROJ_O, PROJ_GATE, PROJ_UP, PROJ_DOWN, PROJ_COUNT } Proj;

/* Tap points: the inputs of the projections (q/k/v share one, gate/up share
 * one) and the residual stream after each block. */
typedef enum { TAP_QKV, TAP_O, TAP_GATE_UP, TAP_DOWN, TAP_RESID, TAP_COUNT } TapPoint;

typedef struct ModelConfig {
    char arch[32];           /* "llama", "qwen2" or "phi3" */
    int64_t dim;             /* model width */
    int64_t hidden_dim;      /* FFN width */
    int64_t n_layers;
    int64_t n_heads;
    int64_t n_kv_heads;
    int64_t head_dim;        /* width of one q/k/v head; n_heads * head_dim need not be dim */
    int64_t vocab_size;
    int64_t max_seq_len;     /* context the model was trained with */
    float rope_theta;
    float norm_eps;
    RopeStyle rope_style;
    float rope_freq_scale;   /* linear RoPE scaling: angles are multiplied by it (1/factor);
                                0 reads as 1 (none), so a zeroed config means no scaling */
    int64_t sliding_window;  /* 0: full causal attention; W: query i sees keys i-W+1 .. i */
    int tied_embeddings;     /* output head shares tok_embd */
} ModelConfig;

typedef struct LayerWeights {
    const float *attn_norm;  /* (dim) */
    const float *ffn_norm;   /* (dim) */
    Weight proj[PROJ_COUNT]; /* q (n_heads*hd, dim), k/v (n_kv_heads*hd, dim),
                                o (dim, n_heads*hd), gate/up (hidden, dim), down (dim, hidden) */
    const float *bias[PROJ_COUNT]; /* (proj[p].n_out) float32, added after the projection
                                (quantized or not); NULL: none. Only q/k/v are ever set. */
} LayerWeights;

/* One row of `qscope info`'s tensor table. */
typedef struct TensorEntry {
    char name[96];
    uint32_t src_type;       /* GgmlType in the file */
    int64_t ne[2];           /* (n_in, n_out) as ggml orders them; ne[1]=1 for vectors */
    size_t file_bytes;       /* bytes in the file */
    int borrowed;            /* 1: used in place from the mapping; 0: copied or converted */
    const char *kind;        /* "embedding", "attention", "ffn", "norm" or "output" (static) */
    int layer;               /* block index, -1 for embedding, final norm and head */
} TensorEntry;

typedef struct Model Model;
struct Model {
    ModelConfig cfg;
    ModelFormat format;
    char *path;              /* as given (owned) */
    Tokenizer *tok;          /* owned; NULL only if the loader could not find one */
    Weight tok_embd;         /* (vocab_size, dim); rows decoded on lookup */
    const float *out_norm;   /* (dim) */
    Weight output;           /* (vocab_size, dim); same data as tok_embd when tied */
    LayerWeights *layers;    /* (n_layers) */
    const float *rope_freqs; /* (head_dim/2) divisor of each RoPE pair's angle (Llama 3.1
                                frequency factors, as llama.cpp's rope_freqs); NULL: none */
    TensorEntry *tensors;    /* (n_tensors) for reporting, in canonical order: embedding,
                                per block attn_norm q k v o ffn_norm gate up down,
                                final norm, separate head (if any) */
    int64_t n_tensors;
    size_t file_bytes;       /* total bytes of the weight files */
    size_t owned_bytes;      /* bytes the model allocated for weights: norms converted to
                                float32, misaligned tensors copied */
    uint64_t fingerprint;    /* hash of sizes, headers and sampled tensor bytes */
    void *priv;              /* loader-owned resources (mappings, buffers) */
};

typedef struct ModelLoadOpts {
    const char *tokenizer_path; /* llama2.c tokenizer .bin (NULL: tok<vocab>.bin or tokenizer.bin
                                   beside a .bin model, else an error) */
} ModelLoadOpts;

/* Loads a model: a .gguf file, a Hugging Face directory (config.json +
 * safetensors), or a llama2.c .bin (with opts->tokenizer_path or the
 * tokenizer found beside it: tok512.bin for a 512-token vocab, tokenizer.bin). opts may
 * be NULL. On error err names the file and the problem. Caller frees. */
Status model_load(const char *path, const ModelLoadOpts *opts, Model **out, Err *err);

/* Frees the model and unmaps its files; NULL is a no-op. */
void model_free(Model *m);

/* Returns "q","k","v","o","gate","up","down" (static storage), "?" if out of range. */
const char *proj_name(Proj p);
/* Returns "qkv","o","gate_up","down","resid" (static storage), "?" if out of range. */
const char *tap_name(TapPoint t);
/* Returns the tap point that feeds projection p. */
TapPoint proj_tap(Proj p);
/* Parses a proj name (also accepts HF/GGUF spellings like q_proj, attn_q,
 * ffn_down); returns -1 if unknown. */
int proj_parse(const char *s);

/* Total parameter count (embedding + layers + norms + separate head if any). */
int64_t model_param_count(const Model *m);

#endif
