/* Internal interface of loading: model.c (binding, bookkeeping) below the
 * three file-format loaders (load_gguf.c, load_hf.c, load_llama2c.c), and
 * load.c (model_load's dispatch) above them. Not part of the public model
 * API: only model/ includes it.
 *
 * A loader fills m->cfg, m->tok, m->file_bytes and m->fingerprint, registers
 * the resources that keep its mappings alive with model_keep(), and hands
 * model_bind_weights() a callback that finds each tensor in its files. The
 * binder checks every shape against the config and borrows the matrices in
 * their own dtype; only norm vectors are converted to float32. */
#ifndef QS_MODEL_LOAD_INTERNAL_H
#define QS_MODEL_LOAD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/model.h"

/* The tensors of a LLaMA model, in the canonical order of Model.tensors. */
typedef enum {
    ROLE_EMBD,               /* (vocab, dim) */
    ROLE_ATTN_NORM,          /* (dim), per layer */
    ROLE_Q, ROLE_K, ROLE_V, ROLE_O,
    ROLE_FFN_NORM,           /* (dim), per layer */
    ROLE_GATE, ROLE_UP, ROLE_DOWN,
    ROLE_OUT_NORM,           /* (dim) */
    ROLE_OUTPUT,             /* (vocab, dim); optional: absent means tied */
    ROLE_Q_BIAS, ROLE_K_BIAS, ROLE_V_BIAS, /* (n_out of q/k/v), per layer; optional */
    ROLE_COUNT
} TensorRole;

/* One tensor as a file stores it. All pointers are borrowed from the loader
 * and need only stay valid until model_bind_weights returns (data: for the
 * life of the model, since weights are used in place). */
typedef struct SrcTensor {
    const char *file;        /* path, for error messages */
    const char *name;        /* name in the file (NUL-terminated) */
    uint32_t type;           /* GgmlType */
    int n_dims;
    int64_t ne[4];           /* ggml order: ne[0] is the contiguous dimension */
    const void *data;        /* NULL: the tensor is absent */
    size_t nbytes;
    int outer_first;         /* print shapes outermost-first, as safetensors does */
} SrcTensor;

/* Finds tensor `role` of block `layer` (-1 for the non-block roles). Sets
 * out->data = NULL when the tensor is absent (the binder decides whether that
 * is an error; for ROLE_OUTPUT it means tied). Returns a status; on error err
 * names the file and the problem. */
typedef Status (*TensorFindFn)(void *ctx, TensorRole role, int64_t layer, SrcTensor *out, Err *err);

/* Narrows t, a fused tensor whose rows are several projections stacked, to
 * the part `role` names: [q; k; v] for ROLE_Q/K/V, [gate; up] for
 * ROLE_GATE/UP (heights from c). data, nbytes and ne[1] then describe that
 * part, still borrowed from the same mapping (row-major storage makes any row
 * range contiguous, whatever the type). A tensor of another height or not
 * 2-D fails, naming the file and tensor. "[q]", "[gate]", ... is appended to
 * name_buf (t->name must point to it, cap bytes) so the tensor table and
 * errors tell the parts apart. t absent (data NULL) is left alone. */
Status model_src_split(const ModelConfig *c, TensorRole role, SrcTensor *t, char *name_buf, size_t cap, Err *err);

/* Copies t (a vector of head_dim/2 F32 values, llama.cpp's rope_freqs) into
 * an owned table set as m->rope_freqs. Fails naming file and tensor when it
 * has another length or type or holds a factor that is not positive. */
Status model_set_rope_freqs(Model *m, const SrcTensor *t, Err *err);

/* Sets m->rope_freqs from Hugging Face's "llama3" rope_scaling parameters the
 * way transformers' _compute_llama3_parameters does (pairs with wavelength
 * below original_max/high_freq_factor keep their frequency, those above
 * original_max/low_freq_factor are divided by factor, those between are
 * smoothed), stored as divisors of the angle like rope_freqs. */
Status model_set_llama3_rope(Model *m, double factor, double low_freq_factor, double high_freq_factor,
                             double original_max, const char *file, Err *err);

/* A Model with only its path set (and the bookkeeping model_keep needs), for
 * a loader to fill; *out is NULL on failure. Caller model_free's it. */
Status model_new_empty(const char *path, Model **out, Err *err);

/* Release function for a resource kept alive with the model. */
typedef void (*ReleaseFn)(void *p);

/* Keeps p alive until model_free, which calls release(p) (in reverse order of
 * registration). On allocation failure releases p at once and returns
 * ST_ERR_NOMEM. */
Status model_keep(Model *m, ReleaseFn release, void *p, Err *err);

/* Checks m->cfg for plausible, mutually consistent values (positive sizes,
 * n_heads a multiple of n_kv_heads, even head_dim,
 * sizes small enough that no count overflows). file names the source in the
 * error. */
Status model_check_config(const Model *m, const char *file, Err *err);

/* Binds every tensor of m (m->cfg must be set and checked): allocates
 * m->layers and m->tensors, sets tok_embd, out_norm, output (tied when the
 * finder reports ROLE_OUTPUT absent and force_tied is 0, or always when
 * force_tied is 1), checks shapes against the config (errors name the tensor,
 * the expected and the actual shape), borrows 4-byte-aligned matrices in
 * their own dtype (misaligned ones are copied, still in their dtype) and
 * norm vectors when aligned F32 (else converted to float32); copies add to
 * m->owned_bytes. The bias roles are optional: absent leaves
 * LayerWeights.bias NULL; present, they are converted to owned float32
 * whatever their type. */
Status model_bind_weights(Model *m, TensorFindFn find, void *ctx, int force_tied, Err *err);

/* Mixes one weight file into a fingerprint: its size, its first header_len
 * bytes, and 4 KiB at 16 evenly spaced offsets. Returns the new hash. */
uint64_t model_hash_file(uint64_t h, const unsigned char *data, size_t size, size_t header_len);

/* Loaders. Each fills m (already allocated, m->path set) or returns an error
 * naming the file; model_load frees m on error. */
Status load_gguf(Model *m, const char *path, Err *err);
Status load_hf(Model *m, const char *dir, Err *err);
/* tokenizer_path may be NULL: the header is still validated so a non-model
 * file gets a header error, and a valid checkpoint gets "pass --tokenizer". */
Status load_llama2c(Model *m, const char *path, const char *tokenizer_path, Err *err);

#endif
