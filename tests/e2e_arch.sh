#!/bin/sh
# The other architectures from the command line: qscope synth --arch writes
# each layout, info reports what the loader read (arch, RoPE style and
# scaling, head_dim, biases), a plan runs on them, bad --arch / --head-dim
# exit 2, plan-export refuses phi3's stacked tensors by name instead of writing
# names that match nothing, and export stacks them again. (Numbers against llama.cpp and a float64
# reference: tests/test_arch.c.)
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "e2e_arch: $*" >&2; exit 1; }
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 600 "$1")"; }

for a in llama3 qwen2 phi3; do
  "$Q" synth --preset tiny --arch $a -o "$tmp/$a.gguf" 2>/dev/null || fail "synth --arch $a"
done
"$Q" synth --preset tiny --arch llama3 --head-dim 16 -o "$tmp/hd.gguf" 2>/dev/null || fail "synth --head-dim 16"

"$Q" info "$tmp/llama3.gguf" >"$tmp/l3.txt"
has "$tmp/l3.txt" "architecture llama"
has "$tmp/l3.txt" "rope scaling per-pair frequency factors (Llama 3.1): 1 1 2.695 8"
"$Q" info "$tmp/qwen2.gguf" --json >"$tmp/qw.json"
has "$tmp/qw.json" '"arch": "qwen2"'
has "$tmp/qw.json" '"rope_style": "neox"'
has "$tmp/qw.json" '"name": "blk.0.attn_q.bias", "kind": "attention", "layer": 0, "type": "F32", "shape": [64]'
"$Q" info "$tmp/phi3.gguf" >"$tmp/phi.txt"
has "$tmp/phi.txt" "blk.0.attn_qkv.weight[k]"
has "$tmp/phi.txt" "blk.4.ffn_up.weight[gate]"
"$Q" info "$tmp/hd.gguf" --json >"$tmp/hd.json"
has "$tmp/hd.json" '"head_dim": 16,'
has "$tmp/hd.json" '"name": "blk.0.attn_q.weight", "kind": "attention", "layer": 0, "type": "F32", "shape": [128, 64]'

# a plan runs on each (biases and stacked rows included)
for a in llama3 qwen2 phi3; do
  "$Q" eval "$tmp/$a.gguf" --preset w8a8-tensor --text "$S/text/tinystories_sample.txt" --ctx 64 --chunks 2 \
    --json >"$tmp/$a.eval.json" 2>/dev/null || fail "eval on $a"
  has "$tmp/$a.eval.json" '"ppl": '
done

# bad input: exit 2 with the reason
set +e
"$Q" synth --preset tiny --arch gemma -o "$tmp/x.gguf" 2>"$tmp/err.txt"; rc=$?
set -e
[ $rc -eq 2 ] || fail "--arch gemma exit $rc"
has "$tmp/err.txt" "unknown arch 'gemma' (known: llama, llama3, qwen2, phi3)"
set +e
"$Q" synth --preset tiny --arch phi3 --head-dim 16 -o "$tmp/x.gguf" 2>"$tmp/err.txt"; rc=$?
set -e
[ $rc -ne 0 ] || fail "phi3 --head-dim 16 accepted"
has "$tmp/err.txt" "phi3 needs n_heads * head_dim = dim"

"$Q" plan "$tmp/phi3.gguf" --preset w8a8-tensor -o "$tmp/phi3.plan.json" 2>/dev/null || fail "plan on phi3"
set +e
"$Q" plan-export "$tmp/phi3.plan.json" --model "$tmp/phi3.gguf" --to llamacpp >"$tmp/out.txt" 2>"$tmp/err.txt"; rc=$?
set -e
[ $rc -ne 0 ] || fail "plan-export on phi3 succeeded"
has "$tmp/err.txt" "phi3 stores q/k/v and gate/up as stacked tensors"
# export stacks phi3's split sites back into attn_qkv / ffn_up (tests/test_gguf_export.c runs llama.cpp on it)
"$Q" export "$tmp/phi3.gguf" --preset fp16 -o "$tmp/phi3-x.gguf" >"$tmp/out.txt" 2>"$tmp/err.txt" || fail "export of phi3"
has "$tmp/err.txt" "37 tensors: 37 exact"
"$Q" info "$tmp/phi3-x.gguf" --json >"$tmp/phx.json"
has "$tmp/phx.json" '"name": "blk.0.attn_qkv.weight[k]", "kind": "attention", "layer": 0, "type": "F16", "shape": [32, 64]'
# refused before the plan is built or anything quantized: no 'needs --stats' for
# a GPTQ preset, no empty "0 tensors" report line
set +e
# an HF Mistral with a sliding window (llama.cpp's llama architecture has none)
mkdir "$tmp/mistral"
for f in model.safetensors tokenizer.json tokenizer_config.json; do ln -s "$(cd "$S/models/stories260K-hf" && pwd)/$f" "$tmp/mistral/$f"; done
sed 's/"LlamaForCausalLM"/"MistralForCausalLM"/; s/^{/{"sliding_window": 32,/' "$S/models/stories260K-hf/config.json" \
  >"$tmp/mistral/config.json"
"$Q" export "$tmp/mistral" --preset int4-gptq -o "$tmp/hf-x.gguf" >"$tmp/out.txt" 2>"$tmp/err2.txt"; rc2=$?
set -e
[ $rc2 -ne 0 ] || fail "export of a sliding-window HF checkpoint succeeded"
has "$tmp/err2.txt" "sliding window 32: llama.cpp's llama architecture has none"
if grep -q "needs calibration\|0 tensors" "$tmp/err2.txt"; then
  fail "export quantized (or reported) before refusing the source: $(cat "$tmp/err2.txt")"; fi
# qwen2's biases are carried over into an exported GGUF, which loads with them
"$Q" export "$tmp/qwen2.gguf" --preset fp16 -o "$tmp/qwen2-x.gguf" >/dev/null 2>&1 || fail "export of qwen2"
"$Q" info "$tmp/qwen2-x.gguf" --json >"$tmp/qwx.json"
has "$tmp/qwx.json" '"name": "blk.4.attn_v.bias", "kind": "attention", "layer": 4, "type": "F32", "shape": [32]'
echo "e2e_arch: ok"
