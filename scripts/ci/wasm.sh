#!/usr/bin/env bash
# core is sans-IO: it must build for wasm32 (the JS SDK compiles it); so
# must the in-process scheduler's plan and state machine (its `execute`
# feature off), which the JS SDK drives with JS functions.
set -euo pipefail
cargo build -p dask-core --target wasm32-unknown-unknown --locked
cargo build -p dask-inprocess --no-default-features --target wasm32-unknown-unknown --locked
