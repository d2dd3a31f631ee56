# Shared helpers of the tmux end-to-end scripts (sourced, not run: the
# Makefile runs tests/e2e_*.sh only). The sourcing script sets E2E_NAME and
# SOCK (its private tmux socket) and captures the session named e2e.
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
