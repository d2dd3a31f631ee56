/* Unicode helpers for the tokenizers: UTF-8 decoding exactly as llama.cpp
 * does it (so ids match), general-category/whitespace flags from generated
 * tables, and GPT-2's byte <-> printable-codepoint mapping. */
#ifndef QS_MODEL_UNICODE_H
#define QS_MODEL_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#include "model/unicode_data.h"

/* Flag bits: one general-category group per codepoint plus WHITESPACE. */
enum {
    UNICODE_F_UNDEFINED = 0x01,  /* Cn (unassigned), and anything past U+10FFFF */
    UNICODE_F_NUMBER = 0x02,     /* \p{N} */
    UNICODE_F_LETTER = 0x04,     /* \p{L} */
    UNICODE_F_SEPARATOR = 0x08,  /* \p{Z} */
    UNICODE_F_MARK = 0x10,       /* \p{M} */
    UNICODE_F_PUNCT = 0x20,      /* \p{P} */
    UNICODE_F_SYMBOL = 0x40,     /* \p{S} */
    UNICODE_F_CONTROL = 0x80,    /* \p{C} except Cn */
    UNICODE_F_WHITESPACE = 0x100 /* White_Space property (regex \s) */
};

#define UNICODE_REPLACEMENT 0xFFFDu

/* Returns the flags of codepoint cp (never 0). */
uint16_t unicode_flags(uint32_t cp);

/* Returns 1 if cp lies in one of n sorted disjoint ranges. */
int unicode_in_ranges(uint32_t cp, const UnicodeRange *r, int64_t n);

/* Byte length of the UTF-8 sequence a lead byte announces (1 for continuation
 * and invalid bytes), as llama.cpp's unicode_len_utf8. */
size_t unicode_len_utf8(unsigned char lead);

/* Decodes one codepoint from s[0..len) (len >= 1) into *cp and returns the
 * bytes consumed. Invalid or truncated sequences yield U+FFFD and consume one
 * byte (llama.cpp's unicode_cpts_from_utf8 rule; overlongs are not rejected). */
size_t unicode_decode_utf8(const unsigned char *s, size_t len, uint32_t *cp);

/* Writes cp as UTF-8 into out (4 bytes of room) and returns the length;
 * codepoints past U+10FFFF are written as U+FFFD. */
size_t unicode_encode_utf8(uint32_t cp, char *out);

/* GPT-2 byte-level BPE: the printable codepoint standing for byte b. */
uint32_t unicode_byte_to_cpt(uint8_t b);

/* Inverse of unicode_byte_to_cpt: the byte, or -1 if cp stands for none. */
int unicode_cpt_to_byte(uint32_t cp);

#endif
