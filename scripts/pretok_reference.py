#!/usr/bin/env python3
"""Reference splits for the byte-level BPE pre-tokenizers (model/tok_pretok.c),
using the `regex` module (Debian: python3-regex) on the very regexes llama.cpp
lists for each tokenizer.ggml.pre. Like llama.cpp's unicode_regex_split, each
regex of a chain splits the pieces of the previous one and keeps both matches
and gaps; regexes without \\p{..} see non-ASCII whitespace as U+000B, because
llama.cpp runs those through std::wregex on such a substituted text.

    python3 scripts/pretok_reference.py PRE FILE   # piece lengths (codepoints), one per line
    python3 scripts/pretok_reference.py --cases     # the C table in tests/test_tokenizer.c

Used to check tok_pretok.c against an independent regex engine, e.g. on the
whole of wikitext-2 (all eight agree).
"""
import sys

import regex

R = {
 'gpt-2': [r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""],
 'llama-bpe': [r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""],
 'default': [r"[\p{P}\$\+<=>\^~\|]+", r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""", r"\p{N}+", r"[0-9][0-9][0-9]"],
 'starcoder': [r"\p{N}", r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""],
 'falcon': [r"[\p{P}\$\+<=>\^~\|`]+", r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""", r"[0-9][0-9][0-9]"],
 'deepseek-coder': ["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", r"\p{N}"],
 'qwen2': [r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""],
 'deepseek-llm': ["[\r\n]",
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+",
    "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+",
    "\\s+$", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", "\\p{N}+"],
}


def split(pre, text):
    pieces = [text]
    for r in R[pre]:
        rx = regex.compile(r)
        out = []
        for p in pieces:
            q = p if "\\p{" in r else "".join(
                "\x0b" if (ord(ch) > 127 and regex.match(r"\s", ch)) else ch for ch in p)
            last = 0
            for m in rx.finditer(q):
                if m.start() > last:
                    out.append(p[last:m.start()])
                if m.end() > m.start():
                    out.append(p[m.start():m.end()])
                last = m.end()
            if last < len(p):
                out.append(p[last:])
        pieces = out
    return pieces


cases=["Hello, y'all! I'M 'Ll 2024?? ½ \u0663\u0664 caf\u00e9 e\u0301 \U0001F600\U0001F600 --== \u00a0\u00a0x\u2003\u2003y \t\r\n\r\n  z  ",
       "\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e \uac00\ub098 \u0416\u0438\u0437\u043d\u044c's 3.14e-10 ``x`` $5+6<7>",
       "  \n\n\t end\u3000\u3000\u300c\u5f15\u7528\u300d!?\n"]


def cstr(s):
    out=''; prev_hex=False
    for x in s.encode('utf-8'):
        c=chr(x)
        if x<32 or x>126 or (prev_hex and c in '0123456789abcdefABCDEF'):
            out+='\\x%02X'%x; prev_hex=True
        elif c in '"\\':
            out+='\\'+c; prev_hex=False
        else:
            out+=c; prev_hex=False
    return out


def main():
    if sys.argv[1:] == ["--cases"]:
        for pre, enum in [("default", "TOK_PRE_DEFAULT"), ("gpt-2", "TOK_PRE_GPT2"),
                          ("llama-bpe", "TOK_PRE_LLAMA3"), ("qwen2", "TOK_PRE_QWEN2"),
                          ("deepseek-llm", "TOK_PRE_DEEPSEEK_LLM"), ("starcoder", "TOK_PRE_STARCODER"),
                          ("falcon", "TOK_PRE_FALCON"), ("deepseek-coder", "TOK_PRE_DEEPSEEK_CODER")]:
            for c in cases:
                print('        {%s, "%s",\n         "%s"},' % (enum, cstr(c), cstr("|".join(split(pre, c)))))
        return
    text = open(sys.argv[2], encoding="utf-8", newline="").read()
    for p in split(sys.argv[1], text):
        print(len(p))


main()
