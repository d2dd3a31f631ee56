#!/bin/sh
# qscope info on the four forms of stories260K: the same config in text and
# JSON, the memory each form costs, and clear non-zero exits on bad input.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "e2e_info: $*" >&2; exit 1; }
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 600 "$1")"; }

for form in gguf hf bf16 l2c; do
  case $form in
    gguf) "$Q" info "$M/stories260K-f32.gguf" --json >"$tmp/$form.json" ;;
    hf) "$Q" info "$S/models/stories260K-hf" --json >"$tmp/$form.json" ;;
    bf16) "$Q" info "$S/models/stories260K-hf-bf16-sharded" --json >"$tmp/$form.json" ;;
    l2c) "$Q" info "$M/stories260K.bin" --tokenizer "$M/tok512.bin" --json >"$tmp/$form.json" ;;
  esac
  for kv in '"arch": "llama"' '"dim": 64,' '"hidden_dim": 172,' '"n_layers": 5,' '"n_heads": 8,' \
            '"n_kv_heads": 4,' '"head_dim": 8,' '"vocab_size": 512,' '"rope_theta": 10000,' \
            '"norm_eps": 1e-05,' '"tokenizer": "spm' '"fingerprint": "'; do
    has "$tmp/$form.json" "$kv"
  done
done
has "$tmp/gguf.json" '"format": "gguf"'
has "$tmp/gguf.json" '"rope_style": "norm"'
has "$tmp/gguf.json" '"tied_embeddings": false, "params": 292800, "file_bytes": 1185376, "owned_bytes": 0,'
has "$tmp/gguf.json" '{"name": "blk.0.attn_k.weight", "kind": "attention", "layer": 0, "type": "F32", "shape": [32, 64], "bytes": 8192, "in_place": true}'
has "$tmp/hf.json" '"format": "hf"'
has "$tmp/hf.json" '"rope_style": "neox"'
has "$tmp/hf.json" '"tied_embeddings": true, "params": 260032, "file_bytes": 1044992, "owned_bytes": 0,'
has "$tmp/bf16.json" '"params": 260032, "file_bytes": 524984, "owned_bytes": 2816,'
has "$tmp/bf16.json" '"type": "BF16", "shape": [512, 64], "bytes": 65536, "in_place": true}'
has "$tmp/bf16.json" '"type": "BF16", "shape": [64], "bytes": 128, "in_place": false}'
has "$tmp/l2c.json" '"format": "llama2c"'
has "$tmp/l2c.json" '"context_length": 512,'
has "$tmp/l2c.json" '{"name": "layers.4.w2", "kind": "ffn", "layer": 4, "type": "F32", "shape": [64, 172], "bytes": 44032, "in_place": true}'

"$Q" info "$M/stories260K-Q4_0-mixed.gguf" >"$tmp/q4.txt"
has "$tmp/q4.txt" 'format       GGUF, architecture llama'
has "$tmp/q4.txt" 'blk.0.ffn_down.weight'
has "$tmp/q4.txt" 'Q4_0'
has "$tmp/q4.txt" 'total: 48 tensors, 292800 params'
has "$tmp/q4.txt" 'owned 0 B (0 tensors copied or converted'

"$Q" info --help >"$tmp/help.txt"
has "$tmp/help.txt" 'usage: qscope info MODEL'

# Errors: stderr, non-zero exit.
# A mistyped subcommand names the command meant (it read as a missing model file).
if "$Q" evl "$M/stories260K-f32.gguf" 2>"$tmp/err.txt"; then fail "qscope evl succeeded"; fi
has "$tmp/err.txt" "unknown command 'evl' (did you mean 'qscope eval'?"
# A llama2.c .bin finds its tokenizer beside it (tok512.bin); a copy alone says what it looked for.
"$Q" info "$M/stories260K.bin" >"$tmp/l2c.txt" 2>"$tmp/err.txt" || fail "llama2.c .bin without --tokenizer: $(cat "$tmp/err.txt")"
cp "$M/stories260K.bin" "$tmp/alone.bin"
if "$Q" info "$tmp/alone.bin" 2>"$tmp/err.txt"; then fail "llama2.c without a tokenizer succeeded"; fi
has "$tmp/err.txt" 'looks like a llama2.c checkpoint: pass --tokenizer TOK.bin (no tok512.bin or tokenizer.bin beside it)'
if "$Q" info "$S/vocab/ggml-vocab-llama-spm.gguf" 2>"$tmp/err.txt"; then fail "vocab-only GGUF loaded"; fi
has "$tmp/err.txt" 'vocab-only GGUF; use it with `qscope tokenize`'
if "$Q" info "$tmp/nope.gguf" 2>"$tmp/err.txt"; then fail "missing file succeeded"; fi
has "$tmp/err.txt" 'nope.gguf'
if "$Q" info --frobnicate 2>"$tmp/err.txt"; then fail "unknown option accepted"; fi
has "$tmp/err.txt" "unknown option '--frobnicate'"
echo "e2e_info: ok"
