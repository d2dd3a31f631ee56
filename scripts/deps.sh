#!/bin/sh
# Installs the Debian packages qscope builds against when any is missing.
# Run by `make` before compiling; a no-op when everything is present.
set -e
missing=""
[ -f /usr/include/x86_64-linux-gnu/cblas.h ] || [ -f /usr/include/cblas.h ] || \
  ls /usr/include/*/cblas.h >/dev/null 2>&1 || missing="$missing libopenblas-dev"
[ -f /usr/include/cjson/cJSON.h ] || missing="$missing libcjson-dev"
{ [ -f /usr/include/ncursesw/curses.h ] || [ -f /usr/include/curses.h ]; } && \
  pkg-config --exists ncursesw 2>/dev/null || missing="$missing libncurses-dev"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
[ -z "$missing" ] && exit 0
echo "qscope: installing missing packages:$missing" >&2
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
