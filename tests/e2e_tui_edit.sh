#!/bin/sh
# The workbench's editing and bookkeeping in tmux (issue 14): `y` toggles
# symmetry only on the integer cells of the scope, and the session records
# exactly that (replay --check agrees); a cancelled calibration is recorded
# and shown as partial. Skips (exit 0) without tmux. Private
# tmux socket, always killed.
set -eu
E2E_NAME=e2e_tui_edit
. "$(dirname "$0")/tmux_lib.sh"
# pick_preset NAME: opens the preset list in the Plan view and applies NAME.
pick_preset() {
  keys p
  wait_for "Preset (Enter applies"
  n=0
  while ! screen | grep -qF "> $1 "; do
    keys j; n=$((n + 1)); [ $n -lt 25 ] || fail "$1 not in the preset list"
  done
  keys Enter
  wait_for "Plan: $1"
}

export XDG_CACHE_HOME="$tmp/cache" E2E_CACHE="$tmp/cache" LC_ALL=C.UTF-8
t0=$(date +%s)

# --- `y` on a row: only the sign of the integer cells changes.
start 100 30 "'$M' --text '$T' --threads 2 --session '$tmp/s.json'"
wait_for "session: s.json" 15
keys 4
wait_for "Plan: fp16"
pick_preset int4-rtn
has "[I4a/oc64]"
# L0.down to fp16, then back to q and `y` on the row.
keys l l l l l l
wait_for "[I4a/oc4]"
n=0
while ! screen | grep -qF "[F16]"; do
  keys f; n=$((n + 1)); [ $n -lt 12 ] || fail "f never reached F16"
done
keys h h h h h h v
wait_for "edits now apply to: row"
# the run of f presses was one change (it was one undo step, Log line and
# session edit per press: "+5 edits" for one cell)
has "int4-rtn +1 edit "
keys y
wait_for "symmetric on layer 0: 6 cells changed"
has "int4-rtn +2 edits"
row=$(screen | grep '^ *L0 ')
echo "$row" | grep -qF "[I4/oc64]" || fail "L0.q is not I4/oc64 after y: $row"
echo "$row" | grep -qF "F16" || fail "L0.down lost its fp16 after y: $row"
[ "$(echo "$row" | grep -o 'I4/oc' | wc -l)" -eq 6 ] || fail "L0 has not six symmetric int4 cells: $row"
screen | grep '^ *L1 ' | grep -qF "I4a/oc64" || fail "y changed layer 1"
# a full cycle of f on L1.q passes through aqlm and comes back to the cell as
# it was (group 64 and the sign kept; it came back as I4/oc, per-channel), and
# is no change at all
keys v v v v j
wait_for "edits now apply to: cell"
n=0 aq=0
while :; do
  keys f; n=$((n + 1))
  screen | grep '^ *L1 ' | grep -qF "[AQ" && aq=1
  screen | grep '^ *L1 ' | grep -qF "[I4a/oc64]" && break
  [ $n -lt 25 ] || fail "a full format cycle did not come back to I4a/oc64 (lost the group): $(screen | grep '^ *L1 ')"
done
[ $aq = 1 ] || fail "the format cycle did not pass through aqlm"
has "int4-rtn +2 edits"
# direct format entry: ':' then the format for the scope
keys :
wait_for "format for the scope"
keys C-u
tm send-keys -t e2e -l "int8/ic"
keys Enter
wait_for "format int8/ic on L1.q: 1 cell changed"
screen | grep '^ *L1 ' | grep -qF "[I8a/ic]" || fail "':int8/ic' did not give I8a/ic: $(screen | grep '^ *L1 ')"
has "int4-rtn +3 edits"
# W asks for the path; TARGET:PATH exports
keys W
wait_for "write plan to"
has "edited-int4-rtn.json_"
keys C-u
tm send-keys -t e2e -l "llamacpp:$tmp/tt.txt"
keys Enter
wait_for "plan written: $tmp/tt.txt (llamacpp:"
grep -qF '^blk\.1\.attn_q\.weight$=q8_0' "$tmp/tt.txt" || fail "the llama.cpp export has no q8_0 for blk.1.attn_q: $(grep attn_q "$tmp/tt.txt")"
keys W
wait_for "write plan to"
keys C-u
tm send-keys -t e2e -l "$tmp/edited.json"
keys Enter
wait_for "plan written: $tmp/edited.json"
grep -q '"1.q"' "$tmp/edited.json" || fail "the written plan has no rule for 1.q"
keys W
wait_for "write plan to"
keys Escape
wait_for "cancelled"
keys k
# evaluate: the plan file is named by the session and the model (eval1-NAME
# files of other sessions and models overwrote each other)
keys e
wait_for "#1 " 60
ls "$tmp"/cache/qscope/plans/s-stories260K-f32-a1b1e620-eval1-int4-rtn*.json >/dev/null 2>&1 ||
  fail "no plans/s-stories260K-f32-a1b1e620-eval1-int4-rtn*.json: $(ls "$tmp"/cache/qscope/plans)"
