#!/usr/bin/env bash
# Installs what `make bench` needs, idempotently (a second run installs nothing): Debian's nginx (the fast
# local upstream), wrk (the load generator, with LuaJIT for POST bodies), valgrind (callgrind counts the
# instructions per request, bench/instructions.py) and, optionally, binaryen's wasm-opt
# (used by `make bench` to report how much a wasm-opt pass would save; the build works without it).
set -euo pipefail
need=""
command -v nginx >/dev/null 2>&1 || need="$need nginx"
command -v wrk >/dev/null 2>&1 || need="$need wrk"
command -v valgrind >/dev/null 2>&1 || need="$need valgrind"
command -v wasm-opt >/dev/null 2>&1 || need="$need binaryen"
if [ -n "$need" ]; then
  echo "bench-setup: installing$need"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  # binaryen is optional: install the required packages first so a missing binaryen never blocks the bench.
  req=$(echo "$need" | sed 's/ binaryen//')
  if [ -n "${req// /}" ]; then DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $req >/dev/null; fi
  case "$need" in *binaryen*) DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends binaryen >/dev/null || echo "bench-setup: binaryen unavailable (optional)";; esac
fi
echo "bench-setup: nginx $(nginx -v 2>&1 | sed 's/.*\///'), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(valgrind --version), wasm-opt: $(command -v wasm-opt || echo none)"
