#!/bin/sh
# The workbench end to end in tmux: open stories260K in a 100x30 window,
# calibrate, read the activation heat map (rows, columns, legend ticks, and
# the max|x| of every down cell against `qscope report`), make a plan with one
# projection fp16 and the rest int4, evaluate it, and check the PPL on screen
# equals what `qscope eval` prints for the plan file the TUI wrote; then the
# same screens at 80x24 after a resize (with AQLM and the output head edited
# there), a too-small window, help, quit with a job running (asks), SIGTERM
# restoring the terminal, and the docs' key tables against the bindings table.
# Skips (exit 0) when tmux is not installed. Private tmux socket, always killed.
set -eu
E2E_NAME=e2e_tui
. "$(dirname "$0")/tmux_lib.sh"

export XDG_CACHE_HOME="$tmp/cache" LC_ALL=C.UTF-8
t0=$(date +%s)
"$Q" tui --help | grep -q -- "--session S" || fail "qscope tui --help"
# The key tables of docs/tui.md and the README are the bindings table's.
root=$(cd "$(dirname "$0")/.." && pwd)
"$Q" tui --keys-markdown >"$tmp/keys.md"
[ "$(wc -l <"$tmp/keys.md")" -gt 40 ] || fail "qscope tui --keys-markdown: $(cat "$tmp/keys.md")"
for doc in "$root/docs/tui.md" "$root/README.md"; do
  while IFS= read -r line; do
    grep -qxF -- "$line" "$doc" || fail "$doc: key table lacks '$line' (regenerate: qscope tui --keys-markdown)"
  done <"$tmp/keys.md"
done
if "$Q" "$M" </dev/null >"$tmp/out" 2>&1; then fail "no terminal: should refuse"; fi
grep -q "needs a terminal" "$tmp/out" || fail "no terminal: $(cat "$tmp/out")"
if "$Q" tui --ctx nope >"$tmp/out" 2>&1; then fail "--ctx nope accepted"; fi
# A model that cannot load: the error names it, the terminal was never taken over.
tm new-session -d -s bad -x 80 -y 24 \
  "'$Q' '$tmp/missing.gguf' 2>'$tmp/bad.err'; echo \"exit=\$?\" >'$tmp/bad.exit'; sleep 30"
n=0
while [ ! -s "$tmp/bad.exit" ]; do sleep 0.1; n=$((n + 1)); [ $n -lt 50 ] || fail "bad model: no exit"; done
grep -q "exit=1" "$tmp/bad.exit" || fail "bad model exit $(cat "$tmp/bad.exit")"
grep -q "missing.gguf" "$tmp/bad.err" || fail "bad model error: $(cat "$tmp/bad.err")"
tm kill-session -t bad
tm new-session -d -s e2e -x 100 -y 30 \
  "XDG_CACHE_HOME='$tmp/cache' LC_ALL=C.UTF-8 '$Q' '$M' --text '$T' --threads 2 2>'$tmp/stderr'; echo \"exit=\$?\" >'$tmp/exit'; sleep 30"
wait_for "1 Model" 15
has "stories260K-f32.gguf"
has "layers 5"
has "calibration: none yet - press c"
has "plan: fp16: 16.00 bpw"

# Activations before calibration say what to run, no numbers.
keys 2
wait_for "No calibration yet - press c"
lacks "L0 "

# Calibrate in the background; the title shows the job, the screen stays live.
keys c
wait_for "calibrated in" 30
has "16 seqs x"
# 16 x 128 tokens from the 985 past evaluation's chunks: said first, where the bar shows it
has "windows repeat (16 x 128 tokens > the part's 985)"

