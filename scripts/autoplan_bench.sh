#!/bin/sh
# The auto planner against the uniform presets at int4-gptq's size (issue 13,
# goal 4): for MODEL (a GGUF) calibrate (16 samples of $SEQLEN, default 256),
# take int4-gptq's bits per weight as the budget, build `plan --auto` there
# without and with the loss model calibrated on TEXT (--text), and evaluate
# both beside every uniform preset at or below that size ($PRESETS overrides
# the list); one line per plan: bpw, mean KLD, the loss model's predicted KLD,
# top-1, PPL. Extra `plan --auto` options in $AUTO_OPTS.
# usage: scripts/autoplan_bench.sh MODEL TEXT WORKDIR [CTX] [CHUNKS]
set -eu
Q=${QSCOPE:-./qscope}
M=$1 T=$2 W=$3 CTX=${4:-512} CH=${5:-4}
mkdir -p "$W"
[ -f "$W/s.stats" ] || "$Q" calib "$M" --text "$T" --samples 16 --seqlen "${SEQLEN:-256}" -o "$W/s.stats" >"$W/calib.log" 2>&1 || { tail -1 "$W/calib.log"; exit 1; }
"$Q" plan "$M" --preset int4-gptq -o "$W/int4-gptq.json" 2>"$W/plan.log"
B=$(sed -n 's/.*rules, \([0-9.]*\) bits per weight.*/\1/p' "$W/plan.log")
"$Q" plan "$M" --auto --bpw "$B" --stats "$W/s.stats" -o "$W/auto.json" --why ${AUTO_OPTS:-} 2>"$W/auto.log"
"$Q" plan "$M" --auto --bpw "$B" --stats "$W/s.stats" --text "$T" --ctx "$CTX" --chunks "${CAL_CHUNKS:-$CH}" \
  -o "$W/autocal.json" --why ${AUTO_OPTS:-} 2>"$W/autocal.log"
ev() { # NAME ARGS...
  n=$1; shift
  "$Q" eval "$M" "$@" --stats "$W/s.stats" --site-scales "$W/s.stats.sitecal" --text "$T" --ctx "$CTX" --chunks "$CH" --no-speed --json \
    >"$W/e-$n.json" 2>"$W/e-$n.err" || { echo "$n: eval failed: $(tail -1 "$W/e-$n.err")"; return 0; }
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('%-18s bpw %.4f  KLD %.5f  (predicted %.5f)  top-1 %.2f%%  PPL %.4f' % (sys.argv[2], d['bpw'], d['kld_mean'], d['kld_pred'], 100*d['top1_agree'], d['ppl']))" "$W/e-$n.json" "$n"
}
echo "budget: int4-gptq's $B bpw"
ev auto --plan "$W/auto.json"
ev auto-calibrated --plan "$W/autocal.json"
for p in ${PRESETS:-int4-gptq int4-rtn int3-gptq int3-rtn adadim-int4 adadim-int4-gptq adadim-int3 adadim-int3-gptq w4a8-token aqlm-1x8 aqlm-2x8 aqlm-1x16}; do
  "$Q" plan "$M" --preset "$p" 2>"$W/p.log" >/dev/null
  b=$(sed -n 's/.*rules, \([0-9.]*\) bits per weight.*/\1/p' "$W/p.log")
  if awk -v b="$b" -v B="$B" 'BEGIN { exit !(b <= B + 1e-9) }'; then ev "$p" --preset "$p"; else echo "$p: $b bpw > budget, not compared"; fi
done
