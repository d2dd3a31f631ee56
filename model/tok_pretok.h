/* Byte-level BPE pre-tokenizers: hand-written matchers over codepoints that
 * split text exactly as llama.cpp does for each tokenizer.ggml.pre (and as the
 * HF regexes they stand for), without a regex library. */
#ifndef QS_MODEL_TOK_PRETOK_H
#define QS_MODEL_TOK_PRETOK_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum {
    TOK_PRE_DEFAULT,      /* llama.cpp "default": punct runs, GPT-2, \p{N}+, [0-9]{3} */
    TOK_PRE_GPT2,         /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    TOK_PRE_LLAMA3,       /* Llama 3: (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|... */
    TOK_PRE_QWEN2,        /* as LLAMA3 with \p{N} (single digits) */
    TOK_PRE_DEEPSEEK_LLM, /* [\r\n], \s?[letters]+, \s?[punct]+, \s+$, [CJK]+, \p{N}+ */
    TOK_PRE_STARCODER,    /* \p{N} (single digits), then GPT-2 */
    TOK_PRE_FALCON,       /* [\p{P}\$\+<=>\^~\|`]+, then GPT-2, then [0-9]{3} */
    TOK_PRE_DEEPSEEK_CODER, /* [\r\n], \s?\p{L}+, \s?\p{P}+, [CJK]+, \p{N} */
    TOK_PRE_COUNT
} TokPre;

/* What llama.cpp does for one tokenizer.ggml.pre name. */
typedef struct TokPreName {
    const char *name;
    TokPre pre;
    int ignore_merges;       /* a pre-token that is a whole token is used as is */
    int add_bos;             /* BOS by default (before tokenizer.ggml.add_bos_token) */
    int no_bos;              /* no default BOS id (chatglm) */
} TokPreName;

/* Looks up a tokenizer.ggml.pre name (len bytes, not NUL-terminated);
 * returns NULL for a name not handled here (static storage otherwise). */
const TokPreName *tok_pretok_lookup(const char *name, size_t len);

/* Maps a name to its pre-tokenizer; returns 1 on success, 0 if unknown. */
int tok_pretok_parse(const char *name, size_t len, TokPre *out);

/* Canonical name ("default", "gpt-2", "llama-bpe", "qwen2", "deepseek-llm",
 * "starcoder", "falcon", "deepseek-coder"). */
const char *tok_pretok_name(TokPre pre);

/* Maps a Hugging Face Split pre-tokenizer regex (or the GPT-2 regex implied by
 * a ByteLevel pre-tokenizer with use_regex) to a pre-tokenizer by comparing it
 * with the known patterns; returns 1 on a match, 0 otherwise. */
int tok_pretok_from_regex(const char *pattern, TokPre *out);

/* The same for a Sequence of n Split patterns (in order): one known pattern,
 * or DeepSeek's chains, told apart by the Split after "[\r\n]". */
int tok_pretok_from_regex_list(const char *const *patterns, int n, TokPre *out);

/* Splits n codepoints into words. *lens receives the word lengths in
 * codepoints (heap, caller frees; they sum to n), *n_words their count. */
Status tok_pretok_split(TokPre pre, const uint32_t *cpts, int64_t n, int64_t **lens,
                        int64_t *n_words, Err *err);

#endif
