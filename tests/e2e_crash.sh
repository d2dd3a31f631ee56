#!/bin/sh
# Crash points of every writer (core/atomicfile.h): each command that writes a
# file (synth's GGUF, calib's stats, plan JSON, quant's .qsq, eval's reference
# cache, session new, plan-export) is killed (QS_FAULT_AT, SIGKILL) before the
# first write, after the fsync, before and after the rename. The output must be
# the previous file until the rename and the complete new one from then on, and
# the next clean run must leave no temporary behind. A full disk (injected) is
# reported by name, and a symlink planted at the old predictable temporary
# name ("<out>.tmp") is never written through.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K/stories260K-f32.gguf
T=$S/text/tinystories_sample.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "e2e_crash: $*" >&2; exit 1; }
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 600 "$1")"; }
tmps() { ls -a "$tmp" "$tmp/cache" 2>/dev/null | grep -c '\.tmp\.' || true; }
# same A B: the same bytes, but for a session's creation time (its clock ticks between runs)
same() {
  case $1 in
    *.json) [ "$(grep -v '"created"' "$1" | cksum)" = "$(grep -v '"created"' "$2" | cksum)" ] ;;
    *) cmp -s "$1" "$2" ;;
  esac
}

# run NAME OUT CMD...: the reference output, then every crash point.
run() {
  name=$1; out=$2; shift 2
  "$@" >/dev/null 2>"$tmp/err" || fail "$name: clean run failed: $(cat "$tmp/err")"
  cp "$out" "$tmp/ref"
  for stage in before-write:1 after-fsync before-rename after-rename; do
    printf 'old\n' >"$out"
    set +e
    QS_FAULT_AT=$stage "$@" >/dev/null 2>&1
    rc=$?
    set -e
    [ $rc -eq 137 ] || fail "$name: $stage: exit $rc, expected the SIGKILL (137)"
    case $stage in
      # calib commits the statistics before its sensitivity map (saved as it
      # grows): killed after that first rename, a loadable calibration whose
      # map the next run completes (checked against the reference below)
      after-rename) if [ "$name" = calib ]; then
          "$Q" report --stats "$out" --what spikes >/dev/null 2>&1 || fail "$name: $stage: not a loadable file"
        else same "$out" "$tmp/ref" || fail "$name: $stage: not the complete new file"; fi ;;
      *) [ "$(cat "$out")" = old ] || fail "$name: $stage: the old file was replaced" ;;
    esac
    [ "$(tmps)" -le 1 ] || fail "$name: $stage: $(tmps) temporaries"
  done
  "$@" >/dev/null 2>"$tmp/err" || fail "$name: run after the crashes failed: $(cat "$tmp/err")"
  same "$out" "$tmp/ref" || fail "$name: the output differs from the reference"
  [ "$(tmps)" -eq 0 ] || fail "$name: temporaries left: $(ls "$tmp" | grep '\.tmp\.')"
}

run synth "$tmp/s.gguf" "$Q" synth --preset tiny --layers 1 --vocab 300 -o "$tmp/s.gguf"
run calib "$tmp/c.qsst" "$Q" calib "$M" --text "$T" -o "$tmp/c.qsst" --samples 2 --seqlen 64
run plan "$tmp/p.json" "$Q" plan "$M" --preset w8a8-token -o "$tmp/p.json"
run quant "$tmp/q.qsq" "$Q" quant "$M" --preset w8a8-token -o "$tmp/q.qsq"
run session "$tmp/s.json" "$Q" session new "$M" -o "$tmp/s.json"
run plan-export "$tmp/e.txt" "$Q" plan-export "$tmp/p.json" --to llamacpp --model "$M" -o "$tmp/e.txt"
# eval's cache: the file name is the cache's; a crash before the rename leaves no entry
mkdir "$tmp/cache"
"$Q" eval "$M" --preset w8a8-token --text "$T" --ctx 128 --chunks 2 --cache "$tmp/cache" >/dev/null 2>"$tmp/err" ||
  fail "eval: $(cat "$tmp/err")"
ref=$(ls "$tmp/cache"/evalref-*.bin) || fail "eval wrote no cache entry"
cp "$ref" "$tmp/ref"
for stage in before-write:1 before-rename after-rename; do
  rm -f "$ref"
  set +e
  QS_FAULT_AT=$stage "$Q" eval "$M" --preset w8a8-token --text "$T" --ctx 128 --chunks 2 --cache "$tmp/cache" \
    >/dev/null 2>&1
  rc=$?
  set -e
  [ $rc -eq 137 ] || fail "eval: $stage: exit $rc"
  case $stage in
    after-rename) cmp -s "$ref" "$tmp/ref" || fail "eval: $stage: not the complete cache entry" ;;
    *) [ ! -e "$ref" ] || fail "eval: $stage: a cache entry exists before the rename" ;;
  esac
done
"$Q" eval "$M" --preset w8a8-token --text "$T" --ctx 128 --chunks 2 --cache "$tmp/cache" >/dev/null 2>&1 ||
  fail "eval after the crashes"
[ "$(tmps)" -eq 0 ] || fail "eval: temporaries left"

# A full disk is named; the old stats file stays.
printf 'old\n' >"$tmp/c.qsst"
if QS_FAULT_AT=enospc-write "$Q" calib "$M" --text "$T" -o "$tmp/c.qsst" --samples 2 --seqlen 64 \
  >/dev/null 2>"$tmp/full.err"; then fail "calib on a full disk succeeded"; fi
has "$tmp/full.err" "the disk is full (ENOSPC)"
[ "$(cat "$tmp/c.qsst")" = old ] || fail "a failed write replaced the stats file"
[ "$(tmps)" -eq 0 ] || fail "a failed write left its temporary"

# A symlink planted at the old predictable temporary name is not followed.
printf 'victim\n' >"$tmp/victim"
ln -s "$tmp/victim" "$tmp/c.qsst.tmp"
"$Q" calib "$M" --text "$T" -o "$tmp/c.qsst" --samples 2 --seqlen 64 >/dev/null 2>&1 || fail "calib beside a symlink"
[ "$(cat "$tmp/victim")" = victim ] || fail "calib wrote through the planted symlink c.qsst.tmp"
echo "e2e_crash: ok"
