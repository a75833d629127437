#!/usr/bin/env bash
# Installs what the tests need on a fresh machine with only Rust, gcc, Node and Python.
set -euo pipefail
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown
rustup component add rustfmt clippy >/dev/null 2>&1 || true
