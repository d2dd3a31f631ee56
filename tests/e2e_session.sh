#!/bin/sh
# Sessions from the command line: record a session by replaying a hand-written
# action list on stories260K, replay it with --check (passes at the recorded
# thread count; a tampered result fails with a diff and exit 1), replay its
# actions on another model of the same architecture and on a smaller one
# (a clear error for the missing layer), and take its plan to llama.cpp,
# GPTQModel and llm-compressor and back.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K
T=$S/text/tinystories_sample.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "e2e_session: $*" >&2; exit 1; }
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 800 "$1")"; }

for c in replay plan-export plan-import session; do
  "$Q" $c --help >"$tmp/help.txt" || fail "$c --help"
  has "$tmp/help.txt" "usage: qscope $c"
done

cat >"$tmp/script.json" <<EOF
{"model": "$M/stories260K-f32.gguf", "actions": [
 {"action": "calibrate", "args": {"text": "$T", "samples": 4, "seqlen": 64, "seed": 5}},
 {"action": "apply_preset", "args": {"preset": "int4-gptq", "group": 32}},
 {"action": "set_cell", "args": {"layer": 4, "proj": "down", "fields": ["format", "group"], "entry": {"format": "int8", "sym": true, "group_dim": "oc", "group": 0}}},
 {"action": "evaluate", "args": {"text": "$T", "ctx": 64, "chunks": 2}},
 {"action": "apply_preset", "args": {"preset": "w8a8-token", "plan": "w8"}},
 {"action": "evaluate", "args": {"text": "$T", "ctx": 64, "chunks": 2}},
 {"action": "select_plan", "args": {"plan": "int4-gptq"}}
]}
EOF
"$Q" replay "$tmp/script.json" -o "$tmp/s.json" --threads 2 >"$tmp/rec.txt" 2>"$tmp/rec.err" || fail "record: $(cat "$tmp/rec.err")"
has "$tmp/rec.txt" "replayed 7 actions (7 run, 0 skipped) with 2 threads"
has "$tmp/s.json" '"schema_version":	1'
has "$tmp/s.json" '"kind":	"qscope-session"'
has "$tmp/s.json" '"current_plan":	"int4-gptq"'
has "$tmp/s.json" '"kld_mean":'
has "$tmp/s.json" '"threads":	2'
[ -f "$tmp/s.json.d/replay-1.stats" ] || fail "no stats file in the work directory"

# Replay --check: bit-identical at the recorded 2 threads; JSON summary.
"$Q" replay "$tmp/s.json" --check >"$tmp/chk.txt" 2>"$tmp/chk.err" || fail "check: $(cat "$tmp/chk.txt" "$tmp/chk.err")"
has "$tmp/chk.txt" "check: OK"
has "$tmp/chk.txt" "bit-identical at the recorded thread count"
"$Q" replay "$tmp/s.json" --check --json >"$tmp/chk.json" 2>/dev/null || fail "check --json"
has "$tmp/chk.json" '"ok": true'
has "$tmp/chk.json" '"differences": []'

# A tampered kld_mean: exit 1 and a diff naming result, key, both values.
sed '0,/"kld_mean":	[0-9.e-]*/s//"kld_mean":	0.5/' "$tmp/s.json" >"$tmp/bad.json"
if "$Q" replay "$tmp/bad.json" --check >"$tmp/bad.txt" 2>/dev/null; then fail "tampered session passed --check"; fi
has "$tmp/bad.txt" "check: FAILED, 1 of"
has "$tmp/bad.txt" "result 1: kld_mean"
has "$tmp/bad.txt" "recorded 0.5  replayed"

# Another model of the same architecture (llama.cpp's Q8_0 conversion): runs, and says so.
"$Q" replay "$tmp/s.json" --model "$M/stories260K-Q8_0-mixed.gguf" -o "$tmp/q8.json" >"$tmp/q8.txt" 2>"$tmp/q8.err" \
  || fail "--model: $(cat "$tmp/q8.err")"
has "$tmp/q8.err" "changed since the session was saved"
has "$tmp/q8.json" "stories260K-Q8_0-mixed.gguf"
# A one-layer model of the same shape: the recorded cell edit on layer 4 is a clear error.
"$Q" synth --preset tiny --layers 1 -o "$tmp/one.gguf" >/dev/null 2>&1 || fail "synth"
if "$Q" replay "$tmp/s.json" --model "$tmp/one.gguf" >"$tmp/one.txt" 2>"$tmp/one.err"; then fail "missing layer accepted"; fi
has "$tmp/one.err" "actions[2] (set_cell)"
has "$tmp/one.err" "layer 4 does not exist"

