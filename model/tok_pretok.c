/* Byte-level BPE pre-tokenizers. Every pre-tokenizer is a chain of splitters;
 * each splitter refines a list of pieces (lengths in codepoints) and, like
 * llama.cpp's unicode_regex_split, keeps both its matches and the unmatched
 * gaps between them as pieces. The GPT-2 and Llama-3 splitters follow the
 * regexes' leftmost-first alternation by hand; the others are the simple
 * character-class regexes of llama.cpp's "default" and "deepseek-llm" lists.
 *
 * Where llama.cpp runs a regex through std::regex, it first maps non-ASCII
 * whitespace to U+000B (so `\s` matches it and nothing else changes) and, for
 * \p{..} classes, collapses codepoints to their category; the predicates below
 * reproduce exactly those views. */
#include "model/tok_pretok.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "model/unicode.h"

/* === piece lists ====================================================== */

typedef struct Pieces {
    int64_t *len;            /* (n) lengths in codepoints */
    int64_t n;
} Pieces;

/* Appends piece [*prev, end) if non-empty; out has room for every codepoint. */
static void piece_add(Pieces *out, int64_t *prev, int64_t end) {
    if (end > *prev) out->len[out->n++] = end - *prev;
    *prev = end;
}

/* === GPT-2 ============================================================ */

/* flags of cpts[pos] inside [ini, end), 0 outside (llama.cpp's _get_flags). */
static uint16_t fl_at(const uint32_t *c, int64_t pos, int64_t ini, int64_t end) {
    return (pos >= ini && pos < end) ? unicode_flags(c[pos]) : 0;
}

#define OUT_OF_RANGE 0xFFFFFFFFu
static uint32_t cp_at(const uint32_t *c, int64_t pos, int64_t ini, int64_t end) {
    return (pos >= ini && pos < end) ? c[pos] : OUT_OF_RANGE;
}

#define F_WS UNICODE_F_WHITESPACE
#define F_L UNICODE_F_LETTER
#define F_N UNICODE_F_NUMBER

/* 's|'t|'re|'ve|'m|'ll|'d (case-insensitive when ci). Returns the match length
 * (2 or 3) at pos, 0 if none. Only ASCII letters lowercase to these letters, so
 * ASCII folding equals llama.cpp's unicode_tolower here. */
static int64_t match_contraction(const uint32_t *c, int64_t pos, int64_t ini, int64_t end, int ci) {
    if (c[pos] != '\'' || pos + 1 >= end) return 0;
    uint32_t a = cp_at(c, pos + 1, ini, end);
    if (ci && a >= 'A' && a <= 'Z') a += 32;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 >= end) return 0;
    uint32_t b = cp_at(c, pos + 2, ini, end);
    if (ci && b >= 'A' && b <= 'Z') b += 32;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* The regexes' last alternatives at pos, given the run of nws whitespace
 * codepoints there: \s+(?!\S) (the run but its last codepoint, when
 * something follows) | \s+ | one codepoint (a gap). Where the match ends. */
static int64_t match_ws_tail(const uint32_t *c, int64_t pos, int64_t ini, int64_t end, int64_t nws) {
    if (nws > 1 && cp_at(c, pos + nws, ini, end) != OUT_OF_RANGE) return pos + nws - 1;
    if (nws > 0) return pos + nws;
    return pos + 1;
}

/* One match of a hand-followed regex at pos (leftmost-first alternation):
 * where it ends (> pos). arg: the splitter's parameter. */
typedef int64_t (*RegexMatch)(const uint32_t *c, int64_t pos, int64_t ini, int64_t end, int64_t arg);

