#!/usr/bin/env bash
# Unit, property, vector, schema-drift and end-to-end tests of every crate.
set -euo pipefail
cargo test --workspace --doc --locked -q
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