# The heat map: layer rows, the projection-input columns, legend with ticks.
for l in L0 L1 L2 L3 L4; do has " $l "; done
for c in qkv gate_up down resid; do has "$c"; done
has "max|x| (m) per layer and input"
has "log scale"
screen | grep -A2 "log scale" | tail -1 | grep -qE '[0-9]' || fail "legend has no tick labels"
stats=$(ls "$tmp"/cache/qscope/stats-*.qss)
"$Q" report --stats "$stats" --what spikes --json >"$tmp/spikes.json"
# Every down cell shows report's max|x| (heat_fmt: 2 decimals below 10, 1 below 100).
for l in 0 1 2 3 4; do
  mx=$(tr '\n' ' ' <"$tmp/spikes.json" | sed 's/},/}\n/g' | grep "\"layer\": $l, \"proj\": \"down\"" |
       sed -n 's/.*"max": \([0-9.e+-]*\).*/\1/p' | head -1)
  [ -n "$mx" ] || fail "report has no layer $l down"
  want=$(awk -v v="$mx" 'BEGIN { if (v < 9.995) printf "%.2f", v; else printf "%.1f", v }')
  screen | grep " L$l " | grep -qF " $want" || fail "L$l down shows no $want (report max $mx)"
done
# Side panel: the cursor cell's numbers; drill-down and back.
has "max/median"
keys l l l Enter
wait_for "channels, Esc back"
has "|x| histogram"
has "token"
keys Escape
wait_for "log scale"

# Sensitivity has its map now.
keys 3
wait_for "output error, int4"
# between 120 and 140 columns the side panel keeps all five groupings (ic-g was cut)
tm resize-window -t e2e -x 125 -y 30
wait_for "oc-g   ic-g"
# each cell's cost: the scales' bits per weight per grouping, the cursor cell's total, the title's range
has "+bpw"
screen | grep -q "int4 ([^)]*), [a-z-]* (g), [0-9.-]* bpw" || fail "the title gives no bits per weight"
screen | grep -qE "I4 +[a-z-]+: [0-9]+\.[0-9]{3} bits per weight" || fail "no bits per weight for the cursor cell"
tm resize-window -t e2e -x 100 -y 30
wait_for "output error, int4"

# Plan: preset int4-rtn, then L4.down back to fp16.
keys 4
wait_for "Plan: fp16"
keys p
wait_for "Preset (Enter applies"
n=0
while ! screen | grep -qF "> int4-rtn"; do
  keys j; n=$((n + 1)); [ $n -lt 20 ] || fail "int4-rtn not in the preset list"
done
keys Enter
wait_for "Plan: int4-rtn"
has "I4a/oc64"
has "I4a/oc4"
keys G
wait_for "embed [F16]"
keys k l l l l l l
wait_for "[I4a/oc4]"
n=0
while ! screen | grep -qF "[F16]"; do
  keys f; n=$((n + 1)); [ $n -lt 12 ] || fail "f never reached F16"
done
has "int4-rtn +"
has "% of fp16"
# undo / redo of that run of edits
keys u
wait_for "undone"
keys C-r
wait_for "redone"
has "[F16]"

# Evaluate and compare with the CLI on the plan file the TUI wrote.
keys e
keys 5
wait_for "#1 int4-rtn" 60
has "PPL"
has "Pareto"
ctx=$(screen | sed -n 's/^ *ctx \([0-9]*\),.*/\1/p' | head -1)
[ -n "$ctx" ] || fail "no ctx in the evaluation settings line"
# one text for both: evaluation scores its first chunks, calibration draws from the rest
nch=$(screen | sed -n 's/^ *ctx [0-9]*, \([0-9]*\) of [0-9]* chunks of .* (the rest calibrates).*/\1/p' | head -1)
[ -n "$nch" ] || fail "the evaluation settings line does not say which chunks it scores"
tui_ppl=$(screen | awk '($1 == "1" || $1 == "1*") && $2 == "int4-rtn" { print $4; exit }')
[ -n "$tui_ppl" ] || fail "no PPL in the results table"
plan=$(ls "$tmp"/cache/qscope/plans/run*-stories260K-f32-*-eval1-*.json)
"$Q" eval "$M" --plan "$plan" --text "$T" --ctx "$ctx" --chunks "$nch" --no-speed --json >"$tmp/eval.json" 2>"$tmp/eval.err" ||
  { cat "$tmp/eval.err" >&2; fail "qscope eval failed"; }
