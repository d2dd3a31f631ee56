#!/bin/sh
# One table of calibration limits (analysis/calib.h) for the CLI, replay and
# the stats reader: replay refuses what the stats reader would refuse (it took
# topk up to 2^20 and group 0; the stats file it wrote was then refused and
# the error blamed the session), and the CLI takes what the reader takes.
# Messages that named the wrong thing (issue 15 item 12): a directory or a
# device as --text, plan-export of a session without plans, replay -o where
# nothing can be written.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K/stories260K-f32.gguf
T=$S/text/tinystories_sample.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "e2e_refuse: $*" >&2; exit 1; }
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 600 "$1")"; }

for arg in '"topk": 5000' '"group": 0' '"seqlen": 2000000'; do
  printf '{"model": "%s", "actions": [{"action": "calibrate", "args": {"text": "%s", "samples": 1, "seqlen": 16, %s}}]}\n' \
    "$M" "$T" "$arg" | sed 's/"seqlen": 16, "seqlen"/"seqlen"/' >"$tmp/a.json"
  if "$Q" replay "$tmp/a.json" -o "$tmp/out.json" >/dev/null 2>"$tmp/err"; then fail "replay accepted $arg"; fi
  key=$(echo "$arg" | sed 's/"\([a-z]*\)".*/\1/')
  has "$tmp/err" "argument '$key' must be an integer in ["
done
has "$tmp/err" "[2, 1048576]"
if "$Q" calib "$M" --text "$T" -o "$tmp/s" --topk 4097 >/dev/null 2>"$tmp/err"; then fail "--topk 4097 accepted"; fi
has "$tmp/err" "--topk: 4097 is outside [1, 4096]"
# what the CLI writes, the reader reads back
"$Q" calib "$M" --text "$T" -o "$tmp/s" --topk 2000 --samples 1 --seqlen 32 >/dev/null 2>"$tmp/err" ||
  fail "calib --topk 2000: $(cat "$tmp/err")"
"$Q" plan "$M" --preset int4-rtn --stats "$tmp/s" -o "$tmp/p.json" >/dev/null 2>"$tmp/err" ||
  fail "the stats of --topk 2000 do not load: $(cat "$tmp/err")"

if "$Q" ppl "$M" --text /tmp >/dev/null 2>"$tmp/err"; then fail "a directory as --text"; fi
has "$tmp/err" "/tmp: a directory, not a regular file"
if "$Q" ppl "$M" --text /dev/zero >/dev/null 2>"$tmp/err"; then fail "/dev/zero as --text"; fi
has "$tmp/err" "/dev/zero: a device, not a regular file"
"$Q" session new "$M" -o "$tmp/empty.json" >/dev/null 2>&1 || fail "session new"
if "$Q" plan-export "$tmp/empty.json" --to llamacpp >/dev/null 2>"$tmp/err"; then fail "plan-export of no plan"; fi
has "$tmp/err" "the session has no plans yet"
# replay -o where its work directory cannot be made: said at once (the mkdir was ignored)
echo '[{"action": "apply_preset", "args": {"preset": "fp16"}}]' >"$tmp/r.json"
if "$Q" replay "$tmp/r.json" --model "$M" -o /proc/qs-none/out.json >/dev/null 2>"$tmp/err"; then fail "replay -o /proc/..."; fi
has "$tmp/err" "cannot make the work directory /proc/qs-none/out.json.d"
echo "e2e_refuse: ok"
