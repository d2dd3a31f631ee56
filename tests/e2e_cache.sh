#!/bin/sh
# qscope cache list|clean: the cache's files by kind with their sizes (H is
# GBs on a 7B model and grew without a word), removing one kind or all; and a
# mistyped kind is refused.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K/stories260K-f32.gguf
T=$S/text/tinystories_sample.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "e2e_cache: $*" >&2; exit 1; }
export XDG_CACHE_HOME="$tmp/xdg"
C=$XDG_CACHE_HOME/qscope

"$Q" cache list >"$tmp/l0" || fail "cache list on an empty cache"
grep -q "cache $C: 0 files, 0.0 MB" "$tmp/l0" || fail "empty: $(cat "$tmp/l0")"
"$Q" calib "$M" --text "$T" --samples 2 --seqlen 32 -o "$C/stats-test.qss" >/dev/null 2>&1 || fail "calib"
"$Q" eval "$M" --preset fp16 --text "$T" --ctx 64 --chunks 2 --no-speed >/dev/null 2>&1 || fail "eval"
mkdir -p "$C/plans" && echo '{}' >"$C/plans/p.json"
"$Q" cache list >"$tmp/l1" || fail "cache list"
hf=$(ls "$C"/stats-test.qss*.h64)
hb=$(wc -c <"$hf" | tr -d ' ')
grep -Eq "^  H +$hb  .* $(basename "$hf")$" "$tmp/l1" || fail "H not listed with its $hb bytes: $(cat "$tmp/l1")"
grep -Eq "^  reference .* evalref-" "$tmp/l1" || fail "no evaluation reference listed: $(cat "$tmp/l1")"
grep -Eq "^  plan .* plans/p.json$" "$tmp/l1" || fail "no plan listed: $(cat "$tmp/l1")"
grep -Eq "^stats +1 file " "$tmp/l1" || fail "no stats total: $(cat "$tmp/l1")"
# the first listed file is the largest (H)
sed -n 3p "$tmp/l1" | grep -q "$(basename "$hf")" || fail "not largest first: $(cat "$tmp/l1")"
"$Q" cache clean H >"$tmp/c1" || fail "cache clean H"
grep -q "removed 1 H file" "$tmp/c1" || fail "clean H: $(cat "$tmp/c1")"
[ ! -e "$hf" ] && [ -e "$C/stats-test.qss" ] || fail "clean H removed the wrong files"
if "$Q" cache clean hh 2>"$tmp/e"; then fail "a bad kind was accepted"; fi
grep -q "'hh' is not one of" "$tmp/e" || fail "bad kind: $(cat "$tmp/e")"
"$Q" cache clean >"$tmp/c2" || fail "cache clean"
"$Q" cache list | grep -q ": 0 files" || fail "clean left files: $("$Q" cache list)"
echo "e2e_cache: ok"
