#!/bin/sh
# qscope tokenize: vocab-only GGUFs (no weights), the three stories260K
# tokenizers agreeing on a whole file, --json, --no-bos, and clear non-zero
# exits on bad input.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "e2e_tokenize: $*" >&2; exit 1; }
eq() { [ "$1" = "$2" ] || fail "$3: got '$1', want '$2'"; }

# Vocab-only GGUFs (llama.cpp's own vectors): SPM adds BOS by default, GPT-2 does not.
eq "$("$Q" tokenize "$S/vocab/ggml-vocab-llama-spm.gguf" --text ' Hello World!')" "1 29871 15043 2787 29991" "llama-spm"
eq "$("$Q" tokenize "$S/vocab/ggml-vocab-llama-spm.gguf" --text ' Hello World!' --no-bos)" "29871 15043 2787 29991" "llama-spm --no-bos"
eq "$("$Q" tokenize "$S/vocab/ggml-vocab-gpt-2.gguf" --text "Hello, y'all! How are you")" "15496 11 331 6 439 0 1374 389 345" "gpt-2"
"$Q" tokenize "$S/vocab/ggml-vocab-gpt-2.gguf" --text ' Hello' --json >"$tmp/j"
grep -qF '"n_tokens": 1, "ids": [18435], "pieces": ["ĠHello"]' "$tmp/j" || fail "json: $(cat "$tmp/j")"

# The same ids from the GGUF, the llama2.c tokenizer and the HF tokenizer.json.
T=$S/text/tinystories_sample.txt
"$Q" tokenize "$M/stories260K-f32.gguf" --file "$T" >"$tmp/gguf"
"$Q" tokenize "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --file "$T" >"$tmp/l2c"
"$Q" tokenize "$S/models/stories260K-hf" --file "$T" >"$tmp/hf"
cmp -s "$tmp/gguf" "$tmp/l2c" || fail "llama2.c ids differ from the GGUF's"
cmp -s "$tmp/gguf" "$tmp/hf" || fail "HF ids differ from the GGUF's"
eq "$(wc -w <"$tmp/gguf" | tr -d ' ')" "1882" "sample token count (BOS + 1881)"
# (the file starts with a newline; a plain-Python llama2.c-style encoder gives the same)
eq "$(cut -d' ' -f1-6 "$tmp/gguf")" "1 410 13 441 416 331" "sample start"

# Bad input: non-zero exit and a message naming the problem.
if "$Q" tokenize "$M/stories260K.bin" --text x 2>"$tmp/e"; then fail "llama2.c without --tokenizer succeeded"; fi
grep -q -- "--tokenizer" "$tmp/e" || fail "no hint about --tokenizer: $(cat "$tmp/e")"
if "$Q" tokenize "$tmp/nonexistent.gguf" --text x 2>"$tmp/e"; then fail "missing model succeeded"; fi
grep -q "nonexistent.gguf" "$tmp/e" || fail "missing file not named: $(cat "$tmp/e")"
printf '{"model": ' >"$tmp/tokenizer.json"
if "$Q" tokenize "$tmp" --text x 2>"$tmp/e"; then fail "broken tokenizer.json succeeded"; fi
grep -q "tokenizer.json: not valid JSON" "$tmp/e" || fail "bad JSON message: $(cat "$tmp/e")"
if "$Q" tokenize "$M/stories260K-f32.gguf" 2>/dev/null; then fail "no --text/--file succeeded"; fi
"$Q" tokenize --help | grep -q "usage: qscope tokenize" || fail "--help"
echo "e2e_tokenize: ok"