# Export the session's current plan; import the llama.cpp file back.
"$Q" plan-export "$tmp/s.json" --to llamacpp -o "$tmp/tt.txt" 2>"$tmp/exp.err" || fail "plan-export: $(cat "$tmp/exp.err")"
has "$tmp/tt.txt" '^blk\.0\.attn_q\.weight$=q4_1'
has "$tmp/tt.txt" '^blk\.3\.ffn_down\.weight$=f16'
has "$tmp/exp.err" "not expressible"
# The consumer: llama-quantize accepts the file and gives every tensor the type it names
# (Q8_0 base: an entry equal to the base type falls to llama.cpp's mixture rules, which keep Q8_0).
LB=${LLAMA_BIN:-build/llama.cpp/bin}
if [ -x "$LB/llama-quantize" ]; then
  # the int4 plan (q4_1 and f16) and the w8 plan (q8_0, the base type itself, and f16)
  "$Q" plan-export "$tmp/s.json" --name w8 --to llamacpp -o "$tmp/tt8.txt" 2>/dev/null || fail "plan-export w8"
  has "$tmp/tt8.txt" '^blk\.0\.attn_q\.weight$=q8_0'
  for f in tt tt8; do
    "$LB/llama-quantize" --tensor-type-file "$tmp/$f.txt" "$M/stories260K-f32.gguf" "$tmp/lq.gguf" Q8_0 \
      >"$tmp/lq.log" 2>&1 || fail "llama-quantize refused $f.txt: $(tail -5 "$tmp/lq.log")"
    "$Q" info "$tmp/lq.gguf" >"$tmp/lq.info" || fail "info on llama-quantize's output"
    n=0
    while IFS= read -r entry; do
      name=$(printf '%s' "${entry%%=*}" | tr -d '^$\\')
      want=$(printf '%s' "${entry#*=}" | tr 'a-z' 'A-Z')
      got=$(awk -v n="$name" '$1 == n { print $2 }' "$tmp/lq.info")
      [ "$got" = "$want" ] || fail "llama-quantize gave $name type '$got', $f.txt says $want"
      n=$((n + 1))
    done <"$tmp/$f.txt"
    [ "$n" -ge 36 ] || fail "only $n tensor types checked in $f.txt"
  done
else
  echo "e2e_session: note: $LB/llama-quantize not found (build llama.cpp's tools or set LLAMA_BIN): skipped"
fi
# an unwritable -o fails with the path named and a non-zero exit
if "$Q" plan-export "$tmp/s.json" --to llamacpp -o "$tmp/nodir/tt.txt" 2>"$tmp/nodir.err"; then
  fail "unwritable -o accepted"
fi
has "$tmp/nodir.err" "cannot write $tmp/nodir/tt.txt"
"$Q" plan-import "$tmp/tt.txt" --from llamacpp --model "$M/stories260K-f32.gguf" -o "$tmp/imp.json" 2>/dev/null \
  || fail "plan-import"
"$Q" plan-export "$tmp/imp.json" --model "$M/stories260K-f32.gguf" --to llamacpp -o "$tmp/tt2.txt" 2>/dev/null \
  || fail "re-export"
cmp -s "$tmp/tt.txt" "$tmp/tt2.txt" || fail "llama.cpp export -> import -> export differs"
"$Q" plan-export "$tmp/s.json" --name w8 --to gptqmodel >"$tmp/g.json" 2>"$tmp/g.err" || fail "gptqmodel"
has "$tmp/g.json" '"bits":	8'
has "$tmp/g.err" "GPTQModel is weight-only"
"$Q" plan-export "$tmp/s.json" --name w8 --to llmcompressor >"$tmp/lc.yaml" 2>/dev/null || fail "llmcompressor"
has "$tmp/lc.yaml" "strategy: token"
has "$tmp/lc.yaml" "QuantizationModifier:"

# session new / show.
"$Q" session new "$M/stories260K-f32.gguf" -o "$tmp/empty.json" || fail "session new"
"$Q" session show "$tmp/empty.json" >"$tmp/show0.txt" || fail "session show (new)"
has "$tmp/show0.txt" "calibrate  (not yet)"
"$Q" session show "$tmp/s.json" >"$tmp/show.txt" || fail "session show"
has "$tmp/show.txt" "plan       int4-gptq  (current)"
has "$tmp/show.txt" "actions    7 (last: select_plan)"
[ "$(grep -c '^           [0-9]' "$tmp/show.txt")" = 2 ] || fail "session show: not 2 result rows"

# Errors: non-zero exits naming the problem.
if "$Q" replay "$tmp/nope.json" 2>"$tmp/e1"; then fail "missing file accepted"; fi
has "$tmp/e1" "nope.json"
head -c 300 "$tmp/s.json" >"$tmp/trunc.json"
if "$Q" replay "$tmp/trunc.json" 2>"$tmp/e2"; then fail "truncated session accepted"; fi
has "$tmp/e2" "trunc.json"
if "$Q" plan-export "$tmp/s.json" --to nowhere 2>"$tmp/e3"; then fail "bad target accepted"; fi
has "$tmp/e3" "nowhere"
sed 's/"schema_version":	1/"schema_version":	9/' "$tmp/s.json" >"$tmp/v9.json"
if "$Q" session show "$tmp/v9.json" 2>"$tmp/e4"; then fail "newer schema accepted"; fi
has "$tmp/e4" "newer qscope"
# A session whose model is gone: show keeps working and says so; replay names the file.
sed "s|$M/stories260K-f32.gguf|/nonexistent/gone.gguf|" "$tmp/s.json" >"$tmp/gone.json"
"$Q" session show "$tmp/gone.json" >"$tmp/gone.txt" 2>"$tmp/gone.err" || fail "show with a missing model"
has "$tmp/gone.txt" "[missing]"
has "$tmp/gone.err" "/nonexistent/gone.gguf"
if "$Q" replay "$tmp/gone.json" 2>"$tmp/e5"; then fail "replay without its model succeeded"; fi
has "$tmp/e5" "/nonexistent/gone.gguf"
echo "e2e_session: ok"
