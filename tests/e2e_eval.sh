#!/bin/sh
# qscope plan -> eval end to end on stories260K: the plan JSON, eval --json's
# keys and values (fp16 ~ base; GPTQ below RTN at int4 with calibration), the
# reference cache, and clear non-zero exits naming the file on bad input.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K/stories260K-f32.gguf
T=$S/text/tinystories_sample.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "e2e_eval: $*" >&2; exit 1; }
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 600 "$1")"; }
num() { sed -n "s/.*\"$2\": \([-0-9.e+]*\).*/\1/p" "$1"; }
# cmp FILE KEY OP VALUE: awk comparison of the JSON number after "KEY":
cmp_num() {
  v=$(num "$1" "$2")
  [ -n "$v" ] || fail "$1 has no $2"
  awk -v v="$v" -v r="$4" "BEGIN { exit !(v $3 r) }" || fail "$2 = $v, expected $3 $4"
}

for c in plan quant eval; do
  "$Q" $c --help >"$tmp/help" || fail "$c --help exits non-zero"
  has "$tmp/help" "--preset NAME"
done
has "$tmp/help" "spike-aware-w8a8"

# plan -> JSON file
"$Q" plan "$M" --preset int4-rtn -o "$tmp/int4.json" 2>"$tmp/err" || fail "plan failed: $(cat "$tmp/err")"
grep -q '"schema_version":[[:space:]]*1,' "$tmp/int4.json" || fail "no schema_version 1"
grep -q '"name":[[:space:]]*"int4-rtn"' "$tmp/int4.json" || fail "no plan name"
has "$tmp/err" "note:"            # group 128 does not divide 64/172: fallback printed
has "$tmp/err" "bits per weight"

# eval --json with every key
"$Q" eval "$M" --plan "$tmp/int4.json" --text "$T" --ctx 128 --threads 2 --cache "$tmp/cache" --json \
  >"$tmp/e.json" 2>"$tmp/err" || fail "eval failed: $(cat "$tmp/err")"
for k in ppl ppl_base kld_mean kld_median kld_p90 kld_p99 kld_max top1_agree bpw bytes prefill_tps decode_tps \
         chunks tokens_scored notes layer_rel_err seconds; do
  has "$tmp/e.json" "\"$k\": "
done
cmp_num "$tmp/e.json" chunks "==" 14
cmp_num "$tmp/e.json" tokens_scored "==" 882
cmp_num "$tmp/e.json" ppl_base ">" 6.84
cmp_num "$tmp/e.json" ppl_base "<" 6.85
cmp_num "$tmp/e.json" kld_mean ">" 0
cmp_num "$tmp/e.json" prefill_tps ">" 0
ls "$tmp/cache"/evalref-*.bin >/dev/null || fail "no cached reference"

# fp16 by --preset, reference from the cache
"$Q" eval "$M" --preset fp16 --text "$T" --ctx 128 --threads 2 --cache "$tmp/cache" >"$tmp/out" 2>"$tmp/err" ||
  fail "eval fp16 failed: $(cat "$tmp/err")"
has "$tmp/err" "reference from cache"
has "$tmp/out" "top-1      1.0000"
"$Q" eval "$M" --preset fp16 --text "$T" --ctx 128 --threads 2 --no-cache --no-speed --json >"$tmp/f.json"
cmp_num "$tmp/f.json" kld_mean "<" 1e-5
cmp_num "$tmp/f.json" top1_agree ">=" 0.999

# calibration, then GPTQ beats RTN at int4 (g4 divides 64 and 172)
"$Q" calib "$M" --text "$T" --samples 16 --seqlen 128 --no-sensitivity -o "$tmp/s.qst" >/dev/null 2>&1 || fail "calib failed"
for p in int4-rtn int4-gptq; do
  "$Q" eval "$M" --preset $p --group 4 --stats "$tmp/s.qst" --text "$T" --ctx 128 --no-speed --cache "$tmp/cache" \
    --json >"$tmp/$p.json" 2>"$tmp/err" || fail "eval $p failed: $(cat "$tmp/err")"
done
r=$(num "$tmp/int4-rtn.json" kld_mean); g=$(num "$tmp/int4-gptq.json" kld_mean)
awk -v r="$r" -v g="$g" 'BEGIN { exit !(g < r) }' || fail "GPTQ KLD $g is not below RTN $r"
"$Q" eval "$M" --preset spike-aware-w8a8 --stats "$tmp/s.qst" --text "$T" --ctx 128 --no-speed --cache "$tmp/cache" \
  --json >"$tmp/sa.json" || fail "spike-aware eval failed"