/* Splits [ini, end) into consecutive matches of `match`. */
static void split_matches(const uint32_t *c, int64_t ini, int64_t end, RegexMatch match, int64_t arg, Pieces *out) {
    int64_t prev = ini;
    for (int64_t pos = ini; pos < end;) {
        pos = match(c, pos, ini, end, arg);
        piece_add(out, &prev, pos);
    }
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static int64_t match_gpt2(const uint32_t *c, int64_t pos, int64_t ini, int64_t end, int64_t arg) {
    (void)arg;
    uint32_t cpt = c[pos];
    uint16_t flags = unicode_flags(cpt);
    int64_t k = match_contraction(c, pos, ini, end, 0);
    if (k) return pos + k;
    uint16_t f2 = cpt == ' ' ? fl_at(c, pos + 1, ini, end) : flags;
    if (f2 & F_L) { /* ' ?\p{L}+' */
        pos += cpt == ' ';
        while (f2 & F_L) f2 = fl_at(c, ++pos, ini, end);
        return pos;
    }
    if (f2 & F_N) { /* ' ?\p{N}+' */
        pos += cpt == ' ';
        while (f2 & F_N) f2 = fl_at(c, ++pos, ini, end);
        return pos;
    }
    if (!(f2 & (F_WS | F_L | F_N)) && f2) { /* ' ?[^\s\p{L}\p{N}]+' */
        pos += cpt == ' ';
        while (!(f2 & (F_WS | F_L | F_N)) && f2) f2 = fl_at(c, ++pos, ini, end);
        return pos;
    }
    int64_t nws = 0;
    while (fl_at(c, pos + nws, ini, end) & F_WS) nws++;
    return match_ws_tail(c, pos, ini, end, nws);
}

/* === Llama 3 / Qwen2 ================================================== */

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static int64_t match_llama3(const uint32_t *c, int64_t pos, int64_t ini, int64_t end, int64_t max_digits) {
    uint32_t cpt = c[pos];
    uint16_t flags = unicode_flags(cpt);
    int64_t k = match_contraction(c, pos, ini, end, 1);
    if (k) return pos + k;
    if (!(cpt == '\r' || cpt == '\n' || (flags & F_N))) {
        if ((flags & F_L) || (fl_at(c, pos + 1, ini, end) & F_L)) {
            pos++;
            while (fl_at(c, pos, ini, end) & F_L) pos++;
            return pos;
        }
    }
    if (flags & F_N) { /* at most max_digits (at least one) */
        int64_t run = pos;
        while (fl_at(c, pos, ini, end) & F_N)
            if (++pos - run >= max_digits) break;
        return pos;
    }
    uint16_t f2 = cpt == ' ' ? fl_at(c, pos + 1, ini, end) : flags;
    if (!(f2 & (F_WS | F_L | F_N)) && flags) {
        pos += cpt == ' ';
        while (!(f2 & (F_WS | F_L | F_N)) && f2) f2 = fl_at(c, ++pos, ini, end);
        uint32_t c2 = cp_at(c, pos, ini, end);
        while (c2 == '\r' || c2 == '\n') c2 = cp_at(c, ++pos, ini, end);
        return pos;
    }
    int64_t nws = 0, last_rn = 0;
    while (fl_at(c, pos + nws, ini, end) & F_WS) {
        uint32_t c2 = c[pos + nws];
        if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
        nws++;
    }
    if (last_rn > 0) return last_rn; /* \s*[\r\n]+ */
    return match_ws_tail(c, pos, ini, end, nws);
}

/* === character-class splitters ======================================== */

/* The codepoint std::wregex sees: non-ASCII whitespace becomes U+000B. */
static uint32_t wview(uint32_t cp) {
    return (cp > 0x7F && (unicode_flags(cp) & F_WS)) ? 0x0B : cp;
}

static int w_is_space(uint32_t cp) { /* std::wregex \s on the wview */
    cp = wview(cp);
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
}

/* [\p{P}\$\+<=>\^~\|] on llama.cpp's collapsed text: ASCII punctuation and
 * symbols except '`', and non-ASCII, non-whitespace \p{P}. */
static int is_default_punct(uint32_t cp) {
    if (cp < 128) {
        return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) ||
               (cp >= 0x5B && cp <= 0x5F) || (cp >= 0x7B && cp <= 0x7E);
    }
    uint16_t f = unicode_flags(cp);
    return !(f & F_WS) && (f & UNICODE_F_PUNCT);
}

