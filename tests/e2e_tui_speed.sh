#!/bin/sh
# The speed table beside the errors (issue 17 item 4), in tmux on stories260K
# (130x40): calibrate; the Sensitivity view's "dec" row and the Plan view's
# cursor line say the kernels are not timed yet; T times them in a job; then
# every column of the map shows its kernel's decode time for the format and
# grouping shown (f changes it), the detail names the cell's kernel, and the
# Plan view shows the cursor entry's error and kernel times and the plan's
# predicted tok/s beside its size. The table is kept in the cache directory:
# a second start shows the plan's tok/s at once, and `qscope plan --auto`
# predicts with the same table. Skips without tmux.
set -eu
E2E_NAME=e2e_tui_speed
. "$(dirname "$0")/tmux_lib.sh"

start() {
  tm new-session -d -s e2e -x 130 -y 40 \
    "XDG_CACHE_HOME='$tmp/cache' LC_ALL=C.UTF-8 '$Q' '$M' --text '$T' --ctx 128 --threads 2 2>'$tmp/stderr'; echo \"exit=\$?\" >'$tmp/exit'; sleep 30"
  wait_for "1 Model" 15
}
quit() {
  keys q
  n=0
  while [ ! -s "$tmp/exit" ]; do sleep 0.1; n=$((n + 1)); [ $n -lt 80 ] || fail "no exit on q"; done
  grep -q "exit=0" "$tmp/exit" || fail "exit: $(cat "$tmp/exit") $(cat "$tmp/stderr")"
  rm -f "$tmp/exit"
  tm kill-session -t e2e
}

start
keys c
wait_for "calibrated in" 60
keys 3
wait_for "output error, int4 (f), oc (g)"
screen | grep -qE '^ +dec +- +- ' || fail "the dec row is not empty before T"
has "kernel: not timed yet (T times it)"
keys 4
wait_for "Plan: fp16"
has "(tok/s: T times the kernels)"
has "kernel on 64x64: not in the speed table"
keys 3
keys T
wait_for "speed table: " 120
wait_for "rows timed" 120
has "rows timed"
# every column of the map has a time now (q k v o gate up down)
row=$(screen | grep -E '^ +dec ' | head -1)
n=$(echo "$row" | grep -oE '[0-9.]+(ns|us|ms|s)' | wc -l)
[ "$n" = 7 ] || fail "dec row has $n times, not 7: '$row'"
screen | grep -qE 'kernel I4 oc: dec [0-9.]+(ns|us|ms|s), pre [0-9.]+(ns|us|ms|s)/tok' ||
  fail "the detail does not name the cell's kernel time"
# another format and grouping: still timed (T timed every map cell)
keys f f f g g g
row=$(screen | grep -E '^ +dec ' | head -1)
n=$(echo "$row" | grep -oE '[0-9.]+(ns|us|ms|s)' | wc -l)
[ "$n" = 7 ] || fail "after f/g the dec row has $n times: '$row'"
keys 4
wait_for "Plan: fp16"
screen | grep -qE 'tok/s decode, [0-9]+ prefill' || fail "no predicted tok/s beside the size"
screen | grep -qE 'kernel on 64x64: decode [0-9.]+(ns|us|ms|s), prefill' || fail "no kernel time on the cursor line"
tps=$(screen | sed -n 's/.*~\([0-9]*\) tok\/s decode.*/\1/p' | head -1)
# a format the map has: the cursor line shows its error beside its time
keys : C-u
tm send-keys -t e2e -l "int4"
keys Enter
wait_for "Plan: fp16 +1 edit"
screen | grep -qE 'out err [0-9.e-]+ \(map, rtn\) . kernel on 64x64: decode' ||
  fail "no error beside the kernel time for int4"
quit

# the table was kept: a second start shows the plan's speed without timing anything
[ -n "$(ls "$tmp"/cache/qscope/speed-*.txt 2>/dev/null)" ] || fail "no speed table in the cache directory"
start
keys 4
wait_for "Plan: fp16"
screen | grep -qE "~$tps tok/s decode" || screen | grep -qE '~[0-9]+ tok/s decode' ||
  fail "the cached table does not give the plan's tok/s"
quit
echo "e2e_tui_speed: ok (fp16 plan ~$tps tok/s decode predicted; $(wc -l <"$(ls "$tmp"/cache/qscope/speed-*.txt | head -1)") table lines)"
