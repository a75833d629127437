#!/usr/bin/env bash
# core is sans-IO: it must build for wasm32 (the JS SDK compiles it).
set -euo pipefail
cargo build -p dask-core --target wasm32-unknown-unknown --locked
