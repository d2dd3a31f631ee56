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
ha=$(ls "$tmp"/a.qsst.*.h64) || fail "no H beside a.qsst"
hb=$(ls "$tmp"/b.qsst.*.h64) || fail "no H beside b.qsst"
cmp "$ha" "$hb" || fail "same seed, different H files"
has "$tmp/a.out" "4 sequences × 64 tokens"
has "$tmp/a.out" "H: $ha (495616 bytes)"
has "$tmp/a.err" "for 5 layers of widths 64/64/172: 0.5 MB"
has "$tmp/a.err" "4 samples × 64 tokens (random, seed 5)"
[ "$(ls "$tmp" | grep -c 'h64')" = 2 ] || fail "temporaries left: $(ls "$tmp")"
# a second calibration to the same path replaces the pair: one H file remains
"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --samples 4 --seqlen 64 --seed 7 --threads 2 \
  -o "$tmp/b.qsst" >/dev/null 2>&1 || fail "calib b again"
[ "$(ls "$tmp" | grep -c '^b.qsst.*h64')" = 1 ] || fail "old H not replaced: $(ls "$tmp")"
"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --samples 4 --seqlen 64 --seed 6 --no-h \
  -o "$tmp/c.qsst" >/dev/null 2>&1 || fail "calib c"
cmp -s "$tmp/a.qsst" "$tmp/c.qsst" && fail "another seed gave the same stats"
[ "$(ls "$tmp" | grep -c '^c.qsst.*h64')" = 0 ] || fail "--no-h wrote H"

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
has "$tmp/v.out" "layer,proj,format,grouping,group,weight_err,output_err,bpw"
has "$tmp/v.out" "1,down,int4,oc-g,4,"
# each cell's bits per weight: int4 with one fp16 scale per 4 weights = 8, per 32 = 4.5
grep -q '^1,down,int4,oc-g,4,.*,8$' "$tmp/v.out" || fail "bpw of int4 oc-g4 is not 8: $(grep 'int4,oc-g' "$tmp/v.out")"
grep -q '^1,down,int4,ic-g,32,.*,4.5$' "$tmp/v.out" || fail "bpw of int4 ic-g32 is not 4.5"
grep -q '^1,down,int4,oc,0,.*,4.09302$' "$tmp/v.out" || fail "bpw of int4 oc (16/172) is not 4.09302"
# 8 scaled formats x 5 groupings + 10 ggml formats x their own blocks
[ "$(wc -l <"$tmp/v.out")" = 51 ] || fail "sensitivity CSV for one projection should have 1+50 lines"
"$Q" report --stats "$tmp/a.qsst" --what tokens --proj down --layer 0 --json >"$tmp/v.out"
has "$tmp/v.out" '"text": "<s>", "pos": 0'
# spike tokens with the tokens before them (MODEL and the recorded text rebuild the
# windows), duplicates merged: the counts of the rows add up to the 16 spikes kept
"$Q" report "$M/stories260K-f32.gguf" --stats "$tmp/a.qsst" --what tokens --layer 0 --proj qkv --json >"$tmp/v.out" ||
  fail "report --what tokens with MODEL"
[ "$(grep -c '"context": ".*\[[^]]*\]"}' "$tmp/v.out")" = "$(grep -c '"rank"' "$tmp/v.out")" ] ||
  fail "a row of report --what tokens lacks its context: $(head -c 600 "$tmp/v.out")"
[ "$(sed -n 's/.*"count": \([0-9]*\).*/\1/p' "$tmp/v.out" | awk '{ s += $1 } END { print s }')" = 16 ] ||
  fail "the merged rows do not count the 16 spikes: $(head -c 600 "$tmp/v.out")"
"$Q" report "$M/stories260K-f32.gguf" --stats "$tmp/a.qsst" --what tokens --layer 0 --proj qkv >"$tmp/v.out" || fail "report tokens"
has "$tmp/v.out" "count  context"
"$Q" report "$M/stories260K-f32.gguf" --stats "$tmp/a.qsst" --what tokens --text "$M/tok512.bin" >/dev/null 2>"$tmp/v.err" ||
  fail "report tokens with another --text"
has "$tmp/v.err" "no context for the tokens"

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
# -o a directory: refused before any work, nothing written beside it (was: DIR.h64)
mkdir "$tmp/d"
"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --samples 1 --seqlen 32 -o "$tmp/d" 2>"$tmp/e.err" >/dev/null
[ $? = 2 ] || fail "-o a directory: exit 2"
has "$tmp/e.err" "is a directory"
[ "$(ls "$tmp" | grep -c '^d\.')" = 0 ] || fail "-o a directory wrote beside it: $(ls "$tmp")"
set -e
# above the declared context (128): accepted with a warning, as ppl and llama.cpp do
"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --samples 1 --seqlen 200 --no-sensitivity -o "$tmp/x.qsst" \
  2>"$tmp/e.err" >/dev/null || fail "seqlen above context: $(cat "$tmp/e.err")"
