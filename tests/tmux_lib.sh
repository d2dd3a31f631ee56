# Shared by the tmux end-to-end scripts (sourced, not run: the Makefile runs
# tests/e2e_*.sh only). The sourcing script sets E2E_NAME first; sourcing sets
# Q (qscope), M (stories260K) and T (its text) as absolute paths, skips the
# script (exit 0) when tmux is not installed, and makes tmp (a temporary
# directory) and SOCK (a private tmux socket), both removed on exit. Screens
# are read from the session named e2e.
Q=${QSCOPE:-./qscope}
S=${QS_SHARED:-../shared}
M=$S/models/stories260K/stories260K-f32.gguf
T=$S/text/tinystories_sample.txt
if ! command -v tmux >/dev/null 2>&1; then
  echo "$E2E_NAME: SKIPPED: tmux is not installed"
  exit 0
fi
case $Q in /*) ;; *) Q=$(pwd)/$Q ;; esac
case $M in /*) ;; *) M=$(pwd)/$M ;; esac
case $T in /*) ;; *) T=$(pwd)/$T ;; esac
tmp=$(mktemp -d)
SOCK=qscope-$E2E_NAME-$$
cleanup() { rc=$?; tm kill-server >/dev/null 2>&1 || true; rm -rf "$tmp"; exit $rc; }
trap cleanup EXIT
trap 'exit 130' INT TERM
tm() { tmux -L "$SOCK" "$@"; }
fail() {
  echo "$E2E_NAME: $*" >&2
  echo "--- last screen:" >&2
  tm capture-pane -p -t e2e >&2 2>/dev/null || true
  exit 1
}
screen() { tm capture-pane -p -t e2e; }
# wait_for TEXT [SECONDS]: polls the screen until it shows TEXT.
wait_for() {
  n=$(( ${2:-10} * 10 ))
  while [ "$n" -gt 0 ]; do
    if screen 2>/dev/null | grep -qF -- "$1"; then return 0; fi
    sleep 0.1
    n=$((n - 1))
  done
  fail "timed out waiting for '$1'"
}
has() { screen | grep -qF -- "$1" || fail "screen lacks '$1'"; }
lacks() { if screen | grep -qF -- "$1"; then fail "screen shows '$1'"; fi; }
keys() { tm send-keys -t e2e "$@"; sleep 0.15; }
