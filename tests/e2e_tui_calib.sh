#!/bin/sh
# The calibration settings screen (issue 11 item 5, the workbench's part), in
# tmux on stories260K (100x30). One text for both splits it: evaluation
# scores the first chunks, calibration draws from the rest, as `calib
# --eval-chunks` does (same stats), and eval warns when stats drew from what it
# scores. C shows calib's settings with their defaults
# (the sequence length clipped to the model's context) and warns when the
# windows would repeat (samples x seqlen above the text's tokens); the text, samples,
# sequence length, seed, group and top-k are changed by typing and +/-; c
# calibrates with them: the Model view says so and the stats equal `qscope
# calib` with the same options (their reports are identical); the session
# records the settings (calib_settings, calibrate) and replay --check agrees;
# a reopened session shows them again. Skips without tmux.
set -eu
E2E_NAME=e2e_tui_calib
. "$(dirname "$0")/tmux_lib.sh"
# typed TEXT: Ctrl-U, TEXT, Enter in the prompt that is open
typed() { keys C-u; tm send-keys -t e2e -l "$1"; keys Enter; }
head -c 2600 "$T" >"$tmp/calib.txt"


# --- One text for both (no --calib-text, no --chunks): evaluation scores the
# first 7 of the text's 14 chunks of 128, calibration draws only from the
# tokens past them; the stats equal `calib --eval-chunks 7 --eval-ctx 128`'s,
# and the CLI says which part it used.
start 100 30 "'$M' --text '$T' --ctx 128 --threads 2 --session '$tmp/s0.json'"
wait_for "session: s0.json" 15
keys 2
wait_for "from token 896 (evaluation"
keys 5
wait_for "ctx 128, 7 of 14 chunks of tinystories_sample.txt (the rest calibrates)"
keys C
wait_for "Calibration settings:"
keys j Enter
typed 4
keys j -
wait_for "calibration sequence length (tokens): 64"
has "c: 4 x 64 = 256 tokens of the part's 985"
keys c
wait_for "calibrated in" 60
has "4 seqs x 64 tokens, random seed 1, sensitivity, from token 896"
# a cell's top spikes: each with the tokens before it, from the windows rebuilt on the part
keys 2 Enter
wait_for "context [token]"
screen | grep -E '^ .* [0-9.]+ +[0-9]+ +[0-9]+ +[0-9]+ +(x[0-9]+)? +.*\[.*\]' >/dev/null || fail "no spike row with its context"
keys Escape 1
stats=$(screen | sed -n 's/^ stats: \(.*\.qss\) *$/\1/p')
[ -f "$stats" ] || fail "no stats file on the Model view: '$stats'"
quit
grep -q "\"from\":[[:space:]]*896" "$tmp/s0.json" || fail "the session does not record the calibration part (from 896): $(grep -o "\"from\"[^,]*" "$tmp/s0.json")"
"$Q" calib "$M" --text "$T" --eval-chunks 7 --eval-ctx 128 --samples 4 --seqlen 64 --threads 2 \
  -o "$tmp/cli0.qss" >"$tmp/cli0.out" 2>&1 || fail "qscope calib --eval-chunks: $(cat "$tmp/cli0.out")"
grep -q "calibration part: tokens 896-1880 of $T (985 tokens), past the 7 chunks of 128 that .eval --chunks 7 --ctx 128. scores" \
  "$tmp/cli0.out" || fail "calib does not say which part it drew from: $(grep part "$tmp/cli0.out")"
for what in spikes sensitivity; do
  "$Q" report "$M" --stats "$stats" --what $what | tail -n +2 >"$tmp/tui0.$what" 2>&1 || fail "report (workbench)"
  "$Q" report "$M" --stats "$tmp/cli0.qss" --what $what | tail -n +2 >"$tmp/cli0.$what" 2>&1 || fail "report (calib)"
  [ -s "$tmp/tui0.$what" ] && cmp -s "$tmp/tui0.$what" "$tmp/cli0.$what" ||
    fail "the $what reports of the split calibration differ: $(diff "$tmp/tui0.$what" "$tmp/cli0.$what" | head -5)"
done
"$Q" replay "$tmp/s0.json" --check -o "$tmp/r0.json" >"$tmp/replay0.out" 2>&1 || {
  cat "$tmp/replay0.out" >&2; fail "replay --check of the split calibration failed"; }
grep -q "calibrate: 4 x 64 tokens of $T from token 896 (seed 1)" "$tmp/replay0.out" ||
  fail "replay did not calibrate on the part: $(grep calibrate "$tmp/replay0.out")"
# eval warns when the stats drew from what it scores, not when they did not
"$Q" eval "$M" --preset int4-rtn --stats "$tmp/cli0.qss" --text "$T" --ctx 128 --chunks 7 --no-speed \
  >/dev/null 2>"$tmp/ev0.err" || fail "eval --chunks 7: $(cat "$tmp/ev0.err")"
if grep -q "tuned on what it is scored on" "$tmp/ev0.err"; then fail "eval warns though the parts are apart"; fi
grep -q "cli0.qss was calibrated on this text's tokens from 896, past the 7 chunks of 128 scored here" "$tmp/ev0.err" ||
  fail "eval does not say which parts calibration and evaluation took: $(cat "$tmp/ev0.err")"
"$Q" eval "$M" --preset int4-rtn --stats "$tmp/cli0.qss" --text "$T" --ctx 128 --no-speed \
  >/dev/null 2>"$tmp/ev1.err" || fail "eval: $(cat "$tmp/ev1.err")"
