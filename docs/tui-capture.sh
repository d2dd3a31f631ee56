#!/bin/sh
# Writes the README's "## The workbench (TUI)" section to stdout: a
# `tmux capture-pane` of each of the six views of `qscope` on stories260K in
# a 100x30 window (calibrated, three plans evaluated, the plan editor showing
# an edited spike-aware plan), and the key table from `qscope tui
# --keys-markdown` (the bindings table in tui/keys.c). Regenerate with
#   sh docs/tui-capture.sh > /tmp/tui.md
# and replace the section in README.md with it. Needs tmux; run from the
# repository root after `make qscope`. Private tmux socket, always killed.
set -eu
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K/stories260K-f32.gguf
T=$S/text/tinystories_sample.txt
case $Q in /*) ;; *) Q=$(pwd)/$Q ;; esac
M=$(cd "$(dirname "$M")" && pwd)/$(basename "$M")
T=$(cd "$(dirname "$T")" && pwd)/$(basename "$T")
tmp=$(mktemp -d)
# The cache and session paths show on the Model view: fixed names, the same
# as in docs/tui.md's captures, instead of a random mktemp directory.
CACHE=/tmp/qs-cap-cache
SESS=/tmp/qs-cap-s.json
rm -rf "$CACHE" "$SESS"
SOCK=qscope-capture-$$
tm() { tmux -L "$SOCK" "$@"; }
cleanup() { rc=$?; tm kill-server >/dev/null 2>&1 || true; rm -rf "$tmp" "$CACHE" "$SESS"; exit $rc; }
trap cleanup EXIT
trap 'exit 130' INT TERM
screen() { tm capture-pane -p -t cap; }
wait_for() {
  n=$(( ${2:-20} * 10 ))
  while [ "$n" -gt 0 ]; do
    if screen 2>/dev/null | grep -qF -- "$1"; then return 0; fi
    sleep 0.1; n=$((n - 1))
  done
  echo "tui-capture: timed out waiting for '$1'" >&2; screen >&2; exit 1
}
keys() { tm send-keys -t cap "$@"; sleep 0.2; }
# shot N: keeps the screen as a fenced block (trailing blanks trimmed) in $tmp/shotN.
shot() { { printf '```\n'; screen | sed 's/ *$//'; printf '```\n\n'; } >"$tmp/shot$1"; }

export XDG_CACHE_HOME="$CACHE" LC_ALL=C.UTF-8
tm -f /dev/null new-session -d -s cap -x 100 -y 30 "'$Q' '$M' --text '$T' --session '$SESS'"
wait_for "1 Model"
keys c
wait_for "calibrated in"
# Three plans evaluated: fp16, int4-rtn, and spike-aware-w8a8 with the output head int8.
keys e
wait_for "#1 fp16"
keys 4
preset() {
  keys p
  wait_for "Preset (Enter applies"
  keys g
  n=0
  while ! screen | grep -qF "> $1 "; do
    keys j; n=$((n + 1)); [ $n -lt 30 ] || { echo "tui-capture: no preset $1" >&2; exit 1; }
  done
  keys Enter
  wait_for "Plan: $1"
}
preset int4-rtn
keys e
wait_for "#2 int4-rtn"
preset spike-aware-w8a8
keys G
wait_for "embed [F16]"
keys l f f f f
wait_for "output [I8"
keys k
keys e
wait_for "#3 spike-aware-w8a8"
keys 1
wait_for "tensor kind"
shot 1
keys 2
wait_for "log scale"
shot 2
keys 3
wait_for "output error, int4"
shot 3
keys 5
wait_for "Pareto"
shot 5
keys 6
wait_for "evaluate"
shot 6
keys 4
wait_for "budget"
keys k k k h h h
keys f f f f f f
wait_for "AQ2x8g8"
shot 4

cat <<'EOF'
## The workbench (TUI)

`qscope [MODEL]` (or `make run`) opens the workbench: read the model, calibrate,
find where activation outliers and weight sensitivity sit, edit the quantization
plan cell by cell against a live size budget, evaluate it in the background and
compare every plan of the session. Six views, switched with `1`-`6` or Tab; `?`
lists the keys. The captures are `tmux capture-pane` of a 100x30 window on
stories260K with the TinyStories sample (colour is lost in a text capture);
[docs/tui.md](docs/tui.md) describes each view, the options and the design, and
`docs/tui-capture.sh` regenerates this section.

**1 Model** - configuration, parameters and bytes by tensor kind, storage types,
tokenizer, files, and the calibration and plan at a glance.

EOF
cat "$tmp/shot1"
cat <<'EOF'
**2 Activations** - layers x projection inputs coloured by max|x| (or max/median,
kurtosis, p99.9: `m`) on a log scale, with the cursor cell's numbers beside;
`Enter` drills into its channels, |x| histogram and top spikes with their tokens.

EOF
cat "$tmp/shot2"
cat <<'EOF'
**3 Sensitivity** - the output error of each projection under a format (`f`) and
grouping (`g`), `a` for AdaDim's per-IC / per-OC choice; the cursor cell's error
under every format and grouping below.

EOF
cat "$tmp/shot3"
cat <<'EOF'
**4 Plan** - each projection's format, grouping, method and activation format as a
compact code; keys set them for the cell, row, column, marked cells or
everything (`v`), the embedding and output head are the row under the grid,
presets with `p`, undo / redo, a live budget and the cells that differ from the
last evaluated plan (`*`). Here the spike-aware plan with its three fp16 spike
sites, an int8 output head, and L1.o being set to AQLM (`f` past int2; `x`/`b`/`+`
change M, B, g).

EOF
cat "$tmp/shot4"
cat <<'EOF'
**5 Evaluate** - running PPL and KLD per chunk while a plan evaluates (`Esc`
cancels), every evaluated plan of the session in a sortable table, and PPL
against bits per weight with the Pareto front marked `*`.

EOF
cat "$tmp/shot5"
cat <<'EOF'
**6 Log** - what ran, when, with what settings and outcome.

EOF
cat "$tmp/shot6"
printf '### Keys\n\nGenerated from the bindings table in `tui/keys.c` (`qscope tui --keys-markdown`), the\nsame table the `?` screen and the hint line come from. A key bound for a view wins\nover its global meaning there.\n\n'
"$Q" tui --keys-markdown
