#!/bin/sh
# qscope synth: deterministic bytes, a model the rest of qscope loads,
# tokenizes and scores, storage types, planted spikes found by calib/report,
# and clear non-zero exits on bad input.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "e2e_synth: $*" >&2; exit 1; }
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 600 "$1")"; }

"$Q" synth --help >"$tmp/help.txt" || fail "--help exit status"
has "$tmp/help.txt" "ITEM = LAYER.SITE:CHANNEL[:FACTOR]"
has "$tmp/help.txt" "tinyllama"

# same options, same bytes; another seed, other bytes
"$Q" synth --preset tiny -o "$tmp/a.gguf" --seed 5 2>/dev/null
"$Q" synth --preset tiny -o "$tmp/b.gguf" --seed 5 2>/dev/null
cmp -s "$tmp/a.gguf" "$tmp/b.gguf" || fail "same seed gave different files"
"$Q" synth --preset tiny -o "$tmp/c.gguf" --seed 6 2>/dev/null
cmp -s "$tmp/a.gguf" "$tmp/c.gguf" && fail "different seeds gave the same file"
[ "$(wc -c <"$tmp/a.gguf")" -eq 1185664 ] || fail "tiny F32 size $(wc -c <"$tmp/a.gguf")"

"$Q" info "$tmp/a.gguf" --json >"$tmp/info.json"
for kv in '"arch": "llama"' '"dim": 64,' '"hidden_dim": 172,' '"n_layers": 5,' '"n_heads": 8,' \
          '"n_kv_heads": 4,' '"vocab_size": 512,' '"context_length": 512,' '"rope_theta": 10000,' \
          '"tokenizer": "spm (llama), 512 tokens"' '"tied_embeddings": false' '"params": 292800,'; do
  has "$tmp/info.json" "$kv"
done

# the vocabulary is a working SentencePiece vocab: pieces ids 259 "▁",
# 260+k "▁<letter k>", 286+k letters, 385.. "▁aa", "▁ab", ...; bytes fall back to <0xNN> = 3+NN
[ "$("$Q" tokenize "$tmp/a.gguf" --text "the cat")" = "1 279 293 290 437 305" ] || fail "tokenize 'the cat'"
[ "$("$Q" tokenize "$tmp/a.gguf" --text "ab" --no-bos)" = "386" ] || fail "tokenize 'ab'"
[ "$("$Q" tokenize "$tmp/a.gguf" --text "é")" = "1 259 198 172" ] || fail "tokenize byte fallback"

# it runs: a random model is near-uniform over 512 tokens
"$Q" ppl "$tmp/a.gguf" --text "$S/text/tinystories_sample.txt" --ctx 64 --chunks 2 --json >"$tmp/ppl.json" 2>/dev/null
ppl=$(sed -n 's/.*"ppl": \([0-9.]*\),.*/\1/p' "$tmp/ppl.json")
awk -v p="$ppl" 'BEGIN { exit !(p > 100 && p < 3000) }' || fail "ppl $ppl"

# storage types: q8_0 falls back to F16 where rows are not whole 32-blocks
"$Q" synth --preset tiny -o "$tmp/q.gguf" --type q8_0 2>/dev/null
"$Q" info "$tmp/q.gguf" --json >"$tmp/q.json"
has "$tmp/q.json" '{"name": "blk.0.attn_q.weight", "kind": "attention", "layer": 0, "type": "Q8_0"'
has "$tmp/q.json" '{"name": "blk.0.ffn_down.weight", "kind": "ffn", "layer": 0, "type": "F16"'
has "$tmp/q.json" '{"name": "blk.0.ffn_norm.weight", "kind": "norm", "layer": 0, "type": "F32"'
"$Q" synth --preset tiny -o "$tmp/h.gguf" --type f16 2>/dev/null
"$Q" info "$tmp/h.gguf" --json >"$tmp/h.json"
has "$tmp/h.json" '{"name": "blk.0.ffn_gate.weight", "kind": "ffn", "layer": 0, "type": "F16"'
"$Q" synth --preset tiny -o "$tmp/bf.gguf" --type bf16 2>/dev/null
"$Q" info "$tmp/bf.gguf" --json >"$tmp/bf.json"
has "$tmp/bf.json" '{"name": "blk.0.ffn_down.weight", "kind": "ffn", "layer": 0, "type": "BF16"'
has "$tmp/bf.json" '{"name": "blk.0.ffn_norm.weight", "kind": "norm", "layer": 0, "type": "F32"'

# planted spikes are what calibration ranks first
"$Q" synth --preset tiny -o "$tmp/s.gguf" --spikes 1.down:7:200,3.o:20:200 2>/dev/null
"$Q" calib "$tmp/s.gguf" --text "$S/text/tinystories_sample.txt" --samples 4 --seqlen 128 \
  --no-sensitivity --no-h -o "$tmp/s.stats" >/dev/null 2>&1 || fail "calib on the spiked model"
"$Q" report --stats "$tmp/s.stats" --what spikes --top 2 >"$tmp/rep.txt" 2>/dev/null || fail "report"
sed -n 's/^ *\([12]\) *\([0-9]*\) *\([a-z_]*\) .*'"'"'<s>'"'"'@0, ch \([0-9]*\).*/\1 \2 \3 \4/p' "$tmp/rep.txt" | sort >"$tmp/top.txt"
printf '1 1 down 7\n2 3 o 20\n' >"$tmp/want.txt"
cmp -s "$tmp/top.txt" "$tmp/want.txt" || fail "spike ranking: $(cat "$tmp/rep.txt")"

# errors: non-zero exit and a message naming the problem
if "$Q" synth --preset tiny -o /nonexistent-qscope-dir/x.gguf 2>"$tmp/err.txt"; then fail "unwritable path accepted"; fi
has "$tmp/err.txt" "/nonexistent-qscope-dir/x.gguf"
if "$Q" synth --preset gpt5 -o "$tmp/x.gguf" 2>"$tmp/err.txt"; then fail "unknown preset accepted"; fi
has "$tmp/err.txt" "unknown preset 'gpt5'"
if "$Q" synth --preset tiny -o "$tmp/x.gguf" --spikes 9.down:1 2>"$tmp/err.txt"; then fail "bad spike accepted"; fi
has "$tmp/err.txt" "layer 9, the model has 5 layers"
if "$Q" synth --preset tiny -o "$tmp/x.gguf" --type q4_k 2>"$tmp/err.txt"; then fail "bad type accepted"; fi
has "$tmp/err.txt" "--type"
if "$Q" synth --preset tiny 2>/dev/null; then fail "missing -o accepted"; fi
[ ! -e "$tmp/x.gguf" ] || fail "a failed synth left a file"
echo "e2e_synth: ok"