cli_ppl=$(sed -n 's/.*"ppl": \([0-9.e+-]*\).*/\1/p' "$tmp/eval.json" | head -1)
want=$(awk -v v="$cli_ppl" 'BEGIN { printf "%.4f", v }')
[ "$tui_ppl" = "$want" ] || fail "TUI PPL $tui_ppl != qscope eval $want"
grep -q '"4.down"' "$plan" || fail "plan file has no rule for the fp16 cell 4.down"

# Resize to 80x24: every view still draws.
tm resize-window -t e2e -x 80 -y 24
sleep 0.3
has "1 Model"
has "#1 int4-rtn"
keys 2
wait_for "log scale"
has " L4 "
has "down"
keys 4
wait_for "[F16]"
has "budget"
# AQLM from the format cycle (down's 172 inputs take the preset's 1x8g4), its
# M key, the output head as a cell, all undone again (the F F run is one undo step).
keys F F
wait_for "[AQ1x8g4"
has "does not divide 172"
keys x
wait_for "[AQ2x8g4"
keys j
wait_for "output [F16]"
keys f
wait_for "output [BF16"
keys u u u
wait_for "output [F16]"
keys k
wait_for "[F16]"
keys 3
wait_for "output error"
keys 6
wait_for "evaluate"
has "calibrate"
# Too small, then back.
tm resize-window -t e2e -x 70 -y 20
wait_for "too small"
tm resize-window -t e2e -x 100 -y 30
wait_for "6 Log"
# Help is generated from the key table.
keys '?'
wait_for "Global keys"
has "Log view keys"
keys Escape
lacks "Global keys"

# q quits (the quit prompt is checked below, during a long job).
keys q
n=0
while [ ! -s "$tmp/exit" ]; do
  sleep 0.1; n=$((n + 1))
  if [ $n -eq 30 ]; then keys y; fi
  [ $n -lt 100 ] || fail "qscope did not exit on q"
done
grep -q "exit=0" "$tmp/exit" || fail "qscope exited with $(cat "$tmp/exit")"

# A session: a new one records what happens (replayable: qscope replay --check
# reproduces the result bit for bit), and reopening it restores the results.
tm kill-session -t e2e
rm -f "$tmp/exit"
tm new-session -d -s e2e -x 100 -y 30 \
  "XDG_CACHE_HOME='$tmp/cache' LC_ALL=C.UTF-8 '$Q' '$M' --text '$T' --threads 2 --session '$tmp/s.json' 2>'$tmp/stderr'; echo \"exit=\$?\" >'$tmp/exit'; sleep 30"
wait_for "session: s.json" 15
keys e
keys 5
wait_for "#1 fp16" 60
keys q
n=0
while [ ! -s "$tmp/exit" ]; do sleep 0.1; n=$((n + 1)); [ $n -lt 50 ] || fail "no exit on q (session)"; done
grep -Eq '"action":[[:space:]]*"evaluate"' "$tmp/s.json" || fail "the session recorded no evaluate action"
grep -Eq '"action":[[:space:]]*"load_stats"' "$tmp/s.json" || fail "the session recorded no load_stats action"
if "$Q" replay --help >/dev/null 2>&1; then
  "$Q" replay "$tmp/s.json" --check -o "$tmp/r.json" >"$tmp/replay.out" 2>&1 ||
    { cat "$tmp/replay.out" >&2; fail "qscope replay --check failed on the TUI's session"; }
  grep -q "check: OK" "$tmp/replay.out" || fail "replay: $(tail -2 "$tmp/replay.out")"
fi
tm kill-session -t e2e
rm -f "$tmp/exit"
tm new-session -d -s e2e -x 100 -y 30 \
  "XDG_CACHE_HOME='$tmp/cache' LC_ALL=C.UTF-8 '$Q' '$M' --text '$T' --threads 2 --session '$tmp/s.json' 2>'$tmp/stderr'; echo \"exit=\$?\" >'$tmp/exit'; sleep 30"
wait_for "session: s.json" 15
has "calibration: 16 seqs x"
keys 5
wait_for " 1  fp16"   # reference rows (>= 16 bpw) stay off the Pareto front unless r
keys 6
wait_for "reopened"
has "apply_preset"
keys q

