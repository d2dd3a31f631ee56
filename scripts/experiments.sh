#!/bin/sh
# The seed experiments of docs/experiments.md: W8A8 variants (naive per-tensor,
# per-token, SmoothQuant, spike-aware fp16/fp8, random-k controls) and
# RTN vs GPTQ vs AdaDim at int4/int3 (group 4: divides 64 and 172), on
# stories260K and on a synth model with planted activation spikes, evaluated
# with `qscope eval --json` on tinystories_sample.txt (ctx 128, all 14 chunks).
# Prints one markdown table per model. Usage: scripts/experiments.sh [OUTDIR]
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
T=$S/text/tinystories_sample.txt
OUT=${1:-build/exp}
TH=${THREADS:-2}
mkdir -p "$OUT"

num() { sed -n "s/.*\"$2\": \([-0-9.e+]*\).*/\1/p" "$1"; }
lastarr() { sed -n "s/.*\"$2\": \[\([^]]*\)\].*/\1/p" "$1" | awk -F', ' '{print $NF}'; }

# row LABEL JSON
row() {
  awk -v l="$1" -v p="$(num "$2" ppl)" -v b="$(num "$2" ppl_base)" -v k="$(num "$2" kld_mean)" \
      -v k99="$(num "$2" kld_p99)" -v t="$(num "$2" top1_agree)" -v w="$(num "$2" bpw)" -v e="$(lastarr "$2" layer_rel_err)" \
    'BEGIN { printf "| %s | %.4f | %+.2f%% | %.5f | %.4f | %.4f | %.3f | %.4f |\n", l, p, 100 * (p / b - 1), k, k99, t, w, e }'
}

# run MODEL TAG LABEL ARGS...: eval into $OUT/TAG.json and print a row
run() {
  m=$1 tag=$2 label=$3
  shift 3
  "$Q" eval "$m" --text "$T" --ctx 128 --threads "$TH" --no-speed --cache "$OUT/cache" --json "$@" \
    >"$OUT/$tag.json" 2>"$OUT/$tag.err" || { echo "eval $tag failed: $(cat "$OUT/$tag.err")" >&2; exit 1; }
  row "$label" "$OUT/$tag.json"
}

experiments() {
  m=$1 st=$2 name=$3
  echo
  echo "### $name"
  echo
  echo "| plan | PPL | ΔPPL | KLD mean | KLD p99 | top-1 | bpw | resid err (last block) |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  run "$m" "$name-fp32" "FP32 (reference)" --preset fp32
  run "$m" "$name-w8a8-tensor" "W8A8 naive (int8 per-OC W, per-tensor dynamic A)" --preset w8a8-tensor
  run "$m" "$name-w8a8-token" "W8A8 per-token A" --preset w8a8-token
  run "$m" "$name-w8a8-static" "W8A8 per-tensor static A (calibrated)" --preset w8a8-tensor --act-static --stats "$st"
  run "$m" "$name-smooth" "SmoothQuant W8A8 (α 0.5)" --preset smoothquant-w8a8 --stats "$st"
  run "$m" "$name-spike-fp16" "spike-aware W8A8, top-3 sites fp16" --preset spike-aware-w8a8 --stats "$st"
  run "$m" "$name-spike-fp8" "spike-aware W8A8, top-3 sites fp8-e4m3 (W and A)" --preset spike-aware-w8a8 \
    --spike-format fp8-e4m3 --stats "$st"
  for seed in 1 2 3; do
    run "$m" "$name-random-$seed" "random-k control (as many projections), seed $seed" --preset random-k --stats "$st" \
      --seed $seed
  done
  for b in 4 3; do
    run "$m" "$name-int$b-rtn" "int$b RTN g4 (OC, asym)" --preset int$b-rtn --group 4
    run "$m" "$name-int$b-gptq" "int$b GPTQ g4" --preset int$b-gptq --group 4 --stats "$st"
    run "$m" "$name-adadim-int$b" "int$b AdaDim (RTN) g4" --preset adadim-int$b --group 4 --stats "$st"
    run "$m" "$name-adadim-int$b-gptq" "int$b AdaDim (GPTQ) g4" --preset adadim-int$b-gptq --group 4 --stats "$st"
  done
}

# stories260K (real, trained)
M1=$S/models/stories260K/stories260K-f32.gguf
"$Q" calib "$M1" --text "$T" --samples 16 --seqlen 128 --no-sensitivity -o "$OUT/stories.qst" >"$OUT/stories.calib" 2>&1
# spiky synth (random weights, three planted BOS spikes)
M2=$OUT/spiky.gguf
"$Q" synth --preset tiny --spikes 1.down:7:1000,3.down:20:500,2.o:5:300 -o "$M2" >/dev/null 2>&1
"$Q" calib "$M2" --text "$T" --samples 16 --seqlen 128 --no-sensitivity -o "$OUT/spiky.qst" >"$OUT/spiky.calib" 2>&1

experiments "$M1" "$OUT/stories.qst" stories260K
experiments "$M2" "$OUT/spiky.qst" spiky-synth
