#!/bin/sh
# Runs every libFuzzer harness of tests/fuzz/fuzz_readers.c for SECONDS each
# (default 1) on a seed corpus generated here with ./qscope from the shared
# stories260K model and synthesized files (nothing from ../shared is copied
# into the repo). Usage: tests/fuzz/run.sh [SECONDS] (from the repo root,
# after `make fuzz-bins`). Findings (crash-*, leak-*, timeout-*) stay in
# build-fuzz/findings/NAME and fail the run.
set -eu
SECS=${1:-1}
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
B=build-fuzz
M=$S/models/stories260K/stories260K-f32.gguf
T=$S/text/tinystories_sample.txt
fail() { echo "fuzz: $*" >&2; exit 1; }
[ -x "$Q" ] || fail "$Q is not built"

seeds=$B/seeds
rm -rf "$seeds"
for n in gguf safetensors tokenizer plan session stats qsq; do mkdir -p "$seeds/$n" "$B/corpus/$n" "$B/findings/$n"; done
# GGUF: a one-layer synthetic model (small enough to mutate quickly)
"$Q" synth --preset tiny --layers 1 --vocab 300 -o "$B/tiny.gguf" >/dev/null 2>&1 || fail "synth"
cp "$B/tiny.gguf" "$seeds/gguf/tiny.gguf"
# plan and session JSON
"$Q" plan "$M" --preset int4-rtn -o "$seeds/plan/int4-rtn.json" >/dev/null 2>&1 || fail "plan"
"$Q" plan "$M" --preset w8a8-token -o "$seeds/plan/w8a8.json" >/dev/null 2>&1 || fail "plan"
"$Q" session new "$M" -o "$seeds/session/new.json" >/dev/null 2>&1 || fail "session"
# stats of the synthetic model, and a quantized model for it
"$Q" calib "$B/tiny.gguf" --text "$T" -o "$B/tiny.qsst" --samples 1 --seqlen 16 >/dev/null 2>&1 || fail "calib"
cp "$B/tiny.qsst" "$seeds/stats/tiny.qsst"
"$Q" quant "$B/tiny.gguf" --preset int4-rtn -o "$seeds/qsq/tiny.qsq" >/dev/null 2>&1 || fail "quant"
# safetensors: two F32 tensors (the harness adds a config.json)
printf '{"model.embed_tokens.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "model.norm.weight": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}}' >"$B/hdr"
n=$(wc -c <"$B/hdr")
pad=$(( (8 - n % 8) % 8 ))
len=$((n + pad))
{
  printf "$(printf '\\%03o' $((len & 255)) $((len >> 8 & 255)) 0 0 0 0 0 0)"
  cat "$B/hdr"
  i=0; while [ $i -lt $pad ]; do printf ' '; i=$((i + 1)); done
  head -c 24 /dev/zero
} >"$seeds/safetensors/two.safetensors"
# tokenizer.json: a small byte-level BPE
cat >"$seeds/tokenizer/bpe.json" <<'EOF'
{"version": "1.0", "added_tokens": [{"id": 0, "content": "<s>", "special": true}],
 "normalizer": null, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
 "decoder": {"type": "ByteLevel"},
 "model": {"type": "BPE", "vocab": {"<s>": 0, "H": 1, "e": 2, "l": 3, "o": 4, "He": 5, "ll": 6, "Hell": 7, "Hello": 8},
           "merges": ["H e", "l l", "He ll", "Hell o"]}}
EOF

status=0
for n in gguf safetensors tokenizer plan session stats qsq; do
  bin=$B/fuzz_$n
  [ -x "$bin" ] || fail "$bin is not built (make fuzz-bins)"
  log=$B/findings/$n/log
  if QS_FUZZ_MODEL=$B/tiny.gguf \
     ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
     LSAN_OPTIONS=suppressions=$(pwd)/scripts/lsan.supp:print_suppressions=0 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$bin" -max_total_time="$SECS" -timeout=20 -rss_limit_mb=2048 -max_len=1048576 \
       -artifact_prefix="$B/findings/$n/" "$B/corpus/$n" "$seeds/$n" >"$log" 2>&1; then
    echo "fuzz_$n: $(grep -o 'Done [0-9]* runs' "$log" | tail -1 || echo ok)"
  else
    echo "fuzz_$n: FAILED (see $log)"; tail -30 "$log"; status=1
  fi
done
exit $status
