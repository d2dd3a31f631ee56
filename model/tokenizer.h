/* Tokenizers: SentencePiece-style BPE over scores (llama / llama2.c / HF BPE
 * with byte_fallback and the U+2581 normalizer) and byte-level BPE over merges
 * (GPT-2 family, with a pre-tokenizer chosen by name: "default", "gpt-2",
 * "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder", "falcon",
 * "starcoder" and llama.cpp's aliases of these; see model/tok_pretok.h). */
#ifndef QS_MODEL_TOKENIZER_H
#define QS_MODEL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/gguf.h"

typedef enum { TOK_SPM, TOK_BPE } TokKind;

typedef struct Tokenizer Tokenizer;

/* Builds a tokenizer from a GGUF's tokenizer.ggml.* metadata (works on a
 * vocab-only GGUF). Caller frees. The Tokenizer copies what it needs, so the
 * Gguf may be freed afterwards. */
Status tokenizer_from_gguf(const Gguf *g, Tokenizer **out, Err *err);

/* Builds a tokenizer from a llama2.c tokenizer .bin for a vocab of vocab_size.
 * Caller frees; the file is read and unmapped before returning. */
Status tokenizer_from_llama2c(const char *path, int64_t vocab_size, Tokenizer **out, Err *err);

/* Builds a tokenizer from a Hugging Face tokenizer.json (and, if present beside
 * it, tokenizer_config.json for add_bos). Caller frees; nothing of the files
 * is kept. */
Status tokenizer_from_hf(const char *tokenizer_json_path, Tokenizer **out, Err *err);

/* Token types, numbered as GGUF's tokenizer.ggml.token_type. */
typedef enum {
    TOK_TYPE_NORMAL = 1, TOK_TYPE_UNKNOWN = 2, TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4, TOK_TYPE_UNUSED = 5, TOK_TYPE_BYTE = 6
} TokType;

/* A borrowed byte string (not NUL-terminated). */
typedef struct TokPiece {
    const char *s;
    size_t len;
} TokPiece;

/* When SentencePiece-style tokenizers prefix a U+2581 to a text fragment. */
enum {
    TOK_PREFIX_NONE = 0,
    TOK_PREFIX_ALWAYS = 1,   /* every fragment at the start or after a special token
                                (llama.cpp add_space_prefix; HF Prepend normalizer) */
    TOK_PREFIX_META_ALWAYS = 2, /* HF Metaspace prepend_scheme "always": the same, but
                                   not when the fragment already starts with a space;
                                   for byte-level BPE, HF ByteLevel add_prefix_space */
    TOK_PREFIX_META_FIRST = 3   /* HF Metaspace "first": as META_ALWAYS, first fragment only */
};

/* Everything a tokenizer is built from; the constructors below fill one in,
 * and tests can build vocabularies in memory. All arrays are borrowed for the
 * duration of the call only. */
typedef struct TokVocab {
    const char *model;        /* "llama": SentencePiece-BPE by scores (llama.cpp SPM);
                                 "gpt2": byte-level BPE by merge rank;
                                 "hf-spm": HF BPE by merge rank over the U+2581-normalized
                                 text, with byte fallback (HF LlamaTokenizer layout) */
    const char *pre;          /* byte-level pre-tokenizer name; NULL = "default" */
    int64_t n_tokens;
    const TokPiece *tokens;   /* (n_tokens) */
    const float *scores;      /* (n_tokens) or NULL (all 0) */
    const int32_t *types;     /* (n_tokens) TokType or NULL (all normal) */
    int64_t n_merges;
    const TokPiece *merges;   /* (n_merges) "left right", rank = index */
    int32_t bos, eos, unk;    /* -1 = none */
    int add_bos;              /* prepend BOS by default */
    int add_space_prefix;     /* TOK_PREFIX_* (0 none; gpt2 takes only META_ALWAYS) */
    int ignore_merges;        /* byte-level: a pre-token that is a whole token is used as is */
    const char *source;       /* file name for error messages (may be NULL) */
} TokVocab;

/* Builds a tokenizer from an explicit vocabulary. Caller frees. */
Status tokenizer_from_vocab(const TokVocab *v, Tokenizer **out, Err *err);