/* \p{N} on the collapsed text. */
static int is_collapsed_number(uint32_t cp) {
    uint16_t f = unicode_flags(cp);
    if (cp >= 128 && (f & F_WS)) return 0;
    return (f & F_N) != 0;
}

/* [\p{P}\$\+<=>\^~\|`] (falcon): the default set plus '`'. */
static int is_falcon_punct(uint32_t cp) { return cp == '`' || is_default_punct(cp); }

/* \p{L} and \p{P} on the collapsed text (non-ASCII whitespace is U+000B there;
 * ASCII \p{P} is llama.cpp's list: !"#%&'()*,-./:;?@[\]_{}). */
static int is_collapsed_letter(uint32_t cp) {
    uint16_t f = unicode_flags(cp);
    if (cp >= 128 && (f & F_WS)) return 0;
    return (f & F_L) != 0;
}
static int is_collapsed_punct(uint32_t cp) {
    if (cp < 128) {
        return (cp >= 0x21 && cp <= 0x23) || (cp >= 0x25 && cp <= 0x2A) || (cp >= 0x2C && cp <= 0x2F) ||
               cp == 0x3A || cp == 0x3B || cp == 0x3F || cp == 0x40 || (cp >= 0x5B && cp <= 0x5D) ||
               cp == 0x5F || cp == 0x7B || cp == 0x7D;
    }
    uint16_t f = unicode_flags(cp);
    return !(f & F_WS) && (f & UNICODE_F_PUNCT);
}

static int is_ascii_digit(uint32_t cp) { return cp >= '0' && cp <= '9'; }
static int is_cr_lf(uint32_t cp) { return cp == '\r' || cp == '\n'; }
static int is_ds_letter(uint32_t cp) {
    return unicode_in_ranges(wview(cp), unicode_deepseek_letters, unicode_deepseek_letters_count);
}
static int is_ds_punct(uint32_t cp) {
    return unicode_in_ranges(wview(cp), unicode_deepseek_punct, unicode_deepseek_punct_count);
}
static int is_ds_cjk(uint32_t cp) {
    return unicode_in_ranges(wview(cp), unicode_deepseek_cjk, unicode_deepseek_cjk_count);
}

typedef int (*CpPred)(uint32_t cp);

/* [C]+ (plus=1) or [C] (plus=0): matches are runs (or single chars) of C. */
static void split_class_piece(const uint32_t *c, int64_t ini, int64_t end, CpPred pred, int plus,
                              Pieces *out) {
    int64_t prev = ini;
    for (int64_t pos = ini; pos < end;) {
        if (!pred(c[pos])) { pos++; continue; }
        int64_t q = pos + 1;
        if (plus) while (q < end && pred(c[q])) q++;
        piece_add(out, &prev, pos);
        piece_add(out, &prev, q);
        pos = q;
    }
    piece_add(out, &prev, end);
}

/* \s?[C]+ with leftmost-first search. */
static void split_opt_space_class_piece(const uint32_t *c, int64_t ini, int64_t end, CpPred pred,
                                        Pieces *out) {
    int64_t prev = ini;
    for (int64_t pos = ini; pos < end;) {
        int64_t start, q;
        if (pos + 1 < end && w_is_space(c[pos]) && pred(c[pos + 1])) {
            start = pos;
            q = pos + 1;
        } else if (pred(c[pos])) {
            start = q = pos;
        } else {
            pos++;
            continue;
        }
        while (q < end && pred(c[q])) q++;
        piece_add(out, &prev, start);
        piece_add(out, &prev, q);
        pos = q;
    }
    piece_add(out, &prev, end);
}

/* \s+$ : the trailing whitespace run of the piece. */
static void split_trailing_space_piece(const uint32_t *c, int64_t ini, int64_t end, Pieces *out) {
    int64_t prev = ini, t = end;
    while (t > ini && w_is_space(c[t - 1])) t--;
    piece_add(out, &prev, t);
    piece_add(out, &prev, end);
}