has "$tmp/sa.json" "spike-aware: top 3 sites"
"$Q" quant "$M" --preset adadim-int4 --group 4 --stats "$tmp/s.qst" >"$tmp/q.out" || fail "quant failed"
has "$tmp/q.out" "adadim chose"
# quant -o stores the weights; eval --quant reproduces the preset's numbers without --stats
"$Q" quant "$M" --preset int4-gptq --group 4 --stats "$tmp/s.qst" -o "$tmp/m.qsqm" >"$tmp/qo.out" 2>&1 || fail "quant -o failed"
# the file's own size is printed beside the packed weights' (they differ), and the
# relative error is the squared one, labelled
has "$tmp/qo.out" "file $tmp/m.qsqm: $(wc -c <"$tmp/m.qsqm" | tr -d ' ') bytes"
has "$tmp/qo.out" "rel_err |W-Wq|^2/|W|^2"
"$Q" eval "$M" --quant "$tmp/m.qsqm" --text "$T" --ctx 128 --no-speed --cache "$tmp/cache" --json >"$tmp/qf.json" ||
  fail "eval --quant failed"
[ "$(num "$tmp/qf.json" kld_mean)" = "$(num "$tmp/int4-gptq.json" kld_mean)" ] || fail "eval --quant differs from the preset run"
head -c 1000 "$tmp/m.qsqm" >"$tmp/cut.qsqm"
if "$Q" eval "$M" --quant "$tmp/cut.qsqm" --text "$T" --ctx 128 2>"$tmp/err" >/dev/null; then fail "truncated file accepted"; fi
has "$tmp/err" "$tmp/cut.qsqm"

# errors: exit non-zero, name the file / the missing input
if "$Q" eval "$M" --preset int4-gptq --text "$T" --ctx 128 2>"$tmp/err" >/dev/null; then fail "gptq without stats succeeded"; fi
has "$tmp/err" "needs calibration statistics (H): pass --stats STATS"
printf '{"schema_version": 1, "rules": [{"pattern": "*.down", "format": "int9"}]}' >"$tmp/bad.json"
if "$Q" eval "$M" --plan "$tmp/bad.json" --text "$T" --ctx 128 2>"$tmp/err" >/dev/null; then fail "bad plan accepted"; fi
has "$tmp/err" "$tmp/bad.json: rules[0].format: 'int9' is not a format"
printf '{"schema_version": 1, "rules": [{"pattern": "40.down", "format": "int8"}]}' >"$tmp/l40.json"
if "$Q" quant "$M" --plan "$tmp/l40.json" 2>"$tmp/err" >/dev/null; then fail "layer 40 accepted"; fi
has "$tmp/err" "layer 40"
if "$Q" eval "$M" --plan "$tmp/missing.json" --text "$T" --ctx 128 2>"$tmp/err" >/dev/null; then fail "missing plan accepted"; fi
has "$tmp/err" "$tmp/missing.json"
if "$Q" plan "$M" --preset nope -o "$tmp/x.json" 2>"$tmp/err"; then fail "unknown preset accepted"; fi
has "$tmp/err" "nope"
if "$Q" plan "$M" --preset spike-aware-w8a8 2>"$tmp/err" >/dev/null; then fail "spike-aware without stats"; fi
has "$tmp/err" "--stats"

# A shipped GGUF (llama-quantize's own files in ../shared) evaluated against its base:
# --quant-gguf, or a GGUF given as --quant. PPL within 0.5 % of llama-perplexity's
# (float32 attention; llama.cpp also quantizes activations to 8-bit blocks).
Q4=$S/models/stories260K/stories260K-Q4_0-mixed.gguf
Q8=$S/models/stories260K/stories260K-Q8_0-mixed.gguf
"$Q" eval "$M" --quant-gguf "$Q4" --text "$T" --ctx 128 --no-speed --no-cache --json >"$tmp/g4.json" 2>"$tmp/err" \
  || fail "eval --quant-gguf: $(cat "$tmp/err")"
"$Q" eval "$M" --quant "$Q8" --text "$T" --ctx 128 --no-speed --no-cache --json >"$tmp/g8.json" 2>"$tmp/err" \
  || fail "eval --quant GGUF: $(cat "$tmp/err")"
has "$tmp/g4.json" '"plan": "stories260K-Q4_0-mixed.gguf"'
has "$tmp/g4.json" "Q4_0 x31"
cmp_num "$tmp/g4.json" kld_mean ">" 0.01
cmp_num "$tmp/g8.json" kld_mean "<" 0.005
cmp_num "$tmp/g4.json" bpw ">" 4.5
. "$(dirname "$0")/lib_llama.sh"
if [ -x "$LB/llama-perplexity" ]; then
  for f in g4:$Q4 g8:$Q8; do
    lp=$(llama_ppl "${f#*:}" "$T" 1)
    cmp_num "$tmp/${f%%:*}.json" ppl ">" "$(awk -v p="$lp" 'BEGIN { print p * 0.995 }')"
    cmp_num "$tmp/${f%%:*}.json" ppl "<" "$(awk -v p="$lp" 'BEGIN { print p * 1.005 }')"
  done
else
  echo "e2e_eval: note: $LB/llama-perplexity not found: the GGUF PPL is not compared with llama.cpp's"
fi
"$Q" synth --preset tiny --layers 1 -o "$tmp/one.gguf" >/dev/null 2>&1 || fail "synth"
if "$Q" eval "$M" --quant-gguf "$tmp/one.gguf" --text "$T" --ctx 128 2>"$tmp/err" >/dev/null; then
  fail "another model's GGUF accepted"
fi
has "$tmp/err" "the base model's is"
echo "e2e_eval: ok"
