# Shared by the tmux end-to-end scripts (sourced, not run: the Makefile runs
# tests/e2e_*.sh only). The sourcing script sets E2E_NAME first; sourcing sets
# Q (qscope), M (stories260K) and T (its text) as absolute paths, skips the
# script (exit 0) when tmux is not installed, and makes tmp (a temporary
# directory) and SOCK (a private tmux socket, kept up by a placeholder
# session named keep), both removed on exit. Screens
# are read from the session named e2e; start / quit open and close the
# workbench there.
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
# A placeholder session keeps the private server up while test sessions come
# and go: without it, killing the last session ends the server, and a
# new-session racing that exit fails with "server exited unexpectedly".
tm -f /dev/null new-session -d -s keep "sleep 3600"
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
# start W H ARGS: (re)opens the workbench in session e2e, W x H, with ARGS (one
# string, quoted for the shell) with its cache in $E2E_CACHE (default $tmp/cache),
# LC_ALL=$E2E_LC (default C.UTF-8); stderr goes to $tmp/stderr, the exit status
# to $tmp/exit.
start() {
  w=$1; h=$2; shift 2
  tm kill-session -t e2e >/dev/null 2>&1 || true
  rm -f "$tmp/exit"
  tm new-session -d -s e2e -x "$w" -y "$h" \
    "XDG_CACHE_HOME='${E2E_CACHE:-$tmp/cache}' LC_ALL=${E2E_LC:-C.UTF-8} '$Q' $* 2>'$tmp/stderr'; echo \"exit=\$?\" >'$tmp/exit'; sleep 30"
}
# quit: q, then waits for the workbench to exit.
quit() {
  keys q
  n=0
  while [ ! -s "$tmp/exit" ]; do
    sleep 0.1; n=$((n + 1))
    [ $n -lt 80 ] || fail "no exit on q"
  done
}
