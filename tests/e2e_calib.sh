#!/bin/sh
# qscope calib / report on stories260K: reproducible stats files (same seed,
# same bytes, H included), the spike ranking in JSON, every view in every
# output form, the staleness warning, and clear non-zero exits on bad input.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K
T=$S/text/tinystories_sample.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "e2e_calib: $*" >&2; exit 1; }
has() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 600 "$1")"; }

"$Q" calib --help >"$tmp/help.txt" || fail "calib --help"
has "$tmp/help.txt" "usage: qscope calib"
"$Q" report --help >"$tmp/help.txt" || fail "report --help"
has "$tmp/help.txt" "--what VIEW"

"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --samples 4 --seqlen 64 --seed 5 --threads 2 \
  -o "$tmp/a.qsst" >"$tmp/a.out" 2>"$tmp/a.err" || fail "calib a: $(cat "$tmp/a.err")"
"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --samples 4 --seqlen 64 --seed 5 --threads 2 \
  -o "$tmp/b.qsst" >/dev/null 2>&1 || fail "calib b"
cmp "$tmp/a.qsst" "$tmp/b.qsst" || fail "same seed, different stats files"
cmp "$tmp/a.qsst.h64" "$tmp/b.qsst.h64" || fail "same seed, different H files"
has "$tmp/a.out" "4 sequences × 64 tokens"
has "$tmp/a.out" "H: $tmp/a.qsst.h64 (1678976 bytes)"
has "$tmp/a.err" "5 layers × (2·64² + 64² + 172²) × 8 = 1.7 MB"
"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --samples 4 --seqlen 64 --seed 6 --no-h \
  -o "$tmp/c.qsst" >/dev/null 2>&1 || fail "calib c"
cmp -s "$tmp/a.qsst" "$tmp/c.qsst" && fail "another seed gave the same stats"
[ ! -e "$tmp/c.qsst.h64" ] || fail "--no-h wrote H"

# spikes: the first stories260K ranks are down_proj inputs
"$Q" report --stats "$tmp/a.qsst" --what spikes --json >"$tmp/s.json" || fail "report spikes"
head -c 1 "$tmp/s.json" | grep -q '\[' || fail "spikes JSON is not a list"
has "$tmp/s.json" '{"layer": '
sed -n 2p "$tmp/s.json" | grep -q '"proj": "down", .*"rank": 1,' || fail "rank 1 is not down: $(sed -n 2p "$tmp/s.json")"
[ "$(grep -c '"proj": ' "$tmp/s.json")" = 20 ] || fail "expected 20 spike rows"
for v in spikes sensitivity actquant channels tokens resid; do
  for f in "" --json --csv; do
    "$Q" report "$M/stories260K-f32.gguf" --stats "$tmp/a.qsst" --what $v $f --layer 1 >"$tmp/v.out" 2>"$tmp/v.err" \
      || fail "report --what $v $f: $(cat "$tmp/v.err")"
    [ -s "$tmp/v.out" ] || fail "report --what $v $f printed nothing"
    [ ! -s "$tmp/v.err" ] || fail "report --what $v $f warned: $(cat "$tmp/v.err")"
  done
done
"$Q" report --stats "$tmp/a.qsst" --what sensitivity --layer 1 --proj down --csv >"$tmp/v.out"
has "$tmp/v.out" "layer,proj,format,grouping,group,weight_err,output_err"
has "$tmp/v.out" "1,down,int4,oc-g,4,"
[ "$(wc -l <"$tmp/v.out")" = 36 ] || fail "sensitivity CSV for one projection should have 1+35 lines"
"$Q" report --stats "$tmp/a.qsst" --what tokens --proj down --layer 0 --json >"$tmp/v.out"
has "$tmp/v.out" '"text": "<s>", "pos": 0'

# stale: the stats do not belong to another model
"$Q" synth --preset tiny -o "$tmp/t.gguf" >/dev/null 2>&1 || fail "synth"
"$Q" report "$tmp/t.gguf" --stats "$tmp/a.qsst" --what resid >/dev/null 2>"$tmp/stale.err" || fail "report stale"
has "$tmp/stale.err" "is stale"

# bad input
set +e
"$Q" calib "$M/stories260K-f32.gguf" -o "$tmp/x.qsst" 2>"$tmp/e.err"; [ $? = 2 ] || fail "missing --text: exit 2"
"$Q" report --stats "$tmp/a.qsst" --what nope 2>"$tmp/e.err"; [ $? = 2 ] || fail "bad --what: exit 2"
head -c 1000 "$tmp/a.qsst" >"$tmp/trunc.qsst"
"$Q" report --stats "$tmp/trunc.qsst" --what spikes 2>"$tmp/e.err" >/dev/null; [ $? = 1 ] || fail "truncated: exit 1"
has "$tmp/e.err" "trunc.qsst: truncated at field"
"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --seqlen 100000 -o "$tmp/x.qsst" 2>"$tmp/e.err" >/dev/null
[ $? = 1 ] || fail "seqlen above context: exit 1"
has "$tmp/e.err" "above the model's context"
set -e
echo "e2e_calib: ok"
