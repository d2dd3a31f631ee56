/* Generated Unicode tables (model/unicode_data.c, written by
 * scripts/gen_unicode.py from the Debian package unicode-data). Read through
 * model/unicode.h; nothing else should need these directly. */
#ifndef QS_MODEL_UNICODE_DATA_H
#define QS_MODEL_UNICODE_DATA_H

#include <stdint.h>

typedef struct UnicodeFlagRun {
    uint32_t first;          /* first codepoint of the run */
    uint16_t flags;          /* UNICODE_F_* bits (model/unicode.h) */
} UnicodeFlagRun;

typedef struct UnicodeRange {
    uint32_t lo, hi;         /* inclusive */
} UnicodeRange;

/* Runs covering 0..0x10FFFF, sorted by first (static storage). */
extern const UnicodeFlagRun unicode_flag_runs[];
extern const int64_t unicode_flag_runs_count;

/* DeepSeek-LLM pre-tokenizer classes, sorted disjoint ranges (static storage). */
extern const UnicodeRange unicode_deepseek_letters[];
extern const int64_t unicode_deepseek_letters_count;
extern const UnicodeRange unicode_deepseek_punct[];
extern const int64_t unicode_deepseek_punct_count;
extern const UnicodeRange unicode_deepseek_cjk[];
extern const int64_t unicode_deepseek_cjk_count;

#endif