/* NULL is a no-op. */
void tokenizer_free(Tokenizer *t);

/* Encodes len bytes of UTF-8 text. add_bos: 1 prepend BOS, 0 don't, -1 use the
 * tokenizer's own default. *ids is heap-allocated (caller frees), *n its length. */
Status tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int add_bos,
                        int32_t **ids, int64_t *n, Err *err);

/* tokenizer_encode with parse_special: 1 also matches control tokens written
 * in the text (e.g. "<s>") as llama.cpp's parse_special does; user-defined
 * tokens are always matched. */
Status tokenizer_encode_ex(const Tokenizer *t, const char *text, size_t len, int add_bos,
                           int parse_special, int32_t **ids, int64_t *n, Err *err);

/* Decodes n ids into one heap string (*out, NUL-terminated, caller frees; *len
 * bytes without the NUL). Control tokens decode to nothing. */
Status tokenizer_detokenize(const Tokenizer *t, const int32_t *ids, int64_t n, char **out,
                            size_t *len, Err *err);

/* Returns the TokType of id (0 for an out-of-range id). */
int tokenizer_token_type(const Tokenizer *t, int32_t id);

/* 1 if the tokenizer prepends BOS by default. */
int tokenizer_add_bos(const Tokenizer *t);

/* Appends the bytes token id decodes to (byte tokens become raw bytes, U+2581
 * becomes a space; a leading space after BOS is kept as-is). Returns the byte
 * count written (at most cap; output truncated, not NUL-terminated), or 0 for
 * an out-of-range id and for control, unknown and unused tokens (as llama.cpp's
 * token_to_piece without `special`). */
size_t tokenizer_decode(const Tokenizer *t, int32_t id, char *buf, size_t cap);

/* Returns the token's piece as stored in the vocab (borrowed, NUL-terminated,
 * valid while t lives), or "" for an out-of-range id. */
const char *tokenizer_piece(const Tokenizer *t, int32_t id);

/* Number of tokens in the vocab (ids are 0 .. vocab_size-1). */
int64_t tokenizer_vocab_size(const Tokenizer *t);
int32_t tokenizer_bos(const Tokenizer *t); /* -1 if none */
int32_t tokenizer_eos(const Tokenizer *t); /* -1 if none */
TokKind tokenizer_kind(const Tokenizer *t);
/* The tokenizer as a GGUF's tokenizer.ggml.* keys describe it to llama.cpp
 * (for writers of GGUF files). */
typedef struct TokGgufInfo {
    const char *model;       /* "llama" (SentencePiece merging by score) or "gpt2" (static) */
    const char *pre;         /* gpt2: the pre-tokenizer's name (static); llama: NULL */
    int32_t bos, eos, unk;   /* -1: none */
    int add_bos;
    int add_space_prefix;    /* 1: llama.cpp's add_space_prefix */
} TokGgufInfo;

/* Fills *out for t. An HF BPE vocabulary with byte fallback (Llama's
 * tokenizer.json) is written as "llama": see tokenizer_gguf_scores. */
void tokenizer_gguf_info(const Tokenizer *t, TokGgufInfo *out);

/* Writes the n_tokens scores of tokenizer.ggml.scores into out: t's own for a
 * SentencePiece vocabulary; for an HF BPE vocabulary with byte fallback, minus
 * the rank of the first merge that makes each token (-1e9 for tokens no merge
 * makes), so that merging the best-scored pair first, as llama.cpp's
 * SentencePiece tokenizer does, merges in rank order as BPE does; 0 for gpt2. */
void tokenizer_gguf_scores(const Tokenizer *t, float *out);

/* Number of merges (byte-level and HF BPE vocabularies; 0 for SentencePiece). */
int64_t tokenizer_n_merges(const Tokenizer *t);

/* Merge i (in rank order) as "left right" into buf, NUL-terminated and
 * truncated to cap; returns its full length (0 for an out-of-range i). */
size_t tokenizer_merge_text(const Tokenizer *t, int64_t i, char *buf, size_t cap);

/* Short description for `info`, e.g. "spm (llama), 512 tokens" (static storage in t). */
const char *tokenizer_describe(const Tokenizer *t);

#endif