grep -q "cli0.qss was calibrated on this text (its tokens from 896), which this evaluation reads (its first 14 chunks of 128): the plan is tuned on what it is scored on" \
  "$tmp/ev1.err" || fail "eval over every chunk does not warn: $(cat "$tmp/ev1.err")"

start 100 30 "'$M' --text '$T' --ctx 128 --threads 2 --session '$tmp/s.json'"
wait_for "session: s.json" 15
keys C
wait_for "Calibration settings:"
# one text for both: calibration draws from the tokens past evaluation's 7 of 14 chunks (896 = 7 x 128)
has "> calibration text          tinystories_sample.txt, tokens 896-1880 (evaluation reads 0-895)"
screen | grep -E ' samples \(sequences\) +16( |$)' >/dev/null || fail "samples do not default to 16"
screen | grep -E ' sequence length \(tokens\) +128( |$)' >/dev/null || fail "the sequence length is not clipped to 128"
screen | grep -E ' seed +1( |$)' >/dev/null || fail "the seed does not default to 1"
# 16 x 128 random windows exceed that part's 985 tokens: they repeat (as calib warns)
has "c: 16 x 128 = 2048 tokens > the part's 985: windows repeat"
# the text, by path
keys k Enter
wait_for "calibration text ('' = the evaluation text):"
typed "$tmp/calib.txt"
wait_for "calibration text: $tmp/calib.txt (2.6 kB"
# samples typed, the sequence length halved, the seed typed, group and top-k halved
keys j Enter
wait_for "samples (sequences):"
typed 8
wait_for "calibration samples (sequences): 8"
keys j -
wait_for "calibration sequence length (tokens): 64"
has "c: 8 x 64 = 512 tokens of the text's"
keys j Enter
typed 7
wait_for "calibration seed: 7"
keys j j -
wait_for "calibration group (map cells): 16"
keys j -
wait_for "calibration spikes kept (top-k): 8"
# a value out of range is refused
keys k Enter
typed 0
wait_for "is a whole number in [4,"
keys c
wait_for "calibrated in" 60
lacks "Calibration settings:"
has "8 seqs x 64 tokens, random seed 7"
keys 1
wait_for "calibration: 8 seqs x 64 tokens"
has "calibration: 8 seqs x 64 tokens, random seed 7, sensitivity; calibration text calib.txt (2.6 kB)"
stats=$(screen | sed -n 's/^ stats: \(.*\.qss\) *$/\1/p')
[ -f "$stats" ] || fail "no stats file on the Model view: '$stats'"
"$Q" calib "$M" --text "$tmp/calib.txt" --samples 8 --seqlen 64 --seed 7 --group 16 --topk 8 --threads 2 \
  -o "$tmp/cli.qss" >/dev/null 2>&1 || fail "qscope calib"
for what in spikes sensitivity; do
  "$Q" report "$M" --stats "$stats" --what $what >"$tmp/tui.$what" 2>&1 || fail "report on the workbench's stats"
  "$Q" report "$M" --stats "$tmp/cli.qss" --what $what >"$tmp/cli.$what" 2>&1 || fail "report on calib's stats"
  # the first line names the stats file
  tail -n +2 "$tmp/tui.$what" >"$tmp/tui2"; tail -n +2 "$tmp/cli.$what" >"$tmp/cli2"
  [ -s "$tmp/tui2" ] && cmp -s "$tmp/tui2" "$tmp/cli2" || fail "the $what reports differ: $(diff "$tmp/tui2" "$tmp/cli2" | head -5)"
done
keys e
wait_for "#1 fp16" 60
quit
[ "$(grep -c '"action":.*"calib_settings"' "$tmp/s.json")" = 6 ] || fail "the session has not six calib_settings actions"
grep -q '"sens_exact":' "$tmp/s.json" || fail "calibrate does not record sens_exact"
"$Q" replay "$tmp/s.json" --check -o "$tmp/r.json" >"$tmp/replay.out" 2>&1 || {
  cat "$tmp/replay.out" >&2; fail "replay --check failed"; }
grep -q "calibrate: 8 x 64 tokens of $tmp/calib.txt (seed 7)" "$tmp/replay.out" || fail "replay did not calibrate with the settings: $(grep calibrate "$tmp/replay.out")"
# reopened: the settings and the text come back
start 100 30 "'$M' --text '$T' --ctx 128 --threads 2 --session '$tmp/s.json'"
wait_for "session: s.json" 15
keys C
wait_for "Calibration settings:"
has "calibration text          $tmp/calib.txt"
screen | grep -E ' samples \(sequences\) +8( |$)' >/dev/null || fail "samples not restored"
screen | grep -E ' seed +7( |$)' >/dev/null || fail "seed not restored"
# without H: calibrates (no output errors in the map), recorded as h false, replayed
keys j j j j j j j j j -
wait_for "calibration H = X'X: no (c calibrates with it)"
has "no GPTQ/AdaDim/AQLM, no output errors"
keys c
wait_for "calibrated in" 60
keys Escape
lacks "Calibration settings:"
quit
grep -q '"h":.*false' "$tmp/s.json" || fail "the calibration without H is not recorded as h false"
"$Q" replay "$tmp/s.json" --check -o "$tmp/r2.json" >"$tmp/replay2.out" 2>&1 || {
  cat "$tmp/replay2.out" >&2; fail "replay --check of the session without H failed"; }
h=$(ls "$tmp/r2.json.d/" | grep -c 'h64$' || true)
[ "$h" = 1 ] || fail "replay wrote $h H files for one calibration with H and one without: $(ls "$tmp/r2.json.d/")"
echo "e2e_tui_calib: ok"