# 80x24 from the start, then SIGTERM: the handler only sets a flag, the main
# loop restores the terminal and says so.
tm kill-session -t e2e
rm -f "$tmp/exit"
tm new-session -d -s e2e -x 80 -y 24 \
  "XDG_CACHE_HOME='$tmp/cache' LC_ALL=C '$Q' '$M' --text '$T' --threads 1 --samples 400 2>'$tmp/stderr'; echo \"exit=\$?\" >'$tmp/exit'; sleep 30"
wait_for "1 Model" 15
has "calibration: 16 seqs x"   # reopened from the cache
keys 2
wait_for "log scale"
has "#####"                    # ASCII shading without a UTF-8 locale
has " qscope | stories260K"     # ASCII title separators
# The screen stays live while a job runs: a long recalibration (400 sequences)
# is on the worker thread; a view switch shows at once, Esc stops it and the
# cached statistics stay.
keys c
wait_for "calibrate" 5
ms0=$(date +%s%N)
tm send-keys -t e2e 3
wait_for "output error, int4" 5      # the previous map stays while recalibrating
ms=$(( ($(date +%s%N) - ms0) / 1000000 ))
[ "$ms" -lt 1000 ] || fail "view switch took $ms ms during a job"
# q with a job running asks first; n keeps going; Esc cancels the job.
keys q
wait_for "Quit anyway? y/n"
keys n
wait_for "not quitting"
[ ! -s "$tmp/exit" ] || fail "qscope quit although n was answered"
keys Escape
wait_for "calibration cancelled" 20
keys 2
wait_for "log scale"
lacks "$(printf '\342\226\210')"  # no U+2588 full block
shell=$(tm display-message -p -t e2e '#{pane_pid}')
pid=$(pgrep -P "$shell" || true)
[ -n "$pid" ] || fail "no qscope process"
kill -TERM "$pid"
n=0
while [ ! -s "$tmp/exit" ]; do sleep 0.1; n=$((n + 1)); [ $n -lt 50 ] || fail "no exit after SIGTERM"; done
grep -q "exit=143" "$tmp/exit" || fail "SIGTERM exit was $(cat "$tmp/exit")"
grep -q "terminal restored" "$tmp/stderr" || fail "no restore message: $(cat "$tmp/stderr")"

# SIGINT (Ctrl-C) and a fatal ASSERT restore the terminal too.
for mode in int fatal; do
  tm kill-session -t e2e
  rm -f "$tmp/exit"
  fatal=""; [ $mode = fatal ] && fatal=1
  tm new-session -d -s e2e -x 80 -y 24 \
    "QSCOPE_TEST_FATAL=$fatal XDG_CACHE_HOME='$tmp/cache' '$Q' '$M' --text '$T' --threads 1 2>'$tmp/stderr'; echo \"exit=\$?\" >'$tmp/exit'; sleep 30"
  if [ $mode = int ]; then wait_for "1 Model" 15; keys C-c; fi
  n=0
  while [ ! -s "$tmp/exit" ]; do sleep 0.1; n=$((n + 1)); [ $n -lt 100 ] || fail "no exit ($mode)"; done
  if [ $mode = int ]; then
    grep -q "exit=130" "$tmp/exit" || fail "SIGINT exit was $(cat "$tmp/exit")"
    grep -q "interrupted: terminal restored" "$tmp/stderr" || fail "SIGINT: $(cat "$tmp/stderr")"
  else
    grep -q "exit=134" "$tmp/exit" || fail "fatal exit was $(cat "$tmp/exit")"
    grep -q "internal error: ASSERT" "$tmp/stderr" || fail "fatal: $(cat "$tmp/stderr")"
  fi
  # Back on the normal screen (endwin left the alternate screen): no workbench chrome.
  sleep 0.2
  lacks "1 Model   2 Activations"
done

echo "e2e_tui: ok ($(( $(date +%s) - t0 )) s; TUI PPL $tui_ppl = qscope eval $want; view switch during a job $ms ms)"