/* [0-9][0-9][0-9] : leftmost non-overlapping ASCII digit triples. */
static void split_digit3_piece(const uint32_t *c, int64_t ini, int64_t end, Pieces *out) {
    int64_t prev = ini;
    for (int64_t pos = ini; pos + 3 <= end;) {
        if (is_ascii_digit(c[pos]) && is_ascii_digit(c[pos + 1]) && is_ascii_digit(c[pos + 2])) {
            piece_add(out, &prev, pos);
            piece_add(out, &prev, pos + 3);
            pos += 3;
        } else {
            pos++;
        }
    }
    piece_add(out, &prev, end);
}

/* === chains =========================================================== */

typedef enum {
    SP_GPT2, SP_LLAMA3, SP_QWEN2, SP_DEFAULT_PUNCT, SP_NUMBERS, SP_DIGIT3,
    SP_CRLF, SP_DS_LETTERS, SP_DS_PUNCT, SP_TRAILING_SPACE, SP_DS_CJK,
    SP_DIGIT, SP_FALCON_PUNCT, SP_SPACE_LETTERS, SP_SPACE_PUNCT, SP_END
} Splitter;

static const Splitter chains[TOK_PRE_COUNT][8] = {
    [TOK_PRE_DEFAULT] = {SP_DEFAULT_PUNCT, SP_GPT2, SP_NUMBERS, SP_DIGIT3, SP_END},
    [TOK_PRE_GPT2] = {SP_GPT2, SP_END},
    [TOK_PRE_LLAMA3] = {SP_LLAMA3, SP_END},
    [TOK_PRE_QWEN2] = {SP_QWEN2, SP_END},
    [TOK_PRE_DEEPSEEK_LLM] = {SP_CRLF, SP_DS_LETTERS, SP_DS_PUNCT, SP_TRAILING_SPACE, SP_DS_CJK,
                              SP_NUMBERS, SP_END},
    [TOK_PRE_STARCODER] = {SP_DIGIT, SP_GPT2, SP_END},
    [TOK_PRE_FALCON] = {SP_FALCON_PUNCT, SP_GPT2, SP_DIGIT3, SP_END},
    [TOK_PRE_DEEPSEEK_CODER] = {SP_CRLF, SP_SPACE_LETTERS, SP_SPACE_PUNCT, SP_DS_CJK, SP_DIGIT, SP_END},
};

static void run_splitter(Splitter s, const uint32_t *c, int64_t ini, int64_t end, Pieces *out) {
    switch (s) {
    case SP_GPT2: split_matches(c, ini, end, match_gpt2, 0, out); break;
    case SP_LLAMA3: split_matches(c, ini, end, match_llama3, 3, out); break;
    case SP_QWEN2: split_matches(c, ini, end, match_llama3, 1, out); break;
    case SP_DEFAULT_PUNCT: split_class_piece(c, ini, end, is_default_punct, 1, out); break;
    case SP_NUMBERS: split_class_piece(c, ini, end, is_collapsed_number, 1, out); break;
    case SP_DIGIT3: split_digit3_piece(c, ini, end, out); break;
    case SP_CRLF: split_class_piece(c, ini, end, is_cr_lf, 0, out); break;
    case SP_DS_LETTERS: split_opt_space_class_piece(c, ini, end, is_ds_letter, out); break;
    case SP_DS_PUNCT: split_opt_space_class_piece(c, ini, end, is_ds_punct, out); break;
    case SP_TRAILING_SPACE: split_trailing_space_piece(c, ini, end, out); break;
    case SP_DS_CJK: split_class_piece(c, ini, end, is_ds_cjk, 1, out); break;
    case SP_DIGIT: split_class_piece(c, ini, end, is_collapsed_number, 0, out); break;
    case SP_FALCON_PUNCT: split_class_piece(c, ini, end, is_falcon_punct, 1, out); break;
    case SP_SPACE_LETTERS: split_opt_space_class_piece(c, ini, end, is_collapsed_letter, out); break;
    case SP_SPACE_PUNCT: split_opt_space_class_piece(c, ini, end, is_collapsed_punct, out); break;
    case SP_END: break;
    }
}

