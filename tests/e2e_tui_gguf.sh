#!/bin/sh
# Shipped GGUFs in the workbench's results table (issue 12, evaluate any
# shipped GGUF), in tmux on stories260K (100x30): G asks for a file and
# evaluates llama-quantize's Q4_0 and Q8_0 files of stories260K (in
# ../shared) against the base with the plans' protocol; the rows match
# `qscope eval --quant-gguf`; the detail names the file and its types; a
# GGUF row has no plan to load or compare cell by cell, a missing file is
# refused; the session records both and replay --check evaluates them again.
# Skips without tmux.
set -eu
E2E_NAME=e2e_tui_gguf
. "$(dirname "$0")/tmux_lib.sh"
Q4=$(cd "$S/models/stories260K" && pwd)/stories260K-Q4_0-mixed.gguf
Q8=$(cd "$S/models/stories260K" && pwd)/stories260K-Q8_0-mixed.gguf
[ -f "$Q4" ] && [ -f "$Q8" ] || { echo "e2e_tui_gguf: SKIPPED: no $Q4"; exit 0; }
# num FILE FIELD PATTERN: field FIELD of the first line of FILE matching PATTERN
num() { awk -v f="$2" "/$3/ { print \$f; exit }" "$1"; }
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t) }'; }
json() { sed -n "s/.*\"$2\": \\([-0-9.e+]*\\).*/\\1/p" "$1"; }

start 100 30 "'$M' --text '$T' --ctx 128 --threads 2 --session '$tmp/s.json'"
wait_for "session: s.json" 15
keys 5
wait_for "No evaluation yet"
keys G
wait_for "GGUF of this model to evaluate"
tm send-keys -t e2e -l "$tmp/missing.gguf"
keys Enter
wait_for "missing.gguf: No such file"
k=0
for f in "$Q4" "$Q8"; do
  k=$((k + 1))
  keys G
  wait_for "GGUF of this model to evaluate"
  tm send-keys -t e2e -l "$f"
  keys Enter
  wait_for "#$k $(basename "$f"): PPL" 60
done
screen >"$tmp/table.txt"
# one text for both: evaluation scores the chunks the settings line names (the rest calibrates)
nch=$(sed -n 's/^ *ctx 128, \([0-9]*\) of [0-9]* chunks of .* (the rest calibrates).*/\1/p' "$tmp/table.txt" | head -1)
[ -n "$nch" ] || fail "the evaluation settings line does not say which chunks it scores"
for k in 4 8; do
  f=$Q4; [ $k = 8 ] && f=$Q8
  "$Q" eval "$M" --quant-gguf "$f" --text "$T" --ctx 128 --chunks "$nch" --no-speed --json >"$tmp/e$k.json" 2>/dev/null || fail "qscope eval --quant-gguf $f"
  row="^ *[0-9]+\\*? +stories260K-Q${k}_0-mixed\\.gguf"
  ppl=$(num "$tmp/table.txt" 3 "$row")
  kld=$(num "$tmp/table.txt" 5 "$row")
  bpw=$(num "$tmp/table.txt" 8 "$row")
  close "$ppl" "$(json "$tmp/e$k.json" ppl)" 0.00006 || fail "Q${k}_0 PPL $ppl is not eval's $(json "$tmp/e$k.json" ppl)"
  close "$kld" "$(json "$tmp/e$k.json" kld_mean)" 0.000006 || fail "Q${k}_0 KLD $kld is not eval's $(json "$tmp/e$k.json" kld_mean)"
  close "$bpw" "$(json "$tmp/e$k.json" bpw)" 0.006 || fail "Q${k}_0 bpw $bpw is not eval's $(json "$tmp/e$k.json" bpw)"
done
# the detail: the file and its tensor types
keys Enter
wait_for "Result #1 stories260K-Q4_0-mixed.gguf"
types=$(sed -n 's/.*weights from [^:]*: \([^(]*\) (decoded.*/\1/p' "$tmp/e4.json" | sed 's/ *$//')
[ -n "$types" ] || fail "qscope eval --quant-gguf names no types: $(cat "$tmp/e4.json")"
has "GGUF: $types; evaluation"
screen | grep -E 'L0\.q +Q4_0 ' >/dev/null || fail "the detail does not give L0.q's type Q4_0"
keys L
wait_for "result #1 is a GGUF file, not a plan: nothing to load"
keys Escape
# the two files diffed: the metrics, no cells
keys Space j Space d
wait_for "Diff: #1 stories260K-Q4_0-mixed.gguf  vs  #2 stories260K-Q8_0-mixed.gguf"
has "is a GGUF file, not a plan: cells not compared"
k4=$(num "$tmp/table.txt" 5 "^ *1\\*? +stories260K-Q4_0")
k8=$(num "$tmp/table.txt" 5 "^ *2\\*? +stories260K-Q8_0")
dk=$(screen | awk '$1 == "KLD" { print $4; exit }')
close "$dk" "$(awk -v a="$k4" -v b="$k8" 'BEGIN { print b - a }')" 0.000011 || fail "dKLD '$dk' is not $k8 - $k4"
keys Escape
quit
grep -q "\"gguf\":.*\"$Q4\"" "$tmp/s.json" || fail "the session does not record the GGUF"
"$Q" replay "$tmp/s.json" --check -o "$tmp/r.json" >"$tmp/replay.out" 2>&1 || {
  cat "$tmp/replay.out" >&2; fail "replay --check failed"; }
grep -q "evaluate: plan 'stories260K-Q8_0-mixed.gguf'" "$tmp/replay.out" || fail "replay did not evaluate the GGUF"
# reopened: the rows and a GGUF row's detail come back from the session
start 100 30 "'$M' --text '$T' --ctx 128 --threads 2 --session '$tmp/s.json'"
wait_for "session: s.json" 15
keys 5 j Enter
wait_for "Result #2 stories260K-Q8_0-mixed.gguf"
has "GGUF: "
screen | grep -E 'L0\.q +Q8_0 ' >/dev/null || fail "the reopened detail does not give L0.q's type Q8_0"
keys q
echo "e2e_tui_gguf: ok (Q4_0 KLD $k4, Q8_0 KLD $k8)"