has "$tmp/e.err" "warning: --seqlen 200 is above the model's context 128"
# one context policy: eval accepts a --ctx above the declared context with a warning too
"$Q" eval "$M/stories260K-f32.gguf" --text "$T" --preset fp16 --ctx 200 --chunks 1 >/dev/null 2>"$tmp/e.err" \
  || fail "eval --ctx above context: $(cat "$tmp/e.err")"
has "$tmp/e.err" "warning: --ctx 200 is longer than the 128 positions"
# ... and replay, which re-runs a session's recorded lengths, says so beside each action
cat >"$tmp/long.json" <<EOF
{"model": "$M/stories260K-f32.gguf", "actions": [
 {"action": "calibrate", "args": {"text": "$T", "samples": 2, "seqlen": 200, "seed": 3, "sensitivity": false}},
 {"action": "apply_preset", "args": {"preset": "int4-rtn", "group": 32}},
 {"action": "evaluate", "args": {"text": "$T", "ctx": 200, "chunks": 1}}]}
EOF
"$Q" replay "$tmp/long.json" -o "$tmp/long.out.json" >"$tmp/e.out" 2>&1 || fail "replay of lengths above the context: $(cat "$tmp/e.out")"
has "$tmp/e.out" "(warning: seqlen 200 is above the model's context 128)"
has "$tmp/e.out" "(warning: ctx 200 is above the model's context 128)"
# 30 × 128 tokens > the text's 3793 bytes: a warning that windows repeat
"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --samples 30 --seqlen 128 --no-sensitivity --no-h \
  -o "$tmp/y.qsst" 2>"$tmp/e.err" >/dev/null || fail "many samples: $(cat "$tmp/e.err")"
has "$tmp/e.err" "windows overlap and repeat"
# chunks mode: the text holds 14 consecutive windows of 128, fewer than 30 asked; with
# --eval-chunks 7 the part past evaluation's 7 chunks holds 7 (985 tokens)
"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --samples 30 --seqlen 128 --mode chunks --no-sensitivity --no-h \
  -o "$tmp/y.qsst" 2>"$tmp/e.err" >/dev/null || fail "chunks mode: $(cat "$tmp/e.err")"
has "$tmp/e.err" "warning: the text's 1881 tokens hold 14 consecutive windows of 128, fewer than the 30 samples asked"
"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --samples 30 --seqlen 128 --mode chunks --no-sensitivity --no-h \
  --eval-chunks 7 -o "$tmp/y.qsst" 2>"$tmp/e.err" >"$tmp/e.out" || fail "chunks mode, a part: $(cat "$tmp/e.err")"
has "$tmp/e.err" "warning: the calibration part's 985 tokens hold 7 consecutive windows of 128"
has "$tmp/e.out" "calibration part: tokens 896-1880 of $T (985 tokens)"
# a map stopped after 5 sites keeps them in the stats file; the same command
# then computes only the other 30 and ends with the bytes of one uninterrupted
# pass (a.qsst has the same settings)
"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --samples 4 --seqlen 64 --seed 5 --threads 2 --sens-max-sites 5 \
  -o "$tmp/r.qsst" >"$tmp/r.out" 2>&1 || fail "calib --sens-max-sites: $(cat "$tmp/r.out")"
has "$tmp/r.out" "sensitivity map: partial, 5 of 35 sites (stopped; the same command resumes it)"
"$Q" report --stats "$tmp/r.qsst" --what sensitivity >"$tmp/r.rep" 2>&1 || fail "report of a partial map"
has "$tmp/r.rep" "partial: 5 of 35 sites"
"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --samples 4 --seqlen 64 --seed 5 --threads 2 \
  -o "$tmp/r.qsst" >"$tmp/r2.out" 2>&1 || fail "calib resume: $(cat "$tmp/r2.out")"
has "$tmp/r2.out" "holds this calibration with a partial sensitivity map (5 of 35 sites): computing the missing"
has "$tmp/r2.out" "resumed the sensitivity map of $tmp/r.qsst"
has "$tmp/r2.out" "sensitivity map: computed"
cmp "$tmp/a.qsst" "$tmp/r.qsst" || fail "the resumed map's stats differ from one pass's"
# --fresh recalibrates instead (and a complete map is never resumed)
"$Q" calib "$M/stories260K-f32.gguf" --text "$T" --samples 4 --seqlen 64 --seed 5 --threads 2 --fresh \
  -o "$tmp/r.qsst" >"$tmp/r3.out" 2>&1 || fail "calib --fresh: $(cat "$tmp/r3.out")"
has "$tmp/r3.out" "calibrated "
cmp "$tmp/a.qsst" "$tmp/r.qsst" || fail "--fresh: stats differ"
set +e
set -e
echo "e2e_calib: ok"
