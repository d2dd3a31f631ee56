#!/bin/sh
# AQLM through the CLI on stories260K: the presets in `plan --help`, the
# down_proj fallback note and exact bits of `plan --preset aqlm-2x8`, eval of
# that plan (LUT kernels named, PPL/KLD where docs/aqlm.md measured them and
# far below int2 GPTQ at the same code bits), and malformed aqlm plan entries.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K/stories260K.bin
TK="--tokenizer $S/models/stories260K/tok512.bin"
T=$S/text/tinystories_sample.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "e2e_aqlm: $*" >&2; exit 1; }
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 600 "$1")"; }
num() { sed -n "s/.*\"$2\": \([-0-9.e+]*\).*/\1/p" "$1"; }
cmp_num() {
  v=$(num "$1" "$2")
  [ -n "$v" ] || fail "$1 has no $2"
  awk -v v="$v" -v r="$4" "BEGIN { exit !(v $3 r) }" || fail "$1: $2 = $v, expected $3 $4"
}

"$Q" plan --help >"$tmp/help" || fail "plan --help exits non-zero"
for p in aqlm-2x8 aqlm-1x16 aqlm-1x8; do has "$tmp/help" "$p"; done

# 2x8g8 with the stated down_proj fallback; linear-layer bits as docs/aqlm.md computes them
"$Q" plan "$M" $TK --preset aqlm-2x8 -o "$tmp/a28.json" 2>"$tmp/err" || fail "plan failed: $(cat "$tmp/err")"
has "$tmp/err" "*.down: aqlm 2x8g8 -> 1x8g4 (8 does not divide 172; same 2 code bits)"
has "$tmp/err" "(linear layers 11.2514)"
grep -q '"aqlm":[[:space:]]*"2x8g8"' "$tmp/a28.json" || fail "plan JSON lacks aqlm 2x8g8"
grep -q '"aqlm":[[:space:]]*"1x8g4"' "$tmp/a28.json" || fail "plan JSON lacks the 1x8g4 fallback"

"$Q" calib "$M" $TK --text "$T" -o "$tmp/stats" --threads 2 >/dev/null 2>&1 || fail "calib failed"
ev() {
  "$Q" eval "$M" $TK "$@" --stats "$tmp/stats" --text "$T" --ctx 256 --threads 2 --no-speed --cache "$tmp/cache" --json
}
ev --plan "$tmp/a28.json" >"$tmp/a28.out" 2>"$tmp/err" || fail "eval aqlm-2x8 failed: $(cat "$tmp/err")"
has "$tmp/a28.out" "kernels: aqlm-lut x35"
has "$tmp/a28.out" "1x8g4"
cmp_num "$tmp/a28.out" ppl_base ">" 6.897
cmp_num "$tmp/a28.out" ppl_base "<" 6.899
# Measured 9.453 (docs/aqlm.md); deterministic for a seed, the bound leaves room for BLAS rounding.
cmp_num "$tmp/a28.out" ppl "<" 10.0
cmp_num "$tmp/a28.out" ppl ">" 8.5
cmp_num "$tmp/a28.out" kld_mean "<" 0.40

# int2 GPTQ at the same code bits is far worse (measured 306)
"$Q" eval "$M" $TK --plan docs/aqlm-plans/int2-gptq-g32.json --stats "$tmp/stats" --text "$T" --ctx 256 --threads 2 \
  --no-speed --cache "$tmp/cache" --json >"$tmp/g2.out" 2>"$tmp/err" || fail "eval int2 gptq failed: $(cat "$tmp/err")"
a=$(num "$tmp/a28.out" ppl)
g=$(num "$tmp/g2.out" ppl)
awk -v a="$a" -v g="$g" 'BEGIN { exit !(a * 5 < g) }' || fail "aqlm ppl $a not well below int2 gptq ppl $g"

# (aqlm-1x16 is not evaluated here: 2^16 codewords per matrix make its
# k-means take minutes; its gather kernel is covered by test_aqlm.)

# A malformed aqlm entry names the rule and the reason, exit non-zero
sed -e 's/"1x8g4"/"1x8g8"/' "$tmp/a28.json" >"$tmp/bad.json"
if ev --plan "$tmp/bad.json" >/dev/null 2>"$tmp/err"; then fail "bad aqlm group accepted"; fi
has "$tmp/err" "does not divide"
has "$tmp/err" "172"
sed -e 's/"2x8g8"/"3x16g8"/' "$tmp/a28.json" >"$tmp/bad2.json"
if ev --plan "$tmp/bad2.json" >/dev/null 2>"$tmp/err"; then fail "aqlm 3x16 accepted"; fi
has "$tmp/err" "3x16"
echo "e2e_aqlm: ok"