Status tok_pretok_split(TokPre pre, const uint32_t *cpts, int64_t n, int64_t **lens,
                        int64_t *n_words, Err *err) {
    *lens = NULL;
    *n_words = 0;
    if ((int)pre < 0 || pre >= TOK_PRE_COUNT) return err_set(err, ST_ERR_ARG, "unknown pre-tokenizer %d", (int)pre);
    if (n == 0) return ST_OK;
    Pieces a = {core_calloc((size_t)n, sizeof(int64_t)), 0};
    Pieces b = {core_calloc((size_t)n, sizeof(int64_t)), 0};
    if (!a.len || !b.len) {
        free(a.len);
        free(b.len);
        return err_set(err, ST_ERR_NOMEM, "pre-tokenizer: %lld codepoints", (long long)n);
    }
    a.len[0] = n;
    a.n = 1;
    for (const Splitter *s = chains[pre]; *s != SP_END; s++) {
        b.n = 0;
        int64_t start = 0;
        for (int64_t i = 0; i < a.n; i++) {
            run_splitter(*s, cpts, start, start + a.len[i], &b);
            start += a.len[i];
        }
        Pieces t = a;
        a = b;
        b = t;
    }
    free(b.len);
    *lens = a.len;
    *n_words = a.n;
    return ST_OK;
}

/* === names ============================================================ */

/* llama.cpp's llama-vocab.cpp name -> regex list and flags, for the lists
 * implemented here. */
static const TokPreName pre_names[] = {
    {"default", TOK_PRE_DEFAULT, 0, 0, 0},
    {"gpt-2", TOK_PRE_GPT2, 0, 0, 0}, {"gpt2", TOK_PRE_GPT2, 0, 0, 0}, {"phi-2", TOK_PRE_GPT2, 0, 0, 0},
    {"jina-es", TOK_PRE_GPT2, 0, 0, 0}, {"jina-de", TOK_PRE_GPT2, 0, 0, 0},
    {"gigachat", TOK_PRE_GPT2, 0, 0, 0}, {"jina-v2-es", TOK_PRE_GPT2, 0, 0, 0},
    {"jina-v2-de", TOK_PRE_GPT2, 0, 0, 0}, {"a.x-4.0", TOK_PRE_GPT2, 0, 0, 0},
    {"mellum", TOK_PRE_GPT2, 0, 0, 0}, {"modern-bert", TOK_PRE_GPT2, 0, 0, 0},
    {"exaone4", TOK_PRE_GPT2, 0, 0, 0}, {"mpt", TOK_PRE_GPT2, 0, 0, 0}, {"olmo", TOK_PRE_GPT2, 0, 0, 0},
    {"jais", TOK_PRE_GPT2, 0, 0, 0}, {"trillion", TOK_PRE_GPT2, 0, 0, 0},
    {"granite-docling", TOK_PRE_GPT2, 0, 0, 0},
    {"llama-bpe", TOK_PRE_LLAMA3, 1, 1, 0}, {"llama3", TOK_PRE_LLAMA3, 1, 1, 0},
    {"llama-v3", TOK_PRE_LLAMA3, 1, 1, 0}, {"falcon3", TOK_PRE_LLAMA3, 1, 1, 0},
    {"falcon-h1", TOK_PRE_LLAMA3, 1, 1, 0}, {"pixtral", TOK_PRE_LLAMA3, 1, 1, 0},
    {"midm-2.0", TOK_PRE_LLAMA3, 1, 1, 0}, {"lfm2", TOK_PRE_LLAMA3, 1, 1, 0},
    {"jina-v5-nano", TOK_PRE_LLAMA3, 1, 1, 0},
    {"dbrx", TOK_PRE_LLAMA3, 0, 0, 0}, {"smaug-bpe", TOK_PRE_LLAMA3, 0, 0, 0},
    {"chatglm-bpe", TOK_PRE_LLAMA3, 0, 0, 1}, {"glm4", TOK_PRE_LLAMA3, 0, 0, 1},
    {"qwen2", TOK_PRE_QWEN2, 0, 0, 0}, {"deepseek-r1-qwen", TOK_PRE_QWEN2, 0, 0, 0},
    {"kormo", TOK_PRE_QWEN2, 0, 0, 0}, {"f2llmv2", TOK_PRE_QWEN2, 0, 0, 0},
    {"stablelm2", TOK_PRE_QWEN2, 0, 0, 0}, {"megrez", TOK_PRE_QWEN2, 0, 0, 0},
    {"hunyuan", TOK_PRE_QWEN2, 0, 0, 0}, {"solar-open", TOK_PRE_QWEN2, 0, 0, 0},
    {"deepseek-llm", TOK_PRE_DEEPSEEK_LLM, 0, 0, 0},
    {"deepseek-coder", TOK_PRE_DEEPSEEK_CODER, 0, 0, 0},
    {"falcon", TOK_PRE_FALCON, 0, 0, 0},
    {"starcoder", TOK_PRE_STARCODER, 0, 0, 0}, {"refact", TOK_PRE_STARCODER, 0, 0, 0},
    {"command-r", TOK_PRE_STARCODER, 0, 0, 0}, {"smollm", TOK_PRE_STARCODER, 0, 0, 0},
    {"codeshell", TOK_PRE_STARCODER, 0, 0, 0}, {"exaone", TOK_PRE_STARCODER, 0, 0, 0},
    {"minerva-7b", TOK_PRE_STARCODER, 0, 0, 0},
};

