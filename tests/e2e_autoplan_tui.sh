#!/bin/sh
# The auto plan in the workbench, in tmux on stories260K (100x30): calibrate,
# load int4-gptq and evaluate it, press A (it asks for the budget, offering
# int4-gptq's size; the site scales are measured in the job), the Plan view
# lists which cells it set and why, evaluate the proposed plan, and read the
# Evaluate table: its KLD is below int4-gptq's, its predicted KLD is shown
# beside the measured one with the prediction error line, the columns stay
# in place (the decode rate is whole under "dec t/s"), the Log says why each
# cell got its entry; m switches the Pareto metric. A typed budget in bytes
# gives a plan within it; a budget that is no budget is refused; the session
# records each auto plan so replay --check reproduces them. Skips without tmux.
set -eu
E2E_NAME=e2e_autoplan_tui
. "$(dirname "$0")/tmux_lib.sh"

tm new-session -d -s e2e -x 100 -y 30 \
  "XDG_CACHE_HOME='$tmp/cache' LC_ALL=C.UTF-8 '$Q' '$M' --text '$T' --ctx 128 --threads 2 --session '$tmp/s.json' 2>'$tmp/stderr'; echo \"exit=\$?\" >'$tmp/exit'; sleep 30"
wait_for "1 Model" 15
keys c
wait_for "calibrated in" 60
keys 4
wait_for "Plan: fp16"
keys A
wait_for "auto plan budget"
has "16.0000 bpw_"
keys Enter
wait_for "auto plan under 16 bpw" 60   # at fp16's size: every cell stays fp16 (nothing to gain)
has "0 cells changed"
keys p
wait_for "Preset (Enter applies"
n=0
while ! screen | grep -qF "> int4-gptq"; do
  keys j; n=$((n + 1)); [ $n -lt 20 ] || fail "int4-gptq not in the preset list"
done
keys Enter
wait_for "Plan: int4-gptq"
keys e
keys 5
wait_for "int4-gptq" 60
n=0
while ! screen | grep -qE '^ *1\*? +int4-gptq'; do sleep 0.2; n=$((n + 1)); [ $n -lt 300 ] || fail "no row for int4-gptq"; done
keys 4
keys A
wait_for "auto plan budget"
has "7.8180 bpw_"
keys Enter
wait_for "auto plan under 7.818 bpw" 90
wait_for "auto: 7.818 bpw (size of int4-gptq): pred. KLD"
# the cursor's cell (L0.q): its why names the choice the grid shows
why=$(screen | grep -E '^ L0\.q: ' | head -1)
bits=$(echo "$why" | sed -n 's/^ L0\.q: int\([0-9]\).*/\1/p')
[ -n "$bits" ] || fail "no why line for L0.q: '$why'"
screen | grep -E '^ *L0 +\[I'"$bits"'/' >/dev/null || fail "L0.q's why says int$bits, the grid: $(screen | grep '^ *L0 ')"
echo "$why" | grep -qE 'loss [0-9.e-]+ \(out err' || fail "L0.q's why has no predicted loss: '$why'"
keys e
keys 5
n=0
while ! screen | grep -qE '^ *2\*? +auto-7\.82bpw'; do sleep 0.2; n=$((n + 1)); [ $n -lt 300 ] || fail "no row for the auto plan"; done
screen >"$tmp/eval.txt"
has "dec t/s"
has "KLD pred"
has "KLD pred (loss model): off by"
# the columns: id, plan, PPL, dPPL, KLD, KLD pred, KLD p99, top-1, bpw, MB, dec t/s, quant s
has "quant s"
kg=$(awk '$2 == "int4-gptq" || $1 == "1*" && $2 == "int4-gptq" { print $5 }' "$tmp/eval.txt" | head -1)
ka=$(awk '$2 == "auto-7.82bpw" { print $5 }' "$tmp/eval.txt" | head -1)
pa=$(awk '$2 == "auto-7.82bpw" { print $6 }' "$tmp/eval.txt" | head -1)
nf=$(awk '$2 == "auto-7.82bpw" { print NF }' "$tmp/eval.txt" | head -1)
[ "$nf" = 12 ] || fail "auto row has $nf fields, not 12: $(grep auto-7 "$tmp/eval.txt")"
awk -v a="$ka" -v g="$kg" -v p="$pa" 'BEGIN { exit !(a > 0 && a < g && p > 0) }' ||
  fail "auto KLD '$ka' (pred '$pa') is not below int4-gptq '$kg'"
has "KLD (log) vs bits per weight"
keys m
wait_for "PPL (log) vs bits per weight"
keys 6
wait_for "layer 4 down:"
has "auto-plan"
# a typed budget in bytes: the plan fits in it
keys 4 A C-u
tm send-keys -t e2e -l "0.25 MB"
keys Enter
wait_for "auto plan under 250000 bytes" 90
wait_for "auto: 250000 B (typed)"
mb=$(screen | sed -n 's/^ budget .* \([0-9.]*\) MB .*/\1/p')
awk -v m="$mb" 'BEGIN { exit !(m > 0.2 && m <= 0.25) }' || fail "the plan under 0.25 MB is $mb MB"
keys Escape
wait_for "Plan: auto-250000B"
lacks "auto: 250000 B"
keys A C-u
tm send-keys -t e2e -l "7 parsecs"
keys Enter
wait_for "the unit is bpw, B, kB, MB or GB"
keys q
n=0
while [ ! -s "$tmp/exit" ]; do sleep 0.1; n=$((n + 1)); [ $n -lt 80 ] || fail "no exit on q"; done
[ "$(grep -c '"action":.*"auto_plan"' "$tmp/s.json")" = 3 ] || fail "the session has not three auto_plan actions"
"$Q" replay "$tmp/s.json" --check -o "$tmp/r.json" >"$tmp/replay.out" 2>&1 || {
  cat "$tmp/replay.out" >&2; fail "replay --check failed"; }
grep -q "auto_plan: plan 'auto-250000B' = auto" "$tmp/replay.out" || fail "replay did not make the typed auto plan"
echo "e2e_autoplan_tui: ok (auto KLD $ka, predicted $pa; int4-gptq KLD $kg)"
