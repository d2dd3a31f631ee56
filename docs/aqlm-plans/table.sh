#!/bin/sh
# Reproduces the PPL/KLD table of docs/aqlm.md: stories260K on
# tinystories_sample.txt (llama.cpp protocol, ctx 256, 7 chunks), calibrated
# on the same text (qscope calib defaults: 16 random 256-token sequences),
# AQLM vs GPTQ vs RTN at 2 and 3 code bits per weight.
# Usage: sh docs/aqlm-plans/table.sh   (from the repo root; QSCOPE, QS_SHARED override)
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
D=$(dirname "$0")
M=$S/models/stories260K/stories260K.bin
TK="--tokenizer $S/models/stories260K/tok512.bin"
T=$S/text/tinystories_sample.txt
OUT=${AQLM_TABLE_DIR:-build/aqlm-table}
mkdir -p "$OUT"
"$Q" calib "$M" $TK --text "$T" -o "$OUT/stats" --threads 2 >/dev/null 2>&1
field() { sed -n "s/.*\"$2\": \([^,]*\),.*/\1/p" "$1"; }
echo "| plan | code bits/w | PPL | KLD mean | KLD p99 | top-1 | bits/w (all weights) | quantize s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for p in int2-rtn-g32 int2-gptq-g32 aqlm-1x8g4 aqlm-2x8g8 int3-rtn-g32 int3-gptq-g32 aqlm-1x12g4 aqlm-3x8g8; do
  j=$OUT/$p.json
  "$Q" eval "$M" $TK --plan "$D/$p.json" --stats "$OUT/stats" --text "$T" --ctx 256 --threads 2 --no-speed --json >"$j" 2>/dev/null
  case $p in int2*|aqlm-1x8g4|aqlm-2x8g8) cb=2 ;; *) cb=3 ;; esac
  awk -v p="$p" -v cb="$cb" -v ppl="$(field "$j" ppl)" -v k="$(field "$j" kld_mean)" -v k99="$(field "$j" kld_p99)" \
      -v t1="$(field "$j" top1_agree)" -v b="$(field "$j" bpw)" -v qs="$(field "$j" quantize_seconds)" \
      'BEGIN { printf "| %s | %d | %.4f | %.4f | %.3f | %.3f | %.3f | %.2f |\n", p, cb, ppl, k, k99, t1, b, qs }'
done
echo "base (fp32) PPL: $(field "$OUT/aqlm-2x8g8.json" ppl_base)"
