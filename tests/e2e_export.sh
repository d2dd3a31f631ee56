#!/bin/sh
# qscope export from the command line on stories260K: a plan's GGUF evaluates
# exactly as the plan (eval --quant-gguf = eval --plan, same PPL and KLD), an
# entry no ggml type holds is refused with a non-zero exit and no file, and
# --fallback f16 writes it.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K/stories260K-f32.gguf
T=$S/text/tinystories_sample.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "e2e_export: $*" >&2; exit 1; }
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 800 "$1")"; }
val() { sed -n "s/.*\"$2\": \([-0-9.e+]*\).*/\1/p" "$1"; }

"$Q" export --help >"$tmp/help" || fail "export --help"
has "$tmp/help" "usage: qscope export MODEL"
cat >"$tmp/p.json" <<EOP
{"schema_version": 1, "name": "sym32",
 "default": {"format": "int4", "sym": true, "group_dim": "oc", "group": 32},
 "embed": {"format": "q8_0"},
 "rules": [{"pattern": "*.down", "fields": ["format", "group"], "format": "fp16"}]}
EOP
"$Q" export "$M" --plan "$tmp/p.json" -o "$tmp/out.gguf" 2>"$tmp/err" || fail "export: $(cat "$tmp/err")"
has "$tmp/err" "37 tensors: 37 exact, 0 approximate, 0 not expressible"
has "$tmp/err" "re-read and compared"
"$Q" eval "$M" --plan "$tmp/p.json" --text "$T" --ctx 128 --no-speed --no-cache --json >"$tmp/a.json" 2>/dev/null \
  || fail "eval --plan"
"$Q" eval "$M" --quant-gguf "$tmp/out.gguf" --text "$T" --ctx 128 --no-speed --no-cache --json >"$tmp/b.json" \
  2>/dev/null || fail "eval --quant-gguf"
for k in ppl kld_mean kld_max top1_agree; do
  [ "$(val "$tmp/a.json" $k)" = "$(val "$tmp/b.json" $k)" ] || fail "$k: plan $(val "$tmp/a.json" $k), export $(val "$tmp/b.json" $k)"
done
# GPTQ solved on ggml grids (q4_0, q5_1 blocks): the export is the plan, bit for bit
"$Q" calib "$M" --text "$T" --samples 8 --seqlen 64 -o "$tmp/s.qss" >/dev/null 2>&1 || fail "calib"
cat >"$tmp/g.json" <<EOP
{"schema_version": 1, "name": "gptq-q4_0",
 "default": {"format": "q4_0", "method": "gptq"},
 "embed": {"format": "q8_0"},
 "rules": [{"pattern": "2.*", "fields": ["format"], "format": "q5_1"},
           {"pattern": "*.down", "fields": ["format", "method"], "format": "fp16"}]}
EOP
"$Q" export "$M" --plan "$tmp/g.json" --stats "$tmp/s.qss" -o "$tmp/g.gguf" 2>"$tmp/err" || fail "gptq export: $(cat "$tmp/err")"
has "$tmp/err" "37 tensors: 37 exact"
"$Q" eval "$M" --plan "$tmp/g.json" --stats "$tmp/s.qss" --text "$T" --ctx 128 --no-speed --no-cache --json \
  >"$tmp/a.json" 2>/dev/null || fail "eval --plan gptq"
"$Q" eval "$M" --quant-gguf "$tmp/g.gguf" --text "$T" --ctx 128 --no-speed --no-cache --json >"$tmp/b.json" \
  2>/dev/null || fail "eval --quant-gguf gptq"
for k in ppl kld_mean kld_max top1_agree; do
  [ "$(val "$tmp/a.json" $k)" = "$(val "$tmp/b.json" $k)" ] || fail "gptq $k: plan $(val "$tmp/a.json" $k), export $(val "$tmp/b.json" $k)"
done
# int4 asymmetric groups of 64 (the preset): mins are not fp16 values -> refused, nothing written
if "$Q" export "$M" --preset int4-rtn -o "$tmp/r.gguf" 2>"$tmp/err"; then fail "unholdable plan exported"; fi
has "$tmp/err" "no ggml type holds as planned"
has "$tmp/err" "is not an fp16 value"
[ ! -e "$tmp/r.gguf" ] || fail "a refused export left a file"
"$Q" export "$M" --preset int4-rtn --fallback f16 -o "$tmp/r.gguf" 2>"$tmp/err" || fail "--fallback f16: $(cat "$tmp/err")"
"$Q" info "$tmp/r.gguf" >"$tmp/info" || fail "info on the fallback export"
grep -q "blk.0.attn_q.weight *F16" "$tmp/info" || fail "fallback f16 not applied: $(head -20 "$tmp/info")"
if "$Q" export "$M" --preset int4-rtn --fallback maybe -o "$tmp/x.gguf" 2>"$tmp/err"; then fail "bad --fallback"; fi
has "$tmp/err" "'maybe' is not nearest or f16"
echo "e2e_export: ok"
