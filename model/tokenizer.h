/* Tokenizers: SentencePiece-style BPE over scores (llama / llama2.c / HF BPE
 * with byte_fallback and the U+2581 normalizer) and byte-level BPE over merges
 * (GPT-2 family, with a pre-tokenizer chosen by name: "default"/"gpt2",
 * "llama-bpe", "deepseek-llm", "qwen2"). */
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

/* Builds a tokenizer from a llama2.c tokenizer .bin for a vocab of vocab_size. */
Status tokenizer_from_llama2c(const char *path, int64_t vocab_size, Tokenizer **out, Err *err);

/* Builds a tokenizer from a Hugging Face tokenizer.json (and, if present beside
 * it, tokenizer_config.json for add_bos). */
Status tokenizer_from_hf(const char *tokenizer_json_path, Tokenizer **out, Err *err);

/* NULL is a no-op. */
void tokenizer_free(Tokenizer *t);

/* Encodes len bytes of UTF-8 text. add_bos: 1 prepend BOS, 0 don't, -1 use the
 * tokenizer's own default. *ids is heap-allocated (caller frees), *n its length. */
Status tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int add_bos,
                        int32_t **ids, int64_t *n, Err *err);

/* Appends the bytes token id decodes to (byte tokens become raw bytes, U+2581
 * becomes a space; a leading space after BOS is kept as-is). Returns the byte
 * count written (at most cap; output truncated, not NUL-terminated), or 0 for
 * an out-of-range id. */
size_t tokenizer_decode(const Tokenizer *t, int32_t id, char *buf, size_t cap);

/* Returns the token's piece as stored in the vocab (borrowed, NUL-terminated,
 * valid while t lives), or "" for an out-of-range id. */
const char *tokenizer_piece(const Tokenizer *t, int32_t id);

int64_t tokenizer_vocab_size(const Tokenizer *t);
int32_t tokenizer_bos(const Tokenizer *t); /* -1 if none */
int32_t tokenizer_eos(const Tokenizer *t); /* -1 if none */
TokKind tokenizer_kind(const Tokenizer *t);
/* Short description for `info`, e.g. "spm (llama), 512 tokens" (static storage in t). */
const char *tokenizer_describe(const Tokenizer *t);

#endif
