#!/bin/sh
# Compare and return (issue 13 item 3) in tmux on stories260K (100x30):
# two evaluated plans (int4-rtn, then L0.down at int3); Enter opens a
# result's detail (the residual error per layer against the session's
# record, each site's weight error against `qscope quant` of the plan file
# the workbench wrote, the cells that differ from the plan before); Space
# marks two results and d diffs them (the one cell, dbpw from the table);
# L loads #1's plan back into the editor, u undoes it; replay --check
# reproduces the session, and a reopened session shows the same detail.
# Skips without tmux.
set -eu
E2E_NAME=e2e_tui_compare
. "$(dirname "$0")/tmux_lib.sh"
# num FILE FIELD PATTERN: field FIELD of the first line of FILE matching PATTERN
num() { awk -v f="$2" "/$3/ { print \$f; exit }" "$1"; }
# sitef FILE SITE K: the K-th field after SITE ("L0.q") on its line of FILE
sitef() { awk -v s="$2" -v k="$3" '{ for (i = 1; i <= NF; i++) if ($i == s) { print $(i + k); exit } }' "$1"; }
# close A B TOL: |A - B| <= TOL
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t) }'; }

start 100 30 "'$M' --text '$T' --threads 2 --session '$tmp/s.json'"
wait_for "session: s.json" 15
keys c
wait_for "calibrated in" 60
keys 4
keys p
wait_for "Preset (Enter applies"
n=0
while ! screen | grep -qF "> int4-rtn "; do keys j; n=$((n + 1)); [ $n -lt 25 ] || fail "int4-rtn not in the preset list"; done
keys Enter
wait_for "Plan: int4-rtn"
keys e
wait_for "#1 int4-rtn" 60
keys l l l l l l f
wait_for "[I3a/oc4*]"
keys e
wait_for "#2 int4-rtn +1" 60
keys 5
wait_for "Space mark"
screen >"$tmp/table.txt"

# --- the detail of #1: residual error per layer, weight error per site
keys Enter
wait_for "Result #1 int4-rtn"
screen >"$tmp/d1.txt"
has "compared with: none"
has "quantization 0."
for l in 0 4; do
  shown=$(num "$tmp/d1.txt" 2 "^ L$l ")
  rec=$(grep -m1 '"layer_rel_err"' "$tmp/s.json" | tr -d '[],' | awk -v k=$((l + 2)) '{ print $k }')
  close "$shown" "$rec" 0.000006 || fail "detail L$l residual error '$shown' is not the session's '$rec'"
done
plan1=$(ls "$tmp"/cache/qscope/plans/*eval1-int4-rtn.json)
"$Q" quant "$M" --plan "$plan1" --json >"$tmp/quant.json" 2>/dev/null
for site in q down; do
  want=$(tr '{' '\n' <"$tmp/quant.json" | awk -F'"rel_err": ' "/\"site\": \"0\.$site\"/ { sub(/}.*/, \"\", \$2); print \$2; exit }")
  shown=$(sitef "$tmp/d1.txt" "L0.$site" 2)
  close "$shown" "$want" 0.0000006 || fail "L0.$site weight error '$shown' is not qscope quant's '$want'"
  oe=$(sitef "$tmp/d1.txt" "L0.$site" 3)
  awk -v v="$oe" 'BEGIN { exit !(v > 0 && v < 1) }' || fail "L0.$site has no map output error: '$oe'"
done

# --- the detail of #2: compared with #1, the one cell that differs
keys Escape j Enter
wait_for "Result #2 int4-rtn +1"
has "vs #1 int4-rtn: 1 of 37 cells differ (*)"
screen | grep -E 'L0\.down +I3a/oc4 .*\* I4a/oc4' >/dev/null || fail "L0.down is not shown as I3a/oc4, was I4a/oc4"
[ "$(screen | grep -c '\* I4a')" = 1 ] || fail "more than one cell marked as differing"

# --- mark both, diff: the cell, dbpw = the table's bpw difference
keys Escape k Space j Space
wait_for "#1 and #2 marked: d diffs them"
keys d
wait_for "Diff: #1 int4-rtn  vs  #2 int4-rtn +1"
screen >"$tmp/diff.txt"
has "1 of 37 cells differ:"
screen | grep -E '^ L0\.down +I4a/oc4 +I3a/oc4' >/dev/null || fail "the diff does not list L0.down I4a/oc4 -> I3a/oc4"
b1=$(num "$tmp/table.txt" 8 "^ *1\\*? +int4-rtn ")
b2=$(num "$tmp/table.txt" 9 "^ *2\\*? +int4-rtn \\+1")
k1=$(num "$tmp/table.txt" 5 "^ *1\\*? +int4-rtn ")
k2=$(num "$tmp/table.txt" 6 "^ *2\\*? +int4-rtn \\+1")
db=$(num "$tmp/diff.txt" 4 "^ bpw ")
dk=$(num "$tmp/diff.txt" 4 "^ KLD ")
close "$db" "$(awk -v a="$b1" -v b="$b2" 'BEGIN { print b - a }')" 0.011 || fail "dbpw '$db' is not $b2 - $b1"
close "$dk" "$(awk -v a="$k1" -v b="$k2" 'BEGIN { print b - a }')" 0.000011 || fail "dKLD '$dk' is not $k2 - $k1"

# --- load #1's plan back, then undo it in the Plan view
keys Escape k L
wait_for "plan of #1 (int4-rtn) loaded: 1 cells changed"
keys 4
wait_for "Plan: int4-rtn "
screen | grep '^ *L0 ' | grep -qF "[I4a/oc4" || fail "L0.down is not back at I4a/oc4: $(screen | grep '^ *L0 ')"
keys u
wait_for "[I3a/oc4]"
has "int4-rtn +1 edit"
quit
grep -q '"set_plan"' "$tmp/s.json" || fail "the session did not record set_plan"
[ "$(grep -c '"plan_json"' "$tmp/s.json")" = 2 ] || fail "the results do not carry their plans"
"$Q" replay "$tmp/s.json" --check -o "$tmp/r.json" >"$tmp/replay.out" 2>&1 || {
  cat "$tmp/replay.out" >&2; fail "replay --check failed"; }
grep -q "set_plan: plan 'int4-rtn' set" "$tmp/replay.out" || fail "replay did not run set_plan"

# --- reopened: the same detail from the session
start 100 30 "'$M' --text '$T' --threads 2 --session '$tmp/s.json'"
wait_for "session: s.json" 15
keys 5
wait_for "Space mark"
keys j Enter
wait_for "Result #2 int4-rtn +1"
has "vs #1 int4-rtn: 1 of 37 cells differ (*)"
has "quantization 0."
screen | grep -E '^ L4 +0\.[0-9]+' >/dev/null || fail "the reopened detail has no residual errors"
quit
echo "e2e_tui_compare: ok (dbpw $db, dKLD $dk)"