quit
"$Q" replay "$tmp/s.json" --check -o "$tmp/r.json" >"$tmp/replay.out" 2>&1 ||
  { cat "$tmp/replay.out" >&2; fail "replay of the y edit failed"; }
grep -q "check: OK" "$tmp/replay.out" || fail "replay: $(tail -2 "$tmp/replay.out")"
# the session holds the net changes: L0.down once (one edit id), not a rule per press
# (one set_rule for L0.down, six for the y on the row, one for ':'; five per-press ones before)
[ "$(grep -c '"action":[[:space:]]*"set_rule"' "$tmp/s.json")" -eq 8 ] || fail "the f presses were recorded one by one"

# --- The settings panel (o): settings that only the CLI reached, for the scope,
# each one edit that leaves the cells' formats and methods alone; replayable.
start 100 30 "'$M' --text '$T' --threads 2 --session '$tmp/o.json'"
wait_for "session: o.json" 15
keys 4
wait_for "Plan: fp16"
pick_preset w8a8-tensor
keys v
wait_for "edits now apply to: row"
keys o
wait_for "Settings of L0.q for the scope (row)"
has "> activation granularity"
keys +
wait_for "activation granularity token on layer 0: 7 cells changed"
keys j j j
has "> SmoothQuant alpha"
keys +
wait_for "SmoothQuant alpha (q/k/v, gate/up) 0.25 on layer 0: 5 cells changed"
screen | grep '^ *L0 ' | grep -q "A8t\.S\|A8t·S" || fail "no SmoothQuant on L0: $(screen | grep '^ *L0 ')"
keys -
wait_for "SmoothQuant alpha (q/k/v, gate/up) off"
keys j
keys +
wait_for "GPTQ damp 0.02 on layer 0: 7 cells changed"
keys Escape
lacks "Settings of"
screen | grep '^ *L1 ' | grep -qF "I8/oc" || fail "layer 1 changed"
keys e
wait_for "#1 " 60
quit
"$Q" replay "$tmp/o.json" --check -o "$tmp/or.json" >"$tmp/replay.out" 2>&1 ||
  { cat "$tmp/replay.out" >&2; fail "replay of the settings edits failed"; }
grep -q "check: OK" "$tmp/replay.out" || fail "replay (settings): $(tail -2 "$tmp/replay.out")"
# reopened, the Log shows the recorded actions as key=value pairs, not raw JSON
start 100 30 "'$M' --text '$T' --threads 2 --session '$tmp/o.json'"
wait_for "session: o.json" 15
keys 6
wait_for "reopened"
has "preset=w8a8-tensor"
lacks '{"preset"'
quit

# --- A cancelled first calibration is kept, but as PARTIAL: on screen, in the
# session (partial, kept; replay stops after as many sequences) and when the
# cache is loaded again (it was reloaded as if complete).
export XDG_CACHE_HOME="$tmp/cache2" E2E_CACHE="$tmp/cache2"
start 100 30 "'$M' --text '$T' --threads 1 --samples 20000 --seqlen 64 --session '$tmp/p.json'"
wait_for "session: p.json" 15
keys c
wait_for "calibration queued: H adds 0." 5
has "MB to the cache (now 0.0 MB; qscope cache list)"
wait_for "calibrate" 5
sleep 1
keys Escape
wait_for "partial result kept" 20
has "PARTIAL (cancelled)"
has "of 20000 seqs"
quit
grep -Eq '"partial":[[:space:]]*true' "$tmp/p.json" || fail "the session does not record the calibration as partial"
grep -Eq '"kept":[[:space:]]*[0-9]' "$tmp/p.json" || fail "the session does not record the sequences kept"
grep -Eq '"sensitivity":[[:space:]]*true' "$tmp/p.json" && fail "a cancelled sensitivity pass is recorded as done"
"$Q" replay "$tmp/p.json" -o "$tmp/pr.json" >"$tmp/replay.out" 2>&1 ||
  { cat "$tmp/replay.out" >&2; fail "replay of the partial calibration failed"; }
