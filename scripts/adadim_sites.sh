#!/bin/sh
# The AdaDim check of docs/experiments.md: on stories260K, quantize ONE
# projection at a time (every other weight fp32) with asymmetric RTN at BITS
# (default 4), group 4, OC groups vs IC groups, and evaluate the model's KLD
# against fp32 (`qscope eval --json`, ctx 128, all 14 chunks of
# tinystories_sample.txt). Beside each pair it prints AdaDim's own calibrated
# output errors tr(dW H dWᵀ)/tr(W H Wᵀ) for the same site (from the notes of an
# adadim-intBITS --group 4 eval), then whole-model rows: all OC, all IC,
# AdaDim, and AdaDim with q and k forced to OC.
# Usage: scripts/adadim_sites.sh [OUTDIR] [BITS]    (~35 s at 2 threads)
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
T=$S/text/tinystories_sample.txt
M=$S/models/stories260K/stories260K-f32.gguf
OUT=${1:-build/adadim}
B=${2:-4}
TH=${THREADS:-2}
mkdir -p "$OUT"
ST=$OUT/stories.qst
[ -f "$ST" ] || "$Q" calib "$M" --text "$T" --samples 16 --seqlen 128 --no-sensitivity -o "$ST" >"$OUT/calib.log" 2>&1

num() { sed -n "s/.*\"$2\": \([-0-9.e+]*\).*/\1/p" "$1"; }

# row LABEL OUT: a whole-model table row
row() { printf '| %s | %.5f | %.4f |\n' "$1" "$(num "$2" kld_mean)" "$(num "$2" ppl)"; }

# plan FILE DEFAULT_ENTRY RULES_JSON: a plan with fp16 embedding and head (as the presets)
plan() {
  printf '{"schema_version": 1, "name": "%s", "default": %s,\n "embed": {"format": "fp16"}, "output": {"format": "fp16"},\n "rules": [%s]}\n' \
    "$(basename "$1" .json)" "$2" "$3" >"$1"
}

# ev PLAN [ARGS]: eval, JSON into PLAN's .out
ev() {
  pf=$1
  shift
  "$Q" eval "$M" --text "$T" --ctx 128 --threads "$TH" --no-speed --json --cache "$OUT/cache" --plan "$pf" "$@" \
    >"${pf%.json}.out" 2>"${pf%.json}.err" || { echo "eval $pf failed: $(cat "${pf%.json}.err")" >&2; exit 1; }
}

E="\"format\": \"int$B\", \"sym\": false, \"group\": 4"
plan "$OUT/adadim$B.json" "{$E, \"method\": \"adadim\"}" ""
ev "$OUT/adadim$B.json" --stats "$ST"

echo "| site | KLD OC | KLD IC | IC/OC | output error OC | output error IC | IC/OC |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for l in 0 1 2 3 4; do
  for p in q k v o gate up down; do
    for d in oc ic; do
      plan "$OUT/site-$l.$p-$d$B.json" '{"format": "fp32"}' \
        "{\"pattern\": \"$l.$p\", \"fields\": [\"format\", \"group\", \"method\"], $E, \"group_dim\": \"$d\", \"method\": \"rtn\"}"
      ev "$OUT/site-$l.$p-$d$B.json"
    done
    ko=$(num "$OUT/site-$l.$p-oc$B.out" kld_mean)
    ki=$(num "$OUT/site-$l.$p-ic$B.out" kld_mean)
    errs=$(grep -o "\"$l\.$p: adadim chose [a-z]* (output error oc [0-9.e+-]*, ic [0-9.e+-]* relative)" "$OUT/adadim$B.out" |
      sed 's/.*output error oc \([0-9.e+-]*\), ic \([0-9.e+-]*\) relative)/\1 \2/')
    echo "$l.$p $ko $ki $errs" | awk '{ printf "| %s | %.5f | %.5f | %.2f | %.3e | %.3e | %.2f |\n", $1, $2, $3, $3 / $2, $4, $5, $5 / $4 }'
  done
done

echo
echo "| plan (int$B g4 asym) | KLD mean | PPL |"
echo "| --- | --- | --- |"
for d in oc ic; do
  plan "$OUT/all-$d$B.json" "{$E, \"group_dim\": \"$d\", \"method\": \"rtn\"}" ""
  ev "$OUT/all-$d$B.json"
  row "all $d (RTN)" "$OUT/all-$d$B.out"
done
row "AdaDim (RTN)" "$OUT/adadim$B.out"
plan "$OUT/adadim-qkoc$B.json" "{$E, \"method\": \"adadim\"}" \
  "{\"pattern\": \"*.q,k\", \"fields\": [\"method\", \"group\"], $E, \"group_dim\": \"oc\", \"method\": \"rtn\"}"
ev "$OUT/adadim-qkoc$B.json" --stats "$ST"
row "AdaDim (RTN), q and k forced OC" "$OUT/adadim-qkoc$B.out"
