#!/usr/bin/env python3
"""Generate model/unicode_data.c: the Unicode tables the tokenizers' hand-written
pre-tokenizers need (no regex library at run time).

    python3 scripts/gen_unicode.py [UnicodeData.txt [PropList.txt]] > model/unicode_data.c

Inputs default to the Debian package `unicode-data`
(/usr/share/unicode/UnicodeData.txt and PropList.txt).

Tables:
  - unicode_flag_ranges: sorted (first codepoint, flags) runs covering
    0..0x10FFFF. flags = one general-category group bit (L, N, P, S, M, Z, C,
    or UNDEFINED for unassigned code points) | WHITESPACE (the White_Space
    property from PropList.txt, which is what regex `\\s` means in Rust, Python
    and llama.cpp's tables).
  - the character classes spelled out in DeepSeek-LLM's pre-tokenizer regexes
    (as llama.cpp lists them for tokenizer.ggml.pre = "deepseek-llm"), expanded
    to sorted codepoint ranges.
"""
import sys

UNICODE_DATA = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/unicode/UnicodeData.txt"
PROPLIST = sys.argv[2] if len(sys.argv) > 2 else "/usr/share/unicode/PropList.txt"

# Must match model/unicode.h.
F_UNDEFINED, F_NUMBER, F_LETTER, F_SEPARATOR = 0x01, 0x02, 0x04, 0x08
F_MARK, F_PUNCT, F_SYMBOL, F_CONTROL, F_WHITESPACE = 0x10, 0x20, 0x40, 0x80, 0x100
GROUP = {"L": F_LETTER, "N": F_NUMBER, "Z": F_SEPARATOR, "M": F_MARK,
         "P": F_PUNCT, "S": F_SYMBOL, "C": F_CONTROL}
MAXCP = 0x110000


def load_categories():
    flags = [F_UNDEFINED] * MAXCP
    first = None
    with open(UNICODE_DATA, encoding="utf-8") as f:
        for line in f:
            fields = line.split(";")
            cp, name, cat = int(fields[0], 16), fields[1], fields[2]
            fl = F_UNDEFINED if cat == "Cn" else GROUP[cat[0]]
            if name.endswith(", First>"):
                first = cp
                continue
            if name.endswith(", Last>"):
                for c in range(first, cp + 1):
                    flags[c] = fl
                first = None
                continue
            flags[cp] = fl
    return flags


def load_whitespace(flags):
    with open(PROPLIST, encoding="utf-8") as f:
        for line in f:
            line = line.split("#")[0].strip()
            if not line:
                continue
            rng, prop = [x.strip() for x in line.split(";")]
            if prop != "White_Space":
                continue
            lo, _, hi = rng.partition("..")
            for c in range(int(lo, 16), int(hi or lo, 16) + 1):
                flags[c] |= F_WHITESPACE


def class_ranges(spec):
    """Expands a regex character-class body (literal chars and a-b ranges)."""
    out, i = [], 0
    while i < len(spec):
        lo = ord(spec[i])
        if i + 2 < len(spec) and spec[i + 1] == "-":
            hi = ord(spec[i + 2])
            i += 3
        else:
            hi = lo
            i += 1
        assert lo <= hi, (hex(lo), hex(hi))
        out.append((lo, hi))
    out.sort()
    merged = []
    for lo, hi in out:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


# DeepSeek-LLM pre-tokenizer classes (tokenizer.json of deepseek-llm; the same
# strings llama.cpp uses for LLAMA_VOCAB_PRE_TYPE_DEEPSEEK_LLM).
DEEPSEEK_LETTERS = (
    "A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1"
    "\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd"
    "\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d"
    "\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4"
    "\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec"
    "\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128"
    "\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b"
    "\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787"
    "\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a"
    "\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2"
    "\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943"
)
DEEPSEEK_PUNCT = "!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002"
DEEPSEEK_CJK = "\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff"


def emit_class(name, spec):
    rng = class_ranges(spec)
    print(f"const UnicodeRange {name}[] = {{")
    for lo, hi in rng:
        print(f"    {{0x{lo:05X}, 0x{hi:05X}}},")
    print("};")
    print(f"const int64_t {name}_count = {len(rng)};\n")


def main():
    flags = load_categories()
    load_whitespace(flags)
    runs = []
    for cp in range(MAXCP):
        if not runs or runs[-1][1] != flags[cp]:
            runs.append((cp, flags[cp]))
    print("/* GENERATED by scripts/gen_unicode.py from the Debian package unicode-data")
    print(" * (/usr/share/unicode/UnicodeData.txt and PropList.txt). Do not edit:")
    print(" *     python3 scripts/gen_unicode.py > model/unicode_data.c */")
    print('#include "model/unicode_data.h"\n')
    print("/* (first codepoint, flags) runs; each run lasts until the next entry's first. */")
    print("const UnicodeFlagRun unicode_flag_runs[] = {")
    for cp, fl in runs:
        print(f"    {{0x{cp:05X}, 0x{fl:03X}}},")
    print("};")
    print(f"const int64_t unicode_flag_runs_count = {len(runs)};\n")
    emit_class("unicode_deepseek_letters", DEEPSEEK_LETTERS)
    emit_class("unicode_deepseek_punct", DEEPSEEK_PUNCT)
    emit_class("unicode_deepseek_cjk", DEEPSEEK_CJK)


main()