start 100 30 "'$M' --text '$T' --threads 1 --samples 20000 --seqlen 64"
wait_for "calibration loaded from the cache is PARTIAL" 15
has "PARTIAL (cancelled)"
# `s` in the Activations grid (advertised, did nothing): the largest cell by
# the metric, then the next largest.
keys 2
wait_for "log scale"
keys s
wait_for "max|x| rank 1 of 25: L"
v1=$(screen | sed -n 's/.*rank 1 of 25: L[0-9]* [a-z_]* = \([0-9.]*\).*/\1/p' | tail -1)
keys s
wait_for "max|x| rank 2 of 25: L"
v2=$(screen | sed -n 's/.*rank 2 of 25: L[0-9]* [a-z_]* = \([0-9.]*\).*/\1/p' | tail -1)
[ -n "$v1" ] && [ -n "$v2" ] && awk -v a="$v1" -v b="$v2" 'BEGIN { exit !(a >= b) }' ||
  fail "s ranks out of order: '$v1' then '$v2'"
quit
export XDG_CACHE_HOME="$tmp/cache" E2E_CACHE="$tmp/cache"

# --- Grids of more layers than fit say which are shown (a 32-layer tiny synth
# at 80x24), as the Plan view does.
"$Q" synth --preset tiny --layers 32 -o "$tmp/deep.gguf" >/dev/null 2>&1 || fail "synth"
start 80 24 "'$tmp/deep.gguf' --text '$T' --threads 1 --samples 2 --seqlen 32"
wait_for "1 Model" 15
keys c
wait_for "calibrated in" 30
keys 2
wait_for "log scale"
has "(layers 0-"
has "of 32, j/k scroll)"
keys G
wait_for "-31 of 32, j/k scroll)"
quit
# a queue behind a long job keeps its count in an 80-column title (it was cut at the edge)
start 80 24 "'$tmp/deep.gguf' --text '$T' --threads 1 --samples 5000 --seqlen 32 --session '$tmp/a-rather-long-session-name.json'"
wait_for "1 Model" 15
keys c e
wait_for "+1 queued" 5
screen | head -1 | grep -q "ETA .* +1 queued *$" || fail "title: $(screen | head -1)"
keys Escape
keys q
sleep 0.3
keys y
n=0
while [ ! -s "$tmp/exit" ]; do sleep 0.1; n=$((n + 1)); [ $n -lt 100 ] || fail "no exit (queue)"; done

# --- LANG=C: the plan codes' "·" has its ASCII fallback (it went out raw and
# shifted the columns into the cursor bracket); TERM=dumb is refused with a
# pointer to the CLI instead of an unusable screen.
E2E_LC=C start 80 24 "'$M' --text '$T' --threads 1 --session '$tmp/c.json'"
wait_for "1 Model" 15
# 80x24: the Model view's last lines (plan, session) stay above the key hints
has "plan: fp16: 16.00 bpw"
has "session: $tmp/c.json"
keys 4
wait_for "Plan: fp16"
pick_preset w8a8-tensor
row=$(screen | grep '^ *L0 ')
echo "$row" | grep -qF "[I8/oc.A]" || echo "$row" | grep -qF "[I8/oc.A8]" || echo "$row" | grep -qF "[I8/oc.A8t]" ||
  fail "no ASCII plan code under LANG=C: $row"
[ "$(screen | LC_ALL=C tr -d '\000-\177' | wc -c)" -eq 0 ] || fail "non-ASCII bytes on the screen under LANG=C"
# a message wider than the screen says where it is whole (it was cut at the edge)
keys W
wait_for "write plan to"
keys Enter
wait_for "... (whole in 6 Log)"
keys 6
wait_for "plan written: $tmp/cache/qscope/plans/c-"
quit
tm kill-session -t e2e
rm -f "$tmp/exit"
tm new-session -d -s e2e -x 80 -y 24 \
  "TERM=dumb '$Q' '$M' --text '$T' 2>'$tmp/dumb.err'; echo \"exit=\$?\" >'$tmp/exit'; sleep 30"
n=0
while [ ! -s "$tmp/exit" ]; do sleep 0.1; n=$((n + 1)); [ $n -lt 100 ] || fail "TERM=dumb: no exit"; done
grep -q "exit=2" "$tmp/exit" || fail "TERM=dumb exit $(cat "$tmp/exit")"
grep -q "cannot move the cursor" "$tmp/dumb.err" || fail "TERM=dumb: $(cat "$tmp/dumb.err")"
grep -q "qscope --help" "$tmp/dumb.err" || fail "TERM=dumb does not point at the CLI: $(cat "$tmp/dumb.err")"

echo "e2e_tui_edit: ok ($(( $(date +%s) - t0 )) s)"
