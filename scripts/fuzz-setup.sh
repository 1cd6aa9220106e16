#!/usr/bin/env bash
# Installs what `make fuzz` needs, idempotently: the nightly toolchain (libFuzzer's sanitizer flags need it)
# and cargo-fuzz from crates.io.
set -euo pipefail
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
