#!/bin/sh
# Ctrl-C (SIGINT) on the long CLI runs: `calib` keeps what it has and exits
# 130 like ppl and eval (it exited 0); an interrupted `eval` says what it did
# not measure instead of printing "prefill 0.0 tok/s" and an empty layer error.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K/stories260K-f32.gguf
W=$S/text/wikitext-2-test.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "e2e_interrupt: $*" >&2; exit 1; }

# run_int READY SECONDS OUT ERR CMD...: runs CMD in the background, waits until
# its stderr shows READY (printed where the command has installed its SIGINT
# handler: a background job of a non-interactive shell starts with SIGINT
# ignored, so a signal sent before that point is lost and the run completes
# with 0 -- seen on a loaded machine), then SECONDS more, sends SIGINT and
# leaves the exit status in $rc.
run_int() {
  ready=$1 d=$2 o=$3 e=$4
  shift 4
  "$@" >"$o" 2>"$e" &
  pid=$!
  n=0
  while ! grep -q "$ready" "$e" 2>/dev/null && kill -0 "$pid" 2>/dev/null && [ $n -lt 1200 ]; do
    sleep 0.1
    n=$((n + 1))
  done
  sleep "$d"
  kill -INT "$pid" 2>/dev/null || true
  rc=0
  wait "$pid" || rc=$?
}

# On a loaded machine one second may not reach the first sequence (tokenizing the
# text): that cancel is reported as such and keeps nothing; wait longer and again.
for d in 1 3 8; do
  run_int "H = X" $d "$tmp/c.out" "$tmp/c.err" "$Q" calib "$M" --text "$W" --samples 20000 --seqlen 64 --threads 1 \
    --pipeline per-sample -o "$tmp/c.qss"
  grep -q "cancelled before the first sequence" "$tmp/c.err" || break
  [ ! -e "$tmp/c.qss" ] || fail "calib cancelled before the first sequence left a stats file"
done
[ "$rc" = 130 ] || fail "calib interrupted: exit $rc, not 130: $(cat "$tmp/c.out" "$tmp/c.err")"
grep -q "cancelled: kept [0-9]* of 20000 sequences" "$tmp/c.out" || fail "calib: $(cat "$tmp/c.out")"
"$Q" report --stats "$tmp/c.qss" --what spikes 2>/dev/null | grep -q "\[cancelled early\]" ||
  fail "the kept stats do not say they are partial"

# The layer-streamed pipeline (default) has no complete sequence before the
# last layer: it keeps nothing, says so and still exits 130.
run_int "H = X" 1 "$tmp/s.out" "$tmp/s.err" "$Q" calib "$M" --text "$W" --samples 20000 --seqlen 64 --threads 1 -o "$tmp/s.qss"
[ "$rc" = 130 ] || fail "streamed calib interrupted: exit $rc, not 130: $(cat "$tmp/s.out" "$tmp/s.err")"
grep -q "keeps no partial result" "$tmp/s.err" || fail "streamed calib: $(cat "$tmp/s.err")"
[ ! -e "$tmp/s.qss" ] || fail "streamed calib left a stats file after a cancel"

# eval: the reference of 1500 chunks first (cached), then the plan, interrupted.
"$Q" eval "$M" --preset int4-rtn --text "$W" --ctx 64 --chunks 1500 --no-speed --cache "$tmp/cache" \
  >/dev/null 2>&1 || fail "eval (reference) failed"
run_int "reference from cache" 0.3 "$tmp/e.out" "$tmp/e.err" "$Q" eval "$M" --preset int4-rtn --text "$W" --ctx 64 --chunks 1500 --threads 1 \
  --cache "$tmp/cache"
[ "$rc" = 130 ] || fail "eval interrupted: exit $rc, not 130: $(tail -c 400 "$tmp/e.err")"
if grep -q "interrupted after [1-9]" "$tmp/e.err"; then
  grep -q "speed      not measured (interrupted)" "$tmp/e.out" || fail "eval: $(cat "$tmp/e.out")"
  grep -q "layer err  not measured (interrupted)" "$tmp/e.out" || fail "eval: $(cat "$tmp/e.out")"
else
  grep -q "nothing measured" "$tmp/e.err" || fail "eval: $(tail -c 400 "$tmp/e.err")"
fi
if grep -q " 0.0 tok/s" "$tmp/e.out"; then fail "eval printed 0.0 tok/s"; fi
echo "e2e_interrupt: ok"
