#!/bin/sh
# qscope imatrix as a user meets it: a calibration written as GGUF and legacy
# .dat, --show on each saying what the file holds (a .dat stores calls per
# entry and no chunk size), and a model GGUF given by mistake refused as "not
# an importance matrix" without reading it into memory (a sparse 1.1 GB copy).
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K/stories260K-f32.gguf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "e2e_imatrix: $*" >&2; exit 1; }
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 600 "$1")"; }

"$Q" calib "$M" --text "$S/text/tinystories_sample.txt" --mode chunks --samples 4 --seqlen 64 \
  -o "$tmp/s.stats" >/dev/null 2>&1 || fail "calib"
"$Q" imatrix "$tmp/s.stats" -o "$tmp/im.gguf" 2>/dev/null || fail "imatrix -o gguf"
"$Q" imatrix "$tmp/s.stats" -o "$tmp/im.dat" --dat 2>/dev/null || fail "imatrix -o dat"
"$Q" imatrix --show "$tmp/im.gguf" >"$tmp/g.txt" || fail "--show gguf"
has "$tmp/g.txt" "35 entries, 4 chunks of 64 tokens"
has "$tmp/g.txt" "blk.0.attn_q.weight              64 ch         256 tok"
"$Q" imatrix --show "$tmp/im.dat" --stats "$tmp/s.stats" >"$tmp/d.txt" || fail "--show dat"
has "$tmp/d.txt" "35 entries, 4 chunks (legacy .dat: chunk size not stored)"
has "$tmp/d.txt" "blk.0.attn_q.weight              64 ch           4 calls"
if grep -q " tok " "$tmp/d.txt"; then fail ".dat entries labelled in tokens: $(head -3 "$tmp/d.txt")"; fi
# the .dat's means are the calibration's (values are mean x calls)
awk '/largest relative difference/ { exit !($NF < 1e-6) }' "$tmp/d.txt" || fail "$(tail -1 "$tmp/d.txt")"

cp "$M" "$tmp/big.gguf"
truncate -s 1100M "$tmp/big.gguf"
if "$Q" imatrix --show "$tmp/big.gguf" 2>"$tmp/err.txt"; then fail "a model accepted as an importance matrix"; fi
has "$tmp/err.txt" "not an importance matrix"
echo "e2e_imatrix: ok"
