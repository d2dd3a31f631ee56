/* Unicode helpers for the tokenizers. The category tables are generated
 * (model/unicode_data.c); everything here is small and table-driven. */
#include "model/unicode.h"

uint16_t unicode_flags(uint32_t cp) {
    if (cp >= 0x110000u) return UNICODE_F_UNDEFINED;
    /* Binary search for the last run starting at or before cp. */
    int64_t lo = 0, hi = unicode_flag_runs_count - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (unicode_flag_runs[mid].first <= cp) lo = mid; else hi = mid - 1;
    }
    return unicode_flag_runs[lo].flags;
}

int unicode_in_ranges(uint32_t cp, const UnicodeRange *r, int64_t n) {
    int64_t lo = 0, hi = n - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].lo) hi = mid - 1;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return 1;
    }
    return 0;
}

size_t unicode_len_utf8(unsigned char lead) {
    static const unsigned char lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[lead >> 4];
}

static int is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

size_t unicode_decode_utf8(const unsigned char *s, size_t len, uint32_t *cp) {
    unsigned char b0 = s[0];
    if (!(b0 & 0x80)) { *cp = b0; return 1; }
    if (!(b0 & 0x40)) goto invalid;
    if (!(b0 & 0x20)) {
        if (len < 2 || !is_cont(s[1])) goto invalid;
        *cp = ((uint32_t)(b0 & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (!(b0 & 0x10)) {
        if (len < 3 || !is_cont(s[1]) || !is_cont(s[2])) goto invalid;
        *cp = ((uint32_t)(b0 & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    if (!(b0 & 0x08)) {
        if (len < 4 || !is_cont(s[1]) || !is_cont(s[2]) || !is_cont(s[3])) goto invalid;
        *cp = ((uint32_t)(b0 & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
              ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return 4;
    }
invalid:
    *cp = UNICODE_REPLACEMENT;
    return 1;
}

size_t unicode_encode_utf8(uint32_t cp, char *out) {
    if (cp > 0x10FFFFu) cp = UNICODE_REPLACEMENT;
    if (cp <= 0x7F) { out[0] = (char)cp; return 1; }
    if (cp <= 0x7FF) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp <= 0xFFFF) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. */
static int printable_byte(int b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t unicode_byte_to_cpt(uint8_t b) {
    if (printable_byte(b)) return b;
    uint32_t n = 0;
    for (int c = 0; c < b; c++) n += !printable_byte(c);
    return 256 + n;
}

int unicode_cpt_to_byte(uint32_t cp) {
    if (cp < 256) return printable_byte((int)cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    for (int c = 0; c < 256; c++) {
        if (!printable_byte(c)) {
            if (n == 0) return c;
            n--;
        }
    }
    return -1;
}