const TokPreName *tok_pretok_lookup(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
        if (strlen(pre_names[i].name) == len && memcmp(pre_names[i].name, name, len) == 0) return &pre_names[i];
    return NULL;
}

int tok_pretok_parse(const char *name, size_t len, TokPre *out) {
    const TokPreName *p = tok_pretok_lookup(name, len);
    if (p) *out = p->pre;
    return p != NULL;
}

const char *tok_pretok_name(TokPre pre) {
    switch (pre) {
    case TOK_PRE_DEFAULT: return "default";
    case TOK_PRE_GPT2: return "gpt-2";
    case TOK_PRE_LLAMA3: return "llama-bpe";
    case TOK_PRE_QWEN2: return "qwen2";
    case TOK_PRE_DEEPSEEK_LLM: return "deepseek-llm";
    case TOK_PRE_STARCODER: return "starcoder";
    case TOK_PRE_FALCON: return "falcon";
    case TOK_PRE_DEEPSEEK_CODER: return "deepseek-coder";
    case TOK_PRE_COUNT: break;
    }
    return "?";
}

static const struct { const char *re; TokPre pre; } known_regexes[] = {
    {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", TOK_PRE_GPT2},
    {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", TOK_PRE_GPT2},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", TOK_PRE_LLAMA3},
    {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
     " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", TOK_PRE_LLAMA3},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
     "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", TOK_PRE_QWEN2},
    {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
     " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", TOK_PRE_QWEN2},
};

int tok_pretok_from_regex(const char *pattern, TokPre *out) {
    for (size_t i = 0; i < sizeof known_regexes / sizeof known_regexes[0]; i++) {
        if (strcmp(known_regexes[i].re, pattern) == 0) {
            *out = known_regexes[i].pre;
            return 1;
        }
    }
    return 0;
}

static int is_crlf_class(const char *p) { return strcmp(p, "[\\r\\n]") == 0 || strcmp(p, "[\r\n]") == 0; }

int tok_pretok_from_regex_list(const char *const *patterns, int n, TokPre *out) {
    if (n == 1) return tok_pretok_from_regex(patterns[0], out);
    if (n >= 2 && is_crlf_class(patterns[0])) {
        if (strcmp(patterns[1], "\\s?\\p{L}+") == 0) { *out = TOK_PRE_DEEPSEEK_CODER; return 1; }
        if (strncmp(patterns[1], "\\s?[A-Za-z", 10) == 0) { *out = TOK_PRE_DEEPSEEK_LLM; return 1; }
    }
    return 0;
}
